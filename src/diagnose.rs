//! Problems found after a config has loaded, said where the config causes
//! them: `logrelay check` tries what start-up would do without disturbing
//! a running listener (bind each address and let go, create and remove a
//! file in each output directory, load each plugin), and start-up and
//! reload errors are put at the file, line:column and JSON path of the
//! field responsible, with what to do.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::ToSocketAddrs;
use std::path::{Component, Path, PathBuf};

use crate::config::error::locate;
use crate::config::{Config, FilterConfig, InputKind, OutputConfig};
use crate::input::BindError;
use crate::server::StartError;

/// What `check` found beyond the config's own checks.
#[derive(Debug, Default)]
pub struct Findings {
    /// Start-up would fail on these; each a full line.
    pub errors: Vec<String>,
    /// Start-up would go on (an address held by this config's own running
    /// logrelay).
    pub warnings: Vec<String>,
}

/// Try what starting `config` would do: load every plugin, make sure every
/// output and socket directory can be created and written, and bind every
/// address (at once letting go of it).
pub fn preflight(config: &Config) -> Findings {
    let mut f = Findings::default();
    let at = |paths: Vec<String>| locate(config.source.as_deref(), &paths);
    for (name, fc) in &config.filters {
        if let Err(e) = crate::filter::Filter::load(name, fc) {
            let FilterConfig::Wasm(w) = fc;
            let what = strip_name(&e.to_string(), &format!("filter {name}: "));
            let hint = plugin_hint(&e, &w.path);
            f.errors
                .push(format!("{}: {what}{hint}", at(filter_paths(name))));
        }
    }
    for (name, oc) in &config.outputs {
        if let OutputConfig::File(c) = oc {
            let target = if c.max_open_files.is_some() {
                // A template: the directories before the first placeholder.
                static_prefix(&c.path).join("file")
            } else {
                c.path.clone()
            };
            if let Err(what) = writable(&target, c.max_open_files.is_none()) {
                f.errors
                    .push(format!("{}: {what}", at(output_paths(name, "path"))));
            }
        }
    }
    for (name, oc) in &config.outputs {
        if let OutputConfig::Nats(n) = oc {
            let at_key = |key: &str| at(vec![format!("outputs.{name}.{key}")]);
            for (key, what) in nats_files(&n.connect) {
                f.errors.push(format!("{}: {what}", at_key(key)));
            }
            if let Some(dir) = &n.spool_dir {
                if let Err(what) = writable(&dir.join("spool"), false) {
                    f.errors.push(format!("{}: {what}", at_key("spool_dir")));
                }
            }
        }
    }
    for (name, ic) in &config.inputs {
        if let InputKind::Nats(n) = &ic.kind {
            for (key, what) in nats_files(&n.connect) {
                f.errors.push(format!(
                    "{}: {what}",
                    at(vec![format!("inputs.{name}.{key}")])
                ));
            }
        }
    }
    for (name, ic) in &config.inputs {
        let found = match &ic.kind {
            InputKind::Tcp { address } => try_bind(config, Proto::Tcp, address),
            InputKind::Udp { address } => try_bind(config, Proto::Udp, address),
            InputKind::Unix { path, .. } => try_socket(config, path),
            // Nothing to bind: the nats input connects out, and its keys
            // and files were checked when the config loaded.
            InputKind::Nats(_) => Ok(None),
        };
        match found {
            Ok(None) => {}
            Ok(Some(warning)) => f
                .warnings
                .push(format!("{}: {warning}", at(input_paths(name)))),
            Err(what) => f.errors.push(format!("{}: {what}", at(input_paths(name)))),
        }
    }
    if let Some(m) = &config.metrics {
        match try_bind(config, Proto::Tcp, &m.address) {
            Ok(None) => {}
            Ok(Some(w)) => f
                .warnings
                .push(format!("{}: {w}", at(vec!["metrics.address".into()]))),
            Err(what) => f
                .errors
                .push(format!("{}: {what}", at(vec!["metrics.address".into()]))),
        }
    }
    f
}

