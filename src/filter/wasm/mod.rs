//! WebAssembly filter plugins, run sandboxed in wasmtime.
//!
//! The ABI (docs/decisions.md, "WASM filters"; documented for authors in
//! `plugins/README.md`) is a core module that imports a few host functions
//! from module `logrelay` (`abi.rs`) and exports `memory`, `filter() -> i32`
//! and optionally `init() -> i32`.
//!
//! A [`WasmFilter`] compiles its module once, at load, and keeps a pool of
//! instances: `apply` takes `&self` and runs on many connection tasks at
//! once, so each call pops an instance (creating one if the pool is empty),
//! runs the guest inline, and pushes it back. A call that fails in any way
//! (trap, fuel, timeout, memory cap, bad pointer) throws its instance away,
//! leaves the record as it was, and applies `on_error`; it never reaches
//! the caller.
//!
//! Defaults when the config leaves them unset: `timeout_ms` 100 (checked by
//! epoch interruption, 10 ms granularity) unless `fuel` is set, in which case
//! fuel alone bounds a call (deterministic, no wall clock);
//! `max_memory_bytes` 16 MiB; `on_error` pass. `init` gets ten times the
//! per-call fuel or time.
//!
//! Compiled code is not cached on disk: modules compile in a few
//! milliseconds (docs/decisions.md, "WASM filters"), and wasmtime's cache
//! pulls a C build.

mod abi;
mod engine;
mod instance;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use wasmtime::{CodeBuilder, InstancePre};

use crate::config::{OnError, WasmFilterConfig};
use crate::filter::Verdict;
use crate::record::Record;
use instance::{CallError, HostState, Instance, InstantiateError, Limits, RateLimit, Shared};

/// Default wall-clock limit per call when neither `fuel` nor `timeout_ms`
/// is set. Short epoch deadlines fire spuriously on a busy machine.
pub const DEFAULT_TIMEOUT_MS: u64 = 100;
/// Default cap on a guest's linear memory.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 16 << 20;
/// Idle instances kept per filter; more are created under load and dropped
/// when they come back to a full pool.
const MAX_IDLE_INSTANCES: usize = 64;

/// Why a plugin could not be loaded: a config error. Each names the filter
/// and the plugin file, and says precisely what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The plugin file could not be read.
    #[error("filter {filter}: cannot read {}: {source}", path.display())]
    Read {
        /// The filter's name.
        filter: String,
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is neither a valid wasm binary nor valid WAT.
    #[error("filter {filter}: {} is not a valid WebAssembly module: {reason}", path.display())]
    Compile {
        /// The filter's name.
        filter: String,
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's (or the WAT parser's) message.
        reason: String,
    },
    /// The module imports something the host does not offer.
    #[error(
        "filter {filter}: the plugin imports `{import}`, which logrelay does not offer \
         (ABI v1 offers logrelay.field_get, field_set, field_remove, record_get, \
         record_set, config_get and log)"
    )]
    UnknownImport {
        /// The filter's name.
        filter: String,
        /// `module.name` of the import.
        import: String,
    },
    /// A known host function imported with the wrong type.
    #[error(
        "filter {filter}: the plugin imports `{import}` with the wrong type; expected {expected}"
    )]
    ImportSignature {
        /// The filter's name.
        filter: String,
        /// `module.name` of the import.
        import: String,
        /// The ABI's signature.
        expected: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("filter {filter}: the plugin must export {expected}")]
    Export {
        /// The filter's name.
        filter: String,
        /// The export's name.
        export: String,
        /// What the ABI requires.
        expected: String,
    },
    /// `init()` returned non-zero: the plugin refused its config.
    #[error("filter {filter}: the plugin's init() returned {code}: it refused to start (check its config and its log lines above)")]
    InitRefused {
        /// The filter's name.
        filter: String,
        /// What `init` returned.
        code: i32,
    },
    /// Instantiation or `init()` failed: a trap, or memory above the cap.
    #[error("filter {filter}: the plugin failed to start: {reason}")]
    Instantiate {
        /// The filter's name.
        filter: String,
        /// What went wrong.
        reason: String,
    },
}

