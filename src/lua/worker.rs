//! The Lua half of a router worker: its own state with the config loaded, a pool of message
//! tables overwritten in place each batch, one cached table per container, and small driver
//! functions (one per shape of route, [`driver_source`]) that run a route's `filter`/`format`
//! over a whole batch in one call.
//!
//! The pool is written by Lua too ([`FILL`]), in one call per batch that carries the batch's
//! lines as one string and the rest as integers. Under the guard's memory cap, mlua runs every
//! call that may allocate (each `raw_set`, each `create_string`) in a `pcall` of its own:
//! writing the fields from Rust took six of those per line, most of what a Lua route cost.
//!
//! A Lua error in one message (or its budget spent, or an allocation past the state's cap; see
//! [`super::guard`]) is counted against the route, logged (rate-limited) with the route's
//! name, and the message goes on by the route's `on_error`; the rest of the batch goes on.

use std::rc::Rc;

use mlua::{Function, Lua, Table, Value, Variadic};
use tracing::warn;

use super::error_text;
use super::guard::Guard;
use super::load::LoadedConfig;
use super::sandbox::{LoadMode, MESSAGE_TABLES, STRING_SUB};
use crate::config::{Config, OnError};
use crate::message::{Container, Message, Source};
use crate::stats::{self, RouteStats};

/// The number of pooled message tables a state starts with: a router batch's most.
pub const POOL_SIZE: usize = 256;

/// The driver of one shape of route: runs its `filter` then its `format` over the selected
/// messages, recording progress so a failing message can be skipped and the batch resumed
/// after it, and so the guard gives each message a budget of its own. Its instructions run
/// under the count hook with the config's, so each shape (which of the two functions the
/// route has, whether it takes the whole batch) gets a driver of its own instead of testing
/// for them at every message: 3-4 % of a Lua route's cost per line in the pipeline bench.
fn driver_source(filter: bool, format: bool, whole_batch: bool) -> String {
    let message = if whole_batch { "msgs[k]" } else { "msgs[sel[k]]" };
    let outcome = match (filter, format) {
        (true, true) => "if filter(m) then out[k] = format(m) else out[k] = false end",
        (true, false) => "out[k] = not not filter(m)",
        _ => "out[k] = format(m)",
    };
    format!(
        "return function(filter, format, msgs, sel, n, start, out, progress)
  for k = start, n do
    progress[1] = k
    local m = {message}
    {outcome}
  end
end"
    )
}

/// The index in [`LuaRunner::drivers`] of a shape's driver.
fn driver_index(filter: bool, format: bool, whole_batch: bool) -> usize {
    usize::from(filter) | usize::from(format) << 1 | usize::from(whole_batch) << 2
}

/// Writes the messages of a batch into their pooled tables. Its arguments after `buf` (the
/// lines, one after the other) are four integers per message: the table's index (negated
/// for stderr), the end of its line in `buf`, its time in ns, and its container's slot in
/// `containers`. `sub` is the state's own `string.sub` (see [`STRING_SUB`]). `t / 1e9` is
/// the same float as Rust's `t as f64 / 1e9`.
///
/// It runs without the instruction hook ([`Guard::run_own_code`]): it calls nothing the
/// config can replace (`sub` is captured, the rest are operators on numbers and its own
/// tables), and its plain assignments to `msg` fields can reach a metatable only if the config
/// gave a message table one (a field removed, a `__newindex` set), which the sandbox's
/// `setmetatable` notes; from then on it runs under the hook, with the budget of its lines.
const FILL: &str = r#"
local sub = ...
return function(msgs, containers, buf, ...)
  local a = { ... }
  local s = 1
  for j = 1, #a, 4 do
    local i, e, t = a[j], a[j + 1], a[j + 2]
    local source = "stdout"
    if i < 0 then i, source = -i, "stderr" end
    local m = msgs[i]
    m.data = sub(buf, s, e)
    m.source = source
    m.time = t / 1e9
    m.time_ns = t
    m.container = containers[a[j + 3]]
    s = e + 1
  end
