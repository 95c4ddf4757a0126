//! glibc's `strftime` in the C locale, which is what CPython's
//! `time.strftime` calls on Linux: every conversion, the `_ - 0 ^ #` flags,
//! field widths and the `E`/`O` modifiers (which mean nothing in the C
//! locale), and glibc's habit of copying an unknown conversion verbatim.

/// A broken-down time, as `time.localtime()` / `time.gmtime()` give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tm {
    /// Full year (`tm_year + 1900`).
    pub year: i64,
    /// Month, 1..=12.
    pub mon: u8,
    /// Day of the month, 1..=31.
    pub mday: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub min: u8,
    /// 0..=60.
    pub sec: u8,
    /// Day of the week, 0 = Sunday.
    pub wday: u8,
    /// Day of the year, 0-based.
    pub yday: u16,
    /// Offset from UTC in seconds (`tm_gmtoff`).
    pub gmtoff: i32,
    /// Zone abbreviation (`tm_zone`).
    pub zone: String,
    /// What `%s` prints: glibc runs `mktime` on the broken-down time, which
    /// reads it as local time even when it came from `gmtime`.
    pub epoch: i64,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Flags of one conversion.
#[derive(Clone, Copy)]
struct Flags {
    pad: Option<char>,
    upcase: bool,
    change_case: bool,
    width: Option<usize>,
}

/// Append `strftime(fmt, tm)`.
pub fn strftime(fmt: &str, tm: &Tm, out: &mut String) {
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut fl = Flags {
            pad: None,
            upcase: false,
            change_case: false,
            width: None,
        };
        while let Some(&c) = chars.get(i) {
            match c {
                // glibc (unlike gnulib) has no `+` flag: `%+a` is an
                // unknown conversion, copied verbatim.
                '_' | '-' | '0' => fl.pad = Some(c),
                '^' => fl.upcase = true,
                '#' => fl.change_case = true,
                _ => break,
            }
            i += 1;
        }
        let mut w: Option<usize> = None;
        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
            // glibc caps absurd widths by failing; 1024 keeps us bounded.
            w = Some((w.unwrap_or(0) * 10 + d as usize).min(1024));
            i += 1;
        }
        fl.width = w;
        let mut modifier = None;
        if let Some(&m @ ('E' | 'O')) = chars.get(i) {
            modifier = Some(m);
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            // A `%` at the end: glibc copies what it saw.
            let raw: String = chars[start..].iter().collect();
            add_str(&fl, &raw, out);
            return;
        };
        i += 1;
        if !conversion(conv, modifier, &fl, tm, out) {
            let raw: String = chars[start..i].iter().collect();
            add_str(&fl, &raw, out);
        }
    }
}

