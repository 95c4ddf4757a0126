//! The Prometheus endpoint (docs/decisions.md, "Metrics").

use std::time::Duration;

use crate::util::*;

#[test]
fn metrics_count_received_rejected_and_written() {
    let mut relay = Relay::start(
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"file": {"type": "file", "path": "out/app.log", "format": "%(message)s"}},
            "metrics": {"address": "127.0.0.1:0"}}"#,
        2,
    );
    send_tcp(relay.port("in"), 10, "m");
    // One frame that frames correctly but is not a pickle.
    let mut bad = 5u32.to_be_bytes().to_vec();
    bad.extend_from_slice(b"hello");
    send_raw_tcp(relay.port("in"), &bad);
    wait_lines(&relay.path("out/app.log"), 10, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let addr = relay.addr("metrics");
    let body = http_get(&addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4\r\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlogrelay_records_received_total{input=\"in\"} 10\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlogrelay_records_rejected_total{input=\"in\",reason=\"bad_pickle\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlogrelay_records_written_total{output=\"file\"} 10\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlogrelay_reloads_total{result=\"success\"} 0\n"),
        "{body}"
    );
    let health = http_get(&addr, "/health");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert_eq!(relay.stop().0, 0);
}

/// The raw HTTP/1.1 response to `method path`.
fn http(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// HEAD is answered as GET without a body (it was refused with 405, so a
/// load balancer probing `HEAD /health` saw the listener as down), and a
/// 405 names the allowed methods.
#[test]
fn head_requests_are_answered_and_405_lists_allowed_methods() {
    let mut relay = Relay::start(
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"o": {"type": "file", "path": "o.log"}},
            "metrics": {"address": "127.0.0.1:0"}}"#,
        2,
    );
    let addr = relay.addr("metrics");
    assert_eq!(
        http(&addr, "HEAD", "/health"),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    );
    let head = http(&addr, "HEAD", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    assert!(!head.contains("logrelay_"), "{head}");
    assert_eq!(
        http(&addr, "POST", "/metrics"),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nmethod not allowed\n"
    );
    assert_eq!(relay.stop().0, 0);
}
