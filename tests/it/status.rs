//! Issue 21: the status page (in a real headless Chromium), `logrelay tap`,
//! `logrelay test`, `logrelay schema`, and the admin token.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const CONFIG: &str = r#"{
  "inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
  "outputs": {"file": {"type": "file", "path": "out/app.log", "max_bytes": 200000, "backup_count": 2},
              "payments": {"type": "file", "path": "out/payments.log"}},
  "routes": [{"to": ["file"]},
             {"loggers": ["payments"], "min_level": "WARNING", "to": ["payments"]}],
  "metrics": {"address": "127.0.0.1:0"}
}"#;

/// The raw response to `GET path` with extra header lines.
fn get(addr: &str, path: &str, headers: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The status page, driven in headless Chromium by tests/tools/page_check.py
/// with real SocketHandler senders. The screenshot goes to a temp dir, or
/// to docs/status-page.png (shown in docs/operations.md) with
/// LOGRELAY_UPDATE_SCREENSHOT=1.
#[test]
fn status_page_in_headless_chromium() {
    // The same candidates as page_check.py's find_chromium.
    let env = std::env::var("CHROMIUM").unwrap_or_default();
    let mut names = vec![
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    if !env.is_empty() {
        names = vec![env.as_str()];
    }
    let Some(chromium) = external_tool("chromium", &names, "apt-get install chromium") else {
        return;
    };
    let mut relay = Relay::start(CONFIG, 2);
    let page = format!("http://{}/", relay.addr("metrics"));
    let tcp = format!("127.0.0.1:{}", relay.port("app"));
    let shot = if std::env::var_os("LOGRELAY_UPDATE_SCREENSHOT").is_some() {
        root().join("docs/status-page.png")
    } else {
        relay.path("status-page.png")
    };
    let out = Command::new("python3")
        .env("CHROMIUM", &chromium)
        .arg(tool("page_check.py"))
        .args(["check", "--page", &page, "--tcp", &tcp, "--screenshot"])
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        // Installed but would not start: a broken install is a failure.
        panic!(
            "Chromium ({}) would not start: {stderr}\n\
             (reinstall it with: apt-get update && apt-get install -y chromium)",
            chromium.display()
        );
    }
    assert!(
        out.status.success(),
        "page check failed:\n{stdout}\n{stderr}\nlogrelay:\n{}",
        relay.stderr()
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    assert_eq!(relay.stop().0, 0);
}

#[test]
fn the_page_is_small_and_self_contained() {
    let mut relay = Relay::start(CONFIG, 2);
    let addr = relay.addr("metrics");
    let page = get(&addr, "/", "");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    let body = &page[page.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.len() < 100 * 1024, "the page is {} bytes", body.len());
    // No CDN, no absolute URL: everything it loads is relative.
    for bad in ["http://", "https://", "src=\"/", "href=\"/", "\"/api/"] {
        assert!(!body.contains(bad), "the page refers to {bad}");
    }
    let status = get(&addr, "/api/status", "");
    let json: serde_json::Value =
        serde_json::from_str(&status[status.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(json["inputs"][0]["name"], "app");
    assert_eq!(json["outputs"].as_array().unwrap().len(), 2);
    assert_eq!(json["routes"].as_array().unwrap().len(), 2);
    assert_eq!(relay.stop().0, 0);
}

/// Seconds since the Unix epoch, as Python's `time.time()`.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Wait until the relay's status says someone watches the tail.
fn wait_for_watcher(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = get(addr, "/api/status", "");
        if s.contains("\"tail_watchers\":1") {
            return;
        }
        assert!(Instant::now() < deadline, "tap never connected: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tap_prints_a_record_within_a_second() {
    let mut relay = Relay::start(CONFIG, 2);
    let addr = relay.addr("metrics");
    let mut tap = Command::new(BIN)
        .args(["tap", "--metrics-address", &addr, "--logger", "payments"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_watcher(&addr);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = tap.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((now(), line)).is_err() {
                break;
            }
        }
    });
    let port = relay.port("app").to_string();
    // A sender that logs one record of another logger, then the payments
    // one, and prints when SocketHandler had written the latter.
    let script = r#"
import logging, logging.handlers, sys, time
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
log = logging.getLogger(); log.addHandler(h); log.setLevel(logging.DEBUG)
logging.getLogger("web").info("not for tap")
logging.getLogger("payments.api").warning("card declined for order %d", 42)
print(time.time())
h.close()
"#;
    let out = python(script, &[&port]);
    assert!(out.status.success(), "{out:?}");
    let sent: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let (when, line) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("tap printed nothing");
    assert!(
        line.ends_with("WARNING  payments.api card declined for order 42"),
        "{line}"
    );
    let took = when - sent;
    assert!(
        took < 1.0,
        "tap printed the record {took:.3} s after it was sent"
    );
    // Only the payments record: the `web` one was filtered out.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    tap.kill().unwrap();
    tap.wait().unwrap();

    // --json prints the record's fields.
    let mut tap = Command::new(BIN)
        .args([
            "tap",
            "--metrics-address",
            &addr,
            "--json",
            "--level",
            "ERROR",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_watcher(&addr);
    send_tcp(relay.port("app"), 1, "payments");
    let script = r#"
import logging, logging.handlers, sys
h = logging.handlers.SocketHandler("127.0.0.1", int(sys.argv[1]))
log = logging.getLogger("db"); log.addHandler(h)
log.error("disk full")
h.close()
"#;
    assert!(python(script, &[&port]).status.success());
    let mut line = String::new();
    BufReader::new(tap.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["msg"], "disk full");
    assert_eq!(v["levelname"], "ERROR");
    tap.kill().unwrap();
    tap.wait().unwrap();
    assert_eq!(relay.stop().0, 0);
}

#[test]
fn tap_without_a_metrics_address_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("listener.json"),
        r#"{"inputs": {"a": {"type": "tcp", "address": "127.0.0.1:0"}}, "outputs": {"o": {"type": "stdout"}}}"#,
    )
    .unwrap();
    let out = logrelay(&["tap"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--metrics-address"), "{err}");
}

#[test]
fn test_command_passes_the_example_and_diffs_a_failure() {
    let root = root();
    let out = logrelay(
        &[
            "test",
            "--config",
            "config/listener.json",
            "config/tests/listener.cases.json",
        ],
        &root,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 cases: 3 passed, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("listener.json"),
        r#"{"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:9020"}},
            "outputs": {"all": {"type": "file", "path": "out/all.log", "format": "%(levelname)s %(name)s %(message)s"},
                        "errors": {"type": "file", "path": "out/errors.log", "format": "%(levelname)s %(message)s"}},
            "routes": [{"to": ["all"]}, {"min_level": "ERROR", "to": ["errors"]}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cases.json"),
        r#"{"cases": [
            {"name": "errors reach both", "records": [{"name": "db", "levelname": "ERROR", "levelno": 40, "msg": "disk full"}],
             "expect": {"all": ["ERROR db disk full"], "errors": ["ERROR disk full"]}},
            {"name": "a warning is not an error", "records": [{"name": "db", "levelname": "WARNING", "levelno": 30, "msg": "disk 90%"}],
             "expect": {"all": [{"contains": "disk 90%"}], "errors": ["WARNING disk 90%"]}}
        ]}"#,
    )
    .unwrap();
    let out = logrelay(&["test", "cases.json"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   errors reach both"), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL a warning is not an error\n  output errors: expected 1 line, got 0\n    - WARNING disk 90%\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("2 cases: 1 passed, 1 failed"), "{stdout}");
    assert!(!dir.path().join("out").exists(), "test wrote files");

    // A malformed cases file is a readable error, exit 1.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"cases": [{"records": [], "expect": {"nope": []}}]}"#,
    )
    .unwrap();
    let out = logrelay(&["test", "bad.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cases[0]: expect: output \"nope\" is not in the config"),
        "{err}"
    );
}

#[test]
fn schema_is_printed_and_holds_every_example_config() {
    let root = root();
    let out = logrelay(&["schema"], &root);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let mut n = 0;
    let mut paths = Vec::new();
    for dir in [
        "config",
        "examples/scale-out",
        "examples/supervisor",
        "examples/systemd",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            paths.push(entry.unwrap().path());
        }
    }
    for path in paths {
        // Listener configs (webapp.json is the application's dictConfig).
        if path.extension().is_none_or(|e| e != "json") || path.ends_with("webapp.json") {
            continue;
        }
        // The scale-out templates' placeholders, as run_scenario.sh fills them.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("@SERVERS@", r#"["nats://127.0.0.1:4222"]"#)
            .replace("@PORT@", "9020")
            .replace("@METRICS@", "9100")
            .replace("@ACK_WAIT_MS@", "30000");
        let doc: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let errors = logrelay::config::schema::validate(&schema, &doc);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        n += 1;
    }
    assert!(n >= 6, "only {n} configs");
    // A config that names the schema is still accepted by the loader.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("listener.json"),
        r#"{"$schema": "./listener.schema.json",
            "inputs": {"a": {"type": "tcp", "address": "127.0.0.1:0"}}, "outputs": {"o": {"type": "stdout"}}}"#,
    )
    .unwrap();
    let out = logrelay(&["check"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn admin_off_loopback_needs_a_token_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = |metrics: &str| {
        format!(
            r#"{{"inputs": {{"a": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
                "outputs": {{"o": {{"type": "file", "path": "out/o.log"}}}},
                "metrics": {metrics}}}"#
        )
    };
    std::fs::write(
        dir.path().join("listener.json"),
        config(r#"{"address": "0.0.0.0:0"}"#),
    )
    .unwrap();
    let out = logrelay(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.address") && err.contains("token_file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "s3cret-token\n").unwrap();
    let mut relay = Relay::start_in(
        dir,
        &config(r#"{"address": "0.0.0.0:0", "token_file": "admin.token"}"#),
        2,
        &[],
    );
    let port = relay
        .addr("metrics")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let addr = format!("127.0.0.1:{port}");
    for path in ["/", "/metrics", "/api/status", "/api/tail", "/api/events"] {
        let r = get(&addr, path, "");
        assert!(
            r.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{path}: {r}"
        );
        let r = get(&addr, &format!("{path}?token=wrong"), "");
        assert!(r.starts_with("HTTP/1.1 401 "), "{path}: {r}");
        let r = get(&addr, path, "Authorization: Bearer s3cret-tokeN\r\n");
        assert!(r.starts_with("HTTP/1.1 401 "), "{path}: {r}");
    }
    let r = get(&addr, "/metrics", "Authorization: Bearer s3cret-token\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let r = get(&addr, "/?token=s3cret-token", "");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let r = get(&addr, "/api/status?token=s3cret-token", "");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    // Load balancers probe /health without credentials.
    let r = get(&addr, "/health", "");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(relay.stop().0, 0);
}
