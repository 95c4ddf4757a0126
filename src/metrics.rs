//! Metrics: counters every stage keeps, and the optional HTTP endpoint
//! (`"metrics": {"address": "127.0.0.1:9102"}`) serving them as Prometheus
//! text at `/metrics`, with `/health` (200 while running, 503 while
//! draining).
//!
//! Stages own their counters (atomics in `InputStats`, `OutputStats`, the
//! filters); the registry only holds `Arc`s to them, replaced on reload, so
//! counting costs nothing extra on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::filter::Filter;
use crate::input::InputStats;
use crate::output::OutputStats;

/// What the registry reads from: the running components, by name.
#[derive(Default)]
pub struct Sources {
    /// Inputs by current name.
    pub inputs: Vec<(String, Arc<InputStats>)>,
    /// Outputs by name.
    pub outputs: Vec<(String, Arc<OutputStats>)>,
    /// Filters by name.
    pub filters: Vec<(String, Arc<Filter>)>,
}

/// The process-wide registry.
#[derive(Default)]
pub struct Registry {
    sources: Mutex<Sources>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    reloads_unchanged: AtomicU64,
    draining: AtomicBool,
}

/// The registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Count a reload attempt.
pub fn reload(ok: bool) {
    let r = global();
    if ok {
        r.reloads_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        r.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Count a reload request that found the config as it was (a SIGHUP
/// after no edit).
pub fn reload_unchanged() {
    global().reloads_unchanged.fetch_add(1, Ordering::Relaxed);
}

impl Registry {
    /// Point the registry at the components now running.
    pub fn set_sources(&self, sources: Sources) {
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    /// Mark the process as draining (`/health` answers 503).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the process is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        family(
            &mut out,
            "logrelay_records_received_total",
            "counter",
            "Records decoded by each input.",
        );
        for (name, st) in &s.inputs {
            sample(
                &mut out,
                "logrelay_records_received_total",
                &[("input", name)],
                st.received.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_bytes_received_total",
            "counter",
            "Bytes read by each input.",
        );
        for (name, st) in &s.inputs {
            sample(
                &mut out,
                "logrelay_bytes_received_total",
                &[("input", name)],
                st.bytes.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_connections_total",
            "counter",
            "Connections accepted by each input.",
        );
        for (name, st) in &s.inputs {
            sample(
                &mut out,
                "logrelay_connections_total",
                &[("input", name)],
                st.connections.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_records_rejected_total",
            "counter",
            "Frames or records refused, by input and reason.",
        );
        for (name, st) in &s.inputs {
            let rejected = st.rejected.lock().unwrap_or_else(|e| e.into_inner());
            let mut reasons: Vec<_> = rejected.iter().collect();
            reasons.sort();
            for (reason, n) in reasons {
                sample(
                    &mut out,
                    "logrelay_records_rejected_total",
                    &[("input", name), ("reason", reason)],
                    *n,
                );
            }
        }
        family(
            &mut out,
            "logrelay_records_filtered_total",
            "counter",
            "Records dropped by each filter.",
        );
        for (name, f) in &s.filters {
            sample(
                &mut out,
                "logrelay_records_filtered_total",
                &[("filter", name)],
                f.dropped(),
            );
        }
        family(
            &mut out,
            "logrelay_filter_calls_total",
            "counter",
            "Records each filter was called on.",
        );
        for (name, f) in &s.filters {
            sample(
                &mut out,
                "logrelay_filter_calls_total",
                &[("filter", name)],
                f.calls(),
            );
        }
        family(
            &mut out,
            "logrelay_filter_errors_total",
            "counter",
            "Failed filter calls (trap, timeout, memory).",
        );
        for (name, f) in &s.filters {
            sample(
                &mut out,
                "logrelay_filter_errors_total",
                &[("filter", name)],
                f.errors(),
            );
        }
        family(
            &mut out,
            "logrelay_records_written_total",
            "counter",
            "Records written by each output.",
        );
        for (name, st) in &s.outputs {
            sample(
                &mut out,
                "logrelay_records_written_total",
                &[("output", name)],
                st.written.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_bytes_written_total",
            "counter",
            "Bytes written by each output.",
        );
        for (name, st) in &s.outputs {
            sample(
                &mut out,
                "logrelay_bytes_written_total",
                &[("output", name)],
                st.bytes.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_output_errors_total",
            "counter",
            "Write errors seen by each output (each retried).",
        );
        for (name, st) in &s.outputs {
            sample(
                &mut out,
                "logrelay_output_errors_total",
                &[("output", name)],
                st.errors.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_records_dropped_total",
            "counter",
            "Records an output dropped by policy (forward when_full: drop_newest).",
        );
        for (name, st) in &s.outputs {
            sample(
                &mut out,
                "logrelay_records_dropped_total",
                &[("output", name)],
                st.dropped.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_forward_buffer_records",
            "gauge",
            "Records buffered by each forward output.",
        );
        for (name, st) in &s.outputs {
            if st.is_forward.load(Ordering::Relaxed) {
                sample(
                    &mut out,
                    "logrelay_forward_buffer_records",
                    &[("output", name)],
                    st.buffered.load(Ordering::Relaxed),
                );
            }
        }
        family(
            &mut out,
            "logrelay_reloads_total",
            "counter",
            "Config reloads, by result.",
        );
        sample(
            &mut out,
            "logrelay_reloads_total",
            &[("result", "success")],
            self.reloads_ok.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "logrelay_reloads_total",
            &[("result", "failure")],
            self.reloads_failed.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "logrelay_reloads_total",
            &[("result", "unchanged")],
            self.reloads_unchanged.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "logrelay_connections_open",
            "gauge",
            "Connections open now on each stream input.",
        );
        for (name, st) in &s.inputs {
            sample(
                &mut out,
                "logrelay_connections_open",
                &[("input", name)],
                st.open.load(Ordering::Relaxed),
            );
        }
        family(
            &mut out,
            "logrelay_connections_closed_total",
            "counter",
            "Connections logrelay closed, by input and reason (stalled, frame_timeout, max_connections, fd_limit, tls, auth).",
        );
        for (name, st) in &s.inputs {
            let closed = st.closed.lock().unwrap_or_else(|e| e.into_inner());
            let mut reasons: Vec<_> = closed.iter().collect();
            reasons.sort();
            for (reason, n) in reasons {
                sample(
                    &mut out,
                    "logrelay_connections_closed_total",
                    &[("input", name), ("reason", reason)],
                    *n,
                );
            }
        }
        family(
            &mut out,
            "logrelay_pending_frame_bytes",
            "gauge",
            "Bytes of partial frames buffered across all connections (bounded by max_pending_bytes).",
        );
        sample(
            &mut out,
            "logrelay_pending_frame_bytes",
            &[],
            crate::input::pending::total() as u64,
        );
        crate::nats::render_metrics(&mut out);
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if labels.is_empty() {
        let _ = writeln!(out, " {value}");
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    let _ = writeln!(out, "}} {value}");
}

/// Serve `/metrics` and `/health` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, stop: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        tokio::spawn(async move {
            // One small request per connection; a client that sends no
            // request line within 5 s is dropped.
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<(), std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = buf
                .split(|&b| b == b'\r' || b == b'\n')
                .next()
                .unwrap_or(&[]);
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            // HEAD is GET without the body (RFC 9110 9.3.2): load
            // balancers and uptime checkers probe with it.
            let head = method == "HEAD";
            let method = if head { "GET" } else { method };
            let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
                ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", global().render()),
                ("GET", "/health") if global().draining() => (
                    "503 Service Unavailable",
                    "text/plain",
                    "draining\n".to_string(),
                ),
                ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_string()),
                ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "method not allowed\n".to_string(),
                ),
            };
            // A 405 must say which methods are allowed (RFC 9110 15.5.6).
            let allow = if status.starts_with("405") {
                "Allow: GET, HEAD\r\n"
            } else {
                ""
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
                body.len(),
                if head { "" } else { body.as_str() }
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
