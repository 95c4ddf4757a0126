//! A pipeline: the immutable wiring of one config generation — which
//! input's records go through which routes, filters and outputs.
//!
//! Connections hold an `Arc<Pipeline>` and ask for the newest one at frame
//! boundaries (see [`crate::server`]), so a reload swaps the wiring without
//! touching sockets, and every batch is handled whole by exactly one
//! pipeline. Outputs live longer than pipelines: a pipeline holds only
//! [`OutputHandle`]s, and an output ends when the last handle is dropped.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use crate::codec::framing::Framer;
use crate::codec::{DecoderKind, Keep};
use crate::config::ListenKey;
use crate::config::{Config, InputConfig, RouteConfig};
use crate::filter::{Filter, Verdict};
use crate::output::{OutputHandle, Receipt};
use crate::record::Record;

pub mod tail;

/// What a connection of one input needs to turn bytes into records.
#[derive(Debug)]
pub struct InputStage {
    /// The input's name.
    pub name: String,
    /// Its config (address, decoder, limits).
    pub config: InputConfig,
    /// Cuts the byte stream into frames.
    pub framer: Framer,
    /// Decodes one frame.
    pub decoder: DecoderKind,
    /// The fields anything downstream of this input reads: its routes'
    /// conditions, filters and outputs. The decoder may leave the others
    /// out.
    pub keep: Keep,
    /// Indices into [`Pipeline::routes`] of the routes that take records
    /// from this input.
    routes: Vec<usize>,
    /// Whether two of those routes share an output; see
    /// [`Pipeline::dispatch_in_order`].
    shared_outputs: bool,
}

