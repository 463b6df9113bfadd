//! One container's log stream: follow `logs` with Docker's timestamps, cut the body into
//! frames in place ([`super::frames`]), reassemble lines, and hand them to the container's
//! router worker. When the stream ends while the container still runs (a daemon hiccup, a
//! rotation), reattach from the last line read, after a backoff so a misbehaving daemon is
//! never hammered.
//!
//! The lines of each read are registered with the container's delivery [`Track`] on their
//! way out and sent to the worker together, so the cursor that is persisted only passes a
//! line once every route has delivered it. Before handing on a read's lines, the pump looks
//! at the queues of the `on_full = "block"` routes that take its
//! container: while one is full it stops reading (Docker keeps the lines meanwhile), which is
//! how a slow sink slows down exactly the containers it takes and no others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::LogsOptions;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::body;
use super::files::wake::LogWakes;
use super::files::{Chain, LogFile, StartAt};
use super::frames::{Demux, Entry};
use super::lines::{Line, LineAssembler};
use super::{Inspected, inspect};
use crate::backoff::Backoff;
use crate::config::options::OnFull;
use crate::delivery::{Cursor, Track};
use crate::message::{Container, Message, ReadFrom};
use crate::route::Route;
use crate::router::{BATCH_MAX, Generation, Inbox, Input};
use crate::stats::{self, Stats};
use crate::tap::Tap;
use crate::timefmt::now_ns;

/// How much later than `State.FinishedAt` a run's last line can be stamped: a line without
/// a newline is flushed when the output pipe closes, after Docker has recorded the exit
/// (measured: about 20 ms on dockerd 20.10).
const UNTERMINATED_LINE_SLACK_NS: i64 = 500_000_000;

/// How long a busy pump lets dockerd's output pile up before reading on. dockerd flushes
/// every frame, so a reader that keeps up reads one line per syscall and wake-up; after a
/// pause, one read takes in hundreds. A quiet stream never pauses. Only through bollard (a
/// daemon on TCP): on the unix socket the body paces its own reads (`socket::PACE`).
const LINGER: Duration = Duration::from_millis(2);

/// Frames in a row that make a stream busy, if they came within [`BURST_WINDOW`] (a rate of
/// 10,000 lines/s and up). Large enough that the pauses never cap a stream below what
/// dockerd can deliver: 512 frames per 2 ms pause is over 200,000 lines/s.
const BURST_FRAMES: u32 = 512;
const BURST_WINDOW: Duration = Duration::from_millis(50);

/// How often a file pump reads while its log is busy. dockerd writes every entry on its own:
/// reading on a timer takes in hundreds at a time, where an inotify wake-up per entry would
/// cost more than the reading.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// Reads in a row that found nothing before a file pump counts its log as idle and waits
/// for inotify instead.
const IDLE_AFTER_POLLS: u32 = 8;

/// The safety net of an idle file pump: it reads this often even without a wake-up.
const SLOW_POLL: Duration = Duration::from_millis(500);

/// Most bytes a file pump reads before handing its lines on and letting other tasks run.
const FILE_READ_BUDGET: usize = 256 << 10;

/// How often a busy file pump's scout looks for rotations: well within the time a fast
/// writer takes to fill a small `max-file` window (5 files of 2 MB at 20 MB/s: 500 ms).
const SCOUT_INTERVAL: Duration = Duration::from_millis(50);

/// Frames read since the last pause, and since when.
struct Burst {
    count: u32,
    since: std::time::Instant,
}

impl Burst {
    fn new() -> Burst {
        Burst { count: 0, since: std::time::Instant::now() }
    }

    /// Whether to pause before reading on; a slow stream starts a new count instead.
    fn busy(&mut self) -> bool {
        if self.count < BURST_FRAMES {
            return false;
        }
        if self.since.elapsed() < BURST_WINDOW {
            return true;
        }
        *self = Burst::new();
        false
    }
}

