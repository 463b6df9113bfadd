//! The json-file source against the real dockerd: containers whose log files luaspout reads
//! directly, fast writers whose logs rotate under the reader, a restart that switches
//! between reading files and reading the API, and the fallbacks to the API.
//!
//! The rest of the end-to-end suite runs in both modes (`tests/run.sh` runs it once with the
//! default source, files for json-file containers when run as root, and once with
//! `LUASPOUT_SOURCE=api`); these tests set the source they are about.

mod util;

use std::thread;
use std::time::Duration;

use util::numbered::*;
use util::*;

/// Long enough for 300,000 lines on a loaded 2-core machine (a debug build included).
const DRAIN: Duration = Duration::from_secs(120);

fn body(ls: &Luaspout, path: &str) -> String {
    let (status, body) = ls.get(path).unwrap_or_else(|| panic!("GET {path} answered"));
    assert_eq!(status, 200, "GET {path}");
    lossy(body)
}

/// The value of a sample of `/metrics`, by its name and labels as printed.
fn metric(ls: &Luaspout, sample: &str) -> Option<f64> {
    body(ls, "/metrics").lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The `source` that `/containers` shows for the container called `name`.
fn source_of(ls: &Luaspout, name: &str) -> Option<String> {
    let list: serde_json::Value = serde_json::from_str(&body(ls, "/containers")).expect("JSON");
    list.as_array()?.iter().find(|c| c["name"] == name).map(|c| c["source"].as_str().unwrap_or_default().to_string())
}

fn files_mode(route: &str) -> LuaspoutBuilder {
    Luaspout::builder().env("LUASPOUT_SOURCE", "files").arg(route)
}

/// 300,000 lines at full speed into a log that rotates every 2 MB and keeps 5 files: dockerd's
/// follower skips files that rotate under it (it lost two lines in three here), the file
/// reader holds every generation it has seen and looks for new ones as it goes.
#[test]
fn a_fast_writer_whose_log_rotates_every_2_mb_loses_nothing() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = files_mode(&format!("raw+tcp://{}?filter.name={name}", rx.addr())).start();
    let n = 300_000;
    let script =
        format!("sleep 1; /bin/busybox seq 1 {n} | /bin/busybox awk '{{printf \"F%07d {PAD}\\n\", $1}}'; sleep 3600");
    let c = run_named(&name, &["--log-opt", "max-size=2m", "--log-opt", "max-file=5"], &script);
    wait_for_number(&rx, "F", n, DRAIN);
    thread::sleep(Duration::from_millis(500));
    assert_once_in_order(&numbers(&rx, "F"), n);
    let log_path = c.inspect("{{.LogPath}}");
    assert!(std::path::Path::new(&format!("{log_path}.4")).exists(), "the log rotated at least 4 times");
    assert_eq!(source_of(&ls, &name).as_deref(), Some("files"));
    // A possible gap (the window rotated whole between two looks) may be reported on a starved
    // machine even when, as here, nothing was lost; the count above is the check.
    assert!(metric(&ls, "luaspout_log_rotation_gaps_total").is_some());
}

/// `/containers` and `/metrics` say where each container is read from; a driver other than
/// json-file is read through the API; entries with `attrs` (`--log-opt labels`, `tag`) read
/// the same as any.
#[test]
fn each_container_shows_its_source_and_other_drivers_stay_on_the_api() {
    let rx = TcpReceiver::start();
    let base = unique_name();
    let (file_name, local_name) = (format!("{base}-file"), format!("{base}-local"));
    let ls = files_mode(&format!("raw+tcp://{}?filter.name={base}-*", rx.addr())).start();
    let attrs = ["--label", "team=core", "--log-opt", "labels=team", "--log-opt", "tag={{.Name}}"];
    let a = run_named(&file_name, &attrs, "sleep 1; echo 'from \"the\" file'; sleep 3600");
    let b = run_named(&local_name, &["--log-driver", "local"], "sleep 1; echo from the api; sleep 3600");
    let got = rx.wait_until(ARRIVE, |b| count_newlines(b) >= 2);
    let mut lines = split_lines(&got).into_iter().map(lossy).collect::<Vec<_>>();
    lines.sort();
    assert_eq!(lines, ["from \"the\" file", "from the api"]);
    let log = std::fs::read_to_string(a.inspect("{{.LogPath}}")).expect("read the json log");
    assert!(log.contains("\"attrs\":{"), "the entry has attrs: {log}");
    assert_eq!(source_of(&ls, &file_name).as_deref(), Some("files"));
    assert_eq!(source_of(&ls, &local_name).as_deref(), Some("api"));
    assert!(metric(&ls, "luaspout_containers_reading{source=\"files\"}").is_some_and(|n| n >= 1.0));
    assert!(metric(&ls, "luaspout_containers_reading{source=\"api\"}").is_some_and(|n| n >= 1.0));
    drop(b);
}

