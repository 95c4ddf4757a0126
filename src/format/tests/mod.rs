//! Unit tests of the whole template against outputs taken from CPython.

use super::*;
use crate::record::Str;

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
    let r = Record::of(&[
        ("name", Value::str("app")),
        ("msg", Value::str("hi")),
        ("levelname", Value::str("INFO")),
        ("created", Value::Float(1772690889.5)),
        ("msecs", Value::Float(500.0)),
    ]);
    let got = line(crate::format::DEFAULT_FORMAT, Style::Percent, None, &r);
    assert_eq!(got, "2026-03-05 07:08:09,500 INFO     app hi\n");
}

#[test]
fn missing_field_renders_dash_with_width() {
    let r = Record::of(&[("msg", Value::str("m"))]);
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
    let r = Record::of(&[]);
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
    let r = Record::of(&[
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

#[test]
fn missing_field_warnings_are_rate_limited_per_field() {
    let mut w = Warnings::default();
    for _ in 0..1000 {
        w.begin_record();
        // A format naming `user` three times: one note per record.
        for _ in 0..3 {
            w.missing("user");
        }
    }
    w.missing("count");
    let suppressed = |w: &Warnings, f: &str| w.last.lock().unwrap().get(f).map(|e| e.1);
    assert_eq!(suppressed(&w, "user"), Some(999));
    assert_eq!(suppressed(&w, "count"), Some(0));
    // A clone (another thread's copy of the template) shares the limit.
    let mut other = w.clone();
    other.begin_record();
    other.missing("user");
    assert_eq!(suppressed(&w, "user"), Some(1000));
}

#[test]
fn misfit_values_render_as_str_with_width() {
    // Python raises TypeError for %d of a str; we keep the line.
    let r = Record::of(&[("msg", Value::str("m")), ("user", Value::str("bob"))]);
    assert_eq!(
        line("%(user)5d|%(msg)s", Style::Percent, None, &r),
        "  bob|m\n"
    );
    assert_eq!(line("{user:+d}|{msg}", Style::Brace, None, &r), "bob|m\n");
}

#[test]
fn message_falls_back_to_msg_when_args_do_not_fit() {
    let r = Record::of(&[
        ("msg", Value::str("%s and %s")),
        ("args", Value::Tuple(vec![Value::Int(1)].into())),
    ]);
    assert_eq!(line("%(message)s", Style::Percent, None, &r), "%s and %s\n");
}

#[test]
fn utc_and_datefmt_and_cache() {
    let spec = TextFormat {
        format: "%(asctime)s".into(),
        datefmt: Some("%d %b %Y %H:%M:%S %Z %z".into()),
        style: Style::Percent,
        utc: true,
    };
    let tz = TimeZone::get("Asia/Kolkata").unwrap();
    let mut t = Template::compile_with_tz(&spec, tz).unwrap();
    let mut out = Vec::new();
    for c in [1.25, 1.75, 2.0] {
        t.format(&Record::of(&[("created", Value::Float(c))]), &mut out);
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "01 Jan 1970 00:00:01 GMT +0000\n01 Jan 1970 00:00:01 GMT +0000\n01 Jan 1970 00:00:02 GMT +0000\n"
    );
}

mod differential;
mod property;

#[test]
fn msecs_render_as_percent_03d_of_python() {
    // '%s,%03d' % (t, msecs), values from CPython 3.11.
    let cases = [
        (Value::Float(0.0), "000"),
        (Value::Float(-0.0), "000"),
        (Value::Float(5.5), "005"),
        (Value::Float(999.9999), "999"),
        (Value::Float(1000.0), "1000"),
        (Value::Float(-1.0), "-01"),
        (Value::Float(-0.5), "000"),
        (Value::Float(-5.5), "-05"),
        (Value::Float(123.456), "123"),
        (Value::Float(1e20), "100000000000000000000"),
        (Value::Int(7), "007"),
        (Value::Bool(true), "001"),
    ];
    let spec = TextFormat {
        format: "%(asctime)s|%(message)s".into(),
        datefmt: None,
        style: Style::Percent,
        utc: false,
    };
    // One template for all: the cached second must not keep old msecs.
    let mut t = Template::compile_with_tz(&spec, TimeZone::UTC).unwrap();
    for (v, want) in cases {
        let r = Record::of(&[
            ("msg", Value::str("m")),
            ("created", Value::Float(0.25)),
            ("msecs", v.clone()),
        ]);
        let mut out = Vec::new();
        t.format(&r, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("1970-01-01 00:00:00,{want}|m\n"),
            "{v:?}"
        );
    }
}

#[test]
fn lookups_follow_keys_that_move_between_records() {
    // Position hints are only hints: records from different senders
    // order (or lack) keys differently.
    let fmt = "%(levelname)-5s %(name)s %(process)d %(user)s %(message)s";
    let a = Record::of(&[
        ("name", Value::str("a")),
        ("msg", Value::str("one")),
        ("levelname", Value::str("INFO")),
        ("process", Value::Int(1)),
        ("user", Value::str("u")),
    ]);
    let b = Record::of(&[
        ("user", Value::str("v")),
        ("process", Value::Int(2)),
        ("msg", Value::str("two %s")),
        ("args", Value::Tuple(vec![Value::Int(3)].into())),
        ("levelname", Value::str("WARN")),
        ("name", Value::str("b")),
        ("exc_text", Value::str("E")),
    ]);
    let c = Record::of(&[("msg", Value::str("three"))]);
    let spec = TextFormat {
        format: fmt.into(),
        datefmt: None,
        style: Style::Percent,
        utc: false,
    };
    let mut t = Template::compile_with_tz(&spec, TimeZone::UTC).unwrap();
    let mut out = Vec::new();
    for r in [&a, &b, &c, &a, &b] {
        let mut one = Vec::new();
        t.format(r, &mut one);
        assert_eq!(
            String::from_utf8(one.clone()).unwrap(),
            line(fmt, Style::Percent, None, r),
            "a fresh template agrees"
        );
        out.extend(one);
    }
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("INFO  a 1 u one\nWARN  b 2 v two 3\nE\nLevel None None "));
    assert!(out.ends_with(" - three\nINFO  a 1 u one\nWARN  b 2 v two 3\nE\n"));
}
