use super::*;

/// A summary with the given setup p99 (ms), failed ratio and loss ratio; JSON read by the
/// YAML reader (JSON is YAML).
fn summary(scenario: &str, p99: Option<f64>, failed: Option<f64>, loss: f64) -> Node {
    let p99 = p99.map_or("null".to_owned(), |v| v.to_string());
    let failed = failed.map_or("null".to_owned(), |v| v.to_string());
    let text = format!(
        r#"{{"schema": "sipcheck.run/1", "scenario": "{scenario}", "verdict": "passed",
        "calls": {{"started": 10, "passed": 10, "failed": 0, "failed_ratio": {failed},
                   "not_started": 0, "by_role": {{}}}},
        "metrics": {{
          "invite_to_200": {{"count": 10, "min_ms": 1.0, "p50_ms": 2.0, "p90_ms": 3.0,
                             "p99_ms": {p99}, "p999_ms": {p99}, "max_ms": {p99},
                             "mean_ms": 2.0, "histogram": "HISTFAAA"}},
          "bye_rtt": {{"count": 0, "min_ms": null, "p50_ms": null, "p90_ms": null,
                       "p99_ms": null, "p999_ms": null, "max_ms": null, "mean_ms": null,
                       "histogram": "HISTFAAA"}}
        }},
        "quality": {{"mos": {{"count": 10, "min": 4.1, "p5": 4.1, "p50": 4.3, "max": 4.4,
                              "histogram": ""}}, "audio_gaps": 2}},
        "rtp": {{"packets_lost": 0, "loss_ratio": {loss}}},
        "audio": {{"checked": 10, "verified": 10, "verified_ratio": 1.0}}
        }}"#
    );
    serde_saphyr::from_str(&text).expect("valid JSON")
}

fn figures(doc: &Node) -> Figures {
    Figures::of(doc).expect("a summary")
}

fn gates(list: &[&str]) -> Vec<Gate> {
    list.iter().map(|g| Gate::parse(g).expect(g)).collect()
}

#[test]
fn a_summary_reads_into_figures_named_like_thresholds() {
    let f = figures(&summary("s", Some(250.0), Some(0.0), 0.01));
    let value = |n: &str| f.figures.get(n).unwrap_or_else(|| panic!("{n}: {f:?}"));
    assert_eq!(value("invite_to_200.p99").value, Some(250.0));
    assert_eq!(value("invite_to_200.p99").unit, Unit::Ms);
    assert_eq!(value("invite_to_200.p99.9").value, Some(250.0));
    assert_eq!(value("invite_to_200.count").unit, Unit::Count);
    assert_eq!(value("bye_rtt.p50").value, None);
    assert_eq!(value("calls.failed").unit, Unit::Fraction);
    assert_eq!(value("calls.failed.count").value, Some(0.0));
    assert_eq!(value("calls.started").value, Some(10.0));
    assert_eq!(value("rtp.loss").value, Some(0.01));
    assert_eq!(value("audio.verified").value, Some(1.0));
    // A metric in its own unit (no `_ms`) is read as it is.
    assert_eq!(value("mos.p50").value, Some(4.3));
    assert_eq!(value("mos.p50").unit, Unit::Plain);
    assert_eq!(value("mos.p5").value, Some(4.1));
    assert_eq!(value("audio.gaps").value, Some(2.0));
    assert_eq!(value("audio.gaps").unit, Unit::Count);
    assert!(!f.figures.contains_key("invite_to_200.histogram"));
}

