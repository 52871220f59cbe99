//! One call of one user agent, running its role's steps in order, as a sans-IO state machine.
//!
//! The steps of a role from its first call-level step on (`call`, `answer`, `reject`, `ring`
//! …) run once per call: a caller's when the load plan starts a call, a callee's for each
//! call it receives. A step that fails records a [`Failure`] (with its line in the scenario)
//! and ends the script; the call is then hung up. Every wait is bounded.
//!
//! The machine takes the call's events ([`CallScript::handle_call_event`]), what its media
//! stream reports ([`CallScript::handle_media_event`]), the replies to the commands that
//! have one ([`CallScript::handle_placed`], [`CallScript::handle_accepted`],
//! [`CallScript::handle_reinvite_sent`]), time ([`CallScript::handle_timeout`]), Ctrl-C
//! ([`CallScript::stop`]) and the end of the load ([`CallScript::load_done`]). It hands back
//! [`ScriptCommand`]s (SIP intents for the call's agent, [`MediaIntent`]s for its media
//! stream), its next deadline ([`CallScript::poll_timeout`]) and, once
//! [`CallScript::is_done`], the call's [`CallResult`] ([`CallScript::finish`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::conference::{PartiesVerdict, Party, PARTY_LEVEL_DBFS};
use crate::media::dtmf::{DtmfConfig, DtmfSender};
use crate::media::intent::{MediaEvent, MediaIntent};
use crate::media::pesq;
use crate::media::samples_to_duration;
use crate::media::session::{MediaConfig, MediaError, MediaReport};
use crate::media::signature::{SignatureCode, SignatureVerdict, SIGNATURE_LEVEL_DBFS};
use crate::media::tone::{Gap, Playlist, PlaylistItem, ToneQuery, DEFAULT_MAX_GAP};
use crate::rtp::source::StrayStats;
use crate::scenario::model::{
    ConferenceParty, Expectation, HoldMode, Located, PlayItem, SignatureFrom, Step, WaitEvent,
};
use crate::scenario::text::Fill;
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::sip::uri::complete_uri;
use crate::stats::ladder::RawLadder;
use crate::stats::outcome::{CallMedia, CallResult, Failure, FailureKind, Side, StepRun};
use crate::ua::call::{CallEndReason, CallEvent, CallId, CallRecord};
use crate::ua::work::{Work, WorkResult};

mod attended;
mod probe;
pub mod responder;
#[cfg(test)]
mod tests;
mod transferee;

pub use probe::{
    judge_media, ProbeCall, ProbeExpect, ProbeHold, ProbeOutcome, ProbePesq, DTMF_AFTER_ANSWER,
    LIMIT_GRACE, PROBE_SIGNATURE_CALL,
};
pub use transferee::ORIGINAL_BYE_WAIT;

/// How long a step may wait for the call to be answered when it needs media (unless the
/// `call` step says otherwise).
pub const ANSWER_WAIT: Duration = Duration::from_secs(32);
/// How long a hang-up may take to complete.
pub const END_WAIT: Duration = Duration::from_secs(35);
/// An answered call whose RTP stops for longer than this fails.
pub const RTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a `hold` or `resume` step waits for its re-INVITE's final response (a little
/// more than Timer B, after which the call ends with BYE).
pub const REINVITE_WAIT: Duration = Duration::from_secs(33);
/// How long `wait_for` waits at most, when the load does not end.
const WAIT_FOR_MAX: Duration = Duration::from_secs(3600);
/// How long a failing media check waits for its stream's status (levels, digits received).
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// How long a step waits for the result of its [`Work`] (a PESQ score) before it fails.
pub const WORK_WAIT: Duration = Duration::from_secs(30);
/// The worst lateness of a frame, in microseconds, past which a failed media check says
/// that sipcheck itself was behind.
const OVERLOAD_LATE_US: u64 = 20_000;

/// Whether a step belongs to each call (as opposed to the user agent's set-up).
#[must_use]
pub fn is_call_step(step: &Step) -> bool {
    !matches!(step, Step::Register { .. } | Step::Unregister)
}

/// What a call's script knows of its user agent and run.
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// The role of the user agent.
    pub role: String,
    /// Caller or callee.
    pub side: Side,
    /// The user agent's account name.
    pub user: String,
    /// The domain of its account (`{domain}` in a `call` step's `to`).
    pub account_domain: String,
    /// The peer's account name (`{peer}`), empty when none.
    pub peer_user: String,
    /// The domain a bare user in `to` is completed with.
    pub domain: String,
    /// Whether the call carries RTP (`media: { rtp: false }`: signaling only).
    pub rtp: bool,
    /// The WAV files of `play` steps, by path, as 8 kHz samples.
    pub wavs: Arc<HashMap<String, Arc<[i16]>>>,
    /// When the call was scheduled to start, from the run's start (callers).
    pub scheduled: Option<Duration>,
    /// How late the call started against its schedule.
    pub start_lag: Duration,
    /// The call's number for audio signatures (`play`/`expect: { signature }`): a caller's
    /// from its agent's count of calls, a callee's from the INVITE's
    /// `X-Sipcheck-Signature` header; `None` when not known (no header).
    pub signature_call: Option<u64>,
    /// The roles `expect: { answered_by }` can name, in slot order
    /// ([`crate::scenario::model::Scenario::signature_parties`]); empty without it.
    pub signature_parties: Arc<[String]>,
}

/// What the script asks of its call's agent and media stream.
#[derive(Debug, Clone)]
pub enum ScriptCommand {
    /// Place the call to this Request-URI, offering our media from a new RTP socket (read
    /// from now on, RFC 3264 §5.1); reply with [`CallScript::handle_placed`].
    Invite {
        /// The Request-URI (and To).
        target: String,
    },
    /// Send 180 Ringing.
    Ring,
    /// Answer with our media from a new RTP socket; reply with [`CallScript::handle_accepted`].
    Accept,
    /// Refuse the call with this status.
    Reject(u16),
    /// BYE, CANCEL or refusal, as the call's state requires.
    Hangup,
    /// CANCEL (or BYE once answered).
    Cancel,
    /// A re-INVITE offering this media (hold, resume); reply with
    /// [`CallScript::handle_reinvite_sent`], its outcome comes as a call event.
    Reinvite(Box<LocalMedia>),
    /// REFER the far end to `target` (a blind transfer); reply with
    /// [`CallScript::handle_transfer_sent`], its outcome comes as call events.
    Transfer {
        /// The Refer-To URI.
        target: String,
        /// Our address of record, for Referred-By.
        referred_by: String,
    },
    /// Follow a transfer (`expect: transferred`): place a new call to `target`, with
    /// `Referred-By` when given, offering `local` (the call's own media, from the same RTP
    /// socket); reply with [`CallScript::handle_followed`]. Until it is answered the new
    /// call's events go to [`CallScript::handle_transfer_event`]; once answered it is the
    /// script's call, and the original call's events go to
    /// [`CallScript::handle_original_event`].
    Follow {
        /// The Refer-To URI (its headers left out).
        target: String,
        /// The REFER's Referred-By value, to copy (RFC 3892).
        referred_by: Option<String>,
        /// The Replaces header the Refer-To URI carried, unescaped, to copy (RFC 3891 §6,
        /// attended transfer).
        replaces: Option<String>,
        /// Our media, as the original call has it.
        local: Box<LocalMedia>,
    },
    /// NOTIFY the far end of `call`, which REFERred us, of the transfer's progress: a
    /// `message/sipfrag` of `SIP/2.0 {code} {reason}`, final (terminating) from 200.
    NotifyTransfer {
        /// The call the REFER came in.
        call: CallId,
        /// The status of the new call.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// Give up the transfer's new call before its answer (CANCEL).
    CancelFollow,
    /// BYE on `call`, the original call of a transfer, which its transferor did not end.
    HangupOriginal(CallId),
    /// An attended transfer's consultation call: place it to `target`, offering `local`
    /// (the call's own media, from the same RTP socket); reply with
    /// [`CallScript::handle_consult_placed`]. Its events go to
    /// [`CallScript::handle_consult_event`].
    Consult {
        /// The Request-URI.
        target: String,
        /// Our media, as the call has it.
        local: Box<LocalMedia>,
    },
    /// End the consultation call (BYE, or CANCEL before its answer), if it is still up.
    HangupConsult,
    /// Something for the call's media stream.
    Media(MediaIntent),
    /// A slow computation (a PESQ score) to run off the driver's loop; reply with
    /// [`CallScript::handle_work_done`]. The step waits for it, [`WORK_WAIT`] at most.
    Work(Work),
}

/// Why a command with a reply could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The host of the Request-URI has no address.
    Unresolved,
    /// No RTP socket could be opened.
    NoRtpSocket(String),
    /// The agent refused the operation.
    Refused(String),
    /// The offer could not be answered under the role's SRTP policy (488 sent).
    SrtpRefused(String),
    /// The role's transport is gone.
    TransportGone,
}

/// A placed call: its SIP Call-ID and our media as offered.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The SIP Call-ID.
    pub call_id: String,
    /// Our offer.
    pub local: LocalMedia,
}

/// What a call's media session is configured with, from the negotiated media and the
/// stream's local settings.
#[must_use]
pub fn media_config(negotiated: &Negotiated, jitter_frames: usize, record: bool) -> MediaConfig {
    let mut config = MediaConfig::new(negotiated.codec);
    config.payload_type = negotiated.payload_type;
    config.telephone_event_pt = negotiated.telephone_event_pt;
    config.ptime = session_ptime(negotiated);
    config.send = negotiated.direction.sends();
    config.jitter_buffer_frames = jitter_frames.max(1);
    config.record = record;
    config
}

fn session_ptime(negotiated: &Negotiated) -> Duration {
    Duration::from_millis(u64::from(negotiated.ptime_ms.clamp(10, 60)))
}

/// A remark for a failed media check when RTP that was not the peer's arrived at the call's
/// port (set aside: never the peer's audio, loss or jitter), naming where it came from.
#[must_use]
pub fn stray_note(stray: &StrayStats) -> String {
    if stray.packets() == 0 {
        return String::new();
    }
    let mut parts = Vec::new();
    if stray.other_address > 0 {
        parts.push(format!(
            "{} from {} other source{} (first {})",
            stray.other_address,
            stray.sources,
            if stray.sources == 1 { "" } else { "s" },
            stray
                .first_source
                .map_or_else(|| "unknown".to_string(), |a| a.to_string())
        ));
    }
    if stray.other_ssrc > 0 {
        parts.push(format!(
            "{} of a second SSRC {:#010x} interleaved with the peer's",
            stray.other_ssrc,
            stray.first_ssrc.unwrap_or_default()
        ));
    }
    format!(
        "; {} stray RTP packet{} ignored: {}",
        stray.packets(),
        if stray.packets() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

/// A remark for a failed media check when sipcheck's own media thread was behind on this call
/// (frames skipped, or a frame more than 20 ms late): the far end is then not to blame.
#[must_use]
pub fn overload_note((skipped, worst_us): (u64, u64)) -> String {
    if skipped == 0 && worst_us <= OVERLOAD_LATE_US {
        return String::new();
    }
    format!(
        "; sipcheck itself was behind on this call ({skipped} frames skipped, up to {:.0} ms \
         late): see the generator figures before blaming the far end",
        worst_us as f64 / 1000.0
    )
}

/// Whether the target a call was redirected to is the one expected (`expect:
/// redirected_to`): the same user, the same host (any case), the same port when the
/// expected URI names one; parameters and headers are not compared.
#[must_use]
pub fn same_target(expected: &str, actual: &str) -> bool {
    fn parts(uri: &str) -> (String, String, Option<String>) {
        let uri = crate::sip::msg::contact_uri(uri);
        let uri = uri.split_once(':').map_or(uri, |(_, rest)| rest);
        let uri = uri.split([';', '?']).next().unwrap_or(uri);
        let (user, hostport) = uri.rsplit_once('@').unwrap_or(("", uri));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p.to_string())),
            _ => (hostport, None),
        };
        (user.to_string(), host.to_ascii_lowercase(), port)
    }
    let (eu, eh, ep) = parts(expected);
    let (au, ah, ap) = parts(actual);
    eu == au && eh == ah && (ep.is_none() || ep == ap)
}

/// The failure family of a call's end.
#[must_use]
pub fn kind_of(reason: &CallEndReason) -> FailureKind {
    match reason {
        CallEndReason::Rejected { code, .. } => FailureKind::SipCode(*code),
        CallEndReason::Declined { code } => FailureKind::SipCode(*code),
        CallEndReason::Timeout { timer, .. } => FailureKind::Timer(timer.to_string()),
        CallEndReason::AuthRejected { .. }
        | CallEndReason::NoCredentials { .. }
        | CallEndReason::AuthFailed { .. } => FailureKind::AuthRejected,
        CallEndReason::SrtpRefused(_)
        | CallEndReason::MediaFailed(crate::sdp::NegotiationError::Srtp(_)) => {
            FailureKind::SrtpRefused
        }
        CallEndReason::CodecRefused | CallEndReason::MediaFailed(_) => FailureKind::CodecRefused,
        CallEndReason::NoAck { .. } => FailureKind::Timer("Timer H".into()),
        CallEndReason::TransportError { .. } => FailureKind::Transport,
        CallEndReason::Cancelled | CallEndReason::CancelledByRemote => FailureKind::Signalling,
        CallEndReason::CancelFailed {
            cancel_code: Some(code),
            ..
        } if !(200..300).contains(code) => FailureKind::CancelFailed(code.to_string()),
        CallEndReason::CancelFailed { .. } => FailureKind::CancelFailed("no_487".into()),
        CallEndReason::DialogLost { code } => FailureKind::SipCode(*code),
        CallEndReason::Redirected { code, .. } => FailureKind::SipCode(*code),
        CallEndReason::RedirectLoop { .. } => FailureKind::RedirectLoop,
        CallEndReason::TooManyRedirects { .. } => FailureKind::TooManyRedirects,
        _ => FailureKind::Other,
    }
}