/// A start-up or reload error at the field of `config` responsible, with
/// what to do: `listener.json:4:31: inputs.app.address: cannot listen on
/// tcp://127.0.0.1:9051: ... Address already in use ...; another process
/// listens there: ...`.
pub fn start_error(config: &Config, e: &StartError) -> String {
    let (paths, what) = match e {
        StartError::Bind(BindError::Bind { name, key, reason }) => (
            input_paths(name),
            format!("cannot listen on {key}: {reason}{}", bind_hint(reason)),
        ),
        StartError::Output(o) => {
            let (name, field, hint) = match o {
                crate::output::OutputError::Open { name, source, .. } => {
                    (name, "path", io_hint(source.kind()))
                }
                crate::output::OutputError::Format { name, .. } => (name, "format", ""),
                crate::output::OutputError::Unsupported { name, .. } => (name, "type", ""),
            };
            let what = strip_name(&o.to_string(), &format!("output {name}: "));
            (output_paths(name, field), format!("{what}{hint}"))
        }
        StartError::Filter(fe) => {
            let name = fe.filter_name();
            let path = match config.filters.get(name) {
                Some(FilterConfig::Wasm(w)) => w.path.clone(),
                None => PathBuf::new(),
            };
            let what = strip_name(&fe.to_string(), &format!("filter {name}: "));
            (
                filter_paths(name),
                format!("{what}{}", plugin_hint(fe, &path)),
            )
        }
        StartError::Metrics(m) => (
            vec!["metrics.address".into()],
            format!("{}{}", strip_name(m, "metrics: "), bind_hint(m)),
        ),
    };
    format!("{}: {what}", locate(config.source.as_deref(), &paths))
}

/// Where an input's address is written: native, or the cookbook keys.
fn input_paths(name: &str) -> Vec<String> {
    let mut p = vec![
        format!("inputs.{name}.address"),
        format!("inputs.{name}.path"),
    ];
    if name == crate::config::cookbook::INPUT_NAME {
        p.extend(["socket", "port", "host"].map(String::from));
    }
    p.push(format!("inputs.{name}"));
    p
}

/// Where an output's `field` is written: native, or a dictConfig handler.
fn output_paths(name: &str, field: &str) -> Vec<String> {
    let dict_field = match field {
        "path" => "filename",
        "format" => "formatter",
        _ => "class",
    };
    vec![
        format!("outputs.{name}.{field}"),
        format!("logging.handlers.{name}.{dict_field}"),
        format!("outputs.{name}"),
        format!("logging.handlers.{name}"),
    ]
}

fn filter_paths(name: &str) -> Vec<String> {
    vec![format!("filters.{name}.path"), format!("filters.{name}")]
}

/// `what` without the component prefix the error's Display starts with
/// (the JSON path in front says it).
fn strip_name(what: &str, prefix: &str) -> String {
    what.strip_prefix(prefix).unwrap_or(what).to_string()
}

fn plugin_hint(e: &crate::filter::wasm::FilterError, path: &Path) -> String {
    match e {
        crate::filter::wasm::FilterError::Read { source, .. }
            if source.kind() == ErrorKind::NotFound =>
        {
            format!(
                "; no file at {}: fix `path` (a relative path is resolved against the \
                 config file's directory), or build the plugin there",
                path.display()
            )
        }
        _ => String::new(),
    }
}

fn bind_hint(reason: &str) -> &'static str {
    if reason.contains("Address already in use") {
        "; another process listens there: stop it, or choose another port \
         (`logrelay check` names the process)"
    } else if reason.contains("Permission denied") {
        "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port above 1023"
    } else if reason.contains("Cannot assign requested address") {
        "; this machine has no such address: use 127.0.0.1, 0.0.0.0 or one of its own"
    } else {
        ""
    }
}

fn io_hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            "; make the directory writable by the user logrelay runs as, or choose another path"
        }
        ErrorKind::NotFound | ErrorKind::AlreadyExists | ErrorKind::NotADirectory => {
            "; a part of the path is not a directory logrelay can create: choose another path"
        }
        _ => "",
    }
}

/// The directories of a path template before its first placeholder.
fn static_prefix(template: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in template.components() {
        let s = c.as_os_str().to_string_lossy();
        if matches!(c, Component::Normal(_)) && (s.contains('{') || s.contains('%')) {
            break;
        }
        out.push(c);
    }
    out
}

