//! Blind transfer (RFC 5589) against a real peer: SIPp as the transferee
//! (`tests/peers/uas_transferee.xml`), sipcheck the transferor (`transfer` step).

mod support;

use support::process::RunDir;
use support::reports::{run_scenario as run, run_scenario_against, Reports};
use support::sipp::Sipp;
use support::{PeerLog, Ran};

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

fn run_against(sipp: &Sipp) -> Ran {
    let addr = format!("127.0.0.1:{}", sipp.port);
    run_scenario_against(
        "tests/peers/scenarios/sipp-transfer.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &Reports::new(),
        &[sipp],
    )
}

/// The REFER is answered 202 and the NOTIFYs are answered 200; the final one says
/// `SIP/2.0 200 OK`: the transfer step passes, and the transferor then sends BYE (SIPp's
/// scenario, which checks Refer-To and Referred-By, ends only with it).
#[test]
fn a_transfer_notified_200_by_sipp_passes_and_the_transferor_hangs_up() {
    let (sipp, _dir) = transferee("200 OK");
    let ran = run_against(&sipp);
    let (v, shown) = (&ran.summary, &ran.shown);
    ran.assert_exit(0);
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
    let ran = run_against(&sipp);
    let (v, shown) = (&ran.summary, &ran.shown);
    ran.assert_exit(1);
    assert_eq!(v["failures"]["transfer_failed_503"], 1, "{shown}");
    assert!(
        shown.contains("transfer_failed_503: 503 Service Unavailable: the final status"),
        "{shown}"
    );
}

/// The `baresip-transfer` scenario calling baresip at `baresip_uri`, against `peers`.
fn run_transfer(baresip_uri: &str, peers: &[&dyn PeerLog]) -> Ran {
    let target = format!("127.0.0.1:{}", support::free_port());
    let transferor = format!("127.0.0.1:{}", support::free_port());
    // The scenario expects baresip's default sine.
    assert_eq!(support::baresip::DEFAULT_TONE_HZ, 600);
    run_scenario_against(
        "tests/peers/scenarios/baresip-transfer.yaml",
        &[],
        &[
            ("BARESIP_URI", baresip_uri),
            ("TARGET_LISTEN", target.as_str()),
            ("TRANSFEROR_LISTEN", transferor.as_str()),
        ],
        &Reports::new(),
        peers,
    )
}

