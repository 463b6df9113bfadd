//! Authoring tools: `luaspout try`, and the `test {…}` cases a config declares for
//! `luaspout check`.
//!
//! Both make messages from sample input (plain lines, or messages written as JSON objects or
//! Lua tables, from made-up containers) and run them through [`crate::router::dry_run`]: the
//! router's own match, filter, multiline and format code, with no Docker and no sockets. What
//! they show is therefore byte for byte what the sinks would receive, and a config can be
//! written and tested on a laptop.
//!
//! Made-up messages are deterministic where it matters: a sample without a `time` gets the
//! start time plus 1 ms per input line, and a container gets an ID derived from its name.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use crate::config::Config;
pub use crate::config::cases::{Sample, SampleContainer, SampleInput, SampleTime, TestCase};
use crate::message::{Container, Message, Source};
use crate::settings::Settings;
use bytes::Bytes;

/// The name of the container a sample comes from when it does not say.
pub const DEFAULT_CONTAINER: &str = "try";

/// When `test{}` inputs happen: 2024-01-01T00:00:00Z, fixed so that expected syslog
/// timestamps and `msg.time` never change.
pub const TEST_START_NS: i64 = 1_704_067_200_000_000_000;

/// The time between two inputs without a `time`: small enough that a multiline group is not
/// cut by its `flush_after`, and distinct so the order shows in timestamps.
pub const STEP_NS: i64 = 1_000_000;

/// The `State.Pid` of a made-up container (syslog's PROCID), unless the sample gives one.
const DEFAULT_PID: i64 = 1;

/// Reads one line of `luaspout try` input (without its newline): a JSON object is a message,
/// anything else is data, unless `lines_only`.
pub fn parse_try_line(line: &[u8], lines_only: bool) -> Result<SampleInput, String> {
    if lines_only || line.trim_ascii_start().first() != Some(&b'{') {
        return Ok(SampleInput::Line(line.to_vec()));
    }
    serde_json::from_slice::<Box<Sample>>(line)
        .map(SampleInput::Message)
        .map_err(|e| format!("not a message: {e} (pass --lines to read every line as plain data)"))
}

/// Parses a time given as RFC 3339 text or integer nanoseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    match crate::timefmt::parse_rfc3339_nanos(text.as_bytes()) {
        Some((ns, used)) if used == text.len() => Ok(ns),
        _ => Err(format!("bad time {text:?}: expected RFC 3339 (2024-01-01T00:00:00Z) or integer nanoseconds")),
    }
}

/// Turns inputs into [`Message`]s, giving the n-th input (from 0) the time `start + n ms`
/// unless it has its own, and one [`Container`] per distinct container description.
pub struct MessageMaker {
    start_ns: i64,
    count: i64,
    containers: HashMap<SampleContainer, Arc<Container>>,
}

impl MessageMaker {
    pub fn new(start_ns: i64) -> MessageMaker {
        MessageMaker { start_ns, count: 0, containers: HashMap::new() }
    }

    /// The message for the next input.
    pub fn make(&mut self, input: &SampleInput) -> Result<Message, String> {
        let default_time = self.start_ns.saturating_add(self.count.saturating_mul(STEP_NS));
        self.count += 1;
        let default = SampleContainer::default();
        let (data, source, time, container) = match input {
            SampleInput::Line(line) => (line.clone(), None, None, &default),
            SampleInput::Message(s) => {
                (s.data.clone().into_bytes(), s.source.as_deref(), s.time.as_ref(), &s.container)
            }
        };
        let source = match source {
            None => Source::Stdout,
            Some(s) => {
                Source::parse(s).ok_or_else(|| format!("unknown source {s:?} (use \"stdout\" or \"stderr\")"))?
            }
        };
        let time_ns = match time {
            None => default_time,
            Some(SampleTime::Nanos(ns)) => *ns,
            Some(SampleTime::Text(t)) => parse_time(t)?,
        };
        let next_epoch = self.containers.len() as u64 + 1;
        let container =
            self.containers.entry(container.clone()).or_insert_with(|| Arc::new(make_container(container, next_epoch)));
        Ok(Message { container: container.clone(), source, time_ns, data: Bytes::from(data), ack: None })
    }
}

