//! Any bytes given to the JSON decoder, as an input with `decoder: json`
//! calls it: no panic, no abort, no hang; a successful result holds unique
//! keys, renders in bounded time, and what the JSON encoder writes for it
//! decodes again (the forward output's `encoding: json` feeds another
//! logrelay).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logrelay::codec::{json, DecoderKind};

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(record) = DecoderKind::Json.decode(frame) {
        let fields = &record.fields;
        for (i, (k, _)) in fields.iter().enumerate() {
            assert!(!fields[..i].iter().any(|(seen, _)| seen == k), "duplicate key {k}");
        }
        let rendered = format!("{fields:?}");
        assert!(rendered.len() <= 64 * (data.len() + 65_536) * 16);
        let mut out = Vec::new();
        json::write_fields(fields, &mut out);
        if let Err(e) = json::decode(&bytes::Bytes::from(out.clone())) {
            panic!("re-encoded {:?} does not decode: {e}", String::from_utf8_lossy(&out));
        }
    }
});
