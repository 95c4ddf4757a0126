//! The file output for production (issue 4): rotation checked against
//! Python's own RotatingFileHandler / TimedRotatingFileHandler fed the same
//! lines (the oracle), gzip, reopening after logrotate, and no record lost
//! or doubled across many rotations under concurrent senders.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

/// Every file in `dir` (recursively), by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn show(m: &BTreeMap<String, Vec<u8>>) -> String {
    m.iter()
        .map(|(k, v)| format!("--- {k}\n{}", String::from_utf8_lossy(v)))
        .collect()
}

/// Sends lines through a SocketHandler to logrelay and, at the same
/// moment, through RotatingFileHandlers in the oracle directory:
/// argv: port, oracle dir, then `dir:max_bytes:backup_count` specs.
const PY_SIZE_ORACLE: &str = r#"
import logging, logging.handlers, os, sys
port, oracle = int(sys.argv[1]), sys.argv[2]
log = logging.getLogger("rot")
log.propagate = False
log.setLevel(1)
log.addHandler(logging.handlers.SocketHandler("127.0.0.1", port))
for spec in sys.argv[3:]:
    d, mb, bc = spec.split(":")
    h = logging.handlers.RotatingFileHandler(
        os.path.join(oracle, d, "app.log"), maxBytes=int(mb), backupCount=int(bc),
        encoding="utf-8")
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
for i in range(120):
    # Lengths that land on, just under and just over the limit; non-ASCII
    # text where characters and bytes differ.
    unit = "é€" if i % 3 == 0 else "ab"
    log.info("line %d %s", i, unit * ((i * 37) % 45))
    if i in (7, 50):
        log.info("%s", "L" * 250)  # alone longer than max_bytes
        log.info("%s", "x" * 199)  # exactly max_bytes with its newline
"#;

