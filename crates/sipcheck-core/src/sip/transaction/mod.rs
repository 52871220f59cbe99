//! SIP transactions, RFC 3261 §17, sans-IO.
//!
//! * [`ClientTransaction`] and [`ServerTransaction`] are the four state machines of §17.1 and
//!   §17.2 (INVITE and non-INVITE each), driven by `handle_*(now, …)` calls that return
//!   [`Actions`]: what to send and what to report.
//! * [`TransactionLayer`] owns many of them, matches incoming messages to them (§17.1.3,
//!   §17.2.3), keeps their timers in one deadline heap, and hands output back through
//!   `poll_transmit`, `poll_event` and `poll_timeout`, like quinn-proto's `Endpoint`.
//! * [`Uas2xxRetransmitter`] is the UAS core's 2xx retransmission (§13.3.1.4), which RFC 3261
//!   puts outside the INVITE server transaction.
//! * [`Timer`], [`TimerTable`] and [`TimerConfig`] are the timers A–K of §17 and Table 4.
//!
//! Nothing here reads a clock: every input carries `now`, and tests drive both ends over a
//! simulated link in virtual time.

mod client;
mod layer;
mod matching;
mod server;
mod timer;
mod uas2xx;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

pub use client::{ClientState, ClientTransaction};
pub use layer::{
    Counters, Dispatch, TransactionEvent, TransactionLayer, Transmit, TxId,
    DEFAULT_MAX_SERVER_TRANSACTIONS, OVERLOAD_RETRY_AFTER,
};
pub use server::{ServerState, ServerTransaction};
pub use timer::{Timer, TimerConfig, TimerConfigError, TimerTable};
pub use uas2xx::{Uas2xxEvent, Uas2xxRetransmitter, Uas2xxState};

use crate::sip::build;
use crate::sip::msg::{Message, Method, ParseError};

#[cfg(test)]
thread_local! {
    /// Full parses of requests the transaction layer sends, on this thread.
    static REQUEST_PARSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Note a full parse of a request sent (counted in tests, which check that the common path
/// makes none: [`request_parses`]).
#[inline]
fn note_request_parse() {
    #[cfg(test)]
    REQUEST_PARSES.with(|n| n.set(n.get() + 1));
}

/// How many requests to send the transaction layer parsed in full on this thread: started from
/// bytes not written the plain way, or parsed for a CANCEL or the ACK of a non-2xx.
#[cfg(test)]
pub(crate) fn request_parses() -> u64 {
    REQUEST_PARSES.with(std::cell::Cell::get)
}

/// INVITE or non-INVITE: the two kinds of transaction machine (RFC 3261 §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    /// An INVITE transaction (§17.1.1, §17.2.1).
    Invite,
    /// Any other method except ACK (§17.1.2, §17.2.2).
    NonInvite,
}

impl TransactionKind {
    /// The kind of transaction a request with `method` starts.
    pub fn of(method: &Method) -> Self {
        if *method == Method::INVITE {
            TransactionKind::Invite
        } else {
            TransactionKind::NonInvite
        }
    }
}

/// Why a transaction sends something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendKind {
    /// The first copy of a request.
    Request,
    /// A retransmitted request (Timer A or E).
    RequestRetransmission,
    /// The ACK of a non-2xx final response (§17.1.1.3), first copy.
    Ack,
    /// The ACK again, for a retransmitted final response.
    AckRetransmission,
    /// The first copy of a response.
    Response,
    /// A response again: Timer G, or a retransmitted request.
    ResponseRetransmission,
    /// Bytes sent outside any transaction (the ACK of a 2xx, a 2xx retransmission).
    Stateless,
}

impl SendKind {
    /// True for the copies sent again.
    pub fn is_retransmission(self) -> bool {
        matches!(
            self,
            SendKind::RequestRetransmission
                | SendKind::AckRetransmission
                | SendKind::ResponseRetransmission
        )
    }
}

