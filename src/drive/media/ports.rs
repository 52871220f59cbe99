//! The local RTP ports of a run: handed out round-robin from a random place of the range.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// A range of local RTP ports, handed out round-robin (even ports, RTP convention), from a
/// random place of the range: a new process does not take the ports the previous one just
/// left first (where a far end may still be streaming to that one's calls).
///
/// The range is exact and inclusive: its even ports are used, and a range without one (a
/// single odd port) uses that port. No port outside it is ever bound (`0-0` alone means a
/// port the system picks, for tests).
#[derive(Debug)]
pub struct PortRange {
    /// The range as given, for messages.
    first: u16,
    last: u16,
    /// The candidate ports: `base + step·k` for `k < count`.
    base: u16,
    step: u16,
    count: u32,
    /// The index of the next candidate, round-robin (taken modulo `count`).
    next: AtomicU32,
}

impl PortRange {
    /// Ports `first..=last`, the round-robin starting at a random even port of them.
    pub fn new(first: u16, last: u16) -> Self {
        Self::starting_at(first, last, crate::drive::os_seed())
    }

    /// Ports `first..=last`, the round-robin starting at the even port `seed` picks.
    fn starting_at(first: u16, last: u16, seed: u64) -> Self {
        let last = last.max(first);
        let even = u32::from(first) + u32::from(first % 2);
        let (base, step, count) = if even <= u32::from(last) {
            // `even <= last`, so it fits a u16.
            let base = u16::try_from(even).unwrap_or(last);
            (base, 2, u32::from(last - base) / 2 + 1)
        } else {
            // A single odd port.
            (first, 1, 1)
        };
        let offset = u32::try_from(mix(seed) % u64::from(count)).unwrap_or(0);
        Self {
            first,
            last,
            base,
            step,
            count,
            next: AtomicU32::new(offset),
        }
    }

    /// The candidate port of index `k` (taken modulo the number of candidates).
    fn port(&self, k: u32) -> u16 {
        let k = k % self.count;
        // `base + step·k <= last`, so it fits a u16.
        u16::try_from(u32::from(self.base) + u32::from(self.step) * k).unwrap_or(self.base)
    }

    /// Bind a UDP socket on `ip` at the next free port of the range (an even one, unless the
    /// range is a single odd port); an error names the port or range. Ports are handed out
    /// round-robin, so a busy one is rare until the range is nearly full; after a busy one,
    /// ports spread over the range are tried, and after [`PORT_ATTEMPTS`] busy ports the range
    /// counts as exhausted (an error for this call) instead of every port being tried for
    /// every new call.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        UdpSocket::from_std(self.bind_std(ip)?)
    }

    /// [`PortRange::bind`] without the async runtime: a non-blocking std socket, for
    /// [`MediaHandle::spawn_std`](super::MediaHandle::spawn_std) (the scheduler threads read it; the runtime never does).
    pub fn bind_std(&self, ip: IpAddr) -> std::io::Result<std::net::UdpSocket> {
        let ports = self.count;
        let attempts = ports.min(PORT_ATTEMPTS);
        let mut last_err = None;
        for attempt in 0..attempts {
            let port = if attempt == 0 || attempts == ports {
                // Round-robin: the next port, usually free.
                self.port(self.next.fetch_add(1, Ordering::Relaxed) % ports)
            } else {
                // Then ports spread over the whole range, so that a block held by another
                // program does not look like exhaustion.
                let spread = mix(u64::from(self.next.load(Ordering::Relaxed)) ^ u64::from(attempt));
                self.port(u32::try_from(spread % u64::from(ports)).unwrap_or(0))
            };
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return Ok(socket);
                }
                Err(e)
                    if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32)
                        || e.raw_os_error() == Some(nix::errno::Errno::ENFILE as i32) =>
                {
                    // No port is at fault: the process (or the system) is out of files.
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("out of file descriptors (raise ulimit -n): {e}"),
                    ));
                }
                Err(e) => last_err = Some((port, e)),
            }
        }
        Err(match last_err {
            Some((_, e)) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "RTP port range {}-{} exhausted ({attempts} ports tried, all in use)",
                        self.first, self.last
                    ),
                )
            }
            Some((port, e)) => std::io::Error::new(
                e.kind(),
                format!(
                    "RTP port {port} (of the range {}-{}): {e}",
                    self.first, self.last
                ),
            ),
            None => std::io::Error::other("empty RTP port range"),
        })
    }
}

