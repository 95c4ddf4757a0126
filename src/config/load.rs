//! Reading and checking a config file into a [`Config`].
//!
//! Two passes of serde over the text (`read.rs`, see [`super::file`]) give
//! the file's structure with exact positions for type errors; then the
//! checks run over the whole file, section by section, and report every
//! problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::builder::{
    Builder, Origin, Origins, Routes, MAX_DRAIN_SECONDS, MAX_PENDING_BYTES, MAX_SHUTDOWN_TIMEOUT_MS,
};
use super::cookbook;
use super::cookbook::dict::DictConfig;
use super::error::Report;
use super::file::*;
use super::read::read;
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
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            token: None,
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
        max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
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
    // Some Windows editors start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = Report::new(path, text);
    let Some((file, kinds)) = read(text, &mut report) else {
        return Err(report.into_error());
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

impl Builder<'_, '_> {
    fn build(&mut self, f: FileConfig) -> Config {
        let (inputs, input_paths) = self.inputs(&f);
        let mut filters = BTreeMap::new();
        for (name, flt) in f.filters.iter().flatten() {
            let FilterFile::Wasm(w) = flt;
            let c = self.wasm_filter(&format!("filters.{name}"), w);
            filters.insert(name.clone(), FilterConfig::Wasm(c));
        }
        let (mut outputs, mut origins) = self.outputs(&f);
        let native: Vec<String> = origins.keys().cloned().collect();
        // The dictConfig's handlers are outputs native routes may name too.
        let mut dict_routes = Vec::new();
        if let Some(dict) = &f.logging {
            self.dict_config(dict, &mut outputs, &mut origins, &mut dict_routes);
        }
        let mut routes = self.routes(&f, &input_paths, &origins, native);
        routes.extend(dict_routes);

        if input_paths.is_empty() {
            self.report.error(
                "",
                "no inputs: add `inputs`, or the cookbook listener's `port` or `socket`",
            );
        }
        if origins.is_empty() {
            self.report.error(
                "",
                "no outputs: add `outputs`, or handlers under `logging` (a dictConfig)",
            );
        } else if routes.is_empty() {
            self.report
                .error("routes", "no routes: every record would be dropped");
        }
        self.check_addresses(&inputs, &input_paths, f.metrics.as_ref());
        self.warn_unused(&filters, &routes, &origins);
        self.warn_overlaps(&routes, &origins);
        self.warn_shared_files(&outputs, &origins);

        let metrics = f.metrics.as_ref().and_then(|m| {
            let (host, _) = self.host_port("metrics.address", &m.address, false)?;
            let token_file = m
                .token_file
                .as_deref()
                .map(|t| self.resolve("metrics.token_file", t));
            if token_file.is_none() && !crate::tls::is_loopback_host(&host) {
                self.report.error(
                    "metrics.address",
                    format!(
                        "{:?} is not a loopback address: the status page shows log contents, \
                         so give `token_file` (a file holding the token requests must present)",
                        m.address
                    ),
                );
            }
            Some(MetricsConfig {
                address: m.address.clone(),
                token_file,
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
            max_pending_bytes: usize::try_from(self.bounded(
                "max_pending_bytes",
                f.max_pending_bytes,
                DEFAULT_MAX_PENDING_BYTES as u64,
                1,
                MAX_PENDING_BYTES,
            ))
            .unwrap_or(DEFAULT_MAX_PENDING_BYTES),
            state_dir: match &f.state_dir {
                Some(dir) => self.resolve("state_dir", dir),
                None => self.dir.join(DEFAULT_STATE_DIR),
            },
            metrics,
            warnings: Vec::new(),
        }
    }

    /// Native inputs and the cookbook input, with the path of each name.
    fn inputs(
        &mut self,
        f: &FileConfig,
    ) -> (BTreeMap<String, InputConfig>, BTreeMap<String, String>) {
        let mut inputs = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for (name, i) in f.inputs.iter().flatten() {
            let path = format!("inputs.{name}");
            inputs.insert(name.clone(), self.input(&path, i));
            paths.insert(name.clone(), path);
        }
        if let Some((input, path)) = cookbook::shorthand(f, self) {
            if paths.contains_key(cookbook::INPUT_NAME) {
                self.report.error(
                    format!("inputs.{}", cookbook::INPUT_NAME),
                    format!(
                        "the name {:?} is taken by the cookbook listener's input (from `{path}`); rename this input",
                        cookbook::INPUT_NAME
                    ),
                );
            } else {
                inputs.insert(cookbook::INPUT_NAME.to_string(), input);
                paths.insert(cookbook::INPUT_NAME.to_string(), path);
            }
        }
        // Broken components (already reported) still count as names, so a
        // route naming them does not add a second, misleading error.
        for (name, _) in &self.kinds.inputs {
            paths
                .entry(name.clone())
                .or_insert_with(|| format!("inputs.{name}"));
        }
        (inputs, paths)
    }

    /// Native outputs, and the origin of every output name.
    fn outputs(&mut self, f: &FileConfig) -> (BTreeMap<String, OutputConfig>, Origins) {
        let mut outputs = BTreeMap::new();
        for (name, o) in f.outputs.iter().flatten() {
            if let Some(c) = self.output(&format!("outputs.{name}"), o) {
                outputs.insert(name.clone(), c);
            }
        }
        let origins = self
            .kinds
            .outputs
            .iter()
            .map(|(name, _)| {
                let origin = Origin {
                    path: format!("outputs.{name}"),
                    warn_unused: true,
                };
                (name.clone(), origin)
            })
            .collect();
        (outputs, origins)
    }

    /// The native routes, or without a `routes` key one route from every
    /// input to every native output (`native`; the dictConfig's handlers
    /// have their own routes).
    fn routes(
        &mut self,
        f: &FileConfig,
        inputs: &BTreeMap<String, String>,
        outputs: &Origins,
        native: Vec<String>,
    ) -> Routes {
        let filters: Vec<String> = self.kinds.filters.iter().map(|(n, _)| n.clone()).collect();
        let mut routes = Vec::new();
        match &f.routes {
            Some(list) => {
                for (i, r) in list.iter().enumerate() {
                    let path = format!("routes[{i}]");
                    let route = self.route(&path, r, inputs, &filters, outputs);
                    let origin = Origin {
                        path,
                        warn_unused: false,
                    };
                    routes.push((route, origin));
                }
            }
            None if !native.is_empty() => {
                let route = RouteConfig {
                    to: native,
                    ..RouteConfig::default()
                };
                let origin = Origin {
                    path: String::new(),
                    warn_unused: false,
                };
                routes.push((route, origin));
            }
            None => {}
        }
        routes
    }

    /// Add the outputs and routes of the cookbook's dictConfig.
    fn dict_config(
        &mut self,
        dict: &DictConfig,
        outputs: &mut BTreeMap<String, OutputConfig>,
        origins: &mut Origins,
        routes: &mut Routes,
    ) {
        let generated = cookbook::translate(dict, self);
        for (name, output, origin) in generated.outputs {
            if let Some(other) = origins.get(&name) {
                let what = format!(
                    "handler {name:?} would become an output, but `{}` already has that name; rename one",
                    other.path
                );
                self.report.error(&origin.path, what);
                continue;
            }
            outputs.insert(name.clone(), output);
            origins.insert(name, origin);
        }
        routes.extend(generated.routes);
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
    fn issue_4_path_templates_are_checked_and_bounded() {
        let file = |extra: &str| native(TCP, &format!(r#""f": {{"type": "file", {extra}}}"#), "");
        let c = ok(&file(r#""path": "out/{name}-%Y.log""#));
        let OutputConfig::File(f) = &c.outputs["f"] else {
            panic!("not a file output");
        };
        assert_eq!(f.max_open_files, Some(DEFAULT_MAX_OPEN_FILES as usize));
        assert!(f.path.ends_with("out/{name}-%Y.log"), "{:?}", f.path);
        assert!(c.describe().contains("path template"));
        // Escapes alone make a literal path.
        let c = ok(&file(r#""path": "out/{{x}}-100%%.log""#));
        let OutputConfig::File(f) = &c.outputs["f"] else {
            panic!("not a file output");
        };
        assert_eq!(f.max_open_files, None);
        assert!(f.path.ends_with("out/{x}-100%.log"), "{:?}", f.path);
        assert_eq!(
            err(&file(r#""path": "out/{name.log""#)),
            "listener.json:2:43: outputs.f.path: unterminated `{` at character 4 \
             (write `{{` for a literal brace)"
        );
        assert_eq!(
            err(&file(r#""path": "out/{}.log""#)),
            "listener.json:2:43: outputs.f.path: empty `{}` at character 4: \
             name a record field, as in `{name}`"
        );
        assert_eq!(
            err(&file(
                r#""path": "{name}", "max_open_files": 0, "truncate": true"#
            )),
            "listener.json:2:71: outputs.f.max_open_files: 0 is out of range (1 to 65536)\n\
             listener.json:2:86: outputs.f.truncate: cannot be used with a path template: \
             files closed beyond `max_open_files` are reopened for append"
        );
        assert_eq!(
            err(&file(r#""path": "a.log", "max_open_files": 8"#)),
            "listener.json:2:70: outputs.f.max_open_files: only applies to a path template \
             (`{field}` or `%` fields in `path`)"
        );
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
             `type`, `address`, `decoder`, `framing`, `max_frame_bytes`, `frame_timeout_ms`, \
             `max_connections`, `token_file`, `tls`"
        );
        assert_eq!(
            err("{\"input\": {}}"),
            "listener.json:1:8: input: unknown field `input`, expected one of `inputs`, `filters`, \
             `outputs`, `routes`, `drain_seconds`, `shutdown_timeout_ms`, `max_pending_bytes`, \
             `state_dir`, `metrics`, `port`, `host`, `socket`, `logging`, `$schema`"
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
            "listener.json:2:66: outputs.f.max_bytes: invalid value: integer `-1`, \
             expected a whole number of bytes (e.g. 10485760)"
        );
        assert_eq!(
            err("[]"),
            "listener.json:1:1: invalid type: sequence, expected a JSON object (the listener config)"
        );
    }

    #[test]
    fn issue_17_every_type_error_in_user_terms() {
        // Wrong types, an unknown key and a missing field in one file: all
        // listed, in reading order, each at its own position (serde_json's
        // for the first, where it stopped reading; then where the value
        // starts).
        assert_eq!(
            err(r#"{"port": "9020",
"inputs": {"app": {"type": "tcp", "address": "127.0.0.1:9020", "max_frame_bytes": "1MB"},
           "web": {"type": "tcp"}},
"outputs": {"f": {"type": "file", "path": "a.log", "max_bytes": "10MB", "fsync": "yes",
                  "flush_ms": 1.5, "colour": "red"}},
"routes": [{"to": "f"}],
"drain_seconds": -1}"#),
            "listener.json:1:15: port: invalid type: string \"9020\", expected a port number from 0 to 65535\n\
             listener.json:2:83: inputs.app.max_frame_bytes: invalid type: string \"1MB\", expected a whole number of bytes (e.g. 10485760)\n\
             listener.json:3:19: inputs.web: missing field `address`\n\
             listener.json:4:65: outputs.f.max_bytes: invalid type: string \"10MB\", expected a whole number of bytes (e.g. 10485760)\n\
             listener.json:4:82: outputs.f.fsync: invalid type: string \"yes\", expected true or false\n\
             listener.json:5:31: outputs.f.flush_ms: invalid type: floating point `1.5`, expected a whole number of milliseconds (e.g. 5000)\n\
             listener.json:5:46: outputs.f.colour: unknown field `colour`, expected one of `type`, \
             `path`, `encoding`, `format`, `datefmt`, `style`, `utc`, `max_bytes`, `backup_count`, \
             `when`, `interval`, `at_time`, `compress`, `flush_ms`, `fsync`, `truncate`, \
             `max_open_files`\n\
             listener.json:6:19: routes[0].to: invalid type: string \"f\", expected a list (a JSON array: [...])\n\
             listener.json:7:18: drain_seconds: invalid value: integer `-1`, expected a whole number of seconds (e.g. 30)"
        );
    }

    #[test]
    fn issue_17_a_component_dropped_after_its_error_hides_no_other() {
        // `a` lacks its address: once reported, `a` is left out of the
        // next read, and `b` and `o` are still read as what they are.
        assert_eq!(
            err(r#"{"inputs": {"a": {"type": "tcp"}, "b": {"type": "udp", "address": 5}},
"outputs": {"o": {"type": "stdout", "utc": "no"}}}"#),
            "listener.json:1:32: inputs.a: missing field `address`\n\
             listener.json:1:67: inputs.b.address: invalid type: integer `5`, expected a string\n\
             listener.json:2:44: outputs.o.utc: invalid type: string \"no\", expected true or false"
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
            "listener.json:1:29: inputs.app.type: unknown type \"tpc\" (expected tcp, unix, udp or nats)\n\
             listener.json:2:27: outputs.o.type: unknown type \"syslog\" (expected file, stdout, forward or nats)\n\
             listener.json:2:43: outputs.p: missing `type` (file, stdout, forward or nats)"
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
            format!("listener.json:2:47: outputs.f.format: {fe}")
        );
        assert_eq!(
            err(
                r#"{"logging": {"version": 1, "formatters": {"f": {"format": "%(message"}},
                "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f"}},
                "root": {"handlers": ["h"]}}}"#
            ),
            format!("listener.json:1:59: logging.formatters.f.format: {fe}")
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
        use crate::config::address::split_host_port;
        use crate::config::inputs::parse_mode;
        use crate::config::outputs::parse_when;
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
