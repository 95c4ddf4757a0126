//! Reading and checking a config file into a [`Config`].
//!
//! Two passes of serde over the text (see [`super::file`]) give the file's
//! structure with exact positions for type errors; then the checks that
//! span fields run over the whole file and report every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeSeed;

use super::cookbook;
use super::error::Report;
use super::file::*;
use super::*;
use crate::record::level_from_name;

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
        drain_seconds: DEFAULT_DRAIN_SECONDS,
        shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
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
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut report = Report::new(path, text);
    let probes: Probes = match run(text, std::marker::PhantomData) {
        Ok(p) => p,
        Err(e) => {
            report.serde(e);
            return Err(report
                .finish()
                .err()
                .unwrap_or(ConfigError::Invalid(Vec::new())));
        }
    };
    let kinds = kinds(&probes, &mut report);
    let file = match run(text, FileSeed { kinds: &kinds }) {
        Ok(f) => f,
        Err(e) => {
            report.serde(e);
            return Err(report
                .finish()
                .err()
                .unwrap_or(ConfigError::Invalid(Vec::new())));
        }
    };
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut b = Builder {
        report,
        dir,
        kinds: &kinds,
    };
    let mut config = b.build(file);
    config.source = Some(path.to_path_buf());
    config.warnings = b.report.finish()?;
    Ok(config)
}

/// Deserialize the whole text through `seed`, tracking the path of errors,
/// and refuse trailing characters.
fn run<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, serde_path_to_error::Error<serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let value = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|e| serde_path_to_error::Error::new(track.path(), e))?;
    de.end().map_err(|e| {
        serde_path_to_error::Error::new(serde_path_to_error::Track::new().path(), e)
    })?;
    Ok(value)
}

/// Resolve the tags pass 1 found; a wrong tag is reported and its
/// component skipped by pass 2.
fn kinds(p: &Probes, r: &mut Report) -> Kinds {
    fn tagged<K: Copy>(
        section: &str,
        probes: &Option<Named<Probe>>,
        allowed: &[(&str, K)],
        r: &mut Report,
    ) -> Vec<(String, Option<K>)> {
        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
        let list = one_of(&names);
        let Some(probes) = probes else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, probe) in &probes.0 {
            let path = format!("{section}.{name}");
            let kind = match &probe.kind {
                None => {
                    r.error(&path, format!("missing `type` ({list})"));
                    None
                }
                Some(t) => match allowed.iter().find(|(n, _)| n == t) {
                    Some((_, k)) => Some(*k),
                    None => {
                        r.error(
                            format!("{path}.type"),
                            format!("unknown type {t:?} (expected {list})"),
                        );
                        None
                    }
                },
            };
            out.push((name.clone(), kind));
        }
        out
    }
    let mut k = Kinds {
        inputs: tagged(
            "inputs",
            &p.inputs,
            &[
                ("tcp", InputType::Tcp),
                ("unix", InputType::Unix),
                ("udp", InputType::Udp),
            ],
            r,
        ),
        filters: tagged("filters", &p.filters, &[("wasm", FilterType::Wasm)], r),
        outputs: tagged(
            "outputs",
            &p.outputs,
            &[
                ("file", OutputType::File),
                ("stdout", OutputType::Stdout),
                ("forward", OutputType::Forward),
            ],
            r,
        ),
        ..Kinds::default()
    };
    if let Some(l) = &p.logging {
        cookbook::kinds(l, &mut k, r);
    }
    k
}

/// `a`, `a or b`, `a, b or c`.
pub(super) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Upper bounds on numbers, so a typo (an extra zero or three) is caught
/// at load instead of as a 100 GB allocation.
const MAX_FRAME_BYTES: u64 = 1 << 30;
const MAX_BUFFER_RECORDS: u64 = 10_000_000;
const MAX_FLUSH_MS: u64 = 3_600_000;
const MAX_DRAIN_SECONDS: u64 = 86_400;
const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 3_600_000;
const MAX_FILTER_TIMEOUT_MS: u64 = 60_000;
/// Linux `sun_path` holds 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;
/// One WebAssembly page: a smaller memory cap can never instantiate.
const WASM_PAGE: u64 = 65_536;

/// Checks the parsed file and builds the [`Config`], reporting as it goes.
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

