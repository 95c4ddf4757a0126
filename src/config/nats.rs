//! Resolving the `nats` output and input: their defaults, bounds and
//! checks. Their keys in `listener.json` are mirrored in `file.rs`, and
//! their resolved form is in `mod.rs`, as for every other component.
//!
//! ```json
//! "outputs": {"stream": {"type": "nats", "servers": ["nats://10.0.0.1:4222"],
//!                        "stream": "LOGS", "subject": "logs.{name}", "replicas": 3}}
//! "inputs":  {"central": {"type": "nats", "servers": ["nats://10.0.0.1:4222"],
//!                         "stream": "LOGS", "consumer": "central"}}
//! ```

use super::builder::{Builder, MAX_BUFFER_RECORDS};
use super::file::{NatsInputFile, NatsOutputFile, NatsTlsFile};
use super::{
    Encoder, NatsConnect, NatsInputConfig, NatsOutputConfig, NatsTls, DEFAULT_BUFFER_RECORDS,
};

/// Default `max_in_flight` of a nats output: publishes awaiting their ack.
pub const DEFAULT_NATS_IN_FLIGHT: usize = 1024;
/// Default `subject` of a nats output.
pub const DEFAULT_NATS_SUBJECT: &str = "logs.{name}";
/// Default `subject` of a nats output with `batch_bytes`: a packed message
/// holds records of any logger, so its subject names none.
pub const DEFAULT_NATS_PACKED_SUBJECT: &str = "logs.packed";
/// Largest `replicas` JetStream allows.
const MAX_REPLICAS: u64 = 5;
/// Largest `max_in_flight`.
const MAX_IN_FLIGHT: u64 = 65_536;
/// Largest `batch_bytes` of a nats output: NATS servers take messages of
/// up to 1 MiB by default (`max_payload`).
pub const MAX_NATS_BATCH_BYTES: u64 = 1024 * 1024;
/// Largest `batch` of a nats input.
const MAX_FETCH: u64 = 10_000;
/// Default `ack_wait_ms` of a nats input.
pub const DEFAULT_NATS_ACK_WAIT_MS: u64 = 30_000;
/// Largest `ack_wait_ms`: an hour.
const MAX_ACK_WAIT_MS: u64 = 3_600_000;
/// Default `batch` of a nats input: messages asked for per pull.
pub const DEFAULT_NATS_FETCH: usize = 512;

/// Whether `name` is a valid stream or consumer name.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 255 {
        return Some("is longer than 255 bytes");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Some("may not contain whitespace, `.`, `*`, `>`, `/` or `\\`");
    }
    None
}

/// The literal text of a subject template before its first placeholder,
/// escapes undone, and whether there is a placeholder at all.
pub fn subject_prefix(subject: &str) -> (String, bool) {
    let mut out = String::new();
    let mut chars = subject.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) | ('%', Some('%')) => {
                out.push(c);
                chars.next();
            }
            ('{', _) | ('%', _) => return (out, true),
            _ => out.push(c),
        }
    }
    (out, false)
}

