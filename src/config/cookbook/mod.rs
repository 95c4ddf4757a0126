//! Compatibility with the Python logging cookbook's socket listener: its
//! `listener.json` works unchanged.
//!
//! - Top-level `port` (default 9020), `host` (default `localhost`) and
//!   `socket` define one pickle input named [`INPUT_NAME`].
//! - `logging` holds a `logging.config.dictConfig` dictionary; its handlers
//!   become outputs named after them, and its loggers become routes.
//!
//! The cookbook listener passes each record to
//! `logging.getLogger(record.name).handle(record)`. That applies the
//! filters of that one logger, skips logger levels, then walks up the
//! hierarchy calling every handler whose level the record reaches (after
//! the handler's own filters), and stops after a logger with
//! `propagate: false`. `translate` turns that walk into routes: one per
//! (logger, handler) pair, matching the logger's subtree minus the
//! subtrees cut off by a `propagate: false` logger below it. Records that
//! meet no handler at all go, as in Python, to `logging.lastResort`
//! (stderr, WARNING and above): an output named [`LAST_RESORT`].

pub mod dict;
mod handlers;

use std::collections::BTreeMap;

use super::address::join_host_port;
use super::builder::{Builder, Origin};
use super::file::FileConfig;
use super::outputs::text_format;
use super::*;
use dict::{DictConfig, LoggerFile};
pub use handlers::PYTHON_DEFAULT_FORMAT;
use handlers::{handler, Handler};

/// The name of the input the cookbook keys define.
pub const INPUT_NAME: &str = "cookbook";

/// The output standing for Python's `logging.lastResort` (stderr,
/// `%(message)s`), added when some records would meet no handler.
pub const LAST_RESORT: &str = "lastResort";

/// `logging.lastResort.level`: WARNING.
const LAST_RESORT_LEVEL: i64 = 30;

/// The `cookbook` input, if the file has any cookbook key, with the JSON
/// path that defines it.
pub(super) fn shorthand(f: &FileConfig, b: &mut Builder) -> Option<(InputConfig, String)> {
    if f.port.is_none() && f.host.is_none() && f.socket.is_none() && f.logging.is_none() {
        return None;
    }
    let kind = if let Some(Some(socket)) = &f.socket {
        InputKind::Unix {
            path: b.socket_path("socket", socket),
            mode: None,
        }
    } else {
        let port = f.port.flatten().unwrap_or(DEFAULT_TCP_PORT);
        let host = f
            .host
            .clone()
            .flatten()
            .unwrap_or_else(|| "localhost".to_string());
        if host.is_empty() {
            b.report.error(
                "host",
                "the host is empty (write 0.0.0.0 to listen on every interface)",
            );
        }
        InputKind::Tcp {
            address: join_host_port(&host, port),
        }
    };
    let path = match (&f.socket, &f.port, &f.host) {
        (Some(Some(_)), _, _) => "socket",
        (_, Some(_), _) => "port",
        (_, _, Some(_)) => "host",
        _ => "logging",
    };
    Some((
        InputConfig {
            kind,
            decoder: DecoderKind::Pickle,
            framing: Framing::LengthPrefixed,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            token: None,
        },
        path.to_string(),
    ))
}

/// What a dictConfig becomes.
pub(super) struct Generated {
    /// Outputs named after their handlers.
    pub(super) outputs: Vec<(String, OutputConfig, Origin)>,
    /// One route per (logger, handler).
    pub(super) routes: Vec<(RouteConfig, Origin)>,
}

/// A configured logger (`""` is root).
struct Logger {
    name: String,
    propagate: bool,
    /// `logging.Filter` names.
    filters: Vec<String>,
    /// Handler names, without repeats (`addHandler` ignores a repeat).
    handlers: Vec<(String, String)>,
}

