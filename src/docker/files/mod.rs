//! The json-file source: a container that logs with Docker's `json-file` driver is read from
//! its log file, `<containers dir>/<id>/<id>-json.log`, instead of through the Docker API.
//! dockerd then only writes the file; serving the API stream costs it three times more CPU
//! than writing, and its follower skips files that rotate under it (a fast writer with
//! `max-size=2m` lost two lines in three that way). Everything else (discovery, events,
//! names, labels, inspect data) stays on the API, and so does every other log driver.
//!
//! Each generation of the log is held open once seen: the current file, and, after a
//! rotation, every newer one, opened as soon as the rotation is noticed. A rotated file is
//! read to its end through its descriptor even after dockerd renamed, compressed or deleted
//! it, so a reader that falls behind loses nothing that was on disk when it looked. It looks
//! at every rotation (the inotify thread of [`wake`] opens the new file as dockerd creates
//! it), at every end of the log, after every read budget (256 KiB), and every 50 ms while
//! behind, so only `max-file` rotations between two looks, or while luaspout was not running,
//! can take a generation away unseen. That is a possible *gap*: the file being followed is
//! gone and the ones after it may not all be there. How many lines were in files that are gone
//! cannot be known, so gaps are counted (`luaspout_log_rotation_gaps_total`) and logged.
//!
//! Reads are big (64 KiB) and entries are parsed in place ([`entry`]). Where a line ends is
//! a [`FilePos`] (inode and offset), saved in the cursor next to the line's time, so a
//! restart seeks straight back; without one (a cursor written while reading through the
//! API), the time is the bridge: the reader starts at the first entry at or after it.

mod entry;
pub mod wake;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use flate2::read::MultiGzDecoder;
use tracing::{debug, warn};

use super::lines::{Line, LineAssembler};
use crate::delivery::{Cursor, FilePos};

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 64 << 10;

/// Longest entry kept: dockerd writes at most 16 KiB of log per entry, escaped up to six
/// times; anything longer is not dockerd's and is skipped (counted as malformed).
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// A file smaller than this is scanned from its start to find a time, not searched.
const SEARCH_FROM_BYTES: u64 = 1 << 20;

/// How far before a cursor's time the search for it lands: entries of stdout and stderr are
/// stamped by two copiers and may be written slightly out of order.
const SEARCH_MARGIN_NS: i64 = 1_000_000_000;

/// A container's json-file log, being followed.
pub struct LogFile {
    chain: Arc<Chain>,
    /// Bytes read from the front generation and not parsed yet (an entry's beginning).
    buf: BytesMut,
    assembler: LineAssembler,
    /// Entries that were not dockerd's JSON (skipped).
    malformed: u64,
}

/// The generations of a log held open. The reader reads the oldest; whoever notices a
/// rotation opens the new ones: the reader at the end of the log, or the pump's scout while
/// the reader is busy catching up or paused by a full route (a writer can rotate the whole
/// `max-file` window meanwhile).
pub struct Chain {
    /// `<containers dir>/<id>`.
    dir: PathBuf,
    /// `<id>-json.log`.
    name: String,
    /// Oldest (being read) first.
    generations: Mutex<VecDeque<Generation>>,
    /// Times the generation being followed was found gone: lines may be lost.
    gaps: AtomicU64,
}

/// One generation of the log (`-json.log`, or a rotated `.N` / `.N.gz`), open.
struct Generation {
    body: Body,
    inode: u64,
    /// Bytes of the (uncompressed) content read so far.
    offset: u64,
    /// Time of its first entry; `None` while it has none.
    first_ns: Option<i64>,
}

enum Body {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Plain(f) => f.read(buf),
            Body::Gzip(g) => g.read(buf),
        }
    }
}

/// Where reading starts, as asked by the pump.
pub enum StartAt {
    /// Where the cursor says: just after its file position when that file is still there,
    /// else from its time.
    Cursor(Cursor),
    /// The last `n` entries (`TAIL` with `BACKLOG`).
    Tail(u64),
}

/// What [`LogFile::open`] found.
pub struct Opened {
    pub file: LogFile,
    /// The reader starts exactly after the cursor's line: no line it reads is older.
    pub exact: bool,
}

