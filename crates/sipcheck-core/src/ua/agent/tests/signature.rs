//! Audio signatures between roles: the caller announces its call's number in the INVITE, the
//! callee plays the code after it, each judges what the other plays. The stand-in media
//! engines share a board of what every stream plays; judging decodes the real signature
//! audio (two seconds of it) from the stream the call is routed to.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::media::signature::{SignatureCode, SignatureDecoder, SignatureVerdict};
use crate::media::tone::{AudioSource, Playlist};

/// What every stream plays, by its RTP address, and how the "network" routes audio.
#[derive(Clone, Default)]
pub(super) struct Board(Rc<RefCell<BoardState>>);

#[derive(Default)]
struct BoardState {
    playing: HashMap<SocketAddr, Playlist>,
    /// Audio for the first address is taken from the second (a relay that crossed them).
    routes: HashMap<SocketAddr, SocketAddr>,
    /// Addresses whose audio never arrives.
    dropped: Vec<SocketAddr>,
    /// Streams in the order their first playlist came (to pick calls to cross).
    order: Vec<SocketAddr>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Board")
    }
}

impl Board {
    pub(super) fn play(&self, local: SocketAddr, playlist: Playlist) {
        let mut state = self.0.borrow_mut();
        if !state.order.contains(&local) {
            state.order.push(local);
        }
        state.playing.insert(local, playlist);
    }

    /// The audio of the stream at `local` never arrives anywhere.
    pub(super) fn drop_audio_of(&self, local: SocketAddr) {
        self.0.borrow_mut().dropped.push(local);
    }

    /// The verdict of the stream whose remote is `stream.1`: two seconds of what is played
    /// there (after routing), decoded.
    pub(super) fn judge(
        &self,
        stream: Option<(SocketAddr, Option<SocketAddr>)>,
        expected: SignatureCode,
        own: Option<SignatureCode>,
    ) -> SignatureVerdict {
        let state = self.0.borrow();
        let Some((_, Some(remote))) = stream else {
            return SignatureVerdict::NoAudio;
        };
        let source = state.routes.get(&remote).copied().unwrap_or(remote);
        let mut decoder = SignatureDecoder::new();
        if let (false, Some(playlist)) =
            (state.dropped.contains(&source), state.playing.get(&source))
        {
            let mut playlist = playlist.clone();
            let mut frame = [0i16; 160];
            for _ in 0..100 {
                playlist.fill(&mut frame);
                decoder.push(&frame);
            }
        }
        decoder.verdict(expected, own)
    }
}

const SIGNATURES: &str = r#"
name: agent-signatures
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 40 }
media:
  codecs: [PCMU]
roles:
  callee:
    accounts: 2000..2019
    listen: 127.0.0.1:5070
    steps:
      - answer
      - play: { signature: true }
      - expect: { signature: peer, within: 2s }
      - wait_for: bye
  caller:
    accounts: 2020..2039
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: callee, timeout: 5s }
      - play: { signature: true }
      - expect: { signature: peer, within: 2s }
      - hangup: { after: 3s }
"#;

fn twenty_calls(edit: impl FnOnce(&mut Run)) -> Run {
    let mut run = Run::new(SIGNATURES, LinkConfig::new(ms(10)));
    run.plan(20, ms(50));
    edit(&mut run);
    run.run(secs(300));
    assert_eq!(run.results("caller").len(), 20);
    assert_eq!(run.results("callee").len(), 20);
    run
}

fn board(run: &Run) -> Board {
    run.sim.nodes[0].audio.clone()
}

/// The RTP address of the caller's stream of call `n` (the caller role is the second: its
/// ports start at 41,002, two per call, in the order the calls start).
fn caller_stream(n: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().expect("literal"), 41_002 + 2 * n)
}

#[test]
fn twenty_calls_each_hear_their_own_peers_signature_both_ways() {
    let run = twenty_calls(|_| {});
    for role in ["caller", "callee"] {
        for r in run.results(role) {
            assert!(r.passed(), "{role}: {}", messages(r));
            assert_eq!((r.audio_checked, r.audio_verified), (1, 1), "{role}");
        }
    }
    // Every stream played its own code: 40 distinct streams.
    assert_eq!(board(&run).0.borrow().playing.len(), 40);
}

#[test]
fn two_calls_crossed_towards_their_callees_name_each_other() {
    let run = twenty_calls(|run| {
        let b = board(run);
        let mut state = b.0.borrow_mut();
        state.routes.insert(caller_stream(0), caller_stream(1));
        state.routes.insert(caller_stream(1), caller_stream(0));
    });
    let mut crossed: Vec<String> = run
        .results("callee")
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            assert_eq!(
                r.failures[0].kind,
                FailureKind::CrossedAudio,
                "{}",
                messages(r)
            );
            r.failures[0].message.clone()
        })
        .collect();
    crossed.sort();
    assert_eq!(
        crossed,
        [
            "crossed audio (caller → callee): heard call 0's caller signature instead of call 1's",
            "crossed audio (caller → callee): heard call 1's caller signature instead of call 0's",
        ]
    );
    // The callers heard their own callees: verified, whatever the end of their call.
    for r in run.results("caller") {
        assert_eq!(r.audio_verified, 1, "{}", messages(r));
    }
}

