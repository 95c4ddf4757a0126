//! Class references, made inert.
//!
//! `GLOBAL`/`STACK_GLOBAL` name a callable and `REDUCE`/`NEWOBJ`/`BUILD`/
//! `INST`/`OBJ` would call it. We never import or call anything: a class
//! reference is just its `module.qualname`, and an "instance" is an arena
//! object that keeps that name plus, for the handful of standard types a
//! log record commonly carries (datetime, date, time, timedelta, timezone,
//! Decimal, UUID), the `str()` and `repr()` Python would print, computed
//! from the pickled state. `os.system` + `REDUCE` is therefore an object
//! named `posix.system` and nothing else.
//!
//! Some reductions are how older protocols spell plain data, and decode as
//! that data: `set(list)`, `frozenset(list)`, `_codecs.encode(str,
//! 'latin1')` (bytes, protocols < 3), `bytes()` (bytes),
//! `collections.OrderedDict()` (a dict, filled by the SETITEMS that follow),
//! and `copyreg._reconstructor(cls, object, None)` / `copyreg.__newobj__`
//! (an instance of `cls`).

use super::machine::{Kind, Machine, Node, Slot};
use super::{PickleError, MAX_CLASS_NAME, MAX_SLOTS};
use crate::format::pyrepr::bytearray_repr;
use crate::record::{Str, Value};

/// An inert class instance in the arena.
#[derive(Debug)]
pub(super) struct Obj {
    /// `module.qualname`, Python 3 spelling.
    pub class: Str,
    /// Its index in `Scratch::classes`: unrendered instances of one class
    /// share one placeholder value.
    pub class_id: u32,
    /// `(str, repr)` when the type is one we render, else `None` (the
    /// placeholder `<module.qualname object>` is used).
    pub rendered: Option<(Str, Str)>,
    /// Facts other renderings need (a datetime needs its tzinfo's offset).
    pub aux: Aux,
}

/// Facts about a rendered object that other objects' renderings use.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Aux {
    None,
    /// A `datetime.timedelta`, normalised as Python stores it.
    Timedelta {
        days: i64,
        secs: i64,
        us: i64,
    },
    /// A `datetime.timezone` with a fixed offset.
    Timezone {
        offset_us: i64,
    },
    /// A `uuid.UUID` waiting for its `BUILD` state.
    Uuid,
}

/// The Python 3 name of a class named in a pickle. Python 3 writes
/// protocols < 3 with Python 2 module names (`fix_imports`), and
/// `pickle.loads` maps them back; we do the same for the names that matter
/// to plain data.
fn canonical(module: &str, name: &str) -> String {
    let (m, n) = match (module, name) {
        ("__builtin__", "xrange") => ("builtins", "range"),
        ("__builtin__", "unicode" | "basestring") => ("builtins", "str"),
        ("__builtin__", "long") => ("builtins", "int"),
        ("__builtin__" | "exceptions", n) => ("builtins", n),
        ("copy_reg", n) => ("copyreg", n),
        (m, n) => (m, n),
    };
    format!("{m}.{n}")
}

