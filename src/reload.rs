//! Live reload of the config: when `routes.lua` (or a file it `require`s) changes, build the
//! new config on the side and publish it only if it loads and validates completely.
//!
//! A good config becomes the next [`Generation`]: router workers switch to it between two
//! batches, routes whose URI is unchanged keep their sink (queue, writer, connection), removed
//! routes drain and close, new routes start; Docker streams are not touched. A bad config is
//! refused: the running one stays in force, the error (`file:line: message`) is logged once
//! and shown on `/health` and in `/metrics` until a good config replaces it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::api::ApiRoutes;
use crate::config::watch::{ConfigWatch, next_change};
use crate::config::{Config, ConfigLocation};
use crate::health::Health;
use crate::route;
use crate::router::Generation;
use crate::settings::Settings;
use crate::stats::{self, Stats};
use crate::transport::SinkSet;
use crate::uri::RouteUri;

/// The longest a config may take to load. Lua code is stopped by its instruction budget long
/// before; this bounds work inside one C function, which no budget can interrupt (the loading
/// thread is then left to finish on its own, and the reload is refused).
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds generation `number` from a validated config: its sinks (reusing those of unchanged
/// URIs in `sinks`) and its routes.
pub fn build(
    number: u64,
    config: Config,
    settings: &Settings,
    sinks: &mut SinkSet,
    stats: &Stats,
) -> anyhow::Result<Generation> {
    // Everything that can fail does so before `sinks` changes.
    let formatters = route::formatters(&config, settings)?;
    let plans = crate::transport::plans(&config, settings)?;
    let route_sinks = sinks.reconcile(&config, plans);
    let routes = route::build_routes(&config, formatters, &route_sinks, stats);
    stats.retain_routes(config.routes.iter().map(|r| r.name.as_str()));
    Ok(Generation { number, config, routes })
}

/// What the reload loop needs.
pub struct Reloader {
    pub location: ConfigLocation,
    pub args: Vec<String>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    pub health: Arc<Health>,
    pub sinks: SinkSet,
    pub generations: watch::Sender<Arc<Generation>>,
    /// The `/routes` API's routes, added to every config built.
    pub api: Arc<ApiRoutes>,
    pub api_changes: mpsc::Receiver<ApiChange>,
}

/// A change the `/routes` API asks for: the complete new list of API routes, and where to say
/// whether a config with them was built and is now in force (or why not).
pub struct ApiChange {
    pub routes: Vec<(String, RouteUri)>,
    pub reply: oneshot::Sender<Result<(), String>>,
}

impl Reloader {
    /// Watches the config's files and reloads on change until `shutdown`; then hands back the
    /// sinks so their writers can be drained.
    pub async fn run(mut self, shutdown: CancellationToken) -> SinkSet {
        let (changed_tx, mut changed) = mpsc::unbounded_channel();
        // The embedded default never changes: only API changes come.
        let watches_files = matches!(self.location, ConfigLocation::File(_));
        let mut watch = if watches_files { self.watch(&changed_tx, None) } else { None };
        let mut last_error: Option<String> = None;
        // SIGHUP reloads the config, as daemons do (main installs the handler first, so a
        // SIGHUP never ends the process).
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; the config reloads only when its files change");
                None
            }
        };
        loop {
            tokio::select! {
                change = next_change(&mut changed), if watches_files => if change.is_none() { break },
                Some(()) = recv_signal(&mut hangups) => {
                    info!("SIGHUP: reloading the config");
                    if !watches_files {
                        info!("the config is the embedded default; nothing to reload");
                        continue;
                    }
                }
                Some(change) = self.api_changes.recv() => {
                    let result = self.apply_api(change.routes);
                    let _ = change.reply.send(result);
                    continue;
                }
                _ = shutdown.cancelled() => break,
            }
            debug!("config files changed; loading");
            let current = self.generations.borrow().clone();
            match self.reload(&current).await {
                // The files are back to the running config (after a refused edit, say).
                Ok(None) => {
                    self.health.set_config_error(None);
                    last_error = None;
                }
                Ok(Some(next)) => {
                    info!(generation = next.number, routes = next.routes.len(), "config reloaded");
                    self.health.set_config_error(None);
                    self.health.generation.store(next.number, Ordering::Relaxed);
                    stats::add(&self.stats.reloads_ok, 1);
                    last_error = None;
                    watch = self.watch(&changed_tx, watch.take().filter(|w| w.covers(&next.config.files)));
                    let _ = self.generations.send(next);
                }
                Err(e) => {
                    stats::add(&self.stats.reloads_failed, 1);
                    if last_error.as_ref() != Some(&e) {
                        error!(error = %e, "config refused; the running config stays in force");
                    }
                    self.health.set_config_error(Some(e.clone()));
                    last_error = Some(e);
                }
            }
        }
        self.sinks
    }

    /// Builds the running config with a new list of API routes and puts it in force.
    fn apply_api(&mut self, routes: Vec<(String, RouteUri)>) -> Result<(), String> {
        let current = self.generations.borrow().clone();
        let config = current.config.clone().with_api_routes(&routes)?;
        let next = build(current.number + 1, config, &self.settings, &mut self.sinks, &self.stats)
            .map_err(|e| format!("{e:#}"))?;
        info!(generation = next.number, routes = next.routes.len(), "routes changed through the API");
        self.api.set(routes);
        self.health.generation.store(next.number, Ordering::Relaxed);
        let _ = self.generations.send(Arc::new(next));
        Ok(())
    }

    /// Loads the config again: `None` if its files did not really change.
    async fn reload(&mut self, current: &Generation) -> Result<Option<Arc<Generation>>, String> {
        let (location, args, env) = (self.location.clone(), self.args.clone(), self.settings.env.clone());
        let load = tokio::task::spawn_blocking(move || crate::lua::load(&location, args, env));
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, load)
            .await
            .map_err(|_| {
                format!(
                    "the config did not finish loading within {LOAD_TIMEOUT:?} (a Lua pattern or string function on a huge string at the top level?)"
                )
            })?
            .map_err(|e| format!("config loader failed: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
        if loaded.fingerprint == current.config.fingerprint {
            return Ok(None);
        }
        let loaded = loaded.with_api_routes(&self.api.list())?;
        let next = build(current.number + 1, loaded, &self.settings, &mut self.sinks, &self.stats)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Some(Arc::new(next)))
    }

    /// A watch over the live config's files, reusing `existing` if it still covers them.
    fn watch(&self, changed: &mpsc::UnboundedSender<()>, existing: Option<ConfigWatch>) -> Option<ConfigWatch> {
        if existing.is_some() {
            return existing;
        }
        let files = self.generations.borrow().config.files.clone();
        match ConfigWatch::new(&files, changed.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config for changes; it will not be reloaded");
                None
            }
        }
    }
}

/// The next signal of `signals`, or never if there is no listener.
async fn recv_signal(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
