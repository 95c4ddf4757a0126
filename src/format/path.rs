//! Path templates: a file output's `path` with `{field}` placeholders
//! (record attributes, rendered as Python's `str()`) and strftime `%`
//! fields (from the record's `created`), so one output can write
//! `run/{name}.log` or `run/%Y-%m-%d/{levelname}.log`.
//!
//! This module parses and renders (config checks a template with
//! [`classify`]); the file output's pool keeps one file per rendered path,
//! and the nats output renders its subjects with it. A rendered value can never leave the directory the template
//! names: `/` and NUL in a value become `_`, and a path component that a
//! value turned into `.` or `..` has its dots replaced.

use jiff::tz::TimeZone;

use crate::format::pyrepr;
use crate::format::strftime::{strftime, Tm};
use crate::record::Record;

/// strftime conversions a template may use: glibc's letters. Anything
/// else after `%` is a config error, so a typo is not copied into file
/// names verbatim (glibc's habit).
const TIME_FIELDS: &str = "aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ";

/// What is wrong with a path template. Positions count characters from 0.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{` without its `}`.
    #[error("unterminated `{{` at character {0} (write `{{{{` for a literal brace)")]
    Unterminated(usize),
    /// `{}`.
    #[error("empty `{{}}` at character {0}: name a record field, as in `{{name}}`")]
    Empty(usize),
    /// A `}` that closes nothing.
    #[error("single `}}` at character {0} (write `}}}}` for a literal brace)")]
    StrayClose(usize),
    /// `%` not followed by a strftime letter or `%`.
    #[error("`%` at character {0} must be followed by a strftime field such as `%Y`, or `%%`")]
    BadPercent(usize),
}

/// One part of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Text copied as is (`{{`, `}}` and `%%` already unescaped).
    Lit(String),
    /// A record attribute.
    Field(String),
    /// One strftime conversion, with its `%` (`"%Y"`).
    Time(String),
}

/// What a config's `path` turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum PathKind {
    /// No placeholders: this literal path (escapes undone).
    Literal(String),
    /// At least one `{field}` or `%` field.
    Template,
}

/// Parse `path` and say whether it is a template (config check).
pub fn classify(path: &str) -> Result<PathKind, TemplateError> {
    let pieces = parse(path)?;
    if pieces.iter().all(|p| matches!(p, Piece::Lit(_))) {
        Ok(PathKind::Literal(
            pieces
                .into_iter()
                .map(|p| match p {
                    Piece::Lit(s) | Piece::Field(s) | Piece::Time(s) => s,
                })
                .collect(),
        ))
    } else {
        Ok(PathKind::Template)
    }
}

/// Escape `text` so a template reproduces it literally (the config's
/// directory, prefixed to a relative template, may hold `{` or `%`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '{' => out.push_str("{{"),
            '}' => out.push_str("}}"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out
}

fn parse(s: &str) -> Result<Vec<Piece>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let special = match (c, next) {
            ('{', Some('{')) | ('}', Some('}')) | ('%', Some('%')) => {
                lit.push(c);
                i += 2;
                continue;
            }
            ('{', _) => {
                let len = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '}' || c == '{')
                    .filter(|&n| chars[i + 1 + n] == '}')
                    .ok_or(TemplateError::Unterminated(i))?;
                if len == 0 {
                    return Err(TemplateError::Empty(i));
                }
                let field: String = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 2;
                Piece::Field(field)
            }
            ('}', _) => return Err(TemplateError::StrayClose(i)),
            ('%', Some(f)) if TIME_FIELDS.contains(f) => {
                i += 2;
                Piece::Time(format!("%{f}"))
            }
            ('%', _) => return Err(TemplateError::BadPercent(i)),
            _ => {
                lit.push(c);
                i += 1;
                continue;
            }
        };
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(special);
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// A compiled template, rendering one path per record.
pub struct PathTemplate {
    pieces: Vec<Piece>,
    utc: bool,
    tz: TimeZone,
    uses_time: bool,
    /// The broken-down time of the last second seen: records come in
    /// bursts from the same second, and the zone lookup is not free.
    tm: Option<(i64, Tm)>,
    /// Byte ranges of `out` that came from values (reused buffer).
    ranges: Vec<(usize, usize)>,
}

