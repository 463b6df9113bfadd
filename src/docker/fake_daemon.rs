//! A Docker daemon of the unit tests' own on a unix socket, for what the real one cannot be
//! made to do on cue (a 404 for a container, a 500 twice, a body of the test's choosing).
//! bollard's client and luaspout's own requests talk to it as to dockerd 20.10.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, Uri};
use bollard::Docker;

/// The `/version` answer: the API version bollard negotiates down to.
const VERSION: &str = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;

/// A running fake daemon.
pub struct FakeDaemon {
    /// A client of it, not yet negotiated (`negotiate_version` asks `/version`).
    pub docker: Docker,
    /// Its socket.
    pub socket: PathBuf,
    /// The path and query of every request but `/version`, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

/// Starts a daemon on `dir/docker.sock` that answers `/version` itself and every other request
/// with `answer(path_and_query, n)`, `n` counting those requests from 0: a status and a body.
pub fn start(dir: &Path, answer: impl Fn(&str, usize) -> (u16, Vec<u8>) + Clone + Send + Sync + 'static) -> FakeDaemon {
    let socket = dir.join("docker.sock");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (answer, log) = (answer.clone(), log.clone());
        async move {
            if uri.path().ends_with("/version") {
                return (StatusCode::OK, VERSION.as_bytes().to_vec());
            }
            let n = {
                let mut log = log.lock().unwrap();
                log.push(uri.to_string());
                log.len() - 1
            };
            let (status, body) = answer(&uri.to_string(), n);
            (StatusCode::from_u16(status).unwrap(), body)
        }
    });
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let docker = Docker::connect_with_unix(socket.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION).unwrap();
    FakeDaemon { docker, socket, seen }
}