/// Whether the file at `path` could be opened for append, creating its
/// directories, as start-up does; tried without writing to it: an
/// existing file is opened for append and closed, otherwise a probe file
/// is created and removed in the nearest existing directory.
/// The credential and TLS files of a nats output or input that start-up
/// could not read: `(key, what)`. (The servers are not contacted: `check`
/// runs where the cluster may be unreachable, and the component waits
/// for it anyway.)
fn nats_files(c: &crate::config::NatsConnect) -> Vec<(&'static str, String)> {
    let mut files: Vec<(&'static str, &Path)> = Vec::new();
    if let Some(p) = &c.token_file {
        files.push(("token_file", p));
    }
    if let Some(p) = &c.creds_file {
        files.push(("creds_file", p));
    }
    if let Some(t) = &c.tls {
        if let Some(p) = &t.ca {
            files.push(("tls.ca", p));
        }
        if let Some((cert, key)) = &t.cert {
            files.push(("tls.cert", cert));
            files.push(("tls.key", key));
        }
    }
    files
        .into_iter()
        .filter_map(|(key, path)| {
            std::fs::read(path)
                .err()
                .map(|e| (key, format!("cannot read {}: {e}", path.display())))
        })
        .collect()
}

fn writable(path: &Path, is_file: bool) -> Result<(), String> {
    let shown = path.display();
    if is_file {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(format!("{shown} is a directory; name a file"));
            }
            Ok(_) => {
                return OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map(drop)
                    .map_err(|e| {
                        format!("cannot open {shown} for append: {e}{}", io_hint(e.kind()))
                    });
            }
            Err(_) => {}
        }
    }
    let mut dir = path.parent().unwrap_or(Path::new("."));
    loop {
        let probe_dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match std::fs::metadata(probe_dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(format!(
                    "cannot create the directory of {shown}: {} is a file, not a directory; \
                     choose another path",
                    probe_dir.display()
                ));
            }
            // Not there, or under a file (ENOTDIR): look further up.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match dir.parent() {
                    Some(p) => dir = p,
                    None => break,
                }
            }
            Err(e) => {
                return Err(format!(
                    "cannot reach {}: {e}{}",
                    probe_dir.display(),
                    io_hint(e.kind())
                ));
            }
        }
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let probe = dir.join(format!(".logrelay-check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot create {shown}: creating a file in {} fails: {e}{}",
            dir.display(),
            io_hint(e.kind())
        )),
    }
}

#[derive(Clone, Copy)]
enum Proto {
    Tcp,
    Udp,
}

/// Bind every address `address` resolves to and let go at once. An
/// address in use is a warning (`Ok(Some)`) when this config's own
/// logrelay holds it, else an error.
fn try_bind(config: &Config, proto: Proto, address: &str) -> Result<Option<String>, String> {
    let addrs: Vec<_> = match address.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(format!("cannot resolve {address}: {e}")),
    };
    for addr in addrs {
        if addr.port() == 0 {
            continue;
        }
        let bound = match proto {
            Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
            Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
        };
        match bound {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                let (name, file) = match proto {
                    Proto::Tcp => ("TCP", "tcp"),
                    Proto::Udp => ("UDP", "udp"),
                };
                let holder = holder(&inodes_on_port(file, addr.port()));
                return in_use(config, &format!("{name} {addr}"), holder);
            }
            Err(e) => {
                let reason = e.to_string();
                return Err(format!(
                    "cannot listen on {addr}: {reason}{}",
                    bind_hint(&reason)
                ));
            }
        }
    }
    Ok(None)
}

/// A Unix socket path: in use when something accepts on it; a stale
/// socket is fine (start-up replaces it), anything else in the way is not.
fn try_socket(config: &Config, path: &Path) -> Result<Option<String>, String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Err(format!(
            "{} exists and is not a socket; start-up will not replace it: remove it or \
             choose another path",
            path.display()
        )),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => in_use(
                config,
                &format!("the socket {}", path.display()),
                holder(&unix_inodes(path)),
            ),
            Err(_) => Ok(None),
        },
        Err(_) => writable(path, false).map(|()| None),
    }
}

/// The process holding a socket, as /proc shows it.
struct Holder {
    pid: u32,
    comm: String,
    /// Its config file, when it is a logrelay.
    config: Option<PathBuf>,
}

