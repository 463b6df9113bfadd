//! The router: N worker threads, each owning one Lua state, that take batches of messages
//! and run every route over them.
//!
//! Messages are sharded by container (`hash(id) % N`), so one container's lines stay in order
//! and its metadata table stays hot in one Lua state. A worker drains whatever is ready, up to
//! [`BATCH_MAX`] messages, and makes one Lua call per route for the whole batch
//! (batching with pooled tables measured 1.3-1.7x faster than a call per message). Routes without Lua never enter Lua at all.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::warn;

use crate::config::Config;
use crate::config::options::OnFull;
use crate::delivery::Receipts;
use crate::health::{Health, LuaCall};
use crate::lua::sandbox::LoadMode;
use crate::lua::worker::{LuaRunner, Outcome, RouteLua};
use crate::message::{Container, Message};
use crate::multiline::Aggregator;
use crate::route::{Matcher, Route};
use crate::settings::Settings;
use crate::stats::{self, Stats};
use crate::tap::Tap;
use crate::timefmt::now_ns;
use crate::transport::{Frames, QueueError};

/// Most messages handled per batch: large enough to spread the fixed cost of a Lua call,
/// small enough that one batch takes well under a millisecond.
pub const BATCH_MAX: usize = 256;

/// How long a busy worker lets its inbox fill before taking a batch: a few milliseconds of
/// latency while lines pour in, none for a line after a quiet spell.
const LINGER: Duration = Duration::from_millis(2);

/// Lines a worker's inbox holds before pumps wait: the backpressure that keeps a slow router
/// from buffering Docker's output in memory. A pump sends a read's lines as one input, so the
/// lines are counted apart from the inputs ([`Inbox::reserve`]).
const INBOX_LINES: usize = 4 * BATCH_MAX;

/// Inputs a worker's inbox holds: as many as lines, for streams that send a line per read.
const INBOX_CAPACITY: usize = INBOX_LINES;

/// One accepted configuration with its run-time routes. Workers switch to a new generation
/// between two batches, so every line is handled entirely by one config.
pub struct Generation {
    /// Counts accepted configs, from 1.
    pub number: u64,
    pub config: Config,
    pub routes: Vec<Arc<Route>>,
}

/// What pumps send to a worker.
#[derive(Debug)]
pub enum Input {
    /// A log line.
    Line(Message),
    /// The lines of one read of a container, in order: one send (and one wake-up of the
    /// worker) for all of them, with their room in the inbox, freed once the worker has them.
    Lines(Vec<Message>, OwnedSemaphorePermit),
    /// A container was renamed: the old snapshot (by epoch) is no longer used.
    Renamed(u64),
    /// A container's stream ended (it stopped or was removed): flush its multiline groups and
    /// drop its caches.
    Stopped { id: String, epoch: u64 },
}

/// The senders of all workers' inboxes.
#[derive(Debug, Clone)]
pub struct Inboxes {
    senders: Vec<Inbox>,
}

impl Inboxes {
    /// The inbox of the worker that owns this container.
    pub fn for_container(&self, id: &str) -> Inbox {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        self.senders[(h.finish() % self.senders.len() as u64) as usize].clone()
    }
}

/// The sending end of one worker's inbox: a channel of inputs, and the room for
/// [`INBOX_LINES`] lines in it.
#[derive(Debug, Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Input>,
    lines: Arc<Semaphore>,
}

impl Inbox {
    fn new(tx: mpsc::Sender<Input>) -> Inbox {
        Inbox { tx, lines: Arc::new(Semaphore::new(INBOX_LINES)) }
    }

    /// Sends a notice (a rename, a stream's end); an error if the worker is gone.
    pub async fn send(&self, input: Input) -> Result<(), mpsc::error::SendError<Input>> {
        self.tx.send(input).await
    }

    /// Waits for room for `n` lines (at most [`BATCH_MAX`]); `None` if the worker is gone.
    pub async fn reserve(&self, n: usize) -> Option<LinesPermit<'_>> {
        let lines = self.lines.clone().acquire_many_owned(n.min(INBOX_LINES) as u32).await.ok()?;
        let slot = self.tx.reserve().await.ok()?;
        Some(LinesPermit { slot, lines })
    }
}

/// Room in an inbox for one read's lines.
pub struct LinesPermit<'a> {
    slot: mpsc::Permit<'a, Input>,
    lines: OwnedSemaphorePermit,
}

impl LinesPermit<'_> {
    /// Sends the lines; their room is freed when the worker takes them.
    pub fn send(self, lines: Vec<Message>) {
        self.slot.send(Input::Lines(lines, self.lines));
    }
}

