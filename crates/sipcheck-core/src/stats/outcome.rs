//! What a scenario run produces, call by call: the contract between the executor (which fills
//! these once, at each call's end) and the metrics and reporters (which only read them).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::ladder::Rung;
use crate::media::quality::QualityEstimate;

/// Which side of a call a user agent was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// It placed the call.
    Caller,
    /// It received the call.
    Callee,
}

/// A family of failure, for counters ("failures per kind") and JUnit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum FailureKind {
    /// A SIP final response ended the call (486, 404, 503 …).
    SipCode(u16),
    /// A transaction timer expired ("Timer B", "Timer F", "Timer H").
    Timer(String),
    /// No RTP arrived, or it stopped (RTP timeout).
    NoMedia,
    /// An expected tone was not heard.
    ToneMissing,
    /// An expected tone, once heard, dropped out for too long (a gap).
    AudioGap,
    /// Expected silence (no speech, no tone) was not heard for its duration.
    NoSilence,
    /// Expected speech was not heard (voice activity).
    NoSpeech,
    /// Speech was heard but did not end (`expect: prompt_ends`).
    PromptNeverEnded,
    /// Expected DTMF digits did not arrive.
    DtmfMissing,
    /// Expected audio was not heard: nothing audible arrived (`expect: audio`, or no audio
    /// signature at all).
    NoAudio,
    /// The peer did not put the call on hold (`expect: held`): what it did is named.
    NotHeld,
    /// Audio flowed one way only: the direction that carried nothing is named.
    OneWayAudio,
    /// Another call's audio signature was heard (or this end's own, echoed): the call is named.
    CrossedAudio,
    /// Audio arrived, but no audio signature in it.
    WrongAudio,
    /// Another party answered (`expect: answered_by`): the role whose signature was heard is
    /// named.
    WrongParty,
    /// The received speech scored under the `expect: pesq` minimum (ITU-T P.862), or could
    /// not be scored against its reference.
    PesqLow,
    /// The received audio did not hold the reference recording (`expect: matches`): its
    /// best similarity, under the minimum, is named.
    PromptMismatch,
    /// No common codec (488), or unusable SDP.
    CodecRefused,
    /// SRTP could not be agreed under the call's `srtp` policy: a plain answer or offer where
    /// SRTP is required (an offer refused with 488), `RTP/SAVP` where it is off, no usable or
    /// a mismatched `a=crypto`.
    SrtpRefused,
    /// Every SRTP packet received failed authentication (wrong keys): no audio.
    SrtpAuthFailed,
    /// Credentials were refused.
    AuthRejected,
    /// A redirection (3xx) pointed back at a target already tried.
    RedirectLoop,
    /// More redirections (3xx) than the call may follow.
    TooManyRedirects,
    /// An expectation about signalling failed (no ringing, a different final code …).
    Signalling,
    /// Our BYE was answered ≥ 300 (the status) or never answered (`timeout`, Timer F).
    ByeFailed(String),
    /// Our CANCEL was refused (the status), or no 487 followed it (`no_487`).
    CancelFailed(String),
    /// A transfer (`transfer` step) ended with a non-2xx of the transferee's new call, as
    /// its NOTIFY reported it (the status).
    TransferFailed(u16),
    /// A transfer's final NOTIFY did not come within the step's `within`.
    TransferTimeout,
    /// As the transferee (`expect: transferred`): the new call to the Refer-To target
    /// ended without an answer, with this status (408 when it was not answered in time).
    TransferTargetFailed(u16),
    /// As the transferee: no REFER came within the step's `within`.
    NotTransferred,
    /// An attended transfer's consultation call ended without an answer, with this status
    /// (408 when it was not answered in time).
    ConsultFailed(u16),
    /// As an attended transfer's target (`expect: replaced`): no INVITE with Replaces took
    /// over the call within the step's `within`.
    NotReplaced,
    /// The transport failed.
    Transport,
    /// The run was interrupted before the call could finish.
    Interrupted,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// A short stable label: `sip_486`, `timer_b`, `no_media`, `tone_missing` …
    pub fn label(&self) -> String {
        match self {
            FailureKind::SipCode(code) => format!("sip_{code}"),
            FailureKind::Timer(t) => t.to_ascii_lowercase().replace(' ', "_"),
            FailureKind::NoMedia => "no_media".into(),
            FailureKind::ToneMissing => "tone_missing".into(),
            FailureKind::AudioGap => "audio_gap".into(),
            FailureKind::NoSilence => "no_silence".into(),
            FailureKind::NoSpeech => "no_speech".into(),
            FailureKind::PromptNeverEnded => "prompt_never_ended".into(),
            FailureKind::DtmfMissing => "dtmf_missing".into(),
            FailureKind::NoAudio => "no_audio".into(),
            FailureKind::NotHeld => "not_held".into(),
            FailureKind::OneWayAudio => "one_way_audio".into(),
            FailureKind::CrossedAudio => "crossed_audio".into(),
            FailureKind::WrongAudio => "wrong_audio".into(),
            FailureKind::WrongParty => "wrong_party".into(),
            FailureKind::PesqLow => "pesq_low".into(),
            FailureKind::PromptMismatch => "prompt_mismatch".into(),
            FailureKind::CodecRefused => "codec_refused".into(),
            FailureKind::SrtpRefused => "srtp_refused".into(),
            FailureKind::SrtpAuthFailed => "srtp_auth_failed".into(),
            FailureKind::AuthRejected => "auth_rejected".into(),
            FailureKind::RedirectLoop => "redirect_loop".into(),
            FailureKind::TooManyRedirects => "too_many_redirects".into(),
            FailureKind::Signalling => "signalling".into(),
            FailureKind::ByeFailed(detail) => format!("bye_failed_{detail}"),
            FailureKind::CancelFailed(detail) => format!("cancel_failed_{detail}"),
            FailureKind::TransferFailed(code) => format!("transfer_failed_{code}"),
            FailureKind::TransferTimeout => "transfer_timeout".into(),
            FailureKind::TransferTargetFailed(code) => format!("transfer_target_failed_{code}"),
            FailureKind::NotTransferred => "not_transferred".into(),
            FailureKind::ConsultFailed(code) => format!("consult_failed_{code}"),
            FailureKind::NotReplaced => "not_replaced".into(),
            FailureKind::Transport => "transport".into(),
            FailureKind::Interrupted => "interrupted".into(),
            FailureKind::Other => "other".into(),
        }
    }
}

