//! Loading a config: `routes.lua` (or the embedded default) run in a sandboxed state, every
//! `route{}`, `multiline{}` and `test{}` it declares checked key by key, and the result handed
//! to [`crate::config`] as plain data. Errors read `file:line: message`.
//!
//! The same code serves validation (`luaspout check`, startup, reloads) and the router
//! workers and batch threads, which each run the chunk again in their own state and keep its
//! `filter`, `format` and `batch` functions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::anyhow;
use mlua::{Function, Lua, LuaSerdeExt, Table, Value};

use super::error_text;
use super::guard::Guard;
use super::sandbox::{self, LoadMode};
use crate::config::cases::{SampleInput, TestCase};
use crate::config::from_uri::{uri_matcher, uri_multiline, uri_on_full};
use crate::config::options::{HttpOptions, OnFull, TlsOptions};
use crate::config::{Config, ConfigLocation, MatchSpec, MultilineRule, OnError, Origin, RouteSpec, multiline_spec};
use crate::message::Source;
use crate::settings::Env;

/// Reads and validates a config.
///
/// `args` are the route URIs given on the command line (already split and env-expanded).
pub fn load(location: &ConfigLocation, args: Vec<String>, env: Env) -> anyhow::Result<Config> {
    validate(location.read(args, env)?)
}

/// [`load`], also returning the config's `test{}` cases, which only `luaspout check` runs
/// (they are plain data, kept off [`Config`] so the router never carries them).
pub fn load_with_tests(
    location: &ConfigLocation,
    args: Vec<String>,
    env: Env,
) -> anyhow::Result<(Config, Vec<TestCase>)> {
    validate_with_tests(location.read(args, env)?)
}

/// Validates a config whose text is already read: runs it and fills in what it declared.
pub fn validate(config: Config) -> anyhow::Result<Config> {
    validate_with_tests(config).map(|(config, _)| config)
}

/// [`validate`], also returning the config's `test{}` cases.
pub fn validate_with_tests(config: Config) -> anyhow::Result<(Config, Vec<TestCase>)> {
    let loaded = LoadedConfig::load(&config, LoadMode::Validate)?;
    let routes = loaded.routes.into_iter().map(|r| r.spec).collect();
    Ok((config.with_declarations(routes, loaded.multiline, loaded.required), loaded.tests))
}

/// The keys a route table may have.
const ROUTE_KEYS: &[&str] = &[
    "name",
    "to",
    "match",
    "filter",
    "format",
    "multiline",
    "on_error",
    "on_full",
    "tls",
    "batch",
    "headers",
    "batch_size",
    "batch_bytes",
    "flush_interval",
    "gzip",
    "timeout",
];
/// The route keys only HTTP routes take.
const HTTP_ROUTE_KEYS: &[&str] =
    &["batch", "headers", "batch_size", "batch_bytes", "flush_interval", "gzip", "timeout"];
/// The keys a route's `tls` table may have.
const TLS_KEYS: &[&str] = &["ca", "cert", "key", "server_name", "system_roots"];
/// The key of a top-level `multiline{}` rule that selects containers; the others are the
/// grouping options of [`crate::multiline::OPTION_KEYS`].
const CONTAINERS_KEY: &str = "containers";
/// The keys a `match` table may have.
const MATCH_KEYS: &[&str] = &["name", "id", "image", "sources", "labels"];
/// The keys a `test{}` table may have.
const TEST_KEYS: &[&str] = &["name", "input", "route", "expect"];

/// Lua run before the config: `route` raises errors at the caller's line (level 2), which a
/// Rust callback cannot do by itself.
const PRELUDE: &str = r#"
local register, register_multiline, register_test = ...
function route(t)
  local err = register(t)
  if err then error(err, 2) end
end
function multiline(t)
  local err = register_multiline(t)
  if err then error(err, 2) end
end
-- A test case for `luaspout check`; register_test reads its caller's `file:line` itself.
function test(t)
  local err = register_test(t)
  if err then error(err, 2) end
end
"#;

/// One route as the chunk declared it, with its Lua functions.
pub struct LoadedRoute {
    pub spec: RouteSpec,
    pub filter: Option<Function>,
    pub format: Option<Function>,
    /// HTTP routes: builds a request body from a batch of formatted lines.
    pub batch: Option<Function>,
}

