//! luaspout against the physical limit, on the real dockerd: how fast and at what CPU cost it
//! routes a container's output, next to a plain Docker API reader of the same kind of stream
//! measured in the same run; its memory when idle and with many containers; how long a reload
//! takes while lines flow.
//!
//! Every stream case runs a fresh container of the FROM-scratch busybox image that writes
//! `LINES` numbered lines of 100 bytes (`seq=00000042 xxx…`) as fast as busybox `awk` can.
//! The reader (luaspout routing to this bench's TCP listener, or `curl` on the Docker socket)
//! must deliver every line exactly once: lines lost or repeated are counted in the table, and
//! the bench exits with an error after printing it if any case lost or repeated one.
//! The rate is lines over the time from the first line received to the last. CPU is the
//! process's `utime + stime` over the case (`/proc/PID/stat`), per million lines; peak memory
//! is `VmHWM`. The `limit` rows are `curl` following the same kind of container while no
//! luaspout runs; they run first and last, and the ratio uses their mean.
//!
//! Nothing is asserted about speed: the bench prints one table. It needs dockerd (see
//! `tests/run.sh`) and takes a few minutes. `LUASPOUT_BENCH_LINES` (default 1000000) and
//! `LUASPOUT_BENCH_CONTAINERS` (default 500) make it smaller. Run: `cargo bench --bench e2e`.

#[path = "../../tests/util/mod.rs"]
mod util;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::{Luaspout, docker_ok, test_image};

/// Bytes of every generated line, `\n` included.
const LINE_BYTES: usize = 100;
/// How long a stream case may go without a new line before the missing ones count as lost.
const STALL: Duration = Duration::from_secs(10);
/// After the last expected line: time for a duplicate to show up.
const SETTLE: Duration = Duration::from_millis(500);
/// Containers of the idle-memory case.
const IDLE_CONTAINERS: usize = 20;
/// Parallel `docker run`s when starting many containers (one takes about 0.7 s here).
const STARTERS: usize = 8;

