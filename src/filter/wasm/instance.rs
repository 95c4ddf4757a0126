//! One guest instance: its `Store`, the state the host functions see, and
//! the limits armed before every call.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::{InstancePre, Memory, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

use crate::filter::Verdict;
use crate::record::{Fields, Record};

/// What every instance of one filter shares.
pub struct Shared {
    /// The filter's name in the config, for logs.
    pub name: String,
    /// The filter's `config`, serialized once, for `config_get`.
    pub config_json: Vec<u8>,
    /// Guest `log` lines allowed per second before suppressing.
    pub log_limit: RateLimit,
}

impl Shared {
    /// A guest's `log(level, ..)` call, at Python's level numbers.
    pub fn guest_log(&self, level: i32, msg: &str) {
        let Some(suppressed) = self.log_limit.check() else {
            return;
        };
        let f = &*self.name;
        match level {
            40.. => tracing::error!(filter = f, suppressed, "{msg}"),
            30..=39 => tracing::warn!(filter = f, suppressed, "{msg}"),
            20..=29 => tracing::info!(filter = f, suppressed, "{msg}"),
            10..=19 => tracing::debug!(filter = f, suppressed, "{msg}"),
            _ => tracing::trace!(filter = f, suppressed, "{msg}"),
        }
    }
}

/// Lets `per_sec` events through per one-second window and counts the rest,
/// so a misbehaving guest cannot flood stderr.
pub struct RateLimit {
    per_sec: u32,
    state: Mutex<RateState>,
}

