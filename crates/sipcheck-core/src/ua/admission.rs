//! Call slots of a responder under hostile peers: how many calls it holds at once, and how
//! many of them may be unconfirmed (no ACK yet), in all and per source.
//!
//! An INVITE that is never ACKed would otherwise hold a slot for `64·T1` (32 s, Timer H):
//! a peer sending a few un-ACKed INVITEs a second keeps every slot busy. Unconfirmed calls
//! get a smaller budget of their own; when it (or the whole of the slots) is full, the
//! oldest unconfirmed call is dropped for the new one. A single source may hold only part
//! of that budget: its INVITEs beyond are refused, so one peer cannot churn out everyone
//! else's unconfirmed calls either.
//!
//! Sans-IO: the caller says what happened (`admit`, `confirmed`, `ended`) and carries out
//! what it is told (drop a call, refuse one).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

/// The limits of [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls at once, confirmed or not.
    pub calls: usize,
    /// Unconfirmed calls at once (answered or ringing, no ACK yet).
    pub unconfirmed: usize,
    /// Unconfirmed calls at once from one source.
    pub per_source: usize,
}

impl Limits {
    /// The limits derived from the number of calls at once: half of them may be
    /// unconfirmed, and a single source may hold half of those (each at least 1).
    pub fn for_calls(calls: usize) -> Self {
        let calls = calls.max(1);
        let unconfirmed = (calls / 2).max(1);
        Self {
            calls,
            unconfirmed,
            per_source: (unconfirmed / 2).max(1),
        }
    }
}

/// What to do with a new incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit<C> {
    /// Take it; first drop this unconfirmed call (the oldest), whose slot it takes.
    Accept {
        /// The call to drop first, if any.
        drop: Option<C>,
    },
    /// Refuse it: every slot holds a confirmed call.
    Busy,
    /// Refuse it: its source already holds [`Limits::per_source`] unconfirmed calls.
    SourceLimit,
}

/// The call slots of a responder (see the module's documentation), for calls named by `C`
/// (e.g. [`CallId`](super::call::CallId)) from sources `S` (e.g. an IP address).
#[derive(Debug)]
pub struct Admission<C, S> {
    limits: Limits,
    /// Admitted calls not ended yet.
    calls: HashSet<C>,
    /// Unconfirmed calls, oldest first.
    unconfirmed: VecDeque<(C, S, Instant)>,
}

impl<C: Copy + Eq + Hash, S: PartialEq> Admission<C, S> {
    /// No call yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            calls: HashSet::new(),
            unconfirmed: VecDeque::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Calls admitted and not ended.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Unconfirmed calls held.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.len()
    }

    /// A new incoming call from `source` at `now`. On [`Admit::Accept`] the call is counted
    /// (unconfirmed), and the dropped call, if any, is no longer: the caller must end it
    /// (and not report its end here again).
    pub fn admit(&mut self, now: Instant, call: C, source: S) -> Admit<C> {
        let from_source = self.unconfirmed.iter().filter(|u| u.1 == source).count();
        if from_source >= self.limits.per_source {
            return Admit::SourceLimit;
        }
        let full = self.calls.len() >= self.limits.calls;
        if full && self.unconfirmed.is_empty() {
            return Admit::Busy;
        }
        let drop = if full || self.unconfirmed.len() >= self.limits.unconfirmed {
            self.unconfirmed.pop_front().map(|(old, ..)| {
                self.calls.remove(&old);
                old
            })
        } else {
            None
        };
        self.calls.insert(call);
        self.unconfirmed.push_back((call, source, now));
        Admit::Accept { drop }
    }

    /// The call was confirmed (its ACK arrived): it keeps its slot until it ends.
    pub fn confirmed(&mut self, call: C) {
        self.unconfirmed.retain(|u| u.0 != call);
    }

    /// The call ended; its slot is free. Calls not admitted (or dropped) are ignored.
    pub fn ended(&mut self, call: C) {
        if self.calls.remove(&call) {
            self.unconfirmed.retain(|u| u.0 != call);
        }
    }

    /// When the oldest unconfirmed call arrived.
    pub fn oldest_unconfirmed(&self) -> Option<Instant> {
        self.unconfirmed.front().map(|u| u.2)
    }
}

