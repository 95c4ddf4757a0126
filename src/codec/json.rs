//! JSON records: decoding a frame that holds one JSON object, and encoding
//! a record as one JSON line (`encoding: json`).
//!
//! Encoding follows SPEC.md section 6: fields in arrival order, nothing
//! added; None is `null`; NaN and infinities are `null` (JSON has no such
//! numbers); integers of any size are JSON numbers; bytes are the string of
//! their Python repr; class instances are their placeholder strings.

use std::sync::Arc;

use crate::codec::DecodeError;
use crate::format::pyrepr::bytes_repr;
use crate::record::{Fields, Str, Value};

/// Decode one frame holding a JSON object into a record's fields, with
/// `makeLogRecord`'s defaults for the attributes it lacks
/// ([`crate::codec::defaults`]).
pub fn decode(frame: &[u8]) -> Result<Fields, DecodeError> {
    Ok(crate::codec::defaults::fill(parse_object(frame)?))
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
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_value(v, out);
    }
    out.push(b'}');
}

/// Append one value as JSON.
pub fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::None => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::BigInt(s) => out.extend_from_slice(s.as_bytes()),
        Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
        }
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
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
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
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Object;

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
}
