//! Number rendering shared by `%`-style and `{}`-style formatting: CPython's
//! float conversions (`repr`, `e`, `f`, `g`) and integers of any size in
//! bases 2, 8, 10 and 16.
//!
//! Rust's `{:.N}` and `{:.Ne}` are exact and round half to even on the exact
//! binary value, as CPython's `PyOS_double_to_string` does, so the digits come
//! from `std` and only the layout (exponent sign and width, trailing zeros,
//! thresholds) is Python's.

use std::fmt::Write as _;

use crate::record::Value;

/// Shortest round-trip digits of a finite, non-negative `f`, and the decimal
/// exponent of the first digit (`123.0` -> `("123", 2)`).
fn shortest(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    split_exp(&s)
}

/// Split Rust's `d.ddde[-]x` into its digits and exponent.
fn split_exp(s: &str) -> (String, i32) {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn push_exp(exp: i32, upper: bool, out: &mut String) {
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

fn nonfinite(f: f64, upper: bool) -> &'static str {
    match (f.is_nan(), upper) {
        (true, false) => "nan",
        (true, true) => "NAN",
        (false, false) => "inf",
        (false, true) => "INF",
    }
}

/// Append Python's `repr(f)`.
pub fn repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    repr_abs(f.abs(), None, false, out);
}

