//! The scenario as written: strict serde structs that mirror the YAML.
//!
//! Every struct denies unknown fields, so a misspelt key is an error with a suggestion. Every
//! leaf is kept as the text that was written (`Option<String>`): `${ENV}` substitution, units
//! and ranges are checked by the validation pass, which reports *all* problems at once, each at
//! its position. Nothing here is required by serde either: a missing field is one of those
//! reported problems, not an abort.
//!
//! Steps are externally tagged, with a bare name for the steps that need no arguments and a
//! scalar shorthand for the one argument a step usually takes:
//!
//! ```yaml
//! - register                      # = register: {}
//! - answer: { ring: 500ms }
//! - reject: 486                   # = reject: { code: 486 }
//! - wait: 2s
//! - hangup: { after: 5s }         # or hangup: 5s
//! - hold                          # = hold: { mode: sendonly }
//! - resume
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, value::MapAccessDeserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};

/// The whole scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a scenario: a mapping with name, target, accounts, roles"
)]
pub struct RawScenario {
    /// A short name, for reports.
    pub name: Option<String>,
    /// What the scenario tests, in a sentence or two.
    pub description: Option<String>,
    /// Where the SIP traffic goes.
    pub target: Option<RawTarget>,
    /// The accounts the virtual user agents use.
    pub accounts: Option<RawAccounts>,
    /// Codecs, packetisation, RTP ports.
    pub media: Option<RawMedia>,
    /// Named groups of user agents and what each of them does.
    pub roles: Option<OrderedMap<RawRole>>,
    /// How many calls, how fast.
    pub load: Option<RawLoad>,
    /// `metric.stat: condition` pass/fail criteria.
    pub thresholds: Option<OrderedMap<OneOrMany<String>>>,
    /// Report files to write.
    pub reports: Option<RawReports>,
}

/// `target:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a target, like { server: pbx.test:5060 } or { direct: true }"
)]
pub struct RawTarget {
    /// The registrar / proxy all requests go to, `host[:port]`.
    pub server: Option<String>,
    /// `true`: no server; requests go to the host in the Request-URI.
    pub direct: Option<String>,
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub transport: Option<String>,
    /// WS/WSS: the resource path of the WebSocket handshake (`/` by default).
    pub ws_path: Option<String>,
    /// The SIP domain of the accounts (AOR host).
    pub domain: Option<String>,
    /// An outbound proxy, `host[:port]`: requests carry a pre-loaded Route to it.
    pub outbound_proxy: Option<String>,
    /// The local address to bind, `ip[:port]`.
    pub local: Option<String>,
    /// TCP: the interval of RFC 5626 CRLF keep-alive pings on the connections opened,
    /// `0s` for none.
    pub keepalive: Option<String>,
    /// TCP: `per_ua` (each UA its own connections) or `per_role` (a role's UAs share them).
    pub connections: Option<String>,
}

/// `accounts:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "accounts, like { range: { from: 1000, count: 100 }, password: \"pw{user}\" } or { csv: users.csv }"
)]
pub struct RawAccounts {
    /// Numbered users: `{ from: 1000, count: 100 }`.
    pub range: Option<RawRange>,
    /// A CSV file of `user,password[,domain]` lines.
    pub csv: Option<String>,
    /// The password of numbered users, with `{user}`: `"pw{user}"`.
    pub password: Option<String>,
    /// The accounts' domain, when it is not `target.domain`.
    pub domain: Option<String>,
}

/// `accounts.range:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a range of users, like { from: 1000, count: 100 }"
)]
pub struct RawRange {
    /// The first user number.
    pub from: Option<String>,
    /// How many users.
    pub count: Option<String>,
}

