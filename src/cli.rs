//! The command line (SPEC.md section 1).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default config path; only this one falls back to the embedded
/// default when missing.
pub const DEFAULT_CONFIG: &str = "listener.json";

/// A fast, safe, hot-reloadable listener for Python logging's SocketHandler.
#[derive(Debug, Parser)]
#[command(name = "logrelay", version, about, long_about = None)]
pub struct Cli {
    /// The config file. Default: ./listener.json, or the embedded default
    /// (TCP 127.0.0.1:9020, pickle, stdout) when that does not exist.
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// logrelay's own diagnostics on stderr: error, warn, info, debug,
    /// trace, or a tracing filter. Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// What to do (default: run the listener).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and load its plugins, print the pipeline, and
    /// exit 0 (valid) or 1 (not).
    Check,
}
