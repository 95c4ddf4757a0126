//! The framer fed an arbitrary stream in arbitrary chunks: no panic, frames
//! never exceed the limit, length-prefixed frames re-encode to exactly the
//! bytes consumed, newline frames hold no newline. Every frame also goes
//! through the pickle decoder, as an input would.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use logrelay::codec::framing::{Framer, Framing};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the mode, the size limit and the chunk size.
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let framing = if ctl & 1 == 0 {
        Framing::LengthPrefixed
    } else {
        Framing::Newline
    };
    let max = 1 + usize::from(ctl >> 1) * 64;
    let chunk = usize::from(ctl % 7) + 1;
    let framer = Framer::new(framing, max);
    let mut buf = BytesMut::new();
    let mut rebuilt = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    match framing {
                        Framing::LengthPrefixed => {
                            rebuilt.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                            rebuilt.extend_from_slice(&frame);
                        }
                        Framing::Newline => assert!(!frame.contains(&b'\n')),
                    }
                    let _ = logrelay::codec::pickle::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return, // the connection would be closed
            }
        }
    }
    if framing == Framing::LengthPrefixed {
        assert_eq!(&rebuilt[..], &stream[..rebuilt.len()]);
    }
    let _ = framer.finish(&mut buf);
});
