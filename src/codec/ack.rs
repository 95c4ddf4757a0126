//! The wire format of acknowledged forwarding (`logrelay-ack`), shared by
//! both ends: the forward output sends it ([`crate::output::forward`]) and
//! every stream input receives it ([`crate::input::ack`]).
//!
//! # Wire format (all integers big endian)
//!
//! Sender → receiver, once, at the start of the connection:
//!
//! ```text
//! u32   0                          a zero-length frame: SocketHandler never
//!                                  sends one (a pickle is never empty)
//! [15]  "logrelay-ack/1\n"         the magic, with the protocol version
//!       or "logrelay-ack/2\n"
//! u8    encoder                    0 pickle, 1 json, 2 msgpack
//! u16   n, then n bytes            the sender id (UTF-8): random per sender
//!                                  process and output, names its sequence
//! u16   m, then m bytes            version 2 only: the shared secret of the
//!                                  input's `token_file` (m may be 0)
//! ```
//!
//! Receiver → sender, the reply, with the version the sender used:
//!
//! ```text
//! [15]  "logrelay-ack/1\n" or "logrelay-ack/2\n"
//! u64   last                       the highest batch sequence this receiver
//!                                  has dispatched for that sender id (0:
//!                                  none, e.g. after a restart)
//! ```
//!
//! An input with a `token_file` answers only a version 2 handshake with
//! the right token; any other opening (version 1, a wrong token, plain
//! SocketHandler frames) is closed without a reply and counted (`auth`).
//! Senders without a token send version 1, which every receiver since the
//! protocol's first version understands.
//!
//! Then the sender sends batches, sequences starting at 1 and increasing:
//!
//! ```text
//! u64   seq
//! u32   count                      at most MAX_BATCH_RECORDS
//! count × (u32 len, len bytes)     one record each, in the sender's encoder
//! ```
//!
//! and the receiver answers each batch, in order, with `u64 seq` once
//! every output the batch was routed to has written it (a file after its
//! `write()` returned, and its `fsync` with `fsync: true`; a forward output
//! once its own peer confirmed, or without `ack` once the kernel took the
//! bytes; records a filter dropped or no route took are done at once).
//! The receiver keeps reading while earlier batches are being written, so
//! a sender keeps a window of batches in flight. A batch whose `seq` is
//! not above the last one dispatched for its sender id is not dispatched
//! again: it is confirmed once that earlier dispatch is written, so a
//! re-send after a lost confirmation is not written twice. When the
//! receiver stops (shutdown or the input removed by a reload) it stops
//! reading, waits a little for the batches being written, confirms them,
//! and sends `u64 0xFFFF_FFFF_FFFF_FFFF` ("goodbye"): the sender stops
//! sending on that connection and reconnects later, re-sending whatever was
//! not confirmed. The receiver reads (and ignores) until the sender closes,
//! so its close never resets the connection under the confirmations.

use crate::codec::DecoderKind;

/// The magic after the zero-length frame, and at the start of the reply.
pub const MAGIC: &[u8; 15] = b"logrelay-ack/1\n";
/// The magic of version 2, whose handshake carries a token.
pub const MAGIC_V2: &[u8; 15] = b"logrelay-ack/2\n";
/// Where the version digit is in the opening (after `u32 0` and
/// `logrelay-ack/`).
pub const VERSION_AT: usize = 4 + 13;
/// The whole fixed prefix a sender opens with: a zero length, then the magic.
pub const HELLO_PREFIX_LEN: usize = 4 + MAGIC.len();
/// The confirmation that means "closing: send nothing more here".
pub const GOODBYE: u64 = u64::MAX;
/// Most records in one batch.
pub const MAX_BATCH_RECORDS: u32 = 100_000;

/// Whether `buf` (the first bytes of a connection) starts an acknowledged
/// handshake: `Some(true)` yes, `Some(false)` no, `None` too short to tell.
pub(crate) fn is_hello(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(HELLO_PREFIX_LEN);
    let mut prefix = [0u8; HELLO_PREFIX_LEN];
    prefix[4..].copy_from_slice(MAGIC);
    if n > VERSION_AT && buf[VERSION_AT] == b'2' {
        prefix[VERSION_AT] = b'2';
    }
    if buf[..n] != prefix[..n] {
        return Some(false);
    }
    if n < HELLO_PREFIX_LEN {
        None
    } else {
        Some(true)
    }
}

/// The encoder byte of the handshake.
pub fn encoder_byte(decoder: DecoderKind) -> u8 {
    match decoder {
        DecoderKind::Pickle => 0,
        DecoderKind::Json => 1,
        DecoderKind::Msgpack => 2,
    }
}

/// The decoder an encoder byte of the handshake names.
pub(crate) fn decoder_of(byte: u8) -> Option<DecoderKind> {
    Some(match byte {
        0 => DecoderKind::Pickle,
        1 => DecoderKind::Json,
        2 => DecoderKind::Msgpack,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_recognised_from_its_prefix() {
        let mut hello = vec![0, 0, 0, 0];
        hello.extend_from_slice(MAGIC);
        assert_eq!(is_hello(&hello), Some(true));
        assert_eq!(is_hello(&hello[..7]), None);
        assert_eq!(is_hello(&[0, 0, 0, 5]), Some(false));
        assert_eq!(is_hello(b"\x00\x00\x00\x00x"), Some(false));
        // A SocketHandler frame never starts with a zero length.
        assert_eq!(is_hello(b"\x00\x00\x01\x2a}q\x00("), Some(false));
    }

    #[test]
    fn encoder_bytes_round_trip() {
        for d in [DecoderKind::Pickle, DecoderKind::Json, DecoderKind::Msgpack] {
            assert_eq!(decoder_of(encoder_byte(d)), Some(d));
        }
        assert_eq!(decoder_of(3), None);
    }
}
