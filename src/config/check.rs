//! Checking and resolving one component at a time: inputs, filters,
//! outputs and routes, each into its [`Config`](super::Config) form, with
//! every problem reported at its JSON path.

use std::collections::BTreeMap;
use std::path::Path;

use super::address::split_host_port;
use super::builder::{
    Builder, Origin, MAX_BUFFER_RECORDS, MAX_CONNECTIONS, MAX_FILTER_TIMEOUT_MS, MAX_FLUSH_MS,
    MAX_FRAME_BYTES, MAX_FRAME_TIMEOUT_MS, MAX_OPEN_FILES, WASM32_MAX_MEMORY, WASM_PAGE,
};
use super::file::*;
use super::seed::LevelFile;
use super::*;
use crate::format::path::{classify, escape, PathKind};
use crate::record::level_from_name;

impl Builder<'_, '_> {
    /// Check `host:port`; `Some((host, port))` when well formed.
    /// `port 0` (any free port) is allowed for listeners only.
    pub(super) fn host_port(
        &mut self,
        path: &str,
        address: &str,
        connect: bool,
    ) -> Option<(String, u16)> {
        match split_host_port(address) {
            Ok((_, 0)) if connect => {
                self.report
                    .error(path, format!("{address:?}: port 0 cannot be connected to"));
                None
            }
            Ok(hp) => Some(hp),
            Err(what) => {
                self.report.error(path, format!("{address:?}: {what}"));
                None
            }
        }
    }