impl Builder<'_, '_> {
    fn build(&mut self, f: FileConfig) -> Config {
        let mut inputs = BTreeMap::new();
        let mut input_paths = BTreeMap::new();
        for (name, i) in f.inputs.iter().flatten() {
            let path = format!("inputs.{name}");
            if let Some(c) = self.input(&path, i) {
                inputs.insert(name.clone(), c);
            }
            input_paths.insert(name.clone(), path);
        }
        if let Some((input, path)) = cookbook::shorthand(&f, self) {
            if input_paths.contains_key(cookbook::INPUT_NAME) {
                self.report.error(
                    format!("inputs.{}", cookbook::INPUT_NAME),
                    format!(
                        "the name {:?} is taken by the cookbook listener's input (from `{path}`); rename this input",
                        cookbook::INPUT_NAME
                    ),
                );
            } else {
                inputs.insert(cookbook::INPUT_NAME.to_string(), input);
                input_paths.insert(cookbook::INPUT_NAME.to_string(), path);
            }
        }
        // Broken components (already reported) still count as names, so a
        // route naming them does not add a second, misleading error.
        for (name, _) in &self.kinds.inputs {
            input_paths
                .entry(name.clone())
                .or_insert_with(|| format!("inputs.{name}"));
        }

        let mut filters = BTreeMap::new();
        for (name, flt) in f.filters.iter().flatten() {
            let FilterFile::Wasm(w) = flt;
            if let Some(c) = self.wasm_filter(&format!("filters.{name}"), w) {
                filters.insert(name.clone(), FilterConfig::Wasm(c));
            }
        }
        let filter_names: Vec<String> = self.kinds.filters.iter().map(|(n, _)| n.clone()).collect();

        let mut outputs = BTreeMap::new();
        let mut output_origins: BTreeMap<String, Origin> = BTreeMap::new();
        for (name, o) in f.outputs.iter().flatten() {
            let path = format!("outputs.{name}");
            if let Some(c) = self.output(&path, o) {
                outputs.insert(name.clone(), c);
            }
        }
        for (name, _) in &self.kinds.outputs {
            output_origins.insert(
                name.clone(),
                Origin {
                    path: format!("outputs.{name}"),
                    warn_unused: true,
                },
            );
        }
        let native_outputs: Vec<String> = output_origins.keys().cloned().collect();

        let mut routes: Vec<(RouteConfig, Origin)> = Vec::new();
        match &f.routes {
            Some(list) => {
                for (i, r) in list.iter().enumerate() {
                    let path = format!("routes[{i}]");
                    let route = self.route(&path, r, &input_paths, &filter_names, &output_origins);
                    routes.push((
                        route,
                        Origin {
                            path,
                            warn_unused: false,
                        },
                    ));
                }
            }
            None if !native_outputs.is_empty() => routes.push((
                RouteConfig {
                    to: native_outputs,
                    ..RouteConfig::default()
                },
                Origin {
                    path: String::new(),
                    warn_unused: false,
                },
            )),
            None => {}
        }

        if let Some(dict) = &f.logging {
            let generated = cookbook::translate(dict, self);
            for (name, output, origin) in generated.outputs {
                if let Some(other) = output_origins.get(&name) {
                    let what = format!(
                        "handler {name:?} would become an output, but `{}` already has that name; rename one",
                        other.path
                    );
                    self.report.error(&origin.path, what);
                    continue;
                }
                outputs.insert(name.clone(), output);
                output_origins.insert(name, origin);
            }
            routes.extend(generated.routes);
        }

        if input_paths.is_empty() {
            self.report.error(
                "",
                "no inputs: add `inputs`, or the cookbook listener's `port` or `socket`",
            );
        }
        if output_origins.is_empty() {
            self.report.error(
                "",
                "no outputs: add `outputs`, or handlers under `logging` (a dictConfig)",
            );
        } else if routes.is_empty() {
            self.report
                .error("routes", "no routes: every record would be dropped");
        }
        self.check_addresses(&inputs, &input_paths, f.metrics.as_ref());
        self.warn_unused(&filters, &routes, &output_origins);
        self.warn_overlaps(&routes, &output_origins);

        let metrics = f.metrics.as_ref().and_then(|m| {
            self.host_port("metrics.address", &m.address, false)
                .map(|_| MetricsConfig {
                    address: m.address.clone(),
                })
        });
        Config {
            source: None,
            inputs,
            filters,
            outputs,
            routes: routes.into_iter().map(|(r, _)| r).collect(),
            drain_seconds: self.bounded(
                "drain_seconds",
                f.drain_seconds,
                DEFAULT_DRAIN_SECONDS,
                0,
                MAX_DRAIN_SECONDS,
            ),
            shutdown_timeout_ms: self.bounded(
                "shutdown_timeout_ms",
                f.shutdown_timeout_ms,
                DEFAULT_SHUTDOWN_TIMEOUT_MS,
                0,
                MAX_SHUTDOWN_TIMEOUT_MS,
            ),
            metrics,
            warnings: Vec::new(),
        }
    }

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

    /// Check `host:port`; `Some((host, port))` when well formed.
    /// `port 0` (any free port) is allowed for listeners only.
    pub(super) fn host_port(
        &mut self,
        path: &str,
        address: &str,
        connect: bool,
    ) -> Option<(String, u16)> {
        match split_host_port(address) {
            Ok((_, 0)) if connect => {
                self.report
                    .error(path, format!("{address:?}: port 0 cannot be connected to"));
                None
            }
            Ok(hp) => Some(hp),
            Err(what) => {
                self.report.error(path, format!("{address:?}: {what}"));
                None
            }
        }
    }

