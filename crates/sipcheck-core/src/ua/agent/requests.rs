//! Requests of an agent's own (OPTIONS, and the REGISTERs of its registrations): each one's
//! outcome, whichever way it comes — its final response with its round trip, a transaction
//! timer, the transport that cannot carry it (an ICMP error, a lost connection), or the
//! overall limit of a probe ([`Agent::limit_requests`]).
//!
//! `sipcheck options` and `sipcheck register` drive the agent with nothing else: one request
//! path and one registration loop for every command.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sip::msg::Message;
use crate::sip::transaction::{Timer, TransactionEvent, TxId};
use crate::sip::uri::NextHop;
use crate::ua::registration::Response;

use super::Agent;

/// Why a request of our own got no final response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    /// A transaction timer expired (Timer F, RFC 3261 §17.1.2.2).
    #[error("no final response: {timer} expired after {:.1} s (is the peer reachable?)", elapsed.as_secs_f64())]
    Timeout {
        /// Which timer.
        timer: Timer,
        /// Time since the request was first sent.
        elapsed: Duration,
    },
    /// The transport cannot carry it: an ICMP error, a connection refused or lost (the
    /// transport's own words).
    #[error("no final response: {0}")]
    Transport(String),
    /// The overall limit of the probe came first (the limit as the user wrote it).
    #[error("no final response within --timeout {0}")]
    Limit(String),
    /// The transaction ended without a final response.
    #[error("the transaction ended without a final response")]
    Terminated,
}

/// What became of a request sent with [`Agent::send_request`].
#[derive(Debug, Clone)]
pub enum RequestEvent {
    /// A provisional response.
    Provisional {
        /// The request's transaction.
        tx: TxId,
        /// The response.
        message: Message,
    },
    /// Its final response.
    Final {
        /// The request's transaction.
        tx: TxId,
        /// The response.
        message: Message,
        /// From the first transmission to the final response.
        rtt: Duration,
    },
    /// No final response will come.
    Failed {
        /// The request's transaction.
        tx: TxId,
        /// Why.
        error: RequestFailure,
    },
}

/// The requests of our own under way, and the limit that bounds them.
#[derive(Debug)]
pub(super) struct OwnRequests<D> {
    /// Each request's destination and first transmission.
    sent: HashMap<TxId, (D, Instant)>,
    /// Requests under way at or after this instant fail, naming the limit as written.
    limit: Option<(Instant, String)>,
    /// Failures are told as the one-shot probes tell them ([`Agent::probe_wording`]).
    probe_words: bool,
}

impl<D> Default for OwnRequests<D> {
    fn default() -> Self {
        Self {
            sent: HashMap::new(),
            limit: None,
            probe_words: false,
        }
    }
}

impl<D: Clone + NextHop + PartialEq + std::fmt::Display> Agent<D> {
    /// Bound every request of our own (and every REGISTER) by `at`: one under way then, or
    /// sent later, fails with [`RequestFailure::Limit`] naming `limit` (`--timeout` as the
    /// user wrote it). A later call moves the bound (more time to remove a binding).
    pub fn limit_requests(&mut self, now: Instant, at: Instant, limit: String) {
        self.last_now = Some(now);
        self.requests.limit = Some((at, limit));
        if now >= at {
            self.handle_timeout(now);
        }
    }

    /// Tell failures of requests of our own as the one-shot probes (`options`, `register`)
    /// do: "no final response: …", with what the transport said or which timer expired.
    pub fn probe_wording(&mut self) {
        self.requests.probe_words = true;
    }

    /// Note a request of our own sent to `destination` at `now`.
    pub(super) fn own_sent(&mut self, tx: TxId, destination: D, now: Instant) {
        self.requests.sent.insert(tx, (destination, now));
    }

    /// A transaction event of a request of our own (not a registration's): its
    /// [`RequestEvent`], if it says anything.
    pub(super) fn own_event(&mut self, now: Instant, event: TransactionEvent<D>) {
        let event = match event {
            TransactionEvent::Response { tx, message } => match message.status() {
                Some(code) if code >= 200 => match self.requests.sent.remove(&tx) {
                    Some((_, started)) => RequestEvent::Final {
                        tx,
                        message,
                        rtt: now.saturating_duration_since(started),
                    },
                    None => return,
                },
                _ if self.requests.sent.contains_key(&tx) => {
                    RequestEvent::Provisional { tx, message }
                }
                _ => return,
            },
            TransactionEvent::TimedOut { tx, timer, elapsed } => {
                if self.requests.sent.remove(&tx).is_none() {
                    return;
                }
                RequestEvent::Failed {
                    tx,
                    error: RequestFailure::Timeout { timer, elapsed },
                }
            }
            TransactionEvent::Terminated { tx } => {
                if self.requests.sent.remove(&tx).is_none() {
                    return;
                }
                RequestEvent::Failed {
                    tx,
                    error: RequestFailure::Terminated,
                }
            }
            _ => return,
        };
        self.own.push_back(event);
    }

    /// The requests of our own to `destination` (every one when `None`) fail with `error`;
    /// their transactions are abandoned (no retransmission follows).
    pub(super) fn own_failed(&mut self, destination: Option<&D>, error: &RequestFailure) {
        let mut failed: Vec<TxId> = self
            .requests
            .sent
            .iter()
            .filter(|(_, (to, _))| destination.is_none_or(|d| d == to))
            .map(|(tx, _)| *tx)
            .collect();
        failed.sort_unstable();
        for tx in failed {
            self.requests.sent.remove(&tx);
            self.endpoint.abandon_request(tx);
            self.own.push_back(RequestEvent::Failed {
                tx,
                error: error.clone(),
            });
        }
    }

    /// A failure as a registration tells it: in the probes' words with
    /// [`Self::probe_wording`] (`call`'s prober says a timer's expiry so too); scenario
    /// reports keep their own.
    pub(super) fn failure_text(&self, failure: &RequestFailure) -> String {
        match failure {
            RequestFailure::Timeout { timer, elapsed }
                if !self.requests.probe_words && self.prober.is_none() =>
            {
                format!("{timer} expired after {:.1} s", elapsed.as_secs_f64())
            }
            RequestFailure::Transport(why) if !self.requests.probe_words => why.clone(),
            failure => failure.to_string(),
        }
    }

    /// When the limit is next due: only while something it bounds is under way.
    pub(super) fn requests_timeout(&self) -> Option<Instant> {
        let (at, _) = self.requests.limit.as_ref()?;
        (!self.requests.sent.is_empty() || self.registration_under_way()).then_some(*at)
    }

    /// The limit has come by `now`: everything under way fails.
    pub(super) fn requests_limit(&mut self, now: Instant) {
        let Some((at, limit)) = self.requests.limit.clone() else {
            return;
        };
        if now < at {
            return;
        }
        let failure = RequestFailure::Limit(limit);
        self.own_failed(None, &failure);
        self.registrations_failed(now, None, None, &Response::NoResponse(failure.to_string()));
    }
}
