//! The options a route carries besides its URI: what a full queue does, its own TLS files,
//! and the batching of HTTP routes. Plain data, read from URI query keys and `routes.lua`
//! tables here and used by the transports.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::parse_duration;
use crate::uri::{HEADER_PREFIX, RouteUri};

/// What a route does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Stop reading the containers the route takes until there is room again: Docker keeps
    /// their lines meanwhile, so nothing is lost.
    #[default]
    Block,
    /// Drop (and count) the route's lines, so the route never slows anything else.
    Drop,
}

impl OnFull {
    /// Parses a route's `on_full` (routes.lua key or URI query key).
    pub fn parse(s: &str) -> Result<OnFull, String> {
        match s {
            "block" => Ok(OnFull::Block),
            "drop" => Ok(OnFull::Drop),
            _ => Err(format!("`on_full` must be \"block\" or \"drop\", got {s:?}")),
        }
    }
}

/// A route's own TLS options (`tls = { … }` in `routes.lua`), on top of [`crate::settings::TlsEnv`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Extra CA files to trust (PEM, several certificates each).
    pub ca: Vec<PathBuf>,
    /// Client certificate and key for this route, replacing `LOGSPOUT_TLS_CLIENT_*`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name to send in SNI and verify the certificate against, when it differs from the
    /// host in the URI (connecting by IP to a server with a DNS certificate).
    pub server_name: Option<String>,
    /// `false` to trust only the CA files, for this route.
    pub system_roots: Option<bool>,
}

/// A route's batching and request options, from URI query keys and `routes.lua`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Most lines in one request.
    pub batch_size: usize,
    /// Most body bytes (before compression) in one request.
    pub batch_bytes: usize,
    /// Longest a line waits in a batch that is not full, from the batch's first line (not
    /// reset by later lines, so a steady trickle still flushes on time).
    pub flush_interval: Duration,
    /// Compress bodies with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Longest one request may take, response included.
    pub timeout: Duration,
    /// Extra request headers (API keys), in order.
    pub headers: Vec<(String, String)>,
    /// The route has a Lua `batch` function that builds the body.
    pub has_batch: bool,
}

impl Default for HttpOptions {
    /// The LogDNA fork's batching (250 ms, 2 MB), with a count cap that keeps one retry small.
    fn default() -> HttpOptions {
        HttpOptions {
            batch_size: 1000,
            batch_bytes: 2 << 20,
            flush_interval: Duration::from_millis(250),
            gzip: false,
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            has_batch: false,
        }
    }
}

/// The longest `timeout` or `flush_interval` an HTTP route may ask for: far beyond any real
/// need, and far below what would overflow a deadline computed from it.
pub const MAX_HTTP_WAIT: Duration = Duration::from_secs(24 * 3600);

impl HttpOptions {
    /// The options an HTTP route URI gives (`batch_size`, `batch_bytes`, `flush_interval`,
    /// `gzip`, `timeout`, `header.NAME`), over the defaults.
    pub fn from_uri(uri: &RouteUri) -> Result<HttpOptions, String> {
        let mut o = HttpOptions::default();
        for (key, value) in &uri.options {
            match key.as_str() {
                "batch_size" => o.batch_size = positive(key, value)?,
                "batch_bytes" => o.batch_bytes = positive(key, value)?,
                "flush_interval" => o.flush_interval = parse_duration(value).map_err(|e| format!("{key}: {e}"))?,
                "timeout" => o.timeout = parse_duration(value).map_err(|e| format!("{key}: {e}"))?,
                "gzip" => {
                    o.gzip = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("gzip: expected true or false, got {value:?}")),
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(HEADER_PREFIX) {
                        o.headers.push((name.to_string(), value.clone()));
                    }
                }
            }
        }
        o.check()?;
        Ok(o)
    }

    /// Checks what cannot work: zero limits, header names or values HTTP does not allow.
    pub fn check(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.batch_bytes == 0 {
            return Err("batch_size and batch_bytes must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        if self.timeout > MAX_HTTP_WAIT || self.flush_interval > MAX_HTTP_WAIT {
            return Err(format!("timeout and flush_interval must be at most {}h", MAX_HTTP_WAIT.as_secs() / 3600));
        }
        self.header_map().map(drop)
    }

    /// The headers as a request carries them; later names replace earlier ones.
    pub fn header_map(&self) -> Result<http::HeaderMap, String> {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let n =
                http::HeaderName::try_from(name.as_str()).map_err(|_| format!("invalid HTTP header name {name:?}"))?;
            let v = http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("invalid value for HTTP header {name:?} (control characters?)"))?;
            map.insert(n, v);
        }
        Ok(map)
    }
}

fn positive(key: &str, value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{key}: expected a positive integer, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_the_uri() {
        let uri = crate::uri::parse(
            "https://logs.example.com:443/ingest?batch_size=10&batch_bytes=1000&flush_interval=1s&gzip=true&header.apikey=K&hostname=h",
        )
        .unwrap();
        let o = HttpOptions::from_uri(&uri).unwrap();
        assert_eq!((o.batch_size, o.batch_bytes, o.flush_interval, o.gzip), (10, 1000, Duration::from_secs(1), true));
        assert_eq!(o.headers, vec![("apikey".to_string(), "K".to_string())]);
        assert_eq!(uri.http_url(), "https://logs.example.com:443/ingest?hostname=h");
        let bad = crate::uri::parse("http://h:80/?batch_size=0").unwrap();
        assert!(HttpOptions::from_uri(&bad).unwrap_err().contains("batch_size"));
        let bad = crate::uri::parse("http://h:80/?gzip=yes").unwrap();
        assert!(HttpOptions::from_uri(&bad).unwrap_err().contains("gzip"));
        for huge in ["timeout=99999999999999999999h", "flush_interval=9999999999999h", "flush_interval=25h"] {
            let bad = crate::uri::parse(&format!("http://h:80/?{huge}")).unwrap();
            assert!(HttpOptions::from_uri(&bad).is_err(), "{huge}");
        }
    }
}
