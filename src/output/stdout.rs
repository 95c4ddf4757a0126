//! The `stdout` output (and stderr, for dictConfig's StreamHandler).

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::{count, spawn_thread, Lines, OutputError, OutputMsg, OutputStats, Sink, WRITE_CHUNK};
use crate::config::{StreamKind, StreamOutputConfig};

struct StreamSink {
    stream: StreamKind,
    buf: Vec<u8>,
    pending: usize,
    /// A write failed since [`Sink::gave_up`] was last asked.
    gave_up: bool,
    stats: Arc<OutputStats>,
}

/// Start a stream output thread. Its senders format the lines (see
/// `Preformat`), with the format the output's handle checked.
pub fn start(
    name: &str,
    config: &StreamOutputConfig,
    rx: mpsc::Receiver<OutputMsg<Lines>>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
    let sink = StreamSink {
        stream: config.stream,
        buf: Vec::with_capacity(WRITE_CHUNK),
        pending: 0,
        gave_up: false,
        stats,
    };
    spawn_thread(name, sink, rx)
}

impl StreamSink {
    /// A line was just appended: write once a chunk is full.
    fn line_added(&mut self) {
        self.pending += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.flush();
        }
    }
}

/// A stream output: its senders format the lines, and it takes no
/// settings (a reload that changes only the format gives its handle a new
/// encoder; see `OutputHandle::with_format`).
impl Sink for StreamSink {
    type Batch = Lines;
    type Settings = Infallible;

    fn write(&mut self, lines: Lines) {
        for line in lines.iter() {
            self.buf.extend_from_slice(line);
            self.line_added();
        }
    }

    fn retune(&mut self, settings: Infallible) {
        match settings {}
    }

    fn reopen(&mut self) {}

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = match self.stream {
            StreamKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
            StreamKind::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        match result {
            Ok(()) => count(&self.stats, self.pending, self.buf.len()),
            // A closed stdout (a pipe whose reader went away) cannot be
            // retried; count it and move on rather than block everything.
            Err(e) => {
                self.stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "Writing to the stream failed; batch lost.");
                self.gave_up = true;
            }
        }
        self.buf.clear();
        self.pending = 0;
    }

    fn gave_up(&mut self) -> bool {
        std::mem::take(&mut self.gave_up)
    }
}
