//! Process-wide settings read once from the environment at startup: logspout's variables
//! (`PORT`, `BACKLOG`, `EXCLUDE_LABEL(S)`, …) keep their meaning;
//! the quirks docs/logspout-compat.md marks as fixed are fixed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// A snapshot of the environment, so settings and the Lua `spout.env` see the same values and
/// tests can inject their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of the given pairs (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env { vars: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// The variable's value; empty counts as unset, as everywhere in logspout.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// The variable's value as set, empty included: for the few variables where "set but empty"
    /// must be an error rather than "unset" (`LUASPOUT_API_TOKEN`).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// True when the variable is exactly `true` (logspout's boolean rule).
    pub fn is_true(&self, name: &str) -> bool {
        self.vars.get(name).is_some_and(|v| v == "true")
    }
}

/// Variables that hold luaspout's own secrets: never shown to Lua (`spout.env` answers as if
/// they were unset) or anywhere else.
pub const SECRET_VARIABLES: &[&str] = &["LUASPOUT_API_TOKEN"];

/// The settings every part of the router reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The environment the settings came from.
    pub env: Env,
    /// `HTTP_BIND_ADDRESS:PORT` (`PORT` wins over `HTTP_PORT`; default `0.0.0.0:80`).
    pub http_addr: String,
    /// `BACKLOG=true`: containers already running at startup are read from their whole history
    /// (subject to `TAIL`) instead of from now.
    pub backlog: bool,
    /// `TAIL`: how many history lines to request with `BACKLOG` (`all` or a number).
    pub tail: String,
    /// `LUASPOUT_SOURCE`: whether json-file logs are read from their files.
    pub source: SourceMode,
    /// `LUASPOUT_CONTAINERS_DIR`: where those files are (default: the engine's
    /// `DockerRootDir` + `/containers`, asked of dockerd).
    pub containers_dir: Option<PathBuf>,
    /// `ALLOW_TTY=true`: read containers created with `-t` too.
    pub allow_tty: bool,
    /// `EXCLUDE_LABELS` (or `EXCLUDE_LABEL`): a container with any of these labels is not read.
    pub exclude_labels: Vec<(String, String)>,
    /// Number of router worker threads, each with its own Lua state.
    pub workers: usize,
    /// `LUASPOUT_LUA_MEMORY_MB` (default 64), in bytes: the most memory one Lua state may hold.
    /// An allocation past it fails as a Lua error of the line that asked; a worker's state that
    /// stays near it is rebuilt from the config (its Lua-side state is lost, and that is logged).
    pub lua_memory_limit: usize,
    /// `LUASPOUT_LUA_WATCHDOG` (default 5 s): a Lua call running longer than this shows on
    /// `/health` as degraded, with its thread and route.
    pub lua_watchdog: Duration,
    /// `MULTILINE_ENABLE_DEFAULT`: whether containers without `LOGSPOUT_MULTILINE` take part
    /// in multiline grouping.
    pub multiline_default: bool,
    /// The ID of the container luaspout runs in, if it does: never read, so its own logs
    /// (which may include lines it routes) cannot loop back through it.
    pub own_container_id: Option<String>,
    /// `RETRY_COUNT` (default 10): failed connection attempts after which a route's sink is
    /// reported down on `/health`. luaspout keeps retrying; it never exits over it.
    pub retry_count: u64,
    /// When luaspout started, in ns since the epoch: containers started later are new, not
    /// history, whatever `BACKLOG` says.
    pub started_ns: i64,
    /// `LOGSPOUT_TLS_*`: the trust store and client certificate of TLS routes.
    pub tls: TlsEnv,
    /// `LUASPOUT_QUEUE_BYTES` (default [`QUEUE_BYTES`]): how many bytes of
    /// lines each route's queue holds before it pauses its containers (or drops, per
    /// `on_full`). More rides out longer outages in memory; Docker's log files are the
    /// buffer beyond it.
    pub queue_bytes: usize,
    /// `LUASPOUT_ROUTE_GRACE` (default 30 s): how long a route removed by a reload (or the
    /// API) may go on delivering what it holds; then what it still holds is dropped, counted
    /// (`dropped_route_removed`), and the cursors move on.
    pub route_grace: Duration,
    /// `LUASPOUT_WRITE_TIMEOUT` (default 30 s): the longest a TCP/TLS write may take; a peer
    /// that stops reading (or a black hole) is then reconnected and the batch sent again.
    pub write_timeout: Duration,
    /// `INACTIVITY_TIMEOUT` (logspout's): a container stream that has been silent this long is
    /// opened again from its cursor, a workaround for log-rotation stalls in old dockerds.
    pub inactivity_timeout: Option<std::time::Duration>,
    /// `LUASPOUT_STATE`: the file that keeps each container's cursor across restarts
    /// (default [`DEFAULT_STATE_FILE`]; `off` for none).
    pub state_file: Option<std::path::PathBuf>,
    /// Whether `state_file` was asked for explicitly: then failing to use it is an error at
    /// startup, while the default only warns (a plain binary run by a user without
    /// `/var/lib` write access still routes).
    pub state_file_given: bool,
}