fn assert_transferred(ran: &Ran) {
    let (v, shown) = (&ran.summary, &ran.shown);
    ran.assert_exit(0);
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
    let ran = run_transfer(&uri, &[&baresip]);
    assert_transferred(&ran);
    assert!(baresip.log().contains("REFER sip:"), "{}", ran.shown);
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
    let ran = run_transfer(&format!("sip:{user}@{server}"), &[&baresip, &kam]);
    assert_transferred(&ran);
    let (log, shown) = (baresip.log(), &ran.shown);
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

/// Every party in sipcheck, registered behind Kamailio: `sipcheck run SCENARIO -v` (in
/// `tests/peers/scenarios/`), which must pass with its transferor, transferee and target each
/// passing and `audio` tones checked, each heard. The run, and its `-v` trace.
fn transfer_through_kamailio(scenario: &str, audio: u64) -> (Ran, String) {
    use support::kamailio::{Kamailio, KamailioOptions};
    let kam = Kamailio::start_with(&KamailioOptions {
        no_proxy_auth: true,
        ..KamailioOptions::default()
    })
    .expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let ran = run_scenario_against(
        format!("tests/peers/scenarios/{scenario}"),
        &["-v"],
        &[("SIP_SERVER", server.as_str())],
        &Reports::new(),
        &[&kam],
    );
    let (v, shown) = (&ran.summary, &ran.shown);
    ran.assert_exit(0);
    for role in ["transferor", "transferee", "target"] {
        assert_eq!(v["calls"]["by_role"][role]["passed"], 1, "{role}: {shown}");
    }
    assert_eq!(v["audio"]["checked"], audio, "{shown}");
    assert_eq!(v["audio"]["verified"], audio, "{shown}");
    let trace = String::from_utf8_lossy(&ran.out.stderr).into_owned();
    (ran, trace)
}

/// The messages a `-v` trace shows sent, each from its first line.
fn sent_messages(trace: &str) -> Vec<&str> {
    trace
        .split("----- ")
        .filter(|m| m.lines().next().is_some_and(|l| l.contains(" sent ")))
        .filter_map(|m| m.split_once('\n').map(|(_, message)| message))
        .collect()
}

/// Every party in sipcheck, registered behind Kamailio: the transferor REFERs the transferee
/// to the target; the transferee (`expect: transferred`) calls the target through Kamailio
/// with the REFER's Referred-By, notifies `100 Trying` then `200 OK`, and hears the target's
/// tone on the new call while the target hears its own. The transferor then hangs up.
#[test]
fn a_sipcheck_transferee_through_kamailio_follows_the_refer_and_hears_the_target() {
    // The transferee's tone and the target's, each heard by the other on the new call.
    let (ran, trace) = transfer_through_kamailio("kamailio-transfer.yaml", 2);
    let shown = &ran.shown;
    // The messages sipcheck sent (the transferee's NOTIFYs are the only NOTIFYs sent; the
    // transferor receives them).
    let sent = sent_messages(&trace);
    let notified: Vec<&str> = sent
        .iter()
        .filter(|m| m.starts_with("NOTIFY "))
        .filter_map(|m| m.lines().rev().find(|l| !l.trim().is_empty()))
        .map(str::trim)
        .collect();
    assert_eq!(
        notified,
        ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"],
        "{shown}"
    );
    let invite = sent
        .iter()
        .find(|m| m.starts_with("INVITE sip:3501@sipcheck.test"))
        .unwrap_or_else(|| panic!("no INVITE to the target: {shown}"));
    assert!(
        invite.contains("Referred-By: <sip:3502@sipcheck.test>"),
        "{invite}\n{shown}"
    );
    assert!(!invite.contains("Replaces"), "{invite}");
}

/// A real transferor: sipcheck calls baresip and hears its sine; baresip is then told to
/// transfer the call (`/transfer`) to a second sipcheck role. The transferee follows the
/// REFER, calls the target, notifies baresip of the 200, and the transferee and the target
/// hear each other's tones on the new call; baresip's original call ends.
#[test]
fn a_sipcheck_transferee_follows_baresips_transfer_and_hears_the_target() {
    let baresip = support::baresip::Baresip::start(support::baresip::BaresipOptions::default())
        .expect("start baresip");
    let uri = format!("sip:baresip@127.0.0.1:{}", baresip.sip_port);
    let target = format!("127.0.0.1:{}", support::free_port());
    let transferee = format!("127.0.0.1:{}", support::free_port());
    let reports = Reports::new();
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| {
            run(
                "tests/peers/scenarios/baresip-transferor.yaml",
                &[],
                &[
                    ("BARESIP_URI", uri.as_str()),
                    ("TARGET_LISTEN", target.as_str()),
                    ("TRANSFEREE_LISTEN", transferee.as_str()),
                ],
                &reports,
            )
        });
        // Once the call is up baresip transfers it: the transferee keeps the REFER until
        // its `expect: transferred` step, hearing baresip's sine meanwhile (baresip sends it
        // until it ends the call, on the final NOTIFY).
        let up = support::process::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || baresip.calls_established() == 1,
        );
        assert!(up, "no call reached baresip\n{}", baresip.log());
        let reply = baresip
            .command(&format!("/transfer sip:7300@{target}"))
            .expect("cons /transfer");
        let out = run.join().expect("the run");
        (out, reply)
    });
    let (out, reply) = out;
    let ran = Ran::new(out, reports.summary_if_written(), &[&baresip]);
    let (v, log) = (&ran.summary, baresip.log());
    let shown = format!("{}\n{reply}", ran.shown);
    ran.assert_exit(0);
    assert_eq!(v["calls"]["by_role"]["transferee"]["passed"], 1, "{shown}");
    assert_eq!(v["calls"]["by_role"]["target"]["passed"], 1, "{shown}");
    // baresip's sine before the transfer, then each side's tone on the new call.
    assert_eq!(v["audio"]["checked"], 3, "{shown}");
    assert_eq!(v["audio"]["verified"], 3, "{shown}");
    // baresip's trace: the REFER it sent, then our final NOTIFY (terminated, a sipfrag of
    // 200), then its BYE of the original call (RFC 5589 §6).
    let refer = log.find("REFER sip:7301@").expect("baresip sent a REFER");
    let last = log[refer..]
        .find("Subscription-State: terminated")
        .map(|at| refer + at)
        .unwrap_or_else(|| panic!("no final NOTIFY reached baresip: {shown}"));
    let sipfrag = log[last..]
        .lines()
        .skip(1)
        .find(|l| l.starts_with("SIP/2.0 "))
        .unwrap_or_default();
    assert_eq!(sipfrag.trim(), "SIP/2.0 200 OK", "{shown}");
    assert!(log[last..].contains("BYE sip:7301@"), "{shown}");
}

