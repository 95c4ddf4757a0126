//! A plain `makePickle` frame written as a JSON object straight from its
//! bytes, for `encoding: json` outputs and JSON forward encoders.
//!
//! Decoding all 22 fields of a record into a field list, then encoding
//! them, made JSON lines out cost about twice a text template (which
//! decodes only the fields it names): every field was built, read once
//! and dropped. A record that still has its frame ([`Record::frame`]:
//! plain `makePickle` output, nothing changed it) holds everything the
//! JSON needs in the frame, so [`write_json`] reads the pairs the way the
//! pair loop ([`super::pairs`]) does and writes each as it goes.
//!
//! The bytes are exactly those of decoding the frame and writing its
//! fields ([`json::write_fields`]): the same key order, numbers, floats
//! and string escapes. A frame that repeats a key (the decoder keeps the
//! first position with the last value), holds an integer the pair loop
//! does not read, or is not the pair loop's shape is decoded and written
//! the long way instead; `tests.rs` holds the two ways to the same bytes
//! on every fixture, real frame and mutation.
//!
//! [`Record::frame`]: crate::record::Record::frame

use bytes::Bytes;

use super::machine::{BINPUT, BINUNICODE, EMPTY_DICT, INT, LONG, MARK, SETITEMS, STOP};
use super::pairs::{past_put, string, value};
use crate::codec::pair::Scalar;
use crate::codec::{append, json, Keep};
use crate::record::own_name_next;

/// Non-LogRecord keys a frame may hold before the repeat check gives up
/// and the frame takes the long way (each key is compared with those
/// before it).
const MAX_OTHER_KEYS: usize = 8;

/// Each of LogRecord's own names ([`OWN_NAMES`](crate::record::OWN_NAMES), by bit) as a JSON key
/// with its colon.
const QUOTED: [&str; 23] = [
    "\"name\":",
    "\"msg\":",
    "\"args\":",
    "\"levelname\":",
    "\"levelno\":",
    "\"pathname\":",
    "\"filename\":",
    "\"module\":",
    "\"exc_info\":",
    "\"exc_text\":",
    "\"stack_info\":",
    "\"lineno\":",
    "\"funcName\":",
    "\"created\":",
    "\"msecs\":",
    "\"relativeCreated\":",
    "\"thread\":",
    "\"threadName\":",
    "\"processName\":",
    "\"process\":",
    "\"taskName\":",
    "\"message\":",
    "\"asctime\":",
];

/// Append the JSON object of `frame`'s dict (no newline): what
/// `json::write_fields(&decode(frame)?, out)` appends. Each string is
/// checked as it is copied (the decoder does not look at them for this
/// reader, [`Keep::RAW_FRAME`]); one that is not UTF-8 (a lone surrogate,
/// which the decoder replaces) sends the frame the long way. A frame
/// that does not decode appends `{}`.
pub fn write_json(frame: &Bytes, out: &mut Vec<u8>) {
    let start = out.len();
    if transcode(frame, out).is_some() {
        return;
    }
    out.truncate(start);
    match super::decode_keeping(frame, Keep::ALL) {
        Ok(fields) => json::write_fields(&fields, out),
        Err(_) => out.extend_from_slice(b"{}"),
    }
}

