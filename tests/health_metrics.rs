//! End-to-end tests of `/health` (its JSON body) and `/metrics` (parsed by a Prometheus text
//! parser, values checked against what a real container logged through a real sink).

mod util;

use std::thread;

use util::*;

fn scrape(ls: &Luaspout) -> prometheus_parse::Scrape {
    let (status, body) = ls.get("/metrics").expect("/metrics");
    assert_eq!(status, 200);
    let text = lossy(body);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The value of `name` whose labels include every `(key, value)` of `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        },
    )
}

#[test]
fn metrics_count_what_a_container_logged_per_container_and_route() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // A route named without `=` or `?`: prometheus-parse splits labels naively (Prometheus
    // itself reads the URI-named routes fine; their escaping is unit-tested).
    let uri = "app";
    let ls = Luaspout::builder()
        .config(&format!(
            "route {{ name = \"app\", to = \"raw+tcp://{}\", match = {{ name = \"{name}\" }} }}\n",
            rx.addr()
        ))
        .start();
    let _c = run_named(&name, &[], "echo one; echo two; echo three >&2; sleep 60");
    rx.wait_for_lines(3, ARRIVE);
    thread::sleep(SETTLE);
    let m = scrape(&ls);
    assert_eq!(value(&m, "luaspout_container_lines_read_total", &[("container", &name)]), Some(3.0));
    assert_eq!(value(&m, "luaspout_route_lines_total", &[("route", uri), ("outcome", "sent")]), Some(3.0));
    assert_eq!(
        value(&m, "luaspout_route_bytes_sent_total", &[("route", uri)]),
        Some(("one\ntwo\nthree\n".len()) as f64)
    );
    assert_eq!(value(&m, "luaspout_route_connections_total", &[("route", uri)]), Some(1.0));
    assert_eq!(value(&m, "luaspout_route_connected", &[("route", uri)]), Some(1.0));
    assert_eq!(value(&m, "luaspout_route_queue_batches", &[("route", uri)]), Some(0.0));
    assert_eq!(value(&m, "luaspout_docker_up", &[]), Some(1.0));
    assert_eq!(value(&m, "luaspout_config_generation", &[]), Some(1.0));
    assert_eq!(value(&m, "luaspout_logs_viewers", &[]), Some(0.0));
}

#[test]
fn health_is_json_with_generation_and_sink_states() {
    let rx = TcpReceiver::start();
    let dead = free_port();
    let name = unique_name();
    let ls = Luaspout::builder()
        .arg(format!("raw+tcp://{}?filter.name={name},raw+tcp://127.0.0.1:{dead}?filter.name={name}", rx.addr()))
        .env("RETRY_COUNT", "1")
        .start();
    let _c = run_named(&name, &[], "echo hi; sleep 60");
    rx.wait_for_lines(1, ARRIVE);
    let deadline = std::time::Instant::now() + ARRIVE;
    let health = loop {
        let (status, body) = ls.get("/health").unwrap();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["sinks"].as_array().unwrap().iter().any(|s| s["state"] == "down") {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the dead sink never showed as down: {v}");
        thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["docker"], "connected");
    assert_eq!(health["generation"], 1);
    assert!(health["config_error"].is_null());
    let sinks = health["sinks"].as_array().unwrap();
    let up = sinks.iter().find(|s| s["route"].as_str().unwrap().contains(&rx.addr())).unwrap();
    assert_eq!(up["state"], "up");
    let down = sinks.iter().find(|s| s["route"].as_str().unwrap().contains(&format!(":{dead}"))).unwrap();
    assert!(down["problem"].as_str().unwrap().starts_with("sink down"), "{down}");
}
