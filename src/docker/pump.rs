//! One container's log stream: follow `logs` with Docker's timestamps, reassemble lines, and
//! hand them to the container's router worker. When the stream ends while the container still
//! runs (a daemon hiccup, a rotation), reattach from the last line delivered, after a backoff
//! so a misbehaving daemon is never hammered.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::lines::{Line, LineAssembler};
use super::{Inspected, inspect};
use crate::backoff::Backoff;
use crate::message::{Container, Message, Source};
use crate::router::Input;
use crate::stats::{self, Stats};

/// How much later than `State.FinishedAt` a run's last line can be stamped: a line without
/// a newline is flushed when the output pipe closes, after Docker has recorded the exit
/// (measured: about 20 ms on dockerd 20.10).
const UNTERMINATED_LINE_SLACK_NS: i64 = 500_000_000;

/// Where a pump starts reading, and where it has got to: lines stamped before `time_ns` are
/// skipped, and so are the first `skip` lines stamped exactly `time_ns` (Docker's `since` has
/// one-second granularity, so the pump filters the rest itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time_ns: i64,
    pub skip: u32,
}

impl Cursor {
    /// From the beginning of the container's log.
    pub const START: Cursor = Cursor { time_ns: i64::MIN, skip: 0 };

    /// Everything stamped at or after `time_ns`.
    pub fn from(time_ns: i64) -> Cursor {
        Cursor { time_ns, skip: 0 }
    }

    /// Docker's `since` (whole seconds; 0 means from the beginning).
    fn since_secs(&self) -> i32 {
        if self.time_ns <= 0 { 0 } else { (self.time_ns / 1_000_000_000).min(i32::MAX as i64) as i32 }
    }
}

/// Tracks, while reading, which lines the cursor says were already delivered, and which
/// belong to a later run than the one being read.
struct Gate {
    cursor: Cursor,
    seen_at_cursor: u32,
    until_ns: i64,
}

impl Gate {
    fn admit(&mut self, time_ns: i64) -> bool {
        if time_ns < self.cursor.time_ns || time_ns > self.until_ns {
            return false;
        }
        if time_ns == self.cursor.time_ns && self.seen_at_cursor < self.cursor.skip {
            self.seen_at_cursor += 1;
            return false;
        }
        true
    }
}

/// Everything a pump needs.
pub struct PumpArgs {
    pub docker: Docker,
    pub container: watch::Receiver<Arc<Container>>,
    pub start: Cursor,
    /// `tail` for the first request (`TAIL` with `BACKLOG`), `all` otherwise.
    pub tail: String,
    pub inbox: mpsc::Sender<Input>,
    pub stats: Arc<Stats>,
    /// Counts the watcher's connections to dockerd: a pump waiting for the daemon retries as
    /// soon as it changes instead of at the end of its backoff.
    pub connections: watch::Receiver<u64>,
    pub shutdown: CancellationToken,
}

