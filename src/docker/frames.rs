//! Docker's multiplexed log stream, cut into entries in place over the HTTP body's chunks.
//!
//! Without a TTY, every log entry arrives as one frame: an 8-byte header (stream: 0 stdin,
//! 1 stdout, 2 stderr; three zero bytes; the payload's length as a big-endian u32) and the
//! payload. A frame that lies within one chunk is handed on as a slice of that chunk (no copy,
//! no allocation); only a frame split across chunks is gathered into a buffer of its own. A TTY
//! stream has no frames: its chunks are handed on whole, to be split on newlines.
//!
//! Pure code, fed by [`super::pump`] and tested on its own. It replaces bollard's `logs`
//! stream, whose decoder copies every chunk into a buffer and builds one allocation per frame.

use bytes::{Bytes, BytesMut};

use crate::message::Source;

/// Length of a frame's header.
const HEADER_BYTES: usize = 8;

/// One piece of the stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// One log entry of a multiplexed stream.
    Frame(Source, Bytes),
    /// Raw bytes of a TTY stream (any number of lines, or part of one).
    Console(Bytes),
}

/// A header that no dockerd sends: the stream cannot be followed any further.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed log frame header {0:02x?}")]
pub struct BadHeader([u8; HEADER_BYTES]);

/// Cuts one response body into [`Entry`]s.
#[derive(Debug)]
pub struct Demux {
    tty: bool,
    /// The bytes of a header split across chunks.
    header: [u8; HEADER_BYTES],
    header_len: usize,
    /// The frame whose payload is being read: where it goes (`None`: stdin, skipped) and how
    /// many payload bytes are still to come.
    frame: Option<(Option<Source>, usize)>,
    /// The payload read so far of a frame split across chunks.
    partial: BytesMut,
}

impl Demux {
    /// A demultiplexer for a container with (`tty`) or without a TTY: Docker frames the
    /// stream exactly when the container has none (`Config.Tty`).
    pub fn new(tty: bool) -> Demux {
        Demux { tty, header: [0; HEADER_BYTES], header_len: 0, frame: None, partial: BytesMut::new() }
    }

    /// Feeds the next chunk of the body and emits every entry it completes. Returns how many
    /// entries it emitted.
    pub fn push(&mut self, mut chunk: Bytes, emit: &mut impl FnMut(Entry)) -> Result<u32, BadHeader> {
        if self.tty {
            if chunk.is_empty() {
                return Ok(0);
            }
            emit(Entry::Console(chunk));
            return Ok(1);
        }
        let mut emitted = 0;
        loop {
            match self.frame {
                Some((source, 0)) => {
                    self.frame = None;
                    if let Some(source) = source {
                        emit(Entry::Frame(source, self.partial.split().freeze()));
                        emitted += 1;
                    }
                }
                _ if chunk.is_empty() => return Ok(emitted),
                None => self.take_header(&mut chunk)?,
                Some((source, rest)) => {
                    let piece = chunk.split_to(rest.min(chunk.len()));
                    let left = rest - piece.len();
                    match source {
                        // The common case: the whole payload in this chunk, handed on in place.
                        Some(source) if left == 0 && self.partial.is_empty() => {
                            self.frame = None;
                            emit(Entry::Frame(source, piece));
                            emitted += 1;
                            continue;
                        }
                        Some(_) => {
                            if self.partial.is_empty() {
                                self.partial.reserve(rest);
                            }
                            self.partial.extend_from_slice(&piece);
                        }
                        None => {}
                    }
                    self.frame = Some((source, left));
                }
            }
        }
    }

    /// Reads (the rest of) a header from the front of `chunk`; once it is whole, the frame it
    /// announces begins.
    fn take_header(&mut self, chunk: &mut Bytes) -> Result<(), BadHeader> {
        let take = (HEADER_BYTES - self.header_len).min(chunk.len());
        self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk.split_to(take));
        self.header_len += take;
        if self.header_len < HEADER_BYTES {
            return Ok(());
        }
        self.header_len = 0;
        let h = self.header;
        let source = match h[0] {
            0 => None,
            1 => Some(Source::Stdout),
            2 => Some(Source::Stderr),
            _ => return Err(BadHeader(h)),
        };
        if h[1..4] != [0, 0, 0] {
            return Err(BadHeader(h));
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        self.frame = Some((source, len));
        Ok(())
    }
}

