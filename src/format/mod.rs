//! Text formatting: a compiled `logging.Formatter(format, datefmt, style)`
//! that writes, for a record dict `d`, exactly the bytes of
//! `Formatter(...).format(logging.makeLogRecord(d)) + "\n"` (CPython 3.11).
//!
//! The format is parsed once per output ([`Template::compile`]), formats
//! that can never work are config errors with a position, and per record
//! only the placeholders are rendered. `asctime` is cached per second.
//! Per record nothing is allocated in the common cases (str and int
//! fields, a str message without args): each placeholder remembers where
//! its key was in the last record ([`Record::get_hinted`]), since a sender
//! builds every record alike, and values are written straight into a
//! line buffer kept across records.
//!
//! Where Python would print `--- Logging error ---` and lose the record (an
//! attribute the format names is absent, or its value does not fit the
//! conversion), the line is still written: a missing value renders as `-`
//! through the same width and alignment, a misfit value as `str(value)` (as
//! `%s` would), and a rate-limited warning names the field.

pub mod brace;
pub(crate) mod clock;
pub mod dollar;
mod layout;
pub mod numfmt;
pub mod path;
mod percent;
mod printable;
pub mod printf;
pub mod pyrepr;
pub mod strftime;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;

use crate::codec::Keep;
use crate::record::{Record, Value};
pub use layout::{Style, TextFormat, DEFAULT_FORMAT};

/// A format string that can never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("format {format:?}: {reason} at position {pos}")]
pub struct FormatError {
    /// The format string (or datefmt) at fault.
    pub format: String,
    /// Character index of the problem (as Python counts: code points).
    pub pos: usize,
    /// What is wrong.
    pub reason: String,
}

impl FormatError {
    fn new(format: &str, pos: usize, reason: impl Into<String>) -> FormatError {
        FormatError {
            format: format.to_string(),
            pos,
            reason: reason.into(),
        }
    }
}

/// What a placeholder names. `message` and `asctime` are computed by the
/// Formatter; everything else is read from the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    /// `record.getMessage()`.
    Message,
    /// `formatTime(record, datefmt)`.
    Asctime,
    /// Any other attribute, by name, with where it was last found.
    Field(String, Cell<usize>),
}

impl Attr {
    fn of(name: &str) -> Attr {
        match name {
            "message" => Attr::Message,
            "asctime" => Attr::Asctime,
            other => Attr::Field(other.to_string(), Cell::new(0)),
        }
    }

    fn name(&self) -> &str {
        match self {
            Attr::Message => "message",
            Attr::Asctime => "asctime",
            Attr::Field(f, _) => f,
        }
    }
}

/// Where the attributes the Formatter itself reads were last found in a
/// record (see [`Record::get_hinted`]). `Cell`s, because the compiled
/// pieces are read while they are updated; a template is used by one
/// thread at a time.
#[derive(Clone, Debug, Default)]
struct Hints {
    msg: Cell<usize>,
    args: Cell<usize>,
    created: Cell<usize>,
    msecs: Cell<usize>,
    exc_text: Cell<usize>,
    stack_info: Cell<usize>,
}

/// `record.get(key)`, trying where `key` was found last time first.
#[inline]
fn lookup<'r>(record: &'r Record, key: &str, hint: &Cell<usize>) -> Option<&'r Value> {
    let (i, v) = record.get_hinted(key, hint.get())?;
    hint.set(i);
    Some(v)
}

/// The parsed format, per style.
#[derive(Debug, Clone)]
enum Body {
    Percent(Vec<percent::Piece>),
    Brace(Vec<brace::Piece>),
    Dollar(Vec<dollar::Piece>),
}

/// A compiled `logging.Formatter(format, datefmt, style)`. Each output owns
/// one (it caches and counts, hence `&mut self` to format).
#[derive(Debug, Clone)]
pub struct Template {
    body: Body,
    datefmt: Option<String>,
    utc: bool,
    tz: TimeZone,
    /// `Formatter.usesTime()`: only then is `asctime` computed.
    uses_time: bool,
    /// Second `cache_sec` formatted (`cache_text[..cache_len]`, with the
    /// `,` before msecs when there is no datefmt), followed by the msecs
    /// of the last record: the whole is that record's `asctime`.
    cache_sec: Option<i64>,
    cache_text: String,
    cache_len: usize,
    hints: Hints,
    warnings: Warnings,
    line: String,
}