/// SplitMix64's finaliser: spreads consecutive inputs over the whole `u64` range.
fn mix(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How many busy ports make [`PortRange::bind`] give up.
pub const PORT_ATTEMPTS: u32 = 64;

impl Default for PortRange {
    fn default() -> Self {
        Self::new(20_000, 29_998)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_port_range_is_an_error_after_a_bounded_search() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Hold four even ports, then ask a range of exactly those.
        let range = PortRange::new(0, 0);
        let mut held = Vec::new();
        let mut even = None;
        for _ in 0..200 {
            let s = range.bind(ip).await.unwrap();
            let port = s.local_addr().unwrap().port();
            held.push(s);
            if port % 2 == 0 {
                let base = port;
                let busy: Vec<_> = (1..4)
                    .filter_map(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                    .collect();
                if busy.len() == 3 {
                    even = Some((base, busy));
                    break;
                }
            }
        }
        let (base, _busy) = even.expect("four free even ports in a row somewhere");
        let full = PortRange::new(base, base + 6);
        let err = full.bind(ip).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("exhausted"), "{err}");
    }

    #[test]
    fn a_busy_block_at_the_start_of_the_range_is_not_exhaustion() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Hold the first 70 even ports of a 140-port range (more than PORT_ATTEMPTS in a row).
        let mut found = None;
        for base in (41_000u16..50_000).step_by(600) {
            let held: Vec<_> = (0..70)
                .map_while(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                .collect();
            let rest_free =
                (70..140).all(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).is_ok());
            if held.len() == 70 && rest_free {
                found = Some((base, held));
                break;
            }
        }
        let (base, _held) = found.expect("a free block of 140 even ports between 41000 and 50000");
        let range = PortRange::new(base, base + 2 * 139);
        let socket = range
            .bind_std(ip)
            .expect("a free port beyond the busy block");
        assert!(socket.local_addr().unwrap().port() >= base + 140);
    }

    #[test]
    fn the_round_robin_starts_at_a_random_port_and_covers_the_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Two processes (two seeds) start at different places of a 100-port range.
        let starts: Vec<u16> = (0..4u64)
            .map(|seed| {
                let range = PortRange::starting_at(40_000, 40_198, seed);
                range.port(range.next.load(Ordering::Relaxed))
            })
            .collect();
        assert!(starts
            .iter()
            .all(|p| p % 2 == 0 && (40_000..=40_198).contains(p)));
        assert!(
            starts.windows(2).any(|w| w[0] != w[1]),
            "every seed started at {}",
            starts[0]
        );
        // From wherever it starts, the round-robin hands out each even port once per lap.
        let mut found = None;
        for base in (42_000u16..52_000).step_by(200) {
            let held: Vec<_> = (0..8)
                .map_while(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                .collect();
            if held.len() == 8 {
                drop(held);
                found = Some(base);
                break;
            }
        }
        let base = found.expect("8 free even ports between 42000 and 52000");
        let range = PortRange::starting_at(base, base + 14, 5);
        let mut seen: Vec<u16> = (0..8)
            .map(|_| range.bind_std(ip).unwrap().local_addr().unwrap().port())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..8).map(|k| base + 2 * k).collect::<Vec<_>>());
    }

    /// A free port of loopback with the parity asked for, and the socket holding it.
    fn free_with_parity(odd: bool, from: u16) -> u16 {
        (from..from + 2000)
            .filter(|p| (p % 2 == 1) == odd)
            .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port")
    }

    #[test]
    fn the_range_is_exact_and_inclusive() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // A single odd port: that port, on every bind, never its even neighbour.
        let odd = free_with_parity(true, 43_001);
        let range = PortRange::new(odd, odd);
        let socket = range.bind_std(ip).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), odd);
        // Busy (held by the first socket): an error naming it, no other port.
        let err = range.bind_std(ip).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&format!("RTP port {odd} ")),
            "{err}"
        );
        drop(socket);
        // An odd first port and an even last: the even one only.
        let even = free_with_parity(false, 44_000);
        let range = PortRange::new(even - 1, even);
        for _ in 0..3 {
            assert_eq!(
                range.bind_std(ip).unwrap().local_addr().unwrap().port(),
                even
            );
        }
        // The top of the port space, without overflow or a port the system picks.
        for (first, last, want) in [(65_535, 65_535, 65_535), (65_533, 65_535, 65_534)] {
            let range = PortRange::new(first, last);
            match range.bind_std(ip) {
                Ok(s) => assert_eq!(s.local_addr().unwrap().port(), want),
                Err(e) => assert!(e.to_string().contains(&format!("RTP port {want} ")), "{e}"),
            }
        }
    }

    #[tokio::test]
    async fn port_range_skips_ports_in_use() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let busy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = busy.local_addr().unwrap().port();
        let even = port - port % 2;
        let range = PortRange::new(even, even + 2);
        let got = range.bind(ip).await.unwrap().local_addr().unwrap().port();
        assert_ne!(got, port);
    }
}
