//! The registrations of a role's user agents, kept by its [`Agent`]: each one's
//! [`Lifecycle`] (register, refresh, register anew when the registrar's connection drops,
//! unregister) with its REGISTERs sent in client transactions of the agent's endpoint, so
//! that the role's calls go on meanwhile.
//!
//! The first registrations and the unregistrations go a bounded number at a time
//! ([`REGISTRATIONS_AT_ONCE`]): a run of thousands of user agents does not flood the
//! registrar at its start and end. Renewals are not gated (they are spread by their
//! schedule).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::requests::RequestFailure;
use super::Agent;
use crate::ids::IdGen;
use crate::scenario::model::Account;
use crate::sip::auth::Credentials;
use crate::sip::transaction::{TransactionEvent, TxId};
use crate::sip::uri::NextHop;
use crate::ua::register::RegisterParams;
use crate::ua::registration::{Config, Lifecycle, RegistrationEvent, Response};

/// How many first registrations (and unregistrations) are under way at once.
pub const REGISTRATIONS_AT_ONCE: usize = 50;

/// What a user agent's registration is waiting its turn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Register,
    Unregister,
    RemoveAll,
}

/// One user agent's registration.
#[derive(Debug)]
struct Life<D> {
    user: String,
    registrar: D,
    lifecycle: Lifecycle,
    /// The REGISTER under way.
    tx: Option<TxId>,
    /// Its renewal deadline as armed in the timer set.
    armed: Option<Instant>,
    /// It holds one of the [`REGISTRATIONS_AT_ONCE`] turns.
    gated: bool,
    /// Its first registration has an outcome.
    first_done: bool,
    /// Its life is over (counted once).
    closed: bool,
}

/// The registrations of an agent.
#[derive(Debug)]
pub(super) struct Registrations<D> {
    lives: Vec<Life<D>>,
    by_tx: HashMap<TxId, usize>,
    timers: BTreeSet<(Instant, usize)>,
    /// Lives waiting for a turn, in order.
    queue: VecDeque<(usize, Turn)>,
    turns_taken: usize,
    /// Lives whose first registration has no outcome yet.
    registering: usize,
    /// Lives not over yet.
    open: usize,
    /// Every life was told to unregister.
    stopping: bool,
    events: VecDeque<(String, RegistrationEvent)>,
}

impl<D> Default for Registrations<D> {
    fn default() -> Self {
        Self {
            lives: Vec::new(),
            by_tx: HashMap::new(),
            timers: BTreeSet::new(),
            queue: VecDeque::new(),
            turns_taken: 0,
            registering: 0,
            open: 0,
            stopping: false,
            events: VecDeque::new(),
        }
    }
}

impl<D> Registrations<D> {
    /// The next renewal due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }
}

impl<D: Clone + NextHop + PartialEq + std::fmt::Display> Agent<D> {
    /// Register `account` with `registrar` (the server or the outbound proxy in front of
    /// it) for `expires` seconds, refreshing it before it lapses when `refresh`; it is
    /// kept (renewed after failures, and at once when the connection to the registrar
    /// drops) until [`Self::unregister`]. What happens comes from
    /// [`Self::poll_registration`].
    pub fn register(
        &mut self,
        now: Instant,
        account: &Account,
        registrar: D,
        expires: u32,
        refresh: bool,
        ids: IdGen,
    ) {
        self.last_now = Some(now);
        let index = self.add_life(account, registrar, expires, refresh, ids);
        self.regs.registering += 1;
        self.regs.queue.push_back((index, Turn::Register));
        self.admit(now);
        self.drive(now);
    }

    /// Remove every binding of `account`'s address of record at `registrar` (`Contact: *`
    /// with `Expires: 0`, RFC 3261 §10.2.2), without registering: its outcome comes from
    /// [`Self::poll_registration`] ([`RegistrationEvent::Unregistered`] with the bindings
    /// the registrar still lists, or [`RegistrationEvent::UnregisterFailed`]).
    pub fn remove_all(&mut self, now: Instant, account: &Account, registrar: D, ids: IdGen) {
        self.last_now = Some(now);
        let index = self.add_life(account, registrar, 0, false, ids);
        // There is no first registration to wait for.
        self.regs.lives[index].first_done = true;
        self.regs.queue.push_back((index, Turn::RemoveAll));
        self.admit(now);
        self.drive(now);
    }

