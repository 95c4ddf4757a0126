//! The `nats` input: a durable pull consumer on a JetStream stream.
//!
//! Several logrelays naming the same `consumer` share it: the stream
//! hands each message to one of them. The consumer is created when
//! missing (explicit acks, delivering from the start of the stream) and
//! used as it is otherwise.
//!
//! Messages are pulled in batches of up to `batch`; each message is one
//! record, decoded as its `Logrelay-Encoder` header says (`json`,
//! `msgpack`, `pickle`; no header: JSON, what other publishers send most),
//! or, with a `Logrelay-Batch` header (a nats output's `batch_bytes`),
//! that many records, each framed by a 4-byte big-endian length.
//! A batch's records are dispatched to the routes as one batch with a
//! receipt (`output::receipt`), and its messages are acknowledged once
//! every output the records were routed to wrote them
//! ([`Dispatched::written`]); a batch an output could not write is handed
//! back (NAK) and redelivered.
//!
//! At-least-once, and the duplicate window: a logrelay killed between
//! writing records and acknowledging their messages leaves them
//! unacknowledged; the server hands them to another member of the
//! consumer after `ack_wait_ms` (30 s by default), and those records are
//! written twice: the batches written in the moment before the kill whose
//! acknowledgements had not reached the server. Nothing acknowledged is
//! unwritten, so a kill loses nothing. A graceful stop acknowledges what
//! its outputs wrote (waiting up to [`STOP_WAIT`]) and hands back what was
//! pulled and not dispatched (NAK), so it duplicates nothing.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::{FutureExt, StreamExt};

use crate::codec::DecoderKind;
use crate::config::NatsInputConfig;
use crate::input::{refresh, warn_limited, ConnContext};
use crate::output::nats::client::NatsStats;
use crate::pipeline::Pipeline;

/// At a graceful stop, how long to wait for the outputs to write what was
/// dispatched before leaving the rest unacknowledged (redelivered).
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often the consumer lag is read.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// How long a member waits without a message, while the consumer has
/// messages waiting, before it pulls afresh.
const IDLE_REPULL: Duration = Duration::from_secs(6);

/// Start consuming; returns what to show as "listening".
pub(crate) fn start(
    name: &str,
    config: &NatsInputConfig,
    ctx: ConnContext,
    tracker: &tokio_util::task::TaskTracker,
) -> Vec<String> {
    let stats = crate::output::nats::client::register("input", name);
    let what = format!("input {name:?}");
    let config = config.clone();
    let shown = format!(
        "nats {} stream {} consumer {}",
        config.connect.servers.join(","),
        config.stream,
        config.consumer
    );
    tracker.spawn(consume(what, config, ctx, stats));
    vec![shown]
}

/// Sleep, or return false if the input is stopped first.
async fn pause(ctx: &ConnContext, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = ctx.removed.cancelled() => false,
    }
}

