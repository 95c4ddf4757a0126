//! `enrich`: add fixed fields from the config to every record.
//!
//! Config:
//! ```json
//! { "fields": { "hostname": "web-1", "env": "prod", "dc": { "zone": "b" } },
//!   "overwrite": false }
//! ```
//! Each field is added with its JSON value (strings, numbers, objects...).
//! With `overwrite` false (the default) a field the sender already set is
//! left alone. Plugins have no access to the host, so values such as the
//! hostname are written in the config.

use logrelay_filter::{export, Config, Filter, Record, Verdict};

/// The fields to add, as ready-made JSON text.
pub struct Enrich {
    fields: Vec<(String, String)>,
    overwrite: bool,
}

impl Filter for Enrich {
    fn init(config: &Config) -> Result<Self, String> {
        let fields = match config.get("fields") {
            Some(v) => v.as_object().ok_or("fields: expected an object")?,
            None => return Err("fields: missing (e.g. {\"fields\": {\"env\": \"prod\"}})".into()),
        };
        let overwrite = match config.get("overwrite") {
            Some(v) => v.as_bool().ok_or("overwrite: expected true or false")?,
            None => false,
        };
        Ok(Enrich {
            // Rendered once here, so each record costs only the host calls.
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            overwrite,
        })
    }

    fn filter(&mut self, record: &mut Record) -> Verdict {
        for (name, json) in &self.fields {
            if self.overwrite || !record.has(name) {
                // Valid JSON by construction (rendered by the SDK).
                let _ = record.set_json(name, json);
            }
        }
        Verdict::Keep
    }
}

export!(Enrich);