/// Tracks, while reading, which lines the cursor says were already delivered, and which
/// belong to a later run than the one being read.
struct Gate {
    cursor: Cursor,
    seen_at_cursor: u32,
    until_ns: i64,
}

impl Gate {
    fn admit(&mut self, time_ns: i64) -> bool {
        if time_ns < self.cursor.time_ns || time_ns > self.until_ns {
            return false;
        }
        if time_ns == self.cursor.time_ns && self.seen_at_cursor < self.cursor.skip {
            self.seen_at_cursor += 1;
            return false;
        }
        true
    }
}

/// The newest line handed on per stream. One stream's lines are stamped and written by one
/// dockerd copier in order, so a line older than the last one of its stream, or the last one
/// again (same time, same bytes), is a repeat: dockerd 20.10's follower sends lines again when
/// json-file rotates under it. (Pieces of a line split at the size cap share a time but not
/// their bytes.)
///
/// The newest line's bytes are copied into a buffer kept from line to line: a clone of the
/// line would share its buffer's count, which this thread and the router's then update for
/// every line.
#[derive(Default)]
struct Repeats {
    newest: [(i64, Vec<u8>); 2],
    dropped: u64,
}

/// The most a [`Repeats`] buffer keeps between lines once a longer line has passed.
const REPEATS_KEEP: usize = 4096;

impl Repeats {
    fn is_repeat(&mut self, line: &Line) -> bool {
        let (newest_ns, newest_data) = &mut self.newest[line.source as usize];
        if line.time_ns < *newest_ns || (line.time_ns == *newest_ns && line.data == newest_data.as_slice()) {
            self.dropped += 1;
            return true;
        }
        *newest_ns = line.time_ns;
        newest_data.clear();
        if newest_data.capacity() > REPEATS_KEEP && line.data.len() <= REPEATS_KEEP {
            newest_data.shrink_to(REPEATS_KEEP);
        }
        newest_data.extend_from_slice(&line.data);
        false
    }
}

/// What a pump needs to read a container's json-file log itself.
pub struct FileSource {
    /// Where the engine keeps containers (`<dir>/<id>/<id>-json.log`).
    pub containers_dir: std::path::PathBuf,
    /// The process's inotify watcher.
    pub wakes: Arc<LogWakes>,
    /// Counts the container's `die` events: the file does not say when a container stops.
    pub died: watch::Receiver<u64>,
}

/// The log file being read, and the gate its lines pass (the gate of the open: the lines
/// read after it are all new).
struct OpenLog {
    file: LogFile,
    gate: Gate,
    /// Woken by inotify on writes (only while idle; rotations always).
    watching: bool,
    /// Whether the reader is behind the end of the log: its scout looks for rotations then.
    busy: watch::Sender<bool>,
    /// Stops the scout with the log.
    _scout: tokio_util::sync::DropGuard,
    /// The watcher of the log's directory, which stops watching it with the log (whether the
    /// pump ends or falls back to the API).
    wakes: Arc<LogWakes>,
}

impl Drop for OpenLog {
    fn drop(&mut self) {
        self.wakes.unwatch(self.file.dir());
    }
}

