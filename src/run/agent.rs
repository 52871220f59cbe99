//! A role's agent: one transport and one call [`Endpoint`] serving every user agent of a
//! role, and the router between the endpoint and the per-call tasks.
//!
//! Call tasks never touch the endpoint: they send [`Command`]s and receive their call's
//! events on their own channel. Requests of our own (REGISTER) are answered on a oneshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sipcheck_core::sdp::{LocalMedia, Negotiated};
use sipcheck_core::sip::msg::Message;
use sipcheck_core::sip::transaction::{TransactionEvent, TxId};
use sipcheck_core::ua::call::{CallError, CallEvent, CallId, OutgoingCall};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::transport::TransportError;
use crate::ua::UaDriver;
use sipcheck_core::stats::ladder::RawLadder;

/// The events of one call, with its ladder attached to the `Ended` event. Boxed: the
/// channel allocates room for 32 messages at once, which unboxed (336 bytes each) is a
/// 10 KiB allocation per call.
pub(crate) type CallEvents = mpsc::UnboundedReceiver<Box<(CallEvent<SocketAddr>, RawLadder)>>;

/// Where a call's events go.
type CallSender = mpsc::UnboundedSender<Box<(CallEvent<SocketAddr>, RawLadder)>>;

/// What a call task asks of its agent.
pub(crate) enum Command {
    /// Place a call; the reply carries the call and its event channel.
    Invite(
        Box<OutgoingCall<SocketAddr>>,
        oneshot::Sender<Result<(CallId, String, CallEvents), String>>,
    ),
    /// Send 180 Ringing.
    Ring(CallId),
    /// Answer with our media; the negotiated media (or `None` for a delayed offer).
    Accept(
        CallId,
        Box<LocalMedia>,
        oneshot::Sender<Result<Option<Negotiated>, String>>,
    ),
    /// Refuse with a code.
    Reject(CallId, u16),
    /// BYE, CANCEL or refusal, as the state requires.
    Hangup(CallId),
    /// CANCEL (or BYE once answered).
    Cancel(CallId),
    /// A re-INVITE offering this media (hold, resume); its outcome comes as an event.
    Reinvite(CallId, Box<LocalMedia>, oneshot::Sender<Result<(), String>>),
    /// A request of our own (REGISTER) to a destination; its final response.
    Request(
        Vec<u8>,
        SocketAddr,
        oneshot::Sender<Result<Message, String>>,
    ),
    /// Take no new calls; finish the ones under way, then stop.
    Shutdown,
}

/// Where the final response to a request of our own goes.
type Reply = oneshot::Sender<Result<Message, String>>;

/// A TCP connection that dropped: its peer, and its user agent when each has its own.
pub(crate) type LostFlow = (SocketAddr, Option<Arc<str>>);

/// An incoming call, handed to whoever serves the called user.
pub(crate) struct IncomingCall {
    pub(crate) call: CallId,
    pub(crate) call_id: String,
    pub(crate) user: String,
    pub(crate) events: CallEvents,
}

/// The agent of one role.
pub(crate) struct Agent {
    driver: UaDriver,
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: Option<mpsc::UnboundedSender<IncomingCall>>,
    calls: HashMap<CallId, CallSender>,
    /// Requests of our own under way: their destination, their user agent, and who waits
    /// for the response.
    requests: HashMap<TxId, (SocketAddr, Option<Arc<str>>, Reply)>,
    /// Told the peer of each TCP connection that dropped, and its user agent when each has
    /// its own.
    flow_lost: Option<broadcast::Sender<LostFlow>>,
}

impl Agent {
    pub(crate) fn new(
        driver: UaDriver,
        commands: mpsc::UnboundedReceiver<Command>,
        incoming: mpsc::UnboundedSender<IncomingCall>,
    ) -> Self {
        Self {
            driver,
            commands,
            incoming: Some(incoming),
            calls: HashMap::new(),
            requests: HashMap::new(),
            flow_lost: None,
        }
    }

    /// Tell `lost` the peer of every TCP connection that drops (the registrations through
    /// it are renewed over a new one).
    pub(crate) fn notify_flow_lost(mut self, lost: broadcast::Sender<LostFlow>) -> Self {
        self.flow_lost = Some(lost);
        self
    }

