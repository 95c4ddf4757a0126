//! The listener core (issue 2): real Python SocketHandler / DatagramHandler
//! senders over TCP, Unix sockets and UDP, to file and stdout outputs.

use std::time::Duration;

use crate::util::*;

fn file_config(input: &str, format: &str) -> String {
    format!(
        r#"{{
  "inputs": {{ "in": {input} }},
  "outputs": {{ "file": {{ "type": "file", "path": "out/app.log", "format": "{format}" }} }}
}}"#
    )
}

fn expected(n: usize, level: &str, logger: &str) -> String {
    (0..n)
        .map(|i| format!("{level} {logger} msg {i}\n"))
        .collect()
}

#[test]
fn tcp_socket_handler_records_reach_the_file_in_order() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "tcp", "address": "127.0.0.1:0"}"#,
            "%(levelname)s %(name)s %(message)s",
        ),
        1,
    );
    send_tcp(relay.port("in"), 500, "app.web");
    let path = relay.path("out/app.log");
    let (code, _, _) = relay.stop();
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        expected(500, "INFO", "app.web")
    );
}

#[test]
fn unix_socket_handler_records_reach_the_file_and_socket_is_removed() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "unix", "path": "run/listener.sock", "mode": "0660"}"#,
            "%(levelname)s %(name)s %(message)s",
        ),
        1,
    );
    let sock = relay.path("run/listener.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);
    python(
        PY_SEND,
        &["unix", sock.to_str().unwrap(), "300", "worker", "30"],
    );
    let path = relay.path("out/app.log");
    let dir = relay.path("run");
    let (code, _, _) = relay.stop();
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        expected(300, "WARNING", "worker")
    );
    assert!(
        !dir.join("listener.sock").exists(),
        "socket file removed on shutdown"
    );
}

#[test]
fn stale_unix_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    // A socket file whose listener is gone: bound, then dropped.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("run/l.sock")).unwrap());
    assert!(dir.path().join("run/l.sock").exists());
    let mut relay = Relay::start_in(
        dir,
        &file_config(r#"{"type": "unix", "path": "run/l.sock"}"#, "%(message)s"),
        1,
        &[],
    );
    python(
        PY_SEND,
        &["unix", relay.path("run/l.sock").to_str().unwrap(), "3", "x"],
    );
    let path = relay.path("out/app.log");
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "msg 0\nmsg 1\nmsg 2\n"
    );
}

#[test]
fn udp_datagram_handler_records_reach_the_file() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "udp", "address": "127.0.0.1:0"}"#,
            "%(levelname)s %(name)s %(message)s",
        ),
        1,
    );
    // DatagramHandler has no flow control: a modest count, sent at once.
    python(
        PY_SEND,
        &[
            "udp",
            "127.0.0.1",
            &relay.port("in").to_string(),
            "200",
            "dgram",
            "40",
        ],
    );
    let path = relay.path("out/app.log");
    wait_lines(&path, 200, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        expected(200, "ERROR", "dgram")
    );
}

#[test]
fn stdout_output_json_encoding_lists_every_field() {
    let mut relay = Relay::start(
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"console": {"type": "stdout", "encoding": "json"}}}"#,
        1,
    );
    send_tcp(relay.port("in"), 2, "j");
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, out) = relay.stop();
    assert_eq!(code, 0);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    // LogRecord.__dict__ order as SocketHandler pickles it (Python 3.11).
    assert_eq!(
        keys,
        [
            "name",
            "msg",
            "args",
            "levelname",
            "levelno",
            "pathname",
            "filename",
            "module",
            "exc_info",
            "exc_text",
            "stack_info",
            "lineno",
            "funcName",
            "created",
            "msecs",
            "relativeCreated",
            "thread",
            "threadName",
            "processName",
            "process"
        ]
    );
    assert_eq!(lines[1]["msg"], "msg 1");
    assert_eq!(lines[1]["name"], "j");
    assert_eq!(lines[1]["levelno"], 20);
    assert_eq!(lines[1]["args"], serde_json::Value::Null);
}

