//! luaspout against the physical limit, on the real dockerd, in one run side by side: a bare
//! `curl` follow reader of the Docker API; luaspout reading through the API
//! (`LUASPOUT_SOURCE=api`) and from the json-file logs (`LUASPOUT_SOURCE=files`), raw and with
//! a Lua filter + format; a writer whose log rotates fast (in both modes); the CPU dockerd
//! spends over each case; luaspout's memory idle and with many containers; how long a reload
//! takes while lines flow. It ends with issue #17's targets as ratios of this run.
//!
//! Every stream case runs a fresh container of the FROM-scratch busybox image that writes
//! numbered lines of 100 bytes (`seq=00000042 xxx…`) as fast as busybox `awk` can. The reader
//! (luaspout routing to this bench's TCP listener, or `curl` on the Docker socket) must deliver
//! every line exactly once: lines lost or repeated are counted in the table, and the bench
//! exits with an error after printing it if a case lost or repeated one (except the API under
//! rotation, which is known to lose lines and is only reported). The rate is lines over the
//! time from the first line received to the last. CPU is the process's `utime + stime` over
//! the case (`/proc/PID/stat`), per million lines, for the reader and for dockerd; peak memory
//! is `VmHWM`. The lag is the last line's arrival at the listener minus the container's exit
//! (`State.FinishedAt`). The `limit` rows are `curl` following the same kind of container while
//! no luaspout runs; they run first and last, and the ratios use their mean. The `alone` row is
//! the same writer with no reader at all: what dockerd spends writing the json-file log, the
//! floor under every `reader + dockerd` figure on this host.
//!
//! Each luaspout case sets `LUASPOUT_SOURCE` and checks, in `GET /containers`, the `source`
//! luaspout reports for the writer (`files` or `api`; absent means a build without the
//! json-file source, which reads through the API). A files case read through the API is marked
//! in the table and its targets are "not measured"; it fails the run only when luaspout does
//! report a source.
//!
//! Nothing is asserted about speed. It needs dockerd (see `tests/run.sh`) and takes a few
//! minutes. `LUASPOUT_BENCH_LINES` (default 1000000), `LUASPOUT_BENCH_ROTATION_LINES` (default
//! 300000) and `LUASPOUT_BENCH_CONTAINERS` (default 500) make it smaller;
//! `LUASPOUT_BENCH_CASES` picks cases (comma-separated, default all: `limit,alone,api,files,
//! syslog,reload,rotation,memory`). `LUASPOUT_BENCH_BIN` names the luaspout binary to measure (the
//! image's, say) instead of the one cargo builds for the bench; the output says which ran.
//! Run: `cargo bench --bench e2e`.

#[path = "../../tests/util/mod.rs"]
mod util;

mod host;
mod report;
mod tally;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use host::{CpuSpan, Fleet, LINE_BYTES, dockerd_pid, status_kb};
use report::{Kind, Memory, Read, Row, Source};
use tally::{FrameParser, Receiver, Tally};
use util::{Luaspout, LuaspoutBuilder, docker_ok, test_image};

/// Containers of the idle-memory case.
pub const IDLE_CONTAINERS: usize = 20;
/// The rotation window of issue #17: dockerd keeps at most 5 files of 2 MB (about 60,000 of the
/// bench's lines, with json-file's 70 bytes a line around them), so a reader that falls that
/// far behind loses lines.
const ROTATION_OPTS: &[&str] = &["--log-opt", "max-size=2m", "--log-opt", "max-file=5"];
/// Every case, in the order they run (`limit` runs first and last).
const CASES: &[&str] = &["limit", "alone", "api", "files", "syslog", "reload", "rotation", "memory"];

