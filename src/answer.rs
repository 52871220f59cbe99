//! `sipcheck answer`: the responder — auto-answers calls, plays and verifies audio.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::dtmf::Digit;
use sipcheck_core::media::session::{MediaReport, MediaSession};
use sipcheck_core::scenario::model::Account;
use sipcheck_core::sdp::{Negotiated, DEFAULT_PTIME_MS};
use sipcheck_core::sip::auth::Password;
use sipcheck_core::sip::build::reason_phrase;
use sipcheck_core::sip::transaction::{TimerConfig, DEFAULT_MAX_SERVER_TRANSACTIONS};
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::sip::uri::host_literal;
use sipcheck_core::ua::agent::responder::{ResponderConfig, ResponderResult};
use sipcheck_core::ua::agent::{Agent, AgentConfig, CallKey};
use sipcheck_core::ua::call::{Endpoint, EndpointConfig};
use sipcheck_core::ua::register::LocalEnd;
use sipcheck_core::ua::registration::RegistrationEvent;
use sipcheck_core::ua::script::responder::Responder;

use crate::drive::agent::{Control, Driver, Media};
use crate::drive::media::{Finished, MediaHandle, PortRange};
use crate::drive::os_seed;
use crate::drive::registration;
use crate::drive::transport::{self, SipSocket, TcpPool, TransportError, UdpTransport};
use crate::drive::wire::{SendFailed, Wire};
use crate::probe::args::{
    parse_duration, parse_max_transactions, parse_server, parse_t1, transport_parser, TlsArgs,
};
use crate::probe::audio::{write_recording, AudioArgs, Lateness, MediaSummary, PreparedAudio};
use crate::probe::call::host_of;
use crate::probe::{ProbeError, Verdict};

/// How the responder behaves: the options of `sipcheck answer`, read by clap (each field's doc
/// is its help text, as printed: `HOST[:PORT]` is no link).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct AnswerArgs {
    /// Local address to listen on for SIP (over --transport).
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Transport to listen on and register over: udp, tcp (connections peers open, and
    /// ours to the registrar), tls (as tcp, with --cert and --key), ws or wss (WebSocket,
    /// RFC 7118: as tcp and tls; over wss, --cert and --key only for connections peers open).
    #[arg(long, value_parser = transport_parser(), default_value = "udp")]
    pub transport: Transport,
    /// Over TLS: our certificate chain (PEM), for the connections peers open to us.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Over TLS: the private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Over WS/WSS: the resource path of the WebSocket handshake with the registrar, e.g. /ws.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub ws_path: String,
    /// Register at this server first (and keep the registration fresh), HOST[:PORT].
    #[arg(long, env = "SIP_SERVER", value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub server: Option<String>,
    /// User to register as (digest username).
    #[arg(long, env = "SIP_USER")]
    pub user: Option<String>,
    /// Password for digest authentication (prefer the SIP_PASSWORD environment variable).
    #[arg(long, env = "SIP_PASSWORD", hide_env_values = true)]
    pub password: Option<Password>,
    /// Domain of the address of record (default: the server's host).
    #[arg(long)]
    pub domain: Option<String>,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    pub expires: u32,
    /// Ring (180 Ringing) this long before answering.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ring: Duration,
    /// Reject every call with this status code instead of answering (e.g. 486, 603).
    #[arg(long, value_name = "CODE")]
    pub reject: Option<u16>,
    /// Hang up this long after answering (default: wait for the caller's BYE).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Calls at once; more are answered 486 Busy Here.
    #[arg(long = "max-calls", value_name = "MAX_CALLS", default_value_t = 100)]
    pub max_calls_flag: usize,
    /// Server transactions alive at once (each held until its Timer J or K ends): beyond it
    /// a request is answered statelessly 503 Service Unavailable with Retry-After, so a
    /// flood of stray requests cannot grow memory without bound.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERVER_TRANSACTIONS, value_parser = parse_max_transactions)]
    pub max_transactions: usize,
    /// Exit after this many calls have ended.
    #[arg(long, value_name = "N")]
    pub calls: Option<u64>,
    #[command(flatten)]
    pub audio: AudioArgs,
    /// Play each call's audio signature (the callee's code of the call the INVITE's
    /// X-Sipcheck-Signature header names) and fail the call unless the caller's is heard
    /// within 5 s of the answer (see the README's "Audio signatures").
    #[arg(long, conflicts_with_all = ["play_tone", "play_wav", "expect_tone", "no_rtp", "reject"])]
    pub signature: bool,
    /// RFC 3261 T1; Timer B/F/H fire at 64*T1.
    #[arg(long, default_value = "500ms", value_parser = parse_t1)]
    pub t1: Duration,
    /// Print one JSON object per call and the totals instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print only the calls that failed (and the totals): for load, where a line per call
    /// costs more than the call.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Answer every offer `a=inactive` and open no RTP socket: signaling-only load, as SIPp's
    /// uas (no audio is sent, checked or recorded).
    #[arg(long, conflicts_with_all = ["play_tone", "play_wav", "expect_tone", "send_dtmf", "expect_dtmf", "record"])]
    pub no_rtp: bool,
}

