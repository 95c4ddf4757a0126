//! Acknowledged senders (a RelayHandler, a forward output with `ack`):
//! which of their batches are dispatched, which are written, and — across
//! restarts — the last one confirmed.
//!
//! A sender numbers its batches 1, 2, 3… under a random id. A batch is
//! *dispatched* once handed to the outputs, and *confirmed* once every
//! output wrote it (its [`Receipt`] came back). Batches may finish out of
//! order (two outputs, two connections of one sender after a reconnect),
//! so the confirmed mark is the highest sequence below which nothing is
//! still being written.
//!
//! # On disk (`state_dir`)
//!
//! Each process appends to its own journal, `senders-<pid>.jsonl`, one
//! line `{"id": "...", "seq": N, "t": unix_seconds}` each time a sender's
//! confirmed mark moves — after the write it describes and before the
//! confirmation is sent. A SIGKILL then loses nothing a sender was told,
//! and duplicates at most the batches whose write had returned but whose
//! line was not yet appended: the one batch per sender being finished at
//! that instant. The first acknowledged connection after a start reads
//! every journal in the directory (a predecessor's too: during an upgrade
//! both processes run, so the other journals are read again, from where
//! they were left, at each handshake), keeps the highest mark per sender,
//! writes them into its own journal and removes the journals of processes
//! that are gone. Lines that do not parse (a torn tail after a kill, a
//! damaged file) are reported and skipped: the worst a bad file can cause
//! is duplicates, never a refusal to start. Senders not seen for 24 hours
//! are forgotten when a journal is rewritten (at start and whenever the
//! journal has grown to four times the lines it needs).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::output::Receipt;

/// Senders not seen for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A journal is rewritten when it has this many more lines than senders
/// (and at least [`MIN_COMPACT_LINES`]).
const COMPACT_FACTOR: usize = 4;
const MIN_COMPACT_LINES: usize = 4096;

/// What a connection watches: the confirmed mark, and how many batches
/// of this sender failed (an output gave up on them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Every batch up to this sequence is written.
    pub confirmed: u64,
    /// Batches that could not be written, ever.
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The highest sequence handed to the outputs.
    dispatched: u64,
    /// Dispatched, not yet finished.
    writing: BTreeSet<u64>,
    /// The confirmed mark.
    confirmed: u64,
    failures: u64,
    /// Unix seconds of the last handshake or confirmation.
    seen: u64,
}

/// One acknowledged sender, shared by its connections and its receipts.
#[derive(Debug)]
pub(crate) struct Sender {
    id: String,
    inner: Mutex<Inner>,
    progress: watch::Sender<Progress>,
}

