//! Repeats one hot operation N times, for counting its instructions with callgrind, which is
//! repeatable where wall-clock benchmarks on a shared machine are not. `bench/instructions.sh`
//! runs it twice (N = 1,000 and 3,000) and prints the difference per operation, so that
//! start-up cancels out.
//!
//! ```sh
//! cargo build --release -p sipcheck-core --example instructions
//! target/release/examples/instructions parse 1000
//! ```

use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::tone::{
    AudioSource, DetectorConfig, Tone, ToneDetector, ToneGenerator, ToneQuery,
};
use sipcheck_core::sdp::{Direction, LocalMedia};
use sipcheck_core::sip::msg::Message;
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::ua::call::{CallEvent, Endpoint, EndpointConfig, OfferPlacement, OutgoingCall};
use sipcheck_core::ua::register::LocalEnd;

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bK000000009e3779b9;received=192.0.2.10\r\n\
From: <sip:user1@example.com>;tag=f00000001\r\n\
To: <sip:user1@example.com>;tag=37GkEhwl6\r\n\
Call-ID: 00000000000000000001eef@192.0.2.10\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:user1@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Date: Mon, 23 Nov 2026 10:00:00 GMT\r\n\
Server: Kamailio\r\n\
Content-Length: 0\r\n\r\n";

const FRAME: usize = 160;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(what), Some(n)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: instructions parse|generate-1000|generate-dtmf|detect-1|detect-2|uas-call|uac-call N"
        );
        std::process::exit(2);
    };
    let mut frame = [0i16; FRAME];
    let sink = match what.as_str() {
        // One 200 OK parsed.
        "parse" => {
            let bytes = Bytes::from_static(OK.as_bytes());
            (0..n)
                .map(|_| {
                    let m = Message::parse_datagram(black_box(bytes.clone())).expect("valid");
                    m.branch().map_or(0, str::len)
                })
                .sum::<usize>()
        }
        // One 20 ms frame of a tone generated.
        "generate-1000" | "generate-dtmf" => {
            let tone = if what == "generate-1000" {
                Tone::single(1000.0, -10.0)
            } else {
                Tone::dual(697.0, 1209.0, -10.0)
            };
            let mut generator = ToneGenerator::new(&tone.expect("valid tone"));
            (0..n)
                .map(|_| {
                    generator.fill(black_box(&mut frame));
                    usize::from(frame[7].unsigned_abs())
                })
                .sum()
        }
        // One 20 ms frame of a 440 Hz tone through a detector watching one or two tones.
        "detect-1" | "detect-2" => {
            let mut generator =
                ToneGenerator::new(&Tone::single(440.0, -20.0).expect("valid tone"));
            let mut detector = ToneDetector::new(DetectorConfig::default()).expect("valid");
            detector
                .watch(ToneQuery::single(440.0).expect("valid"))
                .expect("valid");
            if what == "detect-2" {
                detector
                    .watch(ToneQuery::single(1000.0).expect("valid"))
                    .expect("valid");
            }
            generator.fill(&mut frame);
            (0..n)
                .map(|_| {
                    detector.push(black_box(&frame));
                    usize::try_from(detector.blocks()).unwrap_or(0)
                })
                .sum()
        }
        // One call answered as `sipcheck answer --no-rtp` does.
        "uas-call" => uas_calls(n),
        "uac-call" => uac_calls(n),
        other => {
            eprintln!("unknown operation {other}");
            std::process::exit(2);
        }
    };
    println!("{sink}");
}

