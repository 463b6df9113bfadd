//! One-off reads of a container's latest lines, for `/logs?tail=N`: a plain (not followed)
//! logs request that ends with the log, turned into messages like the pump's.

use std::collections::VecDeque;
use std::sync::Arc;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::lines::{Line, LineAssembler};
use crate::message::{Container, Message, Source};
use crate::settings::Settings;
use crate::timefmt::now_ns;

/// The last `n` lines of `container` up to now, oldest first, and no more than `max_bytes` of
/// them (the oldest go first); empty if Docker cannot be read (the live stream that follows is
/// what matters, and it has its own retries).
pub async fn last_lines(settings: &Settings, container: &Arc<Container>, n: usize, max_bytes: usize) -> Vec<Message> {
    let Ok((docker, _)) = super::connect(settings) else { return Vec::new() };
    let options = LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: n.to_string(),
        ..Default::default()
    };
    let mut stream = docker.logs(&container.id, Some(options));
    let mut assembler = LineAssembler::default();
    let mut latest = Latest::new(max_bytes);
    let mut keep = |l: Line| latest.push(l);
    while let Some(Ok(item)) = stream.next().await {
        let now = now_ns();
        match item {
            LogOutput::StdOut { message } => assembler.push_frame(Source::Stdout, message, now, &mut keep),
            LogOutput::StdErr { message } => assembler.push_frame(Source::Stderr, message, now, &mut keep),
            LogOutput::Console { message } => assembler.push_console(&message, now, &mut keep),
            LogOutput::StdIn { .. } => {}
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
