//! The SIP message trace: with `-v` every SIP message sent and received is printed on stderr
//! (start line, headers and body); with `--trace-sip FILE` every one is written to FILE, each
//! under a line with its wall-clock time, direction, addresses and size (as SIPp's
//! `-trace_msg`). Credentials never appear in either: the digest `response=` and `cnonce=`
//! of `Authorization` and `Proxy-Authorization` are masked (by parsing the header: no
//! password is ever searched for in the text, it never reaches the trace). Control characters
//! a peer put in a message are escaped ([`crate::terminal::escape_controls`]).
//!
//! One trace per process, installed by the command line before anything is sent; the drivers
//! ([`crate::drive::role`], the loops of `answer`, `call`, `register` and `options`, each on
//! its wire) report every message to it.
//! When no trace is installed, reporting a message costs one atomic load.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::terminal::escape_controls;
use sipcheck_core::stats::ladder::Direction;

/// Where the trace goes.
struct SipTrace {
    stderr: bool,
    file: Option<Mutex<BufWriter<File>>>,
}

static TRACE: OnceLock<SipTrace> = OnceLock::new();

/// Install the process's trace: messages on stderr when `stderr`, and in `file` when given.
/// Nothing is installed when neither is asked for; a second call is ignored.
pub fn install(stderr: bool, file: Option<File>) {
    if !stderr && file.is_none() {
        return;
    }
    let _ = TRACE.set(SipTrace {
        stderr,
        file: file.map(|f| Mutex::new(BufWriter::new(f))),
    });
}

/// True when a trace is installed.
pub fn enabled() -> bool {
    TRACE.get().is_some()
}

/// Report one message that went `direction` over `socket`, to or from `peer`.
pub fn on_socket(
    socket: &crate::drive::transport::SipSocket,
    direction: Direction,
    peer: SocketAddr,
    raw: &[u8],
    retransmission: bool,
) {
    if enabled() {
        message(
            direction,
            socket.local_addr(),
            peer,
            socket.kind().via_token(),
            raw,
            retransmission,
        );
    }
}

/// Report one message: `raw` went `direction` between `local` and `peer`.
pub fn message(
    direction: Direction,
    local: SocketAddr,
    peer: SocketAddr,
    transport: &str,
    raw: &[u8],
    retransmission: bool,
) {
    let Some(trace) = TRACE.get() else {
        return;
    };
    let text = mask_credentials(&String::from_utf8_lossy(raw));
    let (verb, from, to) = match direction {
        Direction::Sent => ("sent", local, peer),
        Direction::Received => ("received", peer, local),
    };
    let retrans = if retransmission {
        ", retransmission"
    } else {
        ""
    };
    let head = format!(
        "----- {} {verb} {transport} {from} -> {to} ({} bytes{retrans})",
        humantime::format_rfc3339_micros(SystemTime::now()),
        raw.len()
    );
    let body = text.replace("\r\n", "\n");
    let body = escape_controls(body.trim_end_matches('\n'));
    if trace.stderr {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{head}\n{body}\n");
    }
    if let Some(file) = &trace.file {
        if let Ok(mut file) = file.lock() {
            // Written through at once: a long `answer` can be followed with `tail -f`, and a
            // killed run leaves its trace up to the last message.
            let _ = writeln!(file, "{head}\n{body}\n");
            let _ = file.flush();
        }
    }
}

/// Write out what the trace file holds so far (called before the process exits).
pub fn flush() {
    if let Some(file) = TRACE.get().and_then(|t| t.file.as_ref()) {
        if let Ok(mut file) = file.lock() {
            let _ = file.flush();
        }
    }
}

/// `text` (a SIP message) with the digest `response` and `cnonce` of every `Authorization`
/// and `Proxy-Authorization` header masked; nothing else is changed.
pub fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization")
        {
            out.push_str(&mask_param(&mask_param(line, "response"), "cnonce"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The value of the `name=` parameter of a credentials line replaced with `***`.
fn mask_param(line: &str, name: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(name) {
        let at = search + found;
        search = at + name.len();
        // A parameter name: preceded by a separator, followed by `=`.
        let before = lower[..at].trim_end();
        if !(before.ends_with(',') || before.ends_with(' ') || before.ends_with("digest")) {
            continue;
        }
        let after = &lower[search..];
        let Some(eq) = after.find(|c: char| !c.is_whitespace()) else {
            break;
        };
        if !after[eq..].starts_with('=') {
            continue;
        }
        let value_start = search + eq + 1;
        let value = &line[value_start..];
        let skipped = value.len() - value.trim_start().len();
        let value_start = value_start + skipped;
        let value = &line[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('"') {
            quoted.find('"').map_or(value.len(), |end| end + 2)
        } else {
            value
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        out.push_str(&line[rest..value_start]);
        out.push_str(if value.starts_with('"') {
            "\"***\""
        } else {
            "***"
        });
        rest = value_start + value_len;
        search = rest;
    }
    out.push_str(&line[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_credentials;

    #[test]
    fn the_digest_response_and_cnonce_are_masked_and_nothing_else() {
        let msg = "REGISTER sip:a SIP/2.0\r\n\
                   Authorization: Digest username=\"1001\", realm=\"r\", nonce=\"n0\", uri=\"sip:a\", response=\"0123abcd\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001\r\n\
                   proxy-authorization: Digest response = 99ff ,username=\"1001\"\r\n\
                   Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0\r\n\
                   Subject: lab FAIL 0 e says response=\"keep\"\r\n\r\n";
        let out = mask_credentials(msg);
        assert!(!out.contains("0123abcd"), "{out}");
        assert!(!out.contains("99ff"), "{out}");
        assert!(!out.contains("c0ffee"), "{out}");
        assert!(
            out.contains(
                "response=\"***\", algorithm=MD5, cnonce=\"***\", qop=auth, nc=00000001\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("response = *** ,username"), "{out}");
        assert!(out.contains("nonce=\"n0\""), "{out}");
        // Other headers keep their text, whatever the password.
        assert!(
            out.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Subject: lab FAIL 0 e says response=\"keep\""),
            "{out}"
        );
        assert!(out.contains("username=\"1001\", realm=\"r\""), "{out}");
    }
}
