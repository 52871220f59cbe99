//! A packet capture in the classic pcap format (the one `tcpdump -w` writes, which Wireshark
//! and `tshark` read): what sipcheck sent and received, each payload under IPv4 or IPv6 and
//! UDP or TCP headers synthesized from the socket addresses.
//!
//! The file's link type is `LINKTYPE_RAW` (101): every record starts with the IP header, no
//! Ethernet header is made up. Records are stamped with the wall-clock time the caller gives
//! ([`Encoder::udp`], [`Encoder::tcp`]): this module never reads a clock.
//!
//! Headers are complete and consistent: IP and UDP/TCP lengths, the IPv4 header checksum, the
//! UDP and TCP checksums (over the pseudo-header, mandatory over IPv6, computed over IPv4
//! too). A SIP byte stream over TCP becomes segments with sequence and acknowledgement
//! numbers that follow each other per connection, after a synthesized handshake (SYN,
//! SYN-ACK, ACK) when the connection is first seen, so that Wireshark reassembles messages
//! split over several segments.

pub mod ring;
pub mod select;
pub mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `LINKTYPE_RAW`: each record is an IPv4 or IPv6 packet.
pub const LINKTYPE_RAW: u32 = 101;

/// The longest record kept (the snapshot length in the file header).
pub const SNAPLEN: u32 = 65_535;

/// The IP protocol numbers.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The TTL / hop limit of synthesized packets.
const TTL: u8 = 64;

/// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// The 24 bytes every pcap file starts with: magic (microsecond stamps, written in
/// little-endian byte order), version 2.4, snapshot length, [`LINKTYPE_RAW`].
#[must_use]
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // 8..16: time zone offset and accuracy, both 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    h
}

/// The direction-independent key of a TCP connection.
type FlowKey = (SocketAddr, SocketAddr);

/// The sequence numbers of one synthesized TCP connection.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// The side that sent first (the synthesized SYN's sender).
    client: SocketAddr,
    /// The next sequence number of the client and of the server.
    client_seq: u32,
    server_seq: u32,
}

/// Turns payloads into pcap records, appended to a buffer; keeps the TCP connections' state.
#[derive(Debug, Default)]
pub struct Encoder {
    flows: HashMap<FlowKey, Flow>,
}

impl Encoder {
    /// An encoder with no connection seen yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Append to `out` the record of one UDP datagram `payload` from `src` to `dst`, sent or
    /// received at `wall` (the time since the Unix epoch). Addresses of different families
    /// (an IPv4 socket talking to an IPv6 peer cannot happen) are written as IPv6 with the
    /// IPv4 address mapped. A payload too long for one IP packet is cut to what fits.
    pub fn udp(
        &mut self,
        out: &mut Vec<u8>,
        wall: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        let (src_ip, dst_ip) = ips(src, dst);
        let payload = &payload[..payload.len().min(max_payload(src_ip, 8))];
        let mut l4 = [0u8; 8];
        l4[0..2].copy_from_slice(&src.port().to_be_bytes());
        l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
        l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        let sum = l4_checksum(src_ip, dst_ip, PROTO_UDP, &l4, payload);
        // A computed 0 is sent as all ones (RFC 768): 0 means "no checksum".
        let sum = if sum == 0 { 0xffff } else { sum };
        l4[6..8].copy_from_slice(&sum.to_be_bytes());
        record(out, wall, src_ip, dst_ip, PROTO_UDP, &l4, payload);
    }

    /// Append to `out` the records of `payload` sent over TCP from `src` to `dst` at `wall`:
    /// the handshake first when this connection was not seen yet, then the payload in
    /// segments that fit an IP packet, each with PSH and ACK, its sequence number following
    /// the last one of the same direction and acknowledging everything the other side sent.
    pub fn tcp(
        &mut self,
        out: &mut Vec<u8>,
        wall: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let flow = *self.flows.entry(key).or_insert_with(|| {
            let flow = Flow {
                client: src,
                client_seq: initial_seq(src, dst),
                server_seq: initial_seq(dst, src),
            };
            let (c, s) = (
                flow.client_seq.wrapping_sub(1),
                flow.server_seq.wrapping_sub(1),
            );
            segment(out, wall, src, dst, c, 0, SYN, &[]);
            segment(out, wall, dst, src, s, c.wrapping_add(1), SYN | ACK, &[]);
            segment(
                out,
                wall,
                src,
                dst,
                c.wrapping_add(1),
                s.wrapping_add(1),
                ACK,
                &[],
            );
            flow
        });
        let from_client = flow.client == src;
        let (mut seq, ack) = if from_client {
            (flow.client_seq, flow.server_seq)
        } else {
            (flow.server_seq, flow.client_seq)
        };
        let (src_ip, _) = ips(src, dst);
        let most = max_payload(src_ip, 20);
        for chunk in payload.chunks(most) {
            segment(out, wall, src, dst, seq, ack, PSH | ACK, chunk);
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        let flow = self.flows.get_mut(&key).expect("inserted above");
        if from_client {
            flow.client_seq = seq;
        } else {
            flow.server_seq = seq;
        }
    }

    /// Append to `out` a FIN from `src` to `dst` when the connection between them was seen
    /// (its end: the connection is forgotten, a later payload starts a new one).
    pub fn tcp_close(
        &mut self,
        out: &mut Vec<u8>,
        wall: Duration,
        src: SocketAddr,
        dst: SocketAddr,
    ) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        if let Some(flow) = self.flows.remove(&key) {
            let (seq, ack) = if flow.client == src {
                (flow.client_seq, flow.server_seq)
            } else {
                (flow.server_seq, flow.client_seq)
            };
            segment(out, wall, src, dst, seq, ack, FIN | ACK, &[]);
        }
    }
}