#[test]
fn eight_senders_times_ten_thousand_records_arrive_exactly_once() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "tcp", "address": "127.0.0.1:0"}"#,
            "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s",
        ),
        1,
    );
    let port = relay.port("in");
    let (ok, report, err) = run_tool(
        "loadgen.py",
        &[
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--records",
            "80000",
            "--procs",
            "8",
            "--mode",
            "handler",
            "--run-id",
            "it8",
            "--exc-fraction",
            "0.01",
        ],
    );
    assert!(ok, "loadgen failed: {err}");
    assert_eq!(report["dropped"].as_u64().unwrap_or(0), 0, "{report}");
    let path = relay.path("out/app.log");
    wait_lines(&path, 80000, Duration::from_secs(60));
    assert_eq!(relay.stop().0, 0);
    let (ok, report, err) = run_tool(
        "verify.py",
        &[
            path.to_str().unwrap(),
            "--run-id",
            "it8",
            "--procs",
            "8",
            "--records",
            "80000",
            "--check-format",
            "cookbook",
        ],
    );
    assert!(ok, "verify failed: {report}\n{err}");
    assert_eq!(report["found"], 80000);
    assert_eq!(report["missing"], 0);
    assert_eq!(report["duplicated"], 0);
    assert_eq!(report["corrupt"], 0);
}

/// A pickle whose GLOBAL + REDUCE would run `os.system("touch PWNED")`,
/// both inside an extra attribute and at the top level.
const PY_EVIL: &str = r#"
import os, pickle, socket, struct, sys, logging
port, marker = int(sys.argv[1]), sys.argv[2]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))
good = logging.makeLogRecord({"name": "evil", "msg": "carrier", "levelno": 20, "levelname": "INFO"}).__dict__
good["payload"] = Evil()
frames = [pickle.dumps(good, p) for p in (1, 2, 4)] + [pickle.dumps(Evil(), 1)]
s = socket.create_connection(("127.0.0.1", port))
for f in frames:
    s.sendall(struct.pack(">L", len(f)) + f)
s.close()
"#;

#[test]
fn malicious_pickle_executes_nothing() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "tcp", "address": "127.0.0.1:0"}"#,
            "%(name)s %(message)s %(payload)s",
        ),
        1,
    );
    let marker = relay.path("PWNED");
    python(
        PY_EVIL,
        &[&relay.port("in").to_string(), marker.to_str().unwrap()],
    );
    let path = relay.path("out/app.log");
    wait_lines(&path, 3, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0);
    assert!(!marker.exists(), "the pickle ran code");
    let text = std::fs::read_to_string(path).unwrap();
    // The three carriers are written with the placeholder; the top-level
    // REDUCE (not a dict) is rejected.
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        assert!(line.starts_with("evil carrier "), "{line}");
        assert!(
            line.contains("system"),
            "placeholder names the callable: {line}"
        );
    }
    assert!(stderr.contains("record dropped"), "{stderr}");
}

const PY_HOSTILE: &str = r#"
import socket, struct, sys, time
port, kind = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
if kind == "huge":
    s.sendall(struct.pack(">L", 0xFFFFFFF0) + b"x" * 100)
    # The listener closes the connection: recv sees EOF (or a reset).
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass
elif kind == "garbage":
    for i in range(50):
        junk = bytes((i * 7 + j) % 256 for j in range(40))
        s.sendall(struct.pack(">L", len(junk)) + junk)
elif kind == "stall":
    s.sendall(struct.pack(">L", 1000) + b"\x80\x01}q\x00")
    time.sleep(2)
s.close()
"#;

#[test]
fn garbage_and_oversized_frames_leave_other_clients_intact() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "tcp", "address": "127.0.0.1:0", "max_frame_bytes": 65536}"#,
            "%(levelname)s %(name)s %(message)s",
        ),
        1,
    );
    let port = relay.port("in").to_string();
    let hostile: Vec<_> = ["huge", "garbage", "stall"]
        .iter()
        .map(|k| {
            std::process::Command::new("python3")
                .args(["-c", PY_HOSTILE, &port, k])
                .spawn()
                .unwrap()
        })
        .collect();
    send_tcp(relay.port("in"), 1000, "good");
    for mut h in hostile {
        wait_timeout(&mut h, Duration::from_secs(20));
    }
    let path = relay.path("out/app.log");
    wait_lines(&path, 1000, Duration::from_secs(10));
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        expected(1000, "INFO", "good")
    );
    assert!(stderr.contains("exceeds max_frame_bytes"), "{stderr}");
}

