//! `sipcheck register`: register (answering the digest challenge), optionally unregister.

use std::io::Write;

use serde::Serialize;
use sipcheck_core::sip::auth::Credentials;
use sipcheck_core::sip::transaction::TimerConfig;
use sipcheck_core::sip::uri::host_literal;
use sipcheck_core::ua::register::{LocalEnd, Next, RegisterOutcome, RegisterParams, Registration};

use super::client::{Client, TransactError};
use super::{connect, Network, ProbeError, Verdict};
use crate::ladder::{format_rung, millis, Rung};

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterArgs {
    /// Registrar `host[:port]`.
    pub server: String,
    /// Outbound proxy `host[:port]`: every request goes there, with a Route to it.
    pub proxy: Option<String>,
    /// User name (AOR user part and digest username).
    pub user: String,
    /// The password (never printed).
    pub password: String,
    /// AOR domain; the registrar's host when absent.
    pub domain: Option<String>,
    /// Requested binding lifetime.
    pub expires: u32,
    /// Remove the binding after registering.
    pub unregister: bool,
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
    /// Whether `--unregister` removed the binding.
    pub unregistered: Option<bool>,
    /// Round trip of the un-REGISTER, in milliseconds.
    pub unregister_rtt_ms: Option<f64>,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Why it failed.
    pub error: Option<String>,
    /// Every message sent and received.
    pub ladder: Vec<Rung>,
}

/// Register `args.user` (and unregister when asked).
pub async fn run(
    args: &RegisterArgs,
    net: &Network,
    timers: TimerConfig,
) -> Result<RegisterReport, ProbeError> {
    if args.user.is_empty() {
        return Err(ProbeError::Invalid("--user must not be empty".into()));
    }
    let hop = args.proxy.as_deref().unwrap_or(&args.server);
    let (t, peer) = connect(hop, net).await?;
    let domain = match &args.domain {
        Some(d) => host_literal(d).into_owned(),
        None => host_of(&args.server),
    };
    let mut client = Client::new(t, peer, timers);
    let local = LocalEnd {
        transport: client.transport().kind(),
        addr: client.transport().local_addr(),
        routes: args
            .proxy
            .as_ref()
            .map(|_| vec![format!("<sip:{peer};lr>")])
            .unwrap_or_default(),
    };
    let mut reg = Registration::new(
        RegisterParams {
            user: args.user.clone(),
            domain,
            credentials: Credentials::new(args.user.clone(), args.password.clone()),
            expires: args.expires,
        },
        &mut client.ids,
    );
    let mut report = RegisterReport {
        command: "register",
        aor: reg.aor(),
        server: peer.to_string(),
        status: None,
        reason: None,
        rtt_ms: None,
        expires: None,
        bindings: Vec::new(),
        unregistered: None,
        unregister_rtt_ms: None,
        verdict: Verdict::Fail,
        error: None,
        ladder: Vec::new(),
    };

    let first = exchange(&mut client, &mut reg, &local, args.expires).await?;
    report.status = first.status;
    report.reason = first.reason;
    report.rtt_ms = first.rtt_ms;
    report.error = first.error;
    if let Some(RegisterOutcome::Registered { expires, bindings }) = first.outcome {
        report.expires = Some(expires);
        report.bindings = bindings;
        report.verdict = Verdict::Pass;
        if args.unregister {
            let un = exchange(&mut client, &mut reg, &local, 0).await?;
            report.unregister_rtt_ms = un.rtt_ms;
            let removed = matches!(un.outcome, Some(RegisterOutcome::Unregistered { .. }));
            report.unregistered = Some(removed);
            if !removed {
                report.verdict = Verdict::Fail;
                report.error = un.error.or(Some("unregistration failed".into()));
            }
        }
    }
    report.ladder = client.ladder.rungs().to_vec();
    Ok(report)
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

/// What one REGISTER exchange (with its challenge round) came to.
struct ExchangeResult {
    status: Option<u16>,
    reason: Option<String>,
    rtt_ms: Option<f64>,
    error: Option<String>,
    outcome: Option<RegisterOutcome>,
}

/// Run REGISTER (with its challenge round) to a conclusion.
async fn exchange(
    client: &mut Client,
    reg: &mut Registration,
    local: &LocalEnd,
    expires: u32,
) -> Result<ExchangeResult, ProbeError> {
    let started = std::time::Instant::now();
    let mut result = ExchangeResult {
        status: None,
        reason: None,
        rtt_ms: None,
        error: None,
        outcome: None,
    };
    // The state machine stops a challenge loop itself; this bound is a second guard.
    for _ in 0..4 {
        let request = reg.request(expires, local, &mut client.ids);
        let done = match client.transact(request).await {
            Ok(done) => done,
            Err(TransactError::Timeout { timer, elapsed }) => {
                result.error = Some(TransactError::Timeout { timer, elapsed }.to_string());
                return Ok(result);
            }
            Err(TransactError::Transport(e)) => return Err(e.into()),
            Err(e @ TransactError::Request(_)) => return Err(ProbeError::Invalid(e.to_string())),
        };
        result.status = done.response.status();
        result.reason = done.response.reason().map(str::to_string);
        if let Next::Done(outcome) = reg.on_final_response(&done.response) {
            result.rtt_ms = Some(millis(started.elapsed()));
            if let RegisterOutcome::Failed(failure) = &outcome {
                result.error = Some(failure.to_string());
            }
            result.outcome = Some(outcome);
            return Ok(result);
        }
    }
    result.error = Some("too many authentication challenges".into());
    Ok(result)
}

impl RegisterReport {
    /// Human-readable output.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.ladder {
            writeln!(out, "{}", format_rung(r))?;
        }
        if self.verdict == Verdict::Pass || self.expires.is_some() {
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
        if let Some(true) = self.unregistered {
            writeln!(
                out,
                "unregistered in {:.3} ms",
                self.unregister_rtt_ms.unwrap_or_default()
            )?;
        }
        match self.verdict {
            Verdict::Pass => writeln!(out, "PASS"),
            Verdict::Fail => writeln!(
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
