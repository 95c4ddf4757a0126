//! The json and msgpack decoders (issue 7): the same records sent through
//! SocketHandler (pickle) and through the handlers of the `logrelay` Python
//! package (JSON length-prefixed, JSON lines, msgpack) produce the
//! same output; missing attributes get `makeLogRecord`'s values; malformed
//! records are dropped and the connection goes on.

use std::io::Write;

/// Write raw bytes to a TCP `host:port` and close.
fn send_raw(addr: &str, bytes: &[u8]) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
}
use std::time::Duration;

use crate::util::*;

/// python/, where the `logrelay` package and its drop-in handlers live.
pub fn python_package_dir() -> String {
    root().join("python").display().to_string()
}

/// Logs the same records through four handlers: SocketHandler (pickle),
/// JSONSocketHandler, JSONLinesSocketHandler, MsgpackSocketHandler. Each
/// record object is handled by all four, so every field (created, thread,
/// ...) is identical.
const PY_FOUR: &str = r#"
import logging, logging.handlers, sys
sys.path.insert(0, sys.argv[1])
from logrelay import JSONSocketHandler, JSONLinesSocketHandler, MsgpackSocketHandler
addrs = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[2:6]]
n = int(sys.argv[6])
handlers = [
    logging.handlers.SocketHandler(*addrs[0]),
    JSONSocketHandler(*addrs[1]),
    JSONLinesSocketHandler(*addrs[2]),
    MsgpackSocketHandler(*addrs[3]),
]
log = logging.getLogger("app.decoders")
log.propagate = False
log.setLevel(1)
for h in handlers:
    log.addHandler(h)
for i in range(n):
    kind = i % 4
    if kind == 0:
        log.info("plain %d", i)
    elif kind == 1:
        log.warning("extras %d é \"q\"\nline2", i, extra={
            "user": "ann", "ids": [1, 2, 3], "ratio": 0.1 + 0.2, "ok": True,
            "nothing": None, "nested": {"a": [1, {"b": "c"}]}, "big": 2**40,
            "neg": -123456, "raw": b"\x00\xffz"})
    elif kind == 2:
        try:
            {}["missing"]
        except KeyError:
            log.exception("failed %d", i)
    else:
        log.log(25, "custom level %d", i, stack_info=(i % 8 == 3))
for h in handlers:
    h.close()
"#;

fn config_four() -> String {
    // Distinct hosts: inputs are keyed by the address as written, so two
    // inputs on "127.0.0.1:0" would be one.
    let input = |host: u8, decoder: &str, framing: &str| {
        format!(
            r#"{{"type": "tcp", "address": "127.0.0.{host}:0", "decoder": "{decoder}", "framing": "{framing}"}}"#
        )
    };
    let output =
        |name: &str| format!(r#"{{"type": "file", "path": "out/{name}.log", "encoding": "json"}}"#);
    format!(
        r#"{{
  "inputs": {{ "pickle": {}, "json": {}, "lines": {}, "msgpack": {} }},
  "outputs": {{ "pickle": {}, "json": {}, "lines": {}, "msgpack": {} }},
  "routes": [
    {{ "from": ["pickle"], "to": ["pickle"] }},
    {{ "from": ["json"], "to": ["json"] }},
    {{ "from": ["lines"], "to": ["lines"] }},
    {{ "from": ["msgpack"], "to": ["msgpack"] }}
  ]
}}"#,
        input(1, "pickle", "length_prefixed"),
        input(2, "json", "length_prefixed"),
        input(3, "json", "newline"),
        input(4, "msgpack", "length_prefixed"),
        output("pickle"),
        output("json"),
        output("lines"),
        output("msgpack"),
    )
}

