//! End-to-end tests of the HTTP API's security (issue 15) against the real binary and dockerd:
//! the token covers every endpoint but `/health` (the WebSocket too), a route's secrets show
//! nowhere, browsers cannot write or snoop when no token is set, bad input is a 4xx that leaves
//! the API working, and the server's limits (slow headers, `/logs` clients, API routes) hold.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use util::*;

const TOKEN: &str = "s3cret-token";

/// One HTTP/1.1 request with `Connection: close`: (status, lowercased head, body). Reads the
/// head and then whatever body arrives within a second, so endless `/logs` streams work too.
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    let mut head_end = None;
    let mut deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(_) if head_end.is_some() => break,
            Err(e) => panic!("{method} {path}: {e}"),
        }
        if head_end.is_none()
            && let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n")
        {
            head_end = Some(i);
            deadline = Instant::now() + Duration::from_secs(1);
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        }
    }
    let resp = lossy(resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: no head in {resp:?}"));
    (head[9..12].parse().unwrap(), head.to_ascii_lowercase(), body.to_string())
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

const JSON: &str = "Content-Type: application/json\r\n";

/// A WebSocket upgrade of `path` with extra headers: the HTTP status of the answer.
fn websocket_status(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = format!("ws://127.0.0.1:{port}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tungstenite::connect(req) {
        Ok((mut ws, response)) => {
            let _ = ws.close(None);
            response.status().as_u16()
        }
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("WebSocket {path}: {e}"),
    }
}

#[test]
fn with_a_token_every_endpoint_but_health_needs_it() {
    let rx = TcpReceiver::start();
    let ls = Luaspout::builder().env("LUASPOUT_API_TOKEN", TOKEN).start();
    let port = ls.port();
    let create = format!(r#"{{"id":"tok","adapter":"raw+tcp","address":"{}"}}"#, rx.addr());
    for path in ["/", "/logs", "/logs/name:x", "/containers", "/routes", "/routes/none", "/metrics", "/nowhere"] {
        let (status, head, _) = request(port, "GET", path, "", "");
        assert_eq!(status, 401, "GET {path} without the token");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert_eq!(request(port, "GET", path, "Authorization: Bearer wrong\r\n", "").0, 401, "GET {path}");
    }
    assert_eq!(request(port, "POST", "/routes", JSON, &create).0, 401);
    assert_eq!(request(port, "DELETE", "/routes/tok", "", "").0, 401);

    for path in ["/", "/logs", "/logs/name:x", "/containers", "/routes", "/metrics"] {
        assert_eq!(request(port, "GET", path, &bearer(), "").0, 200, "GET {path} with the token");
    }
    assert_eq!(request(port, "GET", "/containers", &format!("authorization: bEARER {TOKEN}\r\n"), "").0, 200);
    let (status, _, body) = request(port, "POST", "/routes", &format!("{}{JSON}", bearer()), &create);
    assert_eq!(status, 201, "{body}");
    assert_eq!(request(port, "GET", "/routes/tok", &bearer(), "").0, 200);
    assert_eq!(request(port, "DELETE", "/routes/tok", &bearer(), "").0, 200);
    assert_eq!(request(port, "GET", "/health", "", "").0, 200, "/health stays open for health checks");

    // The viewer page itself comes with the 401 (it holds no data and asks for the token).
    let (_, head, body) = request(port, "GET", "/", "", "");
    assert!(head.contains("text/html") && body.contains("access_token"), "{head}");

    // The WebSocket: the Bearer header, or the token as ?access_token= (a browser's only way).
    assert_eq!(websocket_status(port, "/logs", &[]), 401);
    assert_eq!(websocket_status(port, "/logs?access_token=wrong", &[]), 401);
    assert_eq!(websocket_status(port, &format!("/logs?access_token={TOKEN}"), &[]), 101);
    assert_eq!(websocket_status(port, &format!("/logs/name:x?access_token={TOKEN}&source=stdout"), &[]), 101);
    assert_eq!(websocket_status(port, "/logs", &[("authorization", &format!("Bearer {TOKEN}"))]), 101);
    assert_eq!(
        request(port, "GET", &format!("/routes?access_token={TOKEN}"), "", "").0,
        401,
        "the query form is for the WebSocket only"
    );
}

#[test]
fn metrics_can_be_left_open_for_a_scraper_without_a_token() {
    let ls = Luaspout::builder().env("LUASPOUT_API_TOKEN", TOKEN).env("LUASPOUT_METRICS_PUBLIC", "true").start();
    assert_eq!(request(ls.port(), "GET", "/metrics", "", "").0, 200);
    assert_eq!(request(ls.port(), "GET", "/routes", "", "").0, 401);
}

#[test]
fn an_empty_token_stops_startup() {
    let out = std::process::Command::new(luaspout_bin())
        .env_clear()
        .env("LUASPOUT_API_TOKEN", "")
        .env("HTTP_BIND_ADDRESS", "127.0.0.1")
        .env("PORT", free_port().to_string())
        .env("LUASPOUT_STATE", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = lossy(&out.stderr);
    assert!(stderr.contains("LUASPOUT_API_TOKEN is set but empty"), "{stderr}");
}

#[test]
fn without_a_token_a_public_bind_is_warned_about() {
    let mut ls = Luaspout::builder().env("HTTP_BIND_ADDRESS", "0.0.0.0").spawn();
    ls.wait_http();
    assert!(ls.stderr().contains("has no token"), "{}", ls.stderr());
    let local = Luaspout::builder().start();
    assert!(!local.stderr().contains("has no token"), "{}", local.stderr());
}

/// An HTTP endpoint that records each request's head and answers 500, so luaspout's HTTP
/// writer retries and logs.
fn failing_endpoint() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            seen.lock().unwrap().push(lossy(&buf));
            let _ = conn
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
        }
    });
    (port, heads)
}

