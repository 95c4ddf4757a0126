//! The serde building blocks of the two passes that read `listener.json`
//! (see [`super::file`]), shared by the native mirror and the dictConfig's:
//! [`Probe`] reads only the tags of one component in pass 1, [`NamedSeed`]
//! reads each named component into the struct its tag chose in pass 2, so
//! serde_json's positions and the field paths survive.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

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

/// Store `value` in `slot`, refusing a key given twice (serde_json keeps
/// the last; a config that says two things should say which).
pub(crate) fn once<E: de::Error, T>(
    slot: &mut Option<T>,
    value: T,
    key: &'static str,
) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(value);
    Ok(())
}

/// A level: a standard name (`"WARNING"`) or a number (`30`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelFile {
    /// `"WARNING"`.
    Name(String),
    /// `30`.
    Number(i64),
}

impl<'de> Deserialize<'de> for LevelFile {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<LevelFile, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LevelFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a level name like \"WARNING\" or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LevelFile, E> {
                Ok(LevelFile::Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LevelFile, E> {
                Ok(LevelFile::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LevelFile, E> {
                i64::try_from(v)
                    .map(LevelFile::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}
