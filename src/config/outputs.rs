//! Resolving `outputs`: file, stdout and forward outputs (nats outputs are
//! in `nats.rs`), their text layouts and rotation, each into its
//! [`OutputConfig`](super::OutputConfig) with every problem reported at
//! its JSON path.

use std::path::Path;

use super::address::split_host_port;
use super::builder::{tls_field, Builder, MAX_BUFFER_RECORDS, MAX_FLUSH_MS, MAX_OPEN_FILES};
use super::file::*;
use super::*;
use crate::format::path::{classify, escape, PathKind};

impl Builder<'_, '_> {
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
