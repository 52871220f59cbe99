//! Values with units, as written in scenarios: durations, percentages, levels, frequencies,
//! rates, port ranges, decibels and `host:port` addresses.
//!
//! Each type parses with [`FromStr`] and deserialises (through serde) from the same text, with
//! a message that quotes the rejected text and says what was expected:
//! `'20x' is not a duration: expected a number followed by ms, s, m or h`.
//!
//! Numbers are decimal (`1.5s`, `2.5/s`, `0.5%`) and converted exactly where the target is an
//! integer (durations to nanoseconds, rates to a count per period), so that a schedule compiled
//! from them is exact.

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use thiserror::Error;

/// Why a value with a unit was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// Not a duration.
    #[error("'{0}' is not a duration: expected a number followed by ms, s, m or h")]
    Duration(String),
    /// The components of a duration are not in the order h, m, s, ms, or one repeats.
    #[error(
        "'{0}' is not a duration: write the parts largest first, each once, like 1h30m or 1m30s"
    )]
    DurationOrder(String),
    /// A duration longer than [`MAX_DURATION`].
    #[error("'{0}' is longer than 30 days, the longest duration sipcheck takes")]
    DurationTooLong(String),
    /// Not a percentage.
    #[error("'{0}' is not a percentage: expected a number followed by %, like 0.5%")]
    Percent(String),
    /// Not a level in dBFS.
    #[error("'{0}' is not a level: expected a number followed by dBFS, like -12dBFS")]
    Level(String),
    /// A level above full scale.
    #[error("'{0}' is above full scale: a level must be 0dBFS or lower")]
    LevelAboveFullScale(String),
    /// Not a frequency.
    #[error("'{0}' is not a frequency: expected a number followed by Hz or kHz, like 440Hz, 1kHz or 350+440Hz")]
    Frequency(String),
    /// More than two frequencies.
    #[error("'{0}' has more than two frequencies: a tone is single (440Hz) or dual (350+440Hz)")]
    TooManyFrequencies(String),
    /// Not a rate.
    #[error("'{0}' is not a rate: expected a number of calls per second, minute or hour, like 20/s or 300/m")]
    Rate(String),
    /// A rate of zero.
    #[error("'{0}' is a rate of zero: nothing would ever start")]
    ZeroRate(String),
    /// Not a port range.
    #[error(
        "'{0}' is not a port range: expected FIRST-LAST with ports 1..=65535, like 20000-29999"
    )]
    PortRange(String),
    /// A port range whose end is below its start.
    #[error("'{0}' is reversed: the first port must not be above the last")]
    PortRangeReversed(String),
    /// Not a value in decibels.
    #[error("'{0}' is not a decibel value: expected a number followed by dB, like 15dB")]
    Decibels(String),
    /// Not `host[:port]`.
    #[error(
        "'{0}' is not an address: expected host or host:port, like pbx.test:5060 or [::1]:5060"
    )]
    HostPort(String),
    /// A `sips:` address: an address is `host[:port]`, TLS is `transport: tls` (a `sips:`
    /// address given over UDP or TCP would not be honoured).
    #[error("'{0}': sips: needs TLS; give host or host:port, and `transport: tls`")]
    NeedsTls(String),
    /// Not `ip[:port]`.
    #[error("'{0}' is not a local address: expected an IP address with an optional port, like 127.0.0.1:5070")]
    LocalAddr(String),
}

/// A decimal number split into its digits and scale: `12.34` is `1234 × 10^-2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    /// Parses an unsigned decimal with at most 9 fractional digits; no sign, no exponent.
    fn parse(s: &str) -> Option<Self> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if s.ends_with('.') || frac.len() > 9 || int.len() > 20 {
            return None;
        }
        let mut mantissa: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(b - b'0'))?;
        }
        Some(Self {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    /// `self × unit`, exact when the product is whole; truncated below one unit otherwise.
    fn times(self, unit: u128) -> Option<u128> {
        self.mantissa
            .checked_mul(unit)
            .map(|v| v / 10u128.pow(self.scale))
    }

    fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

/// Splits a leading (optionally signed) decimal number from its unit suffix.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    (&s[..end], s[end..].trim_start())
}

/// Parses a signed decimal number as `f64`, rejecting exponents, `inf` and `NaN`.
fn parse_signed(s: &str) -> Option<f64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = Decimal::parse(digits)?.to_f64();
    Some(if neg { -v } else { v })
}

