//! CPython's `str % args` (printf-style) engine: parsing conversion specs
//! and rendering one value under one spec, with the flags `-0 +#`, width,
//! precision, the ignored length modifiers `hlL` and the types
//! `s r a d i u o x X e E f F g G c`.
//!
//! `%`-style formats and `LogRecord.getMessage` (`msg % args`) both use it.

use super::numfmt::{self, BigInt};
use super::pyrepr;
use crate::record::Value;

/// A width or precision: absent, a number, or `*` (taken from the args).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Not given.
    None,
    /// A literal number.
    Num(usize),
    /// `*`: the next positional argument.
    Star,
}

/// One `%...` conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    /// The mapping key of `%(key)s`.
    pub key: Option<String>,
    /// Flags, width and precision once `*` is resolved.
    pub spec: Spec,
    /// The width as written.
    pub width: Count,
    /// The precision as written.
    pub prec: Count,
    /// Character index of the `%` in the format (as Python reports it).
    pub pos: usize,
}

/// Flags, width, precision and type of a conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// `-`: pad on the right.
    pub left: bool,
    /// `0`: pad numbers with zeros after the sign.
    pub zero: bool,
    /// ` `: a space before positive numbers.
    pub space: bool,
    /// `+`: a sign before positive numbers.
    pub plus: bool,
    /// `#`: alternate form.
    pub alt: bool,
    /// Minimum width in characters.
    pub width: usize,
    /// Precision, if given.
    pub prec: Option<usize>,
    /// The conversion type character.
    pub ty: char,
}

/// One piece of a parsed `%` format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text copied as is (`%%` already turned into `%`).
    Lit(String),
    /// A conversion.
    Conv(Conv),
}

/// Why a `%` format can never be applied (Python raises on every call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Character index where the problem is.
    pub pos: usize,
    /// Python's message.
    pub reason: String,
}

/// Widths and precisions above this are refused: Python would build the
/// string, we would rather not allocate gigabytes per record.
pub const MAX_COUNT: usize = 100_000;

/// Parse a `%` format as `PyUnicode_Format` does.
pub fn parse(fmt: &str) -> Result<Vec<Piece>, ParseError> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let incomplete = |pos| ParseError {
        pos,
        reason: "incomplete format".into(),
    };
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            lit.push(c);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if chars.get(i) == Some(&'%') {
            lit.push('%');
            i += 1;
            continue;
        }
        let mut key = None;
        if chars.get(i) == Some(&'(') {
            let mut depth = 1;
            let kstart = i + 1;
            i += 1;
            while i < chars.len() && depth > 0 {
                match chars[i] {
                    ')' => depth -= 1,
                    '(' => depth += 1,
                    _ => {}
                }
                i += 1;
            }
            if depth > 0 {
                return Err(ParseError {
                    pos: start,
                    reason: "incomplete format key".into(),
                });
            }
            key = Some(chars[kstart..i - 1].iter().collect());
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                '0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        let count = |i: &mut usize| -> Result<Count, ParseError> {
            if chars.get(*i) == Some(&'*') {
                *i += 1;
                return Ok(Count::Star);
            }
            let s = *i;
            let mut n: usize = 0;
            while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                *i += 1;
            }
            if *i == s {
                return Ok(Count::None);
            }
            if n > MAX_COUNT {
                return Err(ParseError {
                    pos: s,
                    reason: format!("width or precision {n} is too big (limit {MAX_COUNT})"),
                });
            }
            Ok(Count::Num(n))
        };
        let width = count(&mut i)?;
        let mut prec = Count::None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            prec = match count(&mut i)? {
                Count::None => Count::Num(0),
                c => c,
            };
        }
        if matches!(chars.get(i), Some('h' | 'l' | 'L')) {
            i += 1;
        }
        let Some(&ty) = chars.get(i) else {
            return Err(incomplete(start));
        };
        if !"sradiuoxXeEfFgGc".contains(ty) {
            return Err(ParseError {
                pos: i,
                reason: format!("unsupported format character {:?} (0x{:x})", ty, ty as u32),
            });
        }
        i += 1;
        spec.ty = ty;
        if let Count::Num(n) = width {
            spec.width = n;
        }
        if let Count::Num(n) = prec {
            spec.prec = Some(n);
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Conv(Conv {
            key,
            spec,
            width,
            prec,
            pos: start,
        }));
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// The value does not fit the conversion (Python raises TypeError,
/// ValueError or OverflowError for this record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch;

