//! The reload plan: what a reload does to each component, computed from
//! the config in service and the new one before anything running is
//! touched. [`Server::reload`](super::Server::reload) carries it out in
//! three steps: bind what is new (a failure there leaves the old pipeline
//! running), publish the new pipeline, retire what is gone.
//!
//! The plan is a value, so it can be read and tested on its own: inputs
//! are matched by what they are bound to ([`ListenKey`]), outputs and
//! filters by name, and a component is kept whenever its config allows.

use std::path::PathBuf;

use crate::config::{Config, InputKind, ListenKey, MetricsConfig, OutputConfig};

/// What a reload does, component by component.
#[derive(Debug, PartialEq)]
pub(crate) struct Plan {
    /// Each filter of the new config, in its order.
    pub filters: Vec<(String, FilterStep)>,
    /// Each output of the new config, in its order.
    pub outputs: Vec<(String, OutputStep)>,
    /// Outputs of the old config that no new one carries on (removed, or
    /// started anew): their threads end once the old pipeline's last
    /// connection lets go of their handles.
    pub retire_outputs: Vec<String>,
    /// Each input of the new config, in its order.
    pub inputs: Vec<(String, InputStep)>,
    /// What the old config's inputs are bound to that no new input is:
    /// stop accepting, drain the open connections.
    pub retire_inputs: Vec<ListenKey>,
    /// The `mode` of every Unix socket of the new config that sets one: a
    /// kept socket keeps its file, and an edited mode still applies to it,
    /// as it would to a freshly bound one.
    pub socket_modes: Vec<(PathBuf, u32)>,
    /// The metrics endpoint.
    pub metrics: MetricsStep,
}

/// What becomes of a filter of the new config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilterStep {
    /// Same config: the loaded module and its instances are kept.
    Keep,
    /// New, changed, or its plugin file changed: load it.
    Load,
}

/// What becomes of an output of the new config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputStep {
    /// Same config: its thread and handle are kept.
    Keep,
    /// Same stream, or same file (path, open mode, one path), and only its
    /// format changed: the thread and its queue are kept, and the senders
    /// format with the new encoder.
    Restyle,
    /// Same file, and settings beyond the format changed (rotation,
    /// compression, flushing): as [`OutputStep::Restyle`], and its thread
    /// is handed the new settings after what is queued. One writer per
    /// file, so lines stay in order and two threads never rotate it.
    Retune,
    /// New, or changed beyond what its thread can take: start one.
    Start,
}

/// What becomes of an input of the new config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputStep {
    /// Something is bound to its key already: the socket and every open
    /// connection are kept, even if the input was renamed or its decoder
    /// changed (it takes the new settings from the new pipeline).
    Keep,
    /// Nothing is bound to its key: bind it before anything old stops, so
    /// there is no gap in listening.
    Bind,
}

/// What becomes of the metrics endpoint.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MetricsStep {
    /// Same address and token file: nothing to do.
    Keep,
    /// Bind the endpoint here, then stop the one serving now, if any (a
    /// failed bind leaves that one serving).
    Serve(MetricsConfig),
    /// Stop the endpoint.
    Stop,
}

impl MetricsStep {
    /// From the endpoint `serving` now to the one `wanted`.
    pub(crate) fn between(
        serving: Option<&MetricsConfig>,
        wanted: Option<&MetricsConfig>,
    ) -> MetricsStep {
        match wanted {
            _ if serving == wanted => MetricsStep::Keep,
            Some(m) => MetricsStep::Serve(m.clone()),
            None => MetricsStep::Stop,
        }
    }
}

