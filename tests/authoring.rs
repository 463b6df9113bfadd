//! The authoring tools and the shipped example configs, through the real binary:
//!
//! - every `examples/*.lua` (and `examples/elk/routes.lua`) is run by `luaspout try` with
//!   sample input and its exact output asserted, and those that declare `test{}` cases pass
//!   them under `luaspout check`;
//! - `try` and `check` report bad configs, bad input and failing tests with `file:line` and a
//!   non-zero exit.
//!
//! Every command runs with an empty environment (no `ROUTE_URIS`, `SYSLOG_*`, ...) and a fixed
//! `--start`, so outputs are exact. Needs no Docker and no network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LUASPOUT: &str = env!("CARGO_BIN_EXE_luaspout");
const START: &str = "2024-01-01T00:00:00Z";

/// The example configs this file exercises; a new example must be added here (and tested).
const EXAMPLES: &[&str] = &[
    "compose.lua",
    "drop-noise.lua",
    "elasticsearch.lua",
    "json-logs.lua",
    "levels.lua",
    "logdna.lua",
    "logstash.lua",
    "loki.lua",
    "multiline.lua",
    "papertrail.lua",
    "redact.lua",
    "routes.lua",
    "sampling.lua",
    "webhook.lua",
];

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

/// Runs the binary with `args`, `stdin` and only the variables in `env`.
fn luaspout(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(LUASPOUT)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run luaspout");
    // A config that fails to load ends the process before it reads stdin: a broken pipe here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `luaspout try --start START PATH [extra]`, which must succeed; its stdout.
fn try_ok(path: &Path, extra: &[&str], stdin: &str, env: &[(&str, &str)]) -> String {
    let path = path.to_str().unwrap();
    let mut args = vec!["try", "--start", START, path];
    args.extend_from_slice(extra);
    let out = luaspout(&args, stdin, env);
    assert!(out.status.success(), "luaspout try {path} failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `luaspout check PATH`; (success, stdout, stderr).
fn check(path: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let out = luaspout(&["check", path.to_str().unwrap()], "", env);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A config in a temporary directory.
fn temp_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.lua");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn every_example_is_listed_here() {
    let mut found: Vec<String> = std::fs::read_dir(example(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lua"))
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "add the new example to EXAMPLES and give it a test in tests/authoring.rs");
}

#[test]
fn the_readme_routes_lua_passes_its_own_test() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```lua\n").expect("README has a ```lua block") + "```lua\n".len();
    let lua = &readme[start..start + readme[start..].find("```").unwrap()];
    let (_dir, path) = temp_config(lua);
    let (ok, stdout, stderr) = check(&path, &[]);
    assert!(ok, "the README's routes.lua fails `luaspout check`: {stderr}");
    assert!(stdout.contains("ok, 2 route(s)") && stdout.contains("1 test passed"), "{stdout}");
}

#[test]
fn examples_pass_their_own_tests() {
    for (name, routes, tests) in [
        ("papertrail.lua", 1, 1),
        ("logstash.lua", 2, 2),
        ("drop-noise.lua", 1, 2),
        ("redact.lua", 1, 1),
        ("compose.lua", 2, 2),
        ("json-logs.lua", 1, 1),
        ("sampling.lua", 1, 1),
        ("loki.lua", 1, 1),
        ("logdna.lua", 1, 1),
        ("elasticsearch.lua", 1, 1),
        ("webhook.lua", 1, 1),
    ] {
        let path = example(name);
        let (ok, stdout, stderr) = check(&path, &[]);
        assert!(ok, "{name}: {stderr}");
        let s = if tests == 1 { "" } else { "s" };
        assert_eq!(stdout, format!("{}: ok, {routes} route(s)\n{tests} test{s} passed\n", path.display()), "{name}");
    }
}

#[test]
fn papertrail_sends_syslog_over_tls() {
    let out = try_ok(
        &example("papertrail.lua"),
        &[],
        "GET / 200\n\n{\"data\":\"oops\",\"source\":\"stderr\",\"container\":{\"name\":\"web_1\",\"hostname\":\"web\"}}\n",
        &[],
    );
    assert_eq!(
        out,
        "== papertrail (2 lines)\n\
         <14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - GET / 200\n\
         <11>1 2024-01-01T00:00:00Z web web_1 1 - - oops\n"
    );
    let path = example("papertrail.lua");
    let (ok, stdout, stderr) = check(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(&format!("{}: ok, 1 route(s)", path.display())), "{stdout}");
    // Without any trust anchor, the TLS route is refused with the reason.
    let (ok, _, stderr) = check(&path, &[("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")]);
    assert!(!ok);
    assert!(stderr.contains("route \"papertrail\"") && stderr.contains("the TLS trust store is empty"), "{stderr}");
}

/// The grok of the ELK article in the seeds (logspout + Logstash), as a Rust regex with
/// Logstash's definitions of the patterns it uses.
fn seed_grok() -> regex::Regex {
    let nonnegint = r"\b(?:[0-9]+)\b";
    let timestamp = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?";
    let hostname = r"\b(?:[0-9A-Za-z][0-9A-Za-z-]{0,62})(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]{0,62}))*(?:\.?|\b)";
    let grok = format!(
        r"^<(?P<syslog5424_pri>{nonnegint})>(?P<ver>{nonnegint}) +(?:(?P<ts>{timestamp})|-) +(?:(?P<containerid>{hostname})|-) +(?:(?P<containername>\S+)|-) +(?:(?P<proc>\S+)|-) +(?:(?P<msgid>\b\w+\b)|-) +(?:(?P<sd>\[.*?\]+)|-|) +(?P<msg>.*)"
    );
    regex::Regex::new(&grok).unwrap()
}

#[test]
fn logstash_json_carries_what_the_seed_grok_extracts_from_the_syslog_route() {
    let input = r#"{"data":"GET /cart 200 12ms","time":"2024-03-05T10:20:30.123456789Z","container":{"name":"shop_web_1","hostname":"3b6ba57db54a","image":"shop/web:1.4","pid":4242}}
{"data":"panic: nil map","source":"stderr","time":"2024-03-05T10:20:31Z","container":{"name":"shop_web_1","hostname":"3b6ba57db54a","image":"shop/web:1.4","pid":4242}}
"#;
    let out = try_ok(&example("logstash.lua"), &[], input, &[]);
    assert_eq!(
        out,
        r#"== logstash (2 lines)
{"@timestamp":"2024-03-05T10:20:30.123Z","containerid":"3b6ba57db54a","containername":"shop_web_1","image":"shop/web:1.4","msg":"GET /cart 200 12ms","stream":"stdout","syslog5424_pri":"14"}
{"@timestamp":"2024-03-05T10:20:31.000Z","containerid":"3b6ba57db54a","containername":"shop_web_1","image":"shop/web:1.4","msg":"panic: nil map","stream":"stderr","syslog5424_pri":"11"}
== logstash-syslog (2 lines)
<14>1 2024-03-05T10:20:30Z 3b6ba57db54a shop_web_1 4242 - - GET /cart 200 12ms
<11>1 2024-03-05T10:20:31Z 3b6ba57db54a shop_web_1 4242 - - panic: nil map
"#
    );
    let lines: Vec<&str> = out.lines().collect();
    let grok = seed_grok();
    for (json, syslog) in [(lines[1], lines[4]), (lines[2], lines[5])] {
        let fields: serde_json::Value = serde_json::from_str(json).unwrap();
        let caps = grok.captures(syslog).unwrap_or_else(|| panic!("the seed grok does not parse {syslog:?}"));
        for name in ["syslog5424_pri", "containerid", "containername", "msg"] {
            assert_eq!(fields[name].as_str(), Some(&caps[name]), "{name} in {json}");
        }
        let ts = caps["ts"].trim_end_matches('Z');
        assert!(fields["@timestamp"].as_str().unwrap().starts_with(ts), "{json} vs {syslog}");
    }
}

#[test]
fn drop_noise_keeps_real_requests_and_opted_in_debug() {
    let input = r#"10.0.0.7 - - "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"
10.0.0.9 - - "GET /cart HTTP/1.1" 200 512
level=debug msg="cache miss"
{"level":"debug","msg":"sql"}
{"data":"level=debug msg=\"kept\"","container":{"name":"wip","labels":{"luaspout.debug":"true"}}}
{"data":"GET /ready HTTP/1.1","container":{"name":"wip","labels":{"luaspout.debug":"true"}}}
"#;
    let out = try_ok(&example("drop-noise.lua"), &["--lines"], input, &[]);
    // --lines: the JSON-looking lines are data, so the opted-in container is not used here…
    assert_eq!(out, "== quiet (1 line)\n10.0.0.9 - - \"GET /cart HTTP/1.1\" 200 512\n");
    // …and without it they are messages from that container.
    let out = try_ok(&example("drop-noise.lua"), &[], &input.replace(r#"{"level":"debug","msg":"sql"}"#, ""), &[]);
    assert_eq!(out, "== quiet (3 lines)\n10.0.0.9 - - \"GET /cart HTTP/1.1\" 200 512\n\nlevel=debug msg=\"kept\"\n");
}

#[test]
fn redact_masks_secrets_inside_the_syslog_message() {
    let out = try_ok(
        &example("redact.lua"),
        &[],
        "login bob@example.com token=abc123\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\nclean\n",
        &[("DEST", "syslog+udp://127.0.0.1:514")],
    );
    assert_eq!(
        out,
        "== redacted (3 lines)\n\
         <14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - login [email]@example.com token=[REDACTED]\n\
         <14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - Authorization: Basic [REDACTED]\n\
         <14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - clean\n"
    );
}

#[test]
fn compose_routes_by_project_and_service_labels() {
    let input = r#"{"data":"ready","container":{"name":"shop-db-1","labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"db"}}}
{"data":"GET /","container":{"name":"shop-web-1","labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"web","com.docker.compose.container-number":"1"}}}
{"data":"elsewhere","container":{"name":"blog-web-1","labels":{"com.docker.compose.project":"blog","com.docker.compose.service":"web"}}}
not compose
"#;
    let out = try_ok(&example("compose.lua"), &[], input, &[]);
    assert_eq!(
        out,
        r#"== shop-db (1 line)
<14>1 2024-01-01T00:00:00Z 12fd71bdbc5b shop-db-1.db 1 - - ready
== shop-apps (1 line)
{"log":"GET /","project":"shop","replica":1,"service":"web","stream":"stdout"}
"#
    );
}

#[test]
fn json_logs_reemit_selected_fields() {
    let input = r#"{"level":"info","msg":"paid","order":42,"user":{"id":7},"password":"x"}
{"level":"warn","message":"slow","msg":"slow query","trace_id":"abc"}
plain text
"#;
    let out = try_ok(&example("json-logs.lua"), &["--lines"], input, &[]);
    assert_eq!(
        out,
        r#"== app-json (3 lines)
{"container":"try","level":"info","msg":"paid","order_id":42,"time":"2024-01-01T00:00:00.000Z","user_id":7}
{"container":"try","level":"warn","msg":"slow query","time":"2024-01-01T00:00:00.001Z","trace_id":"abc"}
{"container":"try","level":"info","msg":"plain text","time":"2024-01-01T00:00:00.002Z"}
"#
    );
}

#[test]
fn sampling_counts_per_container_across_the_whole_run() {
    let mut input = String::new();
    for i in 1..=7 {
        input.push_str(&format!("\"GET /a/{i} HTTP/1.1\" 200 1\n"));
        input.push_str(&format!(
            "{{\"data\":\"\\\"GET /b/{i} HTTP/1.1\\\" 301 1\",\"container\":{{\"name\":\"b\"}}}}\n"
        ));
    }
    input.push_str("\"GET /a/x HTTP/1.1\" 503 1\n");
    let out = try_ok(&example("sampling.lua"), &[], &input, &[("SAMPLE_RATE", "3")]);
    assert_eq!(
        out,
        r#"== sampled (7 lines)
"GET /a/1 HTTP/1.1" 200 1 [sampled 1/3]
"GET /b/1 HTTP/1.1" 301 1 [sampled 1/3]
"GET /a/4 HTTP/1.1" 200 1 [sampled 1/3]
"GET /b/4 HTTP/1.1" 301 1 [sampled 1/3]
"GET /a/7 HTTP/1.1" 200 1 [sampled 1/3]
"GET /b/7 HTTP/1.1" 301 1 [sampled 1/3]
"GET /a/x HTTP/1.1" 503 1
"#
    );
    let (ok, _, stderr) = check(&example("sampling.lua"), &[("SAMPLE_RATE", "0")]);
    assert!(!ok && stderr.contains("sampling.lua:14: SAMPLE_RATE must be a whole number, 1 or more"), "{stderr}");
}

#[test]
fn http_examples_show_their_request_bodies() {
    let out = try_ok(&example("loki.lua"), &[], "hello\nworld\n", &[("HOST_NAME", "node-7")]);
    assert_eq!(
        out,
        r#"== loki (1 line)
{"streams":[{"stream":{"host":"node-7","project":"none","service":"try","stream":"stdout"},"values":[["1704067200000000000","hello"],["1704067200001000000","world"]]}]}
"#
    );
    let out = try_ok(&example("logdna.lua"), &[], "hello\n", &[]);
    assert_eq!(
        out,
        r#"== logdna (1 line)
{"lines":[{"app":"try","level":"INFO","line":"hello","meta":{"id":"5b6a0bef5159","image":"","tags":[]},"timestamp":1704067200000}]}
"#
    );
    let out = try_ok(&example("elasticsearch.lua"), &[], "hello\n", &[]);
    assert_eq!(
        out,
        r#"== elasticsearch (1 line)
{"create":{"_index":"logs-docker-2024.01.01"}}
{"@timestamp":"2024-01-01T00:00:00.000Z","compose":{},"container":{"id":"5b6a0bef51590d6a7c18241015cbd2d636411422b5bc8c87a42cfb18b81aeff1","image":"","name":"try"},"message":"hello","stream":"stdout"}
"#
    );
}

/// The examples that predate `try` (no `test{}` cases of their own).
#[test]
fn older_examples_through_try() {
    let input = "GET /health 200\nERROR boom\n  at x\n\
                 {\"data\":\"warning: low\",\"source\":\"stderr\",\"container\":{\"name\":\"shop_app\",\"image\":\"shop/app:2\"}}\n";
    assert_eq!(
        try_ok(&example("routes.lua"), &[], input, &[]),
        r#"== app-errors (1 line)
<11>1 2024-01-01T00:00:00Z c6a67837de85 shop_app.app 1 - - warning: low
== json (4 lines)
{"container":"try","image":"","log":"GET /health 200","stream":"stdout","time":1704067200.0}
{"container":"try","image":"","log":"ERROR boom","stream":"stdout","time":1704067200.001}
{"container":"try","image":"","log":"  at x","stream":"stdout","time":1704067200.0019999}
{"container":"shop_app","image":"shop/app:2","log":"warning: low","stream":"stderr","time":1704067200.003}
"#
    );
    assert_eq!(
        try_ok(&example("levels.lua"), &[], input, &[]),
        "== raw+udp://127.0.0.1:5140 (2 lines)\ntry stdout ERROR boom\nshop_app stderr warning: low\n"
    );
    assert_eq!(
        try_ok(&example("multiline.lua"), &[], input, &[]),
        r#"== raw+tcp://127.0.0.1:5000 (3 lines)
{"container":"try","log":"GET /health 200","stream":"stdout"}
{"container":"try","log":"ERROR boom\n  at x","stream":"stdout"}
{"container":"shop_app","log":"warning: low","stream":"stderr"}
"#
    );
    // Top-level multiline for the java-labelled containers: the dated line opens a group.
    let java = r#"{"data":"2024-01-01 12:00:00 ERROR failed","container":{"name":"api","labels":{"com.example.lang":"java"}}}
{"data":"java.lang.IllegalStateException: no","container":{"name":"api","labels":{"com.example.lang":"java"}}}
{"data":"\tat A.b(A.java:1)","container":{"name":"api","labels":{"com.example.lang":"java"}}}
{"data":"2024-01-01 12:00:01 INFO next","container":{"name":"api","labels":{"com.example.lang":"java"}}}
"#;
    assert_eq!(
        try_ok(&example("multiline.lua"), &[], java, &[]),
        r#"== raw+tcp://127.0.0.1:5000 (2 lines)
{"container":"api","log":"2024-01-01 12:00:00 ERROR failed\njava.lang.IllegalStateException: no\n\tat A.b(A.java:1)","stream":"stdout"}
{"container":"api","log":"2024-01-01 12:00:01 INFO next","stream":"stdout"}
"#
    );
    // The compose example's config, with the URI the compose file gives it.
    assert_eq!(
        try_ok(&example("elk/routes.lua"), &["syslog+tcp://logstash:5000"], "GET /health 200\n\nGET /x 200\n", &[]),
        "== syslog+tcp://logstash:5000 (1 line)\n<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - GET /x 200\n"
    );
}

#[test]
fn try_without_start_stamps_lines_now_and_one_ms_apart() {
    let (_dir, path) =
        temp_config("route { to = 'raw+tcp://127.0.0.1:1', format = function (m) return tostring(m.time_ns) end }");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let out = luaspout(&["try", path.to_str().unwrap()], "a\nb\n", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let times: Vec<i64> = stdout.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(times.len(), 2, "{stdout}");
    assert!(times[0] >= before && times[0] < before + 60_000_000_000, "{stdout}");
    assert_eq!(times[1] - times[0], 1_000_000);
}

#[test]
fn try_reports_a_bad_config_with_file_and_line() {
    let (_dir, path) = temp_config("route {\n  to = 'raw+tcp://127.0.0.1:1',\n  fromat = 1,\n}\n");
    let out = luaspout(&["try", path.to_str().unwrap()], "x\n", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with(&format!("{}:1: unknown key `fromat`", path.display())),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let (_dir, path) = temp_config("route { to = 'raw+tcp://127.0.0.1:1' }\nlocal x = = 1\n");
    let out = luaspout(&["try", path.to_str().unwrap()], "x\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).starts_with(&format!("{}:2:", path.display())), "{}", text(&out.stderr));
}

#[test]
fn try_reports_bad_input_with_its_stdin_line() {
    let (_dir, path) = temp_config("route { to = 'raw+tcp://127.0.0.1:1' }");
    let out = luaspout(&["try", path.to_str().unwrap()], "fine\n{\"dta\": \"x\"}\n", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("stdin:2: not a message: unknown field `dta`"), "{stderr}");
    assert!(stderr.contains("--lines"), "{stderr}");
    let out = luaspout(&["try", path.to_str().unwrap()], "{\"source\": \"stdin\"}\n", &[]);
    assert!(text(&out.stderr).starts_with("stdin:1: unknown source \"stdin\""), "{}", text(&out.stderr));
    let out = luaspout(&["try", "--start", "yesterday", path.to_str().unwrap()], "", &[]);
    assert!(text(&out.stderr).starts_with("--start: bad time \"yesterday\""), "{}", text(&out.stderr));
}

#[test]
fn try_shows_every_route_even_silent_ones_and_uses_the_uris() {
    let (_dir, path) = temp_config(
        "for _, u in ipairs(spout.args) do route { to = u } end\n\
         route { name = 'errors', to = 'raw+tcp://127.0.0.1:1', match = { sources = { 'stderr' } } }",
    );
    let out = try_ok(
        &path,
        &["raw+udp://127.0.0.1:2,raw+tcp://127.0.0.1:3"],
        "a\n",
        &[("RAW_FORMAT", "{{.Container.Name}}|{{.Data}}")],
    );
    // RAW_FORMAT without a newline: each datagram is shown on its own line anyway. (Docker's
    // .Container.Name has a leading slash, as in logspout.)
    assert_eq!(
        out,
        "== raw+udp://127.0.0.1:2 (1 line)\n/try|a\n== raw+tcp://127.0.0.1:3 (1 line)\n/try|a\n== errors (0 lines)\n"
    );
}

#[test]
fn check_reports_a_failing_test_with_its_file_and_line() {
    let (_dir, path) = temp_config(
        r#"route { name = "up", to = "raw+tcp://127.0.0.1:1", format = function (m) return m.data:upper() end }

test { name = "passes", input = { "a" }, expect = { "A" } }
test {
  name = "fails", route = "up",
  input = { "b", { data = "c", source = "stderr" } },
  expect = { "B", "see" },
}
test { input = "d", route = "down", expect = {} }
"#,
    );
    let (ok, stdout, stderr) = check(&path, &[]);
    assert!(!ok);
    assert_eq!(stdout, format!("{}: ok, 1 route(s)\n", path.display()));
    let p = path.display();
    assert_eq!(
        stderr,
        format!(
            "{p}:4: test \"fails\" failed: route \"up\" sent other lines\n  line 2: expected \"see\"\n               got \"C\"\n\
             {p}:9: test #3 failed: no route named \"down\" (routes: \"up\")\n\
             2 of 3 tests failed\n"
        )
    );
}

#[test]
fn check_counts_lines_a_test_did_not_expect() {
    let (_dir, path) = temp_config(
        "route { to = 'raw+tcp://127.0.0.1:1' }\nroute { to = 'raw+tcp://127.0.0.1:2' }\n\
         test { input = { 'a', 'b' }, route = 'raw+tcp://127.0.0.1:2', expect = { 'a' } }\n\
         test { input = { 'a' }, expect = { 'a' } }\n",
    );
    let (ok, _, stderr) = check(&path, &[]);
    assert!(!ok);
    let p = path.display();
    assert_eq!(
        stderr,
        format!(
            "{p}:3: test #1 failed: route \"raw+tcp://127.0.0.1:2\" sent 2 lines, expected 1 line\n  line 2: expected nothing\n               got \"b\"\n\
             {p}:4: test #2 failed: say which route it tests: `route = …` (the config has 2 routes: \"raw+tcp://127.0.0.1:1\", \"raw+tcp://127.0.0.1:2\")\n\
             2 of 2 tests failed\n"
        )
    );
}

#[test]
fn test_declarations_are_checked_like_routes() {
    for (text, line, error) in [
        (
            "test { inptu = {}, expect = {} }",
            2,
            "unknown key `inptu` in test table (valid keys: name, input, route, expect); did you mean `input`?",
        ),
        ("\n\ntest { expect = {} }", 4, "test needs `input`"),
        ("test { input = {}, }", 2, "test needs `expect`"),
        ("test { input = { data = 'x' }, expect = {} }", 2, "test `input` must be a list"),
        ("test { input = { { dta = 'x' } }, expect = {} }", 2, "test input #1: unknown field `dta`"),
        ("test { input = { 1 }, expect = {} }", 2, "test input #1 must be a string or a table, got integer"),
        ("test { input = {}, expect = { {} } }", 2, "test expect #1 must be a string, got table"),
        ("test 'x'", 2, "test expects a table, got string"),
    ] {
        let (_dir, path) = temp_config(&format!("route {{ to = 'raw+tcp://127.0.0.1:1' }}\n{text}"));
        let (ok, _, stderr) = check(&path, &[]);
        assert!(!ok, "{text}");
        let expected = format!("{}:{line}: {error}", path.display());
        assert!(stderr.starts_with(&expected), "{text}\n  expected: {expected}\n  got: {stderr}");
    }
}

#[test]
fn tests_do_not_share_state_and_config_tests_are_timed_from_a_fixed_start() {
    let (_dir, path) = temp_config(
        r#"local seen = spout.state("n")
route { to = "raw+tcp://127.0.0.1:1", format = function (m)
  seen.n = (seen.n or 0) + 1
  return seen.n .. " " .. spout.rfc3339(m.time_ns, 3) .. " " .. m.container.name .. " " .. m.container.id:sub(1, 12)
end }
test { input = { "a", "b" }, expect = { "1 2024-01-01T00:00:00.000Z try 5b6a0bef5159", "2 2024-01-01T00:00:00.001Z try 5b6a0bef5159" } }
test { input = { { data = "c", time = "2023-06-01T00:00:00.5Z", container = { name = "x", id = "abc" } } }, expect = { "1 2023-06-01T00:00:00.500Z x abc" } }
"#,
    );
    let (ok, stdout, stderr) = check(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.ends_with("\n2 tests passed\n"), "{stdout}");
}
