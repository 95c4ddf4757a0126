//! The fast path: one pass over the pickles SocketHandler actually sends.
//!
//! `SocketHandler.makePickle` writes `pickle.dumps(record.__dict__, 1)`: an
//! `EMPTY_DICT`, a `MARK`, then for every attribute a `BINUNICODE` key and a
//! scalar value (str, int, float, None, bool), each string followed by a
//! `BINPUT`, then `SETITEMS` and `STOP`. After `makePickle` has replaced
//! `args` and `exc_info` with None there is no container in it at all
//! unless the application passed `extra=` with one.
//!
//! [`try_decode`] reads exactly that shape (and the same shape under
//! protocols 2-5: `PROTO`, `FRAME`, `MEMOIZE`, `SHORT_BINUNICODE`, `NEWTRUE`)
//! straight into the record's fields, with no value stack, no object graph
//! and no allocation but the fields vector. Attribute names that
//! `LogRecord` defines become static strings (no reference count to touch);
//! other strings borrow from the frame exactly as the general machine does.
//!
//! It answers `None` as soon as it meets anything else — a container, a
//! class reference, an opcode it does not know, a malformed argument, a
//! truncated frame — and the caller then runs the general machine from the
//! start, which decodes or refuses the frame with its full rules and
//! limits. So this path never decides an error and never accepts what the
//! general machine would refuse; a differential test (`tests.rs`) holds it
//! to giving the same fields on every fixture and random frame.

use bytes::Bytes;

use super::machine::{
    BINFLOAT, BINGET, BININT, BININT1, BININT2, BINPUT, BINUNICODE, EMPTY_DICT, FRAME, INT, LONG,
    LONG_BINGET, LONG_BINPUT, MARK, MEMOIZE, NEWFALSE, NEWTRUE, NONE, PROTO, SETITEM, SETITEMS,
    SHORT_BINUNICODE, STOP,
};
use super::scalar;
use crate::codec::pair::Scalar;
use crate::codec::Keep;
use crate::record::{Fields, Str};

/// Memo slots the fast path tracks. A record memoizes every key and every
/// string value, about 30 entries; a frame needing more takes the general
/// path.
const MEMO_SLOTS: usize = 128;

/// The highest protocol the general machine accepts; above it, let the
/// general machine produce the error.
const HIGHEST_PROTOCOL: u8 = 5;

/// A memo slot that holds no string (never written, or the dict, or a
/// number): a GET of it goes to the general path.
const NOT_A_STR: (u32, u32) = (u32::MAX, 0);

