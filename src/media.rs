//! Media I/O: an RTP socket per call and the task that drives its [`MediaSession`].
//!
//! The session (pacing, encoding, receiving, detection) is the core's; this module only binds
//! the socket, sleeps until the session's next deadline, sends what it returns and hands it
//! what arrives. Symmetric RTP: packets leave from the port advertised in our SDP.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::media::dtmf::DtmfConfig;
use sipcheck_core::media::session::{MediaError, MediaReport, MediaSession, MAX_PACKET};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// A range of local RTP ports, handed out round-robin (even ports, RTP convention).
#[derive(Debug)]
pub struct PortRange {
    first: u16,
    last: u16,
    next: AtomicU16,
}

impl PortRange {
    /// Ports `first..=last`.
    pub fn new(first: u16, last: u16) -> Self {
        let first = first + first % 2;
        Self {
            first,
            last: last.max(first),
            next: AtomicU16::new(first),
        }
    }

    /// Bind a UDP socket on `ip` at the next free even port of the range.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        let span = u32::from(self.last - self.first) / 2 + 1;
        let mut last_err = None;
        for _ in 0..span {
            let port = self.next.fetch_add(2, Ordering::Relaxed);
            let port = if port > self.last || port < self.first {
                self.next.store(self.first + 2, Ordering::Relaxed);
                self.first
            } else {
                port
            };
            match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(socket) => return Ok(socket),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("empty RTP port range")))
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self::new(20_000, 29_998)
    }
}

type SessionFn = Box<dyn FnOnce(&mut MediaSession, Instant) + Send>;

enum Command {
    With(SessionFn),
    Dtmf(String, oneshot::Sender<Result<(), MediaError>>),
    Push(Vec<f32>),
    Pull(oneshot::Sender<Vec<f32>>),
    Sending(bool),
    Remote(SocketAddr),
    Stop(oneshot::Sender<Finished>),
}

/// What a media task hands back when stopped.
#[derive(Debug)]
pub struct Finished {
    /// The session's summary.
    pub report: MediaReport,
    /// The recording, if asked for.
    pub recording: Option<Vec<i16>>,
}

/// A running media task.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// The local RTP address (as advertised in SDP).
    pub local: SocketAddr,
}

impl MediaHandle {
    /// Start driving `session` on `socket`, sending to `remote`.
    pub fn spawn(socket: UdpSocket, session: MediaSession, remote: SocketAddr) -> Self {
        let local = socket.local_addr().expect("bound socket");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::new(socket), session, remote, rx));
        Self {
            commands: tx,
            local,
        }
    }

    /// Send DTMF digits as RFC 4733 events.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Dtmf(digits.to_string(), tx));
        rx.await.unwrap_or(Ok(()))
    }

    /// Queue samples to send (bridge mode): 8 kHz mono in [-1, 1].
    pub fn push_audio(&self, samples: Vec<f32>) {
        let _ = self.commands.send(Command::Push(samples));
    }

    /// The decoded audio received since the last call (bridge mode): 8 kHz mono in [-1, 1].
    pub async fn pull_audio(&self) -> Vec<f32> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Pull(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Run `f` on the session inside its task (at `now`) and return its result; `None` when
    /// the task has stopped.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MediaSession, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: SessionFn = Box::new(move |session, now| {
            let _ = tx.send(f(session, now));
        });
        self.commands.send(Command::With(job)).ok()?;
        rx.await.ok()
    }

    /// Start or stop sending (hold).
    pub fn set_sending(&self, send: bool) {
        let _ = self.commands.send(Command::Sending(send));
    }

    /// Send to a new remote address (re-INVITE).
    pub fn set_remote(&self, remote: SocketAddr) {
        let _ = self.commands.send(Command::Remote(remote));
    }

    /// Stop the task and take its report.
    pub async fn stop(&self) -> Option<Finished> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stop(tx)).ok()?;
        rx.await.ok()
    }
}

async fn run(
    socket: Arc<UdpSocket>,
    mut session: MediaSession,
    mut remote: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut out = [0u8; MAX_PACKET];
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        while let Some(len) = session.poll_transmit(now, &mut out) {
            // A send error (ICMP unreachable) is the far end's problem: the receiver's
            // statistics and the detector tell the story.
            let _ = socket.send_to(&out[..len], remote).await;
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Command::Dtmf(digits, reply)) => {
                    let _ = reply.send(session.send_dtmf(&digits, DtmfConfig::default()));
                }
                Some(Command::Sending(send)) => session.set_sending(send),
                Some(Command::With(f)) => f(&mut session, Instant::now()),
                Some(Command::Push(samples)) => session.push_audio(&samples),
                Some(Command::Pull(reply)) => {
                    let mut audio = Vec::new();
                    session.pull_audio(&mut audio);
                    let _ = reply.send(audio);
                }
                Some(Command::Remote(addr)) => remote = addr,
                Some(Command::Stop(reply)) => {
                    let now = Instant::now();
                    let _ = reply.send(Finished {
                        report: session.report(now),
                        recording: session.recording().map(<[i16]>::to_vec),
                    });
                    return;
                }
                None => return,
            },
            received = socket.recv_from(&mut buf) => {
                if let Ok((len, _from)) = received {
                    session.handle_packet(Instant::now(), &buf[..len]);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Percentile of a lateness histogram, in milliseconds.
pub fn lateness_ms(report: &MediaReport, quantile: f64) -> f64 {
    report.lateness_us.value_at_quantile(quantile) as f64 / 1000.0
}

/// A duration in whole milliseconds for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::ids::IdGen;
    use sipcheck_core::media::g711::Codec;
    use sipcheck_core::media::session::MediaConfig;
    use sipcheck_core::media::tone::{Playlist, PlaylistItem, Tone, ToneQuery};

    fn session(hz: f64, expect: f64, seed: u64) -> MediaSession {
        let mut config = MediaConfig::new(Codec::Pcma);
        config.telephone_event_pt = Some(101);
        let playlist = Playlist::looping(vec![PlaylistItem::Tone {
            tone: Tone::single(hz, -10.0).unwrap(),
            duration: Duration::from_secs(1),
        }]);
        let mut s =
            MediaSession::new(Instant::now(), config, playlist, &mut IdGen::new(seed)).unwrap();
        s.expect_tone(ToneQuery::single(expect).unwrap()).unwrap();
        s
    }

    #[tokio::test]
    async fn two_tasks_on_loopback_hear_each_other_and_dtmf() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind(ip).await.unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        let a = MediaHandle::spawn(a_sock, session(700.0, 1300.0, 1), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 2), a_addr);
        a.send_dtmf("5*").await.unwrap();
        // Bounded: 20 ms ticks, the tones need 40 ms plus buffering; DTMF takes ~0.5 s.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let ra = a.stop().await.unwrap().report;
        let rb = b.stop().await.unwrap().report;
        assert!(ra.tones[0].detection.is_some(), "a did not hear 1300 Hz");
        assert!(rb.tones[0].detection.is_some(), "b did not hear 700 Hz");
        assert_eq!(rb.dtmf_received, "5*");
        assert!(ra.packets_sent >= 30, "{}", ra.packets_sent);
        assert_eq!(rb.receive.lost(), 0);
        assert_eq!(ra.frames_skipped, 0);
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
