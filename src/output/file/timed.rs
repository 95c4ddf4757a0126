//! Time rotation, exactly as CPython 3.11's `TimedRotatingFileHandler`.
//!
//! The schedule starts from the file's mtime when it exists (so a restart
//! does not reset it), else from now. A rollover happens on the first
//! record written at or after `rolloverAt`, judged by the clock at write
//! time (`int(time.time())`, not the record's `created`). The rotated file
//! is named by the start of its interval (`rolloverAt - interval`) with
//! Python's suffixes, and Python's DST corrections are applied where Python
//! applies them: the name when DST changed since the interval began, the
//! next rollover for `midnight` and `W0`..`W6`.
//!
//! Local time comes from the C library's `localtime_r`, as Python's
//! `time.localtime`, so both see the same zone (`TZ`, `/etc/localtime`).

use std::io;
use std::path::{Path, PathBuf};

use super::compress::Compressor;
use super::with_suffix;
use crate::config::{FileOutputConfig, When};

/// `_MIDNIGHT`: seconds in a day.
const DAY: i64 = 24 * 60 * 60;

/// The state of a time-rotated file.
pub(super) struct TimedRotation {
    when: When,
    /// Seconds per interval (`interval` units of `when`).
    interval: i64,
    utc: bool,
    /// `atTime` in seconds after midnight.
    at_time: Option<i64>,
    backup_count: u32,
    /// The next rollover, in Unix seconds.
    rollover_at: i64,
}

/// The fields of a `time.struct_time` that rotation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tm {
    year: i32,
    month: i32,
    day: i32,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 = Monday, as Python's `tm_wday`.
    weekday: i64,
    isdst: bool,
}

/// `time.gmtime(t)` or `time.localtime(t)`.
pub(super) fn tm(t: i64, utc: bool) -> Tm {
    // SAFETY: `libc::tm` is plain data (integers and a pointer that may be
    // null), so all-zero is a valid value; `gmtime_r`/`localtime_r` only
    // write into the struct we pass and are thread-safe.
    let mut out: libc::tm = unsafe { std::mem::zeroed() };
    let tt = t as libc::time_t;
    let ok = unsafe {
        if utc {
            !libc::gmtime_r(&tt, &mut out).is_null()
        } else {
            !libc::localtime_r(&tt, &mut out).is_null()
        }
    };
    if !ok {
        // Only for times beyond the year 2^31; fall back to the epoch's
        // fields rather than panic.
        return Tm {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            weekday: 3,
            isdst: false,
        };
    }
    Tm {
        year: out.tm_year + 1900,
        month: out.tm_mon + 1,
        day: out.tm_mday,
        hour: out.tm_hour.into(),
        minute: out.tm_min.into(),
        second: out.tm_sec.into(),
        weekday: (i64::from(out.tm_wday) + 6) % 7,
        isdst: out.tm_isdst > 0,
    }
}

/// Python's `suffix` for `when`, and the shape of its `extMatch`.
fn suffix(when: When, t: &Tm) -> String {
    let date = format!("{:04}-{:02}-{:02}", t.year, t.month, t.day);
    match when {
        When::S => format!("{date}_{:02}-{:02}-{:02}", t.hour, t.minute, t.second),
        When::M => format!("{date}_{:02}-{:02}", t.hour, t.minute),
        When::H => format!("{date}_{:02}", t.hour),
        When::D | When::Midnight | When::Weekday(_) => date,
    }
}

/// `extMatch`: `d` stands for an ASCII digit, anything else for itself.
/// Python's `(\.\w+)?` tail never matters, as names are split at dots
/// before matching.
fn ext_shape(when: When) -> &'static str {
    match when {
        When::S => "dddd-dd-dd_dd-dd-dd",
        When::M => "dddd-dd-dd_dd-dd",
        When::H => "dddd-dd-dd_dd",
        When::D | When::Midnight | When::Weekday(_) => "dddd-dd-dd",
    }
}

/// Whether `s` is exactly a rotation suffix of `when` (`2026-11-21`).
pub(super) fn is_suffix(s: &str, when: When) -> bool {
    matches_shape(s, ext_shape(when))
}

fn matches_shape(part: &str, shape: &str) -> bool {
    part.len() == shape.len()
        && part.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

/// `os.path.splitext` of a file name: the stem keeps leading dots.
fn splitext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if name[..dot].bytes().any(|b| b != b'.') => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    }
}

