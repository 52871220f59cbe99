//! `sipcheck call`: one real call with real audio, verified.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use sipcheck_core::media::intent::MediaIntent;
use sipcheck_core::sip::auth::{Credentials, Password};
use sipcheck_core::sip::uri::{host_literal, uri_host, SipTarget};
use sipcheck_core::ua::call::{
    CallEndReason, CallEvent, CallId, Endpoint, EndpointConfig, OfferPlacement, OutgoingCall,
};
use sipcheck_core::ua::register::{LocalEnd, RegisterParams};
use sipcheck_core::ua::registration::{Config as RegistrationConfig, Lifecycle, RegistrationEvent};
use sipcheck_core::ua::script::{CallScript, CommandError, Placed, ProbeCall, ScriptCommand};

use super::args::{parse_duration, parse_server, NetArgs};
use super::audio::{write_recording, AudioArgs, MediaSummary, PreparedAudio};
use super::client::os_seed;
use super::{connect, Network, ProbeError, Verdict};
use crate::drive::clock::sleep_until;
use crate::drive::media::MediaHandle;
use crate::drive::registration;
use crate::drive::sip::UaDriver;
use sipcheck_core::stats::ladder::{format_rung, Rung};

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
    /// Put the far end on hold (re-INVITE with a=sendonly) this long after the answer; the
    /// hold and the resume must each be answered 2xx.
    #[arg(long, value_parser = parse_duration)]
    pub hold_after: Option<Duration>,
    /// Resume (re-INVITE with a=sendrecv) this long after the hold; --expect-tone is then
    /// checked again after the resume.
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "hold_after")]
    pub hold_for: Duration,
    #[command(flatten)]
    pub audio: AudioArgs,
    #[command(flatten)]
    pub net: NetArgs,
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
pub async fn run(args: &CallArgs) -> Result<CallReport, ProbeError> {
    let (net, timers) = (&args.net.network(), args.net.timers());
    let target = SipTarget::parse(&args.target)?;
    let prepared = args.audio.prepare()?;
    if let Some(path) = prepared.record_path() {
        super::audio::check_recording(path)?;
    }
    let net = Network {
        transport: target.transport.unwrap_or(net.transport),
        local: net.local,
        timeout: net.timeout,
    };
    let deadline = net.timeout.map(|limit| (limit, Instant::now() + limit));
    let hop = args
        .proxy
        .clone()
        .or_else(|| args.server.clone())
        .unwrap_or_else(|| target.host_port(5060));
    let (transport, peer) = connect(&hop, &net).await?;
    let local = LocalEnd {
        transport: transport.kind(),
        addr: transport.local_addr(),
        routes: args
            .proxy
            .as_ref()
            .map(|_| vec![format!("<sip:{peer};lr>")])
            .unwrap_or_default(),
    };
    let rtp = args
        .audio
        .port_range()
        .bind(local.addr.ip())
        .await
        .map_err(|e| ProbeError::Invalid(format!("cannot bind an RTP port: {e}")))?;
    let rtp_port = rtp
        .local_addr()
        .map_err(|e| ProbeError::Invalid(e.to_string()))?
        .port();

    let mut config = EndpointConfig::new(local.clone());
    config.timers = timers;
    let seed = os_seed();
    let endpoint = Endpoint::new(config, sipcheck_core::ids::IdGen::new(seed));
    let mut driver = UaDriver::new(transport, endpoint, true);
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
        failures: Vec::new(),
        timings: Timings::default(),
        media: None,
        hold: None,
        peer_holds: 0,
        interrupted: false,
        ladder: Vec::new(),
    };
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

    let mut registration = None;
    if args.register {
        let Some(user) = &user else {
            return Err(ProbeError::Invalid("--register needs --user".into()));
        };
        let mut lifecycle = Lifecycle::new(
            RegistrationConfig {
                params: RegisterParams {
                    user: user.clone(),
                    domain: domain.clone(),
                    credentials: credentials.clone().expect("user given"),
                    expires: 300,
                },
                local: local.clone(),
                refresh: false,
                registrar: peer.to_string(),
            },
            sipcheck_core::ids::IdGen::new(seed ^ 0x5eed),
        );
        lifecycle.register(Instant::now());
        let registering = register_step(&mut driver, &mut lifecycle, peer);
        match within(deadline, Duration::ZERO, registering).await {
            Ok(()) => registration = Some(lifecycle),
            Err(failure) => {
                report
                    .failures
                    .push(format!("registration failed: {failure}"));
                report.ladder = driver
                    .ladder
                    .as_ref()
                    .map(|l| l.rungs().to_vec())
                    .unwrap_or_default();
                return Ok(report);
            }
        }
    }

    let from_uri = match &user {
        Some(u) => format!("sip:{u}@{domain}"),
        None => format!("sip:sipcheck@{}", uri_host(local.addr.ip())),
    };
    let media_desc = prepared.local_media(local.addr.ip(), rtp_port, seed >> 1);
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
        extra_headers: Vec::new(),
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
    };
    let (script, call, finished) = drive_call(&mut driver, plan, outgoing, &prepared, rtp).await?;
    report.call_id = Some(script.call_id().to_string()).filter(|id| !id.is_empty());

    // A transport failure says what failed (ICMP port unreachable …), not only that one did.
    let unreachable = driver.unreachable.clone();
    let describe = move |r: &CallEndReason| match (r, &unreachable) {
        (CallEndReason::TransportError, Some((addr, error))) => {
            format!("{r}: {addr} is unreachable: {error}")
        }
        (CallEndReason::NoCredentials { .. }, _) => {
            format!("{r}: no password given (--password or SIP_PASSWORD)")
        }
        _ => r.to_string(),
    };
    let mut media = None;
    if let (Some(negotiated), Some(finished)) = (script.negotiated(), &finished) {
        let (summary, _) = prepared.summarize(negotiated, &finished.report);
        if let (Some(path), Some(samples)) = (prepared.record_path(), &finished.recording) {
            write_recording(path, samples)?;
        }
        media = Some(summary);
    }
    let left = driver.endpoint().record(call).cloned();
    let outcome = script
        .finish_probe(left, finished.as_ref().map(|f| &f.report), &describe)
        .expect("a probe's script");
    if let (Some(summary), true) = (&mut media, outcome.dtmf_failed) {
        summary.dtmf_sent = None;
    }
    report.media = media;
    report.interrupted = outcome.interrupted;
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

    if let Some(mut lifecycle) = registration {
        // The binding's removal gets 2 s of its own past --timeout, when that is nearer.
        lifecycle.stop(Instant::now());
        let removing = register_step(&mut driver, &mut lifecycle, peer);
        if let Err(failure) = within(deadline, Duration::from_secs(2), removing).await {
            report
                .failures
                .push(format!("unregistration failed: {failure}"));
        }
    }
    if report.failures.is_empty() {
        report.verdict = Verdict::Passed;
    }
    report.ladder = driver
        .ladder
        .as_ref()
        .map(|l| l.rungs().to_vec())
        .unwrap_or_default();
    Ok(report)
}

