//! Any bytes given to the pickle decoder: no panic, no abort, no hang, and
//! a successful result holds unique keys and renders in bounded time.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(fields) = logrelay::codec::pickle::decode(&frame) {
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!fields[..i].iter().any(|(seen, _)| seen == k), "duplicate key {k}");
        }
        // Walks every value recursively, as the formatter and the JSON
        // encoder do: depth and expanded size must be bounded.
        let rendered = format!("{fields:?}");
        assert!(rendered.len() <= 64 * (data.len() + 65_536) * 16);
    }
});