/// `getFilesToDelete`: rotated files of `base` beyond `backup_count`,
/// oldest first. `skip_tmp` leaves out the compressor's `.tmp` files,
/// which are never backups.
pub(super) fn files_to_delete(
    base: &Path,
    when: When,
    backup_count: u32,
    skip_tmp: bool,
) -> io::Result<Vec<PathBuf>> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base_name) = base.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let (stem, _) = splitext(base_name);
    let prefix = format!("{stem}.");
    let shape = ext_shape(when);
    let mut result = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with(base_name) || !name.starts_with(&prefix) {
            continue;
        }
        if skip_tmp && name.ends_with(".tmp") {
            continue;
        }
        if name[prefix.len()..]
            .split('.')
            .any(|part| matches_shape(part, shape))
        {
            result.push(name);
        }
    }
    if result.len() < backup_count as usize {
        return Ok(Vec::new());
    }
    result.sort();
    result.truncate(result.len() - backup_count as usize);
    Ok(result.into_iter().map(|n| dir.join(n)).collect())
}

/// Parse a checked `HH:MM[:SS]`.
fn parse_at_time(t: &str) -> Option<i64> {
    let mut secs = 0;
    let mut parts = 0;
    for (i, p) in t.split(':').enumerate() {
        secs += p.parse::<i64>().ok()? * [3600, 60, 1].get(i)?;
        parts += 1;
    }
    (parts >= 2).then_some(secs)
}

impl TimedRotation {
    /// `mtime` is the file's before it was opened, if it existed.
    pub(super) fn new(
        config: &FileOutputConfig,
        when: When,
        mtime: Option<i64>,
        now: i64,
    ) -> TimedRotation {
        let unit = match when {
            When::S => 1,
            When::M => 60,
            When::H => 3600,
            When::D | When::Midnight => DAY,
            When::Weekday(_) => 7 * DAY,
        };
        let mut r = TimedRotation {
            when,
            interval: unit * i64::from(config.interval.max(1)),
            utc: config.text.utc,
            at_time: config.at_time.as_deref().and_then(parse_at_time),
            backup_count: config.backup_count,
            rollover_at: 0,
        };
        r.rollover_at = r.compute_rollover(mtime.unwrap_or(now));
        r
    }

    /// Take `old`'s next rollover if it runs on the same schedule (a
    /// reload that changed only `backup_count`, say): recomputing it from
    /// the file's mtime, which is now, would put it off by an interval.
    pub(super) fn keep_schedule_of(&mut self, old: &TimedRotation) {
        if (self.when, self.interval, self.utc, self.at_time)
            == (old.when, old.interval, old.utc, old.at_time)
        {
            self.rollover_at = old.rollover_at;
        }
    }

    fn midnight_or_weekly(&self) -> bool {
        matches!(self.when, When::Midnight | When::Weekday(_))
    }

    /// `computeRollover`.
    fn compute_rollover(&self, current: i64) -> i64 {
        let mut result = current + self.interval;
        if !self.midnight_or_weekly() {
            return result;
        }
        let t = tm(current, self.utc);
        let mut current_day = t.weekday;
        let rotate_ts = self.at_time.unwrap_or(DAY);
        let mut r = rotate_ts - ((t.hour * 60 + t.minute) * 60 + t.second);
        if r < 0 {
            r += DAY;
            current_day = (current_day + 1) % 7;
        }
        result = current + r;
        if let When::Weekday(dow) = self.when {
            let dow = i64::from(dow);
            let day = current_day;
            if day != dow {
                let days_to_wait = if day < dow {
                    dow - day
                } else {
                    6 - day + dow + 1
                };
                let mut new_rollover_at = result + days_to_wait * DAY;
                if !self.utc {
                    let dst_now = t.isdst;
                    let dst_at_rollover = tm(new_rollover_at, false).isdst;
                    if dst_now != dst_at_rollover {
                        new_rollover_at += if !dst_now { -3600 } else { 3600 };
                    }
                }
                result = new_rollover_at;
            }
        }
        result
    }

    /// `shouldRollover` at `now`; `regular` is whether the file is a
    /// regular file (bpo-89564: never roll over anything else).
    pub(super) fn should_rollover(&mut self, now: i64, regular: bool) -> bool {
        if now < self.rollover_at {
            return false;
        }
        if !regular {
            self.rollover_at = self.compute_rollover(now);
            return false;
        }
        true
    }

