//! `--html FILE`: the run as one self-contained HTML page, for people — the verdict and each
//! threshold, charts of the run over time (calls, setup latency, RTP) and of the setup
//! latency's distribution, media quality (MOS, mouth-to-ear delay, PESQ) when measured, and
//! the failures by reason with the SIP ladder of each reason's first call.
//!
//! The page loads nothing: its style sheet is inline, each chart an inline `<svg>` drawn by
//! `plotters` (SVG backend), and there is no script. Every string from the run (reasons,
//! URIs, start lines, Call-IDs) is escaped. Each chart is a `<figure class="chart">` with an
//! `id` of its own (`chart-calls`, `chart-setup-time`, …), so that tests and people can find
//! it; a chart without data says so in place of its drawing.
//!
//! A pure function of the run's figures ([`RunSummary`], the checked thresholds, the rows of
//! the time series and the PESQ scores) writing to `impl Write`: it runs once, at the run's
//! end, and its work grows with the number of series rows and of failure reasons kept, not
//! with the number of calls or packets.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use sipcheck_core::scenario::threshold::Metric;
use sipcheck_core::stats::distribution::{self, Bucket, Scores};
use sipcheck_core::stats::metrics::{RunSummary, TimingStats};
use sipcheck_core::stats::outcome::Side;
use sipcheck_core::stats::series::SeriesRow;
use sipcheck_core::stats::verdict::{ThresholdResult, Verdict};

use super::console::{sample_text, threshold_rule, verdict_text};
use super::values::actual_text;

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct HtmlInput<'a> {
    /// The run's figures.
    pub summary: &'a RunSummary,
    /// Its thresholds, checked.
    pub thresholds: &'a [ThresholdResult],
    /// The rows of its time series, in order.
    pub series: &'a [SeriesRow],
    /// The series' interval; zero when the run kept no series (a merge of shards' summaries).
    pub interval: Duration,
    /// How many intervals each row stands for (1 unless a long run's rows were merged, see
    /// [`sipcheck_core::stats::kept_rows`]).
    pub merged: u32,
}

/// A chart's size in pixels (its SVG scales down with the page).
const WIDTH: u32 = 600;
const HEIGHT: u32 = 300;
/// Up to this many points per line, each point also gets a marker.
const MARKERS_UP_TO: usize = 120;
/// Bars of a distribution.
const BARS: usize = 30;

