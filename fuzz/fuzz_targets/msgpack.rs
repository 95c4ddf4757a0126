//! Any bytes given to the msgpack decoder, as an input with `decoder:
//! msgpack` calls it: no panic, no abort, no hang; a successful result holds
//! unique keys, renders in bounded time, and what the msgpack encoder writes
//! for it decodes again (the forward output's `encoding: msgpack` feeds
//! another logrelay).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logrelay::codec::{msgpack, DecoderKind};

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(record) = DecoderKind::Msgpack.decode(frame) {
        let fields = &record.fields;
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!fields[..i].iter().any(|(seen, _)| seen == k), "duplicate key {k}");
        }
        let rendered = format!("{fields:?}");
        assert!(rendered.len() <= 64 * (data.len() + 65_536) * 16);
        let mut out = Vec::new();
        msgpack::write_fields(fields, &mut out);
        if let Err(e) = msgpack::decode(&bytes::Bytes::from(out.clone())) {
            panic!("re-encoded {out:02x?} does not decode: {e}");
        }
    }
});