impl Plan {
    /// The plan from `old` (the config in service) to `new`. `serving`:
    /// the metrics endpoint running now, which is not `old`'s after a
    /// reload whose move of it failed. `reload_filters`: load every filter
    /// again (a plugin file changed under an unchanged config).
    pub(crate) fn new(
        old: &Config,
        new: &Config,
        serving: Option<&MetricsConfig>,
        reload_filters: bool,
    ) -> Plan {
        let filters = new
            .filters
            .iter()
            .map(|(name, fc)| {
                let step = match old.filters.get(name) {
                    Some(was) if was == fc && !reload_filters => FilterStep::Keep,
                    _ => FilterStep::Load,
                };
                (name.clone(), step)
            })
            .collect();
        let outputs: Vec<(String, OutputStep)> = new
            .outputs
            .iter()
            .map(|(name, oc)| (name.clone(), output_step(old.outputs.get(name), oc)))
            .collect();
        let retire_outputs = old
            .outputs
            .keys()
            .filter(|name| {
                !outputs
                    .iter()
                    .any(|(n, step)| n == *name && *step != OutputStep::Start)
            })
            .cloned()
            .collect();
        let bound: Vec<ListenKey> = keys(old).collect();
        let wanted: Vec<ListenKey> = keys(new).collect();
        let inputs = new
            .inputs
            .iter()
            .map(|(name, ic)| {
                let step = if bound.contains(&ListenKey::of(name, ic)) {
                    InputStep::Keep
                } else {
                    InputStep::Bind
                };
                (name.clone(), step)
            })
            .collect();
        let mut retire_inputs: Vec<ListenKey> = Vec::new();
        for key in bound {
            if !wanted.contains(&key) && !retire_inputs.contains(&key) {
                retire_inputs.push(key);
            }
        }
        let socket_modes = new
            .inputs
            .values()
            .filter_map(|ic| match &ic.kind {
                InputKind::Unix {
                    path,
                    mode: Some(mode),
                } => Some((path.clone(), *mode)),
                _ => None,
            })
            .collect();
        Plan {
            filters,
            outputs,
            retire_outputs,
            inputs,
            retire_inputs,
            socket_modes,
            metrics: MetricsStep::between(serving, new.metrics.as_ref()),
        }
    }

    /// Whether the filter `name` is kept as it is loaded.
    pub(crate) fn keeps_filter(&self, name: &str) -> bool {
        self.filters
            .iter()
            .any(|(n, step)| n == name && *step == FilterStep::Keep)
    }
}

/// What each input of `config` is bound to.
fn keys(config: &Config) -> impl Iterator<Item = ListenKey> + '_ {
    config
        .inputs
        .iter()
        .map(|(name, ic)| ListenKey::of(name, ic))
}

