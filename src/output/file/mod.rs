//! The `file` output: append-only writes in large batches, rotation by
//! size exactly as CPython 3.11's `RotatingFileHandler` (`size.rs`) or by
//! time as `TimedRotatingFileHandler` (`timed.rs`), optional gzip of the
//! rotated files on a background thread (`compress.rs`), reopening on
//! SIGHUP and whenever the file is moved or removed under us.
//!
//! Python decides a rollover per record, before writing it. We keep that
//! decision per record while writing in batches: lines are formatted into
//! one buffer, and the buffer is written out (one `write` call) before each
//! rotation, when it passes `WRITE_CHUNK`, when the queue runs empty, or
//! when its oldest line has waited `flush_ms`.
//!
//! A write that fails (a full disk, an I/O error) is logged and retried
//! with backoff; the records stay in the buffer and, while we retry, in
//! the output's bounded queue, so the inputs feel backpressure instead of
//! records being dropped. Other outputs run on their own threads and keep
//! going.

mod compress;
mod pool;
mod size;
mod timed;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{
    count, spawn_thread, LineEncoder, Lines, OutputError, OutputMsg, OutputStats, Senders, Sink,
    WRITE_CHUNK,
};
use crate::config::FileOutputConfig;
use crate::format::clock::now_secs;
use crate::record::Record;
use compress::Compressor;
use size::SizeRotation;
use timed::TimedRotation;

/// How often we check that the path still names the file we write to
/// (an external `mv` without a signal, or an `rm`).
const CHECK_MOVED_EVERY: Duration = Duration::from_secs(1);
/// Longest pause between two write retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long writes are still retried once the pipeline has let go of the
/// output (shutdown, or a reload that removed it): a disk that stays full
/// must not keep the process from exiting.
const RETRY_WHEN_CLOSING: Duration = Duration::from_secs(5);

/// The open file and who it is, to notice when the path names another.
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    regular: bool,
}

/// Which rotation an output does.
enum Rotation {
    None,
    Size(SizeRotation),
    Timed(TimedRotation),
}

struct FileSink {
    name: String,
    path: PathBuf,
    encoder: LineEncoder,
    file: Option<OpenFile>,
    /// Whether the file last opened is a regular file. bpo-45401: Python
    /// never rolls over anything else (`/dev/null`, a FIFO); kept across
    /// a failed reopen, so a device is never renamed.
    regular: bool,
    /// Bytes in the file on disk (`tell()` at end of file), not counting
    /// the buffer.
    size: u64,
    buf: Vec<u8>,
    /// Records in `buf`.
    pending: usize,
    /// When the oldest line in `buf` was formatted.
    oldest: Option<Instant>,
    flush_every: Duration,
    fsync: bool,
    rotation: Rotation,
    /// Background gzip of rotated files, if `compress` is set.
    compressor: Option<Compressor>,
    last_check: Instant,
    /// Tells whether anyone can still send to us: a failing write is
    /// retried forever while they can (backpressure), and only for
    /// [`RETRY_WHEN_CLOSING`] once they are all gone.
    senders: Arc<dyn Senders>,
    /// When a write first failed after the senders were gone.
    closing_since: Option<Instant>,
    /// Set when a write gave up on lines (see [`Sink::gave_up`]).
    gave_up: bool,
    stats: Arc<OutputStats>,
}

/// Open the file (creating parent directories) and start its thread.
pub(crate) fn start(
    name: &str,
    config: &FileOutputConfig,
    rx: mpsc::Receiver<OutputMsg<Lines, Box<FileOutputConfig>>>,
    senders: Arc<dyn Senders>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
    let mut sink = FileSink::new(name, config, senders, stats)?;
    // One file takes all the load: start with a full chunk.
    sink.buf.reserve(WRITE_CHUNK + 4096);
    spawn_thread(name, sink, rx)
}

/// Start the thread of a file output with a templated path (or
/// `max_open_files`): a `pool::FilePool`, which opens one `FileSink` per
/// rendered path as records need them.
pub(crate) fn start_pool(
    name: &str,
    config: &FileOutputConfig,
    max_open: usize,
    rx: mpsc::Receiver<OutputMsg>,
    senders: Arc<dyn Senders>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
    let pool = pool::FilePool::new(name, config, max_open, senders, stats)?;
    spawn_thread(name, pool, rx)
}

