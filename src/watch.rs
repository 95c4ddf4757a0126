//! Watching the config file and plugin files for changes.
//!
//! We watch parent directories, never the files: a file watch goes deaf
//! after the first editor that writes a temp file and renames it over the
//! original, `sed -i`, or delete + recreate (DEPENDENCIES.md). Events are
//! debounced, so a burst of writes makes one reload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The longest a burst of writes to our files postpones a reload
/// (SPEC.md: a change is picked up within 1 s of the write).
const MAX_SETTLE: Duration = Duration::from_millis(600);

/// What changed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change {
    /// The config file.
    pub config: bool,
    /// A plugin file.
    pub plugins: bool,
}

/// Watches the config file and a set of plugin files.
pub struct ConfigWatch {
    config: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
    watcher: Option<RecommendedWatcher>,
    rx: mpsc::UnboundedReceiver<notify::Event>,
}

impl ConfigWatch {
    /// Start watching `config` and `files`. A watcher that cannot start is
    /// logged; SIGHUP still reloads.
    pub fn new(config: PathBuf, files: Vec<PathBuf>) -> ConfigWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                let _ = tx.send(event);
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch the config; reload with SIGHUP.");
                None
            }
        };
        let mut w = ConfigWatch {
            config: variants(&config),
            files: HashSet::new(),
            dirs: HashSet::new(),
            watcher,
            rx,
        };
        for p in w.config.clone() {
            w.watch_dir_of(&p);
        }
        w.set_files(files);
        w
    }

    /// Replace the set of plugin files (after a reload).
    pub fn set_files(&mut self, files: Vec<PathBuf>) {
        self.files = files.iter().flat_map(|f| variants(f)).collect();
        for f in self.files.clone() {
            self.watch_dir_of(&f);
        }
    }

    fn watch_dir_of(&mut self, path: &Path) {
        let Some(dir) = path.parent() else { return };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        if self.dirs.contains(&dir) {
            return;
        }
        // A plugin in a directory that does not exist cannot load: the
        // error that follows names the field; a warning here would only
        // come first and mislead (issue 17).
        if !dir.is_dir() {
            tracing::debug!(dir = %dir.display(), "Not watching a missing directory.");
            return;
        }
        if let Some(w) = self.watcher.as_mut() {
            match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch directory.")
                }
            }
        }
    }

    fn classify(&self, event: &notify::Event) -> Change {
        let mut c = Change::default();
        if event.kind.is_access() {
            return c;
        }
        for p in &event.paths {
            if self.config.contains(p) {
                c.config = true;
            }
            if self.files.contains(p) {
                c.plugins = true;
            }
        }
        c
    }

    /// Wait for a change, then for the writes to settle.
    pub async fn changed(&mut self) -> Change {
        let mut change = Change::default();
        loop {
            let Some(event) = self.rx.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let c = self.classify(&event);
            if c.config || c.plugins {
                change.config |= c.config;
                change.plugins |= c.plugins;
                break;
            }
        }
        // Only events on our own files extend the quiet time: the config's
        // directory often holds the output files too, and their writes (or
        // a reader polling them) would otherwise postpone the reload for as
        // long as records keep coming. MAX_SETTLE bounds a file that is
        // rewritten without pause, so a change is picked up within 1 s.
        let settle_by = tokio::time::Instant::now() + MAX_SETTLE;
        let mut quiet_until = tokio::time::Instant::now() + DEBOUNCE;
        loop {
            let until = quiet_until.min(settle_by);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(event)) => {
                    let c = self.classify(&event);
                    if c.config || c.plugins {
                        change.config |= c.config;
                        change.plugins |= c.plugins;
                        quiet_until = tokio::time::Instant::now() + DEBOUNCE;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        change
    }
}

/// The spellings under which events may name `path`: as given made
/// absolute, and canonical (a symlinked config, as in a Kubernetes
/// ConfigMap, changes where the link points).
fn variants(path: &Path) -> HashSet<PathBuf> {
    let mut set = HashSet::new();
    if let Ok(abs) = std::path::absolute(path) {
        set.insert(abs);
    }
    if let Ok(canon) = path.canonicalize() {
        set.insert(canon);
    }
    set.insert(path.to_path_buf());
    set
}
