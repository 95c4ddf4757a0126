//! Turning bytes into records and back: `framing` cuts a byte stream into
//! frames, the format modules decode one frame into one record's fields.
//!
//! Framing is not decoding (as in vector's `lib/codecs`): a decoder never
//! sees a socket, and a frame that fails to decode drops only its record,
//! while a framing error (a garbage length prefix) ends the connection.

pub mod ack;
pub mod defaults;
pub mod encode;
pub mod framing;
pub mod json;
mod json_flat;
pub mod msgpack;
pub(crate) mod pair;
pub mod pickle;

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use crate::record::{Fields, Record, Str};

/// Which decoder an input uses (`"decoder"` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// `"pickle"`: Python's pickle, as `SocketHandler.makePickle` sends (the default).
    #[default]
    Pickle,
    /// `"json"`: a JSON object per frame.
    Json,
    /// `"msgpack"`: a msgpack map per frame.
    Msgpack,
}

impl DecoderKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DecoderKind::Pickle => "pickle",
            DecoderKind::Json => "json",
            DecoderKind::Msgpack => "msgpack",
        }
    }

    /// Decode one frame into a record. Strings may borrow from `frame`,
    /// so pass the frame's own `Bytes`, not a copy.
    pub fn decode(self, frame: Bytes) -> Result<Record, DecodeError> {
        self.decode_keeping(frame, Keep::ALL)
    }

    /// [`DecoderKind::decode`] for a reader that looks only at the fields
    /// `keep` names: the others may be left out. Which frames decode and
    /// which are refused does not depend on `keep`. JSON and msgpack
    /// records get `makeLogRecord`'s defaults for what they lack
    /// ([`Record::defaulted`]); pickle records are whole already.
    pub fn decode_keeping(self, frame: Bytes, keep: Keep) -> Result<Record, DecodeError> {
        let (fields, defaulted) = match self {
            DecoderKind::Pickle => {
                let (fields, plain) = pickle::decode_plain(&frame, keep)?;
                let mut record = Record::new(fields);
                if plain {
                    record.keep_frame(frame);
                }
                return Ok(record);
            }
            DecoderKind::Json => json::decode_keeping(&frame, keep.without_frame())?,
            DecoderKind::Msgpack => msgpack::decode_keeping(&frame, keep.without_frame())?,
        };
        Ok(Record::with_defaults(fields, defaulted))
    }
}

/// Most values one JSON or msgpack frame may hold, the pickle decoder's
/// limit ([`pickle::MAX_SLOTS`]): a value can take a byte or two on the
/// wire and 40 in memory, so without it one 16 MiB frame would decode to
/// 320-640 MiB.
pub const MAX_VALUES: usize = pickle::MAX_SLOTS;

/// The fields of a record that whatever reads it downstream can look at,
/// so that a decoder may leave the others out (SocketHandler sends 22
/// attributes; a route to a text file whose format names five reads nine).
///
/// LogRecord's own attributes are named one by one, by their
/// `defaults::own_name` bit; any other key (an `extra=` attribute) is
/// kept or not as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    own: u32,
    others: bool,
    /// Whether a reader wants the frame as sent ([`Keep::FRAME`]).
    frame: bool,
    /// Whether a reader of the frame needs its strings found valid UTF-8
    /// by the decoder ([`Keep::FRAME`], not [`Keep::RAW_FRAME`]).
    utf8: bool,
}

impl Keep {
    /// Every field: for a filter, a forward or JSON output, anything that
    /// reads the record as a whole.
    pub const ALL: Keep = Keep {
        own: u32::MAX,
        others: true,
        frame: false,
        utf8: false,
    };
    /// No field.
    pub const NONE: Keep = Keep {
        own: 0,
        others: false,
        frame: false,
        utf8: false,
    };
    /// The frame as the sender sent it, for a pickle encoder that can send
    /// a record on unchanged ([`Record::frame`]). A decoder that cannot
    /// keep the frame (JSON, msgpack, a pickle that is not plain
    /// `makePickle` output) keeps every field instead, for the encoder to
    /// write.
    pub const FRAME: Keep = Keep {
        own: 0,
        others: false,
        frame: true,
        utf8: true,
    };
    /// [`Keep::FRAME`] for a reader that checks the strings itself as it
    /// copies them (the JSON writer, `pickle::write_json`): the decoder
    /// keeps the frame of a plain dict without looking at its strings'
    /// bytes, unless another reader asks for [`Keep::FRAME`].
    pub const RAW_FRAME: Keep = Keep {
        own: 0,
        others: false,
        frame: true,
        utf8: false,
    };

