//! Resolving `filters`: one WASM plugin each.

use super::builder::{Builder, MAX_FILTER_TIMEOUT_MS, WASM32_MAX_MEMORY, WASM_PAGE};
use super::file::WasmFilterFile;
use super::*;

impl Builder<'_, '_> {
    /// One WASM filter. The plugin itself is loaded by `check` and the
    /// pipeline, not here: a config is plain data.
    pub(super) fn wasm_filter(&mut self, path: &str, w: &WasmFilterFile) -> WasmFilterConfig {
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
            } else if m > WASM32_MAX_MEMORY {
                self.report.error(
                    format!("{path}.max_memory_bytes"),
                    format!("{m} is more than a 32-bit WebAssembly memory can hold ({WASM32_MAX_MEMORY} bytes)"),
                );
            }
        }
        WasmFilterConfig {
            path: plugin,
            config: w.config.clone().unwrap_or_else(|| serde_json::json!({})),
            fuel: w.fuel,
            timeout_ms,
            max_memory_bytes: w.max_memory_bytes,
            on_error: w.on_error.unwrap_or_default(),
        }
    }
}
