//! Which of a container's lines have been delivered by every route that took them, so the
//! container's cursor ([`crate::state`]) never passes a line that is still on its way.
//!
//! The pump registers each line it reads with the container's [`Track`] and gets an [`Ack`],
//! a hold on that line that travels with the [`crate::message::Message`]. Every route that
//! queues the line takes a copy of the hold into its batch's [`Receipts`]; the writer settles
//! the receipts once the batch is on the wire (written to the socket, or acknowledged with a
//! 2xx). When the router is done with a message its own hold is released, so a line that no
//! route takes (filtered, no match) is delivered at once. A multiline group keeps its first
//! line's hold, so the cursor stops before a group until the group is delivered.
//!
//! The delivered position is the end of the longest run of lines, from the oldest, whose holds
//! are all released: delivery is in order per route, but routes finish at their own pace.
//! Receipts that are dropped without being settled at shutdown (a writer giving up with its
//! sink down) are abandoned: the cursor never passes them, so those lines are read again on
//! the next start instead of being lost. Receipts dropped unsettled while luaspout runs (a
//! writer task that panicked, a batch refused by a writer that has stopped) can never be
//! settled by anyone: they are released instead and counted as abandoned, so the cursor moves
//! on and the track does not grow behind a line that will never be delivered.
//!
//! A track holds at most [`TRACK_MAX`] lines: past it, the pump waits for the oldest to be
//! delivered ([`Track::room`]), and the routes holding the track's lines are named
//! ([`Track::holders`]) so `/metrics` can say which route holds the container back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stats::{self, Stats};

/// Most lines of one container between reading and delivery: about 24 B each, so a few MB
/// per container at worst, whatever a sink does (a block route's full queue pauses its
/// containers long before, so this bound only bites when lines are held elsewhere, e.g. by a
/// removed route in its grace period).
pub const TRACK_MAX: usize = 200_000;

/// Where a pump starts reading, and where it has got to: lines stamped before `time_ns` are
/// skipped, and so are the first `skip` lines stamped exactly `time_ns` (Docker's `since` has
/// one-second granularity, so the pump filters the rest itself). A line read from its
/// json-file log also says where it ends in the file, so a reader of the file resumes there;
/// the time stays the bridge for a reader of the API, or when that file is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub time_ns: i64,
    pub skip: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePos>,
}

/// The end of a line in a json-file log: the file's inode and the byte offset just past the
/// line's last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePos {
    pub inode: u64,
    pub offset: u64,
}

impl Cursor {
    /// From the beginning of the container's log.
    pub const START: Cursor = Cursor { time_ns: i64::MIN, skip: 0, file: None };

    /// Everything stamped at or after `time_ns`.
    pub fn from(time_ns: i64) -> Cursor {
        Cursor { time_ns, skip: 0, file: None }
    }

    /// Docker's `since` (whole seconds; 0 means from the beginning).
    pub fn since_secs(&self) -> i32 {
        if self.time_ns <= 0 { 0 } else { (self.time_ns / 1_000_000_000).min(i32::MAX as i64) as i32 }
    }
}

/// What every track of a process shares.
#[derive(Debug)]
pub struct Tracks {
    /// Woken when a delivered position moves (the state file's writer waits on it).
    pub moved: Notify,
    /// Once cancelled (shutdown), unsettled receipts hold their lines back for the next start
    /// instead of being released.
    pub shutdown: CancellationToken,
    /// Where abandoned lines are counted.
    pub stats: Arc<Stats>,
}

/// The lines of one container between reading and delivery.
#[derive(Debug)]
pub struct Track {
    inner: Mutex<Inner>,
    shared: Arc<Tracks>,
    /// Woken when the track drains below half of [`TRACK_MAX`].
    room: Notify,
}

#[derive(Debug)]
struct Inner {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// Everything up to here has been delivered.
    delivered: Cursor,
    /// Holds taken by each route's receipts and not yet settled, by route name.
    holders: HashMap<Arc<str>, u64>,
}

#[derive(Debug)]
struct Entry {
    /// The cursor just after this line.
    after: Cursor,
    holds: u32,
    /// A route gave up on this line: the cursor stops here for good.
    abandoned: bool,
}

impl Inner {
    fn entry(&mut self, seq: u64) -> &mut Entry {
        let i = (seq - self.base) as usize;
        &mut self.entries[i]
    }

    /// Moves `delivered` past every leading line with no holds left; true if it moved.
    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(front) = self.entries.front() {
            if front.holds > 0 || front.abandoned {
                break;
            }
            self.delivered = front.after;
            self.entries.pop_front();
            self.base += 1;
            moved = true;
        }
        moved
    }
}

