//! Registration (RFC 3261 §10) as a sans-IO state machine.
//!
//! [`Registration`] writes each REGISTER and reads each final response; the caller carries the
//! requests through a client transaction and hands back the final responses. A 401/407 is
//! answered with credentials once; a second challenge to the same credentials, or a 403, is a
//! wrong password, reported as such and never retried in a loop.

use std::net::SocketAddr;

use crate::ids::IdGen;
use crate::sip::auth::{AuthError, ChallengeKind, Credentials, DigestClient};
use crate::sip::build::{RequestSpec, ViaSpec};
use crate::sip::msg::{Message, Name};
use crate::sip::transport::Transport;

/// Who registers, where, and for how long.
#[derive(Debug, Clone)]
pub struct RegisterParams {
    /// The user part of the address of record.
    pub user: String,
    /// The domain of the address of record (and of the registrar's Request-URI).
    pub domain: String,
    /// The credentials for digest authentication.
    pub credentials: Credentials,
    /// Requested binding lifetime in seconds.
    pub expires: u32,
    /// A `sips:` address of record (RFC 5630 §3.1.2): the registrar's Request-URI, To and
    /// From are `sips:`, and so is the Contact (RFC 3261 §8.1.1.8), over TLS.
    pub sips: bool,
}

/// Where the requests leave from.
#[derive(Debug, Clone)]
pub struct LocalEnd {
    /// The transport.
    pub transport: Transport,
    /// The real local address and port (Via sent-by and Contact).
    pub addr: SocketAddr,
    /// Route headers to add (an outbound proxy, as `<sip:host:port;lr>`), in order.
    pub routes: Vec<String>,
}

/// How a registration exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 2xx: the binding is in place for `expires` seconds.
    Registered {
        /// The lifetime the registrar granted (from our Contact's `expires`, or `Expires`).
        expires: u32,
        /// Every binding of the address of record, as the 200 listed them.
        bindings: Vec<String>,
    },
    /// 2xx to a REGISTER with `Expires: 0`: our binding is removed.
    Unregistered {
        /// Bindings still listed by the registrar (others' or stale ones).
        remaining: Vec<String>,
    },
    /// The registrar refused.
    Failed(RegisterFailure),
}

/// Why a registration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterFailure {
    /// The credentials were refused: a second challenge after we answered, or 403.
    #[error("credentials rejected: {code} {reason}")]
    WrongCredentials {
        /// The status code of the refusal.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The challenge could not be answered (unsupported algorithm, malformed header …).
    #[error("cannot answer the challenge of {code}: {source}")]
    Challenge {
        /// 401 or 407.
        code: u16,
        /// Why.
        source: AuthError,
    },
    /// A challenge came and no password is configured (an empty one answers nothing).
    #[error("{code} challenge but no password given")]
    NoPassword {
        /// 401 or 407.
        code: u16,
    },
    /// Any other final response.
    #[error("rejected with {code} {reason}")]
    Rejected {
        /// The status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
}

/// What to do after a final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send [`Registration::request`] again (with the credentials now known).
    Retry,
    /// The exchange is over.
    Done(RegisterOutcome),
}

/// One user agent's registration: the Call-ID and From tag stay the same across refreshes
/// (RFC 3261 §10.2.4), and CSeq goes up by one per REGISTER.
#[derive(Debug, Clone)]
pub struct Registration {
    params: RegisterParams,
    auth: DigestClient,
    call_id: String,
    from_tag: String,
    cseq: u32,
    contact_uri: String,
    last_expires: u32,
}

impl Registration {
    /// A registration for `params`, identified with fresh ids from `ids`.
    pub fn new(params: RegisterParams, ids: &mut IdGen) -> Self {
        Self {
            auth: DigestClient::new(params.credentials.clone()),
            call_id: ids.call_id(),
            from_tag: ids.tag(),
            cseq: 0,
            contact_uri: String::new(),
            last_expires: params.expires,
            params,
        }
    }

    /// The Call-ID of every REGISTER of this registration.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The address of record, `sip:user@domain` (`sips:` for a sips: registration).
    pub fn aor(&self) -> String {
        format!(
            "{}:{}@{}",
            self.scheme(),
            self.params.user,
            self.params.domain
        )
    }

