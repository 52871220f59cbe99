use super::*;
use crate::rtp::packet::{write_packet, RtpHeader, RtpPacket};
use crate::sdp::crypto::{MasterKey, MASTER_KEY_LEN};

fn crypto(suite: CryptoSuite, byte: u8) -> Crypto {
    Crypto {
        tag: 1,
        suite,
        key: MasterKey::from_bytes(core::array::from_fn(|i| byte ^ i as u8)),
    }
}

/// A 20 ms G.711 packet: 12-byte header and 160 bytes of payload.
fn packet(sequence: u16) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp: u32::from(sequence) * 160,
        ssrc: 0x1234_5678,
    };
    let mut out = vec![0; 172];
    write_packet(&header, &[0xD5; 160], &mut out).unwrap();
    out
}

/// Alice sends with `a`, Bob with `b`; each end's session.
fn pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
    let (a, b) = (crypto(suite, 1), crypto(suite, 2));
    (
        SrtpSession::new(&a, &b).unwrap(),
        SrtpSession::new(&b, &a).unwrap(),
    )
}

#[test]
fn libsrtp_reference_packet_is_reproduced() {
    // The AES_CM_128_HMAC_SHA1_80 reference packet of libsrtp's test driver.
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let key: [u8; MASTER_KEY_LEN] =
        hex("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6")
            .try_into()
            .unwrap();
    let local = Crypto {
        tag: 1,
        suite: CryptoSuite::AesCm128HmacSha1_80,
        key: MasterKey::from_bytes(key),
    };
    let mut session = SrtpSession::new(&local, &local).unwrap();
    let plain = hex("800f1234decafbadcafebabeabababababababababababababababab");
    let protected = session.protect(&plain).unwrap();
    assert_eq!(
        protected,
        hex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb")
    );
    assert_eq!(session.unprotect(&protected), Some(plain));
}

#[test]
fn both_suites_round_trip_with_their_tag_length_and_an_encrypted_payload() {
    for suite in CryptoSuite::ALL {
        let (mut alice, mut bob) = pair(suite);
        for sequence in 0..50 {
            let plain = packet(sequence);
            let wire = alice.protect(&plain).unwrap();
            assert_eq!(wire.len(), plain.len() + suite.tag_len());
            assert_eq!(wire[..12], plain[..12], "the header stays in clear");
            assert_ne!(wire[12..172], plain[12..], "the payload is encrypted");
            assert!(RtpPacket::parse(&wire).is_ok());
            assert_eq!(bob.unprotect(&wire), Some(plain));
        }
        assert_eq!(alice.stats().protected, 50);
        let stats = bob.stats();
        assert_eq!(
            (stats.unprotected, stats.auth_failures, stats.replays),
            (50, 0, 0)
        );
    }
}

#[test]
fn a_wrong_key_or_a_flipped_bit_fails_authentication_and_is_counted() {
    let suite = CryptoSuite::AesCm128HmacSha1_80;
    let mut alice = SrtpSession::new(&crypto(suite, 1), &crypto(suite, 2)).unwrap();
    // Eve receives with a key that is not Alice's.
    let mut eve = SrtpSession::new(&crypto(suite, 2), &crypto(suite, 3)).unwrap();
    let (_, mut bob) = pair(suite);
    for sequence in 0..10 {
        let mut wire = alice.protect(&packet(sequence)).unwrap();
        assert_eq!(eve.unprotect(&wire), None);
        wire[20] ^= 1;
        assert_eq!(bob.unprotect(&wire), None);
    }
    assert_eq!(eve.stats().auth_failures, 10);
    assert_eq!(eve.stats().unprotected, 0);
    assert_eq!(bob.stats().auth_failures, 10);
    // Plain RTP sent to an SRTP receiver fails too.
    assert_eq!(bob.unprotect(&packet(11)), None);
    assert_eq!(bob.stats().auth_failures, 11);
}

#[test]
fn replays_are_dropped_and_counted_reordering_inside_the_window_is_not() {
    let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_32);
    let wires: Vec<_> = (0..100)
        .map(|s| alice.protect(&packet(s)).unwrap())
        .collect();
    assert!(bob.unprotect(&wires[1]).is_some());
    assert!(
        bob.unprotect(&wires[0]).is_some(),
        "late but inside the window"
    );
    assert!(bob.unprotect(&wires[1]).is_none());
    for wire in &wires[2..99] {
        assert!(bob.unprotect(wire).is_some());
    }
    assert!(bob.unprotect(&wires[98]).is_none());
    assert!(bob.unprotect(&wires[3]).is_none(), "behind the window");
    assert!(bob.unprotect(&wires[99]).is_some());
    let stats = bob.stats();
    assert_eq!(
        (stats.unprotected, stats.replays, stats.auth_failures),
        (100, 3, 0)
    );
    assert_eq!(bob.unprotect(&[0x80, 0, 0]), None);
    assert_eq!(bob.stats().malformed, 1);
}
