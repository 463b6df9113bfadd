//! One-off reads of a container's latest lines, for `/logs?tail=N`: a plain (not followed)
//! logs request that ends with the log, turned into messages like the pump's.

use std::collections::VecDeque;
use std::sync::Arc;

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::frames::{Demux, Entry};
use super::lines::{Line, LineAssembler};
use crate::message::{Container, Message};
use crate::settings::Settings;
use crate::timefmt::now_ns;

/// The last `n` lines of `container` up to now, oldest first, and no more than `max_bytes` of
/// them (the oldest go first); empty if Docker cannot be read (the live stream that follows is
/// what matters, and it has its own retries).
pub async fn last_lines(settings: &Settings, container: &Arc<Container>, n: usize, max_bytes: usize) -> Vec<Message> {
    let Ok((docker, socket)) = super::connect(settings).await else { return Vec::new() };
    let options = LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: n.to_string(),
        ..Default::default()
    };
    let mut body = super::body::logs(&docker, socket, &container.id, &options);
    let mut demux = Demux::new(container.tty);
    let mut assembler = LineAssembler::default();
    let mut latest = Latest::new(max_bytes);
    let mut keep = |l: Line| latest.push(l);
    while let Some(Ok(chunk)) = body.next().await {
        let now = now_ns();
        let pushed = demux.push(chunk, &mut |entry| match entry {
            Entry::Frame(source, payload) => assembler.push_frame(source, payload, now, &mut keep),
            Entry::Console(bytes) => assembler.push_console(&bytes, now, &mut keep),
        });
        if pushed.is_err() {
            break;
        }
    }
    assembler.finish(now_ns(), &mut keep);
    latest
        .lines
        .into_iter()
        .map(|l| Message {
            container: container.clone(),
            source: l.source,
            time_ns: l.time_ns,
            data: l.data,
            ack: None,
        })
        .collect()
}

/// The newest lines pushed, no more than `max_bytes` of them: older ones are dropped as newer
/// ones come, so a replay holds at most that much however long the lines are.
struct Latest {
    lines: VecDeque<Line>,
    bytes: usize,
    max_bytes: usize,
}

impl Latest {
    fn new(max_bytes: usize) -> Latest {
        Latest { lines: VecDeque::new(), bytes: 0, max_bytes }
    }

    fn push(&mut self, line: Line) {
        self.bytes += line.data.len();
        self.lines.push_back(line);
        while self.bytes > self.max_bytes {
            let Some(old) = self.lines.pop_front() else { break };
            self.bytes -= old.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;
    use crate::settings::Env;

    #[tokio::test]
    async fn the_last_lines_are_asked_for_in_the_negotiated_version() {
        let dir = tempfile::tempdir().unwrap();
        let frame = super::super::frames::frame;
        let mut answer = frame(1, "2021-12-06T15:27:06.000000001Z one\n");
        answer.extend(frame(2, "2021-12-06T15:27:06.000000002Z two\n"));
        let daemon = super::super::fake_daemon::start(dir.path(), move |_, _| (200, answer.clone()));
        let host = format!("unix://{}", daemon.socket.display());
        let settings = Settings::from_env(Env::from_pairs(&[("DOCKER_HOST", host.as_str())])).unwrap();
        let container = Arc::new(Container { id: "abc".into(), ..Default::default() });

        let lines = last_lines(&settings, &container, 2, 1 << 20).await;
        let got: Vec<_> = lines.iter().map(|m| (m.source, m.time_ns % 10, &m.data[..])).collect();
        assert_eq!(got, [(Source::Stdout, 1, &b"one"[..]), (Source::Stderr, 2, &b"two"[..])]);
        let seen = daemon.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("/v1.41/containers/abc/logs?") && seen[0].contains("tail=2"), "{seen:?}");
    }

    #[test]
    fn the_replay_keeps_the_newest_lines_within_its_bytes() {
        let line = |text: &str| Line {
            source: Source::Stdout,
            time_ns: 0,
            data: bytes::Bytes::copy_from_slice(text.as_bytes()),
            file: None,
        };
        let mut latest = Latest::new(10);
        for text in ["aaaa", "bbbb", "cccc"] {
            latest.push(line(text));
        }
        let kept: Vec<&[u8]> = latest.lines.iter().map(|l| &l.data[..]).collect();
        assert_eq!(kept, [&b"bbbb"[..], b"cccc"]);
        latest.push(line("a line longer than the whole budget"));
        assert!(latest.lines.is_empty() && latest.bytes == 0);
    }
}
