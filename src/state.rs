//! The state file (`LUASPOUT_STATE`): each container's delivered cursor, so a restarted
//! luaspout resumes every container where its routes left off instead of from "now" (lines
//! lost) or from the beginning (lines repeated).
//!
//! The file holds, per container ID, the [`Cursor`] of the last line that every route taking
//! it has delivered ([`crate::delivery`]). It is written whole, to a temporary file that is
//! fsynced and renamed over the old one (and the directory fsynced), so a crash or a power
//! loss at any moment leaves either the old or the new version; it is rewritten at most
//! every [`SAVE_INTERVAL`] while cursors move, on a blocking thread, and once more at
//! shutdown. A `kill -9` therefore repeats at most the lines delivered during the last
//! interval. Cursors of containers that no longer exist are pruned.
//!
//! `LUASPOUT_STATE` may name a directory (what people mount): the file is
//! [`STATE_FILE_NAME`] inside it. A file that is not luaspout's (truncated, corrupt) is
//! renamed aside to `….corrupt`, logged as an error, and luaspout starts as with no state;
//! a file or directory it cannot write is an error at start when `LUASPOUT_STATE` names it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::delivery::{Cursor, Track, Tracks};
use crate::settings::Settings;
use crate::stats::{RateLimit, Stats};

/// Shortest time between two writes of the file while cursors move: each write is a whole
/// file and two fsyncs, so a few a second; a `kill -9` repeats at most this much of delivery.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// The file's name when `LUASPOUT_STATE` names a directory.
pub const STATE_FILE_NAME: &str = "state.json";

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
    /// What every track shares (woken by every track whose delivered position moves).
    tracks: Arc<Tracks>,
    warn_limit: RateLimit,
    /// One save at a time (the periodic one and the last one may overlap at shutdown).
    saving: Mutex<()>,
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
    /// only warns, and luaspout then runs without persistence. Lines abandoned while running
    /// are counted in `stats`; once `shutdown` is cancelled they are kept for the next start.
    pub fn open(
        settings: &Settings,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<CursorStore>> {
        let mut path = settings.state_file.as_deref().map(resolve);
        let mut saved = HashMap::new();
        if let Some(p) = &path {
            match load(p).and_then(|s| check_writable(p, &s).map(|()| s)) {
                Ok(s) => saved = s,
                Err(e) if settings.state_file_given => return Err(e),
                Err(e) => {
                    warn!(
                        "{e:#}; cursors are not kept across restarts (set LUASPOUT_STATE to a writable file or directory)"
                    );
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
            tracks: Arc::new(Tracks { moved: Notify::new(), shutdown, stats }),
            warn_limit: RateLimit::default(),
            saving: Mutex::new(()),
        });
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
            self.tracks.moved.notify_one();
            (name.to_string(), Track::new(start, self.tracks.clone()))
        });
        entry.0 = name.to_string();
        entry.1.clone()
    }

    /// The container is gone: its cursor goes too.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        if inner.saved.remove(id).is_some() | inner.tracks.remove(id).is_some() {
            debug!(container_id = %&id[..id.len().min(12)], "cursor pruned");
            self.tracks.moved.notify_one();
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
    /// It blocks on the disk: async code calls it through `spawn_blocking`.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
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
                _ = self.tracks.moved.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.save()).await;
            tokio::select! {
                _ = tokio::time::sleep(SAVE_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The file a `LUASPOUT_STATE` value names: the value itself, or [`STATE_FILE_NAME`] inside
/// it when it is a directory.
fn resolve(given: &Path) -> PathBuf {
    if given.is_dir() { given.join(STATE_FILE_NAME) } else { given.to_path_buf() }
}

/// `path` with `suffix` appended to its name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn load(path: &Path) -> anyhow::Result<HashMap<String, SavedCursor>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent(path);
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            return Ok(HashMap::new());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the state file {}", path.display())),
    };
    let file = match serde_json::from_slice::<StateFile>(&text) {
        Ok(file) => file,
        Err(e) => {
            // A crash or a full disk can leave a truncated file: keep it for a post-mortem
            // and start as with no state rather than not at all.
            let aside = with_suffix(path, ".corrupt");
            std::fs::rename(path, &aside).with_context(|| {
                format!("the state file {} is corrupt ({e}) and cannot be renamed aside", path.display())
            })?;
            error!(
                path = %path.display(), moved_to = %aside.display(), error = %e,
                "the state file is corrupt; it was renamed aside and every container starts as with no saved cursor (BACKLOG/TAIL)"
            );
            return Ok(HashMap::new());
        }
    };
    if file.version != 1 {
        anyhow::bail!("the state file {} has version {}, this luaspout reads version 1", path.display(), file.version);
    }
    Ok(file.containers.into_iter().collect())
}