/// The cursor keeps the line's time next to its place in the file, so a restart may switch
/// sources either way: api → files → api → files, lines logged while luaspout is down
/// included, every line arrives once.
#[test]
fn switching_sources_across_restarts_neither_loses_nor_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let rx = TcpReceiver::start();
    let name = unique_name();
    let route = format!("raw+tcp://{}?filter.name={name}", rx.addr());
    let start = |source: &str| {
        let mut ls = Luaspout::builder()
            .env("LUASPOUT_STATE", state.to_str().unwrap())
            .env("LUASPOUT_SOURCE", source)
            .arg(&route)
            .spawn();
        ls.wait_http();
        ls
    };
    let c = run_named(&name, &[], "sleep 3600");
    let mut next = 1;
    for (round, source) in ["api", "files", "api", "files"].into_iter().enumerate() {
        let mut ls = start(source);
        let (a, b) = (next, next + 199);
        emit(&c, "S", a, b);
        wait_for_number(&rx, "S", b, ARRIVE * 2);
        if round > 0 {
            assert_eq!(source_of(&ls, &name).as_deref(), Some(source), "round {round}");
        }
        assert!(ls.terminate(Duration::from_secs(10)).success());
        // Logged while luaspout is down: the next run, on the other source, delivers them.
        emit(&c, "S", b + 1, b + 100);
        next = b + 101;
    }
    let ls = start("api");
    wait_for_number(&rx, "S", next - 1, ARRIVE * 2);
    thread::sleep(SETTLE);
    assert_once_in_order(&numbers(&rx, "S"), next - 1);
    drop(ls);
}

/// A containers directory without the container's log (a wrong `LUASPOUT_CONTAINERS_DIR`, a
/// partial mount) sends that container to the API, and says so.
#[test]
fn a_log_file_that_cannot_be_opened_falls_back_to_the_api() {
    let empty = tempfile::tempdir().unwrap();
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = files_mode(&format!("raw+tcp://{}?filter.name={name}", rx.addr()))
        .env("LUASPOUT_CONTAINERS_DIR", empty.path().to_str().unwrap())
        .start();
    let _c = run_named(&name, &[], "sleep 1; echo one; echo two; sleep 3600");
    assert_eq!(settled(&rx, 2), ["one", "two"]);
    assert_eq!(source_of(&ls, &name).as_deref(), Some("api"));
    assert!(ls.stderr().contains("reading the container through the Docker API"), "{}", ls.stderr());
}

/// A directory that cannot be read at all: every container on the API, one warning.
#[test]
fn an_unreadable_containers_directory_is_one_warning_and_the_api() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = files_mode(&format!("raw+tcp://{}?filter.name={name}", rx.addr()))
        .env("LUASPOUT_CONTAINERS_DIR", "/nonexistent/containers")
        .start();
    let _c = run_named(&name, &[], "sleep 1; echo hello; sleep 3600");
    assert_eq!(settled(&rx, 1), ["hello"]);
    assert_eq!(source_of(&ls, &name).as_deref(), Some("api"));
    assert!(ls.stderr().contains("cannot read the containers directory"), "{}", ls.stderr());
}

/// `BACKLOG` with `TAIL=n` on a log that has rotated: the last `n` entries, across files.
#[test]
fn tail_reaches_back_across_rotated_files() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // 30,000 lines of about 100 bytes rotate a 1 MB log twice.
    let script = format!("/bin/busybox seq 1 30000 | /bin/busybox awk '{{printf \"T%07d {PAD}\\n\", $1}}'; sleep 3600");
    let c = run_named(&name, &["--log-opt", "max-size=1m", "--log-opt", "max-file=5"], &script);
    c.wait_logged("T0030000");
    assert!(std::path::Path::new(&format!("{}.2", c.inspect("{{.LogPath}}"))).exists());
    let _ls = files_mode(&format!("raw+tcp://{}?filter.name={name}", rx.addr()))
        .env("BACKLOG", "true")
        .env("TAIL", "15000")
        .start();
    wait_for_number(&rx, "T", 30_000, ARRIVE * 2);
    thread::sleep(SETTLE);
    let got = numbers(&rx, "T");
    assert!(got.iter().copied().eq(15_001..=30_000), "{} lines, first {:?}", got.len(), got.first());
}

/// Waits for `n` lines, then a moment more for any extra; returns them.
fn settled(rx: &TcpReceiver, n: usize) -> Vec<String> {
    rx.wait_until(ARRIVE, |b| count_newlines(b) >= n);
    thread::sleep(SETTLE);
    rx.lines()
}
