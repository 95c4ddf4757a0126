//! What the status page shows: a JSON snapshot of the running listener
//! (inputs with their open connections, routes, outputs, filters, reloads)
//! and per-second rates over the last minutes, sampled once a second while
//! the admin endpoint runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, ForwardTarget, InputKind, OutputConfig, RouteConfig};

/// Seconds of rates kept for the charts.
pub const HISTORY_SECONDS: usize = 300;
/// Reloads kept in the history.
const RELOADS_KEPT: usize = 50;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running components, as the page names them.
#[derive(Default)]
struct View {
    /// (name, listen key, type, decoder, bound addresses).
    inputs: Vec<(String, String, &'static str, &'static str, Vec<String>)>,
    /// (name, type, literal file path or forward target).
    outputs: Vec<(String, &'static str, Option<String>)>,
    /// (label, delivered counter).
    routes: Vec<(String, Arc<AtomicU64>)>,
    /// File paths for sizes (literal paths only).
    files: HashMap<String, std::path::PathBuf>,
}

#[derive(Default)]
struct State {
    view: View,
    reloads: VecDeque<Value>,
    started: f64,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        Mutex::new(State {
            started: now(),
            ..State::default()
        })
    })
}

/// A short human label for a route: `app → file, console [payments ≥30]`.
pub fn route_label(i: usize, spec: &RouteConfig) -> String {
    let from = spec
        .from
        .as_ref()
        .map_or_else(|| "*".to_string(), |f| f.join(","));
    let mut label = format!("#{i} {from} → {}", spec.to.join(","));
    let mut conds = Vec::new();
    if let Some(l) = &spec.loggers {
        conds.push(l.join(","));
    }
    if let Some(min) = spec.min_level {
        conds.push(format!("≥{}", level_name(min)));
    }
    if !spec.filters.is_empty() {
        conds.push(format!("filters {}", spec.filters.join(",")));
    }
    if !conds.is_empty() {
        label.push_str(&format!(" [{}]", conds.join(" ")));
    }
    label
}

fn level_name(n: i64) -> String {
    match n {
        10 => "DEBUG".into(),
        20 => "INFO".into(),
        30 => "WARNING".into(),
        40 => "ERROR".into(),
        50 => "CRITICAL".into(),
        n => n.to_string(),
    }
}

/// Point the page at the components now running (called with the metrics
/// registry's sources, after a start or a reload). `inputs` are
/// `(name, listen key, bound addresses)`.
pub(crate) fn publish(config: &Config, inputs: Vec<(String, String, Vec<String>)>) {
    let mut view = View::default();
    for (name, key, local) in inputs {
        let (kind, decoder) = match config.inputs.get(&name) {
            Some(ic) => (
                match ic.kind {
                    InputKind::Tcp { .. } => "tcp",
                    InputKind::Unix { .. } => "unix",
                    InputKind::Udp { .. } => "udp",
                    InputKind::Nats(_) => "nats",
                },
                ic.decoder.as_str(),
            ),
            None => ("?", "?"),
        };
        view.inputs.push((name, key, kind, decoder, local));
    }
    for (name, oc) in &config.outputs {
        let (kind, target) = match oc {
            OutputConfig::File(f) => {
                if f.max_open_files.is_none() {
                    view.files.insert(name.clone(), f.path.clone());
                }
                ("file", Some(f.path.display().to_string()))
            }
            OutputConfig::Stream(s) => (
                match s.stream {
                    crate::config::StreamKind::Stdout => "stdout",
                    crate::config::StreamKind::Stderr => "stderr",
                },
                None,
            ),
            OutputConfig::Forward(f) => (
                "forward",
                Some(match &f.target {
                    ForwardTarget::Tcp(a) => a.clone(),
                    ForwardTarget::Unix(p) => p.display().to_string(),
                }),
            ),
            OutputConfig::Nats(n) => ("nats", Some(n.stream.clone())),
        };
        view.outputs.push((name.clone(), kind, target));
    }
    view.routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (route_label(i, r), crate::pipeline::route_counter(r)))
        .collect();
    lock(state()).view = view;
}