impl AnswerArgs {
    /// Calls at once: `--max-calls`, at least 1.
    #[must_use]
    pub fn max_calls(&self) -> usize {
        self.max_calls_flag.max(1)
    }

    /// The SIP timers: `--t1`, the others at their defaults.
    #[must_use]
    pub fn timers(&self) -> TimerConfig {
        TimerConfig {
            t1: self.t1,
            ..TimerConfig::default()
        }
    }
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
    /// The audio signature's verdict (`--signature`), when one was judged: `verified`,
    /// `no_audio`, `crossed_audio`, `wrong_audio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'static str>,
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

/// Run the responder until `calls` calls have ended or Ctrl-C.
///
/// The core's role [`Agent`], as a responder ([`Agent::respond`]), decides everything:
/// which call is admitted or refused, each call's steps and timers, where media may go,
/// the Ctrl-C drain, the end after `calls`, the registration. The driver loop
/// (`drive::agent`) runs it; this prints each call's line and the totals.
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
    let registrar = match &args.server {
        Some(server) => Some(transport::resolve(server, args.transport.default_port()).await?),
        None => None,
    };
    let transport = match args.transport {
        Transport::Udp => SipSocket::Udp(UdpTransport::bind(args.listen, 4 << 20).await?),
        Transport::Tcp => SipSocket::TcpPool(TcpPool::bind(args.listen, None, false).await?),
        Transport::Tls => {
            let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
                return Err(ProbeError::Invalid(
                    "--transport tls needs --cert FILE and --key FILE: peers connect to \
                     the listening address over TLS"
                        .into(),
                ));
            };
            let mut opts = args.tls.options();
            opts.server_cert = Some((cert.clone(), key.clone()));
            let tls = crate::probe::tls_context(&opts)?;
            // The registrar's certificate is verified for the name of --server.
            let names = registrar
                .zip(args.server.as_deref().map(host_of))
                .into_iter()
                .collect();
            SipSocket::TcpPool(
                TcpPool::bind(args.listen, None, false)
                    .await?
                    .with_tls(tls, names),
            )
        }
        Transport::Ws => SipSocket::TcpPool(
            TcpPool::bind(args.listen, None, false)
                .await?
                .with_ws(&args.ws_path),
        ),
        Transport::Wss => {
            if args.cert.is_none() && args.server.is_none() {
                return Err(ProbeError::Invalid(
                    "--transport wss needs --server (a registrar to connect to) or --cert                      FILE and --key FILE (for peers connecting to the listening address)"
                        .into(),
                ));
            }
            let mut opts = args.tls.options();
            opts.server_cert = args.cert.clone().zip(args.key.clone());
            let tls = crate::probe::tls_context(&opts)?;
            let names = registrar
                .zip(args.server.as_deref().map(host_of))
                .into_iter()
                .collect();
            SipSocket::TcpPool(
                TcpPool::bind(args.listen, None, false)
                    .await?
                    .with_tls(tls, names)
                    .with_ws(&args.ws_path),
            )
        }
    };
    let local = LocalEnd {
        transport: args.transport,
        addr: transport.local_addr(),
        routes: Vec::new(),
    };
    let mut config = EndpointConfig::new(local.clone());
    config.timers = args.timers();
    // Every incoming INVITE is answered, rung or rejected as soon as it is seen, so the 100
    // Trying is left out (RFC 3261 §17.2.1): one datagram less per call, as SIPp's uas.
    config.trying = false;
    config.max_server_transactions = args.max_transactions;
    if let Some(user) = &args.user {
        config.contact_user = user.clone();
    }
    let seed = os_seed();
    let agent_config = AgentConfig {
        role: String::new(),
        local: local.clone(),
        next_hop: None,
        domain: String::new(),
        codecs: args.audio.codecs.clone(),
        ptime_ms: DEFAULT_PTIME_MS,
        // Without RTP every offer is answered `a=inactive`, without an RTP socket.
        rtp: !args.no_rtp,
        wavs: Arc::default(),
        accounts: Vec::new(),
        steps: Arc::default(),
        srtp: prepared.srtp(),
        sips: false,
        signature_parties: Vec::new().into(),
    };
    let mut agent = Agent::new(agent_config, Endpoint::new(config, IdGen::new(seed)));
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
        signature: args.signature,
    };
    agent.respond(
        Instant::now(),
        ResponderConfig {
            steps: Arc::new(responder.steps()),
            max_calls: args.max_calls(),
            calls: args.calls,
            drain: DRAIN,
            // Retransmissions of the last BYE (its 200 may have been lost): two of them.
            linger: args.t1 * 4,
        },
    );
    let media = AnswerMedia {
        ports: args.audio.port_range(),
        prepared: &prepared,
        ids: IdGen::new(seed ^ 0x5eed),
        recordings: HashMap::new(),
        signature: args.signature,
    };
    let mut drv = Driver::new(Wire::new(transport, None), agent, media);
    let mut control = Responding {
        args,
        out,
        phase: Phase::Registering,
        refused: None,
        interrupts: None,
        at_once: false,
        print: true,
        totals: Totals {
            kind: "totals",
            ..Totals::default()
        },
    };

    // Registration, refreshed before it expires (by the agent), removed at the end.
    let registered = match &args.server {
        Some(server) => {
            let user = args
                .user
                .clone()
                .ok_or_else(|| ProbeError::Invalid("--server needs --user".into()))?;
            let registrar = registrar.expect("resolved above");
            let domain = args
                .domain
                .as_deref()
                .map_or_else(|| host_of(server), |d| host_literal(d).into_owned());
            let account = Account {
                user,
                password: args.password.clone().unwrap_or_default(),
                domain,
            };
            drv.agent.register(
                Instant::now(),
                &account,
                registrar,
                args.expires,
                true,
                IdGen::new(seed ^ 0x4e6),
            );
            drv.run(&mut control).await?;
            true
        }
        None => false,
    };
    // Listening before "listening on" is printed: a Ctrl-C right after it is not lost.
    control.interrupts = crate::signal::Interrupts::new().ok();
    let out = &mut *control.out;
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({
                "kind": "listening",
                "address": local.addr.to_string(),
                "registered": registered,
            })
        );
    } else if registered {
        let _ = writeln!(out, "registered; listening on {}", local.addr);
    } else {
        let _ = writeln!(out, "listening on {}", local.addr);
    }
    let _ = out.flush();

    control.phase = Phase::Serving;
    drv.run(&mut control).await?;
    // Calls whose media reports are still on their way (the drain's limit; not after a
    // second Ctrl-C).
    if !control.at_once {
        let until = Instant::now() + Duration::from_millis(500);
        drv.finish_stopping(&mut control, until).await?;
        drv.service(&mut control).await?;
    }
    let counts = drv.agent.responder_counts();
    if registered {
        // Nothing more is printed or counted: the run is over.
        control.print = false;
        control.phase = Phase::Unregistering;
        drv.agent.unregister(Instant::now());
        drv.run(&mut control).await?;
    }
    // The last responses (the 200 OK to the last BYE) may still be queued on a connection.
    drv.wire.socket.close(Duration::from_secs(1)).await;
    let mut totals = control.totals;
    totals.received = counts.received;
    totals.answered = counts.answered;
    totals.busy = counts.busy;
    totals.unconfirmed_dropped = counts.unconfirmed_dropped;
    totals.source_limited = counts.source_limited;
    totals.rejected = counts.rejected;
    totals.malformed = drv.wire.malformed;
    totals.overload_503 = drv.agent.endpoint().transactions().counters().overload_503;
    Ok(totals)
}

