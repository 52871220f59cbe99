//! `sipcheck run --html`: the self-test, a load through Kamailio and calls that fail each
//! write one self-contained page, which headless Chromium (Debian package `chromium`) opens
//! with no network at all (in an empty network namespace) and renders: the DOM it built holds
//! the verdict, the thresholds and a drawing per chart, and its screenshot is a real picture.
//!
//! Measured media quality gets its charts: the mouth-to-ear delay of calls through Kamailio,
//! the PESQ score of speech. A run stopped by Ctrl-C still writes its page, interrupted.
//!
//! `SIPCHECK_UPDATE_DOCS=1 cargo test --test html kamailio` also writes the Kamailio run's
//! screenshot to `docs/html-report.png` (the README's picture).

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::kamailio::Kamailio;
use support::process::{require_program, stop_child, wait_timeout, RunDir};
use support::reports::{run_scenario as run, Reports};
use support::{describe_output, free_port};

/// How long Chromium may take to load and render a page before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs headless Chromium on `page` with `args` (`--dump-dom`, `--screenshot=…`) in a network
/// namespace of its own with no interface up, a throw-away profile, its standard output to
/// a file; killed (by its PID, its children too) past [`CHROMIUM_TIMEOUT`]. Returns what it
/// printed.
fn chromium(page: &Path, args: &[&str]) -> String {
    let chromium = require_program("chromium", "chromium").unwrap_or_else(|e| panic!("{e:#}"));
    let unshare = require_program("unshare", "util-linux").unwrap_or_else(|e| panic!("{e:#}"));
    let dir = RunDir::new("chromium").expect("a profile directory");
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let profile = dir.join("profile");
    let mut child = Command::new(unshare)
        .arg("--net")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let status = match wait_timeout(&mut child, CHROMIUM_TIMEOUT) {
        Some(status) => status,
        None => {
            stop_child(&mut child, "KILL", Duration::from_secs(5));
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?}: {}",
                support::process::read_lossy(&err_path)
            );
        }
    };
    let stdout = support::process::read_lossy(&out_path);
    assert!(
        status.success(),
        "chromium: {status}: {}",
        support::process::read_lossy(&err_path)
    );
    stdout
}

/// The DOM Chromium built from the page.
fn dom(page: &Path) -> String {
    let dom = chromium(page, &["--dump-dom"]);
    assert!(dom.contains("</html>"), "a whole document: {dom}");
    dom
}

/// A 1280×2000 screenshot of the page: a PNG of those dimensions with something on it.
fn screenshot(page: &Path, png: &Path) {
    chromium(
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
        ],
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!((be(&bytes[16..20]), be(&bytes[20..24])), (1280, 2000));
    // A blank page compresses to a few kilobytes; text, tables and charts do not.
    assert!(bytes.len() > 40_000, "{} bytes: a blank page?", bytes.len());
}

/// The element `<figure … id="ID">` of the DOM, up to its end.
fn figure<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the DOM"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find("</figure>").expect("figure closed");
    &dom[start..end]
}

/// Every chart named has its drawing in the DOM.
fn assert_charts(dom: &str, ids: &[&str]) {
    for id in ids {
        let f = figure(dom, id);
        assert!(f.starts_with("<figure class=\"chart\""), "{id}: {f}");
        assert_eq!(f.matches("<svg").count(), 1, "{id} has one drawing: {f}");
        assert!(
            f.contains("<polyline") || f.contains("<rect") || f.contains("<circle"),
            "{id} draws something: {f}"
        );
    }
}

/// The page loads nothing: no URL at all, no script, no external style or font.
fn assert_self_contained(html: &str) {
    for needle in [
        "http://", "https://", "<script", "<link", "<img", "src=", "@import", "url(",
    ] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
}

fn html_of(reports: &Reports) -> PathBuf {
    reports.path("report.html")
}