#[test]
fn issue_7_json_both_framings_and_msgpack_give_the_same_lines_as_pickle() {
    let n = 200;
    let mut relay = Relay::start(&config_four(), 4);
    let addrs: Vec<String> = ["pickle", "json", "lines", "msgpack"]
        .iter()
        .map(|i| relay.addr(i))
        .collect();
    let dir = python_package_dir();
    let mut args = vec![dir.as_str()];
    args.extend(addrs.iter().map(String::as_str));
    let n_text = n.to_string();
    args.push(&n_text);
    // MsgpackSocketHandler needs msgpack: the tests' prerequisite step.
    python_deps(PY_FOUR, &args);
    for name in ["pickle", "json", "lines", "msgpack"] {
        wait_lines(
            &relay.path(&format!("out/{name}.log")),
            n,
            Duration::from_secs(20),
        );
    }
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0);
    assert!(!stderr.contains("record dropped"), "{stderr}");
    let read =
        |name: &str| std::fs::read_to_string(relay.path(&format!("out/{name}.log"))).unwrap();
    let pickle = read("pickle");
    assert_eq!(pickle.lines().count(), n);
    // A sanity check that the comparison compares something rich.
    assert!(pickle.contains(r#""raw":"b'\\x00\\xffz'""#), "{pickle}");
    assert!(
        pickle.contains(r#""ratio":0.30000000000000004"#),
        "{pickle}"
    );
    assert!(
        pickle.contains("Traceback (most recent call last)"),
        "{pickle}"
    );
    for name in ["json", "lines", "msgpack"] {
        let other = read(name);
        for (i, (a, b)) in pickle.lines().zip(other.lines()).enumerate() {
            assert_eq!(a, b, "{name}: record {i} differs from pickle");
        }
        assert_eq!(other.lines().count(), n, "{name}");
    }
}

/// Runs `logging.makeLogRecord(d)` for the JSON object in argv[1] and
/// prints its `__dict__` as JSON.
const PY_MAKE_LOG_RECORD: &str = r#"
import json, logging, sys
d = json.loads(sys.argv[1])
print(json.dumps(logging.makeLogRecord(d).__dict__))
"#;

#[test]
fn issue_7_missing_attributes_get_make_log_record_values_and_bad_records_are_dropped() {
    let mut relay = Relay::start(
        r#"{
  "inputs": {
    "json": {"type": "tcp", "address": "127.0.0.1:0", "decoder": "json"},
    "lines": {"type": "tcp", "address": "127.0.0.2:0", "decoder": "json", "framing": "newline"},
    "msgpack": {"type": "tcp", "address": "127.0.0.3:0", "decoder": "msgpack"}
  },
  "outputs": { "file": {"type": "file", "path": "out/all.log", "encoding": "json"} }
}"#,
        3,
    );
    let sparse = r#"{"msg":"sparse","levelno":40,"created":1700000000.25,"user":"ann"}"#;
    let frame = |payload: &[u8]| {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    };
    // JSON, length-prefixed: good, not JSON, not an object, good.
    let mut stream = frame(sparse.as_bytes());
    stream.extend(frame(b"{not json"));
    stream.extend(frame(b"[1, 2]"));
    stream.extend(frame(br#"{"msg":"json after garbage"}"#));
    send_raw(&relay.addr("json"), &stream);
    wait_lines(&relay.path("out/all.log"), 2, Duration::from_secs(10));
    // JSON lines: garbage line in the middle.
    let lines = "{\"msg\":\"line 1\"}\n{oops\n\n{\"msg\":\"line 2\"}\n";
    send_raw(&relay.addr("lines"), lines.as_bytes());
    wait_lines(&relay.path("out/all.log"), 4, Duration::from_secs(10));
    // msgpack: a good map, an array (not a map), truncated bytes, a good map.
    let mut mp = frame(b"\x81\xa3msg\xa4mp 1");
    mp.extend(frame(b"\x92\x01\x02"));
    mp.extend(frame(b"\x82\xa3msg"));
    mp.extend(frame(b"\x81\xa3msg\xa4mp 2"));
    send_raw(&relay.addr("msgpack"), &mp);
    let text = wait_lines(&relay.path("out/all.log"), 6, Duration::from_secs(10));
    let pid = relay.child.id();
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let msgs: Vec<&str> = records.iter().map(|r| r["msg"].as_str().unwrap()).collect();
    assert_eq!(
        msgs,
        [
            "sparse",
            "json after garbage",
            "line 1",
            "line 2",
            "mp 1",
            "mp 2"
        ]
    );
    for kind in ["bad_json", "bad_msgpack"] {
        assert!(stderr.contains(kind), "{kind} not logged:\n{stderr}");
    }
    // (Warnings are rate-limited per input and kind: one line each here.)

    // The sparse record equals Python's makeLogRecord of the same dict, key
    // order included, except what describes the receiving process, and
    // msecs, which logrelay derives from the record's `created` (Python
    // takes it from the listener's clock, disagreeing with asctime).
    let py = python(PY_MAKE_LOG_RECORD, &[sparse]);
    let want: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&py.stdout).unwrap();
    let got = records[0].as_object().unwrap();
    let keys =
        |m: &serde_json::Map<String, serde_json::Value>| m.keys().cloned().collect::<Vec<String>>();
    assert_eq!(keys(got), keys(&want));
    for (k, v) in &want {
        match k.as_str() {
            "msecs" | "relativeCreated" | "thread" | "threadName" | "process" => {}
            _ => assert_eq!(&got[k], v, "attribute {k}"),
        }
    }
    assert_eq!(got["process"], serde_json::json!(pid));
    assert_eq!(got["thread"], serde_json::Value::Null);
    assert_eq!(got["msecs"], serde_json::json!(250.0));
    // A record without `created` gets the time of receipt.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let created = records[1]["created"].as_f64().unwrap();
    assert!((now - created).abs() < 60.0, "created {created}, now {now}");
}

/// Logs two records through SocketHandler (pickle), through a JSON lines
/// handler that keeps `json.dumps`'s default `ensure_ascii=True`, so a lone
/// surrogate travels as the escape `\udcff`, and through the shipped
/// `JSONLinesSocketHandler` and `MsgpackSocketHandler` (the `logrelay` package):
/// the first record has a lone surrogate in its message (a byte decoded
/// with `errors="surrogateescape"`), a lone leading one, a pair (an emoji)
/// and one in an `extra=` key and its value.
const PY_SURROGATES: &str = r#"
import json, logging, logging.handlers, sys
sys.path.insert(0, sys.argv[1])
from logrelay import record_dict, JSONLinesSocketHandler, MsgpackSocketHandler
class AsciiJSONLines(logging.handlers.SocketHandler):
    def makePickle(self, record):
        return json.dumps(record_dict(self, record)).encode("ascii") + b"\n"
hosts = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[2:6]]
log = logging.getLogger("app.surrogates")
log.propagate = False
log.setLevel(1)
for cls, (h, p) in zip([logging.handlers.SocketHandler, AsciiJSONLines,
                        JSONLinesSocketHandler, MsgpackSocketHandler], hosts):
    log.addHandler(cls(h, p))
text = b"bad \xff byte".decode("utf-8", "surrogateescape")
log.warning("%s \U0001f600 \ud800.", text, extra={"k\udcfe": "v\udcfd"})
log.info("after")
for h in log.handlers:
    h.close()
"#;

#[test]
fn json_lone_surrogate_escapes_become_replacement_characters_as_in_pickle() {
    let mut relay = Relay::start(
        r#"{
  "inputs": {
    "pickle": {"type": "tcp", "address": "127.0.0.1:0"},
    "lines": {"type": "tcp", "address": "127.0.0.2:0", "decoder": "json", "framing": "newline"},
    "shipped": {"type": "tcp", "address": "127.0.0.3:0", "decoder": "json", "framing": "newline"},
    "msgpack": {"type": "tcp", "address": "127.0.0.4:0", "decoder": "msgpack"}
  },
  "outputs": {
    "pickle_json": {"type": "file", "path": "out/pickle.json", "encoding": "json"},
    "lines_json": {"type": "file", "path": "out/lines.json", "encoding": "json"},
    "shipped_json": {"type": "file", "path": "out/shipped.json", "encoding": "json"},
    "msgpack_json": {"type": "file", "path": "out/msgpack.json", "encoding": "json"},
    "lines_text": {"type": "file", "path": "out/lines.log",
                   "format": "%(levelname)s %(name)s %(message)s"}
  },
  "routes": [
    {"from": ["pickle"], "to": ["pickle_json"]},
    {"from": ["lines"], "to": ["lines_json", "lines_text"]},
    {"from": ["shipped"], "to": ["shipped_json"]},
    {"from": ["msgpack"], "to": ["msgpack_json"]}
  ]
}"#,
        4,
    );
    let addrs = ["pickle", "lines", "shipped", "msgpack"].map(|i| relay.addr(i));
    let mut args = vec![python_package_dir()];
    args.extend(addrs);
    python_deps(
        PY_SURROGATES,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for name in [
        "pickle.json",
        "lines.json",
        "lines.log",
        "shipped.json",
        "msgpack.json",
    ] {
        wait_lines(
            &relay.path(&format!("out/{name}")),
            2,
            Duration::from_secs(10),
        );
    }
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0);
    assert!(!stderr.contains("bad_json"), "{stderr}");
    let read = |name: &str| std::fs::read(relay.path(&format!("out/{name}"))).unwrap();
    assert_eq!(
        String::from_utf8(read("lines.log")).unwrap(),
        "WARNING app.surrogates bad \u{fffd} byte \u{1f600} \u{fffd}.\n\
         INFO app.surrogates after\n"
    );
    // Every field, the extra key and value included, as the pickle
    // decoder gives them.
    let json = String::from_utf8(read("lines.json")).unwrap();
    assert_eq!(json, String::from_utf8(read("pickle.json")).unwrap());
    // The shipped handlers send the same record, surrogates included.
    assert_eq!(json, String::from_utf8(read("shipped.json")).unwrap());
    assert_eq!(json, String::from_utf8(read("msgpack.json")).unwrap());
    assert_eq!(json.lines().count(), 2);
    let first = json.lines().next().unwrap();
    assert!(
        first.contains(",\"msg\":\"bad \u{fffd} byte \u{1f600} \u{fffd}.\","),
        "{first}"
    );
    assert!(first.ends_with(",\"k\u{fffd}\":\"v\u{fffd}\"}"), "{first}");
}

