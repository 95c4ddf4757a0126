//! The [`Builder`] that turns the parsed file into a [`Config`](super::Config),
//! and what every section needs from it: the report, the config's
//! directory, the names pass 1 found, and the checks they all use (number
//! ranges, paths, token files).
//!
//! Each section of the file is resolved by more `impl Builder` blocks in
//! the file named after it: `load.rs` the whole file, `inputs.rs`,
//! `filters.rs`, `outputs.rs`, `routes.rs` and `nats.rs` one component
//! each, `address.rs` addresses, `overlap.rs` the warnings that span
//! routes, and `cookbook/` the cookbook listener's keys and its dictConfig.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Report;
use super::read::Kinds;
use super::RouteConfig;

// Upper bounds on numbers, so a typo (an extra zero or three) is caught at
// load instead of as a 100 GB allocation.
/// Largest `max_frame_bytes`: 1 GiB.
pub(super) const MAX_FRAME_BYTES: u64 = 1 << 30;
/// Largest `max_pending_bytes`: 64 GiB.
pub(super) const MAX_PENDING_BYTES: u64 = 64 << 30;
/// Largest `frame_timeout_ms`: a day.
pub(super) const MAX_FRAME_TIMEOUT_MS: u64 = 86_400_000;
/// Largest `max_connections`.
pub(super) const MAX_CONNECTIONS: u64 = 10_000_000;
/// Largest `buffer_records`.
pub(super) const MAX_BUFFER_RECORDS: u64 = 10_000_000;
/// Largest `flush_ms`: an hour.
pub(super) const MAX_FLUSH_MS: u64 = 3_600_000;
/// Largest `max_open_files`: beyond this the fd limit bites first.
pub(super) const MAX_OPEN_FILES: u64 = 65_536;
/// Largest `drain_seconds`: a day.
pub(super) const MAX_DRAIN_SECONDS: u64 = 86_400;
/// Largest `shutdown_timeout_ms`: an hour.
pub(super) const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 3_600_000;
/// Largest `timeout_ms` of a filter call: a minute.
pub(super) const MAX_FILTER_TIMEOUT_MS: u64 = 60_000;
/// Linux `sun_path` holds 108 bytes including the terminating NUL.
pub(super) const MAX_UNIX_PATH: usize = 107;
/// One WebAssembly page: a smaller memory cap can never instantiate.
pub(super) const WASM_PAGE: u64 = 65_536;
/// All a 32-bit WebAssembly memory can address: 4 GiB.
pub(super) const WASM32_MAX_MEMORY: u64 = 1 << 32;

/// Checks the parsed file and builds the [`Config`](super::Config),
/// reporting as it goes.
pub(super) struct Builder<'a, 'k> {
    pub(super) report: Report<'a>,
    /// The config file's directory, for relative paths.
    pub(super) dir: PathBuf,
    /// What pass 1 found: every component name, even those skipped.
    pub(super) kinds: &'k Kinds,
}

/// Where in the file a built output or route came from, for messages.
pub(super) struct Origin {
    /// JSON path (`outputs.file`, `routes[2]`, `logging.root.handlers[0]`).
    pub(super) path: String,
    /// Whether `check` should warn when nothing routes to it.
    pub(super) warn_unused: bool,
}

/// Named things as built so far, with the JSON path each came from.
pub(super) type Origins = BTreeMap<String, Origin>;

/// Routes with the JSON path each came from.
pub(super) type Routes = Vec<(RouteConfig, Origin)>;

impl Builder<'_, '_> {
    /// `value` (or `default`) if it is within `min..=max`, else reported.
    pub(super) fn bounded(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            self.report
                .error(path, format!("{v} is out of range ({min} to {max})"));
            return default;
        }
        v
    }

    /// Resolve a path from the config against the config's directory.
    pub(super) fn resolve(&mut self, path: &str, p: &str) -> PathBuf {
        if p.is_empty() {
            self.report.error(path, "the path is empty");
        }
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// A Unix socket path, resolved and checked against the kernel's limit.
    pub(super) fn socket_path(&mut self, path: &str, p: &str) -> PathBuf {
        let resolved = self.resolve(path, p);
        let len = resolved.as_os_str().len();
        if len > MAX_UNIX_PATH {
            self.report.error(
                path,
                format!(
                    "the socket path {} is {len} bytes long; Unix sockets allow at most {MAX_UNIX_PATH}",
                    resolved.display()
                ),
            );
        }
        resolved
    }

    /// A `token_file`, read now so a missing or empty file is reported.
    pub(super) fn token(&mut self, path: &str, file: &str) -> Option<crate::auth::Token> {
        let resolved = self.resolve(path, file);
        crate::auth::Token::load(&resolved)
            .map_err(|what| self.report.error(path, what))
            .ok()
    }
}

/// The JSON path of a `tls` field (`inputs.app.tls.cert`), or of `tls`.
pub(super) fn tls_field(path: &str, field: &str) -> String {
    if field.is_empty() {
        format!("{path}.tls")
    } else {
        format!("{path}.tls.{field}")
    }
}
