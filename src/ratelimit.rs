//! Rate-limited warnings: one line per second per key, with the count of
//! the ones suppressed since the last line (docs/decisions.md, "Inputs,
//! limits and shutdown").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A set of per-key one-per-second gates, shared by every task.
#[derive(Debug, Default)]
pub struct Limiter {
    gates: Mutex<HashMap<String, Gate>>,
}

#[derive(Debug)]
struct Gate {
    last: Instant,
    suppressed: u64,
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// Whether a warning for `key` may be logged now. `Some(n)`: log it,
    /// mentioning `n` suppressed since the last one; `None`: stay quiet.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        // A poisoned lock only means another thread panicked mid-update of
        // a counter; the counters are still usable.
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        match gates.get_mut(key) {
            Some(g) if now.duration_since(g.last) < Duration::from_secs(1) => {
                g.suppressed += 1;
                None
            }
            Some(g) => {
                let n = g.suppressed;
                g.last = now;
                g.suppressed = 0;
                Some(n)
            }
            None => {
                gates.insert(
                    key.to_string(),
                    Gate {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_per_key() {
        let l = Limiter::new();
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
    }
}
