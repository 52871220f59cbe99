//! `sipcheck compare BASE.json NEW.json`: reads two run summaries, prints their figures side by
//! side and exits 1 when one regressed beyond its tolerance. The comparison itself is
//! [`sipcheck_core::stats::compare`]; this module reads the files and writes the table.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use sipcheck_core::stats::compare::{
    compare, CompareError, Comparison, Figures, Gate, Judgement, Node, Row, Unit,
};

use crate::exit::Exit;
use crate::terminal::escape_controls;

/// The flags of `sipcheck compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline summary (`sipcheck run --json`).
    pub base: PathBuf,
    /// The new run's summary.
    pub new: PathBuf,
    /// How much worse a figure may get, as NAME=TOLERANCE (repeatable): names as thresholds
    /// spell them (invite_to_200.p99, rtp.loss, calls.failed; a bare statistic such as p99
    /// means that statistic of every timing); tolerances 10% (of the baseline), 0.5pt
    /// (percentage points of a ratio), 20ms, or a plain number in the figure's unit.
    #[arg(long = "max-regression", value_name = "NAME=TOLERANCE")]
    pub max_regression: Vec<String>,
    /// How many percentage points the failed-call ratio may rise (calls.failed).
    #[arg(long, value_name = "POINTS", default_value = "0pt")]
    pub max_failed_increase: String,
    /// Print the comparison as JSON (schema `sipcheck.compare/1`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show every figure, not only the headline ones.
    #[arg(long)]
    pub all: bool,
}

/// Why compare could not compare.
#[derive(Debug, thiserror::Error)]
pub enum CompareInputError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A file is not JSON.
    #[error("{path} is not a sipcheck run summary: not JSON ({source})")]
    NotJson {
        /// The file.
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A file is JSON but not a summary, or a tolerance is wrong.
    #[error("{}{source}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Compare {
        /// The file, when the error is a file's.
        path: Option<String>,
        /// The comparison's error.
        source: CompareError,
    },
}

fn read(path: &Path) -> Result<Figures, CompareInputError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| CompareInputError::Read {
        path: shown.clone(),
        source,
    })?;
    let doc: Node = serde_json::from_slice(&text).map_err(|source| CompareInputError::NotJson {
        path: shown.clone(),
        source,
    })?;
    Figures::of(&doc).map_err(|source| CompareInputError::Compare {
        path: Some(shown),
        source,
    })
}

/// Reads both summaries and compares them under the flags' tolerances.
///
/// # Errors
/// A file unreadable, not JSON or not a summary; a malformed tolerance or unknown metric.
pub fn comparison(args: &CompareArgs) -> Result<Comparison, CompareInputError> {
    let base = read(&args.base)?;
    let new = read(&args.new)?;
    let gate = |s: &str| {
        Gate::parse(s).map_err(|source| CompareInputError::Compare { path: None, source })
    };
    let mut gates = vec![gate(&format!("calls.failed={}", args.max_failed_increase))?];
    for g in &args.max_regression {
        gates.push(gate(g)?);
    }
    compare(&base, &new, &gates).map_err(|source| CompareInputError::Compare { path: None, source })
}

/// Runs `sipcheck compare`: the table (or JSON) on `out`, warnings and errors on stderr.
pub fn run(args: &CompareArgs, out: &mut impl Write) -> Exit {
    let c = match comparison(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipcheck: error: {}", escape_controls(&e.to_string()));
            return Exit::Usage;
        }
    };
    for w in &c.warnings {
        eprintln!("sipcheck: warning: {}", escape_controls(w));
    }
    let written = if args.json {
        write_json(&c, out)
    } else {
        write_table(&c, args.all, out)
    };
    if written.is_err() {
        return Exit::Internal;
    }
    if c.passed() {
        Exit::Success
    } else {
        Exit::Failure
    }
}

/// The schema identifier of `compare --json`.
pub const SCHEMA: &str = "sipcheck.compare/1";

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    passed: bool,
    #[serde(flatten)]
    comparison: &'a Comparison,
}

/// Writes the comparison as JSON (pretty-printed, with a final newline).
///
/// # Errors
/// Any error of `out`.
pub fn write_json(c: &Comparison, out: &mut impl Write) -> io::Result<()> {
    let doc = Doc {
        schema: SCHEMA,
        passed: c.passed(),
        comparison: c,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}

fn value(v: Option<f64>, unit: Unit) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) => match unit {
            Unit::Ms => format!("{v:.1} ms"),
            Unit::Fraction => format!("{:.3} %", v * 100.0),
            Unit::Count => format!("{v}"),
            Unit::Plain => format!("{v:.3}"),
        },
    }
}

fn change(r: &Row) -> String {
    let Some(c) = r.change else {
        return "-".to_owned();
    };
    let abs = match r.unit {
        Unit::Ms => format!("{c:+.1} ms"),
        Unit::Fraction => format!("{:+.3} pt", c * 100.0),
        Unit::Count => format!("{c:+}"),
        Unit::Plain => format!("{c:+.3}"),
    };
    match r.change_ratio {
        Some(ratio) => format!("{abs} ({:+.1} %)", ratio * 100.0),
        None => abs,
    }
}

/// Writes the side-by-side table: the headline figures (or all), then the verdict, naming
/// every regression.
///
/// # Errors
/// Any error of `out`.
pub fn write_table(c: &Comparison, all: bool, out: &mut impl Write) -> io::Result<()> {
    // The calls first, then the ratios, then the rest (timings), each by name.
    let mut shown: Vec<&Row> = c.rows.iter().filter(|r| all || r.headline).collect();
    shown.sort_by_key(|r| match (r.name.starts_with("calls."), r.unit) {
        (true, _) => 0,
        (false, Unit::Fraction) => 1,
        _ => 2,
    });
    let rows: Vec<[String; 5]> = shown
        .into_iter()
        .map(|r| {
            [
                r.name.clone(),
                value(r.base, r.unit),
                value(r.new, r.unit),
                change(r),
                match (r.judgement, &r.tolerance) {
                    (Judgement::Unchecked, _) | (_, None) => String::new(),
                    (Judgement::Within, Some(t)) => format!("ok (max {t})"),
                    (Judgement::Regressed, Some(t)) => format!("REGRESSED (max {t})"),
                    (Judgement::NoData, Some(t)) => format!("NO DATA (max {t})"),
                },
            ]
        })
        .collect();
    let header = ["metric", "base", "new", "change", "tolerance"];
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    writeln!(
        out,
        "compare: {} (base) vs {} (new)",
        escape_controls(&c.base_scenario),
        escape_controls(&c.new_scenario)
    )?;
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let [name, base, new, chg, tol] = row;
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            escape_controls(&name),
            base,
            new,
            chg,
            tol,
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    if c.passed() {
        writeln!(out, "PASS: no figure regressed beyond its tolerance")
    } else {
        let names: Vec<_> = c
            .regressions
            .iter()
            .map(|n| escape_controls(n).into_owned())
            .collect();
        writeln!(out, "FAIL: regressed: {}", names.join(", "))
    }
}
