//! Cost per record of WASM filters, against the same per-record pipeline
//! work without a filter.
//!
//! The baseline is what every record costs anyway: decoding a real
//! SocketHandler pickle frame (the 500 records of
//! `tests/fixtures/pickle/bench.bin`, ~690 bytes each, see benches/pickle.rs)
//! and encoding the record as one JSON output line. Each filter case adds
//! one `Filter::apply` in between. After criterion's report, a summary
//! prints ns/record and each filter's cost as a ratio of the baseline (the
//! issue's budget: no-op < 10%, level <= 20%).
//!
//! Run: `cargo bench --bench filter -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use logrelay::codec::{json, pickle};
use logrelay::config::{FilterConfig, OnError, WasmFilterConfig};
use logrelay::filter::{Filter, Verdict};
use logrelay::record::Record;

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
                // Reads levelno and name, keeps everything.
                serde_json::json!({"min_level": 0, "loggers": {"no.such.logger": "CRITICAL"}}),
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
    let fields = pickle::decode(frame).expect("the bench record decodes");
    let mut record = Record::new(fields);
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

fn run_all(frames: &[Bytes], filter: Option<&Filter>, out: &mut Vec<u8>) {
    for f in frames {
        pipeline(f, filter, out);
    }
}

fn bench(c: &mut Criterion) {
    let frames = common::frames();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("per_record");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("baseline", |b| b.iter(|| run_all(&frames, None, &mut out)));
    for (name, filter) in cases() {
        group.bench_function(name, |b| {
            b.iter(|| run_all(&frames, Some(&filter), &mut out))
        });
    }
    group.finish();
}

/// ns per record of `pipeline` with `filter`: the best of seven runs of
/// 100 passes over the frames, the least disturbed by other load on a
/// shared machine.
fn ns_per_record(frames: &[Bytes], filter: Option<&Filter>) -> f64 {
    const PASSES: u32 = 100;
    let mut out = Vec::with_capacity(4096);
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PASSES {
                run_all(frames, filter, &mut out);
            }
            t.elapsed().as_nanos() as f64 / f64::from(PASSES) / frames.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Milliseconds to load (compile, instantiate, init) each plugin: the
/// start-up and reload cost that an on-disk cache of compiled code would
/// save.
fn load_times() {
    println!("\nLoad time (compile + instantiate + init), best of 3:");
    for name in ["noop", "level", "redact", "sample", "enrich"] {
        let (path, config) = match name {
            "noop" => (
                root().join("tests/fixtures/wasm/noop.wat"),
                serde_json::Value::Null,
            ),
            "sample" => (plugin(name), serde_json::json!({"n": 1})),
            "enrich" => (plugin(name), serde_json::json!({"fields": {"a": 1}})),
            _ => (plugin(name), serde_json::Value::Null),
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(load(path.clone(), config.clone()));
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min);
        println!("  {name:<10} {size:>7} bytes {best:>8.1} ms");
    }
}

fn summary() {
    let frames = common::frames();
    let bytes: usize = frames.iter().map(Bytes::len).sum();
    let base = ns_per_record(&frames, None);
    println!(
        "\nSummary (best of 7 x 100 passes over {} records, {} bytes/record on average):",
        frames.len(),
        bytes / frames.len()
    );
    println!("  {:<10} {:>9.0} ns/record", "baseline", base);
    for (name, filter) in cases() {
        let t = ns_per_record(&frames, Some(&filter));
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
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then only checks that every case runs.
    if std::env::args().any(|a| a == "--bench") {
        summary();
        load_times();
    }
}
