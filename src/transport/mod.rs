//! Sinks: one bounded queue and one writer task per route, so a slow or dead destination only
//! ever fills its own queue and never stalls another route or the Docker reads.
//!
//! Router workers hand a route a batch of encoded lines ([`Frames`]) with [`Sink::send`]. A
//! full queue pauses the pumps of the containers the route takes (`on_full = "block"`, the
//! default), or gives the batch back to be dropped and counted (`on_full = "drop"`). The writers
//! ([`tcp`] for TCP and TLS, [`udp`], [`http`](mod@http) for HTTP(S) batches) connect lazily,
//! reconnect with backoff and count every line they send or lose.
//!
//! A writer retries until it delivers, or until it is told to stop ([`Stop`]): at shutdown
//! what it holds is abandoned (the cursors stay before it, so the next start reads it again);
//! when its route was removed and the grace period (`LUASPOUT_ROUTE_GRACE`) is over, or
//! luaspout shuts down during it, what it holds is dropped, counted as `dropped_route_removed`
//! and settled, so the cursors move on.

pub mod http;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config::options::OnFull;
use crate::delivery::Receipts;
use crate::settings::Settings;
use crate::stats::{self, RouteStats, Stats};
use crate::uri::Transport;

/// First and longest pause between a writer's connection attempts (TCP connect, UDP resolve):
/// quick to recover from a blip, never more than a few seconds behind a sink that came back.
pub const RECONNECT_MIN: std::time::Duration = std::time::Duration::from_millis(100);
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Encoded lines for one sink, in order: one buffer, with the end offset of each line so
/// datagram transports can send them one by one, and the receipts that tell the containers'
/// cursors when the lines are delivered.
#[derive(Debug, Default)]
pub struct Frames {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    /// Settled by the writer once the lines are on the wire; dropping them unsettled keeps
    /// the cursors before these lines.
    pub receipts: Receipts,
}

impl Frames {
    /// Marks the end of the line just appended to `buf`.
    pub fn end_line(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, one slice each.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.buf[start..end];
            start = end;
            line
        })
    }

    /// The lines are delivered (or dropped on purpose, and counted): the cursors may pass them.
    pub fn settle(self) {
        self.receipts.settle();
    }
}

/// When a writer stops retrying.
#[derive(Debug, Clone)]
pub struct Stop {
    /// luaspout is shutting down.
    pub shutdown: CancellationToken,
    /// The route was removed (its grace period runs).
    pub removed: CancellationToken,
    /// The route was removed and its grace period is over.
    pub retire: CancellationToken,
}

/// Why a writer stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Shutdown,
    Retired,
}

impl Stop {
    /// A writer's stop for a route in the config.
    pub fn new(shutdown: CancellationToken) -> Stop {
        Stop { shutdown, removed: CancellationToken::new(), retire: CancellationToken::new() }
    }

    /// Waits until the writer must stop retrying, and says why. A removed route that shutdown
    /// finds still in its grace period is retired then: no route will take its lines after the
    /// restart, so keeping the cursors before them would only replay them to the others.
    pub async fn stopped(&self) -> Stopped {
        tokio::select! {
            biased;
            _ = self.retire.cancelled() => Stopped::Retired,
            _ = self.shutdown.cancelled() => {
                if self.removed.is_cancelled() { Stopped::Retired } else { Stopped::Shutdown }
            }
        }
    }

    /// Whether the writer must give up what it cannot deliver now: the route's grace period
    /// is over, or luaspout is shutting down during it.
    pub fn retired(&self) -> bool {
        self.retire.is_cancelled() || (self.removed.is_cancelled() && self.shutdown.is_cancelled())
    }
}