impl PathTemplate {
    /// Compile `path`; times in local time (`TZ`, as Python's
    /// `time.localtime`) or UTC.
    pub fn new(path: &str, utc: bool) -> Result<PathTemplate, TemplateError> {
        PathTemplate::with_tz(path, utc, super::clock::local_zone())
    }

    /// [`PathTemplate::new`] with an explicit local zone (tests).
    pub fn with_tz(path: &str, utc: bool, tz: TimeZone) -> Result<PathTemplate, TemplateError> {
        let pieces = parse(path)?;
        let uses_time = pieces.iter().any(|p| matches!(p, Piece::Time(_)));
        Ok(PathTemplate {
            pieces,
            utc,
            tz,
            uses_time,
            tm: None,
            ranges: Vec::new(),
        })
    }

    /// The record fields [`PathTemplate::render`] reads.
    pub fn reads(&self) -> crate::codec::Keep {
        let keep = crate::codec::Keep::fields(self.pieces.iter().filter_map(|p| match p {
            Piece::Field(f) => Some(f.as_str()),
            _ => None,
        }));
        if self.uses_time {
            keep.and(crate::codec::Keep::field("created"))
        } else {
            keep
        }
    }

    /// Write the path for `record` into `out` (cleared first).
    pub fn render(&mut self, record: &Record, out: &mut String) {
        out.clear();
        self.ranges.clear();
        if self.uses_time {
            self.update_tm(record);
        }
        for piece in &self.pieces {
            let start = out.len();
            match piece {
                Piece::Lit(s) => {
                    out.push_str(s);
                    continue;
                }
                Piece::Field(f) => match record.get(f) {
                    Some(v) => pyrepr::str(v, out),
                    // As the formatter renders a missing attribute.
                    None => out.push('-'),
                },
                Piece::Time(f) => {
                    if let Some((_, tm)) = &self.tm {
                        strftime(f, tm, out);
                    }
                }
            }
            sanitize(out, start);
            if out.len() == start {
                // An empty value would merge two components or leave a
                // trailing `/` (a directory, not a file).
                out.push('-');
            }
            self.ranges.push((start, out.len()));
        }
        fix_dots(out, &self.ranges);
    }

    /// The broken-down time of the record's `created` (now if it has none).
    fn update_tm(&mut self, record: &Record) {
        let secs = match record.get("created").and_then(|v| v.as_f64()) {
            Some(c) if c.is_finite() => c.floor() as i64,
            _ => super::clock::now_secs(),
        };
        if self.tm.as_ref().is_some_and(|(s, _)| *s == secs) {
            return;
        }
        self.tm = crate::format::clock::broken_down(secs, &self.tz, self.utc).map(|tm| (secs, tm));
    }
}

/// Replace `/` and NUL in `out[start..]` with `_`: a value must stay one
/// path component (and NUL cannot be in a path at all).
fn sanitize(out: &mut String, start: usize) {
    if out[start..].contains(['/', '\0']) {
        let clean: String = out[start..]
            .chars()
            .map(|c| if c == '/' || c == '\0' { '_' } else { c })
            .collect();
        out.truncate(start);
        out.push_str(&clean);
    }
}

