//! The serde mirror of `listener.json`: what the file may say, field by
//! field, before any check that spans fields.
//!
//! Components are tagged by a key (`"type"` for inputs, filters and
//! outputs; `"class"` for dictConfig handlers). `#[serde(tag = "type")]`
//! would buffer each object and lose the position and the field path of
//! errors, so the file is read in two passes over the same text:
//!
//! 1. `read::Probes` reads only the tags (and dictConfig `()` factories),
//!    ignoring every other key;
//! 2. `read::FileSeed` reads the whole file through `serde_path_to_error`,
//!    deserializing each component straight into the struct of its kind
//!    ([`NamedSeed`](super::seed::NamedSeed)), so an error inside it still
//!    carries serde_json's line:column and the full path
//!    (`outputs.file.max_bytes`).
//!
//! Every struct denies unknown fields. No `flatten` (it disables
//! `deny_unknown_fields`): keys shared by several kinds are repeated. The
//! `"logging"` key (a dictConfig) has its own mirror, in
//! [`cookbook::dict`](super::cookbook::dict).

use serde::de::{IgnoredAny, MapAccess};
use serde::Deserialize;

use super::cookbook::dict::DictConfig;
use super::seed::{LevelFile, Typed};
use super::{Compress, DecoderKind, Encoder, Encoding, Framing, OnError, Style, WhenFull};

// ---------------------------------------------------------------------------
// The file.

/// The whole `listener.json`. Native keys and the cookbook listener's keys
/// (`port`, `host`, `socket`, `logging`) may be mixed.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// Named inputs: `"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:9020"}}`.
    pub inputs: Option<Vec<(String, InputFile)>>,
    /// Named filters: `"filters": {"errors": {"type": "wasm", "path": "plugins/min_level.wasm"}}`.
    pub filters: Option<Vec<(String, FilterFile)>>,
    /// Named outputs: `"outputs": {"console": {"type": "stdout"}}`.
    pub outputs: Option<Vec<(String, OutputFile)>>,
    /// Routes, in order: `"routes": [{"from": ["app"], "to": ["console"]}]`.
    /// Absent: every input to every output.
    pub routes: Option<Vec<RouteFile>>,
    /// Seconds a removed input's connections are still served after a
    /// reload: `"drain_seconds": 30` (the default).
    pub drain_seconds: Option<u64>,
    /// Milliseconds shutdown waits for connections to go quiet:
    /// `"shutdown_timeout_ms": 5000` (the default).
    pub shutdown_timeout_ms: Option<u64>,
    /// Bytes of partial frames buffered across all connections before the
    /// one stalled longest is closed: `"max_pending_bytes": 268435456`
    /// (the default, 256 MiB).
    pub max_pending_bytes: Option<u64>,
    /// Where what acknowledged senders were confirmed is kept across
    /// restarts: `"state_dir": ".logrelay-state"` (the default, beside
    /// listener.json).
    pub state_dir: Option<String>,
    /// Prometheus endpoint: `"metrics": {"address": "127.0.0.1:9102"}`.
    pub metrics: Option<MetricsFile>,
    /// Cookbook: TCP port of the `cookbook` input: `"port": 9020` (the default).
    pub port: Option<Option<u16>>,
    /// Cookbook: host of the `cookbook` input: `"host": "localhost"` (the default).
    pub host: Option<Option<String>>,
    /// Cookbook: a Unix socket path instead of TCP: `"socket": "run/listener.sock"`.
    pub socket: Option<Option<String>>,
    /// Cookbook: a `logging.config.dictConfig` dictionary:
    /// `"logging": {"version": 1, "handlers": {...}, "root": {...}}`.
    pub logging: Option<DictConfig>,
}

/// The `type` of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputType {
    /// `"tcp"`.
    Tcp,
    /// `"unix"`.
    Unix,
    /// `"udp"`.
    Udp,
    /// `"nats"`.
    Nats,
}

/// One input, by type.
#[derive(Debug)]
pub enum InputFile {
    /// `{"type": "tcp", ...}`.
    Tcp(TcpInputFile),
    /// `{"type": "unix", ...}`.
    Unix(UnixInputFile),
    /// `{"type": "udp", ...}`.
    Udp(UdpInputFile),
    /// `{"type": "nats", ...}`.
    Nats(NatsInputFile),
}

