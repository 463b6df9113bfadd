//! Routes created through logspout's `/routes` API: bare route URIs with an ID, kept beside
//! the config file's routes (and across its reloads), and persisted one JSON file per route in
//! `ROUTESPATH` (when that directory exists at start, as in logspout) so they survive a restart.
//!
//! The JSON shape is logspout's: `{"id","adapter","address","filter_id","filter_name",
//! "filter_sources","filter_labels","options"}`, keys matched case-insensitively on input.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::uri::RouteUri;

/// A route as the API reads and writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteJson {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_sources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_labels: Vec<String>,
    pub adapter: String,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Set on routes declared in the config file, which the API cannot change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
}

impl RouteJson {
    /// Decodes a request body leniently, as logspout does: key names in any case, unknown
    /// keys ignored.
    pub fn from_body(body: &[u8]) -> Result<RouteJson, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(fields) = value else { return Err("expected a JSON object".into()) };
        let lowered: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        serde_json::from_value(serde_json::Value::Object(lowered)).map_err(|e| e.to_string())
    }

    /// The route URI it stands for (validated like a command-line URI).
    pub fn to_uri(&self) -> Result<RouteUri, String> {
        let mut query: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, v: String| {
            if !v.is_empty() {
                query.push((k.to_string(), v));
            }
        };
        add("filter.id", self.filter_id.clone());
        add("filter.name", self.filter_name.clone());
        add("filter.sources", self.filter_sources.join(","));
        add("filter.labels", self.filter_labels.join(","));
        for (k, v) in &self.options {
            query.push((k.clone(), v.clone()));
        }
        let mut text = format!("{}://{}", self.adapter, self.address);
        for (i, (k, v)) in query.iter().enumerate() {
            text.push(if i == 0 { '?' } else { '&' });
            text.push_str(&percent_encode(k));
            text.push('=');
            text.push_str(&percent_encode(v));
        }
        crate::uri::parse(&text).map_err(|e| e.to_string())
    }

    /// The same route with the values of secret options masked ([`crate::uri::is_secret_key`]),
    /// as every listing shows it; the stored route keeps them.
    pub fn redacted(mut self) -> RouteJson {
        for (key, value) in self.options.iter_mut() {
            if crate::uri::is_secret_key(key) {
                *value = crate::uri::REDACTED.to_string();
            }
        }
        self
    }

    /// The JSON of a route URI.
    pub fn from_uri(id: &str, uri: &RouteUri) -> RouteJson {
        RouteJson {
            id: id.to_string(),
            filter_id: uri.filter.id.clone().unwrap_or_default(),
            filter_name: uri.filter.name.clone().unwrap_or_default(),
            filter_sources: uri.filter.sources.clone(),
            filter_labels: uri.filter.labels.clone(),
            adapter: uri.scheme.clone(),
            address: format!("{}{}", uri.address, uri.path),
            options: uri.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            readonly: false,
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'*' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an ID can name a route and its file: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The API routes in force, in creation order, and where they are persisted.
#[derive(Debug, Default)]
pub struct ApiRoutes {
    routes: Mutex<Vec<(String, RouteUri)>>,
    dir: Option<PathBuf>,
    /// Held by a request from reading the list to publishing the new one, so two concurrent
    /// changes cannot lose one another.
    pub edit: tokio::sync::Mutex<()>,
}

impl ApiRoutes {
    /// The routes persisted in `dir` if it exists (`<id>.json` files; others are skipped with
    /// a warning), or none and no persistence.
    pub fn load(dir: &Path) -> ApiRoutes {
        if !dir.is_dir() {
            return ApiRoutes::default();
        }
        let mut routes = Vec::new();
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.sort();
        for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| RouteJson::from_body(&b))
                .and_then(|r| Ok((r.id.clone(), r.to_uri()?)));
            match loaded {
                Ok((id, uri)) if valid_id(&id) => routes.push((id, uri)),
                Ok((id, _)) => tracing::warn!(file = %path.display(), "skipping a persisted route: bad id {id:?}"),
                Err(e) => tracing::warn!(file = %path.display(), "skipping a persisted route: {e}"),
            }
        }
        ApiRoutes { routes: Mutex::new(routes), dir: Some(dir.to_path_buf()), edit: Default::default() }
    }

    /// The routes, in creation order.
    pub fn list(&self) -> Vec<(String, RouteUri)> {
        self.routes.lock().expect("routes lock").clone()
    }

    /// Replaces the list (once the config built with it is in force).
    pub fn set(&self, routes: Vec<(String, RouteUri)>) {
        *self.routes.lock().expect("routes lock") = routes;
    }

    /// Writes `<dir>/<id>.json` (pretty JSON, mode 0600) by a rename, so a crash never leaves a
    /// half-written route.
    pub fn persist(&self, id: &str, uri: &RouteUri) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let text = serde_json::to_string_pretty(&RouteJson::from_uri(id, uri)).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!(".{id}.json.tmp"));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(format!("{id}.json")))
    }

    /// Deletes a route's file.
    pub fn forget(&self, id: &str) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        match std::fs::remove_file(dir.join(format!("{id}.json"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logspout_json_round_trips_through_a_uri() {
        let body = br#"{"Adapter":"syslog","address":"127.0.0.1:5514","filter_name":"*_db","filter_sources":["stdout"],"options":{"append_tag":".db"},"unknown":1}"#;
        let r = RouteJson::from_body(body).unwrap();
        let uri = r.to_uri().unwrap();
        assert_eq!(
            uri.to_string(),
            "syslog+udp://127.0.0.1:5514?append_tag=.db&filter.name=*_db&filter.sources=stdout"
        );
        let back = RouteJson::from_uri("abc", &uri);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"{"id":"abc","filter_name":"*_db","filter_sources":["stdout"],"adapter":"syslog+udp","address":"127.0.0.1:5514","options":{"append_tag":".db"}}"#
        );
        assert_eq!(
            RouteJson { adapter: "nope".into(), address: "x:1".into(), ..Default::default() }.to_uri().unwrap_err(),
            "bad adapter: nope"
        );
        assert!(RouteJson::from_body(b"{").is_err());
        assert!(valid_id("a1_b-2") && !valid_id("../x") && !valid_id(""));
    }

    #[test]
    fn persisted_routes_load_back_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let api = ApiRoutes::load(dir.path());
        let uri = crate::uri::parse("raw+tcp://127.0.0.1:9?filter.name=x").unwrap();
        api.persist("r1", &uri).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let again = ApiRoutes::load(dir.path());
        assert_eq!(again.list(), vec![("r1".to_string(), uri)]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("r1.json")).unwrap().permissions().mode() & 0o777, 0o600);
        again.forget("r1").unwrap();
        assert!(ApiRoutes::load(dir.path()).list().is_empty());
        assert!(ApiRoutes::load(&dir.path().join("missing")).list().is_empty());
    }
}
