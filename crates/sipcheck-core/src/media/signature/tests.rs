use super::*;
use crate::media::g711::Codec;
use crate::media::tone::{AudioSource, ToneGenerator};
use std::time::Instant;

const DTMF_HZ: [f64; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
const PROGRESS_HZ: [f64; 8] = [350.0, 400.0, 425.0, 440.0, 450.0, 480.0, 620.0, 1000.0];

/// A small deterministic generator (xorshift64*), for loss patterns and noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `frames` 20 ms frames of `source`, through G.711 µ-law and back.
fn g711(source: &mut dyn AudioSource, frames: usize) -> Vec<[i16; 160]> {
    (0..frames)
        .map(|_| {
            let mut pcm = [0i16; 160];
            source.fill(&mut pcm);
            let mut codes = [0u8; 160];
            Codec::Pcmu.encode(&pcm, &mut codes).unwrap();
            Codec::Pcmu.decode(&codes, &mut pcm).unwrap();
            pcm
        })
        .collect()
}

/// The decoder after `frames` of audio, a frame in `lost` concealed with silence.
fn decode(frames: &[[i16; 160]], lost: impl Fn(usize) -> bool) -> SignatureDecoder {
    let mut decoder = SignatureDecoder::new();
    for (i, frame) in frames.iter().enumerate() {
        if lost(i) {
            decoder.push(&[0; 160]);
        } else {
            decoder.push(frame);
        }
    }
    decoder
}

/// `frames` frames of `code` played from the start, skipping `skip` samples first (the
/// stream joined late).
fn signature(code: SignatureCode, skip: usize, frames: usize) -> Vec<[i16; 160]> {
    let mut playlist = code.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
    let mut sink = vec![0i16; skip];
    playlist.fill(&mut sink);
    g711(&mut playlist, frames)
}

fn code(n: u32) -> SignatureCode {
    SignatureCode::new(n).unwrap()
}

#[test]
fn plan_has_over_forty_thousand_distinct_codes_each_spelled_once() {
    assert_eq!(SignatureCode::CAPACITY, 40_460);
    const { assert!(SignatureCode::CAPACITY >= 2 * 10_000) };
    assert_eq!(SignatureCode::new(SignatureCode::CAPACITY), None);
    let mut seen = std::collections::HashSet::new();
    for n in 0..SignatureCode::CAPACITY {
        let symbols = code(n).symbols();
        // No sync inside a code, no symbol equal to the one before it.
        assert!(symbols.iter().all(|&s| s != SYNC), "{n}: {symbols:?}");
        assert!(symbols[0] != symbols[1] && symbols[1] != symbols[2], "{n}");
        assert_eq!(SignatureCode::from_symbols(symbols), Some(code(n)));
        assert!(seen.insert(symbols), "{n} spelled like another code");
    }
    assert_eq!(seen.len(), 40_460);
    // Every pair index round-trips through its frequencies.
    for p in 0..36u8 {
        let (a, b) = pair(p);
        assert!(a < b);
        assert_eq!(pair_index(a, b), p);
    }
    assert_eq!(pair(SYNC), (0, 8));
}

#[test]
fn calls_and_directions_get_distinct_codes_both_ends_can_name() {
    let caller = SignatureCode::for_call(17, false);
    let callee = SignatureCode::for_call(17, true);
    assert_ne!(caller, callee);
    assert_eq!(caller.call(), (17, false));
    assert_eq!(callee.call(), (17, true));
    let codes: std::collections::HashSet<_> = (0..10_000u64)
        .flat_map(|c| {
            [
                SignatureCode::for_call(c, false),
                SignatureCode::for_call(c, true),
            ]
        })
        .collect();
    assert_eq!(codes.len(), 20_000);
}

#[test]
fn plan_frequencies_keep_clear_of_dtmf_call_progress_and_their_own_products() {
    for (i, &f) in SIGNATURE_HZ.iter().enumerate() {
        assert!((300.0..=3400.0).contains(&f), "{f} outside the G.711 band");
        assert!(f > 1633.0 * 1.035, "{f} in the DTMF range");
        assert_eq!(f % 50.0, 0.0, "{f} is not centred on a 20 ms Goertzel bin");
        for &d in &DTMF_HZ {
            assert!((f - d).abs() >= (0.035 * d).max(40.0), "{f} near DTMF {d}");
            assert!((f - 2.0 * d).abs() >= 30.0, "{f} near 2×{d}");
        }
        for &p in &PROGRESS_HZ {
            assert!((f - p).abs() >= 40.0, "{f} near {p}");
            assert!((f - 2.0 * p).abs() >= 30.0, "{f} near 2×{p}");
            assert!((f - 3.0 * p).abs() >= 30.0, "{f} near 3×{p}");
        }
        if let Some(&next) = SIGNATURE_HZ.get(i + 1) {
            assert!(next - f >= 100.0, "{f} and {next} closer than 100 Hz");
        }
    }
    // Harmonics and second- and third-order intermodulation of the set itself.
    let mut products = Vec::new();
    for &a in &SIGNATURE_HZ {
        products.extend([2.0 * a, 3.0 * a]);
        for &b in &SIGNATURE_HZ {
            if a < b {
                products.extend([a + b, b - a]);
            }
            if a != b {
                products.extend([2.0 * a - b, 2.0 * a + b]);
            }
        }
    }
    for &f in &SIGNATURE_HZ {
        for &p in &products {
            assert!(
                (f - p).abs() >= 25.0,
                "{f} within 25 Hz of a product at {p}"
            );
        }
    }
}

#[test]
fn every_code_decodes_through_g711() {
    // One frame plays 500 ms; 1.5 s holds three repetitions.
    for n in (0..SignatureCode::CAPACITY)
        .step_by(97)
        .chain([SignatureCode::CAPACITY - 1])
    {
        let decoder = decode(&signature(code(n), 0, 75), |_| false);
        let heard: Vec<_> = decoder.heard().collect();
        assert_eq!(heard, vec![code(n)], "code {n}: {:?}", decoder.decoded());
        assert_eq!(decoder.verdict(code(n), None), SignatureVerdict::Verified);
    }
}

#[test]
fn every_data_symbol_decodes_at_every_offset_within_a_frame() {
    // Codes covering all 35 data symbols in each position, joining at odd offsets.
    for d in 0..35u32 {
        let n = d * 34 * 34 + (d % 34) * 34 + (d * 7) % 34;
        for skip in [0, 37, 80, 159, 555, 1601] {
            let decoder = decode(&signature(code(n), skip, 75), |_| false);
            assert!(
                decoder.has_heard(code(n)),
                "{n} at +{skip}: {:?}",
                decoder.decoded()
            );
            assert_eq!(decoder.heard().count(), 1);
        }
    }
}

#[test]
fn a_stream_that_loses_its_first_symbols_decodes_the_next_repetition() {
    // Joins 150 ms in: the first sync and symbol are gone.
    let decoder = decode(&signature(code(12_345), 1200, 75), |_| false);
    assert_eq!(
        decoder.verdict(code(12_345), None),
        SignatureVerdict::Verified
    );
    // And a first symbol lost to the network (concealed with silence).
    let decoder = decode(&signature(code(12_345), 0, 75), |i| i < 5);
    assert_eq!(
        decoder.verdict(code(12_345), None),
        SignatureVerdict::Verified
    );
}

#[test]
fn five_percent_random_frame_loss_still_decodes() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed * 0x9E37_79B9);
        let lost: Vec<bool> = (0..150).map(|_| rng.unit() < 0.05).collect();
        let n = (seed as u32 * 2011) % SignatureCode::CAPACITY;
        let decoder = decode(&signature(code(n), 0, 150), |i| lost[i]);
        assert_eq!(
            decoder.verdict(code(n), None),
            SignatureVerdict::Verified,
            "seed {seed}: {:?}",
            decoder.decoded()
        );
    }
}

