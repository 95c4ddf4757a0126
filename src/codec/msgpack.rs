//! msgpack records: one map per frame, as Python's
//! `msgpack.packb(record_dict)` writes it (see
//! `python/logrelay/handlers.py`), and the encoder the forward
//! output uses.
//!
//! The decoder is a small recursive-descent parser over the frame's bytes
//! (rmp-serde would go through serde and lose `bin` vs `str` and map key
//! types): nesting is capped at [`MAX_DEPTH`], declared lengths are never
//! trusted for allocation (each element takes at least one byte, so the
//! capacities reserved for all the containers of a frame together never
//! exceed its length, however deep they nest), strings borrow from the
//! frame, and bytes after the top-level map are an error (one frame, one
//! map).
//!
//! Types map as Python's `msgpack.unpackb(raw=False)` would give them:
//! str → `Str` (invalid UTF-8 replaced with U+FFFD), bin → `Bytes`, array →
//! list, map → dict (any key type), int beyond `i64` → `BigInt`, float32 and
//! float64 → float. An ext value (msgpack's timestamp or an application
//! type) becomes an inert placeholder object with Python's repr of what
//! `unpackb` returns for it.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{DecodeError, Keep, MAX_VALUES};
use crate::format::pyrepr::bytes_repr;
use crate::record::{Fields, Object, Str, Value};

/// Deepest nesting accepted (the record map is depth 1), as the pickle
/// decoder's limit: consumers walk values recursively.
pub const MAX_DEPTH: usize = crate::codec::pickle::MAX_DEPTH;

/// Decode one frame holding a msgpack map into a record's fields, with
/// `makeLogRecord`'s defaults for missing attributes.
pub fn decode(frame: &Bytes) -> Result<(Fields, u32), DecodeError> {
    decode_keeping(frame, Keep::ALL)
}

/// [`decode`] for a reader of only the fields `keep` names: the values of
/// the others are still decoded (so the same frames are refused) but not
/// kept, and defaults are not added for them.
pub fn decode_keeping(frame: &Bytes, keep: Keep) -> Result<(Fields, u32), DecodeError> {
    let (fields, own) = record_map(frame, crate::codec::defaults::keep_for_fill(keep))?;
    Ok(crate::codec::defaults::fill_known(fields, own))
}

/// Parse a frame that must hold exactly one msgpack map with string keys.
pub fn parse_map(frame: &Bytes) -> Result<Fields, DecodeError> {
    record_map(frame, Keep::ALL).map(|(fields, _)| fields)
}

/// [`parse_map`], and the [`crate::codec::defaults::own_name`] bits of the
/// LogRecord attributes among the keys (kept or not). Repeats are found as
/// the keys arrive ([`crate::codec::Repeats`]). Only the fields `keep`
/// names are kept.
fn record_map(frame: &Bytes, keep: Keep) -> Result<(Fields, u32), DecodeError> {
    let mut p = Parser {
        frame,
        pos: 0,
        reserved: 0,
        values: 0,
    };
    let marker = p.byte()?;
    let len = match marker {
        0x80..=0x8f => usize::from(marker & 0x0f),
        0xde => p.uint(2)? as usize,
        0xdf => p.uint(4)? as usize,
        _ => return Err(err(format!("top level is {}, not a map", kind(marker)))),
    };
    let mut fields = match len {
        0..=crate::record::FIELDS_CAPACITY => crate::record::spare_fields(),
        _ => Vec::with_capacity(p.reserve(len, 2)),
    };
    let mut repeats = crate::codec::Repeats::default();
    let mut left_out = 0;
    for _ in 0..len {
        let (key, bit) = p.key()?;
        let value = p.value(1)?;
        if keep.keeps(bit) {
            repeats.note(&key, bit, &fields);
            fields.push((key, value));
        } else {
            left_out |= bit;
        }
    }
    // As a Python dict: a repeated key keeps its first position.
    let own = repeats.finish(&mut fields) | left_out;
    if p.left() > 0 {
        return Err(err(format!("{} bytes after the record map", p.left())));
    }
    Ok((fields, own))
}

fn err(msg: String) -> DecodeError {
    DecodeError::Msgpack(msg)
}

