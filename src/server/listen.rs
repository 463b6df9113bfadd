//! Serves the HTTP application on a listener with the limits `axum::serve` does not have: a
//! deadline for each request's header, a cap on open connections, and an accept loop that
//! survives running out of descriptors.
//!
//! Without them, clients that open connections and send a header one byte at a time hold a
//! descriptor each for good; at the process's `nofile` limit, `accept` fails and the router's
//! own sockets (Docker, sinks) cannot be opened either.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a client has to send a whole request header, counted from when the connection
/// opens or its previous response ended: also the idle timeout of a kept-alive connection.
/// A browser or `curl` sends its header at once; only a stalled or hostile client takes longer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections served at once. Past it, new ones wait in the kernel's accept queue instead
/// of taking descriptors the router needs; `/logs` clients have their own, smaller cap.
pub const MAX_CONNECTIONS: usize = 256;

/// The connection cap: [`MAX_CONNECTIONS`], or a quarter of the process's descriptor limit if
/// that is lower (a container run with `--ulimit nofile=256`), so the router's own sockets to
/// Docker and to the sinks always find descriptors.
pub fn connection_cap() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    soft.map_or(MAX_CONNECTIONS, |n| (n / 4).clamp(8, MAX_CONNECTIONS))
}

/// How long to wait before accepting again after `accept` failed (out of descriptors, most
/// often): long enough not to spin, short enough to recover at once.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long open connections (live `/logs` streams) may take to finish once shutdown begins.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Accepts and serves connections until `shutdown`, then lets open ones finish their response
/// (for [`CLOSE_GRACE`] at most).
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(connection_cap()));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection; pausing");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(CLOSE_GRACE, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        connections.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        let cap = connection_cap();
        assert!((8..=MAX_CONNECTIONS).contains(&cap), "{cap}");
    }
}
