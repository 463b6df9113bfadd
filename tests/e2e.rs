//! End-to-end tests: the real `luaspout` binary, the real dockerd, real containers (busybox
//! `FROM scratch`), and real TCP/UDP listeners and rsyslogd on loopback. Each test asserts the
//! exact bytes or lines that arrive.
//!
//! Tests run in parallel and every luaspout attaches to every container on the host, so each
//! test has its own luaspout, its own receivers, and routes that select only its own containers
//! (`filter.name` on a unique `lstest-<random>` name, or a unique label). Containers are started
//! after luaspout answers `/health`, so "from now" reading still sees them whole.
//!
//! Run them with `bash tests/run.sh` (installs and starts Docker if needed) or
//! `cargo test --release --test e2e` when dockerd is already up. `LUASPOUT_TEST_DEBUG=1` runs
//! luaspout with `DEBUG=1`; its stderr is printed when a test fails.

mod util;

use std::thread;
use std::time::Duration;

use util::*;

/// `raw+tcp://<rx>?filter.name=<name>`.
fn raw_tcp(rx: &TcpReceiver, name: &str) -> String {
    format!("raw+tcp://{}?filter.name={name}", rx.addr())
}

/// `syslog+tcp://<rx>?filter.name=<name>`.
fn syslog_tcp(rx: &TcpReceiver, name: &str) -> String {
    format!("syslog+tcp://{}?filter.name={name}", rx.addr())
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits for `n` lines, then [`SETTLE`] more to catch extra or duplicate lines; returns all
/// complete lines received.
fn settled_lines(rx: &TcpReceiver, n: usize) -> Vec<String> {
    rx.wait_for_lines(n, ARRIVE);
    thread::sleep(SETTLE);
    rx.lines()
}

// ---------------------------------------------------------------------------------------------
// raw
// ---------------------------------------------------------------------------------------------

#[test]
fn raw_tcp_delivers_every_line_in_order_with_exact_bytes() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    let _c = run_named(&name, &[], r#"for i in $(seq 1 200); do echo "line $i of 200"; done; sleep 60"#);

    let expected: String = (1..=200).map(|i| format!("line {i} of 200\n")).collect();
    rx.wait_until(ARRIVE, |b| b.len() >= expected.len());
    thread::sleep(SETTLE);
    assert_eq!(lossy(rx.contents()), expected);
}

#[test]
fn raw_udp_is_the_default_transport_one_datagram_per_line() {
    let rx = UdpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&format!("raw://{}?filter.name={name}", rx.addr()));
    let _c = run_named(&name, &[], r#"for i in 1 2 3 4 5; do echo "datagram $i"; done; sleep 60"#);

    rx.wait_for_datagrams(5, ARRIVE);
    thread::sleep(SETTLE);
    let got: Vec<String> = rx.datagrams().into_iter().map(lossy).collect();
    let expected: Vec<String> = (1..=5).map(|i| format!("datagram {i}\n")).collect();
    assert_eq!(got, expected);
}

#[test]
fn raw_format_env_applies_to_raw_routes() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", "{{.Source}}|{{.Data}}\n").start();
    let _c = run_named(&name, &[], "echo out; sleep 0.2; echo err >&2; sleep 60");

    assert_eq!(sorted(settled_lines(&rx, 2)), strings(&["stderr|err", "stdout|out"]));
}

/// logspout README's full-JSON `RAW_FORMAT`, byte for byte as Go's text/template renders it
/// (labels through Go's json.Marshal: sorted keys, `<>&` escaped; `.Container.Name` with its `/`).
#[test]
fn raw_format_readme_json_template_renders_as_logspout() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let template = r#"{ "container" : "{{ .Container.Name }}", "labels": {{ toJSON .Container.Config.Labels }}, "timestamp": "{{ .Time.Format "2006-01-02T15:04:05Z07:00" }}", "source" : "{{ .Source }}", "message": {{ toJSON .Data }} }
"#;
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", template).start();
    let _c = run_named(&name, &["--label", "b=x&y", "--label", "a=<1>"], r#"echo 'say "hi" <now>'; sleep 60"#);
    let lines = settled_lines(&rx, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (head, tail) = lines[0].split_once(r#", "timestamp": ""#).expect("timestamp field");
    assert_eq!(head, format!(r#"{{ "container" : "/{name}", "labels": {{"a":"\u003c1\u003e","b":"x\u0026y"}}"#));
    let (stamp, rest) = tail.split_once('"').unwrap();
    assert!(stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "RFC 3339 seconds: {stamp}");
    assert_eq!(rest, r#", "source" : "stdout", "message": "say \"hi\" \u003cnow\u003e" }"#);
}

#[test]
fn syslog_templates_with_blocks_and_split_names() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder()
        .arg(syslog_tcp(&rx, &format!("{name}.*")))
        .env("SYSLOG_TAG", r#"{{ index (.ContainerNameSplitN "." 2) 0 }}"#)
        .env("SYSLOG_DATA", r#"{{if eq .Source "stderr"}}ERR {{end}}{{printf "%q" .Data}}"#)
        .env("SYSLOG_HOSTNAME", "{{with .Container.Config.Labels.node}}{{.}}{{else}}nohost{{end}}")
        .start();
    let c = run_named(&format!("{name}.web.1"), &["--label", "node=n7"], "echo up; sleep 0.2; echo down >&2; sleep 60");
    let pid = c.pid();
    let got: Vec<String> = settled_lines(&rx, 2).iter().map(|l| mask_syslog_timestamp(l)).collect();
    assert_eq!(
        sorted(got),
        vec![format!(r#"<11>1 TS n7 {name} {pid} - - ERR "down""#), format!(r#"<14>1 TS n7 {name} {pid} - - "up""#),]
    );
}

// ---------------------------------------------------------------------------------------------
// syslog
// ---------------------------------------------------------------------------------------------

#[test]
fn syslog_tcp_rfc5424_exact_bytes_stdout_and_stderr() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&syslog_tcp(&rx, &name));
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello world; echo boom >&2; sleep 60");
    let pid = c.pid();

    rx.wait_for_lines(2, ARRIVE);
    thread::sleep(SETTLE);
    let raw = lossy(rx.contents());
    assert!(raw.ends_with('\n'), "every syslog line ends with \\n: {raw:?}");
    let got = sorted(rx.lines().iter().map(|l| mask_syslog_timestamp(l)).collect());
    assert_eq!(
        got,
        vec![format!("<11>1 TS myhost {name} {pid} - - boom"), format!("<14>1 TS myhost {name} {pid} - - hello world")]
    );
}

#[test]
fn syslog_tcp_rfc3164_exact_bytes() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().arg(syslog_tcp(&rx, &name)).env("SYSLOG_FORMAT", "rfc3164").start();
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello world; echo boom >&2; sleep 60");
    let pid = c.pid();

    let got = sorted(settled_lines(&rx, 2).iter().map(|l| mask_syslog_timestamp(l)).collect());
    assert_eq!(
        got,
        vec![format!("<11>TS myhost {name}[{pid}]: boom"), format!("<14>TS myhost {name}[{pid}]: hello world")]
    );
}

#[test]
fn syslog_append_tag_option() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&format!("{}&append_tag=.db", syslog_tcp(&rx, &name)));
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello; sleep 60");
    let pid = c.pid();

    let got: Vec<String> = settled_lines(&rx, 1).iter().map(|l| mask_syslog_timestamp(l)).collect();
    assert_eq!(got, vec![format!("<14>1 TS myhost {name}.db {pid} - - hello")]);
}

#[test]
fn syslog_structured_data_option() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // structured_data=abc@41058 tag="x", URL-encoded.
    let _ls = Luaspout::start(&format!("{}&structured_data=abc%4041058%20tag%3D%22x%22", syslog_tcp(&rx, &name)));
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello; sleep 60");
    let pid = c.pid();

    let got: Vec<String> = settled_lines(&rx, 1).iter().map(|l| mask_syslog_timestamp(l)).collect();
    assert_eq!(got, vec![format!("<14>1 TS myhost {name} {pid} - [abc@41058 tag=\"x\"] hello")]);
}

#[test]
fn syslog_udp_one_datagram_per_line_with_newline() {
    let rx = UdpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&format!("syslog://{}?filter.name={name}", rx.addr()));
    let c = run_named(&name, &["--hostname", "myhost"], "echo one; echo two; sleep 60");
    let pid = c.pid();

    rx.wait_for_datagrams(2, ARRIVE);
    thread::sleep(SETTLE);
    let got: Vec<String> = rx.datagrams().into_iter().map(|d| mask_syslog_timestamp(&lossy(d))).collect();
    assert_eq!(
        got,
        vec![format!("<14>1 TS myhost {name} {pid} - - one\n"), format!("<14>1 TS myhost {name} {pid} - - two\n")]
    );
}

#[test]
fn syslog_octet_counted_framing_has_correct_length_prefix() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().arg(syslog_tcp(&rx, &name)).env("SYSLOG_TCP_FRAMING", "octet-counted").start();
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello world; echo 'second line, longer'; sleep 60");
    let pid = c.pid();

    // Two frames of `<len> <line>\n`: wait until both are complete.
    let complete = |b: &[u8]| parse_octet_frames(b).is_some_and(|(frames, _)| frames.len() >= 2);
    rx.wait_until(ARRIVE, complete);
    thread::sleep(SETTLE);
    let buf = rx.contents();
    let (frames, rest) = parse_octet_frames(&buf).unwrap_or_else(|| panic!("not octet-counted: {}", escaped(&buf)));
    assert!(rest.is_empty(), "trailing bytes after the frames: {}", escaped(rest));
    let got: Vec<String> = frames.iter().map(|f| mask_syslog_timestamp(&lossy(f))).collect();
    assert_eq!(
        got,
        vec![
            format!("<14>1 TS myhost {name} {pid} - - hello world\n"),
            format!("<14>1 TS myhost {name} {pid} - - second line, longer\n"),
        ]
    );
}

