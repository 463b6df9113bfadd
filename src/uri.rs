//! logspout's route URIs: `adapter[+transport]://host:port[/ignored][?query]`.
//!
//! This owns the grammar users already have in their `docker run` lines and `ROUTE_URIS`:
//! the comma-split list, Go's `os.ExpandEnv`, the adapter and transport names with their
//! aliases, and the `filter.*` query keys. Parsing is strict where logspout would only fail
//! later or silently (a `;` in the query, a missing port), and every error names the offending
//! piece so it can be fixed without reading the code.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Why a route URI was rejected. The text is the whole message, so callers can prefix it with
/// the URI and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    /// The adapter (the scheme's first part) is not one luaspout has; logspout's wording.
    #[error("bad adapter: {0}")]
    BadAdapter(String),
    /// The transport (the scheme's second part) is not `udp`, `tcp` or `tls`; logspout's wording.
    #[error("bad transport: {0}")]
    BadTransport(String),
    /// `multiline://` with nothing to wrap; logspout's wording.
    #[error("multiline: adapter must have a sub-adapter, eg: multiline+raw+tcp")]
    MultilineWithoutSubAdapter,
    /// Anything else that is not a valid URI.
    #[error("{0}")]
    Malformed(String),
}

/// What formats each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `RAW_FORMAT` template output as is.
    Raw,
    /// RFC 5424 or 3164 syslog lines.
    Syslog,
    /// One JSON object per line (container, source, data, time): the default of HTTP routes,
    /// and `json+tcp://…` for collectors that read JSON lines.
    Json,
}

impl Adapter {
    /// The name used in URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Adapter::Raw => "raw",
            Adapter::Syslog => "syslog",
            Adapter::Json => "json",
        }
    }
}

/// How lines reach the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per line; logspout's default.
    Udp,
    /// A byte stream, so lines need their own framing (`\n`, or octet counting for syslog).
    Tcp,
    /// TCP wrapped in TLS, for hosted destinations such as Papertrail.
    Tls,
    /// Batches POSTed to an HTTP endpoint.
    Http,
    /// Batches POSTed over HTTPS.
    Https,
}

impl Transport {
    /// The name used in URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Http => "http",
            Transport::Https => "https",
        }
    }

    /// Whether the transport is HTTP(S), where the URI's path and query address the endpoint.
    pub fn is_http(self) -> bool {
        matches!(self, Transport::Http | Transport::Https)
    }

    /// Whether connections are wrapped in TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Https)
    }

    fn parse(s: &str) -> Option<Transport> {
        match s {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            "http" => Some(Transport::Http),
            "https" => Some(Transport::Https),
            _ => None,
        }
    }
}

/// The `filter.*` query keys, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UriFilter {
    /// `filter.id`: a container ID prefix. An empty value means no filter, as in logspout.
    pub id: Option<String>,
    /// `filter.name`: a glob on the container name. An empty value means no filter.
    pub name: Option<String>,
    /// `filter.sources`, split on `,`. As in logspout, `filter.sources=` yields one empty item,
    /// which no stream equals.
    pub sources: Vec<String>,
    /// `filter.labels`, split on `,` into raw `key:glob` items.
    pub labels: Vec<String>,
}

/// One parsed route URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUri {
    /// The normalised scheme: aliases resolved and the default transport filled in, so `tcp`
    /// becomes `raw+tcp`, `syslog` becomes `syslog+udp`, `multiline+tcp` becomes
    /// `multiline+raw+tcp`.
    pub scheme: String,
    /// Which formatter the route uses.
    pub adapter: Adapter,
    /// Which sink the route writes to.
    pub transport: Transport,
    /// The scheme started with `multiline+`.
    pub multiline: bool,
    /// `host:port` as written (IPv6 in brackets); userinfo is dropped.
    pub address: String,
    /// The path after the address, for HTTP routes (`/logs/ingest`); empty otherwise, since
    /// logspout ignores it on socket transports.
    pub path: String,
    /// The container and stream selection the query asks for.
    pub filter: UriFilter,
    /// Every other query key, first value only (`append_tag`, `structured_data`, and keys meant
    /// for other adapters).
    pub options: BTreeMap<String, String>,
}

