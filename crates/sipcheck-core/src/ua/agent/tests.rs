//! The role agent in virtual time: scenarios loaded from YAML, one [`Agent`] per role, over
//! the core's simulated network ([`crate::sim`]), with loss, interceptors and blackholes.
//!
//! Media here is a test-side stand-in for the media engine, held to the engine's contract
//! with the agent ([`MediaCommand`] in, replies out): it opens a "socket" by handing back a
//! port and has no report to give. It checks the agent's bookkeeping, not media interop.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::*;
use crate::ids::IdGen;
use crate::scenario::model::Scenario;
use crate::sim::{Datagram, Intercept, LinkConfig, Network, Node, Sim};
use crate::sip::transaction::TxId;
use crate::sip::transport::Transport;
use crate::stats::outcome::FailureKind;
use crate::ua::call::EndpointConfig;
use crate::ua::registration::RegistrationEvent;
use crate::ua::renewal::Why;
use crate::ua::script::is_call_step;

mod attended;
mod signature;
mod transferee;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The one clock read of these tests; everything after it is virtual.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn scenario(text: &str) -> Scenario {
    let no_env = |_: &str| None;
    // The PESQ reference is known (its samples are in [`pesq_wavs`]); nothing else is.
    let no_files = |f: &str| {
        if f == PESQ_REFERENCE {
            Ok(String::new())
        } else {
            Err(format!("no file {f}"))
        }
    };
    match crate::scenario::load("agent.yaml", text, &no_env, &no_files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", crate::scenario::report(&errors)),
    }
}

/// A call the test's load plan starts: when, whose, to whom.
struct Planned {
    at: Instant,
    account: Account,
    peer: Option<Account>,
}