impl Typed for InputFile {
    type Kind = InputType;
    fn next_value<'de, A: MapAccess<'de>>(kind: InputType, map: &mut A) -> Result<Self, A::Error> {
        Ok(match kind {
            InputType::Tcp => InputFile::Tcp(map.next_value()?),
            InputType::Unix => InputFile::Unix(map.next_value()?),
            InputType::Udp => InputFile::Udp(map.next_value()?),
            InputType::Nats => InputFile::Nats(map.next_value()?),
        })
    }
}

/// A TCP input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tcp input object")]
pub struct TcpInputFile {
    /// `"type": "tcp"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"address": "127.0.0.1:9020"`: host:port (IPv6 as `"[::1]:9020"`).
    /// A non-loopback host (`"0.0.0.0:9020"`) is accepted: writing it in
    /// the config is the explicit choice a non-loopback listener needs
    /// (docs/decisions.md, "Config and files").
    pub address: String,
    /// `"decoder": "pickle"` (default) | `"json"` | `"msgpack"`.
    pub decoder: Option<DecoderKind>,
    /// `"framing": "length_prefixed"` (default) | `"newline"` (json only).
    pub framing: Option<Framing>,
    /// `"max_frame_bytes": 16777216` (default 16 MiB); a larger frame
    /// closes the connection.
    pub max_frame_bytes: Option<u64>,
    /// `"frame_timeout_ms": 60000` (the default): close a connection
    /// silent that long in the middle of a frame.
    pub frame_timeout_ms: Option<u64>,
    /// `"max_connections": 10000` (the default): close new connections
    /// over this many open ones.
    pub max_connections: Option<u64>,
    /// `"token_file": "secrets/relay.token"`: accept only senders that
    /// present this shared secret (logrelay's acknowledged handshake).
    pub token_file: Option<String>,
    /// `"tls": {"cert": "tls/server.pem", "key": "tls/server.key",
    /// "client_ca": "tls/ca.pem"}`: serve TLS (`client_ca`: require client
    /// certificates signed by that CA).
    pub tls: Option<ServerTlsFile>,
}

/// `"tls"` of a tcp input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tls object with cert and key")]
pub struct ServerTlsFile {
    /// `"cert": "tls/server.pem"`: the certificate chain (PEM).
    pub cert: String,
    /// `"key": "tls/server.key"`: its private key (PEM).
    pub key: String,
    /// `"client_ca": "tls/ca.pem"`: require client certificates it signed.
    pub client_ca: Option<String>,
}

/// `"tls"` of a forward output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tls object with ca")]
pub struct ClientTlsFile {
    /// `"ca": "tls/ca.pem"`: the CA the receiver's certificate chains to.
    pub ca: String,
    /// `"cert": "tls/client.pem"`: this sender's certificate (mutual TLS).
    pub cert: Option<String>,
    /// `"key": "tls/client.key"`: its private key.
    pub key: Option<String>,
    /// `"server_name": "logs.internal"`: the name the receiver's
    /// certificate must carry (default: the address's host).
    pub server_name: Option<String>,
}

/// A Unix stream socket input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a unix input object")]
pub struct UnixInputFile {
    /// `"type": "unix"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"path": "run/listener.sock"`, relative to the config's directory.
    pub path: String,
    /// `"mode": "0660"`: socket file permissions, an octal string.
    pub mode: Option<String>,
    /// `"decoder": "pickle"` (default) | `"json"` | `"msgpack"`.
    pub decoder: Option<DecoderKind>,
    /// `"framing": "length_prefixed"` (default) | `"newline"` (json only).
    pub framing: Option<Framing>,
    /// `"max_frame_bytes": 16777216` (default 16 MiB).
    pub max_frame_bytes: Option<u64>,
    /// `"frame_timeout_ms": 60000` (the default): close a connection
    /// silent that long in the middle of a frame.
    pub frame_timeout_ms: Option<u64>,
    /// `"max_connections": 10000` (the default): close new connections
    /// over this many open ones.
    pub max_connections: Option<u64>,
    /// `"token_file": "secrets/relay.token"`: accept only senders that
    /// present this shared secret (logrelay's acknowledged handshake).
    pub token_file: Option<String>,
}

