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
    /// trace (any case; Python's WARNING and CRITICAL too), or a tracing
    /// filter such as `logrelay=debug`. Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// What to do (default: run the listener).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The tracing filter for `--log-level`: a level name as is, Python's
/// spellings mapped (`WARNING` is `warn`, `CRITICAL` is `error`), a filter
/// with `=` or `,` passed on. A bare word that names no level is refused:
/// tracing would read it as a target and silence every diagnostic (as
/// `--log-level warning` did).
pub fn log_filter(level: &str) -> Result<String, String> {
    if level.contains(['=', ',', '[']) {
        return Ok(level.to_string());
    }
    let name = match level.to_ascii_lowercase().as_str() {
        "trace" | "notset" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" | "fatal" => "error",
        "off" => "off",
        _ => {
            return Err(format!(
                "unknown level {level:?} (expected error, warn, info, debug, trace, off, \
                 or a filter such as logrelay=debug)"
            ))
        }
    };
    Ok(name.to_string())
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and load its plugins, print the pipeline, and
    /// exit 0 (valid) or 1 (not).
    Check,
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn log_levels_accept_python_names_and_refuse_unknown_words() {
        assert_eq!(log_filter("WARNING").unwrap(), "warn");
        assert_eq!(log_filter("critical").unwrap(), "error");
        assert_eq!(log_filter("Debug").unwrap(), "debug");
        assert_eq!(
            log_filter("logrelay=debug,warn").unwrap(),
            "logrelay=debug,warn"
        );
        assert!(log_filter("verbose").unwrap_err().contains("\"verbose\""));
    }
}