/// The fast way, or `None` (with part of the object appended) for
/// anything it does not read.
fn transcode(frame: &Bytes, out: &mut Vec<u8>) -> Option<()> {
    let b: &[u8] = frame;
    let mut pos = match b {
        [EMPTY_DICT, BINPUT, _, MARK, ..] => 4,
        [EMPTY_DICT, MARK, ..] => 2,
        _ => return None,
    };
    // The keys seen: LogRecord's by bit, the others by span.
    let mut own = 0u32;
    let mut others = [(0usize, 0usize); MAX_OTHER_KEYS];
    let mut n_others = 0;
    let mut next = 0;
    out.reserve(b.len() + b.len() / 4);
    // Before each pair: `{` for the first, `,` after.
    let mut sep = b'{';
    loop {
        let (start, end) = match *b.get(pos)? {
            BINUNICODE => string(b, pos + 1)?,
            SETITEMS if b.get(pos + 1) == Some(&STOP) => {
                if sep == b'{' {
                    out.push(b'{');
                }
                out.push(b'}');
                return Some(());
            }
            _ => return None,
        };
        pos = past_put(b, end)?;
        let key = &b[start..end];
        match own_name_next(key, &mut next) {
            Some((_, bit)) => {
                if own & bit != 0 {
                    return None;
                }
                own |= bit;
                // An own name is a plain identifier: nothing to escape.
                out.push(sep);
                append(out, QUOTED[bit.trailing_zeros() as usize].as_bytes());
            }
            None => {
                if n_others == MAX_OTHER_KEYS
                    || others[..n_others].iter().any(|&(s, e)| &b[s..e] == key)
                {
                    return None;
                }
                others[n_others] = (start, end);
                n_others += 1;
                out.push(sep);
                json::write_checked(key, out)?;
                out.push(b':');
            }
        }
        sep = b',';
        if let op @ (INT | LONG) = *b.get(pos)? {
            // Protocol 1's decimal ints (a thread id): a plain one is
            // written as it is, the digits the decoder would read and
            // `itoa` write back.
            let arg = pos + 1;
            let nl = b.get(arg..)?.iter().position(|&c| c == b'\n')?;
            let mut text = &b[arg..arg + nl];
            pos = arg + nl + 1;
            match (op, text) {
                (INT, b"00") => append(out, b"false"),
                (INT, b"01") => append(out, b"true"),
                _ => {
                    if op == LONG {
                        text = text.strip_suffix(b"L").unwrap_or(text);
                    }
                    append(out, plain_int_text(text)?);
                }
            }
            continue;
        }
        let (v, next_pos) = value(b, pos)?;
        pos = next_pos;
        match v {
            Scalar::None => append(out, b"null"),
            Scalar::Bool(true) => append(out, b"true"),
            Scalar::Bool(false) => append(out, b"false"),
            Scalar::Int(i) => append(out, itoa::Buffer::new().format(i).as_bytes()),
            Scalar::Float(f) if f.is_finite() => json::write_float(f, out),
            Scalar::Float(_) => append(out, b"null"),
            Scalar::Str(s, e) => json::write_checked(&b[s as usize..e as usize], out)?,
        }
    }
}

