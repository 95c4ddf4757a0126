//! `logrelay test --config listener.json CASES.json`: run LogRecord dicts
//! through the configured routes, filters and formats — no socket opened,
//! no file written — and check which outputs get which lines.
//!
//! CASES.json (see `config/test-cases.json`):
//!
//! ```json
//! {"cases": [{
//!     "name": "a payments warning also goes to the payments file",
//!     "input": "app",
//!     "records": [{"name": "payments.api", "levelname": "WARNING", "levelno": 30,
//!                  "msg": "card declined", "created": 1764000000.25}],
//!     "expect": {"payments": ["WARNING payments.api card declined"],
//!                "file": [{"contains": "card declined"}],
//!                "console": []}
//! }]}
//! ```
//!
//! Each record is a `LogRecord.__dict__` as SocketHandler sends it; missing
//! attributes get `logging.makeLogRecord`'s defaults (as with the JSON
//! decoder). `input` may be left out when the config has one input. Only
//! the outputs named in `expect` are checked: each gets exactly the lines
//! listed, in order — a string is the whole line, `{"contains": "..."}` a
//! part of it — and `[]` means none. Forward outputs (and JSON-encoded
//! ones) produce the record's JSON object as their line.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Config, Encoding, OutputConfig};
use crate::filter::{Filter, Verdict};
use crate::output::LineEncoder;

/// One expected line.
#[derive(Debug, PartialEq)]
enum Want {
    Exact(String),
    Contains(String),
}

impl Want {
    fn matches(&self, line: &str) -> bool {
        match self {
            Want::Exact(s) => s == line,
            Want::Contains(s) => line.contains(s.as_str()),
        }
    }

    fn show(&self) -> String {
        match self {
            Want::Exact(s) => s.clone(),
            Want::Contains(s) => format!("(a line containing {s:?})"),
        }
    }
}

struct Case {
    name: String,
    input: String,
    records: Vec<Value>,
    expect: BTreeMap<String, Vec<Want>>,
}

