//! Waking a file pump when its container's log grows, through one inotify instance for the
//! whole process (the `notify` crate; one thread, whatever the number of containers).
//!
//! A pump only watches its container's directory while it is idle: dockerd writes every log
//! entry on its own, so a watch kept on a busy log would wake the watcher's thread once per
//! line. A busy pump reads on a short timer instead ([`super::BUSY_POLL`]), and registers its
//! watch once the log has been quiet for a moment; an idle one also polls slowly, as a safety
//! net for a missed event (inotify's queue can overflow).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::debug;

/// The process's watcher of container log directories.
pub struct LogWakes {
    watcher: Mutex<Option<RecommendedWatcher>>,
    /// The pump to wake for each watched directory.
    dirs: Arc<Mutex<HashMap<PathBuf, Arc<Notify>>>>,
}

impl LogWakes {
    /// A watcher that starts its inotify thread on the first watch.
    pub fn new() -> LogWakes {
        LogWakes { watcher: Mutex::new(None), dirs: Arc::default() }
    }

    /// Wakes `wake` on any change in `dir` until [`LogWakes::unwatch`]. A failure (no inotify
    /// left: `fs.inotify.max_user_watches`) only leaves the pump to its slow poll.
    pub fn watch(&self, dir: &Path, wake: &Arc<Notify>) {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).insert(dir.to_path_buf(), wake.clone());
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if watcher.is_none() {
            let dirs = self.dirs.clone();
            let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let dirs = dirs.lock().unwrap_or_else(|e| e.into_inner());
                for path in &event.paths {
                    if let Some(wake) = path.parent().and_then(|d| dirs.get(d)) {
                        wake.notify_one();
                    }
                }
            });
            match made {
                Ok(w) => *watcher = Some(w),
                Err(e) => debug!(error = %e, "cannot start inotify; log files are polled"),
            }
        }
        if let Some(w) = watcher.as_mut()
            && let Err(e) = w.watch(dir, RecursiveMode::NonRecursive)
        {
            debug!(dir = %dir.display(), error = %e, "cannot watch log directory; it is polled");
        }
    }

    /// Stops waking for `dir`.
    pub fn unwatch(&self, dir: &Path) {
        if self.dirs.lock().unwrap_or_else(|e| e.into_inner()).remove(dir).is_none() {
            return;
        }
        if let Some(w) = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = w.unwatch(dir);
        }
    }
}

impl Default for LogWakes {
    fn default() -> LogWakes {
        LogWakes::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_write_in_a_watched_directory_wakes_its_pump_and_not_after_unwatch() {
        let dir = tempfile::tempdir().unwrap();
        let wakes = LogWakes::new();
        let wake = Arc::new(Notify::new());
        wakes.watch(dir.path(), &wake);
        std::fs::write(dir.path().join("x-json.log"), "line\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken");
        wakes.unwatch(dir.path());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The first write's later events (close) may have left a wake-up behind.
        let _ = tokio::time::timeout(Duration::from_millis(10), wake.notified()).await;
        std::fs::write(dir.path().join("x-json.log"), "again\n").unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), wake.notified()).await.is_err());
    }
}
