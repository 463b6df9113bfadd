//! The state file (`LUASPOUT_STATE`): each container's delivered cursor, so a restarted
//! luaspout resumes every container where its routes left off instead of from "now" (lines
//! lost) or from the beginning (lines repeated).
//!
//! The file holds, per container ID, the [`Cursor`] of the last line that every route taking
//! it has delivered ([`crate::delivery`]). It is written whole, to a temporary file renamed
//! over the old one, so a crash at any moment leaves either the old or the new version; it
//! is rewritten at most every [`SAVE_INTERVAL`] while cursors move, and once more at
//! shutdown. A `kill -9` therefore repeats at most the lines delivered during the last
//! interval. Cursors of containers that no longer exist are pruned.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::delivery::Cursor;
use crate::delivery::Track;
use crate::settings::Settings;
use crate::stats::RateLimit;

/// Shortest time between two writes of the file while cursors move.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(20);

/// The file's layout (version 1).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct StateFile {
    version: u32,
    containers: BTreeMap<String, SavedCursor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SavedCursor {
    /// The container's name when last read, for people reading the file.
    name: String,
    #[serde(flatten)]
    cursor: Cursor,
}

/// Every container's cursor: loaded from the file at start, tracked while luaspout runs.
pub struct CursorStore {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// Woken by every track whose delivered position moves.
    moved: Arc<Notify>,
    warn_limit: RateLimit,
}

#[derive(Default)]
struct Inner {
    /// Cursors read from the file for containers not attached yet.
    saved: HashMap<String, SavedCursor>,
    /// Containers being read (or read since start), by ID.
    tracks: HashMap<String, (String, Arc<Track>)>,
}

