//! JetStream for every role: the API context that works from the caller's NATS account, and
//! reading a stream's messages by batched direct gets (no consumer).
//!
//! The shipped server config (`deploy/nats/users.conf`) keeps JetStream in the ledger's account;
//! projection workers, dashboards and auditors are in accounts without JetStream that import
//! read-only parts of its API under the prefix [`IMPORTED_API_PREFIX`] (a request on `$JS.API.…`
//! there is answered "JetStream not enabled for account"). [`jetstream`] asks `$JS.API.INFO`
//! until it gets a clear answer and returns the context with the right prefix, so the same code
//! runs as every role.
//!
//! Those accounts may not create consumers (nats-server#8274: a push consumer's deliver subject
//! is not checked against its creator's permissions), so they read streams with direct gets:
//! [`direct_get_batch`] sends one `DIRECT.GET.<stream>` request (`{"seq":N,"batch":K}`, or a
//! subject filter, or the last message of many subjects) and collects the answers up to the
//! end-of-batch status; [`StreamReader`] walks a stream from a seq in such batches.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, Context};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

/// The JetStream API prefix of an account that has JetStream.
pub const DEFAULT_API_PREFIX: &str = "$JS.API";

/// The prefix under which accounts without JetStream import the ledger account's API (the
/// imports' `to:` in `deploy/nats/users.conf`).
pub const IMPORTED_API_PREFIX: &str = "$JS.ledger.API";

/// JetStream's error code for "JetStream not enabled for account".
const NOT_ENABLED_FOR_ACCOUNT: u64 = 10039;

/// How long [`api_prefix`] asks before it settles for [`DEFAULT_API_PREFIX`].
const PREFIX_PATIENCE: Duration = Duration::from_secs(30);

