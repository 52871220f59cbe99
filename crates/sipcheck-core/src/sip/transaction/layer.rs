//! [`TransactionLayer`]: many transactions, matched, timed and polled together.

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytesstr::BytesStr;

use super::client::ClientTransaction;
use super::matching::{message_sent_by, sent_by_eq, server_key, server_key_shared};
use super::server::ServerTransaction;
use super::timer::{Timer, TimerConfig};
use super::{Absorbed, Actions, Outgoing, Report, SendKind, TransactionError, TransactionKind};
use crate::sip::build;
use crate::sip::msg::{call_id_of, Message, Method, SentRequest};
use crate::slots::{Bucket, SlotId, Slots};

/// Names one transaction of a [`TransactionLayer`].
///
/// Ids are not reused while the transaction lives; a stale id (of a terminated transaction)
/// names nothing, even when its slot was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(SlotId);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}.{}", self.0.index(), self.0.generation())
    }
}

/// A datagram (or stream write) the shell should send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<D> {
    /// Where to: the destination given to [`TransactionLayer::send_request`], or the source a
    /// request came from.
    pub destination: D,
    /// The message.
    pub bytes: Bytes,
    /// Why it is sent (first copy, retransmission, ACK, …).
    pub kind: SendKind,
    /// The message's Call-ID when the layer holds it already (its transaction's, or the one
    /// given with bytes sent outside a transaction), sharing the buffer it was read or
    /// written into; `None` when it was not given. [`Transmit::call_id`] reads it.
    pub call_id: Option<BytesStr>,
}

impl<D> Transmit<D> {
    /// The message's Call-ID: the one carried, else found in the bytes ([`call_id_of`]).
    #[must_use]
    pub fn call_id(&self) -> Option<&str> {
        match &self.call_id {
            Some(id) => Some(id.as_str()),
            None => call_id_of(&self.bytes),
        }
    }
}

/// The Call-ID of a message as the parser reads it, sharing the message's buffer.
fn call_id_shared(message: &Message) -> BytesStr {
    BytesStr::from_parse(message.raw(), message.call_id())
}

/// What the layer reports to its user (the UA core).
#[derive(Debug, Clone)]
pub enum TransactionEvent<D> {
    /// A response for client transaction `tx`, to pass up: every provisional, the final, and
    /// for INVITE the 2xx that ends the transaction.
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        message: Message,
    },
    /// A new request started server transaction `tx`; answer it with
    /// [`TransactionLayer::send_response`] or [`TransactionLayer::reply`].
    NewRequest {
        /// The new server transaction.
        tx: TxId,
        /// The request.
        message: Message,
    },
    /// A timeout: Timer B or F (no final response to a request sent), or Timer H (no ACK for
    /// a non-2xx final response sent).
    TimedOut {
        /// The transaction, which has terminated.
        tx: TxId,
        /// Which timer fired.
        timer: Timer,
        /// How long it ran ("Timer B expired after 32 s").
        elapsed: Duration,
    },
    /// Transaction `tx` ended and was removed from the layer.
    Terminated {
        /// The transaction.
        tx: TxId,
    },
    /// A 2xx to an INVITE that matched no transaction: a retransmission of a 2xx that already
    /// ended its client transaction, for the UA core to ACK again (§13.2.2.4).
    StrayResponse {
        /// The response.
        message: Message,
        /// Where it came from.
        source: D,
    },
    /// An ACK that matched no server transaction: the ACK of a 2xx, for the UA core
    /// (§17.2.3, §13.3.1.4).
    Ack {
        /// The ACK.
        message: Message,
        /// Where it came from.
        source: D,
    },
}

/// Where [`TransactionLayer::handle_message`] sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// A response matched client transaction `tx`.
    Client {
        /// The client transaction.
        tx: TxId,
        /// Passed up as [`TransactionEvent::Response`]; or absorbed, and why.
        absorbed: Option<Absorbed>,
    },
    /// A request matched server transaction `tx`: a retransmission, or the ACK of a non-2xx.
    Server {
        /// The server transaction.
        tx: TxId,
        /// What the transaction made of it.
        absorbed: Absorbed,
    },
    /// A request started server transaction `tx` ([`TransactionEvent::NewRequest`]).
    NewRequest {
        /// The new server transaction.
        tx: TxId,
    },
    /// An ACK that matched no transaction, passed up as [`TransactionEvent::Ack`].
    Ack,
    /// A response that matched no transaction: counted in [`Counters::stray_responses`]; a
    /// 2xx to an INVITE is passed up as [`TransactionEvent::StrayResponse`].
    Stray,
    /// A request that would have started a server transaction beyond the cap
    /// ([`TransactionLayer::with_max_server_transactions`]): answered statelessly with
    /// `503 Service Unavailable` and `Retry-After`, counted in [`Counters::overload_503`].
    Overloaded,
}

