//! The Docker watcher: keeps exactly one pump per eligible running container.
//!
//! It asks for container events from the moment before it lists the running containers
//! (dockerd replays the ones it sent meanwhile), so a container that starts in between is seen
//! by one or the other (logspout misses it). A container that starts while luaspout runs is
//! read from the beginning of its current run, so the lines it printed before the attach are
//! not lost and an earlier run's lines are not replayed; containers already running at startup
//! follow `BACKLOG`/`TAIL`. When dockerd goes away the watcher keeps running, reports it on
//! `/health`, and reconnects with backoff; the pumps resume each container from the last line
//! they delivered.

mod body;
mod events;
#[cfg(test)]
mod fake_daemon;
mod files;
mod frames;
pub mod history;
mod http_body;
mod json;
mod lines;
pub mod pump;
mod socket;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::delivery::Cursor;
use crate::health::Health;
use crate::message::Container;
use crate::router::{Generation, Inboxes};
use crate::settings::{Settings, SourceMode};
use crate::state::CursorStore;
use crate::stats::Stats;
use crate::tap::Tap;
use crate::timefmt::now_ns;
use files::wake::LogWakes;
use pump::{FileSource, PumpArgs};

/// Log drivers whose logs the Docker API can read back (logspout's list, plus `local`).
const READABLE_LOG_DRIVERS: &[&str] = &["json-file", "journald", "local", "db"];

/// What an inspect found.
pub enum Inspected {
    Found(Box<InspectedContainer>),
    Gone,
}

/// A container, as inspected.
pub struct InspectedContainer {
    pub container: Container,
    pub running: bool,
    /// When its current (or last) run started (`State.StartedAt`).
    pub started_ns: i64,
    /// `State.FinishedAt`: while running, the end of the previous run, if there was one.
    pub finished_ns: Option<i64>,
    /// When the container was created (`Created`).
    pub created_ns: i64,
    pub log_driver: String,
}

/// How much earlier than `State.StartedAt` a run's first line can be stamped: Docker sets
/// `StartedAt` after the process has started, and a process that prints at once beats it by a
/// few milliseconds (measured: up to 1.4 ms on dockerd 20.10).
const START_STAMP_SLACK_NS: i64 = 100_000_000;

/// Longest wait for dockerd to answer a request (for a stream: to start answering). A
/// daemon that is starting up accepts connections before it answers them; without this a
/// pump would hang there for bollard's default two minutes.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Source of unique container snapshot identities.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Inspects a container; a 404 is `Gone`, not an error (logspout's quirk Q6, fixed).
pub async fn inspect(docker: &Docker, id: &str) -> Result<Inspected, DockerError> {
    let json = match json::get(docker, &format!("containers/{id}/json")).await {
        Ok(json) => json,
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => return Ok(Inspected::Gone),
        Err(e) => return Err(e),
    };
    let str_at = |pointer| json::str_at(&json, pointer);
    let time_at =
        |pointer| str_at(pointer).and_then(|t| crate::timefmt::parse_rfc3339_nanos(t.as_bytes())).map(|(ns, _)| ns);
    let started_ns = time_at("/State/StartedAt").unwrap_or(0);
    // Docker's zero time (0001-01-01) means "never", and does not parse into the i64 range.
    let finished_ns = time_at("/State/FinishedAt").filter(|&ns| ns > 0);
    let created_ns = time_at("/Created").unwrap_or(0);
    let log_driver = str_at("/HostConfig/LogConfig/Type").unwrap_or_default().to_string();
    let running = json.pointer("/State/Running").and_then(|r| r.as_bool()).unwrap_or(false);
    let labels = json.pointer("/Config/Labels").and_then(|l| l.as_object());
    let env = json.pointer("/Config/Env").and_then(|e| e.as_array());
    let container = Container {
        id: str_at("/Id").unwrap_or(id).to_string(),
        name: str_at("/Name").unwrap_or_default().trim_start_matches('/').to_string(),
        image: str_at("/Config/Image").unwrap_or_default().to_string(),
        image_id: str_at("/Image").unwrap_or_default().to_string(),
        hostname: str_at("/Config/Hostname").unwrap_or_default().to_string(),
        pid: json.pointer("/State/Pid").and_then(|p| p.as_i64()).unwrap_or(0),
        labels: labels.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
        env: env
            .into_iter()
            .flatten()
            .filter_map(|kv| kv.as_str())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect(),
        tty: json.pointer("/Config/Tty").and_then(|t| t.as_bool()).unwrap_or(false),
        epoch: NEXT_EPOCH.fetch_add(1, Ordering::Relaxed),
        // Kept whole for templates (`.Container.HostConfig.NetworkMode`…), once per inspect.
        inspect: Arc::new(json).into(),
    };
    Ok(Inspected::Found(Box::new(InspectedContainer {
        container,
        running,
        started_ns,
        finished_ns,
        created_ns,
        log_driver,
    })))
}

