//! Serving one stream connection (TCP or Unix, plain or TLS): read, cut
//! frames, decode, dispatch; drain at shutdown or removal, park for an
//! upgrade's handover.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::accept::Open;
use super::read::{read_some, Read, Readable, READ_CHUNK, SMALL_READ};
use super::{
    ack, decode_into, frame_reason, handoff, pending, refresh, registry, warn_limited, ConnContext,
};
use crate::pipeline::Pipeline;

/// Quiet time after which a connection is considered drained at shutdown.
const QUIET: Duration = Duration::from_millis(100);

/// Serve one stream connection (TCP or Unix, plain or TLS) until EOF, a
/// framing error, shutdown, or an upgrade's handover. `open` counts it
/// among the input's open connections until it ends.
pub(crate) async fn serve_stream<S: AsyncRead + AsyncWrite + Readable + Unpin>(
    stream: S,
    peer: Option<SocketAddr>,
    ctx: ConnContext,
    open: Open,
) {
    // No buffer until there is something to read, and a small one while
    // the connection is not busy (see SMALL_READ).
    serve_stream_from(stream, peer, ctx, open, BytesMut::new()).await
}

/// [`serve_stream`] for a connection that already read `buf` (the start
/// of a frame): one handed over by the previous process in an upgrade, or
/// one this process parked and takes back. The bytes are handled first,
/// as if just read.
pub(crate) async fn serve_stream_from<S: AsyncRead + AsyncWrite + Readable + Unpin>(
    mut stream: S,
    peer: Option<SocketAddr>,
    mut ctx: ConnContext,
    mut open: Open,
    mut buf: BytesMut,
) {
    let mut conn = registry::open(&ctx, peer);
    let mut pipeline = ctx.pipelines.borrow_and_update().clone();
    let mut preloaded = !buf.is_empty();
    // How much of `buf` holds no newline (newline framing; see
    // `Framer::next_frame_from`).
    let mut scanned = 0;
    let mut want = SMALL_READ;
    // None while running; Some((deadline, quiet)) once draining.
    let mut drain: Option<(Instant, bool)> = None;
    // Until the first bytes rule it out: is this an acknowledged forward
    // sender (input/ack.rs)? Plain SocketHandler clients pay one compare.
    let mut hello_check = true;
    // This connection's partial frame in the `max_pending_bytes` budget.
    let mut pending = pending::Pending::new();
    let mut frame_timeout = frame_timeout_of(&pipeline, &ctx);
    let peer_name = peer_name(peer);
    loop {
        // Silence in the middle of a frame is limited; between frames it
        // is not (SocketHandler keeps its connection for hours).
        let mid_frame = !buf.is_empty();
        let deadline = mid_frame.then(|| Instant::now() + frame_timeout);
        let read = match drain {
            _ if preloaded => {
                preloaded = false;
                Some(Ok(Read::Data(buf.len(), buf.len(), None)))
            }
            None => tokio::select! {
                // First: a handover also cancels `removed`.
                biased;
                _ = handoff::requested(), if open.movable() => {
                    match park(&stream, peer, &ctx, open, &mut buf) {
                        Ok(()) => {
                            conn.closing("handed_over");
                            return;
                        }
                        Err(back) => open = back,
                    }
                    // Too late to move: served here like a removed
                    // input's connection.
                    drain = Some(drain_mode(&ctx, &pipeline));
                    continue;
                }
                r = read_some(&mut stream, &mut buf, want, deadline) => Some(r),
                _ = ctx.removed.cancelled() => {
                    open.stay();
                    drain = Some(drain_mode(&ctx, &pipeline));
                    continue;
                }
                _ = pending.wait_evicted(), if mid_frame => Some(Ok(Read::Evicted)),
            },
            Some((deadline, quiet)) => {
                let limit = if quiet {
                    deadline.min(Instant::now() + QUIET)
                } else {
                    deadline
                };
                tokio::select! {
                    r = tokio::time::timeout_at(limit, read_some(&mut stream, &mut buf, want, None)) => r.ok(),
                    // A removed input's idle connection at process
                    // shutdown: the shutdown's limits apply from now on,
                    // not what is left of `drain_seconds`.
                    _ = ctx.shutdown.cancelled(), if !quiet => {
                        drain = Some(drain_mode(&ctx, &pipeline));
                        continue;
                    }
                }
            }
        };
        // `_permit` is held until this read's records are dispatched.
        let (n, room, _permit) = match read {
            None => break, // drained: quiet long enough, or out of time
            Some(Ok(Read::Data(n, room, permit))) => (n, room, permit),
            Some(Ok(Read::FrameTimeout)) => {
                ctx.stats.close("frame_timeout");
                conn.closing("frame_timeout");
                warn_limited(
                    &ctx.key.to_string(),
                    "frame_timeout",
                    &format!(
                        "connection from {peer_name} sent {} bytes of a frame, then nothing for {} ms (frame_timeout_ms); closing it",
                        buf.len(),
                        frame_timeout.as_millis()
                    ),
                );
                break;
            }
            Some(Ok(Read::Evicted)) => {
                close_stalled(&ctx, &peer_name, buf.len());
                conn.closing("stalled");
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(input = %ctx.key, error = %e, "Connection read failed.");
                conn.closing("read_error");
                break;
            }
        };
        if drain.is_some_and(|(_, quiet)| !quiet) && ctx.shutdown.is_cancelled() {
            // A removed input's connection at process shutdown: now quiet.
            drain = Some(drain_mode(&ctx, &pipeline));
        }
        ctx.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        conn.bytes(n);
        // A read that filled most of its room means more is waiting.
        want = if n >= room / 2 {
            READ_CHUNK
        } else {
            SMALL_READ
        };
        let Some(stage) = refresh(&mut ctx, &mut pipeline) else {
            break;
        };
        if hello_check {
            match ack::is_hello(&buf) {
                Some(true) => {
                    // Its sender reconnects to a successor and re-sends.
                    open.stay();
                    // Boxed, as dispatch below: kept inline, its state
                    // would size every connection's task.
                    return Box::pin(ack::serve(stream, buf, peer, ctx, open, conn)).await;
                }
                None if n > 0 => continue,
                _ => hello_check = false,
            }
            if stage.config.token.is_some() && !buf.is_empty() {
                ctx.stats.close("auth");
                conn.closing("auth");
                warn_limited(
                    &stage.name,
                    "auth",
                    &format!("connection from {peer_name} sent plain frames, but this input requires a token (token_file) in logrelay's acknowledged handshake; closing it"),
                );
                break;
            }
        }
        frame_timeout = Duration::from_millis(stage.config.frame_timeout_ms);
        // Room for the frames read, at about 512 bytes a record (a
        // SocketHandler record is 500-800): growing from empty was five
        // reallocations per read.
        let mut records = Vec::with_capacity((buf.len() / 512).clamp(1, 256));
        let mut fatal = None;
        let mut frames = 0usize;
        loop {
            match stage.framer.next_frame_from(&mut buf, &mut scanned) {
                Ok(Some(frame)) => {
                    frames += 1;
                    decode_into(&stage, &ctx, frame, &mut records)
                }
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if n == 0 && fatal.is_none() {
            match stage.framer.finish(&mut buf) {
                Ok(Some(frame)) => decode_into(&stage, &ctx, frame, &mut records),
                Ok(None) => {}
                Err(e) => fatal = Some(e),
            }
        }
        ctx.stats
            .received
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        conn.records(records.len());
        // Boxed: the dispatch future (about 2 KiB) inline made every
        // connection's task 2.7 KiB, idle ones too (27 MiB for 10,000);
        // one allocation per read batch is nothing beside the batch.
        Box::pin(pipeline.dispatch(&stage, records, None)).await;
        if let Some(e) = fatal {
            ctx.stats.reject(frame_reason(&e));
            conn.closing(frame_reason(&e));
            warn_limited(
                &stage.name,
                frame_reason(&e),
                &format!("{e}; closing the connection"),
            );
            break;
        }
        if n == 0 {
            break;
        }
        if !pending.set(buf.len(), frames > 0) {
            close_stalled(&ctx, &peer_name, buf.len());
            break;
        }
        if buf.is_empty() {
            // Between records: hold no buffer (the records of this read
            // keep theirs alive until they are written).
            buf = BytesMut::new();
        }
    }
    drop(open);
}

/// Park the connection for an upgrade's handover: a duplicate of its fd
/// (the caller then drops `stream`), the partial frame in `buf`, and
/// `open`. Gives `open` back (and leaves `buf`) if it cannot: the handover
/// was collected already, or the fd cannot be duplicated.
fn park<S: Readable>(
    stream: &S,
    peer: Option<SocketAddr>,
    ctx: &ConnContext,
    open: Open,
    buf: &mut BytesMut,
) -> Result<(), Open> {
    let fd = match stream.handoff_fd() {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => {
            tracing::warn!(input = %ctx.key, error = %e, "Upgrade: cannot duplicate a connection's fd; it stays here.");
            return Err(open);
        }
        None => return Err(open),
    };
    let parked = Box::new(handoff::Parked {
        key: ctx.key.clone(),
        peer,
        fd,
        buf: std::mem::take(buf),
        ctx: ctx.clone(),
        open,
    });
    handoff::park(parked).map_err(|back| {
        let back = *back;
        *buf = back.buf;
        back.open
    })
}

/// The current `frame_timeout_ms` of the connection's input.
pub(crate) fn frame_timeout_of(pipeline: &Pipeline, ctx: &ConnContext) -> Duration {
    Duration::from_millis(
        pipeline
            .input_by_key(&ctx.key)
            .map_or(crate::config::DEFAULT_FRAME_TIMEOUT_MS, |s| {
                s.config.frame_timeout_ms
            }),
    )
}

/// How a peer is named in logs.
pub(crate) fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "a local process".to_string(), |p| p.to_string())
}

/// Count and log a connection closed to keep partial frames within
/// `max_pending_bytes`.
pub(crate) fn close_stalled(ctx: &ConnContext, peer: &str, held: usize) {
    ctx.stats.close("stalled");
    warn_limited(
        &ctx.key.to_string(),
        "stalled",
        &format!(
            "partial frames exceed max_pending_bytes: closed the connection stalled longest mid-frame, from {peer}, which held {held} bytes"
        ),
    );
}

/// When and how a connection stops: at shutdown, after 100 ms of quiet or
/// `shutdown_timeout_ms`; on removal by reload, after `drain_seconds`.
fn drain_mode(ctx: &ConnContext, pipeline: &Pipeline) -> (Instant, bool) {
    if ctx.shutdown.is_cancelled() {
        let ms = pipeline.config.shutdown_timeout_ms;
        (Instant::now() + Duration::from_millis(ms), true)
    } else {
        let secs = pipeline.config.drain_seconds;
        (Instant::now() + Duration::from_secs(secs), false)
    }
}