/// What the peer's offer that produced `negotiated` asked of us, in SDP words.
fn peer_offer(negotiated: &Negotiated) -> &'static str {
    use crate::sdp::Direction;
    match negotiated.direction {
        _ if negotiated.remote_rtp.ip().is_unspecified() => "c=0.0.0.0 (hold)",
        Direction::RecvOnly => "sendonly (hold)",
        Direction::Inactive => "inactive",
        Direction::SendOnly => "recvonly",
        Direction::SendRecv => "sendrecv (not a hold)",
    }
}

/// What ends a wait early (besides the call's end, a fired watch and the deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Only the call's end.
    Ended,
    /// Nothing: the wait runs its time (unless the call ends).
    Time,
    /// The call is answered.
    Answered,
    /// 180/183, or the answer.
    Ringing,
    /// The answer, when the final response expected is a success.
    Final(u16),
    /// The outcome of our re-INVITE.
    Reinvite,
    /// The peer holds the call.
    Held,
    /// The outcome of our transfer.
    Transfer,
    /// A REFER received (`expect: transferred`).
    Referred,
    /// The outcome of the call to the transfer's target.
    Followed,
    /// The outcome of an attended transfer's consultation call.
    Consulted,
    /// An INVITE with Replaces took over the call (`expect: replaced`).
    Replaced,
}

/// An `expect: { hears }` step under way.
#[derive(Debug, Clone)]
struct HearsCheck {
    parties: Vec<ConferenceParty>,
    own: Option<ConferenceParty>,
    within: Duration,
}

impl HearsCheck {
    fn expected(&self) -> Vec<Party> {
        self.parties.iter().map(|c| c.party).collect()
    }

    fn own(&self) -> Option<Party> {
        self.own.as_ref().map(|c| c.party)
    }
}