/// The delivered-records counter of a route, shared by every pipeline
/// that has the same route (so a reload that keeps it keeps its count).
pub(crate) fn route_counter(spec: &RouteConfig) -> Arc<AtomicU64> {
    static COUNTERS: OnceLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    let key = format!("{spec:?}");
    // A panic while holding this lock could only come from the map's own
    // code; the map is still valid, so poisoning is ignored.
    COUNTERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// One compiled route.
struct Route {
    spec: RouteConfig,
    filters: Vec<Arc<Filter>>,
    outputs: Vec<OutputHandle>,
    /// Records it delivered (after its filters), for the status page.
    delivered: Arc<std::sync::atomic::AtomicU64>,
}

impl Route {
    /// The record fields this route reads: its conditions', its filters'
    /// (every field for a plugin that can read the record) and its
    /// outputs'.
    fn reads(&self) -> Keep {
        let spec = &self.spec;
        let mut keep = self
            .filters
            .iter()
            .fold(Keep::NONE, |keep, f| keep.and(f.reads()));
        if spec.min_level.is_some() {
            keep = keep.and(Keep::field("levelno"));
        }
        if self.reads_name() {
            keep = keep.and(Keep::field("name"));
        }
        let keep = self
            .outputs
            .iter()
            .fold(keep, |keep, out| keep.and(out.reads()));
        if keep.wants_frame() && self.filters.iter().any(|f| f.writes()) {
            // A changed record loses its frame: the output encodes the
            // fields, all of them.
            return keep.and(Keep::ALL);
        }
        keep
    }

    /// Whether one of the route's conditions is on the logger name.
    fn reads_name(&self) -> bool {
        let spec = &self.spec;
        spec.loggers.is_some()
            || !spec.exclude_loggers.is_empty()
            || !spec.name_filters.is_empty()
            || !spec.logger_filters.is_empty()
    }

    /// Whether the route has no condition, so every record passes.
    fn takes_all(&self) -> bool {
        self.spec.min_level.is_none() && !self.reads_name()
    }

    /// Whether `record` passes the route's conditions (before filters).
    fn matches(&self, record: &Record) -> bool {
        route_matches(&self.spec, record)
    }
}

/// Whether `record` passes the conditions of the route `spec` (input
/// aside, before its filters): `min_level`, `loggers` and the dictConfig
/// logger conditions.
pub fn route_matches(spec: &RouteConfig, record: &Record) -> bool {
    if let Some(min) = spec.min_level {
        if record.levelno() < min {
            return false;
        }
    }
    spec.matches_name(record.name())
}

/// The wiring of one config generation.
pub struct Pipeline {
    /// The config it was built from.
    pub config: Arc<Config>,
    inputs: HashMap<ListenKey, Arc<InputStage>>,
    routes: Vec<Route>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Pipeline {
    /// Wire a pipeline from a checked config, with already-loaded filters
    /// and running outputs (both by name). Names were validated by the
    /// config loader; a missing one here is skipped defensively.
    pub fn new(
        config: Arc<Config>,
        filters: &HashMap<String, Arc<Filter>>,
        outputs: &HashMap<String, OutputHandle>,
    ) -> Pipeline {
        let routes: Vec<Route> = config
            .routes
            .iter()
            .map(|spec| Route {
                spec: spec.clone(),
                filters: spec
                    .filters
                    .iter()
                    .filter_map(|n| filters.get(n).cloned())
                    .collect(),
                outputs: spec
                    .to
                    .iter()
                    .filter_map(|n| outputs.get(n).cloned())
                    .collect(),
                delivered: route_counter(spec),
            })
            .collect();
        let inputs = config
            .inputs
            .iter()
            .map(|(name, ic)| {
                let mine: Vec<usize> = routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.spec
                            .from
                            .as_ref()
                            .is_none_or(|from| from.iter().any(|f| f == name))
                    })
                    .map(|(i, _)| i)
                    .collect();
                let mut seen = std::collections::HashSet::new();
                let shared_outputs = !mine
                    .iter()
                    .flat_map(|&i| &routes[i].spec.to)
                    .all(|o| seen.insert(o));
                let stage = InputStage {
                    name: name.clone(),
                    config: ic.clone(),
                    framer: Framer::new(ic.framing, ic.max_frame_bytes),
                    decoder: ic.decoder,
                    keep: mine
                        .iter()
                        .fold(Keep::NONE, |keep, &i| keep.and(routes[i].reads())),
                    routes: mine,
                    shared_outputs,
                };
                (ListenKey::of(name, ic), Arc::new(stage))
            })
            .collect();
        Pipeline {
            config,
            inputs,
            routes,
        }
    }

    /// The stage of the input bound to `key`, if this pipeline has it.
    pub fn input_by_key(&self, key: &ListenKey) -> Option<&Arc<InputStage>> {
        self.inputs.get(key)
    }

    /// Route a batch of records from one input to the outputs, through each
    /// route's filters. Awaits when an output's queue is full
    /// (backpressure), so a slow output slows its senders instead of
    /// growing memory. `receipt` (an acknowledged sender's batch) goes
    /// with every output message the batch becomes; the caller gives its
    /// own clone back after this returns.
    pub async fn dispatch(
        &self,
        stage: &InputStage,
        records: Vec<Record>,
        receipt: Option<&Receipt>,
    ) {
        if records.is_empty() {
            return;
        }
        if tail::watched() {
            tail::offer(self, stage, &records);
        }
        if stage.shared_outputs {
            return self.dispatch_in_order(stage, records, receipt).await;
        }
        let last = stage.routes.len().saturating_sub(1);
        let mut records = Some(records);
        for (i, &ri) in stage.routes.iter().enumerate() {
            let route = &self.routes[ri];
            // Each route gets its own copy (docs/decisions.md, "WASM
            // filters": a filter's changes
            // are seen only downstream in its own route); the last one
            // takes the originals.
            let batch: Vec<Record> = if i == last {
                let Some(all) = records.take() else { return };
                if route.takes_all() {
                    all
                } else {
                    all.into_iter().filter(|r| route.matches(r)).collect()
                }
            } else {
                records
                    .iter()
                    .flatten()
                    .filter(|r| route.matches(r))
                    .cloned()
                    .collect()
            };
            let batch = apply_filters(&route.filters, batch);
            count(&route.delivered, batch.len());
            send_to_all(&route.outputs, batch, receipt).await;
        }
    }
}

