//! The body of one HTTP batch: the lines as they are (newline-delimited JSON, or raw lines), or
//! what the route's Lua `batch(list)` function makes of them (LogDNA's `{"lines":[…]}`, a Loki
//! push, an Elasticsearch `_bulk` body).
//!
//! A `batch` function runs in a Lua state of its own, on a thread of its own, with the config
//! loaded in it as the router workers have it: Lua values never cross threads, and a slow
//! function only delays its own route. A call that fails (an error, an endless loop stopped by
//! its instruction budget, a value that is not a string or table) is counted as a Lua error of
//! the route and logged, and the batch goes out as plain lines instead: nothing is lost.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use mlua::{Function, HookTriggers, Lua, Value, VmState};
use tokio::sync::oneshot;
use tracing::warn;

use crate::config::Config;
use crate::config::lua::{LoadMode, LoadedConfig, error_text};
use crate::stats::{self, RouteStats};
use crate::transport::Frames;
use crate::uri::Adapter;

/// Instruction budget of one `batch` call: this many hook ticks of 10,000 instructions per
/// line, plus as many again, so an endless loop ends and a real function never does.
const TICKS_PER_LINE: u64 = 100;
const HOOK_INTERVAL: u32 = 10_000;

/// How a route's batches become request bodies.
pub enum BodyBuilder {
    /// The lines one after the other, each ending in `\n`.
    Lines { content_type: &'static str },
    /// The route's Lua `batch` function.
    Lua(LuaBatch),
}

impl BodyBuilder {
    /// The default body for an adapter: NDJSON for `json`, text lines for `raw`.
    pub fn lines(adapter: Adapter) -> BodyBuilder {
        BodyBuilder::Lines { content_type: lines_content_type(adapter) }
    }

    /// Builds the body of a batch, with its content type.
    pub async fn build(&self, frames: Frames, rs: &RouteStats) -> (Vec<u8>, &'static str) {
        match self {
            BodyBuilder::Lines { content_type } => (frames.buf, content_type),
            BodyBuilder::Lua(lua) => lua.build(frames, rs).await,
        }
    }
}

/// The content type of a body of plain lines.
fn lines_content_type(adapter: Adapter) -> &'static str {
    match adapter {
        Adapter::Json => "application/x-ndjson",
        _ => "text/plain; charset=utf-8",
    }
}

/// A job for the Lua thread: the batch, and where to send the body (or the batch back, with
/// the error, if the function failed).
struct Job {
    frames: Frames,
    reply: oneshot::Sender<Result<Vec<u8>, (Frames, String)>>,
}

/// The handle of a route's Lua batch thread; the thread ends when this is dropped.
pub struct LuaBatch {
    jobs: std_mpsc::Sender<Job>,
    fallback: &'static str,
}

impl LuaBatch {
    /// Starts the thread: loads `config` in a fresh state and takes route `index`'s `batch`
    /// function from it. Fails if the config no longer loads or the function is gone.
    pub fn start(config: Arc<Config>, index: usize, adapter: Adapter, memory_limit: usize) -> anyhow::Result<LuaBatch> {
        let (jobs, inbox) = std_mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<anyhow::Result<()>>();
        let name = config.routes.get(index).map(|r| r.name.clone()).unwrap_or_default();
        std::thread::Builder::new().name(format!("luaspout-batch-{index}")).spawn(move || {
            let state = match load(&config, index, memory_limit) {
                Ok(state) => {
                    let _ = ready_tx.send(Ok(()));
                    state
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            for job in inbox {
                let _ = job.reply.send(state.call(job.frames));
            }
        })?;
        ready_rx.recv().map_err(|_| anyhow::anyhow!("route {name:?}: the batch thread stopped while loading"))??;
        Ok(LuaBatch { jobs, fallback: lines_content_type(adapter) })
    }

    async fn build(&self, frames: Frames, rs: &RouteStats) -> (Vec<u8>, &'static str) {
        let (reply, answer) = oneshot::channel();
        let n = frames.len();
        // The thread only stops when this handle is dropped, so both ends are alive here.
        let result = match self.jobs.send(Job { frames, reply }) {
            Ok(()) => answer.await.ok(),
            Err(std_mpsc::SendError(job)) => Some(Err((job.frames, "the batch thread has stopped".to_string()))),
        };
        match result {
            Some(Ok(body)) => (body, "application/json"),
            Some(Err((frames, error))) => {
                stats::add(&rs.lua_errors, 1);
                if rs.warn_limit.allow() {
                    warn!(route = %rs.name, lines = n, "Lua batch function failed, sending the lines as they are: {error}");
                }
                (frames.buf, self.fallback)
            }
            None => (Vec::new(), self.fallback),
        }
    }
}

/// The Lua side: the state, the function, and the instruction budget its hook counts down.
struct BatchState {
    lua: Lua,
    batch: Function,
    budget: Arc<std::sync::atomic::AtomicU64>,
}

fn load(config: &Config, index: usize, memory_limit: usize) -> anyhow::Result<BatchState> {
    let loaded = LoadedConfig::load(config, LoadMode::Worker)?;
    let route = loaded.routes.into_iter().nth(index);
    let Some(batch) = route.and_then(|r| r.batch) else {
        anyhow::bail!("{}: route {index} has no batch function when loaded again", config.source_name);
    };
    let lua = loaded.lua;
    lua.set_memory_limit(memory_limit).map_err(|e| anyhow::anyhow!("{}", error_text(&e)))?;
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hook_budget = budget.clone();
    lua.set_hook(HookTriggers::default().every_nth_instruction(HOOK_INTERVAL), move |_, _| {
        use std::sync::atomic::Ordering::Relaxed;
        if hook_budget.load(Relaxed) == 0 {
            return Err(mlua::Error::runtime("instruction budget exceeded (endless loop?)"));
        }
        hook_budget.fetch_sub(1, Relaxed);
        Ok(VmState::Continue)
    })
    .map_err(|e| anyhow::anyhow!("{}", error_text(&e)))?;
    Ok(BatchState { lua, batch, budget })
}

impl BatchState {
    /// Calls `batch(list)` with the lines as strings (their final newline removed); a string
    /// result is the body, a table is encoded as JSON.
    fn call(&self, frames: Frames) -> Result<Vec<u8>, (Frames, String)> {
        self.budget.store((frames.len() as u64 + 1) * TICKS_PER_LINE, std::sync::atomic::Ordering::Relaxed);
        let result = (|| -> Result<Vec<u8>, String> {
            let list = self.lua.create_table_with_capacity(frames.len(), 0).map_err(|e| error_text(&e))?;
            for (i, line) in frames.lines().enumerate() {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                list.raw_set(i + 1, self.lua.create_string(line).map_err(|e| error_text(&e))?)
                    .map_err(|e| error_text(&e))?;
            }
            match self.batch.call::<Value>(list).map_err(|e| error_text(&e))? {
                Value::String(s) => Ok(s.as_bytes().to_vec()),
                v @ Value::Table(_) => {
                    let mut out = Vec::new();
                    crate::format::json::encode_lua(&v, &mut out)?;
                    Ok(out)
                }
                other => Err(format!("batch must return a string or a table, got {}", other.type_name())),
            }
        })();
        result.map_err(|e| (frames, e))
    }
}
