//! Media I/O: an RTP socket per call, driven by a few scheduler threads.
//!
//! The session (pacing, encoding, receiving, detection) is the core's; this module binds the
//! socket and hands the stream to one scheduler thread (one per core), which wakes on a 1 ms
//! grid, reads what arrived for the streams due on that tick and sends what their schedules
//! make due. Symmetric RTP: packets leave from the port advertised in our SDP.

mod engine;
mod ports;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::media::intent::{MediaEvent, MediaIntent};
use sipcheck_core::media::session::{MediaError, MediaReport, MediaSession};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

pub use engine::EARLY_PACKETS;
use engine::{engine, Worker};
pub use ports::{PortRange, PORT_ATTEMPTS};

type SessionFn = Box<dyn FnOnce(&mut MediaSession, Instant) + Send>;
type WatchFn = Box<dyn FnMut(&MediaSession, Instant) -> bool + Send>;

enum Command {
    With(SessionFn),
    Watch(WatchFn, oneshot::Sender<()>),
    Dtmf(String, oneshot::Sender<Result<(), MediaError>>),
    Push(Vec<f32>),
    Pull(oneshot::Sender<Vec<f32>>),
    Sending(bool),
    Expecting(bool),
    Remote(SocketAddr),
    /// An intent of a call's script, applied to the session (see [`MediaHandle::apply`]).
    Apply(MediaIntent),
    /// Where the stream's [`MediaEvent`]s go.
    Events(EventSink),
    /// The number of the call its packets are captured with (`--pcap-calls`).
    Call(sipcheck_core::capture::select::CallTag),
    /// A listening stream gets its session (see [`MediaHandle::listen_std`]).
    Start(Box<(MediaSession, SocketAddr)>),
    Stop(oneshot::Sender<Finished>),
    /// Every handle is gone without a stop: drop the stream.
    Forget,
}

enum Message {
    Add(u64, Box<NewStream>),
    Listen(u64, std::net::UdpSocket),
    To(u64, Command),
}

struct NewStream {
    socket: std::net::UdpSocket,
    session: MediaSession,
    remote: SocketAddr,
}

/// Where a stream's [`MediaEvent`]s go: a channel of its own, or one shared by many
/// streams, each event tagged with its stream's key.
pub struct EventSink(Box<dyn Fn(MediaEvent) + Send>);

impl EventSink {
    /// Events to a channel of the stream's own.
    pub fn channel(to: tokio::sync::mpsc::UnboundedSender<MediaEvent>) -> Self {
        Self(Box::new(move |event| {
            let _ = to.send(event);
        }))
    }

    /// Events to a channel shared by many streams, tagged with `key`.
    pub fn tagged<K: Copy + Send + 'static>(
        to: tokio::sync::mpsc::UnboundedSender<(K, MediaEvent)>,
        key: K,
    ) -> Self {
        Self(Box::new(move |event| {
            let _ = to.send((key, event));
        }))
    }

    /// Hand over one event (a receiver that is gone is not waited for).
    pub(crate) fn send(&self, event: MediaEvent) {
        (self.0)(event);
    }
}

/// What a media stream hands back when stopped.
#[derive(Debug)]
pub struct Finished {
    /// The session's summary.
    pub report: MediaReport,
    /// The recording, if asked for.
    pub recording: Option<Vec<i16>>,
    /// The recordings of its `record: true` steps.
    pub steps: Vec<sipcheck_core::media::session::StepRecording>,
}

/// A media stream driven by one of the scheduler threads; clones share the stream, which is
/// dropped when the last clone goes (or at [`MediaHandle::stop`]).
#[derive(Debug, Clone)]
pub struct MediaHandle {
    stream: Arc<StreamRef>,
    /// The local RTP address (as advertised in SDP).
    pub local: SocketAddr,
}

#[derive(Debug)]
struct StreamRef {
    id: u64,
    worker: &'static Worker,
}

impl StreamRef {
    fn send(&self, command: Command) -> bool {
        self.worker.send(Message::To(self.id, command))
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.send(Command::Forget);
    }
}

impl MediaHandle {
    /// Start driving `session` on `socket`, sending to `remote`.
    pub fn spawn(socket: UdpSocket, session: MediaSession, remote: SocketAddr) -> Self {
        let socket = socket.into_std().expect("a socket of this runtime");
        Self::spawn_std(socket, session, remote)
    }