#[test]
fn another_calls_code_is_crossed_audio_and_named() {
    let ours = SignatureCode::for_call(3, true);
    let theirs = SignatureCode::for_call(8, true);
    let decoder = decode(&signature(theirs, 0, 60), |_| false);
    assert_eq!(
        decoder.verdict(ours, None),
        SignatureVerdict::Crossed {
            heard: theirs,
            also_expected: false
        }
    );
    assert_eq!(theirs.call(), (8, true));
    // Ours for a while, then theirs (streams swapped mid-call): crossed, both heard.
    let mut frames = signature(ours, 0, 60);
    frames.extend(signature(theirs, 0, 60));
    let decoder = decode(&frames, |_| false);
    assert_eq!(
        decoder.verdict(ours, None),
        SignatureVerdict::Crossed {
            heard: theirs,
            also_expected: true
        }
    );
}

#[test]
fn two_codes_mixed_never_verify_the_quieter_one() {
    let ours = code(100);
    let theirs = code(30_000);
    let mut a = ours.playlist(SIGNATURE_LEVEL_DBFS - 14.0).unwrap();
    let mut b = theirs.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
    struct Mix<'a>(&'a mut Playlist, &'a mut Playlist);
    impl AudioSource for Mix<'_> {
        fn fill(&mut self, out: &mut [i16]) {
            let mut other = vec![0i16; out.len()];
            self.0.fill(out);
            self.1.fill(&mut other);
            for (o, x) in out.iter_mut().zip(other) {
                *o = o.saturating_add(x);
            }
        }
    }
    // Their code dominates: crossed, naming theirs; ours is not heard under it.
    let frames = g711(&mut Mix(&mut b, &mut a), 60);
    let verdict = decode(&frames, |_| false).verdict(ours, None);
    assert_eq!(
        verdict,
        SignatureVerdict::Crossed {
            heard: theirs,
            also_expected: false
        }
    );
    // Equal levels: never a pass.
    let mut a = ours.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
    let mut b = theirs.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
    let frames = g711(&mut Mix(&mut a, &mut b), 60);
    assert!(!decode(&frames, |_| false).verdict(ours, None).passed());
}

