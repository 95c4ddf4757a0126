//! Running the listener: load the config, start the server, and react to
//! signals and config changes until asked to stop.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config, ConfigError};
use crate::server::Server;

/// Where the config comes from.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The path to read.
    pub path: PathBuf,
    /// Given with `--config` (a missing file is then an error).
    pub explicit: bool,
}

impl ConfigSource {
    /// Read it: a missing default `./listener.json` means the embedded
    /// default; a missing `--config` file is an error.
    pub fn load(&self) -> Result<Config, ConfigError> {
        if !self.explicit && !self.path.exists() {
            return Ok(config::load_default());
        }
        config::load(&self.path)
    }
}

/// Raise the soft limit on open files to the hard limit. Every connection
/// is a descriptor, and the usual soft default (1024, also systemd's) is far
/// below what a listener with thousands of senders holds; the hard limit
/// (typically 512k) is what the administrator allows.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and
    // pass by a valid, exclusive pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return;
    }
    let before = lim.rlim_cur;
    // An unlimited hard limit is not a valid soft limit for files (the
    // kernel caps it at fs.nr_open): then ask for 1M, the usual nr_open.
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    lim.rlim_cur = target.max(before);
    // SAFETY: setrlimit only reads the struct, which is valid; raising the
    // soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::debug!(
            from = before,
            to = lim.rlim_cur,
            "Raised the open-files limit."
        );
    } else {
        tracing::warn!(
            limit = before,
            "Could not raise the open-files limit; connections beyond it will be refused."
        );
    }
}

/// `logrelay check`: load everything a start would, and try what it would
/// do without disturbing a running listener (bind each address and let go,
/// create and remove a file in each output directory): exit 1 with every
/// problem, or print the pipeline and its warnings.
pub fn check(source: &ConfigSource) -> ExitCode {
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // What start-up would refuse: plugins, output directories, addresses.
    let found = crate::diagnose::preflight(&config);
    if !found.errors.is_empty() {
        eprintln!("{}", found.errors.join("\n"));
        return ExitCode::FAILURE;
    }
    let mut config = config;
    config.warnings.extend(found.warnings);
    // describe() ends with the warnings (SPEC.md 6: overlapping routes).
    print!("{}", config.describe());
    ExitCode::SUCCESS
}

/// Run the listener until SIGTERM/SIGINT.
pub async fn run(source: ConfigSource) -> ExitCode {
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.source.is_none() {
        tracing::info!("No listener.json here: running the embedded default.");
    }
    // Watch before the inputs say "Listening": an edit made as soon as
    // they do must not fall between the two.
    let mut changes = crate::watch::ConfigWatch::new(source.path.clone(), watched_files(&config));
    let mut server = match Server::start(config.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", crate::diagnose::start_error(&config, &e));
            return ExitCode::FAILURE;
        }
    };
    drop(config);
    crate::input::inherit::close_unclaimed();
    crate::upgrade::adopt_connections(server.adopter());
    crate::upgrade::notify_ready();
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut upgraded = false;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2: starting the successor and handing over the listening sockets and connections.");
                if crate::upgrade::upgrade(&mut server).await {
                    upgraded = true;
                    break;
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config and reopening outputs.");
                reload(&source, &mut server).await;
                server.reopen().await;
            }
            change = changes.changed() => {
                tracing::info!(config = %source.path.display(), plugins = change.plugins, "Config or plugin changed: reloading.");
                reload_with(&source, &mut server, change.plugins).await;
            }
        }
        changes.set_files(watched_files(server.config()));
    }
    if upgraded {
        server.finish_upgrade().await;
        tracing::info!("Stopped.");
        return ExitCode::SUCCESS;
    }
    tracing::info!("Shutting down: draining connections and flushing outputs.");
    server.shutdown().await;
    tracing::info!("Stopped.");
    ExitCode::SUCCESS
}

async fn reload(source: &ConfigSource, server: &mut Server) {
    reload_with(source, server, true).await;
}

/// Reload from `source`; `plugins_changed` reloads every filter even when
/// the config text is the same (a plugin file was rebuilt).
async fn reload_with(source: &ConfigSource, server: &mut Server, plugins_changed: bool) {
    let new = match source.load() {
        Ok(c) => c,
        Err(e) => {
            crate::metrics::reload(false);
            crate::admin::status::reload_event(false, e.to_string());
            tracing::error!("Reload rejected, the running pipeline goes on unchanged:\n{e}");
            return;
        }
    };
    let plugins_matter = plugins_changed && !new.filters.is_empty();
    if *server.config().as_ref() == new && !plugins_matter {
        crate::metrics::reload_unchanged();
        tracing::info!("Config unchanged.");
        return;
    }
    let changes = crate::admin::status::diff(server.config(), &new);
    let located = new.clone();
    match server.reload(new, plugins_changed).await {
        Ok(()) => {
            crate::metrics::reload(true);
            crate::admin::status::reload_event(true, changes);
            tracing::info!("Reloaded.");
        }
        Err(e) => {
            crate::metrics::reload(false);
            let e = crate::diagnose::start_error(&located, &e);
            crate::admin::status::reload_event(false, e.clone());
            tracing::error!("Reload rejected, the running pipeline goes on unchanged: {e}");
        }
    }
}

/// Plugin files to watch besides the config.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    config
        .filters
        .values()
        .map(|f| match f {
            config::FilterConfig::Wasm(w) => w.path.clone(),
        })
        .collect()
}