#[test]
fn issue_4_size_rotation_matches_rotating_file_handler() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = tempfile::tempdir().unwrap();
    // (dir, max_bytes, backup_count, compress)
    let specs = [
        ("a", 200, 3, false),
        ("zero_max", 0, 3, false),
        ("zero_backups", 200, 0, false),
        ("many", 120, 50, false),
        ("gz", 200, 3, true),
    ];
    let seed = "s".repeat(149) + "\n";
    let mut outputs = Vec::new();
    for (d, mb, bc, gz) in specs {
        // Both start from the same non-empty file: Python's first tell().
        for root in [dir.path(), oracle.path()] {
            std::fs::create_dir_all(root.join("out").join(d)).unwrap();
            std::fs::write(root.join("out").join(d).join("app.log"), &seed).unwrap();
        }
        let compress = if gz { r#", "compress": "gzip""# } else { "" };
        outputs.push(format!(
            r#""{d}": {{"type": "file", "path": "out/{d}/app.log", "format": "%(message)s",
                 "max_bytes": {mb}, "backup_count": {bc}{compress}}}"#
        ));
    }
    let config = format!(
        r#"{{"inputs": {{"in": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
            "outputs": {{ {} }} }}"#,
        outputs.join(",\n")
    );
    let mut relay = Relay::start_in(dir, &config, 1, &[]);
    let port = relay.port("in").to_string();
    let oracle_out = oracle.path().join("out");
    let mut args = vec![port.as_str(), oracle_out.to_str().unwrap()];
    let spec_args: Vec<String> = specs
        .iter()
        .map(|(d, mb, bc, _)| format!("{d}:{mb}:{bc}"))
        .collect();
    args.extend(spec_args.iter().map(String::as_str));
    python(PY_SIZE_ORACLE, &args);
    assert_eq!(relay.stop().0, 0);

    let ours = files(&relay.path("out"));
    let want = files(&oracle_out);
    let plain = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        m.iter()
            .filter(|(k, _)| !k.starts_with("gz/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(show(&plain(&ours)), show(&plain(&want)));
    // Sanity: the oracle did rotate, and the edge cases did not.
    assert!(want.contains_key("a/app.log.3"));
    assert!(want.contains_key("many/app.log.40"));
    assert_eq!(
        want.keys().filter(|k| k.starts_with("zero_max/")).count(),
        1
    );
    assert_eq!(
        want.keys()
            .filter(|k| k.starts_with("zero_backups/"))
            .count(),
        1
    );
    // gzip: the same set of files, `.N.gz`, decompressing to Python's `.N`.
    let gz: BTreeMap<String, Vec<u8>> = ours
        .iter()
        .filter(|(k, _)| k.starts_with("gz/"))
        .map(|(k, v)| match k.strip_suffix(".gz") {
            Some(k) => (k.to_string(), gunzip(v)),
            None => (k.clone(), v.clone()),
        })
        .collect();
    let want_gz: BTreeMap<String, Vec<u8>> = want
        .into_iter()
        .filter(|(k, _)| k.starts_with("gz/"))
        .collect();
    assert_eq!(show(&gz), show(&want_gz));
    assert!(ours.contains_key("gz/app.log.3.gz"), "{:?}", ours.keys());
    assert!(!ours
        .keys()
        .any(|k| k.ends_with(".tmp") || k.contains("pending")));
}

#[test]
fn issue_4_hundred_rotations_four_senders_nothing_lost_or_doubled() {
    let max_bytes: usize = 40_000;
    let mut relay = Relay::start(
        &format!(
            r#"{{"inputs": {{"in": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
                "outputs": {{"file": {{"type": "file", "path": "out/app.log",
                  "format": "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s",
                  "max_bytes": {max_bytes}, "backup_count": 1000}}}}}}"#
        ),
        1,
    );
    let port = relay.port("in");
    let (ok, report, err) = run_tool(
        "loadgen.py",
        &[
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--records",
            "24000",
            "--procs",
            "4",
            "--mode",
            "handler",
            "--run-id",
            "rot4",
            "--exc-fraction",
            "0.01",
        ],
    );
    assert!(ok, "loadgen failed: {err}");
    assert_eq!(report["dropped"].as_u64().unwrap_or(0), 0, "{report}");
    assert_eq!(relay.stop().0, 0);
    let glob = relay.path("out/app.log*");
    let (ok, report, err) = run_tool(
        "verify.py",
        &[
            glob.to_str().unwrap(),
            "--run-id",
            "rot4",
            "--procs",
            "4",
            "--records",
            "24000",
            "--check-format",
            "cookbook",
        ],
    );
    assert!(ok, "verify failed: {report}\n{err}");
    assert_eq!(report["found"], 24000);
    assert_eq!(report["missing"], 0);
    assert_eq!(report["duplicated"], 0);
    assert_eq!(report["corrupt"], 0);

    // The files are app.log, app.log.1 .. app.log.N with no gap, N >= 100,
    // and each rotation happened exactly where Python's would: a rotated
    // file stays under max_bytes, and with the first line of the next
    // file it would have reached it.
    let all = files(&relay.path("out"));
    let n = all.len() - 1;
    assert!(n >= 100, "only {n} rotations");
    let mut expect: Vec<String> = (1..=n).map(|i| format!("app.log.{i}")).collect();
    expect.push("app.log".to_string());
    let mut names: Vec<String> = all.keys().cloned().collect();
    names.sort();
    expect.sort();
    assert_eq!(names, expect);
    let chars = |b: &[u8]| String::from_utf8_lossy(b).chars().count();
    // Where each record of a file starts: a traceback (exc_text)
    // continues a record on lines that do not start with a date.
    let starts = |file: &[u8]| -> Vec<usize> {
        let mut at = 0;
        let mut starts = Vec::new();
        for line in file.split_inclusive(|&b| b == b'\n') {
            if at == 0 || (line.len() > 4 && line[..4].iter().all(u8::is_ascii_digit)) {
                starts.push(at);
            }
            at += line.len();
        }
        starts
    };
    for i in (1..=n).rev() {
        let older = &all[&format!("app.log.{i}")];
        let newer_name = if i == 1 {
            "app.log".to_string()
        } else {
            format!("app.log.{}", i - 1)
        };
        let newer = &all[&newer_name];
        let first = &newer[..starts(newer).get(1).copied().unwrap_or(newer.len())];
        // The last record of the older file went in because the file's
        // size before it plus its length in characters (Python's
        // `len(msg)`) stayed under max_bytes. A record with multi-byte
        // characters can therefore end a file at or past max_bytes in
        // bytes, as Python's would.
        let last_start = starts(older).last().copied().unwrap_or(0);
        let last = &older[last_start..];
        assert!(
            last_start + chars(last) < max_bytes,
            "app.log.{i}: {} bytes before its last record of {} characters",
            last_start,
            chars(last)
        );
        assert!(
            older.len() + chars(first) >= max_bytes,
            "app.log.{i} rotated early: {} + {}",
            older.len(),
            chars(first)
        );
    }
}

