//! `expect: matches` in virtual time: the capture asked of the stream (`within` plus the
//! reference), the comparison of what it captured, and the failures naming the similarity.

use super::*;
use crate::media::g711::Codec as G711;
use crate::ua::work::Work;

const REFERENCE: &str = "prompt.wav";

fn speech() -> Vec<i16> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/speech-8k.wav"
    ))
    .unwrap();
    crate::media::wav::decode(&bytes).unwrap().to_vec()
}

/// The first sentence of the fixture: the prompt.
fn prompt() -> Arc<[i16]> {
    speech()[2400..26400].into()
}

/// A caller whose call is answered, expecting the prompt within 2 s.
fn harness(reference: &Arc<[i16]>, min: f64) -> Harness {
    let steps = vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(
            12,
            Step::Expect(Expectation::Matches {
                reference: REFERENCE.into(),
                min_similarity: min,
                within: secs(2),
            }),
        ),
    ];
    let mut cfg = config(Side::Callee);
    cfg.wavs = Arc::new(HashMap::from([(REFERENCE.to_string(), reference.clone())]));
    let t0 = base();
    let mut script = CallScript::callee(t0, cfg, Arc::new(steps), "c1".into());
    script.start(t0);
    let mut h = Harness {
        script,
        t0,
        now: t0,
    };
    h.accept();
    h.answered();
    h
}

fn capture(h: &mut Harness) -> (u32, usize) {
    h.commands()
        .iter()
        .find_map(|c| match c {
            ScriptCommand::Media(MediaIntent::Capture { watch, samples }) => {
                Some((*watch, *samples))
            }
            _ => None,
        })
        .expect("a capture")
}

fn through(codec: G711, samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| codec.decode_sample(codec.encode_sample(s)))
        .collect()
}

/// `audio` played `delay` samples late at `db`, through `codec`, cut or padded to `len`.
fn received(audio: &[i16], delay: usize, db: f64, codec: G711, len: usize) -> Vec<i16> {
    let g = 10f64.powf(db / 20.0);
    let mut out = vec![0i16; delay];
    out.extend(audio.iter().map(|&s| (f64::from(s) * g) as i16));
    out.resize(len, 0);
    through(codec, &out)
}

/// Feeds the captured audio, runs the comparison it asks for (the real one), ends the call.
fn judged(mut h: Harness, watch: u32, audio: Vec<i16>) -> CallResult {
    h.after(Duration::from_secs(5));
    h.media(MediaEvent::Captured {
        watch,
        audio: audio.into(),
    });
    let mut cmds = h.commands();
    let Some(ScriptCommand::Work(work)) = cmds.pop() else {
        panic!("a comparison asked for: {cmds:?}")
    };
    assert!(matches!(work, Work::Match { .. }), "{work:?}");
    // The step waits for the result: it is not computed inline.
    assert!(!h.script.is_done());
    h.after(Duration::from_millis(40));
    h.script.handle_work_done(h.now, work.run());
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.ended(CallEndReason::LocalBye, |_| {});
    h.result()
}

#[test]
fn the_prompt_late_quieter_and_through_either_g711_law_matches() {
    let prompt = prompt();
    for (codec, delay, db) in [(G711::Pcmu, 7_777, -12.0), (G711::Pcma, 15_000, 6.0)] {
        let mut h = harness(&prompt, 0.8);
        let (watch, samples) = capture(&mut h);
        // `within` (2 s) plus the reference.
        assert_eq!(samples, 16_000 + prompt.len());
        let result = judged(h, watch, received(&prompt, delay, db, codec, samples));
        assert!(result.passed(), "{codec}: {:?}", result.failures);
        assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
    }
}

#[test]
fn another_prompt_fails_prompt_mismatch_naming_its_similarity_and_the_minimum() {
    let prompt = prompt();
    let other = &speech()[40_000..];
    let mut h = harness(&prompt, 0.8);
    let (watch, samples) = capture(&mut h);
    let result = judged(h, watch, received(other, 0, 0.0, G711::Pcmu, samples));
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let f = &result.failures[0];
    assert_eq!((f.kind.clone(), f.line), (FailureKind::PromptMismatch, 12));
    assert_eq!(f.kind.label(), "prompt_mismatch");
    // "prompt mismatch: `prompt.wav` not heard: similarity 0.2x (best at 1.23 s) < 0.8"
    let similarity: f64 = f
        .message
        .split("similarity ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", f.message));
    assert!(similarity < 0.5, "{}", f.message);
    assert!(
        f.message
            .starts_with("prompt mismatch: `prompt.wav` not heard: similarity ")
            && f.message.ends_with(" < 0.8"),
        "{}",
        f.message
    );
    assert_eq!(result.audio_verified, 0);
}

