//! dictConfig handlers into outputs: each supported handler class, with
//! its keyword arguments checked as its Python constructor would, becomes
//! the output of the same name.

use std::collections::BTreeMap;

use super::dict::{HandlerFile, SocketHandlerFile, TimedHandlerFile};
use crate::config::address::{join_host_port, split_host_port};
use crate::config::builder::Builder;
use crate::config::outputs::parse_when;
use crate::config::*;

/// The format of a dictConfig handler without a formatter, as Python's
/// `logging.Formatter()`.
pub const PYTHON_DEFAULT_FORMAT: &str = "%(message)s";

/// A handler, resolved.
pub(super) struct Handler {
    /// The output of the same name.
    pub(super) output: OutputConfig,
    /// The handler's level: records below it are not emitted.
    pub(super) level: i64,
    /// `logging.Filter` names.
    pub(super) filters: Vec<String>,
}

/// Resolve one handler into an output, its level and its filters.
pub(super) fn handler(
    b: &mut Builder,
    path: &str,
    h: &HandlerFile,
    formats: &BTreeMap<&str, TextFormat>,
    filters: &BTreeMap<&str, String>,
) -> Option<Handler> {
    let (level, formatter, flt) = match h {
        HandlerFile::Stream(s) => (&s.level, &s.formatter, &s.filters),
        HandlerFile::File(s) => (&s.level, &s.formatter, &s.filters),
        HandlerFile::Rotating(s) => (&s.level, &s.formatter, &s.filters),
        HandlerFile::Timed(s) => (&s.level, &s.formatter, &s.filters),
        HandlerFile::Socket(s) => (&s.level, &s.formatter, &s.filters),
    };
    let level = level
        .as_ref()
        .map_or(Some(0), |l| b.level(&format!("{path}.level"), l));
    let mut text = TextFormat {
        format: PYTHON_DEFAULT_FORMAT.to_string(),
        ..TextFormat::default()
    };
    if let Some(f) = formatter {
        match formats.get(f.as_str()) {
            Some(t) => text = t.clone(),
            // Skipped in pass 1 (an unsupported class), already reported.
            None if b.kinds.logging.formatters.iter().any(|(n, _)| n == f) => {}
            None => b.report.error(
                format!("{path}.formatter"),
                format!("no formatter named {f:?}"),
            ),
        }
    }
    let mut names = Vec::new();
    for (i, f) in flt.iter().flatten().enumerate() {
        match filters.get(f.as_str()) {
            Some(n) => names.push(n.clone()),
            None if b.kinds.logging.filters.iter().any(|(n, _)| n == f) => {}
            None => b.report.error(
                format!("{path}.filters[{i}]"),
                format!("no filter named {f:?}"),
            ),
        }
    }
    let output = output(b, path, h, text)?;
    Some(Handler {
        output,
        level: level.unwrap_or(0),
        filters: names,
    })
}

/// The output a handler class writes to.
fn output(b: &mut Builder, path: &str, h: &HandlerFile, text: TextFormat) -> Option<OutputConfig> {
    Some(match h {
        HandlerFile::Stream(s) => OutputConfig::Stream(StreamOutputConfig {
            stream: stream(b, path, s.stream.as_deref()),
            encoding: Encoding::Text,
            text,
        }),
        HandlerFile::File(f) => {
            let truncate = file_mode(b, path, f.mode.as_deref());
            encoding_utf8(b, path, f.encoding.as_deref());
            OutputConfig::File(file(b, path, &f.filename, text, truncate))
        }
        HandlerFile::Rotating(f) => {
            let max_bytes = f.max_bytes.unwrap_or(0);
            // RotatingFileHandler forces append mode when it rotates.
            let truncate = file_mode(b, path, f.mode.as_deref()) && max_bytes == 0;
            encoding_utf8(b, path, f.encoding.as_deref());
            let mut c = file(b, path, &f.filename, text, truncate);
            c.max_bytes = max_bytes;
            c.backup_count = f.backup_count.unwrap_or(0);
            OutputConfig::File(c)
        }
        HandlerFile::Timed(f) => OutputConfig::File(timed(b, path, f, text)),
        HandlerFile::Socket(s) => OutputConfig::Forward(socket(b, path, s)?),
    })
}