impl Machine<'_> {
    /// A class reference slot for `module.name`.
    pub(super) fn class_ref(&mut self, module: &str, name: &str) -> Result<Slot, PickleError> {
        if module.len() + name.len() > MAX_CLASS_NAME {
            return Err(PickleError::BudgetExceeded {
                what: "class name",
                limit: MAX_CLASS_NAME as u64,
            });
        }
        self.charge((module.len() + name.len()) as u64)?;
        let id = self.s.classes.len();
        if id >= MAX_SLOTS {
            return Err(PickleError::BudgetExceeded {
                what: "containers",
                limit: MAX_SLOTS as u64,
            });
        }
        self.s.classes.push(Str::from(canonical(module, name)));
        Ok(Slot::Class(id as u32)) // MAX_SLOTS < u32::MAX
    }

    /// The items of `args` if it is a tuple (cloned: the arena is mutated
    /// next), else none. The copy is charged to the work budget, since the
    /// same big tuple can be reduced again and again through the memo.
    fn tuple_items(&mut self, args: &Slot) -> Result<Vec<Slot>, PickleError> {
        let items = match args {
            Slot::Node(n) => match self.s.nodes.get(*n as usize) {
                Some(Node {
                    kind: Kind::Tuple,
                    items,
                }) => items.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.charge(items.len() as u64)?;
        Ok(items)
    }

    /// `REDUCE`: `callable(*args)`, made inert.
    pub(super) fn reduce(
        &mut self,
        callable: Slot,
        args: Slot,
        op: u8,
        pos: usize,
    ) -> Result<Slot, PickleError> {
        let id = match callable {
            Slot::Class(c) => c,
            // Calling the result of an earlier reduction (a bound method,
            // say): still just an inert object.
            Slot::Node(n) => match self.s.nodes.get(n as usize).map(|n| &n.kind) {
                Some(Kind::Object(o)) => {
                    let class_id = o.class_id;
                    return self.object(class_id, None, Aux::None);
                }
                _ => return Err(self.wrong(op, pos, "a class", &callable)),
            },
            Slot::Val(_) => return Err(self.wrong(op, pos, "a class", &callable)),
        };
        let class = self.s.classes[id as usize].clone();
        let items = self.tuple_items(&args)?;
        if matches!(
            &*class,
            "_codecs.encode" | "builtins.bytearray" | "builtins.bytes"
        ) {
            self.charge(items.iter().map(text_len).sum())?; // encode copies
        }
        match &*class {
            "builtins.set" | "builtins.frozenset" => {
                let frozen = &*class == "builtins.frozenset";
                match items.as_slice() {
                    [] => self.node(if frozen { Kind::FrozenSet } else { Kind::Set }, Vec::new()),
                    [Slot::Node(src)] if self.is_sequence(*src) => {
                        self.node(Kind::SetOf { src: *src, frozen }, Vec::new())
                    }
                    _ => self.instantiate(id, &[]),
                }
            }
            "_codecs.encode" => match items.as_slice() {
                [Slot::Val(Value::Str(s))] => Ok(Slot::Val(Value::Bytes(s.as_bytes().clone()))),
                [Slot::Val(Value::Str(s)), Slot::Val(Value::Str(enc))] => match encode(s, enc) {
                    Some(b) => Ok(Slot::Val(b)),
                    None => self.instantiate(id, &[]),
                },
                _ => self.instantiate(id, &[]),
            },
            "builtins.bytearray" | "builtins.bytes" => {
                let value = match items.as_slice() {
                    [] => Value::Bytes(bytes::Bytes::new()),
                    [Slot::Val(b @ Value::Bytes(_))] => b.clone(),
                    [Slot::Val(Value::Str(s)), Slot::Val(Value::Str(enc))] => {
                        match encode(s, enc) {
                            Some(b) => b,
                            None => return self.instantiate(id, &[]),
                        }
                    }
                    _ => return self.instantiate(id, &[]),
                };
                match (&*class, value) {
                    // Python prints a bytearray as `bytearray(b'..')` (str and
                    // repr alike), so it is an object rendered that way, not bytes.
                    ("builtins.bytearray", Value::Bytes(b)) => {
                        let mut text = String::new();
                        bytearray_repr(&b, &mut text);
                        let text = Str::from(text);
                        self.object(id, Some((text.clone(), text)), Aux::None)
                    }
                    (_, value) => Ok(Slot::Val(value)),
                }
            }
            // Its items follow as SETITEMS on the result.
            "collections.OrderedDict" => self.node(Kind::Dict, Vec::new()),
            // object.__reduce_ex__(0 or 1): the instance's state follows
            // as BUILD.
            "copyreg._reconstructor" => match items.first() {
                Some(Slot::Class(c)) => self.instantiate(*c, &[]),
                _ => self.instantiate(id, &[]),
            },
            "copyreg.__newobj__" => match items.split_first() {
                Some((Slot::Class(c), rest)) => self.instantiate(*c, rest),
                _ => self.instantiate(id, &[]),
            },
            "copyreg.__newobj_ex__" => match items.as_slice() {
                [Slot::Class(c), a, ..] => {
                    let a = self.tuple_items(a)?;
                    self.instantiate(*c, &a)
                }
                _ => self.instantiate(id, &[]),
            },
            _ => self.instantiate(id, &items),
        }
    }

    /// `NEWOBJ`/`NEWOBJ_EX`: `cls.__new__(cls, *args)`, made inert.
    pub(super) fn newobj(
        &mut self,
        cls: Slot,
        args: Slot,
        op: u8,
        pos: usize,
    ) -> Result<Slot, PickleError> {
        let items = self.tuple_items(&args)?;
        self.newobj_with(cls, &items, op, pos)
    }

    /// An instance of `cls` built from `args` (`NEWOBJ`, `OBJ`).
    pub(super) fn newobj_with(
        &mut self,
        cls: Slot,
        args: &[Slot],
        op: u8,
        pos: usize,
    ) -> Result<Slot, PickleError> {
        match cls {
            Slot::Class(c) => self.instantiate(c, args),
            Slot::Node(n) => match self.s.nodes.get(n as usize).map(|n| &n.kind) {
                Some(Kind::Object(o)) => {
                    let class_id = o.class_id;
                    self.object(class_id, None, Aux::None)
                }
                _ => Err(self.wrong(op, pos, "a class", &cls)),
            },
            Slot::Val(_) => Err(self.wrong(op, pos, "a class", &cls)),
        }
    }

    /// An inert instance of class `id`, rendered if its type is known.
    pub(super) fn instantiate(&mut self, id: u32, args: &[Slot]) -> Result<Slot, PickleError> {
        // Rendering reads (and may copy) the arguments' text: charge it,
        // since the same big string can be passed again and again.
        self.charge(args.iter().map(text_len).sum())?;
        let class = &self.s.classes[id as usize];
        let (rendered, aux) = render(class, args, &self.s.nodes).unwrap_or((None, Aux::None));
        self.object(id, rendered, aux)
    }

    fn object(
        &mut self,
        class_id: u32,
        rendered: Option<(Str, Str)>,
        aux: Aux,
    ) -> Result<Slot, PickleError> {
        let obj = Obj {
            class: self.s.classes[class_id as usize].clone(),
            class_id,
            rendered,
            aux,
        };
        self.node(Kind::Object(Box::new(obj)), Vec::new())
    }

    /// `BUILD`: set an instance's state. Only a UUID's state is used (it
    /// holds the UUID's value); other state is irrelevant to placeholders.
    pub(super) fn build(&mut self, target: Slot, state: Slot) -> Result<(), PickleError> {
        let Slot::Node(n) = target else { return Ok(()) };
        let is_uuid = matches!(
            self.s.nodes.get(n as usize).map(|n| &n.kind),
            Some(Kind::Object(o)) if o.aux == Aux::Uuid
        );
        if !is_uuid {
            return Ok(());
        }
        let Some(dict) = state_dict(&state, &self.s.nodes) else {
            return Ok(());
        };
        // The state dict is scanned: charge it (BUILD can repeat).
        self.charge(self.s.nodes[dict].items.len() as u64 + 1)?;
        let Some(value) = uuid_int(&self.s.nodes[dict]) else {
            return Ok(());
        };
        if let Some(Node {
            kind: Kind::Object(o),
            ..
        }) = self.s.nodes.get_mut(n as usize)
        {
            let s = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                value >> 96,
                (value >> 80) & 0xFFFF,
                (value >> 64) & 0xFFFF,
                (value >> 48) & 0xFFFF,
                value & 0xFFFF_FFFF_FFFF
            );
            let repr = format!("UUID('{s}')");
            o.rendered = Some((Str::from(s), Str::from(repr)));
            o.aux = Aux::None;
        }
        Ok(())
    }

    fn is_sequence(&self, id: u32) -> bool {
        matches!(
            self.s.nodes.get(id as usize).map(|n| &n.kind),
            Some(Kind::List | Kind::Tuple | Kind::Set | Kind::FrozenSet | Kind::SetOf { .. })
        )
    }
}