/// What to do when a wait (or a reply, or a probe) is over.
#[derive(Debug, Clone)]
enum Then {
    /// `call`: the reply to the INVITE command.
    Placed { timeout: Duration, target: String },
    /// `answer`: the ring time is over.
    AnswerRang,
    /// `answer`: the reply to the accept command.
    Accepted,
    /// A step that needs the call answered: it is (or will never be).
    Answer(Next),
    /// `reject`: the ring time is over.
    RejectRang(u16),
    /// The step holds once the wait is over (it waited for the call's end).
    Pass,
    /// `ring`, `wait`: the time is over, unless the call ended.
    Elapsed,
    /// `hangup`: the delay is over.
    HangupAfter,
    /// `cancel`: the delay is over.
    CancelAfter,
    /// `cancel`: the call ended (or did not).
    Cancelled,
    /// `wait_for`.
    WaitFor(WaitEvent),
    /// `expect: ringing`.
    Ringing(Duration),
    /// `expect: answered`.
    Answered(Duration),
    /// `expect: redirected_to`: the target expected, and how long the answer was awaited.
    RedirectedTo(String, Duration),
    /// `expect: final`.
    Final(u16),
    /// `expect: tone`: heard, or not in time.
    Tone { label: String, within: Duration },
    /// `expect: tone` not heard: the stream's status names what was received.
    ToneMissing { label: String, within: Duration },
    /// `expect: silence`.
    Silence(Duration),
    /// `expect: speech`: heard, or not in time.
    Speech(Duration),
    /// `expect: prompt_ends`: speech heard then over, or not in time.
    PromptEnds(Duration),
    /// `expect: audio`: heard, or not in time; whether the peer held the call when it began.
    Audio(Duration, bool),
    /// `expect: held`: the peer held the call, or not in time.
    Held(Duration),
    /// A voice-activity expectation failed: the stream's status names what was received.
    AudioMissing { kind: FailureKind, what: String },
    /// `expect: pesq`: the received audio, once recorded, scored against the reference.
    Pesq {
        reference: String,
        min: f64,
        within: Duration,
    },
    /// `expect: matches`: the received audio, once recorded, compared with the reference.
    Matches {
        reference: String,
        min: f64,
        within: Duration,
    },
    /// `expect: signature`: heard, or not in time.
    Signature(SignatureFrom, Duration),
    /// `expect: signature` not heard: the stream's verdict names what was.
    SignatureMissing(SignatureFrom, Duration),
    /// `expect: hears`: every party heard, an echo, or not in time.
    Hears(Box<HearsCheck>),
    /// `expect: hears` not all heard: the stream's verdict names who was missing.
    HearsMissing(Box<HearsCheck>),
    /// `expect: dtmf`.
    Dtmf(String),
    /// `expect: dtmf` not received: the stream's status names what was.
    DtmfMissing(String),
    /// `hold`, `resume`: the reply to the re-INVITE command.
    ReinviteSent(&'static str),
    /// `hold`, `resume`: the re-INVITE's outcome.
    Reinvited(&'static str),
    /// `transfer`: its outcome, or none within the step's time.
    Transferred(Duration),
    /// `expect: transferred`: a REFER came, or none within the time.
    Referred(Duration),
    /// `expect: transferred`: the reply to the command placing the new call.
    Following,
    /// `expect: transferred`: the new call answered, refused, or not in time.
    Followed,
    /// `transfer: { attended }`: the reply to the command placing the consultation call.
    Consulting,
    /// `transfer: { attended }`: the consultation call answered, refused, or not in time.
    Consulted,
    /// `transfer: { attended, hear }`: the tone (its label) heard on the consultation call,
    /// or not in time.
    ConsultHeard(String),
    /// `expect: replaced`: the call taken over, or not in time.
    Replaced(Duration),
    /// The script is over and so is the call.
    Finished,
}

/// How a transfer of ours ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TransferOutcome {
    /// A NOTIFY reported a 2xx of the new call.
    Done,
    /// The REFER was refused with this status.
    Refused(u16),
    /// A NOTIFY reported this failure of the new call.
    Failed(u16, String),
    /// The REFER could not be sent.
    NotSent(String),
}

/// What a step does once the call is answered.
#[derive(Debug, Clone)]
enum Next {
    /// `answer`: nothing more.
    Up,
    /// `transfer`: REFER to this URI, wait this long for the outcome.
    Transfer(String, Duration),
    /// `transfer: { attended }`: a consultation call to this URI first (hearing this tone
    /// on it, when given).
    Consult(String, Duration, Option<f64>),
    /// `expect: replaced`: wait this long for an INVITE with Replaces.
    Replaced(Duration),
    /// `expect: transferred`: wait this long for a REFER.
    Transferred(Duration),
    Play(Vec<PlayItem>),
    Tone {
        frequencies: Vec<f64>,
        within: Duration,
        min_snr: f64,
        min_duration: Duration,
    },
    Silence {
        duration: Duration,
        within: Duration,
    },
    Speech {
        within: Duration,
    },
    PromptEnds {
        within: Duration,
    },
    Audio {
        within: Duration,
    },
    ExpectDtmf {
        digits: String,
        within: Duration,
    },
    Signature {
        from: SignatureFrom,
        within: Duration,
    },
    Hears(Box<HearsCheck>),
    Pesq {
        reference: String,
        min: f64,
        within: Duration,
    },
    Matches {
        reference: String,
        min: f64,
        within: Duration,
    },
    SendDtmf {
        digits: String,
        config: DtmfConfig,
    },
    Reinvite(Option<HoldMode>),
}

#[derive(Debug)]
struct Wait {
    deadline: Instant,
    until: Until,
    /// The media watch whose firing ends the wait.
    watch: Option<u32>,
    /// The watch's event, once fired.
    fired: Option<MediaEvent>,
    /// `wait_for`: listens for the end of the load.
    load_bound: bool,
    /// When a `wait_for` gives up: [`END_WAIT`] after the load is over.
    give_up: Option<Instant>,
    /// Ctrl-C came during this wait: it lasts until the call ends, bounded.
    winding_down: bool,
    then: Then,
}

#[derive(Debug)]
enum Phase {
    /// Ready for the next step.
    Step,
    /// Waiting for the reply to a command.
    Reply(Then),
    /// Waiting for events, a watch or time.
    Wait(Wait),
    /// Waiting for the media stream's status.
    Probe {
        watch: u32,
        deadline: Instant,
        then: Then,
    },
    /// Waiting for the score of an `expect: pesq` step's recording ([`Work::Pesq`]), or the
    /// comparison of an `expect: matches` step's ([`Work::Match`]).
    Scoring {
        id: u32,
        deadline: Instant,
        reference: String,
        min: f64,
        /// `expect: matches` (else `pesq`).
        matching: bool,
    },
    /// The result is ready.
    Done,
}

/// How a wait ended.
struct WaitEnd {
    fired: Option<MediaEvent>,
    gave_up: bool,
}

/// The step under way.
#[derive(Debug, Clone, Copy)]
struct Current {
    index: usize,
    began: Instant,
    failures: usize,
}

/// One call's script (see the module documentation).
#[derive(Debug)]
pub struct CallScript {
    cfg: ScriptConfig,
    steps: Arc<Vec<Located<Step>>>,
    next: usize,
    current: Option<Current>,
    /// The raw P.862 scores of the `expect: pesq` steps, in order.
    pesq_scores: Vec<f64>,
    /// The step under way is being recorded (`record: true`).
    recording_step: bool,
    phase: Phase,
    commands: VecDeque<ScriptCommand>,
    started: Instant,
    /// The call exists (placed, or received): commands about it apply, its events come.
    placed: bool,
    /// Its events still come (the agent has not gone).
    events_open: bool,
    call_id: String,
    /// The media as last negotiated, once the stream's session started.
    media: Option<Negotiated>,
    /// telephone-event and ptime of the session as started (DTMF is sent with them).
    session_dtmf: Option<(Option<u8>, Duration)>,
    ringing: bool,
    answered: bool,
    record: Option<CallRecord>,
    failures: Vec<Failure>,
    tone_onsets: Vec<Duration>,
    audio_checked: u32,
    audio_verified: u32,
    /// `expect: prompt_ends`: speech was heard during the step.
    prompt_heard: bool,
    /// Whether the peer holds the call (its last offer was `sendonly`, `inactive` or
    /// `c=0.0.0.0`).
    peer_held: bool,
    /// What the peer's last re-INVITE or UPDATE offered (`None`: it sent none).
    peer_offer: Option<&'static str>,
    /// The label of the last audio-signature verdict judged (`verified`, `crossed_audio` …).
    signature_verdict: Option<&'static str>,
    dtmf_checked: u32,
    dtmf_verified: u32,
    interrupted: bool,
    stop_requested: bool,
    load_done_at: Option<Instant>,
    steps_run: Vec<StepRun>,
    /// The end the next step waits for (`wait_for: bye` / `cancel`): a waiting step cut
    /// short by exactly that end has not failed, the script goes on to that `wait_for`.
    awaited_end: Option<CallEndReason>,
    /// How long steps wait for the answer (the `call` step's timeout).
    answer_wait: Duration,
    /// Our media as first offered or answered (what `hold` holds and `resume` restores).
    local: Option<LocalMedia>,
    reinvite_pending: bool,
    reinvite_outcome: Option<Result<(), u16>>,
    /// A transfer of ours is under way.
    transfer_pending: bool,
    /// Its outcome, once known.
    transfer_outcome: Option<TransferOutcome>,
    /// The final status of our REFER.
    refer_code: Option<u16>,
    /// Transfers of the far end's (`expect: transferred`).
    transferee: transferee::Transferee,
    /// Attended transfers: our consultation call, or our call being replaced.
    attended: attended::Attended,
    /// The step that hung up (its name, line, column), to name when the BYE fails.
    bye_step: Option<(&'static str, u32, u32)>,
    /// The first tone step verified (name, line, column) and the longest gap it allows:
    /// gaps in the tone after its onset are judged at the call's end.
    tone_step: Option<((&'static str, u32, u32), Duration)>,
    next_watch: u32,
    /// `sipcheck call`'s one call ([`Self::probe`]): its timeline replaces the steps.
    probe: Option<Box<probe::Probe>>,
    /// The redirections the call step being placed follows.
    max_redirects: u32,
    /// The Request-URIs the call was redirected to, in order.
    redirects: Vec<String>,
}

/// The failure of an expected tone that dropped out for `limit` or longer after its onset
/// (`gaps`: the media report's), naming the longest gap and where it was; `None` when no gap
/// reached the limit.
#[must_use]
pub fn gap_failure(gaps: &[Gap], limit: Duration) -> Option<String> {
    let over: Vec<&Gap> = gaps.iter().filter(|g| g.duration() >= limit).collect();
    let longest = over.iter().max_by_key(|g| g.samples)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let more = if over.len() > 1 {
        format!("{} gaps over the limit, the longest ", over.len())
    } else {
        String::new()
    };
    Some(format!(
        "the expected audio dropped out ({more}{:.0} ms at {:.2} s into the received audio; limit {:.0} ms)",
        ms(longest.duration()),
        longest.start().as_secs_f64(),
        ms(limit)
    ))
}

impl CallScript {
    /// A caller's call, starting at `now`: `steps` from its `call` step on. Nothing runs
    /// before [`Self::start`].
    #[must_use]
    pub fn caller(now: Instant, cfg: ScriptConfig, steps: Arc<Vec<Located<Step>>>) -> Self {
        Self::new(now, cfg, steps)
    }

    /// A callee's call: an incoming call with this SIP Call-ID, received at `now`, answered
    /// by `steps` from its first call-level step. Nothing runs before [`Self::start`].
    #[must_use]
    pub fn callee(
        now: Instant,
        cfg: ScriptConfig,
        steps: Arc<Vec<Located<Step>>>,
        call_id: String,
    ) -> Self {
        let mut script = Self::new(now, cfg, steps);
        script.placed = true;
        script.call_id = call_id;
        script
    }

    /// `sipcheck call`'s one call: the steps its options mean (`call` with its answer
    /// timeout, then from the answer `dtmf` after 500 ms, `hold` and `resume`, and `hangup`
    /// after the duration; or `cancel` after its delay), run on one timeline, and the
    /// call's outcome decided from what the peer did ([`Self::finish_probe`]). The call is
    /// placed by [`Self::start`]; the media stream's session (its playlist and the tone
    /// judged over the whole call) is the driver's.
    #[must_use]
    pub fn probe(now: Instant, plan: ProbeCall) -> Self {
        let cfg = ScriptConfig {
            role: "call".into(),
            side: Side::Caller,
            user: String::new(),
            account_domain: String::new(),
            peer_user: String::new(),
            domain: String::new(),
            rtp: true,
            wavs: Arc::new(HashMap::new()),
            scheduled: None,
            start_lag: Duration::ZERO,
            signature_call: None,
            signature_parties: Vec::new().into(),
        };
        let mut script = Self::new(now, cfg, Arc::new(Vec::new()));
        script.probe = Some(Box::new(probe::Probe::new(plan)));
        script
    }

    /// The redirections (3xx) the call being placed may follow (its `call` step's
    /// `follow_redirects`).
    #[must_use]
    pub fn max_redirects(&self) -> u32 {
        self.max_redirects
    }

    /// The call's number for audio signatures, when known.
    #[must_use]
    pub fn signature_call(&self) -> Option<u64> {
        self.cfg.signature_call
    }

    /// Run the first step (unless [`Self::stop`] came first: then none runs).
    pub fn start(&mut self, now: Instant) {
        if let Some(p) = &mut self.probe {
            p.start(&mut self.commands);
            return;
        }
        self.advance(now);
    }

    fn new(now: Instant, cfg: ScriptConfig, steps: Arc<Vec<Located<Step>>>) -> Self {
        Self {
            cfg,
            steps,
            next: 0,
            current: None,
            pesq_scores: Vec::new(),
            recording_step: false,
            phase: Phase::Step,
            commands: VecDeque::new(),
            started: now,
            placed: false,
            events_open: true,
            call_id: String::new(),
            media: None,
            session_dtmf: None,
            ringing: false,
            answered: false,
            record: None,
            failures: Vec::new(),
            tone_onsets: Vec::new(),
            audio_checked: 0,
            audio_verified: 0,
            prompt_heard: false,
            peer_held: false,
            peer_offer: None,
            signature_verdict: None,
            dtmf_checked: 0,
            dtmf_verified: 0,
            interrupted: false,
            stop_requested: false,
            load_done_at: None,
            steps_run: Vec::new(),
            awaited_end: None,
            answer_wait: ANSWER_WAIT,
            local: None,
            reinvite_pending: false,
            reinvite_outcome: None,
            transfer_pending: false,
            transfer_outcome: None,
            refer_code: None,
            transferee: transferee::Transferee::default(),
            attended: attended::Attended::default(),
            bye_step: None,
            tone_step: None,
            next_watch: 0,
            probe: None,
            max_redirects: 0,
            redirects: Vec::new(),
        }
    }

    // --- inputs -------------------------------------------------------------------------

    /// An event of the call (as its agent forwards them).
    pub fn handle_call_event<D>(&mut self, now: Instant, event: CallEvent<D>) {
        if let Some(p) = &mut self.probe {
            p.handle_call_event(now, event, &mut self.commands);
            return;
        }
        match event {
            CallEvent::Progress { code, .. } if code == 180 || code == 183 => {
                self.ringing = true;
            }
            CallEvent::EarlyMedia { negotiated, .. } => {
                self.ringing = true;
                self.start_media(negotiated);
            }
            CallEvent::Answered { negotiated, .. } if self.attended.replacing => {
                self.replaced_answered(negotiated);
            }
            CallEvent::Answered { negotiated, .. } => {
                self.answered = true;
                if self.media.is_some() {
                    self.media_intent(MediaIntent::Remote(negotiated.remote_rtp));
                    self.media = Some(negotiated);
                } else {
                    self.start_media(negotiated);
                }
            }
            CallEvent::MediaUpdated { negotiated, .. } => {
                let offer = (negotiated.remote_hold, peer_offer(&negotiated));
                if self.media.is_some() {
                    self.media_intent(MediaIntent::Follow(Box::new(negotiated.clone())));
                    self.media = Some(negotiated);
                }
                if self.reinvite_pending {
                    self.reinvite_pending = false;
                    self.reinvite_outcome = Some(Ok(()));
                } else {
                    // The peer's offer: whether it holds us, and what it offered.
                    self.peer_held = offer.0;
                    self.peer_offer = Some(offer.1);
                }
            }
            CallEvent::UpdateFailed { code, .. } if self.reinvite_pending => {
                self.reinvite_pending = false;
                self.reinvite_outcome = Some(Err(code));
            }
            CallEvent::Ended { record, .. } => {
                if self.transferee.following.is_some() && !self.interrupted {
                    // The transferor may end the original call before the new one is
                    // answered (RFC 5589 §6): the script goes on with the new call.
                    self.transferee.original_record = Some(*record);
                } else {
                    self.record = Some(*record);
                }
            }
            CallEvent::Referred {
                call,
                refer_to,
                referred_by,
            } => self.on_referred(call, refer_to, referred_by),
            CallEvent::Redirected { target, .. } => self.redirects.push(target),
            CallEvent::ReferAnswered { code, .. } if self.transfer_pending => {
                self.refer_code = Some(code);
                if code >= 300 {
                    self.transfer_pending = false;
                    self.transfer_outcome = Some(TransferOutcome::Refused(code));
                }
            }
            CallEvent::TransferNotified { code, reason, .. }
                if self.transfer_pending && code >= 200 =>
            {
                self.transfer_pending = false;
                self.transfer_outcome = Some(if code < 300 {
                    TransferOutcome::Done
                } else {
                    TransferOutcome::Failed(code, reason)
                });
            }
            _ => {}
        }
        self.advance(now);
    }

    /// The call's events stopped coming without its end (its agent is gone): waits end.
    pub fn events_closed(&mut self, now: Instant) {
        if self.probe.is_some() {
            return;
        }
        // A call whose end was never seen did not pass, whatever its steps did meanwhile.
        if self.events_open && self.placed && !self.ended() {
            self.failures.push(Failure {
                step: "call",
                line: 0,
                col: 0,
                kind: FailureKind::Transport,
                message: "the transport is gone: the call's end was never seen".into(),
            });
        }
        self.events_open = false;
        self.advance(now);
    }

    /// What the call's media stream reports.
    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        if let Some(p) = &mut self.probe {
            p.handle_media_event(now, &event, &mut self.commands);
            return;
        }
        match &mut self.phase {
            Phase::Wait(wait) => {
                let id = match &event {
                    MediaEvent::ToneHeard { watch, .. }
                    | MediaEvent::SilenceHeld { watch }
                    | MediaEvent::DtmfReceived { watch }
                    | MediaEvent::Signature { watch, .. }
                    | MediaEvent::Parties { watch, .. }
                    | MediaEvent::Captured { watch, .. }
                    | MediaEvent::SpeechHeard { watch, .. }
                    | MediaEvent::PromptEnded { watch, .. }
                    | MediaEvent::AudioHeard { watch }
                    | MediaEvent::WatchRefused { watch, .. } => Some(*watch),
                    MediaEvent::Status { .. } => None,
                };
                if id.is_some() && id == wait.watch && !self.interrupted {
                    if matches!(event, MediaEvent::SpeechHeard { .. })
                        && matches!(wait.then, Then::PromptEnds(_))
                    {
                        // The prompt began: the wait goes on until it ends.
                        self.prompt_heard = true;
                    } else {
                        wait.fired = Some(event);
                    }
                }
            }
            Phase::Probe { watch, .. } => {
                if matches!(&event, MediaEvent::Status { watch: w, .. } | MediaEvent::Signature { watch: w, .. } | MediaEvent::Parties { watch: w, .. } if w == watch)
                {
                    let Phase::Probe { then, .. } = std::mem::replace(&mut self.phase, Phase::Step)
                    else {
                        unreachable!("matched as a probe")
                    };
                    self.resume_probe(now, then, Some(event));
                }
            }
            _ => {}
        }
        self.advance(now);
    }

    /// The reply to [`ScriptCommand::Work`]: the step waiting for it is judged. A result
    /// no step waits for any more (given up on, interrupted) is dropped.
    pub fn handle_work_done(&mut self, now: Instant, result: WorkResult) {
        if let Some(p) = &mut self.probe {
            p.handle_work_done(result);
            return;
        }
        let id = result.id();
        if matches!(self.phase, Phase::Scoring { id: i, .. } if i == id) {
            let Phase::Scoring { reference, min, .. } =
                std::mem::replace(&mut self.phase, Phase::Step)
            else {
                unreachable!("matched as scoring")
            };
            let ok = match result {
                WorkResult::Pesq { score, .. } => self.judge_pesq(&reference, min, score),
                WorkResult::Match { found, .. } => self.judge_match(&reference, min, found),
            };
            self.step_done(now, ok);
        }
        self.advance(now);
    }

    /// The reply to [`ScriptCommand::Invite`].
    pub fn handle_placed(&mut self, now: Instant, placed: Result<Placed, CommandError>) {
        if let Some(p) = &mut self.probe {
            if let Ok(placed) = &placed {
                self.placed = true;
                self.call_id.clone_from(&placed.call_id);
            }
            p.handle_placed(now, placed, &mut self.commands);
            return;
        }
        if !matches!(self.phase, Phase::Reply(Then::Placed { .. })) {
            return;
        }
        let Phase::Reply(Then::Placed { timeout, target }) =
            std::mem::replace(&mut self.phase, Phase::Step)
        else {
            unreachable!("matched as placing")
        };
        let ok = match placed {
            Ok(placed) => {
                self.placed = true;
                self.call_id = placed.call_id;
                self.local = Some(placed.local);
                self.answer_wait = timeout;
                true
            }
            Err(CommandError::Unresolved) => {
                self.fail(
                    FailureKind::Other,
                    format!("cannot resolve the host of {target}"),
                );
                false
            }
            Err(CommandError::NoRtpSocket(e)) => {
                self.fail(FailureKind::Other, format!("no RTP socket: {e}"));
                false
            }
            Err(CommandError::Refused(e) | CommandError::SrtpRefused(e)) => {
                self.fail(FailureKind::Other, format!("cannot place the call: {e}"));
                false
            }
            Err(CommandError::TransportGone) => {
                self.fail(FailureKind::Transport, "the role's transport is gone");
                false
            }
        };
        self.step_done(now, ok);
        self.advance(now);
    }

    /// The reply to [`ScriptCommand::Accept`]: our media and the negotiated media (`None`
    /// for a delayed offer, negotiated with the ACK).
    pub fn handle_accepted(
        &mut self,
        now: Instant,
        accepted: Result<(LocalMedia, Option<Negotiated>), CommandError>,
    ) {
        if !matches!(self.phase, Phase::Reply(Then::Accepted)) {
            return;
        }
        self.phase = Phase::Step;
        match accepted {
            Ok((local, negotiated)) => {
                self.local = Some(local);
                if let Some(negotiated) = negotiated {
                    self.start_media(negotiated);
                }
                // The call is up when the ACK arrives.
                self.wait_answer(now, Next::Up);
            }
            Err(e) => {
                match e {
                    CommandError::NoRtpSocket(e) => {
                        self.fail(FailureKind::Other, format!("no RTP socket: {e}"));
                        self.command(ScriptCommand::Reject(503));
                    }
                    CommandError::Refused(e) => {
                        self.fail(FailureKind::CodecRefused, format!("cannot answer: {e}"));
                    }
                    CommandError::SrtpRefused(e) => {
                        self.fail(FailureKind::SrtpRefused, format!("cannot answer: {e}"));
                    }
                    CommandError::Unresolved => {
                        self.fail(FailureKind::CodecRefused, "cannot answer: no address");
                    }
                    CommandError::TransportGone => {
                        self.fail(FailureKind::Transport, "the role's transport is gone");
                    }
                }
                self.step_done(now, false);
            }
        }
        self.advance(now);
    }

    /// The reply to [`ScriptCommand::Reinvite`]: sent, or why not.
    pub fn handle_reinvite_sent(&mut self, now: Instant, sent: Result<(), CommandError>) {
        if let Some(p) = &mut self.probe {
            p.handle_reinvite_sent(now, sent);
            return;
        }
        if !matches!(self.phase, Phase::Reply(Then::ReinviteSent(_))) {
            return;
        }
        let Phase::Reply(Then::ReinviteSent(what)) =
            std::mem::replace(&mut self.phase, Phase::Step)
        else {
            unreachable!("matched as a re-INVITE")
        };
        match sent {
            Ok(()) => {
                self.wait(
                    now,
                    now + REINVITE_WAIT,
                    Until::Reinvite,
                    Then::Reinvited(what),
                );
            }
            Err(CommandError::TransportGone) => {
                self.fail(FailureKind::Transport, "the role's transport is gone");
                self.step_done(now, false);
            }
            Err(e) => {
                let e = match e {
                    CommandError::Refused(e)
                    | CommandError::SrtpRefused(e)
                    | CommandError::NoRtpSocket(e) => e,
                    CommandError::Unresolved => "no address".into(),
                    CommandError::TransportGone => unreachable!("matched above"),
                };
                self.reinvite_pending = false;
                self.fail(
                    FailureKind::Signalling,
                    format!("cannot send the {what} re-INVITE: {e}"),
                );
                self.step_done(now, false);
            }
        }
        self.advance(now);
    }

    /// The reply to [`ScriptCommand::Transfer`]: the REFER was sent, or why not.
    pub fn handle_transfer_sent(&mut self, now: Instant, sent: Result<(), CommandError>) {
        if let Err(e) = sent {
            if self.transfer_pending {
                self.transfer_pending = false;
                let e = match e {
                    CommandError::Refused(e)
                    | CommandError::SrtpRefused(e)
                    | CommandError::NoRtpSocket(e) => e,
                    CommandError::Unresolved => "no address".into(),
                    CommandError::TransportGone => "the role's transport is gone".into(),
                };
                self.transfer_outcome = Some(TransferOutcome::NotSent(e));
            }
        }
        self.advance(now);
    }

    /// Time has come (at or after [`Self::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = &mut self.probe {
            p.handle_timeout(now, &mut self.commands);
            return;
        }
        self.original_bye_due(now);
        self.advance(now);
    }