/// Whether RTP may be sent to `remote` before the call is confirmed (its ACK received):
/// only when it is the address the INVITE came from. Anyone can name any address in an SDP
/// offer and never ACK; sending there would make the responder a reflector (a stream of
/// RTP for each INVITE, to an address that never asked for it). Once the ACK has come, the
/// peer has shown it receives our responses, and media goes wherever its SDP says.
pub fn media_before_ack(remote: IpAddr, source: IpAddr) -> bool {
    remote.to_canonical() == source.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The virtual clock's origin (any instant: only differences matter).
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn limits(calls: usize, unconfirmed: usize, per_source: usize) -> Limits {
        Limits {
            calls,
            unconfirmed,
            per_source,
        }
    }

    #[test]
    fn a_flood_of_unacked_invites_drops_its_oldest_and_leaves_room() {
        let t0 = origin();
        let mut a: Admission<u32, &str> = Admission::new(limits(4, 2, 2));
        assert_eq!(a.admit(t0, 1, "flood"), Admit::Accept { drop: None });
        assert_eq!(a.admit(t0, 2, "flood"), Admit::Accept { drop: None });
        // The flood's own limit: refused, nothing dropped.
        assert_eq!(a.admit(t0, 3, "flood"), Admit::SourceLimit);
        // Another source: the budget of unconfirmed calls is full, the oldest goes.
        let later = t0 + Duration::from_millis(50);
        assert_eq!(a.admit(later, 4, "caller"), Admit::Accept { drop: Some(1) });
        assert_eq!(a.oldest_unconfirmed(), Some(t0));
        a.confirmed(4);
        assert_eq!((a.calls(), a.unconfirmed()), (2, 1));
        // The flood gets a slot again (its call 1 is gone); at the budget, its oldest goes,
        // never the confirmed call.
        assert_eq!(a.admit(later, 5, "flood"), Admit::Accept { drop: None });
        assert_eq!(a.admit(later, 6, "other"), Admit::Accept { drop: Some(2) });
        a.ended(4);
        assert_eq!((a.calls(), a.unconfirmed()), (2, 2));
    }

    #[test]
    fn confirmed_calls_are_never_dropped_and_fill_the_slots() {
        let t0 = origin();
        let mut a: Admission<u32, u8> = Admission::new(limits(2, 2, 2));
        assert_eq!(a.admit(t0, 1, 1), Admit::Accept { drop: None });
        assert_eq!(a.admit(t0, 2, 2), Admit::Accept { drop: None });
        // Every slot taken, one unconfirmed: it is dropped for the new call.
        a.confirmed(1);
        assert_eq!(a.admit(t0, 3, 3), Admit::Accept { drop: Some(2) });
        a.confirmed(3);
        // Every slot confirmed: busy.
        assert_eq!(a.admit(t0, 4, 4), Admit::Busy);
        a.ended(1);
        // A dropped call's end is ignored: the slot count stays right.
        a.ended(2);
        assert_eq!(a.calls(), 1);
        assert_eq!(a.admit(t0, 5, 4), Admit::Accept { drop: None });
        assert_eq!(a.calls(), 2);
    }

    #[test]
    fn media_before_the_ack_only_to_the_invites_source() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(media_before_ack(ip("192.0.2.7"), ip("192.0.2.7")));
        assert!(media_before_ack(ip("::ffff:192.0.2.7"), ip("192.0.2.7")));
        assert!(!media_before_ack(ip("198.51.100.9"), ip("192.0.2.7")));
        assert!(!media_before_ack(ip("2001:db8::1"), ip("2001:db8::2")));
    }

    #[test]
    fn derived_limits_keep_at_least_one_of_each() {
        assert_eq!(Limits::for_calls(0), limits(1, 1, 1));
        assert_eq!(Limits::for_calls(1), limits(1, 1, 1));
        assert_eq!(Limits::for_calls(100), limits(100, 50, 25));
    }
}