    /// The rotated name of the current file: `base.<start of interval>`,
    /// corrected for DST as `doRollover`.
    fn rotated_name(&self, base: &Path, now: i64) -> PathBuf {
        let t = self.rollover_at - self.interval;
        let time_tuple = if self.utc {
            tm(t, true)
        } else {
            let dst_now = tm(now, false).isdst;
            let then = tm(t, false);
            if dst_now != then.isdst {
                tm(t + if dst_now { 3600 } else { -3600 }, false)
            } else {
                then
            }
        };
        with_suffix(base, &format!(".{}", suffix(self.when, &time_tuple)))
    }

    /// `doRollover` on the closed file at `now`; then the next rollover.
    pub(super) fn rollover(
        &mut self,
        base: &Path,
        now: i64,
        compressor: Option<&Compressor>,
    ) -> io::Result<()> {
        let dst = self.rotated_name(base, now);
        let result = self.rename(base, &dst, compressor);
        self.advance(now);
        result
    }

    fn rename(&self, base: &Path, dst: &Path, compressor: Option<&Compressor>) -> io::Result<()> {
        if dst.exists() {
            std::fs::remove_file(dst)?;
        }
        if base.exists() {
            std::fs::rename(base, dst)?;
        }
        match compressor {
            // The compressor deletes old backups once the new one is
            // complete, so a half-written `.gz` never counts.
            Some(c) => c.rotate_timed(dst),
            None => {
                if self.backup_count > 0 {
                    for old in files_to_delete(base, self.when, self.backup_count, false)? {
                        std::fs::remove_file(old)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The next `rolloverAt` after a rollover at `now`.
    fn advance(&mut self, now: i64) {
        let mut next = self.compute_rollover(now);
        while next <= now {
            next += self.interval;
        }
        if self.midnight_or_weekly() && !self.utc {
            let dst_now = tm(now, false).isdst;
            let dst_at_rollover = tm(next, false).isdst;
            if dst_now != dst_at_rollover {
                next += if !dst_now { -3600 } else { 3600 };
            }
        }
        self.rollover_at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, TextFormat};

    fn config(interval: u32, at_time: Option<&str>) -> FileOutputConfig {
        FileOutputConfig {
            path: PathBuf::from("app.log"),
            encoding: Encoding::Text,
            text: TextFormat {
                utc: true,
                ..TextFormat::default()
            },
            max_bytes: 0,
            backup_count: 2,
            when: None,
            interval,
            at_time: at_time.map(str::to_string),
            compress: None,
            flush_ms: 100,
            fsync: false,
            truncate: false,
            max_open_files: None,
        }
    }

    // 2026-11-21 (a Saturday) 15:30:07 UTC.
    const T: i64 = 1_795_275_007;

    /// A reload that keeps the schedule keeps the next rollover; one that
    /// changes it takes the new one (from the file's mtime, as Python).
    #[test]
    fn a_reload_keeps_the_next_rollover_only_on_the_same_schedule() {
        let old = TimedRotation::new(&config(1, None), When::H, Some(T), T);
        let later = T + 1800;
        let mut more_backups = config(1, None);
        more_backups.backup_count = 9;
        let mut same = TimedRotation::new(&more_backups, When::H, Some(later), later);
        same.keep_schedule_of(&old);
        assert_eq!(same.rollover_at, T + 3600);
        let mut longer = TimedRotation::new(&config(2, None), When::H, Some(later), later);
        longer.keep_schedule_of(&old);
        assert_eq!(longer.rollover_at, later + 7200);
    }

    #[test]
    fn utc_schedule_matches_python() {
        // Values from Python 3.11's TimedRotatingFileHandler(utc=True)
        // .computeRollover(T) for the same settings.
        let cases: [(When, u32, Option<&str>, i64); 7] = [
            (When::S, 2, None, T + 2),
            (When::H, 1, None, T + 3600),
            (When::D, 1, None, T + DAY),
            (When::Midnight, 1, None, 1_795_305_600),
            (When::Midnight, 1, Some("03:00"), 1_795_316_400),
            (When::Weekday(0), 1, None, 1_795_478_400),
            // Today is W5: Python rolls over at the coming midnight.
            (When::Weekday(5), 1, None, 1_795_305_600),
        ];
        for (when, interval, at, want) in cases {
            let r = TimedRotation::new(&config(interval, at), when, None, T);
            assert_eq!(r.rollover_at, want, "{when:?} {at:?}");
        }
    }

    #[test]
    fn names_by_the_start_of_the_interval() {
        let mut r = TimedRotation::new(&config(1, None), When::S, Some(T), T + 100);
        assert_eq!(r.rollover_at, T + 1);
        assert!(r.should_rollover(T + 5, true));
        assert_eq!(
            r.rotated_name(Path::new("d/app.log"), T + 5),
            PathBuf::from("d/app.log.2026-11-21_15-30-07")
        );
        r.advance(T + 5);
        assert_eq!(r.rollover_at, T + 6);
    }

    #[test]
    fn deletes_the_oldest_backups_like_get_files_to_delete() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "app.log",
            "app.log.2026-11-19",
            "app.log.2026-11-20.gz",
            "app.log.2026-11-18",
            "app.log.2026-11-21",
            "app.log.2026-11-17.gz.tmp",
            "app.log.old",
            "other.log.2026-11-01",
        ] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let base = dir.path().join("app.log");
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(files_to_delete(&base, When::D, 2, true).unwrap()),
            ["app.log.2026-11-18", "app.log.2026-11-19"]
        );
        assert_eq!(
            names(files_to_delete(&base, When::D, 2, false).unwrap()),
            [
                "app.log.2026-11-17.gz.tmp",
                "app.log.2026-11-18",
                "app.log.2026-11-19"
            ]
        );
        assert!(files_to_delete(&base, When::D, 9, true).unwrap().is_empty());
        assert!(files_to_delete(&base, When::H, 1, true).unwrap().is_empty());
    }

    /// Python's computeRollover, doRollover's name and next rollover for
    /// a year of times, in this process's time zone (run it under e.g.
    /// `TZ=America/New_York` or `TZ=Australia/Lord_Howe` to cover DST).
    const PY_SCHEDULE: &str = r#"
import logging.handlers, json, os, sys, tempfile, time
base = os.path.join(tempfile.mkdtemp(), "app.log")
ts = range(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
out = []
for when in ["MIDNIGHT", "W0", "W6", "D", "H"]:
    h = logging.handlers.TimedRotatingFileHandler(base, when=when, delay=True)
    names = []
    h.rotate = lambda src, dfn: names.append(os.path.basename(dfn))
    for t in ts:
        r = h.computeRollover(t)
        h.rolloverAt = r
        real = time.time
        time.time = lambda: r + 5
        try:
            h.doRollover()
        finally:
            time.time = real
        out.append([when, t, r, names[-1], h.rolloverAt])
print(json.dumps(out))
"#;

    #[test]
    fn local_schedule_and_dst_match_python() {
        // 2026-01-01 to 2027-01-01 UTC, every 5h 17m 13s.
        let (from, to, step) = (1_767_225_600i64, 1_798_761_600i64, 19_033i64);
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(PY_SCHEDULE)
            .args([from.to_string(), to.to_string(), step.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<(String, i64, i64, String, i64)> =
            serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), 5 * ((to - from + step - 1) / step) as usize);
        let mut local = config(1, None);
        local.text.utc = false;
        for (when_name, t, want_at, want_name, want_next) in rows {
            let when = match when_name.as_str() {
                "MIDNIGHT" => When::Midnight,
                "W0" => When::Weekday(0),
                "W6" => When::Weekday(6),
                "D" => When::D,
                _ => When::H,
            };
            let mut r = TimedRotation::new(&local, when, Some(t), t);
            assert_eq!(r.rollover_at, want_at, "{when_name} computeRollover({t})");
            let name = r.rotated_name(Path::new("app.log"), want_at + 5);
            assert_eq!(name, PathBuf::from(&want_name), "{when_name} at {t}");
            r.advance(want_at + 5);
            assert_eq!(r.rollover_at, want_next, "{when_name} next after {t}");
        }
    }

    #[test]
    fn splitext_keeps_leading_dots() {
        assert_eq!(splitext("app.log"), ("app", ".log"));
        assert_eq!(splitext(".log"), (".log", ""));
        assert_eq!(splitext("app"), ("app", ""));
        assert_eq!(splitext("a.b.c"), ("a.b", ".c"));
    }
}
