//! `Formatter.formatTime`: `created` to a broken-down time in the output's
//! zone (`time.localtime`, or `time.gmtime` with `utc`), then `strftime`.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::strftime::Tm;

/// `int(time.time())`, floored before 1970 too. Timed rotation reads it
/// (Python's timed rotation looks at the clock when it emits, not at the
/// record's `created`), and so does a path template for a record without
/// `created`.
pub(crate) fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// Broken-down time of whole second `secs` (Python floors `created`).
/// `None` outside the range jiff (and, in practice, Python) handles.
pub fn broken_down(secs: i64, tz: &TimeZone, utc: bool) -> Option<Tm> {
    let ts = Timestamp::from_second(secs).ok()?;
    let (dt, gmtoff, zone) = if utc {
        // time.gmtime sets tm_zone to "GMT" on glibc.
        (ts.to_zoned(TimeZone::UTC).datetime(), 0, "GMT".to_string())
    } else {
        let info = tz.to_offset_info(ts);
        let off = info.offset();
        (
            off.to_datetime(ts),
            off.seconds(),
            info.abbreviation().to_string(),
        )
    };
    let epoch = if utc {
        // glibc's %s calls mktime, which reads the UTC fields as local time
        // with tm_isdst = 0 (what time.gmtime sets): as standard time, even
        // inside DST or a DST gap.
        let near = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        let info = tz.to_offset_info(near);
        let std = if info.dst().is_dst() {
            // The standard offset is the last one before this DST period
            // (Berlin's 1945 "double summer time" was DST on DST).
            tz.preceding(near)
                .take(16)
                .find(|t| !t.dst().is_dst())
                .map_or(info.offset().seconds() - 3600, |t| t.offset().seconds())
        } else {
            info.offset().seconds()
        };
        let civil = dt.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second();
        civil - i64::from(std)
    } else {
        secs
    };
    Some(Tm {
        year: i64::from(dt.year()),
        mon: dt.month() as u8,
        mday: dt.day() as u8,
        hour: dt.hour() as u8,
        min: dt.minute() as u8,
        sec: dt.second() as u8,
        wday: dt.weekday().to_sunday_zero_offset() as u8,
        yday: (dt.day_of_year() - 1) as u16,
        gmtoff,
        zone,
        epoch,
    })
}
