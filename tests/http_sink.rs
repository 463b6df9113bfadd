//! End-to-end tests of HTTP routes: the real binary and real containers against a local HTTP
//! endpoint ([`Endpoint`]) that answers from a script (500, then 429, then 200…), so retries,
//! batching, rejection and Lua-built bodies are checked on what actually arrives.

mod util;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// One request the endpoint received.
#[derive(Debug, Clone)]
struct Received {
    path_and_query: String,
    headers: BTreeMap<String, String>,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    body: Vec<u8>,
    /// The status the endpoint answered with.
    status: u16,
}

impl Received {
    fn lines(&self) -> Vec<String> {
        split_lines(&self.body).into_iter().map(lossy).collect()
    }
}

/// A loopback HTTP endpoint (axum on its own runtime thread) that records every request and
/// answers each with the next status of its script, then 200 (or, while a refusal window set
/// with [`Endpoint::refuse_for`] lasts, its status). A scripted 429 carries `Retry-After: 1`;
/// error answers have a two-line body, so the log shows only the first.
struct Endpoint {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What the endpoint answers.
#[derive(Default)]
struct Script {
    statuses: VecDeque<u16>,
    /// Answer this status to every request until then.
    refuse: Option<(u16, Instant)>,
    /// Answer 401 to requests without this `x-key` header.
    key: Option<String>,
}

impl Script {
    fn next(&mut self, headers: &BTreeMap<String, String>) -> u16 {
        if self.key.as_ref().is_some_and(|k| headers.get("x-key") != Some(k)) {
            return 401;
        }
        match self.refuse {
            Some((status, until)) if Instant::now() < until => status,
            _ => self.statuses.pop_front().unwrap_or(200),
        }
    }
}

impl Endpoint {
    fn start(script: &[u16]) -> Endpoint {
        Endpoint::serve(std::net::TcpListener::bind("127.0.0.1:0").expect("bind endpoint"), script)
    }

    /// An endpoint on a given port (that a route already points at).
    fn start_on(port: u16) -> Endpoint {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => return Endpoint::serve(l, &[]),
                Err(e) if Instant::now() >= deadline => panic!("bind 127.0.0.1:{port}: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// An HTTPS endpoint presenting the test PKI's server certificate (signed by its CA).
    fn start_tls(pki: &util::tls::TestPki) -> Endpoint {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(util::tls::load_certs(&pki.server_cert_pem()), util::tls::load_key(&pki.server_key_pem()))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind endpoint");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<Script>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let app = recording_app(received.clone(), script.clone());
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        accepted = listener.accept() => accepted.unwrap(),
                        _ = &mut stopped => return,
                    };
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Endpoint { port, received, script, _stop: stop }
    }

    fn serve(listener: std::net::TcpListener, script: &[u16]) -> Endpoint {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(Script { statuses: script.iter().copied().collect(), ..Default::default() }));
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (rec, scr) = (received.clone(), script.clone());
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = recording_app(rec, scr);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Endpoint { port, received, script, _stop: stop }
    }

    /// Answers 401 to every request without `x-key: key`.
    fn require_key(&self, key: &str) {
        self.script.lock().unwrap().key = Some(key.to_string());
    }