/// Like PY_SIZE_ORACLE for TimedRotatingFileHandler(when="S"): argv:
/// port, oracle dir, mtime to give the oracle files before the handlers
/// open them, second offsets of the records, then `dir:backup_count` specs.
/// Records go out 0.3 s into their second, so logrelay (a few ms later)
/// sees the same second as Python.
const PY_TIMED_ORACLE: &str = r#"
import logging, logging.handlers, os, sys, time
port, oracle, mtime = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
offsets = [int(x) for x in sys.argv[4].split(",")]
log = logging.getLogger("timed")
log.propagate = False
log.setLevel(1)
sh = logging.handlers.SocketHandler("127.0.0.1", port)
sh.sock = sh.makeSocket()
log.addHandler(sh)
for spec in sys.argv[5:]:
    d, bc = spec.split(":")
    path = os.path.join(oracle, d, "app.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "a").close()
    os.utime(path, (mtime, mtime))
    h = logging.handlers.TimedRotatingFileHandler(path, when="S", interval=1,
                                                  backupCount=int(bc))
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
s0 = int(time.time()) + 1
for i, off in enumerate(offsets):
    target = s0 + off + 0.3
    time.sleep(max(0.0, target - time.time()))
    log.info("record %d at +%d", i, off)
"#;

#[test]
fn issue_4_timed_rotation_matches_timed_rotating_file_handler() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The files exist, last written 5 s ago: both schedules start there.
    let mtime = now - 5;
    // `gz2` is `keep2` with gzip: compared with the same oracle files.
    let specs = [("keep_all", 0, ""), ("keep2", 2, ""), ("gz2", 2, "gzip")];
    let mut outputs = Vec::new();
    for (d, bc, compress) in specs {
        let p = dir.path().join("out").join(d).join("app.log");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .unwrap();
        outputs.push(format!(
            r#""{d}": {{"type": "file", "path": "out/{d}/app.log", "format": "%(message)s",
                 "when": "S", "backup_count": {bc}{}}}"#,
            if compress.is_empty() {
                String::new()
            } else {
                format!(r#", "compress": "{compress}""#)
            }
        ));
    }
    let config = format!(
        r#"{{"inputs": {{"in": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
            "outputs": {{ {} }} }}"#,
        outputs.join(",\n")
    );
    let mut relay = Relay::start_in(dir, &config, 1, &[]);
    let port = relay.port("in").to_string();
    let oracle_out = oracle.path().join("out");
    let mtime = mtime.to_string();
    python(
        PY_TIMED_ORACLE,
        &[
            &port,
            oracle_out.to_str().unwrap(),
            &mtime,
            "0,0,1,3,3,4,6",
            "keep_all:0",
            "keep2:2",
        ],
    );
    assert_eq!(relay.stop().0, 0);
    let mut ours = files(&relay.path("out"));
    let want = files(&oracle_out);
    let gz: BTreeMap<String, Vec<u8>> = ours
        .iter()
        .filter(|(k, _)| k.starts_with("gz2/"))
        .map(|(k, v)| {
            let k = k.replacen("gz2/", "keep2/", 1);
            match k.strip_suffix(".gz") {
                Some(k) => (k.to_string(), gunzip(v)),
                None => (k, v.clone()),
            }
        })
        .collect();
    let want_keep2: BTreeMap<String, Vec<u8>> = want
        .iter()
        .filter(|(k, _)| k.starts_with("keep2/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(show(&gz), show(&want_keep2));
    assert!(ours
        .keys()
        .filter(|k| k.starts_with("gz2/app.log."))
        .all(|k| k.ends_with(".gz")));
    ours.retain(|k, _| !k.starts_with("gz2/"));
    assert_eq!(show(&ours), show(&want));
    // keep_all: the file from before start-up, named by its mtime, plus
    // one per second that had records before a later one.
    assert_eq!(
        want.keys().filter(|k| k.starts_with("keep_all/")).count(),
        6,
        "{:?}",
        want.keys()
    );
    assert_eq!(
        want.keys().filter(|k| k.starts_with("keep2/")).count(),
        3,
        "{:?}",
        want.keys()
    );
    let suffix = |k: &str| k.rsplit_once("app.log.").map(|(_, s)| s.to_string());
    for s in ours.keys().filter_map(|k| suffix(k)) {
        let s = s.trim_end_matches(".gz");
        // %Y-%m-%d_%H-%M-%S
        assert_eq!(s.len(), 19, "{s}");
        assert!(s
            .bytes()
            .zip("dddd-dd-dd_dd-dd-dd".bytes())
            .all(|(c, p)| if p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }));
    }
}