/// Splits a route list (the command-line argument or `ROUTE_URIS`) on every literal comma, as
/// logspout does before any URL parsing, so a comma inside a query value must be written `%2C`
/// (quirk Q1, kept). Empty items are dropped.
pub fn split_uris(list: &str) -> Vec<String> {
    list.split(',').filter(|item| !item.is_empty()).map(str::to_string).collect()
}

/// Go's `os.ExpandEnv`, which logspout applies to each URI: `$NAME`, `${NAME}`, and `$` followed
/// by a digit or one of `*#$@!?-` are replaced by `lookup`'s value (unset is empty).
///
/// A `$` followed by anything else, or ending the string, stays as is; there is no escape.
/// Like Go, `${}` disappears and an unclosed `${` loses its two characters.
pub fn expand_env(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[copied..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match name {
                Some(name) => out.push_str(&lookup(name).unwrap_or_default()),
                // Valid syntax but no name: the `$` is kept.
                None if width == 0 => out.push('$'),
                // Bad syntax: Go drops the characters.
                None => {}
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// Go's `getShellName`: the variable name at the start of `s` (which follows a `$`) and how
/// many bytes it spans.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    let is_special = |c: u8| matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9');
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match b.iter().position(|&c| c == b'}') {
            Some(1) => (None, 2),
            Some(end) => (Some(&s[1..end]), end + 1),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
    if len == 0 { (None, 0) } else { (Some(&s[..len]), len) }
}

/// Parses one route URI (already split and env-expanded).
pub fn parse(uri: &str) -> Result<RouteUri, UriError> {
    if let Some(c) = uri.chars().find(|c| c.is_ascii_control()) {
        return Err(malformed(format!("contains the control character {c:?}")));
    }
    let (scheme, rest) = split_scheme(uri)?;
    let (multiline, adapter, transport) = parse_scheme(&scheme)?;

    // As Go's url.Parse: the fragment goes first, then the query, then the path.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (rest, query) = match rest.split_once('?') {
        Some((before, q)) => (before, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // Socket transports ignore userinfo, as logspout does; an HTTP route would silently send
    // no credentials, and each 401 would drop a batch, so it is refused (without echoing it).
    if transport.is_http() && authority.contains('@') {
        return Err(malformed(
            "credentials in the address (user:password@) are not sent: give an HTTP route its credentials \
             as a header (routes.lua `headers = { Authorization = \"Basic …\" }`, or ?header.Authorization=)"
                .into(),
        ));
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
    let with_default_port;
    let host_port = match default_port(transport) {
        Some(port) if !host_port.is_empty() && !has_port(host_port) => {
            with_default_port = format!("{host_port}:{port}");
            with_default_port.as_str()
        }
        _ => host_port,
    };
    check_address(host_port)?;

    let mut route = RouteUri {
        scheme: normalised_scheme(multiline, adapter, transport),
        adapter,
        transport,
        multiline,
        address: host_port.to_string(),
        path: if transport.is_http() { path.to_string() } else { String::new() },
        filter: UriFilter::default(),
        options: BTreeMap::new(),
    };
    if let Some(query) = query {
        parse_query(query, &mut route)?;
    }
    Ok(route)
}

fn malformed(msg: String) -> UriError {
    UriError::Malformed(msg)
}

/// Splits off the scheme (lowercased) and checks that an authority follows.
fn split_scheme(uri: &str) -> Result<(String, &str), UriError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(malformed(
            "missing \"://\": expected adapter[+transport]://host:port (a comma inside a query value \
             must be written %2C)"
                .into(),
        ));
    };
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !valid {
        return Err(malformed(format!(
            "invalid scheme {scheme:?}: expected adapter[+transport], such as syslog+tcp or raw+udp"
        )));
    }
    Ok((scheme.to_ascii_lowercase(), rest))
}

/// Reads `[multiline+]adapter[+transport]`, resolving the `tcp`/`udp`/`tls` aliases of
/// `raw+tcp` and so on (and `http`/`https` for `json+http`/`json+https`), and defaulting the
/// transport to udp as logspout does. Syslog has no HTTP transport.
fn parse_scheme(scheme: &str) -> Result<(bool, Adapter, Transport), UriError> {
    let (multiline, inner) = match scheme.split_once('+') {
        Some(("multiline", inner)) => (true, inner),
        None if scheme == "multiline" => return Err(UriError::MultilineWithoutSubAdapter),
        _ => (false, scheme),
    };
    let (adapter, transport) = match inner.split_once('+') {
        Some((a, t)) => (a, Some(t)),
        None => (inner, None),
    };
    let bad_transport = || UriError::BadTransport(scheme.to_string());
    match adapter {
        "raw" | "syslog" | "json" => {
            let adapter = match adapter {
                "raw" => Adapter::Raw,
                "syslog" => Adapter::Syslog,
                _ => Adapter::Json,
            };
            let transport = match transport {
                None => Transport::Udp,
                Some(t) => Transport::parse(t).ok_or_else(bad_transport)?,
            };
            if adapter == Adapter::Syslog && transport.is_http() {
                return Err(bad_transport());
            }
            Ok((multiline, adapter, transport))
        }
        alias => match (Transport::parse(alias), transport) {
            (Some(t), None) if t.is_http() => Ok((multiline, Adapter::Json, t)),
            (Some(t), None) => Ok((multiline, Adapter::Raw, t)),
            (Some(_), Some(_)) => Err(bad_transport()),
            (None, _) => Err(UriError::BadAdapter(scheme.to_string())),
        },
    }
}

fn normalised_scheme(multiline: bool, adapter: Adapter, transport: Transport) -> String {
    let prefix = if multiline { "multiline+" } else { "" };
    format!("{prefix}{}+{}", adapter.as_str(), transport.as_str())
}

impl RouteUri {
    /// The endpoint an HTTP route POSTs to: `http[s]://host:port/path`, with the query keys
    /// luaspout does not use itself (`filter.*`, [`HTTP_OPTION_KEYS`], `header.*`, `on_full`) passed on,
    /// so a collector's own parameters (`?hostname=…`) reach it.
    pub fn http_url(&self) -> String {
        let mut url = format!("{}://{}{}", self.transport.as_str(), self.address, self.path);
        let mut first = true;
        for (key, value) in &self.options {
            if HTTP_OPTION_KEYS.contains(&key.as_str()) || key == "on_full" || key.starts_with(HEADER_PREFIX) {
                continue;
            }
            url.push(if first { '?' } else { '&' });
            first = false;
            url_encode(key, &mut url);
            url.push('=');
            url_encode(value, &mut url);
        }
        url
    }
}

/// Query keys an HTTP route reads itself rather than passing on to the endpoint.
pub const HTTP_OPTION_KEYS: &[&str] = &["batch_size", "batch_bytes", "flush_interval", "gzip", "timeout"];

/// Query keys `header.NAME=value` add a request header to an HTTP route (`header.apikey=…`).
pub const HEADER_PREFIX: &str = "header.";

/// The port an address may leave out: HTTP's, as in any URL. Socket transports have none.
fn default_port(transport: Transport) -> Option<u16> {
    match transport {
        Transport::Http => Some(80),
        Transport::Https => Some(443),
        _ => None,
    }
}

/// Whether `host[:port]` or `[v6][:port]` gives a port.
fn has_port(host_port: &str) -> bool {
    match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => host_port.contains(':'),
    }
}

/// Checks `host:port` (or `[v6]:port`): a host, and a port that fits in 16 bits.
fn check_address(host_port: &str) -> Result<(), UriError> {
    if host_port.is_empty() {
        return Err(malformed("missing host:port after \"://\"".into()));
    }
    let port = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err(malformed(format!("unclosed '[' in address {host_port:?}")));
        };
        let ok = !v6.is_empty() && v6.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'%'));
        if !ok {
            return Err(malformed(format!("invalid IPv6 address {v6:?} in {host_port:?}")));
        }
        after.strip_prefix(':').ok_or_else(|| missing_port(host_port))?
    } else {
        let (host, port) = host_port.rsplit_once(':').ok_or_else(|| missing_port(host_port))?;
        if host.is_empty() {
            return Err(malformed(format!(
                "missing host in address {host_port:?} (use 127.0.0.1:{port} for this machine)"
            )));
        }
        let invalid = |c: char| c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if let Some(c) = host.chars().find(|&c| invalid(c)) {
            return Err(malformed(format!("invalid character {c:?} in host {host:?}")));
        }
        port
    };
    let valid_port = !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()) && port.parse::<u16>().is_ok();
    if !valid_port {
        return Err(malformed(format!(
            "invalid port {port:?} in address {host_port:?}: expected a number up to 65535"
        )));
    }
    Ok(())
}