impl LogFile {
    /// Opens the log of container `id` under `containers_dir`, positioned at `start`. An
    /// error means the file cannot be read (not there, no permission): the pump reads the
    /// container through the API instead.
    pub fn open(containers_dir: &Path, id: &str, start: StartAt) -> io::Result<Opened> {
        let dir = containers_dir.join(id);
        let name = format!("{id}-json.log");
        let mut generations = list(&dir, &name)?;
        let mut gaps = 0;
        let exact = match start {
            StartAt::Cursor(c) => match c.file.and_then(|pos| generations.iter().position(|g| g.inode == pos.inode)) {
                Some(at) if generations[at].seek(c.file.map_or(0, |p| p.offset))? => {
                    generations.drain(..at);
                    true
                }
                _ => {
                    if c.file.is_some() && generations.iter().all(|g| g.first_ns.is_none_or(|first| first > c.time_ns))
                    {
                        // Where it was read up to is no longer on disk.
                        gaps += 1;
                        warn!(dir = %dir.display(), "the log rotated past where this container was read up to while luaspout was not running; lines in files deleted meanwhile are lost");
                    }
                    seek_time(&mut generations, c.time_ns.saturating_sub(SEARCH_MARGIN_NS))?;
                    false
                }
            },
            StartAt::Tail(n) => {
                seek_tail(&mut generations, n)?;
                false
            }
        };
        let chain = Chain { dir, name, generations: Mutex::new(generations.into()), gaps: AtomicU64::new(gaps) };
        let file =
            LogFile { chain: Arc::new(chain), buf: BytesMut::new(), assembler: LineAssembler::default(), malformed: 0 };
        Ok(Opened { file, exact })
    }

    /// Reads what the log holds now, up to `budget` bytes, and assembles its lines into
    /// `out`. Returns the bytes read: 0 when the newest generation is at its end.
    pub fn read(&mut self, out: &mut Vec<Line>, budget: usize) -> io::Result<usize> {
        let mut total = 0;
        while total < budget {
            // The generations are locked for the read only, not the parsing: the inotify
            // thread opens new generations meanwhile.
            let (inode, end_offset) = {
                let mut generations = self.chain.lock();
                let Some(front) = generations.front_mut() else { return Ok(total) };
                let len = self.buf.len();
                self.buf.resize(len + READ_SIZE, 0);
                let n = match front.body.read(&mut self.buf[len..]) {
                    Ok(n) => n,
                    Err(e) => {
                        self.buf.truncate(len);
                        return Err(e);
                    }
                };
                self.buf.truncate(len + n);
                front.offset += n as u64;
                total += n;
                if n == 0 {
                    if generations.len() == 1 {
                        if self.buf.is_empty() {
                            // An idle log keeps no read buffer (one per container adds up).
                            self.buf = BytesMut::new();
                        }
                        return Ok(total);
                    }
                    // A rotated generation is complete: dockerd never writes to it again.
                    if !self.buf.is_empty() {
                        self.malformed += 1;
                        self.buf.clear();
                    }
                    generations.pop_front();
                    continue;
                }
                (front.inode, front.offset)
            };
            self.parse(inode, end_offset, out);
        }
        Ok(total)
    }

    /// Parses the complete entries in the buffer.
    /// `end_offset` is where the buffer ends in the file whose inode is `inode`.
    fn parse(&mut self, inode: u64, end_offset: u64, out: &mut Vec<Line>) {
        let Some(end) = memchr::memrchr(b'\n', &self.buf) else {
            if self.buf.len() > MAX_ENTRY_BYTES {
                self.malformed += 1;
                self.buf.clear();
            }
            return;
        };
        let chunk = self.buf.split_to(end + 1).freeze();
        // The offset in the file of the chunk's first byte.
        let chunk_at = end_offset - self.buf.len() as u64 - chunk.len() as u64;
        let mut from = 0;
        for nl in memchr::memchr_iter(b'\n', &chunk) {
            let line = from..nl;
            from = nl + 1;
            if line.is_empty() {
                continue;
            }
            match entry::parse(&chunk, line) {
                Ok(e) => {
                    let pos = FilePos { inode, offset: chunk_at + from as u64 };
                    self.assembler.push_entry(e.source, e.time_ns, e.log, e.ends_line, Some(pos), &mut |l| out.push(l));
                }
                Err(_) => self.malformed += 1,
            }
        }
    }

    /// Whether dockerd has rotated the log since the newest generation was opened; if so,
    /// the newer generations are opened ([`Chain::follow_rotation`]).
    pub fn follow_rotation(&self) -> io::Result<bool> {
        self.chain.follow_rotation()
    }

