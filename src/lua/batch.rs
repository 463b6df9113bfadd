//! The Lua state of an HTTP route's `batch(list)` function, on a thread of its own.
//!
//! The thread loads the config as the router workers do (Lua values never cross threads) and
//! keeps the route's `batch` function; a slow function only delays its own route. A call gets
//! the instruction budget of the lines it carries. A call that fails (an error, its budget
//! spent, an allocation past the state's cap, a value that is not a string or table) is
//! counted as a Lua error of the route and logged, and the batch goes out as plain lines
//! instead: nothing is lost.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use mlua::{Function, Lua, Value};
use tokio::sync::oneshot;
use tracing::warn;

use super::error_text;
use super::guard::Guard;
use super::load::LoadedConfig;
use super::sandbox::LoadMode;
use crate::config::Config;
use crate::stats::{self, RouteStats};
use crate::transport::Frames;
use crate::transport::http::body::lines_content_type;
use crate::uri::Adapter;

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
    pub fn start(config: Arc<Config>, index: usize, adapter: Adapter) -> anyhow::Result<LuaBatch> {
        let (jobs, inbox) = std_mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<anyhow::Result<()>>();
        let name = config.routes.get(index).map(|r| r.name.clone()).unwrap_or_default();
        std::thread::Builder::new().name(format!("luaspout-batch-{index}")).spawn(move || {
            let state = match load(&config, index) {
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
                // A panic in the call must not take the lines with it: they go back as a failure.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.call(&job.frames)))
                    .unwrap_or_else(|_| Err("the batch function's thread panicked".to_string()));
                let _ = job.reply.send(result.map_err(|e| (job.frames, e)));
            }
        })?;
        ready_rx.recv().map_err(|_| anyhow::anyhow!("route {name:?}: the batch thread stopped while loading"))??;
        Ok(LuaBatch { jobs, fallback: lines_content_type(adapter) })
    }

    /// Builds the body of a batch with the route's function; on failure, the lines as they are.
    pub async fn build(&self, frames: Frames, rs: &RouteStats) -> (Vec<u8>, &'static str) {
        let (reply, answer) = oneshot::channel();
        let n = frames.len();
        // The thread only stops when this handle is dropped, and answers every job it takes
        // (a panic included), so both ends are alive here.
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

/// The Lua side: the state, its guard, and the function.
struct BatchState {
    lua: Lua,
    guard: Rc<Guard>,
    batch: Function,
}

fn load(config: &Config, index: usize) -> anyhow::Result<BatchState> {
    let loaded = LoadedConfig::load(config, LoadMode::Worker)?;
    let route = loaded.routes.into_iter().nth(index);
    let Some(batch) = route.and_then(|r| r.batch) else {
        anyhow::bail!("{}: route {index} has no batch function when loaded again", config.source_name);
    };
    Ok(BatchState { lua: loaded.lua, guard: loaded.guard, batch })
}

impl BatchState {
    /// Calls `batch(list)` with the lines as strings (their final newline removed); a string
    /// result is the body, a table is encoded as JSON.
    fn call(&self, frames: &Frames) -> Result<Vec<u8>, String> {
        self.guard.for_lines(frames.len());
        (|| -> Result<Vec<u8>, String> {
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
        })()
    }
}
