//! The HTTP(S) writer of one route: gathers lines into batches (by count, bytes and time),
//! POSTs each batch, and retries until the endpoint acknowledges it with a 2xx.
//!
//! Only 400, 413 and 422 say the batch itself is bad: it is dropped, counted by status and
//! logged with the first line of the response body, and the next batch goes on. Every other
//! answer that is not a 2xx (401 and 403 while a key is rotated, 404 while an endpoint moves,
//! 408, 429, 5xx), like a connection error or a timeout, means the sink is down: the batch is
//! retried with capped exponential backoff and jitter, honouring `Retry-After`, lines wait in
//! the route's queue (which backs up under its `on_full`), and `/health` shows the sink down
//! with the status it answered. The body is newline-delimited JSON (or raw lines) by default, or whatever the
//! route's Lua `batch(list)` function builds ([`body`]).

pub mod body;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::tls::TlsTarget;
use super::{Frames, Queue, Stop, Stopped, drop_held, give_up};
use crate::backoff::Backoff;
use crate::config::options::HttpOptions;
use crate::stats::{self, RouteStats};
use body::BodyBuilder;

/// Longest pause between two attempts at the same batch, and the most of a `Retry-After`
/// that is honoured.
const RETRY_MAX: Duration = Duration::from_secs(30);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// How much of an error response body is read, for its first line.
const ERROR_BODY_MAX: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the writer needs, rebuilt at each config reload and handed over through a watch
/// channel, so new headers, batch functions and certificates apply without losing a line.
pub struct HttpPlan {
    pub url: http::Uri,
    pub options: HttpOptions,
    /// `options.headers`, parsed once for every request.
    pub headers: http::HeaderMap,
    /// For `https://`; `None` for plain HTTP.
    pub tls: Option<TlsTarget>,
    pub body: BodyBuilder,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client of a plan: one pool of keep-alive connections per route.
fn client(plan: &HttpPlan) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match &plan.tls {
        Some(t) => builder.with_tls_config((*t.config).clone()).https_only().enable_http1().wrap_connector(http),
        None => {
            builder.with_tls_config(super::tls::unused_config()).https_or_http().enable_http1().wrap_connector(http)
        }
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Lines waiting to be sent, with the time the first one arrived.
struct Batch {
    frames: Frames,
    since: Option<Instant>,
}

/// Runs until the route's queue closes (after sending what it held), or `stop` while the
/// endpoint is failing.
pub async fn run(mut plans: watch::Receiver<Arc<HttpPlan>>, mut rx: Queue, rs: Arc<RouteStats>, stop: Stop) {
    let plan = plans.borrow_and_update().clone();
    let mut to = Target { pool: client(&plan), plan, plans };
    let mut batch = Batch { frames: Frames::default(), since: None };
    loop {
        let deadline = batch.since.map(|t| t + to.plan.options.flush_interval);
        tokio::select! {
            frames = rx.recv() => match frames {
                Some(mut frames) => {
                    let mut stopped = None;
                    for (i, line) in frames.lines().enumerate() {
                        let full = batch.frames.len() >= to.plan.options.batch_size
                            || batch.frames.buf.len() + line.len() > to.plan.options.batch_bytes;
                        if full && !batch.frames.is_empty()
                            && let Err(why) = flush(&mut to, &mut batch, &rs, &stop).await
                        {
                            stopped = Some((why, (frames.len() - i) as u64));
                            break;
                        }
                        batch.frames.buf.extend_from_slice(line);
                        batch.frames.end_line();
                        batch.since.get_or_insert_with(Instant::now);
                    }
                    if let Some((why, rest)) = stopped {
                        return give_up(why, rest, frames.receipts, &mut rx, &rs, &stop).await;
                    }
                    // After all its lines: a batch flushed midway settles only what it holds.
                    batch.frames.receipts.append(&mut frames.receipts);
                }
                None => {
                    if !batch.frames.is_empty() {
                        let _ = flush(&mut to, &mut batch, &rs, &stop).await;
                    }
                    return;
                }
            },
            _ = sleep_until(deadline) => {
                if let Err(why) = flush(&mut to, &mut batch, &rs, &stop).await {
                    return give_up(why, 0, Default::default(), &mut rx, &rs, &stop).await;
                }
            }
            Ok(()) = to.plans.changed() => to.update(&rs),
        }
    }
}

/// Where batches go: the plan in force and its connection pool, with the channel new plans
/// arrive on (headers, URL, certificates), taken up between batches and between the retries
/// of one (a fixed API key applies to the batch that was refused).
struct Target {
    plan: Arc<HttpPlan>,
    pool: HttpsClient,
    plans: watch::Receiver<Arc<HttpPlan>>,
}

impl Target {
    /// Takes up the newest plan.
    fn update(&mut self, rs: &RouteStats) {
        let next = self.plans.borrow_and_update().clone();
        // Keep-alive connections stay unless the TLS setup changed.
        let same_tls = next.tls.as_ref().map(|t| t.fingerprint) == self.plan.tls.as_ref().map(|t| t.fingerprint);
        if !same_tls {
            self.pool = client(&next);
        }
        self.plan = next;
        debug!(route = %rs.name, url = %crate::uri::redact(&self.plan.url.to_string()), new_connections = !same_tls, "HTTP route updated by a reload");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What one POST came to.
enum Response {
    Accepted,
    /// Worth trying again, after at least the given delay (from `Retry-After`). `answered`
    /// when the endpoint answered (a status, or no answer in time), which marks the sink down
    /// on `/health` at once; connection errors count towards `RETRY_COUNT` instead.
    Retry {
        reason: String,
        after: Option<Duration>,
        answered: bool,
    },
    /// The endpoint refused this batch for good.
    Rejected {
        status: u16,
        first_line: String,
    },
}

/// Whether a status says the batch itself is bad, so sending it again cannot help.
fn is_poison(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 413 | 422)
}

/// Sends the batch until it is acknowledged or rejected. If the writer must stop first, the
/// batch is given up ([`give_up`]) and the reason returned.
async fn flush(to: &mut Target, batch: &mut Batch, rs: &RouteStats, stop: &Stop) -> Result<(), Stopped> {
    let n = batch.frames.len() as u64;
    let mut frames = std::mem::take(&mut batch.frames);
    let receipts = std::mem::take(&mut frames.receipts);
    batch.since = None;
    let (content, content_type) = to.plan.body.build(frames, rs).await;
    let size = content.len() as u64;
    let gzipped = to.plan.options.gzip;
    let body = if gzipped { gzip(&content) } else { Bytes::from(content) };
    let mut backoff = Backoff::new(super::RECONNECT_MIN, RETRY_MAX);
    loop {
        match post(&to.plan, &to.pool, body.clone(), content_type, gzipped).await {
            Response::Accepted => {
                rs.connected.store(true, Ordering::Relaxed);
                rs.connect_failures.store(0, Ordering::Relaxed);
                stats::add(&rs.sent, n);
                stats::add(&rs.bytes_sent, size);
                stats::add(&rs.batches_sent, 1);
                rs.set_problem(None);
                receipts.settle();
                return Ok(());
            }
            Response::Rejected { status, first_line } => {
                rs.connected.store(true, Ordering::Relaxed);
                rs.set_problem(None);
                rs.rejected(status, n);
                warn!(route = %rs.name, url = %crate::uri::redact(&to.plan.url.to_string()), status, lines = n, response = %first_line,
                    "the endpoint rejected a batch as bad; it is dropped (counted) and not retried");
                receipts.settle();
                return Ok(());
            }
            Response::Retry { reason, after, answered } => {
                stats::add(&rs.retries, 1);
                stats::add(&rs.connect_failures, 1);
                rs.connected.store(false, Ordering::Relaxed);
                if answered {
                    rs.set_problem(Some(reason.clone()));
                }
                let delay = backoff.next_delay().max(after.unwrap_or_default().min(RETRY_AFTER_MAX));
                if rs.warn_limit.allow() {
                    warn!(route = %rs.name, url = %crate::uri::redact(&to.plan.url.to_string()), lines = n, retry_in = ?delay, "{reason}; retrying the batch");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    // A reload with new headers (a fixed key): try them at once.
                    Ok(()) = to.plans.changed() => {
                        to.update(rs);
                        backoff.reset();
                    }
                    why = stop.stopped() => {
                        drop_held(why, n, receipts, rs);
                        return Err(why);
                    }
                }
            }
        }
    }
}

/// One POST of a batch, with the route's headers and timeout; `gzipped` says how the body was
/// encoded (the plan may have changed since).
async fn post(plan: &HttpPlan, client: &HttpsClient, body: Bytes, content_type: &str, gzipped: bool) -> Response {
    let mut request = http::Request::post(plan.url.clone())
        .header(http::header::USER_AGENT, concat!("luaspout/", env!("CARGO_PKG_VERSION")))
        .header(http::header::CONTENT_TYPE, content_type);
    if gzipped {
        request = request.header(http::header::CONTENT_ENCODING, "gzip");
    }
    let mut request = match request.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Response::Rejected { status: 0, first_line: format!("cannot build the request: {e}") },
    };
    for (name, value) in &plan.headers {
        request.headers_mut().insert(name, value.clone());
    }
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let retry_after = response.headers().get(http::header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?));
        if status.is_success() {
            // Read the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            return Ok::<_, String>(Response::Accepted);
        }
        let first_line = first_line(response.into_body()).await;
        if is_poison(status) {
            return Ok(Response::Rejected { status: status.as_u16(), first_line });
        }
        Ok(Response::Retry { reason: format!("HTTP {status}: {first_line}"), after: retry_after, answered: true })
    };
    match tokio::time::timeout(plan.options.timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Response::Retry { reason: format!("request failed: {e}"), after: None, answered: false },
        Err(_) => Response::Retry {
            reason: format!("no response within {:?}", plan.options.timeout),
            after: None,
            answered: true,
        },
    }
}

/// The error and its causes on one line (hyper's top-level errors say little on their own).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first line of a response body, read up to [`ERROR_BODY_MAX`] bytes.
async fn first_line(mut body: hyper::body::Incoming) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_MAX {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or("").chars().take(200).collect()
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

fn gzip(content: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(content.len() / 4), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(content);
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn only_a_bad_batch_is_dropped_every_other_refusal_means_the_sink_is_down() {
        let poison: Vec<u16> = (400..600).filter(|&s| is_poison(http::StatusCode::from_u16(s).unwrap())).collect();
        assert_eq!(poison, vec![400, 413, 422]);
    }

    #[test]
    fn gzip_bodies_decompress_to_the_content() {
        use std::io::Read;
        let body = gzip(b"{\"a\":1}\n{\"a\":2}\n");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"a\":2}\n");
    }
}
