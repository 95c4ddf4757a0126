//! gzip of rotated files, on a background thread per output, so the write
//! path only renames.
//!
//! A rotated file is compressed to `<file>.gz.tmp`, fsynced, and only then
//! is the uncompressed file removed and the `.tmp` renamed into place:
//! - size rotation: the write thread renames `app.log` to a pending name
//!   (`app.log.pending-<nanos>`, never a backup name); this thread
//!   compresses it, shifts `app.log.i.gz` to `app.log.i+1.gz` as Python
//!   shifts `.i`, and renames the result to `app.log.1.gz`. Jobs run in
//!   order, so the numbering is that of Python's uncompressed files.
//! - time rotation: the write thread renames to Python's name
//!   (`app.log.2026-11-21`); this thread makes `app.log.2026-11-21.gz` and
//!   then deletes the oldest backups, `.tmp` files never counting.
//!
//! A crash leaves at worst a pending file and a `.gz.tmp`. At start-up a
//! `.gz.tmp` whose source still exists is half written: it is removed and
//! the source compressed again; one whose source is gone is complete (the
//! source is removed only after the `.tmp` is synced) and is renamed into
//! place. So nothing is lost, nothing is doubled, and a half `.gz` is never
//! taken for a backup.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::size::shift;
use super::timed::files_to_delete;
use super::with_suffix;
use crate::config::{FileOutputConfig, When};

/// How rotated files are named, which decides what a job does after it
/// compressed its file.
#[derive(Clone, Copy)]
enum Mode {
    Size { backup_count: u32 },
    Timed { when: When, backup_count: u32 },
}