/// Turn a dictConfig into outputs and routes (see the module docs).
pub(super) fn translate(d: &DictConfig, b: &mut Builder) -> Generated {
    match d.version {
        None => b.report.error(
            "logging",
            "missing `version` (dictConfig needs \"version\": 1)",
        ),
        Some(1) => {}
        Some(v) => b.report.error(
            "logging.version",
            format!("unsupported version {v} (only 1 exists)"),
        ),
    }
    if d.incremental == Some(true) {
        b.report.error(
            "logging.incremental",
            "incremental configuration only adjusts handlers that already exist, and a listener starts with none; remove it",
        );
    }

    let mut formats: BTreeMap<&str, TextFormat> = BTreeMap::new();
    for (name, f) in d.formatters.iter().flatten() {
        if f.format.is_some() && f.fmt.is_some() {
            b.report.error(
                format!("logging.formatters.{name}.fmt"),
                "give `format` or `fmt`, not both",
            );
        }
        let format = f.format.clone().or_else(|| f.fmt.clone());
        let text = text_format(&format, &f.datefmt, f.style, None, PYTHON_DEFAULT_FORMAT);
        b.check_format(&format!("logging.formatters.{name}"), &text);
        formats.insert(name, text);
    }
    let mut filters: BTreeMap<&str, String> = BTreeMap::new();
    for (name, f) in d.filters.iter().flatten() {
        filters.insert(name, f.name.clone().unwrap_or_default());
    }
    let mut handlers: BTreeMap<&str, Handler> = BTreeMap::new();
    let mut out = Generated {
        outputs: Vec::new(),
        routes: Vec::new(),
    };
    for (name, h) in d.handlers.iter().flatten() {
        let path = format!("logging.handlers.{name}");
        if let Some(handler) = handler(b, &path, h, &formats, &filters) {
            out.outputs.push((
                name.clone(),
                handler.output.clone(),
                Origin {
                    path: path.clone(),
                    warn_unused: false,
                },
            ));
            handlers.insert(name, handler);
        }
    }

    let loggers = loggers(b, d, &filters);
    for l in &loggers {
        for (h, hpath) in &l.handlers {
            // A handler that failed its checks is already reported.
            let Some(handler) = handlers.get(h.as_str()) else {
                continue;
            };
            out.routes.push((
                route(l, h, handler, &loggers),
                Origin {
                    path: hpath.clone(),
                    warn_unused: false,
                },
            ));
        }
    }
    let last_resort = last_resort(&loggers);
    let taken = b
        .kinds
        .logging
        .handlers
        .iter()
        .any(|(n, _)| n == LAST_RESORT);
    if !last_resort.is_empty() && !taken {
        let origin = || Origin {
            path: "logging".to_string(),
            warn_unused: false,
        };
        let output = OutputConfig::Stream(StreamOutputConfig {
            stream: StreamKind::Stderr,
            encoding: Encoding::Text,
            text: TextFormat {
                format: PYTHON_DEFAULT_FORMAT.to_string(),
                ..TextFormat::default()
            },
        });
        out.outputs
            .push((LAST_RESORT.to_string(), output, origin()));
        out.routes
            .extend(last_resort.into_iter().map(|r| (r, origin())));
    }
    out
}

/// Python's `logging.lastResort`: a record whose walk up the hierarchy
/// meets no handler at all is written to stderr as `%(message)s` if it is
/// WARNING or above. A walk starts at the record's logger and ends at root
/// or at the first logger with `propagate: false` (a "stop"); so for each
/// stop without handlers of its own, the records that reach it having met
/// no handler are its subtree, minus the subtrees of stops below it, minus
/// the subtrees of loggers with handlers in between.
fn last_resort(all: &[Logger]) -> Vec<RouteConfig> {
    use crate::record::logger_matches;
    let mut routes = Vec::new();
    for stop in all.iter().filter(|l| l.name.is_empty() || !l.propagate) {
        if !stop.handlers.is_empty() {
            continue;
        }
        let (mut exclude_loggers, logger_filters) = region(stop, all);
        for m in all {
            let inside = m.name != stop.name
                && logger_matches(&stop.name, &m.name)
                && !exclude_loggers.iter().any(|e| logger_matches(e, &m.name));
            if inside && !m.handlers.is_empty() {
                exclude_loggers.push(m.name.clone());
            }
        }
        routes.push(RouteConfig {
            from: None,
            loggers: (!stop.name.is_empty()).then(|| vec![stop.name.clone()]),
            exclude_loggers,
            logger_filters,
            min_level: Some(LAST_RESORT_LEVEL),
            to: vec![LAST_RESORT.to_string()],
            ..RouteConfig::default()
        });
    }
    routes
}

