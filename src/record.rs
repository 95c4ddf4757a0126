//! The record at the centre of every stage: what a Python `LogRecord.__dict__`
//! held when the sender pickled it, kept as sent.
//!
//! The formatter must reproduce Python's output byte for byte and the json
//! encoding must list fields in arrival order, so a record is an ordered list
//! of `(key, value)` pairs rather than a struct with named members: nothing is
//! converted on the way in that could not be converted back. LogRecord dicts
//! hold ~22 keys, so a linear scan is as fast as a hash lookup here.

use std::sync::Arc;

use bytes::Bytes;

/// An immutable UTF-8 string that can borrow from the frame it was decoded
/// from (a `Bytes` slice), so decoding strings copies nothing.
pub type Str = bytestring::ByteString;

/// A decoded Python value. Containers are `Arc`ed so that a pickle memo
/// reference (`GET`) shares instead of deep-copying (DUP/GET bombs).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// An `int` outside `i64`, as its decimal text (Python ints are unbounded).
    BigInt(Str),
    /// A `float`.
    Float(f64),
    /// A `str`. Lone surrogates were replaced with U+FFFD on the way in.
    Str(Str),
    /// A `bytes` object.
    Bytes(Bytes),
    /// A `list`.
    List(Arc<Vec<Value>>),
    /// A `tuple`.
    Tuple(Arc<Vec<Value>>),
    /// A `set`.
    Set(Arc<Vec<Value>>),
    /// A `frozenset`.
    FrozenSet(Arc<Vec<Value>>),
    /// A `dict`, in insertion order. Keys may be any hashable value.
    Dict(Arc<Vec<(Value, Value)>>),
    /// An instance of a class (datetime, Decimal, a user class...). Never
    /// constructed: the decoder keeps only its name and a rendering.
    Object(Arc<Object>),
}

/// An inert placeholder for a class instance found in a pickle.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// `module.qualname`, e.g. `datetime.datetime`.
    pub class: Str,
    /// What Python's `str()` would give where the decoder knows the type
    /// (datetime, date, time, timedelta, Decimal, UUID), otherwise
    /// `<module.qualname object>`. This is the placeholder string.
    pub str: Str,
    /// What Python's `repr()` would give where known, otherwise the same
    /// placeholder as `str`.
    pub repr: Str,
}

impl Value {
    /// The value as a string slice if it is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer if it is an `int` (or a `bool`, as in Python).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The value as a float if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// Build a `str` value from anything string-like.
    pub fn str(s: impl Into<Str>) -> Value {
        Value::Str(s.into())
    }
}

/// The fields of a record, in arrival order.
pub type Fields = Vec<(Str, Value)>;

/// The capacity decoders start a record's fields with: a LogRecord dict
/// has 22-23 keys.
pub(crate) const FIELDS_CAPACITY: usize = 24;
/// Field lists kept per thread for the next records (see [`spare_fields`]).
const SPARE_MAX: usize = 128;

thread_local! {
    /// Emptied field lists of records dropped on this thread. At 72 bytes
    /// a field, a whole record's list (1.7 KiB) is too big for glibc's
    /// per-thread cache, so allocating and freeing one per record went
    /// through the shared bins every time; records are decoded and dropped
    /// on the same input threads, so the lists go round here instead. At
    /// most [`SPARE_MAX`] (at most about 440 KiB) per thread.
    static SPARE: std::cell::RefCell<Vec<Fields>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty field list with room for a LogRecord's fields: one a dropped
/// record left on this thread, or a new one.
pub(crate) fn spare_fields() -> Fields {
    spare_fields_for(FIELDS_CAPACITY)
}

/// An empty field list with room for `n` fields (a decoder that keeps
/// only the few fields its readers read asks for that many): one a
/// dropped record left on this thread if it is large enough, or a new
/// one. The cookbook template's 10 fields take 720 bytes, not 1.7 KiB,
/// in each of a read's records and each spare list.
pub(crate) fn spare_fields_for(n: usize) -> Fields {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .filter(|f| f.capacity() >= n)
        .unwrap_or_else(|| Vec::with_capacity(n))
}

/// Keep an emptied `fields` for [`spare_fields_for`], unless it grew past
/// twice a LogRecord's size or this thread holds enough already.
fn recycle(fields: &mut Fields) {
    if !(1..=2 * FIELDS_CAPACITY).contains(&fields.capacity()) {
        return;
    }
    let mut fields = std::mem::take(fields);
    // Values hold no records, so this cannot come back here.
    fields.clear();
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARE_MAX {
                s.push(fields);
            }
        }
    });
}

