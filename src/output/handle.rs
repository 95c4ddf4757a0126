//! The sender side of an output: the cloneable [`OutputHandle`] with its
//! queue and record budget, and [`start`], which spawns the output.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::Receipt;
use super::{
    file, forward, stdout, LineEncoder, Lines, OutputError, OutputMsg, OutputStats, Preformat,
};
use crate::codec::Keep;
use crate::config::{Encoder, Encoding, FileOutputConfig, OutputConfig, TextFormat};
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

/// A cheap, cloneable handle to a running output.
#[derive(Clone, Debug)]
pub struct OutputHandle {
    name: Arc<str>,
    queue: Queue,
    /// What an output that takes records reads of them.
    reads: Keep,
    budget: Arc<tokio::sync::Semaphore>,
    /// The output's thread, woken when the budget is spent (it may be
    /// napping between drains; see `sink::NAP`).
    thread: std::thread::Thread,
    stats: Arc<OutputStats>,
}

/// Where a handle's messages go: one kind of queue per kind of sink, each
/// typed by what its sink takes (see [`Sink`](super::Sink)).
#[derive(Clone, Debug)]
enum Queue {
    /// An output that formats or encodes records on its own thread: a file
    /// with a templated path (or `max_open_files`), forward, nats.
    Records(mpsc::Sender<OutputMsg>),
    /// An output whose senders format its lines: a stream.
    Lines(mpsc::Sender<OutputMsg<Lines>>, Arc<Preformat>),
    /// The same for a file with one path, whose settings a reload can
    /// change on the same thread.
    File(
        mpsc::Sender<OutputMsg<Lines, Box<FileOutputConfig>>>,
        Arc<Preformat>,
    ),
}

impl Queue {
    /// The encoder of an output whose senders format.
    fn preformat(&self) -> Option<&Arc<Preformat>> {
        match self {
            Queue::Records(_) => None,
            Queue::Lines(_, pre) | Queue::File(_, pre) => Some(pre),
        }
    }
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
    /// text output that formats in the sender; for a pickle encoder, the
    /// frame as sent and its subject's fields; else all of them.
    pub fn reads(&self) -> Keep {
        self.queue.preformat().map_or(self.reads, |p| p.reads)
    }

    /// Whether this output takes the records themselves (and so needs its
    /// own copy of a batch), rather than lines formatted from them.
    pub fn takes_records(&self) -> bool {
        matches!(self.queue, Queue::Records(_))
    }

    /// Queue a batch, waiting while the output is saturated. An output
    /// that formats in the sender (`Preformat`) only reads the records:
    /// they are dropped by the caller, on its thread. `receipt`: given
    /// back once the output wrote the batch.
    pub async fn send(&self, batch: Vec<Record>, receipt: Option<Receipt>) {
        match &self.queue {
            Queue::Records(tx) => {
                self.queue(tx, batch.len(), |permit| {
                    OutputMsg::Batch(batch, permit, receipt)
                })
                .await
            }
            _ => self.send_ref(&batch, receipt).await,
        }
    }

    /// [`OutputHandle::send`] for an output that does not take records
    /// ([`OutputHandle::takes_records`] is false); one that does gets a
    /// clone of the batch.
    pub async fn send_ref(&self, batch: &[Record], receipt: Option<Receipt>) {
        let n = batch.len();
        match &self.queue {
            Queue::Records(tx) => {
                self.queue(tx, n, |permit| {
                    OutputMsg::Batch(batch.to_vec(), permit, receipt)
                })
                .await
            }
            Queue::Lines(tx, pre) => {
                let lines = pre.lines(batch);
                self.queue(tx, n, |permit| OutputMsg::Batch(lines, permit, receipt))
                    .await;
            }
            Queue::File(tx, pre) => {
                let lines = pre.lines(batch);
                self.queue(tx, n, |permit| OutputMsg::Batch(lines, permit, receipt))
                    .await;
            }
        }
    }

    /// Take `records` of the queue budget and queue the message.
    async fn queue<B, S>(
        &self,
        tx: &mpsc::Sender<OutputMsg<B, S>>,
        records: usize,
        msg: impl FnOnce(Option<tokio::sync::OwnedSemaphorePermit>) -> OutputMsg<B, S>,
    ) {
        // A batch larger than the whole budget takes all of it.
        let n = records.clamp(1, QUEUE_RECORDS) as u32;
        // The semaphore is never closed; without a permit, send anyway.
        let permit = match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => Some(permit),
            Err(_) => {
                // Spent: the output may be napping with a full queue.
                self.thread.unpark();
                self.budget.clone().acquire_many_owned(n).await.ok()
            }
        };
        if tx.send(msg(permit)).await.is_err() {
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
        let queue = match &self.queue {
            Queue::Records(_) => return Ok(None),
            Queue::Lines(tx, _) => Queue::Lines(tx.clone(), preformat(&self.name, encoding, text)?),
            Queue::File(tx, _) => Queue::File(tx.clone(), preformat(&self.name, encoding, text)?),
        };
        Ok(Some(OutputHandle {
            queue,
            ..self.clone()
        }))
    }

