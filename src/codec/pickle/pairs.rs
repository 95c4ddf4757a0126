//! The pair loop: a frame exactly as `SocketHandler.makePickle` writes it,
//! read one key-value pair per turn.
//!
//! `pickle.dumps(record.__dict__, 1)` is always the same shape: `EMPTY_DICT`,
//! `BINPUT 0`, `MARK`, then for every attribute a `BINUNICODE` key with its
//! `BINPUT`, and a value (`NONE`, `BININT1`/`BININT2`/`BININT`, `BINFLOAT`,
//! `LONG` or `INT` text, or a `BINUNICODE` with its `BINPUT`), then
//! `SETITEMS` and `STOP`. The loop in [`super::fast`] reads the same
//! opcodes one at a time, with state for where a key or a value may come;
//! this one knows that a key comes, then its value, so it carries nothing
//! from one opcode to the next and keeps no memo: it answers `None` at the
//! first `BINGET` (a string the dict holds twice), as at anything else it
//! does not expect, and the caller tries the opcode loop. About 2 in 3
//! instructions of decoding a real frame went to that state (callgrind).
//!
//! A `BINPUT`'s index is skipped, not kept: only a `GET` could read it,
//! and a frame with one is not decoded here. The differential test in
//! `tests.rs` holds this loop to the general machine's answer on every
//! real frame, fixture and mutation.

use bytes::Bytes;

use super::fast::plain_int;
use super::machine::{
    BINFLOAT, BININT, BININT1, BININT2, BINPUT, BINUNICODE, EMPTY_DICT, INT, LONG, LONG_BINPUT,
    MARK, NEWFALSE, NEWTRUE, NONE, SETITEMS, STOP,
};
use super::scalar;
use crate::codec::pair::{common_value, Scalar};
use crate::codec::{defaults, Keep, Repeats};
use crate::record::{Fields, Str};

/// Decode `frame` if it is a plain protocol 1 `SocketHandler` dict, else
/// `None`. Fields `keep` does not name are left out; every value is still
/// parsed and checked, so `keep` never changes whether this answers.
///
/// With the fields, whether the frame may be sent on as it is
/// ([`Keep::FRAME`]; always false when `keep` does not ask): every
/// string in it is valid UTF-8, so any unpickler reads it as this decoder
/// did (an encoded surrogate, which this decoder replaces, is left to the
/// encoder), and nothing follows its `STOP`. Asked by
/// [`Keep::RAW_FRAME`] alone, the strings' bytes are not looked at: its
/// reader checks them.
pub(super) fn try_decode(frame: &Bytes, keep: Keep) -> Option<(Fields, bool)> {
    let b: &[u8] = frame;
    let mut pos = match b {
        [EMPTY_DICT, BINPUT, _, MARK, ..] => 4,
        [EMPTY_DICT, MARK, ..] => 2,
        _ => return None,
    };
    if !keep.keeps_any() {
        return frame_only(b, pos, keep.wants_frame(), keep.checks_utf8())
            .map(|plain| (Vec::new(), plain));
    }
    let mut repeats = Repeats::default();
    let mut fields = crate::record::spare_fields_for(keep.capacity());
    // With fields, a kept frame's strings are always checked (only a
    // reader of the frame alone skips it, in `frame_only`).
    let mut plain = keep.wants_frame();
    loop {
        let (start, end) = match *b.get(pos)? {
            BINUNICODE => string(b, pos + 1)?,
            SETITEMS if b.get(pos + 1) == Some(&STOP) => {
                repeats.finish(&mut fields);
                return Some((fields, plain && pos + 2 == b.len()));
            }
            _ => return None,
        };
        plain = plain && utf8_valid(&b[start..end]);
        pos = past_put(b, end)?;
        let key = match defaults::own_name(&b[start..end]) {
            Some((name, bit)) => keep.keeps(bit).then(|| (Str::from_static(name), bit)),
            None if keep.keeps(0) => Some((scalar::utf8(frame, start, end), 0)),
            None => None,
        };
        let (value, next) = value(b, pos)?;
        pos = next;
        if let Scalar::Str(start, end) = value {
            plain = plain && utf8_valid(&b[start as usize..end as usize]);
        }
        if let Some((k, bit)) = key {
            repeats.note(&k, bit, &fields);
            crate::codec::pair::push_pair(&mut fields, k, value, |start, end| {
                common_value(bit, &b[start..end]).unwrap_or_else(|| scalar::utf8(frame, start, end))
            });
        }
    }
}

