//! `sipcheck call`: one real call with real audio, verified.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use std::sync::Arc;

use sipcheck_core::media::pesq::{
    MAX_REFERENCE_SAMPLES, MIN_RANGE, MIN_REFERENCE_SAMPLES, RECORD_SLACK_SAMPLES,
};
use sipcheck_core::media::session::{MediaReport, MediaSession};
use sipcheck_core::scenario::model::Account;
use sipcheck_core::sdp::{Negotiated, DEFAULT_PTIME_MS};
use sipcheck_core::sip::auth::{Credentials, Password};
use sipcheck_core::sip::uri::{host_literal, uri_host, SipTarget};
use sipcheck_core::stats::ladder::{format_rung, Ladder, Rung};
use sipcheck_core::ua::agent::probe::{ProbeConfig, ProbeRegister, ProbeStepError};
use sipcheck_core::ua::agent::{Agent, AgentConfig, CallKey};
use sipcheck_core::ua::call::{
    CallEndReason, Endpoint, EndpointConfig, OfferPlacement, OutgoingCall, SIGNATURE_HEADER,
};
use sipcheck_core::ua::register::LocalEnd;
use sipcheck_core::ua::script::{ProbeCall, ProbePesq, PROBE_SIGNATURE_CALL};

use super::args::{parse_duration, parse_server, NetArgs};
use super::audio::{write_recording, AudioArgs, MediaSummary, PreparedAudio};
use super::{connect, Handshakes, ProbeError, Verdict};
use crate::drive::agent::{Driver, Media};
use crate::drive::media::{Finished, MediaHandle};
use crate::drive::os_seed;
use crate::drive::registration;
use crate::drive::transport::Unreachable;
use crate::drive::wire::Wire;

