use super::*;

/// The key of RFC 4568 §9.1's example.
const RFC_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; MASTER_KEY_LEN])
}

#[test]
fn the_rfc_example_parses_with_its_lifetime_ignored() {
    let crypto =
        Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20")).unwrap();
    assert_eq!(crypto.tag, 1);
    assert_eq!(crypto.suite, CryptoSuite::AesCm128HmacSha1_80);
    assert_eq!(crypto.key.key().len(), 16);
    assert_eq!(crypto.key.salt().len(), 14);
    let decimal = Crypto::parse(&format!(
        "7 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}|1048576 WSH=64"
    ));
    assert_eq!(decimal.unwrap().suite, CryptoSuite::AesCm128HmacSha1_32);
}

#[test]
fn written_attributes_parse_back_to_the_same_key() {
    let crypto = Crypto {
        tag: 2,
        suite: CryptoSuite::AesCm128HmacSha1_32,
        key: MasterKey::from_bytes(core::array::from_fn(|i| i as u8)),
    };
    let value = crypto.value();
    assert!(
        value.starts_with("2 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{value}"
    );
    assert_eq!(value.len(), "2 AES_CM_128_HMAC_SHA1_32 inline:".len() + 40);
    assert_eq!(Crypto::parse(&value).unwrap(), crypto);
}

#[test]
fn mki_several_keys_and_unknown_session_parameters_are_refused() {
    for (value, want) in [
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:32"),
            "MKI 1:32",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4"),
            "MKI 1:4",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY};inline:{RFC_KEY}"),
            "several keys",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP"),
            "UNENCRYPTED_SRTP",
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=24"),
            "KDR=24",
        ),
    ] {
        let err = Crypto::parse(&value).unwrap_err();
        assert!(
            matches!(err, CryptoError::UnsupportedParameter(_)),
            "{value}: {err}"
        );
        assert!(err.to_string().contains(want), "{value}: {err}");
    }
    assert!(Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=0")).is_ok());
}

#[test]
fn malformed_attributes_are_errors_never_panics() {
    for value in [
        "",
        "1",
        "x AES_CM_128_HMAC_SHA1_80 inline:abc",
        "1234567890 AES_CM_128_HMAC_SHA1_80 inline:abc",
        "1 AES_CM_128_HMAC_SHA1_80",
        "1 AES_CM_128_HMAC_SHA1_80 uri:x",
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 inline:é",
    ] {
        assert!(
            matches!(Crypto::parse(value), Err(CryptoError::Malformed(_))),
            "{value:?}"
        );
    }
    let err = Crypto::parse(&format!("1 AEAD_AES_256_GCM inline:{RFC_KEY}")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a=crypto suite AEAD_AES_256_GCM is not supported"
    );
}

#[test]
fn keys_are_never_shown_by_debug() {
    let crypto = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}")).unwrap();
    let shown = format!(
        "{crypto:?} {:?}",
        SdesAnswer::Srtp {
            local: crypto.clone(),
            remote: crypto.clone()
        }
    );
    assert!(!shown.contains(RFC_KEY), "{shown}");
    assert!(shown.contains("<hidden>"), "{shown}");
}

#[test]
fn the_offer_has_both_suites_with_distinct_tags_and_keys() {
    let offer = offer_crypto([key(1), key(2)]);
    assert_eq!(offer.len(), 2);
    assert_eq!(
        (offer[0].tag, offer[0].suite),
        (1, CryptoSuite::AesCm128HmacSha1_80)
    );
    assert_eq!(
        (offer[1].tag, offer[1].suite),
        (2, CryptoSuite::AesCm128HmacSha1_32)
    );
    assert_ne!(offer[0].key, offer[1].key);
}