/// A sequence number to start a connection at, different per address pair (as real ones are:
/// Wireshark shows relative numbers either way).
fn initial_seq(a: SocketAddr, b: SocketAddr) -> u32 {
    // FNV-1a over the text of both addresses: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for byte in a.to_string().bytes().chain(b.to_string().bytes()) {
        h ^= u32::from(byte);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The payload that fits in one IP packet from `ip` after an `l4`-byte header.
fn max_payload(ip: IpAddr, l4: usize) -> usize {
    match ip {
        IpAddr::V4(_) => 65_535 - 20 - l4,
        IpAddr::V6(_) => 65_535 - l4,
    }
}

/// Both addresses in one family: as they are when they agree, else both IPv6.
fn ips(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        (a, b) => (IpAddr::V6(v6(a)), IpAddr::V6(v6(b))),
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Append one TCP segment's record.
#[allow(clippy::too_many_arguments)]
fn segment(
    out: &mut Vec<u8>,
    wall: Duration,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) {
    let (src_ip, dst_ip) = ips(src, dst);
    let mut l4 = [0u8; 20];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = 5 << 4; // data offset: 5 words, no options
    l4[13] = flags;
    l4[14..16].copy_from_slice(&65_535u16.to_be_bytes()); // window
                                                          // 16..20: checksum, urgent pointer
    let sum = l4_checksum(src_ip, dst_ip, PROTO_TCP, &l4, payload);
    l4[16..18].copy_from_slice(&sum.to_be_bytes());
    record(out, wall, src_ip, dst_ip, PROTO_TCP, &l4, payload);
}

/// Append one record: the pcap record header, the IP header, `l4` and `payload`.
fn record(
    out: &mut Vec<u8>,
    wall: Duration,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: &[u8],
    payload: &[u8],
) {
    let ip_len = match src {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    };
    let len = (ip_len + l4.len() + payload.len()) as u32;
    out.reserve(16 + len as usize);
    out.extend_from_slice(&(wall.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&wall.subsec_micros().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    let l4_len = (l4.len() + payload.len()) as u16;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = [0u8; 20];
            h[0] = 0x45; // version 4, 5 words
            h[2..4].copy_from_slice(&(20 + l4_len).to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = TTL;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = !fold(sum_bytes(0, &h));
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend_from_slice(&h);
        }
        _ => {
            let mut h = [0u8; 40];
            h[0] = 0x60; // version 6
            h[4..6].copy_from_slice(&l4_len.to_be_bytes());
            h[6] = proto;
            h[7] = TTL;
            h[8..24].copy_from_slice(&v6(src).octets());
            h[24..40].copy_from_slice(&v6(dst).octets());
            out.extend_from_slice(&h);
        }
    }
    out.extend_from_slice(l4);
    out.extend_from_slice(payload);
}

/// The UDP or TCP checksum: the one's complement of the one's complement sum of the
/// pseudo-header (RFC 768 / RFC 793 over IPv4, RFC 8200 §8.1 over IPv6), `header` (its
/// checksum field zero) and `payload`.
fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, header: &[u8], payload: &[u8]) -> u16 {
    let len = (header.len() + payload.len()) as u32;
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let s = sum_bytes(0, &s.octets());
            let s = sum_bytes(s, &d.octets());
            s + u64::from(proto) + u64::from(len)
        }
        _ => {
            let s = sum_bytes(0, &v6(src).octets());
            let s = sum_bytes(s, &v6(dst).octets());
            s + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(proto)
        }
    };
    sum = sum_bytes(sum, header);
    sum = sum_bytes(sum, payload);
    !fold(sum)
}

/// `sum` plus the big-endian 16-bit words of `bytes` (an odd last byte padded with zero).
fn sum_bytes(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// A sum folded to 16 bits, carries added back.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests;
