//! `sipcheck answer`: the responder — auto-answers calls, plays and verifies audio.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::dtmf::Digit;
use sipcheck_core::media::intent::MediaIntent;
use sipcheck_core::media::session::MediaReport;
use sipcheck_core::scenario::model::{Located, Step};
use sipcheck_core::sdp::{Direction, LocalMedia, Negotiated};
use sipcheck_core::sip::auth::{Credentials, Password};
use sipcheck_core::sip::build::reason_phrase;
use sipcheck_core::sip::msg::BytesStr;
use sipcheck_core::sip::transaction::TimerConfig;
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::sip::uri::host_literal;
use sipcheck_core::stats::outcome::Side;
use sipcheck_core::ua::admission::{media_before_ack, Admission, Admit, Limits};
use sipcheck_core::ua::call::{CallError, CallEvent, CallId, CallState, Endpoint, EndpointConfig};
use sipcheck_core::ua::register::{LocalEnd, RegisterParams};
use sipcheck_core::ua::registration::{Config as RegistrationConfig, Lifecycle};
use sipcheck_core::ua::script::responder::{Refused, Responder};
use sipcheck_core::ua::script::{CallScript, CommandError, ScriptCommand, ScriptConfig};
use tokio::task::JoinSet;

use crate::drive::clock::sleep_until;
use crate::drive::media::{Finished, MediaHandle, PortRange};
use crate::drive::registration;
use crate::drive::sip::UaDriver;
use crate::drive::transport::{self, SipSocket, UdpTransport};
use crate::probe::audio::{write_recording, AudioArgs, Lateness, MediaSummary, PreparedAudio};
use crate::probe::call::{host_of, register_step};
use crate::probe::client::os_seed;
use crate::probe::{ProbeError, Verdict};

/// How the responder behaves.
#[derive(Debug, Clone)]
pub struct AnswerArgs {
    /// Local SIP address to listen on (UDP).
    pub listen: SocketAddr,
    /// Register here first (and keep the registration fresh).
    pub server: Option<String>,
    /// User to register as (and digest username).
    pub user: Option<String>,
    /// Password (never printed).
    pub password: Option<Password>,
    /// Domain of the address of record (default: the server's host).
    pub domain: Option<String>,
    /// Registration lifetime.
    pub expires: u32,
    /// Ring (180) this long before answering.
    pub ring: Duration,
    /// Reject every call with this code instead of answering.
    pub reject: Option<u16>,
    /// Hang up this long after answering (else wait for the caller's BYE).
    pub duration: Option<Duration>,
    /// Calls at once; more are answered 486 Busy Here.
    pub max_calls: usize,
    /// Server transactions alive at once; more requests are answered 503 (stateless).
    pub max_transactions: usize,
    /// Stop after this many calls have ended.
    pub calls: Option<u64>,
    /// Media options.
    pub audio: AudioArgs,
    /// Local RTP ports.
    pub rtp_ports: (u16, u16),
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Print one JSON object per call (and the totals) instead of text.
    pub json: bool,
    /// Print only the calls that failed.
    pub quiet: bool,
    /// Answer every offer `a=inactive`, without an RTP socket.
    pub no_rtp: bool,
}

/// One finished call.
#[derive(Debug, Serialize)]
pub struct AnsweredCall {
    /// Always `"call"`.
    pub kind: &'static str,
    /// Sequence number of the call in this run.
    pub index: u64,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The caller (From).
    pub from: String,
    /// Pass or fail.
    pub verdict: Verdict,
    /// The final status we sent.
    pub final_code: Option<u16>,
    /// The final status of our BYE (`--duration`; `None`: none sent, or none answered).
    pub bye_code: Option<u16>,
    /// Why the call ended.
    pub end_reason: String,
    /// Everything that failed.
    pub failures: Vec<String>,
    /// Media figures.
    pub media: Option<MediaSummary>,
}

