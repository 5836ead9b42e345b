//! Publishing until the ledger answers: an event is safe when its **receipt** arrives.
//!
//! After each commit's fsync the ledger sends every publishing agency one signed receipt on
//! `dvc.receipts.<agency token>` naming which of its event ids got which seq (or were already in
//! the ledger, `duplicate`, or were rejected), under the commit's signed tree head
//! ([`socai_chain::Receipt`]). A PubAck only says nats-server holds the message (in memory, until
//! its next sync); a receipt says the ledger holds the event on disk.
//!
//! [`ReceiptPublisher`]:
//! - subscribes to `dvc.receipts.<agency token>` for every agency it publishes for (one exact
//!   subject each, which both an agency user and the gateway may subscribe to), and flushes,
//!   before the first publish for that agency, so no receipt is missed;
//! - publishes in input order with the `Nats-Msg-Id` of [`Publisher::publish_all`]
//!   (`<event id>.<nonce>`), most events as plain NATS publishes that await no PubAck: the
//!   receipt says more than a PubAck could, and a PubAck per event costs both nats-server and
//!   this client about as much again as the receipts themselves. Each agency's first event in a
//!   run, one in every [`ACK_EVERY`] of each agency's events (and the [`ACK_EVERY`]th plain
//!   publish in a row of any) and every re-publish await their PubAck (with the retries of
//!   [`Publisher`], at most `max_in_flight` at once), so that what the stream refuses an agency
//!   (size, limits, no stream) shows within [`ACK_EVERY`] of its events; the others sent to such
//!   a stream learn it only from their own PubAck when published again after `receipt_timeout`.
//!   Plain publishes run at most [`PACE`] sends past the oldest PubAck awaited (nats-server's
//!   stream ingest queue drops what overflows it).
//! - publishes again at once, awaiting its PubAck, an event sent without one to a subject the
//!   server then refuses this user (errors new since the last check, read every second), with
//!   the same msg-id: one that was stored is answered as a duplicate, and one refused again ends
//!   as [`Outcome::NotPublished`] (which says so when an earlier copy might have been stored
//!   after all, had permissions changed during the run);
//! - ends an event whose subject no one can publish to ([`crate::subject::unpublishable`]: a
//!   space in its agency or type, an empty or a wildcard token) at once as
//!   [`Outcome::NotPublished`], never sent, and goes on with the others;
//! - holds what the connection cannot take, unsent, in input order: every event read while the
//!   connection is down (a new agency's subscription waits too), and a first publish or
//!   subscription the connection does not take within [`crate::publisher::SEND_TIMEOUT`] (then
//!   nothing is sent until a flush goes through; in async-nats a flush only shows the client
//!   writes to the socket again, not that the server answers: the connection's heartbeat,
//!   [`crate::publisher::NatsConfig::ping_interval`], drops a connection whose server stopped
//!   answering within three intervals, and it counts as down until it is made again). Held
//!   events are sent first, in order, before any new input. When async-nats has dropped a
//!   connection and made a new one, the first publishes nats-server may not have stored (plain
//!   ones sent after their connection's last send whose PubAck came at its first attempt, and
//!   those whose PubAck was still awaited) may have been lost in the old one's buffer: they go
//!   first again, merged in input order with the held events, with the same msg-id
//!   ([`Again::Reconnected`]; a stored copy is a duplicate). What is lost anyway (nats-server
//!   crashing before its sync, its ingest queue dropping) is published again after
//!   `receipt_timeout`, behind later events, and a re-publish whose PubAck was awaited is
//!   retried by the publisher: per-subject order holds for what is not lost; after a reconnect
//!   it can break for sends async-nats still held in its command queue, which go out on the
//!   new connection first. `max_in_flight = 1` awaits every PubAck in turn, and a first
//!   publish whose PubAck never came goes again before anything after it: strict order across
//!   connection and PubAck failures, not across a loss inside nats-server;
//! - keeps every event until a receipt names it (by agency and id, under `events` or
//!   `rejected`), at most `max_pending` at once (reading more input waits when full);
//! - re-publishes an event that has no receipt `receipt_timeout` after its PubAck (after it was
//!   sent, for one that awaited none), with a msg-id
//!   of that round (`<event id>.<nonce>.<round>`: JetStream stores it even inside its duplicate
//!   window, since the receipt itself may be what was lost; the ledger answers it, as a duplicate
//!   if it already held the event), doubling the timeout at each re-publish up to
//!   `max_receipt_timeout` so a slow ledger is not flooded with repeats;
//! - gives up on an event `give_up_after` it was read (its first publish, unless it was held)
//!   ([`Outcome::NoReceipt`]);
//! - with a [`CheckpointVerifier`] (the log's published key) checks every receipt: one that does
//!   not verify is reported ([`Report::BadReceipt`]) and answers nothing.
//!
//! Memory is bounded by `max_pending` events (their bytes are kept for re-publishing).
//!
//! Two messages of one run with the same agency and id share their msg-id: JetStream keeps the
//! first, and one answer of the ledger ends both (the first as it says, the others as
//! duplicates of its seq).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::{FuturesUnordered, SelectAll};
use smallvec::{SmallVec, smallvec};
use socai_chain::checkpoint::CheckpointVerifier;
use socai_chain::receipt::{ReceiptRejection, ReceiptVerifier};
use socai_chain::{Hash, Receipt};
use socai_model::Event;
use tokio::time::Instant;

use crate::publisher::{Outgoing, PublishError, Published, Publisher, SEND_TIMEOUT, Unsent};
use crate::subject::{
    RECEIPTS_PREFIX, agency_of_subject, agency_token, receipts_subject, unpublishable,
};

/// The longest [`ReceiptOptions`]' waits are taken to be (a year): a longer one, up to
/// `Duration::MAX`, means "never" just the same.
pub const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long to wait for receipts, and how much to keep waiting for at once.
#[derive(Debug, Clone)]
pub struct ReceiptOptions {
    /// Re-publish an event that has no receipt this long after its PubAck, or after it was sent
    /// when it awaited none (default 30 s).
    pub receipt_timeout: Duration,
    /// The timeout doubles at each re-publish, up to this (default 5 min; taken to be
    /// `receipt_timeout` if that is longer). Every wait here counts as at most [`LONGEST_WAIT`].
    pub max_receipt_timeout: Duration,
    /// An event with no receipt this long after it was read (its first publish unless it was
    /// held) is reported as [`Outcome::NoReceipt`] (default 10 min).
    pub give_up_after: Duration,
    /// Events waiting for their receipt at once; reading more input waits when full (default
    /// 10 000).
    pub max_pending: usize,
    /// Events awaiting their PubAck at once (default 256; 1 makes every publish await its PubAck
    /// in turn, which keeps strict order across connection and PubAck failures; see the module
    /// docs).
    pub max_in_flight: usize,
    /// Check every receipt with the log's published key (recommended); without it receipts are
    /// only parsed.
    pub verifier: Option<CheckpointVerifier>,
}

impl ReceiptOptions {
    /// The waits as a run takes them: each at most [`LONGEST_WAIT`] ("never", in effect,
    /// without overflowing the clock), and the doubled receipt timeout never below the first.
    pub fn clamped(mut self) -> ReceiptOptions {
        for wait in [
            &mut self.receipt_timeout,
            &mut self.max_receipt_timeout,
            &mut self.give_up_after,
        ] {
            *wait = (*wait).min(LONGEST_WAIT);
        }
        self.max_receipt_timeout = self.max_receipt_timeout.max(self.receipt_timeout);
        self
    }
}