/// Decode `frame` if it has the plain SocketHandler shape, else `None`.
/// Fields `keep` does not name are left out; every value is still parsed
/// and checked as if it were kept, so `keep` never changes whether this
/// answers.
pub(super) fn try_decode(frame: &Bytes, keep: Keep) -> Option<Fields> {
    let b: &[u8] = frame;
    let mut pos = 0usize;
    if b.first() == Some(&PROTO) {
        if *b.get(1)? > HIGHEST_PROTOCOL {
            return None;
        }
        pos = 2;
    }
    if b.get(pos) == Some(&FRAME) {
        pos = skip_frame(b, pos + 1)?;
    }
    if *b.get(pos)? != EMPTY_DICT {
        return None;
    }
    pos += 1;
    // Memo slots: the string span each holds, or NOT_A_STR. Slot 0 is
    // usually the dict itself.
    let mut memo = [NOT_A_STR; MEMO_SLOTS];
    let mut memo_len = 0usize;
    // What a PUT would store: the span of the string on top of the stack,
    // NOT_A_STR for the dict or a number, None when the top is a MARK.
    let mut top = Some(NOT_A_STR);
    // Pairs pushed and not yet committed by SETITEMS / SETITEM.
    let mut pending = 0usize;
    let mut in_mark = false;
    // The key whose value comes next: None when a key comes next,
    // Some(None) for a key `keep` leaves out.
    let mut key: Option<Option<Str>> = None;
    let mut repeats = crate::codec::Repeats::default();
    let mut fields: Fields = crate::record::spare_fields_for(keep.capacity());
    loop {
        let op = *b.get(pos)?;
        pos += 1;
        let value = match op {
            BINUNICODE | SHORT_BINUNICODE => {
                let n = if op == BINUNICODE {
                    let n = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                    pos += 4;
                    n as usize
                } else {
                    pos += 1;
                    usize::from(*b.get(pos - 1)?)
                };
                let (start, end) = (pos, pos.checked_add(n)?);
                if end > b.len() || end >= u32::MAX as usize {
                    return None;
                }
                pos = end;
                top = Some((start as u32, end as u32));
                // The BINPUT a protocol 1 pickler writes after every string,
                // done here rather than in a turn of the loop of its own.
                if b.get(pos) == Some(&BINPUT) {
                    let idx = usize::from(*b.get(pos + 1)?);
                    *memo.get_mut(idx)? = (start as u32, end as u32);
                    memo_len = memo_len.max(idx + 1);
                    pos += 2;
                }
                if key.is_none() {
                    // A key: only where a pair may start.
                    if in_mark || pending == 0 {
                        key = Some(key_str(frame, start, end, keep, &mut repeats, &fields));
                        continue;
                    }
                    return None;
                }
                // A string always decodes (lossily if need be), so one
                // left out needs no look at its bytes.
                Scalar::Str(start as u32, end as u32)
            }
            BINPUT | LONG_BINPUT | MEMOIZE => {
                let idx = match op {
                    BINPUT => {
                        pos += 1;
                        usize::from(*b.get(pos - 1)?)
                    }
                    LONG_BINPUT => {
                        let i = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                        pos += 4;
                        i as usize
                    }
                    _ => memo_len,
                };
                *memo.get_mut(idx)? = top?;
                memo_len = memo_len.max(idx + 1);
                continue;
            }
            BINGET | LONG_BINGET => {
                let idx = if op == BINGET {
                    pos += 1;
                    usize::from(*b.get(pos - 1)?)
                } else {
                    let i = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                    pos += 4;
                    i as usize
                };
                let span = *memo.get(idx)?;
                if span == NOT_A_STR {
                    return None;
                }
                let (start, end) = (span.0 as usize, span.1 as usize);
                top = Some(span);
                if key.is_none() {
                    if in_mark || pending == 0 {
                        key = Some(key_str(frame, start, end, keep, &mut repeats, &fields));
                        continue;
                    }
                    return None;
                }
                Scalar::Str(start as u32, end as u32)
            }
            MARK => {
                // Only the dict may be under the MARK: anything else is a
                // container being built.
                if in_mark || pending != 0 || key.is_some() {
                    return None;
                }
                in_mark = true;
                top = None;
                continue;
            }
            SETITEMS | SETITEM => {
                let ok = if op == SETITEMS {
                    in_mark
                } else {
                    !in_mark && pending == 1
                };
                if !ok || key.is_some() {
                    return None;
                }
                in_mark = false;
                pending = 0;
                top = Some(NOT_A_STR);
                continue;
            }
            STOP => {
                if in_mark || pending != 0 || key.is_some() {
                    return None;
                }
                repeats.finish(&mut fields);
                return Some(fields);
            }
            FRAME => {
                pos = skip_frame(b, pos)?;
                continue;
            }
            NONE => Scalar::None,
            NEWTRUE => Scalar::Bool(true),
            NEWFALSE => Scalar::Bool(false),
            BININT1 => {
                pos += 1;
                Scalar::Int(i64::from(*b.get(pos - 1)?))
            }
            BININT2 => {
                let v = u16::from_le_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
                pos += 2;
                Scalar::Int(i64::from(v))
            }
            BININT => {
                let v = i32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                pos += 4;
                Scalar::Int(i64::from(v))
            }
            BINFLOAT => {
                let v = f64::from_be_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
                pos += 8;
                Scalar::Float(v)
            }
            INT | LONG => {
                let nl = b.get(pos..)?.iter().position(|&c| c == b'\n')?;
                let (s, mut e) = (pos, pos + nl);
                pos = e + 1;
                match (op, &b[s..e]) {
                    (INT, b"00") => Scalar::Bool(false),
                    (INT, b"01") => Scalar::Bool(true),
                    _ => {
                        if op == LONG && e > s && b[e - 1] == b'L' {
                            e -= 1;
                        }
                        plain_int(&b[s..e])?
                    }
                }
            }
            _ => return None,
        };
        // A value (a key that is not a str goes to the general path). A
        // PUT after anything but a string memoizes no string.
        let k = key.take()?;
        if !matches!(op, BINUNICODE | SHORT_BINUNICODE | BINGET | LONG_BINGET) {
            top = Some(NOT_A_STR);
        }
        if let Some(k) = k {
            push_pair(&mut fields, k, value, frame);
        }
        pending += 1;
    }
}

/// [`crate::codec::pair::push_pair`] with the pickle decoder's strings
/// (UTF-8, or lossily so).
#[inline(always)]
pub(super) fn push_pair(fields: &mut Fields, k: Str, value: Scalar, frame: &Bytes) {
    crate::codec::pair::push_pair(fields, k, value, |start, end| {
        scalar::utf8(frame, start, end)
    });
}

/// Past a protocol 4 `FRAME` opcode's argument (at `pos`), if the frame
/// length it declares is not a lie.
fn skip_frame(b: &[u8], pos: usize) -> Option<usize> {
    let len = u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
    let pos = pos + 8;
    (len <= (b.len() - pos) as u64).then_some(pos)
}

/// A decimal `int` that fits i64, written plainly (optional `-`, digits, no
/// leading zero); anything else goes to the general path, which knows
/// Python's full `int()` syntax and big integers.
pub(super) fn plain_int(t: &[u8]) -> Option<Scalar> {
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if digits.is_empty() || digits.len() > 18 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(Scalar::Int(if neg { -v } else { v }))
}

/// A record key, noted in `repeats`, or `None` if `keep` leaves it out.
/// `LogRecord`'s own attribute names become static strings (no reference
/// count); others borrow from the frame.
#[inline(always)]
fn key_str(
    frame: &Bytes,
    start: usize,
    end: usize,
    keep: Keep,
    repeats: &mut crate::codec::Repeats,
    fields: &Fields,
) -> Option<Str> {
    let (k, own) = match crate::codec::defaults::own_name(&frame[start..end]) {
        Some((name, bit)) => (Str::from_static(name), bit),
        None if keep.keeps(0) => (scalar::utf8(frame, start, end), 0),
        None => return None,
    };
    if !keep.keeps(own) {
        return None;
    }
    repeats.note(&k, own, fields);
    Some(k)
}
