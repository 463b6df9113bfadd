//! The helpers of the `spout` module that are written in Rust: JSON that keeps Lua's types,
//! compiled regexes, time formatting, the hostname, and named state tables that a reload
//! carries over to the new Lua state.
//!
//! They are Rust because they run per message: a compiled regex is cheaper than a Lua pattern
//! and a table walked by Rust is several times cheaper than a JSON encoder in Lua
//! (measured in `benches/spout_helpers.rs`). Subjects, payloads and results stay Lua strings, which are
//! bytes: nothing here fails or mangles on invalid UTF-8.
//!
//! What `routes.lua` sees:
//! - `spout.json(v)`: integers stay integers, floats stay floats, `{}` is an object,
//!   `spout.array(t)` (returns `t`) makes `t` an array even when empty, `spout.null` is `null`.
//! - `spout.regex(pattern)`: `re:is_match(s)`, `re:find(s [, init])`, `re:match(s [, init])`,
//!   `re:captures(s [, init])`, `re:replace(s, repl [, limit])`, `re:gmatch(s)`, on bytes.
//! - `spout.strftime(time, format)` and `spout.rfc3339(time [, digits])`, in UTC. `time` is
//!   `msg.time` (float seconds), `msg.time_ns` (integer nanoseconds) or `os.time()` (integer
//!   seconds): an integer above 10^12 in magnitude is nanoseconds, a smaller one seconds.
//! - `spout.hostname()`.
//! - `spout.state(name)`: the same table on every call with that name, kept across reloads
//!   ([`export_states`], [`import_states`]).
//!
//! Errors raised by these functions start with the caller's `file:line`, as Lua's own errors
//! do, so a mistake in `routes.lua` points at its line.

use crate::timefmt::{MONTHS, WEEKDAYS};
use std::cell::{Cell, RefCell};

use mlua::{AnyUserData, Function, Lua, LuaString, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value};
use regex::bytes::{CaptureLocations, Regex};

use super::sandbox::LoadMode;
use crate::config::Config;
use crate::format::json;
use crate::settings::SECRET_VARIABLES;
use crate::timefmt::{Civil, write_i64, write_padded, write_year};

/// Registry key of the table of `spout.state` tables, by name.
const STATES_KEY: &str = "luaspout.states";
/// Registry key of the metatable `spout.array` sets, made once per state.
const ARRAY_METATABLE_KEY: &str = "luaspout.array_metatable";
/// How far below a state table nested tables are carried over a reload; it bounds the copy's
/// recursion whatever the config built.
const MAX_STATE_DEPTH: usize = 32;
/// How many values one reload carries over at most (all states together), so a runaway dedup
/// set or a table shared many times over (each reference is copied) cannot stall a reload.
const MAX_STATE_VALUES: usize = 1_000_000;
/// A Lua integer time of larger magnitude is nanoseconds (`msg.time_ns`), a smaller one
/// seconds: 10^12 seconds is past the year 30000, 10^12 nanoseconds is 16 minutes after 1970.
const NANOS_THRESHOLD: i64 = 1_000_000_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;
/// `spout.rfc3339` without `digits`: nanoseconds, as Docker stamps lines, so nothing is lost.
const DEFAULT_RFC3339_DIGITS: u32 = 9;

/// `spout.regex` on top of [`compile_regex_fn`]: a bad pattern is raised at the caller's line
/// (level 2), like `route{}` errors.
const REGEX_WRAPPER: &str = r#"
local compile_regex = ...
return function(pattern)
  local re, err = compile_regex(pattern)
  if not re then error(err, 2) end
  return re
end
"#;

