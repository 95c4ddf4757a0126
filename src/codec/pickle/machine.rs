//! The opcode interpreter: a loop over the frame's bytes that keeps an
//! explicit value stack, mark stack and memo, and builds an object graph in
//! a flat arena. Nothing here recurses on the input's structure, every
//! declared length is checked against the bytes actually left before it is
//! used, and every growing structure is capped (see the limits in
//! [`super`]).
//!
//! Containers live in the arena (`Scratch::nodes`) rather than on the stack
//! because pickle builds them mutably and shares them through the memo:
//! `EMPTY_LIST, PUT 0, ..., APPENDS` fills a list that the memo already
//! refers to, and a list may contain itself. The arena gives every
//! container one identity; [`super::convert`] turns the finished graph into
//! shared `Value`s once, at `STOP`.

use std::cell::Cell;

use bytes::Bytes;

use super::convert::Conv;
use super::objects::Obj;
use super::{scalar, PickleError, MAX_MARKS, MAX_MEMO_GAP, MAX_SLOTS, WORK_BASE, WORK_PER_BYTE};
use crate::record::{Str, Value};

/// One value-stack (or container) entry.
#[derive(Clone, Debug)]
pub(super) enum Slot {
    /// A scalar: None, bool, int, float, str or bytes. Never a container,
    /// so dropping one never recurses.
    Val(Value),
    /// A container or object: an index into `Scratch::nodes`.
    Node(u32),
    /// A class reference (`GLOBAL`, `STACK_GLOBAL`): an index into
    /// `Scratch::classes`.
    Class(u32),
}

/// One memo entry.
#[derive(Clone, Debug)]
pub(super) enum Memo {
    /// A gap left by an out-of-order PUT.
    Empty,
    /// The scalar pushed by the length-prefixed str/bytes opcode at this
    /// offset. Re-reading it on GET (rare) is cheaper than cloning every
    /// memoized string at PUT (every key of every record is memoized).
    Op(usize),
    /// Any other scalar.
    Val(Value),
    /// A container or object.
    Node(u32),
    /// A class reference.
    Class(u32),
}

/// A container or object in the arena.
#[derive(Debug)]
pub(super) struct Node {
    /// What it is.
    pub kind: Kind,
    /// Its items; a dict's are flattened `key, value, key, value`.
    pub items: Vec<Slot>,
}

/// The kinds of arena nodes.
#[derive(Debug)]
pub(super) enum Kind {
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    /// `set(x)`/`frozenset(x)` as protocols < 4 pickle sets: shares the
    /// items of node `src` (a list) instead of copying them, so repeating
    /// the reduction through the memo costs nothing.
    SetOf {
        src: u32,
        frozen: bool,
    },
    /// An inert class instance.
    Object(Box<Obj>),
}

/// The decoder's reusable buffers, one set per thread, so decoding a
/// record allocates no stacks.
#[derive(Default)]
pub(super) struct Scratch {
    pub stack: Vec<Slot>,
    pub marks: Vec<usize>,
    pub memo: Vec<Memo>,
    pub nodes: Vec<Node>,
    pub classes: Vec<Str>,
    pub conv: Vec<Conv>,
    /// Converted class references, one per class: each reference to a
    /// class is then an `Arc` clone, however often it is repeated.
    pub class_vals: Vec<Option<Value>>,
    /// The placeholder of unrendered instances, one per class.
    pub instance_vals: Vec<Option<Value>>,
    /// Empty item vectors kept from earlier frames: every record fills
    /// one dict, so reusing its vector saves an allocation per record.
    pub spare: Vec<Vec<Slot>>,
}

impl Scratch {
    /// Drop everything the last frame left (releasing its `Bytes`), keeping
    /// small allocations for the next frame and freeing big ones so that
    /// one huge frame does not pin memory.
    fn reset(&mut self) {
        const KEEP: usize = 4096;
        fn reset<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity() > KEEP {
                v.shrink_to(KEEP);
            }
        }
        reset(&mut self.stack);
        reset(&mut self.marks);
        reset(&mut self.memo);
        reset(&mut self.nodes);
        reset(&mut self.classes);
        reset(&mut self.conv);
        reset(&mut self.class_vals);
        reset(&mut self.instance_vals);
        // `spare` holds only empty vectors: nothing of the frame survives.
    }

    /// Give back an item vector for reuse (emptied first).
    pub fn recycle(&mut self, mut items: Vec<Slot>) {
        const KEEP_VECS: usize = 8;
        const KEEP_ITEMS: usize = 1024;
        items.clear();
        if self.spare.len() < KEEP_VECS && items.capacity() <= KEEP_ITEMS {
            self.spare.push(items);
        }
    }
}

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// Run `f` with this thread's scratch buffers, cleared afterwards. The
/// buffers are moved out of the thread-local for the call, so nothing is
/// borrowed while `f` runs (fresh buffers if the thread is shutting down).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    let out = f(&mut scratch);
    scratch.reset();
    let _ = SCRATCH.try_with(|c| c.set(scratch));
    out
}

