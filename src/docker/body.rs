//! The undecoded body of a container's log stream, on bollard's own client.
//!
//! bollard's `logs` decodes the stream itself: it copies every chunk into a `FramedRead`
//! buffer and allocates once per frame, which at 100-byte lines costs more CPU than the rest of
//! luaspout's raw route. Its public API has no call that returns the body of an arbitrary
//! request, but `export_container` returns its body as it arrives, chunk by chunk. A request
//! modifier on a clone of the client turns that request into the logs request before it is
//! sent, so the logs request keeps everything the client was set up with: the transport
//! (unix, tcp or tcp+TLS, as `DOCKER_HOST` says), the URL bollard builds for the API version
//! negotiated with the daemon (the very URL its `logs` would request), and the timeout for the
//! start of the answer. [`super::frames`] then cuts the body in place.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::LogsOptions;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

/// Follows (or reads, without `follow`) the log of container `id` and yields its body's chunks
/// as they arrive. A daemon answering with an error status yields that error, as `logs` does.
pub fn logs(docker: &Docker, id: &str, options: &LogsOptions) -> BoxStream<'static, Result<Bytes, DockerError>> {
    let query = match serde_urlencoded::to_string(options) {
        Ok(query) => query,
        Err(e) => return stream::once(async move { Err(DockerError::from(e)) }).boxed(),
    };
    docker.clone().with_request_modifier(move |request| into_logs_request(request, &query)).export_container(id).boxed()
}

/// `…/containers/{id}/export` → `…/containers/{id}/logs?{query}`, keeping the scheme, the host
/// (a unix socket's is its hex-encoded path) and whatever version prefix bollard put before the
/// path. Any other request is left as it is.
fn into_logs_request<B>(mut request: http::Request<B>, query: &str) -> http::Request<B> {
    let mut parts = request.uri().clone().into_parts();
    let Some(path) = parts.path_and_query.as_ref().and_then(|p| p.path().strip_suffix("/export")) else {
        return request;
    };
    let Ok(logs) = format!("{path}/logs?{query}").parse() else { return request };
    parts.path_and_query = Some(logs);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn the_export_request_becomes_the_logs_request() {
        let export = http::Request::get("unix://2f7661722f72756e/v1.41/containers/abc/export").body(()).unwrap();
        let logs = into_logs_request(export, "follow=true&tail=all");
        assert_eq!(logs.uri().to_string(), "unix://2f7661722f72756e/v1.41/containers/abc/logs?follow=true&tail=all");
        let https = http::Request::get("https://docker:2376/v1.44/containers/abc/export").body(()).unwrap();
        assert_eq!(into_logs_request(https, "x=1").uri().path(), "/v1.44/containers/abc/logs");
    }

    /// A daemon on a unix socket that answers every request with `body` and records the
    /// requested path and query.
    async fn fake_docker(dir: &std::path::Path, body: &'static [u8]) -> (Docker, Arc<Mutex<Vec<String>>>) {
        let path = dir.join("docker.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            log.lock().unwrap().push(uri.to_string());
            async move {
                let version = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;
                if uri.path().ends_with("/version") { version.as_bytes().to_vec() } else { body.to_vec() }
            }
        });
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let docker = Docker::connect_with_unix(path.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION).unwrap();
        (docker, seen)
    }

    #[tokio::test]
    async fn the_body_comes_raw_from_the_request_bollard_logs_sends() {
        let dir = tempfile::tempdir().unwrap();
        let frame = b"\x01\x00\x00\x00\x00\x00\x00\x02a\n";
        let (docker, seen) = fake_docker(dir.path(), frame).await;
        let docker = docker.negotiate_version().await.unwrap();
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: 7,
            until: 0,
            tail: "all".into(),
        };
        let body: Vec<u8> = logs(&docker, "abc", &options).map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(body, frame);
        let _ = docker.logs("abc", Some(options)).collect::<Vec<_>>().await;
        let seen = seen.lock().unwrap();
        let [.., ours, bollards] = seen.as_slice() else { panic!("{seen:?}") };
        assert_eq!(ours, bollards, "the same URL: path, API version and query");
        assert!(ours.ends_with(
            "/containers/abc/logs?follow=true&stdout=true&stderr=true&since=7&until=0&timestamps=true&tail=all"
        ));
    }
}
