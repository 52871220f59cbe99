//! The JSON summary of a run, schema `sipcheck.run/1`.
//!
//! The schema is versioned: a key is never renamed, removed or retyped within `/1`; new keys
//! may be added. `docs/run-summary.schema.json` is the JSON Schema of this document, and a
//! test validates a synthetic run against it and pins its keys and types
//! (`tests/snapshots/report_json_keys.txt`), so any change is deliberate.
//!
//! ```text
//! {
//!   "schema": "sipcheck.run/1",
//!   "run_id": string,                         this run's random id (also in the console
//!                                             and the JUnit report)
//!   "scenario": string,                       scenario name
//!   "sipcheck_version": string,               the version that wrote it
//!   "scenario_fingerprint": string,           16 hex digits naming the whole scenario as
//!                                             validated (the same in all its shards)
//!   "shard": { "index", "count": integer }    the shard this run was (--shard I/N, from 0),
//!            | null,                          null for a whole run
//!   "merged": { "shards": integer,            a summary merged by `sipcheck merge`: the
//!     "missing": [integer] } | null,          shard count and the shards not given
//!   "started_at_unix_ms": integer,            wall clock at the run's start
//!   "duration_s": number,                     how long the run lasted
//!   "interrupted": boolean,                   stopped (Ctrl-C) before its planned end
//!   "verdict": "passed" | "calls_failed" | "thresholds_failed" | "interrupted"
//!            | "shards_missing",               (a merge without every shard's summary)
//!   "calls": {
//!     "counted_side": "caller" | "callee",    whose results the totals count
//!     "started": integer, "passed": integer, "failed": integer,
//!     "failed_ratio": number | null,          failed / started, a fraction of 1
//!     "not_started": integer,                 due, but the concurrency cap was reached
//!                                             (built-in threshold calls.not_started <= 0)
//!     "by_role": { role: {
//!       "started": integer, "passed": integer, "failed": integer,
//!       "failures": { label: integer },
//!       "registrations": { "ok", "failed", "unregister_ok", "unregister_failed": integer },
//!       "steps": [ { "step": string,          each step of the role, in order (line 0: not
//!         "line", "col": integer,             tied to a step); calls that reached it,
//!         "reached", "passed", "failed": integer, completed it, failed at it; time spent
//!         "time_ms": number,                  in it, added up; failures per kind label
//!         "failures": { label: integer } } ]
//!     } }
//!   },
//!   "failures": { label: integer },           per FailureKind label (sip_486, timer_b …),
//!                                             per occurrence: a call can fail several ways
//!   "registrations": { "ok", "failed", "unregister_ok", "unregister_failed": integer },
//!   "metrics": { name: {                      every timing metric, always present:
//!       "count": integer,                     register_rtt, invite_to_first_provisional,
//!       "min_ms", "p50_ms", "p90_ms",         invite_to_ringing, invite_to_200, bye_rtt,
//!       "p99_ms", "p999_ms", "max_ms",        call_duration, tone_onset, rtp.jitter,
//!       "mean_ms": number | null,             pacing.lateness, audio.gap, audio.delay,
//!                                             tls_handshake, ws_handshake
//!                                             (null when count is 0)
//!       "histogram": string                   base64 of the HdrHistogram V2 compressed
//!   } },                                      encoding (`HISTFAAA…`), in microseconds
//!   "rtp": {
//!     "packets_sent", "packets_received", "packets_expected", "packets_lost": integer,
//!     "loss_ratio": number | null,            lost / expected over every stream
//!     "stray_packets": integer,               datagrams at the calls' RTP ports that were
//!                                             not their peers' media (set aside)
//!     "discontinuities": integer,             sequence or timestamp jumps within the peers'
//!                                             streams (neither loss nor jitter)
//!     "srtp": { "streams", "auth_failures",   SRTP call ends, packets that failed
//!       "replays": integer },                 authentication, replays (absent: no SRTP)
//!     "loss_per_stream_ppm": { "count": integer,
//!       "min", "p50", "p90", "p99", "p999", "max", "mean": number | null,
//!       "histogram": string }                 per stream, parts per million of expected
//!   },
//!   "audio": { "checked": integer, "verified": integer, "verified_ratio": number | null },
//!   "dtmf":  { "checked": integer, "verified": integer, "verified_ratio": number | null },
//!   "quality": {
//!     "mos": { "count": integer,              estimated MOS (G.107 E-model, MOS-CQE) per
//!       "min", "p5", "p50", "p95", "max",     received stream that played frames
//!       "mean": number | null,
//!       "histogram": string },                values in thousandths of a MOS point
//!     "pesq": { same fields },                the raw ITU-T P.862 score of each
//!                                             `expect: pesq` step scored; histogram values
//!                                             are thousandths of the score plus 1
//!     "audio_gaps": integer,                  dropouts (≥ 40 ms) in heard tones; their
//!                                             lengths are the audio.gap metric
//!     "worst_calls": [ {                      the 5 call ends with the lowest MOS estimate,
//!       "role": string, "side": string,       lowest first
//!       "call_id": string, "verdict": string, `passed` or the failure labels
//!       "mos": number, "quality": call_quality } ]
//!   },
//!   "generator": {
//!     "late_starts": integer,                 INVITEs sent more than late_start_after_ms
//!     "late_start_after_ms": number,          after their scheduled time
//!     "max_start_lag_ms": number,
//!     "frames_skipped": integer               media frames dropped by a late sender
//!   },
//!   "thresholds": [ { "name": string, "condition": string,
//!     "actual": number | null,                in `unit`; null: no data (fails)
//!     "unit": "ms" | "fraction" | "count" | "per_second" | "score",
//!     "passed": boolean } ],
//!   "failed_call_samples": [ {                first 10 failing calls per failure kind
//!     "kind": string,                         the label they are a sample of
//!     "role": string, "side": "caller" | "callee", "user": string, "call_id": string,
//!     "final_code": integer | null, "end_reason": string,
//!     "bye_code": integer | null,             our BYE's final status (null: none)
//!     "failures": [ { "step": string, "line": integer, "col": integer,
//!                     "kind": string, "message": string } ],
//!     "ladder": [ { "at_ms": number, "direction": "sent" | "received", "peer": string,
//!                   "line": string, "cseq": string, "retransmission": boolean } ],
//!     "quality": call_quality | null          what this end received (null: no media)
//!   } ]
//! }
//! ```
//!
//! `call_quality` is `{ "mos": number | null, "packets_expected": integer, "packets_lost":
//! integer, "loss_percent": number | null, "jitter_ms": number, "audio_gaps": integer,
//! "longest_gap_ms": integer | null, "delay_ms": number | null, "pesq": number | null
//! (the lowest PESQ score of the end's `expect: pesq` steps), "signature": "no_audio" |
//! "one_way_audio" |
//! "crossed_audio" | "wrong_audio" | null }`: what one end received.
//!
//! Percentiles are HdrHistogram's highest equivalent values (at most 0.1 % above the true
//! value); decode `histogram` for any other percentile: it is HdrHistogram's standard
//! compressed V2 form (DEFLATE, then base64), which every HdrHistogram library reads
//! (`hdrhistogram::serialization::Deserializer` in Rust, `Histogram.fromString` in Java,
//! `HdrHistogram.decode` of Python's `hdrh`, `hdrhistogram.Decode` in Go).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::values::unit_name;
use sipcheck_core::stats::metrics::{
    FailedCall, RegistrationCounts, RunSummary, TimingStats, Verified, WorstCall, LATE_START,
};
use sipcheck_core::stats::outcome::Side;
use sipcheck_core::stats::verdict::{ThresholdResult, Verdict};

