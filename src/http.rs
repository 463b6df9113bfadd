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

use crate::stats::Stats;

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
    /// `RETRY_COUNT`: failed connection attempts after which a sink is reported down.
    pub retry_count: u64,
}

/// The HTTP application; a function so tests can serve it on any listener.
pub fn app(state: AppState) -> Router {
    Router::new().route("/health", any(health)).route("/metrics", get(metrics)).with_state(state)
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
    let mut out = String::new();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP luaspout_docker_up Whether the Docker daemon is reachable.\n# TYPE luaspout_docker_up gauge"
    );
    let _ = writeln!(out, "luaspout_docker_up {}", u8::from(state.health.problem().is_none()));
    let _ = writeln!(
        out,
        "# HELP luaspout_lines_read_total Lines read from Docker.\n# TYPE luaspout_lines_read_total counter"
    );
    let _ = writeln!(out, "luaspout_lines_read_total {}", load(&s.lines_in));
    let _ = writeln!(
        out,
        "# HELP luaspout_config_generation The number of the config in force.\n# TYPE luaspout_config_generation gauge"
    );
    let _ = writeln!(out, "luaspout_config_generation {}", state.health.generation.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP luaspout_lua_memory_resets_total Lua states rebuilt after outgrowing LUASPOUT_LUA_MEMORY_MB.\n# TYPE luaspout_lua_memory_resets_total counter"
    );
    let _ = writeln!(out, "luaspout_lua_memory_resets_total {}", load(&s.lua_memory_resets));
    let _ = writeln!(
        out,
        "# HELP luaspout_config_reloads_total Config reloads, accepted or refused.\n# TYPE luaspout_config_reloads_total counter"
    );
    let _ = writeln!(out, "luaspout_config_reloads_total{{result=\"ok\"}} {}", load(&s.reloads_ok));
    let _ = writeln!(out, "luaspout_config_reloads_total{{result=\"refused\"}} {}", load(&s.reloads_failed));
    let _ = writeln!(
        out,
        "# HELP luaspout_lines_split_total Lines longer than the line cap, emitted in pieces.\n# TYPE luaspout_lines_split_total counter"
    );
    let _ = writeln!(out, "luaspout_lines_split_total {}", load(&s.lines_split));
    let _ = writeln!(
        out,
        "# HELP luaspout_multiline_caps_total Multiline groups cut at their line or byte cap.\n# TYPE luaspout_multiline_caps_total counter"
    );
    let _ = writeln!(out, "luaspout_multiline_caps_total {}", load(&s.multiline_caps));
    let _ = writeln!(
        out,
        "# HELP luaspout_route_lines_total Lines per route and outcome.\n# TYPE luaspout_route_lines_total counter"
    );
    let routes = s.routes();
    for r in &routes {
        let name = prometheus_escape(&r.name);
        for (outcome, counter) in [
            ("matched", &r.matched),
            ("filtered", &r.filtered),
            ("queued", &r.queued),
            ("sent", &r.sent),
            ("dropped_queue_full", &r.dropped_queue_full),
            ("dropped_write", &r.dropped_write),
        ] {
            let _ =
                writeln!(out, "luaspout_route_lines_total{{route=\"{name}\",outcome=\"{outcome}\"}} {}", load(counter));
        }
    }
    let _ = writeln!(
        out,
        "# HELP luaspout_route_lua_errors_total Errors and budget overruns in a route's Lua functions.\n# TYPE luaspout_route_lua_errors_total counter"
    );
    for r in &routes {
        let _ = writeln!(
            out,
            "luaspout_route_lua_errors_total{{route=\"{}\"}} {}",
            prometheus_escape(&r.name),
            load(&r.lua_errors)
        );
    }
    let _ = writeln!(
        out,
        "# HELP luaspout_route_format_errors_total Template execution errors in a route's RAW_FORMAT/SYSLOG_* rendering.\n# TYPE luaspout_route_format_errors_total counter"
    );
    for r in &routes {
        let _ = writeln!(
            out,
            "luaspout_route_format_errors_total{{route=\"{}\"}} {}",
            prometheus_escape(&r.name),
            load(&r.format_errors)
        );
    }
    let _ = writeln!(
        out,
        "# HELP luaspout_route_connected Whether the route's sink is connected.\n# TYPE luaspout_route_connected gauge"
    );
    for r in &routes {
        let _ = writeln!(
            out,
            "luaspout_route_connected{{route=\"{}\"}} {}",
            prometheus_escape(&r.name),
            u8::from(r.connected.load(Ordering::Relaxed))
        );
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Escapes a label value for the Prometheus text format.
fn prometheus_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
