//! Python's `repr()`, `str()` and `ascii()` of decoded values, byte for
//! byte as CPython 3.11 prints them: `%(x)r` in a format, the json encoder's
//! bytes strings and the placeholder texts all go through here.

use std::fmt::Write as _;

use super::numfmt;
use super::printable::NON_PRINTABLE;
use crate::record::Value;

/// Containers nested deeper than this print as `...`, so a hostile value
/// cannot overflow the stack (CPython would raise RecursionError).
const MAX_DEPTH: usize = 200;

/// Append Python's `repr(v)`.
pub fn repr(v: &Value, out: &mut String) {
    repr_at(v, out, 0);
}

/// Append Python's `str(v)`: the text of a `str`, `repr` for everything
/// else except objects, which carry their own `str`.
pub fn str(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => out.push_str(s),
        Value::Object(o) => out.push_str(&o.str),
        other => repr(other, out),
    }
}

/// Append Python's `ascii(v)`: `repr(v)` with every non-ASCII character
/// escaped as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub fn ascii(v: &Value, out: &mut String) {
    let mut r = String::new();
    repr(v, &mut r);
    ascii_escape(&r, out);
}

/// Escape the non-ASCII characters of `s` as `ascii()` does.
pub fn ascii_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            push_escape(c as u32, out);
        }
    }
}

fn repr_at(v: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::BigInt(s) => out.push_str(s),
        Value::Float(f) => float_repr(*f, out),
        Value::Str(s) => str_repr(s, out),
        Value::Bytes(b) => bytes_repr(b, out),
        Value::List(items) => seq(items, "[", "]", out, depth),
        Value::Tuple(items) if items.len() == 1 => {
            out.push('(');
            repr_at(&items[0], out, depth + 1);
            out.push_str(",)");
        }
        Value::Tuple(items) => seq(items, "(", ")", out, depth),
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => seq(items, "{", "}", out, depth),
        Value::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
        Value::FrozenSet(items) => seq(items, "frozenset({", "})", out, depth),
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_at(k, out, depth + 1);
                out.push_str(": ");
                repr_at(v, out, depth + 1);
            }
            out.push('}');
        }
        Value::Object(o) => out.push_str(&o.repr),
    }
}

fn seq(items: &[Value], open: &str, close: &str, out: &mut String, depth: usize) {
    out.push_str(open);
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr_at(v, out, depth + 1);
    }
    out.push_str(close);
}

/// Append Python's `repr(f)` of a float: the shortest string that round
/// trips, fixed notation for exponents -4..16, else `1e+16` style.
pub fn float_repr(f: f64, out: &mut String) {
    numfmt::repr(f, out);
}

/// Whether Python's `str.isprintable()` holds for this character.
pub fn is_printable(c: char) -> bool {
    let cp = c as u32;
    if (0x20..0x7f).contains(&cp) {
        return true;
    }
    if cp < 0xa0 {
        return false;
    }
    NON_PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

/// Append Python's `repr()` of a `str`: single quotes unless the text holds
/// a `'` and no `"`; `\\`, the quote, `\t\n\r` escaped; other
/// non-printable characters as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.reserve(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => push_escape(c as u32, out),
        }
    }
    out.push(quote);
}

fn push_escape(cp: u32, out: &mut String) {
    if cp <= 0xff {
        let _ = write!(out, "\\x{cp:02x}");
    } else if cp <= 0xffff {
        let _ = write!(out, "\\u{cp:04x}");
    } else {
        let _ = write!(out, "\\U{cp:08x}");
    }
}

/// Append Python's `repr()` of a `bytes` object: `b'...'` with the quote
/// Python picks, `\t\n\r\\` escaped and other non-printable bytes as `\xNN`.
pub fn bytes_repr(b: &[u8], out: &mut String) {
    quoted_bytes(b, false, out);
}

/// Append Python's `repr()` (and `str()`) of a `bytearray`:
/// `bytearray(b'...')`, escaped as bytes are, except that CPython's
/// bytearray repr escapes `'` even between double quotes
/// (`bytearray(b"x\'")`, where bytes print `b"x'"`).
pub fn bytearray_repr(b: &[u8], out: &mut String) {
    out.push_str("bytearray(");
    quoted_bytes(b, true, out);
    out.push(')');
}

/// `b'...'` as `bytes_repr`; `escape_single` escapes every `'`.
fn quoted_bytes(b: &[u8], escape_single: bool, out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            c if c == quote as u8 || (escape_single && c == b'\'') => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 15)] as char);
            }
        }
    }
    out.push(quote);
}

/// Python truthiness (`bool(v)`), as `if record.args:` tests it.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::BigInt(_) => true,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => !v.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn r(v: &Value) -> String {
        let mut s = String::new();
        repr(v, &mut s);
        s
    }

    #[test]
    fn bytes_repr_matches_python() {
        let mut s = String::new();
        bytes_repr(b"a'\x00\xff\n", &mut s);
        assert_eq!(s, r#"b"a'\x00\xff\n""#);
        s.clear();
        bytes_repr(b"a'\"", &mut s);
        assert_eq!(s, r#"b'a\'"'"#);
    }

    #[test]
    fn bytearray_repr_escapes_every_single_quote_as_python() {
        let cases: [(&[u8], &str); 4] = [
            (b"x'", r#"bytearray(b"x\'")"#),
            (b"x\"", r#"bytearray(b'x"')"#),
            (b"x'\"", r#"bytearray(b'x\'"')"#),
            (b"\\\t\n\r\x7f\x80 a", r#"bytearray(b'\\\t\n\r\x7f\x80 a')"#),
        ];
        for (b, want) in cases {
            let mut s = String::new();
            bytearray_repr(b, &mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn str_repr_matches_python() {
        // Python: repr('é\x00\u200b😀') == "'é\\x00\\u200b😀'"
        assert_eq!(r(&Value::str("é\x00\u{200b}😀")), "'é\\x00\\u200b😀'");
        assert_eq!(r(&Value::str("it's")), "\"it's\"");
        assert_eq!(r(&Value::str("'\"")), "'\\'\"'");
        assert_eq!(
            r(&Value::str("\u{85}\u{a0}\u{e000}")),
            "'\\x85\\xa0\\ue000'"
        );
        let mut s = String::new();
        ascii(&Value::str("é😀"), &mut s);
        assert_eq!(s, "'\\xe9\\U0001f600'");
    }

    #[test]
    fn containers_match_python() {
        let one = Value::Tuple(Arc::new(vec![Value::Int(1)]));
        assert_eq!(r(&one), "(1,)");
        assert_eq!(r(&Value::Set(Arc::new(vec![]))), "set()");
        assert_eq!(
            r(&Value::FrozenSet(Arc::new(vec![Value::None]))),
            "frozenset({None})"
        );
        let d = Value::Dict(Arc::new(vec![(Value::str("a"), Value::Float(1.0))]));
        assert_eq!(r(&d), "{'a': 1.0}");
        assert_eq!(
            r(&Value::List(Arc::new(vec![Value::Bool(true), one]))),
            "[True, (1,)]"
        );
    }
}