fn main() {
    let lines: usize = env_number("LUASPOUT_BENCH_LINES", 1_000_000);
    let many: usize = env_number("LUASPOUT_BENCH_CONTAINERS", 500);
    test_image();
    let tck = clock_ticks();
    let dockerd = dockerd_pid();
    println!("{}", machine());
    println!("{lines} lines of {LINE_BYTES} bytes per stream case\n");

    let mut rows = Vec::new();
    rows.push(limit(lines, tck, dockerd));
    let raw = luaspout_stream("luaspout, raw+tcp (default route)", lines, tck, dockerd, None, |rx| {
        Luaspout::builder().arg(format!("raw+tcp://{}?filter.name=lsbench-*", rx.addr())).start()
    });
    rows.push(raw);
    let lua_config = |rx: &Receiver, version: &str| {
        format!(
            r#"route {{ to = "raw+tcp://{}", match = {{ name = "lsbench-*" }},
  filter = function(m) return not m.data:find("GET /health", 1, true) end,
  format = function(m) return "{version} " .. m.container.name .. " " .. m.source .. " " .. m.data end }}
"#,
            rx.addr()
        )
    };
    rows.push(luaspout_stream("luaspout, Lua filter + format", lines, tck, dockerd, None, |rx| {
        Luaspout::builder().config(&lua_config(rx, "v1")).start()
    }));
    rows.push(luaspout_stream("luaspout, syslog+tcp (default route)", lines, tck, dockerd, None, |rx| {
        Luaspout::builder().arg(format!("syslog+tcp://{}?filter.name=lsbench-*", rx.addr())).start()
    }));
    let reload = Reload::default();
    rows.push(luaspout_stream("luaspout, Lua route, reloaded mid-stream", lines, tck, dockerd, Some(&reload), |rx| {
        let l = Luaspout::builder().config(&lua_config(rx, "v1")).start();
        *reload.next_config.lock().unwrap() = lua_config(rx, "v2");
        l
    }));
    rows.push(limit(lines, tck, dockerd));
    let memory = memory(many);

    let limit_rate = (rows[0].rate + rows[rows.len() - 1].rate) / 2.0;
    println!(
        "| reader | lines/s | of the limit | reader CPU-s / M lines | dockerd CPU-s / M lines | peak RSS | lost | repeated |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.name,
            r.rate,
            r.rate / limit_rate,
            r.cpu_per_million,
            r.dockerd_per_million,
            r.peak_kb.map_or("-".to_string(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
            r.lost,
            r.repeated,
        );
    }
    println!();
    let r = reload.result.lock().unwrap().clone().expect("the reload case ran");
    println!(
        "reload under load: routes.lua written -> generation 2 in /metrics: {:.0} ms ({:.0} ms after the {} ms debounce); \
         -> first line in the new format at the sink: {} (lines lost and repeated: its row above)",
        r.in_force.as_secs_f64() * 1e3,
        (r.in_force.saturating_sub(luaspout::config::watch::DEBOUNCE)).as_secs_f64() * 1e3,
        luaspout::config::watch::DEBOUNCE.as_millis(),
        r.first_new_line.map_or("none arrived".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
    );
    println!(
        "memory: RSS {:.1} MiB with {} containers running (idle), {:.1} MiB with {}: {:.1} KiB per container",
        memory.idle_kb as f64 / 1024.0,
        memory.idle_containers,
        memory.many_kb as f64 / 1024.0,
        memory.many_containers,
        (memory.many_kb as f64 - memory.idle_kb as f64)
            / (memory.many_containers - memory.idle_containers).max(1) as f64,
    );
    if rows.iter().any(|r| r.lost + r.repeated > 0) {
        eprintln!("bench: some case lost or repeated lines (see the table)");
        std::process::exit(1);
    }
}

/// One row of the stream table.
struct Row {
    name: String,
    rate: f64,
    cpu_per_million: f64,
    dockerd_per_million: f64,
    peak_kb: Option<u64>,
    lost: usize,
    repeated: usize,
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
fn limit(lines: usize, tck: f64, dockerd: u32) -> Row {
    let tally = Arc::new(Tally::new(lines, None));
    let writer = Fleet::run(&["--network", "none", "--name", &bench_name("limit")], &writer_cmd(lines));
    let mut curl = Command::new("curl")
        .args(["-sSN", "--unix-socket", "/var/run/docker.sock"])
        .arg(format!("http://localhost/containers/{}/logs?follow=1&stdout=1&stderr=1&timestamps=1", writer.ids[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl (apt-get install curl)");
    let pid = curl.id();
    let (cpu0, dcpu0) = (cpu_ticks(pid), cpu_ticks(dockerd));
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
    let (cpu1, dcpu1) = (cpu_ticks(pid), cpu_ticks(dockerd));
    let _ = curl.kill();
    let _ = curl.wait();
    let _ = reader.join();
    let row =
        tally.row("limit: curl on the Docker socket", lines, (cpu1 - cpu0) as f64 / tck, (dcpu1 - dcpu0) as f64 / tck);
    drop(writer);
    row
}

/// luaspout started by `start` (routing to the receiver it is given) reads a writer container.
/// With `reload`, the config is rewritten once a third of the lines arrived.
fn luaspout_stream(
    name: &str,
    lines: usize,
    tck: f64,
    dockerd: u32,
    reload: Option<&Reload>,
    start: impl FnOnce(&Receiver) -> Luaspout,
) -> Row {
    let rx = Receiver::start(lines, reload.map(|_| b"v2 ".to_vec()));
    let ls = start(&rx);
    let pid = ls.pid();
    thread::sleep(Duration::from_millis(300));
    let (cpu0, dcpu0) = (cpu_ticks(pid), cpu_ticks(dockerd));
    let writer = Fleet::run(&["--network", "none", "--name", &bench_name("stream")], &writer_cmd(lines));
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
    let (cpu1, dcpu1) = (cpu_ticks(pid), cpu_ticks(dockerd));
    let peak = status_kb(pid, "VmHWM");
    let row = rx.tally.row(name, lines, (cpu1 - cpu0) as f64 / tck, (dcpu1 - dcpu0) as f64 / tck);
    drop(writer);
    drop(ls);
    Row { peak_kb: Some(peak), ..row }
}

/// What the memory cases measured.
struct Memory {
    idle_containers: usize,
    idle_kb: u64,
    many_containers: usize,
    many_kb: u64,
}

/// RSS of a luaspout that follows idle containers: [`IDLE_CONTAINERS`] of them, then `many`.
/// Containers of other users of this dockerd count too: the totals say how many ran.
fn memory(many: usize) -> Memory {
    let rx = Receiver::start(0, None);
    let idle_cmd = "sleep 100000";
    let mut fleet = Fleet::start_many("idle", IDLE_CONTAINERS, idle_cmd);
    let ls = Luaspout::builder().arg(format!("raw+tcp://{}?filter.name=lsbench-*", rx.addr())).start();
    let idle_containers = wait_attached(&ls);
    thread::sleep(Duration::from_secs(2));
    let idle_kb = status_kb(ls.pid(), "VmRSS");
    fleet.ids.extend(Fleet::start_many("many", many.saturating_sub(IDLE_CONTAINERS), idle_cmd).take());
    let many_containers = wait_attached(&ls);
    thread::sleep(Duration::from_secs(2));
    let many_kb = status_kb(ls.pid(), "VmRSS");
    drop(ls);
    drop(fleet);
    Memory { idle_containers, idle_kb, many_containers, many_kb }
}

/// Waits until luaspout holds a Docker connection per running container (its sockets, less
/// the HTTP listener and the events stream, reach the count of running containers)
/// and that count is steady for a second; returns the count.
fn wait_attached(ls: &Luaspout) -> usize {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut steady_since = Instant::now();
    let mut last = (0, 0);
    loop {
        let running = docker_ok(&["ps", "-q"]).lines().count();
        let sockets = std::fs::read_dir(format!("/proc/{}/fd", ls.pid()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                    .count()
            })
            .unwrap_or(0);
        if (running, sockets) != last {
            last = (running, sockets);
            steady_since = Instant::now();
        }
        if sockets >= running + 2 && steady_since.elapsed() >= Duration::from_secs(1) {
            return running;
        }
        assert!(Instant::now() < deadline, "luaspout did not attach to {running} containers ({sockets} sockets)");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Containers of this bench, removed (all at once) on drop, panics included.
struct Fleet {
    ids: Vec<String>,
}

impl Fleet {
    /// `docker run -d ARGS IMAGE sh -c CMD`.
    fn run(args: &[&str], cmd: &str) -> Fleet {
        let mut argv = vec!["run", "-d"];
        argv.extend(args);
        argv.extend([test_image(), "sh", "-c", cmd]);
        Fleet { ids: vec![docker_ok(&argv)] }
    }

    /// `n` containers running `cmd`, started [`STARTERS`] at a time.
    fn start_many(what: &str, n: usize, cmd: &str) -> Fleet {
        let fleet = Arc::new(Mutex::new(Fleet { ids: Vec::new() }));
        let next = Arc::new(Mutex::new(0usize));
        let workers: Vec<_> = (0..STARTERS)
            .map(|_| {
                let (fleet, next, what, cmd) = (fleet.clone(), next.clone(), what.to_string(), cmd.to_string());
                thread::spawn(move || {
                    loop {
                        {
                            let mut i = next.lock().unwrap();
                            if *i >= n {
                                return;
                            }
                            *i += 1;
                        }
                        let one = Fleet::run(&["--network", "none", "--name", &bench_name(&what)], &cmd);
                        fleet.lock().unwrap().ids.extend(one.take());
                    }
                })
            })
            .collect();
        let mut failed = false;
        for w in workers {
            failed |= w.join().is_err();
        }
        let fleet = std::mem::replace(&mut *fleet.lock().unwrap(), Fleet { ids: Vec::new() });
        assert!(!failed, "starting {n} containers failed");
        fleet
    }

    /// The IDs, which the caller now removes.
    fn take(mut self) -> Vec<String> {
        std::mem::take(&mut self.ids)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for chunk in self.ids.chunks(100) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(chunk)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A name this bench's routes select (`lsbench-*`), unique in this run.
fn bench_name(what: &str) -> String {
    format!("lsbench-{what}-{}", util::random_hex(10))
}

/// The writer's shell command: wait a second (the reader attaches), then write `lines` lines
/// of [`LINE_BYTES`] bytes, `seq=%08d ` and `x`s.
fn writer_cmd(lines: usize) -> String {
    let pad = LINE_BYTES - "seq=00000000 \n".len();
    format!(
        r#"sleep 1; awk 'BEGIN {{ pad = sprintf("%{pad}s", ""); gsub(/ /, "x", pad); for (i = 0; i < {lines}; i++) printf "seq=%08d %s\n", i, pad }}'"#
    )
}

/// Counts the lines a reader delivered, by their `seq=` number.
struct Tally {
    state: Mutex<TallyState>,
    cond: Condvar,
    /// Lines starting with this prefix are counted apart (the reload case's new format).
    mark: Option<Vec<u8>>,
}

struct TallyState {
    /// Times each expected line arrived.
    seen: Vec<u8>,
    lines: usize,
    repeated: usize,
    /// Lines without a `seq=` number below the expected count.
    foreign: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    first_marked: Option<Instant>,
}

impl Tally {
    fn new(expected: usize, mark: Option<Vec<u8>>) -> Tally {
        Tally {
            state: Mutex::new(TallyState {
                seen: vec![0; expected],
                lines: 0,
                repeated: 0,
                foreign: 0,
                first: None,
                last: None,
                first_marked: None,
            }),
            cond: Condvar::new(),
            mark,
        }
    }

    /// Counts the complete lines at the start of `data`; returns how many bytes it used.
    fn take_lines(&self, data: &[u8]) -> usize {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end];
            used += end + 1;
            s.first.get_or_insert(now);
            s.last = Some(now);
            if self.mark.as_ref().is_some_and(|m| line.starts_with(m)) && s.first_marked.is_none() {
                s.first_marked = Some(now);
            }
            match seq_of(line).filter(|&n| n < s.seen.len()) {
                Some(n) => {
                    s.seen[n] += 1;
                    if s.seen[n] == 1 {
                        s.lines += 1;
                    } else {
                        s.repeated += 1;
                    }
                }
                None => s.foreign += 1,
            }
        }
        drop(s);
        self.cond.notify_all();
        used
    }

    /// Waits until `n` distinct lines arrived, or none arrived for [`STALL`] (the rest are lost).
    fn wait(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        let mut progress = (s.lines, Instant::now());
        while s.lines < n && progress.1.elapsed() < STALL {
            s = self.cond.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
            if s.lines != progress.0 {
                progress = (s.lines, Instant::now());
            }
        }
    }

    /// The row of a finished case: lines that never arrived are lost.
    fn row(&self, name: &str, lines: usize, cpu_s: f64, dockerd_s: f64) -> Row {
        thread::sleep(SETTLE);
        let s = self.state.lock().unwrap();
        assert_eq!(s.foreign, 0, "{name}: lines without a seq= number");
        assert!(s.lines > 1, "{name}: no lines arrived");
        let span = s.last.unwrap() - s.first.unwrap();
        let million = lines as f64 / 1e6;
        eprintln!("bench: {name}: {} of {lines} lines in {span:.2?}, {cpu_s:.2} CPU-s", s.lines);
        Row {
            name: name.to_string(),
            rate: (s.lines - 1) as f64 / span.as_secs_f64(),
            lost: lines - s.lines,
            repeated: s.repeated,
            cpu_per_million: cpu_s / million,
            dockerd_per_million: dockerd_s / million,
            peak_kb: None,
        }
    }
}

/// The number after `seq=` in a line.
fn seq_of(line: &[u8]) -> Option<usize> {
    let at = line.windows(4).position(|w| w == b"seq=")? + 4;
    let digits = line.get(at..at + 8)?;
    digits.iter().try_fold(0usize, |n, &d| d.is_ascii_digit().then(|| n * 10 + (d - b'0') as usize))
}

/// Docker's multiplexed stream (8-byte header: stream, 3 zero bytes, big-endian length),
/// fed in arbitrary chunks; payloads go to the tally.
#[derive(Default)]
struct FrameParser {
    buf: Vec<u8>,
    /// Payload bytes of the frames so far that did not end a line yet.
    payload: Vec<u8>,
}

impl FrameParser {
    fn push(&mut self, chunk: &[u8], tally: &Tally) {
        self.buf.extend_from_slice(chunk);
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let len = u32::from_be_bytes(self.buf[at + 4..at + 8].try_into().unwrap()) as usize;
            if self.buf.len() - at - 8 < len {
                break;
            }
            self.payload.extend_from_slice(&self.buf[at + 8..at + 8 + len]);
            at += 8 + len;
        }
        self.buf.drain(..at);
        let used = tally.take_lines(&self.payload);
        self.payload.drain(..used);
    }
}

/// A TCP sink on 127.0.0.1 that tallies the lines of every connection.
struct Receiver {
    port: u16,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(expected: usize, mark: Option<Vec<u8>>) -> Receiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let tally = Arc::new(Tally::new(expected, mark));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (tally.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let (t, st) = (t.clone(), st.clone());
                        thread::spawn(move || {
                            stream.set_nonblocking(false).ok();
                            stream.set_read_timeout(Some(Duration::from_millis(200))).ok();
                            let mut buf = vec![0u8; 256 * 1024];
                            let mut filled = 0;
                            while !st.load(Ordering::Relaxed) {
                                match stream.read(&mut buf[filled..]) {
                                    Ok(0) => return,
                                    Ok(n) => {
                                        filled += n;
                                        let used = t.take_lines(&buf[..filled]);
                                        buf.copy_within(used..filled, 0);
                                        filled -= used;
                                        if filled == buf.len() {
                                            buf.resize(buf.len() * 2, 0);
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { port, tally, stop }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("a command in parentheses") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().expect("run getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK is a number")
}

/// dockerd's process ID, to measure what serving the logs costs it.
fn dockerd_pid() -> u32 {
    let out = Command::new("pidof").arg("dockerd").output().expect("run pidof");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("dockerd is running on this machine")
}

/// The machine, as the README's table describes it.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        cpuinfo.lines().find_map(|l| l.strip_prefix(k)?.trim_start().strip_prefix(':').map(str::trim)).unwrap_or("?")
    };
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "machine: {cpus} CPUs, {} (family {} model {}), {:.0} GiB, dockerd {}, kernel {}",
        field("model name"),
        field("cpu family"),
        field("model\t"),
        mem_kb as f64 / (1 << 20) as f64,
        docker_ok(&["version", "--format", "{{.Server.Version}}"]),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    )
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")))
}
