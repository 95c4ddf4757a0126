//! Cost per record of WASM filters, against the same per-record pipeline
//! work without a filter.
//!
//! The baseline is what every record costs anyway: decoding a typical
//! ~450-byte SocketHandler record (sent here as a JSON frame, the decoder
//! that is on main today) and encoding it as one JSON output line. Each
//! filter case adds one `Filter::apply` in between. After criterion's
//! report, a summary prints ns/record and each filter's cost as a ratio of
//! the baseline (the issue's budget: no-op < 10%, level <= 20%).
//!
//! Run: `cargo bench --bench filter -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use logrelay::codec::json;
use logrelay::config::{FilterConfig, OnError, WasmFilterConfig};
use logrelay::filter::{Filter, Verdict};
use logrelay::record::{Origin, Record};

/// `logging.makeLogRecord(...).__dict__` as SocketHandler sends it (msg
/// already formatted, args None), from a gunicorn worker.
const RECORD: &str = r#"{"name":"app.db","msg":"query took 12.5 ms: SELECT id, name FROM users WHERE id = %s","args":null,"levelname":"INFO","levelno":20,"pathname":"/srv/app/db/session.py","filename":"session.py","module":"session","exc_info":null,"exc_text":null,"stack_info":null,"lineno":118,"funcName":"execute","created":1763731200.123456,"msecs":123.0,"relativeCreated":5321.5,"thread":140234567890,"threadName":"MainThread","processName":"MainProcess","process":4242,"taskName":null}"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: PathBuf, config: serde_json::Value) -> Filter {
    let config = FilterConfig::Wasm(WasmFilterConfig {
        path,
        config,
        fuel: None,
        timeout_ms: None,
        max_memory_bytes: None,
        on_error: OnError::Pass,
    });
    match Filter::load("bench", &config) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

fn plugin(name: &str) -> PathBuf {
    root()
        .join("plugins")
        .join(name)
        .join(format!("{name}.wasm"))
}

/// The filters measured, each configured so that it keeps the typical
/// record (a drop would skip the output and flatter the filter).
fn cases() -> Vec<(&'static str, Filter)> {
    vec![
        (
            "noop",
            load(
                root().join("tests/fixtures/wasm/noop.wat"),
                serde_json::Value::Null,
            ),
        ),
        (
            "level",
            load(
                plugin("level"),
                serde_json::json!({"min_level": "INFO", "loggers": {"payments": "WARNING"}}),
            ),
        ),
        ("redact", load(plugin("redact"), serde_json::Value::Null)),
        (
            "sample",
            load(plugin("sample"), serde_json::json!({"n": 1})),
        ),
        (
            "enrich",
            load(
                plugin("enrich"),
                serde_json::json!({"fields": {"hostname": "web-1", "env": "prod"}}),
            ),
        ),
    ]
}

/// One record through the pipeline: decode, optional filter, encode.
fn pipeline(frame: &Bytes, filter: Option<&Filter>, out: &mut Vec<u8>) {
    let fields = json::decode(frame).expect("the bench record decodes");
    let mut record = Record::new(fields, Origin::new("bench"));
    if let Some(f) = filter {
        if f.apply(&mut record) == Verdict::Drop {
            return;
        }
    }
    out.clear();
    json::write_fields(&record.fields, out);
    out.push(b'\n');
    black_box(&out);
}

fn bench(c: &mut Criterion) {
    let frame = Bytes::from_static(RECORD.as_bytes());
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("per_record");
    group.bench_function("baseline", |b| b.iter(|| pipeline(&frame, None, &mut out)));
    for (name, filter) in cases() {
        group.bench_function(name, |b| {
            b.iter(|| pipeline(&frame, Some(&filter), &mut out))
        });
    }
    group.finish();
}

/// ns per record of `pipeline` with `filter`: the best of five runs, which
/// is the least disturbed by other load on a shared machine.
fn ns_per_record(frame: &Bytes, filter: Option<&Filter>) -> f64 {
    const N: u32 = 50_000;
    let mut out = Vec::with_capacity(1024);
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                pipeline(frame, filter, &mut out);
            }
            t.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary() {
    let frame = Bytes::from_static(RECORD.as_bytes());
    let base = ns_per_record(&frame, None);
    println!(
        "\nSummary (best of 5 x 50k records; {} bytes/record):",
        RECORD.len()
    );
    println!("  {:<10} {:>9.0} ns/record", "baseline", base);
    for (name, filter) in cases() {
        let t = ns_per_record(&frame, Some(&filter));
        println!(
            "  {:<10} {:>9.0} ns/record  filter +{:>6.0} ns = {:>5.1}% of baseline",
            name,
            t,
            t - base,
            100.0 * (t - base) / base
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
