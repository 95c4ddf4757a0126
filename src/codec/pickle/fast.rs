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

use super::{convert, scalar};
use crate::record::{Fields, Str, Value};

// Opcode bytes, named as in CPython's Lib/pickle.py.
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const INT: u8 = b'I';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const LONG: u8 = b'L';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const BINUNICODE: u8 = b'X';
const EMPTY_DICT: u8 = b'}';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const BINFLOAT: u8 = b'G';
const PROTO: u8 = 0x80;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const SHORT_BINUNICODE: u8 = 0x8c;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;

/// Memo slots the fast path tracks. A record memoizes every key and every
/// string value, about 30 entries; a frame needing more takes the general
/// path.
const MEMO_SLOTS: usize = 128;

/// The highest protocol the general machine accepts; above it, let the
/// general machine produce the error.
const HIGHEST_PROTOCOL: u8 = 5;

/// What a memo slot holds, as far as the fast path cares.
#[derive(Clone, Copy, PartialEq)]
enum Memo {
    /// Never written (a GET of it is an error: general path).
    Unset,
    /// A string at `frame[start..end]`.
    Str(u32, u32),
    /// Anything else (the dict itself, a number): a GET of it goes to the
    /// general path.
    Other,
}

/// What is on top of the value stack, for PUT.
#[derive(Clone, Copy)]
enum Top {
    /// Nothing has been pushed since the last MARK/SETITEM(S) consumed it
    /// (a PUT here refers to a MARK-less stack: general path).
    Nothing,
    Dict,
    Str(u32, u32),
    Scalar,
}

