//! The serde mirror of the cookbook's `"logging"` key: a
//! `logging.config.dictConfig` dictionary, as far as logrelay can honour
//! it. Key names are Python's (`maxBytes`, `backupCount`, `atTime`), since
//! dictConfig passes them to the handler's constructor as keyword
//! arguments; a key Python would reject with a `TypeError` is an error
//! here too (`deny_unknown_fields`).
//!
//! It is read in the native file's two passes (`config::read`):
//! [`LoggingProbes`] and `kinds` are pass 1 inside `logging` (which
//! struct each handler is), [`DictSeed`] is pass 2.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::config::error::{one_of, Report};
use crate::config::seed::{once, untagged_typed, LevelFile, Named, NamedSeed, Probe, Typed};
use crate::config::Style;

/// Reads `"logging"` with the handler classes found in pass 1.
pub struct DictSeed<'a> {
    /// What pass 1 found.
    pub kinds: &'a DictKinds,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DictKey {
    Version,
    Incremental,
    DisableExistingLoggers,
    Formatters,
    Filters,
    Handlers,
    Loggers,
    Root,
}

impl<'de> DeserializeSeed<'de> for DictSeed<'_> {
    type Value = DictConfig;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<DictConfig, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DictSeed<'_> {
    type Value = DictConfig;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a logging.config.dictConfig object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DictConfig, A::Error> {
        let k = self.kinds;
        let mut c = DictConfig::default();
        while let Some(key) = map.next_key::<DictKey>()? {
            match key {
                DictKey::Version => once(&mut c.version, map.next_value()?, "version")?,
                DictKey::Incremental => once(&mut c.incremental, map.next_value()?, "incremental")?,
                DictKey::DisableExistingLoggers => once(
                    &mut c.disable_existing_loggers,
                    map.next_value()?,
                    "disable_existing_loggers",
                )?,
                DictKey::Formatters => {
                    let v = map.next_value_seed(NamedSeed {
                        kinds: &k.formatters,
                    })?;
                    once(&mut c.formatters, v, "formatters")?
                }
                DictKey::Filters => {
                    let v = map.next_value_seed(NamedSeed { kinds: &k.filters })?;
                    once(&mut c.filters, v, "filters")?
                }
                DictKey::Handlers => {
                    let v = map.next_value_seed(NamedSeed { kinds: &k.handlers })?;
                    once(&mut c.handlers, v, "handlers")?
                }
                DictKey::Loggers => {
                    let v: Named<LoggerFile> = map.next_value()?;
                    once(&mut c.loggers, v.0, "loggers")?
                }
                DictKey::Root => once(&mut c.root, map.next_value()?, "root")?,
            }
        }
        Ok(c)
    }
}

/// Pass 1 inside `logging`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a logging.config.dictConfig object")]
pub struct LoggingProbes {
    /// `formatters`: `()` / `class`.
    #[serde(default)]
    pub formatters: Option<Named<Probe>>,
    /// `filters`: `()`.
    #[serde(default)]
    pub filters: Option<Named<Probe>>,
    /// `handlers`: `class` / `()`.
    #[serde(default)]
    pub handlers: Option<Named<Probe>>,
}

/// The tags found in pass 1 inside `logging`, resolved.
#[derive(Debug, Default)]
pub struct DictKinds {
    /// Formatters to read (`None`: a factory, reported).
    pub formatters: Vec<(String, Option<()>)>,
    /// Filters to read.
    pub filters: Vec<(String, Option<()>)>,
    /// Handler classes.
    pub handlers: Vec<(String, Option<HandlerClass>)>,
}