/// Why a container is not read, or `None` if it is eligible.
pub fn ineligible(c: &InspectedContainer, settings: &Settings) -> Option<String> {
    let ct = &c.container;
    if settings.own_container_id.as_deref() == Some(ct.id.as_str()) {
        return Some("it is luaspout's own container".into());
    }
    if ct.tty && !settings.allow_tty {
        return Some("it has a TTY (set ALLOW_TTY=true to read it)".into());
    }
    if ct.env_var("LOGSPOUT").is_some_and(|v| v.eq_ignore_ascii_case("ignore")) {
        return Some("LOGSPOUT=ignore".into());
    }
    if let Some((k, v)) = settings
        .exclude_labels
        .iter()
        .find(|(k, v)| ct.labels.get(k).is_some_and(|actual| actual.eq_ignore_ascii_case(v)))
    {
        return Some(format!("excluded by label {k}={v}"));
    }
    if !READABLE_LOG_DRIVERS.contains(&c.log_driver.as_str()) {
        return Some(format!("its log driver {:?} cannot be read back", c.log_driver));
    }
    None
}

/// Where a container's current (or just finished) run begins in its log: after the previous
/// run's end while it runs; from the beginning for one created since luaspout started (every
/// earlier run of it was read, and is resumed from instead); else shortly before its start (a
/// run that already ended has overwritten `FinishedAt`).
///
/// Timestamps cannot be trusted for a run that ended within milliseconds: dockerd has been
/// seen to record `StartedAt` 102 ms *after* such a run's first line (and after its
/// `FinishedAt`), so reading from `StartedAt` minus a slack lost whole containers.
fn current_run_start(c: &InspectedContainer, luaspout_started_ns: i64) -> Cursor {
    match (c.running, c.finished_ns) {
        (true, Some(previous_end)) => Cursor::from(previous_end + 1),
        (true, None) => Cursor::START,
        (false, _) if c.created_ns >= luaspout_started_ns => Cursor::START,
        (false, _) => Cursor::from(c.started_ns - START_STAMP_SLACK_NS),
    }
}

/// How to pick the first line of a newly attached container.
#[derive(Debug, Clone, Copy)]
enum StartFrom {
    /// Already running when luaspout started: `BACKLOG` decides.
    Startup,
    /// Started while luaspout runs: its whole current run (even if it has already exited).
    CurrentRun,
    /// Restarted after a pump ended: where that pump stopped.
    Resume(Cursor),
    /// Known to an earlier run of luaspout: where its routes had delivered up to.
    Saved(Cursor),
}

/// A pump the watcher knows about.
struct PumpHandle {
    /// Carries renames to the pump.
    container_tx: Option<watch::Sender<Arc<Container>>>,
    /// A start event came while this pump was ending: attach again when it has.
    restart_pending: bool,
    /// Counts the container's `die` events (a file pump learns of the stop from them).
    died: watch::Sender<u64>,
}

/// What the watcher hands every pump, besides the container.
pub struct Wiring {
    pub inboxes: Inboxes,
    /// The routes in force, whose queues may pause a pump.
    pub generations: watch::Receiver<Arc<Generation>>,
    /// Where each container's delivered cursor is kept.
    pub cursors: Arc<CursorStore>,
}