end
"#;

/// Makes the driver's `sel` table (its arguments, the pooled tables' indices of a route's
/// messages, in order) for a route that takes only part of a batch: one call per batch where
/// setting the entries from Rust was one protected call each. Like [`FILL`], it runs without
/// the instruction hook: a table constructor calls nothing.
const SELECT: &str = "return function(...) return { ... } end";

/// What a route's Lua said about one message.
pub enum Outcome<'a> {
    /// Filtered out, or `format` returned nil.
    Drop,
    /// Passed, with no payload of its own: use the adapter's default layout.
    Default,
    /// The payload `format` returned.
    Payload(&'a [u8]),
}

/// Which route's Lua a call runs, and what its failures do.
pub struct RouteLua<'a> {
    /// The route's position in the config: which functions to call.
    pub index: usize,
    pub on_error: OnError,
    pub stats: &'a RouteStats,
}

/// A worker's Lua state and what it keeps between batches.
pub struct LuaRunner {
    lua: Lua,
    guard: Rc<Guard>,
    /// `(filter, format)` per route index.
    functions: Vec<(Option<Function>, Option<Function>)>,
    /// The drivers, by [`driver_index`]; none for a shape with neither function.
    drivers: Vec<Option<Function>>,
    /// [`FILL`], compiled.
    fill: Function,
    /// [`SELECT`], compiled.
    select: Function,
    /// The pooled message tables, also held in `msgs` (the Lua array passed to the driver).
    pool: Vec<Table>,
    msgs: Table,
    /// The sandbox's weak set of message tables ([`MESSAGE_TABLES`]), which holds the pool.
    message_tables: Table,
    /// Whether `pool[i]` holds the batch's message `i` yet.
    filled: Vec<bool>,
    out: Table,
    progress: Table,
    /// `msg.container` tables, by slot: the Lua side of `containers`.
    container_tables: Table,
    /// The slot in `container_tables` of each container snapshot (by epoch) seen so far.
    containers: foldhash::HashMap<u64, i64>,
    /// Slots of `container_tables` freed by [`LuaRunner::forget`], for the next container.
    free_slots: Vec<i64>,
    /// The lines of the messages [`FILL`] writes next, one after the other.
    lines: Vec<u8>,
    scratch: Vec<u8>,
}

impl LuaRunner {
    /// Loads the config into a new state (`mode` is [`LoadMode::Worker`] but in the guard's
    /// benchmark) and takes each route's functions from it; `previous` is the state it
    /// replaces, whose `spout.state` tables are carried over.
    pub fn new(
        config: &Config,
        route_count: usize,
        previous: Option<&LuaRunner>,
        mode: LoadMode,
    ) -> anyhow::Result<LuaRunner> {
        let states = match previous {
            Some(old) => super::spout::export_states(&old.lua)
                .map_err(|e| anyhow::anyhow!("cannot carry spout.state over: {}", error_text(&e)))?,
            None => Vec::new(),
        };
        let loaded = LoadedConfig::load_carrying(config, mode, states)?;
        let names: Vec<&str> = loaded.routes.iter().map(|r| r.spec.name.as_str()).collect();
        let from_file = config.routes.iter().filter(|r| r.origin == crate::config::Origin::Lua);
        let expected: Vec<&str> = from_file.map(|r| r.name.as_str()).collect();
        if names != expected || route_count != config.routes.len() {
            anyhow::bail!(
                "{}: the config declared different routes when run again ({names:?} vs {expected:?}); routes must not depend on randomness or time",
                config.source_name
            );
        }
        let (lua, guard) = (loaded.lua, loaded.guard);
        // API routes come after the file's and have no functions.
        let mut functions: Vec<_> = loaded.routes.into_iter().map(|r| (r.filter, r.format)).collect();
        functions.resize(route_count, (None, None));
        Self::with_state(lua, guard, functions)
            .map_err(|e| anyhow::anyhow!("cannot prepare Lua state: {}", error_text(&e)))
    }