/// A UDP input (DatagramHandler).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a udp input object")]
pub struct UdpInputFile {
    /// `"type": "udp"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"address": "127.0.0.1:9021"`: host:port.
    pub address: String,
    /// `"decoder": "pickle"` (default) | `"json"` | `"msgpack"`.
    pub decoder: Option<DecoderKind>,
    /// `"framing": "length_prefixed"` (default) | `"newline"` (json only).
    pub framing: Option<Framing>,
    /// `"max_frame_bytes": 65535`: a datagram is never larger than 64 KiB anyway.
    pub max_frame_bytes: Option<u64>,
}

/// A nats input: a durable pull consumer on a JetStream stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a nats input object")]
pub struct NatsInputFile {
    /// `"type": "nats"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"servers": ["nats://127.0.0.1:4222", ...]`.
    pub servers: Vec<String>,
    /// `"stream": "LOGS"`.
    pub stream: String,
    /// `"consumer": "central"`: the durable consumer, shared by every
    /// logrelay that names it.
    pub consumer: String,
    /// `"batch": 512`: messages asked for per pull.
    pub batch: Option<u64>,
    /// `"ack_wait_ms": 30000`: how long the server waits for a member's
    /// ack before handing the message to another (when it creates the
    /// consumer).
    pub ack_wait_ms: Option<u64>,
    /// `"token_file"`, as the output's.
    pub token_file: Option<String>,
    /// `"creds_file"`, as the output's.
    pub creds_file: Option<String>,
    /// `"tls"`, as the output's.
    pub tls: Option<NatsTlsFile>,
}

/// The `type` of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    /// `"wasm"`.
    Wasm,
}

/// One filter, by type.
#[derive(Debug)]
pub enum FilterFile {
    /// `{"type": "wasm", ...}`.
    Wasm(WasmFilterFile),
}

impl Typed for FilterFile {
    type Kind = FilterType;
    fn next_value<'de, A: MapAccess<'de>>(kind: FilterType, map: &mut A) -> Result<Self, A::Error> {
        Ok(match kind {
            FilterType::Wasm => FilterFile::Wasm(map.next_value()?),
        })
    }
}

/// A WebAssembly filter plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a wasm filter object")]
pub struct WasmFilterFile {
    /// `"type": "wasm"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"path": "plugins/min_level.wasm"` (or `.wat`), relative to the config's directory.
    pub path: String,
    /// `"config": {"min_level": "ERROR"}`: any JSON, handed to the guest by
    /// `config_get` (default `{}`).
    pub config: Option<serde_json::Value>,
    /// `"fuel": 1000000`: fuel per `filter()` call.
    pub fuel: Option<u64>,
    /// `"timeout_ms": 100`: wall-clock limit per call.
    pub timeout_ms: Option<u64>,
    /// `"max_memory_bytes": 16777216`: cap on the guest's memory.
    pub max_memory_bytes: Option<u64>,
    /// `"on_error": "pass"` (default) | `"drop"`.
    pub on_error: Option<OnError>,
}

/// The `type` of an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputType {
    /// `"file"`.
    File,
    /// `"stdout"`.
    Stdout,
    /// `"forward"`.
    Forward,
    /// `"nats"`.
    Nats,
}

/// One output, by type.
#[derive(Debug)]
pub enum OutputFile {
    /// `{"type": "file", ...}`.
    File(FileOutputFile),
    /// `{"type": "stdout", ...}`.
    Stdout(StdoutOutputFile),
    /// `{"type": "forward", ...}`.
    Forward(ForwardOutputFile),
    /// `{"type": "nats", ...}`.
    Nats(NatsOutputFile),
}

impl Typed for OutputFile {
    type Kind = OutputType;
    fn next_value<'de, A: MapAccess<'de>>(kind: OutputType, map: &mut A) -> Result<Self, A::Error> {
        Ok(match kind {
            OutputType::File => OutputFile::File(map.next_value()?),
            OutputType::Stdout => OutputFile::Stdout(map.next_value()?),
            OutputType::Forward => OutputFile::Forward(map.next_value()?),
            OutputType::Nats => OutputFile::Nats(map.next_value()?),
        })
    }
}