impl FileSink {
    /// Open `config.path` (creating parent directories) for a sink.
    fn new(
        name: &str,
        config: &FileOutputConfig,
        senders: Arc<dyn Senders>,
        stats: Arc<OutputStats>,
    ) -> Result<FileSink, OutputError> {
        let open_error = |source| OutputError::Open {
            name: name.to_string(),
            path: config.path.display().to_string(),
            source,
        };
        let encoder = LineEncoder::new(name, config.encoding, &config.text)?;
        // TimedRotatingFileHandler starts its schedule from the file's mtime
        // (before opening it), so a restart does not reset it.
        let mtime = std::fs::metadata(&config.path).ok().map(|m| m.mtime());
        let (file, size) = open(&config.path, config.truncate).map_err(open_error)?;
        let compressor = match config.compress {
            Some(_) => Some(Compressor::start(name, config).map_err(open_error)?),
            None => None,
        };
        Ok(FileSink::with_file(
            name,
            config,
            encoder,
            Some(file),
            size,
            mtime,
            compressor,
            senders,
            stats,
        ))
    }

    /// A sink around an open file, or around none yet (`file: None`: the
    /// first write opens it, retrying as any failed write does).
    #[allow(clippy::too_many_arguments)]
    fn with_file(
        name: &str,
        config: &FileOutputConfig,
        encoder: LineEncoder,
        file: Option<OpenFile>,
        size: u64,
        mtime: Option<i64>,
        compressor: Option<Compressor>,
        senders: Arc<dyn Senders>,
        stats: Arc<OutputStats>,
    ) -> FileSink {
        let rotation = match config.when {
            Some(when) => Rotation::Timed(TimedRotation::new(config, when, mtime, now_secs())),
            None if config.max_bytes > 0 => Rotation::Size(SizeRotation::new(config)),
            None => Rotation::None,
        };
        FileSink {
            name: name.to_string(),
            path: config.path.clone(),
            encoder,
            regular: file.as_ref().is_none_or(|f| f.regular),
            file,
            size,
            // Grown on demand: a pool may hold hundreds of sinks.
            buf: Vec::new(),
            pending: 0,
            oldest: None,
            flush_every: Duration::from_millis(config.flush_ms),
            fsync: config.fsync,
            rotation,
            compressor,
            last_check: Instant::now(),
            senders,
            closing_since: None,
            gave_up: false,
            stats,
        }
    }
}

/// Open for append (as Python's FileHandler mode "a"), or truncate.
fn open(path: &Path, truncate: bool) -> std::io::Result<(OpenFile, u64)> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let file = if truncate {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?
    } else {
        OpenOptions::new().append(true).create(true).open(path)?
    };
    let meta = file.metadata()?;
    let open = OpenFile {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        regular: meta.is_file(),
    };
    Ok((open, meta.len()))
}

/// The number of characters (not bytes) of UTF-8 text, as Python's `len`.
fn char_len(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64
}