/// `media:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "media settings, like { codecs: [PCMU, PCMA], ptime: 20ms }"
)]
pub struct RawMedia {
    /// Codecs in offer order: `[PCMU, PCMA]`.
    pub codecs: Option<OneOrMany<String>>,
    /// Packetisation time: `20ms`.
    pub ptime: Option<String>,
    /// Local RTP ports: `20000-29999`.
    pub rtp_ports: Option<String>,
    /// Receive jitter buffer depth: `60ms`.
    pub jitter_buffer: Option<String>,
    /// A directory to write received audio to.
    pub record: Option<String>,
    /// `false`: signaling only, no RTP.
    pub rtp: Option<String>,
    /// SRTP keyed by SDES: `required`, `optional` or `off`.
    pub srtp: Option<String>,
}

/// One role: `accounts` (or `count`), an optional `listen` address, and `steps`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a role: { accounts: 1000..1049, steps: [...] }"
)]
pub struct RawRole {
    /// Which accounts: `1000..1049`, `alice, bob`, `1000..1009, 2000`.
    pub accounts: Option<String>,
    /// Or how many of the accounts no other role names.
    pub count: Option<String>,
    /// This role's own SIP address, `ip:port` (needed to be called in `direct` mode).
    pub listen: Option<String>,
    /// What each user agent of the role does, in order.
    pub steps: Option<Vec<RawStep>>,
}

/// `load:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a load, like { rate: 20/s, total_calls: 1000 }"
)]
pub struct RawLoad {
    /// Open model: new calls per second or minute (`20/s`).
    pub rate: Option<String>,
    /// Closed model: calls kept up at once.
    pub concurrent: Option<String>,
    /// Linear ramp from zero to `rate` or `concurrent`.
    pub ramp_up: Option<String>,
    /// Stop after this many calls.
    pub total_calls: Option<String>,
    /// Stop starting calls after this long.
    pub duration: Option<String>,
    /// Open model: never more calls up at once than this.
    pub max_concurrent: Option<String>,
}

/// `reports:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "reports, like { junit: reports/junit.xml }"
)]
pub struct RawReports {
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
    /// One JUnit test case per call.
    pub junit_per_call: Option<bool>,
}

/// `register:` arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "register arguments, like { expires: 300 }"
)]
pub struct RawRegister {
    /// Requested binding lifetime: `300` (seconds) or `5m`.
    pub expires: Option<String>,
    /// Re-register before the binding expires.
    pub refresh: Option<String>,
}

/// `call:` arguments (shorthand: `call: "sip:{peer}@{domain}"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "call arguments, like { to: \"sip:{peer}@{domain}\", peer: callee }"
)]
pub struct RawCall {
    /// The Request-URI, with `{peer}`, `{user}`, `{domain}`.
    pub to: Option<String>,
    /// The role whose accounts `{peer}` stands for.
    pub peer: Option<String>,
    /// Give up (CANCEL) when no final answer came within this long.
    pub timeout: Option<String>,
    /// Follow redirections (3xx): `true` (at most 5), `false`, or at most this many.
    pub follow_redirects: Option<String>,
}

/// `answer:` arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "answer arguments, like { ring: 500ms }"
)]
pub struct RawAnswer {
    /// Send 180 Ringing and wait this long before the 200 OK.
    pub ring: Option<String>,
}

/// `reject:` arguments (shorthand: `reject: 486`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "reject arguments, like { code: 486 }"
)]
pub struct RawReject {
    /// The final status code, 300–699.
    pub code: Option<String>,
    /// Ring this long first.
    pub ring: Option<String>,
}

/// One item of `play:` (a list of them is a playlist).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "something to play, like { tone: 440Hz, duration: 2s }, { wav: file.wav } or { silence: 1s }"
)]
pub struct RawPlay {
    /// `440Hz`, `350+440Hz` or `[350Hz, 440Hz]`.
    pub tone: Option<OneOrMany<String>>,
    /// Tone level: `-12dBFS`.
    pub level: Option<String>,
    /// How long (a tone without it plays until the call ends).
    pub duration: Option<String>,
    /// A WAV file (8 kHz mono 16-bit).
    pub wav: Option<String>,
    /// Silence for a duration.
    pub silence: Option<String>,
    /// `true`: this call's audio signature, until the call ends.
    pub signature: Option<String>,
    /// `true`: this role's conference party tone, until the call ends.
    pub party: Option<String>,
}

