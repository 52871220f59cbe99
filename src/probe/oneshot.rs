//! The driver of `register` and `options`: the core's [`Agent`] on one socket
//! ([`Wire`]), with no call. The agent sends the requests, keeps the registration, bounds
//! everything by `--timeout` ([`Agent::limit_requests`]) and fails a request at once on an
//! ICMP error; this carries datagrams and time, and keeps the ladder.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipcheck_core::sdp::DEFAULT_PTIME_MS;
use sipcheck_core::sip::transaction::TimerConfig;
use sipcheck_core::stats::ladder::{Ladder, Rung};
use sipcheck_core::ua::agent::{Agent, AgentConfig};
use sipcheck_core::ua::call::{Endpoint, EndpointConfig};
use sipcheck_core::ua::register::LocalEnd;

use super::ProbeError;
use crate::drive::clock::sleep_until;
use crate::drive::os_seed;
use crate::drive::transport::SipSocket;
use crate::drive::wire::Wire;

/// A probe's agent on its socket.
pub(crate) struct Oneshot {
    wire: Wire,
    /// The agent (its requests, its registration).
    pub(crate) agent: Agent<SocketAddr>,
    /// The overall limit (`--timeout`) as written, and when it is reached.
    limit: Option<(String, Instant)>,
}

impl Oneshot {
    /// An agent sending from `local` over `socket` to `peer`, its transactions on `timers`,
    /// every request bounded by `limit` from now; with `sips`, its registrations are of a
    /// `sips:` address of record. Its failures read as the probes' always have ("no final
    /// response: …").
    pub(crate) fn new(
        socket: SipSocket,
        local: LocalEnd,
        peer: SocketAddr,
        timers: TimerConfig,
        limit: Option<Duration>,
        sips: bool,
    ) -> Self {
        let now = Instant::now();
        let mut config = EndpointConfig::new(local.clone());
        config.timers = timers;
        let endpoint = Endpoint::new(config, sipcheck_core::ids::IdGen::new(os_seed()));
        let mut agent = Agent::new(
            AgentConfig {
                role: "probe".into(),
                domain: peer.ip().to_string(),
                local,
                next_hop: Some(peer),
                codecs: Vec::new(),
                ptime_ms: DEFAULT_PTIME_MS,
                rtp: false,
                wavs: Default::default(),
                accounts: Vec::new(),
                steps: Default::default(),
                srtp: None,
                sips,
                signature_parties: Vec::new().into(),
            },
            endpoint,
        );
        agent.probe_wording();
        let limit = limit.map(|d| (humantime::format_duration(d).to_string(), now + d));
        if let Some((text, at)) = &limit {
            agent.limit_requests(now, *at, text.clone());
        }
        Self {
            wire: Wire::new(socket, Some(Ladder::new(now))),
            agent,
            limit,
        }
    }

    /// Leave at least `grace` from now before the limit (when there is one): to remove a
    /// binding once the work is done, so that a limit reached just then leaves nothing
    /// behind at the registrar.
    pub(crate) fn extend_limit(&mut self, grace: Duration) {
        if let Some((text, at)) = &mut self.limit {
            let now = Instant::now();
            *at = (*at).max(now + grace);
            self.agent.limit_requests(now, *at, text.clone());
        }
    }

    /// Drive the agent until `done` says it is over (`done` takes the agent's events). A
    /// transport that fails (a connection refused or closed) ends the probe with an error.
    pub(crate) async fn run_until(
        &mut self,
        mut done: impl FnMut(&mut Agent<SocketAddr>) -> bool,
    ) -> Result<(), ProbeError> {
        loop {
            if let Err(failed) = self.wire.send(&mut self.agent).await {
                return Err(failed.error.into());
            }
            if done(&mut self.agent) {
                return Ok(());
            }
            let deadline = self.agent.poll_timeout();
            tokio::select! {
                incoming = self.wire.socket.recv() => {
                    self.wire.deliver(&mut self.agent, incoming?);
                }
                () = sleep_until(deadline) => self.agent.handle_timeout(Instant::now()),
            }
        }
    }

    /// Every message sent and received.
    pub(crate) fn ladder(&self) -> Vec<Rung> {
        self.wire
            .ladder
            .as_ref()
            .map(|ladder| ladder.rungs().to_vec())
            .unwrap_or_default()
    }
}