/// Reads the container until it stops (or is removed, or luaspout shuts down).
pub async fn run(args: PumpArgs) -> Cursor {
    let PumpArgs { docker, mut container, start, mut tail, inbox, stats, mut connections, shutdown } = args;
    let mut current = container.borrow_and_update().clone();
    let id = current.id.clone();
    let mut position = start;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut lines: Vec<Line> = Vec::new();
    // After the container has stopped, one read without `follow`, up to the end of the run
    // that stopped (the container may be running again already): dockerd 20.10 does not send
    // a last line that has no newline to a follower with timestamps, but a plain read has it.
    let mut final_read = false;
    let mut until_ns = i64::MAX;
    loop {
        let options = LogsOptions {
            follow: !final_read,
            until: if until_ns == i64::MAX { 0 } else { (until_ns / 1_000_000_000 + 1).min(i32::MAX as i64) as i32 },
            stdout: true,
            stderr: true,
            timestamps: true,
            since: position.since_secs(),
            tail: std::mem::replace(&mut tail, "all".into()),
        };
        debug!(container_id = %current.short_id(), container_name = %current.name, since = options.since, "attaching");
        let mut stream = docker.logs(&id, Some(options));
        let mut gate = Gate { cursor: position, seen_at_cursor: 0, until_ns };
        let mut assembler = LineAssembler::default();
        let mut delivered_any = false;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = shutdown.cancelled() => return position,
            };
            let now = now_ns();
            match item {
                Some(Ok(LogOutput::StdOut { message })) => {
                    assembler.push_frame(Source::Stdout, message, now, &mut |l| lines.push(l))
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    assembler.push_frame(Source::Stderr, message, now, &mut |l| lines.push(l))
                }
                Some(Ok(LogOutput::Console { message })) => {
                    assembler.push_console(&message, now, &mut |l| lines.push(l))
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    debug!(container_id = %current.short_id(), error = %e, "log stream failed");
                    break;
                }
                None => break,
            }
            if container.has_changed().unwrap_or(false) {
                let renamed = container.borrow_and_update().clone();
                let _ = inbox.send(Input::Renamed(current.epoch)).await;
                current = renamed;
            }
            if !deliver(&mut lines, &mut gate, &mut position, &current, &inbox, &shutdown).await {
                return position;
            }
            delivered_any |= gate.cursor != position;
        }
        assembler.finish(now_ns(), &mut |l| lines.push(l));
        stats::add(&stats.lines_split, assembler.split_lines);
        if !deliver(&mut lines, &mut gate, &mut position, &current, &inbox, &shutdown).await {
            return position;
        }
        if delivered_any {
            backoff.reset();
        }
        if final_read {
            let _ = inbox.send(Input::Stopped { id: id.clone(), epoch: current.epoch }).await;
            return position;
        }
        // The stream ended: the container stopped, or the daemon went away. Ask which.
        let mut daemon_was_away = false;
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            // A daemon that is restarting can accept a request and not answer it: when the
            // watcher has reconnected meanwhile, ask again on a fresh request.
            let answer = tokio::select! {
                answer = inspect(&docker, &id) => answer,
                _ = connections.changed() => continue,
                _ = shutdown.cancelled() => return position,
            };
            match answer {
                Ok(Inspected::Found(c)) if c.running => break,
                Ok(Inspected::Found(c)) => {
                    final_read = true;
                    until_ns = c.finished_ns.map_or(i64::MAX, |end| end.saturating_add(UNTERMINATED_LINE_SLACK_NS));
                    break;
                }
                Ok(Inspected::Gone) => {
                    let _ = inbox.send(Input::Stopped { id: id.clone(), epoch: current.epoch }).await;
                    return position;
                }
                Err(e) => {
                    debug!(container_id = %current.short_id(), error = %e, "cannot inspect container; retrying");
                    daemon_was_away = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry.next_delay()) => {}
                _ = connections.changed() => {}
                _ = shutdown.cancelled() => return position,
            }
        }
        // Reattach at once after a daemon outage or to read a stopped run's end; a stream that
        // ends while the container runs on and the daemon answers is backed off, so a
        // misbehaving daemon is never hammered.
        if final_read || daemon_was_away {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return position,
        }
    }
}

/// Sends the collected lines that the gate admits, advancing the position. False on shutdown
/// or when the router is gone.
async fn deliver(
    lines: &mut Vec<Line>,
    gate: &mut Gate,
    position: &mut Cursor,
    container: &Arc<Container>,
    inbox: &mpsc::Sender<Input>,
    shutdown: &CancellationToken,
) -> bool {
    for line in lines.drain(..) {
        if !gate.admit(line.time_ns) {
            continue;
        }
        *position = if line.time_ns == position.time_ns {
            Cursor { time_ns: line.time_ns, skip: position.skip + 1 }
        } else {
            Cursor { time_ns: line.time_ns, skip: 1 }
        };
        let msg = Message { container: container.clone(), source: line.source, time_ns: line.time_ns, data: line.data };
        let sent = tokio::select! {
            r = inbox.send(Input::Line(msg)) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        };
        if !sent {
            return false;
        }
    }
    true
}

/// The current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_skips_what_the_cursor_delivered() {
        let mut g = Gate { cursor: Cursor { time_ns: 100, skip: 2 }, seen_at_cursor: 0, until_ns: 101 };
        let admitted: Vec<bool> = [99, 100, 100, 100, 101, 102].iter().map(|&t| g.admit(t)).collect();
        assert_eq!(admitted, vec![false, false, false, true, true, false]);
    }

    #[test]
    fn since_is_whole_seconds() {
        assert_eq!(Cursor::START.since_secs(), 0);
        assert_eq!(Cursor::from(1_638_804_426_123_456_789).since_secs(), 1_638_804_426);
    }
}