/// Ends a writer that stopped retrying while holding `lines` lines (with their `receipts`).
///
/// At shutdown they and what is queued are counted as `dropped_write` and abandoned, so the
/// cursors stay before them and the next start reads them again. When the route was removed
/// they are counted as `dropped_route_removed` and settled, and so is every batch still queued
/// or queued later by a worker still on the old config, until the queue closes or shutdown.
pub async fn give_up(why: Stopped, lines: u64, receipts: Receipts, rx: &mut Queue, rs: &RouteStats, stop: &Stop) {
    drop_held(why, lines, receipts, rs);
    if why == Stopped::Shutdown {
        stats::add(&rs.dropped_write, rx.abandon_all());
        return;
    }
    // Once per removed route: not rate-limited.
    tracing::warn!(route = %rs.name, "the route was removed and its sink did not take what it held within LUASPOUT_ROUTE_GRACE (or before shutdown); dropped, counted as dropped_route_removed");
    let discard = |n: u64, receipts: Receipts| drop_held(Stopped::Retired, n, receipts, rs);
    loop {
        tokio::select! {
            frames = rx.recv() => match frames {
                Some(f) => discard(f.len() as u64, f.receipts),
                None => return,
            },
            _ = stop.shutdown.cancelled() => {
                while let Some(f) = rx.try_recv() {
                    discard(f.len() as u64, f.receipts);
                }
                return;
            }
        }
    }
}

/// Gives up `lines` lines a writer holds (with their `receipts`): abandoned at shutdown
/// (`dropped_write`; the next start reads them again), dropped and settled when the route was
/// removed (`dropped_route_removed`).
pub fn drop_held(why: Stopped, lines: u64, receipts: Receipts, rs: &RouteStats) {
    rs.set_problem(None);
    match why {
        Stopped::Shutdown => {
            stats::add(&rs.dropped_write, lines);
            // Unsettled at shutdown: the cursors stay before these lines.
            drop(receipts);
        }
        Stopped::Retired => {
            rs.dropped_as_removed(lines);
            receipts.settle();
        }
    }
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue of an `on_full = "drop"` route is full: the sink is slower than its input,
    /// or down.
    Full,
    /// The writer has stopped (shutdown).
    Closed,
}

/// How full a route's queue is, shared by its senders and its writer.
#[derive(Debug)]
struct Level {
    bytes: AtomicUsize,
    batches: AtomicUsize,
    limit: usize,
    /// Woken when the queue drains below half its limit.
    room: Notify,
}

/// The sending end of a route's queue.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Frames>,
    level: Arc<Level>,
}

impl Sink {
    /// Batches waiting in the queue.
    pub fn depth(&self) -> usize {
        self.level.batches.load(Ordering::Relaxed)
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.level.bytes.load(Ordering::Relaxed)
    }

    /// Whether the queue is at its limit.
    pub fn is_full(&self) -> bool {
        self.queued_bytes() >= self.level.limit
    }

    /// Waits until a full queue has drained to half its limit (so a paused reader resumes
    /// with room for a good run of lines, not one batch at a time).
    pub async fn room(&self) {
        loop {
            let notified = self.level.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queued_bytes() < self.level.limit / 2 || self.tx.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Queues a batch without waiting; under [`OnFull::Drop`] a full queue gives it back.
    pub fn send(&self, frames: Frames, on_full: OnFull) -> Result<(), (QueueError, Frames)> {
        if on_full == OnFull::Drop && self.is_full() {
            return Err((QueueError::Full, frames));
        }
        let n = frames.buf.len();
        self.level.bytes.fetch_add(n, Ordering::Relaxed);
        self.level.batches.fetch_add(1, Ordering::Relaxed);
        self.tx.send(frames).map_err(|mpsc::error::SendError(f)| {
            self.level.taken(n);
            (QueueError::Closed, f)
        })
    }
}

impl Level {
    /// A batch of `n` bytes left the queue.
    fn taken(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        self.batches.fetch_sub(1, Ordering::Relaxed);
        if before - n < self.limit / 2 {
            self.room.notify_waiters();
        }
    }
}

/// The writer's end of a route's queue.
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::UnboundedReceiver<Frames>,
    level: Arc<Level>,
}

impl Queue {
    /// The next batch; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Frames> {
        let f = self.rx.recv().await?;
        self.level.taken(f.buf.len());
        Some(f)
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<Frames> {
        let f = self.rx.try_recv().ok()?;
        self.level.taken(f.buf.len());
        Some(f)
    }

