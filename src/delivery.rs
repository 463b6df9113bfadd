//! Which of a container's lines have been delivered by every route that took them, so the
//! container's cursor ([`crate::state`]) never passes a line that is still on its way.
//!
//! The pump registers the lines of each read with the container's [`Track`], all at once, and
//! gets an [`Ack`] per line, a hold on that line that travels with the
//! [`crate::message::Message`]. Every route that queues the line takes a copy of the hold
//! into its batch's [`Receipts`]; the writer settles
//! the receipts once the batch is on the wire (written to the socket, or acknowledged with a
//! 2xx). When the router is done with a message its own hold is released, so a line that no
//! route takes (filtered, no match) is delivered at once. A multiline group keeps its first
//! line's hold, so the cursor stops before a group until the group is delivered.
//!
//! The delivered position is the end of the longest run of lines, from the oldest, whose holds
//! are all released: delivery is in order per route, but routes finish at their own pace.
//! Holds are counted without a lock, so the position is worked out when it can have moved
//! (a read's lines have no hold left, a route's receipts settle) and whenever it is asked for:
//! between two of those it may lag behind, never run ahead.
//! Receipts that are dropped without being settled at shutdown (a writer giving up with its
//! sink down) are abandoned: the cursor never passes them, so those lines are read again on
//! the next start instead of being lost. Receipts dropped unsettled while luaspout runs (a
//! writer task that panicked, a batch refused by a writer that has stopped) can never be
//! settled by anyone: they are released instead and counted as abandoned, so the cursor moves
//! on and the track does not grow behind a line that will never be delivered.
//!
//! A track holds about [`TRACK_MAX`] lines (the pump looks before each read's lines, so one
//! read's worth may go past it): past it, the pump waits for the oldest to be delivered
//! ([`Track::room`]), and the routes holding the track's lines are named
//! ([`Track::holders`]) so `/metrics` can say which route holds the container back.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

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
///
/// Lines are registered a chunk at a time (the lines of one read) under one lock. The holds
/// on a line are an atomic count in its chunk, so taking and releasing one takes no lock; the
/// track is looked at (under its lock) only when a chunk has no holder left, when a route's
/// receipts settle, and when someone asks where the cursor is.
#[derive(Debug)]
pub struct Track {
    inner: Mutex<Inner>,
    shared: Arc<Tracks>,
    /// Woken when the track drains below half of [`TRACK_MAX`].
    room: Notify,
}

#[derive(Debug)]
struct Inner {
    /// The chunks not wholly passed by the cursor, oldest first.
    chunks: VecDeque<Arc<Chunk>>,
    /// Lines of `chunks[0]` the cursor has passed.
    front_passed: usize,
    /// Lines in `chunks` the cursor has not passed.
    lines: usize,
    /// Everything up to here has been delivered.
    delivered: Cursor,
    /// Groups of holds ([`Receipts`] on one chunk) taken by each route and not yet settled,
    /// by route name.
    holders: HashMap<Arc<str>, u64>,
}

/// The lines of one read, registered together.
#[derive(Debug)]
struct Chunk {
    track: Weak<Track>,
    lines: Box<[Entry]>,
    /// Live [`Ack`]s on any of the lines plus open [`Receipts`] groups on the chunk: when it
    /// drops to zero every line is delivered (or abandoned) and the cursor may move.
    holders: AtomicU32,
}

#[derive(Debug)]
struct Entry {
    /// The cursor just after this line.
    after: Cursor,
    /// Holds not released: the router's, each route's receipts', a multiline group's. Holds
    /// are only taken from a live one, so zero is final. A receipt abandoned at shutdown never
    /// releases its hold: the cursor stops before the line for good.
    holds: AtomicU32,
}

