//! A templated file output: one [`FileSink`] per rendered path, each
//! with the rotation, compression, reopen and flush behaviour of a plain
//! `path`, opened on first use and kept in a pool bounded by
//! `max_open_files`. Beyond the bound the least recently used file is
//! written out and closed; a record for it later reopens it for append,
//! so nothing is lost or written twice.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{open, Compressor, FileSink, CHECK_MOVED_EVERY};
use crate::config::FileOutputConfig;
use crate::format::path::PathTemplate;
use crate::output::{LineEncoder, OutputError, OutputStats, Senders, Sink};
use crate::record::Record;

/// One open file and when it was last used (a logical clock).
struct Slot {
    sink: FileSink,
    used: u64,
}

/// The sink of a file output whose `path` is a template.
pub(super) struct FilePool {
    name: String,
    /// The output's config; `path` is the template.
    config: FileOutputConfig,
    template: PathTemplate,
    max_open: usize,
    open: HashMap<PathBuf, Slot>,
    clock: u64,
    /// The path being rendered (reused buffer).
    rendered: String,
    senders: Arc<dyn Senders>,
    /// Records given up on since [`Sink::gave_up`] was last asked.
    gave_up: bool,
    stats: Arc<OutputStats>,
}

impl FilePool {
    /// Compile the template and the format; files open as records come.
    pub(super) fn new(
        name: &str,
        config: &FileOutputConfig,
        max_open: usize,
        senders: Arc<dyn Senders>,
        stats: Arc<OutputStats>,
    ) -> Result<FilePool, OutputError> {
        let invalid = |what: String| OutputError::Open {
            name: name.to_string(),
            path: config.path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, what),
        };
        // The config check parsed the template already; a path that is not
        // UTF-8 cannot be one.
        let text = config
            .path
            .to_str()
            .ok_or_else(|| invalid("a path template must be UTF-8".into()))?;
        let template =
            PathTemplate::new(text, config.text.utc).map_err(|e| invalid(e.to_string()))?;
        // Fail at start, not at the first record, if the format is bad.
        LineEncoder::new(name, config.encoding, &config.text)?;
        Ok(FilePool {
            name: name.to_string(),
            config: config.clone(),
            template,
            max_open: max_open.max(1),
            open: HashMap::new(),
            clock: 0,
            rendered: String::new(),
            senders,
            gave_up: false,
            stats,
        })
    }

    /// The sink for `path`, opened (and another closed) if need be.
    fn sink_for(&mut self, path: PathBuf) -> Option<&mut FileSink> {
        self.clock += 1;
        let now = self.clock;
        if !self.open.contains_key(&path) {
            while self.open.len() >= self.max_open {
                self.close_least_recent();
            }
            let sink = self.open_sink(path.clone())?;
            self.open.insert(path.clone(), Slot { sink, used: now });
        }
        let slot = self.open.get_mut(&path)?;
        slot.used = now;
        Some(&mut slot.sink)
    }

    /// Write out and close the file used longest ago. A linear scan: it
    /// runs only when a new file opens, over at most `max_open_files`.
    fn close_least_recent(&mut self) {
        let Some(path) = self
            .open
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        if let Some(mut slot) = self.open.remove(&path) {
            // Dropping the sink closes the file (and waits for its gzip
            // jobs, if any).
            slot.sink.flush();
            self.gave_up |= slot.sink.gave_up();
        }
    }

    /// A sink for one rendered path. A file that cannot be opened now (a
    /// permission, a full inode table) is retried by the first write, as
    /// a plain output retries, so its records wait rather than vanish.
    fn open_sink(&mut self, path: PathBuf) -> Option<FileSink> {
        let mut config = self.config.clone();
        config.path = path;
        config.max_open_files = None;
        // Reopened files must never lose what they hold (the config check
        // rejects `truncate` with a template).
        config.truncate = false;
        let encoder = match LineEncoder::new(&self.name, config.encoding, &config.text) {
            Ok(e) => e,
            // Compiled once in `new`; the same text compiles again.
            Err(e) => {
                tracing::error!(output = %self.name, error = %e, "Cannot compile the format.");
                return None;
            }
        };
        let mtime = std::fs::metadata(&config.path).ok().map(|m| m.mtime());
        let (file, size) = match open(&config.path, false) {
            Ok((f, size)) => (Some(f), size),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(output = %self.name, path = %config.path.display(), error = %e, "Cannot open the file; will retry.");
                (None, 0)
            }
        };
        let compressor = match config.compress {
            Some(_) => match Compressor::start(&self.name, &config) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(output = %self.name, path = %config.path.display(), error = %e, "Cannot start gzip; rotated files stay uncompressed.");
                    None
                }
            },
            None => None,
        };
        Some(FileSink::with_file(
            &self.name,
            &config,
            encoder,
            file,
            size,
            mtime,
            compressor,
            self.senders.clone(),
            self.stats.clone(),
        ))
    }
}

/// A templated file output: it renders each record's path, so it takes
/// records, and it takes no settings (a reload starts a new pool).
impl Sink for FilePool {
    type Batch = Vec<Record>;
    type Settings = Infallible;

    fn write(&mut self, batch: Vec<Record>) {
        // Group by file, keeping each file's records in arrival order.
        let mut groups: Vec<(PathBuf, Vec<Record>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in batch {
            self.template.render(&r, &mut self.rendered);
            let i = match index.get(&self.rendered) {
                Some(&i) => i,
                None => {
                    index.insert(self.rendered.clone(), groups.len());
                    groups.push((PathBuf::from(&self.rendered), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].1.push(r);
        }
        for (path, records) in groups {
            match self.sink_for(path) {
                Some(sink) => sink.records(records),
                None => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.gave_up = true;
                }
            }
        }
    }

    fn retune(&mut self, settings: Infallible) {
        match settings {}
    }

    fn reopen(&mut self) {
        for slot in self.open.values_mut() {
            slot.sink.reopen();
        }
    }

    fn flush(&mut self) {
        for slot in self.open.values_mut() {
            slot.sink.flush();
        }
    }

    fn gave_up(&mut self) -> bool {
        let mut any = std::mem::take(&mut self.gave_up);
        for slot in self.open.values_mut() {
            any |= slot.sink.gave_up();
        }
        any
    }

    fn tick_every(&self) -> Option<Duration> {
        let flush_every = Duration::from_millis(self.config.flush_ms);
        Some(CHECK_MOVED_EVERY.min(flush_every.max(Duration::from_millis(10))))
    }

    fn tick(&mut self) {
        for slot in self.open.values_mut() {
            slot.sink.tick();
        }
    }
}
