//! The output thread: the [`Sink`] it drives (a file, a pool of files, a
//! stream) and its loop, which drains the queue, writes when it runs empty
//! and ticks the sink. (The forward and NATS outputs run their own loops,
//! on a runtime, over the same messages.)

use std::future::Future;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::receipt::Held;
use super::{OutputError, OutputMsg, OutputStats};

/// Count one written batch.
pub(crate) fn count(stats: &OutputStats, records: usize, bytes: usize) {
    stats.written.fetch_add(records as u64, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// What an output thread drives: a file, a pool of files or a stream.
///
/// Every sink writes batches, reopens, flushes and ticks. What a batch is
/// and whether a reload can hand it settings differ by sink, so they are
/// its types, and its queue carries [`OutputMsg<Self::Batch,
/// Self::Settings>`](OutputMsg): a sink that formats its own lines cannot
/// be sent preformatted ones, and one that takes no settings cannot be
/// sent any.
pub(crate) trait Sink {
    /// What it writes: records it formats itself, or [`Lines`](super::Lines)
    /// its senders formatted (see [`Preformat`](super::Preformat)).
    type Batch: Send + 'static;
    /// Settings a reload hands it on the same thread, after what is
    /// queued (a file output with one path); `Infallible` for a sink that
    /// takes none.
    type Settings: Send + 'static;
    /// Format and buffer (or write) a batch.
    fn write(&mut self, batch: Self::Batch);
    /// Take new settings for the same file (see [`OutputMsg::Retune`]).
    fn retune(&mut self, settings: Self::Settings);
    /// Reopen files.
    fn reopen(&mut self);
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

/// A message to the thread that drives `S`.
pub(crate) type MsgFor<S> = OutputMsg<<S as Sink>::Batch, <S as Sink>::Settings>;

/// Whether anyone can still send to an output, whatever its queue
/// carries (a file sink retries a failing write forever while someone
/// can: backpressure).
pub(crate) trait Senders: Send + Sync {
    /// True once every sender is gone.
    fn gone(&self) -> bool;
}

impl<M: Send> Senders for mpsc::WeakSender<M> {
    fn gone(&self) -> bool {
        self.upgrade().is_none()
    }
}

/// Handle one message and everything queued behind it, then write, and
/// give back the receipts of what was written.
fn drain<S: Sink>(sink: &mut S, rx: &mut mpsc::Receiver<MsgFor<S>>, msg: MsgFor<S>) {
    let mut held = Held::default();
    let mut next = Some(msg);
    let mut flushed = Vec::new();
    while let Some(msg) = next.take() {
        match msg {
            OutputMsg::Batch(batch, _budget, receipt) => {
                sink.write(batch);
                held.push(receipt);
            }
            OutputMsg::Reopen => sink.reopen(),
            OutputMsg::Retune(settings) => sink.retune(settings),
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
/// chunks. Far below `flush_ms`; an idle output blocks as before. A
/// sender that finds the output's record budget spent wakes it
/// (`OutputHandle::send` unparks the thread): the nap must never hold
/// the inputs back. (It did: with 1,024 records of budget and a 1 ms nap,
/// four senders could not pass about 850,000 records/s, half of what the
/// raw copy took.)
const NAP: Duration = Duration::from_millis(1);

/// Handle `msg`, then nap and drain again for as long as records keep
/// coming. Returns false once every sender is gone.
fn busy_drain<S: Sink>(
    sink: &mut S,
    rx: &mut mpsc::Receiver<MsgFor<S>>,
    msg: MsgFor<S>,
    every: Option<Duration>,
    last_tick: &mut Instant,
) -> bool {
    drain(sink, rx, msg);
    loop {
        std::thread::park_timeout(NAP);
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
pub(crate) fn run_sink<S: Sink>(mut sink: S, mut rx: mpsc::Receiver<MsgFor<S>>) {
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

/// Spawn a named output thread that drives `sink`.
pub(crate) fn spawn_thread<S: Sink + Send + 'static>(
    name: &str,
    sink: S,
    rx: mpsc::Receiver<MsgFor<S>>,
) -> Result<JoinHandle<()>, OutputError> {
    spawn_named(name, move || run_sink(sink, rx))
}

/// Spawn a named output thread that runs the future `run` makes on a
/// current-thread tokio runtime of its own: the forward and nats outputs
/// connect, back off and wait for acks there, on their own thread as
/// every output, beside the pipeline's runtime. `kind` names the output
/// in the error logged if the runtime cannot start.
pub(crate) fn spawn_runtime_thread<F, Fut>(
    name: &str,
    kind: &'static str,
    run: F,
) -> Result<JoinHandle<()>, OutputError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let owned = name.to_string();
    spawn_named(name, move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(output = %owned, error = %e, "Cannot start the {kind} runtime.");
                return;
            }
        };
        rt.block_on(run());
    })
}

/// Spawn the thread `output-<name>`.
fn spawn_named(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, OutputError> {
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(f)
        .map_err(|source| OutputError::Open {
            name: name.to_string(),
            path: "(thread)".to_string(),
            source,
        })
}