/// The value of one placeholder for one record.
pub(crate) enum Resolved<'a> {
    Borrowed(&'a Value),
    Owned(Value),
    /// A computed `str` (asctime, an absent msg), not made a `Value`
    /// unless a conversion other than `str` needs one.
    Text(&'a str),
    /// The record lacks the attribute: renders as `-`.
    Missing,
}

impl Resolved<'_> {
    /// The value; a [`Resolved::Text`] becomes a `str` (allocating).
    pub(crate) fn value(&self) -> Option<Cow<'_, Value>> {
        match self {
            Resolved::Borrowed(v) => Some(Cow::Borrowed(v)),
            Resolved::Owned(v) => Some(Cow::Borrowed(v)),
            Resolved::Text(t) => Some(Cow::Owned(Value::str(*t))),
            Resolved::Missing => None,
        }
    }
}

/// Per-record state: the record and the computed `asctime`.
pub(crate) struct Ctx<'r> {
    record: &'r Record,
    hints: &'r Hints,
    asctime: Option<&'r str>,
}

impl<'r> Ctx<'r> {
    /// Look an attribute up as `record.__dict__[name]` would after
    /// `makeLogRecord(d)` and `Formatter.format`.
    // Inlined into the render loops: per placeholder, the call itself
    // (saving registers, returning the enum) cost as much as the lookup.
    #[inline(always)]
    pub(crate) fn resolve(&self, attr: &Attr) -> Resolved<'r> {
        let found = match attr {
            Attr::Message => return get_message(self.record, self.hints),
            Attr::Asctime => match self.asctime {
                Some(t) => return Resolved::Text(t),
                None => self.record.get("asctime"),
            },
            Attr::Field(name, hint) => lookup(self.record, name, hint),
        };
        match found {
            Some(v) => Resolved::Borrowed(v),
            None => default_attr(attr.name()).map_or(Resolved::Missing, Resolved::Owned),
        }
    }
}

impl Template {
    /// Parse the format once, at config load, in the system time zone
    /// (`TZ`, else `/etc/localtime`), as Python's `time.localtime` uses.
    pub fn compile(spec: &TextFormat) -> Result<Template, FormatError> {
        Template::compile_with_tz(spec, clock::local_zone())
    }

    /// [`Template::compile`] with an explicit local time zone (tests).
    pub fn compile_with_tz(spec: &TextFormat, tz: TimeZone) -> Result<Template, FormatError> {
        let f = spec.format.as_str();
        // Formatter falls back to the style's default when fmt is empty.
        let f = match (f.is_empty(), spec.style) {
            (false, _) => f,
            (true, Style::Percent) => "%(message)s",
            (true, Style::Brace) => "{message}",
            (true, Style::Dollar) => "${message}",
        };
        let (body, uses_time) = match spec.style {
            Style::Percent => (
                Body::Percent(percent::compile(f)?),
                f.contains("%(asctime)"),
            ),
            Style::Brace => (Body::Brace(brace::compile(f)?), f.contains("{asctime")),
            Style::Dollar => (
                Body::Dollar(dollar::compile(f)?),
                f.contains("$asctime") || f.contains("${asctime}"),
            ),
        };
        if let Some(d) = &spec.datefmt {
            if let Some(pos) = d.chars().position(|c| c == '\0') {
                return Err(FormatError::new(
                    d,
                    pos,
                    "embedded null character in datefmt",
                ));
            }
        }
        Ok(Template {
            body,
            // Python tests `if datefmt:`, so "" means the default.
            datefmt: spec.datefmt.clone().filter(|d| !d.is_empty()),
            utc: spec.utc,
            tz,
            uses_time,
            cache_sec: None,
            cache_text: String::new(),
            cache_len: 0,
            hints: Hints::default(),
            warnings: Warnings::default(),
            line: String::with_capacity(256),
        })
    }

    /// The record fields formatting can read: the placeholders' (with
    /// `msg` and `args` for `message`, `created` and `msecs` for
    /// `asctime`), and the `exc_text` and `stack_info` every line may end
    /// with.
    pub fn reads(&self) -> Keep {
        let mut keep = Keep::fields(["exc_text", "stack_info"]);
        if self.uses_time {
            keep = keep.and(Keep::fields(["created", "msecs", "asctime"]));
        }
        let attrs: Vec<&Attr> = match &self.body {
            Body::Percent(p) => p.iter().filter_map(percent::Piece::attr).collect(),
            Body::Brace(p) => p.iter().filter_map(brace::Piece::attr).collect(),
            Body::Dollar(p) => p.iter().filter_map(dollar::Piece::attr).collect(),
        };
        for attr in attrs {
            keep = keep.and(match attr {
                Attr::Message => Keep::fields(["msg", "args"]),
                Attr::Asctime => Keep::fields(["created", "msecs", "asctime"]),
                Attr::Field(name, _) => Keep::field(name),
            });
        }
        keep
    }

