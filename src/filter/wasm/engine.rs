//! The shared wasmtime engines and the epoch ticker.
//!
//! Fuel metering and epoch interruption are engine-wide settings compiled
//! into the machine code, and each costs time on every call
//! (docs/decisions.md, "WASM filters": fuel ~33%, epochs ~50% on a small
//! guest). So there is one engine per
//! combination a config can ask for, created on first use and shared by every
//! filter that needs it: a filter with only `fuel` does not pay for epochs.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the ticker thread advances the epoch of the epoch engines.
/// `timeout_ms` is rounded up to whole ticks, so this is its granularity.
pub const TICK_MS: u64 = 10;

/// Which interruption mechanisms an engine compiles in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metering {
    /// Count fuel (`fuel` set).
    pub fuel: bool,
    /// Check an epoch deadline (`timeout_ms`, the default).
    pub epoch: bool,
}

static ENGINES: [OnceLock<Engine>; 4] = [
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
];
static TICKER: OnceLock<()> = OnceLock::new();

/// The engine for `metering`, created (and, for epochs, ticked) on first use.
pub fn engine(metering: Metering) -> &'static Engine {
    let slot = usize::from(metering.fuel) | usize::from(metering.epoch) << 1;
    ENGINES[slot].get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(metering.fuel);
        config.epoch_interruption(metering.epoch);
        // Guests run on tokio worker threads (2 MiB stacks), after some host
        // frames: keep wasm's own stack well below that. A guest that
        // recurses deeper traps with a stack overflow, which is contained.
        config.max_wasm_stack(512 * 1024);
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            // Invariant: these settings are valid on every host wasmtime
            // runs on (cranelift with default features); a failure here is a
            // build problem, not a runtime condition.
            Err(e) => panic!("wasmtime engine configuration rejected: {e}"),
        };
        if metering.epoch {
            start_ticker();
        }
        engine
    })
}

/// One thread for the whole process advances every epoch engine each tick.
/// It reads the engine slots itself, so an engine created later is ticked
/// too; the thread lives as long as the process (engines are static).
fn start_ticker() {
    TICKER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(TICK_MS));
                for slot in [2, 3] {
                    if let Some(engine) = ENGINES[slot].get() {
                        engine.increment_epoch();
                    }
                }
            });
        if let Err(e) = spawned {
            // Without a ticker no epoch deadline would ever fire and a
            // runaway guest would hang its worker: say so loudly. Fuel-based
            // limits keep working.
            tracing::error!(error = %e, "Could not start the wasm epoch thread; timeout_ms will not fire.");
        }
    });
}

/// Epoch ticks for a timeout: rounded up, plus one because the current
/// tick may be about to end, so a call always gets at least `timeout_ms`.
pub fn ticks_for(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(TICK_MS).max(1) + 1
}
