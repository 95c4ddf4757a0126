//! The forward output (issue 7): A -> B chains over TCP and Unix sockets,
//! A -> a Python cookbook listener (frames byte-equal to SocketHandler's),
//! acknowledged delivery across a receiver restart, and the spool across a
//! sender restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn expected(range: std::ops::Range<usize>, logger: &str) -> String {
    range.map(|i| format!("INFO {logger} msg {i}\n")).collect()
}

/// A free TCP port on loopback (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn issue_7_chain_over_tcp_and_unix_delivers_every_record_once() {
    let mut b = Relay::start(
        r#"{
  "inputs": {
    "tcp": {"type": "tcp", "address": "127.0.0.1:0"},
    "unix": {"type": "unix", "path": "run/b.sock", "decoder": "msgpack"}
  },
  "outputs": {
    "tcp": {"type": "file", "path": "out/tcp.log", "format": "%(levelname)s %(name)s %(message)s"},
    "unix": {"type": "file", "path": "out/unix.log", "format": "%(levelname)s %(name)s %(message)s"}
  },
  "routes": [ {"from": ["tcp"], "to": ["tcp"]}, {"from": ["unix"], "to": ["unix"]} ]
}"#,
        2,
    );
    let a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{
    "via_tcp": {{"type": "forward", "address": "127.0.0.1:{}"}},
    "via_unix": {{"type": "forward", "path": "{}", "encoder": "msgpack"}}
  }}
}}"#,
            b.port("tcp"),
            b.path("run/b.sock").display()
        ),
        1,
    );
    send_tcp(a.port("in"), 3000, "app.chain");
    let want = expected(0..3000, "app.chain");
    for f in ["out/tcp.log", "out/unix.log"] {
        let got = wait_lines(&b.path(f), 3000, Duration::from_secs(30));
        assert_eq!(got, want, "{f}");
    }
    let mut a = a;
    assert_eq!(a.stop().0, 0);
    assert_eq!(b.stop().0, 0);
    for f in ["out/tcp.log", "out/unix.log"] {
        assert_eq!(std::fs::read_to_string(b.path(f)).unwrap(), want, "{f}");
    }
}

/// A cookbook-style listener: length + pickle.loads + makeLogRecord. It
/// prints its port, then writes every frame (hex, prefix included) to
/// argv[1] and checks each record survives makeLogRecord; exits after
/// argv[2] records.
const PY_COOKBOOK_LISTENER: &str = r#"
import logging, pickle, socket, struct, sys
out, n = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(5)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
frames = []
def recv(k):
    b = b""
    while len(b) < k:
        c = conn.recv(k - len(b))
        if not c:
            raise SystemExit("eof after %d frames" % len(frames))
        b += c
    return b
while len(frames) < n:
    head = recv(4)
    body = recv(struct.unpack(">L", head)[0])
    rec = logging.makeLogRecord(pickle.loads(body))
    assert rec.getMessage().startswith("rec "), rec.getMessage()
    frames.append((head + body).hex())
open(out, "w").write("\n".join(frames) + "\n")
"#;

/// Logs records with extras through a SocketHandler that also writes each
/// frame it sends (hex) to argv[3]; with a fourth argument, only plain
/// `log.info("rec %d", i)` records.
const PY_TEE_SENDER: &str = r#"
import logging, logging.handlers, sys
port, n, out = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "w")
plain = len(sys.argv) > 4
class Tee(logging.handlers.SocketHandler):
    def makePickle(self, record):
        b = super().makePickle(record)
        out.write(b.hex() + "\n")
        return b
h = Tee("127.0.0.1", port)
log = logging.getLogger("cookbook.peer")
log.propagate = False
log.setLevel(1)
log.addHandler(h)
for i in range(n):
    if plain or i % 3 == 0:
        log.info("rec %d", i)
    elif i % 3 == 1:
        log.warning("rec %d é", i, extra={"user": "ann", "ids": (1, 2), "flag": False,
                    "big": 2**70, "neg": -5, "f": 0.1, "nested": {"k": [None, "v"]},
                    "raw": b"\x00\xff"})
    else:
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("rec %d", i)
h.close()
out.close()
"#;

