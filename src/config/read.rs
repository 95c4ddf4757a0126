//! Reading `listener.json` into its serde mirror ([`FileConfig`]), in two
//! passes over the same text (see [`super::file`]): [`Probes`] reads only
//! the tags of components, [`kinds`] resolves them (reporting a wrong
//! one), and [`FileSeed`] then reads the whole file, each component
//! straight into the struct of its kind, so serde_json's positions and the
//! field paths survive. Every type error in the file is reported, not
//! only the first ([`collect`]).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::cookbook::dict::{self, DictKinds, DictSeed, LoggingProbes};
use super::error::{one_of, Report};
use super::file::*;
use super::seed::{once, Named, NamedSeed, Probe};

/// Read `text` into its mirror and the kinds pass 1 found, or report
/// every type error in it (None).
pub(super) fn read(text: &str, report: &mut Report) -> Option<(FileConfig, Kinds)> {
    let probes = collect(text, report, PhantomData::<Probes>)?;
    let kinds = kinds(&probes, report);
    let file = collect(text, report, FileSeed { kinds: &kinds })?;
    Some((file, kinds))
}

/// Pass 1 over the whole file: the tags of every component.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a JSON object (the listener config)")]
pub struct Probes {
    /// Tags of `inputs`.
    #[serde(default)]
    pub inputs: Option<Named<Probe>>,
    /// Tags of `filters`.
    #[serde(default)]
    pub filters: Option<Named<Probe>>,
    /// Tags of `outputs`.
    #[serde(default)]
    pub outputs: Option<Named<Probe>>,
    /// Tags inside the dictConfig.
    #[serde(default)]
    pub logging: Option<LoggingProbes>,
}

/// The tags found in pass 1, resolved, that pass 2 dispatches on.
#[derive(Debug, Default)]
pub struct Kinds {
    /// Input kinds by name.
    pub inputs: Vec<(String, Option<InputType>)>,
    /// Filter kinds by name.
    pub filters: Vec<(String, Option<FilterType>)>,
    /// Output kinds by name.
    pub outputs: Vec<(String, Option<OutputType>)>,
    /// Inside `logging`.
    pub logging: DictKinds,
}

/// Pass 2 over the whole file, given the kinds from pass 1.
#[derive(Clone, Copy)]
pub struct FileSeed<'a> {
    /// What pass 1 found.
    pub kinds: &'a Kinds,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum TopKey {
    Inputs,
    Filters,
    Outputs,
    Routes,
    DrainSeconds,
    ShutdownTimeoutMs,
    MaxPendingBytes,
    StateDir,
    Metrics,
    Port,
    Host,
    Socket,
    Logging,
    /// `"$schema"`: for editors (see `logrelay schema`); ignored.
    #[serde(rename = "$schema")]
    Schema,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = FileConfig;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<FileConfig, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = FileConfig;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (the listener config)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileConfig, A::Error> {
        let k = self.kinds;
        let mut c = FileConfig::default();
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Inputs => {
                    let v = map.next_value_seed(NamedSeed { kinds: &k.inputs })?;
                    once(&mut c.inputs, v, "inputs")?
                }
                TopKey::Filters => {
                    let v = map.next_value_seed(NamedSeed { kinds: &k.filters })?;
                    once(&mut c.filters, v, "filters")?
                }
                TopKey::Outputs => {
                    let v = map.next_value_seed(NamedSeed { kinds: &k.outputs })?;
                    once(&mut c.outputs, v, "outputs")?
                }
                TopKey::Routes => once(&mut c.routes, map.next_value()?, "routes")?,
                TopKey::DrainSeconds => {
                    once(&mut c.drain_seconds, map.next_value()?, "drain_seconds")?
                }
                TopKey::ShutdownTimeoutMs => once(
                    &mut c.shutdown_timeout_ms,
                    map.next_value()?,
                    "shutdown_timeout_ms",
                )?,
                TopKey::MaxPendingBytes => once(
                    &mut c.max_pending_bytes,
                    map.next_value()?,
                    "max_pending_bytes",
                )?,
                TopKey::StateDir => once(&mut c.state_dir, map.next_value()?, "state_dir")?,
                TopKey::Metrics => once(&mut c.metrics, map.next_value()?, "metrics")?,
                // `null` means "not given" for the cookbook keys, as
                // `config.get(...)` would see it in Python.
                TopKey::Port => once(&mut c.port, map.next_value::<Option<u16>>()?, "port")?,
                TopKey::Host => once(&mut c.host, map.next_value::<Option<String>>()?, "host")?,
                TopKey::Socket => {
                    once(&mut c.socket, map.next_value::<Option<String>>()?, "socket")?
                }
                TopKey::Logging => {
                    let v = map.next_value_seed(DictSeed { kinds: &k.logging })?;
                    once(&mut c.logging, v, "logging")?
                }
                TopKey::Schema => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(c)
    }
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

/// The most type errors listed for one file: past this, the rest are
/// likely one mistake repeated.
const MAX_TYPE_ERRORS: usize = 20;

/// Deserialize the text through `seed`, or report every type error in it
/// (None). serde stops at the first error; to list the others, the text
/// (once it is valid JSON) is read again as a tree without each field
/// already reported, until it deserializes. A later error about a value
/// that contains a removed field (`missing field` of the object whose
/// field was wrong) follows from the removal, so that value goes too,
/// unreported. Array elements are never removed (the later indexes would
/// shift): an error about an element as a whole ends the list. Each round
/// removes something, so this ends.
fn collect<'de, S>(text: &'de str, report: &mut Report, seed: S) -> Option<S::Value>
where
    S: DeserializeSeed<'de> + Clone,
{
    let first = match run(text, seed.clone()) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let syntax = first.inner().is_syntax() || first.inner().is_eof();
    let mut reported = vec![report.serde(first)];
    if syntax {
        return None;
    }
    let Ok(mut tree) = serde_json::from_str::<serde_json::Value>(text) else {
        return None;
    };
    let mut cut = reported[0].clone();
    while reported.len() < MAX_TYPE_ERRORS && remove(&mut tree, &cut) {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(tree.clone(), &mut track);
        let Err(e) = seed.clone().deserialize(de) else {
            break;
        };
        let e = serde_path_to_error::Error::new(track.path(), e);
        let path = report_path(&e);
        if path.is_empty() {
            break;
        }
        if !reported.iter().any(|r| within(r, &path)) {
            reported.push(report.serde(e));
        }
        cut = path;
    }
    None
}

/// A serde error's JSON path as [`Report::serde`] spells it.
fn report_path(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let path = path.trim_end_matches('?').trim_end_matches('.');
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// Whether `path` is `inner` or one of the values containing it.
fn within(inner: &str, path: &str) -> bool {
    inner == path
        || inner
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Remove the object member at `path` (`outputs.f.max_bytes`) from
/// `tree`; false when there is none (or it is an array element).
fn remove(tree: &mut serde_json::Value, path: &str) -> bool {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    if key.is_empty() || key.ends_with(']') {
        return false;
    }
    let mut node = tree;
    for seg in parent.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let Some(next) = node.get_mut(name) else {
            return false;
        };
        node = next;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let Some(next) = index.parse::<usize>().ok().and_then(|i| node.get_mut(i)) else {
                return false;
            };
            node = next;
        }
    }
    node.as_object_mut()
        .is_some_and(|o| o.shift_remove(key).is_some())
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
                ("nats", InputType::Nats),
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
                ("nats", OutputType::Nats),
            ],
            r,
        ),
        ..Kinds::default()
    };
    if let Some(l) = &p.logging {
        k.logging = dict::kinds(l, r);
    }
    k
}
