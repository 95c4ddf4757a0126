//! `%`-style formats (`PercentStyle`): `fmt % record.__dict__`.

use super::printf::{self, Count, Spec};
use super::{pyrepr, Attr, Ctx, FormatError, Resolved, Warnings};
use crate::record::Value;

/// One piece of a compiled `%` format.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    Lit(String),
    Field {
        attr: Attr,
        spec: Spec,
        /// The spec is a bare `%s` or `%d`: a `str` or an `int` is
        /// written as is, without the padding machinery.
        plain: bool,
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

/// Parse and check a `%` format: Python's `Formatter(validate=True)` check,
/// then every conversion Python would refuse on every record.
pub(crate) fn compile(f: &str) -> Result<Vec<Piece>, FormatError> {
    if !validates(f) {
        return Err(FormatError::new(
            f,
            0,
            "invalid format for '%' style: no %(name)s placeholder (Python's Formatter refuses it)",
        ));
    }
    let parsed = printf::parse(f).map_err(|e| FormatError::new(f, e.pos, e.reason))?;
    let mut pieces = Vec::with_capacity(parsed.len());
    for p in parsed {
        match p {
            printf::Piece::Lit(s) => pieces.push(Piece::Lit(s)),
            printf::Piece::Conv(c) => {
                let Some(key) = c.key else {
                    return Err(FormatError::new(
                        f,
                        c.pos,
                        "conversion without a %(name) key (the record is a mapping)",
                    ));
                };
                if c.width == Count::Star || c.prec == Count::Star {
                    return Err(FormatError::new(
                        f,
                        c.pos,
                        "'*' needs a tuple argument (* wants int)",
                    ));
                }
                let plain = matches!(c.spec.ty, 's' | 'd')
                    && c.spec
                        == Spec {
                            ty: c.spec.ty,
                            ..Spec::default()
                        };
                pieces.push(Piece::Field {
                    attr: Attr::of(&key),
                    spec: c.spec,
                    plain,
                });
            }
        }
    }
    Ok(pieces)
}

/// `PercentStyle.validation_pattern.search(fmt)`:
/// `%\(\w+\)[#0+ -]*(\*|\d+)?(\.(\*|\d+))?[diouxefgcrsa%]` (ignoring case).
fn validates(f: &str) -> bool {
    let c: Vec<char> = f.chars().collect();
    (0..c.len()).any(|start| {
        let mut i = start;
        let at = |i: usize| c.get(i).copied();
        if at(i) != Some('%') || at(i + 1) != Some('(') {
            return false;
        }
        i += 2;
        let k = i;
        while at(i).is_some_and(|ch| ch == '_' || ch.is_alphanumeric()) {
            i += 1;
        }
        if i == k || at(i) != Some(')') {
            return false;
        }
        i += 1;
        while at(i).is_some_and(|ch| "#0+ -".contains(ch)) {
            i += 1;
        }
        let count = |i: &mut usize| {
            if at(*i) == Some('*') {
                *i += 1;
            } else {
                while at(*i).is_some_and(|ch| ch.is_ascii_digit()) {
                    *i += 1;
                }
            }
        };
        count(&mut i);
        if at(i) == Some('.') && at(i + 1).is_some_and(|ch| ch == '*' || ch.is_ascii_digit()) {
            i += 1;
            count(&mut i);
        }
        at(i).is_some_and(|ch| "diouxefgcrsa%".contains(ch.to_ascii_lowercase()))
    })
}

/// Render a compiled `%` format for one record.
pub(crate) fn render(pieces: &[Piece], ctx: &Ctx<'_>, out: &mut String, warn: &mut Warnings) {
    for p in pieces {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Field { attr, spec, plain } => match ctx.resolve(attr) {
                Resolved::Missing => {
                    warn.missing(attr.name());
                    printf::pad_str(spec, "-", out);
                }
                // `%s` of a str, as format_value does it, without making
                // the text a `Value` (asctime).
                Resolved::Text(t) if spec.ty == 's' => printf::pad_str(spec, t, out),
                // What format_value writes for these, with less work.
                Resolved::Borrowed(Value::Str(t)) if spec.ty == 's' => match plain {
                    true => out.push_str(t),
                    false => printf::pad_str(spec, t, out),
                },
                Resolved::Borrowed(Value::Int(i)) if *plain && spec.ty == 'd' => {
                    out.push_str(itoa::Buffer::new().format(*i))
                }
                v => {
                    let Some(v) = v.value() else { continue };
                    let mark = out.len();
                    if printf::format_value(spec, &v, out).is_err() {
                        out.truncate(mark);
                        warn.misfit(attr.name());
                        let mut s = String::new();
                        pyrepr::str(&v, &mut s);
                        printf::pad_str(spec, &s, out);
                    }
                }
            },
        }
    }
}
