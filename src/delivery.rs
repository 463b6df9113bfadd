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
//! Receipts that are dropped without being settled (a writer giving up at shutdown with its
//! sink down) are abandoned: the cursor never passes them, so those lines are read again on
//! the next start instead of being lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Where a pump starts reading, and where it has got to: lines stamped before `time_ns` are
/// skipped, and so are the first `skip` lines stamped exactly `time_ns` (Docker's `since` has
/// one-second granularity, so the pump filters the rest itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub time_ns: i64,
    pub skip: u32,
}

impl Cursor {
    /// From the beginning of the container's log.
    pub const START: Cursor = Cursor { time_ns: i64::MIN, skip: 0 };

    /// Everything stamped at or after `time_ns`.
    pub fn from(time_ns: i64) -> Cursor {
        Cursor { time_ns, skip: 0 }
    }

    /// Docker's `since` (whole seconds; 0 means from the beginning).
    pub fn since_secs(&self) -> i32 {
        if self.time_ns <= 0 { 0 } else { (self.time_ns / 1_000_000_000).min(i32::MAX as i64) as i32 }
    }
}

/// The lines of one container between reading and delivery.
#[derive(Debug)]
pub struct Track {
    inner: Mutex<Inner>,
    /// Woken when the delivered position moves (the state file's writer waits on it).
    moved: Arc<Notify>,
}

#[derive(Debug)]
struct Inner {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// Everything up to here has been delivered.
    delivered: Cursor,
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
    pub fn new(delivered: Cursor, moved: Arc<Notify>) -> Arc<Track> {
        Arc::new(Track { inner: Mutex::new(Inner { base: 0, entries: VecDeque::new(), delivered }), moved })
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

    /// Releases (or abandons) holds on `seqs`, all of this track, under one lock.
    fn finish(&self, seqs: impl Iterator<Item = u64>, abandon: bool) {
        let mut inner = self.lock();
        for seq in seqs {
            let e = inner.entry(seq);
            e.holds -= 1;
            e.abandoned |= abandon;
        }
        if inner.advance() {
            drop(inner);
            self.moved.notify_one();
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
            t.finish(std::iter::once(self.seq), false);
        }
    }
}

/// The holds of the lines in one batch for one route. [`Receipts::settle`] when the batch is
/// delivered or deliberately dropped (and counted); dropping unsettled receipts abandons the
/// lines, so the cursor stays before them.
#[derive(Debug, Default)]
pub struct Receipts {
    acks: Vec<Ack>,
}

impl Receipts {
    /// Adds a hold for a line of the batch.
    pub fn push(&mut self, ack: Ack) {
        self.acks.push(ack);
    }

    /// Takes over another batch's receipts (an HTTP batch gathers several queued batches).
    pub fn append(&mut self, other: &mut Receipts) {
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
            track.finish(seqs.into_iter(), abandon);
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
        Cursor { time_ns: t, skip: 1 }
    }

    fn track() -> Arc<Track> {
        Track::new(Cursor::from(0), Arc::new(Notify::new()))
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
        let (mut fast, mut slow) = (Receipts::default(), Receipts::default());
        fast.push(a1.clone());
        slow.push(a1.clone());
        fast.push(a2.clone());
        drop((a1, a2));
        fast.settle();
        assert_eq!(t.delivered(), Cursor::from(0), "line 1 is still queued on the slow route");
        slow.settle();
        assert_eq!(t.delivered(), at(2));
    }

    #[test]
    fn unsettled_receipts_hold_the_cursor_back_for_good() {
        let t = track();
        let (a1, a2, a3) = (t.register(at(1)), t.register(at(2)), t.register(at(3)));
        let mut lost = Receipts::default();
        lost.push(a2.clone());
        drop((a1, a2, a3));
        drop(lost);
        assert_eq!(t.delivered(), at(1), "never past the abandoned line");
        let a4 = t.register(at(4));
        drop(a4);
        assert_eq!(t.delivered(), at(1));
    }

    #[test]
    fn receipts_of_several_containers_settle_each_track() {
        let (t1, t2) = (track(), track());
        let mut r = Receipts::default();
        let held: Vec<Ack> = vec![t1.register(at(1)), t2.register(at(5)), t2.register(at(6)), t1.register(at(2))];
        for a in &held {
            r.push(a.clone());
        }
        drop(held);
        assert_eq!((t1.delivered(), t2.delivered()), (Cursor::from(0), Cursor::from(0)));
        r.settle();
        assert_eq!((t1.delivered(), t2.delivered()), (at(2), at(6)));
    }

    #[test]
    fn movement_is_announced() {
        let moved = Arc::new(Notify::new());
        let t = Track::new(Cursor::from(0), moved.clone());
        drop(t.register(at(1)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), moved.notified())
                .await
                .expect("a permit is stored");
        });
    }
}
