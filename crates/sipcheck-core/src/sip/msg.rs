//! SIP messages: parsing, framing and typed accessors.
//!
//! Lines, header names and typed header values are parsed with `ezk-sip-types`; this module adds
//! what a test harness facing sloppy peers needs around it:
//!
//! * framing by `Content-Length` — a datagram whose body is longer than `Content-Length` is
//!   trimmed (RFC 3261 §18.3), a shorter one is an error, and a stream ([`StreamFramer`]) is split
//!   into messages by `Content-Length`;
//! * LF-only line ends, folded header lines, compact header names (`v`, `i`, `f`, `t`, `l`, `m`,
//!   `c`, `k`, `s`, …), case-insensitive names and several values in one header line;
//! * a typed [`ParseError`] carrying the byte offset of the fault — never a panic;
//! * the fields that transactions and dialogs match on (top Via branch, CSeq, Call-ID, tags)
//!   extracted once, when the message is parsed.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
pub use bytesstr::BytesStr;
use ezk_sip_types::header::typed::{FromTo, Via};
use ezk_sip_types::header::HeaderParse;
use ezk_sip_types::msg::MessageLine;
use ezk_sip_types::parse::Parse;
pub use ezk_sip_types::Name;

/// A SIP method: a case-sensitive token (RFC 3261 §7.1). The RFC methods are constants; any
/// other token (`INFORM`, `invite`) is an extension method of its own, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Method(MethodRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MethodRepr {
    Rfc(&'static str),
    Other(BytesStr),
}

macro_rules! rfc_methods {
    ($($name:ident),+ $(,)?) => {
        impl Method {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Self = Self(MethodRepr::Rfc(stringify!($name)));
            )+

            /// The RFC method spelled exactly `token`, if any.
            fn rfc(token: &str) -> Option<Self> {
                match token {
                    $(stringify!($name) => Some(Self::$name),)+
                    _ => None,
                }
            }
        }
    };
}

rfc_methods!(
    INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY,
    PUBLISH, REFER,
);

impl Method {
    /// The method named by `token` (a subslice of `src`): an RFC method when spelled
    /// exactly, otherwise an extension method sharing `src`.
    #[must_use]
    pub fn from_token(src: &Bytes, token: &str) -> Self {
        Self::rfc(token)
            .unwrap_or_else(|| Self(MethodRepr::Other(BytesStr::from_parse(src, token))))
    }

    /// The method as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            MethodRepr::Rfc(name) => name,
            MethodRepr::Other(name) => name.as_str(),
        }
    }
}

impl From<&str> for Method {
    fn from(token: &str) -> Self {
        Self::rfc(token).unwrap_or_else(|| Self(MethodRepr::Other(BytesStr::from(token))))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest message head (start line and headers) accepted, in bytes.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// The largest body accepted, in bytes.
pub const MAX_BODY_LEN: usize = 1024 * 1024;

/// Why a message could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SIP message at byte {offset}: {kind}")]
pub struct ParseError {
    /// Byte offset into the input where the fault was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The input ends before the end of the message head.
    #[error("the message head is incomplete")]
    IncompleteHead,
    /// The head is larger than [`MAX_HEAD_LEN`].
    #[error("the message head is larger than {MAX_HEAD_LEN} bytes")]
    HeadTooLarge,
    /// The head is not valid UTF-8.
    #[error("the message head is not valid UTF-8")]
    NotUtf8,
    /// The first line is neither a request line nor a status line.
    #[error("the start line is neither a request line nor a status line")]
    StartLine,
    /// A header line has no `name:` part.
    #[error("a header line has no name")]
    HeaderLine,
    /// A header required for matching is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is present but its value cannot be parsed.
    #[error("the {0} header is malformed")]
    BadHeader(&'static str),
    /// `Content-Length` is not a number, or is larger than [`MAX_BODY_LEN`].
    #[error("Content-Length is invalid")]
    BadContentLength,
    /// The body is shorter than `Content-Length` says.
    #[error(
        "the body is shorter than Content-Length ({expected} bytes expected, {actual} present)"
    )]
    BodyTruncated {
        /// What `Content-Length` announced.
        expected: usize,
        /// What was present.
        actual: usize,
    },
    /// A message on a stream transport has no `Content-Length` (RFC 3261 §18.3).
    #[error("Content-Length is required on stream transports")]
    StreamWithoutContentLength,
}

impl ParseError {
    fn at(offset: usize, kind: ParseErrorKind) -> Self {
        Self { offset, kind }
    }
}

/// The first line of a message.
#[derive(Debug, Clone)]
pub enum StartLine {
    /// `METHOD request-uri SIP/2.0`
    Request {
        /// The method.
        method: Method,
        /// The Request-URI, as written.
        uri: BytesStr,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// The status code.
        code: u16,
        /// The reason phrase (may be empty).
        reason: BytesStr,
    },
}

/// A parsed SIP request or response.
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    start: StartLine,
    headers: HeaderMap,
    body: Bytes,
    call_id: Span,
    cseq: u32,
    cseq_method: Method,
    branch: Option<Span>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("call_id", &self.call_id())
            .field("cseq", &self.cseq)
            .field("cseq_method", &self.cseq_method)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// Parse one message received as a datagram (UDP).
    ///
    /// Without `Content-Length` the body is the rest of the datagram; with it, the body is
    /// trimmed to that length, and a shorter body is an error.
    pub fn parse_datagram(data: Bytes) -> Result<Self, ParseError> {
        let data = skip_leading_crlf(data);
        let (head_end, content_length) = frame_head(&data)?;
        let available = data.len() - head_end;
        let body_len = match content_length {
            Some(len) if len > available => {
                return Err(ParseError::at(
                    data.len(),
                    ParseErrorKind::BodyTruncated {
                        expected: len,
                        actual: available,
                    },
                ))
            }
            Some(len) => len,
            None => available,
        };
        let mut data = data;
        data.truncate(head_end + body_len);
        Self::parse_framed(data, head_end)
    }

    /// Parse one complete message whose head ends at `head_end` and whose body is the rest.
    fn parse_framed(raw: Bytes, head_end: usize) -> Result<Self, ParseError> {
        let head = std::str::from_utf8(&raw[..head_end])
            .map_err(|e| ParseError::at(e.valid_up_to(), ParseErrorKind::NotUtf8))?;
        let mut lines = HeadLines::new(head.as_bytes());
        let Some(Ok(first)) = lines.next() else {
            return Err(ParseError::at(0, ParseErrorKind::StartLine));
        };
        let start = parse_start_line(&raw, &head[first.start..first.end])?;

        let mut headers = HeaderMap {
            head: BytesStr::from_parse(&raw, head),
            entries: Vec::with_capacity(12),
            extra: Vec::new(),
        };
        // The first Via, Call-ID and CSeq lines, noted as they are read (what `get_raw`
        // would find first).
        let (mut via, mut call_id, mut cseq) = (None, None, None);
        let mut offset = lines.progress;
        for line in lines {
            let Ok(line) = line else {
                return Err(ParseError::at(offset, ParseErrorKind::IncompleteHead));
            };
            let Some((name, value)) = split_header_line(head, line.start, line.end) else {
                return Err(ParseError::at(line.start, ParseErrorKind::HeaderLine));
            };
            let value = if line.folded {
                headers.unfolded(&head[value..line.end])
            } else {
                let text = &head[value..line.end];
                let end = if text.as_bytes().last().is_some_and(u8::is_ascii_graphic) {
                    line.end
                } else {
                    value + text.trim_end().len()
                };
                Span::head(value, end)
            };
            let (name, known) = canonical_name(head, name);
            let first = match known {
                Known::Via => &mut via,
                Known::CallId => &mut call_id,
                Known::CSeq => &mut cseq,
                Known::Other => &mut None,
            };
            first.get_or_insert(value);
            headers.entries.push(Entry { name, value });
            offset = line.end;
        }

        let call_id = call_id
            .map(|v| headers.trimmed(v))
            .filter(|v| !v.is_empty())
            .ok_or(ParseError::at(
                head_end,
                ParseErrorKind::MissingHeader("Call-ID"),
            ))?;
        let (cseq, cseq_method) = parse_cseq(&headers, cseq, head_end)?;
        let branch = top_branch(&mut headers, via);

        let body = raw.slice(head_end..);
        Ok(Self {
            raw,
            start,
            headers,
            body,
            call_id,
            cseq,
            cseq_method,
            branch,
        })
    }

    /// The message as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request; `None` for a response (see [`Message::cseq_method`]).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri.as_str()),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason.as_str()),
            StartLine::Request { .. } => None,
        }
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of a header, by any of its names (long or compact, any case).
    pub fn header(&self, name: &Name) -> Option<&str> {
        self.headers.get_raw(name).next().map(str::trim)
    }

    /// The first value of a header, as [`Message::header`] gives it, sharing the message's
    /// buffer instead of copying it.
    pub fn header_shared(&self, name: &Name) -> Option<BytesStr> {
        let value = self.headers.values(name).next()?;
        Some(self.headers.shared(self.headers.trimmed(value)))
    }

    /// The Request-URI of a request, sharing the message's buffer.
    pub fn request_uri_shared(&self) -> Option<BytesStr> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri.clone()),
            StartLine::Response { .. } => None,
        }
    }

    /// Every value of a header, in order, with comma-separated values split apart
    /// (for headers whose grammar allows a list, e.g. Via, Route, Record-Route, Contact).
    pub fn header_values<'a, 'n>(
        &'a self,
        name: &'n Name,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers.get_raw(name).flat_map(split_list)
    }

    /// The body (empty when there is none).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.headers.text(self.call_id)
    }

    /// The CSeq sequence number.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    /// The CSeq method.
    pub fn cseq_method(&self) -> &Method {
        &self.cseq_method
    }

    /// The `branch` parameter of the topmost Via, if any.
    pub fn branch(&self) -> Option<&str> {
        self.branch.map(|b| self.headers.text(b))
    }

    /// [`Message::branch`], sharing the message's buffer.
    pub fn branch_shared(&self) -> Option<BytesStr> {
        self.branch.map(|b| self.headers.shared(b))
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Option<Via> {
        top_via(&self.headers)
    }

    /// The `tag` parameter of the From header.
    pub fn from_tag(&self) -> Option<BytesStr> {
        self.from_to(&Name::FROM).and_then(|h| h.tag)
    }

    /// The `tag` parameter of the To header.
    pub fn to_tag(&self) -> Option<BytesStr> {
        self.from_to(&Name::TO).and_then(|h| h.tag)
    }

    /// The From or To header, parsed.
    pub fn from_to(&self, name: &Name) -> Option<FromTo> {
        let value = self.headers.values(name).next()?;
        FromTo::parse(self.headers.source(value), self.headers.text(value).trim())
            .ok()
            .map(|(_, h)| h)
    }

    /// The URI of the first Contact value, if any.
    pub fn first_contact_uri(&self) -> Option<&str> {
        self.header_values(&Name::CONTACT).next().map(contact_uri)
    }

    /// The URIs of every Contact value, in order.
    pub fn contact_uris(&self) -> Vec<String> {
        self.header_values(&Name::CONTACT)
            .map(|c| contact_uri(c).to_string())
            .collect()
    }
}

/// What a client transaction keeps of a request it sends: the bytes, framed as
/// [`Message::parse_datagram`] frames them, and the fields it matches responses on and
/// builds from — the method, the top Via branch and the CSeq number.
///
/// [`SentRequest::scan`] reads them without a full parse from a request written the plain
/// way (as every request sipcheck builds is); [`SentRequest::parse`] gives the whole message
/// when something needs more of it (the ACK of a non-2xx final response, a CANCEL).
#[derive(Debug, Clone)]
pub struct SentRequest {
    raw: Bytes,
    method: Method,
    branch: Option<BytesStr>,
    cseq: u32,
}

impl SentRequest {
    /// The fields of a request already parsed; `None` for a response.
    #[must_use]
    pub fn from_message(message: &Message) -> Option<Self> {
        Some(Self {
            raw: message.raw().clone(),
            method: message.method()?.clone(),
            branch: message.branch_shared(),
            cseq: message.cseq(),
        })
    }

    /// Read the fields of a request without parsing it: the start line, the top Via's branch,
    /// Call-ID and CSeq are found by a scan of the head. `Some` only for a request written the
    /// plain way — CRLF line ends, no folded line, every header line `name: value`, a request
    /// line and a top Via value of the plain forms the parser itself reads by scanning
    /// (`plain_request_line`, `plain_via_branch`), a Via branch, a Call-ID and a well-formed
    /// CSeq — on which [`Message::parse_datagram`] succeeds and agrees: the same bytes,
    /// method, branch and CSeq number. `None` for anything else, a malformed request
    /// included, which is left to the parser.
    #[must_use]
    pub fn scan(data: &Bytes) -> Option<Self> {
        let start = data
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let message = &data[start..];
        let plain = scan_plain_request(message)?;
        let raw = data.slice(start..start + plain.len);
        let branch = BytesStr::from_parse(&raw, plain.branch);
        Some(Self {
            raw,
            method: plain.method,
            branch: Some(branch),
            cseq: plain.cseq,
        })
    }