    /// Empties the queue at shutdown (the receipts are abandoned, so the cursors stay before
    /// these lines), returning how many lines it held.
    pub fn abandon_all(&mut self) -> u64 {
        let mut n = 0;
        while let Some(f) = self.try_recv() {
            n += f.len() as u64;
        }
        n
    }
}

/// A route's queue of at most `limit` bytes: the sink the router writes to, and the end its
/// writer reads.
pub fn queue(limit: usize) -> (Sink, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let level =
        Arc::new(Level { bytes: AtomicUsize::new(0), batches: AtomicUsize::new(0), limit, room: Notify::new() });
    (Sink { tx, level: level.clone() }, Queue { rx, level })
}

/// What a route's writer needs from the config being built: made by [`plans`] for every route
/// before anything changes, so a bad certificate fails the build and leaves the running
/// config alone.
pub enum SinkPlan {
    Udp,
    Tcp,
    Tls(Arc<tls::TlsTarget>),
    Http(Arc<http::HttpPlan>),
}

/// The sink plans of `config`'s routes, in order, reading every certificate file they name.
pub fn plans(config: &Config, settings: &Settings) -> anyhow::Result<Vec<SinkPlan>> {
    let shared = Arc::new(config.clone());
    let mut plans = Vec::with_capacity(config.routes.len());
    for (index, spec) in config.routes.iter().enumerate() {
        let plan = plan(&shared, index, settings).with_context(|| format!("route {:?}", spec.name))?;
        plans.push(plan);
    }
    Ok(plans)
}

fn plan(config: &Arc<Config>, index: usize, settings: &Settings) -> anyhow::Result<SinkPlan> {
    let spec = &config.routes[index];
    let tls_target = || tls::target(&settings.tls, &spec.tls, &spec.uri.address);
    Ok(match spec.uri.transport {
        Transport::Udp => SinkPlan::Udp,
        Transport::Tcp => SinkPlan::Tcp,
        Transport::Tls => SinkPlan::Tls(Arc::new(tls_target()?)),
        Transport::Http | Transport::Https => {
            let url = spec.uri.http_url();
            let url: ::http::Uri = url.parse().with_context(|| format!("URL {url:?}"))?;
            let body = if spec.http.has_batch {
                let lua = crate::lua::batch::LuaBatch::start(config.clone(), index)?;
                http::body::BodyBuilder::lua(lua, spec.uri.adapter)
            } else {
                http::body::BodyBuilder::lines(spec.uri.adapter)
            };
            let tls = if spec.uri.transport == Transport::Https { Some(tls_target()?) } else { None };
            let headers = spec.http.header_map().map_err(anyhow::Error::msg)?;
            SinkPlan::Http(Arc::new(http::HttpPlan { url, options: spec.http.clone(), headers, tls, body }))
        }
    })
}

/// The sinks of the live config, kept across reloads: a route whose target URI is unchanged
/// keeps its queue, its writer and its connection, so a reload neither reconnects nor loses or
/// repeats a line. Sinks no route uses any more are retired: their writers drain what is
/// queued and close once the last router worker has moved to the new config; a writer whose
/// sink does not take its lines within `LUASPOUT_ROUTE_GRACE` drops them (counted) and stops
/// holding the containers' cursors back.
pub struct SinkSet {
    live: Vec<LiveSink>,
    retired: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
    queue_bytes: usize,
    grace: std::time::Duration,
    write_timeout: std::time::Duration,
    shutdown: CancellationToken,
}

struct LiveSink {
    /// The route URI, canonical form.
    uri: String,
    /// The name of the route it serves (a reload may rename the route and keep the sink).
    name: String,
    sink: Sink,
    writer: JoinHandle<()>,
    /// Its writer's stop, to retire it when the route is removed.
    stop: Stop,
    /// Hands a kept writer the new config's certificates or HTTP plan.
    update: Update,
}

/// The channel a kept writer gets its new plan through, if its kind has one.
enum Update {
    None,
    Tls(watch::Sender<Arc<tls::TlsTarget>>),
    Http(watch::Sender<Arc<http::HttpPlan>>),
}

impl SinkSet {
    /// An empty set whose queues and writers follow `settings` (`LUASPOUT_QUEUE_BYTES`,
    /// `LUASPOUT_ROUTE_GRACE`, `LUASPOUT_WRITE_TIMEOUT`).
    pub fn new(stats: Arc<Stats>, settings: &Settings, shutdown: CancellationToken) -> SinkSet {
        SinkSet {
            live: Vec::new(),
            retired: Vec::new(),
            stats,
            queue_bytes: settings.queue_bytes,
            grace: settings.route_grace,
            write_timeout: settings.write_timeout,
            shutdown,
        }
    }

