//! From the scenario as written ([`RawScenario`]) to the validated [`Scenario`], reporting
//! every problem at once.
//!
//! The pass reads its input and never changes it. Each problem is recorded against the key
//! path it is about (`roles.caller.steps.2.call.to`); the loader turns paths into
//! `file:line:col` with the YAML position tree ([`super::source`]). Problems found inside
//! another file (a CSV of accounts) carry their own position.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::media::conference::{Party, MAX_PARTIES};
use crate::media::dtmf::{Digit, DEFAULT_DIGIT_DURATION, DEFAULT_GAP};
use crate::media::g711::Codec;
use crate::media::tone::{Tone, DEFAULT_MAX_GAP, MIN_GAP};
use crate::sdp::crypto::SrtpPolicy;
use crate::sip::transport::Transport;
use crate::sip::uri::{complete_uri, host_literal};

use super::accounts::{numbered_users, parse_csv, range_accounts, Selector, Selectors};
use super::error::ScenarioError;
use super::model::{
    Account, CallStep, ConferenceParty, Connections, End, Expectation, HoldMode, Load, Located,
    Media, PlayItem, Reports, Role, Route, Scenario, SignatureFrom, Step, Target, WaitEvent,
    DEFAULT_KEEPALIVE, DEFAULT_MAX_REDIRECTS, DEFAULT_MIN_SIMILARITY, DEFAULT_TRANSFER_WITHIN,
    RING_FOREVER,
};
use super::part::Shard;
use super::raw::{
    OneOrMany, RawAccounts, RawCall, RawExpect, RawLoad, RawMedia, RawPlay, RawRole, RawScenario,
    RawStep, RawTarget,
};
use super::source::Path;
use super::text::{
    closest, did_you_mean, expand_env, EnvError, Placeholder, Template, TemplateError,
    PLACEHOLDER_NAMES,
};
use super::threshold::{Condition, MetricRef, Threshold};
use super::units::{self, Dbfs, Decibels, Frequencies, HostPort, LocalAddr, PortRange};

pub use crate::media::{MAX_TONE_HZ, MIN_TONE_HZ};
/// The most accounts a `range` may number: as many as one process can hold registered (about
/// 5.5 KiB each, so some 550 MB), low enough that a typo (`count: 10000000000`) is an error
/// rather than an allocation that never ends.
pub(crate) const MAX_RANGE_ACCOUNTS: u64 = 100_000;

const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(32);
const DEFAULT_EXPECT_WITHIN: Duration = Duration::from_secs(5);
/// The shortest `within` of `expect: { signature }`: two whole 500 ms frames and the one
/// it may join in the middle of.
const SIGNATURE_MIN_WITHIN: Duration = Duration::from_millis(1500);
const DEFAULT_SIGNALLING_WITHIN: Duration = Duration::from_secs(10);

/// The default `within` of `expect: { hears }`: a conference focus may take a while to join
/// each call into its mix.
const DEFAULT_HEARS_WITHIN: Duration = Duration::from_secs(10);

/// The shortest `within` of `expect: { hears }`: a party is heard after
/// [`HEARD_BLOCKS`](crate::media::conference::HEARD_BLOCKS) 20 ms blocks of its tone.
const HEARS_MIN_WITHIN: Duration =
    Duration::from_millis(20 * crate::media::conference::HEARD_BLOCKS as u64);
const DEFAULT_FINAL_WITHIN: Duration = Duration::from_secs(32);
const DEFAULT_MIN_SNR_DB: f64 = 10.0;
const DEFAULT_MIN_TONE: Duration = Duration::from_millis(200);
const DEFAULT_LEVEL_DBFS: f64 = -12.0;
const DEFAULT_PTIME: Duration = Duration::from_millis(20);
const DEFAULT_JITTER_BUFFER: Duration = Duration::from_millis(60);
const DEFAULT_RTP_PORTS: PortRange = PortRange {
    first: 20000,
    last: 29999,
};

/// Where a problem is.
#[derive(Debug, Clone)]
pub(crate) enum At {
    /// At the value of this key path (or as deep as it exists).
    Value(Path),
    /// At the key itself (for a problem with a name, or a missing field of the mapping).
    Key(Path),
    /// Already placed, in another file.
    Placed(Box<ScenarioError>),
}

/// One problem found by validation.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub(crate) at: At,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// What validation may consult: the environment, other files, positions.
pub(crate) struct Inputs<'a> {
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) files: &'a dyn Fn(&str) -> Result<String, String>,
    /// The line and column of a key path's value (for [`Located`] steps).
    pub(crate) locate: &'a dyn Fn(&Path) -> (u32, u32),
}

struct Ctx<'a> {
    inputs: &'a Inputs<'a>,
    issues: Vec<Issue>,
    /// `target.transport` is TLS or WSS: `sips:` call URIs can be sent.
    secure_target: bool,
}

