//! `{`-style formats (`StrFormatStyle`): `fmt.format(**record.__dict__)`,
//! with `!r`/`!s`/`!a`, `[index]` lookups and the format-spec mini-language
//! of `str`, `int`, `bool` and `float`.

use super::numfmt::{self, BigInt};
use super::printf::Mismatch;
use std::borrow::Cow;

use super::{pyrepr, Attr, Ctx, FormatError, Resolved, Warnings};
use crate::record::Value;

/// A `[key]` lookup after the field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Index {
    Int(usize),
    Key(String),
}

/// A parsed format spec (`[[fill]align][sign][#][0][width][,_][.prec][type]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FSpec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alt: bool,
    zero: bool,
    width: usize,
    group: Option<char>,
    prec: Option<usize>,
    ty: Option<char>,
    empty: bool,
}

/// One piece of a compiled `{` format.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    Lit(String),
    Field {
        attr: Attr,
        index: Vec<Index>,
        conv: Option<char>,
        spec: FSpec,
    },
}

impl Piece {
    /// The attribute a placeholder names; `None` for literal text.
    pub(crate) fn attr(&self) -> Option<&Attr> {
        match self {
            Piece::Field { attr, .. } => Some(attr),
            Piece::Lit(_) => None,
        }
    }
}

/// Parse a `{` format as `str.format` does, and refuse what Python's
/// `StrFormatStyle.validate` refuses or what fails on every record
/// (positional fields). Attribute access (`{x.y}`) and nested fields in
/// specs (`{x:{w}}`) are refused too: logrelay does not evaluate them.
pub(crate) fn compile(f: &str) -> Result<Vec<Piece>, FormatError> {
    let c: Vec<char> = f.chars().collect();
    let err = |pos: usize, r: &str| FormatError::new(f, pos, r);
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '}' => {
                if c.get(i + 1) == Some(&'}') {
                    lit.push('}');
                    i += 2;
                    continue;
                }
                return Err(err(i, "Single '}' encountered in format string"));
            }
            '{' => {
                if c.get(i + 1) == Some(&'{') {
                    lit.push('{');
                    i += 2;
                    continue;
                }
                let start = i;
                let mut depth = 1;
                let mut j = i + 1;
                while j < c.len() {
                    match c[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= c.len() {
                    let what = if i + 1 == c.len() {
                        "Single '{' encountered in format string"
                    } else {
                        "expected '}' before end of string"
                    };
                    return Err(err(start, what));
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(field(&c[i + 1..j], start, f)?);
                i = j + 1;
            }
            ch => {
                lit.push(ch);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Field { .. })) {
        return Err(FormatError::new(f, 0, "invalid format: no fields"));
    }
    Ok(pieces)
}

fn is_word(ch: char) -> bool {
    ch == '_' || ch.is_alphanumeric()
}

/// Parse the inside of one `{...}` (`parse_field` in CPython).
fn field(c: &[char], pos: usize, f: &str) -> Result<Piece, FormatError> {
    let err = |r: String| FormatError::new(f, pos, r);
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '[' => {
                while i < c.len() && c[i] != ']' {
                    i += 1;
                }
            }
            '{' => return Err(err("unexpected '{' in field name".into())),
            ':' | '!' => break,
            _ => {}
        }
        i += 1;
    }
    let name_end = i.min(c.len());
    let name: String = c[..name_end].iter().collect();
    let mut conv = None;
    let mut spec_chars: &[char] = &[];
    if i < c.len() {
        if c[i] == '!' {
            let Some(&cv) = c.get(i + 1) else {
                return Err(err(
                    "end of string while looking for conversion specifier".into()
                ));
            };
            conv = Some(cv);
            match c.get(i + 2) {
                None => {}
                Some(':') => spec_chars = &c[i + 3..],
                Some(_) => return Err(err("expected ':' after conversion specifier".into())),
            }
        } else {
            spec_chars = &c[i + 1..];
        }
    }
    if let Some(cv) = conv {
        if !"rsa".contains(cv) {
            return Err(err(format!("invalid conversion: {cv:?}")));
        }
    }
    // field_spec = ^(\d+|\w+)(\.\w+|\[[^]]+\])*$
    let head_end = name.find(['.', '[']).unwrap_or(name.len());
    let head = &name[..head_end];
    if head.is_empty() || !head.chars().all(is_word) {
        return Err(err(format!("invalid field name/expression: {name:?}")));
    }
    if head.chars().all(|ch| ch.is_ascii_digit()) {
        return Err(err(format!(
            "positional field {{{head}}}: the record is passed by keyword (IndexError)"
        )));
    }
    let mut index = Vec::new();
    let mut rest = &name[head_end..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']').filter(|&n| n > 0) else {
                return Err(err(format!("invalid field name/expression: {name:?}")));
            };
            let key = &r[..close];
            index.push(match key.parse::<usize>() {
                Ok(n) if key.bytes().all(|b| b.is_ascii_digit()) => Index::Int(n),
                _ => Index::Key(key.to_string()),
            });
            rest = &r[close + 1..];
        } else {
            return Err(err(format!(
                "attribute access in {name:?} is not supported by logrelay"
            )));
        }
    }
    if spec_chars.contains(&'{') {
        return Err(err(
            "nested fields in a format spec are not supported by logrelay".into(),
        ));
    }
    let spec_str: String = spec_chars.iter().collect();
    let spec = parse_spec(&spec_str).ok_or_else(|| err(format!("bad specifier: {spec_str:?}")))?;
    Ok(Piece::Field {
        attr: Attr::of(head),
        index,
        conv,
        spec,
    })
}