/// Emit one conversion; false for glibc's `bad_format`.
fn conversion(c: char, modifier: Option<char>, fl: &Flags, tm: &Tm, out: &mut String) -> bool {
    let e = modifier == Some('E');
    let o = modifier == Some('O');
    let hour12 = if tm.hour.is_multiple_of(12) {
        12
    } else {
        tm.hour % 12
    };
    match c {
        '%' if modifier.is_none() => add_str(fl, "%", out),
        'a' | 'A' if modifier.is_none() => {
            let d = DAYS[usize::from(tm.wday % 7)];
            let s = if c == 'a' { &d[..3] } else { d };
            add_cased(fl, s, fl.change_case, false, out);
        }
        'b' | 'h' | 'B' if !e => {
            let m = MONTHS[usize::from((tm.mon + 11) % 12)];
            let s = if c == 'B' { m } else { &m[..3] };
            add_cased(fl, s, fl.change_case, false, out);
        }
        'c' if !o => sub(fl, "%a %b %e %H:%M:%S %Y", tm, out),
        'C' => {
            let century = tm.year.div_euclid(100);
            number(fl, 1, century, out);
        }
        'd' if !e => number(fl, 2, tm.mday.into(), out),
        'D' if modifier.is_none() => sub(fl, "%m/%d/%y", tm, out),
        'e' if !e => spacepad(fl, 2, tm.mday.into(), out),
        'F' if modifier.is_none() => sub(fl, "%Y-%m-%d", tm, out),
        'H' if !e => number(fl, 2, tm.hour.into(), out),
        'I' if !e => number(fl, 2, hour12.into(), out),
        'k' if !e => spacepad(fl, 2, tm.hour.into(), out),
        'l' if !e => spacepad(fl, 2, hour12.into(), out),
        'j' if !e => number(fl, 3, i64::from(tm.yday) + 1, out),
        'm' if !e => number(fl, 2, tm.mon.into(), out),
        'M' if !e => number(fl, 2, tm.min.into(), out),
        'n' => add_str(fl, "\n", out),
        't' => add_str(fl, "\t", out),
        'p' | 'P' => {
            let am = tm.hour < 12;
            let s = if am { "AM" } else { "PM" };
            add_cased(fl, s, false, c == 'P' || fl.change_case, out);
        }
        'r' => sub(fl, "%I:%M:%S %p", tm, out),
        'R' => sub(fl, "%H:%M", tm, out),
        's' => number(fl, 1, tm.epoch, out),
        'S' if !e => number(fl, 2, tm.sec.into(), out),
        'T' => sub(fl, "%H:%M:%S", tm, out),
        'u' if !e => number(fl, 1, i64::from((tm.wday + 6) % 7 + 1), out),
        'U' if !e => {
            let v = (i64::from(tm.yday) - i64::from(tm.wday) + 7) / 7;
            number(fl, 2, v, out)
        }
        'W' if !e => {
            let v = (i64::from(tm.yday) - (i64::from(tm.wday) + 6) % 7 + 7) / 7;
            number(fl, 2, v, out)
        }
        'w' if !e => number(fl, 1, tm.wday.into(), out),
        'V' | 'g' | 'G' if !e => {
            let (year, week) = iso_week(tm);
            match c {
                'V' => number(fl, 2, week, out),
                'g' => number(fl, 2, year.rem_euclid(100), out),
                _ => number(fl, 1, year, out),
            }
        }
        'x' if !o => sub(fl, "%m/%d/%y", tm, out),
        'X' if !o => sub(fl, "%H:%M:%S", tm, out),
        'y' => number(fl, 2, tm.year.rem_euclid(100), out),
        'Y' if !o => number(fl, 1, tm.year, out),
        'z' => {
            // glibc adds the sign as a one-character string (padded to the
            // width), then the hhmm number with the same flags and width:
            // `%_z` is `- 330`, `%6z` is `     -000330`.
            let off = i64::from(tm.gmtoff);
            add_str(fl, if off < 0 { "-" } else { "+" }, out);
            let v = off.abs() / 3600 * 100 + off.abs() / 60 % 60;
            number(fl, 4, v, out);
        }
        'Z' => add_cased(fl, &tm.zone, false, fl.change_case, out),
        _ => return false,
    }
    true
}

/// ISO 8601 week-based year and week number, by glibc's `iso_week_days`.
fn iso_week(tm: &Tm) -> (i64, i64) {
    fn days(yday: i64, wday: i64) -> i64 {
        let big = (366 / 7 + 2) * 7;
        yday - (yday - wday + 4 + big) % 7 + 4 - 1
    }
    fn leap(y: i64) -> i64 {
        i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
    }
    let (yday, wday) = (i64::from(tm.yday), i64::from(tm.wday));
    let mut year = tm.year;
    let mut d = days(yday, wday);
    if d < 0 {
        year -= 1;
        d = days(yday + 365 + leap(year), wday);
    } else {
        let next = days(yday - (365 + leap(year)), wday);
        if next >= 0 {
            year += 1;
            d = next;
        }
    }
    (year, d / 7 + 1)
}

fn sub(fl: &Flags, f: &str, tm: &Tm, out: &mut String) {
    let mut s = String::new();
    strftime(f, tm, &mut s);
    if fl.upcase {
        s = s.to_uppercase();
    }
    add_str(fl, &s, out);
}

/// A string conversion: `^` upper-cases; `#` flips to `upper` / `lower`
/// as glibc does per conversion. Lower case wins, as in glibc's `cpy`
/// (`%^P` is `pm`).
fn add_cased(fl: &Flags, s: &str, upper: bool, lower: bool, out: &mut String) {
    if lower {
        add_str(fl, &s.to_lowercase(), out);
    } else if fl.upcase || upper {
        add_str(fl, &s.to_uppercase(), out);
    } else {
        add_str(fl, s, out);
    }
}

