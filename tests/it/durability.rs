//! Issue 19: nothing lost across crashes. A batch is confirmed to an
//! acknowledged sender only once written, and the last confirmed batch
//! per sender survives a SIGKILL in `state_dir`: real binary, real Python
//! senders, real signals, a real full filesystem.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::relay::{python3, sleep_until, spawn_paced, verdict};
use crate::util::*;

const FORMAT: &str = "%(levelname)s %(name)s %(message)s";
/// Sender processes of the load tests, and each one's records/s.
const PROCS: usize = 4;
const RATE: u32 = 2_000;

/// A receiver: one TCP input on `port`, one file output, `state_dir`.
fn receiver_config(port: u16, out: &Path, state: &Path) -> String {
    format!(
        r#"{{
  "state_dir": "{}",
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:{port}"}} }},
  "outputs": {{ "f": {{"type": "file", "path": "{}", "format": "{FORMAT}"}} }}
}}"#,
        state.display(),
        out.display()
    )
}

/// Poll verify.py until nothing is missing (or `timeout`); the verdict.
fn settle(
    file: &Path,
    rid: &str,
    procs: usize,
    total: usize,
    timeout: Duration,
) -> (u64, u64, u64) {
    let end = Instant::now() + timeout;
    loop {
        let v = verdict(file, rid, procs, total);
        if v.0 == 0 || Instant::now() >= end {
            // Give a late duplicate the time to show up.
            std::thread::sleep(Duration::from_millis(500));
            return verdict(file, rid, procs, total);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_senders(senders: &mut [std::process::Child]) {
    for s in senders {
        let o = wait_output(s, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "sender failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A small xorshift generator, seeded from the clock and printed, so a
/// failing run's kill times can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("kill-time seed: {seed}");
        Rng(seed)
    }

    /// Uniform in `[lo, hi)`.
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Forward A → B with `ack`, B SIGKILLed mid-stream and started again
/// 1 s later: B writes every record, and at most one batch twice.
#[test]
fn issue_19_forward_ack_receiver_sigkilled_loses_nothing() {
    const PER: usize = 8_000;
    let out = tempfile::tempdir().unwrap();
    let b_log = out.path().join("b.log");
    let bp = free_port();
    let b_conf = receiver_config(bp, &b_log, &out.path().join("state-b"));
    let mut b = Relay::start(&b_conf, 1);
    let mut a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "b": {{"type": "forward", "address": "127.0.0.1:{bp}", "ack": true}} }}
}}"#
        ),
        1,
    );
    let rid = format!("fwdkill{}", std::process::id());
    let t0 = Instant::now();
    let mut senders: Vec<_> = (0..PROCS)
        .map(|p| spawn_paced("socket", a.port("in"), &rid, p, PER, RATE))
        .collect();
    sleep_until(t0, 2.0);
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    sleep_until(t0, 3.0);
    let mut b2 = Relay::start(&b_conf, 1);
    wait_senders(&mut senders);
    let total = PROCS * PER;
    let (missing, dup, corrupt) = settle(&b_log, &rid, PROCS, total, Duration::from_secs(60));
    eprintln!("forward ack, receiver SIGKILLed: {missing} of {total} lost, {dup} duplicated");
    assert_eq!(a.stop().0, 0);
    assert_eq!(b2.stop().0, 0);
    assert_eq!((missing, corrupt), (0, 0), "lost or corrupt");
    // One sender (A's forward output); a batch holds at most 1,000 records.
    assert!(dup <= 1000, "{dup} duplicated: more than one batch");
}

/// [`PROCS`] RelayHandler processes sending `per` records each at [`RATE`]/s into
/// a logrelay (one file output, a fixed `state_dir`) while `disturb`
/// stops and starts it (given the running relay, its config and the
/// start time). Returns (total, missing, duplicated, corrupt) once every
/// sender is done and the file has settled.
fn relay_handlers_through(
    tag: &str,
    per: usize,
    mut disturb: impl FnMut(&mut Relay, &str, Instant),
) -> (usize, u64, u64, u64) {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("app.log");
    let port = free_port();
    let conf = receiver_config(port, &log, &out.path().join("state"));
    let mut relay = Relay::start(&conf, 1);
    let rid = format!("{tag}{}", std::process::id());
    let t0 = Instant::now();
    let mut senders: Vec<_> = (0..PROCS)
        .map(|p| spawn_paced("relay", port, &rid, p, per, RATE))
        .collect();
    disturb(&mut relay, &conf, t0);
    wait_senders(&mut senders);
    let total = PROCS * per;
    let (missing, dup, corrupt) = settle(&log, &rid, PROCS, total, Duration::from_secs(30));
    assert_eq!(relay.stop().0, 0);
    (total, missing, dup, corrupt)
}

