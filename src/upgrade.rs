//! Zero-downtime upgrade of the binary itself (SIGUSR2).
//!
//! The running logrelay starts its successor (the executable now at its own
//! path, with the same arguments) and hands it every listening socket as an
//! inherited fd (as Fluentd's zero-downtime restart and systemd socket
//! activation do). The successor takes them over instead of binding, says
//! it is ready through a pipe, and only then does the old process stop
//! accepting and drain. Both accept from the same kernel socket during the
//! overlap, so no connection is ever refused.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use crate::input::inherit::UPGRADE_FDS_ENV;

const READY_FD_ENV: &str = "LOGRELAY_READY_FD";
/// How long the successor may take to come up before the upgrade is
/// abandoned (the old process then keeps running).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static READY_FD: OnceLock<RawFd> = OnceLock::new();

/// Read (and clear) the upgrade variables. Call once at start-up, before
/// any other thread exists.
pub fn init_from_env() {
    if let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    {
        let _ = READY_FD.set(fd);
    }
    // Edition 2021: remove_var is safe; we are still single-threaded.
    std::env::remove_var(READY_FD_ENV);
    crate::input::inherit::init_from_env();
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

/// Start the successor with `fds` (our listening sockets) and wait until it
/// reports that it listens. Returns its pid.
pub async fn start_successor(fds: Vec<RawFd>) -> Result<u32, UpgradeError> {
    let (mut reader, writer) = std::io::pipe().map_err(UpgradeError::Spawn)?;
    let exe = std::env::current_exe().map_err(UpgradeError::Spawn)?;
    let list: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    let inherit: Vec<RawFd> = fds.iter().copied().chain([writer.as_raw_fd()]).collect();
    set_inheritable(&inherit, true);
    let spawned = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(UPGRADE_FDS_ENV, list.join(","))
        .env(READY_FD_ENV, writer.as_raw_fd().to_string())
        .spawn();
    // Later children must not inherit them.
    set_inheritable(&inherit, false);
    drop(writer);
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
