//! Receipts: how an output tells the input that sent a batch that the
//! batch is written (issue 19, "confirm after the write").
//!
//! An acknowledged input (a RelayHandler, another logrelay's forward output
//! with `ack`) makes one [`Receipt`] per batch and hands a clone of it with
//! every output message the batch becomes. Each holder gives its clone back
//! with [`Receipt::written`] once its part is written: a file output after
//! its `write()` returned (and its `fsync` when asked), a forward output
//! once its peer confirmed (or, without `ack`, once the kernel took the
//! bytes). When the last clone is gone the batch's callback runs, on the
//! thread that let go of it, with whether every holder wrote its part. A
//! clone dropped without `written()` (a message lost with a dead output, a
//! file abandoned at shutdown) marks the batch failed: the input then does
//! not confirm it, and the sender sends it again.
//!
//! Plain SocketHandler connections make no receipt: they pay one `None`
//! per output message. Acknowledged ones pay an allocation and a callback
//! per batch, never per record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The callback of a batch: called once, with `true` if every holder
/// wrote its part.
type Callback = Box<dyn FnOnce(bool) + Send + Sync>;

struct Shared {
    failed: AtomicBool,
    done: Option<Callback>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The Arc's last release synchronises with every earlier
            // release, so each holder's `failed` store is visible here.
            done(!self.failed.load(Ordering::Relaxed));
        }
    }
}

/// A share of a batch's completion; see the module docs.
pub struct Receipt(Option<Arc<Shared>>);

impl Receipt {
    /// A receipt whose `done` runs once every clone is written or dropped.
    pub fn new(done: impl FnOnce(bool) + Send + Sync + 'static) -> Receipt {
        Receipt(Some(Arc::new(Shared {
            failed: AtomicBool::new(false),
            done: Some(Box::new(done)),
        })))
    }

    /// This holder's part is written.
    pub fn written(mut self) {
        self.0 = None;
    }
}

impl Clone for Receipt {
    fn clone(&self) -> Receipt {
        Receipt(self.0.clone())
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.failed.store(true, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

/// Receipts held until a write covers them.
#[derive(Debug, Default)]
pub(crate) struct Held(Vec<Receipt>);

impl Held {
    /// Hold `r` until the next [`Held::written`] or [`Held::lost`].
    pub(crate) fn push(&mut self, r: Option<Receipt>) {
        if let Some(r) = r {
            self.0.push(r);
        }
    }

    /// Everything held is written.
    pub(crate) fn written(&mut self) {
        self.0.drain(..).for_each(Receipt::written);
    }

    /// Something held was not written: fail them all.
    pub(crate) fn lost(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn probe() -> (Receipt, Arc<Mutex<Vec<bool>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        (Receipt::new(move |ok| c.lock().unwrap().push(ok)), calls)
    }

    #[test]
    fn fires_once_when_every_clone_is_written() {
        let (r, calls) = probe();
        let a = r.clone();
        let b = r.clone();
        r.written();
        a.written();
        assert!(calls.lock().unwrap().is_empty());
        b.written();
        assert_eq!(*calls.lock().unwrap(), [true]);
    }

    #[test]
    fn a_clone_dropped_unwritten_fails_the_batch() {
        let (r, calls) = probe();
        let a = r.clone();
        drop(a);
        r.written();
        assert_eq!(*calls.lock().unwrap(), [false]);
    }

    #[test]
    fn held_receipts_complete_or_fail_together() {
        let (r, calls) = probe();
        let mut held = Held::default();
        held.push(Some(r.clone()));
        held.push(None);
        r.written();
        held.written();
        assert!(held.0.is_empty());
        assert_eq!(*calls.lock().unwrap(), [true]);
        let (r, calls) = probe();
        held.push(Some(r));
        held.lost();
        assert_eq!(*calls.lock().unwrap(), [false]);
    }
}
