//! Inputs: listening sockets and the connections they accept.
//!
//! An input is identified across reloads by its [`ListenKey`] (what it is
//! bound to), not by its name: a reload that keeps an address keeps the
//! bound socket and every open connection, even if the input was renamed or
//! its decoder changed. Each connection reads into a large buffer, cuts
//! every whole frame out of it, decodes them into one batch and hands the
//! batch to the newest pipeline that still has its input.
//!
//! `tcp.rs`, `unix.rs` and `udp.rs` bind each kind of socket; `accept.rs`
//! admits the connections they accept, `stream.rs` serves a stream
//! connection and `read.rs` makes its reads.

mod accept;
pub(crate) mod ack;
pub mod handoff;
pub mod inherit;
pub mod nats;
pub mod pending;
mod read;
pub mod registry;
pub(crate) mod senders;
mod stream;
pub mod tcp;
mod tls;
pub mod udp;
pub mod unix;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::config::ListenKey;
use crate::config::{InputConfig, InputKind};
use crate::pipeline::Pipeline;
use crate::record::Record;
use accept::spare_fd;
pub(crate) use accept::{admit, Open};
pub(crate) use read::{Readable, READ_CHUNK};
pub(crate) use stream::{
    close_stalled, frame_timeout_of, peer_name, serve_stream, serve_stream_from,
};

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
        InputKind::Nats(n) => (nats::start(name, n, ctx, tracker), Vec::new()),
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
