//! `sample`: keep 1 record in N per logger, deterministically.
//!
//! Config:
//! ```json
//! { "n": 10, "always_keep_level": "WARNING" }
//! ```
//! Each logger name has its own counter: its 1st, (N+1)th, (2N+1)th...
//! records are kept and the rest dropped, so the outcome depends only on
//! the order records arrive in, never on chance. Records at or above
//! `always_keep_level` (optional) are always kept and not counted.
//!
//! Counters live in the plugin instance: logrelay runs one instance per
//! concurrent worker, and recreates an instance after an error or a
//! reload, each starting its counters afresh.

use std::collections::HashMap;

use logrelay_filter::{export, level, Config, Filter, Record, Verdict};

/// Distinct logger names counted before the counters are reset.
const MAX_LOGGERS: usize = 10_000;

/// Per-logger counters.
pub struct Sample {
    n: u64,
    always_keep_level: Option<i64>,
    seen: HashMap<String, u64>,
}

impl Sample {
    /// Count one record of `logger`; whether to keep it.
    pub fn keep(&mut self, logger: &str) -> bool {
        if self.seen.len() >= MAX_LOGGERS && !self.seen.contains_key(logger) {
            // Bounded memory whatever names senders invent: start over.
            self.seen.clear();
        }
        let count = match self.seen.get_mut(logger) {
            Some(c) => c,
            None => self.seen.entry(logger.to_string()).or_insert(0),
        };
        let keep = count.is_multiple_of(self.n);
        *count += 1;
        keep
    }
}

impl Filter for Sample {
    fn init(config: &Config) -> Result<Self, String> {
        let n = match config.get("n") {
            Some(v) => v
                .as_i64()
                .filter(|&n| n >= 1)
                .ok_or("n: expected an integer >= 1")?,
            None => return Err("n: missing (keep 1 record in n per logger)".into()),
        };
        let always_keep_level = match config.get("always_keep_level") {
            Some(v) => Some(
                v.as_str()
                    .and_then(level::parse)
                    .or_else(|| v.as_i64())
                    .ok_or("always_keep_level: expected a level name or number")?,
            ),
            None => None,
        };
        Ok(Sample {
            n: n as u64,
            always_keep_level,
            seen: HashMap::new(),
        })
    }

    fn filter(&mut self, record: &mut Record) -> Verdict {
        if let Some(min) = self.always_keep_level {
            if record.get_i64("levelno").unwrap_or(0) >= min {
                return Verdict::Keep;
            }
        }
        if self.keep(&record.get("name").unwrap_or_default()) {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}

export!(Sample);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_of_every_n_per_logger() {
        let mut s = Sample {
            n: 3,
            always_keep_level: None,
            seen: HashMap::new(),
        };
        let a: Vec<bool> = (0..7).map(|_| s.keep("a")).collect();
        assert_eq!(a, [true, false, false, true, false, false, true]);
        assert!(s.keep("b"));
    }
}
