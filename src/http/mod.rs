//! The HTTP edge: `/health` and `/metrics` (the streaming `/logs` and the `/routes` API build
//! on this router).
//!
//! `/health` answers 200 `Healthy!` (logspout's body) while the router works, and 503 with the
//! reason while Docker is unreachable, so an orchestrator's health check sees a real problem.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};

use crate::stats::{RouteStats, Stats};

pub mod logs;
pub mod routes;
pub mod viewer;

/// What `/health` reports, written by the Docker watcher.
#[derive(Debug, Default)]
pub struct Health {
    docker_error: Mutex<Option<String>>,
    docker_up: AtomicBool,
    /// Why the latest config reload was refused, while no good config has replaced it.
    config_error: Mutex<Option<String>>,
    /// The number of the config in force.
    pub generation: AtomicU64,
}

impl Health {
    /// Records the Docker connection's state: `None` when connected.
    pub fn set_docker_error(&self, error: Option<String>) {
        if error.is_none() {
            self.docker_up.store(true, Ordering::Relaxed);
        }
        *self.docker_error.lock().expect("health lock") = error;
    }

    /// Records the outcome of a reload: `None` when the new config was accepted.
    pub fn set_config_error(&self, error: Option<String>) {
        *self.config_error.lock().expect("health lock") = error;
    }

    /// Whether Docker has been reachable at least once.
    pub fn docker_was_up(&self) -> bool {
        self.docker_up.load(Ordering::Relaxed)
    }

