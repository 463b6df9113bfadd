//! What Lua code can reach: the one constructor of every Lua state luaspout makes.
//!
//! A state gets the standard libraries that cannot touch the host (`table`, `string`, `math`,
//! `utf8`, `coroutine`, and of `os` only `clock`, `date`, `difftime` and `time`), the base
//! library without `dofile` and `loadfile`, the `spout` module, and [`Guard`]'s budget and
//! memory cap. Beyond what mlua's safe mode already refuses (`debug`, C modules):
//!
//! - **Text chunks only.** Lua 5.4 has no bytecode verifier, so a crafted binary chunk can
//!   corrupt memory: `string.dump` is gone, `load` always uses mode `"t"`, the config is loaded
//!   as text, and `require` loads text files only.
//! - **`require` reads the config's directory only** (`?.lua` and `?/init.lua` there), through
//!   luaspout's own searcher: `package.path` is informative and changing it changes nothing;
//!   `package.loadlib` and `package.searchpath` (which probes any path) are gone.
//!   Every file it loads is watched for reloads like the config.
//! - **No environment but `spout.env`**, which hides luaspout's own secrets
//!   ([`crate::settings::SECRET_VARIABLES`]): `os.getenv` is gone.
//! - **A spent budget cannot be caught**: `pcall`, `xpcall` and `coroutine.resume` rethrow the
//!   guard's error instead of returning it.
//! - **No finalizers**: `setmetatable` refuses a metatable with a `__gc` field. Lua runs `__gc`
//!   with hooks off, so the budget could not stop one that loops.
//! - **`setmetatable` on a message table is noted** by the guard: the worker's message fill runs
//!   without the instruction hook only while no message table has a metatable (see
//!   [`Guard::run_own_code`]).
//! - `print` writes to luaspout's log (as `spout.log("info", …)`), never to stdout.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use super::guard::Guard;
use crate::config::Config;

/// Whether a state is built to check a config (logs from `spout.log` shown at load) or to run
/// it in a worker (load-time logs suppressed, since validation already showed them once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    Validate,
    Worker,
    /// A worker's state without the guard (no memory cap, no instruction hook). Only the
    /// benchmarks build one: the pipeline bench ([`crate::router::Pipeline::unguarded`]), to
    /// measure what the guard costs, and the helper bench, whose timed loops run far past a
    /// line's budget. The router never does.
    Unguarded,
}

/// The registry name of `string.sub` as the state started: luaspout's own Lua (the worker's
/// message fill) uses it, and a config that replaces `string.sub` cannot change it. The
/// registry is out of Lua's reach (no `debug` library).
pub const STRING_SUB: &str = "luaspout.string.sub";

/// The registry name of the weak set of message tables (keys: the worker's pooled `msg`
/// tables): `setmetatable` on one of them is noted by the guard.
pub const MESSAGE_TABLES: &str = "luaspout.message_tables";

/// A fresh state with its guard, and the files `require` has loaded into it so far.
pub struct State {
    pub lua: Lua,
    pub guard: Rc<Guard>,
    pub required: Rc<RefCell<Vec<PathBuf>>>,
}

/// Lua run before the config: closes the gaps of the base library described in the module
/// documentation. `spent` and `note_message_metatable` are the guard's; `find_module` is the
/// `require` searcher. It returns the weak set of message tables.
const HARDENING: &str = r##"
local spent, find_module, log, note_message_metatable = ...
local raw_load, raw_pcall, raw_xpcall, raw_resume, raw_close, raw_error, select, tostring =
  load, pcall, xpcall, coroutine.resume, coroutine.close, error, select, tostring
local raw_setmetatable, raw_rawget, raw_type = setmetatable, rawget, type
local concat = table.concat
local message_tables = raw_setmetatable({}, { __mode = "k" })

function load(chunk, name, mode, ...)
  if select("#", ...) > 0 then return raw_load(chunk, name, "t", ...) end
  return raw_load(chunk, name, "t")
end

local function rethrow_if_spent(ok, ...)
  if not ok and spent() then raw_error((...), 0) end
  return ok, ...
end
function pcall(...) return rethrow_if_spent(raw_pcall(...)) end
function xpcall(...) return rethrow_if_spent(raw_xpcall(...)) end
function coroutine.resume(...) return rethrow_if_spent(raw_resume(...)) end
function coroutine.close(...) return rethrow_if_spent(raw_close(...)) end

function setmetatable(...)
  local t, mt = ...
  if message_tables[t] then note_message_metatable() end
  if raw_type(mt) == "table" and raw_rawget(mt, "__gc") ~= nil then
    raw_error("setmetatable: a __gc metamethod is not allowed (Lua runs finalizers with hooks off, out of the instruction budget's reach)", 2)
  end
  local setmetatable = raw_setmetatable -- so that errors name `setmetatable`
  return (setmetatable(...))