impl Chunk {
    /// Releases one hold on each of `lines` and one holder of the chunk; true if that was
    /// the chunk's last holder.
    fn release(&self, lines: impl Iterator<Item = u32>) -> bool {
        for i in lines {
            self.lines[i as usize].holds.fetch_sub(1, Ordering::Release);
        }
        self.holders.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

impl Inner {
    /// Moves `delivered` past every leading line with no holds left; true if it moved.
    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(front) = self.chunks.front() {
            while let Some(e) = front.lines.get(self.front_passed) {
                if e.holds.load(Ordering::Acquire) > 0 {
                    return moved;
                }
                self.delivered = e.after;
                self.front_passed += 1;
                self.lines -= 1;
                moved = true;
            }
            self.chunks.pop_front();
            self.front_passed = 0;
        }
        moved
    }
}

impl Track {
    /// A container whose lines up to `delivered` need not be read again.
    pub fn new(delivered: Cursor, shared: Arc<Tracks>) -> Arc<Track> {
        let inner = Inner { chunks: VecDeque::new(), front_passed: 0, lines: 0, delivered, holders: HashMap::new() };
        Arc::new(Track { inner: Mutex::new(inner), shared, room: Notify::new() })
    }

    /// Whether the track holds [`TRACK_MAX`] lines: the pump should wait ([`Track::room`]).
    pub fn is_full(&self) -> bool {
        self.advanced().lines >= TRACK_MAX
    }

    /// Waits until the track has drained to half of [`TRACK_MAX`].
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.advanced().lines < TRACK_MAX / 2 {
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
        self.advanced().delivered
    }