/// Pad `body` (already holding sign and prefix) to the spec's width.
#[inline]
fn pad(spec: &Spec, body: &str, out: &mut String) {
    if spec.width == 0 {
        out.push_str(body);
        return;
    }
    let n = char_count(body);
    let fill = spec.width.saturating_sub(n);
    if spec.left {
        out.push_str(body);
        push_repeated(out, ' ', fill);
    } else {
        push_repeated(out, ' ', fill);
        out.push_str(body);
    }
}

/// `s.chars().count()`, byte by byte for the short strings padded here
/// (levelname, a number) where the general routine's setup dominates.
#[inline]
fn char_count(s: &str) -> usize {
    if s.len() < 32 {
        // Every byte except UTF-8 continuation bytes starts a character.
        s.bytes().filter(|&b| (b & 0xC0) != 0x80).count()
    } else {
        s.chars().count()
    }
}

/// Runs of the usual fill characters, appended or inserted a slice at a
/// time instead of one character at a time.
fn run_of(fill: char) -> Option<&'static str> {
    match fill {
        ' ' => Some("                                "),
        '0' => Some("00000000000000000000000000000000"),
        _ => None,
    }
}

/// Append `n` copies of `fill`.
#[inline]
fn push_repeated(out: &mut String, fill: char, n: usize) {
    let Some(run) = run_of(fill) else {
        out.extend(std::iter::repeat_n(fill, n));
        return;
    };
    let mut left = n;
    while left > 0 {
        let k = left.min(run.len());
        out.push_str(&run[..k]);
        left -= k;
    }
}

/// Insert `n` copies of `fill` at byte `at` (a character boundary).
fn insert_repeated(out: &mut String, at: usize, fill: char, n: usize) {
    let Some(run) = run_of(fill) else {
        let mut buf = [0u8; 4];
        let c = fill.encode_utf8(&mut buf);
        for _ in 0..n {
            out.insert_str(at, c);
        }
        return;
    };
    let mut left = n;
    while left > 0 {
        let k = left.min(run.len());
        out.insert_str(at, &run[..k]);
        left -= k;
    }
}

/// [`pad_str`] applied in place to the text already appended at
/// `out[mark..]`, so that rendering it needs no buffer of its own.
fn pad_str_tail(spec: &Spec, mark: usize, out: &mut String) {
    if let Some(p) = spec.prec {
        if let Some((i, _)) = out[mark..].char_indices().nth(p) {
            out.truncate(mark + i);
        }
    }
    pad_tail(spec, mark, out);
}

/// [`pad`] applied in place to `out[mark..]`.
fn pad_tail(spec: &Spec, mark: usize, out: &mut String) {
    if spec.width == 0 {
        return;
    }
    let fill = spec.width.saturating_sub(char_count(&out[mark..]));
    if spec.left {
        push_repeated(out, ' ', fill);
    } else {
        insert_repeated(out, mark, ' ', fill);
    }
}

/// Render a string under `%s`-like rules: precision truncates, width pads
/// with spaces (the `0` flag does not apply to strings).
#[inline]
pub fn pad_str(spec: &Spec, text: &str, out: &mut String) {
    match spec.prec {
        Some(p) => {
            let end = text.char_indices().nth(p).map_or(text.len(), |(i, _)| i);
            pad(spec, &text[..end], out)
        }
        None => pad(spec, text, out),
    }
}