/// One role: its agent at its address, the calls it is to start, and what came out.
struct RoleNode {
    name: String,
    addr: SocketAddr,
    agent: Agent<SocketAddr>,
    plan: VecDeque<Planned>,
    load_start: Instant,
    stop_at: Option<Instant>,
    results: Vec<CallResult>,
    /// Media commands seen, per kind: open, start, intent, stop.
    media_seen: [u32; 4],
    next_port: u16,
    /// Whether the stand-in media engine hears every watched tone (300 ms after the
    /// watch), or none.
    hears: bool,
    /// The events of requests of our own.
    own: Vec<RequestEvent>,
    /// The names the stand-in resolver knows, and the Request-URIs it was asked for.
    names: Vec<(&'static str, SocketAddr)>,
    resolved: Vec<String>,
    /// What happened to the role's registrations, with each one's user.
    registrations: Vec<(String, RegistrationEvent)>,
    /// The audio every role's calls play, shared by the stand-in engines (signatures).
    audio: signature::Board,
    /// Each call's stream: its local RTP address and the remote one.
    streams: HashMap<CallKey, (SocketAddr, Option<SocketAddr>)>,
    /// The computations asked for, kept for the test to answer (never run inline).
    work: Vec<(CallKey, Work)>,
}

impl RoleNode {
    /// Answer the media commands as the media engine would, and collect the results.
    fn service(&mut self, now: Instant) {
        while let Some((key, command)) = self.agent.poll_media() {
            match command {
                MediaCommand::Open => {
                    self.media_seen[0] += 1;
                    self.next_port += 2;
                    let local = SocketAddr::new(self.addr.ip(), self.next_port);
                    self.streams.insert(key, (local, None));
                    self.agent.handle_media_opened(now, key, Ok(self.next_port));
                }
                MediaCommand::Start(negotiated) => {
                    self.media_seen[1] += 1;
                    if let Some(stream) = self.streams.get_mut(&key) {
                        stream.1 = Some(negotiated.remote_rtp);
                    }
                }
                MediaCommand::Intent(intent) => {
                    self.media_seen[2] += 1;
                    let stream = self.streams.get(&key).copied();
                    let event = match intent {
                        MediaIntent::Follow(negotiated) => {
                            if let Some(stream) = self.streams.get_mut(&key) {
                                stream.1 = Some(negotiated.remote_rtp);
                            }
                            None
                        }
                        MediaIntent::Play(playlist) => {
                            if let Some((local, _)) = stream {
                                self.audio.play(local, playlist);
                            }
                            None
                        }
                        MediaIntent::JudgeSignature {
                            watch,
                            expected,
                            own,
                        } => Some(MediaEvent::Signature {
                            watch,
                            verdict: self.audio.judge(stream, expected, own),
                        }),
                        MediaIntent::WatchTone { watch, .. } if self.hears => {
                            Some(MediaEvent::ToneHeard {
                                watch,
                                onset: ms(300),
                            })
                        }
                        MediaIntent::Capture { watch, samples } => Some(MediaEvent::Captured {
                            watch,
                            audio: vec![0; samples].into(),
                        }),
                        MediaIntent::Probe(watch) => Some(MediaEvent::Status {
                            watch,
                            level_dbfs: None,
                            behind: (0, 0),
                            dtmf_received: String::new(),
                        }),
                        _ => None,
                    };
                    if let Some(event) = event {
                        self.agent.handle_media_event(now, key, event);
                    }
                }
                MediaCommand::Stop { report } => {
                    self.media_seen[3] += 1;
                    if report {
                        self.agent.handle_media_stopped(now, key, None);
                    }
                }
            }
        }
        while let Some(work) = self.agent.poll_work() {
            self.work.push(work);
        }
        while let Some((key, target)) = self.agent.poll_resolve() {
            let to = self
                .names
                .iter()
                .find(|(name, _)| target.contains(&format!("@{name}:")))
                .map(|&(_, addr)| addr);
            self.resolved.push(target);
            self.agent.handle_resolved(now, key, to);
        }
        while let Some(event) = self.agent.poll_request_event() {
            self.own.push(event);
        }
        while let Some(result) = self.agent.poll_result() {
            self.results.push(result);
        }
        while let Some(event) = self.agent.poll_registration() {
            self.registrations.push(event);
        }
    }
}

impl Node<SocketAddr> for RoleNode {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<SocketAddr>) {
        self.agent
            .handle_datagram(now, datagram.from, datagram.bytes);
        self.service(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.stop_at.is_some_and(|at| at <= now) {
            self.stop_at = None;
            self.agent.stop(now);
        }
        while self.plan.front().is_some_and(|p| p.at <= now) {
            let p = self.plan.pop_front().expect("checked");
            let offset = p.at - self.load_start;
            let schedule = Schedule {
                load_start: self.load_start,
                offset,
            };
            self.agent.start_call(now, p.account, p.peer, schedule);
            self.service(now);
        }
        if self.agent.poll_timeout().is_some_and(|at| at <= now) {
            self.agent.handle_timeout(now);
        }
        self.service(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.agent.poll_timeout(),
            self.plan.front().map(|p| p.at),
            self.stop_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram<SocketAddr>> {
        self.service(now);
        self.agent.poll_transmit().map(|t| Datagram {
            from: self.addr,
            to: t.destination,
            bytes: t.bytes,
        })
    }
}

/// Every role of a scenario as an agent on the simulated network (each at its `listen`
/// address), over links of 10 ms.
struct Run {
    t0: Instant,
    scenario: Scenario,
    sim: Sim<SocketAddr, RoleNode>,
}

impl Run {
    fn new(text: &str, link: LinkConfig) -> Self {
        let scenario = scenario(text);
        let t0 = base();
        let mut net = Network::new(t0, link);
        net.seed(7);
        let mut sim = Sim::new(net);
        let audio = signature::Board::default();
        for (i, role) in scenario.roles.iter().enumerate() {
            let addr = role.listen.expect("every role listens");
            let local = LocalEnd {
                transport: Transport::Udp,
                addr,
                routes: Vec::new(),
            };
            let mut config = EndpointConfig::new(local.clone());
            config.contact_user = role.accounts[0].user.clone();
            let endpoint = Endpoint::new(config, IdGen::new(100 + i as u64));
            let steps: Vec<_> = role
                .steps
                .iter()
                .filter(|s| is_call_step(&s.value))
                .cloned()
                .collect();
            let cfg = AgentConfig {
                role: role.name.clone(),
                local,
                next_hop: None,
                domain: scenario.target.domain.clone(),
                codecs: scenario.media.codecs.clone(),
                ptime_ms: 20,
                rtp: scenario.media.rtp,
                wavs: pesq_wavs(),
                accounts: role.accounts.clone(),
                steps: Arc::new(steps),
                srtp: None,
                sips: false,
                signature_parties: scenario.signature_parties().into(),
            };
            let mut agent = Agent::new(cfg, endpoint);
            agent.record_ladders();
            let node = RoleNode {
                name: role.name.clone(),
                addr,
                agent,
                plan: VecDeque::new(),
                load_start: t0,
                stop_at: None,
                results: Vec::new(),
                media_seen: [0; 4],
                // Apart per role: the stand-in engines share one board of addresses.
                next_port: 40_000 + 1_000 * i as u16,
                hears: true,
                own: Vec::new(),
                names: Vec::new(),
                resolved: Vec::new(),
                registrations: Vec::new(),
                audio: audio.clone(),
                streams: HashMap::new(),
                work: Vec::new(),
            };
            sim.add_node(node, [addr]);
        }
        Self { t0, scenario, sim }
    }

    fn index(&self, role: &str) -> usize {
        self.sim
            .nodes
            .iter()
            .position(|n| n.name == role)
            .unwrap_or_else(|| panic!("no role {role}"))
    }

    fn node(&self, role: &str) -> &RoleNode {
        &self.sim.nodes[self.index(role)]
    }

    /// `calls` calls, `every` apart, shared in turn among the caller roles as the
    /// executor does: the n-th call of a role with its n-th account, to its peer role's
    /// n-th account.
    fn plan(&mut self, calls: usize, every: Duration) {
        let callers: Vec<usize> = (0..self.scenario.roles.len())
            .filter(|&i| self.scenario.roles[i].calls())
            .collect();
        for index in 0..calls {
            let role = &self.scenario.roles[callers[index % callers.len()]];
            let n = index / callers.len();
            let peer = role.steps.iter().find_map(|s| match &s.value {
                Step::Call(c) => c.peer.clone(),
                _ => None,
            });
            let peer = peer
                .and_then(|p| self.scenario.role(&p))
                .map(|r| r.accounts[n % r.accounts.len()].clone());
            let planned = Planned {
                at: self.t0 + every * index as u32,
                account: role.accounts[n % role.accounts.len()].clone(),
                peer,
            };
            let i = self.index(&role.name.clone());
            self.sim.nodes[i].plan.push_back(planned);
        }
    }

    /// Run until every planned call has started and every caller's call ended, tell every
    /// agent the load is over, and run until the network is idle.
    fn run(&mut self, bound: Duration) {
        let limit = self.t0 + bound;
        loop {
            let callers_done = self
                .sim
                .nodes
                .iter()
                .filter(|n| self.scenario.role(&n.name).is_some_and(|r| r.calls()))
                .all(|n| n.plan.is_empty() && n.agent.live_calls() == 0);
            if callers_done || !self.sim.step(limit) {
                break;
            }
        }
        let now = self.sim.now();
        for node in &mut self.sim.nodes {
            node.agent.load_done(now);
            node.service(now);
        }
        assert!(self.sim.run_until_idle(bound), "still busy after {bound:?}");
        for node in &self.sim.nodes {
            assert_eq!(node.agent.live_calls(), 0, "{} has calls left", node.name);
        }
    }

    fn results(&self, role: &str) -> &[CallResult] {
        &self.node(role).results
    }
}

fn messages(result: &CallResult) -> String {
    result
        .failures
        .iter()
        .map(|f| format!("{:?}: {}", f.kind, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Two caller roles and two callee roles: one answers, one is busy. Signaling only.
const LOAD: &str = r#"
name: agent-load
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 40 }
  password: "pw{user}"
media:
  rtp: false
roles:
  callee:
    accounts: 2000..2009
    listen: 127.0.0.1:5070
    steps:
      - answer: { ring: 100ms }
      - wait_for: bye
  busy:
    accounts: 2010..2019
    listen: 127.0.0.1:5071
    steps:
      - reject: { code: 486 }
  caller:
    accounts: 2020..2029
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: callee, timeout: 10s }
      - expect: { answered: true, within: 10s }
      - hangup: { after: 2s }
  caller_busy:
    accounts: 2030..2039
    listen: 127.0.0.1:5081
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5071", peer: busy, timeout: 10s }
      - expect: { answered: true, within: 10s }
      - hangup: { after: 2s }
"#;

#[test]
fn a_thousand_calls_over_a_lossy_link_end_with_their_exact_verdicts() {
    thousand_calls(LinkConfig::new(ms(10)).with_loss(50_000));
}

#[test]
fn a_thousand_calls_over_a_link_that_also_duplicates_and_reorders_end_the_same() {
    thousand_calls(
        LinkConfig::new(ms(10))
            .with_loss(50_000)
            .with_duplication(50_000, ms(5))
            .with_reordering(50_000, ms(30)),
    );
}

/// 1,000 calls of [`LOAD`] over `link`: every call ends as its callee's rule says.
fn thousand_calls(link: LinkConfig) {
    let mut run = Run::new(LOAD, link);
    run.plan(1000, ms(50));
    run.run(secs(600));

    let caller = run.results("caller");
    assert_eq!(caller.len(), 500);
    for r in caller {
        assert!(r.passed(), "{}: {}", r.call_id, messages(r));
        assert_eq!(r.final_code, Some(200));
        assert_eq!(r.bye_code, Some(200));
        assert!(r.ladder.is_empty(), "a passed call keeps no ladder");
    }
    let callee = run.results("callee");
    assert_eq!(callee.len(), 500);
    for r in callee {
        assert!(r.passed(), "{}: {}", r.call_id, messages(r));
    }
    let refused = run.results("caller_busy");
    assert_eq!(refused.len(), 500);
    for r in refused {
        assert!(!r.passed());
        assert_eq!(r.final_code, Some(486));
        let first = r.ladder.first().expect("a failed call keeps its ladder");
        assert!(first.line.starts_with("INVITE "), "{}", first.line);
        assert!(r
            .ladder
            .iter()
            .any(|rung| rung.line.starts_with("SIP/2.0 486")));
        assert!(
            r.failures
                .iter()
                .any(|f| f.kind == FailureKind::SipCode(486)),
            "{}",
            messages(r)
        );
    }
    let busy = run.results("busy");
    assert_eq!(busy.len(), 500);
    for r in busy {
        assert!(r.passed(), "{}: {}", r.call_id, messages(r));
        assert_eq!(r.final_code, Some(486));
    }
    // Every Call-ID of a side is distinct, and the two sides saw the same calls.
    let mut ids: Vec<&str> = caller.iter().map(|r| r.call_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    let mut other: Vec<&str> = callee.iter().map(|r| r.call_id.as_str()).collect();
    other.sort_unstable();
    assert_eq!(ids, other);
    // The link lost datagrams and the transactions made up for them.
    let lost: u64 = run
        .sim
        .nodes
        .iter()
        .map(|n| run.sim.net.counts(&n.addr).dropped)
        .sum();
    assert!(lost > 100, "{lost} lost");
    for node in &run.sim.nodes {
        assert_eq!(node.media_seen, [0; 4], "{}: no RTP, no media", node.name);
    }
}

/// One caller, one callee, one call.
const ONE: &str = r#"
name: agent-one
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 2 }
  password: "pw{user}"
media:
  rtp: false
roles:
  callee:
    accounts: "2000"
    listen: 127.0.0.1:5070
    steps:
      - answer
      - wait_for: bye
  caller:
    accounts: "2001"
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: callee, timeout: 40s }
      - expect: { answered: true, within: 40s }
      - hangup: { after: 2s }
"#;

fn one_call() -> Run {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run
}

fn only(results: &[CallResult]) -> &CallResult {
    assert_eq!(results.len(), 1, "one result");
    &results[0]
}

fn callee_addr() -> SocketAddr {
    "127.0.0.1:5070".parse().expect("literal")
}

#[test]
fn one_call_passes_on_both_sides() {
    let mut run = one_call();
    run.run(secs(120));
    let caller = only(run.results("caller"));
    assert!(caller.passed(), "{}", messages(caller));
    let callee = only(run.results("callee"));
    assert!(callee.passed(), "{}", messages(callee));
}

#[test]
fn a_bye_answered_481_fails_the_caller() {
    let mut run = one_call();
    run.sim.net.set_interceptor(|d| {
        let text = String::from_utf8_lossy(&d.bytes);
        if text.starts_with("SIP/2.0 200") && text.contains(" BYE\r\n") {
            let rewritten = text.replacen(
                "SIP/2.0 200 OK",
                "SIP/2.0 481 Call/Transaction Does Not Exist",
                1,
            );
            Intercept::Replace(Bytes::from(rewritten))
        } else {
            Intercept::Pass
        }
    });
    run.run(secs(120));
    let caller = only(run.results("caller"));
    assert!(!caller.passed());
    assert_eq!(caller.bye_code, Some(481));
    assert!(
        caller
            .failures
            .iter()
            .any(|f| f.kind == FailureKind::ByeFailed("481".into()) && f.message.contains("481")),
        "{}",
        messages(caller)
    );
}

#[test]
fn a_bye_never_answered_fails_the_caller_on_timer_f() {
    let mut run = one_call();
    // The call is up after a round trip; the callee goes silent before the BYE at 2 s.
    run.sim.run_for(secs(1));
    assert_eq!(run.node("callee").agent.live_calls(), 1);
    run.sim.net.blackhole(callee_addr());
    run.run(secs(120));
    let caller = only(run.results("caller"));
    assert!(!caller.passed());
    assert_eq!(caller.final_code, Some(200));
    assert_eq!(caller.bye_code, None);
    assert!(
        caller
            .failures
            .iter()
            .any(|f| matches!(f.kind, FailureKind::ByeFailed(_))),
        "{}",
        messages(caller)
    );
}

#[test]
fn an_invite_never_answered_fails_on_timer_b() {
    let mut run = one_call();
    run.sim.net.blackhole(callee_addr());
    run.run(secs(120));
    let caller = only(run.results("caller"));
    assert!(!caller.passed());
    assert_eq!(caller.final_code, None);
    // Timer A's schedule within Timer B: sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    let sent: Vec<(f64, bool)> = caller
        .ladder
        .iter()
        .map(|r| (r.at_ms, r.retransmission))
        .collect();
    let expected: Vec<(f64, bool)> = [0.0, 500.0, 1500.0, 3500.0, 7500.0, 15500.0, 31500.0]
        .into_iter()
        .enumerate()
        .map(|(i, at)| (at, i > 0))
        .collect();
    assert_eq!(sent, expected);
    assert!(
        caller
            .failures
            .iter()
            .any(|f| f.kind == FailureKind::Timer("Timer B".into())),
        "{}",
        messages(caller)
    );
}

#[test]
fn ctrl_c_mid_call_is_interrupted_never_passed() {
    let mut run = one_call();
    run.sim.run_for(secs(1));
    let now = run.sim.now();
    for node in &mut run.sim.nodes {
        node.stop_at = Some(now);
    }
    run.run(secs(120));
    for role in ["caller", "callee"] {
        let r = only(run.results(role));
        assert!(!r.passed(), "{role} passed");
        assert!(
            r.failures
                .iter()
                .any(|f| f.kind == FailureKind::Interrupted),
            "{role}: {}",
            messages(r)
        );
    }
}

/// The selftest's shape: each side plays a tone and expects the other's.
const TONES: &str = r#"
name: agent-tones
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 2 }
media:
  codecs: [PCMU]
roles:
  callee:
    accounts: "2000"
    listen: 127.0.0.1:5070
    steps:
      - answer: { ring: 200ms }
      - play: { tone: 1kHz, level: -12dBFS }
      - expect: { tone: 440Hz, within: 2s, min_snr: 20dB }
      - wait_for: bye
  caller:
    accounts: "2001"
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: callee, timeout: 5s }
      - expect: { answered: true, within: 2s }
      - play: { tone: 440Hz, level: -12dBFS }
      - expect: { tone: 1kHz, within: 2s, min_snr: 20dB }
      - hangup: { after: 3s }
"#;

#[test]
fn media_steps_open_start_and_stop_each_calls_stream_and_count_what_was_heard() {
    let mut run = Run::new(TONES, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.run(secs(120));
    for role in ["caller", "callee"] {
        let r = only(run.results(role));
        assert!(r.passed(), "{role}: {}", messages(r));
        assert_eq!((r.audio_checked, r.audio_verified), (1, 1), "{role}");
        let [open, start, intents, stop] = run.node(role).media_seen;
        assert_eq!((open, start, stop), (1, 1, 1), "{role}");
        assert!(intents >= 2, "{role}: play and watch, {intents}");
    }
}

#[test]
fn a_tone_the_media_engine_never_hears_fails_the_expectation() {
    let mut run = Run::new(TONES, LinkConfig::new(ms(10)));
    let callee = run.index("callee");
    run.sim.nodes[callee].hears = false;
    run.plan(1, ms(0));
    run.run(secs(120));
    let r = only(run.results("callee"));
    assert!(!r.passed());
    assert_eq!((r.audio_checked, r.audio_verified), (1, 0));
    assert!(
        r.failures
            .iter()
            .any(|f| f.kind == FailureKind::ToneMissing),
        "{}",
        messages(r)
    );
    // The failed step ended the callee's script, which hung up: the caller, still in its
    // `hangup: { after: 3s }`, saw the call end under it.
    let caller = only(run.results("caller"));
    assert!(!caller.passed());
    assert_eq!((caller.audio_checked, caller.audio_verified), (1, 1));
    assert!(
        caller
            .failures
            .iter()
            .any(|f| f.message.contains("BYE received")),
        "{}",
        messages(caller)
    );
}

#[test]
fn a_request_of_our_own_gets_its_final_response_or_its_timeout() {
    let options = |n: u32| {
        Bytes::from(format!(
            "OPTIONS sip:2000@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKown{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:2001@127.0.0.1>;tag=own{n}\r\n\
             To: <sip:2000@127.0.0.1>\r\n\
             Call-ID: own{n}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    };
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let caller = run.index("caller");
    let now = run.sim.now();
    let answered = run.sim.nodes[caller]
        .agent
        .send_request(now, options(1), callee_addr())
        .expect("sent");
    run.sim.run_for(secs(1));
    run.sim.net.blackhole(callee_addr());
    let now = run.sim.now();
    let lost = run.sim.nodes[caller]
        .agent
        .send_request(now, options(2), callee_addr())
        .expect("sent");
    run.run(secs(120));
    let own = &run.node("caller").own;
    let (status, rtt) = own
        .iter()
        .find_map(|e| match e {
            RequestEvent::Final { tx, message, rtt } if *tx == answered => {
                Some((message.status(), *rtt))
            }
            _ => None,
        })
        .expect("a final response");
    assert!(status.is_some_and(|s| s >= 200), "{status:?}");
    // One 10 ms link each way.
    assert_eq!(rtt, ms(20));
    let failure = own
        .iter()
        .find_map(|e| match e {
            RequestEvent::Failed { tx, error } if *tx == lost => Some(error.to_string()),
            _ => None,
        })
        .expect("a failure");
    assert_eq!(
        failure,
        "no final response: Timer F expired after 32.0 s (is the peer reachable?)"
    );
    assert!(run.results("caller").is_empty());
}

#[test]
fn a_transport_failure_under_a_call_fails_it_as_a_transport_error() {
    let mut run = one_call();
    run.sim.run_for(secs(1));
    let caller = run.index("caller");
    let now = run.sim.now();
    run.sim.nodes[caller]
        .agent
        .transport_failed(now, &callee_addr());
    run.sim.nodes[caller].service(now);
    run.run(secs(120));
    let r = only(run.results("caller"));
    assert!(!r.passed());
    assert!(
        r.failures.iter().any(|f| f.kind == FailureKind::Transport),
        "{}",
        messages(r)
    );
}

/// A connection of one user agent that could not be opened (each user agent with its own
/// connection to the same peer) ends that user agent's call at once, not at Timer F, and
/// leaves the other user agent's call to the same peer alone.
#[test]
fn a_connection_that_cannot_be_opened_fails_only_its_user_agents_calls_at_once() {
    let text = ONE
        .replace(
            "range: { from: 2000, count: 2 }",
            "range: { from: 2000, count: 3 }",
        )
        .replace("accounts: \"2001\"", "accounts: 2001..2002");
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    run.plan(2, ms(0));
    run.sim.run_for(secs(1));
    let caller = run.index("caller");
    let now = run.sim.now();
    run.sim.nodes[caller]
        .agent
        .flow_failed(now, &callee_addr(), Some("2001"), "refused");
    run.sim.nodes[caller].service(now);
    // 2001's call is over now, long before the 32 s of Timer F.
    run.sim.run_for(ms(10));
    let ended: Vec<&str> = run
        .results("caller")
        .iter()
        .map(|r| r.user.as_str())
        .collect();
    assert_eq!(ended, ["2001"]);
    run.run(secs(120));
    let results = run.results("caller");
    assert_eq!(results.len(), 2);
    for r in results {
        if r.user == "2001" {
            assert!(
                r.failures.iter().any(|f| f.kind == FailureKind::Transport),
                "{}",
                messages(r)
            );
        } else {
            assert!(r.passed(), "{}", messages(r));
        }
    }
}

#[test]
fn a_request_uri_host_by_name_is_resolved_by_the_driver_once_or_fails_the_call() {
    let text = ONE.replace("sip:{peer}@127.0.0.1:5070", "sip:{peer}@callee.test:5070");
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    let caller = run.index("caller");
    run.sim.nodes[caller].names = vec![("callee.test", callee_addr())];
    run.plan(3, secs(5));
    run.run(secs(120));
    assert_eq!(run.results("caller").len(), 3);
    for r in run.results("caller") {
        assert!(r.passed(), "{}", messages(r));
    }
    assert_eq!(
        run.node("caller").resolved,
        vec!["sip:2000@callee.test:5070".to_string()],
        "asked once, then kept"
    );

    let text = ONE.replace("sip:{peer}@127.0.0.1:5070", "sip:{peer}@nowhere.test:5070");
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.run(secs(120));
    let r = only(run.results("caller"));
    assert!(!r.passed());
    assert_eq!(
        r.failures[0].message,
        "cannot resolve the host of sip:2000@nowhere.test:5070"
    );
    assert!(run.results("callee").is_empty());
}

#[test]
fn a_role_without_answering_steps_refuses_404_and_one_shut_down_480() {
    // The callee role only registers (at a registrar this test leaves out; calls go
    // straight to the callee's address): no step of its answers a call.
    let text = ONE
        .replace(
            "      - answer\n      - wait_for: bye\n",
            "      - register\n      - unregister\n",
        )
        .replace("  direct: true\n", "  server: 127.0.0.1:5999\n");
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.run(secs(120));
    let r = only(run.results("caller"));
    assert_eq!(r.final_code, Some(404));
    assert!(!r.passed());
    assert!(run.results("callee").is_empty());

    let mut run = one_call();
    let callee = run.index("callee");
    let now = run.sim.now();
    run.sim.nodes[callee].agent.shutdown(now);
    run.run(secs(120));
    let r = only(run.results("caller"));
    assert_eq!(r.final_code, Some(480));
    assert!(!r.passed());
    assert!(run.results("callee").is_empty());
    assert!(run.node("callee").agent.is_finished());
}

#[test]
fn a_call_started_after_ctrl_c_runs_no_step_and_is_interrupted() {
    let mut run = one_call();
    let caller = run.index("caller");
    let now = run.sim.now();
    run.sim.nodes[caller].agent.stop(now);
    run.run(secs(120));
    let r = only(run.results("caller"));
    assert!(!r.passed());
    assert!(r.steps.is_empty(), "{:?}", r.steps);
    assert!(
        r.failures
            .iter()
            .any(|f| f.kind == FailureKind::Interrupted),
        "{}",
        messages(r)
    );
    assert!(run.results("callee").is_empty());
}

// --- registrations -------------------------------------------------------------------------

/// Where the test's registrar listens (no node: the interceptor answers for it).
fn registrar_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().expect("literal")
}

/// The value of header `name` in `text`.
fn header_value<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_default()
}

/// A registrar's answer to `register`: 401 with a digest challenge when it carries no
/// credentials, else 200 with its Contact bound for the Expires asked (none when 0).
fn registrar_answer(register: &str) -> Bytes {
    let mut head = format!(
        "Via: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        header_value(register, "Via"),
        header_value(register, "From"),
        header_value(register, "To"),
        header_value(register, "Call-ID"),
        header_value(register, "CSeq"),
    );
    let status = if header_value(register, "Authorization").is_empty() {
        head.push_str("WWW-Authenticate: Digest realm=\"test\", nonce=\"n1\", algorithm=MD5\r\n");
        "401 Unauthorized"
    } else {
        let expires = header_value(register, "Expires");
        if expires != "0" {
            let contact = header_value(register, "Contact");
            head.push_str(&format!("Contact: {contact};expires={expires}\r\n"));
        }
        "200 OK"
    };
    Bytes::from(format!(
        "SIP/2.0 {status}\r\n{head}Content-Length: 0\r\n\r\n"
    ))
}

/// Answer every REGISTER sent to the registrar, while `answering` says so.
fn serve_registrar(run: &mut Run, answering: std::rc::Rc<std::cell::Cell<bool>>) {
    // The simulator wants an owner for every address; nothing passes the interceptor.
    let owner = run.index("callee");
    run.sim.add_address(owner, registrar_addr());
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes);
        if d.to != registrar_addr() || !text.starts_with("REGISTER ") {
            Intercept::Pass
        } else if answering.get() {
            Intercept::Reply(registrar_answer(&text))
        } else {
            Intercept::Drop
        }
    });
}

