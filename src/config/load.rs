//! Reading and checking a config file into a [`Config`] (placeholder).

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// The embedded default: TCP 127.0.0.1:9020, pickle, one stdout output
/// with [`DEFAULT_FORMAT`].
pub fn load_default() -> Config {
    let mut inputs = BTreeMap::new();
    inputs.insert(
        "default".to_string(),
        InputConfig {
            kind: InputKind::Tcp {
                address: format!("127.0.0.1:{DEFAULT_TCP_PORT}"),
            },
            decoder: DecoderKind::Pickle,
            framing: Framing::LengthPrefixed,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        },
    );
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "stdout".to_string(),
        OutputConfig::Stream(StreamOutputConfig {
            stream: StreamKind::Stdout,
            encoding: Encoding::Text,
            text: TextFormat::default(),
        }),
    );
    Config {
        source: None,
        inputs,
        filters: BTreeMap::new(),
        outputs,
        routes: vec![RouteConfig {
            to: vec!["stdout".to_string()],
            ..RouteConfig::default()
        }],
        drain_seconds: 30,
        shutdown_timeout_ms: 5000,
        metrics: None,
        warnings: Vec::new(),
    }
}

/// Read and check the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Check config text as if read from `path` (used for messages and to
/// resolve relative paths against its directory).
pub fn parse(_text: &str, path: &Path) -> Result<Config, ConfigError> {
    Err(ConfigError::Invalid(vec![format!(
        "{}: config parsing is not implemented yet",
        path.display()
    )]))
}
