//! The configuration, in two layers (as ripgrep's `LowArgs`/`HiArgs`):
//! [`file`](mod@file) mirrors `listener.json` for serde,
//! [`load`](mod@load) reads and checks it and produces the resolved
//! [`Config`] below, which is what the pipeline builds from. Everything here is plain data: no socket is bound and no
//! file opened until `pipeline::build`. Config sits under the stages that
//! run (input, pipeline, filter, output) and imports none of them; the
//! option types of the libraries it uses (codec, format) are theirs.
//!
//! - Reading: `read.rs` runs the two serde passes over the text into the
//!   mirror ([`file`](mod@file), built from [`seed`]'s pieces), reporting
//!   every type error.
//! - Checking: `load.rs` resolves the whole file with a `Builder`
//!   (`builder.rs`), whose work on each section sits in the file named
//!   after it: `inputs.rs`, `filters.rs`, `outputs.rs`, `routes.rs`,
//!   `nats.rs`, `address.rs` (addresses and their clashes) and
//!   `overlap.rs` (warnings that span routes).
//! - [`cookbook`]: the Python cookbook listener's keys and its dictConfig,
//!   with its own mirror ([`cookbook::dict`]).
//! - [`error`] words every problem; [`describe`] and [`schema`] serve
//!   `logrelay check` and `logrelay schema`.
//!
//! Resolved configs compare with `PartialEq`: hot reload diffs components
//! by name and keeps the ones whose config is equal.

mod address;
mod builder;
pub mod cookbook;
pub mod describe;
pub mod error;
pub mod file;
mod filters;
mod inputs;
mod listen_key;
pub mod load;
pub mod nats;
mod outputs;
mod overlap;
mod read;
mod routes;
pub mod schema;
pub mod seed;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use error::ConfigError;
pub use listen_key::ListenKey;
pub use load::{load, load_default, parse};

// Option types owned by the libraries below config (codec, format): config
// resolves the file into them, and names them here too so that the stages
// above find every option in one place.
pub use crate::codec::encode::Encoder;
pub use crate::codec::framing::Framing;
pub use crate::codec::DecoderKind;
pub use crate::format::{Style, TextFormat, DEFAULT_FORMAT};

/// Python's `logging.handlers.DEFAULT_TCP_LOGGING_PORT`.
pub const DEFAULT_TCP_PORT: u16 = 9020;
/// Default `max_frame_bytes`: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Default `drain_seconds`.
pub const DEFAULT_DRAIN_SECONDS: u64 = 30;
/// Default `shutdown_timeout_ms`.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5000;
/// Default `flush_ms` of a file output.
pub const DEFAULT_FLUSH_MS: u64 = 100;
/// Files a templated file output keeps open by default.
pub const DEFAULT_MAX_OPEN_FILES: u64 = 256;
/// Default `state_dir`, relative to listener.json's directory.
pub const DEFAULT_STATE_DIR: &str = ".logrelay-state";
/// Default `max_pending_bytes`: 256 MiB of partial frames in all.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;
/// Default `frame_timeout_ms` of a stream input: a minute.
pub const DEFAULT_FRAME_TIMEOUT_MS: u64 = 60_000;
/// Default `max_connections` of a stream input.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `buffer_records` of a forward output.
pub const DEFAULT_BUFFER_RECORDS: usize = 100_000;

/// A whole, checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, InputConfig>,
    /// Filters by name.
    pub filters: BTreeMap<String, FilterConfig>,
    /// Outputs by name.
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Routes, in file order. Never empty after loading: a config with no
    /// `routes` key gets one route from every input to every output.
    pub routes: Vec<RouteConfig>,
    /// How long a removed input's open connections are served after a
    /// reload (`drain_seconds`, default 30).
    pub drain_seconds: u64,
    /// How long shutdown waits for connections to go quiet
    /// (`shutdown_timeout_ms`, default 5000).
    pub shutdown_timeout_ms: u64,
    /// The most bytes of partial frames buffered across every connection
    /// (`max_pending_bytes`, default 256 MiB); over it the connection
    /// stalled longest mid-frame is closed.
    pub max_pending_bytes: usize,
    /// Where the last confirmed batch of each acknowledged sender is kept
    /// across restarts (`state_dir`, default `.logrelay-state` beside
    /// listener.json); created when the first such sender connects.
    pub state_dir: PathBuf,
    /// The Prometheus endpoint, if any.
    pub metrics: Option<MetricsConfig>,
    /// Non-fatal findings to print at load and in `check` (e.g. one output
    /// reached twice by overlapping routes).
    pub warnings: Vec<String>,
}

/// One input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputConfig {
    /// Where it listens.
    pub kind: InputKind,
    /// How a frame becomes a record.
    pub decoder: DecoderKind,
    /// How the stream is cut into frames.
    pub framing: Framing,
    /// The largest frame accepted; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Stream inputs: how long a connection may stay silent in the middle
    /// of a frame before it is closed (`frame_timeout_ms`). A connection
    /// idle between frames is never closed.
    pub frame_timeout_ms: u64,
    /// Stream inputs: the most open connections (`max_connections`); over
    /// it a new connection is closed at once.
    pub max_connections: usize,
    /// TCP inputs: TLS (`tls`), optionally requiring client certificates.
    pub tls: Option<crate::tls::ServerTls>,
    /// Stream inputs: the shared secret senders must present
    /// (`token_file`); plain SocketHandler connections are refused.
    pub token: Option<crate::auth::Token>,
}