/// Splits RFC 6587 octet-counted frames (`<decimal length> <frame>`); returns the frames and the
/// incomplete rest, or `None` if the bytes are not octet-counted frames.
fn parse_octet_frames(mut b: &[u8]) -> Option<(Vec<Vec<u8>>, &[u8])> {
    let mut frames = Vec::new();
    loop {
        let Some(space) = b.iter().position(|&c| c == b' ') else {
            return b.iter().all(u8::is_ascii_digit).then_some((frames, b));
        };
        let digits = &b[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let body = &b[space + 1..];
        if body.len() < len {
            return Some((frames, b));
        }
        frames.push(body[..len].to_vec());
        b = &body[len..];
    }
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// Starts `other` (which must not be delivered) and waits until it has logged, then starts
/// `wanted`, and returns the settled lines once `n` arrived.
fn only_wanted_delivered(
    rx: &TcpReceiver,
    other: impl FnOnce() -> (Container, &'static str),
    wanted: impl FnOnce() -> Container,
    n: usize,
) -> (Vec<String>, Vec<Container>) {
    let (o, marker) = other();
    o.wait_logged(marker);
    let w = wanted();
    let lines = settled_lines(rx, n);
    (lines, vec![o, w])
}

#[test]
fn filter_name_glob() {
    let rx = TcpReceiver::start();
    let prefix = unique_name();
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={prefix}-a*", rx.addr()));
    let (lines, _cs) = only_wanted_delivered(
        &rx,
        || (run_named(&format!("{prefix}-db"), &[], "echo from db; sleep 60"), "from db"),
        || run_named(&format!("{prefix}-app1"), &[], "echo from app; sleep 60"),
        1,
    );
    assert_eq!(lines, strings(&["from app"]));
}

fn filter_id(full: bool) {
    let rx = TcpReceiver::start();
    // Created, not started: its ID is known before luaspout starts.
    let target = create_named(&unique_name(), &[], "echo target line; sleep 60");
    let id = if full { target.id() } else { target.short_id() };
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.id={id}", rx.addr()));
    let sibling = run_container(&[], "echo sibling line; sleep 60");
    sibling.wait_logged("sibling line");
    target.start();
    assert_eq!(settled_lines(&rx, 1), strings(&["target line"]));
}

#[test]
fn filter_id_short_prefix() {
    filter_id(false);
}

/// Quirk Q2 is fixed: a full 64-character ID matches too.
#[test]
fn filter_id_full_64_char_id() {
    filter_id(true);
}

#[test]
fn filter_labels_glob() {
    let rx = TcpReceiver::start();
    let tag = random_hex(12);
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.labels=lstest.team:{tag}-yes*", rx.addr()));
    let yes_label = format!("lstest.team={tag}-yes-1");
    let no_label = format!("lstest.team={tag}-no");
    let (lines, _cs) = only_wanted_delivered(
        &rx,
        || (run_container(&["--label", &no_label], "echo labelled no; sleep 60"), "labelled no"),
        || run_container(&["--label", &yes_label], "echo labelled yes; sleep 60"),
        1,
    );
    assert_eq!(lines, strings(&["labelled yes"]));
}

#[test]
fn filter_sources_stderr_drops_stdout_lines() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&format!("{}&filter.sources=stderr", raw_tcp(&rx, &name)));
    let _c = run_named(&name, &[], "echo out1; echo err1 >&2; echo out2; echo err2 >&2; echo out3; sleep 60");
    assert_eq!(settled_lines(&rx, 2), strings(&["err1", "err2"]));
}

// ---------------------------------------------------------------------------------------------
// Exclusion
// ---------------------------------------------------------------------------------------------

#[test]
fn container_with_logspout_ignore_env_is_not_read() {
    let rx = TcpReceiver::start();
    let prefix = unique_name();
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={prefix}-*", rx.addr()));
    let (lines, _cs) = only_wanted_delivered(
        &rx,
        || {
            (
                run_named(&format!("{prefix}-ign"), &["-e", "LOGSPOUT=ignore"], "echo ignored line; sleep 60"),
                "ignored line",
            )
        },
        || run_named(&format!("{prefix}-ok"), &[], "echo delivered line; sleep 60"),
        1,
    );
    assert_eq!(lines, strings(&["delivered line"]));
}

#[test]
fn exclude_label_env_excludes_labelled_container() {
    let rx = TcpReceiver::start();
    let prefix = unique_name();
    let value = random_hex(8);
    let _ls = Luaspout::builder()
        .arg(format!("raw+tcp://{}?filter.name={prefix}-*", rx.addr()))
        .env("EXCLUDE_LABEL", &format!("lstest.exclude:{value}"))
        .start();
    let label = format!("lstest.exclude={value}");
    let (lines, _cs) = only_wanted_delivered(
        &rx,
        || (run_named(&format!("{prefix}-ex"), &["--label", &label], "echo excluded line; sleep 60"), "excluded line"),
        || run_named(&format!("{prefix}-ok"), &[], "echo delivered line; sleep 60"),
        1,
    );
    assert_eq!(lines, strings(&["delivered line"]));
}

// ---------------------------------------------------------------------------------------------
// TTY
// ---------------------------------------------------------------------------------------------

#[test]
fn tty_container_is_ignored_by_default() {
    let rx = TcpReceiver::start();
    let prefix = unique_name();
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={prefix}-*", rx.addr()));
    let (lines, _cs) = only_wanted_delivered(
        &rx,
        || (run_named(&format!("{prefix}-tty"), &["-t"], "echo tty line; sleep 60"), "tty line"),
        || run_named(&format!("{prefix}-plain"), &[], "echo plain line; sleep 60"),
        1,
    );
    assert_eq!(lines, strings(&["plain line"]));
}

#[test]
fn tty_container_with_allow_tty_delivers_stdout_lines_ending_in_cr() {
    let out = TcpReceiver::start();
    let err = TcpReceiver::start();
    let name = unique_name();
    // One route per stream: the TTY lines must all come out labelled stdout.
    let uris = format!("{}&filter.sources=stdout,{}&filter.sources=stderr", raw_tcp(&out, &name), raw_tcp(&err, &name));
    let _ls = Luaspout::builder().arg(uris).env("ALLOW_TTY", "true").start();
    let _c = run_named(&name, &["-t"], "echo tty one; echo tty two >&2; sleep 60");

    out.wait_for_lines(2, ARRIVE);
    thread::sleep(SETTLE);
    assert_eq!(escaped(&out.contents()), escaped(b"tty one\r\ntty two\r\n"));
    assert_eq!(escaped(&err.contents()), "", "a TTY has no separate stderr");
}

// ---------------------------------------------------------------------------------------------
// Line content and framing
// ---------------------------------------------------------------------------------------------

#[test]
fn line_of_100_kib_arrives_as_one_line() {
    const LEN: usize = 100 * 1024;
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    // Digits of 1, 2, 3, … concatenated: no two 16 KiB pieces look alike.
    let _c = run_named(&name, &[], &format!("seq 1 30000 | tr -d '\\n' | head -c {LEN}; echo; echo after; sleep 60"));

    let digits: String = (1..=30000).map(|i: u32| i.to_string()).collect();
    let expected = format!("{}\nafter\n", &digits[..LEN]);
    rx.wait_until(ARRIVE, |b| b.len() >= expected.len());
    thread::sleep(SETTLE);
    let got = rx.contents();
    let lines = split_lines(&got);
    assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), vec![LEN, 5], "line lengths");
    assert!(
        got == expected.as_bytes(),
        "content differs from byte {:?}",
        got.iter().zip(expected.as_bytes()).position(|(a, b)| a != b)
    );
}