/// Lines in `bytes` (for the log line that says how many were lost).
fn bytecount_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// `path` with `suffix` appended to its file name (`app.log` + `.1`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl FileSink {
    /// Whether the record just formatted at `buf[start..]` must go to a
    /// fresh file.
    fn should_rollover(&mut self, start: usize) -> bool {
        let regular = self.regular;
        match &mut self.rotation {
            Rotation::None => false,
            Rotation::Size(s) => {
                let line = &self.buf[start..];
                let tell = self.size + start as u64;
                // A character takes at least one byte: a line that stays
                // under the limit in bytes does in characters too, and only
                // lines near the limit are counted.
                regular
                    && s.should_rollover(tell, line.len() as u64)
                    && s.should_rollover(tell, char_len(line))
            }
            Rotation::Timed(t) => t.should_rollover(now_secs(), regular),
        }
    }

    /// Close, rename (and maybe queue for compression), reopen.
    fn rollover(&mut self) {
        self.write_out();
        if self.fsync {
            self.sync();
        }
        self.file = None;
        // Python checks `os.path.isfile` right before it rotates; so do
        // we, whatever we knew at open.
        if std::fs::metadata(&self.path).is_ok_and(|m| !m.is_file()) {
            self.regular = false;
            self.reopen_file();
            return;
        }
        let compressor = self.compressor.as_ref();
        let result = match &mut self.rotation {
            Rotation::None => Ok(()),
            Rotation::Size(s) => s.rollover(&self.path, compressor),
            Rotation::Timed(t) => t.rollover(&self.path, now_secs(), compressor),
        };
        if let Err(e) = result {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(output = %self.name, error = %e, "Rotation failed; writing on.");
        } else {
            self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        }
        self.reopen_file();
    }

    fn reopen_file(&mut self) {
        self.file = None;
        match open(&self.path, false) {
            Ok((f, size)) => {
                self.regular = f.regular;
                self.file = Some(f);
                self.size = size;
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(output = %self.name, path = %self.path.display(), error = %e, "Cannot open the file; will retry.");
            }
        }
    }

    fn sync(&mut self) {
        if let Some(f) = &self.file {
            if let Err(e) = f.file.sync_data() {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(output = %self.name, error = %e, "fsync failed.");
            }
        }
    }

    /// Write the buffer, retrying on errors (a full disk): records are
    /// kept, not thrown away, and the queue behind us applies backpressure.
    /// Progress is tracked per `write` call, so a partial write is never
    /// written twice.
    fn write_out(&mut self) {
        let mut written = 0;
        let mut delay = Duration::from_millis(50);
        while written < self.buf.len() {
            if self.file.is_none() {
                self.reopen_file();
            }
            let result = match self.file.as_mut() {
                Some(f) => f.file.write(&self.buf[written..]),
                None => Err(std::io::Error::other("the file is not open")),
            };
            match result {
                Ok(0) => self.write_failed(
                    &std::io::Error::from(std::io::ErrorKind::WriteZero),
                    &mut delay,
                ),
                Ok(n) => {
                    written += n;
                    self.size += n as u64;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => self.write_failed(&e, &mut delay),
            }
            if self.senders.gone() {
                let since = *self.closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RETRY_WHEN_CLOSING {
                    let lost = bytecount_lines(&self.buf[written..]);
                    tracing::error!(output = %self.name, path = %self.path.display(), lines = lost, "Shutting down with the file still failing; the unwritten lines are lost.");
                    self.gave_up = true;
                    break;
                }
            }
        }
        if written > 0 {
            if self.fsync {
                self.sync();
            }
            count(&self.stats, self.pending, written);
        }
        self.buf.clear();
        self.pending = 0;
        self.oldest = None;
    }

    fn write_failed(&mut self, e: &std::io::Error, delay: &mut Duration) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(output = %self.name, path = %self.path.display(), error = %e, retry_ms = delay.as_millis() as u64, "Write failed; retrying.");
        std::thread::sleep(*delay);
        *delay = (*delay * 2).min(MAX_RETRY_DELAY);
        // Reopen before the next try: the fd may be dead (a removed
        // directory, a lazily unmounted disk), and appending to a fresh
        // open of the path is safe since we track what was written.
        self.file = None;
    }

    /// Reopen if the path no longer names the open file: someone moved or
    /// removed it (logrotate without `postrotate` HUP, a careless `rm`).
    fn check_moved(&mut self) {
        self.last_check = Instant::now();
        let Some(open) = &self.file else {
            return;
        };
        let same = std::fs::metadata(&self.path)
            .map(|m| m.dev() == open.dev && m.ino() == open.ino)
            .unwrap_or(false);
        if !same {
            // What is buffered belongs with what was already written.
            self.write_out();
            self.reopen_file();
            tracing::info!(output = %self.name, path = %self.path.display(), "The file was moved or removed; reopened.");
        }
    }
}

