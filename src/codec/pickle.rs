//! Safe pickle decoding (placeholder: the real decoder is being written).

use crate::record::Fields;

/// Why a pickle was refused.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// Not implemented yet.
    #[error("pickle decoding is not implemented yet")]
    Unimplemented,
}

/// Decode one SocketHandler pickle into a record's fields.
pub fn decode(_frame: &bytes::Bytes) -> Result<Fields, PickleError> {
    Err(PickleError::Unimplemented)
}
