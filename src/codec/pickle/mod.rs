//! Safe decoding of the pickles that `logging.handlers.SocketHandler` sends.
//!
//! A SocketHandler frame is `pickle.dumps(record.__dict__, 1)`. Unpickling
//! it with Python's `pickle` runs arbitrary code, and the obvious Rust crate
//! (serde-pickle) aborts the process on deep nesting and blows up memory on
//! DUP/MARK bombs (docs/decisions.md, "Our own code in place of a named
//! crate"), so this module is our own small
//! stack machine over a borrowed byte slice. It owns:
//!
//! - [`decode`], which turns one frame into a record's [`Fields`];
//! - the opcode interpreter (`machine`): every opcode CPython emits for
//!   plain data under protocols 0-5, with explicit stacks (no recursion on
//!   the input's structure) and hard limits (the constants below);
//! - class references (`objects`): `GLOBAL`/`STACK_GLOBAL` followed by
//!   `REDUCE`/`NEWOBJ`/`BUILD`/... never execute anything. They become inert
//!   [`Value::Object`](crate::record::Value::Object)s that keep
//!   `module.qualname` and, for datetime, date, time, timedelta, timezone,
//!   Decimal and UUID, Python's `str()`/`repr()` computed from the pickled
//!   state. A few reductions are plain data and decode as such: `set`/
//!   `frozenset` of a list (protocols < 4), `_codecs.encode(str, 'latin1')`
//!   (bytes under protocols < 3), `bytes()`, and `collections.OrderedDict`
//!   (a `Dict`). A `bytearray` is an object rendered `bytearray(b'..')`,
//!   as Python prints it (protocol 5's `BYTEARRAY8`, which SocketHandler
//!   never sends, decodes as bytes). A class used as a value
//!   (`extra={'cls': ValueError}`) renders as Python does, `<class
//!   'ValueError'>`. A datetime or time whose tzinfo is not a
//!   `datetime.timezone` (zoneinfo, pytz) has no offset in its `str()`:
//!   that offset comes from code we do not run;
//! - the conversion of the decoded object graph into shared [`Value`]s
//!   (`convert`): a memo reference (`GET`) becomes an `Arc` clone, never a
//!   deep copy, and a container that contains itself renders its inner
//!   reference as Python's repr would (`[...]`, `{...}`, `(...)`).
//!
//! Strings borrow from the frame (`Bytes::slice`), so a typical record
//! copies no text. Invalid UTF-8 (Python pickles lone surrogates with
//! `surrogatepass`) and protocol 0's escaped text are the only strings that
//! allocate: each encoded surrogate, and each other invalid sequence,
//! becomes one U+FFFD.
//!
//! Python-compatible leniencies: bytes after `STOP` are ignored (as
//! `pickle.loads` does); a dict that repeats a key keeps its first position
//! with the last value (as a Python dict) at the top level, where the record
//! fields must be unique; nested containers are kept as sent (a real
//! pickler never repeats a dict key or set item). Python 2 `str` (`STRING`,
//! `BINSTRING`, `SHORT_BINSTRING`) decodes as text, as Python 3 does.
//!
//! [`Value`]: crate::record::Value

mod convert;
mod fast;
mod machine;
mod objects;
mod pairs;
mod scalar;
mod to_json;

pub(crate) use scalar::lossy;
pub use to_json::write_json;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::codec::Keep;
use crate::record::Fields;

/// Deepest nesting of containers in a decoded value (the record dict is
/// depth 1). Consumers (formatter, JSON encoder, `Drop`) walk values
/// recursively, so this bounds their stack use too. Python's own `repr`
/// gives up near 1000; real log extras are a few levels deep.
pub const MAX_DEPTH: usize = 256;

/// Most simultaneously open MARKs. Real pickles open one per container being
/// built, so this is never reached before [`MAX_DEPTH`]; it stops a frame of
/// MARK opcodes from growing the mark stack with the frame.
pub const MAX_MARKS: usize = 2 * MAX_DEPTH;

