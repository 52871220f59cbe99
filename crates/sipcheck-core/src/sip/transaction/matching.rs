//! Matching helpers (RFC 3261 §17.1.3 and §17.2.3) that work on the raw header text, so that
//! matching an incoming message does not allocate.

use bytesstr::BytesStr;

use crate::sip::msg::{Message, Name};

/// The RFC 3261 branch prefix (§8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// The key a server transaction is indexed under.
#[derive(Debug)]
pub(crate) enum ServerKey<'a> {
    /// An RFC 3261 branch (starting with the magic cookie).
    Branch(&'a str),
    /// An RFC 2543 request (no magic cookie): Call-ID, CSeq number, From tag and top Via,
    /// joined. Built only for such requests, which are rare.
    Legacy(String),
}

impl ServerKey<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ServerKey::Branch(b) => b,
            ServerKey::Legacy(s) => s,
        }
    }
}

/// The key for a request, per §17.2.3.
pub(crate) fn server_key(request: &Message) -> ServerKey<'_> {
    match request.branch() {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => ServerKey::Branch(branch),
        _ => {
            let from_tag = request.from_tag();
            // NUL cannot occur in a branch token, so legacy keys never collide with branches.
            ServerKey::Legacy(format!(
                "\0{}\0{}\0{}\0{}",
                request.call_id(),
                request.cseq(),
                from_tag.as_deref().unwrap_or(""),
                top_via(request).unwrap_or("")
            ))
        }
    }
}

/// The topmost Via value, as written (the first value of the first Via header line).
/// [`server_key`] as owned text, sharing the request's buffer when it is a branch.
pub(crate) fn server_key_shared(request: &Message) -> BytesStr {
    match server_key(request) {
        ServerKey::Branch(branch) => request
            .branch_shared()
            .unwrap_or_else(|| BytesStr::from(branch)),
        ServerKey::Legacy(key) => BytesStr::from(key),
    }
}

pub(crate) fn top_via(message: &Message) -> Option<&str> {
    let first = message.header(&Name::VIA)?;
    // Bytes, not chars: both delimiters are ASCII, and no byte of a multi-byte character is.
    let mut quoted = false;
    for (i, c) in first.bytes().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b',' if !quoted => return Some(first[..i].trim()),
            _ => {}
        }
    }
    Some(first.trim())
}

/// The sent-by part (`host[:port]`) of a raw Via value such as
/// `SIP/2.0/UDP host:5060;branch=…`.
pub(crate) fn sent_by(via: &str) -> &str {
    let end = via.find([';', ',']).unwrap_or(via.len());
    let head = &via[..end];
    // Skip `SIP / 2.0 / UDP` (white space is allowed around the slashes).
    let after_proto = match head.rfind('/') {
        Some(slash) => head[slash + 1..].trim_start(),
        None => head,
    };
    // The transport token ends at the first white space; the rest is sent-by.
    match after_proto.find(char::is_whitespace) {
        Some(ws) => after_proto[ws..].trim(),
        None => "",
    }
}

/// Compare two sent-by values, ignoring case and white space (around the colon).
pub(crate) fn sent_by_eq(a: &str, b: &str) -> bool {
    let mut a = a.bytes().filter(|c| !c.is_ascii_whitespace());
    let mut b = b.bytes().filter(|c| !c.is_ascii_whitespace());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

/// The sent-by of a message's top Via ("" when there is none).
pub(crate) fn message_sent_by(message: &Message) -> &str {
    top_via(message).map(sent_by).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_by_is_found_in_vias() {
        assert_eq!(
            sent_by("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport"),
            "10.0.0.1:5060"
        );
        assert_eq!(
            sent_by("SIP / 2.0 / TCP  host.example ;branch=x"),
            "host.example"
        );
        assert_eq!(sent_by("SIP/2.0/UDP [::1]:5062"), "[::1]:5062");
        assert!(sent_by_eq("Host.Example : 5060", "host.example:5060"));
        assert!(!sent_by_eq("host:5060", "host:5061"));
    }
}
