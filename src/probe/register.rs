//! `sipcheck register`: register (answering the digest challenge), optionally unregister.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use sipcheck_core::ids::IdGen;
use sipcheck_core::scenario::model::Account;
use sipcheck_core::sip::auth::Password;
use sipcheck_core::sip::uri::{host_literal, SipTarget};
use sipcheck_core::ua::agent::probe::UNREGISTER_GRACE;
use sipcheck_core::ua::agent::Agent;
use sipcheck_core::ua::register::LocalEnd;
use sipcheck_core::ua::registration::RegistrationEvent;

use super::args::{parse_registrar, parse_server, NetArgs};
use super::oneshot::Oneshot;
use super::{connect, Handshakes, ProbeError, Verdict};
use crate::drive::{os_seed, registration};
use sipcheck_core::stats::ladder::{format_rung, millis, Rung};

/// What to register: the options of `sipcheck register`, read by clap (each field's doc is
/// its help text, as printed: `HOST[:PORT]` is no link).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// Registrar, HOST[:PORT]; sips:HOST[:PORT] registers a sips: address of record over
    /// TLS (RFC 5630).
    #[arg(long, env = "SIP_SERVER", value_name = "HOST[:PORT]", value_parser = parse_registrar)]
    pub server: String,
    /// User name (address-of-record user part and digest username).
    #[arg(long, env = "SIP_USER")]
    pub user: String,
    /// Password for digest authentication (prefer the SIP_PASSWORD environment variable).
    #[arg(long, env = "SIP_PASSWORD", hide_env_values = true, default_value = "")]
    pub password: Password,
    /// Domain of the address of record (default: the server's host).
    #[arg(long)]
    pub domain: Option<String>,
    /// Requested registration lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,
    /// Remove the binding again (Expires: 0) after registering: the default, unless --keep.
    #[arg(long, conflicts_with = "keep")]
    pub unregister: bool,
    /// Leave the binding in place at the registrar (default: remove it before exiting).
    #[arg(long)]
    pub keep: bool,
    /// Remove every binding of the address of record, ours and others' (Contact: * with
    /// Expires: 0, RFC 3261 §10.2.2), without registering.
    #[arg(long, conflicts_with_all = ["keep", "unregister"])]
    pub unregister_all: bool,
    /// Send via this outbound proxy (HOST[:PORT]).
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub proxy: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// The result of a registration probe.
#[derive(Debug, Serialize)]
pub struct RegisterReport {
    /// Always `"register"`.
    pub command: &'static str,
    /// The address of record.
    pub aor: String,
    /// Where requests were sent.
    pub server: String,
    /// Final status of the registration.
    pub status: Option<u16>,
    /// Its reason phrase.
    pub reason: Option<String>,
    /// First REGISTER sent to the final 2xx (challenge round included), in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Lifetime granted.
    pub expires: Option<u32>,
    /// Bindings listed by the registrar in its 200.
    pub bindings: Vec<String>,
    /// Whether the binding was removed again (`None` with `--keep`, or when registering
    /// failed); with `--unregister-all`, whether every binding was removed.
    pub unregistered: Option<bool>,
    /// True with `--keep`: the binding was left at the registrar.
    pub kept: bool,
    /// True with `--unregister-all`: `Contact: *` removed every binding of the AOR.
    pub unregister_all: bool,
    /// Round trip of the un-REGISTER, in milliseconds.
    pub unregister_rtt_ms: Option<f64>,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Why it failed.
    pub error: Option<String>,
    /// The handshakes of the connection (TLS, WS, WSS).
    #[serde(flatten)]
    pub handshake: Handshakes,
    /// Every message sent and received.
    pub ladder: Vec<Rung>,
}