/// A Lua state that has run the config, and what it declared.
pub struct LoadedConfig {
    pub lua: Lua,
    /// The state's guard, for the calls its owner makes next.
    pub guard: Rc<Guard>,
    pub routes: Vec<LoadedRoute>,
    pub multiline: Vec<MultilineRule>,
    /// Files the config loaded with `require`.
    pub required: Vec<PathBuf>,
    /// The `test{}` cases, in declaration order: run by `luaspout check`, never by the router.
    pub tests: Vec<TestCase>,
}

impl LoadedConfig {
    /// Builds a fresh state, runs `config.text` in it and validates every `route{}` call.
    pub fn load(config: &Config, mode: LoadMode) -> anyhow::Result<LoadedConfig> {
        Self::load_carrying(config, mode, Vec::new())
    }

    /// As [`LoadedConfig::load`], with the `spout.state` tables of a previous state of the same
    /// worker carried over (a reload), so counters and windows do not reset.
    pub fn load_carrying(
        config: &Config,
        mode: LoadMode,
        states: Vec<(String, super::spout::StateValue)>,
    ) -> anyhow::Result<LoadedConfig> {
        let memory_cap = crate::settings::lua_memory_limit(&config.env)?;
        let state = sandbox::new_state(config, mode, memory_cap)
            .and_then(|state| super::spout::import_states(&state.lua, states).map(|()| state))
            .map_err(|e| anyhow!("{}: {}", config.source_name, error_text(&e)))?;
        let lua = state.lua;
        let declared: Rc<RefCell<Vec<LoadedRoute>>> = Rc::default();
        let rules: Rc<RefCell<Vec<MultilineRule>>> = Rc::default();
        let register = {
            let (declared, env, dir) = (declared.clone(), config.env.clone(), config.dir.clone());
            lua.create_function(move |_, t: Value| {
                Ok(register_route(t, &env, dir.as_deref(), &mut declared.borrow_mut()).err())
            })
        };
        let register_multiline = {
            let (rules, env) = (rules.clone(), config.env.clone());
            lua.create_function(move |_, t: Value| Ok(register_rule(t, &env, &mut rules.borrow_mut()).err()))
        };
        let tests: Rc<RefCell<Vec<TestCase>>> = Rc::default();
        let register_test = {
            let tests = tests.clone();
            lua.create_function(move |lua, t: Value| {
                // Level 0 is this function, 1 the prelude's `test`, 2 the config that called it.
                let location = lua
                    .inspect_stack(2, |d| {
                        let src = d.source().short_src.map(|s| s.into_owned()).unwrap_or_default();
                        format!("{src}:{}", d.current_line().unwrap_or(0))
                    })
                    .unwrap_or_default();
                Ok(register_test(lua, t, location, &mut tests.borrow_mut()).err())
            })
        };
        let run = || -> mlua::Result<()> {
            lua.load(PRELUDE).set_name("=prelude").call::<()>((register?, register_multiline?, register_test?))?;
            state.guard.for_load();
            lua.load(&config.text).set_name(config.chunk_name.as_str()).set_mode(mlua::chunk::ChunkMode::Text).exec()
        };
        run().map_err(|e| anyhow!("{}", error_text(&e)))?;
        if mode != LoadMode::Validate {
            super::spout::enable_log(&lua);
        }
        let routes = std::mem::take(&mut *declared.borrow_mut());
        let multiline = std::mem::take(&mut *rules.borrow_mut());
        let required = std::mem::take(&mut *state.required.borrow_mut());
        let tests = std::mem::take(&mut *tests.borrow_mut());
        Ok(LoadedConfig { lua, guard: state.guard, routes, multiline, required, tests })
    }
}