/// One frame as dockerd writes it (`stream` 0 stdin, 1 stdout, 2 stderr), for the tests of the
/// readers of the stream.
#[cfg(test)]
pub fn frame(stream: u8, payload: impl AsRef<[u8]>) -> Vec<u8> {
    let payload = payload.as_ref();
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` cut at `cuts` and collects what comes out.
    fn demux(tty: bool, body: &[u8], cuts: &[usize]) -> Vec<Entry> {
        let mut d = Demux::new(tty);
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&body.len())) {
            d.push(Bytes::copy_from_slice(&body[from..to]), &mut |e| out.push(e)).unwrap();
            from = to;
        }
        out
    }

    fn out(source: Source, s: &str) -> Entry {
        Entry::Frame(source, Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn frames_of_one_chunk_come_out_in_order_and_stdin_is_skipped() {
        let body = [frame(1, b"a\n"), frame(0, b"typed"), frame(2, b"e\n"), frame(1, b"b\n")].concat();
        assert_eq!(
            demux(false, &body, &[]),
            vec![out(Source::Stdout, "a\n"), out(Source::Stderr, "e\n"), out(Source::Stdout, "b\n")]
        );
    }

    #[test]
    fn a_frame_within_a_chunk_is_a_slice_of_it() {
        let chunk = Bytes::from([frame(1, b"first\n"), frame(1, b"second\n")].concat());
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        let mut d = Demux::new(false);
        let mut payloads = Vec::new();
        assert_eq!(d.push(chunk.clone(), &mut |e| payloads.push(e)).unwrap(), 2);
        for e in payloads {
            let Entry::Frame(_, p) = e else { panic!("a frame") };
            assert!(range.contains(&(p.as_ptr() as usize)), "not copied");
        }
    }

    #[test]
    fn every_cut_of_the_body_gives_the_same_entries() {
        let body = [frame(1, b"one\n"), frame(2, b"two\n"), frame(0, b"in"), frame(1, b"three\n")].concat();
        let whole = demux(false, &body, &[]);
        for a in 0..=body.len() {
            for b in a..=body.len() {
                assert_eq!(demux(false, &body, &[a, b]), whole, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn a_header_split_byte_by_byte_still_reads() {
        let body = [frame(2, b"err\n"), frame(1, b"out\n")].concat();
        let cuts: Vec<usize> = (1..body.len()).collect();
        assert_eq!(demux(false, &body, &cuts), vec![out(Source::Stderr, "err\n"), out(Source::Stdout, "out\n")]);
    }

    #[test]
    fn a_partial_16k_entry_without_newline_is_one_entry() {
        let big = vec![b'x'; 16 * 1024];
        let body = [frame(1, &big), frame(1, b"tail\n")].concat();
        let entries = demux(false, &body, &[5, 4096, 9000, 16 * 1024 + 3]);
        assert_eq!(entries, vec![Entry::Frame(Source::Stdout, Bytes::from(big)), out(Source::Stdout, "tail\n")]);
    }

    #[test]
    fn an_empty_frame_is_an_empty_entry() {
        let body = [frame(1, b""), frame(1, b"x\n")].concat();
        assert_eq!(demux(false, &body, &[]), vec![out(Source::Stdout, ""), out(Source::Stdout, "x\n")]);
    }

    #[test]
    fn tty_chunks_pass_through_whole() {
        let body = b"2021-12-06T15:27:06Z one\r\n2021-12-06T15:27:06Z tw";
        assert_eq!(
            demux(true, body, &[10]),
            vec![
                Entry::Console(Bytes::copy_from_slice(&body[..10])),
                Entry::Console(Bytes::copy_from_slice(&body[10..]))
            ]
        );
    }

    #[test]
    fn a_header_no_dockerd_sends_is_an_error() {
        let mut d = Demux::new(false);
        assert!(d.push(Bytes::from_static(b"2021-12-06T15:27:06Z x\n"), &mut |_| {}).is_err());
        let mut d = Demux::new(false);
        assert!(d.push(Bytes::from_static(&[1, 0, 7, 0, 0, 0, 0, 1, b'x']), &mut |_| {}).is_err());
    }
}
