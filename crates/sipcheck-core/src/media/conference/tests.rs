use super::*;
use crate::media::g711::Codec;
use crate::media::tone::{AudioSource, ToneGenerator};

/// A simulated conference mixer: each listener gets the sum of the other parties' tones (plus
/// its own when `echo`), each scaled by its gain at that moment, clipped to 16 bits, then
/// G.711-encoded and decoded; every `lose_every`-th 20 ms packet is lost (replaced with
/// silence). Returns each listener after `seconds`.
struct Mixer {
    parties: usize,
    codec: Codec,
    /// Who is left out of the mix (muted by the mixer, or never joined).
    left_out: Vec<usize>,
    /// Whose own audio is mixed back to them.
    echo: Vec<usize>,
    /// The gain of party `p` towards listener `l` at packet `n`, dB.
    gain_db: fn(p: usize, l: usize, n: u32) -> f64,
    lose_every: u32,
}

impl Mixer {
    fn new(parties: usize) -> Self {
        Self {
            parties,
            codec: Codec::Pcmu,
            left_out: Vec::new(),
            echo: Vec::new(),
            // Levels change as a mixer's gain control would: each party ramps between 0 and
            // −24 dB over time, at its own pace, and differs from listener to listener.
            gain_db: |p, l, n| {
                let phase = f64::from(n) / (20.0 + 7.0 * p as f64) + l as f64;
                -12.0 + 12.0 * phase.sin()
            },
            lose_every: 23,
        }
    }