    /// [`MediaHandle::spawn`] for a non-blocking std socket (from [`PortRange::bind_std`]).
    pub fn spawn_std(
        socket: std::net::UdpSocket,
        session: MediaSession,
        remote: SocketAddr,
    ) -> Self {
        let local = socket.local_addr().expect("bound socket");
        tracing::trace!(target: "rtp", %local, %remote, "rtp stream started");
        let (id, worker) = engine().place();
        worker.send(Message::Add(
            id,
            Box::new(NewStream {
                socket,
                session,
                remote,
            }),
        ));
        Self {
            stream: Arc::new(StreamRef { id, worker }),
            local,
        }
    }

    /// Read `socket` from now on, before the session exists: an offerer must be ready to
    /// receive as soon as its offer is sent (RFC 3264 §5.1), and a far end may start its RTP
    /// with its answer, before that answer has reached us (a lost and retransmitted 200).
    /// What arrives is kept, with its arrival time, up to [`EARLY_PACKETS`] packets (the
    /// newest), and handed to the session at [`MediaHandle::start`]; left unread, the socket's
    /// buffer would overflow after a few seconds and its drops would be counted as loss on
    /// the network. Until then the stream takes no other command.
    pub fn listen_std(socket: std::net::UdpSocket) -> Self {
        let local = socket.local_addr().expect("bound socket");
        tracing::trace!(target: "rtp", %local, "rtp socket listening");
        let (id, worker) = engine().place();
        worker.send(Message::Listen(id, socket));
        Self {
            stream: Arc::new(StreamRef { id, worker }),
            local,
        }
    }

    /// [`MediaHandle::listen_std`] for a tokio socket.
    pub fn listen(socket: UdpSocket) -> Self {
        Self::listen_std(socket.into_std().expect("a socket of this runtime"))
    }

    /// Give a listening stream its session: what arrived so far goes to it first, then it
    /// runs as if spawned now. No effect on a stream that was started already.
    pub fn start(&self, session: MediaSession, remote: SocketAddr) {
        tracing::trace!(target: "rtp", local = %self.local, %remote, "rtp stream started");
        self.stream
            .send(Command::Start(Box::new((session, remote))));
    }

    /// Send DTMF digits as RFC 4733 events.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        tracing::trace!(target: "rtp", local = %self.local, digits, "rtp dtmf events sent");
        let (tx, rx) = oneshot::channel();
        self.stream.send(Command::Dtmf(digits.to_string(), tx));
        rx.await.unwrap_or(Ok(()))
    }

    /// Queue samples to send (bridge mode): 8 kHz mono in [-1, 1].
    pub fn push_audio(&self, samples: Vec<f32>) {
        self.stream.send(Command::Push(samples));
    }

    /// The decoded audio received since the last call (bridge mode): 8 kHz mono in [-1, 1].
    pub async fn pull_audio(&self) -> Vec<f32> {
        let (tx, rx) = oneshot::channel();
        if !self.stream.send(Command::Pull(tx)) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Run `f` on the session on its scheduler thread (at `now`) and return its result;
    /// `None` when the stream has stopped.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MediaSession, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: SessionFn = Box::new(move |session, now| {
            let _ = tx.send(f(session, now));
        });
        if !self.stream.send(Command::With(job)) {
            return None;
        }
        rx.await.ok()
    }

    /// Resolves once `condition` holds. The scheduler evaluates it when the watch is set and
    /// after each of the stream's frame ticks (every ptime, when received audio is played
    /// out and detected); the receiver errors if the stream stops first.
    pub fn watch(
        &self,
        condition: impl FnMut(&MediaSession, Instant) -> bool + Send + 'static,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.stream.send(Command::Watch(Box::new(condition), tx));
        rx
    }

    /// Send this stream's [`MediaEvent`]s (watches resolved, status asked) to `events`.
    pub fn set_events(&self, events: EventSink) {
        self.stream.send(Command::Events(events));
    }

    /// Carry out an intent of a call's script: on the stream (remote address, direction,
    /// sending) here, on the session on its scheduler thread (playlist, watches, DTMF,
    /// status), whose events go where [`MediaHandle::set_events`] said.
    /// [`MediaIntent::Start`] needs a session, given with [`MediaHandle::start`].
    pub fn apply(&self, intent: MediaIntent) {
        match intent {
            MediaIntent::Start(_) => {}
            MediaIntent::Remote(remote) => self.set_remote(remote),
            MediaIntent::Follow(negotiated) => self.follow(&negotiated),
            MediaIntent::SetSending(send) => self.set_sending(send),
            intent => {
                self.stream.send(Command::Apply(intent));
            }
        }
    }

    /// Capture the stream's packets as call `call_id`'s (`--pcap-calls`; no effect when
    /// calls are not selected).
    pub fn set_call(&self, call_id: &str) {
        if let Some(call) = crate::drive::capture::tag(call_id) {
            self.stream.send(Command::Call(call));
        }
    }

    /// Start or stop sending (hold).
    pub fn set_sending(&self, send: bool) {
        tracing::trace!(target: "rtp", local = %self.local, send, "rtp sending changed");
        self.stream.send(Command::Sending(send));
    }

    /// Whether RTP is expected from the far end (not while the call is on hold either way):
    /// the RTP gap does not count while it is not.
    pub fn set_expecting(&self, expecting: bool) {
        self.stream.send(Command::Expecting(expecting));
    }

    /// Follow new media of the call (a re-INVITE or UPDATE, hold or resume either way): the
    /// remote address, whether we send, whether RTP is expected.
    pub fn follow(&self, negotiated: &sipcheck_core::sdp::Negotiated) {
        self.set_remote(negotiated.remote_rtp);
        self.set_sending(negotiated.direction.sends());
        self.set_expecting(negotiated.expects_rtp());
        if negotiated.srtp.is_some() {
            // New keys (a re-offer may re-key) replace the context; the same ones keep it.
            let keys = negotiated.srtp.clone();
            self.stream.send(Command::With(Box::new(move |session, _| {
                session.follow_srtp(keys.as_ref());
            })));
        }
    }

    /// Send to a new remote address (re-INVITE).
    pub fn set_remote(&self, remote: SocketAddr) {
        tracing::trace!(target: "rtp", local = %self.local, %remote, "rtp remote changed");
        self.stream.send(Command::Remote(remote));
    }

    /// Stop the stream and take its report.
    pub async fn stop(&self) -> Option<Finished> {
        let (tx, rx) = oneshot::channel();
        if !self.stream.send(Command::Stop(tx)) {
            return None;
        }
        let finished: Option<Finished> = rx.await.ok();
        if let Some(f) = &finished {
            tracing::trace!(
                target: "rtp",
                local = %self.local,
                sent = f.report.packets_sent,
                received = f.report.receive.received,
                wrong_payload_type = f.report.wrong_payload_type,
                "rtp stream stopped"
            );
        }
        finished
    }
}