    /// The fields of a request sipcheck wrote itself (`RequestSpec::write`), given by its
    /// writer: the top Via, written right after the request line, is `;branch=` `branch`.
    /// Nothing is read back but where the branch lies in `data` (so that it shares the
    /// buffer). `None` when `data` does not hold `branch` there.
    #[must_use]
    pub fn built(data: &Bytes, method: Method, branch: &str, cseq: u32) -> Option<Self> {
        let line_end = memchr::memchr(b'\n', data)?;
        let at = line_end + memchr::memmem::find(&data[line_end..], b";branch=")? + 8;
        let value = data.get(at..at + branch.len())?;
        if value != branch.as_bytes() || !matches!(data.get(at + branch.len()), Some(b';' | b'\r'))
        {
            return None;
        }
        let branch = BytesStr::from_utf8_bytes(data.slice(at..at + branch.len())).ok()?;
        Some(Self {
            raw: data.clone(),
            method,
            branch: Some(branch),
            cseq,
        })
    }

    /// Parse the whole request (for what needs more than the fields kept).
    pub fn parse(&self) -> Result<Message, ParseError> {
        Message::parse_datagram(self.raw.clone())
    }

    /// The request as sent.
    #[must_use]
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The method of the request line.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The `branch` parameter of the topmost Via, if any.
    #[must_use]
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_ref().map(BytesStr::as_str)
    }

    /// [`SentRequest::branch`], sharing the request's buffer.
    #[must_use]
    pub fn branch_shared(&self) -> Option<&BytesStr> {
        self.branch.as_ref()
    }

    /// The CSeq sequence number.
    #[must_use]
    pub fn cseq(&self) -> u32 {
        self.cseq
    }
}

/// What [`scan_plain_request`] reads of a request.
struct PlainRequest<'a> {
    method: Method,
    branch: &'a str,
    cseq: u32,
    /// The length of the message as framed: head and body.
    len: usize,
}

/// The line of `data` starting at `from`: where it ends (its CR) and where the next begins.
/// `None` unless it ends in CRLF with no CR or LF alone before.
fn crlf_line(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let at = from + memchr::memchr2(b'\r', b'\n', &data[from..])?;
    (data[at] == b'\r' && data.get(at + 1) == Some(&b'\n')).then_some((at, at + 2))
}

/// `token` characters of RFC 3261 §25.1 (ASCII only).
fn is_ascii_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// [`is_ascii_token_byte`], by table: it runs for every byte of every header name scanned.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'`' | b'\'' | b'~' | b'+'
            );
        b += 1;
    }
    table
};

/// The unreserved characters of a plain URI or Via parameter: letters, digits and
/// `-_.!~*'` (RFC 3261 §25.1 `unreserved`, without `(` and `)`).
fn is_unreserved_byte(b: u8) -> bool {
    UNRESERVED_BYTES[usize::from(b)]
}

/// [`is_unreserved_byte`], by table: it runs for every byte of every plain Via and URI.
static UNRESERVED_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'');
        b += 1;
    }
    table
};

/// The method, top Via branch, CSeq number and framed length of a request written the plain
/// way (see [`SentRequest::scan`]), in one pass over its head; `None` for anything else.
///
/// Each step accepts only what the parser accepts and reads the same way: lines as its line
/// reader splits them (no folding, no CR or LF alone), header names of ASCII token
/// characters followed at once by `:` (what `split_header_line` reads), the first Via,
/// Call-ID and CSeq and the last Content-Length (as `scan_content_length` frames), and the
/// plain request line and Via value by the parser's own scanners.
fn scan_plain_request(message: &[u8]) -> Option<PlainRequest<'_>> {
    let (first_end, mut next) = crlf_line(message, 0)?;
    let (mut via, mut call_id, mut cseq, mut length) = (None, None, None, None);
    let head_end = loop {
        if next > MAX_HEAD_LEN {
            return None;
        }
        let (end, after) = crlf_line(message, next)?;
        let line = &message[next..end];
        if line.is_empty() {
            break after;
        }
        let colon = line.iter().position(|&b| !is_ascii_token_byte(b))?;
        if colon == 0 || line[colon] != b':' {
            return None;
        }
        let value = (next + colon + 1, end);
        // A second Content-Length: the parser decides (it refuses some the scan would
        // read; a request sipcheck writes has one). A second Call-ID or CSeq is read as
        // the parser reads it: the first.
        let once = |slot: &mut Option<(usize, usize)>| match slot {
            Some(_) => None,
            None => {
                *slot = Some(value);
                Some(())
            }
        };
        match &line[..colon] {
            [b'v' | b'V'] => {
                via.get_or_insert(value);
            }
            name if name.eq_ignore_ascii_case(b"via") => {
                via.get_or_insert(value);
            }
            [b'i' | b'I'] => {
                call_id.get_or_insert(value);
            }
            name if name.eq_ignore_ascii_case(b"call-id") => {
                call_id.get_or_insert(value);
            }
            name if name.eq_ignore_ascii_case(b"cseq") => {
                cseq.get_or_insert(value);
            }
            [b'l' | b'L'] => once(&mut length)?,
            name if name.eq_ignore_ascii_case(b"content-length") => once(&mut length)?,
            _ => {}
        }
        next = after;
    };
    let head = &message[..head_end];
    if !head.is_ascii() {
        std::str::from_utf8(head).ok()?;
    }
    let text = |(from, to): (usize, usize)| std::str::from_utf8(&message[from..to]).ok();
    let trimmed = |range| {
        text(range).map(|v| {
            v.trim_start_matches(|c: char| c.is_ascii_whitespace())
                .trim_end()
        })
    };
    // Framing, as `Message::parse_datagram` frames.
    let available = message.len() - head_end;
    let body_len = match length {
        Some(range) => {
            let len = text(range)?.trim_ascii().parse::<usize>().ok()?;
            if len > MAX_BODY_LEN || len > available {
                return None;
            }
            len
        }
        None => available,
    };
    let (method, _uri) = plain_request_line(text((0, first_end))?)?;
    if trimmed(call_id?)?.trim().is_empty() {
        return None;
    }
    let mut parts = trimmed(cseq?)?.split_whitespace();
    let number = parts.next()?.parse::<u32>().ok()?;
    parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let top = trimmed(via?)?.split(',').next().unwrap_or_default().trim();
    let branch = plain_via_branch(top)??;
    Some(PlainRequest {
        method,
        branch,
        cseq: number,
        len: head_end + body_len,
    })
}

/// The `tag` parameter of a From or To value, without allocating: header parameters follow
/// the `>` of a name-addr, or the first `;` of a bare URI (RFC 3261 §20.10).
pub fn tag_param(value: &str) -> Option<&str> {
    let params = header_params(value)?;
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("tag") {
            Some(value.trim()).filter(|t| !t.is_empty())
        } else {
            None
        }
    })
}

/// The header-parameter part of a name-addr or addr-spec value (after `>`, or after the first
/// `;` of a bare URI); `None` when there is none.
fn header_params(value: &str) -> Option<&str> {
    // Bytes, not chars: every delimiter is ASCII, and no byte of a multi-byte character is.
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.bytes().enumerate() {
        match c {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                let close = value[i..].find('>')? + i;
                return Some(&value[close + 1..]);
            }
            b';' if !quoted => return Some(&value[i..]),
            _ => {}
        }
    }
    None
}

/// The value of the first header of a raw message's head named `long` or `compact`
/// (case-insensitive), found without a full parse (the first 8 KiB; the start line is no
/// header).
#[must_use]
pub fn head_header<'a>(raw: &'a [u8], long: &str, compact: &str) -> Option<&'a str> {
    let head = &raw[..raw.len().min(8192)];
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // the end of the head
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(long.as_bytes())
            || name.eq_ignore_ascii_case(compact.as_bytes())
        {
            return std::str::from_utf8(line[colon + 1..].trim_ascii()).ok();
        }
    }
    None
}

/// The Call-ID of a raw message, found without a full parse ([`head_header`]).
#[must_use]
pub fn call_id_of(raw: &[u8]) -> Option<&str> {
    head_header(raw, "call-id", "i")
}

/// The Call-ID of a raw message that belongs to a call, found without a full parse: any
/// message but those of the requests that stand on their own (its CSeq method REGISTER,
/// OPTIONS, SUBSCRIBE, PUBLISH or MESSAGE).
#[must_use]
pub fn call_message_id(raw: &[u8]) -> Option<&str> {
    let method = head_header(raw, "cseq", "")?
        .split_ascii_whitespace()
        .nth(1)?;
    let own = ["REGISTER", "OPTIONS", "SUBSCRIBE", "PUBLISH", "MESSAGE"];
    if own.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return None;
    }
    call_id_of(raw)
}

/// The user part of a SIP URI or name-addr (`"Bob" <sip:2001@pbx>;tag=1` → `2001`).
#[must_use]
pub fn user_part(value: &str) -> Option<&str> {
    let uri = contact_uri(value);
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The URI inside a Contact/Route value: between `<` and `>` when present, else up to `;`.
pub fn contact_uri(value: &str) -> &str {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        let rest = &value[start + 1..];
        match rest.find('>') {
            Some(end) => &rest[..end],
            None => rest,
        }
    } else {
        value.split(';').next().unwrap_or(value).trim()
    }
}

/// Split a header value at commas that are outside quotes and angle brackets (empty parts
/// left out, each part trimmed). Lazy: nothing is allocated.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    SplitList { rest: Some(value) }.filter(|p| !p.is_empty())
}

/// The iterator of [`split_list`], before empty parts are left out.
struct SplitList<'a> {
    /// What is left to split; `None` once the last part was given.
    rest: Option<&'a str>,
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let value = self.rest?;
        let (mut quoted, mut angle, mut escaped) = (false, false, false);
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '<' if !quoted => angle = true,
                '>' if !quoted => angle = false,
                ',' if !quoted && !angle => {
                    self.rest = Some(&value[i + 1..]);
                    return Some(value[..i].trim());
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(value.trim())
    }
}

/// The header fields of a message in order, names in their long form (compact forms such as
/// `v` or `i` expanded, RFC 3261 §7.3.3), values unfolded.
///
/// A lookup compares names case-insensitively with a [`Name`]'s long form; no value is parsed
/// until asked for. Names and values are kept as positions in the message's head (a folded
/// value, unfolded, in a string of its own), so that reading a message does not take a share
/// of its buffer per header line; [`Message::header_shared`] takes one when asked. (The
/// `ezk-sip-types` header map compared every entry through each name's list of spellings, and
/// looked each name up in a table of ~70, on every insertion: that was most of the parse
/// time.)
#[derive(Clone, Default)]
pub struct HeaderMap {
    /// The message's head: what a [`Span`] of `buf` 0 points into.
    head: BytesStr,
    entries: Vec<Entry>,
    /// Text that is not in the head as written (unfolded values, a branch the general Via
    /// parser gave): what a [`Span`] of `buf` `n` > 0 points into, at `n - 1`.
    extra: Vec<BytesStr>,
}

/// A header line: its name and value.
#[derive(Clone, Copy)]
struct Entry {
    name: EntryName,
    value: Span,
}

/// A header name: the long form of a compact one, or the name as written in the head.
#[derive(Clone, Copy)]
enum EntryName {
    Long(&'static str),
    Written(u32, u32),
}

/// A piece of text of a [`HeaderMap`]: bytes `start..end` of its head (`buf` 0) or of one of
/// its extra strings (`buf` `n` > 0: `extra[n - 1]`).
#[derive(Clone, Copy, Debug)]
struct Span {
    buf: u32,
    start: u32,
    end: u32,
}

impl Span {
    /// Bytes `start..end` of the head (which is at most [`MAX_HEAD_LEN`] + 4 bytes long).
    fn head(start: usize, end: usize) -> Self {
        Self {
            buf: 0,
            start: start as u32,
            end: end as u32,
        }
    }

    fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The headers the parser reads itself, noted as their lines are read.
enum Known {
    Via,
    CallId,
    CSeq,
    Other,
}

impl HeaderMap {
    /// Every value of the header `name`, in order, as written (one per header line).
    pub fn get_raw<'a, 'n>(
        &'a self,
        name: &'n Name,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.values(name).map(|v| self.text(v))
    }