/// logspout's `LOGSPOUT_TLS_*` variables, read once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsEnv {
    /// `LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS=true`: trust only the CA files given.
    pub disable_system_roots: bool,
    /// `LOGSPOUT_TLS_CA_CERTS`, split on commas.
    pub ca_files: Vec<PathBuf>,
    /// `LOGSPOUT_TLS_CLIENT_CERT` and `LOGSPOUT_TLS_CLIENT_KEY`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `LOGSPOUT_TLS_HARDENING=true`.
    pub hardening: bool,
}

impl TlsEnv {
    /// Reads the variables; the files they name are checked by
    /// [`crate::transport::tls::check_env_files`].
    pub fn from_env(env: &Env) -> anyhow::Result<TlsEnv> {
        let ca_files = env
            .get("LOGSPOUT_TLS_CA_CERTS")
            .map(|list| list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        let client_cert = match (env.get("LOGSPOUT_TLS_CLIENT_CERT"), env.get("LOGSPOUT_TLS_CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("LOGSPOUT_TLS_CLIENT_CERT is set but LOGSPOUT_TLS_CLIENT_KEY is not: both are needed")
            }
            (None, Some(_)) => {
                anyhow::bail!("LOGSPOUT_TLS_CLIENT_KEY is set but LOGSPOUT_TLS_CLIENT_CERT is not: both are needed")
            }
        };
        Ok(TlsEnv {
            disable_system_roots: env.is_true("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS"),
            ca_files,
            client_cert,
            hardening: env.is_true("LOGSPOUT_TLS_HARDENING"),
        })
    }
}

/// Bytes of encoded lines a route's queue holds before it counts as full: enough to ride
/// out a reconnect of a few seconds at high rates while keeping memory bounded. A full
/// `on_full = "block"` route pauses the Docker reads of the containers it takes (each pump
/// checks before handing on a line, so the queue overshoots by the lines already in the
/// router at most); a full `"drop"` route drops and counts.
pub const QUEUE_BYTES: usize = 8 << 20;

/// Where cursors are kept unless `LUASPOUT_STATE` says otherwise (the image declares
/// `VOLUME /var/lib/luaspout`).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/luaspout/state.json";

impl Settings {
    /// Reads the settings from `env`; fails on a value logspout also refuses.
    pub fn from_env(env: Env) -> anyhow::Result<Settings> {
        let port = env.get("PORT").or_else(|| env.get("HTTP_PORT")).unwrap_or_else(|| "80".into());
        let bind = env.get("HTTP_BIND_ADDRESS").unwrap_or_else(|| "0.0.0.0".into());
        let exclude = env.get("EXCLUDE_LABELS").or_else(|| env.get("EXCLUDE_LABEL"));
        let workers = env
            .get("LUASPOUT_WORKERS")
            .and_then(|w| w.parse().ok())
            .filter(|&w| w > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let multiline_default = match env.get("MULTILINE_ENABLE_DEFAULT") {
            None => true,
            Some(v) => parse_go_bool(&v).ok_or_else(|| {
                anyhow::anyhow!("MULTILINE_ENABLE_DEFAULT: {v:?} is not a boolean (use true or false)")
            })?,
        };
        let retry_count = match env.get("RETRY_COUNT") {
            None => 10,
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("RETRY_COUNT: {v:?} is not a whole number"))?,
        };
        let lua_memory_limit = lua_memory_limit(&env)?;
        let lua_watchdog = match env.get("LUASPOUT_LUA_WATCHDOG") {
            None => Duration::from_secs(5),
            Some(v) => parse_duration(&v).map_err(|e| anyhow::anyhow!("LUASPOUT_LUA_WATCHDOG: {e}"))?,
        };
        let tls = TlsEnv::from_env(&env).context("error with TLSConfig")?;
        let inactivity_timeout = match env.get("INACTIVITY_TIMEOUT") {
            None => None,
            Some(v) => Some(parse_duration(&v).map_err(|e| anyhow::anyhow!("INACTIVITY_TIMEOUT: {e}"))?)
                .filter(|d| !d.is_zero()),
        };
        let (state_file, state_file_given) = match env.get("LUASPOUT_STATE") {
            None => (Some(DEFAULT_STATE_FILE.into()), false),
            Some(v) if v.is_empty() || v.eq_ignore_ascii_case("off") => (None, true),
            Some(v) => (Some(v.into()), true),
        };
        let positive = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match env.get(name) {
                None => Ok(default),
                Some(v) => parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| anyhow::anyhow!("{name}: {v:?} is not a positive duration (e.g. 30s)")),
            }
        };
        let route_grace = positive("LUASPOUT_ROUTE_GRACE", Duration::from_secs(30))?;
        let write_timeout = positive("LUASPOUT_WRITE_TIMEOUT", Duration::from_secs(30))?;
        let queue_bytes = match env.get("LUASPOUT_QUEUE_BYTES") {
            None => QUEUE_BYTES,
            Some(v) => v.parse().ok().filter(|&b| b > 0).ok_or_else(|| {
                anyhow::anyhow!("LUASPOUT_QUEUE_BYTES: {v:?} is not a positive whole number of bytes")
            })?,
        };
        let source = match env.get("LUASPOUT_SOURCE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "auto") => SourceMode::Auto,
            Some("api") => SourceMode::Api,
            Some("files") => SourceMode::Files,
            Some(other) => anyhow::bail!("LUASPOUT_SOURCE: {other:?} is not one of auto, api, files"),
        };
        Ok(Settings {
            source,
            containers_dir: env.get("LUASPOUT_CONTAINERS_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
            route_grace,
            write_timeout,
            queue_bytes,
            inactivity_timeout,
            state_file,
            state_file_given,
            tls,
            lua_memory_limit,
            lua_watchdog,
            own_container_id: std::fs::read_to_string("/proc/self/mountinfo").ok().and_then(|m| own_container_id(&m)),
            retry_count,
            http_addr: format!("{bind}:{port}"),
            backlog: env.is_true("BACKLOG"),
            tail: env.get("TAIL").unwrap_or_else(|| "all".into()),
            allow_tty: env.is_true("ALLOW_TTY"),
            exclude_labels: exclude.as_deref().map(parse_exclude_labels).unwrap_or_default(),
            workers,
            started_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            multiline_default,
            env,
        })
    }
}