/// A decoded JSON value as Lua: objects become tables, arrays tables marked as
/// [`spout.array`](json::is_marked_array), `null` [`json::null`], integers integers and other
/// numbers floats, so `spout.json(spout.json_decode(text))` gives the same JSON back.
fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::LightUserData(json::null()),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            t.set_metatable(Some(array_metatable(lua)?))?;
            Value::Table(t)
        }
        J::Object(fields) => {
            let t = lua.create_table_with_capacity(0, fields.len())?;
            for (k, item) in fields {
                t.raw_set(k.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// The `spout` table of a state running `config`: `args`, `env` and `log`, which come from
/// luaspout, and the helpers of [`add_helpers`].
pub fn install(lua: &Lua, config: &Config, mode: LoadMode) -> mlua::Result<Table> {
    let spout = lua.create_table()?;
    spout.raw_set("args", lua.create_sequence_from(config.args.iter().map(String::as_str))?)?;
    let env = config.env.clone();
    spout.raw_set(
        "env",
        lua.create_function(move |lua, (name, default): (String, Option<Value>)| {
            match env.get(&name).filter(|_| !SECRET_VARIABLES.contains(&name.as_str())) {
                Some(v) => Ok(Value::String(lua.create_string(v)?)),
                None => Ok(default.unwrap_or(Value::Nil)),
            }
        })?,
    )?;
    let log_at_load = mode == LoadMode::Validate;
    spout.raw_set(
        "log",
        lua.create_function(move |lua, (level, text): (String, mlua::LuaString)| {
            if log_at_load || lua.app_data_ref::<LogEnabled>().is_some() {
                let text = text.to_string_lossy();
                match level.as_str() {
                    "error" => tracing::error!(target: "luaspout::lua", "{text}"),
                    "warn" => tracing::warn!(target: "luaspout::lua", "{text}"),
                    "debug" => tracing::debug!(target: "luaspout::lua", "{text}"),
                    _ => tracing::info!(target: "luaspout::lua", "{text}"),
                }
            }
            Ok(())
        })?,
    )?;
    add_helpers(lua, &spout)?;
    Ok(spout)
}

/// Marker in a worker state's app data: `spout.log` speaks only once the config has loaded
/// ([`enable_log`]).
struct LogEnabled;

/// Lets `spout.log` (and `print`) of a worker's state speak: validation already showed what
/// the config logs while loading, so a worker's own load stays quiet.
pub fn enable_log(lua: &Lua) {
    lua.set_app_data(LogEnabled);
}

/// Adds `json`, `json_decode`, `array`, `null`, `regex`, `strftime`, `rfc3339`, `hostname` and `state` to the
/// `spout` table of `lua`.
///
/// `spout.state` tables come from this state's registry, so [`import_states`] may run before
/// or after this, as long as it runs before the config's chunk.
fn add_helpers(lua: &Lua, spout: &Table) -> mlua::Result<()> {
    spout.raw_set(
        "json",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            json::encode_lua(&v, &mut out).map_err(|e| error_at_caller(lua, format!("spout.json: {e}")))?;
            lua.create_string(out)
        })?,
    )?;
    spout.raw_set(
        "array",
        lua.create_function(|lua, t: Value| match t {
            Value::Table(t) => {
                t.set_metatable(Some(array_metatable(lua)?))?;
                Ok(t)
            }
            other => Err(error_at_caller(lua, format!("spout.array expects a table, got {}", other.type_name()))),
        })?,
    )?;
    spout.raw_set(
        "json_decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            match serde_json::from_slice::<serde_json::Value>(&text.as_bytes()) {
                Ok(v) => Ok((json_to_lua(lua, &v)?, Value::Nil)),
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(format!("not JSON: {e}"))?))),
            }
        })?,
    )?;
    spout.raw_set("null", json::null())?;
    let regex: Function = lua.load(REGEX_WRAPPER).set_name("=spout.regex").call(compile_regex_fn(lua)?)?;
    spout.raw_set("regex", regex)?;
    spout.raw_set(
        "strftime",
        lua.create_function(|lua, (time, format): (Value, Value)| {
            let ns = time_nanos(&time).map_err(|e| error_at_caller(lua, format!("spout.strftime: {e}")))?;
            let Value::String(format) = format else {
                let e = format!("spout.strftime expects a format string, got {}", format.type_name());
                return Err(error_at_caller(lua, e));
            };
            let mut out = Vec::new();
            strftime(ns, &format.as_bytes(), &mut out)
                .map_err(|e| error_at_caller(lua, format!("spout.strftime: {e}")))?;
            lua.create_string(out)
        })?,
    )?;
    spout.raw_set(
        "rfc3339",
        lua.create_function(|lua, (time, digits): (Value, Option<i64>)| {
            let ns = time_nanos(&time).map_err(|e| error_at_caller(lua, format!("spout.rfc3339: {e}")))?;
            let digits = match digits {
                None => DEFAULT_RFC3339_DIGITS,
                Some(d @ 0..=9) => d as u32,
                Some(d) => {
                    return Err(error_at_caller(
                        lua,
                        format!("spout.rfc3339: digits must be 0 to 9 (e.g. 3 for milliseconds), got {d}"),
                    ));
                }
            };
            let mut out = Vec::with_capacity(30);
            write_rfc3339(ns, digits, &mut out);
            lua.create_string(out)
        })?,
    )?;
    spout.raw_set("hostname", lua.create_function(|lua, ()| lua.create_string(crate::format::os_hostname()))?)?;
    spout.raw_set(
        "state",
        lua.create_function(|lua, name: Value| {
            let name = match name {
                Value::String(s) if s.to_str().is_ok() => s,
                Value::String(_) => {
                    return Err(error_at_caller(lua, "spout.state: the name must be valid UTF-8".into()));
                }
                other => {
                    let e = format!(
                        "spout.state expects a name (a string, e.g. \"rate-limits\"), got {}",
                        other.type_name()
                    );
                    return Err(error_at_caller(lua, e));
                }
            };
            let states = states_table(lua)?;
            match states.raw_get::<Value>(&name)? {
                Value::Table(t) => Ok(t),
                _ => {
                    let t = lua.create_table()?;
                    states.raw_set(name, &t)?;
                    Ok(t)
                }
            }
        })?,
    )?;
    Ok(())
}

/// The raw regex compiler behind `spout.regex`: `compile_regex(pattern)` returns the compiled
/// regex, or `nil` and a message naming the pattern, so Lua code can raise it at its caller's
/// line (`error(err, 2)`), which a Rust function cannot do.
pub fn compile_regex_fn(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, pattern: Value| {
        let Value::String(pattern) = pattern else {
            return Ok((None, Some(format!("spout.regex expects a pattern (a string), got {}", pattern.type_name()))));
        };
        let Ok(text) = pattern.to_str() else {
            let shown = pattern.to_string_lossy();
            let e = format!("bad regex {shown:?}: the pattern is not valid UTF-8 (match raw bytes with `(?-u:\\xNN)`)");
            return Ok((None, Some(e)));
        };
        match Regex::new(&text) {
            Ok(re) => Ok((Some(lua.create_userdata(LuaRegex::new(lua, re)?)?), None)),
            Err(e) => Ok((None, Some(format!("bad regex {:?}: {e}", &*text)))),
        }
    })
}

/// A regex compiled once, at config load, and matched against Lua strings as bytes
/// (`regex::bytes`): 4-7x cheaper per line than a Lua pattern (measured in `benches/spout_helpers.rs`).
///
/// Its methods follow Lua's `string` functions: positions are 1-based and inclusive, an
/// optional `init` is where the search starts (negative counts from the end), and a regex with
/// groups returns its groups (a group that did not take part is `nil`). Unlike a Lua pattern
/// with `init`, `^` still means the start of the subject, so lookaround and `\b` see the text
/// before `init`.
struct LuaRegex {
    re: Regex,
    /// Room for the groups of one search, reused by every call (methods never re-enter).
    locs: RefCell<CaptureLocations>,
    /// The Lua strings of the group names, made once, for `captures`' keys.
    names: Vec<Option<LuaString>>,
    named: usize,
}

impl LuaRegex {
    fn new(lua: &Lua, re: Regex) -> mlua::Result<LuaRegex> {
        let names: Vec<Option<LuaString>> =
            re.capture_names().map(|n| n.map(|n| lua.create_string(n)).transpose()).collect::<mlua::Result<_>>()?;
        let named = names.iter().flatten().count();
        Ok(LuaRegex { locs: RefCell::new(re.capture_locations()), re, names, named })
    }

    /// Whether the regex has groups, in which case `match`, `find` and `gmatch` return them.
    fn has_groups(&self) -> bool {
        self.re.captures_len() > 1
    }

    /// A fresh room for groups, if the regex has any (for `gmatch`, whose iterator outlives a
    /// call): a regex without groups is searched without them, which is cheaper.
    fn locations(&self) -> Option<CaptureLocations> {
        self.has_groups().then(|| self.re.capture_locations())
    }

