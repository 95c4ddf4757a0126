//! The fast path of the JSON decoder: a flat object of scalars, the shape
//! a LogRecord dict takes as JSON (`json.dumps(record.__dict__)` with
//! `args` formatted in and `exc_info` as text), read in one pass straight
//! into the record's fields.
//!
//! It reads strings, numbers, `true`, `false` and `null` as values, and
//! answers `None` at anything else — an array or object value, a `\u`
//! escape, an integer of more than 18 digits, a number out of range, a
//! repeated key beyond what [`Repeats`] settles, a syntax error — so the
//! caller runs the full decoder (serde_json, [`super::json`]) from the
//! start, which decodes or refuses the frame with its full rules. So this
//! path never decides an error and never accepts what the full decoder
//! would refuse; the differential tests in `json.rs` hold it to the same
//! fields on generated objects and on every byte change of real frames.
//!
//! Like the pickle fast path it takes a [`Keep`]: fields no reader looks
//! at are checked, not kept. Against the serde_json path on the benchmark's
//! frames it takes about a third of the instructions (callgrind).

use bytes::Bytes;

use crate::codec::pair::{common_value, push_pair, Scalar};
use crate::codec::{Keep, Repeats, MAX_VALUES};
use crate::record::{own_name_next, own_name_quoted, Fields, Str};

/// The span [`Reader::value`] gives a string that had escapes: its text,
/// unescaped, is then in [`Reader::escaped`]. No frame reaches 4 GiB.
const ESCAPED: u32 = u32::MAX;

/// Decode `frame` if it is a flat JSON object of scalars, else `None`:
/// the fields `keep` names, and the `own_name` bits of every LogRecord
/// attribute among the keys, kept or not.
pub(super) fn try_decode(frame: &Bytes, keep: Keep) -> Option<(Fields, u32)> {
    // A JSON text is UTF-8 throughout. Outside strings only ASCII tokens
    // are read (any other byte answers None), and a string with a byte
    // above 0x7f is checked on its own where it is found
    // (`Reader::plain_string`): no separate pass over the frame.
    let mut p = Reader {
        b: frame,
        pos: 0,
        escaped: None,
    };
    p.skip_ws();
    p.expect(b'{')?;
    let mut repeats = Repeats::default();
    let mut seen = 0u32;
    let mut fields = crate::record::spare_fields_for(keep.capacity());
    let mut values = 0usize;
    p.skip_ws();
    if p.peek()? == b'}' {
        p.pos += 1;
    } else {
        let mut next = 0;
        loop {
            p.skip_ws();
            // The own name expected next, compared in place; else any key.
            let own = match p.b.get(p.pos + 1..) {
                Some(rest) if p.peek() == Some(b'"') => own_name_quoted(rest, &mut next),
                _ => None,
            };
            let own = match own {
                Some((name, bit, len)) => {
                    p.pos += len + 2;
                    Ok((name, bit))
                }
                None => {
                    let (start, end) = p.plain_string()?;
                    own_name_next(&frame[start..end], &mut next).ok_or((start, end))
                }
            };
            p.skip_ws();
            p.expect(b':')?;
            p.skip_ws();
            values += 1;
            if values > MAX_VALUES {
                return None;
            }
            let key = match own {
                Ok((name, bit)) => {
                    seen |= bit;
                    keep.keeps(bit).then(|| (Str::from_static(name), bit))
                }
                Err((start, end)) if keep.keeps(0) => Some((p.str_at(start, end), 0)),
                Err(_) => None,
            };
            let value = p.value(key.is_some())?;
            if let Some((k, bit)) = key {
                repeats.note(&k, bit, &fields);
                push_pair(&mut fields, k, value, |start, end| {
                    if start == ESCAPED as usize {
                        p.escaped.take().unwrap_or_default()
                    } else {
                        common_value(bit, &frame[start..end])
                            .unwrap_or_else(|| p.str_at(start, end))
                    }
                });
            }
            p.skip_ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.skip_ws();
    if p.pos != frame.len() {
        return None;
    }
    repeats.finish(&mut fields);
    Some((fields, seen))
}

/// Where the first `"`, `\\` or control character of `b` is, and whether
/// a byte above 0x7f comes before it: sixteen bytes at a time with SSE2
/// (part of every x86-64 CPU), the rest by [`special_words`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(super) fn special(b: &[u8]) -> Option<(usize, bool)> {
    // SAFETY: the build's target has SSE2 (the `cfg` above), all that
    // calling a function that enables it requires.
    unsafe { special_sse2(b) }
}

/// [`special`], sixteen bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn special_sse2(b: &[u8]) -> Option<(usize, bool)> {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8};
    let mut high = false;
    let mut i = 0;
    while let Some(block) = b.get(i..i + 16) {
        // SAFETY: `block` is 16 bytes of `b`, exactly what the unaligned
        // load reads (`loadu` has no alignment requirement).
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let flagged = flagged_sse2(v);
        let mask = _mm_movemask_epi8(flagged) as u32;
        let above = _mm_movemask_epi8(v) as u32;
        if mask != 0 {
            let at = mask.trailing_zeros();
            high |= above & ((1 << at) - 1) != 0;
            return Some((i + at as usize, high));
        }
        high |= above != 0;
        i += 16;
    }
    let (at, rest_high) = special_words(b.get(i..)?)?;
    Some((i + at, high || rest_high))
}