/// Decode `frame` if it has the plain SocketHandler shape, else `None`.
pub(super) fn try_decode(frame: &Bytes) -> Option<Fields> {
    let b: &[u8] = frame;
    let mut pos = 0usize;
    if b.first() == Some(&PROTO) {
        if *b.get(1)? > HIGHEST_PROTOCOL {
            return None;
        }
        pos = 2;
    }
    let mut memo = [Memo::Unset; MEMO_SLOTS];
    let mut memo_len = 0usize;
    // Fields pushed but not yet committed by SETITEMS/SETITEM.
    let mut pending = 0usize;
    let mut in_mark = false;
    let mut key: Option<Str> = None;
    let mut seen_dict = false;
    let mut top = Top::Nothing;
    let mut fields: Fields = Vec::with_capacity(24);
    loop {
        let op = *b.get(pos)?;
        pos += 1;
        // The value this opcode pushes, if it is a key or value opcode.
        let pushed: (Option<Value>, Top) = match op {
            FRAME => {
                let len = u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
                pos += 8;
                if len > (b.len() - pos) as u64 {
                    return None;
                }
                continue;
            }
            EMPTY_DICT if !seen_dict => {
                seen_dict = true;
                top = Top::Dict;
                continue;
            }
            BINPUT | LONG_BINPUT | MEMOIZE => {
                let idx = match op {
                    BINPUT => usize::from(*b.get(pos)?),
                    LONG_BINPUT => {
                        u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?) as usize
                    }
                    _ => memo_len,
                };
                pos += match op {
                    BINPUT => 1,
                    LONG_BINPUT => 4,
                    _ => 0,
                };
                if idx >= MEMO_SLOTS {
                    return None;
                }
                memo[idx] = match top {
                    Top::Nothing => return None,
                    Top::Dict => Memo::Other,
                    Top::Str(s, e) => Memo::Str(s, e),
                    Top::Scalar => Memo::Other,
                };
                memo_len = memo_len.max(idx + 1);
                continue;
            }
            MARK => {
                // Only the dict may be under the MARK: anything else is a
                // container being built.
                if in_mark || !seen_dict || pending != 0 || key.is_some() {
                    return None;
                }
                in_mark = true;
                top = Top::Nothing;
                continue;
            }
            SETITEMS => {
                if !in_mark || key.is_some() {
                    return None;
                }
                in_mark = false;
                pending = 0;
                top = Top::Dict;
                continue;
            }
            SETITEM => {
                if in_mark || key.is_some() || pending != 1 {
                    return None;
                }
                pending = 0;
                top = Top::Dict;
                continue;
            }
            STOP => {
                if !seen_dict || in_mark || pending != 0 || key.is_some() {
                    return None;
                }
                convert::dedup(&mut fields);
                return Some(fields);
            }
            BINUNICODE | SHORT_BINUNICODE => {
                let n = if op == BINUNICODE {
                    let n = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                    pos += 4;
                    n as usize
                } else {
                    let n = *b.get(pos)?;
                    pos += 1;
                    usize::from(n)
                };
                let end = pos.checked_add(n)?;
                if end > b.len() || end > u32::MAX as usize {
                    return None;
                }
                let start = pos;
                pos = end;
                (None, Top::Str(start as u32, end as u32))
            }
            BINGET | LONG_BINGET => {
                let idx = if op == BINGET {
                    let i = usize::from(*b.get(pos)?);
                    pos += 1;
                    i
                } else {
                    let i = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                    pos += 4;
                    i as usize
                };
                match memo.get(idx)? {
                    Memo::Str(s, e) => (None, Top::Str(*s, *e)),
                    _ => return None,
                }
            }
            NONE => (Some(Value::None), Top::Scalar),
            NEWTRUE => (Some(Value::Bool(true)), Top::Scalar),
            NEWFALSE => (Some(Value::Bool(false)), Top::Scalar),
            BININT1 => {
                let v = *b.get(pos)?;
                pos += 1;
                (Some(Value::Int(i64::from(v))), Top::Scalar)
            }
            BININT2 => {
                let v = u16::from_le_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
                pos += 2;
                (Some(Value::Int(i64::from(v))), Top::Scalar)
            }
            BININT => {
                let v = i32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                pos += 4;
                (Some(Value::Int(i64::from(v))), Top::Scalar)
            }
            BINFLOAT => {
                let v = f64::from_be_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
                pos += 8;
                (Some(Value::Float(v)), Top::Scalar)
            }
            INT | LONG => {
                let nl = b.get(pos..)?.iter().position(|&c| c == b'\n')?;
                let (s, mut e) = (pos, pos + nl);
                pos = e + 1;
                let v = match (op, &b[s..e]) {
                    (INT, b"00") => Value::Bool(false),
                    (INT, b"01") => Value::Bool(true),
                    _ => {
                        if op == LONG && e > s && b[e - 1] == b'L' {
                            e -= 1;
                        }
                        plain_int(&b[s..e])?
                    }
                };
                (Some(v), Top::Scalar)
            }
            _ => return None,
        };
        if !seen_dict {
            return None;
        }
        if !in_mark && pending != 0 && key.is_none() {
            // SETITEM form: a second pair before the SETITEM.
            return None;
        }
        match (key.take(), pushed) {
            (None, (None, Top::Str(s, e))) => {
                key = Some(key_str(frame, s as usize, e as usize));
                top = Top::Str(s, e);
            }
            (None, _) => return None, // a key that is not a str
            (Some(k), (value, t)) => {
                let value = match (value, t) {
                    (Some(v), _) => v,
                    (None, Top::Str(s, e)) => Value::Str(scalar::utf8(frame, s as usize, e as usize)),
                    (None, _) => return None,
                };
                fields.push((k, value));
                pending += 1;
                top = t;
            }
        }
    }
}

/// A decimal `int` that fits i64, written plainly (optional `-`, digits, no
/// leading zero); anything else goes to the general path, which knows
/// Python's full `int()` syntax and big integers.
fn plain_int(t: &[u8]) -> Option<Value> {
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
    Some(Value::Int(if neg { -v } else { v }))
}

/// A record key: `LogRecord`'s own attribute names as static strings (no
/// reference count), others borrowed from the frame.
fn key_str(frame: &Bytes, start: usize, end: usize) -> Str {
    let name: &'static str = match &frame[start..end] {
        b"name" => "name",
        b"msg" => "msg",
        b"args" => "args",
        b"levelname" => "levelname",
        b"levelno" => "levelno",
        b"pathname" => "pathname",
        b"filename" => "filename",
        b"module" => "module",
        b"exc_info" => "exc_info",
        b"exc_text" => "exc_text",
        b"stack_info" => "stack_info",
        b"lineno" => "lineno",
        b"funcName" => "funcName",
        b"created" => "created",
        b"msecs" => "msecs",
        b"relativeCreated" => "relativeCreated",
        b"thread" => "thread",
        b"threadName" => "threadName",
        b"processName" => "processName",
        b"process" => "process",
        b"taskName" => "taskName",
        b"message" => "message",
        b"asctime" => "asctime",
        _ => return scalar::utf8(frame, start, end),
    };
    Str::from_static(name)
}
