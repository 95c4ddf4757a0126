//! Config errors: one message naming the file, the line:column or the JSON
//! path of the field, and what is wrong.
//!
//! Every problem is one line, `FILE:LINE:COL: PATH: WHAT`
//! (`listener.json:5:16: inputs.app.address: invalid type: integer
//! `70000`, expected a string`). Parse errors take their position from
//! serde_json; problems found by the checks after parsing look their JSON
//! path up in a map built by a small scanner over the text, falling back
//! to the nearest enclosing value that is in the file, or to no position
//! for things that are not in the file (defaults).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// One or more problems, each already a full line
    /// (`listener.json:5:16: inputs.app.port: ...`).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// One problem, before it is formatted.
#[derive(Debug)]
struct Problem {
    pos: Option<(usize, usize)>,
    path: String,
    what: String,
}

/// Collects the problems (and warnings) found in one config text, so they
/// are all reported at once.
pub(crate) struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    positions: OnceCell<HashMap<String, (usize, usize)>>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Report<'a> {
    /// A report about `text`, read from `file`.
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Report<'a> {
        Report {
            file,
            text,
            positions: OnceCell::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Record an error about the value at `path` (`inputs.app.address`).
    pub(crate) fn error(&mut self, path: impl Into<String>, what: impl Into<String>) {
        let p = self.problem(path.into(), what.into());
        self.errors.push(p);
    }

    /// Record a warning about the value at `path`.
    pub(crate) fn warn(&mut self, path: impl Into<String>, what: impl Into<String>) {
        let p = self.problem(path.into(), what.into());
        self.warnings.push(p);
    }

    /// Record a serde error, with serde_json's own position (or, for an
    /// error found in a tree rather than the text, that of its path), in
    /// the user's terms ([`user_terms`]). Returns the path.
    pub(crate) fn serde(&mut self, err: serde_path_to_error::Error<serde_json::Error>) -> String {
        // serde_path_to_error spells "no path" `.` and a segment it could
        // not name (a syntax error after a key) `?`: neither helps a reader.
        let path = err.path().to_string();
        let path = path.trim_end_matches('?').trim_end_matches('.');
        let path = if path == "." {
            String::new()
        } else {
            path.to_string()
        };
        let inner = err.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let mut what = inner.to_string();
        // serde_json appends the position to its message; we put it in front.
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = what.strip_suffix(&suffix) {
            what = stripped.to_string();
        }
        let pos = if line > 0 {
            Some((line, column.max(1)))
        } else {
            self.position(&path)
        };
        let what = user_terms(&path, &what);
        self.errors.push(Problem {
            pos,
            path: path.clone(),
            what,
        });
        path
    }

    fn problem(&self, path: String, what: String) -> Problem {
        // A problem with the whole file has no useful position.
        let pos = if path.is_empty() {
            None
        } else {
            self.position(&path)
        };
        Problem { pos, path, what }
    }

    /// Where the value at `path` starts, or the nearest enclosing value.
    fn position(&self, path: &str) -> Option<(usize, usize)> {
        let map = self.positions.get_or_init(|| positions(self.text));
        let mut p = path;
        loop {
            if let Some(pos) = map.get(p) {
                return Some(*pos);
            }
            // Drop the last segment: `a.b[2]` -> `a.b` -> `a`.
            let cut = if p.ends_with(']') {
                p.rfind('[')
            } else {
                p.rfind('.')
            };
            match cut {
                Some(i) if i > 0 => p = &p[..i],
                _ => return None,
            }
        }
    }

    fn line(&self, p: &Problem) -> String {
        let mut s = self.file.display().to_string();
        if let Some((line, col)) = p.pos {
            let _ = write!(s, ":{line}:{col}");
        }
        s.push_str(": ");
        if !p.path.is_empty() {
            s.push_str(&p.path);
            s.push_str(": ");
        }
        s.push_str(&p.what);
        s
    }

    /// The report as an error, after a parse error was recorded.
    pub(crate) fn into_error(self) -> ConfigError {
        match self.finish() {
            Err(e) => e,
            Ok(_) => ConfigError::Invalid(Vec::new()),
        }
    }

    /// The errors as a [`ConfigError`], or the formatted warnings when
    /// there is none. Both are sorted by position, in reading order;
    /// problems without one (about the file as a whole) come last.
    pub(crate) fn finish(mut self) -> Result<Vec<String>, ConfigError> {
        let key = |p: &Problem| p.pos.map_or((1, usize::MAX, 0), |(l, c)| (0, l, c));
        self.errors.sort_by_key(key);
        self.warnings.sort_by_key(key);
        if self.errors.is_empty() {
            Ok(self.warnings.iter().map(|p| self.line(p)).collect())
        } else {
            Err(ConfigError::Invalid(
                self.errors.iter().map(|p| self.line(p)).collect(),
            ))
        }
    }
}

