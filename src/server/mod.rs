//! The HTTP edge: `/health`, `/metrics`, the live stream ([`logs`]), the routes API
//! ([`routes`]) and the web viewer ([`viewer`]), as one axum router ([`app`]) behind one access
//! rule ([`access`]), served with header timeouts and a connection cap ([`listen`]).
//!
//! `/health` answers 200 while the router works, and 503 with the reason while Docker is
//! unreachable, so an orchestrator's health check sees a real problem; its JSON body says what
//! an operator checks first (config generation, a refused reload, sinks that are down).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::health::Health;
use crate::stats::Stats;

pub mod access;
pub mod listen;
pub mod logs;
pub mod metrics;
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
    /// Who may call the API.
    pub access: Arc<access::Access>,
    /// One permit per connected `/logs` client, [`access::Access::logs_clients`] in all.
    pub logs_clients: Arc<tokio::sync::Semaphore>,
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
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(state.access.clone(), access::guard))
        .with_state(state)
}

/// 503 when Docker is unreachable (the router cannot read anything); otherwise 200. The body
/// is a short JSON object: Docker's state, the config generation in force, why the latest
/// reload was refused (if it was), each route's sink, `"down"` once it has failed
/// `RETRY_COUNT` connection attempts in a row, and the Lua calls that have run past
/// `LUASPOUT_LUA_WATCHDOG`: the router works and keeps retrying, but an operator should know.
/// A stuck Lua call, or a router worker that could not take up the config in force and stays on
/// an older one (`workers_behind`), makes the status `"degraded"` (still 200: restarting would
/// read the same line again).
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
            // A sink that answers but takes nothing (an HTTP 401, a peer that stopped reading)
            // is down at once; one that cannot be reached after RETRY_COUNT attempts.
            let answered = r.problem();
            let down = answered.is_some() || failures >= state.retry_count.max(1);
            let mut sink = serde_json::json!({
                "route": r.label(),
                "state": if down { "down" } else if r.connected.load(Ordering::Relaxed) { "up" } else { "idle" },
            });
            if let Some(problem) = answered {
                sink["problem"] = format!("sink down: {problem}").into();
            } else if down {
                sink["problem"] = format!("sink down ({failures} failed connection attempts in a row)").into();
            }
            sink
        })
        .collect();
    let stuck: Vec<serde_json::Value> = state
        .health
        .lua_busy()
        .into_iter()
        .filter(|b| b.elapsed >= state.settings.lua_watchdog)
        .map(|b| {
            serde_json::json!({
                "thread": b.thread,
                "route": b.route,
                "busy_seconds": b.elapsed.as_secs_f64(),
                "problem": format!("one Lua call of route {:?} has been running for {:.1} s (work inside a C function such as a Lua pattern on a long line cannot be stopped by the instruction budget; spout.regex runs in linear time)", b.route, b.elapsed.as_secs_f64()),
            })
        })
        .collect();
    let behind: Vec<serde_json::Value> = state
        .health
        .behind()
        .into_iter()
        .map(|(thread, runs, why)| serde_json::json!({ "thread": thread, "generation": runs, "problem": why }))
        .collect();
    let body = serde_json::json!({
        "status": if stuck.is_empty() && behind.is_empty() { "healthy" } else { "degraded" },
        "workers_behind": behind,
        "docker": "connected",
        "generation": generation,
        "config_error": config_error,
        "sinks": sinks,
        "lua_stuck": stuck,
    });
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}
