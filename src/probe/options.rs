//! `sipcheck options`: is a SIP endpoint alive, and how fast does it answer?

use std::io::Write;

use clap::Args;
use serde::Serialize;
use sipcheck_core::sip::build::{RequestSpec, ViaSpec};
use sipcheck_core::sip::uri::SipTarget;

use super::args::{parse_server, NetArgs};
use super::client::{Client, TransactError};
use super::{connect, Network, ProbeError, Verdict};
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
    /// Every message sent and received.
    pub ladder: Vec<Rung>,
}

/// Send OPTIONS to `args.uri` (via `args.proxy` when given) and wait for the final response.
pub async fn run(args: &OptionsArgs) -> Result<OptionsReport, ProbeError> {
    let (net, timers, proxy) = (
        &args.net.network(),
        args.net.timers(),
        args.proxy.as_deref(),
    );
    let target = SipTarget::parse(&args.uri)?;
    let transport = net.transport;
    let net = Network {
        transport: target.transport.unwrap_or(transport),
        local: net.local,
        timeout: net.timeout,
    };
    let hop = proxy.map_or_else(|| target.host_port(5060), str::to_string);
    let (t, peer) = connect(&hop, &net).await?;
    let mut client = Client::new(t, peer, timers);
    client.set_timeout(net.timeout);
    let local = client.transport().local_addr();
    let branch = client.ids.branch();
    let call_id = client.ids.call_id();
    let from = format!("<sip:sipcheck@{local}>;tag={}", client.ids.tag());
    let to = format!("<{}>", target.uri);
    let contact = format!("<sip:sipcheck@{local}>");
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
    let result = client.transact(request).await;
    let mut report = OptionsReport {
        command: "options",
        target: target.uri.clone(),
        server: peer.to_string(),
        status: None,
        reason: None,
        rtt_ms: None,
        verdict: Verdict::Failed,
        error: None,
        ladder: Vec::new(),
    };
    match result {
        Ok(exchange) => {
            let code = exchange.response.status().unwrap_or(0);
            report.status = Some(code);
            report.reason = exchange.response.reason().map(str::to_string);
            report.rtt_ms = Some(millis(exchange.rtt));
            if (200..300).contains(&code) {
                report.verdict = Verdict::Passed;
            } else {
                report.error = Some(format!(
                    "OPTIONS answered {code} {}",
                    report.reason.as_deref().unwrap_or_default()
                ));
            }
        }
        Err(
            e @ (TransactError::Timeout { .. }
            | TransactError::Unreachable { .. }
            | TransactError::Deadline(_)),
        ) => {
            report.error = Some(e.to_string());
        }
        Err(TransactError::Transport(e)) => return Err(e.into()),
        Err(e @ TransactError::Request(_)) => return Err(ProbeError::Invalid(e.to_string())),
    }
    report.ladder = client.ladder.rungs().to_vec();
    Ok(report)
}

impl OptionsReport {
    /// Human-readable output.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.ladder {
            writeln!(out, "{}", sipcheck_core::stats::ladder::format_rung(r))?;
        }
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
