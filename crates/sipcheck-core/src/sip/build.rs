//! Writing outgoing SIP messages.
//!
//! Outgoing messages are written straight into a byte buffer from borrowed parts — a template,
//! not a tree of typed headers to print — because a load generator writes one for every request
//! and response it sends. Requests derived from another message (responses, the ACK of a non-2xx
//! response, CANCEL) copy the header values they must copy byte for byte.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::BufMut;

use super::msg::{tag_param, Message, Name};
use super::transport::Transport;

/// The Via header a request is sent with.
#[derive(Debug, Clone, Copy)]
pub struct ViaSpec<'a> {
    /// The transport the request goes over.
    pub transport: Transport,
    /// The local address and port the request leaves from.
    pub sent_by: SocketAddr,
    /// The branch (with the `z9hG4bK` magic cookie).
    pub branch: &'a str,
    /// Ask for the source port in responses (RFC 3581 `rport`).
    pub rport: bool,
}

/// An outgoing request, as borrowed parts.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpec<'a> {
    /// The method token (e.g. `REGISTER`).
    pub method: &'a str,
    /// The Request-URI.
    pub uri: &'a str,
    /// The Via header.
    pub via: ViaSpec<'a>,
    /// Route headers (a route set, or the outbound proxy), in order.
    pub routes: &'a [String],
    /// The From header value, including its tag.
    pub from: &'a str,
    /// The To header value, including its tag when in a dialog.
    pub to: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq sequence number (the method is `method`).
    pub cseq: u32,
    /// The Contact header value, if any.
    pub contact: Option<&'a str>,
    /// Further headers, in order.
    pub extra: &'a [(&'a str, &'a str)],
    /// Content-Type and body, if any.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// The `User-Agent`/`Server` product token written into messages.
pub const USER_AGENT: &str = concat!("sipcheck/", env!("CARGO_PKG_VERSION"));

impl RequestSpec<'_> {
    /// Append the request to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.line(format_args!("{} {} SIP/2.0", self.method, self.uri));
        w.via(&self.via);
        for route in self.routes {
            w.header("Route", route);
        }
        w.header("Max-Forwards", "70");
        w.header("From", self.from);
        w.header("To", self.to);
        w.header("Call-ID", self.call_id);
        w.line(format_args!("CSeq: {} {}", self.cseq, self.method));
        if let Some(contact) = self.contact {
            w.header("Contact", contact);
        }
        for (name, value) in self.extra {
            w.header(name, value);
        }
        w.header("User-Agent", USER_AGENT);
        w.body(self.body);
    }

    /// The request as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write(&mut out);
        out
    }
}

/// Write a response to `req` (RFC 3261 §8.2.6.2): Via, From, Call-ID and CSeq copied, To
/// copied with `to_tag` added when it has none (`to_tag` is ignored for 100 Trying by callers
/// who pass `None`). `out` is a `Vec<u8>`, or a `BytesMut` to split the response off.
pub fn write_response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    out: &mut impl BufMut,
) {
    let mut w = Writer::new(out);
    w.put(b"SIP/2.0 ");
    w.decimal(u64::from(code));
    w.put(b" ");
    w.put(reason.as_bytes());
    w.put(b"\r\n");
    for via in req.headers().get_raw(&Name::VIA) {
        w.header("Via", via);
    }
    if (101..300).contains(&code) {
        for rr in req.headers().get_raw(&Name::RECORD_ROUTE) {
            w.header("Record-Route", rr);
        }
    }
    w.header("From", req.header(&Name::FROM).unwrap_or_default());
    let to = req.header(&Name::TO).unwrap_or_default();
    match to_tag {
        Some(tag) if tag_param(to).is_none() => {
            w.put(b"To: ");
            w.put(to.as_bytes());
            w.put(b";tag=");
            w.put(tag.as_bytes());
            w.put(b"\r\n");
        }
        _ => w.header("To", to),
    }
    w.header("Call-ID", req.call_id());
    w.put(b"CSeq: ");
    w.decimal(u64::from(req.cseq()));
    w.line(format_args!(" {}", req.cseq_method()));
    for (name, value) in extra {
        w.header(name, value);
    }
    w.header("Server", USER_AGENT);
    w.body(body);
}