fn main() {
    let lines: usize = env_number("LUASPOUT_BENCH_LINES", 1_000_000);
    let rotation_lines: usize = env_number("LUASPOUT_BENCH_ROTATION_LINES", 300_000);
    let many: usize = env_number("LUASPOUT_BENCH_CONTAINERS", 500);
    let cases = chosen_cases();
    let run = |case: &str| cases.iter().any(|c| c == case);
    let luaspout = host::choose_luaspout();
    test_image();
    let dockerd = dockerd_pid();
    println!("{}", host::machine());
    println!("{luaspout}");
    println!("{lines} lines of {LINE_BYTES} bytes per stream case, {rotation_lines} in the rotation cases\n");

    let raw = |rx: &Receiver| Luaspout::builder().arg(format!("raw+tcp://{}?filter.name=lsbench-*", rx.addr()));
    let lua = |rx: &Receiver| Luaspout::builder().config(&lua_config(rx, "v1"));
    let stream =
        |name: &str, kind: Kind, source: Source| Stream { name: name.into(), kind, source, lines, log_opts: &[] };

    let mut rows = Vec::new();
    if run("limit") {
        rows.push(limit(lines, dockerd));
    }
    if run("alone") {
        rows.push(alone(lines, dockerd));
    }
    for source in [Source::Api, Source::Files] {
        if run(source.env()) {
            let mode = source.env();
            rows.push(luaspout_stream(stream(&format!("{mode}, raw+tcp"), Kind::Raw, source), dockerd, None, raw));
            rows.push(luaspout_stream(
                stream(&format!("{mode}, Lua filter + format"), Kind::Lua, source),
                dockerd,
                None,
                lua,
            ));
        }
    }
    if run("syslog") {
        let syslog =
            |rx: &Receiver| Luaspout::builder().arg(format!("syslog+tcp://{}?filter.name=lsbench-*", rx.addr()));
        rows.push(luaspout_stream(stream("api, syslog+tcp", Kind::Syslog, Source::Api), dockerd, None, syslog));
    }
    let reload = Reload::default();
    if run("reload") {
        let case = stream("files, Lua route, reloaded mid-stream", Kind::Reload, Source::Files);
        rows.push(luaspout_stream(case, dockerd, Some(&reload), |rx| {
            *reload.next_config.lock().unwrap() = lua_config(rx, "v2");
            lua(rx)
        }));
    }
    if run("rotation") {
        for source in [Source::Api, Source::Files] {
            let name = format!("{}, raw+tcp, rotating log (2m × 5)", source.env());
            let case = Stream { name, kind: Kind::Rotation, source, lines: rotation_lines, log_opts: ROTATION_OPTS };
            rows.push(luaspout_stream(case, dockerd, None, raw));
        }
    }
    if run("limit") {
        rows.push(limit(lines, dockerd));
    }
    let memory = run("memory").then(|| memory(many, Source::Files));

    println!("{}", report::table(&rows, lines));
    if let Some(r) = reload.result.lock().unwrap().clone() {
        println!(
            "reload under load: routes.lua written -> generation 2 in /metrics: {:.0} ms ({:.0} ms after the {} ms \
             debounce); -> first line in the new format at the sink: {} (lines lost and repeated: its row above)\n",
            r.in_force.as_secs_f64() * 1e3,
            (r.in_force.saturating_sub(luaspout::config::watch::DEBOUNCE)).as_secs_f64() * 1e3,
            luaspout::config::watch::DEBOUNCE.as_millis(),
            r.first_new_line.map_or("none arrived".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
        );
    }
    if let Some(m) = &memory {
        println!("{}\n", report::memory(m));
    }
    println!("{}", report::targets(&rows, memory.as_ref(), lines));
    if report::failures(&rows) {
        eprintln!("bench: failed (see above)");
        std::process::exit(1);
    }
}

/// `LUASPOUT_BENCH_CASES`, checked against [`CASES`].
fn chosen_cases() -> Vec<String> {
    let Ok(list) = std::env::var("LUASPOUT_BENCH_CASES") else {
        return CASES.iter().map(|c| c.to_string()).collect();
    };
    let chosen: Vec<String> = list.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
    for c in &chosen {
        assert!(CASES.contains(&c.as_str()), "LUASPOUT_BENCH_CASES: unknown case {c:?} (cases: {})", CASES.join(","));
    }
    chosen
}

/// The Lua route: a filter that passes every line and a format, `VERSION name source data`.
fn lua_config(rx: &Receiver, version: &str) -> String {
    format!(
        r#"route {{ to = "raw+tcp://{}", match = {{ name = "lsbench-*" }},
  filter = function(m) return not m.data:find("GET /health", 1, true) end,
  format = function(m) return "{version} " .. m.container.name .. " " .. m.source .. " " .. m.data end }}
"#,
        rx.addr()
    )
}

/// What the reload case measured.
#[derive(Clone)]
struct ReloadResult {
    /// From writing the new routes.lua to `/metrics` showing generation 2.
    in_force: Duration,
    /// From writing it to the first line formatted by the new config arriving, if one did.
    first_new_line: Option<Duration>,
}

/// The reload case's new config (set once the receiver's address is known) and its result.
#[derive(Default)]
struct Reload {
    next_config: Mutex<String>,
    result: Mutex<Option<ReloadResult>>,
}