/// The watcher's state across Docker reconnections.
struct Watcher {
    settings: Arc<Settings>,
    wiring: Wiring,
    stats: Arc<Stats>,
    health: Arc<Health>,
    /// Where `/logs` learns which containers are being read.
    tap: Arc<Tap>,
    shutdown: CancellationToken,
    pumps: HashMap<String, PumpHandle>,
    /// Where ended pumps stopped, by container ID, until the container is destroyed: a
    /// container that starts again resumes there, so nothing is read twice.
    ended: HashMap<String, Cursor>,
    /// Counts connections to dockerd; wakes pumps that wait for it when it is back.
    connections: watch::Sender<u64>,
    tasks: JoinSet<()>,
    ended_tx: mpsc::UnboundedSender<Ended>,
    /// Where json-file logs are read from, when they can be (this connection's engine).
    files_dir: Option<PathBuf>,
    /// This connection's unix socket, when the daemon is reached on one.
    socket: Option<PathBuf>,
    /// The inotify watcher of every file pump.
    wakes: Arc<LogWakes>,
}

/// A pump task finished (or its container turned out to be ineligible).
struct Ended {
    id: String,
    /// Where the pump stopped; `None` if the container was never read.
    cursor: Option<Cursor>,
}

/// Watches Docker until `shutdown`, then waits for the pumps to stop.
pub async fn watch(
    settings: Arc<Settings>,
    wiring: Wiring,
    stats: Arc<Stats>,
    health: Arc<Health>,
    tap: Arc<Tap>,
    shutdown: CancellationToken,
) {
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let mut w = Watcher {
        settings,
        wiring,
        stats,
        health,
        tap,
        shutdown: shutdown.clone(),
        pumps: HashMap::new(),
        ended: HashMap::new(),
        connections: watch::Sender::new(0),
        tasks: JoinSet::new(),
        ended_tx,
        files_dir: None,
        socket: None,
        wakes: Arc::new(LogWakes::new()),
    };
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut first_connection = true;
    let mut failing = false;
    while !shutdown.is_cancelled() {
        match w.session(&mut ended_rx, first_connection).await {
            Ok(()) => break,
            Err(SessionEnd { error, connected }) => {
                w.health.set_docker_error(Some(error.clone()));
                if connected {
                    // It was working: start over quickly, and say so once.
                    first_connection = false;
                    backoff.reset();
                    failing = false;
                }
                if !failing {
                    warn!(error = %error, "docker unavailable; retrying with backoff");
                    failing = true;
                } else {
                    debug!(error = %error, "docker still unavailable");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    while w.tasks.join_next().await.is_some() {}
}

/// A client for `DOCKER_HOST` (unix or tcp; TLS with `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`),
/// by default `/var/run/docker.sock`, or `/tmp/docker.sock` when only that one is mounted (as
/// logspout's image allows), with the API version negotiated with the daemon and
/// [`DOCKER_TIMEOUT`] for the start of an answer; and the path of the unix socket it talks to,
/// if it does: the pumps read their log streams there themselves ([`socket`]). The error says
/// which step failed.
pub async fn connect(settings: &Settings) -> Result<(Docker, Option<PathBuf>), String> {
    const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
    const FALLBACK_SOCKET: &str = "/tmp/docker.sock";
    let host = match settings.env.get("DOCKER_HOST") {
        Some(host) => host,
        None if !Path::new(DEFAULT_SOCKET).exists() && Path::new(FALLBACK_SOCKET).exists() => {
            format!("unix://{FALLBACK_SOCKET}")
        }
        None => format!("unix://{DEFAULT_SOCKET}"),
    };
    let docker = Docker::connect_with_host(&host).map_err(|e| format!("cannot connect to docker: {e}"))?;
    let docker = docker.with_timeout(DOCKER_TIMEOUT);
    let docker = docker.negotiate_version().await.map_err(|e| format!("cannot reach docker: {e}"))?;
    Ok((docker, host.strip_prefix("unix://").map(PathBuf::from)))
}

/// Why a connection to dockerd ended.
struct SessionEnd {
    error: String,
    /// Whether the connection had worked (containers listed) before it ended.
    connected: bool,
}

impl Watcher {
    /// One connection to dockerd: subscribe, list, attach, follow events. Returns `Ok` on
    /// shutdown and `Err` when Docker is unreachable or the event stream ends.
    async fn session(&mut self, ended_rx: &mut mpsc::UnboundedReceiver<Ended>, first: bool) -> Result<(), SessionEnd> {
        let lost = |error: String| SessionEnd { error, connected: false };
        let (docker, socket) = connect(&self.settings).await.map_err(lost)?;
        // The events since now, asked for before the list, so that a container that starts
        // meanwhile is in the list or has its event, or both (its pump then only looks once
        // more when it ends). dockerd sends the events' answer before it subscribes, and the
        // request goes out when the stream is first polled, after the list: `since` has
        // dockerd replay what came in between. It is luaspout's clock, dockerd's own on the
        // same host; a remote daemon whose clock is behind replays less of the gap.
        let listed_ns = now_ns();
        let actions = ["start", "restart", "rename", "die", "destroy"];
        let mut events = events::follow(&docker, &actions, listed_ns);
        let running =
            json::get(&docker, "containers/json").await.map_err(|e| lost(format!("cannot list containers: {e}")))?;
        let running: Vec<String> = running
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some(json::str_at(c, "/Id")?.to_string()))
            .collect();
        let version = docker.client_version();
        info!(api_version = %version, containers = running.len(), "connected to docker");
        self.files_dir = self.containers_dir(&docker).await;
        self.socket = socket;
        self.health.set_docker_error(None);
        self.connections.send_modify(|n| *n += 1);
        if first {
            // Containers that stopped while luaspout was down: read what they printed after
            // their cursor (a gone one is pruned by its attach).
            for id in self.wiring.cursors.saved_ids() {
                if !running.contains(&id) {
                    self.attach(&docker, id, StartFrom::Startup);
                }
            }
        }
        for c in running {
            self.attach(&docker, c, if first { StartFrom::Startup } else { StartFrom::CurrentRun });
        }
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(ev)) => self.on_event(&docker, ev).await,
                    Some(Err(e)) => return Err(SessionEnd { error: format!("docker event stream failed: {e:#}"), connected: true }),
                    None => return Err(SessionEnd { error: "docker event stream ended".into(), connected: true }),
                },
                Some(ended) = ended_rx.recv() => self.on_ended(&docker, ended),
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn on_event(&mut self, docker: &Docker, ev: bollard::models::EventMessage) {
        let Some(id) = ev.actor.and_then(|a| a.id) else { return };
        let action = ev.action.unwrap_or_default();
        debug!(container_id = %&id[..id.len().min(12)], action, "docker event");
        match action.as_str() {
            "start" | "restart" => match self.pumps.get_mut(&id) {
                Some(p) => p.restart_pending = true,
                None => {
                    let from = self.ended.remove(&id).map_or(StartFrom::CurrentRun, StartFrom::Resume);
                    self.attach(docker, id, from);
                }
            },
            "die" => {
                if let Some(p) = self.pumps.get(&id) {
                    p.died.send_modify(|n| *n += 1);
                }
            }
            "destroy" => {
                self.ended.remove(&id);
                self.wiring.cursors.forget(&id);
            }
            "rename" => {
                let Some(tx) = self.pumps.get(&id).and_then(|p| p.container_tx.clone()) else { return };
                if let Ok(Inspected::Found(rc)) = inspect(docker, &id).await {
                    info!(container_id = %rc.container.short_id(), container_name = %rc.container.name, "container renamed");
                    let renamed = Arc::new(rc.container);
                    self.tap.container_reading(renamed.clone());
                    let _ = tx.send(renamed);
                }
            }
            _ => {}
        }
    }

    fn on_ended(&mut self, docker: &Docker, ended: Ended) {
        let Some(handle) = self.pumps.remove(&ended.id) else { return };
        let cursor = ended.cursor;
        if handle.restart_pending {
            self.attach(docker, ended.id, cursor.map_or(StartFrom::CurrentRun, StartFrom::Resume));
        } else if let Some(cursor) = cursor {
            self.ended.insert(ended.id, cursor);
        }
    }

    /// Starts a task that inspects the container and, if eligible, pumps its logs.
    fn attach(&mut self, docker: &Docker, id: String, from: StartFrom) {
        if self.pumps.contains_key(&id) {
            return;
        }
        // A cursor an earlier run saved beats BACKLOG and "from the start of the run": the
        // lines before it were delivered, the lines after it were not.
        let saved = self.wiring.cursors.saved(&id);
        let from = match (from, saved) {
            (StartFrom::Resume(c), _) => StartFrom::Resume(c),
            (_, Some(c)) => StartFrom::Saved(c),
            (other, None) => other,
        };
        let (container_tx, container_rx) = watch::channel(Arc::new(Container::default()));
        let died = watch::Sender::new(0);
        let died_rx = died.subscribe();
        self.pumps
            .insert(id.clone(), PumpHandle { container_tx: Some(container_tx.clone()), restart_pending: false, died });
        let files_dir = self.files_dir.clone();
        let socket = self.socket.clone();
        let wakes = self.wakes.clone();
        let docker = docker.clone();
        let settings = self.settings.clone();
        let inbox = self.wiring.inboxes.for_container(&id);
        let generations = self.wiring.generations.clone();
        let cursors = self.wiring.cursors.clone();
        let inactivity = settings.inactivity_timeout;
        let stats = self.stats.clone();
        let connections = self.connections.subscribe();
        let shutdown = self.shutdown.clone();
        let ended_tx = self.ended_tx.clone();
        let tap = self.tap.clone();
        let attach_time = now_ns();
        self.tasks.spawn(async move {
            let cursor = async {
                let rc = match inspect_until_answered(&docker, &id, &stats, &shutdown).await? {
                    Inspected::Found(rc) if rc.running || !matches!(from, StartFrom::Startup) => rc,
                    Inspected::Gone => {
                        cursors.forget(&id);
                        return None;
                    }
                    Inspected::Found(_) => return None,
                };
                if let Some(why) = ineligible(&rc, &settings) {
                    debug!(container_id = %rc.container.short_id(), container_name = %rc.container.name, "not reading container: {why}");
                    return None;
                }
                let from = match from {
                    // Started after luaspout did (between the event subscription and the
                    // listing): a new container, not history.
                    StartFrom::Startup if rc.started_ns >= settings.started_ns => StartFrom::CurrentRun,
                    other => other,
                };
                let (start, tail) = match from {
                    StartFrom::Startup if settings.backlog => (Cursor::START, settings.tail.clone()),
                    StartFrom::Startup => (Cursor::from(attach_time), "all".to_string()),
                    StartFrom::CurrentRun => (current_run_start(&rc, settings.started_ns), "all".to_string()),
                    StartFrom::Resume(c) | StartFrom::Saved(c) => (c, "all".to_string()),
                };
                let track = cursors.track(&id, &rc.container.name, start);
                info!(container_id = %rc.container.short_id(), container_name = %rc.container.name, "reading container");
                let container = Arc::new(rc.container);
                tap.container_reading(container.clone());
                let _ = container_tx.send(container);
                let files = files_dir.filter(|_| rc.log_driver == "json-file").map(|containers_dir| FileSource {
                    containers_dir,
                    wakes,
                    died: died_rx,
                });
                let args = PumpArgs {
                    files,
                    socket,
                    tap: tap.clone(),
                    docker,
                    container: container_rx,
                    start,
                    tail,
                    inbox,
                    track,
                    generations,
                    inactivity,
                    stats,
                    connections,
                    shutdown,
                };
                let cursor = pump::run(args).await;
                tap.container_ended(&id);
                Some(cursor)
            }
            .await;
            let _ = ended_tx.send(Ended { id, cursor });
        });
    }
}

impl Watcher {
    /// Where this engine's json-file logs can be read, if `LUASPOUT_SOURCE` allows it and
    /// the directory is readable (the host binary as root, or the image with the directory
    /// mounted); `None` sends every container to the API.
    async fn containers_dir(&self, docker: &Docker) -> Option<PathBuf> {
        let mode = self.settings.source;
        if mode == SourceMode::Api {
            return None;
        }
        let dir = match &self.settings.containers_dir {
            Some(dir) => dir.clone(),
            None => match json::get(docker, "info").await.ok().as_ref().and_then(|i| json::str_at(i, "/DockerRootDir"))
            {
                Some(root) => PathBuf::from(root).join("containers"),
                None => PathBuf::from("/var/lib/docker/containers"),
            },
        };
        match std::fs::read_dir(&dir) {
            Ok(_) => {
                info!(dir = %dir.display(), "reading json-file logs from their files");
                Some(dir)
            }
            Err(e) if mode == SourceMode::Files || self.settings.containers_dir.is_some() => {
                warn!(dir = %dir.display(), error = %e, "cannot read the containers directory; reading every container through the Docker API (mount it read-only, or set LUASPOUT_CONTAINERS_DIR)");
                None
            }
            Err(e) => {
                debug!(dir = %dir.display(), error = %e, "containers directory not readable; reading through the Docker API");
                None
            }
        }
    }
}

/// Inspects a container, retrying with backoff while dockerd does not answer (it restarts, or
/// the fd limit refuses connections) until it answers or shutdown (`None`). A container that
/// is gone by the time dockerd answers, after a failure, could not be read: it is counted.
async fn inspect_until_answered(
    docker: &Docker,
    id: &str,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> Option<Inspected> {
    let short = &id[..id.len().min(12)];
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failed = false;
    loop {
        match inspect(docker, id).await {
            Ok(Inspected::Gone) if failed => {
                crate::stats::add(&stats.containers_unread, 1);
                warn!(container_id = %short, "container gone before it could be inspected; its lines were not read (counted)");
                return Some(Inspected::Gone);
            }
            Ok(found) => return Some(found),
            Err(e) => {
                if !failed {
                    warn!(container_id = %short, error = %e, "cannot inspect container; retrying with backoff");
                }
                failed = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake_daemon::{self, FakeDaemon};
    use super::*;

    fn run(running: bool, started_ns: i64, finished_ns: Option<i64>, created_ns: i64) -> InspectedContainer {
        InspectedContainer {
            container: Container::default(),
            running,
            started_ns,
            finished_ns,
            created_ns,
            log_driver: "json-file".into(),
        }
    }

    #[test]
    fn a_run_that_ended_at_once_is_read_from_the_start_when_luaspout_saw_the_container_created() {
        let luaspout_started = 1_000;
        // StartedAt after the first line: the timestamps of such a run cannot be trusted.
        assert_eq!(current_run_start(&run(false, 5_000, Some(4_000), 2_000), luaspout_started), Cursor::START);
        // Created before luaspout started: earlier runs may be in its log, so the stamps it is.
        let old = run(false, 500_000_000, Some(600_000_000), 10);
        assert_eq!(current_run_start(&old, luaspout_started), Cursor::from(500_000_000 - START_STAMP_SLACK_NS));
        // Running: after the previous run's end, or from the start of a first run.
        assert_eq!(current_run_start(&run(true, 5_000, Some(3_000), 10), luaspout_started), Cursor::from(3_001));
        assert_eq!(current_run_start(&run(true, 5_000, None, 10), luaspout_started), Cursor::START);
    }

    /// A fake dockerd that fails the first `failures` inspects with a 500, then answers 404:
    /// a container that was gone before dockerd could say what it was.
    fn fake_docker(dir: &std::path::Path, failures: usize) -> FakeDaemon {
        fake_daemon::start(dir, move |_, n| {
            (if n < failures { 500 } else { 404 }, br#"{"message":"scripted"}"#.to_vec())
        })
    }

    #[tokio::test]
    async fn a_failed_inspect_is_retried_and_a_container_gone_meanwhile_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = fake_docker(dir.path(), 2);
        let stats = Stats::new();
        let answer = inspect_until_answered(&daemon.docker, "abc", &stats, &CancellationToken::new()).await;
        assert!(matches!(answer, Some(Inspected::Gone)));
        assert_eq!(daemon.seen.lock().unwrap().len(), 3, "two failures, then the answer");
        assert_eq!(stats.containers_unread.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let docker = fake_docker(dir.path(), usize::MAX).docker;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        let answer = inspect_until_answered(&docker, "abc", &Stats::new(), &shutdown).await;
        assert!(answer.is_none());
    }
}
