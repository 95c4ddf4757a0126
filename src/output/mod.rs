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

pub mod file;
pub mod forward;
pub mod receipt;
pub mod stdout;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::codec::{json, Keep};
use crate::config::{Encoding, OutputConfig, TextFormat};
use crate::format::{FormatError, Template};
use crate::record::Record;
use receipt::Held;
pub use receipt::Receipt;

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
    /// taken the records in), and the batch's receipt if its sender waits
    /// for the write (see [`receipt`]).
    Records(
        Vec<Record>,
        Option<tokio::sync::OwnedSemaphorePermit>,
        Option<Receipt>,
    ),
    /// The same, already formatted by the sender (see `Preformat`).
    Lines(
        Lines,
        Option<tokio::sync::OwnedSemaphorePermit>,
        Option<Receipt>,
    ),
    /// Close and reopen files (SIGHUP, for external logrotate).
    Reopen,
    /// A reload changed this file output's settings but not its path:
    /// apply them after what is queued, on the same file.
    Reconfigure(Box<crate::config::FileOutputConfig>),
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

/// How an output whose lines depend only on the record (a file with one
/// path, a stream) has its records formatted by the task that decoded
/// them, on the input's thread, rather than on the output's thread.
///
/// The output thread then only copies bytes into its write buffer. The
/// records are read and freed where they were built, while they are still
/// in that core's cache; formatting them on the output thread made every
/// field cross between cores twice (read, then freed) and put every free
/// on glibc's cross-thread path.
///
/// A template keeps caches (asctime, field positions) and rate-limited
/// warnings, so each worker thread formats with its own clone of the
/// prototype, found by `id`. Lines are the same whoever formats them.
#[derive(Debug)]
pub(crate) struct Preformat {
    id: u64,
    /// The record fields the encoder reads.
    reads: Keep,
    /// Only cloned, once per thread; the lock makes the shared prototype
    /// `Sync` (a template's caches are `Cell`s).
    proto: std::sync::Mutex<LineEncoder>,
}

/// Ids of [`Preformat`]s, unique for the life of the process.
static NEXT_PREFORMAT: AtomicU64 = AtomicU64::new(1);