/// Register `args.user` (and unregister when asked): one registration of the core's agent,
/// every REGISTER bounded by `--timeout` (the removal of the binding given
/// [`UNREGISTER_GRACE`] of its own past it, when that is nearer).
pub async fn run(args: &RegisterArgs) -> Result<RegisterReport, ProbeError> {
    if args.user.is_empty() {
        return Err(ProbeError::Invalid("--user must not be empty".into()));
    }
    // `sips:HOST[:PORT]`: a sips: address of record, over TLS (RFC 5630 §3.1.2).
    let (server, sips) = match args.server.trim().get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sips:") => (&args.server.trim()[5..], true),
        _ => (args.server.as_str(), false),
    };
    let net = &if sips {
        args.net.network_for(&SipTarget::parse(&args.server)?)?
    } else {
        args.net.network()
    };
    let hop = args.proxy.as_deref().unwrap_or(server);
    let (t, peer) = connect(hop, net).await?;
    let handshake = Handshakes::of(&t);
    let domain = match &args.domain {
        Some(d) => host_literal(d).into_owned(),
        None => host_of(server),
    };
    let local = LocalEnd {
        transport: t.kind(),
        addr: t.local_addr(),
        routes: args
            .proxy
            .as_ref()
            .map(|_| vec![format!("<sip:{peer};lr>")])
            .unwrap_or_default(),
    };
    let mut shot = Oneshot::new(t, local, peer, args.net.timers(), net.timeout, sips);
    let account = Account {
        user: args.user.clone(),
        password: args.password.clone(),
        domain,
    };
    let mut report = RegisterReport {
        command: "register",
        aor: format!(
            "{}:{}@{}",
            if sips { "sips" } else { "sip" },
            account.user,
            account.domain
        ),
        server: peer.to_string(),
        status: None,
        reason: None,
        rtt_ms: None,
        expires: None,
        bindings: Vec::new(),
        unregistered: None,
        kept: args.keep,
        unregister_all: args.unregister_all,
        unregister_rtt_ms: None,
        verdict: Verdict::Failed,
        error: None,
        handshake,
        ladder: Vec::new(),
    };
    let ids = IdGen::new(os_seed());

    if args.unregister_all {
        shot.agent.remove_all(Instant::now(), &account, peer, ids);
        for event in events_until(&mut shot, Agent::unregistered).await? {
            match event {
                RegistrationEvent::Unregistered { rtt, remaining } => {
                    report.unregister_rtt_ms = Some(millis(rtt));
                    report.unregistered = Some(remaining.is_empty());
                    if remaining.is_empty() {
                        report.verdict = Verdict::Passed;
                    } else {
                        report.error = Some(format!(
                            "the registrar still lists {} binding(s) after Contact: *",
                            remaining.len()
                        ));
                    }
                    report.bindings = remaining;
                }
                RegistrationEvent::UnregisterFailed { error } => {
                    report.error = Some(registration::describe(&error));
                }
                _ => {}
            }
        }
        report.set_status(&shot.agent, &account.user);
        report.ladder = shot.ladder();
        return Ok(report);
    }

    shot.agent
        .register(Instant::now(), &account, peer, args.expires, false, ids);
    let mut bound = false;
    for event in events_until(&mut shot, |agent| !agent.registering()).await? {
        match event {
            RegistrationEvent::Registered {
                rtt,
                expires,
                bindings,
            } => {
                bound = true;
                report.rtt_ms = Some(millis(rtt));
                report.expires = Some(expires);
                report.bindings = bindings;
                report.verdict = Verdict::Passed;
            }
            RegistrationEvent::Failed { error } => {
                report.error = Some(registration::describe(&error));
            }
            _ => {}
        }
    }
    report.set_status(&shot.agent, &account.user);
    if bound && !args.keep {
        // Safe by default on a real PBX: our binding does not outlive the probe.
        shot.extend_limit(UNREGISTER_GRACE);
        shot.agent.unregister(Instant::now());
        for event in events_until(&mut shot, Agent::unregistered).await? {
            match event {
                RegistrationEvent::Unregistered { rtt, .. } => {
                    report.unregister_rtt_ms = Some(millis(rtt));
                    report.unregistered = Some(true);
                }
                RegistrationEvent::UnregisterFailed { error } => {
                    report.unregistered = Some(false);
                    report.verdict = Verdict::Failed;
                    report.error = Some(format!(
                        "registered, but the binding could not be removed: {}",
                        registration::describe(&error)
                    ));
                }
                _ => {}
            }
        }
    }
    report.ladder = shot.ladder();
    Ok(report)
}