/// Start a Python listener `script` (argv: `out`, `n`) that prints its
/// port first; the child and the port.
fn python_listener(script: &str, out: &std::path::Path, n: usize) -> (std::process::Child, u16) {
    let mut listener = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(out)
        .arg(n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(listener.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (listener, line.trim().parse().unwrap())
}

#[test]
fn issue_7_cookbook_listener_receives_socket_handler_identical_frames() {
    let n = 300;
    let tmp = tempfile::tempdir().unwrap();
    let got_path = tmp.path().join("listener.hex");
    let sent_path = tmp.path().join("sender.hex");
    let (mut listener, port) = python_listener(PY_COOKBOOK_LISTENER, &got_path, n);
    let mut a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "cookbook": {{"type": "forward", "address": "127.0.0.1:{port}", "encoder": "pickle"}} }}
}}"#
        ),
        1,
    );
    python(
        PY_TEE_SENDER,
        &[
            &a.port("in").to_string(),
            &n.to_string(),
            sent_path.to_str().unwrap(),
        ],
    );
    assert_eq!(
        wait_timeout(&mut listener, Duration::from_secs(30)),
        0,
        "listener failed"
    );
    assert_eq!(a.stop().0, 0);
    let sent = std::fs::read_to_string(&sent_path).unwrap();
    let got = std::fs::read_to_string(&got_path).unwrap();
    assert_eq!(sent.lines().count(), n);
    for (i, (s, g)) in sent.lines().zip(got.lines()).enumerate() {
        assert_eq!(g, s, "frame {i} differs from SocketHandler.makePickle");
    }
    assert_eq!(got.lines().count(), n);
}

/// Sends `n` records "msg <i>" through SocketHandler, pausing 20 ms every
/// 20 records (about 3 s per 3000 records).
const PY_SLOW_SEND: &str = r#"
import logging, logging.handlers, sys, time
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
log = logging.getLogger(sys.argv[3])
log.propagate = False
log.setLevel(1)
log.addHandler(h)
for i in range(int(sys.argv[2])):
    log.info("msg %d", i)
    if i % 20 == 19:
        time.sleep(0.02)
h.close()
"#;

fn b_config(port: u16, out: &std::path::Path) -> String {
    format!(
        r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:{port}"}} }},
  "outputs": {{ "file": {{"type": "file", "path": "{}", "format": "%(levelname)s %(name)s %(message)s"}} }}
}}"#,
        out.display()
    )
}

#[test]
fn issue_7_ack_survives_a_receiver_restart_without_loss_or_duplicates() {
    let n = 6000;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("b.log");
    let port = free_port();
    let mut b = Relay::start(&b_config(port, &out), 1);
    let mut a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "b": {{"type": "forward", "address": "127.0.0.1:{port}", "ack": true}} }}
}}"#
        ),
        1,
    );
    let a_port = a.port("in").to_string();
    let sender = std::thread::spawn(move || {
        python(PY_SLOW_SEND, &[&a_port, &n.to_string(), "app.ack"]);
    });
    wait_lines(&out, 500, Duration::from_secs(20));
    assert_eq!(b.stop().0, 0);
    std::thread::sleep(Duration::from_secs(3));
    let mut b2 = Relay::start(&b_config(port, &out), 1);
    sender.join().unwrap();
    let got = wait_lines(&out, n, Duration::from_secs(60));
    // Give a duplicate the time to show up.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.stop().0, 0);
    assert_eq!(b2.stop().0, 0);
    let got_final = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, got_final);
    assert_eq!(got_final, expected(0..n, "app.ack"));
}

