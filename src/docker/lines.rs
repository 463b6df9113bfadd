//! Turning Docker's log frames back into lines: each frame is one log entry, prefixed with its
//! timestamp (we ask for `timestamps=1`); entries that Docker split at 16 KiB arrive without
//! a trailing newline and are joined with the entries that follow, up to the one that ends
//! the line. TTY streams carry no frames, only bytes: they are split on newlines.
//!
//! Pure code, fed by [`super::pump`] and tested on its own.

use bytes::{Bytes, BytesMut};

use crate::delivery::FilePos;
use crate::message::Source;
use crate::timefmt::parse_rfc3339_nanos;

/// Longest line kept whole. A longer one (a runaway process writing without newlines) is
/// emitted in pieces of this size, and counted, instead of growing without bound.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One complete line: Docker's timestamp of its first piece, and the bytes without `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub source: Source,
    pub time_ns: i64,
    pub data: Bytes,
    /// Where the line ends in its log file, when it was read from the file.
    pub file: Option<FilePos>,
}

/// A partial line, waiting for the rest.
#[derive(Debug, Default)]
struct Pending {
    time_ns: i64,
    buf: BytesMut,
}

/// Reassembles lines from frames of one log stream.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// Partial lines, by `Source as usize`.
    pending: [Option<Pending>; 2],
    /// TTY bytes after the last newline.
    console: BytesMut,
    /// Lines that hit [`MAX_LINE_BYTES`] and were split.
    pub split_lines: u64,
}

impl LineAssembler {
    /// Feeds one multiplexed frame (one log entry) and emits every line it completes. A line
    /// that is whole in the frame is a slice of it (no copy).
    pub fn push_frame(&mut self, source: Source, frame: Bytes, fallback_ns: i64, emit: &mut impl FnMut(Line)) {
        let (time_ns, from) = timestamp(&frame, fallback_ns);
        let ends_line = frame.len() > from && frame.ends_with(b"\n");
        let to = if ends_line { frame.len() - 1 } else { frame.len() };
        self.push_entry(source, time_ns, frame.slice(from..to), ends_line, None, emit);
    }

    /// Feeds one log entry, stamped `time_ns`, that ends at `file` in its log file (when read
    /// from the file), and emits every line it completes: `text` is the entry's log without its
    /// final `\n`, and `ends_line` whether it had one. A line that is whole in the entry is
    /// `text` itself, or a slice of it (no copy).
    pub fn push_entry(
        &mut self,
        source: Source,
        time_ns: i64,
        text: Bytes,
        ends_line: bool,
        file: Option<FilePos>,
        emit: &mut impl FnMut(Line),
    ) {
        let slot = &mut self.pending[source as usize];
        let whole = |slot: &mut Option<Pending>, data: Bytes| match slot.take() {
            Some(mut p) => {
                p.buf.extend_from_slice(&data);
                Line { source, time_ns: p.time_ns, data: p.buf.freeze(), file }
            }
            None => Line { source, time_ns, data, file },
        };
        // A well-formed entry holds at most one line, at its end, but be robust to several.
        let mut from = 0;
        while let Some(pos) = memchr::memchr(b'\n', &text[from..]) {
            let end = from + pos;
            emit(whole(slot, text.slice(from..end)));
            from = end + 1;
        }
        // `text` itself when it holds no newline: slicing all of it is a clone, and cloning a
        // buffer that `Bytes` owns alone allocates the count the clones share.
        let rest = if from == 0 { text } else { text.slice(from..) };
        if ends_line {
            emit(whole(slot, rest));
        } else if !rest.is_empty() {
            let p = slot.get_or_insert_with(|| Pending { time_ns, buf: BytesMut::new() });
            p.buf.extend_from_slice(&rest);
            if p.buf.len() >= MAX_LINE_BYTES {
                let p = slot.take().expect("just inserted");
                self.split_lines += 1;
                emit(Line { source, time_ns: p.time_ns, data: p.buf.freeze(), file });
            }
        }
    }

    /// Feeds raw TTY bytes, where every line starts with its timestamp; TTY lines are stdout.
    pub fn push_console(&mut self, chunk: &[u8], fallback_ns: i64, emit: &mut impl FnMut(Line)) {
        self.console.extend_from_slice(chunk);
        while let Some(pos) = memchr::memchr(b'\n', &self.console) {
            let entry = self.console.split_to(pos + 1).freeze();
            let (time_ns, payload) = split_timestamp(entry, fallback_ns);
            emit(Line { source: Source::Stdout, time_ns, data: payload.slice(..payload.len() - 1), file: None });
        }
        if self.console.len() >= MAX_LINE_BYTES {
            self.split_lines += 1;
            let entry = self.console.split().freeze();
            let (time_ns, data) = split_timestamp(entry, fallback_ns);
            emit(Line { source: Source::Stdout, time_ns, data, file: None });
        }
    }

    /// At the end of the stream: a last line without `\n` is still a line (logspout drops it).
    pub fn finish(&mut self, fallback_ns: i64, emit: &mut impl FnMut(Line)) {
        for (i, slot) in self.pending.iter_mut().enumerate() {
            if let Some(p) = slot.take() {
                let source = if i == Source::Stdout as usize { Source::Stdout } else { Source::Stderr };
                emit(Line { source, time_ns: p.time_ns, data: p.buf.freeze(), file: None });
            }
        }
        if !self.console.is_empty() {
            let entry = self.console.split().freeze();
            let (time_ns, data) = split_timestamp(entry, fallback_ns);
            emit(Line { source: Source::Stdout, time_ns, data, file: None });
        }
    }
}

