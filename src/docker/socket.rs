//! One logs request on dockerd's unix socket, read in the pump's own task.
//!
//! Through hyper, the body of a log stream reaches the pump one HTTP chunk at a time, over a
//! channel from the connection's task, and dockerd sends every log entry as a chunk of its
//! own: each line cost a `Bytes`, a channel send and a wake-up of the other task. Here the
//! pump reads the connection itself into a large buffer, the way `curl` does: one read takes
//! in every chunk that has arrived, and [`super::http_body`] decodes them in place. The status
//! line and headers are parsed by `httparse`.
//!
//! A busy stream is read on a timer ([`PACE`]) with its connection off tokio's reactor, since
//! dockerd's every write would otherwise wake the reactor's thread; a quiet one is read as
//! soon as something arrives.
//!
//! Every buffer is bounded: the response head ([`MAX_HEAD_BYTES`]), an error's body
//! ([`MAX_ERROR_BODY_BYTES`]), the read buffer ([`MAX_READ_BYTES`]) and, in
//! [`super::http_body`], chunk-size and trailer lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::errors::Error as DockerError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::http_body::{BodyDecoder, Delimit};

/// Longest response head (status line and headers): dockerd's are about 200 bytes.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// Most header lines in a response head.
const MAX_HEADERS: usize = 64;

/// Most bytes of an error response read for the daemon's message.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// Room for the first read, and the least a read is given: a stream that sends a line now and
/// then holds a small buffer.
const MIN_READ_BYTES: usize = 8 << 10;

/// The most a read is given: a stream that fills every read it is given (a backlog, or a
/// writer faster than the pump) gets reads twice as large, up to this.
const MAX_READ_BYTES: usize = 256 << 10;

/// A busy stream is read once per pause of this long, its connection off tokio's reactor
/// meanwhile. dockerd writes every log entry on its own, and each write wakes a thread waiting
/// on the connection (`epoll_wait`), whether or not the pump wants to read yet: pausing with
/// the connection watched saves no wake-up. dockerd's socket buffer holds about 280 entries
/// before its writes wait (40 KB of 100-byte lines), which a dockerd serving 180,000 lines/s
/// fills in 1.5 ms; every moment it waits on a full buffer is lost to the stream's rate. So
/// the pause is timed by a [`Pacer`] to the tens of microseconds: tokio's timers count whole
/// milliseconds and round a deadline up to the next one (0.5 to 1.5 ms and more for this
/// pause, which held such a dockerd to 0.8 of what it serves `curl`).
const PACE: Duration = Duration::from_micros(500);

/// Reads of a watched connection within [`BUSY_WINDOW`] that make its stream busy: a read
/// every half millisecond, more often than paced reads come.
const BUSY_READS: u32 = 8;
const BUSY_WINDOW: Duration = Duration::from_millis(4);

/// Paced reads in a row that find nothing before the connection is watched again: a busy
/// stream that pauses a few milliseconds (dockerd or the container waiting for a CPU) stays
/// paced.
const QUIET_READS: u32 = 4;

/// A timer for the pauses of a paced stream, exact to the kernel's timer slack (50 µs by
/// default) where tokio's count whole milliseconds: a Linux timerfd on tokio's reactor, one
/// per paced stream, set again for each pause.
struct Pacer {
    timer: tokio_timerfd::Delay,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pacer")
    }
}

impl Pacer {
    fn new() -> std::io::Result<Pacer> {
        Ok(Pacer { timer: tokio_timerfd::Delay::new(std::time::Instant::now())? })
    }

    /// Waits `pause`.
    async fn sleep(&mut self, pause: Duration) -> std::io::Result<()> {
        self.timer.reset(std::time::Instant::now() + pause);
        (&mut self.timer).await
    }
}

/// The connection to the daemon.
#[derive(Debug)]
enum Conn {
    /// On tokio's reactor: a read waits until something has arrived.
    Watched(UnixStream),
    /// Off the reactor, while the stream is busy: read after every [`PACE`], without waiting.
    Paced(std::os::unix::net::UnixStream, Pacer),
    /// Moving it between the two failed; the read that tried ended the body with the error.
    Lost,
}