/// Precomputed SocketHandler frames sent as fast as possible, then SIGTERM
/// right after the sender closed: every record it sent is written.
const PY_BLAST: &str = r#"
import logging, logging.handlers, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
h = logging.handlers.SocketHandler("127.0.0.1", port)
frames = b"".join(h.makePickle(logging.makeLogRecord(
    {"name": "blast", "msg": "rec %d" % i, "levelno": 20, "levelname": "INFO"})) for i in range(n))
s = socket.create_connection(("127.0.0.1", port))
s.sendall(frames)
s.shutdown(socket.SHUT_WR)
"#;

#[test]
fn sigterm_under_load_loses_no_record_already_sent() {
    let mut relay = Relay::start(
        &file_config(
            r#"{"type": "tcp", "address": "127.0.0.1:0"}"#,
            "%(message)s",
        ),
        1,
    );
    python(PY_BLAST, &[&relay.port("in").to_string(), "50000"]);
    let path = relay.path("out/app.log");
    let (code, _, _) = relay.stop();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(path).unwrap();
    let want: String = (0..50000).map(|i| format!("rec {i}\n")).collect();
    assert_eq!(text.lines().count(), 50000);
    assert!(text == want, "records lost, duplicated or reordered");
}

#[test]
fn two_inputs_on_port_zero_stay_apart() {
    // Regression: inputs were keyed by the address as written, so two
    // "127.0.0.1:0" inputs shared one pipeline stage.
    let mut relay = Relay::start(
        r#"{"inputs": {"a": {"type": "tcp", "address": "127.0.0.1:0"},
                       "b": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"fa": {"type": "file", "path": "out/a.log", "format": "%(message)s"},
                        "fb": {"type": "file", "path": "out/b.log", "format": "%(message)s"}},
            "routes": [{"from": ["a"], "to": ["fa"]}, {"from": ["b"], "to": ["fb"]}]}"#,
        2,
    );
    assert_ne!(relay.port("a"), relay.port("b"));
    send_tcp(relay.port("a"), 2, "x");
    send_tcp(relay.port("b"), 3, "x");
    wait_lines(&relay.path("out/b.log"), 3, Duration::from_secs(10));
    wait_lines(&relay.path("out/a.log"), 2, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(relay.path("out/a.log")).unwrap(),
        "msg 0\nmsg 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(relay.path("out/b.log")).unwrap(),
        "msg 0\nmsg 1\nmsg 2\n"
    );
}

/// Route conditions read `levelno` and `name` while the formats name
/// neither: the decoder leaves out only fields nothing downstream of the
/// input reads, so routing still sees them.
#[test]
fn route_conditions_see_fields_the_formats_do_not_name() {
    let mut relay = Relay::start(
        r#"{
  "inputs": { "in": { "type": "tcp", "address": "127.0.0.1:0" } },
  "outputs": {
    "warn": { "type": "file", "path": "out/warn.log", "format": "%(message)s" },
    "db": { "type": "file", "path": "out/db.log", "format": "[%(msg)s]" }
  },
  "routes": [
    { "min_level": "WARNING", "to": ["warn"] },
    { "loggers": ["app.db"], "to": ["db"] }
  ]
}"#,
        1,
    );
    let port = relay.port("in").to_string();
    python(
        r#"
import logging, logging.handlers, sys
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
for name, level, text in [("app.web", 20, "web info"), ("app.web", 30, "web warning"),
                          ("app.db", 10, "db debug"), ("app.db.pool", 40, "pool error"),
                          ("app.db.query", 20, "query info"), ("other", 50, "other critical")]:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(1)
    log.addHandler(h)
    log.log(level, text)
    log.removeHandler(h)
h.close()
"#,
        &[&port],
    );
    let (warn, db) = (relay.path("out/warn.log"), relay.path("out/db.log"));
    wait_lines(&warn, 3, Duration::from_secs(10));
    wait_lines(&db, 3, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(warn).unwrap(),
        "web warning\npool error\nother critical\n"
    );
    assert_eq!(
        std::fs::read_to_string(db).unwrap(),
        "[db debug]\n[pool error]\n[query info]\n"
    );
}