/// Splits `2026-11-22T05:12:01.412535692Z payload` into the time and the payload. Without a
/// parsable timestamp (never seen from dockerd) the whole entry is the payload, at `fallback_ns`.
fn split_timestamp(mut entry: Bytes, fallback_ns: i64) -> (i64, Bytes) {
    let (time_ns, from) = timestamp(&entry, fallback_ns);
    let _ = entry.split_to(from);
    (time_ns, entry)
}

/// The time of an entry and where its payload starts, as [`split_timestamp`] splits it.
fn timestamp(entry: &[u8], fallback_ns: i64) -> (i64, usize) {
    match parse_rfc3339_nanos(entry) {
        Some((ns, used)) if entry.get(used) == Some(&b' ') => (ns, used + 1),
        _ => (fallback_ns, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2021-12-06T15:27:06.123456789Z ";
    const NS: i64 = 1_638_804_426_123_456_789;

    fn collect(f: impl FnOnce(&mut LineAssembler, &mut dyn FnMut(Line))) -> Vec<(Source, i64, Vec<u8>)> {
        let mut a = LineAssembler::default();
        let mut out = Vec::new();
        f(&mut a, &mut |l: Line| out.push((l.source, l.time_ns, l.data.to_vec())));
        out
    }

    fn frame(s: &str) -> Bytes {
        Bytes::from(format!("{TS}{s}"))
    }

    #[test]
    fn one_frame_one_line_with_docker_time() {
        let out = collect(|a, e| {
            a.push_frame(Source::Stdout, frame("hello\n"), 0, &mut |l| e(l));
            a.push_frame(Source::Stderr, frame("\n"), 0, &mut |l| e(l));
        });
        assert_eq!(out, vec![(Source::Stdout, NS, b"hello".to_vec()), (Source::Stderr, NS, b"".to_vec())]);
    }

    #[test]
    fn a_whole_line_is_a_slice_of_its_frame() {
        let f = frame("in place\n");
        let range = f.as_ptr() as usize..f.as_ptr() as usize + f.len();
        let mut lines = Vec::new();
        LineAssembler::default().push_frame(Source::Stdout, f.clone(), 0, &mut |l| lines.push(l));
        assert_eq!(lines[0].data, "in place");
        assert!(range.contains(&(lines[0].data.as_ptr() as usize)), "not copied");
    }

    #[test]
    fn partial_entries_are_joined_per_stream() {
        let out = collect(|a, e| {
            a.push_frame(Source::Stdout, frame("aaaa"), 0, &mut |l| e(l));
            a.push_frame(Source::Stderr, frame("err\n"), 0, &mut |l| e(l));
            a.push_frame(Source::Stdout, Bytes::from("2021-12-06T15:27:07Z bbbb"), 0, &mut |l| e(l));
            a.push_frame(Source::Stdout, Bytes::from("2021-12-06T15:27:08Z cc\n"), 0, &mut |l| e(l));
        });
        assert_eq!(out, vec![(Source::Stderr, NS, b"err".to_vec()), (Source::Stdout, NS, b"aaaabbbbcc".to_vec())]);
    }

    #[test]
    fn unterminated_last_line_is_flushed_at_the_end() {
        let out = collect(|a, e| {
            a.push_frame(Source::Stdout, frame("no newline"), 0, &mut |l| e(l));
            a.finish(0, &mut |l| e(l));
        });
        assert_eq!(out, vec![(Source::Stdout, NS, b"no newline".to_vec())]);
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut f = TS.as_bytes().to_vec();
        f.extend_from_slice(b"\xff\xfe ok\n");
        let out = collect(|a, e| a.push_frame(Source::Stdout, Bytes::from(f), 0, &mut |l| e(l)));
        assert_eq!(out[0].2, b"\xff\xfe ok");
    }

    #[test]
    fn console_bytes_are_split_on_newlines() {
        let out = collect(|a, e| {
            a.push_console(format!("{TS}one\r\n{TS}tw").as_bytes(), 0, &mut |l| e(l));
            a.push_console(b"o\r\n", 0, &mut |l| e(l));
            a.push_console(format!("{TS}end").as_bytes(), 0, &mut |l| e(l));
            a.finish(0, &mut |l| e(l));
        });
        let data: Vec<_> = out.iter().map(|o| o.2.clone()).collect();
        assert_eq!(data, vec![b"one\r".to_vec(), b"two\r".to_vec(), b"end".to_vec()]);
        assert!(out.iter().all(|o| o.0 == Source::Stdout && o.1 == NS));
    }

    #[test]
    fn runaway_lines_are_split_at_the_cap() {
        let big = "x".repeat(MAX_LINE_BYTES / 2);
        let mut a = LineAssembler::default();
        let mut lens = Vec::new();
        for _ in 0..3 {
            a.push_frame(Source::Stdout, frame(&big), 0, &mut |l| lens.push(l.data.len()));
        }
        a.finish(0, &mut |l| lens.push(l.data.len()));
        assert_eq!(lens, vec![MAX_LINE_BYTES, MAX_LINE_BYTES / 2]);
        assert_eq!(a.split_lines, 1);
    }
}
