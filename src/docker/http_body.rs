//! The body of an HTTP/1.1 response, delimited as its head says (chunked transfer coding,
//! `Content-Length`, or the end of the connection), decoded in place in the read buffer.
//!
//! dockerd flushes every log entry as a chunk of its own, so a read of its socket holds
//! hundreds of tiny chunks. Decoding moves their payloads together at the front of the read
//! buffer (over the chunk-size lines between them), so that one read becomes one contiguous
//! piece of body, which [`super::frames`] then cuts into log entries without copying again.
//! Every size is bounded: a chunk-size line or a trailer longer than [`MAX_LINE_BYTES`] is an
//! error, so a broken daemon cannot make the reader buffer without limit.
//!
//! Pure code, fed by [`super::socket`] and tested on its own. The chunk-size lines are parsed
//! by `httparse`, as hyper does.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (extensions included) or trailer line. dockerd sends a few hex
/// digits and no extension.
pub const MAX_LINE_BYTES: usize = 4 << 10;

/// Most bytes of trailers after the last chunk.
const MAX_TRAILER_BYTES: usize = 16 << 10;

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimit {
    /// `Transfer-Encoding: chunked`: a chunk of size 0 (and the trailers) ends it.
    Chunked,
    /// `Content-Length`: after this many bytes.
    Length(u64),
    /// Neither: the end of the connection ends it.
    Close,
}

/// A body that breaks HTTP/1.1's rules, or that the connection cut short.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("invalid chunk-size line {0:?}")]
    ChunkSize(String),
    #[error("chunk-size line longer than {MAX_LINE_BYTES} bytes")]
    ChunkSizeTooLong,
    #[error("chunk data not followed by CRLF (found {0:?})")]
    ChunkEnd(String),
    #[error("trailer line longer than {MAX_LINE_BYTES} bytes")]
    TrailerLineTooLong,
    #[error("trailers longer than {MAX_TRAILER_BYTES} bytes")]
    TrailersTooLong,
    #[error("connection closed in the middle of a chunked body")]
    ClosedMidChunk,
    #[error("connection closed {0} bytes before the end of the body")]
    ClosedEarly(u64),
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data, with this many bytes to come.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one, and this many bytes of them so far.
    Trailers(usize),
    /// After the empty line that ends the trailers.
    End,
}

/// Decodes one response body, read after read.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug)]
enum State {
    Chunked(Chunk),
    /// `Content-Length`, with this many bytes to come.
    Length(u64),
    Close,
    /// The body is whole.
    Done,
    /// The body broke HTTP's rules after the bytes already handed on.
    Failed(BodyError),
}

impl BodyDecoder {
    /// A decoder for a body delimited as `delimit` says.
    pub fn new(delimit: Delimit) -> BodyDecoder {
        let state = match delimit {
            Delimit::Chunked => State::Chunked(Chunk::Size),
            Delimit::Length(0) => State::Done,
            Delimit::Length(n) => State::Length(n),
            Delimit::Close => State::Close,
        };
        BodyDecoder { state }
    }

    /// Whether the body is whole: what the connection sends after it is not the body's.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes the bytes read so far (`buf`, as they came from the connection) and returns
    /// the body's bytes among them, in order. What cannot be decoded yet (a chunk-size line
    /// or a CRLF cut by the end of the read) stays in `buf`, to be completed by the next read;
    /// what follows the end of the body is dropped. Bytes that break the rules are an error,
    /// once the body's bytes before them have been returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Bytes, BodyError> {
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Done => {
                buf.clear();
                Ok(Bytes::new())
            }
            State::Close => Ok(buf.split().freeze()),
            State::Length(rest) => {
                let take = usize::try_from(*rest).unwrap_or(usize::MAX).min(buf.len());
                *rest -= take as u64;
                if *rest == 0 {
                    self.state = State::Done;
                }
                let body = buf.split_to(take).freeze();
                if self.is_done() {
                    buf.clear();
                }
                Ok(body)
            }
            State::Chunked(chunk) => {
                let (read, written, broken) = unchunk(chunk, buf);
                let body = buf.split_to(written).freeze();
                buf.advance(read - written);
                match broken {
                    Some(e) => {
                        self.state = State::Failed(e.clone());
                        buf.clear();
                        if body.is_empty() {
                            return Err(e);
                        }
                    }
                    None if *chunk == Chunk::End => {
                        self.state = State::Done;
                        buf.clear();
                    }
                    None => {}
                }
                Ok(body)
            }
        }
    }

    /// The connection has ended: whether that was the body's end, or cut it short.
    pub fn at_eof(&self) -> Result<(), BodyError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Done | State::Close => Ok(()),
            State::Length(rest) => Err(BodyError::ClosedEarly(*rest)),
            State::Chunked(_) => Err(BodyError::ClosedMidChunk),
        }
    }
}

