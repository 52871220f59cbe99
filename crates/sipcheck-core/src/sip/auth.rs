//! SIP digest authentication, client side (RFC 2617, RFC 7616, RFC 8760).
//!
//! A server challenges a request with a `401 Unauthorized` carrying `WWW-Authenticate` or a
//! proxy with a `407 Proxy Authentication Required` carrying `Proxy-Authenticate`. The user
//! agent answers by resending the request with an `Authorization` or `Proxy-Authorization`
//! header whose `response` is a hash over the credentials, the server's nonce and the request.
//!
//! This module is sans-IO: it parses challenge header values, keeps one [`DigestClient`] per
//! user agent with the last challenge per realm, and hands back the header values to add to the
//! next request. Client nonces come from the caller's [`IdGen`], so tests are reproducible.
//!
//! ```
//! use sipcheck_core::ids::IdGen;
//! use sipcheck_core::sip::auth::{ChallengeKind, Credentials, DigestClient};
//!
//! let mut client = DigestClient::new(Credentials::new("bob", "zanzibar"));
//! let mut ids = IdGen::new(1);
//! // The 401 to our REGISTER carried this WWW-Authenticate value:
//! client
//!     .on_challenge(ChallengeKind::Www, r#"Digest realm="biloxi.com", nonce="abc", qop="auth""#)
//!     .unwrap();
//! let headers = client.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
//! assert_eq!(headers[0].0, "Authorization");
//! assert!(headers[0].1.contains("nc=00000001"));
//! ```
//!
//! What this client does, in RFC terms:
//! - algorithms `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`, `SHA-512-256` and
//!   `SHA-512-256-sess` (RFC 7616 §3.4.1, RFC 8760 §2.2); anything else is
//!   [`AuthError::UnsupportedAlgorithm`];
//! - `qop=auth` whenever offered, `qop=auth-int` (a hash over the body) only when it is the sole
//!   option, and the RFC 2069 form (no `cnonce`, no `nc`) when the challenge has no `qop`;
//! - `nc` counts the uses of one nonce, from `00000001`;
//! - when one response carries several challenges for the same realm (RFC 8760 §2.4, one per
//!   algorithm in the server's order of preference) the topmost supported one wins;
//! - `userhash=true` (RFC 7616 §3.4.4) is honoured.
//!
//! The password never appears in `Debug` output or in error messages.

use std::fmt;
use std::str::FromStr;

use crate::ids::IdGen;

/// What can go wrong when reading a challenge or answering it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header value does not follow the `challenge` grammar (RFC 7616 §3.3).
    #[error("digest challenge is malformed at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset in the header value where parsing stopped.
        offset: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// The challenge uses a scheme other than `Digest` (for example `Basic`).
    #[error("authentication scheme {0:?} is not supported, only Digest is")]
    UnsupportedScheme(String),
    /// A parameter the digest challenge requires is absent.
    #[error("digest challenge has no {0} parameter")]
    MissingParameter(&'static str),
    /// A parameter appears twice (RFC 7616 §3.3: each at most once).
    #[error("digest challenge repeats the {0} parameter")]
    DuplicateParameter(String),
    /// The `algorithm` parameter names an algorithm this client cannot compute.
    #[error("digest algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    /// The `qop` parameter offers neither `auth` nor `auth-int`.
    #[error("digest qop options {0:?} offer neither auth nor auth-int")]
    UnsupportedQop(String),
    /// A response to a request had no challenge header at all.
    #[error("the response carries no authentication challenge")]
    NoChallenge,
    /// The server challenged again credentials we already sent: the username or password is
    /// wrong (or not allowed), and retrying would loop.
    #[error("credentials for realm {realm:?} were rejected ({kind} challenged them again)")]
    Rejected {
        /// Which header challenged.
        kind: ChallengeKind,
        /// The realm whose credentials were refused.
        realm: String,
    },
}

/// A password: the one password type of the crate, held by scenario accounts, the command
/// line and [`Credentials`]. `Debug` and `Display` print `***`, never the secret; only
/// [`Password::expose`] gives it, for the digest hash.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for digest authentication. Never print it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty password (none was given).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Password {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Password {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;

    /// Any text is a password (the empty one stands for none).
    fn from_str(secret: &str) -> Result<Self, Self::Err> {
        Ok(Self(secret.to_owned()))
    }
}

/// A username and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest username (usually the user part of the address of record).
    pub username: String,
    password: Password,
}

impl Credentials {
    /// Credentials for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<Password>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// True when a password is set (not empty).
    pub fn has_password(&self) -> bool {
        !self.password.is_empty()
    }
}

/// Who challenged: the server at the far end (401) or a proxy on the way (407).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `401 Unauthorized`, `WWW-Authenticate`, answered with `Authorization`.
    Www,
    /// `407 Proxy Authentication Required`, `Proxy-Authenticate`, answered with
    /// `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The kind of challenge a response status carries: 401 and 407, else `None`.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            401 => Some(Self::Www),
            407 => Some(Self::Proxy),
            _ => None,
        }
    }

    /// The response header carrying the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            Self::Www => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    /// The request header carrying the answer.
    pub fn answer_header(self) -> &'static str {
        match self {
            Self::Www => "Authorization",
            Self::Proxy => "Proxy-Authorization",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.challenge_header())
    }
}