/// Attended transfer (RFC 5589 §7) with every party in sipcheck, registered behind
/// Kamailio: the transferor holds the transferee, consults the target (hearing its tone),
/// and REFERs the transferee with `Refer-To: <sip:3601@sipcheck.test?Replaces=...>` naming
/// the consultation; the transferee's INVITE carries the Replaces unescaped, the target
/// answers it in place of the consultation (ending that with BYE) and hears the
/// transferee's tone. The transferor ends the original call once notified 200.
#[test]
fn an_attended_transfer_through_kamailio_replaces_the_consultation_and_the_target_hears_the_transferee(
) {
    // The target's tone heard by the transferor on the consultation and by the transferee
    // on the new call; the transferee's heard by the target.
    let (ran, trace) = transfer_through_kamailio("kamailio-attended-transfer.yaml", 3);
    let shown = &ran.shown;
    let sent = sent_messages(&trace);
    let header = |m: &str, name: &str| -> String {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    // The consultation: the transferor's INVITE to the target; the target's 200 names its tag.
    let invites: Vec<&&str> = sent
        .iter()
        .filter(|m| m.starts_with("INVITE sip:3601@sipcheck.test"))
        .collect();
    assert_eq!(
        invites.len(),
        2,
        "the consultation and the transferee's: {shown}"
    );
    let consult = invites[0];
    let consult_id = header(consult, "Call-ID");
    let from_tag = header(consult, "From")
        .split(";tag=")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let answer = sent
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && header(m, "Call-ID") == consult_id)
        .unwrap_or_else(|| panic!("no 200 to the consultation: {shown}"));
    let to_tag = header(answer, "To")
        .split(";tag=")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let refer = sent
        .iter()
        .find(|m| m.starts_with("REFER "))
        .unwrap_or_else(|| panic!("no REFER: {shown}"));
    assert_eq!(
        header(refer, "Refer-To"),
        format!(
            "<sip:3601@sipcheck.test?Replaces={}%3Bto-tag%3D{to_tag}%3Bfrom-tag%3D{from_tag}>",
            consult_id.replace('@', "%40")
        ),
        "{shown}"
    );
    let replacing = invites[1];
    assert_eq!(
        header(replacing, "Replaces"),
        format!("{consult_id};to-tag={to_tag};from-tag={from_tag}"),
        "{shown}"
    );
    assert!(
        replacing.contains("Referred-By: <sip:3602@sipcheck.test>"),
        "{replacing}"
    );
    // The consultation was ended by a BYE (the target's, replacing it).
    assert!(
        sent.iter()
            .any(|m| m.starts_with("BYE ") && header(m, "Call-ID") == consult_id),
        "{shown}"
    );
}