macro_rules! deserialize_via_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------

/// The longest duration accepted anywhere (scenarios and flags): 30 days. Every deadline
/// sipcheck computes (`now` + a duration of the input) then stays far from overflowing.
pub const MAX_DURATION: StdDuration = StdDuration::from_secs(30 * 24 * 3600);

/// A span of time written with units: `500ms`, `2s`, `1.5s`, `1m30s`, `5m`, `1h`.
///
/// Parts are written largest first, each at most once; spaces between parts are allowed
/// (`1m 30s`). Units may also be spelt `sec`/`secs`/`seconds`, `msec`/`milliseconds`,
/// `min`/`minutes`, `hr`/`hours`. A bare number is rejected: the unit is never guessed. The
/// command line parses durations with this same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// The standard-library duration.
    #[must_use]
    pub fn get(self) -> StdDuration {
        self.0
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        // Each unit with the spellings people write on a command line too (`5sec`, `2min`):
        // scenarios and flags accept exactly the same durations.
        const UNITS: [(&[&str], u128); 4] = [
            (&["h", "hr", "hrs", "hour", "hours"], 3_600_000_000_000),
            (&["m", "min", "mins", "minute", "minutes"], 60_000_000_000),
            (&["s", "sec", "secs", "second", "seconds"], 1_000_000_000),
            (
                &["ms", "msec", "msecs", "millisecond", "milliseconds"],
                1_000_000,
            ),
        ];
        let bad = || UnitError::Duration(s.to_owned());
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u128 = 0;
        let mut last_rank: Option<usize> = None;
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number = Decimal::parse(&rest[..digits_end]).ok_or_else(bad)?;
            rest = &rest[digits_end..];
            let unit_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = rest[unit_end..].trim_start();
            let rank = UNITS
                .iter()
                .position(|(spellings, _)| spellings.contains(&unit))
                .ok_or_else(bad)?;
            if last_rank.is_some_and(|last| rank <= last) {
                return Err(UnitError::DurationOrder(s.to_owned()));
            }
            last_rank = Some(rank);
            total = number
                .times(UNITS[rank].1)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(bad)?;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
        let d = StdDuration::new(secs, (total % 1_000_000_000) as u32);
        if d > MAX_DURATION {
            return Err(UnitError::DurationTooLong(s.to_owned()));
        }
        Ok(Self(d))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact spelling: `0s`, `500ms`, `1m30s`, `1h`, `1.5ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000_000_000u128), ("m", 60_000_000_000)] {
            if nanos >= size {
                write!(f, "{}{unit}", nanos / size)?;
                nanos %= size;
            }
        }
        if nanos >= 1_000_000_000 {
            write!(f, "{}s", nanos / 1_000_000_000)?;
            nanos %= 1_000_000_000;
        }
        if nanos == 0 {
            return Ok(());
        }
        let ms = nanos / 1_000_000;
        let frac = nanos % 1_000_000;
        if frac == 0 {
            write!(f, "{ms}ms")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{ms}.{}ms", digits.trim_end_matches('0'))
        }
    }
}

deserialize_via_from_str!(Duration, "a duration like 500ms, 2s or 1m30s");

// ---------------------------------------------------------------------------------------------

/// A percentage: `0.5%`, `99.5%`. Stored in percent (`0.5%` is `0.5`); see [`Percent::fraction`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// The percentage as a fraction of one: `0.5%` is `0.005`.
    #[must_use]
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        let value = t
            .strip_suffix('%')
            .map(str::trim_end)
            .and_then(Decimal::parse)
            .ok_or_else(|| UnitError::Percent(s.to_owned()))?;
        Ok(Self(value.to_f64()))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

deserialize_via_from_str!(Percent, "a percentage like 0.5%");

// ---------------------------------------------------------------------------------------------

/// A signal level relative to full scale: `-12dBFS`, `0dBFS`. Never above 0 dBFS.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Dbfs(pub f64);

impl FromStr for Dbfs {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (number, unit) = split_number(s.trim());
        if !unit.eq_ignore_ascii_case("dBFS") {
            return Err(UnitError::Level(s.to_owned()));
        }
        let v = parse_signed(number).ok_or_else(|| UnitError::Level(s.to_owned()))?;
        if v > 0.0 {
            return Err(UnitError::LevelAboveFullScale(s.to_owned()));
        }
        Ok(Self(v))
    }
}

impl fmt::Display for Dbfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}dBFS", self.0)
    }
}

deserialize_via_from_str!(Dbfs, "a level like -12dBFS");

// ---------------------------------------------------------------------------------------------

/// A ratio in decibels, as a signal-to-noise ratio: `15dB`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Decibels(pub f64);

impl FromStr for Decibels {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (number, unit) = split_number(s.trim());
        if !unit.eq_ignore_ascii_case("dB") {
            return Err(UnitError::Decibels(s.to_owned()));
        }
        parse_signed(number)
            .map(Self)
            .ok_or_else(|| UnitError::Decibels(s.to_owned()))
    }
}

impl fmt::Display for Decibels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}dB", self.0)
    }
}

deserialize_via_from_str!(Decibels, "a ratio in decibels like 15dB");

// ---------------------------------------------------------------------------------------------

/// A frequency in hertz: `440Hz`, `1kHz`, `1.5kHz`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Frequency(pub f64);

impl Frequency {
    /// The frequency in hertz.
    #[must_use]
    pub fn hz(self) -> f64 {
        self.0
    }
}

fn hz_multiplier(unit: &str) -> Option<f64> {
    if unit.eq_ignore_ascii_case("Hz") {
        Some(1.0)
    } else if unit.eq_ignore_ascii_case("kHz") {
        Some(1000.0)
    } else {
        None
    }
}

impl FromStr for Frequency {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || UnitError::Frequency(s.to_owned());
        let (number, unit) = split_number(s.trim());
        let mult = hz_multiplier(unit).ok_or_else(bad)?;
        let v = Decimal::parse(number).ok_or_else(bad)?.to_f64() * mult;
        Ok(Self(v))
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Hz", self.0)
    }
}

deserialize_via_from_str!(Frequency, "a frequency like 440Hz or 1kHz");

/// The frequencies of a single (`440Hz`) or dual (`350+440Hz`, `350Hz+440Hz`) tone.
#[derive(Debug, Clone, PartialEq)]
pub struct Frequencies(pub Vec<Frequency>);

impl FromStr for Frequencies {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let parts: Vec<&str> = s.split('+').map(str::trim).collect();
        if parts.len() > 2 {
            return Err(UnitError::TooManyFrequencies(s.to_owned()));
        }
        let bad = || UnitError::Frequency(s.to_owned());
        // The unit may be written once, at the end: `350+440Hz`.
        let last_unit = split_number(parts[parts.len() - 1]).1;
        let mult_last = hz_multiplier(last_unit).ok_or_else(bad)?;
        let mut out = Vec::with_capacity(parts.len());
        for part in &parts {
            let (number, unit) = split_number(part);
            let mult = if unit.is_empty() {
                mult_last
            } else {
                hz_multiplier(unit).ok_or_else(bad)?
            };
            out.push(Frequency(
                Decimal::parse(number).ok_or_else(bad)?.to_f64() * mult,
            ));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Frequencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hz: Vec<String> = self.0.iter().map(|v| v.0.to_string()).collect();
        write!(f, "{}Hz", hz.join("+"))
    }
}

deserialize_via_from_str!(Frequencies, "a frequency like 440Hz or 350+440Hz");

// ---------------------------------------------------------------------------------------------

/// A rate of events, kept exact as `calls` per `per`: `20/s` is 20 per second, `2.5/s` is 5
/// per 2 seconds, `300/m` is 300 per minute. Equal rates compare equal (`300/m == 5/s`).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// How many events happen per `per`.
    pub calls: u64,
    /// The period `calls` is counted over.
    pub per: StdDuration,
}

impl PartialEq for Rate {
    fn eq(&self, other: &Self) -> bool {
        u128::from(self.calls) * other.per.as_nanos()
            == u128::from(other.calls) * self.per.as_nanos()
    }
}

impl Eq for Rate {}

impl Rate {
    /// The rate in events per second.
    #[must_use]
    pub fn per_second(self) -> f64 {
        self.calls as f64 / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || UnitError::Rate(s.to_owned());
        let (number, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let period_secs: u64 = match unit.trim() {
            "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        let d = Decimal::parse(number.trim()).ok_or_else(bad)?;
        if d.mantissa == 0 {
            return Err(UnitError::ZeroRate(s.to_owned()));
        }
        let calls = u64::try_from(d.mantissa).map_err(|_| bad())?;
        let per = StdDuration::from_secs(period_secs)
            .checked_mul(10u32.pow(d.scale))
            .ok_or_else(bad)?;
        // 2.5/s is 25 per 10 s; reduce it to 5 per 2 s.
        let g = gcd(u128::from(calls), u128::from(10u32.pow(d.scale))) as u32;
        let calls = calls / u64::from(g);
        let per = per / g;
        Ok(Self { calls, per })
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl fmt::Display for Rate {
    /// In the largest unit that divides the period: `300/m`, `2.5/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_ns = self.per.as_nanos();
        for (unit, size) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
        ] {
            if per_ns.is_multiple_of(size) {
                let k = per_ns / size;
                if u128::from(self.calls) % k == 0 {
                    return write!(f, "{}/{unit}", u128::from(self.calls) / k);
                }
                return write!(f, "{}/{unit}", self.calls as f64 / k as f64);
            }
        }
        write!(f, "{}/s", self.per_second())
    }
}

