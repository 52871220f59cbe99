//! What the drivers' tests share.

use std::net::SocketAddr;
use std::sync::Arc;

use sipcheck_core::ids::IdGen;
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::ua::agent::{Agent, AgentConfig};
use sipcheck_core::ua::call::{Endpoint, EndpointConfig};
use sipcheck_core::ua::register::LocalEnd;

/// An agent of `role` at `addr` over UDP, with no account, codec, next hop, RTP or SRTP, its
/// identifiers drawn from a fixed seed.
pub(crate) fn agent(role: &str, addr: SocketAddr) -> Agent<SocketAddr> {
    let local = LocalEnd {
        transport: Transport::Udp,
        addr,
        routes: Vec::new(),
    };
    let config = AgentConfig {
        role: role.into(),
        local: local.clone(),
        next_hop: None,
        domain: String::new(),
        codecs: Vec::new(),
        ptime_ms: 20,
        rtp: false,
        wavs: Arc::default(),
        accounts: Vec::new(),
        steps: Arc::default(),
        srtp: None,
        sips: false,
        signature_parties: Vec::new().into(),
    };
    Agent::new(
        config,
        Endpoint::new(EndpointConfig::new(local), IdGen::new(7)),
    )
}