fn missing_port(host_port: &str) -> UriError {
    malformed(format!("missing port in address {host_port:?}: expected host:port, such as {host_port}:514"))
}

/// Go's `url.ParseQuery` as of Go 1.17 (`&` only, `;` rejected, first value of a key wins),
/// sorting the keys into the filter and the options.
fn parse_query(query: &str, route: &mut RouteUri) -> Result<(), UriError> {
    if query.contains(';') {
        return Err(malformed(
            "the query contains ';': separate options with '&', and write a literal ';' as %3B".into(),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(key)?;
        let value = form_decode(value)?;
        if seen.contains(&key) {
            continue;
        }
        let f = &mut route.filter;
        match key.as_str() {
            "filter.id" => f.id = Some(value).filter(|v| !v.is_empty()),
            "filter.name" => f.name = Some(value).filter(|v| !v.is_empty()),
            "filter.sources" => f.sources = value.split(',').map(str::to_string).collect(),
            "filter.labels" => f.labels = value.split(',').map(str::to_string).collect(),
            _ => {
                route.options.insert(key.clone(), value);
            }
        }
        seen.push(key);
    }
    Ok(())
}

/// Decodes one query component: `+` is a space and `%XX` a byte.
pub fn form_decode(s: &str) -> Result<String, UriError> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    let shown: String = s[i..].chars().take(3).collect();
                    return Err(malformed(format!(
                        "invalid escape {shown:?} in the query: '%' must start %XX with two hex digits (write a literal '%' as %25)"
                    )));
                };
                let byte = hex_value(hex[0]) << 4 | hex_value(hex[1]);
                out.push(byte);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| malformed(format!("query component {s:?} does not decode to UTF-8 text")))
}

