//! The live view of the stream that `/logs` and the web viewer read: which containers are
//! being read, and a copy of every line for each connected viewer.
//!
//! Viewers never slow the router down. Each one has a small bounded queue; a worker that finds
//! it full skips the line for that viewer and counts it, and the viewer is told how many it
//! missed (a [`Tapped::Skipped`] item) as soon as there is room again. With no viewer the cost
//! per line is one atomic load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use crate::glob::Glob;
use crate::message::{Container, Message, ReadFrom, Source};

/// Lines a viewer may have waiting before lines are skipped for it.
const VIEWER_QUEUE: usize = 1024;

/// What a viewer receives.
#[derive(Debug)]
pub enum Tapped {
    Line(Message),
    /// This many lines were skipped here because the viewer read too slowly.
    Skipped(u64),
}

/// Which lines a viewer wants, from its URL (`/logs/name:web*?sources=stderr`).
#[derive(Debug, Default, Clone)]
pub struct ViewFilter {
    pub name: Option<Glob>,
    /// A container ID prefix, lowercase.
    pub id: Option<String>,
    /// `label:KEY=GLOB`.
    pub label: Option<(String, Glob)>,
    /// Allowed streams; `None` means both.
    pub sources: Option<Vec<Source>>,
}

impl ViewFilter {
    /// Whether the viewer wants this line.
    pub fn matches(&self, m: &Message) -> bool {
        self.matches_container(&m.container) && self.sources.as_ref().is_none_or(|s| s.contains(&m.source))
    }

    /// Whether the viewer wants lines of this container (of some stream).
    pub fn matches_container(&self, c: &Container) -> bool {
        self.name.as_ref().is_none_or(|g| g.matches(&c.name))
            && self.id.as_ref().is_none_or(|p| c.id.starts_with(p.as_str()))
            && self.label.as_ref().is_none_or(|(k, g)| c.labels.get(k).is_some_and(|v| g.matches(v)))
    }
}

struct Viewer {
    filter: ViewFilter,
    tx: mpsc::Sender<Tapped>,
    /// Lines skipped and not yet reported to the viewer.
    pending_skips: AtomicU64,
}

/// The shared view; one per process.
#[derive(Default)]
pub struct Tap {
    viewers: RwLock<Vec<Arc<Viewer>>>,
    count: AtomicUsize,
    containers: Mutex<BTreeMap<String, Arc<Container>>>,
    /// Where each container being read is read from.
    sources: Mutex<BTreeMap<String, ReadFrom>>,
    /// Lines skipped for slow viewers, since start.
    pub skipped: AtomicU64,
}

/// A viewer's registration; dropping it (the client went away) removes the viewer.
pub struct Subscription {
    tap: Arc<Tap>,
    viewer: Arc<Viewer>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut viewers = self.tap.viewers.write().expect("tap lock");
        viewers.retain(|v| !Arc::ptr_eq(v, &self.viewer));
        self.tap.count.store(viewers.len(), Ordering::Release);
    }
}

impl Tap {
    /// Registers a viewer; its lines arrive on the receiver until the subscription is dropped.
    pub fn subscribe(self: &Arc<Tap>, filter: ViewFilter) -> (Subscription, mpsc::Receiver<Tapped>) {
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
        let viewer = Arc::new(Viewer { filter, tx, pending_skips: AtomicU64::new(0) });
        let mut viewers = self.viewers.write().expect("tap lock");
        viewers.push(viewer.clone());
        self.count.store(viewers.len(), Ordering::Release);
        (Subscription { tap: self.clone(), viewer }, rx)
    }

    /// Hands a line to every viewer that wants it (called by the router for each line read).
    pub fn publish(&self, m: &Message) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for v in self.viewers.read().expect("tap lock").iter().filter(|v| v.filter.matches(m)) {
            let skipped = v.pending_skips.swap(0, Ordering::Relaxed);
            if skipped > 0 && v.tx.try_send(Tapped::Skipped(skipped)).is_err() {
                v.pending_skips.fetch_add(skipped + 1, Ordering::Relaxed);
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if v.tx.try_send(Tapped::Line(m.detached())).is_err() {
                v.pending_skips.fetch_add(1, Ordering::Relaxed);
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Number of connected viewers.
    pub fn viewers(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Records that a container is being read (or was renamed).
    pub fn container_reading(&self, c: Arc<Container>) {
        self.containers.lock().expect("tap lock").insert(c.id.clone(), c);
    }

    /// Records that a container's pump has ended.
    pub fn container_ended(&self, id: &str) {
        self.containers.lock().expect("tap lock").remove(id);
        self.sources.lock().expect("tap lock").remove(id);
    }

    /// Records where a container is read from (its log file, or the API after a fallback).
    pub fn container_source(&self, id: &str, from: ReadFrom) {
        self.sources.lock().expect("tap lock").insert(id.to_string(), from);
    }

    /// Where a container being read is read from.
    pub fn source_of(&self, id: &str) -> ReadFrom {
        self.sources.lock().expect("tap lock").get(id).copied().unwrap_or(ReadFrom::Api)
    }

    /// The containers being read, by ID.
    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.containers.lock().expect("tap lock").values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(name: &str, source: Source, data: &str) -> Message {
        let container =
            Arc::new(Container { id: format!("{name}0123456789abcdef"), name: name.into(), ..Default::default() });
        Message { container, source, time_ns: 0, data: bytes::Bytes::copy_from_slice(data.as_bytes()), ack: None }
    }

    fn drain(rx: &mut mpsc::Receiver<Tapped>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(t) = rx.try_recv() {
            out.push(match t {
                Tapped::Line(m) => String::from_utf8_lossy(&m.data).into_owned(),
                Tapped::Skipped(n) => format!("skipped {n}"),
            });
        }
        out
    }

    #[test]
    fn viewers_get_what_they_filter_and_are_told_what_they_missed() {
        let tap = Arc::new(Tap::default());
        let filter =
            ViewFilter { name: Some(Glob::new("web*")), sources: Some(vec![Source::Stderr]), ..Default::default() };
        let (sub, mut rx) = tap.subscribe(filter);
        tap.publish(&msg("web_1", Source::Stderr, "a"));
        tap.publish(&msg("web_1", Source::Stdout, "not this stream"));
        tap.publish(&msg("db", Source::Stderr, "not this container"));
        assert_eq!(drain(&mut rx), ["a"]);
        for i in 0..VIEWER_QUEUE + 5 {
            tap.publish(&msg("web_1", Source::Stderr, &i.to_string()));
        }
        assert_eq!(drain(&mut rx).len(), VIEWER_QUEUE);
        tap.publish(&msg("web_1", Source::Stderr, "after"));
        assert_eq!(drain(&mut rx), ["skipped 5", "after"]);
        assert_eq!(tap.skipped.load(Ordering::Relaxed), 5);
        drop(sub);
        assert_eq!(tap.viewers(), 0);
    }
}
