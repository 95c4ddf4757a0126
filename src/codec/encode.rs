//! Turning records back into bytes for the `forward` output: one payload
//! per record in the encoder's format (the frame body, without its length
//! prefix).
//!
//! The pickle encoder writes exactly what `SocketHandler.makePickle` writes,
//! `pickle.dumps(record_dict, 1)` from CPython's C pickler, byte for byte
//! for the values a LogRecord holds: any cookbook listener (or SocketHandler
//! peer) can read it, and a record that came in as pickle goes out as the
//! same bytes. serde-pickle cannot do this: it writes protocol 3 and no
//! memo. Strings are memoized (`BINPUT`) as CPython does, and CPython shares
//! (`BINGET`) only *identical* string objects: `pathname`, `filename` and
//! `module` are one object for a script run as `python -c` (`<string>`),
//! while a logger named after its module (`app`) holds an equal but distinct
//! string. The pickle decoder keeps identity visible — a memo `GET` shares
//! the same bytes — so two strings count as one object here when they point
//! at the same bytes, or when CPython caches them (the empty string and
//! one-character Latin-1 strings are singletons).

use crate::codec::{json, msgpack};
use crate::record::{Fields, Record, Value};

/// How a record becomes a payload (`"encoder"` of a forward or nats
/// output in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// `"pickle"`: SocketHandler-compatible pickle frames (the default of
    /// a forward output).
    #[default]
    Pickle,
    /// `"json"`: JSON frames.
    Json,
    /// `"msgpack"`: msgpack frames.
    Msgpack,
    /// `"fluent"`: the Fluentd forward protocol (Forward mode), for a
    /// Fluentd / Fluent Bit aggregation tier.
    Fluent,
}

impl Encoder {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoder::Pickle => "pickle",
            Encoder::Json => "json",
            Encoder::Msgpack => "msgpack",
            Encoder::Fluent => "fluent",
        }
    }
}

/// Append the payload of one record in `encoder`'s format. For
/// [`Encoder::Fluent`] it is one Forward-mode entry, `[time, record]`.
///
/// A pickle of a record that still has its frame ([`Record::frame`]: it
/// came in as plain `makePickle` output and nothing changed it) is that
/// frame, as the sender wrote it: what encoding its fields again would
/// give for a SocketHandler's record, without the work. Its JSON is
/// written from the frame's bytes ([`pickle::write_json`](super::pickle::write_json)).
pub fn payload(encoder: Encoder, record: &Record, out: &mut Vec<u8>) {
    match encoder {
        Encoder::Pickle => match record.frame() {
            Some(frame) => out.extend_from_slice(frame),
            None => pickle(&record.fields, out),
        },
        Encoder::Json => match record.frame() {
            Some(frame) => super::pickle::write_json(frame, out),
            None => json::write_fields(&record.fields, out),
        },
        Encoder::Msgpack => msgpack::write_fields(&record.fields, out),
        Encoder::Fluent => fluent_entry(&record.fields, out),
    }
}