/// [`try_decode`] for a reader of the frame alone (a pickle encoder,
/// [`Keep::FRAME`], or the JSON writer, [`Keep::RAW_FRAME`]), from the
/// first pair at `pos`: the same
/// checks, no key looked up and no field list (its records are dropped
/// on the output's thread, so each list was allocated here and freed
/// there, through glibc's cross-thread path: a tenth of a nats output's
/// CPU, perf). Whether the frame is plain, if it is the pair loop's
/// shape; its strings are checked only if `check` ([`Keep::checks_utf8`]).
fn frame_only(b: &[u8], mut pos: usize, mut plain: bool, check: bool) -> Option<bool> {
    loop {
        let (start, end) = match *b.get(pos)? {
            BINUNICODE => string(b, pos + 1)?,
            SETITEMS if b.get(pos + 1) == Some(&STOP) => {
                return Some(plain && pos + 2 == b.len());
            }
            _ => return None,
        };
        plain = plain && (!check || utf8_valid(&b[start..end]));
        pos = past_put(b, end)?;
        let (value, next) = value(b, pos)?;
        pos = next;
        if let Scalar::Str(start, end) = value {
            plain = plain && (!check || utf8_valid(&b[start as usize..end as usize]));
        }
    }
}

/// Whether `s` is valid UTF-8 (nearly always ASCII, checked first).
#[inline(always)]
fn utf8_valid(s: &[u8]) -> bool {
    crate::codec::is_ascii(s) || std::str::from_utf8(s).is_ok()
}

/// The value whose opcode is at `pos`, and where the next pair starts.
#[inline(always)]
pub(super) fn value(b: &[u8], pos: usize) -> Option<(Scalar, usize)> {
    let arg = pos + 1;
    Some(match *b.get(pos)? {
        BINUNICODE => {
            let (start, end) = string(b, arg)?;
            (Scalar::Str(start as u32, end as u32), past_put(b, end)?)
        }
        NONE => (Scalar::None, arg),
        BININT1 => (Scalar::Int(i64::from(*b.get(arg)?)), arg + 1),
        BININT2 => {
            let v = u16::from_le_bytes(b.get(arg..arg + 2)?.try_into().ok()?);
            (Scalar::Int(i64::from(v)), arg + 2)
        }
        BININT => {
            let v = i32::from_le_bytes(b.get(arg..arg + 4)?.try_into().ok()?);
            (Scalar::Int(i64::from(v)), arg + 4)
        }
        BINFLOAT => {
            let v = f64::from_be_bytes(b.get(arg..arg + 8)?.try_into().ok()?);
            (Scalar::Float(v), arg + 8)
        }
        op @ (INT | LONG) => {
            let nl = b.get(arg..)?.iter().position(|&c| c == b'\n')?;
            let (s, mut e) = (arg, arg + nl);
            let v = match (op, &b[s..e]) {
                (INT, b"00") => Scalar::Bool(false),
                (INT, b"01") => Scalar::Bool(true),
                _ => {
                    if op == LONG && e > s && b[e - 1] == b'L' {
                        e -= 1;
                    }
                    plain_int(&b[s..e])?
                }
            };
            (v, arg + nl + 1)
        }
        NEWTRUE => (Scalar::Bool(true), arg),
        NEWFALSE => (Scalar::Bool(false), arg),
        _ => return None,
    })
}

/// The span of a `BINUNICODE` string whose 4-byte length is at `pos`.
#[inline(always)]
pub(super) fn string(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let n = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let start = pos + 4;
    let end = start.checked_add(n)?;
    (end <= b.len() && end < u32::MAX as usize).then_some((start, end))
}

/// Past the `BINPUT` that follows a string ending at `pos`, if there is
/// one. A `LONG_BINPUT` (a pickle of more than 256 strings) goes to the
/// opcode loop, which checks its index against the memo's limit.
#[inline(always)]
pub(super) fn past_put(b: &[u8], pos: usize) -> Option<usize> {
    match b.get(pos) {
        Some(&BINPUT) => (pos + 2 <= b.len()).then_some(pos + 2),
        Some(&LONG_BINPUT) => None,
        _ => Some(pos),
    }
}
