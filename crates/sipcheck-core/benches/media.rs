//! The cost of one 20 ms frame (160 samples at 8 kHz) through the media path.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw, Codec};
use sipcheck_core::media::session::{MediaConfig, MediaSession, MAX_PACKET};
use sipcheck_core::media::signature::{SignatureCode, SignatureDecoder, SIGNATURE_LEVEL_DBFS};
use sipcheck_core::media::tone::{
    AudioSource, DetectorConfig, Tone, ToneDetector, ToneGenerator, ToneQuery,
};
use sipcheck_core::media::tone::{Playlist, PlaylistItem};
use sipcheck_core::media::vad::Vad;
use sipcheck_core::rtp::pacer::{Pacer, PacerConfig};
use sipcheck_core::rtp::packet::{write_packet, RtpHeader, RtpPacket};
use sipcheck_core::rtp::receiver::{Playout, ReceiverConfig, RtpReceiver};
use sipcheck_core::rtp::srtp::SrtpSession;
use sipcheck_core::sdp::crypto::{Crypto, CryptoSuite, MasterKey};

const FRAME: usize = 160;

/// One second of a 440 Hz tone at −20 dBFS, as 50 frames.
fn tone_frames() -> Vec<[i16; FRAME]> {
    let mut generator = ToneGenerator::new(&Tone::single(440.0, -20.0).unwrap());
    (0..50)
        .map(|_| {
            let mut frame = [0i16; FRAME];
            generator.fill(&mut frame);
            frame
        })
        .collect()
}

fn detector(freqs: &[f64]) -> ToneDetector {
    let mut det = ToneDetector::new(DetectorConfig::default()).unwrap();
    for &hz in freqs {
        det.watch(ToneQuery::single(hz).unwrap()).unwrap();
    }
    det
}

/// The benches' one clock read, as a base for the receiver's arrival times.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn g711(c: &mut Criterion) {
    let frames = tone_frames();
    let pcm = frames[7];
    let mut codes = [0u8; FRAME];
    let mut out = [0i16; FRAME];
    let mut group = c.benchmark_group("g711_frame_160");
    group.throughput(Throughput::Elements(FRAME as u64));
    group.bench_function("ulaw_encode", |b| {
        b.iter(|| encode_ulaw(black_box(&pcm), black_box(&mut codes)))
    });
    encode_ulaw(&pcm, &mut codes).unwrap();
    group.bench_function("ulaw_decode", |b| {
        b.iter(|| decode_ulaw(black_box(&codes), black_box(&mut out)))
    });
    group.bench_function("alaw_encode", |b| {
        b.iter(|| encode_alaw(black_box(&pcm), black_box(&mut codes)))
    });
    encode_alaw(&pcm, &mut codes).unwrap();
    group.bench_function("alaw_decode", |b| {
        b.iter(|| decode_alaw(black_box(&codes), black_box(&mut out)))
    });
    group.finish();
}