/// Worker threads' clones of the encoders they formatted with lately,
/// by [`Preformat::id`]. Outputs a reload removed leave stale entries; the
/// list is cleared when it grows past [`MAX_THREAD_ENCODERS`].
const MAX_THREAD_ENCODERS: usize = 64;
thread_local! {
    static ENCODERS: std::cell::RefCell<Vec<(u64, LineEncoder, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Preformat {
    fn new(proto: LineEncoder) -> Preformat {
        Preformat {
            id: NEXT_PREFORMAT.fetch_add(1, Ordering::Relaxed),
            reads: proto.reads(),
            proto: std::sync::Mutex::new(proto),
        }
    }

    /// Format `batch` into lines, with this thread's clone of the encoder.
    fn lines(&self, batch: &[Record]) -> Lines {
        let mut lines = Lines {
            buf: Vec::new(),
            ends: Vec::with_capacity(batch.len()),
        };
        ENCODERS.with_borrow_mut(|encoders| {
            let i = match encoders.iter().position(|(id, _, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    if encoders.len() >= MAX_THREAD_ENCODERS {
                        encoders.clear();
                    }
                    // Never poisoned: nothing panics while it is held.
                    let proto = match self.proto.lock() {
                        Ok(p) => p.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    encoders.push((self.id, proto, 192));
                    encoders.len() - 1
                }
            };
            let (_, encoder, line_bytes) = &mut encoders[i];
            // Room for lines as long as the last batch's (up to 1 MiB), so
            // the buffer is not copied as it grows.
            lines
                .buf
                .reserve((batch.len() * *line_bytes).min(1 << 20) + 64);
            for r in batch {
                encoder.encode(r, &mut lines.buf);
                lines
                    .ends
                    .push(u32::try_from(lines.buf.len()).unwrap_or(u32::MAX));
            }
            if !batch.is_empty() {
                *line_bytes = (lines.buf.len() / batch.len()).clamp(64, 16 * 1024) + 16;
            }
        });
        lines
    }
}

/// A cheap, cloneable handle to a running output.
#[derive(Clone, Debug)]
pub struct OutputHandle {
    name: Arc<str>,
    tx: mpsc::Sender<OutputMsg>,
    budget: Arc<tokio::sync::Semaphore>,
    stats: Arc<OutputStats>,
    /// Set when the sender formats the records (see `Preformat`).
    preformat: Option<Arc<Preformat>>,
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

    /// The record fields this output reads: those its format names for a
    /// text output that formats in the sender, else all of them.
    pub fn reads(&self) -> Keep {
        self.preformat.as_ref().map_or(Keep::ALL, |p| p.reads)
    }

    /// Whether this output takes the records themselves (and so needs its
    /// own copy of a batch), rather than lines formatted from them.
    pub fn takes_records(&self) -> bool {
        self.preformat.is_none()
    }

    /// Queue a batch, waiting while the output is saturated. An output
    /// that formats in the sender (`Preformat`) only reads the records:
    /// they are dropped by the caller, on its thread. `receipt`: given
    /// back once the output wrote the batch.
    pub async fn send(&self, batch: Vec<Record>, receipt: Option<Receipt>) {
        match &self.preformat {
            Some(_) => self.send_ref(&batch, receipt).await,
            None => {
                self.queue(batch.len(), |permit| {
                    OutputMsg::Records(batch, permit, receipt)
                })
                .await
            }
        }
    }

    /// [`OutputHandle::send`] for an output that does not take records
    /// ([`OutputHandle::takes_records`] is false); one that does gets a
    /// clone of the batch.
    pub async fn send_ref(&self, batch: &[Record], receipt: Option<Receipt>) {
        match &self.preformat {
            Some(pre) => {
                let lines = pre.lines(batch);
                self.queue(batch.len(), |permit| {
                    OutputMsg::Lines(lines, permit, receipt)
                })
                .await;
            }
            None => {
                self.queue(batch.len(), |permit| {
                    OutputMsg::Records(batch.to_vec(), permit, receipt)
                })
                .await
            }
        }
    }

    /// Take `records` of the queue budget and queue the message.
    async fn queue(
        &self,
        records: usize,
        msg: impl FnOnce(Option<tokio::sync::OwnedSemaphorePermit>) -> OutputMsg,
    ) {
        // A batch larger than the whole budget takes all of it.
        let n = records.clamp(1, QUEUE_RECORDS) as u32;
        // The semaphore is never closed; without a permit, send anyway.
        let permit = self.budget.clone().acquire_many_owned(n).await.ok();
        if self.tx.send(msg(permit)).await.is_err() {
            // Only possible if the output thread died; it logged why.
            tracing::error!(output = %self.name, "Output is gone; batch not written.");
        }
    }

    /// A handle to the same output thread (same file, same queue) whose
    /// senders format lines with `encoding` and `text` instead; `None` if
    /// this output formats on its own thread. A reload that changes only
    /// an output's format uses it: a second thread appending to the same
    /// file would write a connection's first new lines before the old
    /// thread's queued ones.
    pub fn with_format(
        &self,
        encoding: Encoding,
        text: &TextFormat,
    ) -> Result<Option<OutputHandle>, OutputError> {
        if self.preformat.is_none() {
            return Ok(None);
        }
        let encoder = LineEncoder::new(&self.name, encoding, text)?;
        Ok(Some(OutputHandle {
            preformat: Some(Arc::new(Preformat::new(encoder))),
            ..self.clone()
        }))
    }

    /// Ask the output to reopen its files.
    pub async fn reopen(&self) {
        let _ = self.tx.send(OutputMsg::Reopen).await;
    }

    /// Wait until the output has written everything queued before this
    /// call (a forward output: taken into its buffer). False if the output
    /// is gone.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(OutputMsg::Flush(tx)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// Ask a file output to take `config` (same path) after what is
    /// queued.
    pub async fn reconfigure(&self, config: &crate::config::FileOutputConfig) {
        let _ = self
            .tx
            .send(OutputMsg::Reconfigure(Box::new(config.clone())))
            .await;
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
#[derive(Clone, Debug)]
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

    /// The record fields [`LineEncoder::encode`] reads.
    fn reads(&self) -> Keep {
        match self {
            LineEncoder::Text(t) => t.reads(),
            LineEncoder::Json => Keep::ALL,
        }
    }

    /// Append one line (with its `\n`).
    pub(crate) fn encode(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self {
            LineEncoder::Text(t) => t.format(record, out),
            LineEncoder::Json => {
                // What was sent (and set by filters), not the decoder's
                // defaults: docs/decisions.md, "Records and encoding": nothing
                // added.
                json::write_record(record, out);
                out.push(b'\n');
            }
        }
    }
}

/// Start the output `name`: open its file or stream and spawn its thread.
pub fn start(name: &str, config: &OutputConfig) -> Result<RunningOutput, OutputError> {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let stats = Arc::new(OutputStats::default());
    let preformat = match config {
        OutputConfig::File(c) if c.max_open_files.is_none() => {
            Some(LineEncoder::new(name, c.encoding, &c.text)?)
        }
        OutputConfig::Stream(c) => Some(LineEncoder::new(name, c.encoding, &c.text)?),
        _ => None,
    };
    let thread = match config {
        OutputConfig::File(c) => file::start(name, c, rx, tx.downgrade(), stats.clone())?,
        OutputConfig::Stream(c) => stdout::start(name, c, rx, stats.clone())?,
        OutputConfig::Forward(c) => forward::start(name, c, rx, stats.clone())?,
        OutputConfig::Nats(c) => crate::nats::output::start(name, c, rx, stats.clone())?,
    };
    Ok(RunningOutput {
        handle: OutputHandle {
            name: name.into(),
            tx,
            budget: Arc::new(tokio::sync::Semaphore::new(QUEUE_RECORDS)),
            stats,
            preformat: preformat.map(|p| Arc::new(Preformat::new(p))),
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
    /// Buffer (or write) a batch formatted by the sender. Only the sinks
    /// of outputs that [`start`] gives a [`Preformat`] receive these.
    fn lines(&mut self, lines: Lines) {
        tracing::error!(
            lines = lines.ends.len(),
            "Bug: formatted lines sent to an output that formats itself; dropped."
        );
    }
    /// Reopen files.
    fn reopen(&mut self);
    /// Take new settings for the same file (see
    /// [`OutputMsg::Reconfigure`]); only a literal-path file output is
    /// sent one.
    fn reconfigure(&mut self, _config: &crate::config::FileOutputConfig) {
        tracing::error!("Bug: settings sent to an output that cannot take them; ignored.");
    }
    /// Write everything buffered.
    fn flush(&mut self);
    /// Whether a write gave up on records since the last call (a file
    /// still failing at shutdown, a closed stdout): the receipts held for
    /// them then fail instead of confirming what was not written.
    fn gave_up(&mut self) -> bool {
        false
    }
    /// How often [`Sink::tick`] wants to run, even while no record comes
    /// (`None`: never).
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Periodic housekeeping (the file output checks whether its file was
    /// moved or removed under it).
    fn tick(&mut self) {}
}

/// Handle one message and everything queued behind it, then write, and
/// give back the receipts of what was written.
fn drain(sink: &mut impl Sink, rx: &mut mpsc::Receiver<OutputMsg>, msg: OutputMsg) {
    let mut held = Held::default();
    let mut next = Some(msg);
    let mut flushed = Vec::new();
    while let Some(msg) = next.take() {
        match msg {
            OutputMsg::Records(batch, _budget, receipt) => {
                sink.records(batch);
                held.push(receipt);
            }
            OutputMsg::Lines(lines, _budget, receipt) => {
                sink.lines(lines);
                held.push(receipt);
            }
            OutputMsg::Reopen => sink.reopen(),
            OutputMsg::Reconfigure(config) => sink.reconfigure(&config),
            OutputMsg::Flush(done) => flushed.push(done),
        }
        next = rx.try_recv().ok();
    }
    sink.flush();
    if sink.gave_up() {
        held.lost();
    } else {
        held.written();
    }
    for done in flushed {
        let _ = done.send(());
    }
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
    let timed = sink.tick_every().and_then(|_| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::warn!(error = %e, "No timer for an output thread; periodic checks are off.");
                None
            }
        }
    });
    let mut last_tick = Instant::now();
    loop {
        // Asked each time: a reload may change `flush_ms`.
        let every = timed.as_ref().and(sink.tick_every());
        let msg = match (&timed, every) {
            (Some(rt), Some(every)) => {
                match rt.block_on(async { tokio::time::timeout(every, rx.recv()).await }) {
                    Ok(msg) => msg,
                    Err(_) => {
                        tick_if_due(&mut sink, every, &mut last_tick);
                        continue;
                    }
                }
            }
            _ => rx.blocking_recv(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    #[test]
    fn lines_iterate_in_order_with_their_newlines() {
        let lines = Lines {
            buf: b"a\nbc\n\n".to_vec(),
            ends: vec![2, 5, 6],
        };
        let got: Vec<&[u8]> = lines.iter().collect();
        assert_eq!(got, [&b"a\n"[..], b"bc\n", b"\n"]);
    }

    #[test]
    fn preformat_gives_the_lines_the_output_would_write() {
        let text = TextFormat {
            format: "%(levelname)s:%(name)s:%(message)s".into(),
            ..TextFormat::default()
        };
        let mut encoder = LineEncoder::new("t", Encoding::Text, &text).unwrap();
        let records: Vec<Record> = (0..3)
            .map(|i| {
                Record::of(&[
                    ("name", Value::str("app")),
                    ("levelname", Value::str("INFO")),
                    ("msg", Value::str(format!("m{i}"))),
                ])
            })
            .collect();
        let mut expected = Vec::new();
        for r in &records {
            encoder.encode(r, &mut expected);
        }
        let pre = Preformat::new(encoder);
        let lines = pre.lines(&records);
        assert_eq!(lines.buf, expected);
        assert_eq!(lines.buf, b"INFO:app:m0\nINFO:app:m1\nINFO:app:m2\n");
        assert_eq!(lines.ends, [12, 24, 36]);
        // The thread's clone serves the next batch too.
        assert_eq!(pre.lines(&records[..1]).buf, b"INFO:app:m0\n");
    }
}