/// The interpreter state for one frame.
pub(super) struct Machine<'a> {
    pub frame: &'a Bytes,
    pub s: &'a mut Scratch,
    pos: usize,
    work: u64,
    work_limit: u64,
    /// Values pushed so far (see MAX_SLOTS).
    pushed: usize,
    /// Offset of the opcode that pushed the current top of the stack, when
    /// that was a scalar opcode and nothing but PUTs happened since.
    last_scalar: Option<usize>,
}

// Opcode bytes, named as in CPython's Lib/pickle.py.
pub(super) const MARK: u8 = b'(';
pub(super) const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const FLOAT: u8 = b'F';
pub(super) const INT: u8 = b'I';
pub(super) const BININT: u8 = b'J';
pub(super) const BININT1: u8 = b'K';
pub(super) const LONG: u8 = b'L';
pub(super) const BININT2: u8 = b'M';
pub(super) const NONE: u8 = b'N';
const REDUCE: u8 = b'R';
const STRING: u8 = b'S';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const UNICODE: u8 = b'V';
pub(super) const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const DICT: u8 = b'd';
pub(super) const EMPTY_DICT: u8 = b'}';
const APPENDS: u8 = b'e';
const GET: u8 = b'g';
pub(super) const BINGET: u8 = b'h';
const INST: u8 = b'i';
pub(super) const LONG_BINGET: u8 = b'j';
const LIST: u8 = b'l';
const EMPTY_LIST: u8 = b']';
const OBJ: u8 = b'o';
const PUT: u8 = b'p';
pub(super) const BINPUT: u8 = b'q';
pub(super) const LONG_BINPUT: u8 = b'r';
pub(super) const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
pub(super) const SETITEMS: u8 = b'u';
pub(super) const BINFLOAT: u8 = b'G';
pub(super) const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
pub(super) const NEWTRUE: u8 = 0x88;
pub(super) const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const FROZENSET: u8 = 0x91;
const NEWOBJ_EX: u8 = 0x92;
const STACK_GLOBAL: u8 = 0x93;
pub(super) const MEMOIZE: u8 = 0x94;
pub(super) const FRAME: u8 = 0x95;
const BYTEARRAY8: u8 = 0x96;

/// Longest memoized string re-read from the frame on GET (see `Memo::Op`).
const MAX_REREAD: usize = 64;

/// The highest protocol we understand (Python 3.8+ writes up to 5).
const HIGHEST_PROTOCOL: u8 = 5;

