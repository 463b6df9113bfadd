//! The validated configuration: which routes exist, where they send, what they match and
//! whether they call Lua.
//!
//! Plain data: a config is built by running `routes.lua` (or the embedded default from `lua/`)
//! in a fresh Lua state ([`crate::lua::load`]), which checks everything it declared (unknown
//! keys, bad URIs and bad globs fail there, with `file:line`, before anything runs) and fills
//! in the [`RouteSpec`]s kept here. The Lua functions themselves stay behind: each router
//! worker re-runs the same chunk in its own state and takes the functions from there, so no
//! Lua value ever crosses a thread.

pub mod api;
pub mod cases;
pub mod from_uri;
pub mod options;
pub mod watch;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::message::Source;
use crate::multiline;
use crate::settings::Env;
use crate::uri::RouteUri;

/// The default config path, used when it exists and nothing else is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/luaspout/routes.lua";

/// The embedded default config: URIs from the command line become routes.
const EMBEDDED_DEFAULT: &str = include_str!("../../lua/default.lua");

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from, for messages (`/etc/luaspout/routes.lua`, `<embedded default>`).
    pub source_name: String,
    /// The chunk name given to Lua, so errors read `file:line: message`.
    pub chunk_name: String,
    /// The Lua source text, re-run by each worker.
    pub text: String,
    /// Directory searched by `require`, if the config is a file.
    pub dir: Option<PathBuf>,
    /// The route URIs from the command line or `ROUTE_URIS` (`spout.args`).
    pub args: Vec<String>,
    /// The environment `spout.env` reads.
    pub env: Env,
    /// The declared routes, in declaration order.
    pub routes: Vec<RouteSpec>,
    /// Top-level `multiline{}` rules: grouping applied before routing, shared by all routes.
    pub multiline: Vec<MultilineRule>,
    /// The config file and the files it `require`d: what a reload watches.
    pub files: Vec<PathBuf>,
    /// A digest of the text of every file in `files`, to tell a real change from a touch.
    pub fingerprint: u64,
}

/// A top-level multiline rule: the containers it groups, and how.
#[derive(Debug, Clone)]
pub struct MultilineRule {
    pub containers: MatchSpec,
    pub spec: Arc<multiline::Spec>,
}

/// One declared route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Unique name: given, or derived from the URI.
    pub name: String,
    /// The parsed target URI.
    pub uri: RouteUri,
    /// Container and stream selection (URI filters and `match`, all of which must hold).
    pub matcher: MatchSpec,
    /// Whether the route has a Lua `filter`.
    pub has_filter: bool,
    /// Whether the route has a Lua `format`.
    pub has_format: bool,
    /// Grouping of this route's lines (`multiline+…` URI or `multiline = {…}`).
    pub multiline: Option<Arc<multiline::Spec>>,
    /// What happens to a line whose `filter` or `format` raised an error.
    pub on_error: OnError,
    /// What a full queue does: pause the containers the route takes, or drop its lines.
    pub on_full: options::OnFull,
    /// The route's own TLS options (`tls = {…}`), for tls and https routes.
    pub tls: options::TlsOptions,
    /// Batching and request options, for http and https routes.
    pub http: options::HttpOptions,
    /// Where the route was declared.
    pub origin: Origin,
}

/// Who declared a route: the config file (whose Lua functions the workers load), or the
/// `/routes` API (a bare URI, kept across reloads of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Lua,
    /// Created with `POST /routes`; its name is its ID.
    Api,
}

impl Config {
    /// The same config with `api` as its API routes (after the file's, replacing any before).
    pub fn with_api_routes(mut self, api: &[(String, RouteUri)]) -> Result<Config, String> {
        self.routes.retain(|r| r.origin == Origin::Lua);
        for (id, uri) in api {
            if self.routes.iter().any(|r| &r.name == id) {
                return Err(format!("route id {id:?} is the name of a route in {}", self.source_name));
            }
            self.routes.push(from_uri::uri_route(id.clone(), uri.clone(), &self.env)?);
        }
        Ok(self)
    }
}

