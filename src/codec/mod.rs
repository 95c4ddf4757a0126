//! Turning bytes into records and back: `framing` cuts a byte stream into
//! frames, the format modules decode one frame into one record's fields.
//!
//! Framing is not decoding (as in vector's `lib/codecs`): a decoder never
//! sees a socket, and a frame that fails to decode drops only its record,
//! while a framing error (a garbage length prefix) ends the connection.

pub mod defaults;
pub mod encode;
pub mod framing;
pub mod json;
pub mod msgpack;
pub mod pickle;

use bytes::Bytes;

use crate::record::Fields;

/// Which decoder an input uses (`"decoder"` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecoderKind {
    /// Python's pickle, as `SocketHandler.makePickle` sends (the default).
    #[default]
    Pickle,
    /// A JSON object per frame.
    Json,
    /// A msgpack map per frame.
    Msgpack,
}

impl DecoderKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DecoderKind::Pickle => "pickle",
            DecoderKind::Json => "json",
            DecoderKind::Msgpack => "msgpack",
        }
    }

    /// Decode one frame into a record's fields. Strings may borrow from
    /// `frame`, so pass the frame's own `Bytes`, not a copy.
    pub fn decode(self, frame: Bytes) -> Result<Fields, DecodeError> {
        match self {
            DecoderKind::Pickle => Ok(pickle::decode(&frame)?),
            DecoderKind::Json => json::decode(&frame),
            DecoderKind::Msgpack => msgpack::decode(&frame),
        }
    }
}

/// Why one frame did not become a record. Every variant drops only that
/// record: the connection goes on with the next frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The pickle decoder refused the frame.
    #[error("pickle: {0}")]
    Pickle(#[from] pickle::PickleError),
    /// The JSON decoder refused the frame.
    #[error("json: {0}")]
    Json(String),
    /// The msgpack decoder refused the frame.
    #[error("msgpack: {0}")]
    Msgpack(String),
}

impl DecodeError {
    /// A short, stable label for metrics and rate-limited warnings.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Pickle(_) => "bad_pickle",
            DecodeError::Json(_) => "bad_json",
            DecodeError::Msgpack(_) => "bad_msgpack",
        }
    }
}