/// Pass 1 inside `logging`: check the `class` and `()` keys, so pass 2
/// knows which struct each handler is and skips what is reported.
pub(crate) fn kinds(p: &LoggingProbes, r: &mut Report) -> DictKinds {
    let mut k = DictKinds::default();
    for (name, probe) in p.handlers.iter().flat_map(|n| &n.0) {
        let path = format!("logging.handlers.{name}");
        let classes: Vec<&str> = HandlerClass::ALL.iter().map(|(n, _)| *n).collect();
        let kind = match (&probe.factory, &probe.class) {
            (Some(f), _) => {
                r.error(
                    format!("{path}.()"),
                    format!(
                        "handler factory {f:?} is not supported (use a class: {})",
                        one_of(&classes)
                    ),
                );
                None
            }
            (None, None) => {
                r.error(&path, format!("missing `class` ({})", one_of(&classes)));
                None
            }
            (None, Some(c)) => {
                let kind = HandlerClass::from_name(c);
                if kind.is_none() {
                    r.error(
                        format!("{path}.class"),
                        format!(
                            "handler class {c:?} is not supported (supported: {})",
                            one_of(&classes)
                        ),
                    );
                }
                kind
            }
        };
        k.handlers.push((name.clone(), kind));
    }
    for (name, probe) in p.formatters.iter().flat_map(|n| &n.0) {
        let path = format!("logging.formatters.{name}");
        let mut ok = true;
        for (key, value) in [("()", &probe.factory), ("class", &probe.class)] {
            if let Some(v) = value {
                if v != "logging.Formatter" {
                    r.error(
                        format!("{path}.{key}"),
                        format!("formatter {v:?} is not supported (only logging.Formatter)"),
                    );
                    ok = false;
                }
            }
        }
        k.formatters.push((name.clone(), ok.then_some(())));
    }
    for (name, probe) in p.filters.iter().flat_map(|n| &n.0) {
        let path = format!("logging.filters.{name}");
        let ok = match &probe.factory {
            Some(f) if f != "logging.Filter" => {
                r.error(
                    format!("{path}.()"),
                    format!("filter factory {f:?} is not supported (only logging.Filter, as {{\"name\": ...}})"),
                );
                false
            }
            _ => true,
        };
        k.filters.push((name.clone(), ok.then_some(())));
    }
    k
}

/// A `logging.config.dictConfig` dictionary.
#[derive(Debug, Default)]
pub struct DictConfig {
    /// `"version": 1`: required by Python, and only 1 exists.
    pub version: Option<i64>,
    /// `"incremental": false`: `true` would only adjust handlers that
    /// already exist, and a fresh listener has none, so it is refused.
    pub incremental: Option<bool>,
    /// `"disable_existing_loggers": true`: accepted; it only concerns
    /// loggers the Python listener itself imported, which logrelay has not.
    pub disable_existing_loggers: Option<bool>,
    /// `"formatters": {"detailed": {"format": "%(asctime)s %(message)s"}}`.
    pub formatters: Option<Vec<(String, FormatterFile)>>,
    /// `"filters": {"payments": {"name": "payments"}}`: `logging.Filter(name)` only.
    pub filters: Option<Vec<(String, DictFilterFile)>>,
    /// `"handlers": {"file": {"class": "logging.FileHandler", "filename": "run/app.log"}}`.
    pub handlers: Option<Vec<(String, HandlerFile)>>,
    /// `"loggers": {"payments": {"handlers": ["file"], "propagate": false}}`.
    pub loggers: Option<Vec<(String, LoggerFile)>>,
    /// `"root": {"level": "DEBUG", "handlers": ["file"]}`.
    pub root: Option<LoggerFile>,
}

/// A dictConfig formatter: `logging.Formatter(format, datefmt, style)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a formatter object")]
pub struct FormatterFile {
    /// `"format": "%(asctime)s %(levelname)s %(message)s"` (default `%(message)s`, as Python).
    pub format: Option<String>,
    /// `"fmt": "%(message)s"`: the same, as spelled with a `"()"` factory
    /// (whose keys are the constructor's arguments).
    pub fmt: Option<String>,
    /// `"datefmt": "%Y-%m-%d %H:%M:%S"`.
    pub datefmt: Option<String>,
    /// `"style": "%"` (default) | `"{"` | `"$"`.
    pub style: Option<Style>,
    /// `"validate": true`: accepted; logrelay always checks the format.
    pub validate: Option<bool>,
    /// `"class": "logging.Formatter"`: the only class supported.
    pub class: Option<String>,
    /// `"()": "logging.Formatter"`: the only factory supported.
    #[serde(rename = "()")]
    pub factory: Option<String>,
}
untagged_typed!(FormatterFile);

