//! End-to-end tests of `/logs` and `/containers` with real HTTP and WebSocket clients against
//! the real binary and real containers: logspout's plain layout byte for byte (colours,
//! padding, single-container streams), JSON lines, WebSocket frames, the filters, `?tail=`,
//! and a stalled client that must not hold back a sink.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use util::*;

/// A streaming GET on luaspout's port: the raw bytes of the body as they come (chunked
/// encoding removed), read in a thread.
struct Stream {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    status: u16,
    headers: String,
}

impl Stream {
    fn open(port: u16, path: &str, extra_headers: &str) -> Stream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "headers come at once, before any line: {}", lossy(&head));
            head.push(byte[0]);
        }
        let headers = lossy(&head);
        let status = headers[9..12].parse().unwrap();
        let bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let sink = bytes.clone();
        thread::spawn(move || {
            s.set_read_timeout(None).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                *sink.lock().unwrap() = dechunk(&raw);
            }
        });
        Stream { bytes, status, headers }
    }

    fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + ARRIVE;
        loop {
            let b = self.bytes.lock().unwrap().clone();
            if count_newlines(&b) >= n || Instant::now() >= deadline {
                return split_lines(&b).into_iter().map(lossy).collect();
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The payload of a chunked body received so far (complete chunks only).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap_or("x"), 16) else { break };
        let start = eol + 2;
        if raw.len() < start + size + 2 {
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}

#[test]
fn plain_layout_with_colours_and_padding_as_logspout() {
    let ls = Luaspout::builder().start();
    let prefix = unique_name();
    let a = format!("{prefix}-a");
    let b = format!("{prefix}-a-much-longer-name");
    let s = Stream::open(ls.port(), &format!("/logs/name:{prefix}*"), "");
    assert_eq!(s.status, 200);
    assert!(s.headers.to_ascii_lowercase().contains("content-type: text/plain"), "{}", s.headers);
    let _a = run_named(&a, &[], "echo first; sleep 3; echo third; sleep 60");
    thread::sleep(Duration::from_millis(1500));
    let _b = run_named(&b, &[], "echo second; sleep 60");
    let lines = s.wait_lines(3);
    let pad = |name: &str, width: usize| format!("{}{name}", " ".repeat(width - name.len()));
    let w1 = a.len().max(16);
    let w2 = b.len().max(w1);
    assert_eq!(
        lines,
        [
            format!("\x1b[1;37m{}|first\x1b[0m", pad(&a, w1)),
            format!("\x1b[1;36m{}|second\x1b[0m", pad(&b, w2)),
            format!("\x1b[1;37m{}|third\x1b[0m", pad(&a, w2)),
        ]
    );
}

#[test]
fn one_container_streams_bare_lines_and_id_filters_take_short_or_full_ids() {
    let ls = Luaspout::builder().start();
    let name = unique_name();
    let c = run_named(&name, &[], "sleep 1; echo one; echo two >&2; sleep 60");
    // The container must be known before /logs/id: accepts it.
    let deadline = Instant::now() + ARRIVE;
    while !lossy(ls.get("/containers").unwrap().1).contains(c.id()) {
        assert!(Instant::now() < deadline, "container never listed in /containers");
        thread::sleep(Duration::from_millis(50));
    }
    let by_name = Stream::open(ls.port(), &format!("/logs/name:{name}?colors=off"), "");
    let by_short = Stream::open(ls.port(), &format!("/logs/id:{}", c.short_id()), "");
    let by_full = Stream::open(ls.port(), &format!("/logs/id:{}?sources=stderr", c.id()), "");
    let mut got = by_name.wait_lines(2);
    got.sort();
    assert_eq!(got, ["one", "two"]);
    let mut got = by_short.wait_lines(2);
    got.sort();
    assert_eq!(got, ["one", "two"]);
    thread::sleep(SETTLE);
    assert_eq!(by_full.wait_lines(1), ["two"], "sources=stderr");
    assert_eq!(ls.get(&format!("/logs/id:{}", &c.id()[..6])).unwrap().0, 404, "shorter than 12: 404, as logspout");
    assert_eq!(ls.get("/logs/id:0123456789ab").unwrap().0, 404);
    assert_eq!(ls.get("/logs/").unwrap().0, 404);
    let (status, body) = ls.get("/containers").unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(list.as_array().unwrap().iter().any(|c| c["name"] == name.as_str()), "{list}");
}

#[test]
fn json_lines_with_accept_json_and_label_filters() {
    let ls = Luaspout::builder().start();
    let name = unique_name();
    let label = format!("lstest.team={name}");
    let s = Stream::open(ls.port(), &format!("/logs/label:lstest.team={name}"), "Accept: application/json\r\n");
    assert!(s.headers.to_ascii_lowercase().contains("content-type: application/json"), "{}", s.headers);
    let c = run_named(&name, &["--label", &label], "echo 'quoted \"json\"'; sleep 60");
    let _other = run_named(&unique_name(), &["--label", "lstest.team=other"], "echo not-this; sleep 60");
    let lines = s.wait_lines(1);
    thread::sleep(SETTLE);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["data"], "quoted \"json\"");
    assert_eq!(v["source"], "stdout");
    assert_eq!(v["container"]["id"], c.id());
    assert_eq!(v["container"]["name"], name.as_str());
    assert_eq!(v["container"]["labels"]["lstest.team"], name.as_str());
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn websocket_frames_carry_json_and_need_no_origin_but_refuse_a_foreign_one() {
    let ls = Luaspout::builder().start();
    let name = unique_name();
    let url = format!("ws://127.0.0.1:{}/logs/name:{name}?source=stdout,stderr", ls.port());
    let (mut ws, response) = tungstenite::connect(url).expect("WebSocket upgrade without Origin");
    assert_eq!(response.status(), 101);
    let _c = run_named(&name, &[], "echo over-ws; echo err-ws >&2; sleep 60");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(ARRIVE)).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.read().expect("a frame") {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["container"]["name"], name.as_str());
                got.push(format!("{}:{}", v["source"].as_str().unwrap(), v["data"].as_str().unwrap()));
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, ["stderr:err-ws", "stdout:over-ws"]);
    ws.close(None).unwrap();
    // A browser on another site sends its Origin: refused, so no web page can read the logs.
    let mut foreign = format!("ws://127.0.0.1:{}/logs", ls.port()).into_client_request().unwrap();
    foreign.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    match tungstenite::connect(foreign) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign Origin was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
}

