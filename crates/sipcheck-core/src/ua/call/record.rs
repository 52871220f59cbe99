//! What a call leaves behind: its timing record and why it ended.

use std::fmt;
use std::time::{Duration, Instant};

use crate::sdp::NegotiationError;
use crate::sip::auth::AuthError;
use crate::sip::build::reason_phrase;
use crate::sip::transaction::Timer;

use super::redirect::NotFollowed;

/// Which side started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallDirection {
    /// We sent the INVITE (UAC).
    Outgoing,
    /// We received the INVITE (UAS).
    Incoming,
}

impl fmt::Display for CallDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallDirection::Outgoing => "outgoing",
            CallDirection::Incoming => "incoming",
        })
    }
}

/// Why a call ended. `Display` reads well in a report: "rejected: 486 Busy Here",
/// "Timer B expired after 32.0 s".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEndReason {
    /// We sent BYE and it got a final response (any code, see [`CallRecord::bye_code`]) or
    /// timed out (Timer F).
    LocalBye,
    /// The far end sent BYE; we answered 200.
    RemoteBye,
    /// The far end (or a proxy) answered our INVITE with a final error response (3xx–6xx).
    Rejected {
        /// The status code.
        code: u16,
        /// The reason phrase as received.
        reason: String,
    },
    /// Our INVITE got a 3xx that was not followed (see [`NotFollowed`]): the status, the
    /// targets it named, and why.
    Redirected {
        /// The status code (300–399).
        code: u16,
        /// The reason phrase as received.
        reason: String,
        /// The URIs of its Contacts, highest `q` first.
        targets: Vec<String>,
        /// Why the call did not go there.
        why: NotFollowed,
    },
    /// A redirection pointed back at a target the call had already tried (RFC 3261
    /// §8.1.3.4): the Request-URIs in order, the repeated one last.
    RedirectLoop {
        /// The chain of Request-URIs.
        chain: Vec<String>,
    },
    /// One more redirection than the call may follow.
    TooManyRedirects {
        /// The chain of Request-URIs, the one not followed last.
        chain: Vec<String>,
        /// The redirections allowed.
        max: u32,
    },
    /// We refused an incoming call ([`Endpoint::reject`](super::Endpoint::reject), or a
    /// hang-up before answering).
    Declined {
        /// The status code we sent.
        code: u16,
    },
    /// We cancelled our INVITE and the CANCEL got the INVITE its 487. When a 2xx crossed the
    /// CANCEL the call was ACKed and closed with BYE, and
    /// [`CallRecord::answered_before_cancel`] is set.
    Cancelled,
    /// We cancelled our INVITE but the CANCEL did not work: it was refused (a final response
    /// other than 2xx), or no final response to the INVITE came within `64·T1` of it (RFC
    /// 3261 §9.1: the INVITE is then given up).
    CancelFailed {
        /// The final status of the CANCEL; `None` when none came.
        cancel_code: Option<u16>,
        /// How long the INVITE's final response was waited for after the CANCEL; `None` when
        /// the INVITE got its 487 after all (the CANCEL was refused).
        waited: Option<Duration>,
    },
    /// The far end cancelled its INVITE before we answered; we sent 487.
    CancelledByRemote,
    /// A transaction timed out: Timer B (no final response to our INVITE), or Timer B of a
    /// re-INVITE (the call was then closed with BYE, RFC 3261 §14.1).
    Timeout {
        /// Which timer.
        timer: Timer,
        /// How long it ran.
        elapsed: Duration,
    },
    /// Our credentials were refused: the request was challenged again after we answered a
    /// challenge.
    AuthRejected {
        /// 401 or 407.
        code: u16,
    },
    /// A challenge came but no credentials were configured for the call.
    NoCredentials {
        /// 401 or 407.
        code: u16,
    },
    /// A challenge could not be answered (malformed, unsupported algorithm …).
    AuthFailed {
        /// 401 or 407.
        code: u16,
        /// Why.
        error: AuthError,
    },
    /// We could not answer the far end's offer (no common codec, no audio stream): we sent
    /// 488 Not Acceptable Here.
    CodecRefused,
    /// We could not answer the far end's offer under our SRTP policy (plain RTP where SRTP is
    /// required, `RTP/SAVP` where it is off, no usable `a=crypto`): we sent 488.
    SrtpRefused(crate::sdp::crypto::SdesError),
    /// The far end's SDP could not be used (an answer naming no codec we offered, a delayed
    /// offer answered without SDP …): the call was closed with BYE.
    MediaFailed(NegotiationError),
    /// No ACK came for our 2xx within `64·T1` (RFC 3261 §13.3.1.4): we sent BYE.
    NoAck {
        /// How long the 2xx was retransmitted.
        elapsed: Duration,
    },
    /// We dropped an incoming call that was not confirmed (no ACK yet) because its slot was
    /// needed ([`Endpoint::abandon`](super::Endpoint::abandon)): nothing more was sent.
    Dropped {
        /// How long it had been waiting since its INVITE.
        unconfirmed: Duration,
    },
    /// A re-INVITE got 481 or 408: the far end no longer knows the dialog (RFC 3261
    /// §12.2.1.2).
    DialogLost {
        /// 481 or 408.
        code: u16,
    },
    /// The far end broke the protocol in a way that ends the call (e.g. an unparsable SDP in
    /// its 2xx, or a 2xx whose request could not be built).
    ProtocolError {
        /// What was wrong.
        detail: String,
    },
    /// The shell reported that the transport to the peer failed
    /// ([`Endpoint::transport_failed`](super::Endpoint::transport_failed),
    /// [`Endpoint::flow_failed`](super::Endpoint::flow_failed)).
    TransportError {
        /// The transport's words, when it gave any (`TLS handshake with … failed: …`).
        detail: String,
    },
}

