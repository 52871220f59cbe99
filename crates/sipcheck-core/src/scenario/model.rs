//! The validated scenario: typed, complete, with every default filled in and every reference
//! resolved. An executor reads only this.

use std::net::SocketAddr;
use std::time::Duration;

use crate::media::conference::Party;
use crate::media::dtmf::Digit;
use crate::media::g711::Codec;
use crate::media::tone::Tone;
use crate::sip::auth::Password;
use crate::sip::transport::Transport;

use super::part::Shard;
use super::text::Template;
use super::threshold::Threshold;
use super::units::{Decibels, HostPort, PortRange, Rate};

/// A scenario that passed validation.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A short name, for reports.
    pub name: String,
    /// What the scenario tests.
    pub description: Option<String>,
    /// Where the SIP traffic goes.
    pub target: Target,
    /// Every account, in the order they were defined.
    pub accounts: Vec<Account>,
    /// Media settings.
    pub media: Media,
    /// The roles, in the order written.
    pub roles: Vec<Role>,
    /// How many calls, how fast. Without a `load:` section: every calling user agent places
    /// one call, all at once ([`Load::Closed`] with `concurrent` = number of callers).
    pub load: Load,
    /// Pass/fail criteria, in the order written.
    pub thresholds: Vec<Threshold>,
    /// Report files to write.
    pub reports: Reports,
}

impl Scenario {
    /// The role called `name`.
    #[must_use]
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}

/// How requests reach their destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every request goes to `server` (a registrar and proxy, a PBX, an SBC), through
    /// `outbound_proxy` when there is one.
    Server {
        /// The registrar / proxy (the port, if absent, is the transport's default).
        server: HostPort,
        /// An outbound proxy: requests carry a pre-loaded Route to it.
        outbound_proxy: Option<HostPort>,
    },
    /// No server: requests go to the host of their Request-URI (user agents call each
    /// other's `listen` addresses).
    Direct,
}

/// `target:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where requests go.
    pub route: Route,
    /// SIP transport.
    pub transport: Transport,
    /// The SIP domain (AOR host, `{domain}`): `target.domain`, else the server's host, else
    /// `127.0.0.1` in direct mode.
    pub domain: String,
    /// The local address to bind (port 0: any), unless a role has its own `listen`.
    pub local: Option<SocketAddr>,
    /// TCP: the interval of RFC 5626 CRLF keep-alive pings on each connection sipcheck
    /// opens (`None`: no pings; UDP: always `None`).
    pub keepalive: Option<Duration>,
    /// TCP: whether each UA has its own connections or a role's UAs share them.
    pub connections: Connections,
    /// WS/WSS: the resource path of the WebSocket handshake (RFC 7118; `/` by default).
    pub ws_path: String,
    /// `server: "sips:…"` (over TLS or WSS only): the UAs' addresses of record are `sips:`
    /// (RFC 5630), and so are their registrations' Request-URI, To, From and Contact.
    pub sips: bool,
}

/// Who shares a TCP connection to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connections {
    /// Each user agent opens its own (as separate phones would).
    #[default]
    PerUa,
    /// The user agents of a role share one.
    PerRole,
}

/// The keep-alive interval of TCP connections when the scenario does not set one.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// One SIP account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user part of the AOR, and the digest username.
    pub user: String,
    /// The digest password.
    pub password: Password,
    /// The AOR's domain.
    pub domain: String,
}

/// `media:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// Codecs in offer order (default PCMU, PCMA). telephone-event is always offered too.
    pub codecs: Vec<Codec>,
    /// Packetisation time (default 20 ms).
    pub ptime: Duration,
    /// Local RTP ports (default 20000-29999).
    pub rtp_ports: PortRange,
    /// Receive jitter buffer depth (default 60 ms).
    pub jitter_buffer: Duration,
    /// A directory to write each call's received audio to, as WAV.
    pub record: Option<String>,
    /// Whether calls carry RTP (default true). `false`: signaling only — every offer and
    /// answer is `a=inactive` on the discard port, no RTP socket is opened, and steps or
    /// thresholds that need audio are refused.
    pub rtp: bool,
    /// SRTP keyed by SDES (RFC 4568) for every role's calls (default `off`): `required`
    /// offers `RTP/SAVP` with `a=crypto` and refuses plain RTP, `optional` offers `RTP/AVP`
    /// with `a=crypto` and takes either.
    pub srtp: crate::sdp::crypto::SrtpPolicy,
}