end

function print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  log("info", concat(parts, "\t"))
end

package.searchers = { package.searchers[1], find_module }
return message_tables
"##;

/// Builds a state for `config`: the sandbox, the `spout` module and a guard with a load
/// budget and a memory cap of `memory_cap` bytes.
pub fn new_state(config: &Config, mode: LoadMode, memory_cap: usize) -> mlua::Result<State> {
    let libs =
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::PACKAGE | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let guard = Rc::new(match mode {
        LoadMode::Unguarded => Guard::unarmed(&lua)?,
        LoadMode::Validate | LoadMode::Worker => Guard::install(&lua, memory_cap)?,
    });
    let globals = lua.globals();
    globals.raw_set("dofile", Value::Nil)?;
    globals.raw_set("loadfile", Value::Nil)?;
    let string: Table = globals.get("string")?;
    string.raw_set("dump", Value::Nil)?;
    lua.set_named_registry_value(STRING_SUB, string.get::<Function>("sub")?)?;
    keep_only(&globals.get("os")?, &["clock", "date", "difftime", "time"])?;

    let dir = config.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let package: Table = globals.get("package")?;
    package.raw_set("cpath", "")?;
    package.raw_set("loadlib", Value::Nil)?;
    package.raw_set("searchpath", Value::Nil)?;
    package.raw_set("path", format!("{0}/?.lua;{0}/?/init.lua", dir.display()))?;
    let required: Rc<RefCell<Vec<PathBuf>>> = Rc::default();
    let find_module = module_searcher(&lua, dir, required.clone())?;

    let spout = super::spout::install(&lua, config, mode)?;
    let log: Function = spout.raw_get("log")?;
    globals.raw_set("spout", spout)?;
    let spent = {
        let guard = guard.clone();
        lua.create_function(move |_, ()| Ok(guard.spent()))?
    };
    let note_message_metatable = {
        let guard = guard.clone();
        lua.create_function(move |_, ()| {
            guard.note_message_metatable();
            Ok(())
        })?
    };
    let message_tables: Table =
        lua.load(HARDENING).set_name("=sandbox").call((spent, find_module, log, note_message_metatable))?;
    lua.set_named_registry_value(MESSAGE_TABLES, message_tables)?;
    Ok(State { lua, guard, required })
}

/// Removes every field of `t` but `keep`, in place: the same table is `package.loaded`'s,
/// so `require "os"` gets the trimmed one too.
fn keep_only(t: &Table, keep: &[&str]) -> mlua::Result<()> {
    let names: Vec<Value> = t.pairs::<Value, Value>().map(|p| p.map(|(k, _)| k)).collect::<mlua::Result<_>>()?;
    for name in names {
        let kept = matches!(&name, Value::String(s) if keep.iter().any(|k| s.as_bytes().as_ref() == k.as_bytes()));
        if !kept {
            t.raw_set(name, Value::Nil)?;
        }
    }
    Ok(())
}

/// The `require` searcher: `name` (dots as directory separators) as `?.lua` or `?/init.lua`
/// under `dir`, loaded as text with its path as chunk name, and recorded in `required`.
fn module_searcher(lua: &Lua, dir: PathBuf, required: Rc<RefCell<Vec<PathBuf>>>) -> mlua::Result<Function> {
    lua.create_function(move |lua, name: String| {
        let relative = name.replace('.', "/");
        let candidates = [dir.join(format!("{relative}.lua")), dir.join(&relative).join("init.lua")];
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let tried: Vec<String> = candidates.iter().map(|p| format!("no file '{}'", p.display())).collect();
            return Ok((Value::String(lua.create_string(tried.join("\n\t"))?), Value::Nil));
        };
        let text = std::fs::read(path)
            .map_err(|e| mlua::Error::runtime(format!("cannot read module '{name}' from {}: {e}", path.display())))?;
        let loader = load_text_module(lua, path, &text)?;
        required.borrow_mut().push(path.clone());
        Ok((Value::Function(loader), Value::String(lua.create_string(path.to_string_lossy().as_bytes())?)))
    })
}

/// A module file as a function, refusing binary chunks with a message that says so.
fn load_text_module(lua: &Lua, path: &Path, text: &[u8]) -> mlua::Result<Function> {
    if text.first() == Some(&0x1b) {
        return Err(mlua::Error::runtime(format!(
            "{}: is a binary (precompiled) chunk; luaspout loads Lua source only",
            path.display()
        )));
    }
    lua.load(text).set_name(format!("@{}", path.display())).set_mode(mlua::chunk::ChunkMode::Text).into_function()
}

#[cfg(test)]
mod tests {
    use super::super::load::LoadedConfig;
    use super::*;
    use crate::settings::Env;