    /// Answers `status` to every request for the next `window`.
    fn refuse_for(&self, status: u16, window: Duration) {
        self.script.lock().unwrap().refuse = Some((status, Instant::now() + window));
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The lines of the accepted (2xx) requests, in arrival order.
    fn accepted_lines(&self) -> Vec<String> {
        self.requests().iter().filter(|r| r.status == 200).flat_map(Received::lines).collect()
    }

    /// The `data` field of each accepted JSON line, in arrival order.
    fn accepted_data(&self) -> Vec<String> {
        self.accepted_lines()
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["data"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until `done` holds for the requests so far, or `timeout` passes.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if done(&r) || Instant::now() >= deadline {
                return r;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The endpoint's one handler, for every method and path.
fn recording_app(received: Arc<Mutex<Vec<Received>>>, script: Arc<Mutex<Script>>) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (received, script) = (received.clone(), script.clone());
        async move { answer(req, &received, &script).await }
    })
}

async fn answer(
    req: axum::extract::Request,
    received: &Mutex<Vec<Received>>,
    script: &Mutex<Script>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers: BTreeMap<String, String> =
        req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let raw = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).expect("valid gzip body");
        out
    } else {
        raw.to_vec()
    };
    let status = script.lock().unwrap().next(&headers);
    received.lock().unwrap().push(Received { path_and_query, headers, body, status });
    let code = axum::http::StatusCode::from_u16(status).unwrap();
    if status == 429 {
        return (code, [("retry-after", "1")], "slow down\nmore detail").into_response();
    }
    (code, format!("scripted {status}\nmore detail")).into_response()
}

/// The value of a route's sample in `/metrics`, e.g. `luaspout_route_retries_total`.
fn metric(ls: &Luaspout, family: &str, extra: &str) -> Option<u64> {
    let (_, body) = ls.get("/metrics")?;
    lossy(body).lines().find_map(|l| {
        let rest = l.strip_prefix(family)?;
        (rest.starts_with('{') && rest.contains(extra)).then(|| rest.rsplit(' ').next()?.parse().ok())?
    })
}

#[test]
fn retries_500_and_429_until_accepted_and_delivers_every_line_once_in_batches() {
    let ep = Endpoint::start(&[500, 429]);
    let name = unique_name();
    let ls = Luaspout::builder()
        .arg(format!("{}?filter.name={name}&batch_size=20&flush_interval=300ms", ep.url("/ingest")))
        .start();
    let _c = run_named(&name, &[], "for i in $(seq 1 50); do echo line-$i; done; sleep 60");
    let wanted: Vec<String> = (1..=50).map(|i| format!("line-{i}")).collect();
    let got_all = |r: &[Received]| r.iter().filter(|r| r.status == 200).map(|r| r.lines().len()).sum::<usize>() >= 50;
    ep.wait_until(ARRIVE + Duration::from_secs(5), got_all);
    thread::sleep(SETTLE);
    let requests = ep.requests().len();
    let data: Vec<String> = ep
        .accepted_lines()
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert_eq!(v["container"]["name"], name.as_str(), "{l}");
            assert_eq!(v["source"], "stdout", "{l}");
            assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
            v["data"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(data, wanted, "every line once, in order");
    let all = ep.requests();
    assert!(requests >= 5, "500 and 429 were retried: {requests} requests");
    assert_eq!((all[0].status, all[1].status, all[2].status), (500, 429, 200));
    assert_eq!(all[0].body, all[1].body, "the same batch is sent again");
    assert_eq!(all[1].body, all[2].body);
    assert!(all.iter().all(|r| r.lines().len() <= 20), "batch_size caps a batch");
    assert_eq!(all[0].path_and_query, "/ingest");
    assert_eq!(all[0].headers.get("content-type").map(String::as_str), Some("application/x-ndjson"));
    assert!(all[0].headers.get("user-agent").is_some_and(|u| u.starts_with("luaspout/")));
    assert_eq!(metric(&ls, "luaspout_route_retries_total", "").unwrap(), 2);
    assert_eq!(metric(&ls, "luaspout_route_lines_total", r#"outcome="sent""#).unwrap(), 50);
    let stderr = ls.stderr();
    assert!(stderr.contains("HTTP 500 Internal Server Error: scripted 500"), "{stderr}");
    assert!(!stderr.contains("more detail"), "only the first line of a response is logged: {stderr}");
}

#[test]
fn a_400_is_not_retried_and_is_counted() {
    let ep = Endpoint::start(&[400]);
    let name = unique_name();
    let ls = Luaspout::builder().arg(format!("{}?filter.name={name}&flush_interval=100ms", ep.url("/ingest"))).start();
    let _c = run_named(&name, &[], "echo first; sleep 1; echo second; sleep 60");
    ep.wait_until(ARRIVE, |r| r.len() >= 2);
    thread::sleep(SETTLE);
    let requests = ep.requests();
    assert_eq!(requests.len(), 2, "one rejected request, one accepted: {requests:?}");
    assert_eq!(requests[0].status, 400);
    assert!(requests[0].lines()[0].contains(r#""data":"first""#));
    assert!(requests[1].lines()[0].contains(r#""data":"second""#));
    assert_eq!(metric(&ls, "luaspout_route_lines_total", r#"outcome="dropped_rejected""#).unwrap(), 1);
    assert_eq!(metric(&ls, "luaspout_route_http_rejected_lines_total", r#"status="400""#).unwrap(), 1);
    assert_eq!(metric(&ls, "luaspout_route_retries_total", "").unwrap(), 0);
    let stderr = ls.stderr();
    assert!(stderr.contains("rejected a batch") && stderr.contains("scripted 400"), "{stderr}");
}

/// Issue 16: an API key being rotated (401 for a few seconds) is an outage, not a verdict on
/// the lines: they wait and all arrive, and `/health` says why the sink is down meanwhile.
#[test]
fn a_401_window_is_an_outage_that_loses_nothing() {
    let ep = Endpoint::start(&[]);
    let name = unique_name();
    let ls = Luaspout::builder().arg(format!("{}?filter.name={name}&flush_interval=100ms", ep.url("/ingest"))).start();
    ep.refuse_for(401, Duration::from_secs(6));
    let _c = run_named(&name, &[], "for i in $(seq 1 100); do echo line-$i; done; sleep 60");
    ep.wait_until(ARRIVE, |r| r.iter().any(|r| r.status == 401));
    let (_, health) = ls.get("/health").unwrap();
    let health = lossy(health);
    assert!(health.contains(r#""state":"down""#) && health.contains("401 Unauthorized"), "{health}");
    let got_all = |r: &[Received]| r.iter().filter(|r| r.status == 200).map(|r| r.lines().len()).sum::<usize>() >= 100;
    ep.wait_until(Duration::from_secs(60), got_all);
    thread::sleep(SETTLE);
    let data = ep.accepted_data();
    let wanted: Vec<String> = (1..=100).map(|i| format!("line-{i}")).collect();
    assert_eq!(data, wanted, "every line once, in order");
    assert_eq!(metric(&ls, "luaspout_route_lines_total", r#"outcome="dropped_rejected""#).unwrap(), 0);
    let refused = ep.requests().iter().filter(|r| r.status == 401).count();
    assert!(refused >= 3, "retried through the window: {refused} refused requests");
    let (_, health) = ls.get("/health").unwrap();
    assert!(lossy(&health).contains(r#""state":"up""#), "up again: {}", lossy(&health));
}

/// A wrong key fixed in `routes.lua`: the reload hands the writer the new header, and the
/// batch it was retrying goes out with it; nothing is lost.
#[test]
fn a_key_fixed_by_a_reload_delivers_the_batch_that_was_refused() {
    let ep = Endpoint::start(&[]);
    ep.require_key("new");
    let name = unique_name();
    let config = |key: &str| {
        format!(
            "route {{ to = \"{}\", match = {{ name = \"{name}\" }}, flush_interval = 100, headers = {{ [\"x-key\"] = \"{key}\" }} }}\n",
            ep.url("/ingest")
        )
    };
    let ls = Luaspout::builder().config(&config("old")).start();
    let _c = run_named(&name, &[], "for i in $(seq 1 20); do echo line-$i; done; sleep 60");
    ep.wait_until(ARRIVE, |r| r.iter().filter(|r| r.status == 401).count() >= 2);
    save_by_rename(ls.config_path().unwrap(), &config("new"));
    let got_all = |r: &[Received]| r.iter().filter(|r| r.status == 200).map(|r| r.lines().len()).sum::<usize>() >= 20;
    ep.wait_until(Duration::from_secs(30), got_all);
    thread::sleep(SETTLE);
    let data = ep.accepted_data();
    let wanted: Vec<String> = (1..=20).map(|i| format!("line-{i}")).collect();
    assert_eq!(data, wanted, "every line once, in order");
    assert!(
        ep.requests()
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.headers.get("x-key").map(String::as_str) == Some("new"))
    );
}

#[test]
fn lua_batch_builds_the_body_with_headers_gzip_and_query_passed_on() {
    let ep = Endpoint::start(&[]);
    let name = unique_name();
    let ls = Luaspout::builder()
        .config(&format!(
            r#"
route {{
  to = "{url}",
  match = {{ name = "{name}" }},
  headers = {{ apikey = "secret-key" }},
  gzip = true,
  batch_size = 3,
  flush_interval = "5s",
  format = function (msg) return {{ line = msg.data, app = msg.container.name }} end,
  batch = function (list)
    local lines = {{}}
    for i, item in ipairs(list) do lines[i] = spout.json_decode(item) end
    return {{ lines = lines }}
  end,
}}
"#,
            url = ep.url("/logs/ingest?hostname=node-1")
        ))
        .start();
    let _c = run_named(&name, &[], "echo a; echo b; echo 'c \"q\"'; sleep 60");
    let requests = ep.wait_until(ARRIVE, |r| !r.is_empty());
    assert_eq!(requests.len(), 1, "three lines fill batch_size long before flush_interval");
    let r = &requests[0];
    assert_eq!(r.path_and_query, "/logs/ingest?hostname=node-1");
    assert_eq!(r.headers.get("apikey").map(String::as_str), Some("secret-key"));
    assert_eq!(r.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    let expected = format!(
        r#"{{"lines":[{{"app":"{name}","line":"a"}},{{"app":"{name}","line":"b"}},{{"app":"{name}","line":"c \"q\""}}]}}"#
    );
    assert_eq!(lossy(&r.body), expected);
    drop(ls);
}

#[test]
fn a_failing_batch_function_sends_plain_lines_and_counts_the_error() {
    let ep = Endpoint::start(&[]);
    let name = unique_name();
    let ls = Luaspout::builder()
        .config(&format!(
            r#"
route {{
  to = "{url}",
  match = {{ name = "{name}" }},
  flush_interval = 200,
  batch = function (list) error("no body today") end,
}}
"#,
            url = ep.url("/in")
        ))
        .start();
    let _c = run_named(&name, &[], "echo kept; sleep 60");
    let requests = ep.wait_until(ARRIVE, |r| !r.is_empty());
    assert_eq!(requests.len(), 1);
    assert!(requests[0].lines()[0].contains(r#""data":"kept""#), "{:?}", requests[0].lines());
    assert_eq!(metric(&ls, "luaspout_route_lua_errors_total", "").unwrap(), 1);
    assert!(ls.stderr().contains("no body today"), "{}", ls.stderr());
}

#[test]
fn an_endpoint_that_is_down_at_first_gets_every_line_when_it_comes_up() {
    let port = free_port();
    let name = unique_name();
    let _ls =
        Luaspout::builder().arg(format!("http://127.0.0.1:{port}/in?filter.name={name}&flush_interval=100ms")).start();
    let _c = run_named(&name, &[], "for i in 1 2 3; do echo down-$i; done; sleep 60");
    thread::sleep(Duration::from_secs(2));
    let ep = Endpoint::start_on(port);
    ep.wait_until(ARRIVE, |r| r.iter().map(|r| r.lines().len()).sum::<usize>() >= 3);
    let data = ep.accepted_data();
    assert_eq!(data, ["down-1", "down-2", "down-3"]);
}

/// Runs `examples/<file>` with `env` (which points it at the endpoint), starts one container
/// named uniquely, and returns its name and the accepted requests whose body mentions `needle`
/// (default: that name).
fn through_example(
    file: &str,
    env: &[(&str, String)],
    docker_args: &[&str],
    cmd: &str,
    needle: Option<&str>,
) -> (String, Vec<Received>) {
    let ep = Endpoint::start(&[]);
    let text = std::fs::read_to_string(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut b = Luaspout::builder().config(&text);
    for (k, v) in env {
        b = b.env(k, &v.replace("{endpoint}", &ep.url("")));
    }
    let _ls = b.start();
    let name = unique_name();
    let _c = run_named(&name, docker_args, cmd);
    let needle = needle.unwrap_or(&name).to_string();
    let ours = |r: &Received| r.status == 200 && lossy(&r.body).contains(&needle);
    ep.wait_until(ARRIVE, |rs| rs.iter().any(ours));
    thread::sleep(SETTLE);
    (name.clone(), ep.requests().into_iter().filter(ours).collect())
}

#[test]
fn loki_example_pushes_streams_to_a_loki_endpoint() {
    let service = format!("svc-{}", random_hex(6));
    let (_, requests) = through_example(
        "loki.lua",
        &[("LOKI_URL", "{endpoint}/loki/api/v1/push".into()), ("HOST_NAME", "node-1".into())],
        &["--label", "com.docker.compose.project=shop", "--label", &format!("com.docker.compose.service={service}")],
        "echo one; echo two >&2; sleep 60",
        Some(&service),
    );
    // Containers of other tests may share a batch: pick our streams out.
    let mut ours: Vec<(String, String)> = Vec::new();
    for r in &requests {
        assert_eq!(r.path_and_query, "/loki/api/v1/push");
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for s in body["streams"].as_array().unwrap() {
            if s["stream"]["service"] == service.as_str() {
                assert_eq!(s["stream"]["host"], "node-1");
                assert_eq!(s["stream"]["project"], "shop");
                for v in s["values"].as_array().unwrap() {
                    assert!(v[0].as_str().unwrap().parse::<u64>().is_ok(), "ns timestamp as a string: {v}");
                    ours.push((s["stream"]["stream"].as_str().unwrap().into(), v[1].as_str().unwrap().into()));
                }
            }
        }
    }
    ours.sort();
    assert_eq!(ours, [("stderr".into(), "two".into()), ("stdout".into(), "one".into())]);
}

#[test]
fn logdna_example_posts_ingest_batches_with_its_key() {
    let (name, requests) = through_example(
        "logdna.lua",
        &[("LOGDNA_URL", "{endpoint}/logs/ingest".into()), ("LOGDNA_KEY", "k-123".into())],
        &[],
        "echo hello; echo; echo oops >&2; sleep 60",
        None,
    );
    let mut lines = Vec::new();
    for r in &requests {
        assert_eq!(r.path_and_query, "/logs/ingest?hostname=docker-host-1");
        assert_eq!(r.headers.get("apikey").map(String::as_str), Some("k-123"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for l in body["lines"].as_array().unwrap().iter().filter(|l| l["app"] == name.as_str()) {
            assert!(l["timestamp"].is_u64(), "{l}");
            lines.push((l["level"].as_str().unwrap().to_string(), l["line"].as_str().unwrap().to_string()));
        }
    }
    // stdout and stderr are two streams: their relative order is not kept.
    lines.sort();
    assert_eq!(lines, [("ERROR".into(), "oops".into()), ("INFO".into(), "hello".into())], "the empty line is dropped");
}

#[test]
fn elasticsearch_example_sends_a_gzipped_bulk_body() {
    let (name, requests) = through_example(
        "elasticsearch.lua",
        &[("ES_URL", "{endpoint}/_bulk".into()), ("ES_AUTH", "ApiKey abc".into())],
        &[],
        "echo 'GET / 200'; sleep 60",
        None,
    );
    let r = &requests[0];
    assert_eq!(r.path_and_query, "/_bulk");
    assert_eq!(r.headers.get("authorization").map(String::as_str), Some("ApiKey abc"));
    assert_eq!(r.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/x-ndjson"));
    let lines = r.lines();
    assert_eq!(lines.len() % 2, 0, "action and document lines in pairs: {lines:?}");
    let i = lines.iter().position(|l| l.contains(&name)).unwrap();
    let action: serde_json::Value = serde_json::from_str(&lines[i - 1]).unwrap();
    assert!(action["create"]["_index"].as_str().unwrap().starts_with("logs-docker-20"), "{action}");
    let doc: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
    assert_eq!((doc["message"].as_str(), doc["container"]["name"].as_str()), (Some("GET / 200"), Some(name.as_str())));
}

#[test]
fn webhook_example_posts_stderr_errors_as_one_message() {
    let (name, requests) = through_example(
        "webhook.lua",
        &[("WEBHOOK_URL", "{endpoint}/hooks/abc".into())],
        &[],
        "echo 'ERROR one' >&2; echo 'INFO fine' >&2; echo 'ERROR two' >&2; sleep 60",
        None,
    );
    assert_eq!(requests.len(), 1, "gathered into one post: {requests:?}");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    let ours: Vec<&str> = text.lines().filter(|l| l.starts_with(&name)).collect();
    assert_eq!(ours, [format!("{name}: ERROR one"), format!("{name}: ERROR two")]);
}

#[test]
fn https_routes_verify_the_endpoint_and_post_over_tls() {
    let pki = util::tls::TestPki::new();
    let ep = Endpoint::start_tls(&pki);
    let (trusted, untrusted) = (unique_name(), unique_name());
    let ls = Luaspout::builder()
        .env("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")
        .config(&format!(
            r#"
route {{ name = "trusted", to = "https://127.0.0.1:{port}/in?flush_interval=100ms",
        match = {{ name = "{trusted}" }}, tls = {{ ca = "{ca}" }} }}
route {{ name = "untrusted", to = "https://127.0.0.1:{port}/in?flush_interval=100ms",
        match = {{ name = "{untrusted}" }}, tls = {{ ca = "{wrong}" }} }}
"#,
            port = ep.port,
            ca = pki.ca_pem().display(),
            wrong = pki.wrong_ca_pem().display()
        ))
        .start();
    let _a = run_named(&trusted, &[], "echo over-https; sleep 60");
    let _b = run_named(&untrusted, &[], "echo never; sleep 60");
    ep.wait_until(ARRIVE, |r| !r.is_empty());
    thread::sleep(Duration::from_secs(2));
    let data = ep.accepted_data();
    assert_eq!(data, ["over-https"], "only the route that trusts the endpoint's CA gets through");
    assert!(metric(&ls, "luaspout_route_retries_total", r#"route="untrusted""#).unwrap() >= 1);
    let stderr = ls.stderr();
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}