impl Sender {
    fn new(id: &str, confirmed: u64, seen: u64) -> Sender {
        Sender {
            id: id.to_string(),
            inner: Mutex::new(Inner {
                dispatched: confirmed,
                confirmed,
                seen,
                ..Inner::default()
            }),
            progress: watch::Sender::new(Progress {
                confirmed,
                failures: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The confirmed mark: what the handshake reply says.
    pub(crate) fn confirmed(&self) -> u64 {
        self.lock().confirmed
    }

    /// Watch the confirmed mark.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Batch `seq` arrived: `Some(receipt)` to dispatch it with, or `None`
    /// if it was dispatched before (a re-send after a reconnect): it is
    /// confirmed when that earlier dispatch is written.
    pub(crate) fn begin(self: &Arc<Self>, seq: u64) -> Option<Receipt> {
        {
            let mut inner = self.lock();
            if seq <= inner.dispatched {
                return None;
            }
            inner.dispatched = seq;
            inner.writing.insert(seq);
        }
        let me = self.clone();
        Some(Receipt::new(move |ok| me.finish(seq, ok)))
    }

    /// Batch `seq`'s receipt came back.
    fn finish(&self, seq: u64, ok: bool) {
        let (mark, failures) = {
            let mut inner = self.lock();
            inner.writing.remove(&seq);
            if !ok {
                // Not written: let a re-send dispatch it again (and what
                // followed it: duplicates, never a loss).
                inner.failures += 1;
                inner.dispatched = inner.dispatched.min(seq - 1).max(inner.confirmed);
            }
            let mark = inner
                .writing
                .first()
                .map_or(inner.dispatched, |first| first - 1)
                .max(inner.confirmed);
            let moved = mark > inner.confirmed;
            inner.confirmed = mark;
            inner.seen = now_secs();
            (moved.then_some(mark), inner.failures)
        };
        if let Some(mark) = mark {
            // On disk before anyone is told.
            journal(|store| store.append(&self.id, mark));
        }
        self.progress.send_modify(|p| {
            if let Some(mark) = mark {
                p.confirmed = p.confirmed.max(mark);
            }
            p.failures = failures;
        });
    }

    /// Take a mark read from a journal.
    fn merge(&self, seq: u64, seen: u64) {
        let moved = {
            let mut inner = self.lock();
            inner.seen = inner.seen.max(seen);
            if seq <= inner.confirmed {
                false
            } else {
                inner.confirmed = seq;
                inner.dispatched = inner.dispatched.max(seq);
                true
            }
        };
        if moved {
            self.progress
                .send_modify(|p| p.confirmed = p.confirmed.max(seq));
        }
    }
}

/// Every sender known to this process.
#[derive(Default)]
struct Registry {
    senders: HashMap<String, Arc<Sender>>,
    last_prune: u64,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn store() -> MutexGuard<'static, Option<Store>> {
    static STORE: Mutex<Option<Store>> = Mutex::new(None);
    STORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on the open journal, if there is one.
fn journal(f: impl FnOnce(&mut Store)) {
    if let Some(s) = store().as_mut() {
        f(s);
    }
}

/// The sender `id`, for a handshake: loads `state_dir` on first use (or
/// when a reload changed it) and reads what other processes appended.
pub(crate) fn sender(id: &str, state_dir: &Path) -> Arc<Sender> {
    let now = now_secs();
    let found = {
        let mut store = store();
        let reopen = store.as_ref().is_none_or(|s| s.dir != state_dir);
        if reopen {
            let (s, marks) = Store::open(state_dir);
            *store = Some(s);
            marks
        } else {
            store.as_mut().map(Store::read_others).unwrap_or_default()
        }
    };
    let mut reg = registry();
    for (sid, (seq, seen)) in found {
        entry(&mut reg, &sid, seen).merge(seq, seen);
    }
    if now.saturating_sub(reg.last_prune) >= 3600 {
        reg.last_prune = now;
        reg.senders
            .retain(|_, s| Arc::strong_count(s) > 1 || recent(s.lock().seen, now));
    }
    let sender = entry(&mut reg, id, now);
    sender.lock().seen = now;
    sender
}

fn entry(reg: &mut Registry, id: &str, seen: u64) -> Arc<Sender> {
    reg.senders
        .entry(id.to_string())
        .or_insert_with(|| Arc::new(Sender::new(id, 0, seen)))
        .clone()
}

/// One journal line.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    seq: u64,
    t: u64,
}

/// The journals of `state_dir`: ours to append to, the others to read.
struct Store {
    dir: PathBuf,
    /// Our journal, open for appending; `None` if it cannot be written
    /// (reported once: confirmations go on, a restart may duplicate).
    own: Option<File>,
    own_path: PathBuf,
    /// Other processes' journals and how far we have read them.
    others: HashMap<PathBuf, u64>,
    /// The latest mark per sender: what a rewrite keeps.
    latest: HashMap<String, (u64, u64)>,
    /// Lines in our journal.
    lines: usize,
}

type Marks = HashMap<String, (u64, u64)>;

impl Store {
    /// Open `dir`: read every journal, write the merged marks into a new
    /// journal of ours, remove the journals of processes that are gone.
    fn open(dir: &Path) -> (Store, Marks) {
        let own_path = dir.join(format!("senders-{}.jsonl", std::process::id()));
        let mut store = Store {
            dir: dir.to_path_buf(),
            own: None,
            own_path,
            others: HashMap::new(),
            latest: HashMap::new(),
            lines: 0,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(state_dir = %dir.display(), error = %e, "Cannot create state_dir: acknowledged senders are remembered in memory only; a restart may write a batch twice.");
            return (store, Marks::new());
        }
        let marks = store.read_others();
        store.latest = marks.clone();
        store.rewrite();
        // Journals of processes that are gone are now in ours.
        let gone: Vec<PathBuf> = store
            .others
            .keys()
            .filter(|p| pid_of(p).is_none_or(|pid| !alive(pid)))
            .cloned()
            .collect();
        for p in gone {
            if std::fs::remove_file(&p).is_ok() {
                store.others.remove(&p);
            }
        }
        (store, marks)
    }

    /// Read what other journals gained since we last looked: the marks of
    /// senders seen within [`FORGET_AFTER`].
    fn read_others(&mut self) -> Marks {
        let mut marks = Marks::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return marks;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path == self.own_path || !name.starts_with("senders-") || !name.ends_with(".jsonl") {
                continue;
            }
            let from = self.others.get(&path).copied().unwrap_or(0);
            match read_journal(&path, from, &mut marks) {
                Ok(to) => {
                    self.others.insert(path, to);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "Cannot read a sender journal; ignored (a batch may be written twice).");
                }
            }
        }
        let now = now_secs();
        marks.retain(|_, (_, seen)| recent(*seen, now));
        marks
    }

    /// Record that `id` is confirmed up to `seq`.
    fn append(&mut self, id: &str, seq: u64) {
        let t = now_secs();
        self.latest.insert(id.to_string(), (seq, t));
        if self.lines >= (COMPACT_FACTOR * self.latest.len()).max(MIN_COMPACT_LINES) {
            self.rewrite();
            return;
        }
        let Some(file) = self.own.as_mut() else {
            return;
        };
        let mut line = line_of(id, seq, t);
        line.push(b'\n');
        // One write of one short line with O_APPEND: whole or, if killed
        // mid-call, a torn tail the reader skips.
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(file = %self.own_path.display(), error = %e, "Cannot append to the sender journal; a restart may write a batch twice.");
            self.own = None;
        }
        self.lines += 1;
    }

    /// Write `latest` (senders seen within a day) into a fresh journal
    /// and put it in place of ours.
    fn rewrite(&mut self) {
        let now = now_secs();
        self.latest.retain(|_, (_, seen)| recent(*seen, now));
        let tmp = self.own_path.with_extension("jsonl.tmp");
        let mut text = Vec::new();
        for (id, (seq, t)) in &self.latest {
            text.extend_from_slice(&line_of(id, *seq, *t));
            text.push(b'\n');
        }
        let result = std::fs::write(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, &self.own_path))
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&self.own_path)
            });
        match result {
            Ok(f) => {
                self.own = Some(f);
                self.lines = self.latest.len();
            }
            Err(e) => {
                tracing::warn!(state_dir = %self.dir.display(), error = %e, "Cannot write the sender journal: acknowledged senders are remembered in memory only; a restart may write a batch twice.");
                self.own = None;
            }
        }
    }
}

