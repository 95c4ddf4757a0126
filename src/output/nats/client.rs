//! The NATS JetStream client both ends share: the `nats` output (hosts
//! publish every record to a replicated stream, this folder) and the
//! `nats` input (central logrelays share one durable pull consumer of it,
//! `src/input/nats.rs`, which reaches down to this module as the ack input
//! reaches `codec::ack`). See `docs/scale-out.md`.
//!
//! Both use `async-nats`, which reconnects by itself across the listed
//! servers (and those the cluster advertises); this module builds its
//! connect options from the config, reports connection events under the
//! component's name, and keeps the NATS-specific counters for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::config::NatsConnect;

/// The header naming a message's payload encoding (`json`, `msgpack`,
/// `pickle`); the input decodes by it.
pub const ENCODER_HEADER: &str = "Logrelay-Encoder";

/// The header of a packed message (`batch_bytes`): how many records its
/// payload holds, each framed as SocketHandler frames them (a 4-byte
/// big-endian length, then the record).
pub const BATCH_HEADER: &str = "Logrelay-Batch";

/// Counters of one nats output or input.
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Messages published (re-sends included).
    pub published: AtomicU64,
    /// Messages the stream acknowledged (output) or that this input
    /// acknowledged once their records were written (input).
    pub acknowledged: AtomicU64,
    /// Acknowledgements that said the message was a duplicate (output).
    pub duplicates: AtomicU64,
    /// Messages delivered to this input more than once.
    pub redelivered: AtomicU64,
    /// Records buffered in memory and on disk (output), a gauge.
    pub buffered: AtomicU64,
    /// Messages of the stream the consumer has not been given yet (input),
    /// a gauge, refreshed every few seconds.
    pub pending: AtomicU64,
    /// Messages given to the consumer's members and not acknowledged yet
    /// (input), a gauge.
    pub ack_pending: AtomicU64,
}

/// Every nats component alive, for `/metrics`: (`output` or `input`,
/// name, counters).
type Entry = (&'static str, String, Weak<NatsStats>);
static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Counters for a new component, listed in `/metrics` while they live.
pub(crate) fn register(kind: &'static str, name: &str) -> Arc<NatsStats> {
    let stats = Arc::new(NatsStats::default());
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|(k, n, w)| w.strong_count() > 0 && !(*k == kind && n == name));
    reg.push((kind, name.to_string(), Arc::downgrade(&stats)));
    stats
}

/// Append the NATS families to a Prometheus text page.
pub fn render_metrics(out: &mut String) {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let live: Vec<(&'static str, &str, Arc<NatsStats>)> = reg
        .iter()
        .filter_map(|(k, n, w)| w.upgrade().map(|s| (*k, n.as_str(), s)))
        .collect();
    if live.is_empty() {
        return;
    }
    type Read = fn(&NatsStats) -> &AtomicU64;
    let families: [(&str, &str, &str, &str, Read); 8] = [
        ("logrelay_nats_published_total", "counter", "output", "Messages a nats output published (re-sends included).", |s| &s.published),
        ("logrelay_nats_acknowledged_total", "counter", "output", "Messages the stream acknowledged to a nats output.", |s| &s.acknowledged),
        ("logrelay_nats_duplicates_total", "counter", "output", "Publishes the stream acknowledged as duplicates (Nats-Msg-Id seen before).", |s| &s.duplicates),
        ("logrelay_nats_buffer_records", "gauge", "output", "Records a nats output holds (memory and spool) until the stream acknowledges them.", |s| &s.buffered),
        ("logrelay_nats_input_acknowledged_total", "counter", "input", "Messages a nats input acknowledged once their records were written.", |s| &s.acknowledged),
        ("logrelay_nats_redelivered_total", "counter", "input", "Messages delivered to a nats input more than once (a consumer member died or was slow).", |s| &s.redelivered),
        ("logrelay_nats_consumer_pending", "gauge", "input", "Consumer lag: stream messages not yet delivered to the consumer (any member).", |s| &s.pending),
        ("logrelay_nats_consumer_ack_pending", "gauge", "input", "Messages delivered to the consumer's members and not yet acknowledged.", |s| &s.ack_pending),
    ];
    for (family, kind, label, help, read) in families {
        let mut header = false;
        for (k, name, stats) in &live {
            if *k != label {
                continue;
            }
            if !header {
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
                header = true;
            }
            let name = name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "{family}{{{label}=\"{name}\"}} {}",
                read(stats).load(Ordering::Relaxed)
            );
        }
    }
}

/// Why a connection could not even be attempted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Connect to the cluster `c` for component `what` (`output "x"`): the
/// client connects (and reconnects) in the background, so this returns
/// at once even while every server is down. Connection events are logged
/// naming the component; a refused login is an error that says so.
pub(crate) async fn connect(what: &str, c: &NatsConnect) -> Result<async_nats::Client, SetupError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("logrelay {what}"))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            // 100 ms doubling to 2 s: a restarted node is found quickly.
            Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5)).min(2000))
        });
    if let Some(path) = &c.token_file {
        let token = std::fs::read_to_string(path).map_err(|e| {
            SetupError(format!(
                "{what}: cannot read token_file {}: {e}",
                path.display()
            ))
        })?;
        opts = opts.token(token.trim().to_string());
    }
    if let Some(path) = &c.creds_file {
        opts = opts.credentials_file(path).await.map_err(|e| {
            SetupError(format!(
                "{what}: cannot use creds_file {}: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(tls) = &c.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let who = what.to_string();
    let last_error: Arc<Mutex<Option<(String, std::time::Instant)>>> = Arc::default();
    opts = opts.event_callback(move |event| {
        let who = who.clone();
        let last_error = last_error.clone();
        async move {
            use async_nats::Event;
            match event {
                Event::Connected => tracing::info!("{who}: connected to NATS."),
                Event::Disconnected => {
                    tracing::warn!("{who}: disconnected from NATS; reconnecting.")
                }
                Event::ServerError(e) => report(&who, &last_error, &e.to_string()),
                Event::ClientError(e) => report(&who, &last_error, &e.to_string()),
                Event::LameDuckMode => {
                    tracing::info!("{who}: a NATS server is shutting down (lame duck).")
                }
                other => tracing::debug!("{who}: NATS event: {other}"),
            }
        }
    });
    let servers: Vec<async_nats::ServerAddr> =
        c.servers.iter().filter_map(|s| s.parse().ok()).collect();
    opts.connect(servers.as_slice())
        .await
        .map_err(|e| SetupError(format!("{what}: cannot connect to NATS: {e}")))
}

/// Log a server or client error once per 10 s (the client retries): a
/// refused login says so, naming the component.
fn report(who: &str, last: &Mutex<Option<(String, std::time::Instant)>>, text: &str) {
    let lower = text.to_ascii_lowercase();
    let auth = lower.contains("authoriz") || lower.contains("authentic");
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    let repeat = last
        .as_ref()
        .is_some_and(|(t, at)| t == text && at.elapsed() < Duration::from_secs(10));
    if repeat {
        return;
    }
    *last = Some((text.to_string(), std::time::Instant::now()));
    if auth {
        tracing::error!("{who}: the NATS server refused the credentials ({text}); check token_file / creds_file. Retrying.");
    } else {
        tracing::warn!("{who}: NATS error: {text}");
    }
}

/// Backoff for stream and consumer set-up: 100 ms doubling to 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)).min(2000))
}