    /// The generations held, for the pump's scout.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.clone()
    }

    /// At the end of the log (the container is gone): a last partial line is still a line.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        self.assembler.finish(0, &mut |l| out.push(l));
    }

    /// What went wrong since the last call: lines split at the size cap, entries that were
    /// not dockerd's JSON, gaps where rotated files may have been lost.
    pub fn take_counts(&mut self) -> (u64, u64, u64) {
        let counts = (self.assembler.split_lines, self.malformed, self.chain.gaps.swap(0, Ordering::Relaxed));
        (self.assembler.split_lines, self.malformed) = (0, 0);
        counts
    }

    /// The container's log directory (what a pump watches).
    pub fn dir(&self) -> &Path {
        &self.chain.dir
    }
}

impl Chain {
    /// At the end of the newest generation: whether dockerd has rotated the log since it was
    /// opened. If so, every newer generation is opened, so that nothing still on disk is
    /// missed however long reading takes.
    pub fn follow_rotation(&self) -> io::Result<bool> {
        let current = self.dir.join(&self.name);
        let newest_inode = {
            let mut generations = self.lock();
            let newest = generations.back().expect("a generation is open");
            match std::fs::metadata(&current) {
                Ok(m) if m.ino() == newest.inode => return Ok(false),
                Ok(_) => {}
                // Between the rename and the new file, or the container is gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            let newest_inode = newest.inode;
            // Files opened while empty have entries by now: their order depends on them.
            for g in generations.iter_mut().filter(|g| g.first_ns.is_none()) {
                g.first_ns = g.first_time()?;
            }
            newest_inode
        };
        // Opened without the lock, so the reader goes on meanwhile.
        let listed = match list(&self.dir, &self.name) {
            Ok(listed) => listed,
            // Between dockerd's rename and its creating the new file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let still_there = listed.iter().any(|g| g.inode == newest_inode);
        let mut generations = self.lock();
        let front_first = generations.front().and_then(|g| g.first_ns);
        let mut added = 0;
        for g in listed {
            // Held already (this caller's or another's: the inotify thread, the scout and the
            // reader all look).
            let held =
                generations.iter().any(|h| h.inode == g.inode || (h.first_ns.is_some() && h.first_ns == g.first_ns));
            // Older than the one being read: read already (or being read, compressed).
            let older = matches!((front_first, g.first_ns), (Some(front), Some(first)) if first <= front);
            if held || older {
                continue;
            }
            // In order of first entry; one without entries yet is the newest.
            let at = generations
                .iter()
                .position(|h| match (h.first_ns, g.first_ns) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(h), Some(g)) => h > g,
                })
                .unwrap_or(generations.len());
            // The one being read stays in front.
            generations.insert(at.max(1), g);
            added += 1;
        }
        if !still_there {
            // The newest generation held was rotated out of the window before the next one
            // was opened: `max-file` rotations or more since the last look, and the files
            // after it may have been deleted too.
            self.gaps.fetch_add(1, Ordering::Relaxed);
            warn!(dir = %self.dir.display(), "the log rotated max-file times between two looks; lines in files deleted meanwhile may be lost");
        }
        debug!(dir = %self.dir.display(), generations = added, "log rotated");
        Ok(true)
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Generation>> {
        // Reads and opens leave the list consistent at every step: a panic cannot break it.
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Generation {
    /// The time of its first entry, read without moving (a plain file; a compressed one's is
    /// known when it is opened).
    fn first_time(&self) -> io::Result<Option<i64>> {
        use std::os::unix::fs::FileExt;
        let Body::Plain(f) = &self.body else { return Ok(self.first_ns) };
        let mut head = vec![0; 64 << 10];
        let n = f.read_at(&mut head, 0)?;
        Ok(first_entry_time(&head[..n]))
    }

    /// Moves to `offset`, if the file is that long; false if not (truncated, or not the file).
    fn seek(&mut self, offset: u64) -> io::Result<bool> {
        match &mut self.body {
            Body::Plain(f) => {
                if f.metadata()?.len() < offset {
                    return Ok(false);
                }
                f.seek(SeekFrom::Start(offset))?;
            }
            Body::Gzip(g) => {
                let skipped = io::copy(&mut g.by_ref().take(offset), &mut io::sink())?;
                if skipped < offset {
                    return Ok(false);
                }
            }
        }
        self.offset = offset;
        Ok(true)
    }
}

/// Opens every generation of the log in `dir`, oldest first. The order is by the time of
/// their first entry, a file without entries last; a generation seen twice (compressed while
/// listed) is kept once.
///
/// Files are opened newest name first (`-json.log`, `.1`, `.2`…): a rotation while they are
/// being opened only moves generations to names not opened yet, so none is skipped; a name
/// that vanished meanwhile (compressed, or deleted) makes it look again.
fn list(dir: &Path, name: &str) -> io::Result<Vec<Generation>> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let (found, vanished) = list_once(dir, name)?;
        if !vanished || attempt == ATTEMPTS {
            return Ok(found);
        }
        attempt += 1;
    }
}

/// One look at the directory: the generations, and whether a name vanished before it could
/// be opened.
fn list_once(dir: &Path, name: &str) -> io::Result<(Vec<Generation>, bool)> {
    let mut names = Vec::new();
    for dirent in std::fs::read_dir(dir)? {
        let Ok(dirent) = dirent else { continue };
        let file_name = dirent.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let Some(suffix) = file_name.strip_prefix(name) else { continue };
        let (index, gzip) = match suffix {
            "" => (Ok(0), false),
            s => match s.strip_prefix('.') {
                Some(n) => match n.strip_suffix(".gz") {
                    Some(n) => (n.parse::<u32>(), true),
                    None => (n.parse::<u32>(), false),
                },
                None => continue,
            },
        };
        let Ok(index) = index else { continue };
        names.push((index, gzip, dirent.path()));
    }
    if !names.iter().any(|(i, _, _)| *i == 0) {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", dir.join(name).display())));
    }
    names.sort();
    let mut vanished = false;
    let mut found: Vec<(bool, Generation)> = Vec::new();
    for (_, gzip, path) in names {
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                vanished = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let inode = f.metadata()?.ino();
        let generation = if gzip {
            // Being written by dockerd's compressor (its plain twin is still there), or
            // empty: nothing to read in it.
            let Ok(Some(first_ns)) = gzip_first_time(&path) else { continue };
            Generation {
                body: Body::Gzip(Box::new(MultiGzDecoder::new(f))),
                inode,
                offset: 0,
                first_ns: Some(first_ns),
            }
        } else {
            let mut g = Generation { body: Body::Plain(f), inode, offset: 0, first_ns: None };
            g.first_ns = g.first_time()?;
            g
        };
        found.push((gzip, generation));
    }
    found.sort_by_key(|(gzip, g)| (g.first_ns.is_none(), g.first_ns, *gzip));
    let mut out: Vec<Generation> = Vec::new();
    for (_, g) in found {
        let twin = out.iter().any(|o| o.inode == g.inode || (o.first_ns.is_some() && o.first_ns == g.first_ns));
        if !twin {
            out.push(g);
        }
    }
    Ok((out, vanished))
}

/// The time of the first entry of a compressed log file.
fn gzip_first_time(path: &Path) -> io::Result<Option<i64>> {
    let mut head = Vec::with_capacity(4096);
    MultiGzDecoder::new(File::open(path)?).take(64 << 10).read_to_end(&mut head)?;
    Ok(first_entry_time(&head))
}

/// The time of the first entry in the beginning of a log.
fn first_entry_time(head: &[u8]) -> Option<i64> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    entry::time_of(line)
}

