//! Inputs: listening sockets and the connections they accept.
//!
//! An input is identified across reloads by its [`ListenKey`] (what it is
//! bound to), not by its name: a reload that keeps an address keeps the
//! bound socket and every open connection, even if the input was renamed or
//! its decoder changed. Each connection reads into a large buffer, cuts
//! every whole frame out of it, decodes them into one batch and hands the
//! batch to the newest pipeline that still has its input.

pub(crate) mod ack;
pub mod handoff;
pub mod inherit;
pub mod pending;
pub mod registry;
pub(crate) mod senders;
pub mod tcp;
mod tls;
pub mod udp;
pub mod unix;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::config::ListenKey;
use crate::config::{InputConfig, InputKind};
use crate::pipeline::Pipeline;
use crate::record::Record;

/// Read buffer per connection: large reads, few system calls.
const READ_CHUNK: usize = 64 * 1024;
/// The read size of a connection that is not busy: the first read, and
/// every read after one that left most of its room empty. A sender that
/// logs now and then (most of them) costs 4 KiB while it sends and nothing
/// while it is quiet, so 10,000 connections fit in a few tens of MiB.
const SMALL_READ: usize = 4 * 1024;
/// Quiet time after which a connection is considered drained at shutdown.
const QUIET: Duration = Duration::from_millis(100);

/// Counters of one input (survive reloads with the socket).
#[derive(Debug, Default)]
pub struct InputStats {
    /// Records decoded and handed to a pipeline.
    pub received: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Frames or connections refused, by reason.
    pub rejected: Mutex<HashMap<&'static str, u64>>,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections logrelay closed, by reason (`stalled`, `frame_timeout`,
    /// `max_connections`, `fd_limit`, `tls`, `auth`).
    pub closed: Mutex<HashMap<&'static str, u64>>,
}

impl InputStats {
    fn reject(&self, reason: &'static str) {
        let mut m = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// Count a connection logrelay closed.
    pub(crate) fn close(&self, reason: &'static str) {
        let mut m = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }
}

/// An open connection, counted in [`InputStats::open`] while it lives.
pub(crate) struct Open {
    stats: Arc<InputStats>,
    /// Held while the connection would move to an upgrade's successor
    /// (see `handoff`).
    live: Option<handoff::Live>,
}

impl Open {
    /// This connection stays in this process through an upgrade (TLS, an
    /// acknowledged sender, a removed input's connection draining).
    pub(crate) fn stay(&mut self) {
        self.live = None;
    }

