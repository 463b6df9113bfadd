//! One-off reads of a container's latest lines, for `/logs?tail=N`: a plain (not followed)
//! logs request that ends with the log, turned into messages like the pump's.

use std::sync::Arc;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::lines::LineAssembler;
use crate::message::{Container, Message, Source};
use crate::settings::Settings;
use crate::timefmt::now_ns;

/// The last `n` lines of `container` up to now, oldest first, and no more than `max_bytes` of
/// them (the oldest go first); empty if Docker cannot be read (the live stream that follows is
/// what matters, and it has its own retries).
pub async fn last_lines(settings: &Settings, container: &Arc<Container>, n: usize, max_bytes: usize) -> Vec<Message> {
    let Ok(docker) = super::connect(settings) else { return Vec::new() };
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
    let mut lines = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    let mut keep = |l: super::lines::Line| {
        bytes += l.data.len();
        lines.push_back(l);
        while bytes > max_bytes {
            let Some(old) = lines.pop_front() else { break };
            bytes -= old.data.len();
        }
    };
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
    lines
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