/// A dictConfig filter: `logging.Filter(name)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a filter object")]
pub struct DictFilterFile {
    /// `"name": "payments"`: passes `payments` and `payments.*` (default `""`: everything).
    pub name: Option<String>,
    /// `"()": "logging.Filter"`: the only factory supported.
    #[serde(rename = "()")]
    pub factory: Option<String>,
}
untagged_typed!(DictFilterFile);

/// A dictConfig logger (or `root`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a logger object")]
pub struct LoggerFile {
    /// `"level": "DEBUG"`: checked, but not applied: the sender already
    /// applied its own levels, as the cookbook listener's `Logger.handle` does.
    pub level: Option<LevelFile>,
    /// `"propagate": false`: records stop here instead of also reaching
    /// the handlers of parent loggers (default true).
    pub propagate: Option<bool>,
    /// `"filters": ["payments"]`: dictConfig filter names; they apply only
    /// to records logged on this very logger, as in Python.
    pub filters: Option<Vec<String>>,
    /// `"handlers": ["file", "console"]`: dictConfig handler names.
    pub handlers: Option<Vec<String>>,
}

/// The handler classes logrelay implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerClass {
    /// `logging.StreamHandler`.
    Stream,
    /// `logging.FileHandler`.
    File,
    /// `logging.handlers.RotatingFileHandler`.
    Rotating,
    /// `logging.handlers.TimedRotatingFileHandler`.
    Timed,
    /// `logging.handlers.SocketHandler`.
    Socket,
}