/// Record a reload attempt: its result and what changed (or why it
/// failed).
pub fn reload_event(ok: bool, detail: String) {
    let mut s = lock(state());
    if s.reloads.len() >= RELOADS_KEPT {
        s.reloads.pop_front();
    }
    s.reloads
        .push_back(json!({"time": now(), "ok": ok, "detail": detail}));
}

/// What a reload from `old` to `new` changes, in one line.
pub fn diff(old: &Config, new: &Config) -> String {
    fn names<T: PartialEq>(
        what: &str,
        old: &BTreeMap<String, T>,
        new: &BTreeMap<String, T>,
        out: &mut Vec<String>,
    ) {
        let added: Vec<&str> = new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(String::as_str)
            .collect();
        let changed: Vec<&str> = new
            .iter()
            .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k.as_str())
            .collect();
        for (verb, list) in [("added", added), ("removed", removed), ("changed", changed)] {
            if !list.is_empty() {
                out.push(format!("{what} {verb}: {}", list.join(", ")));
            }
        }
    }
    let mut out = Vec::new();
    names("inputs", &old.inputs, &new.inputs, &mut out);
    names("outputs", &old.outputs, &new.outputs, &mut out);
    names("filters", &old.filters, &new.filters, &mut out);
    if old.routes != new.routes {
        out.push(format!(
            "routes changed ({} → {})",
            old.routes.len(),
            new.routes.len()
        ));
    }
    if old.metrics != new.metrics {
        out.push("metrics changed".into());
    }
    if old.drain_seconds != new.drain_seconds || old.shutdown_timeout_ms != new.shutdown_timeout_ms
    {
        out.push("timeouts changed".into());
    }
    if out.is_empty() {
        "plugins reloaded".into()
    } else {
        out.join("; ")
    }
}

/// Per-second rates of every input, route and output.
#[derive(Default)]
struct History {
    times: VecDeque<f64>,
    series: BTreeMap<String, VecDeque<f64>>,
    last: HashMap<String, u64>,
    last_time: Option<f64>,
}

fn history() -> &'static Mutex<History> {
    static H: OnceLock<Mutex<History>> = OnceLock::new();
    H.get_or_init(Mutex::default)
}

/// The counters sampled for the charts, by series name.
fn counters() -> Vec<(String, u64)> {
    let mut v = Vec::new();
    crate::metrics::global().with_sources(|s| {
        for (name, st) in &s.inputs {
            v.push((format!("input:{name}"), st.received.load(Ordering::Relaxed)));
        }
        for (name, st) in &s.outputs {
            v.push((format!("output:{name}"), st.written.load(Ordering::Relaxed)));
        }
    });
    for (label, c) in &lock(state()).view.routes {
        v.push((format!("route:{label}"), c.load(Ordering::Relaxed)));
    }
    v
}

/// Take one sample: each series gets the rate since the last sample.
pub(crate) fn sample() {
    let t = now();
    let values = counters();
    let mut h = lock(history());
    let dt = h.last_time.map_or(1.0, |l| (t - l).max(0.001));
    h.last_time = Some(t);
    if h.times.len() >= HISTORY_SECONDS {
        h.times.pop_front();
    }
    h.times.push_back(t);
    let mut series = BTreeMap::new();
    let mut last = HashMap::new();
    for (name, value) in values {
        let rate = match h.last.get(&name) {
            Some(&prev) if value >= prev => (value - prev) as f64 / dt,
            _ => 0.0,
        };
        let mut s = h.series.remove(&name).unwrap_or_default();
        if s.len() >= HISTORY_SECONDS {
            s.pop_front();
        }
        s.push_back((rate * 10.0).round() / 10.0);
        series.insert(name.clone(), s);
        last.insert(name, value);
    }
    h.series = series;
    h.last = last;
}

/// Sample once a second for as long as the process runs (started once,
/// by the first admin endpoint).
pub(crate) fn start_sampler() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                sample();
            }
        });
    });
}

/// The rates: every sample (`full`) or the newest one only.
fn rates(full: bool) -> Value {
    let h = lock(history());
    let take = if full { HISTORY_SECONDS } else { 1 };
    let skip = |len: usize| len.saturating_sub(take);
    let times: Vec<f64> = h.times.iter().skip(skip(h.times.len())).copied().collect();
    let series: serde_json::Map<String, Value> = h
        .series
        .iter()
        .map(|(k, v)| {
            let vals: Vec<f64> = v.iter().skip(skip(v.len())).copied().collect();
            (k.clone(), json!(vals))
        })
        .collect();
    json!({"times": times, "series": series})
}