fn tone(c: &mut Criterion) {
    let frames = tone_frames();
    let mut group = c.benchmark_group("tone_frame_160");
    group.throughput(Throughput::Elements(FRAME as u64));
    let mut generator = ToneGenerator::new(&Tone::dual(697.0, 1209.0, -10.0).unwrap());
    let mut out = [0i16; FRAME];
    group.bench_function("generate_dual_tone", |b| {
        b.iter(|| generator.fill(black_box(&mut out)))
    });
    // Whole-hertz tones with a short period, played from a table.
    let mut generator = ToneGenerator::new(&Tone::single(1000.0, -12.0).unwrap());
    group.bench_function("generate_1000_hz", |b| {
        b.iter(|| generator.fill(black_box(&mut out)))
    });
    let mut generator = ToneGenerator::new(&Tone::dual(350.0, 440.0, -13.0).unwrap());
    group.bench_function("generate_dial_tone_350_440", |b| {
        b.iter(|| generator.fill(black_box(&mut out)))
    });
    let mut playlist = Playlist::looping(vec![PlaylistItem::Tone {
        tone: Tone::single(1000.0, -12.0).unwrap(),
        duration: Duration::from_secs(1),
    }]);
    group.bench_function("playlist_1000_hz", |b| {
        b.iter(|| playlist.fill_counted(black_box(&mut out)))
    });
    for freqs in [
        &[440.0][..],
        &[350.0, 440.0][..],
        &[697.0, 1209.0, 440.0][..],
    ] {
        let mut det = detector(freqs);
        let mut i = 0;
        let name = format!("goertzel_detect_{}_freq", freqs.len());
        group.bench_function(name, |b| {
            b.iter(|| {
                det.push(black_box(&frames[i % frames.len()]));
                i += 1;
            })
        });
    }
    // The audio-signature decoder: nine Goertzel bins, a block classified per frame.
    let mut playlist = SignatureCode::for_call(42, true)
        .playlist(SIGNATURE_LEVEL_DBFS)
        .unwrap();
    let signature: Vec<[i16; FRAME]> = (0..100)
        .map(|_| {
            let mut frame = [0i16; FRAME];
            playlist.fill(&mut frame);
            frame
        })
        .collect();
    let mut decoder = SignatureDecoder::new();
    let mut i = 0;
    group.bench_function("signature_decode", |b| {
        b.iter(|| {
            decoder.push(black_box(&signature[i % signature.len()]));
            i += 1;
        })
    });
    // Voice activity: a frame's level and 4th-order prediction gain, over the speech fixture.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/speech-8k.wav"
    ))
    .unwrap();
    let speech = sipcheck_core::media::wav::decode(&bytes).unwrap();
    let speech: Vec<&[i16]> = speech.chunks_exact(FRAME).collect();
    let mut vad = Vad::new();
    let mut i = 0;
    group.bench_function("vad_speech", |b| {
        b.iter(|| {
            vad.push(black_box(speech[i % speech.len()]));
            i += 1;
        })
    });
    group.finish();
}

fn receive_path(c: &mut Criterion) {
    let frames = tone_frames();
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .map(|(n, frame)| {
            let mut payload = [0u8; FRAME];
            Codec::Pcmu.encode(frame, &mut payload).unwrap();
            let header = RtpHeader {
                marker: n == 0,
                payload_type: 0,
                sequence: n as u16,
                timestamp: 160 * n as u32,
                ssrc: 0x1234_5678,
            };
            let mut buf = vec![0u8; 12 + FRAME];
            write_packet(&header, &payload, &mut buf).unwrap();
            buf
        })
        .collect();
    let mut group = c.benchmark_group("receive_frame_160");
    group.throughput(Throughput::Elements(FRAME as u64));

    // RTP parse + μ-law decode + Goertzel detection of one frequency.
    let mut det = detector(&[440.0]);
    let mut pcm = [0i16; FRAME];
    let mut i = 0;
    group.bench_function("parse_decode_detect", |b| {
        b.iter(|| {
            let packet = RtpPacket::parse(black_box(&packets[i % packets.len()])).unwrap();
            let codec = Codec::from_payload_type(packet.header.payload_type).unwrap();
            let n = codec.decode(packet.payload, &mut pcm).unwrap();
            det.push(&pcm[..n]);
            i += 1;
        })
    });

    // The same, with receive statistics and the jitter buffer in between.
    let t0 = base();
    let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
    let mut det = detector(&[440.0]);
    let mut buf = vec![0u8; 12 + FRAME];
    let mut n: u32 = 0;
    group.bench_function("parse_stats_jitterbuffer_decode_detect", |b| {
        b.iter(|| {
            // A fresh sequence number and timestamp each time, as on the wire.
            buf.copy_from_slice(&packets[n as usize % packets.len()]);
            buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&(160 * n).to_be_bytes());
            let now = t0 + Duration::from_millis(20) * n;
            let packet = RtpPacket::parse(black_box(&buf)).unwrap();
            rx.on_packet(now, &packet);
            match rx.pop_frame() {
                Playout::Frame(frame) => {
                    let n = Codec::Pcmu.decode(frame.payload, &mut pcm).unwrap();
                    det.push(&pcm[..n]);
                }
                Playout::Missing { .. } | Playout::Buffering => det.push(&[0; FRAME]),
            }
            n = n.wrapping_add(1);
        })
    });
    group.finish();
}