/// Sends, in one `sendall` (so logrelay reads them as one batch), the
/// SocketHandler frames of 24 records: loggers a, b, a.x, c in turn, every
/// third one at ERROR. With argv[3], also writes what Python's cookbook
/// listener (dictConfig from that JSON file, then `Logger.handle`) writes
/// to its file handler `f`, whose filename becomes argv[3] (the other
/// handlers' files go beside it).
const PY_BURST: &str = r#"
import json, logging, logging.config, logging.handlers, socket, sys
records = [logging.makeLogRecord({"name": ["a", "b", "a.x", "c"][i % 4], "msg": "m%d" % i,
                                  "levelno": 40 if i % 3 == 0 else 20,
                                  "levelname": "ERROR" if i % 3 == 0 else "INFO"})
           for i in range(24)]
h = logging.handlers.SocketHandler("127.0.0.1", 0)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"".join(h.makePickle(r) for r in records))
s.close()
if len(sys.argv) > 2:
    d = json.load(open(sys.argv[2]))["logging"]
    for name, handler in d["handlers"].items():
        handler["filename"] = sys.argv[3] + ("" if name == "f" else "." + name)
    logging.config.dictConfig(d)
    for r in records:
        logging.getLogger(r.name).handle(r)
    logging.shutdown()
"#;

/// Two routes (or two dictConfig loggers) feeding one output: the output
/// got one route's records of a batch, then the other's. Python writes in
/// arrival order, and a record that reaches one handler twice is written
/// twice in a row.
#[test]
fn routes_sharing_an_output_keep_arrival_order() {
    let mut relay = Relay::start(
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"f": {"type": "file", "path": "out/app.log",
                              "format": "%(name)s %(levelname)s %(message)s"}},
            "routes": [{"loggers": ["a"], "to": ["f"]},
                       {"loggers": ["b"], "to": ["f"]},
                       {"min_level": "ERROR", "to": ["f"]}]}"#,
        1,
    );
    python(PY_BURST, &[&relay.port("in").to_string()]);
    let path = relay.path("out/app.log");
    let mut want = String::new();
    for i in 0..24 {
        let name = ["a", "b", "a.x", "c"][i % 4];
        let level = if i % 3 == 0 { "ERROR" } else { "INFO" };
        let line = format!("{name} {level} m{i}\n");
        let routes = usize::from(name != "c") + usize::from(level == "ERROR");
        want.push_str(&line.repeat(routes));
    }
    wait_lines(&path, want.lines().count(), Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), want);

    // The same with a cookbook dictConfig, against Python's own output.
    let mut relay = Relay::start(
        r#"{"host": "127.0.0.1", "port": 0, "logging": {"version": 1,
            "formatters": {"d": {"format": "%(name)s %(levelname)s %(message)s"}},
            "handlers": {"f": {"class": "logging.FileHandler", "filename": "out/app.log",
                               "formatter": "d"},
                         "e": {"class": "logging.FileHandler", "filename": "out/errors.log",
                               "level": "ERROR"}},
            "loggers": {"a": {"handlers": ["f"]}, "b": {"handlers": ["f", "e"]}},
            "root": {"handlers": ["f"]}}}"#,
        1,
    );
    let oracle = relay.path("python.log");
    let config = relay.path("listener.json");
    python(
        PY_BURST,
        &[
            &relay.port("cookbook").to_string(),
            config.to_str().unwrap(),
            oracle.to_str().unwrap(),
        ],
    );
    let want = std::fs::read_to_string(&oracle).unwrap();
    let path = relay.path("out/app.log");
    wait_lines(&path, want.lines().count(), Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(want.lines().count(), 42, "{want}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
}