/// Checks one `route{}` table and records it; the error text gets `file:line` from the prelude.
fn register_route(t: Value, env: &Env, dir: Option<&Path>, declared: &mut Vec<LoadedRoute>) -> Result<(), String> {
    let Value::Table(t) = t else {
        return Err(format!("route expects a table, got {}", t.type_name()));
    };
    check_keys(&t, ROUTE_KEYS, "route")?;
    let to = match t.raw_get::<Value>("to").map_err(|e| e.to_string())? {
        Value::String(s) => s.to_str().map_err(|_| "route `to` is not valid UTF-8".to_string())?.to_string(),
        Value::Nil => return Err("route needs `to`, the target URI (e.g. to = \"syslog+tcp://host:514\")".into()),
        other => return Err(format!("route `to` must be a string, got {}", other.type_name())),
    };
    let uri = crate::uri::parse(&to).map_err(|e| format!("route `to` {:?}: {e}", crate::uri::redact(&to)))?;
    let name = match t.raw_get::<Value>("name").map_err(|e| e.to_string())? {
        Value::Nil => unique_name(&uri.redacted(), declared),
        Value::String(s) => {
            let name = s.to_string_lossy();
            if declared.iter().any(|r| r.spec.name == name) {
                return Err(format!("route name {name:?} is used twice; names must be unique"));
            }
            name
        }
        other => return Err(format!("route `name` must be a string, got {}", other.type_name())),
    };
    let filter = function_field(&t, "filter")?;
    let format = function_field(&t, "format")?;
    let mut matcher = uri_matcher(&uri)?;
    match t.raw_get::<Value>("match").map_err(|e| e.to_string())? {
        Value::Nil => {}
        Value::Table(m) => merge_match(&m, &mut matcher)?,
        other => return Err(format!("route `match` must be a table, got {}", other.type_name())),
    }
    let tls = match t.raw_get::<Value>("tls").map_err(|e| e.to_string())? {
        Value::Nil => TlsOptions::default(),
        Value::Table(o) if uri.transport.is_tls() => tls_options(&o, dir)?,
        Value::Table(_) => {
            return Err(format!(
                "route `tls` applies to tls and https routes only, and {:?} is {}",
                uri.redacted(),
                uri.transport.as_str()
            ));
        }
        other => return Err(format!("route `tls` must be a table, got {}", other.type_name())),
    };
    let (http, batch) = if uri.transport.is_http() {
        http_options(&t, &uri)?
    } else {
        if let Some(key) = HTTP_ROUTE_KEYS.iter().find(|k| !matches!(t.raw_get::<Value>(**k), Ok(Value::Nil))) {
            return Err(format!(
                "route `{key}` applies to http and https routes only, and {:?} is not one",
                uri.redacted()
            ));
        }
        (HttpOptions::default(), None)
    };
    let mut multiline = match t.raw_get::<Value>("multiline").map_err(|e| e.to_string())? {
        Value::Nil => None,
        Value::Table(m) => {
            check_keys(&m, &crate::multiline::OPTION_KEYS, "multiline")?;
            Some(multiline_spec(&option_strings(&m)?, env)?)
        }
        other => return Err(format!("route `multiline` must be a table, got {}", other.type_name())),
    };
    if multiline.is_none() {
        multiline = uri_multiline(&uri, env)?;
    }
    let multiline = multiline.map(Arc::new);
    let on_error = match t.raw_get::<Value>("on_error").map_err(|e| e.to_string())? {
        Value::Nil => OnError::Pass,
        Value::String(s) if s.as_bytes().as_ref() == b"pass" => OnError::Pass,
        Value::String(s) if s.as_bytes().as_ref() == b"drop" => OnError::Drop,
        other => {
            return Err(format!(
                "route `on_error` must be \"pass\" or \"drop\", got {}",
                other.to_string().unwrap_or_default()
            ));
        }
    };
    let on_full = match t.raw_get::<Value>("on_full").map_err(|e| e.to_string())? {
        Value::Nil => uri_on_full(&uri)?,
        Value::String(s) => OnFull::parse(&s.to_string_lossy()).map_err(|e| format!("route {e}"))?,
        other => return Err(format!("route `on_full` must be a string, got {}", other.type_name())),
    };
    let spec = RouteSpec {
        name,
        uri,
        matcher,
        has_filter: filter.is_some(),
        has_format: format.is_some(),
        multiline,
        on_error,
        on_full,
        tls,
        http,
        origin: Origin::Lua,
    };
    declared.push(LoadedRoute { spec, filter, format, batch });
    Ok(())
}