/// `expect:` arguments: exactly one of `tone`, `silence`, `dtmf`, `ringing`, `final`, `answered`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an expectation, like { tone: 440Hz, within: 2s } or { final: 486 }"
)]
pub struct RawExpect {
    /// A tone to hear: `440Hz`, `350+440Hz`.
    pub tone: Option<OneOrMany<String>>,
    /// Silence lasting this long.
    pub silence: Option<String>,
    /// `true`: speech must begin.
    pub speech: Option<String>,
    /// `true`: speech must begin and then end (a prompt).
    pub prompt_ends: Option<String>,
    /// `true`: some audio (speech, music or a tone) must be heard.
    pub audio: Option<String>,
    /// `true`: the peer must put us on hold.
    pub held: Option<String>,
    /// Whose audio signature to hear: `peer` (or `echo`: our own, sent back).
    pub signature: Option<String>,
    /// Conference: the roles whose party tones must be heard (our own must not be).
    pub hears: Option<OneOrMany<String>>,
    /// The role whose user agent must have answered, by its audio signature.
    pub answered_by: Option<String>,
    /// Speech to score with ITU-T P.862 against a reference WAV file.
    pub pesq: Option<Box<RawPesq>>,
    /// A reference WAV file (a prompt) the received audio must hold.
    pub matches: Option<String>,
    /// Matches: the lowest acceptable similarity, 0–1 (`0.8`).
    pub min_similarity: Option<String>,
    /// `true`: keep the audio received during this step as a WAV file.
    pub record: Option<String>,
    /// DTMF digits to receive: `"123#"`.
    pub dtmf: Option<String>,
    /// `true`: a 180/183 must arrive.
    pub ringing: Option<String>,
    /// The final response code that must arrive: `486`.
    #[serde(rename = "final")]
    pub final_code: Option<String>,
    /// `true`: the call must be answered (2xx).
    pub answered: Option<String>,
    /// The call must be answered by this target after a redirection (3xx).
    pub redirected_to: Option<String>,
    /// `true`: the far end must transfer the call (REFER), and its target answer.
    pub transferred: Option<String>,
    /// `true`: an INVITE with Replaces must take over the call (attended transfer).
    pub replaced: Option<String>,
    /// How long to wait for it.
    pub within: Option<String>,
    /// Tone: the lowest acceptable signal-to-noise ratio, `15dB`.
    pub min_snr: Option<String>,
    /// Tone: how long it must last, `500ms`.
    pub min_duration: Option<String>,
    /// Tone: the longest dropout allowed once it was heard, `100ms` (a longer one fails).
    pub max_gap: Option<String>,
}

/// `expect: { pesq: ... }` arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a PESQ expectation, like { reference: speech.wav, min: 3.5 }"
)]
pub struct RawPesq {
    /// The WAV file the far end plays.
    pub reference: Option<String>,
    /// The lowest acceptable raw P.862 score, 1.0–4.5.
    pub min: Option<String>,
}

/// `dtmf:` arguments (shorthand: `dtmf: "123#"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "DTMF to send, like { send: \"123#\" }"
)]
pub struct RawDtmf {
    /// The digits to send.
    pub send: Option<String>,
    /// How long each digit lasts.
    pub duration: Option<String>,
    /// The pause between digits.
    pub gap: Option<String>,
}

/// `hangup:` / `cancel:` arguments (shorthand: `hangup: 5s`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a delay, like { after: 5s }")]
pub struct RawAfter {
    /// Wait this long first.
    pub after: Option<String>,
}

/// `hold:` arguments (shorthand: `hold: inactive`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "how to hold, like { mode: sendonly } or { mode: inactive }"
)]
pub struct RawHold {
    /// `sendonly` (the default) or `inactive`.
    pub mode: Option<String>,
}