const STYLE: &str = "
body{font-family:sans-serif;margin:0 auto;max-width:1180px;padding:16px;color:#222;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
.meta{color:#555;font-size:.9em}
.verdict{font-size:1.3em;font-weight:bold;padding:.5em .8em;border-radius:4px;margin:.8em 0}
.verdict.pass{background:#e3f4e3;color:#1b5e20;border:1px solid #4caf50}
.verdict.fail{background:#fde7e7;color:#b71c1c;border:1px solid #e53935}
.verdict.interrupted{background:#fff4e0;color:#8a5300;border:1px solid #ff9800}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.pass td.mark{color:#1b5e20}tr.fail td.mark{color:#b71c1c;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure.chart{margin:0;border:1px solid #e4e4e4;padding:6px;flex:0 1 560px;max-width:100%}
figure.chart svg{width:100%;height:auto}
figcaption{font-size:.85em;color:#555}
p.no-data{color:#777;font-style:italic}
pre.ladder{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:.85em}
details{margin:.4em 0}summary{cursor:pointer}
";

/// Writes the page.
///
/// # Errors
/// The writer's; a chart that cannot be drawn (a `plotters` error) as [`io::ErrorKind::Other`].
pub fn write_html(input: &HtmlInput<'_>, out: &mut impl Write) -> io::Result<()> {
    let mut page = String::with_capacity(64 * 1024);
    render(input, &mut page)?;
    out.write_all(page.as_bytes())
}

fn render(input: &HtmlInput<'_>, page: &mut String) -> io::Result<()> {
    let s = input.summary;
    let t = input.thresholds;
    let title = format!("sipcheck run {}", s.scenario);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        page,
        "<p class=\"meta\">file {} · run id <code id=\"run-id\">{}</code> · {:.1} s · sipcheck {}</p>",
        esc(if s.file.is_empty() { "-" } else { &s.file }),
        esc(&s.run_id),
        s.elapsed.as_secs_f64(),
        env!("CARGO_PKG_VERSION")
    );
    let verdict = s.verdict(t);
    let class = match verdict {
        Verdict::Passed => "pass",
        Verdict::Failed | Verdict::ThresholdsFailed => "fail",
        Verdict::Interrupted => "interrupted",
    };
    let _ = writeln!(
        page,
        "<div id=\"verdict\" class=\"verdict {class}\">{}</div>",
        esc(&verdict_text(s, t))
    );

    thresholds(page, t);
    calls(page, s);
    over_time(page, input)?;
    setup(page, s)?;
    rtp(page, input)?;
    quality(page, input)?;
    failures(page, s);
    worst(page, s);
    page.push_str("</body>\n</html>\n");
    Ok(())
}

fn thresholds(page: &mut String, t: &[ThresholdResult]) {
    page.push_str("<h2>Thresholds</h2>\n");
    if t.is_empty() {
        page.push_str("<p class=\"no-data\">no thresholds</p>\n");
        return;
    }
    page.push_str(
        "<table id=\"thresholds\">\n<tr><th></th><th>threshold</th><th>measured</th><th>result</th></tr>\n",
    );
    for r in t {
        let (class, mark, word) = if r.passed {
            ("pass", "✓", "pass")
        } else {
            ("fail", "✗", "FAIL")
        };
        let _ = writeln!(
            page,
            "<tr class=\"threshold {class}\"><td class=\"mark\">{mark}</td><td><code>{}</code></td>\
             <td class=\"num\">{}</td><td class=\"mark\">{word}</td></tr>",
            esc(&threshold_rule(r)),
            esc(&actual_text(r))
        );
    }
    page.push_str("</table>\n");
}

fn calls(page: &mut String, s: &RunSummary) {
    let side = match s.counted_side {
        Side::Caller => "caller side",
        Side::Callee => "callee side",
    };
    page.push_str(
        "<h2>Calls</h2>\n<table id=\"calls\">\n<tr><th></th><th>started</th><th>passed</th><th>failed</th></tr>\n",
    );
    let row = |page: &mut String, name: &str, c: &sipcheck_core::stats::metrics::CallCounts| {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            c.started,
            c.passed,
            c.failed
        );
    };
    row(page, &format!("all ({side})"), &s.calls);
    for role in s.roles.iter().filter(|r| r.calls.started > 0) {
        row(page, &role.name, &role.calls);
    }
    page.push_str("</table>\n");
    let r = &s.registrations;
    if r.ok + r.failed + r.unregister_ok + r.unregister_failed > 0 {
        let _ = writeln!(
            page,
            "<p>registrations: ok {}, failed {}; unregistrations: ok {}, failed {}</p>",
            r.ok, r.failed, r.unregister_ok, r.unregister_failed
        );
    }
    if s.generator.not_started > 0 {
        let _ = writeln!(
            page,
            "<p>not started: {} (due by the load plan while the concurrency cap was reached)</p>",
            s.generator.not_started
        );
    }
}

/// The end of each row, in seconds from the run's start, with a figure of it.
fn points(rows: &[SeriesRow], f: impl Fn(&SeriesRow) -> Option<f64>) -> Vec<(f64, Option<f64>)> {
    rows.iter().map(|r| (r.end.as_secs_f64(), f(r))).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn over_time(page: &mut String, input: &HtmlInput<'_>) -> io::Result<()> {
    let rows = input.series;
    if input.interval.is_zero() {
        page.push_str(
            "<h2>Over time</h2>\n<p id=\"no-series\" class=\"no-data\">no time series: \
             the figures were merged from shards' summaries, which hold none</p>\n",
        );
        return Ok(());
    }
    let merged = input.merged.max(1);
    let _ = write!(
        page,
        "<h2>Over time</h2>\n<p class=\"meta\">one point per {} interval, at its end",
        esc(&humantime::format_duration(input.interval * merged).to_string())
    );
    if merged > 1 {
        let _ = write!(
            page,
            " ({merged} intervals of {} merged into each: counts added, figures the worst of them)",
            esc(&humantime::format_duration(input.interval).to_string())
        );
    }
    page.push_str("</p>\n<div class=\"charts\">\n");
    let count = |f: fn(&SeriesRow) -> u64| points(rows, move |r| Some(f(r) as f64));
    let lines = [
        Line::new("started", BLUE, count(|r| r.started)),
        Line::new("passed", RGBColor(46, 160, 67), count(|r| r.passed)),
        Line::new("failed", RED, count(|r| r.failed)),
        Line::new("active", RGBColor(120, 120, 120), count(|r| r.active)),
    ];
    figure(
        page,
        "chart-calls",
        "Calls started, passed and failed per interval, and active at its end",
        line_chart("calls", "calls", &lines)?,
    );
    let setup = |f: fn(&sipcheck_core::stats::series::Percentiles) -> Duration| {
        points(rows, move |r| r.setup.map(|p| ms(f(&p))))
    };
    let lines = [
        Line::new("p50", RGBColor(46, 160, 67), setup(|p| p.p50)),
        Line::new("p90", RGBColor(230, 140, 0), setup(|p| p.p90)),
        Line::new("p99", RED, setup(|p| p.p99)),
    ];
    figure(
        page,
        "chart-setup-time",
        "Setup latency (INVITE to 200 OK, from the scheduled start) of the calls that ended in each interval",
        line_chart("invite_to_200", "ms", &lines)?,
    );
    page.push_str("</div>\n");
    Ok(())
}

fn setup(page: &mut String, s: &RunSummary) -> io::Result<()> {
    page.push_str("<h2>Setup latency</h2>\n");
    let h = s.timing(Metric::InviteTo200);
    if let Some(t) = h.and_then(TimingStats::of) {
        let _ = writeln!(
            page,
            "<p id=\"setup-stats\">invite_to_200 over {} calls: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms</p>",
            t.count, t.p50_ms, t.p90_ms, t.p99_ms, t.p999_ms, t.max_ms
        );
    }
    page.push_str("<div class=\"charts\">\n");
    let buckets = h.map_or_else(Vec::new, |h| distribution::buckets(h, 0.001, BARS));
    figure(
        page,
        "chart-setup-histogram",
        "Distribution of the setup latency (calls per bar)",
        bar_chart("invite_to_200", "ms", &buckets, BLUE)?,
    );
    figure(
        page,
        "chart-setup-percentiles",
        "Setup latency by percentile",
        percentile_chart(h)?,
    );
    page.push_str("</div>\n");
    Ok(())
}

fn rtp(page: &mut String, input: &HtmlInput<'_>) -> io::Result<()> {
    let s = input.summary;
    let rows = input.series;
    page.push_str("<h2>RTP</h2>\n");
    let r = &s.rtp;
    if r.packets_sent + r.packets_expected > 0 {
        let _ = write!(
            page,
            "<p id=\"rtp-totals\">packets sent {}, received {}, expected {}, lost {}",
            r.packets_sent, r.packets_received, r.packets_expected, r.packets_lost
        );
        if let Some(l) = r.loss_ratio() {
            let _ = write!(page, " ({:.3}%)", l * 100.0);
        }
        let _ = writeln!(
            page,
            "; generator frames skipped {}</p>",
            s.generator.frames_skipped
        );
    }
    page.push_str("<div class=\"charts\">\n");
    figure(
        page,
        "chart-rtp-loss",
        "RTP loss (lost of expected packets) of the streams that ended in each interval",
        line_chart(
            "rtp loss",
            "%",
            &[Line::new(
                "loss",
                RED,
                points(rows, |r| r.rtp_loss_ratio.map(|l| l * 100.0)),
            )],
        )?,
    );
    figure(
        page,
        "chart-rtp-jitter",
        "RTP jitter (RFC 3550, at call end): p99 of the streams that ended in each interval",
        line_chart(
            "rtp jitter p99",
            "ms",
            &[Line::new(
                "jitter p99",
                RGBColor(120, 60, 180),
                points(rows, |r| r.jitter_p99_ms),
            )],
        )?,
    );
    figure(
        page,
        "chart-pacing",
        "Pacing lateness: p99 of how late sipcheck's own RTP frames left, per interval",
        line_chart(
            "pacing lateness p99",
            "ms",
            &[Line::new(
                "lateness p99",
                RGBColor(0, 130, 130),
                points(rows, |r| r.pacing_lateness_p99.map(ms)),
            )],
        )?,
    );
    page.push_str("</div>\n");
    Ok(())
}

fn quality(page: &mut String, input: &HtmlInput<'_>) -> io::Result<()> {
    let s = input.summary;
    let mos = &s.quality.mos_milli;
    let delay = s.timing(Metric::AudioDelay).filter(|h| !h.is_empty());
    let pesq = Scores::from_milli(s.quality.pesq_milli.clone());
    let verified = s.audio.checked + s.dtmf.checked > 0;
    if mos.is_empty() && delay.is_none() && pesq.is_empty() && !verified {
        return Ok(());
    }
    page.push_str("<h2>Media quality</h2>\n<ul id=\"quality\">\n");
    if let Some(ratio) = s.audio.ratio() {
        let _ = writeln!(
            page,
            "<li>audio verified: {} of {} ({:.2}%), gaps {}</li>",
            s.audio.verified,
            s.audio.checked,
            ratio * 100.0,
            s.quality.audio_gaps
        );
    }
    if let Some(ratio) = s.dtmf.ratio() {
        let _ = writeln!(
            page,
            "<li>DTMF verified: {} of {} ({:.2}%)</li>",
            s.dtmf.verified,
            s.dtmf.checked,
            ratio * 100.0
        );
    }
    if let (Some(p5), Some(p50)) = (
        s.quality.mos_percentile(5.0),
        s.quality.mos_percentile(50.0),
    ) {
        let _ = writeln!(
            page,
            "<li>MOS (estimate, G.107 E-model): p5 {p5:.2}, p50 {p50:.2}, min {:.2} ({} streams)</li>",
            mos.min() as f64 / 1000.0,
            mos.len()
        );
    }
    if let Some(t) = delay.and_then(TimingStats::of) {
        let _ = writeln!(
            page,
            "<li>mouth-to-ear delay: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} directions)</li>",
            t.p50_ms, t.p99_ms, t.max_ms, t.count
        );
    }
    if let (Some(p50), Some(min)) = (pesq.percentile(50.0), pesq.min()) {
        let _ = writeln!(
            page,
            "<li>PESQ (ITU-T P.862 raw): p50 {p50:.2}, min {min:.2} ({} scores)</li>",
            pesq.len()
        );
    }
    page.push_str("</ul>\n<div class=\"charts\">\n");
    if !mos.is_empty() {
        figure(
            page,
            "chart-mos",
            "Distribution of the MOS estimate (streams per bar)",
            bar_chart(
                "mos",
                "MOS",
                &distribution::buckets(mos, 0.001, BARS),
                RGBColor(46, 160, 67),
            )?,
        );
    }
    if let Some(h) = delay {
        figure(
            page,
            "chart-delay",
            "Distribution of the mouth-to-ear delay (directions per bar)",
            bar_chart(
                "audio.delay",
                "ms",
                &distribution::buckets(h, 0.001, BARS),
                RGBColor(120, 60, 180),
            )?,
        );
    }
    if !pesq.is_empty() {
        figure(
            page,
            "chart-pesq",
            "Distribution of the PESQ scores (scores per bar)",
            bar_chart("pesq", "PESQ", &pesq.buckets(BARS), BLUE)?,
        );
    }
    page.push_str("</div>\n");
    Ok(())
}

fn failures(page: &mut String, s: &RunSummary) {
    page.push_str("<h2>Failures by reason</h2>\n");
    if s.reasons.is_empty() {
        page.push_str("<p id=\"failures\" class=\"no-data\">no failures</p>\n");
        return;
    }
    page.push_str(
        "<p class=\"meta\">a call can fail more than one way; each reason with its first failing call and its SIP ladder</p>\n\
         <table id=\"failures\">\n<tr><th>reason</th><th>kind</th><th>count</th></tr>\n",
    );
    for r in &s.reasons {
        let _ = writeln!(
            page,
            "<tr class=\"reason\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
            esc(&r.reason),
            esc(&r.kind),
            r.count
        );
    }
    page.push_str("</table>\n");
    for (i, r) in s.reasons.iter().enumerate() {
        let mut text = String::new();
        sample_text(&mut text, &r.first);
        let open = if i < 3 { " open" } else { "" };
        let _ = writeln!(
            page,
            "<details class=\"sample\"{open}><summary>{} (×{})</summary>\n<pre class=\"ladder\">{}</pre>\n</details>",
            esc(&r.reason),
            r.count,
            esc(&text)
        );
    }
}

fn worst(page: &mut String, s: &RunSummary) {
    if s.worst_calls.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Worst calls (lowest MOS estimate)</h2>\n<table id=\"worst-calls\">\n\
         <tr><th>MOS</th><th>loss</th><th>jitter</th><th>gaps</th><th>delay</th><th>verdict</th><th>role</th><th>Call-ID</th></tr>\n",
    );
    for w in &s.worst_calls {
        let q = &w.quality;
        let loss = q
            .loss_percent
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"));
        let delay = q
            .delay_ms
            .map_or_else(|| "-".to_owned(), |d| format!("{d:.1} ms"));
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{:.2}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} ms</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            w.mos,
            loss,
            q.jitter_ms,
            q.audio_gaps,
            delay,
            esc(&w.verdict),
            esc(&w.role),
            esc(&w.call_id)
        );
    }
    page.push_str("</table>\n");
}

/// A chart in its figure, or a note that it has no data.
fn figure(page: &mut String, id: &str, caption: &str, svg: Option<String>) {
    let _ = writeln!(page, "<figure class=\"chart\" id=\"{id}\">");
    match svg {
        // Inline SVG in HTML needs no namespace declaration: the page then names no URL.
        Some(svg) => page.push_str(&svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)),
        None => page.push_str("<p class=\"no-data\">no data</p>"),
    }
    let _ = writeln!(
        page,
        "\n<figcaption>{}</figcaption>\n</figure>",
        esc(caption)
    );
}

/// One line of a chart over time: `None` points break it.
struct Line {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, Option<f64>)>,
}

impl Line {
    fn new(name: &'static str, color: RGBColor, points: Vec<(f64, Option<f64>)>) -> Self {
        Self {
            name,
            color,
            points,
        }
    }
}

fn chart_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("cannot draw a chart: {e}"))
}