/// Drops the generations wholly before `time_ns` and places the first one kept at an entry
/// boundary before it.
fn seek_time(generations: &mut Vec<Generation>, time_ns: i64) -> io::Result<()> {
    // A generation ends before the next one begins: the last one whose first entry is not
    // after `time_ns` holds it (or the ones before hold nothing at or after it).
    let keep_from = generations.iter().rposition(|g| g.first_ns.is_some_and(|first| first < time_ns)).unwrap_or(0);
    generations.drain(..keep_from);
    if let Some(g) = generations.first_mut()
        && let Body::Plain(f) = &mut g.body
    {
        let at = search(f, time_ns)?;
        f.seek(SeekFrom::Start(at))?;
        g.offset = at;
    }
    Ok(())
}

/// The offset of an entry boundary in a plain log file before which every entry is older
/// than `time_ns` (approximately: the caller gates lines by time), found by bisection.
fn search(f: &mut File, time_ns: i64) -> io::Result<u64> {
    let len = f.metadata()?.len();
    if len < SEARCH_FROM_BYTES {
        return Ok(0);
    }
    let (mut lo, mut hi) = (0u64, len);
    let mut block = vec![0; 64 << 10];
    while hi - lo > block.len() as u64 {
        let mid = lo + (hi - lo) / 2;
        f.seek(SeekFrom::Start(mid))?;
        let n = read_full(f, &mut block)?;
        let data = &block[..n];
        let Some(nl) = memchr::memchr(b'\n', data) else { break };
        let boundary = mid + nl as u64 + 1;
        let next = &data[nl + 1..];
        let line = memchr::memchr(b'\n', next).map_or(next, |e| &next[..e]);
        match entry::time_of(line) {
            Some(t) if t < time_ns => lo = boundary,
            Some(_) => hi = mid,
            None => break,
        }
    }
    Ok(lo)
}

