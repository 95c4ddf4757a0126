//! Carrying out a reload's [`Plan`]: bind what is new (rolling back on
//! error, so the old pipeline keeps going untouched), publish the new
//! pipeline, retire what is gone.

use std::collections::HashMap;
use std::sync::Arc;

use super::plan::{InputStep, OutputStep, Plan};
use super::{filter_map, handle_map, load_filters, Server, StartError};
use crate::config::{Config, FilterConfig, OutputConfig};
use crate::filter::Filter;
use crate::input::{self, RunningInput};
use crate::output::{self, OutputHandle, RunningOutput};
use crate::pipeline::Pipeline;

impl Server {
    /// Replace the running config with `new`, keeping every component whose
    /// config allows it (see `plan::Plan`). On error nothing running was
    /// touched. `reload_filters` reloads every filter even if its config
    /// is equal (its plugin file changed).
    pub async fn reload(&mut self, new: Config, reload_filters: bool) -> Result<(), StartError> {
        let new = Arc::new(new);
        let serving = self.metrics.as_ref().map(|(m, _)| m);
        let plan = Plan::new(&self.config, &new, serving, reload_filters);
        let staged = self.bind(&new, &plan).await?;
        // Point of no return.
        let old_outputs = self.publish(&new, &plan, staged).await;
        self.retire(&plan, old_outputs);
        self.config = new;
        if let Err(e) = self.serve_metrics(&plan.metrics).await {
            tracing::error!("{e}; the previous metrics endpoint keeps running.");
        }
        self.publish_metrics();
        Ok(())
    }

    /// Build what `plan` needs before anything running changes: load the
    /// filters, start (or restyle) the outputs, and bind the new inputs
    /// (before anything old stops: no gap). On error, what was started is
    /// dropped and the running outputs are put back.
    async fn bind(&mut self, new: &Arc<Config>, plan: &Plan) -> Result<Staged, StartError> {
        let keep: HashMap<String, (FilterConfig, Arc<Filter>)> = self
            .filters
            .iter()
            .filter(|(name, _)| plan.keeps_filter(name))
            .map(|(name, f)| (name.clone(), f.clone()))
            .collect();
        let filters = load_filters(new, &keep)?;
        let mut old_outputs = std::mem::take(&mut self.outputs);
        let (mut outputs, restyled) = match start_outputs(new, &plan.outputs, &mut old_outputs) {
            Ok(o) => o,
            Err(e) => {
                self.outputs = old_outputs;
                return Err(e);
            }
        };
        let bound = match self.bind_inputs(new, plan).await {
            Ok(bound) => bound,
            Err(e) => {
                // Put the unchanged outputs back; drop the new ones.
                let reused: Vec<String> = outputs
                    .iter()
                    .filter(|(n, ro)| self.config.outputs.get(*n) == Some(&ro.config))
                    .map(|(n, _)| n.clone())
                    .collect();
                give_back(&mut old_outputs, &mut outputs, &reused);
                self.outputs = old_outputs;
                return Err(e);
            }
        };
        Ok(Staged {
            filters,
            outputs,
            restyled,
            old_outputs,
            bound,
        })
    }