/// Where containers' lines are read from (`LUASPOUT_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// Json-file logs from their files when the containers directory is readable, the API
    /// for everything else.
    Auto,
    /// Always the API.
    Api,
    /// As `Auto`, but an unreadable containers directory is worth a warning: it was asked for.
    Files,
}

/// `LUASPOUT_LUA_MEMORY_MB` (default 64) in bytes: the memory cap of every Lua state.
pub fn lua_memory_limit(env: &Env) -> anyhow::Result<usize> {
    match env.get("LUASPOUT_LUA_MEMORY_MB") {
        None => Ok(64 << 20),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&mb| mb > 0 && mb < 1 << 20)
            .map(|mb| mb << 20)
            .ok_or_else(|| anyhow::anyhow!("LUASPOUT_LUA_MEMORY_MB: {v:?} is not a positive whole number of MiB")),
    }
}

/// The container ID in Docker's bind mounts of `/etc/hostname` and friends, which come from
/// `/var/lib/docker/containers/<id>/`: present inside a container, absent on the host.
fn own_container_id(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id = rest.get(..64)?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && rest[64..].starts_with('/')).then(|| id.to_string())
    })
}

/// A duration as Go writes it (`250ms`, `30s`, `1m30s`, `1.5h`; units `ns`, `us`, `ms`, `s`,
/// `m`, `h`), or a bare number of milliseconds, which is how logspout's forks and Lua configs
/// give `flush_interval`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (use e.g. 250ms, 30s, 1m30s, or a number of milliseconds)");
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let unit_len = rest[number_len..].bytes().take_while(u8::is_ascii_alphabetic).count();
        if number_len == 0 || unit_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        let unit_secs = match &rest[number_len..number_len + unit_len] {
            "ns" => 1e-9,
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * unit_secs;
        rest = &rest[number_len + unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Go's `strconv.ParseBool`, which logspout uses for `MULTILINE_ENABLE_DEFAULT`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `EXCLUDE_LABEL(S)`: `;`-separated `key[:value]` items.
///
/// Fixes logspout's quirk Q4: an item without a colon means `key:true` (logspout looked up a
/// label named after the whole variable), and only the first colon splits, so values may
/// contain colons.
pub fn parse_exclude_labels(spec: &str) -> Vec<(String, String)> {
    spec.split(';')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item.to_string(), "true".to_string()),
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_syntax_or_milliseconds() {
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        for bad in ["", "ms", "5 s", "5d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exclude_labels_items() {
        assert_eq!(parse_exclude_labels("logspout.exclude"), vec![("logspout.exclude".into(), "true".into())]);
        assert_eq!(
            parse_exclude_labels("k8s-app:canal;io.kubernetes.pod.namespace:default"),
            vec![("k8s-app".into(), "canal".into()), ("io.kubernetes.pod.namespace".into(), "default".into())]
        );
        assert_eq!(parse_exclude_labels("a;b"), vec![("a".into(), "true".into()), ("b".into(), "true".into())]);
        assert_eq!(parse_exclude_labels("url:http://x"), vec![("url".into(), "http://x".into())]);
    }

    #[test]
    fn port_wins_over_http_port_and_labels_win_over_label() {
        let s = Settings::from_env(Env::from_pairs(&[
            ("PORT", "8080"),
            ("HTTP_PORT", "9"),
            ("EXCLUDE_LABELS", "a:1"),
            ("EXCLUDE_LABEL", "b:2"),
        ]))
        .unwrap();
        assert_eq!(s.http_addr, "0.0.0.0:8080");
        assert_eq!(s.exclude_labels, vec![("a".into(), "1".into())]);
        let s = Settings::from_env(Env::from_pairs(&[("BACKLOG", "TRUE")])).unwrap();
        assert!(!s.backlog);
        assert_eq!(s.http_addr, "0.0.0.0:80");
        assert!(s.multiline_default);
    }

    #[test]
    fn own_container_id_from_docker_mounts() {
        let id = "f626cbec33091aae5b6407d32b2c346562c9980942386c8ca6b92fc3f47d0773";
        let inside = format!(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n90 72 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(own_container_id(&inside).as_deref(), Some(id));
        assert_eq!(own_container_id("22 27 0:21 / /proc rw,relatime - proc proc rw\n"), None);
        let err = Settings::from_env(Env::from_pairs(&[("RETRY_COUNT", "x")])).unwrap_err();
        assert!(err.to_string().contains("RETRY_COUNT"));
        assert_eq!(Settings::from_env(Env::from_pairs(&[("RETRY_COUNT", "20")])).unwrap().retry_count, 20);
    }

    #[test]
    fn multiline_default_is_a_go_bool() {
        let off = Settings::from_env(Env::from_pairs(&[("MULTILINE_ENABLE_DEFAULT", "F")])).unwrap();
        assert!(!off.multiline_default);
        let err = Settings::from_env(Env::from_pairs(&[("MULTILINE_ENABLE_DEFAULT", "yes")])).unwrap_err();
        assert!(err.to_string().starts_with("MULTILINE_ENABLE_DEFAULT: \"yes\" is not a boolean"), "{err}");
    }
}
