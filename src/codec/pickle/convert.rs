//! From the decoded object graph to shared `Value`s.
//!
//! Runs once, at `STOP`, over the nodes reachable from the top-level dict,
//! depth first with an explicit stack. Each node becomes one `Value`; every
//! further reference to it (a memo GET, a DUP) is an `Arc` clone of that
//! value, never a copy. A reference to a node still being converted is a
//! cycle, rendered as the placeholder Python's repr prints (`[...]`).
//!
//! While converting it measures, per value, the nesting height (bounded by
//! [`MAX_DEPTH`]) and the *expanded* size, counting shared values once per
//! reference (bounded by the expansion budget): that is the work a formatter
//! or JSON encoder will do on the record, so a memo bomb that decodes
//! cheaply is still refused here.

use std::sync::Arc;

use super::machine::{scalar_type_name, Kind, Machine, Node, Scratch, Slot};
use super::objects::Obj;
use super::{PickleError, EXPANSION_BASE, EXPANSION_PER_BYTE, MAX_DEPTH};
use crate::record::{Fields, Object, Str, Value};

/// Conversion state of one arena node.
#[derive(Debug, Default)]
pub(super) enum Conv {
    /// Not reached yet.
    #[default]
    Todo,
    /// On the current path: a reference to it now is a cycle. Holds its
    /// placeholder (class, text), built on the first such reference.
    Busy(&'static str, &'static str, Option<Value>),
    /// Converted: the value, its expanded size and its height.
    Done(Value, u64, u32),
}

/// Convert the graph under `root` (which must be a dict with str keys) into
/// a record's fields.
pub(super) fn into_fields(m: &mut Machine<'_>, root: Slot) -> Result<Fields, PickleError> {
    let limit =
        EXPANSION_BASE.saturating_add(EXPANSION_PER_BYTE.saturating_mul(m.frame.len() as u64));
    let root_id = match root {
        Slot::Node(n) if matches!(m.s.nodes[n as usize].kind, Kind::Dict) => n as usize,
        other => {
            return Err(PickleError::NotADict {
                found: m.type_name(&other),
            })
        }
    };
    let s: &mut Scratch = m.s;
    s.conv.clear();
    s.conv.resize_with(s.nodes.len(), Conv::default);
    s.class_vals.clear();
    s.class_vals.resize(s.classes.len(), None);
    s.instance_vals.clear();
    s.instance_vals.resize(s.classes.len(), None);
    s.conv[root_id] = Conv::Busy("builtins.dict", "{...}", None);
    let mut path = Vec::new();
    // Sum of every converted node's own size: bounded by the expanded size
    // of the record, but known early, so a huge graph stops converting
    // (allocating) as soon as it is over the limit.
    let mut total = 0u64;
    for i in 0..s.nodes[root_id].items.len() {
        if let Slot::Node(c) = s.nodes[root_id].items[i] {
            ensure(s, c as usize, limit, &mut path, &mut total)?;
        }
    }
    let mut items = std::mem::take(&mut s.nodes[root_id].items);
    let fields = root_fields(
        &mut items,
        &mut s.conv,
        &s.classes,
        &mut s.class_vals,
        limit,
    );
    s.recycle(items);
    fields
}

/// The record fields from the root dict's flattened items.
fn root_fields(
    items: &mut Vec<Slot>,
    conv: &mut [Conv],
    classes: &[Str],
    class_vals: &mut [Option<Value>],
    limit: u64,
) -> Result<Fields, PickleError> {
    let mut fields: Fields = Vec::with_capacity(items.len() / 2);
    let mut size: u64 = 1;
    let mut it = items.drain(..);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let key = match k {
            Slot::Val(Value::Str(key)) => key,
            Slot::Val(other) => {
                return Err(PickleError::KeyNotStr {
                    found: scalar_type_name(&other),
                })
            }
            Slot::Node(_) | Slot::Class(_) => {
                return Err(PickleError::KeyNotStr {
                    found: "a container",
                })
            }
        };
        let (value, w, h) = slot_value(v, conv, classes, class_vals);
        if h as usize + 1 > MAX_DEPTH {
            return Err(PickleError::TooDeep { limit: MAX_DEPTH });
        }
        size = size.saturating_add(w).saturating_add(1);
        fields.push((key, value));
    }
    if size > limit {
        return Err(PickleError::BudgetExceeded {
            what: "expansion",
            limit,
        });
    }
    crate::codec::dedup_keys(&mut fields);
    Ok(fields)
}