    /// A new registration life, not started.
    fn add_life(
        &mut self,
        account: &Account,
        registrar: D,
        expires: u32,
        refresh: bool,
        ids: IdGen,
    ) -> usize {
        let lifecycle = Lifecycle::new(
            Config {
                params: RegisterParams {
                    user: account.user.clone(),
                    domain: account.domain.clone(),
                    credentials: Credentials::new(account.user.clone(), account.password.clone()),
                    expires,
                    sips: self.cfg.sips,
                },
                local: self.cfg.local.clone(),
                refresh,
                registrar: registrar.to_string(),
            },
            ids,
        );
        let index = self.regs.lives.len();
        self.regs.lives.push(Life {
            user: account.user.clone(),
            registrar,
            lifecycle,
            tx: None,
            armed: None,
            gated: false,
            first_done: false,
            closed: false,
        });
        self.regs.open += 1;
        index
    }

    /// Whether a first registration has no outcome yet (the load waits for them).
    #[must_use]
    pub fn registering(&self) -> bool {
        self.regs.registering > 0
    }

    /// Remove every binding (the load is over): each registration unregisters once its
    /// REGISTER under way, if any, is done.
    pub fn unregister(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.regs.stopping {
            return;
        }
        self.regs.stopping = true;
        for index in 0..self.regs.lives.len() {
            let life = &mut self.regs.lives[index];
            if life.lifecycle.is_closed() {
                continue;
            }
            if life.tx.is_some() || life.gated {
                // The unregistration follows the exchange under way.
                life.lifecycle.stop(now);
            } else if !self.regs.queue.iter().any(|&(i, _)| i == index) {
                self.regs.queue.push_back((index, Turn::Unregister));
            }
        }
        self.admit(now);
        self.drive(now);
    }

    /// Whether every registration has ended (unregistered, or never registered).
    #[must_use]
    pub fn unregistered(&self) -> bool {
        self.regs.open == 0
    }

    /// Requests of our own to `destination` (of user agent `ua` only, when each user agent
    /// has its own connection) cannot get a response: a connection that dropped or could
    /// not be opened, an ICMP error (`why`, the transport's words). The REGISTERs under way
    /// fail now, not at Timer F, and so do the other requests of our own to `destination`
    /// (every user agent's).
    pub fn requests_failed(&mut self, now: Instant, destination: &D, ua: Option<&str>, why: &str) {
        self.last_now = Some(now);
        let failure = RequestFailure::Transport(why.to_owned());
        if ua.is_none() {
            self.own_failed(Some(destination), &failure);
        }
        let response = Response::NoResponse(self.failure_text(&failure));
        self.registrations_failed(now, Some(destination), ua, &response);
        self.drive(now);
    }

    /// The REGISTERs under way to `destination` (every one when `None`; of user agent `ua`
    /// only, when given) end with `response`; their transactions are abandoned.
    pub(super) fn registrations_failed(
        &mut self,
        now: Instant,
        destination: Option<&D>,
        ua: Option<&str>,
        response: &Response,
    ) {
        for index in 0..self.regs.lives.len() {
            let life = &mut self.regs.lives[index];
            if destination.is_some_and(|d| life.registrar != *d)
                || ua.is_some_and(|ua| ua != life.user)
            {
                continue;
            }
            if let Some(tx) = life.tx.take() {
                self.regs.by_tx.remove(&tx);
                life.lifecycle.handle_response(now, response.clone());
                self.endpoint.abandon_request(tx);
                self.pump(now, index);
            }
        }
    }

    /// Whether a REGISTER is under way.
    pub(super) fn registration_under_way(&self) -> bool {
        !self.regs.by_tx.is_empty()
    }

    /// The status code and reason phrase of the last final response to a REGISTER of
    /// `user`'s (its latest registration's).
    #[must_use]
    pub fn registration_status(&self, user: &str) -> Option<(u16, &str)> {
        self.regs
            .lives
            .iter()
            .rev()
            .find(|life| life.user == user)
            .and_then(|life| life.lifecycle.last_status())
    }

    /// The connection to `peer` dropped (over TCP; of user agent `ua` only, when each has
    /// its own): the registrations through it are made anew at once (RFC 5626 §4.4.1).
    pub fn flow_lost(&mut self, now: Instant, peer: &D, ua: Option<&str>) {
        self.last_now = Some(now);
        for index in 0..self.regs.lives.len() {
            let life = &mut self.regs.lives[index];
            if life.registrar != *peer || ua.is_some_and(|ua| ua != life.user) {
                continue;
            }
            life.lifecycle.flow_lost(now);
            self.pump(now, index);
        }
        self.drive(now);
    }