/// Docker's default json-file driver replaces invalid UTF-8 with U+FFFD before luaspout can see
/// it, so this container uses the `local` driver, which keeps the bytes as they were written.
#[test]
fn invalid_utf8_bytes_pass_through_unchanged() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    let c = run_named(&name, &["--log-driver", "local"], r"printf 'bad \377\300 bytes \355\240\200 end\n'; sleep 60");
    let expected: &[u8] = b"bad \xff\xc0 bytes \xed\xa0\x80 end\n";
    c.wait_logged("end");
    assert_eq!(escaped(&c.logs().0), escaped(expected), "Docker itself kept the bytes");

    rx.wait_for_line_bytes(1, ARRIVE);
    thread::sleep(SETTLE);
    assert_eq!(escaped(&rx.contents()), escaped(expected));
}

#[test]
fn final_line_without_newline_is_delivered() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    // Docker writes the unterminated tail when the container's stdout closes, i.e. at exit.
    let c = run_named(&name, &[], "echo first; sleep 1; printf 'no newline at the end'");
    c.wait_exited();
    assert_eq!(settled_lines(&rx, 2), strings(&["first", "no newline at the end"]));
    assert_eq!(lossy(rx.contents()), "first\nno newline at the end\n");
}

#[test]
fn empty_lines_are_delivered() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    let _c = run_named(&name, &[], "echo a; echo; echo b; sleep 60");
    assert_eq!(settled_lines(&rx, 3), strings(&["a", "", "b"]));
}

// ---------------------------------------------------------------------------------------------
// Container lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn docker_restart_delivers_both_runs_once() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    // Each run counts itself in a file of the container's own filesystem.
    let c = run_named(
        &name,
        &[],
        r#"n=$(cat /runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /runs; for i in 1 2 3; do echo "run $n line $i"; done; sleep 60"#,
    );
    let first = rx.wait_for_lines(3, ARRIVE);
    assert_eq!(first, strings(&["run 1 line 1", "run 1 line 2", "run 1 line 3"]));

    c.restart();
    let expected =
        strings(&["run 1 line 1", "run 1 line 2", "run 1 line 3", "run 2 line 1", "run 2 line 2", "run 2 line 3"]);
    rx.wait_for_lines(6, ARRIVE);
    thread::sleep(SETTLE * 2);
    assert_eq!(rx.lines(), expected);
}

#[test]
fn lines_printed_at_container_start_are_all_delivered() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    // Printed at once, before luaspout could possibly have attached: luaspout must read from
    // the container's own start, not from when it noticed the container.
    let _c = run_named(&name, &[], r#"for i in $(seq 1 20); do echo "early $i"; done; sleep 60"#);
    let expected: Vec<String> = (1..=20).map(|i| format!("early {i}")).collect();
    assert_eq!(settled_lines(&rx, 20), expected);
}

#[test]
fn short_lived_container_lines_are_delivered() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    // Exits at once: it may be gone before luaspout inspects it.
    let c = run_named(&name, &[], "echo one; echo two; echo three");
    c.wait_exited();
    assert_eq!(settled_lines(&rx, 3), strings(&["one", "two", "three"]));
}

/// Without `BACKLOG`, a container already running when luaspout starts is read from then on:
/// its earlier lines are history and are not sent.
#[test]
fn without_backlog_history_of_running_containers_is_not_sent() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let c = run_named(&name, &[], "echo before; sleep 60");
    c.wait_logged("before");
    // Well clear of luaspout's start, whatever its clock granularity.
    thread::sleep(Duration::from_millis(1500));
    let _ls = Luaspout::start(&raw_tcp(&rx, &name));
    thread::sleep(Duration::from_millis(500)); // let it attach
    c.log_stdout("after\n");
    assert_eq!(settled_lines(&rx, 1), strings(&["after"]));
}

/// `BACKLOG=true`: a container already running when luaspout starts is read from its start.
#[test]
fn backlog_true_sends_history_of_running_containers() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let c = run_named(&name, &[], "echo before 1; echo before 2; sleep 60");
    c.wait_logged("before 2");
    thread::sleep(Duration::from_millis(1500));
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("BACKLOG", "true").start();
    rx.wait_for_lines(2, ARRIVE);
    c.log_stdout("after\n");
    assert_eq!(settled_lines(&rx, 3), strings(&["before 1", "before 2", "after"]));
}

#[test]
fn tail_limits_the_backlog_to_the_last_lines() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let c = run_named(&name, &[], "echo before 1; echo before 2; echo before 3; sleep 60");
    c.wait_logged("before 3");
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("BACKLOG", "true").env("TAIL", "2").start();
    rx.wait_for_lines(2, ARRIVE);
    c.log_stdout("after\n");
    assert_eq!(settled_lines(&rx, 3), strings(&["before 2", "before 3", "after"]));
}

#[test]
fn containers_whose_log_driver_cannot_be_read_back_are_skipped() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::start(&format!("raw+tcp://{}?filter.name={name}*", rx.addr()));
    // Docker 20.10 can read a gelf container's log back (dual logging), but logspout skips
    // such drivers, and so does luaspout: its lines must not arrive.
    let gelf = run_named(
        &format!("{name}-gelf"),
        &["--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:12201"],
        "echo from gelf; sleep 60",
    );
    gelf.wait_logged("from gelf");
    let _json = run_named(&format!("{name}-json"), &[], "echo from json-file; sleep 60");
    assert_eq!(settled_lines(&rx, 1), strings(&["from json-file"]));
}

#[test]
fn rename_changes_the_syslog_tag_of_later_lines() {
    let rx = TcpReceiver::start();
    let prefix = unique_name();
    let _ls = Luaspout::start(&format!("syslog+tcp://{}?filter.name={prefix}-*", rx.addr()));
    let mut c = run_named(&format!("{prefix}-old"), &["--hostname", "myhost"], "echo before; sleep 60");
    let pid = c.pid();
    rx.wait_for_lines(1, ARRIVE);
    c.rename(&format!("{prefix}-new"));
    // Give luaspout a moment to see the rename event before the next line.
    thread::sleep(Duration::from_millis(500));
    c.log_stdout("after\n");

    let got: Vec<String> = settled_lines(&rx, 2).iter().map(|l| mask_syslog_timestamp(l)).collect();
    assert_eq!(
        got,
        vec![
            format!("<14>1 TS myhost {prefix}-old {pid} - - before"),
            format!("<14>1 TS myhost {prefix}-new {pid} - - after")
        ]
    );
}