    /// The field `name`.
    pub fn field(name: &str) -> Keep {
        match defaults::own_name(name.as_bytes()) {
            Some((_, bit)) => Keep {
                own: bit,
                others: false,
                frame: false,
                utf8: false,
            },
            None => Keep {
                own: 0,
                others: true,
                frame: false,
                utf8: false,
            },
        }
    }

    /// The fields `names`.
    pub fn fields<'a>(names: impl IntoIterator<Item = &'a str>) -> Keep {
        names
            .into_iter()
            .fold(Keep::NONE, |k, name| k.and(Keep::field(name)))
    }

    /// The fields either keeps.
    #[must_use]
    pub fn and(self, other: Keep) -> Keep {
        Keep {
            own: self.own | other.own,
            others: self.others || other.others,
            frame: self.frame || other.frame,
            utf8: self.utf8 || other.utf8,
        }
    }

    /// Whether a reader wants the frame as sent ([`Keep::FRAME`]).
    pub fn wants_frame(self) -> bool {
        self.frame
    }

    /// Whether a kept frame's strings must be found valid UTF-8 (a
    /// [`Keep::FRAME`] reader; a [`Keep::RAW_FRAME`] one checks them).
    pub fn checks_utf8(self) -> bool {
        self.utf8
    }

    /// The fields to decode when the frame cannot be kept: every field if
    /// a reader wanted the frame (it will encode the record from them).
    #[must_use]
    pub fn without_frame(self) -> Keep {
        if self.frame {
            Keep::ALL
        } else {
            self
        }
    }

    /// Whether the field `key` is kept.
    pub fn keeps_name(self, key: &str) -> bool {
        self.keeps(defaults::own_name(key.as_bytes()).map_or(0, |(_, bit)| bit))
    }

    /// Whether any field is kept (not only, or not even, the frame).
    #[inline]
    pub(crate) fn keeps_any(self) -> bool {
        self.own != 0 || self.others
    }

    /// How many fields a record decoded with this keeps at most, for its
    /// list's capacity: a LogRecord's worth when any key may be kept.
    pub(crate) fn capacity(self) -> usize {
        if self.others {
            crate::record::FIELDS_CAPACITY
        } else {
            (self.own.count_ones() as usize).clamp(1, crate::record::FIELDS_CAPACITY)
        }
    }

    /// Whether a key with this [`defaults::own_name`] bit (0 for a key
    /// that is not one of LogRecord's) is kept.
    #[inline]
    pub(crate) fn keeps(self, bit: u32) -> bool {
        if bit == 0 {
            self.others
        } else {
            self.own & bit != 0
        }
    }
}

/// Why one frame did not become a record. Every variant drops only that
/// record: the connection goes on with the next frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The pickle decoder refused the frame.
    #[error("pickle: {0}")]
    Pickle(#[from] pickle::PickleError),
    /// The JSON decoder refused the frame.
    #[error("json: {0}")]
    Json(String),
    /// The msgpack decoder refused the frame.
    #[error("msgpack: {0}")]
    Msgpack(String),
}

impl DecodeError {
    /// A short, stable label for metrics and rate-limited warnings.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Pickle(_) => "bad_pickle",
            DecodeError::Json(_) => "bad_json",
            DecodeError::Msgpack(_) => "bad_msgpack",
        }
    }
}

/// `frame[start..end]` as a string, without copying when it is UTF-8;
/// other bytes go through `lossy` (each decoder has its own idea of
/// `errors="replace"`). Decoders call this for every string of every
/// record, and nearly all are ASCII, so that is checked first, a word at a
/// time, before full validation.
#[inline]
pub(crate) fn slice_str(
    frame: &Bytes,
    start: usize,
    end: usize,
    lossy: impl FnOnce(&[u8]) -> String,
) -> Str {
    if frame.get(start..end).is_some_and(is_ascii) {
        // SAFETY: `frame[start..end]` exists and is all ASCII, and ASCII is
        // valid UTF-8, which is all `from_bytes_unchecked` requires.
        return unsafe { Str::from_bytes_unchecked(frame.slice(start..end)) };
    }
    match Str::try_from(frame.slice(start..end)) {
        Ok(s) => s,
        Err(_) => Str::from(lossy(frame.get(start..end).unwrap_or_default())),
    }
}

