//! Open connections handed to the successor during an upgrade (SIGUSR2),
//! and adopted by it.
//!
//! Old process: [`request`] asks every plain stream connection (TCP or
//! Unix, not TLS: a rustls session cannot move; not acknowledged ones:
//! their sender reconnects and re-sends) to stop at its next read, after
//! dispatching the whole frames it holds, and to [`park`] here: a
//! duplicate of its fd, the bytes of the partial frame it had read, and
//! what it needs to be served again. [`collect`] waits until every one of
//! them parked (or stayed), and hands the list to the upgrade, which sends
//! them to the successor (src/upgrade/wire.rs) and [`resume`]s those it
//! refused.
//!
//! Successor: [`Adopter::adopt`] serves each connection received on its
//! input with the same [`ListenKey`], starting from the partial frame,
//! exactly as if it had read those bytes itself.
//!
//! An upgrade happens once per process (the old one exits after it), so
//! the state is process-wide.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ConnContext, ListenKey, Open};

/// A connection stopped at a frame boundary, waiting to be handed over.
pub(crate) struct Parked {
    /// Its input.
    pub key: ListenKey,
    /// The peer (None for a Unix socket).
    pub peer: Option<SocketAddr>,
    /// A duplicate of the connection's fd: the connection stays open
    /// while this process holds it, whatever the successor does.
    pub fd: OwnedFd,
    /// The bytes of a frame not complete yet.
    pub buf: BytesMut,
    /// What serving it again here needs.
    pub ctx: ConnContext,
    /// Its place among the input's open connections.
    pub open: Open,
}

struct State {
    /// Connections (and accept loops, which may still start some) that
    /// will park once asked; [`collect`] waits until none is left.
    live: usize,
    /// Parked connections; `None` once [`collect`] took them, after which
    /// a connection asked to park stays in this process.
    parked: Option<Vec<Parked>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    live: 0,
    parked: Some(Vec::new()),
});
static CHANGED: Notify = Notify::const_new();

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn token() -> &'static CancellationToken {
    static TOKEN: OnceLock<CancellationToken> = OnceLock::new();
    TOKEN.get_or_init(CancellationToken::new)
}

/// A connection or accept loop counted by [`collect`] while it lives.
#[derive(Debug)]
pub(crate) struct Live(());

impl Live {
    /// Register; `None` once the handover is collected (then whatever
    /// starts now stays in this process).
    pub(crate) fn register() -> Option<Live> {
        let mut s = lock();
        s.parked.as_ref()?;
        s.live += 1;
        Some(Live(()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        lock().live -= 1;
        CHANGED.notify_waiters();
    }
}

/// Ask every connection holding a [`Live`] to park.
pub(crate) fn request() {
    token().cancel();
}

/// Resolves once [`request`] was called.
pub(crate) async fn requested() {
    token().cancelled().await
}

/// Park a connection; gives it back if the handover was already collected
/// (it then stays in this process). Its [`Live`] must have been dropped by
/// the caller's `Open` moving in here: the count goes down as it parks.
pub(crate) fn park(mut conn: Box<Parked>) -> Result<(), Box<Parked>> {
    let live = conn.open.live.take();
    let mut s = lock();
    let Some(parked) = s.parked.as_mut() else {
        drop(s);
        conn.open.live = live;
        return Err(conn);
    };
    parked.push(*conn);
    drop(s);
    // Counted down only now: `collect` must not see 0 before it is in.
    drop(live);
    Ok(())
}

/// Wait until every live connection parked or stayed, at most `limit`,
/// and take the parked ones. After this, nothing parks any more.
pub(crate) async fn collect(limit: Duration) -> Vec<Parked> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = CHANGED.notified();
        {
            let mut s = lock();
            if s.live == 0 || tokio::time::Instant::now() >= deadline {
                if s.live > 0 {
                    tracing::warn!(
                        connections = s.live,
                        "Upgrade: connections did not stop in time; this process keeps serving them."
                    );
                }
                return s.parked.take().unwrap_or_default();
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

/// Serve parked connections in this process again (the successor did not
/// take them): until they close or `drain_seconds` pass, as connections of
/// a removed input.
pub(crate) fn resume(conns: Vec<Parked>, tracker: &TaskTracker) {
    for conn in conns {
        let Parked {
            key,
            peer,
            fd,
            buf,
            ctx,
            open,
        } = conn;
        let served = match key {
            ListenKey::Tcp(_) => tcp_stream(fd).map(|s| {
                tracker.spawn(super::serve_stream_from(s, peer, ctx, open, buf));
            }),
            ListenKey::Unix(_) => unix_stream(fd).map(|s| {
                tracker.spawn(super::serve_stream_from(s, None, ctx, open, buf));
            }),
            ListenKey::Udp(_) | ListenKey::Nats(_) => Ok(()),
        };
        if let Err(e) = served {
            tracing::error!(input = %key, peer = %super::peer_name(peer), error = %e, "Upgrade: cannot serve a connection again; closed.");
        }
    }
}

fn tcp_stream(fd: OwnedFd) -> std::io::Result<tokio::net::TcpStream> {
    let s = std::net::TcpStream::from(fd);
    s.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(s)
}

fn unix_stream(fd: OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// The successor's side: serves the connections the old process hands it.
#[derive(Clone)]
pub struct Adopter {
    inputs: HashMap<ListenKey, ConnContext>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
}

impl Adopter {
    pub(crate) fn new(
        inputs: HashMap<ListenKey, ConnContext>,
        tracker: TaskTracker,
        runtime: tokio::runtime::Handle,
    ) -> Adopter {
        Adopter {
            inputs,
            tracker,
            runtime,
        }
    }

    /// Serve `fd`, a connection of the input `key` that had read `buf`
    /// (a partial frame), on that input; or say why not (`fd` is then
    /// closed here; the old process still holds the connection).
    pub fn adopt(
        &self,
        key: &ListenKey,
        peer: Option<SocketAddr>,
        fd: OwnedFd,
        buf: BytesMut,
    ) -> Result<(), String> {
        let ctx = self
            .inputs
            .get(key)
            .ok_or_else(|| "no input with this address in the new config".to_string())?;
        if ctx
            .pipelines
            .borrow()
            .input_by_key(key)
            .is_some_and(|s| s.config.tls.is_some())
        {
            return Err("the input uses TLS now; the connection is plain".to_string());
        }
        let socket = socket2::Socket::from(fd);
        let domain = socket.domain().map_err(|e| e.to_string())?;
        let unix = domain == socket2::Domain::UNIX;
        if unix != matches!(key, ListenKey::Unix(_)) || matches!(key, ListenKey::Udp(_)) {
            return Err(format!("a {domain:?} socket does not belong to {key}"));
        }
        let _entered = self.runtime.enter();
        let fd = OwnedFd::from(socket);
        if unix {
            let stream = unix_stream(fd).map_err(|e| e.to_string())?;
            let open = super::admit(ctx, &"a local process").ok_or("max_connections")?;
            self.tracker.spawn(super::serve_stream_from(
                stream,
                None,
                ctx.clone(),
                open,
                buf,
            ));
        } else {
            let stream = tcp_stream(fd).map_err(|e| e.to_string())?;
            let name = super::peer_name(peer);
            let open = super::admit(ctx, &name).ok_or("max_connections")?;
            self.tracker.spawn(super::serve_stream_from(
                stream,
                peer,
                ctx.clone(),
                open,
                buf,
            ));
        }
        Ok(())
    }
}
