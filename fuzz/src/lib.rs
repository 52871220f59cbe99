//! The bodies of the fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line `fuzz_target!` calling the function of the same
//! name here. The functions depend only on `sipcheck-core`, `bytes` and `std`, so the core's
//! integration test `crates/sipcheck-core/tests/fuzz_regressions.rs` includes this file with
//! `#[path]` and replays the seed corpus (`fuzz/corpus/<target>/`) and every crash input kept in
//! `fuzz/regressions/<target>/` through exactly the same code under `cargo test`.
//!
//! A function returns quietly for input the API rejects with an error; it panics (which is
//! what libFuzzer reports as a crash) only when the API panics or breaks an invariant asserted
//! here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::dtmf::{DtmfReceiver, EventUpdate, TelephoneEvent, MAX_EVENTS};
use sipcheck_core::media::g711::Codec;
use sipcheck_core::rtp::packet::{write_packet, RtpHeader, RtpPacket, FIXED_HEADER_LEN};
use sipcheck_core::rtp::receiver::{Playout, ReceiverConfig, RtpReceiver};
use sipcheck_core::scenario::plan::LoadPlan;
use sipcheck_core::scenario::{load, load_with_overrides, parse_override, report};
use sipcheck_core::sdp::{
    answer, answer_update, create_offer, negotiated_from_answer, Direction, LocalMedia,
    SessionDescription,
};
use sipcheck_core::sip::auth::{Challenge, ChallengeKind, Credentials, DigestClient};
use sipcheck_core::sip::build::{cancel_for, reason_phrase, write_response};
use sipcheck_core::sip::msg::{Message, Method, Name, SentRequest, StreamFramer};

/// The body of a fuzz target.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory under `corpus/` and `regressions/`) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("sip_message", sip_message),
    ("sip_stream", sip_stream),
    ("digest_challenge", digest_challenge),
    ("sdp", sdp),
    ("rtp_packet", rtp_packet),
    ("telephone_event", telephone_event),
    ("scenario", scenario),
    ("wav", wav),
];

// ---------------------------------------------------------------------------------------------
// SIP messages
// ---------------------------------------------------------------------------------------------

