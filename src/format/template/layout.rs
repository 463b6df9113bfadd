//! The fast forms that print a field with no allocation, Go's JSON encoding and Go's time layouts.

use super::*;

/// The PRI of a line: user.info for stdout, user.err for stderr (logspout's `.Priority`).
pub(super) fn priority(source: Source) -> i64 {
    match source {
        Source::Stdout => 14,
        Source::Stderr => 11,
    }
}

/// Prints a field as Go's template engine does (`fmt.Print` of the value).
pub(super) fn print_field(field: &Field, msg: &Message, out: &mut Vec<u8>) {
    let c = &msg.container;
    match field {
        Field::Data => out.extend_from_slice(&msg.data),
        Field::Source => out.extend_from_slice(msg.source.as_str().as_bytes()),
        Field::Time => timefmt::write_go_time_string(msg.time_ns, out),
        Field::TimeUnix => timefmt::write_i64(unix_seconds(msg.time_ns), out),
        Field::ContainerId => out.extend_from_slice(c.id.as_bytes()),
        Field::ContainerName => {
            out.push(b'/');
            out.extend_from_slice(c.name.as_bytes());
        }
        Field::ImageId => out.extend_from_slice(c.image_id.as_bytes()),
        Field::ConfigImage => out.extend_from_slice(c.image.as_bytes()),
        Field::ConfigHostname => out.extend_from_slice(c.hostname.as_bytes()),
        Field::Labels => {
            out.extend_from_slice(b"map[");
            for (i, (k, v)) in c.labels.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
            }
            out.push(b']');
        }
        Field::Label(key) => match c.labels.get(key) {
            Some(v) => out.extend_from_slice(v.as_bytes()),
            None => out.extend_from_slice(b"<no value>"),
        },
        Field::Pid => timefmt::write_i64(c.pid, out),
        Field::Tty => out.extend_from_slice(if c.tty { b"true" } else { b"false" }),
        Field::Priority => timefmt::write_i64(priority(msg.source), out),
        Field::Timestamp => timefmt::write_rfc3339_seconds(msg.time_ns, out),
        Field::BareName => out.extend_from_slice(c.name.as_bytes()),
        Field::Hostname(h) => out.extend_from_slice(h.as_bytes()),
    }
}

/// Go's `time.Time.Unix`: whole seconds, rounded towards the past.
pub(super) fn unix_seconds(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// Writes a field as Go's `json.Marshal` would (`toJSON`).
pub(super) fn json_field(field: &Field, msg: &Message, out: &mut Vec<u8>) {
    let c = &msg.container;
    match field {
        Field::Data => write_json_string(&[&msg.data], out),
        Field::Source => write_json_string(&[msg.source.as_str().as_bytes()], out),
        Field::Time => {
            out.push(b'"');
            timefmt::write_rfc3339_nanos(msg.time_ns, out);
            out.push(b'"');
        }
        Field::Timestamp => {
            out.push(b'"');
            timefmt::write_rfc3339_seconds(msg.time_ns, out);
            out.push(b'"');
        }
        Field::ContainerName => write_json_string(&[b"/", c.name.as_bytes()], out),
        Field::Labels => write_json_map(&c.labels, out),
        // A missing key is Go's invalid value, which reaches toJSON as nil.
        Field::Label(key) => match c.labels.get(key) {
            Some(v) => write_json_string(&[v.as_bytes()], out),
            None => out.extend_from_slice(b"null"),
        },
        Field::TimeUnix | Field::Pid | Field::Tty | Field::Priority => print_field(field, msg, out),
        Field::ContainerId => write_json_string(&[c.id.as_bytes()], out),
        Field::ImageId => write_json_string(&[c.image_id.as_bytes()], out),
        Field::ConfigImage => write_json_string(&[c.image.as_bytes()], out),
        Field::ConfigHostname => write_json_string(&[c.hostname.as_bytes()], out),
        Field::BareName => write_json_string(&[c.name.as_bytes()], out),
        Field::Hostname(h) => write_json_string(&[h.as_bytes()], out),
    }
}

/// Appends a map of strings as Go's `json.Marshal` writes a `map[string]string`: keys sorted
/// (a `BTreeMap` is), each key and value escaped by [`write_json_string`].
pub(super) fn write_json_map(map: &BTreeMap<String, String>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(&[k.as_bytes()], out);
        out.push(b':');
        write_json_string(&[v.as_bytes()], out);
    }
    out.push(b'}');
}

/// Whether Go's HTML-escaping JSON encoder writes an ASCII byte as is.
pub(super) fn json_safe(b: u8) -> bool {
    (0x20..0x80).contains(&b) && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
}