/// The value of an ASCII hex digit (the caller has checked that it is one).
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// Appends `s` escaped for a query component: only what would change its meaning here (`%`,
/// `&`, `+`, `,`, `;`, `=`, `#`, spaces and control characters), so names stay readable.
fn form_encode(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ' ' => out.push('+'),
            '%' | '&' | '+' | ',' | ';' | '=' | '#' => push_escape(c as u8, out),
            c if c.is_ascii_control() => push_escape(c as u8, out),
            c => out.push(c),
        }
    }
}

/// Appends `s` percent-encoded for a URL query: everything but RFC 3986's unreserved characters.
fn url_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            push_escape(b, out);
        }
    }
}

fn push_escape(byte: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

impl fmt::Display for RouteUri {
    /// The canonical form: normalised scheme, address, and the query with keys in sorted order,
    /// so equal routes print the same and the text parses back to the same route. It holds the
    /// route's secrets: show [`RouteUri::redacted`] instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_canonical(f, false)
    }
}

/// What a secret value is replaced with wherever a route is shown.
pub const REDACTED: &str = "***";

/// Whether a query key holds a credential, so its value is never shown: every `header.*` key,
/// `auth*`, and `key`, `token`, `apikey`, `api_key`, `password`, `secret` alone or ending a
/// longer key (`access_token`, `client-secret`), in any case.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace(['-', '.'], "_");
    const WORDS: &[&str] = &["key", "token", "apikey", "api_key", "password", "passwd", "secret"];
    key.starts_with("header_")
        || key.starts_with("auth")
        || WORDS.iter().any(|w| key == *w || key.strip_suffix(w).is_some_and(|rest| rest.ends_with('_')))
}

