//! The receiving side of acknowledged forwarding (`ack: true` on another
//! logrelay's forward output). Every stream input accepts it: the sender
//! opens with a handshake SocketHandler never sends, and the connection
//! switches from plain frames to batches that are confirmed once this
//! logrelay's outputs wrote them.
//!
//! The wire format, and its constants shared with the sending side (the
//! forward output), are in [`crate::codec::ack`].
//!
//! What this guarantees: a batch is confirmed only once written, so a
//! receiver that dies, even killed, loses nothing the sender will not
//! re-send; a graceful restart of either side neither loses nor
//! duplicates. The last confirmed sequence per sender id is kept in
//! `state_dir` (see [`super::senders`]), written after the write it
//! describes, so a receiver killed and restarted duplicates at most the
//! batch per sender whose write had returned but was not yet recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::pending::Pending;
use super::senders::Progress;
use super::{close_stalled, peer_name, refresh, warn_limited, ConnContext, Open, READ_CHUNK};
pub(crate) use crate::codec::ack::is_hello;
use crate::codec::ack::{
    decoder_of, GOODBYE, HELLO_PREFIX_LEN, MAGIC, MAGIC_V2, MAX_BATCH_RECORDS, VERSION_AT,
};

/// Longest sender id.
const MAX_ID: usize = 256;
/// How long a closing receiver waits for the sender to hang up.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);
/// How long a closing receiver waits for batches being written before its
/// goodbye (at most `shutdown_timeout_ms`); the sender re-sends what is
/// left unconfirmed, and `state_dir` keeps it from being written twice.
const CLOSING_WAIT: Duration = Duration::from_secs(2);

