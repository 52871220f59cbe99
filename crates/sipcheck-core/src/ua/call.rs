//! Calls: dialogs and INVITE sessions (RFC 3261 §12–§15) as one sans-IO [`Endpoint`].
//!
//! An [`Endpoint`] owns the [`TransactionLayer`] of one local transport and every call on it,
//! so the shell drives exactly one object, as quinn's `Endpoint` (the shell owns the socket
//! and the clock):
//!
//! ```text
//! loop {
//!     while let Some(t) = ep.poll_transmit() { socket.send_to(&t.bytes, t.destination) }
//!     while let Some(e) = ep.poll_event() { scenario.on_event(&mut ep, now, e) }
//!     select! {
//!         datagram = socket.recv_from() => ep.handle_message(now, Message::parse_datagram(d)?, false, from),
//!         _ = sleep_until(ep.poll_timeout()) => ep.handle_timeout(now),
//!         cmd = scenario => ep.invite(now, ..) / ring / accept / hangup / cancel …
//!     }
//! }
//! ```
//!
//! * Outgoing calls: [`Endpoint::invite`] sends the INVITE (SDP offer from
//!   [`create_offer`], or a delayed offer), answers one 401/407 with credentials, reports
//!   every provisional ([`CallEvent::Progress`], early media from a 183 with SDP), ACKs the
//!   2xx through the route set (RFC 3261 §12.2.1.1, loose or strict routing) and re-ACKs its
//!   retransmissions with the same bytes. [`Endpoint::cancel`] works in every state (§9.1:
//!   the CANCEL waits for the first provisional; a 2xx crossing it is ACKed, then BYE).
//! * Incoming calls: 100 Trying at once (unless [`EndpointConfig::trying`] is off),
//!   [`CallEvent::Incoming`] with the offer, then
//!   [`Endpoint::ring`], [`Endpoint::accept`] (2xx retransmitted until the ACK, §13.3.1.4),
//!   [`Endpoint::reject`]; a CANCEL gets 200 and the INVITE 487.
//! * In a dialog: BYE either way ([`Endpoint::hangup`]), re-INVITE either way (hold and
//!   unhold, [`Endpoint::reinvite`]), UPDATE (RFC 3311: an offer answered in its 200, or a
//!   bodiless session refresh), INFO/OPTIONS answered 200.
//! * Session timers (RFC 4028): a request asking for one (`Session-Expires`, `Supported:
//!   timer`) gets it back in our 2xx with the refresher it named (its sender when it named
//!   none) and `Require: timer`; when the far end makes us the refresher (in its request or
//!   in the 2xx to our INVITE) we send a re-INVITE with our description unchanged every half
//!   interval.
//! * Outside calls: OPTIONS is answered 200 (with Allow and Accept), requests for unknown
//!   dialogs 481, methods we know but do not serve 405, others 501. Requests of the caller's
//!   own (REGISTER, OPTIONS probes) go through [`Endpoint::send_request`] on the same
//!   transaction layer; their transaction events come back as [`CallEvent::Transaction`].
//!
//! Every request within a dialog (the ACK of a 2xx, BYE, re-INVITE) goes to the dialog's next
//! hop (RFC 3261 §8.1.2, §12.2.1.1): the first route of its route set (a loose router, or a
//! strict one, which is then the Request-URI), else the remote target (the far end's
//! Contact). The core resolves no name: `D` is found from the URI by [`NextHop`] (an IP
//! literal host, its port or the transport's default, `maddr`), and when the URI names a host,
//! the call's peer (the INVITE's destination, or the source of an incoming INVITE) is used
//! instead. The INVITE, its CANCEL (§9.1) and the ACK of a non-2xx final response (§17.1.1.3)
//! go with the INVITE transaction, to the peer; responses go where the request came from.
//!
//! Calls are named by a small copyable [`CallId`]; a call is removed when it ends, and its
//! [`CallRecord`] (the timing record, for metrics) travels once, in [`CallEvent::Ended`].

mod dialog;
mod record;
mod redirect;
mod refer;
mod replaces;
mod session_timer;
#[cfg(test)]
mod tests;
mod uac;
mod uas;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use record::{ByeFailure, CallDirection, CallEnd, CallEndReason, CallRecord};
pub use redirect::NotFollowed;
pub use refer::{parse_sipfrag, REFER_EXPIRES};
pub use replaces::{refer_to_replacing, split_refer_to, Replaces};

use self::dialog::{header_tag, record_route, user_of, CallIdKey, Dialog, Routing};
use self::session_timer::SessionTimer;
use super::register::LocalEnd;
use crate::ids::IdGen;
use crate::sdp::{
    answer, create_offer, LocalMedia, Negotiated, NegotiationError, SessionDescription,
};
use crate::sip::auth::{AuthError, ChallengeKind, Credentials, DigestClient};
use crate::sip::build::{RequestSpec, ViaSpec};
use crate::sip::msg::{BytesStr, Message, Method, Name};
use crate::sip::transaction::{
    Absorbed, ClientState, Dispatch, TimerConfig, TransactionError, TransactionEvent,
    TransactionLayer, Transmit, TxId, Uas2xxEvent, Uas2xxRetransmitter,
    DEFAULT_MAX_SERVER_TRANSACTIONS,
};
use crate::sip::transport::Transport;
use crate::sip::uri::NextHop;
use crate::slots::{Bucket, SlotId, Slots};

/// The methods we accept, as written in `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// The body type we accept, as written in `Accept`.
pub const ACCEPT: &str = "application/sdp";

const SDP: &str = "application/sdp";

/// How many challenges of one request are answered before giving up: one, plus one
/// `stale=true` re-challenge (the [`DigestClient`] refuses any other second challenge).
const MAX_CHALLENGES: u32 = 2;

/// How often a re-INVITE of ours refused with 491 (glare) is sent again.
const MAX_GLARE_RETRIES: u32 = 3;

/// How long a session refresh of ours waits when another offer is under way, or after a
/// refresh (or any re-INVITE of ours) was refused.
const REFRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Names one call of an [`Endpoint`].
///
/// Ids are not reused while the call lives; a stale id (of an ended call) names nothing,
/// even when its slot was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(SlotId);

#[cfg(test)]
impl CallId {
    /// An id for tests of the layers above the endpoint.
    pub(crate) const fn for_test(index: u32) -> Self {
        Self(SlotId::first(index))
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call{}.{}", self.0.index(), self.0.generation())
    }
}

/// How an [`Endpoint`] is set up.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The local transport and address: Via and Contact of incoming calls (their responses
    /// and later requests), Via of the ACKs sent for 2xx of calls already gone, and the
    /// reliability of [`Endpoint::send_request`]. `routes` is not used: each outgoing call
    /// carries its own ([`OutgoingCall::local`]).
    pub local: LocalEnd,
    /// The transaction timers (T1, T2, T4).
    pub timers: TimerConfig,
    /// The user part of our Contact in incoming calls.
    pub contact_user: String,
    /// Send 100 Trying as soon as an INVITE arrives (the default). Turn it off only when
    /// every [`CallEvent::Incoming`] is answered, rung or rejected at once: RFC 3261 §17.2.1
    /// lets a UAS that responds within 200 ms leave the 100 out (one datagram less per call).
    pub trying: bool,
    /// The most server transactions alive at once; a request beyond it is answered
    /// statelessly with 503 and `Retry-After` (RFC 3261 §21.5.4). Default
    /// [`DEFAULT_MAX_SERVER_TRANSACTIONS`].
    pub max_server_transactions: usize,
    /// Accept a REFER within a confirmed call (202 and [`CallEvent::Referred`]); the user
    /// then owes the far end the transfer's NOTIFYs. Off, REFER is refused 405.
    pub accept_refer: bool,
}

impl EndpointConfig {
    /// RFC timers and the Contact user `sipcheck`.
    pub fn new(local: LocalEnd) -> Self {
        Self {
            local,
            timers: TimerConfig::default(),
            contact_user: "sipcheck".to_string(),
            trying: true,
            max_server_transactions: DEFAULT_MAX_SERVER_TRANSACTIONS,
            accept_refer: false,
        }
    }
}

/// Where an outgoing call's SDP offer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfferPlacement {
    /// In the INVITE; the answer comes in the 2xx (or a 183 before it).
    #[default]
    InInvite,
    /// Delayed offer: the INVITE has no body, the far end offers in its 2xx and we answer in
    /// the ACK (RFC 3261 §13.2.1).
    Delayed,
}