/// Bytes a transaction wants sent to its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The message.
    pub bytes: Bytes,
    /// Why it is sent.
    pub kind: SendKind,
}

/// A message a transaction took in without passing it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Absorbed {
    /// A retransmission of the final response already received.
    RetransmittedFinal,
    /// A response after the final one that is not its retransmission, e.g. a 180 overtaken
    /// by the 200.
    LateResponse,
    /// A retransmission of the request that started a server transaction.
    RetransmittedRequest,
    /// The ACK of a non-2xx final response (or its retransmission).
    Ack,
}

/// What a transaction reports to its user after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Pass the message up to the transaction user.
    PassUp,
    /// The message was absorbed by the transaction.
    Absorbed(Absorbed),
    /// A timeout timer fired: B or F (no final response), H (no ACK).
    TimedOut {
        /// Which timer.
        timer: Timer,
        /// How long it ran: `64·T1` when the caller is on time.
        elapsed: Duration,
    },
}

/// The output of one input to a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Actions {
    /// Something to send to the peer.
    pub transmit: Option<Outgoing>,
    /// Something to tell the transaction user.
    pub report: Option<Report>,
}

impl Actions {
    fn report(report: Report) -> Self {
        Self {
            transmit: None,
            report: Some(report),
        }
    }
}

/// Why a transaction operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A response was given where a request was expected.
    #[error("the message is a response, not a request")]
    NotARequest,
    /// Bytes to send as a response do not start with a status line.
    #[error("the bytes to send do not start with a SIP/2.0 status line")]
    NotAResponse,
    /// An ACK was given to start a transaction.
    #[error("an ACK never starts a transaction (RFC 3261 §17.1.1.3)")]
    AckIsNotATransaction,
    /// The request to send has no Via branch.
    #[error("the request's top Via has no branch parameter")]
    MissingBranch,
    /// A client transaction with the same branch and method is already running.
    #[error("a client transaction for {method} with branch {branch} is already running")]
    DuplicateTransaction {
        /// The branch.
        branch: String,
        /// The method.
        method: String,
    },
    /// The transaction id names no live transaction (it ended, or never existed).
    #[error("transaction {0} does not exist (it may have terminated)")]
    UnknownTransaction(TxId),
    /// A server-side operation was asked of a client transaction.
    #[error("transaction {0} is a client transaction, not a server transaction")]
    NotAServerTransaction(TxId),
    /// A client-side operation was asked of a server transaction.
    #[error("transaction {0} is a server transaction, not a client transaction")]
    NotAClientTransaction(TxId),
    /// A response was sent after the final one.
    #[error("a final response ({sent}) was already sent; cannot send {attempted}")]
    FinalAlreadySent {
        /// The final status already sent.
        sent: u16,
        /// The status refused.
        attempted: u16,
    },
    /// CANCEL asked for a transaction that cannot be cancelled.
    #[error("transaction {tx} cannot be cancelled: {reason}")]
    CannotCancel {
        /// The transaction.
        tx: TxId,
        /// Why (not an INVITE, no provisional response yet, already completed).
        reason: &'static str,
    },
    /// The bytes given as a request do not parse.
    #[error("the request does not parse")]
    Parse(#[from] ParseError),
}

/// The status code of a response from its status line (`SIP/2.0 486 …`), without parsing the
/// rest.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !matches!(rest.get(3), Some(b' ' | b'\r' | b'\n') | None) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=699).contains(&code).then_some(code)
}

/// A `100 Trying` for `request` (RFC 3261 §17.2.1: the TU sends it unless it answers within
/// 200 ms; §8.2.6.1: no To tag).
pub fn trying_for(request: &Message) -> Bytes {
    let mut out = Vec::with_capacity(request.raw().len().min(1024));
    build::write_response(request, 100, "Trying", None, &[], None, &mut out);
    Bytes::from(out)
}