#[test]
fn the_selftest_writes_a_page_chromium_renders_offline() {
    // scenarios/selftest.yaml as shipped, on free ports instead of its fixed 5070 and 5080.
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let html = html_of(&reports);
    let out = run(
        "scenarios/selftest.yaml",
        &[
            "--html",
            html.to_str().unwrap(),
            "--set",
            &format!("roles.callee.listen={callee}"),
            "--set",
            &format!("roles.caller.listen={caller}"),
            "--set",
            &format!("roles.caller.steps.0.call.to=sip:{{peer}}@{callee}"),
        ],
        &[],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    let text = std::fs::read_to_string(&html).expect("HTML written");
    assert_self_contained(&text);
    let dom = dom(&html);
    assert!(
        dom.contains("<div id=\"verdict\" class=\"verdict pass\">PASSED</div>"),
        "{dom}"
    );
    assert!(dom.contains(&format!(
        "<code id=\"run-id\">{}</code>",
        v["run_id"].as_str().unwrap()
    )));
    // Each threshold, passed, with its measured value.
    let thresholds = v["thresholds"].as_array().unwrap();
    assert_eq!(
        dom.matches("<tr class=\"threshold pass\">").count(),
        thresholds.len(),
        "{dom}"
    );
    assert!(!dom.contains("threshold fail"), "{dom}");
    assert!(
        dom.contains("<code>invite_to_200.p99 &lt; 400ms</code>"),
        "{dom}"
    );
    assert_charts(
        &dom,
        &[
            "chart-calls",
            "chart-setup-time",
            "chart-setup-histogram",
            "chart-setup-percentiles",
            "chart-rtp-loss",
            "chart-rtp-jitter",
            "chart-pacing",
            "chart-mos",
        ],
    );
    assert!(
        dom.contains("invite_to_200 over 10 calls"),
        "the setup figures name the calls: {dom}"
    );
    assert!(dom.contains("audio verified: 20 of 20"), "{dom}");
    assert!(
        dom.contains("<p id=\"failures\" class=\"no-data\">no failures</p>"),
        "{dom}"
    );
    screenshot(&html, &reports.path("report.png"));
}

#[test]
fn a_load_through_kamailio_writes_a_page_with_every_chart_and_no_password() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let html = html_of(&reports);
    let series = reports.path("series.csv");
    let out = run(
        "tests/peers/scenarios/kamailio-100.yaml",
        &[
            "--set",
            "load.total_calls=40",
            "--html",
            html.to_str().unwrap(),
            "--series",
            series.to_str().unwrap(),
            "--series-interval",
            "500ms",
        ],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 40, "{v}");
    let text = std::fs::read_to_string(&html).expect("HTML written");
    assert_self_contained(&text);
    // The accounts' passwords ("pw3000" …) are nowhere in the page.
    assert!(!text.contains("pw3"), "a password in the page");
    // The page's series is the --series file's: as many points per line as rows.
    let rows = std::fs::read_to_string(&series).unwrap().lines().count() - 1;
    assert!(rows >= 4, "{rows} rows");
    let dom = dom(&html);
    assert!(dom.contains("class=\"verdict pass\">PASSED<"), "{dom}");
    assert!(dom.contains("one point per 500ms interval"), "{dom}");
    assert_charts(
        &dom,
        &[
            "chart-calls",
            "chart-setup-time",
            "chart-setup-histogram",
            "chart-setup-percentiles",
            "chart-rtp-loss",
            "chart-rtp-jitter",
            "chart-pacing",
        ],
    );
    // One marker per row on each line of the calls chart (4 lines).
    let calls = figure(&dom, "chart-calls");
    assert_eq!(calls.matches("<circle").count(), 4 * rows, "{calls}");
    assert!(
        dom.contains("invite_to_200 over 40 calls"),
        "the setup figures: {dom}"
    );
    assert!(dom.contains("registrations: ok 200, failed 0"), "{dom}");
    let png = reports.path("report.png");
    screenshot(&html, &png);
    if std::env::var_os("SIPCHECK_UPDATE_DOCS").is_some() {
        let docs = support::repo_root().join("docs/html-report.png");
        std::fs::copy(&png, &docs).expect("copy the screenshot into docs/");
    }
}