/// The background compressor of one output. Dropping it finishes the
/// queued jobs and joins the thread.
pub(super) struct Compressor {
    base: PathBuf,
    tx: Option<mpsc::Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

struct Worker {
    name: String,
    base: PathBuf,
    mode: Mode,
}

impl Compressor {
    /// Start the thread, and queue what a previous run left unfinished.
    pub(super) fn start(name: &str, config: &FileOutputConfig) -> io::Result<Compressor> {
        let mode = match config.when {
            Some(when) => Mode::Timed {
                when,
                backup_count: config.backup_count,
            },
            None => Mode::Size {
                backup_count: config.backup_count,
            },
        };
        let worker = Worker {
            name: name.to_string(),
            base: config.path.clone(),
            mode,
        };
        let leftovers = worker.leftovers();
        let (tx, rx) = mpsc::channel();
        for src in leftovers {
            // The receiver is alive: it is right here.
            let _ = tx.send(src);
        }
        let thread = std::thread::Builder::new()
            .name(format!("gzip-{name}"))
            .spawn(move || {
                for src in rx {
                    if let Err(e) = worker.job(&src) {
                        tracing::error!(output = %worker.name, file = %src.display(), error = %e, "Compressing a rotated file failed; it stays uncompressed.");
                    }
                }
            })?;
        Ok(Compressor {
            base: config.path.clone(),
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Size rotation: move the closed file to a fresh pending name and
    /// queue it.
    pub(super) fn rotate_size(&self, base: &Path) -> io::Result<()> {
        if !base.exists() {
            return Ok(());
        }
        let mut nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pending = loop {
            // Fixed width, so names sort in rotation order at start-up.
            let p = with_suffix(base, &format!(".pending-{nanos:020}"));
            if !p.exists() {
                break p;
            }
            nanos += 1;
        };
        std::fs::rename(base, &pending)?;
        self.submit(pending);
        Ok(())
    }

    /// Time rotation: queue the file already renamed to its final name.
    pub(super) fn rotate_timed(&self, rotated: &Path) -> io::Result<()> {
        if rotated.exists() {
            self.submit(rotated.to_path_buf());
        }
        Ok(())
    }

    fn submit(&self, src: PathBuf) {
        if let Some(tx) = &self.tx {
            if tx.send(src).is_err() {
                tracing::error!(file = %self.base.display(), "The compressor thread is gone; the rotated file stays uncompressed.");
            }
        }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Worker {
    /// Compress `src` (if it is still there) and put the result in place.
    fn job(&self, src: &Path) -> io::Result<()> {
        let tmp = with_suffix(src, ".gz.tmp");
        if src.exists() {
            gzip(src, &tmp)?;
            std::fs::remove_file(src)?;
        }
        if !tmp.exists() {
            return Ok(());
        }
        match self.mode {
            Mode::Size { backup_count } => {
                shift(&self.base, backup_count, ".gz")?;
                std::fs::rename(&tmp, with_suffix(&self.base, ".1.gz"))?;
            }
            Mode::Timed { when, backup_count } => {
                std::fs::rename(&tmp, with_suffix(src, ".gz"))?;
                if backup_count > 0 {
                    for old in files_to_delete(&self.base, when, backup_count, true)? {
                        std::fs::remove_file(old)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// What a previous run left: pending files (size), uncompressed
    /// rotated files (time), and `.gz.tmp` files, sorted oldest first.
    fn leftovers(&self) -> Vec<PathBuf> {
        let dir = match self.base.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(base_name) = self.base.file_name().and_then(|n| n.to_str()) else {
            return Vec::new();
        };
        let prefix = format!("{base_name}.");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut srcs: Vec<String> = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let (src_rest, is_tmp) = match rest.strip_suffix(".gz.tmp") {
                Some(r) => (r, true),
                None => (rest, false),
            };
            let ours = match self.mode {
                Mode::Size { .. } => src_rest.starts_with("pending-"),
                Mode::Timed { when, .. } => super::timed::is_suffix(src_rest, when),
            };
            if !ours {
                continue;
            }
            let src = format!("{prefix}{src_rest}");
            if is_tmp && dir.join(&src).exists() {
                // Half written: the source is still there to redo it from.
                let _ = std::fs::remove_file(dir.join(&name));
            }
            srcs.push(src);
        }
        srcs.sort();
        srcs.dedup();
        if !srcs.is_empty() {
            tracing::info!(output = %self.name, files = srcs.len(), "Finishing compression left over by a previous run.");
        }
        srcs.into_iter().map(|s| dir.join(s)).collect()
    }
}

/// gzip `src` into `dst`, synced to disk before we return.
fn gzip(src: &Path, dst: &Path) -> io::Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, File::open(src)?);
    let out = File::create(dst)?;
    let mut enc = GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, out),
        Compression::default(),
    );
    io::copy(&mut input, &mut enc)?;
    let mut out = enc.finish()?;
    out.flush()?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compress, Encoding, TextFormat};
    use std::io::Read;

    fn config(path: &Path, when: Option<When>, backup_count: u32) -> FileOutputConfig {
        FileOutputConfig {
            path: path.to_path_buf(),
            encoding: Encoding::Text,
            text: TextFormat::default(),
            max_bytes: if when.is_none() { 100 } else { 0 },
            backup_count,
            when,
            interval: 1,
            at_time: None,
            compress: Some(Compress::Gzip),
            flush_ms: 100,
            fsync: false,
            truncate: false,
            max_open_files: None,
        }
    }

    fn gunzip(p: &Path) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(File::open(p).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn size_rotation_shifts_gz_names_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        let c = Compressor::start("t", &config(&base, None, 2)).unwrap();
        for text in ["one\n", "two\n", "three\n"] {
            std::fs::write(&base, text).unwrap();
            c.rotate_size(&base).unwrap();
        }
        drop(c);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["app.log.1.gz", "app.log.2.gz"]);
        assert_eq!(gunzip(&dir.path().join("app.log.1.gz")), "three\n");
        assert_eq!(gunzip(&dir.path().join("app.log.2.gz")), "two\n");
    }

    #[test]
    fn a_crash_mid_compression_is_redone_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        // A half-written .gz.tmp next to its source, and a complete one
        // whose source was already removed.
        std::fs::write(dir.path().join("app.log.2026-11-20"), "day20\n").unwrap();
        std::fs::write(dir.path().join("app.log.2026-11-20.gz.tmp"), "garbage").unwrap();
        gzip_bytes(b"day19\n", &dir.path().join("app.log.2026-11-19.gz.tmp"));
        let c = Compressor::start("t", &config(&base, Some(When::D), 0)).unwrap();
        drop(c);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["app.log.2026-11-19.gz", "app.log.2026-11-20.gz"]);
        assert_eq!(gunzip(&dir.path().join("app.log.2026-11-19.gz")), "day19\n");
        assert_eq!(gunzip(&dir.path().join("app.log.2026-11-20.gz")), "day20\n");
    }

    fn gzip_bytes(data: &[u8], dst: &Path) {
        let src = dst.with_extension("src");
        std::fs::write(&src, data).unwrap();
        gzip(&src, dst).unwrap();
        std::fs::remove_file(src).unwrap();
    }
}