/// Parse a spec the way `StrFormatStyle.fmt_spec` accepts it:
/// `^(.?[<>=^])?[+ -]?#?0?(\d+)?[,_]?(\.(\d+))?[bcdefgnosx%]?$` (any case;
/// the upper-case forms no type accepts are refused here).
fn parse_spec(s: &str) -> Option<FSpec> {
    let c: Vec<char> = s.chars().collect();
    let mut sp = FSpec {
        empty: c.is_empty(),
        ..FSpec::default()
    };
    let mut i = 0;
    let is_align = |ch: char| "<>=^".contains(ch);
    if c.len() >= 2 && is_align(c[1]) {
        sp.fill = Some(c[0]);
        sp.align = Some(c[1]);
        i = 2;
    } else if c.first().is_some_and(|&ch| is_align(ch)) {
        sp.align = Some(c[0]);
        i = 1;
    }
    if let Some(&ch @ ('+' | '-' | ' ')) = c.get(i) {
        sp.sign = Some(ch);
        i += 1;
    }
    if c.get(i) == Some(&'#') {
        sp.alt = true;
        i += 1;
    }
    if c.get(i) == Some(&'0') {
        sp.zero = true;
        i += 1;
    }
    let digits = |i: &mut usize| -> Option<Option<usize>> {
        let s = *i;
        while c.get(*i).is_some_and(|ch| ch.is_ascii_digit()) {
            *i += 1;
        }
        if *i == s {
            return Some(None);
        }
        let n: usize = c[s..*i].iter().collect::<String>().parse().ok()?;
        (n <= super::printf::MAX_COUNT).then_some(Some(n))
    };
    sp.width = digits(&mut i)?.unwrap_or(0);
    if let Some(&g @ (',' | '_')) = c.get(i) {
        sp.group = Some(g);
        i += 1;
    }
    if c.get(i) == Some(&'.') {
        i += 1;
        sp.prec = Some(digits(&mut i)??);
    }
    if let Some(&t) = c.get(i) {
        if !"bcdeEfFgGnosxX%".contains(t) {
            return None;
        }
        sp.ty = Some(t);
        i += 1;
    }
    (i == c.len()).then_some(sp)
}

