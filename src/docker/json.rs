//! Docker's JSON answers (a container's inspect, the container list, the engine's info) read
//! as plain JSON, on bollard's own client.
//!
//! bollard decodes them into its typed models: an inspect is a `ContainerInspectResponse`
//! (every field of `HostConfig`, `Mounts`, `NetworkSettings`…), the info a `SystemInfo` (Swarm's
//! whole cluster spec). Decoding those was about 0.85 MB of the binary's code, a tenth of it,
//! for the dozen fields luaspout reads (and idle RSS follows the binary's size:
//! docs/performance.md, Memory); templates want the inspect as JSON anyway. As in
//! [`super::body`], the request of `export_container` (whose body bollard hands over as it
//! arrives) is turned into the wanted one before it is sent, so it keeps the client's
//! transport, API version and timeout, and an error status comes back as bollard's error
//! (a 404 as `DockerResponseServerError { status_code: 404, .. }`).

use bollard::Docker;
use bollard::errors::Error as DockerError;
use futures_util::TryStreamExt;
use serde_json::Value as Json;

/// The container name asked of `export_container`, replaced before the request is sent.
const PLACEHOLDER: &str = "luaspout-json";

/// `GET /<version>/<path>` (`containers/ID/json`, `containers/json`, `info`), its body as JSON.
pub async fn get(docker: &Docker, path: &str) -> Result<Json, DockerError> {
    let path = path.to_string();
    let chunks: Vec<bytes::Bytes> = docker
        .clone()
        .with_request_modifier(move |request| retarget(request, &path))
        .export_container(PLACEHOLDER)
        .try_collect()
        .await?;
    Ok(serde_json::from_slice(&chunks.concat())?)
}

/// `…/containers/<placeholder>/export` → `…/<path>`, keeping the scheme, the host (a unix
/// socket's is its hex-encoded path) and the version prefix bollard put before the path.
/// Any other request is left as it is.
fn retarget<B>(mut request: http::Request<B>, path: &str) -> http::Request<B> {
    let mut parts = request.uri().clone().into_parts();
    let export = format!("/containers/{PLACEHOLDER}/export");
    let Some(prefix) = parts.path_and_query.as_ref().and_then(|p| p.path().strip_suffix(export.as_str())) else {
        return request;
    };
    let Ok(target) = format!("{prefix}/{path}").parse() else { return request };
    parts.path_and_query = Some(target);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// The string at `pointer` (`/State/StartedAt`), if there is one.
pub fn str_at<'a>(json: &'a Json, pointer: &str) -> Option<&'a str> {
    json.pointer(pointer).and_then(Json::as_str)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn the_export_request_becomes_the_wanted_one() {
        let export =
            http::Request::get("unix://2f7661722f72756e/v1.41/containers/luaspout-json/export").body(()).unwrap();
        let inspect = retarget(export, "containers/abc/json");
        assert_eq!(inspect.uri().to_string(), "unix://2f7661722f72756e/v1.41/containers/abc/json");
        let https = http::Request::get("https://docker:2376/v1.44/containers/luaspout-json/export").body(()).unwrap();
        assert_eq!(retarget(https, "info").uri().to_string(), "https://docker:2376/v1.44/info");
        let other = http::Request::get("https://docker:2376/v1.44/containers/abc/export").body(()).unwrap();
        assert_eq!(retarget(other, "info").uri().path(), "/v1.44/containers/abc/export");
    }

    #[tokio::test]
    async fn the_answer_comes_as_json_and_an_error_status_as_bollards_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            log.lock().unwrap().push(uri.path().to_string());
            async move {
                let (status, body) = match uri.path() {
                    p if p.ends_with("/version") => (200, r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#),
                    p if p.ends_with("/info") => (200, r#"{"DockerRootDir":"/srv/docker","Swarm":{}}"#),
                    _ => (404, r#"{"message":"No such container: abc"}"#),
                };
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        });
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let docker = Docker::connect_with_unix(path.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION).unwrap();
        let docker = docker.negotiate_version().await.unwrap();

        let info = get(&docker, "info").await.unwrap();
        assert_eq!(str_at(&info, "/DockerRootDir"), Some("/srv/docker"));
        let gone = get(&docker, "containers/abc/json").await;
        assert!(matches!(gone, Err(DockerError::DockerResponseServerError { status_code: 404, .. })), "{gone:?}");
        let seen = seen.lock().unwrap();
        let [.., info, inspect] = seen.as_slice() else { panic!("{seen:?}") };
        assert!(info.ends_with("/info") && inspect.ends_with("/containers/abc/json"), "{seen:?}");
    }
}