/// Bytes of text in a slot (1 for anything else), for work accounting.
fn text_len(slot: &Slot) -> u64 {
    match slot {
        Slot::Val(Value::Str(s)) => s.len() as u64 + 1,
        Slot::Val(Value::Bytes(b)) => b.len() as u64 + 1,
        _ => 1,
    }
}

/// `str.encode(enc)` for the encodings picklers use for bytes.
fn encode(s: &Str, enc: &str) -> Option<Value> {
    match enc.to_ascii_lowercase().replace('_', "-").as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => {
            let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c).ok()).collect();
            Some(Value::Bytes(bytes?.into()))
        }
        "utf-8" | "utf8" => Some(Value::Bytes(s.as_bytes().clone())),
        "ascii" if s.is_ascii() => Some(Value::Bytes(s.as_bytes().clone())),
        _ => None,
    }
}

/// The dict of an instance's pickled state: `{...}` itself, or the
/// `(None, {...})` slot-state form (one level only: no recursion on input).
fn state_dict(state: &Slot, nodes: &[Node]) -> Option<usize> {
    let Slot::Node(n) = state else { return None };
    let node = nodes.get(*n as usize)?;
    match (&node.kind, node.items.get(1)) {
        (Kind::Dict, _) => Some(*n as usize),
        (Kind::Tuple, Some(Slot::Node(d)))
            if matches!(nodes.get(*d as usize)?.kind, Kind::Dict) =>
        {
            Some(*d as usize)
        }
        _ => None,
    }
}

