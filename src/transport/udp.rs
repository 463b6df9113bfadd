//! The UDP writer of one route: one datagram per line, as logspout sends them, on a connected
//! socket with a 1 MiB send buffer. A line that cannot be sent (too large for a datagram, no
//! route to the host) is counted as dropped and reported, never silently lost.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::warn;

use super::{Queue, Stop, give_up};
use crate::backoff::Backoff;
use crate::stats::{self, RouteStats};

/// logspout's UDP send buffer.
const SEND_BUFFER_BYTES: usize = 1 << 20;

/// Runs until the route's queue closes.
pub async fn run(address: String, mut rx: Queue, rs: Arc<RouteStats>, stop: Stop) {
    let mut socket: Option<UdpSocket> = None;
    let mut backoff = Backoff::new(super::RECONNECT_MIN, super::RECONNECT_MAX);
    while let Some(frames) = rx.recv().await {
        let sock = loop {
            if let Some(s) = &socket {
                break s;
            }
            match connect(&address).await {
                Ok(s) => {
                    rs.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                    rs.connect_failures.store(0, std::sync::atomic::Ordering::Relaxed);
                    stats::add(&rs.connections, 1);
                    backoff.reset();
                    socket = Some(s);
                }
                Err(e) => {
                    stats::add(&rs.connect_failures, 1);
                    if rs.warn_limit.allow() {
                        warn!(route = %rs.name, dest = %address, error = %e, "cannot resolve or bind; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        why = stop.stopped() => {
                            return give_up(why, frames.len() as u64, frames.receipts, &mut rx, &rs, &stop).await;
                        }
                    }
                }
            }
        };
        let (mut sent, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        for line in frames.lines() {
            match sock.send(line).await {
                Ok(_) => {
                    sent += 1;
                    bytes += line.len() as u64;
                }
                Err(e) => {
                    failed += 1;
                    if rs.warn_limit.allow() {
                        warn!(route = %rs.name, dest = %address, error = %e, bytes = line.len(), "udp send failed; line dropped (counted)");
                    }
                }
            }
        }
        stats::add(&rs.sent, sent);
        stats::add(&rs.bytes_sent, bytes);
        stats::add(&rs.dropped_write, failed);
        // A datagram that could not be sent is counted above; resending it cannot help.
        frames.settle();
    }
}

async fn connect(address: &str) -> std::io::Result<UdpSocket> {
    let target: SocketAddr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{address}: no address")))?;
    let domain = socket2::Domain::for_address(target);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel may cap it, which only makes bursts likelier to drop.
    let _ = sock.set_send_buffer_size(SEND_BUFFER_BYTES);
    sock.set_nonblocking(true)?;
    let bind: SocketAddr =
        if target.is_ipv4() { "0.0.0.0:0".parse().expect("literal") } else { "[::]:0".parse().expect("literal") };
    sock.bind(&bind.into())?;
    let sock = UdpSocket::from_std(sock.into())?;
    sock.connect(target).await?;
    Ok(sock)
}
