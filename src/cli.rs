//! The command line (docs/decisions.md, "Command line").

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
    /// Print the records flowing through a running logrelay, one line
    /// each, until Ctrl-C (the status page's live tail, in a terminal).
    Tap(TapArgs),
    /// Run LogRecord dicts from CASES.json through the config's routes,
    /// filters and formats (no socket opened, no file written) and check
    /// which outputs get which lines; exit 0, or 1 with a diff.
    Test {
        /// The cases file (see config/test-cases.json).
        #[arg(value_name = "CASES.json")]
        cases: PathBuf,
    },
    /// Print the JSON Schema of listener.json.
    Schema,
}

// What `tap` was asked for. A plain comment, not a doc comment: clap would
// read one as the subcommand's help, which the `Tap` variant gives.
#[derive(Debug, Default, clap::Args)]
pub struct TapArgs {
    /// The admin (metrics) address of the running logrelay. Default:
    /// `metrics.address` of the config (./listener.json).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
    /// A file holding the admin token. Default: `metrics.token_file`
    /// of the config.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Only records from this input.
    #[arg(long, value_name = "NAME")]
    pub input: Option<String>,
    /// Only records routed to this output.
    #[arg(long, value_name = "NAME")]
    pub output: Option<String>,
    /// Only loggers under this prefix (`payments` takes `payments.api`).
    #[arg(long, value_name = "PREFIX")]
    pub logger: Option<String>,
    /// Only records at this level or above (name or number).
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Print each record's fields as one JSON object per line.
    #[arg(long)]
    pub json: bool,
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