/// The API prefix this connection's account must use: [`DEFAULT_API_PREFIX`] when the server
/// answers `$JS.API.INFO` with account information (the account has JetStream),
/// [`IMPORTED_API_PREFIX`] when it answers "JetStream not enabled for account". Waits for the
/// connection first (a client made with `retry_on_initial_connect` may not be connected yet).
/// Anything else (no answer, no responders, another error such as "cluster not available",
/// which a cluster without a meta leader gives every account) is asked again, 500 ms apart,
/// for up to 30 s, with a warning at the first miss: guessing then would pick a prefix for good,
/// and a worker left with the wrong one fails every request with a permissions violation. After
/// that the default is used (nothing would work under the other prefix either).
pub async fn api_prefix(client: &Client) -> String {
    while client.connection_state() != async_nats::connection::State::Connected {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        let asked = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(format!("{DEFAULT_API_PREFIX}.INFO"), Bytes::new()),
        )
        .await;
        let reason = match asked {
            Ok(Ok(message)) => {
                let answer = serde_json::from_slice::<serde_json::Value>(&message.payload).ok();
                let error = answer.as_ref().map(|v| &v["error"]);
                match error.map(|e| (e.is_null(), e["err_code"].as_u64())) {
                    Some((true, _)) => return DEFAULT_API_PREFIX.into(),
                    Some((false, Some(NOT_ENABLED_FOR_ACCOUNT))) => {
                        tracing::debug!(
                            "this account has no JetStream: using the ledger's imported API, {IMPORTED_API_PREFIX}"
                        );
                        return IMPORTED_API_PREFIX.into();
                    }
                    Some((false, _)) => format!("answered {}", error.expect("some")),
                    None => "answered with something that is not JSON".to_string(),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".to_string(),
        };
        if started.elapsed() >= PREFIX_PATIENCE {
            tracing::warn!(%reason, "$JS.API.INFO was never answered clearly; using {DEFAULT_API_PREFIX}");
            return DEFAULT_API_PREFIX.into();
        }
        if !warned {
            tracing::warn!(%reason, "JetStream does not answer yet ($JS.API.INFO); asking again for up to 30 s");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The JetStream context for this connection's account (see [`api_prefix`]).
pub async fn jetstream(client: Client) -> Context {
    let prefix = api_prefix(&client).await;
    with_prefix(client, &prefix)
}

/// The JetStream context under an explicit API prefix.
pub fn with_prefix(client: Client, prefix: &str) -> Context {
    if prefix == DEFAULT_API_PREFIX {
        jetstream::new(client)
    } else {
        jetstream::ContextBuilder::new()
            .api_prefix(prefix)
            .build(client)
    }
}

/// One direct get request (nats-server's `JSApiMsgGetRequest`); zero and empty fields are left
/// out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchRequest {
    /// First stream seq to consider.
    #[serde(skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// At most this many messages (0: one message, not a batch).
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub batch: usize,
    /// Stop once the answers reach this many bytes (0: the server's max_pending).
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub max_bytes: usize,
    /// Only messages whose subject matches this filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_by_subj: Option<String>,
    /// The last message of each subject matching these filters (at most 1024 subjects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multi_last: Vec<String>,
    /// With `multi_last`: as of this stream seq (a consistent view over several requests).
    #[serde(skip_serializing_if = "is_zero")]
    pub up_to_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

/// A message as a direct get returns it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    /// The message's own headers and the `Nats-*` ones the server adds.
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl StoredMessage {
    /// The last value of header `name`: nats-server appends its own `Nats-*` headers after the
    /// publisher's, which it does not strip, so the last one is the server's (a publisher's
    /// `Nats-Time-Stamp` must not pass for the time the server stored the message).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_last(name).map(|v| v.as_str())
    }
}

/// What one direct get request returned.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub messages: Vec<StoredMessage>,
    /// Messages matching the request after the last one returned (the end-of-batch count).
    pub num_pending: u64,
    /// For `multi_last`: the stream seq the answer is as of (pass it as `up_to_seq` to go on).
    pub up_to_seq: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectGetError {
    /// Nobody answered: the stream does not exist (yet), does not allow direct gets, or this
    /// account does not import its direct gets.
    #[error(
        "no answer from stream {stream}'s direct get: it does not exist yet, does not allow direct gets, or this NATS user may not read it"
    )]
    Unavailable { stream: String },
    #[error("stream {stream}: {matching}")]
    TooManyResults { stream: String, matching: String },
    #[error("stream {stream}: the server answered {status} {description}")]
    Status {
        stream: String,
        status: u16,
        description: String,
    },
    #[error("stream {stream}: no answer within {waited_s} s (is nats-server up?)")]
    TimedOut { stream: String, waited_s: u64 },
    #[error("stream {stream}: {message}")]
    Nats { stream: String, message: String },
}

/// How long to wait for each message of a batch.
pub const DIRECT_GET_WAIT: Duration = Duration::from_secs(10);

/// Sends one direct get request to `stream` and collects its answers: every message up to the
/// end-of-batch status (or the single answer of a non-batch request). "No message" (404) is an
/// empty batch, not an error.
pub async fn direct_get_batch(
    js: &Context,
    stream: &str,
    request: &BatchRequest,
) -> Result<Batch, DirectGetError> {
    let nats = |message: String| DirectGetError::Nats {
        stream: stream.into(),
        message,
    };
    let client = js.client();
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats(format!("subscribing to {inbox}: {e}")))?;
    let payload = serde_json::to_vec(request).expect("a direct get request serializes");
    js.send_request(
        format!("DIRECT.GET.{stream}"),
        async_nats::Request::new()
            .inbox(inbox)
            .payload(payload.into()),
    )
    .await
    .map_err(|e| nats(format!("sending a direct get: {e}")))?;
    let batched = request.batch > 0 || !request.multi_last.is_empty();
    let mut batch = Batch::default();
    loop {
        let message = match tokio::time::timeout(DIRECT_GET_WAIT, answers.next()).await {
            Err(_) => {
                return Err(DirectGetError::TimedOut {
                    stream: stream.into(),
                    waited_s: DIRECT_GET_WAIT.as_secs(),
                });
            }
            Ok(None) => return Err(nats("the connection closed".into())),
            Ok(Some(m)) => m,
        };
        let header_u64 = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get_last(name))
                .and_then(|v| v.as_str().parse::<u64>().ok())
        };
        match message.status.map(|s| s.as_u16()) {
            // End of batch.
            Some(204) => {
                batch.num_pending = header_u64("Nats-Num-Pending").unwrap_or(0);
                batch.up_to_seq = header_u64("Nats-UpTo-Sequence");
                return Ok(batch);
            }
            Some(404) => return Ok(batch),
            Some(503) => {
                return Err(DirectGetError::Unavailable {
                    stream: stream.into(),
                });
            }
            Some(413) => {
                return Err(DirectGetError::TooManyResults {
                    stream: stream.into(),
                    matching: message
                        .description
                        .unwrap_or_else(|| "too many results".into()),
                });
            }
            Some(status) if status != 200 => {
                return Err(DirectGetError::Status {
                    stream: stream.into(),
                    status,
                    description: message.description.unwrap_or_default(),
                });
            }
            _ => {}
        }
        let seq = header_u64("Nats-Sequence")
            .ok_or_else(|| nats("a direct get answer without Nats-Sequence".into()))?;
        let headers = message.headers.unwrap_or_default();
        let subject = headers
            .get_last("Nats-Subject")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        batch.messages.push(StoredMessage {
            seq,
            subject,
            headers,
            payload: message.payload,
        });
        if !batched {
            return Ok(batch);
        }
    }
}

