//! `/metrics` in the Prometheus text format: every counter of [`crate::stats::Stats`], so drops
//! are visible and not just logged, and the gauges read at scrape time (queues, paused
//! containers, Lua calls in progress).
//!
//! The families are one table, [`FAMILIES`]: a name, a type, a help text and how to read the
//! samples from a [`Scrape`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;

use super::AppState;
use crate::message::ReadFrom;
use crate::router::Generation;
use crate::stats::RouteStats;

/// What one scrape reads, gathered once.
struct Scrape<'a> {
    state: &'a AppState,
    /// The stats of every route that has run since start.
    routes: Vec<Arc<RouteStats>>,
    /// The config in force, for its queues.
    generation: Arc<Generation>,
}

/// `(labels without braces, value)` pairs; empty labels for a family of one sample.
type Samples = Vec<(String, f64)>;

/// A route's counter of one outcome, as `luaspout_route_lines_total{outcome}` names it.
type Outcome = (&'static str, fn(&RouteStats) -> &AtomicU64);

/// One metric family.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Scrape) -> Samples,
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

/// Every family, in the order they are written.
const FAMILIES: &[Family] = &[
    Family {
        name: "luaspout_docker_up",
        kind: GAUGE,
        help: "Whether the Docker daemon is reachable.",
        samples: |s| one(u64::from(s.state.health.problem().is_none())),
    },
    Family {
        name: "luaspout_lines_read_total",
        kind: COUNTER,
        help: "Lines read from Docker.",
        samples: |s| one(load(&s.state.stats.lines_in)),
    },
    Family {
        name: "luaspout_lines_split_total",
        kind: COUNTER,
        help: "Lines longer than the line cap, emitted in pieces.",
        samples: |s| one(load(&s.state.stats.lines_split)),
    },
    Family {
        name: "luaspout_lines_repeated_by_docker_total",
        kind: COUNTER,
        help: "Lines Docker sent a second time (older than the last line of their stream), skipped.",
        samples: |s| one(load(&s.state.stats.lines_repeated_by_docker)),
    },
    Family {
        name: "luaspout_multiline_caps_total",
        kind: COUNTER,
        help: "Multiline groups cut at their line or byte cap.",
        samples: |s| one(load(&s.state.stats.multiline_caps)),
    },
    Family {
        name: "luaspout_logs_viewers",
        kind: GAUGE,
        help: "Clients following /logs or the web viewer.",
        samples: |s| one(s.state.tap.viewers() as u64),
    },
    Family {
        name: "luaspout_logs_skipped_total",
        kind: COUNTER,
        help: "Lines /logs clients missed because they read too slowly.",
        samples: |s| one(load(&s.state.tap.skipped)),
    },
    Family {
        name: "luaspout_config_generation",
        kind: GAUGE,
        help: "The number of the config in force.",
        samples: |s| one(load(&s.state.health.generation)),
    },
    Family {
        name: "luaspout_config_reloads_total",
        kind: COUNTER,
        help: "Config reloads, accepted or refused.",
        samples: |s| {
            vec![
                (r#"result="ok""#.into(), load(&s.state.stats.reloads_ok) as f64),
                (r#"result="refused""#.into(), load(&s.state.stats.reloads_failed) as f64),
            ]
        },
    },
    Family {
        name: "luaspout_lua_memory_resets_total",
        kind: COUNTER,
        help: "Lua states rebuilt after staying near their LUASPOUT_LUA_MEMORY_MB cap.",
        samples: |s| one(load(&s.state.stats.lua_memory_resets)),
    },
    Family {
        name: "luaspout_lua_busy_seconds",
        kind: GAUGE,
        help: "How long each thread that calls Lua has been in its current call (0 when idle).",
        samples: |s| {
            let busy = s.state.health.lua_busy();
            s.state
                .health
                .lua_threads()
                .into_iter()
                .map(|thread| {
                    let seconds = busy.iter().find(|b| b.thread == thread).map_or(0.0, |b| b.elapsed.as_secs_f64());
                    (format!(r#"thread="{}""#, escape(&thread)), seconds)
                })
                .collect()
        },
    },
    Family {
        name: "luaspout_route_lines_total",
        kind: COUNTER,
        help: "Lines per route and outcome.",
        samples: |s| {
            s.per_route_outcomes(&[
                ("matched", |r| &r.matched),
                ("filtered", |r| &r.filtered),
                ("queued", |r| &r.queued),
                ("sent", |r| &r.sent),
                ("dropped_queue_full", |r| &r.dropped_queue_full),
                ("dropped_write", |r| &r.dropped_write),
                ("dropped_rejected", |r| &r.dropped_rejected),
                ("dropped_route_removed", |r| &r.dropped_route_removed),
            ])
        },
    },
    Family {
        name: "luaspout_route_http_rejected_lines_total",
        kind: COUNTER,
        help: "Lines in HTTP batches the endpoint refused as bad (400, 413, 422), by status.",
        samples: |s| {
            s.routes
                .iter()
                .flat_map(|r| {
                    let route = route_label(&r.label());
                    let by_status = r.rejected_by_status.lock().expect("stats lock").clone();
                    by_status.into_iter().map(move |(status, n)| (format!(r#"{route},status="{status}""#), n as f64))
                })
                .collect()
        },
    },
    Family {
        name: "luaspout_lines_dropped_total",
        kind: COUNTER,
        help: "Lines dropped for a reason no single route's counters show: held by a route when its removal's grace period ended (route_removed), held by a writer that died (abandoned), or in json-file log entries that were not dockerd's JSON (malformed_entry).",
        samples: |s| {
            vec![
                (r#"reason="route_removed""#.into(), load(&s.state.stats.lines_dropped_route_removed) as f64),
                (r#"reason="abandoned""#.into(), load(&s.state.stats.lines_abandoned) as f64),
                (r#"reason="malformed_entry""#.into(), load(&s.state.stats.log_entries_malformed) as f64),
            ]
        },
    },
    Family {
        name: "luaspout_log_rotation_gaps_total",
        kind: COUNTER,
        help: "Times a json-file log being read was found rotated away (max-file rotations between two reads, or while luaspout was not running): lines in files deleted meanwhile are lost, and cannot be counted.",
        samples: |s| one(load(&s.state.stats.log_rotation_gaps)),
    },
    Family {
        name: "luaspout_containers_reading",
        kind: GAUGE,
        help: "Containers being read, by source: their json-file log read directly (files), or the Docker API (api).",
        samples: |s| {
            let containers = s.state.tap.containers();
            let files = containers.iter().filter(|c| s.state.tap.source_of(&c.id) == ReadFrom::Files).count();
            vec![
                (r#"source="files""#.into(), files as f64),
                (r#"source="api""#.into(), (containers.len() - files) as f64),
            ]
        },
    },
    Family {
        name: "luaspout_containers_unread_total",
        kind: COUNTER,
        help: "Containers that started but could not be inspected before they were gone; their lines were not read.",
        samples: |s| one(load(&s.state.stats.containers_unread)),
    },
    Family {
        name: "luaspout_log_lines_dropped_total",
        kind: COUNTER,
        help: "luaspout's own log lines that could not be written (stderr closed or broken).",
        samples: |_| one(crate::logging::dropped()),
    },
    Family {
        name: "luaspout_route_lua_errors_total",
        kind: COUNTER,
        help: "Errors, spent budgets and failed allocations in a route's Lua functions.",
        samples: |s| s.per_route(|r| load(&r.lua_errors) as f64),
    },
    Family {
        name: "luaspout_route_format_errors_total",
        kind: COUNTER,
        help: "Template execution errors in a route's RAW_FORMAT/SYSLOG_* rendering.",
        samples: |s| s.per_route(|r| load(&r.format_errors) as f64),
    },
    Family {
        name: "luaspout_route_http_batches_total",
        kind: COUNTER,
        help: "HTTP batches acknowledged with a 2xx.",
        samples: |s| s.per_route(|r| load(&r.batches_sent) as f64),
    },
    Family {
        name: "luaspout_route_retries_total",
        kind: COUNTER,
        help: "HTTP requests tried again after a connection error, timeout, 429 or 5xx.",
        samples: |s| s.per_route(|r| load(&r.retries) as f64),
    },
    Family {
        name: "luaspout_route_tls_handshake_failures_total",
        kind: COUNTER,
        help: "TLS handshakes that failed (untrusted or mismatched certificate, missing client certificate).",
        samples: |s| s.per_route(|r| load(&r.tls_failures) as f64),
    },
    Family {
        name: "luaspout_route_bytes_sent_total",
        kind: COUNTER,
        help: "Bytes written to the route's sink.",
        samples: |s| s.per_route(|r| load(&r.bytes_sent) as f64),
    },
    Family {
        name: "luaspout_route_connections_total",
        kind: COUNTER,
        help: "Connections made to the route's sink; more than one means reconnects.",
        samples: |s| s.per_route(|r| load(&r.connections) as f64),
    },
    Family {
        name: "luaspout_route_lua_seconds_total",
        kind: COUNTER,
        help: "Time in the route's Lua filter and format.",
        samples: |s| s.per_route(|r| load(&r.lua_ns) as f64 / 1e9),
    },
    Family {
        name: "luaspout_route_queue_batches",
        kind: GAUGE,
        help: "Batches of lines waiting in the route's queue.",
        samples: |s| s.generation.routes.iter().map(|r| (route_label(&r.name), r.sink.depth() as f64)).collect(),
    },
    Family {
        name: "luaspout_route_queue_bytes",
        kind: GAUGE,
        help: "Bytes of lines waiting in the route's queue.",
        samples: |s| s.generation.routes.iter().map(|r| (route_label(&r.name), r.sink.queued_bytes() as f64)).collect(),
    },
    Family {
        name: "luaspout_route_holding_back",
        kind: GAUGE,
        help: "1 for each container whose reading the route is pausing now (its queue is full and on_full is block, or it holds 200,000 of the container's lines).",
        samples: |s| {
            s.routes
                .iter()
                .flat_map(|r| {
                    let route = route_label(&r.label());
                    r.held_back().into_iter().map(move |c| (format!(r#"{route},container="{}""#, escape(&c)), 1.0))
                })
                .collect()
        },
    },
    Family {
        name: "luaspout_route_backpressure_seconds_total",
        kind: COUNTER,
        help: "Time containers spent paused by the route's full queue, summed over containers.",
        samples: |s| s.per_route(|r| load(&r.paused_ns) as f64 / 1e9),
    },
    Family {
        name: "luaspout_container_lines_read_total",
        kind: COUNTER,
        help: "Lines read per container name (the first 200 names; later ones count as _other).",
        samples: |s| {
            s.state
                .stats
                .containers()
                .into_iter()
                .map(|(name, n)| (format!(r#"container="{}""#, escape(&name)), n as f64))
                .collect()
        },
    },
    Family {
        name: "luaspout_multiline_groups_total",
        kind: COUNTER,
        help: "Multiline groups emitted that joined two lines or more.",
        samples: |s| one(load(&s.state.stats.multiline_groups)),
    },
    Family {
        name: "luaspout_route_connected",
        kind: GAUGE,
        help: "Whether the route's sink is connected.",
        samples: |s| s.per_route(|r| f64::from(u8::from(r.connected.load(Ordering::Relaxed)))),
    },
];

/// The `/metrics` handler.
pub async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let generation = state.generations.borrow().clone();
    let scrape = Scrape { routes: state.stats.routes(), generation, state: &state };
    let mut out = String::new();
    for f in FAMILIES {
        write_family(&mut out, f.name, f.kind, f.help, (f.samples)(&scrape));
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

impl Scrape<'_> {
    /// One sample per route.
    fn per_route(&self, value: impl Fn(&RouteStats) -> f64) -> Samples {
        self.routes.iter().map(|r| (route_label(&r.label()), value(r))).collect()
    }

    /// One sample per route and outcome.
    fn per_route_outcomes(&self, outcomes: &[Outcome]) -> Samples {
        self.routes
            .iter()
            .flat_map(|r| {
                let route = route_label(&r.label());
                outcomes
                    .iter()
                    .map(move |(outcome, counter)| (format!(r#"{route},outcome="{outcome}""#), load(counter(r)) as f64))
            })
            .collect()
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A sample without labels.
fn one(value: u64) -> Samples {
    vec![(String::new(), value as f64)]
}

fn route_label(name: &str) -> String {
    format!(r#"route="{}""#, escape(name))
}

/// Writes one metric family: its HELP and TYPE lines, then one sample per `(labels, value)`.
fn write_family(out: &mut String, name: &str, kind: &str, help: &str, samples: Samples) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Escapes a label value for the Prometheus text format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_says() {
        assert_eq!(escape(r#"raw+tcp://h:1?filter.name=a"b\c"#), r#"raw+tcp://h:1?filter.name=a\"b\\c"#);
        assert_eq!(escape("two\nlines"), r"two\nlines");
        let mut out = String::new();
        write_family(&mut out, "m", "gauge", "Help.", vec![(r#"route="x""#.to_string(), 1.5)]);
        assert_eq!(out, "# HELP m Help.\n# TYPE m gauge\nm{route=\"x\"} 1.5\n");
        let mut out = String::new();
        write_family(&mut out, "c", "counter", "Help.", one(12_345_678_901));
        assert_eq!(out, "# HELP c Help.\n# TYPE c counter\nc 12345678901\n");
    }
}
