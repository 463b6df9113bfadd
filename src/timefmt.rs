//! Time parsing and printing without a date crate: Docker's RFC 3339 timestamps in, and the
//! handful of Go layouts logspout users see out (`.Timestamp`, `time.RFC3339Nano`,
//! `time.Time.String()`).
//!
//! Times are plain `i64` nanoseconds since the Unix epoch, in UTC, which is what a
//! [`crate::message::Message`] carries. Calendar arithmetic uses Howard Hinnant's
//! days-from-civil algorithms, which are exact over the whole proleptic Gregorian calendar and
//! need no tables. Everything here appends to the caller's buffer and never allocates, because
//! it runs for every log line.

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// A UTC instant broken down into calendar fields, as Go's `time.Time` accessors return them.
///
/// It exists so the template's Go layout formatter and the writers here share one breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// The proleptic Gregorian year (1677 to 2262 for an `i64` of nanoseconds).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
    /// 0 to 999 999 999.
    pub nanos: u32,
    /// 0 is Sunday, as Go's `time.Weekday`.
    pub weekday: u32,
    /// Day of the year, 1 to 366.
    pub yday: u32,
}

impl Civil {
    /// Breaks `ns` (nanoseconds since the epoch) down into UTC calendar fields.
    ///
    /// Instants before the epoch round towards the past, as Go does, so the fraction of a second
    /// is never negative.
    pub fn from_nanos(ns: i64) -> Civil {
        let secs = ns.div_euclid(NANOS_PER_SEC);
        let nanos = ns.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: tod / 3600,
            minute: tod / 60 % 60,
            second: tod % 60,
            nanos,
            // 1970-01-01 was a Thursday (4).
            weekday: (days + 4).rem_euclid(7) as u32,
            yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1-12, `day` 1-31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `(year, month, day)` of a count of days since 1970-01-01; the inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `year` has a 29th of February.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Number of days in `month` (1-12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses the RFC 3339 timestamp at the start of `s`, returning nanoseconds since the epoch
/// and the number of bytes it took.
///
/// Docker prefixes every line with one when asked for timestamps
/// (`2026-11-22T05:12:01.412535692Z`); fractions of 0 to 9 digits and `+hh:mm`/`-hh:mm`
/// offsets are accepted too, and digits past the ninth are read and ignored, as Go does.
/// Returns `None` for anything else, including out-of-range fields and instants outside the
/// `i64` nanosecond range (years 1677-2262).
pub fn parse_rfc3339_nanos(s: &[u8]) -> Option<(i64, usize)> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = i64::from(fixed_digits(s, 0, 4)?);
    let month = fixed_digits(s, 5, 2)?;
    let day = fixed_digits(s, 8, 2)?;
    let hour = fixed_digits(s, 11, 2)?;
    let minute = fixed_digits(s, 14, 2)?;
    let second = fixed_digits(s, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut i = 19;
    let mut nanos: i64 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(d - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }

    let offset_secs = match s.get(i) {
        Some(b'Z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            if s.get(i + 3) != Some(&b':') {
                return None;
            }
            let oh = fixed_digits(s, i + 1, 2)?;
            let om = fixed_digits(s, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let off = i64::from(oh * 3600 + om * 60);
            if sign == b'-' { -off } else { off }
        }
        _ => return None,
    };

    let secs =
        days_from_civil(year, month, day) * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    // In i128 so instants just inside the range whose whole seconds are not (1677-09-21) work.
    let ns = i128::from(secs) * i128::from(NANOS_PER_SEC) + i128::from(nanos);
    Some((i64::try_from(ns).ok()?, i))
}

/// The value of the `width` ASCII digits at `s[at..]`, or `None` if any is missing or not a
/// digit.
fn fixed_digits(s: &[u8], at: usize, width: usize) -> Option<u32> {
    let digits = s.get(at..at + width)?;
    digits.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// Appends `ns` as RFC 3339 in UTC truncated to the second: `2021-12-06T15:27:06Z`.
///
/// This is logspout's syslog `.Timestamp` (Go's `time.RFC3339`).
pub fn write_rfc3339_seconds(ns: i64, out: &mut Vec<u8>) {
    let c = Civil::from_nanos(ns);
    write_date_time(&c, b'T', out);
    out.push(b'Z');
}

/// Appends `ns` as Go's `time.RFC3339Nano` in UTC: the fraction loses its trailing zeros and
/// disappears when it is zero (`2021-12-06T15:27:06.12345Z`, `2021-12-06T15:27:06Z`).
///
/// This is how Go's JSON encoder writes a `time.Time`.
pub fn write_rfc3339_nanos(ns: i64, out: &mut Vec<u8>) {
    let c = Civil::from_nanos(ns);
    write_date_time(&c, b'T', out);
    write_trimmed_fraction(c.nanos, out);
    out.push(b'Z');
}

/// Appends `ns` as Go's `time.Time.String()` of a UTC time without the monotonic clock
/// reading: `2021-12-06 15:27:06.123456789 +0000 UTC`.
///
/// This is what `{{.Time}}` prints in a logspout template.
pub fn write_go_time_string(ns: i64, out: &mut Vec<u8>) {
    let c = Civil::from_nanos(ns);
    write_date_time(&c, b' ', out);
    write_trimmed_fraction(c.nanos, out);
    out.extend_from_slice(b" +0000 UTC");
}

/// `2006-01-02<sep>15:04:05`.
fn write_date_time(c: &Civil, sep: u8, out: &mut Vec<u8>) {
    write_year(c.year, out);
    out.push(b'-');
    write_padded(c.month, 2, b'0', out);
    out.push(b'-');
    write_padded(c.day, 2, b'0', out);
    out.push(sep);
    write_padded(c.hour, 2, b'0', out);
    out.push(b':');
    write_padded(c.minute, 2, b'0', out);
    out.push(b':');
    write_padded(c.second, 2, b'0', out);
}

/// Go's `.999999999`: a dot and up to nine digits without trailing zeros, or nothing at all.
fn write_trimmed_fraction(nanos: u32, out: &mut Vec<u8>) {
    if nanos == 0 {
        return;
    }
    let mut digits = 9;
    let mut n = nanos;
    while n.is_multiple_of(10) {
        n /= 10;
        digits -= 1;
    }
    out.push(b'.');
    write_padded(n, digits, b'0', out);
}

/// Appends a year as Go's `2006` does: at least four digits, with a minus sign before year 0.
pub fn write_year(year: i64, out: &mut Vec<u8>) {
    if year < 0 {
        out.push(b'-');
    }
    let abs = year.unsigned_abs();
    if abs < 10_000 {
        write_padded(abs as u32, 4, b'0', out);
    } else {
        write_u64(abs, out);
    }
}

/// Appends `n` in decimal, left-padded with `pad` to at least `width` characters.
pub fn write_padded(n: u32, width: usize, pad: u8, out: &mut Vec<u8>) {
    let mut buf = [0u8; 10];
    let digits = format_u64(u64::from(n), &mut buf);
    for _ in digits.len()..width {
        out.push(pad);
    }
    out.extend_from_slice(digits);
}

/// Appends `n` in decimal, with a leading `-` when negative.
pub fn write_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(n.unsigned_abs(), out);
}

/// Appends `n` in decimal.
pub fn write_u64(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_u64(n, &mut buf));
}

/// Writes the decimal digits of `n` at the end of `buf` and returns them.
fn format_u64(mut n: u64, buf: &mut [u8]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// English month names, January first, for the time formatters (Go layouts, strftime).
pub const MONTHS: [&str; 12] = [
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

/// English weekday names, Sunday first (as [`Civil::weekday`] counts).
pub const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// The current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2021-12-06T15:27:06.123456789Z, the fixed instant of the reference's test vectors.
    const T: i64 = 1_638_804_426_123_456_789;

    fn parse(s: &str) -> Option<(i64, usize)> {
        parse_rfc3339_nanos(s.as_bytes())
    }

    fn show(f: fn(i64, &mut Vec<u8>), ns: i64) -> String {
        let mut out = Vec::new();
        f(ns, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(parse("2021-12-06T15:27:06.123456789Z"), Some((T, 30)));
        assert_eq!(parse("2021-12-06T15:27:06.123456789Z hello"), Some((T, 30)));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some((0, 20)));
        assert_eq!(parse("2021-12-06T15:27:06Z"), Some((T - 123_456_789, 20)));
        assert_eq!(parse("2021-12-06T15:27:06.1Z"), Some((T - 23_456_789, 22)));
        assert_eq!(parse("2021-12-06T15:27:06.000000001Z"), Some((T - 123_456_788, 30)));
        assert_eq!(parse("2026-11-22T05:12:01.412535692Z").map(|p| p.1), Some(30));
    }

    #[test]
    fn parses_offsets_and_long_fractions() {
        assert_eq!(parse("2021-12-06T16:27:06.123456789+01:00"), Some((T, 35)));
        assert_eq!(parse("2021-12-06T10:57:06.123456789-04:30"), Some((T, 35)));
        assert_eq!(parse("2021-12-06T15:27:06.1234567891234Z"), Some((T, 34)), "digits past the ninth are ignored");
        assert_eq!(parse("1969-12-31T23:59:59.5Z"), Some((-500_000_000, 22)));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "",
            "2021-12-06",
            "2021-12-06 15:27:06Z",
            "2021-12-06T15:27:06",
            "2021-12-06T15:27:06.Z",
            "2021-13-06T15:27:06Z",
            "2021-00-06T15:27:06Z",
            "2021-02-29T15:27:06Z",
            "2021-04-31T15:27:06Z",
            "2021-12-06T24:00:00Z",
            "2021-12-06T23:60:00Z",
            "2021-12-06T23:59:60Z",
            "2021-12-06T15:27:06+0100",
            "2021-12-06T15:27:06+24:00",
            "202a-12-06T15:27:06Z",
            "2021-12-06T15:27:06.12x",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leap_years() {
        assert_eq!(parse("2020-02-29T00:00:00Z").map(|p| p.0 / NANOS_PER_SEC), Some(1_582_934_400));
        assert_eq!(parse("2000-02-29T00:00:00Z").map(|p| p.0 / NANOS_PER_SEC), Some(951_782_400));
        assert_eq!(parse("1900-02-29T00:00:00Z"), None);
        assert!(is_leap_year(2000) && is_leap_year(2024) && !is_leap_year(1900) && !is_leap_year(2023));
        let c = Civil::from_nanos(parse("2024-12-31T12:00:00Z").unwrap().0);
        assert_eq!((c.yday, c.weekday), (366, 2));
    }

    #[test]
    fn civil_round_trips_over_a_wide_range() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn breaks_down_known_instants() {
        let c = Civil::from_nanos(T);
        assert_eq!(
            c,
            Civil {
                year: 2021,
                month: 12,
                day: 6,
                hour: 15,
                minute: 27,
                second: 6,
                nanos: 123_456_789,
                weekday: 1,
                yday: 340
            }
        );
        let c = Civil::from_nanos(-1);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos),
            (1969, 12, 31, 23, 59, 59, 999_999_999)
        );
        assert_eq!(Civil::from_nanos(0).weekday, 4);
    }

    #[test]
    fn writes_go_layouts() {
        assert_eq!(show(write_rfc3339_seconds, T), "2021-12-06T15:27:06Z");
        assert_eq!(show(write_rfc3339_nanos, T), "2021-12-06T15:27:06.123456789Z");
        assert_eq!(show(write_rfc3339_nanos, T - 6_789), "2021-12-06T15:27:06.12345Z");
        assert_eq!(show(write_rfc3339_nanos, T - 123_456_789), "2021-12-06T15:27:06Z");
        assert_eq!(show(write_go_time_string, T), "2021-12-06 15:27:06.123456789 +0000 UTC");
        assert_eq!(show(write_go_time_string, T - 23_456_789), "2021-12-06 15:27:06.1 +0000 UTC");
        assert_eq!(show(write_go_time_string, 0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(show(write_rfc3339_seconds, -1), "1969-12-31T23:59:59Z", "truncation goes towards the past");
        assert_eq!(show(write_rfc3339_nanos, i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(show(write_rfc3339_nanos, i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn parse_and_write_round_trip() {
        for ns in [T, 0, -1, 1, 951_782_400 * NANOS_PER_SEC + 7, i64::MAX, i64::MIN] {
            let s = show(write_rfc3339_nanos, ns);
            assert_eq!(parse(&s), Some((ns, s.len())), "{s}");
        }
    }

    #[test]
    fn writes_numbers() {
        let mut out = Vec::new();
        write_i64(i64::MIN, &mut out);
        out.push(b' ');
        write_i64(0, &mut out);
        out.push(b' ');
        write_u64(u64::MAX, &mut out);
        out.push(b' ');
        write_padded(7, 3, b' ', &mut out);
        write_year(-12, &mut out);
        write_year(12_345, &mut out);
        assert_eq!(out, b"-9223372036854775808 0 18446744073709551615   7-001212345");
    }
}
