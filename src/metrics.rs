//! Metrics: counters every stage keeps, and the optional HTTP endpoint
//! (`"metrics": {"address": "127.0.0.1:9102"}`) serving them as Prometheus
//! text at `/metrics`, with `/health` (200 while running, 503 while
//! draining); [`crate::admin`] serves them, with the status page.
//!
//! Stages own their counters (atomics in `InputStats`, `OutputStats`, the
//! filters); the registry only holds `Arc`s to them, replaced on reload, so
//! counting costs nothing extra on the hot path.

use std::collections::HashMap;
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
        per_source(&mut out, INPUT_TOTALS, "input", &s.inputs);
        by_reason(&mut out, &REJECTED, &s.inputs, |st| &st.rejected);
        per_source(&mut out, FILTER_TOTALS, "filter", &s.filters);
        per_source(&mut out, OUTPUT_TOTALS, "output", &s.outputs);
        let reloads = Family::<()>::new(
            "logrelay_reloads_total",
            "counter",
            "Config reloads, by result.",
            |_| None,
        );
        reloads.head(&mut out);
        for (result, n) in [
            ("success", &self.reloads_ok),
            ("failure", &self.reloads_failed),
            ("unchanged", &self.reloads_unchanged),
        ] {
            sample(
                &mut out,
                reloads.name,
                &[("result", result)],
                n.load(Ordering::Relaxed),
            );
        }
        per_source(&mut out, INPUT_GAUGES, "input", &s.inputs);
        by_reason(&mut out, &CLOSED, &s.inputs, |st| &st.closed);
        let pending = Family::<()>::new(
            "logrelay_pending_frame_bytes",
            "gauge",
            "Bytes of partial frames buffered across all connections (bounded by max_pending_bytes).",
            |_| None,
        );
        pending.head(&mut out);
        sample(
            &mut out,
            pending.name,
            &[],
            crate::input::pending::total() as u64,
        );
        crate::output::nats::client::render_metrics(&mut out);
        out
    }
}

/// One metric family: its name, type, help, and how to read one source's
/// sample (`None`: that source has none, e.g. a gauge only forward outputs
/// keep).
struct Family<T: ?Sized> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> Option<u64>,
}

impl<T: ?Sized> Family<T> {
    const fn new(
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        value: fn(&T) -> Option<u64>,
    ) -> Self {
        Family {
            name,
            kind,
            help,
            value,
        }
    }

    fn head(&self, out: &mut String) {
        family(out, self.name, self.kind, self.help);
    }
}

fn load(n: &AtomicU64) -> Option<u64> {
    Some(n.load(Ordering::Relaxed))
}

/// The counters every input keeps, in the order they are rendered.
const INPUT_TOTALS: &[Family<InputStats>] = &[
    Family::new(
        "logrelay_records_received_total",
        "counter",
        "Records decoded by each input.",
        |st| load(&st.received),
    ),
    Family::new(
        "logrelay_bytes_received_total",
        "counter",
        "Bytes read by each input.",
        |st| load(&st.bytes),
    ),
    Family::new(
        "logrelay_connections_total",
        "counter",
        "Connections accepted by each input.",
        |st| load(&st.connections),
    ),
];

/// Rendered after the reloads (the order of the text stays as it was).
const INPUT_GAUGES: &[Family<InputStats>] = &[Family::new(
    "logrelay_connections_open",
    "gauge",
    "Connections open now on each stream input.",
    |st| load(&st.open),
)];

const REJECTED: Family<InputStats> = Family::new(
    "logrelay_records_rejected_total",
    "counter",
    "Frames or records refused, by input and reason.",
    |_| None,
);

const CLOSED: Family<InputStats> = Family::new(
    "logrelay_connections_closed_total",
    "counter",
    "Connections logrelay closed, by input and reason (stalled, frame_timeout, max_connections, fd_limit, tls, auth).",
    |_| None,
);

const FILTER_TOTALS: &[Family<Filter>] = &[
    Family::new(
        "logrelay_records_filtered_total",
        "counter",
        "Records dropped by each filter.",
        |f| Some(f.dropped()),
    ),
    Family::new(
        "logrelay_filter_calls_total",
        "counter",
        "Records each filter was called on.",
        |f| Some(f.calls()),
    ),
    Family::new(
        "logrelay_filter_errors_total",
        "counter",
        "Failed filter calls (trap, timeout, memory).",
        |f| Some(f.errors()),
    ),
];

const OUTPUT_TOTALS: &[Family<OutputStats>] = &[
    Family::new(
        "logrelay_records_written_total",
        "counter",
        "Records written by each output.",
        |st| load(&st.written),
    ),
    Family::new(
        "logrelay_bytes_written_total",
        "counter",
        "Bytes written by each output.",
        |st| load(&st.bytes),
    ),
    Family::new(
        "logrelay_output_errors_total",
        "counter",
        "Write errors seen by each output (each retried).",
        |st| load(&st.errors),
    ),
    Family::new(
        "logrelay_records_dropped_total",
        "counter",
        "Records an output dropped by policy (forward when_full: drop_newest).",
        |st| load(&st.dropped),
    ),
    Family::new(
        "logrelay_forward_buffer_records",
        "gauge",
        "Records buffered by each forward output.",
        |st| {
            st.is_forward
                .load(Ordering::Relaxed)
                .then(|| st.buffered.load(Ordering::Relaxed))
        },
    ),
];

/// Each family of `families`, with one sample per source labelled
/// `label="name"`.
fn per_source<T>(
    out: &mut String,
    families: &[Family<T>],
    label: &str,
    sources: &[(String, Arc<T>)],
) {
    for f in families {
        f.head(out);
        for (name, st) in sources {
            if let Some(v) = (f.value)(st) {
                sample(out, f.name, &[(label, name)], v);
            }
        }
    }
}

/// A family counted by input and reason, reasons sorted.
fn by_reason(
    out: &mut String,
    f: &Family<InputStats>,
    inputs: &[(String, Arc<InputStats>)],
    counts: fn(&InputStats) -> &Mutex<HashMap<&'static str, u64>>,
) {
    f.head(out);
    for (name, st) in inputs {
        let counts = counts(st).lock().unwrap_or_else(|e| e.into_inner());
        let mut reasons: Vec<_> = counts.iter().collect();
        reasons.sort();
        for (reason, n) in reasons {
            sample(out, f.name, &[("input", name), ("reason", reason)], *n);
        }
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