fn reopen_config() -> &'static str {
    r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
        "outputs": {"file": {"type": "file", "path": "out/app.log",
                             "format": "%(name)s %(message)s"}}}"#
}

fn lines(logger: &str, n: usize) -> String {
    (0..n).map(|i| format!("{logger} msg {i}\n")).collect()
}

#[test]
fn issue_4_logrotate_move_then_sighup_reopens() {
    let mut relay = Relay::start(reopen_config(), 1);
    let port = relay.port("in");
    let path = relay.path("out/app.log");
    send_tcp(port, 100, "before");
    wait_lines(&path, 100, Duration::from_secs(10));
    std::fs::rename(&path, relay.path("out/app.log.1")).unwrap();
    relay.signal("HUP");
    relay.wait_for_log("Reopened.", 1, Duration::from_secs(10));
    send_tcp(port, 50, "after");
    wait_lines(&path, 50, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(relay.path("out/app.log.1")).unwrap(),
        lines("before", 100)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines("after", 50));
}

#[test]
fn issue_4_moved_or_removed_file_is_reopened_without_a_signal() {
    let mut relay = Relay::start(reopen_config(), 1);
    let port = relay.port("in");
    let path = relay.path("out/app.log");
    send_tcp(port, 10, "one");
    wait_lines(&path, 10, Duration::from_secs(10));
    // Moved away (vector#24349): noticed within about a second.
    std::fs::rename(&path, relay.path("out/moved.log")).unwrap();
    relay.wait_for_log("moved or removed; reopened", 1, Duration::from_secs(5));
    assert!(path.exists(), "recreated");
    send_tcp(port, 20, "two");
    wait_lines(&path, 20, Duration::from_secs(10));
    // Removed.
    std::fs::remove_file(&path).unwrap();
    relay.wait_for_log("moved or removed; reopened", 2, Duration::from_secs(5));
    send_tcp(port, 30, "three");
    wait_lines(&path, 30, Duration::from_secs(10));
    assert_eq!(relay.stop().0, 0);
    assert_eq!(
        std::fs::read_to_string(relay.path("out/moved.log")).unwrap(),
        lines("one", 10)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines("three", 30));
}

#[test]
fn issue_4_a_failing_file_is_retried_and_other_outputs_keep_going() {
    // /dev/full fails every write with ENOSPC, like a full disk.
    let mut relay = Relay::start(
        r#"{"inputs": {"in": {"type": "tcp", "address": "127.0.0.1:0"}},
            "outputs": {"good": {"type": "file", "path": "out/app.log", "format": "%(name)s %(message)s"},
                        "full": {"type": "file", "path": "/dev/full", "format": "%(message)s"}}}"#,
        1,
    );
    let port = relay.port("in");
    send_tcp(port, 100, "good");
    let path = relay.path("out/app.log");
    wait_lines(&path, 100, Duration::from_secs(10));
    relay.wait_for_log("Write failed; retrying.", 2, Duration::from_secs(10));
    // Shutdown is not held hostage by a disk that stays full: the lines
    // are retried for a bounded time, then reported lost.
    let (code, err, _) = relay.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let lost: usize = err
        .lines()
        .filter(|l| l.contains("unwritten lines are lost"))
        .filter_map(|l| l.rsplit_once("lines=")?.1.trim().parse::<usize>().ok())
        .sum();
    assert_eq!(lost, 100, "every line is accounted for: {err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines("good", 100));
    assert!(
        Path::new("/dev/full.1").symlink_metadata().is_err(),
        "no rollover of a device"
    );
}

/// Logs `n` rounds through one real SocketHandler, one record per logger
/// per round, levels cycling INFO/WARNING/ERROR by round + logger index:
/// argv: port, n, logger names.
const PY_TEMPLATE: &str = r#"
import logging, logging.handlers, sys
port, n, names = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
h = logging.handlers.SocketHandler("127.0.0.1", port)
logs = []
for name in names:
    l = logging.getLogger(name)
    l.propagate = False
    l.setLevel(1)
    l.addHandler(h)
    logs.append(l)