/// `SentRequest::scan`, the transaction layer's one-pass reading of a request it sends: it
/// accepts only what the parser reads the same way, so when it accepts, the parser must
/// have accepted the same request, with the same method, top Via branch, CSeq number and
/// framed length.
fn sent_request_scan(data: &[u8], parsed: Option<&Message>) {
    let Some(sent) = SentRequest::scan(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let msg = parsed.unwrap_or_else(|| {
        panic!(
            "scan accepted a request the parser refuses: {:?}",
            String::from_utf8_lossy(data)
        )
    });
    assert!(msg.is_request(), "scan accepted a response");
    assert_eq!(msg.method(), Some(sent.method()), "method");
    assert_eq!(msg.branch(), sent.branch(), "top Via branch");
    assert_eq!(msg.cseq(), sent.cseq(), "CSeq number");
    assert_eq!(msg.raw().len(), sent.raw().len(), "framed length");
}

/// `Message::parse_datagram`, every accessor, and for requests `write_response` and
/// `cancel_for`, whose output must parse back with the same Call-ID and CSeq.
pub fn sip_message(data: &[u8]) {
    let parsed = Message::parse_datagram(Bytes::copy_from_slice(data));
    sent_request_scan(data, parsed.as_ref().ok());
    let Ok(msg) = parsed else {
        return;
    };
    exercise_message(&msg);
    assert!(msg.raw().len() <= data.len(), "raw longer than the input");
    assert!(msg.body().len() <= msg.raw().len(), "body longer than raw");
    if !msg.is_request() {
        assert!(msg.status().is_some_and(|c| (100..=699).contains(&c)));
        return;
    }

    // 200 with a To tag and the request's body, and a status code chosen by the input.
    let chosen = 100 + (data.len() + usize::from(data[data.len() - 1])) % 600;
    let chosen = u16::try_from(chosen).unwrap_or(500);
    for code in [200, chosen] {
        let to_tag = (code % 2 == 0).then_some("fz8a3c");
        let body = (200..300)
            .contains(&code)
            .then(|| ("application/sdp", msg.body().as_ref()));
        let mut out = Vec::new();
        write_response(
            &msg,
            code,
            reason_phrase(code),
            to_tag,
            &[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")],
            body,
            &mut out,
        );
        let response = Message::parse_datagram(Bytes::from(out.clone())).unwrap_or_else(|e| {
            panic!(
                "write_response({code}) output does not parse: {e}\n--- output ---\n{}",
                String::from_utf8_lossy(&out)
            )
        });
        assert_eq!(response.status(), Some(code));
        assert_eq!(response.call_id(), msg.call_id(), "Call-ID not copied");
        assert_eq!(response.cseq(), msg.cseq(), "CSeq number not copied");
        assert_eq!(
            response.cseq_method(),
            msg.cseq_method(),
            "CSeq method not copied"
        );
        assert_eq!(
            response.header_values(&Name::VIA).count(),
            msg.header_values(&Name::VIA).count(),
            "Via values not copied"
        );
        assert_eq!(response.branch(), msg.branch(), "top Via branch not copied");
        assert_eq!(response.body().len(), body.map_or(0, |(_, b)| b.len()));
    }

    let cancel = cancel_for(&msg);
    let parsed = Message::parse_datagram(Bytes::from(cancel.clone())).unwrap_or_else(|e| {
        panic!(
            "cancel_for output does not parse: {e}\n--- output ---\n{}",
            String::from_utf8_lossy(&cancel)
        )
    });
    assert_eq!(parsed.method(), Some(&Method::CANCEL));
    assert_eq!(parsed.call_id(), msg.call_id(), "Call-ID not copied");
    assert_eq!(parsed.cseq(), msg.cseq(), "CSeq number not copied");
    assert_eq!(parsed.branch(), msg.branch(), "top Via branch not copied");
}

/// Calls every accessor of a parsed message.
fn exercise_message(msg: &Message) {
    let _ = format!("{msg:?}");
    let _ = (msg.method(), msg.request_uri(), msg.status(), msg.reason());
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.cseq_method(),
        msg.body().len(),
    );
    for name in [
        Name::VIA,
        Name::FROM,
        Name::TO,
        Name::CALL_ID,
        Name::CSEQ,
        Name::CONTACT,
        Name::ROUTE,
        Name::RECORD_ROUTE,
        Name::CONTENT_LENGTH,
        Name::CONTENT_TYPE,
        Name::WWW_AUTHENTICATE,
        Name::EXPIRES,
    ] {
        let _ = msg.header(&name);
        for value in msg.header_values(&name) {
            assert!(!value.is_empty(), "header_values yielded an empty value");
        }
    }
    let via = msg.top_via();
    let branch = via
        .as_ref()
        .and_then(|v| v.params.get_val("branch"))
        .map(|b| b.as_str().to_owned());
    assert_eq!(
        msg.branch(),
        branch.as_deref(),
        "branch() != top_via() branch"
    );
    let _ = format!("{via:?}");
    let _ = (msg.from_tag(), msg.to_tag(), msg.from_to(&Name::FROM));
    let contacts = msg.contact_uris();
    assert_eq!(contacts.len(), msg.header_values(&Name::CONTACT).count());
}

/// `StreamFramer` fed the stream in chunks whose sizes the input chooses.
///
/// Input: `n` (one byte, taken mod 8), then `n` chunk sizes (each byte `s` is a chunk of
/// `s + 1` bytes, cycled), then the stream. Invariants: no panic; `buffered()` never exceeds
/// the bytes pushed so far; and the messages and the error (if any) do not depend on how the
/// stream was cut, i.e. equal those of one push of the whole stream.
pub fn sip_stream(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < n {
        return;
    }
    let (sizes, stream) = rest.split_at(n);
    let chunked = frame_stream(stream, sizes);
    let whole = frame_stream(stream, &[]);
    if chunked != whole {
        panic!(
            "framing depends on how the stream was split:\n  in chunks:   {}\n  in one push: {}",
            outline(&chunked),
            outline(&whole)
        );
    }
}

/// A short description of a framing outcome, for messages.
fn outline(outcome: &[Result<Bytes, String>]) -> String {
    let items: Vec<String> = outcome
        .iter()
        .map(|item| match item {
            Ok(raw) => format!("message of {} bytes", raw.len()),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// What framing `stream` gives: each message's raw bytes, up to and including the first
/// error. An empty `sizes` pushes the whole stream at once.
fn frame_stream(stream: &[u8], sizes: &[u8]) -> Vec<Result<Bytes, String>> {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    let mut sizes = sizes.iter().map(|&s| usize::from(s) + 1).cycle();
    let mut pushed = 0;
    let mut taken = 0;
    loop {
        let take = sizes.next().unwrap_or(stream.len());
        let end = pushed + take.min(stream.len() - pushed);
        framer.push(&stream[pushed..end]);
        pushed = end;
        assert!(framer.buffered() <= pushed, "buffered more than pushed");
        loop {
            match framer.next_message() {
                None => break,
                Some(Ok(msg)) => {
                    taken += msg.raw().len();
                    assert!(
                        taken + framer.buffered() <= pushed,
                        "messages plus buffer exceed the bytes pushed"
                    );
                    assert!(framer.buffered() <= stream.len());
                    out.push(Ok(msg.raw().clone()));
                }
                Some(Err(e)) => {
                    assert!(
                        e.offset <= pushed,
                        "error offset {} past the data",
                        e.offset
                    );
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
        if pushed == stream.len() {
            return out;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Digest authentication
// ---------------------------------------------------------------------------------------------

/// `Challenge::parse` on the input (lossy UTF-8), the answer to it, and a `DigestClient`
/// fed each line as a challenge.
///
/// Lines (the first 16): `!` alone calls `on_success`, a leading `>` makes the rest a
/// `Proxy-Authenticate` value, anything else is a `WWW-Authenticate` value.
pub fn digest_challenge(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let credentials = Credentials::new("alice", "zanzibar");
    if let Ok(challenge) = Challenge::parse(&text) {
        check_answer(&challenge, &credentials);
    }

    let mut client = DigestClient::new(credentials.clone());
    let mut ids = IdGen::new(0x5eed);
    // At most 16 lines: each authorize() hashes once per remembered realm.
    for line in text.split('\n').take(16) {
        if line == "!" {
            client.on_success();
            continue;
        }
        let (kind, value) = match line.strip_prefix('>') {
            Some(value) => (ChallengeKind::Proxy, value),
            None => (ChallengeKind::Www, line),
        };
        if client.on_challenge(kind, value).is_err() {
            continue;
        }
        for (name, value) in client.authorize("REGISTER", "sip:example.com", b"", &mut ids) {
            assert!(
                matches!(name, "Authorization" | "Proxy-Authorization"),
                "{name}"
            );
            Challenge::parse(&value)
                .unwrap_or_else(|e| panic!("authorize() value does not parse back: {e}: {value}"));
        }
    }

    let all = text.split('\n').enumerate().map(|(i, line)| {
        let kind = if i % 2 == 0 {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        };
        (kind, line)
    });
    let mut client = DigestClient::new(credentials);
    if client.on_challenges(all).is_ok() {
        let headers = client.authorize("INVITE", "sip:bob@example.com", b"v=0\r\n", &mut ids);
        assert!(!headers.is_empty(), "a usable challenge gave no header");
    }
}

/// The answer to `challenge` parses with the same grammar and carries its realm, nonce,
/// opaque, algorithm, chosen qop and userhash unchanged.
fn check_answer(challenge: &Challenge, credentials: &Credentials) {
    let body = b"v=0\r\n";
    let answer = challenge.answer(
        credentials,
        "REGISTER",
        "sip:example.com",
        body,
        "0a4f113b",
        1,
    );
    let back = Challenge::parse(&answer)
        .unwrap_or_else(|e| panic!("answer does not parse back: {e}: {answer}"));
    assert_eq!(back.realm, challenge.realm, "realm not round-tripped");
    assert_eq!(back.nonce, challenge.nonce, "nonce not round-tripped");
    assert_eq!(back.opaque, challenge.opaque, "opaque not round-tripped");
    assert_eq!(back.algorithm, challenge.algorithm, "algorithm changed");
    assert_eq!(back.userhash, challenge.userhash, "userhash changed");
    assert_eq!(
        back.qop,
        challenge.selected_qop().into_iter().collect::<Vec<_>>(),
        "qop not the selected one"
    );
}

// ---------------------------------------------------------------------------------------------
// SDP
// ---------------------------------------------------------------------------------------------

/// `SessionDescription::parse`; the written form must parse back to itself; the input is
/// answered as an offer (the answer must parse back and be read back by
/// `negotiated_from_answer` to the same result) and read as the answer to our offer.
pub fn sdp(data: &[u8]) {
    let Ok(offer) = SessionDescription::parse(data) else {
        return;
    };
    let written = offer.to_bytes();
    let reparsed = SessionDescription::parse(&written).unwrap_or_else(|e| {
        panic!(
            "written SDP does not parse: {e}\n--- written ---\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(
        String::from_utf8_lossy(&reparsed.to_bytes()),
        String::from_utf8_lossy(&written),
        "writing the re-parsed SDP changes it"
    );
    for m in &offer.media {
        let _ = (offer.direction_of(m), offer.connection_of(m), m.codecs());
        let _ = (m.telephone_event_payload_type(), m.payload_types().count());
        for pt in m.payload_types() {
            let _ = (m.rtpmap(pt), m.fmtp(pt));
        }
    }

    for local in local_medias() {
        if let Ok((ours, negotiated)) = answer(&offer, &local) {
            check_answer_sdp(&offer, &local, &ours, &negotiated);
        }
        // The input as the peer's answer to our offer.
        let our_offer = create_offer(&local);
        if let Ok(negotiated) = negotiated_from_answer(&our_offer, &offer) {
            assert!(negotiated.media_index < offer.media.len());
            assert!(local.codecs.contains(&negotiated.codec));
        }
    }
}

/// The local media setups each offer is answered with.
fn local_medias() -> Vec<LocalMedia> {
    let v4 = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 40000, 42);
    let v6 = LocalMedia {
        codecs: vec![Codec::Pcma],
        telephone_event: false,
        direction: Direction::SendOnly,
        version: 7,
        ..LocalMedia::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40002, u64::MAX)
    };
    vec![v4, v6]
}

fn check_answer_sdp(
    offer: &SessionDescription,
    local: &LocalMedia,
    ours: &SessionDescription,
    negotiated: &sipcheck_core::sdp::Negotiated,
) {
    assert_eq!(
        ours.media.len(),
        offer.media.len(),
        "answer has other m= count"
    );
    assert!(negotiated.media_index < offer.media.len());
    assert!(local.codecs.contains(&negotiated.codec));
    let bytes = ours.to_bytes();
    let reparsed = SessionDescription::parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "our answer does not parse: {e}\n--- answer ---\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(&reparsed, ours, "our answer does not parse back to itself");

    // The offerer reading our answer must agree with what we negotiated.
    let theirs = negotiated_from_answer(offer, &reparsed)
        .unwrap_or_else(|e| panic!("the offerer cannot read our answer: {e}"));
    assert_eq!(theirs.media_index, negotiated.media_index);
    assert_eq!(theirs.codec, negotiated.codec);
    assert_eq!(theirs.payload_type, negotiated.payload_type);
    assert_eq!(theirs.telephone_event_pt, negotiated.telephone_event_pt);
    assert_eq!(theirs.direction, negotiated.direction.reversed());
    assert_eq!(theirs.remote_rtp, SocketAddr::new(local.addr, local.port));

    // Answering the same offer again in the same session changes nothing, not the version.
    let (again, _) = answer_update(offer, local, ours).expect("the same offer answered twice");
    assert_eq!(&again, ours, "an unchanged re-answer differs");
}

// ---------------------------------------------------------------------------------------------
// RTP
// ---------------------------------------------------------------------------------------------

/// The base of virtual time: any instant will do, only differences are used.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `RtpPacket::parse` on the whole input, then a stream of packets into an `RtpReceiver`.
///
/// Stream input: `clock`, `depth`, then records `ctl dt len bytes[len]`: the packet arrives
/// `dt` × 0.5 ms after the previous one; `ctl` bit 6 set makes `bytes` not a datagram but the
/// fields of a synthesised one (so the fuzzer can steer sequence numbers easily); `ctl & 3`
/// playout ticks follow; bit 7 takes the interval loss fraction.
pub fn rtp_packet(data: &[u8]) {
    if let Ok(packet) = RtpPacket::parse(data) {
        check_packet(data, &packet);
    }

    let Some((&[clock, depth], mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let clock_rate = match clock % 4 {
        0 => 8000,
        1 => 16000,
        2 => 48000,
        _ => u32::from(clock),
    };
    let config = ReceiverConfig {
        clock_rate,
        jitter_buffer_frames: usize::from(depth % 9),
    };
    let base = base_instant();
    let Ok(mut rx) = RtpReceiver::new(base, config) else {
        assert!(clock_rate == 0 || config.jitter_buffer_frames == 0);
        return;
    };
    let mut now = base;
    let mut prev = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 0xfff0,
        timestamp: 0xffff_f000,
        ssrc: 0x1234_5678,
    };
    let mut buf = [0u8; 64];
    let mut packets = 0u64;
    let mut pops = 0u64;
    while let Some((&[ctl, dt, len], tail)) = rest.split_first_chunk::<3>() {
        now += Duration::from_micros(u64::from(dt) * 500);
        let len = usize::from(len).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let datagram: &[u8] = if ctl & 0x40 != 0 {
            // [seq delta (i8), ts delta (i8 × 80), ssrc switch, marker+pt, payload...]
            let field = |i: usize| bytes.get(i).copied().unwrap_or(0);
            let header = RtpHeader {
                marker: field(3) & 0x80 != 0,
                payload_type: field(3) & 0x7f,
                sequence: prev.sequence.wrapping_add_signed(i16::from(field(0) as i8)),
                timestamp: prev
                    .timestamp
                    .wrapping_add_signed(i32::from(field(1) as i8) * 80),
                ssrc: if field(2) & 0x0f == 0x0f {
                    prev.ssrc ^ u32::from(field(2))
                } else {
                    prev.ssrc
                },
            };
            prev = header;
            let payload = bytes.get(4..).unwrap_or(&[]);
            let payload = &payload[..payload.len().min(buf.len() - FIXED_HEADER_LEN)];
            let n = write_packet(&header, payload, &mut buf).expect("the buffer fits");
            &buf[..n]
        } else {
            bytes
        };
        if let Ok(packet) = RtpPacket::parse(datagram) {
            check_packet(datagram, &packet);
            let _ = rx.on_packet(now, &packet);
            packets += 1;
            assert_eq!(rx.last_arrival(), Some(now));
        }
        for _ in 0..ctl & 3 {
            pops += 1;
            if let Playout::Frame(frame) = rx.pop_frame() {
                assert!(frame.payload_type <= 0x7f);
            }
        }
        if ctl & 0x80 != 0 {
            let _ = rx.take_interval_fraction_lost();
        }
        let _ = rx.is_timed_out(now, Duration::from_millis(u64::from(dt)));
        let stats = rx.stats();
        assert!(stats.received <= packets);
        assert!(stats.expected >= stats.received, "negative loss: {stats:?}");
        assert!(stats.duplicates + stats.discarded <= packets);
        assert!(stats.jitter_ts.is_finite() && stats.jitter_ts >= 0.0);
        assert!((0.0..=1.0).contains(&stats.loss_fraction()));
        let jb = rx.jitter_buffer_stats();
        assert!(jb.played + jb.missing <= pops);
    }
}

/// Every part of a parsed packet lies within the datagram, and the parts add up.
fn check_packet(datagram: &[u8], packet: &RtpPacket<'_>) {
    let extension = packet.extension.map_or(0, |e| 4 + e.data.len());
    assert_eq!(packet.csrcs().count(), packet.csrc_count());
    assert!(packet.csrc_count() <= 15);
    assert_eq!(
        FIXED_HEADER_LEN
            + 4 * packet.csrc_count()
            + extension
            + packet.payload.len()
            + usize::from(packet.padding),
        datagram.len(),
        "header, payload and padding do not add up to the datagram"
    );
    assert!(packet.header.payload_type <= 0x7f);
    if let Some(e) = packet.extension {
        assert_eq!(e.data.len() % 4, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 4733 telephone events
// ---------------------------------------------------------------------------------------------

/// `TelephoneEvent::parse` on the input, then a sequence of `DtmfReceiver::push` calls.
///
/// Records: `op` then its operands. `op % 4`: 0 = push `ts` and a 4-byte payload; 1 = push `ts`
/// and a payload of `(op >> 2) % 8` bytes; 2 = push a burst of `(op >> 2) × 16` new events;
/// 3 = read the digits.
pub fn telephone_event(data: &[u8]) {
    if let Ok(event) = TelephoneEvent::parse(data) {
        assert_eq!(data.len(), TelephoneEvent::LEN);
        let bytes = event.to_bytes();
        // The writer clears the reserved R bit.
        assert_eq!(bytes, [data[0], data[1] & !0x40, data[2], data[3]]);
        assert_eq!(TelephoneEvent::parse(&bytes), Ok(event));
        let _ = event.digit();
    } else {
        assert_ne!(data.len(), TelephoneEvent::LEN);
    }

    let mut rx = DtmfReceiver::new();
    let mut rest = data;
    let ts_of = |b: u8| u32::from(b).wrapping_mul(160).wrapping_add(u32::MAX - 4000);
    // Bounds on the work of one input: bursts push at most MAX_EVENTS + 64 events in all,
    // and the digits are read at most 16 times.
    let mut burst_budget = MAX_EVENTS + 64;
    let mut reads = 16;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            0 | 1 => {
                let Some((&ts, tail)) = rest.split_first() else {
                    return;
                };
                let len = if op % 4 == 0 {
                    4
                } else {
                    usize::from(op >> 2) % 8
                };
                let len = len.min(tail.len());
                let (payload, tail) = tail.split_at(len);
                rest = tail;
                push_event(&mut rx, ts_of(ts), payload);
            }
            2 => {
                let n = (usize::from(op >> 2) * 16).min(burst_budget);
                burst_budget -= n;
                let start = rx.events().len() as u32;
                for i in 0..n as u32 {
                    let payload = [(i % 17) as u8, 0x0a, 0x03, 0x20];
                    let timestamp = (start + i).wrapping_mul(1_000_003);
                    let update = rx.push(timestamp, &payload).expect("a 4-byte payload");
                    assert!(matches!(
                        update,
                        EventUpdate::Started | EventUpdate::Dropped
                    ));
                }
            }
            _ if reads > 0 => {
                reads -= 1;
                let digits = rx.digits();
                assert!(digits.chars().count() <= rx.events().len());
            }
            _ => {}
        }
        assert!(rx.events().len() <= MAX_EVENTS);
    }
}

/// One push, checking that an error leaves the receiver unchanged and that events only grow.
/// Only the last `RECENT` events are compared: a push never touches older ones.
fn push_event(rx: &mut DtmfReceiver, timestamp: u32, payload: &[u8]) {
    const RECENT: usize = 16;
    let len = rx.events().len();
    let before = rx.events()[len.saturating_sub(RECENT)..].to_vec();
    let (repeats, dropped) = (rx.repeats(), rx.dropped_events());
    match rx.push(timestamp, payload) {
        Err(_) => {
            assert_ne!(payload.len(), TelephoneEvent::LEN);
            assert_eq!(rx.events().len(), len, "a rejected push changed the events");
            assert_eq!(
                &rx.events()[len.saturating_sub(RECENT)..],
                &before[..],
                "a rejected push changed the events"
            );
        }
        Ok(update) => {
            let after = &rx.events()[len.saturating_sub(RECENT)..];
            match update {
                EventUpdate::Started => assert_eq!(rx.events().len(), len + 1),
                EventUpdate::Dropped => {
                    assert_eq!(rx.events().len(), MAX_EVENTS);
                    assert_eq!(rx.dropped_events(), dropped + 1);
                }
                EventUpdate::Repeated => assert_eq!(rx.repeats(), repeats + 1),
                EventUpdate::Continued | EventUpdate::Ended => {
                    assert_eq!(rx.events().len(), len)
                }
            }
            for (old, new) in before.iter().zip(after) {
                assert_eq!((old.event, old.timestamp), (new.event, new.timestamp));
                assert!(new.duration >= old.duration, "an event's duration shrank");
                assert!(new.ended || !old.ended, "an ended event un-ended");
                assert!(new.packets >= old.packets);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// `scenario::load` (or `load_with_overrides`) on the input as YAML, with a fixed environment
/// and file reader; errors are rendered with `report`; a valid scenario's load plan is
/// compiled and stepped through.
///
/// Input: the scenario text, optionally followed by a line `#--set` and `key=value` override
/// lines.
pub fn scenario(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (yaml, overrides) = match text.split_once("\n#--set\n") {
        Some((yaml, sets)) => {
            let overrides: Vec<(String, String)> = sets
                .lines()
                .filter_map(|line| parse_override(line).ok())
                .collect();
            (yaml, Some(overrides))
        }
        None => (text.as_ref(), None),
    };
    let env = |name: &str| match name {
        "SIP_SERVER" => Some("127.0.0.1:5070".to_owned()),
        "SIP_PASSWORD_PREFIX" => Some("pw".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let files = |path: &str| {
        if path.ends_with(".csv") {
            Ok(
                "user,password\n1000,pw1000\n1001,pw1001\nalice,a\nbob,b\ncarol,c\ndave,d\n"
                    .to_owned(),
            )
        } else {
            Err("no such file in the fuzzer".to_owned())
        }
    };
    let loaded = match &overrides {
        Some(overrides) => load_with_overrides("fuzz.yaml", yaml, overrides, &env, &files),
        None => load("fuzz.yaml", yaml, &env, &files),
    };
    let scenario = match loaded {
        Ok(scenario) => scenario,
        Err(errors) => {
            assert!(!errors.is_empty(), "rejected without an error");
            let _ = report(&errors);
            return;
        }
    };
    // Debug output must not panic; printing a hundred thousand accounts only costs time.
    if scenario.accounts.len() <= 1_000 {
        let _ = format!("{scenario:?}");
    }
    for role in &scenario.roles {
        assert!(scenario.role(&role.name).is_some());
    }
    match LoadPlan::compile(&scenario.load) {
        LoadPlan::Open(mut plan) => {
            assert_eq!(
                plan.start_of(0),
                Duration::ZERO,
                "the first call is not due at 0"
            );
            let total = plan.total_calls();
            let mut previous = Duration::ZERO;
            let mut started = 0u64;
            while let Some(t) = plan.next_start() {
                assert!(t >= previous, "call starts go back in time");
                previous = t;
                started += 1;
                if started == 256 {
                    break;
                }
            }
            assert_eq!(
                started,
                total.min(256),
                "total_calls disagrees with the schedule"
            );
            for n in [1u64, 1000, 1 << 20, 1 << 40, u64::MAX - 1] {
                assert!(
                    plan.start_of(n) <= plan.start_of(n + 1),
                    "start_of not monotonic"
                );
            }
        }
        LoadPlan::Closed(plan) => {
            let mut previous: Option<(Duration, u32)> = None;
            for stage in plan.stages().take(64) {
                if let Some((at, concurrent)) = previous {
                    assert!(
                        stage.at > at && stage.concurrent > concurrent,
                        "stages not increasing"
                    );
                }
                assert!(stage.concurrent <= plan.concurrent);
                previous = Some((stage.at, stage.concurrent));
            }
            let _ = plan.target_at(Duration::from_millis(1500));
            let _ = plan.may_start(1, Duration::from_secs(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WAV files
// ---------------------------------------------------------------------------------------------

/// `wav::inspect` and `wav::decode` on the whole input: a file decoded was inspectable too, and
/// its samples are no more than its header's length at 8 kHz (memory follows the header,
/// which cannot announce more than the input holds).
pub fn wav(data: &[u8]) {
    use sipcheck_core::media::wav;
    let info = wav::inspect(data);
    if let Ok(samples) = wav::decode(data) {
        let info = info.expect("a decoded file's header is inspectable");
        assert!(info.data_bytes <= data.len() as u64);
        let most = u64::from(info.frames) * u64::from(wav::RATE) / u64::from(info.sample_rate) + 1;
        assert!(
            samples.len() as u64 <= most,
            "{} samples from {info:?}",
            samples.len()
        );
    }
}
