//! The two ends of one call, judged together before they are counted.
//!
//! Each end of a call judges only what it receives: the end that heard nothing reports
//! `no_audio`. When both ends are user agents of the same run, [`Pairing`] holds each call
//! result until its other end (the same Call-ID, the other side) arrives, then names one-way
//! audio with [`name_one_way`]: the deaf end's `no_audio` becomes `one_way_audio` naming the
//! direction that carried nothing, and the call fails once, as `one_way_audio`.
//!
//! Memory is bounded: a result waits at most [`Pairing::hold`] (its other end never comes:
//! the other role is a real PBX, a proxy changed the Call-ID, the callee never got the
//! INVITE), at most [`MAX_HELD`] results wait at once (the oldest is released first), and
//! [`Pairing::flush`] releases every result still held (the run's end, Ctrl-C). A released
//! result is exactly as its end reported it. Without both sides in the run, nothing is held.
//!
//! Sans-IO: the caller passes `now`, asks [`Pairing::poll_timeout`] when to come back, and
//! calls [`Pairing::handle_timeout`] then.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::outcome::{name_one_way, pair_delays, CallResult, Side};

/// At most this many results wait for their other end at once.
pub const MAX_HELD: usize = 4096;

/// How long a result waits for its other end by default: both ends of a call end within
/// a round trip of each other (the BYE and its answer).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);

/// Holds call results until their other end arrives (see the module's documentation).
#[derive(Debug)]
pub struct Pairing {
    enabled: bool,
    hold: Duration,
    /// Held results by (Call-ID, side).
    held: HashMap<(String, Side), CallResult>,
    /// When each was held, oldest first (entries already released are skipped).
    order: VecDeque<(Instant, String, Side)>,
}

impl Pairing {
    /// Pairs results only when `enabled` (the run has both a calling and an answering role);
    /// otherwise every result is released as it arrives.
    #[must_use]
    pub fn new(enabled: bool, hold: Duration) -> Self {
        Self {
            enabled,
            hold,
            held: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// How long a result waits for its other end.
    #[must_use]
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// How many results wait for their other end.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// One end's result; returns the results to count now (none, this one, or both ends of
    /// its call, judged together; or the oldest held one when too many wait).
    pub fn push(&mut self, now: Instant, result: CallResult) -> Vec<CallResult> {
        if !self.enabled || result.call_id.is_empty() {
            return vec![result];
        }
        let other = match result.side {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        };
        if let Some(partner) = self.held.remove(&(result.call_id.clone(), other)) {
            let (mut caller, mut callee) = match result.side {
                Side::Caller => (result, partner),
                Side::Callee => (partner, result),
            };
            name_one_way(&mut caller, &mut callee);
            pair_delays(&mut caller, &mut callee);
            return vec![caller, callee];
        }
        let mut released = Vec::new();
        let key = (result.call_id.clone(), result.side);
        if let Some(previous) = self.held.insert(key.clone(), result) {
            // The same end twice (a Call-ID reused): the earlier one goes as it is.
            released.push(previous);
        }
        self.order.push_back((now, key.0, key.1));
        while self.held.len() > MAX_HELD && !self.order.is_empty() {
            if let Some(r) = self.pop_oldest() {
                released.push(r);
            }
        }
        self.compact();
        released
    }

    /// When the oldest held result is due to be released.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|(_, id, side)| self.held.contains_key(&(id.clone(), *side)))
            .map(|(at, _, _)| *at + self.hold)
    }

    /// Releases, as they are, the results that waited [`Pairing::hold`] for their other end.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<CallResult> {
        let mut released = Vec::new();
        while let Some((at, _, _)) = self.order.front() {
            if *at + self.hold > now {
                break;
            }
            if let Some(r) = self.pop_oldest() {
                released.push(r);
            }
        }
        self.compact();
        released
    }

    /// Releases every held result, as it is, oldest first (the run's end, Ctrl-C).
    pub fn flush(&mut self) -> Vec<CallResult> {
        let mut released = Vec::new();
        while !self.order.is_empty() {
            if let Some(r) = self.pop_oldest() {
                released.push(r);
            }
        }
        released
    }

    /// Removes the oldest entry of the order; its result, if still held.
    fn pop_oldest(&mut self) -> Option<CallResult> {
        let (_, id, side) = self.order.pop_front()?;
        self.held.remove(&(id, side))
    }

    /// Drops the entries of the order whose results were released by pairing (kept at most
    /// twice the held results).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.held.len() + 64 {
            let held = &self.held;
            self.order
                .retain(|(_, id, side)| held.contains_key(&(id.clone(), *side)));
        }
    }
}

#[cfg(test)]
mod tests;
