//! What `logging.makeLogRecord` gives the attributes a record dict lacks.
//!
//! A JSON or msgpack sender may send any subset of a LogRecord's dict. The
//! cookbook listener rebuilds each record with `logging.makeLogRecord(d)`,
//! which starts from `LogRecord(None, None, "", 0, "", (), None, None)` and
//! then updates `__dict__` with `d`. [`fill`] gives the same values, so a
//! format naming `%(lineno)d` works on a record that did not send it, and
//! says which it added, so `encoding: json` can leave them out. One
//! deliberate difference: `created` defaults to the time of receipt (Python
//! would also use "now", in the listener), and `msecs` / `relativeCreated`
//! are derived from the record's `created` (sent or defaulted) rather than
//! from the listener's clock, so they agree with `%(asctime)s`.
//!
//! The process and thread attributes describe the process that built the
//! record. logrelay has no Python threads, so it gives what `makeLogRecord`
//! gives with `logging.logThreads = False`: `thread` and `threadName` are
//! None; `process` is logrelay's pid and `processName` `"MainProcess"`.
//!
//! Pickle records never need this: SocketHandler sends the whole dict.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::{Fields, Str, Value};

/// The attributes of a fresh `LogRecord`, in `LogRecord.__init__` order
/// (Python 3.8-3.11; 3.12 adds `taskName`, which we leave out because a
/// 3.11 sender never has it): the first of the record's own names.
const ORDER: [&str; 20] = {
    let mut order = [""; 20];
    let mut i = 0;
    while i < 20 {
        order[i] = crate::record::OWN_NAMES[i];
        i += 1;
    }
    order
};

pub(crate) use crate::record::own_name;

/// A record key from its bytes, and its [`own_name`] bit: one of
/// LogRecord's names becomes its static string (no reference count to
/// touch), any other key is `other()` (0 for its bit).
#[inline]
pub(crate) fn record_key(key: &[u8], other: impl FnOnce() -> Str) -> (Str, u32) {
    match own_name(key) {
        Some((name, bit)) => (Str::from_static(name), bit),
        None => (other(), 0),
    }
}