/// What to call and how: the options of `sipcheck call`, read by clap (each field's doc is its
/// help text, as printed: `HOST[:PORT]` is no link).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The SIP URI to call, e.g. sip:1002@pbx.example.com.
    #[arg(env = "SIP_TARGET", value_name = "URI")]
    pub target: String,
    /// Registrar/proxy to send the call through, HOST[:PORT] (default: the URI's host).
    #[arg(long, env = "SIP_SERVER", value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub server: Option<String>,
    /// Outbound proxy, HOST[:PORT]: requests go there with a pre-loaded Route.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub proxy: Option<String>,
    /// User name: From, REGISTER and digest username.
    #[arg(long, env = "SIP_USER")]
    pub user: Option<String>,
    /// Password for digest authentication (prefer the SIP_PASSWORD environment variable).
    #[arg(long, env = "SIP_PASSWORD", hide_env_values = true)]
    pub password: Option<Password>,
    /// Domain of our address of record (default: the server's host).
    #[arg(long)]
    pub domain: Option<String>,
    /// Register before calling (and unregister afterwards).
    #[arg(long)]
    pub register: bool,
    /// Hang up (BYE) this long after the answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// CANCEL this long after the INVITE; the call then passes only if it ends with 487.
    #[arg(long, value_parser = parse_duration)]
    pub cancel_after: Option<Duration>,
    /// CANCEL (and fail) if not answered within this time.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub answer_timeout: Duration,
    /// Play the call's audio signature and fail unless the peer's (`sipcheck answer` or a
    /// scenario's callee with signature steps) or our own, echoed, comes back; the INVITE
    /// carries X-Sipcheck-Signature (see the README's "Audio signatures").
    #[arg(long, conflicts_with_all = ["play_tone", "play_wav", "expect_tone"])]
    pub signature: bool,
    /// Follow redirections (3xx): send the INVITE again to the Contacts, highest q first,
    /// at most MAX times (default 5); without it a 3xx fails the call naming its Contacts.
    #[arg(long, value_name = "MAX", num_args = 0..=1, require_equals = true, default_missing_value = "5")]
    pub follow_redirects: Option<u32>,
    /// Put the far end on hold (re-INVITE with a=sendonly) this long after the answer; the
    /// hold and the resume must each be answered 2xx.
    #[arg(long, value_parser = parse_duration)]
    pub hold_after: Option<Duration>,
    /// Resume (re-INVITE with a=sendrecv) this long after the hold; --expect-tone is then
    /// checked again after the resume.
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "hold_after")]
    pub hold_for: Duration,
    /// Record the speech received from the answer for the reference's length plus 1 s and
    /// fail unless its PESQ score (ITU-T P.862, raw, −0.5 to 4.5) against REF.wav reaches MIN
    /// (default 3.0); the far end plays the same speech (e.g. `sipcheck answer --play-wav
    /// REF.wav`). --duration must cover the recording.
    #[arg(long, value_name = "REF.wav[:MIN]", value_parser = parse_pesq_spec, conflicts_with = "signature")]
    pub expect_pesq: Option<PesqSpec>,
    #[command(flatten)]
    pub audio: AudioArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `--expect-pesq REF.wav[:MIN]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PesqSpec {
    /// The reference speech.
    pub path: std::path::PathBuf,
    /// The lowest raw score that passes.
    pub min: f64,
}

/// The minimum of `--expect-pesq` when none is given.
pub const DEFAULT_PESQ_MIN: f64 = 3.0;

/// `REF.wav[:MIN]`: a path, then optionally `:` and a minimum in 1.0–4.5.
pub fn parse_pesq_spec(s: &str) -> Result<PesqSpec, String> {
    let (path, min) = match s.rsplit_once(':') {
        Some((path, min)) if !path.is_empty() && min.parse::<f64>().is_ok() => {
            let min: f64 = min.parse().unwrap_or(DEFAULT_PESQ_MIN);
            if !(MIN_RANGE.0..=MIN_RANGE.1).contains(&min) {
                return Err(format!(
                    "the PESQ minimum {min} is outside {}–{}",
                    MIN_RANGE.0, MIN_RANGE.1
                ));
            }
            (path, min)
        }
        _ => (s, DEFAULT_PESQ_MIN),
    };
    if path.is_empty() {
        return Err("a reference WAV file is needed".into());
    }
    Ok(PesqSpec {
        path: path.into(),
        min,
    })
}

/// The PESQ score of `--expect-pesq`.
#[derive(Debug, Clone, Serialize)]
pub struct PesqReport {
    /// The reference as given.
    pub reference: String,
    /// The raw ITU-T P.862 score.
    pub score: f64,
    /// The same mapped to MOS-LQO (ITU-T P.862.1).
    pub mos_lqo: f64,
    /// The minimum asked.
    pub min: f64,
}

/// The reference of `--expect-pesq`, read and checked: 1 s to 30 s, and `--duration` long
/// enough to record it and 1 s more.
fn load_pesq(spec: &PesqSpec, duration: Duration) -> Result<ProbePesq, ProbeError> {
    let name = spec.path.display().to_string();
    let bytes = std::fs::read(&spec.path)
        .map_err(|e| ProbeError::Invalid(format!("cannot read {name}: {e}")))?;
    let reference = sipcheck_core::media::wav::decode(&bytes)
        .map_err(|e| ProbeError::Invalid(format!("{name}: {e}")))?;
    if !(MIN_REFERENCE_SAMPLES..=MAX_REFERENCE_SAMPLES).contains(&reference.len()) {
        return Err(ProbeError::Invalid(format!(
            "{name}: a PESQ reference plays 1 s to 30 s, this one {:.1} s",
            reference.len() as f64 / 8000.0
        )));
    }
    let needed = Duration::from_millis(
        ((reference.len() + RECORD_SLACK_SAMPLES) as u64 * 1000).div_ceil(8000),
    );
    if duration < needed {
        return Err(ProbeError::Invalid(format!(
            "--expect-pesq {name} records {:.1} s of audio (the reference and 1 s more):              --duration {} is too short",
            needed.as_secs_f64(),
            humantime::format_duration(duration)
        )));
    }
    Ok(ProbePesq {
        reference,
        name,
        min: spec.min,
    })
}

/// SIP timings of the call, milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timings {
    /// INVITE to the first provisional response.
    pub invite_to_first_provisional_ms: Option<f64>,
    /// INVITE to 180/183 (post-dial delay).
    pub invite_to_ringing_ms: Option<f64>,
    /// INVITE to 200.
    pub invite_to_answer_ms: Option<f64>,
    /// BYE to its final response.
    pub bye_rtt_ms: Option<f64>,
    /// Answer to the end of the call.
    pub duration_ms: Option<f64>,
}

/// The result of `sipcheck call`.
#[derive(Debug, Serialize)]
pub struct CallReport {
    /// Always `"call"`.
    pub command: &'static str,
    /// The Request-URI.
    pub target: String,
    /// The SIP Call-ID.
    pub call_id: Option<String>,
    /// Pass or fail.
    pub verdict: Verdict,
    /// The final status of the INVITE.
    pub final_code: Option<u16>,
    /// The final status of our BYE (`None`: none sent, or none answered).
    pub bye_code: Option<u16>,
    /// The final status of our CANCEL (`None`: none sent, or none answered).
    pub cancel_code: Option<u16>,
    /// Why the call ended.
    pub end_reason: Option<String>,
    /// The Request-URIs the INVITE was redirected to, in order (`--follow-redirects`); the
    /// last is the one that answered, when the call was answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// Everything that failed (empty on pass).
    pub failures: Vec<String>,
    /// SIP timings.
    pub timings: Timings,
    /// Media figures, when media flowed.
    pub media: Option<MediaSummary>,
    /// The hold and resume of `--hold-after`, when asked for.
    pub hold: Option<HoldReport>,
    /// Times the far end put the call on hold (`sendonly`, `inactive` or `0.0.0.0`).
    pub peer_holds: u32,
    /// Whether the run was interrupted (Ctrl-C).
    pub interrupted: bool,
    /// What was heard of the audio signature when it held (`--signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'static str>,
    /// The signature's verdict (`--signature`, the call answered with media): `verified`,
    /// `echo`, `crossed_audio`, `wrong_audio`, `no_audio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_verdict: Option<&'static str>,
    /// The round trip of our own signature heard back from an echo (`--signature`),
    /// milliseconds, within one 20 ms block (see the README's "Mouth-to-ear delay").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<f64>,
    /// The PESQ score of the received speech (`--expect-pesq`), when it was scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pesq: Option<PesqReport>,
    /// Where the INVITE was sent.
    pub server: String,
    /// The handshakes of the connection (TLS, WS, WSS).
    #[serde(flatten)]
    pub handshake: Handshakes,
    /// Every SIP message sent and received.
    pub ladder: Vec<Rung>,
}