    fn input(&mut self, path: &str, i: &InputFile) -> Option<InputConfig> {
        let (kind, decoder, framing, max) = match i {
            InputFile::Tcp(t) => {
                self.host_port(&format!("{path}.address"), &t.address, false);
                let kind = InputKind::Tcp {
                    address: t.address.clone(),
                };
                (kind, t.decoder, t.framing, t.max_frame_bytes)
            }
            InputFile::Udp(u) => {
                self.host_port(&format!("{path}.address"), &u.address, false);
                let kind = InputKind::Udp {
                    address: u.address.clone(),
                };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
            InputFile::Unix(u) => {
                let sock = self.socket_path(&format!("{path}.path"), &u.path);
                let mode = u.mode.as_deref().and_then(|m| {
                    parse_mode(m)
                        .map_err(|what| self.report.error(format!("{path}.mode"), what))
                        .ok()
                });
                let kind = InputKind::Unix { path: sock, mode };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
        };
        let decoder = match decoder.unwrap_or(DecoderName::Pickle) {
            DecoderName::Pickle => DecoderKind::Pickle,
            DecoderName::Json => DecoderKind::Json,
            DecoderName::Msgpack => DecoderKind::Msgpack,
        };
        let framing = match framing.unwrap_or(FramingName::LengthPrefixed) {
            FramingName::LengthPrefixed => Framing::LengthPrefixed,
            FramingName::Newline => Framing::Newline,
        };
        if framing == Framing::Newline && decoder != DecoderKind::Json {
            self.report.error(
                format!("{path}.framing"),
                format!(
                    "newline framing needs the json decoder (this input decodes {}); use length_prefixed",
                    decoder.as_str()
                ),
            );
        }
        let max_frame_bytes = self.bounded(
            &format!("{path}.max_frame_bytes"),
            max,
            DEFAULT_MAX_FRAME_BYTES as u64,
            1,
            MAX_FRAME_BYTES,
        );
        Some(InputConfig {
            kind,
            decoder,
            framing,
            max_frame_bytes: usize::try_from(max_frame_bytes).unwrap_or(DEFAULT_MAX_FRAME_BYTES),
        })
    }

    fn wasm_filter(&mut self, path: &str, w: &WasmFilterFile) -> Option<WasmFilterConfig> {
        let plugin = self.resolve(&format!("{path}.path"), &w.path);
        if let Some(0) = w.fuel {
            self.report.error(
                format!("{path}.fuel"),
                "0 fuel would stop every call at once",
            );
        }
        let timeout_ms = w.timeout_ms.map(|t| {
            self.bounded(
                &format!("{path}.timeout_ms"),
                Some(t),
                100,
                1,
                MAX_FILTER_TIMEOUT_MS,
            )
        });
        if let Some(m) = w.max_memory_bytes {
            if m < WASM_PAGE {
                self.report.error(
                    format!("{path}.max_memory_bytes"),
                    format!("{m} is less than one WebAssembly page ({WASM_PAGE} bytes)"),
                );
            }
        }
        Some(WasmFilterConfig {
            path: plugin,
            config: w.config.clone().unwrap_or_else(|| serde_json::json!({})),
            fuel: w.fuel,
            timeout_ms,
            max_memory_bytes: w.max_memory_bytes,
            on_error: match w.on_error {
                Some(OnErrorName::Drop) => OnError::Drop,
                Some(OnErrorName::Pass) | None => OnError::Pass,
            },
        })
    }

    fn output(&mut self, path: &str, o: &OutputFile) -> Option<OutputConfig> {
        Some(match o {
            OutputFile::Stdout(s) => {
                let encoding = encoding(s.encoding);
                let text = text_format(&s.format, &s.datefmt, s.style, s.utc, DEFAULT_FORMAT);
                self.check_text(path, encoding, s.format.is_some(), &text);
                OutputConfig::Stream(StreamOutputConfig {
                    stream: StreamKind::Stdout,
                    encoding,
                    text,
                })
            }
            OutputFile::File(f) => OutputConfig::File(self.file_output(path, f)),
            OutputFile::Forward(f) => OutputConfig::Forward(self.forward_output(path, f)?),
        })
    }

    /// Check a text layout: the format must compile (`encoding: text`) or
    /// is pointless (`encoding: json`).
    fn check_text(
        &mut self,
        path: &str,
        encoding: Encoding,
        format_given: bool,
        text: &TextFormat,
    ) {
        match encoding {
            Encoding::Text => self.check_format(&format!("{path}.format"), text),
            Encoding::Json if format_given => self.report.warn(
                format!("{path}.format"),
                "ignored: this output writes JSON (`encoding: json`)",
            ),
            Encoding::Json => {}
        }
    }

    /// Compile a format once, at load, so a bad one is a config error.
    pub(super) fn check_format(&mut self, path: &str, text: &TextFormat) {
        if let Err(e) = crate::format::Template::compile(text) {
            self.report.error(path, e.to_string());
        }
    }

    fn file_output(&mut self, path: &str, f: &FileOutputFile) -> FileOutputConfig {
        let encoding = encoding(f.encoding);
        let text = text_format(&f.format, &f.datefmt, f.style, f.utc, DEFAULT_FORMAT);
        self.check_text(path, encoding, f.format.is_some(), &text);
        let file = self.resolve(&format!("{path}.path"), &f.path);
        let when = f.when.as_deref().and_then(|w| {
            parse_when(w)
                .map_err(|what| self.report.error(format!("{path}.when"), what))
                .ok()
        });
        if when.is_some() && f.max_bytes.is_some_and(|m| m > 0) {
            self.report.error(
                format!("{path}.when"),
                "rotate by size (`max_bytes`) or by time (`when`), not both",
            );
        }
        if f.when.is_none() {
            for (key, given) in [
                ("interval", f.interval.is_some()),
                ("at_time", f.at_time.is_some()),
            ] {
                if given {
                    self.report.error(
                        format!("{path}.{key}"),
                        "only applies to timed rotation: add `when`",
                    );
                }
            }
        }
        let at_time = f
            .at_time
            .as_ref()
            .and_then(|t| self.at_time(&format!("{path}.at_time"), t, when));
        let interval = f.interval.unwrap_or(1);
        if interval == 0 {
            self.report
                .error(format!("{path}.interval"), "must be at least 1");
        }
        FileOutputConfig {
            path: file,
            encoding,
            text,
            max_bytes: f.max_bytes.unwrap_or(0),
            backup_count: f.backup_count.unwrap_or(0),
            when,
            interval: interval.max(1),
            at_time,
            compress: f.compress.map(|CompressName::Gzip| Compress::Gzip),
            flush_ms: self.bounded(
                &format!("{path}.flush_ms"),
                f.flush_ms,
                DEFAULT_FLUSH_MS,
                0,
                MAX_FLUSH_MS,
            ),
            fsync: f.fsync.unwrap_or(false),
            truncate: f.truncate.unwrap_or(false),
        }
    }

    /// Check `HH:MM[:SS]` for a midnight or weekday rollover.
    pub(super) fn at_time(&mut self, path: &str, t: &str, when: Option<When>) -> Option<String> {
        if !matches!(when, Some(When::Midnight | When::Weekday(_)) | None) {
            self.report
                .error(path, "only applies to `when` midnight or W0..W6");
            return None;
        }
        let parts: Vec<&str> = t.split(':').collect();
        let limits = [24, 60, 60];
        let ok = (2..=3).contains(&parts.len())
            && parts
                .iter()
                .zip(limits)
                .all(|(p, lim)| p.len() == 2 && p.parse::<u32>().is_ok_and(|v| v < lim));
        if !ok {
            self.report.error(
                path,
                format!("{t:?} is not a time of day (HH:MM or HH:MM:SS)"),
            );
            return None;
        }
        Some(t.to_string())
    }

    fn forward_output(&mut self, path: &str, f: &ForwardOutputFile) -> Option<ForwardOutputConfig> {
        let target = match (&f.address, &f.path) {
            (Some(a), None) => {
                self.host_port(&format!("{path}.address"), a, true);
                ForwardTarget::Tcp(a.clone())
            }
            (None, Some(p)) => ForwardTarget::Unix(self.socket_path(&format!("{path}.path"), p)),
            (Some(_), Some(_)) => {
                self.report
                    .error(path, "give `address` or `path`, not both");
                return None;
            }
            (None, None) => {
                self.report.error(
                    path,
                    "missing `address` (host:port) or `path` (a Unix socket)",
                );
                return None;
            }
        };
        let buffer_records = self.bounded(
            &format!("{path}.buffer_records"),
            f.buffer_records,
            DEFAULT_BUFFER_RECORDS as u64,
            1,
            MAX_BUFFER_RECORDS,
        );
        Some(ForwardOutputConfig {
            target,
            encoder: match f.encoder.unwrap_or(EncoderName::Pickle) {
                EncoderName::Pickle => Encoder::Pickle,
                EncoderName::Json => Encoder::Json,
                EncoderName::Msgpack => Encoder::Msgpack,
            },
            buffer_records: usize::try_from(buffer_records).unwrap_or(DEFAULT_BUFFER_RECORDS),
            when_full: match f.when_full {
                Some(WhenFullName::DropNewest) => WhenFull::DropNewest,
                Some(WhenFullName::Block) | None => WhenFull::Block,
            },
            ack: f.ack.unwrap_or(false),
        })
    }

    /// A level: a standard name (any case) or a non-negative number.
    pub(super) fn level(&mut self, path: &str, l: &LevelFile) -> Option<i64> {
        match l {
            LevelFile::Number(n) if *n < 0 => {
                self.report.error(path, format!("level {n} is negative"));
                None
            }
            LevelFile::Number(n) => Some(*n),
            LevelFile::Name(s) => {
                let level = level_from_name(&s.to_ascii_uppercase());
                if level.is_none() {
                    self.report.error(
                        path,
                        format!(
                            "unknown level {s:?} (expected CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET or a number)"
                        ),
                    );
                }
                level
            }
        }
    }

    fn route(
        &mut self,
        path: &str,
        r: &RouteFile,
        inputs: &BTreeMap<String, String>,
        filters: &[String],
        outputs: &BTreeMap<String, Origin>,
    ) -> RouteConfig {
        let from = r.from.as_ref().map(|from| {
            self.names(&format!("{path}.from"), from, "input", |n| {
                inputs.contains_key(n)
            });
            from.clone()
        });
        if let Some(loggers) = &r.loggers {
            if loggers.is_empty() {
                self.report.error(
                    format!("{path}.loggers"),
                    "an empty list matches nothing; leave `loggers` out to match every logger",
                );
            }
        }
        let min_level = r
            .min_level
            .as_ref()
            .and_then(|l| self.level(&format!("{path}.min_level"), l));
        let flt = r.filters.clone().unwrap_or_default();
        self.names(&format!("{path}.filters"), &flt, "filter", |n| {
            filters.iter().any(|f| f == n)
        });
        let to = match &r.to {
            None => {
                self.report
                    .error(path, "missing `to`: a route must name its outputs");
                Vec::new()
            }
            Some(to) => {
                if to.is_empty() {
                    self.report.error(
                        format!("{path}.to"),
                        "no outputs: a route must name at least one",
                    );
                }
                self.names(&format!("{path}.to"), to, "output", |n| {
                    outputs.contains_key(n)
                });
                for (i, n) in to.iter().enumerate() {
                    if to[..i].contains(n) {
                        self.report.error(
                            format!("{path}.to[{i}]"),
                            format!("output {n:?} is listed twice"),
                        );
                    }
                }
                to.clone()
            }
        };
        RouteConfig {
            from,
            loggers: r.loggers.clone(),
            min_level,
            filters: flt,
            to,
            ..RouteConfig::default()
        }
    }

    /// Report every name in `list` that `exists` does not know, and an
    /// empty `from` list.
    fn names(&mut self, path: &str, list: &[String], what: &str, exists: impl Fn(&str) -> bool) {
        if list.is_empty() && what == "input" {
            self.report.error(
                path,
                "an empty list matches nothing; leave `from` out to take every input",
            );
        }
        for (i, n) in list.iter().enumerate() {
            if !exists(n) {
                self.report
                    .error(format!("{path}[{i}]"), format!("no {what} named {n:?}"));
            }
        }
    }

    /// Two inputs (or an input and the metrics endpoint) on one address
    /// would fail at bind time, after the config was accepted: catch it now.
    fn check_addresses(
        &mut self,
        inputs: &BTreeMap<String, InputConfig>,
        paths: &BTreeMap<String, String>,
        metrics: Option<&MetricsFile>,
    ) {
        // (protocol, endpoint, owner description, JSON path)
        let mut seen: Vec<(&str, Endpoint, String, String)> = Vec::new();
        let mut candidates: Vec<(&str, Endpoint, String, String)> = Vec::new();
        for (name, i) in inputs {
            let base = paths.get(name).cloned().unwrap_or_default();
            let (proto, ep, key) = match &i.kind {
                InputKind::Tcp { address } => ("tcp", Endpoint::net(address), "address"),
                InputKind::Udp { address } => ("udp", Endpoint::net(address), "address"),
                InputKind::Unix { path, .. } => {
                    ("unix", Some(Endpoint::Unix(path.clone())), "path")
                }
            };
            let at = if base.starts_with("inputs.") {
                format!("{base}.{key}")
            } else {
                base
            };
            if let Some(ep) = ep {
                candidates.push((proto, ep, format!("input {name:?}"), at));
            }
        }
        if let Some(ep) = metrics.and_then(|m| Endpoint::net(&m.address)) {
            candidates.push((
                "tcp",
                ep,
                "the metrics endpoint".into(),
                "metrics.address".into(),
            ));
        }
        for (proto, ep, owner, at) in candidates {
            if let Some((_, _, other, _)) = seen
                .iter()
                .find(|(p, e, _, _)| *p == proto && e.conflicts(&ep))
            {
                let what = format!("{} is already used by {other}", ep.describe(proto));
                self.report.error(&at, what);
            }
            seen.push((proto, ep, owner, at));
        }
    }

    fn warn_unused(
        &mut self,
        filters: &BTreeMap<String, FilterConfig>,
        routes: &[(RouteConfig, Origin)],
        outputs: &BTreeMap<String, Origin>,
    ) {
        for name in filters.keys() {
            if !routes.iter().any(|(r, _)| r.filters.contains(name)) {
                self.report
                    .warn(format!("filters.{name}"), "no route uses this filter");
            }
        }
        for (name, origin) in outputs {
            if origin.warn_unused && !routes.iter().any(|(r, _)| r.to.contains(name)) {
                self.report
                    .warn(&origin.path, "no route writes to this output");
            }
        }
    }

    /// SPEC 6: a record routed to one output by two routes is written
    /// twice. That is sometimes wanted (a dictConfig handler attached to a
    /// logger and to root), often not: say so at load and in `check`.
    fn warn_overlaps(
        &mut self,
        routes: &[(RouteConfig, Origin)],
        outputs: &BTreeMap<String, Origin>,
    ) {
        for (out, origin) in outputs {
            let using: Vec<&(RouteConfig, Origin)> =
                routes.iter().filter(|(r, _)| r.to.contains(out)).collect();
            for (i, (a, oa)) in using.iter().enumerate() {
                for (b, ob) in &using[i + 1..] {
                    if let Some(name) = overlap(a, b) {
                        let example = if name.is_empty() {
                            "the root logger".to_string()
                        } else {
                            format!("logger {name:?}")
                        };
                        let what = format!(
                            "{} and {} can both match a record (e.g. from {example}): it is written twice",
                            route_label(&oa.path),
                            route_label(&ob.path)
                        );
                        self.report.warn(&origin.path, what);
                    }
                }
            }
        }
    }
}

fn route_label(path: &str) -> String {
    if path.is_empty() {
        "the default route".to_string()
    } else {
        format!("`{path}`")
    }
}

/// A logger name both routes match, if any (ignoring levels, which only
/// bound from below, and WASM filters, which may pass anything).
///
/// Whether a route matches a name depends only on which of the names the
/// routes mention are dotted prefixes of it. So it is enough to try each
/// mentioned name, a child of each no mentioned name covers, and a fresh
/// top-level name.
pub(crate) fn overlap(a: &RouteConfig, b: &RouteConfig) -> Option<String> {
    let inputs_meet = match (&a.from, &b.from) {
        (Some(x), Some(y)) => x.iter().any(|n| y.contains(n)),
        _ => true,
    };
    if !inputs_meet {
        return None;
    }
    let mut mentioned: Vec<&str> = Vec::new();
    for r in [a, b] {
        mentioned.extend(r.loggers.iter().flatten().map(String::as_str));
        mentioned.extend(r.exclude_loggers.iter().map(String::as_str));
        mentioned.extend(r.name_filters.iter().map(String::as_str));
        for (l, f) in &r.logger_filters {
            mentioned.push(l);
            mentioned.push(f);
        }
    }
    const FRESH: &str = "\u{0}logrelay-overlap-probe";
    let mut candidates: Vec<String> = vec![FRESH.to_string()];
    for m in &mentioned {
        candidates.push(m.to_string());
        candidates.push(if m.is_empty() {
            FRESH.to_string()
        } else {
            format!("{m}.{FRESH}")
        });
    }
    candidates
        .into_iter()
        .find(|n| route_matches_name(a, n) && route_matches_name(b, n))
        .map(|n| n.replace(&format!(".{FRESH}"), ".x").replace(FRESH, "x"))
}

/// Whether `r` passes a record from logger `name` on its logger conditions
/// (the semantics documented on [`RouteConfig`]).
pub(crate) fn route_matches_name(r: &RouteConfig, name: &str) -> bool {
    use crate::record::logger_matches;
    r.loggers
        .as_ref()
        .is_none_or(|ls| ls.iter().any(|l| logger_matches(l, name)))
        && !r.exclude_loggers.iter().any(|e| logger_matches(e, name))
        && r.name_filters.iter().all(|f| logger_matches(f, name))
        && r.logger_filters
            .iter()
            .all(|(l, f)| l != name || logger_matches(f, name))
}

fn encoding(e: Option<EncodingName>) -> Encoding {
    match e {
        Some(EncodingName::Json) => Encoding::Json,
        Some(EncodingName::Text) | None => Encoding::Text,
    }
}

/// A [`TextFormat`] from the keys of an output or a dictConfig formatter.
pub(super) fn text_format(
    format: &Option<String>,
    datefmt: &Option<String>,
    style: Option<StyleName>,
    utc: Option<bool>,
    default: &str,
) -> TextFormat {
    TextFormat {
        format: format.clone().unwrap_or_else(|| default.to_string()),
        datefmt: datefmt.clone(),
        style: match style {
            Some(StyleName::Brace) => Style::Brace,
            Some(StyleName::Dollar) => Style::Dollar,
            Some(StyleName::Percent) | None => Style::Percent,
        },
        utc: utc.unwrap_or(false),
    }
}

/// `S`, `M`, `H`, `D`, `midnight`, `W0`..`W6`, case-insensitive as in
/// TimedRotatingFileHandler.
pub(super) fn parse_when(w: &str) -> Result<When, String> {
    Ok(match w.to_ascii_uppercase().as_str() {
        "S" => When::S,
        "M" => When::M,
        "H" => When::H,
        "D" => When::D,
        "MIDNIGHT" => When::Midnight,
        u => match u.strip_prefix('W').and_then(|d| d.parse::<u8>().ok()) {
            Some(day) if day <= 6 && u.len() == 2 => When::Weekday(day),
            _ => {
                return Err(format!(
                    "unknown rotation interval {w:?} (expected S, M, H, D, midnight or W0..W6)"
                ))
            }
        },
    })
}

/// An octal permission string: `"0660"`, `"660"` or `"0o660"`.
fn parse_mode(m: &str) -> Result<u32, String> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if !digits.is_empty() && v <= 0o777 => Ok(v),
        Ok(_) => Err(format!(
            "{m:?} is more than permission bits (at most \"0777\")"
        )),
        Err(_) => Err(format!("{m:?} is not an octal mode like \"0660\"")),
    }
}