#[test]
fn audio_lost_from_one_caller_is_no_audio_caller_to_callee_and_only_there() {
    let run = twenty_calls(|run| {
        board(run).0.borrow_mut().dropped.push(caller_stream(0));
    });
    let failed: Vec<_> = run
        .results("callee")
        .iter()
        .filter(|r| !r.passed())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].failures[0].kind, FailureKind::NoAudio);
    assert_eq!(
        failed[0].failures[0].message,
        "no audio (caller → callee): call 0's signature not heard within 2.0 s"
    );
    for r in run.results("caller") {
        assert_eq!(r.audio_verified, 1, "{}", messages(r));
    }
}

#[test]
fn audio_lost_from_one_caller_paired_with_its_callee_is_one_way_audio_once() {
    use crate::stats::pairing::{Pairing, DEFAULT_HOLD};
    let run = twenty_calls(|run| {
        board(run).0.borrow_mut().dropped.push(caller_stream(0));
    });
    // Both roles' results, interleaved as they would reach the run's reporters.
    let now = run.sim.now();
    let mut pairing = Pairing::new(true, DEFAULT_HOLD);
    let mut counted = Vec::new();
    for (caller, callee) in run.results("caller").iter().zip(run.results("callee")) {
        counted.extend(pairing.push(now, callee.clone()));
        counted.extend(pairing.push(now, caller.clone()));
    }
    counted.extend(pairing.flush());
    assert_eq!(counted.len(), 40);
    // The deaf end names the direction; its caller was hung up on (the callee's script
    // ends the call when its expectation fails): one call, failed once.
    let deaf: Vec<_> = counted
        .iter()
        .filter(|r| {
            r.failures
                .iter()
                .any(|f| f.kind == FailureKind::OneWayAudio)
        })
        .collect();
    assert_eq!(deaf.len(), 1);
    assert_eq!(deaf[0].side, crate::stats::outcome::Side::Callee);
    assert!(
        deaf[0].failures[0]
            .message
            .starts_with("one-way audio: caller → callee carried nothing"),
        "{}",
        deaf[0].failures[0].message
    );
    let mut metrics = crate::stats::metrics::Metrics::new(
        std::time::SystemTime::UNIX_EPOCH,
        &crate::stats::metrics::RunInfo::default(),
    );
    for r in &counted {
        metrics.record_call(r);
    }
    let summary = metrics.finish(secs(1), false);
    assert_eq!(summary.calls.failed, 1);
    assert_eq!(summary.failures.get("one_way_audio"), Some(&1));
    assert_eq!(summary.failures.get("no_audio"), None);
}

/// Two roles that answer with signatures; the caller calls the first (`second`) and says who
/// must have answered.
const PARTIES: &str = r#"
name: agent-answered-by
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 6 }
media:
  codecs: [PCMU]
roles:
  second:
    accounts: 2000..2001
    listen: 127.0.0.1:5070
    steps:
      - answer
      - play: { signature: true }
      - wait_for: bye
  third:
    accounts: 2002..2003
    listen: 127.0.0.1:5090
    steps:
      - answer
      - play: { signature: true }
      - wait_for: bye
  caller:
    accounts: 2004..2005
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: second, timeout: 5s }
      - play: { signature: true }
      - expect: { answered_by: PARTY, within: 2s }
      - hangup: { after: 1s }
"#;

fn parties(party: &str) -> Run {
    let mut run = Run::new(&PARTIES.replace("PARTY", party), LinkConfig::new(ms(10)));
    assert_eq!(run.scenario.signature_parties(), ["second", "third"]);
    run.plan(2, ms(50));
    run.run(secs(300));
    assert_eq!(run.results("caller").len(), 2);
    run
}

#[test]
fn the_caller_names_the_role_that_answered_from_its_signature() {
    let run = parties("second");
    for r in run.results("caller") {
        assert!(r.passed(), "{}", messages(r));
        assert_eq!((r.audio_checked, r.audio_verified), (1, 1));
    }
    // Two calls, both answered by `second`: its streams and the callers' played.
    let b = board(&run);
    let playing = b.0.borrow().playing.len();
    assert_eq!(playing, 4);
    assert!(run.results("third").is_empty());
}

#[test]
fn another_role_answering_fails_wrong_party_naming_who_was_heard() {
    let run = parties("third");
    for (n, r) in run.results("caller").iter().enumerate() {
        assert_eq!(r.failures.len(), 1, "{}", messages(r));
        let f = &r.failures[0];
        assert_eq!(f.kind, FailureKind::WrongParty, "{}", messages(r));
        assert_eq!(f.kind.label(), "wrong_party");
        assert_eq!(
            f.message,
            format!(
                "wrong party: call {n} was answered by second (its signature heard), not by third"
            )
        );
    }
}