/// The totals printed at the end.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Always `"totals"`.
    pub kind: &'static str,
    /// Calls received.
    pub received: u64,
    /// Calls answered.
    pub answered: u64,
    /// Calls refused because `max_calls` were active.
    pub busy: u64,
    /// Unconfirmed calls (no ACK yet) dropped for newer ones: the budget of unconfirmed
    /// calls, or every slot, was full. Each a failure.
    pub unconfirmed_dropped: u64,
    /// INVITEs refused with 486 because their source already held its share of
    /// unconfirmed calls. Each a failure.
    pub source_limited: u64,
    /// Calls rejected as asked (`--reject`).
    pub rejected: u64,
    /// INVITEs refused by sipcheck, each a failure: malformed or unacceptable (400, 415,
    /// 420, 481, 482 before a call began; 488 when no offered codec is one we accept).
    pub refused: u64,
    /// Calls that passed.
    pub passed: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// Requests refused statelessly with `503 Service Unavailable` (and `Retry-After`)
    /// because the server transaction table was full. Any makes the run fail: not every
    /// request was served.
    pub overload_503: u64,
    /// Datagrams that were not SIP messages, ignored (no response can be sent to them).
    pub malformed: u64,
    /// Registration problems.
    pub registration_error: Option<String>,
    /// Send-pacing lateness over every call's frames: whether sipcheck kept up (`None` when
    /// no frame was sent, e.g. with `--no-rtp`).
    pub pacing_lateness_ms: Option<Lateness>,
    /// Frames skipped over every call because sipcheck fell more than a burst behind
    /// (generator overrun).
    pub frames_skipped: u64,
    #[serde(skip)]
    lateness_us: Option<hdrhistogram::Histogram<u32>>,
}

struct Active {
    /// The From of the INVITE (shared with its buffer; copied only for a printed line).
    from: BytesStr,
    /// Where the INVITE came from.
    source: SocketAddr,
    /// Refused by admission or shutdown, before any step of its own.
    refused: Option<Refused>,
    /// RTP is held back until the ACK: the SDP names another address than the INVITE's
    /// source.
    held: bool,
    /// The call's steps and outcome.
    script: CallScript,
    /// The script's deadline in the timer set.
    armed: Option<Instant>,
    /// The RTP socket of our answer, until the media starts.
    socket: Option<tokio::net::UdpSocket>,
    media: Option<(Negotiated, MediaHandle)>,
    /// Why the offer was refused (488), with what it offered.
    refusal: Option<String>,
}

/// What every call's script is made from.
struct Scripts {
    /// An admitted call's steps, from the flags.
    admitted: Arc<Vec<Located<Step>>>,
    /// A call's configuration (no scenario: no role, user or WAV files).
    config: ScriptConfig,
}

impl Scripts {
    fn new(args: &AnswerArgs, prepared: &PreparedAudio) -> Self {
        // Without RTP no DTMF can be sent: none is tried.
        let send_dtmf = prepared
            .send_dtmf()
            .filter(|_| !args.no_rtp)
            .map(|d| Digit::parse_str(d).expect("validated in prepare"));
        let responder = Responder {
            ring: args.ring,
            reject: args.reject,
            send_dtmf,
            hangup_after: args.duration,
        };
        Self {
            admitted: Arc::new(responder.steps()),
            config: ScriptConfig {
                role: String::new(),
                side: Side::Callee,
                user: String::new(),
                account_domain: String::new(),
                peer_user: String::new(),
                domain: String::new(),
                rtp: !args.no_rtp,
                wavs: Arc::default(),
                scheduled: None,
                start_lag: Duration::ZERO,
            },
        }
    }

    fn script(&self, now: Instant, refused: Option<Refused>) -> CallScript {
        let steps = match refused {
            Some(r) => Arc::new(r.steps()),
            None => Arc::clone(&self.admitted),
        };
        CallScript::responder(now, self.config.clone(), steps, String::new())
    }
}