/// One log record: the `LogRecord` attribute dict as the sender sent it.
#[derive(Clone, Debug)]
pub struct Record {
    /// Every attribute, in the order the sender's dict held them, then any
    /// `makeLogRecord` defaults the decoder added (see `defaulted`).
    pub fields: Fields,
    /// The `codec::defaults::own_name` bits of the fields the decoder
    /// added with `makeLogRecord`'s defaults because the sender did not
    /// send them (a JSON or msgpack dict lacking `funcName`...). A text
    /// format reads them as Python would; `encoding: json` leaves them out
    /// ("nothing added"). A filter that sets one makes it the record's
    /// own. Always 0 for pickle: SocketHandler sends the whole dict, so
    /// that path pays nothing.
    pub defaulted: u32,
    /// The pickle frame the record was decoded from, when a reader asked
    /// for it ([`Keep::FRAME`](crate::codec::Keep::FRAME)) and it is plain
    /// `makePickle` output: a pickle encoder sends these bytes on instead
    /// of encoding the fields again, and the JSON writer writes from them.
    /// Its strings were found valid UTF-8 when a pickle encoder asked for
    /// it; asked by [`Keep::RAW_FRAME`](crate::codec::Keep::RAW_FRAME)
    /// alone, they were not looked at. Whatever changes the record drops it
    /// ([`Record::set`], [`Record::remove`], a filter that can write), and
    /// the fields may then be all there is: only a reader that asked for
    /// the frame may find fewer fields than it needs, and it asked for
    /// every field too when a filter on its route can write.
    frame: Option<Bytes>,
}

/// Records are equal when their fields are: the frame is how one was
/// sent, not what it holds.
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.fields == other.fields && self.defaulted == other.defaulted
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        recycle(&mut self.fields);
    }
}

impl Record {
    /// A record from its fields, all of them sent.
    pub fn new(fields: Fields) -> Record {
        Record {
            fields,
            defaulted: 0,
            frame: None,
        }
    }

    /// A record from a decoder's fields, of which those with the
    /// `own_name` bits `defaulted` are defaults it added.
    pub fn with_defaults(fields: Fields, defaulted: u32) -> Record {
        Record {
            fields,
            defaulted,
            frame: None,
        }
    }

    /// Keep `frame`, the plain pickle this record was decoded from (see
    /// [`Record::frame`]).
    pub(crate) fn keep_frame(&mut self, frame: Bytes) {
        self.frame = Some(frame);
    }

    /// The plain pickle frame this record was decoded from, if a reader
    /// asked for it and nothing changed the record since.
    pub fn frame(&self) -> Option<&Bytes> {
        self.frame.as_ref()
    }

    /// Forget the frame: the record was (or may have been) changed.
    pub(crate) fn changed(&mut self) {
        self.frame = None;
    }

    /// The fields the sender sent or a filter set, in order: `fields`
    /// without the decoder's defaults. What `encoding: json` writes.
    pub fn sent(&self) -> impl Iterator<Item = &(Str, Value)> {
        let defaulted = self.defaulted;
        self.fields
            .iter()
            .filter(move |(k, _)| defaulted == 0 || default_bit(k) & defaulted == 0)
    }

