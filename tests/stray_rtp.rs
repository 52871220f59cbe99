//! RTP at a call's port that is not the peer's: a third process streaming a tone to the port
//! `sipcheck call` (or `answer`) uses for a call, while the real peer sends something else.
//! The stray tone must never pass an `--expect-tone`, and the stray packets are reported.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sipcheck_core::media::g711::Codec;
use sipcheck_core::media::tone::{AudioSource, Tone, ToneGenerator};
use sipcheck_core::rtp::packet::{write_packet, RtpHeader};
use support::responder::Responder;
use support::{describe_output, free_port, run_sipcheck};

/// The longest a stray stream runs, whatever the test does.
const STRAY_MAX: Duration = Duration::from_secs(30);

/// A far end that kept streaming: PCMU packets of a tone, every 20 ms, from a socket of its
/// own to a fixed port, until stopped (or [`STRAY_MAX`]).
struct StrayStream {
    from: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl StrayStream {
    fn start(to: SocketAddr, hz: f64) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the stray sender");
        let from = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut tone = ToneGenerator::new(&Tone::single(hz, -10.0).unwrap());
            let (mut pcm, mut payload, mut buf) = ([0i16; 160], [0u8; 160], [0u8; 200]);
            let start = Instant::now();
            let mut sent = 0u32;
            while !flag.load(Ordering::Relaxed) && start.elapsed() < STRAY_MAX {
                tone.fill(&mut pcm);
                Codec::Pcmu.encode(&pcm, &mut payload).unwrap();
                let header = RtpHeader {
                    marker: sent == 0,
                    payload_type: 0,
                    sequence: sent as u16,
                    timestamp: 160 * sent,
                    ssrc: 0x0057_0700,
                };
                let len = write_packet(&header, &payload, &mut buf).unwrap();
                // Nobody may listen at the port yet (ICMP unreachable): sent on regardless.
                let _ = socket.send_to(&buf[..len], to);
                sent += 1;
                // Paced like a real stream: packet n leaves at n · 20 ms.
                let due = start + Duration::from_millis(20) * sent;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            u64::from(sent)
        });
        Self {
            from,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the stream; the packets it sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for StrayStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A free even UDP port on loopback (an RTP port).
fn even_port() -> u16 {
    (0..100)
        .map(|_| free_port())
        .find(|p| p % 2 == 0)
        .expect("a free even port")
}

fn json(out: &std::process::Output, shown: &str) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{shown}"))
}

/// The bug as found: a far end still streaming 700 Hz to the port a new `sipcheck call` takes
/// for its call, while the peer (`sipcheck answer`) plays 1000 Hz. `--expect-tone 700` fails
/// and names the stray packets; the peer's own 1000 Hz is still heard, stray or not.
#[test]
fn a_stray_700_hz_stream_at_the_callers_port_is_not_the_peers_tone() {
    let rtp = even_port();
    let rtp_range = format!("{rtp}-{rtp}");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--play-tone",
            "1000",
            "--calls",
            "2",
            "--json",
        ],
        &[],
    );
    let stray = StrayStream::start(SocketAddr::from(([127, 0, 0, 1], rtp)), 700.0);
    let uri = format!("sip:bob@{listen}");
    let call = |expect: &str, json: bool| {
        let mut args = vec![
            "call",
            &uri,
            "--rtp-ports",
            &rtp_range,
            "--play-tone",
            "440",
            "--expect-tone",
            expect,
            "--duration",
            "2s",
        ];
        if json {
            args.push("--json");
        }
        run_sipcheck(args, &[])
    };

    let out = call("700", true);
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "fail", "{shown}");
    let media = &v["media"];
    assert_eq!(media["tones"][0]["detected"], false, "{shown}");
    // 2 s of call at 50 packets a second, all of them set aside.
    assert!(media["stray_packets"].as_u64().unwrap() >= 50, "{shown}");
    assert_eq!(
        media["stray_packets"], media["stray_other_address"],
        "{shown}"
    );
    assert_eq!(media["stray_sources"], 1, "{shown}");
    assert_eq!(
        media["stray_first_source"],
        stray.from.to_string(),
        "{shown}"
    );
    // The peer's stream, whole and alone.
    assert!(media["packets_received"].as_u64().unwrap() >= 90, "{shown}");
    assert_eq!(media["lost"], 0, "{shown}");
    assert_eq!(media["ssrc_changes"], 0, "{shown}");
    let failures = v["failures"].to_string();
    assert!(
        failures.contains("expected tone 700 Hz not detected")
            && failures.contains("stray RTP packets ignored")
            && failures.contains(&stray.from.to_string()),
        "{shown}"
    );

    // The same port, the stray stream still running: the peer's tone passes, and the text
    // output says what was set aside.
    let out = call("1000", false);
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tone 1000 Hz: detected"), "{shown}");
    let stray_line = text
        .lines()
        .find(|l| l.starts_with("stray rtp: "))
        .unwrap_or_else(|| panic!("no stray rtp line\n{shown}"));
    assert!(
        stray_line.contains(&format!("from 1 other source, first {}", stray.from)),
        "{shown}"
    );
    assert!(stray.stop() > 100);
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}