/// Run the responder until `calls` calls have ended or Ctrl-C.
pub async fn run(args: &AnswerArgs, out: &mut impl Write) -> Result<Totals, ProbeError> {
    let prepared = args.audio.prepare()?;
    if let Some(path) = prepared.record_path() {
        crate::probe::audio::check_recording(path)?;
    }
    if let Some(code) = args.reject {
        if !(300..=699).contains(&code) {
            return Err(ProbeError::Invalid(format!(
                "--reject {code}: a rejection code is 300 to 699"
            )));
        }
    }
    let udp = UdpTransport::bind(args.listen, 4 << 20).await?;
    let transport = SipSocket::Udp(udp);
    let local = LocalEnd {
        transport: Transport::Udp,
        addr: transport.local_addr(),
        routes: Vec::new(),
    };
    let mut config = EndpointConfig::new(local.clone());
    config.timers = args.timers;
    // Every incoming INVITE is answered, rung or rejected as soon as it is seen, so the 100
    // Trying is left out (RFC 3261 §17.2.1): one datagram less per call, as SIPp's uas.
    config.trying = false;
    config.max_server_transactions = args.max_transactions;
    if let Some(user) = &args.user {
        config.contact_user = user.clone();
    }
    let seed = os_seed();
    let mut driver = UaDriver::new(transport, Endpoint::new(config, IdGen::new(seed)), false);
    let mut ids = IdGen::new(seed ^ 0x5eed);
    let ports = PortRange::new(args.rtp_ports.0, args.rtp_ports.1);
    let mut totals = Totals {
        kind: "totals",
        ..Totals::default()
    };
    let mut admission: Admission<CallId, std::net::IpAddr> =
        Admission::new(Limits::for_calls(args.max_calls));
    let mut timers: BTreeSet<(Instant, CallId)> = BTreeSet::new();
    // The calls whose timers are due, kept for reuse from one wake-up to the next.
    let mut due: Vec<CallId> = Vec::new();

    // Registration, refreshed before it expires.
    let mut registration = None;
    if let Some(server) = &args.server {
        let user = args
            .user
            .clone()
            .ok_or_else(|| ProbeError::Invalid("--server needs --user".into()))?;
        let registrar = transport::resolve(server, 5060).await?;
        let domain = args
            .domain
            .as_deref()
            .map_or_else(|| host_of(server), |d| host_literal(d).into_owned());
        let mut lifecycle = Lifecycle::new(
            RegistrationConfig {
                params: RegisterParams {
                    user: user.clone(),
                    domain,
                    credentials: Credentials::new(user, args.password.clone().unwrap_or_default()),
                    expires: args.expires,
                },
                local: local.clone(),
                refresh: true,
                registrar: registrar.to_string(),
            },
            IdGen::new(seed ^ 0x4e6),
        );
        lifecycle.register(Instant::now());
        register_step(&mut driver, &mut lifecycle, registrar)
            .await
            .map_err(ProbeError::Registration)?;
        registration = Some((lifecycle, registrar));
    }
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({
                "kind": "listening",
                "address": local.addr.to_string(),
                "registered": registration.is_some(),
            })
        );
    } else if registration.is_some() {
        let _ = writeln!(out, "registered; listening on {}", local.addr);
    } else {
        let _ = writeln!(out, "listening on {}", local.addr);
    }
    let _ = out.flush();

    let scripts = Scripts::new(args, &prepared);
    let env = Env {
        args,
        ports: &ports,
        prepared: &prepared,
        local: &local,
        seed,
    };
    let mut active: HashMap<CallId, Active> = HashMap::new();
    let mut finishing: JoinSet<(Ending, Option<Finished>)> = JoinSet::new();
    let mut ended: u64 = 0;
    let mut draining_since: Option<Instant> = None;
    let ctrl_c = crate::signal::interrupted();
    tokio::pin!(ctrl_c);
    loop {
        if args.calls.is_some_and(|n| ended >= n) && active.is_empty() && finishing.is_empty() {
            // Stay a little to answer retransmissions of the last BYE (its 200 may have been
            // lost): until no transaction is left, at most 4·T1 (two retransmissions).
            let until = Instant::now() + args.timers.t1 * 4;
            while !driver.endpoint().transactions().is_empty() && Instant::now() < until {
                tokio::select! {
                    _ = driver.next_event() => {}
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
            break;
        }
        if draining_since.is_some() && active.is_empty() && finishing.is_empty() {
            break;
        }
        if draining_since.is_some_and(|t| t.elapsed() >= DRAIN) {
            break;
        }
        // Timers of the active calls: each call's next deadline as (when, call), moved when
        // it moves and removed when the call ends, so a wake-up costs O(log n), not a scan,
        // and the set holds no more than the active calls.
        let next = timers
            .first()
            .map(|t| t.0)
            .into_iter()
            .chain(registration.as_ref().and_then(|(r, _)| r.poll_timeout()))
            // Woken at the end of the drain, whatever the calls are waiting for.
            .chain(draining_since.map(|t| t + DRAIN))
            .min();
        tokio::select! {
            event = driver.next_event() => {
                let now = Instant::now();
                match event? {
                    CallEvent::Incoming { call, from, source, .. } => {
                        totals.received += 1;
                        let shutting_down = draining_since.is_some();
                        let admit = if shutting_down {
                            None
                        } else {
                            Some(admission.admit(now, call, source.ip()))
                        };
                        if let Some(Admit::Accept { drop: Some(old) }) = admit {
                            // The oldest unconfirmed call gives its slot: nothing more is
                            // sent to it (its line says it was dropped).
                            totals.unconfirmed_dropped += 1;
                            let _ = driver.endpoint().abandon(now, old);
                        }
                        // Refused (and on a line of its own like every INVITE received):
                        // after Ctrl-C, when busy, or when its source holds its share.
                        let refused = match admit {
                            None => Some(Refused::ShuttingDown),
                            Some(Admit::Busy) => {
                                totals.busy += 1;
                                Some(Refused::Busy { max_calls: args.max_calls })
                            }
                            Some(Admit::SourceLimit) => {
                                totals.source_limited += 1;
                                Some(Refused::SourceLimited {
                                    source: source.ip(),
                                    per_source: Limits::for_calls(args.max_calls).per_source,
                                })
                            }
                            Some(Admit::Accept { .. }) => None,
                        };
                        if refused.is_none() && args.reject.is_some() {
                            totals.rejected += 1;
                        }
                        let mut script = scripts.script(now, refused);
                        script.start(now);
                        let mut entry = Active {
                            from,
                            source,
                            refused,
                            held: false,
                            script,
                            armed: None,
                            socket: None,
                            media: None,
                            refusal: None,
                        };
                        execute(&mut driver, call, &mut entry, &env, &mut ids, &mut timers).await;
                        active.insert(call, entry);
                    }
                    CallEvent::Answered { call, negotiated } => {
                        admission.confirmed(call);
                        if let Some(a) = active.get_mut(&call) {
                            totals.answered += 1;
                            if a.held {
                                // Confirmed: media goes where the SDP says.
                                a.held = false;
                                if let Some((_, handle)) = &a.media {
                                    handle.follow(&negotiated);
                                }
                            }
                            a.script.handle_call_event(now, CallEvent::<SocketAddr>::Answered { call, negotiated });
                            execute(&mut driver, call, a, &env, &mut ids, &mut timers).await;
                        }
                    }
                    CallEvent::InviteRefused { code, reason, from, call_id } => {
                        // Never a call, but an INVITE received: it is counted and shown.
                        totals.received += 1;
                        totals.refused += 1;
                        totals.failed += 1;
                        ended += 1;
                        let line = AnsweredCall {
                            kind: "call",
                            index: ended,
                            call_id,
                            from,
                            verdict: Verdict::Failed,
                            final_code: Some(code),
                            bye_code: None,
                            end_reason: format!("refused: {code} {}", reason_phrase(code)),
                            failures: vec![format!(
                                "INVITE refused with {code} {}: {reason}",
                                reason_phrase(code)
                            )],
                            media: None,
                        };
                        print_call(&line, args.json, out);
                    }
                    CallEvent::MediaUpdated { call, negotiated } => {
                        if let Some(a) = active.get_mut(&call) {
                            a.script.handle_call_event(now, CallEvent::<SocketAddr>::MediaUpdated { call, negotiated });
                            execute(&mut driver, call, a, &env, &mut ids, &mut timers).await;
                        }
                    }
                    CallEvent::Ended { call, record } => {
                        admission.ended(call);
                        let Some(mut a) = active.remove(&call) else { continue };
                        if let Some(at) = a.armed {
                            timers.remove(&(at, call));
                        }
                        ended += 1;
                        // The script's end: nothing more to carry out, the call is gone.
                        a.script.handle_call_event(now, CallEvent::<SocketAddr>::Ended { call, record });
                        let ending = Ending {
                            index: ended,
                            from: a.from,
                            refused: a.refused,
                            refusal: a.refusal,
                            script: a.script,
                            negotiated: None,
                        };
                        match a.media {
                            // The media report comes from a scheduler thread: waited for
                            // beside the SIP loop, never in it (at hundreds of calls ending a
                            // second, waiting here held up every other call's signaling).
                            Some((negotiated, handle)) => {
                                finishing.spawn(async move {
                                    let finished = handle.stop().await;
                                    (Ending { negotiated: Some(negotiated), ..ending }, finished)
                                });
                            }
                            None => finish_call(ending, None, args, &prepared, &mut totals, out),
                        }
                    }
                    _ => {}
                }
            }
            _ = sleep_until(next) => {
                let now = Instant::now();
                due.clear();
                while let Some(&(at, call)) = timers.first() {
                    if at > now {
                        break;
                    }
                    timers.pop_first();
                    due.push(call);
                }
                for call in due.drain(..) {
                    let Some(a) = active.get_mut(&call) else { continue };
                    a.armed = None;
                    if driver.endpoint().state(call).is_none() {
                        // Ended (dropped), its Ended event not read yet.
                        continue;
                    }
                    a.script.handle_timeout(now);
                    execute(&mut driver, call, a, &env, &mut ids, &mut timers).await;
                }
                if let Some((lifecycle, registrar)) = &mut registration {
                    lifecycle.handle_timeout(now);
                    let mut path = registration::DriverPath { driver: &mut driver, registrar: *registrar };
                    for event in registration::exchange(lifecycle, &mut path).await {
                        if let Some(error) = event.error_message() {
                            totals.registration_error = Some(error);
                        }
                    }
                }
            }
            Some(joined) = finishing.join_next(), if !finishing.is_empty() => {
                if let Ok((ending, finished)) = joined {
                    finish_call(ending, finished, args, &prepared, &mut totals, out);
                }
            }
            _ = &mut ctrl_c => {
                if draining_since.is_some() {
                    // A second Ctrl-C: leave at once.
                    totals.interrupted = true;
                    finishing.abort_all();
                    break;
                }
                totals.interrupted = true;
                draining_since = Some(Instant::now());
                let now = Instant::now();
                for call in active.keys().copied().collect::<Vec<_>>() {
                    // A call still waiting for its ACK is dropped (a BYE could only follow
                    // an ACK that may never come); the others are hung up.
                    if driver.endpoint().state(call) == Some(CallState::AwaitingAck) {
                        let _ = driver.endpoint().abandon(now, call);
                    } else {
                        let _ = driver.endpoint().hangup(now, call);
                    }
                }
                ctrl_c.set(crate::signal::interrupted());
            }
        }
    }
    // Calls whose media reports are still on their way (a second Ctrl-C, or the drain's
    // limit).
    let until = Instant::now() + Duration::from_millis(500);
    while let Ok(Some(joined)) = tokio::time::timeout_at(until.into(), finishing.join_next()).await
    {
        if let Ok((ending, finished)) = joined {
            finish_call(ending, finished, args, &prepared, &mut totals, out);
        }
    }
    if let Some((mut lifecycle, registrar)) = registration {
        lifecycle.stop(Instant::now());
        if let Err(e) = register_step(&mut driver, &mut lifecycle, registrar).await {
            totals.registration_error = Some(format!("unregistration failed: {e}"));
        }
    }
    totals.malformed = driver.malformed;
    totals.overload_503 = driver.endpoint().transactions().counters().overload_503;
    Ok(totals)
}

/// A call that ended, with what its line needs once its media report is in.
struct Ending {
    index: u64,
    from: BytesStr,
    refused: Option<Refused>,
    refusal: Option<String>,
    /// The call's script, which judges it.
    script: CallScript,
    negotiated: Option<Negotiated>,
}

/// Judge an ended call (its script, with the media report judged over the whole call),
/// count it and print its line.
fn finish_call(
    ending: Ending,
    finished: Option<Finished>,
    args: &AnswerArgs,
    prepared: &PreparedAudio,
    totals: &mut Totals,
    out: &mut impl Write,
) {
    let mut media_failures = Vec::new();
    let mut media_summary = None;
    if let (Some(negotiated), Some(finished)) = (&ending.negotiated, &finished) {
        let (summary, failures) = prepared.summarize(negotiated, &finished.report);
        totals.add_media(&finished.report);
        if let (Some(path), Some(samples)) = (prepared.record_path(), &finished.recording) {
            let path = numbered(path, ending.index);
            if let Err(e) = write_recording(&path, samples) {
                media_failures.push(e.to_string());
            }
        }
        media_failures.extend(failures);
        media_summary = Some(summary);
    }
    let outcome =
        ending
            .script
            .finish_responder(ending.refused, ending.refusal.as_deref(), media_failures);
    if outcome.codec_refused {
        totals.refused += 1;
    }
    let verdict = if outcome.failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    match verdict {
        Verdict::Passed => totals.passed += 1,
        Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => totals.failed += 1,
    }
    if args.quiet && verdict == Verdict::Passed {
        return;
    }
    let line = AnsweredCall {
        kind: "call",
        index: ending.index,
        call_id: outcome.call_id,
        from: ending.from.to_string(),
        verdict,
        final_code: outcome.final_code,
        bye_code: outcome.bye_code,
        end_reason: outcome.end_reason,
        failures: outcome.failures,
        media: media_summary,
    };
    print_call(&line, args.json, out);
}

/// What carrying out a call's commands needs.
struct Env<'a> {
    args: &'a AnswerArgs,
    ports: &'a PortRange,
    prepared: &'a PreparedAudio,
    local: &'a LocalEnd,
    seed: u64,
}

