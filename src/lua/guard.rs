//! The guard every Lua state runs under: an instruction budget and a memory cap.
//!
//! Log lines are input nobody controls, and they reach Lua. Whatever a line makes a `filter`
//! do, it may cost that line and nothing more:
//!
//! - **Instructions.** A count hook fires every [`HOOK_INTERVAL`] instructions and charges one
//!   tick. A router worker's budget is per line: the driver writes the index of the line it is
//!   on into the progress table, and the hook refills the budget whenever that index moves, so
//!   a line can never spend what another line left over. A `batch(list)` call gets the
//!   budget of the lines it carries; loading a config gets [`LOAD_TICKS`]. When the budget is
//!   spent the hook raises an error at the running line of Lua (`file:line: …`), and keeps
//!   raising: `pcall`, `xpcall` and `coroutine.resume` rethrow it (see the sandbox), so a
//!   `filter` cannot catch its own stop. The hook is mlua's global hook, so coroutines are
//!   counted too.
//! - **Memory.** Each state has a hard cap (`LUASPOUT_LUA_MEMORY_MB`): an allocation past it
//!   fails as a Lua error for the message that asked, never as an out-of-memory of the
//!   process. Owners rebuild a state that stays near its cap.
//!
//! Work inside one C function (`string.rep`, a Lua pattern backtracking over a long line) runs
//! between two hook ticks and cannot be stopped by the count. The cap bounds what such a
//! function can allocate; the time it takes is what the watchdog ([`crate::health::LuaCall`])
//! shows on `/health`.
//!
//! While a count hook is set, Lua 5.4 runs every instruction through its traced path
//! (`luaG_traceexec`), whatever the count: the hook costs per instruction, not per tick. So
//! luaspout's own Lua that runs no config code (the worker's message fill) runs with the hook
//! off ([`Guard::run_own_code`]), and only the config's code pays for it.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{HookTriggers, Lua, Table, VmState};

/// Instructions between two ticks of the count hook: rare enough to cost nothing measurable,
/// frequent enough that a stop comes within microseconds.
pub const HOOK_INTERVAL: u32 = 10_000;
/// Ticks one line may use (one million instructions): far above any sane `filter` or
/// `format`, far below a stalled router.
pub const TICKS_PER_ITEM: u64 = 100;
/// Ticks a config's top level may use when it loads (100 million instructions, a fraction of
/// a second), so a config that loops is refused instead of hanging startup or a reload.
pub const LOAD_TICKS: u64 = 10_000;

/// What the budget is for, which says how it is refilled and what its error reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Loading a config: one budget for the chunk and everything it runs.
    Load,
    /// A driver call over a batch of lines: refilled each time the line index moves.
    PerLine,
    /// One call that carries `n` lines (`batch(list)`): `n` lines' budget, spent as it likes.
    Lines(u64),
}

/// The budget the hook counts down, shared by the hook and the state's owner.
#[derive(Debug)]
struct Budget {
    mode: Cell<Mode>,
    left: Cell<u64>,
    /// The line index the last tick was charged to ([`Mode::PerLine`]).
    line: Cell<i64>,
}

/// The guard of one state. Dropping it does not remove the hook; the state owns that.
pub struct Guard {
    budget: Rc<Budget>,
    progress: Table,
    /// The state's memory cap in bytes (0: none).
    memory_cap: usize,
    /// Whether the count hook is installed (not for [`Guard::unarmed`]).
    armed: bool,
    /// Whether config code has set a metatable on a message table: from then on, writing a
    /// field of one may run a `__newindex` of the config's.
    message_metatable: Cell<bool>,
}

impl Guard {
    /// Caps the state's memory at `memory_cap` bytes and installs the count hook. The state
    /// starts with a load budget.
    pub fn install(lua: &Lua, memory_cap: usize) -> mlua::Result<Guard> {
        lua.set_memory_limit(memory_cap)?;
        let budget = Rc::new(Budget { mode: Cell::new(Mode::Load), left: Cell::new(LOAD_TICKS), line: Cell::new(0) });
        let progress = lua.create_table_with_capacity(1, 0)?;
        let guard = Guard { budget, progress, memory_cap, armed: true, message_metatable: Cell::new(false) };
        guard.set_hook(lua)?;
        Ok(guard)
    }

    /// A guard that counts nothing and caps nothing, for [`super::sandbox::LoadMode::Unguarded`].
    pub fn unarmed(lua: &Lua) -> mlua::Result<Guard> {
        let budget = Budget { mode: Cell::new(Mode::Load), left: Cell::new(LOAD_TICKS), line: Cell::new(0) };
        Ok(Guard {
            budget: Rc::new(budget),
            progress: lua.create_table_with_capacity(1, 0)?,
            memory_cap: 0,
            armed: false,
            message_metatable: Cell::new(false),
        })
    }