impl CallEndReason {
    /// True for the normal ends of an established call (BYE from either side).
    pub fn is_normal_clearing(&self) -> bool {
        matches!(self, CallEndReason::LocalBye | CallEndReason::RemoteBye)
    }
}

/// Our BYE did not complete: it was answered with an error (≥ 300, a challenge we could not
/// answer included) or never answered (Timer F). See [`CallRecord::bye_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByeFailure {
    /// The BYE's final status.
    Status(u16),
    /// No final response: Timer F expired after this long.
    Timeout(Duration),
}

impl ByeFailure {
    /// `481`, or `timeout`: the short form in failure labels (`bye_failed_481`).
    pub fn short(&self) -> String {
        match self {
            ByeFailure::Status(code) => code.to_string(),
            ByeFailure::Timeout(_) => "timeout".into(),
        }
    }
}

impl fmt::Display for ByeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByeFailure::Status(code) => {
                write!(f, "bye_failed: {code} {}", reason_phrase(*code))
            }
            ByeFailure::Timeout(elapsed) => write!(
                f,
                "bye_failed: timeout (Timer F expired after {:.1} s)",
                elapsed.as_secs_f64()
            ),
        }
    }
}

impl fmt::Display for CallEndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallEndReason::LocalBye => f.write_str("hung up locally (BYE sent)"),
            CallEndReason::RemoteBye => f.write_str("hung up by the far end (BYE received)"),
            CallEndReason::Rejected { code, reason } => {
                let reason = if reason.is_empty() {
                    reason_phrase(*code)
                } else {
                    reason
                };
                write!(f, "rejected: {code} {reason}")
            }
            CallEndReason::Redirected {
                code,
                reason,
                targets,
                why,
            } => {
                let reason = if reason.is_empty() {
                    reason_phrase(*code)
                } else {
                    reason
                };
                if targets.is_empty() {
                    write!(f, "rejected: {code} {reason} ({})", why.as_str())
                } else {
                    write!(
                        f,
                        "rejected: {code} {reason} (redirected to {}; {})",
                        targets.join(", "),
                        why.as_str()
                    )
                }
            }
            CallEndReason::RedirectLoop { chain } => {
                write!(f, "redirect_loop: {}", chain.join(" -> "))
            }
            CallEndReason::TooManyRedirects { chain, max } => write!(
                f,
                "too_many_redirects: more than {max}: {}",
                chain.join(" -> ")
            ),
            CallEndReason::Declined { code } => {
                write!(f, "declined locally: {code} {}", reason_phrase(*code))
            }
            CallEndReason::Cancelled => f.write_str("cancelled"),
            CallEndReason::CancelFailed {
                cancel_code,
                waited,
            } => {
                let status = |code: u16| format!("{code} {}", reason_phrase(code));
                match (cancel_code, waited) {
                    (Some(code), Some(waited)) if !(200..300).contains(code) => write!(
                        f,
                        "CANCEL refused: {}, and no final response to the INVITE within {:.1} s",
                        status(*code),
                        waited.as_secs_f64()
                    ),
                    (Some(code), None) => write!(
                        f,
                        "CANCEL refused: {} (the INVITE got 487 nonetheless)",
                        status(*code)
                    ),
                    (Some(code), Some(waited)) => write!(
                        f,
                        "CANCEL answered {} but no 487 within {:.1} s",
                        status(*code),
                        waited.as_secs_f64()
                    ),
                    (None, waited) => write!(
                        f,
                        "CANCEL unanswered and no 487 within {:.1} s",
                        waited.unwrap_or_default().as_secs_f64()
                    ),
                }
            }
            CallEndReason::CancelledByRemote => f.write_str("cancelled by the caller"),
            CallEndReason::Timeout { timer, elapsed } => {
                write!(f, "{timer} expired after {:.1} s", elapsed.as_secs_f64())
            }
            CallEndReason::AuthRejected { code } => {
                write!(f, "credentials rejected: {code} {}", reason_phrase(*code))
            }
            CallEndReason::NoCredentials { code } => write!(
                f,
                "challenged with {code} {} but no credentials are configured",
                reason_phrase(*code)
            ),
            CallEndReason::AuthFailed { code, error } => {
                write!(f, "cannot answer the {code} challenge: {error}")
            }
            CallEndReason::CodecRefused => {
                f.write_str("no acceptable media in the offer: 488 Not Acceptable Here sent")
            }
            CallEndReason::SrtpRefused(error) => {
                write!(f, "srtp refused: {error}: 488 Not Acceptable Here sent")
            }
            CallEndReason::MediaFailed(error) => write!(f, "media negotiation failed: {error}"),
            CallEndReason::NoAck { elapsed } => write!(
                f,
                "no ACK for the 2xx after {:.1} s (BYE sent)",
                elapsed.as_secs_f64()
            ),
            CallEndReason::Dropped { unconfirmed } => write!(
                f,
                "dropped unconfirmed after {:.1} s (no ACK yet; its slot was needed)",
                unconfirmed.as_secs_f64()
            ),
            CallEndReason::DialogLost { code } => {
                write!(f, "dialog lost: {code} {}", reason_phrase(*code))
            }
            CallEndReason::ProtocolError { detail } => write!(f, "protocol error: {detail}"),
            CallEndReason::TransportError { detail } if detail.is_empty() => {
                f.write_str("transport error")
            }
            CallEndReason::TransportError { detail } => write!(f, "transport error: {detail}"),
        }
    }
}