/// The ACK for a non-2xx final response to an INVITE (RFC 3261 §17.1.1.3): same Request-URI,
/// top Via, From, Call-ID, CSeq number and Route as the INVITE; To from the response.
pub fn ack_for_non2xx(invite: &Message, response: &Message) -> Vec<u8> {
    derived_request(invite, "ACK", response.header(&Name::TO))
}

/// The CANCEL of a pending request (RFC 3261 §9.1): same Request-URI, top Via, From, To,
/// Call-ID, CSeq number and Route as the request.
pub fn cancel_for(request: &Message) -> Vec<u8> {
    derived_request(request, "CANCEL", None)
}

fn derived_request(req: &Message, method: &str, to: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.raw().len().min(1024));
    let mut w = Writer::new(&mut out);
    w.line(format_args!(
        "{method} {} SIP/2.0",
        req.request_uri().unwrap_or_default()
    ));
    if let Some(top) = req.header_values(&Name::VIA).next() {
        w.header("Via", top);
    }
    for route in req.headers().get_raw(&Name::ROUTE) {
        w.header("Route", route);
    }
    w.header("Max-Forwards", "70");
    w.header("From", req.header(&Name::FROM).unwrap_or_default());
    w.header(
        "To",
        to.or_else(|| req.header(&Name::TO)).unwrap_or_default(),
    );
    w.header("Call-ID", req.call_id());
    w.line(format_args!("CSeq: {} {method}", req.cseq()));
    w.header("User-Agent", USER_AGENT);
    w.body(None);
    out
}

/// The standard reason phrase for a status code (RFC 3261 §21), or `""`.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}

/// A thin line writer over a byte buffer.
struct Writer<'a, B> {
    out: &'a mut B,
}

impl<'a, B: BufMut> Writer<'a, B> {
    fn new(out: &'a mut B) -> Self {
        Self { out }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let mut s = Adapter(&mut *self.out);
        let _ = s.write_fmt(args);
        self.out.put_slice(b"\r\n");
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.put_slice(bytes);
    }

    /// `n` in decimal, without the formatting machinery.
    fn decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.put_slice(&digits[i..]);
    }

    fn header(&mut self, name: &str, value: &str) {
        self.out.put_slice(name.as_bytes());
        self.out.put_slice(b": ");
        self.out.put_slice(value.as_bytes());
        self.out.put_slice(b"\r\n");
    }

    fn via(&mut self, via: &ViaSpec<'_>) {
        self.line(format_args!(
            "Via: SIP/2.0/{} {};branch={}{}",
            via.transport.via_token(),
            via.sent_by,
            via.branch,
            if via.rport { ";rport" } else { "" }
        ));
    }

    fn body(&mut self, body: Option<(&str, &[u8])>) {
        match body {
            Some((content_type, body)) => {
                self.header("Content-Type", content_type);
                self.put(b"Content-Length: ");
                self.decimal(body.len() as u64);
                self.put(b"\r\n");
                self.out.put_slice(b"\r\n");
                self.out.put_slice(body);
            }
            None => self.out.put_slice(b"Content-Length: 0\r\n\r\n"),
        }
    }
}

/// `fmt::Write` for a byte buffer.
struct Adapter<'a, B>(&'a mut B);

