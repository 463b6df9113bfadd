//! The router: N worker threads, each owning one Lua state, that take batches of messages
//! and run every route over them.
//!
//! Messages are sharded by container (`hash(id) % N`), so one container's lines stay in order
//! and its metadata table stays hot in one Lua state. A worker drains whatever is ready, up to
//! [`BATCH_MAX`] messages, and makes one Lua call per route for the whole batch
//! (reference/lua-performance.md: batching with pooled tables is 1.3-1.7x faster than a call
//! per message). Routes without Lua never enter Lua at all.

mod lua;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::sync::mpsc;
use tracing::warn;

use crate::config::Config;
use crate::message::{Container, Message};
use crate::route::Route;
use crate::settings::Settings;
use crate::stats::{self, Stats};
use crate::transport::{Frames, QueueError};
use lua::{LuaRunner, Outcome};

/// Most messages handled per batch: large enough to spread the fixed cost of a Lua call,
/// small enough that one batch takes well under a millisecond.
pub const BATCH_MAX: usize = 256;

/// Messages a worker's inbox holds before pumps wait: the backpressure that keeps a slow
/// router from buffering Docker's output in memory.
const INBOX_CAPACITY: usize = 4 * BATCH_MAX;

/// What pumps send to a worker.
#[derive(Debug)]
pub enum Input {
    /// A log line.
    Line(Message),
    /// A container snapshot is no longer used (container gone or renamed): drop its caches.
    Forget(u64),
}

/// The senders of all workers' inboxes.
#[derive(Debug, Clone)]
pub struct Inboxes {
    senders: Vec<mpsc::Sender<Input>>,
}

impl Inboxes {
    /// The inbox of the worker that owns this container.
    pub fn for_container(&self, id: &str) -> mpsc::Sender<Input> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        self.senders[(h.finish() % self.senders.len() as u64) as usize].clone()
    }
}

/// Starts `settings.workers` worker threads and waits until each has loaded the config.
pub fn start_workers(
    settings: &Settings,
    config: Config,
    routes: Vec<Arc<Route>>,
    stats: Arc<Stats>,
) -> anyhow::Result<Inboxes> {
    let config = Arc::new(config);
    let mut senders = Vec::new();
    for n in 0..settings.workers {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (config, routes, stats) = (config.clone(), routes.clone(), stats.clone());
        std::thread::Builder::new()
            .name(format!("router-{n}"))
            .spawn(move || match Worker::new(&config, routes, stats) {
                Ok(mut worker) => {
                    let _ = ready_tx.send(Ok(()));
                    worker.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .context("cannot start a router thread")?;
        ready_rx.recv().map_err(|_| anyhow!("router-{n} died while loading the config"))??;
        senders.push(tx);
    }
    Ok(Inboxes { senders })
}

/// Per-worker cache about one container snapshot.
struct ContainerRoutes {
    /// Whether each route (by index) takes this container's lines.
    matches: Vec<bool>,
}

/// One router thread.
struct Worker {
    routes: Vec<Arc<Route>>,
    lua: Option<LuaRunner>,
    containers: HashMap<u64, ContainerRoutes>,
    stats: Arc<Stats>,
    /// Indices of the batch's messages a route takes; reused across batches.
    selected: Vec<usize>,
}

impl Worker {
    fn new(config: &Config, routes: Vec<Arc<Route>>, stats: Arc<Stats>) -> anyhow::Result<Worker> {
        let uses_lua = routes.iter().any(|r| r.has_filter || r.has_format);
        let lua = if uses_lua { Some(LuaRunner::new(config, routes.len())?) } else { None };
        Ok(Worker { routes, lua, containers: HashMap::new(), stats, selected: Vec::with_capacity(BATCH_MAX) })
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Input>) {
        let mut batch: Vec<Message> = Vec::with_capacity(BATCH_MAX);
        let mut forgotten: Vec<u64> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(input) = next.take() {
                match input {
                    Input::Line(m) => batch.push(m),
                    Input::Forget(epoch) => forgotten.push(epoch),
                }
                if batch.len() < BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.process(&batch);
                batch.clear();
            }
            for epoch in forgotten.drain(..) {
                self.containers.remove(&epoch);
                if let Some(lua) = &mut self.lua {
                    lua.forget(epoch);
                }
            }
        }
    }

    /// Runs every route over one batch and queues the results.
    fn process(&mut self, batch: &[Message]) {
        stats::add(&self.stats.lines_in, batch.len() as u64);
        for m in batch {
            let routes = &self.routes;
            self.containers.entry(m.container.epoch).or_insert_with(|| match_routes(routes, &m.container));
        }
        if let Some(lua) = &mut self.lua {
            lua.begin_batch(batch.len());
        }
        for route in &self.routes {
            self.selected.clear();
            for (i, m) in batch.iter().enumerate() {
                if self.containers[&m.container.epoch].matches[route.index] && route.matcher.matches_source(m.source) {
                    self.selected.push(i);
                }
            }
            if self.selected.is_empty() {
                continue;
            }
            let rs = &route.stats;
            stats::add(&rs.matched, self.selected.len() as u64);
            let mut frames = Frames {
                buf: Vec::with_capacity(self.selected.len() * 128),
                ends: Vec::with_capacity(self.selected.len()),
            };
            match &mut self.lua {
                Some(lua) if route.has_filter || route.has_format => {
                    let mut filtered = 0;
                    lua.run_route(route, batch, &self.selected, rs, |msg, outcome| {
                        match outcome {
                            Outcome::Drop => {
                                filtered += 1;
                                return;
                            }
                            Outcome::Default => route.formatter.render(msg, &mut frames.buf),
                            Outcome::Payload(p) => route.formatter.render_payload(msg, p, &mut frames.buf),
                        }
                        frames.end_line();
                    });
                    stats::add(&rs.filtered, filtered);
                }
                _ => {
                    for &i in &self.selected {
                        route.formatter.render(&batch[i], &mut frames.buf);
                        frames.end_line();
                    }
                }
            }
            if frames.is_empty() {
                continue;
            }
            let n = frames.len() as u64;
            match route.sink.try_send(frames) {
                Ok(()) => stats::add(&rs.queued, n),
                Err((why, _)) => {
                    stats::add(&rs.dropped_queue_full, n);
                    if rs.warn_limit.allow() {
                        let reason = match why {
                            QueueError::Full => "the route's queue is full (sink slow or down)",
                            QueueError::Closed => "the route's writer has stopped",
                        };
                        warn!(route = %route.name, dropped_total = rs.dropped_queue_full.load(std::sync::atomic::Ordering::Relaxed), "dropping lines: {reason}");
                    }
                }
            }
        }
    }
}

/// Which routes take a container's lines, decided once per container snapshot.
fn match_routes(routes: &[Arc<Route>], c: &Container) -> ContainerRoutes {
    ContainerRoutes { matches: routes.iter().map(|r| r.matcher.matches_container(c)).collect() }
}