    /// Finds the first match at or after `start`, with its groups in `locs`.
    fn search(&self, hay: &[u8], start: usize, locs: Option<&mut CaptureLocations>) -> Option<(usize, usize)> {
        match locs {
            Some(locs) => self.re.captures_read_at(locs, hay, start).map(|m| (m.start(), m.end())),
            None => self.re.find_at(hay, start).map(|m| (m.start(), m.end())),
        }
    }
}

/// The groups of the last search as Lua values (1 and up), `nil` where a group did not take part.
fn groups(lua: &Lua, hay: &[u8], locs: &CaptureLocations, out: &mut MultiValue) -> mlua::Result<()> {
    for i in 1..locs.len() {
        out.push_back(match locs.get(i) {
            Some((s, e)) => Value::String(lua.create_string(&hay[s..e])?),
            None => Value::Nil,
        });
    }
    Ok(())
}

/// What `match` and `gmatch` return for one match: its groups, or the whole match.
fn match_values(
    lua: &Lua,
    hay: &[u8],
    span: (usize, usize),
    locs: Option<&CaptureLocations>,
) -> mlua::Result<MultiValue> {
    let mut out = MultiValue::new();
    match locs {
        Some(locs) => groups(lua, hay, locs, &mut out)?,
        None => out.push_back(Value::String(lua.create_string(&hay[span.0..span.1])?)),
    }
    Ok(out)
}

/// A lone `nil`, what `string.find` and `string.match` return when nothing matches.
fn no_match() -> MultiValue {
    MultiValue::from_vec(vec![Value::Nil])
}

/// Lua's `init` rule (`string.find`): 1-based, negative from the end, clamped to 1 below; `None`
/// when it starts past the end plus one, where nothing can match.
fn start_offset(init: Option<i64>, len: usize) -> Option<usize> {
    let len = len as i64;
    let pos = match init.unwrap_or(1) {
        i if i > 0 => i,
        i if i == 0 || i < -len => 1,
        i => len + i + 1,
    };
    (pos <= len + 1).then(|| (pos - 1) as usize)
}

impl UserData for LuaRegex {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("is_match", |_, this, s: LuaString| Ok(this.re.is_match(&s.as_bytes())));
        // `start, end` (1-based, inclusive) and the groups, or nil: `string.find`.
        methods.add_method("find", |lua, this, (s, init): (LuaString, Option<i64>)| {
            let hay = s.as_bytes();
            let Some(start) = start_offset(init, hay.len()) else { return Ok(no_match()) };
            let mut cached = this.locs.borrow_mut();
            let mut locs = this.has_groups().then_some(&mut *cached);
            let Some((from, to)) = this.search(&hay, start, locs.as_deref_mut()) else { return Ok(no_match()) };
            let mut out = MultiValue::new();
            out.push_back(Value::Integer(from as i64 + 1));
            out.push_back(Value::Integer(to as i64));
            if let Some(locs) = &locs {
                groups(lua, &hay, locs, &mut out)?;
            }
            Ok(out)
        });
        // The groups, or the whole match, or nil: `string.match`.
        methods.add_method("match", |lua, this, (s, init): (LuaString, Option<i64>)| {
            let hay = s.as_bytes();
            let Some(start) = start_offset(init, hay.len()) else { return Ok(no_match()) };
            let mut cached = this.locs.borrow_mut();
            let mut locs = this.has_groups().then_some(&mut *cached);
            match this.search(&hay, start, locs.as_deref_mut()) {
                Some(span) => match_values(lua, &hay, span, locs.as_deref()),
                None => Ok(no_match()),
            }
        });
        // A table: [0] the whole match, [1..n] the groups, and named groups by name; or nil.
        methods.add_method("captures", |lua, this, (s, init): (LuaString, Option<i64>)| {
            let hay = s.as_bytes();
            let Some(start) = start_offset(init, hay.len()) else { return Ok(None) };
            let mut locs = this.locs.borrow_mut();
            if this.re.captures_read_at(&mut locs, &hay, start).is_none() {
                return Ok(None);
            }
            // [1..n] in the array part; [0] and the names in the hash part.
            let t = lua.create_table_with_capacity(locs.len() - 1, this.named + 1)?;
            for (i, name) in this.names.iter().enumerate() {
                if let Some((from, to)) = locs.get(i) {
                    let text = lua.create_string(&hay[from..to])?;
                    if let Some(name) = name {
                        t.raw_set(name, &text)?;
                    }
                    t.raw_set(i, text)?;
                }
            }
            Ok(Some(t))
        });
        // `s` with matches replaced (`$1`, `${name}`, `$$`), and the number replaced: all of
        // them, or at most `limit`. An unchanged subject is returned as is, without a copy.
        methods.add_method("replace", |lua, this, (s, repl, limit): (LuaString, Value, Option<i64>)| {
            let Value::String(repl) = repl else {
                let e = format!(
                    "regex:replace expects a replacement string (with $1 or ${{name}} for groups), got {}",
                    repl.type_name()
                );
                return Err(error_at_caller(lua, e));
            };
            let limit = match limit {
                None => usize::MAX,
                Some(n) if n >= 0 => n as usize,
                Some(n) => return Err(error_at_caller(lua, format!("regex:replace limit must be 0 or more, got {n}"))),
            };
            let replaced = replace(&this.re, &s.as_bytes(), &repl.as_bytes(), limit);
            match replaced {
                Some((out, n)) => Ok((lua.create_string(out)?, n)),
                None => Ok((s, 0)),
            }
        });
        // An iterator over the matches (their groups, or the whole match): `string.gmatch`.
        methods.add_function("gmatch", |lua, (ud, s): (AnyUserData, LuaString)| {
            ud.borrow::<LuaRegex>()?;
            let next = Cell::new(Some(0usize));
            let last_end = Cell::new(None);
            lua.create_function(move |lua, ()| {
                let this = ud.borrow::<LuaRegex>()?;
                let hay = s.as_bytes();
                let mut locs = this.locations();
                while let Some(pos) = next.get().filter(|p| *p <= hay.len()) {
                    let Some((from, to)) = this.search(&hay, pos, locs.as_mut()) else { break };
                    // An empty match right where the previous match ended is skipped, as the
                    // regex crate's iterators and Lua 5.4's gmatch do (`a*` on "baaa" gives
                    // "" and "aaa").
                    if from == to && last_end.get() == Some(to) {
                        next.set(Some(to + 1));
                        continue;
                    }
                    last_end.set(Some(to));
                    next.set(Some(to));
                    return match_values(lua, &hay, (from, to), locs.as_ref());
                }
                next.set(None);
                Ok(no_match())
            })
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(format!("spout.regex({:?})", this.re.as_str())));
    }
}

