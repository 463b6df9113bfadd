//! How many messages per second one router worker moves, with and without Lua, on one core
//! and without Docker: match, Lua `filter` and `format`, the route's encoder (raw or syslog),
//! into the route's queue, which is emptied and its bytes thrown away.
//!
//! It drives the real worker through [`luaspout::router::Pipeline`] (the worker's own Lua
//! state, its pooled message tables, the formatters, the queue), so what it measures is what a
//! running router pays per line once the line is read. The cases take turns: a warm-up that
//! also picks the message count, then the best of 5 runs of about 200 ms each. Before any
//! timing, the Lua route must give exactly the same bytes as its template twin, so the ratio
//! compares equal work.
//!
//! The Lua cases run under the guard (memory cap and instruction budget), as the router's
//! workers do; one more case runs the same route without it, to show what the guard costs.
//!
//! Rates are per core: the CPU time of this thread (`/proc/thread-self/schedstat`), not wall
//! time, since the machines this runs on are shared and noisy. Nothing is asserted about
//! speed. Run: `cargo bench --bench pipeline`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use luaspout::config::Config;
use luaspout::message::{Container, Message, Source};
use luaspout::router::Pipeline;
use luaspout::settings::{Env, Settings};

/// Distinct messages in the sample; the runs loop over them.
const SAMPLE: usize = 4096;
/// Containers the sample's messages come from (each with five labels, as in compose projects).
const CONTAINERS: usize = 10;
/// Wall time of one timed run.
const RUN_TARGET: Duration = Duration::from_millis(200);
/// Timed runs per case; the best one counts.
const RUNS: usize = 5;

/// The Lua filter of the Lua cases: a cheap, typical one (drop health checks). No sample line
/// is a health check, so every line passes and the output equals the template twin's.
const FILTER: &str = r#"function(m) return not m.data:find("GET /health", 1, true) end"#;
/// The Lua format of the raw Lua case; `.Container.Name` in a template keeps Docker's leading
/// `/`, so the Lua side adds it to give the same bytes.
const FORMAT: &str = r#"function(m) return "/" .. m.container.name .. " " .. m.source .. " " .. m.data end"#;
/// The template twin of [`FORMAT`].
const TEMPLATE: &str = "{{.Container.Name}} {{.Source}} {{.Data}}\n";

/// One measured route.
struct Case {
    name: &'static str,
    /// The routes.lua of the case (one route).
    config: String,
    /// `RAW_FORMAT`, if the case sets one.
    raw_format: Option<&'static str>,
    /// Whether the worker's Lua runs under the guard (memory cap, instruction budget), as it
    /// always does in the router; the one case without it shows what the guard costs.
    guarded: bool,
}

fn cases() -> Vec<Case> {
    let route = |extra: &str, to: &str| format!("route {{ to = {to:?}, {extra} }}");
    let lua = format!("filter = {FILTER}, format = {FORMAT}");
    let lua_filter = format!("filter = {FILTER}");
    // Every tenth sample line is stderr: a route that takes stdout only gets 90 % of a batch,
    // as a route matching some containers or one stream does.
    let stdout_only = r#"match = { sources = { "stdout" } }"#;
    let lua_stdout = format!("{stdout_only}, {lua}");
    let case = |name, config, raw_format| Case { name, config, raw_format, guarded: true };
    vec![
        case("raw, no Lua ({{.Data}})", route("", "raw+tcp://127.0.0.1:1"), None),
        case("raw, no Lua (name source data template)", route("", "raw+tcp://127.0.0.1:1"), Some(TEMPLATE)),
        case("raw, Lua filter + format", route(&lua, "raw+tcp://127.0.0.1:1"), None),
        case("syslog, no Lua", route("", "syslog+tcp://127.0.0.1:1"), None),
        case("syslog, Lua filter", route(&lua_filter, "syslog+tcp://127.0.0.1:1"), None),
        Case {
            guarded: false,
            ..case("raw, Lua filter + format, no guard", route(&lua, "raw+tcp://127.0.0.1:1"), None)
        },
        case("raw, no Lua (template), stdout only", route(stdout_only, "raw+tcp://127.0.0.1:1"), Some(TEMPLATE)),
        case("raw, Lua filter + format, stdout only", route(&lua_stdout, "raw+tcp://127.0.0.1:1"), None),
    ]
}