    /// Whether it moves to an upgrade's successor.
    fn movable(&self) -> bool {
        self.live.is_some()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admit a connection just accepted, or refuse it (the caller drops it)
/// when the input has `max_connections` open already.
pub(crate) fn admit(ctx: &ConnContext, peer: &dyn std::fmt::Display) -> Option<Open> {
    let max = ctx
        .pipelines
        .borrow()
        .input_by_key(&ctx.key)
        .map_or(crate::config::DEFAULT_MAX_CONNECTIONS, |s| {
            s.config.max_connections
        });
    let stats = &ctx.stats;
    if stats.open.fetch_add(1, Ordering::Relaxed) >= max as u64 {
        stats.open.fetch_sub(1, Ordering::Relaxed);
        stats.close("max_connections");
        warn_limited(
            &ctx.key.to_string(),
            "max_connections",
            &format!("{max} connections are open (max_connections); closed a new one from {peer}"),
        );
        return None;
    }
    stats.connections.fetch_add(1, Ordering::Relaxed);
    Some(Open {
        stats: stats.clone(),
        live: handoff::Live::register(),
    })
}

/// An accept that failed. Out of file descriptors (EMFILE, ENFILE), the
/// listener would be readable forever with nothing it can accept: close
/// the descriptor kept in reserve, accept and close one waiting client
/// (it sees its connection closed instead of hanging), take the reserve
/// back, and pause; warn once a second. Other errors (a client that
/// reset before the accept) need nothing.
pub(crate) async fn accept_failed<F>(ctx: &ConnContext, e: &std::io::Error, shed: F)
where
    F: FnOnce() -> bool,
{
    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
    if !out_of_fds {
        tracing::debug!(input = %ctx.key, error = %e, "Accept failed.");
        return;
    }
    let shed = {
        let mut spare = spare_fd().lock().unwrap_or_else(|e| e.into_inner());
        spare.take();
        let shed = shed();
        *spare = std::fs::File::open("/dev/null").ok();
        shed
    };
    if shed {
        ctx.stats.close("fd_limit");
    }
    warn_limited(
        &ctx.key.to_string(),
        "fd_limit",
        &format!("cannot accept: {e}; closing new connections until descriptors are free (raise `ulimit -n` / LimitNOFILE)"),
    );
    if !shed {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A descriptor kept open so that one can be freed to shed a client when
/// the process is out of them.
fn spare_fd() -> &'static Mutex<Option<std::fs::File>> {
    static SPARE: std::sync::OnceLock<Mutex<Option<std::fs::File>>> = std::sync::OnceLock::new();
    SPARE.get_or_init(|| Mutex::new(std::fs::File::open("/dev/null").ok()))
}

/// Why an input could not bind.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address did not resolve or bind.
    #[error("input {name}: cannot listen on {key}: {reason}")]
    Bind {
        /// The input's name.
        name: String,
        /// Where.
        key: ListenKey,
        /// Why.
        reason: String,
    },
}

/// Everything a connection task needs, shared by the input's connections.
#[derive(Clone)]
pub(crate) struct ConnContext {
    pub key: ListenKey,
    pub pipelines: watch::Receiver<Arc<Pipeline>>,
    /// Cancelled at process shutdown: read until quiet, then stop.
    pub shutdown: CancellationToken,
    /// Cancelled when this input is removed by a reload: serve open
    /// connections until they close or `drain_seconds` pass.
    pub removed: CancellationToken,
    pub stats: Arc<InputStats>,
}

/// A running input: its key, its accept task and how to stop it.
pub struct RunningInput {
    /// What it is bound to.
    pub key: ListenKey,
    /// The addresses actually bound (resolved ports), for logs and tests.
    pub local: Vec<String>,
    /// The listening sockets' fds, handed to the successor on upgrade.
    pub fds: Vec<std::os::fd::RawFd>,
    /// Cancel to stop accepting (reload removal); connections drain.
    pub removed: CancellationToken,
    /// Its counters.
    pub stats: Arc<InputStats>,
    /// What its connections share (an upgrade's successor serves the
    /// connections it adopts with it).
    pub(crate) ctx: ConnContext,
}

/// Bind an input's socket(s) and start accepting; `tracker` tracks every
/// task so shutdown can wait for connections to drain.
pub async fn start(
    name: &str,
    config: &InputConfig,
    pipelines: watch::Receiver<Arc<Pipeline>>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<RunningInput, BindError> {
    let key = ListenKey::of(name, config);
    // Fix the base of defaulted `relativeCreated` before any record arrives.
    crate::codec::defaults::start_time();
    // Take the descriptor kept in reserve while descriptors are plentiful.
    spare_fd();
    let removed = shutdown.child_token();
    let stats = Arc::new(InputStats::default());
    let ctx = ConnContext {
        key: key.clone(),
        pipelines,
        shutdown,
        removed: removed.clone(),
        stats: stats.clone(),
    };
    let conn_ctx = ctx.clone();
    let err = |reason: String| BindError::Bind {
        name: name.to_string(),
        key: key.clone(),
        reason,
    };
    let (local, fds) = match &config.kind {
        InputKind::Tcp { address } => tcp::start(address, ctx, tracker).await.map_err(err)?,
        InputKind::Unix { path, mode } => unix::start(path, *mode, ctx, tracker).map_err(err)?,
        InputKind::Udp { address } => udp::start(address, ctx, tracker).await.map_err(err)?,
        InputKind::Nats(n) => (crate::nats::input::start(name, n, ctx, tracker), Vec::new()),
    };
    Ok(RunningInput {
        key,
        local,
        fds,
        removed,
        stats,
        ctx: conn_ctx,
    })
}

/// Every address `address` (`host:port`) names: `localhost` is both
/// 127.0.0.1 and ::1, as the cookbook's `host` default.
pub(crate) async fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("resolves to no address".to_string());
    }
    Ok(addrs)
}

/// The current pipeline's stage for this connection's input, switching to
/// a newer pipeline only if it still has the input (docs/decisions.md,
/// "Reload": a connection on a removed input stays on the old pipeline).
pub(crate) fn refresh(
    ctx: &mut ConnContext,
    current: &mut Arc<Pipeline>,
) -> Option<Arc<crate::pipeline::InputStage>> {
    if ctx.pipelines.has_changed().unwrap_or(false) {
        let newest = ctx.pipelines.borrow_and_update().clone();
        if newest.input_by_key(&ctx.key).is_some() {
            *current = newest;
        }
    }
    current.input_by_key(&ctx.key).cloned()
}

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
                    return ack::serve(stream, buf, peer, ctx, open, conn).await;
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
        let mut records = Vec::new();
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
        pipeline.dispatch(&stage, records, None).await;
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
fn frame_timeout_of(pipeline: &Pipeline, ctx: &ConnContext) -> Duration {
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

/// A stream whose readiness can be awaited before any buffer exists, so an
/// idle connection holds no read buffer.
pub(crate) trait Readable {
    /// Wait until a read would probably not block.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// A duplicate of the connection's fd for an upgrade's successor, or
    /// `None` if the connection cannot move (TLS: its session state lives
    /// in this process).
    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        None
    }
}

impl Readable for tokio::net::TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }

    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use std::os::fd::AsFd;
        Some(self.as_fd().try_clone_to_owned())
    }
}

