//! Publishing events to the EVENTS stream: `Nats-Msg-Id` = event id + a random nonce of this
//! publisher (JetStream drops a retry's repeat inside its duplicate window, the ledger's id index
//! drops any repeat forever after; JetStream's window is stream-wide, so a plain event id there
//! would let another agency publish first under it and have this event dropped), wait for the
//! PubAck, retry transient failures (timeouts, a server restarting, no stream leader yet) with
//! capped exponential backoff, and fail fast with a clear error on what retrying cannot fix
//! (permissions, message too large, a stream that refuses the message).
//!
//! Order: messages of one connection reach the stream in the order they were sent. A transient
//! failure of one message while later ones in the same window succeed can reorder that message
//! behind them when it is retried; `max_in_flight = 1` keeps strict order at the cost of one round
//! trip per event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{Client, ConnectOptions, Event as NatsEvent};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use socai_model::Event;

use crate::subject::{agency_token, event_subject};

/// How to reach NATS and as whom.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Connection name shown by the server's monitoring.
    pub name: String,
    /// Keep trying to connect when the server is not up yet (services), instead of failing.
    pub retry_initial_connect: bool,
    /// The heartbeat: see [`PING_INTERVAL`], the default (`--nats-ping-interval`). Longer for a
    /// link so slow that one message can take over `2 ×` this to arrive; shorter to notice a dead
    /// server sooner. Taken between [`MIN_PING_INTERVAL`] and [`MAX_PING_INTERVAL`].
    pub ping_interval: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            user: None,
            password: None,
            name: "socai".into(),
            retry_initial_connect: false,
            ping_interval: PING_INTERVAL,
        }
    }
}

/// The inbox prefix of a user: `_INBOX_<user, dots as dashes>`. The server configs in
/// `deploy/nats/` let each user subscribe only to its own inboxes, so nobody reads another
/// user's replies (PubAcks, API responses).
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{}", agency_token(user))
}

/// The errors the server reported on a connection (e.g. permissions violations), the latest
/// [`SERVER_ERRORS_KEPT`] of them, kept so a publish that timed out can say why. Refusals are
/// also kept apart, so a flood of one kind cannot push another out: the latest refused
/// subscriptions, and each subject a publish was refused to with the count of errors up to its
/// latest refusal (so a caller can act only on what is new, [`ServerErrors::publishes_refused_since`]).
#[derive(Debug, Clone, Default)]
pub struct ServerErrors(Arc<Mutex<ErrorLog>>);

#[derive(Debug, Default)]
struct ErrorLog {
    recent: std::collections::VecDeque<String>,
    /// How many errors were ever recorded.
    count: u64,
    /// (`count` when recorded, error).
    subscriptions_refused: std::collections::VecDeque<(u64, String)>,
    /// Subject → the `count` at its latest refusal.
    publishes_refused: std::collections::HashMap<String, u64>,
}

/// How many server errors a connection remembers (of each kind).
pub const SERVER_ERRORS_KEPT: usize = 32;

/// How many subjects refused for publishing a connection remembers; past it, the one refused
/// longest ago is forgotten.
pub const REFUSED_SUBJECTS_KEPT: usize = 1024;