    /// Every header line, in order: the name (in its long form) and the value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (self.name(e.name), self.text(e.value)))
    }

    /// [`HeaderMap::get_raw`], as spans.
    fn values<'a, 'n>(&'a self, name: &'n Name) -> impl Iterator<Item = Span> + use<'a, 'n> {
        let wanted = name.as_print_str();
        self.entries
            .iter()
            .filter(move |e| self.name(e.name).eq_ignore_ascii_case(wanted))
            .map(|e| e.value)
    }

    fn name(&self, name: EntryName) -> &str {
        match name {
            EntryName::Long(long) => long,
            EntryName::Written(start, end) => &self.head.as_str()[start as usize..end as usize],
        }
    }

    /// The string `span` points into.
    fn buffer(&self, span: Span) -> &BytesStr {
        match span.buf {
            0 => &self.head,
            n => &self.extra[n as usize - 1],
        }
    }

    fn text(&self, span: Span) -> &str {
        &self.buffer(span).as_str()[span.start as usize..span.end as usize]
    }

    /// The buffer `span`'s text lies in, for the parsers of `ezk-sip-types`.
    fn source(&self, span: Span) -> &Bytes {
        self.buffer(span).as_ref()
    }

    /// `span`'s text as a string of its own, sharing the buffer.
    fn shared(&self, span: Span) -> BytesStr {
        self.buffer(span).slice_ref(self.text(span))
    }

    /// The span of `part`, a subslice of `span`'s text.
    fn sub(&self, span: Span, part: &str) -> Span {
        let start = part.as_ptr() as usize - self.buffer(span).as_str().as_ptr() as usize;
        Span {
            buf: span.buf,
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// `span` without white space at either end.
    fn trimmed(&self, span: Span) -> Span {
        let text = self.text(span);
        let trimmed = text.trim();
        if trimmed.len() == text.len() {
            span
        } else {
            self.sub(span, trimmed)
        }
    }

    /// Keep `text` (not in the head as written); its span.
    fn add(&mut self, text: BytesStr) -> Span {
        let len = text.len();
        self.extra.push(text);
        Span {
            buf: self.extra.len() as u32,
            start: 0,
            end: len as u32,
        }
    }

    /// A folded value (after its leading white space) unfolded, kept: line folding (CRLF or
    /// LF followed by white space) replaced by a single space, the end trimmed.
    fn unfolded(&mut self, value: &str) -> Span {
        let text = if value.contains(['\r', '\n']) {
            let mut out = String::with_capacity(value.len());
            for (i, piece) in value.split('\n').enumerate() {
                let piece = piece.trim_end_matches('\r');
                if i == 0 {
                    out.push_str(piece.trim_end());
                } else {
                    out.push(' ');
                    out.push_str(piece.trim());
                }
            }
            BytesStr::from(out)
        } else {
            BytesStr::from(value.trim_end())
        };
        self.add(text)
    }
}

/// One line of a message head, as [`HeadLines`] splits it: bytes `start..end`; `folded` when
/// it spans several physical lines (it then holds their CR and LF bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadLine {
    start: usize,
    end: usize,
    folded: bool,
}

/// The lines of a message head, split exactly as `ezk_sip_types::msg::PullParser` splits
/// them (a line ends at LF or CRLF not followed by a space or tab; a CR alone, or an end
/// without a blank line, is an error, `Err(())`; the blank line ends the iteration), and
/// telling which lines are folded.
struct HeadLines<'a> {
    input: &'a [u8],
    /// Where the next line starts.
    progress: usize,
}

impl<'a> HeadLines<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, progress: 0 }
    }
}

impl Iterator for HeadLines<'_> {
    type Item = Result<HeadLine, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let begin = self.progress;
        let mut from = begin;
        loop {
            let Some(found) = memchr::memchr2(b'\n', b'\r', &self.input[from..]) else {
                return Some(Err(()));
            };
            let at = from + found;
            let next = match self.input[at..] {
                [b'\n', b' ' | b'\t', ..] | [b'\r', b'\n', b' ' | b'\t', ..] => {
                    from = at + 1;
                    continue;
                }
                // The blank line that ends the head is not taken: the next call finds it.
                [b'\n', b, ..] => at + usize::from(b != b'\n'),
                [b'\r', b'\n', b1, b2, ..] => at + 2 * usize::from(!(b1 == b'\r' && b2 == b'\n')),
                _ => return Some(Err(())),
            };
            if at == begin {
                return None;
            }
            self.progress = next;
            return Some(Ok(HeadLine {
                start: begin,
                end: at,
                folded: from != begin,
            }));
        }
    }
}

/// A header line's name and value (bytes `start..end` of `head`): `token *WSP ":" *WSP value`
/// (RFC 3261 §7.3.1) — the name's bytes and where the value starts; `None` for a line that is
/// not one. (White space here is ASCII white space, CR and LF of a folded line included.)
fn split_header_line(head: &str, start: usize, end: usize) -> Option<((usize, usize), usize)> {
    let bytes = &head.as_bytes()[..end];
    let mut at = start;
    while at < end && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    let name_start = at;
    while at < end {
        let b = bytes[at];
        if b.is_ascii() {
            if !is_ascii_token_byte(b) {
                break;
            }
            at += 1;
        } else {
            // Letters of any script are token characters too, as `ezk-sip-types` reads them.
            let c = head[at..].chars().next()?;
            if !c.is_alphanumeric() {
                break;
            }
            at += c.len_utf8();
        }
    }
    if at == name_start {
        return None;
    }
    let name_end = at;
    while at < end && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    if bytes.get(at) != Some(&b':') {
        return None;
    }
    at += 1;
    while at < end && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    Some(((name_start, name_end), at))
}

/// The long form of a header name (bytes `start..end` of `head`; RFC 3261 §7.3.3 and the
/// extensions' compact forms), or the name as written; and whether it is one the parser reads.
fn canonical_name(head: &str, (start, end): (usize, usize)) -> (EntryName, Known) {
    let name = &head.as_bytes()[start..end];
    let long = match name {
        [c] => match c.to_ascii_lowercase() {
            b'v' => return (EntryName::Long("Via"), Known::Via),
            b'i' => return (EntryName::Long("Call-ID"), Known::CallId),
            b'f' => "From",
            b't' => "To",
            b'm' => "Contact",
            b'l' => "Content-Length",
            b'c' => "Content-Type",
            b'e' => "Content-Encoding",
            b'k' => "Supported",
            b's' => "Subject",
            b'o' => "Event",
            b'u' => "Allow-Events",
            b'r' => "Refer-To",
            b'x' => "Session-Expires",
            b'b' => "Referred-By",
            _ => return (EntryName::Written(start as u32, end as u32), Known::Other),
        },
        _ => {
            let known = match name.len() {
                3 if name.eq_ignore_ascii_case(b"via") => Known::Via,
                4 if name.eq_ignore_ascii_case(b"cseq") => Known::CSeq,
                7 if name.eq_ignore_ascii_case(b"call-id") => Known::CallId,
                _ => Known::Other,
            };
            return (EntryName::Written(start as u32, end as u32), known);
        }
    };
    (EntryName::Long(long), Known::Other)
}

fn parse_start_line(raw: &Bytes, line: &str) -> Result<StartLine, ParseError> {
    if let Some((code, reason)) = plain_status_line(line) {
        return Ok(StartLine::Response {
            code,
            reason: BytesStr::from_parse(raw, reason),
        });
    }
    if let Some((method, uri)) = plain_request_line(line) {
        return Ok(StartLine::Request {
            method,
            uri: BytesStr::from_parse(raw, uri),
        });
    }
    match MessageLine::parse(raw)(line) {
        Ok((rest, MessageLine::Request(_))) if rest.trim().is_empty() => {
            // RFC 3261 §7.1: Method SP Request-URI SP SIP-Version, exactly. Keep the URI as
            // written: the printed form of the parsed URI may differ.
            let mut tokens = line.split([' ', '\t']).filter(|t| !t.is_empty());
            let (Some(method), Some(uri), Some(version), None) =
                (tokens.next(), tokens.next(), tokens.next(), tokens.next())
            else {
                return Err(ParseError::at(0, ParseErrorKind::StartLine));
            };
            if !version.eq_ignore_ascii_case("SIP/2.0") || line.contains(['\r', '\n']) {
                return Err(ParseError::at(0, ParseErrorKind::StartLine));
            }
            // The method as written: the general parser reads methods by case-insensitive
            // prefix (`INFORM` as INFO, `invite` as INVITE).
            Ok(StartLine::Request {
                method: Method::from_token(raw, method),
                uri: BytesStr::from_parse(raw, uri),
            })
        }
        Ok((_, MessageLine::Response(status))) => {
            let code = status.code.into_u16();
            if !(100..=699).contains(&code) {
                return Err(ParseError::at(8, ParseErrorKind::StartLine));
            }
            Ok(StartLine::Response {
                code,
                reason: status.reason.unwrap_or_default(),
            })
        }
        _ => Err(ParseError::at(0, ParseErrorKind::StartLine)),
    }
}

/// The CSeq number and method of the first CSeq value, `value` (`None`: there is none).
fn parse_cseq(
    headers: &HeaderMap,
    value: Option<Span>,
    head_end: usize,
) -> Result<(u32, Method), ParseError> {
    let value = value.ok_or(ParseError::at(
        head_end,
        ParseErrorKind::MissingHeader("CSeq"),
    ))?;
    let text = headers.text(value);
    let source = headers.source(value);
    if let Some((num, method)) = plain_cseq(text) {
        return Ok((num, Method::from_token(source, method)));
    }
    let bad = || ParseError::at(head_end, ParseErrorKind::BadHeader("CSeq"));
    let mut parts = text.split_whitespace();
    let num = parts
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(bad)?;
    let method = parts.next().ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((num, Method::from_token(source, method)))
}

/// A CSeq value written the plain way — decimal digits that fit a `u32`, one space, and a
/// method of printable ASCII characters — found by scanning: the number and the method.
/// `None` for anything else, which is left to the general reading (of which this is the
/// common case: the same number and method).
fn plain_cseq(value: &str) -> Option<(u32, &str)> {
    let bytes = value.as_bytes();
    let mut num: u32 = 0;
    let mut at = 0;
    while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
        num = num.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
        at += 1;
    }
    if at == 0 || bytes.get(at) != Some(&b' ') {
        return None;
    }
    let method = &value[at + 1..];
    (!method.is_empty() && method.bytes().all(|b| b.is_ascii_graphic())).then_some((num, method))
}

/// A status line written the plain way — `SIP/2.0 SP 3DIGIT SP Reason-Phrase` (RFC 3261
/// §7.2), the version exactly so, a code of 100 to 699 and a reason of any text but CR and
/// LF — found by scanning: the code and the reason, trimmed. `None` for anything else, which
/// is left to the general parser: this accepts only lines it accepts too, with the same code
/// and reason (nearly every response a peer sends, without its nom combinators).
fn plain_status_line(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = match rest.as_bytes() {
        [c @ b'1'..=b'6', d @ b'0'..=b'9', u @ b'0'..=b'9', b' ', ..] => (
            u16::from(c - b'0') * 100 + u16::from(d - b'0') * 10 + u16::from(u - b'0'),
            &rest[4..],
        ),
        _ => return None,
    };
    if reason.bytes().any(|b| matches!(b, b'\r' | b'\n')) {
        return None;
    }
    Some((code, reason.trim()))
}

/// A request line written the plain way — `METHOD SP sip-uri SP SIP/2.0`, single spaces, an
/// RFC method spelled exactly, and a `sip:`/`sips:` URI with an optional user of unreserved
/// characters, a host that is a dotted quad or a name starting with a letter, an optional
/// port and `;name[=value]` parameters of unreserved characters — found by scanning: the
/// method and the URI. `None` for anything else, which is left to the general parser: this
/// accepts only lines it accepts too, with the same method (nearly every request a peer
/// sends, without the allocations of its failed alternatives).
fn plain_request_line(line: &str) -> Option<(Method, &str)> {
    let (method, rest) = split_once_byte(line, b' ')?;
    let (uri, version) = split_once_byte(rest, b' ')?;
    if version != "SIP/2.0" {
        return None;
    }
    let method = Method::rfc(method)?;
    is_plain_sip_uri(uri).then_some((method, uri))
}