impl Default for ReceiptOptions {
    fn default() -> Self {
        ReceiptOptions {
            receipt_timeout: Duration::from_secs(30),
            max_receipt_timeout: Duration::from_secs(300),
            give_up_after: Duration::from_secs(600),
            max_pending: 10_000,
            max_in_flight: 256,
            verifier: None,
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Committed by the ledger at `seq` (first time it holds this event).
    Committed {
        seq: u64,
        leaf_hash: Hash,
        receipt: Arc<Receipt>,
    },
    /// The ledger already held this event (same agency, id and content) at `seq`: a re-publish,
    /// or an event published before.
    Duplicate {
        seq: u64,
        leaf_hash: Hash,
        receipt: Arc<Receipt>,
    },
    /// A portal sync body (`dvc.sync.<agency>`), dealt with: the ids of the events it yielded
    /// that the ledger now holds (none when it already held everything the body says), those
    /// refused (with their reasons) and the parts that could not be mapped (`id` = the dossier).
    Synced {
        events: Vec<String>,
        rejected: Vec<ReceiptRejection>,
        /// Events yielded that the receipt left out to stay small.
        more: u64,
        /// Refusals the receipt left out to stay small (REJECTED holds them).
        more_rejected: u64,
        receipt: Arc<Receipt>,
    },
    /// Refused by the ledger (its copy is on REJECTED with the same code, path and reason).
    Rejected {
        code: String,
        path: String,
        reason: String,
        receipt: Arc<Receipt>,
    },
    /// No receipt within `give_up_after`: the ledger may or may not hold it (is `socai serve`
    /// running?). Publishing it again is safe.
    NoReceipt {
        /// What is known of its last publish when it did not get a PubAck: the error, or that
        /// it awaited none (or that its PubAck was still awaited); `None` when nats-server
        /// confirmed storing it.
        last_error: Option<String>,
    },
    /// The stream refused it (permissions, size, ...), or its subject is one no one can
    /// publish to ([`crate::subject::unpublishable`]: never sent): it cannot be in the ledger.
    NotPublished(PublishError),
}

impl Outcome {
    /// The receipt that answered this event, if any.
    pub fn receipt(&self) -> Option<&Arc<Receipt>> {
        match self {
            Outcome::Committed { receipt, .. }
            | Outcome::Duplicate { receipt, .. }
            | Outcome::Synced { receipt, .. }
            | Outcome::Rejected { receipt, .. } => Some(receipt),
            _ => None,
        }
    }
}

/// One event's result, with the caller's tag (e.g. its line number).
#[derive(Debug, Clone)]
pub struct EventOutcome<T> {
    pub tag: T,
    /// The agency of the subject it was published on (empty if the subject names none).
    pub agency: String,
    pub id: String,
    /// How many times it was sent (1 = once; 0 = never: held until given up on, answered by a
    /// receipt to another publisher's copy, or its subject one no one can publish to).
    pub publishes: u32,
    pub outcome: Outcome,
}

/// What [`ReceiptPublisher::publish_all`] tells its caller as it happens.
#[derive(Debug)]
pub enum Report<T> {
    /// A receipt accepted (parsed, for the agency of its subject, verified when a key was
    /// given), with its bytes as received. It may answer none of this run's events (another
    /// publisher of the same agency).
    Receipt { receipt: Arc<Receipt>, raw: Bytes },
    /// A message on a receipts subject that was not accepted, and why; it answers nothing.
    BadReceipt {
        subject: String,
        error: String,
        raw: Bytes,
    },
    /// An event was published again, `after` its last publish, for `reason`.
    Republished {
        agency: String,
        id: String,
        publishes: u32,
        after: Duration,
        reason: Again,
    },
    /// An event is done.
    Event(EventOutcome<T>),
}

/// Why an event is published again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// No receipt came within the receipt timeout.
    NoReceipt,
    /// It was sent without awaiting a PubAck and the server has since refused a publish to its
    /// subject: published again at once with the same msg-id, awaiting the PubAck that says
    /// whether it was stored (a duplicate if it was).
    Refused,
    /// It went out on a connection that has since been dropped and made again, and no PubAck
    /// said it was stored (a plain publish, or one whose PubAck was still awaited): it may have
    /// been lost in the dropped connection's buffer. Sent again first, merged in input order
    /// with the held events, with the same msg-id (a duplicate if it was stored).
    Reconnected,
}

impl std::fmt::Display for Again {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Again::NoReceipt => "no receipt came in time",
            Again::Refused => "the server refused a publish to its subject: checking with a PubAck",
            Again::Reconnected => {
                "the connection it went out on was dropped before nats-server confirmed it"
            }
        })
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub committed: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Sync bodies answered (their events and refused parts are in their outcomes).
    pub synced: u64,
    pub no_receipt: u64,
    pub not_published: u64,
    /// Receipts accepted (including ones that answered none of this run's events).
    pub receipts: u64,
    pub bad_receipts: u64,
    pub republished: u64,
    /// Times an event was held back because the connection was down or did not take a send
    /// (see the module docs); an event can be held more than once.
    pub held: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptsError {
    #[error(
        "the server refused the subscription to {subject}: {server_error}; this user may not receive the ledger's receipts (deploy/nats/users.conf: the account must import {subject} from LEDGER and the user may subscribe to it); events published so far may be on EVENTS: publishing them again is safe (the ledger answers a repeat with its original seq)"
    )]
    SubscriptionRefused {
        subject: String,
        server_error: String,
    },
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("flushing the subscription to {subject} to nats-server: {source}")]
    Flush {
        subject: String,
        #[source]
        source: async_nats::client::FlushError,
    },
}

/// A [`Publisher`] that waits for the ledger's receipts. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptPublisher {
    publisher: Publisher,
    options: ReceiptOptions,
}

/// Of each agency's first publishes in a run, the 1st, the 65th, ... (one in this many) await
/// their PubAck, as every re-publish does: what the stream refuses (size, limits, no stream) for
/// an agency is noticed within this many of its events; other events learn of it only when
/// re-published after the receipt timeout.
pub const ACK_EVERY: u64 = 64;

/// Plain publishes (awaiting no PubAck) run at most this many sends past the oldest publish
/// whose PubAck is awaited. nats-server stores a connection's messages to a stream in order, so
/// a PubAck says every earlier message reached the stream: this bounds what this run can have
/// in nats-server's stream ingest queue, which drops messages (silently for a plain publish)
/// past its cap (10,000 or 100,000 messages by version, 128 MiB).
pub const PACE: u64 = 16 * ACK_EVERY;

/// Which first publishes await their PubAck: counted per agency, so no mix of agencies in the
/// input can leave one agency unsampled, and never more than `ACK_EVERY - 1` plain publishes in
/// a row, so many agencies with few events each still pace the run ([`PACE`]).
#[derive(Debug, Default)]
struct AckSampler {
    /// First publishes so far, by agency token.
    sent: FastMap<String, u64>,
    /// Plain publishes since the last one awaiting its PubAck.
    plain_in_a_row: u64,
}

impl AckSampler {
    /// Whether the next first publish for agency `token` awaits its PubAck: its agency's 1st,
    /// then one in [`ACK_EVERY`] of its agency's, and the [`ACK_EVERY`]th in a row of any;
    /// `forced` when it awaits one anyway (`max_in_flight = 1`: strict order).
    /// Nothing is counted until [`AckSampler::sent`]: a send the connection did not take
    /// leaves the sample as it was.
    fn awaits_ack(&self, token: &str, forced: bool) -> bool {
        let n = self.sent.get(token).copied().unwrap_or(0);
        forced || n % ACK_EVERY == 0 || self.plain_in_a_row + 1 >= ACK_EVERY
    }

    /// A first publish for agency `token` went out (`sampled`: awaiting its PubAck).
    fn sent(&mut self, token: &str, sampled: bool) {
        match self.sent.get_mut(token) {
            Some(n) => *n += 1,
            None => {
                self.sent.insert(token.to_owned(), 1);
            }
        }
        self.plain_in_a_row = if sampled { 0 } else { self.plain_in_a_row + 1 };
    }
}

/// One event waiting for its receipt.
struct Pending<T> {
    tag: T,
    msg: Outgoing,
    token: String,
    agency: String,
    give_up_at: Instant,
    publishes: u32,
    /// When it was last sent (read, until it is).
    sent_at: Instant,
    /// The msg-id round of its last send (see [`Publisher::send`]).
    round: u32,
    /// How long to wait for a receipt after its next PubAck (or plain send); doubles at each
    /// re-publish for no receipt.
    timeout: Duration,
    /// When it is published again, and why (unless that is past `give_up_at`).
    republish_at: Option<(Instant, Again)>,
    /// Its PubAck (or the failure to get one) is awaited.
    awaiting_ack: bool,
    /// Drops that wait.
    ack: Option<AbortHandle>,
    /// Its last publish was a plain one, awaiting no PubAck (see [`ACK_EVERY`]).
    without_ack: bool,
    /// A copy may be on EVENTS though nats-server never confirmed one: it was sent without a
    /// PubAck, or its PubAck never came.
    maybe_stored: bool,
    /// The client's count of connections made when it was last sent, and that send's number:
    /// a connection made since means the send may have been lost with the dropped one
    /// ([`Again::Reconnected`]).
    epoch: u64,
    send: u64,
    /// To be sent again for [`Again::Reconnected`] (reported once it is), awaiting its PubAck
    /// again if its last send did.
    resend: bool,
    resend_ack: bool,
    last_error: Option<String>,
}

/// The maps touched for every event (by slot, by id, by agency token): foldhash, seeded at random
/// per process, instead of SipHash (about 1 % of the socai process in `socai bench ingest`'s
/// profile).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
/// The slots waiting for one event id, of any agency (each slot's `token` says which): one flat
/// map, so an agency's first or last pending event allocates no map of its own; almost always
/// one slot, kept inline.
type ById = FastMap<String, SmallVec<[u64; 1]>>;
/// A PubAck awaited: (slot, send number, its result; `None` when its event ended first and the
/// wait, with its retries, was dropped).
type AckFuture = BoxFuture<'static, (u64, u64, Option<Result<Published, PublishError>>)>;

/// The run's state: pending events by slot, by id, by re-publish time and by give-up time.
struct Run<T> {
    options: ReceiptOptions,
    /// Checks receipts, each commit's signatures once.
    verifier: Option<ReceiptVerifier>,
    slots: FastMap<u64, Pending<T>>,
    by_id: ById,
    republish: BTreeSet<(Instant, u64)>,
    give_ups: BTreeSet<(Instant, u64)>,
    next_slot: u64,
    summary: Summary,
}

