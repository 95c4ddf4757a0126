//! `redact`: mask secrets in the message and the traceback.
//!
//! Masks, in `msg` and `exc_text` (or the fields listed in `fields`):
//! - payment card numbers: 13 to 19 digits, optionally grouped by single
//!   spaces or dashes, that pass the Luhn check; every digit but the last
//!   four becomes `*` (`4111 1111 1111 1111` -> `**** **** **** 1111`);
//! - e-mail addresses: `name@example.com` -> `[email]`;
//! - bearer tokens: `Bearer eyJhbGci...` -> `Bearer [token]` (any case).
//!
//! Config (all optional):
//! ```json
//! { "fields": ["msg", "exc_text"], "cards": true, "emails": true, "bearer": true }
//! ```

use logrelay_filter::{export, Config, Filter, Record, Verdict};

/// What to mask, and where.
pub struct Redact {
    fields: Vec<String>,
    rules: Rules,
}

/// Which kinds of secret to mask.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Card numbers.
    pub cards: bool,
    /// E-mail addresses.
    pub emails: bool,
    /// Bearer tokens.
    pub bearer: bool,
}

impl Rules {
    /// Every rule on.
    pub const ALL: Rules = Rules {
        cards: true,
        emails: true,
        bearer: true,
    };
}

/// `text` with its secrets masked, or `None` if it holds none (so the
/// record is left untouched and nothing is copied back).
pub fn redact(text: &str, rules: Rules) -> Option<String> {
    let mut out = text.to_string();
    let mut changed = false;
    if rules.bearer {
        changed |= mask_bearer(&mut out);
    }
    if rules.emails {
        changed |= mask_emails(&mut out);
    }
    if rules.cards {
        changed |= mask_cards(&mut out);
    }
    changed.then_some(out)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// `Bearer <token>` -> `Bearer [token]`.
fn mask_bearer(s: &mut String) -> bool {
    const WORD: &[u8] = b"bearer";
    let mut changed = false;
    let mut from = 0;
    loop {
        let b = s.as_bytes();
        let Some(at) = b[from..]
            .windows(WORD.len())
            .position(|w| w.eq_ignore_ascii_case(WORD))
            .map(|p| p + from)
        else {
            return changed;
        };
        let word_start = at == 0 || !b[at - 1].is_ascii_alphanumeric();
        let mut i = at + WORD.len();
        let gap = i;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if word_start && start > gap && i > start && &s[start..i] != "[token]" {
            s.replace_range(start..i, "[token]");
            changed = true;
            from = start + "[token]".len();
        } else {
            from = at + WORD.len();
        }
    }
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// `local@domain.tld` -> `[email]`.
fn mask_emails(s: &mut String) -> bool {
    let mut changed = false;
    let mut from = 0;
    while let Some(at) = s[from..].find('@').map(|p| p + from) {
        let b = s.as_bytes();
        let mut start = at;
        while start > 0 && is_local_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain_char(b[end]) {
            end += 1;
        }
        // A trailing dot ends the sentence, not the domain.
        while end > at + 1 && b[end - 1] == b'.' {
            end -= 1;
        }
        let domain = &s[at + 1..end];
        let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
            !host.is_empty() && tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic())
        });
        if start < at && tld_ok {
            s.replace_range(start..end, "[email]");
            changed = true;
            from = start + "[email]".len();
        } else {
            from = at + 1;
        }
    }
    changed
}

/// The Luhn checksum of a digit string.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card numbers -> `*` for all digits but the last four.
fn mask_cards(s: &mut String) -> bool {
    // Only ASCII digits are replaced by ASCII `*`, so byte positions hold.
    let mut bytes = std::mem::take(s).into_bytes();
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if !bytes[i].is_ascii_digit() || !boundary {
            i += 1;
            continue;
        }
        // Digits, with single space/dash separators between digits.
        let start = i;
        let mut digits = Vec::new();
        let mut end = i;
        let mut j = i;
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                digits.push(bytes[j]);
                j += 1;
                end = j;
            } else if (bytes[j] == b' ' || bytes[j] == b'-')
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                j += 1;
            } else {
                break;
            }
        }
        let bounded = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
        if bounded && (13..=19).contains(&digits.len()) && luhn(&digits) {
            let mut left = digits.len() - 4;
            for b in &mut bytes[start..end] {
                if left > 0 && b.is_ascii_digit() {
                    *b = b'*';
                    left -= 1;
                }
            }
            changed = true;
        }
        i = end.max(i + 1);
    }
    // Invariant: the input was UTF-8 and only ASCII digits were replaced by
    // an ASCII byte, so the bytes are still UTF-8.
    *s = String::from_utf8(bytes).unwrap_or_default();
    changed
}

impl Filter for Redact {
    fn init(config: &Config) -> Result<Self, String> {
        let fields = match config.get("fields") {
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|f| f.as_str().map(str::to_string)).collect())
                .ok_or("fields: expected a list of field names")?,
            None => vec!["msg".to_string(), "exc_text".to_string()],
        };
        let flag = |key: &str| match config.get(key) {
            Some(v) => v.as_bool().ok_or(format!("{key}: expected true or false")),
            None => Ok(true),
        };
        Ok(Redact {
            fields,
            rules: Rules {
                cards: flag("cards")?,
                emails: flag("emails")?,
                bearer: flag("bearer")?,
            },
        })
    }

    fn filter(&mut self, record: &mut Record) -> Verdict {
        for name in &self.fields {
            if let Some(text) = record.get(name) {
                if let Some(masked) = redact(&text, self.rules) {
                    record.set(name, masked);
                }
            }
        }
        Verdict::Keep
    }
}

export!(Redact);

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact(s, Rules::ALL).unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn masks_cards_keeping_the_last_four() {
        assert_eq!(
            r("card 4111 1111 1111 1111 ok"),
            "card **** **** **** 1111 ok"
        );
        assert_eq!(r("4111-1111-1111-1111"), "****-****-****-1111");
        assert_eq!(r("pan=5500005555555559."), "pan=************5559.");
        // Fails Luhn, too short, or part of a longer token: untouched.
        assert_eq!(r("4111 1111 1111 1112"), "4111 1111 1111 1112");
        assert_eq!(r("order 123456"), "order 123456");
        assert_eq!(r("id x4111111111111111"), "id x4111111111111111");
    }

    #[test]
    fn masks_emails_and_bearer_tokens() {
        assert_eq!(r("mail john.doe+x@example.co.uk."), "mail [email].");
        assert_eq!(r("a@b"), "a@b");
        assert_eq!(
            r("Authorization: Bearer eyJhbGciOi.J9x-y_z== sent"),
            "Authorization: Bearer [token] sent"
        );
        assert_eq!(r("bearer abc"), "bearer [token]");
        assert_eq!(r("unbearerable"), "unbearerable");
        assert_eq!(redact("nothing here", Rules::ALL), None);
    }
}
