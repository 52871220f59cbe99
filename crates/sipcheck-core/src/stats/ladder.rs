//! The SIP ladder: every message sent and received, with its time offset.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by sipcheck.
    Sent,
    /// Received by sipcheck.
    Received,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Rung {
    /// Time since the ladder started, in milliseconds.
    pub at_ms: f64,
    /// Which way.
    pub direction: Direction,
    /// The other end.
    pub peer: SocketAddr,
    /// The start line (`REGISTER sip:x SIP/2.0`, `SIP/2.0 200 OK`).
    pub line: String,
    /// The CSeq header value.
    pub cseq: String,
    /// True for a retransmission by a transaction timer.
    pub retransmission: bool,
}

/// The ladder of one probe or call.
#[derive(Debug, Clone)]
pub struct Ladder {
    origin: Instant,
    rungs: Vec<Rung>,
}

impl Ladder {
    /// A ladder whose time zero is `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            rungs: Vec::new(),
        }
    }

    /// Record a message (raw bytes; only the start line and CSeq are kept).
    pub fn record(
        &mut self,
        at: Instant,
        direction: Direction,
        peer: SocketAddr,
        raw: &[u8],
        retransmission: bool,
    ) {
        let text = String::from_utf8_lossy(&raw[..raw.len().min(4096)]);
        let mut lines = text.lines();
        let line = lines.next().unwrap_or_default().trim().to_string();
        let cseq = lines
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("cseq")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        self.rungs.push(Rung {
            at_ms: millis(at.saturating_duration_since(self.origin)),
            direction,
            peer,
            line,
            cseq,
            retransmission,
        });
    }

    /// The rungs so far.
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// Write the ladder for a terminal, one rung per line.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for r in &self.rungs {
            writeln!(out, "{}", format_rung(r))?;
        }
        Ok(())
    }
}

/// A call's messages kept as they went (the bytes shared, not copied) and turned into
/// [`Rung`]s only when asked: most calls pass and their ladder is never looked at.
#[derive(Debug, Clone, Default)]
pub struct RawLadder {
    messages: Vec<RawRung>,
}

#[derive(Debug, Clone)]
struct RawRung {
    at: Instant,
    direction: Direction,
    peer: SocketAddr,
    raw: Bytes,
    retransmission: bool,
}

impl RawLadder {
    /// An empty ladder with room for `n` messages.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            messages: Vec::with_capacity(n),
        }
    }

    /// Keep a message.
    pub fn push(
        &mut self,
        at: Instant,
        direction: Direction,
        peer: SocketAddr,
        raw: Bytes,
        retransmission: bool,
    ) {
        self.messages.push(RawRung {
            at,
            direction,
            peer,
            raw,
            retransmission,
        });
    }

    /// The rungs, timed from the first message.
    pub fn rungs(&self) -> Vec<Rung> {
        let Some(first) = self.messages.first() else {
            return Vec::new();
        };
        let mut ladder = Ladder::new(first.at);
        for m in &self.messages {
            ladder.record(m.at, m.direction, m.peer, &m.raw, m.retransmission);
        }
        ladder.rungs
    }

    /// True when no message was kept.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// One rung as a terminal line: offset, arrow, peer, start line, CSeq.
pub fn format_rung(r: &Rung) -> String {
    let arrow = match r.direction {
        Direction::Sent => "-->",
        Direction::Received => "<--",
    };
    let retrans = if r.retransmission {
        " (retransmission)"
    } else {
        ""
    };
    format!(
        "{:>10.3} ms {arrow} {:<22} {}  [{}]{retrans}",
        r.at_ms, r.peer, r.line, r.cseq
    )
}

/// A duration in milliseconds, with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one clock read of these tests: the ladder's origin; every time after it is virtual.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn records_start_line_and_cseq() {
        let t0 = origin();
        let mut ladder = Ladder::new(t0);
        let peer: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        ladder.record(
            t0 + Duration::from_micros(1500),
            Direction::Received,
            peer,
            b"SIP/2.0 401 Unauthorized\r\nVia: x\r\ncseq: 1 REGISTER\r\n\r\n",
            false,
        );
        let r = &ladder.rungs()[0];
        assert_eq!(r.at_ms, 1.5);
        assert_eq!(r.line, "SIP/2.0 401 Unauthorized");
        assert_eq!(r.cseq, "1 REGISTER");
        let mut text = Vec::new();
        ladder.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("<-- 127.0.0.1:5060"), "{text}");
        assert!(text.contains("1.500 ms"), "{text}");
    }
}