#[test]
fn sink_that_starts_late_gets_the_lines_logged_after_it_is_up() {
    let port = free_port();
    let name = unique_name();
    // Not `start()`: with its sink down, /health may rightly answer 503.
    let mut ls = Luaspout::builder().arg(format!("raw+tcp://127.0.0.1:{port}?filter.name={name}")).spawn();
    ls.wait_http();
    let c = run_named(&name, &[], "echo early; sleep 60");
    c.wait_logged("early");
    thread::sleep(Duration::from_secs(2));
    ls.assert_running();

    let rx = TcpReceiver::start_on(port);
    for i in 1..=5 {
        c.log_stdout(&format!("late {i}\n"));
    }
    rx.wait_for_lines(5, ARRIVE);
    thread::sleep(SETTLE);
    ls.assert_running();
    // The line logged while the sink was down may or may not have been kept; if it was, it
    // comes first and once. Every line logged after the sink came up arrives, in order.
    let late = strings(&["late 1", "late 2", "late 3", "late 4", "late 5"]);
    let got = rx.lines();
    let with_early: Vec<String> = std::iter::once("early".to_string()).chain(late.iter().cloned()).collect();
    assert!(got == late || got == with_early, "got {got:?}");
}

// ---------------------------------------------------------------------------------------------
// routes.lua
// ---------------------------------------------------------------------------------------------

#[test]
fn lua_route_match_filter_and_format_shape_the_output() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = format!(
        r#"
route {{
  to = "raw+tcp://{addr}",
  match = {{ name = "{name}" }},
  filter = function(msg) return msg.data:find("keep", 1, true) end,
  format = function(msg) return msg.container.name .. " " .. msg.source .. " " .. msg.data end,
}}
"#,
        addr = rx.addr()
    );
    let _ls = Luaspout::builder().config(&config).start();
    let other = run_named(&format!("{name}x"), &[], "echo keep from other; sleep 60");
    other.wait_logged("keep from other");
    let _c = run_named(
        &name,
        &[],
        "echo keep one; echo drop two; echo keep three; echo keep err >&2; echo drop err >&2; sleep 60",
    );

    let got = settled_lines(&rx, 3);
    let stdout: Vec<&String> = got.iter().filter(|l| l.contains(" stdout ")).collect();
    assert_eq!(
        stdout,
        vec![&format!("{name} stdout keep one"), &format!("{name} stdout keep three")],
        "stdout lines in order"
    );
    assert_eq!(
        sorted(got),
        vec![format!("{name} stderr keep err"), format!("{name} stdout keep one"), format!("{name} stdout keep three")]
    );
}

#[test]
fn lua_config_from_luaspout_config_env() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.lua");
    std::fs::write(
        &path,
        format!(
            "route {{ to = \"raw+tcp://{}\", match = {{ name = \"{name}\" }}, format = function(m) return 'env:' .. m.data end }}\n",
            rx.addr()
        ),
    )
    .unwrap();
    let _ls = Luaspout::builder().env("LUASPOUT_CONFIG", path.to_str().unwrap()).start();
    let _c = run_named(&name, &[], "echo via env; sleep 60");
    assert_eq!(settled_lines(&rx, 1), strings(&["env:via env"]));
}

#[test]
fn lua_format_returning_a_table_sends_one_json_line() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = format!(
        r#"
route {{
  to = "raw+tcp://{addr}",
  match = {{ name = "{name}" }},
  format = function(msg)
    return {{ name = msg.container.name, source = msg.source, line = msg.data, n = 42, ok = true }}
  end,
}}
"#,
        addr = rx.addr()
    );
    let _ls = Luaspout::builder().config(&config).start();
    let _c = run_named(&name, &[], r#"printf 'say "hi"\tnow\n'; sleep 60"#);

    let lines = settled_lines(&rx, 1);
    assert_eq!(lines.len(), 1, "exactly one line: {lines:?}");
    let got: serde_json::Value =
        serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", lines[0]));
    let expected =
        serde_json::json!({ "name": name, "source": "stdout", "line": "say \"hi\"\tnow", "n": 42, "ok": true });
    assert_eq!(got, expected);
}

#[test]
fn lua_filter_error_does_not_stop_the_router() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = format!(
        r#"
route {{
  to = "raw+tcp://{addr}",
  match = {{ name = "{name}" }},
  filter = function(msg)
    if msg.data:find("bad", 1, true) then error("refusing " .. msg.data) end
    return true
  end,
}}
"#,
        addr = rx.addr()
    );
    let mut ls = Luaspout::builder().config(&config).start();
    let c = run_named(&name, &[], "echo ok1; echo bad1; echo ok2; echo bad2; echo ok3; sleep 60");
    rx.wait_until(ARRIVE, |b| lossy(b).contains("ok3\n"));
    c.log_stdout("bad3\nok4\n");
    rx.wait_until(ARRIVE, |b| lossy(b).contains("ok4\n"));
    thread::sleep(SETTLE);
    ls.assert_running();

    // Policy: a line whose filter raised goes out unchanged in the route's default format,
    // once, in order; the error is counted per route.
    assert_eq!(rx.lines(), strings(&["ok1", "bad1", "ok2", "bad2", "ok3", "bad3", "ok4"]));
    let (status, metrics) = ls.get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    let metrics = lossy(&metrics);
    let errors = metrics.lines().find(|l| l.starts_with("luaspout_route_lua_errors_total{")).unwrap_or_default();
    assert!(errors.ends_with(" 3"), "three Lua errors counted: {errors:?}\n{metrics}");
}

// ---------------------------------------------------------------------------------------------
// luaspout check
// ---------------------------------------------------------------------------------------------

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("routes.lua");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        r#"
route {
  name = "errors",
  to = "syslog+tcp://127.0.0.1:5514?append_tag=.app",
  match = { name = "*_app", sources = { "stderr" }, labels = { ["com.example.team"] = "shop*" } },
  filter = function(msg) return not msg.data:find("GET /health", 1, true) end,
  format = function(msg) return spout.json { container = msg.container.name, log = msg.data } end,
}
"#,
    );
    let out = luaspout_output(&["check", &path]);
    assert!(out.status.success(), "check failed: {}", lossy(&out.stderr));
}

#[test]
fn check_reports_syntax_error_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "-- a comment\nroute {\n  to = = \"raw+tcp://127.0.0.1:9\",\n}\n");
    let out = luaspout_output(&["check", &path]);
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted a syntax error; stderr: {stderr}");
    assert!(stderr.contains(&format!("{path}:3:")), "stderr lacks `{path}:3:`: {stderr}");
}

#[test]
fn check_reports_unknown_route_key_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "-- a comment\n\nroute { to = \"raw+tcp://127.0.0.1:9\", fromat = function(m) return m.data end }\n",
    );
    let out = luaspout_output(&["check", &path]);
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted an unknown key; stderr: {stderr}");
    assert!(stderr.contains(&format!("{path}:3:")), "stderr lacks `{path}:3:`: {stderr}");
    assert!(stderr.contains("fromat"), "stderr does not name the key: {stderr}");
}