/// The schema identifier written in every summary.
pub const SCHEMA: &str = "sipcheck.run/1";

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    run_id: &'a str,
    scenario: &'a str,
    sipcheck_version: &'a str,
    scenario_fingerprint: &'a str,
    shard: Option<ShardJson>,
    merged: Option<MergedJson<'a>>,
    started_at_unix_ms: u64,
    duration_s: f64,
    interrupted: bool,
    verdict: &'static str,
    calls: Calls<'a>,
    failures: &'a BTreeMap<String, u64>,
    registrations: Registrations,
    metrics: BTreeMap<&'static str, HistogramJson>,
    rtp: Rtp,
    audio: Checks,
    dtmf: Checks,
    quality: Quality<'a>,
    generator: Generator,
    thresholds: Vec<ThresholdJson>,
    failed_call_samples: Vec<Sample<'a>>,
}

/// The shard a run was (`--shard I/N`).
#[derive(Serialize)]
struct ShardJson {
    index: u32,
    count: u32,
}

/// A summary merged from shards' (`sipcheck merge`).
#[derive(Serialize)]
struct MergedJson<'a> {
    shards: u32,
    missing: &'a [u32],
}

#[derive(Serialize)]
struct Calls<'a> {
    counted_side: Side,
    started: u64,
    passed: u64,
    failed: u64,
    failed_ratio: Option<f64>,
    not_started: u64,
    by_role: BTreeMap<&'a str, RoleCalls<'a>>,
}