impl ServerErrors {
    /// The latest error.
    pub fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|e| e.recent.back().cloned())
    }

    /// The latest errors, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|e| e.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many errors were recorded so far (a mark for [`ServerErrors::publishes_refused_since`]).
    pub fn count(&self) -> u64 {
        self.0.lock().map(|e| e.count).unwrap_or_default()
    }

    /// The latest errors refusing a subscription (`Permissions Violation for Subscription to
    /// "<subject>"`) recorded after the first `mark` errors ([`ServerErrors::count`]), oldest
    /// first.
    pub fn subscriptions_refused_since(&self, mark: u64) -> Vec<String> {
        self.0
            .lock()
            .map(|e| {
                e.subscriptions_refused
                    .iter()
                    .filter(|&&(at, _)| at > mark)
                    .map(|(_, error)| error.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The subjects a publish was refused to (`Permissions Violation for Publish to
    /// "<subject>"`) by an error recorded after the first `mark` errors ([`ServerErrors::count`]).
    pub fn publishes_refused_since(&self, mark: u64) -> std::collections::HashSet<String> {
        self.0
            .lock()
            .map(|e| {
                e.publishes_refused
                    .iter()
                    .filter(|&(_, &at)| at > mark)
                    .map(|(subject, _)| subject.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records one error the server reported.
    pub fn push(&self, error: String) {
        let Ok(mut log) = self.0.lock() else {
            return;
        };
        log.count += 1;
        let count = log.count;
        if let Some(subject) = quoted_after(&error, "Publish to \"") {
            if log.publishes_refused.len() >= REFUSED_SUBJECTS_KEPT
                && !log.publishes_refused.contains_key(subject)
            {
                let oldest = log
                    .publishes_refused
                    .iter()
                    .min_by_key(|&(_, &at)| at)
                    .map(|(s, _)| s.clone());
                if let Some(oldest) = oldest {
                    log.publishes_refused.remove(&oldest);
                }
            }
            log.publishes_refused.insert(subject.to_owned(), count);
        }
        if error.contains("Subscription to \"") {
            if log.subscriptions_refused.len() == SERVER_ERRORS_KEPT {
                log.subscriptions_refused.pop_front();
            }
            log.subscriptions_refused.push_back((count, error.clone()));
        }
        if log.recent.len() == SERVER_ERRORS_KEPT {
            log.recent.pop_front();
        }
        log.recent.push_back(error);
    }
}

/// The text between `needle` and the next `"` in `text`.
fn quoted_after<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    let rest = &text[text.find(needle)? + needle.len()..];
    Some(&rest[..rest.find('"')?])
}

/// How often a connection that has read nothing from the server sends it a PING. async-nats
/// drops the connection (and reconnects, to another seed of a cluster if one answers) at the
/// third tick with two PINGs unanswered: a server that stopped answering without closing the
/// socket (frozen, or a network path that silently drops packets) is noticed within
/// `3 × PING_INTERVAL` of the last message read, where async-nats's default of 60 s left the
/// ledger and publishers blind for up to three minutes. Each message read restarts the clock,
/// so a connection receiving messages sends no PINGs; one that only sends PINGs every 5 s.
/// Only whole messages count: a single message that takes over 10–15 s to arrive (1 MiB on a
/// link under about 0.6 Mbit/s) would have its connection dropped and made again. The default of
/// [`NatsConfig::ping_interval`] (`--nats-ping-interval`, `SOCAI_NATS_PING_INTERVAL`).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest heartbeat [`connect`] uses (a shorter [`NatsConfig::ping_interval`] counts as
/// this): PINGs more often than once a second would only add load.
pub const MIN_PING_INTERVAL: Duration = Duration::from_secs(1);
/// The longest heartbeat [`connect`] uses (a longer one counts as this): an hour. async-nats
/// adds the interval to the current instant at every message read, which panics, killing the
/// connection, for a huge one such as `Duration::MAX`.
pub const MAX_PING_INTERVAL: Duration = Duration::from_secs(3600);

/// Connects with the config's credentials and inbox prefix; server errors are logged and kept.
pub async fn connect(config: &NatsConfig) -> Result<(Client, ServerErrors), ConnectError> {
    let errors = ServerErrors::default();
    let sink = errors.clone();
    let name: Arc<str> = config.name.as_str().into();
    let mut options = ConnectOptions::new()
        .name(&config.name)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(
            config
                .ping_interval
                .clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL),
        )
        .event_callback(move |event| {
            let sink = sink.clone();
            let name = name.clone();
            async move {
                match event {
                    NatsEvent::ServerError(err) => {
                        tracing::warn!(connection = %name, error = %err, "nats server reported an error");
                        sink.push(err.to_string());
                    }
                    NatsEvent::Disconnected => {
                        tracing::warn!(connection = %name, "disconnected from nats")
                    }
                    NatsEvent::Connected => tracing::info!(connection = %name, "connected to nats"),
                    other => {
                        tracing::debug!(connection = %name, event = %other, "nats connection event")
                    }
                }
            }
        });
    if let Some(user) = &config.user {
        options = options
            .user_and_password(user.clone(), config.password.clone().unwrap_or_default())
            .custom_inbox_prefix(inbox_prefix(user));
    }
    if config.retry_initial_connect {
        options = options.retry_on_initial_connect();
    }
    let seeds = seed_servers(&config.url).map_err(|source| ConnectError {
        url: config.url.clone(),
        user: config.user.clone(),
        source,
    })?;
    let client = options
        .connect(seeds)
        .await
        .map_err(|source| ConnectError {
            url: config.url.clone(),
            user: config.user.clone(),
            source,
        })?;
    Ok((client, errors))
}

/// The seed servers of a `--nats` / `SOCAI_NATS_URL` value: one URL, or several separated by
/// commas as NATS clients take them (`nats://a:4222,nats://b:4222`; spaces around each are
/// ignored). The client tries them in random order (async-nats shuffles the list) and learns the
/// rest of a cluster from the server it reaches.
pub fn seed_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, async_nats::ConnectError> {
    use async_nats::{ConnectError, ConnectErrorKind};
    let parts: Vec<&str> = url.split(',').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err(ConnectError::with_source(
            ConnectErrorKind::ServerParse,
            "no server given: expected nats://HOST:PORT, or several separated by commas",
        ));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if part.is_empty() {
                return Err(format!(
                    "server {} of {} is empty (a stray comma?)",
                    i + 1,
                    parts.len()
                ));
            }
            part.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("server {} of {} ({part:?}): {e}", i + 1, parts.len()))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|reason| ConnectError::with_source(ConnectErrorKind::ServerParse, reason))
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to nats at {url}{}: {source}; check that nats-server runs there (--nats / SOCAI_NATS_URL) and the credentials (SOCAI_NATS_USER / SOCAI_NATS_PASSWORD)",
    user.as_ref().map(|u| format!(" as {u:?}")).unwrap_or_default()
)]
pub struct ConnectError {
    pub url: String,
    pub user: Option<String>,
    #[source]
    pub source: async_nats::ConnectError,
}

/// Bounds of the retry loop of one message.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up on a message after retrying this long.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait after one of `backoff`: twice it, at most `max_backoff`. Saturating, as is
    /// [`RetryPolicy::gives_up`]: a policy may set waits near `Duration::MAX`.
    fn next_backoff(&self, backoff: Duration) -> Duration {
        backoff.saturating_mul(2).min(self.max_backoff)
    }

    /// Whether waiting `backoff` more, `elapsed` after the first attempt, passes `give_up_after`.
    fn gives_up(&self, elapsed: Duration, backoff: Duration) -> bool {
        elapsed.saturating_add(backoff) > self.give_up_after
    }
}

/// One message the stream has stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    /// The EVENTS stream sequence that holds it.
    pub stream_seq: u64,
    /// The stream already had a message with this id (inside its duplicate window).
    pub duplicate: bool,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("event {id:?} to {subject}: {reason}")]
    Refused {
        id: String,
        subject: String,
        reason: String,
    },
    #[error(
        "event {id:?} to {subject}: gave up after {attempts} attempts over {elapsed_s} s: {last}; is nats-server up and does the EVENTS stream exist (start `socai serve` once to create it)?"
    )]
    GaveUp {
        id: String,
        subject: String,
        attempts: u32,
        elapsed_s: u64,
        last: String,
    },
}

