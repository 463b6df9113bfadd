//! The Lua state of an HTTP route's `batch(list)` function, on a thread of its own.
//!
//! The thread loads the config as the router workers do (Lua values never cross threads) and
//! keeps the route's `batch` function; a slow function only delays its own route. A call gets
//! the instruction budget of the lines it carries. A call that fails (an error, its budget
//! spent, an allocation past the state's cap, a value that is not a string or table) is
//! handed back with the lines, which the caller sends as they are: nothing is lost.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use mlua::{Function, Lua, Value};
use tokio::sync::oneshot;

use super::error_text;
use super::guard::Guard;
use super::load::LoadedConfig;
use super::sandbox::LoadMode;
use crate::config::Config;

/// A batch of lines: one buffer, and the end offset of each line in it.
pub struct Lines {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
}

/// What a call answers: the body, or the lines back with why the function failed.
pub type Answer = Result<Vec<u8>, (Lines, String)>;

/// A job for the Lua thread: the lines, and where to send the answer.
struct Job {
    lines: Lines,
    reply: oneshot::Sender<Answer>,
}

/// The handle of a route's Lua batch thread; the thread ends when this is dropped.
pub struct LuaBatch {
    jobs: std_mpsc::Sender<Job>,
}

impl LuaBatch {
    /// Starts the thread: loads `config` in a fresh state and takes route `index`'s `batch`
    /// function from it. Fails if the config no longer loads or the function is gone.
    pub fn start(config: Arc<Config>, index: usize) -> anyhow::Result<LuaBatch> {
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
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.call(&job.lines)))
                    .unwrap_or_else(|_| Err("the batch function's thread panicked".to_string()));
                let _ = job.reply.send(result.map_err(|e| (job.lines, e)));
            }
        })?;
        ready_rx.recv().map_err(|_| anyhow::anyhow!("route {name:?}: the batch thread stopped while loading"))??;
        Ok(LuaBatch { jobs })
    }

    /// Builds the body of a batch with the route's function.
    pub async fn build(&self, lines: Lines) -> Answer {
        let (reply, answer) = oneshot::channel();
        // The thread only stops when this handle is dropped, and answers every job it takes
        // (a panic included), so both ends are alive here.
        match self.jobs.send(Job { lines, reply }) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err((Lines { buf: Vec::new(), ends: Vec::new() }, "the batch thread stopped".to_string()))
            }),
            Err(std_mpsc::SendError(job)) => Err((job.lines, "the batch thread has stopped".to_string())),
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
    fn call(&self, lines: &Lines) -> Result<Vec<u8>, String> {
        self.guard.for_lines(lines.ends.len());
        (|| -> Result<Vec<u8>, String> {
            let list = self.lua.create_table_with_capacity(lines.ends.len(), 0).map_err(|e| error_text(&e))?;
            let starts = std::iter::once(0).chain(lines.ends.iter().copied());
            for (i, (start, end)) in starts.zip(lines.ends.iter().copied()).enumerate() {
                let line = &lines.buf[start..end];
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
