//! TLS and shared-secret tokens on inputs that leave the host (issue 16):
//! real Python senders through `ssl`, certificates made by `openssl`,
//! logrelay → logrelay over mutual TLS with a token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A CA, a server certificate for localhost/127.0.0.1, a client
/// certificate from that CA, and a client certificate from another CA.
/// False (the test skips) when openssl is not installed; see
/// [`external_tool`].
#[must_use]
pub(crate) fn make_pki(dir: &Path) -> bool {
    if external_tool("openssl", &["openssl"], "apt-get install openssl").is_none() {
        return false;
    }
    let sh = |script: &str| {
        let out = Command::new("bash")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(r#"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { openssl req -x509 $ec -keyout $1.key -out $1.pem -days 2 -subj "/CN=$1" 2>/dev/null; }
leaf() { # name ca ext
  openssl req $ec -keyout $1.key -out $1.csr -subj "/CN=$1" 2>/dev/null
  printf '%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 -extfile $1.ext 2>/dev/null
}
ca ca; ca otherca
leaf server ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf server2 ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client ca "extendedKeyUsage=clientAuth"
leaf stranger otherca "extendedKeyUsage=clientAuth"
"#);
    true
}

/// Send `n` records "msg <i>" on logger `name` through a SocketHandler
/// whose socket is wrapped in TLS (CA `ca`, optional client cert/key).
/// Prints "ok" or the handshake error.
const PY_TLS_SEND: &str = r#"
import logging, logging.handlers, ssl, sys
port, n, name, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 6:
    ctx.load_cert_chain(sys.argv[5], sys.argv[6])
class TLSSocketHandler(logging.handlers.SocketHandler):
    def makeSocket(self, timeout=1):
        return ctx.wrap_socket(super().makeSocket(timeout), server_hostname="localhost")
# Check the handshake the way the handler will make it, to report it.
try:
    s = TLSSocketHandler("127.0.0.1", port).makeSocket(5)
    s.sendall(b"")
    s.close()
except (OSError, ssl.SSLError) as e:
    print("refused:", e)
    sys.exit(0)
h = TLSSocketHandler("127.0.0.1", port)
log = logging.getLogger(name)
log.propagate = False
log.setLevel(1)
log.addHandler(h)
for i in range(n):
    log.info("msg %d", i)
h.close()
print("ok")
"#;

fn tls_send(port: u16, n: usize, name: &str, dir: &Path, client: Option<&str>) -> String {
    let ca = dir.join("ca.pem");
    let mut args = vec![
        port.to_string(),
        n.to_string(),
        name.to_string(),
        ca.display().to_string(),
    ];
    if let Some(c) = client {
        args.push(dir.join(format!("{c}.pem")).display().to_string());
        args.push(dir.join(format!("{c}.key")).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    String::from_utf8(python(PY_TLS_SEND, &args).stdout).unwrap()
}

/// None when the test skips (no openssl).
fn tls_relay(client_ca: bool) -> Option<(Relay, String)> {
    let dir = tempfile::tempdir().unwrap();
    if !make_pki(dir.path()) {
        return None;
    }
    let mport = free_port();
    let ca = if client_ca {
        r#", "client_ca": "ca.pem""#
    } else {
        ""
    };
    let config = format!(
        r#"{{
  "inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:0",
    "tls": {{"cert": "server.pem", "key": "server.key"{ca}}}}}}},
  "outputs": {{"file": {{"type": "file", "path": "app.log", "format": "%(name)s %(message)s"}}}},
  "metrics": {{"address": "127.0.0.1:{mport}"}}
}}"#
    );
    // The inputs and the metrics endpoint each say "Listening".
    let relay = Relay::start_in(dir, &config, 2, &[]);
    Some((relay, format!("127.0.0.1:{mport}")))
}