fn register_role(run: &mut Run, role: &str, expires: u32, refresh: bool) {
    let i = run.index(role);
    let now = run.sim.now();
    let accounts = run.scenario.role(role).expect("role").accounts.clone();
    for (n, account) in accounts.iter().enumerate() {
        run.sim.nodes[i].agent.register(
            now,
            account,
            registrar_addr(),
            expires,
            refresh,
            IdGen::new(500 + n as u64),
        );
    }
    run.sim.nodes[i].service(now);
}

/// Each datagram `from` put on the network, with its text.
fn sent_by(
    run: &Run,
    from: SocketAddr,
) -> impl Iterator<Item = (&crate::sim::Sent<SocketAddr>, String)> + '_ {
    run.sim
        .net
        .log()
        .iter()
        .filter(move |s| s.from == from)
        .map(|s| (s, String::from_utf8_lossy(&s.bytes).into_owned()))
}

/// REGISTERs put on the network by `from` (first sends, not retransmissions of one).
fn registers_sent(run: &Run, from: SocketAddr) -> Vec<(Instant, String)> {
    let mut seen = std::collections::HashSet::new();
    sent_by(run, from)
        .filter_map(|(s, text)| {
            let branch = header_value(&text, "Via").to_owned();
            (text.starts_with("REGISTER ") && seen.insert(branch)).then_some((s.at, text))
        })
        .collect()
}