impl ReceiptPublisher {
    /// Waits longer than [`LONGEST_WAIT`] count as that (see [`ReceiptOptions::clamped`]).
    pub fn new(publisher: Publisher, options: ReceiptOptions) -> ReceiptPublisher {
        ReceiptPublisher {
            publisher,
            options: options.clamped(),
        }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn options(&self) -> &ReceiptOptions {
        &self.options
    }

    /// Publishes one event and waits for its receipt (or gives up). For many events use
    /// [`ReceiptPublisher::publish_all`]: it subscribes once per agency and keeps many waiting.
    pub async fn publish(&self, event: &Event) -> Result<EventOutcome<()>, ReceiptsError> {
        let mut out = None;
        self.publish_all([(Outgoing::event(event), ())], |report| {
            if let Report::Event(e) = report {
                out = Some(e);
            }
        })
        .await?;
        Ok(out.expect("every event ends with an outcome"))
    }

    /// Publishes `messages` (each with a tag the caller gets back in its [`EventOutcome`]) and
    /// waits until every one is answered by a receipt, refused, or given up on; `report` hears
    /// about every receipt and every event's end as they happen (see the module docs). Input is
    /// read only as fast as the bounds allow. Fails only when receipts cannot be received at all
    /// (a subscription the server refuses).
    pub async fn publish_all<I, T, F>(
        &self,
        messages: I,
        mut report: F,
    ) -> Result<Summary, ReceiptsError>
    where
        I: IntoIterator<Item = (Outgoing, T)>,
        F: FnMut(Report<T>),
    {
        let errors = self.publisher.server_errors().clone();
        // Server errors up to this mark were dealt with (or predate the run).
        let mut errors_seen = errors.count();
        let client = self.publisher.client();
        let stats = client.statistics();
        let epoch = stats.connects.load(std::sync::atomic::Ordering::Relaxed);
        let mut wire = Wire {
            client,
            stats,
            epoch,
            confirmed: HashMap::new(),
            run_mark: errors_seen,
            receipts: SelectAll::new(),
            subscribed: FastSet::default(),
            acks: FuturesUnordered::new(),
            sampler: AckSampler::default(),
            sends: 0,
            awaited: BTreeSet::new(),
            held: VecDeque::new(),
            suspect: false,
            probe: None,
            max_in_flight: self.options.max_in_flight.max(1),
        };
        let mut input = messages.into_iter();
        let mut input_done = false;
        let mut run = Run::new(self.options.clone());
        let max_pending = self.options.max_pending.max(1);
        let mut refusal_check = tokio::time::interval(Duration::from_secs(1));
        refusal_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // One pass sends for at most PASS_LIMIT, so sends that each wait on a stalled
            // connection never keep receipts, give-ups and refusal checks waiting long.
            let pass = Instant::now();
            let mut cut_short = false;
            // Give up on what waited too long (its PubAck awaited or not, or held), before
            // anything is sent: a held event past its time is never sent.
            let now = Instant::now();
            let mut gave_up = false;
            while let Some(&(at, slot)) = run.give_ups.first() {
                if at > now {
                    break;
                }
                let Some(p) = run.remove(slot) else {
                    run.give_ups.remove(&(at, slot));
                    continue;
                };
                gave_up = true;
                run.summary.no_receipt += 1;
                let last_error = p.last_error.or_else(|| {
                    if p.awaiting_ack {
                        Some("no PubAck yet: is nats-server reachable, and does the EVENTS stream exist (`socai serve` creates it)?".to_owned())
                    } else if p.without_ack {
                        Some("its last publish awaited no PubAck: nats-server never confirmed storing it".to_owned())
                    } else {
                        None
                    }
                });
                report(Report::Event(EventOutcome {
                    tag: p.tag,
                    agency: p.agency,
                    id: p.msg.id,
                    publishes: p.publishes,
                    outcome: Outcome::NoReceipt { last_error },
                }));
            }
            if gave_up && !wire.held.is_empty() {
                wire.held.retain(|slot| run.slots.contains_key(slot));
            }
            // A connection made since some sends went out: what nats-server did not confirm of
            // them may have been lost in the dropped connection's buffer. They go first again,
            // merged with the held events in input order (slots are numbered in input order).
            let epoch = wire.connects();
            if epoch > wire.epoch {
                wire.epoch = epoch;
                let again = run.unconfirmed_before(epoch, &wire.confirmed);
                if !again.is_empty() {
                    let mut held: Vec<u64> = wire.held.drain(..).chain(again).collect();
                    held.sort_unstable();
                    held.dedup();
                    wire.held = held.into();
                }
            }
            // Held events first, in input order, as soon as the connection allows.
            while wire.can_send() && wire.window_open() && !wire.held.is_empty() {
                if pass.elapsed() >= PASS_LIMIT || wire.reconnected() {
                    cut_short = true;
                    break;
                }
                let Some(slot) = wire.held.pop_front() else {
                    break;
                };
                if run.slots.contains_key(&slot) {
                    self.dispatch(&mut wire, &mut run, slot, &mut report)
                        .await?;
                }
            }
            // Then new input: held too, behind the others, while anything is held.
            while !input_done && run.slots.len() < max_pending {
                let holding = !wire.can_send() || !wire.held.is_empty();
                if !holding && !wire.window_open() {
                    break;
                }
                if pass.elapsed() >= PASS_LIMIT || wire.reconnected() {
                    cut_short = true;
                    break;
                }
                let Some((msg, tag)) = input.next() else {
                    input_done = true;
                    break;
                };
                // A subject no one can publish to (nor subscribe to its agency's receipts) ends
                // its event here, not the run.
                let agency = match (agency_of_subject(&msg.subject), unpublishable(&msg.subject)) {
                    (Some(agency), None) => agency,
                    (agency, problem) => {
                        let reason = problem.unwrap_or_else(|| {
                            "not an event subject (dvc.events.<agency>.<type>) or a sync subject (dvc.sync.<agency>): no receipt could name it".to_owned()
                        });
                        let error = PublishError::Refused {
                            id: msg.id.clone(),
                            subject: msg.subject.clone(),
                            reason,
                        };
                        run.summary.not_published += 1;
                        report(Report::Event(EventOutcome {
                            tag,
                            agency: agency.unwrap_or_default(),
                            id: msg.id,
                            publishes: 0,
                            outcome: Outcome::NotPublished(error),
                        }));
                        continue;
                    }
                };
                let token = agency_token(&agency);
                let slot = run.add(tag, msg, token, agency);
                // Looked at again: reading input may have waited (an iterator that blocks).
                if !wire.can_send() || !wire.held.is_empty() || !wire.window_open() {
                    // Sending now could only fill the client's queue, pass what is held, or
                    // overfill the window: it goes first once it can.
                    let why = if wire.can_send() {
                        "not sent: waiting for PubAcks (is nats-server slow to answer?)"
                    } else {
                        NOT_SENT
                    };
                    run.hold(slot, why.to_owned());
                    wire.held.push_back(slot);
                } else {
                    self.dispatch(&mut wire, &mut run, slot, &mut report)
                        .await?;
                }
            }
            if input_done && run.slots.is_empty() {
                break;
            }
            // Re-publish what is due while the window allows.
            let now = Instant::now();
            while wire.acks.len() < wire.max_in_flight && wire.can_send() {
                if pass.elapsed() >= PASS_LIMIT || wire.reconnected() {
                    cut_short = true;
                    break;
                }
                let Some(&(at, slot)) = run.republish.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                let Some(p) = run.slots.get(&slot) else {
                    run.republish.remove(&(at, slot));
                    continue;
                };
                let Some((_, reason)) = p.republish_at else {
                    run.republish.remove(&(at, slot));
                    continue;
                };
                let round = match reason {
                    // Its own msg-id again: if the first copy was stored after all, JetStream
                    // answers it as a duplicate.
                    // (Reconnected is never scheduled: those go through the held events.)
                    Again::Refused | Again::Reconnected => p.round,
                    // A msg-id of its own: stored again even inside the duplicate window (the
                    // receipt may be what was lost).
                    Again::NoReceipt => p.round + 1,
                };
                let msg = p.msg.clone();
                let epoch = wire.connects();
                let (ack, abort) = match self.send(slot, wire.sends + 1, msg, round).await {
                    Ok(sent) => sent,
                    Err(why) => {
                        // Not taken: it stays due; nothing is sent until a flush goes through.
                        if let Some(p) = run.slots.get_mut(&slot) {
                            p.last_error = Some(why);
                        }
                        wire.suspect = true;
                        break;
                    }
                };
                wire.sends += 1;
                wire.awaited.insert(wire.sends);
                wire.acks.push(ack);
                run.republish.remove(&(at, slot));
                run.awaiting(slot, abort);
                let p = run.slots.get_mut(&slot).expect("present above");
                p.republish_at = None;
                p.awaiting_ack = true;
                p.without_ack = false;
                p.epoch = epoch;
                p.send = wire.sends;
                p.resend = false;
                let sent_at = Instant::now();
                let after = sent_at.saturating_duration_since(p.sent_at);
                p.sent_at = sent_at;
                p.publishes += 1;
                p.round = round;
                if reason == Again::NoReceipt {
                    p.timeout = (p.timeout * 2).min(run.options.max_receipt_timeout);
                }
                run.summary.republished += 1;
                report(Report::Republished {
                    agency: p.agency.clone(),
                    id: p.msg.id.clone(),
                    publishes: p.publishes,
                    after,
                    reason,
                });
                tracing::debug!(id = %p.msg.id, agency = %p.agency, publishes = p.publishes, %reason, "publishing again");
            }
            // A connection that did not take a send is trusted again once a flush goes through
            // (the client writes to its socket again).
            if wire.suspect && wire.probe.is_none() && connected(&wire.client) {
                let client = wire.client.clone();
                wire.probe = Some(Box::pin(async move {
                    matches!(
                        tokio::time::timeout(SEND_TIMEOUT, client.flush()).await,
                        Ok(Ok(()))
                    )
                }));
            }
            // Wake for the next give-up, and for the next re-publish when the window has room
            // (when it is full, the next PubAck wakes the loop); at once when the pass was cut
            // short; soon, to look again, while nothing can be sent.
            let can_send = wire.can_send();
            let window_full = wire.acks.len() >= wire.max_in_flight;
            let next_give_up = run.give_ups.first().map(|&(at, _)| at);
            let next_republish = if cut_short {
                Some(now)
            } else if can_send {
                run.republish
                    .first()
                    .map(|&(at, _)| at)
                    .filter(|_| !window_full)
            } else {
                Some(Instant::now() + RECONNECT_CHECK)
            };
            let next_deadline = match (next_give_up, next_republish) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let awaiting_acks = !wire.acks.is_empty();
            let probing = wire.probe.is_some();
            tokio::select! {
                Some(message) = wire.receipts.next() => {
                    run.receipt(message, &mut report);
                }
                Some((slot, send, result)) = wire.acks.next(), if awaiting_acks => {
                    wire.awaited.remove(&send);
                    // Only while no newer connection exists: a send still in async-nats's queue
                    // at a drop goes out on the next one, and proves nothing of the old one.
                    if let Some(Ok(Published { attempts: 1, .. })) = &result
                        && let Some(p) = run.slots.get(&slot)
                        && p.send == send
                        && wire.connects() == p.epoch
                    {
                        let last = wire.confirmed.entry(p.epoch).or_default();
                        *last = (*last).max(send);
                    }
                    if let Some(result) = result {
                        let gave_up = matches!(result, Err(PublishError::GaveUp { .. }));
                        run.acked(slot, result, &mut report);
                        // Strict order: a first publish that got no PubAck goes again before
                        // anything after it (same msg-id: a stored copy is a duplicate).
                        if gave_up && wire.max_in_flight == 1 && run.first_publish(slot) {
                            run.requeue(slot);
                            wire.held.push_front(slot);
                        }
                    }
                }
                ok = async { wire.probe.as_mut().expect("probing").await }, if probing => {
                    wire.probe = None;
                    if ok {
                        wire.suspect = false;
                    }
                }
                () = sleep_until(next_deadline), if next_deadline.is_some() => {}
                _ = refusal_check.tick() => {
                    if let Some((subject, server_error)) = self.refused(&wire.subscribed, wire.run_mark) {
                        return Err(ReceiptsError::SubscriptionRefused { subject, server_error });
                    }
                    // Only errors new since the last check: an old one was acted on already.
                    let mark = errors.count();
                    run.republish_refused(&errors.publishes_refused_since(errors_seen), Instant::now());
                    errors_seen = mark;
                }
            }
        }
        Ok(run.summary)
    }

