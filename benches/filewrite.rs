//! Records written per second by a file output thread: format every
//! record of a batch, buffer, one `write` per batch (or per 256 KiB).
//!
//! Batches of real decoded records go through the output's own channel,
//! and each measurement waits until the thread has counted them written.
//! * `text_rotating`: the cookbook format to a 10 MiB rotating file (the
//!   e2e main scenario's output);
//! * `json_rotating`: JSON lines, same rotation;
//! * `text_devnull`: the cookbook format to `/dev/null`, no rotation
//!   (formatting and the write call, no file system).
//!
//! Run: `cargo bench --bench filewrite -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use common::{config, records, BATCH, COOKBOOK_FORMAT};

fn bench(c: &mut Criterion) {
    let all = records();
    let batch: Vec<_> = all.iter().take(BATCH).cloned().collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let cases = [
        (
            "text_rotating",
            format!(
                r#"{{"type": "file", "path": "{d}/t.log", "format": "{COOKBOOK_FORMAT}", "max_bytes": 10485760, "backup_count": 2}}"#
            ),
        ),
        (
            "json_rotating",
            format!(
                r#"{{"type": "file", "path": "{d}/j.log", "encoding": "json", "max_bytes": 10485760, "backup_count": 2}}"#
            ),
        ),
        (
            "text_devnull",
            format!(r#"{{"type": "file", "path": "/dev/null", "format": "{COOKBOOK_FORMAT}"}}"#),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("filewrite");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, out) in cases {
        let cfg = config(&format!(
            r#"{{"inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:9"}}}},
                "outputs": {{"o": {out}}}}}"#
        ));
        let running = logrelay::output::start("o", &cfg.outputs["o"]).expect("output starts");
        let handle = running.handle.clone();
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let stats = handle.stats().clone();
                let target = stats.written.load(Ordering::Relaxed) + iters * BATCH as u64;
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        handle.send(batch.clone(), None).await;
                    }
                });
                while stats.written.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(50));
                }
                start.elapsed()
            })
        });
        drop(handle);
        drop(running.handle);
        let _ = running.thread.join();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
