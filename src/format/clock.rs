//! `Formatter.formatTime`: `created` to a broken-down time in the output's
//! zone (`time.localtime`, or `time.gmtime` with `utc`), then `strftime`.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::strftime::Tm;

/// The zone Python's `time.localtime` uses: `TZ` if it is set, else
/// `/etc/localtime`. jiff's `TimeZone::system()` answers the same, but
/// to name the zone it first lists every file of the zoneinfo database
/// (about 600): two thirds of logrelay's start-up instructions, and 2-3 ms
/// of CPU at every start. Without `TZ`, this reads `/etc/localtime` itself
/// (the file the symlink names, so the same rules); anything else (`TZ`
/// set, no readable `/etc/localtime`) is left to jiff.
pub fn local_zone() -> TimeZone {
    const LOCALTIME: &str = "/etc/localtime";
    if std::env::var_os("TZ").is_none() {
        if let Ok(data) = std::fs::read(LOCALTIME) {
            // The IANA name, as jiff would give it, where the file is a
            // link into a zoneinfo directory.
            let target = std::fs::read_link(LOCALTIME).ok();
            let name = target
                .as_deref()
                .and_then(|t| t.to_str()?.rsplit_once("zoneinfo/"))
                .map_or("Local", |(_, name)| name);
            if let Ok(tz) = TimeZone::tzif(name, &data) {
                return tz;
            }
        }
    }
    TimeZone::system()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The zone read from `/etc/localtime` gives the offsets and
    /// abbreviations jiff's own system zone gives, at instants across
    /// DST changes and a century (`TZ` unset, as a service runs).
    #[test]
    fn local_zone_is_the_system_zone() {
        let ours = local_zone();
        let jiffs = TimeZone::system();
        // Named as jiff names it when /etc/localtime links into zoneinfo.
        if std::fs::read_link("/etc/localtime")
            .is_ok_and(|t| t.to_string_lossy().contains("zoneinfo/"))
        {
            assert_eq!(ours.iana_name(), jiffs.iana_name());
        }
        for secs in (-2_208_988_800i64..4_102_444_800).step_by(7_776_007) {
            let ts = Timestamp::from_second(secs).unwrap();
            let (a, b) = (ours.to_offset_info(ts), jiffs.to_offset_info(ts));
            assert_eq!(a.offset(), b.offset(), "at {secs}");
            assert_eq!(a.abbreviation(), b.abbreviation(), "at {secs}");
        }
    }
}