impl Track {
    /// A container whose lines up to `delivered` need not be read again.
    pub fn new(delivered: Cursor, shared: Arc<Tracks>) -> Arc<Track> {
        let inner = Inner { base: 0, entries: VecDeque::new(), delivered, holders: HashMap::new() };
        Arc::new(Track { inner: Mutex::new(inner), shared, room: Notify::new() })
    }

    /// Whether the track holds [`TRACK_MAX`] lines: the pump should wait ([`Track::room`]).
    pub fn is_full(&self) -> bool {
        self.lock().entries.len() >= TRACK_MAX
    }

    /// Waits until the track has drained to half of [`TRACK_MAX`].
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().entries.len() < TRACK_MAX / 2 {
                return;
            }
            notified.await;
        }
    }

    /// The routes whose receipts hold lines of this container now.
    pub fn holders(&self) -> Vec<Arc<str>> {
        self.lock().holders.iter().filter(|(_, n)| **n > 0).map(|(r, _)| r.clone()).collect()
    }

    /// Where the container can be read again from without losing or repeating a line.
    pub fn delivered(&self) -> Cursor {
        self.lock().delivered
    }

    /// Registers a line just read (`after` is the cursor past it); the hold is the router's.
    pub fn register(self: &Arc<Track>, after: Cursor) -> Ack {
        let mut inner = self.lock();
        inner.entries.push_back(Entry { after, holds: 1, abandoned: false });
        let seq = inner.base + inner.entries.len() as u64 - 1;
        Ack { track: Some(self.clone()), seq }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counts that are still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases (or abandons) holds on `seqs`, all of this track, under one lock; `route`
    /// names the receipts' route, if they had one. Abandoning while luaspout runs releases
    /// the lines and counts them (nobody could ever settle them); at shutdown it keeps the
    /// cursor before them.
    fn finish(&self, seqs: impl Iterator<Item = u64>, abandon: bool, route: Option<&Arc<str>>) {
        let hold_back = abandon && self.shared.shutdown.is_cancelled();
        let mut inner = self.lock();
        let mut n = 0;
        for seq in seqs {
            let e = inner.entry(seq);
            e.holds -= 1;
            e.abandoned |= hold_back;
            n += 1;
        }
        if let Some(route) = route
            && let Some(held) = inner.holders.get_mut(route)
        {
            *held -= n;
            if *held == 0 {
                inner.holders.remove(route);
            }
        }
        if abandon && !hold_back {
            stats::add(&self.shared.stats.lines_abandoned, n);
        }
        if inner.advance() {
            let roomy = inner.entries.len() < TRACK_MAX / 2;
            drop(inner);
            self.shared.moved.notify_one();
            if roomy {
                self.room.notify_waiters();
            }
        }
    }
}

/// A hold on one line: the line counts as delivered once every hold on it is released.
/// Cloning adds a hold; dropping releases it.
#[derive(Debug)]
pub struct Ack {
    track: Option<Arc<Track>>,
    seq: u64,
}

impl Clone for Ack {
    fn clone(&self) -> Ack {
        if let Some(t) = &self.track {
            t.lock().entry(self.seq).holds += 1;
        }
        Ack { track: self.track.clone(), seq: self.seq }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(t) = self.track.take() {
            t.finish(std::iter::once(self.seq), false, None);
        }
    }
}

/// The holds of the lines in one batch for one route. [`Receipts::settle`] when the batch is
/// delivered or deliberately dropped (and counted); dropping unsettled receipts abandons the
/// lines (see the module's doc for what that does).
#[derive(Debug, Default)]
pub struct Receipts {
    acks: Vec<Ack>,
    /// The route the batch is for, so a track can say who holds its lines.
    route: Option<Arc<str>>,
}

impl Receipts {
    /// Receipts of a batch for the route called `route`.
    pub fn for_route(route: Arc<str>) -> Receipts {
        Receipts { acks: Vec::new(), route: Some(route) }
    }

    /// Takes a hold on a line of the batch.
    pub fn hold(&mut self, ack: &Ack) {
        let Some(t) = &ack.track else { return };
        {
            let mut inner = t.lock();
            inner.entry(ack.seq).holds += 1;
            if let Some(route) = &self.route {
                *inner.holders.entry(route.clone()).or_default() += 1;
            }
        }
        self.acks.push(Ack { track: Some(t.clone()), seq: ack.seq });
    }

    /// Takes over another batch's receipts of the same route (an HTTP batch gathers several
    /// queued batches).
    pub fn append(&mut self, other: &mut Receipts) {
        if self.route.is_none() {
            self.route = other.route.clone();
        }
        self.acks.append(&mut other.acks);
    }

