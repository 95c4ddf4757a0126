//! Scalars: turning the argument bytes of an opcode into a number, a string
//! or bytes. Everything here works on the borrowed frame and allocates only
//! when the output cannot be a slice of it (escapes, invalid UTF-8, big
//! integers in binary form).

use bytes::Bytes;

use super::{PickleError, MAX_INT_DIGITS, MAX_LONG_BYTES};
use crate::record::{Str, Value};

/// A `str` from `frame[start..end]`: zero-copy when it is valid UTF-8.
///
/// Python pickles `str` as UTF-8 with `surrogatepass`, so a lone surrogate
/// arrives as the 3-byte sequence `ED A0..BF 80..BF`; Rust strings cannot
/// hold it, so each becomes one U+FFFD (one code point in, one out), and any
/// other invalid sequence becomes U+FFFD as `String::from_utf8_lossy` does.
#[inline]
pub(super) fn utf8(frame: &Bytes, start: usize, end: usize) -> Str {
    crate::codec::slice_str(frame, start, end, lossy)
}

/// UTF-8 decoding that replaces each encoded surrogate (and each other
/// invalid sequence) with one U+FFFD.
pub(crate) fn lossy(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = b.split_at(e.valid_up_to());
                // `good` is the prefix from_utf8 just validated.
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                out.push('\u{FFFD}');
                let skip = if matches!(rest, [0xED, 0xA0..=0xBF, 0x80..=0xBF, ..]) {
                    3
                } else {
                    e.error_len().unwrap_or(rest.len())
                };
                b = rest.get(skip..).unwrap_or_default();
            }
        }
    }
}

/// Protocol 0's `UNICODE` argument: Python's `raw-unicode-escape`, i.e.
/// Latin-1 bytes where `\uXXXX` and `\UXXXXXXXX` (after an odd number of
/// backslashes) are code points. `None` if an escape is malformed, as
/// Python would raise.
pub(super) fn raw_unicode_escape(frame: &Bytes, start: usize, end: usize) -> Option<Str> {
    let b = frame.get(start..end)?;
    if b.iter().all(|&c| c < 0x80 && c != b'\\') {
        // Pure ASCII without escapes is already UTF-8: borrow it.
        return Some(utf8(frame, start, end));
    }
    let mut out = String::with_capacity(b.len() + 8);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(char::from(c)); // Latin-1 byte = code point
            i += 1;
            continue;
        }
        let run = i;
        while b.get(i) == Some(&b'\\') {
            i += 1;
        }
        let slashes = i - run;
        let kind = b.get(i).copied();
        let escape = slashes % 2 == 1 && matches!(kind, Some(b'u' | b'U'));
        let literal = if escape { slashes - 1 } else { slashes };
        out.extend(std::iter::repeat_n('\\', literal));
        if escape {
            let digits = if kind == Some(b'u') { 4 } else { 8 };
            let hex = b.get(i + 1..i + 1 + digits)?;
            let cp = parse_hex(hex)?;
            i += 1 + digits;
            match char::from_u32(cp) {
                Some(ch) => out.push(ch),
                None if cp <= 0x10FFFF => out.push('\u{FFFD}'), // a surrogate
                None => return None,
            }
        }
    }
    Some(Str::from(out))
}