/// A route's `tls = { ca, cert, key, server_name, system_roots }`; relative paths are taken
/// from the config's directory, like `require`.
fn tls_options(t: &Table, dir: Option<&Path>) -> Result<TlsOptions, String> {
    check_keys(t, TLS_KEYS, "tls")?;
    let path = |p: String| match dir {
        Some(d) if Path::new(&p).is_relative() => d.join(p),
        _ => PathBuf::from(p),
    };
    let ca = match t.raw_get::<Value>("ca").map_err(|e| e.to_string())? {
        Value::Nil => Vec::new(),
        Value::String(s) => vec![path(s.to_string_lossy())],
        Value::Table(list) => list_items(&list, "tls.ca")?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(path(s.to_string_lossy())),
                other => Err(format!("tls.ca items must be file names, got {}", other.type_name())),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("tls.ca must be a file name or a list of them, got {}", other.type_name())),
    };
    let client_cert = match (string_field(t, "tls.cert")?, string_field(t, "tls.key")?) {
        (Some(cert), Some(key)) => Some((path(cert), path(key))),
        (None, None) => None,
        _ => return Err("tls.cert and tls.key go together: give both, or neither".into()),
    };
    let system_roots = match t.raw_get::<Value>("system_roots").map_err(|e| e.to_string())? {
        Value::Nil => None,
        Value::Boolean(b) => Some(b),
        other => return Err(format!("tls.system_roots must be true or false, got {}", other.type_name())),
    };
    Ok(TlsOptions { ca, client_cert, server_name: string_field(t, "tls.server_name")?, system_roots })
}

/// An HTTP route's options: the URI's, then the route table's keys over them.
fn http_options(t: &Table, uri: &crate::uri::RouteUri) -> Result<(HttpOptions, Option<Function>), String> {
    let mut o = HttpOptions::from_uri(uri).map_err(|e| format!("route `to`: {e}"))?;
    let count = |key: &str| -> Result<Option<usize>, String> {
        match t.raw_get::<Value>(key).map_err(|e| e.to_string())? {
            Value::Nil => Ok(None),
            Value::Integer(n) if n > 0 => Ok(Some(n as usize)),
            other => {
                Err(format!("route `{key}` must be a positive integer, got {}", other.to_string().unwrap_or_default()))
            }
        }
    };
    let duration = |key: &str| -> Result<Option<std::time::Duration>, String> {
        match t.raw_get::<Value>(key).map_err(|e| e.to_string())? {
            Value::Nil => Ok(None),
            Value::Integer(ms) if ms >= 0 => Ok(Some(std::time::Duration::from_millis(ms as u64))),
            Value::String(s) => crate::settings::parse_duration(&s.to_string_lossy())
                .map(Some)
                .map_err(|e| format!("route `{key}`: {e}")),
            other => Err(format!(
                "route `{key}` must be milliseconds or a duration such as \"250ms\", got {}",
                other.type_name()
            )),
        }
    };
    if let Some(n) = count("batch_size")? {
        o.batch_size = n;
    }
    if let Some(n) = count("batch_bytes")? {
        o.batch_bytes = n;
    }
    if let Some(d) = duration("flush_interval")? {
        o.flush_interval = d;
    }
    if let Some(d) = duration("timeout")? {
        o.timeout = d;
    }
    match t.raw_get::<Value>("gzip").map_err(|e| e.to_string())? {
        Value::Nil => {}
        Value::Boolean(b) => o.gzip = b,
        other => return Err(format!("route `gzip` must be true or false, got {}", other.type_name())),
    }
    match t.raw_get::<Value>("headers").map_err(|e| e.to_string())? {
        Value::Nil => {}
        Value::Table(h) => {
            let mut pairs: Vec<(String, String)> = Vec::new();
            for pair in h.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                match (k, v) {
                    (Value::String(k), Value::String(v)) => pairs.push((k.to_string_lossy(), v.to_string_lossy())),
                    (k, v) => {
                        return Err(format!(
                            "route `headers` maps names to strings, got {} = {}",
                            k.type_name(),
                            v.type_name()
                        ));
                    }
                }
            }
            // Lua's table order is arbitrary: sort, so the same config sends the same request.
            pairs.sort();
            o.headers.retain(|(name, _)| !pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)));
            o.headers.extend(pairs);
        }
        other => return Err(format!("route `headers` must be a table, got {}", other.type_name())),
    }
    let batch = function_field(t, "batch")?;
    o.has_batch = batch.is_some();
    o.check().map_err(|e| format!("route: {e}"))?;
    Ok((o, batch))
}