#[test]
fn registrations_go_fifty_at_a_time_and_every_one_is_registered_then_unregistered() {
    let parses = crate::sip::transaction::request_parses();
    let mut run = Run::new(LOAD, LinkConfig::new(ms(10)));
    let answering = std::rc::Rc::new(std::cell::Cell::new(true));
    serve_registrar(&mut run, answering);
    // Ten accounts per role: give one role all forty to register.
    let i = run.index("caller");
    let now = run.sim.now();
    let all = run.scenario.accounts.clone();
    assert_eq!(all.len(), 40);
    for round in 0..3 {
        for (n, account) in all.iter().enumerate() {
            let mut account = account.clone();
            account.user = format!("{}-{round}", account.user);
            run.sim.nodes[i].agent.register(
                now,
                &account,
                registrar_addr(),
                3600,
                true,
                IdGen::new(1000 + (round * 40 + n) as u64),
            );
        }
    }
    run.sim.nodes[i].service(now);
    assert!(run.node("caller").agent.registering());
    // The first REGISTERs of the 120: fifty at first, the others as turns free up.
    let caller_addr = run.node("caller").addr;
    // Before the first answers come back (the interceptor answers at once: 10 ms).
    run.sim.run_for(ms(5));
    assert_eq!(
        registers_sent(&run, caller_addr).len(),
        REGISTRATIONS_AT_ONCE
    );
    run.sim.run_for(secs(5));
    let node = run.node("caller");
    assert!(!node.agent.registering());
    let registered = node
        .registrations
        .iter()
        .filter(|(_, e)| matches!(e, RegistrationEvent::Registered { .. }))
        .count();
    assert_eq!(registered, 120, "{:?}", node.registrations);
    // Each went through the challenge: 240 REGISTERs.
    assert_eq!(registers_sent(&run, caller_addr).len(), 240);

    let now = run.sim.now();
    run.sim.nodes[i].agent.unregister(now);
    run.sim.nodes[i].service(now);
    run.sim.run_for(ms(5));
    let unregistering = |run: &Run| {
        registers_sent(run, caller_addr)
            .into_iter()
            .filter(|(_, text)| header_value(text, "Expires") == "0")
            .count()
    };
    assert_eq!(unregistering(&run), REGISTRATIONS_AT_ONCE);
    run.sim.run_for(secs(5));
    let node = run.node("caller");
    assert!(node.agent.unregistered());
    let unregistered = node
        .registrations
        .iter()
        .filter(|(_, e)| matches!(e, RegistrationEvent::Unregistered { .. }))
        .count();
    assert_eq!(unregistered, 120, "{:?}", node.registrations);
    // With the registrar's nonce kept: no challenge this time.
    assert_eq!(unregistering(&run), 120);
    // 480 REGISTERs sent, none parsed by the transaction layer.
    assert_eq!(crate::sip::transaction::request_parses(), parses);
}