/// A digest hash algorithm (RFC 7616 §3.4.1, IANA "HTTP Digest Algorithm Values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the RFC 3261 default.
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256` (SHA-512/256).
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// The token as it appears in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Whether this is a `-sess` variant, whose HA1 also covers the nonce and cnonce.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Lowercase hex of the hash of `parts` joined with `:`.
    fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> String {
            let mut hasher = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    hasher.update(b":");
                }
                hasher.update(part);
            }
            hex(&hasher.finalize())
        }
        match self {
            Self::Md5 | Self::Md5Sess => run::<md5::Md5>(parts),
            Self::Sha256 | Self::Sha256Sess => run::<sha2::Sha256>(parts),
            Self::Sha512_256 | Self::Sha512_256Sess => run::<sha2::Sha512_256>(parts),
        }
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [Algorithm; 6] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ];
        ALL.into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| AuthError::UnsupportedAlgorithm(s.to_owned()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quality of protection (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: the response covers method and request-URI.
    Auth,
    /// `auth-int`: the response also covers a hash of the body.
    AuthInt,
}

impl Qop {
    /// The token as it appears in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `Digest` challenge: the value of one `WWW-Authenticate` or `Proxy-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space; credentials are cached per realm.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Opaque data the answer echoes verbatim.
    pub opaque: Option<String>,
    /// `stale=true`: the previous nonce expired but the credentials were fine.
    pub stale: bool,
    /// The `algorithm` parameter, `None` when absent (which means MD5).
    pub algorithm: Option<Algorithm>,
    /// The supported `qop` options offered, in order; empty when the challenge has no `qop`
    /// (the RFC 2069 compatibility form). Unknown options are dropped.
    pub qop: Vec<Qop>,
    /// `userhash=true`: send `H(username:realm)` instead of the username (RFC 7616 §3.4.4).
    pub userhash: bool,
}

impl Challenge {
    /// Parses a challenge header value such as
    /// `Digest realm="x", nonce="y", qop="auth,auth-int", algorithm=SHA-256`.
    ///
    /// The scheme and parameter names are case-insensitive, values may be quoted or not, empty
    /// list elements are skipped and unknown parameters ignored. Never panics.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = parse_params(value)?;
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut stale = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut userhash = None;
        for (name, value) in params {
            let slot = match name.to_ascii_lowercase().as_str() {
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "opaque" => &mut opaque,
                "stale" => &mut stale,
                "algorithm" => &mut algorithm,
                "qop" => &mut qop,
                "userhash" => &mut userhash,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(AuthError::DuplicateParameter(name.to_ascii_lowercase()));
            }
        }
        let algorithm = algorithm.map(|a| a.parse::<Algorithm>()).transpose()?;
        let qop = match qop {
            None => Vec::new(),
            Some(raw) => {
                let mut offered = Vec::new();
                for option in raw.split(',').map(str::trim) {
                    let option = if option.eq_ignore_ascii_case("auth") {
                        Qop::Auth
                    } else if option.eq_ignore_ascii_case("auth-int") {
                        Qop::AuthInt
                    } else {
                        continue;
                    };
                    if !offered.contains(&option) {
                        offered.push(option);
                    }
                }
                if offered.is_empty() {
                    return Err(AuthError::UnsupportedQop(raw));
                }
                offered
            }
        };
        let is_true = |v: Option<String>| v.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            realm: realm.ok_or(AuthError::MissingParameter("realm"))?,
            nonce: nonce.ok_or(AuthError::MissingParameter("nonce"))?,
            opaque,
            stale: is_true(stale),
            algorithm,
            qop,
            userhash: is_true(userhash),
        })
    }

    /// The algorithm to compute with: the one named, or MD5 when absent.
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// The qop to answer with: `auth` when offered, else `auth-int` when offered, else `None`
    /// (the RFC 2069 form).
    pub fn selected_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        }
    }

    /// The answer header value (for `Authorization` or `Proxy-Authorization`) to a request
    /// with `method`, request-URI `uri` and `body`, using client nonce `cnonce` and nonce
    /// count `nc` (from 1).
    ///
    /// `cnonce` and `nc` are left out of the header in the RFC 2069 form (no `qop`), except
    /// that `-sess` algorithms always send the `cnonce` their HA1 covers.
    pub fn answer(
        &self,
        credentials: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
        nc: u32,
    ) -> String {
        let algorithm = self.effective_algorithm();
        let qop = self.selected_qop();
        let nc = format!("{nc:08x}");
        let response = self.response(credentials, method, uri, body, cnonce, &nc);
        let (username, userhash) = if self.userhash {
            let hashed =
                algorithm.hash_hex(&[credentials.username.as_bytes(), self.realm.as_bytes()]);
            (hashed, true)
        } else {
            (credentials.username.clone(), false)
        };

        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}",
            quote(&username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            quote(&response),
        );
        if let Some(algorithm) = self.algorithm {
            out.push_str(", algorithm=");
            out.push_str(algorithm.as_str());
        }
        if qop.is_some() || algorithm.is_session() {
            out.push_str(", cnonce=");
            out.push_str(&quote(cnonce));
        }
        if let Some(qop) = qop {
            out.push_str(", qop=");
            out.push_str(qop.as_str());
            out.push_str(", nc=");
            out.push_str(&nc);
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            out.push_str(&quote(opaque));
        }
        if userhash {
            out.push_str(", userhash=true");
        }
        out
    }

    /// The `response` value in lowercase hex (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).
    fn response(
        &self,
        credentials: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
        nc: &str,
    ) -> String {
        let algorithm = self.effective_algorithm();
        let mut ha1 = algorithm.hash_hex(&[
            credentials.username.as_bytes(),
            self.realm.as_bytes(),
            credentials.password.expose().as_bytes(),
        ]);
        if algorithm.is_session() {
            ha1 = algorithm.hash_hex(&[ha1.as_bytes(), self.nonce.as_bytes(), cnonce.as_bytes()]);
        }
        let qop = self.selected_qop();
        let ha2 = if qop == Some(Qop::AuthInt) {
            let body_hash = algorithm.hash_hex(&[body]);
            algorithm.hash_hex(&[method.as_bytes(), uri.as_bytes(), body_hash.as_bytes()])
        } else {
            algorithm.hash_hex(&[method.as_bytes(), uri.as_bytes()])
        };
        match qop {
            Some(qop) => algorithm.hash_hex(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ]),
            None => algorithm.hash_hex(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }
}