/// A role: a group of user agents doing the same steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// Its accounts, one user agent each.
    pub accounts: Vec<Account>,
    /// Its own SIP address, if it has one.
    pub listen: Option<SocketAddr>,
    /// What each user agent does, in order.
    pub steps: Vec<Located<Step>>,
}

impl Scenario {
    /// The roles that can be named by `expect: { answered_by }`, in scenario order: those that
    /// place no calls and play a signature. Empty unless a step names one, so that scenarios
    /// without `answered_by` keep one code per call and direction.
    #[must_use]
    pub fn signature_parties(&self) -> Vec<String> {
        let named = self.roles.iter().flat_map(|r| &r.steps).any(|s| {
            matches!(
                s.value,
                Step::Expect(Expectation::Signature {
                    from: SignatureFrom::Party(_),
                    ..
                })
            )
        });
        if !named {
            return Vec::new();
        }
        self.roles
            .iter()
            .filter(|r| {
                !r.calls()
                    && r.steps.iter().any(|s| match &s.value {
                        Step::Play(items) => items.contains(&PlayItem::Signature),
                        _ => false,
                    })
            })
            .map(|r| r.name.clone())
            .collect()
    }
}

impl Role {
    /// Whether the role places calls.
    #[must_use]
    pub fn calls(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.value, Step::Call(_)))
    }

    /// The steps split by when they run: leading `register` steps once when the user agent
    /// starts, trailing `unregister` steps once when the load is over, and everything between
    /// for every call.
    #[must_use]
    pub fn phases(&self) -> Phases<'_> {
        let steps = self.steps.as_slice();
        let setup = steps
            .iter()
            .take_while(|s| matches!(s.value, Step::Register { .. }))
            .count();
        let teardown = steps[setup..]
            .iter()
            .rev()
            .take_while(|s| matches!(s.value, Step::Unregister))
            .count();
        Phases {
            setup: &steps[..setup],
            per_call: &steps[setup..steps.len() - teardown],
            teardown: &steps[steps.len() - teardown..],
        }
    }
}

/// A role's steps split by when they run ([`Role::phases`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases<'a> {
    /// Once, when the user agent starts (registration).
    pub setup: &'a [Located<Step>],
    /// For every call the user agent places or receives.
    pub per_call: &'a [Located<Step>],
    /// Once, when the load is over (unregistration).
    pub teardown: &'a [Located<Step>],
}

/// A value and where it was written (1-based line and column of the scenario file).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Line in the scenario file.
    pub line: u32,
    /// Column in the scenario file.
    pub col: u32,
    /// `record: true`: keep the audio received while this step runs (an `expect` on audio),
    /// at most [`crate::media::session::STEP_RECORDING_MAX`], as WAV evidence.
    pub record: bool,
}

