//! `expect: pesq` in virtual time: the capture asked of the stream, the score of what it
//! captured, and the failures when it is low, silent or never arrives.

use super::*;
use crate::media::g711::Codec as G711;
use crate::media::pesq::RECORD_SLACK_SAMPLES;
use crate::ua::script::WORK_WAIT;
use crate::ua::work::Work;

const REFERENCE: &str = "speech.wav";

fn speech() -> Arc<[i16]> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/speech-8k.wav"
    ))
    .unwrap();
    crate::media::wav::decode(&bytes).unwrap()
}

/// A callee that answers and expects the reference's speech, scored with `min`.
fn harness(reference: &Arc<[i16]>, min: f64) -> Harness {
    let steps = vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(
            11,
            Step::Expect(Expectation::Pesq {
                reference: REFERENCE.into(),
                min,
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

/// The capture the step asked for: its watch and length.
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

fn through_pcmu(samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| G711::Pcmu.decode_sample(G711::Pcmu.encode_sample(s)))
        .collect()
}

/// Feeds the captured `audio` after the reference's length: the score asked for.
fn score_asked(h: &mut Harness, watch: u32, audio: Vec<i16>) -> Work {
    h.after(Duration::from_secs(11));
    h.media(MediaEvent::Captured {
        watch,
        audio: audio.into(),
    });
    let mut cmds = h.commands();
    let Some(ScriptCommand::Work(work)) = cmds.pop() else {
        panic!("a score asked for: {cmds:?}")
    };
    assert!(cmds.is_empty(), "{cmds:?}");
    work
}

/// Feeds the captured `audio`, scores it (the step waits meanwhile, the work is not
/// done inline), hands the score back a little later and ends the call.
fn captured(mut h: Harness, watch: u32, audio: Vec<i16>) -> CallResult {
    let work = score_asked(&mut h, watch, audio);
    // The step waits for the score, bounded.
    assert_eq!(h.script.poll_timeout(), Some(h.now + WORK_WAIT));
    h.after(Duration::from_millis(120));
    assert!(h.commands().is_empty());
    assert!(!h.script.is_done());
    h.script.handle_work_done(h.now, work.run());
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.ended(CallEndReason::LocalBye, |_| {});
    h.result()
}

#[test]
fn a_score_that_never_comes_fails_the_step_after_its_bound_naming_it() {
    let reference = speech();
    let mut h = harness(&reference, 3.5);
    let (watch, _) = capture(&mut h);
    let work = score_asked(&mut h, watch, through_pcmu(&reference));
    let asked = h.now;
    h.jump();
    assert_eq!(h.now - asked, WORK_WAIT);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    // A result coming after that is dropped.
    h.script.handle_work_done(h.now, work.run());
    assert!(h.commands().is_empty());
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let f = &result.failures[0];
    assert_eq!((f.kind.clone(), f.line), (FailureKind::PesqLow, 11));
    assert_eq!(
        f.message,
        "PESQ against `speech.wav` not scored: no result within 30 s"
    );
    assert!(result.pesq.is_empty());
}

#[test]
fn a_bye_while_scoring_waits_for_the_score_and_ctrl_c_does_not() {
    let reference = speech();
    // The caller hangs up while the score is outstanding: the audio was recorded, the
    // score still judges the step.
    let mut h = harness(&reference, 3.5);
    let (watch, _) = capture(&mut h);
    let work = score_asked(&mut h, watch, through_pcmu(&reference));
    h.ended(CallEndReason::RemoteBye, |_| {});
    assert!(!h.script.is_done());
    h.after(Duration::from_millis(500));
    h.script.handle_work_done(h.now, work.run());
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.pesq.len(), 1);

    // Ctrl-C while scoring: the score is not waited for, the call is hung up.
    let mut h = harness(&reference, 3.5);
    let (watch, _) = capture(&mut h);
    let work = score_asked(&mut h, watch, through_pcmu(&reference));
    h.script.stop(h.now);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.script.handle_work_done(h.now, work.run());
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(!result.passed());
    assert!(result.pesq.is_empty());
    assert!(
        result
            .failures
            .iter()
            .all(|f| f.kind == FailureKind::Interrupted),
        "{:?}",
        result.failures
    );
}

#[test]
fn speech_received_through_g711_is_scored_and_passes_its_minimum() {
    let reference = speech();
    let mut h = harness(&reference, 3.5);
    let (watch, samples) = capture(&mut h);
    assert_eq!(samples, reference.len() + RECORD_SLACK_SAMPLES);
    // Late by four packets, and silence after it ends.
    let mut audio = vec![0i16; 640];
    audio.extend(through_pcmu(&reference));
    audio.resize(samples, 0);
    let result = captured(h, watch, audio);
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
    assert_eq!(result.pesq.len(), 1);
    assert!(result.pesq[0] > 3.5, "{:?}", result.pesq);
}

#[test]
fn damaged_speech_fails_pesq_low_naming_its_score_and_the_minimum() {
    let reference = speech();
    let mut h = harness(&reference, 3.5);
    let (watch, _) = capture(&mut h);
    let mut audio = through_pcmu(&reference);
    for (i, frame) in audio.chunks_mut(160).enumerate() {
        if (i * 37) % 100 < 20 {
            frame.fill(0);
        }
    }
    let result = captured(h, watch, audio);
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let f = &result.failures[0];
    assert_eq!((f.kind.clone(), f.line), (FailureKind::PesqLow, 11));
    assert!(
        f.message.starts_with("PESQ ") && f.message.ends_with("below the minimum 3.5"),
        "{}",
        f.message
    );
    assert_eq!(result.audio_verified, 0);
    assert!(result.pesq[0] < 3.0, "{:?}", result.pesq);
}

#[test]
fn silence_is_never_scored_and_no_audio_in_time_fails() {
    let reference = speech();
    let mut h = harness(&reference, 1.0);
    let (watch, samples) = capture(&mut h);
    let result = captured(h, watch, vec![0; samples]);
    assert_eq!(result.failures[0].kind, FailureKind::NoAudio);
    assert!(result.pesq.is_empty());

    // Nothing captured: the step gives up after `within` plus the recording's length.
    let mut h = harness(&reference, 1.0);
    let (_, samples) = capture(&mut h);
    h.jump();
    assert_eq!(
        h.now - h.t0,
        secs(2) + Duration::from_micros(samples as u64 * 125)
    );
    let cmds = h.commands();
    // The capture is dropped (its memory freed), then the call hung up.
    assert!(
        matches!(
            &cmds[..],
            [
                ScriptCommand::Media(MediaIntent::Unwatch(_)),
                ScriptCommand::Hangup
            ]
        ),
        "{cmds:?}"
    );
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::NoAudio);
    assert_eq!(
        result.failures[0].message,
        "no speech to score for PESQ: no audio received within 2.0 s"
    );
}

// --- `sipcheck call --expect-pesq` (`CallScript::probe`) ----------------------------------

/// A probe expecting `reference` with `min`, answered: the capture it asked for.
fn probe_answered(reference: &Arc<[i16]>, min: f64) -> (Harness, u32, Instant) {
    let mut h = Harness::probe(ProbeCall {
        pesq: Some(crate::ua::script::ProbePesq {
            reference: reference.clone(),
            name: REFERENCE.into(),
            min,
        }),
        duration: secs(12),
        ..super::plan()
    });
    h.place();
    h.after(secs(1));
    let answer = h.now;
    h.answered();
    let (watch, samples) = capture(&mut h);
    assert_eq!(samples, reference.len() + RECORD_SLACK_SAMPLES);
    (h, watch, answer)
}

/// The probe's call hung up at its duration and ended; its outcome.
fn probe_outcome(mut h: Harness, answer: Instant) -> crate::ua::script::ProbeOutcome {
    while h
        .script
        .poll_timeout()
        .is_some_and(|t| t <= answer + secs(12))
    {
        h.jump();
    }
    h.commands();
    h.hung_up(answer);
    let media = crate::media::session::MediaSession::new(
        h.t0,
        crate::media::session::MediaConfig::new(G711::Pcmu),
        crate::media::tone::Playlist::new(Vec::new()),
        &mut crate::ids::IdGen::new(3),
    )
    .unwrap()
    .report(h.now);
    let mut media = media;
    media.receive.received = 500;
    media.since_last_packet = Duration::ZERO;
    h.outcome(Some(media))
}

#[test]
fn a_probe_expecting_pesq_scores_its_recording_and_fails_under_the_minimum() {
    let reference = speech();
    for (min, raw, passes) in [(3.0, 3.9, true), (4.2, 3.9, false)] {
        let (mut h, watch, answer) = probe_answered(&reference, min);
        h.after(secs(10));
        h.media(MediaEvent::Captured {
            watch,
            audio: through_pcmu(&reference).into(),
        });
        let cmds = h.commands();
        let [ScriptCommand::Work(Work::Pesq { id, received, .. })] = &cmds[..] else {
            panic!("a score asked for: {cmds:?}")
        };
        assert_eq!(received.len(), reference.len());
        h.script.handle_work_done(
            h.now,
            WorkResult::Pesq {
                id: *id,
                score: Ok(crate::media::pesq::PesqScore { raw, mos_lqo: 4.0 }),
            },
        );
        let outcome = probe_outcome(h, answer);
        assert_eq!(outcome.pesq.map(|s| s.raw), Some(raw));
        if passes {
            assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        } else {
            assert_eq!(
                outcome.failures,
                ["PESQ 3.90 (MOS-LQO 4.00) against speech.wav, below the minimum 4.2"]
            );
        }
    }
}

#[test]
fn a_probe_whose_call_ends_before_its_recording_is_full_fails_never_passes() {
    let reference = speech();
    let (h, _, answer) = probe_answered(&reference, 3.0);
    let outcome = probe_outcome(h, answer);
    assert_eq!(outcome.pesq, None);
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0].starts_with("PESQ against speech.wav not scored: the call ended"),
        "{:?}",
        outcome.failures
    );
}

#[test]
fn a_probe_waits_for_its_score_after_the_call_ended_but_not_forever() {
    let reference = speech();
    let (mut h, watch, answer) = probe_answered(&reference, 3.0);
    h.after(secs(10));
    h.media(MediaEvent::Captured {
        watch,
        audio: through_pcmu(&reference).into(),
    });
    h.commands();
    // The call ends; the score is still outstanding: not done until it comes or times out.
    h.after(secs(2));
    h.commands();
    h.hung_up(answer);
    assert!(!h.script.is_done(), "done before its score");
    let asked = h.now - secs(2);
    h.jump();
    assert_eq!(h.now, asked + WORK_WAIT);
    assert!(h.script.is_done());
    let outcome = h
        .script
        .finish_probe(None, None, &|r: &CallEndReason| r.to_string())
        .unwrap();
    assert!(
        outcome
            .failures
            .iter()
            .any(|f| f == "PESQ against speech.wav not scored: no result within 30 s"),
        "{:?}",
        outcome.failures
    );
}