/// The responder's media: a socket per call from the port range, the session the flags
/// ask for, each recording kept until its call's line.
struct AnswerMedia<'a> {
    ports: PortRange,
    prepared: &'a PreparedAudio,
    ids: IdGen,
    /// Recordings of calls whose result is on its way.
    recordings: HashMap<CallKey, Vec<i16>>,
    /// `--signature`: the streams' events go to their calls.
    signature: bool,
}

impl Media for AnswerMedia<'_> {
    fn open(&mut self, ip: IpAddr) -> std::io::Result<(MediaHandle, u16)> {
        let opened = self.ports.bind_std(ip).and_then(|socket| {
            let port = socket.local_addr()?.port();
            Ok((MediaHandle::listen_std(socket), port))
        });
        if let Err(e) = &opened {
            // The script refuses the call with 503.
            tracing::warn!(error = %e, "no RTP port free: refusing the call");
        }
        opened
    }

    /// What is heard is judged over the whole call, from its report; only a signature is
    /// judged as it is heard (its watch resolves as an event).
    fn events(&self) -> bool {
        self.signature
    }

    fn session(&mut self, _now: Instant, negotiated: &Negotiated) -> Option<MediaSession> {
        // What the flags play and expect, over the whole call.
        Some(self.prepared.session(negotiated, &mut self.ids))
    }

    fn stopped(&mut self, key: CallKey, finished: Option<Box<Finished>>) -> Option<MediaReport> {
        finished.map(|f| {
            if let Some(samples) = f.recording {
                self.recordings.insert(key, samples);
            }
            f.report
        })
    }
}