    /// The value of one attribute.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| key_eq(k, key))
            .map(|(_, v)| v)
    }

    /// [`Record::get`] that tries position `hint` first, for callers that
    /// look the same key up in record after record: senders build every
    /// record the same way, so the key sits at the same position and the
    /// lookup is one compare instead of a scan. Returns the value and the
    /// position it was found at (the next hint). Fields hold each key once
    /// (the decoders dedup as a Python dict does, `set` replaces), so a hit
    /// at `hint` is the value `get` returns.
    #[inline]
    pub fn get_hinted(&self, key: &str, hint: usize) -> Option<(usize, &Value)> {
        if let Some((k, v)) = self.fields.get(hint) {
            if key_eq(k, key) {
                return Some((hint, v));
            }
        }
        self.fields
            .iter()
            .enumerate()
            .find(|(_, (k, _))| key_eq(k, key))
            .map(|(i, (_, v))| (i, v))
    }

    /// Set an attribute: replaced in place if present (keeping its
    /// position), appended otherwise, as `setattr` on a LogRecord.
    pub fn set(&mut self, key: impl Into<Str>, value: Value) {
        self.frame = None;
        let key = key.into();
        self.defaulted &= !default_bit(&key);
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Remove an attribute; returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        self.frame = None;
        self.defaulted &= !default_bit(key);
        let before = self.fields.len();
        self.fields.retain(|(k, _)| &**k != key);
        self.fields.len() != before
    }

    /// `levelno`, or 0 (NOTSET) when absent or not a number.
    pub fn levelno(&self) -> i64 {
        match self.get("levelno") {
            Some(Value::Float(f)) => *f as i64,
            Some(v) => v.as_i64().unwrap_or(0),
            None => 0,
        }
    }

    /// The logger name, or `""` when absent or not a string.
    pub fn name(&self) -> &str {
        self.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

/// Whether two keys are equal: keys of 2 to 16 bytes (every LogRecord
/// attribute name) as two integers ([`sig`]), inline, where a slice
/// compare called `memcmp` for every lookup (a template's fields, a
/// route's `levelno` and `name`).
#[inline(always)]
fn key_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && if (2..=16).contains(&a.len()) {
            sig(a) == sig(b)
        } else {
            a == b
        }
}

/// The `own_name` bit of `key` (0 for a key that is not one of
/// LogRecord's attributes), as [`Record::defaulted`] counts them.
#[inline]
pub(crate) fn default_bit(key: &str) -> u32 {
    own_name(key.as_bytes()).map_or(0, |(_, bit)| bit)
}

/// One of `LogRecord`'s own attribute names (or the two the formatter
/// adds): the static name and its bit. The first bits follow the order of
/// `codec::defaults::ORDER` (makeLogRecord's). It lives here, with the
/// record, because what counts as a record's own attribute is the
/// record's business; the decoders and `Record::defaulted` both use it.
/// Decoders use it to make these keys static strings (no reference count)
/// and to see at a glance which attributes a record has.
///
/// Every decoded key goes through here, so it dispatches on the length and
/// then compares the whole key as one integer ([`sig`]) with the few names
/// of that length, instead of a chain of slice compares.
#[inline(always)]
pub(crate) fn own_name(key: &[u8]) -> Option<(&'static str, u32)> {
    // `$name => $bit`: return it if the key's signature is the name's
    // (computed at compile time), else try the next; none is `None`.
    macro_rules! pick {
        ($sig:expr; $($name:literal => $bit:literal),+) => {{
            let s = $sig;
            $(
                if s == const { sig_const($name.as_bytes()) } {
                    return Some(($name, 1 << $bit));
                }
            )+
            return None;
        }};
    }
    match key.len() {
        3 => pick!(sig(key); "msg" => 1),
        4 => pick!(sig(key); "name" => 0, "args" => 2),
        5 => pick!(sig(key); "msecs" => 14),
        6 => pick!(sig(key); "module" => 7, "lineno" => 11, "thread" => 16),
        7 => pick!(sig(key);
            "levelno" => 4, "created" => 13, "process" => 19, "message" => 21, "asctime" => 22),
        8 => pick!(sig(key);
            "pathname" => 5, "filename" => 6, "exc_info" => 8, "exc_text" => 9,
            "funcName" => 12, "taskName" => 20),
        9 => pick!(sig(key); "levelname" => 3),
        10 => pick!(sig(key); "stack_info" => 10, "threadName" => 17),
        11 => pick!(sig(key); "processName" => 18),
        15 => pick!(sig(key); "relativeCreated" => 15),
        _ => None,
    }
}