/// An outgoing call to place with [`Endpoint::invite`].
#[derive(Debug, Clone)]
pub struct OutgoingCall<D> {
    /// The Request-URI (and initial remote target).
    pub request_uri: String,
    /// Our address of record, in From (`sip:alice@example.com`; a name-addr is kept as is).
    pub from_uri: String,
    /// The called party, in To.
    pub to_uri: String,
    /// Where to send the INVITE, its CANCEL and the ACK of a non-2xx (the next hop: the
    /// outbound proxy, or the callee). Requests within the dialog go to its own next hop (the
    /// module documentation says how), this destination when that names a host.
    pub destination: D,
    /// Credentials for a 401/407 to the INVITE or the BYE.
    pub credentials: Option<Credentials>,
    /// Our media: the offer (or the answer to a delayed offer), and re-INVITE answers.
    pub local_media: LocalMedia,
    /// Transport and address for Via and Contact; `routes` is the preloaded route of the
    /// INVITE (an outbound proxy as `<sip:proxy;lr>`).
    pub local: LocalEnd,
    /// Offer in the INVITE, or delayed offer.
    pub offer: OfferPlacement,
    /// Further headers for the INVITE, in order.
    pub extra_headers: Vec<(String, String)>,
    /// Follow at most this many redirections (3xx, RFC 3261 §8.1.3.4); 0: a 3xx ends the
    /// call, [`CallEndReason::Redirected`].
    pub max_redirects: u32,
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Outgoing: INVITE sent, no provisional response yet (a CANCEL may be pending).
    Calling,
    /// Outgoing: a provisional response arrived.
    Proceeding,
    /// Outgoing: CANCEL sent, waiting for the INVITE's final response.
    Cancelling,
    /// Incoming: INVITE received, not answered yet (ringing or not).
    Offered,
    /// Incoming: 2xx sent, waiting for the ACK.
    AwaitingAck,
    /// The dialog is confirmed: the call is up.
    Confirmed,
    /// BYE sent, waiting for its final response.
    Terminating,
}

impl CallState {
    fn as_str(self) -> &'static str {
        match self {
            CallState::Calling => "calling",
            CallState::Proceeding => "proceeding",
            CallState::Cancelling => "cancelling",
            CallState::Offered => "offered",
            CallState::AwaitingAck => "awaiting the ACK",
            CallState::Confirmed => "confirmed",
            CallState::Terminating => "terminating",
        }
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header an INVITE announces its caller's audio-signature call number in (the callee
/// plays the code after it and expects the caller's).
pub const SIGNATURE_HEADER: &str = "X-Sipcheck-Signature";

/// What the endpoint reports.
#[derive(Debug, Clone)]
pub enum CallEvent<D> {
    /// A new incoming call; answer it with [`Endpoint::ring`], [`Endpoint::accept`] or
    /// [`Endpoint::reject`].
    Incoming {
        /// The new call.
        call: CallId,
        /// The From header value (a view of the INVITE's bytes, copied only when asked).
        from: BytesStr,
        /// The To header value.
        to: BytesStr,
        /// The Request-URI.
        request_uri: BytesStr,
        /// The SDP offer; `None` for a delayed offer (we offer in the 2xx). Shared with the
        /// call, which answers it.
        offer: Option<Arc<SessionDescription>>,
        /// Where the INVITE came from (the transport address it was received from).
        source: D,
        /// The call's number for audio signatures, from the INVITE's
        /// [`SIGNATURE_HEADER`] (`None` without it, or when it is not a number).
        signature_call: Option<u64>,
        /// The call of ours its Replaces header names (RFC 3891, attended transfer): once
        /// answered, the new call takes that one's place, which its user ends.
        replaces: Option<CallId>,
    },
    /// A provisional response (100–199) to our INVITE.
    Progress {
        /// The call.
        call: CallId,
        /// The status code.
        code: u16,
        /// When it arrived.
        at: Instant,
    },
    /// A provisional response with an SDP answer: early media is negotiated (reported once).
    EarlyMedia {
        /// The call.
        call: CallId,
        /// Where and how to send and expect RTP.
        negotiated: Negotiated,
    },
    /// The call is up: outgoing, the 2xx arrived and was ACKed; incoming, the ACK arrived.
    Answered {
        /// The call.
        call: CallId,
        /// Where and how to send and expect RTP.
        negotiated: Negotiated,
    },
    /// A re-INVITE (either way) changed the media: hold, unhold, new address.
    MediaUpdated {
        /// The call.
        call: CallId,
        /// The new media.
        negotiated: Negotiated,
    },
    /// Our re-INVITE was refused (e.g. 488, 491); the call goes on with the previous media.
    UpdateFailed {
        /// The call.
        call: CallId,
        /// The final status of the re-INVITE.
        code: u16,
    },
    /// Our INVITE got a 3xx and was sent again to one of its Contacts (RFC 3261 §8.1.3.4).
    Redirected {
        /// The call.
        call: CallId,
        /// The 3xx, or the failure of the previous target when it is the 3xx's next Contact.
        code: u16,
        /// The new Request-URI.
        target: String,
    },
    /// The call ended and was removed; `record.end` is set.
    Ended {
        /// The call (now stale).
        call: CallId,
        /// Its timing record and end reason.
        record: Box<CallRecord>,
    },
    /// An INVITE that started no call was refused by the endpoint itself: malformed (400),
    /// of a body type we do not take (415), requiring an extension (420), a merged copy
    /// (482), or naming a dialog we do not know (481). Reported so that a responder accounts
    /// for every INVITE it received.
    InviteRefused {
        /// The status code sent.
        code: u16,
        /// Why, in words.
        reason: String,
        /// The From header value (empty when absent).
        from: String,
        /// The Call-ID.
        call_id: String,
    },
    /// The far end asked us to call `refer_to` (a blind transfer, RFC 3515): the REFER was
    /// answered 202 and `SIP/2.0 100 Trying` notified; the user places the new call and
    /// reports its outcome with [`Endpoint::notify_transfer`].
    Referred {
        /// The call the REFER came in.
        call: CallId,
        /// The `sip:`/`sips:` URI to call.
        refer_to: String,
        /// The Referred-By value, to copy into the new INVITE.
        referred_by: Option<String>,
    },
    /// The final response to our REFER ([`Endpoint::refer`]); 408 when it timed out.
    ReferAnswered {
        /// The call.
        call: CallId,
        /// The status code.
        code: u16,
    },
    /// A NOTIFY of the transfer we asked for: the status line of the transferee's new call.
    TransferNotified {
        /// The call.
        call: CallId,
        /// The status code of the sipfrag.
        code: u16,
        /// Its reason phrase.
        reason: String,
        /// The subscription is terminated (the last NOTIFY).
        terminated: bool,
    },
    /// An event of a transaction started with [`Endpoint::send_request`].
    Transaction(TransactionEvent<D>),
}

/// Why a call operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The id names no live call (it ended, or never existed).
    #[error("{0} does not exist (it may have ended)")]
    UnknownCall(CallId),
    /// The operation does not apply in the call's state.
    #[error("{call} cannot {action} while {state}")]
    InvalidState {
        /// The call.
        call: CallId,
        /// What was asked.
        action: &'static str,
        /// The call's state.
        state: CallState,
    },
    /// A status code outside the range the operation takes.
    #[error("{code} is not a valid status for {action} (expected {expected})")]
    InvalidStatus {
        /// The code given.
        code: u16,
        /// What was asked.
        action: &'static str,
        /// The accepted range.
        expected: &'static str,
    },
    /// The offer could not be answered with the media given (for [`Endpoint::accept`] the
    /// call was then refused with 488 and ended).
    #[error("the offer cannot be answered: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The incoming call has no offer to answer early (delayed offer).
    #[error("{0} has no SDP offer to answer in a 183 (delayed offer)")]
    NoOffer(CallId),
    /// The transaction layer refused the request (e.g. it does not parse).
    #[error("the transaction layer refused the request: {0}")]
    Transaction(#[from] TransactionError),
}

/// Running totals of an [`Endpoint`]; nothing in them is an error of ours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Outgoing calls placed.
    pub outgoing_calls: u64,
    /// Incoming calls offered to the user.
    pub incoming_calls: u64,
    /// Calls ended and removed.
    pub ended_calls: u64,
    /// Out-of-dialog OPTIONS answered 200.
    pub options_answered: u64,
    /// Requests answered 481 (no such dialog or transaction).
    pub no_dialog: u64,
    /// Requests answered 405 or 501.
    pub method_refused: u64,
    /// Other requests refused (400, 415, 420, 482, 491, 500).
    pub requests_refused: u64,
    /// 2xx retransmissions ACKed again.
    pub acks_resent: u64,
    /// 2xx from further forks, ACKed and closed with BYE (RFC 3261 §13.2.2.4).
    pub forks_released: u64,
    /// ACKs that matched no dialog waiting for one (duplicates included).
    pub stray_acks: u64,
    /// Incoming INVITEs received again after our 2xx ended their transaction.
    pub invite_retransmissions: u64,
}