impl Pipeline {
    /// `dispatch` for an input with two routes to one output (two dictConfig
    /// loggers sharing a handler, say). Route by route, that output would
    /// get one route's records of the batch, then the other's; here each
    /// record goes through every route before the next record, so the
    /// output sees arrival order, and a record two routes deliver is
    /// written twice in a row, as Python's `callHandlers` does.
    async fn dispatch_in_order(
        &self,
        stage: &InputStage,
        records: Vec<Record>,
        receipt: Option<&Receipt>,
    ) {
        let mut batches: Vec<(&OutputHandle, Vec<Record>)> = Vec::new();
        let mut matching: Vec<&Route> = Vec::with_capacity(stage.routes.len());
        for record in records {
            matching.clear();
            matching.extend(
                stage
                    .routes
                    .iter()
                    .map(|&ri| &self.routes[ri])
                    .filter(|route| route.matches(&record)),
            );
            // Each route (and each output of a route) gets its own copy;
            // the last one takes the record itself.
            for (route, mut copy) in matching.iter().zip(copies(record, matching.len())) {
                if !route
                    .filters
                    .iter()
                    .all(|f| f.apply(&mut copy) == Verdict::Keep)
                {
                    continue;
                }
                count(&route.delivered, 1);
                for (out, rec) in route.outputs.iter().zip(copies(copy, route.outputs.len())) {
                    let slot = match batches.iter().position(|(o, _)| o.name() == out.name()) {
                        Some(i) => i,
                        None => {
                            batches.push((out, Vec::new()));
                            batches.len() - 1
                        }
                    };
                    batches[slot].1.push(rec);
                }
            }
        }
        for (out, batch) in batches {
            if !batch.is_empty() {
                out.send(batch, receipt.cloned()).await;
            }
        }
    }
}

/// Count `n` records a route delivered.
fn count(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

impl InputStage {
    /// The fields to decode now: [`InputStage::keep`], or every field
    /// while someone watches the live tail (it shows them all).
    #[inline]
    pub fn keep_now(&self) -> Keep {
        if tail::watched() {
            Keep::ALL
        } else {
            self.keep
        }
    }
}

impl Pipeline {
    /// The outputs the routes of `stage` would send `record` to, before
    /// their filters run (for the live tail's `output` condition).
    pub(crate) fn outputs_for<'a>(
        &'a self,
        stage: &'a InputStage,
        record: &'a Record,
    ) -> impl Iterator<Item = &'a str> + 'a {
        stage
            .routes
            .iter()
            .map(|&ri| &self.routes[ri])
            .filter(|route| route.matches(record))
            .flat_map(|route| route.spec.to.iter().map(String::as_str))
    }
}

/// `n` copies of `item`: `n - 1` clones, made as they are taken, then
/// `item` itself (nothing if `n` is 0).
fn copies<T: Clone>(item: T, n: usize) -> impl Iterator<Item = T> {
    let mut item = Some(item);
    (0..n).filter_map(move |i| {
        if i + 1 == n {
            item.take()
        } else {
            item.clone()
        }
    })
}

fn apply_filters(filters: &[Arc<Filter>], mut batch: Vec<Record>) -> Vec<Record> {
    for filter in filters {
        if batch.is_empty() {
            break;
        }
        filter.retain(&mut batch);
    }
    batch
}

/// Send `batch` to every output of a route. Outputs that format in the
/// sender read it in place; each other one takes a copy, except the last
/// such, which takes the batch itself.
async fn send_to_all(outputs: &[OutputHandle], batch: Vec<Record>, receipt: Option<&Receipt>) {
    if batch.is_empty() {
        return;
    }
    let owner = outputs.iter().rposition(OutputHandle::takes_records);
    for (i, out) in outputs.iter().enumerate() {
        if Some(i) != owner {
            out.send_ref(&batch, receipt.cloned()).await;
        }
    }
    if let Some(i) = owner {
        outputs[i].send(batch, receipt.cloned()).await;
    }
}
