//! JSON records: decoding a frame holding one JSON object, and encoding a
//! record as one JSON line (`encoding: json`).

use crate::codec::DecodeError;
use crate::record::Fields;

/// Decode one JSON object into a record's fields (placeholder).
pub fn decode(_frame: &[u8]) -> Result<Fields, DecodeError> {
    Err(DecodeError::Json(
        "json decoding is not implemented yet".into(),
    ))
}