#[test]
fn tail_replays_the_last_lines_before_following() {
    let ls = Luaspout::builder().start();
    let name = unique_name();
    let c = run_named(&name, &[], "for i in 1 2 3 4 5; do echo old-$i; done; sleep 3; echo new-1; sleep 60");
    c.wait_logged("old-5");
    let s = Stream::open(ls.port(), &format!("/logs/name:{name}?tail=2"), "");
    assert_eq!(s.wait_lines(3), ["old-4", "old-5", "new-1"], "the last 2, then live, nothing twice");
}

#[test]
fn a_stalled_client_skips_lines_and_never_holds_back_a_sink() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={name}", rx.addr()));
    // Asks for the stream and never reads it; a small receive buffer, so the kernel cannot
    // hold the whole burst for it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], ls.port())).into()).unwrap();
    let mut stalled: TcpStream = socket.into();
    write!(stalled, "GET /logs/name:{name} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    // About 13 MB: more than the server's socket buffer (at most 4 MB by default) and the
    // viewer's queue of 1024 lines together.
    let n = 60_000;
    let line = "x".repeat(200);
    // After the burst, a tick now and then: the line after which the client, reading again,
    // is told what it missed.
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do echo $i-{line}; i=$((i+1)); done; while true; do echo tick; sleep 0.3; done"
    );
    let _c = run_named(&name, &[], &script);
    let got = rx.wait_for_lines(n, ARRIVE * 4);
    let expected: Vec<String> = (0..n).map(|i| format!("{i}-{line}")).collect();
    assert_eq!(got[..n], expected[..], "the sink got every line, in order, while a /logs client stalled");
    let (_, metrics) = ls.get("/metrics").unwrap();
    let metrics = lossy(metrics);
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("luaspout_logs_skipped_total ")?.parse().ok())
        .expect("luaspout_logs_skipped_total");
    assert!(skipped > 0, "the stalled client missed lines: {metrics}");
    // Reading now, the client is told how many it missed.
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    // The whole notice: a read may end in the middle of it.
    while !lossy(&seen).contains("lines skipped: this client reads too slowly\n") && Instant::now() < deadline {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => seen.extend_from_slice(&buf[..k]),
        }
    }
    assert!(lossy(&seen).contains("lines skipped: this client reads too slowly\n"));
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = ls.get("/metrics").unwrap();
        if lossy(m).lines().any(|l| l == "luaspout_logs_viewers 0") {
            break;
        }
        assert!(Instant::now() < deadline, "a disconnected client is forgotten");
        thread::sleep(Duration::from_millis(100));
    }
}