/// Whether `b` is ASCII with no `"`, `\\` or control character: a JSON
/// string's text as it is. Sixteen bytes at a time with SSE2, the rest
/// by [`super::json::any_escape_or_high`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(super) fn clean_ascii(b: &[u8]) -> bool {
    // SAFETY: the build's target has SSE2 (the `cfg` above), all that
    // calling a function that enables it requires.
    unsafe { clean_ascii_sse2(b) }
}

/// [`clean_ascii`], sixteen bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn clean_ascii_sse2(b: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
    };
    let mut seen = _mm_setzero_si128();
    let mut i = 0;
    while let Some(block) = b.get(i..i + 16) {
        // SAFETY: `block` is 16 bytes of `b`, exactly what the unaligned
        // load reads (`loadu` has no alignment requirement).
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        // A byte above 0x7f has its top bit set already: the top bits of
        // `seen` collect both.
        seen = _mm_or_si128(seen, _mm_or_si128(flagged_sse2(v), v));
        i += 16;
    }
    _mm_movemask_epi8(seen) == 0 && !b.get(i..).is_some_and(super::json::any_escape_or_high)
}

/// [`clean_ascii`] where SSE2 is not there.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(super) fn clean_ascii(b: &[u8]) -> bool {
    !super::json::any_escape_or_high(b)
}

/// The bytes of `v` that are `"`, `\\` or a control character, as 0xff
/// (the others 0).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn flagged_sse2(v: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8};
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let control = _mm_set1_epi8(0x1f);
    // A control character is a byte whose unsigned minimum with 0x1f is
    // itself.
    _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
        _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
    )
}

/// [`special`] where SSE2 is not there.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(super) fn special(b: &[u8]) -> Option<(usize, bool)> {
    special_words(b)
}

/// [`special`] eight bytes at a time (the lowest flagged byte of a word is
/// exact), the last few byte by byte.
#[inline]
fn special_words(b: &[u8]) -> Option<(usize, bool)> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        let mask = super::json::escape_mask(w);
        if mask != 0 {
            // The flagged byte's high bit is bit 8k+7: bytes 0..k precede it.
            let before = (1u64 << (mask.trailing_zeros() - 7)) - 1;
            high |= w & HIGH & before;
            return Some((i + (mask.trailing_zeros() / 8) as usize, high != 0));
        }
        high |= w & HIGH;
        i += 8;
    }
    for (at, &c) in b.get(i..)?.iter().enumerate() {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some((i + at, high != 0));
        }
        high |= u64::from(c & 0x80);
    }
    None
}

