//! Two run summaries side by side, and whether the new one regressed beyond its tolerances.
//!
//! The figures are read generically from a `sipcheck.run/1` JSON summary ([`Figures::of`]): every
//! timing under `metrics` (`invite_to_200.p99`, in ms, or in its own unit when its keys carry
//! no `_ms`), every `*_ratio` of a section (`calls.failed`, `rtp.loss`, `audio.verified`) and
//! the call counts (`calls.started`, `calls.passed.count`, `calls.failed.count`). Their names
//! are the names thresholds use, so a metric added to the summary needs no change here.
//! A tolerance ([`Tolerance`]) is how much worse a figure may get: `10%` of the baseline,
//! `0.5pt` (percentage points, for ratios), `20ms`, or a plain number in the figure's unit.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scenario::text::closest;
use crate::scenario::threshold::MetricRef;

/// The schema a summary must declare.
pub const SCHEMA: &str = "sipcheck.run/1";

/// A JSON value, as much of it as a comparison needs (any JSON deserializer fills it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
    /// An array.
    List(Vec<Node>),
    /// An object.
    Map(BTreeMap<String, Node>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.get(key),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Node::Text(s) => Some(s),
            _ => None,
        }
    }

    /// A number, `Some(None)` for null, `None` for anything else.
    fn number(&self) -> Option<Option<f64>> {
        match self {
            Node::Number(n) => Some(Some(*n)),
            Node::Null => Some(None),
            _ => None,
        }
    }
}

/// Why a document is not a summary compare can read.
#[derive(Debug, Error, PartialEq)]
pub enum CompareError {
    /// The document has no `schema` key, or another schema.
    #[error("not a sipcheck run summary: schema is {found} (expected \"{SCHEMA}\")")]
    NotASummary {
        /// The schema found, quoted, or `missing`.
        found: String,
    },
    /// A key every summary has is missing or of the wrong type.
    #[error("not a sipcheck run summary: `{0}` is missing or malformed")]
    Malformed(&'static str),
    /// A tolerance names a figure neither summary has.
    #[error("unknown metric `{name}`{}; valid names: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), valid.join(", "))]
    UnknownMetric {
        /// The name as written.
        name: String,
        /// The closest valid name.
        suggestion: Option<String>,
        /// Every figure name of the summaries.
        valid: Vec<String>,
    },
    /// A tolerance that is not `NAME=VALUE` or whose value does not parse.
    #[error("'{0}' is not a tolerance: expected NAME=VALUE, like invite_to_200.p99=10% or rtp.loss=0.5pt")]
    MalformedTolerance(String),
    /// A tolerance whose unit does not fit the figure.
    #[error(
        "`{name}` is measured in {unit}: a tolerance of '{tolerance}' does not fit (use %, {hint})"
    )]
    UnitMismatch {
        /// The figure.
        name: String,
        /// Its unit.
        unit: Unit,
        /// The tolerance as written.
        tolerance: String,
        /// The units that fit.
        hint: &'static str,
    },
}

/// The unit of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// A fraction of one (0.005 is 0.5 %).
    Fraction,
    /// A count.
    Count,
    /// The metric's own unit (a score, parts per million).
    Plain,
}

impl Unit {
    fn hint(self) -> &'static str {
        match self {
            Unit::Ms => "ms or s",
            Unit::Fraction => "pt",
            Unit::Count | Unit::Plain => "a plain number",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Ms => "ms",
            Unit::Fraction => "a fraction (%)",
            Unit::Count => "a count",
            Unit::Plain => "its own unit",
        })
    }
}

/// One number of a summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The value; `None` when the run had no data for it.
    pub value: Option<f64>,
    /// Its unit.
    pub unit: Unit,
}

/// A summary's figures by name, with what the comparison needs besides.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The scenario's name.
    pub scenario: String,
    /// The run's verdict as written (`passed`, `calls_failed` …).
    pub verdict: String,
    /// Every figure, by its threshold-style name.
    pub figures: BTreeMap<String, Figure>,
}

/// Statistic keys of a histogram as the summary spells them, and as thresholds do.
fn stat_name(key: &str) -> String {
    match key {
        "p999" => "p99.9".to_owned(),
        k => k.to_owned(),
    }
}