/// How long a plain publish may wait for the connection to take it (as long as JetStream's own
/// publishes wait to be sent, by default).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`Publisher::send_unacked`] did not send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// The client refuses it (a payload over the server's limit, a bad subject): retrying
    /// cannot help.
    Refused(String),
    /// The connection is closed or did not take it in time: it may be sent again.
    NotSent(String),
}

/// A message to publish: where, its dedup id, its bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
}

impl Outgoing {
    /// A portal sync body (DongBoHoSoMC, CapNhatTienDoHoSoMC) as the agency sends it, on
    /// `dvc.sync.<agency>`, under its id (`socai_dvc::sync_id`: the same body is the same id).
    pub fn sync(agency: &str, body: Bytes) -> Outgoing {
        Outgoing {
            subject: crate::subject::sync_subject(agency),
            id: socai_dvc::sync_id(&body),
            payload: body,
        }
    }

    /// The event's JSON on its subject `dvc.events.<agency>.<type>`, with its id as msg-id.
    pub fn event(event: &Event) -> Outgoing {
        Outgoing {
            subject: event_subject(&event.agency, &event.event_type),
            id: event.id.clone(),
            payload: Bytes::from(serde_json::to_vec(event).expect("an Event always serializes")),
        }
    }
}

/// Publishes events to JetStream with dedup ids and retries. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    errors: ServerErrors,
    retry: RetryPolicy,
    /// Appended to every message id: nobody else can guess it, so nobody can make JetStream drop
    /// this publisher's messages as duplicates of theirs.
    nonce: u64,
}