/// Places the generations at the `n`th entry from the end (over all generations; a
/// compressed generation reached is read whole).
fn seek_tail(generations: &mut Vec<Generation>, n: u64) -> io::Result<()> {
    if n == 0 {
        let last = generations.len() - 1;
        generations.drain(..last);
        if let Body::Plain(f) = &mut generations[0].body {
            generations[0].offset = f.seek(SeekFrom::End(0))?;
        }
        return Ok(());
    }
    let mut wanted = n;
    let mut from = 0;
    let mut offset = 0;
    for at in (0..generations.len()).rev() {
        let Body::Plain(f) = &mut generations[at].body else {
            from = at;
            break;
        };
        let (count, start) = entries_from_end(f, wanted)?;
        if let Some(start) = start {
            (from, offset) = (at, start);
            break;
        }
        wanted -= count;
    }
    generations.drain(..from);
    for (i, g) in generations.iter_mut().enumerate() {
        if let Body::Plain(f) = &mut g.body {
            let at = if i == 0 { offset } else { 0 };
            f.seek(SeekFrom::Start(at))?;
            g.offset = at;
        }
    }
    Ok(())
}

/// Counts entries from the end of `f` back to the `n`th: (entries found, the offset where the
/// `n`th begins, if the file holds that many).
fn entries_from_end(f: &mut File, n: u64) -> io::Result<(u64, Option<u64>)> {
    let len = f.metadata()?.len();
    let mut block = vec![0; 64 << 10];
    let mut end = len;
    let mut count = 0u64;
    // The file's last byte is the last entry's `\n`: it ends an entry, it does not start one.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        f.seek(SeekFrom::Start(start))?;
        let data = &mut block[..(end - start) as usize];
        f.read_exact(data)?;
        for nl in memchr::memrchr_iter(b'\n', data) {
            if std::mem::take(&mut skip_last) && start + nl as u64 + 1 == len {
                continue;
            }
            count += 1;
            if count == n {
                return Ok((count, Some(start + nl as u64 + 1)));
            }
        }
        skip_last = false;
        end = start;
    }
    // The first entry has no `\n` before it.
    if len > 0 {
        count += 1;
        if count == n {
            return Ok((count, Some(0)));
        }
    }
    Ok((count, None))
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::message::Source;

    const ID: &str = "c0ffee";
    /// 2021-12-06T15:27:06Z
    const T0: i64 = 1_638_804_426_000_000_000;

    /// A container directory that a test writes the way dockerd's json-file driver does.
    struct FakeLog {
        root: tempfile::TempDir,
        next: u64,
    }

    impl FakeLog {
        fn new() -> FakeLog {
            let root = tempfile::tempdir().unwrap();
            std::fs::create_dir(root.path().join(ID)).unwrap();
            std::fs::write(root.path().join(ID).join(format!("{ID}-json.log")), "").unwrap();
            FakeLog { root, next: 0 }
        }

        fn path(&self, suffix: &str) -> PathBuf {
            self.root.path().join(ID).join(format!("{ID}-json.log{suffix}"))
        }

        /// Appends one entry (`log` as given) stamped at the next nanosecond of the log.
        fn entry(&mut self, stream: &str, log: &str) -> i64 {
            let t = T0 + self.next as i64;
            self.next += 1;
            let secs = t.div_euclid(1_000_000_000) - T0 / 1_000_000_000;
            let line = format!(
                "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"2021-12-06T15:27:{:02}.{:09}Z\"}}\n",
                serde_json::to_string(log).unwrap(),
                6 + secs,
                t.rem_euclid(1_000_000_000)
            );
            let mut f = std::fs::OpenOptions::new().append(true).open(self.path("")).unwrap();
            f.write_all(line.as_bytes()).unwrap();
            t
        }

        fn lines(&mut self, n: usize, prefix: &str) {
            for i in 0..n {
                self.entry("stdout", &format!("{prefix} {i}\n"));
            }
        }

        /// Rotates as dockerd does with `max-file=keep+1`.
        fn rotate(&self, keep: u32) {
            let _ = std::fs::remove_file(self.path(&format!(".{keep}")));
            for i in (1..keep).rev() {
                let _ = std::fs::rename(self.path(&format!(".{i}")), self.path(&format!(".{}", i + 1)));
            }
            std::fs::rename(self.path(""), self.path(".1")).unwrap();
            std::fs::write(self.path(""), "").unwrap();
        }

        fn open(&self, start: StartAt) -> Opened {
            LogFile::open(self.root.path(), ID, start).unwrap()
        }
    }

    /// Reads everything there is, following rotations, as a pump does.
    fn drain(file: &mut LogFile) -> Vec<Line> {
        let mut out = Vec::new();
        loop {
            match file.read(&mut out, usize::MAX).unwrap() {
                0 if file.follow_rotation().unwrap() => {}
                0 => return out,
                _ => {}
            }
        }
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(&l.data).into_owned()).collect()
    }

    #[test]
    fn lines_come_with_their_stream_time_and_end_in_the_file() {
        let mut log = FakeLog::new();
        let t = log.entry("stdout", "one\n");
        log.entry("stderr", "two\r\n");
        let mut file = log.open(StartAt::Cursor(Cursor::START)).file;
        let lines = drain(&mut file);
        assert_eq!(texts(&lines), ["one", "two\r"]);
        assert_eq!((lines[0].source, lines[0].time_ns), (Source::Stdout, t));
        assert_eq!(lines[1].source, Source::Stderr);
        let size = std::fs::metadata(log.path("")).unwrap().len();
        assert_eq!(lines[1].file.unwrap().offset, size);
        assert_eq!(lines[0].file.unwrap().inode, std::fs::metadata(log.path("")).unwrap().ino());
    }

    #[test]
    fn partial_entries_make_one_line_per_stream() {
        let mut log = FakeLog::new();
        log.entry("stdout", "aaaa");
        log.entry("stderr", "err\n");
        log.entry("stdout", "bbbb");
        log.entry("stdout", "cc\n");
        let lines = drain(&mut log.open(StartAt::Cursor(Cursor::START)).file);
        assert_eq!(texts(&lines), ["err", "aaaabbbbcc"]);
        assert_eq!(lines[1].time_ns, T0, "the time of the line's first piece");
    }

    #[test]
    fn a_half_written_entry_waits_for_its_end() {
        let mut log = FakeLog::new();
        log.lines(1, "whole");
        let mut file = log.open(StartAt::Cursor(Cursor::START)).file;
        let mut f = std::fs::OpenOptions::new().append(true).open(log.path("")).unwrap();
        f.write_all(br#"{"log":"half"#).unwrap();
        assert_eq!(texts(&drain(&mut file)), ["whole 0"]);
        f.write_all(b"\\n\",\"stream\":\"stdout\",\"time\":\"2021-12-06T15:27:07Z\"}\n").unwrap();
        assert_eq!(texts(&drain(&mut file)), ["half"]);
    }

    #[test]
    fn rotations_while_behind_lose_nothing_that_was_held_or_on_disk() {
        let mut log = FakeLog::new();
        log.lines(3, "first");
        let mut file = log.open(StartAt::Cursor(Cursor::START)).file;
        let mut got = texts(&drain(&mut file));
        // Three rotations before the reader looks again; max-file=5 keeps them all.
        log.lines(2, "second");
        log.rotate(4);
        log.lines(2, "third");
        log.rotate(4);
        log.lines(2, "fourth");
        log.rotate(4);
        log.lines(1, "current");
        got.extend(texts(&drain(&mut file)));
        let want: Vec<String> = ["first 0", "first 1", "first 2", "second 0", "second 1", "third 0", "third 1"]
            .into_iter()
            .map(String::from)
            .chain(["fourth 0", "fourth 1", "current 0"].map(String::from))
            .collect();
        assert_eq!(got, want);
        assert_eq!(file.take_counts(), (0, 0, 0));
    }

    #[test]
    fn a_held_file_is_read_to_its_end_after_it_was_deleted() {
        let mut log = FakeLog::new();
        log.lines(2, "old");
        let mut file = log.open(StartAt::Cursor(Cursor::START)).file;
        // max-file=2: the held generation is rotated to .1, then deleted by the next rotation.
        log.rotate(1);
        log.lines(1, "middle");
        log.rotate(1);
        log.lines(1, "new");
        let got = texts(&drain(&mut file));
        assert_eq!(got[..2], ["old 0", "old 1"]);
        assert_eq!(got.last().unwrap(), "new 0");
        assert_eq!(got, ["old 0", "old 1", "middle 0", "new 0"]);
        // The held file was deleted: the reader cannot tell whether a file between went too.
        assert_eq!(file.take_counts(), (0, 0, 1));
    }

    #[test]
    fn a_cursor_with_a_file_position_resumes_just_after_its_line() {
        let mut log = FakeLog::new();
        log.lines(5, "a");
        let lines = drain(&mut log.open(StartAt::Cursor(Cursor::START)).file);
        let at = &lines[2];
        let cursor = Cursor { time_ns: at.time_ns, skip: 1, file: at.file };
        log.rotate(3);
        log.lines(2, "b");
        let opened = log.open(StartAt::Cursor(cursor));
        assert!(opened.exact);
        let mut file = opened.file;
        assert_eq!(texts(&drain(&mut file)), ["a 3", "a 4", "b 0", "b 1"]);
    }

    #[test]
    fn a_cursor_without_a_position_starts_near_its_time() {
        let mut log = FakeLog::new();
        // Over a MiB, so the time is searched for: one entry per millisecond of log time.
        log.next = 0;
        let mut times = Vec::new();
        for i in 0..20_000 {
            log.next = i * 1_000_000;
            times.push(log.entry("stdout", &format!("{i:08} {}\n", "x".repeat(40))));
        }
        assert!(std::fs::metadata(log.path("")).unwrap().len() > SEARCH_FROM_BYTES);
        let target = times[15_000] + SEARCH_MARGIN_NS;
        let opened = log.open(StartAt::Cursor(Cursor::from(target)));
        assert!(!opened.exact);
        let lines = drain(&mut { opened.file });
        // The search lands before the cursor's time (less its margin), never after it.
        assert!(lines[0].time_ns < times[15_000], "starts at or before the margin");
        assert!(lines.len() < 6_000, "does not read from the start: {}", lines.len());
        assert!(lines.iter().any(|l| l.time_ns == target));
    }

    #[test]
    fn tail_counts_entries_back_over_rotated_files() {
        let mut log = FakeLog::new();
        log.lines(3, "old");
        log.rotate(3);
        log.lines(2, "new");
        let lines = drain(&mut log.open(StartAt::Tail(4)).file);
        assert_eq!(texts(&lines), ["old 1", "old 2", "new 0", "new 1"]);
        let lines = drain(&mut log.open(StartAt::Tail(1)).file);
        assert_eq!(texts(&lines), ["new 1"]);
        assert_eq!(drain(&mut log.open(StartAt::Tail(0)).file).len(), 0);
        assert_eq!(drain(&mut log.open(StartAt::Tail(100)).file).len(), 5);
    }

    #[test]
    fn compressed_generations_are_read_in_order() {
        let mut log = FakeLog::new();
        log.lines(2, "zipped");
        log.rotate(3);
        let plain = std::fs::read(log.path(".1")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        std::fs::write(log.path(".1.gz"), gz.finish().unwrap()).unwrap();
        std::fs::remove_file(log.path(".1")).unwrap();
        log.lines(1, "plain");
        let lines = drain(&mut log.open(StartAt::Cursor(Cursor::START)).file);
        assert_eq!(texts(&lines), ["zipped 0", "zipped 1", "plain 0"]);
    }

    #[test]
    fn broken_entries_are_counted_and_skipped() {
        let mut log = FakeLog::new();
        log.lines(1, "good");
        std::fs::OpenOptions::new().append(true).open(log.path("")).unwrap().write_all(b"garbage\n").unwrap();
        log.lines(1, "also good");
        let mut file = log.open(StartAt::Cursor(Cursor::START)).file;
        assert_eq!(texts(&drain(&mut file)), ["good 0", "also good 0"]);
        assert_eq!(file.take_counts(), (0, 1, 0));
    }

    #[test]
    fn a_missing_log_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        assert!(LogFile::open(root.path(), ID, StartAt::Cursor(Cursor::START)).is_err());
    }
}
