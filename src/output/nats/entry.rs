//! One message of the nats output, ready to publish (one record, or
//! several packed), its spool form, and the subject it goes to.

use bytes::Bytes;

use crate::codec::{encode, DecoderKind};
use crate::config::Encoder;

/// One message, ready to publish: one record, or several packed.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) subject: String,
    pub(super) id: String,
    pub(super) encoder: Encoder,
    /// `Some(n)`: `payload` is `n` framed records (`batch_bytes`).
    pub(super) packed: Option<u32>,
    pub(super) payload: Bytes,
}

/// Set on a spooled entry's encoder byte when it is packed; its record
/// count follows the id.
const PACKED: u8 = 0x80;

impl Entry {
    pub(super) fn records(&self) -> u64 {
        self.packed.map_or(1, u64::from)
    }

    /// The spool form: encoder byte, subject, id, [count,] payload.
    pub(super) fn blob(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(9 + self.subject.len() + self.id.len() + self.payload.len());
        let flag = if self.packed.is_some() { PACKED } else { 0 };
        b.push(encoder_byte(self.encoder) | flag);
        for s in [&self.subject, &self.id] {
            let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        }
        if let Some(n) = self.packed {
            b.extend_from_slice(&n.to_be_bytes());
        }
        b.extend_from_slice(&self.payload);
        b
    }

    pub(super) fn from_blob(b: Bytes) -> Option<Entry> {
        let first = *b.first()?;
        let encoder = match first & !PACKED {
            0 => Encoder::Pickle,
            1 => Encoder::Json,
            2 => Encoder::Msgpack,
            _ => return None,
        };
        let mut pos = 1;
        let mut take = || -> Option<String> {
            let len = usize::from(u16::from_be_bytes([*b.get(pos)?, *b.get(pos + 1)?]));
            let s = std::str::from_utf8(b.get(pos + 2..pos + 2 + len)?).ok()?;
            pos += 2 + len;
            Some(s.to_string())
        };
        let subject = take()?;
        let id = take()?;
        let packed = if first & PACKED != 0 {
            let n = u32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
            pos += 4;
            Some(n)
        } else {
            None
        };
        Some(Entry {
            subject,
            id,
            encoder,
            packed,
            payload: b.slice(pos..),
        })
    }

    /// Re-encode a spooled entry for another encoder (the config changed).
    /// A packed one keeps its encoder: its header names it, and logrelay's
    /// input reads any.
    pub(super) fn reencode(mut self, to: Encoder) -> Option<Entry> {
        if self.encoder == to || self.packed.is_some() {
            return Some(self);
        }
        let decoder = match self.encoder {
            Encoder::Json => DecoderKind::Json,
            Encoder::Msgpack => DecoderKind::Msgpack,
            _ => DecoderKind::Pickle,
        };
        let record = decoder.decode(self.payload.clone()).ok()?;
        let mut buf = Vec::new();
        encode::payload(to, &record, &mut buf);
        self.payload = Bytes::from(buf);
        self.encoder = to;
        Some(self)
    }
}

fn encoder_byte(e: Encoder) -> u8 {
    match e {
        Encoder::Json => 1,
        Encoder::Msgpack => 2,
        _ => 0,
    }
}

/// Make a rendered subject valid: no whitespace, `*`, `>` or NUL (a value
/// put them there), and no empty token (a value with `..` or an edge dot).
pub(super) fn clean_subject(s: &mut String) {
    let bad = |c: char| c.is_whitespace() || c == '*' || c == '>' || c == '\0';
    let needs = s.contains(bad)
        || s.is_empty()
        || s.starts_with('.')
        || s.ends_with('.')
        || s.contains("..");
    if !needs {
        return;
    }
    let cleaned: String = s
        .split('.')
        .map(|t| {
            let t: String = t.chars().map(|c| if bad(c) { '_' } else { c }).collect();
            if t.is_empty() {
                "_".to_string()
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    *s = cleaned;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_valid() {
        let mut s = "logs.payments.api".to_string();
        clean_subject(&mut s);
        assert_eq!(s, "logs.payments.api");
        let mut s = "logs..a b.*.>.".to_string();
        clean_subject(&mut s);
        assert_eq!(s, "logs._.a_b._._._");
    }

    #[test]
    fn spool_blobs_round_trip() {
        let e = Entry {
            subject: "logs.x".into(),
            id: "abc-1".into(),
            encoder: Encoder::Json,
            packed: None,
            payload: Bytes::from_static(b"{\"msg\": \"m\"}"),
        };
        let back = Entry::from_blob(Bytes::from(e.blob())).unwrap();
        assert_eq!(back.subject, "logs.x");
        assert_eq!(back.id, "abc-1");
        assert_eq!(back.payload, e.payload);
        let msgpack = back.reencode(Encoder::Msgpack).unwrap();
        assert_eq!(msgpack.encoder, Encoder::Msgpack);
        let record = DecoderKind::Msgpack.decode(msgpack.payload).unwrap();
        assert!(record.fields.iter().any(|(k, _)| &**k == "msg"));
    }

    #[test]
    fn packed_spool_blobs_keep_their_count_and_encoder() {
        let e = Entry {
            subject: "logs.x".into(),
            id: "abc-7".into(),
            encoder: Encoder::Msgpack,
            packed: Some(3),
            payload: Bytes::from_static(b"\0\0\0\x01a\0\0\0\x01b\0\0\0\x01c"),
        };
        let back = Entry::from_blob(Bytes::from(e.blob())).unwrap();
        assert_eq!(back.packed, Some(3));
        assert_eq!(back.records(), 3);
        assert_eq!(back.payload, e.payload);
        let same = back.reencode(Encoder::Json).unwrap();
        assert_eq!(same.encoder, Encoder::Msgpack);
        assert!(Entry::from_blob(Bytes::from_static(b"\x81\0\x01x\0\x01y\0")).is_none());
    }
}
