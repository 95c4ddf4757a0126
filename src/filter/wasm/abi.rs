//! ABI v1: the host functions a guest imports from module `logrelay`, and
//! the checks that a module asks for nothing else.
//!
//! Versioning: an ABI is identified by the import module name. v1 is
//! `logrelay`; a future, incompatible ABI will use `logrelay_v2` with its own
//! linker, so old and new plugins can be loaded side by side. A module that
//! imports nothing (a constant filter) is treated as v1.
//!
//! Guest memory is untrusted: every pointer and length is checked against the
//! memory's current size, and a bad one traps the guest (an error the host
//! contains) instead of panicking the host. Lengths are `i32` on the wire and
//! read as unsigned, so a negative length is a huge one and fails the check.

use wasmtime::{bail, Caller, ExternType, Linker, Memory, Module, Result, ValType};

use super::instance::HostState;
use super::FilterError;
use crate::codec::json;
use crate::record::{default_bit, Fields, Str, Value};

/// The import module of ABI v1.
pub const MODULE_V1: &str = "logrelay";

/// Host functions of ABI v1: name, number of `i32` parameters, and whether
/// it returns an `i32`.
pub const FUNCTIONS_V1: &[(&str, usize, bool)] = &[
    ("field_get", 4, true),
    ("field_set", 4, true),
    ("field_remove", 2, true),
    ("record_get", 2, true),
    ("record_set", 2, true),
    ("config_get", 2, true),
    ("log", 3, false),
];

/// Whether `module` imports a host function that tells it what the
/// record holds: `field_get`, `record_get`, and `field_remove` (whose
/// answer says whether the field was there).
pub fn reads_record(module: &Module) -> bool {
    module.imports().any(|i| {
        i.module() == MODULE_V1 && matches!(i.name(), "field_get" | "record_get" | "field_remove")
    })
}

/// Whether `module` imports a host function that changes the record:
/// `field_set`, `field_remove`, `record_set`.
pub fn writes_record(module: &Module) -> bool {
    module.imports().any(|i| {
        i.module() == MODULE_V1 && matches!(i.name(), "field_set" | "field_remove" | "record_set")
    })
}

/// A readable signature, for error messages: `(i32, i32) -> i32`.
fn signature(params: usize, result: bool) -> String {
    let params = vec!["i32"; params].join(", ");
    if result {
        format!("({params}) -> i32")
    } else {
        format!("({params})")
    }
}

/// Check every import and the required exports of `module`, so a plugin the
/// host cannot run is a config error that names the culprit, rather than
/// wasmtime's generic link error.
pub fn check_module(filter: &str, module: &Module) -> Result<(), FilterError> {
    for import in module.imports() {
        let what = format!("{}.{}", import.module(), import.name());
        let unknown = || FilterError::UnknownImport {
            filter: filter.to_string(),
            import: what.clone(),
        };
        if import.module() != MODULE_V1 {
            return Err(unknown());
        }
        let Some(&(_, params, result)) = FUNCTIONS_V1.iter().find(|f| f.0 == import.name()) else {
            return Err(unknown());
        };
        let ok = match import.ty() {
            ExternType::Func(ty) => {
                ty.params().len() == params
                    && ty.params().all(|p| matches!(p, ValType::I32))
                    && ty.results().len() == usize::from(result)
                    && ty.results().all(|r| matches!(r, ValType::I32))
            }
            _ => false,
        };
        if !ok {
            return Err(FilterError::ImportSignature {
                filter: filter.to_string(),
                import: what,
                expected: signature(params, result),
            });
        }
    }
    let missing = |export: &str, expected: &str| FilterError::Export {
        filter: filter.to_string(),
        export: export.to_string(),
        expected: expected.to_string(),
    };
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err(missing("memory", "its linear memory as `memory`")),
    }
    for (name, required) in [("filter", true), ("init", false)] {
        match module.get_export(name) {
            Some(ExternType::Func(ty))
                if ty.params().len() == 0
                    && ty.results().len() == 1
                    && ty.results().all(|r| matches!(r, ValType::I32)) => {}
            None if !required => {}
            _ => return Err(missing(name, &format!("a function `{name}: () -> i32`"))),
        }
    }
    Ok(())
}

/// A linker with every ABI v1 host function.
pub fn linker(engine: &wasmtime::Engine) -> Result<Linker<HostState>> {
    let mut l = Linker::new(engine);
    l.func_wrap(MODULE_V1, "field_get", field_get)?;
    l.func_wrap(MODULE_V1, "field_set", field_set)?;
    l.func_wrap(MODULE_V1, "field_remove", field_remove)?;
    l.func_wrap(MODULE_V1, "record_get", record_get)?;
    l.func_wrap(MODULE_V1, "record_set", record_set)?;
    l.func_wrap(MODULE_V1, "config_get", config_get)?;
    l.func_wrap(MODULE_V1, "log", log)?;
    Ok(l)
}