/// `transfer:` arguments (shorthand: `transfer: "sip:carol@{domain}"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "transfer arguments, like { to: \"sip:carol@{domain}\", within: 10s }"
)]
pub struct RawTransfer {
    /// The Refer-To URI, with `{user}`, `{domain}`.
    pub to: Option<String>,
    /// How long the final NOTIFY is awaited.
    pub within: Option<String>,
    /// `true`: an attended transfer (a consultation call first, then REFER with Replaces).
    pub attended: Option<String>,
    /// Attended: the role that answers the consultation call.
    pub consult: Option<String>,
    /// Attended: a tone that must be heard on the consultation call before the REFER.
    pub hear: Option<String>,
}

/// `unregister: {}` takes no arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "nothing: this step takes no arguments"
)]
pub struct RawNothing {}

/// One step, as written.
#[derive(Debug, Clone)]
pub enum RawStep {
    /// `register`.
    Register(RawRegister),
    /// `unregister`.
    Unregister,
    /// `call`.
    Call(RawCall),
    /// `answer`.
    Answer(RawAnswer),
    /// `reject`.
    Reject(RawReject),
    /// `ring: 3s`.
    Ring(String),
    /// `play`.
    Play(Vec<RawPlay>),
    /// `expect`.
    Expect(Box<RawExpect>),
    /// `dtmf`.
    Dtmf(RawDtmf),
    /// `wait: 2s`.
    Wait(String),
    /// `hangup`.
    Hangup(RawAfter),
    /// `cancel`.
    Cancel(RawAfter),
    /// `wait_for: bye`.
    WaitFor(String),
    /// `hold`.
    Hold(RawHold),
    /// `resume`.
    Resume,
    /// `transfer`.
    Transfer(RawTransfer),
}

/// The step names, in the order they are listed in messages.
pub const STEP_NAMES: &[&str] = &[
    "register",
    "unregister",
    "call",
    "answer",
    "reject",
    "ring",
    "play",
    "expect",
    "dtmf",
    "wait",
    "hangup",
    "cancel",
    "wait_for",
    "hold",
    "resume",
    "transfer",
];

impl RawStep {
    /// The step's name as written.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register(_) => "register",
            Self::Unregister => "unregister",
            Self::Call(_) => "call",
            Self::Answer(_) => "answer",
            Self::Reject(_) => "reject",
            Self::Ring(_) => "ring",
            Self::Play(_) => "play",
            Self::Expect(_) => "expect",
            Self::Dtmf(_) => "dtmf",
            Self::Wait(_) => "wait",
            Self::Hangup(_) => "hangup",
            Self::Cancel(_) => "cancel",
            Self::WaitFor(_) => "wait_for",
            Self::Hold(_) => "hold",
            Self::Resume => "resume",
            Self::Transfer(_) => "transfer",
        }
    }
}

/// Arguments that may be written as one scalar: the value of their main field.
trait Shorthand: Default {
    fn from_scalar(s: String) -> Option<Self>;
}

impl Shorthand for RawRegister {
    fn from_scalar(_: String) -> Option<Self> {
        None
    }
}
impl Shorthand for RawNothing {
    fn from_scalar(_: String) -> Option<Self> {
        None
    }
}
impl Shorthand for RawAnswer {
    fn from_scalar(_: String) -> Option<Self> {
        None
    }
}
impl Shorthand for RawExpect {
    fn from_scalar(_: String) -> Option<Self> {
        None
    }
}
impl Shorthand for RawTransfer {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self {
            to: Some(s),
            ..Self::default()
        })
    }
}
impl Shorthand for RawCall {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self {
            to: Some(s),
            ..Self::default()
        })
    }
}
impl Shorthand for RawReject {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self {
            code: Some(s),
            ..Self::default()
        })
    }
}
impl Shorthand for RawDtmf {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self {
            send: Some(s),
            ..Self::default()
        })
    }
}
impl Shorthand for RawHold {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self { mode: Some(s) })
    }
}
impl Shorthand for RawAfter {
    fn from_scalar(s: String) -> Option<Self> {
        Some(Self { after: Some(s) })
    }
}

/// A step's arguments: a mapping, a scalar shorthand, or nothing (`- hangup:`).
struct Args<T>(T);