/// The limit: `curl` following a container's log on the Docker socket, as any API client
/// does (`follow=1`, `timestamps=1`, both streams), with this bench parsing the frames.
fn limit(lines: usize, dockerd: u32) -> Row {
    let tally = Arc::new(Tally::new(lines, None));
    host::settle(dockerd);
    let writer = Fleet::writer("limit", lines, &[]);
    let mut curl = Command::new("curl")
        .args(["-sSN", "--unix-socket", "/var/run/docker.sock"])
        .arg(format!("http://localhost/containers/{}/logs?follow=1&stdout=1&stderr=1&timestamps=1", writer.ids[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl (apt-get install curl)");
    let cpu = CpuSpan::start(&[curl.id(), dockerd]);
    let mut out = curl.stdout.take().expect("curl's stdout");
    let t = tally.clone();
    let reader = thread::spawn(move || {
        let mut frames = FrameParser::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => frames.push(&buf[..n], &t),
            }
        }
    });
    tally.wait(lines);
    let spent = cpu.end();
    let finished = writer.finished_at();
    let _ = curl.kill();
    let _ = curl.wait();
    let _ = reader.join();
    let name = "limit: curl on the Docker socket";
    let d = tally.finish(name, lines);
    let million = lines as f64 / 1e6;
    Row {
        name: name.into(),
        kind: Kind::Limit,
        source: None,
        read: None,
        lines,
        rate: d.rate,
        reader_cpu: spent[0] / million,
        dockerd_cpu: spent[1] / million,
        peak_kb: None,
        lag: lag(d.last_wall, finished),
        lost: d.lost,
        repeated: d.repeated,
    }
}

/// The writer with no reader: dockerd's CPU from the container's start to its exit, which is
/// what writing the json-file log costs it (no `docker logs`, no luaspout, no attached client).
fn alone(lines: usize, dockerd: u32) -> Row {
    host::settle(dockerd);
    let cpu = CpuSpan::start(&[dockerd]);
    let writer = Fleet::writer("alone", lines, &[]);
    let finished = writer.finished_at();
    let spent = cpu.end();
    assert!(finished.is_some(), "the writer of the `alone` case did not exit within 30 s");
    Row {
        name: "alone: the writer, no reader".into(),
        kind: Kind::Alone,
        source: None,
        read: None,
        lines,
        rate: f64::NAN,
        reader_cpu: 0.0,
        dockerd_cpu: spent[0] / (lines as f64 / 1e6),
        peak_kb: None,
        lag: None,
        lost: 0,
        repeated: 0,
    }
}

/// One luaspout stream case.
struct Stream {
    name: String,
    kind: Kind,
    source: Source,
    lines: usize,
    /// `docker run` options of the writer (its log rotation).
    log_opts: &'static [&'static str],
}

/// luaspout, configured by `builder` (routing to the receiver it is given) with the case's
/// `LUASPOUT_SOURCE`, reads a writer container. With `reload`, the config is rewritten once a
/// third of the lines arrived.
fn luaspout_stream(
    case: Stream,
    dockerd: u32,
    reload: Option<&Reload>,
    builder: impl FnOnce(&Receiver) -> LuaspoutBuilder,
) -> Row {
    let lines = case.lines;
    let rx = Receiver::start(lines, reload.map(|_| b"v2 ".to_vec()));
    let ls = builder(&rx).env("LUASPOUT_SOURCE", case.source.env()).start();
    thread::sleep(Duration::from_millis(300));
    host::settle(dockerd);
    let cpu = CpuSpan::start(&[ls.pid(), dockerd]);
    let writer = Fleet::writer("stream", lines, case.log_opts);
    rx.tally.wait(1);
    let read = source_read(&ls, &writer.ids[0]);
    if let Some(reload) = reload {
        rx.tally.wait(lines / 3);
        let written = Instant::now();
        let path = ls.config_path().expect("a config file");
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, reload.next_config.lock().unwrap().as_bytes()).expect("write the new config");
        std::fs::rename(&tmp, path).expect("replace routes.lua");
        let in_force = loop {
            if metric(&ls, "luaspout_config_generation") == Some(2) {
                break written.elapsed();
            }
            assert!(written.elapsed() < Duration::from_secs(10), "the new config never came into force");
            thread::sleep(Duration::from_millis(1));
        };
        rx.tally.wait(lines);
        let first = rx.tally.state.lock().unwrap().first_marked;
        *reload.result.lock().unwrap() = Some(ReloadResult { in_force, first_new_line: first.map(|f| f - written) });
    }
    rx.tally.wait(lines);
    let spent = cpu.end();
    let peak = status_kb(ls.pid(), "VmHWM");
    let finished = writer.finished_at();
    let d = rx.tally.finish(&case.name, lines);
    drop(writer);
    drop(ls);
    let million = lines as f64 / 1e6;
    Row {
        name: case.name,
        kind: case.kind,
        source: Some(case.source),
        read: Some(read),
        lines,
        rate: d.rate,
        reader_cpu: spent[0] / million,
        dockerd_cpu: spent[1] / million,
        peak_kb: Some(peak),
        lag: lag(d.last_wall, finished),
        lost: d.lost,
        repeated: d.repeated,
    }
}