async fn consume(
    what: String,
    config: NatsInputConfig,
    mut ctx: ConnContext,
    stats: Arc<NatsStats>,
) {
    let mut attempt = 0u32;
    let client = loop {
        match crate::output::nats::client::connect(&what, &config.connect).await {
            Ok(c) => break c,
            Err(e) => {
                if attempt == 0 {
                    tracing::error!("{e}; retrying with backoff.");
                }
                if !pause(&ctx, crate::output::nats::client::backoff(attempt)).await {
                    return;
                }
                attempt += 1;
            }
        }
    };
    let js = jetstream::new(client.clone());
    let mut pipeline = ctx.pipelines.borrow_and_update().clone();
    // Dispatched batches, oldest first, waiting to be written.
    let mut unacked: VecDeque<Dispatched> = VecDeque::new();
    'setup: loop {
        if ctx.removed.is_cancelled() {
            break;
        }
        let consumer = match setup(&js, &config).await {
            Ok(c) => {
                tracing::info!(stream = %config.stream, consumer = %config.consumer, "{what}: consuming.");
                attempt = 0;
                c
            }
            Err(why) => {
                if attempt.is_multiple_of(20) {
                    tracing::warn!("{what}: {why}; retrying.");
                }
                attempt += 1;
                if !pause(&ctx, crate::output::nats::client::backoff(attempt)).await {
                    break;
                }
                continue;
            }
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(config.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{what}: cannot pull messages: {e}; retrying.");
                if !pause(&ctx, crate::output::nats::client::backoff(attempt)).await {
                    break;
                }
                attempt += 1;
                continue;
            }
        };
        let mut lag = tokio::time::interval(LAG_EVERY);
        // When a message last arrived (or the pull started): a member that
        // started pulling while the consumer's leader was being elected can
        // sit idle with messages waiting; it then pulls afresh.
        let mut last_message = tokio::time::Instant::now();
        let mut consumer = consumer;
        let mut batch: Vec<jetstream::Message> = Vec::with_capacity(config.batch);
        loop {
            ack_written(&what, &stats, &mut unacked, false).await;
            let first = tokio::select! {
                m = messages.next() => m,
                _ = ctx.removed.cancelled() => {
                    // Hand back what was pulled and not handled: the
                    // server redelivers it now rather than after ack_wait.
                    while let Some(Some(Ok(m))) = messages.next().now_or_never() {
                        let _ = m.ack_with(AckKind::Nak(None)).await;
                    }
                    break 'setup;
                }
                _ = oldest_written(&mut unacked) => {
                    if let Some(done) = unacked.pop_front() {
                        ack(&what, &stats, done).await;
                    }
                    continue;
                }
                _ = lag.tick() => {
                    if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), consumer.info()).await {
                        stats.pending.store(info.num_pending, Ordering::Relaxed);
                        stats.ack_pending.store(info.num_ack_pending as u64, Ordering::Relaxed);
                        if info.num_pending > 0 && last_message.elapsed() >= IDLE_REPULL {
                            tracing::warn!(pending = info.num_pending, "{what}: no message for {} s while the consumer has some waiting; pulling afresh.", IDLE_REPULL.as_secs());
                            continue 'setup;
                        }
                    }
                    continue;
                }
            };
            match first {
                Some(Ok(m)) => {
                    last_message = tokio::time::Instant::now();
                    batch.push(m);
                }
                Some(Err(e)) => {
                    tracing::debug!("{what}: pull: {e}");
                    continue;
                }
                None => {
                    tracing::warn!("{what}: the message stream ended; pulling again.");
                    continue 'setup;
                }
            }
            while batch.len() < config.batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            let Some(stage) = refresh(&mut ctx, &mut pipeline) else {
                // Removed by a reload: hand the batch back.
                for m in batch.drain(..) {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                }
                break 'setup;
            };
            let done = handle(&stage, &ctx, &stats, &pipeline, &mut batch).await;
            unacked.push_back(Dispatched::new(std::mem::take(&mut batch), done));
        }
    }
    // Stopping: everything dispatched is with the outputs, which flush
    // before the process exits.
    ack_written(&what, &stats, &mut unacked, true).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}

/// Find the stream and get (or create) the durable consumer.
async fn setup(
    js: &jetstream::Context,
    config: &NatsInputConfig,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), js.get_stream(&config.stream))
        .await
        .map_err(|_| format!("looking up stream {} timed out", config.stream))?
        .map_err(|e| format!("cannot find stream {}: {e}", config.stream))?;
    let consumer_config = pull::Config {
        durable_name: Some(config.consumer.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_millis(config.ack_wait_ms),
        max_ack_pending: 100_000,
        ..Default::default()
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        stream.get_or_create_consumer(&config.consumer, consumer_config),
    )
    .await
    .map_err(|_| format!("getting consumer {} timed out", config.consumer))?
    .map_err(|e| format!("cannot get or create consumer {}: {e}", config.consumer))
}