/// A route's policy for a line whose Lua function failed (raised, or ran out of budget). The
/// error is counted and logged either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The line goes out in the route's default format (nothing is lost).
    Pass,
    /// The line is dropped for this route.
    Drop,
}

/// What a route selects, as declared; compiled into a [`crate::route::Matcher`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchSpec {
    /// Globs on the container name; all must match.
    pub names: Vec<String>,
    /// Container ID prefixes (short or full); all must match.
    pub ids: Vec<String>,
    /// Glob on the image reference.
    pub image: Option<String>,
    /// Allowed streams; `None` means both.
    pub sources: Option<Vec<Source>>,
    /// `(label key, glob on its value)`; a missing label counts as the empty string.
    pub labels: Vec<(String, String)>,
}

/// Where to read the config from.
#[derive(Debug, Clone)]
pub enum ConfigLocation {
    /// A `routes.lua` file.
    File(PathBuf),
    /// The embedded default.
    Embedded,
}

impl ConfigLocation {
    /// `--config`, else `LUASPOUT_CONFIG`, else `/etc/luaspout/routes.lua` if it exists, else
    /// the embedded default.
    pub fn resolve(cli: Option<PathBuf>, env: &Env) -> ConfigLocation {
        if let Some(path) = cli.or_else(|| env.get("LUASPOUT_CONFIG").map(PathBuf::from)) {
            return ConfigLocation::File(path);
        }
        if Path::new(DEFAULT_CONFIG_PATH).exists() {
            return ConfigLocation::File(PathBuf::from(DEFAULT_CONFIG_PATH));
        }
        ConfigLocation::Embedded
    }

    /// Reads the config's text: a config that declares nothing yet, for [`crate::lua::validate`].
    ///
    /// `args` are the route URIs given on the command line (already split and env-expanded).
    pub fn read(&self, args: Vec<String>, env: Env) -> anyhow::Result<Config> {
        let (source_name, text, dir, files) = match self {
            ConfigLocation::File(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read config", path.display()))?;
                if bytes.first() == Some(&0x1b) {
                    anyhow::bail!(
                        "{}: is a binary (precompiled) Lua chunk; luaspout loads Lua source only",
                        path.display()
                    );
                }
                let text = String::from_utf8(bytes)
                    .with_context(|| format!("{}: cannot read config: not UTF-8 text", path.display()))?;
                let dir =
                    path.parent().map(|d| if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.to_path_buf() });
                (path.display().to_string(), text, dir, vec![path.clone()])
            }
            ConfigLocation::Embedded => {
                ("<embedded default>".to_string(), EMBEDDED_DEFAULT.to_string(), None, Vec::new())
            }
        };
        let chunk_name = match self {
            ConfigLocation::File(_) => format!("@{source_name}"),
            ConfigLocation::Embedded => "@lua/default.lua".to_string(),
        };
        Ok(Config { chunk_name, text, dir, files, ..Config::from_text(&source_name, "", env) }.with_args(args))
    }
}

impl Config {
    /// A config of `text` alone, named `name`, that declares nothing yet (tests, benches and
    /// [`ConfigLocation::read`] start from it).
    pub fn from_text(name: &str, text: &str, env: Env) -> Config {
        Config {
            source_name: name.to_string(),
            chunk_name: format!("@{name}"),
            text: text.to_string(),
            dir: None,
            args: Vec::new(),
            env,
            routes: Vec::new(),
            multiline: Vec::new(),
            files: Vec::new(),
            fingerprint: 0,
        }
    }

    /// The same config with `args` as `spout.args`.
    pub fn with_args(mut self, args: Vec<String>) -> Config {
        self.args = args;
        self
    }

