//! `sipcheck merge shard-*.json`: the JSON summaries of a sharded run's shards read back,
//! added up exactly ([`sipcheck_core::stats::merge`]: histograms bucket by bucket, counters
//! summed), the scenario's thresholds judged again on the merged figures, and the reports of
//! the whole run written as `run` writes them (console summary, JSON, JUnit).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clap::Args;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde::Deserialize;
use sipcheck_core::scenario::shard::Shard;
use sipcheck_core::scenario::threshold::Threshold;
use sipcheck_core::stats::merge;
use sipcheck_core::stats::metrics::{
    CallCounts, FailedCall, GeneratorHealth, Provenance, QualitySummary, RegistrationCounts,
    RoleSummary, RtpTotals, RunSummary, StepSummary, TimingSeries, Verified, WorstCall,
    TIMING_METRICS,
};
use sipcheck_core::stats::outcome::Side;

use crate::exit::Exit;
use crate::report;
use crate::terminal::{escape_controls, TerminalWriter};

/// The flags of `sipcheck merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' JSON summaries (`sipcheck run --shard I/N --json FILE`), every shard's.
    #[arg(required = true, value_name = "SHARD.json")]
    pub files: Vec<PathBuf>,
    /// Write the merged JSON summary here (`-` for standard output).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Write the merged JUnit XML report here (`-` for standard output).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<String>,
    /// Write the merged run as one self-contained HTML page here (its figures and
    /// distributions; no charts over time: the shards' summaries hold no time series).
    #[arg(long, value_name = "PATH")]
    pub html: Option<String>,
}

/// Why summaries could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeInputError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a summary this version reads.
    #[error("{path} is not a sipcheck run summary: {reason}")]
    NotASummary {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The summaries do not belong together.
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    /// The thresholds of the shards differ.
    #[error(
        "{path} has other thresholds than {first}: shards of different scenarios cannot be merged"
    )]
    Thresholds {
        /// The file.
        path: String,
        /// The first file.
        first: String,
    },
}

