//! The records' bytes, checked against headers computed by an independent implementation
//! (RFC 1071 checksums written separately, in Python's `struct`), and the TCP numbering.

use super::*;

const WALL: Duration = Duration::new(1_700_000_000, 123_456_789);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

/// The record header of a `len`-byte packet stamped [`WALL`].
fn record_header(len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    h.extend_from_slice(&123_456u32.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// An RFC 1071 checksum check written apart from the encoder's: the one's complement sum of
/// `bytes` (with the checksum in place) is all ones.
fn sums_to_ones(bytes: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn the_file_header_is_pcap_2_4_microseconds_raw_ip() {
    assert_eq!(
        file_header(),
        [
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0,
            0, 0
        ]
    );
}

#[test]
fn an_ipv4_udp_datagram_is_byte_exact() {
    let mut out = Vec::new();
    Encoder::new().udp(
        &mut out,
        WALL,
        addr("192.0.2.1:5060"),
        addr("192.0.2.2:5070"),
        b"hello",
    );
    let packet = [
        0x45, 0x00, 0x00, 0x21, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0xc8, 0xc0, 0x00, 0x02,
        0x01, 0xc0, 0x00, 0x02, 0x02, 0x13, 0xc4, 0x13, 0xce, 0x00, 0x0d, 0x10, 0x6c, 0x68, 0x65,
        0x6c, 0x6c, 0x6f,
    ];
    let mut expected = record_header(packet.len() as u32);
    expected.extend_from_slice(&packet);
    assert_eq!(out, expected);
    // The IPv4 header checksum, checked on its own.
    assert!(sums_to_ones(&packet[..20]));
    // The UDP checksum: pseudo-header (addresses, zero, protocol, UDP length) and datagram.
    let mut pseudo = packet[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17, 0, 13]);
    pseudo.extend_from_slice(&packet[20..]);
    assert!(sums_to_ones(&pseudo));
}

#[test]
fn an_ipv6_udp_datagram_is_byte_exact_with_its_mandatory_checksum() {
    let mut out = Vec::new();
    Encoder::new().udp(
        &mut out,
        WALL,
        addr("[2001:db8::1]:5060"),
        addr("[2001:db8::2]:5070"),
        b"hello",
    );
    let packet = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x13, 0xc4, 0x13, 0xce, 0x00,
        0x0d, 0x38, 0xfb, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];
    let mut expected = record_header(packet.len() as u32);
    expected.extend_from_slice(&packet);
    assert_eq!(out, expected);
    // Pseudo-header (RFC 8200 §8.1): addresses, upper-layer length, zeros, next header.
    let mut pseudo = packet[8..40].to_vec();
    pseudo.extend_from_slice(&[0, 0, 0, 13, 0, 0, 0, 17]);
    pseudo.extend_from_slice(&packet[40..]);
    assert!(sums_to_ones(&pseudo));
}

/// The (seq, ack, flags, payload length) of each TCP record in `out` (IPv4 records).
fn segments(out: &[u8]) -> Vec<(u32, u32, u8, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let len = u32::from_le_bytes(out[at + 8..at + 12].try_into().unwrap()) as usize;
        let p = &out[at + 16..at + 16 + len];
        assert!(sums_to_ones(&p[..20]), "IPv4 header checksum");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((len - 20) as u16).to_be_bytes());
        pseudo.extend_from_slice(&p[20..]);
        assert!(sums_to_ones(&pseudo), "TCP checksum");
        let tcp = &p[20..];
        found.push((
            u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            tcp[13],
            len - 40,
        ));
        at += 16 + len;
    }
    found
}

#[test]
fn a_tcp_stream_gets_a_handshake_and_numbers_that_follow_each_other() {
    let (a, b) = (addr("127.0.0.1:40000"), addr("127.0.0.1:5060"));
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    enc.tcp(&mut out, WALL, a, b, b"INVITE");
    enc.tcp(&mut out, WALL, b, a, b"SIP/2.0 200");
    enc.tcp(&mut out, WALL, a, b, b"ACK");
    enc.tcp_close(&mut out, WALL, a, b);
    let segs = segments(&out);
    let c = segs[0].0; // the client's initial sequence number
    let s = segs[1].0;
    assert_eq!(
        segs,
        vec![
            (c, 0, SYN, 0),
            (s, c + 1, SYN | ACK, 0),
            (c + 1, s + 1, ACK, 0),
            (c + 1, s + 1, PSH | ACK, 6),
            (s + 1, c + 7, PSH | ACK, 11),
            (c + 7, s + 12, PSH | ACK, 3),
            (c + 10, s + 12, FIN | ACK, 0),
        ]
    );
}

#[test]
fn a_payload_longer_than_an_ip_packet_is_split_into_segments() {
    let (a, b) = (addr("127.0.0.1:40000"), addr("127.0.0.1:5060"));
    let mut out = Vec::new();
    let big = vec![b'x'; 70_000];
    Encoder::new().tcp(&mut out, WALL, a, b, &big);
    let segs = segments(&out);
    assert_eq!(segs.len(), 3 + 2);
    assert_eq!(segs[3].3, 65_495);
    assert_eq!(segs[4].3, 70_000 - 65_495);
    assert_eq!(segs[4].0, segs[3].0.wrapping_add(65_495));
}