/// Render a number: `sign`, `prefix` and `digits`, zero-padded after the
/// prefix when `0` is set (and `-` is not).
fn pad_num(spec: &Spec, negative: bool, prefix: &str, digits: &str, out: &mut String) {
    let sign = sign(spec, negative);
    // A width of 0 never pads: skip counting.
    if spec.width == 0 || sign.len() + prefix.len() + char_count(digits) >= spec.width {
        out.push_str(sign);
        out.push_str(prefix);
        out.push_str(digits);
    } else if spec.zero && !spec.left {
        let n = sign.len() + prefix.len() + char_count(digits);
        out.push_str(sign);
        out.push_str(prefix);
        push_repeated(out, '0', spec.width - n);
        out.push_str(digits);
    } else {
        let body = [sign, prefix, digits].concat();
        pad(spec, &body, out);
    }
}

/// The sign a number is written with.
fn sign(spec: &Spec, negative: bool) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::BigInt(_) => BigInt::of(v)?.to_f64(),
        _ => None,
    }
}

/// Python's `int(f)` (truncation toward zero, so `-0.5` gives `0`) where
/// it fits i64; `None` for NaN, infinities and larger magnitudes, which
/// take the general path (and keep its errors).
fn float_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exact in f64; every finite value in [-2^63, 2^63) truncates
    // to an i64 exactly. NaN fails both comparisons.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let t = f.trunc();
    (-LIMIT..LIMIT).contains(&t).then_some(t as i64)
}

/// Append `v` rendered under `spec`, or report that Python would raise.
pub fn format_value(spec: &Spec, v: &Value, out: &mut String) -> Result<(), Mismatch> {
    match spec.ty {
        's' | 'r' | 'a' => {
            if spec.ty == 's' {
                if let Value::Str(s) = v {
                    pad_str(spec, s, out);
                    return Ok(());
                }
            }
            // Rendered in place, then cut and padded.
            let mark = out.len();
            match spec.ty {
                's' => pyrepr::str(v, out),
                'r' => pyrepr::repr(v, out),
                _ => pyrepr::ascii(v, out),
            }
            pad_str_tail(spec, mark, out);
        }
        'd' | 'i' | 'u' => {
            // The common cases: no allocation. Ints (lineno, process,
            // levelno) and floats whose `int()` fits i64 (msecs in asctime).
            let small = match v {
                Value::Int(i) => Some(*i),
                Value::Float(f) => float_to_i64(*f),
                _ => None,
            };
            if let Some(i) = small {
                let mut buf = itoa::Buffer::new();
                let digits = buf.format(i.unsigned_abs());
                if spec.prec.is_none_or(|p| p <= digits.len()) {
                    pad_num(spec, i < 0, "", digits, out);
                    return Ok(());
                }
            }
            let n = match v {
                Value::Float(f) => BigInt::of_float(*f).ok_or(Mismatch)?,
                _ => BigInt::of(v).ok_or(Mismatch)?,
            };
            int_digits(spec, &n, 10, "", out);
        }
        'o' | 'x' | 'X' => {
            let n = BigInt::of(v).ok_or(Mismatch)?;
            let (base, prefix) = match spec.ty {
                'o' => (8, "0o"),
                'x' => (16, "0x"),
                _ => (16, "0X"),
            };
            int_digits(spec, &n, base, if spec.alt { prefix } else { "" }, out);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let f = float_of(v).ok_or(Mismatch)?;
            let prec = spec.prec.unwrap_or(6);
            let upper = spec.ty.is_ascii_uppercase();
            let a = f.abs();
            // Python drops the sign of NaN.
            let negative = f.is_sign_negative() && !f.is_nan();
            // As pad_num, in place: sign and digits, then the padding.
            let mark = out.len();
            out.push_str(sign(spec, negative));
            let body = out.len();
            match spec.ty.to_ascii_lowercase() {
                'e' => numfmt::exp(a, prec, spec.alt, upper, out),
                'f' => numfmt::fixed(a, prec, spec.alt, upper, out),
                _ => numfmt::general(a, prec, spec.alt, upper, out),
            }
            if spec.zero && !spec.left && spec.width > 0 {
                let fill = spec.width.saturating_sub(char_count(&out[mark..]));
                insert_repeated(out, body, '0', fill);
            } else {
                pad_tail(spec, mark, out);
            }
        }
        'c' => {
            let c = match v {
                Value::Str(s) => {
                    let mut it = s.chars();
                    match (it.next(), it.next()) {
                        (Some(c), None) => c,
                        _ => return Err(Mismatch),
                    }
                }
                _ => {
                    let i = v.as_i64().ok_or(Mismatch)?;
                    if !(0..=0x10ffff).contains(&i) {
                        return Err(Mismatch);
                    }
                    char::from_u32(i as u32).unwrap_or('\u{fffd}')
                }
            };
            let mut buf = [0u8; 4];
            pad(spec, c.encode_utf8(&mut buf), out);
        }
        _ => return Err(Mismatch),
    }
    Ok(())
}