    /// Ctrl-C: the call winds down (hung up or cancelled, its end awaited, bounded); no
    /// further step runs and the call is counted interrupted, never passed.
    pub fn stop(&mut self, now: Instant) {
        if let Some(p) = &mut self.probe {
            p.stop(&mut self.commands);
            return;
        }
        self.stop_requested = true;
        if let Phase::Wait(wait) = &self.phase {
            if self.interrupts(wait.until) {
                let Phase::Wait(mut wait) = std::mem::replace(&mut self.phase, Phase::Step) else {
                    unreachable!("matched as a wait")
                };
                self.interrupt(now, &mut wait);
                self.phase = Phase::Wait(wait);
            }
        }
        self.advance(now);
    }

    /// The load is over (every caller's call has finished): a `wait_for` still waiting for
    /// the caller's BYE or CANCEL gives up [`END_WAIT`] later.
    pub fn load_done(&mut self, now: Instant) {
        if self.probe.is_some() {
            return;
        }
        if self.load_done_at.is_none() {
            self.load_done_at = Some(now);
        }
        if let Phase::Wait(wait) = &mut self.phase {
            if wait.load_bound && wait.give_up.is_none() {
                wait.give_up = Some(now + END_WAIT);
            }
        }
        self.advance(now);
    }

    // --- outputs ------------------------------------------------------------------------

    /// The next command to carry out.
    pub fn poll_command(&mut self) -> Option<ScriptCommand> {
        self.commands.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(p) = &self.probe {
            return p.poll_timeout();
        }
        let phase = match &self.phase {
            Phase::Wait(wait) => Some(match wait.give_up {
                Some(g) => g.min(wait.deadline),
                None => wait.deadline,
            }),
            Phase::Probe { deadline, .. } | Phase::Scoring { deadline, .. } => Some(*deadline),
            Phase::Step | Phase::Reply(_) | Phase::Done => None,
        };
        let bye = self.transferee.original.and_then(|(_, at)| at);
        [phase, bye].into_iter().flatten().min()
    }

    /// Whether the script is over and the call ended (or given up on): [`Self::finish`].
    #[must_use]
    pub fn is_done(&self) -> bool {
        if let Some(p) = &self.probe {
            return p.is_done();
        }
        matches!(self.phase, Phase::Done)
    }

    /// Our media as the call first offered or answered it (an attended transfer's target
    /// answers the replacing INVITE with it).
    #[must_use]
    pub fn local_media(&self) -> Option<LocalMedia> {
        self.local.clone()
    }

    /// Whether a media stream was started for the call (its report belongs in
    /// [`Self::finish`]).
    #[must_use]
    pub fn has_media(&self) -> bool {
        if let Some(p) = &self.probe {
            return p.has_media();
        }
        self.media.is_some()
    }

    /// The user agent's account name.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.cfg.user
    }

    /// The call's SIP Call-ID, once placed or received (empty before).
    #[must_use]
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call's media as last negotiated, once its stream's session started.
    #[must_use]
    pub fn negotiated(&self) -> Option<&Negotiated> {
        match &self.probe {
            Some(p) => p.negotiated(),
            None => self.media.as_ref(),
        }
    }

    /// Why the call of [`Self::probe`] could not be placed, if it could not.
    #[must_use]
    pub fn place_error(&self) -> Option<&CommandError> {
        self.probe.as_ref().and_then(|p| p.place_error())
    }

    /// The outcome of the call of [`Self::probe`] (`None` for a scenario's script), from its
    /// record (the script's, else `record`, the call as left when its end was not awaited
    /// longer), the report of its media stream (`None` when none ran; judged by
    /// [`judge_media`] once the call was answered), and how to name a call's end in a
    /// failure.
    #[must_use]
    pub fn finish_probe(
        self,
        record: Option<CallRecord>,
        media: Option<&MediaReport>,
        describe: &dyn Fn(&CallEndReason) -> String,
    ) -> Option<ProbeOutcome> {
        let probe = self.probe?;
        Some(probe.finish(record, media, describe))
    }

    /// The failures so far.
    #[must_use]
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The call's result, from what the script saw, the report of its media stream (if one
    /// ran) and its SIP ladder (kept when the call failed).
    #[must_use]
    pub fn finish(mut self, media: Option<&MediaReport>, ladder: &RawLadder) -> CallResult {
        let mut media_result = None;
        if let (Some(r), Some(negotiated)) = (media, &self.media) {
            // An answered call whose far end may send but never did, or whose media
            // stopped for seconds, fails even when no step listened: a silent call is
            // not a passing call.
            let up = self
                .record
                .as_ref()
                .and_then(|rec| rec.duration())
                .unwrap_or_default();
            let far_end_sends = negotiated.direction.receives();
            if self.answered && far_end_sends && up >= Duration::from_secs(1) {
                let gap = r.max_gap;
                let srtp_failed = r.srtp.filter(|s| s.unprotected == 0 && s.auth_failures > 0);
                if let Some(srtp) = srtp_failed {
                    self.failures.push(Failure {
                        step: "call",
                        line: 0,
                        col: 0,
                        kind: FailureKind::SrtpAuthFailed,
                        message: probe::srtp_auth_message(srtp.auth_failures),
                    });
                } else if r.receive.received == 0 {
                    self.failures.push(Failure {
                        step: "call",
                        line: 0,
                        col: 0,
                        kind: FailureKind::NoMedia,
                        message: format!(
                            "no RTP received from the far end{}",
                            stray_note(&r.stray)
                        ),
                    });
                } else if gap > RTP_TIMEOUT {
                    self.failures.push(Failure {
                        step: "call",
                        line: 0,
                        col: 0,
                        kind: FailureKind::NoMedia,
                        message: format!("RTP timeout: no media for {:.1} s", gap.as_secs_f64()),
                    });
                }
            }
            if let Some(((step, line, col), limit)) = self.tone_step {
                if let Some(message) = gap_failure(&r.audio_gaps, limit) {
                    self.failures.push(Failure {
                        step,
                        line,
                        col,
                        kind: FailureKind::AudioGap,
                        message,
                    });
                }
            }
            media_result = Some(CallMedia {
                packets_sent: r.packets_sent,
                packets_received: r.receive.received,
                packets_expected: r.receive.expected,
                packets_lost: r.receive.lost().max(0) as u64,
                jitter_ms: r.receive.jitter_ms,
                pacing_lateness_us: r.lateness_us.clone(),
                frames_skipped: r.frames_skipped,
                stray_packets: r.stray.packets(),
                discontinuities: r.receive.discontinuities(),
                quality: r.quality(),
                audio_gaps: r.audio_gaps.iter().map(Gap::duration).collect(),
                audio_gap_count: r.audio_gap_count,
                round_trip: crate::media::signature::mouth_to_ear(&r.signature_sent, &r.own_onsets),
                signature_sent: r.signature_sent.clone(),
                signature_onsets: r.signature_onsets.clone(),
                delay: None,
                srtp: r.srtp,
            });
        }
        let record = self.record.take();
        // A call that ended abnormally fails, unless a step expected exactly that.
        if let Some(reason) = record.as_ref().and_then(|r| r.reason()) {
            let expected_end = matches!(
                reason,
                CallEndReason::LocalBye
                    | CallEndReason::RemoteBye
                    | CallEndReason::Declined { .. }
                    | CallEndReason::Cancelled
                    | CallEndReason::CancelledByRemote
                    | CallEndReason::Rejected { .. }
                    | CallEndReason::Redirected { .. }
            );
            if !expected_end && self.failures.is_empty() {
                self.failures.push(Failure {
                    step: "call",
                    line: 0,
                    col: 0,
                    kind: kind_of(reason),
                    message: reason.to_string(),
                });
            }
        }
        // A BYE answered with an error or never answered: the call did not end cleanly,
        // whatever the steps expected (the far end may still hold it).
        if let Some(failure) = record.as_ref().and_then(CallRecord::bye_failure) {
            let (step, line, col) = self.bye_step.unwrap_or(("call", 0, 0));
            self.failures.push(Failure {
                step,
                line,
                col,
                kind: FailureKind::ByeFailed(failure.short()),
                message: failure.to_string(),
            });
        }
        if let Some(failure) = self.original_bye_failure() {
            self.failures.push(failure);
        }
        if self.interrupted && self.failures.is_empty() {
            self.failures.push(Failure {
                step: "run",
                line: 0,
                col: 0,
                kind: FailureKind::Interrupted,
                message: "interrupted before the call finished".into(),
            });
        }
        // Where latencies count from: the scheduled start for callers (no coordinated
        // omission), the INVITE's arrival for callees.
        // After a transfer (`expect: transferred`) the set-up times are the original call's,
        // the talk time runs from its answer to the new call's end, and the end is the new
        // call's.
        let first_leg = self.transferee.first_leg.take();
        let setup = first_leg.as_ref().or(record.as_ref());
        let origin = match self.cfg.scheduled {
            Some(_) => self
                .started
                .checked_sub(self.cfg.start_lag)
                .unwrap_or(self.started),
            None => setup.map_or(self.started, |r| r.invite),
        };
        let from = |at: Option<Instant>| at.map(|t| t.saturating_duration_since(origin));
        let r = record.as_ref();
        let duration = match &first_leg {
            Some(first) => r.and_then(|r| {
                Some(r.duration()? + r.answer?.saturating_duration_since(first.answer?))
            }),
            None => r.and_then(CallRecord::duration),
        };
        CallResult {
            role: std::mem::take(&mut self.cfg.role),
            side: self.cfg.side,
            user: std::mem::take(&mut self.cfg.user),
            call_id: std::mem::take(&mut self.call_id),
            scheduled: self.cfg.scheduled,
            start_lag: self.cfg.start_lag,
            invite_to_first_provisional: setup.and_then(|r| from(r.first_provisional)),
            invite_to_ringing: setup.and_then(|r| from(r.first_ringing)),
            invite_to_200: setup.and_then(|r| from(r.answer)),
            bye_rtt: r.and_then(CallRecord::bye_round_trip),
            duration,
            tone_onsets: std::mem::take(&mut self.tone_onsets),
            audio_checked: self.audio_checked,
            audio_verified: self.audio_verified,
            pesq: std::mem::take(&mut self.pesq_scores),
            dtmf_checked: self.dtmf_checked,
            dtmf_verified: self.dtmf_verified,
            media: media_result,
            final_code: setup.and_then(|r| r.final_code),
            bye_code: r.and_then(|r| r.bye_code),
            end_reason: r
                .and_then(|r| r.reason())
                .map_or_else(|| "not started".to_string(), ToString::to_string),
            redirects: r.map(|r| r.redirects.clone()).unwrap_or_default(),
            ladder: if self.failures.is_empty() {
                Vec::new()
            } else {
                ladder.rungs()
            },
            failures: std::mem::take(&mut self.failures),
            steps: std::mem::take(&mut self.steps_run),
        }
    }

    // --- the steps ----------------------------------------------------------------------

    fn ended(&self) -> bool {
        self.record.is_some()
    }

