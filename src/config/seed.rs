//! The two passes that read `listener.json` (see [`super::file`]):
//! [`Probes`] reads only the tags of components, [`FileSeed`] then reads
//! the whole file, each component straight into the struct of its kind,
//! so serde_json's positions and the field paths survive.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::cookbook::dict::{DictSeed, HandlerClass};
use super::file::*;

// ---------------------------------------------------------------------------
// Pass 1: tags only.

/// The tag keys of one component object, everything else ignored.
#[derive(Debug, Default)]
pub struct Probe {
    /// `"type"` (native components).
    pub kind: Option<String>,
    /// `"class"` (dictConfig handlers and formatters).
    pub class: Option<String>,
    /// `"()"`: a dictConfig user factory.
    pub factory: Option<String>,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Probe, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
                let mut p = Probe::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" => p.kind = Some(map.next_value()?),
                        "class" => p.class = Some(map.next_value()?),
                        "()" => p.factory = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object of named things, in file order, read as a list so that a
/// name given twice is an error rather than silently the last one.
#[derive(Debug)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of named entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format_args!("duplicate name `{name}`")));
                    }
                    let value = map.next_value()?;
                    out.push((name, value));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
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

/// Pass 1 inside `logging`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a logging.config.dictConfig object")]
pub struct LoggingProbes {
    /// `formatters`: `()` / `class`.
    #[serde(default)]
    pub formatters: Option<Named<Probe>>,
    /// `filters`: `()`.
    #[serde(default)]
    pub filters: Option<Named<Probe>>,
    /// `handlers`: `class` / `()`.
    #[serde(default)]
    pub handlers: Option<Named<Probe>>,
}

// ---------------------------------------------------------------------------
// Pass 2: dispatch on the kinds found in pass 1.

/// A component whose struct depends on a tag read in pass 1.
pub trait Typed: Sized {
    /// The tag, resolved.
    type Kind: Copy;
    /// Read the value under the current key of `map` as the struct of `kind`.
    fn next_value<'de, A: MapAccess<'de>>(kind: Self::Kind, map: &mut A) -> Result<Self, A::Error>;
}

/// Deserializes `{name: component}` using the kinds pass 1 found for each
/// name. A component whose kind is `None` (its tag was wrong, and
/// that is already reported) is skipped.
pub struct NamedSeed<'a, T: Typed> {
    /// One entry per name, in file order.
    pub kinds: &'a [(String, Option<T::Kind>)],
}

impl<'de, T: Typed> DeserializeSeed<'de> for NamedSeed<'_, T> {
    type Value = Vec<(String, T)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Typed> Visitor<'de> for NamedSeed<'_, T> {
    type Value = Vec<(String, T)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of named entries")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            // By name, not position: a second read may lack components
            // (load.rs `collect` drops those already reported). Names are
            // unique: pass 1 refuses a repeated one.
            let kind = match self.kinds.iter().find(|(n, _)| *n == name) {
                Some((_, k)) => *k,
                None => return Err(de::Error::custom("the file changed between two reads")),
            };
            match kind {
                Some(kind) => out.push((name, T::next_value(kind, &mut map)?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A plain struct read through [`NamedSeed`]: the kind only says whether
/// to read it (`Some(())`) or skip it.
macro_rules! untagged_typed {
    ($t:ty) => {
        impl Typed for $t {
            type Kind = ();
            fn next_value<'de, A: MapAccess<'de>>(_: (), map: &mut A) -> Result<Self, A::Error> {
                map.next_value()
            }
        }
    };
}
pub(crate) use untagged_typed;

/// The tags found in pass 1, resolved, that pass 2 dispatches on.
#[derive(Debug, Default)]
pub struct Kinds {
    /// Input kinds by name.
    pub inputs: Vec<(String, Option<InputType>)>,
    /// Filter kinds by name.
    pub filters: Vec<(String, Option<FilterType>)>,
    /// Output kinds by name.
    pub outputs: Vec<(String, Option<OutputType>)>,
    /// dictConfig formatters to read (`None`: a factory, reported).
    pub formatters: Vec<(String, Option<()>)>,
    /// dictConfig filters to read.
    pub dict_filters: Vec<(String, Option<()>)>,
    /// dictConfig handler classes.
    pub handlers: Vec<(String, Option<HandlerClass>)>,
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

/// Store `value` in `slot`, refusing a key given twice (serde_json keeps
/// the last; a config that says two things should say which).
fn once<E: de::Error, T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(value);
    Ok(())
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
                    let v = map.next_value_seed(DictSeed { kinds: k })?;
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