/// Carry out a call's script's commands (feeding it the replies of those that have one),
/// then keep its next deadline (and only it) in the timer set.
async fn execute(
    driver: &mut UaDriver,
    call: CallId,
    a: &mut Active,
    env: &Env<'_>,
    ids: &mut IdGen,
    timers: &mut BTreeSet<(Instant, CallId)>,
) {
    while let Some(command) = a.script.poll_command() {
        let now = Instant::now();
        match command {
            ScriptCommand::Ring => {
                let _ = driver.endpoint().ring(now, call);
            }
            ScriptCommand::Accept => {
                let accepted = if env.args.no_rtp {
                    accept_inactive(driver, call, a, env)
                } else {
                    accept(driver, call, a, env).await
                };
                a.script.handle_accepted(Instant::now(), accepted);
            }
            ScriptCommand::Reject(code) => {
                let _ = driver.endpoint().reject(now, call, code);
            }
            ScriptCommand::Hangup | ScriptCommand::Cancel => {
                let _ = driver.endpoint().hangup(now, call);
            }
            // A responder's steps place no call and send no re-INVITE.
            ScriptCommand::Invite { .. } => {}
            ScriptCommand::Reinvite(_) => a.script.handle_reinvite_sent(
                now,
                Err(CommandError::Refused(
                    "a responder sends no re-INVITE".into(),
                )),
            ),
            ScriptCommand::Media(MediaIntent::Start(negotiated)) => {
                start_media(a, *negotiated, env, ids).await;
            }
            ScriptCommand::Media(MediaIntent::Follow(negotiated)) => {
                if let Some((n, handle)) = a.media.as_mut() {
                    handle.follow(&negotiated);
                    if a.held {
                        handle.set_sending(false);
                    }
                    *n = *negotiated;
                }
            }
            ScriptCommand::Media(intent) => {
                if let Some((_, handle)) = &a.media {
                    handle.apply(intent);
                }
            }
        }
    }
    let deadline = a.script.poll_timeout();
    if a.armed != deadline {
        if let Some(old) = a.armed.take() {
            timers.remove(&(old, call));
        }
        if let Some(at) = deadline {
            timers.insert((at, call));
            a.armed = Some(at);
        }
    }
}

