//! The test suite's own prerequisite step (issue 17): on a machine with
//! only Rust and Python, `cargo test` installs the Python packages of
//! tests/tools/requirements.txt itself. Proven here from a fresh virtual
//! environment, which sees no third-party package of the system's Python.

use std::process::Command;
use std::time::Duration;

use crate::decoders::python_package_dir;
use crate::util::*;

/// Sends one record through the `logrelay` package's MsgpackSocketHandler.
const PY_MSGPACK_SEND: &str = r#"
import logging, sys
sys.path.insert(0, sys.argv[1])
from logrelay import MsgpackSocketHandler
h = MsgpackSocketHandler("127.0.0.1", int(sys.argv[2]))
log = logging.getLogger("fresh.venv")
log.propagate = False
log.addHandler(h)
log.warning("packed by %s", "msgpack")
h.close()
"#;

#[test]
fn issue_17_prerequisites_install_into_a_fresh_venv() {
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "python3 -m venv failed (Debian: apt install python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let py = venv.join("bin/python");
    let has_msgpack = |cmd: &mut Command| {
        cmd.args(["-c", "import msgpack"])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        !has_msgpack(&mut Command::new(&py)),
        "a fresh venv has msgpack"
    );

    // Three callers at once, as test threads are: one installs, the
    // others wait for it and reuse its directory.
    let cache = tmp.path().join("cache");
    let envs: Vec<PyEnv> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..3)
            .map(|_| s.spawn(|| install_requirements(&py, &cache)))
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
            .collect()
    });
    let dir = envs[0].path.clone().expect("installed into the cache");
    assert!(dir.starts_with(&cache), "{}", dir.display());
    assert!(envs.iter().all(|e| e.path.as_ref() == Some(&dir)));
    assert!(dir.join(".complete").exists());
    assert!(has_msgpack(&mut envs[0].command()));

    // The msgpack sender the decoder tests use now works from the venv.
    let mut relay = Relay::start(
        r#"{
  "inputs": {"mp": {"type": "tcp", "address": "127.0.0.1:0", "decoder": "msgpack"}},
  "outputs": {"file": {"type": "file", "path": "out/app.log",
                       "format": "%(levelname)s %(name)s %(message)s"}}
}"#,
        1,
    );
    let out = envs[0]
        .command()
        .arg("-c")
        .arg(PY_MSGPACK_SEND)
        .arg(python_package_dir())
        .arg(relay.port("mp").to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = relay.path("out/app.log");
    wait_lines(&path, 1, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "WARNING fresh.venv packed by msgpack\n"
    );
}
