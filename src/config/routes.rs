//! Resolving `routes`: which records, through which filters, to which
//! outputs; every name a route uses must exist.

use std::collections::BTreeMap;

use super::builder::{Builder, Origin};
use super::file::RouteFile;
use super::seed::LevelFile;
use super::*;
use crate::record::level_from_name;

impl Builder<'_, '_> {
    /// A level: a standard name (any case) or a non-negative number.
    pub(super) fn level(&mut self, path: &str, l: &LevelFile) -> Option<i64> {
        match l {
            LevelFile::Number(n) if *n < 0 => {
                self.report.error(path, format!("level {n} is negative"));
                None
            }
            LevelFile::Number(n) => Some(*n),
            LevelFile::Name(s) => {
                let level = level_from_name(&s.to_ascii_uppercase());
                if level.is_none() {
                    self.report.error(
                        path,
                        format!(
                            "unknown level {s:?} (expected CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET or a number)"
                        ),
                    );
                }
                level
            }
        }
    }

    /// One native route; every name it uses must exist.
    pub(super) fn route(
        &mut self,
        path: &str,
        r: &RouteFile,
        inputs: &BTreeMap<String, String>,
        filters: &[String],
        outputs: &BTreeMap<String, Origin>,
    ) -> RouteConfig {
        let from = r.from.as_ref().map(|from| {
            if from.is_empty() {
                self.report.error(
                    format!("{path}.from"),
                    "an empty list matches nothing; leave `from` out to take every input",
                );
            }
            self.names(&format!("{path}.from"), from, "input", |n| {
                inputs.contains_key(n)
            });
            from.clone()
        });
        if let Some(loggers) = &r.loggers {
            if loggers.is_empty() {
                self.report.error(
                    format!("{path}.loggers"),
                    "an empty list matches nothing; leave `loggers` out to match every logger",
                );
            }
        }
        let min_level = r
            .min_level
            .as_ref()
            .and_then(|l| self.level(&format!("{path}.min_level"), l));
        let flt = r.filters.clone().unwrap_or_default();
        self.names(&format!("{path}.filters"), &flt, "filter", |n| {
            filters.iter().any(|f| f == n)
        });
        let to = match &r.to {
            None => {
                self.report
                    .error(path, "missing `to`: a route must name its outputs");
                Vec::new()
            }
            Some(to) => {
                if to.is_empty() {
                    self.report.error(
                        format!("{path}.to"),
                        "no outputs: a route must name at least one",
                    );
                }
                self.names(&format!("{path}.to"), to, "output", |n| {
                    outputs.contains_key(n)
                });
                for (i, n) in to.iter().enumerate() {
                    if to[..i].contains(n) {
                        self.report.error(
                            format!("{path}.to[{i}]"),
                            format!("output {n:?} is listed twice"),
                        );
                    }
                }
                to.clone()
            }
        };
        RouteConfig {
            from,
            loggers: r.loggers.clone(),
            min_level,
            filters: flt,
            to,
            ..RouteConfig::default()
        }
    }

    /// Report every name in `list` that `exists` does not know.
    pub(super) fn names(
        &mut self,
        path: &str,
        list: &[String],
        what: &str,
        exists: impl Fn(&str) -> bool,
    ) {
        for (i, n) in list.iter().enumerate() {
            if !exists(n) {
                self.report
                    .error(format!("{path}[{i}]"), format!("no {what} named {n:?}"));
            }
        }
    }
}