impl Builder<'_, '_> {
    fn nats_connect(
        &mut self,
        path: &str,
        servers: &[String],
        token_file: &Option<String>,
        creds_file: &Option<String>,
        tls: &Option<NatsTlsFile>,
    ) -> NatsConnect {
        if servers.is_empty() {
            self.report.error(
                format!("{path}.servers"),
                "list at least one server (\"nats://host:4222\")",
            );
        }
        for (i, s) in servers.iter().enumerate() {
            if let Err(e) = s.parse::<async_nats::ServerAddr>() {
                self.report.error(
                    format!("{path}.servers[{i}]"),
                    format!("{s:?} is not a NATS server address: {e}"),
                );
            }
        }
        if token_file.is_some() && creds_file.is_some() {
            self.report.error(
                format!("{path}.creds_file"),
                "give `token_file` or `creds_file`, not both",
            );
        }
        let token_file = token_file
            .as_deref()
            .map(|f| self.resolve(&format!("{path}.token_file"), f));
        let creds_file = creds_file
            .as_deref()
            .map(|f| self.resolve(&format!("{path}.creds_file"), f));
        let tls = tls.as_ref().map(|t| {
            if t.server_name.is_some() {
                self.report.error(
                    format!("{path}.tls.server_name"),
                    "not supported for NATS: each server's certificate is checked against the host in its URL",
                );
            }
            let ca = t
                .ca
                .as_deref()
                .map(|f| self.resolve(&format!("{path}.tls.ca"), f));
            let cert = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => Some((
                    self.resolve(&format!("{path}.tls.cert"), c),
                    self.resolve(&format!("{path}.tls.key"), k),
                )),
                (None, None) => None,
                (Some(_), None) => {
                    self.report
                        .error(format!("{path}.tls.key"), "`cert` needs its `key`");
                    None
                }
                (None, Some(_)) => {
                    self.report
                        .error(format!("{path}.tls.cert"), "`key` needs its `cert`");
                    None
                }
            };
            NatsTls { ca, cert }
        });
        NatsConnect {
            servers: servers.to_vec(),
            token_file,
            creds_file,
            tls,
        }
    }

    /// A nats output.
    pub(super) fn nats_output(&mut self, path: &str, f: &NatsOutputFile) -> NatsOutputConfig {
        let connect = self.nats_connect(path, &f.servers, &f.token_file, &f.creds_file, &f.tls);
        if let Some(why) = name_problem(&f.stream) {
            self.report
                .error(format!("{path}.stream"), format!("the stream name {why}"));
        }
        let batch_bytes = self.bounded(
            &format!("{path}.batch_bytes"),
            f.batch_bytes,
            0,
            0,
            MAX_NATS_BATCH_BYTES,
        );
        let default = if batch_bytes > 0 {
            DEFAULT_NATS_PACKED_SUBJECT
        } else {
            DEFAULT_NATS_SUBJECT
        };
        let subject = f.subject.clone().unwrap_or_else(|| default.to_string());
        let stream_subjects = self.nats_subject(&format!("{path}.subject"), &subject);
        if batch_bytes > 0 && stream_subjects.iter().any(|s| s.ends_with('>')) {
            self.report.error(
                format!("{path}.subject"),
                format!(
                    "{subject:?} has placeholders, but with batch_bytes one message holds consecutive records of any logger: give a fixed subject (the default with batch_bytes is {DEFAULT_NATS_PACKED_SUBJECT:?})"
                ),
            );
        }
        let replicas = self.bounded(&format!("{path}.replicas"), f.replicas, 1, 1, MAX_REPLICAS);
        let encoder = match f.encoder.unwrap_or(Encoder::Json) {
            Encoder::Fluent => {
                self.report.error(
                    format!("{path}.encoder"),
                    "a nats output encodes json, msgpack or pickle",
                );
                Encoder::Json
            }
            other => other,
        };
        let max_in_flight = self.bounded(
            &format!("{path}.max_in_flight"),
            f.max_in_flight,
            DEFAULT_NATS_IN_FLIGHT as u64,
            1,
            MAX_IN_FLIGHT,
        );
        let buffer_records = self.bounded(
            &format!("{path}.buffer_records"),
            f.buffer_records,
            DEFAULT_BUFFER_RECORDS as u64,
            1,
            MAX_BUFFER_RECORDS,
        );
        let spool_dir = f
            .spool_dir
            .as_deref()
            .map(|d| self.resolve(&format!("{path}.spool_dir"), d));
        NatsOutputConfig {
            connect,
            stream: f.stream.clone(),
            subject,
            stream_subjects,
            replicas: replicas as usize,
            encoder,
            max_in_flight: max_in_flight as usize,
            batch_bytes: usize::try_from(batch_bytes).unwrap_or(0),
            buffer_records: usize::try_from(buffer_records).unwrap_or(DEFAULT_BUFFER_RECORDS),
            when_full: f.when_full.unwrap_or_default(),
            spool_dir,
        }
    }

    /// Check a subject template; returns the subjects of a stream created
    /// for it: the literal tokens before the first placeholder, then `>`.
    fn nats_subject(&mut self, path: &str, subject: &str) -> Vec<String> {
        if let Err(e) = crate::format::path::classify(subject) {
            self.report.error(path, e.to_string());
            return Vec::new();
        }
        let (prefix, templated) = subject_prefix(subject);
        if prefix
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '>')
        {
            self.report.error(
                path,
                format!("{subject:?}: a subject may not contain whitespace, `*` or `>`"),
            );
            return Vec::new();
        }
        if !templated {
            if prefix.is_empty() || prefix.split('.').any(str::is_empty) {
                self.report.error(
                    path,
                    format!("{subject:?} is not a subject (tokens separated by single dots)"),
                );
            }
            return vec![prefix];
        }
        // Whole literal tokens before the first placeholder.
        let literal = match prefix.rfind('.') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if literal.is_empty() || literal.split('.').any(str::is_empty) {
            self.report.error(
                path,
                format!(
                    "{subject:?}: start with a literal token, as in \"logs.{{name}}\", so the stream's subjects (\"logs.>\") do not take every message"
                ),
            );
            return Vec::new();
        }
        vec![format!("{literal}.>")]
    }

    /// A nats input.
    pub(super) fn nats_input(&mut self, path: &str, f: &NatsInputFile) -> NatsInputConfig {
        let connect = self.nats_connect(path, &f.servers, &f.token_file, &f.creds_file, &f.tls);
        if let Some(why) = name_problem(&f.stream) {
            self.report
                .error(format!("{path}.stream"), format!("the stream name {why}"));
        }
        if let Some(why) = name_problem(&f.consumer) {
            self.report.error(
                format!("{path}.consumer"),
                format!("the consumer name {why}"),
            );
        }
        let batch = self.bounded(
            &format!("{path}.batch"),
            f.batch,
            DEFAULT_NATS_FETCH as u64,
            1,
            MAX_FETCH,
        );
        let ack_wait_ms = self.bounded(
            &format!("{path}.ack_wait_ms"),
            f.ack_wait_ms,
            DEFAULT_NATS_ACK_WAIT_MS,
            1000,
            MAX_ACK_WAIT_MS,
        );
        NatsInputConfig {
            connect,
            stream: f.stream.clone(),
            consumer: f.consumer.clone(),
            batch: batch as usize,
            ack_wait_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefix_stops_at_the_first_placeholder() {
        assert_eq!(subject_prefix("logs.{name}"), ("logs.".into(), true));
        assert_eq!(subject_prefix("a.{{b}}.%Y"), ("a.{b}.".into(), true));
        assert_eq!(subject_prefix("logs.all"), ("logs.all".into(), false));
    }
}