fn int_digits(spec: &Spec, n: &BigInt<'_>, base: u32, prefix: &str, out: &mut String) {
    let mut digits = n.magnitude(base);
    if spec.ty == 'X' {
        digits.make_ascii_uppercase();
    }
    if let Some(p) = spec.prec {
        if digits.len() < p {
            digits.insert_str(0, &"0".repeat(p - digits.len()));
        }
    }
    pad_num(spec, n.negative, prefix, &digits, out);
}

/// Python's `fmt % args` for `LogRecord.getMessage`; `None` where Python
/// raises (bad format, wrong argument count or type, missing key).
pub fn apply(fmt: &str, args: &Value) -> Option<String> {
    let pieces = parse(fmt).ok()?;
    // A tuple gives positional arguments; anything else is one argument,
    // and also the mapping for `%(key)` if it is subscriptable
    // (PyMapping_Check holds for dict, list and bytes, not str).
    let tuple: Option<&[Value]> = match args {
        Value::Tuple(t) => Some(t),
        _ => None,
    };
    let mapping = matches!(args, Value::Dict(_) | Value::List(_) | Value::Bytes(_));
    let (mut idx, mut len): (isize, isize) = match tuple {
        Some(t) => (0, t.len() as isize),
        None => (-2, -1),
    };
    let next = |idx: &mut isize, len: isize| -> Option<&Value> {
        if *idx >= len {
            return None;
        }
        let i = *idx;
        *idx += 1;
        match tuple {
            Some(t) if len >= 0 => t.get(i as usize),
            _ => Some(args),
        }
    };
    let mut out = String::with_capacity(fmt.len() + 16);
    for p in &pieces {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Conv(c) => {
                let mut spec = c.spec.clone();
                if c.width == Count::Star {
                    let w = next(&mut idx, len)?.as_i64()?;
                    spec.left |= w < 0;
                    spec.width = usize::try_from(w.unsigned_abs()).ok()?.min(MAX_COUNT);
                }
                if c.prec == Count::Star {
                    let p = next(&mut idx, len)?.as_i64()?;
                    spec.prec = Some(usize::try_from(p.max(0)).ok()?.min(MAX_COUNT));
                }
                let v = match &c.key {
                    Some(k) => {
                        if !mapping {
                            return None;
                        }
                        let Value::Dict(d) = args else { return None };
                        let v = d
                            .iter()
                            .find(|(dk, _)| dk.as_str() == Some(k))
                            .map(|(_, v)| v)?;
                        // CPython replaces its args by this value and
                        // consumes it: a later unkeyed conversion fails.
                        idx = -1;
                        len = -1;
                        v
                    }
                    None => next(&mut idx, len)?,
                };
                format_value(&spec, v, &mut out).ok()?;
            }
        }
    }
    if idx < len && !mapping {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fmt1(f: &str, v: Value) -> Option<String> {
        apply(f, &Value::Tuple(Arc::new(vec![v])))
    }

    #[test]
    fn ints_match_python() {
        let t = Value::Tuple(Arc::new([255, 8, 3, 3, -3, 3].map(Value::Int).to_vec()));
        assert_eq!(
            apply("%#x %#o %+d % d %05d %-05d|", &t).as_deref(),
            Some("0xff 0o10 +3  3 -0003 3    |")
        );
        assert_eq!(fmt1("%+.3d", Value::Int(5)).as_deref(), Some("+005"));
        assert_eq!(fmt1("%#.3x", Value::Int(5)).as_deref(), Some("0x005"));
        assert_eq!(fmt1("%d", Value::Float(3.9)).as_deref(), Some("3"));
        assert_eq!(fmt1("%x", Value::Float(3.0)), None);
        assert_eq!(
            fmt1("%05f", Value::Float(f64::INFINITY)).as_deref(),
            Some("00inf")
        );
        assert_eq!(fmt1("%5.1s|", Value::str("abc")).as_deref(), Some("    a|"));
        assert_eq!(fmt1("%ld", Value::Int(7)).as_deref(), Some("7"));
    }

    #[test]
    fn float_ints_take_the_fast_path_with_the_same_text() {
        // The fast path must print what the BigInt path prints.
        let specs = ["%d", "%03d", "%-5d|", "%+d", "% d", "%.4d", "%+06i", "%u"];
        let values = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            -0.9999,
            1.0,
            999.9999,
            123.456,
            -5.5,
            -123.4,
            1e15,
            -1e15,
            9.223372036854775e18,
            -9.223372036854776e18,
            9.3e18,
            -9.3e18,
            1e300,
            f64::MIN_POSITIVE,
            f64::EPSILON,
        ];
        for f in values {
            let n = BigInt::of_float(f).expect("finite");
            for s in specs {
                let pieces = parse(s).unwrap();
                let Piece::Conv(c) = &pieces[0] else { panic!() };
                let mut fast = String::new();
                format_value(&c.spec, &Value::Float(f), &mut fast).unwrap();
                let mut slow = String::new();
                int_digits(&c.spec, &n, 10, "", &mut slow);
                if s.ends_with('|') {
                    slow.push('|');
                    fast.push('|');
                }
                assert_eq!(fast, slow, "{s} % {f:?}");
            }
        }
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(fmt1("%d", Value::Float(f)), None, "{f}");
        }
        assert_eq!(fmt1("%03d", Value::Float(-0.5)).as_deref(), Some("000"));
        assert_eq!(fmt1("%03d", Value::Float(-5.5)).as_deref(), Some("-05"));
    }

    #[test]
    fn args_rules_match_python() {
        let d = Value::Dict(Arc::new(vec![(Value::str("a"), Value::Int(1))]));
        assert_eq!(apply("%(a)s %%", &d).as_deref(), Some("1 %"));
        assert_eq!(apply("%s", &d).as_deref(), Some("{'a': 1}"));
        assert_eq!(apply("%(a)s %s", &d), None);
        assert_eq!(apply("abc", &Value::Int(5)), None);
        assert_eq!(
            apply("%s %s", &Value::Tuple(Arc::new(vec![Value::Int(1)]))),
            None
        );
    }

    #[test]
    fn parse_errors_have_positions() {
        assert_eq!(parse("ab %(x").unwrap_err().pos, 3);
        let e = parse("%(x)z").unwrap_err();
        assert_eq!(
            (e.pos, e.reason.as_str()),
            (4, "unsupported format character 'z' (0x7a)")
        );
        assert_eq!(parse("abc %").unwrap_err().reason, "incomplete format");
    }
}