impl HandlerClass {
    /// Every supported class, by its Python name.
    pub const ALL: [(&'static str, HandlerClass); 5] = [
        ("logging.StreamHandler", HandlerClass::Stream),
        ("logging.FileHandler", HandlerClass::File),
        (
            "logging.handlers.RotatingFileHandler",
            HandlerClass::Rotating,
        ),
        (
            "logging.handlers.TimedRotatingFileHandler",
            HandlerClass::Timed,
        ),
        ("logging.handlers.SocketHandler", HandlerClass::Socket),
    ];

    /// The class for a Python name.
    pub fn from_name(name: &str) -> Option<HandlerClass> {
        HandlerClass::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// One dictConfig handler, by class.
#[derive(Debug)]
pub enum HandlerFile {
    /// `logging.StreamHandler`.
    Stream(StreamHandlerFile),
    /// `logging.FileHandler`.
    File(FileHandlerFile),
    /// `logging.handlers.RotatingFileHandler`.
    Rotating(RotatingHandlerFile),
    /// `logging.handlers.TimedRotatingFileHandler`.
    Timed(TimedHandlerFile),
    /// `logging.handlers.SocketHandler`.
    Socket(SocketHandlerFile),
}

impl Typed for HandlerFile {
    type Kind = HandlerClass;
    fn next_value<'de, A: MapAccess<'de>>(
        kind: HandlerClass,
        map: &mut A,
    ) -> Result<Self, A::Error> {
        Ok(match kind {
            HandlerClass::Stream => HandlerFile::Stream(map.next_value()?),
            HandlerClass::File => HandlerFile::File(map.next_value()?),
            HandlerClass::Rotating => HandlerFile::Rotating(map.next_value()?),
            HandlerClass::Timed => HandlerFile::Timed(map.next_value()?),
            HandlerClass::Socket => HandlerFile::Socket(map.next_value()?),
        })
    }
}

/// `logging.StreamHandler(stream)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a StreamHandler object")]
pub struct StreamHandlerFile {
    /// `"class": "logging.StreamHandler"`.
    pub class: IgnoredAny,
    /// `"level": "INFO"`: records below it are not written (default NOTSET).
    pub level: Option<LevelFile>,
    /// `"formatter": "detailed"` (default: `%(message)s`, as Python).
    pub formatter: Option<String>,
    /// `"filters": ["payments"]`: dictConfig filter names, all must pass.
    pub filters: Option<Vec<String>>,
    /// `"stream": "ext://sys.stdout"` or `"ext://sys.stderr"` (the default, as Python).
    pub stream: Option<String>,
}

/// `logging.FileHandler(filename, mode, encoding, delay, errors)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a FileHandler object")]
pub struct FileHandlerFile {
    /// `"class": "logging.FileHandler"`.
    pub class: IgnoredAny,
    /// `"level": "INFO"`.
    pub level: Option<LevelFile>,
    /// `"formatter": "detailed"`.
    pub formatter: Option<String>,
    /// `"filters": ["payments"]`.
    pub filters: Option<Vec<String>>,
    /// `"filename": "run/app.log"`, relative to the config's directory.
    pub filename: String,
    /// `"mode": "a"` (default, append) or `"w"` (truncate when opened).
    pub mode: Option<String>,
    /// `"encoding": "utf-8"`: the only encoding logrelay writes.
    pub encoding: Option<String>,
    /// `"delay": true`: accepted; the file is opened by the output task anyway.
    pub delay: Option<bool>,
    /// `"errors": "strict"`: accepted; logrelay writes invalid text as U+FFFD.
    pub errors: Option<String>,
}

/// `logging.handlers.RotatingFileHandler(filename, mode, maxBytes, backupCount, ...)`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a RotatingFileHandler object"
)]
pub struct RotatingHandlerFile {
    /// `"class": "logging.handlers.RotatingFileHandler"`.
    pub class: IgnoredAny,
    /// `"level": "DEBUG"`.
    pub level: Option<LevelFile>,
    /// `"formatter": "detailed"`.
    pub formatter: Option<String>,
    /// `"filters": ["payments"]`.
    pub filters: Option<Vec<String>>,
    /// `"filename": "run/app.log"`.
    pub filename: String,
    /// `"mode": "a"`; Python forces `"a"` when `maxBytes` > 0.
    pub mode: Option<String>,
    /// `"maxBytes": 1024`: rotate when the file would reach it (default 0 = never).
    pub max_bytes: Option<u64>,
    /// `"backupCount": 10`: rotated files kept (default 0).
    pub backup_count: Option<u32>,
    /// `"encoding": "utf-8"`.
    pub encoding: Option<String>,
    /// `"delay": true`.
    pub delay: Option<bool>,
    /// `"errors": "strict"`.
    pub errors: Option<String>,
}

/// `logging.handlers.TimedRotatingFileHandler(filename, when, interval, ...)`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a TimedRotatingFileHandler object"
)]
pub struct TimedHandlerFile {
    /// `"class": "logging.handlers.TimedRotatingFileHandler"`.
    pub class: IgnoredAny,
    /// `"level": "DEBUG"`.
    pub level: Option<LevelFile>,
    /// `"formatter": "detailed"`.
    pub formatter: Option<String>,
    /// `"filters": ["payments"]`.
    pub filters: Option<Vec<String>>,
    /// `"filename": "run/app.log"`.
    pub filename: String,
    /// `"when": "midnight"` (default `"h"`, case-insensitive, as Python).
    pub when: Option<String>,
    /// `"interval": 1` (the default).
    pub interval: Option<u32>,
    /// `"backupCount": 7` (default 0: keep all).
    pub backup_count: Option<u32>,
    /// `"encoding": "utf-8"`.
    pub encoding: Option<String>,
    /// `"delay": true`.
    pub delay: Option<bool>,
    /// `"utc": true`: rotation times in UTC.
    pub utc: Option<bool>,
    /// `"atTime": "03:00"`: Python wants a `datetime.time`, which JSON
    /// cannot hold; logrelay takes `HH:MM[:SS]`.
    pub at_time: Option<String>,
    /// `"errors": "strict"`.
    pub errors: Option<String>,
}

/// Deserialize a present value (even `null`) as `Some`, so a missing key
/// (`None`) differs from `null` (`Some(None)`).
fn present<'de, D: de::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `logging.handlers.SocketHandler(host, port)`: becomes a forward output
/// with the pickle encoder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a SocketHandler object")]
pub struct SocketHandlerFile {
    /// `"class": "logging.handlers.SocketHandler"`.
    pub class: IgnoredAny,
    /// `"level": "ERROR"`.
    pub level: Option<LevelFile>,
    /// `"formatter": "detailed"`: accepted and unused, as in Python (records travel pickled).
    pub formatter: Option<String>,
    /// `"filters": ["payments"]`.
    pub filters: Option<Vec<String>>,
    /// `"host": "logs.internal"`, or a Unix socket path when `port` is null.
    pub host: String,
    /// `"port": 9020`, or `null` for a Unix socket at `host` (as Python).
    #[serde(default, deserialize_with = "present")]
    pub port: Option<Option<u16>>,
}