/// What became of `--hold-after`: each re-INVITE answered, and the expected tone heard again
/// after the resume.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HoldReport {
    /// The hold re-INVITE (`a=sendonly`) was answered 2xx.
    pub held: bool,
    /// The resume re-INVITE (`a=sendrecv`) was answered 2xx.
    pub resumed: bool,
    /// The expected tone was heard after the resume (`None` without `--expect-tone`).
    pub tone_after_resume: Option<bool>,
}

fn ms(from: Instant, to: Option<Instant>) -> Option<f64> {
    to.map(|t| t.saturating_duration_since(from).as_secs_f64() * 1000.0)
}

/// Host part of `host[:port]`.
pub(crate) fn host_of(server: &str) -> String {
    super::register::host_of(server)
}

/// Place the call and verify it.
///
/// The core's role [`Agent`], as a prober ([`Agent::probe`]), decides everything: the
/// registration first (when asked), the call's steps and timers, the refusal of calls that
/// come meanwhile, the unregistration, each bounded by `--timeout`. The driver loop runs it
/// (`exec::single`); this sets it up (the RTP socket bound before the INVITE) and
/// makes the report.
pub async fn run(args: &CallArgs) -> Result<CallReport, ProbeError> {
    let timers = args.net.timers();
    let target = SipTarget::parse(&args.target)?;
    let net = args.net.network_for(&target)?;
    let prepared = args.audio.prepare()?;
    if let Some(path) = prepared.record_path() {
        super::audio::check_recording(path)?;
    }
    let deadline = net.timeout.map(|limit| (limit, Instant::now() + limit));
    let hop = args
        .proxy
        .clone()
        .or_else(|| args.server.clone())
        .unwrap_or_else(|| target.host_port(net.transport.default_port()));
    let (transport, peer) = connect(&hop, &net).await?;
    let handshake = Handshakes::of(&transport);
    let local = LocalEnd {
        transport: transport.kind(),
        addr: transport.local_addr(),
        routes: args
            .proxy
            .as_ref()
            .map(|_| vec![format!("<sip:{peer};lr>")])
            .unwrap_or_default(),
    };
    // Bound before the INVITE: a range with no port free fails here, not as a call.
    let rtp = args
        .audio
        .port_range()
        .bind(local.addr.ip())
        .await
        .map_err(|e| ProbeError::Invalid(format!("cannot bind an RTP port: {e}")))?;
    rtp.local_addr()
        .map_err(|e| ProbeError::Invalid(e.to_string()))?;

    let mut config = EndpointConfig::new(local.clone());
    config.timers = timers;
    let seed = os_seed();
    let endpoint = Endpoint::new(config, sipcheck_core::ids::IdGen::new(seed));
    let ladder = Ladder::new(Instant::now());
    let domain = args
        .domain
        .as_deref()
        .map(|d| host_literal(d).into_owned())
        .or_else(|| args.server.as_deref().map(host_of))
        .unwrap_or_else(|| target.host.clone());
    let user = args.user.clone();
    let credentials = user
        .as_ref()
        .map(|u| Credentials::new(u.clone(), args.password.clone().unwrap_or_default()));

    let mut report = CallReport {
        command: "call",
        target: target.uri.clone(),
        call_id: None,
        verdict: Verdict::Failed,
        final_code: None,
        bye_code: None,
        cancel_code: None,
        end_reason: None,
        redirects: Vec::new(),
        failures: Vec::new(),
        timings: Timings::default(),
        media: None,
        hold: None,
        peer_holds: 0,
        interrupted: false,
        signature: None,
        signature_verdict: None,
        round_trip_ms: None,
        pesq: None,
        server: peer.to_string(),
        handshake,
        ladder: Vec::new(),
    };
    let pesq = args
        .expect_pesq
        .as_ref()
        .map(|spec| load_pesq(spec, args.duration))
        .transpose()?;
    if let Some(after) = args.hold_after {
        if after + args.hold_for >= args.duration {
            return Err(ProbeError::Invalid(format!(
                "--hold-after {} and --hold-for {} end after the call's --duration {}: the \
                 resume would not be verified",
                humantime::format_duration(after),
                humantime::format_duration(args.hold_for),
                humantime::format_duration(args.duration)
            )));
        }
    }
    let register = match (args.register, &user) {
        (false, _) => None,
        (true, None) => return Err(ProbeError::Invalid("--register needs --user".into())),
        (true, Some(user)) => Some(ProbeRegister {
            account: Account {
                user: user.clone(),
                password: args.password.clone().unwrap_or_default(),
                domain: domain.clone(),
            },
            registrar: peer,
            expires: 300,
            ids: sipcheck_core::ids::IdGen::new(seed ^ 0x5eed),
        }),
    };

    let from_uri = match &user {
        Some(u) => format!("sip:{u}@{domain}"),
        None => format!("sip:sipcheck@{}", uri_host(local.addr.ip())),
    };
    // Its port is the RTP socket's, set by the agent once the socket is open.
    let media_desc = prepared.local_media(local.addr.ip(), 0, seed >> 1);
    let outgoing = OutgoingCall {
        request_uri: target.uri.clone(),
        from_uri,
        to_uri: target.uri.clone(),
        destination: peer,
        // A challenge with no password given ends the call naming that, rather than
        // answering with an empty password.
        credentials: credentials.filter(Credentials::has_password),
        local_media: media_desc,
        local: local.clone(),
        offer: OfferPlacement::InInvite,
        extra_headers: if args.signature {
            vec![(SIGNATURE_HEADER.into(), PROBE_SIGNATURE_CALL.to_string())]
        } else {
            Vec::new()
        },
        max_redirects: args.follow_redirects.unwrap_or(0),
    };
    let plan = ProbeCall {
        target: target.uri.clone(),
        answer_timeout: args.answer_timeout,
        duration: args.duration,
        cancel_after: args.cancel_after,
        hold: args.hold_after.map(|after| (after, args.hold_for)),
        send_dtmf: prepared.send_dtmf().map(str::to_string),
        expect_tone: prepared.expected_tone(),
        expect: prepared.expect(),
        limit: deadline.map(|(limit, at)| (at, humantime::format_duration(limit).to_string())),
        signature: args.signature,
        pesq: pesq.clone(),
    };
    let agent_config = AgentConfig {
        role: "call".into(),
        local: local.clone(),
        next_hop: Some(peer),
        domain: domain.clone(),
        codecs: args.audio.codecs.clone(),
        ptime_ms: DEFAULT_PTIME_MS,
        rtp: true,
        wavs: Arc::default(),
        accounts: Vec::new(),
        steps: Arc::default(),
        srtp: prepared.srtp(),
        sips: false,
        signature_parties: Vec::new().into(),
    };
    let agent = Agent::new(agent_config, endpoint);
    let media = ProbeMedia {
        rtp: Some(rtp),
        prepared: &prepared,
        ids: sipcheck_core::ids::IdGen::new(os_seed()),
        recording: None,
    };
    let mut driver = Driver::new(Wire::new(transport, Some(ladder)), agent, media);
    let config = ProbeConfig {
        plan,
        outgoing,
        register,
    };
    let result = crate::exec::single::drive(&mut driver, config).await?;
    let Driver { wire, media, .. } = driver;
    let recording = media.recording;
    let unreachable = wire.unreachable;
    report.ladder = wire
        .ladder
        .map(|ladder| ladder.rungs().to_vec())
        .unwrap_or_default();

    if let Some(failure) = result.registration {
        report.interrupted = failure == ProbeStepError::Interrupted;
        report
            .failures
            .push(format!("registration failed: {}", step_failure(&failure)));
        return Ok(report);
    }
    if let Some(call) = result.call {
        report.call_id = Some(call.script.call_id().to_string()).filter(|id| !id.is_empty());
        let describe = move |r: &CallEndReason| end_reason_text(r, unreachable.as_ref());
        let mut media = None;
        if let (Some(negotiated), Some(media_report)) = (call.script.negotiated(), &call.report) {
            let (summary, _) = prepared.summarize(negotiated, media_report);
            if let (Some(path), Some(samples)) = (prepared.record_path(), &recording) {
                write_recording(path, samples)?;
            }
            media = Some(summary);
        }
        let outcome = call
            .script
            .finish_probe(call.record, call.report.as_ref(), &describe)
            .expect("a probe's script");
        if let (Some(summary), true) = (&mut media, outcome.dtmf_failed) {
            summary.dtmf_sent = None;
        }
        report.media = media;
        report.interrupted = outcome.interrupted;
        report.signature = outcome.signature;
        report.signature_verdict = outcome.signature_verdict;
        report.pesq = match (outcome.pesq, &pesq) {
            (Some(score), Some(p)) => Some(PesqReport {
                reference: p.name.clone(),
                score: (score.raw * 1000.0).round() / 1000.0,
                mos_lqo: (score.mos_lqo * 1000.0).round() / 1000.0,
                min: p.min,
            }),
            _ => None,
        };
        report.round_trip_ms = call
            .report
            .as_ref()
            .and_then(MediaReport::round_trip)
            .map(|d| d.as_secs_f64() * 1000.0);
        report.failures = outcome.failures;
        report.hold = outcome.hold.map(|h| HoldReport {
            held: h.held,
            resumed: h.resumed,
            tone_after_resume: h.tone_after_resume,
        });
        report.peer_holds = outcome.peer_holds;
        if let Some(record) = &outcome.record {
            report.final_code = record.final_code;
            report.bye_code = record.bye_code;
            report.cancel_code = record.cancel_code;
            report.end_reason = record.reason().map(&describe);
            report.redirects.clone_from(&record.redirects);
            report.timings = Timings {
                invite_to_first_provisional_ms: ms(record.invite, record.first_provisional),
                invite_to_ringing_ms: ms(record.invite, record.first_ringing),
                invite_to_answer_ms: ms(record.invite, record.answer),
                bye_rtt_ms: record
                    .bye_sent
                    .and_then(|sent| ms(sent, record.bye_response)),
                duration_ms: record
                    .answer
                    .and_then(|a| ms(a, record.end.as_ref().map(|e| e.at))),
            };
        }
    } else {
        // The agent ends a probe without its call only when the registration failed (handled
        // above); should anything else ever do so, no call is no pass.
        report.failures.push("no call was placed".into());
    }
    if let Some(failure) = result.unregistration {
        report
            .failures
            .push(format!("unregistration failed: {}", step_failure(&failure)));
    }
    if report.failures.is_empty() {
        report.verdict = Verdict::Passed;
    }
    Ok(report)
}

