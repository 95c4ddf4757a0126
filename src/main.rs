//! The `logrelay` binary: parse arguments, set up diagnostics, run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use logrelay::cli::{Cli, Command, DEFAULT_CONFIG};
use logrelay::run::{self, ConfigSource};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Diagnostics go to stderr, never into a stdout output.
    let filter = match &cli.log_level {
        Some(level) => match logrelay::cli::log_filter(level) {
            Ok(f) => EnvFilter::try_new(f),
            Err(e) => {
                eprintln!("invalid --log-level: {e}");
                return ExitCode::FAILURE;
            }
        },
        // RUST_LOG takes the same names; one that is not a level or a
        // filter is reported and replaced by `info` rather than refused
        // (a unit file that always ran must still start).
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => {
                let filter = logrelay::cli::log_filter(v.trim())
                    .and_then(|f| EnvFilter::try_new(&f).map_err(|e| e.to_string()));
                filter.or_else(|e| {
                    eprintln!("ignoring RUST_LOG={v:?}: {e}; logging at info");
                    EnvFilter::try_new("info")
                })
            }
            _ => EnvFilter::try_new("info"),
        },
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("invalid --log-level / RUST_LOG: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Sockets handed over by systemd or by the logrelay we replace; read
    // while still single-threaded.
    logrelay::upgrade::init_from_env();
    let source = ConfigSource {
        explicit: cli.config.is_some(),
        path: cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
    };
    if cli.command.is_none() {
        run::raise_fd_limit();
        run::tune_allocator();
    }
    match cli.command {
        Some(Command::Check) => run::check(&source),
        Some(Command::Schema) => {
            println!("{}", logrelay::config::schema::SCHEMA.trim_end());
            ExitCode::SUCCESS
        }
        Some(Command::Test { cases }) => logrelay::dryrun::run(&source, &cases),
        Some(Command::Tap(args)) => logrelay::admin::tap::run(args, &source),
        None => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run::run(source)),
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
