//! The undecoded body of a container's log stream: read by the pump itself on a unix socket,
//! through bollard's own client otherwise.
//!
//! On a unix socket (the default, and `DOCKER_HOST=unix://…`), [`super::socket`] sends the
//! logs request and reads the answer in the pump's task, so that one read of the socket
//! becomes one piece of body however many log entries it holds. Over TCP (with or without
//! TLS) the request goes through bollard, which knows those transports: its `logs` decodes
//! the stream itself, copying every chunk into a `FramedRead` buffer and allocating once per
//! frame, and its public API has no call that returns the body of an arbitrary request; but
//! `export_container` returns its body as it arrives, chunk by chunk. A request modifier on a
//! clone of the client turns that request into the logs request before it is sent, so the
//! logs request keeps what the client was set up with: the transport, the host, and the
//! timeout for the start of the answer. Both ways ask for the API version negotiated with the
//! daemon, which bollard 0.21 leaves out of its own requests. Either way, [`super::frames`] then
//! cuts the body in place.

use std::path::PathBuf;

use anyhow::Context;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::LogsOptions;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::socket;

/// Follows (or reads, without `follow`) the log of container `id` and yields its body's
/// pieces as they arrive: on the unix socket at `socket_path` when there is one, through the
/// client otherwise. A daemon answering with an error status yields that error, as bollard's
/// `logs` does ([`bollard::errors::Error::DockerResponseServerError`]).
pub fn logs(
    docker: &Docker,
    socket_path: Option<PathBuf>,
    id: &str,
    options: &LogsOptions,
) -> BoxStream<'static, anyhow::Result<Bytes>> {
    let query = match serde_urlencoded::to_string(options).context("cannot encode the logs query") {
        Ok(query) => query,
        Err(e) => return stream::once(async move { Err(e) }).boxed(),
    };
    let Some(path) = socket_path else {
        return get(docker, format!("containers/{id}/logs?{query}")).map_err(anyhow::Error::from).boxed();
    };
    // The API version negotiated with the daemon, never the newest the client knows.
    let target = format!("/v{}/containers/{id}/logs?{query}", docker.client_version());
    let target = match target.parse::<http::uri::PathAndQuery>().with_context(|| format!("invalid request {target:?}"))
    {
        Ok(target) => target,
        Err(e) => return stream::once(async move { Err(e) }).boxed(),
    };
    socket::follow(path, target, docker.timeout()).boxed()
}

/// The container name asked of `export_container`, replaced before the request is sent.
const PLACEHOLDER: &str = "luaspout-request";

/// `GET /v<version>/<target>` (`containers/ID/logs?…`, `containers/ID/json`, `info`) through
/// bollard's client, its body as it arrives: `export_container`'s request, turned into this
/// one before it is sent, so it keeps the client's transport and timeout, and an error status
/// comes back as bollard's error. The version is the one negotiated with the daemon: bollard
/// 0.21 sends its own requests without one, which dockerd answers in its newest API.
pub fn get(docker: &Docker, target: String) -> BoxStream<'static, Result<Bytes, DockerError>> {
    let target = format!("v{}/{target}", docker.client_version());
    docker
        .clone()
        .with_request_modifier(move |request| retarget(request, &target))
        .export_container(PLACEHOLDER)
        .boxed()
}

/// `…[/v<version>]/containers/<placeholder>/export` → `…/<target>`, keeping the scheme and
/// the host (a unix socket's is its hex-encoded path); `target` brings its own version. Any
/// other request is left as it is.
fn retarget<B>(mut request: http::Request<B>, target: &str) -> http::Request<B> {
    let mut parts = request.uri().clone().into_parts();
    let export = format!("/containers/{PLACEHOLDER}/export");
    let Some(prefix) = parts.path_and_query.as_ref().and_then(|p| p.path().strip_suffix(export.as_str())) else {
        return request;
    };
    let base = match prefix.rsplit_once('/') {
        Some((base, version)) if is_api_version(version) => base,
        _ => prefix,
    };
    let Ok(wanted) = format!("{base}/{target}").parse() else { return request };
    parts.path_and_query = Some(wanted);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// Whether a path segment is an API version prefix (`v1.41`).
fn is_api_version(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::super::fake_daemon;
    use super::*;

    #[test]
    fn the_export_request_becomes_the_wanted_one() {
        // As bollard 0.21 sends it (no version), and with a version.
        let export = http::Request::get("unix://2f7661722f72756e/containers/luaspout-request/export").body(()).unwrap();
        let logs = retarget(export, "v1.41/containers/abc/logs?follow=true&tail=all");
        assert_eq!(logs.uri().to_string(), "unix://2f7661722f72756e/v1.41/containers/abc/logs?follow=true&tail=all");
        let https =
            http::Request::get("https://docker:2376/v1.44/containers/luaspout-request/export").body(()).unwrap();
        assert_eq!(retarget(https, "v1.41/info").uri().to_string(), "https://docker:2376/v1.41/info");
        let other = http::Request::get("https://docker:2376/v1.44/containers/abc/export").body(()).unwrap();
        assert_eq!(retarget(other, "v1.41/info").uri().path(), "/v1.44/containers/abc/export");
    }

    fn options() -> LogsOptions {
        LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: 7,
            until: 0,
            tail: "all".into(),
        }
    }

    #[tokio::test]
    async fn the_body_comes_raw_from_the_request_bollard_logs_sends() {
        let dir = tempfile::tempdir().unwrap();
        let frame = b"\x01\x00\x00\x00\x00\x00\x00\x02a\n";
        let daemon = fake_daemon::start(dir.path(), |_, _| (200, frame.to_vec()));
        let docker = daemon.docker.negotiate_version().await.unwrap();
        for path in [Some(daemon.socket.clone()), None] {
            let body: Vec<u8> = logs(&docker, path, "abc", &options()).map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(body, frame);
        }
        let _ = docker.logs("abc", Some(options())).collect::<Vec<_>>().await;
        let seen = daemon.seen.lock().unwrap();
        let [on_the_socket, through_bollard, bollards] = seen.as_slice() else { panic!("{seen:?}") };
        // bollard 0.21 drops the version prefix (`Url::join` with an absolute path): both of
        // luaspout's ways ask for the version negotiated with the daemon, with bollard's query.
        let query = "?follow=true&stdout=true&stderr=true&since=7&until=0&timestamps=true&tail=all";
        assert_eq!(bollards, &format!("/containers/abc/logs{query}"));
        assert_eq!(on_the_socket, &format!("/v1.41/containers/abc/logs{query}"));
        assert_eq!(through_bollard, on_the_socket);
    }

    #[tokio::test]
    async fn an_error_status_is_bollards_error_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = fake_daemon::start(dir.path(), |_, _| (404, br#"{"message":"No such container: abc"}"#.to_vec()));
        let docker = daemon.docker.negotiate_version().await.unwrap();
        for socket in [Some(daemon.socket.clone()), None] {
            let items: Vec<_> = logs(&docker, socket, "abc", &options()).collect().await;
            let [Err(e)] = items.as_slice() else { panic!("one error: {items:?}") };
            assert!(
                matches!(
                    e.downcast_ref(),
                    Some(bollard::errors::Error::DockerResponseServerError { status_code: 404, message })
                        if message == "No such container: abc"
                ),
                "{e:#}"
            );
        }
    }
}