/// The default cap on live server transactions
/// ([`TransactionLayer::with_max_server_transactions`]).
pub const DEFAULT_MAX_SERVER_TRANSACTIONS: usize = 50_000;

/// The `Retry-After` (seconds) of the stateless 503 sent beyond the cap.
pub const OVERLOAD_RETRY_AFTER: &str = "5";

/// Tables whose length falls below 1/`SHRINK_RATIO` of their capacity are shrunk, once they
/// hold at least `SHRINK_MIN` entries' worth of capacity.
const SHRINK_RATIO: usize = 8;
const SHRINK_MIN: usize = 1024;

/// The To tag of the stateless 503: fixed, so that a retransmitted request gets the same
/// response (RFC 3261 §8.2.6.2).
const OVERLOAD_TO_TAG: &str = "sipcheck-overload";

/// Running totals of a [`TransactionLayer`]; nothing in them is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Client transactions started.
    pub client_transactions: u64,
    /// Server transactions started.
    pub server_transactions: u64,
    /// Transactions terminated and removed.
    pub terminated: u64,
    /// Requests sent (first copies, CANCEL included).
    pub requests_sent: u64,
    /// Responses sent by the transaction user (first copies).
    pub responses_sent: u64,
    /// ACKs of non-2xx final responses sent (first copies).
    pub acks_sent: u64,
    /// Copies sent again: request retransmissions (Timers A, E), response retransmissions
    /// (Timer G, or for a retransmitted request), ACKs for retransmitted final responses.
    pub retransmissions_sent: u64,
    /// Messages sent outside transactions ([`TransactionLayer::send_stateless`]).
    pub stateless_sent: u64,
    /// Requests received.
    pub requests_received: u64,
    /// Responses received.
    pub responses_received: u64,
    /// Received requests that were retransmissions of one a server transaction holds.
    pub retransmitted_requests: u64,
    /// ACKs of non-2xx final responses absorbed by a server transaction.
    pub acks_absorbed: u64,
    /// ACKs that matched no transaction, passed up.
    pub acks_passed_up: u64,
    /// Retransmissions of a final response already received, absorbed.
    pub duplicate_responses: u64,
    /// Other responses after the final one (e.g. a 180 overtaken by the 200), absorbed.
    pub late_responses: u64,
    /// Responses matching no transaction.
    pub stray_responses: u64,
    /// Timeouts (Timers B, F and H).
    pub timeouts: u64,
    /// Requests refused statelessly with `503 Service Unavailable` because the server
    /// transaction table was full.
    pub overload_503: u64,
}

#[derive(Debug, Clone)]
enum Machine {
    Client(ClientTransaction),
    Server(ServerTransaction),
}

