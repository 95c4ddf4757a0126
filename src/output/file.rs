//! The `file` output: append-only writes in large batches, with size
//! rotation exactly as CPython 3.11's `RotatingFileHandler`.
//!
//! Python decides a rollover per record: `tell() + len(msg) >= maxBytes`,
//! where `tell()` is the file's byte size and `len(msg)` counts the
//! *characters* of the formatted line plus `\n`. We keep the same decision
//! per record while writing in batches: the size is tracked as bytes
//! already in the file plus bytes buffered, and the buffer is written out
//! before each rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    count, spawn_thread, LineEncoder, OutputError, OutputMsg, OutputStats, Sink, WRITE_CHUNK,
};
use crate::config::FileOutputConfig;
use crate::record::Record;

struct FileSink {
    name: String,
    config: FileOutputConfig,
    encoder: LineEncoder,
    file: Option<File>,
    /// Bytes in the file on disk, as `tell()` at end of file would say.
    size: u64,
    buf: Vec<u8>,
    pending: usize,
    stats: Arc<OutputStats>,
}

/// Open the file (creating parent directories) and start its thread.
pub fn start(
    name: &str,
    config: &FileOutputConfig,
    rx: mpsc::Receiver<OutputMsg>,
    stats: Arc<OutputStats>,
) -> Result<JoinHandle<()>, OutputError> {
    let encoder = LineEncoder::new(name, config.encoding, &config.text)?;
    let (file, size) = open(&config.path, config.truncate).map_err(|source| OutputError::Open {
        name: name.to_string(),
        path: config.path.display().to_string(),
        source,
    })?;
    let sink = FileSink {
        name: name.to_string(),
        config: config.clone(),
        encoder,
        file: Some(file),
        size,
        buf: Vec::with_capacity(WRITE_CHUNK + 4096),
        pending: 0,
        stats,
    };
    spawn_thread(name, sink, rx)
}

/// Open for append (as Python's FileHandler mode "a"), or truncate.
fn open(path: &Path, truncate: bool) -> std::io::Result<(File, u64)> {
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
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// The number of characters (not bytes) of UTF-8 text, as Python's `len`.
fn char_len(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64
}

impl FileSink {
    fn rotates_by_size(&self) -> bool {
        self.config.max_bytes > 0
    }

    /// RotatingFileHandler.doRollover: shift `.i` to `.i+1`, the file to
    /// `.1`, reopen. With backup_count 0 Python only reopens the same file.
    fn rotate(&mut self) {
        self.write_out();
        self.file = None;
        let base = self.config.path.clone();
        if self.config.backup_count > 0 {
            for i in (1..self.config.backup_count).rev() {
                let src = numbered(&base, i);
                let dst = numbered(&base, i + 1);
                if src.exists() {
                    let _ = std::fs::remove_file(&dst);
                    if let Err(e) = std::fs::rename(&src, &dst) {
                        tracing::warn!(output = %self.name, error = %e, "Rotation rename failed.");
                    }
                }
            }
            let dst = numbered(&base, 1);
            let _ = std::fs::remove_file(&dst);
            if let Err(e) = std::fs::rename(&base, &dst) {
                tracing::warn!(output = %self.name, error = %e, "Rotation rename failed.");
            }
        }
        self.reopen_file();
    }

    fn reopen_file(&mut self) {
        match open(&self.config.path, false) {
            Ok((f, size)) => {
                self.file = Some(f);
                self.size = size;
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(output = %self.name, path = %self.config.path.display(), error = %e, "Cannot reopen the file; will retry.");
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
                Some(file) => file.write(&self.buf[written..]),
                None => Err(std::io::Error::other("file is not open")),
            };
            match result {
                Ok(0) => self.write_failed(
                    &std::io::Error::from(std::io::ErrorKind::WriteZero),
                    &mut delay,
                ),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.write_failed(&e, &mut delay),
            }
        }
        if written > 0 {
            if self.config.fsync {
                if let Some(f) = &self.file {
                    let _ = f.sync_data();
                }
            }
            count(&self.stats, self.pending, written);
        }
        self.buf.clear();
        self.pending = 0;
    }

    fn write_failed(&mut self, e: &std::io::Error, delay: &mut Duration) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(output = %self.name, error = %e, retry_ms = delay.as_millis() as u64, "Write failed; retrying.");
        std::thread::sleep(*delay);
        *delay = (*delay * 2).min(Duration::from_secs(2));
    }
}

fn numbered(base: &Path, i: u32) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl Sink for FileSink {
    fn records(&mut self, batch: Vec<Record>) {
        for r in &batch {
            let start = self.buf.len();
            self.encoder.encode(r, &mut self.buf);
            if self.rotates_by_size() {
                let line_chars = char_len(&self.buf[start..]);
                let tell = self.size + start as u64;
                if tell + line_chars >= self.config.max_bytes {
                    // Keep this line aside, rotate, then put it back.
                    let line = self.buf.split_off(start);
                    self.rotate();
                    self.buf.extend_from_slice(&line);
                }
            }
            self.pending += 1;
            if self.buf.len() >= WRITE_CHUNK {
                let n = self.buf.len() as u64;
                self.write_out();
                self.size += n;
            }
        }
    }

    fn reopen(&mut self) {
        let n = self.buf.len() as u64;
        self.write_out();
        self.size += n;
        self.file = None;
        self.reopen_file();
        tracing::info!(output = %self.name, path = %self.config.path.display(), "Reopened.");
    }

    fn flush(&mut self) {
        let n = self.buf.len() as u64;
        self.write_out();
        self.size += n;
    }
}
