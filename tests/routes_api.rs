//! End-to-end tests of the `/routes` API against the real binary and dockerd: logspout's JSON
//! shapes and status codes, created routes that deliver like URI routes, persistence in
//! `ROUTESPATH` across a restart, the token check, and refusals that change nothing. (The rest
//! of the API's security is in `tests/api_security.rs`.)

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use util::*;

/// One HTTP/1.0 request, its body (if any) sent as JSON: (status, headers, body).
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let json = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{json}{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = lossy(resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), head.to_ascii_lowercase(), body.to_string())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn created_routes_deliver_persist_across_a_restart_and_delete_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().to_str().unwrap();
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = Luaspout::builder().env("ROUTESPATH", routes).start();
    let (status, head, body) = request(ls.port(), "GET", "/routes", "", "");
    assert_eq!((status, body.as_str()), (200, "[]\n"));
    assert!(head.contains("content-type: application/json"));

    let create =
        format!(r#"{{"adapter":"tcp","address":"{}","filter_name":"{name}","filter_sources":["stdout"]}}"#, rx.addr());
    let (status, _, body) = request(ls.port(), "POST", "/routes", "", &create);
    assert_eq!(status, 201, "{body}");
    let created = json(&body);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 12);
    assert_eq!(created["adapter"], "raw+tcp", "tcp:// is listed as raw+tcp, as logspout");
    assert_eq!(created["filter_sources"], serde_json::json!(["stdout"]));
    assert!(body.starts_with("{\n  \"id\""), "pretty JSON: {body}");
    let file = dir.path().join(format!("{id}.json"));
    assert_eq!(json(&std::fs::read_to_string(&file).unwrap())["id"], id.as_str());

    let c = run_named(&name, &[], "echo via-api; echo not-stderr >&2; sleep 2; echo after-restart; sleep 60");
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["via-api"]);
    let (status, _, body) = request(ls.port(), "GET", &format!("/routes/{id}"), "", "");
    assert_eq!((status, json(&body)["address"].as_str()), (200, Some(rx.addr().as_str())));

    // A restart loads the route back from ROUTESPATH.
    drop(ls);
    let ls = Luaspout::builder().env("ROUTESPATH", routes).env("BACKLOG", "true").start();
    let (_, _, body) = request(ls.port(), "GET", "/routes", "", "");
    assert_eq!(json(&body).as_array().unwrap().len(), 1, "{body}");
    c.wait_logged("after-restart");
    assert!(rx.wait_for_lines(3, ARRIVE).contains(&"after-restart".to_string()));

    let (status, _, body) = request(ls.port(), "DELETE", &format!("/routes/{id}"), "", "");
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(!file.exists(), "the file is removed");
    assert_eq!(request(ls.port(), "GET", &format!("/routes/{id}"), "", "").0, 404);
    assert_eq!(request(ls.port(), "DELETE", &format!("/routes/{id}"), "", "").0, 404);
    let before = rx.lines().len();
    c.log_stdout("after-delete");
    thread::sleep(SETTLE);
    assert_eq!(rx.lines().len(), before, "a deleted route sends nothing more");
}

#[test]
fn bad_requests_get_400_with_the_reason_and_change_nothing() {
    let ls = Luaspout::builder().start();
    let port = ls.port();
    let (status, head, body) = request(port, "POST", "/routes", "", "{");
    assert_eq!(status, 400);
    assert!(body.starts_with("Bad request: "), "{body}");
    assert!(head.contains("text/plain"));
    let (status, _, body) = request(port, "POST", "/routes", "", r#"{"adapter":"nope","address":"x:1"}"#);
    assert_eq!((status, body.as_str()), (400, "Bad route: bad adapter: nope\n"));
    let closed = free_port();
    let (status, _, body) =
        request(port, "POST", "/routes", "", &format!(r#"{{"adapter":"syslog+tcp","address":"127.0.0.1:{closed}"}}"#));
    assert_eq!((status, body.as_str()), (400, "Bad route: cannot reach the destination\n"), "no port-scanner detail");
    let (status, _, body) =
        request(port, "POST", "/routes", "", r#"{"id":"../x","adapter":"raw","address":"127.0.0.1:9"}"#);
    assert!(status == 400 && body.contains("id"), "{body}");
    assert_eq!(request(port, "GET", "/routes", "", "").2, "[]\n", "nothing was added");
}

#[test]
fn with_a_token_every_call_needs_it() {
    let rx = TcpReceiver::start();
    let ls = Luaspout::builder().env("LUASPOUT_API_TOKEN", "s3cret").start();
    let create = format!(r#"{{"id":"tok","adapter":"raw+tcp","address":"{}"}}"#, rx.addr());
    let (status, head, _) = request(ls.port(), "POST", "/routes", "", &create);
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"));
    assert_eq!(request(ls.port(), "POST", "/routes", "Authorization: Bearer wrong\r\n", &create).0, 401);
    assert_eq!(request(ls.port(), "POST", "/routes", "Authorization: Bearer s3cret\r\n", &create).0, 201);
    assert_eq!(request(ls.port(), "GET", "/routes", "", "").0, 401, "reading needs the token too");
    assert_eq!(request(ls.port(), "GET", "/routes", "Authorization: Bearer s3cret\r\n", "").0, 200);
    assert_eq!(request(ls.port(), "DELETE", "/routes/tok", "", "").0, 401);
    assert_eq!(request(ls.port(), "DELETE", "/routes/tok", "Authorization: Bearer s3cret\r\n", "").0, 200);
}

#[test]
fn config_file_routes_are_listed_read_only_and_the_same_id_replaces_a_route() {
    let (rx1, rx2) = (TcpReceiver::start(), TcpReceiver::start());
    let name = unique_name();
    let ls = Luaspout::builder()
        .config(&format!("route {{ name = \"from-file\", to = \"raw+tcp://{}?filter.name=none-such\" }}\n", rx1.addr()))
        .start();
    let (_, _, body) = request(ls.port(), "GET", "/routes", "", "");
    let list = json(&body);
    assert_eq!(list[0]["id"], "from-file");
    assert_eq!(list[0]["readonly"], true);
    assert_eq!(request(ls.port(), "DELETE", "/routes/from-file", "", "").0, 405);
    let route =
        |addr: String| format!(r#"{{"id":"same","adapter":"raw+tcp","address":"{addr}","filter_name":"{name}"}}"#);
    assert_eq!(request(ls.port(), "POST", "/routes", "", &route(rx1.addr())).0, 201);
    assert_eq!(request(ls.port(), "POST", "/routes", "", &route(rx2.addr())).0, 201);
    let _c = run_named(&name, &[], "echo replaced; sleep 60");
    assert_eq!(rx2.wait_for_lines(1, ARRIVE), ["replaced"]);
    thread::sleep(SETTLE);
    assert!(rx1.lines().is_empty(), "the replaced route no longer sends");
}
