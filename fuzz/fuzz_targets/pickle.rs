//! Any bytes given to the pickle decoder: no panic, no abort, no hang, and
//! a successful result holds unique keys and renders in bounded time. The
//! fast path (`decode`) and the general machine (`decode_general`) must
//! agree: the fast path only answers frames the machine decodes the same
//! way, and otherwise hands the frame to the machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logrelay::codec::pickle::{decode, decode_general};
use logrelay::record::{Fields, Value};

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    let result = decode(&frame);
    match (&result, decode_general(&frame)) {
        (Ok(fast), Ok(general)) => assert!(same(fast, &general), "{fast:?} != {general:?}"),
        (Err(fast), Err(general)) => assert_eq!(*fast, general),
        (fast, general) => panic!("decode gave {fast:?}, decode_general {general:?}"),
    }
    if let Ok(fields) = result {
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!fields[..i].iter().any(|(seen, _)| seen == k), "duplicate key {k}");
        }
        // Walks every value recursively, as the formatter and the JSON
        // encoder do: depth and expanded size must be bounded.
        let rendered = format!("{fields:?}");
        assert!(rendered.len() <= 64 * (data.len() + 65_536) * 16);
    }
});

/// Equal fields, floats compared by their bits (a NaN equals itself: both
/// paths read the same eight bytes).
fn same(a: &Fields, b: &Fields) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && match (va, vb) {
                    (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
                    _ => va == vb,
                }
        })
}
