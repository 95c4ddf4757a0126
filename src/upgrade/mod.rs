//! Zero-downtime upgrade of the binary itself (SIGUSR2).
//!
//! The running logrelay starts its successor (the executable now at its own
//! path, with the same arguments) and hands it every listening socket as an
//! inherited fd (as Fluentd's zero-downtime restart and systemd socket
//! activation do). The successor takes them over instead of binding, says
//! it is ready through a pipe, and only then does the old process stop
//! accepting. Both accept from the same kernel socket during the overlap,
//! so no connection is ever refused.
//!
//! Then the open connections move too, so that a SocketHandler, which
//! loses the record whose send meets a closed connection, never sees one
//! closed: every plain TCP and Unix connection stops at a frame boundary
//! and parks (src/input/handoff.rs); once all have, every output writes
//! what it has queued (records the old process read come first in the
//! files); then each connection's fd, input and partial frame go to the
//! successor over a socket pair ([`wire`]), which serves them on. Those it
//! cannot take, TLS connections (a rustls session cannot move) and
//! acknowledged ones (their senders reconnect and re-send what was not
//! confirmed) are served here until they close or `drain_seconds` pass.

pub mod wire;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::input::handoff::{self, Adopter, Parked};
use crate::input::inherit::UPGRADE_FDS_ENV;
use crate::server::Server;

const READY_FD_ENV: &str = "LOGRELAY_READY_FD";
/// The successor's end of the handover socket pair (see [`wire`]).
const HANDOFF_FD_ENV: &str = "LOGRELAY_HANDOFF_FD";
/// How long connections may take to park (one busy in a dispatch waits for
/// its outputs' queues) before the handover goes on without them.
const PARK_LIMIT: Duration = Duration::from_secs(5);
/// How long outputs may take to write their queues before the handover.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);
/// How long the successor may take to come up before the upgrade is
/// abandoned (the old process then keeps running).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static READY_FD: OnceLock<RawFd> = OnceLock::new();
static HANDOFF_FD: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Read (and clear) the upgrade variables. Call once at start-up, before
/// any other thread exists.
pub fn init_from_env() {
    if let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    {
        let _ = READY_FD.set(fd);
    }
    if let Some(fd) = std::env::var(HANDOFF_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2)
    {
        // SAFETY: F_GETFD only reads the fd's flags: is it open at all?
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            // SAFETY: the fd is open (checked), our parent passed it for
            // exactly this use, and nothing in this process has touched it
            // yet (we run before any other code opens files); the variable
            // is read once, here.
            let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
            let _ = socket.set_cloexec(true);
            *HANDOFF_FD.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket.into());
        }
    }
    // Edition 2021: remove_var is safe; we are still single-threaded.
    std::env::remove_var(READY_FD_ENV);
    std::env::remove_var(HANDOFF_FD_ENV);
    crate::input::inherit::init_from_env();
}

/// In a successor: take over the connections the previous process hands
/// us (on a thread of their own; they arrive once we said we are ready).
pub fn adopt_connections(adopter: Adopter) {
    let Some(sock) = HANDOFF_FD.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            let (adopted, refused) =
                wire::receive(sock, |c| adopter.adopt(&c.key, c.peer, c.fd, c.partial));
            tracing::info!(
                adopted,
                refused,
                "Upgrade: took over the previous process's connections."
            );
        });
    if let Err(e) = spawned {
        // The socket closed with the closure: the previous process keeps
        // serving every connection.
        tracing::error!(error = %e, "Upgrade: cannot take over connections.");
    }
}

/// SIGUSR2: start the successor and hand it the listening sockets and the
/// open connections. True once the successor took over: this process then
/// only finishes the connections it kept ([`Server::finish_upgrade`]).
pub async fn upgrade(server: &mut Server) -> bool {
    let (ours, theirs) = match wire::pair() {
        Ok((ours, theirs)) => (Some(ours), Some(theirs)),
        Err(e) => {
            tracing::error!(error = %e, "Upgrade: cannot create the handover socket; open connections will stay in this process.");
            (None, None)
        }
    };
    match start_successor(server.listening_fds(), theirs).await {
        Ok(pid) => {
            tracing::info!(
                successor = pid,
                "Upgrade: the successor is listening; handing over connections."
            );
        }
        Err(e) => {
            tracing::error!("Upgrade abandoned, this process keeps running: {e}");
            return false;
        }
    }
    let started = std::time::Instant::now();
    server.hand_over();
    let parked = handoff::collect(PARK_LIMIT).await;
    // Records already read from a connection reach the files before the
    // successor's first ones from it.
    server.flush_outputs(FLUSH_LIMIT).await;
    let (moved, unanswered) = match ours {
        Some(ours) => send(ours, parked, server).await,
        None => {
            handoff::resume(parked, server.tracker());
            (0, 0)
        }
    };
    tracing::info!(
        handed_over = moved,
        stayed = server.open_connections(),
        unanswered,
        ms = started.elapsed().as_millis() as u64,
        "Upgrade: connections handed over; serving the rest until they close or drain_seconds pass."
    );
    true
}

