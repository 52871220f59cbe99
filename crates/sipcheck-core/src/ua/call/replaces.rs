//! Attended transfer's dialog replacement (RFC 3891): the `Replaces` header, its escaped
//! form inside a Refer-To URI (RFC 3891 §5 and §6, RFC 5589 §7), and the matching of an
//! INVITE with Replaces against the dialogs we hold (RFC 3891 §3).

use super::{call_ref, CallDirection, CallId, CallState, Endpoint};
use crate::sip::msg::Message;
use crate::sip::uri::NextHop;

/// The option tag of the Replaces extension (RFC 3891 §4).
pub(super) const REPLACES: &str = "replaces";

/// A `Replaces` header value: the dialog to replace, named from the side of the UA that
/// holds it (`to-tag` its local tag, `from-tag` the far end's; RFC 3891 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The tag of the UA receiving the INVITE with Replaces.
    pub to_tag: String,
    /// The tag of the other party of the replaced dialog.
    pub from_tag: String,
    /// `early-only`: replace the dialog only while it is early.
    pub early_only: bool,
}

impl Replaces {
    /// Parse `callid;to-tag=X;from-tag=Y[;early-only]` (parameter names in any case).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let call_id = parts.next()?.trim();
        if call_id.is_empty() {
            return None;
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (name, v) = p.split_once('=').unwrap_or((p, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to_tag = Some(v.trim().to_owned()),
                "from-tag" => from_tag = Some(v.trim().to_owned()),
                "early-only" => early_only = true,
                _ => {}
            }
        }
        Some(Self {
            call_id: call_id.to_owned(),
            to_tag: to_tag?,
            from_tag: from_tag?,
            early_only,
        })
    }

    /// The header value.
    #[must_use]
    pub fn value(&self) -> String {
        let mut v = format!(
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        );
        if self.early_only {
            v.push_str(";early-only");
        }
        v
    }
}

/// Whether `b` may stand unescaped in a URI header value (RFC 3261 §25.1: `hnv-unreserved`
/// and `unreserved`).
fn header_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b)
}