/// Writes the cursors just loaded back, so a file or directory luaspout cannot write (a
/// read-only mount) is found at start, not at the first save.
fn check_writable(path: &Path, saved: &HashMap<String, SavedCursor>) -> anyhow::Result<()> {
    let file = StateFile { version: 1, containers: saved.iter().map(|(k, v)| (k.clone(), v.clone())).collect() };
    store(path, &file).context("the state file must be writable (is it on a read-only mount?)")
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `file` to a temporary file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory, so the rename itself survives a power loss.
fn store(path: &Path, file: &StateFile) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = with_suffix(path, ".tmp");
    let text = serde_json::to_vec_pretty(file).expect("a state file serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()
    };
    write().with_context(|| format!("cannot write the state file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace the state file {}", path.display()))?;
    let dir = parent(path);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Env;

    fn settings(state: &Path) -> Settings {
        Settings::from_env(Env::from_pairs(&[("LUASPOUT_STATE", state.to_str().unwrap())])).unwrap()
    }

    fn open(s: &Settings) -> anyhow::Result<Arc<CursorStore>> {
        CursorStore::open(s, Arc::new(Stats::new()), CancellationToken::new())
    }

    #[test]
    fn cursors_survive_a_restart_and_pruned_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let store = open(&settings(&path)).unwrap();
        let a = store.track("aaaa", "web", Cursor::from(10));
        let b = store.track("bbbb", "db", Cursor::from(20));
        drop(a.register(std::iter::once(Cursor {
            time_ns: 15,
            skip: 2,
            file: Some(crate::delivery::FilePos { inode: 7, offset: 4096 }),
        })));
        let _held = b.register(std::iter::once(Cursor { time_ns: 25, skip: 1, file: None }));
        store.track("cccc", "gone", Cursor::from(30));
        store.forget("cccc");
        store.save();

        let again = open(&settings(&path)).unwrap();
        assert_eq!(
            again.saved("aaaa"),
            Some(Cursor { time_ns: 15, skip: 2, file: Some(crate::delivery::FilePos { inode: 7, offset: 4096 }) })
        );
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
    fn a_corrupt_file_is_renamed_aside_and_luaspout_starts_without_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"version\": 1, \"contain").unwrap();
        let store = open(&settings(&path)).expect("starts");
        assert!(store.saved_ids().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state.json.corrupt")).unwrap(),
            "{\"version\": 1, \"contain"
        );
        store.save();
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"version\": 1"), "a fresh file is written");
    }

    #[test]
    fn a_directory_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&settings(dir.path())).unwrap();
        drop(store.track("aaaa", "web", Cursor::from(10)).register(std::iter::once(Cursor::from(11))));
        store.save();
        assert_eq!(store.path.as_deref(), Some(dir.path().join(STATE_FILE_NAME).as_path()));
        let again = open(&settings(dir.path())).unwrap();
        assert_eq!(again.saved("aaaa"), Some(Cursor { time_ns: 11, skip: 0, file: None }));
    }

    #[test]
    fn a_file_in_a_directory_that_cannot_be_written_is_an_error_that_names_it() {
        // Root writes anywhere a mode bit forbids; /proc refuses everyone.
        let path = Path::new("/proc/self/state.json");
        let err = open(&settings(path)).err().expect("refused");
        assert!(format!("{err:#}").contains("/proc/self/state.json"), "{err:#}");
    }

    #[test]
    fn an_unwritable_default_only_turns_persistence_off() {
        let mut s = settings(Path::new("/proc/luaspout-cannot/state.json"));
        s.state_file_given = false;
        let store = open(&s).expect("runs without a state file");
        assert!(store.path.is_none());
        s.state_file_given = true;
        assert!(open(&s).is_err());
    }
}
