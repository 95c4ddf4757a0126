//! Hostile and broken clients (issue 16): a connection stalled in the
//! middle of a frame, a flood of partial frames, too many connections, too
//! few file descriptors. Each one loses only its own connection; real
//! SocketHandler senders beside it are served.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Opens `argv[2]` connections to 127.0.0.1:`argv[1]`, sends on each the
/// first `argv[3]` bytes of a frame whose length prefix says `argv[4]`
/// bytes (the first bytes of a real SocketHandler frame when they fit,
/// filler after), then prints one JSON line and holds them open until a
/// line arrives on stdin. Raises its own soft RLIMIT_NOFILE.
const PY_STALL: &str = r#"
import json, logging, logging.handlers, resource, socket, struct, sys
port, conns, head, declared = (int(a) for a in sys.argv[1:5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < conns + 256:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
rec = logging.LogRecord("stall", logging.INFO, "/app/x.py", 1, "never whole", None, None)
frame = logging.handlers.SocketHandler("127.0.0.1", 9).makePickle(rec)
body = frame[4:] + b"x" * max(0, declared - len(frame) + 4)
data = struct.pack(">L", declared) + body
socks, sent, refused = [], 0, 0
for i in range(conns):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data[:head])
        sent += 1
    except OSError:
        refused += 1
    socks.append(s)
print(json.dumps({"open": len(socks), "sent": sent, "refused": refused}), flush=True)
sys.stdin.readline()
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
    s.close()
print(json.dumps({"closed_by_peer": closed}), flush=True)
"#;

/// A Python process holding stalled connections.
struct Stallers {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Stallers {
    fn start(
        port: u16,
        conns: usize,
        head: usize,
        declared: usize,
    ) -> (Stallers, serde_json::Value) {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PY_STALL)
            .args([port as usize, conns, head, declared].map(|v| v.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("staller printed {line:?}");
        });
        (Stallers { child, out }, v)
    }

    /// Close every connection; how many logrelay had already closed.
    fn finish(mut self) -> u64 {
        writeln!(self.child.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let _ = self.child.wait();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["closed_by_peer"].as_u64().unwrap()
    }
}

impl Drop for Stallers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relay_with_metrics(input_extra: &str, top_extra: &str) -> (Relay, String) {
    let mport = free_port();
    let config = format!(
        r#"{{
  "inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:0"{input_extra}}}}},
  "outputs": {{"file": {{"type": "file", "path": "app.log", "format": "%(name)s %(message)s"}}}},
  "metrics": {{"address": "127.0.0.1:{mport}"}}{top_extra}
}}"#
    );
    // The input and the metrics endpoint each say "Listening".
    let relay = Relay::start(&config, 2);
    (relay, format!("127.0.0.1:{mport}"))
}

