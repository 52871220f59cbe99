//! Session timers (RFC 4028): what a request asks for, what our 2xx says, and who refreshes.
//!
//! A call with a session timer is kept alive by a refresh (a re-INVITE or UPDATE) from the
//! refresher every half interval. We answer every refresh, say in our 2xx who refreshes
//! (`Session-Expires: N;refresher=…`, `Require: timer`) when the far end supports the timer,
//! and when we are the refresher (the far end asked us to be one) we send the refreshes.

use std::time::{Duration, Instant};

use crate::sip::msg::{Message, Name};

/// The option tag of RFC 4028.
pub(super) const TIMER: &str = "timer";

/// Who refreshes, as the `refresher` parameter names it: relative to the transaction that
/// carries the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    /// The sender of the request.
    Uac,
    /// The receiver of the request.
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value: the interval in seconds and the refresher, if named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionExpires {
    pub(super) delta: u32,
    pub(super) refresher: Option<Refresher>,
}

impl SessionExpires {
    /// `1800;refresher=uac` (RFC 4028 §4; unknown parameters ignored).
    pub(super) fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let delta = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                let value = value.trim();
                if value.eq_ignore_ascii_case("uac") {
                    refresher = Some(Refresher::Uac);
                } else if value.eq_ignore_ascii_case("uas") {
                    refresher = Some(Refresher::Uas);
                }
            }
        }
        Some(Self { delta, refresher })
    }

    /// The header value, with the refresher.
    pub(super) fn value(self, refresher: Refresher) -> String {
        format!("{};refresher={}", self.delta, refresher.as_str())
    }

    /// The session timer of a message, if it has one that parses.
    pub(super) fn of(message: &Message) -> Option<Self> {
        message.header(&Name::SESSION_EXPIRES).and_then(Self::parse)
    }
}

/// Whether the option tag `timer` is in the message's header `name` (Supported or Require).
pub(super) fn lists_timer(message: &Message, name: &Name) -> bool {
    message
        .header_values(name)
        .any(|tag| tag.trim().eq_ignore_ascii_case(TIMER))
}

/// The session timer of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct SessionTimer {
    /// The interval agreed, in seconds; `None` without a session timer.
    pub(super) interval: Option<u32>,
    /// We are the refresher.
    pub(super) we_refresh: bool,
    /// When our next refresh is due (we are the refresher).
    pub(super) refresh_at: Option<Instant>,
}

impl SessionTimer {
    /// The timer as a 2xx (sent or received) just set it, at `now`: `we_refresh` when we are
    /// the refresher. The refresh is due at half the interval (RFC 4028 §10).
    pub(super) fn set(&mut self, now: Instant, delta: u32, we_refresh: bool) {
        self.interval = Some(delta);
        self.we_refresh = we_refresh;
        self.refresh_at =
            we_refresh.then(|| now + Duration::from_secs(u64::from(delta.max(2))) / 2);
    }

    /// What a refresh of ours carries: `Session-Expires` with us as refresher.
    pub(super) fn request_value(&self) -> Option<String> {
        self.interval.map(|delta| {
            SessionExpires {
                delta,
                refresher: None,
            }
            .value(Refresher::Uac)
        })
    }
}

/// Our side of a session timer a request asked for: the `Session-Expires` of our 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimerAnswer {
    /// The header value, refresher included.
    pub(super) value: String,
    /// The interval, seconds.
    pub(super) delta: u32,
    /// We are the refresher.
    pub(super) we_refresh: bool,
}

impl TimerAnswer {
    /// What we answer to a request (an INVITE, re-INVITE or UPDATE) that may ask for a
    /// session timer, or `None` when the request has none or its sender does not support one
    /// (RFC 4028 §9: a UAS that does not want to refresh itself then leaves the timer out).
    ///
    /// The refresher named in the request is kept; when the request names none, its sender
    /// refreshes (`refresher=uac`).
    pub(super) fn of(request: &Message) -> Option<Self> {
        let asked = SessionExpires::of(request)?;
        let supported =
            lists_timer(request, &Name::SUPPORTED) || lists_timer(request, &Name::REQUIRE);
        if !supported {
            return None;
        }
        let refresher = asked.refresher.unwrap_or(Refresher::Uac);
        Some(Self {
            value: asked.value(refresher),
            delta: asked.delta,
            we_refresh: refresher == Refresher::Uas,
        })
    }

    /// The headers it adds to our 2xx.
    pub(super) fn headers(&self) -> [(&'static str, &str); 2] {
        [("Session-Expires", &self.value), ("Require", TIMER)]
    }
}

impl SessionTimer {
    /// A request of the far end's was answered 2xx at `now`: the session is refreshed, with
    /// the timer it asked for (or the one in force when it asked for none).
    pub(super) fn refreshed(&mut self, now: Instant, answer: Option<&TimerAnswer>) {
        match (answer, self.interval) {
            (Some(answer), _) => self.set(now, answer.delta, answer.we_refresh),
            (None, Some(delta)) => {
                let we_refresh = self.we_refresh;
                self.set(now, delta, we_refresh);
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_values_parse() {
        assert_eq!(
            SessionExpires::parse("1800;refresher=uac"),
            Some(SessionExpires {
                delta: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(
            SessionExpires::parse(" 90 ; foo ; Refresher = UAS"),
            Some(SessionExpires {
                delta: 90,
                refresher: Some(Refresher::Uas)
            })
        );
        assert_eq!(
            SessionExpires::parse("600"),
            Some(SessionExpires {
                delta: 600,
                refresher: None
            })
        );
        assert_eq!(SessionExpires::parse("soon"), None);
        assert_eq!(
            SessionExpires::parse("600").unwrap().value(Refresher::Uas),
            "600;refresher=uas"
        );
    }
}