/// A registration's or unregistration's failure as printed.
/// A call's end reason as the probe prints it. A transport failure says what failed: the
/// words of the ICMP error seen (`unreachable`: ICMP port unreachable …), not only that one
/// did, and its cause once. The transport's own words (a failed send's) may already hold the
/// ICMP error's (they are shown alone), say less than they do (the ICMP error's are shown
/// instead), or say something else (both are shown).
fn end_reason_text(r: &CallEndReason, unreachable: Option<&(SocketAddr, Unreachable)>) -> String {
    match (r, unreachable) {
        (CallEndReason::TransportError { detail }, Some((addr, error))) => {
            let icmp = format!("{addr} is unreachable: {error}");
            // A socket error's words as the ICMP error's are written: no prefix, no errno.
            let said = detail.trim();
            let said = said.strip_prefix("socket error: ").unwrap_or(said);
            let said = said
                .split(" (os error")
                .next()
                .unwrap_or(said)
                .to_lowercase();
            let seen = icmp.to_lowercase();
            if said.contains(&seen) {
                r.to_string()
            } else if seen.contains(&said) {
                CallEndReason::TransportError { detail: icmp }.to_string()
            } else {
                format!("{r}; {icmp}")
            }
        }
        (CallEndReason::NoCredentials { .. }, _) => {
            format!("{r}: no password given (--password or SIP_PASSWORD)")
        }
        _ => r.to_string(),
    }
}