/// Appends the concatenation of `pieces` as a JSON string exactly as Go's `json.Marshal`
/// writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped, control characters as `\n`, `\r`,
/// `\t` or `\u00XX`, and each byte of invalid UTF-8 as `\ufffd`.
pub(super) fn write_json_string(pieces: &[&[u8]], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for s in pieces {
        let mut start = 0;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if json_safe(b) {
                i += 1;
                continue;
            }
            let width = if b < 0x80 { 1 } else { utf8_width(&s[i..]) };
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            if width > 1 && !matches!(&s[i..i + width], [0xe2, 0x80, 0xa8 | 0xa9]) {
                i += width;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..0x80 => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
                _ if width == 1 => out.extend_from_slice(b"\\ufffd"),
                _ => out.extend_from_slice(&[b'\\', b'u', b'2', b'0', b'2', HEX[usize::from(s[i + 2] & 0xf)]]),
            }
            i += width;
            start = i;
        }
        out.extend_from_slice(&s[start..]);
    }
    out.push(b'"');
}

/// The length of the valid UTF-8 character at the start of `s` (which starts with a non-ASCII
/// byte), or 1 when it is invalid, as Go's `utf8.DecodeRune` counts it.
pub(super) fn utf8_width(s: &[u8]) -> usize {
    let width = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 1,
    };
    match s.get(..width).map(std::str::from_utf8) {
        Some(Ok(_)) => width,
        _ => 1,
    }
}

/// One element of a compiled Go time layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LayoutItem {
    /// Literal text, including zone tokens, which are constant for UTC.
    Text(Vec<u8>),
    /// `2006`.
    Year,
    /// `06`.
    Year2,
    /// `Jan`.
    MonthShort,
    /// `January`.
    MonthLong,
    /// `1`.
    Month,
    /// `01`.
    Month0,
    /// `Mon`.
    WeekdayShort,
    /// `Monday`.
    WeekdayLong,
    /// `2`.
    Day,
    /// `_2`.
    DaySpace,
    /// `02`.
    Day0,
    /// `__2`.
    YearDaySpace,
    /// `002`.
    YearDay0,
    /// `15`.
    Hour,
    /// `3`.
    Hour12,
    /// `03`.
    Hour12Zero,
    /// `4`.
    Minute,
    /// `04`.
    Minute0,
    /// `5`.
    Second,
    /// `05`.
    Second0,
    /// `PM`.
    PmUpper,
    /// `pm`.
    PmLower,
    /// `.000`, `.999`, `,000`…: separator, digits, and whether trailing zeros are dropped.
    Fraction { sep: u8, digits: usize, trim: bool },
}

