//! Whose RTP a datagram is: the peer's address (the SDP's, or latched) and stray counts.
//!
//! A call's RTP port may receive datagrams that are not the peer's: a far end still streaming
//! to a port that a new call reuses, a scanner, another call's misrouted media. Only the
//! peer's are the peer's audio. [`PeerAddress`] says which source addresses are the peer's:
//!
//! * the SDP's address (its `c=` line and `m=` port) always is;
//! * *latching*, for a peer behind NAT: until a packet comes from the SDP's address, the first
//!   source that sends is taken as the peer's when the SDP's address cannot be what a packet
//!   from the peer shows here: the SDP's IP is a private, shared (RFC 6598), link-local or
//!   unique-local one and the packet comes from another IP. A source on the SDP's own IP but
//!   another port is never latched: any program on that host (another call of the same peer)
//!   sends from there. The latch moves to the SDP's address as soon as a packet comes from
//!   it;
//! * a new SDP (re-INVITE) with another address starts over (latch dropped); one with the same
//!   address, or the unspecified `0.0.0.0` / `::` of an RFC 2543 hold, changes nothing.
//!
//! Before any SDP address is known, the first source latches.
//!
//! [`StrayStats`] counts what was set aside.

use std::net::{IpAddr, SocketAddr};

/// Distinct stray sources counted at most.
const SOURCES_KEPT: usize = 8;

/// Datagrams at a call's RTP port that were not taken as the peer's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrayStats {
    /// Datagrams from a source address other than the peer's.
    pub other_address: u64,
    /// RTP packets from the peer's address under a second SSRC interleaved with the played
    /// one (not an RFC 4733 event stream, not a clean switch).
    pub other_ssrc: u64,
    /// The first source address that was not the peer's.
    pub first_source: Option<SocketAddr>,
    /// Distinct source addresses that were not the peer's (counted up to 8).
    pub sources: u64,
    /// The first SSRC set aside as interleaved.
    pub first_ssrc: Option<u32>,
}

impl StrayStats {
    /// Every datagram set aside.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.other_address + self.other_ssrc
    }
}

/// Which source addresses are the peer's (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct PeerAddress {
    sdp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    stray: StrayStats,
    seen: [Option<SocketAddr>; SOURCES_KEPT],
}

impl PeerAddress {
    /// No address known yet: the first source latches.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer's address as its SDP says (at the start of the media, and after each SDP it
    /// sends).
    pub fn set_sdp(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if addr.ip().is_unspecified() || self.sdp == Some(addr) {
            return;
        }
        self.sdp = Some(addr);
        self.latched = None;
    }

    /// The source the peer's packets come from, once one did.
    #[must_use]
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Whether a datagram from `from` is the peer's; one that is not is counted as stray.
    pub fn accept(&mut self, from: SocketAddr) -> bool {
        let from = canonical(from);
        let peer = match (self.sdp, self.latched) {
            (Some(sdp), _) if from == sdp => true,
            (_, Some(latched)) => from == latched,
            (None, None) => true,
            (Some(sdp), None) => behind_nat(sdp, from),
        };
        if peer {
            self.latched = Some(from);
        } else {
            self.count_stray(from);
        }
        peer
    }

    /// Counts an interleaved second SSRC's packet from the peer's address.
    pub fn count_stray_ssrc(&mut self, ssrc: u32, packets: u64) {
        self.stray.other_ssrc += packets;
        self.stray.first_ssrc.get_or_insert(ssrc);
    }

    fn count_stray(&mut self, from: SocketAddr) {
        self.stray.other_address += 1;
        self.stray.first_source.get_or_insert(from);
        if self.seen.contains(&Some(from)) {
            return;
        }
        if let Some(free) = self.seen.iter_mut().find(|s| s.is_none()) {
            *free = Some(from);
            self.stray.sources += 1;
        }
    }

    /// What was set aside so far.
    #[must_use]
    pub fn stray(&self) -> StrayStats {
        self.stray
    }
}