/// Runs `sipcheck merge`: the console summary on `out` (on stderr when a report goes to
/// standard output), the reports to their files; the exit code is the merged verdict.
pub fn run(args: &MergeArgs, out: &mut impl Write) -> Exit {
    let (summary, thresholds) = match read_all(&args.files) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("sipcheck: error: {}", escape_controls(&e.to_string()));
            return Exit::Usage;
        }
    };
    let on_stdout = [&args.json, &args.junit, &args.html]
        .iter()
        .filter(|p| p.as_deref() == Some("-"))
        .count();
    if on_stdout > 1 {
        eprintln!("sipcheck: only one of the JSON, JUnit and HTML reports can go to standard output (-): give the others a file");
        return Exit::Usage;
    }
    for path in args.json.iter().chain(&args.junit).chain(&args.html) {
        if let Err(e) = report::check_writable(path) {
            eprintln!("sipcheck: {e}");
            return Exit::Usage;
        }
    }
    let results = summary.check(&thresholds);
    if on_stdout > 0 {
        let mut err = TerminalWriter::new(std::io::stderr());
        let _ = report::console::write_summary(&summary, &results, &mut err);
    } else {
        let mut out = TerminalWriter::new(out);
        let _ = report::console::write_summary(&summary, &results, &mut out);
    }
    let mut exit = Exit::from(summary.verdict(&results));
    if let Some(path) = &args.junit {
        if let Err(e) = report::write_report(path, |mut w| {
            report::junit::write_junit(&summary, &results, &mut w)
        }) {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    if let Some(path) = &args.json {
        if let Err(e) = report::write_report(path, |mut w| {
            report::json::write_json(&summary, &results, &mut w)
        }) {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    if let Some(path) = &args.html {
        let input = report::html::HtmlInput {
            summary: &summary,
            thresholds: &results,
            series: &[],
            interval: Duration::ZERO,
            merged: 1,
        };
        if let Err(e) = report::write_report(path, |mut w| report::html::write_html(&input, &mut w))
        {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    exit
}

/// Reads every file and merges them: the whole run's summary and the thresholds to judge it.
///
/// # Errors
/// A file unreadable or not a summary; shards that do not belong together.
pub fn read_all(files: &[PathBuf]) -> Result<(RunSummary, Vec<Threshold>), MergeInputError> {
    let mut parts = Vec::new();
    let mut written: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for file in files {
        let path = file.display().to_string();
        let bytes = std::fs::read(file).map_err(|source| MergeInputError::Read {
            path: path.clone(),
            source,
        })?;
        let doc: Doc =
            serde_json::from_slice(&bytes).map_err(|e| MergeInputError::NotASummary {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        written.push((
            path.clone(),
            doc.thresholds
                .iter()
                .map(|t| (t.name.clone(), t.condition.clone()))
                .collect(),
        ));
        let summary = doc
            .into_summary()
            .map_err(|reason| MergeInputError::NotASummary {
                path: path.clone(),
                reason,
            })?;
        parts.push((path, summary));
    }
    // The fingerprints first: shards of another scenario are named as such.
    let mut whole = merge::merge(parts)?;
    whole.run_id = format!("{:016x}", rand::random::<u64>());
    let (first, theirs) = written.first().cloned().unwrap_or_default();
    if let Some((path, _)) = written.iter().find(|(_, t)| *t != theirs) {
        return Err(MergeInputError::Thresholds {
            path: path.clone(),
            first,
        });
    }
    let thresholds = theirs
        .iter()
        .map(|(name, condition)| {
            Threshold::parse(name, condition).map_err(|e| MergeInputError::NotASummary {
                path: first.clone(),
                reason: format!("threshold {name}: {condition}: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((whole, thresholds))
}

/// A summary as `run --json` writes it (schema `sipcheck.run/1`), as much as a merge needs.
#[derive(Deserialize)]
struct Doc {
    schema: String,
    scenario: String,
    #[serde(default)]
    sipcheck_version: String,
    #[serde(default)]
    scenario_fingerprint: String,
    #[serde(default)]
    shard: Option<ShardDoc>,
    started_at_unix_ms: u64,
    duration_s: f64,
    interrupted: bool,
    calls: CallsDoc,
    failures: BTreeMap<String, u64>,
    registrations: RegistrationsDoc,
    metrics: BTreeMap<String, HistogramDoc>,
    rtp: RtpDoc,
    audio: ChecksDoc,
    dtmf: ChecksDoc,
    quality: QualityDoc,
    generator: GeneratorDoc,
    thresholds: Vec<ThresholdDoc>,
    failed_call_samples: Vec<SampleDoc>,
}

#[derive(Deserialize)]
struct ShardDoc {
    index: u32,
    count: u32,
}

#[derive(Deserialize)]
struct CallsDoc {
    counted_side: Side,
    started: u64,
    passed: u64,
    failed: u64,
    not_started: u64,
    by_role: BTreeMap<String, RoleDoc>,
}

#[derive(Deserialize)]
struct RoleDoc {
    started: u64,
    passed: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    registrations: RegistrationsDoc,
    #[serde(default)]
    steps: Vec<StepDoc>,
}

#[derive(Deserialize)]
struct StepDoc {
    step: String,
    line: u32,
    col: u32,
    reached: u64,
    passed: u64,
    failed: u64,
    time_ms: f64,
    failures: BTreeMap<String, u64>,
}

impl From<StepDoc> for StepSummary {
    fn from(s: StepDoc) -> Self {
        Self {
            kind: s.step,
            line: s.line,
            col: s.col,
            reached: s.reached,
            passed: s.passed,
            time: Duration::from_secs_f64((s.time_ms / 1000.0).max(0.0)),
            failed: s.failed,
            failures: s.failures,
            sample: None,
        }
    }
}

#[derive(Deserialize)]
struct RegistrationsDoc {
    ok: u64,
    failed: u64,
    unregister_ok: u64,
    unregister_failed: u64,
}

impl From<RegistrationsDoc> for RegistrationCounts {
    fn from(r: RegistrationsDoc) -> Self {
        Self {
            ok: r.ok,
            failed: r.failed,
            unregister_ok: r.unregister_ok,
            unregister_failed: r.unregister_failed,
            first_failure: None,
            first_unregister_failure: None,
        }
    }
}

#[derive(Deserialize)]
struct HistogramDoc {
    histogram: String,
}

#[derive(Deserialize)]
struct RtpDoc {
    packets_sent: u64,
    packets_received: u64,
    packets_expected: u64,
    packets_lost: u64,
    stray_packets: u64,
    discontinuities: u64,
    loss_per_stream_ppm: HistogramDoc,
    /// Absent when no call used SRTP.
    #[serde(default)]
    srtp: SrtpDoc,
}

#[derive(Deserialize, Default)]
struct SrtpDoc {
    streams: u64,
    auth_failures: u64,
    replays: u64,
}

#[derive(Deserialize)]
struct ChecksDoc {
    checked: u64,
    verified: u64,
}

#[derive(Deserialize)]
struct QualityDoc {
    mos: HistogramDoc,
    pesq: HistogramDoc,
    audio_gaps: u64,
    worst_calls: Vec<WorstCall>,
}

#[derive(Deserialize)]
struct GeneratorDoc {
    late_starts: u64,
    max_start_lag_ms: f64,
    frames_skipped: u64,
}

#[derive(Deserialize)]
struct ThresholdDoc {
    name: String,
    condition: String,
}

#[derive(Deserialize)]
struct SampleDoc {
    kind: String,
    #[serde(flatten)]
    call: FailedCall,
}

/// Decodes a base64 HdrHistogram V2 (compressed) encoding, able to grow when added to.
fn decode(name: &str, text: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("the {name} histogram is not base64: {e}"))?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("the {name} histogram does not decode: {e:?}"))?;
    h.auto(true);
    Ok(h)
}

impl Doc {
    fn into_summary(self) -> Result<RunSummary, String> {
        if self.schema != report::json::SCHEMA {
            return Err(format!(
                "schema is \"{}\" (expected \"{}\")",
                self.schema,
                report::json::SCHEMA
            ));
        }
        let mut timings = Vec::new();
        for metric in TIMING_METRICS {
            let h = self
                .metrics
                .get(metric.name())
                .ok_or_else(|| format!("its metrics have no {}", metric.name()))?;
            timings.push(TimingSeries {
                metric,
                micros: decode(metric.name(), &h.histogram)?,
            });
        }
        let mut samples: BTreeMap<String, Vec<FailedCall>> = BTreeMap::new();
        for s in self.failed_call_samples {
            samples.entry(s.kind).or_default().push(s.call);
        }
        let mut registrations: RegistrationCounts = self.registrations.into();
        registrations.first_failure = None;
        Ok(RunSummary {
            run_id: String::new(),
            scenario: self.scenario,
            file: String::new(),
            started_at: UNIX_EPOCH + Duration::from_millis(self.started_at_unix_ms),
            elapsed: Duration::from_secs_f64(self.duration_s.max(0.0)),
            interrupted: self.interrupted,
            counted_side: self.calls.counted_side,
            calls: CallCounts {
                started: self.calls.started,
                passed: self.calls.passed,
                failed: self.calls.failed,
            },
            failures: self.failures,
            registrations,
            roles: self
                .calls
                .by_role
                .into_iter()
                .map(|(name, r)| RoleSummary {
                    name,
                    places_calls: false,
                    calls: CallCounts {
                        started: r.started,
                        passed: r.passed,
                        failed: r.failed,
                    },
                    failures: r.failures,
                    registrations: r.registrations.into(),
                    steps: r.steps.into_iter().map(StepSummary::from).collect(),
                })
                .collect(),
            timings,
            call_loss_ppm: decode(
                "loss_per_stream_ppm",
                &self.rtp.loss_per_stream_ppm.histogram,
            )?,
            rtp: RtpTotals {
                packets_sent: self.rtp.packets_sent,
                packets_received: self.rtp.packets_received,
                packets_expected: self.rtp.packets_expected,
                packets_lost: self.rtp.packets_lost,
                stray_packets: self.rtp.stray_packets,
                discontinuities: self.rtp.discontinuities,
                srtp_streams: self.rtp.srtp.streams,
                srtp_auth_failures: self.rtp.srtp.auth_failures,
                srtp_replays: self.rtp.srtp.replays,
            },
            audio: Verified {
                checked: self.audio.checked,
                verified: self.audio.verified,
            },
            dtmf: Verified {
                checked: self.dtmf.checked,
                verified: self.dtmf.verified,
            },
            quality: QualitySummary {
                mos_milli: decode("mos", &self.quality.mos.histogram)?,
                pesq_milli: decode("pesq", &self.quality.pesq.histogram)?,
                audio_gaps: self.quality.audio_gaps,
            },
            generator: GeneratorHealth {
                late_starts: self.generator.late_starts,
                max_start_lag: Duration::from_secs_f64(
                    (self.generator.max_start_lag_ms / 1000.0).max(0.0),
                ),
                frames_skipped: self.generator.frames_skipped,
                not_started: self.calls.not_started,
            },
            samples,
            reasons: Vec::new(),
            calls_cut_short: 0,
            worst_calls: self.quality.worst_calls,
            provenance: Provenance {
                version: self.sipcheck_version,
                fingerprint: self.scenario_fingerprint,
                shard: self
                    .shard
                    .map(|s| Shard::new(s.index, s.count).map_err(|e| e.to_string()))
                    .transpose()?,
                ..Provenance::default()
            },
        })
    }
}