#[test]
fn tls_input_serves_tls_senders_and_refuses_plain_ones_without_harm() {
    let Some((relay, metrics)) = tls_relay(false) else {
        return;
    };
    let port = relay.port("app");
    let dir = relay.dir.path().to_path_buf();
    // A sender that never reads its socket and closes right after its
    // last record loses nothing (no session tickets left unread to turn
    // its close into a reset).
    assert_eq!(tls_send(port, 300, "secure", &dir, None).trim(), "ok");
    wait_lines(&relay.path("app.log"), 300, Duration::from_secs(10));
    // A plain SocketHandler on the TLS port: refused, nothing written.
    send_tcp(port, 2, "plain");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(
        &metrics,
        "logrelay_connections_closed_total{input=\"app\",reason=\"tls\"}",
    ) < 1
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and a TLS sender after it is served as before.
    assert_eq!(tls_send(port, 2, "again", &dir, None).trim(), "ok");
    let log = wait_lines(&relay.path("app.log"), 302, Duration::from_secs(5));
    let want: String = (0..300)
        .map(|i| format!("secure msg {i}\n"))
        .chain((0..2).map(|i| format!("again msg {i}\n")))
        .collect();
    assert_eq!(log, want);
    assert!(relay.stderr().contains("TLS handshake with"));
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let Some((relay, metrics)) = tls_relay(true) else {
        return;
    };
    let port = relay.port("app");
    let dir = relay.dir.path().to_path_buf();
    assert_eq!(tls_send(port, 2, "mtls", &dir, Some("client")).trim(), "ok");
    wait_lines(&relay.path("app.log"), 2, Duration::from_secs(5));
    // No certificate, or one from another CA: the handshake fails (TLS 1.3
    // reports it at the client's first read or write).
    let none = tls_send(port, 2, "anon", &dir, None);
    let stranger = tls_send(port, 2, "stranger", &dir, Some("stranger"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = metric(
            &metrics,
            "logrelay_connections_closed_total{input=\"app\",reason=\"tls\"}",
        );
        if refused >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{none} / {stranger} / {refused}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(relay.path("app.log")).unwrap();
    assert_eq!(log, "mtls msg 0\nmtls msg 1\n");
}

/// Holds a TLS connection open, sending one record per line on stdin;
/// prints the serial number of the certificate the server presented.
const PY_TLS_HOLD: &str = r#"
import logging, logging.handlers, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
print(s.getpeercert()["serialNumber"], flush=True)
h = logging.handlers.SocketHandler("127.0.0.1", 9)
for line in sys.stdin:
    rec = logging.LogRecord("held", 20, "/x.py", 1, line.strip(), None, None)
    s.sendall(h.makePickle(rec))
s.close()
"#;

#[test]
fn a_replaced_certificate_serves_new_connections_and_keeps_open_ones() {
    use std::io::{BufRead, BufReader, Write};
    let Some((relay, _)) = tls_relay(false) else {
        return;
    };
    let port = relay.port("app");
    let dir = relay.dir.path().to_path_buf();
    let hold = |dir: &Path| {
        let mut child = Command::new("python3")
            .args(["-c", PY_TLS_HOLD, &port.to_string()])
            .arg(dir.join("ca.pem"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line.trim().to_string())
    };
    let (mut first, serial1) = hold(&dir);
    writeln!(first.stdin.as_mut().unwrap(), "before").unwrap();
    wait_lines(&relay.path("app.log"), 1, Duration::from_secs(5));
    // Replace the certificate as a renewal would: write aside, rename.
    for f in ["pem", "key"] {
        std::fs::copy(
            dir.join(format!("server2.{f}")),
            dir.join(format!("new.{f}")),
        )
        .unwrap();
        std::fs::rename(
            dir.join(format!("new.{f}")),
            dir.join(format!("server.{f}")),
        )
        .unwrap();
    }
    let (mut second, serial2) = hold(&dir);
    assert_ne!(
        serial1, serial2,
        "a new connection gets the new certificate"
    );
    writeln!(first.stdin.as_mut().unwrap(), "after").unwrap();
    writeln!(second.stdin.as_mut().unwrap(), "second").unwrap();
    drop(first.stdin.take());
    drop(second.stdin.take());
    first.wait().unwrap();
    second.wait().unwrap();
    let log = wait_lines(&relay.path("app.log"), 3, Duration::from_secs(5));
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(lines, ["held after", "held before", "held second"]);
    assert!(relay.stderr().contains("TLS certificate files changed"));
}

#[test]
fn forward_over_mutual_tls_with_a_token() {
    let dir_b = tempfile::tempdir().unwrap();
    if !make_pki(dir_b.path()) {
        return;
    }
    std::fs::write(dir_b.path().join("relay.token"), "s3cret-token\n").unwrap();
    let mport = free_port();
    let b_config = format!(
        r#"{{
  "inputs": {{"central": {{"type": "tcp", "address": "127.0.0.1:0", "token_file": "relay.token",
    "tls": {{"cert": "server.pem", "key": "server.key", "client_ca": "ca.pem"}}}}}},
  "outputs": {{"file": {{"type": "file", "path": "central.log", "format": "%(name)s %(message)s"}}}},
  "metrics": {{"address": "127.0.0.1:{mport}"}}
}}"#
    );
    let b = Relay::start_in(dir_b, &b_config, 2, &[]);
    let bport = b.port("central");
    let pki = b.dir.path();
    let a_config = |token: &str| {
        format!(
            r#"{{
  "inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
  "outputs": {{"up": {{"type": "forward", "address": "127.0.0.1:{bport}", "ack": true,
    "token_file": "{token}",
    "tls": {{"ca": "{p}/ca.pem", "cert": "{p}/client.pem", "key": "{p}/client.key", "server_name": "localhost"}}}}}}
}}"#,
            p = pki.display()
        )
    };
    let a = Relay::start(&a_config(&pki.join("relay.token").display().to_string()), 1);
    send_tcp(a.port("app"), 200, "fw");
    let log = wait_lines(&b.path("central.log"), 200, Duration::from_secs(10));
    let want: String = (0..200).map(|i| format!("fw msg {i}\n")).collect();
    assert_eq!(log, want);
    // A sender with the wrong token is refused and delivers nothing.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::write(wrong.path().join("t"), "guess").unwrap();
    let c = Relay::start(&a_config(&wrong.path().join("t").display().to_string()), 1);
    send_tcp(c.port("app"), 5, "intruder");
    c.wait_for_log("token_file", 1, Duration::from_secs(10));
    // A plain SocketHandler with a valid TLS client certificate but no
    // token: refused too.
    let out = tls_send(bport, 2, "notoken", pki, Some("client"));
    assert_eq!(out.trim(), "ok");
    let metrics = format!("127.0.0.1:{mport}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(
        &metrics,
        "logrelay_connections_closed_total{input=\"central\",reason=\"auth\"}",
    ) < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            http_get(&metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(b.path("central.log")).unwrap(),
        want
    );
    let stderr = b.stderr();
    assert!(!stderr.contains("s3cret") && !stderr.contains("guess"));
    assert!(stderr.contains("wrong token"), "{stderr}");
}

#[test]
fn bad_tls_files_and_open_ports_are_reported_by_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let config = r#"{
  "inputs": {
    "lan": {"type": "tcp", "address": "0.0.0.0:0"},
    "tls": {"type": "tcp", "address": "127.0.0.1:0",
            "tls": {"cert": "missing.pem", "key": "junk.pem"}}
  },
  "outputs": {"o": {"type": "stdout"}}
}"#;
    std::fs::write(dir.path().join("listener.json"), config).unwrap();
    let out = logrelay(&["check", "--config", "listener.json"], dir.path());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("listener.json:5:") && err.contains("inputs.tls.tls.cert: cannot read"),
        "{err}"
    );
    assert!(err.contains("missing.pem"), "{err}");
    // Without the TLS input: valid, with a warning about the open port.
    let config = r#"{
  "inputs": {"lan": {"type": "tcp", "address": "0.0.0.0:0"}},
  "outputs": {"o": {"type": "stdout"}}
}"#;
    std::fs::write(dir.path().join("listener.json"), config).unwrap();
    let out = logrelay(&["check", "--config", "listener.json"], dir.path());
    let all =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("inputs.lan.address") && all.contains("no `tls`"),
        "{all}"
    );
}
