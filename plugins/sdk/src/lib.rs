//! Guest SDK for logrelay WASM filter plugins (ABI v1).
//!
//! A filter is a type implementing [`Filter`], exported with [`export!`]:
//!
//! ```ignore
//! use logrelay_filter::{export, Config, Filter, Record, Verdict};
//!
//! struct AddEnv { env: String }
//!
//! impl Filter for AddEnv {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         let env = config.get("env").and_then(|v| v.as_str()).unwrap_or("dev");
//!         Ok(AddEnv { env: env.to_string() })
//!     }
//!     fn filter(&mut self, record: &mut Record) -> Verdict {
//!         record.set("env", self.env.as_str());
//!         Verdict::Keep
//!     }
//! }
//!
//! export!(AddEnv);
//! ```
//!
//! Build for `wasm32-unknown-unknown` as a `cdylib`. The host calls `init`
//! once per instance and `filter` once per record; the instance (and so the
//! value `init` returned) lives across calls, but may be recreated at any
//! time (after an error, on reload, or when the host adds instances for
//! concurrency), so keep only caches and counters in it.
//!
//! Field values cross the ABI as strings when the Python value is a `str`
//! and as JSON text otherwise: `record.get("msg")` is the message itself,
//! `record.get("levelno")` is `"40"`. [`Record::get_i64`] and
//! [`Record::get_json`] parse for you. Everything here is safe; the few
//! `unsafe` calls into the host live in [`raw`].

pub mod json;
pub mod raw;

pub use json::Json;

/// What `filter` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the record on (with any changes made).
    Keep,
    /// Drop the record: it goes no further on this route.
    Drop,
}

impl Verdict {
    /// The ABI's return value: 0 keep, 1 drop.
    pub fn code(self) -> i32 {
        match self {
            Verdict::Keep => 0,
            Verdict::Drop => 1,
        }
    }
}

/// Python logging levels, for comparisons and log calls.
pub mod level {
    /// `logging.DEBUG`.
    pub const DEBUG: i32 = 10;
    /// `logging.INFO`.
    pub const INFO: i32 = 20;
    /// `logging.WARNING`.
    pub const WARNING: i32 = 30;
    /// `logging.ERROR`.
    pub const ERROR: i32 = 40;
    /// `logging.CRITICAL`.
    pub const CRITICAL: i32 = 50;

    /// A level by name (`"WARNING"`) or number (`"30"`), as Python's
    /// `logging._nameToLevel` knows them.
    pub fn parse(name: &str) -> Option<i64> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" | "FATAL" => 50,
            "ERROR" => 40,
            "WARNING" | "WARN" => 30,
            "INFO" => 20,
            "DEBUG" => 10,
            "NOTSET" => 0,
            other => return other.parse().ok(),
        })
    }
}

/// The record being filtered. Only valid during a `filter` call; the SDK
/// hands you a `&mut Record` there.
pub struct Record {
    _private: (),
}

impl Record {
    /// Only the SDK's `export!` glue makes one.
    #[doc(hidden)]
    pub fn __current() -> Record {
        Record { _private: () }
    }

    /// A field's value: a `str` as itself, anything else as JSON text
    /// (`"40"`, `"null"`, `"[1, 2]"`). `None` if the record has no such field.
    pub fn get(&self, name: &str) -> Option<String> {
        let bytes = read_with(|buf| raw::field_get(name.as_bytes(), buf))?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the record has field `name` (no copy is made).
    pub fn has(&self, name: &str) -> bool {
        raw::field_get(name.as_bytes(), &mut []) >= 0
    }

    /// A field as an integer: an `int` (or a float in plain notation,
    /// truncated) or a string holding one. `levelno` is always an `int` from Python.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        // Numbers are short: a stack buffer avoids an allocation per call.
        let mut buf = [0u8; 32];
        let n = raw::field_get(name.as_bytes(), &mut buf);
        let n = usize::try_from(n).ok().filter(|&n| n <= buf.len())?;
        let text = core::str::from_utf8(&buf[..n]).ok()?.trim();
        // A float such as `40.0` is truncated. Done by hand: `parse::<f64>`
        // would link the float parser (~10 KB) into every plugin.
        let (int, frac) = text.split_once('.').unwrap_or((text, "0"));
        if !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        int.parse::<i64>().ok()
    }

    /// A field parsed as JSON. A `str` field comes back as [`Json::Str`].
    /// This cannot tell `str` `"40"` from `int` 40; use it for fields you
    /// know hold structured values.
    pub fn get_json(&self, name: &str) -> Option<Json> {
        let text = self.get(name)?;
        Some(Json::parse(&text).unwrap_or(Json::Str(text)))
    }

