//! Config errors: one message naming the file, the line:column or the JSON
//! path of the field, and what is wrong.

use std::path::PathBuf;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// One or more problems, each already a full line
    /// (`listener.json:5:16: inputs.app.port: ...`).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}