/// See [`plain_request_line`].
fn is_plain_sip_uri(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return false;
    };
    let unreserved = |s: &[u8]| !s.is_empty() && s.iter().all(|&b| is_unreserved_byte(b));
    let host_port = match split_once_byte(rest, b'@') {
        Some((user, host_port)) => {
            let user_ok = !user.is_empty()
                && user
                    .bytes()
                    .all(|b| is_unreserved_byte(b) || matches!(b, b'(' | b')' | b'+'));
            if !user_ok {
                return false;
            }
            host_port
        }
        None => rest,
    };
    let (host_port, params) =
        host_port.split_at(find_byte(host_port, b';').unwrap_or(host_port.len()));
    let (host, port) = match split_once_byte(host_port, b':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    if !(is_dotted_quad(host) || is_plain_host_name(host)) {
        return false;
    }
    if let Some(digits) = port {
        if !(1..=5).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits
                .bytes()
                .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
                > u32::from(u16::MAX)
        {
            return false;
        }
    }
    if params.is_empty() {
        return true;
    }
    params.as_bytes()[1..].split(|&b| b == b';').all(|param| {
        match param.iter().position(|&b| b == b'=') {
            Some(eq) => unreserved(&param[..eq]) && unreserved(&param[eq + 1..]),
            None => unreserved(param),
        }
    })
}

/// The position of the first `byte` (ASCII) in `s`: a scan, cheaper than `str::find` for
/// the short pieces of a line.
fn find_byte(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|b| b == byte)
}

/// `s.split_once(byte)`, by [`find_byte`].
fn split_once_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = find_byte(s, byte)?;
    Some((&s[..at], &s[at + 1..]))
}

/// The first Via value (empty values and lines are skipped, as [`Message::header_values`]
/// does, so that the top Via of a message and of what is built from it agree).
fn top_via(headers: &HeaderMap) -> Option<Via> {
    for raw in headers.values(&Name::VIA) {
        if let Some(value) = split_list(headers.text(raw)).next() {
            return Via::parse(headers.source(raw), value)
                .ok()
                .map(|(_, via)| via);
        }
    }
    None
}

/// The `branch` parameter of the first Via value, `first` being the first Via line's value:
/// what `top_via(headers)?.params.get_val("branch")` gives, without the general parser for
/// the plain Via values nearly every message has (see [`plain_via_branch`]).
fn top_branch(headers: &mut HeaderMap, first: Option<Span>) -> Option<Span> {
    if let Some(raw) = first {
        let text = headers.text(raw);
        let top = text[..text.bytes().position(|b| b == b',').unwrap_or(text.len())].trim();
        if let Some(branch) = plain_via_branch(top) {
            return branch.map(|b| headers.sub(raw, b));
        }
    }
    let branch = top_via(headers).and_then(|via| via.params.get_val("branch").cloned())?;
    Some(headers.add(branch))
}

/// The branch of a Via value written the plain way — `SIP/2.0/<letters> <host>[:<port>]`,
/// then `;name[=value]` parameters of unreserved characters, no whitespace, no escapes, no
/// quotes — found by scanning: `Some(branch)` (`Some(None)`: no branch, or one without a
/// value). `None` for anything else, which is left to the general parser: this accepts only
/// values on which both agree (a host is a dotted quad, a bracketed IPv6 address or a name
/// starting with a letter, since a name starting with digits may begin with an IPv4 address).
fn plain_via_branch(value: &str) -> Option<Option<&str>> {
    // Bytes, not chars: every delimiter is ASCII, and no byte of a multi-byte character is
    // (nor is one a letter, digit or unreserved byte: such a value is left to the parser).
    let rest = value.strip_prefix("SIP/2.0/")?;
    let bytes = rest.as_bytes();
    // The transport: letters, then one space.
    let space = bytes.iter().position(|b| !b.is_ascii_alphabetic())?;
    if space == 0 || bytes[space] != b' ' {
        return None;
    }
    let from = space + 1;
    let semi = bytes[from..]
        .iter()
        .position(|&b| b == b';')
        .map_or(bytes.len(), |p| from + p);
    let sent_by = &rest[from..semi];
    let port = if let Some(v6) = sent_by.strip_prefix('[') {
        let close = v6.bytes().position(|b| b == b']')?;
        v6[..close].parse::<std::net::Ipv6Addr>().ok()?;
        &v6[close + 1..]
    } else {
        let colon = sent_by
            .bytes()
            .position(|b| b == b':')
            .unwrap_or(sent_by.len());
        let host = &sent_by[..colon];
        if !(is_dotted_quad(host) || is_plain_host_name(host)) {
            return None;
        }
        &sent_by[colon..]
    };
    if let Some(digits) = port.strip_prefix(':') {
        if !(1..=5).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits
                .bytes()
                .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
                > u32::from(u16::MAX)
        {
            return None;
        }
    } else if !port.is_empty() {
        return None;
    }
    // `;name[=value]` parameters, each of unreserved bytes, the name not empty.
    let unreserved = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| !is_unreserved_byte(b))
            .map_or(bytes.len(), |p| from + p)
    };
    let mut branch = None;
    let mut at = semi;
    while at < bytes.len() {
        // `bytes[at]` is a `;`.
        let name = at + 1;
        at = unreserved(name);
        if at == name {
            return None;
        }
        let is_branch = &bytes[name..at] == b"branch";
        let mut param_value = None;
        if bytes.get(at) == Some(&b'=') {
            let start = at + 1;
            at = unreserved(start);
            param_value = Some(&rest[start..at]);
        }
        if at < bytes.len() && bytes[at] != b';' {
            return None;
        }
        if is_branch && branch.is_none() {
            branch = Some(param_value);
        }
    }
    Some(branch.flatten())
}

/// Four decimal octets, each 0–255 without leading zeros.
fn is_dotted_quad(host: &str) -> bool {
    // One pass over the bytes: four octets of 1–3 digits, no leading zero, at most 255.
    let (mut octets, mut digits, mut value, mut leading_zero) = (0, 0, 0u32, false);
    for b in host.bytes().chain(std::iter::once(b'.')) {
        match b {
            b'0'..=b'9' => {
                if digits == 0 {
                    leading_zero = b == b'0';
                } else if leading_zero || digits == 3 {
                    return false;
                }
                digits += 1;
                value = value * 10 + u32::from(b - b'0');
            }
            b'.' => {
                if digits == 0 || value > 255 {
                    return false;
                }
                octets += 1;
                (digits, value) = (0, 0);
            }
            _ => return false,
        }
    }
    octets == 4
}

/// A host name starting with a letter: labels of letters, digits and inner hyphens, separated
/// by dots, with an optional final dot.
fn is_plain_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host).as_bytes();
    if !name.first().is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    // One pass over the bytes; `previous` starts as a dot: the start of a label.
    let mut previous = b'.';
    for &b in name {
        let ok = match b {
            b'.' => !matches!(previous, b'.' | b'-'),
            b'-' => previous != b'.',
            _ => b.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
        previous = b;
    }
    !matches!(previous, b'.' | b'-')
}

fn skip_leading_crlf(mut data: Bytes) -> Bytes {
    let n = data
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    data.advance(n);
    data
}

/// One SIP message as a WebSocket message carries it (RFC 7118 §5.1: the WebSocket message
/// bounds it; `Content-Length` is not needed) made ready for a [`StreamFramer`], so that a
/// WebSocket connection is parsed as TCP is: a message without `Content-Length` gets one
/// counting the rest of the WebSocket message (as a datagram's body is the rest of the
/// datagram, [`Message::parse_datagram`]), written after its start line. A message with one,
/// or without a head, is left as it is (the framer judges it).
#[must_use]
pub fn frame_for_stream(frame: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let start = frame
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let message = &frame[start..];
    let Ok(head_end) = find_head_end(message) else {
        return frame.into();
    };
    if !matches!(scan_content_length(message, head_end), Ok(None)) {
        return frame.into();
    }
    let Some(line_end) = memchr_nl(message).map(|p| p + 1) else {
        return frame.into();
    };
    let body = message.len() - head_end;
    let mut out = Vec::with_capacity(message.len() + 24);
    out.extend_from_slice(&message[..line_end]);
    out.extend_from_slice(format!("Content-Length: {body}\r\n").as_bytes());
    out.extend_from_slice(&message[line_end..]);
    out.into()
}

/// Find the end of the head (the index just past the blank line).
fn find_head_end(data: &[u8]) -> Result<usize, ParseError> {
    find_head_end_from(data, 0)
}

/// [`find_head_end`], starting the search at `from` (a position before which no blank line
/// can end: a stream resumes where its last search stopped instead of rescanning the head).
fn find_head_end_from(data: &[u8], from: usize) -> Result<usize, ParseError> {
    let limit = data.len().min(MAX_HEAD_LEN + 4);
    let mut i = from.min(limit);
    while let Some(pos) = memchr_nl(&data[i..limit]) {
        let nl = i + pos;
        // `nl` is a LF; the head ends at LF (CR)? LF.
        let next = nl + 1;
        if data.get(next) == Some(&b'\n') {
            return Ok(next + 1);
        }
        if data.get(next) == Some(&b'\r') && data.get(next + 1) == Some(&b'\n') {
            return Ok(next + 2);
        }
        i = next;
    }
    // Too large only once the whole window was seen without an end: the same verdict
    // whether the bytes came at once or in pieces.
    if data.len() >= MAX_HEAD_LEN + 4 {
        Err(ParseError::at(MAX_HEAD_LEN, ParseErrorKind::HeadTooLarge))
    } else {
        Err(ParseError::at(data.len(), ParseErrorKind::IncompleteHead))
    }
}

fn memchr_nl(data: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', data)
}

/// Find `Content-Length` (or `l`) in the head without a full parse, for framing.
fn scan_content_length(data: &[u8], head_end: usize) -> Result<Option<usize>, ParseError> {
    let head = &data[..head_end];
    let mut line_start = 0;
    let mut found = None;
    while line_start < head.len() {
        let line_end = memchr_nl(&head[line_start..]).map_or(head.len(), |p| line_start + p);
        if let Some(len) = content_length_line(&head[line_start..line_end], line_start)? {
            found = Some(len);
        }
        line_start = line_end + 1;
    }
    Ok(found)
}

/// The length a head's line (without its LF; at `line_start`) gives, if it is a
/// `Content-Length` (or `l`) line; an error if it is one that gives no valid length.
#[inline]
fn content_length_line(line: &[u8], line_start: usize) -> Result<Option<usize>, ParseError> {
    // The name, trimmed, is all that precedes the first colon: `content-length` or `l` (of
    // any case) with white space around; the other lines are not searched for their colon.
    let Some(first) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    let name_end = match line[first] {
        b'l' | b'L' => first + 1,
        // `Content-L…` first (nearly every other line is refused at its ninth byte).
        b'c' | b'C'
            if line
                .get(first + 8)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'l'))
                && line
                    .get(first..first + 14)
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"content-length")) =>
        {
            first + 14
        }
        _ => return Ok(None),
    };
    let Some(colon) = line[name_end..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|p| name_end + p)
        .filter(|&p| line[p] == b':')
    else {
        return Ok(None);
    };
    let value = line[colon + 1..].trim_ascii();
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&len| len <= MAX_BODY_LEN)
        .map(Some)
        .ok_or(ParseError::at(
            line_start + colon + 1,
            ParseErrorKind::BadContentLength,
        ))
}

/// [`find_head_end`] and then [`scan_content_length`] over the head found, in one pass over
/// its lines (as a datagram is framed): the end of the head and the length, or the error the
/// two would give, in that order.
fn frame_head(data: &[u8]) -> Result<(usize, Option<usize>), ParseError> {
    let limit = data.len().min(MAX_HEAD_LEN + 4);
    let mut line_start = 0;
    let mut length = Ok(None);
    while let Some(pos) = memchr_nl(&data[line_start..limit]) {
        let nl = line_start + pos;
        // The first bad Content-Length is the error, once the head is known to end.
        if length.is_ok() {
            match content_length_line(&data[line_start..nl], line_start) {
                Ok(None) => {}
                found => length = found,
            }
        }
        let next = nl + 1;
        if data.get(next) == Some(&b'\n') {
            return length.map(|len| (next + 1, len));
        }
        if data.get(next) == Some(&b'\r') && data.get(next + 1) == Some(&b'\n') {
            return length.map(|len| (next + 2, len));
        }
        line_start = next;
    }
    // As `find_head_end` finds no end.
    find_head_end(data).map(|_| unreachable!("no end of head was found"))
}

