//! Inotify for the log directories of every file pump: one inotify instance and one thread for
//! the whole process, whatever the number of containers.
//!
//! Each directory is watched for the creation of its log file at all times: that is dockerd
//! rotating it, and the watcher's thread opens the new generation at once, on its own thread,
//! however busy or starved the pumps are ([`Chain::follow_rotation`]). Writes are watched only
//! while the pump is idle: dockerd writes every log entry on its own, so a watch on writes kept
//! on a busy log would wake this thread once per line. A busy pump reads on a short timer
//! instead, and an idle one also polls slowly, as a safety net for a missed event (inotify's
//! queue can overflow, and `fs.inotify.max_user_watches` can run out).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;
use tracing::debug;

use super::Chain;

/// What every watch asks for: a new log file (dockerd creates it at each rotation).
const ROTATIONS: WatchMask = WatchMask::CREATE.union(WatchMask::MOVED_TO).union(WatchMask::ONLYDIR);

/// What an idle pump's watch asks for: rotations, and writes.
const IDLE: WatchMask = ROTATIONS.union(WatchMask::MODIFY);

/// One watched directory.
struct Watched {
    /// The log file's name (`<id>-json.log`).
    log_name: OsString,
    wake: Arc<Notify>,
    chain: Weak<Chain>,
}

/// The process's watcher of container log directories.
#[derive(Default)]
pub struct LogWakes {
    /// Set once the inotify thread runs; `None` before, or if inotify is not available.
    watches: Mutex<Option<Watches>>,
    started: std::sync::OnceLock<()>,
    /// By watch descriptor.
    watched: Arc<Mutex<HashMap<i32, Watched>>>,
    by_dir: Mutex<HashMap<PathBuf, WatchDescriptor>>,
}

impl LogWakes {
    /// A watcher whose thread starts with the first watch.
    pub fn new() -> LogWakes {
        LogWakes::default()
    }

    /// Watches the directory of `chain`'s log for rotations (and writes, while idle), waking
    /// `wake`. A failure only leaves the pump to its polls.
    pub fn watch(&self, wake: &Arc<Notify>, chain: &Arc<Chain>) {
        self.start();
        let dir = chain.dir.as_path();
        let Some(wd) = self.add(dir, ROTATIONS) else { return };
        let watched = Watched { log_name: chain.name.clone().into(), wake: wake.clone(), chain: Arc::downgrade(chain) };
        lock(&self.watched).insert(wd.get_watch_descriptor_id(), watched);
        lock(&self.by_dir).insert(dir.to_path_buf(), wd);
    }

    /// Whether the pump of `dir` is idle, and wants to be woken by writes.
    pub fn set_idle(&self, dir: &Path, idle: bool) {
        if lock(&self.by_dir).contains_key(dir) {
            self.add(dir, if idle { IDLE } else { ROTATIONS });
        }
    }

    /// Stops watching `dir`.
    pub fn unwatch(&self, dir: &Path) {
        let Some(wd) = lock(&self.by_dir).remove(dir) else { return };
        lock(&self.watched).remove(&wd.get_watch_descriptor_id());
        if let Some(watches) = lock(&self.watches).as_mut() {
            let _ = watches.remove(wd);
        }
    }

    /// Adds or changes the watch of `dir`.
    fn add(&self, dir: &Path, mask: WatchMask) -> Option<WatchDescriptor> {
        let mut watches = lock(&self.watches);
        match watches.as_mut()?.add(dir, mask) {
            Ok(wd) => Some(wd),
            Err(e) => {
                debug!(dir = %dir.display(), error = %e, "cannot watch log directory; it is polled");
                None
            }
        }
    }

    /// Starts the inotify thread, once.
    fn start(&self) {
        self.started.get_or_init(|| {
            let mut inotify = match Inotify::init() {
                Ok(i) => i,
                Err(e) => {
                    debug!(error = %e, "no inotify; log files are polled");
                    return;
                }
            };
            *lock(&self.watches) = Some(inotify.watches());
            let watched = self.watched.clone();
            let spawned = std::thread::Builder::new().name("luaspout-inotify".into()).spawn(move || {
                let mut buf = [0; 4096];
                loop {
                    let events = match inotify.read_events_blocking(&mut buf) {
                        Ok(events) => events,
                        Err(e) => {
                            debug!(error = %e, "inotify failed; log files are polled");
                            return;
                        }
                    };
                    for event in events {
                        if event.mask.contains(EventMask::Q_OVERFLOW) {
                            lock(&watched).values().for_each(|w| w.wake.notify_one());
                            continue;
                        }
                        let (wake, chain) = {
                            let watched = lock(&watched);
                            let Some(w) = watched.get(&event.wd.get_watch_descriptor_id()) else { continue };
                            let rotated = event.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                                && event.name == Some(w.log_name.as_os_str());
                            (w.wake.clone(), if rotated { w.chain.upgrade() } else { None })
                        };
                        if let Some(chain) = chain
                            && let Err(e) = chain.follow_rotation()
                        {
                            debug!(error = %e, "following a log rotation");
                        }
                        wake.notify_one();
                    }
                }
            });
            if let Err(e) = spawned {
                debug!(error = %e, "cannot start the inotify thread; log files are polled");
                *lock(&self.watches) = None;
            }
        });
    }

    /// The directories watched now (for tests and debugging).
    #[cfg(test)]
    fn dirs(&self) -> Vec<PathBuf> {
        lock(&self.by_dir).keys().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one insert or remove: a panic cannot leave a map half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::Cursor;
    use crate::docker::files::{LogFile, StartAt};

    const LOG: &str = "c0ffee-json.log";

    fn entry(text: &str) -> String {
        format!("{{\"log\":\"{text}\\n\",\"stream\":\"stdout\",\"time\":\"2021-12-06T15:27:06.{:09}Z\"}}\n", text.len())
    }

    #[tokio::test]
    async fn writes_wake_an_idle_pump_only_and_a_rotation_is_followed_on_the_watchers_thread() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c0ffee");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(LOG), entry("a")).unwrap();
        let file = LogFile::open(root.path(), "c0ffee", StartAt::Cursor(Cursor::START)).unwrap().file;
        let chain = file.chain();
        let wakes = LogWakes::new();
        let wake = Arc::new(Notify::new());
        wakes.watch(&wake, &chain);
        assert_eq!(wakes.dirs(), std::slice::from_ref(&dir));

        // Busy: a write does not wake.
        std::fs::OpenOptions::new().append(true).open(dir.join(LOG)).map(drop).unwrap();
        std::fs::write(dir.join("unrelated"), "x").unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(dir.join(LOG)).unwrap().write_all(entry("b").as_bytes()).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), wake.notified()).await.is_err(), "busy: no wake");

        // Idle: it does.
        wakes.set_idle(&dir, true);
        std::fs::OpenOptions::new().append(true).open(dir.join(LOG)).unwrap().write_all(entry("c").as_bytes()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("idle: woken");

        // A rotation: the new generation is opened by the watcher's thread, not by the reader.
        std::fs::rename(dir.join(LOG), dir.join(format!("{LOG}.1"))).unwrap();
        std::fs::write(dir.join(LOG), entry("dd")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken by the rotation");
        let held = || chain.lock().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while held() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(held(), 2, "the new generation is held open");

        wakes.unwatch(&dir);
        assert!(wakes.dirs().is_empty());
        drop(file);
    }
}
