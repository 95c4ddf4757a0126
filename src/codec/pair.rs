//! One record field, written straight into the record's field list: what
//! the decoders' fast paths (pickle and JSON) push for each pair they read.

use crate::record::{own_bit, Fields, Str, Value};

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
            Scalar::Str(start, end) => {
                // The string is built in its final place: returned by
                // value, it was copied there through a stack temporary,
                // whose wide loads stalled on the callee's narrow stores
                // (a sixth of the pickle pair loop's time, perf).
                v.write(Value::Str(Str::new()));
                if let Value::Str(s) = &mut *v {
                    build_in_place(s, || string(start as usize, end as usize));
                }
            }
        }
        fields.set_len(len + 1);
    }
}

/// Overwrite `dst`, an empty string, with `make()`, copied in word by
/// word. `make` returns the string through a stack slot that it fills
/// with 8-byte stores; the compiler's copy of that slot used 16-byte
/// loads, which cannot be forwarded from two stores and stalled until the
/// stores retired. The volatile 8-byte loads keep it from merging them.
#[inline(always)]
fn build_in_place(dst: &mut Str, make: impl FnOnce() -> Str) {
    use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};
    type Word = MaybeUninit<u64>;
    const WORDS: usize = size_of::<Str>() / size_of::<Word>();
    const _: () = assert!(size_of::<Str>() == WORDS * size_of::<Word>());
    const _: () = assert!(align_of::<Str>() >= align_of::<Word>());
    let made = ManuallyDrop::new(make());
    let from = (&*made as *const Str).cast::<Word>();
    let to = (dst as *mut Str).cast::<Word>();
    for i in 0..WORDS {
        // SAFETY: `from` and `to` point to two distinct, live `Str`s:
        // `made`, a local, and `*dst`, exclusively borrowed. Each is
        // `WORDS` whole words long and aligned for a word (both asserted
        // at compile time), so every read and write is in bounds and
        // aligned. The words are `MaybeUninit`, so a padding byte, if a
        // `Str` had one, is copied as what it is, never read as an
        // integer. Copying every word moves `made` into `*dst`: `made` is
        // never dropped (`ManuallyDrop`), so the string keeps one owner;
        // the empty string overwritten owned nothing (a static slice),
        // and not dropping it is only a forget, which is always sound.
        unsafe { to.add(i).write(from.add(i).read_volatile()) };
    }
}

/// The static copy of `s` when it is the value real records nearly
/// always hold for the attribute whose own-name bit is `bit`: a standard
/// level name, or Python's `MainThread` / `MainProcess` (gunicorn's and
/// uWSGI's forked workers keep `MainProcess`). A static string is made
/// and dropped without touching a shared reference count, so these cost
/// nothing per record; any other value is a slice of the frame as usual.
#[inline(always)]
pub(crate) fn common_value(bit: u32, s: &[u8]) -> Option<Str> {
    const LEVELNAME: u32 = own_bit("levelname");
    const THREAD_NAME: u32 = own_bit("threadName");
    const PROCESS_NAME: u32 = own_bit("processName");
    // Fixed-size compares: a slice pattern compared through `memcmp`.
    fn is<const N: usize>(s: &[u8], name: &'static [u8; N]) -> bool {
        s.first_chunk::<N>() == Some(name) && s.len() == N
    }
    let name = match bit {
        LEVELNAME if is(s, b"INFO") => "INFO",
        LEVELNAME if is(s, b"DEBUG") => "DEBUG",
        LEVELNAME if is(s, b"WARNING") => "WARNING",
        LEVELNAME if is(s, b"ERROR") => "ERROR",
        LEVELNAME if is(s, b"CRITICAL") => "CRITICAL",
        THREAD_NAME if is(s, b"MainThread") => "MainThread",
        PROCESS_NAME if is(s, b"MainProcess") => "MainProcess",
        _ => return None,
    };
    Some(Str::from_static(name))
}
