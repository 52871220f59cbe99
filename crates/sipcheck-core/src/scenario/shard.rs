//! One scenario split into N shards that together do exactly what one process would.
//!
//! Shards are numbered from 0 (`--shard 0/3`, `1/3`, `2/3`). The split is deterministic and
//! needs no coordination beyond the shard's index, its count and a common start instant:
//!
//! * **User agents**: each role's accounts are dealt round robin, account k of a role to shard
//!   k mod N, so that caller k and callee k of two roles of the same size land together. Each
//!   shard's callers call only its own callees; the pairs are those of one process when every
//!   role's size is a multiple of N. Every role needs at least N accounts.
//! * **Open load** (`rate`): shard i starts calls i, i + N, i + 2N … of the whole schedule,
//!   each at its instant in the whole schedule (so at rate ÷ N, offset by i / rate, ramp
//!   included). `total_calls` T is split exactly: shard i gets ⌊T / N⌋, plus one when
//!   i < T mod N. `max_concurrent` is split the same way.
//! * **Closed load** (`concurrent`): the calls kept up and `total_calls` are split the same
//!   way; the ramp keeps its duration.
//! * **Ports** ([`Ports::Slice`], the default): the RTP port range is cut into N contiguous
//!   slices (the last takes the remainder), and every explicit `listen` port (and
//!   `target.local`'s) moves up by i × the span of the scenario's listen ports, so that
//!   shards can share a host; a `call` whose `to` names a role's listen address follows it.
//!   With [`Ports::Whole`] (each shard on an address of its own) every shard keeps them all.
//!
//! The [`fingerprint`] of the whole scenario (before the split) names it in every shard's
//! summary, so that shards of different scenarios are never merged.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use super::model::{Load, Scenario, Step};
use super::text::{Placeholder, Template};
use super::units::PortRange;

/// Which part of a scenario a process runs: shard `index` of `count`, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a scenario cannot be split, or a shard not named.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ShardError {
    /// `--shard` is not `I/N`.
    #[error("'{0}' is not a shard: expected I/N with 0 <= I < N, like 0/3 (shards count from 0)")]
    Malformed(String),
    /// A shard count of zero.
    #[error("a run cannot be split into 0 shards")]
    NoShards,
    /// The index is not below the count.
    #[error("shard {index} of {count} does not exist: shards are numbered from 0 to {}", count.saturating_sub(1))]
    OutOfRange {
        /// The index given.
        index: u64,
        /// The count given.
        count: u32,
    },
    /// An environment variable that should hold a number does not.
    #[error("{name}={value} is not a shard number")]
    BadVariable {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// An index without a count, or the reverse.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A role with fewer accounts than shards.
    #[error("role {role} has {accounts} account(s), fewer than the {shards} shards: every shard needs at least one user agent of each role")]
    TooFewAccounts {
        /// The role.
        role: String,
        /// Its accounts.
        accounts: usize,
        /// The shard count.
        shards: u32,
    },
    /// A load too small to give every shard a share.
    #[error(
        "load.{what} is {value}, fewer than the {shards} shards: every shard needs at least one"
    )]
    TooSmall {
        /// `concurrent`, `max_concurrent` or `total_calls`.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The shard count.
        shards: u32,
    },
    /// An RTP port range too small to slice.
    #[error("media.rtp_ports has {ports} ports: {shards} shards need at least 2 each")]
    TooFewPorts {
        /// The range's size.
        ports: u32,
        /// The shard count.
        shards: u32,
    },
    /// A `--start-at` instant already well past.
    #[error("the start instant passed {late_ms} ms ago (more than the {} s allowed): give a time in the future", START_AT_GRACE.as_secs())]
    StartPassed {
        /// How long ago.
        late_ms: u64,
    },
    /// A listen port moved beyond 65535.
    #[error("the listen port {port} of shard {index} would be beyond 65535")]
    PortOverflow {
        /// The scenario's port.
        port: u16,
        /// The shard.
        index: u32,
    },
}

