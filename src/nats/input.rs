//! The `nats` input: a durable pull consumer on a JetStream stream.
//!
//! Several logrelays naming the same `consumer` share it: the stream
//! hands each message to one of them. The consumer is created when
//! missing (explicit acks, delivering from the start of the stream) and
//! used as it is otherwise.
//!
//! Messages are pulled in batches of up to `batch`; each message is one
//! record, decoded as its `Logrelay-Encoder` header says (`json`,
//! `msgpack`, `pickle`; no header: JSON, what other publishers send most).
//! A batch's records are dispatched to the routes as one batch, and the
//! messages are acknowledged once the dispatch returned, that is once the
//! outputs' queues took the records (not yet once they were written).
//!
//! At-least-once: a logrelay killed between taking messages and
//! acknowledging them leaves them unacknowledged; the server hands them
//! to another member of the consumer after `ack_wait` (30 s). Records of
//! such a batch that this logrelay had already queued or written are then
//! written twice. Records queued but not yet written when it died are
//! lost (until acknowledgements move to after the write).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::{FutureExt, StreamExt};

use super::NatsStats;
use crate::codec::DecoderKind;
use crate::config::NatsInputConfig;
use crate::input::{refresh, warn_limited, ConnContext};
use crate::pipeline::Pipeline;
use crate::record::Record;

/// How long the server waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often the consumer lag is read.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Start consuming; returns what to show as "listening".
pub(crate) fn start(
    name: &str,
    config: &NatsInputConfig,
    ctx: ConnContext,
    tracker: &tokio_util::task::TaskTracker,
) -> Vec<String> {
    let stats = super::register("input", name);
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

async fn consume(what: String, config: NatsInputConfig, mut ctx: ConnContext, stats: Arc<NatsStats>) {
    let mut attempt = 0u32;
    let client = loop {
        match super::connect(&what, &config.connect).await {
            Ok(c) => break c,
            Err(e) => {
                if attempt == 0 {
                    tracing::error!("{e}; retrying with backoff.");
                }
                if !pause(&ctx, super::backoff(attempt)).await {
                    return;
                }
                attempt += 1;
            }
        }
    };
    let js = jetstream::new(client.clone());
    let mut pipeline = ctx.pipelines.borrow_and_update().clone();
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
                if attempt % 20 == 0 {
                    tracing::warn!("{what}: {why}; retrying.");
                }
                attempt += 1;
                if !pause(&ctx, super::backoff(attempt)).await {
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
                if !pause(&ctx, super::backoff(attempt)).await {
                    break;
                }
                attempt += 1;
                continue;
            }
        };
        let mut lag = tokio::time::interval(LAG_EVERY);
        let mut consumer = consumer;
        let mut batch: Vec<jetstream::Message> = Vec::with_capacity(config.batch);
        loop {
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
                _ = lag.tick() => {
                    if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), consumer.info()).await {
                        stats.pending.store(info.num_pending, Ordering::Relaxed);
                        stats.ack_pending.store(info.num_ack_pending as u64, Ordering::Relaxed);
                    }
                    continue;
                }
            };
            match first {
                Some(Ok(m)) => batch.push(m),
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
            handle(&what, &stage, &ctx, &stats, &pipeline, &mut batch).await;
        }
    }
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
        ack_wait: ACK_WAIT,
        max_ack_pending: (config.batch as i64 * 8).max(1000),
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

/// Decode, dispatch, then acknowledge one batch of messages.
async fn handle(
    what: &str,
    stage: &crate::pipeline::InputStage,
    ctx: &ConnContext,
    stats: &NatsStats,
    pipeline: &Pipeline,
    batch: &mut Vec<jetstream::Message>,
) {
    let mut records = Vec::with_capacity(batch.len());
    for m in batch.iter() {
        if m.info().is_ok_and(|i| i.delivered > 1) {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats
            .bytes
            .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
        let decoder = match m
            .headers
            .as_ref()
            .and_then(|h| h.get(super::ENCODER_HEADER))
            .map(|v| v.as_str())
        {
            Some("pickle") => DecoderKind::Pickle,
            Some("msgpack") => DecoderKind::Msgpack,
            _ => DecoderKind::Json,
        };
        match decoder.decode_keeping(m.payload.clone(), stage.keep) {
            Ok(fields) => records.push(Record::new(fields)),
            Err(e) => {
                let mut rejected = ctx.stats.rejected.lock().unwrap_or_else(|p| p.into_inner());
                *rejected.entry(e.reason()).or_default() += 1;
                drop(rejected);
                warn_limited(&stage.name, e.reason(), &format!("{e}; record dropped"));
            }
        }
    }
    ctx.stats
        .received
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    pipeline.dispatch(stage, records).await;
    for m in batch.drain(..) {
        // A record that did not decode is acknowledged too: it never will.
        match m.ack().await {
            Ok(()) => {
                stats.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("{what}: ack failed: {e} (the message will be redelivered)"),
        }
    }
}
