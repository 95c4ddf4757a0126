//! `Config::describe`: the pipeline in words, for `logrelay check`.

use std::fmt::Write as _;

use super::*;

impl Config {
    /// The pipeline, human-readable: inputs, filters, outputs, routes as
    /// `from -> [filters] -> to` with their conditions, the top-level
    /// limits, and the warnings.
    ///
    /// ```
    /// let text = logrelay::config::load_default().describe();
    /// assert!(text.contains("default  tcp 127.0.0.1:9020"));
    /// assert!(text.contains("every input -> stdout"));
    /// ```
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(src) = &self.source {
            let _ = writeln!(s, "config: {}", src.display());
        } else {
            s.push_str("config: embedded default\n");
        }
        section(
            &mut s,
            "inputs",
            self.inputs.iter().map(|(n, i)| (n, input(i))),
        );
        section(
            &mut s,
            "filters",
            self.filters.iter().map(|(n, f)| (n, filter(f))),
        );
        section(
            &mut s,
            "outputs",
            self.outputs.iter().map(|(n, o)| (n, output(o))),
        );
        s.push_str("routes:\n");
        for (i, r) in self.routes.iter().enumerate() {
            let _ = writeln!(s, "  {}. {}", i + 1, route(r));
        }
        let _ = writeln!(
            s,
            "limits: drain_seconds {}, shutdown_timeout_ms {}",
            self.drain_seconds, self.shutdown_timeout_ms
        );
        if let Some(m) = &self.metrics {
            let _ = writeln!(s, "metrics: http://{}/metrics and /health", m.address);
        }
        if !self.warnings.is_empty() {
            s.push_str("warnings:\n");
            for w in &self.warnings {
                let _ = writeln!(s, "  {w}");
            }
        }
        s
    }
}

/// `name: what` lines under a heading, names aligned.
fn section<'a>(s: &mut String, title: &str, items: impl Iterator<Item = (&'a String, String)>) {
    let items: Vec<(&String, String)> = items.collect();
    if items.is_empty() {
        return;
    }
    let width = items
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let _ = writeln!(s, "{title}:");
    for (name, what) in items {
        let _ = writeln!(s, "  {name:<width$}  {what}");
    }
}

fn input(i: &InputConfig) -> String {
    let place = match &i.kind {
        InputKind::Tcp { address } => format!("tcp {address}"),
        InputKind::Udp { address } => format!("udp {address}"),
        InputKind::Unix { path, mode } => match mode {
            Some(m) => format!("unix {} (mode {m:04o})", path.display()),
            None => format!("unix {}", path.display()),
        },
        InputKind::Nats(n) => {
            return format!(
                "nats {}, stream {}, durable consumer {} (explicit acks, encoder from each message's header)",
                n.connect.servers.join(" "),
                n.stream,
                n.consumer
            )
        }
    };
    let mut s = format!(
        "{place}, decoder {}, framing {}, max frame {} bytes",
        i.decoder.as_str(),
        i.framing.as_str(),
        i.max_frame_bytes
    );
    if let Some(tls) = &i.tls {
        let _ = write!(s, ", tls {}", tls.cert.display());
        if let Some(ca) = &tls.client_ca {
            let _ = write!(s, " (client certificates from {})", ca.display());
        }
    }
    if let Some(t) = &i.token {
        let _ = write!(s, ", token from {}", t.path.display());
    }
    s
}

fn filter(f: &FilterConfig) -> String {
    let FilterConfig::Wasm(w) = f;
    let mut s = format!("wasm {}", w.path.display());
    if let Some(fuel) = w.fuel {
        let _ = write!(s, ", fuel {fuel}");
    }
    if let Some(t) = w.timeout_ms {
        let _ = write!(s, ", timeout {t} ms");
    }
    if let Some(m) = w.max_memory_bytes {
        let _ = write!(s, ", memory at most {m} bytes");
    }
    let on_error = match w.on_error {
        OnError::Pass => "pass",
        OnError::Drop => "drop",
    };
    let _ = write!(s, ", on error {on_error}, config {}", w.config);
    s
}

fn text(encoding: Encoding, t: &TextFormat) -> String {
    match encoding {
        Encoding::Json => "json lines".to_string(),
        Encoding::Text => {
            let style = match t.style {
                Style::Percent => "%",
                Style::Brace => "{",
                Style::Dollar => "$",
            };
            let mut s = format!("format {:?}", t.format);
            if style != "%" {
                let _ = write!(s, " (style {style})");
            }
            if let Some(d) = &t.datefmt {
                let _ = write!(s, ", datefmt {d:?}");
            }
            if t.utc {
                s.push_str(", utc");
            }
            s
        }
    }
}