/// One failed expectation or error of a call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    /// The step that failed (`call`, `expect`, `answer` …).
    pub step: &'static str,
    /// Where the step is written in the scenario (line, column).
    pub line: u32,
    /// Its column.
    pub col: u32,
    /// The family of failure.
    #[serde(flatten)]
    pub kind: FailureKind,
    /// What happened, for people: "expected tone 440 Hz not heard within 2 s".
    pub message: String,
}

/// One step of a call's script that the call reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRun {
    /// Where the step is written in the scenario (line).
    pub line: u32,
    /// Its column.
    pub col: u32,
    /// From the step's start to its end (or to the call's stop, for the step it stopped in).
    pub elapsed: Duration,
    /// Whether the step completed without a failure.
    pub passed: bool,
}

/// The media figures of one call, summarised at its end.
#[derive(Debug, Clone)]
pub struct CallMedia {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP packets received (distinct).
    pub packets_received: u64,
    /// RTP packets the far end's sequence numbers say were sent.
    pub packets_expected: u64,
    /// Lost packets.
    pub packets_lost: u64,
    /// RFC 3550 interarrival jitter at the end of the call, milliseconds: the highest of the
    /// estimates of the peer's streams (SSRCs).
    pub jitter_ms: f64,
    /// Send lateness against the schedule, microseconds, one value per frame sent.
    pub pacing_lateness_us: Histogram<u32>,
    /// Frames the sender skipped because it woke up too late (generator overrun).
    pub frames_skipped: u64,
    /// Datagrams at the call's RTP port that were not the peer's media (another source, or
    /// a second SSRC interleaved with the peer's): set aside, never its audio, loss or jitter.
    pub stray_packets: u64,
    /// Sequence or timestamp jumps within one of the peer's streams (RFC 3550 A.1 restarts,
    /// timestamp discontinuities): the sender's events, counted neither as loss nor jitter.
    pub discontinuities: u64,
    /// The E-model estimate of the received direction (G.107; `None` when no frame was
    /// played out).
    pub quality: Option<QualityEstimate>,
    /// The lengths of the gaps (dropouts of at least 40 ms) in the expected tones after
    /// their onset, outside holds, in order (at most 64 kept).
    pub audio_gaps: Vec<Duration>,
    /// How many gaps there were.
    pub audio_gap_count: u64,
    /// When this end sent the first sample of each of its recent signature frames (see
    /// [`crate::media::signature::mouth_to_ear`]).
    pub signature_sent: Vec<Instant>,
    /// When this end's playout began each recent frame it decoded of the far end's signature.
    pub signature_onsets: Vec<Instant>,
    /// The mouth-to-ear delay of the direction this end received, when both ends ran in this
    /// process and the signature went through (set when the two ends are paired).
    pub delay: Option<Duration>,
    /// The round trip of this end's own signature heard back (an echo).
    pub round_trip: Option<Duration>,
    /// SRTP's counters (`None`: plain RTP).
    pub srtp: Option<crate::rtp::srtp::SrtpStats>,
}