impl Figures {
    /// The figures of a parsed `sipcheck.run/1` summary.
    ///
    /// # Errors
    /// [`CompareError::NotASummary`] or [`CompareError::Malformed`] when it is not one.
    pub fn of(doc: &Node) -> Result<Self, CompareError> {
        match doc.get("schema") {
            Some(Node::Text(s)) if s == SCHEMA => {}
            Some(Node::Text(s)) => {
                return Err(CompareError::NotASummary {
                    found: format!("\"{s}\""),
                })
            }
            _ => {
                return Err(CompareError::NotASummary {
                    found: "missing".to_owned(),
                })
            }
        }
        let scenario = doc
            .get("scenario")
            .and_then(Node::text)
            .ok_or(CompareError::Malformed("scenario"))?
            .to_owned();
        let verdict = doc
            .get("verdict")
            .and_then(Node::text)
            .ok_or(CompareError::Malformed("verdict"))?
            .to_owned();
        let calls = doc.get("calls").ok_or(CompareError::Malformed("calls"))?;
        let mut figures = BTreeMap::new();
        for (key, name) in [
            ("started", "calls.started"),
            ("passed", "calls.passed.count"),
            ("failed", "calls.failed.count"),
            ("not_started", "calls.not_started"),
        ] {
            let value = calls
                .get(key)
                .and_then(Node::number)
                .ok_or(CompareError::Malformed("calls"))?;
            figures.insert(
                name.to_owned(),
                Figure {
                    value,
                    unit: Unit::Count,
                },
            );
        }
        let Some(Node::Map(metrics)) = doc.get("metrics") else {
            return Err(CompareError::Malformed("metrics"));
        };
        // The score `mos` is kept beside the timings, in `quality`, in its own unit.
        let quality = match doc.get("quality") {
            Some(Node::Map(quality)) => quality.iter().filter(|(k, _)| *k == "mos").collect(),
            _ => Vec::new(),
        };
        if let Some(Node::Map(quality)) = doc.get("quality") {
            if let Some(gaps) = quality.get("audio_gaps").and_then(Node::number) {
                figures.insert(
                    "audio.gaps".to_owned(),
                    Figure {
                        value: gaps,
                        unit: Unit::Count,
                    },
                );
            }
        }
        for (metric, stats) in metrics.iter().chain(quality) {
            let Node::Map(stats) = stats else {
                return Err(CompareError::Malformed("metrics"));
            };
            for (key, value) in stats {
                let Some(value) = value.number() else {
                    continue; // the encoded histogram
                };
                let (stat, unit) = if key == "count" {
                    ("count", Unit::Count)
                } else if let Some(stat) = key.strip_suffix("_ms") {
                    (stat, Unit::Ms)
                } else {
                    (key.as_str(), Unit::Plain)
                };
                figures.insert(
                    format!("{metric}.{}", stat_name(stat)),
                    Figure { value, unit },
                );
            }
        }
        // Every share: calls.failed_ratio is `calls.failed`, rtp.loss_ratio `rtp.loss` …
        if let Node::Map(sections) = doc {
            for (section, body) in sections {
                let Node::Map(body) = body else { continue };
                for (key, value) in body {
                    let (Some(stem), Some(value)) = (key.strip_suffix("_ratio"), value.number())
                    else {
                        continue;
                    };
                    figures.insert(
                        format!("{section}.{stem}"),
                        Figure {
                            value,
                            unit: Unit::Fraction,
                        },
                    );
                }
            }
        }
        Ok(Self {
            scenario,
            verdict,
            figures,
        })
    }
}

/// How much worse a figure may get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// A share of the baseline value: `10%` is 0.1.
    Relative(f64),
    /// Percentage points of a ratio: `0.5pt` is 0.005.
    Points(f64),
    /// Milliseconds: `20ms`, `1s`.
    Millis(f64),
    /// A plain number, in the figure's unit.
    Absolute(f64),
}

impl FromStr for Tolerance {
    type Err = CompareError;