/// StreamHandler `stream`: stderr unless it names stdout, as Python.
fn stream(b: &mut Builder, path: &str, stream: Option<&str>) -> StreamKind {
    match stream {
        None | Some("ext://sys.stderr") => StreamKind::Stderr,
        Some("ext://sys.stdout") => StreamKind::Stdout,
        Some(other) => {
            b.report.error(
                format!("{path}.stream"),
                format!("stream {other:?} is not supported (ext://sys.stdout or ext://sys.stderr)"),
            );
            StreamKind::Stderr
        }
    }
}

/// FileHandler `mode`: whether the file is truncated when opened.
fn file_mode(b: &mut Builder, path: &str, mode: Option<&str>) -> bool {
    match mode {
        None | Some("a") => false,
        Some("w") => true,
        Some(m) => {
            b.report.error(
                format!("{path}.mode"),
                format!("mode {m:?} is not supported (\"a\" to append, \"w\" to truncate)"),
            );
            false
        }
    }
}

/// logrelay writes UTF-8; say so if the handler asks for another encoding.
fn encoding_utf8(b: &mut Builder, path: &str, encoding: Option<&str>) {
    if let Some(e) = encoding {
        let norm = e.to_ascii_lowercase().replace(['-', '_'], "");
        if norm != "utf8" {
            b.report.error(
                format!("{path}.encoding"),
                format!("encoding {e:?} is not supported (logrelay writes utf-8)"),
            );
        }
    }
}

fn file(
    b: &mut Builder,
    path: &str,
    filename: &str,
    text: TextFormat,
    truncate: bool,
) -> FileOutputConfig {
    FileOutputConfig {
        path: b.resolve(&format!("{path}.filename"), filename),
        encoding: Encoding::Text,
        text,
        max_bytes: 0,
        backup_count: 0,
        when: None,
        interval: 1,
        at_time: None,
        compress: None,
        flush_ms: DEFAULT_FLUSH_MS,
        fsync: false,
        truncate,
        // dictConfig filenames are literal, as in Python.
        max_open_files: None,
    }
}

fn timed(
    b: &mut Builder,
    path: &str,
    f: &TimedHandlerFile,
    mut text: TextFormat,
) -> FileOutputConfig {
    encoding_utf8(b, path, f.encoding.as_deref());
    let when = match parse_when(f.when.as_deref().unwrap_or("h")) {
        Ok(w) => Some(w),
        Err(what) => {
            b.report.error(format!("{path}.when"), what);
            None
        }
    };
    let interval = f.interval.unwrap_or(1);
    if interval == 0 {
        b.report
            .error(format!("{path}.interval"), "must be at least 1");
    }
    // Python's handler reads atTime only for midnight and weekday
    // rollovers and ignores it otherwise, so such a file works unchanged.
    let hourly_or_finer = when.is_some_and(|w| !matches!(w, When::Midnight | When::Weekday(_)));
    let at_time = f
        .at_time
        .as_ref()
        .filter(|_| !hourly_or_finer)
        .and_then(|t| b.at_time(&format!("{path}.atTime"), t, when));
    // FileOutputConfig has one `utc`, for formatting and rotation alike
    // (docs/decisions.md, "Records and encoding"); Python's handler
    // applies it to rotation only.
    text.utc = f.utc.unwrap_or(false);
    let mut c = file(b, path, &f.filename, text, false);
    c.when = when;
    c.interval = interval.max(1);
    c.backup_count = f.backup_count.unwrap_or(0);
    c.at_time = at_time;
    c
}

fn socket(b: &mut Builder, path: &str, s: &SocketHandlerFile) -> Option<ForwardOutputConfig> {
    let target = match s.port {
        Some(Some(port)) => {
            let address = join_host_port(&s.host, port);
            if let Err(what) = split_host_port(&address) {
                b.report.error(format!("{path}.host"), what);
                return None;
            }
            if port == 0 {
                b.report
                    .error(format!("{path}.port"), "port 0 cannot be connected to");
            }
            ForwardTarget::Tcp(address)
        }
        // SocketHandler(host, None) connects to the Unix socket `host`.
        Some(None) => ForwardTarget::Unix(b.socket_path(&format!("{path}.host"), &s.host)),
        None => {
            b.report.error(
                path,
                "missing `port` (a number, or null to connect to the Unix socket at `host`)",
            );
            return None;
        }
    };
    Some(ForwardOutputConfig {
        target,
        encoder: Encoder::Pickle,
        buffer_records: DEFAULT_BUFFER_RECORDS,
        when_full: WhenFull::Block,
        ack: false,
        tag: DEFAULT_FLUENT_TAG.to_string(),
        require_ack: false,
        spool_dir: None,
        tls: None,
        token: None,
    })
}
