//! One entry of Docker's json-file log, parsed in place.
//!
//! dockerd writes every entry as one line, `{"log":"…","stream":"stdout","attrs":{…},"time":"…"}`
//! (`attrs` only with `--log-opt labels/env/tag`), keys in that order. A `log` string without
//! escapes (a piece of a long line) is a slice of the read buffer: no allocation. A whole line
//! ends with an escaped `\n`, so it is unescaped into a buffer of its own, without that `\n`:
//! when the `\n` is its only escape (the usual case), one allocation of exactly the line's
//! length, which `Bytes` owns as it is (a buffer with room to spare, or a slice of one, costs
//! `Bytes` a second allocation for the count its clones share). Any other layout (keys in
//! another order, whitespace) is still read, by the same small scanner; only an entry that is
//! not a JSON object with those fields is refused.

use bytes::Bytes;

use crate::message::Source;
use crate::timefmt::parse_rfc3339_nanos;

/// One parsed entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub source: Source,
    /// Docker's nanosecond `time`.
    pub time_ns: i64,
    /// The `log` string without its final `\n`: a line, or a piece of one (an entry Docker
    /// split at 16 KiB).
    pub log: Bytes,
    /// Whether `log` ended with `\n`, ending a line.
    pub ends_line: bool,
}

/// Why an entry could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not a JSON object of strings as dockerd writes them.
    Syntax,
    /// `log`, `stream` or `time` missing, or `stream`/`time` with a value dockerd never writes.
    Fields,
}

/// Parses `line` (one entry without its `\n`), a slice of `chunk`, so that an unescaped `log`
/// shares `chunk`'s memory.
pub fn parse(chunk: &Bytes, line: std::ops::Range<usize>) -> Result<Entry, Malformed> {
    let base = line.start;
    let s = &chunk[line];
    let mut p = Scanner { s, i: 0 };
    p.expect(b'{')?;
    let (mut log, mut stream, mut time) = (None, None, None);
    loop {
        p.skip_ws();
        if p.peek() == Some(b'}') {
            break;
        }
        let key = p.string_span()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        match &s[key.0..key.1] {
            b"log" => {
                let (start, end, escaped) = p.string_raw()?;
                log = Some(if escaped {
                    unescape(&s[start..end]).ok_or(Malformed::Syntax)?
                } else {
                    (chunk.slice(base + start..base + end), false)
                });
            }
            b"stream" => {
                let (start, end, _) = p.string_raw()?;
                stream = Some(match &s[start..end] {
                    b"stdout" => Source::Stdout,
                    b"stderr" => Source::Stderr,
                    _ => return Err(Malformed::Fields),
                });
            }
            b"time" => {
                let (start, end, _) = p.string_raw()?;
                let (ns, used) = parse_rfc3339_nanos(&s[start..end]).ok_or(Malformed::Fields)?;
                if used != end - start {
                    return Err(Malformed::Fields);
                }
                time = Some(ns);
            }
            _ => p.skip_value(0)?,
        }
        p.skip_ws();
        match p.next() {
            Some(b',') => {}
            Some(b'}') => break,
            _ => return Err(Malformed::Syntax),
        }
    }
    match (log, stream, time) {
        (Some((log, ends_line)), Some(source), Some(time_ns)) => Ok(Entry { source, time_ns, log, ends_line }),
        _ => Err(Malformed::Fields),
    }
}

/// The `time` of an entry, without the rest (for seeking by time).
pub fn time_of(line: &[u8]) -> Option<i64> {
    let at = memchr::memmem::find(line, b"\"time\":\"")? + 8;
    parse_rfc3339_nanos(&line[at..]).map(|(ns, _)| ns)
}

/// Deepest nesting of `attrs` values accepted (dockerd writes one level).
const MAX_DEPTH: usize = 16;

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        if self.next() == Some(b) { Ok(()) } else { Err(Malformed::Syntax) }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// A string's content span (between the quotes) and whether it holds escapes.
    fn string_raw(&mut self) -> Result<(usize, usize, bool), Malformed> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let at = memchr::memchr2(b'"', b'\\', &self.s[self.i..]).ok_or(Malformed::Syntax)?;
            self.i += at;
            if self.s[self.i] == b'"' {
                let end = self.i;
                self.i += 1;
                return Ok((start, end, escaped));
            }
            escaped = true;
            self.i += 2;
            if self.i > self.s.len() {
                return Err(Malformed::Syntax);
            }
        }
    }

    fn string_span(&mut self) -> Result<(usize, usize), Malformed> {
        self.string_raw().map(|(a, b, _)| (a, b))
    }

    /// Skips any JSON value (an `attrs` object, or a key dockerd may add one day).
    fn skip_value(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed::Syntax);
        }
        match self.peek().ok_or(Malformed::Syntax)? {
            b'"' => self.string_raw().map(drop),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(());
                    }
                    if open == b'{' {
                        self.string_span()?;
                        self.skip_ws();
                        self.expect(b':')?;
                        self.skip_ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.next() {
                        Some(b',') => {}
                        Some(c) if c == close => return Ok(()),
                        _ => return Err(Malformed::Syntax),
                    }
                }
            }
            _ => {
                let at = self.s[self.i..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' '))
                    .ok_or(Malformed::Syntax)?;
                self.i += at;
                Ok(())
            }
        }
    }
}