/// The same at the responder's port: `answer --expect-tone 700` fails while a third process
/// streams 700 Hz to its RTP port and the caller plays 440 Hz; its call line counts them.
#[test]
fn a_stray_stream_at_the_responders_port_is_reported_by_answer() {
    let rtp = even_port();
    let rtp_range = format!("{rtp}-{rtp}");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--rtp-ports",
            &rtp_range,
            "--expect-tone",
            "700",
            "--calls",
            "1",
            "--json",
        ],
        &[],
    );
    let stray = StrayStream::start(SocketAddr::from(([127, 0, 0, 1], rtp)), 700.0);
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        ["call", &uri, "--play-tone", "440", "--duration", "2s"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let code = answer.wait_exit(Duration::from_secs(10));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    // The responder's exit status says a call failed.
    assert_ne!(code, Some(0), "{shown}");
    let stdout = answer.stdout();
    let line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "call")
        .unwrap_or_else(|| panic!("no call line:\n{shown}"));
    assert_eq!(line["verdict"], "fail", "{shown}");
    let media = &line["media"];
    assert_eq!(media["tones"][0]["detected"], false, "{shown}");
    assert!(media["stray_packets"].as_u64().unwrap() >= 50, "{shown}");
    assert_eq!(
        media["stray_first_source"],
        stray.from.to_string(),
        "{shown}"
    );
    assert!(media["packets_received"].as_u64().unwrap() >= 90, "{shown}");
    assert!(
        line["failures"].to_string().contains("stray RTP"),
        "{shown}"
    );
    drop(stray);
}

/// Against SIPp's built-in UAS echoing our RTP back (`-rtp_echo`): the echo of our 440 Hz is
/// the peer's audio, the 700 Hz a third process streams at our port is not.
#[test]
fn sipp_echo_is_heard_and_a_stray_tone_beside_it_is_not() {
    let port = free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let rtp = even_port();
    let rtp_range = format!("{rtp}-{rtp}");
    let stray = StrayStream::start(SocketAddr::from(([127, 0, 0, 1], rtp)), 700.0);
    let uri = format!("sip:echo@127.0.0.1:{port}");
    let call = |expect: &str| {
        run_sipcheck(
            [
                "call",
                &uri,
                "--rtp-ports",
                &rtp_range,
                "--play-tone",
                "440",
                "--expect-tone",
                expect,
                "--duration",
                "2s",
                "--json",
            ],
            &[],
        )
    };
    for (expect, heard) in [("700", false), ("440", true)] {
        let out = call(expect);
        let shown = format!("{}\n{}", describe_output(&out), sipp.log());
        assert_eq!(
            out.status.code(),
            Some(if heard { 0 } else { 1 }),
            "{shown}"
        );
        let v = json(&out, &shown);
        assert_eq!(v["media"]["tones"][0]["detected"], heard, "{shown}");
        assert!(
            v["media"]["packets_received"].as_u64().unwrap() >= 50,
            "{shown}"
        );
        assert!(
            v["media"]["stray_packets"].as_u64().unwrap() >= 50,
            "{shown}"
        );
        assert_eq!(
            v["media"]["stray_first_source"],
            stray.from.to_string(),
            "{shown}"
        );
    }
    drop(stray);
}