/// One step of a role.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// REGISTER the account.
    Register {
        /// The requested binding lifetime (default 3600 s).
        expires: Duration,
        /// Re-register before it expires (default true).
        refresh: bool,
    },
    /// Remove the binding (REGISTER with Expires: 0).
    Unregister,
    /// Send an INVITE; the next step starts at once. Media steps (`play`, `dtmf`, `expect`
    /// on audio) wait for the answer; `expect: { ringing | answered | final }` wait for that
    /// response, or pass at once if it already came.
    Call(CallStep),
    /// Answer the incoming call: 180 Ringing, then 200 OK after `ring`.
    Answer {
        /// How long to ring first (default 0).
        ring: Duration,
    },
    /// Reject the incoming call with a final code.
    Reject {
        /// 300–699.
        code: u16,
        /// How long to ring first (default 0).
        ring: Duration,
    },
    /// Send 180 Ringing, then go on to the next step after this long.
    Ring(Duration),
    /// Start sending audio; the playlist runs alongside the following steps.
    Play(Vec<PlayItem>),
    /// Wait for something, failing the call if it does not happen in time.
    Expect(Expectation),
    /// Send DTMF (RFC 4733).
    Dtmf {
        /// The digits.
        digits: Vec<Digit>,
        /// How long each digit lasts (default 100 ms).
        duration: Duration,
        /// The pause between digits (default 100 ms).
        gap: Duration,
    },
    /// Do nothing for this long.
    Wait(Duration),
    /// Send BYE after this long (from the end of the previous step).
    Hangup {
        /// The delay (default 0).
        after: Duration,
    },
    /// CANCEL the unanswered call this long after the INVITE (0: at the first provisional).
    Cancel {
        /// The delay (default 0).
        after: Duration,
    },
    /// Wait until the other side does something.
    WaitFor(WaitEvent),
    /// Put the other side on hold: a re-INVITE offering `a=sendonly` (or `a=inactive`),
    /// which must be answered 2xx. The RTP timeout does not count while on hold.
    Hold(HoldMode),
    /// Take the call off hold: a re-INVITE offering the call's first direction
    /// (`a=sendrecv`), which must be answered 2xx.
    Resume,
    /// Blind transfer (RFC 5589): REFER the far end of the confirmed call to `to`; passes when
    /// a NOTIFY reports a 2xx of the far end's new call, then sends BYE on this call.
    Transfer {
        /// The Refer-To URI, a template over `{user}`, `{domain}`.
        to: Template,
        /// How long the transfer's final NOTIFY is awaited (default
        /// [`DEFAULT_TRANSFER_WITHIN`]).
        within: Duration,
        /// Attended transfer (RFC 5589 §7): the role answering the consultation call to
        /// `to`; once it answers, the REFER's Refer-To names that call in a Replaces.
        consult: Option<String>,
        /// Attended: a tone (Hz) that must be heard on the consultation call before the
        /// REFER is sent (within `within`).
        hear: Option<f64>,
    },
}

/// How long a `transfer` step waits for the final NOTIFY of the transfer by default.
pub const DEFAULT_TRANSFER_WITHIN: Duration = Duration::from_secs(10);

/// How a `hold` step holds the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldMode {
    /// `a=sendonly`: we still send (music on hold of our own), the other side does not.
    #[default]
    SendOnly,
    /// `a=inactive`: neither side sends.
    Inactive,
}

impl Step {
    /// The step's name as written in scenarios.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Unregister => "unregister",
            Self::Call(_) => "call",
            Self::Answer { .. } => "answer",
            Self::Reject { .. } => "reject",
            Self::Ring(_) => "ring",
            Self::Play(_) => "play",
            Self::Expect(_) => "expect",
            Self::Dtmf { .. } => "dtmf",
            Self::Wait(_) => "wait",
            Self::Hangup { .. } => "hangup",
            Self::Cancel { .. } => "cancel",
            Self::WaitFor(_) => "wait_for",
            Self::Hold(_) => "hold",
            Self::Resume => "resume",
            Self::Transfer { .. } => "transfer",
        }
    }
}

/// `ring: forever`: ring until the call ends (the caller, or a proxy forwarding on no answer,
/// cancels it), never answering; bounded like any duration, at 30 days.
pub const RING_FOREVER: Duration = super::units::MAX_DURATION;

/// The similarity `expect: { matches }` needs when it names no `min_similarity`.
pub const DEFAULT_MIN_SIMILARITY: f64 = 0.8;

/// The redirections a call follows with `follow_redirects: true` (`call --follow-redirects`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

/// `call:`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStep {
    /// The Request-URI, a template over `{peer}`, `{user}`, `{domain}`. Written without a
    /// scheme it gets `sip:`; without a host, `@{domain}`.
    pub to: Template,
    /// The role `{peer}` is taken from: the i-th caller of a role calls the
    /// (i mod n)-th of the peer role's n accounts.
    pub peer: Option<String>,
    /// Give up (CANCEL) when no final answer came within this long (default 32 s, Timer B).
    pub timeout: Duration,
    /// Follow at most this many redirections (3xx) of the INVITE; 0 (the default): a 3xx
    /// fails the call (`follow_redirects`).
    pub max_redirects: u32,
}

/// One item of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayItem {
    /// A single or dual tone; without a duration it plays until the call ends (and must be
    /// the last item).
    Tone {
        /// Frequencies and level.
        tone: Tone,
        /// How long.
        duration: Option<Duration>,
    },
    /// A WAV file, once (the shell reads it; the path is as written).
    Wav {
        /// The file.
        path: String,
    },
    /// Silence.
    Silence(Duration),
    /// This call's audio signature, until the call ends (the only item of its `play`).
    Signature,
    /// This role's conference party tone, until the call ends (the only item of its `play`).
    Party(Party),
}