/// Convert node `start` and everything it reaches that is not converted yet.
fn ensure(
    s: &mut Scratch,
    start: usize,
    limit: u64,
    path: &mut Vec<(usize, usize)>,
    total: &mut u64,
) -> Result<(), PickleError> {
    if !matches!(s.conv[start], Conv::Todo) {
        return Ok(());
    }
    s.conv[start] = busy(&s.nodes[start].kind);
    path.clear();
    path.push((start, 0));
    while let Some(top) = path.last_mut() {
        let (id, i) = *top;
        top.1 += 1;
        match child(&s.nodes[id], i) {
            Some(Some(c)) => {
                if matches!(s.conv[c], Conv::Todo) {
                    // Every node on the path contains the next, so the
                    // path length is a lower bound of the final height.
                    if path.len() >= MAX_DEPTH {
                        return Err(PickleError::TooDeep { limit: MAX_DEPTH });
                    }
                    s.conv[c] = busy(&s.nodes[c].kind);
                    path.push((c, 0));
                }
            }
            Some(None) => {}
            None => {
                path.pop();
                finish(s, id, limit, total)?;
            }
        }
    }
    Ok(())
}

/// The i-th child of a node: `None` past the end, `Some(None)` for a child
/// that is not a node, `Some(Some(id))` for a node.
fn child(node: &Node, i: usize) -> Option<Option<usize>> {
    match &node.kind {
        Kind::Object(_) => None,
        Kind::SetOf { src, .. } => (i == 0).then_some(Some(*src as usize)),
        _ => node.items.get(i).map(|s| match s {
            Slot::Node(c) => Some(*c as usize),
            _ => None,
        }),
    }
}

/// The Busy state (with cycle placeholder) for a node of this kind.
fn busy(kind: &Kind) -> Conv {
    match kind {
        Kind::List => Conv::Busy("builtins.list", "[...]", None),
        Kind::Tuple => Conv::Busy("builtins.tuple", "(...)", None),
        Kind::Dict => Conv::Busy("builtins.dict", "{...}", None),
        Kind::Set | Kind::SetOf { frozen: false, .. } => {
            Conv::Busy("builtins.set", "set(...)", None)
        }
        Kind::FrozenSet | Kind::SetOf { frozen: true, .. } => {
            Conv::Busy("builtins.frozenset", "frozenset(...)", None)
        }
        Kind::Object(_) => Conv::Busy("builtins.object", "...", None),
    }
}

/// Build node `id`'s value from its (converted) children.
fn finish(s: &mut Scratch, id: usize, limit: u64, total: &mut u64) -> Result<(), PickleError> {
    let Scratch {
        nodes,
        conv,
        classes,
        class_vals,
        instance_vals,
        ..
    } = s;
    let node = &mut nodes[id];
    // `own`: this node's size without its container children (counted
    // once each, as 1), i.e. what converting it costs.
    let (value, size, height, own) = match &node.kind {
        Kind::Object(obj) => {
            let v = object_value(obj, instance_vals);
            let w = match &v {
                Value::Object(o) => 1 + text_weight(o.class.len() + o.str.len() + o.repr.len()),
                _ => 1,
            };
            (v, w, 0, w)
        }
        Kind::SetOf { src, frozen } => match &conv[*src as usize] {
            Conv::Done(
                Value::List(a) | Value::Tuple(a) | Value::Set(a) | Value::FrozenSet(a),
                w,
                h,
            ) => {
                let v = if *frozen {
                    Value::FrozenSet(a.clone())
                } else {
                    Value::Set(a.clone())
                };
                (v, *w, *h, 1)
            }
            Conv::Busy(class, text, _) => (placeholder(class, text), 1, 0, 1),
            _ => (
                placeholder("builtins.set", "<builtins.set object>"),
                1,
                0,
                1,
            ),
        },
        Kind::Dict => {
            let items = std::mem::take(&mut node.items);
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let (mut size, mut height, mut own) = (1u64, 0u32, 1u64);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                let (k_node, v_node) = (matches!(k, Slot::Node(_)), matches!(v, Slot::Node(_)));
                let (k, kw, kh) = slot_value(k, conv, classes, class_vals);
                let (v, vw, vh) = slot_value(v, conv, classes, class_vals);
                size = size.saturating_add(kw).saturating_add(vw);
                own = own
                    .saturating_add(if k_node { 1 } else { kw })
                    .saturating_add(if v_node { 1 } else { vw });
                height = height.max(kh).max(vh);
                pairs.push((k, v));
            }
            (Value::Dict(Arc::new(pairs)), size, height + 1, own)
        }
        Kind::List | Kind::Tuple | Kind::Set | Kind::FrozenSet => {
            let items = std::mem::take(&mut node.items);
            let mut out = Vec::with_capacity(items.len());
            let (mut size, mut height, mut own) = (1u64, 0u32, 1u64);
            for item in items {
                let is_node = matches!(item, Slot::Node(_));
                let (v, w, h) = slot_value(item, conv, classes, class_vals);
                size = size.saturating_add(w);
                own = own.saturating_add(if is_node { 1 } else { w });
                height = height.max(h);
                out.push(v);
            }
            let out = Arc::new(out);
            let v = match node.kind {
                Kind::List => Value::List(out),
                Kind::Tuple => Value::Tuple(out),
                Kind::Set => Value::Set(out),
                _ => Value::FrozenSet(out),
            };
            (v, size, height + 1, own)
        }
    };
    *total = total.saturating_add(own);
    if height as usize >= MAX_DEPTH {
        return Err(PickleError::TooDeep { limit: MAX_DEPTH });
    }
    if size > limit || *total > limit {
        return Err(PickleError::BudgetExceeded {
            what: "expansion",
            limit,
        });
    }
    conv[id] = Conv::Done(value, size, height);
    Ok(())
}