/// Attended transfer with baresip 1.0 as the transferee, as it is: it accepts the REFER
/// whose Refer-To carries `?Replaces=` (202, NOTIFY `100 Trying`), but calls the Refer-To URI
/// with its headers left in the Request-URI and To (RFC 3261 §19.1.1 allows none there) and
/// sends no Replaces header (RFC 3891 §6). sipcheck's target drops that INVITE as malformed,
/// its consultation is never replaced and its `expect: replaced` fails as `not_replaced`;
/// the transferor gets no final NOTIFY in time and fails as `transfer_timeout`. Never a pass.
#[test]
fn baresip_as_an_attended_transferee_calls_the_uri_with_its_headers_and_no_replaces() {
    let baresip = support::baresip::Baresip::start(support::baresip::BaresipOptions::default())
        .expect("start baresip");
    let uri = format!("sip:baresip@127.0.0.1:{}", baresip.sip_port);
    let target = format!("127.0.0.1:{}", support::free_port());
    let transferor = format!("127.0.0.1:{}", support::free_port());
    let ran = run_scenario_against(
        "tests/peers/scenarios/baresip-attended-transfer.yaml",
        &[],
        &[
            ("BARESIP_URI", uri.as_str()),
            ("TARGET_LISTEN", target.as_str()),
            ("TRANSFEROR_LISTEN", transferor.as_str()),
        ],
        &Reports::new(),
        &[&baresip],
    );
    let (v, shown, log) = (&ran.summary, &ran.shown, baresip.log());
    ran.assert_exit(1);
    assert_eq!(v["failures"]["not_replaced"], 1, "{shown}");
    assert_eq!(v["failures"]["transfer_timeout"], 1, "{shown}");
    // What baresip sent the target: the URI's headers in the Request-URI, no Replaces.
    let invite = log
        .split(&format!("INVITE sip:7300@{target}"))
        .nth(1)
        .unwrap_or_else(|| panic!("baresip did not call the target: {shown}"));
    let (request_uri, rest) = invite.split_once('\n').unwrap_or_default();
    assert!(
        request_uri.starts_with("?Replaces="),
        "{request_uri}\n{shown}"
    );
    let headers = rest.split("\n\n").next().unwrap_or_default();
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("replaces:")),
        "{headers}"
    );
}

/// The attended transfer scenario with SIPp as its transferee or target, sipcheck the other
/// parties.
fn run_attended(sipp: &Sipp, sipp_is_target: bool) -> Ran {
    let sipp_addr = format!("127.0.0.1:{}", sipp.port);
    let target_listen = format!("127.0.0.1:{}", support::free_port());
    let transferee_listen = format!("127.0.0.1:{}", support::free_port());
    let (called, target) = if sipp_is_target {
        (transferee_listen.clone(), sipp_addr)
    } else {
        (sipp_addr, target_listen.clone())
    };
    run_scenario_against(
        "tests/peers/scenarios/sipp-attended-transfer.yaml",
        &[],
        &[
            ("SIPP_ADDR", called.as_str()),
            ("TARGET_ADDR", target.as_str()),
            ("TARGET_LISTEN", target_listen.as_str()),
            ("TRANSFEREE_LISTEN", transferee_listen.as_str()),
        ],
        &Reports::new(),
        &[sipp],
    )
}

/// SIPp the transferee of `scenario` (FINAL_STATUS its final NOTIFY), its Refer-To check
/// made an attended transfer's: the target's URI with an escaped Replaces.
fn attended_transferee(scenario: &str, final_status: &str) -> (Sipp, RunDir) {
    let dir = RunDir::new("sipp-attended").expect("a run directory");
    let text = std::fs::read_to_string(Sipp::peer_scenario(scenario))
        .expect("the scenario")
        .replace("FINAL_STATUS", final_status)
        .replace(
            r#"regexp="sip:3001@127.0.0.1""#,
            r#"regexp="sip:3001@127\.0\.0\.1:[0-9]+\?Replaces=[^;>]+%3Bto-tag%3D[^;>%]+%3Bfrom-tag%3D[^;>%]+>""#,
        );
    let path = dir.join(scenario);
    std::fs::write(&path, text).expect("write the scenario");
    let sipp = Sipp::start_uas(&path, &["-mi", "127.0.0.1", "-m", "1"]).expect("start sipp");
    (sipp, dir)
}