/// While the reader of `chain` is busy (catching up, or paused by a full route), opens each
/// new generation of the log as dockerd rotates it, so that none is deleted unseen.
async fn scout_rotations(chain: Arc<Chain>, mut busy: watch::Receiver<bool>, stop: CancellationToken) {
    loop {
        tokio::select! {
            waited = busy.wait_for(|b| *b) => if waited.is_err() { return },
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(SCOUT_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = chain.follow_rotation() {
            debug!(error = %e, "looking for log rotations");
        }
    }
}

/// Everything a pump needs.
pub struct PumpArgs {
    pub docker: Docker,
    /// The daemon's unix socket, when it is reached on one: the pump reads its log stream
    /// there itself.
    pub socket: Option<PathBuf>,
    pub container: watch::Receiver<Arc<Container>>,
    pub start: Cursor,
    /// `tail` for the first request (`TAIL` with `BACKLOG`), `all` otherwise.
    pub tail: String,
    pub inbox: Inbox,
    /// The container's delivery track: every line read is registered there.
    pub track: Arc<Track>,
    /// The routes in force, for the queues that may pause this container.
    pub generations: watch::Receiver<Arc<Generation>>,
    /// `INACTIVITY_TIMEOUT`: reopen a stream silent for this long.
    pub inactivity: Option<Duration>,
    pub stats: Arc<Stats>,
    /// Counts the watcher's connections to dockerd: a pump waiting for the daemon retries as
    /// soon as it changes instead of at the end of its backoff.
    pub connections: watch::Receiver<u64>,
    /// Set when the container's log can be read from its file.
    pub files: Option<FileSource>,
    /// Where the source of each container is shown.
    pub tap: Arc<Tap>,
    pub shutdown: CancellationToken,
}

/// Reads the container until it stops (or is removed, or luaspout shuts down), and returns
/// the position of the last line handed on.
///
/// A pump attaches to the log stream ([`Pump::read`]) and, when the stream ends, asks Docker
/// why ([`Pump::why_ended`]): a container that runs on is attached again from the position;
/// one that stopped gets one last read of its run's end; one that is gone ends the pump.
pub async fn run(args: PumpArgs) -> Cursor {
    let PumpArgs {
        docker,
        socket,
        mut container,
        start,
        tail,
        inbox,
        track,
        generations,
        inactivity,
        stats,
        connections,
        files,
        tap,
        shutdown,
    } = args;
    let current = container.borrow_and_update().clone();
    tap.container_source(&current.id, if files.is_some() { ReadFrom::Files } else { ReadFrom::Api });
    let mut pump = Pump {
        id: current.id.clone(),
        brakes: Brakes::new(generations, &current, track.clone(), stats.clone()),
        current,
        out: Outlet { inbox, track, shutdown: shutdown.clone(), repeats: Repeats::default(), admitted: Vec::new() },
        docker,
        socket,
        container,
        position: start,
        tail,
        lines: Vec::new(),
        inactivity,
        stats,
        connections,
        files,
        log: None,
        wake: Arc::default(),
        tap,
        shutdown,
    };
    pump.run().await
}

/// One container's pump while it runs.
struct Pump {
    docker: Docker,
    socket: Option<PathBuf>,
    id: String,
    /// Renames arrive here.
    container: watch::Receiver<Arc<Container>>,
    /// The snapshot lines are sent with.
    current: Arc<Container>,
    brakes: Brakes,
    out: Outlet,
    /// The last line handed on.
    position: Cursor,
    /// `tail` of the next request (only the first one may have another than `all`).
    tail: String,
    /// Lines assembled and not handed on yet.
    lines: Vec<Line>,
    inactivity: Option<Duration>,
    stats: Arc<Stats>,
    connections: watch::Receiver<u64>,
    /// Set while the container is read from its log file.
    files: Option<FileSource>,
    log: Option<OpenLog>,
    /// Woken by inotify when the log changes.
    wake: Arc<tokio::sync::Notify>,
    tap: Arc<Tap>,
    shutdown: CancellationToken,
}

/// How one attachment to the log stream ended.
enum StreamEnd {
    /// Docker closed it, or it failed: the container may have stopped.
    Closed,
    /// Silent for `INACTIVITY_TIMEOUT`: reopen it from the position.
    Inactive,
    /// Shutdown, or the router is gone.
    Stop,
}

/// What Docker says about a container whose stream has ended.
enum AfterEnd {
    /// It runs on: attach again.
    Running { daemon_was_away: bool },
    /// It stopped: its run ends at this Docker time.
    Stopped { until_ns: i64 },
    /// It was removed.
    Gone,
    /// Shutdown.
    Stop,
}

impl Pump {
    async fn run(&mut self) -> Cursor {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        // After the container has stopped, one read without `follow`, up to the end of the run
        // that stopped (the container may be running again already): dockerd 20.10 does not send
        // a last line that has no newline to a follower with timestamps, but a plain read has it.
        let mut final_read: Option<i64> = None;
        loop {
            let (end, delivered_any) = self.read(final_read).await;
            if delivered_any {
                backoff.reset();
            }
            match end {
                StreamEnd::Stop => return self.position,
                _ if final_read.is_some() => {
                    self.stopped().await;
                    return self.position;
                }
                StreamEnd::Inactive | StreamEnd::Closed => {}
            }
            let inactive = matches!(end, StreamEnd::Inactive);
            match self.why_ended().await {
                AfterEnd::Stop => return self.position,
                AfterEnd::Gone => {
                    self.stopped().await;
                    return self.position;
                }
                // Reattach at once to read a stopped run's end, after a daemon outage, or to
                // reopen a silent stream.
                AfterEnd::Stopped { until_ns } => final_read = Some(until_ns),
                AfterEnd::Running { daemon_was_away } if daemon_was_away || inactive => {}
                // A stream that ends while the container runs on and the daemon answers is
                // backed off, so a misbehaving daemon is never hammered.
                AfterEnd::Running { .. } => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = self.shutdown.cancelled() => return self.position,
                    }
                }
            }
        }
    }

    /// Attaches to the log stream from the position (a last plain read up to `final_read`, if
    /// given) and hands on every line until the stream ends. Also says whether any line was
    /// handed on.
    async fn read(&mut self, final_read: Option<i64>) -> (StreamEnd, bool) {
        if self.files.is_some() {
            match self.read_file(final_read).await {
                Ok(read) => return read,
                Err(e) => {
                    warn!(container_id = %self.current.short_id(), container_name = %self.current.name, error = %e, "cannot read the log file; reading the container through the Docker API");
                    self.fall_back_to_api();
                }
            }
        }
        let until_ns = final_read.unwrap_or(i64::MAX);
        let options = LogsOptions {
            follow: final_read.is_none(),
            until: if until_ns == i64::MAX { 0 } else { (until_ns / 1_000_000_000 + 1).min(i32::MAX as i64) as i32 },
            stdout: true,
            stderr: true,
            timestamps: true,
            since: self.position.since_secs(),
            tail: std::mem::replace(&mut self.tail, "all".into()),
        };
        debug!(container_id = %self.current.short_id(), container_name = %self.current.name, since = options.since, "attaching");
        let mut stream = body::logs(&self.docker, self.socket.clone(), &self.id, &options);
        let mut gate = Gate { cursor: self.position, seen_at_cursor: 0, until_ns };
        let dropped_before = self.out.repeats.dropped;
        let mut demux = Demux::new(self.current.tty);
        let mut assembler = LineAssembler::default();
        let mut burst = Burst::new();
        let end = loop {
            if self.socket.is_none() && burst.busy() {
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = self.shutdown.cancelled() => break StreamEnd::Stop,
                }
                burst = Burst::new();
            }
            let mut item = tokio::select! {
                item = stream.next() => item,
                _ = sleep_or_never(self.inactivity) => {
                    debug!(container_id = %self.current.short_id(), "no log output for INACTIVITY_TIMEOUT; reopening from the cursor");
                    break StreamEnd::Inactive;
                }
                _ = self.shutdown.cancelled() => break StreamEnd::Stop,
            };
            // Take every piece of body that is ready, up to a batch, and hand their lines on
            // together. On the unix socket a piece is all that one read took in; through
            // bollard (TCP), hyper hands the body over one HTTP chunk, one dockerd frame, at a
            // time. The lines of a stream that ends here go out after the loop.
            let now = now_ns();
            let ended = loop {
                let chunk = match item {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        debug!(container_id = %self.current.short_id(), error = %format_args!("{e:#}"), "log stream failed");
                        break true;
                    }
                    None => break true,
                };
                let lines = &mut self.lines;
                let entries = demux.push(chunk, &mut |entry| match entry {
                    Entry::Frame(source, payload) => assembler.push_frame(source, payload, now, &mut |l| lines.push(l)),
                    Entry::Console(bytes) => assembler.push_console(&bytes, now, &mut |l| lines.push(l)),
                });
                match entries {
                    Ok(n) => burst.count += n,
                    Err(e) => {
                        debug!(container_id = %self.current.short_id(), error = %e, "log stream unreadable");
                        break true;
                    }
                }
                if self.lines.len() >= BATCH_MAX {
                    break false;
                }
                match stream.next().now_or_never() {
                    Some(next) => item = next,
                    None => break false,
                }
            };
            if ended {
                break StreamEnd::Closed;
            }
            self.take_rename().await;
            if !self.deliver(&mut gate).await {
                break StreamEnd::Stop;
            }
        };
        stats::add(&self.stats.lines_split, assembler.split_lines);
        stats::add(&self.stats.lines_repeated_by_docker, self.out.repeats.dropped - dropped_before);
        if matches!(end, StreamEnd::Stop) {
            return (end, gate.cursor != self.position);
        }
        // A stream reopened for inactivity reads its partial line again; any other end of
        // the stream ends the line too.
        if matches!(end, StreamEnd::Closed) {
            let lines = &mut self.lines;
            assembler.finish(now_ns(), &mut |l| lines.push(l));
        }
        let end = if self.deliver(&mut gate).await { end } else { StreamEnd::Stop };
        (end, gate.cursor != self.position)
    }

    /// Follows the container's json-file log from the position (to its end, if `final_read`)
    /// until the container stops (its `die` event), the daemon connection changes (did it stop
    /// meanwhile?) or shutdown. An error (the file cannot be opened or read) sends the pump to
    /// the API from the position.
    async fn read_file(&mut self, final_read: Option<i64>) -> std::io::Result<(StreamEnd, bool)> {
        let files = self.files.as_mut().expect("reading files");
        if self.log.is_none() {
            let start = match self.tail.parse::<u64>() {
                Ok(n) => StartAt::Tail(n),
                Err(_) => StartAt::Cursor(self.position),
            };
            let opened = LogFile::open(&files.containers_dir, &self.id, start)?;
            self.tail = "all".into();
            let cursor = if opened.exact { Cursor::START } else { self.position };
            let gate = Gate { cursor, seen_at_cursor: 0, until_ns: i64::MAX };
            debug!(container_id = %self.current.short_id(), exact = opened.exact, "reading the log file");
            let (busy, busy_rx) = watch::channel(true);
            let stop = self.shutdown.child_token();
            let chain = opened.file.chain();
            files.wakes.watch(&self.wake, &chain);
            tokio::spawn(scout_rotations(chain, busy_rx, stop.clone()));
            self.log = Some(OpenLog {
                file: opened.file,
                gate,
                watching: false,
                busy,
                _scout: stop.drop_guard(),
                wakes: files.wakes.clone(),
            });
        }
        let start = self.position;
        let mut idle_polls = 0;
        // The container died, or the daemon connection changed: after reading to the end,
        // the stream ends so that the pump asks Docker whether the container still runs.
        let mut ask_docker = false;
        let end = loop {
            let log = self.log.as_mut().expect("opened above");
            log.gate.until_ns = final_read.unwrap_or(i64::MAX);
            let n = log.file.read(&mut self.lines, FILE_READ_BUDGET)?;
            log.busy.send_if_modified(|busy| std::mem::replace(busy, n > 0) != (n > 0));
            // At the end of the log, and between budgets while catching up (a writer faster
            // than the reader must not rotate the files after ours out unseen).
            if n == 0 || n >= FILE_READ_BUDGET {
                let rotated = log.file.follow_rotation()?;
                if rotated && n == 0 {
                    // dockerd rotated the log: read the new generation before waiting.
                    continue;
                }
            }
            let (split, malformed, gaps) = log.file.take_counts();
            if split + malformed + gaps > 0 {
                stats::add(&self.stats.lines_split, split);
                stats::add(&self.stats.log_entries_malformed, malformed);
                stats::add(&self.stats.log_rotation_gaps, gaps);
            }
            if !self.deliver_file_lines().await {
                break StreamEnd::Stop;
            }
            self.take_rename().await;
            let files = self.files.as_mut().expect("reading files");
            let log = self.log.as_mut().expect("opened above");
            if n > 0 {
                idle_polls = 0;
                if log.watching {
                    files.wakes.set_idle(log.file.dir(), false);
                    log.watching = false;
                }
                if n >= FILE_READ_BUDGET {
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            if final_read.is_some() {
                log.file.finish(&mut self.lines);
                if !self.deliver_file_lines().await {
                    break StreamEnd::Stop;
                }
                break StreamEnd::Closed;
            }
            if ask_docker && n == 0 {
                break StreamEnd::Closed;
            }
            if n == 0 {
                idle_polls += 1;
            }
            let pause = if idle_polls < IDLE_AFTER_POLLS {
                BUSY_POLL
            } else if !log.watching {
                // Watch, then read once more: a line written meanwhile woke no one.
                files.wakes.set_idle(log.file.dir(), true);
                log.watching = true;
                continue;
            } else {
                SLOW_POLL
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified(), if log.watching => {}
                Ok(()) = files.died.changed() => ask_docker = true,
                Ok(()) = self.connections.changed() => ask_docker = true,
                _ = self.shutdown.cancelled() => break StreamEnd::Stop,
            }
        };
        Ok((end, self.position != start))
    }

    /// Takes a rename the watcher sent: later lines carry the new snapshot, and the worker
    /// drops what it keeps for the old one.
    async fn take_rename(&mut self) {
        if self.container.has_changed().unwrap_or(false) {
            let renamed = self.container.borrow_and_update().clone();
            let _ = self.out.inbox.send(Input::Renamed(self.current.epoch)).await;
            self.current = renamed;
        }
    }

    /// Hands on the lines read from the log file that its gate admits.
    async fn deliver_file_lines(&mut self) -> bool {
        let log = self.log.as_mut().expect("reading the log file");
        self.out.deliver(&mut self.lines, &mut log.gate, &mut self.position, &self.current, &mut self.brakes).await
    }

    /// The log file cannot be read: the container is read through the API from the position.
    fn fall_back_to_api(&mut self) {
        self.files = None;
        self.log = None;
        self.lines.clear();
        self.tap.container_source(&self.id, ReadFrom::Api);
    }

    /// Hands on the assembled lines the gate admits.
    async fn deliver(&mut self, gate: &mut Gate) -> bool {
        self.out.deliver(&mut self.lines, gate, &mut self.position, &self.current, &mut self.brakes).await
    }

    /// Asks Docker why the stream ended, retrying while the daemon does not answer.
    async fn why_ended(&mut self) -> AfterEnd {
        let mut daemon_was_away = false;
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            // A daemon that is restarting can accept a request and not answer it: when the
            // watcher has reconnected meanwhile, ask again on a fresh request.
            let answer = tokio::select! {
                answer = inspect(&self.docker, &self.id) => answer,
                _ = self.connections.changed() => continue,
                _ = self.shutdown.cancelled() => return AfterEnd::Stop,
            };
            match answer {
                Ok(Inspected::Found(c)) if c.running => return AfterEnd::Running { daemon_was_away },
                Ok(Inspected::Found(c)) => {
                    let until_ns = c.finished_ns.map_or(i64::MAX, |end| end.saturating_add(UNTERMINATED_LINE_SLACK_NS));
                    return AfterEnd::Stopped { until_ns };
                }
                Ok(Inspected::Gone) => return AfterEnd::Gone,
                Err(e) => {
                    debug!(container_id = %self.current.short_id(), error = %e, "cannot inspect container; retrying");
                    daemon_was_away = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry.next_delay()) => {}
                _ = self.connections.changed() => {}
                _ = self.shutdown.cancelled() => return AfterEnd::Stop,
            }
        }
    }

    /// Tells the worker the container's stream has ended for good.
    async fn stopped(&self) {
        let _ = self.out.inbox.send(Input::Stopped { id: self.id.clone(), epoch: self.current.epoch }).await;
    }
}