impl Ctx<'_> {
    fn error(&mut self, at: At, message: impl Into<String>, hint: Option<String>) {
        self.issues.push(Issue {
            at,
            message: message.into(),
            hint,
        });
    }

    fn at_value(&mut self, path: &Path, message: impl Display) {
        self.error(At::Value(path.clone()), message.to_string(), None);
    }

    fn at_key(&mut self, path: &Path, message: impl Display, hint: Option<String>) {
        self.error(At::Key(path.clone()), message.to_string(), hint);
    }

    /// The text of a scalar with `${ENV}` substituted.
    fn text(&mut self, path: &Path, v: &Option<String>) -> Option<String> {
        let v = v.as_ref()?;
        match expand_env(v, self.inputs.env) {
            Ok(s) => Some(s),
            Err(e) => {
                let hint = match &e {
                    EnvError::Unset(n) => {
                        Some(format!("set {n}, or give a default: ${{{n}:-value}}"))
                    }
                    _ => None,
                };
                self.error(At::Value(path.clone()), e.to_string(), hint);
                None
            }
        }
    }

    fn parse<T: FromStr>(&mut self, path: &Path, v: &Option<String>) -> Option<T>
    where
        T::Err: Display,
    {
        let s = self.text(path, v)?;
        match s.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.at_value(path, e);
                None
            }
        }
    }

    fn duration(&mut self, path: &Path, v: &Option<String>) -> Option<Duration> {
        self.parse::<units::Duration>(path, v).map(|d| d.0)
    }

    fn duration_or(&mut self, path: &Path, v: &Option<String>, default: Duration) -> Duration {
        self.duration(path, v).unwrap_or(default)
    }

    fn whole(&mut self, path: &Path, v: &Option<String>) -> Option<u64> {
        let s = self.text(path, v)?;
        let t = s.trim();
        match t.parse::<u64>() {
            Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                self.at_value(path, format!("'{s}' is not a whole number"));
                None
            }
        }
    }

    /// A whole number of at least 1.
    fn positive(&mut self, path: &Path, v: &Option<String>, what: &str) -> Option<u64> {
        let n = self.whole(path, v)?;
        if n == 0 {
            self.at_value(path, format!("{what} must be at least 1"));
            return None;
        }
        Some(n)
    }

    fn flag(&mut self, path: &Path, v: &Option<String>) -> Option<bool> {
        let s = self.text(path, v)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => {
                self.at_value(path, format!("'{s}' is not true or false"));
                None
            }
        }
    }

    fn status_code(
        &mut self,
        path: &Path,
        v: &Option<String>,
        range: std::ops::RangeInclusive<u16>,
    ) -> Option<u16> {
        let n = self.whole(path, v)?;
        match u16::try_from(n).ok().filter(|c| range.contains(c)) {
            Some(c) => Some(c),
            None => {
                self.at_value(
                    path,
                    format!(
                        "{n} is not a status code here: expected {}–{}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }
}

/// Validates `raw`, returning the scenario or every problem found.
pub(crate) fn validate(raw: &RawScenario, inputs: &Inputs<'_>) -> Result<Scenario, Vec<Issue>> {
    let mut cx = Ctx {
        inputs,
        issues: Vec::new(),
        secure_target: false,
    };
    let root = Path::root();

    let name = cx.text(&root.key("name"), &raw.name);
    if raw.name.is_none() {
        cx.at_key(
            &root,
            "the scenario needs a `name`",
            Some("add `name: my-test` at the top".into()),
        );
    }
    let description = cx.text(&root.key("description"), &raw.description);

    let target = match &raw.target {
        Some(t) => validate_target(&mut cx, &root.key("target"), t),
        None => {
            cx.at_key(
                &root,
                "the scenario needs a `target`",
                Some(
                    "add `target: { server: pbx.example.com:5060 }`, or `target: { direct: true }`"
                        .into(),
                ),
            );
            None
        }
    };
    cx.secure_target = target.as_ref().is_some_and(|t| t.transport.is_secure());
    let direct = target.as_ref().is_some_and(|t| t.route == Route::Direct);
    let domain = target
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_owned(), |t| t.domain.clone());

    let accounts = match &raw.accounts {
        Some(a) => validate_accounts(&mut cx, &root.key("accounts"), a, &domain),
        None => {
            cx.at_key(
                &root,
                "the scenario needs `accounts`",
                Some(
                    "add `accounts: { range: { from: 1000, count: 10 }, password: \"pw{user}\" }`"
                        .into(),
                ),
            );
            Vec::new()
        }
    };

    let media = validate_media(&mut cx, &root.key("media"), raw.media.as_ref());

    let roles = validate_roles(&mut cx, &root, raw, &accounts, direct, media.rtp);
    one_calling_role_with_signatures(&mut cx, &root, raw);

    let callers: u64 = roles
        .iter()
        .filter(|r| r.calls())
        .map(|r| r.accounts.len() as u64)
        .sum();
    // Whether any role calls, as written (a call step with errors still counts).
    let any_caller = raw.roles.iter().flat_map(|r| &r.0).any(|(_, role)| {
        role.steps
            .iter()
            .flatten()
            .any(|s| matches!(s, RawStep::Call(_)))
    });
    let load = match &raw.load {
        Some(l) => {
            if raw.roles.is_some() && !any_caller {
                cx.at_key(
                    &root.key("load"),
                    "`load` starts calls, but no role has a `call` step",
                    None,
                );
            }
            validate_load(&mut cx, &root.key("load"), l)
        }
        None => {
            let n = u32::try_from(callers).unwrap_or(u32::MAX);
            Some(Load::Closed {
                concurrent: n,
                ramp_up: Duration::ZERO,
                end: End::Calls(callers),
            })
        }
    };

    let thresholds = validate_thresholds(&mut cx, &root.key("thresholds"), raw, media.rtp);

    let reports = raw.reports.as_ref().map_or_else(Reports::default, |r| {
        let p = root.key("reports");
        Reports {
            junit: cx.text(&p.key("junit"), &r.junit),
            json: cx.text(&p.key("json"), &r.json),
            series: cx.text(&p.key("series"), &r.series),
            metrics: cx.text(&p.key("metrics"), &r.metrics),
            calls: cx.text(&p.key("calls"), &r.calls),
            html: cx.text(&p.key("html"), &r.html),
            junit_per_call: r.junit_per_call.unwrap_or(false),
        }
    });

    if !cx.issues.is_empty() {
        return Err(cx.issues);
    }
    match (name, target, load) {
        (Some(name), Some(target), Some(load)) => Ok(Scenario {
            name,
            description,
            target,
            accounts,
            media,
            roles,
            load,
            thresholds,
            reports,
        }),
        // Every `None` above was reported; keep the pass total anyway.
        _ => Err(vec![Issue {
            at: At::Key(root),
            message: "the scenario is incomplete".into(),
            hint: None,
        }]),
    }
}

fn validate_target(cx: &mut Ctx<'_>, p: &Path, t: &RawTarget) -> Option<Target> {
    let direct = cx.flag(&p.key("direct"), &t.direct).unwrap_or(false);
    // `sips:host[:port]`: a sips: registrar, its UAs' addresses of record sips: (RFC 5630).
    let sips_server = t.server.as_deref().and_then(|s| {
        s.trim()
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("sips:"))
            .map(|_| s.trim()[5..].to_string())
    });
    let server = match &sips_server {
        Some(rest) => cx.parse::<HostPort>(&p.key("server"), &Some(rest.clone())),
        None => cx.parse::<HostPort>(&p.key("server"), &t.server),
    };
    let outbound_proxy = cx.parse::<HostPort>(&p.key("outbound_proxy"), &t.outbound_proxy);
    let transport = match cx.text(&p.key("transport"), &t.transport) {
        None => Some(Transport::Udp),
        Some(s) => match s.trim().parse::<Transport>() {
            Ok(transport) => Some(transport),
            Err(_) => {
                cx.error(
                    At::Value(p.key("transport")),
                    format!("'{s}' is not a transport: expected udp, tcp, tls, ws or wss"),
                    did_you_mean(&s, ["udp", "tcp", "tls", "ws", "wss"]),
                );
                None
            }
        },
    };
    let local = cx
        .parse::<LocalAddr>(&p.key("local"), &t.local)
        .map(|l| l.0);
    let domain = cx.text(&p.key("domain"), &t.domain);
    let keepalive = match (transport, cx.duration(&p.key("keepalive"), &t.keepalive)) {
        (Some(Transport::Udp), Some(_)) => {
            cx.at_key(
                &p.key("keepalive"),
                "`keepalive` applies to `transport: tcp` only",
                None,
            );
            None
        }
        (_, Some(d)) if d.is_zero() => None,
        (Some(Transport::Udp), None) => None,
        (_, Some(d)) => Some(d),
        (_, None) => Some(DEFAULT_KEEPALIVE),
    };
    let connections = match cx.text(&p.key("connections"), &t.connections) {
        None => Connections::default(),
        Some(_) if transport == Some(Transport::Udp) => {
            cx.at_key(
                &p.key("connections"),
                "`connections` applies to `transport: tcp` only",
                None,
            );
            Connections::default()
        }
        Some(c) => match c.trim() {
            "per_ua" => Connections::PerUa,
            "per_role" => Connections::PerRole,
            other => {
                cx.error(
                    At::Value(p.key("connections")),
                    format!("'{other}' is not a connection sharing: expected per_ua or per_role"),
                    did_you_mean(other, ["per_ua", "per_role"]),
                );
                Connections::default()
            }
        },
    };

    let ws_path = match cx.text(&p.key("ws_path"), &t.ws_path) {
        None => "/".to_owned(),
        Some(_) if !transport.is_some_and(Transport::is_websocket) => {
            cx.at_key(
                &p.key("ws_path"),
                "`ws_path` applies to `transport: ws` and `wss` only",
                None,
            );
            "/".to_owned()
        }
        Some(path) if !path.starts_with('/') || path.contains(char::is_whitespace) => {
            cx.error(
                At::Value(p.key("ws_path")),
                format!("'{path}' is not a resource path: expected one like /ws"),
                None,
            );
            "/".to_owned()
        }
        Some(path) => path,
    };

    let route = if direct {
        if t.server.is_some() {
            cx.at_key(
                &p.key("server"),
                "`server` and `direct: true` exclude each other",
                Some("direct mode sends each request to the host of its Request-URI".into()),
            );
        }
        if t.outbound_proxy.is_some() {
            cx.at_key(
                &p.key("outbound_proxy"),
                "`outbound_proxy` and `direct: true` exclude each other",
                None,
            );
        }
        Some(Route::Direct)
    } else if t.server.is_none() {
        cx.at_key(
            p,
            "`target` needs a `server` (the registrar / proxy, host:port), or `direct: true`",
            None,
        );
        None
    } else {
        server.map(|server| Route::Server {
            server,
            outbound_proxy,
        })
    };
    if sips_server.is_some() && !transport.is_some_and(Transport::is_secure) {
        cx.error(
            At::Value(p.key("server")),
            format!(
                "'{}': a sips: server needs TLS (RFC 3261 §26.2.2)",
                t.server.as_deref().unwrap_or_default().trim()
            ),
            Some("add `transport: tls` (or wss), or give host:port".into()),
        );
    }
    let route = route?;
    let domain = domain.unwrap_or_else(|| match &route {
        Route::Server { server, .. } => server.host.clone(),
        Route::Direct => "127.0.0.1".to_owned(),
    });
    // An IPv6 domain goes into URIs in brackets.
    let domain = host_literal(&domain).into_owned();
    Some(Target {
        route,
        transport: transport?,
        domain,
        local,
        keepalive,
        connections,
        ws_path,
        sips: sips_server.is_some(),
    })
}

fn validate_accounts(
    cx: &mut Ctx<'_>,
    p: &Path,
    a: &RawAccounts,
    target_domain: &str,
) -> Vec<Account> {
    let domain = cx.text(&p.key("domain"), &a.domain).map_or_else(
        || target_domain.to_owned(),
        |d| host_literal(&d).into_owned(),
    );
    let mut out: Vec<Account> = Vec::new();
    // Where each account came from, to report duplicates there.
    let mut origin: Vec<Option<(String, u32, String)>> = Vec::new();

    if a.range.is_none() && a.csv.is_none() {
        cx.at_key(
            p,
            "`accounts` needs a `range: { from: 1000, count: 100 }` or a `csv: file` of user,password[,domain]",
            None,
        );
    }
    if let Some(r) = &a.range {
        let rp = p.key("range");
        let from = cx.text(&rp.key("from"), &r.from);
        let count = cx
            .positive(&rp.key("count"), &r.count, "`count`")
            .and_then(|n| {
                if n > MAX_RANGE_ACCOUNTS {
                    cx.at_value(
                        &rp.key("count"),
                        format!(
                            "{n} accounts is more than the {MAX_RANGE_ACCOUNTS} a range may hold"
                        ),
                    );
                    return None;
                }
                Some(n)
            });
        if r.from.is_none() {
            cx.at_key(&rp, "`range` needs `from`: the first user number", None);
        }
        if r.count.is_none() {
            cx.at_key(&rp, "`range` needs `count`: how many users", None);
        }
        let password = match cx.text(&p.key("password"), &a.password) {
            None => Some(Template::parse("", &[]).expect("empty template")),
            Some(s) => match Template::parse(&s, &[Placeholder::User, Placeholder::Domain]) {
                Ok(t) => Some(t),
                Err(e) => {
                    template_error(cx, &p.key("password"), &e);
                    None
                }
            },
        };
        if let (Some(from), Some(count), Some(password)) = (from, count, password) {
            match numbered_users(from.trim(), count) {
                Some(users) => {
                    let accounts = range_accounts(users, &password, &domain);
                    origin.extend(accounts.iter().map(|_| None));
                    out.extend(accounts);
                }
                None => cx.at_value(&rp.key("from"), format!("'{from}' is not a whole number")),
            }
        }
    } else if a.password.is_some() {
        cx.at_key(
            &p.key("password"),
            "`password` is the password of `range` accounts; CSV lines carry their own",
            None,
        );
    }
    if let Some(file) = cx.text(&p.key("csv"), &a.csv) {
        match (cx.inputs.files)(&file) {
            Err(reason) => cx.at_value(
                &p.key("csv"),
                format!("cannot read the accounts file `{file}`: {reason}"),
            ),
            Ok(contents) => match parse_csv(&file, &contents, &domain) {
                Err(errors) => {
                    for e in errors {
                        cx.error(At::Placed(Box::new(e)), String::new(), None);
                    }
                }
                Ok(rows) => {
                    if rows.is_empty() {
                        cx.at_value(
                            &p.key("csv"),
                            format!("the accounts file `{file}` has no accounts"),
                        );
                    }
                    for row in rows {
                        origin.push(Some((file.clone(), row.line, row.masked)));
                        out.push(row.account);
                    }
                }
            },
        }
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, acc) in out.iter().enumerate() {
        if let Some(&first) = seen.get(acc.user.as_str()) {
            let message = format!("duplicate account `{}`", acc.user);
            let first_at = match &origin[first] {
                Some((f, l, _)) => format!("{f}:{l}"),
                None => "`range`".to_owned(),
            };
            let hint = Some(format!("it is first defined by {first_at}"));
            match &origin[i] {
                Some((file, line, masked)) => cx.error(
                    At::Placed(Box::new(ScenarioError {
                        file: file.clone(),
                        line: *line,
                        col: 1,
                        message: message.clone(),
                        source_line: masked.clone(),
                        hint: hint.clone(),
                    })),
                    String::new(),
                    None,
                ),
                None => cx.error(At::Value(p.key("range")), message, hint),
            }
        } else {
            seen.insert(&acc.user, i);
        }
    }
    out
}

fn template_error(cx: &mut Ctx<'_>, path: &Path, e: &TemplateError) {
    let hint = match e {
        TemplateError::Unknown { name, .. } => {
            closest(name, PLACEHOLDER_NAMES).map(|best| format!("did you mean `{{{best}}}`?"))
        }
        TemplateError::Unterminated(_) => None,
    };
    cx.error(At::Value(path.clone()), e.to_string(), hint);
}

fn validate_media(cx: &mut Ctx<'_>, p: &Path, m: Option<&RawMedia>) -> Media {
    let default = Media {
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        ptime: DEFAULT_PTIME,
        rtp_ports: DEFAULT_RTP_PORTS,
        jitter_buffer: DEFAULT_JITTER_BUFFER,
        record: None,
        rtp: true,
        srtp: SrtpPolicy::Off,
    };
    let Some(m) = m else { return default };
    let mut codecs = Vec::new();
    if let Some(list) = &m.codecs {
        for (i, c) in list.as_slice().iter().enumerate() {
            let cp = if list.is_list() {
                p.key("codecs").index(i)
            } else {
                p.key("codecs")
            };
            let Some(c) = cx.text(&cp, &Some(c.clone())) else {
                continue;
            };
            let codec = match c.trim().parse::<Codec>() {
                Ok(codec) => codec,
                Err(_) => {
                    let hint = match c.trim().to_ascii_uppercase().as_str() {
                        "G711U" | "ULAW" | "G711" => Some("G.711 µ-law is `PCMU`".to_owned()),
                        "G711A" | "ALAW" => Some("G.711 A-law is `PCMA`".to_owned()),
                        _ => Some("sipcheck sends and verifies G.711: PCMU and PCMA".to_owned()),
                    };
                    cx.error(At::Value(cp), format!("unknown codec `{c}`"), hint);
                    continue;
                }
            };
            if codecs.contains(&codec) {
                cx.at_value(&cp, format!("`{}` is listed twice", codec.encoding_name()));
            } else {
                codecs.push(codec);
            }
        }
        if list.as_slice().is_empty() {
            cx.at_value(
                &p.key("codecs"),
                "`codecs` is empty: list at least one of PCMU, PCMA",
            );
        }
    }
    let ptime = cx.duration_or(&p.key("ptime"), &m.ptime, DEFAULT_PTIME);
    let ms = ptime.as_nanos() / 1_000_000;
    if !ptime.as_nanos().is_multiple_of(10_000_000) || !(10..=60).contains(&ms) {
        cx.at_value(
            &p.key("ptime"),
            "`ptime` must be 10ms, 20ms, 30ms, 40ms, 50ms or 60ms",
        );
    }
    let rtp_ports = cx
        .parse::<PortRange>(&p.key("rtp_ports"), &m.rtp_ports)
        .unwrap_or(DEFAULT_RTP_PORTS);
    if rtp_ports.len() < 2 {
        cx.at_value(
            &p.key("rtp_ports"),
            "`rtp_ports` needs at least two ports (RTP and RTCP)",
        );
    }
    let jitter_buffer = cx.duration_or(
        &p.key("jitter_buffer"),
        &m.jitter_buffer,
        DEFAULT_JITTER_BUFFER,
    );
    if jitter_buffer > Duration::from_secs(1) {
        cx.at_value(
            &p.key("jitter_buffer"),
            "`jitter_buffer` above 1s would hide any real problem",
        );
    }
    let rtp = cx.flag(&p.key("rtp"), &m.rtp).unwrap_or(true);
    if !rtp && m.record.is_some() {
        cx.at_key(
            &p.key("record"),
            "`record` writes the received audio, but `rtp: false` opens no RTP",
            None,
        );
    }
    let srtp = match cx.text(&p.key("srtp"), &m.srtp) {
        None => SrtpPolicy::Off,
        Some(name) => match SrtpPolicy::from_name(name.trim()) {
            Some(policy) => policy,
            None => {
                cx.error(
                    At::Value(p.key("srtp")),
                    format!("unknown `srtp` policy `{name}`"),
                    Some("`srtp` is `required`, `optional` or `off`".to_owned()),
                );
                SrtpPolicy::Off
            }
        },
    };
    if !rtp && srtp != SrtpPolicy::Off {
        cx.at_key(
            &p.key("srtp"),
            "`srtp` protects RTP, but `rtp: false` opens no RTP",
            None,
        );
    }
    Media {
        codecs: if m.codecs.is_some() {
            codecs
        } else {
            default.codecs
        },
        ptime,
        rtp_ports,
        jitter_buffer,
        record: cx.text(&p.key("record"), &m.record),
        rtp,
        srtp,
    }
}

/// What the selection of one role's accounts produced.
struct Selection {
    accounts: Vec<Account>,
    /// Whether the selector was valid (so that an empty result is worth reporting).
    ok: bool,
}

/// Signature call numbers count per calling role: a second calling role with signature steps
/// would play the same codes as the first, and audio crossed between their calls of the same
/// number would pass.
fn one_calling_role_with_signatures(cx: &mut Ctx<'_>, root: &Path, raw: &RawScenario) {
    let Some(roles) = &raw.roles else { return };
    let mut signing_callers = roles.0.iter().filter(|(_, role)| {
        let steps = role.steps.iter().flatten();
        let calls = steps.clone().any(|s| matches!(s, RawStep::Call(_)));
        let signs = steps.clone().any(|s| match s {
            RawStep::Play(items) => items.iter().any(|i| i.signature.is_some()),
            RawStep::Expect(e) => e.signature.is_some() || e.answered_by.is_some(),
            _ => false,
        });
        calls && signs
    });
    if let Some((name, _)) = signing_callers.nth(1) {
        cx.at_key(
            &root.key("roles").key(name),
            format!(
                "role `{name}` is a second calling role with audio signatures: calls are numbered per calling role, so its calls would play the same codes as the other's and audio crossed between them would pass"
            ),
            Some("keep one calling role in a scenario with signatures".into()),
        );
    }
}

fn validate_roles(
    cx: &mut Ctx<'_>,
    root: &Path,
    raw: &RawScenario,
    accounts: &[Account],
    direct: bool,
    rtp: bool,
) -> Vec<Role> {
    let p = root.key("roles");
    let Some(roles) = &raw.roles else {
        cx.at_key(
            root,
            "the scenario needs `roles`: who does what",
            Some(
                "add `roles: { callee: { accounts: 1000..1009, steps: [register, answer] } }`"
                    .into(),
            ),
        );
        return Vec::new();
    };
    if roles.0.is_empty() {
        cx.at_key(&p, "`roles` is empty", None);
    }
    let names: Vec<&str> = roles.0.iter().map(|(n, _)| n.as_str()).collect();

    // Explicit selectors first, then counts from what is left, in the order written.
    let mut owner: Vec<Option<usize>> = vec![None; accounts.len()];
    let mut selections: Vec<Selection> = Vec::new();
    for (ri, (name, role)) in roles.0.iter().enumerate() {
        let rp = p.key(name);
        selections.push(select_explicit(
            cx, &rp, name, role, accounts, &mut owner, ri, &names,
        ));
    }
    for (ri, (name, role)) in roles.0.iter().enumerate() {
        let rp = p.key(name);
        if role.accounts.is_some() {
            continue;
        }
        let Some(n) = cx.whole(&rp.key("count"), &role.count) else {
            if role.count.is_none() {
                cx.at_key(
                    &rp,
                    format!("role `{name}` needs `accounts: 1000..1049` (which users) or `count: 50` (how many)"),
                    None,
                );
            }
            continue;
        };
        let free: Vec<usize> = (0..accounts.len())
            .filter(|&i| owner[i].is_none())
            .take(n as usize)
            .collect();
        if (free.len() as u64) < n {
            cx.at_value(
                &rp.key("count"),
                format!(
                    "role `{name}` wants {n} accounts, but only {} are not taken by other roles",
                    free.len()
                ),
            );
            continue;
        }
        for &i in &free {
            owner[i] = Some(ri);
        }
        selections[ri] = Selection {
            accounts: free.iter().map(|&i| accounts[i].clone()).collect(),
            ok: true,
        };
    }

    let mut out = Vec::new();
    for (ri, (name, role)) in roles.0.iter().enumerate() {
        let rp = p.key(name);
        let listen = cx
            .parse::<LocalAddr>(&rp.key("listen"), &role.listen)
            .map(|l| l.0);
        let steps = validate_steps(
            cx,
            &rp,
            name,
            role,
            roles.0.as_slice(),
            &selections,
            (direct, rtp),
        );
        let answers = role.steps.iter().flatten().any(|s| {
            matches!(
                s,
                RawStep::Answer(_) | RawStep::Reject(_) | RawStep::Ring(_)
            )
        });
        let raw_steps = role.steps.as_deref().unwrap_or_default();
        if !answers && !raw_steps.iter().any(|s| matches!(s, RawStep::Call(_))) {
            // Steps between the leading `register`s and the trailing `unregister`s run once
            // per call: in a role with no call to place or answer they would never run.
            let setup = raw_steps
                .iter()
                .take_while(|s| matches!(s, RawStep::Register(_)))
                .count();
            let teardown = raw_steps[setup..]
                .iter()
                .rev()
                .take_while(|s| matches!(s, RawStep::Unregister))
                .count();
            if let Some(first) = (setup..raw_steps.len() - teardown).next() {
                cx.at_key(
                    &rp.key("steps").index(first),
                    format!(
                        "role `{name}` neither places nor answers calls, so this step (and \
                         every one before `unregister`) would never run"
                    ),
                    Some(
                        "a role of only `register` (and `unregister`) stays registered until \
                         the other roles' load ends, or until Ctrl-C"
                            .into(),
                    ),
                );
            }
        }
        if direct && answers && role.listen.is_none() {
            cx.at_key(
                &rp,
                format!(
                    "in direct mode, role `{name}` answers calls, so it needs `listen: ip:port`"
                ),
                Some(
                    "callers reach it at that address: `to: \"sip:{peer}@127.0.0.1:5070\"`".into(),
                ),
            );
        }
        out.push(Role {
            name: name.clone(),
            accounts: selections[ri].accounts.clone(),
            listen,
            steps,
        });
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn select_explicit(
    cx: &mut Ctx<'_>,
    rp: &Path,
    name: &str,
    role: &RawRole,
    accounts: &[Account],
    owner: &mut [Option<usize>],
    ri: usize,
    names: &[&str],
) -> Selection {
    let none = Selection {
        accounts: Vec::new(),
        ok: false,
    };
    if role.accounts.is_some() && role.count.is_some() {
        cx.at_key(
            &rp.key("count"),
            "`accounts` and `count` exclude each other: name the users, or say how many",
            None,
        );
    }
    let ap = rp.key("accounts");
    let Some(selectors) = cx.parse::<Selectors>(&ap, &role.accounts) else {
        return none;
    };
    let mut picked = Vec::new();
    for (i, acc) in accounts.iter().enumerate() {
        if selectors.0.iter().any(|s| s.matches(&acc.user)) {
            picked.push(i);
        }
    }
    let mut ok = true;
    for s in &selectors.0 {
        if let Selector::User(u) = s {
            if !accounts.iter().any(|a| &a.user == u) {
                let users = accounts.iter().map(|a| a.user.as_str());
                cx.error(
                    At::Value(ap.clone()),
                    format!("there is no account `{u}`"),
                    did_you_mean(u, users),
                );
                ok = false;
            }
        }
    }
    if ok && picked.is_empty() && !accounts.is_empty() {
        cx.error(
            At::Value(ap.clone()),
            format!(
                "`{}` matches no account",
                role.accounts.as_deref().unwrap_or_default()
            ),
            Some(format!("the accounts are {}", summarize(accounts))),
        );
        ok = false;
    }
    let mut clash: Vec<(&str, usize)> = Vec::new();
    for &i in &picked {
        match owner[i] {
            Some(other) => clash.push((&accounts[i].user, other)),
            None => owner[i] = Some(ri),
        }
    }
    if let Some(&(_, other)) = clash.first() {
        let users: Vec<&str> = clash.iter().take(3).map(|(u, _)| *u).collect();
        let more = if clash.len() > 3 {
            format!(" and {} more", clash.len() - 3)
        } else {
            String::new()
        };
        cx.error(
            At::Value(ap.clone()),
            format!(
                "role `{name}` shares accounts with role `{}`: {}{more}",
                names[other],
                users.join(", ")
            ),
            Some("each account is one user agent with one role".into()),
        );
    }
    Selection {
        accounts: picked.iter().map(|&i| accounts[i].clone()).collect(),
        ok,
    }
}

/// `1000..1099 (100 accounts)` or `alice, bob, carol`.
fn summarize(accounts: &[Account]) -> String {
    match accounts {
        [] => "none".into(),
        [a] => format!("`{}`", a.user),
        [first, .., last] if accounts.len() > 3 => {
            format!(
                "{}..{} ({} accounts)",
                first.user,
                last.user,
                accounts.len()
            )
        }
        _ => accounts
            .iter()
            .map(|a| a.user.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn validate_steps(
    cx: &mut Ctx<'_>,
    rp: &Path,
    name: &str,
    role: &RawRole,
    roles: &[(String, RawRole)],
    selections: &[Selection],
    (direct, rtp): (bool, bool),
) -> Vec<Located<Step>> {
    let sp = rp.key("steps");
    let Some(steps) = &role.steps else {
        cx.at_key(rp, format!("role `{name}` has no `steps`"), None);
        return Vec::new();
    };
    if steps.is_empty() {
        cx.at_key(&sp, format!("role `{name}` has no steps"), None);
    }
    let mut out = Vec::new();
    let mut has_call = false;
    let mut has_answer = false;
    let mut ends: Option<(&str, u32)> = None;
    for (i, raw) in steps.iter().enumerate() {
        let ip = sp.index(i);
        let ap = ip.key(raw.name());
        let (line, col) = (cx.inputs.locate)(&ip);

        // Order: what needs a call to exist.
        let media_step = match raw {
            RawStep::Play(_) | RawStep::Dtmf(_) => true,
            RawStep::Expect(e) => {
                e.ringing.is_none()
                    && e.final_code.is_none()
                    && e.answered.is_none()
                    && e.transferred.is_none()
                    && e.replaced.is_none()
            }
            _ => false,
        };
        if media_step && !rtp {
            cx.at_key(
                &ap,
                format!(
                    "`{}` needs audio, but `media: {{ rtp: false }}` opens no RTP",
                    raw.name()
                ),
                Some("remove `rtp: false` from `media`, or this step".into()),
            );
        }
        if media_step && !has_call && !has_answer {
            cx.at_key(
                &ap,
                format!(
                    "`{}` before any `call` or `answer` step: there is no call yet",
                    raw.name()
                ),
                None,
            );
        }
        if let RawStep::Expect(e) = raw {
            let what = [
                ("ringing", &e.ringing),
                ("final", &e.final_code),
                ("answered", &e.answered),
            ]
            .into_iter()
            .find(|(_, v)| v.is_some());
            if let Some((what, _)) = what {
                if !has_call {
                    cx.at_key(
                        &ap,
                        format!("`expect: {{ {what} }}` needs an earlier `call` step in this role"),
                        None,
                    );
                }
            }
        }
        let transferred =
            matches!(raw, RawStep::Expect(e) if e.transferred.is_some() || e.replaced.is_some());
        if (transferred
            || matches!(
                raw,
                RawStep::Hold(_) | RawStep::Resume | RawStep::Transfer(_)
            ))
            && !has_call
            && !has_answer
        {
            cx.at_key(
                &ap,
                format!(
                    "`{}` before any `call` or `answer` step: there is no call yet",
                    raw.name()
                ),
                None,
            );
        }
        match raw {
            RawStep::Hangup(_) | RawStep::Cancel(_) => {
                if let Some((other, other_line)) = ends {
                    if other != raw.name() {
                        cx.at_key(
                            &ap,
                            format!(
                                "role `{name}` has both `{other}` (line {other_line}) and `{}`",
                                raw.name()
                            ),
                            Some(
                                "a call ends one way: `cancel` before an answer, `hangup` after"
                                    .into(),
                            ),
                        );
                    }
                } else {
                    ends = Some((raw.name(), line));
                }
                if matches!(raw, RawStep::Cancel(_)) && !has_call {
                    cx.at_key(
                        &ap,
                        "`cancel` needs an earlier `call` step in this role",
                        None,
                    );
                } else if !has_call && !has_answer {
                    cx.at_key(
                        &ap,
                        "`hangup` before any `call` or `answer` step: there is no call yet",
                        None,
                    );
                }
            }
            RawStep::Register(_) | RawStep::Unregister if direct => {
                cx.at_key(
                    &ap,
                    format!("`{}` in direct mode: there is no registrar", raw.name()),
                    Some("set `target.server`, or remove the step".into()),
                );
            }
            _ => {}
        }
        has_call |= matches!(raw, RawStep::Call(_));
        has_answer |= matches!(raw, RawStep::Answer(_));

        let record = match raw {
            RawStep::Expect(e) if e.record.is_some() => {
                let rp = ap.key("record");
                let on = cx.flag(&rp, &e.record).unwrap_or(false);
                let on_audio = [
                    e.tone.is_some(),
                    e.silence.is_some(),
                    e.speech.is_some(),
                    e.prompt_ends.is_some(),
                    e.audio.is_some(),
                    e.signature.is_some(),
                    e.pesq.is_some(),
                    e.matches.is_some(),
                    e.dtmf.is_some(),
                ]
                .contains(&true);
                if on && !on_audio {
                    cx.at_key(
                        &rp,
                        "`record` keeps the audio received during an `expect` on audio (tone, silence, speech, prompt_ends, audio, signature, pesq, matches, dtmf), not this one",
                        None,
                    );
                }
                on
            }
            _ => false,
        };
        if let Some(step) = validate_step(cx, &ap, name, raw, roles, selections) {
            out.push(Located {
                value: step,
                line,
                col,
                record,
            });
        }
    }
    out
}

fn validate_step(
    cx: &mut Ctx<'_>,
    p: &Path,
    role: &str,
    raw: &RawStep,
    roles: &[(String, RawRole)],
    selections: &[Selection],
) -> Option<Step> {
    Some(match raw {
        RawStep::Register(r) => {
            let expires = match cx.text(&p.key("expires"), &r.expires) {
                None => Some(DEFAULT_EXPIRES),
                Some(s) => {
                    let t = s.trim();
                    let d = if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
                        t.parse::<u64>().ok().map(Duration::from_secs)
                    } else {
                        t.parse::<units::Duration>().ok().map(|d| d.0)
                    };
                    match d {
                        Some(d)
                            if d.subsec_nanos() == 0
                                && d.as_secs() > 0
                                && d.as_secs() <= u64::from(u32::MAX) =>
                        {
                            Some(d)
                        }
                        Some(d) if d.is_zero() => {
                            cx.error(
                                At::Value(p.key("expires")),
                                "`expires: 0` removes the binding",
                                Some("use the `unregister` step".into()),
                            );
                            None
                        }
                        _ => {
                            cx.at_value(
                                &p.key("expires"),
                                format!("'{s}' is not a registration lifetime: expected whole seconds, like 300 or 5m"),
                            );
                            None
                        }
                    }
                }
            };
            let refresh = cx.flag(&p.key("refresh"), &r.refresh).unwrap_or(true);
            Step::Register {
                expires: expires?,
                refresh,
            }
        }
        RawStep::Unregister => Step::Unregister,
        RawStep::Call(c) => Step::Call(validate_call(cx, p, role, c, roles, selections)?),
        RawStep::Answer(a) if a.ring.as_deref().is_some_and(|r| r.trim() == "forever") => {
            cx.error(
                At::Value(p.key("ring")),
                "`answer` with `ring: forever` would never answer",
                Some(
                    "a callee that never answers: `- ring: forever` then `- wait_for: cancel`"
                        .into(),
                ),
            );
            return None;
        }
        RawStep::Answer(a) => Step::Answer {
            ring: cx.duration_or(&p.key("ring"), &a.ring, Duration::ZERO),
        },
        RawStep::Reject(r) => {
            if r.code.is_none() {
                cx.at_key(p, "`reject` needs a `code`, like `reject: 486`", None);
            }
            let code = cx.status_code(&p.key("code"), &r.code, 300..=699);
            let ring = cx.duration_or(&p.key("ring"), &r.ring, Duration::ZERO);
            Step::Reject { code: code?, ring }
        }
        RawStep::Ring(d) if d.trim().eq_ignore_ascii_case("forever") => Step::Ring(RING_FOREVER),
        RawStep::Ring(d) => Step::Ring(cx.duration(p, &Some(d.clone()))?),
        RawStep::Play(items) => Step::Play(validate_play(cx, p, items, role, roles)?),
        RawStep::Expect(e) => {
            let mut expectation = validate_expect(cx, p, e, role, roles)?;
            if let (
                Some(name),
                Expectation::Signature {
                    from: from @ SignatureFrom::Party(_),
                    ..
                },
            ) = (&e.answered_by, &mut expectation)
            {
                // The parties: roles that place no calls and play a signature, in order (as
                // `Scenario::signature_parties`).
                let parties: Vec<&str> = roles
                    .iter()
                    .filter(|(_, r)| {
                        let steps = r.steps.iter().flatten();
                        !steps.clone().any(|s| matches!(s, RawStep::Call(_)))
                            && steps.clone().any(|s| match s {
                                RawStep::Play(items) => items.iter().any(|i| i.signature.is_some()),
                                _ => false,
                            })
                    })
                    .map(|(n, _)| n.as_str())
                    .collect();
                let name = name.trim();
                match parties.iter().position(|p| *p == name) {
                    Some(slot) => *from = SignatureFrom::Party(u32::try_from(slot).unwrap_or(0)),
                    None => {
                        let why = if roles.iter().any(|(n, _)| n == name) {
                            format!("role `{name}` plays no signature (or places calls): its answer cannot be recognised")
                        } else {
                            format!("there is no role `{name}`")
                        };
                        cx.at_value(&p.key("answered_by"), why);
                        return None;
                    }
                }
            }
            Step::Expect(expectation)
        }
        RawStep::Dtmf(d) => {
            if d.send.is_none() {
                cx.at_key(
                    p,
                    "`dtmf` needs the digits to `send`, like `dtmf: \"123#\"`",
                    None,
                );
            }
            let digits = digits(cx, &p.key("send"), &d.send);
            let duration = cx.duration_or(&p.key("duration"), &d.duration, DEFAULT_DIGIT_DURATION);
            let gap = cx.duration_or(&p.key("gap"), &d.gap, DEFAULT_GAP);
            Step::Dtmf {
                digits: digits?,
                duration,
                gap,
            }
        }
        RawStep::Wait(d) => Step::Wait(cx.duration(p, &Some(d.clone()))?),
        RawStep::Hangup(a) => Step::Hangup {
            after: cx.duration_or(&p.key("after"), &a.after, Duration::ZERO),
        },
        RawStep::Cancel(a) => Step::Cancel {
            after: cx.duration_or(&p.key("after"), &a.after, Duration::ZERO),
        },
        RawStep::Hold(h) => match cx.text(&p.key("mode"), &h.mode) {
            None => Step::Hold(HoldMode::SendOnly),
            Some(mode) => match mode.trim() {
                "sendonly" => Step::Hold(HoldMode::SendOnly),
                "inactive" => Step::Hold(HoldMode::Inactive),
                other => {
                    cx.error(
                        At::Value(p.key("mode")),
                        format!("cannot hold as `{other}`: expected sendonly or inactive"),
                        did_you_mean(other, ["sendonly", "inactive"]),
                    );
                    return None;
                }
            },
        },
        RawStep::Resume => Step::Resume,
        RawStep::Transfer(t) => {
            if t.to.is_none() {
                cx.at_key(
                    p,
                    "`transfer` needs `to`, the URI the call is transferred to, like `to: \"sip:carol@{domain}\"`",
                    None,
                );
            }
            let to = cx.text(&p.key("to"), &t.to)?;
            let uri = complete_uri(&to, "{domain}").unwrap_or_default();
            let to = match Template::parse(&uri, &[Placeholder::User, Placeholder::Domain]) {
                Ok(t) => t,
                Err(e) => {
                    template_error(cx, &p.key("to"), &e);
                    return None;
                }
            };
            let within = cx.duration_or(&p.key("within"), &t.within, DEFAULT_TRANSFER_WITHIN);
            let attended = match &t.attended {
                None => false,
                v => cx.flag(&p.key("attended"), v)?,
            };
            let consult = cx.text(&p.key("consult"), &t.consult);
            let consult = match (attended, consult) {
                (true, None) => {
                    cx.at_key(
                        p,
                        "`attended: true` needs `consult`, the role that answers the consultation call",
                        None,
                    );
                    return None;
                }
                (false, Some(_)) => {
                    cx.error(
                        At::Value(p.key("consult")),
                        "`consult` is for an attended transfer",
                        Some("add `attended: true`, or remove `consult`".into()),
                    );
                    return None;
                }
                (_, None) => None,
                (true, Some(c)) => {
                    if !roles.iter().any(|(n, _)| *n == c) {
                        let names = roles.iter().map(|(n, _)| n.as_str());
                        cx.error(
                            At::Value(p.key("consult")),
                            format!("there is no role `{c}`"),
                            did_you_mean(&c, names),
                        );
                        return None;
                    }
                    Some(c)
                }
            };
            let hear = match &t.hear {
                None => None,
                Some(h) => {
                    let f = frequencies(cx, &p.key("hear"), &OneOrMany::One(h.clone()))?;
                    if consult.is_none() {
                        cx.error(
                            At::Value(p.key("hear")),
                            "`hear` is for an attended transfer's consultation call",
                            Some("add `attended: true` and `consult`, or remove `hear`".into()),
                        );
                        return None;
                    }
                    f.first().copied()
                }
            };
            Step::Transfer {
                to,
                within,
                consult,
                hear,
            }
        }
        RawStep::WaitFor(w) => {
            let s = cx.text(p, &Some(w.clone()))?;
            match s.trim() {
                "bye" => Step::WaitFor(WaitEvent::Bye),
                "cancel" => Step::WaitFor(WaitEvent::Cancel),
                other => {
                    cx.error(
                        At::Value(p.clone()),
                        format!("cannot wait for `{other}`: expected bye or cancel"),
                        did_you_mean(other, ["bye", "cancel"]),
                    );
                    return None;
                }
            }
        }
    })
}

fn digits(cx: &mut Ctx<'_>, p: &Path, v: &Option<String>) -> Option<Vec<Digit>> {
    let s = cx.text(p, v)?;
    if s.is_empty() {
        cx.at_value(p, "no DTMF digits");
        return None;
    }
    match Digit::parse_str(&s) {
        Ok(d) => Some(d),
        Err(_) => {
            let bad = s
                .chars()
                .find(|&c| Digit::from_char(c).is_none())
                .unwrap_or('?');
            cx.at_value(
                p,
                format!("'{s}' is not a DTMF string: `{bad}` is not one of 0-9, *, #, A-D"),
            );
            None
        }
    }
}

/// `follow_redirects:` `true` (at most [`DEFAULT_MAX_REDIRECTS`]), `false` (0), or a whole
/// number: the redirections a call follows.
fn follow_redirects(cx: &mut Ctx<'_>, path: &Path, v: &Option<String>) -> u32 {
    let Some(s) = cx.text(path, v) else {
        return 0;
    };
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "true" | "yes" | "on" => DEFAULT_MAX_REDIRECTS,
        "false" | "no" | "off" => 0,
        _ => match t.parse::<u32>() {
            Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                cx.error(
                    At::Value(path.clone()),
                    format!("'{s}' is neither true, false nor a number of redirections"),
                    Some(format!(
                        "write `follow_redirects: true` (at most {DEFAULT_MAX_REDIRECTS}), or the most to follow, like `follow_redirects: 3`"
                    )),
                );
                0
            }
        },
    }
}

fn validate_call(
    cx: &mut Ctx<'_>,
    p: &Path,
    role: &str,
    c: &RawCall,
    roles: &[(String, RawRole)],
    selections: &[Selection],
) -> Option<CallStep> {
    let timeout = cx.duration_or(&p.key("timeout"), &c.timeout, DEFAULT_CALL_TIMEOUT);
    let max_redirects = follow_redirects(cx, &p.key("follow_redirects"), &c.follow_redirects);
    let peer = cx.text(&p.key("peer"), &c.peer);
    let names = roles.iter().map(|(n, _)| n.as_str());
    let mut peer_ok = true;
    if let Some(peer) = &peer {
        if !roles.iter().any(|(n, _)| n == peer) {
            cx.error(
                At::Value(p.key("peer")),
                format!("there is no role `{peer}`"),
                did_you_mean(peer, names.clone()).or_else(|| {
                    Some(format!(
                        "the roles are {}",
                        names.clone().collect::<Vec<_>>().join(", ")
                    ))
                }),
            );
            peer_ok = false;
        }
    }
    if c.to.is_none() {
        cx.at_key(
            p,
            "`call` needs `to`, the Request-URI, like `to: \"sip:{peer}@{domain}\"`",
            None,
        );
    }
    let to = cx.text(&p.key("to"), &c.to)?;
    let uri = complete_uri(&to, "{domain}").unwrap_or_default();
    // The scheme and parameters are literal text (placeholders fill the user and host
    // parts), so a URI that needs TLS is known here, before any account fills it.
    // A sips: URI is sent only over TLS (RFC 3261 §26.2.2): with `target.transport: tls`
    // or `wss`; `transport=tls` in a sip: URI asks for TLS the same way.
    if let Some(what) = needs_tls(&uri).filter(|_| !cx.secure_target) {
        cx.error(
            At::Value(p.key("to")),
            format!(
                "`{}`: {what} needs TLS, and `target.transport` is not tls or wss",
                to.trim()
            ),
            Some("add `transport: tls` to `target`, or use a sip: URI".into()),
        );
        return None;
    }
    let to = match Template::parse(
        &uri,
        &[Placeholder::Peer, Placeholder::User, Placeholder::Domain],
    ) {
        Ok(t) => t,
        Err(e) => {
            template_error(cx, &p.key("to"), &e);
            return None;
        }
    };
    let peer = if to.uses(Placeholder::Peer) {
        match peer {
            Some(peer) => Some(peer),
            None => {
                // The one other role that answers, if there is exactly one.
                let answering: Vec<&str> = roles
                    .iter()
                    .filter(|(n, r)| {
                        n != role
                            && r.steps.iter().flatten().any(|s| {
                                matches!(
                                    s,
                                    RawStep::Answer(_) | RawStep::Reject(_) | RawStep::Ring(_)
                                )
                            })
                    })
                    .map(|(n, _)| n.as_str())
                    .collect();
                match answering.as_slice() {
                    [one] => Some((*one).to_owned()),
                    _ => {
                        cx.error(
                            At::Value(p.key("to")),
                            "`{peer}` needs `peer: <role>`: the role whose accounts are called",
                            (!answering.is_empty())
                                .then(|| format!("one of: {}", answering.join(", "))),
                        );
                        peer_ok = false;
                        None
                    }
                }
            }
        }
    } else {
        if let Some(peer) = &peer {
            cx.at_key(
                &p.key("peer"),
                format!("`peer: {peer}` is set, but `to` does not use `{{peer}}`"),
                Some("write the peer into the URI, like `to: \"sip:{peer}@{domain}\"`".into()),
            );
            peer_ok = false;
        }
        None
    };
    if let Some(peer) = &peer {
        if let Some(ri) = roles.iter().position(|(n, _)| n == peer) {
            let sel = &selections[ri];
            if sel.ok && sel.accounts.is_empty() {
                cx.at_value(
                    &p.key("to"),
                    format!("the call pairs with role `{peer}`, which has no accounts"),
                );
                peer_ok = false;
            }
        }
    }
    peer_ok.then_some(CallStep {
        to,
        peer,
        timeout,
        max_redirects,
    })
}

/// A URI that asks for TLS (RFC 3261 §19.1, §26.2.2): a `sips:` scheme or
/// `transport=tls`; which of them.
fn needs_tls(uri: &str) -> Option<&'static str> {
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("sips:") {
        Some("sips:")
    } else if lower.contains(";transport=tls") {
        Some("transport=tls")
    } else {
        None
    }
}

/// `expect: { hears: [...] }`: roles that play a party tone, not `role` itself, each once.
fn hears(
    cx: &mut Ctx<'_>,
    p: &Path,
    names: &OneOrMany<String>,
    role: &str,
    roles: &[(String, RawRole)],
) -> Option<Vec<ConferenceParty>> {
    let mut out: Vec<ConferenceParty> = Vec::new();
    let mut ok = true;
    if names.as_slice().is_empty() {
        cx.at_value(p, "`hears` names nobody");
        return None;
    }
    let players = party_roles(roles);
    for (i, name) in names.as_slice().iter().enumerate() {
        let ip = if names.is_list() {
            p.index(i)
        } else {
            p.clone()
        };
        let Some(name) = cx.text(&ip, &Some(name.clone())) else {
            ok = false;
            continue;
        };
        let name = name.trim().to_owned();
        let error = if name == role {
            Some((
                format!("role `{role}` cannot expect to hear itself: its own party tone heard back fails the step as an echo"),
                Some("name the other parties only".into()),
            ))
        } else if out.iter().any(|c| c.role == name) {
            Some((format!("`{name}` is named twice"), None))
        } else if !roles.iter().any(|(n, _)| *n == name) {
            Some((
                format!("there is no role `{name}`"),
                Some(if players.is_empty() {
                    "no role plays a party tone (`play: { party: true }`)".to_owned()
                } else {
                    format!("the roles playing a party tone: {}", players.join(", "))
                }),
            ))
        } else {
            match conference_party(&name, roles) {
                Some(c) => {
                    out.push(c);
                    None
                }
                None if players.contains(&name.as_str()) => Some((
                    format!("role `{name}` has no party tone left: the party tones tell at most {MAX_PARTIES} apart"),
                    None,
                )),
                None => Some((
                    format!("role `{name}` plays no party tone, so it cannot be heard"),
                    Some(format!("give `{name}` a step `play: {{ party: true }}`")),
                )),
            }
        };
        if let Some((message, hint)) = error {
            cx.error(At::Value(ip), message, hint);
            ok = false;
        }
    }
    ok.then_some(out)
}

fn frequencies(cx: &mut Ctx<'_>, p: &Path, tone: &OneOrMany<String>) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in tone.as_slice().iter().enumerate() {
        let ip = if tone.is_list() {
            p.index(i)
        } else {
            p.clone()
        };
        match cx.parse::<Frequencies>(&ip, &Some(item.clone())) {
            Some(f) => {
                for hz in f.0.iter().map(|f| f.hz()) {
                    if let Some(message) = crate::media::tone_range_error(hz) {
                        cx.at_value(&ip, message);
                        ok = false;
                    }
                    out.push(hz);
                }
            }
            None => ok = false,
        }
    }
    if ok && out.is_empty() {
        cx.at_value(p, "no frequency: write one (440Hz) or two (350+440Hz)");
        return None;
    }
    if ok && out.len() > 2 {
        cx.at_value(
            p,
            format!(
                "{} frequencies: a tone is single (440Hz) or dual (350+440Hz)",
                out.len()
            ),
        );
        return None;
    }
    ok.then_some(out)
}

/// The roles that play a conference party tone (`play: { party: true }`), in the order the
/// scenario lists them: the i-th plays
/// [`PARTY_HZ`](crate::media::conference::PARTY_HZ)`[i]`.
fn party_roles(roles: &[(String, RawRole)]) -> Vec<&str> {
    roles
        .iter()
        .filter(|(_, role)| {
            role.steps.iter().flatten().any(|s| match s {
                RawStep::Play(items) => items.iter().any(|i| i.party.is_some()),
                _ => false,
            })
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// `role`'s conference party, if it plays a party tone (and the plan has one left for it).
fn conference_party(role: &str, roles: &[(String, RawRole)]) -> Option<ConferenceParty> {
    let index = party_roles(roles).iter().position(|r| *r == role)?;
    Some(ConferenceParty {
        role: role.to_owned(),
        party: Party::new(index)?,
    })
}

fn validate_play(
    cx: &mut Ctx<'_>,
    p: &Path,
    items: &[RawPlay],
    role: &str,
    roles: &[(String, RawRole)],
) -> Option<Vec<PlayItem>> {
    let mut out = Vec::new();
    let mut ok = true;
    if items.is_empty() {
        cx.at_value(p, "`play` has nothing to play");
        return None;
    }
    let many = items.len() > 1;
    for (i, item) in items.iter().enumerate() {
        let ip = if many { p.index(i) } else { p.clone() };
        match play_item(cx, &ip, item, role, roles) {
            Some(PlayItem::Party(_)) if many => {
                cx.at_key(
                    &ip.key("party"),
                    "a party tone plays until the call ends, alone: it cannot be part of a list",
                    Some("play: { party: true }".into()),
                );
                ok = false;
            }
            Some(PlayItem::Signature) if many => {
                cx.at_key(
                    &ip.key("signature"),
                    "a signature plays until the call ends, alone: it cannot be part of a list",
                    Some("play: { signature: true }".into()),
                );
                ok = false;
            }
            Some(PlayItem::Tone { duration: None, .. }) if i + 1 < items.len() => {
                cx.at_key(
                    &ip.key("tone"),
                    "a tone without `duration` plays until the call ends, so the items after it never play",
                    Some("give it a `duration`, or move it to the end".into()),
                );
                ok = false;
            }
            Some(it) => out.push(it),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn play_item(
    cx: &mut Ctx<'_>,
    p: &Path,
    item: &RawPlay,
    role: &str,
    roles: &[(String, RawRole)],
) -> Option<PlayItem> {
    let kinds: Vec<&str> = [
        ("tone", item.tone.is_some()),
        ("wav", item.wav.is_some()),
        ("silence", item.silence.is_some()),
        ("signature", item.signature.is_some()),
        ("party", item.party.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    match kinds.as_slice() {
        [] => {
            cx.at_key(
                p,
                "`play` needs one of `tone`, `wav`, `silence` or `signature`",
                None,
            );
            return None;
        }
        [_] => {}
        [_, second, ..] => {
            cx.at_key(
                &p.key(second),
                format!(
                    "`{}` and `{second}` in one item: use a list to play one after the other",
                    kinds[0]
                ),
                Some("play: [ { tone: 440Hz, duration: 1s }, { silence: 500ms } ]".into()),
            );
            return None;
        }
    }
    if item.tone.is_none() {
        for (k, v) in [("level", &item.level), ("duration", &item.duration)] {
            if v.is_some() {
                cx.at_key(
                    &p.key(k),
                    format!("`{k}` applies to a tone, not to `{}`", kinds[0]),
                    None,
                );
            }
        }
    }
    if let Some(tone) = &item.tone {
        let freqs = frequencies(cx, &p.key("tone"), tone);
        let level = cx
            .parse::<Dbfs>(&p.key("level"), &item.level)
            .map_or(DEFAULT_LEVEL_DBFS, |l| l.0);
        let duration = cx.duration(&p.key("duration"), &item.duration);
        let freqs = freqs?;
        let tone = match freqs.as_slice() {
            [f] => Tone::single(*f, level),
            [a, b] => Tone::dual(*a, *b, level),
            _ => return None,
        };
        match tone {
            Ok(tone) => Some(PlayItem::Tone { tone, duration }),
            Err(e) => {
                cx.at_value(&p.key("tone"), e);
                None
            }
        }
    } else if let Some(path) = cx.text(&p.key("wav"), &item.wav) {
        match (cx.inputs.files)(&path) {
            Ok(_) => Some(PlayItem::Wav { path }),
            Err(reason) => {
                cx.at_value(
                    &p.key("wav"),
                    format!("cannot read the WAV file `{path}`: {reason}"),
                );
                None
            }
        }
    } else if item.silence.is_some() {
        cx.duration(&p.key("silence"), &item.silence)
            .map(PlayItem::Silence)
    } else if item.party.is_some() {
        if !cx.flag(&p.key("party"), &item.party)? {
            cx.at_value(&p.key("party"), "`party: false` plays nothing");
            return None;
        }
        match conference_party(role, roles) {
            Some(c) => Some(PlayItem::Party(c.party)),
            None => {
                cx.at_key(
                    &p.key("party"),
                    format!(
                        "role `{role}` would be conference party {}: the party tones tell at most {MAX_PARTIES} apart",
                        party_roles(roles).len()
                    ),
                    Some(format!("keep {MAX_PARTIES} roles or fewer with `play: {{ party: true }}`")),
                );
                None
            }
        }
    } else if item.signature.is_some() {
        match cx.flag(&p.key("signature"), &item.signature)? {
            true => Some(PlayItem::Signature),
            false => {
                cx.at_value(&p.key("signature"), "`signature: false` plays nothing");
                None
            }
        }
    } else {
        None
    }
}

fn validate_expect(
    cx: &mut Ctx<'_>,
    p: &Path,
    e: &RawExpect,
    role: &str,
    roles: &[(String, RawRole)],
) -> Option<Expectation> {
    let kinds: Vec<&str> = [
        ("tone", e.tone.is_some()),
        ("silence", e.silence.is_some()),
        ("speech", e.speech.is_some()),
        ("prompt_ends", e.prompt_ends.is_some()),
        ("audio", e.audio.is_some()),
        ("held", e.held.is_some()),
        ("signature", e.signature.is_some()),
        ("hears", e.hears.is_some()),
        ("answered_by", e.answered_by.is_some()),
        ("pesq", e.pesq.is_some()),
        ("matches", e.matches.is_some()),
        ("dtmf", e.dtmf.is_some()),
        ("ringing", e.ringing.is_some()),
        ("final", e.final_code.is_some()),
        ("answered", e.answered.is_some()),
        ("redirected_to", e.redirected_to.is_some()),
        ("transferred", e.transferred.is_some()),
        ("replaced", e.replaced.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    let kind = match kinds.as_slice() {
        [] => {
            cx.at_key(
                p,
                "`expect` needs one of `tone`, `silence`, `speech`, `prompt_ends`, `audio`, `held`, `signature`, `answered_by`, `hears`, `pesq`, `matches`, `dtmf`, `ringing`, `final`, `answered`, `redirected_to`, `transferred` or `replaced`",
                None,
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            cx.at_key(
                &p.key(second),
                format!("`{first}` and `{second}` in one `expect`: write one step for each"),
                None,
            );
            return None;
        }
    };
    if kind != "tone" {
        for (k, v) in [
            ("min_snr", &e.min_snr),
            ("min_duration", &e.min_duration),
            ("max_gap", &e.max_gap),
        ] {
            if v.is_some() {
                cx.at_key(
                    &p.key(k),
                    format!("`{k}` applies to `expect: {{ tone }}`, not to `{kind}`"),
                    None,
                );
            }
        }
    }
    if kind != "matches" && e.min_similarity.is_some() {
        cx.at_key(
            &p.key("min_similarity"),
            format!("`min_similarity` applies to `expect: {{ matches }}`, not to `{kind}`"),
            None,
        );
    }
    let within = |cx: &mut Ctx<'_>, default| cx.duration_or(&p.key("within"), &e.within, default);
    let must_be_true = |cx: &mut Ctx<'_>, key: &str, v: &Option<String>| -> Option<()> {
        match cx.flag(&p.key(key), v)? {
            true => Some(()),
            false => {
                cx.error(
                    At::Value(p.key(key)),
                    format!("`{key}: false` expects nothing"),
                    Some("remove the step, or expect a `final` code".into()),
                );
                None
            }
        }
    };
    Some(match kind {
        "tone" => {
            let frequencies = frequencies(cx, &p.key("tone"), e.tone.as_ref()?);
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            let min_snr = cx
                .parse::<Decibels>(&p.key("min_snr"), &e.min_snr)
                .unwrap_or(Decibels(DEFAULT_MIN_SNR_DB));
            let min_duration =
                cx.duration_or(&p.key("min_duration"), &e.min_duration, DEFAULT_MIN_TONE);
            if min_duration > within && e.within.is_some() {
                cx.at_value(
                    &p.key("min_duration"),
                    "`min_duration` is longer than `within`: it can never pass",
                );
            }
            let max_gap = cx.duration_or(&p.key("max_gap"), &e.max_gap, DEFAULT_MAX_GAP);
            if max_gap < MIN_GAP {
                cx.at_value(
                    &p.key("max_gap"),
                    format!(
                        "`max_gap` must be at least {} ms: shorter dropouts are not measured",
                        MIN_GAP.as_millis()
                    ),
                );
            }
            Expectation::Tone {
                frequencies: frequencies?,
                within,
                min_snr,
                min_duration,
                max_gap,
            }
        }
        "silence" => {
            let duration = cx.duration(&p.key("silence"), &e.silence);
            Expectation::Silence {
                duration: duration?,
                within: within(cx, DEFAULT_EXPECT_WITHIN),
            }
        }
        "speech" => {
            let t = must_be_true(cx, "speech", &e.speech);
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            t?;
            Expectation::Speech { within }
        }
        "prompt_ends" => {
            let t = must_be_true(cx, "prompt_ends", &e.prompt_ends);
            let within = within(cx, DEFAULT_SIGNALLING_WITHIN);
            t?;
            Expectation::PromptEnds { within }
        }
        "audio" => {
            let t = must_be_true(cx, "audio", &e.audio);
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            t?;
            Expectation::Audio { within }
        }
        "held" => {
            let t = must_be_true(cx, "held", &e.held);
            let within = within(cx, DEFAULT_SIGNALLING_WITHIN);
            t?;
            Expectation::Held { within }
        }
        "answered_by" => {
            // The slot is set by `validate_step`, which sees every role.
            cx.text(&p.key("answered_by"), &e.answered_by)?;
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            if e.within.is_some() && within < SIGNATURE_MIN_WITHIN {
                cx.at_value(
                    &p.key("within"),
                    format!(
                        "a signature needs {} s to be heard twice: `within` must be at least that",
                        SIGNATURE_MIN_WITHIN.as_secs_f64()
                    ),
                );
            }
            Expectation::Signature {
                from: SignatureFrom::Party(0),
                within,
            }
        }
        "signature" => {
            let from = match cx.text(&p.key("signature"), &e.signature) {
                Some(w) => match w.trim() {
                    "peer" => Some(SignatureFrom::Peer),
                    "echo" => Some(SignatureFrom::Echo),
                    other => {
                        cx.error(
                            At::Value(p.key("signature")),
                            format!("'{other}' is not whose signature to hear"),
                            Some("`signature: peer` (the far end's) or `signature: echo` (our own, sent back)".into()),
                        );
                        None
                    }
                },
                None => None,
            };
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            if e.within.is_some() && within < SIGNATURE_MIN_WITHIN {
                cx.at_value(
                    &p.key("within"),
                    format!(
                        "a signature needs {} s to be heard twice: `within` must be at least that",
                        SIGNATURE_MIN_WITHIN.as_secs_f64()
                    ),
                );
            }
            Expectation::Signature {
                from: from?,
                within,
            }
        }
        "hears" => {
            let within = within(cx, DEFAULT_HEARS_WITHIN);
            if within < HEARS_MIN_WITHIN {
                cx.at_value(
                    &p.key("within"),
                    format!(
                        "a party is heard after {} s of its tone: `within` must be at least that",
                        HEARS_MIN_WITHIN.as_secs_f64()
                    ),
                );
            }
            let parties = hears(cx, &p.key("hears"), e.hears.as_ref()?, role, roles)?;
            Expectation::Hears {
                parties,
                own: conference_party(role, roles),
                within,
            }
        }
        "pesq" => {
            let raw = e.pesq.as_ref()?;
            let q = p.key("pesq");
            let reference = match cx.text(&q.key("reference"), &raw.reference) {
                Some(path) => match (cx.inputs.files)(&path) {
                    Ok(_) => Some(path),
                    Err(reason) => {
                        cx.at_value(
                            &q.key("reference"),
                            format!("cannot read the WAV file `{path}`: {reason}"),
                        );
                        None
                    }
                },
                None => {
                    cx.at_key(&q, "`pesq` needs a `reference` WAV file", None);
                    None
                }
            };
            let (lo, hi) = crate::media::pesq::MIN_RANGE;
            let min = match cx.parse::<f64>(&q.key("min"), &raw.min) {
                Some(m) if (lo..=hi).contains(&m) => Some(m),
                Some(m) => {
                    cx.at_value(
                        &q.key("min"),
                        format!("a PESQ `min` of {m} is outside {lo}–{hi} (raw P.862 scale)"),
                    );
                    None
                }
                None => {
                    if raw.min.is_none() {
                        cx.at_key(&q, "`pesq` needs a `min` score, like `min: 3.5`", None);
                    }
                    None
                }
            };
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            Expectation::Pesq {
                reference: reference?,
                min: min?,
                within,
            }
        }
        "matches" => {
            let q = p.key("matches");
            let reference =
                cx.text(&q, &e.matches)
                    .and_then(|path| match (cx.inputs.files)(&path) {
                        Ok(_) => Some(path),
                        Err(reason) => {
                            cx.at_value(&q, format!("cannot read the WAV file `{path}`: {reason}"));
                            None
                        }
                    });
            let min_similarity = match cx.parse::<f64>(&p.key("min_similarity"), &e.min_similarity)
            {
                Some(m) if m > 0.0 && m <= 1.0 => Some(m),
                Some(m) => {
                    cx.at_value(
                        &p.key("min_similarity"),
                        format!(
                            "a `min_similarity` of {m} is outside 0–1 (1 is the same waveform)"
                        ),
                    );
                    None
                }
                None if e.min_similarity.is_none() => Some(DEFAULT_MIN_SIMILARITY),
                None => None,
            };
            let within = within(cx, DEFAULT_EXPECT_WITHIN);
            if within > crate::media::matching::MAX_WITHIN {
                cx.at_value(
                    &p.key("within"),
                    format!(
                        "`within` of `matches` is at most {} s: the step records that long plus the reference",
                        crate::media::matching::MAX_WITHIN.as_secs()
                    ),
                );
            }
            Expectation::Matches {
                reference: reference?,
                min_similarity: min_similarity?,
                within,
            }
        }
        "dtmf" => {
            let d = digits(cx, &p.key("dtmf"), &e.dtmf);
            Expectation::Dtmf {
                digits: d?,
                within: within(cx, DEFAULT_SIGNALLING_WITHIN),
            }
        }
        "ringing" => {
            let t = must_be_true(cx, "ringing", &e.ringing);
            let within = within(cx, DEFAULT_SIGNALLING_WITHIN);
            t?;
            Expectation::Ringing { within }
        }
        "final" => {
            let code = cx.status_code(&p.key("final"), &e.final_code, 200..=699);
            Expectation::Final {
                code: code?,
                within: within(cx, DEFAULT_FINAL_WITHIN),
            }
        }
        "transferred" => {
            let t = must_be_true(cx, "transferred", &e.transferred);
            let within = within(cx, DEFAULT_TRANSFER_WITHIN);
            t?;
            Expectation::Transferred { within }
        }
        "replaced" => {
            let t = must_be_true(cx, "replaced", &e.replaced);
            let within = within(cx, DEFAULT_TRANSFER_WITHIN);
            t?;
            Expectation::Replaced { within }
        }
        "redirected_to" => {
            let within = within(cx, DEFAULT_FINAL_WITHIN);
            let text = cx.text(&p.key("redirected_to"), &e.redirected_to)?;
            let uri = complete_uri(&text, "{domain}").unwrap_or_default();
            let places = [Placeholder::Peer, Placeholder::User, Placeholder::Domain];
            match Template::parse(&uri, &places) {
                Ok(target) => Expectation::RedirectedTo { target, within },
                Err(e) => {
                    template_error(cx, &p.key("redirected_to"), &e);
                    return None;
                }
            }
        }
        _ => {
            let t = must_be_true(cx, "answered", &e.answered);
            let within = within(cx, DEFAULT_FINAL_WITHIN);
            t?;
            Expectation::Answered { within }
        }
    })
}

fn validate_load(cx: &mut Ctx<'_>, p: &Path, l: &RawLoad) -> Option<Load> {
    let ramp_up = cx.duration_or(&p.key("ramp_up"), &l.ramp_up, Duration::ZERO);
    let total = cx.positive(&p.key("total_calls"), &l.total_calls, "`total_calls`");
    let duration = cx.duration(&p.key("duration"), &l.duration);
    if duration.is_some_and(|d| d.is_zero()) {
        cx.at_value(&p.key("duration"), "`duration` must be longer than 0s");
    }
    let end = match (total, duration) {
        (Some(n), Some(d)) => Some(End::CallsOrAfter(n, d)),
        (Some(n), None) => Some(End::Calls(n)),
        (None, Some(d)) => Some(End::After(d)),
        (None, None) => None,
    };
    let unbounded = l.total_calls.is_none() && l.duration.is_none();
    match (&l.rate, &l.concurrent) {
        (Some(_), Some(_)) => {
            cx.at_key(
                &p.key("concurrent"),
                "`rate` (open model) and `concurrent` (closed model) exclude each other",
                Some(
                    "`rate` starts calls on a schedule; `concurrent` keeps a number of calls up"
                        .into(),
                ),
            );
            None
        }
        (None, None) => {
            cx.at_key(
                p,
                "`load` needs a `rate` (open model, like 20/s) or `concurrent` (closed model, like 50)",
                None,
            );
            None
        }
        (Some(_), None) => {
            let rate = cx.parse::<units::Rate>(&p.key("rate"), &l.rate);
            let max_concurrent = cx
                .positive(
                    &p.key("max_concurrent"),
                    &l.max_concurrent,
                    "`max_concurrent`",
                )
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            if unbounded {
                cx.at_key(
                    &p.key("rate"),
                    "a `rate` needs an end: `total_calls` or `duration`",
                    Some("add `total_calls: 1000` or `duration: 5m`".into()),
                );
            }
            Some(Load::Open {
                rate: rate?,
                ramp_up,
                end: end?,
                max_concurrent,
                shard: Shard::WHOLE,
            })
        }
        (None, Some(_)) => {
            let concurrent = cx
                .positive(&p.key("concurrent"), &l.concurrent, "`concurrent`")
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            if l.max_concurrent.is_some() {
                cx.at_key(
                    &p.key("max_concurrent"),
                    "`max_concurrent` caps the open model (`rate`); `concurrent` is already the cap",
                    None,
                );
            }
            if unbounded {
                cx.at_key(
                    &p.key("concurrent"),
                    "`concurrent` needs an end: `total_calls` or `duration`",
                    Some("add `total_calls: 1000` or `duration: 5m`".into()),
                );
            }
            Some(Load::Closed {
                concurrent: concurrent?,
                ramp_up,
                end: end?,
            })
        }
    }
}

fn validate_thresholds(cx: &mut Ctx<'_>, p: &Path, raw: &RawScenario, rtp: bool) -> Vec<Threshold> {
    let mut out = Vec::new();
    let Some(map) = &raw.thresholds else {
        return out;
    };
    for (key, conditions) in &map.0 {
        let kp = p.key(key);
        let metric = match key.parse::<MetricRef>() {
            Ok(m) if !rtp && m.metric.needs_rtp() => {
                cx.at_key(
                    &kp,
                    format!("`{key}` is measured on RTP, but `media: {{ rtp: false }}` opens none"),
                    None,
                );
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                let hint = e.hint();
                cx.at_key(&kp, e, hint);
                None
            }
        };
        for (i, c) in conditions.as_slice().iter().enumerate() {
            let cp = if conditions.is_list() {
                kp.index(i)
            } else {
                kp.clone()
            };
            let Some(text) = cx.text(&cp, &Some(c.clone())) else {
                continue;
            };
            let condition = match text.parse::<Condition>() {
                Ok(c) => c,
                Err(e) => {
                    let hint = e.hint();
                    cx.error(At::Value(cp), e.to_string(), hint);
                    continue;
                }
            };
            if let Some(metric) = metric {
                match Threshold::new(metric, condition) {
                    Ok(t) => out.push(t),
                    Err(e) => cx.at_value(&cp, e),
                }
            }
        }
    }
    out
}