fn line_of(id: &str, seq: u64, t: u64) -> Vec<u8> {
    serde_json::to_vec(&Line {
        id: id.into(),
        seq,
        t,
    })
    .unwrap_or_default()
}

/// Read `path` from byte `from`, merging its marks into `marks`; returns
/// where the last whole line ended. A line that does not parse is
/// reported (file and line) and skipped; an unfinished last line is left
/// for the next read, unless the file's writer is gone.
fn read_journal(path: &Path, from: u64, marks: &mut Marks) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let from = if from > len { 0 } else { from };
    file.seek(std::io::SeekFrom::Start(from))?;
    let mut reader = std::io::BufReader::new(file);
    let writer_alive = pid_of(path).is_some_and(alive);
    let mut at = from;
    let mut raw = Vec::new();
    let mut bad = 0usize;
    let mut first_bad = None;
    let mut number = 0usize;
    loop {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        number += 1;
        let whole = raw.last() == Some(&b'\n');
        if !whole && writer_alive {
            // Still being written: read it next time.
            break;
        }
        at += n as u64;
        match serde_json::from_slice::<Line>(raw.trim_ascii_end()) {
            Ok(line) => {
                let e = marks.entry(line.id.into_owned()).or_insert((0, 0));
                e.0 = e.0.max(line.seq);
                e.1 = e.1.max(line.t);
            }
            Err(_) => {
                bad += 1;
                first_bad.get_or_insert(number);
            }
        }
    }
    if bad > 0 {
        tracing::warn!(
            file = %path.display(),
            lines = bad,
            first = first_bad.unwrap_or(0),
            "Skipped sender journal lines that do not parse (a torn tail after a kill, or damage); those senders may get a batch written twice."
        );
    }
    Ok(at)
}

