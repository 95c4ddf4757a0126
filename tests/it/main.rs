//! Integration tests: one binary (so wasmtime links once) that drives the
//! real `logrelay` executable with real Python senders.

mod util;

mod cli;
mod core;
mod decoders;
mod file;
mod format;
mod forward;
mod hostile;
mod metrics;
mod nats;
mod reload;
mod scale;
mod tls;
mod upgrade;
mod wasm;