/// A (rotating) file output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a file output object")]
pub struct FileOutputFile {
    /// `"type": "file"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"path": "run/app.log"`, relative to the config's directory; parent
    /// directories are created.
    pub path: String,
    /// `"encoding": "text"` (default) | `"json"`.
    pub encoding: Option<Encoding>,
    /// `"format": "%(asctime)s %(levelname)-8s %(name)s %(message)s"` (the default).
    pub format: Option<String>,
    /// `"datefmt": "%Y-%m-%dT%H:%M:%S"`: strftime for `asctime` (default
    /// Python's `%Y-%m-%d %H:%M:%S,mmm`).
    pub datefmt: Option<String>,
    /// `"style": "%"` (default) | `"{"` | `"$"`.
    pub style: Option<Style>,
    /// `"utc": true`: times (formatting and timed rotation) in UTC (default false).
    pub utc: Option<bool>,
    /// `"max_bytes": 10485760`: rotate by size, as RotatingFileHandler
    /// (characters; default 0 = never).
    pub max_bytes: Option<u64>,
    /// `"backup_count": 5`: rotated files kept (default 0).
    pub backup_count: Option<u32>,
    /// `"when": "midnight"`: rotate by time, as TimedRotatingFileHandler:
    /// `S`, `M`, `H`, `D`, `midnight`, `W0`..`W6` (case-insensitive).
    pub when: Option<String>,
    /// `"interval": 1`: units of `when` per file (default 1).
    pub interval: Option<u32>,
    /// `"at_time": "03:00"`: time of day for `midnight`/`W0`..`W6` rollover (`HH:MM[:SS]`).
    pub at_time: Option<String>,
    /// `"compress": "gzip"`: compress rotated files.
    pub compress: Option<Compress>,
    /// `"flush_ms": 100`: longest a record waits before it is written (default 100).
    pub flush_ms: Option<u64>,
    /// `"fsync": true`: fsync after each write batch (default false).
    pub fsync: Option<bool>,
    /// `"truncate": true`: empty the file when opened, as FileHandler's
    /// mode `"w"` (default false: append).
    pub truncate: Option<bool>,
    /// `"max_open_files": 256`: with a path template
    /// (`"path": "run/{name}-%Y-%m-%d.log"`), how many of its files stay
    /// open at once (default 256); the least recently used is closed
    /// beyond it and reopened for append when needed again.
    pub max_open_files: Option<u64>,
}

/// A stdout output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a stdout output object")]
pub struct StdoutOutputFile {
    /// `"type": "stdout"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"encoding": "text"` (default) | `"json"`.
    pub encoding: Option<Encoding>,
    /// `"format": "%(levelname)s %(message)s"` (default: the embedded default format).
    pub format: Option<String>,
    /// `"datefmt": "%H:%M:%S"`.
    pub datefmt: Option<String>,
    /// `"style": "{"`.
    pub style: Option<Style>,
    /// `"utc": true`.
    pub utc: Option<bool>,
}

