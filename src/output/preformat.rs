//! Formatting in the sender: an output whose lines depend only on the
//! record has them formatted by the input's task, each worker thread with
//! its own clone of the encoder (a thread-local cache by [`Preformat`] id).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{LineEncoder, Lines};
use crate::codec::Keep;
use crate::record::Record;

/// How an output whose lines depend only on the record (a file with one
/// path, a stream) has its records formatted by the task that decoded
/// them, on the input's thread, rather than on the output's thread.
///
/// The output thread then only copies bytes into its write buffer. The
/// records are read and freed where they were built, while they are still
/// in that core's cache; formatting them on the output thread made every
/// field cross between cores twice (read, then freed) and put every free
/// on glibc's cross-thread path.
///
/// A template keeps caches (asctime, field positions) and rate-limited
/// warnings, so each worker thread formats with its own clone of the
/// prototype, found by `id`. Lines are the same whoever formats them.
#[derive(Debug)]
pub(crate) struct Preformat {
    id: u64,
    /// The record fields the encoder reads.
    pub(super) reads: Keep,
    /// Only cloned, once per thread; the lock makes the shared prototype
    /// `Sync` (a template's caches are `Cell`s).
    proto: std::sync::Mutex<LineEncoder>,
}

/// Ids of [`Preformat`]s, unique for the life of the process.
static NEXT_PREFORMAT: AtomicU64 = AtomicU64::new(1);

/// Worker threads' clones of the encoders they formatted with lately,
/// by [`Preformat::id`]. Outputs a reload removed leave stale entries; the
/// list is cleared when it grows past [`MAX_THREAD_ENCODERS`].
const MAX_THREAD_ENCODERS: usize = 64;
thread_local! {
    static ENCODERS: std::cell::RefCell<Vec<(u64, LineEncoder, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Preformat {
    pub(super) fn new(proto: LineEncoder) -> Preformat {
        Preformat {
            id: NEXT_PREFORMAT.fetch_add(1, Ordering::Relaxed),
            reads: proto.reads(),
            proto: std::sync::Mutex::new(proto),
        }
    }

    /// Format `batch` into lines, with this thread's clone of the encoder.
    pub(super) fn lines(&self, batch: &[Record]) -> Lines {
        let mut lines = Lines {
            buf: Vec::new(),
            ends: Vec::with_capacity(batch.len()),
        };
        ENCODERS.with_borrow_mut(|encoders| {
            let i = match encoders.iter().position(|(id, _, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    if encoders.len() >= MAX_THREAD_ENCODERS {
                        encoders.clear();
                    }
                    // Never poisoned: nothing panics while it is held.
                    let proto = match self.proto.lock() {
                        Ok(p) => p.clone(),
                        Err(poisoned) => poisoned.into_inner().clone(),
                    };
                    encoders.push((self.id, proto, 192));
                    encoders.len() - 1
                }
            };
            let (_, encoder, line_bytes) = &mut encoders[i];
            // Room for lines as long as the last batch's (up to 1 MiB), so
            // the buffer is not copied as it grows.
            lines
                .buf
                .reserve((batch.len() * *line_bytes).min(1 << 20) + 64);
            for r in batch {
                encoder.encode(r, &mut lines.buf);
                lines
                    .ends
                    .push(u32::try_from(lines.buf.len()).unwrap_or(u32::MAX));
            }
            if !batch.is_empty() {
                *line_bytes = (lines.buf.len() / batch.len()).clamp(64, 16 * 1024) + 16;
            }
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, TextFormat};
    use crate::record::Value;

    #[test]
    fn preformat_gives_the_lines_the_output_would_write() {
        let text = TextFormat {
            format: "%(levelname)s:%(name)s:%(message)s".into(),
            ..TextFormat::default()
        };
        let mut encoder = LineEncoder::new("t", Encoding::Text, &text).unwrap();
        let records: Vec<Record> = (0..3)
            .map(|i| {
                Record::of(&[
                    ("name", Value::str("app")),
                    ("levelname", Value::str("INFO")),
                    ("msg", Value::str(format!("m{i}"))),
                ])
            })
            .collect();
        let mut expected = Vec::new();
        for r in &records {
            encoder.encode(r, &mut expected);
        }
        let pre = Preformat::new(encoder);
        let lines = pre.lines(&records);
        assert_eq!(lines.buf, expected);
        assert_eq!(lines.buf, b"INFO:app:m0\nINFO:app:m1\nINFO:app:m2\n");
        assert_eq!(lines.ends, [12, 24, 36]);
        // The thread's clone serves the next batch too.
        assert_eq!(pre.lines(&records[..1]).buf, b"INFO:app:m0\n");
    }
}