/// Where the responder is: registering first (when asked), serving calls, unregistering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Registering,
    Serving,
    Unregistering,
}

/// The responder's part around the loop: Ctrl-C while serving, each call's line, the
/// registration's events, the totals.
struct Responding<'a, W> {
    args: &'a AnswerArgs,
    out: &'a mut W,
    phase: Phase,
    /// Why the first registration failed.
    refused: Option<String>,
    /// Ctrl-C (and SIGTERM), listened to while serving (from before "listening on" is
    /// printed); when the handlers could not be installed then, from each wait.
    interrupts: Option<crate::signal::Interrupts>,
    /// A second Ctrl-C came: leave at once.
    at_once: bool,
    /// Whether the calls' lines are printed (not once the run is over).
    print: bool,
    totals: Totals,
}

impl<'m, W: Write> Control<AnswerMedia<'m>> for Responding<'_, W> {
    type Wake = ();
    type Done = ();
    type Error = ProbeError;

    async fn wake(&mut self) {
        match self.phase {
            Phase::Serving => crate::signal::next(self.interrupts.as_mut()).await,
            _ => std::future::pending().await,
        }
    }

    fn handle(&mut self, agent: &mut Agent<SocketAddr>, (): ()) -> Result<Option<()>, ProbeError> {
        self.totals.interrupted = true;
        if agent.draining() {
            // A second Ctrl-C: leave at once.
            self.at_once = true;
            return Ok(Some(()));
        }
        agent.stop(Instant::now());
        Ok(None)
    }

    /// Print the calls that ended, note the registration's events.
    fn results(&mut self, agent: &mut Agent<SocketAddr>, media: &mut AnswerMedia<'m>) {
        while let Some(result) = agent.poll_answer() {
            if self.print {
                self.finish_call(result, media);
            }
        }
        while let Some((_, event)) = agent.poll_registration() {
            match &event {
                RegistrationEvent::Failed { error } => {
                    self.refused = Some(registration::describe(error));
                }
                RegistrationEvent::UnregisterFailed { error } => {
                    self.totals.registration_error = Some(format!(
                        "unregistration failed: {}",
                        registration::describe(error)
                    ));
                }
                _ => {
                    if let Some(error) = event.error_message() {
                        self.totals.registration_error = Some(error);
                    }
                }
            }
        }
    }

    /// Registering: until the first registration has its outcome (a failure ends the run);
    /// serving: until the agent says the run is over; unregistering: until it is done.
    fn poll_done(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        _stopping: usize,
    ) -> Result<Option<()>, ProbeError> {
        let done = match self.phase {
            Phase::Registering => {
                if let Some(e) = self.refused.take() {
                    return Err(ProbeError::Registration(e));
                }
                !agent.registering()
            }
            Phase::Serving => agent.responder_done(),
            Phase::Unregistering => agent.unregistered(),
        };
        Ok(done.then_some(()))
    }

    /// One connection's error (one we opened to a caller to send its BYE, refused or failing
    /// its TLS handshake) or an ICMP error fails the calls with that peer, not the responder;
    /// only an error of the listening transport itself ends it.
    fn transport_failed(
        &mut self,
        wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        error: TransportError,
    ) -> Result<bool, ProbeError> {
        if crate::drive::role::transport_error(wire, agent, &error, true) {
            return Ok(true);
        }
        Err(error.into())
    }

    /// Over UDP a send error is only logged (an ICMP error comes back on its own).
    fn send_failed(
        &mut self,
        _wire: &mut Wire,
        _agent: &mut Agent<SocketAddr>,
        _failed: SendFailed,
    ) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl<W: Write> Responding<'_, W> {
    /// Judge an ended call (its script, with the media report judged over the whole call),
    /// count it and print its line.
    fn finish_call(&mut self, result: ResponderResult, media: &mut AnswerMedia<'_>) {
        let args = self.args;
        let out = &mut *self.out;
        let totals = &mut self.totals;
        let call = match result {
            ResponderResult::Call(call) => call,
            ResponderResult::Refused {
                index,
                code,
                reason,
                from,
                call_id,
            } => {
                // Never a call, but an INVITE received: it is counted and shown.
                totals.refused += 1;
                totals.failed += 1;
                let line = AnsweredCall {
                    kind: "call",
                    index,
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
                    signature: None,
                };
                print_call(&line, args.json, out);
                return;
            }
        };
        let call = *call;
        let recording = media.recordings.remove(&call.key);
        let mut media_failures = Vec::new();
        let mut media_summary = None;
        if let (Some(negotiated), Some(report)) = (&call.negotiated, &call.report) {
            let (summary, failures) = media.prepared.summarize(negotiated, report);
            totals.add_media(report);
            if let (Some(path), Some(samples)) = (media.prepared.record_path(), &recording) {
                let path = numbered(path, call.index);
                if let Err(e) = write_recording(&path, samples) {
                    media_failures.push(e.to_string());
                }
            }
            media_failures.extend(failures);
            media_summary = Some(summary);
        }
        let index = call.index;
        let from = call.from.clone();
        let outcome = call.finish(media_failures);
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
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => {
                totals.failed += 1;
            }
        }
        if args.quiet && verdict == Verdict::Passed {
            return;
        }
        let line = AnsweredCall {
            kind: "call",
            index,
            call_id: outcome.call_id,
            from: from.to_string(),
            verdict,
            final_code: outcome.final_code,
            bye_code: outcome.bye_code,
            end_reason: outcome.end_reason,
            failures: outcome.failures,
            media: media_summary,
            signature: outcome.signature,
        };
        print_call(&line, args.json, out);
    }
}

/// How long the first Ctrl-C waits for the calls to end (their BYEs answered) before
/// leaving anyway.
const DRAIN: Duration = Duration::from_secs(1);

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
            if let Some(srtp) = &m.srtp {
                let _ = write!(out, "; {}", srtp.line());
            }
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
