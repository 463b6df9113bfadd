//! Who may call the HTTP API: one rule in front of every endpoint but `/health`.
//!
//! * With `LUASPOUT_API_TOKEN` set, every request needs `Authorization: Bearer <token>` (the
//!   scheme in any case), compared in constant time. A WebSocket upgrade of `/logs` may carry
//!   the token as the `access_token` query parameter instead, because a browser cannot set
//!   headers on a WebSocket; nothing else accepts that form. `LUASPOUT_METRICS_PUBLIC=true`
//!   leaves `/metrics` open for a scraper that cannot send a token.
//! * Without a token (logspout's default), reads stay open, but a request that carries an
//!   `Origin` other than its own `Host` is refused: browsers send `Origin` on every cross-site
//!   request (WebSocket upgrades included) and `curl` sends none, so no web page an operator
//!   opens can read the logs or change routes, while scripts keep working. (A changing call
//!   also needs `Content-Type: application/json`, checked by [`super::routes`].)

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::settings::Env;

/// The query parameter that carries the token on a `/logs` WebSocket upgrade.
pub const WEBSOCKET_TOKEN_PARAM: &str = "access_token";

/// How many `/logs` clients (HTTP streams and WebSockets) may be connected at once by default:
/// each one costs filter work on the router threads for every line, and up to 1,024 queued lines.
pub const LOGS_CLIENTS: usize = 32;

/// The API's access settings, read once at start.
#[derive(Clone)]
pub struct Access {
    token: Option<ApiToken>,
    /// `LUASPOUT_METRICS_PUBLIC=true`: `/metrics` needs no token even when one is set.
    metrics_public: bool,
    /// `LUASPOUT_LOGS_CLIENTS` (default [`LOGS_CLIENTS`]): concurrent `/logs` clients.
    pub logs_clients: usize,
}

/// `LUASPOUT_API_TOKEN`; its `Debug` never shows the value.
#[derive(Clone)]
struct ApiToken(Vec<u8>);

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("metrics_public", &self.metrics_public)
            .field("logs_clients", &self.logs_clients)
            .finish()
    }
}

impl Access {
    /// Reads `LUASPOUT_API_TOKEN`, `LUASPOUT_METRICS_PUBLIC` and `LUASPOUT_LOGS_CLIENTS`. A token
    /// that is set but empty is an error: it would otherwise mean "no auth" without a word.
    pub fn from_env(env: &Env) -> anyhow::Result<Access> {
        let token = match env.raw("LUASPOUT_API_TOKEN") {
            None => None,
            Some(t) if t.trim().is_empty() => anyhow::bail!(
                "LUASPOUT_API_TOKEN is set but empty: give it a value (e.g. `openssl rand -hex 32`) or unset it to leave the API open"
            ),
            // Trimmed, as the header's value is: a token read from a file keeps no newline.
            Some(t) => Some(ApiToken(t.trim().as_bytes().to_vec())),
        };
        let logs_clients = match env.get("LUASPOUT_LOGS_CLIENTS") {
            None => LOGS_CLIENTS,
            Some(v) => v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                anyhow::anyhow!("LUASPOUT_LOGS_CLIENTS: {v:?} is not a positive whole number of clients")
            })?,
        };
        Ok(Access { token, metrics_public: env.is_true("LUASPOUT_METRICS_PUBLIC"), logs_clients })
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The warning to log at start, if any: an API without a token listening beyond loopback.
    pub fn exposure_warning(&self, bound: SocketAddr) -> Option<String> {
        if self.token.is_some() || bound.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "the HTTP API on {bound} has no token: anyone who reaches this port can read every container's logs and \
             add routes that send them anywhere; set LUASPOUT_API_TOKEN, or bind to 127.0.0.1 with HTTP_BIND_ADDRESS \
             (see docs/security.md)"
        ))
    }

    /// The refusal for this request, or `None` when it may go on.
    fn check(&self, path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<Response> {
        if path == "/health" {
            return None;
        }
        match &self.token {
            Some(token) => {
                if path == "/metrics" && self.metrics_public {
                    return None;
                }
                let websocket = is_websocket(headers) && (path == "/logs" || path.starts_with("/logs/"));
                let given = bearer(headers).or_else(|| if websocket { query_token(query) } else { None });
                match given {
                    Some(given) if token.matches(&given) => None,
                    // The page holds no data; it asks for the token and sends it on every call.
                    _ if path == "/" => {
                        let mut r = unauthorized();
                        *r.body_mut() = axum::body::Body::from(super::viewer::PAGE);
                        r.headers_mut()
                            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
                        Some(r)
                    }
                    _ => Some(unauthorized()),
                }
            }
            None => match headers.get(header::ORIGIN) {
                Some(origin) if !same_origin(origin.as_bytes(), headers.get(header::HOST).map(|h| h.as_bytes())) => {
                    Some(text(
                        StatusCode::FORBIDDEN,
                        "Forbidden: this request comes from another site (its Origin is not this server); \
                         set LUASPOUT_API_TOKEN to use the API from other origins\n",
                    ))
                }
                _ => None,
            },
        }
    }
}

impl ApiToken {
    /// Constant-time comparison (only the length of the given value can show in the timing).
    fn matches(&self, given: &[u8]) -> bool {
        self.0.as_slice().ct_eq(given).into()
    }
}

