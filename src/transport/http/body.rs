//! The body of one HTTP batch: the lines as they are (newline-delimited JSON, or raw lines), or
//! what the route's Lua `batch(list)` function makes of them (LogDNA's `{"lines":[…]}`, a Loki
//! push, an Elasticsearch `_bulk` body).
//!
//! A `batch` function runs in a Lua state of its own, on a thread of its own
//! ([`crate::lua::batch`]).

use tracing::warn;

use crate::lua::batch::{Lines, LuaBatch};
use crate::stats::{self, RouteStats};
use crate::transport::Frames;
use crate::uri::Adapter;

/// How a route's batches become request bodies.
pub enum BodyBuilder {
    /// The lines one after the other, each ending in `\n`.
    Lines { content_type: &'static str },
    /// The route's Lua `batch` function; its lines as they are (with `fallback` as their
    /// content type) when it fails.
    Lua { lua: LuaBatch, fallback: &'static str },
}

impl BodyBuilder {
    /// The default body for an adapter: NDJSON for `json`, text lines for `raw`.
    pub fn lines(adapter: Adapter) -> BodyBuilder {
        BodyBuilder::Lines { content_type: lines_content_type(adapter) }
    }

    /// A body built by the route's Lua `batch` function.
    pub fn lua(lua: LuaBatch, adapter: Adapter) -> BodyBuilder {
        BodyBuilder::Lua { lua, fallback: lines_content_type(adapter) }
    }

    /// Builds the body of a batch, with its content type. A `batch` function that fails is
    /// counted as a Lua error of the route and logged, and the lines go out as they are.
    pub async fn build(&self, frames: Frames, rs: &RouteStats) -> (Vec<u8>, &'static str) {
        let (lua, fallback) = match self {
            BodyBuilder::Lines { content_type } => return (frames.buf, content_type),
            BodyBuilder::Lua { lua, fallback } => (lua, *fallback),
        };
        let n = frames.len();
        match lua.build(Lines { buf: frames.buf, ends: frames.ends }).await {
            Ok(body) => (body, "application/json"),
            Err((lines, error)) => {
                stats::add(&rs.lua_errors, 1);
                if rs.warn_limit.allow() {
                    warn!(route = %rs.name, lines = n, "Lua batch function failed, sending the lines as they are: {error}");
                }
                (lines.buf, fallback)
            }
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
