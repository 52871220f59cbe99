//! The agent as `sipcheck call`'s prober: one call of a [`CallScript::probe`], placed
//! through the agent's own INVITE path (its RTP socket opened first, as every caller's), with
//! an optional registration before it and its removal after it, each bounded by the overall
//! limit (`--timeout`).
//!
//! The sequence: register (when asked) and wait for its outcome; place the call only once
//! registered (a failed or timed-out registration ends the probe with no call); run the
//! call to its end; unregister, given [`UNREGISTER_GRACE`] of its own past the limit when
//! that is nearer. INVITEs that come meanwhile are refused 486. Everything that
//! [`CallScript::finish_probe`] needs comes out once, at the very end, from
//! [`Agent::poll_probe`].

use std::time::{Duration, Instant};

use crate::ids::IdGen;
use crate::media::session::MediaReport;
use crate::scenario::model::Account;
use crate::sip::uri::NextHop;
use crate::ua::call::{CallId, CallRecord, OutgoingCall};
use crate::ua::registration::{RegisterError, RegistrationEvent};
use crate::ua::script::{CallScript, ProbeCall};

use super::{Agent, CallKey};

/// How long the removal of the binding may take past the overall limit, when that is nearer.
pub const UNREGISTER_GRACE: Duration = Duration::from_secs(2);

/// The registration a probe makes before its call (`--register`).
#[derive(Debug, Clone)]
pub struct ProbeRegister<D> {
    /// The account registered (the AOR and the digest credentials).
    pub account: Account,
    /// The registrar, or the outbound proxy in front of it.
    pub registrar: D,
    /// The lifetime asked for, seconds.
    pub expires: u32,
    /// The registration's identifiers (Call-ID, tags, branches).
    pub ids: IdGen,
}

/// The one call of a probe and what comes before it.
#[derive(Debug, Clone)]
pub struct ProbeConfig<D> {
    /// The call's plan (its limit, [`ProbeCall::limit`], bounds the registration and the
    /// unregistration too).
    pub plan: ProbeCall,
    /// The INVITE to place; its media's port is the RTP socket's, set once it is open.
    pub outgoing: OutgoingCall<D>,
    /// Register first, and unregister at the end.
    pub register: Option<ProbeRegister<D>>,
}

/// Why a probe's registration or unregistration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeStepError {
    /// The exchange failed (a refusal, no response, the transport).
    #[error(transparent)]
    Failed(RegisterError),
    /// The overall limit came first; the limit as the user wrote it.
    #[error("no final response within --timeout {0}")]
    Limit(String),
    /// Ctrl-C came while registering: no call is placed.
    #[error("interrupted")]
    Interrupted,
}

/// The probe's call at its end: what [`CallScript::finish_probe`] needs.
#[derive(Debug)]
pub struct ProbeCallEnd {
    /// The call in the agent (the media stream's key).
    pub key: CallKey,
    /// Its script, which judges it.
    pub script: CallScript,
    /// The endpoint's record of the call as it was left (`None`: never placed).
    pub record: Option<CallRecord>,
    /// The media session's report over the whole call, when one ran.
    pub report: Option<MediaReport>,
}

/// What a probe came to, once, at its end.
#[derive(Debug)]
pub struct ProbeResult {
    /// The call (`None`: it was never started, the registration having failed).
    pub call: Option<ProbeCallEnd>,
    /// Why the registration failed.
    pub registration: Option<ProbeStepError>,
    /// Why the unregistration failed.
    pub unregistration: Option<ProbeStepError>,
}

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the registration's outcome.
    Registering,
    /// The call runs.
    Calling,
    /// Waiting for the removal of the binding, until then.
    Unregistering(Option<Instant>),
    /// The result is out.
    Done,
}

/// The agent's probe state.
#[derive(Debug)]
pub(super) struct Probing<D> {
    phase: Phase,
    plan: Option<ProbeCall>,
    /// The overall limit, and the limit as written.
    limit: Option<(Instant, String)>,
    outgoing: OutgoingCall<D>,
    key: Option<CallKey>,
    registered: bool,
    registration: Option<ProbeStepError>,
    unregistration: Option<ProbeStepError>,
    call: Option<ProbeCallEnd>,
    result: Option<ProbeResult>,
}

impl<D: Clone + NextHop + PartialEq + std::fmt::Display> Agent<D> {
    /// Run one probe call (`sipcheck call`): see the module [`probe`](self). Its result
    /// comes from [`Self::poll_probe`]; its registration's events are the probe's own (they
    /// are not left for [`Self::poll_registration`]).
    pub fn probe(&mut self, now: Instant, cfg: ProbeConfig<D>) {
        self.last_now = Some(now);
        let register = cfg.register;
        self.prober = Some(Probing {
            phase: if register.is_some() {
                Phase::Registering
            } else {
                Phase::Calling
            },
            limit: cfg.plan.limit.clone(),
            plan: Some(cfg.plan),
            outgoing: cfg.outgoing,
            key: None,
            registered: false,
            registration: None,
            unregistration: None,
            call: None,
            result: None,
        });
        match register {
            Some(r) => self.register(now, &r.account, r.registrar, r.expires, false, r.ids),
            None => self.probe_call(now),
        }
        self.drive(now);
    }

    /// The probe's result, once it is over.
    pub fn poll_probe(&mut self) -> Option<ProbeResult> {
        self.prober.as_mut()?.result.take()
    }

    /// Whether the probe is over (its result given or waiting).
    #[must_use]
    pub fn probe_done(&self) -> bool {
        self.prober.as_ref().is_some_and(|p| p.phase == Phase::Done)
    }

