//! Unit tests of the whole template against outputs taken from CPython.

use super::*;
use crate::record::Origin;

fn rec(fields: Vec<(&str, Value)>) -> Record {
    Record::new(
        fields.into_iter().map(|(k, v)| (Str::from(k), v)).collect(),
        Origin::new("t"),
    )
}

fn line(fmt: &str, style: Style, datefmt: Option<&str>, r: &Record) -> String {
    let spec = TextFormat {
        format: fmt.into(),
        datefmt: datefmt.map(Into::into),
        style,
        utc: false,
    };
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let mut t = Template::compile_with_tz(&spec, tz).unwrap();
    let mut out = Vec::new();
    t.format(r, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn default_format_with_asctime() {
    let r = rec(vec![
        ("name", Value::str("app")),
        ("msg", Value::str("hi")),
        ("levelname", Value::str("INFO")),
        ("created", Value::Float(1772690889.5)),
        ("msecs", Value::Float(500.0)),
    ]);
    let got = line(crate::config::DEFAULT_FORMAT, Style::Percent, None, &r);
    assert_eq!(got, "2026-03-05 07:08:09,500 INFO     app hi\n");
}

#[test]
fn missing_field_renders_dash_with_width() {
    let r = rec(vec![("msg", Value::str("m"))]);
    assert_eq!(
        line(
            "[%(user)5s|%(user)-3d]%(message)s",
            Style::Percent,
            None,
            &r
        ),
        "[    -|-  ]m\n"
    );
    assert_eq!(line("{user:>3}{message}", Style::Brace, None, &r), "  -m\n");
    assert_eq!(line("$user ${message}", Style::Dollar, None, &r), "- m\n");
}

#[test]
fn defaults_follow_make_log_record() {
    let r = rec(vec![]);
    assert_eq!(
        line(
            "%(name)s|%(levelname)s|%(levelno)s|%(lineno)d|%(pathname)r|%(message)r",
            Style::Percent,
            None,
            &r
        ),
        "None|Level None|None|0|''|''\n"
    );
}

#[test]
fn message_applies_args_and_appends_exc_and_stack() {
    let r = rec(vec![
        ("msg", Value::str("a=%d b=%s")),
        (
            "args",
            Value::Tuple(vec![Value::Int(1), Value::str("x")].into()),
        ),
        ("exc_text", Value::str("Traceback\nE")),
        ("stack_info", Value::str("Stack (most recent call last):")),
    ]);
    assert_eq!(
        line("%(message)s", Style::Percent, None, &r),
        "a=1 b=x\nTraceback\nE\nStack (most recent call last):\n"
    );
}

#[test]
fn bad_formats_fail_at_load_with_position() {
    for (f, style, pos) in [
        ("%(name)s %(x)z", Style::Percent, 13),
        ("hello", Style::Percent, 0),
        ("%(name)s %(x", Style::Percent, 9),
        ("%(name)s %d", Style::Percent, 9),
        ("{name} }", Style::Brace, 7),
        ("{0}", Style::Brace, 0),
        ("$name $", Style::Dollar, 6),
        ("no fields", Style::Dollar, 0),
    ] {
        let spec = TextFormat {
            format: f.into(),
            datefmt: None,
            style,
            utc: false,
        };
        let e = Template::compile(&spec).unwrap_err();
        assert_eq!(e.pos, pos, "{f}: {e}");
    }
}

#[test]
fn template_is_send() {
    fn send<T: Send>() {}
    send::<Template>();
}

mod differential;
mod property;