fn kind(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "binary data",
        0xca | 0xcb => "a float",
        _ => "an ext value",
    }
}

struct Parser<'a> {
    frame: &'a Bytes,
    pos: usize,
    /// Bytes of the frame that reserved capacity already stands for (see
    /// [`Parser::reserve`]).
    reserved: usize,
    /// Values decoded so far (see [`MAX_VALUES`]: a nil takes one byte on
    /// the wire and 40 in memory).
    values: usize,
}

impl Parser<'_> {
    fn left(&self) -> usize {
        self.frame.len() - self.pos
    }

    /// The capacity to reserve for a container declaring `len` elements of
    /// at least `bytes` bytes each. Each element of a well-formed frame
    /// takes bytes of its own, so all its containers together need at most
    /// `frame.len() / bytes` elements: reserving from that one budget,
    /// rather than from what is left at each level, stops nested
    /// containers that each declare 2^32 elements from reserving a frame's
    /// worth per level (255 levels of a 16 MiB frame asked for some 128
    /// GB). A container past the budget grows as its elements arrive.
    fn reserve(&mut self, len: usize, bytes: usize) -> usize {
        let budget = (self.frame.len() - self.reserved).min(self.left()) / bytes;
        let n = len.min(budget);
        self.reserved += n * bytes;
        n
    }

    fn take(&mut self, n: usize) -> Result<(usize, usize), DecodeError> {
        if n > self.left() {
            return Err(err(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.left()
            )));
        }
        let start = self.pos;
        self.pos += n;
        Ok((start, self.pos))
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (s, _) = self.take(1)?;
        Ok(self.frame[s])
    }

    /// A big-endian unsigned integer of `n` (1, 2, 4 or 8) bytes.
    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        let (s, e) = self.take(n)?;
        Ok(self.frame[s..e]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn str(&mut self, len: usize) -> Result<Value, DecodeError> {
        let (s, e) = self.take(len)?;
        Ok(Value::Str(self.text(s, e)))
    }

    /// The string at `frame[s..e]`, borrowed from the frame when it is
    /// UTF-8, else decoded as `errors="replace"`, with each encoded lone
    /// surrogate (what Python's `packb(unicode_errors="surrogatepass")`
    /// writes) one U+FFFD, as the pickle decoder does.
    fn text(&self, s: usize, e: usize) -> Str {
        crate::codec::slice_str(self.frame, s, e, crate::codec::pickle::lossy)
    }

    /// A record key and its [`crate::codec::defaults::own_name`] bit:
    /// LogRecord's own names become static strings.
    fn key(&mut self) -> Result<(Str, u32), DecodeError> {
        let len = match self.frame.get(self.pos) {
            Some(&m @ 0xa0..=0xbf) => {
                self.pos += 1;
                usize::from(m & 0x1f)
            }
            _ => {
                // Any other string form: the same name is the same key.
                return match self.value(1)? {
                    Value::Str(s) => Ok(crate::codec::defaults::record_key(s.as_bytes(), || {
                        s.clone()
                    })),
                    other => Err(err(format!("a record key is {other:?}, not a string"))),
                };
            }
        };
        let (s, e) = self.take(len)?;
        Ok(crate::codec::defaults::record_key(
            &self.frame[s..e],
            || self.text(s, e),
        ))
    }

    fn bin(&mut self, len: usize) -> Result<Value, DecodeError> {
        let (s, e) = self.take(len)?;
        Ok(Value::Bytes(self.frame.slice(s..e)))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut items = Vec::with_capacity(self.reserve(len, 1));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::List(Arc::new(items)))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut pairs = Vec::with_capacity(self.reserve(len, 2));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Dict(Arc::new(pairs)))
    }

    fn ext(&mut self, len: usize) -> Result<Value, DecodeError> {
        let code = self.byte()? as i8;
        let (s, e) = self.take(len)?;
        let data = &self.frame[s..e];
        let text = match (code, data.len()) {
            (-1, 4 | 8 | 12) => timestamp_repr(data),
            _ => {
                let mut b = String::new();
                bytes_repr(data, &mut b);
                format!("ExtType(code={code}, data={b})")
            }
        };
        let class = if code == -1 {
            "msgpack.Timestamp"
        } else {
            "msgpack.ExtType"
        };
        Ok(Value::Object(Arc::new(Object {
            class: Str::from_static(class),
            str: Str::from(text.clone()),
            repr: Str::from(text),
        })))
    }

    /// One value at nesting `depth` (the record map's values are depth 1,
    /// a container inside them depth 2).
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(err(format!("more than {MAX_VALUES} values in one frame")));
        }
        let marker = self.byte()?;
        let container = matches!(marker, 0x80..=0x9f | 0xdc..=0xdf);
        if container && depth >= MAX_DEPTH {
            return Err(err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(match marker {
            0x00..=0x7f => Value::Int(i64::from(marker)),
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Value::None,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.uint(1)? as usize;
                self.bin(n)?
            }
            0xc5 => {
                let n = self.uint(2)? as usize;
                self.bin(n)?
            }
            0xc6 => {
                let n = self.uint(4)? as usize;
                self.bin(n)?
            }
            0xc7 => {
                let n = self.uint(1)? as usize;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.uint(2)? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.uint(4)? as usize;
                self.ext(n)?
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.uint(8)?)),
            0xcc => Value::Int(self.uint(1)? as i64),
            0xcd => Value::Int(self.uint(2)? as i64),
            0xce => Value::Int(self.uint(4)? as i64),
            0xcf => match self.uint(8)? {
                u if u <= i64::MAX as u64 => Value::Int(u as i64),
                u => Value::BigInt(Str::from(u.to_string())),
            },
            0xd0 => Value::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Int(self.uint(8)? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.uint(1)? as usize;
                self.str(n)?
            }
            0xda => {
                let n = self.uint(2)? as usize;
                self.str(n)?
            }
            0xdb => {
                let n = self.uint(4)? as usize;
                self.str(n)?
            }
            0xdc => {
                let n = self.uint(2)? as usize;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.uint(4)? as usize;
                self.array(n, depth)?
            }
            0xde => {
                let n = self.uint(2)? as usize;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.uint(4)? as usize;
                self.map(n, depth)?
            }
            // 0xc1 is "never used" in the msgpack spec.
            _ => return Err(err(format!("invalid marker 0x{marker:02x}"))),
        })
    }
}

