//! logspout's routes API: `GET /routes`, `GET /routes/{id}`, `POST /routes`, `DELETE
//! /routes/{id}`, with its JSON shapes and status codes. A created route is a route URI like
//! any other (same filters, formats and transports), in force once a config with it is built,
//! and persisted in `ROUTESPATH`. Routes of the config file are listed read-only.
//!
//! This API lets a caller send every log line anywhere. [`super::access`] decides who may call
//! it; here, `POST` also needs `Content-Type: application/json` (what no cross-site form or
//! `no-cors` fetch can send), the body is bounded in size and time, the route is validated
//! whole before anything is dialed, and at most [`MAX_API_ROUTES`] exist. Listings mask the
//! routes' secrets ([`crate::uri::redact`]).

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::AppState;
use crate::config::Origin;
use crate::config::api::{RouteJson, valid_id};
use crate::reload::ApiChange;
use crate::uri::{RouteUri, Transport};

/// How long `POST` waits to reach the destination (logspout dials at once and refuses a route
/// it cannot reach).
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Most routes the API may hold: each has a writer task and a queue of up to
/// `LUASPOUT_QUEUE_BYTES`, so an unbounded number would be a way to exhaust memory.
pub const MAX_API_ROUTES: usize = 64;

/// Largest `POST /routes` body: a route is a few hundred bytes of JSON.
const MAX_BODY: usize = 64 << 10;

/// How long a client may take to send the body once its header is in.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every route: the API's, then the config file's (read-only).
fn all_routes(state: &AppState) -> Vec<RouteJson> {
    let generation = state.generations.borrow().clone();
    let mut out: Vec<RouteJson> =
        state.api.list().iter().map(|(id, uri)| RouteJson::from_uri(id, uri).redacted()).collect();
    for spec in generation.config.routes.iter().filter(|r| r.origin == Origin::Lua) {
        out.push(RouteJson { readonly: true, ..RouteJson::from_uri(&spec.name, &spec.uri).redacted() });
    }
    out
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body)
        .into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n".into())
}

/// `GET /routes`.
pub async fn list(State(state): State<AppState>) -> Response {
    json(StatusCode::OK, &all_routes(&state))
}

/// `GET /routes/{id}`.
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match all_routes(&state).into_iter().find(|r| r.id == id) {
        Some(r) => json(StatusCode::OK, &r),
        None => not_found(),
    }
}

/// `POST /routes`: 201 and the route with its ID, or 400 with why, changing nothing.
pub async fn create(State(state): State<AppState>, request: Request) -> Response {
    let json_body = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type: POST /routes needs Content-Type: application/json (curl -H 'Content-Type: application/json')\n"
                .into(),
        );
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(request.into_body(), MAX_BODY)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("Bad request: the body is over {MAX_BODY} bytes\n"));
        }
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, format!("Bad request: no body within {BODY_TIMEOUT:?}\n")),
    };
    let mut route = match RouteJson::from_body(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Bad request: {e}\n")),
    };
    if route.id.is_empty() {
        route.id = new_id();
    }
    if !valid_id(&route.id) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Bad route: id {:?}: use 1 to 64 of A-Z a-z 0-9 _ -\n", route.id),
        );
    }
    let uri = match route.to_uri() {
        Ok(u) => u,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Bad route: {e}\n")),
    };
    if let Err(e) = crate::config::from_uri::uri_route(route.id.clone(), uri.clone(), &state.settings.env) {
        return text(StatusCode::BAD_REQUEST, format!("Bad route: {e}\n"));
    }
    if let Err(e) = dial(&uri).await {
        tracing::info!(route = %route.id, to = %uri.redacted(), error = %e, "POST /routes: destination not reachable; route refused");
        return text(StatusCode::BAD_REQUEST, "Bad route: cannot reach the destination\n".into());
    }
    let _edit = state.api.edit.lock().await;
    let mut routes = state.api.list();
    routes.retain(|(id, _)| id != &route.id);
    if routes.len() >= MAX_API_ROUTES {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Bad route: the API already holds {MAX_API_ROUTES} routes; delete one first\n"),
        );
    }
    routes.push((route.id.clone(), uri.clone()));
    if let Err(e) = change(&state, routes).await {
        return text(StatusCode::BAD_REQUEST, format!("Bad route: {e}\n"));
    }
    if let Err(e) = state.api.persist(&route.id, &uri) {
        tracing::warn!(route = %route.id, error = %e, "cannot persist the route in ROUTESPATH; it is in force until restart");
    }
    json(StatusCode::CREATED, &RouteJson::from_uri(&route.id, &uri).redacted())
}

/// `DELETE /routes/{id}`: 200 with an empty body; the route's sink drains and closes.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let _edit = state.api.edit.lock().await;
    let mut routes = state.api.list();
    if !routes.iter().any(|(i, _)| i == &id) {
        if all_routes(&state).iter().any(|r| r.id == id) {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("route {id:?} is declared in the config file; edit the file to remove it\n"),
            );
        }
        return not_found();
    }
    routes.retain(|(i, _)| i != &id);
    if let Err(e) = change(&state, routes).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot remove the route: {e}\n"));
    }
    if let Err(e) = state.api.forget(&id) {
        tracing::warn!(route = %id, error = %e, "cannot delete the route's file in ROUTESPATH");
    }
    StatusCode::OK.into_response()
}

/// Has the reloader build and publish a config with these API routes.
async fn change(state: &AppState, routes: Vec<(String, RouteUri)>) -> Result<(), String> {
    let (reply, answer) = oneshot::channel();
    state.api_changes.send(ApiChange { routes, reply }).await.map_err(|_| "luaspout is shutting down".to_string())?;
    answer.await.map_err(|_| "luaspout is shutting down".to_string())?
}

/// Reaches the destination once, as logspout does before it accepts a route: a TCP (or TLS)
/// connect, a name lookup for UDP and HTTP. The caller answers one generic refusal whatever
/// the reason, so the API cannot be used to scan ports (refused and silent look the same).
async fn dial(uri: &RouteUri) -> Result<(), String> {
    let what = match uri.transport {
        Transport::Tcp | Transport::Tls => "tcp",
        _ => "lookup",
    };
    let attempt = async {
        match uri.transport {
            Transport::Tcp | Transport::Tls => tokio::net::TcpStream::connect(&uri.address).await.map(drop),
            _ => tokio::net::lookup_host(&uri.address).await.map(drop),
        }
    };
    match tokio::time::timeout(DIAL_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("dial {what} {}: {e}", uri.address)),
        Err(_) => Err(format!("dial {what} {}: no answer within {DIAL_TIMEOUT:?}", uri.address)),
    }
}

/// 12 random hex digits, like logspout's route IDs.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}