/// Starts `settings.workers` worker threads and waits until each has loaded the config.
pub fn start_workers(
    settings: &Settings,
    generations: watch::Receiver<Arc<Generation>>,
    stats: Arc<Stats>,
    tap: Arc<Tap>,
    health: &Health,
) -> anyhow::Result<Inboxes> {
    let mut senders = Vec::new();
    for n in 0..settings.workers {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (mut generations, stats, settings, tap) =
            (generations.clone(), stats.clone(), settings.clone(), tap.clone());
        let name = format!("router-{n}");
        let lua_call = health.lua_thread(name.clone());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let first = generations.borrow_and_update().clone();
                match Worker::new(first, stats, tap, &settings, LoadMode::Worker) {
                    Ok(mut worker) => {
                        worker.lua_call = Some(lua_call);
                        let _ = ready_tx.send(Ok(()));
                        worker.run(rx, generations);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .context("cannot start a router thread")?;
        ready_rx.recv().map_err(|_| anyhow!("router-{n} died while loading the config"))??;
        senders.push(Inbox::new(tx));
    }
    Ok(Inboxes { senders })
}

/// Per-worker cache about one container snapshot.
struct ContainerState {
    /// Whether each route (by index) takes this container's lines.
    matches: Vec<bool>,
    /// The top-level multiline rule that groups this container's lines, if any (and if the
    /// container takes part in grouping).
    rule: Option<usize>,
    /// Whether route-level multiline groups this container's lines (`LOGSPOUT_MULTILINE`,
    /// `MULTILINE_ENABLE_DEFAULT`).
    grouping: bool,
    /// The container's count of lines read, in the stats.
    lines: Arc<std::sync::atomic::AtomicU64>,
}

/// A top-level multiline rule at run time.
struct Rule {
    containers: Matcher,
    aggregator: Aggregator,
}

/// One router thread.
struct Worker {
    generation: Arc<Generation>,
    routes: Vec<Arc<Route>>,
    lua: Option<LuaRunner>,
    /// Marks each Lua call for the watchdog on `/health` (`None` in dry runs).
    lua_call: Option<Arc<LuaCall>>,
    /// How the worker's Lua states are built: guarded, but in the guard's benchmark.
    lua_mode: LoadMode,
    containers: foldhash::HashMap<u64, ContainerState>,
    stats: Arc<Stats>,
    /// `/logs` viewers see every line read, before grouping or routing.
    tap: Arc<Tap>,
    rules: Vec<Rule>,
    /// Route-level multiline, by route index.
    route_groups: Vec<Option<Aggregator>>,
    multiline_default: bool,
    /// Bytes a Lua state may hold (its cap; a state that stays near it is rebuilt).
    lua_memory_limit: usize,
    /// Messages for every route, waiting for the next [`Worker::process`].
    batch: Vec<Message>,
    /// Grouped messages for one route (route-level multiline), by route index.
    route_batches: Vec<Vec<Message>>,
    /// Container snapshots to forget after the next [`Worker::process`].
    forgotten: Vec<u64>,
    /// The latest Docker time seen: the clock of multiline expiry while lines flow.
    latest_ns: i64,
    /// Multiline cap hits already added to the stats.
    caps_reported: u64,
    /// Joined multiline groups already added to the stats.
    joined_reported: u64,
    /// Indices of the batch's messages a route takes; reused across batches.
    selected: Vec<usize>,
}

impl Worker {
    fn new(
        generation: Arc<Generation>,
        stats: Arc<Stats>,
        tap: Arc<Tap>,
        settings: &Settings,
        lua_mode: LoadMode,
    ) -> anyhow::Result<Worker> {
        let mut worker = Worker {
            tap,
            lua_memory_limit: settings.lua_memory_limit,
            generation: generation.clone(),
            routes: Vec::new(),
            lua: None,
            lua_call: None,
            lua_mode,
            containers: foldhash::HashMap::default(),
            stats,
            rules: Vec::new(),
            route_groups: Vec::new(),
            multiline_default: settings.multiline_default,
            batch: Vec::with_capacity(BATCH_MAX),
            route_batches: Vec::new(),
            forgotten: Vec::new(),
            latest_ns: 0,
            caps_reported: 0,
            joined_reported: 0,
            selected: Vec::with_capacity(BATCH_MAX),
        };
        worker.load(generation)?;
        Ok(worker)
    }

    /// Takes a generation's routes, Lua state and multiline rules.
    fn load(&mut self, generation: Arc<Generation>) -> anyhow::Result<()> {
        let routes = &generation.routes;
        let uses_lua = routes.iter().any(|r| r.has_filter || r.has_format);
        let lua = if uses_lua {
            Some(LuaRunner::new(&generation.config, routes.len(), self.lua.as_ref(), self.lua_mode)?)
        } else {
            None
        };
        self.rules = generation
            .config
            .multiline
            .iter()
            .map(|r| Rule { containers: Matcher::compile(&r.containers), aggregator: Aggregator::new(r.spec.clone()) })
            .collect();
        self.route_groups = routes.iter().map(|r| r.multiline.clone().map(Aggregator::new)).collect();
        self.route_batches = routes.iter().map(|_| Vec::new()).collect();
        self.routes = routes.clone();
        self.lua = lua;
        self.containers.clear();
        self.caps_reported = 0;
        self.joined_reported = 0;
        self.generation = generation;
        Ok(())
    }

    /// Replaces a Lua state that stays near its cap (a table that grows per line, say) with a
    /// fresh one from the same config.
    fn reset_lua(&mut self) {
        stats::add(&self.stats.lua_memory_resets, 1);
        let used = self.lua.as_ref().map_or(0, LuaRunner::used_memory);
        // Its state is what outgrew the limit: nothing is carried over.
        match LuaRunner::new(&self.generation.config, self.routes.len(), None, self.lua_mode) {
            Ok(fresh) => {
                warn!(
                    used_bytes = used,
                    limit_bytes = self.lua_memory_limit,
                    "a Lua state outgrew its memory limit (LUASPOUT_LUA_MEMORY_MB); rebuilt from the config, its Lua-side state is lost"
                );
                self.lua = Some(fresh);
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot rebuild the Lua state"),
        }
    }

    /// Moves to a new config between two batches: what the old config still holds (multiline
    /// groups) goes out through the old routes first.
    fn switch(&mut self, generation: Arc<Generation>) {
        self.flush_all();
        let number = generation.number;
        let behind = match self.load(generation) {
            Ok(()) => None,
            Err(e) => {
                // The config was validated before it was published, so this is a config whose
                // routes depend on something that changed since (time, randomness, state).
                let error = format!("{e:#}");
                tracing::error!(generation = number, error = %error, "router worker keeps the previous config");
                Some((self.generation.number, format!("cannot run generation {number}: {error}")))
            }
        };
        // Shown on /health, so a worker on an older config is never silent.
        if let Some(call) = &self.lua_call {
            call.set_behind(behind);
        }
    }

    /// Takes batches until every pump has gone, then flushes what multiline still holds.
    ///
    /// Pending multiline groups expire by Docker time while lines flow, and by the wall clock
    /// when the inbox is idle, so a trace's last group goes out `flush_after` after its first
    /// line even if nothing follows it.
    fn run(&mut self, mut rx: mpsc::Receiver<Input>, mut generations: watch::Receiver<Arc<Generation>>) {
        let timer = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a timer runtime");
        let mut last_wake = std::time::Instant::now() - LINGER;
        loop {
            if generations.has_changed().unwrap_or(false) {
                let next = generations.borrow_and_update().clone();
                self.switch(next);
            }
            let deadline = self.next_deadline_ns();
            let first = timer.block_on(async {
                let wait = deadline.map(|d| Duration::from_nanos(d.saturating_sub(now_ns()).max(0) as u64));
                tokio::select! {
                    input = rx.recv() => Wake::Input(input),
                    _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => Wake::Deadline,
                    Ok(()) = generations.changed() => Wake::Reload,
                }
            });
            match first {
                Wake::Reload => {
                    let next = generations.borrow_and_update().clone();
                    self.switch(next);
                    continue;
                }
                Wake::Deadline => self.flush_expired(now_ns()),
                Wake::Input(None) => {
                    self.flush_all();
                    return;
                }
                Wake::Input(Some(input)) => {
                    self.accept(input);
                    self.drain(&mut rx);
                    // A busy inbox (woken again within LINGER) with a small batch: let lines
                    // pile up for LINGER, so one batch, one Lua call and one sink write carry
                    // many lines instead of a few (dockerd sends one line per frame).
                    if self.batch.len() < BATCH_MAX / 4 && last_wake.elapsed() < LINGER {
                        std::thread::sleep(LINGER);
                        self.drain(&mut rx);
                    }
                    last_wake = std::time::Instant::now();
                    if deadline.is_some_and(|d| d <= self.latest_ns) {
                        self.flush_expired(self.latest_ns);
                    }
                }
            }
            self.process();
        }
    }

    /// Takes what the inbox holds without waiting, up to a full batch (the last input taken
    /// whole, so a batch can hold up to twice [`BATCH_MAX`] messages).
    fn drain(&mut self, rx: &mut mpsc::Receiver<Input>) {
        while self.batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(input) => self.accept(input),
                Err(_) => break,
            }
        }
    }

    /// Takes one input.
    fn accept(&mut self, input: Input) {
        match input {
            Input::Line(m) => {
                stats::add(&self.stats.lines_in, 1);
                self.accept_line(m);
            }
            Input::Lines(lines, _room) => {
                stats::add(&self.stats.lines_in, lines.len() as u64);
                for m in lines {
                    self.accept_line(m);
                }
            }
            Input::Renamed(epoch) => self.forgotten.push(epoch),
            Input::Stopped { id, epoch } => {
                for rule in &mut self.rules {
                    rule.aggregator.flush_container(&id, &mut |g| self.batch.push(g));
                }
                for (agg, out) in self.route_groups.iter_mut().zip(&mut self.route_batches) {
                    if let Some(agg) = agg {
                        agg.flush_container(&id, &mut |g| out.push(g));
                    }
                }
                self.forgotten.push(epoch);
            }
        }
    }

    /// Takes one line: through its container's top-level multiline rule, if any, into the
    /// batch.
    fn accept_line(&mut self, m: Message) {
        self.tap.publish(&m);
        self.latest_ns = self.latest_ns.max(m.time_ns);
        let state = self.containers.entry(m.container.epoch).or_insert_with(|| {
            let mut state = container_state(&self.routes, &self.rules, self.multiline_default, &m.container);
            state.lines = self.stats.container(&m.container.name);
            state
        });
        stats::add(&state.lines, 1);
        match state.rule {
            Some(r) => self.rules[r].aggregator.push(m, &mut |g| self.batch.push(g)),
            None => self.batch.push(m),
        }
    }

    fn next_deadline_ns(&self) -> Option<i64> {
        let rules = self.rules.iter().filter_map(|r| r.aggregator.next_deadline_ns());
        let routes = self.route_groups.iter().flatten().filter_map(|a| a.next_deadline_ns());
        rules.chain(routes).min()
    }

    fn flush_expired(&mut self, now: i64) {
        for rule in &mut self.rules {
            rule.aggregator.flush_expired(now, &mut |g| self.batch.push(g));
        }
        for (agg, out) in self.route_groups.iter_mut().zip(&mut self.route_batches) {
            if let Some(agg) = agg {
                agg.flush_expired(now, &mut |g| out.push(g));
            }
        }
    }

    /// Sends out everything multiline still holds (container gone, reload, shutdown): the
    /// top-level groups through the routes first, since a route with its own grouping takes
    /// them into its groups, then those groups.
    fn flush_all(&mut self) {
        for rule in &mut self.rules {
            rule.aggregator.flush_all(&mut |g| self.batch.push(g));
        }
        self.process();
        for (agg, out) in self.route_groups.iter_mut().zip(&mut self.route_batches) {
            if let Some(agg) = agg {
                agg.flush_all(&mut |g| out.push(g));
            }
        }
        self.process();
    }

    /// Runs every route over the batch (and route-level groups over their own batches), queues
    /// the results, and forgets containers that are gone.
    fn process(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if let Some(lua) = &mut self.lua {
            lua.begin_batch(batch.len());
        }
        for route in &self.routes {
            self.selected.clear();
            for (i, m) in batch.iter().enumerate() {
                let state = &self.containers[&m.container.epoch];
                if state.matches[route.index] && route.matcher.matches_source(m.source) {
                    self.selected.push(i);
                }
            }
            stats::add(&route.stats.matched, self.selected.len() as u64);
            match &mut self.route_groups[route.index] {
                None => send_route(&mut self.lua, self.lua_call.as_deref(), route, &batch, &self.selected),
                Some(agg) => {
                    // Grouped per route: the route's own messages, handled after the shared batch.
                    let out = &mut self.route_batches[route.index];
                    for &i in &self.selected {
                        let m = &batch[i];
                        if self.containers[&m.container.epoch].grouping {
                            agg.push(m.clone(), &mut |g| out.push(g));
                        } else {
                            out.push(m.clone());
                        }
                    }
                }
            }
        }
        for route in &self.routes {
            let grouped = std::mem::take(&mut self.route_batches[route.index]);
            if grouped.is_empty() {
                continue;
            }
            if let Some(lua) = &mut self.lua {
                lua.begin_batch(grouped.len());
            }
            let all: Vec<usize> = (0..grouped.len()).collect();
            send_route(&mut self.lua, self.lua_call.as_deref(), route, &grouped, &all);
        }
        self.batch = batch;
        self.batch.clear();
        for epoch in self.forgotten.drain(..) {
            self.containers.remove(&epoch);
            if let Some(lua) = &mut self.lua {
                lua.forget(epoch);
            }
        }
        if self.lua.as_mut().is_some_and(LuaRunner::outgrown) {
            self.reset_lua();
        }
        let caps: u64 = self.rules.iter().map(|r| r.aggregator.caps_hit()).sum::<u64>()
            + self.route_groups.iter().flatten().map(Aggregator::caps_hit).sum::<u64>();
        stats::add(&self.stats.multiline_caps, caps - self.caps_reported);
        self.caps_reported = caps;
        let joined: u64 = self.rules.iter().map(|r| r.aggregator.joined_groups()).sum::<u64>()
            + self.route_groups.iter().flatten().map(Aggregator::joined_groups).sum::<u64>();
        stats::add(&self.stats.multiline_groups, joined - self.joined_reported);
        self.joined_reported = joined;
    }
}

/// Runs `messages` through `config`'s routes in this thread, with no Docker and no sockets,
/// and returns what each route would send: `(route name, lines)`, in config order. Pending
/// multiline groups are flushed at the end. For `luaspout try` and config tests.
pub fn dry_run(
    config: Config,
    settings: &Settings,
    messages: Vec<Message>,
) -> anyhow::Result<Vec<(String, Vec<Vec<u8>>)>> {
    let stats = Arc::new(Stats::new());
    let (sinks, mut queues): (Vec<_>, Vec<_>) =
        config.routes.iter().map(|_| crate::transport::queue(usize::MAX)).unzip();
    let formatters = crate::route::formatters(&config, settings)?;
    let routes = crate::route::build_routes(&config, formatters, &sinks, &stats);
    drop(sinks);
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let generation = Arc::new(Generation { number: 1, config, routes });
    let mut worker = Worker::new(generation, stats, Arc::default(), settings, LoadMode::Worker)?;
    for m in messages {
        worker.accept(Input::Line(m));
        if worker.batch.len() >= BATCH_MAX {
            worker.process();
        }
    }
    worker.process();
    worker.flush_all();
    drop(worker);
    Ok(names
        .into_iter()
        .zip(queues.iter_mut())
        .map(|(name, rx)| {
            let mut lines = Vec::new();
            while let Some(frames) = rx.try_recv() {
                lines.extend(frames.lines().map(<[u8]>::to_vec));
            }
            (name, lines)
        })
        .collect())
}

/// A router worker driven by its caller, in the caller's thread, with no Docker and no
/// writers: what `benches/pipeline.rs` measures. It runs the real worker code (match, Lua
/// `filter`/`format` in the worker's own Lua state, the route's formatter, the route's queue),
/// so the bench measures what a running router does per message, not a re-implementation.
pub struct Pipeline {
    worker: Worker,
    queues: Vec<crate::transport::Queue>,
}

impl Pipeline {
    /// A worker over `config`'s routes, each route's queue read by [`Pipeline::route`].
    pub fn new(config: Config, settings: &Settings) -> anyhow::Result<Pipeline> {
        Self::with_lua(config, settings, LoadMode::Worker)
    }

    /// The same worker with Lua states that run without the guard (no memory cap, no
    /// instruction hook), so the benchmark can show what the guard costs. Never used to route.
    pub fn unguarded(config: Config, settings: &Settings) -> anyhow::Result<Pipeline> {
        Self::with_lua(config, settings, LoadMode::Unguarded)
    }

    fn with_lua(config: Config, settings: &Settings, lua_mode: LoadMode) -> anyhow::Result<Pipeline> {
        let stats = Arc::new(Stats::new());
        // Emptied after every batch: a batch per route is all a queue ever holds.
        let (sinks, queues): (Vec<_>, Vec<_>) =
            config.routes.iter().map(|_| crate::transport::queue(usize::MAX)).unzip();
        let formatters = crate::route::formatters(&config, settings)?;
        let routes = crate::route::build_routes(&config, formatters, &sinks, &stats);
        let generation = Arc::new(Generation { number: 1, config, routes });
        let worker = Worker::new(generation, stats, Arc::default(), settings, lua_mode)?;
        Ok(Pipeline { worker, queues })
    }

    /// Routes `messages` in batches of up to [`BATCH_MAX`], as the worker takes them from its
    /// inbox, and hands each route's queued frames to `sink` (route index, frames) after every
    /// batch. Each message is cloned first, as a pump builds a new one per line.
    pub fn route(&mut self, messages: &[Message], sink: &mut impl FnMut(usize, Frames)) {
        for chunk in messages.chunks(BATCH_MAX) {
            for m in chunk {
                self.worker.accept(Input::Line(m.clone()));
            }
            self.worker.process();
            for (index, rx) in self.queues.iter_mut().enumerate() {
                while let Some(frames) = rx.try_recv() {
                    sink(index, frames);
                }
            }
        }
    }
}

/// Why a waiting worker woke up.
enum Wake {
    Input(Option<Input>),
    Deadline,
    Reload,
}

/// Formats the `selected` messages of `msgs` for `route` (through its Lua, if it has any) and
/// queues them. Only an `on_full = "drop"` route's full queue refuses a batch, which is then
/// dropped and counted; `block` routes pause their containers' pumps instead.
fn send_route(
    lua: &mut Option<LuaRunner>,
    lua_call: Option<&LuaCall>,
    route: &Route,
    msgs: &[Message],
    selected: &[usize],
) {
    if selected.is_empty() {
        return;
    }
    let rs = &route.stats;
    // Only routes that never drop hold the cursors back: an `on_full = "drop"` route (a debug
    // sink) is best effort, and must not keep lines tracked while its sink is down.
    let holds = route.on_full == OnFull::Block;
    let mut frames = Frames {
        buf: Vec::with_capacity(selected.len() * 128),
        ends: Vec::with_capacity(selected.len()),
        receipts: Receipts::for_route(route.holder.clone()),
    };
    match lua {
        Some(lua) if route.has_filter || route.has_format => {
            let mut filtered = 0;
            let started = std::time::Instant::now();
            if let Some(call) = lua_call {
                call.begin(&route.stats);
            }
            let route_lua = RouteLua { index: route.index, on_error: route.on_error, stats: rs };
            lua.run_route(&route_lua, msgs, selected, |msg, outcome| {
                match outcome {
                    Outcome::Drop => {
                        filtered += 1;
                        return;
                    }
                    Outcome::Default => route.formatter.render(msg, &mut frames.buf),
                    Outcome::Payload(p) => route.formatter.render_payload(msg, p, &mut frames.buf),
                }
                frames.end_line();
                if let Some(ack) = msg.ack.as_ref().filter(|_| holds) {
                    frames.receipts.hold(ack);
                }
            });
            if let Some(call) = lua_call {
                call.end();
            }
            stats::add(&rs.filtered, filtered);
            stats::add(&rs.lua_ns, started.elapsed().as_nanos() as u64);
        }
        _ => {
            for &i in selected {
                let msg = &msgs[i];
                route.formatter.render(msg, &mut frames.buf);
                frames.end_line();
                if let Some(ack) = msg.ack.as_ref().filter(|_| holds) {
                    frames.receipts.hold(ack);
                }
            }
        }
    }
    // The formatter's counter is shared by all workers: publish its total, warn when it grew.
    let format_errors = route.formatter.render_errors();
    if format_errors > rs.format_errors.fetch_max(format_errors, std::sync::atomic::Ordering::Relaxed)
        && rs.warn_limit.allow()
    {
        let error = route.formatter.last_render_error().unwrap_or_default();
        warn!(route = %route.name, errors_total = format_errors, "template error, lines sent as far as they rendered: {error}");
    }
    if frames.is_empty() {
        return;
    }
    let n = frames.len() as u64;
    match route.sink.send(frames, route.on_full) {
        Ok(()) => stats::add(&rs.queued, n),
        Err((why, frames)) => {
            stats::add(&rs.dropped_queue_full, n);
            // A drop the route asked for (`on_full = "drop"`) lets the cursors move on; a
            // stopped writer's receipts are abandoned: kept for the next start at shutdown,
            // released and counted while running (a writer that died cannot deliver them).
            if why == QueueError::Full {
                frames.settle();
            }
            if rs.warn_limit.allow() {
                let reason = match why {
                    QueueError::Full => "the route's queue is full (sink slow or down) and it has on_full = \"drop\"",
                    QueueError::Closed => "the route's writer has stopped",
                };
                warn!(route = %route.name, dropped_total = rs.dropped_queue_full.load(std::sync::atomic::Ordering::Relaxed), "dropping lines: {reason}");
            }
        }
    }
}

/// What a worker needs to know about a container, decided once per container snapshot.
fn container_state(routes: &[Arc<Route>], rules: &[Rule], multiline_default: bool, c: &Container) -> ContainerState {
    // logspout's per-container switch: LOGSPOUT_MULTILINE=true|false, any case.
    let grouping = match c.env_var("LOGSPOUT_MULTILINE").map(str::to_ascii_lowercase).as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => multiline_default,
    };
    ContainerState {
        matches: routes.iter().map(|r| r.matcher.matches_container(c)).collect(),
        rule: if grouping { rules.iter().position(|r| r.containers.matches_container(c)) } else { None },
        grouping,
        lines: Arc::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bytes::Bytes;

    use super::*;
    use crate::config::Config;
    use crate::message::Source;
    use crate::settings::{Env, Settings};
    use crate::transport::{Queue, queue};

    /// A worker over `text`, with each route's queue readable.
    fn worker(text: &str, env: &[(&str, &str)]) -> (Worker, Vec<Queue>) {
        let (generation, rxs) = generation(1, text, env);
        let settings = Settings::from_env(Env::from_pairs(env)).unwrap();
        (Worker::new(generation, Arc::new(Stats::new()), Arc::default(), &settings, LoadMode::Worker).unwrap(), rxs)
    }

    /// Generation `number` of the config `text`, with each route's queue readable.
    fn generation(number: u64, text: &str, env: &[(&str, &str)]) -> (Arc<Generation>, Vec<Queue>) {
        let env = Env::from_pairs(env);
        let config = crate::lua::validate(Config::from_text("t.lua", text, env.clone())).unwrap();
        let settings = Settings::from_env(env).unwrap();
        let (sinks, rxs): (Vec<_>, Vec<_>) = config.routes.iter().map(|_| queue(1 << 20)).unzip();
        let formatters = crate::route::formatters(&config, &settings).unwrap();
        let routes = crate::route::build_routes(&config, formatters, &sinks, &Stats::new());
        (Arc::new(Generation { number, config, routes }), rxs)
    }

    fn container(name: &str, epoch: u64) -> Arc<Container> {
        Arc::new(Container { id: format!("{epoch:064x}"), name: name.into(), epoch, ..Default::default() })
    }

    fn line(c: &Arc<Container>, source: Source, ms: i64, data: &str) -> Input {
        Input::Line(Message {
            container: c.clone(),
            source,
            time_ns: 1_700_000_000_000_000_000 + ms * 1_000_000,
            data: Bytes::from(data.to_string()),
            ack: None,
        })
    }

    fn received(rx: &mut Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = rx.try_recv() {
            out.extend(f.lines().map(|l| String::from_utf8_lossy(l).into_owned()));
        }
        out
    }

    fn run(w: &mut Worker, inputs: Vec<Input>) {
        for i in inputs {
            w.accept(i);
        }
        w.process();
    }

    #[tokio::test]
    async fn an_inbox_counts_lines_not_inputs() {
        let (tx, mut rx) = mpsc::channel(INBOX_CAPACITY);
        let inbox = Inbox::new(tx);
        let c = container("app", 1);
        let read = || -> Vec<Message> {
            (0..BATCH_MAX as i64)
                .map(|i| match line(&c, Source::Stdout, i, "x") {
                    Input::Line(m) => m,
                    _ => unreachable!("a line"),
                })
                .collect()
        };
        for _ in 0..INBOX_LINES / BATCH_MAX {
            inbox.reserve(BATCH_MAX).await.expect("room").send(read());
        }
        let full = tokio::time::timeout(Duration::from_millis(50), inbox.reserve(1)).await;
        assert!(full.is_err(), "no room past INBOX_LINES lines");
        drop(rx.recv().await);
        assert!(inbox.reserve(BATCH_MAX).await.is_some(), "room again once the worker took a read's lines");
    }

    #[test]
    fn lua_filter_and_format_shape_each_route() {
        let (mut w, mut rx) = worker(
            r#"
            route { to = "raw+tcp://127.0.0.1:1", match = { name = "app" },
                    filter = function(m) return m.data:find("keep", 1, true) end,
                    format = function(m) return m.container.name .. " " .. m.source .. " " .. m.data end }
            route { to = "raw+tcp://127.0.0.1:2", format = function(m) return { log = m.data, n = m.time_ns % 1000 } end }
            route { to = "raw+tcp://127.0.0.1:3?filter.sources=stderr" }
            "#,
            &[],
        );
        let (app, db) = (container("app", 1), container("db", 2));
        run(
            &mut w,
            vec![
                line(&app, Source::Stdout, 0, "keep 1"),
                line(&db, Source::Stdout, 1, "keep db"),
                line(&app, Source::Stderr, 2, "drop"),
                line(&app, Source::Stderr, 3, "keep 2"),
            ],
        );
        assert_eq!(received(&mut rx[0]), ["app stdout keep 1\n", "app stderr keep 2\n"]);
        assert_eq!(
            received(&mut rx[1]),
            [
                r#"{"log":"keep 1","n":0}"#.to_string() + "\n",
                r#"{"log":"keep db","n":0}"#.to_string() + "\n",
                r#"{"log":"drop","n":0}"#.to_string() + "\n",
                r#"{"log":"keep 2","n":0}"#.to_string() + "\n"
            ]
        );
        assert_eq!(received(&mut rx[2]), ["drop\n", "keep 2\n"]);
        assert_eq!(w.routes[0].stats.filtered.load(Ordering::Relaxed), 1);
        assert_eq!(w.routes[0].stats.matched.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn every_msg_field_reads_as_documented_even_if_the_config_replaces_string_sub() {
        // The worker writes the pooled tables with its own Lua, which must not use the
        // config's `string.sub`; container tables stay right when a forgotten slot is reused.
        let (mut w, mut rx) = worker(
            r#"string.sub = function() return "replaced" end
               route { to = "raw+tcp://127.0.0.1:1",
                       format = function(m)
                         local c = m.container
                         return "[" .. m.data .. "] " .. m.source .. " " .. string.format("%.3f", m.time) .. " "
                           .. math.type(m.time) .. " " .. m.time_ns .. " " .. math.type(m.time_ns) .. " "
                           .. c.name .. " " .. #c.id
                       end }"#,
            &[],
        );
        let (app, db) = (container("app", 1), container("db", 2));
        run(&mut w, vec![line(&app, Source::Stdout, 0, "a"), line(&db, Source::Stderr, 1, "")]);
        run(&mut w, vec![Input::Renamed(1)]);
        run(&mut w, vec![line(&container("web", 3), Source::Stdout, 2, "c"), line(&db, Source::Stdout, 3, "d")]);
        assert_eq!(
            received(&mut rx[0]),
            [
                "[a] stdout 1700000000.000 float 1700000000000000000 integer app 64\n",
                "[] stderr 1700000000.001 float 1700000000001000000 integer db 64\n",
                "[c] stdout 1700000000.002 float 1700000000002000000 integer web 64\n",
                "[d] stdout 1700000000.003 float 1700000000003000000 integer db 64\n",
            ]
        );
    }

    #[test]
    fn a_failing_or_looping_function_costs_only_its_message() {
        let (mut w, mut rx) = worker(
            r#"
            route { to = "raw+tcp://127.0.0.1:1",
                    filter = function(m)
                      if m.data == "boom" then error("no good") end
                      if m.data == "loop" then while true do end end
                      return true
                    end,
                    format = function(m) return "<" .. m.data .. ">" end }
            "#,
            &[],
        );
        let c = container("app", 1);
        run(
            &mut w,
            ["a", "boom", "b", "loop", "c"]
                .iter()
                .enumerate()
                .map(|(i, d)| line(&c, Source::Stdout, i as i64, d))
                .collect(),
        );
        // The failing messages pass through in the default format; the rest are formatted.
        assert_eq!(received(&mut rx[0]), ["<a>\n", "boom\n", "<b>\n", "loop\n", "<c>\n"]);
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_route_over_part_of_a_batch_reads_its_own_lines_and_resumes_after_a_failing_one() {
        // The route takes every other line of the batch: its driver reads them through `sel`,
        // also when it starts again after the line that raised.
        let (mut w, mut rx) = worker(
            r#"
            route { to = "raw+tcp://127.0.0.1:1", match = { name = "app" },
                    format = function(m)
                      if m.data == "boom" then error("no good") end
                      return "<" .. m.data .. ">"
                    end }
            "#,
            &[],
        );
        let (app, db) = (container("app", 1), container("db", 2));
        let data = ["a", "x", "boom", "y", "b", "z", "c"];
        let lines = data
            .iter()
            .enumerate()
            .map(|(i, d)| line(if i % 2 == 0 { &app } else { &db }, Source::Stdout, i as i64, d))
            .collect();
        run(&mut w, lines);
        assert_eq!(received(&mut rx[0]), ["<a>\n", "boom\n", "<b>\n", "<c>\n"]);
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 1);
        assert_eq!(w.routes[0].stats.matched.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn each_line_has_a_budget_of_its_own() {
        // `heavy` needs about 3 M instructions, over one line's budget (1 M) but well under what a
        // batch of 20 lines would pool; `light` needs 0.6 M, under it.
        let (mut w, mut rx) = worker(
            r#"route { to = "raw+tcp://127.0.0.1:1",
                       format = function(m)
                         local n = m.data == "heavy" and 3000000 or 600000
                         for i = 1, n do end
                         return "ok " .. m.data
                       end }"#,
            &[],
        );
        let c = container("app", 1);
        let mut lines: Vec<Input> = (0..19).map(|i| line(&c, Source::Stdout, i, "light")).collect();
        lines.insert(9, line(&c, Source::Stdout, 100, "heavy"));
        run(&mut w, lines);
        let out = received(&mut rx[0]);
        assert_eq!(out.len(), 20);
        assert_eq!(out.iter().filter(|l| *l == "ok light\n").count(), 19);
        assert_eq!(out[9], "heavy\n", "the heavy line ran out and went out in the default format");
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_stopped_line_cannot_catch_its_stop() {
        let (mut w, mut rx) = worker(
            r#"route { to = "raw+tcp://127.0.0.1:1",
                       filter = function(m)
                         if m.data == "pcall" then while true do pcall(function() while true do end end) end end
                         if m.data == "xpcall" then while true do xpcall(function() while true do end end, print) end end
                         if m.data == "coroutine" then
                           while true do coroutine.resume(coroutine.create(function() while true do end end)) end
                         end
                         return true
                       end }"#,
            &[],
        );
        let c = container("app", 1);
        run(
            &mut w,
            ["a", "pcall", "b", "xpcall", "coroutine", "c"]
                .iter()
                .enumerate()
                .map(|(i, d)| line(&c, Source::Stdout, i as i64, d))
                .collect(),
        );
        assert_eq!(received(&mut rx[0]), ["a\n", "pcall\n", "b\n", "xpcall\n", "coroutine\n", "c\n"]);
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 3);
    }

    /// Runs `batches` of lines (their `data`) through a worker over `text`, in a thread of its
    /// own, and returns what the route queued and its count of Lua errors; fails if that takes
    /// more than a minute (Lua running with no instruction hook cannot be stopped).
    fn run_in_time(text: &'static str, batches: Vec<Vec<String>>) -> (Vec<String>, u64) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut w, mut rx) = worker(text, &[]);
            let c = container("app", 1);
            let mut out = Vec::new();
            for (b, batch) in batches.into_iter().enumerate() {
                let at = b as i64 * 1000;
                run(
                    &mut w,
                    batch.iter().enumerate().map(|(i, d)| line(&c, Source::Stdout, at + i as i64, d)).collect(),
                );
                out.extend(received(&mut rx[0]));
            }
            let _ = done_tx.send((out, w.routes[0].stats.lua_errors.load(Ordering::Relaxed)));
        });
        done_rx.recv_timeout(Duration::from_secs(60)).expect("the worker is stuck in Lua without its hook")
    }

    #[test]
    fn a_metatable_on_a_message_cannot_run_without_the_hook() {
        // The fill writes the message fields with the hook off; this `__newindex` would run there,
        // and loop for ever, were the fill not put back under the hook once it is set.
        let text = r#"route { to = "raw+tcp://127.0.0.1:1",
                         filter = function(m)
                           if m.data == "arm" then
                             setmetatable(m, { __newindex = function() while true do end end })
                             m.data, m.source, m.time, m.time_ns, m.container = nil, nil, nil, nil, nil
                           end
                           return true
                         end }"#;
        let batches = vec![vec!["a".to_string(), "arm".into()], vec!["b".into(), "c".into()], vec!["d".into()]];
        let (out, errors) = run_in_time(text, batches);
        assert_eq!(out, ["a\n", "arm\n", "b\n", "c\n", "d\n"]);
        // The second batch's fill ran into the loop on the table of "arm" and was stopped; the
        // third's (one line, in the first table) did not touch it.
        assert_eq!(errors, 1);
    }

    #[test]
    fn a_finalizer_is_refused_and_lines_flow() {
        // Lua runs `__gc` with hooks off: one that loops would hang the worker for good, so
        // `setmetatable` refuses it (the line fails). Then lines that allocate enough for many
        // collections.
        let text = r#"route { to = "raw+tcp://127.0.0.1:1",
                         filter = function(m)
                           if m.data == "arm" then setmetatable({}, { __gc = function() while true do end end }) end
                           return true
                         end }"#;
        let long = "x".repeat(64 << 10);
        let mut batches = vec![vec!["a".to_string(), "arm".into(), "b".into()]];
        batches.extend((0..40).map(|_| vec![long.clone(); 16]));
        let (out, errors) = run_in_time(text, batches);
        assert_eq!(&out[..3], ["a\n", "arm\n", "b\n"]);
        assert_eq!(out.len(), 3 + 40 * 16, "every line routed");
        assert_eq!(errors, 1);
    }

    #[test]
    fn an_allocation_past_the_cap_fails_its_line_only() {
        let (mut w, mut rx) = worker(
            r#"route { to = "raw+tcp://127.0.0.1:1", on_error = "drop",
                       format = function(m)
                         local n = tonumber(m.data:match("^rep (%d+)$"))
                         if n then return #string.rep("x", n) .. " bytes" end
                         return m.data
                       end }"#,
            &[("LUASPOUT_LUA_MEMORY_MB", "8")],
        );
        let c = container("app", 1);
        run(
            &mut w,
            vec![
                line(&c, Source::Stdout, 0, "rep 1000"),
                line(&c, Source::Stdout, 1, "rep 1000000000"),
                line(&c, Source::Stdout, 2, "after"),
            ],
        );
        assert_eq!(received(&mut rx[0]), ["1000 bytes\n", "after\n"]);
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 1);
        assert!(w.lua.as_ref().unwrap().used_memory() < 8 << 20);
    }

    #[test]
    fn a_lua_state_that_outgrows_its_limit_is_rebuilt_and_lines_keep_flowing() {
        let (mut w, mut rx) = worker(
            r#"
            hoard = {}
            route { to = "raw+tcp://127.0.0.1:1",
                    filter = function(m) hoard[#hoard + 1] = string.rep(m.data, 1000) return true end }
            "#,
            &[("LUASPOUT_LUA_MEMORY_MB", "1")],
        );
        let c = container("app", 1);
        let mut routed = 0;
        for batch in 0..20 {
            run(&mut w, (0..100).map(|i| line(&c, Source::Stdout, batch * 100 + i, "0123456789")).collect());
            routed += received(&mut rx[0]).len();
        }
        assert_eq!(routed, 2000, "every line still routed");
        assert!(w.stats.lua_memory_resets.load(Ordering::Relaxed) > 0);
        assert!(w.lua.as_ref().unwrap().used_memory() < 2 << 20);
    }

    #[test]
    fn on_error_drop_drops_the_failing_line_only() {
        let (mut w, mut rx) = worker(
            r#"route { to = "raw+tcp://127.0.0.1:1", on_error = "drop",
                       format = function(m) if m.data == "bad" then error("no") end return "ok " .. m.data end }"#,
            &[],
        );
        let c = container("app", 1);
        run(
            &mut w,
            vec![
                line(&c, Source::Stdout, 0, "a"),
                line(&c, Source::Stdout, 1, "bad"),
                line(&c, Source::Stdout, 2, "b"),
            ],
        );
        assert_eq!(received(&mut rx[0]), ["ok a\n", "ok b\n"]);
        assert_eq!(w.routes[0].stats.lua_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_reload_switches_format_between_batches_and_carries_spout_state() {
        let counting = |v: &str| {
            format!(
                r#"local seen = spout.state("seen")
                   route {{ to = "raw+tcp://127.0.0.1:1",
                            format = function(m) seen.n = (seen.n or 0) + 1 return "{v} " .. seen.n .. " " .. m.data end }}"#
            )
        };
        let (mut w, mut first) = worker(&counting("v1"), &[]);
        let c = container("app", 1);
        run(&mut w, vec![line(&c, Source::Stdout, 0, "a"), line(&c, Source::Stdout, 1, "b")]);
        assert_eq!(received(&mut first[0]), ["v1 1 a\n", "v1 2 b\n"]);
        let (next, mut second) = generation(2, &counting("v2"), &[]);
        w.switch(next);
        run(&mut w, vec![line(&c, Source::Stdout, 2, "c")]);
        assert_eq!(received(&mut second[0]), ["v2 3 c\n"], "the new format, and the count goes on");
        assert!(received(&mut first[0]).is_empty());
    }

    #[test]
    fn a_worker_that_cannot_run_a_new_config_says_so_on_health() {
        // Validation runs the config once in a fresh state; the worker's state carries
        // `spout.state` over, so this config fails only there.
        let config = r#"local runs = spout.state("runs")
            runs.n = (runs.n or 0) + 1
            if runs.n > 1 then error("second run") end
            route { to = "raw+tcp://127.0.0.1:1", format = function(m) return m.data end }"#;
        let (mut w, _first) = worker(config, &[]);
        let health = Health::default();
        w.lua_call = Some(health.lua_thread("router-0".into()));
        let (next, _second) = generation(2, config, &[]);
        w.switch(next);
        let behind = health.behind();
        assert_eq!(behind.len(), 1, "{behind:?}");
        assert_eq!((behind[0].0.as_str(), behind[0].1), ("router-0", 1));
        assert!(behind[0].2.contains("cannot run generation 2") && behind[0].2.contains("second run"), "{behind:?}");
        let (fixed, _third) = generation(3, r#"route { to = "raw+tcp://127.0.0.1:1" }"#, &[]);
        w.switch(fixed);
        assert!(health.behind().is_empty());
    }

    #[test]
    fn top_level_multiline_groups_before_routing_and_flushes_on_stop() {
        let (mut w, mut rx) = worker(
            r#"
            multiline { containers = { name = "java" }, start = [[^\d{4}-]] }
            route { to = "raw+tcp://127.0.0.1:1", format = function(m) return m.data:gsub("\n", "|") end }
            "#,
            &[],
        );
        let (java, other) = (container("java", 1), container("other", 2));
        run(
            &mut w,
            vec![
                line(&java, Source::Stdout, 0, "2024-01-01 boom"),
                line(&other, Source::Stdout, 1, "  not grouped"),
                line(&java, Source::Stdout, 2, "\tat A.b(A.java:1)"),
                line(&java, Source::Stderr, 3, "2024-01-01 err"),
                line(&java, Source::Stdout, 4, "2024-01-01 next"),
            ],
        );
        assert_eq!(received(&mut rx[0]), ["  not grouped\n", "2024-01-01 boom|\tat A.b(A.java:1)\n"]);
        run(&mut w, vec![Input::Stopped { id: java.id.clone(), epoch: 1 }]);
        let mut rest = received(&mut rx[0]);
        rest.sort();
        assert_eq!(rest, ["2024-01-01 err\n", "2024-01-01 next\n"]);
    }

    #[test]
    fn route_level_multiline_groups_only_that_route_and_honours_the_container_switch() {
        let (mut w, mut rx) = worker(
            r#"
            route { to = "multiline+raw+tcp://127.0.0.1:1" }
            route { to = "raw+tcp://127.0.0.1:2" }
            "#,
            &[("MULTILINE_SEPARATOR", "|")],
        );
        let c = container("app", 1);
        let mut off = (*container("off", 2)).clone();
        off.env.push(("LOGSPOUT_MULTILINE".into(), "FALSE".into()));
        let off = Arc::new(off);
        run(
            &mut w,
            vec![
                line(&c, Source::Stdout, 0, "Traceback"),
                line(&c, Source::Stdout, 1, "  at x"),
                line(&off, Source::Stdout, 2, "solo"),
                line(&off, Source::Stdout, 3, "  indented"),
                line(&c, Source::Stdout, 4, "next"),
            ],
        );
        let mut grouped = received(&mut rx[0]);
        grouped.sort();
        assert_eq!(grouped, ["  indented\n", "Traceback|  at x\n", "solo\n"]);
        assert_eq!(received(&mut rx[1]).len(), 5);
        // The rest of a group goes out when its first line is flush_after old.
        w.flush_expired(i64::MAX);
        w.process();
        assert_eq!(received(&mut rx[0]), ["next\n"]);
    }
}