impl<B: BufMut> std::fmt::Write for Adapter<'_, B> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn spec<'a>(routes: &'a [String], extra: &'a [(&'a str, &'a str)]) -> RequestSpec<'a> {
        RequestSpec {
            method: "INVITE",
            uri: "sip:bob@biloxi.example.com",
            via: ViaSpec {
                transport: Transport::Udp,
                sent_by: "[::1]:5062".parse().unwrap(),
                branch: "z9hG4bKabc",
                rport: true,
            },
            routes,
            from: "<sip:alice@atlanta.example.com>;tag=9fxced76sl",
            to: "<sip:bob@biloxi.example.com>",
            call_id: "3848276298220188511@atlanta.example.com",
            cseq: 1,
            contact: Some("<sip:alice@[::1]:5062>"),
            extra,
            body: Some(("application/sdp", b"v=0\r\n")),
        }
    }

    #[test]
    fn a_written_request_parses_back() {
        let routes = vec!["<sip:p1.example.com;lr>".to_string()];
        let extra = [("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")];
        let raw = spec(&routes, &extra).to_vec();
        let m = Message::parse_datagram(Bytes::from(raw)).unwrap();
        assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
        assert_eq!(m.branch(), Some("z9hG4bKabc"));
        let via = m.top_via().unwrap();
        assert_eq!(via.sent_by.port, Some(5062));
        assert!(via.params.get("rport").is_some());
        assert_eq!(m.header(&Name::ROUTE), Some("<sip:p1.example.com;lr>"));
        assert_eq!(m.cseq(), 1);
        assert_eq!(&m.body()[..], b"v=0\r\n");
        assert_eq!(m.header(&Name::CONTENT_LENGTH), Some("5"));
    }

    #[test]
    fn response_copies_vias_and_adds_to_tag() {
        let raw = spec(&[], &[]).to_vec();
        let invite = Message::parse_datagram(Bytes::from(raw)).unwrap();
        let mut out = Vec::new();
        write_response(&invite, 180, "Ringing", Some("t1"), &[], None, &mut out);
        let resp = Message::parse_datagram(Bytes::from(out)).unwrap();
        assert_eq!(resp.status(), Some(180));
        assert_eq!(resp.branch(), Some("z9hG4bKabc"));
        assert_eq!(resp.to_tag().as_deref(), Some("t1"));
        assert_eq!(resp.from_tag().as_deref(), Some("9fxced76sl"));
        assert_eq!(resp.call_id(), invite.call_id());
        assert_eq!(resp.cseq_method(), invite.cseq_method());
    }

    #[test]
    fn a_to_tag_already_there_is_kept_alone() {
        let raw = spec(&[], &[]).to_vec();
        let text = String::from_utf8(raw).unwrap().replace(
            "To: <sip:bob@biloxi.example.com>",
            "To: \"B;tag=no\" <sip:bob@biloxi.example.com>;tag=old",
        );
        let request = Message::parse_datagram(Bytes::from(text)).unwrap();
        let mut out = Vec::new();
        write_response(&request, 200, "OK", Some("new"), &[], None, &mut out);
        let response = Message::parse_datagram(Bytes::from(out)).unwrap();
        assert_eq!(response.to_tag().as_deref(), Some("old"));
        assert_eq!(
            response.header(&Name::TO),
            Some("\"B;tag=no\" <sip:bob@biloxi.example.com>;tag=old")
        );
    }

    #[test]
    fn ack_and_cancel_follow_rfc_3261() {
        let routes = vec!["<sip:p1.example.com;lr>".to_string()];
        let invite = Message::parse_datagram(Bytes::from(spec(&routes, &[]).to_vec())).unwrap();
        let mut out = Vec::new();
        write_response(
            &invite,
            486,
            "Busy Here",
            Some("callee"),
            &[],
            None,
            &mut out,
        );
        let busy = Message::parse_datagram(Bytes::from(out)).unwrap();

        let ack = Message::parse_datagram(Bytes::from(ack_for_non2xx(&invite, &busy))).unwrap();
        assert_eq!(ack.method().unwrap().to_string(), "ACK");
        assert_eq!(ack.request_uri(), invite.request_uri());
        assert_eq!(ack.branch(), invite.branch());
        assert_eq!(ack.cseq(), invite.cseq());
        assert_eq!(ack.cseq_method().to_string(), "ACK");
        assert_eq!(ack.to_tag().as_deref(), Some("callee"));
        assert_eq!(ack.header(&Name::ROUTE), Some("<sip:p1.example.com;lr>"));

        let cancel = Message::parse_datagram(Bytes::from(cancel_for(&invite))).unwrap();
        assert_eq!(cancel.cseq_method().to_string(), "CANCEL");
        assert_eq!(cancel.branch(), invite.branch());
        assert_eq!(cancel.to_tag(), None);
        assert_eq!(cancel.cseq(), invite.cseq());
    }
}
