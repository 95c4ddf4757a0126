//! Frames cut per second from a SocketHandler byte stream, the way a
//! connection does it: 64 KiB reads appended to a `BytesMut`, every whole
//! frame split off without copying; and the same with each frame decoded
//! (framing + pickle decode: the input side of the hot path).
//!
//! The stream is `tests/fixtures/pickle/bench.bin` (500 real frames from
//! `loadgen.py --dump`) repeated to about 4 MiB. Run:
//!
//! ```sh
//! cargo bench --bench framing -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logrelay::codec::framing::{Framer, Framing};

/// What a connection reads per call (`READ_CHUNK` in src/input/mod.rs).
const READ: usize = 64 * 1024;

/// The fixture stream repeated to ~4 MiB, and its frame count.
fn stream() -> (Vec<u8>, u64) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pickle/bench.bin"
    );
    let one = std::fs::read(path).expect("read bench.bin");
    let mut frames = 0u64;
    let mut off = 0;
    while off + 4 <= one.len() {
        let len = u32::from_be_bytes([one[off], one[off + 1], one[off + 2], one[off + 3]]);
        off += 4 + len as usize;
        frames += 1;
    }
    let copies = (4 << 20) / one.len() + 1;
    (one.repeat(copies), frames * copies as u64)
}

/// Feed `data` in 64 KiB reads and call `each` on every frame.
fn run(framer: &Framer, data: &[u8], mut each: impl FnMut(bytes::Bytes)) {
    let mut buf = BytesMut::with_capacity(READ);
    for chunk in data.chunks(READ) {
        if buf.capacity() - buf.len() < READ / 4 {
            buf.reserve(READ);
        }
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.next_frame(&mut buf).expect("frames") {
            each(frame);
        }
    }
    assert!(buf.is_empty(), "the stream ends on a frame boundary");
}

fn bench(c: &mut Criterion) {
    let (data, frames) = stream();
    eprintln!("{} bytes, {frames} frames", data.len());
    let framer = Framer::new(Framing::LengthPrefixed, 16 << 20);
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Elements(frames));
    g.bench_function("length_prefixed", |b| {
        b.iter(|| {
            let mut n = 0usize;
            run(&framer, &data, |f| n += black_box(f).len());
            n
        })
    });
    g.bench_function("length_prefixed+pickle_decode", |b| {
        b.iter(|| {
            run(&framer, &data, |f| {
                black_box(logrelay::codec::pickle::decode(&f).expect("decodes"));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
