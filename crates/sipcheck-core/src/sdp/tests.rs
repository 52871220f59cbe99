//! Fixtures shared by the SDP tests (real peers' bodies), and the model's own tests.

use super::*;
use std::net::{Ipv4Addr, SocketAddr};

pub(super) fn crlf(lines: &str) -> String {
    lines.lines().map(|l| format!("{}\r\n", l.trim())).collect()
}

pub(super) fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(crlf(text).as_bytes()).unwrap()
}

pub(super) fn local() -> LocalMedia {
    LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 40000, 4242)
}

pub(super) fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Kamailio relaying through rtpengine: the body rtpengine rewrote.
pub(super) const KAMAILIO_RTPENGINE: &str = "v=0
    o=- 1700000000 1700000001 IN IP4 203.0.113.5
    s=-
    c=IN IP4 203.0.113.5
    t=0 0
    m=audio 30000 RTP/AVP 0 8 101
    c=IN IP4 203.0.113.5
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=sendrecv
    a=rtcp:30001
    a=ssrc:2864914302 cname:3f7a1c0d5e2b4a69
    a=ice-ufrag:Xk3pQ9sT
    a=ice-pwd:m4Yt7Lq2Zr8Vn1Bc6Hd0Jw5F
    a=candidate:4Nt8v2Lq 1 UDP 2130706431 203.0.113.5 30000 typ host
    a=candidate:4Nt8v2Lq 2 UDP 2130706430 203.0.113.5 30001 typ host
    a=ptime:20";

/// SIPp's built-in uac after keyword substitution (`[media_port]`, `[media_ip]`, …).
pub(super) const SIPP_UAC: &str = "v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 0
    a=rtpmap:0 PCMU/8000";

/// baresip 1.0 with its default g711 and telephone-event modules.
pub(super) const BARESIP: &str = "v=0
    o=- 1386527542 3049271931 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    a=tool:baresip 1.0.0
    m=audio 12345 RTP/AVP 0 8 101
    b=AS:64
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
    a=sendrecv
    a=label:1";

/// Asterisk (chan_pjsip) with many codecs; PCMA is the only G.711 one.
pub(super) const ASTERISK: &str = "v=0
    o=- 1284 1284 IN IP4 198.51.100.7
    s=Asterisk
    c=IN IP4 198.51.100.7
    t=0 0
    m=audio 17650 RTP/AVP 9 18 3 8 101
    a=rtpmap:9 G722/8000
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:3 GSM/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv";