/// JSON string content with escapes, as bytes (dockerd escapes `"`, `\`, control characters,
/// `<>&` and U+2028/9, and has replaced invalid UTF-8 by U+FFFD before).
/// The text comes without a final `\n`, and whether it had one.
fn unescape(s: &[u8]) -> Option<(Bytes, bool)> {
    if let Some(line) = s.strip_suffix(b"\\n")
        && memchr::memchr(b'\\', line).is_none()
    {
        return Some((Bytes::copy_from_slice(line), true));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let Some(at) = memchr::memchr(b'\\', &s[i..]) else {
            out.extend_from_slice(&s[i..]);
            break;
        };
        out.extend_from_slice(&s[i..i + at]);
        i += at + 1;
        let c = *s.get(i)?;
        i += 1;
        match c {
            b'"' | b'\\' | b'/' => out.push(c),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) && s.get(i..i + 2) == Some(b"\\u") {
                    let lo = hex4(s.get(i + 2..i + 6)?)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        0xFFFD
                    }
                } else {
                    hi
                };
                let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => return None,
        }
    }
    let ends_line = out.last() == Some(&b'\n');
    if ends_line {
        out.pop();
    }
    Some((Bytes::from(out), ends_line))
}

fn hex4(h: &[u8]) -> Option<u32> {
    std::str::from_utf8(h).ok().and_then(|h| u32::from_str_radix(h, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1_638_804_426_123_456_789;

    fn entry(text: &str) -> Result<Entry, Malformed> {
        let chunk = Bytes::from(format!("junk{text}junk"));
        parse(&chunk, 4..4 + text.len())
    }

    #[test]
    fn a_plain_entry_is_a_slice_of_the_chunk() {
        let chunk = Bytes::from(r#"{"log":"hello world","stream":"stderr","time":"2021-12-06T15:27:06.123456789Z"}"#);
        let e = parse(&chunk, 0..chunk.len()).unwrap();
        assert_eq!(e, Entry { source: Source::Stderr, time_ns: NS, log: Bytes::from("hello world"), ends_line: false });
        assert_eq!(e.log.as_ptr(), chunk[8..].as_ptr(), "no copy");
    }

    #[test]
    fn escapes_are_undone_as_dockerd_wrote_them() {
        let e = entry(
            r#"{"log":"{\"a\":\"\u003cb\u003e \\ \t\u0026 \ud83d\ude00 \ufffd\"}\r\n","stream":"stdout","time":"2021-12-06T15:27:06.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(std::str::from_utf8(&e.log).unwrap(), "{\"a\":\"<b> \\ \t& 😀 \u{FFFD}\"}\r");
        assert!(e.ends_line);
    }

    #[test]
    fn a_line_whose_only_escape_is_its_newline_is_copied_exactly() {
        let e =
            entry(r#"{"log":"GET /orders 200\n","stream":"stdout","time":"2021-12-06T15:27:06.123456789Z"}"#).unwrap();
        assert_eq!((&e.log[..], e.ends_line), (&b"GET /orders 200"[..], true));
        // A backslash written by the application, then `n`: not a newline.
        let e = entry(r#"{"log":"C:\\n","stream":"stdout","time":"2021-12-06T15:27:06.123456789Z"}"#).unwrap();
        assert_eq!((&e.log[..], e.ends_line), (&b"C:\\n"[..], false));
        let e = entry(r#"{"log":"a\tb\n","stream":"stdout","time":"2021-12-06T15:27:06.123456789Z"}"#).unwrap();
        assert_eq!((&e.log[..], e.ends_line), (&b"a\tb"[..], true));
    }

    #[test]
    fn attrs_and_unknown_keys_are_skipped_and_order_does_not_matter() {
        let e = entry(
            r#"{"log":"x","stream":"stdout","attrs":{"tag":"a,}\"b","n":[1,{"z":null}]},"time":"2021-12-06T15:27:06.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!((e.log.as_ref(), e.time_ns), (&b"x"[..], NS));
        let e = entry(r#"{ "time": "2021-12-06T15:27:06.123456789Z", "stream": "stdout", "log": "y\n" }"#).unwrap();
        assert_eq!((e.log.as_ref(), e.ends_line), (&b"y"[..], true));
    }

    #[test]
    fn broken_entries_are_refused() {
        for bad in [
            r#"{"log":"x","stream":"stdout"}"#,
            r#"{"log":"x","stream":"stdin","time":"2021-12-06T15:27:06Z"}"#,
            r#"{"log":"x","stream":"stdout","time":"yesterday"}"#,
            r#"{"log":"x\q","stream":"stdout","time":"2021-12-06T15:27:06Z"}"#,
            r#"{"log":"unterminated"#,
            r#"not json"#,
            "",
        ] {
            assert!(entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_of_finds_the_time_alone() {
        assert_eq!(time_of(br#"{"log":"a","stream":"stdout","time":"2021-12-06T15:27:06.123456789Z"}"#), Some(NS));
        assert_eq!(time_of(b"{}"), None);
    }
}
