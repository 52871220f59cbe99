//! `sipcheck call`: one real call with real audio, verified.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use sipcheck_core::sdp::{Direction, LocalMedia};
use sipcheck_core::sip::auth::{Credentials, Password};
use sipcheck_core::sip::transaction::TimerConfig;
use sipcheck_core::sip::uri::{host_literal, uri_host, SipTarget};
use sipcheck_core::ua::call::{
    CallEndReason, CallEvent, CallId, CallRecord, Endpoint, EndpointConfig, OfferPlacement,
    OutgoingCall,
};
use sipcheck_core::ua::register::{LocalEnd, RegisterParams};
use sipcheck_core::ua::registration::{Config as RegistrationConfig, Lifecycle, RegistrationEvent};

use super::audio::{write_recording, AudioArgs, MediaSummary, PreparedAudio};
use super::client::os_seed;
use super::{connect, Network, ProbeError, Verdict};
use crate::clock::sleep_until;
use crate::media::{MediaHandle, PortRange};
use crate::registration;
use crate::ua::UaDriver;
use sipcheck_core::stats::ladder::{format_rung, Rung};

/// What to call and how.
#[derive(Debug, Clone)]
pub struct CallArgs {
    /// The SIP URI to call.
    pub target: String,
    /// Registrar/proxy `host[:port]` to send through (default: the target's host).
    pub server: Option<String>,
    /// Outbound proxy `host[:port]`: requests go there with a pre-loaded Route.
    pub proxy: Option<String>,
    /// User name for From, REGISTER and digest authentication.
    pub user: Option<String>,
    /// Password (never printed).
    pub password: Option<Password>,
    /// Domain of our address of record (default: the server's host).
    pub domain: Option<String>,
    /// Register before calling (and unregister after).
    pub register: bool,
    /// Hang up this long after the answer.
    pub duration: Duration,
    /// Cancel this long after the INVITE (the call is expected to end with 487).
    pub cancel_after: Option<Duration>,
    /// Give up (CANCEL) if not answered within this time.
    pub answer_timeout: Duration,
    /// Put the far end on hold (re-INVITE `a=sendonly`) this long after the answer.
    pub hold_after: Option<Duration>,
    /// Resume (re-INVITE `a=sendrecv`) this long after the hold.
    pub hold_for: Duration,
    /// Media options.
    pub audio: AudioArgs,
    /// Local RTP ports.
    pub rtp_ports: (u16, u16),
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
pub async fn run(
    args: &CallArgs,
    net: &Network,
    timers: TimerConfig,
) -> Result<CallReport, ProbeError> {
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
    let rtp = PortRange::new(args.rtp_ports.0, args.rtp_ports.1)
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
    let call = driver
        .endpoint()
        .invite(
            Instant::now(),
            OutgoingCall {
                request_uri: target.uri.clone(),
                from_uri,
                to_uri: target.uri.clone(),
                destination: peer,
                // A challenge with no password given ends the call naming that, rather
                // than answering with an empty password.
                credentials: credentials.filter(Credentials::has_password),
                local_media: media_desc.clone(),
                local: local.clone(),
                offer: OfferPlacement::InInvite,
                extra_headers: Vec::new(),
            },
        )
        .map_err(|e| ProbeError::Invalid(e.to_string()))?;
    report.call_id = driver.endpoint().sip_call_id(call).map(str::to_string);

    let mut outcome = drive_call(
        &mut driver,
        call,
        args,
        &prepared,
        rtp,
        &media_desc,
        deadline,
    )
    .await?;
    report.interrupted = outcome.interrupted;
    report.failures.extend(outcome.dtmf_error.clone());
    report
        .failures
        .extend(outcome.hold_failures.iter().cloned());
    let record = outcome.record;
    let reason = record.reason().cloned();
    report.final_code = record.final_code;
    report.bye_code = record.bye_code;
    report.cancel_code = record.cancel_code;
    // A transport failure says what failed (ICMP port unreachable …), not only that one did.
    let describe = |r: &CallEndReason| match (r, &driver.unreachable) {
        (CallEndReason::TransportError, Some((addr, error))) => {
            format!("{r}: {addr} is unreachable: {error}")
        }
        (CallEndReason::NoCredentials { .. }, _) => {
            format!("{r}: no password given (--password or SIP_PASSWORD)")
        }
        _ => r.to_string(),
    };
    report.end_reason = reason.as_ref().map(describe);
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

    if let Some((negotiated, finished)) = &outcome.media {
        let (summary, failures) = prepared.summarize(negotiated, &finished.report);
        if let (Some(path), Some(samples)) = (prepared.record_path(), &finished.recording) {
            write_recording(path, samples)?;
        }
        let mut summary = summary;
        if outcome.dtmf_error.is_some() {
            summary.dtmf_sent = None;
        }
        report.media = Some(summary);
        if record.answer.is_some() {
            report.failures.extend(failures);
        }
        // The tone looked for again from the last resume on (the last watch).
        if let Some((_, label)) = prepared.expected_tone() {
            let heard = finished
                .report
                .tones
                .get(outcome.resume_watches)
                .is_some_and(|t| t.detection.is_some());
            if outcome.resume_watches > 0 && !heard && record.answer.is_some() {
                report
                    .failures
                    .push(format!("expected tone {label} not heard after the resume"));
            }
            if let Some(hold) = &mut outcome.hold {
                hold.tone_after_resume = hold.resumed.then_some(heard);
            }
        }
    }
    report.hold = outcome.hold.clone();
    report.peer_holds = outcome.peer_holds;

    match (&args.cancel_after, &reason) {
        (Some(_), Some(CallEndReason::Cancelled))
            if !record.answered_before_cancel && record.final_code == Some(487) => {}
        (Some(_), Some(CallEndReason::Cancelled)) if !record.answered_before_cancel => {
            // Cancelled before any provisional, then refused (a challenge left unanswered):
            // the CANCEL itself was never tried.
            let got = record
                .final_code
                .map_or("no final response".to_string(), |c| c.to_string());
            report.failures.insert(
                0,
                format!("expected 487 after the CANCEL, but the INVITE got {got}"),
            );
        }
        (Some(_), Some(r @ CallEndReason::CancelFailed { .. })) => {
            report.failures.insert(0, format!("cancel failed: {r}"));
        }
        (None, Some(r @ CallEndReason::CancelFailed { .. })) if !report.interrupted => {
            report.failures.insert(
                0,
                format!(
                    "not answered within the answer timeout ({:.1} s), then the CANCEL failed: {r}",
                    args.answer_timeout.as_secs_f64()
                ),
            );
        }
        (Some(_), _) => report.failures.insert(
            0,
            format!(
                "expected the call to be cancelled, but it {}",
                reason.as_ref().map_or("did not end".to_string(), describe)
            ),
        ),
        (None, _) if record.answer.is_none() => report.failures.insert(
            0,
            format!(
                "not answered: {}",
                reason
                    .as_ref()
                    .map_or("no final response".to_string(), describe)
            ),
        ),
        (None, Some(r)) if !r.is_normal_clearing() => report
            .failures
            .insert(0, format!("call ended abnormally: {}", describe(r))),
        _ => {}
    }
    if let Some(failure) = record.bye_failure() {
        report.failures.push(failure.to_string());
    }
    if report.interrupted {
        report.failures.push("interrupted".into());
    }
    if let Some(limit) = outcome.timed_out {
        report.failures.push(format!(
            "gave up: --timeout {} reached",
            humantime::format_duration(limit)
        ));
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

struct CallOutcome {
    record: CallRecord,
    dtmf_error: Option<String>,
    hold: Option<HoldReport>,
    hold_failures: Vec<String>,
    /// Tone watches added at resumes (after the first one of the call).
    resume_watches: usize,
    /// Times the far end put the call on hold.
    peer_holds: u32,
    media: Option<(sipcheck_core::sdp::Negotiated, crate::media::Finished)>,
    interrupted: bool,
    /// The `--timeout` limit, when it ended the call.
    timed_out: Option<Duration>,
}

/// Run the call's events and timers until it ends.
async fn drive_call(
    driver: &mut UaDriver,
    call: CallId,
    args: &CallArgs,
    prepared: &PreparedAudio,
    rtp: tokio::net::UdpSocket,
    local_media: &LocalMedia,
    deadline: Option<(Duration, Instant)>,
) -> Result<CallOutcome, ProbeError> {
    let invited = Instant::now();
    // Ready to receive as soon as the offer is out (RFC 3264 §5.1).
    let mut rtp = Some(MediaHandle::listen(rtp));
    let mut media: Option<(sipcheck_core::sdp::Negotiated, MediaHandle)> = None;
    let mut cancel_at = args.cancel_after.map(|d| invited + d);
    let mut give_up_at = Some(invited + args.answer_timeout);
    let mut hangup_at: Option<Instant> = None;
    let mut dtmf_at: Option<Instant> = None;
    let mut hold_at: Option<Instant> = None;
    let mut resume_at: Option<Instant> = None;
    let mut hold: Option<HoldReport> = None;
    let mut hold_failures = Vec::new();
    // Which re-INVITE of ours awaits its answer: the hold (true) or the resume (false).
    let mut reinvite_pending: Option<bool> = None;
    // RTP is expected (the call is not on hold either way); tone watches added at resumes.
    let mut expecting = true;
    let mut resume_watches = 0;
    let mut peer_holds = 0;
    let mut interrupted = false;
    let mut timed_out = None;
    // At the limit the call is hung up (CANCEL or BYE); its end is awaited 2 s more at most.
    let mut limit_at = deadline.map(|(_, at)| at);
    let mut abandon_at: Option<Instant> = None;
    let mut dtmf_error = None;
    let mut ids = sipcheck_core::ids::IdGen::new(os_seed());
    let ctrl_c = crate::signal::interrupted();
    tokio::pin!(ctrl_c);
    let record = loop {
        let next = [
            cancel_at, give_up_at, hangup_at, dtmf_at, hold_at, resume_at, limit_at, abandon_at,
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(ProbeError::Transport)?;
                match event {
                    CallEvent::EarlyMedia { call: id, negotiated } if id == call => {
                        if let Some(handle) = rtp.take() {
                            let session = prepared.session(&negotiated, &mut ids);
                            handle.start(session, negotiated.remote_rtp);
                            media = Some((negotiated, handle));
                        }
                    }
                    CallEvent::Answered { call: id, negotiated } if id == call => {
                        give_up_at = None;
                        cancel_at = None;
                        if let Some(handle) = rtp.take() {
                            let session = prepared.session(&negotiated, &mut ids);
                            handle.start(session, negotiated.remote_rtp);
                            media = Some((negotiated, handle));
                        } else if let Some((n, handle)) = &mut media {
                            handle.set_remote(negotiated.remote_rtp);
                            *n = negotiated;
                        }
                        let now = Instant::now();
                        hangup_at = Some(now + args.duration);
                        hold_at = args.hold_after.map(|after| now + after);
                        if prepared.send_dtmf().is_some() {
                            dtmf_at = Some(now + Duration::from_millis(500));
                        }
                    }
                    CallEvent::MediaUpdated { call: id, negotiated } if id == call => {
                        if let Some((n, handle)) = &mut media {
                            handle.follow(&negotiated);
                            *n = negotiated;
                        }
                        match (reinvite_pending.take(), hold.as_mut()) {
                            (Some(true), Some(h)) => h.held = true,
                            (Some(false), Some(h)) => h.resumed = true,
                            (pending, _) => reinvite_pending = pending,
                        }
                        // A resume, ours or the far end's: the expected tone is looked for
                        // again from now on.
                        let expects = media.as_ref().is_some_and(|(n, _)| n.expects_rtp());
                        if expects && !expecting {
                            if let (Some((_, handle)), Some((query, _))) =
                                (&media, prepared.expected_tone())
                            {
                                if handle.with(move |s, _| s.expect_tone(query)).await.is_some() {
                                    resume_watches += 1;
                                }
                            }
                        }
                        if media.as_ref().is_some_and(|(n, _)| n.remote_hold) && expecting {
                            peer_holds += 1;
                        }
                        expecting = expects;
                    }
                    CallEvent::UpdateFailed { call: id, code } if id == call => {
                        if let Some(which) = reinvite_pending.take() {
                            let which = if which { "hold" } else { "resume" };
                            hold_failures.push(format!("the {which} re-INVITE was answered {code}"));
                        }
                    }
                    CallEvent::Ended { call: id, record } if id == call => break *record,
                    CallEvent::Incoming { call: other, .. } => {
                        let _ = driver.endpoint().reject(Instant::now(), other, 486);
                    }
                    _ => {}
                }
            }
            _ = sleep_until(next) => {
                let now = Instant::now();
                if dtmf_at.is_some_and(|t| t <= now) {
                    dtmf_at = None;
                    if let (Some((_, handle)), Some(digits)) = (&media, prepared.send_dtmf()) {
                        if let Err(e) = handle.send_dtmf(digits).await {
                            dtmf_error = Some(format!("DTMF not sent: {e}"));
                        }
                    }
                }
                if cancel_at.is_some_and(|t| t <= now) || give_up_at.is_some_and(|t| t <= now) {
                    cancel_at = None;
                    give_up_at = None;
                    let _ = driver.endpoint().cancel(now, call);
                }
                if hold_at.is_some_and(|t| t <= now) {
                    hold_at = None;
                    let mut held = local_media.clone();
                    held.direction = Direction::SendOnly;
                    hold = Some(HoldReport::default());
                    match driver.endpoint().reinvite(now, call, held) {
                        Ok(()) => {
                            reinvite_pending = Some(true);
                            resume_at = Some(now + args.hold_for);
                        }
                        Err(e) => hold_failures.push(format!("cannot put the call on hold: {e}")),
                    }
                }
                if resume_at.is_some_and(|t| t <= now) {
                    resume_at = None;
                    match driver.endpoint().reinvite(now, call, local_media.clone()) {
                        Ok(()) => reinvite_pending = Some(false),
                        Err(e) => hold_failures.push(format!("cannot resume the call: {e}")),
                    }
                }
                if hangup_at.is_some_and(|t| t <= now) {
                    hangup_at = None;
                    if let Some(which) = reinvite_pending.take() {
                        let which = if which { "hold" } else { "resume" };
                        hold_failures.push(format!("the {which} re-INVITE had no answer"));
                    }
                    // RFC 3261 §15.1.1: media stops once the BYE is sent.
                    if let Some((_, handle)) = &media {
                        handle.set_sending(false);
                    }
                    let _ = driver.endpoint().hangup(now, call);
                }
                if limit_at.is_some_and(|t| t <= now) {
                    limit_at = None;
                    cancel_at = None;
                    give_up_at = None;
                    hangup_at = None;
                    timed_out = deadline.map(|(limit, _)| limit);
                    abandon_at = Some(now + Duration::from_secs(2));
                    if let Some((_, handle)) = &media {
                        handle.set_sending(false);
                    }
                    let _ = driver.endpoint().hangup(now, call);
                }
                if abandon_at.is_some_and(|t| t <= now) {
                    // The peer did not conclude the hang-up in time: the call is left as is.
                    if let Some(record) = driver.endpoint().record(call).cloned() {
                        break record;
                    }
                    abandon_at = None;
                }
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                cancel_at = None;
                give_up_at = None;
                hangup_at = None;
                let _ = driver.endpoint().hangup(Instant::now(), call);
            }
        }
    };
    let media = match media {
        Some((negotiated, handle)) => handle.stop().await.map(|f| (negotiated, f)),
        None => None,
    };
    if let Some(which) = reinvite_pending {
        let which = if which { "hold" } else { "resume" };
        hold_failures.push(format!(
            "the {which} re-INVITE had no answer before the call ended"
        ));
    }
    Ok(CallOutcome {
        record,
        dtmf_error,
        hold,
        hold_failures,
        resume_watches,
        peer_holds,
        media,
        interrupted,
        timed_out,
    })
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