    fn command(&mut self, command: ScriptCommand) {
        if self.placed {
            self.commands.push_back(command);
        }
    }

    fn media_intent(&mut self, intent: MediaIntent) {
        self.commands.push_back(ScriptCommand::Media(intent));
    }

    fn fail(&mut self, kind: FailureKind, message: impl Into<String>) {
        let (step, line, col) = match self.current {
            Some(c) => {
                let s = &self.steps[c.index];
                (s.value.name(), s.line, s.col)
            }
            None => ("call", 0, 0),
        };
        self.failures.push(Failure {
            step,
            line,
            col,
            kind,
            message: message.into(),
        });
    }

    /// The `max_gap` of the current step, when it is a tone expectation.
    fn current_max_gap(&self) -> Duration {
        match self.current.map(|c| &self.steps[c.index].value) {
            Some(Step::Expect(Expectation::Tone { max_gap, .. })) => *max_gap,
            _ => DEFAULT_MAX_GAP,
        }
    }

    fn step_here(&self) -> Option<(&'static str, u32, u32)> {
        self.current.map(|c| {
            let s = &self.steps[c.index];
            (s.value.name(), s.line, s.col)
        })
    }

    /// Run steps and waits as far as the inputs so far allow.
    fn advance(&mut self, now: Instant) {
        loop {
            match &self.phase {
                Phase::Step => self.start_step(now),
                Phase::Wait(wait) => {
                    let Some(end) = self.wait_over(wait, now) else {
                        return;
                    };
                    let Phase::Wait(wait) = std::mem::replace(&mut self.phase, Phase::Step) else {
                        unreachable!("matched as a wait")
                    };
                    self.resume_wait(now, wait, end);
                }
                Phase::Probe { deadline, .. } => {
                    if now < *deadline {
                        return;
                    }
                    let Phase::Probe { then, .. } = std::mem::replace(&mut self.phase, Phase::Step)
                    else {
                        unreachable!("matched as a probe")
                    };
                    self.resume_probe(now, then, None);
                }
                Phase::Scoring {
                    deadline,
                    reference,
                    matching,
                    ..
                } => {
                    if self.stop_requested {
                        // Ctrl-C: the score is not waited for (its result is dropped).
                        self.interrupted = true;
                    } else if now >= *deadline {
                        let (what, kind) = if *matching {
                            ("not compared with", FailureKind::PromptMismatch)
                        } else {
                            ("PESQ against", FailureKind::PesqLow)
                        };
                        let message = if *matching {
                            format!(
                                "the received audio {what} `{reference}`: no result within {:.0} s",
                                WORK_WAIT.as_secs_f64()
                            )
                        } else {
                            format!(
                                "{what} `{reference}` not scored: no result within {:.0} s",
                                WORK_WAIT.as_secs_f64()
                            )
                        };
                        self.fail(kind, message);
                    } else {
                        return;
                    }
                    self.phase = Phase::Step;
                    self.step_done(now, false);
                }
                Phase::Reply(_) | Phase::Done => return,
            }
        }
    }

    fn start_step(&mut self, now: Instant) {
        while self.next < self.steps.len() && !is_call_step(&self.steps[self.next].value) {
            self.next += 1;
        }
        if self.next >= self.steps.len() {
            self.wind_up(now);
            return;
        }
        if self.stop_requested {
            self.interrupted = true;
            self.wind_up(now);
            return;
        }
        let index = self.next;
        self.next += 1;
        let steps = Arc::clone(&self.steps);
        self.awaited_end = steps[self.next..]
            .iter()
            .find(|s| is_call_step(&s.value))
            .and_then(|s| match &s.value {
                Step::WaitFor(WaitEvent::Bye) => Some(CallEndReason::RemoteBye),
                Step::WaitFor(WaitEvent::Cancel) => Some(CallEndReason::CancelledByRemote),
                _ => None,
            });
        self.current = Some(Current {
            index,
            began: now,
            failures: self.failures.len(),
        });
        if let Some(ok) = self.begin(now, &steps[index].value) {
            self.step_done(now, ok);
        }
    }

    /// The current step is over: on to the next, or to the end when it failed.
    fn step_done(&mut self, now: Instant, ok: bool) {
        if std::mem::take(&mut self.recording_step) {
            self.media_intent(MediaIntent::EndRecord);
        }
        if let Some(c) = self.current.take() {
            let step = &self.steps[c.index];
            self.steps_run.push(StepRun {
                line: step.line,
                col: step.col,
                elapsed: now.saturating_duration_since(c.began),
                passed: ok && !self.interrupted && self.failures.len() == c.failures,
            });
        }
        if !ok || self.interrupted {
            self.next = self.steps.len();
            self.wind_up(now);
        } else {
            self.phase = Phase::Step;
        }
    }

    /// The script is over: hang up if the call is still up, and wait for its end.
    fn wind_up(&mut self, now: Instant) {
        self.next = self.steps.len();
        if self.placed && !self.ended() {
            self.command(ScriptCommand::Hangup);
            self.wait(now, now + END_WAIT, Until::Ended, Then::Finished);
        } else {
            self.phase = Phase::Done;
        }
    }

    /// Start step `step`; `Some(passed)` when it is over at once.
    fn begin(&mut self, now: Instant, step: &Step) -> Option<bool> {
        match step {
            Step::Register { .. } | Step::Unregister => Some(true),
            Step::Call(c) => {
                let to = c.to.render(Fill {
                    user: &self.cfg.user,
                    peer: &self.cfg.peer_user,
                    domain: &self.cfg.account_domain,
                });
                let Some(target) = complete_uri(&to, &self.cfg.domain) else {
                    self.fail(FailureKind::Other, format!("'{to}' is not a SIP URI"));
                    return Some(false);
                };
                self.max_redirects = c.max_redirects;
                self.commands.push_back(ScriptCommand::Invite {
                    target: target.clone(),
                });
                self.phase = Phase::Reply(Then::Placed {
                    timeout: c.timeout,
                    target,
                });
                None
            }
            Step::Answer { ring } => {
                if self.ended() {
                    return Some(self.unexpected_end());
                }
                if ring.is_zero() {
                    return self.accept();
                }
                self.command(ScriptCommand::Ring);
                self.wait(now, now + *ring, Until::Time, Then::AnswerRang)
            }
            Step::Reject { code, ring } => {
                if self.ended() {
                    return Some(self.unexpected_end());
                }
                if ring.is_zero() {
                    return self.reject(now, *code);
                }
                self.command(ScriptCommand::Ring);
                self.wait(now, now + *ring, Until::Time, Then::RejectRang(*code))
            }
            Step::Ring(d) => {
                self.command(ScriptCommand::Ring);
                self.wait(now, now + *d, Until::Time, Then::Elapsed)
            }
            Step::Play(items) => self.wait_answer(now, Next::Play(items.clone())),
            Step::Expect(expectation) => self.expect(now, expectation),
            Step::Dtmf {
                digits,
                duration,
                gap,
            } => {
                let digits = digits.iter().map(|d| d.to_char()).collect();
                let config = DtmfConfig {
                    digit_duration: *duration,
                    gap: *gap,
                    ..DtmfConfig::default()
                };
                self.wait_answer(now, Next::SendDtmf { digits, config })
            }
            Step::Wait(d) => self.wait(now, now + *d, Until::Time, Then::Elapsed),
            Step::Hold(mode) => self.wait_answer(now, Next::Reinvite(Some(*mode))),
            Step::Resume => self.wait_answer(now, Next::Reinvite(None)),
            Step::Transfer {
                to,
                within,
                consult,
                hear,
            } => {
                let fill = Fill {
                    user: &self.cfg.user,
                    peer: "",
                    domain: &self.cfg.account_domain,
                };
                let to = to.render(fill);
                let Some(target) = complete_uri(&to, &self.cfg.domain) else {
                    self.fail(FailureKind::Other, format!("'{to}' is not a SIP URI"));
                    return Some(false);
                };
                let next = match consult {
                    Some(_) => Next::Consult(target, *within, *hear),
                    None => Next::Transfer(target, *within),
                };
                self.wait_answer(now, next)
            }
            Step::Hangup { after } => {
                if after.is_zero() {
                    return self.hangup(now);
                }
                self.wait(now, now + *after, Until::Time, Then::HangupAfter)
            }
            Step::Cancel { after } => {
                if after.is_zero() {
                    return self.cancel(now);
                }
                self.wait(now, now + *after, Until::Time, Then::CancelAfter)
            }
            Step::WaitFor(event) => {
                let give_up = self.load_done_at.map(|_| now + END_WAIT);
                let pending =
                    self.wait(now, now + WAIT_FOR_MAX, Until::Ended, Then::WaitFor(*event));
                if let Phase::Wait(wait) = &mut self.phase {
                    wait.load_bound = true;
                    wait.give_up = give_up;
                }
                pending
            }
        }
    }

