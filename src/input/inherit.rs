//! Listening sockets inherited at start-up instead of bound: from systemd
//! socket activation (`LISTEN_PID` + `LISTEN_FDS`, fds 3..3+n) or from the
//! previous logrelay during a zero-downtime upgrade (`LOGRELAY_LISTEN_FDS`,
//! a comma-separated list of fd numbers).
//!
//! An inherited socket is used by the input whose address (or path) it is
//! bound to; the ones no input claims are closed after start-up. Because
//! the same socket stays open across the handover, the kernel keeps
//! queueing connections the whole time: no client is ever refused.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The env var an upgrading logrelay passes its listening fds in.
pub const UPGRADE_FDS_ENV: &str = "LOGRELAY_LISTEN_FDS";

/// One inherited socket, by what it is bound to.
enum Inherited {
    Tcp(SocketAddr, std::net::TcpListener),
    Udp(SocketAddr, std::net::UdpSocket),
    Unix(PathBuf, std::os::unix::net::UnixListener),
}

static POOL: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());

/// Take over the sockets named by the environment, and remove those
/// variables so children we start later do not see them. Call once, at
/// start-up, before any other thread exists.
pub fn init_from_env() {
    let mut fds: Vec<RawFd> = Vec::new();
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if pid_matches {
        if let Some(n) = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<RawFd>().ok())
        {
            fds.extend(3..3 + n.clamp(0, 1024));
        }
    }
    if let Ok(list) = std::env::var(UPGRADE_FDS_ENV) {
        fds.extend(
            list.split(',')
                .filter_map(|s| s.trim().parse::<RawFd>().ok()),
        );
    }
    for var in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        UPGRADE_FDS_ENV,
    ] {
        // Edition 2021: remove_var is safe; we are still single-threaded.
        std::env::remove_var(var);
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let mut taken = std::collections::HashSet::new();
    for fd in fds {
        if fd < 3 || !taken.insert(fd) {
            continue;
        }
        // SAFETY: F_GETFD only reads the fd's flags; it tells us whether
        // the fd is open at all (a parent may list one it then closed).
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            tracing::warn!(fd, "Inherited fd is not open; ignored.");
            continue;
        }
        // SAFETY: the fd is open (checked above), was handed to us by our
        // parent (systemd or the previous logrelay) for exactly this use,
        // nothing else in this process has touched it (we run before any
        // other code opens files), and `taken` makes sure we take each fd
        // number once.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
        match classify(socket) {
            Some(s) => pool.push(s),
            None => tracing::warn!(fd, "Inherited fd is not a listening socket; closed."),
        }
    }
    if !pool.is_empty() {
        tracing::info!(count = pool.len(), "Inherited listening sockets.");
    }
}

fn classify(socket: socket2::Socket) -> Option<Inherited> {
    let _ = socket.set_cloexec(true);
    let kind = socket.r#type().ok()?;
    let local = socket.local_addr().ok()?;
    if let Some(addr) = local.as_socket() {
        if kind == socket2::Type::STREAM {
            return Some(Inherited::Tcp(addr, socket.into()));
        }
        if kind == socket2::Type::DGRAM {
            return Some(Inherited::Udp(addr, socket.into()));
        }
        return None;
    }
    let path = local.as_pathname()?.to_path_buf();
    (kind == socket2::Type::STREAM).then(|| Inherited::Unix(path, socket.into()))
}

/// An inherited TCP listener bound to `addr`, if any.
pub fn take_tcp(addr: &SocketAddr) -> Option<std::net::TcpListener> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool
        .iter()
        .position(|s| matches!(s, Inherited::Tcp(a, _) if a == addr || (addr.port() == 0 && a.ip() == addr.ip())))?;
    match pool.swap_remove(i) {
        Inherited::Tcp(_, l) => Some(l),
        _ => None,
    }
}

/// An inherited UDP socket bound to `addr`, if any.
pub fn take_udp(addr: &SocketAddr) -> Option<std::net::UdpSocket> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool
        .iter()
        .position(|s| matches!(s, Inherited::Udp(a, _) if a == addr))?;
    match pool.swap_remove(i) {
        Inherited::Udp(_, s) => Some(s),
        _ => None,
    }
}

/// An inherited Unix listener bound to `path`, if any.
pub fn take_unix(path: &Path) -> Option<std::os::unix::net::UnixListener> {
    let abs = std::path::absolute(path).ok();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool.iter().position(|s| match s {
        Inherited::Unix(p, _) => p == path || abs.as_deref() == Some(p.as_path()),
        _ => false,
    })?;
    match pool.swap_remove(i) {
        Inherited::Unix(_, l) => Some(l),
        _ => None,
    }
}

/// Close every inherited socket no input claimed.
pub fn close_unclaimed() {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    for s in pool.drain(..) {
        let what = match &s {
            Inherited::Tcp(a, _) => format!("tcp://{a}"),
            Inherited::Udp(a, _) => format!("udp://{a}"),
            Inherited::Unix(p, _) => format!("unix://{}", p.display()),
        };
        tracing::info!(socket = %what, "Inherited socket not in the config; closed.");
    }
}