#[test]
fn the_answer_echoes_the_first_usable_tag_and_suite_with_our_key() {
    let unusable = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:32");
    let usable = format!("5 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}");
    let answer = answer_crypto(SrtpPolicy::Required, true, &[&unusable, &usable], key(9)).unwrap();
    let SdesAnswer::Srtp { local, remote } = answer else {
        panic!("plain")
    };
    assert_eq!(
        (local.tag, local.suite),
        (5, CryptoSuite::AesCm128HmacSha1_32)
    );
    assert_eq!(local.key, key(9));
    assert_eq!(remote, Crypto::parse(&usable).unwrap());
}

#[test]
fn the_policy_decides_what_an_offer_is_answered_with() {
    let usable = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}");
    let unusable = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4");
    let srtp = |r: Result<SdesAnswer, SdesError>| matches!(r, Ok(SdesAnswer::Srtp { .. }));
    // RTP/SAVP: never answered RTP/AVP.
    assert_eq!(
        answer_crypto(SrtpPolicy::Off, true, &[&usable], key(0)),
        Err(SdesError::SrtpOffered)
    );
    assert!(srtp(answer_crypto(
        SrtpPolicy::Optional,
        true,
        &[&usable],
        key(0)
    )));
    assert!(matches!(
        answer_crypto(SrtpPolicy::Required, true, &[&unusable], key(0)),
        Err(SdesError::NoUsableCrypto(reason)) if reason.contains("MKI")
    ));
    assert!(matches!(
        answer_crypto(SrtpPolicy::Optional, true, &[], key(0)),
        Err(SdesError::NoUsableCrypto(reason)) if reason == "none offered"
    ));
    // RTP/AVP, with or without best-effort keys.
    assert_eq!(
        answer_crypto(SrtpPolicy::Off, false, &[&usable], key(0)),
        Ok(SdesAnswer::Plain)
    );
    assert!(srtp(answer_crypto(
        SrtpPolicy::Optional,
        false,
        &[&usable],
        key(0)
    )));
    assert_eq!(
        answer_crypto(SrtpPolicy::Optional, false, &[&unusable], key(0)),
        Ok(SdesAnswer::Plain)
    );
    assert_eq!(
        answer_crypto(SrtpPolicy::Optional, false, &[], key(0)),
        Ok(SdesAnswer::Plain)
    );
    // `required` takes best-effort SRTP (RTP/AVP with keys), never RTP/AVP without, nor
    // RTP/AVP whose keys are all unusable.
    assert!(srtp(answer_crypto(
        SrtpPolicy::Required,
        false,
        &[&usable],
        key(0)
    )));
    assert_eq!(
        answer_crypto(SrtpPolicy::Required, false, &[], key(0)),
        Err(SdesError::PlainOffered)
    );
    assert!(matches!(
        answer_crypto(SrtpPolicy::Required, false, &[&unusable], key(0)),
        Err(SdesError::NoUsableCrypto(_))
    ));
}

#[test]
fn the_offerer_matches_the_answer_to_its_offer() {
    let ours = offer_crypto([key(1), key(2)]);
    let answered = Crypto {
        tag: 2,
        suite: CryptoSuite::AesCm128HmacSha1_32,
        key: key(7),
    }
    .value();
    let (local, remote) = accept_answer(SrtpPolicy::Required, &ours, &[&answered])
        .unwrap()
        .unwrap();
    assert_eq!(local, ours[1]);
    assert_eq!(remote.key, key(7));
    // A tag we offered with another suite, or a tag we never offered.
    for (tag, suite) in [
        (1, CryptoSuite::AesCm128HmacSha1_32),
        (3, CryptoSuite::AesCm128HmacSha1_80),
    ] {
        let value = Crypto {
            tag,
            suite,
            key: key(7),
        }
        .value();
        assert!(matches!(
            accept_answer(SrtpPolicy::Optional, &ours, &[&value]),
            Err(SdesError::AnswerMismatch(_))
        ));
    }
    assert_eq!(accept_answer(SrtpPolicy::Optional, &ours, &[]), Ok(None));
    assert_eq!(
        accept_answer(SrtpPolicy::Required, &ours, &[]),
        Err(SdesError::AnswerWithoutCrypto)
    );
}

