//! Decode rate of real SocketHandler frames: logrelay's pickle decoder
//! against serde-pickle on the same frames.
//!
//! The frames (`tests/fixtures/pickle/bench.bin`) are 500 records from
//! `tests/tools/loadgen.py --dump FILE --records 500 --seed 1`,
//! byte-identical to `SocketHandler.makePickle` output (~1% with a
//! traceback, ~1% non-ASCII). Run:
//!
//! ```sh
//! cargo bench --bench pickle -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Measured 2026-11-21 on the shared 2-core dev machine under a load
//! average of ~17 (so absolute numbers are several times too slow; the
//! ratio is what to compare): logrelay 7.14 ms per 500 frames (70.0 K
//! records/s), serde_pickle 30.6 ms (16.3 K records/s): 4.3x.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn decode_rate(c: &mut Criterion) {
    let frames = common::frames();
    let bytes: usize = frames.iter().map(Bytes::len).sum();
    eprintln!(
        "{} frames, {} bytes, {} bytes/frame on average",
        frames.len(),
        bytes,
        bytes / frames.len()
    );
    let mut group = c.benchmark_group("pickle_decode");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("logrelay", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(logrelay::codec::pickle::decode(black_box(f)).expect("decodes"));
            }
        })
    });
    group.bench_function("logrelay_general_machine", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(logrelay::codec::pickle::decode_general(black_box(f)).expect("decodes"));
            }
        })
    });
    group.bench_function("serde_pickle", |b| {
        b.iter(|| {
            for f in &frames {
                let v =
                    serde_pickle::value_from_slice(black_box(f), serde_pickle::DeOptions::new());
                black_box(v.expect("decodes"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode_rate);
criterion_main!(benches);
