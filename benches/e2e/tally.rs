//! Counting what a reader delivered: every writer line carries `seq=%08d`, and the [`Tally`]
//! checks each number arrived exactly once. The bench's TCP listener ([`Receiver`]) and the
//! parser of curl's multiplexed stream ([`FrameParser`]) feed it.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long a stream case may go without a new line before the missing ones count as lost.
const STALL: Duration = Duration::from_secs(10);
/// After the last expected line: time for a duplicate to show up.
const SETTLE: Duration = Duration::from_millis(500);

/// Counts the lines a reader delivered, by their `seq=` number.
pub struct Tally {
    pub state: Mutex<TallyState>,
    cond: Condvar,
    /// Lines starting with this prefix are counted apart (the reload case's new format).
    mark: Option<Vec<u8>>,
}

pub struct TallyState {
    /// Times each expected line arrived.
    seen: Vec<u8>,
    pub lines: usize,
    pub repeated: usize,
    /// Lines without a `seq=` number below the expected count.
    foreign: usize,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// The wall-clock time of the last line, to compare with the container's exit time.
    pub last_wall: Option<SystemTime>,
    pub first_marked: Option<Instant>,
}

/// What a finished case delivered.
pub struct Delivered {
    pub rate: f64,
    pub lost: usize,
    pub repeated: usize,
    pub last_wall: SystemTime,
}

impl Tally {
    pub fn new(expected: usize, mark: Option<Vec<u8>>) -> Tally {
        Tally {
            state: Mutex::new(TallyState {
                seen: vec![0; expected],
                lines: 0,
                repeated: 0,
                foreign: 0,
                first: None,
                last: None,
                last_wall: None,
                first_marked: None,
            }),
            cond: Condvar::new(),
            mark,
        }
    }

    /// Counts the complete lines at the start of `data`; returns how many bytes it used.
    pub fn take_lines(&self, data: &[u8]) -> usize {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end];
            used += end + 1;
            s.first.get_or_insert(now);
            s.last = Some(now);
            if self.mark.as_ref().is_some_and(|m| line.starts_with(m)) && s.first_marked.is_none() {
                s.first_marked = Some(now);
            }
            match seq_of(line).filter(|&n| n < s.seen.len()) {
                Some(n) => {
                    s.seen[n] += 1;
                    if s.seen[n] == 1 {
                        s.lines += 1;
                    } else {
                        s.repeated += 1;
                    }
                }
                None => s.foreign += 1,
            }
        }
        if used > 0 {
            s.last_wall = Some(SystemTime::now());
        }
        drop(s);
        self.cond.notify_all();
        used
    }

    /// Waits until `n` distinct lines arrived, or none arrived for [`STALL`] (the rest are lost).
    pub fn wait(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        let mut progress = (s.lines, Instant::now());
        while s.lines < n && progress.1.elapsed() < STALL {
            s = self.cond.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
            if s.lines != progress.0 {
                progress = (s.lines, Instant::now());
            }
        }
    }

    /// What a finished case delivered, after [`SETTLE`]: lines that never arrived are lost.
    pub fn finish(&self, name: &str, lines: usize) -> Delivered {
        thread::sleep(SETTLE);
        let s = self.state.lock().unwrap();
        assert_eq!(s.foreign, 0, "{name}: lines without a seq= number");
        assert!(s.lines > 1, "{name}: no lines arrived");
        let span = s.last.unwrap() - s.first.unwrap();
        eprintln!("bench: {name}: {} of {lines} lines in {span:.2?}", s.lines);
        Delivered {
            rate: (s.lines - 1) as f64 / span.as_secs_f64(),
            lost: lines - s.lines,
            repeated: s.repeated,
            last_wall: s.last_wall.unwrap(),
        }
    }
}

/// The number after `seq=` in a line.
fn seq_of(line: &[u8]) -> Option<usize> {
    let at = line.windows(4).position(|w| w == b"seq=")? + 4;
    let digits = line.get(at..at + 8)?;
    digits.iter().try_fold(0usize, |n, &d| d.is_ascii_digit().then(|| n * 10 + (d - b'0') as usize))
}

/// Docker's multiplexed stream (8-byte header: stream, 3 zero bytes, big-endian length),
/// fed in arbitrary chunks; payloads go to the tally.
#[derive(Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Payload bytes of the frames so far that did not end a line yet.
    payload: Vec<u8>,
}

impl FrameParser {
    pub fn push(&mut self, chunk: &[u8], tally: &Tally) {
        self.buf.extend_from_slice(chunk);
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let len = u32::from_be_bytes(self.buf[at + 4..at + 8].try_into().unwrap()) as usize;
            if self.buf.len() - at - 8 < len {
                break;
            }
            self.payload.extend_from_slice(&self.buf[at + 8..at + 8 + len]);
            at += 8 + len;
        }
        self.buf.drain(..at);
        let used = tally.take_lines(&self.payload);
        self.payload.drain(..used);
    }
}

/// A TCP sink on 127.0.0.1 that tallies the lines of every connection.
pub struct Receiver {
    port: u16,
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(expected: usize, mark: Option<Vec<u8>>) -> Receiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let tally = Arc::new(Tally::new(expected, mark));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (tally.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let (t, st) = (t.clone(), st.clone());
                        thread::spawn(move || {
                            stream.set_nonblocking(false).ok();
                            stream.set_read_timeout(Some(Duration::from_millis(200))).ok();
                            let mut buf = vec![0u8; 256 * 1024];
                            let mut filled = 0;
                            while !st.load(Ordering::Relaxed) {
                                match stream.read(&mut buf[filled..]) {
                                    Ok(0) => return,
                                    Ok(n) => {
                                        filled += n;
                                        let used = t.take_lines(&buf[..filled]);
                                        buf.copy_within(used..filled, 0);
                                        filled -= used;
                                        if filled == buf.len() {
                                            buf.resize(buf.len() * 2, 0);
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { port, tally, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
