//! Sinks: one bounded queue and one writer task per route, so a slow or dead destination only
//! ever fills its own queue and never stalls another route or the Docker reads.
//!
//! Router workers hand a route a batch of encoded lines ([`Frames`]) with [`Sink::try_send`];
//! a full queue gives the batch back and the worker counts it as dropped. The writers
//! ([`tcp`] for TCP and TLS, [`udp`], [`http`](mod@http) for HTTP(S) batches) connect lazily,
//! reconnect with backoff forever and count every line they send or lose.

pub mod http;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::route::uri::Transport;
use crate::settings::Settings;
use crate::stats::Stats;

/// Batches a route's queue holds before it counts as full (each batch holds up to a router
/// batch of lines, 256): enough to ride out a reconnect of a few seconds at high rates while
/// keeping memory bounded.
pub const QUEUE_BATCHES: usize = 256;

/// First and longest pause between a writer's connection attempts (TCP connect, UDP resolve):
/// quick to recover from a blip, never more than a few seconds behind a sink that came back.
pub const RECONNECT_MIN: std::time::Duration = std::time::Duration::from_millis(100);
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Encoded lines for one sink, in order: one buffer, with the end offset of each line so
/// datagram transports can send them one by one.
#[derive(Debug, Default)]
pub struct Frames {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
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
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full: the sink is slower than its input, or down.
    Full,
    /// The writer has stopped (shutdown).
    Closed,
}

/// The sending end of a route's queue.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Frames>,
}

impl Sink {
    /// Batches waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a batch without waiting.
    pub fn try_send(&self, frames: Frames) -> Result<(), (QueueError, Frames)> {
        self.tx.try_send(frames).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => (QueueError::Full, f),
            mpsc::error::TrySendError::Closed(f) => (QueueError::Closed, f),
        })
    }
}

/// A route's queue: the sink the router writes to, and the end its writer reads.
pub fn queue(capacity: usize) -> (Sink, mpsc::Receiver<Frames>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Sink { tx }, rx)
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
                let lua =
                    http::body::LuaBatch::start(config.clone(), index, spec.uri.adapter, settings.lua_memory_limit)?;
                http::body::BodyBuilder::Lua(lua)
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
/// queued and close once the last router worker has moved to the new config.
pub struct SinkSet {
    live: Vec<LiveSink>,
    retired: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
}

struct LiveSink {
    /// The route URI, canonical form.
    uri: String,
    sink: Sink,
    writer: JoinHandle<()>,
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
    pub fn new(stats: Arc<Stats>, shutdown: CancellationToken) -> SinkSet {
        SinkSet { live: Vec::new(), retired: Vec::new(), stats, shutdown }
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
                    let live = previous.remove(i);
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
                    let (sink, rx) = queue(QUEUE_BATCHES);
                    let address = spec.uri.address.clone();
                    let rs = self.stats.route(&spec.name);
                    let shutdown = self.shutdown.clone();
                    let (writer, update) = match plan {
                        SinkPlan::Tcp => {
                            (tokio::spawn(tcp::run(address, tcp::Wrap::Plain, rx, rs, shutdown)), Update::None)
                        }
                        SinkPlan::Tls(target) => {
                            let (tx, targets) = watch::channel(target);
                            (
                                tokio::spawn(tcp::run(address, tcp::Wrap::Tls(targets), rx, rs, shutdown)),
                                Update::Tls(tx),
                            )
                        }
                        SinkPlan::Udp => (tokio::spawn(udp::run(address, rx, rs, shutdown)), Update::None),
                        SinkPlan::Http(plan) => {
                            let (tx, plans) = watch::channel(plan);
                            (tokio::spawn(http::run(plans, rx, rs, shutdown)), Update::Http(tx))
                        }
                    };
                    LiveSink { uri, sink, writer, update }
                }
            };
            sinks.push(live.sink.clone());
            self.live.push(live);
        }
        self.retired.extend(previous.into_iter().map(|l| l.writer));
        sinks
    }

    /// Gives up the set's own handles on the queues and returns the writers to wait for: each
    /// ends once the router workers have let go of its queue and it has written what was queued.
    pub fn into_writers(self) -> Vec<JoinHandle<()>> {
        self.live.into_iter().map(|l| l.writer).chain(self.retired).collect()
    }
}
