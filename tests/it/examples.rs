//! The example configs that run as is on one machine (config/README.md),
//! started exactly as shipped.

use std::time::{Duration, Instant};

use crate::util::*;

/// Wait until nothing listens on these loopback TCP ports (another test
/// run on this machine may be using the shipped pair).
fn wait_free(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ports
        .iter()
        .any(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
    {
        assert!(Instant::now() < deadline, "ports {ports:?} stay in use");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn issue_17_forward_pair_runs_as_shipped() {
    let shipped = |name: &str| std::fs::read_to_string(root().join("config").join(name)).unwrap();
    wait_free(&[9030, 9031]);
    let dir_b = tempfile::tempdir().unwrap();
    let mut b = Relay::start_in(dir_b, &shipped("forward-b.json"), 1, &[]);
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = Relay::start_in(dir_a, &shipped("forward-a.json"), 1, &[]);
    assert_eq!(a.port("app"), 9030);
    // A real SocketHandler, as the README's Python snippet.
    send_tcp(9030, 3, "demo");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = String::from_utf8_lossy(&b.stdout.lock().unwrap()).into_owned();
        if text.lines().count() >= 3 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(a.stop().0, 0);
    assert_eq!(b.stop().0, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.ends_with(&format!(" INFO     demo msg {i} (forwarded by A)")),
            "{text}"
        );
    }
}