    /// A TCP connection with `peer` dropped or could not be opened: the requests of our
    /// own sent to it fail now (their responses cannot come) instead of timing out, and
    /// whoever renews registrations is told.
    fn flow_failed(&mut self, peer: SocketAddr, error: &TransportError) {
        let ua = self.driver.take_lost_ua();
        tracing::info!(%peer, ua = ua.as_deref().unwrap_or("*"), %error, "TCP connection lost");
        let failed: Vec<TxId> = self
            .requests
            .iter()
            .filter(|(_, (to, of, _))| *to == peer && (ua.is_none() || *of == ua))
            .map(|(tx, _)| *tx)
            .collect();
        for tx in failed {
            if let Some(reply) = self.answered(tx) {
                let _ = reply.send(Err(error.to_string()));
            }
        }
        // A connection that could not be opened was no flow: nothing to renew (renewing
        // would only fail the same way, at once, again).
        let dropped = !matches!(error, TransportError::Connect { .. });
        if let (Some(lost), true) = (&self.flow_lost, dropped) {
            let _ = lost.send((peer, ua));
        }
    }

    /// Fail the requests to the destination `e` names unreachable.
    fn unreachable(&mut self, e: &TransportError) {
        let TransportError::Unreachable { addr, .. } = e else {
            return;
        };
        let failed: Vec<TxId> = self
            .requests
            .iter()
            .filter(|(_, (to, _, _))| to == addr)
            .map(|(tx, _)| *tx)
            .collect();
        for tx in failed {
            if let Some(reply) = self.answered(tx) {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    /// The reply to request `tx` is going out: stop watching its destination.
    fn answered(&mut self, tx: TxId) -> Option<Reply> {
        let (to, _, reply) = self.requests.remove(&tx)?;
        self.driver.unwatch(to);
        Some(reply)
    }

    /// Run until every command sender is gone and no call is left.
    pub(crate) async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.driver.next_event() => match event {
                    Ok(event) => self.route(event),
                    Err(e) if e.flow().is_some() => {
                        self.flow_failed(e.flow().expect("checked"), &e);
                    }
                    // ICMP says a destination of our requests is unreachable: they fail at
                    // once (not after Timer F); the transport goes on serving the others.
                    Err(e @ TransportError::Unreachable { .. }) => self.unreachable(&e),
                    Err(e) => {
                        tracing::error!(error = %e, "transport failed");
                        // Answer every waiter so that nothing hangs.
                        for (_, (_, _, reply)) in self.requests.drain() {
                            let _ = reply.send(Err(e.to_string()));
                        }
                        return;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => {
                        // No new work: refuse new calls, finish what is under way (the
                        // calls' own commands still apply: a callee giving up on its wait
                        // hangs up).
                        self.incoming = None;
                        let mut open = true;
                        while !(self.calls.is_empty() && self.requests.is_empty()) {
                            tokio::select! {
                                event = self.driver.next_event() => match event {
                                    Ok(event) => self.route(event),
                                    Err(e) if e.flow().is_some() => {
                                        self.flow_failed(e.flow().expect("checked"), &e);
                                    }
                                    Err(e @ TransportError::Unreachable { .. }) => {
                                        self.unreachable(&e);
                                    }
                                    Err(_) => return,
                                },
                                command = self.commands.recv(), if open => match command {
                                    Some(Command::Invite(_, reply)) => {
                                        let _ = reply.send(Err("the run is ending".into()));
                                    }
                                    Some(command) => self.apply(command),
                                    None => open = false,
                                },
                            }
                        }
                        return;
                    }
                    Some(command) => self.apply(command),
                },
            }
        }
    }

    fn route(&mut self, event: CallEvent<SocketAddr>) {
        match event {
            CallEvent::Transaction(TransactionEvent::Response { tx, message })
                if message.status().is_some_and(|c| c >= 200) =>
            {
                if let Some(reply) = self.answered(tx) {
                    let _ = reply.send(Ok(message));
                }
            }
            CallEvent::Transaction(TransactionEvent::TimedOut { tx, timer, elapsed }) => {
                if let Some(reply) = self.answered(tx) {
                    let _ = reply.send(Err(format!(
                        "{timer} expired after {:.1} s",
                        elapsed.as_secs_f64()
                    )));
                }
            }
            CallEvent::Transaction(_) => {}
            CallEvent::Incoming {
                call,
                request_uri,
                to,
                ..
            } => {
                let user = user_part(&request_uri)
                    .or_else(|| user_part(&to))
                    .unwrap_or_default()
                    .to_string();
                let call_id = self
                    .driver
                    .endpoint()
                    .sip_call_id(call)
                    .unwrap_or_default()
                    .to_string();
                let (tx, rx) = mpsc::unbounded_channel();
                self.calls.insert(call, tx);
                let handed = self.incoming.as_ref().map(|incoming| {
                    incoming.send(IncomingCall {
                        call,
                        call_id,
                        user,
                        events: rx,
                    })
                });
                if !matches!(handed, Some(Ok(()))) {
                    self.calls.remove(&call);
                    let _ = self.driver.endpoint().reject(Instant::now(), call, 480);
                }
            }
            event => {
                let call = match &event {
                    CallEvent::Progress { call, .. }
                    | CallEvent::EarlyMedia { call, .. }
                    | CallEvent::Answered { call, .. }
                    | CallEvent::MediaUpdated { call, .. }
                    | CallEvent::UpdateFailed { call, .. }
                    | CallEvent::Ended { call, .. } => *call,
                    _ => return,
                };
                let ended = if let CallEvent::Ended { record, .. } = &event {
                    Some(record.call_id.clone())
                } else {
                    None
                };
                let ladder = ended
                    .map(|id| self.driver.take_call_ladder(&id))
                    .unwrap_or_default();
                let is_end = matches!(event, CallEvent::Ended { .. });
                if let Some(tx) = self.calls.get(&call) {
                    let _ = tx.send(Box::new((event, ladder)));
                }
                if is_end {
                    self.calls.remove(&call);
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        let now = Instant::now();
        let endpoint = self.driver.endpoint();
        let log = |r: Result<(), CallError>| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "call operation refused");
            }
        };
        match command {
            Command::Invite(call, reply) => {
                let result = endpoint.invite(now, *call).map_err(|e| e.to_string());
                let _ = match result {
                    Ok(id) => {
                        let call_id = endpoint.sip_call_id(id).unwrap_or_default().to_string();
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.calls.insert(id, tx);
                        reply.send(Ok((id, call_id, rx)))
                    }
                    Err(e) => reply.send(Err(e)),
                };
            }
            Command::Ring(call) => log(endpoint.ring(now, call)),
            Command::Accept(call, media, reply) => {
                let _ = reply.send(
                    endpoint
                        .accept(now, call, *media)
                        .map_err(|e| e.to_string()),
                );
            }
            Command::Reject(call, code) => log(endpoint.reject(now, call, code)),
            Command::Hangup(call) => log(endpoint.hangup(now, call)),
            Command::Cancel(call) => log(endpoint.cancel(now, call)),
            Command::Reinvite(call, media, reply) => {
                let _ = reply.send(
                    endpoint
                        .reinvite(now, call, *media)
                        .map_err(|e| e.to_string()),
                );
            }
            Command::Shutdown => {}
            Command::Request(bytes, to, reply) => {
                let ua = crate::transport::from_user(&bytes).map(Arc::from);
                match endpoint.send_request(now, Bytes::from(bytes), to) {
                    Ok(tx) => {
                        self.requests.insert(tx, (to, ua, reply));
                        self.driver.watch(to);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
}

/// The user part of a SIP URI or name-addr (`"Bob" <sip:2001@pbx>;tag=1` → `2001`).
pub(crate) fn user_part(value: &str) -> Option<&str> {
    let uri = sipcheck_core::sip::msg::contact_uri(value);
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

#[cfg(test)]
mod tests {
    use super::user_part;

    #[test]
    fn user_parts() {
        assert_eq!(user_part("sip:2001@127.0.0.1:5070"), Some("2001"));
        assert_eq!(
            user_part("\"Bob\" <sip:bob@pbx;transport=tcp>;tag=x"),
            Some("bob")
        );
        assert_eq!(user_part("sip:pbx.example.com"), None);
    }
}