/// Reads a stream from a seq on, in batches of direct gets; keeps its own cursor (the seq after
/// the last message returned). Cancel-safe: a batch is taken in whole or not at all.
pub struct StreamReader {
    js: Context,
    stream: String,
    next_seq: u64,
    filter: Option<String>,
    batch: usize,
    max_bytes: usize,
    pending: VecDeque<StoredMessage>,
    caught_up: bool,
}

impl StreamReader {
    /// Reads `stream` from seq `from` (1 = the first message), 1024 messages or 8 MiB at a time.
    pub fn new(js: Context, stream: &str, from: u64) -> StreamReader {
        StreamReader {
            js,
            stream: stream.into(),
            next_seq: from.max(1),
            filter: None,
            batch: 1024,
            max_bytes: 8 << 20,
            pending: VecDeque::new(),
            caught_up: false,
        }
    }

    /// Only messages whose subject matches `filter`.
    pub fn filter(mut self, filter: impl Into<String>) -> StreamReader {
        self.filter = Some(filter.into());
        self
    }

    /// At most `messages` and about `bytes` per request.
    pub fn batch(mut self, messages: usize, bytes: usize) -> StreamReader {
        self.batch = messages.max(1);
        self.max_bytes = bytes.max(1);
        self
    }

    /// The seq the next request starts from.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the last request reached the end of the stream (nothing was pending after it).
    pub fn caught_up(&self) -> bool {
        self.caught_up && self.pending.is_empty()
    }

    /// The next message, or `None` when the stream holds nothing more right now (ask again
    /// later to follow it).
    pub async fn next(&mut self) -> Result<Option<StoredMessage>, DirectGetError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        let batch = self.next_batch().await?;
        self.pending.extend(batch);
        Ok(self.pending.pop_front())
    }

    /// The next batch (empty when the stream holds nothing more right now). Messages held back
    /// by [`next`](Self::next) come first.
    pub async fn next_batch(&mut self) -> Result<Vec<StoredMessage>, DirectGetError> {
        if !self.pending.is_empty() {
            return Ok(self.pending.drain(..).collect());
        }
        let request = BatchRequest {
            seq: self.next_seq,
            batch: self.batch,
            max_bytes: self.max_bytes,
            next_by_subj: self.filter.clone(),
            ..Default::default()
        };
        let batch = direct_get_batch(&self.js, &self.stream, &request).await?;
        // Nothing awaited from here on: the cursor moves with the batch it covers.
        if let Some(last) = batch.messages.last() {
            self.next_seq = last.seq + 1;
        }
        self.caught_up = batch.messages.is_empty() || batch.num_pending == 0;
        Ok(batch.messages)
    }
}