/// 100-byte-ish application lines (like the end-to-end bench's), from [`CONTAINERS`] containers.
fn sample() -> Vec<Message> {
    let containers: Vec<Arc<Container>> = (0..CONTAINERS)
        .map(|i| {
            Arc::new(Container {
                id: format!("{:064x}", 0x5b6a_0bef_5159_u64 + i as u64),
                name: format!("shop_web_{i}"),
                image: "myorg/web:1.27".into(),
                hostname: format!("web{i}"),
                labels: [
                    ("com.docker.compose.project", "shop"),
                    ("com.docker.compose.service", "web"),
                    ("tier", "front"),
                    ("team", "payments"),
                    ("version", "1.27.3"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                epoch: i as u64 + 1,
                ..Default::default()
            })
        })
        .collect();
    let start_ns = 1_764_000_000_000_000_000i64;
    (0..SAMPLE)
        .map(|i| {
            let status = if i % 20 == 0 { 503 } else { 200 };
            let data = format!(
                "{i:08} INFO [worker-{}] GET /api/v1/orders/{} status={status} duration={}ms user=alice",
                i % 8,
                10_000 + i * 7,
                i % 97
            );
            Message {
                container: containers[i % CONTAINERS].clone(),
                source: if i % 10 == 9 { Source::Stderr } else { Source::Stdout },
                time_ns: start_ns + i as i64 * 1_000_000,
                data: Bytes::from(data),
                // The delivery holds a pump attaches are measured end to end (benches/e2e.rs).
                ack: None,
            }
        })
        .collect()
}

fn pipeline(case: &Case) -> Pipeline {
    let mut pairs = vec![];
    if let Some(f) = case.raw_format {
        pairs.push(("RAW_FORMAT", f));
    }
    let env = Env::from_pairs(&pairs);
    let config = luaspout::lua::validate(Config::from_text("bench.lua", &case.config, env.clone()))
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
    let settings = Settings::from_env(env).expect("settings");
    let pipeline = if case.guarded { Pipeline::new(config, &settings) } else { Pipeline::unguarded(config, &settings) };
    pipeline.unwrap_or_else(|e| panic!("{}: {e:#}", case.name))
}

/// Everything the case's route queued for the sample, line by line.
fn output(p: &mut Pipeline, sample: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    p.route(sample, &mut |_, frames| out.extend_from_slice(&frames.buf));
    out
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("read /proc/thread-self/schedstat");
    let ns: u64 = text.split_whitespace().next().and_then(|f| f.parse().ok()).expect("schedstat's first field");
    Duration::from_nanos(ns)
}

/// One run of `rounds` passes over the sample: (thread CPU, wall), and the bytes queued.
fn run(p: &mut Pipeline, sample: &[Message], rounds: usize) -> (Duration, Duration, u64) {
    let mut bytes = 0u64;
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    for _ in 0..rounds {
        p.route(sample, &mut |_, frames| bytes += frames.buf.len() as u64);
    }
    (thread_cpu() - cpu0, wall0.elapsed(), bytes)
}

fn main() {
    let sample = sample();
    let cases = cases();
    let mut pipelines: Vec<Pipeline> = cases.iter().map(pipeline).collect();

    // Equal work: the Lua route gives the template twin's bytes, the Lua-filtered syslog route
    // the plain syslog route's (syslog's timestamp comes from the message, not the clock).
    let stdout_lines = sample.iter().filter(|m| m.source == Source::Stdout).count();
    for (lua, twin, lines) in [(2, 1, SAMPLE), (4, 3, SAMPLE), (5, 1, SAMPLE), (7, 6, stdout_lines)] {
        let (a, b) = (output(&mut pipelines[lua], &sample), output(&mut pipelines[twin], &sample));
        assert!(
            a == b,
            "{} and {} differ:\n{}\nvs\n{}",
            cases[lua].name,
            cases[twin].name,
            String::from_utf8_lossy(&a[..a.len().min(300)]),
            String::from_utf8_lossy(&b[..b.len().min(300)])
        );
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), lines, "every matched sample line comes out");
    }

    // Warm-up, which also picks each case's pass count for RUN_TARGET.
    let rounds: Vec<usize> = pipelines
        .iter_mut()
        .map(|p| {
            let mut rounds = 1;
            loop {
                let (_, wall, _) = run(p, &sample, rounds);
                if wall >= RUN_TARGET / 4 {
                    return (rounds as f64 * RUN_TARGET.as_secs_f64() / wall.as_secs_f64()).ceil() as usize;
                }
                rounds *= 2;
            }
        })
        .collect();
    let mut best: Vec<Option<(Duration, Duration, u64)>> = vec![None; cases.len()];
    for _ in 0..RUNS {
        for (i, p) in pipelines.iter_mut().enumerate() {
            let r = run(p, &sample, rounds[i]);
            if best[i].is_none_or(|b| r.0 < b.0) {
                best[i] = Some(r);
            }
        }
    }

    println!("pipeline: one router worker, {SAMPLE} messages from {CONTAINERS} containers, best of {RUNS}");
    println!("| route | msgs/s/core (CPU) | ns/msg | msgs/s (wall) | bytes/msg out |");
    println!("|---|---:|---:|---:|---:|");
    let mut rates = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (cpu, wall, bytes) = best[i].expect("measured");
        let msgs = (rounds[i] * SAMPLE) as f64;
        let rate = msgs / cpu.as_secs_f64();
        rates.push(rate);
        println!(
            "| {} | {:.2} M | {:.0} | {:.2} M | {:.0} |",
            case.name,
            rate / 1e6,
            cpu.as_nanos() as f64 / msgs,
            msgs / wall.as_secs_f64() / 1e6,
            bytes as f64 / msgs
        );
    }
    println!();
    println!("Lua filter + format / no Lua ({{{{.Data}}}}): {:.2}", rates[2] / rates[0]);
    println!("Lua filter + format / its template twin:     {:.2}", rates[2] / rates[1]);
    println!("syslog with Lua filter / syslog:             {:.2}", rates[4] / rates[3]);
    println!("Lua filter + format, guarded / without guard: {:.2}", rates[2] / rates[5]);
    println!("Lua filter + format over 90 % of each batch / over all of it: {:.2}", rates[7] / rates[2]);
}
