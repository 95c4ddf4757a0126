//! The `forward` output: sends records to another listener — a cookbook
//! listener, another logrelay, or Fluentd / Fluent Bit.
//!
//! It runs on its own thread, as every output, with a small current-thread
//! tokio runtime for connecting, backing off and reading confirmations.
//! Records are encoded once, as they arrive, into per-record payloads
//! (`codec::encode`), kept in order in a bounded buffer of
//! `buffer_records`, and written whenever the peer is connected:
//!
//! - reconnects with exponential backoff, 100 ms doubling to 5 s;
//! - `when_full: block` stops taking batches from the output's channel, so
//!   the pipeline's senders wait (backpressure, never a silent drop);
//!   `drop_newest` drops the newest records and counts them;
//! - `ack: true` speaks logrelay's acknowledged protocol (see
//!   `input/ack.rs` for the wire format): batches stay buffered until
//!   the peer confirms them and are re-sent after a reconnect;
//! - `encoder: fluent` speaks Fluentd's forward protocol (Forward mode), with
//!   its `chunk` / `ack` option when `require_ack` is set.
//!
//! Without acknowledgements, records the kernel accepted before the peer
//! died are lost (TCP cannot tell which): docs/configuration.md
//! ("Forwarding") says so.
//!
//! At shutdown (every sender gone) it keeps delivering for up to
//! [`SHUTDOWN_GRACE`]; what is still undelivered then goes to the spool
//! (`spool_dir`) or is reported lost.

pub(crate) mod conn;
pub(crate) mod spool;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{spawn_runtime_thread, OutputError, OutputMsg, OutputStats, Receipt};
use crate::codec::encode;
use crate::config::{Encoder, ForwardOutputConfig, WhenFull};
use conn::{Conn, Event, Proto};
use spool::Spool;

/// First reconnect delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long delivery goes on after the last sender is gone.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Records per write (plain) or per batch (acknowledged, fluent).
const BATCH_RECORDS: usize = 1000;
/// Bytes per write or batch, roughly.
const BATCH_BYTES: usize = 1 << 20;
/// Acknowledged batches in flight before waiting for confirmations.
const WINDOW: usize = 8;