/// glibc's `add`: pad on the left to the width, with zeros for the `0`
/// flag, spaces otherwise (`-` too: it only stops a number's own
/// padding, so `%-6a` is `   Sat`).
fn add_str(fl: &Flags, s: &str, out: &mut String) {
    let n = s.chars().count();
    if let Some(w) = fl.width {
        let fill = if fl.pad == Some('0') { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(fill, w.saturating_sub(n)));
    }
    out.push_str(s);
}

/// glibc's `DO_NUMBER`: at least `digits` digits (more with a width),
/// zero-padded (`_`: spaces, `-`: none), then `cpy`, which pads what is
/// left of the width as `add_str` does.
fn number(fl: &Flags, digits: usize, v: i64, out: &mut String) {
    let pad = fl.pad.unwrap_or('0');
    let digits = digits.max(fl.width.unwrap_or(0));
    let mut width = fl.width.unwrap_or(0);
    let mut num = v.unsigned_abs().to_string();
    if v < 0 {
        num.insert(0, '-');
    }
    let padding = digits.saturating_sub(num.len());
    if pad != '-' && padding > 0 {
        if pad == '_' {
            out.extend(std::iter::repeat_n(' ', padding));
            width = width.saturating_sub(padding);
        } else {
            // The sign goes before the zeros.
            if v < 0 {
                out.push('-');
                num.remove(0);
            }
            out.extend(std::iter::repeat_n('0', padding));
            width = 0;
        }
    }
    let rest = Flags {
        width: Some(width),
        ..*fl
    };
    add_str(&rest, &num, out);
}

/// `DO_NUMBER_SPACEPAD` (`%e`, `%k`, `%l`): spaces unless a flag says
/// otherwise.
fn spacepad(fl: &Flags, digits: usize, v: i64, out: &mut String) {
    let mut f = *fl;
    if f.pad.is_none() {
        f.pad = Some('_');
    }
    number(&f, digits, v, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tm() -> Tm {
        // 2026-03-05 07:08:09 Thursday, CET
        Tm {
            year: 2026,
            mon: 3,
            mday: 5,
            hour: 7,
            min: 8,
            sec: 9,
            wday: 4,
            yday: 63,
            gmtoff: 3600,
            zone: "CET".into(),
            epoch: 1772690889,
        }
    }

    fn f(s: &str) -> String {
        let mut o = String::new();
        strftime(s, &tm(), &mut o);
        o
    }

    #[test]
    fn common_conversions() {
        assert_eq!(f("%Y-%m-%d %H:%M:%S"), "2026-03-05 07:08:09");
        assert_eq!(
            f("%a %A %b %B %e|%-d|%_H|%z|%Z|%p|%j"),
            "Thu Thursday Mar March  5|5| 7|+0100|CET|AM|064"
        );
        assert_eq!(f("%c"), "Thu Mar  5 07:08:09 2026");
        assert_eq!(f("%G-W%V-%u %%"), "2026-W10-4 %");
        assert_eq!(f("%q %5q %"), "%q   %5q %");
    }

    #[test]
    fn flags_and_widths_as_glibc_2_36() {
        // Expected values from Python's time.strftime under TZ=CET.
        assert_eq!(
            f("%-6a|%-3d|%+a|%+6d|%06a|%^P|%^#p|%#Z|%^#Z"),
            "   Thu|  5|%+a|%+6d|000Thu|am|am|cet|cet"
        );
        assert_eq!(
            f("%6z|%_z|%-z|%03z|%-6z|%_6z|%1z"),
            "     +000100|+ 100|+100|00+0100|     +   100|     +   100|+0100"
        );
        assert_eq!(
            f("%-6Y|%_6Y|%6Y|%-3e|%0e|%-6c|%-3%|%6q|%-6q"),
            "  2026|  2026|002026|  5|05|Thu Mar  5 07:08:09 2026|  %|   %6q|  %-6q"
        );
    }
}
