//! What the bench reads off the host: process CPU and memory from `/proc`, dockerd's PID,
//! the machine line, and the bench's containers (started, timed, removed).

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::{self, docker_ok, test_image};

/// Bytes of every generated line, `\n` included.
pub const LINE_BYTES: usize = 100;
/// Parallel `docker run`s when starting many containers (one takes about 0.7 s here).
const STARTERS: usize = 8;

/// `utime + stime` of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("a command in parentheses") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits (up to 10 s) until `pid` spends at most one clock tick in half a second, 2 % of a
/// core. dockerd goes on working after a case ends (collecting its garbage, closing the
/// finished container's log); that belongs to the case before, not to the next one's span.
pub fn settle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = cpu_ticks(pid);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        let now = cpu_ticks(pid);
        if now - before <= 1 {
            return;
        }
        before = now;
    }
}

/// CPU seconds of a set of processes, read together at the start and end of a span.
pub struct CpuSpan {
    pids: Vec<u32>,
    start: Vec<u64>,
    tck: f64,
}

impl CpuSpan {
    pub fn start(pids: &[u32]) -> CpuSpan {
        CpuSpan { pids: pids.to_vec(), start: pids.iter().map(|&p| cpu_ticks(p)).collect(), tck: clock_ticks() }
    }

    /// Each process's CPU seconds since [`CpuSpan::start`], in the order given there.
    pub fn end(&self) -> Vec<f64> {
        self.pids.iter().zip(&self.start).map(|(&p, &t0)| (cpu_ticks(p) - t0) as f64 / self.tck).collect()
    }
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> u64 {
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

/// dockerd's process ID, to measure what writing and serving the logs costs it.
pub fn dockerd_pid() -> u32 {
    let out = Command::new("pidof").arg("dockerd").output().expect("run pidof");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("dockerd is running on this machine")
}

/// The luaspout binary under test: `LUASPOUT_BENCH_BIN` (a shipped build, such as the image's)
/// if set, else the build of this tree cargo made for the bench; it returns the report's line
/// about it (path, size, how it links, glibc's settings if any are given).
pub fn choose_luaspout() -> String {
    let origin = match std::env::var("LUASPOUT_BENCH_BIN") {
        Ok(path) => {
            util::use_luaspout_bin(path);
            "LUASPOUT_BENCH_BIN"
        }
        Err(_) => "this tree, built by cargo bench; LUASPOUT_BENCH_BIN names another",
    };
    let path = util::luaspout_bin();
    let size = std::fs::metadata(path).unwrap_or_else(|e| panic!("luaspout under test, {path}: {e}")).len();
    let ldd = Command::new("ldd").arg(path).output().expect("run ldd");
    let dynamic = String::from_utf8_lossy(&ldd.stdout).split_whitespace().any(|w| w.starts_with('/'));
    let linking = if dynamic { "dynamically linked" } else { "statically linked" };
    // Passed on to luaspout (the image sets it: see the Dockerfile).
    let tunables = match std::env::var("GLIBC_TUNABLES") {
        Ok(t) => format!(", GLIBC_TUNABLES={t}"),
        Err(_) => String::new(),
    };
    format!("luaspout: {path} ({origin}), {:.1} MB, {linking}{tunables}", size as f64 / 1e6)
}

/// The machine, as docs/performance.md describes it.
pub fn machine() -> String {
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

/// Containers of this bench, removed (all at once) on drop, panics included.
pub struct Fleet {
    pub ids: Vec<String>,
}

impl Fleet {
    /// `docker run -d ARGS IMAGE sh -c CMD`.
    pub fn run(args: &[&str], cmd: &str) -> Fleet {
        let mut argv = vec!["run", "-d"];
        argv.extend(args);
        argv.extend([test_image(), "sh", "-c", cmd]);
        Fleet { ids: vec![docker_ok(&argv)] }
    }

    /// A writer of `lines` numbered lines ([`writer_cmd`]), named after the case `what`, with
    /// no network and the json-file options `log_opts`.
    pub fn writer(what: &str, lines: usize, log_opts: &[&str]) -> Fleet {
        let name = bench_name(what);
        let mut args = vec!["--network", "none", "--name", &name];
        args.extend(log_opts);
        Fleet::run(&args, &writer_cmd(lines))
    }

    /// `n` containers running `cmd`, started [`STARTERS`] at a time.
    pub fn start_many(what: &str, n: usize, cmd: &str) -> Fleet {
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
    pub fn take(mut self) -> Vec<String> {
        std::mem::take(&mut self.ids)
    }

    /// When the (first) container's process exited, by dockerd's clock (`State.FinishedAt`):
    /// the writer's last line was written just before. Waits up to 30 s for the exit.
    pub fn finished_at(&self) -> Option<SystemTime> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = self.ids.first()?;
        loop {
            let state = docker_ok(&["inspect", "--format", "{{.State.Running}} {{.State.FinishedAt}}", id]);
            if let Some(finished) = state.strip_prefix("false ") {
                return rfc3339_to_time(finished);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
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

/// An RFC 3339 time as dockerd writes it (`2026-12-06T18:20:01.123456789Z`), through GNU
/// `date`, which keeps the nanoseconds.
fn rfc3339_to_time(s: &str) -> Option<SystemTime> {
    let out = Command::new("date").args(["-u", "-d", s.trim(), "+%s%N"]).output().ok()?;
    let ns: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(ns))
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