/// Sets each end's [`CallMedia::delay`] from the other end's frames sent and its own
/// frames decoded, and rates its quality with that delay as the E-model's Ta.
pub fn pair_delays(caller: &mut CallResult, callee: &mut CallResult) {
    let (Some(a), Some(b)) = (caller.media.as_mut(), callee.media.as_mut()) else {
        return;
    };
    let (a_sent, b_sent) = (a.signature_sent.clone(), b.signature_sent.clone());
    for (to, from_sent) in [(a, b_sent), (b, a_sent)] {
        to.delay = crate::media::signature::mouth_to_ear(&from_sent, &to.signature_onsets);
        if let (Some(delay), Some(q)) = (to.delay, to.quality) {
            to.quality = Some(q.with_delay(delay));
        }
    }
}

/// One call as seen by one of its user agents (a call between two roles of the same run
/// produces two results: the caller's and the callee's).
#[derive(Debug, Clone)]
pub struct CallResult {
    /// The role of the user agent.
    pub role: String,
    /// Caller or callee.
    pub side: Side,
    /// The user agent's account.
    pub user: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// When the call was scheduled to start, from the run's start (callers only). Latency
    /// metrics count from here, not from the actual send (no coordinated omission).
    pub scheduled: Option<Duration>,
    /// How late the INVITE actually left against the schedule (generator saturation).
    pub start_lag: Duration,
    /// Scheduled start (callers) or INVITE received (callees) to the first provisional.
    pub invite_to_first_provisional: Option<Duration>,
    /// … to the first 180/183 (post-dial delay).
    pub invite_to_ringing: Option<Duration>,
    /// … to the 200 OK.
    pub invite_to_200: Option<Duration>,
    /// Our BYE to its final response.
    pub bye_rtt: Option<Duration>,
    /// Answer to the end of the call.
    pub duration: Option<Duration>,
    /// Start of each `expect: tone` to its detection.
    pub tone_onsets: Vec<Duration>,
    /// Media expectations checked (tones, silence) and how many held.
    pub audio_checked: u32,
    /// Those that held.
    pub audio_verified: u32,
    /// The raw ITU-T P.862 scores of the `expect: pesq` steps that were scored, in order.
    pub pesq: Vec<f64>,
    /// DTMF expectations checked.
    pub dtmf_checked: u32,
    /// Those that held.
    pub dtmf_verified: u32,
    /// Media figures, when media flowed.
    pub media: Option<CallMedia>,
    /// The final status of the INVITE (sent or received).
    pub final_code: Option<u16>,
    /// The final status of our BYE, when we sent one and it was answered.
    pub bye_code: Option<u16>,
    /// Why the call ended ("hung up by the far end (BYE received)").
    pub end_reason: String,
    /// The Request-URIs our INVITE was redirected to (3xx), in order; the last is the target
    /// of the final INVITE. Empty when it was not redirected.
    pub redirects: Vec<String>,
    /// Everything that failed; empty when the call passed.
    pub failures: Vec<Failure>,
    /// The steps of its script it reached, in order (set-up steps such as `register` are the
    /// user agent's, not the call's, and are not listed).
    pub steps: Vec<StepRun>,
    /// The call's SIP ladder (kept for failed calls; empty otherwise).
    pub ladder: Vec<Rung>,
}

impl CallResult {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Judges one call's two results together for one-way audio: when one end heard no audio
/// (a `no_audio` failure) while the other end's audio checks all held, that failure becomes
/// `one_way_audio`, naming the direction that carried nothing. Returns whether it did.
pub fn name_one_way(caller: &mut CallResult, callee: &mut CallResult) -> bool {
    let heard_all = |r: &CallResult| {
        r.audio_checked > 0
            && r.audio_verified == r.audio_checked
            && !r.failures.iter().any(|f| {
                matches!(
                    f.kind,
                    FailureKind::NoAudio | FailureKind::WrongAudio | FailureKind::CrossedAudio
                )
            })
    };
    let (deaf, direction) = if heard_all(caller) {
        (callee, "caller → callee")
    } else if heard_all(callee) {
        (caller, "callee → caller")
    } else {
        return false;
    };
    let Some(f) = deaf
        .failures
        .iter_mut()
        .find(|f| f.kind == FailureKind::NoAudio)
    else {
        return false;
    };
    f.kind = FailureKind::OneWayAudio;
    f.message = format!("one-way audio: {direction} carried nothing ({})", f.message);
    true
}

/// One registration (or refresh, or unregistration) of a user agent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegisterResult {
    /// The role of the user agent.
    pub role: String,
    /// Its account.
    pub user: String,
    /// First REGISTER to the final response (challenge round included).
    #[serde(skip)]
    pub rtt: Option<Duration>,
    /// True for an unregistration (Expires: 0).
    pub unregister: bool,
    /// The failure, when it failed.
    pub error: Option<String>,
}
