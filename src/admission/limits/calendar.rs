//! UTC days and calendar months, for the daily and monthly budgets (no time-zone database: budgets are UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn utc_day(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How long until 00:00 UTC on the 1st of the next month.
pub(super) fn until_next_utc_month(wall: SystemTime) -> Duration {
    let ym = i64::from(utc_month(wall));
    let (year, month) = (ym / 100, ym % 100);
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let start = days_from_civil(ny, nm, 1) * 86_400;
    let now = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    Duration::from_secs((start - now).max(1).unsigned_abs())
}

/// The UTC calendar month of `wall`, as YYYYMM.
pub(crate) fn utc_month(wall: SystemTime) -> u32 {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = i64::try_from(utc_day(wall)).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u32::try_from(year * 100 + month).unwrap_or(u32::MAX)
}

pub(super) fn until_utc_midnight(wall: SystemTime) -> Duration {
    let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Duration::from_secs(86_400 - secs % 86_400)
}