/// `out.extend_from_slice(b)`, with the short slices of a record (keys,
/// level names, most values: 16 bytes or less) copied inline by two
/// overlapping loads and stores, rather than by a call to `memcpy`, whose
/// call and size dispatch cost more than the copy (an encoded record
/// makes dozens of them).
#[inline(always)]
pub(crate) fn append(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if !(4..=16).contains(&n) {
        out.extend_from_slice(b);
        return;
    }
    out.reserve(16);
    let len = out.len();
    let src = b.as_ptr();
    // SAFETY: `reserve(16)` leaves room for at least 16 bytes past `len`,
    // so every store below (at most `n` <= 16 bytes past `len`) is inside
    // the allocation; every load is inside `b` (`n` >= 4 bytes, and each
    // load of `w` bytes starts at 0 or at `n - w`, with `w` <= `n`).
    // Unaligned reads and writes of integers are what `read_unaligned`
    // and `write_unaligned` are for. The two copies overlap when `n` is
    // under `2 * w`, writing the same bytes twice; together they cover
    // all `n`, so after them bytes `len..len + n` are initialised and
    // `set_len` may count them.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        if n >= 8 {
            let head = src.cast::<u64>().read_unaligned();
            let tail = src.add(n - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(head);
            dst.add(n - 8).cast::<u64>().write_unaligned(tail);
        } else {
            let head = src.cast::<u32>().read_unaligned();
            let tail = src.add(n - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(head);
            dst.add(n - 4).cast::<u32>().write_unaligned(tail);
        }
        out.set_len(len + n);
    }
}

/// Whether `b` is all ASCII, eight bytes at a time: record strings are
/// short (most under 32 bytes), where this beats `<[u8]>::is_ascii`.
#[inline]
pub(crate) fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    match b.last_chunk::<8>() {
        // The last eight bytes cover the tail the chunks leave.
        Some(last) => {
            let mut acc = word(last);
            let mut chunks = b.chunks_exact(8);
            for c in &mut chunks {
                if let Some(c) = c.first_chunk::<8>() {
                    acc |= word(c);
                }
            }
            acc & HIGH == 0
        }
        None => b.iter().fold(0u8, |acc, &c| acc | c) < 0x80,
    }
}

/// Finds repeated record keys as they arrive, so that a record without
/// one (every real record) never pays [`dedup_keys`]: one bit per
/// LogRecord attribute ([`defaults::own_name`]), and a compare with the
/// earlier keys for the few others; past eight of those, the general dedup
/// decides.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    own: u32,
    others: usize,
    dup: bool,
}

impl Repeats {
    /// Note `key` (with its `own_name` bit, 0 for other keys) before it
    /// is pushed onto `fields`.
    #[inline]
    pub(crate) fn note(&mut self, key: &Str, bit: u32, fields: &Fields) {
        if bit != 0 {
            self.dup |= self.own & bit != 0;
            self.own |= bit;
        } else if !self.dup {
            self.others += 1;
            self.dup = self.others > 8 || fields.iter().any(|(k, _)| k == key);
        }
    }

    /// Make the keys of `fields` unique if any repeated; returns the bits
    /// of the LogRecord attributes among them.
    pub(crate) fn finish(self, fields: &mut Fields) -> u32 {
        if self.dup {
            dedup_keys(fields);
        }
        self.own
    }
}

/// Make keys unique as a Python dict would: a repeated key keeps its first
/// position and takes the last value. Every decoder uses it for a record's
/// fields (and JSON for nested objects too), so a frame of many keys costs
/// linear time, never a comparison of every key with every other. Real
/// records never repeat a key, so the common path only hashes each key into
/// a 1024-bit filter and compares strings on a filter hit.
pub(crate) fn dedup_keys(fields: &mut Fields) {
    let n = fields.len();
    if n <= 256 {
        let mut seen = [0u64; 16];
        let mut dup = false;
        for i in 0..n {
            let h = (hash(fields[i].0.as_bytes()) >> 54) as usize; // 10 bits
            let (word, bit) = (h >> 6, 1u64 << (h & 63));
            if seen[word] & bit != 0 && fields[..i].iter().any(|(k, _)| *k == fields[i].0) {
                dup = true;
                break;
            }
            seen[word] |= bit;
        }
        if !dup {
            return;
        }
    }
    let mut index: HashMap<Str, usize> = HashMap::with_capacity(n);
    let mut out: Fields = Vec::with_capacity(n);
    for (k, v) in fields.drain(..) {
        match index.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    *fields = out;
}

/// FxHash over 8-byte words: keys are short, so this is a few multiplies.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

#[cfg(test)]
mod tests {
    /// `append` is `extend_from_slice` for every length around its
    /// inline copies' bounds, whatever the buffer held and had room for.
    #[test]
    fn append_is_extend_from_slice() {
        let src: Vec<u8> = (0..40u8).map(|i| b'a' + i).collect();
        for n in 0..=40 {
            for before in [0usize, 1, 7, 15, 16, 17] {
                let mut out = vec![b'#'; before];
                out.shrink_to_fit();
                super::append(&mut out, &src[..n]);
                let mut want = vec![b'#'; before];
                want.extend_from_slice(&src[..n]);
                assert_eq!(out, want, "n={n} before={before}");
            }
        }
    }
}