#[test]
fn calls_go_on_while_registrations_are_refreshed_and_renewed_when_their_flow_drops() {
    let mut run = one_call();
    let answering = std::rc::Rc::new(std::cell::Cell::new(true));
    serve_registrar(&mut run, answering);
    // 60 s bindings refreshed before they lapse, over a call of a few seconds.
    register_role(&mut run, "callee", 60, true);
    run.sim.run_for(secs(120));
    let callee = run.index("callee");
    let now = run.sim.now();
    run.sim.nodes[callee]
        .agent
        .flow_lost(now, &registrar_addr(), None);
    run.sim.nodes[callee].service(now);
    run.sim.run_for(secs(1));
    let now = run.sim.now();
    run.sim.nodes[callee].agent.unregister(now);
    run.sim.nodes[callee].service(now);
    run.run(secs(120));

    let node = run.node("callee");
    let events: Vec<&RegistrationEvent> = node.registrations.iter().map(|(_, e)| e).collect();
    assert!(
        matches!(events[0], RegistrationEvent::Registered { .. }),
        "{events:?}"
    );
    let refreshes = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RegistrationEvent::Renewed {
                    why: Why::Refresh,
                    ..
                }
            )
        })
        .count();
    assert!(refreshes >= 2, "{events:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            RegistrationEvent::Renewed {
                why: Why::FlowLost,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(RegistrationEvent::Unregistered { .. })),
        "{events:?}"
    );
    assert!(node.agent.unregistered());
    // The call went on beside them.
    assert!(only(run.results("caller")).passed());
    assert!(only(run.results("callee")).passed());
}

