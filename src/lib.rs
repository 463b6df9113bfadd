//! luaspout: a log router for Docker hosts, configured in Lua.
//!
//! # Layout
//!
//! The modules follow the path of a log line:
//!
//! ```text
//!   docker (watcher) ──spawns──▶ docker::pump (one per container)
//!                                   │ Message, bounded channel, sharded by container
//!                                   ▼
//!                              router (N worker threads, one Lua state each)
//!                                   │ match → Lua filter → Lua format / built-in format
//!                                   ▼ Frames, one bounded queue per route
//!                              transport (one writer task per route: udp, tcp, tls, http)
//! ```
//!
//! * [`docker`] lists running containers, follows Docker's event stream and keeps one pump per
//!   eligible container; [`docker::pump`] turns a container's log stream into [`message::Message`]s.
//! * [`config`] is the validated configuration as plain data; [`lua`] owns every Lua state: the
//!   sandbox and guard they all run under, the loader that turns `routes.lua` (or the embedded
//!   default in `lua/`) into a [`config::Config`], the router workers' runner and the HTTP
//!   batch thread. [`uri`] and [`glob`] are logspout's route URIs and Go globs.
//! * [`route`] is a route at run time (matcher, formatter, sink); [`router`] runs the workers:
//!   each takes a batch of messages, runs every route over it and hands encoded frames to the
//!   route's [`transport::Sink`].
//! * [`multiline`] joins stack traces into one message, per container stream, before routing
//!   (top-level `multiline{}` rules) or for one route (`multiline+…` URIs, `multiline = {…}`).
//! * [`format`](mod@format) renders raw and syslog payloads; [`transport`] writes them out, reconnecting with
//!   [`backoff`] when a sink is down. A full queue pauses the pumps of the containers its
//!   route takes (`on_full = "block"`), so a slow sink costs memory only up to its queue.
//! * [`delivery`] follows each line from its pump to every writer that takes it, and
//!   [`state`] persists, per container, the position up to which everything was delivered, so
//!   a restart resumes there.
//! * [`reload`] watches the config ([`config::watch`]) and publishes each config that validates
//!   as a new [`router::Generation`]; workers switch between two batches, unchanged sinks stay.
//! * [`logging`] is luaspout's own stderr, which never fails the router when it goes away.
//! * [`server`] serves the HTTP edge: `/health` (from [`health`]), `/metrics` (from [`stats`]),
//!   `/logs` and the web viewer (from [`tap`]), and the `/routes` API.
//! * [`authoring`] backs `luaspout try` and the `test{}` cases `luaspout check` runs, through
//!   [`router::dry_run`].
//!
//! Imports point down these layers, bottom up: {message, delivery, uri, glob, timefmt,
//! settings, stats, health, backoff} → {format, multiline, tap, state} → config → lua →
//! transport → route → router → {docker, reload, authoring, server} → lib; `tests/layout.rs`
//! checks that no import circle comes back.