/// The listening socket of an input.
#[derive(Clone, Debug, PartialEq)]
pub enum InputKind {
    /// A TCP listener on `host:port`. The host may resolve to several
    /// addresses (`localhost`: 127.0.0.1 and ::1); each is bound.
    Tcp {
        /// `host:port` as written.
        address: String,
    },
    /// A Unix stream socket.
    Unix {
        /// The socket path, resolved against the config's directory.
        path: PathBuf,
        /// File mode for the socket (e.g. `0o660`).
        mode: Option<u32>,
    },
    /// A UDP socket; each datagram is one frame.
    Udp {
        /// `host:port` as written.
        address: String,
    },
    /// A durable pull consumer on a NATS JetStream stream; each message is
    /// one record, decoded as its `Logrelay-Encoder` header says.
    Nats(NatsInputConfig),
}

/// A `nats` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsInputConfig {
    /// The cluster.
    pub connect: NatsConnect,
    /// The stream.
    pub stream: String,
    /// The durable consumer.
    pub consumer: String,
    /// Messages per pull.
    pub batch: usize,
    /// Redelivery delay of an unacknowledged message (consumer creation).
    pub ack_wait_ms: u64,
}

/// One filter.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterConfig {
    /// A WebAssembly plugin.
    Wasm(WasmFilterConfig),
}

/// A `wasm` filter.
#[derive(Clone, Debug, PartialEq)]
pub struct WasmFilterConfig {
    /// The `.wasm` or `.wat` file, resolved against the config's directory.
    pub path: PathBuf,
    /// The filter's own `config`, handed to the guest by `config_get`.
    pub config: serde_json::Value,
    /// Fuel per `filter()` call, if fuel metering is on.
    pub fuel: Option<u64>,
    /// Wall-clock limit per call, through epoch interruption.
    pub timeout_ms: Option<u64>,
    /// Cap on the guest's linear memory.
    pub max_memory_bytes: Option<u64>,
    /// What happens to a record whose filter call failed.
    pub on_error: OnError,
}

/// `on_error` of a filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// `"pass"`: keep the record unchanged (the default).
    #[default]
    Pass,
    /// `"drop"`: drop the record.
    Drop,
}

/// How a record becomes bytes in a file or on stdout (`encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `"text"`: a line formatted by `format` (the default).
    #[default]
    Text,
    /// `"json"`: one JSON object per line.
    Json,
}

/// One output.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputConfig {
    /// A (rotating) file.
    File(FileOutputConfig),
    /// The process's stdout or stderr.
    Stream(StreamOutputConfig),
    /// Another listener.
    Forward(ForwardOutputConfig),
    /// A NATS JetStream stream.
    Nats(NatsOutputConfig),
}

/// Which standard stream a `stdout` output writes to. dictConfig's
/// `logging.StreamHandler` without `stream` writes to stderr, as Python.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamKind {
    /// stdout (the `stdout` output type).
    #[default]
    Stdout,
    /// stderr.
    Stderr,
}

/// A `stdout` output.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamOutputConfig {
    /// stdout or stderr.
    pub stream: StreamKind,
    /// text or json.
    pub encoding: Encoding,
    /// The layout for `text`.
    pub text: TextFormat,
}

/// `when` of a timed rotation (TimedRotatingFileHandler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Seconds.
    S,
    /// Minutes.
    M,
    /// Hours.
    H,
    /// Days.
    D,
    /// At midnight (or `at_time`).
    Midnight,
    /// On a weekday, 0 = Monday.
    Weekday(u8),
}

/// Compression of rotated files (`compress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compress {
    /// `"gzip"`: rotated files become `app.log.1.gz`.
    Gzip,
}

/// A `file` output.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOutputConfig {
    /// The file, resolved against the config's directory.
    pub path: PathBuf,
    /// text or json.
    pub encoding: Encoding,
    /// The layout for `text`.
    pub text: TextFormat,
    /// Size rotation threshold in characters; 0 = never (RotatingFileHandler).
    pub max_bytes: u64,
    /// Rotated files kept; 0 = no size rollover.
    pub backup_count: u32,
    /// Timed rotation, if any.
    pub when: Option<When>,
    /// Units of `when` per interval (default 1).
    pub interval: u32,
    /// Time of day (`HH:MM[:SS]`) for midnight/weekday rollover.
    pub at_time: Option<String>,
    /// Compress rotated files.
    pub compress: Option<Compress>,
    /// Longest a record waits in memory before it is written (default 100).
    pub flush_ms: u64,
    /// fsync after each write batch.
    pub fsync: bool,
    /// `"a"` (append, the default) or `"w"` (truncate at open), as FileHandler.
    pub truncate: bool,
    /// `Some(bound on open files)` when `path` is a template (`{field}`
    /// or `%` fields, kept escaped); `None` for a literal path.
    pub max_open_files: Option<usize>,
}