/// The `int` of a UUID's pickled state dict `{'int': N, ...}`.
fn uuid_int(dict: &Node) -> Option<u128> {
    dict.items.chunks_exact(2).find_map(|kv| match kv {
        [Slot::Val(Value::Str(k)), Slot::Val(v)] if &**k == "int" => match v {
            Value::Int(i) => u128::try_from(*i).ok(),
            Value::BigInt(t) => t.parse().ok(),
            _ => None,
        },
        _ => None,
    })
}

type Rendering = (Option<(Str, Str)>, Aux);

/// `str()` and `repr()` of an instance of `class` built from `args`, for
/// the types we know; `None` when the state is not what CPython writes.
fn render(class: &str, args: &[Slot], nodes: &[Node]) -> Option<Rendering> {
    let done = |s: String, r: String, aux: Aux| Some((Some((Str::from(s), Str::from(r))), aux));
    match class {
        "datetime.datetime" => {
            let b = bytes_arg(args.first()?)?;
            let [y1, y2, mo, d, h, mi, s, u1, u2, u3] = <[u8; 10]>::try_from(b).ok()?;
            let (fold, mo) = (mo >> 7, mo & 0x7F);
            let year = u16::from(y1) << 8 | u16::from(y2);
            let us = u32::from(u1) << 16 | u32::from(u2) << 8 | u32::from(u3);
            if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || !valid_time(h, mi, s, us) {
                return None;
            }
            let tz = tz_arg(args.get(1), nodes)?;
            let mut st = format!("{year:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            push_us(&mut st, us);
            tz.push_offset(&mut st);
            let mut r = format!("datetime.datetime({year}, {mo}, {d}, {h}, {mi}");
            push_hms_tail(&mut r, s, us);
            if fold != 0 {
                r.push_str(", fold=1");
            }
            tz.push_repr(&mut r);
            r.push(')');
            done(st, r, Aux::None)
        }
        "datetime.date" => {
            let b = bytes_arg(args.first()?)?;
            let [y1, y2, mo, d] = <[u8; 4]>::try_from(b).ok()?;
            let year = u16::from(y1) << 8 | u16::from(y2);
            if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
                return None;
            }
            done(
                format!("{year:04}-{mo:02}-{d:02}"),
                format!("datetime.date({year}, {mo}, {d})"),
                Aux::None,
            )
        }
        "datetime.time" => {
            let b = bytes_arg(args.first()?)?;
            let [h, mi, s, u1, u2, u3] = <[u8; 6]>::try_from(b).ok()?;
            let (fold, h) = (h >> 7, h & 0x7F);
            let us = u32::from(u1) << 16 | u32::from(u2) << 8 | u32::from(u3);
            if !valid_time(h, mi, s, us) {
                return None;
            }
            let tz = tz_arg(args.get(1), nodes)?;
            let mut st = format!("{h:02}:{mi:02}:{s:02}");
            push_us(&mut st, us);
            tz.push_offset(&mut st);
            let mut r = format!("datetime.time({h}, {mi}");
            push_hms_tail(&mut r, s, us);
            tz.push_repr(&mut r);
            if fold != 0 {
                r.push_str(", fold=1");
            }
            r.push(')');
            done(st, r, Aux::None)
        }
        "datetime.timedelta" => {
            let (days, secs, us) = (
                int_arg(args.first()?)?,
                int_arg(args.get(1)?)?,
                int_arg(args.get(2)?)?,
            );
            if !(0..86_400).contains(&secs)
                || !(0..1_000_000).contains(&us)
                || !(-999_999_999..=999_999_999).contains(&days)
            {
                return None;
            }
            let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
            let mut st = String::new();
            if days != 0 {
                let plural = if days.abs() != 1 { "s" } else { "" };
                st.push_str(&format!("{days} day{plural}, "));
            }
            st.push_str(&format!("{hh}:{mm:02}:{ss:02}"));
            push_us(&mut st, us as u32);
            let r = format!("datetime.timedelta({})", timedelta_args(days, secs, us));
            done(st, r, Aux::Timedelta { days, secs, us })
        }
        "datetime.timezone" => {
            let Slot::Node(n) = args.first()? else {
                return None;
            };
            let Kind::Object(o) = &nodes.get(*n as usize)?.kind else {
                return None;
            };
            let Aux::Timedelta { days, secs, us } = o.aux else {
                return None;
            };
            // Timezones need |offset| < 24h; a timedelta may be far larger
            // (its days were checked, so i128 cannot overflow).
            let offset =
                (i128::from(days) * 86_400 + i128::from(secs)) * 1_000_000 + i128::from(us);
            if offset.unsigned_abs() >= 86_400_000_000 {
                return None;
            }
            let offset_us = offset as i64; // < 24h in µs
            let name = match args.get(1) {
                None => None,
                Some(Slot::Val(Value::Str(s))) => Some(s.clone()),
                Some(_) => return None,
            };
            let td = format!("datetime.timedelta({})", timedelta_args(days, secs, us));
            let (st, r) = match name {
                None if offset_us == 0 => ("UTC".to_owned(), "datetime.timezone.utc".to_owned()),
                None => (
                    offset_text("UTC", offset_us),
                    format!("datetime.timezone({td})"),
                ),
                Some(n) => (
                    n.to_string(),
                    format!("datetime.timezone({td}, {})", py_repr(&n)),
                ),
            };
            done(st, r, Aux::Timezone { offset_us })
        }
        "decimal.Decimal" => match args.first()? {
            Slot::Val(Value::Str(s)) => {
                done(s.to_string(), format!("Decimal({})", py_repr(s)), Aux::None)
            }
            _ => None,
        },
        "uuid.UUID" => Some((None, Aux::Uuid)),
        _ => None,
    }
}