/// Send the parked connections; serve here again those the successor did
/// not take. Returns how many it took, and how many it did not answer for
/// (it holds those: it adopts them or logs why not).
async fn send(ours: OwnedFd, parked: Vec<Parked>, server: &Server) -> (usize, usize) {
    let sent = tokio::task::spawn_blocking(move || {
        let outcomes = {
            let conns: Vec<wire::Outgoing<'_>> = parked
                .iter()
                .map(|p| wire::Outgoing {
                    key: &p.key,
                    peer: p.peer,
                    fd: p.fd.as_fd(),
                    partial: &p.buf,
                })
                .collect();
            wire::hand_over(ours, &conns)
        };
        (parked, outcomes)
    })
    .await;
    let (parked, outcomes) = match sent {
        Ok(sent) => sent,
        Err(e) => {
            tracing::error!(error = %e, "Upgrade: handing over connections failed; they are closed.");
            return (0, 0);
        }
    };
    let (mut moved, mut unanswered, mut stay) = (0, 0, Vec::new());
    for (conn, outcome) in parked.into_iter().zip(outcomes) {
        match outcome {
            // Dropping `conn` closes our copy; the successor serves it.
            wire::Outcome::Adopted => moved += 1,
            wire::Outcome::Stays => stay.push(conn),
            wire::Outcome::Unanswered => {
                unanswered += 1;
                tracing::error!(input = %conn.key, peer = %crate::input::peer_name(conn.peer), "Upgrade: the successor did not confirm a connection; it holds it and serves it or logs why not.");
            }
        }
    }
    handoff::resume(stay, server.tracker());
    (moved, unanswered)
}

/// Tell the process that started us (during an upgrade) that we listen.
pub fn notify_ready() {
    if let Some(&fd) = READY_FD.get() {
        // SAFETY: our parent passed this pipe's write end for exactly this
        // message; nothing else in the process uses the fd, and this is the
        // only place that takes ownership of it (READY_FD is read once).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut pipe = std::fs::File::from(owned);
        let _ = std::io::Write::write_all(&mut pipe, b"1");
    }
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The successor could not be started.
    #[error("cannot start the successor: {0}")]
    Spawn(std::io::Error),
    /// The successor exited or did not report ready in time.
    #[error("the successor did not come up: {0}")]
    NotReady(String),
}

/// Start the successor with `fds` (our listening sockets) and `handoff`
/// (its end of the handover socket pair, closed here once it has it), and
/// wait until it reports that it listens. Returns its pid.
pub async fn start_successor(
    fds: Vec<RawFd>,
    handoff: Option<OwnedFd>,
) -> Result<u32, UpgradeError> {
    let (mut reader, writer) = std::io::pipe().map_err(UpgradeError::Spawn)?;
    let exe = std::env::current_exe().map_err(UpgradeError::Spawn)?;
    let list: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    let inherit: Vec<RawFd> = fds
        .iter()
        .copied()
        .chain([writer.as_raw_fd()])
        .chain(handoff.as_ref().map(|h| h.as_raw_fd()))
        .collect();
    set_inheritable(&inherit, true);
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env(UPGRADE_FDS_ENV, list.join(","))
        .env(READY_FD_ENV, writer.as_raw_fd().to_string());
    if let Some(h) = &handoff {
        command.env(HANDOFF_FD_ENV, h.as_raw_fd().to_string());
    }
    let spawned = command.spawn();
    // Later children must not inherit them.
    set_inheritable(&inherit, false);
    drop(writer);
    // Only the successor holds its end now: when it exits, ours reads end
    // of stream.
    drop(handoff);
    let mut child = spawned.map_err(UpgradeError::Spawn)?;
    let pid = child.id();
    let ready = tokio::task::spawn_blocking(move || {
        let mut byte = [0u8; 1];
        reader.read(&mut byte)
    });
    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(Ok(1))) => {
            // The child outlives us; it is reparented when we exit. Reap it
            // if it exits first, without blocking.
            std::thread::spawn(move || child.wait());
            Ok(pid)
        }
        Ok(Ok(Ok(_))) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(UpgradeError::NotReady(format!("it exited ({status})")))
        }
        Ok(Ok(Err(e))) => Err(UpgradeError::NotReady(e.to_string())),
        Ok(Err(e)) => Err(UpgradeError::NotReady(e.to_string())),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(UpgradeError::NotReady(format!(
                "no ready signal within {}s; killed it",
                READY_TIMEOUT.as_secs()
            )))
        }
    }
}

fn set_inheritable(fds: &[RawFd], inherit: bool) {
    for &fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and change the close-on-exec
        // flag of an fd we own (our listening sockets and our pipe); no
        // memory is involved.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                let flags = if inherit {
                    flags & !libc::FD_CLOEXEC
                } else {
                    flags | libc::FD_CLOEXEC
                };
                libc::fcntl(fd, libc::F_SETFD, flags);
            }
        }
    }
}