/// Why an acknowledged connection ended early.
#[derive(Debug, thiserror::Error)]
enum AckError {
    #[error("unknown encoder {0} in the handshake")]
    Encoder(u8),
    #[error("sender id of {0} bytes is too long or not UTF-8")]
    Id(usize),
    #[error("batch of {0} records exceeds {MAX_BATCH_RECORDS}")]
    Count(u32),
    #[error("record of {len} bytes exceeds max_frame_bytes {max}")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a batch")]
    Truncated,
    #[error("token of {0} bytes is too long")]
    TokenLength(usize),
    #[error("nothing arrived for {0} ms in the middle of a batch (frame_timeout_ms)")]
    FrameTimeout(u128),
    #[error("partial batches exceed max_pending_bytes and this one is stalled longest")]
    Stalled,
    #[error("an output could not write batch {0}; the sender re-sends it")]
    NotWritten(u64),
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Serve a connection that opened with the handshake (`buf` holds what was
/// read so far, starting with the handshake).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut buf: BytesMut,
    peer: Option<SocketAddr>,
    mut ctx: ConnContext,
    open: Open,
    mut conn: super::registry::Conn,
) {
    let name = ctx.key.to_string();
    let result = run(&mut stream, &mut buf, peer, &mut ctx, &conn).await;
    if let Err(e) = &result {
        conn.closing(match e {
            AckError::Refused(_) => "auth",
            AckError::FrameTimeout(_) => "frame_timeout",
            AckError::Stalled => "stalled",
            AckError::NotWritten(_) => "not_written",
            AckError::Io(_) => "read_error",
            _ => "bad_ack_stream",
        });
    }
    match result {
        Ok(()) => {}
        Err(AckError::Refused(why)) => {
            ctx.stats.close("auth");
            warn_limited(
                &name,
                "auth",
                &format!(
                    "acknowledged connection from {}: {why}; closing it",
                    peer_name(peer)
                ),
            );
        }
        Err(AckError::FrameTimeout(ms)) => {
            ctx.stats.close("frame_timeout");
            warn_limited(
                &name,
                "frame_timeout",
                &format!(
                    "acknowledged connection from {}: {}; closing it",
                    peer_name(peer),
                    AckError::FrameTimeout(ms)
                ),
            );
        }
        Err(AckError::Stalled) => close_stalled(&ctx, &peer_name(peer), buf.len()),
        Err(e @ AckError::NotWritten(_)) => {
            ctx.stats.close("not_written");
            warn_limited(
                &name,
                "not_written",
                &format!(
                    "acknowledged connection from {}: {e}; closing it",
                    peer_name(peer)
                ),
            );
        }
        Err(e) => {
            ctx.stats.reject("bad_ack_stream");
            warn_limited(
                &name,
                "bad_ack_stream",
                &format!("acknowledged forward connection: {e}; closing it"),
            );
        }
    }
    drop(open);
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    peer: Option<SocketAddr>,
    ctx: &mut ConnContext,
    conn: &super::registry::Conn,
) -> Result<(), AckError> {
    let mut pipeline = ctx.pipelines.borrow_and_update().clone();
    let mut timeout = super::frame_timeout_of(&pipeline, ctx);
    // The handshake: prefix, encoder, id, and in version 2 the token.
    let version = buf[VERSION_AT];
    while buf.len() < HELLO_PREFIX_LEN + 3 {
        read_more(stream, buf, timeout).await?;
    }
    let encoder = buf[HELLO_PREFIX_LEN];
    let decoder = decoder_of(encoder).ok_or(AckError::Encoder(encoder))?;
    let id_len = usize::from(u16::from_be_bytes([
        buf[HELLO_PREFIX_LEN + 1],
        buf[HELLO_PREFIX_LEN + 2],
    ]));
    if id_len > MAX_ID {
        return Err(AckError::Id(id_len));
    }
    while buf.len() < HELLO_PREFIX_LEN + 3 + id_len {
        read_more(stream, buf, timeout).await?;
    }
    buf.advance(HELLO_PREFIX_LEN + 3);
    let id = String::from_utf8(buf.split_to(id_len).to_vec()).map_err(|_| AckError::Id(id_len))?;
    let token = if version == b'2' {
        while buf.len() < 2 {
            read_more(stream, buf, timeout).await?;
        }
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if len > crate::auth::MAX_TOKEN {
            return Err(AckError::TokenLength(len));
        }
        while buf.len() < 2 + len {
            read_more(stream, buf, timeout).await?;
        }
        buf.advance(2);
        Some(buf.split_to(len))
    } else {
        None
    };
    if let Some(required) = pipeline
        .input_by_key(&ctx.key)
        .and_then(|s| s.config.token.as_ref())
    {
        match &token {
            None => {
                return Err(AckError::Refused(
                    "this input requires a token (token_file); the sender sent none",
                ))
            }
            Some(t) if !required.matches(t) => {
                return Err(AckError::Refused("wrong token"));
            }
            Some(_) => {}
        }
    }
    drop(token);
    let sender = super::senders::sender(&id, &pipeline.config.state_dir);
    let mut progress = sender.subscribe();
    let failures = progress.borrow_and_update().failures;
    let last = sender.confirmed();
    let mut reply = if version == b'2' { MAGIC_V2 } else { MAGIC }.to_vec();
    reply.extend_from_slice(&last.to_be_bytes());
    stream.write_all(&reply).await?;
    stream.flush().await?;
    tracing::info!(input = %ctx.key, sender = %id, peer = ?peer, last, "Acknowledged forward connection.");

    let mut pending = Pending::new();
    // Batches received, in order, not yet confirmed to the sender.
    let mut unconfirmed: VecDeque<u64> = VecDeque::new();
    let mut batcher = Batcher::default();
    loop {
        // Every whole batch in the buffer.
        while let Some((seq, payloads)) = batcher.next(buf, pipeline_max(&pipeline, ctx))? {
            let Some(stage) = refresh(ctx, &mut pipeline) else {
                return Ok(());
            };
            timeout = Duration::from_millis(stage.config.frame_timeout_ms);
            unconfirmed.push_back(seq);
            if let Some(receipt) = sender.begin(seq) {
                let mut records = Vec::with_capacity(payloads.len());
                for p in payloads {
                    match decoder.decode_keeping(p, stage.keep_now()) {
                        Ok(record) => records.push(record),
                        Err(e) => {
                            ctx.stats.reject(e.reason());
                            warn_limited(&stage.name, e.reason(), &format!("{e}; record dropped"));
                        }
                    }
                }
                ctx.stats
                    .received
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                conn.records(records.len());
                pipeline.dispatch(&stage, records, Some(&receipt)).await;
                receipt.written();
            }
        }
        confirm(stream, &mut unconfirmed, &progress, failures).await?;
        let progressed = std::mem::take(&mut batcher.progressed);
        if !pending.set(batcher.held + buf.len(), progressed) {
            return Err(AckError::Stalled);
        }
        if ctx.shutdown.is_cancelled() || ctx.removed.is_cancelled() {
            // Confirm what is being written now, briefly, then goodbye.
            let wait = Duration::from_millis(pipeline.config.shutdown_timeout_ms).min(CLOSING_WAIT);
            let _ = tokio::time::timeout(wait, async {
                while !unconfirmed.is_empty() {
                    if progress.changed().await.is_err() {
                        break;
                    }
                    confirm(stream, &mut unconfirmed, &progress, failures).await?;
                }
                Ok::<(), AckError>(())
            })
            .await;
            return goodbye(stream).await;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let mid_batch = batcher.open.is_some() || !buf.is_empty();
        let deadline = tokio::time::Instant::now() + timeout;
        let n = tokio::select! {
            r = stream.read_buf(buf) => r?,
            r = progress.changed(), if !unconfirmed.is_empty() => {
                if r.is_err() {
                    return Ok(());
                }
                continue;
            }
            _ = ctx.removed.cancelled() => continue,
            _ = tokio::time::sleep_until(deadline), if mid_batch => {
                return Err(AckError::FrameTimeout(timeout.as_millis()));
            }
            _ = pending.wait_evicted(), if mid_batch => return Err(AckError::Stalled),
        };
        ctx.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        conn.bytes(n);
        if n == 0 {
            return if !mid_batch {
                Ok(())
            } else {
                Err(AckError::Truncated)
            };
        }
    }
}

/// Send the confirmations now due, in order: every received batch up to
/// the sender's confirmed mark. A batch an output could not write (the
/// failure count grew and it is still unconfirmed) ends the connection:
/// the sender reconnects and re-sends it.
async fn confirm<S: AsyncWrite + Unpin>(
    stream: &mut S,
    unconfirmed: &mut VecDeque<u64>,
    progress: &tokio::sync::watch::Receiver<Progress>,
    failures_at_start: u64,
) -> Result<(), AckError> {
    let now = *progress.borrow();
    let mut sent = false;
    while let Some(&seq) = unconfirmed.front() {
        if seq > now.confirmed {
            if now.failures > failures_at_start {
                stream.flush().await?;
                return Err(AckError::NotWritten(seq));
            }
            break;
        }
        unconfirmed.pop_front();
        stream.write_all(&seq.to_be_bytes()).await?;
        sent = true;
    }
    if sent {
        stream.flush().await?;
    }
    Ok(())
}

fn pipeline_max(pipeline: &crate::pipeline::Pipeline, ctx: &ConnContext) -> usize {
    pipeline
        .input_by_key(&ctx.key)
        .map(|s| s.config.max_frame_bytes)
        .unwrap_or(crate::config::DEFAULT_MAX_FRAME_BYTES)
}

/// Read more of the handshake, within the frame timeout.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<(), AckError> {
    buf.reserve(1024);
    match tokio::time::timeout(timeout, stream.read_buf(buf)).await {
        Err(_) => Err(AckError::FrameTimeout(timeout.as_millis())),
        Ok(r) => match r? {
            0 => Err(AckError::Truncated),
            _ => Ok(()),
        },
    }
}

/// Say goodbye and wait (a little) for the sender to hang up, discarding
/// what it still sends: closing first would reset the connection and could
/// destroy confirmations it has not read yet.
async fn goodbye<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<(), AckError> {
    stream.write_all(&GOODBYE.to_be_bytes()).await?;
    stream.flush().await?;
    let mut sink = vec![0u8; READ_CHUNK];
    let _ = tokio::time::timeout(GOODBYE_WAIT, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Cuts batches off the stream record by record: each record leaves the
/// read buffer as soon as it is whole, so the buffer holds at most one
/// partial record and reads stay in `READ_CHUNK`-sized buffers, which the
/// allocator reuses. (Reserving room for a whole batch, up to 1 MiB, at
/// once gave every batch fresh pages from the kernel: a page fault per
/// 4 KiB received, doubling the CPU per record of acknowledged senders.)
#[derive(Debug, Default)]
struct Batcher {
    /// The batch being received: its sequence, the records still to come,
    /// and those that came.
    open: Option<(u64, u32, Vec<Bytes>)>,
    /// Bytes of `open`'s records (for `max_pending_bytes`).
    held: usize,
    /// A record was cut since the caller last looked.
    progressed: bool,
}

impl Batcher {
    /// The next whole batch, `(seq, payloads)`, or `None` if more bytes
    /// are needed. Checks each declared length before waiting for it.
    fn next(
        &mut self,
        buf: &mut BytesMut,
        max_frame: usize,
    ) -> Result<Option<(u64, Vec<Bytes>)>, AckError> {
        loop {
            let Some((_, left, payloads)) = self.open.as_mut() else {
                if buf.len() < 12 {
                    return Ok(None);
                }
                let seq = buf.get_u64();
                let count = buf.get_u32();
                if count > MAX_BATCH_RECORDS {
                    return Err(AckError::Count(count));
                }
                let room = count.min(1024) as usize;
                self.open = Some((seq, count, Vec::with_capacity(room)));
                continue;
            };
            if *left == 0 {
                let done = self.open.take().map(|(seq, _, payloads)| (seq, payloads));
                self.held = 0;
                return Ok(done);
            }
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > max_frame {
                return Err(AckError::TooLarge {
                    len,
                    max: max_frame,
                });
            }
            if buf.len() < 4 + len {
                let need = 4 + len - buf.len();
                if buf.capacity() - buf.len() < need {
                    buf.reserve(need);
                }
                return Ok(None);
            }
            buf.advance(4);
            payloads.push(buf.split_to(len).freeze());
            *left -= 1;
            self.held += len;
            self.progressed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_whole() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&7u64.to_be_bytes());
        wire.extend_from_slice(&2u32.to_be_bytes());
        for p in [&b"ab"[..], b"c"] {
            wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
            wire.extend_from_slice(p);
        }
        // Whole, and fed a byte at a time: the same batch.
        let mut buf = BytesMut::from(&wire[..]);
        let (seq, p) = Batcher::default().next(&mut buf, 100).unwrap().unwrap();
        assert_eq!((seq, p), (7, vec![Bytes::from("ab"), Bytes::from("c")]));
        assert!(buf.is_empty());
        let mut batcher = Batcher::default();
        let mut buf = BytesMut::new();
        for (i, &b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let got = batcher.next(&mut buf, 100).unwrap();
            if i + 1 < wire.len() {
                assert!(got.is_none(), "early at byte {i}");
                assert!(buf.len() < 12, "holds a header or one partial record");
            } else {
                assert_eq!(got, Some((7, vec![Bytes::from("ab"), Bytes::from("c")])));
            }
        }
        let mut big = BytesMut::from(&wire[..]);
        assert!(Batcher::default().next(&mut big, 1).is_err());
    }
}
