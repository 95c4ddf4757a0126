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

/// Every attribute `makeLogRecord` fills that does not describe the
/// receiving process or its clock.
const MAKE_LOG_RECORD_FORMAT: &str =
    "%(name)s|%(levelname)s|%(levelno)s|%(pathname)r|%(filename)r|\
    %(module)r|%(lineno)d|%(funcName)s|%(exc_info)s|%(exc_text)s|%(stack_info)s|%(args)s|\
    %(processName)s|%(message)s|%(user)s";

#[test]
fn issue_7_missing_attributes_get_make_log_record_values_and_bad_records_are_dropped() {
    let mut relay = Relay::start(
        &r#"{
  "inputs": {
    "json": {"type": "tcp", "address": "127.0.0.1:0", "decoder": "json"},
    "lines": {"type": "tcp", "address": "127.0.0.2:0", "decoder": "json", "framing": "newline"},
    "msgpack": {"type": "tcp", "address": "127.0.0.3:0", "decoder": "msgpack"}
  },
  "outputs": {
    "file": {"type": "file", "path": "out/all.log", "encoding": "json"},
    "text": {"type": "file", "path": "out/all.txt", "format": "FORMAT"},
    "clock": {"type": "file", "path": "out/clock.txt", "format": "%(created)f %(msecs)d %(process)d %(thread)s %(threadName)s"}
  }
}"#
        .replace("FORMAT", MAKE_LOG_RECORD_FORMAT),
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

    // JSON lines out: what was sent, in its order, nothing added (issue 17).
    let sent: serde_json::Value = serde_json::from_str(sparse).unwrap();
    assert_eq!(records[0], sent);
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&records[0]), ["msg", "levelno", "created", "user"]);
    assert_eq!(keys(&records[1]), ["msg"]);
    // A text format sees Python's makeLogRecord of the same dict, except
    // what describes the receiving process, and msecs, which logrelay
    // derives from the record's `created` (Python takes it from the
    // listener's clock, disagreeing with asctime).
    let py = python(PY_FORMAT_MAKE_LOG_RECORD, &[sparse, MAKE_LOG_RECORD_FORMAT]);
    let text = std::fs::read_to_string(relay.path("out/all.txt")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        String::from_utf8_lossy(&py.stdout).trim_end()
    );
    let clock = std::fs::read_to_string(relay.path("out/clock.txt")).unwrap();
    let lines: Vec<&str> = clock.lines().collect();
    assert_eq!(
        lines[0],
        format!("1700000000.250000 250 {pid} None None"),
        "{clock}"
    );
    // A record without `created` gets the time of receipt.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let created: f64 = lines[1].split(' ').next().unwrap().parse().unwrap();
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

/// Sends one record through a SocketHandler to argv[1] (`host:port`) and
/// prints, as a JSON list, the keys of the dict it pickled, in order.
const PY_PICKLE_KEYS: &str = r#"
import json, logging, logging.handlers, pickle, sys
class Keys(logging.handlers.SocketHandler):
    def makePickle(self, record):
        s = super().makePickle(record)
        print(json.dumps(list(pickle.loads(s[4:]))))
        return s
host, port = sys.argv[1].rsplit(":", 1)
h = Keys(host, int(port))
log = logging.getLogger("pick")
log.propagate = False
log.addHandler(h)
log.warning("from pickle %d", 1, extra={"user": "bob"})
h.close()
"#;

/// `logging.Formatter(argv[2]).format(logging.makeLogRecord(json.loads(argv[1])))`.
const PY_FORMAT_MAKE_LOG_RECORD: &str = r#"
import json, logging, sys
print(logging.Formatter(sys.argv[2]).format(logging.makeLogRecord(json.loads(sys.argv[1]))))
"#;

/// A filter that sets `funcName` (a LogRecord attribute the JSON record
/// did not send) and `env` (a new key).
const SET_FUNCNAME_WAT: &str = r#"(module
  (import "logrelay" "field_set" (func $field_set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "funcName")
  (data (i32.const 16) "\"handler\"")
  (data (i32.const 32) "env")
  (data (i32.const 48) "\"prod\"")
  (func (export "filter") (result i32)
    (drop (call $field_set (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 9)))
    (drop (call $field_set (i32.const 32) (i32.const 3) (i32.const 48) (i32.const 6)))
    (i32.const 0)))