    fn expect(&mut self, now: Instant, expectation: &Expectation) -> Option<bool> {
        match expectation {
            Expectation::Ringing { within } => {
                self.wait(now, now + *within, Until::Ringing, Then::Ringing(*within))
            }
            Expectation::Answered { within } => {
                self.wait(now, now + *within, Until::Answered, Then::Answered(*within))
            }
            Expectation::RedirectedTo { target, within } => {
                let expected = target.render(Fill {
                    user: &self.cfg.user,
                    peer: &self.cfg.peer_user,
                    domain: &self.cfg.account_domain,
                });
                let then = Then::RedirectedTo(expected, *within);
                self.wait(now, now + *within, Until::Answered, then)
            }
            Expectation::Final { code, within } => {
                self.wait(now, now + *within, Until::Final(*code), Then::Final(*code))
            }
            Expectation::Tone {
                frequencies,
                within,
                min_snr,
                min_duration,
                ..
            } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Tone {
                        frequencies: frequencies.clone(),
                        within: *within,
                        min_snr: min_snr.0,
                        min_duration: *min_duration,
                    },
                )
            }
            Expectation::Silence { duration, within } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Silence {
                        duration: *duration,
                        within: *within,
                    },
                )
            }
            Expectation::Speech { within } => {
                self.audio_checked += 1;
                self.wait_answer(now, Next::Speech { within: *within })
            }
            Expectation::Audio { within } => {
                self.audio_checked += 1;
                self.wait_answer(now, Next::Audio { within: *within })
            }
            Expectation::Held { within } => {
                self.wait(now, now + *within, Until::Held, Then::Held(*within))
            }
            Expectation::Transferred { within } => {
                self.wait_answer(now, Next::Transferred(*within))
            }
            Expectation::Replaced { within } => self.wait_answer(now, Next::Replaced(*within)),
            Expectation::PromptEnds { within } => {
                self.audio_checked += 1;
                self.prompt_heard = false;
                self.wait_answer(now, Next::PromptEnds { within: *within })
            }
            Expectation::Hears {
                parties,
                own,
                within,
            } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Hears(Box::new(HearsCheck {
                        parties: parties.clone(),
                        own: own.clone(),
                        within: *within,
                    })),
                )
            }
            Expectation::Signature { from, within } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Signature {
                        from: *from,
                        within: *within,
                    },
                )
            }
            Expectation::Pesq {
                reference,
                min,
                within,
            } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Pesq {
                        reference: reference.clone(),
                        min: *min,
                        within: *within,
                    },
                )
            }
            Expectation::Matches {
                reference,
                min_similarity,
                within,
            } => {
                self.audio_checked += 1;
                self.wait_answer(
                    now,
                    Next::Matches {
                        reference: reference.clone(),
                        min: *min_similarity,
                        within: *within,
                    },
                )
            }
            Expectation::Dtmf { digits, within } => {
                self.dtmf_checked += 1;
                let digits = digits.iter().map(|d| d.to_char()).collect();
                self.wait_answer(
                    now,
                    Next::ExpectDtmf {
                        digits,
                        within: *within,
                    },
                )
            }
        }
    }

    fn accept(&mut self) -> Option<bool> {
        if !self.placed {
            return Some(false);
        }
        self.command(ScriptCommand::Accept);
        self.phase = Phase::Reply(Then::Accepted);
        None
    }

    fn reject(&mut self, now: Instant, code: u16) -> Option<bool> {
        self.command(ScriptCommand::Reject(code));
        self.wait(now, now + END_WAIT, Until::Ended, Then::Pass)
    }

    fn hangup(&mut self, now: Instant) -> Option<bool> {
        // RFC 3261 §15.1.1: media stops once the BYE is sent.
        if self.media.is_some() {
            self.media_intent(MediaIntent::SetSending(false));
        }
        self.bye_step = self.step_here();
        self.command(ScriptCommand::Hangup);
        self.wait(now, now + END_WAIT, Until::Ended, Then::Pass)
    }

    fn cancel(&mut self, now: Instant) -> Option<bool> {
        self.bye_step = self.step_here();
        self.command(ScriptCommand::Cancel);
        self.wait(now, now + END_WAIT, Until::Ended, Then::Cancelled)
    }

    /// REFER the far end to `target` (its Refer-To) and wait `within` for the outcome.
    fn refer(&mut self, now: Instant, target: String, within: Duration) -> Option<bool> {
        self.transfer_pending = true;
        self.transfer_outcome = None;
        self.refer_code = None;
        let referred_by = format!("sip:{}@{}", self.cfg.user, self.cfg.account_domain);
        self.command(ScriptCommand::Transfer {
            target,
            referred_by,
        });
        self.wait(
            now,
            now + within,
            Until::Transfer,
            Then::Transferred(within),
        )
    }

    /// Wait until the call is answered (media can flow), then go on with `next`; a failure
    /// if it ended, or was not answered within the `call` step's timeout.
    fn wait_answer(&mut self, now: Instant, next: Next) -> Option<bool> {
        let deadline = self.started + self.answer_wait.max(Duration::from_secs(1));
        self.wait(now, deadline, Until::Answered, Then::Answer(next))
    }

    /// The call is answered: what the step does with it.
    fn answered_then(&mut self, now: Instant, next: Next) -> Option<bool> {
        if let Some(c) = self.current {
            let step = &self.steps[c.index];
            if step.record && self.media.is_some() && !self.recording_step {
                self.recording_step = true;
                let line = step.line;
                self.media_intent(MediaIntent::Record { line });
            }
        }
        match next {
            Next::Up => Some(true),
            Next::Transferred(within) => self.await_referral(now, within),
            Next::Replaced(within) => self.await_replaced(now, within),
            Next::Consult(target, within, hear) => self.consult(target, within, hear),
            Next::Transfer(target, within) => self.refer(now, target, within),
            Next::Play(items) => {
                if self.media.is_some() {
                    let playlist = self.playlist(&items);
                    self.media_intent(MediaIntent::Play(playlist));
                }
                Some(true)
            }
            Next::Tone {
                frequencies,
                within,
                min_snr,
                min_duration,
            } => {
                let query = match frequencies.as_slice() {
                    [f] => ToneQuery::single(*f),
                    [a, b, ..] => ToneQuery::dual(*a, *b),
                    [] => return Some(true),
                };
                let Ok(query) = query else { return Some(true) };
                let query = query.min_snr_db(min_snr).min_duration(min_duration);
                let label = frequencies
                    .iter()
                    .map(|f| format!("{f}"))
                    .collect::<Vec<_>>()
                    .join("+");
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchTone { watch, query });
                self.wait_watch(now, now + within, watch, Then::Tone { label, within })
            }
            Next::Silence { duration, within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchSilence { watch, duration });
                self.wait_watch(now, now + within + duration, watch, Then::Silence(duration))
            }
            Next::Speech { within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchSpeech { watch });
                self.wait_watch(now, now + within, watch, Then::Speech(within))
            }
            Next::Audio { within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchAudio { watch });
                let on_hold = self.peer_held;
                self.wait_watch(now, now + within, watch, Then::Audio(within, on_hold))
            }
            Next::PromptEnds { within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchPromptEnd { watch });
                self.wait_watch(now, now + within, watch, Then::PromptEnds(within))
            }
            Next::Pesq {
                reference,
                min,
                within,
            } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let Some(samples) = self.cfg.wavs.get(&reference).map(|r| r.len()) else {
                    self.fail(
                        FailureKind::Other,
                        format!("the PESQ reference `{reference}` was not loaded"),
                    );
                    return Some(false);
                };
                let samples = samples + pesq::RECORD_SLACK_SAMPLES;
                let watch = self.new_watch();
                self.media_intent(MediaIntent::Capture { watch, samples });
                let length = samples_to_duration(samples as u64);
                self.wait_watch(
                    now,
                    now + within + length,
                    watch,
                    Then::Pesq {
                        reference,
                        min,
                        within,
                    },
                )
            }
            Next::Matches {
                reference,
                min,
                within,
            } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let Some(length) = self.cfg.wavs.get(&reference).map(|r| r.len()) else {
                    self.fail(
                        FailureKind::Other,
                        format!("the reference `{reference}` was not loaded"),
                    );
                    return Some(false);
                };
                let samples = usize::try_from(crate::media::duration_to_samples(within))
                    .unwrap_or(usize::MAX)
                    .saturating_add(length);
                let watch = self.new_watch();
                self.media_intent(MediaIntent::Capture { watch, samples });
                let length = samples_to_duration(samples as u64);
                self.wait_watch(
                    now,
                    now + within + length,
                    watch,
                    Then::Matches {
                        reference,
                        min,
                        within,
                    },
                )
            }
            Next::Signature { from, within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let Some((expected, own)) = self.signature_codes(from) else {
                    self.fail(
                        FailureKind::NoAudio,
                        "no signature to expect: the INVITE carried no X-Sipcheck-Signature header (the caller plays none, or a server removed it)",
                    );
                    return Some(false);
                };
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchSignature {
                    watch,
                    expected,
                    own: Some(own),
                });
                self.wait_watch(now, now + within, watch, Then::Signature(from, within))
            }
            Next::Hears(check) => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchParties {
                    watch,
                    expected: check.expected(),
                    own: check.own(),
                });
                let deadline = now + check.within;
                self.wait_watch(now, deadline, watch, Then::Hears(check))
            }
            Next::ExpectDtmf { digits, within } => {
                if self.media.is_none() {
                    return Some(false);
                }
                let watch = self.new_watch();
                self.media_intent(MediaIntent::WatchDtmf {
                    watch,
                    digits: digits.clone(),
                });
                self.wait_watch(now, now + within, watch, Then::Dtmf(digits))
            }
            Next::SendDtmf { digits, config } => {
                let sent = match self.session_dtmf {
                    None => Err("no media".to_string()),
                    Some((None, _)) => Err(MediaError::NoTelephoneEvent.to_string()),
                    Some((Some(_), ptime)) => {
                        DtmfSender::new(&digits, DtmfConfig { ptime, ..config })
                            .map(|_| ())
                            .map_err(|e| MediaError::from(e).to_string())
                    }
                };
                match sent {
                    Ok(()) => {
                        self.media_intent(MediaIntent::SendDtmf { digits, config });
                        Some(true)
                    }
                    Err(e) => {
                        self.fail(FailureKind::DtmfMissing, format!("DTMF not sent: {e}"));
                        Some(false)
                    }
                }
            }
            Next::Reinvite(hold) => {
                let (true, Some(mut media)) = (self.placed, self.local.clone()) else {
                    return Some(false);
                };
                if let Some(mode) = hold {
                    media.direction = match (mode, media.direction) {
                        (HoldMode::Inactive, _) | (_, sdp::Direction::Inactive) => {
                            sdp::Direction::Inactive
                        }
                        (HoldMode::SendOnly, _) => sdp::Direction::SendOnly,
                    };
                }
                let what = self.step_here().map_or("hold", |(name, _, _)| name);
                self.reinvite_pending = true;
                self.reinvite_outcome = None;
                self.command(ScriptCommand::Reinvite(Box::new(media)));
                self.phase = Phase::Reply(Then::ReinviteSent(what));
                None
            }
        }
    }

    fn new_watch(&mut self) -> u32 {
        self.next_watch = self.next_watch.wrapping_add(1);
        self.next_watch
    }

    /// Whether Ctrl-C interrupts a wait for `until` now (as it would at its start).
    fn interrupts(&self, until: Until) -> bool {
        !self.interrupted
            && self.placed
            && self.events_open
            && !self.ended()
            && !self.until_met(until)
    }

    fn interrupt(&mut self, now: Instant, wait: &mut Wait) {
        // Ctrl-C: hang up (or cancel) and wait for the end, bounded.
        self.interrupted = true;
        wait.winding_down = true;
        wait.fired = None;
        wait.deadline = now + END_WAIT;
        self.abandon_transfer();
        self.command(ScriptCommand::Hangup);
    }

    /// Wait for `until`, the call's end, or `deadline`; then `then`. Always `None` (pending).
    fn wait(&mut self, now: Instant, deadline: Instant, until: Until, then: Then) -> Option<bool> {
        self.wait_for(now, deadline, until, None, then)
    }

    /// [`Self::wait`] for time, ended early by the media watch `watch`.
    fn wait_watch(
        &mut self,
        now: Instant,
        deadline: Instant,
        watch: u32,
        then: Then,
    ) -> Option<bool> {
        self.wait_for(now, deadline, Until::Time, Some(watch), then)
    }

    fn wait_for(
        &mut self,
        now: Instant,
        deadline: Instant,
        until: Until,
        watch: Option<u32>,
        then: Then,
    ) -> Option<bool> {
        let mut wait = Wait {
            deadline,
            until,
            watch,
            fired: None,
            load_bound: false,
            give_up: None,
            winding_down: false,
            then,
        };
        if self.stop_requested && self.interrupts(until) {
            self.interrupt(now, &mut wait);
        }
        self.phase = Phase::Wait(wait);
        None
    }

    fn until_met(&self, until: Until) -> bool {
        match until {
            Until::Ended => self.ended(),
            Until::Time => false,
            Until::Answered => self.answered,
            Until::Ringing => self.ringing || self.answered,
            Until::Final(code) => self.answered && code < 300,
            Until::Reinvite => self.reinvite_outcome.is_some(),
            Until::Held => self.peer_held,
            Until::Transfer => self.transfer_outcome.is_some(),
            Until::Referred => self.transferee.referral.is_some(),
            Until::Consulted => self
                .attended
                .consult
                .as_ref()
                .is_some_and(|c| c.outcome.is_some()),
            Until::Replaced => self.attended.replaced,
            Until::Followed => self
                .transferee
                .following
                .as_ref()
                .is_some_and(|f| f.outcome.is_some()),
        }
    }

    /// Whether `wait` is over at `now`, and how.
    fn wait_over(&self, wait: &Wait, now: Instant) -> Option<WaitEnd> {
        if wait.fired.is_some() && !self.interrupted {
            return Some(WaitEnd {
                fired: wait.fired.clone(),
                gave_up: false,
            });
        }
        let over = self.ended()
            || (!wait.winding_down && self.until_met(wait.until))
            || !self.placed
            || !self.events_open
            || now >= wait.deadline;
        if over {
            return Some(WaitEnd {
                fired: None,
                gave_up: false,
            });
        }
        if wait.give_up.is_some_and(|g| now >= g) {
            return Some(WaitEnd {
                fired: None,
                gave_up: true,
            });
        }
        None
    }

    fn resume_wait(&mut self, now: Instant, wait: Wait, end: WaitEnd) {
        let result = match wait.then {
            Then::Finished => {
                self.phase = Phase::Done;
                return;
            }
            Then::Placed { .. }
            | Then::Accepted
            | Then::ReinviteSent(_)
            | Then::Following
            | Then::Consulting => {
                unreachable!("a reply is not waited for in a wait")
            }
            Then::ToneMissing { .. }
            | Then::DtmfMissing(_)
            | Then::SignatureMissing(..)
            | Then::HearsMissing(_)
            | Then::AudioMissing { .. } => {
                unreachable!("a status is not waited for in a wait")
            }
            Then::AnswerRang => {
                if self.ended() {
                    Some(self.unexpected_end())
                } else {
                    self.accept()
                }
            }
            Then::Answer(next) => {
                if self.answered && !self.ended() {
                    self.answered_then(now, next)
                } else if self.interrupted {
                    Some(false)
                } else if matches!(next, Next::Up) && self.bye_before_ack() {
                    // The caller's BYE shows our 2xx reached it and that it sent its ACK
                    // first (RFC 3261 §13.2.2.4, §15): the ACK was lost, the call was up.
                    Some(true)
                } else if self.ended() {
                    Some(self.unexpected_end())
                } else {
                    let wait = self.answer_wait.as_secs_f64();
                    self.fail(
                        FailureKind::Signalling,
                        format!("not answered within {wait:.1} s"),
                    );
                    Some(false)
                }
            }
            Then::RejectRang(code) => {
                if self.ended() {
                    Some(self.unexpected_end())
                } else {
                    self.reject(now, code)
                }
            }
            Then::Pass => Some(true),
            Then::Elapsed => {
                if self.ended() {
                    Some(self.waiting_cut_short())
                } else {
                    Some(true)
                }
            }
            Then::HangupAfter => {
                if self.ended() {
                    Some(self.waiting_cut_short())
                } else {
                    self.hangup(now)
                }
            }
            Then::CancelAfter => {
                if self.ended() {
                    Some(self.unexpected_end())
                } else {
                    self.cancel(now)
                }
            }
            Then::Cancelled => match self.record.as_ref().and_then(|r| r.reason()) {
                Some(reason @ CallEndReason::CancelFailed { .. }) => {
                    let (kind, message) = (kind_of(reason), reason.to_string());
                    self.fail(kind, message);
                    Some(false)
                }
                _ => Some(true),
            },
            Then::WaitFor(event) => Some(self.waited_for(event, end.gave_up)),
            Then::Ringing(within) => {
                if self.ringing {
                    Some(true)
                } else {
                    let why = if self.ended() {
                        self.end_failure().1
                    } else {
                        format!("nothing within {:.1} s", within.as_secs_f64())
                    };
                    self.fail(
                        FailureKind::Signalling,
                        format!("expected 180/183 ringing: {why}"),
                    );
                    Some(false)
                }
            }
            Then::Answered(within) => {
                if self.answered {
                    Some(true)
                } else {
                    let (kind, why) = if self.ended() {
                        self.end_failure()
                    } else {
                        (
                            FailureKind::Signalling,
                            format!("nothing within {:.1} s", within.as_secs_f64()),
                        )
                    };
                    self.fail(kind, format!("expected the call to be answered: {why}"));
                    Some(false)
                }
            }
            Then::RedirectedTo(expected, within) => self.judge_redirected(&expected, within),
            Then::Final(code) => {
                let got = self
                    .record
                    .as_ref()
                    .and_then(|r| r.final_code)
                    .or(self.answered.then_some(200));
                if got == Some(code) {
                    // An expected rejection is the call's normal end.
                    Some(true)
                } else {
                    let got = got.map_or("no final response".to_string(), |c| c.to_string());
                    self.fail(
                        FailureKind::Signalling,
                        format!("expected final response {code}, got {got}"),
                    );
                    Some(false)
                }
            }
            Then::Tone { label, within } => match end.fired {
                Some(MediaEvent::ToneHeard { onset, .. }) => {
                    self.audio_verified += 1;
                    self.tone_onsets.push(onset);
                    if self.tone_step.is_none() {
                        let limit = self.current_max_gap();
                        self.tone_step = self.step_here().map(|s| (s, limit));
                    }
                    Some(true)
                }
                Some(MediaEvent::WatchRefused { reason, .. }) => {
                    self.fail(
                        FailureKind::ToneMissing,
                        format!("expected tone {label} Hz could not be watched: {reason}"),
                    );
                    Some(false)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        self.probe_status(now, Then::ToneMissing { label, within })
                    }
                }
            },
            Then::Pesq {
                reference,
                min,
                within,
            } => match end.fired {
                Some(MediaEvent::Captured { audio, .. }) => {
                    self.request_scoring(now, reference, min, audio, false)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if !self.interrupted {
                        self.fail(
                            FailureKind::NoAudio,
                            format!(
                                "no speech to score for PESQ: no audio received within {:.1} s",
                                within.as_secs_f64()
                            ),
                        );
                    }
                    Some(false)
                }
            },
            Then::Matches {
                reference,
                min,
                within,
            } => match end.fired {
                Some(MediaEvent::Captured { audio, .. }) => {
                    self.request_scoring(now, reference, min, audio, true)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if !self.interrupted {
                        self.fail(
                            FailureKind::NoAudio,
                            format!(
                                "no audio to compare with `{reference}`: none received within {:.1} s, or the call ended before {:.1} s more were recorded",
                                within.as_secs_f64(),
                                self.cfg
                                    .wavs
                                    .get(&reference)
                                    .map_or(0.0, |r| r.len() as f64 / 8000.0)
                            ),
                        );
                    }
                    Some(false)
                }
            },
            Then::Silence(duration) => {
                if matches!(end.fired, Some(MediaEvent::SilenceHeld { .. })) {
                    self.audio_verified += 1;
                    Some(true)
                } else {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        let what = format!(
                            "expected {:.1} s of silence (no speech, no tone), not heard",
                            duration.as_secs_f64()
                        );
                        self.probe_status(
                            now,
                            Then::AudioMissing {
                                kind: FailureKind::NoSilence,
                                what,
                            },
                        )
                    }
                }
            }
            Then::Speech(within) => match end.fired {
                Some(MediaEvent::SpeechHeard { .. }) => {
                    self.audio_verified += 1;
                    Some(true)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        let what = format!(
                            "expected speech, none heard within {:.1} s",
                            within.as_secs_f64()
                        );
                        self.probe_status(
                            now,
                            Then::AudioMissing {
                                kind: FailureKind::NoSpeech,
                                what,
                            },
                        )
                    }
                }
            },
            Then::Audio(within, on_hold) => match end.fired {
                Some(MediaEvent::AudioHeard { .. }) => {
                    self.audio_verified += 1;
                    Some(true)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        let held = if on_hold { " while on hold" } else { "" };
                        let what = format!(
                            "expected audio{held}, none heard within {:.1} s (no {} ms of speech, music or tone)",
                            within.as_secs_f64(),
                            crate::media::intent::AUDIO_MIN.as_millis()
                        );
                        self.probe_status(
                            now,
                            Then::AudioMissing {
                                kind: FailureKind::NoAudio,
                                what,
                            },
                        )
                    }
                }
            },
            Then::Held(within) => {
                if self.peer_held {
                    Some(true)
                } else {
                    let (kind, why) = if self.ended() {
                        self.end_failure()
                    } else {
                        let did = match self.peer_offer {
                            None => "it sent no re-INVITE or UPDATE".to_string(),
                            Some(offer) => format!("its last re-INVITE or UPDATE offered {offer}"),
                        };
                        (
                            FailureKind::NotHeld,
                            format!("within {:.1} s {did}", within.as_secs_f64()),
                        )
                    };
                    self.fail(
                        kind,
                        format!("expected the peer to put the call on hold: {why}"),
                    );
                    Some(false)
                }
            }
            Then::PromptEnds(within) => match end.fired {
                Some(MediaEvent::PromptEnded { .. }) => {
                    self.audio_verified += 1;
                    Some(true)
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        let (kind, what) = if self.prompt_heard {
                            (
                                FailureKind::PromptNeverEnded,
                                format!(
                                    "the prompt began but did not end within {:.1} s (no pause of {:.1} s)",
                                    within.as_secs_f64(),
                                    crate::media::vad::HANGOVER.as_secs_f64()
                                ),
                            )
                        } else {
                            (
                                FailureKind::NoSpeech,
                                format!(
                                    "expected a prompt to end, no speech heard within {:.1} s",
                                    within.as_secs_f64()
                                ),
                            )
                        };
                        self.probe_status(now, Then::AudioMissing { kind, what })
                    }
                }
            },
            Then::Hears(check) => match end.fired {
                Some(MediaEvent::Parties { verdict, .. }) => {
                    Some(self.judge_parties(&check, verdict))
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        let watch = self.new_watch();
                        self.media_intent(MediaIntent::JudgeParties {
                            watch,
                            expected: check.expected(),
                            own: check.own(),
                        });
                        self.phase = Phase::Probe {
                            watch,
                            deadline: now + PROBE_WAIT,
                            then: Then::HearsMissing(check),
                        };
                        None
                    }
                }
            },
            Then::Signature(from, within) => match end.fired {
                Some(MediaEvent::Signature { verdict, .. }) => {
                    Some(self.judge_signature(from, within, verdict))
                }
                _ => {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        self.judge_status(now, from, Then::SignatureMissing(from, within))
                    }
                }
            },
            Then::Dtmf(expected) => {
                if matches!(end.fired, Some(MediaEvent::DtmfReceived { .. })) {
                    self.dtmf_verified += 1;
                    Some(true)
                } else {
                    self.unwatch(wait.watch);
                    if self.interrupted {
                        Some(false)
                    } else {
                        self.probe_status(now, Then::DtmfMissing(expected))
                    }
                }
            }
            Then::Referred(within) => self.referral_over(within),
            Then::Followed => self.followed(),
            Then::Consulted => self.consulted(now),
            Then::ConsultHeard(label) => self.consult_heard(now, wait.watch, &end, &label),
            Then::Replaced(within) => self.replaced_over(within),
            Then::Transferred(within) => match self.transfer_outcome.take() {
                // RFC 5589 §6: the transferor ends its own leg once the transfer succeeded;
                // §7: attended, its consultation call too.
                Some(TransferOutcome::Done) => {
                    self.end_consultation();
                    self.hangup(now)
                }
                Some(TransferOutcome::Refused(code)) => {
                    self.fail(
                        FailureKind::SipCode(code),
                        format!("the REFER was answered {code}: the transfer was refused"),
                    );
                    Some(false)
                }
                Some(TransferOutcome::Failed(code, reason)) => {
                    self.fail(
                        FailureKind::TransferFailed(code),
                        format!(
                            "{code} {reason}: the final status of the transferee's new call, as its NOTIFY said"
                        ),
                    );
                    Some(false)
                }
                Some(TransferOutcome::NotSent(e)) => {
                    self.fail(
                        FailureKind::Signalling,
                        format!("cannot send the REFER: {e}"),
                    );
                    Some(false)
                }
                None if self.interrupted => Some(false),
                None if self.ended() => Some(self.unexpected_end()),
                None => {
                    self.transfer_pending = false;
                    let refer = match self.refer_code {
                        Some(code) => format!("the REFER was answered {code}"),
                        None => "the REFER had no final response".to_string(),
                    };
                    self.fail(
                        FailureKind::TransferTimeout,
                        format!(
                            "{refer}, and no NOTIFY of the transfer's outcome within {:.0} s",
                            within.as_secs_f64()
                        ),
                    );
                    Some(false)
                }
            },
            Then::Reinvited(what) => match self.reinvite_outcome.take() {
                Some(Ok(())) => Some(true),
                Some(Err(code)) => {
                    self.fail(
                        FailureKind::SipCode(code),
                        format!("the {what} re-INVITE was answered {code}"),
                    );
                    Some(false)
                }
                None if self.interrupted => Some(false),
                None if self.ended() => Some(self.unexpected_end()),
                None => {
                    self.fail(
                        FailureKind::Signalling,
                        format!(
                            "the {what} re-INVITE had no answer within {:.0} s",
                            REINVITE_WAIT.as_secs_f64()
                        ),
                    );
                    Some(false)
                }
            },
        };
        if let Some(ok) = result {
            self.step_done(now, ok);
        }
    }

    /// Asks for the recorded audio of an `expect: pesq` step to be scored against its
    /// reference (`matching` false), or of an `expect: matches` step to be compared with it
    /// (`matching` true), and waits for the result ([`WORK_WAIT`] at most).
    fn request_scoring(
        &mut self,
        now: Instant,
        reference: String,
        min: f64,
        received: Arc<[i16]>,
        matching: bool,
    ) -> Option<bool> {
        let Some(samples) = self.cfg.wavs.get(&reference).cloned() else {
            return Some(false);
        };
        let id = self.new_watch();
        let work = if matching {
            Work::Match {
                id,
                reference: samples,
                received,
            }
        } else {
            Work::Pesq {
                id,
                reference: samples,
                received,
            }
        };
        self.commands.push_back(ScriptCommand::Work(work));
        self.phase = Phase::Scoring {
            id,
            deadline: now + WORK_WAIT,
            reference,
            min,
            matching,
        };
        None
    }

    /// Judges the best similarity of an `expect: matches` step's recording against its
    /// minimum.
    fn judge_match(
        &mut self,
        reference: &str,
        min: f64,
        found: Result<crate::media::matching::Match, crate::media::matching::MatchError>,
    ) -> bool {
        match found {
            Ok(found) => {
                if found.similarity >= min {
                    self.audio_verified += 1;
                    true
                } else {
                    self.fail(
                        FailureKind::PromptMismatch,
                        format!("prompt mismatch: `{reference}` not heard: {found} < {min}",),
                    );
                    false
                }
            }
            Err(e) => {
                self.fail(
                    FailureKind::PromptMismatch,
                    format!("prompt mismatch: `{reference}` not compared: {e}"),
                );
                false
            }
        }
    }

    /// Judges the score of an `expect: pesq` step's recording against its minimum.
    fn judge_pesq(
        &mut self,
        reference: &str,
        min: f64,
        score: Result<pesq::PesqScore, pesq::PesqError>,
    ) -> bool {
        match score {
            Ok(score) => {
                self.pesq_scores.push(score.raw);
                if score.raw >= min {
                    self.audio_verified += 1;
                    true
                } else {
                    self.fail(
                        FailureKind::PesqLow,
                        format!("{score} against `{reference}`, below the minimum {min}"),
                    );
                    false
                }
            }
            Err(e) => {
                let kind = match e {
                    pesq::PesqError::Silent(_) => FailureKind::NoAudio,
                    _ => FailureKind::PesqLow,
                };
                self.fail(kind, format!("PESQ against `{reference}` not scored: {e}"));
                false
            }
        }
    }

    /// `expect: redirected_to`, once the answer came or the wait is over.
    fn judge_redirected(&mut self, expected: &str, within: Duration) -> Option<bool> {
        let Some(got) = self.redirects.last() else {
            let why = if self.answered {
                "answered without a redirection".to_string()
            } else if self.ended() {
                self.end_failure().1
            } else {
                format!("not answered within {:.1} s", within.as_secs_f64())
            };
            self.fail(
                FailureKind::Signalling,
                format!("expected the call redirected to {expected}: not redirected, {why}"),
            );
            return Some(false);
        };
        if !same_target(expected, got) {
            let chain = self.redirects.join(" -> ");
            self.fail(
                FailureKind::Signalling,
                format!("expected the call redirected to {expected}: redirected to {chain}"),
            );
            Some(false)
        } else if self.answered {
            Some(true)
        } else {
            let (kind, why) = if self.ended() {
                self.end_failure()
            } else {
                (
                    FailureKind::Signalling,
                    format!("nothing within {:.1} s", within.as_secs_f64()),
                )
            };
            self.fail(
                kind,
                format!("expected the call answered by {expected} after its redirection: {why}"),
            );
            Some(false)
        }
    }

    fn unwatch(&mut self, watch: Option<u32>) {
        if let Some(watch) = watch {
            self.media_intent(MediaIntent::Unwatch(watch));
        }
    }

    /// Ask the media stream for its status, then `then`.
    fn probe_status(&mut self, now: Instant, then: Then) -> Option<bool> {
        let watch = self.new_watch();
        self.media_intent(MediaIntent::Probe(watch));
        self.phase = Phase::Probe {
            watch,
            deadline: now + PROBE_WAIT,
            then,
        };
        None
    }

    /// Ask the media stream for its signature verdict, then `then`.
    fn judge_status(&mut self, now: Instant, from: SignatureFrom, then: Then) -> Option<bool> {
        let Some((expected, own)) = self.signature_codes(from) else {
            return Some(false);
        };
        let watch = self.new_watch();
        self.media_intent(MediaIntent::JudgeSignature {
            watch,
            expected,
            own: Some(own),
        });
        self.phase = Phase::Probe {
            watch,
            deadline: now + PROBE_WAIT,
            then,
        };
        None
    }

    /// The codes this call expects and plays: `(expected, own)`.
    fn signature_codes(&self, from: SignatureFrom) -> Option<(SignatureCode, SignatureCode)> {
        let call = self.cfg.signature_call?;
        // After a transfer we placed the call we are in (our INVITE carried its number).
        let callee = self.cfg.side == Side::Callee && !self.transferee.moved;
        // A party's callees play their call's code shifted by their slot (`answered_by`).
        let own_slot = if callee {
            self.party_slot(&self.cfg.role).unwrap_or(0)
        } else {
            0
        };
        let own = SignatureCode::for_call(call + own_slot * self.party_stride(), callee);
        let expected = match from {
            SignatureFrom::Peer => SignatureCode::for_call(call, !callee),
            SignatureFrom::Echo => own,
            SignatureFrom::Party(slot) => {
                SignatureCode::for_call(call + u64::from(slot) * self.party_stride(), true)
            }
        };
        Some((expected, own))
    }

    /// The slot of role `role` among the parties `answered_by` can name.
    fn party_slot(&self, role: &str) -> Option<u64> {
        self.cfg
            .signature_parties
            .iter()
            .position(|p| p == role)
            .map(|i| i as u64)
    }

    /// How far apart the parties' codes are, in calls: the code space shared among them.
    fn party_stride(&self) -> u64 {
        let pairs = u64::from(SignatureCode::CAPACITY / 2);
        pairs / (self.cfg.signature_parties.len().max(1) as u64)
    }

    /// Whether the signature verdict holds; records the failure when it does not.
    fn judge_signature(
        &mut self,
        from: SignatureFrom,
        within: Duration,
        verdict: SignatureVerdict,
    ) -> bool {
        let Some((expected, _)) = self.signature_codes(from) else {
            return false;
        };
        let call = match from {
            SignatureFrom::Party(_) => {
                self.cfg.signature_call.unwrap_or_default() % u64::from(SignatureCode::CAPACITY / 2)
            }
            _ => expected.call().0,
        };
        let by = if self.ended() {
            "before the call ended".to_string()
        } else {
            format!("within {:.1} s", within.as_secs_f64())
        };
        let direction = match (self.cfg.side, from) {
            (_, SignatureFrom::Echo) => "echoed",
            (Side::Caller, SignatureFrom::Peer) => "callee → caller",
            (Side::Callee, SignatureFrom::Peer) => "caller → callee",
            (_, SignatureFrom::Party(_)) => "callee → caller",
        };
        // Its own signature back where another was expected is crossed audio.
        self.signature_verdict = Some(match verdict {
            SignatureVerdict::Echo { .. } => "crossed_audio",
            _ => verdict.label(),
        });
        let (kind, message) = match verdict {
            SignatureVerdict::Verified => {
                self.audio_verified += 1;
                return true;
            }
            SignatureVerdict::Crossed {
                heard,
                also_expected,
            } => {
                let (other, other_callee) = heard.call();
                let whose = if other_callee { "callee" } else { "caller" };
                if let (SignatureFrom::Party(slot), true) = (from, other_callee) {
                    // Another party of the same call: its slot is how far its code is shifted.
                    let pairs = u64::from(SignatureCode::CAPACITY / 2);
                    let stride = self.party_stride();
                    let shift = (other + pairs - call % pairs) % pairs;
                    let parties = &self.cfg.signature_parties;
                    let name = |i: u64| {
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| parties.get(i))
                            .cloned()
                            .unwrap_or_default()
                    };
                    if shift % stride == 0 && shift / stride < parties.len() as u64 {
                        let heard_role = name(shift / stride);
                        let message = format!(
                            "wrong party: call {call} was answered by {heard_role} (its signature heard), not by {}",
                            name(u64::from(slot))
                        );
                        self.fail(FailureKind::WrongParty, message);
                        return false;
                    }
                }
                (
                    FailureKind::CrossedAudio,
                    format!(
                        "crossed audio ({direction}): heard call {other}'s {whose} signature {} call {call}'s",
                        if also_expected { "alongside" } else { "instead of" }
                    ),
                )
            }
            SignatureVerdict::Echo { .. } => (
                FailureKind::CrossedAudio,
                format!(
                    "crossed audio ({direction}): heard its own signature back (echo) instead of call {call}'s"
                ),
            ),
            SignatureVerdict::WrongAudio { loud } => (
                FailureKind::WrongAudio,
                format!(
                    "wrong audio ({direction}): {:.1} s of audio but no signature of call {call} {by}",
                    loud.as_secs_f64(),
                ),
            ),
            SignatureVerdict::NoAudio => (
                FailureKind::NoAudio,
                format!(
                    "no audio ({direction}): call {call}'s signature not heard {by}"
                ),
            ),
        };
        self.fail(kind, message);
        false
    }

    /// Whether every party was heard and our own party tone was not; records the failure
    /// when not.
    fn judge_parties(&mut self, check: &HearsCheck, verdict: PartiesVerdict) -> bool {
        let names = |parties: &mut dyn Iterator<Item = &ConferenceParty>| {
            parties
                .map(|c| c.role.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let message = match verdict {
            PartiesVerdict::Verified => {
                self.audio_verified += 1;
                return true;
            }
            PartiesVerdict::Echo { level_dbfs } => {
                let own = check.own.as_ref().map_or("", |c| c.role.as_str());
                (
                    FailureKind::CrossedAudio,
                    format!(
                        "conference: echo: {own} heard its own party tone ({} Hz) back, at {level_dbfs:.1} dBFS",
                        check.own().map_or(0.0, Party::hz)
                    ),
                )
            }
            PartiesVerdict::NotHeard { missing } => {
                let by = if self.ended() {
                    "before the call ended".to_string()
                } else {
                    format!("within {:.1} s", check.within.as_secs_f64())
                };
                let not_heard =
                    names(&mut check.parties.iter().filter(|c| missing.contains(&c.party)));
                let heard =
                    names(&mut check.parties.iter().filter(|c| !missing.contains(&c.party)));
                (
                    FailureKind::NoAudio,
                    format!("conference: not_heard: [{not_heard}] {by} (heard: [{heard}])"),
                )
            }
        };
        self.fail(message.0, message.1);
        false
    }

    fn resume_probe(&mut self, now: Instant, then: Then, status: Option<MediaEvent>) {
        if let Then::HearsMissing(check) = then {
            let verdict = match status {
                Some(MediaEvent::Parties { verdict, .. }) => verdict,
                _ => PartiesVerdict::NotHeard {
                    missing: check.expected(),
                },
            };
            let ok = !self.interrupted && self.judge_parties(&check, verdict);
            self.step_done(now, ok);
            return;
        }
        if let Then::SignatureMissing(from, within) = then {
            let verdict = match status {
                Some(MediaEvent::Signature { verdict, .. }) => verdict,
                _ => SignatureVerdict::NoAudio,
            };
            let ok = !self.interrupted && self.judge_signature(from, within, verdict);
            self.step_done(now, ok);
            return;
        }
        let (level, behind, dtmf) = match status {
            Some(MediaEvent::Status {
                level_dbfs,
                behind,
                dtmf_received,
                ..
            }) => (level_dbfs, behind, dtmf_received),
            _ => (None, (0, 0), String::new()),
        };
        match then {
            Then::ToneMissing { label, within } => {
                let level = level.map_or("no audio".to_string(), |l| format!("level {l:.1} dBFS"));
                self.fail(
                    FailureKind::ToneMissing,
                    format!(
                        "expected tone {label} Hz not heard within {:.1} s (received {level}){}",
                        within.as_secs_f64(),
                        overload_note(behind)
                    ),
                );
            }
            Then::AudioMissing { kind, what } => {
                let level = level.map_or("no audio".to_string(), |l| format!("level {l:.1} dBFS"));
                self.fail(
                    kind,
                    format!("{what} (received {level}){}", overload_note(behind)),
                );
            }
            Then::DtmfMissing(expected) => {
                if !self.interrupted {
                    self.fail(
                        FailureKind::DtmfMissing,
                        format!("expected DTMF '{expected}', received '{dtmf}'"),
                    );
                }
            }
            _ => unreachable!("only media checks probe"),
        }
        self.step_done(now, false);
    }

    fn waited_for(&mut self, event: WaitEvent, gave_up: bool) -> bool {
        if gave_up && !self.ended() && !self.interrupted {
            self.fail(
                FailureKind::Signalling,
                format!(
                    "{event:?} did not come: the load was over {:.0} s before",
                    END_WAIT.as_secs_f64()
                ),
            );
            return false;
        }
        let expected = match event {
            WaitEvent::Bye => CallEndReason::RemoteBye,
            WaitEvent::Cancel => CallEndReason::CancelledByRemote,
        };
        if self.interrupted {
            return false;
        }
        match self.record.as_ref().and_then(|r| r.reason()) {
            Some(reason) if *reason == expected => true,
            Some(reason) => {
                let reason = reason.to_string();
                self.fail(
                    FailureKind::Signalling,
                    format!("waited for {event:?}, but the call ended: {reason}"),
                );
                false
            }
            None => {
                self.fail(FailureKind::Signalling, format!("{event:?} did not come"));
                false
            }
        }
    }

    /// A step that only waits for time to pass (`ring`, `wait`, the delay of `hangup`) saw
    /// the call end: a failure, unless the next step is a `wait_for` of exactly that end (a
    /// ring cut short by the caller's CANCEL before `wait_for: cancel`), which then holds at
    /// once. No step is skipped that way; steps with a purpose of their own (`answer`,
    /// `reject`, `cancel`, `play`, `expect`, `dtmf`) fail on any end
    /// ([`Self::unexpected_end`]).
    fn waiting_cut_short(&mut self) -> bool {
        if !self.interrupted {
            let reason = self.record.as_ref().and_then(|r| r.reason());
            if reason.is_some() && reason == self.awaited_end.as_ref() {
                return true;
            }
        }
        self.unexpected_end()
    }

    /// A call we answered that the caller ended with BYE before its ACK arrived.
    fn bye_before_ack(&self) -> bool {
        self.cfg.side == Side::Callee
            && self.record.as_ref().is_some_and(|r| {
                r.answer.is_some() && r.reason() == Some(&CallEndReason::RemoteBye)
            })
    }

    fn unexpected_end(&mut self) -> bool {
        if self.interrupted {
            return false;
        }
        let (kind, reason) = self.end_failure();
        self.fail(kind, format!("the call ended: {reason}"));
        false
    }

    fn end_failure(&self) -> (FailureKind, String) {
        match self.record.as_ref().and_then(|r| r.reason()) {
            Some(reason) => (kind_of(reason), reason.to_string()),
            None => (FailureKind::Other, "no answer".into()),
        }
    }

    fn start_media(&mut self, negotiated: Negotiated) {
        if self.media.is_some() || !self.cfg.rtp || self.local.is_none() {
            return;
        }
        self.session_dtmf = Some((negotiated.telephone_event_pt, session_ptime(&negotiated)));
        self.media_intent(MediaIntent::Start(Box::new(negotiated.clone())));
        self.media = Some(negotiated);
    }

    fn playlist(&self, items: &[PlayItem]) -> Playlist {
        let mut list = Vec::new();
        let mut looping = false;
        for item in items {
            match item {
                PlayItem::Tone { tone, duration } => match duration {
                    Some(d) => list.push(PlaylistItem::Tone {
                        tone: *tone,
                        duration: *d,
                    }),
                    None => {
                        // Until the call ends: the last item, looped.
                        list.push(PlaylistItem::Tone {
                            tone: *tone,
                            duration: Duration::from_secs(1),
                        });
                        looping = true;
                    }
                },
                PlayItem::Wav { path } => {
                    if let Some(samples) = self.cfg.wavs.get(path) {
                        list.push(PlaylistItem::Pcm(samples.clone()));
                    }
                }
                PlayItem::Silence(d) => list.push(PlaylistItem::Silence { duration: *d }),
                PlayItem::Party(party) => {
                    // Until the call ends; a whole second of a party tone (a multiple of
                    // 50 Hz) is whole periods, so the loop joins without a click.
                    if let Ok(tone) = party.tone(PARTY_LEVEL_DBFS) {
                        list.push(PlaylistItem::Tone {
                            tone,
                            duration: Duration::from_secs(1),
                        });
                        looping = true;
                    }
                }
                PlayItem::Signature => {
                    // Validation keeps a signature alone in its `play`.
                    let code = self
                        .signature_codes(SignatureFrom::Echo)
                        .map(|(_, own)| own);
                    if let Some(Ok(playlist)) = code.map(|c| c.playlist(SIGNATURE_LEVEL_DBFS)) {
                        return playlist;
                    }
                }
            }
        }
        // A tone without a duration plays until the call ends: the list then repeats.
        if looping {
            return Playlist::looping(list);
        }
        Playlist::new(list)
    }
}