fn valid_time(h: u8, mi: u8, s: u8, us: u32) -> bool {
    h < 24 && mi < 60 && s < 60 && us < 1_000_000
}

fn push_us(out: &mut String, us: u32) {
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
}

/// The `, s[, us]` tail of a datetime/time repr: CPython omits trailing
/// zero seconds and microseconds.
fn push_hms_tail(out: &mut String, s: u8, us: u32) {
    if us != 0 {
        out.push_str(&format!(", {s}, {us}"));
    } else if s != 0 {
        out.push_str(&format!(", {s}"));
    }
}

fn timedelta_args(days: i64, secs: i64, us: i64) -> String {
    let mut parts = Vec::new();
    if days != 0 {
        parts.push(format!("days={days}"));
    }
    if secs != 0 {
        parts.push(format!("seconds={secs}"));
    }
    if us != 0 {
        parts.push(format!("microseconds={us}"));
    }
    if parts.is_empty() {
        parts.push("0".to_owned());
    }
    parts.join(", ")
}

/// `+HH:MM[:SS[.ffffff]]` after `prefix`, as datetime's `_format_offset`.
fn offset_text(prefix: &str, offset_us: i64) -> String {
    let sign = if offset_us < 0 { '-' } else { '+' };
    let a = offset_us.unsigned_abs();
    let (hh, mm, ss, us) = (
        a / 3_600_000_000,
        a / 60_000_000 % 60,
        a / 1_000_000 % 60,
        a % 1_000_000,
    );
    let mut s = format!("{prefix}{sign}{hh:02}:{mm:02}");
    if ss != 0 || us != 0 {
        s.push_str(&format!(":{ss:02}"));
        if us != 0 {
            s.push_str(&format!(".{us:06}"));
        }
    }
    s
}

