//! A user agent's registration life (RFC 3261 §10), sans-IO: register, answer the challenge
//! (a bounded number of rounds), refresh on the [`RenewalSchedule`], register anew at once
//! when the connection to the registrar drops, back off after failures, and unregister at
//! the end (`Expires: 0`, with its own challenge round).
//!
//! [`Lifecycle`] writes each REGISTER ([`Lifecycle::poll_request`]) and reads each outcome
//! ([`Lifecycle::handle_response`]: a final response, or the transaction's failure to get
//! one — Timer F, an unreachable next hop, a lost transport); one REGISTER is under way at a
//! time. What happens is told by [`Lifecycle::poll_event`], when the next renewal is due by
//! [`Lifecycle::poll_timeout`]. It never reads the clock: every input carries `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::IdGen;
use crate::sip::msg::Message;
use crate::ua::register::{
    LocalEnd, Next, RegisterFailure, RegisterOutcome, RegisterParams, Registration,
};
use crate::ua::renewal::{Renewal as RenewalSchedule, Why};

/// The most REGISTERs of one exchange (the first and its challenge rounds). The digest client
/// already refuses a second challenge to the same credentials; this bounds any other loop.
pub const MAX_ROUNDS: u32 = 4;

/// How a REGISTER sent ended, as the transaction layer tells it.
#[derive(Debug, Clone)]
pub enum Response {
    /// Its final response.
    Final(Box<Message>),
    /// No final response: a transaction timer expired, the next hop is unreachable, the
    /// transport failed (the driver's own message, shown as is).
    NoResponse(String),
}

/// A REGISTER to send to the registrar, through a new client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message.
    pub bytes: Vec<u8>,
    /// What it is for.
    pub purpose: Purpose,
}

/// What a REGISTER is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The first registration.
    Register,
    /// A renewal of a registration, and why.
    Renew(Why),
    /// The removal of our binding (`Expires: 0`).
    Unregister,
    /// The removal of every binding of the address of record (`Contact: *`).
    RemoveAll,
}

/// Why a registration exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The registrar's final response refused it.
    #[error(transparent)]
    Refused(#[from] RegisterFailure),
    /// The registrar challenged again and again (more than [`MAX_ROUNDS`] REGISTERs).
    #[error("too many authentication challenges")]
    TooManyChallenges,
    /// No final response came (the transaction layer's message).
    #[error("{0}")]
    NoResponse(String),
    /// A 2xx to a REGISTER asking for a binding listed none of ours: `Expires: 0` asked for
    /// no binding at all.
    #[error("the registrar answered {code} but kept no binding")]
    NotBound {
        /// The 2xx status code.
        code: u16,
    },
}

/// What happened to the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The first registration is in place.
    Registered {
        /// From the first REGISTER to its final 2xx (the challenge round included).
        rtt: Duration,
        /// The lifetime granted.
        expires: u32,
        /// Every binding of the address of record, as the 2xx listed them.
        bindings: Vec<String>,
    },
    /// The first registration failed: there is nothing to renew or remove.
    Failed {
        /// Why.
        error: RegisterError,
    },
    /// A renewal worked: a periodic refresh (`why` is [`Why::Refresh`]), or a registration
    /// made anew after a failed renewal or a lost connection.
    Renewed {
        /// Why it was made.
        why: Why,
        /// From its first REGISTER to its final 2xx.
        rtt: Duration,
        /// The lifetime granted.
        expires: u32,
    },
    /// A renewal failed; the next attempt comes after `retry_in`.
    RenewalFailed {
        /// Why it was made.
        why: Why,
        /// Why it failed.
        error: RegisterError,
        /// The wait before the next attempt (growing with each failure).
        retry_in: Duration,
        /// The registrar, as named in the message.
        registrar: String,
    },
    /// The binding is removed (or, after [`Lifecycle::remove_all`], every binding of the
    /// address of record the registrar no longer lists).
    Unregistered {
        /// From the first un-REGISTER to its final 2xx.
        rtt: Duration,
        /// Bindings the registrar still lists (others' or stale ones).
        remaining: Vec<String>,
    },
    /// The removal failed.
    UnregisterFailed {
        /// Why.
        error: RegisterError,
    },
}

impl RegistrationEvent {
    /// The failure this event reports, as the reports show it; `None` for a success.
    #[must_use]
    pub fn error_message(&self) -> Option<String> {
        match self {
            Self::Failed { error } | Self::UnregisterFailed { error } => Some(error.to_string()),
            Self::RenewalFailed {
                why,
                error,
                retry_in,
                registrar,
            } => {
                let what = match why {
                    Why::FlowLost => format!(
                        "re-registration after the connection to {registrar} was lost failed"
                    ),
                    Why::Refresh | Why::Retry => "refresh failed".to_string(),
                };
                Some(format!(
                    "{what}: {error} (tried again in {} s)",
                    retry_in.as_secs()
                ))
            }
            Self::Registered { .. } | Self::Renewed { .. } | Self::Unregistered { .. } => None,
        }
    }
}

