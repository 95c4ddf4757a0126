//! Records routed per second by `Pipeline::dispatch`, on batches of real
//! decoded records the size of one 64 KiB read.
//!
//! * `level_drop` / `loggers_drop`: the route's conditions reject every
//!   record, so this is the cost of routing alone (per-record checks and
//!   dropping the batch).
//! * `one_output` / `two_routes`: records go to a text file output on
//!   `/dev/null` (two routes: a copy per route, two output threads). The
//!   output thread formats and writes in parallel and its bounded queue
//!   pushes back, so this is the pipeline's rate after decoding.
//!
//! Run: `cargo bench --bench route -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use logrelay::input::ListenKey;
use logrelay::output::OutputHandle;
use logrelay::pipeline::Pipeline;

use common::{config, records, BATCH, COOKBOOK_FORMAT};

fn pipeline(routes: &str, outputs: &[&str]) -> (Pipeline, Vec<logrelay::output::RunningOutput>) {
    let outs: Vec<String> = outputs
        .iter()
        .map(|n| {
            format!(
                r#""{n}": {{"type": "file", "path": "/dev/null", "format": "{COOKBOOK_FORMAT}"}}"#
            )
        })
        .collect();
    let cfg = config(&format!(
        r#"{{"inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:9"}}}},
            "outputs": {{ {} }}, "routes": {routes} }}"#,
        outs.join(",")
    ));
    let running: Vec<_> = cfg
        .outputs
        .iter()
        .map(|(name, oc)| logrelay::output::start(name, oc).expect("output starts"))
        .collect();
    let handles: HashMap<String, OutputHandle> = running
        .iter()
        .map(|r| (r.handle.name().to_string(), r.handle.clone()))
        .collect();
    (Pipeline::new(cfg, &HashMap::new(), &handles), running)
}

fn bench(c: &mut Criterion) {
    let all = records();
    let batch: Vec<_> = all.iter().take(BATCH).cloned().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cases = [
        (
            "level_drop",
            r#"[{"min_level": 60, "to": ["a"]}]"#,
            &["a"][..],
        ),
        (
            "loggers_drop",
            r#"[{"loggers": ["nomatch.one", "nomatch.two", "x"], "to": ["a"]}]"#,
            &["a"][..],
        ),
        ("one_output", r#"[{"to": ["a"]}]"#, &["a"][..]),
        (
            "two_routes",
            r#"[{"to": ["a"]}, {"to": ["b"]}]"#,
            &["a", "b"][..],
        ),
    ];
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut keep = Vec::new();
    for (label, routes, outputs) in cases {
        let (p, running) = pipeline(routes, outputs);
        let p = Arc::new(p);
        let key = ListenKey::of("app", &p.config.inputs["app"]);
        let stage = p.input_by_key(&key).expect("input").clone();
        g.bench_function(label, |b| {
            b.iter_batched(
                || batch.clone(),
                |recs| rt.block_on(p.dispatch(&stage, recs, None)),
                BatchSize::SmallInput,
            )
        });
        keep.push((p, running));
    }
    g.finish();
    drop(keep); // outputs end when their last handle goes
}

criterion_group!(benches, bench);
criterion_main!(benches);