    fn run(&self, seconds: u32) -> Vec<PartyListener> {
        let mut sources: Vec<ToneGenerator> = (0..self.parties)
            .map(|p| {
                let tone = Party::new(p).unwrap().tone(PARTY_LEVEL_DBFS).unwrap();
                ToneGenerator::new(&tone)
            })
            .collect();
        let mut listeners = vec![PartyListener::new(); self.parties];
        let mut frames = vec![[0i16; 160]; self.parties];
        let mut codes = [0u8; 160];
        let mut heard = [0i16; 160];
        for n in 0..seconds * 50 {
            for (source, frame) in sources.iter_mut().zip(&mut frames) {
                source.fill(frame);
            }
            for (l, listener) in listeners.iter_mut().enumerate() {
                let mut mix = [0f64; 160];
                for (p, frame) in frames.iter().enumerate() {
                    let in_mix = if p == l {
                        self.echo.contains(&l)
                    } else {
                        !self.left_out.contains(&p)
                    };
                    if !in_mix {
                        continue;
                    }
                    let gain = 10f64.powf((self.gain_db)(p, l, n) / 20.0);
                    for (m, &x) in mix.iter_mut().zip(frame) {
                        *m += f64::from(x) * gain;
                    }
                }
                let pcm: Vec<i16> = mix
                    .iter()
                    .map(|&m| m.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
                    .collect();
                self.codec.encode(&pcm, &mut codes).unwrap();
                if self.lose_every > 0 && (n + l as u32).is_multiple_of(self.lose_every) {
                    listener.push(&[0; 160]);
                    continue;
                }
                self.codec.decode(&codes, &mut heard).unwrap();
                listener.push(&heard);
            }
        }
        listeners
    }
}

fn parties(indices: &[usize]) -> Vec<Party> {
    indices.iter().map(|&i| Party::new(i).unwrap()).collect()
}

/// Everyone but `l`.
fn others(n: usize, l: usize) -> Vec<Party> {
    parties(&(0..n).filter(|&p| p != l).collect::<Vec<_>>())
}

#[test]
fn every_party_hears_all_the_others_and_not_itself_through_a_mixer_with_changing_levels() {
    for (n, codec) in [(3, Codec::Pcmu), (4, Codec::Pcma), (9, Codec::Pcmu)] {
        let mut mixer = Mixer::new(n);
        mixer.codec = codec;
        let listeners = mixer.run(2);
        for (l, listener) in listeners.iter().enumerate() {
            let own = Party::new(l);
            assert_eq!(
                listener.verdict(&others(n, l), own),
                PartiesVerdict::Verified,
                "{n} parties, {codec:?}: listener {l}"
            );
        }
    }
}

#[test]
fn a_party_left_out_of_the_mix_is_named_by_everyone_else() {
    let mut mixer = Mixer::new(4);
    mixer.left_out = vec![2];
    let listeners = mixer.run(3);
    for (l, listener) in listeners.iter().enumerate() {
        let verdict = listener.verdict(&others(4, l), Party::new(l));
        if l == 2 {
            // The muted party still hears the others.
            assert_eq!(verdict, PartiesVerdict::Verified);
        } else {
            assert_eq!(
                verdict,
                PartiesVerdict::NotHeard {
                    missing: parties(&[2])
                },
                "listener {l}"
            );
        }
    }
}

#[test]
fn own_audio_mixed_back_is_an_echo_even_when_the_others_are_all_heard() {
    let mut mixer = Mixer::new(3);
    mixer.echo = vec![1];
    let listeners = mixer.run(2);
    match listeners[1].verdict(&others(3, 1), Party::new(1)) {
        PartiesVerdict::Echo { level_dbfs } => {
            assert!((-45.0..=-19.0).contains(&level_dbfs), "{level_dbfs}");
        }
        other => panic!("expected an echo, got {other:?}"),
    }
    for l in [0, 2] {
        assert_eq!(
            listeners[l].verdict(&others(3, l), Party::new(l)),
            PartiesVerdict::Verified
        );
    }
    // A listen-only party (no tone of its own) is never judged an echo.
    assert_eq!(
        listeners[1].verdict(&others(3, 1), None),
        PartiesVerdict::Verified
    );
}

#[test]
fn a_mixer_that_clips_a_loud_sum_still_gives_each_party_its_own_bin() {
    // +14 dB on every party: three −6 dBFS tones summed clip hard.
    let mut mixer = Mixer::new(4);
    mixer.gain_db = |_, _, _| 14.0;
    let listeners = mixer.run(2);
    for (l, listener) in listeners.iter().enumerate() {
        assert_eq!(
            listener.verdict(&others(4, l), Party::new(l)),
            PartiesVerdict::Verified,
            "listener {l}"
        );
    }
}

#[test]
fn a_party_too_quiet_or_too_brief_is_not_heard() {
    // 30 dB down on party 0 puts it at −50 dBFS: at the limit. 35 dB down is under it.
    let mut mixer = Mixer::new(3);
    mixer.gain_db = |p, _, _| if p == 0 { -35.0 } else { 0.0 };
    let listeners = mixer.run(2);
    assert_eq!(
        listeners[1].verdict(&others(3, 1), Party::new(1)),
        PartiesVerdict::NotHeard {
            missing: parties(&[0])
        }
    );
    // 280 ms of party 0 (14 blocks) is one block short.
    let mut listener = PartyListener::new();
    let mut tone = ToneGenerator::new(&Party::new(0).unwrap().tone(-20.0).unwrap());
    let mut pcm = vec![0i16; 14 * 160];
    tone.fill(&mut pcm);
    listener.push(&pcm);
    listener.push(&[0; 320]);
    assert!(!listener.has_heard(Party::new(0).unwrap()));
    // One more block of tone after a single missing one continues the run: heard.
    let mut listener = PartyListener::new();
    listener.push(&pcm[..7 * 160]);
    listener.push(&[0; 160]);
    listener.push(&pcm[7 * 160..]);
    listener.push(&pcm[..160]);
    assert!(listener.has_heard(Party::new(0).unwrap()));
}

#[test]
fn noise_and_speech_like_audio_are_no_party() {
    // Loud white noise, and noise modulated at a syllable rate, for 5 s: no bin stands out.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut listener = PartyListener::new();
    for n in 0..250 {
        let envelope = 0.5 + 0.5 * (f64::from(n) * 0.8).sin();
        let block: Vec<i16> = (0..160)
            .map(|_| (rand() * 20_000.0 * envelope) as i16)
            .collect();
        listener.push(&block);
    }
    assert_eq!(listener.blocks(), 250);
    assert_eq!(
        listener.verdict(&parties(&[0, 1, 2, 3, 4, 5, 6, 7, 8]), None),
        PartiesVerdict::NotHeard {
            missing: parties(&[0, 1, 2, 3, 4, 5, 6, 7, 8])
        }
    );
}

#[test]
fn party_numbers_stop_at_the_plan() {
    assert_eq!(Party::new(8).map(Party::hz), Some(3100.0));
    assert_eq!(Party::new(MAX_PARTIES), None);
}

#[test]
fn signatures_summed_in_a_mix_do_not_all_decode_which_is_why_parties_play_tones() {
    use crate::media::signature::{SignatureCode, SignatureDecoder, SIGNATURE_LEVEL_DBFS};
    let codes: Vec<SignatureCode> = (0..3).map(|c| SignatureCode::for_call(c, false)).collect();
    for k in [2, 3] {
        let mut players: Vec<_> = codes[..k]
            .iter()
            .map(|c| c.playlist(SIGNATURE_LEVEL_DBFS).unwrap())
            .collect();
        let mut decoder = SignatureDecoder::new();
        let mut frame = [0i16; 160];
        let mut codes_out = [0u8; 160];
        let mut mix = [0i16; 160];
        for _ in 0..150 {
            let mut sum = [0i32; 160];
            for p in &mut players {
                p.fill(&mut frame);
                for (s, &x) in sum.iter_mut().zip(&frame) {
                    *s += i32::from(x);
                }
            }
            let pcm: Vec<i16> = sum
                .iter()
                .map(|&s| s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
                .collect();
            Codec::Pcmu.encode(&pcm, &mut codes_out).unwrap();
            Codec::Pcmu.decode(&codes_out, &mut mix).unwrap();
            decoder.push(&mix);
        }
        let heard: Vec<_> = decoder.heard().collect();
        assert!(
            codes[..k].iter().any(|c| !heard.contains(c)),
            "{k} signatures summed: all decoded ({heard:?})"
        );
    }
}

#[test]
fn a_pass_waits_while_our_own_tone_is_under_way_and_an_echo_is_decisive() {
    let own = Party::new(0).unwrap();
    let other = Party::new(1).unwrap();
    let tone = |p: Party| ToneGenerator::new(&p.tone(-20.0).unwrap());
    let (mut a, mut b) = (tone(own), tone(other));
    let mut listener = PartyListener::new();
    let mut frame_a = [0i16; 160];
    let mut frame_b = [0i16; 160];
    let mut mix = [0i16; 160];
    // The other party for 400 ms, then our own joins it.
    for n in 0..40 {
        a.fill(&mut frame_a);
        b.fill(&mut frame_b);
        for ((m, &x), &y) in mix.iter_mut().zip(&frame_a).zip(&frame_b) {
            *m = y + if n >= 20 { x } else { 0 };
        }
        listener.push(&mix);
        let decisive = listener.decisive(&[other], Some(own));
        match n {
            0..=13 => assert_eq!(decisive, None, "block {n}"),
            14..=19 => assert_eq!(decisive, Some(PartiesVerdict::Verified), "block {n}"),
            // Our own under way: no pass, and no echo until it is heard.
            20..=33 => assert_eq!(decisive, None, "block {n}"),
            _ => assert!(
                matches!(decisive, Some(PartiesVerdict::Echo { .. })),
                "block {n}: {decisive:?}"
            ),
        }
    }
}