impl Shard {
    /// The whole run: shard 0 of 1.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`, from 0.
    ///
    /// # Errors
    /// [`ShardError::NoShards`] or [`ShardError::OutOfRange`].
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::OutOfRange {
                index: u64::from(index),
                count,
            });
        }
        Ok(Self { index, count })
    }

    /// The index, from 0.
    #[must_use]
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    #[must_use]
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is the whole run.
    #[must_use]
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// How many of `total` things dealt round robin (thing k to shard k mod N) are this
    /// shard's: ⌊total / N⌋, plus one when index < total mod N. The shares of every shard add
    /// up to `total` and differ by at most one.
    #[must_use]
    pub fn share(self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }

    /// Whether thing `k` (from 0), dealt round robin, is this shard's.
    #[must_use]
    pub fn owns(self, k: u64) -> bool {
        k % u64::from(self.count) == u64::from(self.index)
    }

    /// The shard a run is, from (in this order) `--shard I/N`, `--shards N` with the
    /// Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` (from 0), or GitLab's `parallel:`
    /// variables `CI_NODE_INDEX` (from 1) and `CI_NODE_TOTAL`. `None`: not sharded.
    ///
    /// # Errors
    /// A malformed or out-of-range index or count, or `--shards` without an index.
    pub fn from_sources(
        flag: Option<&str>,
        shards: Option<u32>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ShardError> {
        let number = |name: &'static str| -> Result<Option<u64>, ShardError> {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| ShardError::BadVariable {
                            name,
                            value: v.clone(),
                        })
                })
                .transpose()
        };
        let fit = |index: u64, count: u64| -> Result<Self, ShardError> {
            let count = u32::try_from(count).map_err(|_| ShardError::OutOfRange {
                index,
                count: u32::MAX,
            })?;
            let i = u32::try_from(index).map_err(|_| ShardError::OutOfRange { index, count })?;
            Self::new(i, count)
        };
        if let Some(flag) = flag {
            return flag.parse().map(Some);
        }
        if let Some(count) = shards {
            let index = number("JOB_COMPLETION_INDEX")?.ok_or(ShardError::Incomplete(
                "--shards N takes the shard's index from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's, from 0), which is not set: give --shard I/N instead",
            ))?;
            return fit(index, u64::from(count)).map(Some);
        }
        match (number("CI_NODE_INDEX")?, number("CI_NODE_TOTAL")?) {
            (Some(index), Some(total)) => {
                if index == 0 {
                    return Err(ShardError::BadVariable {
                        name: "CI_NODE_INDEX",
                        value: "0".into(),
                    });
                }
                fit(index - 1, total).map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        let malformed = || ShardError::Malformed(s.to_owned());
        let (i, n) = s.trim().split_once('/').ok_or_else(malformed)?;
        let i: u64 = i.trim().parse().map_err(|_| malformed())?;
        let n: u32 = n.trim().parse().map_err(|_| malformed())?;
        if n == 0 {
            return Err(ShardError::NoShards);
        }
        let index = u32::try_from(i).map_err(|_| ShardError::OutOfRange { index: i, count: n })?;
        Self::new(index, n)
    }
}

/// How late a `--start-at` instant may already be when the run is ready to start its load:
/// within this, the load starts at once (its schedule still counts from the instant, so the
/// first calls are late and counted so); beyond it, the run is refused.
pub const START_AT_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for the common start instant `at`, both as time since the Unix epoch.
///
/// # Errors
/// [`ShardError::StartPassed`] when `at` passed more than [`START_AT_GRACE`] ago.
pub fn start_delay(at: Duration, now: Duration) -> Result<Duration, ShardError> {
    match now.checked_sub(at) {
        Some(late) if late > START_AT_GRACE => Err(ShardError::StartPassed {
            late_ms: u64::try_from(late.as_millis()).unwrap_or(u64::MAX),
        }),
        Some(_) => Ok(Duration::ZERO),
        None => Ok(at - now),
    }
}

/// A name of the whole scenario as validated (with overrides and variables applied), the
/// same in every shard and for every process that loads the same scenario the same way:
/// 16 hex digits of the 64-bit FNV-1a hash of its description. Passwords are not part of it.
#[must_use]
pub fn fingerprint(scenario: &Scenario) -> String {
    let text = format!("{scenario:?}");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Whether the shards share the scenario's ports or each has them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ports {
    /// The shards may share a host (an IP address): the RTP port range is sliced and the
    /// listen ports moved, so that no two shards bind the same port.
    #[default]
    Slice,
    /// Each shard has an address of its own (its own host or pod IP): every shard keeps the
    /// scenario's RTP port range and listen ports whole.
    Whole,
}

impl FromStr for Ports {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slice" => Ok(Self::Slice),
            "whole" => Ok(Self::Whole),
            _ => Err(format!("'{s}' is not slice or whole")),
        }
    }
}

/// The part of `scenario` that `shard` runs (see the module documentation); `ports` says
/// whether its ports are sliced among the shards.
///
/// # Errors
/// A role with fewer accounts than shards, a load too small to share, an RTP port range too
/// small to slice, or a listen port pushed past 65535.
pub fn split(scenario: &Scenario, shard: Shard, ports: Ports) -> Result<Scenario, ShardError> {
    if shard.is_whole() {
        return Ok(scenario.clone());
    }
    let mut out = scenario.clone();
    let n = shard.count;
    for role in &mut out.roles {
        if role.accounts.len() < n as usize {
            return Err(ShardError::TooFewAccounts {
                role: role.name.clone(),
                accounts: role.accounts.len(),
                shards: n,
            });
        }
        role.accounts = std::mem::take(&mut role.accounts)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| shard.owns(*k as u64))
            .map(|(_, a)| a)
            .collect();
    }
    out.load = split_load(&scenario.load, shard)?;
    if ports == Ports::Slice {
        out.media.rtp_ports = split_ports(scenario.media.rtp_ports, shard)?;
        move_listen_ports(&mut out, shard)?;
    }
    Ok(out)
}

