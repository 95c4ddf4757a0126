//! Python's `repr()` and `str()` of decoded values.

/// Append Python's `repr()` of a `bytes` object: `b'...'` with the quote
/// Python picks, `\t\n\r\\` escaped and other non-printable bytes as `\xNN`.
pub fn bytes_repr(b: &[u8], out: &mut String) {
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
            c if c == quote as u8 => {
                out.push('\\');
                out.push(quote);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_repr_matches_python() {
        let mut s = String::new();
        bytes_repr(b"a'\x00\xff\n", &mut s);
        assert_eq!(s, r#"b"a'\x00\xff\n""#);
        s.clear();
        bytes_repr(b"a'\"", &mut s);
        assert_eq!(s, r#"b'a\'"'"#);
    }
}