/// A conference party: a role that plays its party tone (`play: { party: true }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceParty {
    /// The role.
    pub role: String,
    /// Its tone: roles playing one are numbered in the order the scenario lists them.
    pub party: Party,
}

/// Whose audio signature an `expect: { signature }` step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFrom {
    /// The far end's (`peer`): the other direction of the same call.
    Peer,
    /// Our own, sent back (`echo`): the far end echoes the audio.
    Echo,
    /// The answering party of this slot (`answered_by: ROLE`): the slot is the role's place
    /// among [`Scenario::signature_parties`], whose callees' codes are set apart by it.
    Party(u32),
}

/// What an `expect:` step waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// A tone in the received audio.
    Tone {
        /// One or two frequencies in hertz.
        frequencies: Vec<f64>,
        /// How long to wait for it (default 5 s).
        within: Duration,
        /// The lowest acceptable signal-to-noise ratio (default 10 dB).
        min_snr: Decibels,
        /// How long it must last (default 200 ms).
        min_duration: Duration,
        /// Once heard, a dropout (gap) this long or longer fails the call (default 100 ms).
        max_gap: Duration,
    },
    /// Silence in the received audio (no speech, no tone), lasting `duration`.
    Silence {
        /// How long the silence must last.
        duration: Duration,
        /// How long to wait for it to start (default 5 s).
        within: Duration,
    },
    /// Speech in the received audio (voice activity), beginning within `within`.
    Speech {
        /// How long to wait for it (default 5 s).
        within: Duration,
    },
    /// Speech in the received audio that then ends (a prompt played out), within `within`.
    PromptEnds {
        /// How long to wait for its end (default 10 s).
        within: Duration,
    },
    /// Some audio in the received audio (speech, music or a tone: not silence, not a noise
    /// bed), [`crate::media::intent::AUDIO_MIN`] of it, within `within`.
    Audio {
        /// How long to wait for it (default 5 s).
        within: Duration,
    },
    /// The peer puts the call on hold (its offer `sendonly`, `inactive` or `c=0.0.0.0`),
    /// within `within` (at once if it already has).
    Held {
        /// How long to wait for it (default 10 s).
        within: Duration,
    },
    /// An audio signature in the received audio.
    Signature {
        /// Whose.
        from: SignatureFrom,
        /// How long to wait for it (default 5 s).
        within: Duration,
    },
    /// Conference: every party of `parties` heard in the received audio, and not `own`
    /// (our own party tone sent back: an echo).
    Hears {
        /// Who must be heard.
        parties: Vec<ConferenceParty>,
        /// This role's party, when it plays a party tone.
        own: Option<ConferenceParty>,
        /// How long to wait for them (default 10 s).
        within: Duration,
    },
    /// Speech received, scored with ITU-T P.862 against the reference the far end plays.
    Pesq {
        /// The reference WAV file, as written (decoded by the shell into the scenario's WAVs).
        reference: String,
        /// The lowest acceptable raw P.862 score (1.0–4.5).
        min: f64,
        /// How long to wait for the audio to start (default 5 s); the step then records the
        /// reference's length and one second more.
        within: Duration,
    },
    /// A known recording (a prompt) in the received audio, compared by normalised
    /// cross-correlation ([`crate::media::matching`]).
    Matches {
        /// The reference WAV file, as written (decoded by the shell into the scenario's WAVs).
        reference: String,
        /// The lowest acceptable similarity, 0–1 (default [`DEFAULT_MIN_SIMILARITY`]).
        min_similarity: f64,
        /// How long the prompt may take to begin, from the first audio received (default
        /// 5 s); the step records this long plus the reference's length, then compares.
        within: Duration,
    },
    /// DTMF digits received, in order.
    Dtmf {
        /// The digits.
        digits: Vec<Digit>,
        /// How long to wait for all of them (default 10 s).
        within: Duration,
    },
    /// A 180 or 183 for the outgoing call.
    Ringing {
        /// How long to wait (default 10 s).
        within: Duration,
    },
    /// A final response with this code for the outgoing call.
    Final {
        /// 200–699.
        code: u16,
        /// How long to wait (default 32 s).
        within: Duration,
    },
    /// The outgoing call answered (2xx).
    Answered {
        /// How long to wait (default 32 s).
        within: Duration,
    },
    /// The far end transfers the call (blind transfer, RFC 3515 / RFC 5589): a REFER within
    /// `within`, followed with a new call to its Refer-To target, which must answer (2xx);
    /// the steps after it apply to the new call.
    Transferred {
        /// How long to wait for the REFER (default [`DEFAULT_TRANSFER_WITHIN`]).
        within: Duration,
    },
    /// An INVITE with Replaces takes over the call (the target of an attended transfer,
    /// RFC 3891) within `within`; the steps after it apply to the new call.
    Replaced {
        /// How long to wait (default [`DEFAULT_TRANSFER_WITHIN`]).
        within: Duration,
    },
    /// The outgoing call answered after a redirection (3xx), by this target.
    RedirectedTo {
        /// The Request-URI expected last, a template as `call.to`'s.
        target: Template,
        /// How long to wait for the answer (default 32 s).
        within: Duration,
    },
}

