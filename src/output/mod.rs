//! Outputs: each runs on its own thread, owns its file or stream, and is
//! the only writer of it, so lines never interleave whatever the number of
//! senders. Records arrive in batches over a bounded channel; a full
//! channel makes the senders wait (backpressure), never drops.
//!
//! An output thread writes whenever its queue runs empty (and every 256 KiB
//! under load), so a record never waits in memory longer than it takes to
//! format the batch in front of it — well under `flush_ms`.

pub mod file;
pub mod forward;
pub mod stdout;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::codec::json;
use crate::config::{Encoding, OutputConfig, TextFormat};
use crate::format::{FormatError, Template};
use crate::record::Record;

/// Records queued per output before senders wait. Records borrow from
/// their read's buffer (up to 64 KiB for about 90 records under load), so
/// this bounds what a saturated or failing output holds to a few MiB, while
/// a trickle of one-record batches (a SocketHandler logging now and then)
/// still gets thousands of records of slack: the budget counts records,
/// not batches.
const QUEUE_RECORDS: usize = 1024;
/// Messages in flight per output (the record budget is the real bound).
const QUEUE_BATCHES: usize = 1024;
/// Bytes formatted before an output writes even if more are queued.
pub(crate) const WRITE_CHUNK: usize = 256 * 1024;

/// A message to an output thread.
#[derive(Debug)]
pub enum OutputMsg {
    /// Records to write, in order, with their share of the output's queue
    /// budget (released when the message is dropped, after the output has
    /// taken the records in).
    Records(Vec<Record>, Option<tokio::sync::OwnedSemaphorePermit>),
    /// Close and reopen files (SIGHUP, for external logrotate).
    Reopen,
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
    /// Whether this is a forward output (has a buffer gauge).
    pub is_forward: std::sync::atomic::AtomicBool,
}

/// A cheap, cloneable handle to a running output.
#[derive(Clone, Debug)]
pub struct OutputHandle {
    name: Arc<str>,
    tx: mpsc::Sender<OutputMsg>,
    budget: Arc<tokio::sync::Semaphore>,
    stats: Arc<OutputStats>,
}

impl OutputHandle {
    /// The output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<OutputStats> {
        &self.stats
    }

    /// Queue a batch, waiting while the output is saturated.
    pub async fn send(&self, batch: Vec<Record>) {
        // A batch larger than the whole budget takes all of it.
        let n = batch.len().clamp(1, QUEUE_RECORDS) as u32;
        // The semaphore is never closed; without a permit, send anyway.
        let permit = self.budget.clone().acquire_many_owned(n).await.ok();
        if self
            .tx
            .send(OutputMsg::Records(batch, permit))
            .await
            .is_err()
        {
            // Only possible if the output thread died; it logged why.
            tracing::error!(output = %self.name, "Output is gone; batch not written.");
        }
    }

    /// Ask the output to reopen its files.
    pub async fn reopen(&self) {
        let _ = self.tx.send(OutputMsg::Reopen).await;
    }
}

/// A running output: its handle and its thread.
#[derive(Debug)]
pub struct RunningOutput {
    /// Send batches here.
    pub handle: OutputHandle,
    /// The config it runs with (reload keeps it when unchanged).
    pub config: OutputConfig,
    /// Joined at shutdown, after every handle is dropped.
    pub thread: JoinHandle<()>,
}

/// Turns a record into bytes: a compiled text template or JSON.
pub(crate) enum LineEncoder {
    Text(Box<Template>),
    Json,
}

impl LineEncoder {
    pub(crate) fn new(
        name: &str,
        encoding: Encoding,
        text: &TextFormat,
    ) -> Result<LineEncoder, OutputError> {
        Ok(match encoding {
            Encoding::Json => LineEncoder::Json,
            Encoding::Text => {
                let mut template =
                    Template::compile(text).map_err(|source| OutputError::Format {
                        name: name.to_string(),
                        source,
                    })?;
                // Missing-attribute warnings name the output.
                template.set_output_name(name);
                LineEncoder::Text(Box::new(template))
            }
        })
    }

    /// Append one line (with its `\n`).
    pub(crate) fn encode(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self {
            LineEncoder::Text(t) => t.format(record, out),
            LineEncoder::Json => {
                json::write_fields(&record.fields, out);
                out.push(b'\n');
            }
        }
    }
}

