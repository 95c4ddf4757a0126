//! The receiving side of acknowledged forwarding (`ack: true` on another
//! logrelay's forward output). Every stream input accepts it: the sender
//! opens with a handshake SocketHandler never sends, and the connection
//! switches from plain frames to batches that are confirmed once this
//! logrelay's outputs wrote them.
//!
//! # Wire format (all integers big endian)
//!
//! Sender → receiver, once, at the start of the connection:
//!
//! ```text
//! u32   0                          a zero-length frame: SocketHandler never
//!                                  sends one (a pickle is never empty)
//! [15]  "logrelay-ack/1\n"         the magic, with the protocol version
//!       or "logrelay-ack/2\n"
//! u8    encoder                    0 pickle, 1 json, 2 msgpack
//! u16   n, then n bytes            the sender id (UTF-8): random per sender
//!                                  process and output, names its sequence
//! u16   m, then m bytes            version 2 only: the shared secret of the
//!                                  input's `token_file` (m may be 0)
//! ```
//!
//! Receiver → sender, the reply, with the version the sender used:
//!
//! ```text
//! [15]  "logrelay-ack/1\n" or "logrelay-ack/2\n"
//! u64   last                       the highest batch sequence this receiver
//!                                  has dispatched for that sender id (0:
//!                                  none, e.g. after a restart)
//! ```
//!
//! An input with a `token_file` answers only a version 2 handshake with
//! the right token; any other opening (version 1, a wrong token, plain
//! SocketHandler frames) is closed without a reply and counted (`auth`).
//! Senders without a token send version 1, which every receiver since the
//! protocol's first version understands.
//!
//! Then the sender sends batches, sequences starting at 1 and increasing:
//!
//! ```text
//! u64   seq
//! u32   count                      at most MAX_BATCH_RECORDS
//! count × (u32 len, len bytes)     one record each, in the sender's encoder
//! ```
//!
//! and the receiver answers each batch, in order, with `u64 seq` once
//! every output the batch was routed to has written it (a file after its
//! `write()` returned, and its `fsync` with `fsync: true`; a forward output
//! once its own peer confirmed, or without `ack` once the kernel took the
//! bytes; records a filter dropped or no route took are done at once).
//! The receiver keeps reading while earlier batches are being written, so
//! a sender keeps a window of batches in flight. A batch whose `seq` is
//! not above the last one dispatched for its sender id is not dispatched
//! again: it is confirmed once that earlier dispatch is written, so a
//! re-send after a lost confirmation is not written twice. When the
//! receiver stops (shutdown or the input removed by a reload) it stops
//! reading, waits a little for the batches being written, confirms them,
//! and sends `u64 0xFFFF_FFFF_FFFF_FFFF` ("goodbye"): the sender stops
//! sending on that connection and reconnects later, re-sending whatever was
//! not confirmed. The receiver reads (and ignores) until the sender closes,
//! so its close never resets the connection under the confirmations.
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
use crate::codec::DecoderKind;

/// The magic after the zero-length frame, and at the start of the reply.
pub const MAGIC: &[u8; 15] = b"logrelay-ack/1\n";
/// The magic of version 2, whose handshake carries a token.
pub const MAGIC_V2: &[u8; 15] = b"logrelay-ack/2\n";
/// Where the version digit is in the opening (after `u32 0` and
/// `logrelay-ack/`).
const VERSION_AT: usize = 4 + 13;
/// The whole fixed prefix a sender opens with: a zero length, then the magic.
pub const HELLO_PREFIX_LEN: usize = 4 + MAGIC.len();
/// The confirmation that means "closing: send nothing more here".
pub const GOODBYE: u64 = u64::MAX;
/// Most records in one batch.
pub const MAX_BATCH_RECORDS: u32 = 100_000;
/// Longest sender id.
const MAX_ID: usize = 256;
/// How long a closing receiver waits for the sender to hang up.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);
/// How long a closing receiver waits for batches being written before its
/// goodbye (at most `shutdown_timeout_ms`); the sender re-sends what is
/// left unconfirmed, and `state_dir` keeps it from being written twice.
const CLOSING_WAIT: Duration = Duration::from_secs(2);

