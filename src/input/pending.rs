//! The budget of partial frames (`max_pending_bytes`).
//!
//! A connection that has read part of a frame keeps those bytes until the
//! rest arrives. One hostile client can send the first megabytes of many
//! 16 MiB frames and stop, so the bytes held this way across all
//! connections have a ceiling: when a read takes the total over it, the
//! connections stalled longest mid-frame are closed until the total is
//! back under it, each counted (`stalled`) and logged naming its peer.
//! The connection that made the read is a candidate like any other: the
//! victim is always the one whose partial frame is oldest.
//!
//! Every connection holds a [`Pending`] slot. Its bytes are tracked only
//! while it holds a partial frame, so a connection between frames (most of
//! them, most of the time) costs nothing here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes held in partial frames, by connection, oldest partial frame
/// first: `(since, id) -> (bytes, the connection's shared state)`.
type Held = BTreeMap<(Instant, u64), (usize, Arc<Shared>)>;

/// The process-wide ledger.
struct Ledger {
    held: Mutex<Held>,
    /// The sum of `held`'s bytes.
    total: AtomicUsize,
    /// `max_pending_bytes`.
    limit: AtomicUsize,
    next_id: AtomicU64,
}

fn ledger() -> &'static Ledger {
    static LEDGER: OnceLock<Ledger> = OnceLock::new();
    LEDGER.get_or_init(|| Ledger {
        held: Mutex::new(BTreeMap::new()),
        total: AtomicUsize::new(0),
        limit: AtomicUsize::new(crate::config::DEFAULT_MAX_PENDING_BYTES),
        next_id: AtomicU64::new(1),
    })
}

/// Set `max_pending_bytes` (at start-up and on every reload).
pub fn set_limit(bytes: usize) {
    ledger().limit.store(bytes, Ordering::Relaxed);
}

/// Bytes held in partial frames across every connection now.
pub fn total() -> usize {
    ledger().total.load(Ordering::Relaxed)
}

/// What the ledger and a connection share.
#[derive(Default)]
struct Shared {
    /// Set when the ledger closed the connection to free its bytes.
    evicted: AtomicBool,
    /// Wakes the connection so it notices.
    wake: Notify,
}

/// One connection's entry in the ledger.
pub(crate) struct Pending {
    id: u64,
    shared: Arc<Shared>,
    /// `Some((since, bytes))` while a partial frame is held.
    held: Option<(Instant, usize)>,
}

impl Pending {
    pub(crate) fn new() -> Pending {
        Pending {
            id: ledger().next_id.fetch_add(1, Ordering::Relaxed),
            shared: Arc::default(),
            held: None,
        }
    }

    /// Record that the connection now holds `bytes` of a partial frame;
    /// `progressed` says whether it completed a frame since the last call
    /// (its stall then starts anew). Returns false when the connection was
    /// evicted and must close. May evict others (or this one) to stay
    /// within the budget.
    pub(crate) fn set(&mut self, bytes: usize, progressed: bool) -> bool {
        if self.evicted() {
            return false;
        }
        let l = ledger();
        let old = self.held.map(|(_, b)| b).unwrap_or(0);
        if bytes == old && (bytes == 0 || !progressed) {
            return true;
        }
        let mut held = l.held.lock().unwrap_or_else(|e| e.into_inner());
        if self.shared.evicted.load(Ordering::Relaxed) {
            return false;
        }
        let prev = self.held.take();
        if let Some((since, _)) = prev {
            held.remove(&(since, self.id));
        }
        l.total.fetch_sub(old, Ordering::Relaxed);
        if bytes == 0 {
            return true;
        }
        // A stall starts with the partial frame and lasts until a frame
        // completes.
        let since = match prev {
            Some((since, _)) if !progressed => since,
            _ => Instant::now(),
        };
        held.insert((since, self.id), (bytes, self.shared.clone()));
        self.held = Some((since, bytes));
        let total = l.total.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let limit = l.limit.load(Ordering::Relaxed);
        if total > limit {
            let mut total = total;
            while total > limit {
                let Some(((_, id), (b, victim))) = held.pop_first() else {
                    break;
                };
                victim.evicted.store(true, Ordering::Relaxed);
                victim.wake.notify_one();
                l.total.fetch_sub(b, Ordering::Relaxed);
                total -= b;
                if id == self.id {
                    self.held = None;
                }
            }
        }
        !self.shared.evicted.load(Ordering::Relaxed)
    }

    /// Whether the ledger closed this connection.
    pub(crate) fn evicted(&self) -> bool {
        self.shared.evicted.load(Ordering::Relaxed)
    }

    /// Completes when the ledger closes this connection.
    pub(crate) async fn wait_evicted(&self) {
        while !self.evicted() {
            self.shared.wake.notified().await;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((since, bytes)) = self.held.take() {
            let l = ledger();
            let mut held = l.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.remove(&(since, self.id)).is_some() {
                l.total.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
    }
}