/// Python's repr of `msgpack.Timestamp` for a timestamp ext payload.
fn timestamp_repr(data: &[u8]) -> String {
    let be = |b: &[u8]| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let (secs, nanos): (i64, u64) = match data.len() {
        4 => (be(data) as i64, 0),
        8 => {
            let v = be(data);
            ((v & 0x3_ffff_ffff) as i64, v >> 34)
        }
        _ => (be(&data[4..12]) as i64, be(&data[..4])),
    };
    format!("Timestamp(seconds={secs}, nanoseconds={nanos})")
}

/// Append a record's fields as one msgpack map, as
/// `msgpack.packb(dict)` would: str keys, bytes as bin, tuples and sets as
/// arrays, class placeholders as their strings.
pub fn write_fields(fields: &Fields, out: &mut Vec<u8>) {
    write_len(out, fields.len(), [0x80, 0xde, 0xdf], 16);
    for (k, v) in fields {
        write_str(k, out);
        write_value(v, out);
    }
}

/// Append one value as msgpack.
pub fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::None => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => write_int(*i, out),
        Value::BigInt(s) => match s.parse::<u64>() {
            Ok(u) => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
            // msgpack ints stop at 64 bits; the decimal text keeps the value.
            Err(_) => write_str(s, out),
        },
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => {
            write_len(out, b.len(), [0xc4, 0xc5, 0xc6], 0);
            out.extend_from_slice(b);
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            write_len(out, items.len(), [0x90, 0xdc, 0xdd], 16);
            for item in items.iter() {
                write_value(item, out);
            }
        }
        Value::Dict(pairs) => {
            write_len(out, pairs.len(), [0x80, 0xde, 0xdf], 16);
            for (k, v) in pairs.iter() {
                write_value(k, out);
                write_value(v, out);
            }
        }
        Value::Object(o) => write_str(&o.str, out),
    }
}