#[derive(Serialize)]
struct RoleCalls<'a> {
    started: u64,
    passed: u64,
    failed: u64,
    failures: &'a BTreeMap<String, u64>,
    registrations: Registrations,
    steps: Vec<StepJson<'a>>,
}

/// One step of a role: what its calls did there (what `sipcheck merge` needs for the JUnit
/// report's test case of the step).
#[derive(Serialize)]
struct StepJson<'a> {
    step: &'a str,
    line: u32,
    col: u32,
    reached: u64,
    passed: u64,
    failed: u64,
    time_ms: f64,
    failures: &'a BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Registrations {
    ok: u64,
    failed: u64,
    unregister_ok: u64,
    unregister_failed: u64,
}

impl From<&RegistrationCounts> for Registrations {
    fn from(r: &RegistrationCounts) -> Self {
        Self {
            ok: r.ok,
            failed: r.failed,
            unregister_ok: r.unregister_ok,
            unregister_failed: r.unregister_failed,
        }
    }
}

/// A histogram's figures, in order: `count`, the statistics (named with the unit's suffix:
/// `p99_ms`, or plain `p99`), `histogram`.
struct HistogramJson {
    count: u64,
    stats: Vec<(String, Option<f64>)>,
    histogram: String,
}

impl Serialize for HistogramJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.stats.len() + 2))?;
        map.serialize_entry("count", &self.count)?;
        for (name, value) in &self.stats {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("histogram", &self.histogram)?;
        map.end()
    }
}

impl HistogramJson {
    /// `scale` divides the histogram's values (1000: µs to ms); `suffix` names the unit.
    fn of(h: &Histogram<u64>, scale: f64, suffix: &str) -> io::Result<Self> {
        let t = TimingStats::of(h);
        // TimingStats divides by 1000; rescale for other units.
        let k = 1000.0 / scale;
        let values = t.map(|t| {
            [
                t.min_ms, t.p50_ms, t.p90_ms, t.p99_ms, t.p999_ms, t.max_ms, t.mean_ms,
            ]
        });
        let stats = ["min", "p50", "p90", "p99", "p999", "max", "mean"]
            .iter()
            .enumerate()
            .map(|(i, name)| (format!("{name}{suffix}"), values.map(|v| round3(v[i] * k))))
            .collect();
        Ok(Self {
            count: h.len(),
            stats,
            histogram: encode_histogram(h)?,
        })
    }
}