impl FilterError {
    /// The name of the filter that failed.
    pub fn filter_name(&self) -> &str {
        match self {
            FilterError::Read { filter, .. }
            | FilterError::Compile { filter, .. }
            | FilterError::UnknownImport { filter, .. }
            | FilterError::ImportSignature { filter, .. }
            | FilterError::Export { filter, .. }
            | FilterError::InitRefused { filter, .. }
            | FilterError::Instantiate { filter, .. } => filter,
        }
    }
}

/// A loaded WASM filter: a compiled module and a pool of instances.
pub struct WasmFilter {
    path: PathBuf,
    pre: InstancePre<HostState>,
    shared: Arc<Shared>,
    limits: Limits,
    on_error: OnError,
    pool: Mutex<Vec<Instance>>,
    /// Whether the module imports a function that reads the record; see
    /// [`WasmFilter::reads_record`].
    reads_record: bool,
    /// Whether the module imports a function that changes the record; see
    /// [`WasmFilter::writes_record`].
    writes_record: bool,
    calls: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    error_log: RateLimit,
}

impl WasmFilter {
    /// Compile the plugin at `config.path` (`.wasm` binary or `.wat` text),
    /// check its imports and exports, and create a first instance (running
    /// `init`), so that every problem shows at load time, in `check` too.
    pub fn load(name: &str, config: &WasmFilterConfig) -> Result<WasmFilter, FilterError> {
        let limits = Limits {
            fuel: config.fuel,
            timeout_ms: match (config.timeout_ms, config.fuel) {
                (Some(ms), _) => Some(ms),
                (None, Some(_)) => None,
                (None, None) => Some(DEFAULT_TIMEOUT_MS),
            },
            max_memory_bytes: usize::try_from(
                config.max_memory_bytes.unwrap_or(DEFAULT_MAX_MEMORY_BYTES),
            )
            .unwrap_or(usize::MAX),
        };
        let engine = engine::engine(engine::Metering {
            fuel: limits.fuel.is_some(),
            epoch: limits.timeout_ms.is_some(),
        });
        let bytes = std::fs::read(&config.path).map_err(|source| FilterError::Read {
            filter: name.to_string(),
            path: config.path.clone(),
            source,
        })?;
        // The binary format or, with the `wat` feature, the text format,
        // whatever the file is called; the path makes WAT syntax errors
        // point at `file:line:column`.
        let module = CodeBuilder::new(engine)
            .wasm_binary_or_text(&bytes, Some(&config.path))
            .and_then(|b| b.compile_module())
            .map_err(|e| FilterError::Compile {
                filter: name.to_string(),
                path: config.path.clone(),
                reason: format!("{e:#}"),
            })?;
        abi::check_module(name, &module)?;
        let pre = abi::linker(engine)
            .and_then(|l| l.instantiate_pre(&module))
            .map_err(|e| FilterError::Instantiate {
                filter: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            config_json: serde_json::to_vec(&config.config).unwrap_or_else(|_| b"null".to_vec()),
            log_limit: RateLimit::new(10),
        });
        let first = Instance::new(&pre, &shared, &limits).map_err(|e| match e {
            InstantiateError::InitRefused(code) => FilterError::InitRefused {
                filter: name.to_string(),
                code,
            },
            InstantiateError::Failed(e) => {
                let mut reason = instance::describe(&e, &limits);
                // wasmtime's message for an initial memory above the cap
                // does not say what the cap is; the user needs it.
                if reason.contains("exceeds memory limits") {
                    reason += &format!(" (max_memory_bytes is {})", limits.max_memory_bytes);
                }
                FilterError::Instantiate {
                    filter: name.to_string(),
                    reason,
                }
            }
        })?;
        Ok(WasmFilter {
            path: config.path.clone(),
            pre,
            shared,
            limits,
            on_error: config.on_error,
            pool: Mutex::new(vec![first]),
            reads_record: abi::reads_record(&module),
            writes_record: abi::writes_record(&module),
            calls: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_log: RateLimit::new(1),
        })
    }