fn step_failure(failure: &ProbeStepError) -> String {
    match failure {
        ProbeStepError::Failed(error) => registration::describe(error),
        ProbeStepError::Limit(_) | ProbeStepError::Interrupted => failure.to_string(),
    }
}

/// The call's media: its RTP socket bound before the INVITE, its session from the flags, its
/// recording kept for the report.
struct ProbeMedia<'a> {
    /// The RTP socket, until the agent opens the stream.
    rtp: Option<tokio::net::UdpSocket>,
    prepared: &'a PreparedAudio,
    ids: sipcheck_core::ids::IdGen,
    /// The call's recording, once its stream stopped.
    recording: Option<Vec<i16>>,
}

impl Media for ProbeMedia<'_> {
    fn open(&mut self, _ip: IpAddr) -> std::io::Result<(MediaHandle, u16)> {
        let socket = self
            .rtp
            .take()
            .ok_or_else(|| std::io::Error::other("the RTP socket is taken"))?;
        let port = socket.local_addr()?.port();
        // Ready to receive as soon as the offer is out (RFC 3264 §5.1).
        Ok((MediaHandle::listen(socket), port))
    }

    fn session(&mut self, _now: Instant, negotiated: &Negotiated) -> Option<MediaSession> {
        Some(self.prepared.session(negotiated, &mut self.ids))
    }

    fn stopped(&mut self, _key: CallKey, finished: Option<Box<Finished>>) -> Option<MediaReport> {
        finished.map(|f| {
            self.recording = f.recording;
            f.report
        })
    }
}