impl Readable for tokio::net::UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }

    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use std::os::fd::AsFd;
        Some(self.as_fd().try_clone_to_owned())
    }
}

/// Connections that may hold a read's data at once, from the read until
/// its records are queued to the outputs. Ten thousand senders that all
/// send at once then cost this many buffers and batches, not ten thousand:
/// the rest of their bytes wait in the kernel's socket buffers. A
/// connection takes a slot only once its socket is readable and gives it
/// back if the read finds nothing, so a client that stops in the middle of
/// a frame never holds one while it is silent.
const READ_SLOTS: usize = 64;
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READ_SLOTS);

/// What one [`read_some`] gave.
enum Read {
    /// Bytes read (0: EOF), the room there was, and the read slot to hold
    /// until the records are dispatched.
    Data(usize, usize, Option<tokio::sync::SemaphorePermit<'static>>),
    /// Nothing arrived before the frame deadline.
    FrameTimeout,
    /// The partial-frame budget closed this connection.
    Evicted,
}

/// One read: wait until the socket is readable (holding no slot, and no
/// buffer if there is none), take a read slot, make room for `want` bytes
/// and try the read once. If it would block after all (a spurious wake-up,
/// or a TLS record still incomplete), give the slot back and wait again.
/// `deadline`: when to give up waiting (the frame timeout).
async fn read_some<S: AsyncRead + Readable + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
    deadline: Option<Instant>,
) -> std::io::Result<Read> {
    let mut wait = buf.capacity() == 0;
    loop {
        if wait {
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, stream.readable()).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(Read::FrameTimeout),
                },
                None => stream.readable().await?,
            }
        }
        // The semaphore is never closed; without a permit, read anyway.
        let permit = READS.acquire().await.ok();
        if buf.capacity() - buf.len() < want / 4 {
            buf.reserve(want);
        }
        let room = buf.capacity() - buf.len();
        let attempt = {
            let mut read = std::pin::pin!(stream.read_buf(buf));
            std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await
        };
        match attempt {
            std::task::Poll::Ready(r) => return Ok(Read::Data(r?, room, permit)),
            std::task::Poll::Pending => {
                drop(permit);
                wait = true;
                // A partial frame waits in a buffer sized to what arrived,
                // not to the reads it may still take.
                if buf.capacity() > 2 * buf.len() + SMALL_READ {
                    *buf = BytesMut::from(&buf[..]);
                }
            }
        }
    }
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

pub(crate) fn frame_reason(e: &crate::codec::framing::FrameError) -> &'static str {
    use crate::codec::framing::FrameError;
    match e {
        FrameError::TooLarge { .. } => "oversized_frame",
        FrameError::Truncated { .. } => "truncated_frame",
        FrameError::DatagramLength { .. } => "bad_datagram",
    }
}

/// Decode one frame; a frame that does not decode drops only its record.
pub(crate) fn decode_into(
    stage: &crate::pipeline::InputStage,
    ctx: &ConnContext,
    frame: bytes::Bytes,
    records: &mut Vec<Record>,
) {
    match stage.decoder.decode_keeping(frame, stage.keep_now()) {
        Ok(record) => records.push(record),
        Err(e) => {
            ctx.stats.reject(e.reason());
            warn_limited(&stage.name, e.reason(), &format!("{e}; record dropped"));
        }
    }
}

/// A warning about bad input, at most one line per second per input and
/// kind, with the count of the ones suppressed.
pub(crate) fn warn_limited(input: &str, kind: &str, message: &str) {
    static LIMITER: std::sync::OnceLock<crate::ratelimit::Limiter> = std::sync::OnceLock::new();
    let limiter = LIMITER.get_or_init(crate::ratelimit::Limiter::new);
    if let Some(suppressed) = limiter.allow(&format!("{input}\0{kind}")) {
        tracing::warn!(input = %input, kind = %kind, suppressed, "{message}");
    }
}
