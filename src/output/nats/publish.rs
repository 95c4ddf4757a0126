//! The nats output's side of the connection: connecting, looking up (or
//! creating) the stream, publishing within the window, and retiring or
//! re-queueing what the acks say.

use std::sync::atomic::Ordering;

use async_nats::jetstream;
use futures_util::stream::StreamExt;
use tokio::time::Instant;

use super::entry::Entry;
use super::{Publisher, ACK_TIMEOUT, PUBLISH_SLICE, PUBLISH_STALL};

/// A published message awaiting its ack.
pub(super) struct InFlight {
    /// The last token of its reply subject; consecutive in the window.
    token: u64,
    /// When it was handed to the client.
    pub(super) sent: Instant,
    /// Acknowledged (out of order: an earlier one is not yet).
    pub(super) acked: bool,
    pub(super) entry: Entry,
}

/// What the stream answers a publish (its `PublishAck`, or an API error).
#[derive(serde::Deserialize)]
struct AckReply {
    #[serde(default)]
    duplicate: bool,
    error: Option<AckError>,
}

#[derive(serde::Deserialize)]
struct AckError {
    #[serde(default)]
    description: String,
}

impl Publisher {
    fn retry_later(&mut self) {
        self.next_try = Instant::now() + crate::output::nats::client::backoff(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
    }

    pub(super) async fn connect(&mut self) {
        match crate::output::nats::client::connect(&self.what, &self.config.connect).await {
            Ok(client) => {
                // The stream's API requests (look up, create); publishes
                // go through the client with our own ack subscription.
                let js = jetstream::ContextBuilder::new()
                    .timeout(ACK_TIMEOUT)
                    .build(client.clone());
                let prefix = client.new_inbox();
                match client.subscribe(format!("{prefix}.*")).await {
                    Ok(sub) => {
                        self.acks = Some(sub);
                        self.ack_prefix = prefix;
                    }
                    Err(e) => {
                        tracing::error!("{}: cannot subscribe for acks: {e}; retrying.", self.what);
                        self.retry_later();
                        return;
                    }
                }
                self.client = Some(client);
                self.js = Some(js);
                self.attempt = 0;
            }
            Err(e) => {
                if self.attempt == 0 {
                    tracing::error!("{e}; retrying with backoff.");
                }
                self.retry_later();
            }
        }
    }

    /// Look the stream up, or create it if it does not exist, on a task
    /// of its own (a request may wait `ACK_TIMEOUT` during an election).
    pub(super) fn start_lookup(&mut self) {
        let Some(js) = self.js.clone() else { return };
        let c = &self.config;
        let name = c.stream.clone();
        let config = jetstream::stream::Config {
            name: c.stream.clone(),
            subjects: c.stream_subjects.clone(),
            storage: jetstream::stream::StorageType::File,
            num_replicas: c.replicas,
            ..Default::default()
        };
        self.lookup = Some(tokio::spawn(async move {
            match tokio::time::timeout(ACK_TIMEOUT, js.get_stream(&name)).await {
                Ok(Ok(_)) => Ok(false),
                Ok(Err(e)) if is_not_found(&e) => {
                    match tokio::time::timeout(ACK_TIMEOUT, js.create_stream(config)).await {
                        Ok(Ok(_)) => Ok(true),
                        Ok(Err(e)) => Err(format!("cannot create stream {name}: {e}")),
                        Err(_) => Err(format!("creating stream {name} timed out")),
                    }
                }
                Ok(Err(e)) => Err(format!("cannot look up stream {name}: {e}")),
                Err(_) => Err(format!("looking up stream {name} timed out")),
            }
        }));
    }

    pub(super) fn looked_up(&mut self, result: Result<bool, String>) {
        let c = &self.config;
        match result {
            Ok(created) => {
                if created {
                    tracing::info!(output = %self.name, stream = %c.stream, subjects = ?c.stream_subjects, replicas = c.replicas, "Created the JetStream stream.");
                } else {
                    tracing::info!(output = %self.name, stream = %c.stream, "Publishing to the existing JetStream stream.");
                }
                self.stream_ready = true;
                self.attempt = 0;
            }
            Err(why) => {
                if self.attempt.is_multiple_of(20) {
                    tracing::error!("{}: {why}; retrying.", self.what);
                }
                self.retry_later();
            }
        }
    }

    /// Publish from the queue while the window has room.
    pub(super) async fn publish_some(&mut self) {
        if !self.stream_ready || !self.connected() || Instant::now() < self.next_try {
            return;
        }
        let Some(client) = self.client.clone() else {
            return;
        };
        let now = Instant::now();
        if self.queue.is_empty() && self.inflight.is_empty() {
            // Nothing in flight: the packed message goes as it is, now.
            // Otherwise it fills until full or until the acks are in (as
            // Nagle's algorithm does): under load, messages are full.
            self.seal();
        }
        while self.inflight.len() < self.config.max_in_flight
            && now.elapsed() < PUBLISH_SLICE
            && self.connected()
        {
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, entry.id.as_str());
            headers.insert(
                crate::output::nats::client::ENCODER_HEADER,
                entry.encoder.as_str(),
            );
            if let Some(n) = entry.packed {
                headers.insert(
                    crate::output::nats::client::BATCH_HEADER,
                    n.to_string().as_str(),
                );
            }
            let token = self.next_token;
            let reply = format!("{}.{token}", self.ack_prefix);
            // The client's command queue stops draining while it
            // reconnects; never wait on it long, or the inputs behind this
            // output stall (and a SocketHandler gives up after 1 s).
            let handed = tokio::time::timeout(
                PUBLISH_STALL,
                client.publish_with_reply_and_headers(
                    entry.subject.clone(),
                    reply,
                    headers,
                    entry.payload.clone(),
                ),
            )
            .await;
            match handed {
                Ok(Ok(())) => {
                    self.nats.published.fetch_add(1, Ordering::Relaxed);
                    self.next_token += 1;
                    self.inflight.push_back(InFlight {
                        token,
                        sent: now,
                        acked: false,
                        entry,
                    });
                }
                Ok(Err(e)) => {
                    self.queue.push_front(entry);
                    self.failed(&e.to_string());
                    return;
                }
                Err(_) => {
                    self.queue.push_front(entry);
                    self.failed("the client's queue did not take a publish in 100 ms");
                    return;
                }
            }
        }
    }

