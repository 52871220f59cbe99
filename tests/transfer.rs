//! Blind transfer (RFC 5589) against a real peer: SIPp as the transferee
//! (`tests/peers/uas_transferee.xml`), sipcheck the transferor (`transfer` step).

mod support;

use support::describe_output;
use support::process::RunDir;
use support::reports::{assert_schema, run_scenario as run, Reports};
use support::sipp::Sipp;

use std::time::Duration;

/// SIPp answering, taking the REFER and notifying `final_status` as the new call's status.
fn transferee(final_status: &str) -> (Sipp, RunDir) {
    let dir = RunDir::new("sipp-transfer").expect("a run directory");
    let text = std::fs::read_to_string(Sipp::peer_scenario("uas_transferee.xml"))
        .expect("the scenario")
        .replace("FINAL_STATUS", final_status);
    let scenario = dir.join("uas_transferee.xml");
    std::fs::write(&scenario, text).expect("write the scenario");
    let sipp = Sipp::start_uas(&scenario, &["-mi", "127.0.0.1", "-m", "1"]).expect("start sipp");
    (sipp, dir)
}

fn run_against(sipp: &Sipp) -> (Option<i32>, serde_json::Value, String) {
    let addr = format!("127.0.0.1:{}", sipp.port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-transfer.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let v = reports.summary();
    assert_schema(&v);
    let shown = format!(
        "{}\n{v}\n{}\n{}",
        describe_output(&out),
        sipp.log(),
        sipp.messages()
    );
    (out.status.code(), v, shown)
}

/// The REFER is answered 202 and the NOTIFYs are answered 200; the final one says
/// `SIP/2.0 200 OK`: the transfer step passes, and the transferor then sends BYE (SIPp's
/// scenario, which checks Refer-To and Referred-By, ends only with it).
#[test]
fn a_transfer_notified_200_by_sipp_passes_and_the_transferor_hangs_up() {
    let (sipp, _dir) = transferee("200 OK");
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(v["calls"]["passed"], 1, "{shown}");
    assert_eq!(v["failures"], serde_json::json!({}), "{shown}");
    assert!(
        !sipp.errors().contains("Failed") && !sipp.errors().contains("failed"),
        "{shown}"
    );
}

/// The final NOTIFY says `SIP/2.0 503 Service Unavailable`: the step fails as
/// `transfer_failed_503`, naming the status.
#[test]
fn a_transfer_notified_503_by_sipp_fails_naming_the_status() {
    let (sipp, _dir) = transferee("503 Service Unavailable");
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["transfer_failed_503"], 1, "{shown}");
    assert!(
        shown.contains("transfer_failed_503: 503 Service Unavailable: the final status"),
        "{shown}"
    );
}

/// The `baresip-transfer` scenario calling baresip at `baresip_uri`: the run's output and
/// summary (null when the scenario did not load).
fn run_transfer(baresip_uri: &str) -> (std::process::Output, serde_json::Value) {
    let target = format!("127.0.0.1:{}", support::free_port());
    let transferor = format!("127.0.0.1:{}", support::free_port());
    // The scenario expects baresip's default sine.
    assert_eq!(support::baresip::DEFAULT_TONE_HZ, 600);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/baresip-transfer.yaml",
        &[],
        &[
            ("BARESIP_URI", baresip_uri),
            ("TARGET_LISTEN", target.as_str()),
            ("TRANSFEROR_LISTEN", transferor.as_str()),
        ],
        &reports,
    );
    let v = if out.status.code() == Some(2) {
        serde_json::Value::Null
    } else {
        reports.summary()
    };
    (out, v)
}

fn assert_transferred(out: &std::process::Output, v: &serde_json::Value, shown: &str) {
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["calls"]["by_role"]["transferor"]["passed"], 1, "{shown}");
    assert_eq!(v["calls"]["by_role"]["target"]["passed"], 1, "{shown}");
    assert_eq!(v["audio"]["verified"], 2, "{shown}");
}

/// Three parties, a real transferee: sipcheck calls baresip and transfers it to a second
/// sipcheck role; baresip takes the REFER, calls the target, and notifies the outcome. The
/// transfer step passes on baresip's NOTIFY of the 200, the transferor then hangs up, and the
/// target hears baresip's sine on the new call.
#[test]
fn baresip_transferred_calls_the_target_which_hears_it() {
    let baresip = support::baresip::Baresip::start(support::baresip::BaresipOptions::default())
        .expect("start baresip");
    let uri = format!("sip:baresip@127.0.0.1:{}", baresip.sip_port);
    let (out, v) = run_transfer(&uri);
    let shown = format!("{}\n{v}\n{}", describe_output(&out), baresip.log());
    assert_transferred(&out, &v, &shown);
    assert!(baresip.log().contains("REFER sip:"), "{shown}");
}

/// The same through Kamailio: baresip registered there and called through it; the REFER,
/// the NOTIFYs and the BYEs follow Kamailio's Record-Route (the REFER baresip receives has
/// Kamailio's Via).
#[test]
fn baresip_transferred_through_kamailio_calls_the_target_which_hears_it() {
    use support::baresip::{Baresip, BaresipOptions, BaresipRegistrar};
    use support::kamailio::{Kamailio, KamailioOptions};
    let kam = Kamailio::start_with(&KamailioOptions {
        no_proxy_auth: true,
        ..KamailioOptions::default()
    })
    .expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let user = "2131";
    let baresip = Baresip::start(BaresipOptions {
        registrar: Some(BaresipRegistrar {
            user: user.to_owned(),
            server: server.clone(),
            password: Kamailio::password_for(user),
        }),
        ..BaresipOptions::default()
    })
    .expect("start baresip");
    let registered =
        support::process::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            kam.bindings(user).len() == 1
        });
    assert!(registered, "baresip did not register\n{}", baresip.log());
    let (out, v) = run_transfer(&format!("sip:{user}@{server}"));
    let log = baresip.log();
    let shown = format!("{}\n{v}\n{log}\n{}", describe_output(&out), kam.log());
    assert_transferred(&out, &v, &shown);
    let refer = log
        .split("REFER sip:")
        .nth(1)
        .expect("baresip received a REFER");
    let refer = refer.split("\n\n").next().unwrap_or_default();
    assert!(
        refer.contains(&format!("Via: SIP/2.0/UDP {server}")),
        "the REFER came through Kamailio: {refer}\n{shown}"
    );
}