/// What becomes of an output that was `old` (`None`: it is new) and is
/// now `new`.
fn output_step(old: Option<&OutputConfig>, new: &OutputConfig) -> OutputStep {
    let Some(old) = old else {
        return OutputStep::Start;
    };
    if old == new {
        return OutputStep::Keep;
    }
    match (old, new) {
        (OutputConfig::File(old), OutputConfig::File(c))
            if old.path == c.path
                && old.truncate == c.truncate
                && old.max_open_files.is_none()
                && c.max_open_files.is_none() =>
        {
            let mut format_only = old.clone();
            format_only.encoding = c.encoding;
            // `utc` also sets the clock of a timed rotation.
            format_only.text = c.text.clone();
            format_only.text.utc = old.text.utc;
            if format_only == *c {
                OutputStep::Restyle
            } else {
                OutputStep::Retune
            }
        }
        (OutputConfig::Stream(old), OutputConfig::Stream(c)) if old.stream == c.stream => {
            OutputStep::Restyle
        }
        _ => OutputStep::Start,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A config of these inputs, outputs and top-level keys (`extra`:
    /// JSON members after `outputs`, each with its leading comma).
    fn config(inputs: &str, outputs: &str, extra: &str) -> Config {
        let text = format!(
            r#"{{"inputs": {{{inputs}}}, "outputs": {{{outputs}}}, "routes": [{{"to": ["all"]}}]{extra}}}"#
        );
        crate::config::parse(&text, Path::new("/etc/logrelay/l.json"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const APP: &str = r#""app": {"type": "tcp", "address": "127.0.0.1:9020"}"#;
    const ALL: &str = r#""all": {"type": "file", "path": "/var/log/all.log"}"#;

    fn plan(old: &Config, new: &Config) -> Plan {
        Plan::new(old, new, old.metrics.as_ref(), false)
    }

    fn step<T: Copy>(steps: &[(String, T)], name: &str) -> T {
        steps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("no step for {name}"))
    }

    #[test]
    fn the_same_config_keeps_everything() {
        let c = config(APP, ALL, r#", "metrics": {"address": "127.0.0.1:9102"}"#);
        let p = plan(&c, &c);
        assert_eq!(p.inputs, [("app".to_string(), InputStep::Keep)]);
        assert_eq!(p.outputs, [("all".to_string(), OutputStep::Keep)]);
        assert!(p.retire_inputs.is_empty());
        assert!(p.retire_outputs.is_empty());
        assert_eq!(p.metrics, MetricsStep::Keep);
    }

    #[test]
    fn an_input_whose_address_changed_is_bound_and_the_old_one_retired() {
        let old = config(APP, ALL, "");
        let new = config(
            r#""app": {"type": "tcp", "address": "127.0.0.1:9021"}"#,
            ALL,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(p.inputs, [("app".to_string(), InputStep::Bind)]);
        assert_eq!(
            p.retire_inputs,
            [ListenKey::Tcp("127.0.0.1:9020".to_string())]
        );
    }

    #[test]
    fn an_input_on_the_same_address_is_kept_though_renamed_or_redecoded() {
        let old = config(APP, ALL, "");
        let new = config(
            r#""renamed": {"type": "tcp", "address": "127.0.0.1:9020", "decoder": "json"}"#,
            ALL,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(p.inputs, [("renamed".to_string(), InputStep::Keep)]);
        assert!(p.retire_inputs.is_empty());
    }

    #[test]
    fn a_port_0_input_is_kept_only_under_its_name() {
        let old = config(r#""a": {"type": "tcp", "address": "127.0.0.1:0"}"#, ALL, "");
        let same = plan(&old, &old);
        assert_eq!(same.inputs, [("a".to_string(), InputStep::Keep)]);
        let new = config(r#""b": {"type": "tcp", "address": "127.0.0.1:0"}"#, ALL, "");
        let renamed = plan(&old, &new);
        assert_eq!(renamed.inputs, [("b".to_string(), InputStep::Bind)]);
        assert_eq!(
            renamed.retire_inputs,
            [ListenKey::Tcp("127.0.0.1:0#a".to_string())]
        );
    }

    #[test]
    fn an_added_input_is_bound_and_a_removed_one_retired() {
        let old = config(
            &format!(r#"{APP}, "old": {{"type": "udp", "address": "127.0.0.1:9021"}}"#),
            ALL,
            "",
        );
        let new = config(
            &format!(r#"{APP}, "new": {{"type": "unix", "path": "/run/l.sock"}}"#),
            ALL,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.inputs, "app"), InputStep::Keep);
        assert_eq!(step(&p.inputs, "new"), InputStep::Bind);
        assert_eq!(
            p.retire_inputs,
            [ListenKey::Udp("127.0.0.1:9021".to_string())]
        );
    }

    #[test]
    fn a_kept_unix_socket_takes_the_mode_of_the_new_config() {
        let old = config(r#""s": {"type": "unix", "path": "/run/l.sock"}"#, ALL, "");
        let new = config(
            r#""s": {"type": "unix", "path": "/run/l.sock", "mode": "0660"}"#,
            ALL,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(p.inputs, [("s".to_string(), InputStep::Keep)]);
        assert_eq!(p.socket_modes, [(PathBuf::from("/run/l.sock"), 0o660)]);
        assert!(plan(&new, &old).socket_modes.is_empty());
    }

    #[test]
    fn a_removed_output_is_retired_and_an_added_one_started() {
        let old = config(APP, &format!(r#"{ALL}, "gone": {{"type": "stdout"}}"#), "");
        let new = config(
            APP,
            &format!(r#"{ALL}, "added": {{"type": "forward", "address": "127.0.0.1:9031"}}"#),
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.outputs, "all"), OutputStep::Keep);
        assert_eq!(step(&p.outputs, "added"), OutputStep::Start);
        assert_eq!(p.retire_outputs, ["gone"]);
    }

    #[test]
    fn a_file_output_whose_format_changed_keeps_its_thread() {
        let old = config(APP, ALL, "");
        let new = config(
            APP,
            r#""all": {"type": "file", "path": "/var/log/all.log", "format": "%(message)s"}"#,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.outputs, "all"), OutputStep::Restyle);
        assert!(p.retire_outputs.is_empty());
    }

    #[test]
    fn a_file_output_whose_settings_changed_is_retuned() {
        let old = config(APP, ALL, "");
        let new = config(
            APP,
            r#""all": {"type": "file", "path": "/var/log/all.log", "max_bytes": 1048576, "backup_count": 3}"#,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.outputs, "all"), OutputStep::Retune);
        assert!(p.retire_outputs.is_empty());
    }

    #[test]
    fn a_file_output_on_another_path_is_started_and_the_old_one_retired() {
        let old = config(APP, ALL, "");
        let new = config(
            APP,
            r#""all": {"type": "file", "path": "/var/log/other.log"}"#,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.outputs, "all"), OutputStep::Start);
        assert_eq!(p.retire_outputs, ["all"]);
    }

    #[test]
    fn a_stream_output_whose_format_changed_keeps_its_thread() {
        let old = config(APP, r#""all": {"type": "stdout"}"#, "");
        let new = config(
            APP,
            r#""all": {"type": "stdout", "format": "%(message)s"}"#,
            "",
        );
        let p = plan(&old, &new);
        assert_eq!(step(&p.outputs, "all"), OutputStep::Restyle);
        assert!(p.retire_outputs.is_empty());
    }

    #[test]
    fn an_output_of_another_type_is_started_and_the_old_one_retired() {
        let old = config(APP, r#""all": {"type": "stdout"}"#, "");
        let p = plan(&old, &config(APP, ALL, ""));
        assert_eq!(step(&p.outputs, "all"), OutputStep::Start);
        assert_eq!(p.retire_outputs, ["all"]);
    }

    #[test]
    fn the_metrics_endpoint_is_moved_started_or_stopped() {
        let none = config(APP, ALL, "");
        let here = config(APP, ALL, r#", "metrics": {"address": "127.0.0.1:9102"}"#);
        let there = config(APP, ALL, r#", "metrics": {"address": "127.0.0.1:9103"}"#);
        let MetricsStep::Serve(m) = plan(&here, &there).metrics else {
            panic!("not moved");
        };
        assert_eq!(m.address, "127.0.0.1:9103");
        assert!(matches!(plan(&none, &here).metrics, MetricsStep::Serve(_)));
        assert_eq!(plan(&here, &none).metrics, MetricsStep::Stop);
        // A move that failed left the old endpoint serving: the next
        // reload of the same config tries again.
        let retry = Plan::new(&there, &there, here.metrics.as_ref(), false);
        assert_eq!(retry.metrics, MetricsStep::Serve(m));
    }

    #[test]
    fn filters_are_kept_unless_changed_or_their_plugins_reloaded() {
        let with = |fuel: u32| {
            config(
                APP,
                ALL,
                &format!(
                    r#", "filters": {{"f": {{"type": "wasm", "path": "/p/f.wasm", "fuel": {fuel}}}, "g": {{"type": "wasm", "path": "/p/g.wasm"}}}}"#
                ),
            )
        };
        let (old, new) = (with(1000), with(2000));
        let p = plan(&old, &new);
        assert_eq!(step(&p.filters, "f"), FilterStep::Load);
        assert_eq!(step(&p.filters, "g"), FilterStep::Keep);
        assert!(p.keeps_filter("g") && !p.keeps_filter("f"));
        let reloaded = Plan::new(&old, &old, None, true);
        assert_eq!(step(&reloaded.filters, "g"), FilterStep::Load);
    }
}