/// Where a pump's lines go: the router worker's inbox, each read's lines registered with the
/// container's track and sent together.
struct Outlet {
    inbox: Inbox,
    track: Arc<Track>,
    shutdown: CancellationToken,
    repeats: Repeats,
    /// Lines the gate admitted, with the cursor past each; reused across reads.
    admitted: Vec<(Line, Cursor)>,
}

impl Outlet {
    /// Sends the collected lines that the gate admits, advancing the position, in inputs of
    /// up to [`BATCH_MAX`] lines, each after the brakes let it go. False on shutdown or when
    /// the router is gone; the position then stays at the last line sent.
    async fn deliver(
        &mut self,
        lines: &mut Vec<Line>,
        gate: &mut Gate,
        position: &mut Cursor,
        container: &Arc<Container>,
        brakes: &mut Brakes,
    ) -> bool {
        self.admitted.clear();
        let mut after = *position;
        for line in lines.drain(..) {
            if !gate.admit(line.time_ns) || self.repeats.is_repeat(&line) {
                continue;
            }
            after = if line.time_ns == after.time_ns {
                Cursor { time_ns: line.time_ns, skip: after.skip + 1, file: line.file }
            } else {
                Cursor { time_ns: line.time_ns, skip: 1, file: line.file }
            };
            self.admitted.push((line, after));
        }
        while !self.admitted.is_empty() {
            if !brakes.wait(container, &self.shutdown).await {
                return false;
            }
            // Room first, then the holds: lines abandoned at shutdown must not count as delivered.
            let n = self.admitted.len().min(BATCH_MAX);
            let permit = tokio::select! {
                permit = self.inbox.reserve(n) => permit,
                _ = self.shutdown.cancelled() => None,
            };
            let Some(permit) = permit else { return false };
            let acks = self.track.register(self.admitted[..n].iter().map(|(_, after)| *after));
            *position = self.admitted[n - 1].1;
            let batch = self
                .admitted
                .drain(..n)
                .zip(acks)
                .map(|((line, _), ack)| Message {
                    container: container.clone(),
                    source: line.source,
                    time_ns: line.time_ns,
                    data: line.data,
                    ack: Some(ack),
                })
                .collect();
            permit.send(batch);
        }
        true
    }
}