/// The value of one slot (moving scalars out: each slot is converted
/// exactly once), with its expanded size and height.
fn slot_value(
    slot: Slot,
    conv: &mut [Conv],
    classes: &[Str],
    class_vals: &mut [Option<Value>],
) -> (Value, u64, u32) {
    match slot {
        Slot::Val(v) => {
            let w = match &v {
                Value::Str(s) | Value::BigInt(s) => 1 + text_weight(s.len()),
                Value::Bytes(b) => 1 + text_weight(b.len()),
                _ => 1,
            };
            (v, w, 0)
        }
        Slot::Class(c) => {
            let class = classes.get(c as usize).cloned().unwrap_or_default();
            let w = 1 + text_weight(4 * class.len());
            let v = match class_vals.get_mut(c as usize) {
                Some(Some(v)) => v.clone(),
                cached => {
                    let shown = class.strip_prefix("builtins.").unwrap_or(&class);
                    let text = Str::from(format!("<class '{shown}'>"));
                    let v = Value::Object(Arc::new(Object {
                        class,
                        str: text.clone(),
                        repr: text,
                    }));
                    if let Some(slot) = cached {
                        *slot = Some(v.clone());
                    }
                    v
                }
            };
            (v, w, 0)
        }
        Slot::Node(n) => match conv.get_mut(n as usize) {
            Some(Conv::Done(v, w, h)) => (v.clone(), *w, *h),
            Some(Conv::Busy(class, text, cached)) => (
                cached
                    .get_or_insert_with(|| placeholder(class, text))
                    .clone(),
                1,
                0,
            ),
            // Unreachable: children are converted before their parent.
            Some(Conv::Todo) | None => (placeholder("builtins.object", "..."), 1, 0),
        },
    }
}

/// Expanded-size units for `len` bytes of text.
fn text_weight(len: usize) -> u64 {
    len as u64 / 16
}

fn placeholder(class: &'static str, text: &'static str) -> Value {
    let text = Str::from_static(text);
    Value::Object(Arc::new(Object {
        class: Str::from_static(class),
        str: text.clone(),
        repr: text,
    }))
}

fn object_value(obj: &Obj, instance_vals: &mut [Option<Value>]) -> Value {
    if let Some((str, repr)) = &obj.rendered {
        return Value::Object(Arc::new(Object {
            class: obj.class.clone(),
            str: str.clone(),
            repr: repr.clone(),
        }));
    }
    let make = || {
        let p = Str::from(format!("<{} object>", obj.class));
        Value::Object(Arc::new(Object {
            class: obj.class.clone(),
            str: p.clone(),
            repr: p,
        }))
    };
    match instance_vals.get_mut(obj.class_id as usize) {
        Some(cached) => cached.get_or_insert_with(make).clone(),
        None => make(),
    }
}