/// The upper end of an axis that holds `max` (never an empty range).
fn upper(max: f64) -> f64 {
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

/// A chart of lines over the run's time; `None` when no line has a point.
fn line_chart(title: &str, y_desc: &str, lines: &[Line]) -> io::Result<Option<String>> {
    let values = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|&(x, y)| Some((x, y?))))
    };
    if values().next().is_none() {
        return Ok(None);
    }
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0_f64, f64::max);
    let y_max = values().map(|p| p.1).fold(0.0_f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..upper(x_max), 0.0..upper(y_max))
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("s from the run's start")
            .y_desc(y_desc)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for line in lines {
            let color = line.color;
            let mut labelled = false;
            for segment in line.points.split(|p| p.1.is_none()) {
                let pts: Vec<(f64, f64)> =
                    segment.iter().filter_map(|&(x, y)| Some((x, y?))).collect();
                if pts.is_empty() {
                    continue;
                }
                let drawn = chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(chart_error)?;
                if !labelled {
                    labelled = true;
                    drawn.label(line.name).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                }
                if line.points.len() <= MARKERS_UP_TO {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(chart_error)?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(Some(svg))
}

/// A distribution as bars; `None` without buckets.
fn bar_chart(
    title: &str,
    x_desc: &str,
    buckets: &[Bucket],
    color: RGBColor,
) -> io::Result<Option<String>> {
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        return Ok(None);
    };
    let (mut lo, mut hi) = (first.lo, last.hi);
    if hi - lo < 1e-9 {
        // All samples alike: one bar, given some width.
        let pad = (lo.abs() * 0.05).max(0.5);
        lo -= pad;
        hi += pad;
    }
    let y_max = buckets.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let single = buckets.len() == 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, 0.0..upper(y_max))
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(buckets.iter().map(|b| {
                let (x0, x1) = if single { (lo, hi) } else { (b.lo, b.hi) };
                Rectangle::new([(x0, 0.0), (x1, b.count as f64)], color.mix(0.7).filled())
            }))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(Some(svg))
}