    /// Set a field to a string, number, bool or [`Json`] value: replaced in
    /// place if present, appended otherwise.
    pub fn set(&mut self, name: &str, value: impl Into<Json>) {
        let text = value.into().to_string();
        // Always valid JSON: the SDK wrote it.
        raw::field_set(name.as_bytes(), text.as_bytes());
    }

    /// Set a field from JSON text. `Err` if the text is not valid JSON
    /// (the record is unchanged).
    pub fn set_json(&mut self, name: &str, json: &str) -> Result<(), InvalidJson> {
        match raw::field_set(name.as_bytes(), json.as_bytes()) {
            0 => Ok(()),
            _ => Err(InvalidJson),
        }
    }

    /// Remove a field; `true` if it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        raw::field_remove(name.as_bytes()) == 0
    }

    /// The whole record as one JSON object, fields in arrival order.
    pub fn to_json(&self) -> String {
        let bytes = read_with(raw::record_get).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Replace the whole record by a JSON object. `Err` (record unchanged)
    /// if the text is not a JSON object.
    pub fn replace(&mut self, json_object: &str) -> Result<(), InvalidJson> {
        match raw::record_set(json_object.as_bytes()) {
            0 => Ok(()),
            _ => Err(InvalidJson),
        }
    }
}

/// The host refused JSON text (or, for [`Record::replace`], a non-object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidJson;

/// The filter's `config` object from `listener.json`, parsed.
pub struct Config(Json);

impl Config {
    /// Read the config from the host (a JSON value; `null` when absent).
    pub fn load() -> Config {
        let bytes = read_with(raw::config_get).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        Config(Json::parse(&text).unwrap_or(Json::Null))
    }

    /// A key of the config object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0.get(key)
    }

    /// The whole config value.
    pub fn json(&self) -> &Json {
        &self.0
    }
}

/// The filter's config (see [`Config`]).
pub fn config() -> Config {
    Config::load()
}

/// Write a line to logrelay's own log (stderr), at a Python level number
/// ([`level::INFO`], ...). The host rate-limits plugin logs.
pub fn log(level: i32, msg: &str) {
    raw::log(level, msg.as_bytes());
}

/// Call a host getter, growing the buffer once if it was too small.
/// `None` when the host says the value is absent (-1).
fn read_with(mut get: impl FnMut(&mut [u8]) -> i32) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = usize::try_from(get(&mut buf)).ok()?;
        if n <= buf.len() {
            buf.truncate(n);
            return Some(buf);
        }
        // The value can change between the two calls only if the guest
        // changed it, so this loops at most twice in practice.
        buf.resize(n, 0);
    }
}

/// A filter plugin. Export it with [`export!`].
pub trait Filter: Sized + 'static {
    /// Called once per instance with the filter's config. `Err(reason)`
    /// refuses to start: the host logs `reason` and `logrelay check` fails.
    fn init(config: &Config) -> Result<Self, String>;

    /// Called once per record.
    fn filter(&mut self, record: &mut Record) -> Verdict;
}

#[doc(hidden)]
pub mod __glue {
    //! What [`export!`](crate::export) expands to call. Wasm guests are
    //! single-threaded, so a thread-local `RefCell` holds the instance state.
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn core::any::Any>>> = const { RefCell::new(None) };
    }

    /// `init` export: build the filter from its config.
    pub fn init<F: Filter>() -> i32 {
        match F::init(&Config::load()) {
            Ok(f) => {
                STATE.with(|s| *s.borrow_mut() = Some(Box::new(f)));
                0
            }
            Err(reason) => {
                log(level::ERROR, &format!("init failed: {reason}"));
                1
            }
        }
    }

    /// `filter` export: run the filter on the current record.
    pub fn filter<F: Filter>() -> i32 {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            match state.as_mut().and_then(|b| b.downcast_mut::<F>()) {
                Some(f) => f.filter(&mut Record::__current()).code(),
                // init did not run or failed: the host never calls filter
                // then, but be explicit rather than guess.
                None => panic!("filter called before a successful init"),
            }
        })
    }
}

/// Export a [`Filter`] type as the plugin's `init` and `filter`.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        /// ABI v1 `init`: 0 if the filter accepted its config.
        #[no_mangle]
        pub extern "C" fn init() -> i32 {
            $crate::__glue::init::<$ty>()
        }

        /// ABI v1 `filter`: 0 keep, 1 drop.
        #[no_mangle]
        pub extern "C" fn filter() -> i32 {
            $crate::__glue::filter::<$ty>()
        }
    };
}