#[test]
fn issue_7_spool_keeps_records_across_a_sender_restart() {
    let out_dir = tempfile::tempdir().unwrap();
    let spool = out_dir.path().join("spool");
    let out = out_dir.path().join("b.log");
    let port = free_port();
    let a_config = format!(
        r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "b": {{"type": "forward", "address": "127.0.0.1:{port}", "ack": true,
                      "buffer_records": 100, "spool_dir": "{}"}} }}
}}"#,
        spool.display()
    );
    // B is down: A keeps 100 records in memory and spools the rest.
    let mut a = Relay::start(&a_config, 1);
    send_tcp(a.port("in"), 500, "app.spool");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.stop().0, 0);
    assert!(
        std::fs::read_dir(&spool).unwrap().count() > 0,
        "nothing spooled"
    );
    // B comes up, A restarts from its spool and takes new records after.
    let mut b = Relay::start(&b_config(port, &out), 1);
    let mut a2 = Relay::start(&a_config, 1);
    send_tcp(a2.port("in"), 500, "app.spool2");
    let want = expected(0..500, "app.spool") + &expected(0..500, "app.spool2");
    let got = wait_lines(&out, 1000, Duration::from_secs(60));
    assert_eq!(a2.stop().0, 0);
    assert_eq!(b.stop().0, 0);
    assert_eq!(got, want);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
}

/// A minimal Fluentd forward input: prints its port, reads Forward-mode
/// messages, acks each `chunk`, and after argv[2] records writes one line
/// per record to argv[1]: `tag seconds.nanos msg`. With argv[3] = "drop",
/// it closes the connection instead of acking the first chunk (the sender
/// must re-send it).
const PY_FLUENTD: &str = r#"
import msgpack, socket, struct, sys
out, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(5)
print(srv.getsockname()[1], flush=True)
lines, acked = [], 0
while len(lines) < n:
    conn, _ = srv.accept()
    unpacker = msgpack.Unpacker(raw=False)
    closed = False
    while not closed and len(lines) < n:
        data = conn.recv(65536)
        if not data:
            break
        unpacker.feed(data)
        for msg in unpacker:
            tag, entries, option = msg
            if mode == "drop" and acked == 0:
                acked = -1
                conn.close(); closed = True
                break
            for t, rec in entries:
                secs, nanos = struct.unpack(">II", t.data) if t.code == 0 else (-1, -1)
                lines.append("%s %d.%09d %s" % (tag, secs, nanos, rec["msg"]))
            conn.sendall(msgpack.packb({"ack": option["chunk"]}))
            acked = max(acked, 0) + 1
open(out, "w").write("\n".join(lines) + "\n")
"#;

fn fluent_run(mode: &str) {
    let n = 2000;
    let tmp = tempfile::tempdir().unwrap();
    let got_path = tmp.path().join("fluentd.txt");
    let mut fluentd = python_env()
        .command()
        .arg("-c")
        .arg(PY_FLUENTD)
        .arg(&got_path)
        .arg(n.to_string())
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(fluentd.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let mut a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "fluentd": {{"type": "forward", "address": "127.0.0.1:{port}", "encoder": "fluent",
                            "tag": "app.python", "require_ack": true}} }}
}}"#
        ),
        1,
    );
    send_tcp(a.port("in"), n, "app.fluent");
    assert_eq!(wait_timeout(&mut fluentd, Duration::from_secs(60)), 0);
    assert_eq!(a.stop().0, 0);
    let got = std::fs::read_to_string(&got_path).unwrap();
    let msgs: Vec<String> = got
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            assert_eq!(parts.next(), Some("app.python"));
            let time: f64 = parts.next().unwrap().parse().unwrap();
            assert!(time > 1.6e9, "event time {time}");
            parts.next().unwrap().to_string()
        })
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("msg {i}")).collect();
    assert_eq!(msgs, want);
}

#[test]
fn issue_7_fluent_encoder_feeds_a_fluentd_forward_input_with_acks() {
    fluent_run("ack");
}

#[test]
fn issue_7_fluent_chunk_without_ack_is_sent_again() {
    fluent_run("drop");
}

