//! Metrics: counters every stage keeps, and the optional HTTP endpoint
//! (`"metrics": {"address": "127.0.0.1:9102"}`) serving them as Prometheus
//! text at `/metrics`, with `/health` (200 while running, 503 while
//! draining); [`crate::admin`] serves them, with the status page.
//!
//! Stages own their counters (atomics in `InputStats`, `OutputStats`, the
//! filters); the registry only holds `Arc`s to them, replaced on reload, so
//! counting costs nothing extra on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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

    /// Run `f` on the components now running (the status page reads them).
    pub fn with_sources<R>(&self, f: impl FnOnce(&Sources) -> R) -> R {
        f(&self.sources.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads so far: (succeeded, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
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