/// `n` calls of a SIPp `uac` (INVITE with SDP, ACK, BYE) to an [`Endpoint`] set up and driven
/// as `sipcheck answer --no-rtp` drives it: no 100 Trying, every call accepted at once with
/// an `a=inactive` answer, the caller's BYE answered, and the transaction timers run out so
/// that every call leaves nothing behind. Each datagram is copied into its own buffer and
/// parsed, as the UDP transport does. Returns the bytes sent, as a sink.
fn uas_calls(n: usize) -> usize {
    let Calls {
        mut endpoint,
        media,
        peer,
        start,
        mut buf,
        ..
    } = Calls::new("127.0.0.1:5060", "127.0.0.1:5061", |config| {
        config.trying = false;
    });
    let mut sent = 0;
    let mut to_tag = String::new();
    for i in 0..n {
        let now = call_start(start, i);
        let call_id = format!("{i}-4242@127.0.0.1");
        let from = format!("sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag00{i}");
        let to = "service <sip:service@127.0.0.1:5060>";

        let _ = write!(
            buf,
            "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{i}-0\r\n\
From: {from}\r\n\
To: {to}\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SIPP_SDP}",
            SIPP_SDP.len()
        );
        endpoint.handle_message(now, datagram(&mut buf), false, peer);
        sent += drain(&mut endpoint, &mut to_tag);
        // Accepted once the event is gone, as `answer` does (from its timer).
        let mut incoming = None;
        while let Some(event) = endpoint.poll_event() {
            if let CallEvent::Incoming { call, .. } = event {
                incoming = Some(call);
            }
        }
        let call = incoming.expect("an incoming call");
        endpoint.accept(now, call, media.clone()).expect("accepted");
        sent += drain(&mut endpoint, &mut to_tag);

        let _ = write!(
            buf,
            "ACK sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{i}-5\r\n\
From: {from}\r\n\
To: {to};tag={to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 ACK\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Length: 0\r\n\r\n"
        );
        endpoint.handle_message(now, datagram(&mut buf), false, peer);
        let _ = write!(
            buf,
            "BYE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{i}-7\r\n\
From: {from}\r\n\
To: {to};tag={to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: 2 BYE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Length: 0\r\n\r\n"
        );
        endpoint.handle_message(now, datagram(&mut buf), false, peer);
        sent += drain(&mut endpoint, &mut to_tag);
        sent += end_call(&mut endpoint, i, now);
    }
    sent
}

/// `n` 0-length calls placed by an [`Endpoint`] as `sipcheck run` places them against a SIPp
/// `uas`: the INVITE with an SDP offer, a 180 and a 200 with SIPp's SDP answer received, the
/// ACK sent, the BYE sent at once and its 200 received, and the transaction timers run out so
/// that every call leaves nothing behind. The responses are written here from the request's
/// lines (Via, From, Call-ID, CSeq), each into its own buffer, and parsed, as the UDP
/// transport does. Returns the bytes sent, as a sink.
fn uac_calls(n: usize) -> usize {
    let Calls {
        mut endpoint,
        end,
        media,
        peer,
        start,
        mut buf,
    } = Calls::new("127.0.0.1:5061", "127.0.0.1:5060", |_| {});
    let mut sent = 0;
    for i in 0..n {
        let now = call_start(start, i);
        let call = endpoint
            .invite(
                now,
                OutgoingCall {
                    request_uri: "sip:service@127.0.0.1:5060".into(),
                    from_uri: "sip:200000@127.0.0.1".into(),
                    to_uri: "sip:service@127.0.0.1:5060".into(),
                    destination: peer,
                    credentials: None,
                    local_media: media.clone(),
                    local: end.clone(),
                    offer: OfferPlacement::InInvite,
                    extra_headers: Vec::new(),
                    max_redirects: 0,
                },
            )
            .expect("the INVITE");
        let invite = endpoint.poll_transmit().expect("the INVITE sent");
        sent += invite.bytes.len();
        let to_tag = format!("{i}SIPpTag01");
        for (status, body) in [("180 Ringing", ""), ("200 OK", SIPP_SDP)] {
            respond(&mut buf, &invite.bytes, status, &to_tag, body);
            endpoint.handle_message(now, datagram(&mut buf), false, peer);
        }
        sent += drain_count(&mut endpoint); // the ACK
        let mut answered = false;
        while let Some(event) = endpoint.poll_event() {
            answered |= matches!(event, CallEvent::Answered { .. });
        }
        assert!(answered, "call {i} not answered");
        endpoint.hangup(now, call).expect("the BYE");
        let bye = endpoint.poll_transmit().expect("the BYE sent");
        sent += bye.bytes.len();
        respond(&mut buf, &bye.bytes, "200 OK", &to_tag, "");
        endpoint.handle_message(now, datagram(&mut buf), false, peer);
        sent += end_call(&mut endpoint, i, now);
    }
    sent
}