impl<'de, T: Shorthand + Deserialize<'de>> Deserialize<'de> for Args<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Shorthand + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Args<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the step's arguments: a mapping, or a single value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Args<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Args)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Args<T>, E> {
                T::from_scalar(v.to_owned()).map(Args).ok_or_else(|| {
                    E::custom(format!(
                        "'{v}' is not a valid argument here: this step takes a mapping, like {{ key: value }}"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Args<T>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Args<T>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Args<T>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Args<T>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Args<T>, E> {
                Ok(Args(T::default()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Args<T>, E> {
                Ok(Args(T::default()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a step, like `- wait: 2s` or `- hangup`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<RawStep, E> {
                Ok(match name {
                    "register" => RawStep::Register(RawRegister::default()),
                    "unregister" => RawStep::Unregister,
                    "answer" => RawStep::Answer(RawAnswer::default()),
                    "hangup" => RawStep::Hangup(RawAfter::default()),
                    "cancel" => RawStep::Cancel(RawAfter::default()),
                    "hold" => RawStep::Hold(RawHold::default()),
                    "resume" => RawStep::Resume,
                    _ if STEP_NAMES.contains(&name) => {
                        return Err(E::custom(format!(
                            "step `{name}` needs a value, like `- {}`",
                            example(name)
                        )))
                    }
                    _ => return Err(E::unknown_variant(name, STEP_NAMES)),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty mapping is not a step: write a step, like `- wait: 2s`",
                    ));
                };
                let step = match name.as_str() {
                    "register" => RawStep::Register(map.next_value::<Args<_>>()?.0),
                    "unregister" => {
                        let _: Args<RawNothing> = map.next_value()?;
                        RawStep::Unregister
                    }
                    "call" => RawStep::Call(map.next_value::<Args<_>>()?.0),
                    "answer" => RawStep::Answer(map.next_value::<Args<_>>()?.0),
                    "reject" => RawStep::Reject(map.next_value::<Args<_>>()?.0),
                    "ring" => RawStep::Ring(map.next_value()?),
                    "play" => RawStep::Play(map.next_value::<OneOrMany<RawPlay>>()?.into_vec()),
                    "expect" => RawStep::Expect(Box::new(map.next_value::<Args<_>>()?.0)),
                    "dtmf" => RawStep::Dtmf(map.next_value::<Args<_>>()?.0),
                    "wait" => RawStep::Wait(map.next_value()?),
                    "hangup" => RawStep::Hangup(map.next_value::<Args<_>>()?.0),
                    "cancel" => RawStep::Cancel(map.next_value::<Args<_>>()?.0),
                    "wait_for" => RawStep::WaitFor(map.next_value()?),
                    "hold" => RawStep::Hold(map.next_value::<Args<_>>()?.0),
                    "resume" => {
                        let _: Args<RawNothing> = map.next_value()?;
                        RawStep::Resume
                    }
                    "transfer" => RawStep::Transfer(map.next_value::<Args<_>>()?.0),
                    other => return Err(de::Error::unknown_variant(other, STEP_NAMES)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "step `{name}` also has `{extra}`: a step has one name; \
                         indent `{extra}` under `{name}`, or start a new step with `- `"
                    )));
                }
                Ok(step)
            }
        }
        d.deserialize_any(V)
    }
}

fn example(name: &str) -> &'static str {
    match name {
        "call" => "call: { to: \"sip:{peer}@{domain}\", peer: callee }",
        "reject" => "reject: 486",
        "ring" => "ring: 3s",
        "play" => "play: { tone: 440Hz, duration: 2s }",
        "expect" => "expect: { tone: 440Hz, within: 2s }",
        "dtmf" => "dtmf: \"123#\"",
        "wait" => "wait: 2s",
        "wait_for" => "wait_for: bye",
        "transfer" => "transfer: { to: \"sip:carol@{domain}\" }",
        _ => "wait: 2s",
    }
}

/// One value or a list of them: `tone: 440Hz` or `tone: [350Hz, 440Hz]`.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(t) => vec![t],
            Self::Many(v) => v,
        }
    }

    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(t) => std::slice::from_ref(t),
            Self::Many(v) => v,
        }
    }

    /// Whether the value was written as a list.
    pub fn is_list(&self) -> bool {
        matches!(self, Self::Many(_))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany::Many(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.to_owned().into_deserializer()).map(OneOrMany::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A mapping whose keys are names chosen by the author (roles, thresholds), in the order
/// written.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Result<Vec<RawStep>, serde_saphyr::Error> {
        serde_saphyr::from_str::<Vec<RawStep>>(yaml)
    }

    #[test]
    fn steps_in_their_natural_forms() {
        let s = steps(
            "- register: {expires: 300, refresh: true}\n\
             - register\n\
             - unregister\n\
             - answer: { ring: 500ms }\n\
             - reject: 486\n\
             - wait: 2s\n\
             - hangup: { after: 5s }\n\
             - hangup: 5s\n\
             - hangup\n\
             - wait_for: bye\n\
             - call: \"sip:{peer}@pbx.test\"\n\
             - dtmf: \"123#\"\n\
             - play: [ {tone: 440Hz, duration: 1s}, {silence: 500ms} ]\n\
             - play: { tone: [350Hz, 440Hz] }\n\
             - expect: { final: 486 }\n",
        )
        .unwrap();
        let names: Vec<&str> = s.iter().map(RawStep::name).collect();
        assert_eq!(
            names,
            [
                "register",
                "register",
                "unregister",
                "answer",
                "reject",
                "wait",
                "hangup",
                "hangup",
                "hangup",
                "wait_for",
                "call",
                "dtmf",
                "play",
                "play",
                "expect"
            ]
        );
        let RawStep::Register(r) = &s[0] else {
            panic!()
        };
        assert_eq!(r.expires.as_deref(), Some("300"));
        assert_eq!(r.refresh.as_deref(), Some("true"));
        let RawStep::Reject(r) = &s[4] else { panic!() };
        assert_eq!(r.code.as_deref(), Some("486"));
        let RawStep::Hangup(h) = &s[7] else { panic!() };
        assert_eq!(h.after.as_deref(), Some("5s"));
        let RawStep::Play(p) = &s[12] else { panic!() };
        assert_eq!(p.len(), 2);
        let RawStep::Play(p) = &s[13] else { panic!() };
        assert!(p[0].tone.as_ref().unwrap().is_list());
        let RawStep::Expect(e) = &s[14] else { panic!() };
        assert_eq!(e.final_code.as_deref(), Some("486"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_expected_list() {
        let e = steps("- answer: { rign: 500ms }\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown field `rign`, expected `ring`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_steps_list_the_step_names() {
        let e = steps("- anwser: {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown variant `anwser`"), "{e}");
        let e = steps("- anwser\n").unwrap_err();
        assert!(e.to_string().contains("unknown variant `anwser`"), "{e}");
    }

    #[test]
    fn a_step_with_two_names_says_how_to_fix_it() {
        let e = steps("- call: { to: x }\n  timeout: 10s\n").unwrap_err();
        assert!(
            e.to_string().contains("step `call` also has `timeout`"),
            "{e}"
        );
    }

    #[test]
    fn a_bare_step_that_needs_a_value_shows_an_example() {
        let e = steps("- wait\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("step `wait` needs a value, like `- wait: 2s`"),
            "{e}"
        );
    }

    #[test]
    fn scalars_stay_as_written() {
        #[derive(Deserialize)]
        struct T {
            a: String,
            b: String,
            c: String,
        }
        let t: T = serde_saphyr::from_str("a: 1.50\nb: 0100\nc: true\n").unwrap();
        assert_eq!(
            (t.a.as_str(), t.b.as_str(), t.c.as_str()),
            ("1.50", "0100", "true")
        );
    }

    #[test]
    fn ordered_maps_keep_the_written_order() {
        let m: OrderedMap<String> = serde_saphyr::from_str("z: 1\na: 2\nm: 3\n").unwrap();
        let keys: Vec<&str> = m.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