/// Base64 of the HdrHistogram V2 compressed (DEFLATE) encoding of `h`: the standard form
/// that the Java, Python, Go and C libraries decode (`HISTFAAA…`).
///
/// # Errors
/// The serializer's error, as an I/O error.
pub fn encode_histogram(h: &Histogram<u64>) -> io::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| io::Error::other(format!("cannot encode a histogram: {e:?}")))?;
    Ok(BASE64.encode(bytes))
}

#[derive(Serialize)]
struct Rtp {
    packets_sent: u64,
    packets_received: u64,
    packets_expected: u64,
    packets_lost: u64,
    loss_ratio: Option<f64>,
    stray_packets: u64,
    discontinuities: u64,
    loss_per_stream_ppm: HistogramJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    srtp: Option<SrtpJson>,
}

/// SRTP over the run's call ends (absent when none used SRTP).
#[derive(Serialize)]
struct SrtpJson {
    streams: u64,
    auth_failures: u64,
    replays: u64,
}

/// The estimated listening quality of the received streams and the gaps in heard tones.
#[derive(Serialize)]
struct Quality<'a> {
    mos: Mos,
    pesq: Mos,
    audio_gaps: u64,
    worst_calls: &'a [WorstCall],
}

/// The estimated MOS per received stream.
#[derive(Serialize)]
struct Mos {
    count: u64,
    min: Option<f64>,
    p5: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    histogram: String,
}

impl Mos {
    fn of(h: &Histogram<u64>) -> io::Result<Self> {
        Self::offset(h, 0)
    }

    /// A score histogram whose values carry `offset` thousandths on top of the score.
    fn offset(h: &Histogram<u64>, offset: u64) -> io::Result<Self> {
        let any = !h.is_empty();
        let score = |v: f64| round3((v - offset as f64) / 1000.0);
        let at = |q: f64| any.then(|| score(h.value_at_quantile(q) as f64));
        Ok(Self {
            count: h.len(),
            min: any.then(|| score(h.min() as f64)),
            p5: at(0.05),
            p50: at(0.5),
            p95: at(0.95),
            max: any.then(|| score(h.max() as f64)),
            mean: any.then(|| score(h.mean())),
            histogram: encode_histogram(h)?,
        })
    }
}

#[derive(Serialize)]
struct Checks {
    checked: u64,
    verified: u64,
    verified_ratio: Option<f64>,
}

impl From<Verified> for Checks {
    fn from(v: Verified) -> Self {
        Self {
            checked: v.checked,
            verified: v.verified,
            verified_ratio: v.ratio(),
        }
    }
}

#[derive(Serialize)]
struct Generator {
    late_starts: u64,
    late_start_after_ms: f64,
    max_start_lag_ms: f64,
    frames_skipped: u64,
}

#[derive(Serialize)]
struct ThresholdJson {
    name: String,
    condition: String,
    actual: Option<f64>,
    unit: &'static str,
    passed: bool,
}

#[derive(Serialize)]
struct Sample<'a> {
    kind: &'a str,
    #[serde(flatten)]
    call: &'a FailedCall,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The verdict's name in the summary.
#[must_use]
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "calls_failed",
        Verdict::ThresholdsFailed => "thresholds_failed",
        Verdict::Interrupted => "interrupted",
    }
}