/// A forward output: another listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a forward output object")]
pub struct ForwardOutputFile {
    /// `"type": "forward"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"address": "logs.internal:9020"`: the peer's host:port (or give `path`).
    pub address: Option<String>,
    /// `"path": "run/central.sock"`: the peer's Unix socket (or give `address`).
    pub path: Option<String>,
    /// `"encoder": "pickle"` (default) | `"json"` | `"msgpack"` | `"fluent"`.
    pub encoder: Option<Encoder>,
    /// `"buffer_records": 100000` (the default): records kept while the peer is away.
    pub buffer_records: Option<u64>,
    /// `"when_full": "block"` (default) | `"drop_newest"`.
    pub when_full: Option<WhenFull>,
    /// `"ack": true`: acknowledged delivery to another logrelay (default false).
    pub ack: Option<bool>,
    /// `"tag": "app.python"`: the Fluentd tag (`encoder: "fluent"` only;
    /// default `"logrelay"`).
    pub tag: Option<String>,
    /// `"require_ack": true`: Fluentd's chunk/ack option, re-send until
    /// acknowledged (`encoder: "fluent"` only; default false).
    pub require_ack: Option<bool>,
    /// `"spool_dir": "spool/central"`: overflow the buffer to disk instead
    /// of blocking, and keep what is unsent across a restart.
    pub spool_dir: Option<String>,
    /// `"tls": {"ca": "tls/ca.pem"}`: TLS to the peer (tcp only).
    pub tls: Option<ClientTlsFile>,
    /// `"token_file": "secrets/relay.token"`: the shared secret the
    /// receiving input requires (needs `"ack": true`).
    pub token_file: Option<String>,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route object")]
pub struct RouteFile {
    /// `"from": ["app", "local"]`: input names (default: every input).
    pub from: Option<Vec<String>>,
    /// `"loggers": ["payments"]`: logger-name prefixes with Python's dotted
    /// hierarchy (`payments` matches `payments.api`, not `paymentsx`;
    /// default: every logger).
    pub loggers: Option<Vec<String>>,
    /// `"min_level": "WARNING"` or `30`: the lowest level that passes.
    pub min_level: Option<LevelFile>,
    /// `"filters": ["errors_only"]`: filter names, applied in order.
    pub filters: Option<Vec<String>>,
    /// `"to": ["file", "console"]`: output names (required).
    pub to: Option<Vec<String>>,
}

/// A nats output: publishes every record to a JetStream stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a nats output object")]
pub struct NatsOutputFile {
    /// `"type": "nats"`.
    #[serde(rename = "type")]
    pub kind: IgnoredAny,
    /// `"servers": ["nats://127.0.0.1:4222", ...]`: any of the cluster's servers.
    pub servers: Vec<String>,
    /// `"stream": "LOGS"`: the JetStream stream.
    pub stream: String,
    /// `"subject": "logs.{name}"` (the default): placeholders as in file path templates.
    pub subject: Option<String>,
    /// `"replicas": 3`: replicas of the stream when logrelay creates it (default 1).
    pub replicas: Option<u64>,
    /// `"encoder": "json"` (default) | `"msgpack"` | `"pickle"`.
    pub encoder: Option<Encoder>,
    /// `"max_in_flight": 1024`: publishes awaiting their ack at once.
    pub max_in_flight: Option<u64>,
    /// `"batch_bytes": 65536`: pack consecutive records of one subject into
    /// one message of up to this many bytes (default 0: one message per record).
    pub batch_bytes: Option<u64>,
    /// `"buffer_records": 100000` (the default): records kept while the cluster is away.
    pub buffer_records: Option<u64>,
    /// `"when_full": "block"` (default) | `"drop_newest"`.
    pub when_full: Option<WhenFull>,
    /// `"spool_dir": "spool/nats"`: overflow to disk, keep across restarts.
    pub spool_dir: Option<String>,
    /// `"token_file": "secrets/nats.token"`: a file holding the token.
    pub token_file: Option<String>,
    /// `"creds_file": "secrets/logrelay.creds"`: NATS credentials (JWT + nkey seed).
    pub creds_file: Option<String>,
    /// `"tls": {"ca": ..., "cert": ..., "key": ...}`.
    pub tls: Option<NatsTlsFile>,
}

/// `"tls"` of a nats output or input: the keys of the forward output's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tls object")]
pub struct NatsTlsFile {
    /// `"ca": "certs/ca.pem"`: the CA that signed the servers' certificates
    /// (default: the system's roots).
    pub ca: Option<String>,
    /// `"cert": "certs/client.pem"`: a client certificate (with `key`).
    pub cert: Option<String>,
    /// `"key": "certs/client.key"`: its private key.
    pub key: Option<String>,
    /// `"server_name"`: not supported by the NATS client (each server's
    /// host name is checked); a config error names it.
    pub server_name: Option<String>,
}

/// The metrics endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a metrics object")]
pub struct MetricsFile {
    /// `"address": "127.0.0.1:9102"`: serves `/metrics`, `/health` and
    /// the status page.
    pub address: String,
    /// `"token_file": "secrets/admin.token"`: requests must carry this
    /// token (`Authorization: Bearer`, or `?token=`); required when
    /// `address` is not on loopback.
    pub token_file: Option<String>,
}
