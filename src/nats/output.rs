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

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::stream::StreamExt;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::NatsStats;
use crate::codec::{encode, DecoderKind};
use crate::config::{Encoder, NatsOutputConfig, WhenFull};
use crate::format::path::PathTemplate;
use crate::output::forward::spool::Spool;
use crate::output::{OutputError, OutputMsg, OutputStats};

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

/// Start a nats output thread.
pub fn start(
    name: &str,
    config: &NatsOutputConfig,
    rx: mpsc::Receiver<OutputMsg>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
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
    let nats_stats = super::register("output", name);
    let name_owned = name.to_string();
    let config = config.clone();
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(output = %name_owned, error = %e, "Cannot start the nats runtime.");
                    return;
                }
            };
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
            rt.block_on(out.run(rx));
        })
        .map_err(|source| OutputError::Open {
            name: name.to_string(),
            path: "(thread)".to_string(),
            source,
        })
}

/// One message, ready to publish: one record, or several packed.
#[derive(Clone, Debug)]
struct Entry {
    subject: String,
    id: String,
    encoder: Encoder,
    /// `Some(n)`: `payload` is `n` framed records (`batch_bytes`).
    packed: Option<u32>,
    payload: Bytes,
}

/// Set on a spooled entry's encoder byte when it is packed; its record
/// count follows the id.
const PACKED: u8 = 0x80;

impl Entry {
    fn records(&self) -> u64 {
        self.packed.map_or(1, u64::from)
    }

    /// The spool form: encoder byte, subject, id, [count,] payload.
    fn blob(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(9 + self.subject.len() + self.id.len() + self.payload.len());
        let flag = if self.packed.is_some() { PACKED } else { 0 };
        b.push(encoder_byte(self.encoder) | flag);
        for s in [&self.subject, &self.id] {
            let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        }
        if let Some(n) = self.packed {
            b.extend_from_slice(&n.to_be_bytes());
        }
        b.extend_from_slice(&self.payload);
        b
    }

    fn from_blob(b: Bytes) -> Option<Entry> {
        let first = *b.first()?;
        let encoder = match first & !PACKED {
            0 => Encoder::Pickle,
            1 => Encoder::Json,
            2 => Encoder::Msgpack,
            _ => return None,
        };
        let mut pos = 1;
        let mut take = || -> Option<String> {
            let len = usize::from(u16::from_be_bytes([*b.get(pos)?, *b.get(pos + 1)?]));
            let s = std::str::from_utf8(b.get(pos + 2..pos + 2 + len)?).ok()?;
            pos += 2 + len;
            Some(s.to_string())
        };
        let subject = take()?;
        let id = take()?;
        let packed = if first & PACKED != 0 {
            let n = u32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
            pos += 4;
            Some(n)
        } else {
            None
        };
        Some(Entry {
            subject,
            id,
            encoder,
            packed,
            payload: b.slice(pos..),
        })
    }

    /// Re-encode a spooled entry for another encoder (the config changed).
    /// A packed one keeps its encoder: its header names it, and logrelay's
    /// input reads any.
    fn reencode(mut self, to: Encoder) -> Option<Entry> {
        if self.encoder == to || self.packed.is_some() {
            return Some(self);
        }
        let decoder = match self.encoder {
            Encoder::Json => DecoderKind::Json,
            Encoder::Msgpack => DecoderKind::Msgpack,
            _ => DecoderKind::Pickle,
        };
        let record = decoder.decode(self.payload.clone()).ok()?;
        let mut buf = Vec::new();
        encode::payload(to, &record, &mut buf);
        self.payload = Bytes::from(buf);
        self.encoder = to;
        Some(self)
    }
}

fn encoder_byte(e: Encoder) -> u8 {
    match e {
        Encoder::Json => 1,
        Encoder::Msgpack => 2,
        _ => 0,
    }
}