impl Machine {
    fn method(&self) -> &Method {
        match self {
            Machine::Client(c) => c.method(),
            Machine::Server(s) => s.method(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::Client(c) => c.is_terminated(),
            Machine::Server(s) => s.is_terminated(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Client(c) => c.poll_timeout(),
            Machine::Server(s) => s.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Actions {
        match self {
            Machine::Client(c) => c.handle_timeout(now),
            Machine::Server(s) => s.handle_timeout(now),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry<D> {
    machine: Machine,
    peer: D,
    /// The deadline last pushed to the heap for this transaction.
    scheduled: Option<Instant>,
    /// The Call-ID of the transaction's request, when known without reading it
    /// ([`Transmit::call_id`]).
    call_id: Option<BytesStr>,
}

/// A key of the transaction indexes (a branch, or a legacy key): text that shares the buffer
/// of the message it was read from, so that keeping it allocates nothing. Hashed and
/// compared as the text, so the indexes are searched with a `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key(BytesStr);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// Many transactions, each with a destination of type `D` chosen by the shell (a socket
/// address, a connection id, …).
///
/// * Output: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout) (the earliest deadline, read off a heap).
/// * Input: [`send_request`](Self::send_request), [`handle_message`](Self::handle_message),
///   [`send_response`](Self::send_response), [`handle_timeout`](Self::handle_timeout).
///
/// Matching follows RFC 3261 §17.1.3 for responses (top Via branch and CSeq method, so an
/// INVITE and its CANCEL are different transactions) and §17.2.3 for requests (branch,
/// sent-by and method, an ACK matching its INVITE). Requests whose branch lacks the
/// `z9hG4bK` magic cookie (RFC 2543 peers) are matched, minimally, on Call-ID, CSeq number,
/// From tag and top Via. Matching a message allocates nothing; a new transaction allocates
/// its key once. Terminated transactions are removed at once, so memory follows the number
/// of live transactions.
#[derive(Debug, Clone)]
pub struct TransactionLayer<D> {
    config: TimerConfig,
    slots: Slots<Entry<D>>,
    /// Live server transactions, and the cap on them.
    live_servers: usize,
    max_servers: usize,
    client_index: HashMap<Key, Bucket<TxId>>,
    server_index: HashMap<Key, Bucket<TxId>>,
    /// Deadlines, with lazy deletion: an entry is live while its transaction exists and
    /// still has that deadline scheduled. Stale entries are popped when they reach the top.
    timers: BinaryHeap<Reverse<(Instant, TxId)>>,
    /// Scratch list for `handle_timeout`, kept to reuse its allocation.
    due: Vec<TxId>,
    transmits: VecDeque<Transmit<D>>,
    events: VecDeque<TransactionEvent<D>>,
    counters: Counters,
    /// Where responses are written ([`TransactionLayer::respond`]): each is split off this
    /// buffer, so that a response costs no allocation of its own; a buffer is freed with the
    /// last response written in it.
    out: BytesMut,
}

/// The size of the buffers responses are written in.
const OUT_CHUNK: usize = 32 * 1024;

/// A new buffer is started when less than this is left in the current one.
const OUT_MIN: usize = 2 * 1024;

impl<D: Clone> Default for TransactionLayer<D> {
    fn default() -> Self {
        Self::new(TimerConfig::default())
    }
}

impl<D: Clone> TransactionLayer<D> {
    /// An empty layer with the given timers.
    pub fn new(config: TimerConfig) -> Self {
        Self {
            config,
            slots: Slots::default(),
            live_servers: 0,
            max_servers: DEFAULT_MAX_SERVER_TRANSACTIONS,
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            out: BytesMut::new(),
        }
    }

    /// Cap the live server transactions at `max` (default
    /// [`DEFAULT_MAX_SERVER_TRANSACTIONS`]). A request that would start one more is answered
    /// statelessly with `503 Service Unavailable` and `Retry-After` (RFC 3261 §21.5.4) and
    /// starts nothing; an ACK is never answered.
    #[must_use]
    pub fn with_max_server_transactions(mut self, max: usize) -> Self {
        self.max_servers = max;
        self
    }

    /// The timer configuration.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// The running totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// How many transactions are live.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// The client transaction `tx`, while it lives.
    pub fn client(&self, tx: TxId) -> Option<&ClientTransaction> {
        match &self.entry(tx)?.machine {
            Machine::Client(c) => Some(c),
            Machine::Server(_) => None,
        }
    }

    /// The server transaction `tx`, while it lives.
    pub fn server(&self, tx: TxId) -> Option<&ServerTransaction> {
        match &self.entry(tx)?.machine {
            Machine::Server(s) => Some(s),
            Machine::Client(_) => None,
        }
    }

    /// Start a client transaction: `request` is queued for `destination` at once and
    /// retransmitted on unreliable transports (Timers A, E) until answered or timed out.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message,
        reliable: bool,
        destination: D,
    ) -> Result<TxId, TransactionError> {
        let call_id = Some(call_id_shared(&request));
        let request = SentRequest::from_message(&request).ok_or(TransactionError::NotARequest)?;
        self.start_client(now, request, call_id, reliable, destination)
    }

    /// [`send_request`](Self::send_request) for a request still in bytes. A request written
    /// the plain way (as sipcheck writes them) is not parsed: its method, top Via branch and
    /// CSeq number are read by a scan ([`SentRequest::scan`]), and it is parsed later only if
    /// a CANCEL or the ACK of a non-2xx final response is built from it. Any other request is
    /// parsed, and refused when it does not parse.
    pub fn send_request_bytes(
        &mut self,
        now: Instant,
        request: Bytes,
        reliable: bool,
        destination: D,
    ) -> Result<TxId, TransactionError> {
        self.send_request_bytes_of(now, request, None, reliable, destination)
    }

    /// [`send_request_bytes`](Self::send_request_bytes) for a request whose Call-ID its
    /// writer gives (`call_id`, carried by its [`Transmit`]s); `None`: not given.
    pub fn send_request_bytes_of(
        &mut self,
        now: Instant,
        request: Bytes,
        mut call_id: Option<BytesStr>,
        reliable: bool,
        destination: D,
    ) -> Result<TxId, TransactionError> {
        let request = match SentRequest::scan(&request) {
            Some(request) => request,
            None => {
                super::note_request_parse();
                let message = Message::parse_datagram(request)?;
                call_id = call_id.or_else(|| Some(call_id_shared(&message)));
                SentRequest::from_message(&message).ok_or(TransactionError::NotARequest)?
            }
        };
        self.start_client(now, request, call_id, reliable, destination)
    }

    /// [`send_request_bytes`](Self::send_request_bytes) for a request the UA core wrote
    /// itself, with the method, top Via branch and CSeq number it wrote: they are taken as
    /// given, not read back (in tests they are checked against what the parser reads). Bytes
    /// that do not hold `branch` where the writer puts it are scanned as any others. The
    /// Call-ID the writer wrote, `call_id`, is carried by the request's [`Transmit`]s.
    pub fn send_built_request(
        &mut self,
        now: Instant,
        request: Bytes,
        (method, branch, cseq, call_id): (Method, &str, u32, BytesStr),
        reliable: bool,
        destination: D,
    ) -> Result<TxId, TransactionError> {
        let Some(sent) = SentRequest::built(&request, method, branch, cseq) else {
            return self.send_request_bytes_of(now, request, Some(call_id), reliable, destination);
        };
        #[cfg(test)]
        {
            // What the parser reads of the request (a check, not the layer's work: not
            // counted in `request_parses`).
            let parsed =
                Message::parse_datagram(request.clone()).expect("the writer's requests parse");
            let parsed = SentRequest::from_message(&parsed).expect("a request");
            assert_eq!(call_id_of(&request), Some(call_id.as_str()));
            assert_eq!(parsed.raw(), sent.raw());
            assert_eq!(parsed.method(), sent.method());
            assert_eq!(parsed.branch(), sent.branch());
            assert_eq!(parsed.cseq(), sent.cseq());
        }
        self.start_client(now, sent, Some(call_id), reliable, destination)
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: SentRequest,
        call_id: Option<BytesStr>,
        reliable: bool,
        destination: D,
    ) -> Result<TxId, TransactionError> {
        let tx = ClientTransaction::new(now, request, reliable, self.config)?;
        let branch = tx.branch();
        if let Some(bucket) = self.client_index.get(branch) {
            if bucket
                .iter()
                .any(|id| self.method_of(id) == Some(tx.method()))
            {
                return Err(TransactionError::DuplicateTransaction {
                    branch: branch.to_string(),
                    method: tx.method().to_string(),
                });
            }
        }
        let bytes = tx.raw().clone();
        let id = self.insert(Machine::Client(tx), destination.clone(), call_id.clone());
        if let Some(Entry {
            machine: Machine::Client(c),
            ..
        }) = self.slots.get(id.0)
        {
            let branch = c.request().branch_shared().cloned().unwrap_or_default();
            index_insert(&mut self.client_index, branch, id);
        }
        self.counters.client_transactions += 1;
        self.counters.requests_sent += 1;
        self.transmits.push_back(Transmit {
            destination,
            bytes,
            kind: SendKind::Request,
            call_id,
        });
        self.reschedule(id);
        self.prune_timers();
        Ok(id)
    }

    /// CANCEL the INVITE client transaction `tx` (RFC 3261 §9.1): a new non-INVITE client
    /// transaction with the INVITE's branch, sent to the INVITE's destination. Allowed once a
    /// provisional response arrived and before a final one.
    pub fn send_cancel(&mut self, now: Instant, tx: TxId) -> Result<TxId, TransactionError> {
        let entry = self
            .entry(tx)
            .ok_or(TransactionError::UnknownTransaction(tx))?;
        let Machine::Client(invite) = &entry.machine else {
            return Err(TransactionError::NotAClientTransaction(tx));
        };
        let reason = if invite.kind() != TransactionKind::Invite {
            Some("it is not an INVITE")
        } else if invite.state() != super::ClientState::Proceeding {
            Some("it is not in the Proceeding state")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(TransactionError::CannotCancel { tx, reason });
        }
        let cancel = Bytes::from(build::cancel_for(&invite.parse_request()?));
        let reliable = invite.is_reliable();
        let destination = entry.peer.clone();
        let call_id = entry.call_id.clone();
        self.send_request_bytes_of(now, cancel, call_id, reliable, destination)
    }

    /// Feed a message received from `source` over a transport that is `reliable` or not.
    ///
    /// Responses go to the matching client transaction; requests to the matching server
    /// transaction, or start a new one. Nothing here fails: stray and duplicate messages are
    /// counted ([`Counters`]).
    pub fn handle_message(
        &mut self,
        now: Instant,
        message: Message,
        reliable: bool,
        source: D,
    ) -> Dispatch {
        let dispatch = if message.is_request() {
            self.handle_request(now, message, reliable, source)
        } else {
            self.handle_response(now, message, source)
        };
        self.prune_timers();
        dispatch
    }

    fn handle_response(&mut self, now: Instant, message: Message, source: D) -> Dispatch {
        self.counters.responses_received += 1;
        let found = message
            .branch()
            .and_then(|b| self.client_index.get(b))
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|&id| self.method_of(id) == Some(message.cseq_method()))
            });
        let Some(id) = found else {
            self.counters.stray_responses += 1;
            let is_2xx = message.status().is_some_and(|c| (200..300).contains(&c));
            if is_2xx && *message.cseq_method() == Method::INVITE {
                self.events
                    .push_back(TransactionEvent::StrayResponse { message, source });
            }
            return Dispatch::Stray;
        };
        let Some(Machine::Client(tx)) = self.entry_mut(id).map(|e| &mut e.machine) else {
            unreachable!("client index names client transactions");
        };
        let actions = tx.handle_response(now, &message);
        let absorbed = match actions.report {
            Some(Report::Absorbed(a)) => Some(a),
            _ => None,
        };
        self.apply(id, actions, Some(message));
        Dispatch::Client { tx: id, absorbed }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        message: Message,
        reliable: bool,
        source: D,
    ) -> Dispatch {
        self.counters.requests_received += 1;
        let is_ack = message.method() == Some(&Method::ACK);
        let found = {
            let key = server_key(&message);
            let want = if is_ack {
                &Method::INVITE
            } else {
                message.method().unwrap_or(&Method::ACK)
            };
            let sent_by = message_sent_by(&message);
            self.server_index.get(key.as_str()).and_then(|bucket| {
                bucket
                    .iter()
                    .find(|&id| match self.entry(id).map(|e| &e.machine) {
                        Some(Machine::Server(s)) => {
                            s.method() == want && sent_by_eq(message_sent_by(s.request()), sent_by)
                        }
                        _ => false,
                    })
            })
        };
        if let Some(id) = found {
            let Some(Machine::Server(tx)) = self.entry_mut(id).map(|e| &mut e.machine) else {
                unreachable!("server index names server transactions");
            };
            let actions = tx.handle_request(now, &message);
            if is_ack {
                self.counters.acks_absorbed += 1;
            } else {
                self.counters.retransmitted_requests += 1;
            }
            let absorbed = match actions.report {
                Some(Report::Absorbed(a)) => a,
                _ if is_ack => Absorbed::Ack,
                _ => Absorbed::RetransmittedRequest,
            };
            self.apply(id, actions, None);
            return Dispatch::Server { tx: id, absorbed };
        }
        if is_ack {
            self.counters.acks_passed_up += 1;
            self.events
                .push_back(TransactionEvent::Ack { message, source });
            return Dispatch::Ack;
        }
        if self.live_servers >= self.max_servers {
            self.refuse_overloaded(&message, source);
            return Dispatch::Overloaded;
        }
        let tx = match ServerTransaction::new(now, message.clone(), reliable, self.config) {
            Ok(tx) => tx,
            // Only an ACK or a response is refused, and neither reaches here.
            Err(_) => return Dispatch::Stray,
        };
        let call_id = Some(call_id_shared(&message));
        let id = self.insert(Machine::Server(tx), source, call_id);
        index_insert(&mut self.server_index, server_key_shared(&message), id);
        self.live_servers += 1;
        self.counters.server_transactions += 1;
        self.events
            .push_back(TransactionEvent::NewRequest { tx: id, message });
        self.reschedule(id);
        Dispatch::NewRequest { tx: id }
    }

    /// Answer `request` statelessly with `503 Service Unavailable` and `Retry-After`.
    fn refuse_overloaded(&mut self, request: &Message, source: D) {
        self.counters.overload_503 += 1;
        if self.out.capacity() < OUT_MIN {
            self.out = BytesMut::with_capacity(OUT_CHUNK);
        }
        build::write_response(
            request,
            503,
            build::reason_phrase(503),
            Some(OVERLOAD_TO_TAG),
            &[("Retry-After", OVERLOAD_RETRY_AFTER)],
            None,
            &mut self.out,
        );
        let bytes = self.out.split().freeze();
        self.send_stateless(source, bytes);
    }

    /// The INVITE server transaction a received CANCEL refers to (RFC 3261 §9.2: matched like
    /// a request, with the method INVITE).
    pub fn cancel_target(&self, cancel: &Message) -> Option<TxId> {
        let key = server_key(cancel);
        let sent_by = message_sent_by(cancel);
        self.server_index.get(key.as_str())?.iter().find(|&id| {
            matches!(
                self.entry(id).map(|e| &e.machine),
                Some(Machine::Server(s)) if *s.method() == Method::INVITE
                    && sent_by_eq(message_sent_by(s.request()), sent_by)
            )
        })
    }

    /// Send a response on server transaction `tx`, to the source of its request. The status
    /// code is read from the status line.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: TxId,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        let entry = self
            .entry_mut(tx)
            .ok_or(TransactionError::UnknownTransaction(tx))?;
        let Machine::Server(server) = &mut entry.machine else {
            return Err(TransactionError::NotAServerTransaction(tx));
        };
        let actions = server.send_response(now, response)?;
        self.apply(tx, actions, None);
        self.prune_timers();
        Ok(())
    }

    /// Build a response to the request of server transaction `tx` (RFC 3261 §8.2.6, with the
    /// standard reason phrase) and send it. `to_tag` is added to To when it has none.
    pub fn reply(
        &mut self,
        now: Instant,
        tx: TxId,
        code: u16,
        to_tag: Option<&str>,
    ) -> Result<(), TransactionError> {
        self.respond(now, tx, code, to_tag, &[], None).map(drop)
    }

    /// [`reply`](Self::reply) with further headers (in order) and a body (its Content-Type
    /// and bytes); the response is returned too (e.g. for the UA core to retransmit a 2xx).
    pub fn respond(
        &mut self,
        now: Instant,
        tx: TxId,
        code: u16,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Bytes, TransactionError> {
        let Some(Machine::Server(server)) = self.slots.get(tx.0).map(|e| &e.machine) else {
            return Err(TransactionError::UnknownTransaction(tx));
        };
        let request = server.request();
        if self.out.capacity() < OUT_MIN {
            self.out = BytesMut::with_capacity(OUT_CHUNK);
        }
        build::write_response(
            request,
            code,
            build::reason_phrase(code),
            to_tag,
            extra,
            body,
            &mut self.out,
        );
        let response = self.out.split().freeze();
        self.send_response(now, tx, response.clone())?;
        Ok(response)
    }

    /// Send `100 Trying` on server transaction `tx` (RFC 3261 §17.2.1).
    pub fn send_trying(&mut self, now: Instant, tx: TxId) -> Result<(), TransactionError> {
        self.reply(now, tx, 100, None)
    }

    /// Queue bytes outside any transaction: the ACK of a 2xx, or a 2xx retransmission from a
    /// [`Uas2xxRetransmitter`](super::Uas2xxRetransmitter).
    pub fn send_stateless(&mut self, destination: D, bytes: Bytes) {
        self.send_stateless_of(destination, bytes, None);
    }

    /// [`send_stateless`](Self::send_stateless) with the message's Call-ID as its writer
    /// gives it (`call_id`, carried by the [`Transmit`]); `None`: not given.
    pub fn send_stateless_of(&mut self, destination: D, bytes: Bytes, call_id: Option<BytesStr>) {
        self.counters.stateless_sent += 1;
        self.transmits.push_back(Transmit {
            destination,
            bytes,
            kind: SendKind::Stateless,
            call_id,
        });
    }

    /// Drop transaction `tx` now, without waiting for its timers (e.g. an INVITE that stays
    /// in Proceeding after its CANCEL got no answer). A [`TransactionEvent::Terminated`]
    /// follows.
    pub fn abandon(&mut self, tx: TxId) -> Result<(), TransactionError> {
        let entry = self
            .entry_mut(tx)
            .ok_or(TransactionError::UnknownTransaction(tx))?;
        match &mut entry.machine {
            Machine::Client(c) => c.terminate(),
            Machine::Server(s) => s.terminate(),
        }
        self.finish(tx);
        self.prune_timers();
        Ok(())
    }

    /// Fire every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(entry) = self.entry_mut(id) {
                if entry.scheduled == Some(at) {
                    entry.scheduled = None;
                    due.push(id);
                }
            }
        }
        for &id in &due {
            if let Some(entry) = self.entry_mut(id) {
                let actions = entry.machine.handle_timeout(now);
                self.apply(id, actions, None);
            }
        }
        self.due = due;
        self.prune_timers();
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<D>> {
        let t = self.transmits.pop_front()?;
        // Every test that sends checks that a Call-ID carried is the one in the bytes.
        #[cfg(test)]
        if let Some(id) = &t.call_id {
            assert_eq!(Some(id.as_str()), call_id_of(&t.bytes), "{:?}", t.bytes);
        }
        Some(t)
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<TransactionEvent<D>> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: the earliest
    /// deadline of any transaction. Constant time: the top of the deadline heap.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Capacities of (deadline heap, server index).
    #[cfg(test)]
    pub(super) fn index_capacities(&self) -> (usize, usize) {
        (self.timers.capacity(), self.server_index.capacity())
    }

    /// Sizes of the internal tables: (deadline heap, client index, server index, slots).
    #[cfg(test)]
    pub(super) fn footprint(&self) -> (usize, usize, usize, usize) {
        (
            self.timers.len(),
            self.client_index.len(),
            self.server_index.len(),
            self.slots.slot_count(),
        )
    }

    /// Carry out a transaction's actions, then reschedule or remove it.
    fn apply(&mut self, id: TxId, actions: Actions, message: Option<Message>) {
        if let Some(Outgoing { bytes, kind }) = actions.transmit {
            match kind {
                SendKind::Request => self.counters.requests_sent += 1,
                SendKind::Ack => self.counters.acks_sent += 1,
                SendKind::Response => self.counters.responses_sent += 1,
                SendKind::Stateless => self.counters.stateless_sent += 1,
                SendKind::RequestRetransmission
                | SendKind::AckRetransmission
                | SendKind::ResponseRetransmission => self.counters.retransmissions_sent += 1,
            }
            if let Some(entry) = self.entry(id) {
                self.transmits.push_back(Transmit {
                    destination: entry.peer.clone(),
                    bytes,
                    kind,
                    call_id: entry.call_id.clone(),
                });
            }
        }
        match actions.report {
            Some(Report::PassUp) => {
                if let Some(message) = message {
                    self.events
                        .push_back(TransactionEvent::Response { tx: id, message });
                }
            }
            Some(Report::Absorbed(Absorbed::RetransmittedFinal)) => {
                self.counters.duplicate_responses += 1;
            }
            Some(Report::Absorbed(Absorbed::LateResponse)) => {
                self.counters.late_responses += 1;
            }
            Some(Report::Absorbed(Absorbed::RetransmittedRequest | Absorbed::Ack)) | None => {}
            Some(Report::TimedOut { timer, elapsed }) => {
                self.counters.timeouts += 1;
                self.events.push_back(TransactionEvent::TimedOut {
                    tx: id,
                    timer,
                    elapsed,
                });
            }
        }
        self.finish(id);
    }

    /// Remove `id` if it terminated, else push its next deadline if it changed.
    fn finish(&mut self, id: TxId) {
        let terminated = self.entry(id).is_some_and(|e| e.machine.is_terminated());
        if terminated {
            self.remove(id);
        } else {
            self.reschedule(id);
        }
    }

    fn reschedule(&mut self, id: TxId) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        let next = entry.machine.poll_timeout();
        if next != entry.scheduled {
            entry.scheduled = next;
            if let Some(at) = next {
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// Pop stale deadlines off the top of the heap, so that `poll_timeout` is exact; rebuild
    /// the heap when stale entries pile up.
    fn prune_timers(&mut self) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if self.entry(id).is_some_and(|e| e.scheduled == Some(at)) {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.slots.len() + 1024 {
            let live = self
                .slots
                .iter()
                .filter_map(|(id, entry)| entry.scheduled.map(|at| Reverse((at, TxId(id)))));
            self.timers = live.collect();
        }
    }

    fn insert(&mut self, machine: Machine, peer: D, call_id: Option<BytesStr>) -> TxId {
        let entry = Entry {
            machine,
            peer,
            scheduled: None,
            call_id,
        };
        TxId(self.slots.insert(entry))
    }

    fn remove(&mut self, id: TxId) {
        let Some(entry) = self.slots.remove(id.0) else {
            return;
        };
        match &entry.machine {
            Machine::Client(c) => {
                index_remove(&mut self.client_index, c.branch(), id);
            }
            Machine::Server(s) => {
                let key = server_key(s.request());
                index_remove(&mut self.server_index, key.as_str(), id);
                self.live_servers -= 1;
            }
        }
        self.shrink_after_storm();
        self.counters.terminated += 1;
        self.events
            .push_back(TransactionEvent::Terminated { tx: id });
    }

    /// Give memory back once a storm has passed: tables that fell to a small fraction of
    /// their capacity are shrunk. (The slot table keeps its length: its free slots carry the
    /// generations that keep stale ids from naming new transactions.)
    fn shrink_after_storm(&mut self) {
        fn sparse(len: usize, capacity: usize) -> bool {
            capacity >= SHRINK_MIN && len * SHRINK_RATIO < capacity
        }
        if sparse(self.server_index.len(), self.server_index.capacity()) {
            self.server_index.shrink_to(self.server_index.len() * 2);
        }
        if sparse(self.client_index.len(), self.client_index.capacity()) {
            self.client_index.shrink_to(self.client_index.len() * 2);
        }
        if sparse(self.timers.len(), self.timers.capacity()) {
            self.timers.shrink_to(self.timers.len() * 2);
        }
        if sparse(self.events.len(), self.events.capacity()) {
            self.events.shrink_to(self.events.len() * 2);
        }
        if sparse(self.transmits.len(), self.transmits.capacity()) {
            self.transmits.shrink_to(self.transmits.len() * 2);
        }
    }

    fn entry(&self, id: TxId) -> Option<&Entry<D>> {
        self.slots.get(id.0)
    }

    fn entry_mut(&mut self, id: TxId) -> Option<&mut Entry<D>> {
        self.slots.get_mut(id.0)
    }

    fn method_of(&self, id: TxId) -> Option<&Method> {
        self.entry(id).map(|e| e.machine.method())
    }
}

fn index_insert(index: &mut HashMap<Key, Bucket<TxId>>, key: BytesStr, id: TxId) {
    match index.entry(Key(key)) {
        MapEntry::Occupied(mut o) => o.get_mut().push(id),
        MapEntry::Vacant(v) => {
            v.insert(Bucket::new(id));
        }
    }
}

fn index_remove(index: &mut HashMap<Key, Bucket<TxId>>, key: &str, id: TxId) {
    if let Some(bucket) = index.get_mut(key) {
        if bucket.remove(id) {
            index.remove(key);
        }
    }
}