/// Start the call's media: on the socket of our answer (bound again if it is gone), playing
/// and expecting what the flags say over the whole call.
async fn start_media(a: &mut Active, negotiated: Negotiated, env: &Env<'_>, ids: &mut IdGen) {
    let socket = match a.socket.take() {
        Some(socket) => socket,
        None => match env.ports.bind(env.local.addr.ip()).await {
            Ok(socket) => socket,
            Err(_) => return,
        },
    };
    let mut session = env.prepared.session(&negotiated, ids);
    if a.held {
        // Not a byte to an address the INVITE did not come from before its ACK.
        session.set_sending(false);
    }
    let handle = MediaHandle::spawn(socket, session, negotiated.remote_rtp);
    a.media = Some((negotiated, handle));
}

/// Answer the call from a new RTP socket (kept for its media).
async fn accept(
    driver: &mut UaDriver,
    call: CallId,
    a: &mut Active,
    env: &Env<'_>,
) -> Result<(LocalMedia, Option<Negotiated>), CommandError> {
    let now = Instant::now();
    let socket = match env.ports.bind(env.local.addr.ip()).await {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port free: refusing the call");
            // The script refuses it with 503.
            return Err(CommandError::NoRtpSocket(e.to_string()));
        }
    };
    let Ok(addr) = socket.local_addr() else {
        let _ = driver.endpoint().reject(now, call, 500);
        return Err(CommandError::Refused("no local RTP address".into()));
    };
    let media = env
        .prepared
        .local_media(addr.ip(), addr.port(), env.seed >> 1);
    match driver.endpoint().accept(now, call, media.clone()) {
        Ok(negotiated) => {
            if let Some(n) = &negotiated {
                // Not a byte to an address the INVITE did not come from before its ACK.
                a.held = !media_before_ack(n.remote_rtp.ip(), a.source.ip());
            }
            // Delayed offer: media starts with the ACK's answer, on this socket too.
            a.socket = Some(socket);
            Ok((media, negotiated))
        }
        // 488 was sent; the Ended event follows.
        Err(e) => {
            tracing::info!(error = %e, "call refused");
            let refusal = refusal_of(&e);
            a.refusal = Some(refusal.clone());
            Err(CommandError::Refused(refusal))
        }
    }
}

