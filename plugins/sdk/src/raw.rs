//! The host functions of ABI v1, imported from module `logrelay`, behind
//! safe slice-taking wrappers.
//!
//! Off wasm32 (native `cargo test` of a plugin's pure logic, clippy) the
//! imports do not exist; the wrappers then behave as a host with an empty
//! record and a `null` config.

#[cfg(target_arch = "wasm32")]
mod ffi {
    #[link(wasm_import_module = "logrelay")]
    extern "C" {
        pub fn field_get(name: *const u8, name_len: usize, buf: *mut u8, cap: usize) -> i32;
        pub fn field_set(name: *const u8, name_len: usize, json: *const u8, len: usize) -> i32;
        pub fn field_remove(name: *const u8, name_len: usize) -> i32;
        pub fn record_get(buf: *mut u8, cap: usize) -> i32;
        pub fn record_set(json: *const u8, len: usize) -> i32;
        pub fn config_get(buf: *mut u8, cap: usize) -> i32;
        pub fn log(level: i32, msg: *const u8, len: usize);
    }
}

// Soundness of every `unsafe` block below: each pointer/length pair comes
// from a live Rust slice, so it names memory we own for the whole call; the
// host reads only within `(ptr, len)` and writes only within `(buf, cap)` of
// a `&mut [u8]` (it checks bounds and writes nothing when the value does not
// fit), and it keeps no pointer after returning. Initialized `u8` buffers
// stay valid whatever bytes the host writes.

/// `field_get`: copy field `name` into `buf` if it fits; its full length,
/// or -1 if absent.
#[cfg(target_arch = "wasm32")]
pub fn field_get(name: &[u8], buf: &mut [u8]) -> i32 {
    unsafe { ffi::field_get(name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len()) }
}

/// `field_set`: set field `name` from JSON text; 0, or -1 for invalid JSON.
#[cfg(target_arch = "wasm32")]
pub fn field_set(name: &[u8], json: &[u8]) -> i32 {
    unsafe { ffi::field_set(name.as_ptr(), name.len(), json.as_ptr(), json.len()) }
}

/// `field_remove`: 0 if removed, -1 if absent.
#[cfg(target_arch = "wasm32")]
pub fn field_remove(name: &[u8]) -> i32 {
    unsafe { ffi::field_remove(name.as_ptr(), name.len()) }
}

/// `record_get`: the record as a JSON object into `buf` if it fits; its
/// full length.
#[cfg(target_arch = "wasm32")]
pub fn record_get(buf: &mut [u8]) -> i32 {
    unsafe { ffi::record_get(buf.as_mut_ptr(), buf.len()) }
}

/// `record_set`: replace the record by a JSON object; 0, or -1.
#[cfg(target_arch = "wasm32")]
pub fn record_set(json: &[u8]) -> i32 {
    unsafe { ffi::record_set(json.as_ptr(), json.len()) }
}

/// `config_get`: the filter's config as JSON into `buf` if it fits; its
/// full length.
#[cfg(target_arch = "wasm32")]
pub fn config_get(buf: &mut [u8]) -> i32 {
    unsafe { ffi::config_get(buf.as_mut_ptr(), buf.len()) }
}

/// `log`: one line in logrelay's log at a Python level number.
#[cfg(target_arch = "wasm32")]
pub fn log(level: i32, msg: &[u8]) {
    unsafe { ffi::log(level, msg.as_ptr(), msg.len()) }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! Stand-ins so plugin logic can be unit-tested natively.

    /// No field is present.
    pub fn field_get(_name: &[u8], _buf: &mut [u8]) -> i32 {
        -1
    }
    /// Accepted and forgotten.
    pub fn field_set(_name: &[u8], _json: &[u8]) -> i32 {
        0
    }
    /// Nothing to remove.
    pub fn field_remove(_name: &[u8]) -> i32 {
        -1
    }
    /// An empty record.
    pub fn record_get(buf: &mut [u8]) -> i32 {
        if buf.len() >= 2 {
            buf[..2].copy_from_slice(b"{}");
        }
        2
    }
    /// Accepted and forgotten.
    pub fn record_set(_json: &[u8]) -> i32 {
        0
    }
    /// A `null` config.
    pub fn config_get(buf: &mut [u8]) -> i32 {
        if buf.len() >= 4 {
            buf[..4].copy_from_slice(b"null");
        }
        4
    }
    /// Printed to stderr.
    pub fn log(level: i32, msg: &[u8]) {
        eprintln!("[{level}] {}", String::from_utf8_lossy(msg));
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;