    /// The config with what running it declared: its routes, its multiline rules, and the
    /// files it `require`d, which are watched with the certificate files its routes read.
    pub fn with_declarations(
        mut self,
        routes: Vec<RouteSpec>,
        multiline: Vec<MultilineRule>,
        required: Vec<PathBuf>,
    ) -> Config {
        self.routes = routes;
        self.multiline = multiline;
        self.files.extend(required);
        self.files.extend(tls_files(&self));
        let mut digest = std::hash::DefaultHasher::new();
        self.text.hash(&mut digest);
        for path in self.files.iter().skip(1) {
            std::fs::read(path).unwrap_or_default().hash(&mut digest);
        }
        self.fingerprint = digest.finish();
        self
    }
}

/// The certificate and key files the config's TLS routes read: watched like the config, so a
/// renewed certificate is loaded by a reload without a restart.
fn tls_files(config: &Config) -> Vec<PathBuf> {
    if !config.routes.iter().any(|r| r.uri.transport.is_tls()) {
        return Vec::new();
    }
    let env = crate::settings::TlsEnv::from_env(&config.env).unwrap_or_default();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut add = |ca: &[PathBuf], cert: &Option<(PathBuf, PathBuf)>| {
        for f in ca.iter().chain(cert.iter().flat_map(|(c, k)| [c, k])) {
            if !files.contains(f) {
                files.push(f.clone());
            }
        }
    };
    add(&env.ca_files, &env.client_cert);
    for route in config.routes.iter().filter(|r| r.uri.transport.is_tls()) {
        add(&route.tls.ca, &route.tls.client_cert);
    }
    files
}

/// A multiline spec from explicit options (a URI's `multiline.*` keys, a Lua table), with
/// logspout's `MULTILINE_*` variables as defaults for the keys not given.
///
/// When `start` or `continue` is given, the `MULTILINE_MATCH`/`MULTILINE_PATTERN` defaults do
/// not apply: they describe the other family of modes.
pub fn multiline_spec(explicit: &HashMap<String, String>, env: &Env) -> Result<multiline::Spec, String> {
    let start_continue = explicit.contains_key("start") || explicit.contains_key("continue");
    multiline::Spec::from_options(&|key| {
        explicit.get(key).cloned().or_else(|| {
            if start_continue && (key == "match" || key == "pattern") {
                return None;
            }
            env.get(&format!("MULTILINE_{}", key.to_ascii_uppercase()))
        })
    })
}

/// Turns the command-line argument or `ROUTE_URIS` into the list of URIs, as logspout does:
/// split on every comma, then expand `$VAR` in each.
pub fn route_args(arg: Option<&str>, env: &Env) -> Vec<String> {
    let list = match arg {
        Some(a) => a.to_string(),
        None => env.get("ROUTE_URIS").unwrap_or_default(),
    };
    crate::uri::split_uris(&list).into_iter().map(|u| crate::uri::expand_env(&u, &|name| env.get(name))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_env_defaults_fill_what_is_not_given() {
        let env = Env::from_pairs(&[
            ("MULTILINE_MATCH", "first"),
            ("MULTILINE_PATTERN", "^\\["),
            ("MULTILINE_FLUSH_AFTER", "900"),
        ]);
        let spec = multiline_spec(&HashMap::new(), &env).unwrap();
        assert_eq!(spec.mode, multiline::Mode::First);
        assert_eq!(spec.flush_after_ns, 900_000_000);
        let explicit = HashMap::from([("start".to_string(), "^\\d".to_string())]);
        let spec = multiline_spec(&explicit, &env).unwrap();
        assert_eq!(spec.mode, multiline::Mode::StartContinue);
        assert!(multiline_spec(&HashMap::new(), &Env::from_pairs(&[("MULTILINE_MATCH", "sideways")])).is_err());
    }

    #[test]
    fn route_args_split_and_expand() {
        let env = Env::from_pairs(&[("H", "logs"), ("ROUTE_URIS", "raw://a:1,raw://b:2")]);
        assert_eq!(route_args(Some("syslog://$H:514,tcp://x:1"), &env), ["syslog://logs:514", "tcp://x:1"]);
        assert_eq!(route_args(None, &env), ["raw://a:1", "raw://b:2"]);
    }
}