/// The bytes of a key of 2 to 16 bytes as one integer: its first and its
/// last `w` bytes as two little-endian loads (`w` = 8 for 8-16 bytes, 4 for
/// 4-7, 2 for 2-3), which may overlap but together cover every byte, so two
/// keys of the same length are equal exactly when their `sig`s are. Other
/// lengths give 0 (no own name has them).
#[inline(always)]
fn sig(k: &[u8]) -> u128 {
    let n = k.len();
    if (8..=16).contains(&n) {
        let (Some(a), Some(b)) = (k.first_chunk::<8>(), k.last_chunk::<8>()) else {
            return 0;
        };
        u128::from(u64::from_le_bytes(*a)) | u128::from(u64::from_le_bytes(*b)) << 64
    } else if (4..8).contains(&n) {
        let (Some(a), Some(b)) = (k.first_chunk::<4>(), k.last_chunk::<4>()) else {
            return 0;
        };
        u128::from(u32::from_le_bytes(*a)) | u128::from(u32::from_le_bytes(*b)) << 64
    } else if n >= 2 {
        let (Some(a), Some(b)) = (k.first_chunk::<2>(), k.last_chunk::<2>()) else {
            return 0;
        };
        u128::from(u16::from_le_bytes(*a)) | u128::from(u16::from_le_bytes(*b)) << 64
    } else {
        0
    }
}

/// The own names by bit ([`own_name`]): the order of a `LogRecord`'s
/// `__dict__` (makeLogRecord's), which is the order every SocketHandler,
/// and `json.dumps(record.__dict__)`, sends them in; then `taskName`
/// (Python 3.12) and the two the formatter adds.
pub(crate) const OWN_NAMES: [&str; 23] = [
    "name",
    "msg",
    "args",
    "levelname",
    "levelno",
    "pathname",
    "filename",
    "module",
    "exc_info",
    "exc_text",
    "stack_info",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "processName",
    "process",
    "taskName",
    "message",
    "asctime",
];

/// The [`own_name`] bit of `name`, at compile time; fails the build if
/// `name` is not one of [`OWN_NAMES`].
pub(crate) const fn own_bit(name: &str) -> u32 {
    // Every own name is 3-15 bytes, where equal lengths and [`sig`]s
    // mean equal names.
    let mut i = 0;
    while i < OWN_NAMES.len() {
        if OWN_NAMES[i].len() == name.len() && SIG_OWN_NAMES[i] == sig_const(name.as_bytes()) {
            return 1 << i;
        }
        i += 1;
    }
    panic!("not one of LogRecord's own attribute names")
}

/// [`sig`] of each of [`OWN_NAMES`].
const SIG_OWN_NAMES: [u128; 23] = {
    let mut sigs = [0u128; 23];
    let mut i = 0;
    while i < 23 {
        sigs[i] = sig_const(OWN_NAMES[i].as_bytes());
        i += 1;
    }
    sigs
};

/// [`own_name`] for a decoder reading a record's keys in order: `next`
/// is the bit index after the last own name found (0 at the start of a
/// record). Senders write the attributes in `__dict__` order, so the key
/// is nearly always the one expected next, and one compare finds it.
#[inline(always)]
pub(crate) fn own_name_next(key: &[u8], next: &mut usize) -> Option<(&'static str, u32)> {
    if let (Some(name), Some(&s)) = (OWN_NAMES.get(*next), SIG_OWN_NAMES.get(*next)) {
        if key.len() == name.len() && sig(key) == s {
            let bit = 1 << *next;
            *next += 1;
            return Some((name, bit));
        }
    }
    let found = own_name(key);
    if let Some((_, bit)) = found {
        *next = bit.trailing_zeros() as usize + 1;
    }
    found
}