/// An address compared by IP and port only (no IPv6 flow label or scope), an IPv4-mapped
/// IPv6 address as the IPv4 one.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether `sdp` is an address a packet from its owner cannot show here, and `from` another
/// IP: a peer behind NAT.
fn behind_nat(sdp: SocketAddr, from: SocketAddr) -> bool {
    from.ip() != sdp.ip() && is_private(sdp.ip())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xFE00) == 0xFC00 || (first & 0xFFC0) == 0xFE80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_sdp_address_is_the_peer_on_a_public_or_loopback_address() {
        let mut p = PeerAddress::new();
        p.set_sdp(a("127.0.0.1:6000"));
        // Another program on the same host, first: not latched, counted.
        assert!(!p.accept(a("127.0.0.1:7000")));
        assert!(!p.accept(a("127.0.0.1:7000")));
        assert!(!p.accept(a("203.0.113.9:6000")));
        assert!(p.accept(a("127.0.0.1:6000")));
        assert!(!p.accept(a("127.0.0.1:7000")));
        let s = p.stray();
        assert_eq!(s.other_address, 4);
        assert_eq!(s.sources, 2);
        assert_eq!(s.first_source, Some(a("127.0.0.1:7000")));
        assert_eq!(s.packets(), 4);
    }

    #[test]
    fn a_peer_behind_nat_is_latched_on_its_first_packet_and_the_sdp_address_still_wins() {
        let mut p = PeerAddress::new();
        p.set_sdp(a("192.168.1.20:4000"));
        assert!(p.accept(a("198.51.100.7:61000")));
        assert_eq!(p.latched(), Some(a("198.51.100.7:61000")));
        // A second source is not the peer.
        assert!(!p.accept(a("198.51.100.8:5000")));
        // Same IP as the SDP's, other port: never latched on it, but here it is not needed.
        assert!(!p.accept(a("192.168.1.20:4002")));
        // The SDP's own address: always the peer, and the latch moves to it.
        assert!(p.accept(a("192.168.1.20:4000")));
        assert!(!p.accept(a("198.51.100.7:61000")));
        assert_eq!(p.stray().other_address, 3);
        // Shared (CGNAT), link-local and unique-local addresses latch the same way.
        for sdp in ["100.64.3.3:4000", "169.254.1.1:4000", "[fd00::1]:4000"] {
            let mut p = PeerAddress::new();
            p.set_sdp(a(sdp));
            let from = if sdp.starts_with('[') {
                "[2001:db8::1]:9"
            } else {
                "198.51.100.7:9"
            };
            assert!(p.accept(a(from)), "{sdp}");
        }
    }

    #[test]
    fn a_new_sdp_address_starts_over_and_a_hold_address_changes_nothing() {
        let mut p = PeerAddress::new();
        p.set_sdp(a("10.0.0.5:4000"));
        assert!(p.accept(a("198.51.100.7:61000")));
        // RFC 2543 hold: 0.0.0.0 keeps the peer.
        p.set_sdp(a("0.0.0.0:4000"));
        assert!(p.accept(a("198.51.100.7:61000")));
        // The same address again (a session refresh): the latch stays.
        p.set_sdp(a("10.0.0.5:4000"));
        assert!(p.accept(a("198.51.100.7:61000")));
        // A new address (an SBC moving the media): the old source is stray now.
        p.set_sdp(a("203.0.113.4:5000"));
        assert!(!p.accept(a("198.51.100.7:61000")));
        assert!(p.accept(a("203.0.113.4:5000")));
    }

    #[test]
    fn addresses_compare_by_ip_and_port() {
        let mut p = PeerAddress::new();
        p.set_sdp(a("127.0.0.1:6000"));
        // From a dual-stack socket: the IPv4-mapped form of the same address.
        assert!(p.accept(a("[::ffff:127.0.0.1]:6000")));
        let mut p = PeerAddress::new();
        p.set_sdp(a("[fe80::1]:6000"));
        let mut scoped = a("[fe80::1]:6000");
        if let SocketAddr::V6(v6) = &mut scoped {
            v6.set_scope_id(2);
        }
        assert!(p.accept(scoped));
    }

    #[test]
    fn before_any_sdp_address_the_first_source_latches() {
        let mut p = PeerAddress::new();
        assert!(p.accept(a("127.0.0.1:9")));
        assert!(!p.accept(a("127.0.0.1:11")));
        // Once known, the SDP's address takes over.
        p.set_sdp(a("127.0.0.1:11"));
        assert!(p.accept(a("127.0.0.1:11")));
        assert!(!p.accept(a("127.0.0.1:9")));
    }

    #[test]
    fn distinct_stray_sources_are_counted_with_bounded_memory() {
        let mut p = PeerAddress::new();
        p.set_sdp(a("127.0.0.1:6000"));
        for port in 0..20u16 {
            for _ in 0..3 {
                p.accept(SocketAddr::from(([127, 0, 0, 2], 1000 + port)));
            }
        }
        let s = p.stray();
        assert_eq!(s.other_address, 60);
        assert_eq!(s.sources, 8);
        p.count_stray_ssrc(0x77, 5);
        assert_eq!(p.stray().other_ssrc, 5);
        assert_eq!(p.stray().first_ssrc, Some(0x77));
        assert_eq!(p.stray().packets(), 65);
    }
}
