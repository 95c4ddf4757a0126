//! The running listener: the inputs, filters and outputs of the current
//! config, the pipeline that wires them, and what changes them — reload,
//! reopen, shutdown.
//!
//! A reload builds everything new *before* touching anything running
//! (filters load, outputs open, new sockets bind); if any step fails the
//! old pipeline keeps going untouched. Components whose config is equal are
//! kept: inputs by what they are bound to (so no listening gap), outputs
//! and filters by name. What a reload does to each is a value, the
//! `Plan` (plan.rs), computed from the old config and the new one, and
//! `Server::reload` (reload.rs) reads plan, bind, publish, retire.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod plan;
mod reload;

use crate::config::ListenKey;
use crate::config::{Config, FilterConfig};
use crate::filter::Filter;
use crate::input::{self, RunningInput};
use crate::output::{self, OutputHandle, RunningOutput};
use crate::pipeline::Pipeline;
use plan::MetricsStep;

/// Why a config could not be put into service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An input could not bind.
    #[error(transparent)]
    Bind(#[from] input::BindError),
    /// An output could not start.
    #[error(transparent)]
    Output(#[from] output::OutputError),
    /// A filter could not load.
    #[error(transparent)]
    Filter(#[from] crate::filter::wasm::FilterError),
    /// The metrics endpoint could not bind.
    #[error("{0}")]
    Metrics(String),
}

/// The running listener.
pub struct Server {
    config: Arc<Config>,
    pipelines: watch::Sender<Arc<Pipeline>>,
    inputs: HashMap<ListenKey, RunningInput>,
    outputs: HashMap<String, RunningOutput>,
    filters: HashMap<String, (FilterConfig, Arc<Filter>)>,
    /// Output threads of removed outputs, joined at shutdown.
    retired: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The admin endpoint's address (with its token file) and its stop
    /// token.
    metrics: Option<(crate::config::MetricsConfig, CancellationToken)>,
}

impl Server {
    /// Put a config into service: load filters, open outputs, bind inputs.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        input::pending::set_limit(config.max_pending_bytes);
        let filters = load_filters(&config, &HashMap::new())?;
        let mut outputs = HashMap::new();
        for (name, oc) in &config.outputs {
            outputs.insert(name.clone(), output::start(name, oc)?);
        }
        let pipeline = Arc::new(Pipeline::new(
            config.clone(),
            &filter_map(&filters),
            &handle_map(&outputs),
        ));
        let (tx, _) = watch::channel(pipeline);
        let mut server = Server {
            config: config.clone(),
            pipelines: tx,
            inputs: HashMap::new(),
            outputs,
            filters,
            retired: Vec::new(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            metrics: None,
        };
        let metrics = MetricsStep::between(None, config.metrics.as_ref());
        server.serve_metrics(&metrics).await?;
        for (name, ic) in &config.inputs {
            let running = input::start(
                name,
                ic,
                server.pipelines.subscribe(),
                server.shutdown.clone(),
                &server.tracker,
            )
            .await?;
            tracing::info!(input = %name, listen = ?running.local, decoder = ic.decoder.as_str(), "Listening.");
            server.inputs.insert(running.key.clone(), running);
        }
        server.publish_metrics();
        Ok(server)
    }

    /// Start, move or stop the metrics endpoint.
    async fn serve_metrics(&mut self, step: &MetricsStep) -> Result<(), StartError> {
        let started = match step {
            MetricsStep::Keep => return Ok(()),
            MetricsStep::Serve(m) => {
                let address = &m.address;
                let token = match &m.token_file {
                    Some(path) => {
                        Some(crate::admin::read_token(path).map_err(StartError::Metrics)?)
                    }
                    None => None,
                };
                let listener = tokio::net::TcpListener::bind(address.as_str())
                    .await
                    .map_err(|e| {
                        StartError::Metrics(format!("metrics: cannot listen on {address}: {e}"))
                    })?;
                let local = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let stop = CancellationToken::new();
                tokio::spawn(crate::admin::serve(listener, stop.clone(), token));
                tracing::info!(input = %"metrics", listen = ?[local], "Listening (metrics and status page).");
                Some((m.clone(), stop))
            }
            MetricsStep::Stop => None,
        };
        if let Some((_, old)) = std::mem::replace(&mut self.metrics, started) {
            old.cancel();
        }
        Ok(())
    }

    /// Point the metrics registry at the running components.
    fn publish_metrics(&self) {
        let inputs = self
            .config
            .inputs
            .iter()
            .filter_map(|(name, ic)| {
                self.inputs
                    .get(&ListenKey::of(name, ic))
                    .map(|r| (name.clone(), r.stats.clone()))
            })
            .collect();
        let outputs = self
            .outputs
            .iter()
            .map(|(n, ro)| (n.clone(), ro.handle.stats().clone()))
            .collect();
        let filters = self
            .filters
            .iter()
            .map(|(n, (_, f))| (n.clone(), f.clone()))
            .collect();
        crate::metrics::global().set_sources(crate::metrics::Sources {
            inputs,
            outputs,
            filters,
        });
        let listening = self
            .config
            .inputs
            .iter()
            .filter_map(|(name, ic)| {
                let r = self.inputs.get(&ListenKey::of(name, ic))?;
                Some((name.clone(), r.key.to_string(), r.local.clone()))
            })
            .collect();
        crate::admin::status::publish(&self.config, listening);
    }

    /// The config in service.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The addresses each input is bound to.
    pub fn listening(&self) -> Vec<(String, Vec<String>)> {
        self.inputs
            .values()
            .map(|i| (i.key.to_string(), i.local.clone()))
            .collect()
    }

    /// Every listening socket's fd (for an upgrade's successor).
    pub fn listening_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.inputs
            .values()
            .flat_map(|i| i.fds.iter().copied())
            .collect()
    }

    /// Our successor listens on our sockets now: stop accepting, keep the
    /// socket files, ask the plain connections to park for the handover
    /// (src/input/handoff.rs), and serve the others until they close or
    /// `drain_seconds` pass (see [`Server::finish_upgrade`]).
    pub fn hand_over(&mut self) {
        input::unix::KEEP_SOCKET_FILES.store(true, std::sync::atomic::Ordering::Relaxed);
        // Before `removed`: a connection that sees both parks.
        input::handoff::request();
        for running in self.inputs.values() {
            running.removed.cancel();
        }
    }

    /// Wait until every output wrote what is queued now, each at most
    /// `limit` (a late one is logged: the successor's records may then
    /// come before its last ones).
    pub async fn flush_outputs(&self, limit: std::time::Duration) {
        let mut waits = tokio::task::JoinSet::new();
        for (name, ro) in &self.outputs {
            let (name, handle) = (name.clone(), ro.handle.clone());
            waits.spawn(async move {
                match tokio::time::timeout(limit, handle.flush()).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(output = %name, "Upgrade: output is gone."),
                    Err(_) => tracing::warn!(output = %name, "Upgrade: output did not write its queue in time; handing over anyway."),
                }
            });
        }
        while waits.join_next().await.is_some() {}
    }

    /// Connections open on every input.
    pub fn open_connections(&self) -> u64 {
        self.inputs
            .values()
            .map(|i| i.stats.open.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// The tracker of every input task (connections served again after a
    /// failed handover join it).
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// What a successor needs to serve the connections handed to it.
    pub fn adopter(&self) -> input::handoff::Adopter {
        input::handoff::Adopter::new(
            self.inputs
                .iter()
                .map(|(k, r)| (k.clone(), r.ctx.clone()))
                .collect(),
            self.tracker.clone(),
            tokio::runtime::Handle::current(),
        )
    }

    /// After a handover: serve the connections that stayed until they
    /// close or `drain_seconds` pass, then shut down.
    pub async fn finish_upgrade(self) {
        let drain = std::time::Duration::from_secs(self.config.drain_seconds);
        self.tracker.close();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                connections = self.open_connections(),
                "Upgrade: drain_seconds passed; closing the connections left."
            );
        }
        self.shutdown().await;
    }

    /// Reopen every output file (SIGHUP, external logrotate).
    pub async fn reopen(&self) {
        for ro in self.outputs.values() {
            ro.handle.reopen().await;
        }
    }

    /// Stop accepting, drain connections, flush every output, and return.
    pub async fn shutdown(self) {
        let Server {
            pipelines,
            inputs,
            outputs,
            filters,
            retired,
            shutdown,
            tracker,
            metrics,
            ..
        } = self;
        crate::metrics::global().set_draining();
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        drop(inputs);
        drop(filters);
        // Dropping the last pipeline drops the last handles: each output
        // thread drains its queue, flushes and ends.
        drop(pipelines);
        let threads: Vec<JoinHandle<()>> = outputs
            .into_values()
            .map(|ro| ro.thread)
            .chain(retired)
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some((_, stop)) = metrics {
            stop.cancel();
        }
    }
}

fn load_filters(
    config: &Config,
    current: &HashMap<String, (FilterConfig, Arc<Filter>)>,
) -> Result<HashMap<String, (FilterConfig, Arc<Filter>)>, StartError> {
    let mut out = HashMap::new();
    for (name, fc) in &config.filters {
        let filter = match current.get(name) {
            Some((old, f)) if old == fc => f.clone(),
            _ => Arc::new(Filter::load(name, fc)?),
        };
        out.insert(name.clone(), (fc.clone(), filter));
    }
    Ok(out)
}

fn filter_map(
    filters: &HashMap<String, (FilterConfig, Arc<Filter>)>,
) -> HashMap<String, Arc<Filter>> {
    filters
        .iter()
        .map(|(n, (_, f))| (n.clone(), f.clone()))
        .collect()
}

fn handle_map(outputs: &HashMap<String, RunningOutput>) -> HashMap<String, OutputHandle> {
    outputs
        .iter()
        .map(|(n, ro)| (n.clone(), ro.handle.clone()))
        .collect()
}