#[test]
fn a_routes_secrets_appear_nowhere() {
    let (endpoint, heads) = failing_endpoint();
    let name = unique_name();
    let uri = format!(
        "http://127.0.0.1:{endpoint}/ingest?header.X-Api-Key=TOPSECRET42&api_key=TOPSECRET43&filter.name={name}"
    );
    let dir = tempfile::tempdir().unwrap();
    let ls = Luaspout::builder()
        .arg(&uri)
        .env("ROUTESPATH", dir.path().to_str().unwrap())
        .env("DEBUG", "1")
        .env("RETRY_COUNT", "1")
        .start();
    let port = ls.port();
    // The same secrets through the API, and in a route the API refuses.
    let create = format!(
        r#"{{"id":"api","adapter":"http","address":"127.0.0.1:{endpoint}/in","options":{{"header.X-Api-Key":"TOPSECRET42","api_key":"TOPSECRET43"}}}}"#
    );
    let (status, _, body) = request(port, "POST", "/routes", JSON, &create);
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""api_key": "***""#), "{body}");
    let refused = r#"{"adapter":"http","address":"127.0.0.1:1/in","options":{"api_key":"TOPSECRET43","gzip":"maybe"}}"#;
    let (status, _, body) = request(port, "POST", "/routes", JSON, refused);
    assert_eq!(status, 400, "{body}");

    let c = run_named(&name, &[], "echo secret-route-line; sleep 60");
    c.wait_logged("secret-route-line");
    // The sink does get them: the header and the pass-through query key.
    let deadline = Instant::now() + ARRIVE;
    while !heads.lock().unwrap().iter().any(|h| h.contains("/ingest")) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let sent = heads.lock().unwrap().iter().find(|h| h.contains("/ingest")).cloned().expect("a request to /ingest");
    assert!(sent.contains("api_key=TOPSECRET43"), "{sent}");
    assert!(sent.to_ascii_lowercase().contains("x-api-key: topsecret42"), "{sent}");
    thread::sleep(SETTLE);

    let metrics = lossy(ls.get("/metrics").unwrap().1);
    let health = lossy(ls.get("/health").unwrap().1);
    let routes = request(port, "GET", "/routes", "", "").2;
    let route = request(port, "GET", "/routes/api", "", "").2;
    assert!(metrics.contains("api_key=***"), "the route is named after its redacted URI:\n{metrics}");
    assert!(health.contains("api_key=***"), "{health}");
    assert!(routes.contains(r#""header.X-Api-Key": "***""#), "{routes}");
    assert!(ls.stderr().contains("api_key=***"), "{}", ls.stderr());
    for (what, text) in
        [("/metrics", &metrics), ("/health", &health), ("GET /routes", &routes), ("GET /routes/api", &route)]
    {
        assert!(!text.contains("TOPSECRET"), "{what} shows a secret:\n{text}");
    }
    let stderr = ls.stderr();
    assert!(!stderr.contains("TOPSECRET"), "stderr shows a secret:\n{stderr}");
    // The persisted route keeps them (it is the route), readable by its owner only.
    let persisted = std::fs::read_to_string(dir.path().join("api.json")).unwrap();
    assert!(persisted.contains("TOPSECRET43"));
}

#[test]
fn without_a_token_browsers_can_neither_write_nor_snoop() {
    let rx = TcpReceiver::start();
    let ls = Luaspout::builder().start();
    let port = ls.port();
    let create = |id: &str| format!(r#"{{"id":"{id}","adapter":"raw+tcp","address":"{}"}}"#, rx.addr());
    // What a cross-site form or fetch(no-cors) can send.
    for content_type in ["Content-Type: text/plain\r\n", "Content-Type: application/x-www-form-urlencoded\r\n", ""] {
        let (status, _, body) = request(port, "POST", "/routes", content_type, &create("plain"));
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert!(body.contains("application/json"), "{body}");
    }
    let evil = "Origin: http://evil.example\r\n";
    assert_eq!(request(port, "POST", "/routes", &format!("{evil}{JSON}"), &create("evil")).0, 403);
    assert_eq!(request(port, "GET", "/containers", evil, "").0, 403);
    assert_eq!(request(port, "GET", "/routes", "", "").2, "[]\n", "nothing was created");

    assert_eq!(websocket_status(port, "/logs", &[("origin", "http://evil.example")]), 403);
    assert_eq!(websocket_status(port, "/logs", &[("origin", &format!("http://localhost:{port}"))]), 403);
    assert_eq!(websocket_status(port, "/logs", &[]), 101, "curl and scripts send no Origin");
    assert_eq!(websocket_status(port, "/logs", &[("origin", &format!("http://127.0.0.1:{port}"))]), 101);

    // The page's own origin, and scripts without one, still work.
    let same = format!("Origin: http://127.0.0.1:{port}\r\n{JSON}");
    assert_eq!(request(port, "POST", "/routes", &same, &create("same")).0, 201);
    assert_eq!(
        request(port, "POST", "/routes", "Content-Type: application/json; charset=utf-8\r\n", &create("curl")).0,
        201
    );
}

#[test]
fn bad_input_is_a_4xx_and_the_api_keeps_working() {
    let rx = TcpReceiver::start();
    let ls = Luaspout::builder().start();
    let port = ls.port();
    for options in [
        r#"{"timeout":"99999999999999999999h"}"#,
        r#"{"flush_interval":"9999999999999999h"}"#,
        r#"{"timeout":"soon"}"#,
        r#"{"batch_size":"0"}"#,
    ] {
        let body = format!(r#"{{"adapter":"http","address":"127.0.0.1:9/in","options":{options}}}"#);
        let (status, _, answer) = request(port, "POST", "/routes", JSON, &body);
        assert_eq!(status, 400, "{options}: {answer}");
    }
    let on_full = r#"{"adapter":"raw+tcp","address":"127.0.0.1:9","options":{"on_full":"sometimes"}}"#;
    assert_eq!(request(port, "POST", "/routes", JSON, on_full).0, 400);
    let huge =
        format!(r#"{{"adapter":"raw+tcp","address":"127.0.0.1:9","options":{{"x":"{}"}}}}"#, "a".repeat(100_000));
    assert_eq!(request(port, "POST", "/routes", JSON, &huge).0, 413);
    let ok = format!(r#"{{"id":"after","adapter":"raw+tcp","address":"{}"}}"#, rx.addr());
    assert_eq!(request(port, "POST", "/routes", JSON, &ok).0, 201, "the API still works");
    assert_eq!(request(port, "GET", "/health", "", "").0, 200);
}

#[test]
fn the_dial_check_answers_one_generic_error() {
    let ls = Luaspout::builder().start();
    let closed = free_port();
    let refused = format!(r#"{{"adapter":"syslog+tcp","address":"127.0.0.1:{closed}"}}"#);
    let unknown = r#"{"adapter":"syslog+udp","address":"no-such-host.invalid:514"}"#;
    for body in [refused.as_str(), unknown] {
        let (status, _, answer) = request(ls.port(), "POST", "/routes", JSON, body);
        assert_eq!((status, answer.as_str()), (400, "Bad route: cannot reach the destination\n"));
    }
}

#[test]
fn the_api_holds_a_bounded_number_of_routes() {
    let ls = Luaspout::builder().start();
    for i in 0..64 {
        let body = format!(r#"{{"id":"r{i}","adapter":"raw+udp","address":"127.0.0.1:9"}}"#);
        assert_eq!(request(ls.port(), "POST", "/routes", JSON, &body).0, 201, "route {i}");
    }
    let one_more = r#"{"id":"r64","adapter":"raw+udp","address":"127.0.0.1:9"}"#;
    let (status, _, body) = request(ls.port(), "POST", "/routes", JSON, one_more);
    assert_eq!(status, 429, "{body}");
    let replace = r#"{"id":"r0","adapter":"raw+udp","address":"127.0.0.1:10"}"#;
    assert_eq!(request(ls.port(), "POST", "/routes", JSON, replace).0, 201, "replacing one is fine");
}

#[test]
fn slow_headers_are_cut_off_and_the_server_keeps_answering() {
    let ls = Luaspout::builder().start();
    let port = ls.port();
    // Connections that send a header one byte at a time, and one that sends nothing.
    let mut slow: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    while started.elapsed() < Duration::from_secs(25) {
        let mut all_closed = true;
        for s in &mut slow {
            if s.write_all(b"G").is_err() {
                continue;
            }
            all_closed = false;
        }
        assert_eq!(request(port, "GET", "/health", "", "").0, 200, "the server answers meanwhile");
        if all_closed {
            closed_after = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }
    let closed_after = closed_after.expect("slow connections were never closed");
    assert!(closed_after < Duration::from_secs(16), "closed after {closed_after:?}");
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((&idle).read(&mut [0u8; 16]).unwrap_or(0), 0, "the idle connection is closed too");
}

#[test]
fn logs_clients_are_capped() {
    let ls = Luaspout::builder().env("LUASPOUT_LOGS_CLIENTS", "1").start();
    let port = ls.port();
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(first, "GET /logs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (status, _, body) = request(port, "GET", "/logs", "", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(websocket_status(port, "/logs", &[]), 503);
    drop(first);
    let deadline = Instant::now() + ARRIVE;
    while request(port, "GET", "/logs", "", "").0 != 200 {
        assert!(Instant::now() < deadline, "the slot never came back");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn open_logs_clients_do_not_hold_up_a_shutdown() {
    let mut ls = Luaspout::builder().start();
    let port = ls.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /logs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let (_ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/logs")).unwrap();
    let started = Instant::now();
    let status = ls.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

/// A route named after its redacted URI keeps its sink (and its connection) across a reload:
/// sinks are matched by the whole URI, secrets included, not by the shown name.
#[test]
fn a_route_with_secrets_keeps_its_sink_across_a_reload() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = |comment: &str| {
        format!("-- {comment}\nroute {{ to = \"raw+tcp://{}?token=TOPSECRET46&filter.name={name}\" }}\n", rx.addr())
    };
    let mut ls = Luaspout::builder().config(&config("v1")).start();
    let c = run_named(&name, &[], "sleep 3600");
    thread::sleep(SETTLE);
    c.log_stdout("before-reload\n");
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["before-reload"]);
    save_by_rename(ls.config_path().unwrap(), &config("v2"));
    let deadline = Instant::now() + ARRIVE;
    while !ls.stderr().contains("config reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", ls.stderr());
        thread::sleep(Duration::from_millis(100));
    }
    c.log_stdout("after-reload\n");
    assert_eq!(rx.wait_for_lines(2, ARRIVE), ["before-reload", "after-reload"]);
    assert_eq!(rx.connections(), 1, "the sink and its connection were kept");
    let metrics = lossy(ls.get("/metrics").unwrap().1);
    assert!(metrics.contains("token=***") && !metrics.contains("TOPSECRET"), "{metrics}");
    assert!(!ls.stderr().contains("TOPSECRET"), "{}", ls.stderr());
    ls.assert_running();
}