/// A datetime's or time's tzinfo, as far as we can tell.
enum Tz {
    Naive,
    /// A `datetime.timezone`: offset known.
    Fixed {
        offset_us: i64,
        repr: Str,
    },
    /// Any other tzinfo (zoneinfo, pytz...): its offset depends on code we
    /// do not run, so `str()` shows the local time without an offset.
    Other {
        repr: String,
    },
}

impl Tz {
    fn push_offset(&self, out: &mut String) {
        if let Tz::Fixed { offset_us, .. } = self {
            out.push_str(&offset_text("", *offset_us));
        }
    }

    fn push_repr(&self, out: &mut String) {
        match self {
            Tz::Naive => {}
            Tz::Fixed { repr, .. } => out.push_str(&format!(", tzinfo={repr}")),
            Tz::Other { repr } => out.push_str(&format!(", tzinfo={repr}")),
        }
    }
}

fn tz_arg(slot: Option<&Slot>, nodes: &[Node]) -> Option<Tz> {
    match slot {
        None | Some(Slot::Val(Value::None)) => Some(Tz::Naive),
        Some(Slot::Node(n)) => match &nodes.get(*n as usize)?.kind {
            Kind::Object(o) => Some(match (&o.aux, &o.rendered) {
                (Aux::Timezone { offset_us }, Some((_, repr))) => Tz::Fixed {
                    offset_us: *offset_us,
                    repr: repr.clone(),
                },
                (_, Some((_, repr))) => Tz::Other {
                    repr: repr.to_string(),
                },
                (_, None) => Tz::Other {
                    repr: format!("<{} object>", o.class),
                },
            }),
            _ => None,
        },
        Some(_) => None,
    }
}

fn bytes_arg(slot: &Slot) -> Option<&[u8]> {
    match slot {
        Slot::Val(Value::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn int_arg(slot: &Slot) -> Option<i64> {
    match slot {
        Slot::Val(v) => v.as_i64(),
        _ => None,
    }
}

/// Python's `repr()` of a str: single quotes unless the text contains a
/// single quote and no double quote; backslash escapes for the quote,
/// backslash and control characters. (Python also escapes non-printable
/// non-ASCII characters; names and decimals here never hold any.)
pub(super) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7F..0xA0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
