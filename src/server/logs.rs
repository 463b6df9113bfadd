//! `GET /logs`: logspout's live stream of every line read, as plain text (its layout, byte
//! for byte: the name prefix padded to the widest name so far, the 14-colour cycle), as JSON
//! lines (`Accept: application/json`), or as WebSocket text frames; and `GET /containers`, the
//! containers being read, for the web viewer's picker.
//!
//! `/logs/name:GLOB`, `/logs/id:ID` (short or full), `/logs/label:KEY=GLOB` and `?source=` /
//! `?sources=` (one stream or a comma list) narrow it. `?tail=N` first replays each matching
//! container's last N lines from Docker. A client that reads too slowly misses lines (and is
//! told how many, in the stream) rather than slowing the router; one that goes away frees its
//! subscription at once. At most `LUASPOUT_LOGS_CLIENTS` clients are served at once (503 past
//! it), and the `?tail=` replay holds at most [`TAIL_MAX`] lines and [`TAIL_BYTES`] in all.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::mpsc;

use super::AppState;
use crate::format::json;
use crate::glob::Glob;
use crate::message::{Message, Source};
use crate::tap::{Subscription, Tapped, ViewFilter};

/// logspout's starting width of the name column.
const MIN_NAME_WIDTH: usize = 16;
/// Most lines `?tail=` replays, over all matching containers.
pub const TAIL_MAX: usize = 10_000;
/// Most bytes of lines `?tail=` holds in memory before streaming, over all containers: the
/// oldest lines beyond it are left out.
pub const TAIL_BYTES: usize = 16 << 20;

/// What the URL asks for.
struct View {
    filter: ViewFilter,
    /// Lines carry the container name (several containers may be in the stream).
    multi: bool,
    colors: bool,
    json: bool,
    tail: Option<usize>,
}

/// `GET /logs`.
pub async fn all(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>, req: Request) -> Response {
    serve(state, None, q, req).await
}

/// `GET /logs/{spec}`.
pub async fn filtered(
    State(state): State<AppState>,
    Path(spec): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    serve(state, Some(spec), q, req).await
}