    /// One input, with its defaults filled in.
    pub(super) fn input(&mut self, path: &str, i: &InputFile) -> InputConfig {
        let mut stream = None;
        let mut tls = None;
        let (kind, decoder, framing, max) = match i {
            InputFile::Tcp(t) => {
                let hp = self.host_port(&format!("{path}.address"), &t.address, false);
                tls = t.tls.as_ref().and_then(|f| self.server_tls(path, f));
                if let Some((host, _)) = hp {
                    if tls.is_none() && !crate::tls::is_loopback_host(&host) {
                        self.report.warn(
                            format!("{path}.address"),
                            format!(
                                "{:?} is reachable from other hosts but this input has no `tls`: \
                                 records cross the network in clear{}",
                                t.address,
                                if t.token_file.is_some() {
                                    ""
                                } else {
                                    " and anyone who can reach the port can write logs; add `tls` (and `token_file`)"
                                }
                            ),
                        );
                    }
                }
                stream = Some((t.frame_timeout_ms, t.max_connections, &t.token_file));
                let kind = InputKind::Tcp {
                    address: t.address.clone(),
                };
                (kind, t.decoder, t.framing, t.max_frame_bytes)
            }
            InputFile::Udp(u) => {
                self.host_port(&format!("{path}.address"), &u.address, false);
                let kind = InputKind::Udp {
                    address: u.address.clone(),
                };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
            InputFile::Nats(n) => {
                let kind = InputKind::Nats(self.nats_input(path, n));
                (kind, None, None, None)
            }
            InputFile::Unix(u) => {
                let sock = self.socket_path(&format!("{path}.path"), &u.path);
                let mode = u.mode.as_deref().and_then(|m| {
                    parse_mode(m)
                        .map_err(|what| self.report.error(format!("{path}.mode"), what))
                        .ok()
                });
                stream = Some((u.frame_timeout_ms, u.max_connections, &u.token_file));
                let kind = InputKind::Unix { path: sock, mode };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
        };
        let decoder = decoder.unwrap_or_default();
        let framing = framing.unwrap_or_default();
        if framing == Framing::Newline && decoder != DecoderKind::Json {
            self.report.error(
                format!("{path}.framing"),
                format!(
                    "newline framing needs the json decoder (this input decodes {}); use length_prefixed",
                    decoder.as_str()
                ),
            );
        }
        let max_frame_bytes = self.bounded(
            &format!("{path}.max_frame_bytes"),
            max,
            DEFAULT_MAX_FRAME_BYTES as u64,
            1,
            MAX_FRAME_BYTES,
        );
        let (timeout, conns, token_file) = stream.unwrap_or((None, None, &None));
        let frame_timeout_ms = self.bounded(
            &format!("{path}.frame_timeout_ms"),
            timeout,
            DEFAULT_FRAME_TIMEOUT_MS,
            1,
            MAX_FRAME_TIMEOUT_MS,
        );
        let max_connections = self.bounded(
            &format!("{path}.max_connections"),
            conns,
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
            MAX_CONNECTIONS,
        );
        let token = token_file
            .as_deref()
            .and_then(|t| self.token(&format!("{path}.token_file"), t));
        InputConfig {
            kind,
            decoder,
            framing,
            max_frame_bytes: usize::try_from(max_frame_bytes).unwrap_or(DEFAULT_MAX_FRAME_BYTES),
            frame_timeout_ms,
            max_connections: usize::try_from(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            tls,
            token,
        }
    }

    /// The `tls` of a tcp input, its files loaded now so a bad one is
    /// reported naming its field.
    fn server_tls(&mut self, path: &str, f: &ServerTlsFile) -> Option<crate::tls::ServerTls> {
        let tls = crate::tls::ServerTls {
            cert: self.resolve(&format!("{path}.tls.cert"), &f.cert),
            key: self.resolve(&format!("{path}.tls.key"), &f.key),
            client_ca: f
                .client_ca
                .as_deref()
                .map(|c| self.resolve(&format!("{path}.tls.client_ca"), c)),
        };
        match tls.load() {
            Ok(_) => Some(tls),
            Err(e) => {
                self.report.error(tls_field(path, e.field), e.reason);
                None
            }
        }
    }

    /// The `tls` of a forward output to `address`.
    fn client_tls(
        &mut self,
        path: &str,
        f: &ClientTlsFile,
        address: &str,
    ) -> Option<crate::tls::ClientTls> {
        let server_name = match &f.server_name {
            Some(n) => n.clone(),
            None => split_host_port(address)
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .unwrap_or_default(),
        };
        let tls = crate::tls::ClientTls {
            ca: self.resolve(&format!("{path}.tls.ca"), &f.ca),
            cert: f
                .cert
                .as_deref()
                .map(|c| self.resolve(&format!("{path}.tls.cert"), c)),
            key: f
                .key
                .as_deref()
                .map(|k| self.resolve(&format!("{path}.tls.key"), k)),
            server_name,
        };
        match tls.load().and_then(|_| tls.server_name()) {
            Ok(_) => Some(tls),
            Err(e) => {
                self.report.error(tls_field(path, e.field), e.reason);
                None
            }
        }
    }

    /// One WASM filter. The plugin itself is loaded by `check` and the
    /// pipeline, not here: a config is plain data.
    pub(super) fn wasm_filter(&mut self, path: &str, w: &WasmFilterFile) -> WasmFilterConfig {
        let plugin = self.resolve(&format!("{path}.path"), &w.path);
        if let Some(0) = w.fuel {
            self.report.error(
                format!("{path}.fuel"),
                "0 fuel would stop every call at once",
            );
        }
        let timeout_ms = w.timeout_ms.map(|t| {
            self.bounded(
                &format!("{path}.timeout_ms"),
                Some(t),
                100,
                1,
                MAX_FILTER_TIMEOUT_MS,
            )
        });
        if let Some(m) = w.max_memory_bytes {
            if m < WASM_PAGE {
                self.report.error(
                    format!("{path}.max_memory_bytes"),
                    format!("{m} is less than one WebAssembly page ({WASM_PAGE} bytes)"),
                );
            } else if m > WASM32_MAX_MEMORY {
                self.report.error(
                    format!("{path}.max_memory_bytes"),
                    format!("{m} is more than a 32-bit WebAssembly memory can hold ({WASM32_MAX_MEMORY} bytes)"),
                );
            }
        }
        WasmFilterConfig {
            path: plugin,
            config: w.config.clone().unwrap_or_else(|| serde_json::json!({})),
            fuel: w.fuel,
            timeout_ms,
            max_memory_bytes: w.max_memory_bytes,
            on_error: w.on_error.unwrap_or_default(),
        }
    }

    /// One output; `None` when it is too broken to describe (reported).
    pub(super) fn output(&mut self, path: &str, o: &OutputFile) -> Option<OutputConfig> {
        Some(match o {
            OutputFile::Stdout(s) => {
                let encoding = s.encoding.unwrap_or_default();
                let text = text_format(&s.format, &s.datefmt, s.style, s.utc, DEFAULT_FORMAT);
                self.check_text(path, encoding, s.format.is_some(), &text);
                OutputConfig::Stream(StreamOutputConfig {
                    stream: StreamKind::Stdout,
                    encoding,
                    text,
                })
            }
            OutputFile::File(f) => OutputConfig::File(self.file_output(path, f)),
            OutputFile::Forward(f) => OutputConfig::Forward(self.forward_output(path, f)?),
            OutputFile::Nats(n) => OutputConfig::Nats(self.nats_output(path, n)),
        })
    }

    /// Check a text layout: the format must compile (`encoding: text`) or
    /// is pointless (`encoding: json`).
    pub(super) fn check_text(
        &mut self,
        path: &str,
        encoding: Encoding,
        format_given: bool,
        text: &TextFormat,
    ) {
        match encoding {
            Encoding::Text => self.check_format(path, text),
            Encoding::Json if format_given => self.report.warn(
                format!("{path}.format"),
                "ignored: this output writes JSON (`encoding: json`)",
            ),
            Encoding::Json => {}
        }
    }

    /// Compile a format once, at load, so a bad one is a config error.
    /// `path` is the object holding `format` and `datefmt`.
    pub(super) fn check_format(&mut self, path: &str, text: &TextFormat) {
        if let Err(e) = crate::format::Template::compile(text) {
            let key = match &text.datefmt {
                Some(d) if *d == e.format && *d != text.format => "datefmt",
                _ => "format",
            };
            self.report.error(format!("{path}.{key}"), e.to_string());
        }
    }

    /// A file output: size or time rotation, never both.
    pub(super) fn file_output(&mut self, path: &str, f: &FileOutputFile) -> FileOutputConfig {
        let encoding = f.encoding.unwrap_or_default();
        let text = text_format(&f.format, &f.datefmt, f.style, f.utc, DEFAULT_FORMAT);
        self.check_text(path, encoding, f.format.is_some(), &text);
        let (file, max_open_files) = self.file_path(path, f);
        let when = f.when.as_deref().and_then(|w| {
            parse_when(w)
                .map_err(|what| self.report.error(format!("{path}.when"), what))
                .ok()
        });
        if when.is_some() && f.max_bytes.is_some_and(|m| m > 0) {
            self.report.error(
                format!("{path}.when"),
                "rotate by size (`max_bytes`) or by time (`when`), not both",
            );
        }
        if f.when.is_none() {
            for (key, given) in [
                ("interval", f.interval.is_some()),
                ("at_time", f.at_time.is_some()),
            ] {
                if given {
                    self.report.error(
                        format!("{path}.{key}"),
                        "only applies to timed rotation: add `when`",
                    );
                }
            }
        }
        let at_time = f
            .at_time
            .as_ref()
            .and_then(|t| self.at_time(&format!("{path}.at_time"), t, when));
        let interval = f.interval.unwrap_or(1);
        if interval == 0 {
            self.report
                .error(format!("{path}.interval"), "must be at least 1");
        }
        FileOutputConfig {
            path: file,
            encoding,
            text,
            max_bytes: f.max_bytes.unwrap_or(0),
            backup_count: f.backup_count.unwrap_or(0),
            when,
            interval: interval.max(1),
            at_time,
            compress: f.compress,
            flush_ms: self.bounded(
                &format!("{path}.flush_ms"),
                f.flush_ms,
                DEFAULT_FLUSH_MS,
                0,
                MAX_FLUSH_MS,
            ),
            fsync: f.fsync.unwrap_or(false),
            truncate: f.truncate.unwrap_or(false),
            max_open_files,
        }
    }

    /// A file output's `path`: literal (escapes undone, resolved), or a
    /// template with its bound on open files.
    fn file_path(&mut self, path: &str, f: &FileOutputFile) -> (PathBuf, Option<usize>) {
        let key = format!("{path}.path");
        let kind = match classify(&f.path) {
            Ok(kind) => kind,
            Err(e) => {
                self.report.error(&key, e.to_string());
                return (self.resolve(&key, &f.path), None);
            }
        };
        let literal = match kind {
            PathKind::Literal(p) => p,
            PathKind::Template => {
                if f.truncate == Some(true) {
                    self.report.error(
                        format!("{path}.truncate"),
                        "cannot be used with a path template: files closed beyond \
                         `max_open_files` are reopened for append",
                    );
                }
                let max = self.bounded(
                    &format!("{path}.max_open_files"),
                    f.max_open_files,
                    DEFAULT_MAX_OPEN_FILES,
                    1,
                    MAX_OPEN_FILES,
                );
                // The directory joins the template as literal text: it may
                // hold `{` or `%` itself.
                let template = if Path::new(&f.path).is_absolute() {
                    PathBuf::from(&f.path)
                } else {
                    let dir = escape(&self.dir.to_string_lossy());
                    PathBuf::from(dir).join(&f.path)
                };
                return (template, Some(max as usize));
            }
        };
        if f.max_open_files.is_some() {
            self.report.error(
                format!("{path}.max_open_files"),
                "only applies to a path template (`{field}` or `%` fields in `path`)",
            );
        }
        (self.resolve(&key, &literal), None)
    }

    /// Check `HH:MM[:SS]` for a midnight or weekday rollover.
    pub(super) fn at_time(&mut self, path: &str, t: &str, when: Option<When>) -> Option<String> {
        if !matches!(when, Some(When::Midnight | When::Weekday(_)) | None) {
            self.report
                .error(path, "only applies to `when` midnight or W0..W6");
            return None;
        }
        let parts: Vec<&str> = t.split(':').collect();
        let limits = [24, 60, 60];
        let ok = (2..=3).contains(&parts.len())
            && parts
                .iter()
                .zip(limits)
                .all(|(p, lim)| p.len() == 2 && p.parse::<u32>().is_ok_and(|v| v < lim));
        if !ok {
            self.report.error(
                path,
                format!("{t:?} is not a time of day (HH:MM or HH:MM:SS)"),
            );
            return None;
        }
        Some(t.to_string())
    }

    /// A forward output: exactly one of `address` and `path`.
    pub(super) fn forward_output(
        &mut self,
        path: &str,
        f: &ForwardOutputFile,
    ) -> Option<ForwardOutputConfig> {
        let target = match (&f.address, &f.path) {
            (Some(a), None) => {
                self.host_port(&format!("{path}.address"), a, true);
                ForwardTarget::Tcp(a.clone())
            }
            (None, Some(p)) => ForwardTarget::Unix(self.socket_path(&format!("{path}.path"), p)),
            (Some(_), Some(_)) => {
                self.report
                    .error(path, "give `address` or `path`, not both");
                return None;
            }
            (None, None) => {
                self.report.error(
                    path,
                    "missing `address` (host:port) or `path` (a Unix socket)",
                );
                return None;
            }
        };
        let buffer_records = self.bounded(
            &format!("{path}.buffer_records"),
            f.buffer_records,
            DEFAULT_BUFFER_RECORDS as u64,
            1,
            MAX_BUFFER_RECORDS,
        );
        let encoder = f.encoder.unwrap_or_default();
        if encoder != Encoder::Fluent {
            for (key, given) in [
                ("tag", f.tag.is_some()),
                ("require_ack", f.require_ack.is_some()),
            ] {
                if given {
                    self.report.error(
                        format!("{path}.{key}"),
                        format!("`{key}` applies only to `\"encoder\": \"fluent\"`"),
                    );
                }
            }
        } else if f.ack == Some(true) {
            self.report.error(
                format!("{path}.ack"),
                "`ack` is logrelay's own protocol; a Fluentd peer acknowledges with `require_ack`",
            );
        }
        if f.tag.as_deref() == Some("") {
            self.report.error(format!("{path}.tag"), "the tag is empty");
        }
        let spool_dir = f
            .spool_dir
            .as_deref()
            .map(|d| self.resolve(&format!("{path}.spool_dir"), d));
        let tls = match (&f.tls, &target) {
            (Some(t), ForwardTarget::Tcp(address)) => self.client_tls(path, t, address),
            (Some(_), ForwardTarget::Unix(_)) => {
                self.report.error(
                    format!("{path}.tls"),
                    "`tls` applies to a tcp `address`; a Unix socket stays on this host",
                );
                None
            }
            (None, _) => None,
        };
        let token = f
            .token_file
            .as_deref()
            .and_then(|t| self.token(&format!("{path}.token_file"), t));
        if f.token_file.is_some() && f.ack != Some(true) {
            self.report.error(
                format!("{path}.token_file"),
                "the token travels in the acknowledged handshake: add `\"ack\": true`",
            );
        }
        Some(ForwardOutputConfig {
            target,
            encoder,
            buffer_records: usize::try_from(buffer_records).unwrap_or(DEFAULT_BUFFER_RECORDS),
            when_full: f.when_full.unwrap_or_default(),
            ack: f.ack.unwrap_or(false),
            tag: f
                .tag
                .clone()
                .unwrap_or_else(|| DEFAULT_FLUENT_TAG.to_string()),
            require_ack: f.require_ack.unwrap_or(false),
            spool_dir,
            tls,
            token,
        })
    }

    /// A level: a standard name (any case) or a non-negative number.
    pub(super) fn level(&mut self, path: &str, l: &LevelFile) -> Option<i64> {
        match l {
            LevelFile::Number(n) if *n < 0 => {
                self.report.error(path, format!("level {n} is negative"));
                None
            }
            LevelFile::Number(n) => Some(*n),
            LevelFile::Name(s) => {
                let level = level_from_name(&s.to_ascii_uppercase());
                if level.is_none() {
                    self.report.error(
                        path,
                        format!(
                            "unknown level {s:?} (expected CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET or a number)"
                        ),
                    );
                }
                level
            }
        }
    }

    /// One native route; every name it uses must exist.
    pub(super) fn route(
        &mut self,
        path: &str,
        r: &RouteFile,
        inputs: &BTreeMap<String, String>,
        filters: &[String],
        outputs: &BTreeMap<String, Origin>,
    ) -> RouteConfig {
        let from = r.from.as_ref().map(|from| {
            if from.is_empty() {
                self.report.error(
                    format!("{path}.from"),
                    "an empty list matches nothing; leave `from` out to take every input",
                );
            }
            self.names(&format!("{path}.from"), from, "input", |n| {
                inputs.contains_key(n)
            });
            from.clone()
        });
        if let Some(loggers) = &r.loggers {
            if loggers.is_empty() {
                self.report.error(
                    format!("{path}.loggers"),
                    "an empty list matches nothing; leave `loggers` out to match every logger",
                );
            }
        }
        let min_level = r
            .min_level
            .as_ref()
            .and_then(|l| self.level(&format!("{path}.min_level"), l));
        let flt = r.filters.clone().unwrap_or_default();
        self.names(&format!("{path}.filters"), &flt, "filter", |n| {
            filters.iter().any(|f| f == n)
        });
        let to = match &r.to {
            None => {
                self.report
                    .error(path, "missing `to`: a route must name its outputs");
                Vec::new()
            }
            Some(to) => {
                if to.is_empty() {
                    self.report.error(
                        format!("{path}.to"),
                        "no outputs: a route must name at least one",
                    );
                }
                self.names(&format!("{path}.to"), to, "output", |n| {
                    outputs.contains_key(n)
                });
                for (i, n) in to.iter().enumerate() {
                    if to[..i].contains(n) {
                        self.report.error(
                            format!("{path}.to[{i}]"),
                            format!("output {n:?} is listed twice"),
                        );
                    }
                }
                to.clone()
            }
        };
        RouteConfig {
            from,
            loggers: r.loggers.clone(),
            min_level,
            filters: flt,
            to,
            ..RouteConfig::default()
        }
    }

    /// Report every name in `list` that `exists` does not know.
    pub(super) fn names(
        &mut self,
        path: &str,
        list: &[String],
        what: &str,
        exists: impl Fn(&str) -> bool,
    ) {
        for (i, n) in list.iter().enumerate() {
            if !exists(n) {
                self.report
                    .error(format!("{path}[{i}]"), format!("no {what} named {n:?}"));
            }
        }
    }
}

/// The JSON path of a `tls` field (`inputs.app.tls.cert`), or of `tls`.
fn tls_field(path: &str, field: &str) -> String {
    if field.is_empty() {
        format!("{path}.tls")
    } else {
        format!("{path}.tls.{field}")
    }
}

/// A [`TextFormat`] from the keys of an output or a dictConfig formatter.
pub(super) fn text_format(
    format: &Option<String>,
    datefmt: &Option<String>,
    style: Option<Style>,
    utc: Option<bool>,
    default: &str,
) -> TextFormat {
    TextFormat {
        format: format.clone().unwrap_or_else(|| default.to_string()),
        datefmt: datefmt.clone(),
        style: style.unwrap_or_default(),
        utc: utc.unwrap_or(false),
    }
}

/// `S`, `M`, `H`, `D`, `midnight`, `W0`..`W6`, case-insensitive as in
/// TimedRotatingFileHandler.
pub(super) fn parse_when(w: &str) -> Result<When, String> {
    Ok(match w.to_ascii_uppercase().as_str() {
        "S" => When::S,
        "M" => When::M,
        "H" => When::H,
        "D" => When::D,
        "MIDNIGHT" => When::Midnight,
        u => match u.strip_prefix('W').and_then(|d| d.parse::<u8>().ok()) {
            Some(day) if day <= 6 && u.len() == 2 => When::Weekday(day),
            _ => {
                return Err(format!(
                    "unknown rotation interval {w:?} (expected S, M, H, D, midnight or W0..W6)"
                ))
            }
        },
    })
}

/// An octal permission string: `"0660"`, `"660"` or `"0o660"`.
pub(super) fn parse_mode(m: &str) -> Result<u32, String> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if !digits.is_empty() && v <= 0o777 => Ok(v),
        Ok(_) => Err(format!(
            "{m:?} is more than permission bits (at most \"0777\")"
        )),
        Err(_) => Err(format!("{m:?} is not an octal mode like \"0660\"")),
    }
}