    /// The reason the router is not healthy, if any.
    pub fn problem(&self) -> Option<String> {
        if !self.docker_was_up() && self.docker_error.lock().expect("health lock").is_none() {
            return Some("connecting to docker".into());
        }
        self.docker_error.lock().expect("health lock").clone()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub stats: Arc<Stats>,
    pub settings: Arc<crate::settings::Settings>,
    /// What `/logs` streams.
    pub tap: Arc<crate::tap::Tap>,
    /// `RETRY_COUNT`: failed connection attempts after which a sink is reported down.
    pub retry_count: u64,
    /// The `/routes` API's routes, and where changes to them go.
    pub api: Arc<crate::config::api::ApiRoutes>,
    pub api_changes: tokio::sync::mpsc::Sender<crate::reload::ApiChange>,
    /// The config in force, for listing its routes.
    pub generations: tokio::sync::watch::Receiver<Arc<crate::router::Generation>>,
}

/// The HTTP application; a function so tests can serve it on any listener.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(viewer::page))
        .route("/logs", get(logs::all))
        .route("/logs/{spec}", get(logs::filtered))
        .route("/containers", get(logs::containers))
        .route("/routes", get(routes::list).post(routes::create))
        .route("/routes/{id}", get(routes::show).delete(routes::delete))
        .route("/health", any(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 503 when Docker is unreachable (the router cannot read anything); otherwise 200, with a
/// line per route whose sink has failed `RETRY_COUNT` connection attempts in a row: the router
/// works and keeps retrying, but an operator should know.
async fn health(State(state): State<AppState>) -> (StatusCode, String) {
    let mut body = match state.health.problem() {
        None => "Healthy!\n".to_string(),
        Some(why) => return (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n")),
    };
    if let Some(e) = state.health.config_error.lock().expect("health lock").as_ref() {
        let generation = state.health.generation.load(Ordering::Relaxed);
        let _ = writeln!(body, "config reload refused, generation {generation} stays in force: {e}");
    }
    for r in state.stats.routes() {
        let failures = r.connect_failures.load(Ordering::Relaxed);
        if failures >= state.retry_count.max(1) {
            let _ = writeln!(body, "route {:?}: sink down ({failures} failed connection attempts in a row)", r.name);
        }
    }
    (StatusCode::OK, body)
}

/// Prometheus text format: every counter of [`Stats`], so drops are visible, not just logged.
async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let s = &state.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let docker_up = u64::from(state.health.problem().is_none());
    family(&mut out, "luaspout_docker_up", "gauge", "Whether the Docker daemon is reachable.", one(docker_up));
    family(&mut out, "luaspout_lines_read_total", "counter", "Lines read from Docker.", one(load(&s.lines_in)));
    family(
        &mut out,
        "luaspout_lines_split_total",
        "counter",
        "Lines longer than the line cap, emitted in pieces.",
        one(load(&s.lines_split)),
    );
    family(
        &mut out,
        "luaspout_multiline_caps_total",
        "counter",
        "Multiline groups cut at their line or byte cap.",
        one(load(&s.multiline_caps)),
    );
    family(
        &mut out,
        "luaspout_logs_viewers",
        "gauge",
        "Clients following /logs or the web viewer.",
        one(state.tap.viewers() as u64),
    );
    family(
        &mut out,
        "luaspout_logs_skipped_total",
        "counter",
        "Lines /logs clients missed because they read too slowly.",
        one(load(&state.tap.skipped)),
    );
    let generation = state.health.generation.load(Ordering::Relaxed);
    family(&mut out, "luaspout_config_generation", "gauge", "The number of the config in force.", one(generation));
    family(
        &mut out,
        "luaspout_config_reloads_total",
        "counter",
        "Config reloads, accepted or refused.",
        vec![(r#"result="ok""#.into(), load(&s.reloads_ok)), (r#"result="refused""#.into(), load(&s.reloads_failed))],
    );
    family(
        &mut out,
        "luaspout_lua_memory_resets_total",
        "counter",
        "Lua states rebuilt after outgrowing LUASPOUT_LUA_MEMORY_MB.",
        one(load(&s.lua_memory_resets)),
    );

    let routes = s.routes();
    let per_route = |f: &dyn Fn(&RouteStats) -> Vec<(&'static str, u64)>| -> Vec<(String, u64)> {
        routes
            .iter()
            .flat_map(|r| {
                let route = prometheus_escape(&r.name);
                f(r).into_iter().map(move |(extra, v)| (format!(r#"route="{route}"{extra}"#), v))
            })
            .collect()
    };
    let lines = per_route(&|r| {
        vec![
            (r#",outcome="matched""#, load(&r.matched)),
            (r#",outcome="filtered""#, load(&r.filtered)),
            (r#",outcome="queued""#, load(&r.queued)),
            (r#",outcome="sent""#, load(&r.sent)),
            (r#",outcome="dropped_queue_full""#, load(&r.dropped_queue_full)),
            (r#",outcome="dropped_write""#, load(&r.dropped_write)),
            (r#",outcome="dropped_rejected""#, load(&r.dropped_rejected)),
        ]
    });
    family(&mut out, "luaspout_route_lines_total", "counter", "Lines per route and outcome.", lines);
    let lua_errors = per_route(&|r| vec![("", load(&r.lua_errors))]);
    family(
        &mut out,
        "luaspout_route_lua_errors_total",
        "counter",
        "Errors and budget overruns in a route's Lua functions.",
        lua_errors,
    );
    let format_errors = per_route(&|r| vec![("", load(&r.format_errors))]);
    family(
        &mut out,
        "luaspout_route_format_errors_total",
        "counter",
        "Template execution errors in a route's RAW_FORMAT/SYSLOG_* rendering.",
        format_errors,
    );
    let batches = per_route(&|r| vec![("", load(&r.batches_sent))]);
    family(&mut out, "luaspout_route_http_batches_total", "counter", "HTTP batches acknowledged with a 2xx.", batches);
    let retries = per_route(&|r| vec![("", load(&r.retries))]);
    family(
        &mut out,
        "luaspout_route_retries_total",
        "counter",
        "HTTP requests tried again after a connection error, timeout, 429 or 5xx.",
        retries,
    );
    let tls_failures = per_route(&|r| vec![("", load(&r.tls_failures))]);
    family(
        &mut out,
        "luaspout_route_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed (untrusted or mismatched certificate, missing client certificate).",
        tls_failures,
    );
    let connected = per_route(&|r| vec![("", u64::from(r.connected.load(Ordering::Relaxed)))]);
    family(&mut out, "luaspout_route_connected", "gauge", "Whether the route's sink is connected.", connected);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// A sample without labels.
fn one(value: u64) -> Vec<(String, u64)> {
    vec![(String::new(), value)]
}

/// Writes one metric family: its HELP and TYPE lines, then one sample per `(labels, value)`
/// (labels already rendered, without braces; empty for none).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Escapes a label value for the Prometheus text format.
fn prometheus_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