fn in_use(config: &Config, what: &str, holder: Option<Holder>) -> Result<Option<String>, String> {
    let ours = config.source.as_deref().and_then(|p| p.canonicalize().ok());
    match holder {
        Some(h) if h.config.is_some() && h.config == ours => Ok(Some(format!(
            "{what} is in use by the running logrelay (pid {}) with this config: a reload \
             keeps it; a second logrelay on this config would not start",
            h.pid
        ))),
        Some(h) if h.config.is_some() => Err(format!(
            "{what} is already in use by another logrelay (pid {}, config {}): stop it, or \
             choose another address",
            h.pid,
            h.config.as_deref().unwrap_or(Path::new("?")).display()
        )),
        Some(h) => Err(format!(
            "{what} is already in use by {} (pid {}): stop it, or choose another address",
            h.comm, h.pid
        )),
        None if metrics_answer(config) => Ok(Some(format!(
            "{what} is in use, and this config's metrics address answers /health: \
             presumably the running logrelay with this config"
        ))),
        None => Err(format!(
            "{what} is already in use by another process: stop it, or choose another address"
        )),
    }
}

/// Whether this config's metrics endpoint answers `GET /health` as a
/// logrelay does (for a holder /proc does not show: another user's).
fn metrics_answer(config: &Config) -> bool {
    use std::io::{Read, Write};
    let Some(m) = &config.metrics else {
        return false;
    };
    let Some(addr) = m.address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let timeout = std::time::Duration::from_secs(1);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.1 503")
}

/// Socket inodes bound to `port` in /proc/net/<file> and <file>6 (TCP:
/// listening ones only).
fn inodes_on_port(file: &str, port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for f in [file.to_string(), format!("{file}6")] {
        let text = std::fs::read_to_string(format!("/proc/net/{f}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && (file != "tcp" || *state == "0A") {
                out.push(inode.to_string());
            }
        }
    }
    out
}

/// Socket inodes of the Unix socket at `path` (/proc/net/unix).
fn unix_inodes(path: &Path) -> Vec<String> {
    let want = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let bound = Path::new(cols.get(7)?);
            let inode = cols.get(6)?;
            (bound == want || bound == path).then(|| inode.to_string())
        })
        .collect()
}

/// The process with a descriptor on one of the socket `inodes`.
fn holder(inodes: &[String]) -> Option<Holder> {
    if inodes.is_empty() {
        return None;
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| links.iter().any(|s| l.as_os_str() == s.as_str()))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let config = (comm == "logrelay")
                .then(|| logrelay_config(&entry.path()))
                .flatten();
            return Some(Holder { pid, comm, config });
        }
    }
    None
}

/// The config file a running logrelay (its /proc directory) reads:
/// `--config PATH` (or `-c`, `--config=PATH`) against its working
/// directory, else `./listener.json`.
fn logrelay_config(proc_dir: &Path) -> Option<PathBuf> {
    let cmdline = std::fs::read(proc_dir.join("cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut config = crate::cli::DEFAULT_CONFIG.to_string();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" || a == "-c" {
            if let Some(v) = it.next() {
                config = v.clone();
            }
        } else if let Some(v) = a.strip_prefix("--config=") {
            config = v.to_string();
        }
    }
    let cwd = std::fs::read_link(proc_dir.join("cwd")).ok()?;
    cwd.join(config).canonicalize().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_prefix_stops_at_the_first_placeholder() {
        assert_eq!(
            static_prefix(Path::new("/var/log/app/%Y-%m/{name}.log")),
            Path::new("/var/log/app")
        );
        assert_eq!(static_prefix(Path::new("{name}.log")), Path::new(""));
    }

    #[test]
    fn impossible_output_paths_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = writable(&file.join("sub/app.log"), true).unwrap_err();
        assert!(err.contains("is a file, not a directory"), "{err}");
        let err = writable(tmp.path(), true).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        assert_eq!(writable(&tmp.path().join("new/dir/app.log"), true), Ok(()));
        assert_eq!(writable(&file, true), Ok(()));
        // Nothing was created by the check.
        assert!(!tmp.path().join("new").exists());
        assert!(writable(Path::new("/proc/x/app.log"), true).is_err());
    }
}