    /// Registers the lines of one read, under one lock (`afters` holds the cursor past each
    /// line, in order); each line's first hold, the router's, comes back as its [`Ack`].
    pub fn register(self: &Arc<Track>, afters: impl ExactSizeIterator<Item = Cursor>) -> Acks {
        let n = afters.len();
        let lines: Box<[Entry]> = afters.map(|after| Entry { after, holds: AtomicU32::new(1) }).collect();
        let chunk = Arc::new(Chunk { track: Arc::downgrade(self), lines, holders: AtomicU32::new(n as u32) });
        if n > 0 {
            let mut inner = self.lock();
            inner.chunks.push_back(chunk.clone());
            inner.lines += n;
        }
        Acks { chunk, next: 0 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counts that are still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state after moving the cursor as far as it can go (announcing it if it moved).
    fn advanced(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if inner.advance() {
            self.shared.moved.notify_one();
            if inner.lines < TRACK_MAX / 2 {
                self.room.notify_waiters();
            }
        }
        inner
    }

    /// A route's receipts took their first hold on a line of this track.
    fn held_by(&self, route: &Arc<str>) {
        *self.lock().holders.entry(route.clone()).or_default() += 1;
    }

    /// Releases (or abandons) one receipts group: holds on `lines` of `chunk`; `route` names
    /// the receipts' route, if they had one. Abandoning while luaspout runs releases the lines
    /// and counts them (nobody could ever settle them); at shutdown it keeps the cursor before
    /// them.
    fn finish(&self, chunk: &Chunk, lines: &[u32], abandon: bool, route: Option<&Arc<str>>) {
        let hold_back = abandon && self.shared.shutdown.is_cancelled();
        if hold_back {
            chunk.release(std::iter::empty());
        } else {
            chunk.release(lines.iter().copied());
        }
        if abandon && !hold_back {
            stats::add(&self.shared.stats.lines_abandoned, lines.len() as u64);
        }
        let mut inner = self.advanced();
        if let Some(route) = route
            && let Some(held) = inner.holders.get_mut(route)
        {
            *held -= 1;
            if *held == 0 {
                inner.holders.remove(route);
            }
        }
    }
}

/// The router's holds on the lines of one chunk, one [`Ack`] per line in order. Holds it never
/// handed out are released when it is dropped.
#[derive(Debug)]
pub struct Acks {
    chunk: Arc<Chunk>,
    next: u32,
}

impl Iterator for Acks {
    type Item = Ack;

    fn next(&mut self) -> Option<Ack> {
        if self.next as usize >= self.chunk.lines.len() {
            return None;
        }
        self.next += 1;
        Some(Ack { chunk: self.chunk.clone(), index: self.next - 1 })
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        for index in self.next..self.chunk.lines.len() as u32 {
            drop(Ack { chunk: self.chunk.clone(), index });
        }
    }
}

/// A hold on one line: the line counts as delivered once every hold on it is released.
/// Cloning adds a hold; dropping releases it. Neither takes a lock, except the drop that
/// releases the last hold on its chunk.
#[derive(Debug)]
pub struct Ack {
    chunk: Arc<Chunk>,
    index: u32,
}

impl Clone for Ack {
    fn clone(&self) -> Ack {
        self.chunk.lines[self.index as usize].holds.fetch_add(1, Ordering::Relaxed);
        self.chunk.holders.fetch_add(1, Ordering::Relaxed);
        Ack { chunk: self.chunk.clone(), index: self.index }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.chunk.release(std::iter::once(self.index))
            && let Some(track) = self.chunk.track.upgrade()
        {
            drop(track.advanced());
        }
    }
}

/// The holds of the lines in one batch for one route. [`Receipts::settle`] when the batch is
/// delivered or deliberately dropped (and counted); dropping unsettled receipts abandons the
/// lines (see the module's doc for what that does).
///
/// Holds on consecutive lines of one chunk form a group: a hold is an atomic increment, and
/// the track's lock is taken once per group, when it opens (to name the route as a holder)
/// and when it is settled.
#[derive(Debug, Default)]
pub struct Receipts {
    groups: Vec<Group>,
    /// The route the batch is for, so a track can say who holds its lines.
    route: Option<Arc<str>>,
}

/// Holds on lines of one chunk.
#[derive(Debug)]
struct Group {
    chunk: Arc<Chunk>,
    lines: Vec<u32>,
}

impl Receipts {
    /// Receipts of a batch for the route called `route`.
    pub fn for_route(route: Arc<str>) -> Receipts {
        Receipts { groups: Vec::new(), route: Some(route) }
    }

    /// Takes a hold on a line of the batch.
    pub fn hold(&mut self, ack: &Ack) {
        ack.chunk.lines[ack.index as usize].holds.fetch_add(1, Ordering::Relaxed);
        if let Some(group) = self.groups.last_mut()
            && Arc::ptr_eq(&group.chunk, &ack.chunk)
        {
            group.lines.push(ack.index);
            return;
        }
        ack.chunk.holders.fetch_add(1, Ordering::Relaxed);
        if let Some(route) = &self.route
            && let Some(track) = ack.chunk.track.upgrade()
        {
            track.held_by(route);
        }
        self.groups.push(Group { chunk: ack.chunk.clone(), lines: vec![ack.index] });
    }

    /// Takes over another batch's receipts of the same route (an HTTP batch gathers several
    /// queued batches).
    pub fn append(&mut self, other: &mut Receipts) {
        if self.route.is_none() {
            self.route = other.route.clone();
        }
        self.groups.append(&mut other.groups);
    }

    /// The batch has been delivered (or dropped on purpose, and counted).
    pub fn settle(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, abandon: bool) {
        for group in self.groups.drain(..) {
            match group.chunk.track.upgrade() {
                Some(track) => track.finish(&group.chunk, &group.lines, abandon, self.route.as_ref()),
                // The container is forgotten: nothing waits for these lines.
                None => {
                    group.chunk.release(group.lines.iter().copied());
                }
            }
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

    /// The cursors past lines stamped `times`, as a chunk registers them.
    fn ats(times: std::ops::RangeInclusive<i64>) -> std::vec::IntoIter<Cursor> {
        times.map(at).collect::<Vec<_>>().into_iter()
    }

    /// Registers one line, as a chunk of its own.
    fn one(t: &Arc<Track>, after: Cursor) -> Ack {
        t.register(std::iter::once(after)).next().unwrap()
    }

    #[test]
    fn a_chunk_is_delivered_line_by_line_up_to_the_first_held_line() {
        let t = track();
        let acks: Vec<Ack> = t.register(ats(1..=4)).collect();
        let group_hold = acks[2].clone();
        drop(acks);
        assert_eq!(t.delivered(), at(2), "up to the line a multiline group still holds");
        assert_eq!(t.lock().lines, 2);
        drop(group_hold);
        assert_eq!(t.delivered(), at(4));
        assert!(t.lock().chunks.is_empty());
    }

    #[test]
    fn holds_never_handed_out_are_released() {
        let t = track();
        let mut acks = t.register(ats(1..=3));
        let first = acks.next().unwrap();
        drop(acks);
        assert_eq!(t.delivered(), Cursor::from(0));
        drop(first);
        assert_eq!(t.delivered(), at(3));
    }

    #[test]
    fn receipts_over_chunks_settle_each_and_name_their_route_until_then() {
        let t = track();
        let mut r = Receipts::for_route("r".into());
        let first: Vec<Ack> = t.register(ats(1..=3)).collect();
        let second: Vec<Ack> = t.register(ats(4..=5)).collect();
        for a in first.iter().chain(&second) {
            r.hold(a);
        }
        assert_eq!(r.groups.len(), 2, "one group per chunk");
        drop((first, second));
        assert_eq!(t.delivered(), Cursor::from(0));
        assert_eq!(t.holders(), vec![Arc::<str>::from("r")]);
        r.settle();
        assert_eq!(t.delivered(), at(5));
        assert!(t.holders().is_empty());
    }

    #[test]
    fn lines_of_a_forgotten_container_can_still_be_settled() {
        let t = track();
        let mut r = Receipts::for_route("r".into());
        let a = one(&t, at(1));
        r.hold(&a);
        drop(t);
        drop(a);
        r.settle();
    }

    #[test]
    fn a_line_no_route_takes_is_delivered_when_the_router_lets_go() {
        let t = track();
        let a = one(&t, at(1));
        assert_eq!(t.delivered(), Cursor::from(0));
        drop(a);
        assert_eq!(t.delivered(), at(1));
        assert!(t.lock().chunks.is_empty(), "nothing left in flight");
    }

    #[test]
    fn the_cursor_waits_for_the_slowest_route_and_for_older_lines() {
        let t = track();
        let (a1, a2) = (one(&t, at(1)), one(&t, at(2)));
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
        let (a1, a2, a3) = (one(&t, at(1)), one(&t, at(2)), one(&t, at(3)));
        let mut lost = Receipts::for_route("r".into());
        lost.hold(&a2);
        drop((a1, a2, a3));
        shared.shutdown.cancel();
        drop(lost);
        assert_eq!(t.delivered(), at(1), "never past the abandoned line");
        let a4 = one(&t, at(4));
        drop(a4);
        assert_eq!(t.delivered(), at(1));
        assert_eq!(shared.stats.lines_abandoned.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn unsettled_receipts_while_running_are_released_and_counted() {
        let shared = shared();
        let t = Track::new(Cursor::from(0), shared.clone());
        let (a1, a2) = (one(&t, at(1)), one(&t, at(2)));
        let mut lost = Receipts::for_route("r".into());
        lost.hold(&a1);
        lost.hold(&a2);
        drop((a1, a2));
        drop(lost);
        assert_eq!(t.delivered(), at(2), "the cursor moves on");
        assert!(t.lock().chunks.is_empty() && t.holders().is_empty(), "nothing left tracked");
        assert_eq!(shared.stats.lines_abandoned.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_track_says_so_and_makes_room_as_lines_are_delivered() {
        let t = track();
        let mut held = Receipts::for_route("r".into());
        for i in 0..TRACK_MAX as i64 {
            let a = one(&t, at(i + 1));
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
        let held: Vec<Ack> = vec![one(&t1, at(1)), one(&t2, at(5)), one(&t2, at(6)), one(&t1, at(2))];
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
        drop(one(&t, at(1)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), shared.moved.notified())
                .await
                .expect("a permit is stored");
        });
    }
}