#[test]
fn a_silent_registrar_fails_the_first_registration_on_timer_f_and_an_icmp_error_at_once() {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let answering = std::rc::Rc::new(std::cell::Cell::new(false));
    serve_registrar(&mut run, answering);
    register_role(&mut run, "callee", 3600, true);
    let started = run.sim.now();
    while run.node("callee").agent.registering() {
        assert!(run.sim.step(started + secs(60)), "no outcome");
    }
    let waited = run.sim.now() - started;
    assert!(waited >= secs(32) && waited < secs(33), "{waited:?}");
    let node = run.node("callee");
    match &node.registrations[..] {
        [(_, RegistrationEvent::Failed { error })] => {
            assert!(error.to_string().contains("Timer F"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing bound: unregistering ends at once, sending nothing.
    let callee_addr = node.addr;
    let sent = registers_sent(&run, callee_addr).len();
    let i = run.index("callee");
    let now = run.sim.now();
    run.sim.nodes[i].agent.unregister(now);
    assert!(run.node("callee").agent.unregistered());
    assert_eq!(registers_sent(&run, callee_addr).len(), sent);

    // An ICMP error for the registrar fails the REGISTER under way now, not at Timer F.
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let answering = std::rc::Rc::new(std::cell::Cell::new(false));
    serve_registrar(&mut run, answering);
    register_role(&mut run, "callee", 3600, true);
    run.sim.run_for(ms(100));
    let i = run.index("callee");
    let now = run.sim.now();
    run.sim.nodes[i].agent.requests_failed(
        now,
        &registrar_addr(),
        None,
        "destination unreachable (ICMP port unreachable)",
    );
    run.sim.nodes[i].service(now);
    let node = run.node("callee");
    assert!(!node.agent.registering());
    match &node.registrations[..] {
        [(_, RegistrationEvent::Failed { error })] => {
            assert!(error.to_string().contains("ICMP"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_transport_gone_for_good_fails_every_call_and_registration_under_way() {
    let mut run = one_call();
    let answering = std::rc::Rc::new(std::cell::Cell::new(false));
    serve_registrar(&mut run, answering);
    register_role(&mut run, "caller", 3600, true);
    // The call is up and the REGISTER unanswered when the socket fails.
    run.sim.run_for(secs(1));
    let caller = run.index("caller");
    assert_eq!(run.node("caller").agent.live_calls(), 1);
    assert!(run.node("caller").agent.registering());
    let now = run.sim.now();
    run.sim.nodes[caller]
        .agent
        .transport_gone(now, "the SIP socket failed: test");
    run.sim.nodes[caller].service(now);
    let node = run.node("caller");
    assert!(!node.agent.registering());
    match &node.registrations[..] {
        [(_, RegistrationEvent::Failed { error })] => {
            assert!(error.to_string().contains("socket failed"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let r = only(&node.results);
    assert!(!r.passed(), "a call whose transport is gone never passes");
    assert_eq!(node.agent.live_calls(), 0);
}

// --- requests of our own as the one-shot probes send them ----------------------------------

/// An OPTIONS of our own from the caller, number `n`.
fn own_options(n: u32) -> Bytes {
    Bytes::from(format!(
        "OPTIONS sip:2000@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKprobe{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sipcheck@127.0.0.1>;tag=probe{n}\r\n\
         To: <sip:2000@127.0.0.1>\r\n\
         Call-ID: probe{n}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// Datagrams `from` put on the network after `since`.
fn sent_after(run: &Run, from: SocketAddr, since: Instant) -> usize {
    run.sim
        .net
        .log()
        .iter()
        .filter(|s| s.from == from && s.at > since)
        .count()
}

/// The failure of request `tx`, as told.
fn failure_of(node: &RoleNode, tx: TxId) -> Option<String> {
    node.own.iter().find_map(|e| match e {
        RequestEvent::Failed { tx: t, error } if *t == tx => Some(error.to_string()),
        _ => None,
    })
}

/// A run whose caller sent an OPTIONS of its own (bounded by `limit`, when given) to a
/// callee that receives nothing: the run, the caller's index, the request.
fn options_to_a_silent_peer(limit: Option<Duration>) -> (Run, usize, TxId) {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let caller = run.index("caller");
    run.sim.net.blackhole(callee_addr());
    let now = run.sim.now();
    let agent = &mut run.sim.nodes[caller].agent;
    if let Some(limit) = limit {
        agent.limit_requests(now, now + limit, humantime_secs(limit));
    }
    let tx = agent
        .send_request(now, own_options(1), callee_addr())
        .expect("sent");
    (run, caller, tx)
}

/// A limit as `--timeout` writes whole seconds.
fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[test]
fn an_icmp_error_fails_a_request_of_our_own_at_once_and_stops_its_retransmissions() {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let caller = run.index("caller");
    let caller_addr = run.node("caller").addr;
    run.sim.net.blackhole(callee_addr());
    let now = run.sim.now();
    let tx = run.sim.nodes[caller]
        .agent
        .send_request(now, own_options(1), callee_addr())
        .expect("sent");
    run.sim.run_for(ms(100));
    let now = run.sim.now();
    // The shell's words for the ICMP error, as the wire hands them over.
    run.sim.nodes[caller].agent.requests_failed(
        now,
        &callee_addr(),
        None,
        "127.0.0.1:5070 is unreachable: ICMP port unreachable",
    );
    run.sim.nodes[caller].service(now);
    assert_eq!(
        failure_of(run.node("caller"), tx).as_deref(),
        Some("no final response: 127.0.0.1:5070 is unreachable: ICMP port unreachable")
    );
    // Abandoned: no retransmission follows, no second outcome at Timer F.
    run.run(secs(60));
    assert_eq!(sent_after(&run, caller_addr, now), 0);
    let outcomes = run
        .node("caller")
        .own
        .iter()
        .filter(|e| matches!(e, RequestEvent::Failed { .. } | RequestEvent::Final { .. }))
        .count();
    assert_eq!(outcomes, 1);
}

#[test]
fn an_icmp_error_for_another_destination_leaves_a_request_of_our_own_to_its_timer() {
    let (mut run, caller, tx) = options_to_a_silent_peer(None);
    let now = run.sim.now();
    let elsewhere: SocketAddr = "127.0.0.1:5999".parse().expect("literal");
    run.sim.nodes[caller]
        .agent
        .requests_failed(now, &elsewhere, None, "elsewhere is unreachable");
    run.sim.nodes[caller].service(now);
    assert_eq!(failure_of(run.node("caller"), tx), None);
    run.run(secs(60));
    assert_eq!(
        failure_of(run.node("caller"), tx).as_deref(),
        Some("no final response: Timer F expired after 32.0 s (is the peer reachable?)")
    );
}

#[test]
fn the_limit_fails_a_request_of_our_own_under_way_at_that_instant_naming_it() {
    let (mut run, caller, tx) = options_to_a_silent_peer(Some(secs(1)));
    let start = run.sim.now();
    while failure_of(run.node("caller"), tx).is_none() {
        assert!(run.sim.step(start + secs(60)), "no outcome");
    }
    assert_eq!(run.sim.now(), start + secs(1));
    assert_eq!(
        failure_of(run.node("caller"), tx).as_deref(),
        Some("no final response within --timeout 1s")
    );
    // A request sent once the limit has passed fails at once.
    let now = run.sim.now() + ms(1);
    run.sim.run_until(now);
    let late = run.sim.nodes[caller]
        .agent
        .send_request(now, own_options(2), callee_addr())
        .expect("sent");
    run.sim.run_for(ms(1));
    assert_eq!(
        failure_of(run.node("caller"), late).as_deref(),
        Some("no final response within --timeout 1s")
    );
}

#[test]
fn a_transport_gone_fails_every_request_of_our_own() {
    let (mut run, caller, tx) = options_to_a_silent_peer(None);
    let now = run.sim.now();
    run.sim.nodes[caller]
        .agent
        .transport_gone(now, "the SIP socket failed: test");
    run.sim.nodes[caller].service(now);
    assert_eq!(
        failure_of(run.node("caller"), tx).as_deref(),
        Some("no final response: the SIP socket failed: test")
    );
}

/// The caller's first account, registering as `sipcheck register` does: the probe's
/// wording, no refresh.
fn probe_register(run: &mut Run) -> Account {
    let i = run.index("caller");
    let now = run.sim.now();
    let account = run.scenario.role("caller").expect("role").accounts[0].clone();
    let agent = &mut run.sim.nodes[i].agent;
    agent.probe_wording();
    agent.register(now, &account, registrar_addr(), 3600, false, IdGen::new(9));
    run.sim.nodes[i].service(now);
    account
}

fn registration_events(run: &Run) -> Vec<RegistrationEvent> {
    run.node("caller")
        .registrations
        .iter()
        .map(|(_, e)| e.clone())
        .collect()
}

#[test]
fn a_probes_registration_gives_its_status_bindings_and_round_trip_then_removes_the_binding() {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    serve_registrar(&mut run, std::rc::Rc::new(std::cell::Cell::new(true)));
    let account = probe_register(&mut run);
    run.sim.run_for(secs(1));
    let events = registration_events(&run);
    match &events[..] {
        [RegistrationEvent::Registered {
            rtt,
            expires,
            bindings,
        }] => {
            // The challenge round and the 200: two round trips of 10 ms (the registrar
            // answers on the spot, one link away).
            assert_eq!(*rtt, ms(20));
            assert_eq!(*expires, 3600);
            assert_eq!(bindings.len(), 1, "{bindings:?}");
            assert!(bindings[0].contains("127.0.0.1:5080"), "{bindings:?}");
        }
        other => panic!("{other:?}"),
    }
    let agent = &run.node("caller").agent;
    assert_eq!(agent.registration_status(&account.user), Some((200, "OK")));
    assert!(!agent.registering());
    assert!(
        !agent.unregistered(),
        "the binding is in place until removed"
    );

    let i = run.index("caller");
    let now = run.sim.now();
    run.sim.nodes[i].agent.unregister(now);
    run.sim.nodes[i].service(now);
    run.sim.run_for(secs(1));
    assert!(run.node("caller").agent.unregistered());
    assert!(
        matches!(
            registration_events(&run).last(),
            Some(RegistrationEvent::Unregistered { rtt, remaining }) if *rtt == ms(10) && remaining.is_empty()
        ),
        "{:?}",
        registration_events(&run)
    );
}

#[test]
fn remove_all_sends_contact_star_with_expires_0_and_ends_with_what_the_registrar_still_lists() {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    serve_registrar(&mut run, std::rc::Rc::new(std::cell::Cell::new(true)));
    let i = run.index("caller");
    let caller_addr = run.node("caller").addr;
    let account = run.scenario.role("caller").expect("role").accounts[0].clone();
    let now = run.sim.now();
    run.sim.nodes[i]
        .agent
        .remove_all(now, &account, registrar_addr(), IdGen::new(3));
    run.sim.nodes[i].service(now);
    assert!(
        !run.node("caller").agent.registering(),
        "no registration to wait for"
    );
    assert!(!run.node("caller").agent.unregistered());
    run.sim.run_for(secs(1));
    assert!(run.node("caller").agent.unregistered());
    match &registration_events(&run)[..] {
        [RegistrationEvent::Unregistered { rtt, remaining }] => {
            assert_eq!(*rtt, ms(20));
            assert!(remaining.is_empty(), "{remaining:?}");
        }
        other => panic!("{other:?}"),
    }
    let sent = registers_sent(&run, caller_addr);
    assert_eq!(sent.len(), 2, "the request and its challenge round");
    for (_, text) in &sent {
        assert_eq!(header_value(text, "Contact"), "*");
        assert_eq!(header_value(text, "Expires"), "0");
    }
    assert_eq!(
        run.node("caller").agent.registration_status(&account.user),
        Some((200, "OK"))
    );
}

/// A run whose registrar receives every REGISTER and answers none.
fn with_a_silent_registrar() -> Run {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    serve_registrar(&mut run, std::rc::Rc::new(std::cell::Cell::new(false)));
    run
}

/// The one event of the caller's registrations, a failure: its error as told.
fn only_failure(run: &Run) -> String {
    match &registration_events(run)[..] {
        [RegistrationEvent::Failed { error }] => error.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_probes_registration_fails_on_timer_f_an_icmp_error_or_the_limit_in_the_probes_words() {
    // A silent registrar: Timer F, after 64·T1.
    let mut run = with_a_silent_registrar();
    probe_register(&mut run);
    let started = run.sim.now();
    while run.node("caller").agent.registering() {
        assert!(run.sim.step(started + secs(60)), "no outcome");
    }
    assert_eq!(run.sim.now() - started, secs(32));
    assert_eq!(
        only_failure(&run),
        "no final response: Timer F expired after 32.0 s (is the peer reachable?)"
    );

    // An ICMP error: at once.
    let mut run = with_a_silent_registrar();
    probe_register(&mut run);
    run.sim.run_for(ms(100));
    let i = run.index("caller");
    let now = run.sim.now();
    run.sim.nodes[i].agent.requests_failed(
        now,
        &registrar_addr(),
        None,
        "127.0.0.1:5060 is unreachable: ICMP port unreachable",
    );
    run.sim.nodes[i].service(now);
    assert!(!run.node("caller").agent.registering());
    assert_eq!(
        only_failure(&run),
        "no final response: 127.0.0.1:5060 is unreachable: ICMP port unreachable"
    );

    // The overall limit: at that instant, naming it.
    let mut run = with_a_silent_registrar();
    let i = run.index("caller");
    let start = run.sim.now();
    run.sim.nodes[i]
        .agent
        .limit_requests(start, start + secs(1), "1s".into());
    probe_register(&mut run);
    while run.node("caller").agent.registering() {
        assert!(run.sim.step(start + secs(60)), "no outcome");
    }
    assert_eq!(run.sim.now(), start + secs(1));
    assert_eq!(only_failure(&run), "no final response within --timeout 1s");
    // Nothing bound, nothing to remove; the REGISTER is abandoned (no retransmission).
    let caller_addr = run.node("caller").addr;
    let now = run.sim.now();
    run.run(secs(60));
    assert_eq!(sent_after(&run, caller_addr, now), 0);
}

#[test]
fn a_limit_moved_later_gives_the_removal_of_the_binding_its_own_time() {
    let mut run = Run::new(ONE, LinkConfig::new(ms(10)));
    let answering = std::rc::Rc::new(std::cell::Cell::new(true));
    serve_registrar(&mut run, answering.clone());
    let i = run.index("caller");
    let start = run.sim.now();
    run.sim.nodes[i]
        .agent
        .limit_requests(start, start + secs(1), "1s".into());
    probe_register(&mut run);
    run.sim.run_for(ms(500));
    assert!(matches!(
        registration_events(&run)[..],
        [RegistrationEvent::Registered { .. }]
    ));
    // The registrar falls silent; the removal gets 2 s from now, past the limit.
    answering.set(false);
    let now = run.sim.now();
    run.sim.nodes[i]
        .agent
        .limit_requests(now, now + secs(2), "1s".into());
    run.sim.nodes[i].agent.unregister(now);
    run.sim.nodes[i].service(now);
    while !run.node("caller").agent.unregistered() {
        assert!(run.sim.step(start + secs(60)), "no outcome");
    }
    assert_eq!(run.sim.now(), now + secs(2));
    match registration_events(&run).last() {
        Some(RegistrationEvent::UnregisterFailed { error }) => {
            assert_eq!(error.to_string(), "no final response within --timeout 1s");
        }
        other => panic!("{other:?}"),
    }
}

const PESQ_REFERENCE: &str = "speech.wav";

/// The PESQ reference of [`PESQ`] (its content does not matter: the test scores it).
fn pesq_wavs() -> Arc<HashMap<String, Arc<[i16]>>> {
    Arc::new(HashMap::from([(
        PESQ_REFERENCE.to_string(),
        Arc::from(vec![0i16; 16_000]),
    )]))
}

const PESQ: &str = r#"
name: agent-pesq
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 4 }
media:
  codecs: [PCMU]
roles:
  callee:
    accounts: 2000..2001
    listen: 127.0.0.1:5070
    steps:
      - answer
      - wait_for: bye
  caller:
    accounts: 2002..2003
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: callee, timeout: 5s }
      - expect: { pesq: { reference: speech.wav, min: 3.5 } }
      - hangup
"#;

/// Two calls 1 s apart, run until both callers' scores are asked for (none answered).
fn pesq_calls() -> Run {
    let mut run = Run::new(PESQ, LinkConfig::new(ms(10)));
    run.plan(2, secs(1));
    let until = run.t0 + secs(3);
    while run.sim.step(until) {}
    run
}

fn pesq_result(work: &Work, raw: f64) -> WorkResult {
    let Work::Pesq { id, .. } = work else {
        panic!("a PESQ score asked for: {work:?}")
    };
    WorkResult::Pesq {
        id: *id,
        score: Ok(crate::media::pesq::PesqScore { raw, mos_lqo: raw }),
    }
}

#[test]
fn calls_go_on_while_a_score_is_outstanding_and_its_result_judges_the_step() {
    let mut run = pesq_calls();
    let caller = run.index("caller");
    // The first call's score was asked for at its answer and never given: the agent went
    // on regardless, the second call was placed and answered meanwhile.
    let now = run.sim.now();
    let node = &mut run.sim.nodes[caller];
    assert_eq!(
        node.work.len(),
        2,
        "both calls answered, both scores asked for"
    );
    assert_eq!(node.agent.live_calls(), 2);
    assert!(node.results.is_empty());
    // The scores come back in the other order, later: each judges its own call's step.
    let work = std::mem::take(&mut node.work);
    node.agent
        .handle_work_done(now, work[1].0, pesq_result(&work[1].1, 2.1));
    node.agent
        .handle_work_done(now, work[0].0, pesq_result(&work[0].1, 4.2));
    node.service(now);
    run.run(secs(60));
    let results = run.results("caller");
    assert_eq!(results.len(), 2);
    let passed: Vec<bool> = results.iter().map(CallResult::passed).collect();
    assert_eq!(passed.iter().filter(|p| **p).count(), 1, "{passed:?}");
    let failed = results.iter().find(|r| !r.passed()).expect("one failed");
    assert_eq!(failed.failures.len(), 1, "{}", messages(failed));
    assert_eq!(failed.failures[0].kind, FailureKind::PesqLow);
    assert_eq!(failed.pesq, vec![2.1]);
    for r in run.results("callee") {
        assert!(r.passed(), "{}", messages(r));
    }
}

#[test]
fn calls_whose_scores_are_outstanding_end_cleanly_on_ctrl_c_and_their_results_are_dropped() {
    let mut run = pesq_calls();
    let caller = run.index("caller");
    assert_eq!(run.sim.nodes[caller].work.len(), 2, "both calls scoring");
    let stop = run.sim.now() + ms(100);
    run.sim.nodes[caller].stop_at = Some(stop);
    run.run(secs(60));
    let now = run.sim.now();
    let node = &mut run.sim.nodes[caller];
    assert_eq!(node.results.len(), 2);
    for r in &node.results {
        assert!(!r.passed());
        assert!(
            r.failures
                .iter()
                .all(|f| f.kind == FailureKind::Interrupted),
            "{}",
            messages(r)
        );
    }
    // The scores of calls gone are dropped.
    for (key, work) in std::mem::take(&mut node.work) {
        assert!(!node.agent.has_call(key));
        node.agent
            .handle_work_done(now, key, pesq_result(&work, 4.2));
    }
    node.service(now);
    assert_eq!(node.results.len(), 2);
    assert_eq!(node.agent.live_calls(), 0);
}

#[test]
fn a_callees_responses_name_the_account_called_in_their_contact_not_the_roles_first() {
    const TWO_USERS: &str = r#"
name: agent-contact
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 3400, count: 3 }
media:
  codecs: [PCMU]
roles:
  callee:
    accounts: 3400..3401
    listen: 127.0.0.1:5070
    steps:
      - answer: { ring: 100ms }
      - wait_for: bye
  caller:
    accounts: "3402"
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:3401@127.0.0.1:5070", timeout: 5s }
      - hangup: { after: 1s }
"#;
    let responses: std::rc::Rc<std::cell::RefCell<Vec<String>>> = std::rc::Rc::default();
    let kept = responses.clone();
    let mut run = Run::new(TWO_USERS, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes).into_owned();
        if (text.starts_with("SIP/2.0 180") || text.starts_with("SIP/2.0 200"))
            && text.contains(" INVITE\r\n")
        {
            kept.borrow_mut()
                .push(header_value(&text, "Contact").to_owned());
        }
        Intercept::Pass
    });
    run.run(secs(60));
    assert!(only(run.results("caller")).passed());
    let responses = responses.borrow();
    assert_eq!(responses.len(), 2, "{responses:?}");
    for contact in responses.iter() {
        assert_eq!(contact, "<sip:3401@127.0.0.1:5070>");
    }
}

#[test]
fn each_end_of_a_call_is_listed_once_begun_with_its_call_id() {
    let mut run = one_call();
    run.sim.run_for(secs(1));
    let (caller, callee) = (run.index("caller"), run.index("callee"));
    let begun = |run: &mut Run, node: usize| -> Vec<(CallKey, String)> {
        std::iter::from_fn(|| run.sim.nodes[node].agent.poll_begun()).collect()
    };
    let (of_caller, of_callee) = (begun(&mut run, caller), begun(&mut run, callee));
    assert_eq!(of_caller.len(), 1);
    assert_eq!(of_callee.len(), 1);
    // The caller's began before its INVITE was sent; it has it now.
    assert!(of_caller[0].1.is_empty());
    let (_, caller_id) = run
        .node("caller")
        .agent
        .call_label(of_caller[0].0)
        .expect("live");
    assert!(!caller_id.is_empty());
    assert_eq!(caller_id, of_callee[0].1, "both ends under one Call-ID");
    run.run(secs(120));
    assert!(begun(&mut run, caller).is_empty(), "once");
}

#[test]
fn a_call_refused_at_once_is_listed_as_begun_all_the_same() {
    let mut run = Run::new(LOAD, LinkConfig::new(ms(10)));
    run.plan(8, ms(50));
    run.run(secs(60));
    let refused: std::collections::BTreeSet<String> = run
        .results("busy")
        .iter()
        .map(|r| r.call_id.clone())
        .collect();
    assert!(!refused.is_empty());
    let busy = run.index("busy");
    let begun: std::collections::BTreeSet<String> =
        std::iter::from_fn(|| run.sim.nodes[busy].agent.poll_begun())
            .map(|(_, id)| id)
            .collect();
    assert_eq!(
        begun, refused,
        "each refused INVITE's call, with its Call-ID"
    );
}

/// What a role's agent put on the network (`from`), as its ladder shows it: each datagram's
/// start line and CSeq, and whether it repeats a request of a transaction (not an ACK) sent
/// before, which is what a transaction timer's retransmission is.
fn sent_as_rungs(run: &Run, from: SocketAddr) -> Vec<(String, String, bool)> {
    let mut seen = std::collections::HashSet::new();
    sent_by(run, from)
        .map(|(s, text)| {
            let line = text.lines().next().unwrap_or_default().to_owned();
            let cseq = header_value(&text, "CSeq").to_owned();
            let again = !seen.insert(s.bytes.clone());
            let transaction_request = !line.starts_with("SIP/2.0") && !line.starts_with("ACK ");
            (line, cseq, again && transaction_request)
        })
        .collect()
}

/// The rungs of a ladder sent by its agent: start line, CSeq, retransmission.
fn sent_rungs(result: &CallResult) -> Vec<(String, String, bool)> {
    result
        .ladder
        .iter()
        .filter(|r| r.direction == crate::stats::ladder::Direction::Sent)
        .map(|r| (r.line.clone(), r.cseq.clone(), r.retransmission))
        .collect()
}

#[test]
fn a_failed_calls_ladder_holds_every_message_its_agent_sent_retransmissions_flagged() {
    // The caller's ACKs and BYEs are lost: the callee retransmits its 200 (each answered by
    // an ACK again) and fails for want of an ACK; the caller retransmits its BYE until Timer
    // F fails it. Both ladders are kept, and each must hold every datagram its side sent
    // until its result (the callee's BYE, sent as its failed call ends, comes after it).
    let mut run = one_call();
    run.sim.net.set_interceptor(|d| {
        if d.bytes.starts_with(b"ACK ") || d.bytes.starts_with(b"BYE ") {
            Intercept::Drop
        } else {
            Intercept::Pass
        }
    });
    run.run(secs(120));
    let caller = only(run.results("caller"));
    let callee = only(run.results("callee"));
    assert!(!caller.passed() && !callee.passed(), "both ends fail");
    let caller_sent = sent_as_rungs(&run, "127.0.0.1:5080".parse().expect("literal"));
    let mut callee_sent = sent_as_rungs(&run, callee_addr());
    let bye = callee_sent.iter().position(|s| s.1 == "1 BYE");
    callee_sent.truncate(bye.expect("the callee ends its failed call with a BYE"));
    assert!(
        caller_sent.iter().any(|s| s.2),
        "BYE retransmitted: {caller_sent:?}"
    );
    assert!(
        caller_sent
            .iter()
            .filter(|s| s.0.starts_with("ACK "))
            .count()
            > 1
    );
    assert!(
        callee_sent
            .iter()
            .filter(|s| s.0 == "SIP/2.0 200 OK")
            .count()
            > 1
    );
    assert_eq!(sent_rungs(caller), caller_sent);
    assert_eq!(sent_rungs(callee), callee_sent);
}