/// Decode and dispatch one batch of messages.
async fn handle(
    stage: &crate::pipeline::InputStage,
    ctx: &ConnContext,
    stats: &NatsStats,
    pipeline: &Pipeline,
    batch: &mut [jetstream::Message],
) -> tokio::sync::oneshot::Receiver<bool> {
    let mut records = Vec::with_capacity(batch.len());
    for m in batch.iter() {
        if m.info().is_ok_and(|i| i.delivered > 1) {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats
            .bytes
            .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
        let header = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str())
        };
        let decoder = match header(crate::output::nats::client::ENCODER_HEADER) {
            Some("pickle") => DecoderKind::Pickle,
            Some("msgpack") => DecoderKind::Msgpack,
            _ => DecoderKind::Json,
        };
        let mut one =
            |payload: bytes::Bytes| match decoder.decode_keeping(payload, stage.keep_now()) {
                Ok(record) => records.push(record),
                Err(e) => {
                    let mut rejected = ctx.stats.rejected.lock().unwrap_or_else(|p| p.into_inner());
                    *rejected.entry(e.reason()).or_default() += 1;
                    drop(rejected);
                    warn_limited(&stage.name, e.reason(), &format!("{e}; record dropped"));
                }
            };
        if header(crate::output::nats::client::BATCH_HEADER).is_none() {
            one(m.payload.clone());
            continue;
        }
        let mut rest = m.payload.clone();
        while !rest.is_empty() {
            let Some(len) = rest
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .filter(|&len| len <= rest.len() - 4)
            else {
                warn_limited(
                    &stage.name,
                    "truncated",
                    "a packed message ends inside a record; the rest of it dropped",
                );
                break;
            };
            let _ = rest.split_to(4);
            one(rest.split_to(len));
        }
    }
    ctx.stats
        .received
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let receipt = crate::output::Receipt::new(move |ok| {
        let _ = tx.send(ok);
    });
    pipeline.dispatch(stage, records, Some(&receipt)).await;
    receipt.written();
    rx
}

/// A batch of messages whose records were dispatched to the outputs,
/// not yet acknowledged.
struct Dispatched {
    /// The batch's receipt came back: `true` if every output wrote it.
    done: tokio::sync::oneshot::Receiver<bool>,
    /// Set once `done` answered.
    outcome: Option<bool>,
    messages: Vec<jetstream::Message>,
}

impl Dispatched {
    fn new(
        messages: Vec<jetstream::Message>,
        done: tokio::sync::oneshot::Receiver<bool>,
    ) -> Dispatched {
        Dispatched {
            done,
            outcome: None,
            messages,
        }
    }

    /// THE ACK POINT: resolves once every output the batch's records went
    /// to wrote them (`true`), or one could not (`false`: hand them back).
    async fn written(&mut self) -> bool {
        if let Some(ok) = self.outcome {
            return ok;
        }
        // A receipt is never dropped without answering; a closed channel
        // means the process is going down: not written.
        let ok = (&mut self.done).await.unwrap_or(false);
        self.outcome = Some(ok);
        ok
    }
}

/// Resolves when the oldest dispatched batch is written; never if none.
async fn oldest_written(unacked: &mut VecDeque<Dispatched>) {
    match unacked.front_mut() {
        Some(d) => {
            d.written().await;
        }
        None => std::future::pending().await,
    }
}

/// Acknowledge the dispatched batches already written, oldest first (all
/// of them if `all`: stopping, the outputs flush before the process
/// exits). A batch whose `written` is not ready at this poll waits for
/// the loop's `oldest_written` branch.
async fn ack_written(what: &str, stats: &NatsStats, unacked: &mut VecDeque<Dispatched>, all: bool) {
    let stop = tokio::time::Instant::now() + STOP_WAIT;
    while let Some(front) = unacked.front_mut() {
        if all {
            // Stopping: the outputs write what they hold; wait a while.
            if tokio::time::timeout_at(stop, front.written())
                .await
                .is_err()
            {
                break; // unacknowledged: redelivered, never lost
            }
        } else if front.written().now_or_never().is_none() {
            break;
        }
        let Some(done) = unacked.pop_front() else {
            break;
        };
        ack(what, stats, done).await;
    }
}

/// Acknowledge a written batch's messages. A message that did not decode
/// is acknowledged too: it never will.
async fn ack(what: &str, stats: &NatsStats, done: Dispatched) {
    if done.outcome == Some(false) {
        // An output could not write them: redeliver.
        for m in done.messages {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
        return;
    }
    for m in done.messages {
        match m.ack().await {
            Ok(()) => {
                stats.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!("{what}: ack failed: {e} (the message will be redelivered)")
            }
        }
    }
}