pub mod authoring;
pub mod backoff;
pub mod config;
pub mod delivery;
pub mod docker;
pub mod format;
pub mod glob;
pub mod health;
pub mod logging;
pub mod lua;
pub mod message;
pub mod multiline;
pub mod reload;
pub mod route;
pub mod router;
pub mod server;
pub mod settings;
pub mod state;
pub mod stats;
pub mod tap;
pub mod timefmt;
pub mod transport;
pub mod uri;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Runs the router until `shutdown` is cancelled.
///
/// Everything that can fail on bad input (the config, route URIs, templates) fails here, before
/// any container is read; failures after start (Docker gone, sink down) are retried forever and
/// shown on `/health`.
pub async fn run(
    settings: settings::Settings,
    location: config::ConfigLocation,
    args: Vec<String>,
    config: config::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    transport::tls::check_env_files(&settings.tls).context("error with TLSConfig")?;
    let access = Arc::new(server::access::Access::from_env(&settings.env)?);
    let settings = Arc::new(settings);
    let stats = Arc::new(stats::Stats::new());
    let cursors = state::CursorStore::open(&settings, stats.clone(), shutdown.clone())?;
    tokio::spawn(enforce_shutdown_deadline(shutdown.clone(), cursors.clone()));
    let health = Arc::new(health::Health::default());

    // logspout's ROUTESPATH: routes created through the API, if the directory exists.
    let routes_dir = settings.env.get("ROUTESPATH").unwrap_or_else(|| "/mnt/routes".into());
    let api = Arc::new(config::api::ApiRoutes::load(std::path::Path::new(&routes_dir)));
    let config = config.with_api_routes(&api.list()).map_err(|e| anyhow::anyhow!("{routes_dir}: {e}"))?;
    let (api_tx, api_changes) = tokio::sync::mpsc::channel(8);
    print_banner(&config);
    let mut sinks = transport::SinkSet::new(stats.clone(), &settings, shutdown.clone());
    let first = reload::build(1, config, &settings, &mut sinks, &stats)?;
    health.generation.store(1, std::sync::atomic::Ordering::Relaxed);
    let (generations, generation_rx) = tokio::sync::watch::channel(Arc::new(first));
    let generation_view = generation_rx.clone();
    let pump_generations = generation_rx.clone();
    let tap = Arc::new(tap::Tap::default());
    let inboxes = router::start_workers(&settings, generation_rx, stats.clone(), tap.clone(), &health)?;
    let reloader = reload::Reloader {
        location,
        args,
        settings: settings.clone(),
        stats: stats.clone(),
        health: health.clone(),
        sinks,
        generations,
        api: api.clone(),
        api_changes,
    };
    let reload_task = tokio::spawn(reloader.run(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
    if let Some(warning) = listener.local_addr().ok().and_then(|a| access.exposure_warning(a)) {
        tracing::warn!("{warning}");
    }
    let app = server::app(server::AppState {
        health: health.clone(),
        stats: stats.clone(),
        settings: settings.clone(),
        tap: tap.clone(),
        retry_count: settings.retry_count,
        api,
        api_changes: api_tx,
        generations: generation_view,
        logs_clients: Arc::new(tokio::sync::Semaphore::new(access.logs_clients)),
        access,
    });
    let http_task = tokio::spawn(server::listen::serve(listener, app, shutdown.clone()));

    let cursor_task = tokio::spawn(cursors.clone().run(shutdown.clone()));
    let wiring = docker::Wiring { inboxes, generations: pump_generations, cursors: cursors.clone() };
    docker::watch(settings, wiring, stats, health, tap, shutdown.clone()).await;
    // The pumps are done and the workers' inboxes closed: the workers finish their last batch
    // (multiline groups included) and drop their sinks, and the writers drain their queues to
    // the sinks that are up and stop; then the cursors of what was delivered are saved.
    let writers = reload_task.await.context("config reload task")?.into_writers();
    let drain = async {
        for w in writers {
            let _ = w.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
        tracing::warn!(
            "some sinks did not drain within {SHUTDOWN_DRAIN:?}; their cursors stay before the lines they held, which are read again at the next start"
        );
    }
    let _ = cursor_task.await;
    let last = cursors.clone();
    let _ = tokio::task::spawn_blocking(move || last.save()).await;
    http_task.await.context("http server task")?;
    Ok(())
}

/// How long shutdown waits for sinks to write what is queued.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a graceful stop may take in all, from the signal: under `docker stop`'s 10 s, so
/// luaspout exits on its own (cursors saved) before it is killed.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// Ends the process [`SHUTDOWN_DEADLINE`] after `shutdown`, if the graceful stop has not ended
/// it by then: a router thread stuck in one Lua call (a C function a budget cannot stop) or a
/// sink that will not let go must not keep luaspout alive. What was delivered is saved first.
async fn enforce_shutdown_deadline(shutdown: CancellationToken, cursors: Arc<state::CursorStore>) {
    shutdown.cancelled().await;
    let spawned = std::thread::Builder::new().name("shutdown-deadline".into()).spawn(move || {
        std::thread::sleep(SHUTDOWN_DEADLINE);
        tracing::error!(
            "shutdown did not finish within {SHUTDOWN_DEADLINE:?} (a Lua call or a sink that does not return); saving the cursors and exiting"
        );
        cursors.save();
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the shutdown deadline");
    }
}

/// Lists the routes at startup, as logspout's banner does, so an operator sees at once what
/// will be sent where.
fn print_banner(config: &config::Config) {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config.source_name, "luaspout starting");
    if config.routes.is_empty() {
        tracing::info!("routes: none");
    }
    for spec in &config.routes {
        tracing::info!(route = %spec.name, to = %spec.uri.redacted(), "route");
    }
}