/// `when_full` of a forward or nats output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// `"block"`: backpressure to the inputs (the default).
    #[default]
    Block,
    /// `"drop_newest"`: drop the newest records, counted.
    DropNewest,
}

/// Where a forward output sends.
#[derive(Clone, Debug, PartialEq)]
pub enum ForwardTarget {
    /// TCP `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A `forward` output.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardOutputConfig {
    /// The peer.
    pub target: ForwardTarget,
    /// Frame encoding.
    pub encoder: Encoder,
    /// Records buffered while the peer is away (default 100,000).
    pub buffer_records: usize,
    /// What to do when the buffer is full.
    pub when_full: WhenFull,
    /// Acknowledged delivery between two logrelays.
    pub ack: bool,
    /// The Fluentd tag of every record (`encoder: fluent` only).
    pub tag: String,
    /// Ask Fluentd for a chunk ack and re-send until it comes
    /// (`encoder: fluent` only).
    pub require_ack: bool,
    /// Where the buffer overflows to disk instead of blocking, and what is
    /// still unsent at shutdown waits for the next start.
    pub spool_dir: Option<PathBuf>,
    /// TLS to the peer (`tls`; TCP only).
    pub tls: Option<crate::tls::ClientTls>,
    /// The shared secret to present in the acknowledged handshake
    /// (`token_file`; needs `ack`).
    pub token: Option<crate::auth::Token>,
}

/// A `nats` output.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsOutputConfig {
    /// The cluster.
    pub connect: NatsConnect,
    /// The stream.
    pub stream: String,
    /// The subject template.
    pub subject: String,
    /// The subjects of the stream when logrelay creates it.
    pub stream_subjects: Vec<String>,
    /// Replicas when logrelay creates the stream.
    pub replicas: usize,
    /// Payload encoding.
    pub encoder: Encoder,
    /// Publishes awaiting their ack at once.
    pub max_in_flight: usize,
    /// Pack records into messages of up to this many bytes; 0: one
    /// message per record.
    pub batch_bytes: usize,
    /// Records buffered while the cluster is away.
    pub buffer_records: usize,
    /// What to do when the buffer is full.
    pub when_full: WhenFull,
    /// Overflow and shutdown spool.
    pub spool_dir: Option<PathBuf>,
}

/// TLS towards the NATS servers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Extra root CA file.
    pub ca: Option<PathBuf>,
    /// Client certificate and key files.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// How to reach a NATS cluster: shared by the output and the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConnect {
    /// Server URLs as written.
    pub servers: Vec<String>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// A `.creds` file.
    pub creds_file: Option<PathBuf>,
    /// TLS, if asked for.
    pub tls: Option<NatsTls>,
}

/// Default Fluentd `tag` of a forward output with `encoder: fluent`.
pub const DEFAULT_FLUENT_TAG: &str = "logrelay";

/// One route: which records, through which filters, to which outputs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RouteConfig {
    /// Input names; `None` = every input.
    pub from: Option<Vec<String>>,
    /// Logger-name prefixes (dotted hierarchy); `None` = every logger.
    pub loggers: Option<Vec<String>>,
    /// Logger-name prefixes that do not match even when `loggers` does
    /// (dictConfig `propagate: false` below a logger with handlers).
    pub exclude_loggers: Vec<String>,
    /// `logging.Filter(name)` filters that must all pass (dictConfig handler
    /// filters).
    pub name_filters: Vec<String>,
    /// `(logger, filter)`: a record whose name is exactly `logger` must also
    /// pass `logging.Filter(filter)` (dictConfig logger filters, which apply
    /// only to records logged on that very logger).
    pub logger_filters: Vec<(String, String)>,
    /// The lowest levelno that passes; `None` = all.
    pub min_level: Option<i64>,
    /// Filter names, applied in order.
    pub filters: Vec<String>,
    /// Output names.
    pub to: Vec<String>,
}

impl RouteConfig {
    /// Whether a record from logger `name` passes the route's logger
    /// conditions (`loggers`, `exclude_loggers`, `name_filters`,
    /// `logger_filters`); the one definition the pipeline and the config
    /// checks share.
    pub fn matches_name(&self, name: &str) -> bool {
        use crate::record::logger_matches;
        self.loggers
            .as_ref()
            .is_none_or(|ls| ls.iter().any(|l| logger_matches(l, name)))
            && !self.exclude_loggers.iter().any(|e| logger_matches(e, name))
            && self.name_filters.iter().all(|f| logger_matches(f, name))
            && self
                .logger_filters
                .iter()
                .all(|(l, f)| l != name || logger_matches(f, name))
    }
}

/// The metrics endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` and `/health` on.
    pub address: String,
    /// The file holding the token every request must present (required
    /// off loopback), resolved against the config's directory.
    pub token_file: Option<PathBuf>,
}
