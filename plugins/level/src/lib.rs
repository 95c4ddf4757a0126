//! `level`: drop records below a level threshold, per logger.
//!
//! Config:
//! ```json
//! { "min_level": "WARNING",
//!   "loggers": { "payments": "DEBUG", "urllib3": "ERROR" } }
//! ```
//! A record from logger `payments.api` uses the `payments` threshold (the
//! longest matching prefix in Python's dotted hierarchy: `payments` matches
//! `payments` and `payments.api`, not `paymentsx`); others use `min_level`
//! (default `NOTSET`: keep everything). Levels are names or numbers.

use logrelay_filter::{export, level, Config, Filter, Json, Record, Verdict};

/// Thresholds, read once from the config.
pub struct Level {
    min_level: i64,
    /// `(prefix, level)`, longest prefix first so the first match wins.
    loggers: Vec<(String, i64)>,
}

fn parse_level(what: &str, v: &Json) -> Result<i64, String> {
    let parsed = match v {
        Json::Str(s) => level::parse(s),
        other => other.as_i64(),
    };
    parsed.ok_or_else(|| format!("{what}: {v} is not a level name or number"))
}

/// Python's `logging.Filter(name)` match.
pub fn logger_matches(prefix: &str, name: &str) -> bool {
    prefix.is_empty()
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

impl Level {
    /// The threshold for logger `name`.
    pub fn threshold(&self, name: &str) -> i64 {
        self.loggers
            .iter()
            .find(|(prefix, _)| logger_matches(prefix, name))
            .map_or(self.min_level, |(_, level)| *level)
    }
}

impl Filter for Level {
    fn init(config: &Config) -> Result<Self, String> {
        let min_level = match config.get("min_level") {
            Some(v) => parse_level("min_level", v)?,
            None => 0,
        };
        let mut loggers = Vec::new();
        if let Some(map) = config.get("loggers") {
            let map = map.as_object().ok_or("loggers: expected an object")?;
            for (prefix, v) in map {
                loggers.push((
                    prefix.clone(),
                    parse_level(&format!("loggers.{prefix}"), v)?,
                ));
            }
        }
        loggers.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Level { min_level, loggers })
    }

    fn filter(&mut self, record: &mut Record) -> Verdict {
        let levelno = record.get_i64("levelno").unwrap_or(0);
        // Skip reading the name when no per-logger rule exists.
        let threshold = if self.loggers.is_empty() {
            self.min_level
        } else {
            self.threshold(&record.get("name").unwrap_or_default())
        };
        if levelno < threshold {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }
}

export!(Level);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let f = Level {
            min_level: 30,
            loggers: vec![("payments.api".into(), 40), ("payments".into(), 10)],
        };
        assert_eq!(f.threshold("payments.api.v2"), 40);
        assert_eq!(f.threshold("payments"), 10);
        assert_eq!(f.threshold("paymentsx"), 30);
        assert_eq!(f.threshold("root"), 30);
    }
}