/// Compiles a Go layout, recognising tokens exactly where Go's `nextStdChunk` does.
pub(super) fn compile_layout(layout: &[u8]) -> Vec<LayoutItem> {
    let b = layout;
    let mut items = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match layout_token(b, i) {
            Some((item, len)) => {
                match item {
                    LayoutItem::Text(t) => text.extend_from_slice(&t),
                    item => {
                        if !text.is_empty() {
                            items.push(LayoutItem::Text(std::mem::take(&mut text)));
                        }
                        items.push(item);
                    }
                }
                i += len;
            }
            None => {
                text.push(b[i]);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        items.push(LayoutItem::Text(text));
    }
    items
}

/// The layout token starting at `b[i]`, and its length.
pub(super) fn layout_token(b: &[u8], i: usize) -> Option<(LayoutItem, usize)> {
    use LayoutItem::*;
    let at = |s: &str| b[i..].starts_with(s.as_bytes());
    let lower_after = |n: usize| b.get(i + n).is_some_and(u8::is_ascii_lowercase);
    let text = |s: &str, n: usize| Some((Text(s.as_bytes().to_vec()), n));
    match b[i] {
        b'J' if at("January") => Some((MonthLong, 7)),
        b'J' if at("Jan") && !lower_after(3) => Some((MonthShort, 3)),
        b'M' if at("Monday") => Some((WeekdayLong, 6)),
        b'M' if at("Mon") && !lower_after(3) => Some((WeekdayShort, 3)),
        b'M' if at("MST") => text("UTC", 3),
        b'0' => match b.get(i + 1) {
            Some(b'1') => Some((Month0, 2)),
            Some(b'2') => Some((Day0, 2)),
            Some(b'3') => Some((Hour12Zero, 2)),
            Some(b'4') => Some((Minute0, 2)),
            Some(b'5') => Some((Second0, 2)),
            Some(b'6') => Some((Year2, 2)),
            _ if at("002") => Some((YearDay0, 3)),
            _ => None,
        },
        b'1' if at("15") => Some((Hour, 2)),
        b'1' => Some((Month, 1)),
        b'2' if at("2006") => Some((Year, 4)),
        b'2' => Some((Day, 1)),
        // `_2006` is a literal `_` followed by the year.
        b'_' if at("_2") && !at("_2006") => Some((DaySpace, 2)),
        b'_' if at("__2") => Some((YearDaySpace, 3)),
        b'3' => Some((Hour12, 1)),
        b'4' => Some((Minute, 1)),
        b'5' => Some((Second, 1)),
        b'P' if at("PM") => Some((PmUpper, 2)),
        b'p' if at("pm") => Some((PmLower, 2)),
        b'-' if at("-070000") => text("+000000", 7),
        b'-' if at("-07:00:00") => text("+00:00:00", 9),
        b'-' if at("-0700") => text("+0000", 5),
        b'-' if at("-07:00") => text("+00:00", 6),
        b'-' if at("-07") => text("+00", 3),
        b'Z' if at("Z070000") => text("Z", 7),
        b'Z' if at("Z07:00:00") => text("Z", 9),
        b'Z' if at("Z0700") => text("Z", 5),
        b'Z' if at("Z07:00") => text("Z", 6),
        b'Z' if at("Z07") => text("Z", 3),
        sep @ (b'.' | b',') => {
            let digit = *b.get(i + 1).filter(|&&d| d == b'0' || d == b'9')?;
            let run = b[i + 1..].iter().take_while(|&&d| d == digit).count();
            // Only a fraction if the run of digits ends here.
            if b.get(i + 1 + run).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            Some((Fraction { sep, digits: run, trim: digit == b'9' }, run + 1))
        }
        _ => None,
    }
}

/// Appends `ns` formatted with a compiled layout, in UTC, as Go's `Time.Format`.
pub(super) fn format_time(layout: &[LayoutItem], ns: i64, out: &mut Vec<u8>) {
    use LayoutItem::*;
    let t = civil(ns);
    let month = MONTHS[(t.month - 1) as usize];
    let weekday = WEEKDAYS[t.weekday as usize];
    let hour12 = if t.hour.is_multiple_of(12) { 12 } else { t.hour % 12 };
    for item in layout {
        match item {
            Text(text) => out.extend_from_slice(text),
            Year => timefmt::write_year(t.year, out),
            Year2 => timefmt::write_padded(t.year.rem_euclid(100) as u32, 2, b'0', out),
            MonthShort => out.extend_from_slice(&month.as_bytes()[..3]),
            MonthLong => out.extend_from_slice(month.as_bytes()),
            Month => timefmt::write_padded(t.month, 1, b'0', out),
            Month0 => timefmt::write_padded(t.month, 2, b'0', out),
            WeekdayShort => out.extend_from_slice(&weekday.as_bytes()[..3]),
            WeekdayLong => out.extend_from_slice(weekday.as_bytes()),
            Day => timefmt::write_padded(t.day, 1, b'0', out),
            DaySpace => timefmt::write_padded(t.day, 2, b' ', out),
            Day0 => timefmt::write_padded(t.day, 2, b'0', out),
            YearDaySpace => timefmt::write_padded(t.yday, 3, b' ', out),
            YearDay0 => timefmt::write_padded(t.yday, 3, b'0', out),
            Hour => timefmt::write_padded(t.hour, 2, b'0', out),
            Hour12 => timefmt::write_padded(hour12, 1, b'0', out),
            Hour12Zero => timefmt::write_padded(hour12, 2, b'0', out),
            Minute => timefmt::write_padded(t.minute, 1, b'0', out),
            Minute0 => timefmt::write_padded(t.minute, 2, b'0', out),
            Second => timefmt::write_padded(t.second, 1, b'0', out),
            Second0 => timefmt::write_padded(t.second, 2, b'0', out),
            PmUpper => out.extend_from_slice(if t.hour >= 12 { b"PM" } else { b"AM" }),
            PmLower => out.extend_from_slice(if t.hour >= 12 { b"pm" } else { b"am" }),
            Fraction { sep, digits, trim } => write_fraction(t.nanos, *sep, *digits, *trim, out),
        }
    }
}

/// Go's `appendNano`: `digits` (at most 9) digits of the fraction; with `trim`, trailing zeros
/// go, and the separator too when nothing is left.
pub(super) fn write_fraction(nanos: u32, sep: u8, digits: usize, trim: bool, out: &mut Vec<u8>) {
    let digits = digits.min(9);
    let mut value = nanos / 10u32.pow(9 - digits as u32);
    let mut width = digits;
    if trim {
        while width > 0 && value.is_multiple_of(10) {
            value /= 10;
            width -= 1;
        }
        if width == 0 {
            return;
        }
    }
    out.push(sep);
    timefmt::write_padded(value, width, b'0', out);
}