    /// Run the guest's `filter()` on one record. Safe to call from many
    /// threads at once; errors apply `on_error` and never reach the caller.
    pub fn apply(&self, record: &mut Record) -> Verdict {
        let mut slot = None;
        let verdict = self.apply_with(&mut slot, record);
        if let Some(instance) = slot {
            self.put_back(instance);
        }
        verdict
    }

    /// [`WasmFilter::apply`] to every record of `batch`, keeping those it
    /// keeps: one instance from the pool serves the whole batch, rather
    /// than a round trip through the pool's lock per record (about a
    /// third of a no-op filter's cost).
    pub fn retain(&self, batch: &mut Vec<Record>) {
        let mut slot = None;
        batch.retain_mut(|record| self.apply_with(&mut slot, record) == Verdict::Keep);
        if let Some(instance) = slot {
            self.put_back(instance);
        }
    }

    /// Run the guest on `record` with the instance in `slot` (taken from
    /// the pool, or built, when empty). The instance stays in `slot` for
    /// the next record unless the call trapped: a trapped instance is
    /// dropped, and the next call builds a new one.
    fn apply_with(&self, slot: &mut Option<Instance>, record: &mut Record) -> Verdict {
        self.calls.fetch_add(1, Relaxed);
        let mut instance = match slot.take().or_else(|| self.lock_pool().pop()) {
            Some(instance) => instance,
            None => match Instance::new(&self.pre, &self.shared, &self.limits) {
                Ok(instance) => instance,
                Err(InstantiateError::InitRefused(code)) => {
                    return self.fail(&format!("init() returned {code} on a new instance"))
                }
                Err(InstantiateError::Failed(e)) => {
                    let reason = instance::describe(&e, &self.limits);
                    return self.fail(&format!("could not create an instance: {reason}"));
                }
            },
        };
        if self.writes_record {
            // The record may leave changed: its frame no longer says it.
            record.changed();
        }
        match instance.call(record, &self.limits) {
            Ok(verdict) => {
                *slot = Some(instance);
                if verdict == Verdict::Drop {
                    self.dropped.fetch_add(1, Relaxed);
                }
                verdict
            }
            Err(CallError::BadReturn(code)) => {
                *slot = Some(instance);
                self.fail(&format!(
                    "filter() returned {code}; expected 0 (keep) or 1 (drop)"
                ))
            }
            // The instance is dropped here; the next call builds a new one.
            Err(CallError::Trap(e)) => self.fail(&instance::describe(&e, &self.limits)),
        }
    }

    /// Count, log (rate-limited) and apply `on_error`.
    fn fail(&self, reason: &str) -> Verdict {
        self.errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.error_log.check() {
            tracing::warn!(
                filter = %self.shared.name,
                error = reason,
                on_error = ?self.on_error,
                suppressed,
                "Filter call failed; record handled by on_error."
            );
        }
        match self.on_error {
            OnError::Pass => Verdict::Keep,
            OnError::Drop => {
                self.dropped.fetch_add(1, Relaxed);
                Verdict::Drop
            }
        }
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // A panic while holding this lock could only come from Vec::push or
        // pop; the Vec is still valid, so poisoning is ignored.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_back(&self, instance: Instance) {
        let mut pool = self.lock_pool();
        if pool.len() < MAX_IDLE_INSTANCES {
            pool.push(instance);
        }
    }

    /// Whether the guest can learn what the record holds: only through
    /// the `field_get`, `record_get` and `field_remove` imports, so a
    /// module that imports none of them (one that drops or keeps by
    /// itself, counts, logs or only sets fields) needs no field decoded
    /// for it, and the decoder then decodes only what the outputs read.
    pub fn reads_record(&self) -> bool {
        self.reads_record
    }

    /// Whether the guest can change the record: only through the
    /// `field_set`, `field_remove` and `record_set` imports. A record it
    /// may have changed loses its frame ([`Record::frame`]), so an
    /// output that would have sent the frame encodes the fields.
    pub fn writes_record(&self) -> bool {
        self.writes_record
    }

    /// The plugin file; a change to it should reload this filter.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls of `apply` so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// Records this filter dropped (by verdict or by `on_error: drop`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Calls that failed (trap, fuel, timeout, memory, bad return value).
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

#[cfg(test)]
mod tests;