    /// Ask the output to reopen its files.
    pub async fn reopen(&self) {
        let _ = match &self.queue {
            Queue::Records(tx) => tx.send(OutputMsg::Reopen).await.is_ok(),
            Queue::Lines(tx, _) => tx.send(OutputMsg::Reopen).await.is_ok(),
            Queue::File(tx, _) => tx.send(OutputMsg::Reopen).await.is_ok(),
        };
    }

    /// Wait until the output has written everything queued before this
    /// call (a forward output: taken into its buffer). False if the output
    /// is gone.
    pub async fn flush(&self) -> bool {
        let (done, rx) = tokio::sync::oneshot::channel();
        let sent = match &self.queue {
            Queue::Records(tx) => tx.send(OutputMsg::Flush(done)).await.is_ok(),
            Queue::Lines(tx, _) => tx.send(OutputMsg::Flush(done)).await.is_ok(),
            Queue::File(tx, _) => tx.send(OutputMsg::Flush(done)).await.is_ok(),
        };
        sent && rx.await.is_ok()
    }

    /// Hand a file output with one path new settings for the same file
    /// (see [`OutputMsg::Retune`]), applied after what is queued. Only
    /// its queue carries settings: any other output has none to take, and
    /// nothing is sent.
    pub async fn retune(&self, config: &FileOutputConfig) {
        if let Queue::File(tx, _) = &self.queue {
            let _ = tx.send(OutputMsg::Retune(Box::new(config.clone()))).await;
        }
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

/// The sender-side encoder of an output whose senders format its lines.
fn preformat(
    name: &str,
    encoding: Encoding,
    text: &TextFormat,
) -> Result<Arc<Preformat>, OutputError> {
    let encoder = LineEncoder::new(name, encoding, text)?;
    Ok(Arc::new(Preformat::new(encoder)))
}

/// Start the output `name`: open its file or stream and spawn its thread
/// (the format is checked before anything opens).
pub fn start(name: &str, config: &OutputConfig) -> Result<RunningOutput, OutputError> {
    let stats = Arc::new(OutputStats::default());
    let mut reads = Keep::ALL;
    let (queue, thread) = match config {
        OutputConfig::File(c) => match c.max_open_files {
            None => {
                let pre = preformat(name, c.encoding, &c.text)?;
                let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
                let senders = Arc::new(tx.downgrade());
                let thread = file::start(name, c, rx, senders, stats.clone())?;
                (Queue::File(tx, pre), thread)
            }
            Some(max_open) => {
                let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
                let senders = Arc::new(tx.downgrade());
                let thread = file::start_pool(name, c, max_open, rx, senders, stats.clone())?;
                (Queue::Records(tx), thread)
            }
        },
        OutputConfig::Stream(c) => {
            let pre = preformat(name, c.encoding, &c.text)?;
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            (
                Queue::Lines(tx, pre),
                stdout::start(name, c, rx, stats.clone())?,
            )
        }
        OutputConfig::Forward(c) => {
            match c.encoder {
                Encoder::Pickle => reads = Keep::FRAME,
                Encoder::Json => reads = Keep::RAW_FRAME,
                Encoder::Msgpack | Encoder::Fluent => {}
            }
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            (
                Queue::Records(tx),
                forward::start(name, c, rx, stats.clone())?,
            )
        }
        OutputConfig::Nats(c) => {
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            let (thread, subject_reads) = super::nats::start(name, c, rx, stats.clone())?;
            match c.encoder {
                Encoder::Pickle => reads = subject_reads.and(Keep::FRAME),
                Encoder::Json => reads = subject_reads.and(Keep::RAW_FRAME),
                Encoder::Msgpack | Encoder::Fluent => {}
            }
            (Queue::Records(tx), thread)
        }
    };
    Ok(RunningOutput {
        handle: OutputHandle {
            name: name.into(),
            queue,
            reads,
            budget: Arc::new(tokio::sync::Semaphore::new(QUEUE_RECORDS)),
            thread: thread.thread().clone(),
            stats,
        },
        config: config.clone(),
        thread,
    })
}