/// The percentile a "nines" position stands for: `p90`, `p99.9`.
fn percentile_label(nines: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = format!("{p:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

/// A latency's percentile curve (value against nines); `None` for an empty histogram.
fn percentile_chart(h: Option<&Histogram<u64>>) -> io::Result<Option<String>> {
    let curve = h.map_or_else(Vec::new, |h| distribution::percentile_curve(h, 0.001));
    let Some(last) = curve.last() else {
        return Ok(None);
    };
    let x_max = last.nines;
    let y_max = last.value;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("invite_to_200 by percentile", ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..upper(y_max))
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms")
            .x_labels(x_max.round() as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let pts: Vec<(f64, f64)> = curve.iter().map(|p| (p.nines, p.value)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
            .map_err(chart_error)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(Some(svg))
}

/// Text for HTML: `&`, `<`, `>`, quotes escaped; control characters (but newline and tab)
/// dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::stats::fixture;
    use sipcheck_core::stats::series::Percentiles;

    fn rows(n: u64) -> Vec<SeriesRow> {
        (0..n)
            .map(|i| SeriesRow {
                start: Duration::from_secs(i),
                end: Duration::from_secs(i + 1),
                started: 10 + i % 3,
                active: 20,
                passed: 9 + i % 2,
                failed: i % 5 / 4,
                setup: (i % 7 != 3).then(|| Percentiles {
                    p50: Duration::from_millis(20 + i % 10),
                    p90: Duration::from_millis(40 + i % 10),
                    p99: Duration::from_millis(80 + i % 30),
                    max: Duration::from_millis(120),
                }),
                rtp_loss_ratio: Some((i % 4) as f64 * 0.001),
                jitter_p99_ms: Some(1.0 + (i % 5) as f64 * 0.2),
                pacing_lateness_p99: Some(Duration::from_micros(200 + i * 3)),
                frames_skipped: 0,
            })
            .collect()
    }

    /// The fixture run's page with these rows and these PESQ scores (and no others).
    fn render_page(series: &[SeriesRow], pesq: &[f64]) -> String {
        let mut s = fixture::run();
        s.quality.pesq_milli.reset();
        for &score in pesq {
            s.quality
                .pesq_milli
                .record(sipcheck_core::stats::metrics::pesq_milli(score))
                .unwrap();
        }
        let t = s.check(&fixture::thresholds());
        let mut out = Vec::new();
        write_html(
            &HtmlInput {
                summary: &s,
                thresholds: &t,
                series,
                interval: Duration::from_secs(1),
                merged: 1,
            },
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_page_has_the_verdict_thresholds_and_a_drawing_per_chart() {
        let page = render_page(&rows(30), &[3.9, 4.1, 2.2]);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("<div id=\"verdict\" class=\"verdict fail\">FAILED: "));
        assert!(page.contains("<table id=\"thresholds\">"));
        assert!(page.contains("<tr class=\"threshold fail\">"), "{page}");
        for id in [
            "chart-calls",
            "chart-setup-time",
            "chart-setup-histogram",
            "chart-setup-percentiles",
            "chart-rtp-loss",
            "chart-rtp-jitter",
            "chart-pacing",
            "chart-mos",
            "chart-pesq",
        ] {
            let at = page
                .find(&format!("<figure class=\"chart\" id=\"{id}\">"))
                .unwrap_or_else(|| panic!("{id} missing"));
            let figure = &page[at..at + page[at..].find("</figure>").unwrap()];
            assert!(figure.contains("<svg"), "{id} has a drawing: {figure}");
        }
        // Percentile axis labels name percentiles.
        assert!(page.contains("p99\n</text>"), "{page}");
        // The fixture's failure message with XML specials and a control character.
        assert!(
            page.contains("rejected: 486 &quot;Busy &amp; Here&quot;"),
            "{page}"
        );
        assert!(page.contains("call &lt;sip:1000@pbx.test&gt; rejected"));
        assert!(!page.contains("<sip:"), "nothing unescaped");
        assert!(!page.contains('\u{1}'));
        assert!(page.contains("<pre class=\"ladder\">"));
        assert!(page.contains("SIP/2.0 486 Busy Here"));
        // Nothing loaded from anywhere, no URL at all.
        for needle in [
            "http://", "https://", "<script", "<link", "src=", "@import", "url(",
        ] {
            let hits: Vec<_> = page.match_indices(needle).collect();
            assert!(hits.is_empty(), "{needle} in the page");
        }
    }

    #[test]
    fn charts_without_data_say_so() {
        let page = render_page(&[], &[]);
        for id in ["chart-calls", "chart-setup-time", "chart-rtp-loss"] {
            let at = page
                .find(&format!("id=\"{id}\""))
                .unwrap_or_else(|| panic!("{id}"));
            let figure = &page[at..at + page[at..].find("</figure>").unwrap()];
            assert!(figure.contains("no data"), "{figure}");
            assert!(!figure.contains("<svg"), "{figure}");
        }
        assert!(
            !page.contains("chart-pesq"),
            "no PESQ section without scores"
        );
    }

    #[test]
    fn an_hour_of_one_second_rows_stays_small() {
        let series = rows(3600);
        let page = render_page(&series, &[]);
        assert!(page.len() < 2_000_000, "{} bytes", page.len());
    }

    #[test]
    fn an_interrupted_run_is_never_shown_as_passed() {
        use sipcheck_core::stats::metrics::Metrics;
        let mut m = Metrics::new(std::time::SystemTime::UNIX_EPOCH, &fixture::info());
        m.record_call(&fixture::caller(1));
        let s = m.finish(Duration::from_secs(2), true);
        let mut out = Vec::new();
        write_html(
            &HtmlInput {
                summary: &s,
                thresholds: &[],
                series: &rows(2),
                interval: Duration::from_secs(1),
                merged: 1,
            },
            &mut out,
        )
        .unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.contains(
                "<div id=\"verdict\" class=\"verdict interrupted\">INTERRUPTED: nothing failed, but the run did not finish</div>"
            ),
            "{page}"
        );
        assert!(!page.contains("PASSED"), "{page}");
    }

    #[test]
    fn merged_rows_are_said_to_be_so() {
        let s = fixture::run();
        let mut out = Vec::new();
        write_html(
            &HtmlInput {
                summary: &s,
                thresholds: &[],
                series: &rows(5),
                interval: Duration::from_millis(500),
                merged: 4,
            },
            &mut out,
        )
        .unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.contains(
                "one point per 2s interval, at its end (4 intervals of 500ms merged into each: \
                 counts added, figures the worst of them)"
            ),
            "{page}"
        );
    }

    #[test]
    fn escaping_covers_markup_and_drops_controls() {
        assert_eq!(
            esc("<a href='x'>\"&\"</a>\u{7}\n"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;\n"
        );
        assert_eq!(percentile_label(0.0), "p0");
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(3.0), "p99.9");
    }
}
