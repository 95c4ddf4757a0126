//! The JSON Schema of `listener.json` (`logrelay schema`), and a small
//! validator for the subset of JSON Schema it uses, so the tests can hold
//! every example config to it without a dependency.
//!
//! The schema is maintained by hand next to `file.rs` and `cookbook/dict.rs`;
//! the tests check that every object in it names exactly the keys the
//! loader accepts (from the loader's own "expected one of" errors).

use serde_json::Value;

/// The schema, draft 2020-12.
pub const SCHEMA: &str = include_str!("schema.json");

/// The schema, parsed.
pub fn schema() -> Value {
    // Embedded and checked by the tests: always valid JSON.
    serde_json::from_str(SCHEMA).unwrap_or(Value::Null)
}

/// Every way `instance` breaks `schema` (empty when valid), each as
/// `path: problem`. Supports what `schema.json` uses: `type`,
/// `properties`, `additionalProperties`, `required`, `enum`, `const`,
/// `items`, `oneOf`, `minimum`, `maximum` and local `$ref`s.
pub fn validate(schema: &Value, instance: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, instance, "$", &mut errors);
    errors
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            errors.push(format!("{path}: not allowed"));
        }
        return;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match r
            .strip_prefix("#/")
            .map(|p| p.split('/').try_fold(root, |node, key| node.get(key)))
        {
            Some(Some(target)) => check(root, target, v, path, errors),
            _ => errors.push(format!("{path}: unresolved $ref {r}")),
        }
    }
    if let Some(t) = s.get("type") {
        let have = type_name(v);
        let ok = |want: &str| want == have || (want == "number" && have == "integer");
        let fits = match t {
            Value::String(want) => ok(want),
            Value::Array(wants) => wants.iter().filter_map(Value::as_str).any(ok),
            _ => true,
        };
        if !fits {
            errors.push(format!("{path}: expected {t}, found {have}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errors.push(format!("{path}: must be {c}"));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            errors.push(format!(
                "{path}: {v} is not one of {}",
                Value::Array(options.clone())
            ));
        }
    }
    if let (Some(n), Some(min)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64)) {
        if n < min {
            errors.push(format!("{path}: {n} is below the minimum {min}"));
        }
    }
    if let (Some(n), Some(max)) = (v.as_f64(), s.get("maximum").and_then(Value::as_f64)) {
        if n > max {
            errors.push(format!("{path}: {n} is above the maximum {max}"));
        }
    }
    if let Value::Object(map) = v {
        if let Some(Value::Array(req)) = s.get("required") {
            for key in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    errors.push(format!("{path}: missing required key {key:?}"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, value) in map {
            let sub = format!("{path}.{key}");
            match props.and_then(|p| p.get(key)) {
                Some(ps) => check(root, ps, value, &sub, errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{path}: unknown key {key:?}")),
                    Some(extra @ Value::Object(_)) => check(root, extra, value, &sub, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(each)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(root, each, item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(Value::Array(options)) = s.get("oneOf") {
        let results: Vec<Vec<String>> = options
            .iter()
            .map(|o| {
                let mut e = Vec::new();
                check(root, o, v, path, &mut e);
                e
            })
            .collect();
        let passing = results.iter().filter(|e| e.is_empty()).count();
        if passing != 1 {
            if passing == 0 {
                // The closest option's complaints (fewest errors).
                if let Some(best) = results.iter().min_by_key(|e| e.len()) {
                    errors.extend(best.iter().cloned());
                }
            } else {
                errors.push(format!("{path}: matches {passing} alternatives of oneOf"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The keys the loader accepts in the object at `pointer` of `base`:
    /// put an unknown key there and read serde's "expected one of" list.
    fn loader_keys(base: &Value, pointer: &str) -> Vec<String> {
        let mut doc = base.clone();
        doc.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("pointer to an object")
            .insert("zz_unknown".into(), json!(1));
        let err = crate::config::parse(&doc.to_string(), std::path::Path::new("t.json"))
            .expect_err("an unknown key")
            .to_string();
        let list = err
            .split("expected one of ")
            .nth(1)
            .or_else(|| err.split("expected ").nth(1))
            .and_then(|l| l.lines().next())
            .unwrap_or_else(|| panic!("no key list in {err}"));
        // serde: "one of `a`, `b`, `c`", or "`a` or `b`" for two.
        let mut keys: Vec<String> = list
            .replace("` or `", "`, `")
            .split(", ")
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect();
        keys.sort();
        keys
    }

    /// The property names of `$defs/name` (or the root for `""`).
    fn schema_keys(name: &str) -> Vec<String> {
        let s = schema();
        let node = if name.is_empty() {
            &s
        } else {
            &s["$defs"][name]
        };
        let mut keys: Vec<String> = node["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_schema_object_names_exactly_the_keys_the_loader_takes() {
        let native = json!({
            "inputs": {
                "t": {"type": "tcp", "address": "127.0.0.1:9020"},
                "u": {"type": "unix", "path": "l.sock"},
                "d": {"type": "udp", "address": "127.0.0.1:9021"}},
            "filters": {"w": {"type": "wasm", "path": "x.wat"}},
            "outputs": {
                "f": {"type": "file", "path": "a.log"},
                "s": {"type": "stdout"},
                "fw": {"type": "forward", "address": "127.0.0.1:9"}},
            "routes": [{"to": ["s"]}],
            "metrics": {"address": "127.0.0.1:9102"}
        });
        let dict = json!({"logging": {
            "version": 1,
            "formatters": {"f": {"format": "%(message)s"}},
            "filters": {"p": {"name": "payments"}},
            "handlers": {
                "s": {"class": "logging.StreamHandler"},
                "f": {"class": "logging.FileHandler", "filename": "a.log"},
                "r": {"class": "logging.handlers.RotatingFileHandler", "filename": "b.log"},
                "t": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "c.log"},
                "k": {"class": "logging.handlers.SocketHandler", "host": "h", "port": 9}},
            "loggers": {"payments": {"handlers": ["f"]}},
            "root": {"handlers": ["s"]}
        }});
        for (doc, pointer, def) in [
            (&native, "", ""),
            (&native, "/inputs/t", "tcpInput"),
            (&native, "/inputs/u", "unixInput"),
            (&native, "/inputs/d", "udpInput"),
            (&native, "/filters/w", "wasmFilter"),
            (&native, "/outputs/f", "fileOutput"),
            (&native, "/outputs/s", "stdoutOutput"),
            (&native, "/outputs/fw", "forwardOutput"),
            (&native, "/routes/0", "route"),
            (&native, "/metrics", "metrics"),
            (&dict, "/logging", "dictConfig"),
            (&dict, "/logging/formatters/f", "dictFormatter"),
            (&dict, "/logging/filters/p", "dictFilter"),
            (&dict, "/logging/handlers/s", "streamHandler"),
            (&dict, "/logging/handlers/f", "fileHandler"),
            (&dict, "/logging/handlers/r", "rotatingHandler"),
            (&dict, "/logging/handlers/t", "timedHandler"),
            (&dict, "/logging/handlers/k", "socketHandler"),
            (&dict, "/logging/loggers/payments", "dictLogger"),
        ] {
            assert_eq!(
                loader_keys(doc, pointer),
                schema_keys(def),
                "{def} at {pointer:?}"
            );
        }
    }

    #[test]
    fn the_validator_catches_what_the_schema_says() {
        let s = schema();
        assert!(s.is_object(), "schema.json is not valid JSON");
        let ok = json!({"inputs": {"a": {"type": "tcp", "address": "127.0.0.1:1"}},
                        "outputs": {"o": {"type": "stdout"}}, "$schema": "x"});
        assert_eq!(validate(&s, &ok), Vec::<String>::new());
        let bad = json!({"inputs": {"a": {"type": "tcp", "adress": "x"}}, "ports": 1,
                         "outputs": {"o": {"type": "file", "path": 3}},
                         "routes": [{"to": ["o"], "min_level": []}]});
        let errors = validate(&s, &bad).join("\n");
        for needle in [
            "$: unknown key \"ports\"",
            "$.inputs.a: missing required key \"address\"",
            "$.inputs.a: unknown key \"adress\"",
            "$.outputs.o.path: expected \"string\", found integer",
            "$.routes[0].min_level: expected [\"string\",\"integer\"], found array",
        ] {
            assert!(errors.contains(needle), "{needle} not in:\n{errors}");
        }
    }
}