"#;

/// Issue 17, item 7: `encoding: json` writes what was sent, nothing added
/// (SPEC.md section 6). A JSON record without `exc_info`, `exc_text`,
/// `stack_info` (and the other attributes makeLogRecord would fill) comes
/// out with exactly its own keys, in its order, while a text format on the
/// same record still renders those attributes as Python's
/// `makeLogRecord` gives them. A pickle record comes out with all of its
/// keys in SocketHandler's order. A field a filter sets appears, even one
/// the decoder had given a default.
#[test]
fn issue_17_json_lines_out_keep_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("set.wat"), SET_FUNCNAME_WAT).unwrap();
    let format =
        "%(funcName)s|%(lineno)d|%(exc_text)s|%(stack_info)s|%(module)r|%(message)s|%(user)s";
    let config = serde_json::json!({
        "inputs": {
            "lines": {"type": "tcp", "address": "127.0.0.1:0", "decoder": "json", "framing": "newline"},
            "pickle": {"type": "tcp", "address": "127.0.0.2:0"}
        },
        "filters": {"set": {"type": "wasm", "path": "set.wat"}},
        "outputs": {
            "json": {"type": "file", "path": "out/app.json", "encoding": "json"},
            "text": {"type": "file", "path": "out/app.log", "format": format},
            "filtered": {"type": "file", "path": "out/filtered.json", "encoding": "json"},
            "pickle": {"type": "file", "path": "out/pickle.json", "encoding": "json"}
        },
        "routes": [
            {"from": ["lines"], "to": ["json", "text"]},
            {"from": ["lines"], "filters": ["set"], "to": ["filtered"]},
            {"from": ["pickle"], "to": ["pickle"]}
        ]
    });
    let mut relay = Relay::start_in(dir, &config.to_string(), 2, &[]);
    let sent = r#"{"name": "app", "msg": "hi", "levelname": "INFO", "levelno": 20, "created": 1700000000.5, "user": "ann"}"#;
    send_raw(&relay.addr("lines"), format!("{sent}\n").as_bytes());
    let out = python(PY_PICKLE_KEYS, &[&relay.addr("pickle")]);
    let pickled: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for f in ["app.json", "app.log", "filtered.json", "pickle.json"] {
        wait_lines(&relay.path(&format!("out/{f}")), 1, Duration::from_secs(20));
    }
    let read = |f: &str| std::fs::read_to_string(relay.path(&format!("out/{f}"))).unwrap();
    let (json, text, filtered, pickle) = (
        read("app.json"),
        read("app.log"),
        read("filtered.json"),
        read("pickle.json"),
    );
    assert_eq!(relay.stop().0, 0);
    let keys = |line: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    // Exactly what was sent, in its order: values as sent, too.
    assert_eq!(
        json,
        r#"{"name":"app","msg":"hi","levelname":"INFO","levelno":20,"created":1700000000.5,"user":"ann"}"#
            .to_string()
            + "\n"
    );
    // The text format still sees makeLogRecord's defaults, as Python.
    let want = python(PY_FORMAT_MAKE_LOG_RECORD, &[sent, format]);
    assert_eq!(text, String::from_utf8(want.stdout).unwrap());
    assert_eq!(text, "None|0|None|None|''|hi|ann\n");
    // Set by the filter: funcName (which the decoder had defaulted) and env.
    assert_eq!(
        keys(&filtered),
        [
            "name",
            "msg",
            "levelname",
            "levelno",
            "created",
            "user",
            "funcName",
            "env"
        ],
        "{filtered}"
    );
    assert!(
        filtered.contains(r#""funcName":"handler","env":"prod""#),
        "{filtered}"
    );
    // Pickle: every key SocketHandler pickled, in its order, nothing else.
    assert!(pickled.len() >= 21, "{pickled:?}");
    assert_eq!(keys(&pickle), pickled, "{pickle}");
    assert!(pickle.contains(r#""user":"bob""#), "{pickle}");
}