    fn with_state(
        lua: Lua,
        guard: Rc<Guard>,
        functions: Vec<(Option<Function>, Option<Function>)>,
    ) -> mlua::Result<LuaRunner> {
        let mut drivers = vec![None; 8];
        for (i, driver) in drivers.iter_mut().enumerate() {
            let (filter, format, whole_batch) = (i & 1 != 0, i & 2 != 0, i & 4 != 0);
            debug_assert_eq!(driver_index(filter, format, whole_batch), i);
            if filter || format {
                let source = driver_source(filter, format, whole_batch);
                *driver = Some(lua.load(source).set_name("=driver").eval::<Function>()?);
            }
        }
        let sub: Function = lua.named_registry_value(STRING_SUB)?;
        let fill: Function = lua.load(FILL).set_name("=fill").call(sub)?;
        let select: Function = lua.load(SELECT).set_name("=select").eval()?;
        let msgs = lua.create_table_with_capacity(POOL_SIZE, 0)?;
        let message_tables: Table = lua.named_registry_value(MESSAGE_TABLES)?;
        let mut pool = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            pool.push(pooled_table(&lua, &msgs, &message_tables, pool.len())?);
        }
        Ok(LuaRunner {
            out: lua.create_table_with_capacity(POOL_SIZE, 0)?,
            progress: guard.progress().clone(),
            guard,
            functions,
            drivers,
            fill,
            select,
            pool,
            msgs,
            message_tables,
            filled: vec![false; POOL_SIZE],
            container_tables: lua.create_table()?,
            containers: foldhash::HashMap::default(),
            free_slots: Vec::new(),
            lines: Vec::new(),
            scratch: Vec::new(),
            lua,
        })
    }

    /// Marks the pooled tables stale: a new batch of `n` messages starts. The pool grows if a
    /// batch is larger than usual (multiline flushes can add a few messages to a full batch).
    pub fn begin_batch(&mut self, n: usize) {
        while self.pool.len() < n {
            match pooled_table(&self.lua, &self.msgs, &self.message_tables, self.pool.len()) {
                Ok(t) => {
                    self.pool.push(t);
                    self.filled.push(false);
                }
                // Out of Lua memory: `fill` will fail for the extra messages and report it.
                Err(_) => break,
            }
        }
        let n = n.min(self.pool.len());
        self.filled[..n].fill(false);
    }

    /// Bytes the Lua state holds.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Whether the state holds so much that it should be rebuilt: near its cap even after a
    /// full collection (a table that grows with every line, say), where every allocation is
    /// about to fail. The collection runs only when the state is near its cap.
    pub fn outgrown(&mut self) -> bool {
        let cap = self.guard.memory_cap();
        let near = |used: usize| cap > 0 && used > cap / 4 * 3;
        if !near(self.lua.used_memory()) {
            return false;
        }
        let _ = self.lua.gc_collect();
        near(self.lua.used_memory())
    }

    /// Drops the cached table of a container snapshot that is gone.
    pub fn forget(&mut self, epoch: u64) {
        if let Some(slot) = self.containers.remove(&epoch) {
            // Clearing a slot never allocates; were it to fail, the slot would only stay taken.
            if self.container_tables.raw_set(slot, Value::Nil).is_ok() {
                self.free_slots.push(slot);
            }
        }
    }

    /// Runs `route`'s Lua over the messages `selected` (indices into `batch`) and reports the
    /// outcome of each, in order, to `emit`.
    pub fn run_route(
        &mut self,
        route: &RouteLua,
        batch: &[Message],
        selected: &[usize],
        mut emit: impl FnMut(&Message, Outcome),
    ) {
        let rs = route.stats;
        if let Err(e) = self.fill(batch, selected) {
            // Only an out-of-memory error gets here: Lua cannot run, the lines still go out.
            report_error(route, rs, &e);
            for &i in selected {
                emit(&batch[i], failed(route));
            }
            return;
        }
        let n = selected.len();
        let sel = match self.selection(batch.len(), selected) {
            Ok(sel) => sel,
            Err(e) => {
                // Out of Lua memory, as for the fill.
                report_error(route, rs, &e);
                for &i in selected {
                    emit(&batch[i], failed(route));
                }
                return;
            }
        };
        let (filter, format) = &self.functions[route.index];
        let Some(driver) = &self.drivers[driver_index(filter.is_some(), format.is_some(), sel.is_nil())] else {
            // The router sends no route without either function here; were one sent, its
            // messages pass as they are.
            for &i in selected {
                emit(&batch[i], Outcome::Default);
            }
            return;
        };
        let mut start = 1;
        while start <= n {
            self.guard.per_line();
            let result = driver.call::<()>((
                filter.clone(),
                format.clone(),
                &self.msgs,
                sel.clone(),
                n,
                start,
                &self.out,
                &self.progress,
            ));
            let done = match &result {
                Ok(()) => n,
                Err(_) => self.progress.raw_get::<usize>(1).unwrap_or(start).clamp(start, n) - 1,
            };
            for k in start..=done {
                let msg = &batch[selected[k - 1]];
                match self.out.raw_get::<Value>(k) {
                    Ok(Value::Nil) | Ok(Value::Boolean(false)) => emit(msg, Outcome::Drop),
                    Ok(Value::Boolean(true)) => emit(msg, Outcome::Default),
                    Ok(Value::String(s)) => emit(msg, Outcome::Payload(&s.as_bytes())),
                    Ok(v @ Value::Table(_)) => {
                        self.scratch.clear();
                        match crate::format::json::encode_lua(&v, &mut self.scratch) {
                            Ok(()) => emit(msg, Outcome::Payload(&self.scratch)),
                            Err(e) => {
                                report_error(
                                    route,
                                    rs,
                                    &mlua::Error::runtime(format!("format returned a table that {e}")),
                                );
                                emit(msg, failed(route));
                            }
                        }
                    }
                    Ok(Value::Integer(i)) => emit(msg, Outcome::Payload(i.to_string().as_bytes())),
                    Ok(Value::Number(x)) => emit(msg, Outcome::Payload(x.to_string().as_bytes())),
                    Ok(other) => {
                        report_error(
                            route,
                            rs,
                            &mlua::Error::runtime(format!(
                                "format returned a {}, expected a string, a table or nil",
                                other.type_name()
                            )),
                        );
                        emit(msg, failed(route));
                    }
                    Err(e) => {
                        report_error(route, rs, &e);
                        emit(msg, failed(route));
                    }
                }
            }
            match result {
                Ok(()) => break,
                Err(e) => {
                    // Message `done + 1` raised: count it, apply the route's policy, go on.
                    report_error(route, rs, &e);
                    emit(&batch[selected[done]], failed(route));
                    start = done + 2;
                }
            }
        }
    }

    /// The driver's `sel`: nil when the route takes the whole batch (message `k` is table
    /// `k`), else a table of the `selected` messages' table indices, made by [`SELECT`].
    fn selection(&self, batch_len: usize, selected: &[usize]) -> mlua::Result<Value> {
        if selected.len() == batch_len {
            return Ok(Value::Nil);
        }
        let indices = Variadic::from_iter(selected.iter().map(|&i| i as i64 + 1));
        self.guard.for_lines(selected.len());
        self.guard.run_own_code(&self.lua, || self.select.call::<Value>(indices))
    }

    /// Writes the `selected` messages of the batch that no route has written yet into their
    /// pooled tables (message `i` into table `i`), in one call of [`FILL`].
    fn fill(&mut self, batch: &[Message], selected: &[usize]) -> mlua::Result<()> {
        self.lines.clear();
        let mut args = Vec::with_capacity(selected.len() * 4);
        for &i in selected {
            if i >= self.pool.len() {
                return Err(mlua::Error::runtime("out of Lua memory: cannot grow the message pool"));
            }
            if self.filled[i] {
                continue;
            }
            let msg = &batch[i];
            let table = i as i64 + 1;
            self.lines.extend_from_slice(&msg.data);
            args.extend([
                if msg.source == Source::Stdout { table } else { -table },
                self.lines.len() as i64,
                msg.time_ns,
                self.container_slot(&msg.container)?,
            ]);
        }
        if args.is_empty() {
            return Ok(());
        }
        let count = args.len() / 4;
        let lines = self.lua.create_string(&self.lines)?;
        // The fill runs no config code, and no hook unless a message table has a metatable:
        // the budget only has to cover its own loop.
        self.guard.for_lines(count);
        let fields = Variadic::from_iter(args.iter().copied());
        self.guard
            .run_own_code(&self.lua, || self.fill.call::<()>((&self.msgs, &self.container_tables, lines, fields)))?;
        for &table in args.iter().step_by(4) {
            self.filled[table.unsigned_abs() as usize - 1] = true;
        }
        Ok(())
    }

    /// The slot of `c`'s table in `container_tables`, built the first time the state sees
    /// this snapshot of the container.
    fn container_slot(&mut self, c: &Container) -> mlua::Result<i64> {
        if let Some(&slot) = self.containers.get(&c.epoch) {
            return Ok(slot);
        }
        let table = container_table(&self.lua, c)?;
        // Slots in use and free slots together are always 1..=n, so with none free the next
        // is n + 1.
        let slot = self.free_slots.pop().unwrap_or(self.containers.len() as i64 + 1);
        self.container_tables.raw_set(slot, table)?;
        self.containers.insert(c.epoch, slot);
        Ok(slot)
    }
}