/// One tick of a stream: the pacer alone, then a whole media session's tick — the frame due
/// generated (tone), encoded and written as RTP, the peer's packet taken in and the playout
/// frame decoded and run through the detector.
fn pacer_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pacer_tick");
    group.throughput(Throughput::Elements(1));
    let t0 = base();
    let mut ids = IdGen::new(7);
    let mut pacer = Pacer::new(t0, PacerConfig::random(&mut ids)).unwrap();
    let mut k: u32 = 0;
    group.bench_function("pacer_poll_frame", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_millis(20) * k;
            black_box(pacer.poll_frame(black_box(now)));
            k = k.wrapping_add(1);
        })
    });

    // A whole session's tick, receiving a 440 Hz tone it expects (detected, then its gaps
    // tracked); then the same with the audio-signature decoder on as well.
    for (name, signature) in [
        ("session_send_and_receive_one_frame", false),
        ("session_send_and_receive_one_frame_signature_on", true),
    ] {
        let playlist = Playlist::looping(vec![PlaylistItem::Tone {
            tone: Tone::single(1000.0, -12.0).unwrap(),
            duration: Duration::from_secs(1),
        }]);
        let mut session =
            MediaSession::new(t0, MediaConfig::new(Codec::Pcmu), playlist, &mut ids).unwrap();
        session
            .expect_tone(ToneQuery::single(440.0).unwrap())
            .unwrap();
        if signature {
            session.listen_signature();
            session.set_signature_codes(SignatureCode::for_call(1, true), None);
        }
        let far = std::net::SocketAddr::from(([192, 0, 2, 1], 4000));
        session.set_peer_address(far);
        let frames = tone_frames();
        let mut out = [0u8; MAX_PACKET];
        let mut packet = vec![0u8; 12 + FRAME];
        let mut n: u32 = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let now = t0 + Duration::from_millis(20) * n;
                let mut payload = [0u8; FRAME];
                Codec::Pcmu
                    .encode(&frames[n as usize % frames.len()], &mut payload)
                    .unwrap();
                let header = RtpHeader {
                    marker: n == 0,
                    payload_type: 0,
                    sequence: n as u16,
                    timestamp: 160 * n,
                    ssrc: 0x1234_5678,
                };
                write_packet(&header, &payload, &mut packet).unwrap();
                session.handle_packet(now, far, black_box(&packet));
                while let Some(len) = session.poll_transmit(now, &mut out) {
                    black_box(&out[..len]);
                }
                n = n.wrapping_add(1);
            })
        });
    }
    group.finish();
}

/// SRTP (AES_CM_128_HMAC_SHA1_80 and _32): one 20 ms G.711 packet protected by the sender and
/// unprotected by the receiver (authentication and replay check included).
fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    for suite in CryptoSuite::ALL {
        let crypto = |byte: u8| Crypto {
            tag: 1,
            suite,
            key: MasterKey::from_bytes([byte; 30]),
        };
        let mut alice = SrtpSession::new(&crypto(1), &crypto(2)).unwrap();
        let mut bob = SrtpSession::new(&crypto(2), &crypto(1)).unwrap();
        let mut packet = vec![0u8; 12 + FRAME];
        let mut n: u32 = 0;
        let name = format!("protect_unprotect_20ms_pcmu_{}", suite.tag_len() * 8);
        group.bench_function(name, |b| {
            b.iter(|| {
                let header = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: n as u16,
                    timestamp: 160 * n,
                    ssrc: 0x1234_5678,
                };
                write_packet(&header, &[0xD5; FRAME], &mut packet).unwrap();
                let wire = alice.protect(black_box(&packet)).unwrap();
                black_box(bob.unprotect(&wire).unwrap());
                n = n.wrapping_add(1);
            })
        });
    }
    group.finish();
}

/// `expect: matches`: a 3 s prompt looked for in 13.3 s received (a `within` of 10 s plus the
/// prompt), once per step.
fn prompt_match(c: &mut Criterion) {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/speech-8k.wav"
    ))
    .unwrap();
    let speech = sipcheck_core::media::wav::decode(&bytes).unwrap();
    let prompt = speech[2400..26400].to_vec();
    let mut received = vec![0i16; 16_000];
    received.extend(speech.iter().map(|&s| s / 2));
    received.resize(10 * 8000 + prompt.len(), 0);
    let mut group = c.benchmark_group("media");
    group.sample_size(20);
    group.bench_function("prompt_match", |b| {
        b.iter(|| {
            black_box(sipcheck_core::media::matching::similarity(
                black_box(&prompt),
                black_box(&received),
            ))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    g711,
    tone,
    receive_path,
    pacer_tick,
    srtp,
    prompt_match
);
criterion_main!(benches);
