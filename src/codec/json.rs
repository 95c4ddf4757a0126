//! JSON records: decoding a frame that holds one JSON object, and encoding
//! a record as one JSON line (`encoding: json`).
//!
//! Encoding follows docs/decisions.md ("Records and encoding"): fields in
//! arrival order, nothing
//! added; None is `null`; NaN and infinities are `null` (JSON has no such
//! numbers); integers of any size are JSON numbers; bytes are the string of
//! their Python repr; class instances are their placeholder strings.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{DecodeError, Keep, MAX_VALUES};
use crate::format::pyrepr::bytes_repr;
use crate::record::{Fields, Record, Str, Value};

/// Decode one frame holding a JSON object into a record's fields, with
/// `makeLogRecord`'s defaults for the attributes it lacks
/// ([`crate::codec::defaults`]).
///
/// The top-level object is read straight into fields, without building a
/// `serde_json::Value` first: strings without escapes borrow from `frame`
/// (no copy), LogRecord's attribute names become static strings, and a
/// repeated key keeps its first position with the last value, as a Python
/// dict (and `parse_object`) would.
///
/// A lone surrogate escape (`"\udcff"`, which Python's `json.dumps` writes
/// for a str decoded with `errors="surrogateescape"`) is refused by
/// serde_json; such a frame is decoded again with each one read as
/// U+FFFD, as the pickle decoder does with a surrogate pickled by
/// `surrogatepass` (docs/decisions.md, "Records and encoding": a record
/// fully received is written). Only a frame that failed pays for that.
pub fn decode(frame: &Bytes) -> Result<(Fields, u32), DecodeError> {
    decode_keeping(frame, Keep::ALL)
}

/// [`decode`] for a reader of only the fields `keep` names. A flat object
/// of scalars (every real record) takes the fast path
/// ([`super::json_flat`]), which leaves the other fields out and adds no
/// defaults for them; anything else takes serde_json, which keeps every
/// field. Which frames decode does not depend on `keep`.
pub fn decode_keeping(frame: &Bytes, keep: Keep) -> Result<(Fields, u32), DecodeError> {
    let keep = crate::codec::defaults::keep_for_fill(keep);
    match super::json_flat::try_decode(frame, keep) {
        Some((fields, seen)) => Ok(crate::codec::defaults::fill_known(fields, seen)),
        None => decode_full(frame),
    }
}

/// [`decode`] by serde_json, for every frame the fast path leaves.
pub(super) fn decode_full(frame: &Bytes) -> Result<(Fields, u32), DecodeError> {
    decode_frame(frame).or_else(|e| match replace_lone_surrogates(frame) {
        Some(fixed) => decode_frame(&Bytes::from(fixed)),
        None => Err(e),
    })
}

