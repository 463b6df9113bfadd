//! Docker's JSON answers (a container's inspect, the container list, the engine's info) read
//! as plain JSON, on bollard's own client.
//!
//! bollard decodes them into its typed models: an inspect is a `ContainerInspectResponse`
//! (every field of `HostConfig`, `Mounts`, `NetworkSettings`…), the info a `SystemInfo` (Swarm's
//! whole cluster spec). Decoding those was about 0.85 MB of the binary's code, a tenth of it,
//! for the dozen fields luaspout reads (and idle RSS follows the binary's size:
//! docs/performance.md, Memory); templates want the inspect as JSON anyway. The request goes
//! through [`super::body::get`], so it keeps the client's transport, API version and timeout,
//! and an error status comes back as bollard's error (a 404 as
//! `DockerResponseServerError { status_code: 404, .. }`).

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::Value as Json;

/// `GET /<version>/<path>` (`containers/ID/json`, `containers/json`, `info`), its body as JSON.
pub async fn get(docker: &Docker, path: &str) -> Result<Json, DockerError> {
    let chunks: Vec<Bytes> = super::body::get(docker, path.to_string()).try_collect().await?;
    Ok(serde_json::from_slice(&chunks.concat())?)
}

/// The string at `pointer` (`/State/StartedAt`), if there is one.
pub fn str_at<'a>(json: &'a Json, pointer: &str) -> Option<&'a str> {
    json.pointer(pointer).and_then(Json::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_comes_as_json_and_an_error_status_as_bollards_error() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = super::super::fake_daemon::start(dir.path(), |path, _| match path {
            "/v1.41/info" => (200, br#"{"DockerRootDir":"/srv/docker","Swarm":{}}"#.to_vec()),
            _ => (404, br#"{"message":"No such container: abc"}"#.to_vec()),
        });
        let docker = daemon.docker.negotiate_version().await.unwrap();

        let info = get(&docker, "info").await.unwrap();
        assert_eq!(str_at(&info, "/DockerRootDir"), Some("/srv/docker"));
        let gone = get(&docker, "containers/abc/json").await;
        assert!(matches!(gone, Err(DockerError::DockerResponseServerError { status_code: 404, .. })), "{gone:?}");
        // With the negotiated version, which bollard 0.21 leaves out of its own requests.
        assert_eq!(*daemon.seen.lock().unwrap(), ["/v1.41/info", "/v1.41/containers/abc/json"]);
    }
}