/// The `on_full = "block"` routes that take a container: while one's queue is full, the
/// container is not read. Nor is it while its delivery track is full
/// ([`crate::delivery::TRACK_MAX`] lines not delivered yet, held by a route whose queue does
/// not pause it: a removed route in its grace period). They are looked at before each input of
/// lines, so a queue or a track can go past its bound by one input (at most [`BATCH_MAX`]
/// lines).
struct Brakes {
    generations: watch::Receiver<Arc<Generation>>,
    routes: Vec<Arc<Route>>,
    /// The container snapshot `routes` was chosen for.
    epoch: u64,
    track: Arc<Track>,
    /// Where the routes that hold a full track are named.
    stats: Arc<Stats>,
}

impl Brakes {
    fn new(
        mut generations: watch::Receiver<Arc<Generation>>,
        container: &Container,
        track: Arc<Track>,
        stats: Arc<Stats>,
    ) -> Brakes {
        let routes = blocking_routes(&generations.borrow_and_update(), container);
        Brakes { generations, routes, epoch: container.epoch, track, stats }
    }

    /// Waits while the track is full, showing the routes that hold it as holding the
    /// container back; false on shutdown.
    async fn wait_for_track(&self, container: &Container, shutdown: &CancellationToken) -> bool {
        if !self.track.is_full() {
            return true;
        }
        let holders: Vec<_> = self.track.holders().iter().map(|r| self.stats.route(r)).collect();
        debug!(container_name = %container.name, "too many lines not delivered yet; pausing the container's reads");
        for r in &holders {
            r.hold_back(&container.name);
        }
        let paused = std::time::Instant::now();
        let go_on = tokio::select! {
            _ = self.track.room() => true,
            _ = shutdown.cancelled() => false,
        };
        for r in &holders {
            r.let_go(&container.name, paused.elapsed());
        }
        go_on
    }

