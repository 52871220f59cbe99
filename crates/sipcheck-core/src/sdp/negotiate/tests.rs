use super::*;
use crate::sdp::tests::*;
use std::net::{Ipv4Addr, Ipv6Addr};

#[test]
fn kamailio_rtpengine_offer_keeps_unknown_attributes_and_is_answered() {
    let offer = parse(KAMAILIO_RTPENGINE);
    assert_eq!(offer.origin.username, "-");
    assert_eq!(offer.origin.session_id, "1700000000");
    assert_eq!(offer.origin.version, 1_700_000_001);
    let m = &offer.media[0];
    assert_eq!(m.port, 30000);
    assert_eq!(m.formats, ["0", "8", "101"]);
    assert_eq!(
        m.rtcp,
        Some(Rtcp {
            port: 30001,
            address: None
        })
    );
    assert_eq!(m.ptime_ms, Some(20));
    assert_eq!(m.direction, Some(Direction::SendRecv));
    let names: Vec<&str> = m.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["ssrc", "ice-ufrag", "ice-pwd", "candidate", "candidate"]
    );
    assert_eq!(m.telephone_event_payload_type(), Some(101));

    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.remote_rtp, sock("203.0.113.5:30000"));
    assert_eq!(neg.codec, Codec::Pcmu);
    assert_eq!(neg.payload_type, 0);
    assert_eq!(neg.telephone_event_pt, Some(101));
    assert_eq!(neg.direction, Direction::SendRecv);
    assert!(!neg.remote_hold);
    assert_eq!(
        sdp.to_string(),
        crlf(
            "v=0
            o=sipcheck 4242 0 IN IP4 192.0.2.10
            s=sipcheck
            c=IN IP4 192.0.2.10
            t=0 0
            m=audio 40000 RTP/AVP 0 101
            a=rtpmap:0 PCMU/8000
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-16
            a=ptime:20
            a=sendrecv"
        )
    );
}

#[test]
fn sipp_uac_offer_is_answered_without_telephone_event() {
    let offer = parse(SIPP_UAC);
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.remote_rtp, sock("127.0.0.1:6000"));
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.telephone_event_pt, None);
    assert_eq!(neg.ptime_ms, 20);
    assert_eq!(sdp.media[0].formats, ["0"]);
    assert!(sdp.media[0].fmtps.is_empty());
}

#[test]
fn baresip_offer_gets_its_telephone_event_range_back() {
    let offer = parse(BARESIP);
    assert_eq!(
        offer.attributes,
        [Attribute {
            name: "tool".into(),
            value: Some("baresip 1.0.0".into())
        }]
    );
    assert_eq!(offer.media[0].fmtp(101), Some("0-15"));
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.remote_rtp, sock("127.0.0.1:12345"));
    assert_eq!(neg.telephone_event_pt, Some(101));
    // RFC 4733 §7.1.1: answer only events both sides know.
    assert_eq!(sdp.media[0].fmtp(101), Some("0-15"));
}

#[test]
fn asterisk_offer_with_many_codecs_gets_pcma_the_only_common_one() {
    let offer = parse(ASTERISK);
    let m = &offer.media[0];
    assert_eq!(m.codecs(), [(8, Codec::Pcma)]);
    assert_eq!(m.maxptime_ms, Some(150));
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    assert_eq!(neg.telephone_event_pt, Some(101));
    assert_eq!(neg.remote_rtp, sock("198.51.100.7:17650"));
    assert_eq!(sdp.media[0].formats, ["8", "101"]);
    assert_eq!(sdp.media[0].rtpmaps[0].to_string(), "8 PCMA/8000");
}

#[test]
fn answer_keeps_the_offerers_codec_order() {
    let offer = parse(&SIPP_UAC.replace("RTP/AVP 0", "RTP/AVP 8 0"));
    // We prefer PCMU, the offer lists PCMA first: RFC 3264 §6.1 picks PCMA.
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.codec, Codec::Pcma);
    assert_eq!(sdp.media[0].formats, ["8"]);
}

#[test]
fn offer_lists_codecs_in_our_configured_order() {
    let mut ours = local();
    ours.codecs = vec![Codec::Pcma, Codec::Pcmu, Codec::Pcma];
    let offer = create_offer(&ours);
    assert_eq!(offer.media[0].formats, ["8", "0", "101"]);
    ours.telephone_event = false;
    assert_eq!(create_offer(&ours).media[0].formats, ["8", "0"]);
}