/// The transactions a call runs, to route their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Invite,
    Cancel,
    Bye,
    Reinvite,
    IncomingInvite,
    /// Our REFER (a transfer).
    Refer,
    /// Our NOTIFY of a transfer's progress.
    Notify,
}

/// Who owns a transaction: the user ([`Endpoint::send_request`]) or a call. Transactions in
/// neither (auto-answered requests) are not tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    User,
    Call(CallId, Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    /// Not asked.
    None,
    /// Asked before any provisional: sent with the first one (RFC 3261 §9.1).
    Pending,
    /// Sent.
    Sent,
}

/// A 2xx of ours waiting for its ACK.
#[derive(Debug, Clone)]
struct Awaiting2xx {
    /// The CSeq of the INVITE it answers.
    cseq: u32,
    retransmitter: Uas2xxRetransmitter,
    /// The initial INVITE's 2xx (else a re-INVITE's).
    initial: bool,
}

/// Our re-INVITE in progress.
#[derive(Debug, Clone)]
struct OutgoingReinvite {
    tx: TxId,
    offer: SessionDescription,
    media: LocalMedia,
    challenges: u32,
    /// A session refresh of ours (RFC 4028), not asked for by the user: its outcome is no
    /// event.
    refresh: bool,
    /// How many times it was sent again after a 491 (glare).
    glare_retries: u32,
}

/// Our re-INVITE refused with 491 (both ends offered at once), to send again at `at`
/// (RFC 3261 §14.1).
#[derive(Debug, Clone)]
struct GlareRetry {
    at: Instant,
    media: LocalMedia,
    refresh: bool,
    retries: u32,
}

#[derive(Debug, Clone)]
struct Call<D> {
    state: CallState,
    direction: CallDirection,
    /// The INVITE's destination, or the source of an incoming INVITE: where the INVITE
    /// transaction's messages go.
    peer: D,
    /// The next hop of requests within the dialog ([`Dialog::next_hop_uri`]), the peer until
    /// the dialog says otherwise or names a host.
    hop: D,
    reliable: bool,
    transport: Transport,
    local_addr: SocketAddr,
    /// Our Contact header value (shared by every incoming call).
    contact: Arc<str>,
    dialog: Dialog,
    /// The INVITE transaction: client (outgoing) or server (incoming), while it matters.
    invite_tx: Option<TxId>,
    /// The CSeq of the (latest) initial INVITE.
    invite_cseq: u32,
    // Outgoing only.
    request_uri: String,
    initial_routes: Vec<String>,
    extra_headers: Vec<(String, String)>,
    auth: Option<DigestClient>,
    /// The credentials of the latest INVITE, repeated in its ACK.
    auth_headers: Vec<(&'static str, String)>,
    invite_challenges: u32,
    /// Where the INVITE was redirected to, and may go next.
    redirects: redirect::Redirects,
    cancel: CancelState,
    /// §9.1: give up on the INVITE `64·T1` after the CANCEL.
    cancel_deadline: Option<Instant>,
    /// The ACK of the 2xx, re-sent for each retransmission of it.
    ack: Option<Bytes>,
    /// The answer of a 18x (early media), used when the 2xx carries none.
    early: Option<(SessionDescription, Negotiated)>,
    // Incoming only.
    invite_branch: Option<Box<str>>,
    remote_offer: Option<Arc<SessionDescription>>,
    awaiting: Option<Awaiting2xx>,
    hangup_after_ack: bool,
    // Media.
    local_media: Option<LocalMedia>,
    /// Our offer waiting for its answer (INVITE offer, delayed-offer 2xx, offer-less
    /// re-INVITE 2xx).
    offer_sent: Option<SessionDescription>,
    local_sdp: Option<SessionDescription>,
    remote_sdp: Option<SessionDescription>,
    negotiated: Option<Negotiated>,
    // Re-INVITE and BYE.
    reinvite: Option<OutgoingReinvite>,
    /// Our re-INVITE waiting to be sent again after a 491.
    glare: Option<GlareRetry>,
    reinvite_ack: Option<(u32, Bytes)>,
    bye_tx: Option<TxId>,
    bye_challenges: u32,
    /// The reason to report once the BYE completes, when it is not a plain hang-up.
    pending_reason: Option<CallEndReason>,
    /// The session timer (RFC 4028), once a 2xx set one.
    session: SessionTimer,
    /// Incoming: the session timer of our 2xx to the INVITE.
    timer_answer: Option<session_timer::TimerAnswer>,
    record: CallRecord,
    /// The deadline in the endpoint's timer set.
    scheduled: Option<Instant>,
}

impl<D> Call<D> {
    fn deadline(&self) -> Option<Instant> {
        let retransmit = self
            .awaiting
            .as_ref()
            .and_then(|a| a.retransmitter.poll_timeout());
        [
            retransmit,
            self.cancel_deadline,
            self.session.refresh_at,
            self.glare.as_ref().map(|g| g.at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Follow the dialog's route set and remote target after they were set or refreshed.
    fn update_hop(&mut self, hops: &mut HopMemo<D>)
    where
        D: NextHop + Clone,
    {
        self.hop = hops
            .hop_of(self.dialog.next_hop_uri(), self.transport)
            .unwrap_or_else(|| self.peer.clone());
    }

    fn via<'a>(&self, branch: &'a str) -> ViaSpec<'a> {
        ViaSpec {
            transport: self.transport,
            sent_by: self.local_addr,
            branch,
            rport: true,
        }
    }
}

fn call_ref<D>(slots: &Slots<Call<D>>, id: CallId) -> Option<&Call<D>> {
    slots.get(id.0)
}

fn call_mut<D>(slots: &mut Slots<Call<D>>, id: CallId) -> Option<&mut Call<D>> {
    slots.get_mut(id.0)
}

/// The live call `id`, if it is in one of `states`.
fn expect_state<'a, D>(
    slots: &'a mut Slots<Call<D>>,
    call: CallId,
    action: &'static str,
    states: &[CallState],
) -> Result<&'a mut Call<D>, CallError> {
    let c = call_mut(slots, call).ok_or(CallError::UnknownCall(call))?;
    if states.contains(&c.state) {
        Ok(c)
    } else {
        Err(CallError::InvalidState {
            call,
            action,
            state: c.state,
        })
    }
}

/// Every call of one local transport, over one [`TransactionLayer`].
///
/// * Input: [`handle_message`](Self::handle_message), [`handle_timeout`](Self::handle_timeout)
///   and the user's calls ([`invite`](Self::invite), [`ring`](Self::ring),
///   [`accept`](Self::accept), [`reject`](Self::reject), [`cancel`](Self::cancel),
///   [`hangup`](Self::hangup), [`reinvite`](Self::reinvite),
///   [`send_request`](Self::send_request)).
/// * Output: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
///
/// Dialogs are matched by Call-ID (a map keyed by the Call-ID, written once per call) and
/// then our tag and the far end's, compared in place: matching a message allocates nothing.
/// Ended calls are removed at once; their transactions finish in the layer.
#[derive(Debug, Clone)]
pub struct Endpoint<D> {
    config: EndpointConfig,
    layer: TransactionLayer<D>,
    ids: IdGen,
    /// The To tag of responses outside any dialog (OPTIONS, 405, 481 …).
    tag: Box<str>,
    /// Our Contact in incoming calls.
    incoming_contact: Arc<str>,
    /// The SDP body of the response being written, kept for reuse.
    body: Vec<u8>,
    slots: Slots<Call<D>>,
    dialogs: HashMap<CallIdKey, Bucket<CallId>>,
    owners: HashMap<TxId, Owner>,
    timers: BTreeSet<(Instant, CallId)>,
    events: VecDeque<CallEvent<D>>,
    counters: EndpointCounters,
    /// Where the message being handled came from, and over which kind of transport (for the
    /// `NewRequest` events it produces).
    source: Option<(D, bool)>,
    /// The next hop of the far end's Contact last read ([`HopMemo`]).
    hops: HopMemo<D>,
}