async fn serve(state: AppState, spec: Option<String>, q: HashMap<String, String>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let json = parts.headers.get(header::ACCEPT).is_some_and(|a| a.as_bytes() == b"application/json");
    let view = match view(&state, spec.as_deref(), &q, json) {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(client) = state.logs_clients.clone().try_acquire_owned() else {
        let why = "Service unavailable: too many /logs clients are connected (LUASPOUT_LOGS_CLIENTS)\n";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    let is_upgrade =
        parts.headers.get(header::UPGRADE).is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_upgrade {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(ws) => ws.on_upgrade(move |socket| websocket(state, view, socket, client)),
            Err(rejection) => rejection.into_response(),
        };
    }
    let content_type = if view.json { "application/json" } else { "text/plain; charset=utf-8" };
    let (subscription, rx) = start(&state, &view).await;
    let layout = Layout::new(&view);
    let sub = (subscription, client);
    // The first item is empty: hyper sends the status and headers at once, not with the
    // first line, so a client knows the stream is open even when no container is logging.
    let body = stream::unfold((rx, layout, sub, true), |(mut rx, mut layout, sub, first)| async move {
        if first {
            return Some((Ok::<_, Infallible>(Bytes::new()), (rx, layout, sub, false)));
        }
        let item = rx.recv().await?;
        let mut out = Vec::with_capacity(256);
        layout.write(&item, &mut out);
        // Lines that queued meanwhile go out in the same chunk.
        while out.len() < 64 << 10 {
            match rx.try_recv() {
                Ok(item) => layout.write(&item, &mut out),
                Err(_) => break,
            }
        }
        Some((Ok(Bytes::from(out)), (rx, layout, sub, false)))
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Reads the path and query; a 404 for paths logspout does not serve and unknown containers.
fn view(
    state: &AppState,
    spec: Option<&str>,
    q: &HashMap<String, String>,
    json: bool,
) -> Result<View, (StatusCode, String)> {
    let not_found = || (StatusCode::NOT_FOUND, "404 page not found\n".to_string());
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let mut filter = ViewFilter::default();
    let mut multi = true;
    if let Some(spec) = spec {
        let Some((kind, value)) = spec.split_once(':') else { return Err(not_found()) };
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(not_found());
        }
        match kind {
            "name" => {
                multi = value.contains('*');
                filter.name = Some(Glob::new(value));
            }
            "id" => {
                let id = value.to_ascii_lowercase();
                let known = state.tap.containers().iter().any(|c| c.id.starts_with(&id));
                if id.len() < 12 || !known {
                    return Err(not_found());
                }
                multi = false;
                filter.id = Some(id);
            }
            "label" => {
                let Some((key, glob)) = value.split_once('=') else {
                    return Err(bad(format!("label filter {value:?}: expected label:KEY=GLOB\n")));
                };
                filter.label = Some((key.to_string(), Glob::new(glob)));
            }
            // logspout ignores other `word:value` filters.
            _ => {}
        }
    }
    if let Some(list) = q.get("sources").or_else(|| q.get("source")) {
        let mut sources = Vec::new();
        for s in list.split(',').filter(|s| !s.is_empty()) {
            sources.push(Source::parse(s).ok_or_else(|| bad(format!("unknown stream {s:?}: use stdout or stderr\n")))?);
        }
        filter.sources = Some(sources);
    }
    let tail = match q.get("tail") {
        None => None,
        Some(n) => Some(
            n.parse::<usize>().map_err(|_| bad(format!("tail={n:?}: expected a number of lines\n")))?.min(TAIL_MAX),
        ),
    };
    Ok(View { filter, multi, colors: q.get("colors").is_none_or(|c| c != "off"), json, tail })
}

/// Subscribes to the live stream and, with `?tail=`, puts each matching container's last lines
/// in front of it (the subscription comes first, so no line falls between the two).
async fn start(state: &AppState, view: &View) -> (Subscription, mpsc::Receiver<Tapped>) {
    let (subscription, live) = state.tap.subscribe(view.filter.clone());
    let Some(n) = view.tail.filter(|n| *n > 0) else { return (subscription, live) };
    let mut history = Vec::new();
    let (mut lines_left, mut bytes_left) = (TAIL_MAX, TAIL_BYTES);
    for c in state.tap.containers().iter().filter(|c| view.filter.matches_container(c)) {
        if lines_left == 0 || bytes_left == 0 {
            break;
        }
        let lines = crate::docker::history::last_lines(&state.settings, c, n.min(lines_left), bytes_left).await;
        for m in lines.into_iter().filter(|m| view.filter.matches(m)) {
            lines_left = lines_left.saturating_sub(1);
            bytes_left = bytes_left.saturating_sub(m.data.len());
            history.push(m);
        }
    }
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut last_ns: HashMap<String, i64> = HashMap::new();
        for m in history {
            last_ns.insert(m.container.id.clone(), m.time_ns);
            if tx.send(Tapped::Line(m)).await.is_err() {
                return;
            }
        }
        let mut live = live;
        while let Some(item) = live.recv().await {
            // A live line the replay already showed (read before the replay ended).
            if let Tapped::Line(m) = &item
                && last_ns.get(&m.container.id).is_some_and(|&t| m.time_ns <= t)
            {
                continue;
            }
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    (subscription, rx)
}

/// Streams JSON text frames until the client goes or a send fails.
async fn websocket(state: AppState, view: View, mut socket: WebSocket, _client: tokio::sync::OwnedSemaphorePermit) {
    let (_subscription, mut rx) = start(&state, &view).await;
    let mut out = Vec::with_capacity(256);
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { return };
                out.clear();
                write_json(&item, &mut out);
                let text = String::from_utf8_lossy(&out).into_owned();
                if socket.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn write_json(item: &Tapped, out: &mut Vec<u8>) {
    match item {
        Tapped::Line(m) => json::write_message(m, out),
        Tapped::Skipped(n) => out.extend_from_slice(format!("{{\"skipped\":{n}}}").as_bytes()),
    }
}

/// One connection's plain-text or JSON-lines layout, with logspout's per-connection state.
struct Layout {
    json: bool,
    multi: bool,
    colors: bool,
    width: usize,
    /// Colour index by container name, in order of first appearance.
    names: HashMap<String, usize>,
}

impl Layout {
    fn new(view: &View) -> Layout {
        Layout { json: view.json, multi: view.multi, colors: view.colors, width: MIN_NAME_WIDTH, names: HashMap::new() }
    }

    fn write(&mut self, item: &Tapped, out: &mut Vec<u8>) {
        if self.json {
            write_json(item, out);
            out.push(b'\n');
            return;
        }
        match item {
            Tapped::Line(m) => self.write_plain(m, out),
            Tapped::Skipped(n) => {
                out.extend_from_slice(format!("luaspout: {n} lines skipped: this client reads too slowly\n").as_bytes())
            }
        }
    }

    /// `<COLOR><name right-aligned>|<data>\x1b[0m\n`, or the data alone for one container.
    fn write_plain(&mut self, m: &Message, out: &mut Vec<u8>) {
        if !self.multi {
            out.extend_from_slice(&m.data);
            out.push(b'\n');
            return;
        }
        let name = &m.container.name;
        let chars = name.chars().count();
        self.width = self.width.max(chars);
        if self.colors {
            let next = self.names.len();
            let i = *self.names.entry(name.clone()).or_insert(next);
            out.extend_from_slice(b"\x1b[");
            if i % 14 <= 6 {
                out.extend_from_slice(b"1;");
            }
            out.push(b'3');
            out.push(b'0' + (7 - i % 7) as u8);
            out.push(b'm');
        }
        out.resize(out.len() + (self.width - chars), b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'|');
        out.extend_from_slice(&m.data);
        if self.colors {
            out.extend_from_slice(b"\x1b[0m");
        }
        out.push(b'\n');
    }
}

/// `GET /containers`: `[{"id","name","image","labels","source"}]`, sorted by name; `source`
/// says whether the container is read from its log file (`files`) or the API (`api`).
pub async fn containers(State(state): State<AppState>) -> Response {
    let mut list = state.tap.containers();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::from(&b"["[..]);
    for (i, c) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        json::write_string(c.id.as_bytes(), &mut out);
        out.extend_from_slice(b",\"name\":");
        json::write_string(c.name.as_bytes(), &mut out);
        out.extend_from_slice(b",\"image\":");
        json::write_string(c.image.as_bytes(), &mut out);
        out.extend_from_slice(b",\"labels\":");
        json::write_labels(&c.labels, &mut out);
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(state.tap.source_of(&c.id).as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]\n");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::message::Container;

    fn line(name: &str, data: &str) -> Tapped {
        let container = Arc::new(Container { name: name.into(), ..Default::default() });
        Tapped::Line(Message {
            container,
            source: Source::Stdout,
            time_ns: 0,
            data: Bytes::copy_from_slice(data.as_bytes()),
            ack: None,
        })
    }

    fn layout(multi: bool, colors: bool) -> Layout {
        Layout { json: false, multi, colors, width: MIN_NAME_WIDTH, names: HashMap::new() }
    }

    fn render(l: &mut Layout, items: &[Tapped]) -> String {
        let mut out = Vec::new();
        for i in items {
            l.write(i, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn logspout_plain_layout_byte_for_byte() {
        // logspout's `/logs` test vectors (docs/logspout-compat.md, "Test vectors").
        assert_eq!(
            render(&mut layout(true, true), &[line("web_1", "hello")]),
            "\x1b[1;37m           web_1|hello\x1b[0m\n"
        );
        assert_eq!(render(&mut layout(true, false), &[line("web_1", "hello")]), "           web_1|hello\n");
        assert_eq!(render(&mut layout(false, true), &[line("web_1", "hello")]), "hello\n");
        let long = "a_very_long_container_name";
        assert_eq!(
            render(&mut layout(true, false), &[line(long, "x"), line("web_1", "y")]),
            format!("{long}|x\n{}web_1|y\n", " ".repeat(21))
        );
        let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
        let items: Vec<Tapped> = names.iter().map(|n| line(n, "")).collect();
        let colors: Vec<String> = render(&mut layout(true, true), &items)
            .lines()
            .map(|l| l[..l.find('m').unwrap() + 1].to_string())
            .collect();
        let expected = [
            "1;37", "1;36", "1;35", "1;34", "1;33", "1;32", "1;31", "37", "36", "35", "34", "33", "32", "31", "1;37",
            "1;36",
        ]
        .map(|c| format!("\x1b[{c}m"));
        assert_eq!(colors, expected);
    }

    #[test]
    fn a_known_name_keeps_its_colour_and_the_skip_marker_is_a_line() {
        let mut l = layout(true, true);
        let out = render(&mut l, &[line("a", "1"), line("b", "2"), line("a", "3"), Tapped::Skipped(7)]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("\x1b[1;37m") && lines[2].starts_with("\x1b[1;37m"));
        assert!(lines[1].starts_with("\x1b[1;36m"));
        assert_eq!(lines[3], "luaspout: 7 lines skipped: this client reads too slowly");
    }
}
