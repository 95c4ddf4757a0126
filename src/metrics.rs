//! Process-wide counters (the Prometheus endpoint is not served yet).

use std::sync::atomic::{AtomicU64, Ordering};

static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
static RELOADS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Count a reload attempt.
pub fn reload(ok: bool) {
    if ok {
        RELOADS_OK.fetch_add(1, Ordering::Relaxed);
    } else {
        RELOADS_FAILED.fetch_add(1, Ordering::Relaxed);
    }
}