/// The pid in `senders-<pid>.jsonl`.
fn pid_of(path: &Path) -> Option<i32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("senders-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists (and
    // that we may signal it); it sends nothing and touches no memory.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether a sender last seen at `seen` (Unix seconds) is still kept.
fn recent(seen: u64, now: u64) -> bool {
    now.saturating_sub(seen) < FORGET_AFTER.as_secs()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks_of(path: &Path) -> Marks {
        let mut m = Marks::new();
        read_journal(path, 0, &mut m).unwrap();
        m
    }

    #[test]
    fn the_mark_waits_for_the_oldest_batch_still_being_written() {
        let s = Arc::new(Sender::new("t-mark", 0, 0));
        let r1 = s.begin(1).unwrap();
        let r2 = s.begin(2).unwrap();
        let r3 = s.begin(3).unwrap();
        assert!(s.begin(2).is_none(), "a re-send is not dispatched again");
        r2.written();
        assert_eq!(s.confirmed(), 0);
        r1.written();
        assert_eq!(s.confirmed(), 2);
        r3.written();
        assert_eq!(s.confirmed(), 3);
        assert_eq!(s.subscribe().borrow().confirmed, 3);
    }

    #[test]
    fn a_failed_batch_is_dispatched_again() {
        let s = Arc::new(Sender::new("t-fail", 4, 0));
        let r5 = s.begin(5).unwrap();
        drop(r5);
        assert_eq!(s.confirmed(), 4);
        assert_eq!(s.subscribe().borrow().failures, 1);
        let again = s.begin(5).expect("dispatched again");
        again.written();
        assert_eq!(s.confirmed(), 5);
    }

    #[test]
    fn journals_merge_skip_torn_lines_and_forget_the_dead() {
        let dir = std::env::temp_dir().join(format!("logrelay-senders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = now_secs();
        // A dead process's journal with a torn tail and a damaged line.
        let dead = dir.join("senders-999999999.jsonl");
        let text = format!(
            "{{\"id\":\"a\",\"seq\":3,\"t\":{now}}}\nnot json\n{{\"id\":\"a\",\"seq\":7,\"t\":{now}}}\n{{\"id\":\"b\",\"seq\":2,\"t\":{old}}}\n{{\"id\":\"a\",\"se",
            old = now - FORGET_AFTER.as_secs() - 10
        );
        std::fs::write(&dead, text).unwrap();
        let (mut store, marks) = Store::open(&dir);
        assert_eq!(marks.get("a"), Some(&(7, now)));
        assert!(!marks.contains_key("b"), "not seen for a day: forgotten");
        assert!(!dead.exists(), "merged and removed");
        store.append("a", 9);
        store.append("c", 1);
        let ours = marks_of(&store.own_path);
        assert_eq!(ours.get("a").map(|m| m.0), Some(9));
        assert_eq!(ours.get("c").map(|m| m.0), Some(1));
        // Rewriting keeps one line per sender.
        store.rewrite();
        let text = std::fs::read_to_string(&store.own_path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