/// The middleware that applies [`Access`] to every request.
pub async fn guard(State(access): State<std::sync::Arc<Access>>, request: Request, next: Next) -> Response {
    if let Some(refusal) = access.check(request.uri().path(), request.uri().query(), request.headers()) {
        return refusal;
    }
    next.run(request).await
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The credentials of `Authorization: Bearer <token>`, the scheme matched in any case.
fn bearer(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii().to_vec())
}

/// The `access_token` query parameter, percent-decoded.
fn query_token(query: Option<&str>) -> Option<Vec<u8>> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix(WEBSOCKET_TOKEN_PARAM)?.strip_prefix('='))?;
    crate::uri::form_decode(value).ok().map(String::into_bytes)
}

/// Whether `Origin` (`scheme://host[:port]`) names the same host and port as `Host`. Default
/// ports are left out on both sides, as browsers do.
fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let Some(host) = host else { return false };
    let Ok(origin) = std::str::from_utf8(origin) else { return false };
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |s: &str| s.strip_suffix(default_port).unwrap_or(s).to_ascii_lowercase();
    strip(authority) == strip(host)
}

fn unauthorized() -> Response {
    let mut r =
        text(StatusCode::UNAUTHORIZED, "Unauthorized: this server needs Authorization: Bearer <LUASPOUT_API_TOKEN>\n");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(pairs: &[(&str, &str)]) -> Access {
        Access::from_env(&Env::from_pairs(pairs)).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn status(a: &Access, path: &str, query: Option<&str>, h: &[(&str, &str)]) -> u16 {
        a.check(path, query, &headers(h)).map_or(200, |r| r.status().as_u16())
    }

    #[test]
    fn a_token_covers_everything_but_health() {
        let a = access(&[("LUASPOUT_API_TOKEN", "s3cret")]);
        for path in ["/", "/logs", "/logs/name:x", "/containers", "/routes", "/routes/a", "/metrics"] {
            assert_eq!(status(&a, path, None, &[]), 401, "{path}");
            assert_eq!(status(&a, path, None, &[("authorization", "Bearer s3cret")]), 200, "{path}");
            assert_eq!(status(&a, path, None, &[("authorization", "bEaReR s3cret")]), 200, "{path}");
            assert_eq!(status(&a, path, None, &[("authorization", "Bearer s3cre")]), 401, "{path}");
            assert_eq!(status(&a, path, None, &[("authorization", "Basic s3cret")]), 401, "{path}");
        }
        assert_eq!(status(&a, "/health", None, &[]), 200);
        let ws = [("upgrade", "websocket")];
        assert_eq!(status(&a, "/logs", Some("access_token=s3cret"), &ws), 200);
        assert_eq!(status(&a, "/logs/name:x", Some("tail=1&access_token=s3cret"), &ws), 200);
        assert_eq!(status(&a, "/logs", Some("access_token=wrong"), &ws), 401);
        assert_eq!(status(&a, "/logs", Some("access_token=s3cret"), &[]), 401, "the query form is for WebSockets only");
        assert_eq!(status(&a, "/routes", Some("access_token=s3cret"), &ws), 401, "and for /logs only");
        let open = access(&[("LUASPOUT_API_TOKEN", "s3cret"), ("LUASPOUT_METRICS_PUBLIC", "true")]);
        assert_eq!(status(&open, "/metrics", None, &[]), 200);
        assert_eq!(status(&open, "/routes", None, &[]), 401);
    }

    #[test]
    fn an_empty_token_is_an_error_and_debug_hides_the_token() {
        let err = Access::from_env(&Env::from_pairs(&[("LUASPOUT_API_TOKEN", "")])).unwrap_err();
        assert!(err.to_string().contains("LUASPOUT_API_TOKEN is set but empty"), "{err}");
        assert!(!format!("{:?}", access(&[("LUASPOUT_API_TOKEN", "s3cret")])).contains("s3cret"));
        assert!(Access::from_env(&Env::from_pairs(&[("LUASPOUT_LOGS_CLIENTS", "0")])).is_err());
        assert_eq!(access(&[]).logs_clients, LOGS_CLIENTS);
    }

    #[test]
    fn without_a_token_a_foreign_origin_is_refused() {
        let a = access(&[]);
        assert_eq!(status(&a, "/routes", None, &[("host", "h:8080")]), 200, "curl sends no Origin");
        assert_eq!(status(&a, "/routes", None, &[("host", "h:8080"), ("origin", "http://h:8080")]), 200);
        assert_eq!(status(&a, "/logs", None, &[("host", "H"), ("origin", "http://h:80")]), 200);
        assert_eq!(status(&a, "/logs", None, &[("host", "h:443"), ("origin", "https://h")]), 200);
        assert_eq!(status(&a, "/routes", None, &[("host", "h:8080"), ("origin", "http://evil.example")]), 403);
        assert_eq!(status(&a, "/logs", None, &[("host", "h:8080"), ("origin", "http://h:8081")]), 403);
        assert_eq!(status(&a, "/logs", None, &[("host", "h:8080"), ("origin", "null")]), 403);
        assert_eq!(status(&a, "/health", None, &[("host", "h"), ("origin", "http://evil.example")]), 200);
    }

    #[test]
    fn the_warning_names_non_loopback_binds_without_a_token() {
        assert!(access(&[]).exposure_warning("0.0.0.0:80".parse().unwrap()).is_some());
        assert!(access(&[]).exposure_warning("127.0.0.1:80".parse().unwrap()).is_none());
        assert!(access(&[("LUASPOUT_API_TOKEN", "t")]).exposure_warning("0.0.0.0:80".parse().unwrap()).is_none());
    }
}