/// Write a recording as a WAV file (8 kHz mono); why not, as printed.
pub fn write_recording(path: &std::path::Path, samples: &[i16]) -> Result<(), String> {
    let wav = sipcheck_core::media::wav::encode(samples);
    match path.to_str() {
        // As a report: atomically, through links, in place for a device or FIFO.
        Some(name) => crate::report::write_report(name, |w| std::io::Write::write_all(w, &wav))
            .map_err(|e| e.to_string()),
        None => {
            std::fs::write(path, wav).map_err(|e| format!("cannot write {}: {e}", path.display()))
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
    use std::net::IpAddr;

    pub(super) fn session(hz: f64, expect: f64, seed: u64) -> MediaSession {
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

    /// The next event of a stream, bounded.
    async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>) -> MediaEvent {
        tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("an event within 3 s")
            .expect("the stream is running")
    }

    #[tokio::test]
    async fn intents_as_data_watch_a_tone_send_dtmf_and_report_the_status_back() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind_std(ip).unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        // `a` listens first, as a call's stream does, and gets its events channel then.
        let a = MediaHandle::listen_std(a_sock);
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        a.set_events(EventSink::channel(tx));
        a.apply(MediaIntent::Probe(1));
        assert_eq!(next(&mut events).await, MediaEvent::no_session(1));
        a.start(session(700.0, 1300.0, 5), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 6), a_addr);
        a.apply(MediaIntent::WatchTone {
            watch: 2,
            query: ToneQuery::single(1300.0).unwrap(),
        });
        a.apply(MediaIntent::WatchDtmf {
            watch: 3,
            digits: "4#".into(),
        });
        match next(&mut events).await {
            MediaEvent::ToneHeard { watch: 2, onset } => {
                assert!(onset < Duration::from_secs(1), "{onset:?}");
            }
            other => panic!("{other:?}"),
        }
        b.send_dtmf("4#").await.unwrap();
        assert_eq!(
            next(&mut events).await,
            MediaEvent::DtmfReceived { watch: 3 }
        );
        a.apply(MediaIntent::Probe(4));
        match next(&mut events).await {
            MediaEvent::Status {
                watch: 4,
                level_dbfs: Some(_),
                dtmf_received,
                ..
            } => assert_eq!(dtmf_received, "4#"),
            other => panic!("{other:?}"),
        }
        a.stop().await.unwrap();
        b.stop().await.unwrap();
        assert!(
            events.recv().await.is_none(),
            "a stopped stream drops its sender"
        );
    }

    #[tokio::test]
    async fn a_watch_fires_when_the_tone_is_heard_and_fails_when_the_stream_stops() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind(ip).await.unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        let a = MediaHandle::spawn(a_sock, session(700.0, 1300.0, 3), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 4), a_addr);
        let query = ToneQuery::single(1300.0).unwrap();
        let id = a
            .with(move |s, _| s.expect_tone(query))
            .await
            .unwrap()
            .unwrap();
        let heard = a.watch(move |s, _| s.detection(id).is_some());
        // Bounded: the tone needs 40 ms plus the jitter buffer's fill.
        tokio::time::timeout(Duration::from_secs(2), heard)
            .await
            .expect("heard within 2 s")
            .expect("the stream is running");
        let never = b.watch(|_, _| false);
        let report = b.stop().await.unwrap().report;
        assert!(report.packets_sent > 0);
        assert!(never.await.is_err(), "a stopped stream drops its watches");
        assert!(
            b.with(|_, _| ()).await.is_none(),
            "a stopped stream takes no commands"
        );
        let ra = a.stop().await.unwrap().report;
        assert_eq!(ra.frames_skipped, 0);
        // Loopback, kernel arrival stamps: the measured jitter is far below a frame.
        assert!(ra.receive.jitter_ms < 5.0, "{}", ra.receive.jitter_ms);
    }

    /// Send PCMA packets `seqs` to `to`, 20 ms of timestamp apart, as fast as the socket
    /// takes them.
    fn blast(from: &std::net::UdpSocket, to: SocketAddr, seqs: std::ops::Range<u16>) {
        use sipcheck_core::rtp::packet::{write_packet, RtpHeader};
        let mut out = [0u8; 256];
        for seq in seqs {
            let header = RtpHeader {
                marker: false,
                payload_type: 8,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 0x1234_5678,
            };
            let len = write_packet(&header, &[0xD5; 160], &mut out).unwrap();
            from.send_to(&out[..len], to).unwrap();
        }
    }

    #[test]
    fn what_arrives_before_the_session_starts_is_kept_not_dropped_by_the_socket() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ports = PortRange::new(0, 0);
        let far = std::net::UdpSocket::bind((ip, 0)).unwrap();
        // More than a default socket buffer holds (~300 such datagrams in 208 KiB), sent
        // while the session does not exist yet: a far end that starts its RTP with its
        // answer while that answer is retransmitted to us for seconds.
        let early = 600u16;
        let socket = ports.bind_std(ip).unwrap();
        let local = socket.local_addr().unwrap();
        let handle = MediaHandle::listen_std(socket);
        for chunk in (0..early).step_by(50) {
            blast(&far, local, chunk..chunk + 50);
            // Bounded pacing: the listening stream reads every 20 ms.
            std::thread::sleep(Duration::from_millis(25));
        }
        handle.start(session(700.0, 1300.0, 9), far.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        blast(&far, local, early..early + 50);
        std::thread::sleep(Duration::from_millis(100));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let report = rt.block_on(handle.stop()).unwrap().report;
        assert_eq!(report.receive.received, u64::from(early) + 50);
        assert_eq!(report.receive.lost(), 0);
    }

    #[test]
    fn a_listening_stream_keeps_only_the_newest_packets() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let far = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let socket = PortRange::new(0, 0).bind_std(ip).unwrap();
        let local = socket.local_addr().unwrap();
        let handle = MediaHandle::listen_std(socket);
        let sent = EARLY_PACKETS as u16 + 200;
        for chunk in (0..sent).step_by(50) {
            blast(&far, local, chunk..chunk + 50);
            std::thread::sleep(Duration::from_millis(25));
        }
        std::thread::sleep(Duration::from_millis(50));
        handle.start(session(700.0, 1300.0, 10), far.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let report = rt.block_on(handle.stop()).unwrap().report;
        // The oldest 200 went; what is left is one unbroken run, so nothing counts as lost.
        assert_eq!(report.receive.received, EARLY_PACKETS as u64);
        assert_eq!(report.receive.lost(), 0);
    }
}
