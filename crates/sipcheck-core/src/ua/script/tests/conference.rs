//! `expect: { hears }` in virtual time, through the whole chain: each party's script plays its
//! party tone and sets its watch; a simulated conference mixer sums what the others play (minus
//! the listener's own, unless told to echo it), at levels that change over time, encodes the
//! sum as PCMU RTP with a packet lost now and then, and hands it to each party's real
//! [`MediaSession`], whose [`Watches`] report back to the script.

use super::*;
use crate::ids::IdGen;
use crate::media::conference::Party;
use crate::media::intent::Watches;
use crate::media::session::{MediaConfig, MediaSession, MAX_PACKET};
use crate::media::tone::{AudioSource, Playlist};
use crate::rtp::packet::{write_packet, RtpHeader};
use crate::scenario::model::ConferenceParty;
use crate::stats::outcome::FailureKind;

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn party(i: usize) -> ConferenceParty {
    ConferenceParty {
        role: NAMES[i].into(),
        party: Party::new(i).unwrap(),
    }
}

/// One party: its script, its media session and watches, what it plays.
struct Member {
    h: Harness,
    session: MediaSession,
    watches: Watches,
    playing: Option<Playlist>,
    hung_up: bool,
}

/// How the mixer treats the parties.
#[derive(Default)]
struct Mix {
    /// Parties the mixer leaves out (muted, or never joined).
    left_out: Vec<usize>,
    /// Parties whose own audio the mixer sends back to them.
    echo: Vec<usize>,
}