impl Publisher {
    pub fn new(client: Client, errors: ServerErrors) -> Publisher {
        use rand_core::RngCore;
        Publisher {
            js: jetstream::new(client),
            errors,
            retry: RetryPolicy::default(),
            nonce: rand_core::OsRng.next_u64(),
        }
    }

    pub async fn connect(config: &NatsConfig) -> Result<Publisher, ConnectError> {
        let (client, errors) = connect(config).await?;
        Ok(Publisher::new(client, errors))
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Publisher {
        self.retry = retry;
        self
    }

    pub fn client(&self) -> Client {
        self.js.client()
    }

    /// The errors the server reported on this publisher's connection.
    pub fn server_errors(&self) -> &ServerErrors {
        &self.errors
    }

    /// Waits for the ledger's receipts too (see [`crate::receipts`]).
    pub fn with_receipts(
        self,
        options: crate::receipts::ReceiptOptions,
    ) -> crate::receipts::ReceiptPublisher {
        crate::receipts::ReceiptPublisher::new(self, options)
    }

    /// Publishes one event and waits for the stream to store it.
    pub async fn publish(&self, event: &Event) -> Result<Published, PublishError> {
        self.publish_outgoing(Outgoing::event(event)).await
    }

    /// Publishes one message, retrying transient failures; see the module docs.
    pub async fn publish_outgoing(&self, msg: Outgoing) -> Result<Published, PublishError> {
        let mark = self.errors.count();
        let first = self.attempt(&msg, 0).await;
        self.settle(msg, first, 0, mark).await
    }

    /// Turns the result of a first attempt into the final result, retrying while it is transient
    /// (with the msg-id of the same `round`, see [`Publisher::send`]). `mark` is the server's
    /// error count ([`ServerErrors::count`]) before the first attempt: only a refusal after it
    /// can be this message's.
    pub(crate) async fn settle(
        &self,
        msg: Outgoing,
        first: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
        round: u32,
        mark: u64,
    ) -> Result<Published, PublishError> {
        let started = tokio::time::Instant::now();
        let mut backoff = self.retry.first_backoff;
        let mut attempts = 1;
        let mut result = first;
        loop {
            let error = match result {
                Ok(ack) => {
                    return Ok(Published {
                        id: msg.id,
                        stream_seq: ack.sequence,
                        duplicate: ack.duplicate,
                        attempts,
                    });
                }
                Err(error) => error,
            };
            if let Some(reason) = self.permanent(&msg, &error, mark) {
                return Err(PublishError::Refused {
                    id: msg.id,
                    subject: msg.subject,
                    reason,
                });
            }
            if self.retry.gives_up(started.elapsed(), backoff) {
                return Err(PublishError::GaveUp {
                    id: msg.id,
                    subject: msg.subject,
                    attempts,
                    elapsed_s: started.elapsed().as_secs(),
                    last: error.to_string(),
                });
            }
            tracing::debug!(id = %msg.id, attempts, error = %error, "publish failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = self.retry.next_backoff(backoff);
            attempts += 1;
            result = self.attempt(&msg, round).await;
        }
    }

    /// Sends `msg` with the msg-id of publishing round `round`: `<id>.<nonce>` for the first
    /// (its retries are repeats JetStream drops inside its duplicate window), `<id>.<nonce>.<round>`
    /// for a re-publish after no receipt came: that one must reach the ledger even inside the
    /// window (the receipt may have been lost), and the ledger answers it as a duplicate.
    pub(crate) async fn send(
        &self,
        msg: &Outgoing,
        round: u32,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        // Never sent: async-nats lets an empty token or a wildcard through, which no stream
        // stores, and the PubAck's absence would look like a server away (see `permanent`).
        if crate::subject::unpublishable(&msg.subject).is_some() {
            return Err(jetstream::context::PublishError::with_source(
                jetstream::context::PublishErrorKind::Other,
                async_nats::subject::SubjectError::InvalidFormat,
            ));
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(msg.payload.clone())
            .message_id(self.msg_id(msg, round).as_str());
        self.js.send_publish(msg.subject.clone(), publish).await
    }

    /// The msg-id of publishing round `round` (see [`Publisher::send`]).
    fn msg_id(&self, msg: &Outgoing, round: u32) -> String {
        if round == 0 {
            format!("{}.{:016x}", msg.id, self.nonce)
        } else {
            format!("{}.{:016x}.{round}", msg.id, self.nonce)
        }
    }

    /// Sends `msg` as [`Publisher::send`] does (the same msg-id), as a plain NATS publish that
    /// asks for no PubAck: the stream stores it all the same (or drops it as a repeat inside its
    /// duplicate window), but nothing says so. Only for a sender that learns the outcome another
    /// way: the ledger's receipt ([`crate::receipts`]). Fails on what the client itself refuses (a
    /// payload over the server's limit, a bad subject), a closed connection, or a connection that
    /// does not take it within [`SEND_TIMEOUT`] (while it reconnects its queue fills and a send
    /// would wait for as long as nats-server is down).
    pub(crate) async fn send_unacked(
        &self,
        client: &Client,
        msg: &Outgoing,
        round: u32,
    ) -> Result<(), Unsent> {
        use async_nats::client::PublishErrorKind;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            self.msg_id(msg, round).as_str(),
        );
        let send = client.publish_with_headers(msg.subject.clone(), headers, msg.payload.clone());
        match tokio::time::timeout(SEND_TIMEOUT, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(match error.kind() {
                PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::InvalidSubject => {
                    Unsent::Refused(error.to_string())
                }
                PublishErrorKind::Send => {
                    Unsent::NotSent(format!("the connection to nats-server is closed ({error})"))
                }
            }),
            Err(_) => Err(Unsent::NotSent(format!(
                "the connection to nats-server did not take it within {} s: is nats-server up?",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn attempt(
        &self,
        msg: &Outgoing,
        round: u32,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        self.send(msg, round).await?.into_future().await
    }

    /// `Some(reason)` when retrying cannot help (`mark`: see [`Publisher::settle`]).
    fn permanent(
        &self,
        msg: &Outgoing,
        error: &jetstream::context::PublishError,
        mark: u64,
    ) -> Option<String> {
        match error.kind() {
            PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence => Some(error.to_string()),
            // An error answered by JetStream itself (e.g. the stream's size limits): the same
            // each time.
            PublishErrorKind::Other
                if std::error::Error::source(error)
                    .is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some()) =>
            {
                Some(error.to_string())
            }
            // A subject no one can publish to (refused by `send` or async-nats).
            PublishErrorKind::Other
                if std::error::Error::source(error).is_some_and(|s| {
                    s.downcast_ref::<async_nats::subject::SubjectError>()
                        .is_some()
                }) =>
            {
                Some(
                    crate::subject::unpublishable(&msg.subject)
                        .unwrap_or_else(|| error.to_string()),
                )
            }
            // A timeout after the server refused the subject for this user (since this message
            // was first sent: permissions can change on a reload): say so, now.
            PublishErrorKind::TimedOut => {
                if !self
                    .errors
                    .publishes_refused_since(mark)
                    .contains(&msg.subject)
                {
                    return None;
                }
                let needle = format!("Publish to \"{}\"", msg.subject);
                let e = self
                    .errors
                    .recent()
                    .into_iter()
                    .rev()
                    .find(|e| e.contains(&needle))
                    .unwrap_or_else(|| format!("Permissions Violation for {needle}"));
                Some(format!(
                    "the server refused it: {e}; check this user's publish permissions in the server's configuration (an agency's user may publish only to its own agency's subjects)"
                ))
            }
            _ => None,
        }
    }

    /// Publishes `messages` with up to `max_in_flight` awaiting their PubAck at once, calling
    /// `done` with each result in input order. Messages are sent in input order; only a retry can
    /// send one later. Returns how many failed.
    pub async fn publish_all<I, F>(&self, messages: I, max_in_flight: usize, mut done: F) -> u64
    where
        I: IntoIterator<Item = Outgoing>,
        F: FnMut(Result<Published, PublishError>),
    {
        let mut failed = 0;
        let mut finish = |result: Result<Published, PublishError>| {
            if result.is_err() {
                failed += 1;
            }
            done(result);
        };
        let mut in_flight = FuturesOrdered::new();
        for msg in messages {
            while in_flight.len() >= max_in_flight.max(1) {
                if let Some(result) = in_flight.next().await {
                    finish(result);
                }
            }
            // Sent now, in order; the PubAck and any retry are awaited in the window.
            let mark = self.errors.count();
            let sent = self.send(&msg, 0).await;
            let publisher = self.clone();
            in_flight.push_back(async move {
                let first = match sent {
                    Ok(ack) => ack.into_future().await,
                    Err(error) => Err(error),
                };
                publisher.settle(msg, first, 0, mark).await
            });
        }
        while let Some(result) = in_flight.next().await {
            finish(result);
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_as_long_as_a_duration_can_hold_end_in_giving_up_not_in_an_overflow() {
        let huge = RetryPolicy {
            first_backoff: Duration::MAX / 2 + Duration::from_secs(1),
            max_backoff: Duration::MAX,
            give_up_after: Duration::MAX - Duration::from_secs(1),
        };
        // Doubled, the wait is past what a `Duration` holds: it stays at the longest.
        assert_eq!(huge.next_backoff(huge.first_backoff), Duration::MAX);
        // Waited time plus the next wait past what one holds: given up.
        assert!(!huge.gives_up(Duration::ZERO, huge.first_backoff));
        assert!(huge.gives_up(Duration::from_secs(5), Duration::MAX));
        // The usual policy: doubling up to its longest wait; giving up past its time.
        let usual = RetryPolicy::default();
        assert_eq!(
            usual.next_backoff(Duration::from_millis(50)),
            Duration::from_millis(100)
        );
        assert_eq!(
            usual.next_backoff(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert!(!usual.gives_up(Duration::from_secs(118), Duration::from_secs(2)));
        assert!(usual.gives_up(Duration::from_secs(119), Duration::from_secs(2)));
    }

    #[test]
    fn a_comma_separated_list_gives_every_seed_in_order() {
        let seeds = seed_servers("nats://10.0.0.1:4222, nats://10.0.0.2:4223 ,nats-3:4224")
            .expect("three seeds");
        let got: Vec<String> = seeds
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect();
        assert_eq!(got, ["10.0.0.1:4222", "10.0.0.2:4223", "nats-3:4224"]);
        assert_eq!(seed_servers("nats://127.0.0.1:4222").expect("one").len(), 1);
    }

    #[test]
    fn a_bad_seed_is_named_by_its_place() {
        for (url, says) in [
            (
                "nats://a:4222,nats://b:notaport",
                "server 2 of 2 (\"nats://b:notaport\")",
            ),
            ("nats://a:4222,,nats://c:4222", "server 2 of 3 is empty"),
            ("", "no server given"),
            (" , ", "no server given"),
        ] {
            let e = seed_servers(url).expect_err(url).to_string();
            assert!(e.contains(says), "{url:?}: {e}");
        }
    }
}