/// Seconds from the container's exit to the last line at the reader (negative: before it).
fn lag(last_line: SystemTime, finished: Option<SystemTime>) -> Option<f64> {
    let finished = finished?;
    Some(match last_line.duration_since(finished) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

/// How luaspout reads the container `id`, from its `GET /containers` (polled for up to 2 s,
/// until the container is listed).
fn source_read(ls: &Luaspout, id: &str) -> Read {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let listed = ls
            .get("/containers")
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .and_then(|list| list.as_array()?.iter().find(|c| c["id"].as_str() == Some(id)).cloned());
        if let Some(c) = listed {
            return match c.get("source").and_then(|s| s.as_str()) {
                Some("files") => Read::Files,
                Some(_) => Read::Api,
                None => Read::Unreported,
            };
        }
        if Instant::now() > deadline {
            return Read::NotListed;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// RSS of a luaspout reading with `source`: 3 s after it answers `/health` with no bench
/// container running, then following [`IDLE_CONTAINERS`] idle containers (`sleep`), then `many`
/// (when more).
/// Containers of other users of this dockerd count too: the totals say how many ran.
fn memory(many: usize, source: Source) -> Memory {
    let rx = Receiver::start(0, None);
    let ls = Luaspout::builder()
        .arg(format!("raw+tcp://{}?filter.name=lsbench-*", rx.addr()))
        .env("LUASPOUT_SOURCE", source.env())
        .start();
    thread::sleep(Duration::from_secs(3));
    let idle_kb = status_kb(ls.pid(), "VmRSS");
    let idle_running = docker_ok(&["ps", "-q"]).lines().count();
    let idle_cmd = "sleep 100000";
    let mut fleet = Fleet::start_many("idle", IDLE_CONTAINERS.min(many), idle_cmd);
    let few_containers = wait_attached(&ls);
    thread::sleep(Duration::from_secs(2));
    let few_kb = status_kb(ls.pid(), "VmRSS");
    let mut many_containers = few_containers;
    let mut many_kb = few_kb;
    if many > IDLE_CONTAINERS {
        fleet.ids.extend(Fleet::start_many("many", many - IDLE_CONTAINERS, idle_cmd).take());
        many_containers = wait_attached(&ls);
        thread::sleep(Duration::from_secs(2));
        many_kb = status_kb(ls.pid(), "VmRSS");
    }
    drop(ls);
    drop(fleet);
    Memory { idle_kb, idle_running, source, few_containers, few_kb, many_containers, many_kb }
}

/// Waits until luaspout holds a Docker connection or a json-file log open per running
/// container (its sockets and `-json.log` files, less the HTTP listener and the events stream,
/// reach the count of running containers) and that count is steady for a second; returns the
/// count. After 2 minutes it warns and goes on (a files source may not hold every file open).
fn wait_attached(ls: &Luaspout) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut steady_since = Instant::now();
    let mut last = (0, 0);
    loop {
        let running = docker_ok(&["ps", "-q"]).lines().count();
        let held = std::fs::read_dir(format!("/proc/{}/fd", ls.pid()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|l| {
                        let l = l.to_string_lossy();
                        l.starts_with("socket:") || l.ends_with("-json.log")
                    })
                    .count()
            })
            .unwrap_or(0);
        if (running, held) != last {
            last = (running, held);
            steady_since = Instant::now();
        }
        if held >= running + 2 && steady_since.elapsed() >= Duration::from_secs(1) {
            return running;
        }
        if Instant::now() > deadline {
            eprintln!(
                "bench: warning: luaspout holds {held} sockets and logs for {running} containers; measuring anyway"
            );
            return running;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A gauge or counter without labels from luaspout's `/metrics`.
fn metric(ls: &Luaspout, name: &str) -> Option<u64> {
    let (status, body) = ls.get("/metrics")?;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")))
}
