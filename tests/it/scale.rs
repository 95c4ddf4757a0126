//! Scale (issue 8): 10,000 TCP connections open at the same time, each
//! sending a few records in SocketHandler's framing, and every record in the
//! file exactly once.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::*;

/// Opens `conns` non-blocking TCP connections to 127.0.0.1:`port` (at most
/// 64 connects pending at a time: logrelay's listen backlog is small), and
/// once all are connected sends on each one `per` records framed by the real
/// `SocketHandler.makePickle`, message `conn=<c> rec=<r>` on logger `scale`.
/// Prints one JSON line (connected, sent, failures), then keeps every
/// connection open until a line (or EOF) arrives on stdin, closes them all
/// and prints "closed". Raises its own soft RLIMIT_NOFILE to the hard one.
const PY_CONNS: &str = r#"
import errno, json, logging, logging.handlers, resource, selectors, socket, sys, time
port, conns, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < conns + 256:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
h = logging.handlers.SocketHandler("127.0.0.1", 9)  # makePickle only, never connects
blobs = []
for c in range(conns):
    frames = []
    for r in range(per):
        rec = logging.LogRecord("scale", logging.INFO, "/app/scale.py", 1, "conn=%d rec=%d",
                                (c, r), None, "send")
        frames.append(h.makePickle(rec))
    blobs.append(b"".join(frames))
sel = selectors.DefaultSelector()
socks, pending, started, failures = [], 0, 0, 0
deadline = time.monotonic() + 40
while len(socks) < conns and time.monotonic() < deadline and failures < 100:
    while pending < 64 and started < conns:
        s = socket.socket()
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        started += 1
        if rc == 0:
            socks.append(s)
        elif rc == errno.EINPROGRESS:
            sel.register(s, selectors.EVENT_WRITE)
            pending += 1
        else:
            s.close(); started -= 1; failures += 1
    for key, _ in sel.select(0.5):
        s = key.fileobj
        sel.unregister(s)
        pending -= 1
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            socks.append(s)
        else:
            s.close(); started -= 1; failures += 1
sent = 0
if len(socks) == conns:
    left = {}
    for s, blob in zip(socks, blobs):
        view = memoryview(blob)
        try:
            n = s.send(view)
        except BlockingIOError:
            n = 0
        if n < len(view):
            left[s] = view[n:]
            sel.register(s, selectors.EVENT_WRITE)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                n = s.send(left[s])
            except BlockingIOError:
                continue
            left[s] = left[s][n:]
            if not left[s]:
                del left[s]
                sel.unregister(s)
    sent = conns - len(left)
print(json.dumps({"connected": len(socks), "sent": sent, "failures": failures}), flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
"#;

/// Soft and hard RLIMIT_NOFILE of this process (which logrelay inherits).
fn nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `r` is.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

/// Sockets process `pid` has open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn ten_thousand_concurrent_connections_each_send_records_and_none_is_lost() {
    const CONNS: usize = 10_000;
    const PER: usize = 3;
    let (soft, hard) = nofile();
    if hard < 10_100 {
        eprintln!(
            "SKIPPED: RLIMIT_NOFILE hard limit {hard} < 10,100: cannot hold {CONNS} connections"
        );
        return;
    }
    if soft < 10_100 {
        // logrelay inherits our limits; it must raise its own soft limit.
        eprintln!("note: RLIMIT_NOFILE soft limit {soft}, hard {hard}");
    }
    let mut relay = Relay::start(
        r#"{
  "inputs": { "in": { "type": "tcp", "address": "127.0.0.1:0" } },
  "outputs": { "file": { "type": "file", "path": "out/app.log", "format": "%(name)s %(message)s" } }
}"#,
        1,
    );
    let port = relay.port("in").to_string();
    let before = sockets_of(relay.child.id());
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(PY_CONNS)
        .args([port.as_str(), &CONNS.to_string(), &PER.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = py.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(50))
        .expect("the sender reports its connections");
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        report["connected"], CONNS,
        "{report}: logrelay inherited RLIMIT_NOFILE soft {soft} (hard {hard}); \
         it must raise its own soft limit to accept this many connections"
    );
    assert_eq!(report["sent"], CONNS, "{report}");

    // Every record arrives while all the connections are still open...
    let path = relay.path("out/app.log");
    wait_lines(&path, CONNS * PER, Duration::from_secs(30));
    // ...and logrelay holds every one of them at once.
    let held = sockets_of(relay.child.id()) - before;
    assert_eq!(held, CONNS, "connections logrelay held at once");

    let mut stdin = py.stdin.take().unwrap();
    stdin.write_all(b"close\n").unwrap();
    drop(stdin);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok("closed")
    );
    assert_eq!(wait_timeout(&mut py, Duration::from_secs(20)), 0);
    // Every connection sees its EOF and ends; logrelay keeps running.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sockets_of(relay.child.id()) > before {
        assert!(
            std::time::Instant::now() < deadline,
            "connections still open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(relay.child.try_wait().unwrap().is_none(), "logrelay exited");
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0, "{stderr}");

    // Exactly once: every (conn, rec) pair on exactly one line, nothing else.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut seen = vec![0u8; CONNS * PER];
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let id = line
            .strip_prefix("scale conn=")
            .and_then(|rest| rest.split_once(" rec="))
            .and_then(|(c, r)| Some((c.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
            .filter(|&(c, r)| c < CONNS && r < PER);
        let (c, r) = id.unwrap_or_else(|| panic!("unexpected line {line:?}"));
        seen[c * PER + r] += 1;
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, duplicated), (0, 0), "missing, duplicated records");
    assert_eq!(lines, CONNS * PER);
}