/// Seconds since the epoch when logrelay first needed a default: the base of
/// `relativeCreated` (Python uses the time `logging` was imported).
pub fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(now)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Complete a record dict as `logging.makeLogRecord` would (see the module
/// doc): the sender's fields stay as sent, in its order, and each
/// LogRecord attribute it did not send follows them with its default, in
/// [`ORDER`]. Returns the fields and the [`own_name`] bits of the
/// attributes added (0 when the dict had them all, and then `fields` is
/// untouched): `encoding: json` writes only what was sent
/// (docs/decisions.md, "Records and encoding": nothing added), while a text format reads the defaults as Python
/// would.
pub fn fill(fields: Fields) -> (Fields, u32) {
    // One bit per LogRecord attribute present (own_name's bits follow
    // ORDER): a record that has them all is the common case.
    let have = fields.iter().fold(0u32, |have, (k, _)| {
        have | own_name(k.as_bytes()).map_or(0, |(_, bit)| bit)
    });
    fill_known(fields, have)
}

/// [`fill`] for a decoder that already knows which of LogRecord's
/// attributes `fields` has: `have` is the or of their `own_name` bits.
pub fn fill_known(mut fields: Fields, have: u32) -> (Fields, u32) {
    let missing = ALL & !have;
    if missing == 0 {
        return (fields, 0);
    }
    let created = match fields.iter().find(|(k, _)| &**k == "created") {
        Some((_, v)) => v.as_f64().unwrap_or_else(now),
        None => now(),
    };
    // Appended, never interleaved: the sent fields keep their positions,
    // so nothing is moved and their order is the sender's.
    fields.reserve(missing.count_ones() as usize);
    for (i, key) in ORDER.iter().enumerate() {
        if missing & (1 << i) != 0 {
            fields.push((Str::from_static(key), default(key, created)));
        }
    }
    (fields, missing)
}

/// The [`own_name`] bits of every attribute in [`ORDER`].
const ALL: u32 = (1 << ORDER.len()) - 1;

/// `keep`, plus `created` where it keeps `msecs` or `relativeCreated`:
/// [`fill_known`] computes their defaults from the record's `created`.
pub(crate) fn keep_for_fill(keep: super::Keep) -> super::Keep {
    let derived = super::Keep::fields(["msecs", "relativeCreated"]);
    if keep.own & derived.own != 0 {
        keep.and(super::Keep::field("created"))
    } else {
        keep
    }
}

/// The default of one attribute, for a record created at `created`.
fn default(key: &str, created: f64) -> Value {
    match key {
        "msg" | "pathname" | "filename" | "module" => Value::str(Str::from_static("")),
        "args" => Value::Tuple(Arc::new(Vec::new())),
        "levelname" => Value::str(Str::from_static("Level None")),
        "lineno" => Value::Int(0),
        "created" => Value::Float(created),
        // Python 3.11: int((ct - int(ct)) * 1000) + 0.0
        "msecs" => Value::Float(((created - created.trunc()) * 1000.0).trunc()),
        "relativeCreated" => Value::Float((created - start_time()) * 1000.0),
        "processName" => Value::str(Str::from_static("MainProcess")),
        "process" => Value::Int(i64::from(std::process::id())),
        // name, levelno, exc_info, exc_text, stack_info, funcName, thread,
        // threadName.
        _ => Value::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(f: &Fields) -> Vec<&str> {
        f.iter().map(|(k, _)| &**k).collect()
    }

    #[test]
    fn complete_dict_is_untouched() {
        let mut f: Fields = ORDER
            .iter()
            .rev()
            .map(|k| (Str::from(*k), Value::Int(1)))
            .collect();
        f.push(("extra".into(), Value::None));
        let before = f.clone();
        assert_eq!(fill(f), (before, 0));
    }

    #[test]
    fn missing_attributes_follow_the_sent_ones_with_make_log_record_values() {
        let f: Fields = vec![
            ("user".into(), Value::str("ann")),
            ("msg".into(), Value::str("hi")),
            ("created".into(), Value::Float(1700000000.25)),
            ("levelno".into(), Value::Int(30)),
        ];
        let (out, added) = fill(f);
        let mut want = vec!["user", "msg", "created", "levelno"];
        let defaulted: Vec<&str> = ORDER
            .iter()
            .copied()
            .filter(|k| !want.contains(k))
            .collect();
        want.extend(&defaulted);
        assert_eq!(keys(&out), want);
        let bits = defaulted
            .iter()
            .fold(0, |b, k| b | own_name(k.as_bytes()).unwrap().1);
        assert_eq!(added, bits);
        let get = |k: &str| out.iter().find(|(n, _)| &**n == k).map(|(_, v)| v.clone());
        assert_eq!(get("msg"), Some(Value::str("hi")));
        assert_eq!(get("levelno"), Some(Value::Int(30)));
        assert_eq!(get("levelname"), Some(Value::str("Level None")));
        assert_eq!(get("name"), Some(Value::None));
        assert_eq!(get("args"), Some(Value::Tuple(Arc::new(vec![]))));
        assert_eq!(get("lineno"), Some(Value::Int(0)));
        assert_eq!(get("msecs"), Some(Value::Float(250.0)));
        assert_eq!(get("processName"), Some(Value::str("MainProcess")));
        assert_eq!(get("thread"), Some(Value::None));
    }

    #[test]
    fn created_defaults_to_receipt_time() {
        let before = now();
        let (out, _) = fill(vec![("msg".into(), Value::str("x"))]);
        let created = out
            .iter()
            .find(|(k, _)| &**k == "created")
            .and_then(|(_, v)| v.as_f64())
            .unwrap();
        assert!(created >= before && created <= now());
    }

    /// Every name `own_name` knows, in bit order: LogRecord's attributes
    /// (`ORDER`), then `taskName` and the two the formatter adds.
    fn own_names() -> Vec<&'static str> {
        ORDER
            .iter()
            .copied()
            .chain(["taskName", "message", "asctime"])
            .collect()
    }

    /// The old chain of slice compares, which `own_name` must match.
    fn own_name_reference(key: &[u8]) -> Option<(&'static str, u32)> {
        let names = own_names();
        names
            .iter()
            .position(|n| n.as_bytes() == key)
            .map(|i| (names[i], 1 << i))
    }

    #[test]
    fn own_name_matches_exactly_the_names() {
        let mut keys: Vec<Vec<u8>> = vec![vec![], b"m".to_vec(), b"ms".to_vec()];
        let mut names = own_names();
        names.extend(["user", "request_id", "x"]);
        for name in names {
            let b = name.as_bytes();
            keys.push(b.to_vec());
            // Every single-byte change, and every prefix and extension.
            for i in 0..b.len() {
                for d in [1u8, 0x20, 0x80] {
                    let mut m = b.to_vec();
                    m[i] ^= d;
                    keys.push(m);
                }
                keys.push(b[..i].to_vec());
            }
            let mut longer = b.to_vec();
            longer.push(b'x');
            keys.push(longer);
        }
        for k in keys {
            assert_eq!(own_name(&k), own_name_reference(&k), "{k:?}");
        }
    }

    #[test]
    fn own_name_bits_follow_the_order() {
        for (i, key) in super::ORDER.iter().enumerate() {
            assert_eq!(own_name(key.as_bytes()), Some((*key, 1 << i)));
        }
    }
}