    fn from_str(s: &str) -> Result<Self, CompareError> {
        let t = s.trim();
        let bad = || CompareError::MalformedTolerance(s.to_owned());
        let number = |n: &str| -> Result<f64, CompareError> {
            let v: f64 = n.trim().parse().map_err(|_| bad())?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        if let Some(n) = t.strip_suffix('%') {
            Ok(Self::Relative(number(n)? / 100.0))
        } else if let Some(n) = t.strip_suffix("pt") {
            Ok(Self::Points(number(n)? / 100.0))
        } else if let Some(n) = t.strip_suffix("ms") {
            Ok(Self::Millis(number(n)?))
        } else if let Some(n) = t.strip_suffix('s') {
            Ok(Self::Millis(number(n)? * 1000.0))
        } else {
            Ok(Self::Absolute(number(t)?))
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relative(r) => write!(f, "{}%", round(r * 100.0)),
            Self::Points(p) => write!(f, "{}pt", round(p * 100.0)),
            Self::Millis(ms) => write!(f, "{}ms", round(*ms)),
            Self::Absolute(n) => write!(f, "{}", round(*n)),
        }
    }
}

impl Tolerance {
    fn fits(self, unit: Unit) -> bool {
        match self {
            Self::Relative(_) => true,
            Self::Points(_) => unit == Unit::Fraction,
            Self::Millis(_) => unit == Unit::Ms,
            Self::Absolute(_) => matches!(unit, Unit::Count | Unit::Plain),
        }
    }

    /// How much worse than `base` a figure may get, in the figure's unit.
    fn allowance(self, base: f64) -> f64 {
        match self {
            Self::Relative(r) => r * base.abs(),
            Self::Points(v) | Self::Millis(v) | Self::Absolute(v) => v,
        }
    }
}

/// A tolerance as asked for: one figure, or a statistic of every timing (`p99=10%`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The figure's name (aliases resolved), or a bare statistic (`p99`).
    pub name: String,
    /// The tolerance.
    pub tolerance: Tolerance,
    /// Whether `name` is a statistic of every timing.
    pub every_timing: bool,
}

impl Gate {
    /// Parses `NAME=TOLERANCE`.
    ///
    /// # Errors
    /// [`CompareError::MalformedTolerance`].
    pub fn parse(s: &str) -> Result<Self, CompareError> {
        let (name, tol) = s
            .split_once('=')
            .ok_or_else(|| CompareError::MalformedTolerance(s.to_owned()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(CompareError::MalformedTolerance(s.to_owned()));
        }
        let tolerance = tol.parse()?;
        let bare_stat = !name.contains('.')
            && (name.starts_with('p') && name[1..].bytes().all(|b| b.is_ascii_digit())
                || matches!(name, "min" | "max" | "mean"))
            || name == "p99.9";
        // The threshold spelling of a known metric (aliases resolved); others as written.
        let name = match name.parse::<MetricRef>() {
            Ok(r) if !bare_stat => canonical(&r),
            _ => name.to_owned(),
        };
        Ok(Self {
            name,
            tolerance,
            every_timing: bare_stat,
        })
    }
}

/// A metric reference as compare names the figure: a counter's or ratio's `.count` kept.
fn canonical(r: &MetricRef) -> String {
    r.to_string()
}

/// Which way a figure gets worse.
fn higher_is_worse(name: &str) -> bool {
    let better_high = name == "calls.started"
        || name.ends_with(".passed")
        || name.ends_with(".verified")
        || name.ends_with(".count")
        || name.starts_with("mos");
    !better_high
}

/// What a gate found for one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// No tolerance applies.
    Unchecked,
    /// Within its tolerance.
    Within,
    /// Worse than its tolerance allows.
    Regressed,
    /// The new run has no value where the baseline has one, or either run has none for a
    /// figure a tolerance names: nothing to compare, so it does not pass.
    NoData,
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The figure's name.
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// The baseline's value.
    pub base: Option<f64>,
    /// The new run's value.
    pub new: Option<f64>,
    /// `new - base`.
    pub change: Option<f64>,
    /// The change as a share of the baseline (`0.1` is +10 %); `None` when the baseline is 0.
    pub change_ratio: Option<f64>,
    /// Its tolerance, as written back (`10%`, `0.5pt`).
    pub tolerance: Option<String>,
    /// What the tolerance found.
    pub judgement: Judgement,
    /// Whether the figure is among the headline figures a table shows.
    #[serde(skip)]
    pub headline: bool,
}

/// The comparison of two summaries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The baseline's scenario.
    pub base_scenario: String,
    /// The new run's scenario.
    pub new_scenario: String,
    /// Things to know that do not decide: different scenarios, a run that did not pass.
    pub warnings: Vec<String>,
    /// Every figure of either run, by name.
    pub rows: Vec<Row>,
    /// The names of the figures that regressed or had no data to compare.
    pub regressions: Vec<String>,
}