#[test]
fn silence_is_no_audio() {
    let decoder = decode(&vec![[0i16; 160]; 100], |_| false);
    assert_eq!(decoder.verdict(code(5), None), SignatureVerdict::NoAudio);
    assert_eq!(decoder.blocks(), 100);
    assert_eq!(decoder.loud_blocks(), 0);
}

#[test]
fn speech_like_noise_dtmf_and_call_progress_tones_are_wrong_audio_never_a_code() {
    // Noise shaped like speech: white noise through a low-pass, with a syllabic envelope.
    struct Babble(Rng, f64, u64);
    impl AudioSource for Babble {
        fn fill(&mut self, out: &mut [i16]) {
            for o in out {
                self.2 += 1;
                let white = self.0.unit() * 2.0 - 1.0;
                self.1 = 0.8 * self.1 + 0.2 * white;
                let envelope =
                    0.5 + 0.5 * (self.2 as f64 / 8000.0 * 2.0 * std::f64::consts::PI * 4.0).sin();
                *o = (self.1 * envelope * 20_000.0) as i16;
            }
        }
    }
    let mut sources: Vec<(String, Box<dyn AudioSource>)> =
        vec![("babble".into(), Box::new(Babble(Rng(7), 0.0, 0)))];
    for (lo, hi) in [(697.0, 1209.0), (941.0, 1633.0), (852.0, 1477.0)] {
        sources.push((
            format!("DTMF {lo}+{hi}"),
            Box::new(ToneGenerator::new(&Tone::dual(lo, hi, -10.0).unwrap())),
        ));
    }
    for hz in PROGRESS_HZ {
        sources.push((
            format!("{hz} Hz"),
            Box::new(ToneGenerator::new(&Tone::single(hz, -10.0).unwrap())),
        ));
    }
    sources.push((
        "dial tone 350+440".into(),
        Box::new(ToneGenerator::new(
            &Tone::dual(350.0, 440.0, -10.0).unwrap(),
        )),
    ));
    // A steady dual tone on two plan frequencies is not a code either (no sync, no sequence).
    sources.push((
        "steady plan pair".into(),
        Box::new(ToneGenerator::new(
            &Tone::dual(1750.0, 3100.0, -16.0).unwrap(),
        )),
    ));
    for (name, mut source) in sources {
        let decoder = decode(&g711(source.as_mut(), 150), |_| false);
        assert!(
            decoder.decoded().is_empty(),
            "{name}: {:?}",
            decoder.decoded()
        );
        assert!(
            matches!(
                decoder.verdict(code(1), None),
                SignatureVerdict::WrongAudio { .. }
            ),
            "{name}"
        );
    }
}

#[test]
fn its_own_code_heard_back_is_an_echo_unless_its_own_is_expected() {
    let own = SignatureCode::for_call(0, false);
    let peer = SignatureCode::for_call(0, true);
    let decoder = decode(&signature(own, 0, 60), |_| false);
    assert_eq!(
        decoder.verdict(peer, Some(own)),
        SignatureVerdict::Echo { own }
    );
    // Against an echo peer its own code is the one expected.
    assert_eq!(decoder.verdict(own, Some(own)), SignatureVerdict::Verified);
}

#[test]
fn one_way_names_the_direction_that_carried_nothing() {
    use SignatureVerdict::{NoAudio, Verified};
    assert_eq!(
        one_way(&Verified, &NoAudio),
        Some(AudioDirection::CallerToCallee)
    );
    assert_eq!(
        one_way(&NoAudio, &Verified),
        Some(AudioDirection::CalleeToCaller)
    );
    assert_eq!(one_way(&Verified, &Verified), None);
    assert_eq!(one_way(&NoAudio, &NoAudio), None);
    assert_eq!(
        AudioDirection::CallerToCallee.to_string(),
        "caller → callee"
    );
}