/// Read and check the cases file against `config`.
fn read_cases(path: &Path, config: &Config) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |what: &str| format!("{}: {what}", path.display());
    let cases = doc
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| at("expected an object with a \"cases\" array"))?;
    let mut out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let here = |what: &str| at(&format!("cases[{i}]: {what}"));
        let obj = c.as_object().ok_or_else(|| here("expected an object"))?;
        for key in obj.keys() {
            if !["name", "input", "records", "expect"].contains(&key.as_str()) {
                return Err(here(&format!(
                    "unknown key {key:?} (expected name, input, records, expect)"
                )));
            }
        }
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("case {}", i + 1), str::to_string);
        let input = match obj.get("input") {
            Some(Value::String(s)) if config.inputs.contains_key(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(here(&format!(
                    "input {s:?} is not in the config (it has: {})",
                    config.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
            Some(_) => return Err(here("\"input\" must be a string")),
            None if config.inputs.len() == 1 => {
                config.inputs.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(here(
                    "the config has several inputs: say which with \"input\"",
                ))
            }
        };
        let records = obj
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| here("\"records\" must be an array of LogRecord objects"))?;
        if let Some(bad) = records.iter().position(|r| !r.is_object()) {
            return Err(here(&format!("records[{bad}] is not an object")));
        }
        let expect_obj = obj
            .get("expect")
            .and_then(Value::as_object)
            .ok_or_else(|| here("\"expect\" must be an object: output name -> lines"))?;
        let mut expect = BTreeMap::new();
        for (output, lines) in expect_obj {
            if !config.outputs.contains_key(output) {
                return Err(here(&format!(
                    "expect: output {output:?} is not in the config (it has: {})",
                    config
                        .outputs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let lines = lines
                .as_array()
                .ok_or_else(|| here(&format!("expect.{output} must be an array of lines")))?;
            let mut wants = Vec::new();
            for line in lines {
                wants.push(match line {
                    Value::String(s) => Want::Exact(s.clone()),
                    Value::Object(o)
                        if o.len() == 1 && o.get("contains").is_some_and(Value::is_string) =>
                    {
                        Want::Contains(o["contains"].as_str().unwrap_or_default().to_string())
                    }
                    _ => {
                        return Err(here(&format!(
                            "expect.{output}: each line is a string or {{\"contains\": \"...\"}}"
                        )))
                    }
                });
            }
            expect.insert(output.clone(), wants);
        }
        out.push(Case {
            name,
            input,
            records: records.clone(),
            expect,
        });
    }
    Ok(out)
}

/// The lines each output would write for `records` arriving on `input`.
fn run_case(
    config: &Config,
    filters: &HashMap<String, Arc<Filter>>,
    encoders: &mut HashMap<String, LineEncoder>,
    input: &str,
    records: &[Value],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, dict) in records.iter().enumerate() {
        let frame = bytes::Bytes::from(serde_json::to_vec(dict).unwrap_or_default());
        let record = crate::codec::DecoderKind::Json
            .decode(frame)
            .map_err(|e| format!("records[{i}]: {e}"))?;
        for route in &config.routes {
            if route
                .from
                .as_ref()
                .is_some_and(|from| !from.iter().any(|f| f == input))
            {
                continue;
            }
            if !crate::pipeline::route_matches(route, &record) {
                continue;
            }
            let mut copy = record.clone();
            let kept = route.filters.iter().all(|name| {
                filters
                    .get(name)
                    .is_none_or(|f| f.apply(&mut copy) == Verdict::Keep)
            });
            if !kept {
                continue;
            }
            for out in &route.to {
                let Some(enc) = encoders.get_mut(out) else {
                    continue;
                };
                let mut line = Vec::new();
                enc.encode(&copy, &mut line);
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                got.entry(out.clone())
                    .or_default()
                    .push(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
    Ok(got)
}

/// The diff of one output: empty when it got what was expected.
fn diff(output: &str, want: &[Want], got: &[String]) -> String {
    let ok = want.len() == got.len() && want.iter().zip(got).all(|(w, g)| w.matches(g));
    if ok {
        return String::new();
    }
    let mut s = format!(
        "  output {output}: expected {} line{}, got {}\n",
        want.len(),
        if want.len() == 1 { "" } else { "s" },
        got.len()
    );
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w.matches(g) => {
                let _ = writeln!(s, "      {g}");
            }
            (w, g) => {
                if let Some(w) = w {
                    let _ = writeln!(s, "    - {}", w.show());
                }
                if let Some(g) = g {
                    let _ = writeln!(s, "    + {g}");
                }
            }
        }
    }
    s
}

/// Run `logrelay test`.
pub fn run(source: &crate::run::ConfigSource, cases_path: &Path) -> ExitCode {
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cases = match read_cases(cases_path, &config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut filters = HashMap::new();
    for (name, fc) in &config.filters {
        match Filter::load(name, fc) {
            Ok(f) => {
                filters.insert(name.clone(), Arc::new(f));
            }
            Err(e) => {
                eprintln!("filters.{name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut encoders = HashMap::new();
    for (name, oc) in &config.outputs {
        let enc = match oc {
            OutputConfig::File(c) => LineEncoder::new(name, c.encoding, &c.text),
            OutputConfig::Stream(c) => LineEncoder::new(name, c.encoding, &c.text),
            OutputConfig::Forward(_) | OutputConfig::Nats(_) => {
                LineEncoder::new(name, Encoding::Json, &crate::config::TextFormat::default())
            }
        };
        match enc {
            Ok(e) => {
                encoders.insert(name.clone(), e);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut failed = 0;
    for case in &cases {
        let got = match run_case(&config, &filters, &mut encoders, &case.input, &case.records) {
            Ok(g) => g,
            Err(e) => {
                println!("FAIL {}: {e}", case.name);
                failed += 1;
                continue;
            }
        };
        let report: String = case
            .expect
            .iter()
            .map(|(out, want)| diff(out, want, got.get(out).map_or(&[][..], Vec::as_slice)))
            .collect();
        if report.is_empty() {
            println!("ok   {}", case.name);
        } else {
            failed += 1;
            println!("FAIL {}\n{report}", case.name);
        }
    }
    println!(
        "{} case{}: {} passed, {failed} failed",
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
        cases.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