/// The own name expected next (see [`own_name_next`]) if `rest` starts
/// with it and then `"`: the name, its bit and its length. A JSON decoder
/// reads a key this way without scanning for its end.
#[inline(always)]
pub(crate) fn own_name_quoted(rest: &[u8], next: &mut usize) -> Option<(&'static str, u32, usize)> {
    let name = OWN_NAMES.get(*next)?;
    let n = name.len();
    let key = rest.get(..n)?;
    if rest.get(n) == Some(&b'"') && sig(key) == *SIG_OWN_NAMES.get(*next)? {
        let bit = 1 << *next;
        *next += 1;
        return Some((name, bit, n));
    }
    None
}

/// [`sig`] at compile time, for the names.
const fn sig_const(k: &[u8]) -> u128 {
    let n = k.len();
    let w = if n >= 8 {
        8
    } else if n >= 4 {
        4
    } else {
        2
    };
    let mut lo = 0u128;
    let mut hi = 0u128;
    let mut i = 0;
    while i < w {
        lo |= (k[i] as u128) << (8 * i);
        hi |= (k[n - w + i] as u128) << (8 * i);
        i += 1;
    }
    lo | hi << 64
}

/// Python's standard level numbers, by name (`logging._nameToLevel`).
pub fn level_from_name(name: &str) -> Option<i64> {
    Some(match name {
        "CRITICAL" | "FATAL" => 50,
        "ERROR" => 40,
        "WARNING" | "WARN" => 30,
        "INFO" => 20,
        "DEBUG" => 10,
        "NOTSET" => 0,
        _ => return None,
    })
}