    /// The sinks for `config`'s routes, in order, given their [`plans`]: existing ones where
    /// the URI matches (handed their new plan), new ones for the rest; the others are retired.
    pub fn reconcile(&mut self, config: &Config, plans: Vec<SinkPlan>) -> Vec<Sink> {
        let mut previous = std::mem::take(&mut self.live);
        let mut sinks = Vec::new();
        for (spec, plan) in config.routes.iter().zip(plans) {
            let uri = spec.uri.to_string();
            let live = match previous.iter().position(|l| l.uri == uri) {
                Some(i) => {
                    let mut live = previous.remove(i);
                    if live.name != spec.name {
                        self.stats.rename_route(&live.name, &spec.name);
                        live.name = spec.name.clone();
                    }
                    match (&live.update, plan) {
                        (Update::Tls(tx), SinkPlan::Tls(target)) => {
                            tx.send_replace(target);
                        }
                        (Update::Http(tx), SinkPlan::Http(plan)) => {
                            tx.send_replace(plan);
                        }
                        _ => {}
                    }
                    live
                }
                None => {
                    let (sink, rx) = queue(self.queue_bytes);
                    let address = spec.uri.address.clone();
                    let rs = self.stats.route(&spec.name);
                    let stop = Stop::new(self.shutdown.clone());
                    let handle = stop.clone();
                    let timeout = self.write_timeout;
                    let (writer, update) = match plan {
                        SinkPlan::Tcp => {
                            (tokio::spawn(tcp::run(address, tcp::Wrap::Plain, timeout, rx, rs, stop)), Update::None)
                        }
                        SinkPlan::Tls(target) => {
                            let (tx, targets) = watch::channel(target);
                            (
                                tokio::spawn(tcp::run(address, tcp::Wrap::Tls(targets), timeout, rx, rs, stop)),
                                Update::Tls(tx),
                            )
                        }
                        SinkPlan::Udp => (tokio::spawn(udp::run(address, rx, rs, stop)), Update::None),
                        SinkPlan::Http(plan) => {
                            let (tx, plans) = watch::channel(plan);
                            (tokio::spawn(http::run(plans, rx, rs, stop)), Update::Http(tx))
                        }
                    };
                    LiveSink { uri, name: spec.name.clone(), sink, writer, stop: handle, update }
                }
            };
            sinks.push(live.sink.clone());
            self.live.push(live);
        }
        self.retired.retain(|w| !w.is_finished());
        for l in previous {
            let (grace, shutdown) = (self.grace, self.shutdown.clone());
            l.stop.removed.cancel();
            let retire = l.stop.retire.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => retire.cancel(),
                    _ = shutdown.cancelled() => {}
                }
            });
            self.retired.push(l.writer);
        }
        sinks
    }

    /// Gives up the set's own handles on the queues and returns the writers to wait for: each
    /// ends once the router workers have let go of its queue and it has written what was queued.
    pub fn into_writers(self) -> Vec<JoinHandle<()>> {
        self.live.into_iter().map(|l| l.writer).chain(self.retired).collect()
    }
}