    /// The registrars of the registrations, each once.
    pub(super) fn registrars(&self) -> Vec<D> {
        let mut all: Vec<D> = Vec::new();
        for life in &self.regs.lives {
            if !all.contains(&life.registrar) {
                all.push(life.registrar.clone());
            }
        }
        all
    }

    /// The next thing that happened to a registration, with its user.
    pub fn poll_registration(&mut self) -> Option<(String, RegistrationEvent)> {
        self.regs.events.pop_front()
    }

    /// Renewals due by `now`.
    pub(super) fn registration_timeouts(&mut self, now: Instant) {
        while let Some(&(at, index)) = self.regs.timers.first() {
            if at > now {
                break;
            }
            self.regs.timers.pop_first();
            let life = &mut self.regs.lives[index];
            life.armed = None;
            life.lifecycle.handle_timeout(now);
            self.pump(now, index);
        }
    }

    /// A transaction event of a request of our own: taken when it is a registration's.
    pub(super) fn registration_event(&mut self, now: Instant, event: &TransactionEvent<D>) -> bool {
        let (tx, response) = match event {
            TransactionEvent::Response { tx, message } => match message.status() {
                Some(code) if code >= 200 => (*tx, Response::Final(Box::new(message.clone()))),
                _ => return self.regs.by_tx.contains_key(tx),
            },
            TransactionEvent::TimedOut { tx, timer, elapsed } => (
                *tx,
                Response::NoResponse(self.failure_text(&RequestFailure::Timeout {
                    timer: *timer,
                    elapsed: *elapsed,
                })),
            ),
            TransactionEvent::Terminated { tx } => (
                *tx,
                Response::NoResponse(RequestFailure::Terminated.to_string()),
            ),
            _ => return false,
        };
        let Some(index) = self.regs.by_tx.remove(&tx) else {
            return false;
        };
        let life = &mut self.regs.lives[index];
        life.tx = None;
        life.lifecycle.handle_response(now, response);
        self.pump(now, index);
        true
    }

    /// Give waiting registrations their turn while turns are free.
    fn admit(&mut self, now: Instant) {
        while self.regs.turns_taken < REGISTRATIONS_AT_ONCE {
            let Some((index, turn)) = self.regs.queue.pop_front() else {
                return;
            };
            let stopping = self.regs.stopping;
            let life = &mut self.regs.lives[index];
            match turn {
                Turn::Register if !stopping => life.lifecycle.register(now),
                Turn::RemoveAll => life.lifecycle.remove_all(now),
                // Nothing registered yet: the life ends at once.
                Turn::Register | Turn::Unregister => life.lifecycle.stop(now),
            }
            if life.lifecycle.is_busy() {
                life.gated = true;
                self.regs.turns_taken += 1;
            }
            self.pump(now, index);
        }
    }

    /// Send what the registration has to send, take its events, re-arm its renewal.
    fn pump(&mut self, now: Instant, index: usize) {
        loop {
            let life = &mut self.regs.lives[index];
            if life.tx.is_some() {
                break;
            }
            let Some(request) = life.lifecycle.poll_request() else {
                break;
            };
            let to = life.registrar.clone();
            match self
                .endpoint
                .send_request(now, Bytes::from(request.bytes), to)
            {
                Ok(tx) => {
                    self.regs.lives[index].tx = Some(tx);
                    self.regs.by_tx.insert(tx, index);
                }
                Err(e) => self.regs.lives[index]
                    .lifecycle
                    .handle_response(now, Response::NoResponse(e.to_string())),
            }
        }
        let life = &mut self.regs.lives[index];
        let mut first = false;
        while let Some(event) = life.lifecycle.poll_event() {
            first |= matches!(
                event,
                RegistrationEvent::Registered { .. } | RegistrationEvent::Failed { .. }
            );
            self.regs.events.push_back((life.user.clone(), event));
        }
        if (first || life.lifecycle.is_closed()) && !life.first_done {
            life.first_done = true;
            self.regs.registering -= 1;
        }
        if life.lifecycle.is_closed() && !life.closed {
            life.closed = true;
            self.regs.open -= 1;
        }
        let deadline = life.lifecycle.poll_timeout();
        if deadline != life.armed {
            if let Some(old) = life.armed.take() {
                self.regs.timers.remove(&(old, index));
            }
            if let Some(at) = deadline {
                self.regs.timers.insert((at, index));
            }
            life.armed = deadline;
        }
        let freed = life.gated && !life.lifecycle.is_busy();
        if freed {
            life.gated = false;
            self.regs.turns_taken -= 1;
            self.admit(now);
        }
    }
}
