//! HTTP Digest (RFC 7616 / RFC 2617 / RFC 3261) computed independently of
//! sipcheck-core: to answer the peers' challenges in harness tests, and to
//! check the Authorization headers sipcheck sent (SIPp 3.6.1 can verify MD5
//! only, so SHA-256 answers are checked here, from SIPp's message trace).
//!
//! The test peers' password convention: `"pw" + username`
//! ([`password_for`]).

use std::collections::BTreeMap;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The realm of the Kamailio peer and of the SIPp scenarios.
pub(crate) const REALM: &str = "sipcheck.test";

/// The nonce of `tests/peers/uas_auth_sha256.xml`.
pub(crate) const SIPP_SHA256_NONCE: &str = "5c1dc4ec4e5ha256n0nce000000000001";

/// The nonce of `tests/peers/uas_auth_md5.xml`.
pub(crate) const SIPP_MD5_NONCE: &str = "5c1dc4ec4e5md5n0nce000000000001";

/// The password the peers expect for `user`: `"pw" + user`.
pub(crate) fn password_for(user: &str) -> String {
    format!("pw{user}")
}

/// A digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// MD5 (the default when a challenge names none).
    Md5,
    /// SHA-256 (RFC 7616).
    Sha256,
}

impl Algorithm {
    /// From an `algorithm=` value (`-sess` variants are not supported).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "SHA-256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The name used in `algorithm=`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// The lower-case hex hash of `data`.
    pub(crate) fn hex(self, data: &[u8]) -> String {
        match self {
            Self::Md5 => to_hex(&Md5::digest(data)),
            Self::Sha256 => to_hex(&Sha256::digest(data)),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parameters of a `Digest ...` challenge or credentials header value,
/// keys lower-cased, quotes removed.
pub(crate) fn parse_params(value: &str) -> Option<BTreeMap<String, String>> {
    let rest = value.trim_start();
    let scheme_end = rest.find(char::is_whitespace)?;
    if !rest[..scheme_end].eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut s = &rest[scheme_end..];
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if s.is_empty() {
            return Some(params);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let val;
        if let Some(quoted) = s.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => out.push(c),
                }
            }
            val = out;
            s = &quoted[end?..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            val = s[..end].trim().to_owned();
            s = &s[end..];
        }
        params.insert(key, val);
    }
}

/// Everything a digest response is computed from.
#[derive(Debug, Clone)]
pub(crate) struct Input<'a> {
    /// Hash algorithm.
    pub(crate) algorithm: Algorithm,
    /// User name.
    pub(crate) username: &'a str,
    /// Realm.
    pub(crate) realm: &'a str,
    /// Password.
    pub(crate) password: &'a str,
    /// Request method.
    pub(crate) method: &'a str,
    /// The `uri=` value (the Request-URI).
    pub(crate) uri: &'a str,
    /// Server nonce.
    pub(crate) nonce: &'a str,
    /// `Some((qop, nc, cnonce))` with a qop, `None` for RFC 2069 style.
    pub(crate) qop: Option<(&'a str, &'a str, &'a str)>,
    /// Message body (hashed for qop=auth-int).
    pub(crate) body: &'a [u8],
}

/// The expected `response=` value.
pub(crate) fn response(input: &Input<'_>) -> String {
    let h = |s: &str| input.algorithm.hex(s.as_bytes());
    let ha1 = h(&format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    let ha2 = match input.qop {
        Some(("auth-int", _, _)) => h(&format!(
            "{}:{}:{}",
            input.method,
            input.uri,
            input.algorithm.hex(input.body)
        )),
        _ => h(&format!("{}:{}", input.method, input.uri)),
    };
    match input.qop {
        Some((qop, nc, cnonce)) => h(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", input.nonce)),
        None => h(&format!("{ha1}:{}:{ha2}", input.nonce)),
    }
}

/// The `Authorization`/`Proxy-Authorization` value answering `challenge`
/// (a `WWW-Authenticate`/`Proxy-Authenticate` value) for `method uri`.
/// Picks qop `auth` when offered, else none; nc 00000001.
pub(crate) fn authorization(
    challenge: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Option<String> {
    let p = parse_params(challenge)?;
    let algorithm = Algorithm::parse(p.get("algorithm").map_or("MD5", String::as_str))?;
    let realm = p.get("realm")?;
    let nonce = p.get("nonce")?;
    let offers_auth = p
        .get("qop")
        .is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    let cnonce = super::sip::token();
    let qop = offers_auth.then_some(("auth", "00000001", cnonce.as_str()));
    let resp = response(&Input {
        algorithm,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        qop,
        body: b"",
    });
    let mut v = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm={}",
        algorithm.name()
    );
    if let Some((qop, nc, cnonce)) = qop {
        v.push_str(&format!(", qop={qop}, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = p.get("opaque") {
        v.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(v)
}

/// Checks credentials `authorization` (a header value) sent with a request
/// `method` carrying `body`, against `password`: Ok with the parsed
/// parameters, or Err saying what is wrong.
pub(crate) fn verify(
    authorization: &str,
    method: &str,
    password: &str,
    body: &[u8],
) -> Result<BTreeMap<String, String>, String> {
    let p = parse_params(authorization)
        .ok_or_else(|| format!("not Digest credentials: {authorization}"))?;
    let get = |k: &str| {
        p.get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("no {k}= in {authorization}"))
    };
    let algorithm = Algorithm::parse(p.get("algorithm").map_or("MD5", String::as_str))
        .ok_or_else(|| format!("unsupported algorithm in {authorization}"))?;
    let qop = match p.get("qop") {
        Some(q) => Some((q.as_str(), get("nc")?, get("cnonce")?)),
        None => None,
    };
    let expected = response(&Input {
        algorithm,
        username: get("username")?,
        realm: get("realm")?,
        password,
        method,
        uri: get("uri")?,
        nonce: get("nonce")?,
        qop,
        body,
    });
    let got = get("response")?;
    if got.eq_ignore_ascii_case(&expected) {
        Ok(p)
    } else {
        Err(format!(
            "response={got} but {expected} expected for password {password:?} in {authorization}"
        ))
    }
}
