//! Tests of the pickle decoder: real Python fixtures, hostile pickles,
//! property tests. Fixtures are regenerated with
//! `python3 tests/fixtures/pickle/gen.py`.

use bytes::Bytes;
use serde_json::{json, Value as J};

use super::*;
use crate::record::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pickle");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The same typed description gen.py computes in Python.
fn describe(v: &Value) -> J {
    let seq = |t: &str, items: &[Value]| json!({"t": t, "v": items.iter().map(describe).collect::<Vec<_>>()});
    match v {
        Value::None => json!({"t": "none"}),
        Value::Bool(b) => json!({"t": "bool", "v": b}),
        Value::Int(i) => json!({"t": "int", "v": i.to_string()}),
        Value::BigInt(s) => json!({"t": "bigint", "v": &**s}),
        Value::Float(f) => json!({"t": "float", "v": hex(&f.to_be_bytes())}),
        Value::Str(s) => json!({"t": "str", "v": &**s}),
        Value::Bytes(b) => json!({"t": "bytes", "v": hex(b)}),
        Value::List(l) => seq("list", l),
        Value::Tuple(l) => seq("tuple", l),
        Value::Set(l) => seq("set", l),
        Value::FrozenSet(l) => seq("frozenset", l),
        Value::Dict(d) => {
            json!({"t": "dict", "v": d.iter().map(|(k, v)| json!([describe(k), describe(v)])).collect::<Vec<_>>()})
        }
        Value::Object(o) => {
            json!({"t": "object", "class": &*o.class, "str": &*o.str, "repr": &*o.repr})
        }
    }
}

/// The fixture frames (bodies, sliced from one buffer) with their expectations.
fn fixtures() -> Vec<(String, u64, Bytes, J)> {
    let all = Bytes::from(std::fs::read(format!("{FIXTURES}/frames.bin")).expect("frames.bin"));
    let expected: Vec<J> = serde_json::from_slice(
        &std::fs::read(format!("{FIXTURES}/expected.json")).expect("expected.json"),
    )
    .expect("expected.json parses");
    let mut out = Vec::new();
    let mut off = 0;
    for e in expected {
        let len = u32::from_be_bytes(all[off..off + 4].try_into().expect("4 bytes")) as usize;
        let frame = all.slice(off + 4..off + 4 + len);
        off += 4 + len;
        let name = e["name"].as_str().expect("name").to_owned();
        let proto = e["proto"].as_u64().expect("proto");
        out.push((name, proto, frame, e["fields"].clone()));
    }
    assert_eq!(off, all.len(), "expected.json and frames.bin disagree");
    out
}

#[test]
fn fixtures_decode_exactly() {
    let mut failures = Vec::new();
    let cases = fixtures();
    assert!(cases.len() >= 60);
    for (name, proto, frame, want) in &cases {
        match decode(frame) {
            Err(e) => failures.push(format!("{name} proto {proto}: error {e}")),
            Ok(fields) => {
                let got: Vec<J> = fields
                    .iter()
                    .map(|(k, v)| json!([&**k, describe(v)]))
                    .collect();
                let want = want.as_array().expect("fields array");
                if got.len() != want.len() {
                    failures.push(format!(
                        "{name} proto {proto}: {} fields, want {}",
                        got.len(),
                        want.len()
                    ));
                }
                for (g, w) in got.iter().zip(want) {
                    if g != w {
                        failures.push(format!("{name} proto {proto}:\n  got  {g}\n  want {w}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
