//! Watching the config for changes: the file, the files it `require`s, and their directories,
//! because editors save by renaming a new file over the old one and Docker bind mounts or
//! Kubernetes ConfigMaps swap a symlink; a watch on the file alone would go deaf after the
//! first such save. Bursts of events are debounced into one reload request.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long events must be quiet before a reload is asked for: an editor's save is several
/// events (write, rename, chmod) within a few milliseconds.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A watch over the directories of a config's files; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
}

impl ConfigWatch {
    /// Watches the directories holding `files`, sending `()` on `changed` for every event that
    /// concerns one of them (the receiver debounces and decides, by content, whether anything
    /// changed). Other files in those directories (a log written next to the config) are
    /// ignored, except Kubernetes' `..data`-style entries, which a ConfigMap update swaps.
    pub fn new(files: &[PathBuf], changed: mpsc::UnboundedSender<()>) -> notify::Result<ConfigWatch> {
        let names: BTreeSet<std::ffi::OsString> = files.iter().filter_map(|f| f.file_name()).map(Into::into).collect();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // Reading the config (as every reload does) is an access, not a change.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let relevant = event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b"..")));
            if relevant {
                let _ = changed.send(());
            }
        })?;
        let dirs = watched_dirs(files);
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        Ok(ConfigWatch { _watcher: watcher, dirs })
    }

    /// Whether this watch already covers every directory `files` needs.
    pub fn covers(&self, files: &[PathBuf]) -> bool {
        watched_dirs(files).is_subset(&self.dirs)
    }
}

/// The directories holding `files`.
fn watched_dirs(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files
        .iter()
        .map(|f| match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        })
        .collect()
}

/// The longest a reload waits for events to stop: a file rewritten continuously is still
/// reloaded (the content check then decides).
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// Waits for the next change: one event, then quiet for [`DEBOUNCE`] (at most
/// [`DEBOUNCE_MAX`]). `None` when the watch is gone.
pub async fn next_change(events: &mut mpsc::UnboundedReceiver<()>) -> Option<()> {
    events.recv().await?;
    let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
    while tokio::time::Instant::now() < give_up {
        match tokio::time::timeout(DEBOUNCE, events.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => break,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sees_an_editor_style_rename_save_and_debounces_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.lua");
        std::fs::write(&file, "-- one").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watch = ConfigWatch::new(std::slice::from_ref(&file), tx).unwrap();
        assert!(watch.covers(std::slice::from_ref(&file)));
        assert!(!watch.covers(&[PathBuf::from("/elsewhere/x.lua")]));
        // Files next to the config are not the config.
        std::fs::write(dir.path().join("other.log"), "noise").unwrap();
        assert!(tokio::time::timeout(DEBOUNCE * 2, next_change(&mut rx)).await.is_err());
        for i in 0..3 {
            let tmp = dir.path().join(format!(".routes.lua.{i}"));
            std::fs::write(&tmp, format!("-- {i}")).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), next_change(&mut rx)).await.unwrap().unwrap();
        // The burst was one change.
        assert!(tokio::time::timeout(DEBOUNCE * 2, next_change(&mut rx)).await.is_err());
    }
}