/// How the registration is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who registers, where, for how long.
    pub params: RegisterParams,
    /// Where the requests leave from.
    pub local: LocalEnd,
    /// Refreshed at 80 % of the granted lifetime (else renewed only when the connection to
    /// the registrar drops, or after a failure).
    pub refresh: bool,
    /// The registrar as named in messages (its address).
    pub registrar: String,
}

/// The REGISTER exchange under way.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    purpose: Purpose,
    started: Instant,
    /// REGISTERs sent in this exchange.
    rounds: u32,
}

/// One user agent's registration life.
#[derive(Debug)]
pub struct Lifecycle {
    reg: Registration,
    ids: IdGen,
    local: LocalEnd,
    expires: u32,
    refresh: bool,
    registrar: String,
    /// The REGISTER under way, when one is.
    exchange: Option<Exchange>,
    /// The request written and not yet taken.
    request: Option<Request>,
    /// Renewals, once registered.
    schedule: Option<RenewalSchedule>,
    /// The first registration worked: a binding is to be removed at the end.
    bound: bool,
    /// [`Lifecycle::stop`] was called.
    stopping: bool,
    /// Nothing more to do.
    closed: bool,
    /// The status and reason of the last final response.
    last_status: Option<(u16, String)>,
    events: VecDeque<RegistrationEvent>,
}

impl Lifecycle {
    /// A registration set up by `config`, with ids (Call-ID, tags, branches, cnonces)
    /// drawn from `ids`. Nothing is sent before [`Lifecycle::register`] or
    /// [`Lifecycle::remove_all`].
    #[must_use]
    pub fn new(config: Config, mut ids: IdGen) -> Self {
        let expires = config.params.expires;
        Self {
            reg: Registration::new(config.params, &mut ids),
            ids,
            local: config.local,
            expires,
            refresh: config.refresh,
            registrar: config.registrar,
            exchange: None,
            request: None,
            schedule: None,
            bound: false,
            stopping: false,
            closed: false,
            last_status: None,
            events: VecDeque::new(),
        }
    }

    /// The address of record, `sip:user@domain`.
    #[must_use]
    pub fn aor(&self) -> String {
        self.reg.aor()
    }

    /// The Call-ID of every REGISTER of this registration.
    #[must_use]
    pub fn call_id(&self) -> &str {
        self.reg.call_id()
    }

    /// Register at `now`.
    pub fn register(&mut self, now: Instant) {
        if self.exchange.is_none() && !self.closed && !self.bound {
            self.begin(now, Purpose::Register);
        }
    }

    /// Remove every binding of the address of record at `now` (`Contact: *`), without
    /// registering; the life ends with its outcome.
    pub fn remove_all(&mut self, now: Instant) {
        if self.exchange.is_none() && !self.closed {
            self.stopping = true;
            self.begin(now, Purpose::RemoveAll);
        }
    }

    /// The connection to the registrar dropped at `now`: register anew at once (unless a
    /// retry after a failure is already waiting its turn).
    pub fn flow_lost(&mut self, now: Instant) {
        if let Some(schedule) = &mut self.schedule {
            schedule.flow_lost(now);
        }
        self.handle_timeout(now);
    }