    fn scheme(&self) -> &'static str {
        if self.params.sips {
            "sips"
        } else {
            "sip"
        }
    }

    /// The next REGISTER, asking for `expires` seconds (0 removes the binding), with a new
    /// branch from `ids` and credentials when a challenge is known.
    pub fn request(&mut self, expires: u32, local: &LocalEnd, ids: &mut IdGen) -> Vec<u8> {
        self.contact_uri = format!(
            "{}:{}@{}{}",
            self.scheme(),
            self.params.user,
            local.addr,
            match local.transport {
                Transport::Udp => String::new(),
                // A sips: URI means TLS (RFC 3261 §19.1.2); over WSS it names WebSocket.
                Transport::Tls if self.params.sips => String::new(),
                other => format!(";transport={}", other.uri_param()),
            }
        );
        self.build(expires, local, ids)
    }

    /// A REGISTER removing every binding of the address of record, ours and others'
    /// (`Contact: *` with `Expires: 0`, RFC 3261 §10.2.2). Its 2xx reads as
    /// [`RegisterOutcome::Unregistered`], `remaining` listing what the registrar still holds.
    pub fn request_unregister_all(&mut self, local: &LocalEnd, ids: &mut IdGen) -> Vec<u8> {
        self.contact_uri = "*".into();
        self.build(0, local, ids)
    }

    fn build(&mut self, expires: u32, local: &LocalEnd, ids: &mut IdGen) -> Vec<u8> {
        self.cseq += 1;
        self.last_expires = expires;
        let request_uri = format!("{}:{}", self.scheme(), self.params.domain);
        let aor = self.aor();
        let from = format!("<{aor}>;tag={}", self.from_tag);
        let to = format!("<{aor}>");
        let contact = if self.contact_uri == "*" {
            "*".to_string()
        } else {
            format!("<{}>", self.contact_uri)
        };
        let expires_value = expires.to_string();
        let authorization = self.auth.authorize("REGISTER", &request_uri, b"", ids);
        let mut extra: Vec<(&str, &str)> = vec![("Expires", &expires_value)];
        extra.extend(authorization.iter().map(|(n, v)| (*n, v.as_str())));
        let branch = ids.branch();
        RequestSpec {
            method: "REGISTER",
            uri: &request_uri,
            via: ViaSpec {
                transport: local.transport,
                sent_by: local.addr,
                branch: &branch,
                rport: true,
            },
            routes: &local.routes,
            from: &from,
            to: &to,
            call_id: &self.call_id,
            cseq: self.cseq,
            contact: Some(&contact),
            extra: &extra,
            body: None,
        }
        .to_vec()
    }

    /// Read the final response to the last REGISTER.
    pub fn on_final_response(&mut self, response: &Message) -> Next {
        let code = response.status().unwrap_or(0);
        let reason = response.reason().unwrap_or_default().to_string();
        if let Some(kind) = ChallengeKind::from_status(code) {
            if !self.params.credentials.has_password() {
                return Next::Done(RegisterOutcome::Failed(RegisterFailure::NoPassword {
                    code,
                }));
            }
            let name = match kind {
                ChallengeKind::Www => Name::WWW_AUTHENTICATE,
                ChallengeKind::Proxy => Name::PROXY_AUTHENTICATE,
            };
            let challenges = response.headers().get_raw(&name).map(|v| (kind, v));
            return match self.auth.on_challenges(challenges) {
                Ok(()) => Next::Retry,
                Err(AuthError::Rejected { .. }) => {
                    Next::Done(RegisterOutcome::Failed(RegisterFailure::WrongCredentials {
                        code,
                        reason,
                    }))
                }
                Err(source) => Next::Done(RegisterOutcome::Failed(RegisterFailure::Challenge {
                    code,
                    source,
                })),
            };
        }
        self.auth.on_success();
        if (200..300).contains(&code) {
            let bindings = response.contact_uris();
            if self.last_expires == 0 {
                let remaining = bindings
                    .into_iter()
                    .filter(|b| !same_contact(b, &self.contact_uri))
                    .collect();
                return Next::Done(RegisterOutcome::Unregistered { remaining });
            }
            let expires = granted_expires(response, &self.contact_uri).unwrap_or(self.last_expires);
            return Next::Done(RegisterOutcome::Registered { expires, bindings });
        }
        let failure = if code == 403 {
            RegisterFailure::WrongCredentials { code, reason }
        } else {
            RegisterFailure::Rejected { code, reason }
        };
        Next::Done(RegisterOutcome::Failed(failure))
    }
}