impl CallReport {
    /// Human-readable output: the ladder, the media figures, then PASS or FAIL.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.ladder {
            writeln!(out, "{}", format_rung(r))?;
        }
        if let Some(call_id) = &self.call_id {
            writeln!(out, "call-id: {call_id}")?;
        }
        self.handshake.write_text(out, &self.server)?;
        let t = &self.timings;
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        writeln!(
            out,
            "sip: first provisional {}, ringing {}, answered {}, bye round trip {}, duration {}",
            show(t.invite_to_first_provisional_ms),
            show(t.invite_to_ringing_ms),
            show(t.invite_to_answer_ms),
            show(t.bye_rtt_ms),
            show(t.duration_ms)
        )?;
        if !self.redirects.is_empty() {
            writeln!(
                out,
                "redirected: {} -> {}",
                self.target,
                self.redirects.join(" -> ")
            )?;
        }
        if let Some(reason) = &self.end_reason {
            writeln!(out, "ended: {reason}")?;
        }
        if let Some(media) = &self.media {
            media.write_text(out)?;
        }
        if let Some(hold) = &self.hold {
            let yes = |b: bool| if b { "yes" } else { "no" };
            write!(
                out,
                "hold: held {}, resumed {}",
                yes(hold.held),
                yes(hold.resumed)
            )?;
            match hold.tone_after_resume {
                Some(heard) => writeln!(out, ", tone after the resume {}", yes(heard))?,
                None => writeln!(out)?,
            }
        }
        if self.peer_holds > 0 {
            writeln!(
                out,
                "the far end put the call on hold {} time(s)",
                self.peer_holds
            )?;
        }
        if let Some(heard) = self.signature {
            writeln!(out, "signature: {heard}")?;
        }
        if let Some(rt) = self.round_trip_ms {
            writeln!(out, "round trip: {rt:.0} ms (own signature echoed, ±20 ms)")?;
        }
        if let Some(p) = &self.pesq {
            writeln!(
                out,
                "pesq: {:.2} (MOS-LQO {:.2}) against {}, minimum {}",
                p.score, p.mos_lqo, p.reference, p.min
            )?;
        }
        match self.verdict {
            Verdict::Passed => writeln!(out, "PASS"),
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => {
                writeln!(out, "FAIL: {}", self.failures.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::transport::TransportError;

    fn refused() -> (SocketAddr, Unreachable) {
        let addr: SocketAddr = "127.0.0.1:5090".parse().unwrap();
        let error = Unreachable {
            errno: 111,
            icmp: Some((3, 3)),
            offender: Some("127.0.0.1".parse().unwrap()),
        };
        (addr, error)
    }

    fn transport_error(detail: &str) -> CallEndReason {
        CallEndReason::TransportError {
            detail: detail.to_owned(),
        }
    }

    const ICMP: &str = "127.0.0.1:5090 is unreachable: ICMP port unreachable: connection \
                        refused (reported by 127.0.0.1)";

    #[test]
    fn an_icmp_error_is_named_once_whether_or_not_the_transport_said_it_already() {
        let seen = refused();
        let once = format!("transport error: {ICMP}");
        // The calls ended by the ICMP error itself: the transport said nothing more.
        assert_eq!(end_reason_text(&transport_error(""), Some(&seen)), once);
        // A send that failed on it: its words are the ICMP error's.
        let sent = TransportError::Unreachable {
            addr: seen.0,
            error: seen.1.clone(),
        }
        .to_string();
        assert_eq!(sent, ICMP);
        assert_eq!(end_reason_text(&transport_error(&sent), Some(&seen)), once);
        // The socket's error for it says less: the ICMP error's words are kept.
        let io = TransportError::Io(std::io::Error::from_raw_os_error(111)).to_string();
        assert_eq!(io, "socket error: Connection refused (os error 111)");
        assert_eq!(end_reason_text(&transport_error(&io), Some(&seen)), once);
        // More than the ICMP error's words: those, as they came.
        let more = format!("{ICMP}, retried");
        assert_eq!(
            end_reason_text(&transport_error(&more), Some(&seen)),
            format!("transport error: {more}")
        );
    }

    #[test]
    fn another_cause_than_the_icmp_errors_is_shown_beside_it_and_none_alone() {
        let seen = refused();
        let closed = "the TCP connection to 127.0.0.1:5090 was closed by the peer";
        assert_eq!(
            end_reason_text(&transport_error(closed), Some(&seen)),
            format!("transport error: {closed}; {ICMP}")
        );
        assert_eq!(
            end_reason_text(&transport_error(closed), None),
            format!("transport error: {closed}")
        );
        assert_eq!(
            end_reason_text(&transport_error(""), None),
            "transport error"
        );
        // Other reasons are not touched by an ICMP error.
        let rejected = CallEndReason::Rejected {
            code: 486,
            reason: "Busy Here".into(),
        };
        assert_eq!(
            end_reason_text(&rejected, Some(&seen)),
            rejected.to_string()
        );
    }
}