/// Sends each of argv[2..] as one UDP datagram to 127.0.0.1:argv[1], as
/// a Vector or Fluent Bit `udp` sink with newline framing does.
const PY_UDP_DATAGRAMS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for d in sys.argv[2:]:
    s.sendto(d.encode(), ("127.0.0.1", int(sys.argv[1])))
s.close()
"#;

#[test]
fn udp_newline_datagram_gives_one_record_per_line() {
    let mut relay = Relay::start(
        r#"{
  "inputs": {"in": {"type": "udp", "address": "127.0.0.1:0", "decoder": "json", "framing": "newline"}},
  "outputs": {"file": {"type": "file", "path": "out/app.log", "format": "%(levelname)s %(name)s %(message)s"}},
  "metrics": {"address": "127.0.0.1:0"}
}"#,
        2,
    );
    let record =
        |msg: &str| format!(r#"{{"name":"udp","levelname":"INFO","levelno":20,"msg":"{msg}"}}"#);
    // Three lines, the middle one not JSON, a `\r\n` and a blank line;
    // then one line without a newline; then one pretty-printed document,
    // which as a whole is a record (SPEC.md: a datagram is one frame).
    let first = format!("{}\r\n{{oops\n\n{}\n", record("one"), record("two"));
    let second = record("three");
    let third = "{\n  \"name\": \"udp\",\n  \"levelname\": \"INFO\",\n  \"msg\": \"four\"\n}\n";
    python(
        PY_UDP_DATAGRAMS,
        &[&relay.port("in").to_string(), &first, &second, third],
    );
    let path = relay.path("out/app.log");
    wait_lines(&path, 4, Duration::from_secs(10));
    let body = http_get(&relay.addr("metrics"), "/metrics");
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "INFO udp one\nINFO udp two\nINFO udp three\nINFO udp four\n"
    );
    assert!(
        body.contains("\nlogrelay_records_received_total{input=\"in\"} 4\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlogrelay_records_rejected_total{input=\"in\",reason=\"bad_json\"} 1\n"),
        "{body}"
    );
}

