//! The TCP writer of one route: connect when there is something to send, write each batch,
//! and on any failure reconnect with capped exponential backoff and write the batch again.
//! A sink that is down (at startup or later) is retried forever; it never ends the process.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Frames;
use crate::backoff::Backoff;
use crate::stats::{self, RouteStats};

/// Runs until the route's queue closes (after draining it) or shutdown while disconnected.
pub async fn run(address: String, mut rx: mpsc::Receiver<Frames>, rs: Arc<RouteStats>, shutdown: CancellationToken) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Backoff::new(super::RECONNECT_MIN, super::RECONNECT_MAX);
    while let Some(frames) = rx.recv().await {
        loop {
            if conn.as_ref().is_some_and(peer_closed) {
                debug!(route = %rs.name, dest = %address, "peer closed the connection; reconnecting");
                conn = None;
            }
            let stream = match &mut conn {
                Some(s) => s,
                None => match TcpStream::connect(&address).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        rs.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                        rs.connect_failures.store(0, std::sync::atomic::Ordering::Relaxed);
                        debug!(route = %rs.name, dest = %address, "connected");
                        backoff.reset();
                        conn.insert(s)
                    }
                    Err(e) => {
                        rs.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                        stats::add(&rs.connect_failures, 1);
                        if rs.warn_limit.allow() {
                            warn!(route = %rs.name, dest = %address, error = %e, "cannot connect; retrying with backoff, lines wait in the route's queue");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_delay()) => continue,
                            _ = shutdown.cancelled() => {
                                stats::add(&rs.dropped_write, frames.len() as u64 + drain_count(&mut rx));
                                return;
                            }
                        }
                    }
                },
            };
            match stream.write_all(&frames.buf).await {
                Ok(()) => {
                    stats::add(&rs.sent, frames.len() as u64);
                    break;
                }
                Err(e) => {
                    rs.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    if rs.warn_limit.allow() {
                        warn!(route = %rs.name, dest = %address, error = %e, "write failed; reconnecting and sending the batch again");
                    }
                    conn = None;
                }
            }
        }
    }
    if let Some(mut s) = conn {
        let _ = s.shutdown().await;
    }
}

/// Whether the peer has closed its end: a write into a half-closed socket "succeeds" and the
/// line is lost when the reset arrives (logspout's lost line per reconnect), so look first.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            // The peer talks back (some receivers do); the data is not ours to use.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Empties the queue at shutdown, returning how many lines it held.
fn drain_count(rx: &mut mpsc::Receiver<Frames>) -> u64 {
    let mut n = 0;
    while let Ok(f) = rx.try_recv() {
        n += f.len() as u64;
    }
    n
}