/// Walks the chunked bytes of `buf` from the state `chunk`, moving chunk data to the front
/// as it goes. Returns how many bytes were read, how many of the front now hold data, and
/// what broke the rules where it stopped, if something did.
fn unchunk(chunk: &mut Chunk, buf: &mut [u8]) -> (usize, usize, Option<BodyError>) {
    let (mut read, mut written) = (0, 0);
    let broken = loop {
        let rest = &buf[read..];
        match *chunk {
            Chunk::Size => match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((n, _))) if n > MAX_LINE_BYTES => {
                    break Some(BodyError::ChunkSizeTooLong);
                }
                Ok(httparse::Status::Complete((n, size))) => {
                    read += n;
                    *chunk = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) };
                }
                Ok(httparse::Status::Partial) if rest.len() > MAX_LINE_BYTES => {
                    break Some(BodyError::ChunkSizeTooLong);
                }
                Ok(httparse::Status::Partial) => break None,
                Err(httparse::InvalidChunkSize) => break Some(BodyError::ChunkSize(shown(rest))),
            },
            Chunk::Data(_) if rest.is_empty() => break None,
            Chunk::Data(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                buf.copy_within(read..read + take, written);
                read += take;
                written += take;
                *chunk = if left == take as u64 { Chunk::DataEnd } else { Chunk::Data(left - take as u64) };
            }
            Chunk::DataEnd => match rest {
                [b'\r', b'\n', ..] => {
                    read += 2;
                    *chunk = Chunk::Size;
                }
                [] | [b'\r'] => break None,
                _ => break Some(BodyError::ChunkEnd(shown(rest))),
            },
            Chunk::End => break None,
            Chunk::Trailers(seen) => match memchr::memchr(b'\n', rest) {
                Some(end) if end > MAX_LINE_BYTES => break Some(BodyError::TrailerLineTooLong),
                Some(end) if seen + end + 1 > MAX_TRAILER_BYTES => break Some(BodyError::TrailersTooLong),
                Some(end) => {
                    read += end + 1;
                    let line = &rest[..end];
                    *chunk =
                        if line.is_empty() || line == b"\r" { Chunk::End } else { Chunk::Trailers(seen + end + 1) };
                }
                None if rest.len() > MAX_LINE_BYTES => break Some(BodyError::TrailerLineTooLong),
                None => break None,
            },
        }
    };
    (read, written, broken)
}