/// Issue 17: what `encoding: json` writes for a JSON record that lacked
/// some of LogRecord's attributes is exactly what the README says:
/// `vars(logging.makeLogRecord(d))` — the twenty attributes in LogRecord's
/// order (those not sent with makeLogRecord's values, `exc_info`,
/// `exc_text` and `stack_info` null), then the other keys as sent. A
/// pickle record is written as sent, nothing added.
#[test]
fn issue_17_json_lines_out_adds_exactly_make_log_records_attributes() {
    let mut relay = Relay::start(
        r#"{
  "inputs": {"lines": {"type": "tcp", "address": "127.0.0.1:0", "decoder": "json", "framing": "newline"}},
  "outputs": {"json": {"type": "file", "path": "out/app.json", "encoding": "json"}}
}"#,
        1,
    );
    send_raw(
        &relay.addr("lines"),
        b"{\"name\": \"app\", \"msg\": \"hi\", \"levelname\": \"INFO\", \"levelno\": 20, \"created\": 1700000000.5, \"user\": \"ann\"}\n",
    );
    let path = relay.path("out/app.json");
    wait_lines(&path, 1, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    let line = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
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
            "process",
            "user"
        ],
        "{line}"
    );
    for (k, want) in [
        ("exc_info", serde_json::Value::Null),
        ("exc_text", serde_json::Value::Null),
        ("stack_info", serde_json::Value::Null),
        ("funcName", serde_json::Value::Null),
        ("lineno", serde_json::json!(0)),
        ("args", serde_json::json!([])),
        ("msecs", serde_json::json!(500.0)),
        ("user", serde_json::json!("ann")),
    ] {
        assert_eq!(obj[k], want, "{k}: {line}");
    }
}