    /// Name the output in the rate-limited warnings this template logs.
    pub fn set_output_name(&mut self, name: &str) {
        self.warnings.output = name.to_string();
    }

    /// Append the formatted line for `record`, plus `\n`, to `out`.
    pub fn format(&mut self, record: &Record, out: &mut Vec<u8>) {
        self.warnings.begin_record();
        let asctime = match self.uses_time && self.asctime(record) {
            true => Some(self.cache_text.as_str()),
            false if self.uses_time => Some("-"),
            false => None,
        };
        // Rendered into a line kept across records (no allocation once it
        // has grown), then copied: `out` may hold bytes that are not UTF-8,
        // so it cannot be borrowed as a `String`.
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let ctx = Ctx {
            record,
            hints: &self.hints,
            asctime,
        };
        match &self.body {
            Body::Percent(p) => percent::render(p, &ctx, &mut line, &mut self.warnings),
            Body::Brace(p) => brace::render(p, &ctx, &mut line, &mut self.warnings),
            Body::Dollar(p) => dollar::render(p, &ctx, &mut line, &mut self.warnings),
        }
        let h = &self.hints;
        for (key, hint) in [("exc_text", &h.exc_text), ("stack_info", &h.stack_info)] {
            if let Some(v) = lookup(record, key, hint).filter(|v| pyrepr::truthy(v)) {
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                pyrepr::str(v, &mut line);
            }
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
        self.line = line;
    }

    /// `formatTime(record, datefmt)` into `cache_text`, cached per second
    /// of `created`; `false` (and a warning) where `created` is not a
    /// number, for which `asctime` is `-`.
    fn asctime(&mut self, record: &Record) -> bool {
        let created = match lookup(record, "created", &self.hints.created) {
            Some(v) => v.as_f64(),
            None => Some(now_secs()),
        };
        let Some(created) = created.filter(|c| c.is_finite()) else {
            self.warnings.warn("asctime", "created is not a number");
            return false;
        };
        let sec = created.floor() as i64;
        if self.cache_sec != Some(sec) {
            self.cache_text.clear();
            let fmt = self.datefmt.as_deref().unwrap_or("%Y-%m-%d %H:%M:%S");
            match clock::broken_down(sec, &self.tz, self.utc) {
                Some(tm) => strftime::strftime(fmt, &tm, &mut self.cache_text),
                None => self.cache_text.push('-'),
            }
            if self.datefmt.is_none() {
                self.cache_text.push(',');
            }
            self.cache_sec = Some(sec);
            self.cache_len = self.cache_text.len();
        }
        // Drop the last record's msecs.
        self.cache_text.truncate(self.cache_len);
        if self.datefmt.is_some() {
            return true;
        }
        // default_msec_format = '%s,%03d' % (t, record.msecs)
        let msecs = match lookup(record, "msecs", &self.hints.msecs) {
            Some(v) => Resolved::Borrowed(v),
            None => default_attr("msecs").map_or(Resolved::Missing, Resolved::Owned),
        };
        // What '%03d' writes for 0 <= msecs < 1000 (int() truncates; -0.0
        // gives 0), the only values Python computes.
        let ms = match msecs {
            Resolved::Borrowed(Value::Float(f)) if (0.0..1000.0).contains(f) => Some(*f as u32),
            Resolved::Borrowed(Value::Int(i)) if (0..1000).contains(i) => Some(*i as u32),
            _ => None,
        };
        if let Some(ms) = ms {
            for d in [ms / 100, ms / 10 % 10, ms % 10] {
                self.cache_text.push(char::from(b'0' + d as u8));
            }
            return true;
        }
        let spec = printf::Spec {
            zero: true,
            width: 3,
            ty: 'd',
            ..printf::Spec::default()
        };
        if let Some(v) = msecs.value() {
            if printf::format_value(&spec, &v, &mut self.cache_text).is_err() {
                self.warnings.warn("msecs", "value does not fit %03d");
                pyrepr::str(&v, &mut self.cache_text);
            }
        }
        true
    }
}

/// `LogRecord.getMessage()`: `str(msg)`, then `% args` if args is truthy.
/// Where `msg % args` raises, Python loses the record; we keep `str(msg)`.
/// A `str` msg without args (the common case) is borrowed as is.
fn get_message<'r>(record: &'r Record, hints: &Hints) -> Resolved<'r> {
    let msg = lookup(record, "msg", &hints.msg);
    let args = lookup(record, "args", &hints.args).filter(|a| pyrepr::truthy(a));
    let text = match (msg, args) {
        (Some(v @ Value::Str(_)), None) => return Resolved::Borrowed(v),
        (None, _) => return Resolved::Text(""),
        (Some(m), None) => {
            let mut s = String::new();
            pyrepr::str(m, &mut s);
            Value::Str(s.into())
        }
        (Some(m), Some(a)) => {
            let mut s = String::new();
            pyrepr::str(m, &mut s);
            match printf::apply(&s, a) {
                Some(t) => Value::Str(t.into()),
                None => Value::Str(s.into()),
            }
        }
    };
    Resolved::Owned(text)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The attributes `LogRecord(None, None, "", 0, "", (), None, None)` sets,