/// Writes the JSON summary (pretty-printed, with a final newline).
///
/// # Errors
/// Any error of `out`.
pub fn write_json(
    s: &RunSummary,
    thresholds: &[ThresholdResult],
    out: &mut impl Write,
) -> io::Result<()> {
    let metrics = s
        .timings
        .iter()
        .map(|t| {
            Ok((
                t.metric.name(),
                HistogramJson::of(&t.micros, 1000.0, "_ms")?,
            ))
        })
        .collect::<io::Result<_>>()?;
    let doc = Doc {
        schema: SCHEMA,
        run_id: &s.run_id,
        scenario: &s.scenario,
        sipcheck_version: &s.provenance.version,
        scenario_fingerprint: &s.provenance.fingerprint,
        shard: s.provenance.shard.map(|sh| ShardJson {
            index: sh.index(),
            count: sh.count(),
        }),
        merged: s.provenance.merged_shards.map(|shards| MergedJson {
            shards,
            missing: &s.provenance.missing_shards,
        }),
        started_at_unix_ms: s
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        duration_s: round3(s.elapsed.as_secs_f64()),
        interrupted: s.interrupted,
        verdict: match s.verdict(thresholds) {
            // A merge missing a shard fails for that, whatever its calls did.
            Verdict::Failed if !s.provenance.missing_shards.is_empty() => "shards_missing",
            v => verdict_name(v),
        },
        calls: Calls {
            counted_side: s.counted_side,
            started: s.calls.started,
            passed: s.calls.passed,
            failed: s.calls.failed,
            failed_ratio: s.calls.failed_ratio(),
            not_started: s.generator.not_started,
            by_role: s
                .roles
                .iter()
                .map(|r| {
                    (
                        r.name.as_str(),
                        RoleCalls {
                            started: r.calls.started,
                            passed: r.calls.passed,
                            failed: r.calls.failed,
                            failures: &r.failures,
                            registrations: (&r.registrations).into(),
                            steps: r
                                .steps
                                .iter()
                                .map(|st| StepJson {
                                    step: &st.kind,
                                    line: st.line,
                                    col: st.col,
                                    reached: st.reached,
                                    passed: st.passed,
                                    failed: st.failed,
                                    time_ms: round3(st.time.as_secs_f64() * 1000.0),
                                    failures: &st.failures,
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        },
        failures: &s.failures,
        registrations: (&s.registrations).into(),
        metrics,
        rtp: Rtp {
            packets_sent: s.rtp.packets_sent,
            packets_received: s.rtp.packets_received,
            packets_expected: s.rtp.packets_expected,
            packets_lost: s.rtp.packets_lost,
            loss_ratio: s.rtp.loss_ratio(),
            stray_packets: s.rtp.stray_packets,
            discontinuities: s.rtp.discontinuities,
            loss_per_stream_ppm: HistogramJson::of(&s.call_loss_ppm, 1.0, "")?,
            srtp: (s.rtp.srtp_streams > 0).then_some(SrtpJson {
                streams: s.rtp.srtp_streams,
                auth_failures: s.rtp.srtp_auth_failures,
                replays: s.rtp.srtp_replays,
            }),
        },
        audio: s.audio.into(),
        dtmf: s.dtmf.into(),
        quality: Quality {
            mos: Mos::of(&s.quality.mos_milli)?,
            pesq: Mos::offset(
                &s.quality.pesq_milli,
                sipcheck_core::stats::metrics::PESQ_OFFSET_MILLI,
            )?,
            audio_gaps: s.quality.audio_gaps,
            worst_calls: &s.worst_calls,
        },
        generator: Generator {
            late_starts: s.generator.late_starts,
            late_start_after_ms: LATE_START.as_secs_f64() * 1000.0,
            max_start_lag_ms: round3(s.generator.max_start_lag.as_secs_f64() * 1000.0),
            frames_skipped: s.generator.frames_skipped,
        },
        thresholds: thresholds
            .iter()
            .map(|t| ThresholdJson {
                name: t.threshold.metric.to_string(),
                condition: t.threshold.condition.to_string(),
                actual: t.actual,
                unit: unit_name(t.unit()),
                passed: t.passed,
            })
            .collect(),
        failed_call_samples: s
            .samples
            .iter()
            .flat_map(|(kind, calls)| calls.iter().map(move |call| Sample { kind, call }))
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::Deserializer;
    use serde_json::Value;
    use sipcheck_core::scenario::threshold::Metric;

    use super::*;
    use sipcheck_core::stats::fixture;

    fn document() -> Value {
        let s = fixture::run();
        let t = s.check(&fixture::thresholds());
        let mut out = Vec::new();
        write_json(&s, &t, &mut out).unwrap();
        assert!(out.ends_with(b"}\n"));
        serde_json::from_slice(&out).unwrap()
    }

    /// Every key path with its JSON type, one per line, sorted; array elements merged
    /// under `[]`.
    fn skeleton(v: &Value) -> String {
        fn walk(path: &str, v: &Value, out: &mut std::collections::BTreeSet<String>) {
            let ty = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            out.insert(format!("{path}: {ty}"));
            match v {
                Value::Array(items) => {
                    for item in items {
                        walk(&format!("{path}[]"), item, out);
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map {
                        walk(&format!("{path}.{k}"), item, out);
                    }
                }
                _ => {}
            }
        }
        let mut lines = std::collections::BTreeSet::new();
        walk("$", v, &mut lines);
        lines.into_iter().map(|l| l + "\n").collect()
    }

    #[test]
    fn keys_and_types_are_pinned() {
        crate::report::snapshot::assert_snapshot("report_json_keys.txt", &skeleton(&document()));
    }

    #[test]
    fn top_level_values() {
        let v = document();
        assert_eq!(v["schema"], "sipcheck.run/1");
        assert_eq!(v["scenario"], "pbx-regression");
        assert_eq!(v["started_at_unix_ms"], 1_763_900_000_000u64);
        assert_eq!(v["duration_s"], 10.0);
        assert_eq!(v["verdict"], "thresholds_failed");
        assert_eq!(v["calls"]["counted_side"], "caller");
        assert_eq!(v["calls"]["failed"], 4);
        assert_eq!(v["calls"]["failed_ratio"], 0.04);
        assert_eq!(v["calls"]["by_role"]["callee"]["failures"]["signalling"], 2);
        assert_eq!(v["failures"]["sip_486"], 2);
        assert_eq!(v["registrations"]["failed"], 1);
        assert_eq!(v["metrics"]["invite_to_200"]["count"], 97);
        assert_eq!(v["metrics"]["invite_to_200"]["min_ms"], 42.976);
        assert_eq!(v["rtp"]["packets_lost"], 36);
        assert_eq!(v["generator"]["late_starts"], 1);
        assert_eq!(v["generator"]["max_start_lag_ms"], 25.0);
        assert_eq!(v["thresholds"][1]["name"], "calls.failed");
        assert_eq!(v["thresholds"][1]["actual"], 0.04);
        assert_eq!(v["thresholds"][1]["unit"], "fraction");
        assert_eq!(v["thresholds"][1]["passed"], false);
        let samples = v["failed_call_samples"].as_array().unwrap();
        // 2 × sip_486, 2 × signalling (callee), 1 × timer_b, 1 × tone_missing.
        assert_eq!(samples.len(), 6);
        let busy = samples.iter().find(|s| s["kind"] == "sip_486").unwrap();
        assert_eq!(busy["call_id"], "call-0@sipcheck");
        assert_eq!(busy["final_code"], 486);
        assert_eq!(busy["failures"][0]["kind"], "sip_486");
        assert_eq!(busy["ladder"][2]["line"], "SIP/2.0 486 Busy Here");
        assert_eq!(busy["ladder"][0]["peer"], "127.0.0.1:5060");
    }

    #[test]
    fn empty_metrics_are_present_with_null_statistics() {
        let s = sipcheck_core::stats::metrics::Metrics::new(
            std::time::SystemTime::UNIX_EPOCH,
            &Default::default(),
        )
        .finish(std::time::Duration::ZERO, false);
        let mut out = Vec::new();
        write_json(&s, &[], &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let metrics = v["metrics"].as_object().unwrap();
        assert_eq!(metrics.len(), 13);
        assert_eq!(metrics["tls_handshake"]["count"], 0);
        assert_eq!(metrics["ws_handshake"]["count"], 0);
        assert_eq!(metrics["invite_to_200"]["count"], 0);
        assert_eq!(metrics["audio.gap"]["count"], 0);
        assert_eq!(metrics["audio.delay"]["count"], 0);
        assert_eq!(v["quality"]["mos"]["count"], 0);
        assert_eq!(v["quality"]["mos"]["p5"], Value::Null);
        assert_eq!(v["quality"]["audio_gaps"], 0);
        assert_eq!(metrics["invite_to_200"]["p99_ms"], Value::Null);
        assert_eq!(v["calls"]["failed_ratio"], Value::Null);
        assert_eq!(v["verdict"], "passed");
    }

    #[test]
    fn histograms_round_trip_through_base64_v2_compressed() {
        let s = fixture::run();
        let v = document();
        let decode = |b64: &Value| -> Histogram<u64> {
            let bytes = BASE64.decode(b64.as_str().unwrap()).unwrap();
            // The V2 compressed cookie, 0x1c849314: what other languages' decoders expect.
            assert_eq!(bytes[..4], [0x1c, 0x84, 0x93, 0x14], "{b64}");
            Deserializer::new().deserialize(&mut &bytes[..]).unwrap()
        };
        for t in &s.timings {
            let json = &v["metrics"][t.metric.name()];
            let h = decode(&json["histogram"]);
            assert_eq!(h.len(), t.micros.len(), "{}", t.metric);
            assert_eq!(json["count"], t.micros.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    h.value_at_quantile(q),
                    t.micros.value_at_quantile(q),
                    "{} q{q}",
                    t.metric
                );
            }
            if !h.is_empty() {
                let p99 = json["p99_ms"].as_f64().unwrap();
                assert!((p99 - h.value_at_quantile(0.99) as f64 / 1000.0).abs() < 1e-9);
            }
        }
        let pacing = decode(&v["metrics"]["pacing.lateness"]["histogram"]);
        assert_eq!(&pacing, s.timing(Metric::PacingLateness).unwrap());
        let loss = decode(&v["rtp"]["loss_per_stream_ppm"]["histogram"]);
        assert_eq!(loss, s.call_loss_ppm);
        assert_eq!(v["rtp"]["loss_per_stream_ppm"]["max"], loss.max() as f64);
    }

    /// `docs/run-summary.schema.json`, compiled by the `jsonschema` crate (draft 2020-12):
    /// every keyword the schema uses is enforced, none is skipped.
    fn shipped_schema() -> jsonschema::Validator {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/run-summary.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(schema["properties"]["schema"]["const"], SCHEMA);
        jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
        jsonschema::draft202012::new(&schema).expect("the schema compiles")
    }

    /// Where `doc` breaks the schema: one `instance path: message` per error.
    fn schema_errors(schema: &jsonschema::Validator, doc: &Value) -> Vec<String> {
        schema
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_json_schema_file_describes_the_output() {
        let schema = shipped_schema();
        for doc in [document(), {
            let s = sipcheck_core::stats::metrics::Metrics::new(
                std::time::SystemTime::UNIX_EPOCH,
                &Default::default(),
            )
            .finish(std::time::Duration::ZERO, true);
            let mut out = Vec::new();
            write_json(&s, &[], &mut out).unwrap();
            serde_json::from_slice(&out).unwrap()
        }] {
            let errors = schema_errors(&schema, &doc);
            assert!(errors.is_empty(), "{}", errors.join("\n"));
        }
        // And the schema does catch a change: a retyped key, an unknown key, a value out of
        // its range and one outside its enum.
        let mut doc = document();
        doc["calls"]["started"] = Value::String("100".into());
        doc["extra"] = Value::Bool(true);
        doc["rtp"]["loss_ratio"] = Value::from(-1.0);
        doc["verdict"] = Value::String("maybe".into());
        let errors = schema_errors(&schema, &doc);
        for path in [
            "/calls/started",
            ": Additional properties",
            "/rtp/loss_ratio",
            "/verdict",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(path)),
                "{path} not caught: {errors:#?}"
            );
        }
    }
}
