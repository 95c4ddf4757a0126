//! Accepting connections: the accept loop a stream input (TCP or Unix)
//! runs, admitting each connection under `max_connections` and shedding
//! clients when the process is out of file descriptors.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::{handoff, warn_limited, ConnContext, InputStats};

/// A listening stream socket: TCP or Unix.
pub(crate) trait Listener {
    /// A connection it accepts.
    type Stream;
    /// Who is at the other end.
    type Peer;

    /// Wait for the next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send;

    /// The same, without waiting: a connection already in the backlog.
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<(Self::Stream, Self::Peer)>>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Peer = std::net::SocketAddr;

    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, Self::Peer)>> + Send {
        TcpListener::accept(self)
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<(TcpStream, Self::Peer)>> {
        TcpListener::poll_accept(self, cx)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Peer = tokio::net::unix::SocketAddr;

    fn accept(&self) -> impl Future<Output = std::io::Result<(UnixStream, Self::Peer)>> + Send {
        UnixListener::accept(self)
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<(UnixStream, Self::Peer)>> {
        UnixListener::poll_accept(self, cx)
    }
}

/// Accept connections and hand each to `take` until the input is removed,
/// then take what is already in the backlog: those clients' connect()
/// succeeded and they may have sent records.
pub(crate) async fn listen<L: Listener + Sync>(
    listener: &L,
    ctx: &ConnContext,
    mut take: impl FnMut(L::Stream, L::Peer),
) {
    // An upgrade's handover waits for the connections taken below too.
    let live = handoff::Live::register();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => take(stream, peer),
                Err(e) => accept_failed(listener, ctx, &e).await,
            },
            _ = ctx.removed.cancelled() => break,
        }
    }
    while let Poll::Ready(Ok((stream, peer))) =
        std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await
    {
        take(stream, peer);
    }
    drop(live);
}

/// An open connection, counted in [`InputStats::open`] while it lives.
pub(crate) struct Open {
    stats: Arc<InputStats>,
    /// Held while the connection would move to an upgrade's successor
    /// (see `handoff`).
    pub(super) live: Option<handoff::Live>,
}

impl Open {
    /// This connection stays in this process through an upgrade (TLS, an
    /// acknowledged sender, a removed input's connection draining).
    pub(crate) fn stay(&mut self) {
        self.live = None;
    }

    /// Whether it moves to an upgrade's successor.
    pub(super) fn movable(&self) -> bool {
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
async fn accept_failed<L: Listener>(listener: &L, ctx: &ConnContext, e: &std::io::Error) {
    // Accept one waiting client and drop it at once; the loop's next
    // accept registers the real waker again.
    let shed = || {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(listener.poll_accept(&mut cx), Poll::Ready(Ok(_)))
    };
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
pub(super) fn spare_fd() -> &'static Mutex<Option<std::fs::File>> {
    static SPARE: std::sync::OnceLock<Mutex<Option<std::fs::File>>> = std::sync::OnceLock::new();
    SPARE.get_or_init(|| Mutex::new(std::fs::File::open("/dev/null").ok()))
}
