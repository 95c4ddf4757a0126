//! `logrelay check` finds what start-up would refuse (issue 17): an
//! address another process holds, an output directory that cannot be
//! created or written, a missing plugin. Each message names the config
//! file, line:column and JSON path of the field responsible, and so do
//! start-up's own errors.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// `FILE:LINE:COL: ` of the first `needle` in the config `text` written to
/// `file` (1-based, columns in characters).
fn at(file: &Path, text: &str, needle: &str) -> String {
    let i = text.find(needle).expect("needle in text");
    let line = text[..i].matches('\n').count() + 1;
    let col = text[..i].rsplit('\n').next().unwrap().chars().count() + 1;
    format!("{}:{line}:{col}: ", file.display())
}

fn check(dir: &Path) -> (i32, String, String) {
    let out = logrelay(&["check", "--config", "listener.json"], dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_17_check_refuses_an_address_another_process_holds() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{{\n  \"inputs\": {{\"app\": {{\"type\": \"tcp\", \"address\": \"127.0.0.1:{port}\"}}}},\n  \
         \"outputs\": {{\"o\": {{\"type\": \"stdout\"}}}}\n}}\n"
    );
    std::fs::write(dir.path().join("listener.json"), &text).unwrap();
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    let prefix = at(Path::new("listener.json"), &text, "\"127.0.0.1:");
    assert!(
        stderr.starts_with(&format!(
            "{prefix}inputs.app.address: TCP 127.0.0.1:{port} is already in use by "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "(pid {}): stop it, or choose another address",
            std::process::id()
        )),
        "{stderr}"
    );

    // Start-up says the same place, and what to do.
    let mut child = Command::new(BIN)
        .args(["--config", "listener.json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(&mut child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or("");
    assert!(
        line.starts_with(&format!(
            "{prefix}inputs.app.address: cannot listen on tcp://127.0.0.1:{port}: "
        )) && line.contains("Address already in use")
            && line.ends_with("another process listens there: stop it, or choose another port (`logrelay check` names the process)"),
        "{stderr}"
    );
    drop(holder);
}

#[test]
fn issue_17_check_warns_when_the_holder_is_this_configs_running_logrelay() {
    let port = free_port();
    let text = format!(
        r#"{{"inputs": {{"app": {{"type": "tcp", "address": "127.0.0.1:{port}"}}}},
"outputs": {{"o": {{"type": "stdout"}}}}}}"#
    );
    let relay = Relay::start(&text, 1);
    let out = logrelay(
        &[
            "check",
            "--config",
            relay.path("listener.json").to_str().unwrap(),
        ],
        relay.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "inputs.app.address: TCP 127.0.0.1:{port} is in use by the running logrelay (pid {}) \
             with this config",
            relay.child.id()
        )),
        "{stdout}"
    );
}

#[test]
fn issue_17_check_refuses_output_paths_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), "a regular file").unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    // root writes anywhere: then the read-only directory cannot be shown.
    let privileged = std::fs::write(locked.join("probe"), "").is_ok();
    let _ = std::fs::remove_file(locked.join("probe"));
    let text = r#"{
  "inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
  "outputs": {
    "proc": {"type": "file", "path": "/proc/x/app.log"},
    "through": {"type": "file", "path": "plain/app.log"},
    "locked": {"type": "file", "path": "locked/sub/app.log"},
    "fine": {"type": "file", "path": "new/dir/app.log"}
  }
}
"#;
    std::fs::write(dir.path().join("listener.json"), text).unwrap();
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    let f = Path::new("listener.json");
    let lines: Vec<&str> = stderr.lines().collect();
    let find = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!(" outputs.{name}.path: ")))
            .map(|l| l.to_string())
            .unwrap_or_else(|| panic!("no error about outputs.{name}:\n{stderr}"))
    };
    let proc_line = find("proc");
    assert!(
        proc_line.starts_with(&format!(
            "{}outputs.proc.path: cannot create /proc/x/app.log: creating a file in /proc fails: ",
            at(f, text, "\"/proc/x")
        )),
        "{proc_line}"
    );
    let through = find("through");
    assert!(
        through.starts_with(&at(f, text, "\"plain/"))
            && through.ends_with("plain is a file, not a directory; choose another path"),
        "{through}"
    );
    if !privileged {
        let l = find("locked");
        assert!(
            l.starts_with(&at(f, text, "\"locked/")) && l.contains("Permission denied"),
            "{l}"
        );
    }
    assert!(!stderr.contains("outputs.fine"), "{stderr}");
    // `check` created nothing.
    assert!(!dir.path().join("new").exists());
}

#[test]
fn issue_17_check_names_a_missing_plugin_file_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{
  "inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
  "filters": {"lvl": {"type": "wasm", "path": "plugins/levle/level.wasm"}},
  "outputs": {"o": {"type": "stdout"}},
  "routes": [{"filters": ["lvl"], "to": ["o"]}]
}
"#;
    std::fs::write(dir.path().join("listener.json"), text).unwrap();
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}filters.lvl.path: cannot read plugins/levle/level.wasm: No such file or directory \
             (os error 2); no file at plugins/levle/level.wasm: fix `path`",
            at(Path::new("listener.json"), text, "\"plugins/")
        )),
        "{stderr}"
    );
}

#[test]
fn issue_17_reload_errors_name_the_field() {
    let relay = Relay::start(
        r#"{"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
"outputs": {"o": {"type": "stdout"}}}"#,
        1,
    );
    // Valid as a config; the file cannot be opened, so the reload fails.
    let text = r#"{"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:0"}},
"outputs": {"o": {"type": "stdout"},
            "bad": {"type": "file", "path": "/proc/x/app.log"}}}"#;
    let config = relay.path("listener.json");
    std::fs::write(&config, text).unwrap();
    relay.wait_for_log("Reload rejected", 1, Duration::from_secs(10));
    let stderr = relay.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("Reload rejected"))
        .unwrap();
    assert!(
        line.contains(&format!(
            "Reload rejected, the running pipeline goes on unchanged: {}outputs.bad.path: cannot open /proc/x/app.log: ",
            at(&config, text, "\"/proc/x")
        )),
        "{stderr}"
    );
}

#[test]
fn issue_17_check_refuses_a_unix_socket_path_start_up_would() {
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held.sock");
    let _holder = std::os::unix::net::UnixListener::bind(&held).unwrap();
    std::fs::write(dir.path().join("plain.sock"), "not a socket").unwrap();
    let text = r#"{
  "inputs": {"held": {"type": "unix", "path": "held.sock"},
             "plain": {"type": "unix", "path": "plain.sock"}},
  "outputs": {"o": {"type": "stdout"}}
}
"#;
    std::fs::write(dir.path().join("listener.json"), text).unwrap();
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    let f = Path::new("listener.json");
    assert_eq!(stderr.lines().count(), 2, "one line per problem: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{}inputs.held.path: the socket held.sock is already in use by ",
            at(f, text, "\"held.sock")
        )) && stderr.contains(&format!("(pid {}): stop it", std::process::id())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}inputs.plain.path: plain.sock exists and is not a socket; start-up will not \
             replace it: remove it or choose another path",
            at(f, text, "\"plain.sock")
        )),
        "{stderr}"
    );
}
