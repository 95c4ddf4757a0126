//! The `tcp` input: SocketHandler's transport.

use std::os::fd::{AsRawFd, RawFd};

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::accept::listen;
use super::tls::Acceptors;
use super::{admit, serve_stream, ConnContext};

/// Resolve `address` (every address it names: `localhost` is both
/// 127.0.0.1 and ::1, as the cookbook's `host` default) and bind each.
/// Returns the bound addresses.
pub(crate) async fn start(
    address: &str,
    ctx: ConnContext,
    tracker: &TaskTracker,
) -> Result<(Vec<String>, Vec<RawFd>), String> {
    let addrs = super::resolve(address).await?;
    let mut listeners = Vec::new();
    for addr in &addrs {
        let bound = match super::inherit::take_tcp(addr) {
            Some(l) => l
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l)),
            None => bind(*addr),
        };
        match bound {
            Ok(l) => listeners.push(l),
            // `localhost` may name ::1 on a host without IPv6: skip that one
            // as long as another address bound.
            Err(e) if addrs.len() > 1 && addr.is_ipv6() => {
                tracing::debug!(address = %addr, error = %e, "Skipping IPv6 address.");
            }
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
    let mut local = Vec::new();
    let mut fds = Vec::new();
    for l in listeners {
        local.push(l.local_addr().map(|a| a.to_string()).unwrap_or_default());
        fds.push(l.as_raw_fd());
        let ctx = ctx.clone();
        let t = tracker.clone();
        tracker.spawn(accept_loop(l, ctx, t));
    }
    Ok((local, fds))
}

/// Many senders (a gunicorn restart, a pool of workers) connect at once:
/// a deep accept queue keeps their connects from waiting on SYN retries.
/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Bind and listen on `addr` as `TcpListener::bind` does (SO_REUSEADDR),
/// with a deeper backlog than its 128.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept_loop(listener: TcpListener, ctx: ConnContext, tracker: TaskTracker) {
    let mut tls = Acceptors::default();
    listen(&listener, &ctx, |stream, peer| {
        take(stream, peer, &ctx, &tracker, &mut tls)
    })
    .await;
}

/// Serve a connection just accepted, unless the input is at
/// `max_connections` or its TLS files do not load.
fn take(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &ConnContext,
    tracker: &TaskTracker,
    tls: &mut Acceptors,
) {
    let Some(open) = admit(ctx, &peer) else {
        return;
    };
    match tls.for_new_connection(ctx) {
        None => {
            tracker.spawn(serve_stream(stream, Some(peer), ctx.clone(), open));
        }
        Some(Ok(config)) => {
            tracker.spawn(super::tls::serve(stream, peer, config, ctx.clone(), open));
        }
        Some(Err(())) => ctx.stats.close("tls"),
    }
}
