//! `$`-style formats (`StringTemplateStyle`): `string.Template(fmt)
//! .substitute(record.__dict__)`, values rendered with `str()`.

use super::{pyrepr, Attr, Ctx, FormatError, Resolved, Warnings};

/// One piece of a compiled `$` format.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    Lit(String),
    Field(Attr),
}

impl Piece {
    /// The attribute a placeholder names; `None` for literal text.
    pub(crate) fn attr(&self) -> Option<&Attr> {
        match self {
            Piece::Field(attr) => Some(attr),
            Piece::Lit(_) => None,
        }
    }
}

/// Parse a `$` format with `string.Template.pattern`: `$$`, `$name`,
/// `${name}` (names `[_a-zA-Z][_a-zA-Z0-9]*`); anything else after `$` is
/// an invalid placeholder, which Python refuses on every record.
pub(crate) fn compile(f: &str) -> Result<Vec<Piece>, FormatError> {
    let c: Vec<char> = f.chars().collect();
    let ident_start = |ch: char| ch == '_' || ch.is_ascii_alphabetic();
    let ident = |ch: char| ch == '_' || ch.is_ascii_alphanumeric();
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let mut fields = 0;
    while i < c.len() {
        if c[i] != '$' {
            lit.push(c[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let name = match c.get(i) {
            Some('$') => {
                lit.push('$');
                i += 1;
                continue;
            }
            Some(&ch) if ident_start(ch) => {
                let s = i;
                while c.get(i).is_some_and(|&ch| ident(ch)) {
                    i += 1;
                }
                c[s..i].iter().collect::<String>()
            }
            Some('{') if c.get(i + 1).is_some_and(|&ch| ident_start(ch)) => {
                let s = i + 1;
                let mut j = s;
                while c.get(j).is_some_and(|&ch| ident(ch)) {
                    j += 1;
                }
                if c.get(j) != Some(&'}') {
                    return Err(invalid(f, start));
                }
                i = j + 1;
                c[s..j].iter().collect::<String>()
            }
            _ => return Err(invalid(f, start)),
        };
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        fields += 1;
        pieces.push(Piece::Field(Attr::of(&name)));
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    if fields == 0 {
        return Err(FormatError::new(f, 0, "invalid format: no fields"));
    }
    Ok(pieces)
}

fn invalid(f: &str, pos: usize) -> FormatError {
    FormatError::new(
        f,
        pos,
        "invalid placeholder in string ('$' must be followed by '$', a name or {name})",
    )
}

/// Render a compiled `$` format for one record.
pub(crate) fn render(pieces: &[Piece], ctx: &Ctx<'_>, out: &mut String, warn: &mut Warnings) {
    for p in pieces {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Field(attr) => match ctx.resolve(attr) {
                Resolved::Missing => {
                    warn.missing(attr.name());
                    out.push('-');
                }
                // str() of a str is itself.
                Resolved::Text(t) => out.push_str(t),
                v => {
                    if let Some(v) = v.value() {
                        pyrepr::str(&v, out);
                    }
                }
            },
        }
    }
}