/// The whole snapshot; `full_history` adds every sample of the charts
/// (the first request of a page), else only the newest.
pub fn snapshot(full_history: bool) -> Value {
    let open = crate::input::registry::open_connections();
    let closed = crate::input::registry::closed_connections();
    let st = lock(state());
    let view = &st.view;
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut filters = Vec::new();
    crate::metrics::global().with_sources(|s| {
        for (name, key, kind, decoder, listen) in &view.inputs {
            let stats = s.inputs.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            let conns: Vec<Value> = open
                .iter()
                .filter(|c| &c.key == key)
                .map(|c| {
                    json!({
                        "peer": c.peer,
                        "since": c.since,
                        "records": c.records.load(Ordering::Relaxed),
                        "bytes": c.bytes.load(Ordering::Relaxed),
                    })
                })
                .collect();
            let mut closed: serde_json::Map<String, Value> = closed
                .iter()
                .filter(|(k, _, _)| k == key)
                .map(|(_, r, n)| (r.to_string(), json!(n)))
                .collect();
            // Connections closed before they were served (the registry
            // never saw them).
            if let Some(s) = stats {
                let m = s.closed.lock().unwrap_or_else(|e| e.into_inner());
                for (r, n) in m.iter() {
                    if matches!(*r, "max_connections" | "fd_limit" | "tls") {
                        closed.insert(r.to_string(), json!(n));
                    }
                }
            }
            let rejected: serde_json::Map<String, Value> = stats
                .map(|s| {
                    let m = s.rejected.lock().unwrap_or_else(|e| e.into_inner());
                    m.iter().map(|(r, n)| (r.to_string(), json!(n))).collect()
                })
                .unwrap_or_default();
            let load = |f: fn(&crate::input::InputStats) -> &AtomicU64| {
                stats.map_or(0, |s| f(s).load(Ordering::Relaxed))
            };
            inputs.push(json!({
                "name": name,
                "key": key,
                "type": kind,
                "decoder": decoder,
                "listen": listen,
                "received": load(|s| &s.received),
                "bytes": load(|s| &s.bytes),
                "connections_total": load(|s| &s.connections),
                "open": conns,
                "rejected": rejected,
                "closed": closed,
            }));
        }
        for (name, kind, target) in &view.outputs {
            let Some((_, o)) = s.outputs.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let mut out = json!({
                "name": name,
                "type": kind,
                "target": target,
                "written": o.written.load(Ordering::Relaxed),
                "bytes": o.bytes.load(Ordering::Relaxed),
                "errors": o.errors.load(Ordering::Relaxed),
                "dropped": o.dropped.load(Ordering::Relaxed),
            });
            if o.is_forward.load(Ordering::Relaxed) {
                out["buffered"] = json!(o.buffered.load(Ordering::Relaxed));
            }
            if *kind == "file" {
                out["rotations"] = json!(o.rotations.load(Ordering::Relaxed));
                if let Some(p) = view.files.get(name) {
                    out["size"] = json!(std::fs::metadata(p).map(|m| m.len()).ok());
                }
            }
            outputs.push(out);
        }
        for (name, f) in &s.filters {
            filters.push(json!({
                "name": name,
                "calls": f.calls(),
                "dropped": f.dropped(),
                "errors": f.errors(),
            }));
        }
    });
    let routes: Vec<Value> = view
        .routes
        .iter()
        .map(|(label, c)| json!({"label": label, "delivered": c.load(Ordering::Relaxed)}))
        .collect();
    let (ok, failed) = crate::metrics::global().reloads();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now": now(),
        "started": st.started,
        "pid": std::process::id(),
        "draining": crate::metrics::global().draining(),
        "inputs": inputs,
        "routes": routes,
        "outputs": outputs,
        "filters": filters,
        "reloads": {"ok": ok, "failed": failed, "history": st.reloads},
        "tail_watchers": super::tail::watchers(),
        "rates": rates(full_history),
    })
}