/// [`decode`] without the second try.
fn decode_frame(frame: &Bytes) -> Result<(Fields, u32), DecodeError> {
    use serde::de::DeserializeSeed;
    // One UTF-8 check of the whole frame, which is quicker than the
    // deserializer checking every string on its own (`from_slice`), and
    // refuses the same frames: a JSON text is UTF-8 throughout.
    let text = std::str::from_utf8(frame)
        .map_err(|e| DecodeError::Json(format!("the frame is not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let values = std::cell::Cell::new(0);
    let (fields, own) = TopLevel {
        frame,
        values: &values,
    }
    .deserialize(&mut de)
    .and_then(|f| de.end().map(|()| f))
    .map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(crate::codec::defaults::fill_known(fields, own))
}

/// `text` with every lone surrogate escape rewritten to `\ufffd`, or
/// `None` if it holds none.
///
/// A `\uD800`-`\uDBFF` escape directly followed by a `\uDC00`-`\uDFFF`
/// one is a pair, one character, and stays; any other surrogate escape is
/// lone, as Python's `json.loads` sees it, and becomes one U+FFFD: what
/// `char::decode_utf16` makes of the code units. The rewrite keeps every
/// byte's position (six bytes for six), so a later error names the same
/// column, and keeps every other byte, so the frame's limits (values,
/// nesting, repeated keys) apply to it unchanged.
///
/// Quotes need no tracking: in JSON a backslash starts an escape inside a
/// string and is an error anywhere else, and no byte of a multi-byte UTF-8
/// character is a backslash.
fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    const HIGH: std::ops::RangeInclusive<u16> = 0xD800..=0xDBFF;
    const LOW: std::ops::RangeInclusive<u16> = 0xDC00..=0xDFFF;
    let unit = |at: usize| -> Option<u16> {
        match text.get(at..at + 6)? {
            [b'\\', b'u', hex @ ..] => {
                let hex = std::str::from_utf8(hex).ok()?;
                // from_str_radix takes a sign; JSON does not.
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    u16::from_str_radix(hex, 16).ok()
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    let mut fixed: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(at) = text
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        i += at;
        let Some(n) = unit(i) else {
            i += 2; // `\` and the escaped character
            continue;
        };
        if HIGH.contains(&n) && unit(i + 6).is_some_and(|m| LOW.contains(&m)) {
            i += 12;
            continue;
        }
        if HIGH.contains(&n) || LOW.contains(&n) {
            let out = fixed.get_or_insert_with(|| text.to_vec());
            if let Some(digits) = out.get_mut(i + 2..i + 6) {
                digits.copy_from_slice(b"fffd");
            }
        }
        i += 6;
    }
    fixed
}

/// A string the deserializer found in `frame`: a slice of it when the text
/// had no escapes (its bytes are then exactly the string's), else a copy.
fn frame_str(frame: &Bytes, s: &str) -> Str {
    let base = frame.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    if at >= base && at + s.len() <= base + frame.len() {
        let start = at - base;
        let slice = frame.slice(start..start + s.len());
        // SAFETY: `slice` is the same bytes as `s` (same address, same
        // length, inside `frame`), and `s` is a `&str`, so they are UTF-8,
        // all that `from_bytes_unchecked` requires.
        return unsafe { Str::from_bytes_unchecked(slice) };
    }
    Str::from(s)
}

/// The top-level object of a frame, read into fields; `values` counts the
/// values decoded (see [`MAX_VALUES`]: `[0,0,…]` takes two bytes a value
/// on the wire and 40 in memory).
struct TopLevel<'f> {
    frame: &'f Bytes,
    values: &'f std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_> {
    type Value = (Fields, u32);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(Fields, u32), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_> {
    type Value = (Fields, u32);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object at the top level")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(Fields, u32), A::Error> {
        object_fields(self.frame, self.values, map, crate::record::spare_fields())
    }
}

/// The pairs of a JSON object, in document order, keys made unique as a
/// Python dict (and serde_json's ordered map) would, and the bits
/// ([`crate::codec::defaults::own_name`]) of the LogRecord attributes among
/// them.
///
/// Repeats are found as the keys arrive ([`crate::codec::Repeats`]). The
/// pairs are pushed onto `fields`, empty: a record's spare list at the top
/// level, a new one for a nested object (which becomes a dict).
fn object_fields<'de, A: serde::de::MapAccess<'de>>(
    frame: &Bytes,
    values: &std::cell::Cell<usize>,
    mut map: A,
    mut fields: Fields,
) -> Result<(Fields, u32), A::Error> {
    let mut repeats = crate::codec::Repeats::default();
    while let Some((key, bit)) = map.next_key_seed(KeySeed { frame })? {
        repeats.note(&key, bit, &fields);
        let value = map.next_value_seed(ValueSeed { frame, values })?;
        fields.push((key, value));
    }
    let own = repeats.finish(&mut fields);
    Ok((fields, own))
}

/// An object key: LogRecord's own names static, others borrowed or copied.
struct KeySeed<'f> {
    frame: &'f Bytes,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (Str, u32);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(Str, u32), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed<'_> {
    type Value = (Str, u32);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<(Str, u32), E> {
        Ok(crate::codec::defaults::record_key(s.as_bytes(), || {
            frame_str(self.frame, s)
        }))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(Str, u32), E> {
        Ok(crate::codec::defaults::record_key(s.as_bytes(), || {
            Str::from(s)
        }))
    }
}

/// Any JSON value, as [`from_json`] would convert it, counted in
/// `values`.
struct ValueSeed<'f> {
    frame: &'f Bytes,
    values: &'f std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let n = self.values.get() + 1;
        if n > MAX_VALUES {
            return Err(serde::de::Error::custom(format!(
                "more than {MAX_VALUES} values in one frame"
            )));
        }
        self.values.set(n);
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(Str::from(u.to_string())),
        })
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Value, E> {
        Ok(Value::Str(frame_str(self.frame, s)))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(Str::from(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            frame: self.frame,
            values: self.values,
        })? {
            items.push(v);
        }
        Ok(Value::List(Arc::new(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let (fields, _) = object_fields(self.frame, self.values, map, Vec::new())?;
        Ok(Value::Dict(Arc::new(
            fields
                .into_iter()
                .map(|(k, v)| (Value::Str(k), v))
                .collect(),
        )))
    }
}

/// Parse JSON text that must be an object into fields, in document order.
pub fn parse_object(text: &[u8]) -> Result<Fields, DecodeError> {
    match parse_json(text)? {
        serde_json::Value::Object(map) => Ok(map
            .into_iter()
            .map(|(k, v)| (Str::from(k), from_json(v)))
            .collect()),
        other => Err(DecodeError::Json(format!(
            "top level is {}, not an object",
            json_kind(&other)
        ))),
    }
}

/// Parse any JSON text into a [`Value`].
pub fn parse_value(text: &[u8]) -> Result<Value, DecodeError> {
    Ok(from_json(parse_json(text)?))
}

fn parse_json(text: &[u8]) -> Result<serde_json::Value, DecodeError> {
    // serde_json's recursion limit (128) bounds nesting, so hostile input
    // cannot overflow the stack.
    serde_json::from_slice(text).map_err(|e| DecodeError::Json(e.to_string()))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Convert a parsed JSON value into a [`Value`]: objects become dicts with
/// string keys, arrays lists, integers beyond `i64` [`Value::BigInt`].
pub fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::BigInt(Str::from(u.to_string()))
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::Str(Str::from(s)),
        serde_json::Value::Array(a) => {
            Value::List(Arc::new(a.into_iter().map(from_json).collect()))
        }
        serde_json::Value::Object(m) => Value::Dict(Arc::new(
            m.into_iter()
                .map(|(k, v)| (Value::Str(Str::from(k)), from_json(v)))
                .collect(),
        )),
    }
}

/// Append a record's fields as one JSON object (no newline).
pub fn write_fields(fields: &Fields, out: &mut Vec<u8>) {
    write_pairs(fields.iter(), out);
}

/// Append the fields a record was sent with or a filter set, without the
/// decoder's `makeLogRecord` defaults ([`Record::sent`]), as one JSON
/// object (no newline): an `encoding: json` line.
pub fn write_record(record: &Record, out: &mut Vec<u8>) {
    if record.defaulted == 0 {
        // Every pickle record: no per-field test.
        write_fields(&record.fields, out);
    } else {
        write_pairs(record.sent(), out);
    }
}

fn write_pairs<'a>(pairs: impl Iterator<Item = &'a (Str, Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_value(v, out);
    }
    out.push(b'}');
}

/// Append a finite float as JSON: the shortest digits that read back as
/// the same float, exponents written `1e16` / `1e-7` (no `+`: the layout
/// logrelay has always written).
#[inline]
pub(crate) fn write_float(f: f64, out: &mut Vec<u8>) {
    // A whole number under 1e16 (a record's `msecs` or `relativeCreated`
    // often is) is its integer digits and `.0`, as the shortest
    // round-trip form writes it; the integer is exact below 2^63. Not -0.0,
    // whose integer has no sign.
    if f == f.trunc() && f.abs() < 1e16 && (f != 0.0 || f.is_sign_positive()) {
        crate::codec::append(out, itoa::Buffer::new().format(f as i64).as_bytes());
        out.extend_from_slice(b".0");
        return;
    }
    write_shortest(f, out);
}

/// [`write_float`] for any finite float: zmij's shortest digits, without
/// the `+` of a positive exponent.
fn write_shortest(f: f64, out: &mut Vec<u8>) {
    let mut buf = zmij::Buffer::new();
    let text = buf.format_finite(f).as_bytes();
    match text.iter().position(|&c| c == b'+') {
        Some(plus) => {
            out.extend_from_slice(&text[..plus]);
            out.extend_from_slice(&text[plus + 1..]);
        }
        None => out.extend_from_slice(text),
    }
}

/// Append one value as JSON.
pub fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::None => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::BigInt(s) => out.extend_from_slice(s.as_bytes()),
        Value::Float(f) if f.is_finite() => write_float(*f, out),
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(b.len() + 3);
            bytes_repr(b, &mut s);
            write_str(&s, out);
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Dict(pairs) => {
            out.push(b'{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
        Value::Object(o) => write_str(&o.str, out),
    }
}

/// JSON object keys must be strings: convert as Python's `json.dumps` does
/// for the scalar key types, and use the JSON text of anything else.
fn write_key(k: &Value, out: &mut Vec<u8>) {
    match k {
        Value::Str(s) => write_str(s, out),
        Value::Object(o) => write_str(&o.str, out),
        other => {
            let mut text = Vec::new();
            write_value(other, &mut text);
            write_str(&String::from_utf8_lossy(&text), out);
        }
    }
}

/// Append a JSON string literal. Non-ASCII is written as UTF-8, not
/// `\uXXXX`, so lines stay readable and byte-comparable.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    write_utf8(s.as_bytes(), out);
}

/// [`write_utf8`] of bytes not known to be UTF-8: `None`, with nothing
/// appended, if they are not. ASCII with nothing to escape (nearly every
/// string of a record) is found in one pass and copied.
#[inline]
pub(crate) fn write_checked(bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let clean = if bytes.len() >= 16 {
        super::json_flat::clean_ascii(bytes)
    } else {
        !any_escape_or_high(bytes)
    };
    if clean {
        write_quoted(bytes, out);
        return Some(());
    }
    std::str::from_utf8(bytes).ok()?;
    write_utf8(bytes, out);
    Some(())
}

/// Append `bytes`, which need no escape, between quotes: one copy.
#[inline(always)]
fn write_quoted(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    crate::codec::append(out, bytes);
    out.push(b'"');
}

/// [`write_str`] of the UTF-8 bytes of a string (checked by the caller:
/// bytes are copied as they are, escaping only what JSON requires).
pub(crate) fn write_utf8(bytes: &[u8], out: &mut Vec<u8>) {
    // Long strings (messages, paths) sixteen bytes at a time.
    let clean = if bytes.len() >= 16 {
        super::json_flat::special(bytes).is_none()
    } else {
        !any_needs_escape(bytes)
    };
    if clean {
        // Nearly every string: one copy.
        write_quoted(bytes, out);
        return;
    }
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip 8 bytes at a time while none of them needs escaping.
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(escape);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `b` is a control character, `"` or `\\`, as
/// [`needs_escape`] of whole words: eight bytes at a time, the last eight
/// covering the tail; a string under eight bytes is made one word from
/// two overlapping loads, padded with spaces (which need no escape).
#[inline]
fn any_needs_escape(b: &[u8]) -> bool {
    any_word(b, needs_escape)
}

/// Whether any byte of `b` needs an escape or is above 0x7f: `b` is not
/// a JSON string's text as it is, known to be UTF-8 (it is, if ASCII).
#[inline]
pub(crate) fn any_escape_or_high(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    any_word(b, |w| needs_escape(w) || w & HIGH != 0)
}

/// Whether `test` holds for any word of `b`, read as [`any_needs_escape`]
/// describes (the padding is spaces: ASCII, nothing to escape).
#[inline(always)]
fn any_word(b: &[u8], test: impl Fn(u64) -> bool) -> bool {
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let word = if let Some(last) = b.last_chunk::<8>() {
        let mut any = test(u64::from_le_bytes(*last));
        for c in b.chunks_exact(8) {
            if let Some(w) = c.first_chunk::<8>() {
                any |= test(u64::from_le_bytes(*w));
            }
        }
        return any;
    } else if let (Some(a), Some(z)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*z)) << 32
    } else if let (Some(a), Some(z)) = (b.first_chunk::<2>(), b.last_chunk::<2>()) {
        u64::from(u16::from_le_bytes(*a)) | u64::from(u16::from_le_bytes(*z)) << 16 | SPACES << 32
    } else if let Some(&c) = b.first() {
        u64::from(c) | SPACES << 8
    } else {
        return false;
    };
    test(word)
}

