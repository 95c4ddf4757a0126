//! Issue 3 end to end: real Python `SocketHandler`s send the differential
//! generator's records (`tests/fixtures/format/gen_records.py --wire`) to the
//! real binary, one relay per time zone (`TZ` set on the binary) with one
//! file output per format configuration; every output file must equal
//! Python's `Formatter` output byte for byte.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{python, root, Relay};

/// Sends the length-prefixed frames of `frames.bin` through
/// `SocketHandler.send`, the method `SocketHandler.emit` uses.
const PY_SEND_FRAMES: &str = r#"
import logging.handlers, struct, sys
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
pos = 0
while pos < len(data):
    n = struct.unpack(">L", data[pos:pos + 4])[0]
    h.send(data[pos:pos + 4 + n])
    pos += 4 + n
h.close()
"#;

fn wait_bytes(path: &std::path::Path, want: usize, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = std::fs::read(path).unwrap_or_default();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_3_formatter_output_byte_exact_end_to_end() {
    let gen = tempfile::tempdir().unwrap();
    let st = Command::new("python3")
        .arg(root().join("tests/fixtures/format/gen_records.py"))
        .arg(gen.path())
        .args(["5000", "--wire"])
        .status()
        .unwrap();
    assert!(st.success(), "generator failed");
    let configs: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(gen.path().join("configs.json")).unwrap()).unwrap();
    let mut by_tz: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, c) in configs.iter().enumerate() {
        by_tz
            .entry(c["tz"].as_str().unwrap().to_string())
            .or_default()
            .push(k);
    }
    let frames = gen.path().join("frames.bin");
    let mut failures = Vec::new();
    for (tz, ks) in &by_tz {
        let mut outputs = serde_json::Map::new();
        for &k in ks {
            let c = &configs[k];
            let mut o = serde_json::json!({
                "type": "file",
                "path": format!("out{k}.log"),
                "format": c["format"],
                "style": c.get("style").cloned().unwrap_or("%".into()),
                "utc": c.get("utc").cloned().unwrap_or(false.into()),
            });
            if let Some(d) = c.get("datefmt") {
                o["datefmt"] = d.clone();
            }
            outputs.insert(format!("f{k}"), o);
        }
        let config = serde_json::json!({
            "inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": outputs,
        });
        let mut relay = Relay::start_in(
            tempfile::tempdir().unwrap(),
            &config.to_string(),
            1,
            &[("TZ", tz.as_str())],
        );
        let port = relay.port("app").to_string();
        python(PY_SEND_FRAMES, &[&port, frames.to_str().unwrap()]);
        for &k in ks {
            let expected: Vec<String> = serde_json::from_slice(
                &std::fs::read(gen.path().join(format!("expected_{k}.json"))).unwrap(),
            )
            .unwrap();
            let want = expected.concat();
            let got = wait_bytes(
                &relay.path(&format!("out{k}.log")),
                want.len(),
                Duration::from_secs(60),
            );
            if got != want.as_bytes() {
                let got = String::from_utf8_lossy(&got);
                let first = want
                    .split_inclusive('\n')
                    .zip(got.split_inclusive('\n'))
                    .find(|(w, g)| w != g);
                failures.push(format!(
                    "TZ={tz} config {k} {:?}: {} bytes wanted, {} written; first differing line: {first:?}",
                    configs[k]["format"],
                    want.len(),
                    got.len()
                ));
            }
        }
        let (code, _, _) = relay.stop();
        assert_eq!(code, 0);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A format naming a missing attribute three times warns once per second,
/// and `suppressed` counts the records since the last warning (4), not the
/// placeholders (it said 14: three per record, less the one logged).
#[test]
fn missing_attribute_warning_counts_records_not_placeholders() {
    let config = r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
        "outputs": {"o": {"type": "file", "path": "o.log",
                          "format": "%(user)s|%(user)-4s|%(user)r %(message)s"}}}"#;
    let mut relay = Relay::start(config, 1);
    let port = relay.port("in");
    crate::util::send_tcp(port, 5, "app");
    crate::util::wait_lines(&relay.path("o.log"), 5, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1200));
    crate::util::send_tcp(port, 1, "app");
    let text = crate::util::wait_lines(&relay.path("o.log"), 6, Duration::from_secs(20));
    assert!(text.starts_with("-|-   |- msg 0\n"), "{text}");
    let (code, err, _) = relay.stop();
    assert_eq!(code, 0);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("record lacks an attribute") && l.contains("field=\"user\""))
        .collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings[0].ends_with("suppressed=0"), "{err}");
    assert!(warnings[1].ends_with("suppressed=4"), "{err}");
}

/// A `bytearray` in `extra=` is written as Python prints it,
/// `bytearray(b'..')` under `%s` and `%r` alike and in JSON; it used to be
/// taken for bytes and written `b'..'`.
#[test]
fn bytearray_extra_renders_as_python_prints_it() {
    let config = r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
        "outputs": {"t": {"type": "file", "path": "t.log",
                          "format": "%(ba)s|%(ba)r|%(empty)s|%(b)r|%(nested)s %(message)s"},
                    "j": {"type": "file", "path": "j.log", "encoding": "json"}}}"#;
    let mut relay = Relay::start(config, 1);
    let port = relay.port("in").to_string();
    python(
        r#"
import logging, logging.handlers, sys
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
log = logging.getLogger("ba")
log.addHandler(h)
log.warning("m", extra={"ba": bytearray(b"x'\x00\xff"), "empty": bytearray(),
                        "b": b"x", "nested": [bytearray(b"y")]})
h.close()
"#,
        &[&port],
    );
    let text = crate::util::wait_lines(&relay.path("t.log"), 1, Duration::from_secs(20));
    let json = crate::util::wait_lines(&relay.path("j.log"), 1, Duration::from_secs(20));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        text,
        "bytearray(b\"x\\'\\x00\\xff\")|bytearray(b\"x\\'\\x00\\xff\")|bytearray(b'')|b'x'|[bytearray(b'y')] m\n"
    );
    let j: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(j["ba"], "bytearray(b\"x\\'\\x00\\xff\")");
    assert_eq!(j["b"], "b'x'");
    assert_eq!(j["nested"], serde_json::json!(["bytearray(b'y')"]));
}

/// `datefmt` flags and widths as glibc 2.36's strftime (what Python's
/// `time.strftime` prints): `-` still pads to a width with spaces, `+` is
/// no flag (copied verbatim), `%z` pads its sign and its number apart, and
/// `%^P` stays lower case. They used to give `Thu`, `5`, `Thu`, `+0100`
/// and `AM` for the first five fields below.
#[test]
fn datefmt_flags_and_widths_follow_glibc() {
    let config = r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
        "outputs": {"t": {"type": "file", "path": "t.log", "format": "%(asctime)s %(message)s",
                          "datefmt": "%-6a|%-3d|%+a|%6z|%^P|%_z|%-6Y|%06a|%-3%"}}}"#;
    let mut relay = Relay::start_in(tempfile::tempdir().unwrap(), config, 1, &[("TZ", "CET")]);
    let port = relay.port("in").to_string();
    python(
        r#"
import logging, logging.handlers, sys
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
h.handle(logging.makeLogRecord({"msg": "m", "created": 1772690889.5}))
h.close()
"#,
        &[&port],
    );
    let text = crate::util::wait_lines(&relay.path("t.log"), 1, Duration::from_secs(20));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        text,
        "   Thu|  5|%+a|     +000100|am|+ 100|  2026|000Thu|  % m\n"
    );
}