    /// Waits while a blocking route's queue is full (or the track is); false on shutdown.
    async fn wait(&mut self, container: &Container, shutdown: &CancellationToken) -> bool {
        if !self.wait_for_track(container, shutdown).await {
            return false;
        }
        loop {
            if self.generations.has_changed().unwrap_or(false) || self.epoch != container.epoch {
                self.routes = blocking_routes(&self.generations.borrow_and_update(), container);
                self.epoch = container.epoch;
            }
            let Some(full) = self.routes.iter().find(|r| r.sink.is_full()) else { return true };
            let full = full.clone();
            let paused = std::time::Instant::now();
            debug!(route = %full.name, container_name = %container.name, "route queue full; pausing the container's reads");
            full.stats.hold_back(&container.name);
            let go_on = tokio::select! {
                _ = full.sink.room() => true,
                _ = self.generations.changed() => true,
                _ = shutdown.cancelled() => false,
            };
            full.stats.let_go(&container.name, paused.elapsed());
            if !go_on {
                return false;
            }
        }
    }
}

fn blocking_routes(generation: &Generation, container: &Container) -> Vec<Arc<Route>> {
    generation
        .routes
        .iter()
        .filter(|r| r.on_full == OnFull::Block && r.matcher.matches_container(container))
        .cloned()
        .collect()
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::Source;

    #[test]
    fn gate_skips_what_the_cursor_delivered() {
        let mut g = Gate { cursor: Cursor { time_ns: 100, skip: 2, file: None }, seen_at_cursor: 0, until_ns: 101 };
        let admitted: Vec<bool> = [99, 100, 100, 100, 101, 102].iter().map(|&t| g.admit(t)).collect();
        assert_eq!(admitted, vec![false, false, false, true, true, false]);
    }

    #[test]
    fn a_line_older_than_the_last_of_its_stream_or_the_last_again_is_a_repeat() {
        let line = |source, time_ns, data: &'static str| Line { source, time_ns, data: Bytes::from(data), file: None };
        let mut r = Repeats::default();
        let seen: Vec<bool> = [
            line(Source::Stdout, 5, "a"),
            line(Source::Stderr, 3, "x"),
            line(Source::Stdout, 5, "a"),
            line(Source::Stdout, 4, "z"),
            line(Source::Stdout, 5, "piece 2"),
            line(Source::Stdout, 6, "b"),
        ]
        .iter()
        .map(|l| r.is_repeat(l))
        .collect();
        assert_eq!(seen, vec![false, false, true, true, false, false]);
        assert_eq!(r.dropped, 2);
    }

    #[test]
    fn repeats_keep_a_bounded_copy_after_a_long_line() {
        let mut r = Repeats::default();
        let long = Line { source: Source::Stdout, time_ns: 1, data: Bytes::from(vec![b'x'; 1 << 20]), file: None };
        assert!(!r.is_repeat(&long));
        assert!(r.is_repeat(&long), "the long line again is a repeat");
        let short = Line { source: Source::Stdout, time_ns: 2, data: Bytes::from("short\n"), file: None };
        assert!(!r.is_repeat(&short));
        assert!(r.is_repeat(&short));
        assert!(r.newest[0].1.capacity() <= REPEATS_KEEP, "{}", r.newest[0].1.capacity());
    }

    #[test]
    fn since_is_whole_seconds() {
        assert_eq!(Cursor::START.since_secs(), 0);
        assert_eq!(Cursor::from(1_638_804_426_123_456_789).since_secs(), 1_638_804_426);
    }
}