/// Splits a byte stream (TCP, later TLS) into messages by `Content-Length`.
///
/// Feed it what the socket gave with [`StreamFramer::push`], then take messages with
/// [`StreamFramer::next_message`] until it returns `None`. After an error the stream cannot be
/// resynchronised and the connection should be closed.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    consumed: usize,
    /// Bytes of the buffered head already searched for its end, so that a peer sending a
    /// head one byte at a time costs linear, not quadratic, work.
    searched: usize,
    /// RFC 5626 pings (CRLF CRLF) and pongs (a lone CRLF) seen between messages and not yet
    /// taken.
    pings: u32,
    pongs: u32,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The RFC 5626 keep-alives seen between messages since the last call, as
    /// `(pings, pongs)`: each run of CR/LF bytes of four bytes or more counts one ping per
    /// four bytes, a shorter run one pong. Counted as [`next_message`](Self::next_message)
    /// skips them (call it until it returns `None` first); a run split across two reads is
    /// counted as it arrives.
    pub fn take_keepalives(&mut self) -> (u32, u32) {
        (
            std::mem::take(&mut self.pings),
            std::mem::take(&mut self.pongs),
        )
    }

    /// The next complete message, if one is buffered.
    ///
    /// Error offsets count from the start of the stream.
    pub fn next_message(&mut self) -> Option<Result<Message, ParseError>> {
        // RFC 5626 keep-alives (CRLF) between messages are skipped.
        let skip = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if skip >= 4 {
            self.pings = self
                .pings
                .saturating_add(u32::try_from(skip / 4).unwrap_or(u32::MAX));
        } else if skip > 0 {
            self.pongs = self.pongs.saturating_add(1);
        }
        self.buf.advance(skip);
        self.consumed += skip;
        self.searched = self.searched.saturating_sub(skip);
        if self.buf.is_empty() {
            return None;
        }
        let base = self.consumed;
        let shift = |e: ParseError| ParseError::at(e.offset + base, e.kind);
        // A blank line is at most 4 bytes: resume 3 bytes before where the last search ended.
        let head_end = match find_head_end_from(&self.buf, self.searched.saturating_sub(3)) {
            Ok(end) => end,
            Err(e) if e.kind == ParseErrorKind::IncompleteHead => {
                self.searched = self.buf.len();
                return None;
            }
            Err(e) => return Some(Err(shift(e))),
        };
        let len = match scan_content_length(&self.buf, head_end) {
            Ok(Some(len)) => len,
            Ok(None) => {
                return Some(Err(shift(ParseError::at(
                    head_end,
                    ParseErrorKind::StreamWithoutContentLength,
                ))))
            }
            Err(e) => return Some(Err(shift(e))),
        };
        if self.buf.len() < head_end + len {
            return None;
        }
        let raw = self.buf.split_to(head_end + len).freeze();
        self.consumed += raw.len();
        self.searched = 0;
        Some(Message::parse_framed(raw, head_end).map_err(shift))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_websocket_message_without_content_length_is_framed_by_its_end() {
        let frame = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\nCall-ID: w\r\nCSeq: 1 OPTIONS\r\n\r\nhello";
        let framed = frame_for_stream(frame);
        assert!(framed.windows(17).any(|w| w == b"Content-Length: 5"));
        let mut framer = StreamFramer::new();
        framer.push(&framed);
        framer.push(&framed);
        for _ in 0..2 {
            let m = framer.next_message().expect("framed").expect("parsed");
            assert_eq!(m.call_id(), "w");
            assert_eq!(&m.body()[..], b"hello");
        }
        assert!(framer.next_message().is_none());
    }

    #[test]
    fn a_websocket_message_with_content_length_or_no_head_is_kept() {
        let with = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
        assert!(matches!(
            frame_for_stream(with),
            std::borrow::Cow::Borrowed(_)
        ));
        let headless = b"garbage";
        assert_eq!(&frame_for_stream(headless)[..], headless);
    }
    use super::*;

    #[test]
    fn the_stream_framer_counts_pings_and_pongs_between_messages() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let mut f = StreamFramer::new();
        f.push(b"\r\n\r\n");
        assert!(f.next_message().is_none());
        assert_eq!(f.take_keepalives(), (1, 0));
        assert_eq!(f.take_keepalives(), (0, 0));
        f.push(b"\r\n");
        f.push(msg);
        f.push(b"\r\n\r\n\r\n\r\n");
        assert!(matches!(f.next_message(), Some(Ok(_))));
        assert_eq!(f.take_keepalives(), (0, 1));
        assert!(f.next_message().is_none());
        assert_eq!(f.take_keepalives(), (2, 0));
        assert_eq!(f.buffered(), 0);
    }

    /// The scanned request line agrees with the general parser on every combination of
    /// plain and odd pieces, and takes the plain ones without it.
    #[test]
    fn the_scanned_request_line_agrees_with_the_general_parser() {
        let methods = [
            "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "REFER", "invite",
            "INVITEX", "INFORM", "FOO", "",
        ];
        let users = [
            "",
            "alice@",
            "service@",
            "+4930123@",
            "a.b-c_d!e~f*g'h(i)@",
            "@",
            "a%41@",
            "a:pw@",
            "a;b@",
            "a/b@",
            "\u{fc}@",
        ];
        let hosts = [
            "127.0.0.1",
            "1.2.3.400",
            "1.2.3.4a",
            "001.2.3.4",
            "256.1.1.1",
            "1.2.3",
            "example.com",
            "example.com.",
            "a-b.c",
            "-bad.com",
            "a..b",
            "host_x",
            "[::1]",
            "",
        ];
        let ports = ["", ":5060", ":65536", ":", ":0", ":5060x"];
        let params = [
            "",
            ";transport=udp",
            ";lr",
            ";lr;transport=tcp",
            ";user=phone",
            ";x=",
            ";=x",
            ";;lr",
            ";a%41=b",
            ";maddr=[::1]",
            "?subject=x",
            ";lr?h=v",
        ];
        let agree = |line: &str| {
            let raw = Bytes::from(line.to_string());
            let line = std::str::from_utf8(&raw).unwrap();
            let general = match MessageLine::parse(&raw)(line) {
                Ok((rest, MessageLine::Request(r))) if rest.trim().is_empty() => {
                    Some(r.method.to_string())
                }
                _ => None,
            };
            let scanned = plain_request_line(line);
            assert_eq!(
                scanned.as_ref().map(|(m, u)| (m.as_str(), *u)),
                reference::plain_request_line(line)
                    .as_ref()
                    .map(|(m, u)| (m.as_str(), *u)),
                "{line}"
            );
            if let Some((method, uri)) = &scanned {
                assert_eq!(general.as_deref(), Some(method.as_str()), "{line}");
                assert_eq!(Some(*uri), line.split(' ').nth(1), "{line}");
            }
            scanned.is_some()
        };
        let mut cases = 0;
        let mut plain = 0;
        for scheme in ["sip:", "sips:", "SIP:", "tel:"] {
            for user in users {
                for host in hosts {
                    for port in ports {
                        for param in params {
                            cases += 1;
                            let line = format!("INVITE {scheme}{user}{host}{port}{param} SIP/2.0");
                            plain += usize::from(agree(&line));
                        }
                    }
                }
            }
        }
        for method in methods {
            for version in ["SIP/2.0", "SIP/2.0 ", " SIP/2.0", "sip/2.0", "SIP/2.00"] {
                agree(&format!("{method} sip:bob@example.com {version}"));
            }
        }
        assert!(plain >= 500, "{plain} of {cases}");
        for line in [
            "INVITE sip:service@127.0.0.1:5060 SIP/2.0",
            "BYE sip:sipcheck@192.0.2.1:5060;transport=udp SIP/2.0",
            "ACK sip:bob@pbx.example.com SIP/2.0",
            "OPTIONS sip:127.0.0.1 SIP/2.0",
        ] {
            assert!(plain_request_line(line).is_some(), "{line}");
        }
    }

    /// The one-pass dotted-quad check agrees with the plain definition.
    #[test]
    fn dotted_quads() {
        let reference = |host: &str| {
            let octets: Vec<&str> = host.split('.').collect();
            octets.len() == 4
                && octets.iter().all(|o| {
                    (1..=3).contains(&o.len())
                        && o.bytes().all(|b| b.is_ascii_digit())
                        && !(o.len() > 1 && o.starts_with('0'))
                        && o.parse::<u8>().is_ok()
                })
        };
        let parts = [
            "0", "1", "00", "01", "9", "10", "99", "100", "255", "256", "999", "1000", "", "a",
            "1a",
        ];
        let mut quads = 0;
        for a in parts {
            for b in ["0", "255", "256", "01", ""] {
                for c in parts {
                    for tail in ["", ".", ".1", ".1.2"] {
                        let host = format!("{a}.{b}.1.{c}{tail}");
                        assert_eq!(is_dotted_quad(&host), reference(&host), "{host}");
                        quads += usize::from(reference(&host));
                    }
                }
            }
        }
        assert!(quads > 20, "{quads}");
        for host in ["", ".", "1.2.3", "1.2.3.4.", "1..2.3", "127.0.0.1"] {
            assert_eq!(is_dotted_quad(host), reference(host), "{host}");
        }
    }

    /// Methods are case-sensitive tokens (RFC 3261 §7.1): only an RFC method spelled exactly
    /// is that method; `invite` and `INFORM` are extension methods of their own.
    #[test]
    fn methods_are_read_exactly_as_written() {
        let src = Bytes::from_static(b"INVITE invite INFORM FOO REFER");
        let text = std::str::from_utf8(&src).unwrap();
        let got: Vec<Method> = text
            .split(' ')
            .map(|t| Method::from_token(&src, t))
            .collect();
        assert_eq!(got[0], Method::INVITE);
        assert_ne!(got[1], Method::INVITE);
        assert_eq!(got[1].as_str(), "invite");
        assert_ne!(got[2], Method::INFO);
        assert_eq!(got[2].to_string(), "INFORM");
        assert_eq!(got[3], Method::from("FOO"));
        assert_eq!(got[4], Method::REFER);
        // In the request line and in CSeq alike, whichever parser reads the line.
        for (line, method) in [
            ("INFORM sip:a@b SIP/2.0", "INFORM"),
            ("invite sip:a@b SIP/2.0", "invite"),
            ("INFORM  <sip:a@b>  SIP/2.0", "INFORM"),
        ] {
            let raw = format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\r\n");
            if let Ok(m) = Message::parse_datagram(Bytes::from(raw)) {
                assert_eq!(m.method().map(Method::as_str), Some(method), "{line}");
                assert_eq!(m.cseq_method().as_str(), method, "{line}");
                assert_ne!(m.method(), Some(&Method::INFO));
                assert_ne!(m.method(), Some(&Method::INVITE));
            } else {
                assert!(line.contains('<'), "{line} refused");
            }
        }
    }

    /// The scanned branch agrees with the general Via parser on every combination of plain
    /// and odd pieces (hosts that are IPv4 prefixes, bad ports, escapes, quotes, whitespace,
    /// case), and takes the plain ones without it.
    #[test]
    fn the_scanned_via_branch_agrees_with_the_via_parser() {
        let prefixes = [
            "SIP/2.0/UDP ",
            "SIP/2.0/TCP ",
            "SIP / 2.0 / UDP ",
            "sip/2.0/UDP ",
            "SIP/2.0/UDP  ",
            "SIP/2.0/U-P ",
        ];
        let hosts = [
            "127.0.0.1",
            "10.0.0.255",
            "1.2.3.400",
            "1.2.3.4a",
            "1.2.3.4.example.com",
            "001.2.3.4",
            "256.1.1.1",
            "1234.1.1.1",
            "1.2.3",
            "example.com",
            "example.com.",
            "a-b.c",
            "-bad.com",
            "bad-.com",
            "a..b",
            "host_x",
            "ex%41mple.com",
            "[::1]",
            "[2001:db8::5]",
            "[zz]",
            "[::1",
            "",
        ];
        let ports = [
            "", ":5060", ":65535", ":65536", ":", ":99999", ":0", ":5060x",
        ];
        let params = [
            "",
            ";branch=z9hG4bK1",
            ";rport;branch=z9hG4bK2",
            ";branch",
            ";branch=",
            ";Branch=x",
            ";branch=a%41b",
            ";branch=\"q\"",
            ";branch=x;branch=y",
            ";branch;branch=y",
            "; branch=x",
            ";branch=x ",
            ";received=1.2.3.4;branch=z",
            ";branch=x;",
            ";;branch=x",
            ";a=b=c;branch=x",
            ";branch=\u{fc}",
            ";maddr=[::1];branch=k",
        ];
        let mut plain = 0;
        let mut cases = 0;
        for prefix in prefixes {
            for host in hosts {
                for port in ports {
                    for param in params {
                        for tail in ["", ", SIP/2.0/UDP other;branch=second"] {
                            let via = format!("{prefix}{host}{port}{param}{tail}");
                            let text = format!(
                                "OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCall-ID: c\r\n\
                                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                            );
                            let Ok(m) = parse(&text) else { continue };
                            cases += 1;
                            let general = top_via(&m.headers)
                                .and_then(|v| v.params.get_val("branch").cloned());
                            assert_eq!(m.branch(), general.as_deref(), "Via: {via}");
                            let first = via.split(',').next().unwrap().trim();
                            plain += usize::from(plain_via_branch(first).is_some());
                            assert_eq!(
                                plain_via_branch(first),
                                reference::plain_via_branch(first),
                                "{first}"
                            );
                        }
                    }
                }
            }
        }
        // The usual shapes are taken by the scan, not left to the parser.
        assert!(cases > 20_000, "{cases}");
        assert!(plain > 1_000, "{plain} of {cases}");
        for via in [
            "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK.abc",
            "SIP/2.0/UDP [::1]:5070;branch=z9hG4bK-1",
            "SIP/2.0/TLS pbx.example.com;branch=z9hG4bK1;received=192.0.2.1",
        ] {
            assert!(plain_via_branch(via).is_some_and(|b| b.is_some()), "{via}");
        }
    }

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse_datagram(Bytes::copy_from_slice(s.as_bytes()))
    }

    const REGISTER: &str = "REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_request() {
        let m = parse(REGISTER).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::REGISTER));
        assert_eq!(m.request_uri(), Some("sip:registrar.biloxi.com"));
        assert_eq!(m.call_id(), "843817637684230@998sdasdh09");
        assert_eq!(m.cseq(), 1826);
        assert_eq!(m.cseq_method(), &Method::REGISTER);
        assert_eq!(m.branch(), Some("z9hG4bKnashds7"));
        assert_eq!(m.from_tag().as_deref(), Some("456248"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.contact_uris(), vec!["sip:bob@192.0.2.4"]);
        assert!(m.body().is_empty());
    }

    #[test]
    fn parses_a_response_with_compact_headers_and_lf_only_lines() {
        let m = parse(
            "SIP/2.0 180 Ringing\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\n\
f: <sip:a@x>;tag=1\n\
t: <sip:b@x>;tag=2\n\
i: abc\n\
CSEQ: 2 INVITE\n\
m: <sip:b@10.0.0.3>\n\
l: 0\n\n",
        )
        .unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.branch(), Some("z9hG4bK1"));
        assert_eq!(m.header_values(&Name::VIA).count(), 2);
        assert_eq!(m.to_tag().as_deref(), Some("2"));
        assert_eq!(m.call_id(), "abc");
        assert_eq!(m.cseq_method(), &Method::INVITE);
        assert_eq!(m.contact_uris(), vec!["sip:b@10.0.0.3"]);
    }

    #[test]
    fn header_names_are_matched_in_any_case_and_compact_forms_read_as_long() {
        let m = parse(
            "SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nVIA: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
f: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\ni: abc\r\ncseq: 2 INVITE\r\n\
X-Custom: one\r\nx-custom: two\r\nk: timer\r\nl: 0\r\n\r\n",
        )
        .unwrap();
        // Both spellings of Via, in order, under one name.
        assert_eq!(m.header_values(&Name::VIA).count(), 2);
        assert_eq!(m.header(&Name::SUPPORTED), Some("timer"));
        assert_eq!(m.header(&Name::CONTENT_LENGTH), Some("0"));
        let custom: Vec<&str> = m.headers().get_raw(&Name::from("X-CUSTOM")).collect();
        assert_eq!(custom, ["one", "two"]);
        let names: Vec<&str> = m.headers().iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Via",
                "VIA",
                "From",
                "To",
                "Call-ID",
                "cseq",
                "X-Custom",
                "x-custom",
                "Supported",
                "Content-Length"
            ]
        );
    }

    #[test]
    fn a_header_line_without_a_name_or_a_colon_is_an_error() {
        for bad in [
            ": value",
            "No colon here",
            "Bad Name: value",
            "Na\u{1}me: v",
        ] {
            let text = format!(
                "OPTIONS sip:x@y SIP/2.0\r\nCall-ID: q\r\nCSeq: 1 OPTIONS\r\n{bad}\r\n\r\n"
            );
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(err.kind, ParseErrorKind::HeaderLine),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn accepts_folded_lines_and_space_before_colon() {
        let m = parse(
            "OPTIONS sip:x@y SIP/2.0\r\n\
Via : SIP/2.0/UDP 192.0.2.1\r\n ;branch=z9hG4bKkdjuw\r\n\
To: sip:x@y\r\nFrom: sip:c@d;tag=3\r\nCall-ID: q\r\nCSeq: 8 OPTIONS\r\n\
Subject: first\r\n\tsecond\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.branch(), Some("z9hG4bKkdjuw"));
        assert_eq!(m.header(&Name::from("subject")), Some("first second"));
    }

    #[test]
    fn datagram_body_longer_than_content_length_is_trimmed() {
        let m = parse(
            "MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\nTo: <sip:x@y>\r\n\
From: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello, world",
        )
        .unwrap();
        assert_eq!(&m.body()[..], b"hello");
    }

    #[test]
    fn datagram_body_shorter_than_content_length_is_an_error() {
        let err = parse(
            "MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\nTo: <sip:x@y>\r\n\
From: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nl: 50\r\n\r\nhello",
        )
        .unwrap_err();
        assert_eq!(
            err.kind,
            ParseErrorKind::BodyTruncated {
                expected: 50,
                actual: 5
            }
        );
    }

    #[test]
    fn errors_carry_offsets() {
        let err = parse("garbage\r\n\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::StartLine);
        assert_eq!(err.offset, 0);

        let err =
            parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nno colon here\r\n\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::HeaderLine);
        assert_eq!(err.offset, 36);

        let err = parse("SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::MissingHeader("Call-ID"));

        let err = parse("SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: one OPTIONS\r\n\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::BadHeader("CSeq"));

        let err =
            parse("SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: -4\r\n\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::BadContentLength);
        assert_eq!(err.offset, 47);

        let err = parse("SIP/2.0 200 OK\r\nCall-ID: x\r\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::IncompleteHead);

        let mut bad = b"SIP/2.0 200 OK\r\nCall-ID: \xff\r\n\r\n".to_vec();
        let err = Message::parse_datagram(Bytes::from(std::mem::take(&mut bad))).unwrap_err();
        assert_eq!(err, ParseError::at(25, ParseErrorKind::NotUtf8));
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut s = String::from("SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nX-Big: ");
        s.push_str(&"a".repeat(MAX_HEAD_LEN + 10));
        s.push_str("\r\n\r\n");
        assert_eq!(parse(&s).unwrap_err().kind, ParseErrorKind::HeadTooLarge);
    }

    #[test]
    fn never_panics_on_prefixes_of_a_valid_message() {
        for end in 0..REGISTER.len() {
            let _ = Message::parse_datagram(Bytes::copy_from_slice(&REGISTER.as_bytes()[..end]));
        }
    }

    #[test]
    fn stream_framer_splits_by_content_length() {
        let one =
            "MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK9\r\nTo: <sip:x@y>\r\n\
From: <sip:a@b>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello";
        let two = one.replace("c1", "c2").replace("hello", "world");
        let stream = format!("\r\n\r\n{one}{two}");
        let mut framer = StreamFramer::new();
        let mut got = Vec::new();
        // Feed byte by byte: messages appear only when complete.
        for b in stream.as_bytes() {
            framer.push(std::slice::from_ref(b));
            while let Some(m) = framer.next_message() {
                got.push(m.unwrap());
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].call_id(), "c1");
        assert_eq!(&got[0].body()[..], b"hello");
        assert_eq!(got[1].call_id(), "c2");
        assert_eq!(&got[1].body()[..], b"world");
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn stream_without_content_length_is_an_error() {
        let mut framer = StreamFramer::new();
        framer.push(b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let err = framer.next_message().unwrap().unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::StreamWithoutContentLength);
    }

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        let v: Vec<_> =
            split_list(r#""Doe, John" <sip:j@x;a=1,2>;q=0.5, <sip:k@y>, sip:z@w"#).collect();
        assert_eq!(
            v,
            vec![
                r#""Doe, John" <sip:j@x;a=1,2>;q=0.5"#,
                "<sip:k@y>",
                "sip:z@w"
            ]
        );
        let parts = |value| split_list(value).collect::<Vec<_>>();
        assert_eq!(parts("a, , b,"), vec!["a", "b"]);
        assert_eq!(
            parts(r#""x\"," <sip:a>, b"#),
            vec![r#""x\"," <sip:a>"#, "b"]
        );
        assert_eq!(parts(" "), Vec::<&str>::new());
        assert_eq!(parts("<sip:a,b>,<sip:c>"), vec!["<sip:a,b>", "<sip:c>"]);
        assert_eq!(contact_uri(v[0]), "sip:j@x;a=1,2");
        assert_eq!(contact_uri(v[2]), "sip:z@w");
    }

    #[test]
    fn the_call_id_is_found_in_the_head_in_either_form() {
        let long =
            b"INVITE sip:a@b:5060 SIP/2.0\r\nVia: SIP/2.0/UDP h:5060\r\nCALL-id :  x1@h \r\n\r\n";
        assert_eq!(call_id_of(long), Some("x1@h"));
        let compact = b"SIP/2.0 200 OK\r\ni: y2\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(call_id_of(compact), Some("y2"));
        // Bare line feeds, as some peers send.
        assert_eq!(
            call_id_of(b"BYE sip:a@b SIP/2.0\ncall-id: z3\n\n"),
            Some("z3")
        );
        // Not in the head: a body line is not a header.
        let body = b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\ni: not-a-header\r\n";
        assert_eq!(call_id_of(body), None);
        assert_eq!(call_id_of(b"garbage"), None);
    }

    #[test]
    fn a_call_s_messages_have_their_call_id_registrations_and_probes_none() {
        let msg = |cseq: &str| format!("SIP/2.0 200 OK\r\ni: c1\r\nCSeq: {cseq}\r\n\r\n");
        for method in ["INVITE", "ACK", "BYE", "CANCEL", "PRACK", "UPDATE", "INFO"] {
            let m = msg(&format!("7 {method}"));
            assert_eq!(call_message_id(m.as_bytes()), Some("c1"), "{method}");
        }
        for method in [
            "REGISTER",
            "OPTIONS",
            "SUBSCRIBE",
            "PUBLISH",
            "MESSAGE",
            "register",
        ] {
            let m = msg(&format!("7 {method}"));
            assert_eq!(call_message_id(m.as_bytes()), None, "{method}");
        }
        // No CSeq: no call known.
        assert_eq!(call_message_id(b"BYE sip:a@b SIP/2.0\ni: c2\n\n"), None);
    }

    /// What a client transaction keeps of `data` by a scan must be what it would keep of the
    /// parsed message: the same bytes, method, branch and CSeq number.
    fn scan_agrees(data: &[u8]) -> SentRequest {
        let data = Bytes::copy_from_slice(data);
        let scanned = SentRequest::scan(&data).expect("a plain request is scanned");
        let parsed = Message::parse_datagram(data).expect("what is scanned parses");
        let from_parse = SentRequest::from_message(&parsed).expect("a request");
        assert_eq!(scanned.raw(), from_parse.raw());
        assert_eq!(scanned.method(), from_parse.method());
        assert_eq!(scanned.branch(), from_parse.branch());
        assert_eq!(scanned.cseq(), from_parse.cseq());
        assert_eq!(scanned.parse().unwrap().raw(), parsed.raw());
        scanned
    }

    #[test]
    fn a_request_written_the_plain_way_is_scanned_as_the_parser_reads_it() {
        use crate::sip::build::{RequestSpec, ViaSpec};
        use crate::sip::transport::Transport;
        let routes = ["<sip:proxy.example.com;lr>".to_string()];
        let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        for (method, sent_by, routes, body) in [
            (
                "INVITE",
                "192.0.2.1:5060",
                &routes[..],
                Some(("application/sdp", &sdp[..])),
            ),
            ("BYE", "192.0.2.1:5060", &[][..], None),
            ("REGISTER", "[2001:db8::1]:5062", &routes[..], None),
            ("OPTIONS", "127.0.0.1:40000", &[][..], None),
            ("CANCEL", "10.0.0.1:5060", &[][..], None),
        ] {
            let bytes = RequestSpec {
                method,
                uri: "sip:bob@192.0.2.2:5060",
                via: ViaSpec {
                    transport: Transport::Udp,
                    sent_by: sent_by.parse().unwrap(),
                    branch: "z9hG4bK-74a.1",
                    rport: true,
                },
                routes,
                from: "\"Alice\" <sip:alice@192.0.2.1>;tag=a1",
                to: "<sip:bob@192.0.2.2>",
                call_id: "c1@192.0.2.1",
                cseq: 7,
                contact: Some("<sip:alice@192.0.2.1:5060>"),
                extra: &[("Allow", "INVITE, ACK, BYE")],
                body,
            }
            .to_vec();
            let sent = scan_agrees(&bytes);
            assert_eq!(sent.method().as_str(), method);
            assert_eq!(sent.branch(), Some("z9hG4bK-74a.1"));
            assert_eq!(sent.cseq(), 7);
        }
        // Compact names, leading CRLFs, a second Via and Call-ID, and a body longer than
        // Content-Length (trimmed, as the parser trims it).
        let sent = scan_agrees(
            b"\r\nMESSAGE sip:b@example.com SIP/2.0\r\nv: SIP/2.0/TCP a.example.com;branch=z9hG4bKx;rport, SIP/2.0/UDP c.example.com;branch=z9hG4bKy\r\nVia: SIP/2.0/UDP d.example.com;branch=z9hG4bKz\r\ni: first\r\nCall-ID: second\r\nCSeq:  12   MESSAGE \r\nl: 2\r\n\r\nhi there",
        );
        assert_eq!(sent.branch(), Some("z9hG4bKx"));
        assert_eq!(sent.cseq(), 12);
        assert!(sent.raw().ends_with(b"\r\n\r\nhi"));
        // A branch-less Via is read as one (the transaction refuses it).
        let plain = b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(scan_agrees(plain).branch(), Some(""));
    }

    #[test]
    fn a_request_built_by_sipcheck_takes_the_fields_its_writer_gives() {
        let bytes = Bytes::from_static(
            b"BYE sip:b@example.com;branch=z9hG4bKuri SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com:5060;branch=z9hG4bKb1;rport\r\nCall-ID: x\r\nCSeq: 4 BYE\r\nContent-Length: 0\r\n\r\n",
        );
        let sent = SentRequest::built(&bytes, Method::BYE, "z9hG4bKb1", 4).expect("built");
        let parsed =
            SentRequest::from_message(&Message::parse_datagram(bytes.clone()).unwrap()).unwrap();
        assert_eq!(sent.raw(), parsed.raw());
        assert_eq!(sent.branch(), parsed.branch());
        assert_eq!(sent.method(), parsed.method());
        assert_eq!(sent.cseq(), parsed.cseq());
        // The branch shares the request's buffer.
        let branch = sent.branch_shared().unwrap();
        assert_eq!(branch.as_str().as_ptr(), bytes[92..].as_ptr());
        // A branch the Via does not carry (or only as a prefix) is not taken.
        assert!(SentRequest::built(&bytes, Method::BYE, "z9hG4bKuri", 4).is_none());
        assert!(SentRequest::built(&bytes, Method::BYE, "z9hG4bKb", 4).is_none());
        assert!(SentRequest::built(&bytes, Method::BYE, "z9hG4bKother", 4).is_none());
    }

    #[test]
    fn a_request_not_written_the_plain_way_is_left_to_the_parser() {
        let head = |via: &str, rest: &str| {
            format!("OPTIONS sip:b@example.com SIP/2.0\r\nVia: {via}\r\n{rest}\r\n")
        };
        let plain_via = "SIP/2.0/UDP a.example.com;branch=z9hG4bK1";
        let ok = "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        // The control: the plain form is scanned.
        assert!(SentRequest::scan(&Bytes::from(head(plain_via, ok))).is_some());
        let cases = [
            // LF-only line ends, a folded line, a CR alone.
            head(plain_via, ok).replace("\r\n", "\n"),
            head(plain_via, "Call-ID: x\r\n  y\r\nCSeq: 1 OPTIONS\r\n"),
            head(plain_via, "Call-ID: x\ry\r\nCSeq: 1 OPTIONS\r\n"),
            // No branch; a Via of a form only the general parser reads.
            head("SIP/2.0/UDP a.example.com", ok),
            head("SIP/2.0/UDP a.example.com;branch=\"z9hG4bK1\"", ok),
            head("SIP/2.0/UDP a.example.com ; branch=z9hG4bK1", ok),
            format!("OPTIONS sip:b@example.com SIP/2.0\r\n{ok}\r\n"),
            // No Call-ID, an empty one; CSeq missing, malformed, with three parts.
            head(plain_via, "CSeq: 1 OPTIONS\r\n"),
            head(plain_via, "Call-ID: \r\nCSeq: 1 OPTIONS\r\n"),
            head(plain_via, "Call-ID: x\r\n"),
            head(plain_via, "Call-ID: x\r\nCSeq: one OPTIONS\r\n"),
            head(plain_via, "Call-ID: x\r\nCSeq: 1 OPTIONS x\r\n"),
            // A header line without a name; a request line not of the plain form; a response.
            head(plain_via, "Call-ID: x\r\n: nameless\r\nCSeq: 1 OPTIONS\r\n"),
            format!("options sip:b@example.com SIP/2.0\r\nVia: {plain_via}\r\n{ok}\r\n"),
            format!("SIP/2.0 200 OK\r\nVia: {plain_via}\r\n{ok}\r\n"),
            // Not framed: no end of head, a body shorter than Content-Length, not UTF-8.
            format!("OPTIONS sip:b@example.com SIP/2.0\r\nVia: {plain_via}\r\n{ok}"),
            head(
                plain_via,
                "Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 9\r\n",
            ),
            "nonsense\r\n\r\n".to_string(),
            // A second Content-Length (found by the sip_message fuzz target: a malformed
            // first one the parser refuses, a good second).
            head(
                plain_via,
                "Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: x\r\nl: 0\r\n",
            ),
        ];
        for case in &cases {
            assert!(
                SentRequest::scan(&Bytes::from(case.clone())).is_none(),
                "scanned: {case:?}"
            );
        }
        let mut latin1 = head(plain_via, ok).into_bytes();
        let at = latin1.len() - 6;
        latin1[at] = 0xe9;
        assert!(SentRequest::scan(&Bytes::from(latin1)).is_none());
    }

    /// The implementations the scanners replaced, kept as the references they must agree
    /// with.
    mod reference {
        use super::*;
        use ezk_sip_types::msg::PullParser;

        fn split_header_line(line: &str) -> Option<(&str, &str)> {
            let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let end = line.find(|c: char| !is_token_char(c)).unwrap_or(line.len());
            if end == 0 {
                return None;
            }
            let rest = line[end..].trim_start_matches(|c: char| c.is_ascii_whitespace());
            let value = rest.strip_prefix(':')?;
            Some((
                &line[..end],
                value.trim_start_matches(|c: char| c.is_ascii_whitespace()),
            ))
        }

        fn is_token_char(c: char) -> bool {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '-' | '.' | '!' | '%' | '*' | '_' | '`' | '\'' | '~' | '+'
                )
        }

        fn canonical_name(name: &str) -> &str {
            match name.as_bytes() {
                [c] => match c.to_ascii_lowercase() {
                    b'v' => "Via",
                    b'f' => "From",
                    b't' => "To",
                    b'i' => "Call-ID",
                    b'm' => "Contact",
                    b'l' => "Content-Length",
                    b'c' => "Content-Type",
                    b'e' => "Content-Encoding",
                    b'k' => "Supported",
                    b's' => "Subject",
                    b'o' => "Event",
                    b'u' => "Allow-Events",
                    b'r' => "Refer-To",
                    b'x' => "Session-Expires",
                    b'b' => "Referred-By",
                    _ => name,
                },
                _ => name,
            }
        }

        fn unfold(s: &str) -> String {
            if !s.contains(['\r', '\n']) {
                return s.trim_end().to_string();
            }
            let mut out = String::with_capacity(s.len());
            for (i, piece) in s.split('\n').enumerate() {
                let piece = piece.trim_end_matches('\r');
                if i == 0 {
                    out.push_str(piece.trim_end());
                } else {
                    out.push(' ');
                    out.push_str(piece.trim());
                }
            }
            out
        }

        /// The header lines of `head` as the parser read them (by `PullParser`, one
        /// `BytesStr` per name and value): names (long form) and values, or the error.
        pub(super) fn headers(head: &str) -> Result<Vec<(String, String)>, ParseError> {
            let mut lines = PullParser::new(head.as_bytes(), 0);
            if !matches!(lines.next(), Some(Ok(_))) {
                return Err(ParseError::at(0, ParseErrorKind::StartLine));
            }
            let mut out = Vec::new();
            let mut offset = lines.progress();
            for line in lines.by_ref() {
                let Ok(line) = line else {
                    return Err(ParseError::at(offset, ParseErrorKind::IncompleteHead));
                };
                let at = line.as_ptr() as usize - head.as_ptr() as usize;
                let text = &head[at..at + line.len()];
                let Some((name, value)) = split_header_line(text) else {
                    return Err(ParseError::at(at, ParseErrorKind::HeaderLine));
                };
                out.push((canonical_name(name).to_string(), unfold(value)));
                offset = at + line.len();
            }
            Ok(out)
        }

        /// `PullParser`'s lines of `input`: start, end, and whether each is folded (holds
        /// a CR or LF); `Err` where it finds the head incomplete.
        pub(super) fn lines(input: &[u8]) -> Vec<Result<(usize, usize, bool), ()>> {
            let mut parser = PullParser::new(input, 0);
            let mut out = Vec::new();
            for line in parser.by_ref() {
                let done = line.is_err();
                out.push(
                    line.map(|l| {
                        let at = l.as_ptr() as usize - input.as_ptr() as usize;
                        (
                            at,
                            at + l.len(),
                            l.iter().any(|b| matches!(b, b'\r' | b'\n')),
                        )
                    })
                    .map_err(|_| ()),
                );
                if done {
                    break;
                }
            }
            out
        }

        pub(super) fn scan_content_length(
            data: &[u8],
            head_end: usize,
        ) -> Result<Option<usize>, ParseError> {
            let head = &data[..head_end];
            let mut line_start = 0;
            let mut found = None;
            while line_start < head.len() {
                let line_end =
                    memchr_nl(&head[line_start..]).map_or(head.len(), |p| line_start + p);
                let line = &head[line_start..line_end];
                let candidate = line
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| matches!(b, b'c' | b'C' | b'l' | b'L'));
                if candidate {
                    if let Some(colon) = line.iter().position(|&b| b == b':') {
                        let name = line[..colon].trim_ascii();
                        if name.eq_ignore_ascii_case(b"content-length")
                            || name.eq_ignore_ascii_case(b"l")
                        {
                            let value = line[colon + 1..].trim_ascii();
                            let len = std::str::from_utf8(value)
                                .ok()
                                .and_then(|v| v.parse::<usize>().ok())
                                .filter(|&len| len <= MAX_BODY_LEN)
                                .ok_or(ParseError::at(
                                    line_start + colon + 1,
                                    ParseErrorKind::BadContentLength,
                                ))?;
                            found = Some(len);
                        }
                    }
                }
                line_start = line_end + 1;
            }
            Ok(found)
        }

        pub(super) fn cseq(value: &str) -> Option<(u32, &str)> {
            let mut parts = value.split_whitespace();
            let num = parts.next()?.parse::<u32>().ok()?;
            let method = parts.next()?;
            parts.next().is_none().then_some((num, method))
        }

        pub(super) fn is_plain_host_name(host: &str) -> bool {
            let name = host.strip_suffix('.').unwrap_or(host);
            name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }

        pub(super) fn plain_request_line(line: &str) -> Option<(Method, &str)> {
            let (method, rest) = line.split_once(' ')?;
            let (uri, version) = rest.split_once(' ')?;
            if version != "SIP/2.0" {
                return None;
            }
            let method = Method::rfc(method)?;
            is_plain_sip_uri(uri).then_some((method, uri))
        }

        /// See [`plain_request_line`].
        fn is_plain_sip_uri(uri: &str) -> bool {
            let Some(rest) = uri
                .strip_prefix("sip:")
                .or_else(|| uri.strip_prefix("sips:"))
            else {
                return false;
            };
            let unreserved = |s: &str| !s.is_empty() && s.bytes().all(is_unreserved_byte);
            let host_port = match rest.split_once('@') {
                Some((user, host_port)) => {
                    let user_ok = !user.is_empty()
                        && user
                            .bytes()
                            .all(|b| is_unreserved_byte(b) || matches!(b, b'(' | b')' | b'+'));
                    if !user_ok {
                        return false;
                    }
                    host_port
                }
                None => rest,
            };
            let (host_port, params) =
                host_port.split_at(host_port.find(';').unwrap_or(host_port.len()));
            let (host, port) = match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            };
            if !(is_dotted_quad(host) || is_plain_host_name(host)) {
                return false;
            }
            if let Some(digits) = port {
                if !(1..=5).contains(&digits.len())
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || digits.parse::<u16>().is_err()
                {
                    return false;
                }
            }
            if params.is_empty() {
                return true;
            }
            params[1..]
                .split(';')
                .all(|param| match param.split_once('=') {
                    Some((name, value)) => unreserved(name) && unreserved(value),
                    None => unreserved(param),
                })
        }

        pub(super) fn plain_via_branch(value: &str) -> Option<Option<&str>> {
            let rest = value.strip_prefix("SIP/2.0/")?;
            let (transport, rest) = rest.split_once(' ')?;
            if transport.is_empty() || !transport.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            let (sent_by, params) = rest.split_at(rest.find(';').unwrap_or(rest.len()));
            let port = if let Some(v6) = sent_by.strip_prefix('[') {
                let (address, port) = v6.split_once(']')?;
                address.parse::<std::net::Ipv6Addr>().ok()?;
                port
            } else {
                let (host, port) = sent_by.split_at(sent_by.find(':').unwrap_or(sent_by.len()));
                if !(is_dotted_quad(host) || is_plain_host_name(host)) {
                    return None;
                }
                port
            };
            if let Some(digits) = port.strip_prefix(':') {
                if !(1..=5).contains(&digits.len())
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || digits.parse::<u16>().is_err()
                {
                    return None;
                }
            } else if !port.is_empty() {
                return None;
            }
            if params.is_empty() {
                return Some(None);
            }
            let mut branch = None;
            for param in params[1..].split(';') {
                let (name, param_value) = match param.split_once('=') {
                    Some((name, v)) => (name, Some(v)),
                    None => (param, None),
                };
                let plain = |s: &str| s.bytes().all(is_unreserved_byte);
                if name.is_empty() || !plain(name) || !param_value.is_none_or(plain) {
                    return None;
                }
                if name == "branch" && branch.is_none() {
                    branch = Some(param_value);
                }
            }
            Some(branch.flatten())
        }
    }

    /// The head's lines are split as `PullParser` splits them, folded ones told apart: every
    /// string of up to 7 bytes over an alphabet of line ends, blanks and text.
    #[test]
    fn head_lines_are_split_as_the_pull_parser_splits_them() {
        let alphabet = [b'a', b' ', b'\t', b'\r', b'\n', b':'];
        let mut input = Vec::new();
        let mut cases = 0;
        for len in 0..=7u32 {
            for mut n in 0..alphabet.len().pow(len) {
                input.clear();
                for _ in 0..len {
                    input.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let mut ours = Vec::new();
                for line in HeadLines::new(&input) {
                    let done = line.is_err();
                    ours.push(line.map(|l| (l.start, l.end, l.folded)));
                    if done {
                        break;
                    }
                }
                assert_eq!(
                    ours,
                    reference::lines(&input),
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
                cases += 1;
            }
        }
        assert!(cases > 300_000, "{cases}");
    }

    /// Header lines are read as they were read before positions were kept: the same names
    /// (long forms) and values (unfolded, trimmed), Call-ID and CSeq, or the same error at the
    /// same offset, for names and values of odd forms (letters of other scripts, white space
    /// of either kind, folding, a CR alone, no colon, no name).
    #[test]
    fn header_lines_are_read_as_before() {
        let names = [
            "Via",
            "v",
            "X-\u{dc}",
            "\u{fc}",
            "\u{65e5}\u{672c}",
            "a b",
            "",
            " Via",
            "\x0cVia",
            "Na\u{1}me",
            "Via ",
            "Call-ID",
            "i",
            "CALL-id",
            "CSeq",
            "cseq",
            "Subject",
            "s",
            "Q",
            "x.y!%*_`'~+",
            "\u{20ac}",
            "Cseq\u{fc}",
        ];
        let seps = [
            ":", " :", ": ", ":\t", "", " : ", ":\r\n ", "\r\n :", "\u{a0}:",
        ];
        let values = [
            "x",
            "",
            " x ",
            "x\u{a0}",
            "a\r\n b",
            "a\n\tb",
            "\u{e9}",
            "x\u{b}",
            "a\rb",
            "a\r\n\tb \r\n c ",
            "\u{a0}",
            "x\u{85}",
            "a, b",
            "7 OPTIONS",
            "7  OPTIONS\u{b}",
        ];
        let mut read = 0;
        for name in names {
            for sep in seps {
                for value in values {
                    let line = format!("{name}{sep}{value}");
                    let text = format!(
                        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{line}\r\n\
                         Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
                    );
                    let head_end = find_head_end(text.as_bytes()).unwrap();
                    let expected = reference::headers(&text[..head_end]);
                    let got = Message::parse_datagram(Bytes::from(text.clone()));
                    let headers = match (&got, expected) {
                        (Err(e), Err(r)) => {
                            assert_eq!(*e, r, "{line:?}");
                            continue;
                        }
                        (_, Ok(headers)) => headers,
                        (got, Err(r)) => panic!("{line:?}: {got:?} against {r:?}"),
                    };
                    let first = |n: &str| {
                        headers
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(n))
                            .map(|(_, v)| v.as_str())
                    };
                    let call_id = first("Call-ID").map(str::trim).filter(|c| !c.is_empty());
                    let Some(call_id) = call_id else {
                        assert_eq!(
                            got.unwrap_err().kind,
                            ParseErrorKind::MissingHeader("Call-ID"),
                            "{line:?}"
                        );
                        continue;
                    };
                    let Some(cseq) = first("CSeq").and_then(reference::cseq) else {
                        assert_eq!(
                            got.unwrap_err().kind,
                            ParseErrorKind::BadHeader("CSeq"),
                            "{line:?}"
                        );
                        continue;
                    };
                    let m = got.unwrap_or_else(|e| panic!("{line:?}: {e}"));
                    let ours: Vec<(String, String)> = m
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(ours, headers, "{line:?}");
                    assert_eq!(m.call_id(), call_id, "{line:?}");
                    assert_eq!((m.cseq(), m.cseq_method().as_str()), cseq, "{line:?}");
                    if let Some(value) = first("Subject") {
                        assert_eq!(m.header(&Name::SUBJECT), Some(value.trim()));
                        let shared = m.header_shared(&Name::SUBJECT).unwrap();
                        assert_eq!(shared.as_str(), value.trim());
                    }
                    read += 1;
                }
            }
        }
        assert!(read > 500, "{read}");
        // The names the parser notes as it reads are those it looks up.
        assert!(Name::VIA.as_print_str().eq_ignore_ascii_case("via"));
        assert!(Name::CALL_ID.as_print_str().eq_ignore_ascii_case("call-id"));
        assert!(Name::CSEQ.as_print_str().eq_ignore_ascii_case("cseq"));
    }

    /// The scanned status line agrees with the general parser on every combination of plain
    /// and odd pieces, and takes the plain ones without it.
    #[test]
    fn the_scanned_status_line_agrees_with_the_general_parser() {
        let versions = [
            "SIP/2.0 ",
            "SIP/2.0  ",
            "SIP/2.0\t",
            "sip/2.0 ",
            "SIP/2.00 ",
            "SIP/2.0",
            "SIP/3.0 ",
            " SIP/2.0 ",
        ];
        let codes = [
            "200",
            "100",
            "180",
            "699",
            "700",
            "099",
            "000",
            "1000",
            "20",
            "2x0",
            "+20",
            "\u{662}\u{660}\u{660}",
            "２００",
        ];
        let seps = [" ", "  ", "\t", "", " \t"];
        let reasons = [
            "OK",
            "",
            " ",
            "Ringing ",
            "Bad\rthing",
            "a\r\n b",
            "D\u{e9}clin\u{e9}",
            "\u{a0}x\u{a0}",
            "\u{b}",
            "OK OK",
            "Session Progress",
            "\n",
            "\u{2028}",
        ];
        let (mut plain, mut cases) = (0, 0);
        for version in versions {
            for code in codes {
                for sep in seps {
                    for reason in reasons {
                        cases += 1;
                        let raw = Bytes::from(format!("{version}{code}{sep}{reason}"));
                        let line = std::str::from_utf8(&raw).unwrap();
                        let Some((code, reason)) = plain_status_line(line) else {
                            continue;
                        };
                        plain += 1;
                        assert!((100..=699).contains(&code), "{line:?}");
                        let general = match MessageLine::parse(&raw)(line) {
                            Ok((_, MessageLine::Response(status))) => Some((
                                status.code.into_u16(),
                                status.reason.unwrap_or_default().to_string(),
                            )),
                            _ => None,
                        };
                        assert_eq!(general, Some((code, reason.to_string())), "{line:?}");
                    }
                }
            }
        }
        assert!(plain >= 30, "{plain} of {cases}");
        for line in [
            "SIP/2.0 200 OK",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 100 Trying",
            "SIP/2.0 486 Busy Here",
            "SIP/2.0 603 D\u{e9}clin\u{e9}",
            "SIP/2.0 200 ",
        ] {
            assert!(plain_status_line(line).is_some(), "{line}");
        }
        // Odd forms are left to the general parser, which reads them as before.
        let m = parse("SIP/2.0  200   Fine  \r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n").unwrap();
        assert_eq!((m.status(), m.reason()), (Some(200), Some("Fine")));
        let err = parse("SIP/2.0 700 Odd\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n").unwrap_err();
        assert_eq!(err, ParseError::at(8, ParseErrorKind::StartLine));
    }

    /// The scanned CSeq agrees with the general reading of its value.
    #[test]
    fn the_scanned_cseq_agrees_with_the_general_reading() {
        let values = [
            "1 INVITE",
            "01 INVITE",
            "0 ACK",
            "4294967295 BYE",
            "4294967296 BYE",
            "99999999999 BYE",
            "+1 INVITE",
            "-1 INVITE",
            "1  INVITE",
            "1\tINVITE",
            "1 INVITE x",
            "1 invite",
            "1 INV\u{ce}TE",
            "1",
            "1 ",
            " 1 INVITE",
            "1 INVITE\u{b}",
            "1 I\u{b}X",
            "x INVITE",
            "",
            "1 I\u{a0}",
            "1 \u{a0}I",
            "1 X-Y.z",
            "\u{661} BYE",
        ];
        for value in values {
            if let Some(got) = plain_cseq(value) {
                assert_eq!(Some(got), reference::cseq(value), "{value:?}");
            }
        }
        for value in ["1 INVITE", "2 BYE", "4294967295 ACK", "7 X-Y.z"] {
            assert!(plain_cseq(value).is_some(), "{value}");
        }
    }

    /// The one-pass host name check agrees with the label by label one.
    #[test]
    fn plain_host_names() {
        let parts = [
            "a", "A1", "a-b", "-a", "a-", "1a", "", "a_b", "\u{e9}", "xn--d", "a--b", "-",
        ];
        for a in parts {
            for b in parts {
                for tail in ["", ".", "..", ".c", ".-"] {
                    for host in [
                        format!("{a}.{b}{tail}"),
                        format!("{a}{tail}"),
                        format!("{a}{b}"),
                    ] {
                        assert_eq!(
                            is_plain_host_name(&host),
                            reference::is_plain_host_name(&host),
                            "{host}"
                        );
                    }
                }
            }
        }
    }

    /// A datagram's head is framed in one pass as it was in two: the same end of head and
    /// Content-Length, or the same error (the end of the head's first).
    #[test]
    fn a_datagram_s_head_is_framed_as_in_two_passes() {
        let lines = [
            "Content-Length: 5",
            "l: 0",
            "l : 3",
            " content-length:2",
            "CONTENT-LENGTH :\t7 ",
            "Content-Length: x",
            "l: -1",
            "Content-Length: 99999999",
            "Content-Lengthy: 3",
            "Contact: <sip:a>",
            "lx: 4",
            "Content-Length",
            "l:",
            "c: 4",
            "Content-Length: 1: 2",
            "L: \u{663}",
            "\u{b}l: 1",
            "Content-Length\r: 1",
        ];
        let ends = ["\r\n\r\n", "\n\n", "\n\r\n", "\r\n", "", "\r\n \r\n\r\n"];
        for a in lines {
            for b in lines {
                for end in ends {
                    for text in [
                        format!("SIP/2.0 200 OK\r\n{a}\r\n{b}{end}hello"),
                        format!("{a}\n{b}{end}"),
                    ] {
                        let data = text.as_bytes();
                        let expected = find_head_end(data).and_then(|end| {
                            reference::scan_content_length(data, end).map(|len| (end, len))
                        });
                        assert_eq!(frame_head(data), expected, "{text:?}");
                        if let Ok((end, _)) = expected {
                            assert_eq!(
                                scan_content_length(data, end),
                                reference::scan_content_length(data, end)
                            );
                        }
                    }
                }
            }
        }
        let mut big = String::from("SIP/2.0 200 OK\r\nl: x\r\nX: ");
        big.push_str(&"a".repeat(MAX_HEAD_LEN));
        assert_eq!(
            frame_head(big.as_bytes()),
            Err(ParseError::at(MAX_HEAD_LEN, ParseErrorKind::HeadTooLarge))
        );
    }
}
