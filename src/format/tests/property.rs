//! Property test: a random format string either fails at load, or formats
//! every record Python can format exactly as Python does.
//!
//! Format strings come from proptest strategies (placeholders with random
//! flags, widths, precisions, conversions and specs, mixed with stray `%`,
//! braces and `$`); all cases go to Python in one batch
//! (`oracle_formats.py`) to keep the test fast.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use serde_json::Value as J;

use super::differential::typed;
use super::*;

const NAMES: &[&str] = &[
    "name",
    "levelno",
    "levelname",
    "msg",
    "message",
    "asctime",
    "created",
    "msecs",
    "relativeCreated",
    "lineno",
    "process",
    "thread",
    "funcName",
    "pathname",
    "exc_text",
    "big",
    "neg",
    "flt",
    "nan",
    "lst",
    "tup",
    "dct",
    "none",
    "flag",
    "uni",
    "empty",
    "absent",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_string)
}

fn literal() -> impl Strategy<Value = String> {
    "[a-z :é😀]{0,3}".prop_map(|s| s)
}

fn percent() -> impl Strategy<Value = String> {
    let ph = (
        name(),
        "[-+ #0]{0,3}",
        "([0-9]{1,2}|\\*)?",
        "(\\.[0-9]{0,2}|\\.\\*)?",
        "[hlL]?",
        "[sradiuoxXeEfFgGc%zS]",
    )
        .prop_map(|(n, f, w, p, l, t)| format!("%({n}){f}{w}{p}{l}{t}"));
    let tok = prop_oneof![
        6 => ph,
        3 => literal(),
        1 => "%[%a-z(s]?".prop_map(|s| s),
    ];
    prop::collection::vec(tok, 1..5).prop_map(|v| v.concat())
}

fn brace() -> impl Strategy<Value = String> {
    let spec =
        "((.?[<>=^])?[+ -]?#?0?[0-9]{0,2}[,_]?(\\.[0-9]{1,2})?[bcdeEfFgGnosxX%]?|[a-z<{]{1,2})";
    let ph = (
        name(),
        "(\\[[0-9k]\\])?",
        "(![rsaq])?",
        prop::option::of(spec),
    )
        .prop_map(|(n, i, c, s)| match s {
            Some(s) => format!("{{{n}{i}{c}:{s}}}"),
            None => format!("{{{n}{i}{c}}}"),
        });
    let tok = prop_oneof![
        6 => ph,
        3 => literal(),
        1 => "[{}]{1,2}|\\{0\\}|\\{\\}|\\{a\\.b\\}".prop_map(|s| s),
    ];
    prop::collection::vec(tok, 1..5).prop_map(|v| v.concat())
}

fn dollar() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        3 => name().prop_map(|n| format!("${n}")),
        3 => name().prop_map(|n| format!("${{{n}}}")),
        3 => literal(),
        1 => "\\$\\$|\\$|\\$\\{|\\$1|\\$\\{x".prop_map(|s| s),
    ];
    prop::collection::vec(tok, 1..5).prop_map(|v| v.concat())
}

#[test]
fn issue_3_random_formats_fail_at_load_or_match_python() {
    // Deterministic unless LOGRELAY_PROPTEST_RANDOM is set (failures print
    // the format string, which is all that is needed to reproduce them).
    let mut runner = if std::env::var_os("LOGRELAY_PROPTEST_RANDOM").is_some() {
        TestRunner::new(Config::default())
    } else {
        TestRunner::deterministic()
    };
    let n: usize = std::env::var("LOGRELAY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cases: Vec<(String, Style)> = Vec::new();
    for _ in 0..n {
        cases.push((
            percent().new_tree(&mut runner).unwrap().current(),
            Style::Percent,
        ));
        cases.push((
            brace().new_tree(&mut runner).unwrap().current(),
            Style::Brace,
        ));
        cases.push((
            dollar().new_tree(&mut runner).unwrap().current(),
            Style::Dollar,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<J> = cases
        .iter()
        .map(|(f, s)| {
            let style = match s {
                Style::Percent => "%",
                Style::Brace => "{",
                Style::Dollar => "$",
            };
            serde_json::json!({"format": f, "style": style})
        })
        .collect();
    let cases_path = dir.path().join("cases.json");
    let out_path = dir.path().join("out.json");
    std::fs::write(&cases_path, serde_json::to_vec(&input).unwrap()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format/oracle_formats.py");
    let st = Command::new("python3")
        .arg(script)
        .arg(&cases_path)
        .arg(&out_path)
        .status()
        .unwrap();
    assert!(st.success());
    let out: J = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let records: Vec<Record> = out["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let pairs: Vec<(String, J)> = serde_json::from_value(r.clone()).unwrap();
            Record::new(
                pairs
                    .iter()
                    .map(|(k, v)| (Str::from(k.as_str()), typed(v)))
                    .collect(),
            )
        })
        .collect();
    let (mut rejected, mut compared, mut over_rejected) = (0, 0, 0);
    let mut failures = Vec::new();
    for ((f, style), res) in cases.iter().zip(out["results"].as_array().unwrap()) {
        let spec = TextFormat {
            format: f.clone(),
            datefmt: None,
            style: *style,
            utc: false,
        };
        let t = Template::compile_with_tz(&spec, TimeZone::UTC);
        let mut t = match t {
            Err(_) => {
                rejected += 1;
                if res["lines"]
                    .as_array()
                    .is_some_and(|l| l.iter().all(|x| x.is_string()))
                {
                    over_rejected += 1;
                    eprintln!("rejected, though Python formats it: {style:?} {f:?}");
                }
                continue;
            }
            Ok(t) => t,
        };
        let Some(lines) = res["lines"].as_array() else {
            failures.push(format!(
                "{style:?} {f:?}: we accept, Python refuses: {}",
                res["load_error"]
            ));
            continue;
        };
        for (r, want) in records.iter().zip(lines) {
            let Some(want) = want.as_str() else { continue };
            let mut got = Vec::new();
            t.format(r, &mut got);
            compared += 1;
            if got != want.as_bytes() {
                failures.push(format!(
                    "{style:?} {f:?}:\n  want {want:?}\n  got  {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    eprintln!(
        "{} formats: {rejected} rejected at load ({over_rejected} of them Python formats), {compared} lines compared",
        cases.len()
    );
    for f in failures.iter().take(20) {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
}
