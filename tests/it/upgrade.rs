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
