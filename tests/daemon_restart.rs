//! luaspout across a restart of dockerd itself: it keeps running, says so on `/health`, and
//! when the daemon is back it reattaches and delivers every line of every run exactly once.
//!
//! This test stops the Docker daemon, so it lives in a test binary of its own: cargo runs test
//! binaries one after another, so no other test's containers are running meanwhile. It needs
//! to know how to start dockerd again, which `tests/run.sh` does (it started it), and tells
//! the test with `LUASPOUT_TEST_RESTART_DOCKERD=1`.

mod util;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Where `tests/run.sh` sends dockerd's output; the restarted daemon appends to it.
const DOCKERD_LOG: &str = "/tmp/luaspout-dockerd.log";

fn dockerd_running() -> bool {
    Command::new("pgrep").args(["-x", "dockerd"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn stop_dockerd() {
    assert!(Command::new("pkill").args(["-x", "dockerd"]).status().unwrap().success(), "no dockerd to stop");
    let deadline = Instant::now() + Duration::from_secs(60);
    while dockerd_running() {
        assert!(Instant::now() < deadline, "dockerd did not stop within 60 s");
        thread::sleep(Duration::from_millis(200));
    }
}

// dockerd must outlive this test, as the one tests/run.sh started would: it is never waited for.
#[allow(clippy::zombie_processes)]
fn start_dockerd() {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(DOCKERD_LOG).unwrap();
    Command::new("setsid")
        .arg("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker_available() {
        assert!(Instant::now() < deadline, "dockerd did not come back within 60 s; see {DOCKERD_LOG}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_line_arrives_once_across_a_dockerd_restart() {
    if std::env::var_os("LUASPOUT_TEST_RESTART_DOCKERD").is_none() {
        eprintln!("not restarting dockerd: run through tests/run.sh (LUASPOUT_TEST_RESTART_DOCKERD=1)");
        return;
    }
    let rx = TcpReceiver::start();
    let name = unique_name();
    let mut ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={name}", rx.addr()));
    // Each run of the container numbers itself (the counter file survives restarts) and its lines.
    let c = run_named(
        &name,
        &["--restart=always", "--stop-timeout=1"],
        "r=$(cat /runs 2>/dev/null || echo 0); r=$((r+1)); echo $r > /runs; i=0; \
         while true; do i=$((i+1)); echo \"run $r line $i\"; sleep 0.1; done",
    );
    rx.wait_until(ARRIVE, |b| lossy(b).contains("run 1 line 10\n"));

    stop_dockerd();
    ls.assert_running();
    let (status, body) = ls.get("/health").expect("/health answers while dockerd is down");
    assert_eq!(status, 503, "{}", lossy(&body));
    start_dockerd();

    // The container comes back by its restart policy; its new run is read too.
    rx.wait_until(ARRIVE, |b| lossy(b).contains("run 2 line 10\n"));
    docker_ok(&["update", "--restart=no", c.name()]);
    docker_ok(&["kill", c.name()]);
    c.wait_exited();
    thread::sleep(SETTLE);
    ls.assert_running();
    assert_eq!(ls.get("/health").map(|(s, _)| s), Some(200));

    let (stdout, _) = c.logs();
    let expected = lossy(&stdout);
    assert!(expected.contains("run 2 line 10\n"));
    assert_eq!(lossy(rx.contents()), expected, "the sink got exactly the container's log");
}
