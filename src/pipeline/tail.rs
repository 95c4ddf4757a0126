//! The live tail: records as they pass through the pipeline, to the
//! status page and `logrelay tap`.
//!
//! It costs one relaxed atomic load per batch while nobody watches
//! ([`watched`]). A watcher gets records over a bounded channel filled with
//! `try_send`: when it reads too slowly the records it has no room for are
//! skipped and counted, never waited for, so a slow browser cannot slow
//! the pipeline.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{InputStage, Pipeline};
use crate::record::{logger_matches, Record};

/// Events queued per watcher before records are skipped.
pub const QUEUE: usize = 1024;

static WATCHERS: AtomicUsize = AtomicUsize::new(0);
static SUBS: RwLock<Vec<Sub>> = RwLock::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether anyone watches the tail. The dispatch path's only cost while
/// nobody does.
#[inline]
pub fn watched() -> bool {
    WATCHERS.load(Ordering::Relaxed) != 0
}

/// How many watch now.
pub fn watchers() -> usize {
    WATCHERS.load(Ordering::Relaxed)
}

/// Which records a watcher wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TailFilter {
    /// A logger-name prefix, dotted hierarchy (`payments` matches
    /// `payments.api`).
    pub logger: Option<String>,
    /// The lowest levelno.
    pub level: Option<i64>,
    /// Case-insensitive text anywhere in the formatted line or the fields.
    pub q: Option<String>,
    /// Only records from this input.
    pub input: Option<String>,
    /// Only records some route sends to this output (before its filters).
    pub output: Option<String>,
}

impl TailFilter {
    /// Read `logger`, `level`, `q`, `input`, `output` from a decoded query.
    pub fn from_query(query: &[(String, String)]) -> TailFilter {
        let mut f = TailFilter::default();
        for (k, v) in query {
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "logger" => f.logger = Some(v.clone()),
                "level" => {
                    f.level = v
                        .parse::<i64>()
                        .ok()
                        .or_else(|| crate::record::level_from_name(&v.to_ascii_uppercase()))
                }
                "q" => f.q = Some(v.to_lowercase()),
                "input" => f.input = Some(v.clone()),
                "output" => f.output = Some(v.clone()),
                _ => {}
            }
        }
        f
    }

    fn matches_record(&self, p: &Pipeline, stage: &InputStage, r: &Record) -> bool {
        if self.input.as_ref().is_some_and(|i| *i != stage.name) {
            return false;
        }
        if self.level.is_some_and(|l| r.levelno() < l) {
            return false;
        }
        if self
            .logger
            .as_ref()
            .is_some_and(|l| !logger_matches(l, r.name()))
        {
            return false;
        }
        if let Some(o) = &self.output {
            if !p.outputs_for(stage, r).any(|x| x == o) {
                return false;
            }
        }
        true
    }
}

struct Sub {
    id: u64,
    filter: TailFilter,
    tx: mpsc::Sender<Arc<str>>,
    skipped: Arc<AtomicU64>,
}

/// A watcher's end: records as JSON objects, and how many were skipped.
/// Dropping it stops the watch.
pub struct Subscription {
    id: u64,
    /// One JSON object per record.
    pub rx: mpsc::Receiver<Arc<str>>,
    /// Records skipped because the queue was full.
    pub skipped: Arc<AtomicU64>,
}

/// Start watching.
pub fn subscribe(filter: TailFilter) -> Subscription {
    let (tx, rx) = mpsc::channel(QUEUE);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let skipped = Arc::new(AtomicU64::new(0));
    let mut subs = SUBS.write().unwrap_or_else(|e| e.into_inner());
    subs.push(Sub {
        id,
        filter,
        tx,
        skipped: skipped.clone(),
    });
    WATCHERS.store(subs.len(), Ordering::Relaxed);
    Subscription { id, rx, skipped }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = SUBS.write().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.id != self.id);
        WATCHERS.store(subs.len(), Ordering::Relaxed);
    }
}

thread_local! {
    static LINE: std::cell::RefCell<Option<crate::format::Template>> =
        const { std::cell::RefCell::new(None) };
}

/// One record as the tail sends it.
fn render(p: &Pipeline, stage: &InputStage, r: &Record) -> String {
    let mut line = Vec::with_capacity(256);
    LINE.with_borrow_mut(|t| {
        if t.is_none() {
            *t = crate::format::Template::compile(&crate::config::TextFormat::default()).ok();
        }
        if let Some(t) = t {
            t.format(r, &mut line);
        }
    });
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    let mut out = Vec::with_capacity(line.len() + 1024);
    out.extend_from_slice(b"{\"input\":");
    crate::codec::json::write_str(&stage.name, &mut out);
    out.extend_from_slice(b",\"outputs\":[");
    let mut outputs: Vec<&str> = p.outputs_for(stage, r).collect();
    outputs.dedup();
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::codec::json::write_str(o, &mut out);
    }
    out.extend_from_slice(b"],\"levelno\":");
    out.extend_from_slice(itoa::Buffer::new().format(r.levelno()).as_bytes());
    out.extend_from_slice(b",\"name\":");
    crate::codec::json::write_str(r.name(), &mut out);
    out.extend_from_slice(b",\"line\":");
    crate::codec::json::write_str(&String::from_utf8_lossy(&line), &mut out);
    out.extend_from_slice(b",\"fields\":");
    crate::codec::json::write_fields(&r.fields, &mut out);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Hand a batch to every watcher that wants its records (called by the
/// pipeline only while [`watched`]).
pub(crate) fn offer(p: &Pipeline, stage: &InputStage, records: &[Record]) {
    let subs = SUBS.read().unwrap_or_else(|e| e.into_inner());
    for r in records {
        let mut event: Option<Arc<str>> = None;
        let mut lower: Option<String> = None;
        for s in subs.iter() {
            if !s.filter.matches_record(p, stage, r) {
                continue;
            }
            if s.filter.q.is_none() && s.tx.capacity() == 0 {
                s.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let ev = event.get_or_insert_with(|| render(p, stage, r).into());
            if let Some(q) = &s.filter.q {
                let text = lower.get_or_insert_with(|| ev.to_lowercase());
                if !text.contains(q.as_str()) {
                    continue;
                }
            }
            if s.tx.try_send(ev.clone()).is_err() {
                s.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