impl Conn {
    /// Takes a watched connection off the reactor; false when no timer could be made for its
    /// pauses (out of file descriptors), and it stays watched.
    fn pace(&mut self) -> std::io::Result<bool> {
        let pacer = match Pacer::new() {
            Ok(pacer) => pacer,
            Err(e) => {
                tracing::debug!("no timer for a busy log stream's pauses ({e}): it is read as it arrives");
                return Ok(false);
            }
        };
        *self = match std::mem::replace(self, Conn::Lost) {
            Conn::Watched(stream) => Conn::Paced(stream.into_std()?, pacer),
            other => other,
        };
        Ok(true)
    }

    /// Puts a paced connection back on the reactor.
    fn watch(&mut self) -> std::io::Result<&mut UnixStream> {
        *self = match std::mem::replace(self, Conn::Lost) {
            Conn::Paced(stream, _) => Conn::Watched(UnixStream::from_std(stream)?),
            other => other,
        };
        match self {
            Conn::Watched(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }
}

fn lost() -> std::io::Error {
    std::io::Error::other("the connection was lost moving it on or off the reactor")
}

/// How often a watched connection was read lately.
#[derive(Debug)]
struct Busy {
    reads: u32,
    since: std::time::Instant,
}

impl Busy {
    fn new() -> Busy {
        Busy { reads: 0, since: std::time::Instant::now() }
    }

    /// Counts a read; true once the stream is busy.
    fn read(&mut self) -> bool {
        if self.since.elapsed() > BUSY_WINDOW {
            *self = Busy::new();
        }
        self.reads += 1;
        self.reads >= BUSY_READS
    }
}

/// The body of a successful response, read as it arrives.
#[derive(Debug)]
struct SocketBody {
    conn: Conn,
    busy: Busy,
    /// The last read filled its room: the next one does not pause.
    filled: bool,
    /// Bytes read and not decoded yet.
    buf: BytesMut,
    decoder: BodyDecoder,
    /// The room the next read is given.
    read_size: usize,
    ended: bool,
}

/// Sends `GET target` to the daemon listening on `path` and reads the head of its answer,
/// within `timeout` (the client's limit for the start of an answer). An error status is an
/// error whose message is the daemon's, as bollard reports it
/// ([`DockerError::DockerResponseServerError`]), so callers tell them apart the same way.
async fn get(path: &Path, target: &http::uri::PathAndQuery, timeout: Duration) -> anyhow::Result<SocketBody> {
    let request = async {
        let mut stream =
            UnixStream::connect(path).await.with_context(|| format!("cannot connect to {}", path.display()))?;
        let head = format!("GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: luaspout\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .with_context(|| format!("cannot send the request to {}", path.display()))?;
        let mut buf = BytesMut::with_capacity(MIN_READ_BYTES);
        let (status, delimit) = read_head(&mut stream, &mut buf).await?;
        let body = SocketBody {
            conn: Conn::Watched(stream),
            busy: Busy::new(),
            filled: false,
            buf,
            decoder: BodyDecoder::new(delimit),
            read_size: MIN_READ_BYTES,
            ended: false,
        };
        if !(200..300).contains(&status) {
            return Err(body.into_error(status).await);
        }
        Ok(body)
    };
    let Ok(answer) = tokio::time::timeout(timeout, request).await else {
        bail!("no answer from {} within {timeout:?}", path.display());
    };
    answer.with_context(|| format!("GET {}", target.path()))
}

/// Reads up to the end of the response head (skipping informational ones) and leaves what
/// follows it in `buf`; returns the status and how the body is delimited.
async fn read_head(stream: &mut UnixStream, buf: &mut BytesMut) -> anyhow::Result<(u16, Delimit)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf).context("invalid response head")? {
            httparse::Status::Complete(len) => {
                let status = response.code.unwrap_or_default();
                let delimit = delimit(status, response.headers)?;
                buf.advance(len);
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                return Ok((status, delimit));
            }
            httparse::Status::Partial if buf.len() >= MAX_HEAD_BYTES => {
                bail!("response head longer than {MAX_HEAD_BYTES} bytes")
            }
            httparse::Status::Partial => {}
        }
        buf.reserve(MIN_READ_BYTES);
        if stream.read_buf(buf).await.context("cannot read the response head")? == 0 {
            bail!("connection closed before the end of the response head");
        }
    }
}