    /// Sends held or new `slot` for the first time: subscribes to its agency's receipts first
    /// if this run has not yet, then awaits its PubAck if sampled ([`AckSampler`]) or sends it
    /// as a plain publish. What the connection does not take goes back to the front of the held
    /// events, and the connection is suspect until a flush goes through.
    async fn dispatch<T>(
        &self,
        wire: &mut Wire,
        run: &mut Run<T>,
        slot: u64,
        report: &mut impl FnMut(Report<T>),
    ) -> Result<(), ReceiptsError> {
        let Some(p) = run.slots.get_mut(&slot) else {
            return Ok(());
        };
        let (msg, token, resend_ack) = (p.msg.clone(), p.token.clone(), p.resend_ack);
        if !wire.subscribed.contains(&token) {
            let agency = p.agency.clone();
            match self.subscribe(wire, &agency).await? {
                Some(subscriber) => {
                    wire.subscribed.insert(token.clone());
                    wire.receipts.push(subscriber);
                }
                None => {
                    run.hold(slot, NOT_SENT.to_owned());
                    wire.put_back(slot);
                    return Ok(());
                }
            }
        }
        // Counted (sample, pacing, publishes) only once it went out.
        let sampled = resend_ack || wire.sampler.awaits_ack(&token, wire.max_in_flight == 1);
        let epoch = wire.connects();
        if sampled {
            match self.send(slot, wire.sends + 1, msg, 0).await {
                Ok((ack, abort)) => {
                    wire.sampler.sent(&token, true);
                    wire.sends += 1;
                    wire.awaited.insert(wire.sends);
                    run.resent(slot, report);
                    run.sending(slot, epoch, wire.sends);
                    run.awaiting(slot, abort);
                    wire.acks.push(ack);
                }
                Err(why) => {
                    run.hold(slot, why);
                    wire.put_back(slot);
                }
            }
        } else {
            let sent = self.publisher.send_unacked(&wire.client, &msg, 0).await;
            if sent.is_ok() {
                wire.sampler.sent(&token, false);
                wire.sends += 1;
                run.resent(slot, report);
                run.sending(slot, epoch, wire.sends);
            }
            if run.sent_unacked(slot, sent, report) {
                wire.put_back(slot);
            }
        }
        Ok(())
    }

    /// Subscribes to one agency's receipts and makes sure the server has the subscription
    /// before anything is published for it. `None` when the connection did not take the
    /// subscription, or did not confirm it, within [`SEND_TIMEOUT`] (a subscription it took
    /// stays: the connection re-subscribes when it reconnects).
    async fn subscribe(
        &self,
        wire: &mut Wire,
        agency: &str,
    ) -> Result<Option<async_nats::Subscriber>, ReceiptsError> {
        let subject = receipts_subject(agency);
        let client = &wire.client;
        let subscriber =
            match tokio::time::timeout(SEND_TIMEOUT, client.subscribe(subject.clone())).await {
                Ok(subscribed) => subscribed.map_err(|source| ReceiptsError::Subscribe {
                    subject: subject.clone(),
                    source,
                })?,
                Err(_) => return Ok(None),
            };
        match tokio::time::timeout(SEND_TIMEOUT, client.flush()).await {
            Ok(flushed) => flushed.map_err(|source| ReceiptsError::Flush {
                subject: subject.clone(),
                source,
            })?,
            Err(_) => {
                // Kept, so this agency is not subscribed twice; its first event waits until
                // a flush goes through.
                wire.subscribed.insert(agency_token(agency));
                wire.receipts.push(subscriber);
                return Ok(None);
            }
        }
        // The flush only shows the SUB reached the socket (async-nats 0.51 sends no PING for it);
        // nats-server handles it before any later publish on this connection all the same, so
        // no receipt is missed. A refusal comes back as an error, usually a moment later: the
        // check every second in `publish_all` finds it.
        let token = agency_token(agency);
        if let Some((subject, server_error)) = self.refused(&HashSet::from([token]), wire.run_mark)
        {
            return Err(ReceiptsError::SubscriptionRefused {
                subject,
                server_error,
            });
        }
        tracing::debug!(%subject, "subscribed to receipts");
        Ok(Some(subscriber))
    }

    /// A server error since `mark` refusing the subscription to one of these agencies' receipts.
    fn refused<S: BuildHasher>(
        &self,
        tokens: &HashSet<String, S>,
        mark: u64,
    ) -> Option<(String, String)> {
        let errors = self
            .publisher
            .server_errors()
            .subscriptions_refused_since(mark);
        tokens.iter().find_map(|token| {
            let subject = format!("{RECEIPTS_PREFIX}.{token}");
            let needle = format!("Subscription to \"{subject}\"");
            errors
                .iter()
                .rev()
                .find(|e| e.contains(&needle))
                .map(|e| (subject, e.clone()))
        })
    }

    /// Sends `msg` now (in order) and returns the future of its PubAck, retried as
    /// [`Publisher`] does; `round` 0 is the first publish, each re-publish after no receipt came
    /// has the next (a msg-id of its own, see [`Publisher::send`]). `send` numbers this send in
    /// the run, for pacing.
    async fn send(
        &self,
        slot: u64,
        send: u64,
        msg: Outgoing,
        round: u32,
    ) -> Result<(AckFuture, AbortHandle), String> {
        let mark = self.publisher.server_errors().count();
        let sent = self.publisher.send(&msg, round).await;
        if let Err(error) = &sent
            && error.kind() == async_nats::jetstream::context::PublishErrorKind::TimedOut
        {
            // The connection did not take it (its queue is full): nothing was sent.
            return Err(format!("{NOT_SENT} ({error})"));
        }
        let publisher = self.publisher.clone();
        let settled = async move {
            let first = match sent {
                Ok(ack) => ack.into_future().await,
                Err(error) => Err(error),
            };
            publisher.settle(msg, first, round, mark).await
        };
        let (abort, registration) = AbortHandle::new_pair();
        let ack =
            Box::pin(async move { (slot, send, Abortable::new(settled, registration).await.ok()) });
        Ok((ack, abort))
    }
}

/// How often a run looks whether a lost connection is back.
const RECONNECT_CHECK: Duration = Duration::from_millis(100);

/// The longest one pass of [`ReceiptPublisher::publish_all`]'s loop sends before it looks at
/// receipts, PubAcks, give-ups and refusals again.
const PASS_LIMIT: Duration = Duration::from_secs(1);

const NOT_SENT: &str = "not sent: the connection to nats-server was down or did not take it (is nats-server up and reachable?)";

/// What a run of [`ReceiptPublisher::publish_all`] sends with: the connection, the receipt
/// subscriptions, the PubAcks awaited, pacing, and the events held back.
struct Wire {
    client: async_nats::Client,
    /// The server's error count when the run began: older refusals are not this run's.
    run_mark: u64,
    receipts: SelectAll<async_nats::Subscriber>,
    /// Agency tokens subscribed to.
    subscribed: FastSet<String>,
    acks: FuturesUnordered<AckFuture>,
    sampler: AckSampler,
    /// Sends so far (plain or awaiting a PubAck), and the send numbers of the PubAcks awaited.
    sends: u64,
    awaited: BTreeSet<u64>,
    /// Slots read but not sent yet, in input order: the connection was down, or did not take
    /// a send; and slots to send again after a reconnect ([`Again::Reconnected`]). Sent, in
    /// this order, before any new input.
    held: VecDeque<u64>,
    /// A send or subscription timed out while the connection claimed to be up (e.g. a peer
    /// that stopped answering): nothing is sent until a flush (`probe`) goes through.
    suspect: bool,
    probe: Option<BoxFuture<'static, bool>>,
    max_in_flight: usize,
    /// The client's statistics (its count of connections made).
    stats: Arc<async_nats::Statistics>,
    /// That count when the run last looked.
    epoch: u64,
    /// By connection (the client's count of connects when sent), the last send a PubAck
    /// answered at its first attempt.
    confirmed: HashMap<u64, u64>,
}

impl Wire {
    /// `slot`, held because the connection did not take it, goes first again; nothing is sent
    /// until a flush goes through.
    fn put_back(&mut self, slot: u64) {
        self.suspect = true;
        self.held.push_front(slot);
    }

    fn can_send(&self) -> bool {
        !self.suspect && connected(&self.client)
    }

    /// Whether a connection was made since this pass began: what the dropped one may have
    /// lost goes before anything more is sent (the pass ends; the next begins with it).
    fn reconnected(&self) -> bool {
        self.connects() != self.epoch
    }