    /// Start the probe's call.
    fn probe_call(&mut self, now: Instant) {
        let Some(p) = self.prober.as_mut() else {
            return;
        };
        let Some(plan) = p.plan.take() else {
            return;
        };
        p.phase = Phase::Calling;
        let script = CallScript::probe(now, plan);
        let key = self.add(script, None, None);
        if let Some(p) = self.prober.as_mut() {
            p.key = Some(key);
        }
        self.begin(now, key);
    }

    /// The probe's own deadline: the limit of its registration or unregistration.
    pub(super) fn probe_timeout(&self) -> Option<Instant> {
        let p = self.prober.as_ref()?;
        match p.phase {
            Phase::Registering => p.limit.as_ref().map(|l| l.0),
            Phase::Unregistering(until) => until,
            Phase::Calling | Phase::Done => None,
        }
    }

    /// Move the probe on, now.
    pub(super) fn probe_check(&mut self, now: Instant) {
        if self.prober.is_none() {
            return;
        }
        // The registration's events are the probe's.
        let events: Vec<RegistrationEvent> =
            std::iter::from_fn(|| self.poll_registration().map(|(_, e)| e)).collect();
        let Some(p) = self.prober.as_mut() else {
            return;
        };
        for event in events {
            match event {
                RegistrationEvent::Registered { .. } => p.registered = true,
                RegistrationEvent::Failed { error } => {
                    p.registration = Some(ProbeStepError::Failed(error));
                }
                RegistrationEvent::UnregisterFailed { error } => {
                    p.unregistration = Some(ProbeStepError::Failed(error));
                }
                _ => {}
            }
        }
        match p.phase {
            Phase::Registering => {
                let limit = p.limit.clone();
                if !self.registering() {
                    let p = self.prober.as_mut().expect("probing");
                    if p.registered && p.registration.is_none() {
                        self.probe_call(now);
                    } else {
                        if p.registration.is_none() {
                            p.registration =
                                Some(ProbeStepError::Failed(RegisterError::NoResponse(
                                    "the registration ended without an outcome".into(),
                                )));
                        }
                        self.probe_end();
                    }
                } else if let Some((_, text)) = limit.filter(|(at, _)| now >= *at) {
                    let p = self.prober.as_mut().expect("probing");
                    p.registration = Some(ProbeStepError::Limit(text));
                    self.probe_end();
                }
            }
            Phase::Calling => {
                if p.call.is_some() {
                    if p.registered {
                        let limit = p.limit.as_ref().map(|l| l.0);
                        let until = limit.map(|at| at.max(now + UNREGISTER_GRACE));
                        p.phase = Phase::Unregistering(until);
                        self.unregister(now);
                    } else {
                        self.probe_end();
                    }
                }
            }
            Phase::Unregistering(until) => {
                let text = p.limit.as_ref().map(|l| l.1.clone()).unwrap_or_default();
                if self.unregistered() {
                    self.probe_end();
                } else if until.is_some_and(|at| now >= at) {
                    let p = self.prober.as_mut().expect("probing");
                    p.unregistration = Some(ProbeStepError::Limit(text));
                    self.probe_end();
                }
            }
            Phase::Done => {}
        }
    }

    /// The probe is over: its result out.
    fn probe_end(&mut self) {
        let Some(p) = self.prober.as_mut() else {
            return;
        };
        if p.phase == Phase::Done {
            return;
        }
        p.phase = Phase::Done;
        p.result = Some(ProbeResult {
            call: p.call.take(),
            registration: p.registration.take(),
            unregistration: p.unregistration.take(),
        });
    }

    /// Ctrl-C for a probe that is still registering: it ends at once, with no call (whose
    /// placing could only be interrupted). `false` when the probe is past its registration
    /// (its call is stopped as any other).
    pub(super) fn probe_stop(&mut self) -> bool {
        let Some(p) = self.prober.as_mut() else {
            return false;
        };
        if p.phase != Phase::Registering {
            return false;
        }
        p.registration = Some(ProbeStepError::Interrupted);
        self.probe_end();
        true
    }

    /// An incoming INVITE while probing: refused 486 (the probe takes no call).
    pub(super) fn probe_incoming(&mut self, now: Instant, call: CallId) {
        let _ = self.endpoint.reject(now, call, 486);
    }

    /// The probe's INVITE, with its RTP socket on `port`, if `key` is the probe's call:
    /// `None` when it is not.
    pub(super) fn probe_invite(&mut self, now: Instant, key: CallKey, port: u16) -> Option<()> {
        let p = self.prober.as_ref()?;
        if p.key != Some(key) {
            return None;
        }
        let mut outgoing = p.outgoing.clone();
        outgoing.local_media.port = port;
        let placed = self.send_invite(now, key, outgoing);
        if let Some(live) = self.calls.get_mut(&key) {
            live.script.handle_placed(now, placed);
        }
        Some(())
    }

    /// The probe's call ended (its media report in): kept for the result. `None` when
    /// handled.
    pub(super) fn probe_finish(
        &mut self,
        key: CallKey,
        call: Option<CallId>,
        script: CallScript,
        report: Option<MediaReport>,
    ) -> Option<(CallScript, Option<MediaReport>)> {
        if self.prober.as_ref().is_none_or(|p| p.key != Some(key)) {
            return Some((script, report));
        }
        let record = call.and_then(|id| self.endpoint.record(id).cloned());
        if let Some(p) = self.prober.as_mut() {
            p.call = Some(ProbeCallEnd {
                key,
                script,
                record,
                report,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests;