/// How the body of a response with `status` and `headers` ends (RFC 9112, 6.3).
fn delimit(status: u16, headers: &[httparse::Header]) -> anyhow::Result<Delimit> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Delimit::Length(0));
    }
    let mut chunked = None;
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            match (value, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => bail!("invalid Content-Length {:?}", String::from_utf8_lossy(h.value)),
            }
        }
    }
    Ok(match (chunked, length) {
        (Some(true), _) => Delimit::Chunked,
        (Some(false), _) => Delimit::Close,
        (None, Some(n)) => Delimit::Length(n),
        (None, None) => Delimit::Close,
    })
}

/// Sends `GET target` as [`get`] does and yields the body's bytes as they arrive: one item
/// per read of the socket (every chunk that read took in), until the end of the body. An
/// error status, a connection that ends the body early, or one that breaks HTTP's rules
/// yields an error last.
pub fn follow(
    path: PathBuf,
    target: http::uri::PathAndQuery,
    timeout: Duration,
) -> impl Stream<Item = anyhow::Result<Bytes>> + Send + 'static {
    enum Step {
        Ask(PathBuf, http::uri::PathAndQuery, Duration),
        Read(SocketBody),
    }
    futures_util::stream::unfold(Some(Step::Ask(path, target, timeout)), |step| async move {
        let mut body = match step? {
            Step::Ask(path, target, timeout) => match get(&path, &target, timeout).await {
                Ok(body) => body,
                Err(e) => return Some((Err(e), None)),
            },
            Step::Read(body) => body,
        };
        body.next().await.map(|item| (item, Some(Step::Read(body))))
    })
}

/// Reads what has arrived on a paced connection, without waiting, into `room` bytes at the
/// end of `buf`.
fn read_arrived(
    stream: &mut std::os::unix::net::UnixStream,
    buf: &mut BytesMut,
    room: usize,
) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + room, 0);
    let read = std::io::Read::read(stream, &mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// Whether a read that failed with `e` only found nothing to read yet.
fn nothing_yet(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted)
}

