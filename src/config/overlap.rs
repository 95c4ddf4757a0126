//! Warnings about routes: outputs and filters no route uses, one
//! output reached by two routes that can match the same record, and two
//! file outputs that rotate one file.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};

use super::builder::{Builder, Origin};
use super::*;

impl Builder<'_, '_> {
    pub(super) fn warn_unused(
        &mut self,
        filters: &BTreeMap<String, FilterConfig>,
        routes: &[(RouteConfig, Origin)],
        outputs: &BTreeMap<String, Origin>,
    ) {
        for name in filters.keys() {
            if !routes.iter().any(|(r, _)| r.filters.contains(name)) {
                self.report
                    .warn(format!("filters.{name}"), "no route uses this filter");
            }
        }
        for (name, origin) in outputs {
            if origin.warn_unused && !routes.iter().any(|(r, _)| r.to.contains(name)) {
                self.report
                    .warn(&origin.path, "no route writes to this output");
            }
        }
    }

    /// docs/decisions.md, "Config and files": a record routed to one
    /// output by two routes is written twice. That is sometimes wanted (a
    /// dictConfig handler attached to a logger and to root), often not:
    /// say so at load and in `check`.
    pub(super) fn warn_overlaps(
        &mut self,
        routes: &[(RouteConfig, Origin)],
        outputs: &BTreeMap<String, Origin>,
    ) {
        for (out, origin) in outputs {
            let using: Vec<&(RouteConfig, Origin)> =
                routes.iter().filter(|(r, _)| r.to.contains(out)).collect();
            for (i, (a, oa)) in using.iter().enumerate() {
                for (b, ob) in &using[i + 1..] {
                    if let Some(name) = overlap(a, b) {
                        let example = if name.is_empty() {
                            "the root logger".to_string()
                        } else {
                            format!("logger {name:?}")
                        };
                        let what = format!(
                            "{} and {} can both match a record (e.g. from {example}): it is written twice",
                            route_label(&oa.path),
                            route_label(&ob.path)
                        );
                        self.report.warn(&origin.path, what);
                    }
                }
            }
        }
    }
}

impl Builder<'_, '_> {
    /// Two file outputs on one path have a writer each: when one rotates
    /// (or truncates) the file, the other goes on writing to the rotated
    /// file until it notices and reopens, and each rotates on its own
    /// count. Python allows two handlers on one file, so this warns.
    pub(super) fn warn_shared_files(
        &mut self,
        outputs: &BTreeMap<String, OutputConfig>,
        origins: &BTreeMap<String, Origin>,
    ) {
        let mut seen: BTreeMap<PathBuf, (&str, bool)> = BTreeMap::new();
        for (name, output) in outputs {
            let OutputConfig::File(f) = output else {
                continue;
            };
            let moves = (f.max_bytes > 0 && f.backup_count > 0) || f.when.is_some() || f.truncate;
            // Without `.` segments, `x.log` and `./x.log` meet.
            let key: PathBuf = f
                .path
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect();
            let Some(&(first, first_moves)) = seen.get(&key) else {
                seen.insert(key, (name, moves));
                continue;
            };
            if let (true, Some(origin), Some(other)) =
                (moves || first_moves, origins.get(name), origins.get(first))
            {
                let what = format!(
                    "writes the same file as `{}` ({}) and one of them rotates or truncates it: \
                     lines can land in the rotated file; give each output its own file",
                    other.path,
                    f.path.display()
                );
                self.report.warn(&origin.path, what);
            }
        }
    }
}

fn route_label(path: &str) -> String {
    if path.is_empty() {
        "the default route".to_string()
    } else {
        format!("`{path}`")
    }
}

/// A logger name both routes match, if any (ignoring levels, which only
/// bound from below, and WASM filters, which may pass anything).
///
/// Whether a route matches a name depends only on which of the names the
/// routes mention are dotted prefixes of it. So it is enough to try each
/// mentioned name, a child of each no mentioned name covers, and a fresh
/// top-level name.
pub(crate) fn overlap(a: &RouteConfig, b: &RouteConfig) -> Option<String> {
    let inputs_meet = match (&a.from, &b.from) {
        (Some(x), Some(y)) => x.iter().any(|n| y.contains(n)),
        _ => true,
    };
    if !inputs_meet {
        return None;
    }
    let mut mentioned: Vec<&str> = Vec::new();
    for r in [a, b] {
        mentioned.extend(r.loggers.iter().flatten().map(String::as_str));
        mentioned.extend(r.exclude_loggers.iter().map(String::as_str));
        mentioned.extend(r.name_filters.iter().map(String::as_str));
        for (l, f) in &r.logger_filters {
            mentioned.push(l);
            mentioned.push(f);
        }
    }
    const FRESH: &str = "\u{0}logrelay-overlap-probe";
    let mut candidates: Vec<String> = vec![FRESH.to_string()];
    for m in &mentioned {
        candidates.push(m.to_string());
        candidates.push(if m.is_empty() {
            FRESH.to_string()
        } else {
            format!("{m}.{FRESH}")
        });
    }
    candidates
        .into_iter()
        .find(|n| a.matches_name(n) && b.matches_name(n))
        .map(|n| n.replace(&format!(".{FRESH}"), ".x").replace(FRESH, "x"))
}
