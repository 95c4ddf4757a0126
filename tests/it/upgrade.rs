//! Zero-downtime upgrade (issue 5): SIGUSR2 hands the listening sockets to
//! a successor process; no connection is refused, no record lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Opens a fresh connection every few records (TCP and Unix in turn) for
/// `secs` seconds, sending SocketHandler frames; prints sent/refused.
const PY_CHURN: &str = r#"
import json, logging, logging.handlers, socket, sys, time
port, path, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
h = logging.handlers.SocketHandler("127.0.0.1", port)
sent = refused = other = 0
end = time.time() + secs
conn = 0
while time.time() < end:
    conn += 1
    try:
        if conn % 2:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        else:
            s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(path)
    except ConnectionRefusedError:
        refused += 1; continue
    except OSError as e:
        other += 1; continue
    frames = b"".join(h.makePickle(logging.makeLogRecord(
        {"name": "up", "msg": "rec %d-%d" % (conn, i), "levelno": 20, "levelname": "INFO"}))
        for i in range(20))
    s.sendall(frames)
    s.close()
    sent += 20
    time.sleep(0.005)
print(json.dumps({"sent": sent, "refused": refused, "other": other}))
"#;

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

struct KillOnDrop(u32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.0.to_string())
            .status();
    }
}

#[test]
fn sigusr2_upgrade_refuses_no_connection_and_loses_no_record() {
    let port = free_port();
    let config = format!(
        r#"{{"inputs": {{"tcp": {{"type": "tcp", "address": "127.0.0.1:{port}"}},
                        "local": {{"type": "unix", "path": "run/l.sock"}}}},
  "outputs": {{"file": {{"type": "file", "path": "out/app.log", "format": "%(message)s"}}}},
  "drain_seconds": 3}}"#
    );
    let mut relay = Relay::start(&config, 2);
    let sock = relay.path("run/l.sock");
    let sender = Command::new("python3")
        .args([
            "-c",
            PY_CHURN,
            &port.to_string(),
            sock.to_str().unwrap(),
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    relay.signal("USR2");
    relay.wait_for_log(
        "Upgrade: the successor is listening",
        1,
        Duration::from_secs(30),
    );
    let log = relay.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("Upgrade: the successor"))
        .unwrap();
    let pid: u32 = line
        .split("successor=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in {line:?}"));
    let _guard = KillOnDrop(pid);
    // The old process drains and exits on its own.
    assert_eq!(wait_timeout(&mut relay.child, Duration::from_secs(20)), 0);
    let mut sender = sender;
    let out = wait_output(&mut sender, Duration::from_secs(30));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["other"], 0, "{report}");
    let sent = report["sent"].as_u64().unwrap() as usize;
    assert!(sent > 0);
    let path = relay.path("out/app.log");
    wait_lines(&path, sent, Duration::from_secs(20));
    // Stop the successor gracefully.
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(Instant::now() < deadline, "successor did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), sent, "lost or duplicated records");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), sent, "duplicated records");
    assert!(
        !sock.exists(),
        "the successor removed its socket at shutdown"
    );
    let log = relay.stderr();
    assert!(
        log.contains("Inherited listening sockets. count=2"),
        "{log}"
    );
}

/// Emulates systemd socket activation: binds the port, puts the socket at
/// fd 3, sets LISTEN_PID/LISTEN_FDS and execs logrelay (same pid).
const PY_SYSTEMD: &str = r#"
import os, socket, sys
binary, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(binary, [binary, "--config", config])
"#;

#[test]
fn systemd_socket_activation_uses_the_inherited_socket() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("listener.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:{port}"}}}},
  "outputs": {{"file": {{"type": "file", "path": "out/app.log", "format": "%(message)s"}}}}}}"#
        ),
    )
    .unwrap();
    let mut child = Command::new("python3")
        .args([
            "-c",
            PY_SYSTEMD,
            BIN,
            config.to_str().unwrap(),
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _guard = KillOnDrop(pid);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.contains("Listening.") {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no Listening line: {log}"));
        log.push_str(&line);
        log.push('\n');
    }
    assert!(
        log.contains("Inherited listening sockets. count=1"),
        "{log}"
    );
    send_tcp(port, 5, "sd");
    let path = dir.path().join("out/app.log");
    wait_lines(&path, 5, Duration::from_secs(10));
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(20)), 0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "msg 0\nmsg 1\nmsg 2\nmsg 3\nmsg 4\n"
    );
}

/// A SocketHandler that counts the sockets it makes and every send that
/// failed (a record lost): logs `n` records "<tag>-<i>" at `rate` per
/// second through one handler, then prints {"makes", "failures", "sent"}.
/// Args: tcp HOST PORT | unix PATH, then tag, n, rate. With `--partial
/// PATH` it also opens a raw Unix connection that sends one frame and half
/// of the next, waits for a line on stdin, then sends the rest and one
/// more frame (a partial frame across a handover).
const PY_STEADY: &str = r#"
import json, logging, logging.handlers, socket, sys, time

