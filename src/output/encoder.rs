//! The line encoders of file and stream outputs: a compiled text template
//! or JSON, one line per record.

use super::OutputError;
use crate::codec::{json, pickle, Keep};
use crate::config::{Encoding, TextFormat};
use crate::format::Template;
use crate::record::Record;

/// Turns a record into bytes: a compiled text template or JSON.
#[derive(Clone, Debug)]
pub(crate) enum LineEncoder {
    Text(Box<Template>),
    Json,
}

impl LineEncoder {
    pub(crate) fn new(
        name: &str,
        encoding: Encoding,
        text: &TextFormat,
    ) -> Result<LineEncoder, OutputError> {
        Ok(match encoding {
            Encoding::Json => LineEncoder::Json,
            Encoding::Text => {
                let mut template =
                    Template::compile(text).map_err(|source| OutputError::Format {
                        name: name.to_string(),
                        source,
                    })?;
                // Missing-attribute warnings name the output.
                template.set_output_name(name);
                LineEncoder::Text(Box::new(template))
            }
        })
    }

    /// The record fields [`LineEncoder::encode`] reads.
    pub(super) fn reads(&self) -> Keep {
        match self {
            LineEncoder::Text(t) => t.reads(),
            // A plain pickle frame is written straight from its bytes
            // (`pickle::write_json`, which checks its strings); any other
            // record with every field.
            LineEncoder::Json => Keep::RAW_FRAME,
        }
    }

    /// Append one line (with its `\n`).
    pub(crate) fn encode(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self {
            LineEncoder::Text(t) => t.format(record, out),
            LineEncoder::Json => {
                // What was sent (and set by filters), not the decoder's
                // defaults: docs/decisions.md, "Records and encoding": nothing
                // added. A record that still has its pickle frame is what
                // the frame holds, written without decoding it.
                match record.frame() {
                    Some(frame) => pickle::write_json(frame, out),
                    None => json::write_record(record, out),
                }
                out.push(b'\n');
            }
        }
    }
}