/// Split `host:port` (IPv6 hosts in brackets).
pub(super) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("missing `]` after an IPv6 address".into());
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err("expected host:port, like \"[::1]:9020\"".into());
        };
        (host, port)
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err("expected host:port, like \"127.0.0.1:9020\"".into());
        };
        if host.contains(':') {
            return Err("an IPv6 address needs brackets, like \"[::1]:9020\"".into());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the host is empty (write 0.0.0.0 to listen on every interface)".into());
    }
    match port.parse::<u64>() {
        Ok(p) => u16::try_from(p)
            .map(|p| (host.to_string(), p))
            .map_err(|_| format!("port {p} is out of range (0 to 65535)")),
        Err(_) => Err(format!("port {port:?} is not a number")),
    }
}

/// A listening address, as far as the config tells without resolving names.
#[derive(Debug)]
enum Endpoint {
    Net { hosts: Vec<String>, port: u16 },
    Unix(PathBuf),
}

impl Endpoint {
    fn net(address: &str) -> Option<Endpoint> {
        let (host, port) = split_host_port(address).ok()?;
        let hosts = match host.to_ascii_lowercase().as_str() {
            // `localhost` binds every address it resolves to (SPEC 6).
            "localhost" => vec!["127.0.0.1".to_string(), "::1".to_string()],
            h => match h.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![ip.to_string()],
                Err(_) => vec![h.to_string()],
            },
        };
        Some(Endpoint::Net { hosts, port })
    }

    fn conflicts(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Unix(a), Endpoint::Unix(b)) => a == b,
            (Endpoint::Net { hosts: a, port: p }, Endpoint::Net { hosts: b, port: q }) => {
                // Port 0 asks the kernel for a free port: never a clash.
                let wildcard = |h: &String| h == "0.0.0.0" || h == "::";
                *p != 0
                    && p == q
                    && (a.iter().any(|h| b.contains(h))
                        || a.iter().any(wildcard)
                        || b.iter().any(wildcard))
            }
            _ => false,
        }
    }

    fn describe(&self, proto: &str) -> String {
        match self {
            Endpoint::Unix(p) => format!("the socket {}", p.display()),
            Endpoint::Net { port, .. } => format!("{} port {port}", proto.to_ascii_uppercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Config {
        match parse(text, Path::new("listener.json")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text, Path::new("listener.json")) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A config around `inputs`, `outputs` and `routes` JSON fragments.
    fn native(inputs: &str, outputs: &str, routes: &str) -> String {
        let mut s = format!("{{\"inputs\": {{{inputs}}},\n\"outputs\": {{{outputs}}}");
        if !routes.is_empty() {
            s.push_str(&format!(",\n\"routes\": [{routes}]"));
        }
        s.push('}');
        s
    }

    const TCP: &str = r#""app": {"type": "tcp", "address": "127.0.0.1:9020"}"#;
    const STDOUT: &str = r#""console": {"type": "stdout"}"#;

    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("readable dir").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.inputs.is_empty() && !c.outputs.is_empty() && !c.routes.is_empty());
            assert!(!c.describe().is_empty());
            seen += 1;
        }
        assert!(seen >= 6, "only {seen} example configs");
    }

    #[test]
    fn defaults_follow_spec() {
        let c = ok(&native(
            r#""app": {"type": "tcp", "address": "127.0.0.1:9020"},
               "sock": {"type": "unix", "path": "run/l.sock"}"#,
            r#""file": {"type": "file", "path": "run/app.log"},
               "console": {"type": "stdout"},
               "central": {"type": "forward", "address": "logs.internal:9020"}"#,
            "",
        ));
        let app = &c.inputs["app"];
        assert_eq!(app.decoder, DecoderKind::Pickle);
        assert_eq!(app.framing, Framing::LengthPrefixed);
        assert_eq!(app.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(
            c.inputs["sock"].kind,
            InputKind::Unix {
                path: PathBuf::from("run/l.sock"),
                mode: None
            }
        );
        let OutputConfig::File(f) = &c.outputs["file"] else {
            panic!("not a file output")
        };
        assert_eq!(f.encoding, Encoding::Text);
        assert_eq!(f.text, TextFormat::default());
        assert_eq!(f.text.format, DEFAULT_FORMAT);
        assert_eq!((f.max_bytes, f.backup_count, f.interval), (0, 0, 1));
        assert_eq!(
            (f.when, f.at_time.as_deref(), f.compress),
            (None, None, None)
        );
        assert_eq!((f.flush_ms, f.fsync, f.truncate), (100, false, false));
        let OutputConfig::Forward(fw) = &c.outputs["central"] else {
            panic!("not a forward output")
        };
        assert_eq!(fw.target, ForwardTarget::Tcp("logs.internal:9020".into()));
        assert_eq!((fw.encoder, fw.buffer_records), (Encoder::Pickle, 100_000));
        assert_eq!((fw.when_full, fw.ack), (WhenFull::Block, false));
        assert_eq!(
            c.outputs["console"],
            OutputConfig::Stream(StreamOutputConfig {
                stream: StreamKind::Stdout,
                encoding: Encoding::Text,
                text: TextFormat::default(),
            })
        );
        assert_eq!((c.drain_seconds, c.shutdown_timeout_ms), (30, 5000));
        // No `routes`: one route from every input to every output.
        assert_eq!(
            c.routes,
            vec![RouteConfig {
                to: vec!["central".into(), "console".into(), "file".into()],
                ..RouteConfig::default()
            }]
        );
        assert_eq!(c.source.as_deref(), Some(Path::new("listener.json")));
    }

    #[test]
    fn wasm_filter_defaults_and_limits() {
        let text = native(
            TCP,
            STDOUT,
            r#"{"filters": ["f"], "to": ["console"]}"#,
        )
        .replacen(
            "{\"inputs\"",
            r#"{"filters": {"f": {"type": "wasm", "path": "plugins/f.wat", "fuel": 1000, "on_error": "drop"}}, "inputs""#,
            1,
        );
        let c = ok(&text);
        assert_eq!(
            c.filters["f"],
            FilterConfig::Wasm(WasmFilterConfig {
                path: PathBuf::from("plugins/f.wat"),
                config: serde_json::json!({}),
                fuel: Some(1000),
                timeout_ms: None,
                max_memory_bytes: None,
                on_error: OnError::Drop,
            })
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let text = native(
            r#""s": {"type": "unix", "path": "run/l.sock"}"#,
            r#""f": {"type": "file", "path": "run/app.log"},
               "g": {"type": "file", "path": "/var/log/g.log"},
               "fw": {"type": "forward", "path": "central.sock"}"#,
            "",
        );
        let c = parse(&text, Path::new("/etc/logrelay/listener.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let InputKind::Unix { path, .. } = &c.inputs["s"].kind else {
            panic!("not unix")
        };
        assert_eq!(path, Path::new("/etc/logrelay/run/l.sock"));
        let file = |n: &str| match &c.outputs[n] {
            OutputConfig::File(f) => f.path.clone(),
            _ => PathBuf::new(),
        };
        assert_eq!(file("f"), Path::new("/etc/logrelay/run/app.log"));
        assert_eq!(file("g"), Path::new("/var/log/g.log"));
        let OutputConfig::Forward(fw) = &c.outputs["fw"] else {
            panic!("not forward")
        };
        assert_eq!(
            fw.target,
            ForwardTarget::Unix("/etc/logrelay/central.sock".into())
        );
    }

    #[test]
    fn error_invalid_json_names_line_and_column() {
        assert_eq!(
            err("{\n  \"inputs\": {\n    \"app\": {\"type\": \"tcp\",}\n  }\n}"),
            "listener.json:3:27: inputs.app: trailing comma"
        );
        assert_eq!(
            err("{\"inputs\": {}} x"),
            "listener.json:1:16: trailing characters"
        );
        assert_eq!(err(""), "listener.json:1:1: EOF while parsing a value");
    }

    #[test]
    fn error_unknown_key() {
        assert_eq!(
            err(&native(
                r#""app": {"type": "tcp", "adress": "127.0.0.1:9020"}"#,
                STDOUT,
                ""
            )),
            "listener.json:1:43: inputs.app.adress: unknown field `adress`, expected one of \
             `type`, `address`, `decoder`, `framing`, `max_frame_bytes`"
        );
        assert_eq!(
            err("{\"input\": {}}"),
            "listener.json:1:8: input: unknown field `input`, expected one of `inputs`, `filters`, \
             `outputs`, `routes`, `drain_seconds`, `shutdown_timeout_ms`, `metrics`, `port`, \
             `host`, `socket`, `logging`"
        );
    }

    #[test]
    fn error_wrong_type() {
        assert_eq!(
            err("{\n  \"inputs\": {\n    \"app\": {\"type\": \"tcp\",\n               \"address\": 70000}\n  }\n}"),
            "listener.json:4:31: inputs.app.address: invalid type: integer `70000`, expected a string"
        );
        assert_eq!(
            err(&native(
                TCP,
                r#""f": {"type": "file", "path": "a.log", "max_bytes": -1}"#,
                ""
            )),
            "listener.json:2:66: outputs.f.max_bytes: invalid value: integer `-1`, expected u64"
        );
        assert_eq!(
            err("[]"),
            "listener.json:1:1: invalid type: sequence, expected a JSON object (the listener config)"
        );
    }

    #[test]
    fn error_unknown_component_type() {
        assert_eq!(
            err(&native(
                r#""app": {"type": "tpc", "address": "127.0.0.1:9020"}"#,
                r#""o": {"type": "syslog"}, "p": {"path": "x"}"#,
                ""
            )),
            "listener.json:1:29: inputs.app.type: unknown type \"tpc\" (expected tcp, unix or udp)\n\
             listener.json:2:27: outputs.o.type: unknown type \"syslog\" (expected file, stdout or forward)\n\
             listener.json:2:43: outputs.p: missing `type` (file, stdout or forward)"
        );
    }

    #[test]
    fn error_route_names_that_refer_to_nothing() {
        assert_eq!(
            err(&native(
                TCP,
                STDOUT,
                r#"{"from": ["ap"], "filters": ["redact"], "to": ["console", "centrl"]}"#
            )),
            "listener.json:3:22: routes[0].from[0]: no input named \"ap\"\n\
             listener.json:3:41: routes[0].filters[0]: no filter named \"redact\"\n\
             listener.json:3:70: routes[0].to[1]: no output named \"centrl\""
        );
    }

    #[test]
    fn error_route_without_to() {
        assert_eq!(
            err(&native(
                TCP,
                STDOUT,
                r#"{"to": ["console"]}, {"loggers": ["payments"]}"#
            )),
            "listener.json:3:33: routes[1]: missing `to`: a route must name its outputs"
        );
    }

    #[test]
    fn error_duplicate_address() {
        assert_eq!(
            err(&native(
                r#""a": {"type": "tcp", "address": "127.0.0.1:9020"},
"b": {"type": "tcp", "address": "localhost:9020"},
"c": {"type": "udp", "address": "127.0.0.1:9020"},
"d": {"type": "unix", "path": "run/l.sock"},
"e": {"type": "unix", "path": "run/l.sock"},
"f": {"type": "udp", "address": "0.0.0.0:9020"}"#,
                STDOUT,
                ""
            )),
            "listener.json:2:33: inputs.b.address: TCP port 9020 is already used by input \"a\"\n\
             listener.json:5:31: inputs.e.path: the socket run/l.sock is already used by input \"d\"\n\
             listener.json:6:33: inputs.f.address: UDP port 9020 is already used by input \"c\""
        );
        // TCP and UDP on one port, and port 0 (any free port), are fine.
        ok(&native(
            r#""a": {"type": "tcp", "address": "127.0.0.1:0"},
               "b": {"type": "tcp", "address": "127.0.0.1:0"},
               "c": {"type": "tcp", "address": "127.0.0.1:9020"},
               "d": {"type": "udp", "address": "127.0.0.1:9020"},
               "e": {"type": "tcp", "address": "127.0.0.2:9020"}"#,
            STDOUT,
            "",
        ));
    }

    #[test]
    fn error_bad_level() {
        assert_eq!(
            err(&native(
                TCP,
                STDOUT,
                r#"{"min_level": "LOUD", "to": ["console"]}, {"min_level": -5, "to": ["console"]}, {"min_level": true, "to": ["console"]}"#
            )),
            "listener.json:3:109: routes[2].min_level: invalid type: boolean `true`, \
             expected a level name like \"WARNING\" or a number"
        );
        assert_eq!(
            err(&native(
                TCP,
                STDOUT,
                r#"{"min_level": "LOUD", "to": ["console"]}, {"min_level": -5, "to": ["console"]}"#
            )),
            "listener.json:3:26: routes[0].min_level: unknown level \"LOUD\" (expected CRITICAL, \
             ERROR, WARNING, INFO, DEBUG, NOTSET or a number)\n\
             listener.json:3:68: routes[1].min_level: level -5 is negative"
        );
        let c = ok(&native(
            TCP,
            STDOUT,
            r#"{"min_level": "warning", "to": ["console"]}, {"min_level": 25, "to": ["console"]}"#,
        ));
        assert_eq!(c.routes[0].min_level, Some(30));
        assert_eq!(c.routes[1].min_level, Some(25));
    }

    #[test]
    fn error_bad_values() {
        let e = err(&native(
            r#""a": {"type": "tcp", "address": "127.0.0.1"},
"b": {"type": "udp", "address": "127.0.0.1:70000"},
"c": {"type": "unix", "path": "x.sock", "mode": "0999", "framing": "newline"},
"d": {"type": "tcp", "address": "::1:9020", "max_frame_bytes": 0}"#,
            r#""f": {"type": "file", "path": "a.log", "when": "fortnightly", "interval": 0},
"g": {"type": "file", "path": "b.log", "max_bytes": 10, "when": "H", "at_time": "25:00"},
"h": {"type": "forward", "address": "central:0", "buffer_records": 0}"#,
            "",
        ));
        assert_eq!(
            e,
            "listener.json:1:45: inputs.a.address: \"127.0.0.1\": expected host:port, like \"127.0.0.1:9020\"\n\
             listener.json:2:33: inputs.b.address: \"127.0.0.1:70000\": port 70000 is out of range (0 to 65535)\n\
             listener.json:3:49: inputs.c.mode: \"0999\" is not an octal mode like \"0660\"\n\
             listener.json:3:68: inputs.c.framing: newline framing needs the json decoder (this input decodes pickle); use length_prefixed\n\
             listener.json:4:33: inputs.d.address: \"::1:9020\": an IPv6 address needs brackets, like \"[::1]:9020\"\n\
             listener.json:4:64: inputs.d.max_frame_bytes: 0 is out of range (1 to 1073741824)\n\
             listener.json:5:60: outputs.f.when: unknown rotation interval \"fortnightly\" (expected S, M, H, D, midnight or W0..W6)\n\
             listener.json:5:87: outputs.f.interval: must be at least 1\n\
             listener.json:6:65: outputs.g.when: rotate by size (`max_bytes`) or by time (`when`), not both\n\
             listener.json:6:81: outputs.g.at_time: only applies to `when` midnight or W0..W6\n\
             listener.json:7:37: outputs.h.address: \"central:0\": port 0 cannot be connected to\n\
             listener.json:7:68: outputs.h.buffer_records: 0 is out of range (1 to 10000000)"
        );
    }

    #[test]
    fn error_many_problems_in_one_report() {
        let e = err(&native(
            r#""app": {"type": "tcp", "address": "127.0.0.1:9020"},
"web": {"type": "tcp", "address": "127.0.0.1:9020"}"#,
            STDOUT,
            r#"{"from": ["api"], "to": ["file"]}, {"min_level": "VERBOSE"}"#,
        ));
        assert_eq!(
            e,
            "listener.json:2:35: inputs.web.address: TCP port 9020 is already used by input \"app\"\n\
             listener.json:4:22: routes[0].from[0]: no input named \"api\"\n\
             listener.json:4:37: routes[0].to[0]: no output named \"file\"\n\
             listener.json:4:47: routes[1]: missing `to`: a route must name its outputs\n\
             listener.json:4:61: routes[1].min_level: unknown level \"VERBOSE\" (expected CRITICAL, \
             ERROR, WARNING, INFO, DEBUG, NOTSET or a number)"
        );
    }

    #[test]
    fn error_bad_format_string() {
        let bad = TextFormat {
            format: "%(message".into(),
            ..TextFormat::default()
        };
        let Err(fe) = crate::format::Template::compile(&bad) else {
            // The formatter stub accepts everything; nothing to pin yet.
            return;
        };
        assert_eq!(
            err(&native(
                TCP,
                r#""f": {"type": "stdout", "format": "%(message"}"#,
                ""
            )),
            format!("listener.json:2:35: outputs.f.format: {fe}")
        );
    }

    #[test]
    fn empty_config_says_what_is_missing() {
        assert_eq!(
            err("{}"),
            "listener.json: no inputs: add `inputs`, or the cookbook listener's `port` or `socket`\n\
             listener.json: no outputs: add `outputs`, or handlers under `logging` (a dictConfig)"
        );
    }

    #[test]
    fn warns_when_routes_overlap_on_one_output() {
        let c = ok(&native(
            TCP,
            r#""file": {"type": "file", "path": "a.log"}, "json": {"type": "stdout", "encoding": "json", "format": "%(message)s"}"#,
            r#"{"to": ["file"]}, {"loggers": ["payments"], "to": ["file"]},
{"loggers": ["a.b"], "to": ["json"]}, {"loggers": ["a.c"], "to": ["json"]}"#,
        ));
        assert_eq!(
            c.warnings,
            vec![
                "listener.json:2:21: outputs.file: `routes[0]` and `routes[1]` can both match a \
                 record (e.g. from logger \"payments\"): it is written twice",
                "listener.json:2:113: outputs.json.format: ignored: this output writes JSON (`encoding: json`)",
            ]
        );
    }

    #[test]
    fn parse_helpers() {
        assert_eq!(split_host_port("[::1]:9020"), Ok(("::1".into(), 9020)));
        assert_eq!(split_host_port("localhost:0"), Ok(("localhost".into(), 0)));
        assert!(split_host_port(":9020").is_err());
        assert!(split_host_port("h:x").is_err());
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("").is_err());
        assert!(parse_mode("17777").is_err());
        assert_eq!(parse_when("w6"), Ok(When::Weekday(6)));
        assert_eq!(parse_when("MIDNIGHT"), Ok(When::Midnight));
        assert!(parse_when("W7").is_err());
        assert!(parse_when("W06").is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "null",
            "1",
            "\"x\"",
            "{\"inputs\": null}",
            "{\"inputs\": {\"a\": null}}",
            "{\"inputs\": {\"a\": []}}",
            "{\"logging\": []}",
            "{\"logging\": {\"handlers\": {\"h\": 1}}}",
            "{\"routes\": [null]}",
            "{\"inputs\": {\"a\": {\"type\": 5}}}",
            "{\"port\": \"x\"}",
            "{\"outputs\": {\"o\": {\"type\": \"forward\"}}}",
            "\u{feff}{}",
            "{\"a\":",
            "[[[[[[[[[[",
        ] {
            let _ = parse(text, Path::new("x.json"));
        }
        let deep = "[".repeat(100_000);
        let _ = parse(&deep, Path::new("x.json"));
    }
}