    /// Installs the count hook as mlua's global hook (coroutines made later inherit it).
    fn set_hook(&self, lua: &Lua) -> mlua::Result<()> {
        let (budget, progress) = (self.budget.clone(), self.progress.clone());
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_INTERVAL), move |_, debug| {
            let b = &budget;
            if b.mode.get() == Mode::PerLine {
                let line = progress.raw_get::<i64>(1).unwrap_or(0);
                if line != b.line.get() {
                    b.line.set(line);
                    b.left.set(TICKS_PER_ITEM);
                }
            }
            match b.left.get() {
                0 => {
                    let source = debug.source();
                    let at = match (source.short_src, debug.current_line()) {
                        (Some(src), Some(line)) => format!("{src}:{line}: "),
                        _ => String::new(),
                    };
                    Err(mlua::Error::runtime(format!("{at}{}", spent_message(b.mode.get()))))
                }
                left => {
                    b.left.set(left - 1);
                    Ok(VmState::Continue)
                }
            }
        })
    }

    /// Runs `own`, a call of luaspout's own Lua that runs no config code, with the count hook
    /// off, then puts it back; unarmed, it just runs `own`.
    ///
    /// What keeps config code out of such a call: every function it calls is captured when the
    /// state is built; a collection inside it runs no finalizer of the config's, since the
    /// sandbox refuses `__gc`; and the tables it writes are its own, or message tables, whose
    /// writes can reach a `__newindex` only once the config has given one a metatable. From
    /// then on ([`Guard::note_message_metatable`]) such calls run under the hook like config
    /// code, with the budget the caller set.
    pub fn run_own_code<R>(&self, lua: &Lua, own: impl FnOnce() -> mlua::Result<R>) -> mlua::Result<R> {
        if !self.armed || self.message_metatable.get() {
            return own();
        }
        lua.remove_hook();
        let result = own();
        // Back before anything else runs: the next call may be config code.
        self.set_hook(lua).map_err(|e| mlua::Error::runtime(format!("cannot put the instruction hook back: {e}")))?;
        result
    }

    /// Records that config code set a metatable on a message table (see
    /// [`Guard::run_own_code`]); the sandbox's `setmetatable` calls it.
    pub fn note_message_metatable(&self) {
        self.message_metatable.set(true);
    }

    /// Gives the state the budget of a config load.
    pub fn for_load(&self) {
        self.set(Mode::Load, LOAD_TICKS);
    }

    /// Gives the state a budget per line for the next call; the caller's driver writes the
    /// index of the line it is on into [`Guard::progress`] before running it.
    pub fn per_line(&self) {
        self.budget.line.set(self.progress.raw_get::<i64>(1).unwrap_or(0));
        self.set(Mode::PerLine, TICKS_PER_ITEM);
    }

    /// Gives the next call the budget of `lines` lines, to spend as it likes.
    pub fn for_lines(&self, lines: usize) {
        let lines = lines.max(1) as u64;
        self.set(Mode::Lines(lines), lines * TICKS_PER_ITEM);
    }

    /// The table whose `[1]` a per-line driver sets to the index of the line it runs.
    pub fn progress(&self) -> &Table {
        &self.progress
    }

    /// The state's memory cap in bytes, 0 for an unarmed guard.
    pub fn memory_cap(&self) -> usize {
        self.memory_cap
    }

    /// Whether the budget is spent: the running code is being stopped.
    pub fn spent(&self) -> bool {
        self.budget.left.get() == 0
    }

    fn set(&self, mode: Mode, ticks: u64) {
        self.budget.mode.set(mode);
        self.budget.left.set(ticks);
    }
}

/// Whether `e` is the guard stopping a call (budget spent) or the memory cap refusing an
/// allocation: errors of the line, not of the config.
pub fn is_limit(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::RuntimeError(m) => m.contains(BUDGET_MARK),
        mlua::Error::CallbackError { cause, .. } => is_limit(cause),
        mlua::Error::WithContext { cause, .. } => is_limit(cause),
        _ => false,
    }
}

/// The words every budget error contains, so [`is_limit`] can tell them apart.
const BUDGET_MARK: &str = "instruction budget";

fn spent_message(mode: Mode) -> String {
    let millions = |ticks: u64| ticks * u64::from(HOOK_INTERVAL) / 1_000_000;
    match mode {
        Mode::Load => format!(
            "the config ran past its {BUDGET_MARK} of {} million instructions while loading (an endless loop at the top level?)",
            millions(LOAD_TICKS)
        ),
        Mode::PerLine => {
            format!(
                "{BUDGET_MARK} of {} million instructions per line spent (an endless loop?)",
                millions(TICKS_PER_ITEM)
            )
        }
        Mode::Lines(n) => format!(
            "{BUDGET_MARK} of {} million instructions for a batch of {n} lines spent (an endless loop?)",
            millions(n * TICKS_PER_ITEM)
        ),
    }
}