fn parse_hex(hex: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &h in hex {
        let d = char::from(h).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

/// Protocol 0's `STRING` argument (a Python 2 `str` repr, quotes included):
/// the bytes after `codecs.escape_decode`. `None` if unquoted or malformed.
pub(super) fn quoted_string(line: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = line.split_first()?;
    let (&q2, body) = rest.split_last()?;
    if q != q2 || (q != b'\'' && q != b'"') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?; // a trailing backslash is an error in Python
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let v = parse_hex(body.get(i..i + 2)?)?;
                out.push(v as u8); // two hex digits: < 256
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xFF) as u8); // Python keeps the low byte
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// A base-10 Python int from `frame[start..end]` (the text of `INT` or
/// `LONG`, without the newline or `L` suffix). Values that fit become
/// `Int`, others `BigInt` with normalised decimal text (borrowed from the
/// frame when already normal). `None` if it is not an integer.
pub(super) fn int_text(
    frame: &Bytes,
    start: usize,
    end: usize,
    pos: usize,
) -> Result<Option<Value>, PickleError> {
    let Some(raw) = frame.get(start..end) else {
        return Ok(None);
    };
    let lead_ws = raw.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let trail_ws = raw[lead_ws..]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    let mut s = start + lead_ws;
    let e = end - trail_ws;
    let mut neg = false;
    match frame.get(s) {
        Some(b'-') => {
            neg = true;
            s += 1;
        }
        Some(b'+') => s += 1,
        _ => {}
    }
    let digits = frame.get(s..e).unwrap_or_default();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let zeros = digits.iter().take_while(|&&d| d == b'0').count();
    let sig = &digits[zeros..];
    if sig.len() <= 19 {
        let mut v: i128 = 0;
        for &d in sig {
            v = v * 10 + i128::from(d - b'0');
        }
        let v = if neg { -v } else { v };
        if let Ok(i) = i64::try_from(v) {
            return Ok(Some(Value::Int(i)));
        }
    }
    if sig.len() > MAX_INT_DIGITS {
        return Err(PickleError::IntTooLarge {
            pos,
            limit: MAX_INT_DIGITS,
        });
    }
    let text = if !neg && s == start && zeros == 0 {
        // Already normal: no sign, no padding. Digits are ASCII.
        utf8(frame, s, e)
    } else {
        let mut t = String::with_capacity(sig.len() + 1);
        if neg {
            t.push('-');
        }
        t.extend(sig.iter().map(|&d| char::from(d)));
        Str::from(t)
    };
    Ok(Some(Value::BigInt(text)))
}

/// A `LONG1`/`LONG4` argument: a little-endian two's-complement integer.
/// Returns the value and the work (in ~ns steps) its decimal conversion
/// took, for the frame's work budget.
pub(super) fn int_le(b: &[u8], pos: usize) -> Result<(Value, u64), PickleError> {
    let Some(&top) = b.last() else {
        return Ok((Value::Int(0), 0));
    };
    let neg = top & 0x80 != 0;
    let fill = if neg { 0xFF } else { 0 };
    // Drop redundant sign bytes so small values in long encodings still
    // become `Int`; the top byte keeps the sign bit.
    let mut n = b.len();
    while n > 1 && b[n - 1] == fill && (b[n - 2] & 0x80) == (fill & 0x80) {
        n -= 1;
    }
    if n <= 8 {
        let mut buf = [fill; 8];
        buf[..n].copy_from_slice(&b[..n]);
        return Ok((Value::Int(i64::from_le_bytes(buf)), 0));
    }
    if n > MAX_LONG_BYTES {
        return Err(PickleError::IntTooLarge {
            pos,
            limit: MAX_INT_DIGITS,
        });
    }
    // Magnitude in u32 limbs, least significant first.
    let mut mag: Vec<u8> = b[..n].to_vec();
    if neg {
        let mut carry = true;
        for byte in &mut mag {
            let (v, c) = (!*byte).overflowing_add(u8::from(carry));
            *byte = v;
            carry = c;
        }
    }
    let mut limbs: Vec<u32> = mag
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect();
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
    let work = (limbs.len() as u64).pow(2);
    // Repeated division by 10^9; quadratic, but bounded by MAX_LONG_BYTES
    // and charged to the work budget.
    const BASE: u64 = 1_000_000_000;
    let mut chunks: Vec<u32> = Vec::with_capacity(limbs.len() * 32 / 29 + 1);
    while !limbs.is_empty() {
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / BASE) as u32; // < 2^32 since rem < BASE
            rem = cur % BASE;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut text = String::with_capacity(chunks.len() * 9 + 1);
    if neg {
        text.push('-');
    }
    let mut first = true;
    for c in chunks.iter().rev() {
        if first {
            text.push_str(itoa::Buffer::new().format(*c));
            first = false;
        } else {
            let mut buf = itoa::Buffer::new();
            let s = buf.format(*c);
            text.extend(std::iter::repeat_n('0', 9 - s.len()));
            text.push_str(s);
        }
    }
    if text.len() - usize::from(neg) > MAX_INT_DIGITS {
        return Err(PickleError::IntTooLarge {
            pos,
            limit: MAX_INT_DIGITS,
        });
    }
    Ok((Value::BigInt(Str::from(text)), work))
}

/// A `FLOAT` argument: Python's `float()` of the text (`repr` output,
/// including `nan`, `inf`, `-inf`).
pub(super) fn float_text(line: &[u8]) -> Option<f64> {
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}