/// Render a compiled `{` format for one record.
pub(crate) fn render(pieces: &[Piece], ctx: &Ctx<'_>, out: &mut String, warn: &mut Warnings) {
    for p in pieces {
        let (attr, index, conv, spec) = match p {
            Piece::Lit(s) => {
                out.push_str(s);
                continue;
            }
            Piece::Field {
                attr,
                index,
                conv,
                spec,
            } => (attr, index, conv, spec),
        };
        let resolved = ctx.resolve(attr);
        if let Resolved::Text(t) = resolved {
            // A computed str (asctime) as format_value and `!s` render a
            // `str`, without making it a `Value`.
            if index.is_empty() && matches!(conv, None | Some('s')) {
                if format_str(spec, t, out).is_err() {
                    warn.misfit(attr.name());
                    pad_only(spec, t, out);
                }
                continue;
            }
        }
        let mut v: Option<Cow<'_, Value>> = resolved.value();
        for ix in index {
            v = v.and_then(|v| lookup(&v, ix).map(|x| Cow::Owned(x.into_owned())));
        }
        let Some(v) = v.as_deref() else {
            warn.missing(attr.name());
            pad_only(spec, "-", out);
            continue;
        };
        let mark = out.len();
        let ok = match conv {
            Some(cv) => {
                let mut s = String::new();
                match cv {
                    'r' => pyrepr::repr(v, &mut s),
                    'a' => pyrepr::ascii(v, &mut s),
                    _ => pyrepr::str(v, &mut s),
                }
                format_str(spec, &s, out)
            }
            None => format_value(spec, v, out),
        };
        if ok.is_err() {
            out.truncate(mark);
            warn.misfit(attr.name());
            let mut s = String::new();
            pyrepr::str(v, &mut s);
            pad_only(spec, &s, out);
        }
    }
}

/// `v[ix]` for the containers a record holds; `None` where Python raises.
fn lookup<'v>(v: &'v Value, ix: &Index) -> Option<Cow<'v, Value>> {
    match (v, ix) {
        (Value::List(l) | Value::Tuple(l), Index::Int(n)) => l.get(*n).map(Cow::Borrowed),
        (Value::Dict(d), ix) => d
            .iter()
            .find(|(k, _)| match (k, ix) {
                (Value::Str(k), Index::Key(s)) => &**k == s,
                (Value::Int(k), Index::Int(n)) => usize::try_from(*k) == Ok(*n),
                _ => false,
            })
            .map(|(_, v)| Cow::Borrowed(v)),
        (Value::Str(s), Index::Int(n)) => s
            .chars()
            .nth(*n)
            .map(|ch| Cow::Owned(Value::str(ch.to_string()))),
        _ => None,
    }
}

/// `format(v, spec)` for the value types Python sends.
fn format_value(spec: &FSpec, v: &Value, out: &mut String) -> Result<(), Mismatch> {
    if spec.empty {
        pyrepr::str(v, out);
        return Ok(());
    }
    match v {
        Value::Str(s) => format_str(spec, s, out),
        Value::Int(_) | Value::Bool(_) | Value::BigInt(_) => {
            format_int(spec, &BigInt::of(v).ok_or(Mismatch)?, out)
        }
        Value::Float(f) => format_float(spec, *f, out),
        _ => Err(Mismatch),
    }
}

/// Fill and align `body` to the width; the `0` flag only fills where no
/// explicit fill was given.
fn align(spec: &FSpec, body: &str, default: char, out: &mut String) {
    let fill = spec.fill.unwrap_or(if spec.zero { '0' } else { ' ' });
    let n = body.chars().count();
    let pad = spec.width.saturating_sub(n);
    let (l, r) = match spec.align.unwrap_or(default) {
        '<' => (0, pad),
        '^' => (pad / 2, pad - pad / 2),
        _ => (pad, 0),
    };
    out.extend(std::iter::repeat_n(fill, l));
    out.push_str(body);
    out.extend(std::iter::repeat_n(fill, r));
}