fn assert_sipp_content(sipp: &Sipp, shown: &str) {
    // SIPp's checks (the Refer-To's Replaces among them) held.
    assert!(
        !sipp.errors().contains("Failed") && !sipp.errors().contains("failed"),
        "{shown}"
    );
}

/// SIPp the transferee notifying `SIP/2.0 200 OK`: the transferor, having consulted
/// sipcheck's target, passes and ends both legs; the target's consultation ends with its BYE.
#[test]
fn an_attended_transfer_to_a_sipp_transferee_notified_200_passes() {
    let (sipp, _dir) = attended_transferee("uas_transferee.xml", "200 OK");
    let r = run_attended(&sipp, false);
    assert_eq!(r.code(), Some(0), "{}", r.shown);
    assert_eq!(
        r.summary["calls"]["by_role"]["caller"]["passed"], 1,
        "{}",
        r.shown
    );
    assert_eq!(
        r.summary["calls"]["by_role"]["target"]["passed"], 1,
        "{}",
        r.shown
    );
    assert_sipp_content(&sipp, &r.shown);
}

/// SIPp the transferee notifying `SIP/2.0 503 Service Unavailable`: `transfer_failed_503`.
#[test]
fn an_attended_transfer_notified_503_by_sipp_fails_as_transfer_failed_503() {
    let (sipp, _dir) = attended_transferee("uas_transferee.xml", "503 Service Unavailable");
    let r = run_attended(&sipp, false);
    assert_eq!(r.code(), Some(1), "{}", r.shown);
    assert_eq!(
        r.summary["failures"]["transfer_failed_503"], 1,
        "{}",
        r.shown
    );
    assert_sipp_content(&sipp, &r.shown);
}

/// SIPp the transferee refusing the REFER 603: `sip_603`, the consultation ended.
#[test]
fn an_attended_transfer_whose_refer_sipp_declines_603_fails_as_sip_603() {
    let (sipp, _dir) = attended_transferee("uas_refer_declined.xml", "");
    let r = run_attended(&sipp, false);
    assert_eq!(r.code(), Some(1), "{}", r.shown);
    assert_eq!(r.summary["failures"]["sip_603"], 1, "{}", r.shown);
    assert!(
        r.shown.contains("the REFER was answered 603"),
        "{}",
        r.shown
    );
    // The target's consultation was ended by the transferor (its `wait_for: bye` passes).
    assert_eq!(
        r.summary["calls"]["by_role"]["target"]["passed"], 1,
        "{}",
        r.shown
    );
    assert_sipp_content(&sipp, &r.shown);
}

/// SIPp the target: it answers the consultation and refuses the transferee's INVITE with
/// Replaces 481. The sipcheck transferee notifies 481 and fails as
/// `transfer_target_failed_481`; the transferor as `transfer_failed_481`.
#[test]
fn a_sipp_target_answering_the_invite_with_replaces_481_fails_both_sides_naming_it() {
    let sipp = Sipp::start_uas(
        Sipp::peer_scenario("uas_replaces_481.xml"),
        &["-mi", "127.0.0.1", "-m", "2"],
    )
    .expect("start sipp");
    let r = run_attended(&sipp, true);
    assert_eq!(r.code(), Some(1), "{}", r.shown);
    assert_eq!(
        r.summary["failures"]["transfer_failed_481"], 1,
        "{}",
        r.shown
    );
    assert_eq!(
        r.summary["failures"]["transfer_target_failed_481"], 1,
        "{}",
        r.shown
    );
    // SIPp saw the Replaces (its 481 branch ran).
    assert!(
        sipp.received()
            .iter()
            .any(|m| m.starts_with("INVITE ") && m.contains("\nReplaces: ")),
        "{}",
        r.shown
    );
}