/// which `makeLogRecord(d)` keeps where `d` lacks them (values as CPython
/// 3.11 gives them in a listener process: thread and process are ours).
fn default_attr(name: &str) -> Option<Value> {
    Some(match name {
        "name" | "levelno" | "exc_info" | "exc_text" | "stack_info" | "funcName" => Value::None,
        "msg" | "pathname" | "filename" | "module" => Value::str(""),
        "args" => Value::Tuple(Default::default()),
        "levelname" => Value::str("Level None"),
        "lineno" => Value::Int(0),
        "created" => Value::Float(now_secs()),
        "msecs" => {
            let t = now_secs();
            Value::Float(((t - t.trunc()) * 1000.0).trunc())
        }
        "relativeCreated" => Value::Float(process_start().elapsed().as_secs_f64() * 1000.0),
        // SAFETY: pthread_self has no preconditions; Python's
        // threading.get_ident() returns the same number.
        "thread" => Value::Int(unsafe { libc::pthread_self() } as i64),
        "threadName" => Value::str("MainThread"),
        "processName" => Value::str("MainProcess"),
        "process" => Value::Int(i64::from(std::process::id())),
        _ => return None,
    })
}

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Rate-limited warnings about records Python could not have formatted:
/// one line per second per field, with the count of suppressed ones.
/// Clones of a template (one per thread that formats for the output)
/// share the limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Warnings {
    output: String,
    last: std::sync::Arc<std::sync::Mutex<HashMap<String, (Instant, u64)>>>,
    /// Fields already noted for the record being formatted. A format that
    /// names a field several times (`%(user)s ... %(user)r`) notes it once
    /// per record, so `suppressed` counts records, not placeholders.
    noted: Vec<String>,
}

impl Warnings {
    /// Start a new record: each field is noted at most once per record.
    fn begin_record(&mut self) {
        self.noted.clear();
    }

    /// Note a problem with `field`; log it unless one was logged for the
    /// same field within the last second.
    pub(crate) fn warn(&mut self, field: &str, what: &str) {
        if self.noted.iter().any(|f| f == field) {
            return;
        }
        self.noted.push(field.to_string());
        let now = Instant::now();
        // Nothing panics while the lock is held; a poisoned map is whole.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(field) {
            Some((at, suppressed)) if now.duration_since(*at).as_secs() < 1 => *suppressed += 1,
            Some((at, suppressed)) => {
                tracing::warn!(output = %self.output, field, suppressed = *suppressed, "{what}; wrote the line anyway.");
                *at = now;
                *suppressed = 0;
            }
            None => {
                tracing::warn!(output = %self.output, field, suppressed = 0u64, "{what}; wrote the line anyway.");
                last.insert(field.to_string(), (now, 0));
            }
        }
    }

    pub(crate) fn missing(&mut self, field: &str) {
        self.warn(
            field,
            "record lacks an attribute the format uses, wrote \"-\"",
        );
    }

    pub(crate) fn misfit(&mut self, field: &str) {
        self.warn(
            field,
            "attribute value does not fit its conversion, wrote str(value)",
        );
    }
}

#[cfg(test)]
mod tests;
