//! The body of one HTTP batch: the lines as they are (newline-delimited JSON, or raw lines), or
//! what the route's Lua `batch(list)` function makes of them (LogDNA's `{"lines":[…]}`, a Loki
//! push, an Elasticsearch `_bulk` body).
//!
//! A `batch` function runs in a Lua state of its own, on a thread of its own
//! ([`crate::lua::batch`]).

use crate::lua::batch::LuaBatch;
use crate::stats::RouteStats;
use crate::transport::Frames;
use crate::uri::Adapter;

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
pub fn lines_content_type(adapter: Adapter) -> &'static str {
    match adapter {
        Adapter::Json => "application/x-ndjson",
        _ => "text/plain; charset=utf-8",
    }
}