#[test]
fn an_offer_written_with_keys_reads_back_from_the_sdp_text() {
    use crate::sdp::tests::local;
    use crate::sdp::{create_offer, SessionDescription};
    let ours = offer_crypto([key(1), key(2)]);
    for (policy, savp) in [(SrtpPolicy::Required, true), (SrtpPolicy::Optional, false)] {
        let mut offer = create_offer(&local());
        write_crypto(&mut offer.media[0], policy == SrtpPolicy::Required, &ours);
        let text = offer.to_string();
        let protocol = if savp { "RTP/SAVP" } else { "RTP/AVP" };
        assert!(
            text.contains(&format!("m=audio 40000 {protocol} 0 8 101\r\n")),
            "{text}"
        );
        assert!(
            text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{text}"
        );
        assert!(
            text.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"),
            "{text}"
        );
        let parsed = SessionDescription::parse(text.as_bytes()).unwrap();
        let m = &parsed.media[0];
        assert_eq!(is_savp(m), savp);
        // The answerer reads our keys back and echoes the first suite.
        let answer = answer_crypto(policy, savp, &crypto_values(m), key(9));
        let SdesAnswer::Srtp { local, remote } = answer.unwrap() else {
            panic!("plain")
        };
        assert_eq!(remote, ours[0]);
        let (mine, theirs) = accept_answer(policy, &ours, &[&local.value()])
            .unwrap()
            .unwrap();
        assert_eq!((mine, theirs.key), (ours[0].clone(), key(9)));
    }
}

#[test]
fn a_savp_offer_is_read_and_answered_with_its_first_suite() {
    use crate::sdp::tests::parse;
    // An RTP/SAVP offer with both suites, the 32-bit tag preferred.
    let sdp = parse(&format!(
        "v=0
        o=- 1 2 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 10000 RTP/SAVP 0 8
        a=rtpmap:0 PCMU/8000
        a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}
        a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}
        a=sendrecv"
    ));
    let m = &sdp.media[0];
    assert!(is_savp(m));
    assert!(
        !m.is_rtp_audio(),
        "plain offer/answer never takes an RTP/SAVP stream"
    );
    assert_eq!(crypto_values(m).len(), 2);
    let answer = answer_crypto(SrtpPolicy::Optional, true, &crypto_values(m), key(3)).unwrap();
    let SdesAnswer::Srtp { local, .. } = answer else {
        panic!("plain")
    };
    assert_eq!(
        (local.tag, local.suite),
        (1, CryptoSuite::AesCm128HmacSha1_32)
    );
}

#[test]
fn plain_offer_answer_refuses_an_savp_only_offer_never_answering_it_rtp_avp() {
    use crate::sdp::tests::{local, parse};
    use crate::sdp::{answer, NegotiationError};
    // srtp: off (a LocalMedia without SRTP): RFC 3264 §6 lets the answer not change the
    // transport, so an RTP/SAVP-only offer is refused (488) naming SRTP, never answered
    // RTP/AVP.
    let offer = parse(&format!(
        "v=0
        o=- 1 2 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 10000 RTP/SAVP 0
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}"
    ));
    assert_eq!(
        answer(&offer, &local()),
        Err(NegotiationError::Srtp(SdesError::SrtpOffered))
    );
    assert_eq!(
        answer_crypto(
            SrtpPolicy::Off,
            true,
            &crypto_values(&offer.media[0]),
            key(1)
        ),
        Err(SdesError::SrtpOffered)
    );
}