fn make_container(c: &SampleContainer, epoch: u64) -> Container {
    let name = c.name.clone().unwrap_or_else(|| DEFAULT_CONTAINER.to_string());
    let id = c.id.clone().unwrap_or_else(|| stable_id(&name));
    let hostname = c.hostname.clone().unwrap_or_else(|| id[..id.len().min(12)].to_string());
    Container {
        image: c.image.clone().unwrap_or_default(),
        hostname,
        pid: c.pid.unwrap_or(DEFAULT_PID),
        labels: c.labels.clone(),
        env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        epoch,
        id,
        name,
        ..Container::default()
    }
}

/// 64 hex digits from a name (FNV-1a, four rounds): stable across runs and Rust versions, so
/// expected output that shows an ID or the default hostname does not change.
fn stable_id(name: &str) -> String {
    let mut out = String::with_capacity(64);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..4u8 {
        for b in name.bytes().chain([round]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out
}

/// Writes what `luaspout try` shows: for each route, `== name (n lines)`, then each line as
/// the sink receives it. A line without a final newline (a `RAW_FORMAT` without `\n`, sent as
/// one datagram) is followed by one, so the next header starts on its own line.
pub fn write_listing(results: &[(String, Vec<Vec<u8>>)], out: &mut impl Write) -> std::io::Result<()> {
    for (name, sent) in results {
        writeln!(out, "== {name} ({})", self::lines(sent.len()))?;
        for line in sent {
            out.write_all(line)?;
            if line.last() != Some(&b'\n') {
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// Replaces the lines of each HTTP route that has a Lua `batch` function with the request
/// bodies it would POST (one per `batch_size` lines), so `luaspout try` shows what the
/// endpoint receives.
pub fn batch_bodies(
    results: Vec<(String, Vec<Vec<u8>>)>,
    plans: &[crate::transport::SinkPlan],
) -> anyhow::Result<Vec<(String, Vec<Vec<u8>>)>> {
    use crate::transport::SinkPlan;
    use crate::transport::http::body::BodyBuilder;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let stats = crate::stats::Stats::new();
    Ok(results
        .into_iter()
        .zip(plans)
        .map(|((name, lines), plan)| match plan {
            SinkPlan::Http(plan) if matches!(plan.body, BodyBuilder::Lua { .. }) => {
                let rs = stats.route(&name);
                let bodies = lines
                    .chunks(plan.options.batch_size)
                    .map(|chunk| {
                        let mut frames = crate::transport::Frames::default();
                        for line in chunk {
                            frames.buf.extend_from_slice(line);
                            frames.end_line();
                        }
                        runtime.block_on(plan.body.build(frames, &rs)).0
                    })
                    .collect();
                (name, bodies)
            }
            _ => (name, lines),
        })
        .collect())
}

/// The outcome of a config's tests.
#[derive(Debug, Default)]
pub struct TestReport {
    pub passed: usize,
    /// One report per failed test, starting with its `file:line:`.
    pub failures: Vec<String>,
}

/// Runs each test's input through the config, from a fresh router and Lua state per test (so
/// tests do not see each other's `spout.state`), starting at [`TEST_START_NS`], and compares
/// what the test's route sends with `expect`. A sent line is compared without the newline
/// that ends it on the wire.
pub fn run_tests(config: &Config, settings: &Settings, tests: &[TestCase]) -> anyhow::Result<TestReport> {
    let mut report = TestReport::default();
    for (i, test) in tests.iter().enumerate() {
        let title = match &test.name {
            Some(name) => format!("test {name:?}"),
            None => format!("test #{}", i + 1),
        };
        match run_test(config, settings, test)? {
            None => report.passed += 1,
            Some(why) => report.failures.push(format!("{}: {title} failed: {why}", test.location)),
        }
    }
    Ok(report)
}

/// `None` if the test passes, else why not.
fn run_test(config: &Config, settings: &Settings, test: &TestCase) -> anyhow::Result<Option<String>> {
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    let route = match (&test.route, names.as_slice()) {
        (Some(r), _) if names.contains(&r.as_str()) => r.clone(),
        (Some(r), _) => return Ok(Some(format!("no route named {r:?} (routes: {})", quoted(&names)))),
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Ok(Some(format!(
                "say which route it tests: `route = …` (the config has {} routes: {})",
                names.len(),
                quoted(&names)
            )));
        }
    };
    let mut maker = MessageMaker::new(TEST_START_NS);
    let mut messages = Vec::with_capacity(test.input.len());
    for (n, input) in test.input.iter().enumerate() {
        match maker.make(input) {
            Ok(m) => messages.push(m),
            Err(e) => return Ok(Some(format!("input #{}: {e}", n + 1))),
        }
    }
    let results = crate::router::dry_run(config.clone(), settings, messages)?;
    let results = batch_bodies(results, &crate::transport::plans(config, settings)?)?;
    let got: Vec<&[u8]> = results
        .iter()
        .find(|(name, _)| *name == route)
        .map(|(_, lines)| lines.iter().map(|l| strip_newline(l)).collect())
        .unwrap_or_default();
    let expect: Vec<&[u8]> = test.expect.iter().map(|l| strip_newline(l)).collect();
    if got == expect {
        return Ok(None);
    }
    let mut why = if got.len() == expect.len() {
        format!("route {route:?} sent other lines")
    } else {
        format!("route {route:?} sent {}, expected {}", lines(got.len()), lines(expect.len()))
    };
    let show = |l: Option<&&[u8]>| l.map_or("nothing".to_string(), |l| format!("{:?}", String::from_utf8_lossy(l)));
    for n in 0..got.len().max(expect.len()) {
        let (e, g) = (expect.get(n), got.get(n));
        if e != g {
            // `got` right under `expected`.
            let pad = " ".repeat(14 + (n + 1).to_string().len());
            why.push_str(&format!("\n  line {}: expected {}\n{pad}got {}", n + 1, show(e), show(g)));
        }
    }
    Ok(Some(why))
}

fn strip_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn lines(n: usize) -> String {
    if n == 1 { "1 line".to_string() } else { format!("{n} lines") }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_messages_and_other_lines_are_data() {
        assert_eq!(parse_try_line(b"hello", false), Ok(SampleInput::Line(b"hello".to_vec())));
        assert_eq!(parse_try_line(b"{\"level\":1}", true), Ok(SampleInput::Line(b"{\"level\":1}".to_vec())));
        let SampleInput::Message(m) =
            parse_try_line(br#"{"data":"x","source":"stderr","container":{"name":"db","labels":{"a":"b"}}}"#, false)
                .unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!(m.data, "x");
        assert_eq!(m.container.name.as_deref(), Some("db"));
        let err = parse_try_line(br#"{"dta":"x"}"#, false).unwrap_err();
        assert!(err.contains("unknown field `dta`") && err.contains("--lines"), "{err}");
    }

    #[test]
    fn made_up_messages_are_deterministic() {
        let mut maker = MessageMaker::new(TEST_START_NS);
        let a = maker.make(&SampleInput::Line(b"a".to_vec())).unwrap();
        let b = maker
            .make(&SampleInput::Message(Box::new(Sample {
                data: "b".into(),
                time: Some(SampleTime::Text("2024-01-01T00:00:01.5Z".into())),
                ..Sample::default()
            })))
            .unwrap();
        let c = maker.make(&SampleInput::Line(b"c".to_vec())).unwrap();
        assert_eq!(a.time_ns, TEST_START_NS);
        assert_eq!(b.time_ns, TEST_START_NS + 1_500_000_000);
        assert_eq!(c.time_ns, TEST_START_NS + 2 * STEP_NS);
        assert!(Arc::ptr_eq(&a.container, &b.container), "same description, same container");
        assert_eq!(a.container.name, "try");
        assert_eq!(a.container.id, stable_id("try"));
        assert_eq!(a.container.id.len(), 64);
        assert_eq!(a.container.hostname, a.container.id[..12]);
        let other = maker
            .make(&SampleInput::Message(Box::new(Sample {
                container: SampleContainer { name: Some("db".into()), ..Default::default() },
                ..Sample::default()
            })))
            .unwrap();
        assert_ne!(other.container.id, a.container.id);
        assert_ne!(other.container.epoch, a.container.epoch);
        let bad = Sample { source: Some("stdin".into()), ..Sample::default() };
        assert!(maker.make(&SampleInput::Message(Box::new(bad))).unwrap_err().contains("unknown source"));
    }

    #[test]
    fn times_parse_as_rfc3339_or_nanoseconds() {
        assert_eq!(parse_time("2024-01-01T00:00:00Z"), Ok(TEST_START_NS));
        assert_eq!(parse_time("42"), Ok(42));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2024-01-01T00:00:00Zjunk").is_err());
    }

    #[test]
    fn listing_shows_each_route_and_ends_every_line() {
        let mut out = Vec::new();
        let results =
            vec![("a".to_string(), vec![b"x\n".to_vec(), b"y".to_vec()]), ("b".to_string(), vec![b"z\n".to_vec()])];
        write_listing(&results, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "== a (2 lines)\nx\ny\n== b (1 line)\nz\n");
    }
}