/// What both call loops start from: an [`Endpoint`] of a UDP user agent at `local`
/// (`configure` adjusting its configuration), the peer's address, `a=inactive` media on port
/// 9, the origin of the virtual clock and a buffer for the datagrams written.
struct Calls {
    endpoint: Endpoint<SocketAddr>,
    end: LocalEnd,
    media: LocalMedia,
    peer: SocketAddr,
    start: Instant,
    buf: Vec<u8>,
}

impl Calls {
    fn new(local: &str, peer: &str, configure: impl FnOnce(&mut EndpointConfig)) -> Self {
        let local: SocketAddr = local.parse().expect("address");
        let end = LocalEnd {
            transport: Transport::Udp,
            addr: local,
            routes: Vec::new(),
        };
        let mut config = EndpointConfig::new(end.clone());
        configure(&mut config);
        let mut media = LocalMedia::new(local.ip(), 9, 7 >> 1);
        media.direction = Direction::Inactive;
        Calls {
            endpoint: Endpoint::new(config, IdGen::new(7)),
            end,
            media,
            peer: peer.parse().expect("address"),
            // The origin of the virtual clock; every later instant is computed from it.
            #[allow(clippy::disallowed_methods)]
            start: Instant::now(),
            buf: Vec::with_capacity(2048),
        }
    }
}

/// When call `i` starts: far enough after the previous one that its timers (Timer J: 64·T1)
/// have run out.
fn call_start(start: Instant, i: usize) -> Instant {
    start + Duration::from_secs(40 * i as u64)
}

/// The datagram written in `buf`, copied into its own buffer and parsed as the UDP transport
/// does; `buf` is left empty.
fn datagram(buf: &mut Vec<u8>) -> Message {
    let message = Message::parse_datagram(Bytes::copy_from_slice(buf)).expect("valid");
    buf.clear();
    message
}

/// Call `i` has ended (its events polled); the transaction timers then run out, 33 s after
/// `now`, leaving nothing behind. The bytes sent meanwhile.
fn end_call(endpoint: &mut Endpoint<SocketAddr>, i: usize, now: Instant) -> usize {
    let mut ended = false;
    while let Some(event) = endpoint.poll_event() {
        ended |= matches!(event, CallEvent::Ended { .. });
    }
    assert!(ended, "call {i} did not end");
    endpoint.handle_timeout(now + Duration::from_secs(33));
    let sent = drain_count(endpoint);
    assert!(endpoint.is_empty() && endpoint.transactions().is_empty());
    sent
}

/// A response as SIPp's `uas` writes it: the request's Via, From, Call-ID and CSeq, its To
/// with `to_tag`, a Contact, and `body` (an SDP or nothing).
fn respond(buf: &mut Vec<u8>, request: &[u8], status: &str, to_tag: &str, body: &str) {
    let text = std::str::from_utf8(request).expect("text");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .expect("a header of the request")
    };
    let _ = write!(
        buf,
        "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag={to_tag}\r\n{}\r\n{}\r\n\
Contact: <sip:127.0.0.1:5060;transport=UDP>\r\n{}Content-Length: {}\r\n\r\n{body}",
        line("Via:"),
        line("From:"),
        line("To:"),
        line("Call-ID:"),
        line("CSeq:"),
        if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        },
        body.len()
    );
}

/// Send everything queued (here: count its bytes).
fn drain_count(endpoint: &mut Endpoint<SocketAddr>) -> usize {
    let mut sent = 0;
    while let Some(t) = endpoint.poll_transmit() {
        sent += black_box(&t.bytes).len();
    }
    sent
}

/// Send everything queued (here: count its bytes), noting the To tag of a 200 to the INVITE.
fn drain(endpoint: &mut Endpoint<SocketAddr>, to_tag: &mut String) -> usize {
    let mut sent = 0;
    while let Some(t) = endpoint.poll_transmit() {
        sent += black_box(&t.bytes).len();
        let text = std::str::from_utf8(&t.bytes).unwrap_or_default();
        if text.contains("CSeq: 1 INVITE") {
            let to = text
                .lines()
                .find(|l| l.starts_with("To:"))
                .unwrap_or_default();
            if let Some((_, tag)) = to.split_once(";tag=") {
                to_tag.clear();
                to_tag.push_str(tag);
            }
        }
    }
    sent
}

/// The SDP of SIPp's built-in `uac` scenario.
const SIPP_SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";