/// A cursor over the frame.
struct Reader<'f> {
    b: &'f Bytes,
    pos: usize,
    /// The last string value that had escapes, unescaped.
    escaped: Option<Str>,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The frame's bytes `start..end` as a string, borrowed.
    fn str_at(&self, start: usize, end: usize) -> Str {
        let slice = self.b.slice(start..end);
        // SAFETY: every caller passes the span of a string that
        // `plain_string` found: all ASCII, or checked with `from_utf8`
        // there, so the bytes are UTF-8, all that `from_bytes_unchecked`
        // requires.
        unsafe { Str::from_bytes_unchecked(slice) }
    }

    /// A string with no escape (the cursor at its opening quote): its
    /// span, UTF-8, the cursor past its closing quote. `None` for an
    /// escape, a raw control character (which JSON forbids) or bytes that
    /// are not UTF-8.
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.pos;
        let (len, high) = special(self.b.get(start..)?)?;
        let end = start + len;
        if self.b[end] != b'"' || (high && std::str::from_utf8(&self.b[start..end]).is_err()) {
            return None;
        }
        self.pos = end + 1;
        Some((start, end))
    }

    /// A string value, the cursor at its opening quote: borrowed when it
    /// holds no escape, else unescaped into a new string (`\u` escapes go
    /// to the full decoder, which knows surrogates).
    fn string_value(&mut self) -> Option<Scalar> {
        let open = self.pos;
        if let Some((start, end)) = self.plain_string() {
            return Some(Scalar::Str(start as u32, end as u32));
        }
        self.pos = open + 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let rest = self.b.get(self.pos..)?;
            let (len, _) = special(rest)?;
            out.extend_from_slice(&rest[..len]);
            self.pos += len;
            match self.next()? {
                b'"' => break,
                b'\\' => out.push(match self.next()? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                }),
                _ => return None,
            }
        }
        // Escapes add only ASCII to UTF-8 text: still UTF-8.
        self.escaped = Some(Str::from(String::from_utf8(out).ok()?));
        Some(Scalar::Str(ESCAPED, 0))
    }

    /// A scalar value, the cursor at its first byte. One nobody `kept`
    /// is checked as one that is, but a number may not be computed.
    fn value(&mut self, kept: bool) -> Option<Scalar> {
        Some(match self.peek()? {
            b'"' => self.string_value()?,
            b'n' => self.word(b"null", Scalar::None)?,
            b't' => self.word(b"true", Scalar::Bool(true))?,
            b'f' => self.word(b"false", Scalar::Bool(false))?,
            b'-' | b'0'..=b'9' => self.number(kept)?,
            _ => return None,
        })
    }

    fn word(&mut self, w: &[u8], v: Scalar) -> Option<Scalar> {
        let end = self.pos + w.len();
        (self.b.get(self.pos..end)? == w).then(|| {
            self.pos = end;
            v
        })
    }

    /// A JSON number: an integer of at most 18 digits as `Int`, anything
    /// with a fraction or an exponent as a finite `Float`. A float that
    /// is not `kept` and cannot be out of range (no exponent, fewer than
    /// 300 integer digits) is checked, not computed.
    fn number(&mut self, kept: bool) -> Option<Scalar> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let digits = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let int_len = self.pos - digits;
        // JSON: at least one digit, and no leading zero.
        if int_len == 0 || (int_len > 1 && self.b[digits] == b'0') {
            return None;
        }
        let mut float = false;
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == frac {
                return None;
            }
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let exp = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == exp {
                return None;
            }
            float = true;
            exponent = true;
        }
        if float && !kept && !exponent && int_len < 300 {
            return Some(Scalar::None);
        }
        let text = &self.b[start..self.pos];
        if float {
            // ASCII digits and signs: UTF-8. Rust's parse rounds correctly,
            // as serde_json does with `float_roundtrip`.
            let f: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
            return f.is_finite().then_some(Scalar::Float(f));
        }
        // "-0" is a float to serde_json (-0.0); leave it to it.
        if int_len > 18 || (neg && int_len == 1 && self.b[digits] == b'0') {
            return None;
        }
        let v = self.b[digits..self.pos]
            .iter()
            .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
        Some(Scalar::Int(if neg { -v } else { v }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Where the fast path answers, it gives what serde_json's path gives:
    /// the same sent fields, and defaults for the same missing attributes;
    /// and leaving fields out changes neither whether it answers nor the
    /// fields it keeps. Returns whether it answered.
    fn agree(frame: &[u8]) -> bool {
        let frame = Bytes::copy_from_slice(frame);
        let fast = try_decode(&frame, Keep::ALL);
        for keep in [
            Keep::NONE,
            Keep::fields(["msg", "created", "levelname", "name"]),
            Keep::fields(["process", "request_id"]),
        ] {
            let some = try_decode(&frame, keep);
            let expected = fast.clone().map(|(mut fields, seen)| {
                fields.retain(|(k, _)| keep.keeps_name(k));
                (fields, seen)
            });
            assert_eq!(
                some,
                expected,
                "keep {keep:?}: {:?}",
                String::from_utf8_lossy(&frame)
            );
        }
        let Some((fields, seen)) = fast else {
            return false;
        };
        let (full, defaulted) = super::super::json::decode_full(&frame).unwrap_or_else(|e| {
            panic!("fast path accepted what serde_json refuses ({e}): {frame:?}")
        });
        let sent = full.len() - defaulted.count_ones() as usize;
        assert_eq!(
            fields[..],
            full[..sent],
            "{:?}",
            String::from_utf8_lossy(&frame)
        );
        assert_eq!(
            crate::codec::defaults::fill_known(Vec::new(), seen).1,
            defaulted
        );
        true
    }

    /// A LogRecord as Python's `json.dumps(record.__dict__)` writes it.
    const RECORD: &str = r#"{"name": "app.web.views", "msg": "rid=1 \"quoted\" GET /api/v1/search/31164 status=404\nline two", "args": null, "levelname": "INFO", "levelno": 20, "pathname": "/srv/app/app/web/views.py", "filename": "views.py", "module": "views", "exc_info": null, "exc_text": null, "stack_info": null, "lineno": 342, "funcName": "run_job", "created": 1796647372.6339827, "msecs": 633.0, "relativeCreated": 3600000.0, "thread": 139796333091712, "threadName": "ThreadPoolExecutor-0_3", "processName": "MainProcess", "process": 15159, "taskName": null, "user": "u1", "ok": true, "ratio": -1.5e-7}"#;

    #[test]
    fn a_logrecord_takes_the_fast_path_and_agrees() {
        assert!(agree(RECORD.as_bytes()));
        for doc in [
            "{}",
            " { } ",
            r#"{"a":1,"a":2}"#,
            r#"{"msg":"a","created":1.0,"x":1,"msg":"b","levelno":10,"x":2}"#,
            r#"{"x": -12, "y": 0, "z": 123456789012345678, "w": 0.5e-3, "v": 1E+2}"#,
            r#"{"s": "tab\tand\/slash\\\b\f\r", "t": "é€😀"}"#,
        ] {
            assert!(agree(doc.as_bytes()), "{doc}");
        }
        // What the fast path leaves to serde_json (which decodes or
        // refuses it): each still agrees, because the fast path says None.
        for doc in [
            r#"{"a":[1]}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":-0}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":1e400}"#,
            r#"{"a\"b":1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"x"} x"#,
            "{\"a\":\"\x01\"}",
            r#"{"a":1,}"#,
            r#"[1]"#,
        ] {
            assert!(!agree(doc.as_bytes()), "{doc}");
        }
    }

    #[test]
    fn every_prefix_and_byte_change_of_a_record_agrees() {
        let doc = RECORD.as_bytes();
        for end in 0..doc.len() {
            agree(&doc[..end]);
        }
        for i in 0..doc.len() {
            for delta in [1u8, 0x80, 0xff, 0x20, 0x0d] {
                let mut m = doc.to_vec();
                m[i] = m[i].wrapping_add(delta);
                agree(&m);
            }
        }
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|u| u.to_string()),
            (-1000i64..1000).prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap()),
            "-?[0-9]{1,3}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            Just("[1, 2]".to_string()),
            "[ -~\\x00-\\x1fé€😀]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            "[a-z\\\\\"/]{0,10}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    proptest! {
        /// The word-at-a-time search finds the first special byte, wherever
        /// it falls and whatever follows it.
        #[test]
        fn special_finds_the_first_special_byte(b in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(b'a'), Just(b'a'), Just(b'a')], 0..70)
        ) {
            let want = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            let high = |at: usize| b[..at].iter().any(|&c| c >= 0x80);
            prop_assert_eq!(special(&b), want.map(|at| (at, high(at))));
            prop_assert_eq!(special_words(&b), want.map(|at| (at, high(at))));
        }

        /// A clean string is ASCII with nothing to escape, at any length
        /// and with the odd byte anywhere.
        #[test]
        fn clean_ascii_is_printable_ascii_but_quote_and_backslash(b in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, 0x20u8..0x7f, 0x20u8..0x7f, 0x20u8..0x7f], 0..70)
        ) {
            let want = b.iter().all(|&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\');
            prop_assert_eq!(clean_ascii(&b), want);
            prop_assert_eq!(!super::super::json::any_escape_or_high(&b), want);
        }

        /// Generated flat objects (LogRecord names and others, repeated
        /// keys, every kind of number and string, odd whitespace).
        #[test]
        fn generated_objects_agree(
            pairs in proptest::collection::vec(
                (prop_oneof![
                    Just("msg"), Just("name"), Just("created"), Just("levelno"),
                    Just("process"), Just("x"), Just("request_id"), Just("é")
                ], scalar(), "[ \t\r\n]{0,2}"),
                0..12,
            )
        ) {
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            agree(format!("{{{}}}", body.join(",")).as_bytes());
        }
    }
}