/// Python's `logging.Filter(name)` / dotted-hierarchy match: `prefix`
/// matches `prefix` itself and `prefix.anything`, never `prefixx`. An empty
/// prefix matches every logger, as `logging.Filter("")` does.
pub fn logger_matches(prefix: &str, name: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

/// Test records from `(name, value)` pairs.
#[cfg(test)]
impl Record {
    pub(crate) fn of(pairs: &[(&str, Value)]) -> Record {
        Record::new(
            pairs
                .iter()
                .map(|(k, v)| (Str::from(*k), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_prefix_follows_dotted_hierarchy() {
        assert!(logger_matches("payments", "payments"));
        assert!(logger_matches("payments", "payments.api"));
        assert!(!logger_matches("payments", "paymentsx"));
        assert!(!logger_matches("payments.api", "payments"));
        assert!(logger_matches("", "anything"));
    }

    #[test]
    fn a_dropped_records_field_list_is_reused_empty_on_its_thread() {
        // A fresh thread: its spare lists are ours alone.
        std::thread::spawn(|| {
            let mut fields = spare_fields();
            assert_eq!(fields.capacity(), FIELDS_CAPACITY);
            fields.push(("a".into(), Value::str("x")));
            let at = fields.as_ptr();
            drop(Record::new(fields));
            let again = spare_fields();
            assert!(again.is_empty());
            assert_eq!(again.as_ptr(), at, "the same allocation");
            // A list far from the usual size is freed, not kept.
            drop(Record::new(Vec::with_capacity(10 * FIELDS_CAPACITY)));
            assert_ne!(spare_fields().capacity(), 10 * FIELDS_CAPACITY);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_decoder_that_keeps_a_few_fields_gets_a_list_of_that_size() {
        std::thread::spawn(|| {
            // The cookbook template's fields: 10 of a LogRecord's 22.
            let keep = crate::codec::Keep::fields([
                "created",
                "msecs",
                "levelname",
                "name",
                "process",
                "msg",
                "args",
                "exc_info",
                "exc_text",
                "stack_info",
            ]);
            assert_eq!(keep.capacity(), 10);
            assert_eq!(crate::codec::Keep::ALL.capacity(), FIELDS_CAPACITY);
            let small = spare_fields_for(keep.capacity());
            assert_eq!(small.capacity(), 10);
            let at = small.as_ptr();
            drop(Record::new(small));
            // Kept, and given again to a decoder that needs no more room...
            let again = spare_fields_for(4);
            assert_eq!(again.as_ptr(), at, "the same allocation");
            drop(Record::new(again));
            // ...but not to one that keeps every field.
            assert!(spare_fields().capacity() >= FIELDS_CAPACITY);
        })
        .join()
        .unwrap();
    }

    /// Issue 17: `sent` leaves out the decoder's defaults, and a default
    /// that is set (or removed) is no longer one.
    #[test]
    fn sent_leaves_out_defaults_until_they_are_set() {
        let (fields, defaulted) = crate::codec::defaults::fill(vec![
            ("msg".into(), Value::str("hi")),
            ("user".into(), Value::str("ann")),
        ]);
        let mut r = Record::with_defaults(fields, defaulted);
        let sent = |r: &Record| r.sent().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        assert_eq!(sent(&r), ["msg", "user"]);
        assert_eq!(r.get("funcName"), Some(&Value::None));
        r.set("funcName", Value::str("f"));
        r.set("env", Value::str("prod"));
        assert_eq!(sent(&r), ["msg", "user", "funcName", "env"]);
        assert!(r.remove("lineno"));
        r.set("lineno", Value::Int(7));
        assert_eq!(sent(&r), ["msg", "user", "funcName", "env", "lineno"]);
        // A record without defaults (every pickle record) is all sent.
        let r = Record::of(&[("funcName", Value::None), ("a", Value::Int(1))]);
        assert_eq!(sent(&r), ["funcName", "a"]);
    }

    #[test]
    fn set_keeps_position_and_appends_new() {
        let mut r = Record::new(vec![
            ("a".into(), Value::Int(1)),
            ("b".into(), Value::Int(2)),
        ]);
        r.set("a", Value::Int(3));
        r.set("c", Value::None);
        let keys: Vec<&str> = r.fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(r.get("a"), Some(&Value::Int(3)));
        assert_eq!(r.get_hinted("c", 2), Some((2, &Value::None)));
        assert_eq!(r.get_hinted("c", 0), Some((2, &Value::None)));
        assert_eq!(r.get_hinted("c", 9), Some((2, &Value::None)));
        assert_eq!(r.get_hinted("x", 1), None);
        assert!(r.remove("b"));
        assert!(!r.remove("b"));
    }
    /// `key_eq` is `==` for keys of every length, whichever byte differs.
    #[test]
    fn key_eq_is_string_equality() {
        for n in 0..=20 {
            let a: String = (0..n).map(|i| char::from(b'a' + i as u8)).collect();
            assert!(key_eq(&a, &a));
            assert!(!key_eq(&a, &format!("{a}x")));
            for at in 0..n {
                let mut b = a.clone().into_bytes();
                b[at] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!key_eq(&a, &b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn own_names_in_order_are_found_by_one_compare_and_others_as_before() {
        // In __dict__ order every name is the one expected next.
        let mut next = 0;
        for (i, name) in OWN_NAMES.iter().enumerate() {
            assert_eq!(
                own_name_next(name.as_bytes(), &mut next),
                Some((*name, 1 << i))
            );
            assert_eq!(next, i + 1);
        }
        // Out of order, or not an own name: the same answer as own_name,
        // and the next expected follows the name found.
        let mut next = 0;
        for key in [
            "process",
            "name",
            "names",
            "nam",
            "request_id",
            "",
            "msg",
            "msecs",
        ] {
            let before = next;
            let found = own_name_next(key.as_bytes(), &mut next);
            assert_eq!(found, own_name(key.as_bytes()), "{key}");
            match found {
                Some((_, bit)) => assert_eq!(next, bit.trailing_zeros() as usize + 1),
                None => assert_eq!(next, before),
            }
        }
        // Quoted: only the expected name, then a quote.
        let mut next = 0;
        assert_eq!(
            own_name_quoted(b"name\":1", &mut next),
            Some(("name", 1, 4))
        );
        assert_eq!(own_name_quoted(b"msg\"", &mut next), Some(("msg", 2, 3)));
        for rest in [&b"args"[..], b"argsx\"", b"arg\"", b"ARGS\"", b"msg\""] {
            let mut n = next;
            assert_eq!(own_name_quoted(rest, &mut n), None, "{rest:?}");
            assert_eq!(n, next);
        }
    }
}