/// Start the output `name`: open its file or stream and spawn its thread.
pub fn start(name: &str, config: &OutputConfig) -> Result<RunningOutput, OutputError> {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let stats = Arc::new(OutputStats::default());
    let thread = match config {
        OutputConfig::File(c) => file::start(name, c, rx, tx.downgrade(), stats.clone())?,
        OutputConfig::Stream(c) => stdout::start(name, c, rx, stats.clone())?,
        OutputConfig::Forward(c) => forward::start(name, c, rx, stats.clone())?,
    };
    Ok(RunningOutput {
        handle: OutputHandle {
            name: name.into(),
            tx,
            budget: Arc::new(tokio::sync::Semaphore::new(QUEUE_RECORDS)),
            stats,
        },
        config: config.clone(),
        thread,
    })
}

/// Count one written batch.
pub(crate) fn count(stats: &OutputStats, records: usize, bytes: usize) {
    stats.written.fetch_add(records as u64, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// What an output thread drives: a file or a stream.
pub(crate) trait Sink {
    /// Format and buffer (or write) a batch.
    fn records(&mut self, batch: Vec<Record>);
    /// Reopen files.
    fn reopen(&mut self);
    /// Write everything buffered.
    fn flush(&mut self);
    /// How often [`Sink::tick`] wants to run, even while no record comes
    /// (`None`: never).
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Periodic housekeeping (the file output checks whether its file was
    /// moved or removed under it).
    fn tick(&mut self) {}
}

/// Handle one message and everything queued behind it, then write.
fn drain(sink: &mut impl Sink, rx: &mut mpsc::Receiver<OutputMsg>, msg: OutputMsg) {
    let mut next = Some(msg);
    while let Some(msg) = next.take() {
        match msg {
            OutputMsg::Records(batch, _budget) => sink.records(batch),
            OutputMsg::Reopen => sink.reopen(),
        }
        next = rx.try_recv().ok();
    }
    sink.flush();
}

/// How long an output thread that just wrote naps before it looks at its
/// queue again, instead of blocking on it. Under load the inputs then hand
/// over batches without waking it (a futex call and a context switch per
/// batch, about as much CPU as formatting the batch) and it writes bigger
/// chunks. Far below `flush_ms`; an idle output blocks as before.
const NAP: Duration = Duration::from_millis(1);

/// Handle `msg`, then nap and drain again for as long as records keep
/// coming. Returns false once every sender is gone.
fn busy_drain(
    sink: &mut impl Sink,
    rx: &mut mpsc::Receiver<OutputMsg>,
    msg: OutputMsg,
    every: Option<Duration>,
    last_tick: &mut Instant,
) -> bool {
    drain(sink, rx, msg);
    loop {
        std::thread::sleep(NAP);
        match rx.try_recv() {
            Ok(msg) => drain(sink, rx, msg),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
        if let Some(every) = every {
            tick_if_due(sink, every, last_tick);
        }
    }
}

/// Run the sink's periodic check if `every` has passed since the last.
fn tick_if_due(sink: &mut impl Sink, every: Duration, last_tick: &mut Instant) {
    if last_tick.elapsed() >= every {
        sink.tick();
        *last_tick = Instant::now();
    }
}

/// The output thread's loop: take every queued message, write when the
/// queue runs empty, and exit (flushed) once every sender is gone. A sink
/// that wants ticks gets them at least every `tick_every`, busy or idle.
pub(crate) fn run_sink(mut sink: impl Sink, mut rx: mpsc::Receiver<OutputMsg>) {
    // tokio's mpsc has no blocking receive with a timeout; a tiny
    // current-thread runtime (timer only) gives us one on this thread.
    let timed = sink.tick_every().and_then(|every| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => Some((rt, every)),
            Err(e) => {
                tracing::warn!(error = %e, "No timer for an output thread; periodic checks are off.");
                None
            }
        }
    });
    let mut last_tick = Instant::now();
    let every = timed.as_ref().map(|(_, every)| *every);
    loop {
        let msg = match &timed {
            None => rx.blocking_recv(),
            Some((rt, every)) => {
                match rt.block_on(async { tokio::time::timeout(*every, rx.recv()).await }) {
                    Ok(msg) => msg,
                    Err(_) => {
                        tick_if_due(&mut sink, *every, &mut last_tick);
                        continue;
                    }
                }
            }
        };
        let Some(msg) = msg else { break };
        if !busy_drain(&mut sink, &mut rx, msg, every, &mut last_tick) {
            break;
        }
        if let Some(every) = every {
            tick_if_due(&mut sink, every, &mut last_tick);
        }
    }
    sink.flush();
}

/// Spawn a named output thread.
pub(crate) fn spawn_thread(
    name: &str,
    sink: impl Sink + Send + 'static,
    rx: mpsc::Receiver<OutputMsg>,
) -> Result<JoinHandle<()>, OutputError> {
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || run_sink(sink, rx))
        .map_err(|source| OutputError::Open {
            name: name.to_string(),
            path: "(thread)".to_string(),
            source,
        })
}