/// Most values (pushes on the value stack), memo entries and class
/// references (each counted separately) one frame may create. Every opcode
/// makes at most one, so this caps the decoder's memory at about 100 MiB
/// whatever the frame size, while a normal record uses under a hundred.
pub const MAX_SLOTS: usize = 1 << 20;

/// Longest `module.qualname` of a class reference. Python names are short;
/// the cap keeps a memoized megabyte string from being copied into a class
/// name over and over.
pub const MAX_CLASS_NAME: usize = 1024;

/// How far past the end of the memo a PUT may write. CPython always writes
/// the next index; a little slack tolerates other picklers, and the bound
/// stops `LONG_BINPUT 0xFFFFFFFF` from allocating a huge memo.
pub const MAX_MEMO_GAP: usize = 1024;

/// Python's default `sys.int_info.default_max_str_digits` (3.11+): larger
/// integers cannot be printed by Python either, so they are refused.
pub const MAX_INT_DIGITS: usize = 4300;

/// The binary (`LONG1`/`LONG4`) size of a [`MAX_INT_DIGITS`]-digit integer.
pub const MAX_LONG_BYTES: usize = 1786;

/// The decoded value's size if every shared reference were expanded into a
/// copy (what a formatter renders), in units of one scalar or 16 bytes of
/// text, may not exceed `EXPANSION_BASE + EXPANSION_PER_BYTE * frame_len`.
/// Memo references are cheap to decode (an `Arc` clone) but a "billion
/// laughs" pickle (`[x, x]` nested 30 times) would make every downstream
/// stage render 2^30 items; this refuses it while allowing ordinary sharing.
pub const EXPANSION_BASE: u64 = 16 * 1024;

/// See [`EXPANSION_BASE`].
pub const EXPANSION_PER_BYTE: u64 = 8;

/// CPU work allowed beyond one step per opcode (which the frame size already
/// bounds): `WORK_BASE + WORK_PER_BYTE * frame_len` steps of about a
/// nanosecond. Big-integer to decimal conversion is quadratic in the digits
/// and copying a list into a set that is then mutated is linear in the list,
/// so both are charged here.
pub const WORK_BASE: u64 = 1 << 20;

/// See [`WORK_BASE`].
pub const WORK_PER_BYTE: u64 = 8;