fn output(o: &OutputConfig) -> String {
    match o {
        OutputConfig::Stream(st) => {
            let stream = match st.stream {
                StreamKind::Stdout => "stdout",
                StreamKind::Stderr => "stderr",
            };
            format!("{stream}, {}", text(st.encoding, &st.text))
        }
        OutputConfig::File(f) => {
            let mut s = format!("file {}, {}", f.path.display(), text(f.encoding, &f.text));
            if let Some(n) = f.max_open_files {
                let _ = write!(
                    s,
                    ", path template (one file per rendered path, at most {n} open)"
                );
            }
            if let Some(w) = f.when {
                let n = f.interval;
                let _ = match w {
                    When::S => write!(s, ", rotate every {n} s"),
                    When::M => write!(s, ", rotate every {n} min"),
                    When::H => write!(s, ", rotate every {n} h"),
                    When::D => write!(s, ", rotate every {n} days"),
                    When::Midnight if n == 1 => write!(s, ", rotate at midnight"),
                    When::Midnight => write!(s, ", rotate every {n} days at midnight"),
                    When::Weekday(d) => write!(s, ", rotate every {n} weeks on W{d} (0 = Monday)"),
                };
                if let Some(t) = &f.at_time {
                    let _ = write!(s, " at {t}");
                }
                if f.text.utc {
                    s.push_str(" UTC");
                }
                let _ = write!(s, ", keep {}", f.backup_count);
            } else if f.max_bytes > 0 && f.backup_count > 0 {
                let _ = write!(
                    s,
                    ", rotate at {} chars, keep {}",
                    f.max_bytes, f.backup_count
                );
            }
            if f.compress.is_some() {
                s.push_str(", gzip rotated files");
            }
            if f.truncate {
                s.push_str(", truncate on open");
            }
            let _ = write!(s, ", flush every {} ms", f.flush_ms);
            if f.fsync {
                s.push_str(", fsync");
            }
            s
        }
        OutputConfig::Forward(f) => {
            let target = match &f.target {
                ForwardTarget::Tcp(a) => format!("tcp {a}"),
                ForwardTarget::Unix(p) => format!("unix {}", p.display()),
            };
            let encoder = match f.encoder {
                Encoder::Fluent => format!(
                    "fluent (tag {}{})",
                    f.tag,
                    if f.require_ack { ", require_ack" } else { "" }
                ),
                other => other.as_str().to_string(),
            };
            let when_full = match f.when_full {
                WhenFull::Block => "block",
                WhenFull::DropNewest => "drop newest",
            };
            format!(
                "forward {target}, encoder {encoder}, buffer {} records, when full {when_full}{}{}",
                f.buffer_records,
                if f.ack { ", acknowledged" } else { "" },
                f.spool_dir
                    .as_ref()
                    .map(|d| format!(", spool {}", d.display()))
                    .unwrap_or_default()
            )
        }
        OutputConfig::Nats(n) => format!(
            "nats {}, stream {} (created with subjects {} and {} replica(s) if missing), subject {}, encoder {}, {}, {} publishes in flight, buffer {} records, when full {}{}",
            n.connect.servers.join(" "),
            n.stream,
            n.stream_subjects.join(" "),
            n.replicas,
            n.subject,
            n.encoder.as_str(),
            if n.batch_bytes == 0 {
                "one message per record".to_string()
            } else {
                format!("records packed into messages of up to {} bytes", n.batch_bytes)
            },
            n.max_in_flight,
            n.buffer_records,
            match n.when_full {
                WhenFull::Block => "block",
                WhenFull::DropNewest => "drop newest",
            },
            n.spool_dir
                .as_ref()
                .map(|d| format!(", spool {}", d.display()))
                .unwrap_or_default()
        ),
    }
}

/// `30` as `WARNING`, other numbers as themselves.
fn level(n: i64) -> String {
    let name = match n {
        50 => "CRITICAL",
        40 => "ERROR",
        30 => "WARNING",
        20 => "INFO",
        10 => "DEBUG",
        0 => "NOTSET",
        _ => return n.to_string(),
    };
    name.to_string()
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            if n.is_empty() {
                "\"\"".to_string()
            } else {
                n.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `from (conditions) -> filters -> to`.
fn route(r: &RouteConfig) -> String {
    let mut s = match &r.from {
        None => "every input".to_string(),
        Some(f) => quoted(f),
    };
    let mut cond: Vec<String> = Vec::new();
    if let Some(l) = &r.loggers {
        cond.push(format!("loggers {}", quoted(l)));
    }
    if !r.exclude_loggers.is_empty() {
        cond.push(format!("except loggers {}", quoted(&r.exclude_loggers)));
    }
    for f in &r.name_filters {
        cond.push(format!("passing logging.Filter({f:?})"));
    }
    for (l, f) in &r.logger_filters {
        cond.push(format!(
            "records of logger {l:?} passing logging.Filter({f:?})"
        ));
    }
    if let Some(m) = r.min_level {
        if m > 0 {
            cond.push(format!("level >= {}", level(m)));
        }
    }
    if !cond.is_empty() {
        let _ = write!(s, " ({})", cond.join("; "));
    }
    if !r.filters.is_empty() {
        let _ = write!(s, " -> [{}]", r.filters.join(", "));
    }
    let _ = write!(s, " -> {}", quoted(&r.to));
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn describes_the_cookbook_pipeline() {
        let text = r#"{"port": 9999, "logging": {"version": 1,
            "formatters": {"d": {"format": "%(name)s %(message)s"}},
            "handlers": {"file": {"class": "logging.handlers.RotatingFileHandler",
                                  "filename": "run/app.log", "maxBytes": 1024, "backupCount": 3,
                                  "formatter": "d", "level": "INFO"},
                         "err": {"class": "logging.StreamHandler", "level": "ERROR"}},
            "loggers": {"noisy": {"propagate": false, "handlers": ["err"]}},
            "root": {"handlers": ["file", "err"]}}}"#;
        let c =
            crate::config::parse(text, Path::new("/etc/l.json")).unwrap_or_else(|e| panic!("{e}"));
        let d = c.describe();
        let want = "config: /etc/l.json
inputs:
  cookbook  tcp localhost:9999, decoder pickle, framing length_prefixed, max frame 16777216 bytes
outputs:
  err   stderr, format \"%(message)s\"
  file  file /etc/run/app.log, format \"%(name)s %(message)s\", rotate at 1024 chars, keep 3, flush every 100 ms
routes:
  1. every input (loggers noisy; level >= ERROR) -> err
  2. every input (except loggers noisy; level >= INFO) -> file
  3. every input (except loggers noisy; level >= ERROR) -> err
limits: drain_seconds 30, shutdown_timeout_ms 5000
";
        assert_eq!(d, want);
    }
}
