//! The `nats` output: every record becomes one JetStream message.
//!
//! It runs on its own thread with a current-thread tokio runtime, as the
//! forward output does, and shares its buffering: records are encoded
//! once as they arrive and kept in order in a buffer of `buffer_records`
//! (then `when_full`: block the inputs, drop the newest, or overflow to the
//! forward output's spool format in `spool_dir`).
//!
//! - Each message carries `Nats-Msg-Id: <instance>-<sequence>`: a random
//!   id drawn when the output starts and a per-output sequence. A message
//!   re-sent because its ack was lost has the same id, and the stream
//!   stores it once (within its duplicate window, 2 minutes by default).
//!   The id travels with a spooled record, so a re-send after a restart
//!   dedupes too. (Records carry no sender identity of their own yet.)
//! - With `batch_bytes`, consecutive records are packed into one message
//!   of up to that many bytes (on a fixed subject, as a message then holds
//!   any logger's records), each record framed as
//!   SocketHandler frames them (a 4-byte big-endian length, then the
//!   payload), the count in a `Logrelay-Batch` header, the id that of
//!   its first record. A message once published is never changed, so a
//!   re-send has the same content and id. One message per record (the
//!   default) lets any NATS client read the stream; packing divides the
//!   per-message cost (docs/scale-out.md has the numbers).
//! - Up to `max_in_flight` publishes await their acks at once. They are
//!   plain NATS publishes with a reply subject `<inbox>.<token>` on one
//!   wildcard subscription of this output's, not one request (a oneshot,
//!   a semaphore permit, two timers and a boxed future) per record: the
//!   window is a queue of tokens, and one deadline (the oldest's) bounds
//!   the wait. This is what brings the output's CPU per record near the
//!   file output's (docs/scale-out.md has the numbers).
//! - A failed or timed-out ack puts that message and every later one not
//!   yet acknowledged back in front of the queue, to be re-sent in order
//!   once the client is connected again (the duplicates among them are
//!   dropped by the stream). Late acks of the old window are ignored.
//! - The stream is looked up once connected: used as it is if it exists,
//!   else created (file storage, `replicas`, subjects: the subject's
//!   literal tokens then `>`).
//! - async-nats reconnects across the listed servers (and those the
//!   cluster advertises) by itself; while it is not connected nothing is
//!   published and records wait in the buffer.
//!
//! This file holds the output's state and its loop; `entry.rs` is one
//! message and its spool form, `buffer.rs` takes records in (and spools
//! them), `publish.rs` talks to the cluster.

mod buffer;
pub(crate) mod client;
mod entry;
mod publish;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::codec::Keep;
use crate::config::{Encoder, NatsOutputConfig, WhenFull};
use crate::format::path::PathTemplate;
use crate::output::forward::spool::Spool;
use crate::output::{spawn_runtime_thread, OutputError, OutputMsg, OutputStats};
use client::NatsStats;
use entry::Entry;
use publish::{join_lookup, next_ack, InFlight};

/// How long delivery goes on after the last sender is gone.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for one publish ack (or a stream request).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a publish may wait to enter the client's queue.
const PUBLISH_STALL: Duration = Duration::from_millis(100);
/// Longest one round of publishing keeps the loop from taking records:
/// the inputs behind this output must never wait long (a SocketHandler
/// drops a record whose send waits 1 s).
const PUBLISH_SLICE: Duration = Duration::from_millis(20);
/// How often a waiting output looks at the connection again.
const TICK: Duration = Duration::from_millis(50);

