//! `sipcheck options`: is a SIP endpoint alive, and how fast does it answer?

use std::io::Write;

use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use serde::Serialize;
use sipcheck_core::ids::IdGen;
use sipcheck_core::sip::build::{RequestSpec, ViaSpec};
use sipcheck_core::sip::uri::SipTarget;
use sipcheck_core::ua::agent::RequestEvent;
use sipcheck_core::ua::register::LocalEnd;

use super::args::{parse_server, NetArgs};
use super::oneshot::Oneshot;
use super::{connect, Handshakes, ProbeError, Verdict};
use crate::drive::os_seed;
use sipcheck_core::stats::ladder::{millis, Rung};

/// What to probe: the options of `sipcheck options`, read by clap (each field's doc is its
/// help text, as printed: `HOST[:PORT]` is no link).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct OptionsArgs {
    /// The SIP URI to probe, e.g. sip:127.0.0.1:5060 or sip:1001@pbx.example.com.
    #[arg(env = "SIP_TARGET")]
    pub uri: String,
    /// Send via this proxy (HOST[:PORT]); the Request-URI is unchanged.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub proxy: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// The result of an OPTIONS probe.
#[derive(Debug, Serialize)]
pub struct OptionsReport {
    /// Always `"options"`.
    pub command: &'static str,
    /// The Request-URI.
    pub target: String,
    /// Where the request was sent.
    pub server: String,
    /// The final status code, if one arrived.
    pub status: Option<u16>,
    /// Its reason phrase.
    pub reason: Option<String>,
    /// First transmission to final response, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Pass (2xx) or fail.
    pub verdict: Verdict,
    /// Why it failed.
    pub error: Option<String>,
    /// The handshakes of the connection (TLS, WS, WSS).
    #[serde(flatten)]
    pub handshake: Handshakes,
    /// Every message sent and received.
    pub ladder: Vec<Rung>,
}

/// Send OPTIONS to `args.uri` (via `args.proxy` when given) and wait for the final response:
/// one request of the core's agent, bounded by `--timeout`.
pub async fn run(args: &OptionsArgs) -> Result<OptionsReport, ProbeError> {
    let (timers, proxy) = (args.net.timers(), args.proxy.as_deref());
    let target = SipTarget::parse(&args.uri)?;
    let net = args.net.network_for(&target)?;
    let hop = proxy.map_or_else(
        || target.host_port(net.transport.default_port()),
        str::to_string,
    );
    let (t, peer) = connect(&hop, &net).await?;
    let handshake = Handshakes::of(&t);
    let local = LocalEnd {
        transport: t.kind(),
        addr: t.local_addr(),
        routes: Vec::new(),
    };
    let mut shot = Oneshot::new(t, local.clone(), peer, timers, net.timeout, false);
    let mut ids = IdGen::new(os_seed());
    let local = local.addr;
    let branch = ids.branch();
    let call_id = ids.call_id();
    let from = format!("<sip:sipcheck@{local}>;tag={}", ids.tag());
    let to = format!("<{}>", target.uri);
    // RFC 3261 §8.1.1.8: a sips: Request-URI asks for a sips: Contact.
    let contact = if target.is_sips() {
        format!("<sips:sipcheck@{local}>")
    } else {
        format!("<sip:sipcheck@{local}>")
    };
    let request = RequestSpec {
        method: "OPTIONS",
        uri: &target.uri,
        via: ViaSpec {
            transport: net.transport,
            sent_by: local,
            branch: &branch,
            rport: true,
        },
        routes: &[],
        from: &from,
        to: &to,
        call_id: &call_id,
        cseq: 1,
        contact: Some(&contact),
        extra: &[("Accept", "application/sdp")],
        body: None,
    }
    .to_vec();
    let tx = shot
        .agent
        .send_request(Instant::now(), Bytes::from(request), peer)
        .map_err(|e| ProbeError::Invalid(format!("cannot send the request: {e}")))?;
    let mut outcome = None;
    shot.run_until(|agent| {
        while let Some(event) = agent.poll_request_event() {
            match event {
                RequestEvent::Final { tx: t, .. } | RequestEvent::Failed { tx: t, .. }
                    if t == tx =>
                {
                    outcome = Some(event);
                }
                _ => {}
            }
        }
        outcome.is_some()
    })
    .await?;
    let mut report = OptionsReport {
        command: "options",
        target: target.uri.clone(),
        server: peer.to_string(),
        status: None,
        reason: None,
        rtt_ms: None,
        verdict: Verdict::Failed,
        error: None,
        handshake,
        ladder: shot.ladder(),
    };
    match outcome {
        Some(RequestEvent::Final { message, rtt, .. }) => {
            let code = message.status().unwrap_or(0);
            report.status = Some(code);
            report.reason = message.reason().map(str::to_string);
            report.rtt_ms = Some(millis(rtt));
            if (200..300).contains(&code) {
                report.verdict = Verdict::Passed;
            } else {
                report.error = Some(format!(
                    "OPTIONS answered {code} {}",
                    report.reason.as_deref().unwrap_or_default()
                ));
            }
        }
        Some(RequestEvent::Failed { error, .. }) => report.error = Some(error.to_string()),
        Some(RequestEvent::Provisional { .. }) | None => {
            report.error = Some("no final response".into());
        }
    }
    Ok(report)
}

impl OptionsReport {
    /// Human-readable output.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.ladder {
            writeln!(out, "{}", sipcheck_core::stats::ladder::format_rung(r))?;
        }
        self.handshake.write_text(out, &self.server)?;
        if let (Some(code), Some(rtt)) = (self.status, self.rtt_ms) {
            writeln!(
                out,
                "{code} {} from {} in {rtt:.3} ms",
                self.reason.as_deref().unwrap_or_default(),
                self.server
            )?;
        }
        match self.verdict {
            Verdict::Passed => writeln!(out, "PASS"),
            Verdict::Failed | Verdict::ThresholdsFailed | Verdict::Interrupted => writeln!(
                out,
                "FAIL: {}",
                self.error.as_deref().unwrap_or("no final response")
            ),
        }
    }
}
