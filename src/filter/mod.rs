//! Filters applied on a route between routing and the outputs.
//!
//! A filter call is synchronous and bounded (fuel or an epoch deadline), so
//! it runs inline on the task that routes the record. Errors never reach the
//! caller: the filter applies its `on_error` policy, counts and logs.

pub mod wasm;

use crate::config::FilterConfig;
use crate::record::Record;

/// What a filter decided for one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the record on (possibly changed).
    Keep,
    /// Drop it: it goes no further on this route.
    Drop,
}

/// A loaded filter. A closed set, delegated by `match`.
pub enum Filter {
    /// A WebAssembly plugin.
    Wasm(wasm::WasmFilter),
}

impl Filter {
    /// Load the filter named `name`: compile, instantiate and `init` it.
    /// Any failure is a config error naming the filter.
    pub fn load(name: &str, config: &FilterConfig) -> Result<Filter, wasm::FilterError> {
        match config {
            FilterConfig::Wasm(c) => Ok(Filter::Wasm(wasm::WasmFilter::load(name, c)?)),
        }
    }

    /// The record fields the filter reads: every field, unless it has no
    /// way to read one.
    pub fn reads(&self) -> crate::codec::Keep {
        match self {
            Filter::Wasm(f) if !f.reads_record() => crate::codec::Keep::NONE,
            Filter::Wasm(_) => crate::codec::Keep::ALL,
        }
    }

    /// Whether the filter can change a record (so an output behind it
    /// cannot count on the record's frame).
    pub fn writes(&self) -> bool {
        match self {
            Filter::Wasm(f) => f.writes_record(),
        }
    }

    /// Run the filter on every record of `batch`, keeping those it keeps.
    pub fn retain(&self, batch: &mut Vec<Record>) {
        match self {
            Filter::Wasm(f) => f.retain(batch),
        }
    }

    /// Run the filter on one record. May be called from many tasks at once.
    pub fn apply(&self, record: &mut Record) -> Verdict {
        match self {
            Filter::Wasm(f) => f.apply(record),
        }
    }

    /// The file this filter was loaded from. Hot reload watches it: a change
    /// to the file must reload the filter even though its config object is
    /// unchanged (`WasmFilterConfig.path` is all that is needed).
    pub fn source_path(&self) -> &std::path::Path {
        match self {
            Filter::Wasm(f) => f.path(),
        }
    }

    /// Records seen so far (for metrics).
    pub fn calls(&self) -> u64 {
        match self {
            Filter::Wasm(f) => f.calls(),
        }
    }

    /// Records dropped so far, by verdict or by `on_error: drop` (for
    /// `logrelay_records_filtered_total`).
    pub fn dropped(&self) -> u64 {
        match self {
            Filter::Wasm(f) => f.dropped(),
        }
    }

    /// Failed calls so far (trap, timeout, fuel, memory, bad result).
    pub fn errors(&self) -> u64 {
        match self {
            Filter::Wasm(f) => f.errors(),
        }
    }
}