/// Checks a top-level `multiline{ containers = {…}, … }` rule and records it.
fn register_rule(t: Value, env: &Env, rules: &mut Vec<MultilineRule>) -> Result<(), String> {
    let Value::Table(t) = t else {
        return Err(format!("multiline expects a table, got {}", t.type_name()));
    };
    let mut allowed = crate::multiline::OPTION_KEYS.to_vec();
    allowed.push(CONTAINERS_KEY);
    check_keys(&t, &allowed, "multiline")?;
    let mut containers = MatchSpec::default();
    match t.raw_get::<Value>(CONTAINERS_KEY).map_err(|e| e.to_string())? {
        Value::Nil => {}
        Value::Table(m) => merge_match(&m, &mut containers)?,
        other => return Err(format!("multiline `containers` must be a table, got {}", other.type_name())),
    }
    if containers.sources.is_some() {
        return Err("multiline `containers` selects containers; `sources` does not apply (stdout and stderr are grouped separately)".into());
    }
    t.raw_set(CONTAINERS_KEY, Value::Nil).map_err(|e| e.to_string())?;
    let spec = multiline_spec(&option_strings(&t)?, env)?;
    rules.push(MultilineRule { containers, spec: Arc::new(spec) });
    Ok(())
}

/// Checks one `test{}` table and records it, with the `file:line` of its declaration.
fn register_test(lua: &Lua, t: Value, location: String, tests: &mut Vec<TestCase>) -> Result<(), String> {
    let Value::Table(t) = t else {
        return Err(format!("test expects a table, got {}", t.type_name()));
    };
    check_keys(&t, TEST_KEYS, "test")?;
    let name = string_field(&t, "test.name")?;
    let route = string_field(&t, "test.route")?;
    let mut input = Vec::new();
    match t.raw_get::<Value>("input").map_err(|e| e.to_string())? {
        Value::Nil => {
            return Err(
                "test needs `input`: a list of lines and messages (`{ data = …, source = …, container = {…} }`)".into(),
            );
        }
        Value::String(s) => input.push(SampleInput::Line(s.as_bytes().to_vec())),
        Value::Table(list) => {
            for (i, item) in list_items(&list, "test `input`")?.into_iter().enumerate() {
                input.push(match item {
                    Value::String(s) => SampleInput::Line(s.as_bytes().to_vec()),
                    v @ Value::Table(_) => SampleInput::Message(lua.from_value(v).map_err(|e| match e {
                        mlua::Error::DeserializeError(why) => format!("test input #{}: {why}", i + 1),
                        e => format!("test input #{}: {}", i + 1, error_text(&e)),
                    })?),
                    other => {
                        return Err(format!(
                            "test input #{} must be a string or a table, got {}",
                            i + 1,
                            other.type_name()
                        ));
                    }
                });
            }
        }
        other => return Err(format!("test `input` must be a list, got {}", other.type_name())),
    }
    let expect = match t.raw_get::<Value>("expect").map_err(|e| e.to_string())? {
        Value::Nil => return Err("test needs `expect`: the lines the route sends (`{}` for none)".into()),
        Value::String(s) => vec![s.as_bytes().to_vec()],
        Value::Table(list) => list_items(&list, "test `expect`")?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_bytes().to_vec()),
                other => Err(format!("test expect #{} must be a string, got {}", i + 1, other.type_name())),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("test `expect` must be a list of strings, got {}", other.type_name())),
    };
    tests.push(TestCase { name, location, input, route, expect });
    Ok(())
}

