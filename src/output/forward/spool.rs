//! `spool_dir`: where a forward output's buffer overflows to disk instead
//! of blocking, and where what is undelivered at shutdown waits for the
//! next start.
//!
//! The spool is a queue of segment files `<number>.spool`, oldest (lowest
//! number) first. Each holds an 8-byte magic, one encoder byte, then
//! length-prefixed payloads (4-byte big-endian length, as on the wire).
//! New records are appended to the newest segment; the output loads the
//! oldest whole segment into memory when it has room, and deletes its file.
//! At shutdown the records still in memory go into a segment numbered
//! before every other one, so order holds across restarts. A torn tail (a
//! crash mid-append) ends that segment's records.
//!
//! What the spool does not cover: records in memory when the sender is
//! killed (SIGKILL, power loss) — only a graceful stop writes them out.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::codec::{encode, DecoderKind};
use crate::config::Encoder;

const MAGIC: &[u8; 8] = b"LRSPOOL1";
/// Number of the first segment: prepends count down from here.
const FIRST: u64 = 1 << 40;

/// A forward output's spool directory.
pub(crate) struct Spool {
    dir: PathBuf,
    encoder: Encoder,
    /// Closed segments, oldest first: (number, records).
    segments: VecDeque<(u64, usize)>,
    /// The segment being appended to.
    writing: Option<(u64, BufWriter<File>, usize)>,
    /// Records per segment.
    limit: usize,
    on_disk: usize,
}

impl Spool {
    /// Open (creating) `dir` and find the segments a previous run left.
    pub(crate) fn open(dir: &Path, encoder: Encoder, buffer_records: usize) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_suffix(".spool")
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            encoder,
            segments: VecDeque::new(),
            writing: None,
            limit: (buffer_records / 2).clamp(1, 10_000),
            on_disk: 0,
        };
        for n in numbers {
            let (_, payloads) = read_segment(&spool.path(n))?;
            spool.on_disk += payloads.len();
            spool.segments.push_back((n, payloads.len()));
        }
        Ok(spool)
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.spool"))
    }

    /// Whether nothing is on disk.
    pub(crate) fn is_empty(&self) -> bool {
        self.on_disk == 0
    }

    /// Records on disk.
    pub(crate) fn on_disk(&self) -> usize {
        self.on_disk
    }

    fn next_number(&self) -> u64 {
        self.segments.back().map(|(n, _)| n + 1).unwrap_or(FIRST)
    }

    /// Append one payload.
    pub(crate) fn push(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.writing.is_none() {
            let n = self.next_number();
            let mut w = BufWriter::new(File::create(self.path(n))?);
            w.write_all(MAGIC)?;
            w.write_all(&[encoder_byte(self.encoder)])?;
            self.writing = Some((n, w, 0));
        }
        if let Some((_, w, count)) = &mut self.writing {
            w.write_all(&(payload.len() as u32).to_be_bytes())?;
            w.write_all(payload)?;
            *count += 1;
            self.on_disk += 1;
            if *count >= self.limit {
                self.close_writing()?;
            }
        }
        Ok(())
    }

    fn close_writing(&mut self) -> io::Result<()> {
        if let Some((n, mut w, count)) = self.writing.take() {
            w.flush()?;
            self.segments.push_back((n, count));
        }
        Ok(())
    }

    /// Take the oldest segment's payloads (re-encoded if it was written
    /// with another encoder) and delete its file.
    pub(crate) fn pop_segment(&mut self, encoder: Encoder) -> io::Result<Vec<Bytes>> {
        if self.segments.is_empty() {
            self.close_writing()?;
        }
        let Some((n, count)) = self.segments.pop_front() else {
            return Ok(Vec::new());
        };
        self.on_disk = self.on_disk.saturating_sub(count);
        let path = self.path(n);
        let (stored, payloads) = read_segment(&path)?;
        std::fs::remove_file(&path)?;
        if stored == encoder_byte(encoder) {
            return Ok(payloads);
        }
        Ok(reencode(stored, encoder, payloads))
    }

    /// Put `payloads` before everything on disk (shutdown).
    pub(crate) fn prepend(&mut self, payloads: &[Bytes]) -> io::Result<()> {
        self.close_writing()?;
        if payloads.is_empty() {
            return Ok(());
        }
        let n = self.segments.front().map(|(n, _)| n - 1).unwrap_or(FIRST);
        let tmp = self.dir.join(format!("{n:020}.tmp"));
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            w.write_all(MAGIC)?;
            w.write_all(&[encoder_byte(self.encoder)])?;
            for p in payloads {
                w.write_all(&(p.len() as u32).to_be_bytes())?;
                w.write_all(p)?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(n))?;
        self.segments.push_front((n, payloads.len()));
        self.on_disk += payloads.len();
        Ok(())
    }
}

fn encoder_byte(e: Encoder) -> u8 {
    match e {
        Encoder::Pickle => 0,
        Encoder::Json => 1,
        Encoder::Msgpack => 2,
        Encoder::Fluent => 3,
    }
}

/// A segment's encoder byte and payloads; a torn tail is ignored.
fn read_segment(path: &Path) -> io::Result<(u8, Vec<Bytes>)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    if data.len() < 9 || &data[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a spool segment", path.display()),
        ));
    }
    let data = Bytes::from(data);
    let mut payloads = Vec::new();
    let mut pos = 9;
    while pos + 4 <= data.len() {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        if pos + 4 + len > data.len() {
            break;
        }
        payloads.push(data.slice(pos + 4..pos + 4 + len));
        pos += 4 + len;
    }
    Ok((data[8], payloads))
}

/// Records spooled under another encoder (the config changed between runs).
fn reencode(stored: u8, encoder: Encoder, payloads: Vec<Bytes>) -> Vec<Bytes> {
    let decoder = match stored {
        0 => DecoderKind::Pickle,
        1 => DecoderKind::Json,
        2 => DecoderKind::Msgpack,
        _ => {
            tracing::error!(
                records = payloads.len(),
                "Spooled Fluentd entries cannot be re-encoded for another encoder; dropped."
            );
            return Vec::new();
        }
    };
    if encoder == Encoder::Fluent && stored == 3 {
        return payloads;
    }
    let mut out = Vec::with_capacity(payloads.len());
    let mut buf = Vec::new();
    for p in payloads {
        match decoder.decode(p) {
            Ok(record) => {
                buf.clear();
                encode::payload(encoder, &record, &mut buf);
                out.push(Bytes::copy_from_slice(&buf));
            }
            Err(e) => tracing::error!(error = %e, "A spooled record does not decode; dropped."),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_reopen_and_prepend() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), Encoder::Json, 6).unwrap();
        for i in 0..7 {
            s.push(format!("r{i}").as_bytes()).unwrap();
        }
        s.prepend(&[Bytes::from("m0"), Bytes::from("m1")]).unwrap();
        assert_eq!(s.on_disk(), 9);
        drop(s);
        let mut s = Spool::open(dir.path(), Encoder::Json, 6).unwrap();
        assert_eq!(s.on_disk(), 9);
        let mut got = Vec::new();
        while !s.is_empty() {
            got.extend(s.pop_segment(Encoder::Json).unwrap());
        }
        let want: Vec<Bytes> = ["m0", "m1", "r0", "r1", "r2", "r3", "r4", "r5", "r6"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        assert_eq!(got, want);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