impl CursorStore {
    /// Opens the state file of `settings`: reads the cursors it holds and checks that it can
    /// be written. An unusable file named in `LUASPOUT_STATE` is an error; the default one
    /// only warns, and luaspout then runs without persistence.
    pub fn open(settings: &Settings) -> anyhow::Result<Arc<CursorStore>> {
        let mut path = settings.state_file.clone();
        let mut saved = HashMap::new();
        if let Some(p) = &path {
            match load(p) {
                Ok(s) => saved = s,
                Err(e) if settings.state_file_given => return Err(e),
                Err(e) => {
                    warn!("{e:#}; cursors are not kept across restarts (set LUASPOUT_STATE to a writable file)");
                    path = None;
                }
            }
        }
        if !saved.is_empty() {
            info!(containers = saved.len(), path = %path.as_deref().unwrap_or(Path::new("")).display(), "resuming from saved cursors");
        }
        let store = Arc::new(CursorStore {
            path,
            inner: Mutex::new(Inner { saved, tracks: HashMap::new() }),
            moved: Arc::new(Notify::new()),
            warn_limit: RateLimit::default(),
        });
        store.save();
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cursor saved by an earlier run for a container not attached since.
    pub fn saved(&self, id: &str) -> Option<Cursor> {
        self.lock().saved.get(id).map(|s| s.cursor)
    }

    /// The containers with a saved cursor that have not been attached since start.
    pub fn saved_ids(&self) -> Vec<String> {
        self.lock().saved.keys().cloned().collect()
    }

    /// The delivery track of a container, created at `start` on its first attach (its saved
    /// cursor, if any, is taken over then).
    pub fn track(&self, id: &str, name: &str, start: Cursor) -> Arc<Track> {
        let mut inner = self.lock();
        inner.saved.remove(id);
        let entry = inner.tracks.entry(id.to_string()).or_insert_with(|| {
            self.moved.notify_one();
            (name.to_string(), Track::new(start, self.moved.clone()))
        });
        entry.0 = name.to_string();
        entry.1.clone()
    }

    /// The container is gone: its cursor goes too.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        if inner.saved.remove(id).is_some() | inner.tracks.remove(id).is_some() {
            debug!(container_id = %&id[..id.len().min(12)], "cursor pruned");
            self.moved.notify_one();
        }
    }

    fn snapshot(&self) -> StateFile {
        let inner = self.lock();
        let mut containers: BTreeMap<String, SavedCursor> =
            inner.saved.iter().map(|(id, s)| (id.clone(), s.clone())).collect();
        for (id, (name, track)) in &inner.tracks {
            containers.insert(id.clone(), SavedCursor { name: name.clone(), cursor: track.delivered() });
        }
        StateFile { version: 1, containers }
    }

    /// Writes the file now (if there is one); a failure is logged and retried at the next move.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Err(e) = store(path, &self.snapshot())
            && self.warn_limit.allow()
        {
            warn!("{e:#}; will try again");
        }
    }

    /// Saves the file whenever cursors move, at most every [`SAVE_INTERVAL`], until
    /// `shutdown` (the last save is the caller's, once the sinks have drained).
    pub async fn run(self: Arc<CursorStore>, shutdown: CancellationToken) {
        if self.path.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = self.moved.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            self.save();
            tokio::select! {
                _ = tokio::time::sleep(SAVE_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<HashMap<String, SavedCursor>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            store(path, &StateFile { version: 1, containers: BTreeMap::new() })?;
            return Ok(HashMap::new());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the state file {}", path.display())),
    };
    let file: StateFile = serde_json::from_slice(&text).with_context(|| {
        format!("the state file {} is not luaspout's (remove it to start over from BACKLOG/TAIL)", path.display())
    })?;
    if file.version != 1 {
        anyhow::bail!("the state file {} has version {}, this luaspout reads version 1", path.display(), file.version);
    }
    Ok(file.containers.into_iter().collect())
}

/// Writes `file` to a temporary file beside `path` and renames it over `path`.
fn store(path: &Path, file: &StateFile) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_vec_pretty(file).expect("a state file serializes");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write the state file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace the state file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Env;

    fn settings(state: &Path) -> Settings {
        Settings::from_env(Env::from_pairs(&[("LUASPOUT_STATE", state.to_str().unwrap())])).unwrap()
    }

    #[test]
    fn cursors_survive_a_restart_and_pruned_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let store = CursorStore::open(&settings(&path)).unwrap();
        let a = store.track("aaaa", "web", Cursor::from(10));
        let b = store.track("bbbb", "db", Cursor::from(20));
        drop(a.register(Cursor { time_ns: 15, skip: 2 }));
        let _held = b.register(Cursor { time_ns: 25, skip: 1 });
        store.track("cccc", "gone", Cursor::from(30));
        store.forget("cccc");
        store.save();

        let again = CursorStore::open(&settings(&path)).unwrap();
        assert_eq!(again.saved("aaaa"), Some(Cursor { time_ns: 15, skip: 2 }));
        assert_eq!(again.saved("bbbb"), Some(Cursor::from(20)), "a line still held is not delivered");
        assert_eq!(again.saved("cccc"), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"name\": \"web\""), "{text}");
        // Taking a saved cursor over keeps it; the saved entry is no longer separate.
        let t = again.track("aaaa", "web", Cursor::from(0));
        assert_eq!(t.delivered(), Cursor::from(0), "the caller starts from what it was given");
        assert_eq!(again.saved_ids(), vec!["bbbb".to_string()]);
    }

    #[test]
    fn a_broken_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = CursorStore::open(&settings(&path)).err().expect("refused");
        assert!(format!("{err:#}").contains(path.to_str().unwrap()), "{err:#}");
    }

    #[test]
    fn an_unwritable_default_only_turns_persistence_off() {
        let mut s = settings(Path::new("/proc/luaspout-cannot/state.json"));
        s.state_file_given = false;
        let store = CursorStore::open(&s).expect("runs without a state file");
        assert!(store.path.is_none());
        s.state_file_given = true;
        assert!(CursorStore::open(&s).is_err());
    }
}