/// The configured loggers, root included (as `""`), deepest first: the
/// order in which `callHandlers` reaches them for one record.
fn loggers(b: &mut Builder, d: &DictConfig, filters: &BTreeMap<&str, String>) -> Vec<Logger> {
    // Pass 1 knows every handler name, including those it reported.
    let handler_names: Vec<String> = b
        .kinds
        .logging
        .handlers
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let mut out: Vec<Logger> = Vec::new();
    let logger = |b: &mut Builder, name: &str, path: String, l: &LoggerFile| -> Logger {
        if let Some(level) = &l.level {
            // Checked like Python's dictConfig does, but not applied.
            b.level(&format!("{path}.level"), level);
        }
        let mut flt = Vec::new();
        for (i, f) in l.filters.iter().flatten().enumerate() {
            match filters.get(f.as_str()) {
                Some(n) => flt.push(n.clone()),
                None if b.kinds.logging.filters.iter().any(|(n, _)| n == f) => {}
                None => b.report.error(
                    format!("{path}.filters[{i}]"),
                    format!("no filter named {f:?}"),
                ),
            }
        }
        let mut hs: Vec<(String, String)> = Vec::new();
        for (i, h) in l.handlers.iter().flatten().enumerate() {
            if !handler_names.contains(h) {
                b.report.error(
                    format!("{path}.handlers[{i}]"),
                    format!("no handler named {h:?}"),
                );
            } else if !hs.iter().any(|(n, _)| n == h) {
                hs.push((h.clone(), format!("{path}.handlers[{i}]")));
            }
        }
        Logger {
            name: name.to_string(),
            propagate: l.propagate.unwrap_or(true),
            filters: flt,
            handlers: hs,
        }
    };
    let mut root: Option<Logger> = None;
    for (name, l) in d.loggers.iter().flatten() {
        let path = format!("logging.loggers.{name}");
        let built = logger(b, name, path, l);
        // getLogger("") and, since Python 3.9, getLogger("root") are the
        // root logger itself.
        if name.is_empty() || name == "root" {
            root = Some(Logger {
                name: String::new(),
                ..built
            });
        } else {
            out.push(built);
        }
    }
    if let Some(l) = &d.root {
        let built = logger(b, "", "logging.root".to_string(), l);
        root = Some(match root {
            // `root` is configured after `loggers`: its handlers replace
            // the ones set there, its filters add to them.
            Some(earlier) => Logger {
                filters: earlier.filters.into_iter().chain(built.filters).collect(),
                ..built
            },
            None => built,
        });
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.name.split('.').count()));
    // Root always exists, configured or not.
    out.push(root.unwrap_or(Logger {
        name: String::new(),
        propagate: true,
        filters: Vec::new(),
        handlers: Vec::new(),
    }));
    out
}

/// The route for handler `h` attached to logger `l`.
fn route(l: &Logger, h: &str, handler: &Handler, all: &[Logger]) -> RouteConfig {
    let (exclude_loggers, logger_filters) = region(l, all);
    RouteConfig {
        from: None,
        loggers: (!l.name.is_empty()).then(|| vec![l.name.clone()]),
        exclude_loggers,
        name_filters: handler.filters.clone(),
        logger_filters,
        min_level: Some(handler.level),
        filters: Vec::new(),
        to: vec![h.to_string()],
    }
}

