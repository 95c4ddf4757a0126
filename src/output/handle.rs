//! The sender side of an output: the cloneable [`OutputHandle`] with its
//! queue and record budget, and [`start`], which spawns the output.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::Receipt;
use super::{file, forward, stdout, LineEncoder, OutputError, OutputMsg, OutputStats, Preformat};
use crate::codec::Keep;
use crate::config::{Encoding, OutputConfig, TextFormat};
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
