//! [`ListenKey`]: what an input is bound to, its identity across reloads.
//! It lives with the config it is computed from, so the pipeline, the
//! server and the upgrade wire can name an input without importing the
//! input stage.

use std::path::PathBuf;

use super::{InputConfig, InputKind};

/// What an input is bound to: its identity across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ListenKey {
    /// A TCP `host:port` as written.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
    /// A UDP `host:port` as written.
    Udp(String),
    /// A NATS consumer: `stream/consumer#name` (binds nothing).
    Nats(String),
}

impl ListenKey {
    /// The key of the input `name`. An address with port 0 binds a new,
    /// distinct socket each time, so two such inputs are never the same
    /// socket: their key includes the name (a reload keeps the socket of a
    /// port-0 input only under the same name).
    pub fn of(name: &str, config: &InputConfig) -> ListenKey {
        match &config.kind {
            InputKind::Tcp { address } if address.ends_with(":0") => {
                ListenKey::Tcp(format!("{address}#{name}"))
            }
            InputKind::Udp { address } if address.ends_with(":0") => {
                ListenKey::Udp(format!("{address}#{name}"))
            }
            InputKind::Tcp { address } => ListenKey::Tcp(address.clone()),
            InputKind::Unix { path, .. } => ListenKey::Unix(path.clone()),
            InputKind::Udp { address } => ListenKey::Udp(address.clone()),
            InputKind::Nats(n) => ListenKey::Nats(format!("{}/{}#{name}", n.stream, n.consumer)),
        }
    }
}

impl std::fmt::Display for ListenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenKey::Tcp(a) => write!(f, "tcp://{a}"),
            ListenKey::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenKey::Udp(a) => write!(f, "udp://{a}"),
            ListenKey::Nats(a) => write!(f, "nats:{a}"),
        }
    }
}