/// Why `accept` refused a call, as its line says it (the negotiation's words: what was
/// offered, what we accept).
fn refusal_of(e: &CallError) -> String {
    match e {
        CallError::Negotiation(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Answer `a=inactive` (RFC 3264 §6.1), with the discard port: no socket, no RTP either way.
fn accept_inactive(
    driver: &mut UaDriver,
    call: CallId,
    a: &mut Active,
    env: &Env<'_>,
) -> Result<(LocalMedia, Option<Negotiated>), CommandError> {
    let mut media = env
        .prepared
        .local_media(env.local.addr.ip(), DISCARD_PORT, env.seed >> 1);
    media.direction = Direction::Inactive;
    match driver
        .endpoint()
        .accept(Instant::now(), call, media.clone())
    {
        Ok(negotiated) => Ok((media, negotiated)),
        Err(e) => {
            tracing::info!(error = %e, "call refused");
            let refusal = refusal_of(&e);
            a.refusal = Some(refusal.clone());
            Err(CommandError::Refused(refusal))
        }
    }
}

/// How long the first Ctrl-C waits for the calls to end (their BYEs answered) before
/// leaving anyway.
const DRAIN: Duration = Duration::from_secs(1);

/// The port written in an inactive answer (RFC 863 discard; nothing is sent to it).
const DISCARD_PORT: u16 = 9;

/// `rec.wav` → `rec-3.wav` for the third call.
fn numbered(path: &std::path::Path, index: u64) -> std::path::PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("call");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("wav");
    path.with_file_name(format!("{stem}-{index}.{ext}"))
}

fn print_call(call: &AnsweredCall, json: bool, out: &mut impl Write) {
    if json {
        let _ = serde_json::to_writer(&mut *out, call);
        let _ = writeln!(out);
    } else {
        let _ = write!(
            out,
            "call {} from {} [{}]: {}",
            call.index, call.from, call.call_id, call.end_reason
        );
        if let Some(m) = &call.media {
            let _ = write!(
                out,
                "; {}, rtp {} sent, {} received, loss {:.2} %, jitter {:.2} ms",
                m.codec, m.packets_sent, m.packets_received, m.loss_percent, m.jitter_ms
            );
            if m.stray_packets > 0 {
                let _ = write!(
                    out,
                    "; stray rtp {} (first from {})",
                    m.stray_packets,
                    m.stray_first_source
                        .as_deref()
                        .unwrap_or("the peer, another SSRC")
                );
            }
            for t in &m.tones {
                let _ = match t.onset_ms {
                    Some(onset) => write!(out, "; tone {} at {onset:.0} ms", t.tone),
                    None => write!(out, "; tone {} missing", t.tone),
                };
            }
            if !m.dtmf_received.is_empty() {
                let _ = write!(out, "; dtmf '{}'", m.dtmf_received);
            }
        }
        let _ = match call.verdict {
            Verdict::Passed => writeln!(out, " -- PASS"),
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => {
                writeln!(out, " -- FAIL: {}", call.failures.join("; "))
            }
        };
    }
    let _ = out.flush();
}

impl Totals {
    /// Count one call's media in the generator's health figures.
    fn add_media(&mut self, report: &MediaReport) {
        self.frames_skipped += report.frames_skipped;
        match &mut self.lateness_us {
            Some(all) => {
                let _ = all.add(&report.lateness_us);
            }
            None => self.lateness_us = Some(report.lateness_us.clone()),
        }
    }

    /// The closing line(s).
    pub fn write(&mut self, json: bool, out: &mut impl Write) -> std::io::Result<()> {
        // Percentiles once, at the end, not at every call's end.
        self.pacing_lateness_ms = self
            .lateness_us
            .as_ref()
            .filter(|all| !all.is_empty())
            .map(Lateness::of);
        if json {
            serde_json::to_writer(&mut *out, self).map_err(std::io::Error::other)?;
            return writeln!(out);
        }
        writeln!(
            out,
            "totals: {} received, {} answered, {} busy, {} rejected, {} refused, {} passed, {} failed{}",
            self.received,
            self.answered,
            self.busy,
            self.rejected,
            self.refused,
            self.passed,
            self.failed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        if let Some(l) = &self.pacing_lateness_ms {
            writeln!(
                out,
                "generator (sipcheck itself): pacing lateness p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; frames skipped {}",
                l.p50, l.p99, l.p999, l.max, self.frames_skipped
            )?;
        }
        if self.unconfirmed_dropped > 0 || self.source_limited > 0 {
            writeln!(
                out,
                "unconfirmed calls (no ACK): {} dropped for newer calls, {} refused (per-source limit)",
                self.unconfirmed_dropped, self.source_limited
            )?;
        }
        if self.overload_503 > 0 {
            writeln!(
                out,
                "overload: {} request(s) refused with 503 Service Unavailable (transaction table full)",
                self.overload_503
            )?;
        }
        if self.malformed > 0 {
            writeln!(
                out,
                "{} datagram(s) that were not SIP ignored (each named on stderr)",
                self.malformed
            )?;
        }
        if let Some(e) = &self.registration_error {
            writeln!(out, "registration: {e}")?;
        }
        Ok(())
    }

    /// The verdict of the whole run.
    pub fn verdict(&self) -> Verdict {
        if self.failed == 0 && self.overload_503 == 0 && self.registration_error.is_none() {
            Verdict::Passed
        } else {
            Verdict::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_refusals_are_shown_and_fail_the_run() {
        let mut totals = Totals {
            kind: "totals",
            received: 1,
            answered: 1,
            passed: 1,
            ..Totals::default()
        };
        assert_eq!(totals.verdict(), Verdict::Passed);
        totals.overload_503 = 3;
        assert_eq!(totals.verdict(), Verdict::Failed);
        let mut text = Vec::new();
        totals.write(false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("overload: 3 request(s) refused with 503 Service Unavailable"),
            "{text}"
        );
        let mut json = Vec::new();
        totals.write(true, &mut json).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["overload_503"], 3);
    }
}
