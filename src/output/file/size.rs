//! Size rotation, exactly as CPython 3.11's `RotatingFileHandler`.
//!
//! `shouldRollover`: `tell() + len(msg) >= maxBytes`, where `tell()` is the
//! file's size in bytes and `len(msg)` counts the *characters* of the
//! formatted line plus `\n`. So an empty file rolls over before a line that
//! alone reaches `maxBytes` (leaving an empty `app.log.1`), as Python does.
//!
//! `doRollover`: shift `.i` to `.i+1` for i = backupCount-1 .. 1, the file
//! to `.1`, reopen. With `backupCount` 0 Python only closes and reopens the
//! same file, so it never rotates; `maxBytes` 0 never even decides to.
//!
//! With compression the rotated file is renamed to a pending name and the
//! compressor does the shifting of `.i.gz` names, in order, off this
//! thread (see `compress.rs`).

use std::io;
use std::path::Path;

use super::compress::Compressor;
use super::with_suffix;
use crate::config::FileOutputConfig;

/// The state of a size-rotated file.
pub(super) struct SizeRotation {
    max_bytes: u64,
    backup_count: u32,
}

impl SizeRotation {
    pub(super) fn new(config: &FileOutputConfig) -> SizeRotation {
        SizeRotation {
            max_bytes: config.max_bytes,
            backup_count: config.backup_count,
        }
    }

    /// `tell` is the file size in bytes, `line_chars` the line's length in
    /// characters, `\n` included.
    pub(super) fn should_rollover(&self, tell: u64, line_chars: u64) -> bool {
        self.max_bytes > 0 && tell + line_chars >= self.max_bytes
    }

    /// Rename the closed file out of the way, as `doRollover`.
    pub(super) fn rollover(&self, base: &Path, compressor: Option<&Compressor>) -> io::Result<()> {
        if self.backup_count == 0 {
            return Ok(());
        }
        if let Some(c) = compressor {
            return c.rotate_size(base);
        }
        shift(base, self.backup_count, "")?;
        let dst = with_suffix(base, ".1");
        if dst.exists() {
            std::fs::remove_file(&dst)?;
        }
        // Python's `rotate` renames only a file that exists (bpo-18940).
        if base.exists() {
            std::fs::rename(base, dst)?;
        }
        Ok(())
    }
}

/// Shift `base.i{ext}` to `base.i+1{ext}` for i = backup_count-1 .. 1,
/// replacing what is there, as `doRollover`'s loop.
pub(super) fn shift(base: &Path, backup_count: u32, ext: &str) -> io::Result<()> {
    for i in (1..backup_count).rev() {
        let src = with_suffix(base, &format!(".{i}{ext}"));
        let dst = with_suffix(base, &format!(".{}{ext}", i + 1));
        if src.exists() {
            if dst.exists() {
                std::fs::remove_file(&dst)?;
            }
            std::fs::rename(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(max_bytes: u64, backup_count: u32) -> SizeRotation {
        SizeRotation {
            max_bytes,
            backup_count,
        }
    }

    #[test]
    fn rolls_over_at_greater_or_equal() {
        let r = rotation(10, 3);
        assert!(!r.should_rollover(5, 4));
        assert!(r.should_rollover(5, 5));
        assert!(r.should_rollover(0, 10), "an empty file rolls over too");
        assert!(!rotation(0, 3).should_rollover(1 << 40, 1));
    }

    #[test]
    fn shifts_like_python_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        for (name, text) in [("app.log", "c"), ("app.log.1", "b"), ("app.log.2", "a")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        rotation(1, 2).rollover(&base, None).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).ok();
        assert_eq!(read("app.log"), None);
        assert_eq!(read("app.log.1").as_deref(), Some("c"));
        assert_eq!(read("app.log.2").as_deref(), Some("b"));
        assert_eq!(read("app.log.3"), None);
    }

    #[test]
    fn backup_count_zero_renames_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        std::fs::write(&base, "x").unwrap();
        rotation(1, 0).rollover(&base, None).unwrap();
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "x");
        assert!(!dir.path().join("app.log.1").exists());
    }
}