/// Append a msgpack str.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    if s.len() < 32 {
        out.push(0xa0 | s.len() as u8);
    } else if s.len() <= 0xff {
        out.push(0xd9);
        out.push(s.len() as u8);
    } else {
        write_len(out, s.len(), [0, 0xda, 0xdb], 0);
    }
    out.extend_from_slice(s.as_bytes());
}

/// Append an int in its smallest msgpack form (as Python's msgpack does).
pub fn write_int(i: i64, out: &mut Vec<u8>) {
    match i {
        0..=0x7f => out.push(i as u8),
        -32..=-1 => out.push(i as i8 as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, i as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        }
        i if i > 0 => {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
        -0x80..=-33 => out.extend_from_slice(&[0xd0, i as i8 as u8]),
        -0x8000..=-0x81 => {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        }
        -0x8000_0000..=-0x8001 => {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
}

/// A length header: `markers` = [fix base (or 0: no fix form), 16-bit,
/// 32-bit]; `fix_max` = lengths below it use the fix form.
fn write_len(out: &mut Vec<u8>, len: usize, markers: [u8; 3], fix_max: usize) {
    if markers[0] != 0 && len < fix_max {
        out.push(markers[0] | len as u8);
    } else if markers[0] == 0xc4 && len <= 0xff {
        // bin8 has an 8-bit form and no fix form.
        out.extend_from_slice(&[0xc4, len as u8]);
    } else if len <= 0xffff {
        out.push(markers[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(markers[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(fields: &Fields) -> Bytes {
        let mut out = Vec::new();
        write_fields(fields, &mut out);
        Bytes::from(out)
    }

    /// Leaving fields out keeps exactly the others, with the defaults
    /// `makeLogRecord` would give the kept ones that were not sent —
    /// `msecs` from the record's own `created` even when `created` itself
    /// is not kept — and refuses the same frames.
    #[test]
    fn fields_left_out_are_exactly_the_ones_not_kept() {
        let sent: Fields = vec![
            ("name".into(), Value::str("app")),
            ("msg".into(), Value::str("hi")),
            ("levelno".into(), Value::Int(20)),
            ("created".into(), Value::Float(1_700_000_000.25)),
            ("user".into(), Value::str("ann")),
            ("pathname".into(), Value::str("/srv/app.py")),
        ];
        let frame = map(&sent);
        let (full, _) = decode(&frame).unwrap();
        for keep in [
            Keep::NONE,
            Keep::fields(["msecs"]),
            Keep::fields(["msg", "args", "levelname", "process"]),
            Keep::fields(["user", "created"]),
        ] {
            let (got, _) = decode_keeping(&frame, keep).unwrap();
            let kept = |k: &Str| keep.keeps_name(k);
            let mut want = full.clone();
            want.retain(|(k, _)| kept(k));
            let mut got_kept = got.clone();
            got_kept.retain(|(k, _)| kept(k));
            assert_eq!(got_kept, want, "{keep:?}");
        }
        let (msecs, _) = decode_keeping(&frame, Keep::fields(["msecs"])).unwrap();
        let msecs = msecs.iter().find(|(k, _)| k == "msecs").map(|(_, v)| v);
        assert_eq!(msecs, Some(&Value::Float(250.0)));
        // A bad value in a field left out still refuses the frame.
        let mut bad = map(&sent).to_vec();
        bad.truncate(bad.len() - 2);
        assert!(decode_keeping(&Bytes::from(bad), Keep::NONE).is_err());
    }

    /// A frame may hold at most MAX_VALUES values, counted across nesting.
    #[test]
    fn a_frame_of_too_many_nils_is_refused() {
        let frame = |n: usize| {
            let mut b = vec![0x81, 0xa1, b'x', 0xdd];
            b.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
            b.resize(b.len() + n, 0xc0);
            Bytes::from(b)
        };
        // The array is one value.
        assert!(parse_map(&frame(MAX_VALUES - 1)).is_ok());
        let e = parse_map(&frame(MAX_VALUES)).unwrap_err().to_string();
        assert!(e.contains("more than 1048576 values"), "{e}");
    }

    #[test]
    fn round_trips_every_type() {
        let long = "x".repeat(70_000);
        let fields: Fields = vec![
            ("n".into(), Value::None),
            ("t".into(), Value::Bool(true)),
            ("i".into(), Value::Int(-5)),
            ("big".into(), Value::Int(140_000_000_000_000)),
            ("neg".into(), Value::Int(-70_000)),
            ("u64".into(), Value::BigInt("18446744073709551615".into())),
            ("f".into(), Value::Float(1700000000.123456)),
            ("s".into(), Value::str("é")),
            ("long".into(), Value::str(long.as_str())),
            ("b".into(), Value::Bytes(Bytes::from_static(b"\x00\xff"))),
            (
                "l".into(),
                Value::List(Arc::new(vec![Value::Int(1), Value::str("a")])),
            ),
            (
                "d".into(),
                Value::Dict(Arc::new(vec![(Value::Int(1), Value::None)])),
            ),
        ];
        assert_eq!(parse_map(&map(&fields)).unwrap(), fields);
    }

    #[test]
    fn python_msgpack_bytes_decode() {
        // msgpack.packb({"msg": "hi", "levelno": 20, "args": None, "x": [1.5, b"\x01"]})
        let frame = Bytes::from_static(
            b"\x84\xa3msg\xa2hi\xa7levelno\x14\xa4args\xc0\xa1x\x92\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x01\x01",
        );
        let f = parse_map(&frame).unwrap();
        assert_eq!(f[0], ("msg".into(), Value::str("hi")));
        assert_eq!(f[1], ("levelno".into(), Value::Int(20)));
        assert_eq!(f[2], ("args".into(), Value::None));
        assert_eq!(
            f[3].1,
            Value::List(Arc::new(vec![
                Value::Float(1.5),
                Value::Bytes(Bytes::from_static(b"\x01"))
            ]))
        );
    }

    /// Repeats are caught as keys arrive, for LogRecord's own names (by
    /// bit) and for other keys (by compare, and past eight of them by the
    /// general dedup): first position, last value, as a Python dict.
    #[test]
    fn repeated_keys_keep_their_first_position_and_last_value() {
        let f = |pairs: &[(&str, i64)]| -> Fields {
            pairs
                .iter()
                .map(|(k, v)| (Str::from(*k), Value::Int(*v)))
                .collect()
        };
        let others: Vec<(String, i64)> = (0..10).map(|i| (format!("o{i}"), i)).collect();
        let mut many: Vec<(&str, i64)> = others.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        many.push(("o3", 99));
        for (sent, want) in [
            (
                f(&[("msg", 1), ("x", 2), ("msg", 3), ("levelno", 4)]),
                f(&[("msg", 3), ("x", 2), ("levelno", 4)]),
            ),
            (f(&[("x", 1), ("y", 2), ("x", 3)]), f(&[("x", 3), ("y", 2)])),
            (f(&many), {
                let mut w = f(&many[..10]);
                w[3].1 = Value::Int(99);
                w
            }),
        ] {
            assert_eq!(parse_map(&map(&sent)).unwrap(), want);
        }
        // A key that is not a fixstr (str8) is a key too.
        let frame = Bytes::from_static(b"\x82\xd9\x03msg\x01\xa3msg\x02");
        assert_eq!(parse_map(&frame).unwrap(), f(&[("msg", 2)]));
        // And a key that is not a string is refused.
        assert!(parse_map(&Bytes::from_static(b"\x81\x01\x01")).is_err());
    }

    #[test]
    fn refuses_non_maps_trailing_bytes_and_deep_nesting() {
        assert!(parse_map(&Bytes::from_static(b"\x91\x01")).is_err());
        assert!(parse_map(&Bytes::from_static(b"\x80\x00")).is_err());
        assert!(parse_map(&Bytes::from_static(b"\x81\x01\x01")).is_err());
        assert!(parse_map(&Bytes::from_static(b"\x81\xa1a\xdd\xff\xff\xff\xff")).is_err());
        let mut deep = b"\x81\xa1a".to_vec();
        deep.extend(std::iter::repeat_n(0x91u8, 100_000));
        deep.push(0xc0);
        assert!(parse_map(&Bytes::from(deep)).is_err());
    }

    /// Containers nested 255 deep that each declare 2^32 - 1 elements
    /// reserve capacity from one budget of the frame's length; each used
    /// to reserve what was left of the frame (255 times 16 MiB elements for
    /// a 16 MiB frame, an abort wherever memory is not overcommitted).
    #[test]
    fn nested_huge_declared_lengths_reserve_at_most_the_frame() {
        let mut b = b"\x81\xa1a".to_vec();
        for _ in 0..MAX_DEPTH - 1 {
            b.extend_from_slice(b"\xdd\xff\xff\xff\xff");
        }
        b.resize(b.len() + 65_536, 0xc0);
        let frame = Bytes::from(b);
        assert!(parse_map(&frame).is_err());
        let mut p = Parser {
            frame: &frame,
            pos: 3,
            reserved: 0,
            values: 0,
        };
        assert!(p.value(1).is_err());
        assert!(p.reserved <= frame.len(), "{} reserved", p.reserved);
    }

    #[test]
    fn ext_values_become_placeholders() {
        // msgpack.packb({"t": msgpack.Timestamp(1, 5)})
        let frame = Bytes::from_static(b"\x81\xa1t\xd7\xff\x00\x00\x00\x14\x00\x00\x00\x01");
        let f = parse_map(&frame).unwrap();
        let Value::Object(o) = &f[0].1 else {
            panic!("not an object: {:?}", f[0].1)
        };
        assert_eq!(&*o.repr, "Timestamp(seconds=1, nanoseconds=5)");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_map(&Bytes::from(bytes));
        }

        /// rmp-serde as the oracle, both ways: a map it encodes decodes to
        /// the same values here, and what `write_fields` encodes it reads
        /// back as the same document.
        #[test]
        fn rmp_serde_agrees_both_ways(doc in proptest::collection::btree_map(
            "[a-z_]{1,12}",
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                (-1e300f64..1e300).prop_map(serde_json::Value::from),
                "\\PC{0,20}".prop_map(serde_json::Value::from),
                proptest::collection::vec(any::<i32>(), 0..4).prop_map(serde_json::Value::from),
            ],
            0..8,
        )) {
            fn ours(v: &serde_json::Value) -> Value {
                match v {
                    serde_json::Value::Null => Value::None,
                    serde_json::Value::Bool(b) => Value::Bool(*b),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => Value::Int(i),
                        None => Value::Float(n.as_f64().unwrap()),
                    },
                    serde_json::Value::String(s) => Value::str(s.as_str()),
                    serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(ours).collect())),
                    serde_json::Value::Object(_) => unreachable!("not generated"),
                }
            }
            let fields: Fields = doc.iter().map(|(k, v)| (Str::from(k.as_str()), ours(v))).collect();
            let theirs = Bytes::from(rmp_serde::to_vec(&doc).unwrap());
            prop_assert_eq!(parse_map(&theirs).unwrap(), fields.clone());
            let mut mine = Vec::new();
            write_fields(&fields, &mut mine);
            let back: std::collections::BTreeMap<String, serde_json::Value> =
                rmp_serde::from_slice(&mine).unwrap();
            prop_assert_eq!(back, doc);
        }

        #[test]
        fn ints_round_trip(i in any::<i64>()) {
            let f: Fields = vec![("i".into(), Value::Int(i))];
            prop_assert_eq!(parse_map(&map(&f)).unwrap(), f);
        }
    }

    /// A record map with a hundred thousand keys decodes in linear time
    /// (keys made unique by hashing); a repeated key keeps its first
    /// position and the last value.
    #[test]
    fn many_keys_at_the_top_level() {
        let n: u32 = 100_000;
        let mut b = vec![0xdf];
        b.extend_from_slice(&(n + 1).to_be_bytes());
        let key = |b: &mut Vec<u8>, i: u32| {
            let k = format!("k{i}");
            b.push(0xa0 | k.len() as u8);
            b.extend_from_slice(k.as_bytes());
        };
        for i in 0..n {
            key(&mut b, i);
            b.extend_from_slice(&[0xce]);
            b.extend_from_slice(&i.to_be_bytes());
        }
        key(&mut b, 0);
        b.push(0xff); // -1
        let fields = parse_map(&Bytes::from(b)).unwrap();
        assert_eq!(fields.len(), n as usize);
        assert_eq!(fields[0], (Str::from("k0"), Value::Int(-1)));
        assert_eq!(fields[1], (Str::from("k1"), Value::Int(1)));
    }
}