impl FromStr for Challenge {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The last challenge of one kind for one realm, and how we have used it.
#[derive(Debug, Clone)]
struct Entry {
    kind: ChallengeKind,
    challenge: Challenge,
    /// Uses of this nonce so far; the next answer sends `nc + 1`.
    nc: u32,
    /// The client nonce fixed for this nonce by a `-sess` algorithm (its HA1 covers it).
    session_cnonce: Option<String>,
    /// An answer was sent since the challenge arrived or since the last final response.
    sent: bool,
    /// The challenge arrived before the last final response: answers to it are pre-emptive
    /// reuses of a cached nonce, which the server may have expired without saying `stale`.
    cached: bool,
    /// A `stale=true` challenge was already followed for the current request.
    stale_retried: bool,
}

/// The digest client of one user agent.
///
/// Feed it the challenges of every 401/407 ([`on_challenge`](Self::on_challenge) or
/// [`on_challenges`](Self::on_challenges)), ask it for the headers of every request
/// ([`authorize`](Self::authorize)) and tell it when a request got any other final response
/// ([`on_success`](Self::on_success)). It remembers the last challenge per realm and kind and
/// reuses its nonce, counting `nc`, on later requests.
///
/// It never loops on a wrong password: a challenge to credentials that were sent in answer to
/// a challenge for the same request is [`AuthError::Rejected`], unless it says `stale=true`,
/// which is followed once per request. A re-challenge with a *new* nonce to credentials that
/// reused a cached nonce is followed once too (the nonce expired).
///
/// The state is per user agent, not per transaction: it assumes one authenticated request at a
/// time is waiting for its final response.
#[derive(Debug, Clone)]
pub struct DigestClient {
    credentials: Credentials,
    entries: Vec<Entry>,
}

impl DigestClient {
    /// A client with no challenge yet.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            entries: Vec::new(),
        }
    }

    /// The credentials this client answers with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Feeds one challenge header value of a 401 (`Www`) or 407 (`Proxy`).
    ///
    /// `Ok(())` means: resend the request with [`authorize`](Self::authorize).
    /// [`AuthError::Rejected`] means the credentials were refused: do not retry.
    pub fn on_challenge(
        &mut self,
        kind: ChallengeKind,
        header_value: &str,
    ) -> Result<(), AuthError> {
        self.on_challenges([(kind, header_value)])
    }

    /// Feeds all the challenge headers of one response, in message order (a forking proxy may
    /// gather `WWW-Authenticate` and `Proxy-Authenticate` from several branches into one).
    ///
    /// Per kind and realm the first challenge that parses with a supported algorithm is kept
    /// (RFC 8760 §2.4: servers list their preferred algorithm first); challenges that fail to
    /// parse are ignored as long as one is usable, otherwise the first error is returned. If
    /// any realm's credentials were rejected, returns [`AuthError::Rejected`] for the first.
    pub fn on_challenges<'a>(
        &mut self,
        challenges: impl IntoIterator<Item = (ChallengeKind, &'a str)>,
    ) -> Result<(), AuthError> {
        let mut first_error = None;
        let mut usable: Vec<(ChallengeKind, Challenge)> = Vec::new();
        for (kind, value) in challenges {
            match Challenge::parse(value) {
                Ok(challenge) => {
                    if !usable
                        .iter()
                        .any(|(k, c)| *k == kind && c.realm == challenge.realm)
                    {
                        usable.push((kind, challenge));
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if usable.is_empty() {
            return Err(first_error.unwrap_or(AuthError::NoChallenge));
        }
        let mut rejected = None;
        for (kind, challenge) in usable {
            if let Err(error) = self.store(kind, challenge) {
                rejected.get_or_insert(error);
            }
        }
        rejected.map_or(Ok(()), Err)
    }

    /// Records `challenge`, or refuses it when it re-challenges credentials already answered.
    fn store(&mut self, kind: ChallengeKind, challenge: Challenge) -> Result<(), AuthError> {
        let position = self
            .entries
            .iter()
            .position(|e| e.kind == kind && e.challenge.realm == challenge.realm);
        let mut stale_retried = false;
        if let Some(i) = position {
            let old = &self.entries[i];
            stale_retried = old.stale_retried;
            if old.sent {
                let accepted = if challenge.stale {
                    !old.stale_retried
                } else {
                    old.cached && old.challenge.nonce != challenge.nonce
                };
                if !accepted {
                    let realm = challenge.realm;
                    self.entries.remove(i);
                    return Err(AuthError::Rejected { kind, realm });
                }
                stale_retried |= challenge.stale;
            }
        }
        let entry = Entry {
            kind,
            challenge,
            nc: 0,
            session_cnonce: None,
            sent: false,
            cached: false,
            stale_retried,
        };
        match position {
            Some(i) => self.entries[i] = entry,
            None => self.entries.push(entry),
        }
        Ok(())
    }

    /// The headers to add to a request with `method`, request-URI `uri` and `body`: one
    /// `(name, value)` pair per remembered challenge, in the order the challenges arrived.
    /// Empty before any challenge.
    ///
    /// Each call counts as one use of each nonce (`nc` goes up), so call it once per new
    /// request, not per retransmission. A CANCEL or a non-2xx ACK reuses the INVITE's headers
    /// (RFC 3261 §22.1) rather than calling this again.
    pub fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        ids: &mut IdGen,
    ) -> Vec<(&'static str, String)> {
        let credentials = &self.credentials;
        self.entries
            .iter_mut()
            .map(|entry| {
                entry.nc = entry.nc.saturating_add(1);
                entry.sent = true;
                let cnonce = if entry.challenge.effective_algorithm().is_session() {
                    entry
                        .session_cnonce
                        .get_or_insert_with(|| ids.cnonce())
                        .clone()
                } else if entry.challenge.selected_qop().is_some() {
                    ids.cnonce()
                } else {
                    String::new()
                };
                let value =
                    entry
                        .challenge
                        .answer(credentials, method, uri, body, &cnonce, entry.nc);
                (entry.kind.answer_header(), value)
            })
            .collect()
    }

    /// Records that the last request got a final response other than 401/407, so the next
    /// request starts afresh (its "already tried" and stale state reset). Nonces stay cached.
    pub fn on_success(&mut self) {
        for entry in &mut self.entries {
            entry.sent = false;
            entry.cached = true;
            entry.stale_retried = false;
        }
    }
}

/// Splits `Digest name=value, name="value", ...` into its parameters, with quoted values
/// unescaped. Checks the scheme is `Digest` (any case).
///
/// Works on bytes and only slices at ASCII delimiters, which are always char boundaries, so it
/// cannot panic on any input.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, AuthError> {
    let bytes = input.as_bytes();
    let is_ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        i
    };
    let malformed = |offset: usize, reason: &'static str| AuthError::Malformed { offset, reason };

    let mut i = skip_ws(0);
    let start = i;
    while i < bytes.len() && is_token(bytes[i]) {
        i += 1;
    }
    if i == start {
        return Err(malformed(i, "expected the authentication scheme"));
    }
    let scheme = &input[start..i];
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::UnsupportedScheme(scheme.to_owned()));
    }
    if i < bytes.len() && !is_ws(bytes[i]) {
        return Err(malformed(i, "expected whitespace after the scheme"));
    }

    let mut params = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 7230 §7).
        while i < bytes.len() && (is_ws(bytes[i]) || bytes[i] == b',') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let name_start = i;
        while i < bytes.len() && is_token(bytes[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(malformed(i, "expected a parameter name"));
        }
        let name = input[name_start..i].to_owned();
        i = skip_ws(i);
        if bytes.get(i) != Some(&b'=') {
            return Err(malformed(i, "expected '=' after the parameter name"));
        }
        i = skip_ws(i + 1);
        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut value = Vec::new();
            loop {
                match bytes.get(i) {
                    None => return Err(malformed(i, "unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match bytes.get(i + 1) {
                        Some(&escaped) => {
                            value.push(escaped);
                            i += 2;
                        }
                        None => return Err(malformed(i, "unterminated quoted string")),
                    },
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            // Only ASCII backslashes were dropped, so the bytes are still valid UTF-8.
            String::from_utf8_lossy(&value).into_owned()
        } else {
            let value_start = i;
            while i < bytes.len() && !is_ws(bytes[i]) && !matches!(bytes[i], b',' | b'"') {
                i += 1;
            }
            if i == value_start {
                return Err(malformed(i, "expected a parameter value"));
            }
            input[value_start..i].to_owned()
        };
        params.push((name, value));
        i = skip_ws(i);
        match bytes.get(i) {
            None | Some(b',') => {}
            Some(_) => return Err(malformed(i, "expected ',' between parameters")),
        }
    }
    Ok(params)
}

/// `tchar` of RFC 7230 §3.2.6.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `s` as a quoted-string, escaping `"` and `\`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of parameter `name` in an answer header.
    fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        let rest = header.strip_prefix("Digest ")?;
        rest.split(", ").find_map(|p| {
            let (n, v) = p.split_once('=')?;
            (n == name).then(|| v.trim_matches('"'))
        })
    }

    fn challenge(value: &str) -> Challenge {
        Challenge::parse(value).unwrap()
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let c = challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let creds = Credentials::new("Mufasa", "Circle Of Life");
        assert_eq!(
            c.response(
                &creds,
                "GET",
                "/dir/index.html",
                b"",
                "0a4f113b",
                "00000001"
            ),
            "6629fae49393a05397450978507c4ef1"
        );
        let header = c.answer(&creds, "GET", "/dir/index.html", b"", "0a4f113b", 1);
        assert_eq!(
            header,
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41""#
        );
    }

    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

    fn rfc7616(algorithm: &str) -> Challenge {
        challenge(&format!(
            r#"Digest
               realm="http-auth@example.org",
               qop="auth, auth-int",
               algorithm={algorithm},
               nonce="{RFC7616_NONCE}",
               opaque="{RFC7616_OPAQUE}""#
        ))
    }

    #[test]
    fn rfc7616_section_3_9_1_md5() {
        let c = rfc7616("MD5");
        let creds = Credentials::new("Mufasa", "Circle of Life");
        let header = c.answer(&creds, "GET", "/dir/index.html", b"", RFC7616_CNONCE, 1);
        assert_eq!(
            param(&header, "response"),
            Some("8ca523f5e9506fed4657c9700eebdbec")
        );
        assert_eq!(param(&header, "algorithm"), Some("MD5"));
        assert_eq!(param(&header, "opaque"), Some(RFC7616_OPAQUE));
        assert_eq!(param(&header, "cnonce"), Some(RFC7616_CNONCE));
        assert!(header.contains(", qop=auth, nc=00000001"));
    }

    #[test]
    fn rfc7616_section_3_9_1_sha256() {
        let c = rfc7616("SHA-256");
        let creds = Credentials::new("Mufasa", "Circle of Life");
        let header = c.answer(&creds, "GET", "/dir/index.html", b"", RFC7616_CNONCE, 1);
        assert_eq!(
            param(&header, "response"),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(param(&header, "algorithm"), Some("SHA-256"));
    }

    #[test]
    fn parses_a_full_challenge_in_any_case() {
        let c = challenge(
            r#"  dIgEsT   REALM = "x" ,NONCE=y,, qop="auth,auth-int", Algorithm=sha-256, opaque="z", Stale=TRUE, domain="sip:a sip:b", foo=bar"#,
        );
        assert_eq!(c.realm, "x");
        assert_eq!(c.nonce, "y");
        assert_eq!(c.opaque.as_deref(), Some("z"));
        assert!(c.stale);
        assert_eq!(c.algorithm, Some(Algorithm::Sha256));
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert!(!c.userhash);
    }

    #[test]
    fn quoted_strings_unescape() {
        let c = challenge(r#"Digest realm="a \"b\" \\ c", nonce="n""#);
        assert_eq!(c.realm, r#"a "b" \ c"#);
        assert_eq!(quote(&c.realm), r#""a \"b\" \\ c""#);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-1"#),
            Err(AuthError::UnsupportedAlgorithm("SHA-1".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#),
            Err(AuthError::UnsupportedScheme("Basic".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest nonce="n""#),
            Err(AuthError::MissingParameter("realm"))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r""#),
            Err(AuthError::MissingParameter("nonce"))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", Realm="s""#),
            Err(AuthError::DuplicateParameter("realm".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-conf""#),
            Err(AuthError::UnsupportedQop("auth-conf".into()))
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r"#),
            Err(AuthError::Malformed {
                reason: "unterminated quoted string",
                ..
            })
        ));
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r" nonce="n""#),
            Err(AuthError::Malformed { offset: 17, .. })
        ));
    }

    #[test]
    fn algorithms_are_case_insensitive() {
        for (text, algorithm) in [
            ("md5", Algorithm::Md5),
            ("MD5-SESS", Algorithm::Md5Sess),
            ("sha-256", Algorithm::Sha256),
            ("Sha-256-Sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("sha-512-256-sess", Algorithm::Sha512_256Sess),
        ] {
            assert_eq!(text.parse::<Algorithm>(), Ok(algorithm));
        }
    }

    #[test]
    fn sha512_256_hashes_with_sha512_256() {
        // FIPS 180-4 example: SHA-512/256("abc").
        assert_eq!(
            Algorithm::Sha512_256.hash_hex(&[b"abc"]),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }

    #[test]
    fn parser_never_panics_on_nasty_input() {
        let commas = format!("Digest {}", ",".repeat(10 * 1024));
        let many_params = format!("Digest {}", "a=b,".repeat(2000));
        let nasty = [
            "",
            " ",
            "Digest",
            "Digest ",
            "digest\t",
            "Digest=",
            "Digest realm",
            "Digest realm=",
            "Digest realm=\"",
            "Digest realm=\"\\",
            "Digest realm=\"abc\\\"",
            "Digest realm=\"x\", nonce",
            "Digest ,,,=,,,",
            "Dïgest realm=x",
            "日本語",
            "\u{0}\u{1}\u{7f}",
            "Digest realm=\"x\"\"y\"",
            "Digest realm=x\"y, nonce=z",
            "Digest qop=\"\", realm=x, nonce=y",
            "Digest algorithm=, realm=x, nonce=y",
            "Digest realm=x, nonce=y, qop=,",
            commas.as_str(),
            many_params.as_str(),
        ];
        for input in nasty {
            assert!(Challenge::parse(input).is_err(), "accepted {input:?}");
        }
        // Non-ASCII is fine inside values, quoted or not, even right after a backslash.
        let c = challenge("Digest realm=\"é\", nonce=\"ü\\é\", opaque=日本");
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("é", "üé"));
        assert_eq!(c.opaque.as_deref(), Some("日本"));
        // Every prefix of a valid challenge, cut at every char boundary.
        let valid = r#"Digest realm="rëalm", nonce="n\"1", qop="auth,auth-int", opaque="o""#;
        for (cut, _) in valid.char_indices() {
            let _ = Challenge::parse(&valid[..cut]);
        }
        assert!(Challenge::parse(valid).is_ok());
    }

    #[test]
    fn parser_survives_random_soup() {
        const PIECES: [&str; 16] = [
            "Digest", " ", ",", "=", "\"", "\\", "realm", "nonce", "qop", "auth", "auth-int",
            "stale", "\t", "é", "日", "x",
        ];
        let mut ids = IdGen::new(0x5eed);
        for _ in 0..20_000 {
            let len = ids.next_u32() % 24;
            let input: String = (0..len)
                .map(|_| PIECES[(ids.next_u32() % 16) as usize])
                .collect();
            let _ = Challenge::parse(&input);
        }
    }

    fn client() -> DigestClient {
        DigestClient::new(Credentials::new("bob", "zanzibar"))
    }

    const CHALLENGE: &str = r#"Digest realm="biloxi.com", nonce="n1", qop="auth""#;

    #[test]
    fn no_challenge_no_headers() {
        let mut ids = IdGen::new(1);
        assert!(client()
            .authorize("INVITE", "sip:a@b", b"", &mut ids)
            .is_empty());
    }

    #[test]
    fn nc_counts_uses_of_a_nonce_and_resets_on_a_new_one() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        let first = c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        assert_eq!(param(&first[0].1, "nc"), Some("00000001"));
        c.on_success();
        let second = c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        assert_eq!(param(&second[0].1, "nc"), Some("00000002"));
        assert_eq!(param(&second[0].1, "nonce"), Some("n1"));
        assert_ne!(param(&first[0].1, "cnonce"), param(&second[0].1, "cnonce"));
        assert_ne!(
            param(&first[0].1, "response"),
            param(&second[0].1, "response")
        );
        // The server expired the nonce silently and issued a new one: followed, nc restarts.
        c.on_challenge(
            ChallengeKind::Www,
            r#"Digest realm="biloxi.com", nonce="n2", qop="auth""#,
        )
        .unwrap();
        let third = c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        assert_eq!(param(&third[0].1, "nc"), Some("00000001"));
        assert_eq!(param(&third[0].1, "nonce"), Some("n2"));
    }

    #[test]
    fn qop_list_picks_auth() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(
            ChallengeKind::Www,
            r#"Digest realm="r", nonce="n", qop="auth-int, auth""#,
        )
        .unwrap();
        let h = c.authorize("INVITE", "sip:a@b", b"v=0\r\n", &mut ids);
        assert_eq!(param(&h[0].1, "qop"), Some("auth"));
    }

    #[test]
    fn auth_int_alone_hashes_the_body() {
        let c = challenge(r#"Digest realm="r", nonce="n", qop="auth-int""#);
        assert_eq!(c.selected_qop(), Some(Qop::AuthInt));
        let creds = Credentials::new("u", "p");
        let ha1 = Algorithm::Md5.hash_hex(&[b"u", b"r", b"p"]);
        let body_hash = Algorithm::Md5.hash_hex(&[b"body"]);
        let ha2 = Algorithm::Md5.hash_hex(&[b"INVITE", b"sip:x", body_hash.as_bytes()]);
        let expected = Algorithm::Md5.hash_hex(&[
            ha1.as_bytes(),
            b"n",
            b"00000001",
            b"cn",
            b"auth-int",
            ha2.as_bytes(),
        ]);
        let header = c.answer(&creds, "INVITE", "sip:x", b"body", "cn", 1);
        assert_eq!(param(&header, "response"), Some(expected.as_str()));
        assert_eq!(param(&header, "qop"), Some("auth-int"));
        let other_body = c.answer(&creds, "INVITE", "sip:x", b"other", "cn", 1);
        assert_ne!(header, other_body);
    }

    #[test]
    fn no_qop_uses_the_rfc2069_form() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, r#"Digest realm="r", nonce="n""#)
            .unwrap();
        let h = &c.authorize("REGISTER", "sip:r", b"", &mut ids)[0].1;
        let ha1 = Algorithm::Md5.hash_hex(&[b"bob", b"r", b"zanzibar"]);
        let ha2 = Algorithm::Md5.hash_hex(&[b"REGISTER", b"sip:r"]);
        let expected = Algorithm::Md5.hash_hex(&[ha1.as_bytes(), b"n", ha2.as_bytes()]);
        assert_eq!(param(h, "response"), Some(expected.as_str()));
        for absent in ["cnonce", "nc", "qop", "algorithm", "opaque"] {
            assert_eq!(param(h, absent), None, "{absent} in {h}");
        }
    }

    #[test]
    fn sess_variants_hash_the_nonce_and_cnonce_into_ha1() {
        for (algorithm, plain) in [
            (Algorithm::Md5Sess, Algorithm::Md5),
            (Algorithm::Sha256Sess, Algorithm::Sha256),
            (Algorithm::Sha512_256Sess, Algorithm::Sha512_256),
        ] {
            let c = challenge(&format!(
                r#"Digest realm="r", nonce="n", qop=auth, algorithm={algorithm}"#
            ));
            let creds = Credentials::new("u", "p");
            let inner = plain.hash_hex(&[b"u", b"r", b"p"]);
            let ha1 = plain.hash_hex(&[inner.as_bytes(), b"n", b"cn"]);
            let ha2 = plain.hash_hex(&[b"GET", b"/"]);
            let expected = plain.hash_hex(&[
                ha1.as_bytes(),
                b"n",
                b"00000001",
                b"cn",
                b"auth",
                ha2.as_bytes(),
            ]);
            let header = c.answer(&creds, "GET", "/", b"", "cn", 1);
            assert_eq!(param(&header, "response"), Some(expected.as_str()));
            assert_eq!(param(&header, "algorithm"), Some(algorithm.as_str()));
        }
    }

    #[test]
    fn sess_keeps_one_cnonce_per_nonce() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(
            ChallengeKind::Www,
            r#"Digest realm="r", nonce="n", qop=auth, algorithm=MD5-sess"#,
        )
        .unwrap();
        let a = c.authorize("REGISTER", "sip:r", b"", &mut ids);
        c.on_success();
        let b = c.authorize("REGISTER", "sip:r", b"", &mut ids);
        assert_eq!(param(&a[0].1, "cnonce"), param(&b[0].1, "cnonce"));
        assert_eq!(param(&b[0].1, "nc"), Some("00000002"));
    }

    #[test]
    fn stale_is_followed_once() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        c.on_challenge(
            ChallengeKind::Www,
            r#"Digest realm="biloxi.com", nonce="n2", qop="auth", stale=true"#,
        )
        .unwrap();
        let h = c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        assert_eq!(param(&h[0].1, "nonce"), Some("n2"));
        assert_eq!(param(&h[0].1, "nc"), Some("00000001"));
        assert_eq!(
            c.on_challenge(
                ChallengeKind::Www,
                r#"Digest realm="biloxi.com", nonce="n3", qop="auth", stale=true"#,
            ),
            Err(AuthError::Rejected {
                kind: ChallengeKind::Www,
                realm: "biloxi.com".into()
            })
        );
        // After a rejection nothing is sent for that realm any more.
        assert!(c.authorize("INVITE", "sip:a@b", b"", &mut ids).is_empty());
    }

    #[test]
    fn stale_budget_resets_after_a_final_response() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        let stale = |n: &str| format!(r#"Digest realm="biloxi.com", nonce="{n}", stale=true"#);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        c.on_challenge(ChallengeKind::Www, &stale("n2")).unwrap();
        c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        c.on_success();
        c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        c.on_challenge(ChallengeKind::Www, &stale("n3")).unwrap();
    }

    #[test]
    fn second_challenge_for_the_same_nonce_is_rejected() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        let err = c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"credentials for realm "biloxi.com" were rejected (WWW-Authenticate challenged them again)"#
        );
    }

    #[test]
    fn fresh_challenge_answered_then_new_nonce_is_rejected() {
        // Servers that mint a nonce per 401 without stale=true: a wrong password still stops.
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        let again = r#"Digest realm="biloxi.com", nonce="other", qop="auth""#;
        assert!(matches!(
            c.on_challenge(ChallengeKind::Www, again),
            Err(AuthError::Rejected { .. })
        ));
    }

    #[test]
    fn cached_nonce_rechallenged_with_the_same_nonce_is_rejected() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        c.on_success();
        c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        assert!(c.on_challenge(ChallengeKind::Www, CHALLENGE).is_err());
    }

    #[test]
    fn challenge_received_but_never_answered_is_replaced() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        let h = c.authorize("REGISTER", "sip:biloxi.com", b"", &mut ids);
        assert_eq!(param(&h[0].1, "nc"), Some("00000001"));
    }

    #[test]
    fn proxy_and_www_challenges_get_their_own_headers() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        assert_eq!(ChallengeKind::from_status(407), Some(ChallengeKind::Proxy));
        c.on_challenge(
            ChallengeKind::Proxy,
            r#"Digest realm="atlanta.com", nonce="p", qop=auth, opaque="""#,
        )
        .unwrap();
        let h = c.authorize("INVITE", "sip:bob@biloxi.com", b"", &mut ids);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0, "Proxy-Authorization");
        assert_eq!(param(&h[0].1, "opaque"), Some(""));
        c.on_challenge(ChallengeKind::Www, CHALLENGE).unwrap();
        let h = c.authorize("INVITE", "sip:bob@biloxi.com", b"", &mut ids);
        let names: Vec<_> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["Proxy-Authorization", "Authorization"]);
        assert_eq!(param(&h[0].1, "nc"), Some("00000002"));
        assert_eq!(param(&h[1].1, "nc"), Some("00000001"));
    }

    #[test]
    fn several_challenges_for_one_realm_take_the_topmost_supported() {
        let mut c = client();
        let mut ids = IdGen::new(1);
        c.on_challenges([
            (
                ChallengeKind::Www,
                r#"Digest realm="r", nonce="a", qop=auth, algorithm=SHA-3"#,
            ),
            (
                ChallengeKind::Www,
                r#"Digest realm="r", nonce="b", qop=auth, algorithm=SHA-256"#,
            ),
            (
                ChallengeKind::Www,
                r#"Digest realm="r", nonce="c", qop=auth, algorithm=MD5"#,
            ),
            (ChallengeKind::Www, r#"Basic realm="r""#),
        ])
        .unwrap();
        let h = c.authorize("REGISTER", "sip:r", b"", &mut ids);
        assert_eq!(h.len(), 1);
        assert_eq!(param(&h[0].1, "algorithm"), Some("SHA-256"));
        assert_eq!(param(&h[0].1, "response").map(str::len), Some(64));

        assert_eq!(
            client().on_challenges([(
                ChallengeKind::Www,
                "Digest realm=r, nonce=n, algorithm=SHA-3"
            )]),
            Err(AuthError::UnsupportedAlgorithm("SHA-3".into()))
        );
        assert_eq!(client().on_challenges([]), Err(AuthError::NoChallenge));
    }

    #[test]
    fn userhash_sends_the_hashed_username() {
        let c =
            challenge(r#"Digest realm="r", nonce="n", qop=auth, algorithm=SHA-256, userhash=true"#);
        let header = c.answer(&Credentials::new("u", "p"), "GET", "/", b"", "cn", 1);
        let hashed = Algorithm::Sha256.hash_hex(&[b"u", b"r"]);
        assert_eq!(param(&header, "username"), Some(hashed.as_str()));
        assert!(header.ends_with(", userhash=true"));
    }

    #[test]
    fn usernames_and_uris_are_quoted_safely() {
        let c = challenge(r#"Digest realm="r", nonce="n""#);
        let header = c.answer(&Credentials::new(r#"a"b"#, "p"), "GET", "/", b"", "", 1);
        assert!(
            header.starts_with(r#"Digest username="a\"b", "#),
            "{header}"
        );
    }

    #[test]
    fn the_password_never_shows() {
        const SECRET: &str = "s3cr3t-Hunter2";
        let creds = Credentials::new("bob", SECRET);
        let mut c = DigestClient::new(creds.clone());
        let mut ids = IdGen::new(1);
        c.on_challenge(ChallengeKind::Proxy, CHALLENGE).unwrap();
        c.on_challenge(
            ChallengeKind::Www,
            r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#,
        )
        .unwrap();
        let headers = c.authorize("INVITE", "sip:a@b", b"", &mut ids);
        let rejected = c.on_challenge(ChallengeKind::Proxy, CHALLENGE).unwrap_err();
        let parsed = challenge(CHALLENGE);
        let password = Password::new(SECRET);
        let errors = [
            rejected.clone(),
            AuthError::Malformed {
                offset: 0,
                reason: "x",
            },
            AuthError::UnsupportedScheme("x".into()),
            AuthError::MissingParameter("realm"),
            AuthError::DuplicateParameter("x".into()),
            AuthError::UnsupportedAlgorithm("x".into()),
            AuthError::UnsupportedQop("x".into()),
            AuthError::NoChallenge,
        ];
        let mut printed = vec![
            format!("{creds:?}"),
            format!("{creds:#?}"),
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{password:?}"),
            format!("{password}"),
            format!("{parsed:?}"),
            format!("{:?}", ChallengeKind::Www),
            format!("{:?}", Algorithm::Md5),
            format!("{:?}", Qop::Auth),
            format!("{headers:?}"),
        ];
        for e in &errors {
            printed.push(format!("{e:?}"));
            printed.push(e.to_string());
        }
        for text in printed {
            assert!(!text.contains(SECRET), "password leaked in {text}");
        }
        assert_eq!(format!("{password:?}"), "***");
        assert!(format!("{creds:?}").contains("***"));
    }
}