#[test]
fn dynamic_payload_type_for_pcmu_is_recognised() {
    let offer = parse(
        &SIPP_UAC
            .replace("RTP/AVP 0", "RTP/AVP 96")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 pcmu/8000/1"),
    );
    let (_, neg) = answer(&offer, &local()).unwrap();
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 96));
}

#[test]
fn session_level_connection_is_used_when_media_has_none() {
    let offer = parse(SIPP_UAC);
    assert!(offer.media[0].connection.is_none());
    assert_eq!(
        offer.connection_of(&offer.media[0]),
        Some(&Address::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    );
}

#[test]
fn media_level_connection_wins_over_session_level() {
    let offer = parse(
        "v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        c=IN IP4 10.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 8
        c=IN IP4 198.51.100.20
        a=sendrecv",
    );
    let (_, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.remote_rtp, sock("198.51.100.20:4000"));
}

#[test]
fn missing_or_host_name_connection_is_a_negotiation_error() {
    let no_c = parse("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0");
    assert_eq!(
        answer(&no_c, &local()).unwrap_err(),
        NegotiationError::MissingConnection { index: 0 }
    );
    let host = parse(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 media.example.com\nt=0 0\nm=audio 4000 RTP/AVP 0",
    );
    let err = answer(&host, &local()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "media section 0 has host name \"media.example.com\" as connection address, not an ip address"
    );
}

#[test]
fn ipv6_offer_and_ipv6_answer() {
    let offer = parse(
        "v=0
        o=- 20518 0 IN IP6 2001:db8::1
        s=-
        c=IN IP6 2001:db8::1
        t=0 0
        m=audio 5004 RTP/AVP 0 101
        a=rtpmap:101 telephone-event/8000",
    );
    let mut ours = local();
    ours.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (sdp, neg) = answer(&offer, &ours).unwrap();
    assert_eq!(neg.remote_rtp, sock("[2001:db8::1]:5004"));
    let text = sdp.to_string();
    assert!(text.contains("o=sipcheck 4242 0 IN IP6 ::1\r\n"), "{text}");
    assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
    // No fmtp in the offer: RFC 4733's default 0-15.
    assert_eq!(sdp.media[0].fmtp(101), Some("0-15"));
    assert_eq!(SessionDescription::parse(text.as_bytes()).unwrap(), sdp);
}

#[test]
fn video_and_fax_are_rejected_with_port_zero() {
    let offer = parse(
        "v=0
        o=- 7 7 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=video 6002 RTP/AVP 96 97
        a=rtpmap:96 H264/90000
        a=rtpmap:97 VP8/90000
        m=audio 6000 RTP/AVP 0
        m=image 6004 udptl t38
        a=T38FaxVersion:0",
    );
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.media_index, 1);
    assert_eq!(sdp.media.len(), 3);
    assert_eq!(sdp.media[0].to_string(), "m=video 0 RTP/AVP 96 97\r\n");
    assert_eq!(sdp.media[1].port, 40000);
    assert_eq!(sdp.media[2].to_string(), "m=image 0 udptl t38\r\n");
}

#[test]
fn only_the_first_usable_audio_stream_is_accepted() {
    let offer = parse(
        "v=0\no=- 7 7 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0
        m=audio 6000 RTP/AVP 9
        m=audio 6002 RTP/SAVP 0
        m=audio 6004 RTP/AVP 0
        m=audio 6006 RTP/AVP 0",
    );
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.media_index, 2);
    let ports: Vec<u16> = sdp.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, [0, 0, 40000, 0]);
}

#[test]
fn no_common_codec_is_an_error_for_a_488() {
    let offer = parse(&ASTERISK.replace("RTP/AVP 9 18 3 8 101", "RTP/AVP 9 18 3 101"));
    let err = answer(&offer, &local()).unwrap_err();
    assert_eq!(
        err,
        NegotiationError::NoCommonCodec {
            offered: vec![
                "G722/8000".into(),
                "G729/8000".into(),
                "GSM/8000".into(),
                "telephone-event/8000".into()
            ],
            supported: vec![Codec::Pcmu, Codec::Pcma],
        }
    );
    assert_eq!(
        err.to_string(),
        "no common audio codec (offered: G722/8000, G729/8000, GSM/8000, telephone-event/8000; \
         supported: PCMU/8000, PCMA/8000)"
    );
    let mut only_pcmu = local();
    only_pcmu.codecs = vec![Codec::Pcmu];
    assert!(matches!(
        answer(&parse(ASTERISK), &only_pcmu),
        Err(NegotiationError::NoCommonCodec { .. })
    ));
}

