//! Integration tests: one binary (so wasmtime links once) that drives the
//! real `logrelay` executable with real Python senders.

mod util;

mod check;
mod cli;
mod core;
mod decoders;
mod durability;
mod examples;
mod file;
mod format;
mod forward;
mod hostile;
mod metrics;
mod nats;
mod prerequisites;
mod relay;
mod reload;
mod scale;
mod status;
mod tls;
mod upgrade;
mod wasm;
