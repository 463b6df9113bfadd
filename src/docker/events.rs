//! Docker's container events, asked for in the API version negotiated with the daemon.
//!
//! bollard 0.21's `events` sends its request without a version, which dockerd answers in its
//! newest API, whatever was negotiated. The request goes through [`super::body::get`] instead,
//! and the answer (one JSON object per event, each ended by `\n`) is cut and parsed here into
//! bollard's `EventMessage`.

use anyhow::Context;
use bollard::Docker;
use bollard::models::EventMessage;
use bytes::BytesMut;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::body;

/// The longest event accepted: dockerd's are well under 4 KiB, a container with many labels
/// a few KiB more.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Follows the events of containers with one of `actions` (`start`, `die`…) from `since_ns`
/// (Unix time in ns, which dockerd reads on its own clock) on: dockerd first replays those of
/// its recent events (it keeps 256) that came at or after it. The request goes out when the stream is
/// first polled. The stream ends with an error when the daemon's answer fails or holds
/// something that is not an event, and ends when the daemon closes it.
pub fn follow(docker: &Docker, actions: &[&str], since_ns: i64) -> BoxStream<'static, anyhow::Result<EventMessage>> {
    let filters = serde_json::json!({ "type": ["container"], "event": actions });
    let since = format!("{}.{:09}", since_ns.div_euclid(1_000_000_000), since_ns.rem_euclid(1_000_000_000));
    let query = match serde_urlencoded::to_string([("filters", filters.to_string()), ("since", since)]) {
        Ok(query) => query,
        Err(e) => return stream::once(async move { Err(anyhow::Error::from(e)) }).boxed(),
    };
    let body = body::get(docker, format!("events?{query}"));
    stream::unfold(Some((body, BytesMut::new())), |state| async move {
        let (mut body, mut buf) = state?;
        loop {
            if let Some(end) = memchr::memchr(b'\n', &buf) {
                let line = buf.split_to(end + 1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(match parse(&line) {
                    Ok(event) => (Ok(event), Some((body, buf))),
                    Err(e) => (Err(e), None),
                });
            }
            if buf.len() > MAX_EVENT_BYTES {
                let error = anyhow::anyhow!("a docker event longer than {MAX_EVENT_BYTES} bytes");
                return Some((Err(error), None));
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(anyhow::Error::from(e)), None)),
                // The daemon closed the stream: a last event without its `\n` still counts.
                None if !buf.iter().all(u8::is_ascii_whitespace) => {
                    return Some((parse(&buf), None));
                }
                None => return None,
            }
        }
    })
    .boxed()
}

/// One event, as dockerd encodes it.
fn parse(line: &[u8]) -> anyhow::Result<EventMessage> {
    serde_json::from_slice(line)
        .with_context(|| format!("not a docker event: {:?}", String::from_utf8_lossy(&line[..line.len().min(200)])))
}

#[cfg(test)]
mod tests {
    use super::super::fake_daemon;
    use super::*;

    const START: &str = r#"{"status":"start","id":"abc","from":"busybox","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"web"}},"scope":"local","time":1764000000,"timeNano":1764000000123456789}"#;
    const DIE: &str =
        r#"{"Type":"container","Action":"die","Actor":{"ID":"def","Attributes":{"exitCode":"0"}},"time":1764000001}"#;

    #[tokio::test]
    async fn events_are_asked_for_in_the_negotiated_version_and_cut_at_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = fake_daemon::start(dir.path(), |_, _| (200, format!("{START}\n\n{DIE}\n").into_bytes()));
        let docker = daemon.docker.negotiate_version().await.unwrap();
        let events: Vec<_> = follow(&docker, &["start", "die"], 1_764_000_000_012_345_678).collect().await;
        let events: Vec<_> = events.into_iter().map(|e| e.unwrap()).collect();
        let seen: Vec<_> =
            events.iter().map(|e| (e.action.clone().unwrap(), e.actor.clone().unwrap().id.unwrap())).collect();
        assert_eq!(seen, [("start".to_string(), "abc".to_string()), ("die".to_string(), "def".to_string())]);
        let requests = daemon.seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        let (path, query) = requests[0].split_once('?').unwrap();
        assert_eq!(path, "/v1.41/events");
        let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        let filters: serde_json::Value = serde_json::from_str(&query[0].1).unwrap();
        assert_eq!(filters, serde_json::json!({ "type": ["container"], "event": ["start", "die"] }));
        assert_eq!(query[1], ("since".to_string(), "1764000000.012345678".to_string()), "seconds.nanoseconds");
    }

    #[tokio::test]
    async fn a_broken_event_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = fake_daemon::start(dir.path(), |_, _| (200, format!("{START}\nnot json\n{DIE}\n").into_bytes()));
        let docker = daemon.docker.negotiate_version().await.unwrap();
        let events: Vec<_> = follow(&docker, &["start"], 0).collect().await;
        assert_eq!(events.len(), 2, "the event before, then the error, then nothing");
        assert!(events[0].is_ok());
        let error = format!("{:#}", events[1].as_ref().unwrap_err());
        assert!(error.contains("not a docker event: \"not json\\n\""), "{error}");
    }

    #[tokio::test]
    async fn an_error_status_is_the_daemons_message() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = fake_daemon::start(dir.path(), |_, _| (500, br#"{"message":"events are off"}"#.to_vec()));
        let docker = daemon.docker.negotiate_version().await.unwrap();
        let events: Vec<_> = follow(&docker, &["start"], 0).collect().await;
        assert_eq!(events.len(), 1);
        let error = format!("{:#}", events[0].as_ref().unwrap_err());
        assert!(error.contains("events are off"), "{error}");
    }
}