#[test]
fn offer_without_active_audio_is_an_error() {
    let offer = parse(
        "v=0\no=- 7 7 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0
        m=video 6002 RTP/AVP 96
        m=audio 0 RTP/AVP 0",
    );
    assert_eq!(
        answer(&offer, &local()).unwrap_err(),
        NegotiationError::NoAudioStream
    );
}

#[test]
fn answer_directions_mirror_the_offer() {
    for (offered, answered) in [
        ("sendrecv", Direction::SendRecv),
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
    ] {
        let offer = parse(&format!("{SIPP_UAC}\na={offered}"));
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(sdp.media[0].direction, Some(answered), "offer {offered}");
        assert_eq!(neg.direction, answered);
        assert_eq!(neg.remote_hold, matches!(offered, "sendonly" | "inactive"));
    }
}

#[test]
fn media_direction_wins_over_session_direction() {
    let text = SIPP_UAC.replace("t=0 0", "t=0 0\na=sendonly");
    let offer = parse(&text);
    assert_eq!(offer.direction, Some(Direction::SendOnly));
    assert_eq!(offer.direction_of(&offer.media[0]), Direction::SendOnly);
    assert_eq!(
        answer(&offer, &local()).unwrap().1.direction,
        Direction::RecvOnly
    );
    let offer = parse(&format!("{text}\na=sendrecv"));
    assert_eq!(offer.direction_of(&offer.media[0]), Direction::SendRecv);
    assert_eq!(
        answer(&offer, &local()).unwrap().1.direction,
        Direction::SendRecv
    );
}

#[test]
fn our_own_direction_is_limited_by_the_offer() {
    let mut ours = local();
    ours.direction = Direction::SendOnly;
    let offer = parse(&format!("{SIPP_UAC}\na=sendonly"));
    // We want to only send, they only send: nobody receives.
    assert_eq!(
        answer(&offer, &ours).unwrap().1.direction,
        Direction::Inactive
    );
    let offer = parse(SIPP_UAC);
    assert_eq!(
        answer(&offer, &ours).unwrap().1.direction,
        Direction::SendOnly
    );
}

/// The three offers of a call put on hold and taken off it in re-INVITEs.
fn reinvite(version: u64, hold: &str) -> SessionDescription {
    parse(&format!(
        "v=0
        o=- 1386527542 {version} IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 12345 RTP/AVP 0 8 101
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        {hold}"
    ))
}

