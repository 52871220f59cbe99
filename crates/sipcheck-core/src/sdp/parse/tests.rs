use super::*;
use crate::sdp::tests::*;
use std::net::Ipv6Addr;

#[test]
fn unsubstituted_sipp_keyword_is_an_error_naming_the_line() {
    let text = SIPP_UAC.replace("6000", "[media_port]");
    let err = SessionDescription::parse(crlf(&text).as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"line 6: m= line is malformed: port "[media_port]" is not a number from 0 to 65535"#
    );
    let text = SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP[media_ip_type] [media_ip]");
    let err = SessionDescription::parse(crlf(&text).as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::InvalidField {
                line: 4,
                field: "c=",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ipv6_addresses_in_brackets_are_accepted() {
    // As SIPp's stock uac writes them over IPv6.
    let offer = parse(
        "v=0
        o=user1 53655765 2353687637 IN IP6 [::1]
        s=-
        c=IN IP6 [::1]
        t=0 0
        m=audio 6000 RTP/AVP 0",
    );
    assert_eq!(
        offer.origin.address,
        Address::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
    );
    let mut ours = local();
    ours.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (sdp, neg) = answer(&offer, &ours).unwrap();
    assert_eq!(neg.remote_rtp, sock("[::1]:6000"));
    // Ours are written without brackets, as RFC 8866 says.
    assert!(sdp.to_string().contains("c=IN IP6 ::1\r\n"));
    for bad in ["[::1", "[127.0.0.1]", "[]", "[example.com]"] {
        assert!(
            Address::parse(&format!("IN IP6 {bad}")).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn lf_only_line_ends_are_accepted() {
    let lf = BARESIP
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect::<String>();
    assert!(!lf.contains('\r'));
    assert_eq!(
        SessionDescription::parse(lf.as_bytes()).unwrap(),
        parse(BARESIP)
    );
}

#[test]
fn written_offer_is_exact_and_parses_back() {
    let offer = create_offer(&local());
    let text = offer.to_string();
    assert_eq!(
        text,
        crlf(
            "v=0
            o=sipcheck 4242 0 IN IP4 192.0.2.10
            s=sipcheck
            c=IN IP4 192.0.2.10
            t=0 0
            m=audio 40000 RTP/AVP 0 8 101
            a=rtpmap:0 PCMU/8000
            a=rtpmap:8 PCMA/8000
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-16
            a=ptime:20
            a=sendrecv"
        )
    );
    assert_eq!(SessionDescription::parse(&offer.to_bytes()).unwrap(), offer);
    assert_eq!(text.parse::<SessionDescription>().unwrap(), offer);
    // A peer's description written again also parses back to the same model.
    for sample in [KAMAILIO_RTPENGINE, SIPP_UAC, BARESIP, ASTERISK] {
        let model = parse(sample);
        assert_eq!(SessionDescription::parse(&model.to_bytes()).unwrap(), model);
    }
}

#[test]
fn malformed_optional_attributes_are_kept_not_fatal() {
    let offer = parse(&format!(
        "{SIPP_UAC}\na=rtpmap:8 PCMA\na=ptime:twenty\na=fmtp:x\na=rtcp:99999\na=x-custom"
    ));
    let m = &offer.media[0];
    assert_eq!(m.rtpmaps.len(), 1);
    assert_eq!(m.ptime_ms, None);
    let names: Vec<&str> = m.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["rtpmap", "ptime", "fmtp", "rtcp", "x-custom"]);
    // Static payload type 8 still means PCMA without its rtpmap.
    assert_eq!(m.rtpmap(8).and_then(|r| r.codec()), Some(Codec::Pcma));
}

#[test]
fn parse_errors_name_their_line() {
    let cases: [(&str, &str); 7] = [
        ("", "sdp is empty"),
        ("\r\n\r\n", "sdp is empty"),
        ("o=- 1 1 IN IP4 1.2.3.4", "line 1: sdp must start with v=0"),
        (
            "v=1",
            "line 1: sdp version \"1\" is not supported, only v=0 is",
        ),
        ("v=0\n\ngarbage", "line 3: not a `<type>=<value>` sdp line"),
        (
            "v=0\no=- 1 one IN IP4 1.2.3.4",
            "line 2: o= line is malformed: session version \"one\" is not a number",
        ),
        ("v=0\ns=-", "sdp has no o= line"),
    ];
    for (input, message) in cases {
        let err = SessionDescription::parse(input.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), message, "input {input:?}");
    }
    let twice = "v=0\no=- 1 1 IN IP4 1.2.3.4\no=- 1 1 IN IP4 1.2.3.4";
    assert_eq!(
        SessionDescription::parse(twice.as_bytes()),
        Err(ParseError::DuplicateOrigin { line: 3 })
    );
    let c = "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=ATM NSAP 47.0005";
    assert_eq!(
        SessionDescription::parse(c.as_bytes())
            .unwrap_err()
            .to_string(),
        "line 3: c= line is malformed: network type \"ATM\" is not IN"
    );
}

#[test]
fn parser_never_panics_on_prefixes_or_garbage() {
    let sample = crlf(KAMAILIO_RTPENGINE).into_bytes();
    for end in 0..=sample.len() {
        let _ = SessionDescription::parse(&sample[..end]);
    }
    // xorshift64*: deterministic garbage, with SDP-ish bytes over-represented.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let alphabet = b"vocmtsa=:/ \r\n0123456789.INP4-\xff\xc3";
    for round in 0..3000 {
        let len = (next() % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if round % 2 == 0 {
                    alphabet[(r % alphabet.len() as u64) as usize]
                } else {
                    r as u8
                }
            })
            .collect();
        let _ = SessionDescription::parse(&bytes);
        // Mutations of a real sample.
        let mut mutated = sample.clone();
        for _ in 0..(next() % 8) {
            let at = (next() % mutated.len() as u64) as usize;
            mutated[at] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        if let Ok(sdp) = SessionDescription::parse(&mutated) {
            let _ = answer(&sdp, &local());
            let _ = negotiated_from_answer(&create_offer(&local()), &sdp);
            let _ = SessionDescription::parse(&sdp.to_bytes());
        }
    }
}