    /// Bind the inputs the plan binds. On error, those bound already stop.
    async fn bind_inputs(
        &self,
        new: &Config,
        plan: &Plan,
    ) -> Result<Vec<(String, RunningInput)>, StartError> {
        let mut bound = Vec::new();
        for (name, step) in &plan.inputs {
            let Some(ic) = new.inputs.get(name) else {
                continue;
            };
            if *step == InputStep::Keep {
                continue;
            }
            match input::start(
                name,
                ic,
                self.pipelines.subscribe(),
                self.shutdown.clone(),
                &self.tracker,
            )
            .await
            {
                Ok(running) => bound.push((name.clone(), running)),
                Err(e) => {
                    for (_, r) in bound {
                        r.removed.cancel();
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(bound)
    }

    /// Put what [`Server::bind`] built into service: hand restyled
    /// outputs their new format (and settings), publish the new pipeline,
    /// take in the new inputs and apply the sockets' modes. Gives back the
    /// old outputs not carried over, to retire.
    async fn publish(
        &mut self,
        new: &Arc<Config>,
        plan: &Plan,
        staged: Staged,
    ) -> HashMap<String, RunningOutput> {
        let Staged {
            filters,
            mut outputs,
            restyled,
            old_outputs,
            bound,
        } = staged;
        for (name, restyle) in restyled {
            if let Some(ro) = outputs.get_mut(&name) {
                match &restyle.config {
                    OutputConfig::File(c) if restyle.retune => ro.handle.retune(c).await,
                    _ => {
                        tracing::info!(output = %name, "Output format changed by reload; same file and queue.");
                    }
                }
                ro.handle = restyle.handle;
                ro.config = restyle.config;
            }
        }
        let pipeline = Arc::new(Pipeline::new(
            new.clone(),
            &filter_map(&filters),
            &handle_map(&outputs),
        ));
        self.pipelines.send_replace(pipeline);
        input::pending::set_limit(new.max_pending_bytes);
        for (name, running) in bound {
            tracing::info!(input = %name, listen = ?running.local, "Listening (added by reload).");
            self.inputs.insert(running.key.clone(), running);
        }
        for (path, mode) in &plan.socket_modes {
            use std::os::unix::fs::PermissionsExt;
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)) {
                tracing::warn!(path = %path.display(), error = %e, "Cannot set the socket's mode.");
            }
        }
        self.outputs = outputs;
        self.filters = filters;
        old_outputs
    }

    /// Stop what the new config no longer has: inputs stop accepting and
    /// drain their connections; old output threads end once the old
    /// pipeline's last connection lets go of their handles.
    fn retire(&mut self, plan: &Plan, old_outputs: HashMap<String, RunningOutput>) {
        for key in &plan.retire_inputs {
            if let Some(running) = self.inputs.remove(key) {
                tracing::info!(input = %key, "Input removed by reload; draining its connections.");
                running.removed.cancel();
            }
        }
        // The outputs not carried over are the ones the plan retires.
        debug_assert!(
            old_outputs.len() == plan.retire_outputs.len()
                && plan
                    .retire_outputs
                    .iter()
                    .all(|n| old_outputs.contains_key(n)),
            "{:?} vs {:?}",
            old_outputs.keys(),
            plan.retire_outputs
        );
        for (name, ro) in old_outputs {
            tracing::info!(output = %name, "Output retired by reload.");
            self.retired.push(ro.thread);
        }
    }
}

/// Outputs that keep their thread though their config changed
/// ([`OutputStep::Restyle`], [`OutputStep::Retune`]), to switch over once
/// the reload cannot fail.
type Restyled = Vec<(String, Restyle)>;

/// What a reload built before its point of no return (see
/// [`Server::bind`]); nothing running has changed yet.
struct Staged {
    /// The new config's filters, kept or loaded.
    filters: HashMap<String, (FilterConfig, Arc<Filter>)>,
    /// The new config's outputs: the kept ones (taken out of the server),
    /// the new ones started.
    outputs: HashMap<String, RunningOutput>,
    /// Kept outputs to hand a new format (and settings).
    restyled: Restyled,
    /// The old outputs not carried over, to retire.
    old_outputs: HashMap<String, RunningOutput>,
    /// Inputs bound for the new config.
    bound: Vec<(String, RunningInput)>,
}

/// Carry out the plan's `steps` for the outputs of `config`, taking the
/// kept ones (and those that keep their thread) out of `current`: what is
/// left there afterwards is to be retired. On error, the kept ones are put
/// back into `current` and the new ones dropped.
fn start_outputs(
    config: &Config,
    steps: &[(String, OutputStep)],
    current: &mut HashMap<String, RunningOutput>,
) -> Result<(HashMap<String, RunningOutput>, Restyled), StartError> {
    let mut out = HashMap::new();
    let mut reused = Vec::new();
    let mut restyled = Vec::new();
    for (name, step) in steps {
        let Some(oc) = config.outputs.get(name) else {
            continue;
        };
        let kept = match (step, current.get(name)) {
            (OutputStep::Keep, Some(_)) => {
                if let Some(ro) = current.remove(name) {
                    out.insert(name.clone(), ro);
                    reused.push(name.clone());
                }
                continue;
            }
            (OutputStep::Restyle | OutputStep::Retune, Some(ro)) => {
                match restyle(ro, oc, *step == OutputStep::Retune) {
                    Ok(kept) => kept,
                    Err(e) => {
                        give_back(current, &mut out, &reused);
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };
        if let (Some(kept), Some(ro)) = (kept, current.remove(name)) {
            out.insert(name.clone(), ro);
            reused.push(name.clone());
            restyled.push((name.clone(), kept));
            continue;
        }
        match output::start(name, oc) {
            Ok(ro) => {
                out.insert(name.clone(), ro);
            }
            Err(e) => {
                give_back(current, &mut out, &reused);
                return Err(e.into());
            }
        }
    }
    Ok((out, restyled))
}

/// How an output keeps its thread through a reload.
struct Restyle {
    /// The handle that formats as the new config says.
    handle: OutputHandle,
    /// The new config.
    config: OutputConfig,
    /// Whether more than the format changed, so the (file) output's
    /// thread must be handed the new settings.
    retune: bool,
}

/// A handle to `running`'s thread that formats as `new` says (the same
/// stream, or the same file with one path), or `None` if its handle does
/// not format. Keeping the thread keeps one writer per file and its queue
/// in order: every line a connection sent before it switched to the new
/// pipeline is written (and rotated) before its first new one.
fn restyle(
    running: &RunningOutput,
    new: &OutputConfig,
    retune: bool,
) -> Result<Option<Restyle>, output::OutputError> {
    let handle = match new {
        OutputConfig::File(c) => running.handle.with_format(c.encoding, &c.text)?,
        OutputConfig::Stream(c) => running.handle.with_format(c.encoding, &c.text)?,
        _ => None,
    };
    Ok(handle.map(|handle| Restyle {
        handle,
        config: new.clone(),
        retune,
    }))
}

/// Undo [`start_outputs`]: move the reused outputs back into `current`;
/// the newly started ones are dropped (their threads end).
fn give_back(
    current: &mut HashMap<String, RunningOutput>,
    started: &mut HashMap<String, RunningOutput>,
    reused: &[String],
) {
    for name in reused {
        if let Some(ro) = started.remove(name) {
            current.insert(name.clone(), ro);
        }
    }
    started.clear();
}