/// `target?Replaces=...`: the Refer-To URI of an attended transfer, the Replaces value
/// escaped as a URI header (`;` as `%3B`, `=` as `%3D`, `@` as `%40`: RFC 3891 §6).
#[must_use]
pub fn refer_to_replacing(target: &str, replaces: &Replaces) -> String {
    let mut uri = String::from(target.split('?').next().unwrap_or(target));
    uri.push_str("?Replaces=");
    for b in replaces.value().bytes() {
        if header_safe(b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// `%XX` escapes undone (an invalid escape is kept as written).
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Refer-To URI split into the URI to call (its headers left out) and the Replaces
/// header its `?Replaces=` names, unescaped, when it names one (RFC 3891 §6: the transferee
/// copies it into its INVITE).
#[must_use]
pub fn split_refer_to(uri: &str) -> (String, Option<String>) {
    let Some((base, headers)) = uri.split_once('?') else {
        return (uri.to_owned(), None);
    };
    let replaces = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("replaces")
            .then(|| unescape(value))
    });
    (base.to_owned(), replaces)
}

/// Why an INVITE with Replaces is refused.
pub(super) struct Refusal {
    pub(super) code: u16,
    pub(super) why: &'static str,
}

impl<D: Clone + NextHop> Endpoint<D> {
    /// The identifiers of a call's dialog, as a Replaces naming it from the far end's side
    /// (our local tag as `from-tag`, the far end's as `to-tag`): what a transferor puts in
    /// the Refer-To of an attended transfer. `None` before the far end's tag is known.
    #[must_use]
    pub fn replaces_for(&self, call: CallId) -> Option<Replaces> {
        let c = call_ref(&self.slots, call)?;
        Some(Replaces {
            call_id: c.dialog.call_id.to_string(),
            to_tag: c.dialog.remote_tag.as_deref()?.to_owned(),
            from_tag: c.dialog.local_tag.to_string(),
            early_only: false,
        })
    }

    /// The dialog an INVITE's Replaces names (RFC 3891 §3): `Ok(None)` without Replaces;
    /// a Replaces that does not parse 400; no such dialog, or an early dialog we did not
    /// originate, 481; `early-only` on a confirmed dialog 486; a dialog already ending 603.
    pub(super) fn replaced_call(&self, message: &Message) -> Result<Option<CallId>, Refusal> {
        let values: Vec<&str> = message
            .headers()
            .get_raw(&crate::sip::msg::Name::from("Replaces"))
            .map(str::trim)
            .collect();
        let value = match values.as_slice() {
            [] => return Ok(None),
            [value] => *value,
            _ => {
                return Err(Refusal {
                    code: 400,
                    why: "more than one Replaces",
                })
            }
        };
        let Some(r) = Replaces::parse(value) else {
            return Err(Refusal {
                code: 400,
                why: "a Replaces that does not parse",
            });
        };
        let found = self.dialogs.get(r.call_id.as_str()).and_then(|bucket| {
            bucket.iter().find(|&id| {
                call_ref(&self.slots, id).is_some_and(|c| {
                    *c.dialog.local_tag == *r.to_tag
                        && c.dialog.remote_tag.as_deref() == Some(r.from_tag.as_str())
                })
            })
        });
        let Some(id) = found else {
            return Err(Refusal {
                code: 481,
                why: "its Replaces names no dialog of ours",
            });
        };
        let Some(c) = call_ref(&self.slots, id) else {
            return Err(Refusal {
                code: 481,
                why: "its Replaces names no dialog of ours",
            });
        };
        let confirmed = matches!(c.state, CallState::Confirmed | CallState::AwaitingAck);
        match c.state {
            _ if confirmed && r.early_only => Err(Refusal {
                code: 486,
                why: "its Replaces is early-only and the dialog is confirmed",
            }),
            CallState::Offered if c.direction == CallDirection::Incoming => Err(Refusal {
                code: 481,
                why: "its Replaces names an early dialog we did not originate",
            }),
            CallState::Terminating | CallState::Cancelling => Err(Refusal {
                code: 603,
                why: "its Replaces names a dialog already ending",
            }),
            _ => Ok(Some(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaces_value_parses_and_prints() {
        let r = Replaces::parse("abc@h;to-tag=7;from-tag=9;early-only").expect("parses");
        assert_eq!(
            r,
            Replaces {
                call_id: "abc@h".into(),
                to_tag: "7".into(),
                from_tag: "9".into(),
                early_only: true
            }
        );
        assert_eq!(r.value(), "abc@h;to-tag=7;from-tag=9;early-only");
        assert_eq!(
            Replaces::parse("abc;TO-TAG=1;From-Tag=2").map(|r| r.to_tag),
            Some("1".into())
        );
        assert_eq!(Replaces::parse("abc;to-tag=1"), None);
        assert_eq!(Replaces::parse(";to-tag=1;from-tag=2"), None);
    }

    #[test]
    fn the_refer_to_escapes_the_replaces_and_the_transferee_gets_it_back() {
        let r = Replaces {
            call_id: "x7@10.0.0.1".into(),
            to_tag: "t1".into(),
            from_tag: "f2".into(),
            early_only: false,
        };
        let uri = refer_to_replacing("sip:3001@pbx", &r);
        // RFC 3891 §6's example escaping: `;` `%3B`, `=` `%3D`, `@` `%40`.
        assert_eq!(
            uri,
            "sip:3001@pbx?Replaces=x7%4010.0.0.1%3Bto-tag%3Dt1%3Bfrom-tag%3Df2"
        );
        let (base, replaces) = split_refer_to(&uri);
        assert_eq!(base, "sip:3001@pbx");
        assert_eq!(
            replaces.as_deref(),
            Some("x7@10.0.0.1;to-tag=t1;from-tag=f2")
        );
        // Another header before it, lower-case hex, and no Replaces at all.
        let (_, replaces) = split_refer_to("sip:a@h?X=1&replaces=c%3bto-tag%3d1%3bfrom-tag%3d2");
        assert_eq!(replaces.as_deref(), Some("c;to-tag=1;from-tag=2"));
        assert_eq!(split_refer_to("sip:a@h"), ("sip:a@h".into(), None));
        // URI parameters stay before the headers.
        assert_eq!(
            refer_to_replacing("sip:3001@pbx;transport=tcp", &r),
            "sip:3001@pbx;transport=tcp?Replaces=x7%4010.0.0.1%3Bto-tag%3Dt1%3Bfrom-tag%3Df2"
        );
    }
}