/// Fill, align, width and precision only: how a missing value (`-`) or a
/// misfit (`str(value)`) is laid out, "as a string".
fn pad_only(spec: &FSpec, s: &str, out: &mut String) {
    let s = match spec.prec {
        Some(p) => &s[..s.char_indices().nth(p).map_or(s.len(), |(i, _)| i)],
        None => s,
    };
    let mut sp = spec.clone();
    if sp.align == Some('=') {
        sp.align = None;
    }
    align(&sp, s, '<', out);
}

/// `str.__format__`.
fn format_str(spec: &FSpec, s: &str, out: &mut String) -> Result<(), Mismatch> {
    if spec.empty {
        out.push_str(s);
        return Ok(());
    }
    if spec.sign.is_some()
        || spec.alt
        || spec.align == Some('=')
        || spec.group.is_some()
        || spec.ty.is_some_and(|t| t != 's')
    {
        return Err(Mismatch);
    }
    pad_only(spec, s, out);
    Ok(())
}

/// Group the digits in `d` by `n` with `sep`.
fn group(d: &str, n: usize, sep: char) -> String {
    let mut out = String::with_capacity(d.len() + d.len() / n);
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(n) {
            out.push(sep);
        }
        out.push(ch);
    }
    out
}

/// Lay out a number: sign, prefix, the integer digits (grouped) and the
/// rest, with `=` alignment putting the fill after the sign and prefix.
fn layout(
    spec: &FSpec,
    negative: bool,
    prefix: &str,
    int: &str,
    rest: &str,
    every: usize,
    out: &mut String,
) {
    let sign = match (negative, spec.sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    let zero_fill = spec.fill.is_none() && spec.zero;
    let align_eq = spec.align == Some('=') || (spec.align.is_none() && zero_fill);
    let fill = spec.fill.unwrap_or(if zero_fill { '0' } else { ' ' });
    let mut int = int.to_string();
    let grouped = |d: &str| match spec.group {
        Some(sep) => group(d, every, sep),
        None => d.to_string(),
    };
    let mut body_int = grouped(&int);
    let fixed = sign.len() + prefix.len() + rest.chars().count();
    if align_eq && fill == '0' && spec.group.is_some() {
        // Zero padding is grouped too: format(1234, '010,') == '00,001,234'.
        while fixed + body_int.chars().count() < spec.width {
            int.insert(0, '0');
            body_int = grouped(&int);
        }
    }
    let n = fixed + body_int.chars().count();
    if align_eq {
        out.push_str(sign);
        out.push_str(prefix);
        out.extend(std::iter::repeat_n(fill, spec.width.saturating_sub(n)));
        out.push_str(&body_int);
        out.push_str(rest);
    } else {
        let body = [sign, prefix, &body_int, rest].concat();
        let mut sp = spec.clone();
        sp.fill = Some(fill);
        align(&sp, &body, '>', out);
    }
}

/// `int.__format__`.
fn format_int(spec: &FSpec, n: &BigInt<'_>, out: &mut String) -> Result<(), Mismatch> {
    let ty = spec.ty.unwrap_or('d');
    if "eEfFgG%".contains(ty) {
        let f = n.to_f64().ok_or(Mismatch)?;
        return format_float(spec, f, out);
    }
    if spec.prec.is_some() {
        return Err(Mismatch);
    }
    let (base, every, prefix) = match ty {
        'd' => (10, 3, ""),
        'n' if spec.group.is_none() => (10, 3, ""),
        'b' if spec.group != Some(',') => (2, 4, "0b"),
        'o' if spec.group != Some(',') => (8, 4, "0o"),
        'x' if spec.group != Some(',') => (16, 4, "0x"),
        'X' if spec.group != Some(',') => (16, 4, "0X"),
        'c' if spec.group.is_none() && spec.sign.is_none() && !spec.alt => {
            let cp: u32 = n.digits.parse().map_err(|_| Mismatch)?;
            if n.negative || cp > 0x10ffff {
                return Err(Mismatch);
            }
            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
            layout(spec, false, "", &ch.to_string(), "", 3, out);
            return Ok(());
        }
        _ => return Err(Mismatch),
    };
    let mut digits = n.magnitude(base);
    if ty == 'X' {
        digits.make_ascii_uppercase();
    }
    let prefix = if spec.alt { prefix } else { "" };
    layout(spec, n.negative, prefix, &digits, "", every, out);
    Ok(())
}

/// `float.__format__`.
fn format_float(spec: &FSpec, f: f64, out: &mut String) -> Result<(), Mismatch> {
    let ty = spec.ty;
    if matches!(ty, Some('n')) && spec.group.is_some() {
        return Err(Mismatch);
    }
    let a = if ty == Some('%') {
        f.abs() * 100.0
    } else {
        f.abs()
    };
    let upper = ty.is_some_and(|t| t.is_ascii_uppercase());
    let mut s = String::new();
    match ty {
        None => numfmt::repr_abs(a, spec.prec, spec.alt, &mut s),
        Some('e' | 'E') => numfmt::exp(a, spec.prec.unwrap_or(6), spec.alt, upper, &mut s),
        Some('f' | 'F' | '%') => numfmt::fixed(a, spec.prec.unwrap_or(6), spec.alt, upper, &mut s),
        Some('g' | 'G' | 'n') => {
            numfmt::general(a, spec.prec.unwrap_or(6), spec.alt, upper, &mut s)
        }
        _ => return Err(Mismatch),
    }
    if ty == Some('%') {
        s.push('%');
    }
    let split = if f.is_finite() {
        s.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(s.len())
    } else {
        s.len()
    };
    let (int, rest) = s.split_at(split);
    let negative = f.is_sign_negative() && !f.is_nan();
    if f.is_finite() {
        layout(spec, negative, "", int, rest, 3, out);
    } else {
        let mut sp = spec.clone();
        sp.group = None;
        layout(&sp, negative, "", "", &s, 3, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(spec: &str, v: Value) -> Option<String> {
        let sp = parse_spec(spec)?;
        let mut s = String::new();
        format_value(&sp, &v, &mut s).ok()?;
        Some(s)
    }

    #[test]
    fn specs_match_python() {
        assert_eq!(fmt("05", Value::str("ab")).as_deref(), Some("ab000"));
        assert_eq!(fmt("^05", Value::str("ab")).as_deref(), Some("0ab00"));
        assert_eq!(fmt("05", Value::Int(-3)).as_deref(), Some("-0003"));
        assert_eq!(fmt("05", Value::Float(3.5)).as_deref(), Some("003.5"));
        assert_eq!(fmt("", Value::Float(1e16)).as_deref(), Some("1e+16"));
        assert_eq!(
            fmt(".20", Value::Float(1e16)).as_deref(),
            Some("10000000000000000.0")
        );
        assert_eq!(
            fmt(",", Value::Float(12345.678)).as_deref(),
            Some("12,345.678")
        );
        assert_eq!(fmt("_x", Value::Int(12345)).as_deref(), Some("3039"));
        assert_eq!(fmt("%", Value::Float(1.5)).as_deref(), Some("150.000000%"));
        assert_eq!(fmt("n", Value::Float(1.0)).as_deref(), Some("1"));
        assert_eq!(fmt("", Value::Bool(true)).as_deref(), Some("True"));
        assert_eq!(fmt(">5", Value::Bool(true)).as_deref(), Some("    1"));
        assert_eq!(fmt(".2f", Value::Bool(true)).as_deref(), Some("1.00"));
        assert_eq!(
            fmt("010", Value::Float(f64::INFINITY)).as_deref(),
            Some("0000000inf")
        );
        assert_eq!(fmt("010,", Value::Int(1234)).as_deref(), Some("00,001,234"));
        assert_eq!(fmt("+d", Value::str("x")), None);
    }
}