/// Two contact URIs name the same binding (compared without parameters, case-insensitively).
fn same_contact(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.split(';').next().unwrap_or(s).to_ascii_lowercase();
    strip(a) == strip(b)
}

/// The lifetime granted to our contact: its `expires` parameter in the 200, else `Expires`.
fn granted_expires(response: &Message, contact_uri: &str) -> Option<u32> {
    for value in response.header_values(&Name::CONTACT) {
        let uri = crate::sip::msg::contact_uri(value);
        if same_contact(uri, contact_uri) {
            let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
            for param in params.split(';') {
                if let Some(v) = param.trim().strip_prefix("expires=") {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    response.header(&Name::EXPIRES)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::write_response;
    use bytes::Bytes;

    fn setup() -> (Registration, LocalEnd, IdGen) {
        let mut ids = IdGen::new(1);
        let reg = Registration::new(
            RegisterParams {
                user: "1001".into(),
                domain: "example.test".into(),
                credentials: Credentials::new("1001", "pw1001"),
                expires: 300,
                sips: false,
            },
            &mut ids,
        );
        let local = LocalEnd {
            transport: Transport::Udp,
            addr: "127.0.0.1:40000".parse().unwrap(),
            routes: vec![],
        };
        (reg, local, ids)
    }

    fn parse(raw: Vec<u8>) -> Message {
        Message::parse_datagram(Bytes::from(raw)).unwrap()
    }

    fn respond(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
        let mut out = Vec::new();
        write_response(req, code, "X", Some("srv"), extra, None, &mut out);
        parse(out)
    }

    const CHALLENGE: &str =
        r#"Digest realm="example.test", nonce="abc", qop="auth", algorithm=MD5"#;

    #[test]
    fn a_sips_registration_sends_sips_uris_and_a_sips_contact_over_tls() {
        // RFC 5630 §3.1.2, RFC 3261 §8.1.1.8 and §10.2.
        let (reg, _, mut ids) = setup();
        let mut reg = Registration::new(
            RegisterParams {
                sips: true,
                ..reg.params
            },
            &mut ids,
        );
        let tls = LocalEnd {
            transport: Transport::Tls,
            addr: "127.0.0.1:40000".parse().unwrap(),
            routes: vec![],
        };
        let req = parse(reg.request(300, &tls, &mut ids));
        assert_eq!(req.request_uri(), Some("sips:example.test"));
        assert_eq!(req.header(&Name::TO), Some("<sips:1001@example.test>"));
        assert!(req
            .header(&Name::FROM)
            .unwrap()
            .starts_with("<sips:1001@example.test>;tag="));
        assert_eq!(req.contact_uris(), vec!["sips:1001@127.0.0.1:40000"]);
        assert!(req.header(&Name::VIA).unwrap().starts_with("SIP/2.0/TLS "));
        assert_eq!(reg.aor(), "sips:1001@example.test");
    }

    #[test]
    fn challenge_then_success() {
        let (mut reg, local, mut ids) = setup();
        let first = parse(reg.request(300, &local, &mut ids));
        assert_eq!(first.header(&Name::AUTHORIZATION), None);
        assert_eq!(first.header(&Name::EXPIRES), Some("300"));
        assert_eq!(first.contact_uris(), vec!["sip:1001@127.0.0.1:40000"]);
        let next = reg.on_final_response(&respond(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
        assert_eq!(next, Next::Retry);

        let second = parse(reg.request(300, &local, &mut ids));
        assert_eq!(second.call_id(), first.call_id());
        assert_eq!(second.cseq(), first.cseq() + 1);
        assert_ne!(second.branch(), first.branch());
        let auth = second.header(&Name::AUTHORIZATION).unwrap();
        assert!(auth.contains(r#"username="1001""#), "{auth}");
        assert!(auth.contains("nc=00000001"), "{auth}");
        assert!(!auth.contains("pw1001"));

        let ok = respond(
            &second,
            200,
            &[(
                "Contact",
                "<sip:1001@127.0.0.1:40000>;expires=120, <sip:1001@10.0.0.9>;expires=50",
            )],
        );
        assert_eq!(
            reg.on_final_response(&ok),
            Next::Done(RegisterOutcome::Registered {
                expires: 120,
                bindings: vec![
                    "sip:1001@127.0.0.1:40000".into(),
                    "sip:1001@10.0.0.9".into()
                ]
            })
        );
    }

    #[test]
    fn second_challenge_is_a_wrong_password_not_a_loop() {
        let (mut reg, local, mut ids) = setup();
        let first = parse(reg.request(300, &local, &mut ids));
        assert_eq!(
            reg.on_final_response(&respond(&first, 401, &[("WWW-Authenticate", CHALLENGE)])),
            Next::Retry
        );
        let second = parse(reg.request(300, &local, &mut ids));
        let again = respond(&second, 401, &[("WWW-Authenticate", CHALLENGE)]);
        assert!(matches!(
            reg.on_final_response(&again),
            Next::Done(RegisterOutcome::Failed(RegisterFailure::WrongCredentials {
                code: 401,
                ..
            }))
        ));
    }

    #[test]
    fn forbidden_is_a_wrong_password_and_other_codes_are_rejections() {
        let (mut reg, local, mut ids) = setup();
        let req = parse(reg.request(300, &local, &mut ids));
        assert!(matches!(
            reg.on_final_response(&respond(&req, 403, &[])),
            Next::Done(RegisterOutcome::Failed(RegisterFailure::WrongCredentials {
                code: 403,
                ..
            }))
        ));
        let req = parse(reg.request(300, &local, &mut ids));
        assert!(matches!(
            reg.on_final_response(&respond(&req, 404, &[])),
            Next::Done(RegisterOutcome::Failed(RegisterFailure::Rejected {
                code: 404,
                ..
            }))
        ));
    }

    #[test]
    fn unregister_reports_remaining_bindings() {
        let (mut reg, local, mut ids) = setup();
        let req = parse(reg.request(0, &local, &mut ids));
        assert_eq!(req.header(&Name::EXPIRES), Some("0"));
        let ok = respond(&req, 200, &[("Contact", "<sip:1001@10.0.0.9>;expires=50")]);
        assert_eq!(
            reg.on_final_response(&ok),
            Next::Done(RegisterOutcome::Unregistered {
                remaining: vec!["sip:1001@10.0.0.9".into()]
            })
        );
    }

    #[test]
    fn a_challenge_without_a_password_is_named_as_such() {
        let mut ids = IdGen::new(1);
        let mut reg = Registration::new(
            RegisterParams {
                user: "1001".into(),
                domain: "example.test".into(),
                credentials: Credentials::new("1001", String::new()),
                expires: 300,
                sips: false,
            },
            &mut ids,
        );
        let (_, local, _) = setup();
        let req = parse(reg.request(300, &local, &mut ids));
        let next = reg.on_final_response(&respond(&req, 401, &[("WWW-Authenticate", CHALLENGE)]));
        let Next::Done(RegisterOutcome::Failed(failure)) = next else {
            panic!("{next:?}");
        };
        assert_eq!(failure, RegisterFailure::NoPassword { code: 401 });
        assert_eq!(failure.to_string(), "401 challenge but no password given");
    }

    #[test]
    fn unregister_all_sends_a_wildcard_contact_with_expires_0() {
        let (mut reg, local, mut ids) = setup();
        let req = parse(reg.request_unregister_all(&local, &mut ids));
        assert_eq!(req.header(&Name::CONTACT), Some("*"));
        assert_eq!(req.header(&Name::EXPIRES), Some("0"));
        let challenged = respond(&req, 401, &[("WWW-Authenticate", CHALLENGE)]);
        assert_eq!(reg.on_final_response(&challenged), Next::Retry);
        // The retry keeps the wildcard (the same request, now with credentials).
        let again = parse(reg.request_unregister_all(&local, &mut ids));
        assert_eq!(again.header(&Name::CONTACT), Some("*"));
        assert_eq!(again.cseq(), req.cseq() + 1);
        assert!(again.header(&Name::AUTHORIZATION).is_some());
        assert_eq!(
            reg.on_final_response(&respond(&again, 200, &[])),
            Next::Done(RegisterOutcome::Unregistered { remaining: vec![] })
        );
    }

    #[test]
    fn a_challenge_without_header_is_reported() {
        let (mut reg, local, mut ids) = setup();
        let req = parse(reg.request(300, &local, &mut ids));
        assert!(matches!(
            reg.on_final_response(&respond(&req, 407, &[])),
            Next::Done(RegisterOutcome::Failed(RegisterFailure::Challenge {
                code: 407,
                ..
            }))
        ));
    }
}