#[test]
fn decoding_does_not_depend_on_how_the_stream_is_chunked() {
    let frames = signature(code(4242), 0, 60);
    let flat: Vec<i16> = frames.iter().flatten().copied().collect();
    let mut odd = SignatureDecoder::new();
    for chunk in flat.chunks(37) {
        odd.push(chunk);
    }
    let whole = decode(&frames, |_| false);
    assert_eq!(odd.decoded(), whole.decoded());
    assert!(odd.has_heard(code(4242)));
}

#[test]
fn a_call_whose_one_end_heard_nothing_while_the_other_heard_all_is_one_way_audio() {
    use crate::stats::fixture;
    use crate::stats::outcome::{name_one_way, Failure, FailureKind};
    let no_audio = |message: &str| Failure {
        step: "expect",
        line: 21,
        col: 9,
        kind: FailureKind::NoAudio,
        message: message.into(),
    };
    let mut caller = fixture::caller(0);
    let mut callee = fixture::callee(0);
    caller.audio_checked = 1;
    caller.audio_verified = 1;
    callee.audio_checked = 1;
    callee.failures.push(no_audio(
        "no audio (caller → callee): call 0's signature not heard within 3.0 s",
    ));
    assert!(name_one_way(&mut caller, &mut callee));
    assert!(caller.passed());
    assert_eq!(callee.failures[0].kind, FailureKind::OneWayAudio);
    assert_eq!(
        callee.failures[0].message,
        "one-way audio: caller → callee carried nothing (no audio (caller → callee): call 0's signature not heard within 3.0 s)"
    );
    assert_eq!(FailureKind::OneWayAudio.label(), "one_way_audio");
    // Nothing heard either way is no audio on both ends, not one-way.
    let mut caller = fixture::caller(1);
    let mut callee = fixture::callee(1);
    for r in [&mut caller, &mut callee] {
        r.audio_checked = 1;
        r.failures.push(no_audio("no audio"));
    }
    assert!(!name_one_way(&mut caller, &mut callee));
    assert_eq!(callee.failures[0].kind, FailureKind::NoAudio);
    assert_eq!(caller.failures[0].kind, FailureKind::NoAudio);
}

/// The decoder's pass onsets for `code` played from `t0`, heard `delay` later, for `secs`.
fn onsets_heard(code: SignatureCode, t0: Instant, delay: Duration, secs: u64) -> Vec<Instant> {
    let frames = signature(code, 0, usize::try_from(secs * 50).unwrap());
    let mut decoder = SignatureDecoder::new();
    for (i, frame) in frames.iter().enumerate() {
        let at = t0 + delay + Duration::from_millis(20 * i as u64);
        decoder.push_at(frame, Some(at));
    }
    decoder.onsets().map(|(_, at)| at).collect()
}

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

#[test]
fn a_frame_names_its_place_in_the_loop_so_a_delay_beyond_a_frame_is_not_aliased() {
    let t0 = t0();
    let sent = [t0];
    for ms in [0, 100, 380, 500, 1200, 4321] {
        let delay = Duration::from_millis(ms);
        let onsets = onsets_heard(code(9_876), t0, delay, 6);
        assert!(onsets.len() >= 8, "{ms} ms: {onsets:?}");
        for at in &onsets {
            let off = at.saturating_duration_since(t0 + delay)
                + (t0 + delay).saturating_duration_since(*at);
            assert!(off <= BLOCK_DURATION, "{ms} ms: {at:?}");
        }
        let measured = mouth_to_ear(&sent, &onsets).unwrap();
        assert!(
            measured.abs_diff(delay) <= BLOCK_DURATION,
            "{ms} ms measured as {measured:?}"
        );
    }
}

#[test]
fn a_frame_index_never_spells_the_code_last_symbol_and_reads_back() {
    for n in [0, 1, 777, SignatureCode::CAPACITY - 1] {
        let c = code(n);
        let last = c.symbols()[CODE_SYMBOLS - 1];
        for index in 0..LOOP_FRAMES {
            let symbol = c.index_symbol(index);
            assert_ne!(symbol, last);
            assert_ne!(symbol, SYNC);
            assert_eq!(c.frame_index(symbol), Some(index));
        }
        assert_eq!(c.frame_index(last), None);
    }
}

#[test]
fn a_delay_beyond_the_loop_pairs_with_nothing_rather_than_the_wrong_pass() {
    let t0 = t0();
    // The pass sent at t0 heard 17 s later: no pass of the last 17 s matches it.
    assert_eq!(mouth_to_ear(&[t0], &[t0 + LOOP]), None);
    // Two passes sent: the onset pairs with the later one it follows.
    let d = Duration::from_millis(700);
    assert_eq!(mouth_to_ear(&[t0, t0 + LOOP], &[t0 + LOOP + d]), Some(d));
}