/// Whether any of the 8 bytes in `w` is a control character, `"` or `\`.
/// Exact (no false positives or negatives) for "any": the classic SWAR
/// tests `(x - 0x01..) & !x & 0x80..` (a zero byte) and its "less than n"
/// form, which only err in which byte they flag, never in whether one is.
#[inline]
fn needs_escape(w: u64) -> bool {
    escape_mask(w) != 0
}

/// The high bit of each byte of `w` (read little-endian) that the tests
/// of [`needs_escape`] flag. A byte can be flagged wrongly only by a
/// borrow from a flagged byte below it, so the lowest flagged byte is
/// always the first control character, `"` or `\\`.
#[inline]
pub(super) fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    control | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Object;

    proptest::proptest! {
        /// The word-at-a-time scan escapes exactly what serde_json does,
        /// wherever in a word the byte falls.
        #[test]
        fn write_str_escapes_as_serde_json(s in "[ -~\\x00-\\x1f\"\\\\é€😀\\x7f]{0,40}") {
            let mut out = Vec::new();
            write_str(&s, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }

    /// Floats keep the layout ryu gave them (1e16, no `+`), the digits
    /// being the shortest that round-trip (zmij writes `1e+16`).
    #[test]
    fn floats_are_written_as_before() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (123.0, "123.0"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e16"),
            (1.5e17, "1.5e17"),
            (1e-4, "0.0001"),
            (1e-5, "0.00001"),
            (1.5e-7, "1.5e-7"),
            (1733600000.123456, "1733600000.123456"),
            (123.456789, "123.456789"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (-2.5e-300, "-2.5e-300"),
        ];
        for &(f, want) in cases {
            let mut out = Vec::new();
            write_value(&Value::Float(f), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{f:e}");
        }
    }

    /// Whole numbers take a shortcut; it writes what zmij would.
    #[test]
    fn whole_floats_are_written_as_zmij_writes_them() {
        let mut cases = vec![0.0, -0.0, 1e16, -1e16, 9007199254740993.0, 1e16 - 2.0];
        for k in 0..64 {
            let p = 2f64.powi(k);
            cases.extend([
                p,
                -p,
                p - 1.0,
                p + 1.0,
                10f64.powi(k % 17),
                -(10f64.powi(k % 17)),
            ]);
        }
        let mut x = 1u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let f = (x >> (x % 40)) as f64;
            cases.extend([f, -f, f.trunc() + 0.5]);
        }
        for f in cases {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            write_float(f, &mut fast);
            write_shortest(f, &mut slow);
            assert_eq!(fast, slow, "{f:e}");
        }
    }

    #[test]
    fn write_str_escapes_every_control_byte_at_every_offset() {
        // Every length from the one-byte string to past two words, so
        // each of the short-string loads and the overlapping last word
        // sees the byte at each of its positions.
        for b in 0u8..=0x7f {
            for len in 1..=17 {
                for at in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == at { char::from(b) } else { 'a' })
                        .collect();
                    let mut out = Vec::new();
                    write_str(&s, &mut out);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&s).unwrap()
                    );
                }
            }
        }
    }

    /// A frame may hold at most MAX_VALUES values, counted across nesting.
    #[test]
    fn a_frame_of_too_many_values_is_refused() {
        let frame = |n: usize| {
            let list = vec!["0"; n].join(",");
            Bytes::from(format!(r#"{{"msg":"m","x":[[{list}]]}}"#))
        };
        // "m", the outer list and the inner one are three values.
        assert!(decode(&frame(MAX_VALUES - 3)).is_ok());
        let e = decode(&frame(MAX_VALUES - 2)).unwrap_err().to_string();
        assert!(e.contains("more than 1048576 values"), "{e}");
    }

    #[test]
    fn encodes_values_per_spec() {
        let fields: Fields = vec![
            ("n".into(), Value::None),
            ("nan".into(), Value::Float(f64::NAN)),
            (
                "big".into(),
                Value::BigInt("123456789012345678901234567890".into()),
            ),
            (
                "b".into(),
                Value::Bytes(bytes::Bytes::from_static(b"a\x00'")),
            ),
            (
                "o".into(),
                Value::Object(Arc::new(Object {
                    class: "x.Y".into(),
                    str: "<x.Y object>".into(),
                    repr: "<x.Y object>".into(),
                })),
            ),
            ("s".into(), Value::str("é\"\n\u{1}")),
            (
                "t".into(),
                Value::Tuple(Arc::new(vec![Value::Int(1), Value::Float(0.5)])),
            ),
        ];
        let mut out = Vec::new();
        write_fields(&fields, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"n":null,"nan":null,"big":123456789012345678901234567890,"b":"b\"a\\x00'\"","o":"<x.Y object>","s":"é\"\n\u0001","t":[1,0.5]}"#
        );
    }

    #[test]
    fn parses_objects_in_order_and_rejects_non_objects() {
        let f = parse_object(br#"{"z":1,"a":[true,null],"big":18446744073709551615}"#).unwrap();
        assert_eq!(f[0].0, "z");
        assert_eq!(
            f[1].1,
            Value::List(Arc::new(vec![Value::Bool(true), Value::None]))
        );
        assert_eq!(f[2].1, Value::BigInt("18446744073709551615".into()));
        assert!(parse_object(b"[1]").is_err());
        assert!(parse_object(b"{").is_err());
        let deep = "[".repeat(100_000);
        assert!(parse_value(deep.as_bytes()).is_err());
    }

    /// The direct decoder gives exactly what parsing to `serde_json::Value`
    /// and converting gives, and borrows unescaped strings from the frame.
    #[test]
    fn direct_decode_matches_the_value_path() {
        let docs: &[&str] = &[
            r#"{"name":"app","msg":"hello","levelno":20,"created":1.5,"args":null}"#,
            r#"{"z":1,"a":[true,null,{"k":"v","k":"w"}],"big":18446744073709551615,"neg":-3}"#,
            r#"{"msg":"esc \" \n \u00e9 \ud83d\ude00","x\ty":"k","f":1e308,"g":-0.0}"#,
            r#"{"dup":1,"other":2,"dup":3}"#,
            r#"{"msg":"a","created":1.0,"x":1,"msg":"b","levelno":10,"x":2}"#,
            r#"{"created":2.0,"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}"#,
            r#"{"name":"a","name":"b","msg":{"nested":[1,[2,[3]]]}}"#,
            r#"{}"#,
            r#"  {"spaces" : [ ] , "o" : { } }  "#,
        ];
        for doc in docs {
            let frame = Bytes::copy_from_slice(doc.as_bytes());
            let got = decode(&frame).unwrap();
            let want = crate::codec::defaults::fill(parse_object(doc.as_bytes()).unwrap());
            // The defaults' `created`-derived values depend on the clock
            // when `created` is absent: compare only documents that have it,
            // and the keys of the others.
            if doc.contains("\"created\"") {
                assert_eq!(got, want, "{doc}");
            } else {
                let keys = |f: &Fields| f.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
                assert_eq!(keys(&got.0), keys(&want.0), "{doc}");
            }
        }
        let frame = Bytes::from_static(br#"{"msg":"plain","extra":"x"}"#);
        let (fields, _) = decode(&frame).unwrap();
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let msg = fields.iter().find(|(k, _)| k == "msg").unwrap();
        assert!(range.contains(&(msg.1.as_str().unwrap().as_ptr() as usize)));
        let not_utf8 = b"{\"a\":\"\xff\"}";
        for bad in [
            &b"[1]"[..],
            b"{",
            b"{} x",
            b"\"s\"",
            b"{\"a\":}",
            b"{1:2}",
            not_utf8,
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    /// The `msg` of a frame that holds one record.
    fn msg_of(doc: &str) -> Value {
        let (fields, _) = decode(&Bytes::copy_from_slice(doc.as_bytes())).unwrap();
        fields.into_iter().find(|(k, _)| k == "msg").unwrap().1
    }

    /// A lone surrogate escape, as `json.dumps('\udcff')` writes it,
    /// becomes one U+FFFD, as the pickle decoder makes of the same str; a
    /// pair stays its character; an escaped backslash before `udcff` is
    /// text, not an escape.
    #[test]
    fn lone_surrogate_escapes_become_one_replacement_each() {
        let cases: &[(&str, &str)] = &[
            (r#"a\udcffb"#, "a\u{fffd}b"),
            (r#"\uDCFF"#, "\u{fffd}"),
            (r#"end \ud800"#, "end \u{fffd}"),
            (r#"\ud800\ud800"#, "\u{fffd}\u{fffd}"),
            (r#"\udc00\ud800"#, "\u{fffd}\u{fffd}"),
            (r#"\ud83d\u0041"#, "\u{fffd}A"),
            (r#"\ud83d\n"#, "\u{fffd}\n"),
            (r#"\ud83d\ud83d\ude00"#, "\u{fffd}\u{1f600}"),
            (r#"\ud83d\ude00\udcff"#, "\u{1f600}\u{fffd}"),
            (r#"\\udcff \udcff"#, "\\udcff \u{fffd}"),
            (r#"\\\udcff é"#, "\\\u{fffd} é"),
        ];
        for (escaped, want) in cases {
            let doc = format!(r#"{{"msg":"{escaped}","created":1.0}}"#);
            assert_eq!(msg_of(&doc), Value::str(*want), "{escaped}");
        }
    }

    /// The rest of such a record decodes as before: keys with a lone
    /// surrogate, nested values, unescaped strings still borrowed from the
    /// (rewritten) frame, and two keys that both become `k\u{fffd}` are
    /// one key, first position and last value, as any repeated key.
    #[test]
    fn a_record_with_lone_surrogates_keeps_its_other_fields() {
        let doc = r#"{"name":"app","msg":"x\udcff","k\udcfe":"v\udcfd","n":[1,{"\ud800":null}],"k\udcfa":2,"created":1.0}"#;
        let got = decode(&Bytes::from_static(doc.as_bytes())).unwrap();
        let want = crate::codec::defaults::fill(vec![
            ("name".into(), Value::str("app")),
            ("msg".into(), Value::str("x\u{fffd}")),
            ("k\u{fffd}".into(), Value::Int(2)),
            (
                "n".into(),
                Value::List(Arc::new(vec![
                    Value::Int(1),
                    Value::Dict(Arc::new(vec![(Value::str("\u{fffd}"), Value::None)])),
                ])),
            ),
            ("created".into(), Value::Float(1.0)),
        ]);
        assert_eq!(got, want);
    }

    /// The same dict through `json.dumps` and `pickle.dumps(d, 1)` (as
    /// SocketHandler, which pickles a surrogate as its own UTF-8 bytes)
    /// decodes to the same fields.
    #[test]
    fn lone_surrogates_decode_as_the_pickle_decoder_does() {
        // python3 -c "d = {'msg': 'x\udcff', 'k\udcfe': 'v\udcfd', 'created': 1.0};
        //   import json, pickle; print(json.dumps(d)); print(pickle.dumps(d, 1))"
        let json =
            Bytes::from_static(br#"{"msg": "x\udcff", "k\udcfe": "v\udcfd", "created": 1.0}"#);
        let pickle = Bytes::from_static(
            b"}q\x00(X\x03\x00\x00\x00msgq\x01X\x04\x00\x00\x00x\xed\xb3\xbfq\x02\
              X\x04\x00\x00\x00k\xed\xb3\xbeq\x03X\x04\x00\x00\x00v\xed\xb3\xbdq\x04\
              X\x07\x00\x00\x00createdq\x05G?\xf0\x00\x00\x00\x00\x00\x00u.",
        );
        let from_pickle = crate::codec::pickle::decode(&pickle).unwrap();
        assert_eq!(
            from_pickle,
            vec![
                ("msg".into(), Value::str("x\u{fffd}")),
                ("k\u{fffd}".into(), Value::str("v\u{fffd}")),
                ("created".into(), Value::Float(1.0)),
            ]
        );
        // Both then get makeLogRecord's defaults.
        let from_json = decode(&json).unwrap();
        assert_eq!(from_json, crate::codec::defaults::fill(from_pickle));
    }

    /// The frame's limits hold on the second try: too many values, too
    /// deep, trailing garbage and invalid escapes are still refused, and a
    /// frame whose only fault is not a surrogate is not rewritten.
    #[test]
    fn limits_still_apply_to_a_frame_with_lone_surrogates() {
        let list = vec!["0"; MAX_VALUES].join(",");
        let many = format!(r#"{{"msg":"\udcff","x":[{list}]}}"#);
        let e = decode(&Bytes::from(many)).unwrap_err().to_string();
        assert!(e.contains("more than 1048576 values"), "{e}");
        let deep = format!(r#"{{"msg":"\udcff","x":{}}}"#, "[".repeat(10_000));
        assert!(decode(&Bytes::from(deep)).is_err());
        for bad in [
            r#"{"msg":"\udcff"} x"#,
            r#"{"msg":"\udcff\x"}"#,
            r#"{"msg":"\udcff\u12"}"#,
            r#"{"msg":"\udcff"#,
            r#"{"msg":\udcff}"#,
            r#"{"msg":"\udcff\ud800\"#,
            "\\udcff",
            "[\"\\udcff\"]",
        ] {
            assert!(
                decode(&Bytes::from_static(bad.as_bytes())).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            replace_lone_surrogates(br#"{"a":"\ud83d\ude00\\udcff"}"#),
            None
        );
        assert_eq!(
            replace_lone_surrogates(br#"{"\udcff":"\ud83d"}"#).as_deref(),
            Some(&br#"{"\ufffd":"\ufffd"}"#[..])
        );
    }

    proptest::proptest! {
        /// Any UTF-16 code units, written as `\uXXXX` escapes (with plain
        /// characters between), decode as `char::decode_utf16` reads them:
        /// one U+FFFD per unpaired surrogate, pairs joined.
        #[test]
        fn escaped_code_units_decode_as_utf16(
            units in proptest::collection::vec(
                proptest::prop_oneof![0xd7f0u16..0xe010, proptest::prelude::any::<u16>()],
                0..12,
            ),
            plain in proptest::collection::vec(proptest::prelude::any::<bool>(), 12),
        ) {
            let mut doc = String::from(r#"{"msg":""#);
            let mut want = Vec::new();
            for (i, &u) in units.iter().enumerate() {
                if plain[i] && !(0xd800..0xe000).contains(&u) {
                    let c = char::from_u32(u32::from(u)).unwrap_or('?');
                    let mut text = Vec::new();
                    write_str(&c.to_string(), &mut text);
                    doc.push_str(std::str::from_utf8(&text[1..text.len() - 1]).unwrap());
                    want.push(c as u16);
                } else {
                    doc.push_str(&format!("\\u{u:04x}"));
                    want.push(u);
                }
            }
            doc.push_str(r#"","created":1.0}"#);
            let want: String = char::decode_utf16(want)
                .map(|c| c.unwrap_or('\u{fffd}'))
                .collect();
            proptest::prop_assert_eq!(msg_of(&doc), Value::str(want));
        }

        /// Random bytes around surrogate escapes never panic.
        #[test]
        fn bytes_with_surrogate_escapes_never_panic(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(r"\udcff".to_string()),
                    proptest::strategy::Just(r"\ud800".to_string()),
                    proptest::strategy::Just(r"\u".to_string()),
                    proptest::strategy::Just("\\".to_string()),
                    proptest::strategy::Just("\"".to_string()),
                    "[ -~é{}\\[\\]]{0,4}",
                ],
                0..16,
            ),
        ) {
            let doc = parts.concat();
            let _ = decode(&Bytes::from(doc.clone()));
            let _ = decode(&Bytes::from(format!(r#"{{"msg":"{doc}"}}"#)));
        }
    }

    /// A frame with a hundred thousand keys (nested here) decodes in
    /// linear time: keys are made unique by hashing, not by comparing each
    /// with all the others. A repeated key keeps its first position and the
    /// last value.
    #[test]
    fn many_keys_in_a_nested_object() {
        let n = 100_000;
        let mut doc = String::from(r#"{"msg":"x","extra":{"#);
        for i in 0..n {
            doc.push_str(&format!(r#""k{i}":{i},"#));
        }
        doc.push_str(r#""k0":-1}}"#);
        let (fields, _) = decode(&Bytes::from(doc)).unwrap();
        let extra = fields.iter().find(|(k, _)| k == "extra").unwrap();
        let Value::Dict(pairs) = &extra.1 else {
            panic!("not a dict: {:?}", extra.1)
        };
        assert_eq!(pairs.len(), n);
        assert_eq!(pairs[0], (Value::str("k0"), Value::Int(-1)));
        assert_eq!(
            pairs[n - 1],
            (Value::str(format!("k{}", n - 1)), Value::Int(n as i64 - 1))
        );
    }
}