/// A route URI as written (not necessarily valid) with its secrets masked: the userinfo, and
/// the value of every query key [`is_secret_key`] names. This is the one redaction behind
/// every place a route is shown: default names, `/metrics`, `/health`, `GET /routes`, errors
/// and log lines.
pub fn redact(uri: &str) -> String {
    let (before, query) = match uri.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (uri, None),
    };
    let mut out = match before.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{path}"),
                None => before.to_string(),
            }
        }
        None => before.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if is_secret_key(&form_decode(key).unwrap_or_else(|_| key.to_string())) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

impl RouteUri {
    /// The canonical form with its secrets masked (see [`redact`]): what names, listings,
    /// errors and logs show.
    pub fn redacted(&self) -> String {
        Redacted(self).to_string()
    }

    fn write_canonical(&self, f: &mut fmt::Formatter<'_>, redact: bool) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.address, self.path)?;
        let filter = &self.filter;
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(id) = &filter.id {
            pairs.push(("filter.id", id.clone()));
        }
        if let Some(name) = &filter.name {
            pairs.push(("filter.name", name.clone()));
        }
        if !filter.sources.is_empty() {
            pairs.push(("filter.sources", filter.sources.join(",")));
        }
        if !filter.labels.is_empty() {
            pairs.push(("filter.labels", filter.labels.join(",")));
        }
        pairs.extend(self.options.iter().map(|(k, v)| {
            let shown = if redact && is_secret_key(k) { REDACTED.to_string() } else { v.clone() };
            (k.as_str(), shown)
        }));
        pairs.sort();
        let mut query = String::new();
        for (key, value) in &pairs {
            query.push(if query.is_empty() { '?' } else { '&' });
            form_encode(key, &mut query);
            query.push('=');
            form_encode(value, &mut query);
        }
        f.write_str(&query)
    }
}