fn split_load(load: &Load, shard: Shard) -> Result<Load, ShardError> {
    let n = shard.count;
    let share = |what: &'static str, value: u64| -> Result<u64, ShardError> {
        if value < u64::from(n) {
            return Err(ShardError::TooSmall {
                what,
                value,
                shards: n,
            });
        }
        Ok(shard.share(value))
    };
    Ok(match *load {
        Load::Open {
            rate,
            ramp_up,
            end,
            max_concurrent,
            shard: _,
        } => {
            if let Some(total) = end.calls() {
                share("total_calls", total)?;
            }
            Load::Open {
                rate,
                ramp_up,
                // The whole schedule's end: the plan keeps this shard's calls of it.
                end,
                max_concurrent: max_concurrent
                    .map(|m| share("max_concurrent", u64::from(m)))
                    .transpose()?
                    .map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
                shard,
            }
        }
        Load::Closed {
            concurrent,
            ramp_up,
            end,
        } => {
            let concurrent =
                u32::try_from(share("concurrent", u64::from(concurrent))?).unwrap_or(u32::MAX);
            let end = match end {
                super::model::End::Calls(t) => super::model::End::Calls(share("total_calls", t)?),
                super::model::End::CallsOrAfter(t, d) => {
                    super::model::End::CallsOrAfter(share("total_calls", t)?, d)
                }
                after @ super::model::End::After(_) => after,
            };
            Load::Closed {
                concurrent,
                ramp_up,
                end,
            }
        }
    })
}

fn split_ports(ports: PortRange, shard: Shard) -> Result<PortRange, ShardError> {
    let len = ports.len();
    let each = len / shard.count;
    if each < 2 {
        return Err(ShardError::TooFewPorts {
            ports: len,
            shards: shard.count,
        });
    }
    let first = u32::from(ports.first) + shard.index * each;
    let last = if shard.index + 1 == shard.count {
        u32::from(ports.last)
    } else {
        first + each - 1
    };
    Ok(PortRange {
        first: u16::try_from(first).unwrap_or(u16::MAX),
        last: u16::try_from(last).unwrap_or(u16::MAX),
    })
}

/// Moves every explicit listen port up by index × the span of the listen ports, and the
/// `to` of calls that name one of them with it.
fn move_listen_ports(scenario: &mut Scenario, shard: Shard) -> Result<(), ShardError> {
    let ports: Vec<u16> = scenario
        .roles
        .iter()
        .filter_map(|r| r.listen)
        .chain(scenario.target.local)
        .map(|a| a.port())
        .filter(|&p| p != 0)
        .collect();
    let (Some(&low), Some(&high)) = (ports.iter().min(), ports.iter().max()) else {
        return Ok(());
    };
    let step = u32::from(high - low) + 1;
    let moved = |addr: SocketAddr| -> Result<SocketAddr, ShardError> {
        if addr.port() == 0 {
            return Ok(addr);
        }
        let port = u32::from(addr.port()) + shard.index * step;
        let port = u16::try_from(port).map_err(|_| ShardError::PortOverflow {
            port: addr.port(),
            index: shard.index,
        })?;
        Ok(SocketAddr::new(addr.ip(), port))
    };
    let mut renamed = Vec::new();
    for role in &mut scenario.roles {
        if let Some(addr) = role.listen {
            let new = moved(addr)?;
            renamed.push((addr.to_string(), new.to_string()));
            role.listen = Some(new);
        }
    }
    if let Some(addr) = scenario.target.local {
        scenario.target.local = Some(moved(addr)?);
    }
    for role in &mut scenario.roles {
        for step in &mut role.steps {
            let Step::Call(call) = &mut step.value else {
                continue;
            };
            let text = call.to.to_string();
            if let Some((old, new)) = renamed.iter().find(|(old, _)| names(&text, old)) {
                let all = [Placeholder::User, Placeholder::Peer, Placeholder::Domain];
                if let Ok(t) = Template::parse(&text.replacen(old.as_str(), new, 1), &all) {
                    call.to = t;
                }
            }
        }
    }
    Ok(())
}

/// Whether `text` names `addr` (`127.0.0.1:5070`), not followed by another digit.
fn names(text: &str, addr: &str) -> bool {
    text.find(addr).is_some_and(|at| {
        !text[at + addr.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests;
