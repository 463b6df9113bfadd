//! The unit that flows through the router: one log line of one container.
//!
//! A `Message` is immutable once built and cheap to share: the container's metadata is an
//! `Arc` filled once per attach (and replaced on rename), and the line is a `Bytes` slice of
//! the frame Docker sent, so building a message copies nothing in the common case.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::delivery::Ack;

/// Which of a container's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Stdout,
    Stderr,
}

impl Source {
    /// The name users write in filters and see in `msg.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }

    /// Parses a user-written stream name (exact, case-sensitive, as logspout compares it).
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "stdout" => Some(Source::Stdout),
            "stderr" => Some(Source::Stderr),
            _ => None,
        }
    }
}

/// Where a container's lines are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The Docker API's log stream.
    Api,
    /// Its json-file log, directly.
    Files,
}

impl ReadFrom {
    /// The name `/containers` and `/metrics` show.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Api => "api",
            ReadFrom::Files => "files",
        }
    }
}

/// What luaspout knows about a container, taken from one `inspect` at attach time.
///
/// It is frozen for the life of the attach, as in logspout; a rename builds a new one with a
/// new `epoch`, so per-worker caches keyed by epoch never show a stale name.
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// Full 64-hex ID.
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// Image reference as the user gave it (`Config.Image`).
    pub image: String,
    /// Image ID (`sha256:…`).
    pub image_id: String,
    /// `Config.Hostname`: the container's own hostname, the syslog default HOST.
    pub hostname: String,
    /// `State.Pid` at attach time.
    pub pid: i64,
    /// `Config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// `Config.Env`, split at the first `=`.
    pub env: Vec<(String, String)>,
    /// `Config.Tty`: the stream is raw, every line is labelled stdout.
    pub tty: bool,
    /// Identity of this snapshot, unique within the process; changes on rename.
    pub epoch: u64,
    /// Docker's inspect of the container, as JSON, for templates that name any field of it
    /// (`.Container.HostConfig.NetworkMode`…). Set once per inspect; read through
    /// [`Container::inspect_json`], which fills it from the fields above when unset.
    pub inspect: OnceLock<Arc<serde_json::Value>>,
}

impl Container {
    /// The 12-character short ID Docker shows.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// The inspect JSON: Docker's, or one built from the fields above (tests, `luaspout try`).
    pub fn inspect_json(&self) -> &serde_json::Value {
        self.inspect.get_or_init(|| {
            let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Arc::new(serde_json::json!({
                "Id": self.id,
                "Name": format!("/{}", self.name),
                "Image": self.image_id,
                "Config": {
                    "Hostname": self.hostname,
                    "Image": self.image,
                    "Labels": self.labels,
                    "Env": env,
                    "Tty": self.tty,
                },
                "State": { "Pid": self.pid },
            }))
        })
    }

    /// The value of an environment variable set on the container.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One log line.
#[derive(Debug, Clone)]
pub struct Message {
    pub container: Arc<Container>,
    pub source: Source,
    /// Docker's timestamp of the line, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The line without its trailing `\n`; any bytes, not necessarily UTF-8.
    pub data: Bytes,
    /// The hold that keeps the container's cursor before this line until every route that
    /// takes it has delivered it; `None` for lines that are not read from a container's log
    /// (`luaspout try`, `/logs?tail=`).
    pub ack: Option<Ack>,
}

impl Message {
    /// A copy for a reader that must not hold up the cursor (a `/logs` viewer).
    pub fn detached(&self) -> Message {
        Message {
            container: self.container.clone(),
            source: self.source,
            time_ns: self.time_ns,
            data: self.data.clone(),
            ack: None,
        }
    }
}