    /// Time has come to `now`: a renewal due is started.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.exchange.is_some() || self.stopping || self.closed {
            return;
        }
        if let Some(why) = self.schedule.as_ref().and_then(|s| s.due(now)) {
            self.begin(now, Purpose::Renew(why));
        }
    }

    /// End the registration at `now`: the binding is removed once the REGISTER under way,
    /// if any, is done; the life ends at once when nothing is bound.
    pub fn stop(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.stopping = true;
        if self.exchange.is_none() {
            self.wind_down(now);
        }
    }

    /// The outcome of the last REGISTER taken from [`Lifecycle::poll_request`], at `now`.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let Some(mut exchange) = self.exchange.take() else {
            return;
        };
        let message = match response {
            Response::NoResponse(error) => {
                return self.finish(now, exchange, Err(RegisterError::NoResponse(error)));
            }
            Response::Final(message) => *message,
        };
        let code = message.status().unwrap_or(0);
        self.last_status = Some((code, message.reason().unwrap_or_default().to_string()));
        match self.reg.on_final_response(&message) {
            Next::Retry if exchange.rounds >= MAX_ROUNDS => {
                self.finish(now, exchange, Err(RegisterError::TooManyChallenges));
            }
            Next::Retry => {
                exchange.rounds += 1;
                self.write(exchange.purpose);
                self.exchange = Some(exchange);
            }
            Next::Done(RegisterOutcome::Failed(failure)) => {
                self.finish(now, exchange, Err(failure.into()));
            }
            Next::Done(outcome) => self.finish(now, exchange, Ok((code, outcome))),
        }
    }

    /// The next REGISTER to send, if any.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.request.take()
    }

    /// When [`Lifecycle::handle_timeout`] is next wanted (the next renewal), if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.exchange.is_some() || self.stopping || self.closed {
            return None;
        }
        self.schedule
            .as_ref()
            .and_then(RenewalSchedule::poll_timeout)
    }

    /// The next thing that happened, if any.
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// Whether a REGISTER is under way.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        self.exchange.is_some()
    }

    /// Whether the life is over: the first registration failed, or the binding was removed
    /// (or its removal failed) after [`Lifecycle::stop`].
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the first registration worked (and its binding is not yet removed).
    #[must_use]
    pub fn is_bound(&self) -> bool {
        self.bound
    }

    /// The status code and reason phrase of the last final response.
    #[must_use]
    pub fn last_status(&self) -> Option<(u16, &str)> {
        self.last_status.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    fn begin(&mut self, now: Instant, purpose: Purpose) {
        self.exchange = Some(Exchange {
            purpose,
            started: now,
            rounds: 1,
        });
        self.write(purpose);
    }

    fn write(&mut self, purpose: Purpose) {
        let bytes = match purpose {
            Purpose::Register | Purpose::Renew(_) => {
                self.reg.request(self.expires, &self.local, &mut self.ids)
            }
            Purpose::Unregister => self.reg.request(0, &self.local, &mut self.ids),
            Purpose::RemoveAll => self.reg.request_unregister_all(&self.local, &mut self.ids),
        };
        self.request = Some(Request { bytes, purpose });
    }

    fn finish(
        &mut self,
        now: Instant,
        exchange: Exchange,
        result: Result<(u16, RegisterOutcome), RegisterError>,
    ) {
        let rtt = now.saturating_duration_since(exchange.started);
        let event = match (exchange.purpose, result) {
            (
                Purpose::Register | Purpose::Renew(_),
                Ok((_, RegisterOutcome::Registered { expires, bindings })),
            ) => {
                self.schedule = Some(RenewalSchedule::new(now, expires, self.refresh));
                if let Purpose::Renew(why) = exchange.purpose {
                    RegistrationEvent::Renewed { why, rtt, expires }
                } else {
                    self.bound = true;
                    RegistrationEvent::Registered {
                        rtt,
                        expires,
                        bindings,
                    }
                }
            }
            (Purpose::Register | Purpose::Renew(_), Ok((code, _))) => {
                self.fail(now, exchange.purpose, RegisterError::NotBound { code })
            }
            (Purpose::Register | Purpose::Renew(_), Err(error)) => {
                self.fail(now, exchange.purpose, error)
            }
            (
                Purpose::Unregister | Purpose::RemoveAll,
                Ok((_, RegisterOutcome::Unregistered { remaining })),
            ) => {
                self.bound = false;
                self.closed = true;
                RegistrationEvent::Unregistered { rtt, remaining }
            }
            (Purpose::Unregister | Purpose::RemoveAll, Ok((code, _))) => {
                self.closed = true;
                RegistrationEvent::UnregisterFailed {
                    error: RegisterError::Refused(RegisterFailure::Rejected {
                        code,
                        reason: "answered as if a binding was kept".into(),
                    }),
                }
            }
            (Purpose::Unregister | Purpose::RemoveAll, Err(error)) => {
                self.closed = true;
                RegistrationEvent::UnregisterFailed { error }
            }
        };
        self.events.push_back(event);
        if self.stopping && !self.closed {
            self.wind_down(now);
        }
    }

    /// A failed registration or renewal: the event, and what follows.
    fn fail(&mut self, now: Instant, purpose: Purpose, error: RegisterError) -> RegistrationEvent {
        match (purpose, &mut self.schedule) {
            (Purpose::Renew(why), Some(schedule)) => RegistrationEvent::RenewalFailed {
                why,
                error,
                retry_in: schedule.on_failure(now),
                registrar: self.registrar.clone(),
            },
            _ => {
                self.closed = true;
                RegistrationEvent::Failed { error }
            }
        }
    }

    /// After [`Lifecycle::stop`], with nothing under way: unregister, or close.
    fn wind_down(&mut self, now: Instant) {
        if self.bound {
            self.begin(now, Purpose::Unregister);
        } else {
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests;