/// Adds message table number `index + 1` to the pool: in `msgs`, and in the sandbox's set of
/// message tables.
fn pooled_table(lua: &Lua, msgs: &Table, message_tables: &Table, index: usize) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 5)?;
    message_tables.raw_set(&t, true)?;
    msgs.raw_set(index + 1, &t)?;
    Ok(t)
}

/// `msg.container`: built once per container snapshot and state, shared by all its messages.
fn container_table(lua: &Lua, c: &Container) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 6)?;
    t.raw_set("id", c.id.as_str())?;
    t.raw_set("name", c.name.as_str())?;
    t.raw_set("image", c.image.as_str())?;
    t.raw_set("hostname", c.hostname.as_str())?;
    let labels = lua.create_table_with_capacity(0, c.labels.len())?;
    for (k, v) in &c.labels {
        labels.raw_set(k.as_str(), v.as_str())?;
    }
    t.raw_set("labels", labels)?;
    let env = lua.create_table_with_capacity(0, c.env.len())?;
    for (k, v) in &c.env {
        env.raw_set(k.as_str(), v.as_str())?;
    }
    t.raw_set("env", env)?;
    Ok(t)
}

/// The outcome of a line whose Lua failed: the route's `on_error` policy.
fn failed(route: &RouteLua) -> Outcome<'static> {
    match route.on_error {
        OnError::Pass => Outcome::Default,
        OnError::Drop => Outcome::Drop,
    }
}

/// Counts a Lua error against the route and logs it now and then, with its first line.
fn report_error(route: &RouteLua, rs: &RouteStats, e: &mlua::Error) {
    stats::add(&rs.lua_errors, 1);
    if rs.warn_limit.allow() {
        let text = error_text(e);
        let first = text.lines().next().unwrap_or("");
        let policy = match route.on_error {
            OnError::Pass => "line sent in the route's default format",
            OnError::Drop => "line dropped (on_error = \"drop\")",
        };
        warn!(route = %rs.name, errors_total = rs.lua_errors.load(std::sync::atomic::Ordering::Relaxed), "lua error, {policy}: {first}");
    }
}