impl<'a> Machine<'a> {
    /// A machine at the start of `frame`.
    pub fn new(frame: &'a Bytes, s: &'a mut Scratch) -> Machine<'a> {
        Machine {
            frame,
            s,
            pos: 0,
            work: 0,
            work_limit: WORK_BASE.saturating_add(WORK_PER_BYTE.saturating_mul(frame.len() as u64)),
            pushed: 0,
            last_scalar: None,
        }
    }

    /// Interpret opcodes up to `STOP` and return the value it pops.
    pub fn run(&mut self) -> Result<Slot, PickleError> {
        loop {
            let pos = self.pos;
            let Some(&op) = self.frame.get(pos) else {
                return Err(PickleError::Truncated {
                    pos,
                    want: 1,
                    got: 0,
                });
            };
            self.pos += 1;
            if !matches!(op, PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME) {
                self.last_scalar = None;
            }
            match op {
                NONE | NEWTRUE | NEWFALSE | INT | BININT | BININT1 | BININT2 | LONG | LONG1
                | LONG4 | FLOAT | BINFLOAT | STRING | BINSTRING | SHORT_BINSTRING | UNICODE
                | BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 | BINBYTES | SHORT_BINBYTES
                | BINBYTES8 | BYTEARRAY8 => {
                    let v = self.scalar(op, pos)?;
                    self.push(Slot::Val(v))?;
                    self.last_scalar = Some(pos);
                }
                STOP => return self.pop(op, pos),
                MARK => {
                    if self.s.marks.len() >= MAX_MARKS {
                        return Err(PickleError::BudgetExceeded {
                            what: "marks",
                            limit: MAX_MARKS as u64,
                        });
                    }
                    self.s.marks.push(self.s.stack.len());
                }
                POP => {
                    let len = self.s.stack.len();
                    if self.s.marks.last() == Some(&len) {
                        self.s.marks.pop(); // CPython pops a MARK here too
                    } else {
                        self.pop(op, pos)?;
                    }
                }
                POP_MARK => {
                    let m = self.pop_mark(op, pos)?;
                    self.s.stack.truncate(m);
                }
                DUP => {
                    let top = self.top(op, pos)?;
                    let v = self.s.stack[top].clone();
                    self.push(v)?;
                }
                EMPTY_LIST => self.push_node(Kind::List, Vec::new())?,
                EMPTY_DICT => self.push_node(Kind::Dict, Vec::new())?,
                EMPTY_SET => self.push_node(Kind::Set, Vec::new())?,
                EMPTY_TUPLE => self.push_node(Kind::Tuple, Vec::new())?,
                LIST | TUPLE | DICT | FROZENSET => {
                    let m = self.pop_mark(op, pos)?;
                    let items: Vec<Slot> = self.s.stack.drain(m..).collect();
                    let kind = match op {
                        LIST => Kind::List,
                        TUPLE => Kind::Tuple,
                        FROZENSET => Kind::FrozenSet,
                        _ => {
                            if !items.len().is_multiple_of(2) {
                                return Err(odd_pairs(op, pos));
                            }
                            Kind::Dict
                        }
                    };
                    self.push_node(kind, items)?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1) + 1;
                    let from = self.above_fence(n, op, pos)?;
                    let items: Vec<Slot> = self.s.stack.drain(from..).collect();
                    self.push_node(Kind::Tuple, items)?;
                }
                APPEND | SETITEM => {
                    let n = if op == APPEND { 1 } else { 2 };
                    let from = self.above_fence(n + 1, op, pos)? + 1;
                    self.extend(from - 1, from, op, pos)?;
                }
                APPENDS | SETITEMS | ADDITEMS => {
                    let m = self.pop_mark(op, pos)?;
                    if m == 0 {
                        return Err(PickleError::StackUnderflow { op, pos });
                    }
                    self.extend(m - 1, m, op, pos)?;
                }
                GET | BINGET | LONG_BINGET => {
                    let key = match op {
                        GET => self.text_key(pos)?,
                        BINGET => u64::from(self.fixed::<1>(pos)?[0]),
                        _ => u64::from(u32::from_le_bytes(self.fixed::<4>(pos)?)),
                    };
                    let slot = self.memo_get(key, pos)?;
                    self.push(slot)?;
                }
                PUT | BINPUT | LONG_BINPUT | MEMOIZE => {
                    let key = match op {
                        PUT => self.text_key(pos)?,
                        BINPUT => u64::from(self.fixed::<1>(pos)?[0]),
                        LONG_BINPUT => u64::from(u32::from_le_bytes(self.fixed::<4>(pos)?)),
                        _ => self.s.memo.len() as u64,
                    };
                    self.memo_put(key, op, pos)?;
                }
                GLOBAL => {
                    let (ms, me) = self.line(pos)?;
                    let (ns, ne) = self.line(pos)?;
                    let module = scalar::utf8(self.frame, ms, me);
                    let name = scalar::utf8(self.frame, ns, ne);
                    let c = self.class_ref(&module, &name)?;
                    self.push(c)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop(op, pos)?;
                    let module = self.pop(op, pos)?;
                    match (module, name) {
                        (Slot::Val(Value::Str(m)), Slot::Val(Value::Str(n))) => {
                            let c = self.class_ref(&m, &n)?;
                            self.push(c)?;
                        }
                        (m, n) => {
                            let bad = if matches!(m, Slot::Val(Value::Str(_))) {
                                n
                            } else {
                                m
                            };
                            return Err(self.wrong(op, pos, "a str", &bad));
                        }
                    }
                }
                REDUCE => {
                    let args = self.pop(op, pos)?;
                    let callable = self.pop(op, pos)?;
                    let v = self.reduce(callable, args, op, pos)?;
                    self.push(v)?;
                }
                NEWOBJ | NEWOBJ_EX => {
                    if op == NEWOBJ_EX {
                        self.pop(op, pos)?; // kwargs: no class we render needs them
                    }
                    let args = self.pop(op, pos)?;
                    let cls = self.pop(op, pos)?;
                    let v = self.newobj(cls, args, op, pos)?;
                    self.push(v)?;
                }
                INST => {
                    let (ms, me) = self.line(pos)?;
                    let (ns, ne) = self.line(pos)?;
                    let module = scalar::utf8(self.frame, ms, me);
                    let name = scalar::utf8(self.frame, ns, ne);
                    let m = self.pop_mark(op, pos)?;
                    let args: Vec<Slot> = self.s.stack.drain(m..).collect();
                    let Slot::Class(c) = self.class_ref(&module, &name)? else {
                        return Err(PickleError::UnsupportedOpcode { op, pos });
                    };
                    let v = self.instantiate(c, &args)?;
                    self.push(v)?;
                }
                OBJ => {
                    let m = self.pop_mark(op, pos)?;
                    let mut args: Vec<Slot> = self.s.stack.drain(m..).collect();
                    if args.is_empty() {
                        return Err(PickleError::StackUnderflow { op, pos });
                    }
                    let cls = args.remove(0);
                    let v = self.newobj_with(cls, &args, op, pos)?;
                    self.push(v)?;
                }
                BUILD => {
                    let state = self.pop(op, pos)?;
                    let top = self.top(op, pos)?;
                    let target = self.s.stack[top].clone();
                    self.build(target, state)?;
                }
                PROTO => {
                    let version = self.fixed::<1>(pos)?[0];
                    if version > HIGHEST_PROTOCOL {
                        return Err(PickleError::UnsupportedProtocol { version });
                    }
                }
                FRAME => {
                    // Protocol 4 framing is a read-ahead hint; the frame is
                    // already in memory. Only check it is not a lie.
                    let len = u64::from_le_bytes(self.fixed::<8>(pos)?);
                    self.check_len(len, pos)?;
                }
                _ => return Err(PickleError::UnsupportedOpcode { op, pos }),
            }
        }
    }

    /// Read the argument of scalar opcode `op` (at offset `pos`; `self.pos`
    /// is just past it) and return its value.
    fn scalar(&mut self, op: u8, pos: usize) -> Result<Value, PickleError> {
        Ok(match op {
            NONE => Value::None,
            NEWTRUE => Value::Bool(true),
            NEWFALSE => Value::Bool(false),
            BININT => Value::Int(i64::from(i32::from_le_bytes(self.fixed::<4>(pos)?))),
            BININT1 => Value::Int(i64::from(self.fixed::<1>(pos)?[0])),
            BININT2 => Value::Int(i64::from(u16::from_le_bytes(self.fixed::<2>(pos)?))),
            INT => {
                let (s, e) = self.line(pos)?;
                // Protocol 0 writes booleans as INT "00" / "01".
                match &self.frame[s..e] {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    _ => scalar::int_text(self.frame, s, e, pos)?
                        .ok_or(PickleError::InvalidText { what: "int", pos })?,
                }
            }
            LONG => {
                let (s, mut e) = self.line(pos)?;
                if e > s && self.frame[e - 1] == b'L' {
                    e -= 1; // Python 2 style "123L"
                }
                scalar::int_text(self.frame, s, e, pos)?
                    .ok_or(PickleError::InvalidText { what: "long", pos })?
            }
            LONG1 | LONG4 => {
                let n = if op == LONG1 {
                    u64::from(self.fixed::<1>(pos)?[0])
                } else {
                    let n = i32::from_le_bytes(self.fixed::<4>(pos)?);
                    u64::try_from(n).map_err(|_| PickleError::InvalidText { what: "long", pos })?
                };
                let (s, e) = self.take(n, pos)?;
                let (v, work) = scalar::int_le(&self.frame[s..e], pos)?;
                self.charge(work)?;
                v
            }
            FLOAT => {
                let (s, e) = self.line(pos)?;
                Value::Float(
                    scalar::float_text(&self.frame[s..e])
                        .ok_or(PickleError::InvalidText { what: "float", pos })?,
                )
            }
            BINFLOAT => Value::Float(f64::from_be_bytes(self.fixed::<8>(pos)?)),
            STRING => {
                let (s, e) = self.line(pos)?;
                let bytes =
                    scalar::quoted_string(&self.frame[s..e]).ok_or(PickleError::InvalidText {
                        what: "string",
                        pos,
                    })?;
                Value::Str(match String::from_utf8(bytes) {
                    Ok(s) => Str::from(s),
                    Err(e) => Str::from(scalar::lossy(e.as_bytes())),
                })
            }
            // Python 2 `str`: decoded as text, as Python 3 does by default.
            BINSTRING | SHORT_BINSTRING | BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 => {
                let n = self.len_prefix(op, pos)?;
                let (s, e) = self.take(n, pos)?;
                Value::Str(scalar::utf8(self.frame, s, e))
            }
            UNICODE => {
                let (s, e) = self.line(pos)?;
                Value::Str(scalar::raw_unicode_escape(self.frame, s, e).ok_or(
                    PickleError::InvalidText {
                        what: "unicode",
                        pos,
                    },
                )?)
            }
            // BYTEARRAY8 decodes as bytes: see the module documentation.
            BINBYTES | SHORT_BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                let n = self.len_prefix(op, pos)?;
                let (s, e) = self.take(n, pos)?;
                Value::Bytes(self.frame.slice(s..e))
            }
            _ => return Err(PickleError::UnsupportedOpcode { op, pos }),
        })
    }

    /// The length field of a length-prefixed str/bytes opcode.
    fn len_prefix(&mut self, op: u8, pos: usize) -> Result<u64, PickleError> {
        Ok(match op {
            SHORT_BINSTRING | SHORT_BINUNICODE | SHORT_BINBYTES => {
                u64::from(self.fixed::<1>(pos)?[0])
            }
            BINSTRING => {
                let n = i32::from_le_bytes(self.fixed::<4>(pos)?);
                u64::try_from(n).map_err(|_| PickleError::InvalidText {
                    what: "length",
                    pos,
                })?
            }
            BINUNICODE | BINBYTES => u64::from(u32::from_le_bytes(self.fixed::<4>(pos)?)),
            _ => u64::from_le_bytes(self.fixed::<8>(pos)?),
        })
    }

    /// Check that `n` more bytes exist, without consuming them.
    fn check_len(&self, n: u64, pos: usize) -> Result<(), PickleError> {
        let left = self.frame.len() - self.pos;
        if n > left as u64 {
            return Err(PickleError::Truncated {
                pos,
                want: n,
                got: left,
            });
        }
        Ok(())
    }

    /// Consume `n` bytes of argument; the range they occupy. A declared
    /// length larger than what is left fails here, before anything is
    /// allocated for it.
    fn take(&mut self, n: u64, pos: usize) -> Result<(usize, usize), PickleError> {
        self.check_len(n, pos)?;
        let start = self.pos;
        self.pos += n as usize; // n <= bytes left, so it fits
        Ok((start, self.pos))
    }

    /// Consume a fixed-size argument.
    fn fixed<const N: usize>(&mut self, pos: usize) -> Result<[u8; N], PickleError> {
        let (s, e) = self.take(N as u64, pos)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.frame[s..e]);
        Ok(out)
    }

    /// Consume a newline-terminated argument; its range without the `\n`.
    fn line(&mut self, pos: usize) -> Result<(usize, usize), PickleError> {
        let rest = &self.frame[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let start = self.pos;
                self.pos += i + 1;
                Ok((start, start + i))
            }
            None => Err(PickleError::Truncated {
                pos,
                want: rest.len() as u64 + 1,
                got: rest.len(),
            }),
        }
    }

    /// The decimal memo key of a protocol-0 GET/PUT.
    fn text_key(&mut self, pos: usize) -> Result<u64, PickleError> {
        let (s, e) = self.line(pos)?;
        std::str::from_utf8(&self.frame[s..e])
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or(PickleError::InvalidText {
                what: "memo key",
                pos,
            })
    }

    /// Charge `work` steps to the frame's work budget.
    pub(super) fn charge(&mut self, work: u64) -> Result<(), PickleError> {
        self.work = self.work.saturating_add(work);
        if self.work > self.work_limit {
            return Err(PickleError::BudgetExceeded {
                what: "work",
                limit: self.work_limit,
            });
        }
        Ok(())
    }

    fn push(&mut self, slot: Slot) -> Result<(), PickleError> {
        // Counting every push, not the stack's height, also bounds the
        // items moved into containers, since all of them were pushed.
        self.pushed += 1;
        if self.pushed > MAX_SLOTS {
            return Err(PickleError::BudgetExceeded {
                what: "values",
                limit: MAX_SLOTS as u64,
            });
        }
        self.s.stack.push(slot);
        Ok(())
    }

    /// Add a node to the arena and return its slot.
    pub(super) fn node(&mut self, kind: Kind, items: Vec<Slot>) -> Result<Slot, PickleError> {
        let id = self.s.nodes.len();
        if id >= MAX_SLOTS {
            return Err(PickleError::BudgetExceeded {
                what: "containers",
                limit: MAX_SLOTS as u64,
            });
        }
        self.s.nodes.push(Node { kind, items });
        Ok(Slot::Node(id as u32)) // MAX_SLOTS < u32::MAX
    }

    fn push_node(&mut self, kind: Kind, items: Vec<Slot>) -> Result<(), PickleError> {
        let slot = self.node(kind, items)?;
        self.push(slot)
    }

    /// The current fence: values below the innermost MARK belong to an
    /// enclosing construct, and (as in CPython) no opcode may pop them.
    fn fence(&self) -> usize {
        self.s.marks.last().copied().unwrap_or(0)
    }

    /// Index of the top value, which must be above the fence.
    fn top(&self, op: u8, pos: usize) -> Result<usize, PickleError> {
        self.above_fence(1, op, pos)
    }

    /// Index of the n-th value from the top, all n above the fence.
    fn above_fence(&self, n: usize, op: u8, pos: usize) -> Result<usize, PickleError> {
        let len = self.s.stack.len();
        if len < self.fence() + n {
            return Err(PickleError::StackUnderflow { op, pos });
        }
        Ok(len - n)
    }

    fn pop(&mut self, op: u8, pos: usize) -> Result<Slot, PickleError> {
        self.top(op, pos)?;
        self.s
            .stack
            .pop()
            .ok_or(PickleError::StackUnderflow { op, pos })
    }

    fn pop_mark(&mut self, op: u8, pos: usize) -> Result<usize, PickleError> {
        self.s
            .marks
            .pop()
            .ok_or(PickleError::StackUnderflow { op, pos })
    }

    /// Move `stack[from..]` into the container at `stack[target]`
    /// (APPEND(S), SETITEM(S), ADDITEMS).
    fn extend(
        &mut self,
        target: usize,
        from: usize,
        op: u8,
        pos: usize,
    ) -> Result<(), PickleError> {
        let slot = self.s.stack[target].clone();
        let Slot::Node(id) = slot else {
            return Err(self.wrong(op, pos, container_for(op), &slot));
        };
        let id = id as usize;
        let pairs = matches!(op, SETITEM | SETITEMS);
        if pairs && !(self.s.stack.len() - from).is_multiple_of(2) {
            return Err(odd_pairs(op, pos));
        }
        let ok = match &self.s.nodes[id].kind {
            Kind::List => matches!(op, APPEND | APPENDS),
            Kind::Dict => pairs,
            Kind::Set => op == ADDITEMS,
            Kind::SetOf { frozen: false, .. } if op == ADDITEMS => {
                self.materialize(id)?;
                true
            }
            Kind::Object(_) => {
                // A list/dict subclass instance: its items do not show in
                // the placeholder, so they are dropped.
                self.s.stack.truncate(from);
                return Ok(());
            }
            _ => false,
        };
        if !ok {
            return Err(self.wrong(op, pos, container_for(op), &slot));
        }
        let Scratch {
            stack,
            nodes,
            spare,
            ..
        } = &mut *self.s;
        let items = &mut nodes[id].items;
        if items.capacity() == 0 {
            if let Some(v) = spare.pop() {
                *items = v;
            }
        }
        items.extend(stack.drain(from..));
        Ok(())
    }

    /// Turn a `SetOf` alias into a set with its own items (before it is
    /// mutated), charging the copy to the work budget.
    fn materialize(&mut self, id: usize) -> Result<(), PickleError> {
        if let Kind::SetOf { src, .. } = self.s.nodes[id].kind {
            let items = self.s.nodes[src as usize].items.clone();
            self.charge(items.len() as u64)?;
            let node = &mut self.s.nodes[id];
            node.kind = Kind::Set;
            node.items = items;
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u64, pos: usize) -> Result<Slot, PickleError> {
        let entry = usize::try_from(key)
            .ok()
            .and_then(|k| self.s.memo.get(k))
            .cloned();
        Ok(match entry {
            Some(Memo::Op(at)) => Slot::Val(self.rescan(at)?),
            Some(Memo::Val(v)) => Slot::Val(v),
            Some(Memo::Node(n)) => Slot::Node(n),
            Some(Memo::Class(c)) => Slot::Class(c),
            Some(Memo::Empty) | None => return Err(PickleError::MemoMissing { key, pos }),
        })
    }

    /// Decode again the scalar opcode at `at` (it succeeded before).
    fn rescan(&mut self, at: usize) -> Result<Value, PickleError> {
        let saved = self.pos;
        self.pos = at + 1;
        let op = self.frame.get(at).copied().unwrap_or(NONE);
        let v = self.scalar(op, at);
        self.pos = saved;
        v
    }

    fn memo_put(&mut self, key: u64, op: u8, pos: usize) -> Result<(), PickleError> {
        let top = self.top(op, pos)?;
        let entry = match &self.s.stack[top] {
            Slot::Node(n) => Memo::Node(*n),
            Slot::Class(c) => Memo::Class(*c),
            // Re-reading is O(length) (UTF-8 validation), so only short
            // strings (keys, names) are re-read; others are shared.
            Slot::Val(v) => match (self.last_scalar, v) {
                (Some(at), Value::Str(t)) if t.len() <= MAX_REREAD && is_sliced(self.frame[at]) => {
                    Memo::Op(at)
                }
                (Some(at), Value::Bytes(b))
                    if b.len() <= MAX_REREAD && is_sliced(self.frame[at]) =>
                {
                    Memo::Op(at)
                }
                _ => Memo::Val(v.clone()),
            },
        };
        let memo = &mut self.s.memo;
        let len = memo.len();
        match usize::try_from(key) {
            Ok(k) if k < len => memo[k] = entry,
            Ok(k) if k - len <= MAX_MEMO_GAP && k < MAX_SLOTS => {
                memo.resize(k, Memo::Empty);
                memo.push(entry);
            }
            _ => return Err(PickleError::MemoOutOfRange { key, pos }),
        }
        Ok(())
    }

    /// A WrongType error naming what `found` is.
    pub(super) fn wrong(
        &self,
        op: u8,
        pos: usize,
        expected: &'static str,
        found: &Slot,
    ) -> PickleError {
        PickleError::WrongType {
            op,
            pos,
            expected,
            found: self.type_name(found),
        }
    }

    /// The Python type name of a slot, for error messages.
    pub(super) fn type_name(&self, slot: &Slot) -> &'static str {
        match slot {
            Slot::Val(v) => scalar_type_name(v),
            Slot::Class(_) => "a class",
            Slot::Node(n) => match self.s.nodes.get(*n as usize).map(|n| &n.kind) {
                Some(Kind::List) => "list",
                Some(Kind::Tuple) => "tuple",
                Some(Kind::Dict) => "dict",
                Some(Kind::Set) | Some(Kind::SetOf { frozen: false, .. }) => "set",
                Some(Kind::FrozenSet) | Some(Kind::SetOf { frozen: true, .. }) => "frozenset",
                Some(Kind::Object(_)) | None => "an object",
            },
        }
    }
}

/// The Python type name of a scalar.
pub(super) fn scalar_type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::FrozenSet(_) => "frozenset",
        Value::Dict(_) => "dict",
        Value::Object(_) => "an object",
    }
}

/// Opcodes whose value is a slice of the frame, cheap to re-read on GET.
fn is_sliced(op: u8) -> bool {
    matches!(
        op,
        BINUNICODE
            | SHORT_BINUNICODE
            | BINUNICODE8
            | BINSTRING
            | SHORT_BINSTRING
            | BINBYTES
            | SHORT_BINBYTES
            | BINBYTES8
            | BYTEARRAY8
    )
}

fn container_for(op: u8) -> &'static str {
    match op {
        APPEND | APPENDS => "a list",
        SETITEM | SETITEMS => "a dict",
        _ => "a set",
    }
}

fn odd_pairs(op: u8, pos: usize) -> PickleError {
    PickleError::WrongType {
        op,
        pos,
        expected: "key/value pairs",
        found: "an odd number of items",
    }
}
