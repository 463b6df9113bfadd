//! The HTTP edge: `/health`, `/metrics`, the live stream ([`logs`]), the routes API
//! ([`routes`]) and the web viewer ([`viewer`]), as one axum router ([`app`]).
//!
//! `/health` answers 200 while the router works, and 503 with the reason while Docker is
//! unreachable, so an orchestrator's health check sees a real problem; its JSON body says what
//! an operator checks first (config generation, a refused reload, sinks that are down).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::health::Health;
use crate::stats::{RouteStats, Stats};

pub mod logs;
pub mod routes;
pub mod viewer;

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

/// 503 when Docker is unreachable (the router cannot read anything); otherwise 200. The body
/// is a short JSON object: Docker's state, the config generation in force, why the latest
/// reload was refused (if it was), and each route's sink, `"down"` once it has failed
/// `RETRY_COUNT` connection attempts in a row: the router works and keeps retrying, but an
/// operator should know.
async fn health(State(state): State<AppState>) -> Response {
    let generation = state.health.generation.load(Ordering::Relaxed);
    if let Some(why) = state.health.problem() {
        let body = serde_json::json!({ "status": "unhealthy", "reason": why, "generation": generation });
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    }
    let config_error = state
        .health
        .config_error()
        .map(|e| format!("config reload refused, generation {generation} stays in force: {e}"));
    let sinks: Vec<serde_json::Value> = state
        .stats
        .routes()
        .iter()
        .map(|r| {
            let failures = r.connect_failures.load(Ordering::Relaxed);
            let down = failures >= state.retry_count.max(1);
            let mut sink = serde_json::json!({
                "route": r.name,
                "state": if down { "down" } else if r.connected.load(Ordering::Relaxed) { "up" } else { "idle" },
            });
            if down {
                sink["problem"] = format!("sink down ({failures} failed connection attempts in a row)").into();
            }
            sink
        })
        .collect();
    let body = serde_json::json!({
        "status": "healthy",
        "docker": "connected",
        "generation": generation,
        "config_error": config_error,
        "sinks": sinks,
    });
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
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
        "luaspout_lines_repeated_by_docker_total",
        "counter",
        "Lines Docker sent a second time (older than the last line of their stream), skipped.",
        one(load(&s.lines_repeated_by_docker)),
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
    let bytes = per_route(&|r| vec![("", load(&r.bytes_sent))]);
    family(&mut out, "luaspout_route_bytes_sent_total", "counter", "Bytes written to the route's sink.", bytes);
    let connections = per_route(&|r| vec![("", load(&r.connections))]);
    family(
        &mut out,
        "luaspout_route_connections_total",
        "counter",
        "Connections made to the route's sink; more than one means reconnects.",
        connections,
    );
    let lua_seconds: Vec<(String, f64)> = routes
        .iter()
        .map(|r| (format!(r#"route="{}""#, prometheus_escape(&r.name)), load(&r.lua_ns) as f64 / 1e9))
        .collect();
    family(
        &mut out,
        "luaspout_route_lua_seconds_total",
        "counter",
        "Time in the route's Lua filter and format.",
        lua_seconds,
    );
    let generation_now = state.generations.borrow().clone();
    let depth: Vec<(String, u64)> = generation_now
        .routes
        .iter()
        .map(|r| (format!(r#"route="{}""#, prometheus_escape(&r.name)), r.sink.depth() as u64))
        .collect();
    family(&mut out, "luaspout_route_queue_batches", "gauge", "Batches of lines waiting in the route's queue.", depth);
    let queued_bytes: Vec<(String, u64)> = generation_now
        .routes
        .iter()
        .map(|r| (format!(r#"route="{}""#, prometheus_escape(&r.name)), r.sink.queued_bytes() as u64))
        .collect();
    family(
        &mut out,
        "luaspout_route_queue_bytes",
        "gauge",
        "Bytes of lines waiting in the route's queue.",
        queued_bytes,
    );
    let holding_back: Vec<(String, u64)> = routes
        .iter()
        .flat_map(|r| {
            let route = prometheus_escape(&r.name);
            r.held_back()
                .into_iter()
                .map(move |c| (format!(r#"route="{route}",container="{}""#, prometheus_escape(&c)), 1))
        })
        .collect();
    family(
        &mut out,
        "luaspout_route_holding_back",
        "gauge",
        "1 for each container whose reading the route is pausing now (its queue is full and on_full is block).",
        holding_back,
    );
    let paused: Vec<(String, f64)> = routes
        .iter()
        .map(|r| (format!(r#"route="{}""#, prometheus_escape(&r.name)), load(&r.paused_ns) as f64 / 1e9))
        .collect();
    family(
        &mut out,
        "luaspout_route_backpressure_seconds_total",
        "counter",
        "Time containers spent paused by the route's full queue, summed over containers.",
        paused,
    );
    let containers: Vec<(String, u64)> = s
        .containers()
        .into_iter()
        .map(|(name, n)| (format!(r#"container="{}""#, prometheus_escape(&name)), n))
        .collect();
    family(
        &mut out,
        "luaspout_container_lines_read_total",
        "counter",
        "Lines read per container name (the first 200 names; later ones count as _other).",
        containers,
    );
    family(
        &mut out,
        "luaspout_multiline_groups_total",
        "counter",
        "Multiline groups emitted that joined two lines or more.",
        one(load(&s.multiline_groups)),
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
fn family<V: std::fmt::Display>(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, V)>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_says() {
        assert_eq!(prometheus_escape(r#"raw+tcp://h:1?filter.name=a"b\c"#), r#"raw+tcp://h:1?filter.name=a\"b\\c"#);
        assert_eq!(prometheus_escape("two\nlines"), r"two\nlines");
        let mut out = String::new();
        family(&mut out, "m", "gauge", "Help.", vec![(r#"route="x""#.to_string(), 1.5)]);
        assert_eq!(out, "# HELP m Help.\n# TYPE m gauge\nm{route=\"x\"} 1.5\n");
    }
}