/// What `wait_for:` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEvent {
    /// The other side hangs up.
    Bye,
    /// The caller cancels.
    Cancel,
}

/// How the load ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// After this many calls have started.
    Calls(u64),
    /// When this long has passed since the start (no call starts at or after it).
    After(Duration),
    /// Whichever comes first.
    CallsOrAfter(u64, Duration),
}

impl End {
    /// The call limit, if any.
    #[must_use]
    pub fn calls(self) -> Option<u64> {
        match self {
            Self::Calls(n) | Self::CallsOrAfter(n, _) => Some(n),
            Self::After(_) => None,
        }
    }

    /// The time limit, if any.
    #[must_use]
    pub fn after(self) -> Option<Duration> {
        match self {
            Self::After(d) | Self::CallsOrAfter(_, d) => Some(d),
            Self::Calls(_) => None,
        }
    }
}

/// `load:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// Open model: calls start on a schedule whether or not earlier ones have finished.
    Open {
        /// New calls per unit of time, once ramped up.
        rate: Rate,
        /// Linear ramp from 0 to `rate`.
        ramp_up: Duration,
        /// When to stop starting calls.
        end: End,
        /// Never more calls up at once than this (a call due while the cap is reached is
        /// counted as not started, not delayed).
        max_concurrent: Option<u32>,
        /// Which of the schedule's calls this process starts: every one ([`Shard::WHOLE`]),
        /// or, for shard i of N, calls i, i + N, i + 2N … of the whole schedule, at their
        /// instants in it ([`super::shard`]).
        shard: Shard,
    },
    /// Closed model: keep `concurrent` calls up; a new call starts when one ends.
    Closed {
        /// Calls kept up at once, once ramped up.
        concurrent: u32,
        /// Linear ramp from 0 to `concurrent`.
        ramp_up: Duration,
        /// When to stop starting calls.
        end: End,
    },
}

/// `reports:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    /// A JUnit XML file.
    pub junit: Option<String>,
    /// A JSON summary file.
    pub json: Option<String>,
    /// A time series file (CSV, or JSON Lines for `.jsonl`).
    pub series: Option<String>,
    /// An OpenMetrics file of the headline figures (GitLab's metrics report).
    pub metrics: Option<String>,
    /// A JSON Lines file: one record per call end.
    pub calls: Option<String>,
    /// A self-contained HTML page of the run, with charts.
    pub html: Option<String>,
    /// One JUnit test case per call (up to a cap) besides the thresholds'.
    pub junit_per_call: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let a = Account {
            user: "1000".into(),
            password: Password::new("s3cret"),
            domain: "pbx.test".into(),
        };
        let shown = format!("{a:?} {}", a.password);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(a.password.expose(), "s3cret");
    }

    #[test]
    fn end_limits() {
        let d = Duration::from_secs(60);
        assert_eq!(End::Calls(5).calls(), Some(5));
        assert_eq!(End::Calls(5).after(), None);
        assert_eq!(End::CallsOrAfter(5, d).after(), Some(d));
        assert_eq!(End::After(d).calls(), None);
    }
}