/// The guest's memory, found once at instantiation.
fn memory(caller: &Caller<'_, HostState>) -> Result<Memory> {
    match caller.data().memory {
        Some(m) => Ok(m),
        None => bail!("the module exports no memory"),
    }
}

/// The byte range `ptr..ptr+len` of guest memory, checked.
fn range(data: &[u8], ptr: i32, len: i32, what: &str) -> Result<std::ops::Range<usize>> {
    // Deliberate reinterpretation: wasm32 pointers are unsigned.
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match start.checked_add(len) {
        Some(end) if end <= data.len() => Ok(start..end),
        _ => bail!(
            "{what}: pointer {start} + length {len} is outside guest memory ({} bytes)",
            data.len()
        ),
    }
}

/// Copy `bytes` into the guest buffer if it fits; always return the full
/// length, so a guest with a short buffer learns what to allocate.
fn write_out(data: &mut [u8], ptr: i32, cap: i32, bytes: &[u8], what: &str) -> Result<i32> {
    let buf = range(data, ptr, cap, what)?;
    let Ok(len) = i32::try_from(bytes.len()) else {
        bail!(
            "{what}: value of {} bytes is too large for the ABI",
            bytes.len()
        );
    };
    if bytes.len() <= buf.len() {
        data[buf.start..buf.start + bytes.len()].copy_from_slice(bytes);
    }
    Ok(len)
}

/// Index of field `name` in `fields`.
fn find(fields: &Fields, name: &[u8]) -> Option<usize> {
    fields.iter().position(|(k, _)| k.as_bytes() == name)
}

fn field_get(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    buf_ptr: i32,
    buf_cap: i32,
) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let name = range(data, name_ptr, name_len, "field_get name")?;
    let Some(i) = find(&state.fields, &data[name]) else {
        return Ok(-1);
    };
    let bytes: &[u8] = match &state.fields[i].1 {
        // Strings go raw: the common case (msg, name, levelname) needs no
        // JSON parser in the guest.
        Value::Str(s) => s.as_bytes(),
        other => {
            state.scratch.clear();
            json::write_value(other, &mut state.scratch);
            &state.scratch
        }
    };
    write_out(data, buf_ptr, buf_cap, bytes, "field_get buffer")
}

fn field_set(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    json_ptr: i32,
    json_len: i32,
) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let name = &data[range(data, name_ptr, name_len, "field_set name")?];
    let text = &data[range(data, json_ptr, json_len, "field_set value")?];
    let Ok(name) = std::str::from_utf8(name) else {
        return Ok(-1);
    };
    let Ok(value) = json::parse_value(text) else {
        return Ok(-1);
    };
    state.backup();
    // As `Record::set`: replaced in place (keeping its position) or
    // appended, and a default the decoder added becomes the record's own.
    state.defaulted &= !default_bit(name);
    match find(&state.fields, name.as_bytes()) {
        Some(i) => state.fields[i].1 = value,
        None => state.fields.push((Str::from(name), value)),
    }
    Ok(0)
}

fn field_remove(mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let name = &data[range(data, name_ptr, name_len, "field_remove name")?];
    let Some(i) = find(&state.fields, name) else {
        return Ok(-1);
    };
    state.backup();
    // `remove`, not `swap_remove`: arrival order is part of the json output.
    state.fields.remove(i);
    Ok(0)
}

fn record_get(mut caller: Caller<'_, HostState>, buf_ptr: i32, buf_cap: i32) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    state.scratch.clear();
    json::write_fields(&state.fields, &mut state.scratch);
    write_out(data, buf_ptr, buf_cap, &state.scratch, "record_get buffer")
}

fn record_set(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let text = &data[range(data, ptr, len, "record_set")?];
    let Ok(fields) = json::parse_object(text) else {
        return Ok(-1);
    };
    state.backup();
    if state.defaulted != 0 {
        // A guest that wrote back what `record_get` gave it did not set
        // the decoder's defaults: those it left unchanged stay defaults,
        // those it changed are its own now.
        let old = &state.fields;
        let unchanged = fields
            .iter()
            .filter(|(k, v)| old.iter().any(|(ok, ov)| ok == k && ov == v))
            .fold(0, |bits, (k, _)| bits | default_bit(k));
        state.defaulted &= unchanged;
    }
    state.fields = fields;
    Ok(0)
}

fn config_get(mut caller: Caller<'_, HostState>, buf_ptr: i32, buf_cap: i32) -> Result<i32> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    write_out(
        data,
        buf_ptr,
        buf_cap,
        &state.shared.config_json,
        "config_get buffer",
    )
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> Result<()> {
    let mem = memory(&caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let r = range(data, ptr, len, "log")?;
    // Long guest messages are cut: logs are for people, and a guest must not
    // be able to make the host format megabytes per record.
    let text = &data[r.start..r.end.min(r.start + 4096)];
    state
        .shared
        .guest_log(level, &String::from_utf8_lossy(text));
    Ok(())
}