/// `n` parties, each `call`, `play: { party: true }`, `expect: { hears: [the others],
/// within: 4s }`, `hangup: { after: 1s }`, through a mixer that starts mixing 1 s after the
/// answer; the results in party order.
fn conference(n: usize, mix: &Mix) -> Vec<CallResult> {
    let t0 = base();
    let mut members: Vec<Member> = (0..n)
        .map(|i| {
            let others = (0..n).filter(|&p| p != i).map(party).collect();
            let steps = vec![
                at(10, call_step(secs(5))),
                at(11, Step::Play(vec![PlayItem::Party(party(i).party)])),
                at(
                    12,
                    Step::Expect(Expectation::Hears {
                        parties: others,
                        own: Some(party(i)),
                        within: secs(4),
                    }),
                ),
                at(13, Step::Hangup { after: secs(1) }),
            ];
            let mut h = Harness::caller(steps);
            h.place();
            h.answered();
            let mut session = MediaSession::new(
                t0,
                MediaConfig::new(crate::media::g711::Codec::Pcmu),
                Playlist::new(vec![]),
                &mut IdGen::new(3 + i as u64),
            )
            .unwrap();
            session.set_peer_address(SocketAddr::from(([192, 0, 2, 1], 4000)));
            Member {
                h,
                session,
                watches: Watches::default(),
                playing: None,
                hung_up: false,
            }
        })
        .collect();
    let mut out = [0u8; MAX_PACKET];
    for tick in 0..400u32 {
        let now = t0 + Duration::from_millis(20) * tick;
        // The scripts' commands: media intents to their streams, a hang-up ends the call.
        for m in &mut members {
            for cmd in m.h.commands() {
                match cmd {
                    ScriptCommand::Media(MediaIntent::Play(p)) => m.playing = Some(p),
                    ScriptCommand::Media(intent) => {
                        let mut events = Vec::new();
                        m.watches.apply(&mut m.session, intent, now, &mut events);
                        for e in events {
                            m.h.media(e);
                        }
                    }
                    ScriptCommand::Hangup => m.hung_up = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            if m.hung_up && !m.h.script.is_done() {
                m.h.ended(CallEndReason::LocalBye, |_| {});
            }
        }
        if members.iter().all(|m| m.h.script.is_done()) {
            break;
        }
        // What each party plays this tick.
        let frames: Vec<[i16; 160]> = members
            .iter_mut()
            .map(|m| {
                let mut f = [0i16; 160];
                if let Some(p) = &mut m.playing {
                    p.fill(&mut f);
                }
                f
            })
            .collect();
        for (l, m) in members.iter_mut().enumerate() {
            let mut sum = [0f64; 160];
            // The mixer joins the calls 1 s in.
            if tick >= 50 {
                for (p, frame) in frames.iter().enumerate() {
                    let in_mix = if p == l {
                        mix.echo.contains(&l)
                    } else {
                        !mix.left_out.contains(&p)
                    };
                    if !in_mix {
                        continue;
                    }
                    // Levels that change: each party swings between 0 and −20 dB.
                    let db = -10.0 + 10.0 * (f64::from(tick) / (15.0 + 4.0 * p as f64)).sin();
                    let gain = 10f64.powf(db / 20.0);
                    for (s, &x) in sum.iter_mut().zip(frame) {
                        *s += f64::from(x) * gain;
                    }
                }
            }
            let pcm: Vec<i16> = sum
                .iter()
                .map(|&s| s.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
                .collect();
            let mut payload = [0u8; 160];
            crate::media::g711::Codec::Pcmu
                .encode(&pcm, &mut payload)
                .unwrap();
            let header = RtpHeader {
                marker: tick == 0,
                payload_type: 0,
                sequence: tick as u16,
                timestamp: 160 * tick,
                ssrc: 0x0c0f,
            };
            let mut buf = [0u8; MAX_PACKET];
            let len = write_packet(&header, &payload, &mut buf).unwrap();
            if tick % 29 != 28 {
                m.session
                    .handle_packet(now, SocketAddr::from(([192, 0, 2, 1], 4000)), &buf[..len]);
            }
            while m.session.poll_transmit(now, &mut out).is_some() {}
            let mut events = Vec::new();
            m.watches.check(&m.session, now, &mut events);
            for e in events {
                m.h.media(e);
            }
        }
        for m in &mut members {
            if !m.h.script.is_done() {
                m.h.after(Duration::from_millis(20));
            }
        }
    }
    members.into_iter().map(|m| m.h.result()).collect()
}

#[test]
fn three_parties_through_a_mixer_each_hear_the_other_two_and_pass() {
    for result in conference(3, &Mix::default()) {
        assert!(result.passed(), "{:?}", result.failures);
        assert_eq!(result.audio_verified, 1);
    }
}

#[test]
fn a_party_left_out_of_the_mix_is_named_by_each_of_the_others_and_it_still_hears_them() {
    let results = conference(
        4,
        &Mix {
            left_out: vec![2],
            ..Mix::default()
        },
    );
    for (i, result) in results.iter().enumerate() {
        if i == 2 {
            assert!(
                result.passed(),
                "carol hears the others: {:?}",
                result.failures
            );
            continue;
        }
        let [f] = &result.failures[..] else {
            panic!("{:?}", result.failures)
        };
        assert_eq!(
            (f.step, f.line, f.kind.clone()),
            ("expect", 12, FailureKind::NoAudio)
        );
        let heard: Vec<&str> = (0..4)
            .filter(|&p| p != i && p != 2)
            .map(|p| NAMES[p])
            .collect();
        assert_eq!(
            f.message,
            format!(
                "conference: not_heard: [carol] within 4.0 s (heard: [{}])",
                heard.join(", ")
            )
        );
    }
}

#[test]
fn own_audio_mixed_back_fails_as_an_echo_naming_the_party() {
    let results = conference(
        3,
        &Mix {
            echo: vec![0],
            ..Mix::default()
        },
    );
    let [f] = &results[0].failures[..] else {
        panic!("{:?}", results[0].failures)
    };
    assert_eq!(f.kind, FailureKind::CrossedAudio);
    assert!(
        f.message
            .starts_with("conference: echo: alice heard its own party tone (1750 Hz) back, at -"),
        "{}",
        f.message
    );
    assert!(results[1].passed() && results[2].passed());
}