    /// An ack arrived: mark its publish, then retire the acknowledged
    /// ones at the front of the window.
    pub(super) fn acked(&mut self, msg: async_nats::Message) {
        let Some(token) = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        let Some(first) = self.inflight.front().map(|f| f.token) else {
            return; // A late ack of a window already re-queued.
        };
        let Some(slot) = token
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.inflight.get_mut(i))
        else {
            return;
        };
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            // Deleted under us, or its subjects do not cover ours.
            self.stream_ready = false;
            self.failed("no stream takes this subject (no responders)");
            return;
        }
        match serde_json::from_slice::<AckReply>(&msg.payload) {
            Ok(AckReply {
                error: None,
                duplicate,
            }) => {
                slot.acked = true;
                if duplicate {
                    self.nats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(AckReply { error: Some(e), .. }) => {
                self.failed(&e.description);
                return;
            }
            Err(e) => {
                self.failed(&format!("unreadable ack: {e}"));
                return;
            }
        }
        let mut done = Stored::default();
        while self.inflight.front().is_some_and(|f| f.acked) {
            if let Some(f) = self.inflight.pop_front() {
                done.add(self, &f.entry);
            }
        }
        if done.messages > 0 {
            self.retired(done);
            if self.failing {
                tracing::info!(output = %self.name, "Publishing again.");
                self.failing = false;
            }
            self.attempt = 0;
        }
    }

    /// Messages are stored in the stream.
    fn retired(&mut self, done: Stored) {
        self.held -= done.records as usize;
        self.stored_receipts(done.ours as usize);
        self.nats
            .acknowledged
            .fetch_add(done.messages, Ordering::Relaxed);
        crate::output::count(&self.stats, done.records as usize, done.bytes);
    }

    /// A publish failed: everything in flight goes back in front of the
    /// queue, in order, to be re-sent (with the same ids) after a pause.
    pub(super) fn failed(&mut self, why: &str) {
        if !self.failing {
            tracing::warn!(output = %self.name, reason = %why, unconfirmed = self.inflight.len(), "Publish failed; re-sending after a pause.");
            self.failing = true;
        }
        let mut stored = Stored::default();
        while let Some(f) = self.inflight.pop_back() {
            if f.acked {
                // Acknowledged out of order: stored, not re-sent.
                stored.add(self, &f.entry);
            } else {
                self.queue.push_front(f.entry);
            }
        }
        if stored.messages > 0 {
            self.retired(stored);
        }
        self.retry_later();
    }
}

/// Messages the stream stored, counted as they retire.
#[derive(Default)]
struct Stored {
    messages: u64,
    records: u64,
    /// Records of this run's (see `Publisher::entered`).
    ours: u64,
    bytes: usize,
}

impl Stored {
    fn add(&mut self, p: &Publisher, e: &Entry) {
        self.messages += 1;
        self.records += e.records();
        self.ours += p.ours(e);
        self.bytes += e.payload.len();
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The look-up's result; never if none runs.
pub(super) async fn join_lookup(
    lookup: &mut Option<tokio::task::JoinHandle<Result<bool, String>>>,
) -> Result<bool, String> {
    match lookup {
        Some(task) => match task.await {
            Ok(result) => result,
            Err(e) => Err(format!("the stream look-up failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

/// The next ack; never if there is no subscription.
pub(super) async fn next_ack(
    acks: &mut Option<async_nats::Subscriber>,
) -> Option<async_nats::Message> {
    match acks {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}