/// Append one length-prefixed frame (4-byte big-endian length, as
/// SocketHandler) holding `payload`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A Fluentd Forward-mode entry: `[EventTime, record]`. The time is the
/// record's `created` as msgpack ext type 0 (seconds and nanoseconds, big
/// endian), which Fluentd and Fluent Bit read with sub-second precision.
fn fluent_entry(fields: &Fields, out: &mut Vec<u8>) {
    let created = fields
        .iter()
        .find(|(k, _)| &**k == "created")
        .and_then(|(_, v)| v.as_f64())
        .filter(|c| c.is_finite() && *c >= 0.0)
        .unwrap_or(0.0);
    let secs = created.trunc();
    let nanos = ((created - secs) * 1e9).round().min(999_999_999.0) as u32;
    out.push(0x92);
    out.extend_from_slice(&[0xd7, 0x00]);
    out.extend_from_slice(&(secs as u32).to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
    msgpack::write_fields(fields, out);
}

// Pickle opcodes used by protocol 1.
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const INT: u8 = b'I';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG: u8 = b'L';
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const EMPTY_DICT: u8 = b'}';
const EMPTY_LIST: u8 = b']';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
/// CPython's pickler writes at most this many items per APPENDS/SETITEMS.
const BATCH: usize = 1000;

/// Append `pickle.dumps(dict(fields), 1)`.
pub fn pickle(fields: &Fields, out: &mut Vec<u8>) {
    let mut p = Pickler {
        out,
        memo: 0,
        shared: Shared::default(),
        strs: Vec::new(),
        singletons: Vec::new(),
    };
    p.out.push(EMPTY_DICT);
    p.put();
    p.items(fields.len(), fields.iter().map(|(k, v)| (Key::Str(k), v)));
    p.out.push(STOP);
}

/// Objects CPython's pickler shares through the memo because they are one
/// object each time (a global, an interned string): their memo index once
/// written.
#[derive(Default)]
struct Shared {
    codecs_encode: Option<u32>,
    latin1: Option<u32>,
    bytes: Option<u32>,
    set: Option<u32>,
    frozenset: Option<u32>,
}

enum Key<'a> {
    Str(&'a str),
    Value(&'a Value),
}

struct Pickler<'a> {
    out: &'a mut Vec<u8>,
    memo: u32,
    shared: Shared,
    /// Strings written so far: (address, length, memo index).
    strs: Vec<(usize, usize, u32)>,
    /// Memo index of CPython's singleton strings ('' and one Latin-1 char).
    singletons: Vec<(char, u32)>,
}

impl Pickler<'_> {
    /// Memoize the object just written; returns its index.
    fn put(&mut self) -> u32 {
        let idx = self.memo;
        if idx < 256 {
            self.out.extend_from_slice(&[BINPUT, idx as u8]);
        } else {
            self.out.push(LONG_BINPUT);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
        self.memo += 1;
        idx
    }

    fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.out.extend_from_slice(&[BINGET, idx as u8]);
        } else {
            self.out.push(LONG_BINGET);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    fn str(&mut self, s: &str) {
        self.str_tracked(s, true);
    }

    /// `track`: remember `s` by address (only for strings that outlive the
    /// pickler, i.e. the record's own: a temporary's address can be reused).
    fn str_tracked(&mut self, s: &str, track: bool) {
        // The empty string is keyed as char::MAX, never a Latin-1 char.
        let singleton = match s.chars().next() {
            None => Some(char::MAX),
            Some(c) if s.len() == c.len_utf8() && u32::from(c) < 256 => Some(c),
            _ => None,
        };
        let known = match singleton {
            Some(c) => self.singletons.iter().find(|(k, _)| *k == c).map(|e| e.1),
            None => self
                .strs
                .iter()
                .find(|(p, l, _)| *p == s.as_ptr() as usize && *l == s.len())
                .map(|e| e.2),
        };
        if let Some(idx) = known {
            return self.get(idx);
        }
        self.out.push(BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        let idx = self.put();
        match singleton {
            Some(c) => self.singletons.push((c, idx)),
            None if track => self.strs.push((s.as_ptr() as usize, s.len(), idx)),
            None => {}
        }
    }

    fn int(&mut self, i: i64) {
        match i {
            0..=0xff => self.out.extend_from_slice(&[BININT1, i as u8]),
            0x100..=0xffff => {
                self.out.push(BININT2);
                self.out.extend_from_slice(&(i as u16).to_le_bytes());
            }
            -0x8000_0000..=0x7fff_ffff => {
                self.out.push(BININT);
                self.out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            _ => self.long_text(itoa::Buffer::new().format(i)),
        }
    }

    /// Protocol < 2 writes ints beyond 32 bits as their repr: `L123L\n`.
    fn long_text(&mut self, digits: &str) {
        self.out.push(LONG);
        self.out.extend_from_slice(digits.as_bytes());
        self.out.extend_from_slice(b"L\n");
    }

    /// A module-level name, memoized (or fetched when already written).
    fn global(&mut self, which: fn(&mut Shared) -> &mut Option<u32>, module: &str, name: &str) {
        if let Some(idx) = *which(&mut self.shared) {
            return self.get(idx);
        }
        self.out.push(GLOBAL);
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
        let idx = self.put();
        *which(&mut self.shared) = Some(idx);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::None => self.out.push(NONE),
            Value::Bool(b) => {
                self.out.push(INT);
                self.out
                    .extend_from_slice(if *b { b"01\n" } else { b"00\n" });
            }
            Value::Int(i) => self.int(*i),
            Value::BigInt(s) => self.long_text(s),
            Value::Float(f) => {
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.str(s),
            Value::Object(o) => self.str(&o.str),
            Value::Bytes(b) => self.bytes(b),
            Value::Tuple(items) => {
                if items.is_empty() {
                    self.out.push(EMPTY_TUPLE);
                    return;
                }
                self.out.push(MARK);
                for item in items.iter() {
                    self.value(item);
                }
                self.out.push(TUPLE);
                self.put();
            }
            Value::List(items) => self.list(items),
            Value::Set(items) => self.set(items, |s| &mut s.set, "set"),
            Value::FrozenSet(items) => self.set(items, |s| &mut s.frozenset, "frozenset"),
            Value::Dict(pairs) => {
                self.out.push(EMPTY_DICT);
                self.put();
                self.items(pairs.len(), pairs.iter().map(|(k, v)| (Key::Value(k), v)));
            }
        }
    }

    fn list(&mut self, items: &[Value]) {
        self.out.push(EMPTY_LIST);
        self.put();
        if items.len() == 1 {
            self.value(&items[0]);
            self.out.push(APPEND);
            return;
        }
        for chunk in items.chunks(BATCH) {
            if chunk.len() == 1 {
                self.value(&chunk[0]);
                self.out.push(APPEND);
                continue;
            }
            self.out.push(MARK);
            for item in chunk {
                self.value(item);
            }
            self.out.push(APPENDS);
        }
    }

    /// Dict items as CPython's `batch_dict_exact`: one item is a SETITEM,
    /// more are MARK ... SETITEMS in batches of 1000.
    fn items<'v>(&mut self, len: usize, items: impl Iterator<Item = (Key<'v>, &'v Value)>) {
        if len == 1 {
            for (k, v) in items {
                self.key(k);
                self.value(v);
            }
            self.out.push(SETITEM);
            return;
        }
        let mut in_batch = 0;
        let mut left = len;
        for (k, v) in items {
            if in_batch == 0 {
                if left == 1 {
                    self.key(k);
                    self.value(v);
                    self.out.push(SETITEM);
                    break;
                }
                self.out.push(MARK);
            }
            self.key(k);
            self.value(v);
            in_batch += 1;
            left -= 1;
            if in_batch == BATCH || left == 0 {
                self.out.push(SETITEMS);
                in_batch = 0;
            }
        }
    }

    fn key(&mut self, k: Key<'_>) {
        match k {
            Key::Str(s) => self.str(s),
            Key::Value(v) => self.value(v),
        }
    }

    /// bytes under protocol < 3: `_codecs.encode(str(b, 'latin1'), 'latin1')`,
    /// or `bytes()` when empty, as CPython's `save_bytes`.
    fn bytes(&mut self, b: &[u8]) {
        if b.is_empty() {
            self.global(|s| &mut s.bytes, "__builtin__", "bytes");
            self.out.push(EMPTY_TUPLE);
        } else {
            self.global(|s| &mut s.codecs_encode, "_codecs", "encode");
            self.out.push(MARK);
            let latin1: String = b.iter().map(|&c| char::from(c)).collect();
            self.str_tracked(&latin1, false);
            match self.shared.latin1 {
                Some(idx) => self.get(idx),
                None => {
                    self.out.push(BINUNICODE);
                    self.out.extend_from_slice(&6u32.to_le_bytes());
                    self.out.extend_from_slice(b"latin1");
                    self.shared.latin1 = Some(self.put());
                }
            }
            self.out.push(TUPLE);
            self.put();
        }
        self.out.push(REDUCE);
        self.put();
    }

    /// set / frozenset under protocol < 4: `set([items])`.
    fn set(&mut self, items: &[Value], which: fn(&mut Shared) -> &mut Option<u32>, name: &str) {
        self.global(which, "__builtin__", name);
        self.out.push(MARK);
        self.list(items);
        self.out.push(TUPLE);
        self.put();
        self.out.push(REDUCE);
        self.put();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn dumps(fields: &Fields) -> Vec<u8> {
        let mut out = Vec::new();
        pickle(fields, &mut out);
        out
    }

    #[test]
    fn matches_cpython_protocol_1() {
        // pickle.dumps({"a": 1, "b": "x", "c": None, "d": True, "e": 1.5,
        //               "f": 300, "g": -1, "h": 2**40, "i": (), "j": [1]}, 1)
        let fields: Fields = vec![
            ("a".into(), Value::Int(1)),
            ("b".into(), Value::str("x")),
            ("c".into(), Value::None),
            ("d".into(), Value::Bool(true)),
            ("e".into(), Value::Float(1.5)),
            ("f".into(), Value::Int(300)),
            ("g".into(), Value::Int(-1)),
            ("h".into(), Value::Int(1 << 40)),
            ("i".into(), Value::Tuple(Arc::new(vec![]))),
            ("j".into(), Value::List(Arc::new(vec![Value::Int(1)]))),
        ];
        let want: &[u8] = b"}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03X\x01\x00\x00\x00cq\x04NX\x01\x00\x00\x00dq\x05I01\nX\x01\x00\x00\x00eq\x06G?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00fq\x07M,\x01X\x01\x00\x00\x00gq\x08J\xff\xff\xff\xffX\x01\x00\x00\x00hq\tL1099511627776L\nX\x01\x00\x00\x00iq\n)X\x01\x00\x00\x00jq\x0b]q\x0cK\x01au.";
        assert_eq!(dumps(&fields), want);
    }

    #[test]
    fn bytes_reduce_shares_globals_like_cpython() {
        // pickle.dumps({"a": b"\x00\xff", "b": b"z"}, 1)
        let fields: Fields = vec![
            ("a".into(), Value::Bytes(Bytes::from_static(b"\x00\xff"))),
            ("b".into(), Value::Bytes(Bytes::from_static(b"z"))),
        ];
        let want: &[u8] = b"}q\x00(X\x01\x00\x00\x00aq\x01c_codecs\nencode\nq\x02(X\x03\x00\x00\x00\x00\xc3\xbfq\x03X\x06\x00\x00\x00latin1q\x04tq\x05Rq\x06X\x01\x00\x00\x00bq\x07h\x02(X\x01\x00\x00\x00zq\x08h\x04tq\tRq\nu.";
        assert_eq!(dumps(&fields), want);
    }

    #[test]
    fn sets_empty_bytes_and_one_item_dicts_match_cpython() {
        // pickle.dumps({"s": {1, 2}, "e": b"", "one": {"k": 1}}, 1)
        let fields: Fields = vec![
            (
                "s".into(),
                Value::Set(Arc::new(vec![Value::Int(1), Value::Int(2)])),
            ),
            ("e".into(), Value::Bytes(Bytes::new())),
            (
                "one".into(),
                Value::Dict(Arc::new(vec![(Value::str("k"), Value::Int(1))])),
            ),
        ];
        let want: &[u8] = b"}q\x00(X\x01\x00\x00\x00sq\x01c__builtin__\nset\nq\x02(]q\x03(K\x01K\x02etq\x04Rq\x05X\x01\x00\x00\x00eq\x06c__builtin__\nbytes\nq\x07)Rq\x08X\x03\x00\x00\x00oneq\t}q\nX\x01\x00\x00\x00kq\x0bK\x01su.";
        assert_eq!(dumps(&fields), want);
    }

    #[test]
    fn identical_strings_stay_shared_through_decode_and_encode() {
        // pickle.dumps({'a': 'x', 'b': 'x', 'c': '', 'd': ''}, 1) where
        // the two 'x' are one object, and a shared longer string:
        // s = '<string>'; pickle.dumps({'p': s, 'f': s, 'n': 'app', 'm': ''.join(['ap', 'p'])}, 1)
        for frame in [
            &b"}q\x00(X\x01\x00\x00\x00aq\x01X\x01\x00\x00\x00xq\x02X\x01\x00\x00\x00bq\x03h\x02X\x01\x00\x00\x00cq\x04X\x00\x00\x00\x00q\x05X\x01\x00\x00\x00dq\x06h\x05u."[..],
            b"}q\x00(X\x01\x00\x00\x00pq\x01X\x08\x00\x00\x00<string>q\x02X\x01\x00\x00\x00fq\x03h\x02X\x01\x00\x00\x00nq\x04X\x03\x00\x00\x00appq\x05X\x01\x00\x00\x00mq\x06X\x03\x00\x00\x00appq\x07u.",
        ] {
            let fields = crate::codec::pickle::decode(&Bytes::copy_from_slice(frame)).unwrap();
            assert_eq!(dumps(&fields), frame);
        }
    }

    #[test]
    fn decodes_back_with_our_pickle_decoder() {
        let fields: Fields = vec![
            ("msg".into(), Value::str("héllo")),
            (
                "d".into(),
                Value::Dict(Arc::new(vec![(Value::str("k"), Value::Int(-70_000))])),
            ),
            (
                "s".into(),
                Value::Set(Arc::new(vec![Value::Int(1), Value::Int(2)])),
            ),
        ];
        let got = crate::codec::pickle::decode(&Bytes::from(dumps(&fields))).unwrap();
        assert_eq!(got, fields);
    }
}