deserialize_via_from_str!(Rate, "a rate like 20/s or 300/m");

// ---------------------------------------------------------------------------------------------

/// An inclusive range of ports: `20000-29999`. A single port (`5004`) is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port of the range.
    pub first: u16,
    /// The last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    #[must_use]
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Whether the range is empty (never, once parsed; for clippy's `len_without_is_empty`).
    #[must_use]
    pub fn is_empty(self) -> bool {
        false
    }
}

impl FromStr for PortRange {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || UnitError::PortRange(s.to_owned());
        let port = |p: &str| -> Result<u16, UnitError> {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(UnitError::PortRangeReversed(s.to_owned()));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

deserialize_via_from_str!(PortRange, "a port range like 20000-29999");

// ---------------------------------------------------------------------------------------------

/// A host with an optional port: `pbx.test`, `10.0.0.1:5060`, `[2001:db8::1]:5060`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if one was written.
    pub port: Option<u16>,
}

impl FromStr for HostPort {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || UnitError::HostPort(s.to_owned());
        let t = s.trim();
        if t.get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
        {
            return Err(UnitError::NeedsTls(s.to_owned()));
        }
        let port_of = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad);
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                p => Some(port_of(p.strip_prefix(':').ok_or_else(bad)?)?),
            };
            (host, port)
        } else if t.parse::<std::net::Ipv6Addr>().is_ok() {
            (t, None)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(port_of(p)?)),
                None => (t, None),
            }
        };
        let valid_host = !host.is_empty()
            && (host.parse::<std::net::Ipv6Addr>().is_ok()
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'));
        if !valid_host {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

deserialize_via_from_str!(HostPort, "an address like pbx.test:5060");

/// A local IP address with an optional port (`0` or absent: any port): `127.0.0.1:5070`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr(pub std::net::SocketAddr);

impl FromStr for LocalAddr {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
            return Ok(Self(sa));
        }
        let ip = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(t);
        ip.parse::<std::net::IpAddr>()
            .map(|ip| Self(std::net::SocketAddr::new(ip, 0)))
            .map_err(|_| UnitError::LocalAddr(s.to_owned()))
    }
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

deserialize_via_from_str!(LocalAddr, "a local address like 127.0.0.1:5070");

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> StdDuration {
        s.parse::<Duration>().unwrap().0
    }

    #[test]
    fn durations_with_each_unit() {
        assert_eq!(d("500ms"), StdDuration::from_millis(500));
        assert_eq!(d("2s"), StdDuration::from_secs(2));
        assert_eq!(d("5m"), StdDuration::from_secs(300));
        assert_eq!(d("1h"), StdDuration::from_secs(3600));
        assert_eq!(d("0s"), StdDuration::ZERO);
    }

    #[test]
    fn compound_and_decimal_durations_are_exact() {
        assert_eq!(d("1m30s"), StdDuration::from_secs(90));
        assert_eq!(d("1m 30s"), StdDuration::from_secs(90));
        assert_eq!(d("1h2m3s4ms"), StdDuration::from_millis(3_723_004));
        assert_eq!(d("1.5s"), StdDuration::from_millis(1500));
        assert_eq!(d("0.25ms"), StdDuration::from_micros(250));
        assert_eq!(d("2.5m"), StdDuration::from_secs(150));
    }

    #[test]
    fn units_spelt_out_mean_the_same() {
        assert_eq!(d("2sec"), StdDuration::from_secs(2));
        assert_eq!(d("5secs"), StdDuration::from_secs(5));
        assert_eq!(d("1second"), StdDuration::from_secs(1));
        assert_eq!(d("250msec"), StdDuration::from_millis(250));
        assert_eq!(d("3milliseconds"), StdDuration::from_millis(3));
        assert_eq!(d("2min 30sec"), StdDuration::from_secs(150));
        assert_eq!(d("1hour"), StdDuration::from_secs(3600));
        assert_eq!(d("1hr 1min"), StdDuration::from_secs(3660));
        assert!("1min 1m".parse::<Duration>().is_err(), "one unit twice");
    }

    #[test]
    fn duration_errors_quote_the_text_and_list_the_units() {
        let e = "20x".parse::<Duration>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'20x' is not a duration: expected a number followed by ms, s, m or h"
        );
        for bad in [
            "", "20", "ms", "-1s", "1.s", "1e3ms", "1 30s", "2 s x", "1secx", "5 sec", "1us", "1d",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_are_at_most_thirty_days() {
        assert_eq!(d("720h"), MAX_DURATION);
        for long in [
            "720h1ms",
            "18446744073709551615s",
            "99999999999999999999999h",
        ] {
            assert!(long.parse::<Duration>().is_err(), "{long} parsed");
        }
        assert_eq!(
            "721h".parse::<Duration>(),
            Err(UnitError::DurationTooLong("721h".into()))
        );
    }

    #[test]
    fn duration_parts_must_be_largest_first_and_once() {
        assert_eq!(
            "30s1m".parse::<Duration>(),
            Err(UnitError::DurationOrder("30s1m".into()))
        );
        assert!("1s1s".parse::<Duration>().is_err());
    }

    #[test]
    fn durations_print_their_shortest_exact_form() {
        for s in [
            "0s", "500ms", "2s", "1m30s", "1h", "1h1m", "2s500ms", "0.25ms",
        ] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn percentages() {
        assert_eq!("0.5%".parse::<Percent>().unwrap(), Percent(0.5));
        assert_eq!("99.5 %".parse::<Percent>().unwrap().fraction(), 0.995);
        assert_eq!(
            "0.5".parse::<Percent>().unwrap_err().to_string(),
            "'0.5' is not a percentage: expected a number followed by %, like 0.5%"
        );
        assert!("-1%".parse::<Percent>().is_err());
    }

    #[test]
    fn levels_are_at_or_below_full_scale() {
        assert_eq!("-12dBFS".parse::<Dbfs>().unwrap(), Dbfs(-12.0));
        assert_eq!("-3.5 dBFS".parse::<Dbfs>().unwrap(), Dbfs(-3.5));
        assert_eq!("0dbfs".parse::<Dbfs>().unwrap(), Dbfs(0.0));
        assert_eq!(
            "3dBFS".parse::<Dbfs>(),
            Err(UnitError::LevelAboveFullScale("3dBFS".into()))
        );
        assert_eq!(
            "-12dB".parse::<Dbfs>(),
            Err(UnitError::Level("-12dB".into()))
        );
    }

    #[test]
    fn frequencies_single_and_dual() {
        assert_eq!("440Hz".parse::<Frequency>().unwrap(), Frequency(440.0));
        assert_eq!("1kHz".parse::<Frequency>().unwrap(), Frequency(1000.0));
        assert_eq!("1.5kHz".parse::<Frequency>().unwrap(), Frequency(1500.0));
        assert_eq!(
            "350+440Hz".parse::<Frequencies>().unwrap(),
            Frequencies(vec![Frequency(350.0), Frequency(440.0)])
        );
        assert_eq!(
            "350Hz + 440Hz".parse::<Frequencies>().unwrap(),
            Frequencies(vec![Frequency(350.0), Frequency(440.0)])
        );
        assert_eq!(
            "1+2+3Hz".parse::<Frequencies>(),
            Err(UnitError::TooManyFrequencies("1+2+3Hz".into()))
        );
        assert!("440".parse::<Frequency>().is_err());
        assert!("440 cycles".parse::<Frequencies>().is_err());
    }

    #[test]
    fn rates_are_exact_counts_per_period() {
        let r: Rate = "20/s".parse().unwrap();
        assert_eq!((r.calls, r.per), (20, StdDuration::from_secs(1)));
        let r: Rate = "300/m".parse().unwrap();
        assert_eq!((r.calls, r.per), (300, StdDuration::from_secs(60)));
        assert_eq!(r, "5/s".parse().unwrap());
        assert_eq!(r.per_second(), 5.0);
        let r: Rate = "2.5/s".parse().unwrap();
        assert_eq!((r.calls, r.per), (5, StdDuration::from_secs(2)));
        assert_eq!("300/m".parse::<Rate>().unwrap().to_string(), "300/m");
        assert_eq!("2.5/s".parse::<Rate>().unwrap().to_string(), "2.5/s");
        assert_eq!("7/m".parse::<Rate>().unwrap().to_string(), "7/m");
        assert_eq!(
            "0/s".parse::<Rate>(),
            Err(UnitError::ZeroRate("0/s".into()))
        );
        assert_eq!(
            "20".parse::<Rate>().unwrap_err().to_string(),
            "'20' is not a rate: expected a number of calls per second, minute or hour, like 20/s or 300/m"
        );
    }

    #[test]
    fn port_ranges() {
        let p: PortRange = "20000-29999".parse().unwrap();
        assert_eq!((p.first, p.last, p.len()), (20000, 29999, 10000));
        assert_eq!("5004".parse::<PortRange>().unwrap().len(), 1);
        assert_eq!(
            "3000-2000".parse::<PortRange>(),
            Err(UnitError::PortRangeReversed("3000-2000".into()))
        );
        for bad in ["0-10", "1-70000", "a-b", "-", "10-"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn decibels() {
        assert_eq!("15dB".parse::<Decibels>().unwrap(), Decibels(15.0));
        assert!("15".parse::<Decibels>().is_err());
    }

    #[test]
    fn host_ports() {
        let h: HostPort = "pbx.test:5060".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("pbx.test", Some(5060)));
        let h: HostPort = "10.0.0.1".parse().unwrap();
        assert_eq!(h.port, None);
        let h: HostPort = "[2001:db8::1]:5061".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("2001:db8::1", Some(5061)));
        assert_eq!(h.to_string(), "[2001:db8::1]:5061");
        for bad in [
            "",
            "pbx.test:",
            "pbx.test:99999",
            "pb x",
            "[::1",
            "a:b",
            "sip:pbx.test:5060",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad:?} parsed");
        }
        // RFC 3261 §26.2.2: a sips: address needs TLS; it is refused, named as such.
        for sips in ["sips:pbx.test", "SIPS:pbx.test:5061", "sips:[::1]:5061"] {
            let err = sips.parse::<HostPort>().unwrap_err();
            assert_eq!(err, UnitError::NeedsTls(sips.into()));
            assert!(err.to_string().contains("sips: needs TLS"), "{err}");
        }
    }

    #[test]
    fn local_addresses() {
        assert_eq!(
            "127.0.0.1:5070".parse::<LocalAddr>().unwrap().to_string(),
            "127.0.0.1:5070"
        );
        assert_eq!(
            "127.0.0.1".parse::<LocalAddr>().unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert!("localhost:5070".parse::<LocalAddr>().is_err());
    }

    #[test]
    fn units_deserialise_with_the_same_messages() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            d: Duration,
            r: Rate,
            p: Percent,
        }
        let t: T = serde_saphyr::from_str("d: 1m30s\nr: 20/s\np: 0.5%\n").unwrap();
        assert_eq!(t.d.0, StdDuration::from_secs(90));
        assert_eq!(t.r.calls, 20);
        assert_eq!(t.p, Percent(0.5));
        let e = serde_saphyr::from_str::<T>("d: 20x\nr: 20/s\np: 1%\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("'20x' is not a duration: expected a number followed by ms, s, m or h"),
            "{e}"
        );
        let e = serde_saphyr::from_str::<T>("d: 20\nr: 20/s\np: 1%\n").unwrap_err();
        assert!(e.to_string().contains("'20' is not a duration"), "{e}");
    }
}