/// `FILE:LINE:COL: PATH` for a problem found after loading (start-up,
/// reload, `check`'s trials): the value at the first of `paths` that is in
/// the config file `file` (read again now), or at the first path's nearest
/// enclosing value. `None` is the embedded default.
pub fn locate(file: Option<&Path>, paths: &[String]) -> String {
    let first = paths.first().map_or("", String::as_str);
    let Some(file) = file else {
        return format!("(embedded default): {first}");
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let report = Report::new(file, text);
    let map = report.positions.get_or_init(|| positions(text));
    let path = paths
        .iter()
        .find(|p| map.contains_key(p.as_str()))
        .map_or(first, String::as_str);
    let problem = report.problem(path.to_string(), String::new());
    let line = report.line(&problem);
    line.strip_suffix(": ").unwrap_or(&line).to_string()
}

/// serde's Rust type names in an error (`expected u64`), said as the
/// config's reader thinks of the value: `expected a whole number of bytes
/// (e.g. 10485760)`, `expected a port number from 0 to 65535`. The field's
/// name (the last segment of `path`) tells what the number counts.
pub(crate) fn user_terms(path: &str, what: &str) -> String {
    let Some((head, expected)) = what.rsplit_once(", expected ") else {
        return what.to_string();
    };
    let key = path.rsplit(['.', '[']).next().unwrap_or("");
    let whole = |unit: &str, example: &str| format!("a whole number of {unit} (e.g. {example})");
    let said = match expected {
        "u16" if key == "port" => "a port number from 0 to 65535".to_string(),
        "u8" | "u16" | "u32" | "u64" | "usize" => match key {
            k if k.ends_with("_bytes") || k == "maxBytes" => whole("bytes", "10485760"),
            k if k.ends_with("_ms") => whole("milliseconds", "5000"),
            k if k.ends_with("_seconds") => whole("seconds", "30"),
            "backup_count" | "backupCount" => whole("files to keep", "5"),
            "max_open_files" => whole("files", "256"),
            "max_connections" => whole("connections", "10000"),
            "buffer_records" => whole("records", "100000"),
            "interval" => whole("`when` units", "1"),
            "fuel" => whole("fuel units", "1000000"),
            _ => "a whole number, 0 or more".to_string(),
        },
        "i8" | "i16" | "i32" | "i64" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => "a list (a JSON array: [...])".to_string(),
        "a map" => "an object ({...})".to_string(),
        _ => return what.to_string(),
    };
    format!("{head}, expected {said}")
}

/// Map every JSON path in `text` to the 1-based line and column (in
/// characters) where its value starts. Paths are spelled as
/// `serde_path_to_error` spells them: `routes[0].to[1]`. Only called on
/// text serde_json has already accepted; on anything else it stops early
/// and returns what it found.
fn positions(text: &str) -> HashMap<String, (usize, usize)> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        line: 1,
        line_start: 0,
        map: HashMap::new(),
    };
    s.value(String::new(), 0);
    s.map
}

struct Scanner<'t> {
    text: &'t str,
    b: &'t [u8],
    i: usize,
    line: usize,
    line_start: usize,
    map: HashMap<String, (usize, usize)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.line_start = self.i + 1;
                }
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.i += 1;
        }
    }

    fn pos(&self) -> (usize, usize) {
        let col = self
            .text
            .get(self.line_start..self.i)
            .map_or(0, |s| s.chars().count());
        (self.line, col + 1)
    }

    /// Scan one value; false when the text is not JSON after all.
    fn value(&mut self, path: String, depth: usize) -> bool {
        self.ws();
        if depth > 256 {
            return false;
        }
        let pos = self.pos();
        let first = self.peek();
        self.map.entry(path.clone()).or_insert(pos);
        match first {
            Some(b'{') => self.object(&path, depth),
            Some(b'[') => self.array(&path, depth),
            Some(b'"') => self.string().is_some(),
            Some(_) => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.i += 1;
                }
                true
            }
            None => false,
        }
    }

    fn object(&mut self, path: &str, depth: usize) -> bool {
        self.i += 1;
        loop {
            self.ws();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return true;
                }
                Some(b'"') => {}
                _ => return false,
            }
            let Some(key) = self.string() else {
                return false;
            };
            self.ws();
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            let child = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            if !self.value(child, depth + 1) {
                return false;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn array(&mut self, path: &str, depth: usize) -> bool {
        self.i += 1;
        let mut index = 0;
        loop {
            self.ws();
            if self.peek() == Some(b']') {
                self.i += 1;
                return true;
            }
            if !self.value(format!("{path}[{index}]"), depth + 1) {
                return false;
            }
            index += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// Scan a string literal and return its value.
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.i)?).ok()
    }
}

/// `a`, `a or b`, `a, b or c`: the choices a message offers.
pub(super) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_serde_path_spelling() {
        let text = "{\n  \"a\": {\"b\": [1, {\"c\": \"x\\\"y\"}]},\n  \"é\": 2\n}";
        let m = positions(text);
        assert_eq!(m.get("a"), Some(&(2, 8)));
        assert_eq!(m.get("a.b"), Some(&(2, 14)));
        assert_eq!(m.get("a.b[0]"), Some(&(2, 15)));
        assert_eq!(m.get("a.b[1].c"), Some(&(2, 24)));
        assert_eq!(m.get("é"), Some(&(3, 8)));
    }

    #[test]
    fn positions_never_panic_on_garbage() {
        for text in [
            "",
            "{",
            "[1,",
            "{\"a\"",
            "{\"a\":",
            "\"\\",
            "{\"a\":1 x}",
            "]]]",
        ] {
            let _ = positions(text);
        }
    }

    #[test]
    fn position_falls_back_to_enclosing_value() {
        let text = "{\"routes\": [{\"to\": []}]}";
        let r = Report::new(Path::new("l.json"), text);
        assert_eq!(r.position("routes[0].from"), Some((1, 13)));
        assert_eq!(r.position("nothing"), None);
    }
}