/// The records whose walk reaches logger `l`: its subtree minus the
/// subtrees cut off by a `propagate: false` logger below it (returned as
/// `exclude_loggers`), and the logger filters that apply on the way.
fn region(l: &Logger, all: &[Logger]) -> (Vec<String>, Vec<(String, String)>) {
    use crate::record::logger_matches;
    let below = |m: &Logger| m.name != l.name && logger_matches(&l.name, &m.name);
    // A cut inside another cut adds nothing.
    let cuts: Vec<&str> = all
        .iter()
        .filter(|m| below(m) && !m.propagate)
        .map(|m| m.name.as_str())
        .collect();
    let exclude: Vec<String> = cuts
        .iter()
        .filter(|c| !cuts.iter().any(|o| o != *c && logger_matches(o, c)))
        .map(|c| c.to_string())
        .collect();
    let reaches = |m: &Logger| {
        (m.name == l.name || below(m)) && !exclude.iter().any(|e| logger_matches(e, &m.name))
    };
    // A logger's own filters only apply to records logged on it by name
    // (`Logger.handle` filters, then `callHandlers` walks up unfiltered).
    let mut logger_filters = Vec::new();
    for m in all.iter().filter(|m| reaches(m)) {
        for f in &m.filters {
            if m.name.is_empty() {
                logger_filters.push(("root".to_string(), f.clone()));
                logger_filters.push((String::new(), f.clone()));
            } else {
                logger_filters.push((m.name.clone(), f.clone()));
            }
        }
    }
    (exclude, logger_filters)
}

#[cfg(test)]
mod tests {
    //! The translation is checked against Python itself: the same
    //! dictConfig is loaded by `logging.config.dictConfig`, records of many
    //! names and levels go through `logging.getLogger(name).handle(record)`
    //! as in the cookbook listener, and the handlers that emit each record
    //! must be exactly the outputs our routes deliver it to.

    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;

    const NAMES: &[&str] = &[
        "",
        "root",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "a.b.c.d.e",
        "a.bc",
        "ab",
        "a.b.x",
        "x",
        "x.y",
        "x.y.z",
        "xy",
        "p",
        "p.q",
        "p.q.r",
        "other",
        "root.child",
    ];
    const LEVELS: &[i64] = &[0, 5, 10, 20, 25, 30, 40, 50];

    const PY: &str = r#"
import json, logging, logging.config, os, sys
spec = json.load(sys.stdin)
os.chdir(spec["dir"])
logging.config.dictConfig(spec["config"])
got = []
logging.lastResort.emit = lambda record: got.append(["lastResort", record.idx])
for name, h in list(logging._handlers.items()):
    h.emit = (lambda n: lambda record: got.append([n, record.idx]))(name)
for i, (name, level) in enumerate(spec["records"]):
    r = logging.makeLogRecord({"name": name, "levelno": level,
                               "levelname": logging.getLevelName(level), "msg": "m", "idx": i})
    logging.getLogger(name).handle(r)
json.dump(got, sys.stdout)
"#;

    fn records() -> Vec<(String, i64)> {
        NAMES
            .iter()
            .flat_map(|n| LEVELS.iter().map(move |l| (n.to_string(), *l)))
            .collect()
    }