/// `work`, given up at the `--timeout` deadline (but no sooner than `grace` from now).
async fn within(
    deadline: Option<(Duration, Instant)>,
    grace: Duration,
    work: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let Some((limit, at)) = deadline else {
        return work.await;
    };
    let at = at.max(Instant::now() + grace);
    match tokio::time::timeout_at(at.into(), work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no final response within --timeout {}",
            humantime::format_duration(limit)
        )),
    }
}

/// Carry the REGISTERs `lifecycle` has to send through the driver (a registration or an
/// unregistration, with its challenge round); the failure, as printed, if it failed.
pub(crate) async fn register_step(
    driver: &mut UaDriver,
    lifecycle: &mut Lifecycle,
    registrar: SocketAddr,
) -> Result<(), String> {
    let mut path = registration::DriverPath { driver, registrar };
    for event in registration::exchange(lifecycle, &mut path).await {
        if let RegistrationEvent::Failed { error } | RegistrationEvent::UnregisterFailed { error } =
            &event
        {
            return Err(registration::describe(error));
        }
    }
    Ok(())
}

/// Place the call and run its script ([`CallScript::probe`]) until the call ends: the
/// script decides, this carries out its commands on the endpoint and the media stream.
/// Returns the script, the call and its media stream's end (when one ran).
async fn drive_call(
    driver: &mut UaDriver,
    plan: ProbeCall,
    outgoing: OutgoingCall<SocketAddr>,
    prepared: &PreparedAudio,
    rtp: tokio::net::UdpSocket,
) -> Result<(CallScript, CallId, Option<crate::drive::media::Finished>), ProbeError> {
    // Ready to receive as soon as the offer is out (RFC 3264 §5.1).
    let handle = MediaHandle::listen(rtp);
    let (events_tx, mut media_events) = tokio::sync::mpsc::unbounded_channel();
    handle.set_events(crate::drive::media::EventSink::channel(events_tx));
    let mut ids = sipcheck_core::ids::IdGen::new(os_seed());
    let mut script = CallScript::probe(Instant::now(), plan);
    let mut outgoing = Some(outgoing);
    let mut call = None;
    let mut interrupted = false;
    let ctrl_c = crate::signal::interrupted();
    tokio::pin!(ctrl_c);
    script.start(Instant::now());
    loop {
        while let Some(command) = script.poll_command() {
            let now = Instant::now();
            match command {
                ScriptCommand::Invite { .. } => {
                    let Some(outgoing) = outgoing.take() else {
                        continue;
                    };
                    let local = outgoing.local_media.clone();
                    let placed = driver
                        .endpoint()
                        .invite(now, outgoing)
                        .map_err(|e| ProbeError::Invalid(e.to_string()))?;
                    call = Some(placed);
                    let call_id = driver
                        .endpoint()
                        .sip_call_id(placed)
                        .unwrap_or_default()
                        .to_string();
                    script.handle_placed(Instant::now(), Ok(Placed { call_id, local }));
                }
                ScriptCommand::Hangup => {
                    if let Some(call) = call {
                        let _ = driver.endpoint().hangup(now, call);
                    }
                }
                ScriptCommand::Cancel => {
                    if let Some(call) = call {
                        let _ = driver.endpoint().cancel(now, call);
                    }
                }
                ScriptCommand::Reinvite(media) => {
                    let sent = match call {
                        Some(call) => driver
                            .endpoint()
                            .reinvite(now, call, *media)
                            .map_err(|e| CommandError::Refused(e.to_string())),
                        None => Err(CommandError::TransportGone),
                    };
                    script.handle_reinvite_sent(Instant::now(), sent);
                }
                ScriptCommand::Media(MediaIntent::Start(negotiated)) => {
                    let session = prepared.session(&negotiated, &mut ids);
                    handle.start(session, negotiated.remote_rtp);
                }
                ScriptCommand::Media(intent) => handle.apply(intent),
                ScriptCommand::Ring | ScriptCommand::Accept | ScriptCommand::Reject(_) => {}
            }
        }
        if script.is_done() {
            break;
        }
        let Some(id) = call else {
            unreachable!("a probe's script places its call first")
        };
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(ProbeError::Transport)?;
                match event {
                    CallEvent::Incoming { call: other, .. } => {
                        let _ = driver.endpoint().reject(Instant::now(), other, 486);
                    }
                    event if event_call(&event) == Some(id) => {
                        script.handle_call_event(Instant::now(), event);
                    }
                    _ => {}
                }
            }
            Some(event) = media_events.recv() => {
                script.handle_media_event(Instant::now(), event);
            }
            _ = sleep_until(script.poll_timeout()) => script.handle_timeout(Instant::now()),
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                script.stop(Instant::now());
            }
        }
    }
    let call = call.expect("placed: a probe's script is done only once placed");
    let finished = match script.has_media() {
        true => handle.stop().await,
        false => None,
    };
    // What the stream reported up to its end (a tone heard just before the call ended).
    while let Ok(event) = media_events.try_recv() {
        script.handle_media_event(Instant::now(), event);
    }
    Ok((script, call, finished))
}

/// The call an event is about.
fn event_call<D>(event: &CallEvent<D>) -> Option<CallId> {
    match event {
        CallEvent::Incoming { call, .. }
        | CallEvent::Progress { call, .. }
        | CallEvent::EarlyMedia { call, .. }
        | CallEvent::Answered { call, .. }
        | CallEvent::MediaUpdated { call, .. }
        | CallEvent::UpdateFailed { call, .. }
        | CallEvent::Ended { call, .. } => Some(*call),
        _ => None,
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
        match self.verdict {
            Verdict::Passed => writeln!(out, "PASS"),
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => {
                writeln!(out, "FAIL: {}", self.failures.join("; "))
            }
        }
    }
}