/// The start of what could not be parsed, for the error.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `raw` to a decoder cut at `cuts`, as reads would, and returns the body and how
    /// the end of the connection after it is taken.
    fn decode(delimit: Delimit, raw: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<(), BodyError>) {
        let mut d = BodyDecoder::new(delimit);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&raw.len())) {
            buf.extend_from_slice(&raw[from..to]);
            from = to;
            match d.decode(&mut buf) {
                Ok(b) => body.extend_from_slice(&b),
                Err(e) => return (body, Err(e)),
            }
        }
        (body, d.at_eof())
    }

    fn chunked(pieces: &[&[u8]]) -> Vec<u8> {
        let mut raw = Vec::new();
        for p in pieces {
            raw.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            raw.extend_from_slice(p);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    }

    #[test]
    fn chunks_come_out_as_one_body_at_every_cut() {
        let raw = chunked(&[b"first entry\n", b"x", &[b'y'; 300], b"last\n"]);
        let whole = [&b"first entry\nx"[..], &[b'y'; 300], b"last\n"].concat();
        for a in 0..=raw.len() {
            for b in (a..=raw.len()).step_by(7) {
                let (body, end) = decode(Delimit::Chunked, &raw, &[a, b]);
                assert_eq!(body, whole, "cut at {a} and {b}");
                assert_eq!(end, Ok(()), "cut at {a} and {b}");
            }
        }
        let every: Vec<usize> = (1..raw.len()).collect();
        assert_eq!(decode(Delimit::Chunked, &raw, &every), (whole, Ok(())));
    }

    #[test]
    fn the_body_of_one_read_is_contiguous_and_what_is_cut_waits() {
        let raw = chunked(&[b"abc", b"defg"]);
        let mut d = BodyDecoder::new(Delimit::Chunked);
        let mut buf = BytesMut::from(&raw[..12]);
        assert_eq!(&d.decode(&mut buf).unwrap()[..], b"abcd");
        buf.extend_from_slice(&raw[12..]);
        assert_eq!(&d.decode(&mut buf).unwrap()[..], b"efg");
        assert!(d.is_done());
        assert!(buf.is_empty());
    }

    #[test]
    fn extensions_upper_case_sizes_and_trailers_are_read() {
        let raw = b"A;name=value\r\n0123456789\r\n1\r\n!\r\n0\r\nExpires: never\r\nX-Note: a\r\n\r\nafter";
        assert_eq!(decode(Delimit::Chunked, raw, &[]), (b"0123456789!".to_vec(), Ok(())));
    }

    #[test]
    fn a_chunk_size_line_over_the_cap_is_an_error_however_it_arrives() {
        let mut raw = b"5;".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES));
        raw.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode(Delimit::Chunked, &raw, &[]).1, Err(BodyError::ChunkSizeTooLong));
        assert_eq!(decode(Delimit::Chunked, &raw, &[100, 4000]).1, Err(BodyError::ChunkSizeTooLong));
        let endless = vec![b'f'; 2 * MAX_LINE_BYTES];
        assert_eq!(decode(Delimit::Chunked, &endless, &[10]).1, Err(BodyError::ChunkSize("f".repeat(32))));
        let endless_ext = [&b"1;"[..], &vec![b'e'; 2 * MAX_LINE_BYTES]].concat();
        assert_eq!(decode(Delimit::Chunked, &endless_ext, &[10]).1, Err(BodyError::ChunkSizeTooLong));
    }

    #[test]
    fn endless_trailers_are_an_error() {
        let mut raw = b"1\r\na\r\n0\r\n".to_vec();
        for _ in 0..MAX_TRAILER_BYTES / 10 + 1 {
            raw.extend_from_slice(b"X-Pad: 12\r\n");
        }
        assert_eq!(decode(Delimit::Chunked, &raw, &[]), (b"a".to_vec(), Err(BodyError::TrailersTooLong)));
        let long_line = [&b"1\r\na\r\n0\r\nX: "[..], &vec![b'y'; MAX_LINE_BYTES + 1]].concat();
        assert_eq!(decode(Delimit::Chunked, &long_line, &[]).1, Err(BodyError::TrailerLineTooLong));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        assert_eq!(decode(Delimit::Chunked, b"zz\r\n", &[]).1, Err(BodyError::ChunkSize("zz\r\n".into())));
        assert_eq!(
            decode(Delimit::Chunked, b"2\r\nabX\r\n", &[]),
            (b"ab".to_vec(), Err(BodyError::ChunkEnd("X\r\n".into())))
        );
        assert_eq!(decode(Delimit::Chunked, b"2\r\nab\rX", &[]).1, Err(BodyError::ChunkEnd("\rX".into())));
    }

    #[test]
    fn a_close_mid_chunk_is_an_error_after_the_bytes_that_came() {
        let raw = chunked(&[b"whole\n", b"cut off here"]);
        for cut in 0..raw.len() - 5 {
            let (body, end) = decode(Delimit::Chunked, &raw[..cut], &[]);
            assert!(b"whole\ncut off here".starts_with(&body), "cut at {cut}");
            assert_eq!(end, Err(BodyError::ClosedMidChunk), "cut at {cut}");
        }
    }

    #[test]
    fn a_content_length_body_ends_after_its_length() {
        for cut in 0..=14 {
            let (body, end) = decode(Delimit::Length(9), b"some body and more", &[cut.min(18)]);
            assert_eq!((body, end), (b"some body".to_vec(), Ok(())), "cut at {cut}");
        }
        assert_eq!(decode(Delimit::Length(9), b"some", &[2]), (b"some".to_vec(), Err(BodyError::ClosedEarly(5))));
        assert!(BodyDecoder::new(Delimit::Length(0)).is_done());
    }

    #[test]
    fn a_body_without_length_ends_with_the_connection() {
        assert_eq!(decode(Delimit::Close, b"all of it", &[3, 4]), (b"all of it".to_vec(), Ok(())));
    }
}