#[test]
fn silence_fails_and_nothing_captured_in_time_fails_no_audio() {
    let prompt = prompt();
    let mut h = harness(&prompt, 0.8);
    let (watch, samples) = capture(&mut h);
    let result = judged(h, watch, through(G711::Pcma, &vec![0; samples]));
    let f = &result.failures[0];
    assert_eq!(f.kind, FailureKind::PromptMismatch);
    assert!(f.message.contains("similarity 0.00"), "{}", f.message);

    // No audio: the step gives up after `within` plus the recording's length.
    let mut h = harness(&prompt, 0.8);
    let (_, samples) = capture(&mut h);
    h.jump();
    assert_eq!(
        h.now - h.t0,
        secs(2) + Duration::from_micros(samples as u64 * 125)
    );
    h.commands();
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::NoAudio);
    assert!(
        result.failures[0]
            .message
            .starts_with("no audio to compare with `prompt.wav`: none received within 2.0 s"),
        "{}",
        result.failures[0].message
    );
}

#[test]
fn a_stricter_minimum_fails_audio_that_a_looser_one_passes() {
    // The prompt with a fifth of its frames lost (zeroed): a lower similarity.
    let prompt = prompt();
    let mut damaged = received(&prompt, 800, 0.0, G711::Pcmu, 16_000 + prompt.len());
    for (i, frame) in damaged.chunks_mut(160).enumerate() {
        if (i * 37) % 100 < 20 {
            frame.fill(0);
        }
    }
    let mut h = harness(&prompt, 0.5);
    let (watch, _) = capture(&mut h);
    assert!(judged(h, watch, damaged.clone()).passed());
    let mut h = harness(&prompt, 0.99);
    let (watch, _) = capture(&mut h);
    let result = judged(h, watch, damaged);
    assert_eq!(result.failures[0].kind, FailureKind::PromptMismatch);
}

#[test]
fn a_recorded_step_records_from_when_it_listens_until_it_is_judged() {
    let prompt = prompt();
    let mut steps = vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(
            12,
            Step::Expect(Expectation::Matches {
                reference: REFERENCE.into(),
                min_similarity: 0.8,
                within: secs(2),
            }),
        ),
    ];
    steps[1].record = true;
    let mut cfg = config(Side::Callee);
    cfg.wavs = Arc::new(HashMap::from([(REFERENCE.to_string(), prompt.clone())]));
    let t0 = base();
    let mut script = CallScript::callee(t0, cfg, Arc::new(steps), "c1".into());
    script.start(t0);
    let mut h = Harness {
        script,
        t0,
        now: t0,
    };
    h.accept();
    h.answered();
    let cmds = h.commands();
    let record = cmds
        .iter()
        .position(|c| matches!(c, ScriptCommand::Media(MediaIntent::Record { line: 12 })))
        .unwrap_or_else(|| panic!("{cmds:?}"));
    let capture = cmds
        .iter()
        .position(|c| matches!(c, ScriptCommand::Media(MediaIntent::Capture { .. })))
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert!(record < capture, "{cmds:?}");
    let ScriptCommand::Media(MediaIntent::Capture { watch, samples }) = &cmds[capture] else {
        unreachable!()
    };
    let (watch, samples) = (*watch, *samples);
    h.after(Duration::from_secs(5));
    h.media(MediaEvent::Captured {
        watch,
        audio: received(&prompt, 0, 0.0, G711::Pcmu, samples).into(),
    });
    let Some(ScriptCommand::Work(work)) = h.commands().pop() else {
        panic!("a comparison")
    };
    h.script.handle_work_done(h.now, work.run());
    // The step is over: its recording ends before the call is hung up.
    let cmds = h.commands();
    assert!(
        matches!(
            &cmds[..],
            [
                ScriptCommand::Media(MediaIntent::EndRecord),
                ScriptCommand::Hangup
            ]
        ),
        "{cmds:?}"
    );
}

#[test]
fn a_step_that_is_not_recorded_asks_for_no_recording() {
    let prompt = prompt();
    let mut h = harness(&prompt, 0.8);
    let cmds = h.commands();
    assert!(
        !cmds.iter().any(|c| matches!(
            c,
            ScriptCommand::Media(MediaIntent::Record { .. } | MediaIntent::EndRecord)
        )),
        "{cmds:?}"
    );
}