/// Why a frame was refused. Each variant says where and why; none means the
/// connection is broken (framing already succeeded), so only this record is
/// dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The frame ended inside an opcode or before `STOP`.
    #[error("truncated: opcode at byte {pos} needs {want} more bytes, {got} left")]
    Truncated {
        /// Offset of the opcode being read.
        pos: usize,
        /// Bytes it needed after the opcode byte (or its length field).
        want: u64,
        /// Bytes that were left.
        got: usize,
    },
    /// An opcode outside the allow-list (persistent ids, extension
    /// registry, out-of-band buffers) or not an opcode at all.
    #[error("unsupported opcode 0x{op:02x} at byte {pos}")]
    UnsupportedOpcode {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        pos: usize,
    },
    /// A `PROTO` opcode naming a protocol above 5.
    #[error("unsupported pickle protocol {version}")]
    UnsupportedProtocol {
        /// The protocol number.
        version: u8,
    },
    /// An opcode needed more values (or a MARK) than the stack held.
    #[error("stack underflow: opcode 0x{op:02x} at byte {pos}")]
    StackUnderflow {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        pos: usize,
    },
    /// An opcode found a value of the wrong type (APPEND to a dict, a
    /// STACK_GLOBAL name that is not a str, an odd SETITEMS count...).
    #[error("opcode 0x{op:02x} at byte {pos} expects {expected}, found {found}")]
    WrongType {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        pos: usize,
        /// What it needed.
        expected: &'static str,
        /// What it found.
        found: &'static str,
    },
    /// The text argument of a protocol-0 opcode (INT, LONG, FLOAT, STRING,
    /// GET/PUT) does not parse.
    #[error("invalid {what} text at byte {pos}")]
    InvalidText {
        /// Which kind of text.
        what: &'static str,
        /// Offset of the opcode.
        pos: usize,
    },
    /// A GET of a memo key that was never PUT.
    #[error("memo key {key} read at byte {pos} was never stored")]
    MemoMissing {
        /// The key.
        key: u64,
        /// Offset of the GET.
        pos: usize,
    },
    /// A PUT far beyond the current memo size (see [`MAX_MEMO_GAP`]).
    #[error("memo key {key} at byte {pos} is out of range")]
    MemoOutOfRange {
        /// The key.
        key: u64,
        /// Offset of the PUT.
        pos: usize,
    },
    /// An integer longer than [`MAX_INT_DIGITS`] digits.
    #[error("integer at byte {pos} exceeds {limit} digits")]
    IntTooLarge {
        /// Offset of the opcode.
        pos: usize,
        /// The digit limit.
        limit: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("containers nested deeper than {limit}")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
    /// One of the resource limits above was reached.
    #[error("{what} limit of {limit} exceeded")]
    BudgetExceeded {
        /// Which resource: "values", "containers", "marks", "expansion"
        /// or "work".
        what: &'static str,
        /// The limit that applied to this frame.
        limit: u64,
    },
    /// The pickle's top-level value is not a dict.
    #[error("top-level value is {found}, not a dict")]
    NotADict {
        /// The Python type found.
        found: &'static str,
    },
    /// A top-level dict key that is not a str (a LogRecord's attribute
    /// names are always str).
    #[error("top-level dict key is {found}, not a str")]
    KeyNotStr {
        /// The Python type found.
        found: &'static str,
    },
}

/// Decode one SocketHandler pickle (the frame without its length prefix)
/// into a record's fields, in the dict's order.
///
/// Strings and bytes in the result borrow from `frame`. Runs in time and
/// memory linear in `frame.len()` (bounded by the limits above), executes
/// nothing, and never panics.
pub fn decode(frame: &Bytes) -> Result<Fields, PickleError> {
    decode_keeping(frame, Keep::ALL)
}

/// [`decode`] for a reader of only the fields `keep` names: the fast path
/// leaves the others out (the general machine keeps every field). Whether
/// the frame decodes does not depend on `keep`.
pub fn decode_keeping(frame: &Bytes, keep: Keep) -> Result<Fields, PickleError> {
    decode_plain(frame, keep).map(|(fields, _)| fields)
}

/// [`decode_keeping`], and whether `frame` is plain `makePickle` output
/// that an encoder may send on as it is (asked by [`Keep::FRAME`]): a
/// flat dict of strings, numbers, booleans and `None`, read by the pair
/// loop, every string valid UTF-8 (not looked at when only a
/// [`Keep::RAW_FRAME`] reader asked). Such a frame holds no opcode that
/// could make any unpickler run code, so forwarding its bytes is as safe
/// as re-encoding them. When it is not, every field is decoded (not only
/// those `keep` names) for the encoder to write.
pub fn decode_plain(frame: &Bytes, keep: Keep) -> Result<(Fields, bool), PickleError> {
    if let Some((fields, plain)) = pairs::try_decode(frame, keep) {
        if plain || !keep.wants_frame() {
            return Ok((fields, plain));
        }
        // Dropped on this thread, so its list goes round (`spare_fields`).
        drop(fields);
    }
    let keep = keep.without_frame();
    let fields = match fast::try_decode(frame, keep) {
        Some(fields) => fields,
        None => decode_general(frame)?,
    };
    Ok((fields, false))
}

/// [`decode`] without the fast path: the full machine for every frame.
pub fn decode_general(frame: &Bytes) -> Result<Fields, PickleError> {
    machine::with_scratch(|scratch| {
        let mut m = machine::Machine::new(frame, scratch);
        let root = m.run()?;
        convert::into_fields(&mut m, root)
    })
}