/// The destination [`NextHop::from_uri`] gave for the URI and transport it was last asked
/// about: the calls of a load mostly reach the same far end, whose Contact is then read
/// once, not once per call. `from_uri` depends on its two arguments alone, so the answer is
/// the same.
#[derive(Debug, Clone)]
struct HopMemo<D> {
    last: Option<(Box<str>, Transport, Option<D>)>,
}

impl<D> Default for HopMemo<D> {
    fn default() -> Self {
        Self { last: None }
    }
}

impl<D: NextHop + Clone> HopMemo<D> {
    /// [`NextHop::from_uri`] of `uri` over `transport`.
    fn hop_of(&mut self, uri: &str, transport: Transport) -> Option<D> {
        if let Some((last, t, hop)) = &self.last {
            if *t == transport && **last == *uri {
                return hop.clone();
            }
        }
        let hop = D::from_uri(uri, transport);
        self.last = Some((uri.into(), transport, hop.clone()));
        hop
    }
}

impl<D: Clone + NextHop> Endpoint<D> {
    /// An endpoint with no call, drawing its identifiers from `ids`.
    pub fn new(config: EndpointConfig, mut ids: IdGen) -> Self {
        let tag = ids.tag().into_boxed_str();
        let local = &config.local;
        let incoming_contact = contact_value(&config.contact_user, local.transport, local.addr);
        Self {
            incoming_contact: incoming_contact.into(),
            body: Vec::new(),
            layer: TransactionLayer::new(config.timers)
                .with_max_server_transactions(config.max_server_transactions),
            config,
            ids,
            tag,
            slots: Slots::default(),
            dialogs: HashMap::new(),
            owners: HashMap::new(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            counters: EndpointCounters::default(),
            source: None,
            hops: HopMemo::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Accept REFER within confirmed calls from now on (or refuse it 405 again):
    /// [`EndpointConfig::accept_refer`].
    pub fn set_accept_refer(&mut self, accept: bool) {
        self.config.accept_refer = accept;
    }

    /// The transaction layer, for its counters and size.
    pub fn transactions(&self) -> &TransactionLayer<D> {
        &self.layer
    }

    /// The identifier generator, to build the caller's own requests (REGISTER …).
    pub fn ids(&mut self) -> &mut IdGen {
        &mut self.ids
    }

    /// The running totals.
    pub fn counters(&self) -> &EndpointCounters {
        &self.counters
    }

    /// How many calls are live.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no call is live.
    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// The state of a live call.
    pub fn state(&self, call: CallId) -> Option<CallState> {
        call_ref(&self.slots, call).map(|c| c.state)
    }

    /// The timing record of a live call (its `end` is `None`).
    pub fn record(&self, call: CallId) -> Option<&CallRecord> {
        call_ref(&self.slots, call).map(|c| &c.record)
    }

    /// The media of a live call, once negotiated.
    pub fn negotiated(&self, call: CallId) -> Option<&Negotiated> {
        call_ref(&self.slots, call).and_then(|c| c.negotiated.as_ref())
    }

    /// The SIP Call-ID of a live call.
    pub fn sip_call_id(&self, call: CallId) -> Option<&str> {
        call_ref(&self.slots, call).map(|c| c.dialog.call_id.as_str())
    }

    /// Name `user` in the Contact of an incoming call (its responses and requests): the
    /// account that was called, when the endpoint serves several.
    pub fn set_contact_user(&mut self, call: CallId, user: &str) {
        if let Some(c) = call_mut(&mut self.slots, call) {
            if c.direction == CallDirection::Incoming {
                // A dialog begun by a sips: URI keeps its sips: Contact (RFC 3261 §12.1.1).
                c.contact = if c.contact.starts_with("<sips:") {
                    sips_contact(user, c.transport, c.local_addr).into()
                } else {
                    contact_value(user, c.transport, c.local_addr).into()
                };
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Driving
    // ----------------------------------------------------------------------------------

    /// Feed a message received from `source` over a transport that is `reliable` or not.
    pub fn handle_message(&mut self, now: Instant, message: Message, reliable: bool, source: D) {
        if !message.is_request() {
            self.observe_final(&message);
        }
        self.source = Some((source.clone(), reliable));
        let dispatch = self.layer.handle_message(now, message, reliable, source);
        if let Dispatch::Server {
            tx,
            absorbed: Absorbed::RetransmittedRequest,
        } = dispatch
        {
            if let Some(Owner::Call(id, _)) = self.owners.get(&tx).copied() {
                if let Some(call) = call_mut(&mut self.slots, id) {
                    call.record.duplicates_received += 1;
                }
            }
        }
        self.drain(now);
        self.source = None;
    }

    /// Fire every timer that expired at or before `now`: the transactions', the 2xx
    /// retransmissions and the CANCEL guard.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        self.drain(now);
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(call) = call_mut(&mut self.slots, id) {
                call.scheduled = None;
                self.call_timeout(now, id);
                self.reschedule(id);
            }
        }
        self.drain(now);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<D>> {
        self.layer.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CallEvent<D>> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.timers.first().map(|&(at, _)| at);
        match (self.layer.poll_timeout(), calls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Start a client transaction for a request of the caller's own (REGISTER, OPTIONS …),
    /// over the endpoint's transport. Its responses, timeout and end come back as
    /// [`CallEvent::Transaction`].
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Bytes,
        destination: D,
    ) -> Result<TxId, CallError> {
        let reliable = self.config.local.transport.is_reliable();
        let tx = self
            .layer
            .send_request_bytes(now, request, reliable, destination)?;
        self.owners.insert(tx, Owner::User);
        Ok(tx)
    }

    /// Give up on request `tx` of [`Self::send_request`] now (no response can come, or no
    /// longer matters): its transaction stops retransmitting and ends.
    pub fn abandon_request(&mut self, tx: TxId) {
        if matches!(self.owners.get(&tx), Some(Owner::User)) {
            let _ = self.layer.abandon(tx);
        }
    }

    /// Send bytes outside any transaction (a hand-made ACK, a raw test message).
    pub fn send_stateless(&mut self, destination: D, bytes: Bytes) {
        self.layer.send_stateless(destination, bytes);
    }

    /// How many calls (their dialogs or INVITEs not yet over) have `destination` as their
    /// peer or in-dialog next hop: a connection to it that closes would end them.
    #[must_use]
    pub fn calls_with(&self, destination: &D) -> usize
    where
        D: PartialEq,
    {
        self.slots
            .iter()
            .filter(|(_, call)| call.peer == *destination || call.hop == *destination)
            .count()
    }

    /// The shell could not reach `destination` (connection refused or closed, ICMP
    /// unreachable): every call whose peer or in-dialog next hop it is ends with
    /// [`CallEndReason::TransportError`], its transactions dropped. Transactions started with
    /// [`send_request`](Self::send_request) are left to time out.
    pub fn transport_failed(&mut self, now: Instant, destination: &D)
    where
        D: PartialEq,
    {
        self.flow_failed(now, destination, None, "");
    }

    /// A connection to `destination` could not be opened (refused, its TLS or WebSocket
    /// handshake failed), so what was to go over it never went: like
    /// [`transport_failed`](Self::transport_failed), but when each user agent has a
    /// connection of its own (`ua`, the user part of our `From`), only that user agent's
    /// calls end; the others' connections to the same peer are not this one. `why`: the
    /// transport's words, kept in the calls' end reason.
    pub fn flow_failed(&mut self, now: Instant, destination: &D, ua: Option<&str>, why: &str)
    where
        D: PartialEq,
    {
        let ids: Vec<CallId> = self
            .slots
            .iter()
            .filter(|(_, call)| call.peer == *destination || call.hop == *destination)
            .filter(|(_, call)| ua.is_none_or(|ua| user_of(&call.dialog.local_header) == Some(ua)))
            .map(|(id, _)| CallId(id))
            .collect();
        for id in ids {
            if let Some(call) = call_ref(&self.slots, id) {
                let txs = [
                    call.invite_tx,
                    call.bye_tx,
                    call.reinvite.as_ref().map(|r| r.tx),
                ];
                for tx in txs.into_iter().flatten() {
                    let _ = self.layer.abandon(tx);
                }
            }
            let detail = why.to_owned();
            self.end_call(now, id, CallEndReason::TransportError { detail });
        }
        self.drain(now);
    }

    // ----------------------------------------------------------------------------------
    // User operations
    // ----------------------------------------------------------------------------------

    /// Place a call: send the INVITE now.
    pub fn invite(&mut self, now: Instant, call: OutgoingCall<D>) -> Result<CallId, CallError> {
        let call_id = format!("{}@{}", self.ids.call_id(), call.local.addr.ip());
        let local_tag = self.ids.tag();
        let user = user_of(&call.from_uri).unwrap_or(&self.config.contact_user);
        // RFC 3261 §8.1.1.8: a sips: Request-URI asks for a sips: Contact.
        let contact = if is_sips(&call.request_uri) {
            sips_contact(user, call.local.transport, call.local.addr).into()
        } else {
            contact_value(user, call.local.transport, call.local.addr).into()
        };
        let offer_sent = match call.offer {
            OfferPlacement::InInvite => Some(create_offer(&call.local_media)),
            OfferPlacement::Delayed => None,
        };
        let dialog = Dialog {
            call_id: call_id.as_str().into(),
            local_header: format!("{};tag={local_tag}", name_addr(&call.from_uri)),
            local_tag: local_tag.into_boxed_str(),
            remote_tag: None,
            remote_header: name_addr(&call.to_uri),
            local_cseq: 1,
            remote_cseq: None,
            remote_target: call.request_uri.clone(),
            route_set: Vec::new(),
        };
        let redirects = redirect::Redirects::new(&call.request_uri, call.max_redirects);
        let entry = Call {
            state: CallState::Calling,
            direction: CallDirection::Outgoing,
            hop: call.destination.clone(),
            peer: call.destination,
            reliable: call.local.transport.is_reliable(),
            transport: call.local.transport,
            local_addr: call.local.addr,
            contact,
            dialog,
            invite_tx: None,
            invite_cseq: 1,
            request_uri: call.request_uri,
            initial_routes: call.local.routes,
            extra_headers: call.extra_headers,
            auth: call.credentials.map(DigestClient::new),
            auth_headers: Vec::new(),
            invite_challenges: 0,
            redirects,
            cancel: CancelState::None,
            cancel_deadline: None,
            ack: None,
            early: None,
            invite_branch: None,
            remote_offer: None,
            awaiting: None,
            hangup_after_ack: false,
            local_media: Some(call.local_media),
            offer_sent,
            local_sdp: None,
            remote_sdp: None,
            negotiated: None,
            reinvite: None,
            glare: None,
            reinvite_ack: None,
            bye_tx: None,
            bye_challenges: 0,
            pending_reason: None,
            session: SessionTimer::default(),
            timer_answer: None,
            record: CallRecord::new(&call_id, CallDirection::Outgoing, now),
            scheduled: None,
        };
        let id = self.insert(entry);
        if let Err(error) = self.send_invite(now, id) {
            self.remove(id);
            return Err(error);
        }
        self.counters.outgoing_calls += 1;
        Ok(id)
    }

    /// Incoming call: send 180 Ringing (with our To tag, Contact and the Record-Route).
    pub fn ring(&mut self, now: Instant, call: CallId) -> Result<(), CallError> {
        let c = expect_state(&mut self.slots, call, "ring", &[CallState::Offered])?;
        let tx = c.invite_tx.ok_or(CallError::UnknownCall(call))?;
        let extra = [("Contact", &*c.contact)];
        respond(
            &mut self.layer,
            now,
            tx,
            180,
            Some(&*c.dialog.local_tag),
            &extra,
            None,
        )?;
        CallRecord::set_once(&mut c.record.first_provisional, now);
        CallRecord::set_once(&mut c.record.first_ringing, now);
        Ok(())
    }

    /// Incoming call: answer the offer now in a 183 Session Progress (early media). The
    /// 2xx of [`accept`](Self::accept) repeats this answer.
    pub fn early_media(
        &mut self,
        now: Instant,
        call: CallId,
        media: LocalMedia,
    ) -> Result<Negotiated, CallError> {
        let c = expect_state(
            &mut self.slots,
            call,
            "send early media",
            &[CallState::Offered],
        )?;
        let offer = c.remote_offer.as_ref().ok_or(CallError::NoOffer(call))?;
        let (sdp, negotiated) = answer(offer, &media)?;
        let tx = c.invite_tx.ok_or(CallError::UnknownCall(call))?;
        let body = sdp.to_bytes();
        let extra = [("Contact", &*c.contact)];
        respond(
            &mut self.layer,
            now,
            tx,
            183,
            Some(&*c.dialog.local_tag),
            &extra,
            Some((SDP, &body)),
        )?;
        CallRecord::set_once(&mut c.record.first_provisional, now);
        CallRecord::set_once(&mut c.record.first_ringing, now);
        c.local_sdp = Some(sdp);
        c.local_media = Some(media);
        c.negotiated = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// Incoming call: answer 200 with our SDP (the answer to the offer, or our offer when the
    /// INVITE had none), retransmitted until the ACK (RFC 3261 §13.3.1.4).
    ///
    /// Returns the negotiated media, or `None` for a delayed offer (the answer comes in the
    /// ACK; [`CallEvent::Answered`] carries it). When the offer cannot be answered with
    /// `media`, the call is refused with 488 and ends with [`CallEndReason::CodecRefused`].
    pub fn accept(
        &mut self,
        now: Instant,
        call: CallId,
        media: LocalMedia,
    ) -> Result<Option<Negotiated>, CallError> {
        let c = expect_state(&mut self.slots, call, "accept", &[CallState::Offered])?;
        let tx = c.invite_tx.ok_or(CallError::UnknownCall(call))?;
        let (sdp, negotiated, offer_sent) = if let Some(sdp) = c.local_sdp.clone() {
            (sdp, c.negotiated.clone(), None)
        } else if let Some(offer) = &c.remote_offer {
            match answer(offer, &media) {
                Ok((sdp, negotiated)) => (sdp, Some(negotiated), None),
                Err(error) => {
                    let tag = c.dialog.local_tag.clone();
                    c.record.final_code = Some(488);
                    respond(&mut self.layer, now, tx, 488, Some(&tag), &[], None)?;
                    let reason = match &error {
                        NegotiationError::Srtp(srtp) => CallEndReason::SrtpRefused(srtp.clone()),
                        _ => CallEndReason::CodecRefused,
                    };
                    self.end_call(now, call, reason);
                    return Err(CallError::Negotiation(error));
                }
            }
        } else {
            let offer = create_offer(&media);
            (offer.clone(), None, Some(offer))
        };
        self.body.clear();
        sdp.write_to(&mut self.body);
        let mut extra = vec![("Contact", &*c.contact), ("Allow", ALLOW)];
        if let Some(timer) = &c.timer_answer {
            extra.extend(timer.headers());
        }
        let response = respond(
            &mut self.layer,
            now,
            tx,
            200,
            Some(&*c.dialog.local_tag),
            &extra,
            Some((SDP, &self.body)),
        )?;
        c.awaiting = Some(Awaiting2xx {
            cseq: c.invite_cseq,
            retransmitter: Uas2xxRetransmitter::new(now, response, self.config.timers),
            initial: true,
        });
        c.invite_tx = None;
        c.state = CallState::AwaitingAck;
        if let Some(timer) = c.timer_answer.take() {
            c.session.set(now, timer.delta, timer.we_refresh);
        }
        c.record.answer = Some(now);
        c.record.final_code = Some(200);
        c.local_media = Some(media);
        c.local_sdp = Some(sdp);
        c.negotiated.clone_from(&negotiated);
        c.offer_sent = offer_sent;
        // The offer answered is now the remote description (a re-INVITE is compared with it).
        if let Some(offer) = c.remote_offer.take() {
            c.remote_sdp = Some(Arc::unwrap_or_clone(offer));
        }
        self.reschedule(call);
        Ok(negotiated)
    }

    /// Incoming call: refuse it with `code` (300–699) and end it
    /// ([`CallEndReason::Declined`]).
    pub fn reject(&mut self, now: Instant, call: CallId, code: u16) -> Result<(), CallError> {
        if !(300..=699).contains(&code) {
            return Err(CallError::InvalidStatus {
                code,
                action: "reject",
                expected: "300-699",
            });
        }
        let c = expect_state(&mut self.slots, call, "reject", &[CallState::Offered])?;
        let tx = c.invite_tx.ok_or(CallError::UnknownCall(call))?;
        c.record.final_code = Some(code);
        respond(
            &mut self.layer,
            now,
            tx,
            code,
            Some(&*c.dialog.local_tag),
            &[],
            None,
        )?;
        self.end_call(now, call, CallEndReason::Declined { code });
        Ok(())
    }

    /// Cancel an outgoing call, whatever its state: before any provisional the CANCEL waits
    /// for the first one (RFC 3261 §9.1, or a final response settles it: a 2xx is ACKed and
    /// closed with BYE); after one, CANCEL now and expect 487; once answered, BYE. For an
    /// incoming call this is [`hangup`](Self::hangup).
    pub fn cancel(&mut self, now: Instant, call: CallId) -> Result<(), CallError> {
        let c = call_mut(&mut self.slots, call).ok_or(CallError::UnknownCall(call))?;
        match c.state {
            CallState::Calling => {
                if c.cancel == CancelState::None {
                    c.cancel = CancelState::Pending;
                }
                Ok(())
            }
            CallState::Proceeding => {
                c.cancel = CancelState::Pending;
                self.send_cancel(now, call);
                Ok(())
            }
            CallState::Cancelling | CallState::Terminating => Ok(()),
            CallState::Offered | CallState::AwaitingAck | CallState::Confirmed => {
                self.hangup(now, call)
            }
        }
    }

    /// End a call: BYE when confirmed (after the ACK, for an incoming call still waiting
    /// for it, RFC 3261 §15), CANCEL when an outgoing call is not answered yet, 480 when an
    /// incoming call is not answered yet. Nothing when already ending.
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), CallError> {
        let c = call_mut(&mut self.slots, call).ok_or(CallError::UnknownCall(call))?;
        match c.state {
            CallState::Calling | CallState::Proceeding | CallState::Cancelling => {
                self.cancel(now, call)
            }
            CallState::Offered => self.reject(now, call, 480),
            CallState::AwaitingAck => {
                c.hangup_after_ack = true;
                Ok(())
            }
            CallState::Confirmed => {
                self.send_bye(now, call);
                Ok(())
            }
            CallState::Terminating => Ok(()),
        }
    }

    /// Drop an incoming call that is not confirmed yet, sending nothing more: waiting for
    /// its ACK, the 2xx is no longer retransmitted and no BYE follows; not answered yet, it
    /// is refused with 503 (the INVITE server transaction's own retransmissions only). The
    /// call ends with [`CallEndReason::Dropped`]. A responder does this to an un-ACKed call
    /// whose slot is needed, rather than keep it for `64·T1`. Confirmed or outgoing calls
    /// are refused with [`CallError::InvalidState`].
    pub fn abandon(&mut self, now: Instant, call: CallId) -> Result<(), CallError> {
        let c = expect_state(
            &mut self.slots,
            call,
            "abandon",
            &[CallState::Offered, CallState::AwaitingAck],
        )?;
        if c.direction != CallDirection::Incoming {
            return Err(CallError::InvalidState {
                call,
                action: "abandon",
                state: c.state,
            });
        }
        let since = c.record.invite;
        if c.state == CallState::Offered {
            if let Some(tx) = c.invite_tx {
                c.record.final_code = Some(503);
                let tag = Some(&*c.dialog.local_tag);
                let _ = respond(&mut self.layer, now, tx, 503, tag, &[], None);
            }
        }
        c.awaiting = None;
        let unconfirmed = now.saturating_duration_since(since);
        self.end_call(now, call, CallEndReason::Dropped { unconfirmed });
        Ok(())
    }

    /// Send a re-INVITE with a new offer from `media` (hold: `Direction::SendOnly`; unhold:
    /// `SendRecv`), in a confirmed call with no other offer pending. The outcome is
    /// [`CallEvent::MediaUpdated`] or [`CallEvent::UpdateFailed`].
    pub fn reinvite(
        &mut self,
        now: Instant,
        call: CallId,
        media: LocalMedia,
    ) -> Result<(), CallError> {
        let c = expect_state(&mut self.slots, call, "re-INVITE", &[CallState::Confirmed])?;
        if c.reinvite.is_some()
            || c.glare.is_some()
            || c.awaiting.is_some()
            || c.offer_sent.is_some()
        {
            return Err(CallError::InvalidState {
                call,
                action: "re-INVITE while another offer is pending",
                state: c.state,
            });
        }
        let offer = match &c.local_sdp {
            Some(previous) => create_offer(&media).versioned_after(previous),
            None => create_offer(&media),
        };
        self.send_reinvite(now, call, offer, media, 0, false, 0)
    }

    // ----------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------

    /// Send (or re-send, after a challenge) the initial INVITE of an outgoing call.
    fn send_invite(&mut self, now: Instant, id: CallId) -> Result<(), CallError> {
        let branch = self.ids.branch();
        let c = call_mut(&mut self.slots, id).ok_or(CallError::UnknownCall(id))?;
        let body = c.offer_sent.as_ref().map(SessionDescription::to_bytes);
        let body_ref = body.as_deref().unwrap_or_default();
        if let Some(auth) = c.auth.as_mut() {
            c.auth_headers = auth.authorize("INVITE", &c.request_uri, body_ref, &mut self.ids);
        }
        let mut extra: Vec<(&str, &str)> = vec![("Allow", ALLOW)];
        extra.extend(
            c.extra_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        extra.extend(c.auth_headers.iter().map(|(n, v)| (*n, v.as_str())));
        let bytes = RequestSpec {
            method: "INVITE",
            uri: &c.request_uri,
            via: c.via(&branch),
            routes: &c.initial_routes,
            from: &c.dialog.local_header,
            to: &c.dialog.remote_header,
            call_id: &c.dialog.call_id,
            cseq: c.invite_cseq,
            contact: Some(&*c.contact),
            extra: &extra,
            body: body.as_deref().map(|b| (SDP, b)),
        }
        .to_vec();
        let tx = self.layer.send_built_request(
            now,
            Bytes::from(bytes),
            (
                Method::INVITE,
                &branch,
                c.invite_cseq,
                c.dialog.call_id.clone(),
            ),
            c.reliable,
            c.peer.clone(),
        )?;
        c.invite_tx = Some(tx);
        c.dialog.local_cseq = c.invite_cseq;
        self.owners.insert(tx, Owner::Call(id, Role::Invite));
        Ok(())
    }

    /// Send the CANCEL of a pending INVITE that has had a provisional response.
    fn send_cancel(&mut self, now: Instant, id: CallId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let Some(invite) = c.invite_tx else {
            return;
        };
        if let Ok(tx) = self.layer.send_cancel(now, invite) {
            self.owners.insert(tx, Owner::Call(id, Role::Cancel));
            c.cancel = CancelState::Sent;
            c.state = CallState::Cancelling;
            c.record.cancel = Some(now);
            c.cancel_deadline = Some(now + self.config.timers.timeout());
            self.reschedule(id);
        }
    }

    /// Send BYE in the dialog (CSeq + 1, remote target, route set, credentials if known).
    fn send_bye(&mut self, now: Instant, id: CallId) {
        let branch = self.ids.branch();
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        c.dialog.local_cseq += 1;
        let routing = c.dialog.routing();
        let auth = match c.auth.as_mut() {
            Some(auth) => auth.authorize("BYE", &routing.uri, b"", &mut self.ids),
            None => Vec::new(),
        };
        let extra: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let bytes = c.dialog.request(
            &routing,
            "BYE",
            c.dialog.local_cseq,
            c.via(&branch),
            None,
            &extra,
            None,
        );
        c.state = CallState::Terminating;
        c.awaiting = None;
        c.cancel_deadline = None;
        c.hangup_after_ack = false;
        match self.layer.send_built_request(
            now,
            Bytes::from(bytes),
            (
                Method::BYE,
                &branch,
                c.dialog.local_cseq,
                c.dialog.call_id.clone(),
            ),
            c.reliable,
            c.hop.clone(),
        ) {
            Ok(tx) => {
                c.bye_tx = Some(tx);
                CallRecord::set_once(&mut c.record.bye_sent, now);
                self.owners.insert(tx, Owner::Call(id, Role::Bye));
                self.reschedule(id);
            }
            Err(error) => {
                let detail = format!("cannot send BYE: {error}");
                self.end_call(now, id, CallEndReason::ProtocolError { detail });
            }
        }
    }

    /// Send a re-INVITE carrying `offer`.
    #[allow(clippy::too_many_arguments)]
    fn send_reinvite(
        &mut self,
        now: Instant,
        id: CallId,
        offer: SessionDescription,
        media: LocalMedia,
        challenges: u32,
        refresh: bool,
        glare_retries: u32,
    ) -> Result<(), CallError> {
        let branch = self.ids.branch();
        let c = call_mut(&mut self.slots, id).ok_or(CallError::UnknownCall(id))?;
        c.dialog.local_cseq += 1;
        let routing = c.dialog.routing();
        let body = offer.to_bytes();
        let auth = match c.auth.as_mut() {
            Some(auth) => auth.authorize("INVITE", &routing.uri, &body, &mut self.ids),
            None => Vec::new(),
        };
        let session_expires = c.session.request_value();
        let mut extra: Vec<(&str, &str)> = vec![("Allow", ALLOW)];
        if let Some(value) = &session_expires {
            extra.push(("Session-Expires", value));
            extra.push(("Supported", session_timer::TIMER));
        }
        extra.extend(auth.iter().map(|(n, v)| (*n, v.as_str())));
        let bytes = c.dialog.request(
            &routing,
            "INVITE",
            c.dialog.local_cseq,
            c.via(&branch),
            Some(&*c.contact),
            &extra,
            Some((SDP, &body)),
        );
        let tx = self.layer.send_request_bytes_of(
            now,
            Bytes::from(bytes),
            Some(c.dialog.call_id.clone()),
            c.reliable,
            c.hop.clone(),
        )?;
        self.owners.insert(tx, Owner::Call(id, Role::Reinvite));
        c.reinvite = Some(OutgoingReinvite {
            tx,
            offer,
            media,
            challenges,
            refresh,
            glare_retries,
        });
        // Any re-INVITE refreshes the session: the next refresh counts from its answer.
        c.session.refresh_at = None;
        Ok(())
    }

    /// The ACK of a 2xx in the dialog (a new transaction-less request, RFC 3261 §13.2.2.4),
    /// sent now; its bytes are returned for re-sending.
    fn send_ack(&mut self, id: CallId, cseq: u32, body: Option<&[u8]>, initial: bool) -> Bytes {
        let branch = self.ids.branch();
        let Some(c) = call_mut(&mut self.slots, id) else {
            return Bytes::new();
        };
        let routing = c.dialog.routing();
        let extra: Vec<(&str, &str)> = if initial {
            c.auth_headers
                .iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        let bytes = Bytes::from(c.dialog.request(
            &routing,
            "ACK",
            cseq,
            c.via(&branch),
            None,
            &extra,
            body.map(|b| (SDP, b)),
        ));
        let call_id = Some(c.dialog.call_id.clone());
        self.layer
            .send_stateless_of(c.hop.clone(), bytes.clone(), call_id);
        bytes
    }

    // ----------------------------------------------------------------------------------
    // Events from the transaction layer
    // ----------------------------------------------------------------------------------

    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.layer.poll_event() {
            match event {
                TransactionEvent::Response { tx, message } => {
                    match self.owners.get(&tx).copied() {
                        Some(Owner::User) => self.events.push_back(CallEvent::Transaction(
                            TransactionEvent::Response { tx, message },
                        )),
                        Some(Owner::Call(id, role)) => self.on_response(now, id, role, tx, message),
                        None => {}
                    }
                }
                TransactionEvent::NewRequest { tx, message } => self.on_request(now, tx, message),
                TransactionEvent::TimedOut { tx, timer, elapsed } => {
                    match self.owners.get(&tx).copied() {
                        Some(Owner::User) => self.events.push_back(CallEvent::Transaction(
                            TransactionEvent::TimedOut { tx, timer, elapsed },
                        )),
                        Some(Owner::Call(id, role)) => {
                            self.on_transaction_timeout(now, id, role, tx, timer, elapsed)
                        }
                        None => {}
                    }
                }
                TransactionEvent::Terminated { tx } => {
                    if let Some(Owner::User) = self.owners.remove(&tx) {
                        self.events
                            .push_back(CallEvent::Transaction(TransactionEvent::Terminated { tx }));
                    }
                }
                TransactionEvent::StrayResponse { message, source } => {
                    self.on_stray_2xx(now, message, source)
                }
                TransactionEvent::Ack { message, .. } => self.on_ack(now, message),
            }
        }
    }

    /// Before a final response reaches its transaction (which may end with it), note how
    /// often the transaction retransmitted its request.
    fn observe_final(&mut self, response: &Message) {
        if response.status().is_none_or(|code| code < 200) {
            return;
        }
        let Some(id) = header_tag(response, &Name::FROM)
            .and_then(|tag| self.find_dialog(response.call_id(), tag, None))
        else {
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let txs = [c.invite_tx, c.bye_tx, c.reinvite.as_ref().map(|r| r.tx)];
        for tx in txs.into_iter().flatten() {
            if let Some(client) = self.layer.client(tx) {
                if client.final_status().is_none() && Some(client.branch()) == response.branch() {
                    c.record.requests_retransmitted += client.retransmissions();
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Call timers and bookkeeping
    // ----------------------------------------------------------------------------------

    fn call_timeout(&mut self, now: Instant, id: CallId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let mut no_ack = None;
        if let Some(awaiting) = c.awaiting.as_mut() {
            awaiting.retransmitter.handle_timeout(now);
            while let Some(bytes) = awaiting.retransmitter.poll_transmit() {
                c.record.responses_retransmitted += 1;
                let call_id = Some(c.dialog.call_id.clone());
                self.layer.send_stateless_of(c.peer.clone(), bytes, call_id);
            }
            if let Some(Uas2xxEvent::NoAck { elapsed }) = awaiting.retransmitter.poll_event() {
                no_ack = Some(elapsed);
            }
        }
        if let Some(elapsed) = no_ack {
            // RFC 3261 §13.3.1.4: confirm the dialog, then end it with BYE.
            c.awaiting = None;
            c.state = CallState::Confirmed;
            self.send_bye(now, id);
            self.end_call(now, id, CallEndReason::NoAck { elapsed });
            return;
        }
        if c.glare.as_ref().is_some_and(|g| g.at <= now) {
            self.retry_after_glare(now, id);
            return;
        }
        if c.session.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_session(now, id);
            return;
        }
        if c.cancel_deadline.is_some_and(|at| at <= now) {
            // RFC 3261 §9.1: no final response within 64·T1 of the CANCEL.
            c.cancel_deadline = None;
            if let Some(invite) = c.invite_tx.take() {
                let _ = self.layer.abandon(invite);
            }
            let reason = CallEndReason::CancelFailed {
                cancel_code: c.record.cancel_code,
                waited: Some(self.config.timers.timeout()),
            };
            self.end_call(now, id, reason);
        }
    }

    /// Send our re-INVITE again after its 491, unless the call moved on; when another offer is
    /// under way by then (the far end's), ours is given up with [`CallEvent::UpdateFailed`].
    fn retry_after_glare(&mut self, now: Instant, id: CallId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let Some(glare) = c.glare.take() else {
            return;
        };
        let busy = c.reinvite.is_some() || c.awaiting.is_some() || c.offer_sent.is_some();
        // The offer is made anew: the far end's offer may have changed the session meanwhile.
        let offer = match (&c.local_sdp, glare.refresh) {
            (Some(current), true) => Some(current.clone()),
            (Some(current), false) => Some(create_offer(&glare.media).versioned_after(current)),
            (None, _) => None,
        };
        let sent = match offer {
            Some(offer) if c.state == CallState::Confirmed && !busy => self
                .send_reinvite(now, id, offer, glare.media, 0, glare.refresh, glare.retries)
                .is_ok(),
            _ => false,
        };
        if !sent && !glare.refresh {
            self.events.push_back(CallEvent::UpdateFailed {
                call: id,
                code: 491,
            });
        }
    }

    /// Our session refresh is due (RFC 4028 §10): a re-INVITE with the session as it is (our
    /// description unchanged, so nothing changes at the far end), or later when another offer
    /// is under way.
    fn refresh_session(&mut self, now: Instant, id: CallId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let busy = c.reinvite.is_some() || c.awaiting.is_some() || c.offer_sent.is_some();
        let ready = (c.state == CallState::Confirmed)
            .then(|| c.local_sdp.clone().zip(c.local_media.clone()))
            .flatten();
        match ready {
            Some((offer, media)) if !busy => {
                if self
                    .send_reinvite(now, id, offer, media, 0, true, 0)
                    .is_err()
                {
                    if let Some(c) = call_mut(&mut self.slots, id) {
                        c.session.refresh_at = None;
                    }
                }
            }
            _ if c.state == CallState::Confirmed || c.state == CallState::AwaitingAck => {
                c.session.refresh_at = Some(now + REFRESH_RETRY);
            }
            _ => c.session.refresh_at = None,
        }
    }

    fn reschedule(&mut self, id: CallId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let next = c.deadline();
        if next == c.scheduled {
            return;
        }
        if let Some(old) = c.scheduled {
            self.timers.remove(&(old, id));
        }
        if let Some(at) = next {
            self.timers.insert((at, id));
        }
        c.scheduled = next;
    }

    fn insert(&mut self, call: Call<D>) -> CallId {
        let key = CallIdKey(call.dialog.call_id.clone());
        let id = CallId(self.slots.insert(call));
        match self.dialogs.get_mut(key.0.as_str()) {
            Some(bucket) => bucket.push(id),
            None => {
                self.dialogs.insert(key, Bucket::new(id));
            }
        }
        id
    }

    /// Take a call out of the tables.
    fn remove(&mut self, id: CallId) -> Option<Call<D>> {
        let call = self.slots.remove(id.0)?;
        if let Some(bucket) = self.dialogs.get_mut(call.dialog.call_id.as_str()) {
            if bucket.remove(id) {
                self.dialogs.remove(call.dialog.call_id.as_str());
            }
        }
        if let Some(at) = call.scheduled {
            self.timers.remove(&(at, id));
        }
        Some(call)
    }

    fn end_call(&mut self, now: Instant, id: CallId, reason: CallEndReason) {
        let Some(mut call) = self.remove(id) else {
            return;
        };
        // An INVITE client transaction in Proceeding has no timer left (Timer B stops at the
        // first provisional): drop it rather than keep it forever.
        if let Some(tx) = call.invite_tx {
            if self
                .layer
                .client(tx)
                .is_some_and(|c| c.state() == ClientState::Proceeding)
            {
                let _ = self.layer.abandon(tx);
            }
        }
        self.counters.ended_calls += 1;
        call.record.end = Some(CallEnd { at: now, reason });
        self.events.push_back(CallEvent::Ended {
            call: id,
            record: Box::new(call.record),
        });
    }

    /// The call of the dialog with Call-ID `call_id` and our tag `local_tag`, and the far
    /// end's tag `remote_tag` when both are known.
    fn find_dialog(
        &self,
        call_id: &str,
        local_tag: &str,
        remote_tag: Option<&str>,
    ) -> Option<CallId> {
        self.dialogs.get(call_id)?.iter().find(|&id| {
            call_ref(&self.slots, id).is_some_and(|c| {
                *c.dialog.local_tag == *local_tag
                    && match (remote_tag, c.dialog.remote_tag.as_deref()) {
                        (Some(theirs), Some(known)) => theirs == known,
                        _ => true,
                    }
            })
        })
    }

    /// Sizes of the internal tables: (calls, dialog index, owned transactions, call timers,
    /// slots).
    #[cfg(test)]
    fn footprint(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.slots.len(),
            self.dialogs.len(),
            self.owners.len(),
            self.timers.len(),
            self.slots.slot_count(),
        )
    }
}

/// Build a response to the request of server transaction `tx` and send it; the bytes are
/// returned (for 2xx retransmission).
fn respond<D: Clone>(
    layer: &mut TransactionLayer<D>,
    now: Instant,
    tx: TxId,
    code: u16,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Result<Bytes, CallError> {
    Ok(layer.respond(now, tx, code, to_tag, extra, body)?)
}

/// Feed the challenges of a 401/407 to `auth`.
fn answer_challenge(
    auth: &mut DigestClient,
    kind: ChallengeKind,
    message: &Message,
    code: u16,
) -> Result<(), CallEndReason> {
    let name = match kind {
        ChallengeKind::Www => Name::WWW_AUTHENTICATE,
        ChallengeKind::Proxy => Name::PROXY_AUTHENTICATE,
    };
    let challenges = message.headers().get_raw(&name).map(|v| (kind, v));
    match auth.on_challenges(challenges) {
        Ok(()) => Ok(()),
        Err(AuthError::Rejected { .. }) => Err(CallEndReason::AuthRejected { code }),
        Err(error) => Err(CallEndReason::AuthFailed { code, error }),
    }
}

/// The SDP body of a message: `None` without a body; `Err(415)` for a body of another type,
/// `Err(400)` for an SDP that does not parse.
fn sdp_body(message: &Message) -> Result<Option<SessionDescription>, u16> {
    let body = message.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if let Some(content_type) = message.header(&Name::CONTENT_TYPE) {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case(SDP) {
            return Err(415);
        }
    }
    SessionDescription::parse(body).map(Some).map_err(|_| 400)
}

/// Whether `uri` is a `sips:` URI.
fn is_sips(uri: &str) -> bool {
    uri.trim_start()
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
}

/// Our Contact header value.
fn contact_value(user: &str, transport: Transport, addr: SocketAddr) -> String {
    // RFC 7118 §5: `transport=ws` / `transport=wss` over WebSocket.
    let param = match transport {
        Transport::Udp => String::new(),
        other => format!(";transport={}", other.uri_param()),
    };
    format!("<sip:{user}@{addr}{param}>")
}

/// Our Contact header value for a dialog that must be secure (RFC 3261 §8.1.1.8, §12.1.1):
/// a `sips:` URI, which means TLS; over WSS it names the WebSocket transport as well.
fn sips_contact(user: &str, transport: Transport, addr: SocketAddr) -> String {
    match transport {
        Transport::Wss => format!("<sips:{user}@{addr};transport=wss>"),
        _ => format!("<sips:{user}@{addr}>"),
    }
}

/// A URI as a name-addr (`<uri>`), unless it is one already.
fn name_addr(uri: &str) -> String {
    if uri.contains('<') {
        uri.to_string()
    } else {
        format!("<{uri}>")
    }
}

/// Whether `method` is one of the RFC methods (answered 405 when not served, else 501).
fn is_known_method(method: &Method) -> bool {
    [
        Method::INVITE,
        Method::ACK,
        Method::CANCEL,
        Method::BYE,
        Method::REGISTER,
        Method::MESSAGE,
        Method::UPDATE,
        Method::PRACK,
        Method::OPTIONS,
        Method::SUBSCRIBE,
        Method::NOTIFY,
        Method::PUBLISH,
        Method::INFO,
        Method::REFER,
    ]
    .contains(method)
}

/// The ACK of a 2xx built from the response alone (its call is gone): Request-URI from its
/// Contact, Route from its Record-Route reversed, From/To/Call-ID/CSeq copied. Returned with
/// the URI of its next hop.
fn ack_from_2xx(response: &Message, local: &LocalEnd, branch: &str) -> (Vec<u8>, String) {
    let target = response.first_contact_uri().unwrap_or_default();
    let route_set = record_route(response, true);
    let hop = dialog::next_hop_uri(target, &route_set).to_string();
    let Routing { uri, routes } = dialog::routing(target, &route_set);
    let ack = RequestSpec {
        method: "ACK",
        uri: &uri,
        via: ViaSpec {
            transport: local.transport,
            sent_by: local.addr,
            branch,
            rport: true,
        },
        routes: &routes,
        from: response.header(&Name::FROM).unwrap_or_default(),
        to: response.header(&Name::TO).unwrap_or_default(),
        call_id: response.call_id(),
        cseq: response.cseq(),
        contact: None,
        extra: &[],
        body: None,
    }
    .to_vec();
    (ack, hop)
}
