//! One record field, written straight into the record's field list: what
//! the decoders' fast paths (pickle and JSON) push for each pair they read.

use crate::record::{Fields, Str, Value};

/// A value as a decoder's loop reads it: small enough to stay in
/// registers, so the `Value` is built once, where it is pushed (building
/// it earlier and moving it through the stack cost a stalled reload of
/// each pair).
#[derive(Clone, Copy)]
pub(crate) enum Scalar {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string's span in the frame.
    Str(u32, u32),
}

/// Append `(k, value)` to `fields`, each part written straight into the
/// vector's next slot; a string is made from its span by `string`.
/// `fields.push((k, value))` built the 72-byte pair in a stack temporary
/// out of narrow stores and copied it with wide loads, which stalled on
/// every field (the loads could not be forwarded from the stores): about
/// a quarter of the pickle decoder's time, and 40% of the JSON fast
/// path's.
#[inline(always)]
pub(crate) fn push_pair(
    fields: &mut Fields,
    k: Str,
    value: Scalar,
    string: impl FnOnce(usize, usize) -> Str,
) {
    fields.reserve(1);
    let len = fields.len();
    let slot = fields.as_mut_ptr().wrapping_add(len);
    // SAFETY: `reserve(1)` made room for one more element, so `slot`
    // (index `len`) is inside the allocation and holds no element: writing
    // it drops nothing. Both halves of the pair are written before
    // `set_len` counts the slot, so the vector never sees it
    // uninitialised; if building the value panicked, the key would only
    // leak (the length is unchanged).
    unsafe {
        std::ptr::addr_of_mut!((*slot).0).write(k);
        let v = std::ptr::addr_of_mut!((*slot).1);
        match value {
            Scalar::None => v.write(Value::None),
            Scalar::Bool(b) => v.write(Value::Bool(b)),
            Scalar::Int(i) => v.write(Value::Int(i)),
            Scalar::Float(f) => v.write(Value::Float(f)),
            Scalar::Str(start, end) => v.write(Value::Str(string(start as usize, end as usize))),
        }
        fields.set_len(len + 1);
    }
}