    /// Connections the client has made so far (the first one included).
    fn connects(&self) -> u64 {
        self.stats
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a first publish may go now: a PubAck slot is free, and plain publishes are at
    /// most [`PACE`] sends past the oldest PubAck awaited.
    fn window_open(&self) -> bool {
        self.acks.len() < self.max_in_flight
            && self
                .awaited
                .first()
                .is_none_or(|&oldest| self.sends - oldest < PACE)
    }
}

fn connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<T> Run<T> {
    fn new(options: ReceiptOptions) -> Run<T> {
        let options = options.clamped();
        Run {
            verifier: options.verifier.clone().map(ReceiptVerifier::new),
            options,
            slots: FastMap::default(),
            by_id: ById::default(),
            republish: BTreeSet::new(),
            give_ups: BTreeSet::new(),
            next_slot: 0,
            summary: Summary::default(),
        }
    }

    fn add(&mut self, tag: T, msg: Outgoing, token: String, agency: String) -> u64 {
        let slot = self.next_slot;
        self.next_slot += 1;
        match self.by_id.get_mut(msg.id.as_str()) {
            Some(slots) => slots.push(slot),
            None => {
                self.by_id.insert(msg.id.clone(), smallvec![slot]);
            }
        }
        let sent_at = Instant::now();
        let give_up_at = sent_at + self.options.give_up_after;
        self.give_ups.insert((give_up_at, slot));
        self.slots.insert(
            slot,
            Pending {
                tag,
                msg,
                token,
                agency,
                give_up_at,
                publishes: 0,
                sent_at,
                round: 0,
                timeout: self.options.receipt_timeout,
                republish_at: None,
                awaiting_ack: true,
                ack: None,
                without_ack: false,
                maybe_stored: false,
                epoch: 0,
                send: 0,
                resend: false,
                resend_ack: false,
                last_error: None,
            },
        );
        slot
    }

    fn remove(&mut self, slot: u64) -> Option<Pending<T>> {
        let p = self.detach(slot)?;
        if let Some(slots) = self.by_id.get_mut(p.msg.id.as_str()) {
            slots.retain(|s| *s != slot);
            if slots.is_empty() {
                self.by_id.remove(p.msg.id.as_str());
            }
        }
        Some(p)
    }

    /// [`Run::remove`] but for `by_id`, which the caller has dealt with.
    fn detach(&mut self, slot: u64) -> Option<Pending<T>> {
        let mut p = self.slots.remove(&slot)?;
        // Its PubAck (and the retries to get one) no longer matter.
        if let Some(ack) = p.ack.take() {
            ack.abort();
        }
        if let Some((at, _)) = p.republish_at {
            self.republish.remove(&(at, slot));
        }
        self.give_ups.remove(&(p.give_up_at, slot));
        Some(p)
    }

    /// Publishes `slot` again at `at`, for `reason` (unless it is given up on first).
    fn republish_at(&mut self, slot: u64, at: Instant, reason: Again) {
        if let Some(p) = self.slots.get_mut(&slot) {
            if let Some((old, _)) = p.republish_at.take() {
                self.republish.remove(&(old, slot));
            }
            if at < p.give_up_at {
                p.republish_at = Some((at, reason));
                self.republish.insert((at, slot));
            }
        }
    }

    /// A PubAck (or a failure to get one) for `slot`.
    fn acked(
        &mut self,
        slot: u64,
        result: Result<Published, PublishError>,
        report: &mut impl FnMut(Report<T>),
    ) {
        self.stream_answered(slot, result.map(|_| ()), report);
    }

    /// `slot` was sent as a plain publish awaiting no PubAck (or the client could not send it).
    /// True when it was not sent and is to be held ([`Run::hold`]).
    fn sent_unacked(
        &mut self,
        slot: u64,
        sent: Result<(), Unsent>,
        report: &mut impl FnMut(Report<T>),
    ) -> bool {
        match sent {
            Ok(()) => self.stream_answered(slot, Ok(()), report),
            Err(Unsent::Refused(reason)) => {
                let Some(p) = self.slots.get(&slot) else {
                    return false;
                };
                let error = PublishError::Refused {
                    id: p.msg.id.clone(),
                    subject: p.msg.subject.clone(),
                    reason,
                };
                self.stream_answered(slot, Err(error), report);
            }
            Err(Unsent::NotSent(reason)) => {
                self.hold(slot, reason);
                return true;
            }
        }
        if let Some(p) = self.slots.get_mut(&slot) {
            p.without_ack = true;
            p.maybe_stored = true;
        }
        false
    }

    /// `slot` is not sent now (`why`): the caller holds it, to send first when the connection
    /// allows ([`Run::sending`]). Its count of publishes stays as it is.
    fn hold(&mut self, slot: u64, why: String) {
        if let Some(p) = self.slots.get_mut(&slot) {
            self.summary.held += 1;
            p.awaiting_ack = false;
            p.without_ack = false;
            p.last_error = Some(why);
            if let Some((at, _)) = p.republish_at.take() {
                self.republish.remove(&(at, slot));
            }
        }
    }

    /// Whether `slot` is pending and has only been sent with its first msg-id (round 0).
    fn first_publish(&self, slot: u64) -> bool {
        self.slots.get(&slot).is_some_and(|p| p.round == 0)
    }

    /// First publishes that may have been lost with a dropped connection, in input order,
    /// ready to be sent again with the same msg-id ([`Again::Reconnected`]): sent before
    /// connection `epoch` was made, and not confirmed: plain publishes sent after the last send
    /// of their connection a PubAck answered at its first attempt (`confirmed`: nats-server
    /// stores a connection's messages in order, so everything sent before it reached the
    /// stream), or awaiting their PubAck. Left alone: a re-publish (a msg-id of its own; the
    /// publisher retries its PubAck), one whose re-publish is due (it goes with a new msg-id,
    /// which a receipt lost in the outage needs), and one whose refusal is about to be checked.
    /// One whose PubAck was awaited (a sample, or a refusal check) awaits it again.
    fn unconfirmed_before(&mut self, epoch: u64, confirmed: &HashMap<u64, u64>) -> Vec<u64> {
        let now = Instant::now();
        let mut slots: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, p)| {
                p.publishes > 0
                    && p.epoch < epoch
                    && p.round == 0
                    && ((p.without_ack && confirmed.get(&p.epoch).is_none_or(|&c| p.send > c))
                        || p.awaiting_ack)
                    && !p
                        .republish_at
                        .is_some_and(|(at, why)| at <= now || why == Again::Refused)
            })
            .map(|(&slot, _)| slot)
            .collect();
        slots.sort_unstable();
        for &slot in &slots {
            let p = self.slots.get_mut(&slot).expect("listed above");
            // Its PubAck (and the retries to get one) no longer matter: it goes again.
            if let Some(ack) = p.ack.take() {
                ack.abort();
            }
            p.resend_ack = p.awaiting_ack;
            p.awaiting_ack = false;
            p.without_ack = false;
            p.maybe_stored = true;
            p.resend = true;
            p.last_error = Some(
                "not sent again yet: the connection it went out on was dropped before nats-server confirmed it"
                    .to_owned(),
            );
            if let Some((at, _)) = p.republish_at.take() {
                self.republish.remove(&(at, slot));
            }
        }
        slots
    }

    /// `slot` is going out again after a reconnect ([`Run::unconfirmed_before`]): reported and
    /// counted now that it is sent (call before [`Run::sending`]).
    fn resent(&mut self, slot: u64, report: &mut impl FnMut(Report<T>)) {
        let Some(p) = self.slots.get_mut(&slot) else {
            return;
        };
        if !std::mem::take(&mut p.resend) {
            return;
        }
        self.summary.republished += 1;
        report(Report::Republished {
            agency: p.agency.clone(),
            id: p.msg.id.clone(),
            publishes: p.publishes + 1,
            after: Instant::now().saturating_duration_since(p.sent_at),
            reason: Again::Reconnected,
        });
    }

    /// Strict order: `slot`, a first publish whose PubAck never came, goes again (same msg-id)
    /// before anything after it; the caller puts it at the front of the held events. Not
    /// counted as held (it was sent), and its re-publish timer is dropped.
    fn requeue(&mut self, slot: u64) {
        if let Some(p) = self.slots.get_mut(&slot) {
            p.awaiting_ack = false;
            if let Some((at, _)) = p.republish_at.take() {
                self.republish.remove(&(at, slot));
            }
        }
    }

    /// `slot`'s PubAck is awaited; `abort` drops the wait should the event end first.
    fn awaiting(&mut self, slot: u64, abort: AbortHandle) {
        if let Some(p) = self.slots.get_mut(&slot) {
            p.ack = Some(abort);
        }
    }

    /// `slot` is being sent with its first msg-id (for the first time, or again after a
    /// reconnect or a PubAck that never came), as send number `send` on connection `epoch`;
    /// its PubAck is awaited until the stream answers.
    fn sending(&mut self, slot: u64, epoch: u64, send: u64) {
        if let Some(p) = self.slots.get_mut(&slot) {
            p.epoch = epoch;
            p.send = send;
            p.resend_ack = false;
            p.publishes += 1;
            p.sent_at = Instant::now();
            p.awaiting_ack = true;
            p.without_ack = false;
            p.last_error = None;
        }
    }

    /// Publishes again at once, awaiting its PubAck, every event whose last publish awaited none
    /// and went to a subject the server refused this user (`refused`, from its errors since the
    /// last check).
    /// Its PubAck, or the lack of one beside that error ([`Publisher`]'s fail-fast), then says
    /// whether it was stored: such an event neither waits a whole receipt timeout for a receipt
    /// that cannot come, nor is ended on an error that may be older than its publish
    /// (permissions can change when nats-server reloads its configuration).
    fn republish_refused(&mut self, refused: &HashSet<String>, now: Instant) {
        if refused.is_empty() {
            return;
        }
        let due: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, p)| p.without_ack && refused.contains(&p.msg.subject))
            .map(|(&slot, _)| slot)
            .collect();
        for slot in due {
            self.republish_at(slot, now, Again::Refused);
        }
    }

    /// What the stream answered for `slot` (a PubAck, or a plain publish sent): `Ok` stored or
    /// sent, the re-publish timer starts; an error that retrying cannot fix ends the event.
    fn stream_answered(
        &mut self,
        slot: u64,
        result: Result<(), PublishError>,
        report: &mut impl FnMut(Report<T>),
    ) {
        let Some(p) = self.slots.get_mut(&slot) else {
            return; // answered by a receipt already
        };
        p.awaiting_ack = false;
        p.ack = None;
        let timeout = p.timeout;
        match result {
            Ok(()) => p.last_error = None,
            // Retrying cannot help: this copy is not on EVENTS, so no receipt will come for it.
            Err(PublishError::Refused {
                id,
                subject,
                mut reason,
            }) => {
                let p = self.remove(slot).expect("present above");
                if p.maybe_stored {
                    reason.push_str("; an earlier copy, sent without a PubAck (or whose PubAck never came), may still have been stored (e.g. before this user's permissions changed): publishing it again is safe, the ledger answers a stored one as a duplicate");
                }
                let error = PublishError::Refused {
                    id,
                    subject,
                    reason,
                };
                self.summary.not_published += 1;
                report(Report::Event(EventOutcome {
                    tag: p.tag,
                    agency: p.agency,
                    id: p.msg.id,
                    publishes: p.publishes,
                    outcome: Outcome::NotPublished(error),
                }));
                return;
            }
            // No PubAck: it may still have been stored. Wait for a receipt as for a PubAck'ed
            // one, then publish again.
            Err(error) => {
                p.last_error = Some(error.to_string());
                p.maybe_stored = true;
            }
        }
        self.republish_at(slot, Instant::now() + timeout, Again::NoReceipt);
    }

    /// A message on a receipts subject.
    fn receipt(&mut self, message: async_nats::Message, report: &mut impl FnMut(Report<T>)) {
        let subject = message.subject.to_string();
        let raw = message.payload;
        let bad = |error: String| Report::BadReceipt {
            subject: subject.clone(),
            error,
            raw: raw.clone(),
        };
        let token = subject
            .strip_prefix(RECEIPTS_PREFIX)
            .and_then(|t| t.strip_prefix('.'))
            .unwrap_or_default()
            .to_owned();
        let receipt = match Receipt::from_json(&raw) {
            Ok(r) => r,
            Err(e) => {
                self.summary.bad_receipts += 1;
                report(bad(e.to_string()));
                return;
            }
        };
        if agency_token(&receipt.agency) != token {
            self.summary.bad_receipts += 1;
            report(bad(format!(
                "it names agency {:?}, not the agency of its subject",
                receipt.agency
            )));
            return;
        }
        if let Some(verifier) = &self.verifier
            && let Err(e) = verifier.verify(&receipt)
        {
            self.summary.bad_receipts += 1;
            report(bad(format!(
                "it does not verify with the log's key {}: {e}",
                verifier.verifier().vkey()
            )));
            return;
        }
        let receipt = Arc::new(receipt);
        self.summary.receipts += 1;
        report(Report::Receipt {
            receipt: receipt.clone(),
            raw: raw.clone(),
        });
        for event in &receipt.events {
            let Some(leaf_hash) = event.leaf_hash() else {
                continue; // only possible unverified; never taken as an answer
            };
            for (n, p) in self.take(&token, &event.id).into_iter().enumerate() {
                let outcome = if event.duplicate || n > 0 {
                    self.summary.duplicates += 1;
                    Outcome::Duplicate {
                        seq: event.seq,
                        leaf_hash,
                        receipt: receipt.clone(),
                    }
                } else {
                    self.summary.committed += 1;
                    Outcome::Committed {
                        seq: event.seq,
                        leaf_hash,
                        receipt: receipt.clone(),
                    }
                };
                report(Report::Event(EventOutcome {
                    tag: p.tag,
                    agency: p.agency,
                    id: p.msg.id,
                    publishes: p.publishes,
                    outcome,
                }));
            }
        }
        self.synced(&token, &receipt, report);
        for rejection in &receipt.rejected {
            for p in self.take(&token, &rejection.id) {
                self.summary.rejected += 1;
                report(Report::Event(EventOutcome {
                    tag: p.tag,
                    agency: p.agency,
                    id: p.msg.id,
                    publishes: p.publishes,
                    outcome: Outcome::Rejected {
                        code: rejection.code.clone(),
                        path: rejection.path.clone(),
                        reason: rejection.reason.clone(),
                        receipt: receipt.clone(),
                    },
                }));
            }
        }
    }

    /// Answers the sync bodies a receipt names.
    fn synced(&mut self, token: &str, receipt: &Arc<Receipt>, report: &mut impl FnMut(Report<T>)) {
        for sync in &receipt.syncs {
            for p in self.take(token, &sync.id) {
                self.summary.synced += 1;
                let (events, rejected) = (sync.events.clone(), sync.rejected.clone());
                report(Report::Event(EventOutcome {
                    tag: p.tag,
                    agency: p.agency,
                    id: p.msg.id,
                    publishes: p.publishes,
                    outcome: Outcome::Synced {
                        events,
                        rejected,
                        more: sync.more,
                        more_rejected: sync.more_rejected,
                        receipt: receipt.clone(),
                    },
                }));
            }
        }
    }

    /// Every pending event of this agency token and id, oldest first, removed.
    fn take(&mut self, token: &str, id: &str) -> SmallVec<[Pending<T>; 1]> {
        let Some(waiting) = self.by_id.get_mut(id) else {
            return SmallVec::new();
        };
        // Other agencies' events with the same id stay.
        let slots = &self.slots;
        let mut mine = SmallVec::<[u64; 1]>::new();
        waiting.retain(|s| {
            let own = slots.get(s).is_some_and(|p| p.token == token);
            if own {
                mine.push(*s);
            }
            !own
        });
        if waiting.is_empty() {
            self.by_id.remove(id);
        }
        mine.into_iter().filter_map(|s| self.detach(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socai_chain::checkpoint::{Checkpoint, CheckpointSigner};
    use socai_chain::receipt::{RECEIPT_VERSION, ReceiptEvent, ReceiptRejection};

    const H01: &str = "000.00.12.H01";

    fn run(verifier: Option<CheckpointVerifier>) -> Run<usize> {
        Run::new(ReceiptOptions {
            verifier,
            ..ReceiptOptions::default()
        })
    }

    fn add(run: &mut Run<usize>, agency: &str, id: &str, tag: usize) -> u64 {
        let msg = Outgoing {
            subject: crate::subject::event_subject(agency, "dossier.submitted"),
            id: id.into(),
            payload: Bytes::from_static(b"{}"),
        };
        run.add(tag, msg, agency_token(agency), agency.into())
    }

    fn signed(
        signer: &CheckpointSigner,
        agency: &str,
        events: &[(&str, u64, bool)],
        rejected: &[&str],
    ) -> Receipt {
        let head = signer
            .sign(&Checkpoint {
                origin: signer.name().into(),
                size: 100,
                root: Hash([3; 32]),
            })
            .unwrap();
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            agency: agency.into(),
            checkpoint: head.note,
            events: events
                .iter()
                .map(|&(id, seq, duplicate)| ReceiptEvent {
                    id: id.into(),
                    seq,
                    leaf_hash: hex_hash(seq),
                    duplicate,
                })
                .collect(),
            rejected: rejected
                .iter()
                .map(|id| ReceiptRejection {
                    id: (*id).into(),
                    code: "schema_violation".into(),
                    path: "/data/channel".into(),
                    reason: "not one of the allowed values".into(),
                })
                .collect(),
            syncs: Vec::new(),
            batch: Default::default(),
            signature: String::new(),
        };
        r.sign(signer).unwrap();
        r
    }

    fn hex_hash(seq: u64) -> String {
        format!("{:064x}", seq + 1)
    }

    fn message(subject_agency: &str, payload: Vec<u8>) -> async_nats::Message {
        async_nats::Message {
            subject: receipts_subject(subject_agency).into(),
            reply: None,
            payload: payload.into(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        }
    }

    fn deliver(run: &mut Run<usize>, m: async_nats::Message) -> Vec<Report<usize>> {
        let mut out = Vec::new();
        run.receipt(m, &mut |r| out.push(r));
        out
    }

    fn events(reports: &[Report<usize>]) -> Vec<(usize, String)> {
        reports
            .iter()
            .filter_map(|r| match r {
                Report::Event(e) => Some((
                    e.tag,
                    match &e.outcome {
                        Outcome::Committed { seq, .. } => format!("committed {seq}"),
                        Outcome::Duplicate { seq, .. } => format!("duplicate {seq}"),
                        Outcome::Rejected { code, .. } => format!("rejected {code}"),
                        other => format!("{other:?}"),
                    },
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_receipt_answers_its_agencys_events_by_id() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        let mut run = run(Some(CheckpointVerifier::from_vkey(&vkey).unwrap()));
        add(&mut run, H01, "a", 0);
        add(&mut run, H01, "b", 1);
        add(&mut run, H01, "a", 2); // the same id again: one answer ends both
        add(&mut run, H01, "c", 3);
        add(&mut run, "000.00.12.H02", "a", 4); // another agency's "a"
        let r = signed(
            &signer,
            H01,
            &[("a", 7, false), ("b", 2, true), ("x", 9, false)],
            &["c"],
        );
        let reports = deliver(&mut run, message(H01, r.to_json()));
        assert!(matches!(reports[0], Report::Receipt { .. }));
        assert_eq!(
            events(&reports),
            vec![
                (0, "committed 7".into()),
                (2, "duplicate 7".into()),
                (1, "duplicate 2".into()),
                (3, "rejected schema_violation".into()),
            ]
        );
        // Only H02's "a" waits; "x" was not this run's.
        assert_eq!(run.slots.len(), 1);
        assert_eq!(run.slots.values().next().unwrap().tag, 4);
        let (&slot, _) = run.slots.iter().next().unwrap();
        let waiting = ById::from_iter([("a".to_owned(), smallvec![slot])]);
        assert_eq!(run.by_id, waiting);
        assert_eq!(run.slots[&slot].token, agency_token("000.00.12.H02"));
        assert_eq!(
            (
                run.summary.committed,
                run.summary.duplicates,
                run.summary.rejected,
                run.summary.receipts
            ),
            (1, 2, 1, 1)
        );
    }

    #[test]
    fn an_id_two_agencies_use_answers_each_agency_alone_whatever_the_order() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        let mut run = run(Some(CheckpointVerifier::from_vkey(&vkey).unwrap()));
        const H02: &str = "000.00.12.H02";
        let h02_first = add(&mut run, H02, "a", 0);
        let h01_first = add(&mut run, H01, "a", 1);
        let h02_again = add(&mut run, H02, "a", 2);
        let h01_given_up = add(&mut run, H01, "a", 3);
        let h01_last = add(&mut run, H01, "a", 4);
        // One of H01's copies ends (given up): the others with its id still wait.
        assert_eq!(run.remove(h01_given_up).map(|p| p.tag), Some(3));
        assert_eq!(
            run.by_id["a"].as_slice(),
            &[h02_first, h01_first, h02_again, h01_last]
        );
        // H01's answer ends its own copies only: the first committed, the other a duplicate.
        let r = signed(&signer, H01, &[("a", 5, false)], &[]);
        let reports = deliver(&mut run, message(H01, r.to_json()));
        assert_eq!(
            events(&reports),
            vec![(1, "committed 5".into()), (4, "duplicate 5".into())]
        );
        assert_eq!(run.by_id["a"].as_slice(), &[h02_first, h02_again]);
        // H02's answer ends both its copies, the first one first.
        let r = signed(&signer, H02, &[], &["a"]);
        let reports = deliver(&mut run, message(H02, r.to_json()));
        assert_eq!(
            events(&reports),
            vec![
                (0, "rejected schema_violation".into()),
                (2, "rejected schema_violation".into())
            ]
        );
        assert!(run.slots.is_empty() && run.by_id.is_empty() && run.give_ups.is_empty());
    }

    #[test]
    fn a_receipt_that_is_not_accepted_answers_nothing() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        let mut run = run(Some(CheckpointVerifier::from_vkey(&vkey).unwrap()));
        add(&mut run, H01, "a", 0);
        let bad = |reports: Vec<Report<usize>>| -> String {
            assert_eq!(reports.len(), 1, "{reports:?}");
            match &reports[0] {
                Report::BadReceipt { error, .. } => error.clone(),
                other => panic!("{other:?}"),
            }
        };
        // Not JSON.
        bad(deliver(&mut run, message(H01, b"nope".to_vec())));
        // Another agency's receipt on H01's subject.
        let other = signed(&signer, "000.00.12.H02", &[("a", 1, false)], &[]);
        let why = bad(deliver(&mut run, message(H01, other.to_json())));
        assert!(why.contains("000.00.12.H02"), "{why}");
        // A changed seq: the signature fails.
        let mut moved = signed(&signer, H01, &[("a", 1, false)], &[]);
        moved.events[0].seq = 2;
        let why = bad(deliver(&mut run, message(H01, moved.to_json())));
        assert!(why.contains("does not verify"), "{why}");
        // Another log's key.
        let (forger, _, _) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        let forged = signed(&forger, H01, &[("a", 1, false)], &[]);
        bad(deliver(&mut run, message(H01, forged.to_json())));
        assert_eq!(run.slots.len(), 1, "still waiting");
        assert_eq!(run.summary.bad_receipts, 4);
        // The real one.
        let good = signed(&signer, H01, &[("a", 1, false)], &[]);
        let reports = deliver(&mut run, message(H01, good.to_json()));
        assert_eq!(events(&reports), vec![(0, "committed 1".into())]);
        assert!(run.slots.is_empty() && run.give_ups.is_empty() && run.by_id.is_empty());
    }

    #[test]
    fn re_publishes_follow_the_pubacks_and_never_pass_the_give_up_time() {
        let mut run = run(None);
        run.options.give_up_after = Duration::from_secs(45);
        let slot = add(&mut run, H01, "a", 0);
        let give_up = run.slots[&slot].give_up_at;
        assert!(
            run.republish.is_empty(),
            "nothing to re-publish while the PubAck is awaited"
        );
        assert_eq!(
            run.give_ups.first(),
            Some(&(give_up, slot)),
            "given up on even then"
        );
        let ok = Published {
            id: "a".into(),
            stream_seq: 1,
            duplicate: false,
            attempts: 1,
        };
        let mut reports = Vec::new();
        run.acked(slot, Ok(ok.clone()), &mut |r| reports.push(r));
        let (first, reason) = run.slots[&slot].republish_at.expect("a re-publish time");
        assert!(first < give_up);
        assert_eq!(reason, Again::NoReceipt);
        assert!(!run.slots[&slot].awaiting_ack);
        // After a re-publish the timeout has doubled (60 s), past the give-up time: no
        // re-publish, the give-up comes first.
        run.slots.get_mut(&slot).unwrap().timeout = Duration::from_secs(60);
        run.acked(slot, Ok(ok), &mut |r| reports.push(r));
        assert_eq!(run.slots[&slot].republish_at, None);
        assert!(run.republish.is_empty());
        // A refusal ends it at once.
        let refused = PublishError::Refused {
            id: "a".into(),
            subject: "s".into(),
            reason: "Permissions Violation".into(),
        };
        run.acked(slot, Err(refused), &mut |r| reports.push(r));
        assert!(run.slots.is_empty() && run.republish.is_empty() && run.give_ups.is_empty());
        assert!(run.by_id.is_empty());
        assert!(matches!(
            &reports[..],
            [Report::Event(EventOutcome {
                outcome: Outcome::NotPublished(_),
                ..
            })]
        ));
    }

    #[test]
    fn waits_of_any_length_are_taken_whole_and_never_shrink() {
        // "Never" as Duration::MAX (or the CLI's largest number of seconds) once panicked
        // adding it to the clock.
        let huge = ReceiptOptions {
            receipt_timeout: Duration::MAX,
            max_receipt_timeout: Duration::from_secs(300),
            give_up_after: Duration::from_secs(u64::MAX),
            ..ReceiptOptions::default()
        };
        // What ReceiptPublisher::new keeps, and options() shows, is what a run takes.
        let clamped = huge.clone().clamped();
        assert_eq!(
            (
                clamped.receipt_timeout,
                clamped.max_receipt_timeout,
                clamped.give_up_after
            ),
            (LONGEST_WAIT, LONGEST_WAIT, LONGEST_WAIT)
        );
        let mut run: Run<usize> = Run::new(huge);
        assert_eq!(run.options.receipt_timeout, LONGEST_WAIT);
        assert_eq!(run.options.give_up_after, LONGEST_WAIT);
        assert_eq!(
            run.options.max_receipt_timeout, LONGEST_WAIT,
            "the doubled timeout is never below the first"
        );
        let before = Instant::now();
        let slot = add(&mut run, H01, "a", 0);
        assert!(!run.sent_unacked(slot, Ok(()), &mut |_| {}));
        let p = &run.slots[&slot];
        assert!(p.give_up_at >= before + LONGEST_WAIT);
        assert_eq!(
            p.republish_at, None,
            "a re-publish would not come before the give-up"
        );

        let run: Run<usize> = Run::new(ReceiptOptions {
            receipt_timeout: Duration::from_secs(600),
            ..ReceiptOptions::default()
        });
        assert_eq!(run.options.receipt_timeout, Duration::from_secs(600));
        assert_eq!(run.options.max_receipt_timeout, Duration::from_secs(600));
        let run: Run<usize> = Run::new(ReceiptOptions::default());
        assert_eq!(run.options.max_receipt_timeout, Duration::from_secs(300));
    }

    #[test]
    fn an_event_sent_without_a_puback_is_re_published_after_the_timeout_unless_refused() {
        let mut run = run(None);
        let mut reports = Vec::new();
        let before = Instant::now();
        let sent = add(&mut run, H01, "a", 0);
        run.sent_unacked(sent, Ok(()), &mut |r| reports.push(r));
        let p = &run.slots[&sent];
        assert!(!p.awaiting_ack && p.without_ack && p.last_error.is_none());
        let (at, reason) = p.republish_at.expect("a re-publish time");
        assert_eq!(reason, Again::NoReceipt);
        assert!(at >= before + run.options.receipt_timeout);
        assert_eq!(run.republish.first(), Some(&(at, sent)));

        // Not handed to the connection (closed, or past the send timeout): kept and held (the
        // caller sends it first when the connection allows), the reason kept to report should
        // it never be answered; no re-publish timer runs for what was never sent.
        let lost = add(&mut run, H01, "b", 1);
        assert!(run.sent_unacked(
            lost,
            Err(Unsent::NotSent("the connection is closed".into())),
            &mut |r| reports.push(r),
        ));
        let p = &run.slots[&lost];
        assert_eq!(p.republish_at, None);
        assert_eq!(
            p.publishes, 0,
            "not sent: its first publish is still to come"
        );
        assert!(!p.without_ack && !p.awaiting_ack);
        assert_eq!(p.last_error.as_deref(), Some("the connection is closed"));
        assert!(run.republish.iter().all(|&(_, s)| s != lost));
        // Sent at last: a first publish, nothing of the failure left to report.
        run.sending(lost, 1, 1);
        let p = &run.slots[&lost];
        assert!(p.publishes == 1 && p.awaiting_ack && p.last_error.is_none());

        // What the client refuses to send can never be answered: ended at once.
        let big = add(&mut run, H01, "c", 2);
        run.sent_unacked(big, Err(Unsent::Refused("too big".into())), &mut |r| {
            reports.push(r)
        });
        assert!(!run.slots.contains_key(&big));
        assert!(
            matches!(
                &reports[..],
                [Report::Event(EventOutcome {
                    tag: 2,
                    outcome: Outcome::NotPublished(PublishError::Refused { .. }),
                    ..
                })]
            ),
            "{reports:?}"
        );
        assert_eq!(run.summary.not_published, 1);
    }

    #[test]
    fn a_publish_the_server_refused_is_sent_again_at_once_awaiting_its_puback() {
        let subject = crate::subject::event_subject(H01, "dossier.submitted");
        let errors = crate::publisher::ServerErrors::default();
        errors.push("Permissions Violation for Subscription to \"dvc.receipts.x\"".to_owned());
        let mark = errors.count();
        errors.push(format!(
            "Permissions Violation for Publish to \"{subject}\""
        ));
        let refused = errors.publishes_refused_since(mark);
        assert_eq!(refused, HashSet::from([subject.clone()]));
        assert!(
            errors.publishes_refused_since(errors.count()).is_empty(),
            "an error already dealt with is not new"
        );
        let mut run = run(None);
        let mut reports = Vec::new();
        let unacked = add(&mut run, H01, "a", 0);
        run.sent_unacked(unacked, Ok(()), &mut |r| reports.push(r));
        // One awaiting its PubAck learns of it from there.
        let awaiting = add(&mut run, H01, "b", 1);
        // One whose PubAck came: stored, whatever the error says.
        let acked = add(&mut run, H01, "c", 2);
        run.stream_answered(acked, Ok(()), &mut |r| reports.push(r));
        // Another subject: untouched.
        let other = run.add(
            3,
            Outgoing {
                subject: crate::subject::event_subject(H01, "dossier.resolved"),
                id: "d".into(),
                payload: Bytes::from_static(b"{}"),
            },
            agency_token(H01),
            H01.into(),
        );
        run.sent_unacked(other, Ok(()), &mut |r| reports.push(r));
        let before: HashMap<u64, Option<(Instant, Again)>> = run
            .slots
            .iter()
            .map(|(&s, p)| (s, p.republish_at))
            .collect();
        let now = Instant::now();
        run.republish_refused(&refused, now);
        assert_eq!(
            run.slots[&unacked].republish_at,
            Some((now, Again::Refused))
        );
        assert_eq!(run.republish.first(), Some(&(now, unacked)));
        for slot in [awaiting, acked, other] {
            assert_eq!(run.slots[&slot].republish_at, before[&slot], "slot {slot}");
        }
        assert!(reports.is_empty(), "nothing ends on the error alone");
        assert_eq!(run.slots.len(), 4);
    }

    #[test]
    fn each_agency_awaits_the_pubacks_of_its_first_publish_and_one_in_ack_every() {
        // Asks, then sends.
        fn sample(sampler: &mut AckSampler, token: &str, forced: bool) -> bool {
            let sampled = sampler.awaits_ack(token, forced);
            sampler.sent(token, sampled);
            sampled
        }
        // Two agencies alternating: a run-wide count alone would sample only one of them.
        let mut sampler = AckSampler::default();
        let mut sampled: Vec<(usize, u64)> = Vec::new();
        for i in 0..4 * ACK_EVERY {
            let agency = (i % 2) as usize;
            if sample(&mut sampler, ["h01", "h02"][agency], false) {
                sampled.push((agency, i / 2));
            }
        }
        // Each agency's 1st and 65th, and the 64th in a row of any (here always agency 1's).
        assert_eq!(
            sampled,
            [(0, 0), (1, 0), (1, 32), (0, 64), (1, 64), (1, 96)],
        );
        // A new agency's first publish awaits its PubAck whatever came before; a forced one
        // counts as sampled.
        assert!(sample(&mut sampler, "h03", false));
        assert!(!sample(&mut sampler, "h03", false));
        assert!(sample(&mut sampler, "h03", true));
        // A send that did not go out counts for nothing: asked again, the same answer.
        let h04 = sampler.awaits_ack("h04", false);
        assert!(h04 && sampler.awaits_ack("h04", false));

        // Many agencies with a few events each: still never ACK_EVERY plain publishes in a row
        // (they pace the run), and one in ACK_EVERY overall once every agency was seen.
        let mut sampler = AckSampler::default();
        let agencies: Vec<String> = (0..500).map(|a| format!("a{a}")).collect();
        for a in &agencies {
            assert!(sample(&mut sampler, a, false), "first of {a}");
        }
        let (mut in_a_row, mut longest, mut acks) = (0, 0, 0);
        let rounds = 20;
        for _ in 0..rounds {
            for a in &agencies {
                if sample(&mut sampler, a, false) {
                    acks += 1;
                    in_a_row = 0;
                } else {
                    in_a_row += 1;
                    longest = longest.max(in_a_row);
                }
            }
        }
        assert_eq!(longest, ACK_EVERY - 1);
        assert_eq!(acks, rounds * agencies.len() as u64 / ACK_EVERY);
    }

    #[test]
    fn strict_order_sends_a_first_publish_without_a_puback_again_before_later_ones() {
        let mut run = run(None);
        let slot = add(&mut run, H01, "a", 0);
        run.sending(slot, 1, 1);
        let gave_up = PublishError::GaveUp {
            id: "a".into(),
            subject: "s".into(),
            attempts: 9,
            elapsed_s: 120,
            last: "timed out".into(),
        };
        run.acked(slot, Err(gave_up), &mut |_| {});
        assert!(
            run.slots[&slot].republish_at.is_some(),
            "by default, after the timeout"
        );
        assert!(run.first_publish(slot));
        run.requeue(slot);
        let p = &run.slots[&slot];
        assert_eq!(p.republish_at, None);
        assert!(run.republish.is_empty());
        assert!(p.maybe_stored && !p.awaiting_ack && p.last_error.is_some());
        assert_eq!(p.publishes, 1, "it was sent once");
        assert_eq!(run.summary.held, 0, "sent, so not counted as held");
        run.sending(slot, 1, 2);
        assert_eq!(run.slots[&slot].publishes, 2);
        assert_eq!(
            run.slots[&slot].round, 0,
            "the same msg-id: a stored copy is a duplicate"
        );
    }

    #[test]
    fn after_a_reconnect_what_nats_server_did_not_confirm_goes_again_in_input_order() {
        use futures::FutureExt;
        let mut run = run(None);
        // Sent plain on connection `epoch` as send number `send`.
        let plain = |run: &mut Run<usize>, slot: u64, epoch: u64, send: u64| {
            run.sending(slot, epoch, send);
            run.sent_unacked(slot, Ok(()), &mut |_| {});
        };
        // Plain on connection 1 before the last send a PubAck confirmed (send 2): stored.
        let early = add(&mut run, H01, "early", 0);
        plain(&mut run, early, 1, 1);
        // Stored (its PubAck came at the first attempt): send 2.
        let stored = add(&mut run, H01, "d", 1);
        run.sending(stored, 1, 2);
        run.acked(
            stored,
            Ok(Published {
                id: "d".into(),
                stream_seq: 4,
                duplicate: false,
                attempts: 1,
            }),
            &mut |_| {},
        );
        // Plain on connection 1 after it (read in this order: b before a).
        let b = add(&mut run, H01, "b", 2);
        let a = add(&mut run, H01, "a", 3);
        plain(&mut run, b, 1, 3);
        plain(&mut run, a, 1, 4);
        // Awaiting its PubAck, sent on connection 1.
        let awaited = add(&mut run, H01, "c", 4);
        run.sending(awaited, 1, 5);
        let (abort, registration) = AbortHandle::new_pair();
        let mut wait = Abortable::new(std::future::pending::<()>(), registration);
        run.awaiting(awaited, abort);
        // Refused meanwhile: its refusal is being checked, left alone.
        let refused = add(&mut run, "000.00.12.H02", "r", 5);
        plain(&mut run, refused, 1, 6);
        let subject = run.slots[&refused].msg.subject.clone();
        run.republish_refused(
            &HashSet::from([subject]),
            Instant::now() + Duration::from_secs(1),
        );
        // Its re-publish for no receipt is due: it goes with a new msg-id instead.
        let due = add(&mut run, H01, "due", 6);
        plain(&mut run, due, 1, 7);
        run.republish_at(due, Instant::now(), Again::NoReceipt);
        // Sent plain on connection 2, after the reconnect: not lost with connection 1.
        let later = add(&mut run, H01, "e", 7);
        plain(&mut run, later, 2, 8);
        // Never sent (held).
        let held = add(&mut run, H01, "f", 8);
        run.hold(held, NOT_SENT.to_owned());

        // Connection 1's last send confirmed at the first attempt: send 2; connection 2's: 9
        // (it says nothing of connection 1's sends).
        let confirmed = HashMap::from([(1, 2), (2, 9)]);
        let again = run.unconfirmed_before(2, &confirmed);
        assert_eq!(again, vec![b, a, awaited], "input order");
        assert!(
            matches!((&mut wait).now_or_never(), Some(Err(_))),
            "the PubAck wait of an event to send again is dropped"
        );
        for &slot in &again {
            let p = &run.slots[&slot];
            assert!(!p.awaiting_ack && !p.without_ack && p.maybe_stored && p.resend);
            assert_eq!(
                p.republish_at, None,
                "sent again now, not after the timeout"
            );
            assert_eq!(p.round, 0, "the same msg-id: a stored copy is a duplicate");
        }
        assert!(
            run.slots[&awaited].resend_ack,
            "a sample awaits its PubAck again"
        );
        assert!(!run.slots[&a].resend_ack && !run.slots[&b].resend_ack);
        assert!(run.slots[&later].republish_at.is_some(), "still waits");
        assert!(run.slots[&early].republish_at.is_some(), "still waits");
        assert_eq!(run.summary.republished, 0, "counted once sent");
        assert!(
            run.unconfirmed_before(2, &confirmed).is_empty(),
            "nothing twice for one reconnect"
        );
        // Reported and counted as each goes out, once.
        let mut reports = Vec::new();
        for &slot in &again {
            run.resent(slot, &mut |r| {
                if let Report::Republished {
                    id,
                    reason,
                    publishes,
                    ..
                } = r
                {
                    reports.push((id, reason, publishes));
                }
            });
            run.sending(slot, 2, 9);
            assert!(!run.slots[&slot].resend_ack);
            run.resent(slot, &mut |_| panic!("reported twice"));
        }
        assert_eq!(
            reports,
            vec![
                ("b".to_owned(), Again::Reconnected, 2),
                ("a".to_owned(), Again::Reconnected, 2),
                ("c".to_owned(), Again::Reconnected, 2)
            ]
        );
        assert_eq!(run.summary.republished, 3);
    }

    #[test]
    fn an_event_that_ends_drops_the_wait_for_its_puback() {
        use futures::FutureExt;
        let mut run = run(None);
        let slot = add(&mut run, H01, "a", 0);
        let (abort, registration) = AbortHandle::new_pair();
        let mut wait = Abortable::new(std::future::pending::<()>(), registration);
        run.awaiting(slot, abort);
        assert_eq!((&mut wait).now_or_never(), None, "still awaited");
        run.remove(slot).expect("pending");
        assert!(
            matches!(wait.now_or_never(), Some(Err(_))),
            "aborted once its event ended: it no longer holds a place in the window"
        );
    }

    #[test]
    fn server_errors_keep_refusals_apart_from_a_flood_of_others() {
        use crate::publisher::{REFUSED_SUBJECTS_KEPT, SERVER_ERRORS_KEPT, ServerErrors};
        let errors = ServerErrors::default();
        errors.push("Permissions Violation for Subscription to \"dvc.receipts.h01\"".to_owned());
        for i in 0..REFUSED_SUBJECTS_KEPT + 10 {
            errors.push(format!(
                "Permissions Violation for Publish to \"dvc.events.h02.t{i}\""
            ));
        }
        assert_eq!(errors.recent().len(), SERVER_ERRORS_KEPT);
        assert_eq!(
            errors.subscriptions_refused_since(0),
            ["Permissions Violation for Subscription to \"dvc.receipts.h01\""],
            "the subscription refusal outlives the flood"
        );
        assert!(
            errors.subscriptions_refused_since(1).is_empty(),
            "one before the mark is not new"
        );
        let subjects = errors.publishes_refused_since(0);
        assert_eq!(subjects.len(), REFUSED_SUBJECTS_KEPT, "bounded");
        assert!(subjects.contains(&format!("dvc.events.h02.t{}", REFUSED_SUBJECTS_KEPT + 9)));
        assert!(
            !subjects.contains("dvc.events.h02.t0"),
            "the oldest is forgotten"
        );
        // A subject refused again is new again.
        let mark = errors.count();
        errors.push("Permissions Violation for Publish to \"dvc.events.h02.t500\"".to_owned());
        assert_eq!(
            errors.publishes_refused_since(mark),
            HashSet::from(["dvc.events.h02.t500".to_owned()])
        );
    }
}
