//! msgpack records: one map per frame.

use crate::codec::DecodeError;
use crate::record::Fields;

/// Decode one msgpack map into a record's fields (placeholder).
pub fn decode(_frame: &[u8]) -> Result<Fields, DecodeError> {
    Err(DecodeError::Msgpack(
        "msgpack decoding is not implemented yet".into(),
    ))
}