impl FileSink {
    /// Before a batch: its lines start waiting now.
    fn batch_starts(&mut self) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// The line at `buf[start..]` was just appended: rotate before it if
    /// Python would, and write out a full chunk.
    fn line_added(&mut self, start: usize) {
        if self.should_rollover(start) {
            // Keep this line aside, rotate, then put it back.
            let line = self.buf.split_off(start);
            self.rollover();
            self.buf.extend_from_slice(&line);
            self.oldest = Some(Instant::now());
        }
        self.pending += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out();
            self.oldest = Some(Instant::now());
        }
    }

    /// After a batch: write if its oldest line waited `flush_ms`, and
    /// check that the path still names our file.
    fn batch_done(&mut self) {
        if self.oldest.is_some_and(|t| t.elapsed() >= self.flush_every) {
            self.write_out();
        }
        if self.last_check.elapsed() >= CHECK_MOVED_EVERY {
            self.check_moved();
        }
    }

    /// Format and buffer a batch (a pool's sink: the pool renders each
    /// record's path, so it gets records, not lines).
    fn records(&mut self, batch: Vec<Record>) {
        self.batch_starts();
        for r in &batch {
            let start = self.buf.len();
            self.encoder.encode(r, &mut self.buf);
            self.line_added(start);
        }
        self.batch_done();
    }
}

/// A file output with one path: its senders format the lines, and a
/// reload can hand it new settings for the same file.
impl Sink for FileSink {
    type Batch = Lines;
    type Settings = Box<FileOutputConfig>;

    fn write(&mut self, lines: Lines) {
        self.batch_starts();
        for line in lines.iter() {
            let start = self.buf.len();
            self.buf.extend_from_slice(line);
            self.line_added(start);
        }
        self.batch_done();
    }

    /// Take a reloaded config for the same file (rotation, compression,
    /// flushing or format changed), keeping the open file, after writing
    /// out everything queued before it: one writer per file, so lines stay
    /// in order and two threads never rotate the same file.
    fn retune(&mut self, config: Box<FileOutputConfig>) {
        let config: &FileOutputConfig = &config;
        self.write_out();
        let encoder = match LineEncoder::new(&self.name, config.encoding, &config.text) {
            Ok(e) => e,
            Err(e) => {
                // Checked when the reload built its handle; cannot happen.
                tracing::error!(output = %self.name, error = %e, "Reload not applied to the file.");
                return;
            }
        };
        // A rotated file queued for gzip is finished by the old worker.
        self.compressor = None;
        let compressor = config.compress.and_then(|_| {
            Compressor::start(&self.name, config)
                .map_err(|e| {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(output = %self.name, error = %e, "Cannot start compression; rotated files stay uncompressed.");
                })
                .ok()
        });
        let mtime = std::fs::metadata(&config.path).ok().map(|m| m.mtime());
        let mut next = FileSink::with_file(
            &self.name,
            config,
            encoder,
            self.file.take(),
            self.size,
            mtime,
            compressor,
            self.senders.clone(),
            self.stats.clone(),
        );
        if let (Rotation::Timed(new), Rotation::Timed(old)) = (&mut next.rotation, &self.rotation) {
            new.keep_schedule_of(old);
        }
        // Normally empty after write_out; kept if writes are failing.
        next.regular = self.regular;
        next.buf = std::mem::take(&mut self.buf);
        next.pending = self.pending;
        next.oldest = self.oldest;
        next.closing_since = self.closing_since;
        *self = next;
        tracing::info!(output = %self.name, path = %self.path.display(), "Output settings changed by reload; same file and queue.");
    }

    fn reopen(&mut self) {
        self.write_out();
        self.reopen_file();
        tracing::info!(output = %self.name, path = %self.path.display(), "Reopened.");
    }

    fn flush(&mut self) {
        self.write_out();
    }

    fn gave_up(&mut self) -> bool {
        std::mem::take(&mut self.gave_up)
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(CHECK_MOVED_EVERY.min(self.flush_every.max(Duration::from_millis(10))))
    }

    fn tick(&mut self) {
        if !self.buf.is_empty() {
            self.write_out();
        }
        if self.last_check.elapsed() >= CHECK_MOVED_EVERY {
            self.check_moved();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_len_counts_characters_like_python_len() {
        assert_eq!(char_len(b"abc\n"), 4);
        assert_eq!(char_len("é€😀\n".as_bytes()), 4);
    }

    #[test]
    fn with_suffix_appends_to_the_file_name() {
        assert_eq!(
            with_suffix(Path::new("run/app.log"), ".1"),
            PathBuf::from("run/app.log.1")
        );
    }
}