levels = [logging.INFO, logging.WARNING, logging.ERROR]
for i in range(n):
    for j, l in enumerate(logs):
        l.log(levels[(i + j) % 3], "msg %d", i)
h.close()
"#;

/// The level name `PY_TEMPLATE` gives round `i` of logger `j`.
fn template_level(i: usize, j: usize) -> &'static str {
    ["INFO", "WARNING", "ERROR"][(i + j) % 3]
}

/// Start a relay with one templated file output, send `n` rounds from
/// `names`, stop, and return the files under the relay's directory.
fn run_template(output: &str, n: usize, names: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let config = format!(
        r#"{{"inputs": {{"in": {{"type": "tcp", "address": "127.0.0.1:0"}}}},
            "outputs": {{"file": {{"type": "file",
              "format": "%(name)s %(levelname)s %(message)s", {output}}}}}}}"#
    );
    let mut relay = Relay::start(&config, 1);
    let port = relay.port("in").to_string();
    let n_arg = n.to_string();
    let mut args = vec![port.as_str(), n_arg.as_str()];
    args.extend_from_slice(names);
    python(PY_TEMPLATE, &args);
    let (code, stderr, _) = relay.stop();
    assert_eq!(code, 0, "{stderr}");
    let mut all = files(relay.dir.path());
    all.remove("listener.json");
    all
}

/// The lines logger `j` (named `name`) sent, in order.
fn template_lines(name: &str, j: usize, n: usize) -> String {
    (0..n)
        .map(|i| format!("{name} {} msg {i}\n", template_level(i, j)))
        .collect()
}

#[test]
fn issue_4_path_template_one_file_per_logger() {
    let names = ["app", "app.db", "worker"];
    let got = run_template(r#""path": "out/{name}.log""#, 50, &names);
    let want: BTreeMap<String, Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            (
                format!("out/{name}.log"),
                template_lines(name, j, 50).into_bytes(),
            )
        })
        .collect();
    assert_eq!(show(&got), show(&want));
}

#[test]
fn issue_4_path_template_hostile_name_stays_inside() {
    let names = ["../../etc/x", "..", "ok"];
    let got = run_template(r#""path": "out/{name}.log""#, 5, &names);
    let want: BTreeMap<String, Vec<u8>> = [
        ("out/.._.._etc_x.log", 0),
        // `{name}.log` with `..` is `...log`: a file name, not a parent.
        ("out/...log", 1),
        ("out/ok.log", 2),
    ]
    .into_iter()
    .map(|(path, j)| {
        (
            path.to_string(),
            template_lines(names[j], j, 5).into_bytes(),
        )
    })
    .collect();
    assert_eq!(show(&got), show(&want));
    // And a component that is the value alone.
    let got = run_template(r#""path": "out/{name}/app.log""#, 2, &[".."]);
    let keys: Vec<&String> = got.keys().collect();
    assert_eq!(keys, ["out/__/app.log"]);
}

#[test]
fn issue_4_path_template_strftime_and_levelname() {
    let names = ["a", "b"];
    let got = run_template(
        r#""path": "out/%Y/{levelname}.log", "utc": true"#,
        30,
        &names,
    );
    // The year directory comes from `created` in UTC; the records were
    // sent just now, so it is this year (or, across New Year, last one).
    let years: std::collections::BTreeSet<&str> =
        got.keys().map(|k| k.split('/').nth(1).unwrap()).collect();
    assert_eq!(years.len(), 1, "{:?}", got.keys());
    let year = *years.iter().next().unwrap();
    assert_eq!(year.len(), 4);
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..30 {
        for (j, name) in names.iter().enumerate() {
            let level = template_level(i, j);
            want.entry(format!("out/{year}/{level}.log"))
                .or_default()
                .extend_from_slice(format!("{name} {level} msg {i}\n").as_bytes());
        }
    }
    assert_eq!(show(&got), show(&want));
}

#[test]
fn issue_4_path_template_max_open_files_loses_nothing() {
    // Five loggers interleaved record by record through two open files:
    // nearly every record closes one file and reopens another.
    let names = ["l0", "l1", "l2", "l3", "l4"];
    let got = run_template(
        r#""path": "out/{name}.log", "max_open_files": 2, "flush_ms": 0"#,
        200,
        &names,
    );
    let want: BTreeMap<String, Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            (
                format!("out/{name}.log"),
                template_lines(name, j, 200).into_bytes(),
            )
        })
        .collect();
    assert_eq!(show(&got), show(&want));
}
