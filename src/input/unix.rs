//! The `unix` input: a Unix domain stream socket (the cookbook's `socket`).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UnixListener;
use tokio_util::task::TaskTracker;

use super::accept::listen;
use super::{admit, serve_stream, ConnContext};

/// Set during an upgrade: the successor listens on our socket files, so
/// shutting down must not remove them.
pub static KEEP_SOCKET_FILES: AtomicBool = AtomicBool::new(false);

/// Bind the socket at `path`, replacing a stale socket file left by a dead
/// process, refusing a path where something is listening or which is not a
/// socket. Returns the path.
pub(crate) fn start(
    path: &Path,
    mode: Option<u32>,
    ctx: ConnContext,
    tracker: &TaskTracker,
) -> Result<(Vec<String>, Vec<RawFd>), String> {
    if let Some(l) = super::inherit::take_unix(path) {
        // Handed over by systemd or the previous logrelay: already bound,
        // with its mode; the file must not be checked as stale (it is live).
        let listener = l
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(l))
            .map_err(|e| e.to_string())?;
        let fd = listener.as_raw_fd();
        let t = tracker.clone();
        tracker.spawn(accept_loop(listener, path.to_path_buf(), ctx, t));
        return Ok((vec![path.display().to_string()], vec![fd]));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err("the path exists and is not a socket".to_string());
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err("another process is listening there".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // Nobody listens: a stale socket file, safe to replace.
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale socket: {e}"))?;
            }
            Err(e) => return Err(format!("cannot check existing socket: {e}")),
        }
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create directory: {e}"))?;
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| e.to_string())?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set mode {mode:o}: {e}"))?;
    }
    let fd = listener.as_raw_fd();
    let t = tracker.clone();
    tracker.spawn(accept_loop(listener, path.to_path_buf(), ctx, t));
    Ok((vec![path.display().to_string()], vec![fd]))
}

async fn accept_loop(
    listener: UnixListener,
    path: PathBuf,
    ctx: ConnContext,
    tracker: TaskTracker,
) {
    listen(&listener, &ctx, |stream, _| take(stream, &ctx, &tracker)).await;
    drop(listener);
    // tokio leaves the socket file behind; remove it so the next start
    // (or a cookbook client) does not meet a stale file — unless we are
    // handing the socket to our successor, which still listens on it.
    if !KEEP_SOCKET_FILES.load(Ordering::Relaxed) {
        let _ = std::fs::remove_file(&path);
    }
}

/// Serve a connection just accepted, unless the input is at
/// `max_connections`.
fn take(stream: tokio::net::UnixStream, ctx: &ConnContext, tracker: &TaskTracker) {
    if let Some(open) = admit(ctx, &"a local process") {
        tracker.spawn(serve_stream(stream, None, ctx.clone(), open));
    }
}
