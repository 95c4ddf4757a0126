//! The differential test: `tests/fixtures/format/gen_records.py` builds
//! thousands of varied records with real Python logging and the exact
//! `Formatter` output for each of its configurations (three styles, custom
//! datefmts, `utc`, time zones with DST and a half-hour offset); every line
//! we format must equal Python's byte for byte.
//!
//! Records travel as typed JSON (`records.jsonl`), which keeps dict order,
//! bytes and sets; the pickle frames of the same records are written too,
//! for the end-to-end test through the real decoder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value as J;

use super::*;

pub(crate) fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format/gen_records.py")
}

/// Decode one value of the generator's typed JSON.
pub(crate) fn typed(j: &J) -> Value {
    let list = |v: &J| -> Arc<Vec<Value>> {
        Arc::new(
            v.as_array()
                .map(|a| a.iter().map(typed).collect())
                .unwrap_or_default(),
        )
    };
    match j {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(*b),
        J::String(s) => Value::str(s.as_str()),
        J::Object(o) => {
            let (tag, v) = o.iter().next().expect("one tag");
            match tag.as_str() {
                "i" => {
                    let s = v.as_str().unwrap();
                    s.parse::<i64>()
                        .map_or_else(|_| Value::BigInt(s.into()), Value::Int)
                }
                "f" => Value::Float(match v.as_str().unwrap() {
                    "-nan" => -f64::NAN,
                    s => s.parse().unwrap(),
                }),
                "l" => Value::List(list(v)),
                "t" => Value::Tuple(list(v)),
                "s" => Value::Set(list(v)),
                "fs" => Value::FrozenSet(list(v)),
                "b" => {
                    let h = v.as_str().unwrap();
                    let b: Vec<u8> = (0..h.len() / 2)
                        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    Value::Bytes(b.into())
                }
                "d" => Value::Dict(Arc::new(
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (typed(&p[0]), typed(&p[1])))
                        .collect(),
                )),
                t => panic!("unknown tag {t}"),
            }
        }
        J::Number(_) | J::Array(_) => panic!("untyped {j}"),
    }
}

/// Run the generator into `dir` and read back records and configs.
pub(crate) fn generate(dir: &Path, n: usize, seed: u64) -> (Vec<Record>, Vec<J>) {
    let st = Command::new("python3")
        .arg(fixture_script())
        .arg(dir)
        .arg(n.to_string())
        .args(["--seed", &seed.to_string()])
        .status()
        .expect("python3 runs");
    assert!(st.success(), "generator failed");
    let records = std::fs::read_to_string(dir.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let pairs: Vec<(String, J)> = serde_json::from_str(l).unwrap();
            let fields = pairs
                .iter()
                .map(|(k, v)| (Str::from(k.as_str()), typed(v)))
                .collect();
            Record::new(fields)
        })
        .collect();
    let configs: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("configs.json")).unwrap()).unwrap();
    (records, configs)
}

pub(crate) fn spec_of(c: &J) -> (TextFormat, TimeZone) {
    let style = match c.get("style").and_then(J::as_str) {
        Some("{") => Style::Brace,
        Some("$") => Style::Dollar,
        _ => Style::Percent,
    };
    let spec = TextFormat {
        format: c["format"].as_str().unwrap().into(),
        datefmt: c.get("datefmt").and_then(J::as_str).map(Into::into),
        style,
        utc: c.get("utc").and_then(J::as_bool).unwrap_or(false),
    };
    (spec, TimeZone::get(c["tz"].as_str().unwrap()).unwrap())
}

#[test]
fn issue_3_byte_exact_against_python_formatter() {
    let dir = tempfile::tempdir().unwrap();
    let (records, configs) = generate(dir.path(), 5000, 1234);
    assert!(records.len() >= 5000 && configs.len() >= 12);
    let mut failures = Vec::new();
    let mut compared = 0;
    for (k, c) in configs.iter().enumerate() {
        let (spec, tz) = spec_of(c);
        let mut t =
            Template::compile_with_tz(&spec, tz).unwrap_or_else(|e| panic!("config {k}: {e}"));
        let expected: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("expected_{k}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(expected.len(), records.len());
        let reads = t.reads();
        for (i, (r, want)) in records.iter().zip(&expected).enumerate() {
            let mut out = Vec::new();
            t.format(r, &mut out);
            // A decoder may leave out what the template does not read:
            // the line must not change.
            let mut projected = r.clone();
            projected.fields.retain(|(k, _)| reads.keeps_name(k));
            let mut out_projected = Vec::new();
            t.format(&projected, &mut out_projected);
            compared += 1;
            if out_projected != out {
                failures.push(format!(
                    "config {k} ({:?}) record {i}: {reads:?} leaves out a field it reads",
                    spec.format
                ));
            }
            if out != want.as_bytes() {
                failures.push(format!(
                    "config {k} ({:?}) record {i}:\n  want {:?}\n  got  {:?}",
                    spec.format,
                    want,
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
    let n = failures.len();
    for f in failures.iter().take(15) {
        eprintln!("{f}");
    }
    assert_eq!(n, 0, "{n} of {compared} lines differ from Python");
}