impl Comparison {
    /// Whether every tolerance held.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }
}

/// Whether a figure is one a table shows without being asked.
fn headline(name: &str, unit: Unit) -> bool {
    name.starts_with("calls.")
        || unit == Unit::Fraction
        || [".p50", ".p90", ".p99", ".max"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Compares `new` with `base` under `gates`.
///
/// # Errors
/// [`CompareError::UnknownMetric`] when a gate names a figure neither run has, and
/// [`CompareError::UnitMismatch`] when its tolerance does not fit the figure.
pub fn compare(base: &Figures, new: &Figures, gates: &[Gate]) -> Result<Comparison, CompareError> {
    let names: Vec<&String> = {
        let mut n: Vec<&String> = base.figures.keys().chain(new.figures.keys()).collect();
        n.sort();
        n.dedup();
        n
    };
    let figure = |name: &str| base.figures.get(name).or_else(|| new.figures.get(name));
    // Each figure's gate: a named one wins over a statistic of every timing.
    let mut applied: BTreeMap<String, (Tolerance, bool)> = BTreeMap::new();
    for gate in gates {
        if gate.every_timing {
            let suffix = format!(".{}", gate.name);
            for name in names.iter().filter(|n| n.ends_with(&suffix)) {
                let f = figure(name).expect("a listed name");
                if f.unit == Unit::Ms && !applied.get(*name).is_some_and(|(_, named)| *named) {
                    applied.insert((*name).clone(), (gate.tolerance, false));
                }
            }
            continue;
        }
        let Some(f) = figure(&gate.name) else {
            let valid: Vec<String> = names.iter().map(|n| (*n).clone()).collect();
            return Err(CompareError::UnknownMetric {
                name: gate.name.clone(),
                suggestion: closest(&gate.name, valid.iter().map(String::as_str))
                    .map(str::to_owned),
                valid,
            });
        };
        if !gate.tolerance.fits(f.unit) {
            return Err(CompareError::UnitMismatch {
                name: gate.name.clone(),
                unit: f.unit,
                tolerance: gate.tolerance.to_string(),
                hint: f.unit.hint(),
            });
        }
        applied.insert(gate.name.clone(), (gate.tolerance, true));
    }
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    for name in names {
        let f = figure(name).expect("a listed name");
        let b = base.figures.get(name).and_then(|f| f.value);
        let n = new.figures.get(name).and_then(|f| f.value);
        let change = b.zip(n).map(|(b, n)| n - b);
        let change_ratio = b
            .zip(change)
            .and_then(|(b, c)| (b != 0.0).then(|| c / b.abs()));
        let gate = applied.get(name.as_str());
        let judgement = match (gate, b, n) {
            (None, ..) => Judgement::Unchecked,
            (Some((tol, _)), Some(b), Some(n)) => {
                let worse = if higher_is_worse(name) { n - b } else { b - n };
                // A little slack for the summary's rounding to 3 decimals.
                if worse > tol.allowance(b) + 1e-9 {
                    Judgement::Regressed
                } else {
                    Judgement::Within
                }
            }
            // A statistic of every timing skips the timings neither run measured.
            (Some((_, false)), None, None) => Judgement::Unchecked,
            (Some(_), ..) => Judgement::NoData,
        };
        if matches!(judgement, Judgement::Regressed | Judgement::NoData) {
            regressions.push(name.clone());
        }
        rows.push(Row {
            name: name.clone(),
            unit: f.unit,
            base: b,
            new: n,
            change,
            change_ratio,
            tolerance: gate.map(|(t, _)| t.to_string()),
            judgement,
            headline: judgement != Judgement::Unchecked
                || (headline(name, f.unit) && (b.is_some() || n.is_some())),
        });
    }
    let mut warnings = Vec::new();
    if base.scenario != new.scenario {
        warnings.push(format!(
            "the runs are of different scenarios: {:?} and {:?}",
            base.scenario, new.scenario
        ));
    }
    for (which, f) in [("baseline", base), ("new run", new)] {
        if f.verdict != "passed" {
            warnings.push(format!("the {which}'s verdict is {}", f.verdict));
        }
    }
    Ok(Comparison {
        base_scenario: base.scenario.clone(),
        new_scenario: new.scenario.clone(),
        warnings,
        rows,
        regressions,
    })
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests;