    fn state(text: &str, env: &[(&str, &str)], dir: Option<&Path>) -> anyhow::Result<Lua> {
        let mut config = Config::from_text("/cfg/routes.lua", text, Env::from_pairs(env));
        config.dir = dir.map(Path::to_path_buf);
        LoadedConfig::load(&config, LoadMode::Validate).map(|loaded| loaded.lua)
    }

    fn truth(lua: &Lua, expr: &str) -> bool {
        lua.load(format!("return {expr}")).eval::<bool>().unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn nothing_reaches_the_host() {
        let lua = state("", &[("LUASPOUT_API_TOKEN", "s3cret"), ("MY_KEY", "k")], None).unwrap();
        for hidden in [
            "io",
            "debug",
            "dofile",
            "loadfile",
            "os.execute",
            "os.getenv",
            "os.exit",
            "os.remove",
            "string.dump",
            "package.loadlib",
            "package.searchpath",
            "require('os').getenv",
        ] {
            assert!(truth(&lua, &format!("{hidden} == nil")), "{hidden} should be gone");
        }
        assert!(truth(&lua, "type(os.time()) == 'number' and type(os.clock()) == 'number'"));
        assert!(truth(&lua, "spout.env('LUASPOUT_API_TOKEN') == nil and spout.env('MY_KEY') == 'k'"));
        assert!(truth(&lua, "spout.env('LUASPOUT_API_TOKEN', 'none') == 'none'"));
    }

    #[test]
    fn only_text_chunks_load() {
        // A binary chunk, as string.dump would make it (a header is enough for Lua to say no).
        let lua = state("", &[], None).unwrap();
        let (f, err): (Value, String) = lua.load(r#"return load("\27Lua\84\0")"#).eval().unwrap();
        assert!(f.is_nil() && err.contains("binary chunk"), "{err}");
        let (f, err): (Value, String) = lua.load(r#"return load("\27Lua\84\0", "x", "b")"#).eval().unwrap();
        assert!(f.is_nil() && err.contains("binary chunk"), "{err}");
        assert!(truth(&lua, "load('return 1 + 1')() == 2"));
        assert!(truth(&lua, "load('return x', 'c', 't', { x = 3 })() == 3"));
        let err = match state("local f = load(string.dump(function() end))", &[], None) {
            Ok(_) => panic!("string.dump should be gone"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("dump"), "{err}");
        let config = Config::from_text("/cfg/routes.lua", "\x1bLua", Env::default());
        assert!(LoadedConfig::load(&config, LoadMode::Validate).is_err());
    }

    #[test]
    fn require_reads_the_config_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("helpers.lua"), "return { answer = 42 }").unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/init.lua"), "return 'pkg'").unwrap();
        std::fs::write(dir.path().join("compiled.lua"), b"\x1bLuaT\0").unwrap();
        std::fs::write(outside.path().join("evil.lua"), "return 'evil'").unwrap();
        let text = format!(
            "package.path = '{}/?.lua'\nanswer = require('helpers').answer\nname = require('pkg')",
            outside.path().display()
        );
        let lua = state(&text, &[], Some(dir.path())).unwrap();
        assert!(truth(&lua, "answer == 42 and name == 'pkg'"));
        let (ok, err): (bool, String) =
            lua.load("local ok, e = pcall(require, 'evil') return ok, tostring(e)").eval().unwrap();
        assert!(!ok && err.contains("not found"), "{err}");
        let (ok, err): (bool, String) =
            lua.load("local ok, e = pcall(require, 'compiled') return ok, tostring(e)").eval().unwrap();
        assert!(!ok && err.contains("binary"), "{err}");
    }

    #[test]
    fn setmetatable_refuses_finalizers_and_works_otherwise() {
        let config =
            Config::from_text("/cfg/routes.lua", "local x = 1\nsetmetatable({}, { __gc = print })", Env::default());
        let err = match LoadedConfig::load(&config, LoadMode::Validate) {
            Ok(_) => panic!("a __gc metamethod should be refused"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("routes.lua:2:") && err.contains("__gc"), "{err}");
        let lua = state("", &[], None).unwrap();
        assert!(truth(&lua, "getmetatable(setmetatable({}, { __index = { a = 1 } })).__index.a == 1"));
        assert!(truth(&lua, "setmetatable({}, { __index = { a = 1 } }).a == 1"));
        assert!(truth(&lua, "select('#', setmetatable({}, nil)) == 1"));
        for bad in
            ["setmetatable({})", "setmetatable(1, {})", "setmetatable(setmetatable({}, { __metatable = 1 }), {})"]
        {
            let err = lua.load(bad).exec().unwrap_err().to_string();
            assert!(err.contains("setmetatable") || err.contains("protected"), "{bad}: {err}");
        }
    }

    #[test]
    fn print_goes_to_the_log() {
        let lua = state("print('hello', 1, nil)", &[], None).unwrap();
        assert!(truth(&lua, "pcall(print, {}) == true"));
    }
}
