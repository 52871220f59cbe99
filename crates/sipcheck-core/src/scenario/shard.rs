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

use std::net::SocketAddr;
use std::str::FromStr;

use super::model::{Load, Scenario, Step};
pub use super::part::{start_delay, Shard, ShardError, START_AT_GRACE};
use super::text::{Placeholder, Template};
use super::units::PortRange;

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
    let n = shard.count();
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
    let n = shard.count();
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
    let each = len / shard.count();
    if each < 2 {
        return Err(ShardError::TooFewPorts {
            ports: len,
            shards: shard.count(),
        });
    }
    let first = u32::from(ports.first) + shard.index() * each;
    let last = if shard.index() + 1 == shard.count() {
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
        let port = u32::from(addr.port()) + shard.index() * step;
        let port = u16::try_from(port).map_err(|_| ShardError::PortOverflow {
            port: addr.port(),
            index: shard.index(),
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