/// RelayHandler senders, logrelay SIGKILLed three times at random moments
/// and started again within a second: nothing lost, at most one batch
/// per sender per kill written twice.
#[test]
fn issue_19_relay_handler_three_kills_lose_nothing() {
    let mut rng = Rng::new();
    let (total, missing, dup, corrupt) =
        relay_handlers_through("kill3x", 16_000, |relay, conf, t0| {
            for (lo, hi) in [(1.0, 2.2), (3.2, 4.4), (5.4, 6.6)] {
                let at = rng.between(lo, hi);
                sleep_until(t0, at);
                relay.child.kill().unwrap();
                relay.child.wait().unwrap();
                sleep_until(t0, at + rng.between(0.2, 0.9));
                *relay = Relay::start(conf, 1);
            }
        });
    eprintln!("RelayHandler, three SIGKILLs: {missing} of {total} lost, {dup} duplicated");
    assert_eq!((missing, corrupt), (0, 0), "lost or corrupt");
    assert!(
        dup <= (PROCS * 3 * 1000) as u64,
        "{dup} duplicated: more than one batch per sender per kill"
    );
}

/// Graceful restarts (SIGTERM, started again 0.2 s later) under the same
/// load neither lose nor duplicate anything.
#[test]
fn issue_19_graceful_restarts_duplicate_nothing() {
    let (total, missing, dup, corrupt) =
        relay_handlers_through("term", 12_000, |relay, conf, t0| {
            for at in [1.5, 3.5] {
                sleep_until(t0, at);
                let (code, err, _) = relay.stop();
                assert_eq!(code, 0, "{err}");
                std::thread::sleep(Duration::from_millis(200));
                *relay = Relay::start(conf, 1);
            }
        });
    eprintln!("RelayHandler, two graceful restarts: {missing} of {total} lost, {dup} duplicated");
    assert_eq!((missing, dup, corrupt), (0, 0, 0));
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mounted, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Mounted(dir.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem holding `path` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'x'; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(b"x");
    filler
}

/// The sender of the full-disk test: 5,000 records through RelayHandler,
/// then whether they are confirmed within 3 s (they must not be: nothing
/// could be written), then, once the test frees space and creates `go`,
/// whether they are confirmed within 60 s.
const PY_FULL: &str = r#"
import logging, os, sys, time
from logrelay import RelayHandler
port, go = int(sys.argv[1]), sys.argv[2]
h = RelayHandler("127.0.0.1", port, close_timeout=30)
log = logging.getLogger("app.full")
log.propagate = False
log.setLevel(1)
log.addHandler(h)
for i in range(5000):
    log.info("record %05d", i)
print("confirmed while full:", h.flush(timeout=3), flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
print("confirmed after:", h.flush(timeout=60), flush=True)
h.close()
"#;

/// A file output on a full filesystem: writes fail, the sender gets no
/// confirmation for what is not written; once space is freed every record
/// is written exactly once, in order.
#[test]
fn issue_19_full_disk_holds_senders_back_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _mounted = match Mounted::tmpfs(&mnt, "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount a small tmpfs here ({why}); the full-disk test needs root or CAP_SYS_ADMIN");
            return;
        }
    };
    let log = mnt.join("app.log");
    let port = free_port();
    let conf = receiver_config(port, &log, &tmp.path().join("state"));
    let mut relay = Relay::start(&conf, 1);
    let filler = fill(&mnt);
    let go = tmp.path().join("go");
    let mut sender = python3()
        .arg("-c")
        .arg(PY_FULL)
        .args([&port.to_string(), &go.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    relay.wait_for_log("Write failed; retrying", 1, Duration::from_secs(20));
    // Let the sender see that nothing was confirmed.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0), 0);
    std::fs::remove_file(&filler).unwrap();
    std::fs::write(&go, b"").unwrap();
    let out = wait_output(&mut sender, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("confirmed while full: False"), "{stdout}");
    assert!(stdout.contains("confirmed after: True"), "{stdout}");
    let want: String = (0..5000)
        .map(|i| format!("INFO app.full record {i:05}\n"))
        .collect();
    let got = wait_lines(&log, 5000, Duration::from_secs(30));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the file is not every record once, in order");
}

/// A raw acknowledged sender (the wire format of src/input/ack.rs): opens
/// with id `argv[2]`, prints the handshake's last sequence, sends batches
/// `argv[3]..=argv[4]` of one pickled record each (message "seq N"), and
/// prints each confirmation.
const PY_RAW_ACK: &str = r#"
import logging, logging.handlers, socket, struct, sys
port, sid, first, last = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(struct.pack(">I", 0) + b"logrelay-ack/1\n" + bytes([0]) + struct.pack(">H", len(sid)) + sid)
def exactly(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("closed")
        b += c
    return b
magic = exactly(15)
print("last", struct.unpack(">Q", exactly(8))[0], flush=True)
h = logging.handlers.SocketHandler("127.0.0.1", 9)
for seq in range(first, last + 1):
    rec = logging.makeLogRecord({"name": "app.raw", "levelname": "INFO", "levelno": 20, "msg": "seq %d" % seq})
    frame = h.makePickle(rec)
    s.sendall(struct.pack(">QI", seq, 1) + frame)
    print("confirmed", struct.unpack(">Q", exactly(8))[0], flush=True)
s.close()
"#;

/// `state_dir` keeps each sender's last confirmed batch across a SIGKILL:
/// the restarted logrelay's handshake names it, and a re-sent batch is
/// confirmed without being written again. A damaged journal line is
/// reported and skipped, never a refusal to start.
#[test]
fn issue_19_state_dir_remembers_senders_across_a_kill() {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("app.log");
    let state = out.path().join("state");
    let port = free_port();
    let conf = receiver_config(port, &log, &state);
    let mut relay = Relay::start(&conf, 1);
    let run = |first: u32, last: u32| {
        let o = python(
            PY_RAW_ACK,
            &[
                &port.to_string(),
                "raw-sender-1",
                &first.to_string(),
                &last.to_string(),
            ],
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(run(1, 3), "last 0\nconfirmed 1\nconfirmed 2\nconfirmed 3\n");
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
    // A torn tail, as a kill in the middle of an append leaves, and a
    // damaged line in another (dead) process's journal.
    std::fs::write(
        state.join("senders-999999998.jsonl"),
        "garbage\n{\"id\":\"x\",\"se",
    )
    .unwrap();
    let mut relay = Relay::start(&conf, 1);
    // Batch 3 again (its confirmation was lost, say), then 4.
    assert_eq!(run(3, 4), "last 3\nconfirmed 3\nconfirmed 4\n");
    let got = wait_lines(&log, 4, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "INFO app.raw seq 1\nINFO app.raw seq 2\nINFO app.raw seq 3\nINFO app.raw seq 4\n"
    );
    assert_eq!(got.lines().count(), 4);
    assert!(
        relay.stderr().contains("Skipped sender journal lines"),
        "{}",
        relay.stderr()
    );
}

/// The status page counts an acknowledged connection's records and bytes
/// as it does a plain one's (they showed 0 before).
#[test]
fn acknowledged_connections_show_their_records_on_the_status_page() {
    const HOLD: &str = r#"
import logging, logging.handlers, socket, struct, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
sid = b"status-sender"
s.sendall(struct.pack(">I", 0) + b"logrelay-ack/1\n" + bytes([0]) + struct.pack(">H", len(sid)) + sid)
got = b""
while len(got) < 23:
    got += s.recv(23 - len(got))
h = logging.handlers.SocketHandler("127.0.0.1", 9)
for seq in (1, 2):
    frames = [h.makePickle(logging.makeLogRecord({"name": "app", "msg": "m%d" % i})) for i in range(5)]
    s.sendall(struct.pack(">QI", seq, 5) + b"".join(frames))
    assert struct.unpack(">Q", s.recv(8))[0] == seq
print("sent", flush=True)
time.sleep(float(sys.argv[2]))
s.close()
"#;
    let mut relay = Relay::start(
        r#"{
  "inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
  "outputs": {"file": {"type": "file", "path": "app.log"}},
  "metrics": {"address": "127.0.0.1:0"}
}"#,
        2,
    );
    let mut sender = Command::new("python3")
        .arg("-c")
        .arg(HOLD)
        .args([&relay.port("app").to_string(), "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sender.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "sent\n");
    let response = http_get(&relay.addr("metrics"), "/api/status");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    let open = &status["inputs"][0]["open"];
    assert_eq!(open.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(open[0]["records"], 10, "{status}");
    assert!(open[0]["bytes"].as_u64().unwrap() > 10 * 100, "{status}");
    let _ = sender.kill();
    let _ = sender.wait();
    relay.stop();
}