    /// The batch has been delivered (or dropped on purpose, and counted).
    pub fn settle(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, abandon: bool) {
        let mut acks = std::mem::take(&mut self.acks).into_iter().peekable();
        while let Some(mut first) = acks.next() {
            let Some(track) = first.track.take() else { continue };
            let mut seqs = vec![first.seq];
            while let Some(next) = acks.next_if(|a| a.track.as_ref().is_some_and(|t| Arc::ptr_eq(t, &track))) {
                let mut next = next;
                next.track = None;
                seqs.push(next.seq);
            }
            track.finish(seqs.into_iter(), abandon, self.route.as_ref());
        }
    }
}

impl Drop for Receipts {
    fn drop(&mut self) {
        self.finish(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> Cursor {
        Cursor { time_ns: t, skip: 1, file: None }
    }

    fn shared() -> Arc<Tracks> {
        Arc::new(Tracks { moved: Notify::new(), shutdown: CancellationToken::new(), stats: Arc::new(Stats::new()) })
    }

    fn track() -> Arc<Track> {
        Track::new(Cursor::from(0), shared())
    }

    #[test]
    fn a_line_no_route_takes_is_delivered_when_the_router_lets_go() {
        let t = track();
        let a = t.register(at(1));
        assert_eq!(t.delivered(), Cursor::from(0));
        drop(a);
        assert_eq!(t.delivered(), at(1));
        assert!(t.lock().entries.is_empty(), "nothing left in flight");
    }

    #[test]
    fn the_cursor_waits_for_the_slowest_route_and_for_older_lines() {
        let t = track();
        let (a1, a2) = (t.register(at(1)), t.register(at(2)));
        let (mut fast, mut slow) = (Receipts::for_route("fast".into()), Receipts::for_route("slow".into()));
        fast.hold(&a1);
        slow.hold(&a1);
        fast.hold(&a2);
        drop((a1, a2));
        fast.settle();
        assert_eq!(t.delivered(), Cursor::from(0), "line 1 is still queued on the slow route");
        assert_eq!(t.holders(), vec![Arc::<str>::from("slow")], "the slow route holds the container back");
        slow.settle();
        assert_eq!(t.delivered(), at(2));
        assert!(t.holders().is_empty());
    }

    #[test]
    fn unsettled_receipts_at_shutdown_hold_the_cursor_back_for_good() {
        let shared = shared();
        let t = Track::new(Cursor::from(0), shared.clone());
        let (a1, a2, a3) = (t.register(at(1)), t.register(at(2)), t.register(at(3)));
        let mut lost = Receipts::for_route("r".into());
        lost.hold(&a2);
        drop((a1, a2, a3));
        shared.shutdown.cancel();
        drop(lost);
        assert_eq!(t.delivered(), at(1), "never past the abandoned line");
        let a4 = t.register(at(4));
        drop(a4);
        assert_eq!(t.delivered(), at(1));
        assert_eq!(shared.stats.lines_abandoned.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn unsettled_receipts_while_running_are_released_and_counted() {
        let shared = shared();
        let t = Track::new(Cursor::from(0), shared.clone());
        let (a1, a2) = (t.register(at(1)), t.register(at(2)));
        let mut lost = Receipts::for_route("r".into());
        lost.hold(&a1);
        lost.hold(&a2);
        drop((a1, a2));
        drop(lost);
        assert_eq!(t.delivered(), at(2), "the cursor moves on");
        assert!(t.lock().entries.is_empty() && t.holders().is_empty(), "nothing left tracked");
        assert_eq!(shared.stats.lines_abandoned.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_track_says_so_and_makes_room_as_lines_are_delivered() {
        let t = track();
        let mut held = Receipts::for_route("r".into());
        for i in 0..TRACK_MAX as i64 {
            let a = t.register(at(i + 1));
            held.hold(&a);
        }
        assert!(t.is_full());
        held.settle();
        assert!(!t.is_full());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), t.room()).await.expect("room at once");
        });
    }

    #[test]
    fn receipts_of_several_containers_settle_each_track() {
        let (t1, t2) = (track(), track());
        let mut r = Receipts::for_route("r".into());
        let held: Vec<Ack> = vec![t1.register(at(1)), t2.register(at(5)), t2.register(at(6)), t1.register(at(2))];
        for a in &held {
            r.hold(a);
        }
        drop(held);
        assert_eq!((t1.delivered(), t2.delivered()), (Cursor::from(0), Cursor::from(0)));
        r.settle();
        assert_eq!((t1.delivered(), t2.delivered()), (at(2), at(6)));
    }

    #[test]
    fn movement_is_announced() {
        let shared = shared();
        let t = Track::new(Cursor::from(0), shared.clone());
        drop(t.register(at(1)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), shared.moved.notified())
                .await
                .expect("a permit is stored");
        });
    }
}
