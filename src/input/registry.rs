//! The open connections of every input, for the status page: who is
//! connected, since when, and how much each has sent; and why connections
//! closed, by reason.
//!
//! A connection task registers when it starts ([`open`]) and holds the
//! returned [`Conn`] until it ends; dropping it unregisters the connection
//! and counts its close reason. The per-connection counters are two relaxed
//! atomic adds per read, next to the input's own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::ConnContext;

/// One open connection, as the status page shows it.
#[derive(Debug)]
pub struct ConnInfo {
    /// The input's listen key (`tcp://127.0.0.1:9020`).
    pub key: String,
    /// The peer's address, or `unix` for a Unix socket.
    pub peer: String,
    /// When it was accepted, seconds since the Unix epoch.
    pub since: f64,
    /// Records decoded from it.
    pub records: AtomicU64,
    /// Bytes read from it.
    pub bytes: AtomicU64,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Arc<ConnInfo>>,
    /// Closed connections by (listen key, reason).
    closed: HashMap<(String, &'static str), u64>,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

fn lock() -> std::sync::MutexGuard<'static, Table> {
    table().lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered connection; unregisters (and counts why it closed) on drop.
pub(crate) struct Conn {
    id: u64,
    info: Arc<ConnInfo>,
    ctx_shutdown: tokio_util::sync::CancellationToken,
    ctx_removed: tokio_util::sync::CancellationToken,
    reason: Option<&'static str>,
}

/// Register a connection of the input `ctx` serves.
pub(crate) fn open(ctx: &ConnContext, peer: Option<SocketAddr>) -> Conn {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let info = Arc::new(ConnInfo {
        key: ctx.key.to_string(),
        peer: peer.map_or_else(|| "unix".to_string(), |p| p.to_string()),
        since,
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let mut t = lock();
    t.next += 1;
    let id = t.next;
    t.open.insert(id, info.clone());
    Conn {
        id,
        info,
        ctx_shutdown: ctx.shutdown.clone(),
        ctx_removed: ctx.removed.clone(),
        reason: None,
    }
}

impl Conn {
    /// Count `n` bytes read.
    pub(crate) fn bytes(&self, n: usize) {
        self.info.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` records decoded.
    pub(crate) fn records(&self, n: usize) {
        self.info.records.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Say why the connection is closing (a framing error, a read error);
    /// otherwise it closed at end of stream, shutdown or input removal.
    pub(crate) fn closing(&mut self, reason: &'static str) {
        self.reason = Some(reason);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let reason = self.reason.unwrap_or(if self.ctx_shutdown.is_cancelled() {
            "shutdown"
        } else if self.ctx_removed.is_cancelled() {
            "input_removed"
        } else {
            "eof"
        });
        let mut t = lock();
        t.open.remove(&self.id);
        *t.closed.entry((self.info.key.clone(), reason)).or_default() += 1;
    }
}

/// The open connections, oldest first.
pub fn open_connections() -> Vec<Arc<ConnInfo>> {
    let t = lock();
    let mut v: Vec<(u64, Arc<ConnInfo>)> = t.open.iter().map(|(i, c)| (*i, c.clone())).collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, c)| c).collect()
}

/// Closed connections so far, by listen key and reason.
pub fn closed_connections() -> Vec<(String, &'static str, u64)> {
    let t = lock();
    let mut v: Vec<_> = t
        .closed
        .iter()
        .map(|((k, r), n)| (k.clone(), *r, *n))
        .collect();
    v.sort();
    v
}