/// The items of a Lua list, refusing a table with other keys: `input = { data = "x" }` (a
/// message without its list) would otherwise be an empty list and test nothing.
fn list_items(t: &Table, what: &str) -> Result<Vec<Value>, String> {
    let items: Vec<Value> = t.sequence_values::<Value>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?;
    if t.pairs::<Value, Value>().count() != items.len() {
        return Err(format!(
            "{what} must be a list (`{{ a, b }}`); wrap a single message in braces: `{{ {{ data = … }} }}`"
        ));
    }
    Ok(items)
}

/// A table of options as strings: numbers without a spurious `.0`, so `flush_after = 500`
/// reads as `500`.
fn option_strings(t: &Table) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for pair in t.pairs::<String, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let v = match v {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) if n.fract() == 0.0 => (n as i64).to_string(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("multiline `{k}` must be a string or a number, got {}", other.type_name())),
        };
        out.insert(k, v);
    }
    Ok(out)
}

/// Adds a Lua `match = {…}` table to the URI's selection (both must hold).
fn merge_match(m: &Table, spec: &mut MatchSpec) -> Result<(), String> {
    check_keys(m, MATCH_KEYS, "match")?;
    if let Some(name) = string_field(m, "match.name")? {
        spec.names.push(name);
    }
    if let Some(id) = string_field(m, "match.id")? {
        spec.ids.push(id);
    }
    spec.image = string_field(m, "match.image")?;
    match m.raw_get::<Value>("sources").map_err(|e| e.to_string())? {
        Value::Nil => {}
        v => {
            let names: Vec<String> = match v {
                Value::String(s) => vec![s.to_string_lossy()],
                Value::Table(list) => list
                    .sequence_values::<String>()
                    .collect::<mlua::Result<_>>()
                    .map_err(|e| format!("match.sources: {e}"))?,
                other => return Err(format!("match.sources must be a string or a list, got {}", other.type_name())),
            };
            let mut sources = Vec::new();
            for n in names {
                sources
                    .push(Source::parse(&n).ok_or_else(|| {
                        format!("match.sources: unknown stream {n:?} (use \"stdout\" or \"stderr\")")
                    })?);
            }
            let allowed = spec.sources.take().unwrap_or_else(|| sources.clone());
            spec.sources = Some(allowed.into_iter().filter(|s| sources.contains(s)).collect());
        }
    }
    match m.raw_get::<Value>("labels").map_err(|e| e.to_string())? {
        Value::Nil => {}
        Value::Table(labels) => {
            for pair in labels.pairs::<String, String>() {
                let (k, v) = pair.map_err(|e| format!("match.labels must map label names to globs: {e}"))?;
                spec.labels.push((k, v));
            }
            spec.labels.sort();
        }
        other => return Err(format!("match.labels must be a table, got {}", other.type_name())),
    }
    Ok(())
}

/// Rejects keys that are not in `allowed`, with a suggestion for a likely typo.
fn check_keys(t: &Table, allowed: &[&str], what: &str) -> Result<(), String> {
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => return Err(format!("{what} table has a non-string key ({})", other.type_name())),
        };
        if !allowed.contains(&key.as_str()) {
            let hint = allowed
                .iter()
                .min_by_key(|a| edit_distance(a, &key))
                .filter(|a| edit_distance(a, &key) <= 2)
                .map(|a| format!("; did you mean `{a}`?"))
                .unwrap_or_default();
            return Err(format!("unknown key `{key}` in {what} table (valid keys: {}){hint}", allowed.join(", ")));
        }
    }
    Ok(())
}

fn string_field(t: &Table, key: &str) -> Result<Option<String>, String> {
    let short = key.rsplit('.').next().unwrap_or(key);
    match t.raw_get::<Value>(short).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        other => Err(format!("{key} must be a string, got {}", other.type_name())),
    }
}

fn function_field(t: &Table, key: &str) -> Result<Option<Function>, String> {
    match t.raw_get::<Value>(key).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(f)),
        other => Err(format!("route `{key}` must be a function, got {}", other.type_name())),
    }
}