impl SocketBody {
    async fn next(&mut self) -> Option<anyhow::Result<Bytes>> {
        while !self.ended {
            match self.decoder.decode(&mut self.buf) {
                Ok(body) if !body.is_empty() => return Some(Ok(body)),
                Ok(_) if self.decoder.is_done() => self.ended = true,
                Ok(_) => match self.read().await {
                    Ok(0) => {
                        self.ended = true;
                        return self.decoder.at_eof().err().map(|e| Err(e).context("the log stream ended"));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e).context("cannot read the log stream"));
                    }
                },
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e).context("the log stream is not valid HTTP"));
                }
            }
        }
        None
    }

    /// One read of the socket, into room for `read_size` bytes at least. Bytes already
    /// handed on keep their block of the buffer alive; a new block is taken when too little
    /// room is left. A read that fills its room doubles the next one's; a read under an
    /// eighth of it halves it.
    ///
    /// A watched connection that turns busy is paced ([`PACE`]): one read a pause takes in
    /// what would have been many reads and wake-ups, and a line waits one pause at the most.
    /// After [`QUIET_READS`] paced reads that found nothing it is watched again, so a stream
    /// that has turned quiet has its next line read as soon as it arrives.
    async fn read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            let mut fresh = BytesMut::with_capacity(self.read_size + self.buf.len());
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = match &mut self.conn {
            Conn::Watched(stream) => {
                let n = stream.read_buf(&mut self.buf).await?;
                if n > 0 && self.busy.read() && !self.conn.pace()? {
                    // Counted afresh, so a stream that stays watched does not try at every read.
                    self.busy = Busy::new();
                }
                n
            }
            Conn::Paced(stream, pacer) => {
                let mut pause = !self.filled;
                let mut found_nothing = 0;
                loop {
                    if pause {
                        pacer.sleep(PACE).await?;
                    }
                    pause = true;
                    match read_arrived(stream, &mut self.buf, room) {
                        Ok(n) => break n,
                        Err(e) if !nothing_yet(&e) => return Err(e),
                        Err(_) if found_nothing + 1 < QUIET_READS => found_nothing += 1,
                        Err(_) => {
                            self.busy = Busy::new();
                            break self.conn.watch()?.read_buf(&mut self.buf).await?;
                        }
                    }
                }
            }
            Conn::Lost => return Err(lost()),
        };
        self.filled = n == room;
        if n == room {
            self.read_size = (self.read_size * 2).min(MAX_READ_BYTES);
        } else if n < self.read_size / 8 {
            self.read_size = (self.read_size / 2).max(MIN_READ_BYTES);
        }
        Ok(n)
    }

    /// The error a response with `status` stands for, with the daemon's message: the
    /// `message` of its JSON body, or the body as text.
    async fn into_error(mut self, status: u16) -> anyhow::Error {
        let mut contents = Vec::new();
        while let Some(item) = self.next().await {
            let Ok(bytes) = item else { break };
            contents.extend_from_slice(&bytes);
            if contents.len() >= MAX_ERROR_BODY_BYTES {
                contents.truncate(MAX_ERROR_BODY_BYTES);
                break;
            }
        }
        let json = serde_json::from_slice::<serde_json::Value>(&contents).ok();
        let message = match json.as_ref().and_then(|j| j["message"].as_str()) {
            Some(message) => message.to_string(),
            None => String::from_utf8_lossy(&contents).trim_end().to_string(),
        };
        DockerError::DockerResponseServerError { status_code: status, message }.into()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;
    use crate::docker::frames::{Demux, Entry, frame};
    use crate::docker::lines::LineAssembler;

    const TARGET: &str = "/v1.41/containers/abc/logs?follow=true&stdout=true&stderr=true&timestamps=true";
    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
                           Transfer-Encoding: chunked\r\n\r\n";

    /// A daemon on a unix socket in `dir` that answers one request with `answer`, written in
    /// the pieces `cuts` makes of it (a pause after each, so that reads see them apart), then
    /// closes the connection. The request it got comes back on the channel.
    fn fake_daemon(dir: &Path, answer: Vec<u8>, cuts: Vec<usize>) -> (PathBuf, tokio::sync::oneshot::Receiver<String>) {
        static SOCKETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = dir.join(format!("docker-{}.sock", SOCKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let listener = UnixListener::bind(&path).unwrap();
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                conn.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let _ = seen_tx.send(String::from_utf8(request).unwrap());
            let mut from = 0;
            for to in cuts.into_iter().chain(std::iter::once(answer.len())) {
                if conn.write_all(&answer[from..to]).await.is_err() {
                    return;
                }
                from = to;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        (path, seen_rx)
    }

    fn chunk(bytes: &[u8]) -> Vec<u8> {
        [format!("{:x}\r\n", bytes.len()).as_bytes(), bytes, b"\r\n"].concat()
    }

    /// What dockerd sends for four entries: one chunk per frame, then a frame split across
    /// two chunks, one across three (its header cut too), and the last chunk.
    fn dockerd_body() -> Vec<u8> {
        let one = frame(1, "2024-01-01T00:00:00.000000001Z first line\n");
        let two = frame(2, "2024-01-01T00:00:00.000000002Z an error\n");
        let three = frame(1, "2024-01-01T00:00:00.000000003Z split in two\n");
        let four = frame(1, "2024-01-01T00:00:00.000000004Z split in three\n");
        [
            chunk(&one),
            chunk(&two),
            chunk(&three[..20]),
            chunk(&three[20..]),
            chunk(&four[..5]),
            chunk(&four[5..30]),
            chunk(&four[30..]),
            b"0\r\n\r\n".to_vec(),
        ]
        .concat()
    }

    const LINES: &[&str] =
        &["1 stdout first line", "2 stderr an error", "3 stdout split in two", "4 stdout split in three"];

    /// Follows the answer of a fake daemon and cuts it into lines as the pump does; also
    /// returns the error the body ended with, if any.
    async fn lines_of(path: &Path) -> (Vec<String>, Option<String>) {
        let mut stream = std::pin::pin!(follow(path.to_owned(), TARGET.parse().unwrap(), Duration::from_secs(5)));
        let (mut demux, mut assembler) = (Demux::new(false), LineAssembler::default());
        let mut lines = Vec::new();
        let mut error = None;
        while let Some(item) = stream.next().await {
            let bytes = match item {
                Ok(bytes) => bytes,
                Err(e) => {
                    error = Some(format!("{e:#}"));
                    continue;
                }
            };
            let emit = &mut |l: crate::docker::lines::Line| {
                lines.push(
                    format!("{} {:?} {}", l.time_ns % 10, l.source, String::from_utf8_lossy(&l.data)).to_lowercase(),
                )
            };
            demux
                .push(bytes, &mut |entry| match entry {
                    Entry::Frame(source, payload) => assembler.push_frame(source, payload, 0, emit),
                    Entry::Console(bytes) => assembler.push_console(&bytes, 0, emit),
                })
                .unwrap();
        }
        (lines, error)
    }

    #[tokio::test]
    async fn a_chunked_stream_cut_at_every_byte_gives_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let answer = [CHUNKED.as_bytes(), &dockerd_body()].concat();
        for cut in 0..=answer.len() {
            let (path, _) = fake_daemon(dir.path(), answer.clone(), vec![cut]);
            assert_eq!(lines_of(&path).await, (LINES.iter().map(|l| l.to_string()).collect(), None), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_chunked_stream_cut_at_random_places_gives_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let answer = [CHUNKED.as_bytes(), &dockerd_body()].concat();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..40 {
            let mut cuts: Vec<usize> = (0..6)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % answer.len() as u64) as usize
                })
                .collect();
            cuts.sort();
            let (path, _) = fake_daemon(dir.path(), answer.clone(), cuts.clone());
            assert_eq!(lines_of(&path).await.0, LINES, "cuts at {cuts:?}");
        }
    }

    #[tokio::test]
    async fn the_request_is_the_target_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) = fake_daemon(dir.path(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![]);
        assert_eq!(lines_of(&path).await, (vec![], None));
        let request = seen.await.unwrap();
        assert!(request.starts_with(&format!("GET {TARGET} HTTP/1.1\r\n")), "{request}");
    }

    #[tokio::test]
    async fn a_content_length_body_ends_at_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = [
            frame(1, "2024-01-01T00:00:00.000000001Z first line\n"),
            frame(2, "2024-01-01T00:00:00.000000002Z an error\n"),
        ]
        .concat();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let answer = [head.as_bytes(), &body, b"not the body's"].concat();
        for cut in [0, head.len() + 3, head.len() + 50, answer.len() - 2] {
            let (path, _) = fake_daemon(dir.path(), answer.clone(), vec![cut]);
            assert_eq!(lines_of(&path).await, (vec!["1 stdout first line".into(), "2 stderr an error".into()], None));
        }
        let cut_short = answer[..head.len() + 20].to_vec();
        let (path, _) = fake_daemon(dir.path(), cut_short, vec![]);
        let (lines, error) = lines_of(&path).await;
        assert!(lines.is_empty());
        assert_eq!(
            error.unwrap(),
            format!("the log stream ended: connection closed {} bytes before the end of the body", body.len() - 20)
        );
    }

    #[tokio::test]
    async fn a_body_without_length_ends_with_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let answer = [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..],
            &frame(1, "2024-01-01T00:00:00.000000001Z first line\n"),
        ]
        .concat();
        let (path, _) = fake_daemon(dir.path(), answer, vec![45]);
        assert_eq!(lines_of(&path).await, (vec!["1 stdout first line".into()], None));
    }

    #[tokio::test]
    async fn an_error_status_carries_the_daemons_message() {
        let dir = tempfile::tempdir().unwrap();
        let json = br#"{"message":"No such container: abc"}"#;
        let chunked_404 = [CHUNKED.replace("200 OK", "404 Not Found").as_bytes(), &chunk(json), b"0\r\n\r\n"].concat();
        let (path, _) = fake_daemon(dir.path(), chunked_404, vec![70]);
        let e = get(&path, &TARGET.parse().unwrap(), Duration::from_secs(5)).await.unwrap_err();
        match e.downcast_ref::<DockerError>() {
            Some(DockerError::DockerResponseServerError { status_code: 404, message }) => {
                assert_eq!(message, "No such container: abc");
            }
            _ => panic!("{e:#}"),
        }
        assert!(format!("{e:#}").starts_with("GET /v1.41/containers/abc/logs: "), "{e:#}");
        let text_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 11\r\n\r\nbroken\r\n\r\n".to_vec();
        let (path, _) = fake_daemon(dir.path(), text_500, vec![]);
        let e = get(&path, &TARGET.parse().unwrap(), Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(e.downcast_ref(), Some(DockerError::DockerResponseServerError { status_code: 500, message }) if message == "broken"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn an_oversize_chunk_size_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = chunk(&frame(1, "2024-01-01T00:00:00.000000001Z first line\n"));
        let endless = [CHUNKED.as_bytes(), &first, b"10;", &vec![b'x'; 64 << 10]].concat();
        let (path, _) = fake_daemon(dir.path(), endless, vec![CHUNKED.len() + 10, 9000]);
        let (lines, error) = lines_of(&path).await;
        assert_eq!(lines, vec!["1 stdout first line"]);
        assert_eq!(error.unwrap(), "the log stream is not valid HTTP: chunk-size line longer than 4096 bytes");
    }

    #[tokio::test]
    async fn an_oversize_or_broken_head_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n", "p".repeat(MAX_HEAD_BYTES));
        let (path, _) = fake_daemon(dir.path(), long.into_bytes(), vec![100]);
        assert_eq!(
            lines_of(&path).await.1.unwrap(),
            "GET /v1.41/containers/abc/logs: response head longer than 16384 bytes"
        );
        let (path, _) = fake_daemon(dir.path(), b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n".to_vec(), vec![]);
        assert_eq!(lines_of(&path).await.1.unwrap(), "GET /v1.41/containers/abc/logs: invalid Content-Length \"1x\"");
        let (path, _) = fake_daemon(dir.path(), b"HTTP/1.1 200 OK\r\n".to_vec(), vec![]);
        assert_eq!(
            lines_of(&path).await.1.unwrap(),
            "GET /v1.41/containers/abc/logs: connection closed before the end of the response head"
        );
    }

    #[tokio::test]
    async fn an_abrupt_close_mid_chunk_ends_with_an_error_after_the_lines_that_came() {
        let dir = tempfile::tempdir().unwrap();
        let body = dockerd_body();
        let cut = body.len() - 30;
        let answer = [CHUNKED.as_bytes(), &body[..cut]].concat();
        let (path, _) = fake_daemon(dir.path(), answer, vec![]);
        let (lines, error) = lines_of(&path).await;
        assert_eq!(lines, LINES[..3]);
        assert_eq!(error.unwrap(), "the log stream ended: connection closed in the middle of a chunked body");
    }

    #[tokio::test]
    async fn a_daemon_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let held = tokio::spawn(async move { listener.accept().await });
        let e = get(&path, &TARGET.parse().unwrap(), Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(format!("{e:#}"), format!("no answer from {} within 200ms", path.display()));
        held.abort();
    }

    #[tokio::test]
    async fn a_stream_that_turns_busy_quiet_and_busy_again_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phases.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let entry = |i: usize| chunk(&frame(1, format!("2024-01-01T00:00:00.{i:09}Z line {i}\n")));
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 512];
            let _ = conn.read(&mut request).await.unwrap();
            conn.write_all(CHUNKED.as_bytes()).await.unwrap();
            // A write per entry, as dockerd does: busy, quiet (one entry), busy again.
            for (from, to) in [(0, 3000), (3000, 3001), (3001, 6000)] {
                for i in from..to {
                    conn.write_all(&entry(i)).await.unwrap();
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            conn.write_all(b"0\r\n\r\n").await.unwrap();
        });
        let (lines, error) = lines_of(&path).await;
        assert_eq!(error, None);
        assert_eq!(lines.len(), 6000);
        assert!(lines.iter().enumerate().all(|(i, l)| l.ends_with(&format!(" line {i}"))));
    }

    #[tokio::test]
    async fn a_backlog_larger_than_any_read_comes_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Vec<u8>> =
            (0..20_000).map(|i| chunk(&frame(1, format!("2024-01-01T00:00:00.{i:09}Z line {i}\n")))).collect();
        let answer = [CHUNKED.as_bytes(), &entries.concat(), b"0\r\n\r\n"].concat();
        let (path, _) = fake_daemon(dir.path(), answer, vec![]);
        let (lines, error) = lines_of(&path).await;
        assert_eq!(error, None);
        assert_eq!(lines.len(), 20_000);
        assert!(lines.iter().enumerate().all(|(i, l)| l.ends_with(&format!(" line {i}"))));
    }
}