/// When and why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    /// When the call ended.
    pub at: Instant,
    /// Why.
    pub reason: CallEndReason,
}

/// The timing record of one call, for metrics: readable while the call lives
/// ([`Endpoint::record`](super::Endpoint::record)) and handed over once, complete, in
/// [`CallEvent::Ended`](super::CallEvent::Ended).
///
/// Instants are those at which the endpoint sent or received the message (`now` of the call
/// that did it); for an outgoing call "received" instants are responses, for an incoming one
/// they are requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The SIP Call-ID.
    pub call_id: String,
    /// Outgoing (UAC) or incoming (UAS).
    pub direction: CallDirection,
    /// The first INVITE sent (outgoing) or received (incoming). A re-sent INVITE (after a
    /// challenge) does not move it.
    pub invite: Instant,
    /// The first provisional response received (outgoing; 100 included) or sent (incoming:
    /// the 100 Trying, sent at once, or else the first 180/183).
    pub first_provisional: Option<Instant>,
    /// The first 180 or 183 received or sent.
    pub first_ringing: Option<Instant>,
    /// The 2xx to the INVITE received or (first copy) sent.
    pub answer: Option<Instant>,
    /// The ACK of the 2xx sent (outgoing) or received (incoming).
    pub ack: Option<Instant>,
    /// The CANCEL sent (outgoing; when [`Endpoint::cancel`](super::Endpoint::cancel) was
    /// called before any provisional, the CANCEL is sent later, at the first provisional) or
    /// received (incoming).
    pub cancel: Option<Instant>,
    /// Our first BYE sent.
    pub bye_sent: Option<Instant>,
    /// The final response to our BYE received.
    pub bye_response: Option<Instant>,
    /// The far end's BYE received.
    pub bye_received: Option<Instant>,
    /// The final status of the INVITE (the last one, after a challenge): received (outgoing)
    /// or sent (incoming).
    pub final_code: Option<u16>,
    /// The final status of our BYE; `None` when it timed out or none was sent.
    pub bye_code: Option<u16>,
    /// Our BYE got no final response: Timer F expired after this long.
    pub bye_timeout: Option<Duration>,
    /// The final status of our CANCEL, when one came while the call lived.
    pub cancel_code: Option<u16>,
    /// Challenges (401/407) received for the INVITE and the BYE.
    pub auth_challenges: u32,
    /// Our requests (INVITE, BYE) sent again by Timer A or E, as far as observed before their
    /// transactions ended.
    pub requests_retransmitted: u32,
    /// Our 2xx sent again while waiting for the ACK (RFC 3261 §13.3.1.4), and responses
    /// re-sent for a retransmitted request.
    pub responses_retransmitted: u32,
    /// Retransmissions received: the 2xx again (we re-ACKed), or the INVITE again.
    pub duplicates_received: u32,
    /// A 2xx crossed our CANCEL: the call was answered, ACKed and closed with BYE.
    pub answered_before_cancel: bool,
    /// Outgoing: the Request-URIs our INVITE was redirected to (RFC 3261 §8.1.3.4), in order;
    /// empty when it was not. The last is the target of the latest INVITE.
    pub redirects: Vec<String>,
    /// When and why the call ended; always `Some` in [`CallEvent::Ended`](super::CallEvent).
    pub end: Option<CallEnd>,
}