/// `hay` with up to `limit` matches replaced by `repl` expanded, and the count; `None` when
/// nothing matched.
fn replace(re: &Regex, hay: &[u8], repl: &[u8], limit: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut n = 0;
    if repl.contains(&b'$') {
        for caps in re.captures_iter(hay).take(limit) {
            let m = caps.get_match();
            out.extend_from_slice(&hay[last..m.start()]);
            caps.expand(repl, &mut out);
            last = m.end();
            n += 1;
        }
    } else {
        // No group references: the cheaper search without groups.
        for m in re.find_iter(hay).take(limit) {
            out.extend_from_slice(&hay[last..m.start()]);
            out.extend_from_slice(repl);
            last = m.end();
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    out.extend_from_slice(&hay[last..]);
    Some((out, n))
}

/// A Lua error with the Lua caller's `file:line: ` in front, as `error(msg, 2)` would give
/// from Lua; plain `msg` when the caller is not Lua code (e.g. `pcall(spout.json, f)`).
fn error_at_caller(lua: &Lua, msg: String) -> mlua::Error {
    // Level 0 is the Rust function itself, level 1 whoever called it.
    let at = lua
        .inspect_stack(1, |d| {
            let line = d.current_line()?;
            let source = d.source().short_src?.into_owned();
            Some(format!("{source}:{line}: "))
        })
        .flatten();
    mlua::Error::runtime(format!("{}{msg}", at.unwrap_or_default()))
}

/// The metatable `spout.array` sets, created on first use.
fn array_metatable(lua: &Lua) -> mlua::Result<Table> {
    if let Value::Table(t) = lua.named_registry_value::<Value>(ARRAY_METATABLE_KEY)? {
        return Ok(t);
    }
    let t = lua.create_table()?;
    t.raw_set("__name", json::ARRAY_MARKER)?;
    lua.set_named_registry_value(ARRAY_METATABLE_KEY, &t)?;
    Ok(t)
}

/// The table of `spout.state` tables by name, created on first use.
fn states_table(lua: &Lua) -> mlua::Result<Table> {
    if let Value::Table(t) = lua.named_registry_value::<Value>(STATES_KEY)? {
        return Ok(t);
    }
    let t = lua.create_table()?;
    lua.set_named_registry_value(STATES_KEY, &t)?;
    Ok(t)
}

/// A time argument as nanoseconds since the epoch.
///
/// A float is seconds (`msg.time`), rounded to the nearest nanosecond; at today's dates a
/// double holds about a quarter of a microsecond, so `msg.time_ns` is the exact one. An
/// integer is nanoseconds when its magnitude is above 10^12 ([`NANOS_THRESHOLD`]), else
/// seconds (`os.time()`).
fn time_nanos(time: &Value) -> Result<i64, String> {
    let out_of_range = || {
        format!(
            "time {} is out of range (years 1677 to 2262; pass msg.time, msg.time_ns or os.time())",
            match time {
                Value::Number(x) => format!("{x:?}"),
                Value::Integer(i) => i.to_string(),
                _ => String::new(),
            }
        )
    };
    match *time {
        Value::Integer(ns) if ns.unsigned_abs() > NANOS_THRESHOLD as u64 => Ok(ns),
        Value::Integer(secs) => secs.checked_mul(NANOS_PER_SEC).ok_or_else(out_of_range),
        Value::Number(x) => {
            let secs = x.floor();
            // Rejects NaN and the infinities; the checked arithmetic below does the exact bound.
            if !(-9.3e9..=9.3e9).contains(&secs) {
                return Err(out_of_range());
            }
            let frac = ((x - secs) * 1e9).round() as i64;
            (secs as i64).checked_mul(NANOS_PER_SEC).and_then(|ns| ns.checked_add(frac)).ok_or_else(out_of_range)
        }
        ref other => Err(format!("expects a time (msg.time, msg.time_ns or os.time()), got {}", other.type_name())),
    }
}

/// Appends `ns` formatted by C `strftime` directives, in UTC.
///
/// Supported: `%Y %m %d %e %H %I %M %S %p %j %a %A %b %h %B %y %Z %z %s %F %T %%`, and `%N` or
/// `%1N`..`%9N` for that many digits of the fraction of a second (truncated, GNU `date`'s
/// spelling; `%3N` is milliseconds). Other bytes are copied as they are.
fn strftime(ns: i64, format: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let c = Civil::from_nanos(ns);
    let two = |n: u32, out: &mut Vec<u8>| write_padded(n, 2, b'0', out);
    let mut rest = format;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        out.extend_from_slice(&rest[..at]);
        let directive = rest.get(at + 1).copied();
        rest = rest.get(at + 2..).unwrap_or_default();
        match directive {
            Some(b'Y') => write_year(c.year, out),
            Some(b'y') => two(c.year.rem_euclid(100) as u32, out),
            Some(b'm') => two(c.month, out),
            Some(b'd') => two(c.day, out),
            Some(b'e') => write_padded(c.day, 2, b' ', out),
            Some(b'H') => two(c.hour, out),
            Some(b'I') => two((c.hour + 11) % 12 + 1, out),
            Some(b'M') => two(c.minute, out),
            Some(b'S') => two(c.second, out),
            Some(b'p') => out.extend_from_slice(if c.hour < 12 { b"AM" } else { b"PM" }),
            Some(b'j') => write_padded(c.yday, 3, b'0', out),
            Some(b'a') => out.extend_from_slice(&WEEKDAYS[c.weekday as usize].as_bytes()[..3]),
            Some(b'A') => out.extend_from_slice(WEEKDAYS[c.weekday as usize].as_bytes()),
            Some(b'b' | b'h') => out.extend_from_slice(&MONTHS[c.month as usize - 1].as_bytes()[..3]),
            Some(b'B') => out.extend_from_slice(MONTHS[c.month as usize - 1].as_bytes()),
            Some(b'Z') => out.extend_from_slice(b"UTC"),
            Some(b'z') => out.extend_from_slice(b"+0000"),
            Some(b's') => write_i64(ns.div_euclid(NANOS_PER_SEC), out),
            Some(b'F') => strftime(ns, b"%Y-%m-%d", out)?,
            Some(b'T') => strftime(ns, b"%H:%M:%S", out)?,
            Some(b'%') => out.push(b'%'),
            Some(b'N') => write_fraction(c.nanos, 9, out),
            Some(d @ b'1'..=b'9') if rest.first() == Some(&b'N') => {
                write_fraction(c.nanos, u32::from(d - b'0'), out);
                rest = &rest[1..];
            }
            Some(d) => {
                return Err(format!(
                    "unknown directive `%{}` in {:?} (known: %Y %y %m %d %e %H %I %M %S %p %j %a %A %b %B %Z %z %s %F %T %N %3N %6N %9N; %% is a literal %)",
                    char::from(d).escape_default(),
                    String::from_utf8_lossy(format)
                ));
            }
            None => {
                return Err(format!(
                    "{:?} ends with a lone `%` (write %% for a literal %)",
                    String::from_utf8_lossy(format)
                ));
            }
        }
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// Appends the first `digits` (1-9) digits of a fraction of a second, truncated.
fn write_fraction(nanos: u32, digits: u32, out: &mut Vec<u8>) {
    write_padded(nanos / 10u32.pow(9 - digits), digits as usize, b'0', out);
}

/// Appends `ns` as RFC 3339 in UTC with exactly `digits` (0-9) fraction digits, truncated:
/// `2021-12-06T15:27:06.123Z`.
fn write_rfc3339(ns: i64, digits: u32, out: &mut Vec<u8>) {
    let c = Civil::from_nanos(ns);
    write_year(c.year, out);
    for (sep, n) in [(b'-', c.month), (b'-', c.day), (b'T', c.hour), (b':', c.minute), (b':', c.second)] {
        out.push(sep);
        write_padded(n, 2, b'0', out);
    }
    if digits > 0 {
        out.push(b'.');
        write_fraction(c.nanos, digits, out);
    }
    out.push(b'Z');
}

/// A plain copy of a value kept in a `spout.state` table, owned by Rust so it can outlive the
/// Lua state it came from (and cross threads) during a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    /// `spout.null`.
    Null,
    /// A table; `array` when it was marked with `spout.array`.
    Table {
        entries: Vec<(StateKey, StateValue)>,
        array: bool,
    },
}

/// A table key that survives a reload (a table used as a key does not: it has no plain copy).
#[derive(Debug, Clone, PartialEq)]
pub enum StateKey {
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

/// Copies every `spout.state` table out of `lua` (the state being replaced by a reload), for
/// [`import_states`] into the new one.
///
/// Only data is carried over: tables, strings, numbers, booleans, `spout.null` and the
/// `spout.array` mark. Functions, userdata (a compiled regex), coroutines, tables used as keys,
/// a table inside itself (a cycle), tables nested more than 32 levels below the state table,
/// and anything past 1,000,000 values in all are left out, and a warning names the state. A
/// table stored under two keys becomes two copies.
pub fn export_states(lua: &Lua) -> mlua::Result<Vec<(String, StateValue)>> {
    let states = states_table(lua)?;
    let mut out = Vec::new();
    let mut budget = MAX_STATE_VALUES;
    states.for_each(|name: Value, t: Value| {
        let Value::String(name) = name else { return Ok(()) };
        let name = name.to_string_lossy();
        let mut export = Export { path: Vec::new(), budget: &mut budget, skipped: 0 };
        if let Some(v) = export.value(t, 0)? {
            out.push((name.clone(), v));
        }
        if export.skipped > 0 {
            tracing::warn!(
                state = %name,
                skipped = export.skipped,
                "spout.state: values left behind by the reload (only tables, strings, numbers, booleans and spout.null are carried over, at most 32 levels deep and 1,000,000 values in all)"
            );
        }
        Ok(())
    })?;
    Ok(out)
}

/// One state table being copied out of Lua.
struct Export<'a> {
    /// The tables from the state table down to the one being copied, to spot cycles.
    path: Vec<*const std::ffi::c_void>,
    /// Values still allowed in this export.
    budget: &'a mut usize,
    /// Values left out so far.
    skipped: usize,
}

impl Export<'_> {
    /// The copy of `v`, or `None` (counted in `skipped`) when it is left behind.
    fn value(&mut self, v: Value, depth: usize) -> mlua::Result<Option<StateValue>> {
        if *self.budget == 0 {
            self.skipped += 1;
            return Ok(None);
        }
        *self.budget -= 1;
        let copied = match v {
            Value::Boolean(b) => Some(StateValue::Bool(b)),
            Value::Integer(i) => Some(StateValue::Int(i)),
            Value::Number(x) => Some(StateValue::Float(x)),
            Value::String(s) => Some(StateValue::Bytes(s.as_bytes().to_vec())),
            Value::LightUserData(p) if p == json::null() => Some(StateValue::Null),
            Value::Table(t) if depth <= MAX_STATE_DEPTH && !self.path.contains(&t.to_pointer()) => {
                self.path.push(t.to_pointer());
                let mut entries = Vec::new();
                t.for_each(|k: Value, v: Value| {
                    let key = match k {
                        Value::Boolean(b) => StateKey::Bool(b),
                        Value::Integer(i) => StateKey::Int(i),
                        Value::Number(x) => StateKey::Float(x),
                        Value::String(s) => StateKey::Bytes(s.as_bytes().to_vec()),
                        _ => {
                            self.skipped += 1;
                            return Ok(());
                        }
                    };
                    if let Some(v) = self.value(v, depth + 1)? {
                        entries.push((key, v));
                    }
                    Ok(())
                })?;
                self.path.pop();
                Some(StateValue::Table { entries, array: json::is_marked_array(&t) })
            }
            _ => None,
        };
        if copied.is_none() {
            self.skipped += 1;
        }
        Ok(copied)
    }
}

/// Installs state tables copied by [`export_states`] into `lua`, so that `spout.state(name)`
/// returns them. Call it before the new config's chunk runs, since the chunk usually keeps
/// `spout.state(name)` in a local. States the new config never asks for are kept too, so they
/// survive an edit that drops their route for a while.
pub fn import_states(lua: &Lua, states: Vec<(String, StateValue)>) -> mlua::Result<()> {
    let registry = states_table(lua)?;
    let array = array_metatable(lua)?;
    for (name, v) in states {
        match to_lua(lua, &array, v)? {
            t @ Value::Table(_) => registry.raw_set(name, t)?,
            other => {
                return Err(mlua::Error::runtime(format!(
                    "spout.state({name:?}): a state must be a table, got a {}",
                    other.type_name()
                )));
            }
        }
    }
    Ok(())
}

fn to_lua(lua: &Lua, array: &Table, v: StateValue) -> mlua::Result<Value> {
    Ok(match v {
        StateValue::Bool(b) => Value::Boolean(b),
        StateValue::Int(i) => Value::Integer(i),
        StateValue::Float(x) => Value::Number(x),
        StateValue::Bytes(b) => Value::String(lua.create_string(b)?),
        StateValue::Null => Value::LightUserData(json::null()),
        StateValue::Table { entries, array: marked } => {
            let t = lua.create_table_with_capacity(0, entries.len())?;
            for (k, v) in entries {
                let k = match k {
                    StateKey::Bool(b) => Value::Boolean(b),
                    StateKey::Int(i) => Value::Integer(i),
                    StateKey::Float(x) => Value::Number(x),
                    StateKey::Bytes(b) => Value::String(lua.create_string(b)?),
                };
                t.raw_set(k, to_lua(lua, array, v)?)?;
            }
            if marked {
                t.set_metatable(Some(array.clone()))?;
            }
            Value::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2021-12-06T15:27:06.123456789Z, a Monday (timefmt's reference instant).
    const T: i64 = 1_638_804_426_123_456_789;

    fn state() -> Lua {
        let lua = Lua::new();
        let spout = lua.create_table().unwrap();
        add_helpers(&lua, &spout).unwrap();
        lua.globals().set("spout", spout).unwrap();
        lua.globals().set("T", T).unwrap();
        lua
    }

    fn eval<R: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> R {
        lua.load(code).set_name("@test.lua").eval().unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    fn eval_bytes(lua: &Lua, code: &str) -> Vec<u8> {
        eval::<LuaString>(lua, code).as_bytes().to_vec()
    }

    fn err(lua: &Lua, code: &str) -> String {
        match lua.load(code).set_name("@test.lua").exec() {
            Ok(()) => panic!("should fail: {code}"),
            Err(e) => crate::lua::error_text(&e),
        }
    }

    #[test]
    fn json_keeps_types_and_marks() {
        let lua = state();
        let out: String = eval(
            &lua,
            "return spout.json { n = 1, f = 1.0, big = 1e300, tags = spout.array {}, obj = {}, none = spout.null, \
             list = { 'a', spout.null }, nan = 0/0 }",
        );
        assert_eq!(out, r#"{"big":1e300,"f":1.0,"list":["a",null],"n":1,"nan":null,"none":null,"obj":{},"tags":[]}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["n"].is_i64() && v["f"].is_f64());
        assert_eq!(eval::<Table>(&lua, "local t = {} return spout.array(t) == t and t or nil").raw_len(), 0);
        assert_eq!(
            eval_bytes(&lua, r#"return spout.json { msg = "bad \xff\xfe end" }"#),
            "{\"msg\":\"bad \u{FFFD}\u{FFFD} end\"}".as_bytes()
        );
        assert!(eval::<bool>(&lua, "return spout.null == spout.null and spout.null ~= nil"));
    }

    #[test]
    fn json_decode_round_trips_types_and_reports_bad_input() {
        let lua = state();
        let text = r#"{"a":[],"b":{},"f":1.5,"g":2.0,"n":-7,"s":"x\"y\u00e9","t":true,"z":null}"#;
        let out: String = eval(&lua, &format!("return spout.json(spout.json_decode([=[{text}]=]))"));
        assert_eq!(out, text.replace("\\u00e9", "\u{e9}"));
        assert!(eval::<bool>(&lua, "local v = spout.json_decode('{\"n\":3}') return math.type(v.n) == 'integer'"));
        let (v, e): (Value, String) = eval(&lua, "return spout.json_decode('{oops')");
        assert!(v.is_nil() && e.starts_with("not JSON: "), "{e}");
    }

    #[test]
    fn errors_name_the_caller_line() {
        let lua = state();
        assert_eq!(
            err(&lua, "\nlocal x = spout.json { f = print }"),
            "test.lua:2: spout.json: cannot encode a function as JSON (only tables, strings, numbers, booleans, nil and spout.null)"
        );
        assert_eq!(err(&lua, "spout.array(1)"), "test.lua:1: spout.array expects a table, got integer");
        assert!(
            err(&lua, "\n\nspout.regex('(')").starts_with("test.lua:3: bad regex \"(\": "),
            "{}",
            err(&lua, "spout.regex('(')")
        );
        assert!(
            err(&lua, "spout.regex('\\xff')")
                .starts_with("test.lua:1: bad regex \"\u{FFFD}\": the pattern is not valid UTF-8")
        );
        assert_eq!(err(&lua, "spout.regex(nil)"), "test.lua:1: spout.regex expects a pattern (a string), got nil");
        assert!(err(&lua, "spout.state(1)").starts_with("test.lua:1: spout.state expects a name"));
        assert!(
            err(&lua, "spout.regex('a'):replace('a', {})")
                .starts_with("test.lua:1: regex:replace expects a replacement string")
        );
        let (ok, e): (bool, String) = eval(&lua, "local ok, e = pcall(spout.strftime, 1, '%Q') return ok, tostring(e)");
        assert!(!ok && e.starts_with("runtime error: spout.strftime: unknown directive `%Q`"), "{e}");
    }

    #[test]
    fn regex_methods_follow_the_string_library() {
        let lua = state();
        lua.load(
            r#"
            re = spout.regex([[(\w+)=(\d+)]])
            named = spout.regex([[(?P<key>\w+)=(?P<value>\d+)?]])
            plain = spout.regex([[\d+]])
        "#,
        )
        .exec()
        .unwrap();
        assert!(eval::<bool>(&lua, "return re:is_match('a x=1') and not re:is_match('nothing')"));
        assert_eq!(
            eval::<(i64, i64, String, String)>(&lua, "return re:find('.. x=12 y=3')"),
            (4, 7, "x".into(), "12".into())
        );
        assert_eq!(eval::<(i64, i64)>(&lua, "return plain:find('a1 b22', 3)"), (5, 6));
        assert_eq!(eval::<(i64, i64)>(&lua, "return plain:find('a1 b22', -2)"), (5, 6));
        assert_eq!(eval::<Value>(&lua, "return plain:find('a1', 4)"), Value::Nil);
        assert_eq!(eval::<Value>(&lua, "return plain:find('abc')"), Value::Nil);
        assert_eq!(eval::<String>(&lua, "return plain:match('id 42 and 7')"), "42");
        assert_eq!(eval::<(String, String)>(&lua, "return re:match('y=3')"), ("y".into(), "3".into()));
        assert_eq!(eval::<(String, Value)>(&lua, "return named:match('k=')"), ("k".into(), Value::Nil));
        let caps: Table = eval(&lua, "return named:captures('-- user=42 --')");
        assert_eq!(caps.get::<String>(0).unwrap(), "user=42");
        assert_eq!(caps.get::<String>(1).unwrap(), "user");
        assert_eq!(caps.get::<String>("key").unwrap(), "user");
        assert_eq!(caps.get::<String>("value").unwrap(), "42");
        assert_eq!(caps.get::<String>(2).unwrap(), "42");
        assert_eq!(eval::<Value>(&lua, "return named:captures('none')"), Value::Nil);
        assert_eq!(eval::<(String, i64)>(&lua, "return re:replace('a=1 b=2', '$2:$1')"), ("1:a 2:b".into(), 2));
        assert_eq!(eval::<(String, i64)>(&lua, "return named:replace('a=1 b=2', '${value}', 1)"), ("1 b=2".into(), 1));
        assert_eq!(eval::<(String, i64)>(&lua, "return plain:replace('a1b22', '#')"), ("a#b#".into(), 2));
        assert_eq!(eval::<(String, i64)>(&lua, "return plain:replace('abc', '#')"), ("abc".into(), 0));
        assert_eq!(eval::<(String, i64)>(&lua, "return plain:replace('1 2', '#', 0)"), ("1 2".into(), 0));
        assert_eq!(
            eval::<String>(
                &lua,
                "local t = {} for k, v in re:gmatch('a=1, b=22') do t[#t+1] = k..v end return table.concat(t, ',')"
            ),
            "a1,b22"
        );
        assert_eq!(
            eval::<String>(
                &lua,
                "local t = {} for m in spout.regex('a*'):gmatch('baaa') do t[#t+1] = '<'..m..'>' end return table.concat(t)"
            ),
            "<><aaa>"
        );
        assert_eq!(
            eval::<String>(
                &lua,
                "local t = {} for m in ('baaa'):gmatch('a*') do t[#t+1] = '<'..m..'>' end return table.concat(t)"
            ),
            "<><aaa>",
            "as Lua's own gmatch"
        );
        assert_eq!(eval::<String>(&lua, "return tostring(plain)"), r#"spout.regex("\\d+")"#);
    }

    #[test]
    fn regex_works_on_invalid_utf8() {
        let lua = state();
        lua.load(
            r#"s = "pre \xff\xfe id=7 \xc3" re = spout.regex([[id=(\d)]]) any = spout.regex([[(?-u:\xff)(?-u:.)]])"#,
        )
        .exec()
        .unwrap();
        assert!(eval::<bool>(&lua, "return re:is_match(s)"));
        assert_eq!(eval::<(i64, i64, String)>(&lua, "return re:find(s)"), (8, 11, "7".into()));
        assert_eq!(eval::<(i64, i64)>(&lua, "return any:find(s)"), (5, 6));
        assert_eq!(eval_bytes(&lua, "return (re:replace(s, 'n=$1'))"), b"pre \xff\xfe n=7 \xc3");
        assert_eq!(eval_bytes(&lua, "return any:match(s)"), b"\xff\xfe");
        assert_eq!(
            eval_bytes(&lua, "return spout.regex('.'):captures('\\xff\\xc3\\xa9')[0]"),
            "é".as_bytes(),
            "Unicode `.` skips invalid bytes"
        );
    }

    #[test]
    fn strftime_every_directive() {
        let lua = state();
        let f = |fmt: &str| eval::<String>(&lua, &format!("return spout.strftime(T, {fmt:?})"));
        assert_eq!(f("%Y-%m-%d %H:%M:%S.%3N|%6N|%9N|%N|%1N"), "2021-12-06 15:27:06.123|123456|123456789|123456789|1");
        assert_eq!(
            f("%j %a %A %b %h %B %y %e %p %I %Z %z %s %% %F %T"),
            "340 Mon Monday Dec Dec December 21  6 PM 03 UTC +0000 1638804426 % 2021-12-06 15:27:06"
        );
        assert_eq!(f("no directives"), "no directives");
        assert_eq!(eval::<String>(&lua, "return spout.strftime(0, '%I %p %a %j %s')"), "12 AM Thu 001 0");
        assert_eq!(
            eval::<String>(&lua, "return spout.strftime(-1, '%F %T %s')"),
            "1969-12-31 23:59:59 -1",
            "integer seconds"
        );
        assert_eq!(
            eval::<String>(&lua, "return spout.strftime(T // 1000000000, '%F %T.%3N')"),
            "2021-12-06 15:27:06.000"
        );
        assert_eq!(
            eval::<String>(&lua, "return spout.strftime(1638804426.25, '%T.%3N')"),
            "15:27:06.250",
            "float seconds"
        );
        assert_eq!(eval::<String>(&lua, "return spout.strftime(-0.5, '%T.%3N')"), "23:59:59.500");
        assert_eq!(eval_bytes(&lua, "return spout.strftime(T, '\\xff%Y')"), b"\xff2021");
        assert!(err(&lua, "spout.strftime(T, '%Y %')").contains("ends with a lone `%`"));
        assert!(err(&lua, "spout.strftime(T, '%0N')").contains("unknown directive `%0`"));
        assert!(err(&lua, "spout.strftime(1e300, '%Y')").contains("time 1e300 is out of range"));
        assert!(err(&lua, "spout.strftime(0/0, '%Y')").contains("out of range"));
        assert!(err(&lua, "spout.strftime('now', '%Y')").contains("expects a time"));
        assert!(err(&lua, "spout.strftime(T)").contains("expects a format string, got nil"));
    }

    #[test]
    fn strftime_agrees_with_c_strftime() {
        // os.date("!…") is the C library's gmtime + strftime; %Z and %s differ by platform.
        let lua = state();
        let mismatch: Option<String> = eval(
            &lua,
            r#"
            local fmt = "%Y-%m-%d %H:%M:%S %j %a %A %b %h %B %y %e %p %I %F %T %%"
            for t = -2208988800, 4102444800, 86400 * 13 + 3607 do
              local ours, c = spout.strftime(t, fmt), os.date("!" .. fmt, t)
              if ours ~= c then return t .. ": " .. ours .. " ~= " .. c end
            end
        "#,
        );
        assert_eq!(mismatch, None);
    }

    #[test]
    fn rfc3339_with_chosen_digits() {
        let lua = state();
        let r = |args: &str| eval::<String>(&lua, &format!("return spout.rfc3339({args})"));
        assert_eq!(r("T"), "2021-12-06T15:27:06.123456789Z");
        assert_eq!(r("T, 0"), "2021-12-06T15:27:06Z");
        assert_eq!(r("T, 3"), "2021-12-06T15:27:06.123Z");
        assert_eq!(r("T, 6"), "2021-12-06T15:27:06.123456Z");
        assert_eq!(r("0, 3"), "1970-01-01T00:00:00.000Z");
        assert_eq!(r("math.maxinteger"), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(r("-1"), "1969-12-31T23:59:59.000000000Z");
        // msg.time as the router gives it: the float nearest to T, exact to the microsecond.
        assert_eq!(r(&format!("{}, 6", T as f64 / 1e9)), "2021-12-06T15:27:06.123456Z");
        assert!(err(&lua, "spout.rfc3339(T, 10)").contains("digits must be 0 to 9"));
        assert!(err(&lua, "spout.rfc3339(2^63)").contains("out of range"));
    }

    #[test]
    fn hostname_is_the_os_hostname() {
        let lua = state();
        assert_eq!(eval::<String>(&lua, "return spout.hostname()"), crate::format::os_hostname());
    }

    #[test]
    fn state_tables_are_named_and_survive_a_reload() {
        let config = r#"
            local counters = spout.state("counters")
            local seen = spout.state("dedup")
            function tick(key)
              counters.n = (counters.n or 0) + 1
              seen[key] = true
              return counters.n
            end
        "#;
        let old = state();
        old.load(config).exec().unwrap();
        assert!(eval::<bool>(&old, "return spout.state('counters') == spout.state('counters')"));
        for key in ["a", "b", "a"] {
            old.globals().get::<Function>("tick").unwrap().call::<i64>(key).unwrap();
        }
        old.load(
            r#"
            local s = spout.state("rich")
            s.nested = { list = { 1, 2.5, "x\xff" }, empty = spout.array {}, deep = { deeper = { flag = false } } }
            s[7] = spout.null
            s[1.5] = "float key"
            s[true] = "bool key"
            s.fn = print
            s.re = spout.regex("x")
            s[{}] = "table key"
            s.self = s
        "#,
        )
        .exec()
        .unwrap();
        let exported = export_states(&old).unwrap();
        drop(old);
        let mut names: Vec<_> = exported.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        assert_eq!(names, ["counters", "dedup", "rich"]);

        let new = state();
        import_states(&new, exported).unwrap();
        new.load(config).exec().unwrap();
        assert_eq!(
            new.globals().get::<Function>("tick").unwrap().call::<i64>("c").unwrap(),
            4,
            "the counter keeps counting"
        );
        assert_eq!(
            eval::<String>(
                &new,
                "local t = {} for k in pairs(spout.state('dedup')) do t[#t+1] = k end table.sort(t) return table.concat(t)"
            ),
            "abc"
        );
        assert!(eval::<bool>(
            &new,
            r#"local s = spout.state('rich') return s[7] == spout.null and s[true] == "bool key" and s.fn == nil and s.re == nil and s.self == nil and s.nested.list[3] == "x\xff""#
        ));
        let rich: String = eval(&new, "local s = spout.state('rich') s[true] = nil return spout.json(s)");
        assert_eq!(
            rich,
            "{\"1.5\":\"float key\",\"7\":null,\"nested\":{\"deep\":{\"deeper\":{\"flag\":false}},\"empty\":[],\"list\":[1,2.5,\"x\u{FFFD}\"]}}"
        );
    }

    #[test]
    fn state_copy_is_bounded() {
        // 40 levels: those past MAX_STATE_DEPTH are left behind.
        let lua = state();
        lua.load("local t = spout.state('deep') for i = 1, 40 do t.next = {} t = t.next end").exec().unwrap();
        let exported = export_states(&lua).unwrap();
        let depth = |v: &StateValue| {
            let mut d = 0;
            let mut v = v;
            while let StateValue::Table { entries, .. } = v {
                match entries.first() {
                    Some((_, next)) => v = next,
                    None => break,
                }
                d += 1;
            }
            d
        };
        let deep = &exported.iter().find(|(n, _)| n == "deep").unwrap().1;
        assert_eq!(depth(deep), MAX_STATE_DEPTH);
        // Every level refers twice to the next: 2^25 paths, cut off by the value budget.
        let lua = state();
        lua.load("local t = { leaf = 1 } for i = 1, 25 do t = { a = t, b = t } end spout.state('wide').t = t")
            .exec()
            .unwrap();
        fn count(v: &StateValue) -> usize {
            match v {
                StateValue::Table { entries, .. } => 1 + entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
                _ => 1,
            }
        }
        assert!(export_states(&lua).unwrap().iter().map(|(_, v)| count(v)).sum::<usize>() <= MAX_STATE_VALUES);
        let fresh = state();
        import_states(&fresh, exported).unwrap();
        assert!(eval::<bool>(&fresh, "return spout.state('deep').next.next ~= nil"));
        let bad = import_states(&fresh, vec![("x".into(), StateValue::Int(1))]).unwrap_err();
        assert!(bad.to_string().contains("spout.state(\"x\"): a state must be a table"));
    }
}