/// Whether `buf` (the first bytes of a connection) starts an acknowledged
/// handshake: `Some(true)` yes, `Some(false)` no, `None` too short to tell.
pub(crate) fn is_hello(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(HELLO_PREFIX_LEN);
    let mut prefix = [0u8; HELLO_PREFIX_LEN];
    prefix[4..].copy_from_slice(MAGIC);
    if n > VERSION_AT && buf[VERSION_AT] == b'2' {
        prefix[VERSION_AT] = b'2';
    }
    if buf[..n] != prefix[..n] {
        return Some(false);
    }
    if n < HELLO_PREFIX_LEN {
        None
    } else {
        Some(true)
    }
}

/// The encoder byte of the handshake.
pub fn encoder_byte(decoder: DecoderKind) -> u8 {
    match decoder {
        DecoderKind::Pickle => 0,
        DecoderKind::Json => 1,
        DecoderKind::Msgpack => 2,
    }
}

fn decoder_of(byte: u8) -> Option<DecoderKind> {
    Some(match byte {
        0 => DecoderKind::Pickle,
        1 => DecoderKind::Json,
        2 => DecoderKind::Msgpack,
        _ => return None,
    })
}

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
) {
    let name = ctx.key.to_string();
    match run(&mut stream, &mut buf, peer, &mut ctx).await {
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
    loop {
        // Every whole batch in the buffer.
        let mut progressed = false;
        while let Some((seq, payloads)) = next_batch(buf, pipeline_max(&pipeline, ctx))? {
            progressed = true;
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
                pipeline.dispatch(&stage, records, Some(&receipt)).await;
                receipt.written();
            }
        }
        confirm(stream, &mut unconfirmed, &progress, failures).await?;
        if !pending.set(buf.len(), progressed) {
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
        let mid_batch = !buf.is_empty();
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
        if n == 0 {
            return if buf.is_empty() {
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

/// Cut one whole batch off `buf`: `(seq, payloads)`, or `None` if more
/// bytes are needed. Checks each declared length before waiting for it.
fn next_batch(buf: &mut BytesMut, max_frame: usize) -> Result<Option<(u64, Vec<Bytes>)>, AckError> {
    if buf.len() < 12 {
        return Ok(None);
    }
    let count = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if count > MAX_BATCH_RECORDS {
        return Err(AckError::Count(count));
    }
    let mut pos = 12;
    for _ in 0..count {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len > max_frame {
            return Err(AckError::TooLarge {
                len,
                max: max_frame,
            });
        }
        pos += 4 + len;
        if buf.len() < pos {
            buf.reserve(pos - buf.len());
            return Ok(None);
        }
    }
    let seq = buf.get_u64();
    buf.advance(4);
    let mut payloads = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = buf.get_u32() as usize;
        payloads.push(buf.split_to(len).freeze());
    }
    Ok(Some((seq, payloads)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_recognised_from_its_prefix() {
        let mut hello = vec![0, 0, 0, 0];
        hello.extend_from_slice(MAGIC);
        assert_eq!(is_hello(&hello), Some(true));
        assert_eq!(is_hello(&hello[..7]), None);
        assert_eq!(is_hello(&[0, 0, 0, 5]), Some(false));
        assert_eq!(is_hello(b"\x00\x00\x00\x00x"), Some(false));
        // A SocketHandler frame never starts with a zero length.
        assert_eq!(is_hello(b"\x00\x00\x01\x2a}q\x00("), Some(false));
    }

    #[test]
    fn batches_are_cut_whole() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&7u64.to_be_bytes());
        wire.extend_from_slice(&2u32.to_be_bytes());
        for p in [&b"ab"[..], b"c"] {
            wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
            wire.extend_from_slice(p);
        }
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert!(next_batch(&mut buf, 100).unwrap().is_none());
        }
        let mut buf = BytesMut::from(&wire[..]);
        let (seq, p) = next_batch(&mut buf, 100).unwrap().unwrap();
        assert_eq!((seq, p), (7, vec![Bytes::from("ab"), Bytes::from("c")]));
        assert!(buf.is_empty());
        let mut big = BytesMut::from(&wire[..]);
        assert!(next_batch(&mut big, 1).is_err());
    }
}