/// The URI (redacted: names are shown everywhere) as the route's name, made unique with `#2`, `#3`… when several routes share it.
fn unique_name(base: &str, declared: &[LoadedRoute]) -> String {
    let taken = |n: &str| declared.iter().any(|r| r.spec.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (2..).map(|i| format!("{base}#{i}")).find(|n| !taken(n)).expect("unbounded range")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Env;

    fn config(text: &str) -> Config {
        Config::from_text("/cfg/routes.lua", text, Env::from_pairs(&[("DEST", "udp://127.0.0.1:9")]))
            .with_args(vec!["raw+tcp://127.0.0.1:5000?filter.name=*_db".into()])
    }

    fn load_err(text: &str) -> String {
        match LoadedConfig::load(&config(text), LoadMode::Validate) {
            Ok(_) => panic!("config should fail: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shipped_examples_and_default_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "lua") {
                let config = load(&ConfigLocation::File(path.clone()), Vec::new(), Env::default())
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(!config.routes.is_empty(), "{} declares no route", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 2);
        let args = vec!["raw+tcp://127.0.0.1:1".to_string(), "syslog://127.0.0.1:2".to_string()];
        let config = load(&ConfigLocation::Embedded, args, Env::default()).unwrap();
        let names: Vec<_> = config.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["raw+tcp://127.0.0.1:1", "syslog+udp://127.0.0.1:2"]);
    }

    #[test]
    fn declares_routes_with_matchers() {
        let text = r#"
            route { name = "a", to = "syslog+tcp://h:514?filter.sources=stderr", match = { name = "*_app", labels = { env = "prod*" } },
                    filter = function(m) return true end }
            route { to = spout.env("DEST") }
            for _, u in ipairs(spout.args) do route { to = u } end
        "#;
        let loaded = LoadedConfig::load(&config(text), LoadMode::Validate).unwrap();
        let specs: Vec<_> = loaded.routes.iter().map(|r| &r.spec).collect();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].name, "a");
        assert!(specs[0].has_filter && !specs[0].has_format);
        assert_eq!(specs[0].matcher.names, vec!["*_app".to_string()]);
        assert_eq!(specs[0].matcher.sources, Some(vec![Source::Stderr]));
        assert_eq!(specs[0].matcher.labels, vec![("env".to_string(), "prod*".to_string())]);
        assert_eq!(specs[1].name, "raw+udp://127.0.0.1:9");
        assert_eq!(specs[2].matcher.names, vec!["*_db".to_string()]);
    }

    #[test]
    fn errors_carry_file_and_line() {
        assert!(
            load_err("\n\nroute { to = 'raw+tcp://h:1', fromat = 1 }")
                .starts_with("/cfg/routes.lua:3: unknown key `fromat`"),
            "{}",
            load_err("\n\nroute { to = 'raw+tcp://h:1', fromat = 1 }")
        );
        assert!(load_err("\nroute { to = 'raw+tcp://h:1', fromat = 1 }").contains("did you mean `format`?"));
        assert!(load_err("route {").starts_with("/cfg/routes.lua:1:"));
        assert!(
            load_err("\nroute { to = 'foo://h:1' }")
                .starts_with("/cfg/routes.lua:2: route `to` \"foo://h:1\": bad adapter: foo")
        );
        assert!(
            load_err("route { to = 'raw+tcp://h:1', match = { nmae = 'x' } }")
                .contains("unknown key `nmae` in match table")
        );
        assert!(load_err("route { to = 'raw+tcp://h:1', filter = 'x' }").contains("route `filter` must be a function"));
        assert!(
            load_err("route { name = 'x', to = 'raw+tcp://h:1' }\nroute { name = 'x', to = 'raw+tcp://h:2' }")
                .starts_with("/cfg/routes.lua:2: route name \"x\" is used twice")
        );
        assert!(load_err("local r = spout.regex('(')").starts_with("/cfg/routes.lua:1: bad regex"));
        assert!(load_err("error('boom')").starts_with("/cfg/routes.lua:1: boom"));
    }

    #[test]
    fn a_config_that_loops_is_refused_with_its_line() {
        let err = load_err("route { to = 'raw+tcp://h:1' }\nlocal n = 0\nwhile true do n = n + 1 end");
        assert!(err.starts_with("/cfg/routes.lua:3: the config ran past its instruction budget"), "{err}");
        // Catching the stop does not help: the budget is spent and stays spent.
        let err = load_err("while true do pcall(function() while true do end end) end");
        assert!(err.contains("instruction budget"), "{err}");
        let err = load_err("local co = coroutine.wrap(function() while true do end end)\nco()");
        assert!(err.starts_with("/cfg/routes.lua:1:") && err.contains("instruction budget"), "{err}");
        // A config that does real work at load is not refused.
        let ok = "local t = {} for i = 1, 200000 do t[i] = i * 2 end route { to = 'raw+tcp://h:1' }";
        assert!(LoadedConfig::load(&config(ok), LoadMode::Validate).is_ok());
    }

    #[test]
    fn a_config_that_allocates_past_the_cap_is_refused() {
        let mut c = config("local s = string.rep('x', 100 * 1024 * 1024)");
        c.env = Env::from_pairs(&[("LUASPOUT_LUA_MEMORY_MB", "16")]);
        let err = match LoadedConfig::load(&c, LoadMode::Validate) {
            Ok(_) => panic!("a 100 MiB string under a 16 MiB cap should fail"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn multiline_declarations() {
        let text = r#"
            multiline { containers = { name = "*_java" }, start = [[^\d{4}-]], flush_after = 800 }
            route { to = "raw+tcp://h:1", multiline = { match = "first", pattern = "^\\[" } }
            route { to = "multiline+raw+tcp://h:2?multiline.match=last&multiline.pattern=%3B$" }
            route { to = "raw+tcp://h:3" }
        "#;
        let loaded = LoadedConfig::load(&config(text), LoadMode::Validate).unwrap();
        assert_eq!(loaded.multiline.len(), 1);
        assert_eq!(loaded.multiline[0].containers.names, vec!["*_java".to_string()]);
        assert_eq!(loaded.multiline[0].spec.flush_after_ns, 800_000_000);
        let modes: Vec<_> = loaded.routes.iter().map(|r| r.spec.multiline.as_ref().map(|m| m.mode)).collect();
        use crate::multiline::Mode;
        assert_eq!(modes, vec![Some(Mode::First), Some(Mode::Last), None]);
        assert!(
            load_err("\nmultiline { pattern = '(' }").starts_with("/cfg/routes.lua:2: multiline pattern"),
            "{}",
            load_err("\nmultiline { pattern = '(' }")
        );
        assert!(load_err("multiline { patern = 'x' }").contains("did you mean `pattern`?"));
        assert!(
            load_err("route { to = 'multiline+raw+tcp://h:1?multiline.mtch=first' }")
                .contains("unknown URI option `multiline.mtch`")
        );
        assert!(
            load_err("route { to = 'raw+tcp://h:1', multiline = { match = 'sideways' } }")
                .starts_with("/cfg/routes.lua:1:")
        );
    }

    #[test]
    fn same_name_from_uri_gets_a_suffix() {
        let loaded = LoadedConfig::load(
            &config("route { to = 'raw+tcp://h:1' } route { to = 'raw+tcp://h:1' }"),
            LoadMode::Validate,
        )
        .unwrap();
        assert_eq!(loaded.routes[1].spec.name, "raw+tcp://h:1#2");
    }

    #[test]
    fn default_names_and_errors_hide_secrets() {
        let loaded = LoadedConfig::load(
            &config("route { to = 'http://h/in?header.X-Api-Key=TOPSECRET42&api_key=TOPSECRET43' } route { to = 'http://h/in?api_key=OTHER' }"),
            LoadMode::Validate,
        )
        .unwrap();
        assert_eq!(loaded.routes[0].spec.name, "json+http://h:80/in?api_key=***&header.X-Api-Key=***");
        assert_eq!(loaded.routes[1].spec.name, "json+http://h:80/in?api_key=***");
        assert!(loaded.routes[0].spec.uri.to_string().contains("TOPSECRET43"), "the sink still gets them");
        let err = load_err("route { to = 'http://u:pw@h:99999/in?token=TOPSECRET44' }");
        assert!(!err.contains("TOPSECRET44") && !err.contains("pw"), "{err}");
        let err = load_err("route { to = 'tcp://h:1?token=TOPSECRET45', batch = function() end }");
        assert!(!err.contains("TOPSECRET45") && err.contains("token=***"), "{err}");
    }
}