/// A logrelay forwarding its TCP input to `port` with a 10-record buffer
/// and `when_full`, and serving `/metrics`.
fn small_buffer_forwarder(port: u16, when_full: &str) -> Relay {
    Relay::start(
        &format!(
            r#"{{
  "inputs": {{ "in": {{"type": "tcp", "address": "127.0.0.1:0"}} }},
  "outputs": {{ "b": {{"type": "forward", "address": "127.0.0.1:{port}",
                      "buffer_records": 10, "when_full": "{when_full}"}} }},
  "metrics": {{"address": "127.0.0.1:0"}}
}}"#
        ),
        2,
    )
}

#[test]
fn issue_7_drop_newest_keeps_the_oldest_records_and_counts_the_rest() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("b.log");
    let port = free_port();
    let mut a = small_buffer_forwarder(port, "drop_newest");
    send_tcp(a.port("in"), 100, "app.drop");
    std::thread::sleep(Duration::from_millis(300));
    let mut b = Relay::start(&b_config(port, &out), 1);
    let got = wait_lines(&out, 10, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let (code, stderr, _) = a.stop();
    assert_eq!(code, 0);
    assert_eq!(b.stop().0, 0);
    assert_eq!(got, expected(0..10, "app.drop"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), got);
    assert!(stderr.contains("dropped=90"), "{stderr}");
}

/// `when_full: block`, the default: while the peer is away a full buffer
/// stops the output taking records, so the senders wait (their records stay
/// in the queue and the kernel) instead of losing any; once the peer is up
/// every record arrives, in order, exactly once.
#[test]
fn issue_7_when_full_block_holds_records_back_and_loses_none() {
    let n = 2000;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("b.log");
    let port = free_port();
    let mut a = small_buffer_forwarder(port, "block");
    let a_port = a.port("in");
    let sender = std::thread::spawn(move || send_tcp(a_port, n, "app.block"));
    std::thread::sleep(Duration::from_secs(1));
    // The buffer took what it had room for (whole batches) and stopped.
    let body = http_get(&a.addr("metrics"), "/metrics");
    let buffered: usize = body
        .lines()
        .find_map(|l| l.strip_prefix("logrelay_forward_buffer_records{output=\"b\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no buffer gauge: {body}"));
    // At least the 10 asked for, at most one more batch (one 64 KiB read,
    // a few hundred of these records); never the 2,000 sent.
    assert!((10..400).contains(&buffered), "buffered {buffered}");
    let mut b = Relay::start(&b_config(port, &out), 1);
    sender.join().unwrap();
    let got = wait_lines(&out, n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let (code, stderr, _) = a.stop();
    assert_eq!(code, 0);
    assert_eq!(b.stop().0, 0);
    assert_eq!(got, expected(0..n, "app.block"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), got);
    assert!(!stderr.contains("dropped"), "{stderr}");
}

#[test]
fn issue_7_forward_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("l.json"),
        r#"{
  "inputs": { "in": {"type": "tcp", "address": "127.0.0.1:9020"} },
  "outputs": {
    "a": {"type": "forward", "address": "127.0.0.1:9021", "tag": "x"},
    "b": {"type": "forward", "address": "127.0.0.1:9021", "encoder": "fluent", "ack": true},
    "c": {"type": "forward", "address": "127.0.0.1:9021", "encoder": "fluent", "tag": "t",
          "require_ack": true, "spool_dir": "spool"}
  }
}"#,
    )
    .unwrap();
    let out = logrelay(&["check", "--config", "l.json"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("outputs.a.tag"), "{err}");
    assert!(err.contains("applies only to"), "{err}");
    assert!(err.contains("outputs.b.ack"), "{err}");
    assert!(!err.contains("outputs.c"), "{err}");
}

/// A listener that prints its port, then for argv[2] frames writes one
/// line per frame to argv[1]: the frame's hex (prefix included), a tab,
/// and the loaded dict's `msg`, `env` and `levelno` as JSON.
const PY_DUMP_LISTENER: &str = r#"
import json, pickle, socket, struct, sys
out, n = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(5)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
f = conn.makefile("rb")
lines = []
while len(lines) < n:
    head = f.read(4)
    body = f.read(struct.unpack(">L", head)[0])
    d = pickle.loads(body)
    lines.append((head + body).hex() + "\t" + json.dumps([str(d.get("msg")), d.get("env"), d.get("levelno")]))