struct RateState {
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A limiter allowing `per_sec` events per second.
    pub fn new(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec,
            state: Mutex::new(RateState {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if this event may be logged, `n` being how many were
    /// suppressed since the last one logged; `None` to suppress it.
    pub fn check(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.window.elapsed().as_secs() >= 1 {
            s.window = Instant::now();
            s.used = 0;
        }
        if s.used < self.per_sec {
            s.used += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// The per-call limits, resolved from the config with defaults.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Fuel per call, if the engine meters fuel.
    pub fuel: Option<u64>,
    /// Wall-clock limit per call, if the engine checks epochs.
    pub timeout_ms: Option<u64>,
    /// Cap on linear memory, in bytes.
    pub max_memory_bytes: usize,
}

/// `init` (and a start function) run under this many times the per-call
/// limits: plugins parse their config there, which is more work than one
/// record, and it runs once per instance.
const INIT_FACTOR: u64 = 10;

/// What the host functions see: the record being filtered and the guest's
/// memory.
pub struct HostState {
    /// The record's fields, moved in for the duration of one call.
    pub fields: Fields,
    /// The record's [`Record::defaulted`], for the same call.
    pub defaulted: u32,
    /// The fields as they were before the guest's first change in this call,
    /// so a failed call can hand the record on unchanged. Taken lazily: a
    /// filter that only reads pays no copy.
    backup: Option<Fields>,
    /// Reused buffer for JSON renderings.
    pub scratch: Vec<u8>,
    /// The guest's exported memory.
    pub memory: Option<Memory>,
    limits: StoreLimits,
    /// Per-filter state shared by all instances.
    pub shared: Arc<Shared>,
}

impl HostState {
    /// Keep a copy of the fields before the first change of this call.
    pub fn backup(&mut self) {
        if self.backup.is_none() {
            self.backup = Some(self.fields.clone());
        }
    }
}

/// Why one call failed.
pub enum CallError {
    /// The guest trapped, ran out of fuel or time, or misused the ABI: the
    /// instance is in an unknown state and must be thrown away.
    Trap(wasmtime::Error),
    /// `filter()` returned something other than 0 or 1. The instance is fine.
    BadReturn(i32),
}

/// Why an instance could not be created.
pub enum InstantiateError {
    /// `init()` returned non-zero.
    InitRefused(i32),
    /// Instantiation or `init()` failed (trap, memory above the cap, ...).
    Failed(wasmtime::Error),
}

/// A live guest instance, used by one call at a time.
pub struct Instance {
    store: Store<HostState>,
    filter: TypedFunc<(), i32>,
}

impl Instance {
    /// Instantiate and run `init`, if exported.
    pub fn new(
        pre: &InstancePre<HostState>,
        shared: &Arc<Shared>,
        limits: &Limits,
    ) -> Result<Instance, InstantiateError> {
        let state = HostState {
            fields: Fields::new(),
            defaulted: 0,
            backup: None,
            scratch: Vec::new(),
            memory: None,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                // One module, one memory, a small table: nothing more is
                // needed by a filter, and each cap bounds host memory.
                .instances(1)
                .memories(1)
                .tables(1)
                .table_elements(100_000)
                .build(),
            shared: Arc::clone(shared),
        };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| &mut s.limits);
        arm(&mut store, limits, INIT_FACTOR).map_err(InstantiateError::Failed)?;
        let instance = pre
            .instantiate(&mut store)
            .map_err(InstantiateError::Failed)?;
        // `check_module` verified both exports exist with these types.
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| InstantiateError::Failed(wasmtime::format_err!("no memory export")))?;
        store.data_mut().memory = Some(memory);
        let filter = instance
            .get_typed_func::<(), i32>(&mut store, "filter")
            .map_err(InstantiateError::Failed)?;
        if let Ok(init) = instance.get_typed_func::<(), i32>(&mut store, "init") {
            arm(&mut store, limits, INIT_FACTOR).map_err(InstantiateError::Failed)?;
            match init.call(&mut store, ()) {
                Ok(0) => {}
                Ok(code) => return Err(InstantiateError::InitRefused(code)),
                Err(e) => return Err(InstantiateError::Failed(e)),
            }
        }
        Ok(Instance { store, filter })
    }

    /// Run `filter()` on `record`. On any failure the record is left as it
    /// was before the call.
    pub fn call(&mut self, record: &mut Record, limits: &Limits) -> Result<Verdict, CallError> {
        arm(&mut self.store, limits, 1).map_err(CallError::Trap)?;
        // Move the fields in and out rather than lending a pointer: no
        // unsafe, and a Vec move is three words.
        self.store.data_mut().fields = std::mem::take(&mut record.fields);
        self.store.data_mut().defaulted = record.defaulted;
        let result = self.filter.call(&mut self.store, ());
        let state = self.store.data_mut();
        let changed = std::mem::take(&mut state.fields);
        let defaulted = state.defaulted;
        let original = state.backup.take();
        if state.scratch.capacity() > 1 << 20 {
            // One huge record should not pin a megabyte per instance.
            state.scratch = Vec::new();
        }
        let verdict = match result {
            Ok(0) => Ok(Verdict::Keep),
            Ok(1) => Ok(Verdict::Drop),
            Ok(code) => Err(CallError::BadReturn(code)),
            Err(e) => Err(CallError::Trap(e)),
        };
        record.fields = match (&verdict, original) {
            (Err(_), Some(original)) => original,
            _ => {
                record.defaulted = defaulted;
                changed
            }
        };
        verdict
    }
}

/// Set fuel and the epoch deadline for the next call (`factor` times the
/// per-call limits).
fn arm(store: &mut Store<HostState>, limits: &Limits, factor: u64) -> wasmtime::Result<()> {
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel.saturating_mul(factor))?;
    }
    if let Some(ms) = limits.timeout_ms {
        store.set_epoch_deadline(super::engine::ticks_for(ms.saturating_mul(factor)));
    }
    Ok(())
}

/// A short reason for a failed call, for the rate-limited log line.
pub fn describe(e: &wasmtime::Error, limits: &Limits) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("ran out of fuel ({} per call)", limits.fuel.unwrap_or(0)),
        Some(Trap::Interrupt) => {
            format!("timed out ({} ms per call)", limits.timeout_ms.unwrap_or(0))
        }
        Some(trap) => trap.to_string(),
        // A host function refused the call (a pointer outside memory...):
        // its own message says what the guest did wrong.
        None => format!("{}", e.root_cause()),
    }
}