#[test]
fn a_document_that_is_not_a_summary_is_refused() {
    let other: Node = serde_saphyr::from_str(r#"{"verdict": "pass", "status": 200}"#).unwrap();
    assert_eq!(
        Figures::of(&other),
        Err(CompareError::NotASummary {
            found: "missing".into()
        })
    );
    let later: Node = serde_saphyr::from_str(r#"{"schema": "sipcheck.run/2"}"#).unwrap();
    assert!(matches!(
        Figures::of(&later),
        Err(CompareError::NotASummary { .. })
    ));
    let broken: Node =
        serde_saphyr::from_str(r#"{"schema": "sipcheck.run/1", "scenario": "s"}"#).unwrap();
    assert_eq!(
        Figures::of(&broken),
        Err(CompareError::Malformed("verdict"))
    );
}

#[test]
fn tolerances_parse_in_percent_points_and_time() {
    assert_eq!("10%".parse(), Ok(Tolerance::Relative(0.1)));
    assert_eq!("0.5pt".parse(), Ok(Tolerance::Points(0.005)));
    assert_eq!("20ms".parse(), Ok(Tolerance::Millis(20.0)));
    assert_eq!("1.5s".parse(), Ok(Tolerance::Millis(1500.0)));
    assert_eq!("2".parse(), Ok(Tolerance::Absolute(2.0)));
    for bad in ["", "-1%", "ten%", "NaN", "5 parsecs"] {
        assert!(bad.parse::<Tolerance>().is_err(), "{bad}");
    }
    let g = Gate::parse("invite_to_180.p99=10%").unwrap();
    assert_eq!(g.name, "invite_to_ringing.p99", "aliases resolve");
    assert_eq!(
        Gate::parse("setup.p99=5%").unwrap().name,
        "invite_to_200.p99"
    );
    assert!(Gate::parse("p99=10%").unwrap().every_timing);
    assert!(Gate::parse("p99.9=10%").unwrap().every_timing);
    assert!(!Gate::parse("rtp.loss=1pt").unwrap().every_timing);
    assert!(Gate::parse("p99").is_err());
    assert!(Gate::parse("=1%").is_err());
}

#[test]
fn a_summary_compared_with_itself_is_within_every_tolerance() {
    let f = figures(&summary("s", Some(250.0), Some(0.0), 0.01));
    let c = compare(
        &f,
        &f,
        &gates(&["p99=0%", "calls.failed=0pt", "rtp.loss=0pt", "mos.p50=0"]),
    )
    .unwrap();
    assert!(c.passed(), "{c:?}");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let row = c
        .rows
        .iter()
        .find(|r| r.name == "invite_to_200.p99")
        .unwrap();
    assert_eq!(row.judgement, Judgement::Within);
    assert_eq!(row.change, Some(0.0));
    // A timing neither run measured is not judged by a statistic of every timing.
    let bye = c.rows.iter().find(|r| r.name == "bye_rtt.p99").unwrap();
    assert_eq!(bye.judgement, Judgement::Unchecked);
}

#[test]
fn a_slower_setup_beyond_its_tolerance_is_named_and_one_within_is_not() {
    let base = figures(&summary("s", Some(200.0), Some(0.0), 0.0));
    let slow = figures(&summary("s", Some(260.0), Some(0.0), 0.0));
    let c = compare(&base, &slow, &gates(&["invite_to_200.p99=10%"])).unwrap();
    assert_eq!(c.regressions, ["invite_to_200.p99"]);
    let row = c
        .rows
        .iter()
        .find(|r| r.name == "invite_to_200.p99")
        .unwrap();
    assert_eq!(row.change, Some(60.0));
    assert_eq!(row.change_ratio, Some(0.3));
    assert_eq!(row.judgement, Judgement::Regressed);
    assert_eq!(row.tolerance.as_deref(), Some("10%"));

    let c = compare(&base, &slow, &gates(&["invite_to_200.p99=30%"])).unwrap();
    assert!(c.passed(), "{:?}", c.regressions);
    let c = compare(&base, &slow, &gates(&["setup.p99=59ms"])).unwrap();
    assert_eq!(c.regressions, ["invite_to_200.p99"]);
    // Faster is never a regression.
    let c = compare(&slow, &base, &gates(&["p99=0%"])).unwrap();
    assert!(c.passed(), "{:?}", c.regressions);
    // A statistic of every timing, overridden for one.
    let c = compare(&base, &slow, &gates(&["p99=10%", "invite_to_200.p99=50%"])).unwrap();
    assert!(c.passed(), "{:?}", c.regressions);
    let c = compare(&base, &slow, &gates(&["invite_to_200.p99=50%", "p99=10%"])).unwrap();
    assert!(
        c.passed(),
        "a named gate wins in any order: {:?}",
        c.regressions
    );
}

#[test]
fn ratios_regress_in_points_and_a_lower_share_verified_is_worse() {
    let base = figures(&summary("s", Some(200.0), Some(0.0), 0.001));
    let lossy = figures(&summary("s", Some(200.0), Some(0.02), 0.008));
    let c = compare(
        &base,
        &lossy,
        &gates(&["rtp.loss=0.5pt", "calls.failed=1pt"]),
    )
    .unwrap();
    assert_eq!(c.regressions, ["calls.failed", "rtp.loss"]);
    let c = compare(
        &base,
        &lossy,
        &gates(&["rtp.loss=0.8pt", "calls.failed=2pt"]),
    )
    .unwrap();
    assert!(c.passed(), "{:?}", c.regressions);
    // audio.verified falling is worse; rising is not.
    let mut worse = base.clone();
    worse.figures.get_mut("audio.verified").unwrap().value = Some(0.9);
    let c = compare(&base, &worse, &gates(&["audio.verified=5pt"])).unwrap();
    assert_eq!(c.regressions, ["audio.verified"]);
    let c = compare(&worse, &base, &gates(&["audio.verified=0pt"])).unwrap();
    assert!(c.passed());
}

#[test]
fn a_figure_with_no_data_in_the_new_run_is_not_within_its_tolerance() {
    let base = figures(&summary("s", Some(200.0), Some(0.0), 0.0));
    let empty = figures(&summary("s", None, None, 0.0));
    let c = compare(&base, &empty, &gates(&["p99=10%", "calls.failed=0pt"])).unwrap();
    assert_eq!(c.regressions, ["calls.failed", "invite_to_200.p99"]);
    let row = c.rows.iter().find(|r| r.name == "calls.failed").unwrap();
    assert_eq!(row.judgement, Judgement::NoData);
    // Named, a figure neither run measured does not pass either.
    let c = compare(&base, &base, &gates(&["bye_rtt.p99=10%"])).unwrap();
    assert_eq!(c.regressions, ["bye_rtt.p99"]);
}

#[test]
fn an_unknown_metric_or_a_tolerance_in_the_wrong_unit_is_refused_with_the_valid_names() {
    let f = figures(&summary("s", Some(200.0), Some(0.0), 0.0));
    let Err(CompareError::UnknownMetric {
        name,
        suggestion,
        valid,
    }) = compare(&f, &f, &gates(&["invite_to_20.p99=10%"]))
    else {
        panic!("an unknown metric accepted")
    };
    assert_eq!(name, "invite_to_20.p99");
    assert_eq!(suggestion.as_deref(), Some("invite_to_200.p99"));
    assert!(valid.contains(&"rtp.loss".to_owned()), "{valid:?}");
    let e = compare(&f, &f, &gates(&["invite_to_20.p99=10%"])).unwrap_err();
    assert!(e.to_string().contains("valid names: "), "{e}");

    let e = compare(&f, &f, &gates(&["invite_to_200.p99=1pt"])).unwrap_err();
    assert!(matches!(e, CompareError::UnitMismatch { .. }), "{e}");
    let e = compare(&f, &f, &gates(&["rtp.loss=5ms"])).unwrap_err();
    assert!(matches!(e, CompareError::UnitMismatch { .. }), "{e}");
}

#[test]
fn different_scenarios_and_a_failed_run_are_warned_about_not_refused() {
    let base = figures(&summary("a", Some(200.0), Some(0.0), 0.0));
    let mut new = figures(&summary("b", Some(200.0), Some(0.0), 0.0));
    new.verdict = "calls_failed".into();
    let c = compare(&base, &new, &[]).unwrap();
    assert!(c.passed());
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("different scenarios"),
        "{:?}",
        c.warnings
    );
    assert!(c.warnings[1].contains("calls_failed"), "{:?}", c.warnings);
}
