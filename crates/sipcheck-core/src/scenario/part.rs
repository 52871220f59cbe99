//! Which part of a scenario a process runs: shard I of N, named on the command line or by
//! the engine running the shards (see [`super::shard`] for how a scenario is split).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

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
