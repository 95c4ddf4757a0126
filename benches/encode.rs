//! Encode rate of the forward output's msgpack payloads: our hand-written
//! encoder (`codec::msgpack::write_fields`) against rmp-serde, through a
//! `Serialize` adapter over the same records, writing the same bytes.
//!
//! The records are the 500 real SocketHandler frames of
//! `tests/fixtures/pickle/bench.bin`, decoded as the listener decodes them.
//! Before timing, the bench checks that both encoders write identical bytes
//! for every record, so the comparison is of speed alone. Run:
//!
//! ```sh
//! cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Measured 2026-12-07 on the shared 2-core dev machine (load average 2-4),
//! eight alternating runs of each, `--measurement-time 2`: logrelay
//! 170-229 µs per 500 records (median 185 µs, 0.37 µs a record),
//! rmp_serde 237-430 µs (median 260 µs, 0.52 µs a record). rmp-serde takes
//! 1.40x our time (median of the eight per-round ratios 1.43x, fastest
//! against fastest 1.39x), so the forward output keeps its own encoder:
//! docs/decisions.md ("Our own code in place of a named crate").

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logrelay::codec::msgpack::write_fields;
use logrelay::record::{Fields, Value};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

/// A record's fields as a msgpack map, in arrival order.
struct AsMap<'a>(&'a Fields);

impl Serialize for AsMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(&**k, &AsValue(v))?;
        }
        map.end()
    }
}

/// One value, mapped as `write_value` maps it.
struct AsValue<'a>(&'a Value);

impl Serialize for AsValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(t) => match t.parse::<u64>() {
                Ok(u) => s.serialize_u64(u),
                Err(_) => s.serialize_str(t),
            },
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(&AsValue(item))?;
                }
                seq.end()
            }
            Value::Dict(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs.iter() {
                    map.serialize_entry(&AsValue(k), &AsValue(v))?;
                }
                map.end()
            }
            Value::Object(o) => s.serialize_str(&o.str),
        }
    }
}

fn rmp(fields: &Fields, out: &mut Vec<u8>) {
    // Maps carry their keys whatever the struct setting; `to_vec_named`'s
    // serializer is the one a forward output would use.
    let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
    AsMap(fields)
        .serialize(&mut ser)
        .expect("writing to a Vec cannot fail");
}

fn encode_rate(c: &mut Criterion) {
    let records = common::records();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for r in &records {
        ours.clear();
        theirs.clear();
        write_fields(&r.fields, &mut ours);
        rmp(&r.fields, &mut theirs);
        assert_eq!(ours, theirs, "the encoders disagree on a record");
    }
    let mut group = c.benchmark_group("msgpack_encode");
    group.throughput(Throughput::Elements(records.len() as u64));
    let mut buf = Vec::with_capacity(1 << 20);
    group.bench_function("logrelay", |b| {
        b.iter(|| {
            buf.clear();
            for r in &records {
                write_fields(black_box(&r.fields), &mut buf);
            }
            black_box(buf.len())
        })
    });
    group.bench_function("rmp_serde", |b| {
        b.iter(|| {
            buf.clear();
            for r in &records {
                rmp(black_box(&r.fields), &mut buf);
            }
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, encode_rate);
criterion_main!(benches);