/// Make a rendered subject valid: no whitespace, `*`, `>` or NUL (a value
/// put them there), and no empty token (a value with `..` or an edge dot).
pub(crate) fn clean_subject(s: &mut String) {
    let bad = |c: char| c.is_whitespace() || c == '*' || c == '>' || c == '\0';
    let needs = s.contains(bad)
        || s.is_empty()
        || s.starts_with('.')
        || s.ends_with('.')
        || s.contains("..");
    if !needs {
        return;
    }
    let cleaned: String = s
        .split('.')
        .map(|t| {
            let t: String = t.chars().map(|c| if bad(c) { '_' } else { c }).collect();
            if t.is_empty() {
                "_".to_string()
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    *s = cleaned;
}

/// A published message awaiting its ack.
struct InFlight {
    /// The last token of its reply subject; consecutive in the window.
    token: u64,
    /// When it was handed to the client.
    sent: Instant,
    /// Acknowledged (out of order: an earlier one is not yet).
    acked: bool,
    entry: Entry,
}

/// What the stream answers a publish (its `PublishAck`, or an API error).
#[derive(serde::Deserialize)]
struct AckReply {
    #[serde(default)]
    duplicate: bool,
    error: Option<AckError>,
}

#[derive(serde::Deserialize)]
struct AckError {
    #[serde(default)]
    description: String,
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

    /// Close the packed message being filled and queue it.
    fn seal(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.held -= open.records as usize;
        self.enqueue(Entry {
            subject: open.subject,
            id: open.id,
            encoder: self.config.encoder,
            packed: Some(open.records),
            payload: Bytes::from(open.payload),
        })
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

    /// Encode and buffer a batch from the pipeline.
    fn take(&mut self, msg: OutputMsg) {
        let OutputMsg::Records(batch, _budget, receipt) = msg else {
            return; // Reopen: nothing to reopen.
        };
        let mut lost = 0;
        let pack = self.config.batch_bytes;
        for record in &batch {
            if self.spool.is_none()
                && self.config.when_full == WhenFull::DropNewest
                && self.held >= self.config.buffer_records
            {
                self.dropped += 1;
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                lost += 1;
                continue;
            }
            if pack == 0 || self.subject.is_empty() {
                // Packed, the subject is fixed: rendered once.
                self.template.render(record, &mut self.subject);
                clean_subject(&mut self.subject);
            }
            self.buf.clear();
            encode::payload(self.config.encoder, record, &mut self.buf);
            let id = self.next_seq;
            self.next_seq += 1;
            if pack == 0 {
                self.enqueue(Entry {
                    subject: self.subject.clone(),
                    id: format!("{}-{id}", self.instance),
                    encoder: self.config.encoder,
                    packed: None,
                    payload: Bytes::copy_from_slice(&self.buf),
                });
                continue;
            }
            // The subject is fixed (config checks it), so size alone
            // decides.
            let fits = self
                .open
                .as_ref()
                .is_some_and(|o| o.payload.len() + 4 + self.buf.len() <= pack);
            if !fits {
                self.seal();
            }
            let open = self.open.get_or_insert_with(|| Open {
                subject: self.subject.clone(),
                id: format!("{}-{id}", self.instance),
                records: 0,
                // Under load messages fill: allocate once, no regrowth.
                payload: Vec::with_capacity(pack),
            });
            // Frames no larger than 16 MiB reach an output.
            let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
            open.payload.extend_from_slice(&len.to_be_bytes());
            open.payload.extend_from_slice(&self.buf);
            open.records += 1;
            self.held += 1;
        }
        // Dropped records never enter (nor get stored). A batch with one is
        // never all written: its receipt goes now, unwritten (the
        // acknowledged sender re-sends it).
        self.entered += (batch.len() - lost) as u64;
        if let (Some(r), 0) = (receipt, lost) {
            self.receipts.push_back((self.entered, r));
        }
    }

    /// Queue a message, or spool it: once anything is on disk, everything
    /// newer goes there too, so order holds.
    fn enqueue(&mut self, entry: Entry) {
        if let Some(spool) = &mut self.spool {
            if !spool.is_empty() || self.held >= self.config.buffer_records {
                match spool.push(&entry.blob()) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(output = %self.name, error = %e, "Spool write failed; keeping the record in memory.");
                    }
                }
            }
        }
        self.held += entry.records() as usize;
        self.queue.push_back(entry);
    }

    /// `n` more records are stored in the stream: give back the receipts
    /// (see `output::receipt`) of the batches now all stored, counting
    /// records in the order they entered, as the forward output does.
    fn stored_receipts(&mut self, n: usize) {
        self.stored += n as u64;
        while self
            .receipts
            .front()
            .is_some_and(|(upto, _)| *upto <= self.stored)
        {
            if let Some((_, r)) = self.receipts.pop_front() {
                r.written();
            }
        }
    }

    /// Move spooled records into memory while there is room.
    fn refill_from_spool(&mut self) {
        let Some(spool) = &mut self.spool else { return };
        while !spool.is_empty() && self.held < self.config.buffer_records {
            match spool.pop_segment(Encoder::Pickle) {
                Ok(blobs) => {
                    for b in blobs {
                        match Entry::from_blob(b).and_then(|e| e.reencode(self.config.encoder)) {
                            Some(e) => {
                                self.held += e.records() as usize;
                                self.queue.push_back(e);
                            }
                            None => {
                                tracing::error!(output = %self.name, "A spooled record does not decode; dropped.")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Spool read failed; segment skipped.");
                }
            }
        }
    }

    fn retry_later(&mut self) {
        self.next_try = Instant::now() + super::backoff(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
    }

    async fn connect(&mut self) {
        match super::connect(&self.what, &self.config.connect).await {
            Ok(client) => {
                // The stream's API requests (look up, create); publishes
                // go through the client with our own ack subscription.
                let js = jetstream::ContextBuilder::new()
                    .timeout(ACK_TIMEOUT)
                    .build(client.clone());
                let prefix = client.new_inbox();
                match client.subscribe(format!("{prefix}.*")).await {
                    Ok(sub) => {
                        self.acks = Some(sub);
                        self.ack_prefix = prefix;
                    }
                    Err(e) => {
                        tracing::error!("{}: cannot subscribe for acks: {e}; retrying.", self.what);
                        self.retry_later();
                        return;
                    }
                }
                self.client = Some(client);
                self.js = Some(js);
                self.attempt = 0;
            }
            Err(e) => {
                if self.attempt == 0 {
                    tracing::error!("{e}; retrying with backoff.");
                }
                self.retry_later();
            }
        }
    }

    /// Look the stream up, or create it if it does not exist, on a task
    /// of its own (a request may wait `ACK_TIMEOUT` during an election).
    fn start_lookup(&mut self) {
        let Some(js) = self.js.clone() else { return };
        let c = &self.config;
        let name = c.stream.clone();
        let config = jetstream::stream::Config {
            name: c.stream.clone(),
            subjects: c.stream_subjects.clone(),
            storage: jetstream::stream::StorageType::File,
            num_replicas: c.replicas,
            ..Default::default()
        };
        self.lookup = Some(tokio::spawn(async move {
            match tokio::time::timeout(ACK_TIMEOUT, js.get_stream(&name)).await {
                Ok(Ok(_)) => Ok(false),
                Ok(Err(e)) if is_not_found(&e) => {
                    match tokio::time::timeout(ACK_TIMEOUT, js.create_stream(config)).await {
                        Ok(Ok(_)) => Ok(true),
                        Ok(Err(e)) => Err(format!("cannot create stream {name}: {e}")),
                        Err(_) => Err(format!("creating stream {name} timed out")),
                    }
                }
                Ok(Err(e)) => Err(format!("cannot look up stream {name}: {e}")),
                Err(_) => Err(format!("looking up stream {name} timed out")),
            }
        }));
    }

    fn looked_up(&mut self, result: Result<bool, String>) {
        let c = &self.config;
        match result {
            Ok(created) => {
                if created {
                    tracing::info!(output = %self.name, stream = %c.stream, subjects = ?c.stream_subjects, replicas = c.replicas, "Created the JetStream stream.");
                } else {
                    tracing::info!(output = %self.name, stream = %c.stream, "Publishing to the existing JetStream stream.");
                }
                self.stream_ready = true;
                self.attempt = 0;
            }
            Err(why) => {
                if self.attempt.is_multiple_of(20) {
                    tracing::error!("{}: {why}; retrying.", self.what);
                }
                self.retry_later();
            }
        }
    }

    /// Publish from the queue while the window has room.
    async fn publish_some(&mut self) {
        if !self.stream_ready || !self.connected() || Instant::now() < self.next_try {
            return;
        }
        let Some(client) = self.client.clone() else {
            return;
        };
        let now = Instant::now();
        if self.queue.is_empty() && self.inflight.is_empty() {
            // Nothing in flight: the packed message goes as it is, now.
            // Otherwise it fills until full or until the acks are in (as
            // Nagle's algorithm does): under load, messages are full.
            self.seal();
        }
        while self.inflight.len() < self.config.max_in_flight
            && now.elapsed() < PUBLISH_SLICE
            && self.connected()
        {
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, entry.id.as_str());
            headers.insert(super::ENCODER_HEADER, entry.encoder.as_str());
            if let Some(n) = entry.packed {
                headers.insert(super::BATCH_HEADER, n.to_string().as_str());
            }
            let token = self.next_token;
            let reply = format!("{}.{token}", self.ack_prefix);
            // The client's command queue stops draining while it
            // reconnects; never wait on it long, or the inputs behind this
            // output stall (and a SocketHandler gives up after 1 s).
            let handed = tokio::time::timeout(
                PUBLISH_STALL,
                client.publish_with_reply_and_headers(
                    entry.subject.clone(),
                    reply,
                    headers,
                    entry.payload.clone(),
                ),
            )
            .await;
            match handed {
                Ok(Ok(())) => {
                    self.nats.published.fetch_add(1, Ordering::Relaxed);
                    self.next_token += 1;
                    self.inflight.push_back(InFlight {
                        token,
                        sent: now,
                        acked: false,
                        entry,
                    });
                }
                Ok(Err(e)) => {
                    self.queue.push_front(entry);
                    self.failed(&e.to_string());
                    return;
                }
                Err(_) => {
                    self.queue.push_front(entry);
                    self.failed("the client's queue did not take a publish in 100 ms");
                    return;
                }
            }
        }
    }

    /// An ack arrived: mark its publish, then retire the acknowledged
    /// ones at the front of the window.
    fn acked(&mut self, msg: async_nats::Message) {
        let Some(token) = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        let Some(first) = self.inflight.front().map(|f| f.token) else {
            return; // A late ack of a window already re-queued.
        };
        let Some(slot) = token
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.inflight.get_mut(i))
        else {
            return;
        };
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            // Deleted under us, or its subjects do not cover ours.
            self.stream_ready = false;
            self.failed("no stream takes this subject (no responders)");
            return;
        }
        match serde_json::from_slice::<AckReply>(&msg.payload) {
            Ok(AckReply {
                error: None,
                duplicate,
            }) => {
                slot.acked = true;
                if duplicate {
                    self.nats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(AckReply { error: Some(e), .. }) => {
                self.failed(&e.description);
                return;
            }
            Err(e) => {
                self.failed(&format!("unreadable ack: {e}"));
                return;
            }
        }
        let mut done = Stored::default();
        while self.inflight.front().is_some_and(|f| f.acked) {
            if let Some(f) = self.inflight.pop_front() {
                done.add(self, &f.entry);
            }
        }
        if done.messages > 0 {
            self.retired(done);
            if self.failing {
                tracing::info!(output = %self.name, "Publishing again.");
                self.failing = false;
            }
            self.attempt = 0;
        }
    }

    /// Messages are stored in the stream.
    fn retired(&mut self, done: Stored) {
        self.held -= done.records as usize;
        self.stored_receipts(done.ours as usize);
        self.nats
            .acknowledged
            .fetch_add(done.messages, Ordering::Relaxed);
        crate::output::count(&self.stats, done.records as usize, done.bytes);
    }

    /// A publish failed: everything in flight goes back in front of the
    /// queue, in order, to be re-sent (with the same ids) after a pause.
    fn failed(&mut self, why: &str) {
        if !self.failing {
            tracing::warn!(output = %self.name, reason = %why, unconfirmed = self.inflight.len(), "Publish failed; re-sending after a pause.");
            self.failing = true;
        }
        let mut stored = Stored::default();
        while let Some(f) = self.inflight.pop_back() {
            if f.acked {
                // Acknowledged out of order: stored, not re-sent.
                stored.add(self, &f.entry);
            } else {
                self.queue.push_front(f.entry);
            }
        }
        if stored.messages > 0 {
            self.retired(stored);
        }
        self.retry_later();
    }

    /// Shutdown deadline passed: spool what is left, or report it lost.
    fn give_up(&mut self) {
        self.seal();
        let mut left: Vec<Entry> = self
            .inflight
            .drain(..)
            .filter(|f| !f.acked)
            .map(|f| f.entry)
            .collect();
        left.extend(self.queue.drain(..));
        if let Some(spool) = &mut self.spool {
            let blobs: Vec<Bytes> = left.iter().map(|e| Bytes::from(e.blob())).collect();
            match spool.prepend(&blobs) {
                Ok(()) => {
                    tracing::info!(output = %self.name, records = spool.on_disk(), "Unacknowledged records kept in the spool for the next start.");
                    return;
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Cannot spool unacknowledged records.");
                }
            }
        }
        if !left.is_empty() {
            let lost: u64 = left.iter().map(Entry::records).sum();
            tracing::error!(output = %self.name, lost, "Shutting down with records the stream did not acknowledge in time.");
        }
    }

    fn report_depth(&self) {
        let on_disk = self.spool.as_ref().map_or(0, Spool::on_disk);
        let n = (self.buffered() + on_disk) as u64;
        self.stats.buffered.store(n, Ordering::Relaxed);
        self.nats.buffered.store(n, Ordering::Relaxed);
    }
}

/// Messages the stream stored, counted as they retire.
#[derive(Default)]
struct Stored {
    messages: u64,
    records: u64,
    /// Records of this run's (see `Publisher::entered`).
    ours: u64,
    bytes: usize,
}

impl Stored {
    fn add(&mut self, p: &Publisher, e: &Entry) {
        self.messages += 1;
        self.records += e.records();
        self.ours += p.ours(e);
        self.bytes += e.payload.len();
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The look-up's result; never if none runs.
async fn join_lookup(
    lookup: &mut Option<tokio::task::JoinHandle<Result<bool, String>>>,
) -> Result<bool, String> {
    match lookup {
        Some(task) => match task.await {
            Ok(result) => result,
            Err(e) => Err(format!("the stream look-up failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

/// The next ack; never if there is no subscription.
async fn next_ack(acks: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match acks {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_valid() {
        let mut s = "logs.payments.api".to_string();
        clean_subject(&mut s);
        assert_eq!(s, "logs.payments.api");
        let mut s = "logs..a b.*.>.".to_string();
        clean_subject(&mut s);
        assert_eq!(s, "logs._.a_b._._._");
    }

    #[test]
    fn spool_blobs_round_trip() {
        let e = Entry {
            subject: "logs.x".into(),
            id: "abc-1".into(),
            encoder: Encoder::Json,
            packed: None,
            payload: Bytes::from_static(b"{\"msg\": \"m\"}"),
        };
        let back = Entry::from_blob(Bytes::from(e.blob())).unwrap();
        assert_eq!(back.subject, "logs.x");
        assert_eq!(back.id, "abc-1");
        assert_eq!(back.payload, e.payload);
        let msgpack = back.reencode(Encoder::Msgpack).unwrap();
        assert_eq!(msgpack.encoder, Encoder::Msgpack);
        let record = DecoderKind::Msgpack.decode(msgpack.payload).unwrap();
        assert!(record.fields.iter().any(|(k, _)| &**k == "msg"));
    }

    #[test]
    fn packed_spool_blobs_keep_their_count_and_encoder() {
        let e = Entry {
            subject: "logs.x".into(),
            id: "abc-7".into(),
            encoder: Encoder::Msgpack,
            packed: Some(3),
            payload: Bytes::from_static(b"\0\0\0\x01a\0\0\0\x01b\0\0\0\x01c"),
        };
        let back = Entry::from_blob(Bytes::from(e.blob())).unwrap();
        assert_eq!(back.packed, Some(3));
        assert_eq!(back.records(), 3);
        assert_eq!(back.payload, e.payload);
        let same = back.reencode(Encoder::Json).unwrap();
        assert_eq!(same.encoder, Encoder::Msgpack);
        assert!(Entry::from_blob(Bytes::from_static(b"\x81\0\x01x\0\x01y\0")).is_none());
    }
}