/// Start a forward output thread.
pub fn start(
    name: &str,
    config: &ForwardOutputConfig,
    rx: mpsc::Receiver<OutputMsg>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
    let spool = match &config.spool_dir {
        Some(dir) => Some(
            Spool::open(dir, config.encoder, config.buffer_records).map_err(|source| {
                OutputError::Open {
                    name: name.to_string(),
                    path: dir.display().to_string(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    // Metrics export the buffer gauge for forward outputs only.
    stats.is_forward.store(true, Ordering::Relaxed);
    let name_owned = name.to_string();
    let config = config.clone();
    spawn_runtime_thread(name, "forward", move || {
        Forwarder::new(name_owned, config, stats, spool).run(rx)
    })
}

/// What woke the output loop.
enum Woke {
    Msg(Option<OutputMsg>),
    Event(Option<Event>),
    Timer,
}

/// One batch sent and waiting for its confirmation.
struct Inflight {
    /// Its sequence (acknowledged mode) or chunk number (fluent).
    seq: u64,
    payloads: Vec<Bytes>,
}

struct Forwarder {
    name: String,
    config: ForwardOutputConfig,
    stats: Arc<OutputStats>,
    proto: Proto,
    /// Payloads not yet sent (or sent and lost with a connection), in order.
    queue: VecDeque<Bytes>,
    /// Sent, not yet confirmed (acknowledged and fluent require_ack).
    inflight: VecDeque<Inflight>,
    inflight_records: usize,
    next_seq: u64,
    conn: Option<Conn>,
    backoff: Duration,
    next_attempt: Instant,
    spool: Option<Spool>,
    /// Records dropped by `drop_newest`.
    dropped: u64,
    /// Receipts of batches (see `output::receipt`), each with the count
    /// of records taken into memory once its batch was: it is written
    /// when `delivered` reaches that count. Records leave memory in the
    /// order they entered it (a plain write, a confirmation, both in
    /// order), so the counts say which batches are wholly delivered;
    /// records that went to the spool are on disk already.
    receipts: VecDeque<(u64, Receipt)>,
    /// Records ever put in `queue` (taken, refilled from the spool).
    entered: u64,
    /// Records ever delivered from memory (written without `ack`,
    /// confirmed with it).
    delivered: u64,
}

impl Forwarder {
    fn new(
        name: String,
        config: ForwardOutputConfig,
        stats: Arc<OutputStats>,
        spool: Option<Spool>,
    ) -> Forwarder {
        let proto = Proto::of(&config, &name);
        Forwarder {
            name,
            config,
            stats,
            proto,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            inflight_records: 0,
            next_seq: 1,
            conn: None,
            backoff: BACKOFF_START,
            next_attempt: Instant::now(),
            spool,
            dropped: 0,
            receipts: VecDeque::new(),
            entered: 0,
            delivered: 0,
        }
    }

    /// `n` records left memory delivered: give back the receipts of the
    /// batches now wholly delivered.
    fn delivered(&mut self, n: usize) {
        self.delivered += n as u64;
        while self
            .receipts
            .front()
            .is_some_and(|(upto, _)| *upto <= self.delivered)
        {
            if let Some((_, r)) = self.receipts.pop_front() {
                r.written();
            }
        }
    }

    /// Put a payload in memory, last.
    fn enter(&mut self, payload: Bytes) {
        self.queue.push_back(payload);
        self.entered += 1;
    }

    fn buffered(&self) -> usize {
        self.queue.len() + self.inflight_records
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty()
            || !self.inflight.is_empty()
            || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Whether to take another batch from the channel.
    fn can_accept(&self) -> bool {
        self.spool.is_some()
            || self.config.when_full == WhenFull::DropNewest
            || self.buffered() < self.config.buffer_records
    }

    async fn run(mut self, mut rx: mpsc::Receiver<OutputMsg>) {
        let mut open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            self.refill_from_spool();
            if self.conn.is_none() && self.has_work() && Instant::now() >= self.next_attempt {
                self.connect().await;
            }
            let mut progressed = false;
            if self.conn.is_some() {
                progressed = self.send_some().await;
            }
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
            if progressed {
                // More to write: take what is already queued, then go on.
                while open && self.can_accept() {
                    match rx.try_recv() {
                        Ok(msg) => self.take(msg),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                        }
                    }
                }
                self.poll_events();
                tokio::task::yield_now().await;
                continue;
            }
            let wake = match (self.conn.is_none() && self.has_work(), deadline) {
                (true, Some(d)) => Some(self.next_attempt.min(d)),
                (true, None) => Some(self.next_attempt),
                (false, d) => d,
            };
            let accept = open && self.can_accept();
            let events = self.conn.as_mut().map(|c| &mut c.events);
            let woke = tokio::select! {
                msg = rx.recv(), if accept => Woke::Msg(msg),
                ev = recv_event(events) => Woke::Event(ev),
                _ = sleep_until(wake) => Woke::Timer,
            };
            match woke {
                Woke::Msg(Some(msg)) => self.take(msg),
                Woke::Msg(None) => {
                    open = false;
                    deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                Woke::Event(ev) => self.event(ev),
                Woke::Timer => {}
            }
        }
        self.report_depth();
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
        if self.dropped > 0 {
            tracing::warn!(output = %self.name, dropped = self.dropped, "Records dropped while the buffer was full (when_full: drop_newest).");
        }
    }

    /// Encode and buffer a batch from the pipeline.
    fn take(&mut self, msg: OutputMsg) {
        let (batch, receipt) = match msg {
            OutputMsg::Batch(batch, _budget, receipt) => (batch, receipt),
            // Taken in order: everything before it is in the buffer.
            OutputMsg::Flush(done) => {
                let _ = done.send(());
                return;
            }
            _ => return, // Reopen: nothing to reopen.
        };
        let mut buf = Vec::new();
        for record in &batch {
            buf.clear();
            encode::payload(self.config.encoder, record, &mut buf);
            let payload = Bytes::copy_from_slice(&buf);
            let full = self.buffered() >= self.config.buffer_records;
            if let Some(spool) = &mut self.spool {
                // Once anything is on disk, everything newer goes there too,
                // so order holds.
                if !spool.is_empty() || full {
                    if let Err(e) = spool.push(&payload) {
                        tracing::error!(output = %self.name, error = %e, "Spool write failed; keeping the record in memory.");
                        self.enter(payload);
                    }
                    continue;
                }
            } else if self.config.when_full == WhenFull::DropNewest && full {
                // Dropped by the policy the user chose: done with, counted.
                self.dropped += 1;
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.enter(payload);
        }
        if let Some(r) = receipt {
            self.receipts.push_back((self.entered, r));
            self.delivered(0);
        }
    }

    /// Move spooled records into memory while there is room.
    fn refill_from_spool(&mut self) {
        let Some(spool) = &mut self.spool else { return };
        while !spool.is_empty()
            && self.queue.len() + self.inflight_records < self.config.buffer_records
        {
            match spool.pop_segment(self.config.encoder) {
                Ok(payloads) => {
                    self.entered += payloads.len() as u64;
                    self.queue.extend(payloads);
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Spool read failed; segment skipped.");
                }
            }
        }
    }

    async fn connect(&mut self) {
        match Conn::open(&self.config, &self.proto).await {
            Ok((conn, last)) => {
                tracing::info!(output = %self.name, target = ?self.config.target, "Connected.");
                self.backoff = BACKOFF_START;
                self.conn = Some(conn);
                // Acknowledged mode: the receiver already has every batch up
                // to `last`; the rest is re-sent in order, same sequences.
                self.confirm(last);
                for b in &self.inflight {
                    if let Some(c) = &mut self.conn {
                        if let Err(e) = c.send_batch(&self.proto, b.seq, &b.payloads).await {
                            self.lost_connection(&e.to_string());
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                if self.backoff == BACKOFF_START {
                    tracing::warn!(output = %self.name, target = ?self.config.target, error = %e, "Cannot connect; retrying with backoff.");
                }
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Write the next chunk. Returns whether something was written.
    async fn send_some(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let Some(conn) = &mut self.conn else {
            return false;
        };
        if self.proto.confirms() && self.inflight.len() >= WINDOW {
            return false;
        }
        let mut n = 0;
        let mut bytes = 0;
        while n < self.queue.len() && n < BATCH_RECORDS && bytes < BATCH_BYTES {
            bytes += self.queue[n].len();
            n += 1;
        }
        let payloads: Vec<Bytes> = self.queue.range(..n).cloned().collect();
        let seq = self.next_seq;
        let result = if self.proto.batched() {
            conn.send_batch(&self.proto, seq, &payloads).await
        } else {
            conn.send_frames(&payloads).await
        };
        match result {
            Ok(()) => {
                self.queue.drain(..n);
                if self.proto.confirms() {
                    self.next_seq += 1;
                    self.inflight_records += payloads.len();
                    self.inflight.push_back(Inflight { seq, payloads });
                } else {
                    if self.proto.batched() {
                        self.next_seq += 1;
                    }
                    super::count(&self.stats, n, bytes);
                    self.delivered(n);
                }
                true
            }
            Err(e) => {
                // Not confirmed written: it stays queued and is re-sent.
                self.lost_connection(&e.to_string());
                false
            }
        }
    }

    fn poll_events(&mut self) {
        while let Some(ev) = self.conn.as_mut().and_then(|c| c.events.try_recv().ok()) {
            self.event(Some(ev));
        }
    }

    fn event(&mut self, ev: Option<Event>) {
        match ev {
            Some(Event::Confirmed(seq)) => self.confirm(seq),
            // Every confirmation the receiver sent came before its goodbye
            // (and was handled): what is still in flight is re-sent on the
            // next connection.
            Some(Event::Goodbye) => self.lost_connection("the peer is closing"),
            Some(Event::Closed(why)) | Some(Event::Error(why)) => self.lost_connection(&why),
            None => self.lost_connection("connection reader ended"),
        }
    }

    /// Every in-flight batch up to `seq` is confirmed.
    fn confirm(&mut self, seq: u64) {
        while self.inflight.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = self.inflight.pop_front() {
                let bytes = b.payloads.iter().map(Bytes::len).sum();
                self.inflight_records -= b.payloads.len();
                super::count(&self.stats, b.payloads.len(), bytes);
                self.delivered(b.payloads.len());
            }
        }
    }

    fn lost_connection(&mut self, why: &str) {
        if let Some(c) = self.conn.take() {
            tracing::warn!(output = %self.name, reason = %why, unconfirmed = self.inflight_records, "Connection lost; reconnecting.");
            c.abort();
        }
        if !self.proto.confirms() {
            return;
        }
        // Fluent without sequences the peer remembers: re-send as new chunks.
        if let Proto::Fluent { .. } = self.proto {
            while let Some(b) = self.inflight.pop_back() {
                for p in b.payloads.into_iter().rev() {
                    self.queue.push_front(p);
                }
            }
            self.inflight_records = 0;
        }
        self.next_attempt = Instant::now() + BACKOFF_START;
    }

    /// Shutdown deadline passed: spool what is left, or report it lost.
    fn give_up(&mut self) {
        let mut left: Vec<Bytes> = Vec::with_capacity(self.buffered());
        for b in self.inflight.drain(..) {
            left.extend(b.payloads);
        }
        left.extend(self.queue.drain(..));
        self.inflight_records = 0;
        if let Some(spool) = &mut self.spool {
            match spool.prepend(&left) {
                Ok(()) => {
                    tracing::info!(output = %self.name, records = left.len() + spool.on_disk(), "Undelivered records kept in the spool for the next start.");
                    // On disk: the next start delivers them.
                    self.receipts.drain(..).for_each(|(_, r)| r.written());
                    return;
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Cannot spool undelivered records.");
                }
            }
        }
        if !left.is_empty() {
            tracing::error!(output = %self.name, lost = left.len(), target = ?self.config.target, "Shutting down with undelivered records: the peer did not take them in time.");
        }
    }

    fn report_depth(&self) {
        let on_disk = self.spool.as_ref().map_or(0, Spool::on_disk);
        self.stats
            .buffered
            .store((self.buffered() + on_disk) as u64, Ordering::Relaxed);
    }
}

async fn recv_event(events: Option<&mut mpsc::Receiver<Event>>) -> Option<Event> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The handshake byte for an encoder in acknowledged mode.
fn ack_encoder_byte(encoder: Encoder) -> u8 {
    use crate::codec::DecoderKind;
    crate::codec::ack::encoder_byte(match encoder {
        Encoder::Json => DecoderKind::Json,
        Encoder::Msgpack => DecoderKind::Msgpack,
        Encoder::Pickle | Encoder::Fluent => DecoderKind::Pickle,
    })
}