/// Start a nats output thread; with it, the record fields its subject
/// reads.
pub fn start(
    name: &str,
    config: &NatsOutputConfig,
    rx: mpsc::Receiver<OutputMsg>,
    stats: Arc<OutputStats>,
) -> Result<(JoinHandle<()>, Keep), OutputError> {
    let spool = match &config.spool_dir {
        // Spooled entries carry their own encoder byte (see `Entry::blob`);
        // the spool's label is always the same.
        Some(dir) => Some(
            Spool::open(dir, Encoder::Pickle, config.buffer_records).map_err(|source| {
                OutputError::Open {
                    name: name.to_string(),
                    path: dir.display().to_string(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let template = PathTemplate::new(&config.subject, false).map_err(|e| OutputError::Open {
        name: name.to_string(),
        path: config.subject.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
    })?;
    let subject_reads = template.reads();
    let nats_stats = client::register("output", name);
    let name_owned = name.to_string();
    let config = config.clone();
    spawn_runtime_thread(name, "nats", move || {
        let out = Publisher {
            what: format!("output {name_owned:?}"),
            name: name_owned,
            instance: format!("{:016x}", crate::output::forward::conn::random_u64()),
            next_seq: 1,
            config,
            stats,
            nats: nats_stats,
            template,
            subject: String::new(),
            buf: Vec::new(),
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            next_token: 0,
            acks: None,
            ack_prefix: String::new(),
            client: None,
            js: None,
            stream_ready: false,
            lookup: None,
            attempt: 0,
            next_try: Instant::now(),
            spool,
            dropped: 0,
            failing: false,
            entered: 0,
            held: 0,
            open: None,
            stored: 0,
            receipts: VecDeque::new(),
        };
        out.run(rx)
    })
    .map(|thread| (thread, subject_reads))
}

struct Publisher {
    name: String,
    /// `output "name"`, for messages.
    what: String,
    instance: String,
    next_seq: u64,
    config: NatsOutputConfig,
    stats: Arc<OutputStats>,
    nats: Arc<NatsStats>,
    template: PathTemplate,
    subject: String,
    buf: Vec<u8>,
    /// Not yet published (or to be re-sent), in order.
    queue: VecDeque<Entry>,
    /// Published, awaiting acks, in order of their tokens.
    inflight: VecDeque<InFlight>,
    /// The token of the next publish.
    next_token: u64,
    /// The subscription the acks arrive on (`<ack_prefix>.*`).
    acks: Option<async_nats::Subscriber>,
    ack_prefix: String,
    client: Option<async_nats::Client>,
    js: Option<jetstream::Context>,
    stream_ready: bool,
    /// The stream's look-up (or creation), running beside the loop so that
    /// records keep being taken while the cluster elects a leader: `Ok(true)`
    /// when it created the stream.
    lookup: Option<tokio::task::JoinHandle<Result<bool, String>>>,
    /// Set-up or re-send attempts since the last success (backoff).
    attempt: u32,
    next_try: Instant,
    spool: Option<Spool>,
    dropped: u64,
    /// Whether the last publish failed (logged once per episode).
    failing: bool,
    /// This run's records entered and stored, in entry order (a spooled
    /// message of an earlier run, told by its id, counts in neither);
    /// receipts wait for `stored` to reach the `entered` count after
    /// their batch.
    entered: u64,
    /// Records in memory: the queue, the window and `open`.
    held: usize,
    /// The packed message being filled (`batch_bytes`), not yet queued.
    open: Option<Open>,
    stored: u64,
    receipts: VecDeque<(u64, crate::output::Receipt)>,
}

/// A packed message being filled.
struct Open {
    subject: String,
    id: String,
    records: u32,
    payload: Vec<u8>,
}

impl Publisher {
    fn buffered(&self) -> usize {
        self.held
    }

    /// Records of `e` this run entered (see `entered`).
    fn ours(&self, e: &Entry) -> u64 {
        let mine =
            e.id.strip_prefix(self.instance.as_str())
                .is_some_and(|rest| rest.starts_with('-'));
        if mine {
            e.records()
        } else {
            0
        }
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty()
            || self.open.is_some()
            || !self.inflight.is_empty()
            || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn can_accept(&self) -> bool {
        self.spool.is_some()
            || self.config.when_full == WhenFull::DropNewest
            || self.buffered() < self.config.buffer_records
    }

    fn connected(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<OutputMsg>) {
        let mut open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            self.refill_from_spool();
            if self.client.is_none() && Instant::now() >= self.next_try {
                self.connect().await;
            }
            if !self.stream_ready
                && self.lookup.is_none()
                && self.connected()
                && Instant::now() >= self.next_try
            {
                self.start_lookup();
            }
            self.publish_some().await;
            self.report_depth();
            if !open {
                if !self.has_work() {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    self.give_up();
                    break;
                }
            }
            let accept = open && self.can_accept();
            // Look for the stream as soon as connected, records or not.
            let waiting = (self.has_work() && self.inflight.is_empty()) || !self.stream_ready;
            let wake = if waiting {
                Some(Instant::now() + TICK)
            } else {
                deadline
            };
            // The oldest publish's ack is due by then.
            let ack_due = self.inflight.front().map(|f| f.sent + ACK_TIMEOUT);
            let wake = match (wake, ack_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let acking = self.acks.is_some() && !self.inflight.is_empty();
            tokio::select! {
                msg = rx.recv(), if accept => match msg {
                    Some(msg) => {
                        self.take(msg);
                        while self.can_accept() {
                            match rx.try_recv() {
                                Ok(msg) => self.take(msg),
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    open = false;
                                    deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                                    break;
                                }
                            }
                        }
                    }
                    None => {
                        open = false;
                        deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                    }
                },
                found = join_lookup(&mut self.lookup), if self.lookup.is_some() => {
                    self.lookup = None;
                    self.looked_up(found);
                }
                Some(ack) = next_ack(&mut self.acks), if acking => {
                    self.acked(ack);
                    // Take every ack already in.
                    while let Some(Some(ack)) = next_ack(&mut self.acks).now_or_never() {
                        self.acked(ack);
                    }
                }
                _ = sleep_until(wake) => {
                    if self.inflight.front().is_some_and(|f| f.sent.elapsed() >= ACK_TIMEOUT) {
                        self.failed("no acknowledgement within 5 s");
                    }
                }
            }
        }
        self.report_depth();
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.flush()).await;
        }
        if self.dropped > 0 {
            tracing::warn!(output = %self.name, dropped = self.dropped, "Records dropped while the buffer was full (when_full: drop_newest).");
        }
    }

    fn report_depth(&self) {
        let on_disk = self.spool.as_ref().map_or(0, Spool::on_disk);
        let n = (self.buffered() + on_disk) as u64;
        self.stats.buffered.store(n, Ordering::Relaxed);
        self.nats.buffered.store(n, Ordering::Relaxed);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