/// Drive the agent until `done`: the registration's events meanwhile.
async fn events_until(
    shot: &mut Oneshot,
    done: impl Fn(&Agent<SocketAddr>) -> bool,
) -> Result<Vec<RegistrationEvent>, ProbeError> {
    let mut events = Vec::new();
    shot.run_until(|agent| {
        events.extend(std::iter::from_fn(|| agent.poll_registration()).map(|(_, e)| e));
        done(agent)
    })
    .await?;
    Ok(events)
}

/// The host part of `host[:port]` (IPv6 literals keep their brackets).
pub(crate) fn host_of(server: &str) -> String {
    if let Ok(addr) = server.parse::<std::net::SocketAddr>() {
        return match addr {
            std::net::SocketAddr::V4(a) => a.ip().to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
    }
    match server.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.contains(':') => host.into(),
        _ => host_literal(server).into_owned(),
    }
}

impl RegisterReport {
    /// The status of the last final response to `user`'s REGISTERs, if one came.
    fn set_status(&mut self, agent: &Agent<SocketAddr>, user: &str) {
        if let Some((code, reason)) = agent.registration_status(user) {
            self.status = Some(code);
            self.reason = Some(reason.to_string());
        }
    }
}

impl RegisterReport {
    /// Human-readable output.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.ladder {
            writeln!(out, "{}", format_rung(r))?;
        }
        self.handshake.write_text(out, &self.server)?;
        if self.unregister_all {
            if self.unregistered == Some(true) {
                writeln!(
                    out,
                    "removed every binding of {} at {} in {:.3} ms",
                    self.aor,
                    self.server,
                    self.unregister_rtt_ms.unwrap_or_default()
                )?;
            }
            for b in &self.bindings {
                writeln!(out, "  still listed: {b}")?;
            }
        } else if self.verdict == Verdict::Passed || self.expires.is_some() {
            writeln!(
                out,
                "registered {} at {} in {:.3} ms (expires {} s)",
                self.aor,
                self.server,
                self.rtt_ms.unwrap_or_default(),
                self.expires.unwrap_or_default()
            )?;
            for b in &self.bindings {
                writeln!(out, "  binding: {b}")?;
            }
        }
        if !self.unregister_all {
            if let Some(true) = self.unregistered {
                writeln!(
                    out,
                    "unregistered in {:.3} ms (the binding is removed; --keep leaves it)",
                    self.unregister_rtt_ms.unwrap_or_default()
                )?;
            } else if self.kept && self.expires.is_some() {
                writeln!(
                    out,
                    "binding kept (--keep): it expires in {} s",
                    self.expires.unwrap_or_default()
                )?;
            }
        }
        match self.verdict {
            Verdict::Passed => writeln!(out, "PASS"),
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => writeln!(
                out,
                "FAIL: {}",
                self.error.as_deref().unwrap_or("registration failed")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn default_domain_is_the_server_host() {
        assert_eq!(host_of("127.0.0.1:5060"), "127.0.0.1");
        assert_eq!(host_of("[::1]:5060"), "[::1]");
        assert_eq!(host_of("pbx.example.com:5080"), "pbx.example.com");
        assert_eq!(host_of("pbx.example.com"), "pbx.example.com");
        assert_eq!(host_of("::1"), "[::1]");
        assert_eq!(host_of("2001:db8::5"), "[2001:db8::5]");
    }
}