/// Displays a route URI through [`RouteUri::redacted`].
struct Redacted<'a>(&'a RouteUri);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_canonical(f, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(uri: &str) -> RouteUri {
        parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn err(uri: &str) -> String {
        parse(uri).expect_err(uri).to_string()
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "H" => Some("logs".into()),
            "PORT" => Some("514".into()),
            "1" => Some("one".into()),
            "$" => Some("pid".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn http_routes_keep_their_path_and_pass_unknown_query_keys_on() {
        let r = p("https://logs.example.com/logs/ingest?hostname=n1&batch_size=5&header.apikey=K&filter.name=*_db");
        assert_eq!((r.adapter, r.transport, r.scheme.as_str()), (Adapter::Json, Transport::Https, "json+https"));
        assert_eq!((r.address.as_str(), r.path.as_str()), ("logs.example.com:443", "/logs/ingest"));
        assert_eq!(r.filter.name.as_deref(), Some("*_db"));
        assert_eq!(r.http_url(), "https://logs.example.com:443/logs/ingest?hostname=n1");
        assert_eq!(p("http://[::1]/x").address, "[::1]:80");
        assert_eq!(p("http://h:8080").http_url(), "http://h:8080");
        assert_eq!(p("raw+http://h:8080/in").scheme, "raw+http");
        assert_eq!(p("json+tcp://h:9").scheme, "json+tcp");
        assert_eq!(err("syslog+http://h:80"), "bad transport: syslog+http");
        assert_eq!(p("tcp://h:9/ignored").path, "", "socket routes ignore the path, as logspout");
        assert_eq!(p(&p("http://h/a?x=%20y&gzip=true").to_string()), p("http://h/a?x=%20y&gzip=true"));
        assert_eq!(p("http://h/a?q=a%20b%26c").http_url(), "http://h:80/a?q=a%20b%26c");
    }

    #[test]
    fn reference_rows() {
        // logspout's route URI test vectors (docs/logspout-compat.md), except the rows that need dialing.
        let r = p("syslog+tls://logs.papertrailapp.com:55555");
        assert_eq!((r.adapter, r.transport, r.multiline), (Adapter::Syslog, Transport::Tls, false));
        assert_eq!(r.scheme, "syslog+tls");
        assert_eq!(r.address, "logs.papertrailapp.com:55555");
        assert_eq!(r.filter, UriFilter::default());
        assert!(r.options.is_empty());

        let r = p("raw://192.168.10.10:5000?filter.name=*_db");
        assert_eq!((r.adapter, r.transport, r.scheme.as_str()), (Adapter::Raw, Transport::Udp, "raw+udp"));
        assert_eq!(r.filter.name.as_deref(), Some("*_db"));

        assert_eq!(p("raw://h:5000?filter.sources=stdout%2Cstderr").filter.sources, ["stdout", "stderr"]);
        assert_eq!(p("raw://h:5000?filter.labels=a:x*%2Cb:*y").filter.labels, ["a:x*", "b:*y"]);
        assert_eq!(p("raw://h:5000?filter.id=3b6ba57db54a").filter.id.as_deref(), Some("3b6ba57db54a"));

        let r = p("syslog://h:514?append_tag=.db&structured_data=k%3Dv");
        assert_eq!(
            r.options,
            BTreeMap::from([("append_tag".into(), ".db".into()), ("structured_data".into(), "k=v".into())])
        );

        let list = split_uris("raw://h:1?filter.name=*_db,syslog+tls://p:2?filter.name=*_app");
        assert_eq!(list.len(), 2);
        assert_eq!(p(&list[1]).filter.name.as_deref(), Some("*_app"));

        let list = split_uris("raw://h:1?filter.sources=stdout,stderr");
        assert_eq!(list, ["raw://h:1?filter.sources=stdout", "stderr"]);
        assert!(err(&list[1]).contains("%2C"), "the error hints at the comma rule");

        assert_eq!(p("SYSLOG://h:514").adapter, Adapter::Syslog);
        assert_eq!(p(&expand_env("syslog://$H:514", &env)).address, "logs:514");

        let r = p("tcp://h:5000/some/path?x=1&x=2");
        assert_eq!((r.scheme.as_str(), r.address.as_str()), ("raw+tcp", "h:5000"));
        assert_eq!(r.options, BTreeMap::from([("x".into(), "1".into())]));

        assert_eq!(err("multiline://h:1"), "multiline: adapter must have a sub-adapter, eg: multiline+raw+tcp");
        assert_eq!(err("foo://h:1"), "bad adapter: foo");
        assert_eq!(err("raw+sctp://h:1"), "bad transport: raw+sctp");
    }

    #[test]
    fn schemes_and_aliases() {
        for (uri, scheme, adapter, transport) in [
            ("udp://h:1", "raw+udp", Adapter::Raw, Transport::Udp),
            ("tls://h:1", "raw+tls", Adapter::Raw, Transport::Tls),
            ("Raw+TCP://h:1", "raw+tcp", Adapter::Raw, Transport::Tcp),
            ("syslog+udp://h:1", "syslog+udp", Adapter::Syslog, Transport::Udp),
        ] {
            let r = p(uri);
            assert_eq!(
                (r.scheme.as_str(), r.adapter, r.transport, r.multiline),
                (scheme, adapter, transport, false),
                "{uri}"
            );
        }
        for (uri, scheme) in [
            ("multiline+raw+tcp://h:1", "multiline+raw+tcp"),
            ("multiline+tcp://h:1", "multiline+raw+tcp"),
            ("multiline+syslog://h:1", "multiline+syslog+udp"),
            ("MULTILINE+syslog+tls://h:1", "multiline+syslog+tls"),
        ] {
            let r = p(uri);
            assert!(r.multiline, "{uri}");
            assert_eq!(r.scheme, scheme);
        }
        assert_eq!(err("multiline+foo+tcp://h:1"), "bad adapter: multiline+foo+tcp");
        assert_eq!(err("multiline+multiline+raw://h:1"), "bad adapter: multiline+multiline+raw");
        assert_eq!(err("raw+tcp+x://h:1"), "bad transport: raw+tcp+x");
        assert_eq!(err("raw+://h:1"), "bad transport: raw+");
        assert_eq!(err("tcp+udp://h:1"), "bad transport: tcp+udp");
        assert_eq!(err("gelf+udp://h:1"), "bad adapter: gelf+udp");
    }

    #[test]
    fn addresses() {
        assert_eq!(p("syslog://user:pw@h:514/p").address, "h:514");
        let e = err("https://user:TOPSECRET@h/in");
        assert!(e.contains("headers") && !e.contains("TOPSECRET"), "{e}");
        assert_eq!(p("syslog://[::1]:514").address, "[::1]:514");
        assert_eq!(p("syslog://my_syslog.local:514#frag").address, "my_syslog.local:514");
        assert!(err("raw://").contains("missing host:port"));
        assert!(err("raw://?filter.name=x").contains("missing host:port"));
        assert!(err("raw://h").contains("missing port in address \"h\""));
        assert!(err("raw://:514").contains("missing host"));
        assert!(err("raw://h:").contains("invalid port \"\""));
        assert!(err("raw://h:70000").contains("invalid port \"70000\""));
        assert!(err("raw://h:x1").contains("invalid port"));
        assert!(err("raw://h h:1").contains("invalid character ' ' in host"));
        assert!(err("raw://[::1]").contains("missing port"));
        assert!(err("raw://[::1:514").contains("unclosed '['"));
        assert!(err("raw://h:1\n").contains("control character"));
    }

    #[test]
    fn malformed_uris() {
        assert!(err("raw:h:514").contains("missing \"://\""));
        assert!(err("").contains("missing \"://\""));
        assert!(err("1raw://h:1").contains("invalid scheme \"1raw\""));
        assert!(err(" raw://h:1").contains("invalid scheme \" raw\""));
        assert_eq!(err("://h:1"), "invalid scheme \"\": expected adapter[+transport], such as syslog+tcp or raw+udp");
    }

    #[test]
    fn queries() {
        assert!(err("raw://h:1?a=1;b=2").contains("';'"));
        let e = err("raw://h:1?filter.name=%zz");
        assert!(e.contains("\"%zz\"") && e.contains("%25"), "{e}");
        assert!(err("raw://h:1?x=%4").contains("\"%4\""));
        assert!(err("raw://h:1?x=%").contains("\"%\""));
        assert!(err("raw://h:1?x=%ff").contains("UTF-8"));

        let r = p("raw://h:1?append_tag=a+b%2Bc&flag&=v&&filter.id=&filter.name=&k=%C3%A9");
        assert_eq!(
            r.options,
            BTreeMap::from([
                ("append_tag".into(), "a b+c".into()),
                ("flag".into(), String::new()),
                (String::new(), "v".into()),
                ("k".into(), "é".into()),
            ])
        );
        assert_eq!(r.filter, UriFilter::default(), "empty filter.id and filter.name mean no filter");
        assert_eq!(p("raw://h:1?filter.sources=").filter.sources, [""], "as Go's strings.Split");
        assert_eq!(p("raw://h:1?filter.labels=a%2Cb:c&filter.labels=z").filter.labels, ["a", "b:c"]);
        assert!(p("raw://h:1?Filter.Name=x").options.contains_key("Filter.Name"), "keys are case-sensitive");
    }

    #[test]
    fn canonical_display() {
        assert_eq!(p("SYSLOG://h:514").to_string(), "syslog+udp://h:514");
        assert_eq!(p("tcp://u@h:5000/path?").to_string(), "raw+tcp://h:5000");
        let uri = "multiline+tcp://h:1?z=1&filter.sources=stdout%2Cstderr&filter.name=*_db&filter.labels=a:x*%2Cb:*y&filter.id=3b6b&append_tag=a+b%25%26";
        let shown = p(uri).to_string();
        assert_eq!(
            shown,
            "multiline+raw+tcp://h:1?append_tag=a+b%25%26&filter.id=3b6b&filter.labels=a:x*%2Cb:*y&filter.name=*_db&filter.sources=stdout%2Cstderr&z=1"
        );
        assert_eq!(p(&shown), p(uri), "the canonical form parses back to the same route");
        assert_eq!(split_uris(&shown).len(), 1, "and survives the comma split");
    }

    #[test]
    fn secrets_are_masked_in_every_form() {
        let uri = "http://host/ingest?header.X-Api-Key=TOPSECRET42&api_key=TOPSECRET43&hostname=h1&Token=t&Authorization=a&access_token=x&monkey=ok&gzip=true";
        let shown = p(uri).redacted();
        assert_eq!(
            shown,
            "json+http://host:80/ingest?Authorization=***&Token=***&access_token=***&api_key=***&gzip=true&header.X-Api-Key=***&hostname=h1&monkey=ok"
        );
        let raw = redact(uri);
        assert_eq!(
            raw,
            "http://host/ingest?header.X-Api-Key=***&api_key=***&hostname=h1&Token=***&Authorization=***&access_token=***&monkey=ok&gzip=true"
        );
        assert_eq!(redact("raw+tcp://h:1"), "raw+tcp://h:1");
        assert_eq!(redact("syslog+tls://user:pw@h:1/x?k=v"), "syslog+tls://***@h:1/x?k=v");
        assert_eq!(redact("not a uri ?password=x"), "not a uri ?password=***");
        assert_eq!(redact("http://h/?header%2Ex=1"), "http://h/?header%2Ex=***", "keys are decoded first");
        for key in
            ["key", "KEY", "apikey", "api-key", "password", "secret", "client_secret", "auth", "auth_token", "header.a"]
        {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["hostname", "batch_size", "monkey", "tokens", "filter.name", "append_tag"] {
            assert!(!is_secret_key(key), "{key}");
        }
        assert_eq!(
            p(uri).to_string().matches("TOPSECRET").count(),
            2,
            "the canonical form keeps them (sinks need them)"
        );
    }

    #[test]
    fn split_drops_empty_items() {
        assert_eq!(split_uris(""), Vec::<String>::new());
        assert_eq!(split_uris(",a,,b,"), ["a", "b"]);
    }

    #[test]
    fn expansion_follows_go() {
        let x = |s: &str| expand_env(s, &env);
        assert_eq!(x("syslog://${H}:$PORT"), "syslog://logs:514");
        assert_eq!(x("$UNSET-x"), "-x");
        assert_eq!(x("$EMPTY."), ".");
        assert_eq!(x("a$1b"), "aoneb", "a digit is a one-character name");
        assert_eq!(x("$12"), "one2");
        assert_eq!(x("$$"), "pid");
        assert_eq!(x("${$}"), "pid");
        assert_eq!(x("${1}0"), "one0");
        assert_eq!(x("$H_x"), "", "names take letters, digits and _");
        assert_eq!(x("$H.x"), "logs.x");
        assert_eq!(x("100$"), "100$", "a final $ stays");
        assert_eq!(x("a$/b"), "a$/b", "$ before anything else stays");
        assert_eq!(x("$%zz"), "$%zz");
        assert_eq!(x("${}x"), "x", "Go drops ${{}}");
        assert_eq!(x("${H"), "H", "Go drops an unclosed ${{");
        assert_eq!(x("${H:-d}"), "", "no shell defaults: the name is `H:-d`");
        assert_eq!(x("é$H€"), "élogs€");
        assert_eq!(x("no dollars"), "no dollars");
    }
}