#[test]
fn a_thousand_clients_stalled_mid_frame_do_not_hold_up_a_socket_handler() {
    let (relay, metrics) = relay_with_metrics("", "");
    let port = relay.port("app");
    let (stallers, v) = Stallers::start(port, 1000, 20, 300);
    assert_eq!(v["sent"], 1000, "{v}");
    // Every stalled connection is open and holds its 20 bytes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics, "logrelay_pending_frame_bytes") < 20_000 {
        assert!(
            Instant::now() < deadline,
            "{}",
            http_get(&metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    send_tcp(port, 5, "good");
    let log = wait_lines(&relay.path("app.log"), 5, Duration::from_secs(5));
    let took = sent.elapsed();
    assert_eq!(
        log,
        (0..5)
            .map(|i| format!("good msg {i}\n"))
            .collect::<String>()
    );
    assert_eq!(
        metric(&metrics, "logrelay_connections_open{input=\"app\"}"),
        1000
    );
    assert_eq!(
        stallers.finish(),
        0,
        "no stalled connection is closed early"
    );
    eprintln!("5 records written {took:?} after the sender started, beside 1,000 stalled clients");
}

#[test]
fn partial_frames_stay_within_max_pending_bytes() {
    // 30 clients each send 4 MiB of a 16 MB frame and stop: 120 MiB of
    // partial frames offered against a 32 MiB budget.
    let (relay, metrics) = relay_with_metrics("", r#", "max_pending_bytes": 33554432"#);
    let port = relay.port("app");
    let (stallers, v) = Stallers::start(port, 30, 4 << 20, 16_000_000);
    assert_eq!(v["open"], 30, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &metrics,
        "logrelay_connections_closed_total{input=\"app\",reason=\"stalled\"}",
    ) < 22
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            http_get(&metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // 8 partial frames of 4 MiB fit in 32 MiB; the rest were closed, the
    // longest stalled first.
    std::thread::sleep(Duration::from_millis(500));
    let closed = metric(
        &metrics,
        "logrelay_connections_closed_total{input=\"app\",reason=\"stalled\"}",
    );
    let pending = metric(&metrics, "logrelay_pending_frame_bytes");
    assert!(pending <= 32 << 20, "{pending}");
    assert_eq!(pending, (30 - closed) * (4 << 20), "{closed} closed");
    assert_eq!(closed, 22);
    send_tcp(port, 5, "good");
    wait_lines(&relay.path("app.log"), 5, Duration::from_secs(5));
    let rss = peak_rss_kib(relay.child.id());
    assert!(rss < 128 * 1024, "peak RSS {rss} KiB");
    assert_eq!(stallers.finish(), 22);
    assert!(relay.stderr().contains("exceed max_pending_bytes"));
    eprintln!("peak RSS {rss} KiB with 120 MiB of partial frames offered");
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn frame_timeout_closes_a_stall_mid_frame_but_never_an_idle_connection() {
    let (relay, metrics) = relay_with_metrics(r#", "frame_timeout_ms": 400"#, "");
    let port = relay.port("app");
    // An idle connection, and one that sent a whole record and then idles.
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let whole = python_frames(1, "whole");
    let mut between = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    between.write_all(&whole).unwrap();
    // One that stops 10 bytes into a frame.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.write_all(&whole[..10]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(stalled.read(&mut b).unwrap_or(0), 0, "closed by logrelay");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
    std::thread::sleep(Duration::from_millis(1000));
    // The other two are still open: a record on each arrives.
    between.write_all(&python_frames(1, "after")).unwrap();
    let mut idle = idle;
    idle.write_all(&python_frames(1, "idle")).unwrap();
    let log = wait_lines(&relay.path("app.log"), 3, Duration::from_secs(5));
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(lines, ["after msg 0", "idle msg 0", "whole msg 0"]);
    assert_eq!(
        metric(
            &metrics,
            "logrelay_connections_closed_total{input=\"app\",reason=\"frame_timeout\"}"
        ),
        1
    );
    assert!(relay.stderr().contains("frame_timeout_ms"));
}

/// `n` SocketHandler frames ("msg <i>" on `logger`), made by Python.
fn python_frames(n: usize, logger: &str) -> Vec<u8> {
    let out = python(
        r#"
import logging, logging.handlers, sys
h = logging.handlers.SocketHandler("127.0.0.1", 9)
n, name = int(sys.argv[1]), sys.argv[2]
out = b"".join(h.makePickle(logging.LogRecord(name, 20, "/x.py", 1, "msg %d", (i,), None)) for i in range(n))
sys.stdout.buffer.write(out)
"#,
        &[&n.to_string(), logger],
    );
    out.stdout
}

#[test]
fn max_connections_closes_the_ones_over_it() {
    let (relay, metrics) = relay_with_metrics(r#", "max_connections": 5"#, "");
    let port = relay.port("app");
    let five: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&metrics, "logrelay_connections_open{input=\"app\"}") < 5 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sixth = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sixth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(sixth.read(&mut b).unwrap_or(0), 0, "the sixth is closed");
    assert_eq!(
        metric(
            &metrics,
            "logrelay_connections_closed_total{input=\"app\",reason=\"max_connections\"}"
        ),
        1
    );
    drop(five);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&metrics, "logrelay_connections_open{input=\"app\"}") > 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    send_tcp(port, 3, "later");
    wait_lines(&relay.path("app.log"), 3, Duration::from_secs(5));
    assert!(relay.stderr().contains("max_connections"));
}

#[test]
fn out_of_file_descriptors_the_listener_sheds_clients_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let config = format!(
        r#"{{
  "inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
  "outputs": {{"file": {{"type": "file", "path": "app.log", "format": "%(name)s %(message)s"}}}},
  "metrics": {{"address": "127.0.0.1:{mport}"}}
}}"#
    );
    std::fs::write(dir.path().join("listener.json"), &config).unwrap();
    // `ulimit -n 256` as a user would set it (soft and hard).
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {BIN} --config listener.json"
        ))
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let relay = Relay::adopt(child, dir);
    relay.wait_for_log("Listening", 2, Duration::from_secs(20));
    let port = relay.port("app");
    let metrics = format!("127.0.0.1:{mport}");
    // One real sender connected first keeps its connection throughout.
    let mut keeper = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    keeper.write_all(&python_frames(1, "first")).unwrap();
    wait_lines(&relay.path("app.log"), 1, Duration::from_secs(5));
    let (stallers, v) = Stallers::start(port, 400, 0, 0);
    assert_eq!(v["open"], 400, "{v}");
    // While 400 clients press on 256 descriptors, CPU stays low.
    let cpu0 = cpu_ticks(relay.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(relay.child.id()) - cpu0;
    let ticks_per_s = 100; // USER_HZ
    assert!(cpu * 10 < 2 * ticks_per_s, "{cpu} ticks of CPU in 2 s");
    keeper.write_all(&python_frames(2, "still")).unwrap();
    let log = wait_lines(&relay.path("app.log"), 3, Duration::from_secs(5));
    assert!(log.ends_with("still msg 0\nstill msg 1\n"), "{log}");
    // The metrics endpoint needs a descriptor too: free them first.
    drop(stallers);
    std::thread::sleep(Duration::from_millis(500));
    let shed = metric(
        &metrics,
        "logrelay_connections_closed_total{input=\"app\",reason=\"fd_limit\"}",
    );
    assert!(shed > 0, "{}", http_get(&metrics, "/metrics"));
    assert!(relay.stderr().contains("raise `ulimit -n`"));
    // The warning is rate-limited: a handful of lines, not one per client.
    let warnings = relay.stderr().matches("cannot accept").count();
    assert!(warnings <= 5, "{warnings} warnings");
    eprintln!("shed {shed} clients; {cpu} CPU ticks in 2 s while refusing");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn sighup_with_an_unchanged_config_is_counted() {
    let (relay, metrics) = relay_with_metrics("", "");
    relay.signal("HUP");
    relay.wait_for_log("Config unchanged.", 1, Duration::from_secs(10));
    assert_eq!(
        metric(&metrics, "logrelay_reloads_total{result=\"unchanged\"}"),
        1
    );
    assert_eq!(
        metric(&metrics, "logrelay_reloads_total{result=\"success\"}"),
        0
    );
}
