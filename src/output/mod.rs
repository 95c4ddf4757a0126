//! Outputs: each runs on its own thread, owns its file or stream, and is
//! the only writer of it, so lines never interleave whatever the number of
//! senders. Records arrive in batches over a bounded channel — already
//! formatted into lines by the sender where the line depends only on the
//! record (see `Preformat`); a full channel makes the senders wait
//! (backpressure), never drops.
//!
//! An output thread writes whenever its queue runs empty (and every 256 KiB
//! under load), so a record never waits in memory longer than it takes to
//! format the batch in front of it — well under `flush_ms`.

mod encoder;
pub mod file;
pub mod forward;
mod handle;
mod message;
pub mod nats;
mod preformat;
pub mod receipt;
mod sink;
pub mod stdout;

pub(crate) use encoder::LineEncoder;
pub use handle::{start, OutputHandle, RunningOutput};
pub use message::{Lines, OutputError, OutputMsg, OutputStats};
pub(crate) use preformat::Preformat;
pub use receipt::Receipt;
pub(crate) use sink::{count, spawn_runtime_thread, spawn_thread, Senders, Sink};

/// Bytes formatted before an output writes even if more are queued.
pub(crate) const WRITE_CHUNK: usize = 256 * 1024;