#[test]
fn failed_calls_show_their_reason_and_ladder_escaped() {
    let listen = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let html = html_of(&reports);
    // The page named by the scenario's `reports.html` this time.
    let out = run(
        "tests/peers/scenarios/busy.yaml",
        &["--set", &format!("reports.html={}", html.display())],
        &[("CALLEE_LISTEN", listen.as_str())],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let text = std::fs::read_to_string(&html).expect("HTML written");
    assert_self_contained(&text);
    let dom = dom(&html);
    assert!(
        dom.contains("<div id=\"verdict\" class=\"verdict fail\">FAILED: 3 of 3 calls"),
        "{dom}"
    );
    let failures = &dom[dom.find("<table id=\"failures\">").expect("failures table")..];
    assert!(
        failures.contains("<td><code>sip_486</code></td><td class=\"num\">3</td>"),
        "{failures}"
    );
    // The first failing call's ladder, as text: the peer's start lines, and the call's
    // Request-URI with its angle brackets escaped (text in the DOM, not markup).
    let ladder = &dom[dom.find("<pre class=\"ladder\">").expect("a ladder")..];
    let ladder = &ladder[..ladder.find("</pre>").unwrap()];
    assert!(ladder.contains("SIP/2.0 486 Busy Here"), "{ladder}");
    assert!(ladder.contains("--&gt;"), "arrows escaped: {ladder}");
    assert!(ladder.contains("INVITE sip:400"), "{ladder}");
    assert!(!ladder.contains("<sip"), "{ladder}");
    // No call was answered: the setup charts say so instead of drawing nothing.
    assert!(figure(&dom, "chart-setup-histogram").contains("no data"));
    assert_charts(&dom, &["chart-calls"]);
    screenshot(&html, &reports.path("report.png"));
}

#[test]
fn measured_delay_and_pesq_get_their_charts() {
    // Mouth-to-ear delay: 20 calls through Kamailio, both ends in the run.
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let html = html_of(&reports);
    let out = run(
        "tests/peers/scenarios/kamailio-signatures.yaml",
        &["--html", html.to_str().unwrap()],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    let page = dom(&html);
    assert_charts(&page, &["chart-delay", "chart-mos"]);
    let count = v["metrics"]["audio.delay"]["count"].as_u64().unwrap();
    assert!(
        page.contains(&format!("({count} directions)</li>")),
        "the delay's figures: {page}"
    );
    assert!(!page.contains("chart-pesq"), "no PESQ measured: {page}");

    // PESQ: one call scoring the speech it receives.
    let reports = Reports::new();
    let html = html_of(&reports);
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let out = run(
        "tests/peers/scenarios/pesq-direct.yaml",
        &["--html", html.to_str().unwrap()],
        &[
            ("CALLEE_LISTEN", callee.as_str()),
            ("CALLER_LISTEN", caller.as_str()),
            ("RTP_PORTS", "43000-43999"),
            ("PESQ_MIN", "3.5"),
        ],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let page = dom(&html);
    assert_charts(&page, &["chart-pesq"]);
    let line = page
        .split("<li>PESQ (ITU-T P.862 raw): p50 ")
        .nth(1)
        .unwrap_or_else(|| panic!("the PESQ figures: {page}"));
    let p50: f64 = line.split(',').next().unwrap().parse().unwrap();
    assert!((3.5..=4.6).contains(&p50), "{line}");
    assert!(
        line.starts_with(&format!("{p50:.2}, min {p50:.2} (1 scores)")),
        "{line}"
    );
}

#[test]
fn ctrl_c_still_writes_the_page_and_its_verdict_says_interrupted() {
    let reports = Reports::new();
    let html = html_of(&reports);
    let series = reports.path("series.csv");
    let path = support::repo_root().join("tests/peers/scenarios/series-direct.yaml");
    let out_path = reports.path("stdout");
    let err_path = reports.path("stderr");
    // Calls that would last 60 s: only Ctrl-C ends this run in time.
    let mut child = Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--html"])
        .arg(&html)
        .arg("--series")
        .arg(&series)
        .args(["--series-interval", "250ms"])
        .env("CALLEE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("CALLER_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HANGUP_AFTER", "60s")
        .env("TOTAL_CALLS", "4")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("start sipcheck");
    let output = || {
        format!(
            "{}\n{}",
            support::process::read_lossy(&out_path),
            support::process::read_lossy(&err_path)
        )
    };
    // Every call started (the series' `started` column, the third, adds up to 4).
    let started = || {
        std::fs::read_to_string(&series)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(2)?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let up =
        support::process::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            started() == 4
        });
    if !up {
        stop_child(&mut child, "KILL", Duration::from_secs(5));
        panic!("the calls did not start\n{}", output());
    }
    support::process::signal(child.id(), "INT").unwrap();
    let Some(status) = wait_timeout(&mut child, Duration::from_secs(30)) else {
        stop_child(&mut child, "KILL", Duration::from_secs(5));
        panic!("sipcheck did not stop after SIGINT\n{}", output());
    };
    assert_eq!(status.code(), Some(130), "{}", output());
    let dom = dom(&html);
    assert!(
        dom.contains(
            "<div id=\"verdict\" class=\"verdict interrupted\">INTERRUPTED: the run did not finish"
        ),
        "{dom}\n{}",
        output()
    );
    assert!(!dom.contains("PASSED"), "{dom}");
    assert_charts(&dom, &["chart-calls"]);
}