    /// (handler, record index) for every emit Python makes; `None` when
    /// there is no python3 to ask.
    fn python(dir: &Path, dict: &serde_json::Value) -> Option<Vec<(String, usize)>> {
        let spec = serde_json::json!({
            "dir": dir, "config": dict, "records": records(),
        });
        let mut child = match Command::new("python3")
            .args(["-c", PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping the comparison with Python: python3: {e}");
                return None;
            }
        };
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(spec.to_string().as_bytes())
                .expect("python3 reads its stdin");
        }
        let out = child.wait_with_output().expect("python3 runs");
        assert!(out.status.success(), "python3 failed: {:?}", out.status);
        let mut got: Vec<(String, usize)> =
            serde_json::from_slice(&out.stdout).expect("python3 prints JSON");
        got.sort();
        Some(got)
    }

    /// (output, record index) for every delivery our routes make.
    fn ours(config: &Config) -> Vec<(String, usize)> {
        let mut got = Vec::new();
        for (i, (name, level)) in records().iter().enumerate() {
            for r in &config.routes {
                if r.min_level.is_none_or(|m| *level >= m) && r.matches_name(name) {
                    got.extend(r.to.iter().map(|o| (o.clone(), i)));
                }
            }
        }
        got.sort();
        got
    }

    fn compare(dict: serde_json::Value) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("run")).expect("run/ created");
        let text = serde_json::json!({ "logging": dict }).to_string();
        let config = crate::config::parse(&text, &dir.path().join("listener.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(py) = python(dir.path(), &dict) {
            let ours = ours(&config);
            let name = |i: usize| records()[i].clone();
            let missing: Vec<_> = py
                .iter()
                .filter(|p| !ours.contains(p))
                .map(|(h, i)| (h, name(*i)))
                .collect();
            let extra: Vec<_> = ours
                .iter()
                .filter(|p| !py.contains(p))
                .map(|(h, i)| (h, name(*i)))
                .collect();
            assert_eq!(
                py, ours,
                "\nPython only: {missing:?}\nlogrelay only: {extra:?}\nroutes: {:#?}",
                config.routes
            );
            assert!(!py.is_empty());
        }
        config
    }

    #[test]
    fn cookbook_listener_json_matches_python() {
        let text = include_str!("../../../config/cookbook.json");
        let file: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let config = compare(file["logging"].clone());
        assert_eq!(config.routes.len(), 1);
        let OutputConfig::File(f) = &config.outputs["file"] else {
            panic!("not a file output")
        };
        assert_eq!((f.max_bytes, f.backup_count), (1024, 10));
        assert_eq!(
            f.text.format,
            "%(asctime)s %(levelname)-8s %(name)-15s %(process)-6s %(message)s"
        );
    }

    #[test]
    fn propagation_levels_and_filters_match_python() {
        let c = compare(serde_json::json!({
            "version": 1,
            "disable_existing_loggers": false,
            "formatters": {
                "plain": {"format": "%(name)s %(message)s"},
                "factory": {"()": "logging.Formatter", "fmt": "%(levelname)s %(message)s"}
            },
            "filters": {
                "fa": {"name": "a"}, "fb": {"name": "a.b.c"},
                "fall": {}, "froot": {"()": "logging.Filter", "name": "root"}
            },
            "handlers": {
                "h1": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "level": "INFO",
                       "formatter": "factory"},
                "h2": {"class": "logging.FileHandler", "filename": "run/h2.log", "filters": ["fa"]},
                "h3": {"class": "logging.handlers.RotatingFileHandler", "filename": "run/h3.log",
                       "maxBytes": 100, "backupCount": 2, "level": 30, "formatter": "plain"},
                "h4": {"class": "logging.handlers.SocketHandler", "host": "run/s.sock", "port": null,
                       "filters": ["fall", "fa"]},
                "h5": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "run/h5.log",
                       "when": "midnight", "level": "DEBUG"}
            },
            "loggers": {
                "a": {"handlers": ["h1", "h5"], "filters": ["fb"]},
                "a.b": {"handlers": ["h2", "h1", "h2"], "propagate": false, "level": "CRITICAL"},
                "a.b.c": {"handlers": ["h3"], "filters": ["fa"]},
                "x": {"propagate": false},
                "x.y": {"handlers": ["h3", "h5"]},
                "p.q": {"handlers": ["h1"], "level": "ERROR", "propagate": true}
            },
            "root": {"handlers": ["h3", "h4", "h5"], "filters": ["froot"], "level": "WARNING"}
        }));
        let OutputConfig::Stream(h1) = &c.outputs["h1"] else {
            panic!("h1 is not a stream output")
        };
        assert_eq!(h1.stream, StreamKind::Stdout);
        assert_eq!(h1.text.format, "%(levelname)s %(message)s");
        let OutputConfig::Forward(h4) = &c.outputs["h4"] else {
            panic!("h4 is not a forward output")
        };
        assert!(matches!(&h4.target, ForwardTarget::Unix(p) if p.ends_with("run/s.sock")));
        let OutputConfig::File(h5) = &c.outputs["h5"] else {
            panic!("h5 is not a file output")
        };
        assert_eq!(
            (h5.when, h5.interval, h5.backup_count),
            (Some(When::Midnight), 1, 0)
        );
    }

    #[test]
    fn root_configured_under_loggers_matches_python() {
        compare(serde_json::json!({
            "version": 1,
            "filters": {"fa": {"name": "a"}, "froot": {"name": "root"}},
            "handlers": {
                "h1": {"class": "logging.StreamHandler"},
                "h2": {"class": "logging.StreamHandler", "level": "ERROR"}
            },
            "loggers": {
                "root": {"handlers": ["h1"], "filters": ["froot"]},
                "a.b": {"handlers": ["h2"], "propagate": false},
                "a": {"propagate": false, "handlers": ["h1"]},
                "a.b.c": {"handlers": ["h1"], "propagate": false}
            },
            "root": {"handlers": ["h2"], "filters": ["fa"]}
        }));
    }

    #[test]
    fn nested_propagation_cuts_match_python() {
        compare(serde_json::json!({
            "version": 1,
            "handlers": {
                "top": {"class": "logging.StreamHandler"},
                "mid": {"class": "logging.StreamHandler", "level": 20}
            },
            "loggers": {
                "a.b.c": {"propagate": false},
                "a.b": {"propagate": false, "handlers": ["mid"]},
                "x.y.z": {"propagate": false, "handlers": ["top"]},
                "x": {"handlers": ["mid"]},
                "p": {"handlers": ["top", "mid"], "propagate": false},
                "p.q": {"handlers": ["top"]}
            },
            "root": {"handlers": ["top", "mid"]}
        }));
    }

    #[test]
    fn records_meeting_no_handler_go_to_last_resort_as_in_python() {
        let c = compare(serde_json::json!({
            "version": 1,
            "filters": {"fa": {"name": "a.b"}},
            "handlers": {"h": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
            "loggers": {
                "a": {"handlers": ["h"]},
                "a.b": {"propagate": false, "filters": ["fa"]},
                "a.b.c": {"handlers": ["h"]},
                "x.y": {"propagate": false}
            }
        }));
        assert_eq!(
            c.outputs[LAST_RESORT],
            OutputConfig::Stream(StreamOutputConfig {
                stream: StreamKind::Stderr,
                encoding: Encoding::Text,
                text: TextFormat {
                    format: "%(message)s".into(),
                    ..TextFormat::default()
                },
            })
        );
        // Python's cookbook config gives root a handler: no lastResort.
        let text = include_str!("../../../config/cookbook.json");
        let c = crate::config::parse(text, Path::new("l.json")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.outputs.contains_key(LAST_RESORT));
    }

    fn err(text: &str) -> String {
        match crate::config::parse(text, Path::new("listener.json")) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shorthand_input_defaults() {
        let c = crate::config::parse(
            r#"{"port": 9021, "logging": {"version": 1}, "outputs": {"o": {"type": "stdout"}}}"#,
            Path::new("l.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.inputs[INPUT_NAME].kind,
            InputKind::Tcp {
                address: "localhost:9021".into()
            }
        );
        let c = crate::config::parse(
            r#"{"host": "::1", "port": null, "outputs": {"o": {"type": "stdout"}}}"#,
            Path::new("l.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.inputs[INPUT_NAME].kind,
            InputKind::Tcp {
                address: "[::1]:9020".into()
            }
        );
        let c = crate::config::parse(
            r#"{"socket": "run/l.sock", "port": 1, "outputs": {"o": {"type": "stdout"}}}"#,
            Path::new("/srv/l.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.inputs[INPUT_NAME].kind,
            InputKind::Unix {
                path: "/srv/run/l.sock".into(),
                mode: None
            }
        );
        // Native keys alone never add the cookbook input.
        let c = crate::config::parse(
            r#"{"inputs": {"a": {"type": "udp", "address": "127.0.0.1:9021"}}, "outputs": {"o": {"type": "stdout"}}}"#,
            Path::new("l.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.inputs.contains_key(INPUT_NAME));
    }

    #[test]
    fn mixed_shorthand_and_native() {
        let c = crate::config::parse(
            r#"{"port": 9030,
                "inputs": {"json": {"type": "tcp", "address": "127.0.0.1:9031", "decoder": "json", "framing": "newline"}},
                "outputs": {"console": {"type": "stdout"}},
                "routes": [{"from": ["json"], "to": ["console", "file"]}],
                "logging": {"version": 1,
                            "handlers": {"file": {"class": "logging.FileHandler", "filename": "app.log", "mode": "w"}},
                            "root": {"handlers": ["file"]}}}"#,
            Path::new("l.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.inputs.len(), 2);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].from, Some(vec!["json".to_string()]));
        assert_eq!(c.routes[1].from, None);
        assert_eq!(c.routes[1].to, vec!["file".to_string()]);
        // A native route may write to a dictConfig handler; this one
        // overlaps the handler's own route for records from `json`.
        assert_eq!(
            c.routes[0].to,
            vec!["console".to_string(), "file".to_string()]
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let OutputConfig::File(f) = &c.outputs["file"] else {
            panic!("not a file output")
        };
        assert!(f.truncate);
        assert_eq!(f.text.format, PYTHON_DEFAULT_FORMAT);
    }

    #[test]
    fn error_native_input_on_the_cookbook_port() {
        assert_eq!(
            err(
                r#"{"logging": {"version": 1, "handlers": {"h": {"class": "logging.StreamHandler"}},
                                 "root": {"handlers": ["h"]}},
"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:9020"}}}"#
            ),
            "listener.json:3:46: inputs.app.address: TCP port 9020 is already used by the \
             cookbook listener's input (localhost:9020, from `logging`)"
        );
    }

    #[test]
    fn error_name_clashes() {
        assert_eq!(
            err(
                r#"{"port": 9020, "inputs": {"cookbook": {"type": "tcp", "address": "127.0.0.1:9030"}},
"outputs": {"file": {"type": "stdout"}},
"logging": {"version": 1, "handlers": {"file": {"class": "logging.StreamHandler"}}}}"#
            ),
            "listener.json:1:39: inputs.cookbook: the name \"cookbook\" is taken by the cookbook \
             listener's input (from `port`); rename this input\n\
             listener.json:3:48: logging.handlers.file: handler \"file\" would become an output, \
             but `outputs.file` already has that name; rename one"
        );
    }

    #[test]
    fn error_bad_handler_class() {
        assert_eq!(
            err(r#"{"logging": {"version": 1,
  "handlers": {
    "syslog": {"class": "logging.handlers.SysLogHandler", "address": "/dev/log"},
    "custom": {"()": "myapp.handlers.make", "x": 1},
    "none": {"level": "INFO"},
    "ok": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["f"]}
  },
  "formatters": {"json": {"()": "pythonjsonlogger.jsonlogger.JsonFormatter", "fmt": "x"}},
  "filters": {"f": {"()": "myapp.filters.RequireDebugFalse"}},
  "root": {"handlers": ["syslog", "custom", "ok", "missing"]}}}"#),
            "listener.json:3:25: logging.handlers.syslog.class: handler class \
             \"logging.handlers.SysLogHandler\" is not supported (supported: logging.StreamHandler, \
             logging.FileHandler, logging.handlers.RotatingFileHandler, \
             logging.handlers.TimedRotatingFileHandler or logging.handlers.SocketHandler)\n\
             listener.json:4:22: logging.handlers.custom.(): handler factory \"myapp.handlers.make\" \
             is not supported (use a class: logging.StreamHandler, logging.FileHandler, \
             logging.handlers.RotatingFileHandler, logging.handlers.TimedRotatingFileHandler or \
             logging.handlers.SocketHandler)\n\
             listener.json:5:13: logging.handlers.none: missing `class` (logging.StreamHandler, \
             logging.FileHandler, logging.handlers.RotatingFileHandler, \
             logging.handlers.TimedRotatingFileHandler or logging.handlers.SocketHandler)\n\
             listener.json:8:33: logging.formatters.json.(): formatter \
             \"pythonjsonlogger.jsonlogger.JsonFormatter\" is not supported (only logging.Formatter)\n\
             listener.json:9:27: logging.filters.f.(): filter factory \"myapp.filters.RequireDebugFalse\" \
             is not supported (only logging.Filter, as {\"name\": ...})\n\
             listener.json:10:51: logging.root.handlers[3]: no handler named \"missing\""
        );
    }

    #[test]
    fn error_bad_dict_values() {
        assert_eq!(
            err(r#"{"logging": {"version": 2, "incremental": true,
  "handlers": {
    "a": {"class": "logging.FileHandler", "filename": "a.log", "mode": "r+", "encoding": "latin-1"},
    "b": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "b.log", "when": "Q", "atTime": "3am"},
    "c": {"class": "logging.handlers.SocketHandler", "host": "central"},
    "d": {"class": "logging.StreamHandler", "stream": "ext://sys.stdin", "level": "LOUD", "formatter": "nope"},
    "e": {"class": "logging.handlers.RotatingFileHandler", "filename": "e.log", "maxBytes": "1MB"}
  }}}"#),
            "listener.json:7:97: logging.handlers.e.maxBytes: invalid type: string \"1MB\", \
             expected a whole number of bytes (e.g. 10485760)"
        );
        assert_eq!(
            err(r#"{"logging": {"version": 2, "incremental": true,
  "handlers": {
    "a": {"class": "logging.FileHandler", "filename": "a.log", "mode": "r+", "encoding": "latin-1"},
    "b": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "b.log", "when": "Q", "atTime": "3am"},
    "c": {"class": "logging.handlers.SocketHandler", "host": "central"},
    "d": {"class": "logging.StreamHandler", "stream": "ext://sys.stdin", "level": "LOUD", "formatter": "nope"}
  },
  "loggers": {"a": {"handlers": ["a", "b", "c", "d"], "filters": ["nope"]}}}}"#),
            "listener.json:1:25: logging.version: unsupported version 2 (only 1 exists)\n\
             listener.json:1:43: logging.incremental: incremental configuration only adjusts \
             handlers that already exist, and a listener starts with none; remove it\n\
             listener.json:3:72: logging.handlers.a.mode: mode \"r+\" is not supported (\"a\" to \
             append, \"w\" to truncate)\n\
             listener.json:3:90: logging.handlers.a.encoding: encoding \"latin-1\" is not \
             supported (logrelay writes utf-8)\n\
             listener.json:4:94: logging.handlers.b.when: unknown rotation interval \"Q\" \
             (expected S, M, H, D, midnight or W0..W6)\n\
             listener.json:4:109: logging.handlers.b.atTime: \"3am\" is not a time of day (HH:MM or HH:MM:SS)\n\
             listener.json:5:10: logging.handlers.c: missing `port` (a number, or null to connect \
             to the Unix socket at `host`)\n\
             listener.json:6:55: logging.handlers.d.stream: stream \"ext://sys.stdin\" is not \
             supported (ext://sys.stdout or ext://sys.stderr)\n\
             listener.json:6:83: logging.handlers.d.level: unknown level \"LOUD\" (expected \
             CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET or a number)\n\
             listener.json:6:104: logging.handlers.d.formatter: no formatter named \"nope\"\n\
             listener.json:8:67: logging.loggers.a.filters[0]: no filter named \"nope\""
        );
    }
}