open(out, "w").write("\n".join(lines) + "\n")
"#;

#[test]
fn a_forwarded_pickle_is_the_senders_bytes_unless_changed_or_unsafe() {
    // The pickle encoder sends a SocketHandler record's own frame on when
    // nothing changed it; a record a filter can change is encoded from
    // its fields (the change is there), and a frame that is not plain
    // makePickle output (a class instance built by REDUCE) is encoded
    // again, so no opcode that would make an unpickler run code leaves.
    let n = 20;
    let tmp = tempfile::tempdir().unwrap();
    let got_path = tmp.path().join("listener.txt");
    let sent_path = tmp.path().join("sender.hex");
    let (mut listener, port) = python_listener(PY_DUMP_LISTENER, &got_path, 2 * n + 1);
    let plugin = root().join("tests/fixtures/wasm/field_set.wat");
    let mut a = Relay::start(
        &format!(
            r#"{{
  "inputs": {{
    "plain": {{"type": "tcp", "address": "127.0.0.1:0"}},
    "changed": {{"type": "tcp", "address": "127.0.0.1:0"}}
  }},
  "filters": {{ "set": {{"type": "wasm", "path": {plugin:?}}} }},
  "outputs": {{ "peer": {{"type": "forward", "address": "127.0.0.1:{port}"}} }},
  "routes": [
    {{"from": ["plain"], "to": ["peer"]}},
    {{"from": ["changed"], "filters": ["set"], "to": ["peer"]}}
  ]
}}"#
        ),
        2,
    );
    python(
        PY_TEE_SENDER,
        &[
            &a.port("plain").to_string(),
            &n.to_string(),
            sent_path.to_str().unwrap(),
            "plain",
        ],
    );
    // One frame holding os.system('true') as `msg`, then the same
    // records through the filter.
    let hostile = "7d71002858030000006d7367710163706f7369780a73797374656d0a71\
                   02580400000074727565710385710452710558040000006e616d65710658\
                   0100000078710775"
        .to_string()
        + "2e";
    let hostile: Vec<u8> = (0..hostile.len() / 2)
        .map(|i| u8::from_str_radix(&hostile[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", a.port("plain"))).unwrap();
    std::io::Write::write_all(&mut s, &(hostile.len() as u32).to_be_bytes()).unwrap();
    std::io::Write::write_all(&mut s, &hostile).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let unused = tmp.path().join("unused.hex");
    python(
        PY_TEE_SENDER,
        &[
            &a.port("changed").to_string(),
            &n.to_string(),
            unused.to_str().unwrap(),
            "plain",
        ],
    );
    assert_eq!(
        wait_timeout(&mut listener, Duration::from_secs(30)),
        0,
        "listener failed"
    );
    assert_eq!(a.stop().0, 0);
    let sent = std::fs::read_to_string(&sent_path).unwrap();
    let got = std::fs::read_to_string(&got_path).unwrap();
    let got: Vec<(&str, &str)> = got.lines().map(|l| l.split_once('\t').unwrap()).collect();
    assert_eq!(got.len(), 2 * n + 1);
    for (i, s) in sent.lines().enumerate() {
        assert_eq!(got[i].0, s, "frame {i} is not the sender's");
        assert_eq!(got[i].1, format!(r#"["rec {i}", null, 20]"#), "frame {i}");
    }
    // The instance became its placeholder string; no GLOBAL (`c`) left.
    let (frame, fields) = got[n];
    assert_eq!(fields, r#"["<posix.system object>", null, null]"#);
    let global: String = b"posix\nsystem"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!frame.contains(&global), "{frame}");
    for (i, (_, fields)) in got[n + 1..].iter().enumerate() {
        assert_eq!(
            *fields,
            format!(r#"["rec {i}", "prod", 40]"#),
            "changed frame {i}"
        );
    }
}
