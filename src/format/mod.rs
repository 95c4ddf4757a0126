//! Text formatting: a compiled `logging.Formatter` template (placeholder
//! implementation; the byte-exact formatter is being written).

pub mod pyrepr;

use crate::config::TextFormat;
use crate::record::{Record, Value};

/// A format string that can never work.
#[derive(Debug, thiserror::Error)]
#[error("format {format:?}: {reason} at position {pos}")]
pub struct FormatError {
    /// The format string.
    pub format: String,
    /// Byte offset of the problem.
    pub pos: usize,
    /// What is wrong.
    pub reason: String,
}

/// A compiled `logging.Formatter(format, datefmt, style)`.
#[derive(Debug, Clone)]
pub struct Template {
    spec: TextFormat,
}

impl Template {
    /// Parse the format once, at config load.
    pub fn compile(spec: &TextFormat) -> Result<Template, FormatError> {
        Ok(Template { spec: spec.clone() })
    }

    /// Append the formatted line for `record`, plus `\n`, to `out`.
    pub fn format(&mut self, record: &Record, out: &mut Vec<u8>) {
        let f = &self.spec.format;
        let mut rest = f.as_str();
        while let Some(i) = rest.find("%(") {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i + 2..];
            let Some(close) = after.find(')') else {
                out.extend_from_slice(&rest.as_bytes()[i..]);
                rest = "";
                break;
            };
            let key = &after[..close];
            let spec_end = after[close + 1..]
                .find(|c: char| c.is_ascii_alphabetic())
                .map(|j| close + 1 + j + 1)
                .unwrap_or(after.len());
            let spec = &after[close + 1..spec_end];
            let width: usize = spec
                .trim_start_matches('-')
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse()
                .unwrap_or(0);
            let text = match key {
                "message" => value_str(record.get("msg")),
                "asctime" => "1970-01-01 00:00:00,000".to_string(),
                _ => value_str(record.get(key)),
            };
            if spec.starts_with('-') {
                out.extend_from_slice(format!("{text:<width$}").as_bytes());
            } else {
                out.extend_from_slice(format!("{text:>width$}").as_bytes());
            }
            rest = &after[spec_end..];
        }
        out.extend_from_slice(rest.as_bytes());
        if let Some(Value::Str(t)) = record.get("exc_text") {
            if !t.is_empty() {
                out.push(b'\n');
                out.extend_from_slice(t.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

fn value_str(v: Option<&Value>) -> String {
    match v {
        None => "-".to_string(),
        Some(Value::Str(s)) => s.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::None) => "None".to_string(),
        Some(other) => format!("{other:?}"),
    }
}
