//! The command line: --version, --help, check, config errors.

use crate::util::*;

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = logrelay(&["--version"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("logrelay {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = logrelay(&["--help"], dir.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config <PATH>"), "{help}");
    assert!(help.contains("check"), "{help}");
}

#[test]
fn missing_explicit_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = logrelay(&["--config", "nope.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("nope.json: No such file or directory"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_on_embedded_default_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = logrelay(&["check"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `check` binds 127.0.0.1:9020: a listener someone runs on this
    // machine makes that an error naming it, as start-up would fail.
    if !out.status.success() {
        assert!(
            stderr.starts_with("(embedded default): inputs.default.address: TCP 127.0.0.1:9020 is already in use by "),
            "{stderr}"
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:9020"), "{text}");
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        "{\n  \"inputs\": {\n    \"a\": {\"type\": \"tcp\",, }\n  }\n}\n",
    )
    .unwrap();
    for args in [
        &["check", "--config", "bad.json"][..],
        &["--config", "bad.json"][..],
    ] {
        let out = logrelay(args, dir.path());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("bad.json:3:"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn example_configs_all_check() {
    let dir = root().join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let out = logrelay(&["check", "--config", path.to_str().unwrap()], &dir);
            // `check` binds each address: one that something else on this
            // machine holds (another test using the shipped forwarding
            // pair) is the machine, not the config.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success()
                    || stderr.lines().all(|l| l.contains(" is already in use by ")),
                "{}: {stderr}",
                path.display(),
            );
            n += 1;
        }
    }
    assert!(n >= 3, "config/ holds example configs");
}

/// Python's TimedRotatingFileHandler ignores `atTime` unless `when` is
/// midnight or a weekday, so a cookbook file with `"when": "H"` and an
/// `atTime` works in the cookbook listener and must work here; the native
/// `at_time` keeps its error.
#[test]
fn dictconfig_at_time_is_ignored_for_hourly_rotation_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("listener.json"),
        r#"{"logging": {"version": 1,
  "handlers": {"f": {"class": "logging.handlers.TimedRotatingFileHandler",
                     "filename": "app.log", "when": "H", "atTime": "01:30"}},
  "root": {"handlers": ["f"]}}}"#,
    )
    .unwrap();
    let out = logrelay(&["check"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.path().join("native.json"),
        r#"{"port": 0, "outputs": {"f": {"type": "file", "path": "app.log", "when": "H", "at_time": "01:30"}}}"#,
    )
    .unwrap();
    let out = logrelay(&["check", "--config", "native.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "native.json:1:90: outputs.f.at_time: only applies to `when` midnight or W0..W6\n"
    );
}

/// `--log-level WARNING` (Python's spelling) shows warnings; it used to be
/// read by tracing as a target name and silence every diagnostic. A word
/// that names no level is an error, not silence.
/// The first line logrelay writes to stderr when run on `l.json` in
/// `dir` with `args` and `env` (empty if none within 20 s).
fn first_stderr_line(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> String {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .args(["--config", "l.json"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let first = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr).lines().next()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !first.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    first
        .join()
        .unwrap()
        .and_then(Result::ok)
        .unwrap_or_default()
}

#[test]
fn log_level_takes_python_names_and_refuses_unknown_words() {
    let dir = tempfile::tempdir().unwrap();
    // Two routes that overlap: a WARN line at start-up, then INFO ones.
    std::fs::write(
        dir.path().join("l.json"),
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"o": {"type": "file", "path": "o.log"}},
            "routes": [{"to": ["o"]}, {"loggers": ["a"], "to": ["o"]}]}"#,
    )
    .unwrap();
    let line = first_stderr_line(&["--log-level", "WARNING"], &[], dir.path());
    assert!(
        line.contains("WARN") && line.contains("written twice"),
        "{line:?}"
    );
    // RUST_LOG takes the same names; an unknown word is reported and
    // replaced by info instead of silencing everything.
    let line = first_stderr_line(&[], &[("RUST_LOG", "WARNING")], dir.path());
    assert!(
        line.contains("WARN") && line.contains("written twice"),
        "{line:?}"
    );
    let line = first_stderr_line(&[], &[("RUST_LOG", "verbose")], dir.path());
    assert!(
        line.starts_with("ignoring RUST_LOG=\"verbose\": unknown level"),
        "{line:?}"
    );

    let out = logrelay(&["--log-level", "verbose", "check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("invalid --log-level: unknown level \"verbose\""),
        "{err}"
    );
}

/// Two file outputs on one path, one of them rotating: each has its own
/// writer, so `check` (and start-up) warn. Nothing said so before. Two
/// plain appenders on one file (as two Python FileHandlers) do not warn.
#[test]
fn check_warns_about_two_outputs_rotating_one_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("l.json"),
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
"outputs": {"o": {"type": "file", "path": "x.log"},
            "p": {"type": "file", "path": "./x.log", "max_bytes": 100, "backup_count": 2},
            "q": {"type": "file", "path": "y.log"}},
"logging": {"version": 1, "root": {"handlers": ["h"]},
            "handlers": {"h": {"class": "logging.FileHandler", "filename": "y.log"}}}}"#,
    )
    .unwrap();
    let out = logrelay(&["check", "--config", "l.json"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "warnings:")
        .skip(1)
        .collect();
    assert_eq!(
        warnings,
        [
            "  l.json:3:18: outputs.p: writes the same file as `outputs.o` (./x.log) and one of \
          them rotates or truncates it: lines can land in the rotated file; give each output \
          its own file"
        ],
        "{text}"
    );
}