#[test]
fn version_flag_prints_the_version() {
    let out = luaspout_output(&["--version"]);
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    assert!(lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")), "{}", lossy(&out.stdout));
}

// ---------------------------------------------------------------------------------------------
// rsyslog interop
// ---------------------------------------------------------------------------------------------

/// Sends one stdout line through `uri_for(rsyslogd)` with `env`, returns what rsyslogd parsed
/// plus the container's name and PID.
fn through_rsyslog(scheme: &str, env: &[(&str, &str)]) -> (Vec<String>, String, u32) {
    let rs = Rsyslogd::start();
    let name = unique_name();
    let mut b = Luaspout::builder().arg(format!("{scheme}://{}?filter.name={name}", rs.addr()));
    for (k, v) in env {
        b = b.env(k, v);
    }
    let _ls = b.start();
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello rsyslog; sleep 60");
    let pid = c.pid();
    rs.wait_for_lines(1, ARRIVE);
    thread::sleep(SETTLE);
    (rs.lines(), name, pid)
}

#[test]
fn rsyslog_parses_rfc5424_over_tcp() {
    let (lines, name, pid) = through_rsyslog("syslog+tcp", &[]);
    assert_eq!(lines, vec![format!("HOST=myhost TAG={name}[{pid}] APP={name} PROCID={pid} MSG=hello rsyslog")]);
}

#[test]
fn rsyslog_parses_rfc5424_over_tcp_octet_counted() {
    let (lines, name, pid) = through_rsyslog("syslog+tcp", &[("SYSLOG_TCP_FRAMING", "octet-counted")]);
    assert_eq!(lines, vec![format!("HOST=myhost TAG={name}[{pid}] APP={name} PROCID={pid} MSG=hello rsyslog")]);
}

#[test]
fn rsyslog_parses_rfc5424_over_udp() {
    let (lines, name, pid) = through_rsyslog("syslog", &[]);
    assert_eq!(lines, vec![format!("HOST=myhost TAG={name}[{pid}] APP={name} PROCID={pid} MSG=hello rsyslog")]);
}

/// rsyslog's RFC 3164 parser keeps the space after `TAG:` as the first character of MSG, and the
/// colon in the tag.
#[test]
fn rsyslog_parses_rfc3164_over_tcp() {
    let (lines, name, pid) = through_rsyslog("syslog+tcp", &[("SYSLOG_FORMAT", "rfc3164")]);
    assert_eq!(lines, vec![format!("HOST=myhost TAG={name}[{pid}]: APP={name} PROCID={pid} MSG= hello rsyslog")]);
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[test]
fn health_answers_200() {
    require_docker();
    let ls = Luaspout::builder().start();
    let (status, _) = ls.get("/health").expect("GET /health");
    assert_eq!(status, 200);
}

#[test]
fn health_answers_200_with_routes() {
    let rx = TcpReceiver::start();
    let ls = Luaspout::start(&raw_tcp(&rx, &unique_name()));
    let (status, _) = ls.get("/health").expect("GET /health");
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// multiline
// ---------------------------------------------------------------------------------------------

/// A config that groups Java, Python and Go traces of the containers named `<name>*` before
/// routing, and sends each message as `name source data` with newlines shown as `\n`.
fn traces_config(rx: &TcpReceiver, name: &str, flush_after_ms: u32) -> String {
    format!(
        r#"
multiline {{
  containers = {{ name = "{name}*" }},
  pattern = [[^(\s|$|\w+(Error|Exception):|Caused by:|goroutine \d+ |[\w./*()]+\(.*\)$|exit status)]],
  flush_after = {flush_after_ms},
}}
route {{
  to = "raw+tcp://{addr}",
  match = {{ name = "{name}*" }},
  format = function(m) return m.container.name .. " " .. m.source .. " " .. (m.data:gsub("\n", "\\n")) end,
}}
"#,
        addr = rx.addr()
    )
}

#[test]
fn multiline_joins_java_python_and_go_traces_per_stream() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().config(&traces_config(&rx, &name, 500)).start();
    // Java on stdout and Python on stderr of one container, line by line interleaved.
    let mixed = run_named(
        &format!("{name}-mixed"),
        &[],
        r#"printf 'INFO starting\n'
printf 'Traceback (most recent call last):\n' >&2
printf 'Exception in thread "main" java.lang.IllegalStateException: boom\n'
printf '  File "app.py", line 3, in <module>\n' >&2
printf '\tat com.example.App.run(App.java:10)\n'
printf '    main()\n' >&2
printf '\tat com.example.App.main(App.java:5)\n'
printf 'ValueError: bad value\n' >&2
printf 'Caused by: java.io.IOException: disk full\n'
printf '\t... 2 more\n'
printf 'INFO after java\n'
printf 'INFO after python\n' >&2
sleep 60"#,
    );
    let go = run_named(
        &format!("{name}-go"),
        &[],
        r#"printf 'INFO serving\n' >&2
printf 'panic: runtime error: index out of range [3] with length 3\n\n' >&2
printf 'goroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d\nexit status 2\n' >&2
printf 'INFO restarted\n' >&2
sleep 60"#,
    );
    let (m, g) = (mixed.name(), go.name());
    let expected = sorted(vec![
        format!("{m} stdout INFO starting"),
        format!(
            r#"{m} stdout Exception in thread "main" java.lang.IllegalStateException: boom\n	at com.example.App.run(App.java:10)\n	at com.example.App.main(App.java:5)\nCaused by: java.io.IOException: disk full\n	... 2 more"#
        ),
        format!("{m} stdout INFO after java"),
        format!(
            r#"{m} stderr Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n    main()\nValueError: bad value"#
        ),
        format!("{m} stderr INFO after python"),
        format!("{g} stderr INFO serving"),
        format!(
            r#"{g} stderr panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n	/app/main.go:8 +0x1d\nexit status 2"#
        ),
        format!("{g} stderr INFO restarted"),
    ]);
    // The last line of each stream waits for flush_after, then goes out alone.
    assert_eq!(sorted(settled_lines(&rx, expected.len())), expected);
}

#[test]
fn multiline_keeps_a_slowly_written_trace_whole() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().config(&traces_config(&rx, &name, 1500)).start();
    let c = run_named(
        &name,
        &[],
        "echo 'ERROR boom'; sleep 0.3; echo '  at a'; sleep 0.3; echo '  at b'; sleep 0.3; echo '  at c'; sleep 2; echo next; sleep 60",
    );
    let n = c.name();
    assert_eq!(
        settled_lines(&rx, 2),
        vec![format!(r"{n} stdout ERROR boom\n  at a\n  at b\n  at c"), format!("{n} stdout next")]
    );
}

#[test]
fn multiline_flushes_a_trace_that_never_ends_after_flush_after() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder().config(&traces_config(&rx, &name, 500)).start();
    // The container keeps running: only the flush_after timer can send the group.
    let c = run_named(&name, &[], "echo 'ERROR stuck'; echo '  at a'; echo '  at b'; sleep 60");
    let n = c.name();
    assert_eq!(settled_lines(&rx, 1), vec![format!(r"{n} stdout ERROR stuck\n  at a\n  at b")]);
}

#[test]
fn multiline_uri_route_with_logspout_env_and_per_container_opt_out() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls = Luaspout::builder()
        .arg(format!("multiline+raw+tcp://{}?filter.name={name}*", rx.addr()))
        .env("MULTILINE_MATCH", "last")
        .env("MULTILINE_PATTERN", ";$")
        .env("MULTILINE_SEPARATOR", " | ")
        .start();
    let grouped = run_named(&format!("{name}-on"), &[], "echo a; echo b; echo 'c;'; echo 'd;'; sleep 60");
    grouped.wait_logged("d;");
    let _plain = run_named(&format!("{name}-off"), &["-e", "LOGSPOUT_MULTILINE=false"], "echo x; echo 'y;'; sleep 60");
    assert_eq!(sorted(settled_lines(&rx, 4)), sorted(strings(&["a | b | c;", "d;", "x", "y;"])));
}

// ---------------------------------------------------------------------------------------------
// the image
// ---------------------------------------------------------------------------------------------

/// Builds the repository's Dockerfile into `luaspout-test-image` from a root filesystem prepared
/// here (these machines cannot pull the Rust image the `build` stage uses; BuildKit skips that
/// stage when `ROOTFS` names a prepared image). The binary in it is the one the image ships when
/// `LUASPOUT_DIST_BIN` names it (tests/run.sh builds it as the `build` stage does), which must
/// then link no shared library; without it, this test build, with the libraries `ldd` lists.
fn build_image() -> &'static str {
    const IMAGE: &str = "luaspout-test-image";
    let shipped = std::env::var("LUASPOUT_DIST_BIN").ok();
    let bin = shipped.as_deref().unwrap_or(luaspout_bin());
    let ldd = std::process::Command::new("ldd").arg(bin).output().expect("ldd");
    let libs: Vec<&str> = std::str::from_utf8(&ldd.stdout)
        .expect("ldd's output")
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .collect();
    if shipped.is_some() {
        eprintln!("image test: the shipped binary, LUASPOUT_DIST_BIN={bin}");
        assert!(
            libs.is_empty(),
            "LUASPOUT_DIST_BIN={bin} links shared libraries ({libs:?}); the image ships a static one"
        );
    } else {
        eprintln!(
            "image test: LUASPOUT_DIST_BIN is not set, so the image holds this test build ({bin}) and {} shared \
             libraries, not the static binary the Dockerfile ships (tests/run.sh sets it)",
            libs.len()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    std::fs::copy(bin, root.join("luaspout")).unwrap_or_else(|e| panic!("copy {bin}: {e}"));
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    for lib in libs {
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", "luaspout-test-rootfs"])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "rootfs image: {}", lossy(&out.stderr));
    // Debian's docker client (20.10) has BuildKit built in; a newer client without the buildx
    // plugin does not.
    let client = if std::path::Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" };
    let out = std::process::Command::new(client)
        .args(["build", "--build-arg", "ROOTFS=luaspout-test-rootfs", "-t", IMAGE, env!("CARGO_MANIFEST_DIR")])
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "docker build of the Dockerfile: {}\n{}", lossy(&out.stdout), lossy(&out.stderr));
    IMAGE
}

#[test]
fn image_runs_on_the_mounted_socket_excludes_itself_and_is_healthy() {
    require_docker();
    let image = build_image();
    let rx = TcpReceiver::start();
    let name = unique_name();
    let port = free_port().to_string();
    // Host networking reaches the receiver on 127.0.0.1, here by a name from /etc/hosts: the
    // static binary resolves it with no NSS module in the image. The socket is mounted where
    // logspout's image also accepted it. The route matches luaspout's own container too
    // (`{name}*`): with DEBUG on it logs plenty, and none of it may come back through the route.
    let route = format!("raw+tcp://luaspout-sink.test:{}?filter.name={name}*", rx.port());
    let spout = run_image(
        &format!("{name}-spout"),
        &[
            "--network=host",
            "--add-host=luaspout-sink.test:127.0.0.1",
            "-v",
            "/var/run/docker.sock:/tmp/docker.sock:ro",
            "-e",
            &format!("PORT={port}"),
            "-e",
            "DEBUG=1",
        ],
        image,
        &[&route],
    );
    let deadline = std::time::Instant::now() + ARRIVE;
    while http_get(port.parse().unwrap(), "/health").map(|(s, _)| s) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the image's luaspout never became healthy: {:?}", spout.logs());
        thread::sleep(Duration::from_millis(100));
    }
    let _app = run_named(&format!("{name}-app"), &[], "echo from the app; echo second line; sleep 60");
    assert_eq!(
        settled_lines(&rx, 2),
        strings(&["from the app", "second line"]),
        "only the app's lines, none of luaspout's own"
    );

    // The HEALTHCHECK command works inside the image, which has no shell and no curl.
    let health = docker_ok(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", spout.name()]);
    assert_eq!(health, r#"["CMD","/luaspout","health"]"#);
    // Checked every 5 s, so a new task turns healthy (and a rolling update goes on) within
    // seconds of its start.
    let timing = docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Healthcheck.Interval}} {{.Config.Healthcheck.StartPeriod}}",
        spout.name(),
    ]);
    assert_eq!(timing, "5s 10s");
    let answer: serde_json::Value =
        serde_json::from_str(&docker_ok(&["exec", spout.name(), "/luaspout", "health"])).unwrap();
    assert_eq!(answer["status"], "healthy");
    // What logspout's image declares, and a size at most logspout's.
    let config =
        docker_ok(&["image", "inspect", "-f", "{{json .Config.ExposedPorts}} {{json .Config.Volumes}}", image]);
    assert_eq!(config, r#"{"80/tcp":{}} {"/mnt/routes":{},"/var/lib/luaspout":{}}"#);
    if !cfg!(debug_assertions) {
        let size: u64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", image]).parse().unwrap();
        assert!(size <= 15_000_000, "image is {size} bytes, over the 15 MB target");
    }
}

/// A ConfigMap volume as the kubelet's atomic writer lays it out: the files in a directory
/// `..<stamp>`, the symlink `..data` to it, and each key a symlink through `..data`. An update
/// writes a new `..<stamp>`, points `..data_tmp` at it, renames that over `..data` (one atomic
/// step for every key) and removes the old directory.
fn kubelet_writes_config_map(dir: &std::path::Path, stamp: &str, routes_lua: &str) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir.join(stamp)).unwrap();
    std::fs::write(dir.join(stamp).join("routes.lua"), routes_lua).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    match old {
        Some(old) => std::fs::remove_dir_all(dir.join(old)).unwrap(),
        None => symlink("..data/routes.lua", dir.join("routes.lua")).unwrap(),
    }
}

/// The value of a sample of `/metrics` (no labels) on luaspout's HTTP `port`.
fn metric_at(port: u16, sample: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    lossy(body).lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `examples/kubernetes.yml`'s pod, run by the real daemon the way the kubelet runs it: the
/// image built from the Dockerfile; the pod's `hostPath` volumes bind-mounted (the cursors'
/// into a directory of the test's), read-only where the mount says so; the ConfigMap as the
/// kubelet lays it out, then updated as the kubelet updates it; the Secret's key (pointing at
/// the test's receiver) and `spec.nodeName` in the environment; `readOnlyRootFilesystem` as
/// `--read-only`, `allowPrivilegeEscalation: false` as `no-new-privileges`, the memory limit
/// as `--memory`. A field of the container the test does not know how to run fails it. The
/// one difference: the pod shares the host's network, so that its route reaches the receiver
/// on loopback and its HTTP port is a free one of the host's.
#[test]
fn kubernetes_example_pod_runs_as_the_kubelet_runs_it() {
    require_docker();
    let image = build_image();
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kubernetes.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&manifest).unwrap();
    let of_kind = |k: &str| docs.iter().find(|d| d["kind"].as_str() == Some(k)).unwrap_or_else(|| panic!("no {k}"));
    let (config_map, pod) = (of_kind("ConfigMap"), &of_kind("DaemonSet")["spec"]["template"]["spec"]);
    let container = &pod["containers"][0];

    let rx = TcpReceiver::start();
    let name = unique_name();
    let port = free_port();
    let dest = format!("raw+tcp://127.0.0.1:{}?filter.name={name}-app*", rx.port());
    let dirs = tempfile::tempdir().unwrap();
    let (config_dir, state_dir) = (dirs.path().join("config"), dirs.path().join("state"));
    std::fs::create_dir_all(&state_dir).unwrap();
    let routes_lua = config_map["data"]["routes.lua"].as_str().expect("the ConfigMap's data.routes.lua");
    kubelet_writes_config_map(&config_dir, "..2026_12_07_10_00_00.000000001", routes_lua);

    let mut args = vec!["--network=host".to_string(), "-e".into(), format!("PORT={port}")];
    for (key, value) in container.as_hash().expect("a container") {
        match key.as_str().unwrap() {
            "name" | "image" | "livenessProbe" => {}
            "env" => {
                for var in value.as_vec().unwrap() {
                    let var_name = var["name"].as_str().unwrap();
                    let from = &var["valueFrom"];
                    let value = if let Some(v) = var["value"].as_str() {
                        v.to_string()
                    } else if from["secretKeyRef"]["key"].as_str() == Some("DEST") {
                        dest.clone()
                    } else if from["fieldRef"]["fieldPath"].as_str() == Some("spec.nodeName") {
                        "node-1".to_string()
                    } else {
                        panic!("env {var_name}: a value this test cannot give")
                    };
                    args.extend(["-e".into(), format!("{var_name}={value}")]);
                }
            }
            "volumeMounts" => {
                for mount in value.as_vec().unwrap() {
                    let volumes = pod["volumes"].as_vec().unwrap();
                    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("a declared volume");
                    let source = match (volume["hostPath"]["path"].as_str(), volume["configMap"].is_badvalue()) {
                        (Some("/var/lib/luaspout"), _) => state_dir.clone(),
                        (Some(path), _) => std::path::PathBuf::from(path),
                        (None, false) => config_dir.clone(),
                        _ => panic!("volume {:?}: a kind this test cannot mount", volume["name"]),
                    };
                    assert!(mount["subPath"].is_badvalue(), "subPath: not run by this test");
                    let ro = if mount["readOnly"].as_bool() == Some(true) { ":ro" } else { "" };
                    let target = mount["mountPath"].as_str().unwrap();
                    args.extend(["-v".into(), format!("{}:{target}{ro}", source.display())]);
                }
            }
            "resources" => {
                if let Some(memory) = value["limits"]["memory"].as_str() {
                    let mib = memory.strip_suffix("Mi").expect("a memory limit in Mi");
                    args.push(format!("--memory={mib}m"));
                }
            }
            "securityContext" => {
                for (k, v) in value.as_hash().unwrap() {
                    match (k.as_str().unwrap(), v.as_bool()) {
                        ("readOnlyRootFilesystem", Some(true)) => args.push("--read-only".into()),
                        ("allowPrivilegeEscalation", Some(false)) => {
                            args.push("--security-opt=no-new-privileges".into())
                        }
                        other => panic!("securityContext {other:?}: not run by this test"),
                    }
                }
            }
            other => panic!("the container's {other}: this test does not know how the kubelet runs it; teach it"),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let spout = run_image(&format!("{name}-spout"), &args, image, &[]);

    // The liveness probe, as the kubelet runs it.
    let probe: Vec<&str> = container["livenessProbe"]["exec"]["command"]
        .as_vec()
        .expect("an exec livenessProbe")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let mut exec = vec!["exec", spout.name()];
    exec.extend(&probe);
    let deadline = std::time::Instant::now() + ARRIVE;
    while !docker(&exec).status.success() {
        assert!(std::time::Instant::now() < deadline, "the pod never passed its liveness probe: {:?}", spout.logs());
        thread::sleep(Duration::from_millis(200));
    }

    let app = run_named(&format!("{name}-app"), &[], "echo one; echo two; sleep 60");
    assert_eq!(settled_lines(&rx, 2), strings(&["one", "two"]), "{:?}", spout.logs());
    // Read from its json-file log through the read-only mount, not through the API.
    let (status, body) = http_get(port, "/containers").expect("/containers");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed = list.as_array().unwrap().iter().find(|c| c["id"] == app.id()).expect("the app in /containers");
    assert_eq!(listed["source"], "files", "{listed}");
    // Its cursor, kept in the node's directory.
    let deadline = std::time::Instant::now() + ARRIVE;
    while !std::fs::read_to_string(state_dir.join("state.json")).is_ok_and(|s| s.contains(app.id())) {
        assert!(std::time::Instant::now() < deadline, "no cursor for the app in the state directory");
        thread::sleep(Duration::from_millis(100));
    }

    // `kubectl edit configmap`: the kubelet swaps the volume's files, the pod reloads.
    let v2 = "route { name = \"all\", to = spout.env(\"DEST\"), format = function(m) return \"v2 \" .. m.data end }\n";
    kubelet_writes_config_map(&config_dir, "..2026_12_07_10_01_00.000000002", v2);
    let deadline = std::time::Instant::now() + ARRIVE;
    while metric_at(port, "luaspout_config_generation") != Some(2.0) {
        assert!(std::time::Instant::now() < deadline, "the ConfigMap's update was not loaded: {:?}", spout.logs());
        thread::sleep(Duration::from_millis(100));
    }
    app.log_stdout("three\n");
    assert_eq!(settled_lines(&rx, 3), strings(&["one", "two", "v2 three"]));
}

// ---------------------------------------------------------------------------------------------
// what else logspout reads
// ---------------------------------------------------------------------------------------------

/// A TCP endpoint on 127.0.0.1 that forwards every connection to dockerd's unix socket: a
/// `DOCKER_HOST=tcp://…` daemon for the test.
fn docker_tcp_proxy() -> u16 {
    use std::os::unix::net::UnixStream;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(daemon) = UnixStream::connect("/var/run/docker.sock") else { continue };
            let (mut c_read, mut d_write) = (client.try_clone().unwrap(), daemon.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut d_write);
                let _ = d_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut d_read, mut c_write) = (daemon, client);
            thread::spawn(move || {
                let _ = std::io::copy(&mut d_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn docker_host_tcp_is_used() {
    let port = docker_tcp_proxy();
    let rx = TcpReceiver::start();
    let name = unique_name();
    let _ls =
        Luaspout::builder().arg(raw_tcp(&rx, &name)).env("DOCKER_HOST", &format!("tcp://127.0.0.1:{port}")).start();
    let _c = run_named(&name, &[], "echo over tcp; sleep 60");
    assert_eq!(settled_lines(&rx, 1), strings(&["over tcp"]));
}

#[test]
fn retry_count_reports_a_dead_sink_on_health_and_never_exits() {
    let name = unique_name();
    let dead = free_port();
    let mut ls = Luaspout::builder()
        .arg(format!("raw+tcp://127.0.0.1:{dead}?filter.name={name}"))
        .env("RETRY_COUNT", "2")
        .start();
    let _c = run_named(&name, &[], "while true; do echo waiting; sleep 0.2; done");
    let deadline = std::time::Instant::now() + ARRIVE;
    loop {
        let (status, body) = ls.get("/health").expect("/health");
        assert_eq!(status, 200, "a dead sink does not make the router unhealthy: {}", lossy(&body));
        if lossy(&body).contains("sink down") {
            assert!(lossy(&body).contains(&format!("127.0.0.1:{dead}")), "{}", lossy(&body));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sink never reported down: {}", lossy(&body));
        thread::sleep(Duration::from_millis(200));
    }
    ls.assert_running();
}

// ---------------------------------------------------------------------------------------------
// live reload
// ---------------------------------------------------------------------------------------------

#[test]
fn reload_under_traffic_delivers_every_line_once_in_the_live_format() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let addr = rx.addr();
    let config = |v: u32| {
        format!(
            r#"route {{ to = "raw+tcp://{addr}", match = {{ name = "{name}" }}, format = function(m) return "v{v} " .. m.data end }}"#
        )
    };
    let mut ls = Luaspout::builder().config(&config(0)).start();
    let path = ls.config_path().unwrap().to_path_buf();
    let c = run_named(&name, &[], "i=0; while true; do i=$((i+1)); echo $i; sleep 0.01; done");
    rx.wait_until(ARRIVE, |b| b.contains(&b'\n'));

    // 50 rewrites: good format changes (saved in place or by rename), syntax errors and
    // unknown keys, each after the previous one's debounce, while the container writes a
    // numbered line every 10 ms.
    let mut good = vec![0];
    for round in 1..=50u32 {
        match round % 5 {
            0 => std::fs::write(&path, "route { to = ").unwrap(),
            1 => save_by_rename(&path, &config(round).replace("format =", "fromat =")),
            2 | 3 => {
                save_by_rename(&path, &config(round));
                good.push(round);
            }
            _ => {
                std::fs::write(&path, config(round)).unwrap();
                good.push(round);
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    save_by_rename(&path, &config(99));
    good.push(99);
    rx.wait_until(ARRIVE, |b| lossy(b).contains("v99 "));
    docker_ok(&["kill", c.name()]);
    c.wait_exited();
    thread::sleep(SETTLE);
    ls.assert_running();

    let lines = rx.lines();
    let parsed: Vec<(u32, u64)> = lines
        .iter()
        .map(|l| {
            let (v, n) = l.split_once(' ').unwrap_or_else(|| panic!("unexpected line {l:?}"));
            (v.trim_start_matches('v').parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    let numbers: Vec<u64> = parsed.iter().map(|p| p.1).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "every line exactly once, in order");
    let (stdout, _) = c.logs();
    assert_eq!(count_newlines(&stdout), numbers.len(), "all the container wrote");
    for (v, n) in &parsed {
        assert!(good.contains(v), "line {n} formatted by v{v}, which was never a valid config");
    }
    assert!(parsed.windows(2).all(|w| w[0].0 <= w[1].0), "formats follow the configs in order");
    let versions: std::collections::BTreeSet<u32> = parsed.iter().map(|p| p.0).collect();
    assert!(versions.len() >= 10, "reloads took effect while lines flowed: {versions:?}");
    assert_eq!(rx.connections(), 1, "format-only reloads keep the sink's connection");

    let (_, metrics) = ls.get("/metrics").unwrap();
    let metrics = lossy(&metrics);
    let refused = metrics.lines().find(|l| l.starts_with("luaspout_config_reloads_total{result=\"refused\"}")).unwrap();
    assert!(!refused.ends_with(" 0"), "{refused}");
}

#[test]
fn a_refused_reload_is_shown_on_health_until_fixed() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let good = format!(r#"route {{ to = "raw+tcp://{}", match = {{ name = "{name}" }} }}"#, rx.addr());
    let ls = Luaspout::builder().config(&good).start();
    let path = ls.config_path().unwrap().to_path_buf();
    save_by_rename(&path, "\nroute { to = 'nope://x:1' }\n");
    let deadline = std::time::Instant::now() + ARRIVE;
    let body = loop {
        let (status, body) = ls.get("/health").unwrap();
        assert_eq!(status, 200, "a refused config does not make the router unhealthy");
        if lossy(&body).contains("refused") {
            break lossy(&body);
        }
        assert!(std::time::Instant::now() < deadline, "the refusal never showed: {}", lossy(&body));
        thread::sleep(Duration::from_millis(100));
    };
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = health["config_error"].as_str().unwrap();
    assert!(error.contains(&format!("{}:2: route `to` \"nope://x:1\": bad adapter: nope", path.display())), "{body}");
    assert_eq!(ls.stderr().matches("config refused").count(), 1, "logged once: {}", ls.stderr());
    // The old config still routes.
    let _c = run_named(&name, &[], "echo still routed; sleep 60");
    assert_eq!(settled_lines(&rx, 1), strings(&["still routed"]));
    save_by_rename(&path, &good);
    let deadline = std::time::Instant::now() + ARRIVE;
    while lossy(&ls.get("/health").unwrap().1).contains("refused") {
        assert!(std::time::Instant::now() < deadline, "the refusal never cleared");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_endless_filter_stops_only_its_own_message() {
    let (looping, plain) = (TcpReceiver::start(), TcpReceiver::start());
    let name = unique_name();
    let config = format!(
        r#"
route {{ to = "raw+tcp://{a}", match = {{ name = "{name}" }},
        filter = function(m) if m.data == "spin" then while true do end end return true end }}
route {{ to = "raw+tcp://{b}", match = {{ name = "{name}" }} }}
"#,
        a = looping.addr(),
        b = plain.addr()
    );
    let mut ls = Luaspout::builder().config(&config).start();
    let _c = run_named(&name, &[], "echo one; echo spin; echo two; sleep 60");
    assert_eq!(settled_lines(&plain, 3), strings(&["one", "spin", "two"]));
    assert_eq!(
        settled_lines(&looping, 3),
        strings(&["one", "spin", "two"]),
        "the stuck line passes in the default format"
    );
    ls.assert_running();
    assert!(ls.stderr().contains("instruction budget"), "{}", ls.stderr());
}

#[test]
fn startup_banner_lists_the_routes() {
    let name = unique_name();
    let route = format!("syslog+tcp://127.0.0.1:{}?filter.name={name}&append_tag=.db", free_port());
    let ls = Luaspout::start(&route);
    let stderr = ls.stderr();
    assert!(stderr.contains("luaspout starting"), "{stderr}");
    let listed = stderr.lines().find(|l| l.contains(" route ")).unwrap_or_else(|| panic!("no route line: {stderr}"));
    assert!(listed.contains("syslog+tcp://127.0.0.1:") && listed.contains(&format!("filter.name={name}")), "{listed}");
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as `DOCKER_CERT_PATH`
/// holds them (`ca.pem`, `cert.pem`, `key.pem`), made at test time.
fn docker_tls_certs(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let (key, csr, cert, ext) =
            (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={name}"), "-keyout", &key, "-out", &csr],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
    }
    std::fs::copy(dir.join("client.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), dir.join("key.pem")).unwrap();
}

#[test]
fn docker_tls_verify_reaches_a_tls_daemon_with_the_cert_path() {
    require_docker();
    let certs = tempfile::tempdir().unwrap();
    docker_tls_certs(certs.path());
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls_proxy.py");
    let mut proxy = std::process::Command::new("python3")
        .args([script, &port.to_string(), certs.path().to_str().unwrap()])
        .spawn()
        .expect("python3");
    let deadline = std::time::Instant::now() + ARRIVE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS front never listened");
        thread::sleep(Duration::from_millis(50));
    }
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = Luaspout::builder()
        .arg(raw_tcp(&rx, &name))
        .env("DOCKER_HOST", &format!("tcp://127.0.0.1:{port}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs.path().to_str().unwrap())
        .start();
    let _c = run_named(&name, &[], "echo over tls; sleep 60");
    let got = settled_lines(&rx, 1);
    drop(ls);
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_eq!(got, strings(&["over tls"]));
}

#[test]
fn reload_follows_required_files_and_a_config_that_disappears_and_comes_back() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("shape.lua");
    std::fs::write(&module, "return function(m) return 'one ' .. m.data end\n").unwrap();
    let path = dir.path().join("routes.lua");
    let config = format!(
        r#"route {{ to = "raw+tcp://{}", match = {{ name = "{name}" }}, format = require("shape") }}"#,
        rx.addr()
    );
    std::fs::write(&path, &config).unwrap();
    let ls = Luaspout::builder().arg("--config").arg(path.as_os_str()).start();
    let c = run_named(&name, &[], "sleep 60");
    let say = |text: &str, expect: &str| {
        let deadline = std::time::Instant::now() + ARRIVE;
        loop {
            // Lines logged before the reload took effect keep the old format: say it again.
            c.log_stdout(&format!("{text}\n"));
            rx.wait_until(Duration::from_millis(300), |b| lossy(b).contains(expect));
            if lossy(rx.contents()).contains(expect) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never saw {expect:?}: {:?}", rx.lines());
        }
    };
    say("a", "one a\n");
    // An edit of the required module alone is a reload.
    save_by_rename(&module, "return function(m) return 'two ' .. m.data end\n");
    say("b", "two b\n");
    // The config goes away (refused, the running one stays), then comes back changed.
    std::fs::remove_file(&path).unwrap();
    say("c", "two c\n");
    std::fs::write(&path, config.replace("require(\"shape\")", "function(m) return 'three ' .. m.data end")).unwrap();
    say("d", "three d\n");
    drop(ls);
}
