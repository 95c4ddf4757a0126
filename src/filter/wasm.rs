//! WebAssembly filter plugins (placeholder: the host is being written).

use crate::config::WasmFilterConfig;
use crate::filter::Verdict;
use crate::record::Record;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not implemented yet.
    #[error("filter {0}: wasm filters are not implemented yet")]
    Unimplemented(String),
}

/// A loaded WASM filter.
pub struct WasmFilter;

impl WasmFilter {
    /// Compile and instantiate the plugin.
    pub fn load(name: &str, _config: &WasmFilterConfig) -> Result<WasmFilter, FilterError> {
        Err(FilterError::Unimplemented(name.to_string()))
    }

    /// Apply to one record.
    pub fn apply(&self, _record: &mut Record) -> Verdict {
        Verdict::Keep
    }
}
