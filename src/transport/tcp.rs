//! The stream writer of one route, plain TCP or TLS over TCP: connect when there is something
//! to send, write each batch, and on any failure reconnect with capped exponential backoff and
//! write the batch again. A sink that is down (at startup or later), or whose certificate
//! fails verification, is retried until shutdown (or the end of a removed route's grace);
//! it never ends the process. A write that makes no progress within `LUASPOUT_WRITE_TIMEOUT`
//! (a peer that accepted and stopped reading, a black hole) counts as a failure too: the
//! sink shows as down on `/health`, and the batch is sent again on a new connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use tracing::{debug, warn};

use super::tls::TlsTarget;
use super::{Queue, Stop, give_up};
use crate::backoff::Backoff;
use crate::stats::{self, RouteStats};

/// Longest wait for a TCP connect plus TLS handshake: a black-holed address must not hold a
/// route's lines longer than this before the next attempt (logspout has no timeout at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a writer's connections are made.
pub enum Wrap {
    /// Plain TCP.
    Plain,
    /// TLS over TCP. The target is updated on every config reload (renewed certificates), and
    /// the next connection uses the newest one; the current connection is kept.
    Tls(watch::Receiver<Arc<TlsTarget>>),
}

type Conn = Either<TcpStream, TlsStream<TcpStream>>;

/// Why a connection attempt failed, for the log and the counters.
enum ConnectError {
    Tcp(std::io::Error),
    Handshake(std::io::Error),
    Timeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Timeout => write!(f, "no connection within {CONNECT_TIMEOUT:?}"),
        }
    }
}

/// Runs until the route's queue closes (after draining it), or `stop` while the sink fails.
pub async fn run(address: String, wrap: Wrap, write_timeout: Duration, mut rx: Queue, rs: Arc<RouteStats>, stop: Stop) {
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new(super::RECONNECT_MIN, super::RECONNECT_MAX);
    // When a write last timed out: a new connection to a peer that does not read takes writes
    // until its socket buffers fill, so the sink only counts as up again once writes have gone
    // through for twice the deadline (or the route has been quiet that long since the batch
    // was sent again, which it always is before the next one is taken).
    let mut last_stall: Option<tokio::time::Instant> = None;
    loop {
        let next = match last_stall {
            Some(at) => tokio::select! {
                next = rx.recv() => next,
                _ = tokio::time::sleep_until(at + write_timeout * 2) => {
                    last_stall = None;
                    rs.set_problem(None);
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(frames) = next else { break };
        loop {
            if stop.retired() && conn.is_none() {
                return give_up(super::Stopped::Retired, frames.len() as u64, frames.receipts, &mut rx, &rs, &stop)
                    .await;
            }
            if let Some(c) = conn.as_mut()
                && peer_closed(c)
            {
                debug!(route = %rs.name, dest = %address, "peer closed the connection; reconnecting");
                conn = None;
            }
            let stream = match &mut conn {
                Some(s) => s,
                None => match connect(&address, &wrap).await {
                    Ok(s) => {
                        rs.connected.store(true, Ordering::Relaxed);
                        rs.connect_failures.store(0, Ordering::Relaxed);
                        stats::add(&rs.connections, 1);
                        debug!(route = %rs.name, dest = %address, "connected");
                        backoff.reset();
                        conn.insert(s)
                    }
                    Err(e) => {
                        rs.connected.store(false, Ordering::Relaxed);
                        stats::add(&rs.connect_failures, 1);
                        if matches!(e, ConnectError::Handshake(_)) {
                            stats::add(&rs.tls_failures, 1);
                        }
                        if rs.warn_limit.allow() {
                            warn!(route = %rs.name, dest = %address, "{e}; retrying with backoff, lines wait in the route's queue");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_delay()) => continue,
                            why = stop.stopped() => {
                                return give_up(why, frames.len() as u64, frames.receipts, &mut rx, &rs, &stop).await;
                            }
                        }
                    }
                },
            };
            // TLS buffers what is written: the flush is what puts it on the wire.
            let write = async { stream.write_all(&frames.buf).await.and(stream.flush().await) };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {
                    stats::add(&rs.sent, frames.len() as u64);
                    stats::add(&rs.bytes_sent, frames.buf.len() as u64);
                    if last_stall.is_none_or(|t| t.elapsed() >= write_timeout * 2) {
                        last_stall = None;
                        rs.set_problem(None);
                    }
                    frames.settle();
                    break;
                }
                Ok(Err(e)) => {
                    rs.connected.store(false, Ordering::Relaxed);
                    if rs.warn_limit.allow() {
                        warn!(route = %rs.name, dest = %address, error = %e, "write failed; reconnecting and sending the batch again");
                    }
                    conn = None;
                }
                Err(_) => {
                    // The peer is there but takes nothing: a new connection may reach a
                    // restarted receiver (or a healthy one behind a balancer).
                    rs.connected.store(false, Ordering::Relaxed);
                    stats::add(&rs.connect_failures, 1);
                    let problem = format!("no write progress within {write_timeout:?} (the peer is not reading)");
                    if rs.warn_limit.allow() {
                        warn!(route = %rs.name, dest = %address, "{problem}; reconnecting and sending the batch again");
                    }
                    rs.set_problem(Some(problem));
                    last_stall = Some(tokio::time::Instant::now());
                    conn = None;
                }
            }
        }
    }
    if let Some(mut s) = conn {
        let _ = s.shutdown().await;
    }
}

/// One connection attempt: TCP connect, then the TLS handshake if the route wants one.
async fn connect(address: &str, wrap: &Wrap) -> Result<Conn, ConnectError> {
    let attempt = async {
        let tcp = TcpStream::connect(address).await.map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        match wrap {
            Wrap::Plain => Ok(Either::Left(tcp)),
            Wrap::Tls(target) => {
                let target = target.borrow().clone();
                let mut tls = TlsConnector::from(target.config.clone())
                    .connect(target.server_name.clone(), tcp)
                    .await
                    .map_err(ConnectError::Handshake)?;
                if tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                    await_refusal(&mut tls).await.map_err(ConnectError::Handshake)?;
                }
                Ok(Either::Right(tls))
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.unwrap_or(Err(ConnectError::Timeout))
}

/// How long a new TLS 1.3 connection is watched for the server's verdict on our certificate.
const REFUSAL_WINDOW: Duration = Duration::from_millis(200);

/// In TLS 1.3 the client's handshake is over before the server has checked the client's
/// certificate (or its absence): a refusal arrives as an alert after it, and lines written in
/// the meantime would be counted as sent and lost. So listen briefly first; silence (or a
/// session ticket, which rustls takes in) means the server kept the connection.
async fn await_refusal(tls: &mut TlsStream<TcpStream>) -> std::io::Result<()> {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + REFUSAL_WINDOW;
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the server closed the connection right after the handshake (did it want a client certificate?)",
                ));
            }
            // The peer talks first (some receivers greet); not ours to use.
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Whether the peer has closed its end: a write into a half-closed socket "succeeds" and the
/// line is lost when the reset arrives (logspout's lost line per reconnect), so look first.
/// Reading goes through the TLS layer when there is one, so its own records (session tickets,
/// close_notify) are handled and never mistaken for data.
fn peer_closed(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).now_or_never() {
            None => return false,
            Some(Ok(0)) => return true,
            // The peer talks back (some receivers do); the data is not ours to use.
            Some(Ok(_)) => continue,
            Some(Err(_)) => return true,
        }
    }
}
