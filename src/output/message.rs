//! The message protocol of an output thread: what senders put on its
//! queue ([`OutputMsg`], with batches of records or of preformatted
//! [`Lines`]), why an output cannot start, and the counters it keeps.

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;

use super::Receipt;
use crate::format::FormatError;
use crate::record::Record;

/// A message to an output thread. `B` is what its queue carries: records
/// for an output that formats or encodes them itself, or [`Lines`] its
/// senders formatted (see `Preformat`). `S` is what a reload may hand it
/// on the same thread; `Infallible` (the default) for an output that takes
/// nothing, so that no such message can be built for it.
#[derive(Debug)]
pub enum OutputMsg<B = Vec<Record>, S = Infallible> {
    /// A batch to write, in order, with its share of the output's queue
    /// budget (released when the message is dropped, after the output has
    /// taken the batch in), and the batch's receipt if its sender waits
    /// for the write (see [`receipt`](super::receipt)).
    Batch(
        B,
        Option<tokio::sync::OwnedSemaphorePermit>,
        Option<Receipt>,
    ),
    /// Close and reopen files (SIGHUP, for external logrotate).
    Reopen,
    /// A reload changed this output's settings but not what it writes to
    /// (a file output's path): apply them after what is queued, on the
    /// same file.
    Retune(S),
    /// Answer once everything queued before it is written (an upgrade
    /// hands connections over only after their records reached the files).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Why an output could not start.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The file could not be opened.
    #[error("output {name}: cannot open {path}: {source}")]
    Open {
        /// The output's name.
        name: String,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The format string does not compile.
    #[error("output {name}: {source}")]
    Format {
        /// The output's name.
        name: String,
        /// What is wrong with it.
        source: FormatError,
    },
    /// Not available in this build.
    #[error("output {name}: {what} is not supported yet")]
    Unsupported {
        /// The output's name.
        name: String,
        /// What was asked for.
        what: &'static str,
    },
}

/// Counters of one output, read by metrics and tests.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Records written.
    pub written: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Write errors seen (each retried).
    pub errors: AtomicU64,
    /// Records dropped by policy (forward `when_full: drop_newest`).
    pub dropped: AtomicU64,
    /// Records buffered now (forward outputs), a gauge.
    pub buffered: AtomicU64,
    /// Files rotated (file outputs).
    pub rotations: AtomicU64,
    /// Whether this is a forward output (has a buffer gauge).
    pub is_forward: std::sync::atomic::AtomicBool,
}

/// Formatted lines of a batch of records: `buf` holds them one after the
/// other, each with its `\n`, and `ends[i]` is where line `i` ends.
#[derive(Debug, Default)]
pub struct Lines {
    /// The lines.
    pub buf: Vec<u8>,
    /// The end offset of each line in `buf`.
    pub ends: Vec<u32>,
}

impl Lines {
    /// Each line, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = self.buf.get(start..end as usize).unwrap_or_default();
            start = end as usize;
            line
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_iterate_in_order_with_their_newlines() {
        let lines = Lines {
            buf: b"a\nbc\n\n".to_vec(),
            ends: vec![2, 5, 6],
        };
        let got: Vec<&[u8]> = lines.iter().collect();
        assert_eq!(got, [&b"a\n"[..], b"bc\n", b"\n"]);
    }
}
