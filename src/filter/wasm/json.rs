//! Value <-> JSON for the host functions.
//!
//! TEMPORARY shim with the signatures of `crate::codec::json`'s
//! `write_value`/`write_fields`/`parse_value`/`parse_object`, until those
//! land on main; then this module becomes a re-export.

use crate::record::{Fields, Str, Value};

/// Why JSON text was refused.
#[derive(Debug)]
pub struct JsonError;

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::None => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::BigInt(s) => serde_json::from_str(s).unwrap_or(J::Null),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(format!("{b:?}")),
        Value::List(l) | Value::Tuple(l) | Value::Set(l) | Value::FrozenSet(l) => {
            J::Array(l.iter().map(to_json).collect())
        }
        Value::Dict(d) => J::Object(
            d.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| format!("{k:?}"), str::to_string),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Object(o) => J::String(o.str.to_string()),
    }
}

fn from_json(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(Str::from(s)),
        J::Array(a) => Value::List(std::sync::Arc::new(a.into_iter().map(from_json).collect())),
        J::Object(o) => Value::Dict(std::sync::Arc::new(
            o.into_iter()
                .map(|(k, v)| (Value::Str(Str::from(k)), from_json(v)))
                .collect(),
        )),
    }
}

/// Append `v` as JSON.
pub fn write_value(v: &Value, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, &to_json(v));
}

/// Append `fields` as a JSON object.
pub fn write_fields(fields: &Fields, out: &mut Vec<u8>) {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), to_json(v)))
        .collect();
    let _ = serde_json::to_writer(&mut *out, &map);
}

/// Parse one JSON value.
pub fn parse_value(text: &[u8]) -> Result<Value, JsonError> {
    serde_json::from_slice(text)
        .map(from_json)
        .map_err(|_| JsonError)
}

/// Parse a JSON object into fields.
pub fn parse_object(text: &[u8]) -> Result<Fields, JsonError> {
    match serde_json::from_slice(text) {
        Ok(serde_json::Value::Object(o)) => Ok(o
            .into_iter()
            .map(|(k, v)| (Str::from(k), from_json(v)))
            .collect()),
        _ => Err(JsonError),
    }
}