/// Both ends of offer/answer under each pair of policies: SRTP keys agreed crosswise, plain
/// RTP, or the named refusal.
#[test]
fn offer_and_answer_under_each_pair_of_policies() {
    use crate::sdp::tests::local;
    use SrtpPolicy::{Off, Optional, Required};
    for (caller, callee, want) in [
        (Required, Required, Ok(true)),
        (Required, Optional, Ok(true)),
        // Best-effort SRTP (RTP/AVP with keys) is SRTP enough for `required`.
        (Optional, Required, Ok(true)),
        (Optional, Optional, Ok(true)),
        (Optional, Off, Ok(false)),
        (Off, Optional, Ok(false)),
        (Off, Off, Ok(false)),
        (Required, Off, Err("the offer is rtp/savp but srtp is off")),
        (
            Off,
            Required,
            Err("srtp is required but the offer is plain rtp/avp"),
        ),
    ] {
        let case = format!("{caller:?} -> {callee:?}");
        let (offer, ours) = create_offer_sdes(&local(), caller, [key(1), key(2)]);
        let offer = crate::sdp::SessionDescription::parse(offer.to_string().as_bytes()).unwrap();
        let answered = answer_sdes(&offer, &local(), callee, key(3));
        let (answer, _, callee_keys) = match (answered, want) {
            (Err(err), Err(want)) => {
                assert_eq!(err.to_string(), want, "{case}");
                continue;
            }
            (Ok(answered), Ok(_)) => answered,
            (got, want) => panic!("{case}: {got:?}, want {want:?}"),
        };
        let text = answer.to_string();
        assert_eq!(
            text.contains("RTP/SAVP"),
            caller == Required,
            "{case}: {text}"
        );
        // The public offer/answer of a LocalMedia with the same policies agrees.
        let mut ours_local = local();
        ours_local.srtp = LocalSrtp::new(caller, [key(1), key(2)]);
        let mut theirs_local = local();
        theirs_local.srtp = LocalSrtp::new(callee, [key(3), key(4)]);
        let public_offer = crate::sdp::create_offer(&ours_local);
        let (public_answer, callee_negotiated) =
            crate::sdp::answer(&public_offer, &theirs_local).unwrap();
        let caller_negotiated =
            crate::sdp::negotiated_from_answer(&public_offer, &public_answer).unwrap();
        assert_eq!(caller_negotiated.srtp.is_some(), want == Ok(true), "{case}");
        assert_eq!(callee_negotiated.srtp.is_some(), want == Ok(true), "{case}");
        let answer = crate::sdp::SessionDescription::parse(text.as_bytes()).unwrap();
        let (_, caller_keys) = negotiated_from_answer_sdes(&offer, &answer, caller, &ours).unwrap();
        assert_eq!(caller_keys.is_some(), want == Ok(true), "{case}");
        assert_eq!(callee_keys.is_some(), want == Ok(true), "{case}");
        if let (Some(caller_keys), Some(callee_keys)) = (caller_keys, callee_keys) {
            assert_eq!(caller_keys.local, callee_keys.remote, "{case}");
            assert_eq!(caller_keys.remote, callee_keys.local, "{case}");
            assert_eq!(
                caller_keys.local.suite,
                CryptoSuite::AesCm128HmacSha1_80,
                "{case}"
            );
        }
    }
}

#[test]
fn an_answer_changing_the_transport_or_dropping_required_keys_is_refused() {
    use crate::sdp::tests::local;
    let (offer, ours) = create_offer_sdes(&local(), SrtpPolicy::Required, [key(1), key(2)]);
    let (good, _, _) = answer_sdes(&offer, &local(), SrtpPolicy::Required, key(3)).unwrap();
    let mut avp = good.clone();
    avp.media[0].protocol = crate::sdp::TransportProtocol::RtpAvp;
    let err = negotiated_from_answer_sdes(&offer, &avp, SrtpPolicy::Required, &ours).unwrap_err();
    assert!(err.to_string().contains("transport is RTP/AVP"), "{err}");
    let mut keyless = good;
    keyless.media[0].attributes.retain(|a| a.name != "crypto");
    let err =
        negotiated_from_answer_sdes(&offer, &keyless, SrtpPolicy::Required, &ours).unwrap_err();
    assert_eq!(err, SdesError::AnswerWithoutCrypto.into());
}