impl CallRecord {
    pub(super) fn new(call_id: &str, direction: CallDirection, invite: Instant) -> Self {
        Self {
            call_id: call_id.to_string(),
            direction,
            invite,
            first_provisional: None,
            first_ringing: None,
            answer: None,
            ack: None,
            cancel: None,
            bye_sent: None,
            bye_response: None,
            bye_received: None,
            final_code: None,
            bye_code: None,
            bye_timeout: None,
            cancel_code: None,
            auth_challenges: 0,
            requests_retransmitted: 0,
            responses_retransmitted: 0,
            duplicates_received: 0,
            answered_before_cancel: false,
            redirects: Vec::new(),
            end: None,
        }
    }

    /// Why the call ended, once it has.
    pub fn reason(&self) -> Option<&CallEndReason> {
        self.end.as_ref().map(|e| &e.reason)
    }

    /// Whether our BYE failed: answered ≥ 300 or timed out. A BYE that crossed the far end's
    /// (both hung up at once) may legitimately get 481 or nothing: that is no failure.
    pub fn bye_failure(&self) -> Option<ByeFailure> {
        if self.bye_sent.is_none() || self.bye_received.is_some() {
            return None;
        }
        if let Some(elapsed) = self.bye_timeout {
            return Some(ByeFailure::Timeout(elapsed));
        }
        self.bye_code
            .filter(|&code| code >= 300)
            .map(ByeFailure::Status)
    }

    /// INVITE to first 180/183 (post-dial delay).
    pub fn post_dial_delay(&self) -> Option<Duration> {
        self.first_ringing
            .map(|at| at.saturating_duration_since(self.invite))
    }

    /// INVITE to 2xx (call setup time).
    pub fn setup_time(&self) -> Option<Duration> {
        self.answer
            .map(|at| at.saturating_duration_since(self.invite))
    }

    /// Our BYE to its final response.
    pub fn bye_round_trip(&self) -> Option<Duration> {
        Some(self.bye_response?.saturating_duration_since(self.bye_sent?))
    }

    /// 2xx to the end of the call (talk time), for answered calls.
    pub fn duration(&self) -> Option<Duration> {
        let end = self.end.as_ref()?.at;
        Some(end.saturating_duration_since(self.answer?))
    }

    pub(super) fn set_once(slot: &mut Option<Instant>, at: Instant) {
        if slot.is_none() {
            *slot = Some(at);
        }
    }
}