class Counting(logging.handlers.SocketHandler):
    makes = 0
    failures = 0
    def makeSocket(self, timeout=1):
        Counting.makes += 1
        return super().makeSocket(timeout)
    def send(self, s):
        if self.sock is None:
            self.createSocket()
        if not self.sock:
            Counting.failures += 1
            return
        try:
            self.sock.sendall(s)
        except OSError:
            Counting.failures += 1
            self.sock.close()
            self.sock = None
    def handleError(self, record):
        Counting.failures += 1

args = sys.argv[1:]
if args[0] == "tcp":
    h = Counting(args[1], int(args[2])); rest = args[3:]
else:
    h = Counting(args[1], None); rest = args[2:]
tag, n, rate = rest[0], int(rest[1]), float(rest[2])
partial = rest[4] if len(rest) > 4 and rest[3] == "--partial" else None
log = logging.getLogger(tag)
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(h)
def frame(msg):
    return h.makePickle(logging.makeLogRecord(
        {"name": tag, "msg": msg, "levelno": 20, "levelname": "INFO"}))
if partial:
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(partial)
    second = frame(tag + "-raw-1")
    raw.sendall(frame(tag + "-raw-0") + second[:len(second) // 2])
    print("partial sent", flush=True)
start = time.time()
for i in range(n):
    due = start + i / rate
    now = time.time()
    if due > now:
        time.sleep(due - now)
    log.info("%s-%d", tag, i)
h.close()
if partial:
    sys.stdin.readline()
    raw.sendall(second[len(second) // 2:] + frame(tag + "-raw-2"))
    raw.close()
print(json.dumps({"makes": Counting.makes, "failures": Counting.failures, "sent": n}), flush=True)
"#;

/// Start a [`PY_STEADY`] sender.
fn steady(args: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(PY_STEADY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a sender's report; it made one socket and no send failed.
fn report_of(sender: &mut std::process::Child) -> serde_json::Value {
    let out = wait_output(sender, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "sender report {last:?}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["makes"], 1, "sender reconnected: {report}");
    assert_eq!(report["failures"], 0, "a send failed: {report}");
    report
}

/// The pid in the `nth` (1-based) "the successor is listening" line.
fn successor_pid(relay: &Relay, nth: usize) -> u32 {
    relay.wait_for_log(
        "Upgrade: the successor is listening",
        nth,
        Duration::from_secs(60),
    );
    let log = relay.stderr();
    let line = log
        .lines()
        .filter(|l| l.contains("Upgrade: the successor is listening"))
        .nth(nth - 1)
        .unwrap();
    line.split("successor=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in {line:?}"))
}

fn signal_pid(sig: &str, pid: u32) {
    assert!(Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
}

fn wait_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every expected line exactly once: (lost, duplicated).
fn lost_and_duplicated(text: &str, expected: &[String]) -> (usize, usize) {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in text.lines() {
        *seen.entry(l).or_default() += 1;
    }
    let lost = expected
        .iter()
        .filter(|e| !seen.contains_key(e.as_str()))
        .count();
    let duplicated = seen.values().map(|&n| n.saturating_sub(1)).sum::<usize>();
    (lost, duplicated)
}

/// The `field=value` numbers of every log line containing `needle`.
fn log_field(log: &str, needle: &str, field: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            l.split(&format!("{field}="))
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

#[test]
fn issue_19_sigusr2_three_times_hands_over_every_connection() {
    const SENDERS: usize = 4;
    const RECORDS: usize = 8_000;
    let config = r#"{"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
  "outputs": {"file": {"type": "file", "path": "out/app.log", "format": "%(message)s"}},
  "drain_seconds": 3}"#;
    let mut relay = Relay::start(config, 1);
    let port = relay.port("app").to_string();
    let mut senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            steady(&[
                "tcp",
                "127.0.0.1",
                &port,
                &format!("s{s}"),
                &RECORDS.to_string(),
                "2000",
            ])
        })
        .collect();
    let path = relay.path("out/app.log");
    // Every sender is connected before the first upgrade.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..SENDERS).any(|s| {
        !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(&format!("s{s}-"))
    }) {
        assert!(Instant::now() < deadline, "senders did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut guards = Vec::new();
    let mut current = relay.child.id();
    for upgrade in 1..=3 {
        std::thread::sleep(Duration::from_millis(600));
        signal_pid("USR2", current);
        let next = successor_pid(&relay, upgrade);
        guards.push(KillOnDrop(next));
        relay.wait_for_log(
            "Upgrade: took over the previous process's connections.",
            upgrade,
            Duration::from_secs(30),
        );
        if upgrade == 1 {
            assert_eq!(wait_timeout(&mut relay.child, Duration::from_secs(20)), 0);
        } else {
            wait_gone(current, Duration::from_secs(20));
        }
        current = next;
    }
    for sender in &mut senders {
        report_of(sender);
    }
    let expected: Vec<String> = (0..SENDERS)
        .flat_map(|s| (0..RECORDS).map(move |i| format!("s{s}-{i}")))
        .collect();
    wait_lines(&path, expected.len(), Duration::from_secs(30));
    signal_pid("TERM", current);
    wait_gone(current, Duration::from_secs(20));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(lost_and_duplicated(&text, &expected), (0, 0));
    assert_eq!(text.lines().count(), SENDERS * RECORDS);
    let log = relay.stderr();
    let handed = "Upgrade: connections handed over";
    assert_eq!(log_field(&log, handed, "handed_over"), [4, 4, 4], "{log}");
    assert_eq!(log_field(&log, handed, "stayed"), [0, 0, 0], "{log}");
    let took = "Upgrade: took over the previous process's connections.";
    assert_eq!(log_field(&log, took, "adopted"), [4, 4, 4], "{log}");
    assert_eq!(log_field(&log, took, "refused"), [0, 0, 0], "{log}");
}

#[test]
fn issue_19_sigusr2_hands_over_a_unix_connection_and_its_partial_frame() {
    let config = r#"{"inputs": {"local": {"type": "unix", "path": "run/l.sock"}},
  "outputs": {"file": {"type": "file", "path": "out/app.log", "format": "%(message)s"}},
  "drain_seconds": 3}"#;
    let mut relay = Relay::start(config, 1);
    let sock = relay.path("run/l.sock");
    let sock = sock.to_str().unwrap();
    let mut sender = steady(&["unix", sock, "u", "3000", "1000", "--partial", sock]);
    let path = relay.path("out/app.log");
    wait_lines(&path, 100, Duration::from_secs(20));
    relay.signal("USR2");
    let pid = successor_pid(&relay, 1);
    let _guard = KillOnDrop(pid);
    relay.wait_for_log(
        "Upgrade: took over the previous process's connections.",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(wait_timeout(&mut relay.child, Duration::from_secs(20)), 0);
    // The old process is gone: the rest of the partial frame goes to the
    // successor.
    std::io::Write::write_all(sender.stdin.as_mut().unwrap(), b"go\n").unwrap();
    report_of(&mut sender);
    let mut expected: Vec<String> = (0..3000).map(|i| format!("u-{i}")).collect();
    expected.extend((0..3).map(|i| format!("u-raw-{i}")));
    wait_lines(&path, expected.len(), Duration::from_secs(30));
    signal_pid("TERM", pid);
    wait_gone(pid, Duration::from_secs(20));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(lost_and_duplicated(&text, &expected), (0, 0));
    assert_eq!(text.lines().count(), expected.len());
    let log = relay.stderr();
    let handed = "Upgrade: connections handed over";
    assert_eq!(log_field(&log, handed, "handed_over"), [2], "{log}");
    assert_eq!(log_field(&log, handed, "stayed"), [0], "{log}");
    let took = "Upgrade: took over the previous process's connections.";
    assert_eq!(log_field(&log, took, "adopted"), [2], "{log}");
}

#[test]
fn issue_19_a_connection_the_successor_cannot_take_stays_with_the_old_process() {
    let port = free_port();
    let config = |address: &str| {
        format!(
            r#"{{"inputs": {{"app": {{"type": "tcp", "address": "{address}"}}}},
  "outputs": {{"file": {{"type": "file", "path": "out/app.log", "format": "%(message)s"}}}},
  "drain_seconds": 20}}"#
        )
    };
    let mut relay = Relay::start(&config(&format!("127.0.0.1:{port}")), 1);
    let mut sender = steady(&["tcp", "127.0.0.1", &port.to_string(), "f", "3000", "1000"]);
    let path = relay.path("out/app.log");
    wait_lines(&path, 100, Duration::from_secs(20));
    // The same socket under another key: this process cannot reload it
    // (the address is taken, by itself), the successor listens on it
    // under a key no handed-over connection has.
    std::fs::write(
        relay.path("listener.json"),
        config(&format!("localhost:{port}")),
    )
    .unwrap();
    relay.wait_for_log("Reload rejected", 1, Duration::from_secs(10));
    relay.signal("USR2");
    let pid = successor_pid(&relay, 1);
    let _guard = KillOnDrop(pid);
    relay.wait_for_log(
        "Upgrade: took over the previous process's connections.",
        1,
        Duration::from_secs(30),
    );
    report_of(&mut sender);
    // It exits once the sender closed its connection.
    assert_eq!(wait_timeout(&mut relay.child, Duration::from_secs(20)), 0);
    let expected: Vec<String> = (0..3000).map(|i| format!("f-{i}")).collect();
    let text = wait_lines(&path, expected.len(), Duration::from_secs(10));
    assert_eq!(lost_and_duplicated(&text, &expected), (0, 0));
    signal_pid("TERM", pid);
    wait_gone(pid, Duration::from_secs(20));
    let log = relay.stderr();
    let handed = "Upgrade: connections handed over";
    assert_eq!(log_field(&log, handed, "handed_over"), [0], "{log}");
    assert_eq!(log_field(&log, handed, "stayed"), [1], "{log}");
    let took = "Upgrade: took over the previous process's connections.";
    assert_eq!(log_field(&log, took, "adopted"), [0], "{log}");
    assert_eq!(log_field(&log, took, "refused"), [1], "{log}");
    assert!(
        log.contains("no input with this address in the new config"),
        "{log}"
    );
}