#[test]
fn hold_and_unhold_by_sendonly_bump_our_version() {
    let ours = local();
    let (first, neg) = answer(&reinvite(1, "a=sendrecv"), &ours).unwrap();
    assert!(!neg.remote_hold);
    assert_eq!(first.origin.version, 0);

    let hold = reinvite(2, "a=sendonly");
    assert!(!hold.is_unchanged_from(&reinvite(1, "a=sendrecv")));
    let (held, neg) = answer_update(&hold, &ours, &first).unwrap();
    assert!(neg.remote_hold);
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert_eq!(held.media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(held.origin.version, 1);
    assert_eq!(held.origin.session_id, "4242");

    // A refresh with the same offer: same answer, same version.
    let (refreshed, _) = answer_update(&hold, &ours, &held).unwrap();
    assert_eq!(refreshed, held);

    let (unheld, neg) = answer_update(&reinvite(3, "a=sendrecv"), &ours, &held).unwrap();
    assert!(!neg.remote_hold);
    assert_eq!(neg.direction, Direction::SendRecv);
    assert_eq!(unheld.origin.version, 2);
}

#[test]
fn hold_by_zero_address_is_answered_recvonly() {
    let ours = local();
    let (first, _) = answer(&reinvite(1, ""), &ours).unwrap();
    let hold = parse(
        &crlf(&reinvite(2, "").to_string()).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
    );
    let (held, neg) = answer_update(&hold, &ours, &first).unwrap();
    assert!(neg.remote_hold);
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert_eq!(neg.remote_rtp, sock("0.0.0.0:12345"));
    assert_eq!(held.media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(held.origin.version, 1);
    let (unheld, neg) = answer_update(&reinvite(3, ""), &ours, &held).unwrap();
    assert!(!neg.remote_hold);
    assert_eq!(neg.direction, Direction::SendRecv);
    assert_eq!(unheld.origin.version, 2);
}

#[test]
fn offerer_reads_the_answer() {
    let offer = create_offer(&local());
    // The peer prefers PCMA and uses another telephone-event payload type.
    let answer = parse(
        "v=0
        o=- 99 99 IN IP4 198.51.100.9
        s=-
        c=IN IP4 198.51.100.9
        t=0 0
        m=audio 7078 RTP/AVP 8 96
        a=rtpmap:96 telephone-event/8000
        a=ptime:30",
    );
    let neg = negotiated_from_answer(&offer, &answer).unwrap();
    assert_eq!(
        neg,
        Negotiated {
            media_index: 0,
            remote_rtp: sock("198.51.100.9:7078"),
            codec: Codec::Pcma,
            payload_type: 8,
            telephone_event_pt: Some(96),
            ptime_ms: 30,
            direction: Direction::SendRecv,
            remote_hold: false,
            srtp: None,
        }
    );
}

#[test]
fn offerer_side_hold_and_errors() {
    let mut ours = local();
    ours.direction = Direction::SendOnly;
    let offer = create_offer(&ours);
    let recvonly = parse(&format!("{SIPP_UAC}\na=recvonly"));
    let neg = negotiated_from_answer(&offer, &recvonly).unwrap();
    assert_eq!(neg.direction, Direction::SendOnly);
    assert!(!neg.remote_hold);

    let offer = create_offer(&local());
    let rejected = parse(&SIPP_UAC.replace("m=audio 6000", "m=audio 0"));
    assert_eq!(
        negotiated_from_answer(&offer, &rejected),
        Err(NegotiationError::AudioRejected)
    );
    let g729 = parse(&SIPP_UAC.replace("RTP/AVP 0", "RTP/AVP 18"));
    assert!(matches!(
        negotiated_from_answer(&offer, &g729),
        Err(NegotiationError::NoCommonCodec { .. })
    ));
    let two = parse(&format!("{SIPP_UAC}\nm=video 0 RTP/AVP 96"));
    assert_eq!(
        negotiated_from_answer(&offer, &two)
            .unwrap_err()
            .to_string(),
        "the answer has 2 media sections, the offer 1"
    );
}

#[test]
fn rtcp_with_address_and_ptime_caps() {
    let offer = parse(&format!(
        "{SIPP_UAC}\na=rtcp:6001 IN IP4 127.0.0.2\na=ptime:40\na=maxptime:30"
    ));
    let m = &offer.media[0];
    assert_eq!(
        m.rtcp.as_ref().and_then(|r| r.address.clone()),
        Some(Address::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))))
    );
    assert_eq!(answer(&offer, &local()).unwrap().1.ptime_ms, 30);
}

#[test]
fn telephone_event_lists_are_intersected() {
    assert_eq!(
        parse_events("0-15,66,70"),
        Some(vec![(0, 15), (66, 66), (70, 70)])
    );
    assert_eq!(parse_events("16-3"), None);
    assert_eq!(parse_events("0-300"), None);
    assert_eq!(
        render_events(&intersect_events(
            &[(0, 11), (16, 16), (66, 66)],
            OUR_EVENTS
        )),
        "0-11,16"
    );
    // An offer of events we do not know drops telephone-event from the answer.
    let offer = parse(&BARESIP.replace("a=fmtp:101 0-15", "a=fmtp:101 66"));
    let (sdp, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.telephone_event_pt, None);
    assert_eq!(sdp.media[0].formats, ["0"]);
}

#[test]
fn the_stream_the_answer_takes_decides_srtp_not_the_first_offered() {
    // An RTP/SAVP stream first, a plain RTP/AVP one second: answered without SRTP, the SAVP
    // stream is refused (port 0) and the plain one taken. The offerer reading that answer
    // takes it as plain RTP (it once required SRTP because the first stream was SAVP).
    let offer = parse(&crlf(
        "v=0
        o=- 7 7 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 8000 RTP/SAVP 0
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
        m=audio 30012 RTP/AVP 8 0
        ",
    ));
    let (ours, negotiated) = answer(&offer, &local()).unwrap();
    assert_eq!(negotiated.media_index, 1);
    assert_eq!(ours.media[0].port, 0);
    let theirs = negotiated_from_answer(&offer, &ours).unwrap();
    assert_eq!(theirs.media_index, 1);
    assert_eq!(theirs.codec, negotiated.codec);
    assert!(theirs.srtp.is_none());
}