/// `t` if it is an int [`plain_int`](super::fast::plain_int) reads (an
/// optional `-`, 1 to 18 digits, no leading zero) written as `itoa`
/// writes it back (not `-0`).
fn plain_int_text(t: &[u8]) -> Option<&[u8]> {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    let ok = (1..=18).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || t == b"0");
    ok.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::OWN_NAMES;

    /// A protocol 1 dict as `makePickle` writes it: each key a
    /// `BINUNICODE` with its `BINPUT`, then the value's opcodes as given.
    fn dict(pairs: &[(&str, &[u8])]) -> Bytes {
        let mut p = b"}q\x00(".to_vec();
        for (memo, (k, v)) in (1u8..).zip(pairs) {
            p.push(b'X');
            p.extend_from_slice(&(k.len() as u32).to_le_bytes());
            p.extend_from_slice(k.as_bytes());
            p.extend_from_slice(&[b'q', memo]);
            p.extend_from_slice(v);
        }
        p.extend_from_slice(b"u.");
        Bytes::from(p)
    }

    fn unicode(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn float(f: f64) -> Vec<u8> {
        let mut v = vec![b'G'];
        v.extend_from_slice(&f.to_be_bytes());
        v
    }

    /// The JSON written from the frame and the JSON of its decoded
    /// fields, and whether the frame is one a record keeps for a pickle
    /// encoder (strings checked).
    fn both(frame: &Bytes) -> (String, String, bool) {
        let (mut direct, mut via) = (Vec::new(), Vec::new());
        write_json(frame, &mut direct);
        let fields = super::super::decode(frame).expect("decodes");
        json::write_fields(&fields, &mut via);
        let plain = super::super::decode_plain(frame, Keep::FRAME)
            .expect("decodes")
            .1;
        (
            String::from_utf8(direct).expect("UTF-8"),
            String::from_utf8(via).expect("UTF-8"),
            plain,
        )
    }

    #[test]
    fn every_value_a_record_holds_is_written_as_its_field_would_be() {
        let s = unicode("a \"quoted\"\\ tab\t nl\n bell\x07 é ✓ 𝄞");
        let values: Vec<(&str, Vec<u8>)> = vec![
            ("none", b"N".to_vec()),
            ("true", b"I01\n".to_vec()),
            ("false", b"I00\n".to_vec()),
            ("newtrue", b"\x88".to_vec()),
            ("newfalse", b"\x89".to_vec()),
            ("int1", b"K\x07".to_vec()),
            ("int2", b"M\x34\x12".to_vec()),
            ("int4", b"J\xfe\xff\xff\xff".to_vec()),
            ("int_text", b"I140275595017088\n".to_vec()),
            ("neg_text", b"I-42\n".to_vec()),
            ("zero_text", b"I0\n".to_vec()),
            ("neg_zero", b"I-0\n".to_vec()),
            ("long", b"L123456789012345678L\n".to_vec()),
            ("big", b"L1234567890123456789012L\n".to_vec()),
            ("padded", b"I007\n".to_vec()),
            ("f_whole", float(5.0)),
            ("f_neg_zero", float(-0.0)),
            ("f_frac", float(1796668663.0052168)),
            ("f_big", float(1e16)),
            ("f_tiny", float(1.5e-7)),
            ("f_nan", float(f64::NAN)),
            ("f_inf", float(f64::NEG_INFINITY)),
            ("str", s.clone()),
            // A lone surrogate, as Python pickles it (`surrogatepass`).
            ("surrogate", b"X\x05\x00\x00\x00a\xed\xa0\x80b".to_vec()),
            ("latin", b"X\x02\x00\x00\x00\xff\xfe".to_vec()),
            ("empty", unicode("")),
        ];
        let mut all = Vec::new();
        for (k, v) in &values {
            all.push((*k, v.as_slice()));
            // Each value alone, after own names and under an own name.
            for frame in [
                dict(&[(k, v)]),
                dict(&[("name", &unicode("app")), ("msg", v), (k, v)]),
            ] {
                let (direct, via, plain) = both(&frame);
                // Ints the pair loop does not read take the long way (and
                // a record of them keeps no frame).
                assert_eq!(
                    plain,
                    !matches!(*k, "big" | "padded" | "surrogate" | "latin"),
                    "{k}"
                );
                // A JSON writer's record keeps the frame whatever its
                // strings hold.
                let raw = super::super::decode_plain(&frame, Keep::RAW_FRAME).expect("decodes");
                assert_eq!(raw.1, !matches!(*k, "big" | "padded"), "{k}");
                assert_eq!(direct, via, "{k}");
            }
        }
        // Every key that is not LogRecord's, up to the repeat check's
        // limit and past it.
        let frame = dict(&all);
        let (direct, via, _) = both(&frame);
        assert_eq!(direct, via);
        assert!(direct.contains(r#""neg_zero":0,"#), "{direct}");
        assert!(direct.contains(r#""f_nan":null"#), "{direct}");
        // An empty dict, and a key with characters to escape.
        for frame in [dict(&[]), dict(&[("k\"ey\n", b"N")])] {
            let (direct, via, _) = both(&frame);
            assert_eq!(direct, via);
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        let (a, b) = (unicode("first"), unicode("last"));
        for frame in [
            dict(&[("name", &a), ("msg", &a), ("name", &b)]),
            dict(&[("x", &a), ("msg", &a), ("x", &b)]),
        ] {
            let (direct, via, plain) = both(&frame);
            assert!(plain);
            assert_eq!(direct, via);
            assert!(direct.ends_with(r#""msg":"first"}"#), "{direct}");
        }
    }

    #[test]
    fn quoted_names_are_the_own_names() {
        for (quoted, name) in QUOTED.iter().zip(OWN_NAMES) {
            assert_eq!(*quoted, format!("\"{name}\":"));
        }
    }
}