/// A component that a value made `.` or `..` (`out/{name}` with name
/// `..`, or `out/.{name}` with name `.`) gets `_` for each dot. Components
/// that are all template text (`../logs/{name}.log`) are the user's
/// choice and stay.
fn fix_dots(out: &mut String, ranges: &[(usize, usize)]) {
    let mut start = 0;
    let mut fixes = Vec::new();
    for comp in out.split('/') {
        let end = start + comp.len();
        if (comp == "." || comp == "..") && ranges.iter().any(|&(a, b)| a < end && b > start) {
            fixes.push(start..end);
        }
        start = end + 1;
    }
    for r in fixes {
        // Same length, so the later ranges still hold.
        let n = r.len();
        out.replace_range(r, &"_".repeat(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    fn render(template: &str, r: &Record) -> String {
        let mut t = PathTemplate::with_tz(template, true, TimeZone::UTC).unwrap();
        let mut out = String::new();
        t.render(r, &mut out);
        out
    }

    #[test]
    fn classify_tells_literal_paths_from_templates() {
        assert_eq!(
            classify("run/app.log"),
            Ok(PathKind::Literal("run/app.log".into()))
        );
        assert_eq!(
            classify("run/{{x}}%%.log"),
            Ok(PathKind::Literal("run/{x}%.log".into()))
        );
        assert_eq!(classify("run/{name}.log"), Ok(PathKind::Template));
        assert_eq!(classify("run/%Y.log"), Ok(PathKind::Template));
    }

    #[test]
    fn parse_errors_say_where() {
        assert_eq!(
            classify("run/{name.log"),
            Err(TemplateError::Unterminated(4))
        );
        assert_eq!(
            classify("run/{a{b}.log"),
            Err(TemplateError::Unterminated(4))
        );
        assert_eq!(classify("run/{}.log"), Err(TemplateError::Empty(4)));
        assert_eq!(classify("run/a}.log"), Err(TemplateError::StrayClose(5)));
        assert_eq!(classify("run/100%"), Err(TemplateError::BadPercent(7)));
        assert_eq!(classify("run/%!"), Err(TemplateError::BadPercent(4)));
        assert_eq!(
            TemplateError::Unterminated(4).to_string(),
            "unterminated `{` at character 4 (write `{{` for a literal brace)"
        );
        assert_eq!(
            TemplateError::Empty(4).to_string(),
            "empty `{}` at character 4: name a record field, as in `{name}`"
        );
    }

    #[test]
    fn escape_round_trips_through_classify() {
        let dir = "/srv/100%/{odd}";
        assert_eq!(classify(&escape(dir)), Ok(PathKind::Literal(dir.into())));
    }

    #[test]
    fn fields_render_as_python_str() {
        let r = Record::of(&[
            ("name", Value::str("app.db")),
            ("levelname", Value::str("INFO")),
            ("process", Value::Int(4242)),
            ("ratio", Value::Float(0.5)),
            ("flag", Value::None),
        ]);
        assert_eq!(
            render("out/{name}-{levelname}-{process}-{ratio}-{flag}.log", &r),
            "out/app.db-INFO-4242-0.5-None.log"
        );
        assert_eq!(render("out/{missing}.log", &r), "out/-.log");
        assert_eq!(render("out/{{{name}}}.log", &r), "out/{app.db}.log");
    }

    #[test]
    fn time_fields_come_from_created() {
        // 2024-02-29 13:04:05 UTC, day 60 of the year.
        let r = Record::of(&[("created", Value::Float(1_709_211_845.75))]);
        assert_eq!(
            render("out/%Y/%m/%d/%H%M%S-%j-%%.log", &r),
            "out/2024/02/29/130405-060-%.log"
        );
        let mut local = PathTemplate::with_tz(
            "%Y-%m-%d %H",
            false,
            TimeZone::get("America/New_York").unwrap(),
        )
        .unwrap();
        let mut out = String::new();
        local.render(&r, &mut out);
        assert_eq!(out, "2024-02-29 08");
    }

    #[test]
    fn values_cannot_leave_the_directory() {
        let name = |n: &str| Record::of(&[("name", Value::str(n))]);
        assert_eq!(
            render("out/{name}.log", &name("../../etc/x")),
            "out/.._.._etc_x.log"
        );
        assert_eq!(render("out/{name}", &name("..")), "out/__");
        assert_eq!(render("out/{name}", &name(".")), "out/_");
        assert_eq!(render("out/.{name}", &name(".")), "out/__");
        assert_eq!(render("out/{name}/x", &name("..")), "out/__/x");
        assert_eq!(render("out/{name}", &name("a\0b")), "out/a_b");
        assert_eq!(render("out/{name}/x", &name("")), "out/-/x");
        assert_eq!(render("out/{name}", &name("...")), "out/...");
        // Template text is the user's: `..` there stays.
        assert_eq!(render("../out/{name}", &name("a")), "../out/a");
    }
}