/// `repr`-style layout of a non-negative float: `format(f, '')`, or with a
/// precision `format(f, '.P')` (CPython's `'g'` with `Py_DTSF_ADD_DOT_0`,
/// which also moves the switch to exponent notation one digit earlier);
/// `alt` (`#`) keeps the decimal point and, with a precision, the zeros.
pub fn repr_abs(f: f64, prec: Option<usize>, alt: bool, out: &mut String) {
    if !f.is_finite() {
        out.push_str(nonfinite(f, false));
        return;
    }
    let (digits, exp, sci) = match prec {
        None => {
            let (d, e) = if f == 0.0 {
                ("0".to_string(), 0)
            } else {
                shortest(f)
            };
            (d, e, !(-4..16).contains(&e))
        }
        Some(p) => {
            let p = p.max(1);
            let (mut d, e) = split_exp(&format!("{:.*e}", p - 1, f));
            if !alt {
                let t = d.trim_end_matches('0').len().max(1);
                d.truncate(t);
            }
            (d, e, e < -4 || e >= p as i32 - 1)
        }
    };
    if sci {
        out.push_str(&digits[..1]);
        if digits.len() > 1 || alt {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        push_exp(exp, false, out);
    } else {
        fixed_digits(&digits, exp, out);
        if digits.len() as i32 <= exp + 1 {
            out.push_str(".0");
        }
    }
}

/// Lay out significant `digits` (first digit at 10^exp) in fixed notation.
fn fixed_digits(digits: &str, exp: i32, out: &mut String) {
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

/// `%.Pf` of a non-negative float; `alt` keeps a bare `.` (`%#.0f`).
pub fn fixed(f: f64, prec: usize, alt: bool, upper: bool, out: &mut String) {
    if !f.is_finite() {
        out.push_str(nonfinite(f, upper));
        return;
    }
    let _ = write!(out, "{f:.prec$}");
    if alt && prec == 0 {
        out.push('.');
    }
}

/// `%.Pe` of a non-negative float.
pub fn exp(f: f64, prec: usize, alt: bool, upper: bool, out: &mut String) {
    if !f.is_finite() {
        out.push_str(nonfinite(f, upper));
        return;
    }
    let s = format!("{f:.prec$e}");
    let (mant, e) = s.split_once('e').unwrap_or((&s, "0"));
    out.push_str(mant);
    if alt && prec == 0 {
        out.push('.');
    }
    push_exp(e.parse().unwrap_or(0), upper, out);
}

/// `%.Pg` of a non-negative float: fixed for exponents -4..P, else
/// exponential; trailing zeros dropped unless `alt`.
pub fn general(f: f64, prec: usize, alt: bool, upper: bool, out: &mut String) {
    if !f.is_finite() {
        out.push_str(nonfinite(f, upper));
        return;
    }
    let p = prec.max(1);
    let s = format!("{:.*e}", p - 1, f);
    let (mut digits, e) = split_exp(&s);
    if !alt {
        let t = digits.trim_end_matches('0').len().max(1);
        digits.truncate(t);
    }
    if e < -4 || e >= p as i32 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 || alt {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        push_exp(e, upper, out);
    } else {
        fixed_digits(&digits, e, out);
        if alt && digits.len() as i32 <= e + 1 {
            out.push('.');
        }
    }
}

/// An integer of any size: sign and decimal magnitude.
pub struct BigInt<'a> {
    /// Whether it is below zero.
    pub negative: bool,
    /// Decimal digits of the magnitude, without sign or leading zeros.
    pub digits: std::borrow::Cow<'a, str>,
}

impl BigInt<'_> {
    /// The integer value of `v` if it is an `int` or `bool`.
    pub fn of(v: &Value) -> Option<BigInt<'_>> {
        match v {
            Value::Int(i) => Some(BigInt {
                negative: *i < 0,
                digits: i.unsigned_abs().to_string().into(),
            }),
            Value::Bool(b) => Some(BigInt {
                negative: false,
                digits: if *b { "1" } else { "0" }.into(),
            }),
            Value::BigInt(s) => {
                let (negative, d) = match s.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, s.strip_prefix('+').unwrap_or(s)),
                };
                if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let d = d.trim_start_matches('0');
                let d = if d.is_empty() { "0" } else { d };
                Some(BigInt {
                    negative: negative && d != "0",
                    digits: d.into(),
                })
            }
            _ => None,
        }
    }

    /// `int(f)` of a finite float (truncation), as `%d` does.
    pub fn of_float(f: f64) -> Option<BigInt<'static>> {
        if !f.is_finite() {
            return None;
        }
        let t = f.trunc();
        Some(BigInt {
            negative: t < 0.0,
            digits: format!("{:.0}", t.abs()).into(),
        })
    }

    /// The magnitude in `base` (2, 8, 10 or 16), lowercase.
    pub fn magnitude(&self, base: u32) -> String {
        if base == 10 {
            return self.digits.to_string();
        }
        if let Ok(n) = self.digits.parse::<u128>() {
            return match base {
                2 => format!("{n:b}"),
                8 => format!("{n:o}"),
                _ => format!("{n:x}"),
            };
        }
        // Schoolbook division of the decimal digits, for ints past u128.
        let mut num: Vec<u32> = self.digits.bytes().map(|b| u32::from(b - b'0')).collect();
        let mut out = Vec::new();
        while !(num.is_empty() || num.len() == 1 && num[0] == 0) {
            let mut rem = 0u32;
            let mut next = Vec::with_capacity(num.len());
            for d in &num {
                let cur = rem * 10 + d;
                let q = cur / base;
                rem = cur % base;
                if !(next.is_empty() && q == 0) {
                    next.push(q);
                }
            }
            out.push(char::from_digit(rem, base).unwrap_or('0'));
            num = next;
        }
        if out.is_empty() {
            return "0".into();
        }
        out.iter().rev().collect()
    }

    /// `float(self)`, or `None` where Python raises OverflowError.
    pub fn to_f64(&self) -> Option<f64> {
        let f: f64 = self.digits.parse().ok()?;
        f.is_finite().then_some(if self.negative { -f } else { f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl Fn(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn repr_matches_python() {
        for (x, want) in [
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (123.0, "123.0"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e300, "1.5e+300"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(with(|o| repr(x, o)), want, "{x}");
        }
    }

    #[test]
    fn printf_floats_match_python() {
        // '%.0f %.0f %.1f %e %g %#g %G %.3g %g'
        assert_eq!(with(|o| fixed(0.5, 0, false, false, o)), "0");
        assert_eq!(with(|o| fixed(2.5, 0, false, false, o)), "2");
        assert_eq!(with(|o| fixed(0.25, 1, false, false, o)), "0.2");
        assert_eq!(with(|o| exp(1.0, 6, false, false, o)), "1.000000e+00");
        assert_eq!(with(|o| general(1e-5, 6, false, false, o)), "1e-05");
        assert_eq!(with(|o| general(1.0, 6, true, false, o)), "1.00000");
        assert_eq!(with(|o| general(1e20, 6, false, true, o)), "1E+20");
        assert_eq!(with(|o| general(1234567.0, 3, false, false, o)), "1.23e+06");
        assert_eq!(
            with(|o| general(123456789.0, 6, false, false, o)),
            "1.23457e+08"
        );
        assert_eq!(with(|o| repr_abs(1.0, Some(2), false, o)), "1.0");
        assert_eq!(with(|o| repr_abs(100.0, Some(2), false, o)), "1e+02");
        assert_eq!(
            with(|o| repr_abs(1e16, Some(20), false, o)),
            "10000000000000000.0"
        );
    }

    #[test]
    fn bigint_bases() {
        let v = Value::BigInt("-340282366920938463463374607431768211457".into());
        let b = BigInt::of(&v).unwrap();
        assert!(b.negative);
        assert_eq!(b.magnitude(16), "100000000000000000000000000000001");
    }
}
