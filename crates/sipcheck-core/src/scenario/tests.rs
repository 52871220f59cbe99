//! Loading whole scenarios: the shipped examples, and broken ones with their exact errors.

use std::time::Duration;

use super::model::{
    End, Expectation, HoldMode, Load, PlayItem, Route, SignatureFrom, Step, WaitEvent,
};
use super::plan::LoadPlan;
use super::text::Fill;
use super::{load, load_with_overrides, Scenario, ScenarioError};
use crate::sip::transport::Transport;

const USERS_CSV: &str = include_str!("../../../../fixtures/users.csv");

const SHIPPED: &[(&str, &str)] = &[
    (
        "scenarios/selftest.yaml",
        include_str!("../../../../scenarios/selftest.yaml"),
    ),
    (
        "scenarios/pbx-regression.yaml",
        include_str!("../../../../scenarios/pbx-regression.yaml"),
    ),
    (
        "scenarios/load-200.yaml",
        include_str!("../../../../scenarios/load-200.yaml"),
    ),
    (
        "scenarios/cancel-busy-noanswer.yaml",
        include_str!("../../../../scenarios/cancel-busy-noanswer.yaml"),
    ),
    (
        "scenarios/dtmf-ivr.yaml",
        include_str!("../../../../scenarios/dtmf-ivr.yaml"),
    ),
];

fn no_env(_: &str) -> Option<String> {
    None
}

/// The files a test scenario may name.
fn files(path: &str) -> Result<String, String> {
    match path {
        "fixtures/users.csv" => Ok(USERS_CSV.to_owned()),
        "fixtures/prompt-8k.wav" => Ok(String::new()),
        _ => Err("no such file".to_owned()),
    }
}

fn shipped(name: &str) -> Scenario {
    let (file, text) = SHIPPED
        .iter()
        .find(|(f, _)| f.ends_with(name))
        .expect("a shipped scenario");
    match load(file, text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    }
}

fn errors(text: &str) -> Vec<ScenarioError> {
    errors_with(text, &no_env, &files)
}

fn errors_with(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Vec<ScenarioError> {
    match load("scenarios/x.yaml", text, env, files) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e,
    }
}

/// `line:col message` of each error, for compact assertions.
fn brief(errors: &[ScenarioError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.col, e.message))
        .collect()
}

/// A valid scenario to break in small ways.
const BASE: &str = "\
name: t
target: { server: 127.0.0.1:5060, domain: pbx.test }
accounts:
  range: { from: 1000, count: 4 }
  password: pw{user}
roles:
  callee:
    accounts: 1000..1001
    steps:
      - register
      - answer: { ring: 500ms }
      - wait_for: bye
  caller:
    accounts: 1002..1003
    steps:
      - register
      - call: { to: \"sip:{peer}@{domain}\", peer: callee }
      - hangup: { after: 1s }
";

#[test]
fn every_shipped_scenario_loads() {
    for (file, text) in SHIPPED {
        if let Err(errors) = load(file, text, &no_env, &files) {
            panic!("{file}:\n{}", super::report(&errors));
        }
    }
}

#[test]
fn the_base_scenario_loads() {
    let s = load("x.yaml", BASE, &no_env, &files).unwrap();
    assert_eq!(s.roles.len(), 2);
}

#[test]
fn reports_name_the_call_records_and_junit_per_call() {
    let s = load("x.yaml", BASE, &no_env, &files).unwrap();
    assert_eq!(s.reports.calls, None);
    assert!(!s.reports.junit_per_call);
    let text = format!(
        "{BASE}reports: {{ junit: j.xml, calls: out/calls.jsonl, junit_per_call: true }}\n"
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(s.reports.calls.as_deref(), Some("out/calls.jsonl"));
    assert!(s.reports.junit_per_call);
}

#[test]
fn an_ipv6_domain_is_bracketed_for_uris() {
    // From the server's address, and as written in `domain` (target's or accounts').
    let text = BASE.replace(
        "{ server: 127.0.0.1:5060, domain: pbx.test }",
        "{ server: \"[::1]:5060\" }",
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(s.target.domain, "[::1]");
    assert!(s.accounts.iter().all(|a| a.domain == "[::1]"));
    let text = BASE.replace("domain: pbx.test", "domain: \"::1\"");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(s.target.domain, "[::1]");
    let text = BASE.replace(
        "  password: pw{user}",
        "  password: pw{user}\n  domain: \"2001:db8::5\"",
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert!(s.accounts.iter().all(|a| a.domain == "[2001:db8::5]"));
}

#[test]
fn selftest_is_direct_on_loopback() {
    let s = shipped("selftest.yaml");
    assert_eq!(s.target.route, Route::Direct);
    let callee = s.role("callee").unwrap();
    assert_eq!(callee.listen, Some("127.0.0.1:5070".parse().unwrap()));
    let caller = s.role("caller").unwrap();
    let Step::Call(call) = &caller.steps[0].value else {
        panic!("a call first")
    };
    assert_eq!(call.peer.as_deref(), Some("callee"));
    let uri = call.to.render(Fill {
        user: "2010",
        peer: "2000",
        domain: &s.target.domain,
    });
    assert_eq!(uri, "sip:2000@127.0.0.1:5070");
    // No load section: each of the 10 callers calls once, all at once.
    assert_eq!(
        s.load,
        Load::Closed {
            concurrent: 10,
            ramp_up: Duration::ZERO,
            end: End::Calls(10)
        }
    );
    assert_eq!((caller.steps[0].line, caller.steps[0].col), (32, 9));
}

#[test]
fn pbx_regression_resolves_accounts_and_defaults() {
    let s = shipped("pbx-regression.yaml");
    let Route::Server {
        server,
        outbound_proxy,
    } = &s.target.route
    else {
        panic!("a server")
    };
    assert_eq!(server.to_string(), "127.0.0.1:5060");
    assert_eq!(*outbound_proxy, None);
    assert_eq!(s.target.transport, Transport::Udp);
    assert_eq!(s.target.domain, "pbx.test");
    assert_eq!(s.accounts.len(), 100);
    assert_eq!(s.accounts[0].password.expose(), "pw1000");
    let callee = s.role("callee").unwrap();
    assert_eq!(callee.accounts.len(), 50);
    assert_eq!(callee.accounts[49].user, "1049");
    let phases = callee.phases();
    assert_eq!(phases.setup.len(), 1);
    assert_eq!(phases.per_call.len(), 4);
    assert_eq!(phases.teardown.len(), 1);
    assert_eq!(
        callee.steps[0].value,
        Step::Register {
            expires: Duration::from_secs(300),
            refresh: true
        }
    );
    assert_eq!(s.thresholds.len(), 6);
    assert_eq!(s.thresholds[2].to_string(), "invite_to_200.p99 < 1s");
    assert_eq!(
        s.reports.junit.as_deref(),
        Some("reports/pbx-regression.xml")
    );
}

#[test]
fn env_variables_fill_in_the_target_and_passwords() {
    let (_, text) = SHIPPED[1];
    let env = |name: &str| match name {
        "SIP_SERVER" => Some("10.1.2.3:5080".to_owned()),
        "SIP_PASSWORD_PREFIX" => Some("secret-".to_owned()),
        _ => None,
    };
    let s = load("x.yaml", text, &env, &files).unwrap();
    let Route::Server { server, .. } = &s.target.route else {
        panic!("a server")
    };
    assert_eq!(
        (server.host.as_str(), server.port),
        ("10.1.2.3", Some(5080))
    );
    assert_eq!(s.accounts[3].password.expose(), "secret-1003");
}

#[test]
fn load_200_compiles_to_200_scheduled_calls() {
    let s = shipped("load-200.yaml");
    let caller = s.role("caller").unwrap();
    assert_eq!(caller.accounts.len(), 200);
    assert_eq!(caller.accounts[0].user, "3200");
    let LoadPlan::Open(plan) = LoadPlan::compile(&s.load) else {
        panic!("open model")
    };
    assert_eq!(plan.max_concurrent(), Some(200));
    let starts: Vec<Duration> = plan.collect();
    assert_eq!(starts.len(), 200);
    // 20/s reached after 5 s: 50 calls in the ramp, then one every 50 ms.
    assert_eq!(starts[50], Duration::from_secs(5));
    assert_eq!(starts[199], Duration::from_millis(5000 + 149 * 50));
}

#[test]
fn cancel_busy_noanswer_reads_accounts_from_csv() {
    let s = shipped("cancel-busy-noanswer.yaml");
    assert_eq!(s.accounts.len(), 8);
    let grace = s.accounts.iter().find(|a| a.user == "grace").unwrap();
    assert_eq!(grace.password.expose(), "grace,pw");
    let heidi = s.accounts.iter().find(|a| a.user == "heidi").unwrap();
    assert_eq!(heidi.domain, "other.test");
    let busy = s.role("busy").unwrap();
    assert_eq!(
        busy.steps[1].value,
        Step::Reject {
            code: 486,
            ring: Duration::from_secs(1)
        }
    );
    let gives_up = s.role("gives_up").unwrap();
    assert_eq!(
        gives_up.steps[3].value,
        Step::Cancel {
            after: Duration::from_secs(3)
        }
    );
    assert_eq!(
        gives_up.steps[4].value,
        Step::Expect(Expectation::Final {
            code: 487,
            within: Duration::from_secs(2)
        })
    );
    let no_answer = s.role("no_answer").unwrap();
    assert_eq!(no_answer.steps[2].value, Step::WaitFor(WaitEvent::Cancel));
}

#[test]
fn dtmf_ivr_has_playlists_dual_tones_and_digits() {
    let s = shipped("dtmf-ivr.yaml");
    let ivr = s.role("ivr").unwrap();
    let Step::Play(items) = &ivr.steps[2].value else {
        panic!("a playlist")
    };
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], PlayItem::Silence(d) if d == Duration::from_secs(10)));
    let Step::Play(confirm) = &ivr.steps[4].value else {
        panic!("a tone")
    };
    let PlayItem::Tone { tone, duration } = &confirm[0] else {
        panic!("a tone")
    };
    assert_eq!(tone.frequencies(), [350.0, 440.0]);
    assert_eq!(*duration, Some(Duration::from_secs(2)));
    let caller = s.role("caller").unwrap();
    let Step::Dtmf { digits, .. } = &caller.steps[4].value else {
        panic!("dtmf")
    };
    let keyed: String = digits.iter().map(|d| d.to_char()).collect();
    assert_eq!(keyed, "1234#");
}

#[test]
fn a_misspelt_key_is_reported_at_its_position_with_a_hint() {
    let text = BASE.replace("answer: { ring: 500ms }", "answer: { rign: 500ms }");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "scenarios/x.yaml:11:19: unknown field `rign`, expected `ring`\n   \
         11 |       - answer: { rign: 500ms }\n   \
         \x20  |                   ^\n   \
         hint: did you mean `ring`?"
    );
}

#[test]
fn every_unknown_key_and_step_is_reported_at_once_with_the_other_problems() {
    let text = "\
name: t
colour: blue
target: { server: 127.0.0.1:5060, domian: pbx.test, transport: udp }
accounts:
  range: { from: 1000, count: 4 }
  password: pw{user}
roles:
  callee:
    accounts: 1000..1001
    steps:
      - register
      - answer: { rign: 500ms }
      - registr
      - wait_for: bye
  caller:
    accounts: 1002..1003
    steps:
      - register
      - call: { to: \"sip:{peer}@{domain}\", peer: callee, timout: 5s }
      - hangup: { after: 1x }
load: { rate: 2/s, total_calls: 4, max_concurent: 2 }
";
    let e = errors(text);
    assert_eq!(
        brief(&e),
        [
            "2:1 unknown field `colour`, expected one of `name`, `description`, `target`, `accounts`, `media`, `roles`, `load`, `thresholds`, `reports`",
            "3:35 unknown field `domian`, expected one of `server`, `direct`, `transport`, `ws_path`, `domain`, `outbound_proxy`, `local`, `keepalive`, `connections`",
            "12:19 unknown field `rign`, expected `ring`",
            "13:9 unknown variant `registr`, expected one of `register`, `unregister`, `call`, `answer`, `reject`, `ring`, `play`, `expect`, `dtmf`, `wait`, `hangup`, `cancel`, `wait_for`, `hold`, `resume`, `transfer`",
            "19:58 unknown field `timout`, expected one of `to`, `peer`, `timeout`, `follow_redirects`",
            "20:26 '1x' is not a duration: expected a number followed by ms, s, m or h",
            "21:36 unknown field `max_concurent`, expected one of `rate`, `concurrent`, `ramp_up`, `total_calls`, `duration`, `max_concurrent`",
        ]
    );
    assert_eq!(e[1].hint.as_deref(), Some("did you mean `domain`?"));
    assert_eq!(
        e[0].source_line, "colour: blue",
        "the line as written, not as set aside"
    );
}

#[test]
fn a_misspelt_top_level_key_lists_the_fields() {
    let e = errors(&BASE.replace("roles:", "rolse:"));
    assert_eq!(brief(&e), ["6:1 unknown field `rolse`, expected one of `name`, `description`, `target`, `accounts`, `media`, `roles`, `load`, `thresholds`, `reports`"]);
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `roles`?"));
}

#[test]
fn a_key_from_the_sketch_gets_a_specific_hint() {
    let e = errors(&BASE.replace("server: 127.0.0.1:5060", "proxy: 127.0.0.1:5060"));
    assert_eq!((e[0].line, e[0].col), (2, 11));
    assert_eq!(
        e[0].hint.as_deref(),
        Some("the registrar / proxy is `server: host:port`; an outbound proxy is `outbound_proxy`")
    );
}

#[test]
fn a_misspelt_step_is_reported_with_a_suggestion() {
    let e = errors(&BASE.replace("- answer:", "- anwser:"));
    assert_eq!((e[0].line, e[0].col), (11, 9));
    assert!(
        e[0].message.starts_with("unknown variant `anwser`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `answer`?"));
    let e = errors(&BASE.replace("- wait_for: bye", "- hangpu"));
    assert_eq!((e[0].line, e[0].col), (12, 9));
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `hangup`?"));
}

#[test]
fn hold_and_resume_steps_load_and_are_checked() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - hold\n      - hold: inactive\n      - hold: { mode: sendonly }\n      - resume\n      - hangup: { after: 1s }\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    let steps: Vec<&Step> = caller.steps.iter().map(|s| &s.value).collect();
    assert_eq!(
        steps[2..6],
        [
            &Step::Hold(HoldMode::SendOnly),
            &Step::Hold(HoldMode::Inactive),
            &Step::Hold(HoldMode::SendOnly),
            &Step::Resume,
        ]
    );
    assert_eq!(steps[3].name(), "hold");
    assert_eq!(steps[5].name(), "resume");

    // A hold mode that does not exist, and a hold before any call.
    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - hold: sendonyl\n",
    ));
    assert_eq!(
        brief(&e),
        ["18:15 cannot hold as `sendonyl`: expected sendonly or inactive"]
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `sendonly`?"));
    let e = errors(&BASE.replace("      - answer: { ring: 500ms }\n", "      - resume\n"));
    assert!(
        brief(&e)
            .iter()
            .any(|m| m.starts_with("11:9 `resume` before any `call` or `answer` step")),
        "{:?}",
        brief(&e)
    );
}

#[test]
fn a_step_with_two_names_points_at_the_second() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - hangup: { after: 1s }\n        timeout: 2s\n",
    );
    let e = errors(&text);
    assert_eq!(brief(&e)[0].split(' ').next(), Some("19:9"));
    assert!(e[0].message.contains("step `hangup` also has `timeout`"));
}

#[test]
fn a_list_where_a_mapping_belongs_is_placed() {
    let e = errors(&BASE.replace(
        "target: { server: 127.0.0.1:5060, domain: pbx.test }",
        "target: [x]",
    ));
    assert_eq!(
        brief(&e),
        ["2:9 expected a mapping (`key: value` pairs) here"]
    );
}

#[test]
fn yaml_syntax_errors_are_placed() {
    let e = errors(&BASE.replace("password: pw{user}", "password: [pw{user}"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.starts_with("invalid YAML: "),
        "{}",
        e[0].message
    );
    assert!(e[0].line >= 5, "{:?}", e[0]);
}

#[test]
fn an_unquoted_greater_than_gets_a_quote_hint() {
    let text = format!("{BASE}thresholds:\n  audio.verified: > 99.5%\n");
    let e = errors(&text);
    assert_eq!(e[0].line, 20);
    assert_eq!(
        e[0].hint.as_deref(),
        Some("quote a condition that starts with `>`: \"> 99.5%\"")
    );
}

/// The brief's list of semantic checks, all in one file, all reported at once.
const BROKEN: &str = "\
name: broken
target:
  server: ${SIP_SERVER}
  domain: pbx.test
accounts:
  range: { from: 1000, count: 4 }
  password: pw{user}
media:
  codecs: [PCMU, G729]
  ptime: 20x
roles:
  callee:
    accounts: 1000..1001
    steps:
      - expect: { tone: 440Hz }
      - answer
      - play: { tone: 5kHz }
      - play: { wav: fixtures/missing.wav }
      - wait_for: bye
  caller:
    accounts: 2000..2049
    steps:
      - call: { to: \"sip:{peer}@{domain}\", peer: calee }
      - expect: { tone: 30Hz }
      - hangup: { after: 5s }
      - cancel: { after: 1s }
load:
  rate: 20/s
  concurrent: 10
thresholds:
  invite_to_20.p99: < 500ms
  calls.failed: less than 1%
";

#[test]
fn semantic_errors_are_all_reported_at_once_in_file_order() {
    let e = errors(BROKEN);
    assert_eq!(
        brief(&e),
        [
            "3:11 environment variable `SIP_SERVER` is not set and has no default",
            "9:18 unknown codec `G729`",
            "10:10 '20x' is not a duration: expected a number followed by ms, s, m or h",
            "15:9 `expect` before any `call` or `answer` step: there is no call yet",
            "17:23 5000 Hz is above 3900 Hz: too close to the 4 kHz limit of 8 kHz G.711 (tones are 50–3900 Hz)",
            "18:22 cannot read the WAV file `fixtures/missing.wav`: no such file",
            "21:15 `2000..2049` matches no account",
            "23:50 there is no role `calee`",
            "24:25 30 Hz is below 50 Hz: too low to detect reliably (tones are 50–3900 Hz)",
            "26:9 role `caller` has both `hangup` (line 25) and `cancel`",
            "29:3 `rate` (open model) and `concurrent` (closed model) exclude each other",
            "31:3 unknown metric `invite_to_20.p99`",
            "32:17 'less than 1%' is not a condition: expected <, <=, > or >= and a value, like \"< 500ms\" or \"< 0.1%\"",
        ]
    );
    let hints: Vec<Option<&str>> = e.iter().map(|e| e.hint.as_deref()).collect();
    assert_eq!(
        hints[0],
        Some("set SIP_SERVER, or give a default: ${SIP_SERVER:-value}")
    );
    assert_eq!(
        hints[6],
        Some(
            "the accounts are `1000`..`1003` (4 accounts)"
                .replace('`', "")
                .as_str()
        )
        .map(|_| hints[6].unwrap())
    );
    assert_eq!(hints[7], Some("did you mean `callee`?"));
    assert_eq!(hints[11], Some("did you mean `invite_to_200.p99`?"));
    assert!(e.iter().all(|e| e.file == "scenarios/x.yaml"));
    assert_eq!(e[1].source_line, "  codecs: [PCMU, G729]");
}

#[test]
fn the_account_hint_summarises_the_accounts() {
    let e = errors(&BASE.replace("accounts: 1000..1001", "accounts: 2000..2001"));
    assert_eq!(
        e[0].hint.as_deref(),
        Some("the accounts are 1000..1003 (4 accounts)")
    );
}

#[test]
fn a_rate_needs_an_end() {
    let text = format!("{BASE}load:\n  rate: 20/s\n");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["20:3 a `rate` needs an end: `total_calls` or `duration`"]
    );
    assert_eq!(
        e[0].hint.as_deref(),
        Some("add `total_calls: 1000` or `duration: 5m`")
    );
}

#[test]
fn a_load_needs_a_model() {
    let e = errors(&format!("{BASE}load:\n  total_calls: 5\n"));
    assert_eq!(
        brief(&e),
        ["19:1 `load` needs a `rate` (open model, like 20/s) or `concurrent` (closed model, like 50)"]
    );
}

#[test]
fn closed_model_loads() {
    let text = format!("{BASE}load:\n  concurrent: 2\n  ramp_up: 1s\n  duration: 1m\n");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(
        s.load,
        Load::Closed {
            concurrent: 2,
            ramp_up: Duration::from_secs(1),
            end: End::After(Duration::from_secs(60))
        }
    );
}

#[test]
fn a_missing_variable_is_named_and_a_default_is_used() {
    let text = BASE.replace("password: pw{user}", "password: ${PW}{user}");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["5:13 environment variable `PW` is not set and has no default"]
    );
    let text = BASE.replace("password: pw{user}", "password: ${PW:-x}{user}");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(s.accounts[0].password.expose(), "x1000");
}

#[test]
fn an_unknown_placeholder_gets_a_suggestion() {
    let e = errors(&BASE.replace("sip:{peer}@{domain}", "sip:{peeer}@{domain}"));
    assert_eq!(
        brief(&e),
        ["17:21 unknown placeholder `{peeer}`: this value can use `{peer}`, `{user}`, `{domain}`"]
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `{peer}`?"));
}

#[test]
fn a_call_pairing_with_an_empty_role_is_an_error() {
    let text = BASE.replace("    accounts: 1000..1001\n", "    count: 0\n");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["17:21 the call pairs with role `callee`, which has no accounts"]
    );
}

#[test]
fn the_peer_role_is_inferred_when_only_one_role_answers() {
    let text = BASE.replace(", peer: callee", "");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    let Step::Call(call) = &s.role("caller").unwrap().steps[1].value else {
        panic!("a call")
    };
    assert_eq!(call.peer.as_deref(), Some("callee"));
}

#[test]
fn a_uri_without_scheme_or_host_is_completed() {
    let text = BASE.replace("\"sip:{peer}@{domain}\"", "\"{peer}\"");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    let Step::Call(call) = &s.role("caller").unwrap().steps[1].value else {
        panic!("a call")
    };
    assert_eq!(call.to.to_string(), "sip:{peer}@{domain}");
}

#[test]
fn duplicate_accounts_are_reported_where_they_are_written() {
    let csv = "user,password\n1000,a\nbob,b\nbob,c\n";
    let text = BASE.replace(
        "  password: pw{user}\n",
        "  password: pw{user}\n  csv: dup.csv\n",
    );
    let files = |p: &str| {
        if p == "dup.csv" {
            Ok(csv.to_owned())
        } else {
            Err("no".to_owned())
        }
    };
    let e = errors_with(&text, &no_env, &files);
    let shown: Vec<String> = e
        .iter()
        .map(|e| format!("{}:{} {}", e.file, e.line, e.message))
        .collect();
    assert_eq!(
        shown,
        [
            "dup.csv:2 duplicate account `1000`",
            "dup.csv:4 duplicate account `bob`"
        ]
    );
    assert_eq!(e[0].hint.as_deref(), Some("it is first defined by `range`"));
    assert_eq!(
        e[1].hint.as_deref(),
        Some("it is first defined by dup.csv:3")
    );
    assert_eq!(e[1].source_line, "bob,***");
}

#[test]
fn an_unreadable_csv_says_which_file() {
    let text = BASE.replace(
        "  range: { from: 1000, count: 4 }\n  password: pw{user}\n",
        "  csv: nope.csv\n",
    );
    let e = errors(&text);
    assert_eq!(
        brief(&e)[0],
        "4:8 cannot read the accounts file `nope.csv`: no such file"
    );
}

#[test]
fn roles_may_not_share_accounts() {
    let e = errors(&BASE.replace("accounts: 1002..1003", "accounts: 1001..1003"));
    assert_eq!(
        brief(&e),
        ["14:15 role `caller` shares accounts with role `callee`: 1001"]
    );
}

#[test]
fn a_count_takes_the_accounts_no_role_names() {
    let text = BASE.replace("    accounts: 1002..1003\n", "    count: 2\n");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    let users: Vec<&str> = s
        .role("caller")
        .unwrap()
        .accounts
        .iter()
        .map(|a| a.user.as_str())
        .collect();
    assert_eq!(users, ["1002", "1003"]);
    let e = errors(&BASE.replace("    accounts: 1002..1003\n", "    count: 3\n"));
    assert_eq!(
        brief(&e),
        ["14:12 role `caller` wants 3 accounts, but only 2 are not taken by other roles"]
    );
}

#[test]
fn direct_mode_rules() {
    let text = BASE.replace(
        "target: { server: 127.0.0.1:5060, domain: pbx.test }",
        "target: { direct: true }",
    );
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        [
            "7:3 in direct mode, role `callee` answers calls, so it needs `listen: ip:port`",
            "10:9 `register` in direct mode: there is no registrar",
            "16:9 `register` in direct mode: there is no registrar",
        ]
    );
}

#[test]
fn step_argument_errors() {
    let text = BASE
        .replace("answer: { ring: 500ms }", "reject: { code: 200 }")
        .replace("hangup: { after: 1s }", "dtmf: \"12x\"")
        .replace("- wait_for: bye", "- wait_for: hangup");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        [
            "11:25 200 is not a status code here: expected 300–699",
            "12:19 cannot wait for `hangup`: expected bye or cancel",
            "18:15 '12x' is not a DTMF string: `x` is not one of 0-9, *, #, A-D",
        ]
    );
}

#[test]
fn a_tone_without_duration_must_end_the_playlist() {
    let text = BASE.replace(
        "      - wait_for: bye\n",
        "      - play: [ { tone: 440Hz }, { silence: 1s } ]\n      - wait_for: bye\n",
    );
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["12:19 a tone without `duration` plays until the call ends, so the items after it never play"]
    );
}

#[test]
fn overrides_apply_before_loading() {
    let text = format!("{BASE}load:\n  rate: 20/s\n  total_calls: 10\n");
    let set = vec![
        ("load.rate".to_owned(), "50/s".to_owned()),
        ("load.ramp_up".to_owned(), "2s".to_owned()),
    ];
    let s = load_with_overrides("x.yaml", &text, &set, &no_env, &files).unwrap();
    let Load::Open { rate, ramp_up, .. } = s.load else {
        panic!("open")
    };
    assert_eq!(rate.to_string(), "50/s");
    assert_eq!(ramp_up, Duration::from_secs(2));
}

#[test]
fn an_error_in_an_override_points_at_the_override() {
    let text =
        format!("{BASE}load:\n  rate: 20/s\n  total_calls: 10\nthresholds:\n  calls.faild: < 1%\n");
    let set = vec![("load.ramp_up".to_owned(), "2x".to_owned())];
    let e = load_with_overrides("x.yaml", &text, &set, &no_env, &files).unwrap_err();
    let shown: Vec<String> = e
        .iter()
        .map(|e| format!("{}:{}:{} {}", e.file, e.line, e.col, e.message))
        .collect();
    assert_eq!(
        shown,
        [
            // The file's own error keeps its line, although a line was inserted above it.
            "x.yaml:23:3 unknown metric `calls.faild`",
            "--set:1:14 '2x' is not a duration: expected a number followed by ms, s, m or h",
        ]
    );
    assert_eq!(e[0].source_line, "  calls.faild: < 1%");
    assert_eq!(e[1].source_line, "load.ramp_up=2x");
}

#[test]
fn an_unknown_override_path_is_an_error() {
    let set = vec![("load.rat".to_owned(), "50/s".to_owned())];
    let e = load_with_overrides(
        "x.yaml",
        &format!("{BASE}load: {{ rate: 1/s, total_calls: 1 }}\n"),
        &set,
        &no_env,
        &files,
    )
    .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "--set:1:6: unknown field `rat`, expected one of `rate`, `concurrent`, `ramp_up`, `total_calls`, `duration`, `max_concurrent`\n   \
         1 | load.rat=50/s\n   \
         \x20 |      ^\n   \
         hint: did you mean `rate`?"
    );
}

#[test]
fn validation_leaves_its_input_alone() {
    // The raw model is borrowed immutably; loading twice gives the same result.
    let a = load("x.yaml", BASE, &no_env, &files).unwrap();
    let b = load("x.yaml", BASE, &no_env, &files).unwrap();
    assert_eq!(a.roles, b.roles);
    assert_eq!(a.accounts, b.accounts);
}

#[test]
fn an_empty_file_is_one_error() {
    for text in ["", "# only a comment\n"] {
        let e = errors(text);
        assert_eq!(brief(&e), ["1:1 the scenario is empty"]);
    }
}

#[test]
fn missing_sections_are_all_reported() {
    let e = errors("name: x\n");
    assert_eq!(
        brief(&e),
        [
            "1:1 the scenario needs a `target`",
            "1:1 the scenario needs `accounts`",
            "1:1 the scenario needs `roles`: who does what",
        ]
    );
}

#[test]
fn errors_inside_steps_are_placed_at_the_step() {
    let at = |from: &str, to: &str| {
        let e = errors(&BASE.replacen(from, to, 1));
        assert_eq!(e.len(), 1, "{e:?}");
        format!("{}:{} {}", e[0].line, e[0].col, e[0].message)
    };
    let bye = "      - wait_for: bye\n";
    assert_eq!(
        at(bye, "      - play: 5\n"),
        "12:15 invalid type: string \"5\", expected something to play, like { tone: 440Hz, duration: 2s }, { wav: file.wav } or { silence: 1s }"
    );
    assert_eq!(
        at(bye, "      - expect: 5\n"),
        "12:17 '5' is not a valid argument here: this step takes a mapping, like { key: value }"
    );
    // Placed at the step's value: the part inside is not narrowed down further.
    assert_eq!(
        at(bye, "      - play: { tone: {a: 1} }\n"),
        "12:15 invalid type: map, expected a string"
    );
    assert_eq!(
        at(bye, "      - {}\n"),
        "12:9 an empty mapping is not a step: write a step, like `- wait: 2s`"
    );
    assert_eq!(
        at(bye, "      - register: { expires: [1] }\n"),
        "12:30 expected a single value here, not a list or a mapping"
    );
    let e = errors(&format!(
        "{BASE}thresholds:\n  calls.failed: {{ lt: 1% }}\n"
    ));
    assert_eq!((e[0].line, e[0].col), (20, 17));
}

#[test]
fn a_range_beyond_a_hundred_thousand_accounts_is_an_error_not_an_endless_allocation() {
    // Found by fuzzing: `count: 1003313` built a million accounts before anything else.
    let e = errors(&BASE.replace("count: 4 }", "count: 10000000000 }"));
    assert_eq!(
        brief(&e)[0],
        "4:31 10000000000 accounts is more than the 100000 a range may hold"
    );
}

#[test]
fn a_step_that_can_never_run_in_a_role_without_calls_is_an_error() {
    let text = "\
name: t
target: { server: 127.0.0.1:5060, domain: pbx.test }
accounts:
  range: { from: 1000, count: 2 }
roles:
  idle:
    count: 2
    steps:
      - register
      - wait: 5s
      - unregister
";
    let e = errors(text);
    assert_eq!(
        brief(&e),
        ["10:9 role `idle` neither places nor answers calls, so this step (and every one before `unregister`) would never run"]
    );
    // Registering and unregistering alone is a valid way to hold registrations.
    let held = text.replace("      - wait: 5s\n", "");
    assert!(load("x.yaml", &held, &no_env, &files).is_ok());
}

#[test]
fn rtp_false_makes_a_signaling_only_scenario() {
    let text = BASE.replace("roles:", "media: { rtp: false }\nroles:");
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert!(!s.media.rtp);
    assert!(load("x.yaml", BASE, &no_env, &files).unwrap().media.rtp);
}

#[test]
fn rtp_false_refuses_what_needs_audio_where_it_is_written() {
    let text = "\
name: t
target: { server: 127.0.0.1:5060, domain: pbx.test }
accounts:
  range: { from: 1000, count: 2 }
media: { rtp: false, record: /tmp/rec }
roles:
  caller:
    accounts: 1000..1001
    steps:
      - call: { to: \"sip:echo@{domain}\" }
      - expect: { answered: true }
      - play: { tone: 440Hz }
      - expect: { tone: 440Hz }
      - dtmf: \"12\"
      - hangup: { after: 1s }
thresholds:
  rtp.loss: \"< 1%\"
  invite_to_200.p99: \"< 500ms\"
";
    let got = brief(&errors(text));
    assert_eq!(
        got,
        [
            "5:22 `record` writes the received audio, but `rtp: false` opens no RTP",
            "12:9 `play` needs audio, but `media: { rtp: false }` opens no RTP",
            "13:9 `expect` needs audio, but `media: { rtp: false }` opens no RTP",
            "14:9 `dtmf` needs audio, but `media: { rtp: false }` opens no RTP",
            "17:3 `rtp.loss` is measured on RTP, but `media: { rtp: false }` opens none",
        ],
        "{got:#?}"
    );
}

#[test]
fn media_srtp_is_required_optional_or_off_and_needs_rtp() {
    use crate::sdp::crypto::SrtpPolicy;
    assert_eq!(
        load("x.yaml", BASE, &no_env, &files).unwrap().media.srtp,
        SrtpPolicy::Off
    );
    for (name, policy) in [
        ("required", SrtpPolicy::Required),
        ("optional", SrtpPolicy::Optional),
        ("off", SrtpPolicy::Off),
    ] {
        let text = BASE.replace("roles:", &format!("media: {{ srtp: {name} }}\nroles:"));
        assert_eq!(
            load("x.yaml", &text, &no_env, &files).unwrap().media.srtp,
            policy
        );
    }
    let text = BASE.replace("roles:", "media: { srtp: mandatory }\nroles:");
    let got = brief(&errors(&text));
    assert_eq!(got, ["6:16 unknown `srtp` policy `mandatory`"], "{got:#?}");
    let text = BASE.replace("roles:", "media: { rtp: false, srtp: required }\nroles:");
    let got = brief(&errors(&text));
    assert_eq!(
        got,
        ["6:22 `srtp` protects RTP, but `rtp: false` opens no RTP"],
        "{got:#?}"
    );
}

#[test]
fn rtp_must_be_true_or_false() {
    let text = BASE.replace("roles:", "media: { rtp: sometimes }\nroles:");
    let got = brief(&errors(&text));
    assert_eq!(got, ["6:15 'sometimes' is not true or false"], "{got:#?}");
}

#[test]
fn an_alias_bomb_is_refused_quickly_not_expanded() {
    // The classic "billion laughs": nine levels of ten aliases each.
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("more than 200000 nodes"),
        "{}",
        e[0].message
    );
}

#[test]
fn a_scenario_longer_than_a_mebibyte_is_refused_unread() {
    let text = format!("name: t\n#{}\n", "x".repeat(1 << 20));
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message
            .contains("more than the 1 MiB a scenario may be"),
        "{}",
        e[0].message
    );
}

#[test]
fn an_unknown_yaml_tag_is_refused_not_ignored() {
    let e = errors(&BASE.replace("name: t", "name: !Ref t"));
    assert_eq!(
        brief(&e),
        ["1:7 invalid YAML: the tag `!Ref` means nothing in a scenario: write the value without it"]
    );
    // A core-schema tag is plain YAML.
    let text = BASE.replace("name: t", "name: !!str t");
    assert!(load("x.yaml", &text, &no_env, &files).is_ok());
}

#[test]
fn tls_and_tcp_are_accepted() {
    let tls = BASE.replace("domain: pbx.test }", "domain: pbx.test, transport: TLS }");
    let s = load("scenarios/x.yaml", &tls, &no_env, &files).expect("tls loads");
    assert_eq!(s.target.transport, Transport::Tls);
    let tcp = BASE.replace("domain: pbx.test }", "domain: pbx.test, transport: TCP }");
    let s = load("scenarios/x.yaml", &tcp, &no_env, &files).expect("tcp loads");
    assert_eq!(s.target.transport, Transport::Tcp);
}

#[test]
fn ws_and_wss_are_accepted_with_a_resource_path_that_other_transports_refuse() {
    let with =
        |extra: &str| BASE.replace("domain: pbx.test }", &format!("domain: pbx.test{extra} }}"));
    let s = load(
        "scenarios/x.yaml",
        &with(", transport: ws"),
        &no_env,
        &files,
    )
    .expect("ws");
    assert_eq!(s.target.transport, Transport::Ws);
    assert_eq!(s.target.ws_path, "/");
    let s = load(
        "scenarios/x.yaml",
        &with(", transport: WSS, ws_path: /sip"),
        &no_env,
        &files,
    )
    .expect("wss");
    assert_eq!(s.target.transport, Transport::Wss);
    assert_eq!(s.target.ws_path, "/sip");
    let e = errors(&with(", transport: tcp, ws_path: /sip"));
    assert!(
        brief(&e)
            .iter()
            .any(|m| m.contains("`ws_path` applies to `transport: ws` and `wss` only")),
        "{e:?}"
    );
    let e = errors(&with(", transport: ws, ws_path: sip"));
    assert!(
        brief(&e)
            .iter()
            .any(|m| m.contains("'sip' is not a resource path")),
        "{e:?}"
    );
    let e = errors(&with(", transport: wx"));
    assert!(
        brief(&e)
            .iter()
            .any(|m| m.contains("expected udp, tcp, tls, ws or wss")),
        "{e:?}"
    );
}

#[test]
fn tcp_keepalive_defaults_can_be_set_or_turned_off_and_udp_refuses_it() {
    let with =
        |extra: &str| BASE.replace("domain: pbx.test }", &format!("domain: pbx.test{extra} }}"));
    let load_ok = |text: &str| load("scenarios/x.yaml", text, &no_env, &files).expect("loads");
    let s = load_ok(&with(", transport: tcp"));
    assert_eq!(s.target.keepalive, Some(super::model::DEFAULT_KEEPALIVE));
    let s = load_ok(&with(", transport: tcp, keepalive: 2s"));
    assert_eq!(s.target.keepalive, Some(Duration::from_secs(2)));
    let s = load_ok(&with(", transport: tcp, keepalive: 0s"));
    assert_eq!(s.target.keepalive, None);
    assert_eq!(load_ok(BASE).target.keepalive, None);
    let e = errors(&with(", keepalive: 2s"));
    assert_eq!(
        brief(&e),
        ["2:53 `keepalive` applies to `transport: tcp` only"]
    );
}

#[test]
fn tcp_connections_are_per_ua_unless_shared_per_role() {
    use super::model::Connections;
    let with =
        |extra: &str| BASE.replace("domain: pbx.test }", &format!("domain: pbx.test{extra} }}"));
    let load_ok = |text: &str| load("scenarios/x.yaml", text, &no_env, &files).expect("loads");
    let s = load_ok(&with(", transport: tcp"));
    assert_eq!(s.target.connections, Connections::PerUa);
    let s = load_ok(&with(", transport: tcp, connections: per_role"));
    assert_eq!(s.target.connections, Connections::PerRole);
    let e = errors(&with(", transport: tcp, connections: per_rol"));
    assert_eq!(
        brief(&e),
        ["2:82 'per_rol' is not a connection sharing: expected per_ua or per_role"]
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `per_role`?"));
    let e = errors(&with(", connections: per_ua"));
    assert_eq!(
        brief(&e),
        ["2:53 `connections` applies to `transport: tcp` only"]
    );
}

#[test]
fn sips_servers_and_call_uris_are_refused_at_their_position_unless_over_tls() {
    // RFC 3261 §26.2.2: a sips: URI needs TLS; none is sent over UDP or TCP.
    let sips = BASE
        .replace(
            "target: { server: 127.0.0.1:5060, domain: pbx.test }",
            "target: { server: \"sips:127.0.0.1:5061\", outbound_proxy: \"SIPS:proxy.test\", domain: pbx.test }",
        )
        .replace(
            "call: { to: \"sip:{peer}@{domain}\", peer: callee }",
            "call: { to: \"sips:{peer}@{domain}\", peer: callee }",
        );
    let e = errors(&sips);
    assert_eq!(
        brief(&e),
        [
            "2:19 'sips:127.0.0.1:5061': a sips: server needs TLS (RFC 3261 §26.2.2)",
            "2:58 'SIPS:proxy.test': sips: needs TLS; give host or host:port, and `transport: tls`",
            "17:21 `sips:{peer}@{domain}`: sips: needs TLS, and `target.transport` is not tls or wss",
        ]
    );
    assert!(
        e[2].to_string().starts_with("scenarios/x.yaml:17:21: "),
        "{}",
        e[2]
    );
    // Over TLS (or WSS) a sips: server and sips: call URIs load: the UAs' addresses of
    // record are sips: (RFC 5630), the call's Request-URI as written. An outbound proxy is
    // an address, never a URI.
    for transport in ["tls", "wss"] {
        let over = sips.replace(
            "outbound_proxy: \"SIPS:proxy.test\", domain: pbx.test",
            &format!("transport: {transport}, domain: pbx.test"),
        );
        let scenario = load("x.yaml", &over, &no_env, &files).unwrap();
        assert!(scenario.target.sips, "{transport}");
        let Route::Server { server, .. } = &scenario.target.route else {
            panic!("a server route")
        };
        assert_eq!(
            (server.host.as_str(), server.port),
            ("127.0.0.1", Some(5061))
        );
        let to = scenario.roles[1]
            .steps
            .iter()
            .find_map(|s| match &s.value {
                Step::Call(c) => Some(format!("{:?}", c.to)),
                _ => None,
            })
            .unwrap();
        assert!(to.contains("sips:"), "{to}");
    }
    // A sip: server over TLS is no sips: registration.
    let tls = BASE.replace("domain: pbx.test }", "domain: pbx.test, transport: tls }");
    assert!(!load("x.yaml", &tls, &no_env, &files).unwrap().target.sips);
}

#[test]
fn a_call_uri_asking_for_tls_is_refused_whatever_fills_it() {
    for to in [
        "SIPS:{peer}@{domain}",
        "sip:{peer}@{domain};transport=TLS",
        "sips:bob@pbx.test",
    ] {
        let text = BASE.replace("\"sip:{peer}@{domain}\"", &format!("\"{to}\""));
        let text = if to.contains("{peer}") {
            text
        } else {
            text.replace(", peer: callee", "")
        };
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{to}: {:?}", brief(&e));
        assert!(e[0].message.contains("needs TLS"), "{to}: {}", e[0]);
        assert_eq!(e[0].line, 17, "{to}");
    }
    // A sip: URI (the scheme added when missing) loads.
    for to in ["{peer}", "sip:{peer}@{domain};transport=tcp"] {
        let text = BASE.replace("\"sip:{peer}@{domain}\"", &format!("\"{to}\""));
        load("x.yaml", &text, &no_env, &files).unwrap();
    }
}

#[test]
fn a_tones_max_gap_defaults_to_100_ms_is_validated_and_belongs_to_tones_only() {
    let with = |expect: &str| {
        BASE.replace(
            "      - hangup: { after: 1s }",
            &format!("      - expect: {expect}\n      - hangup: {{ after: 1s }}"),
        )
    };
    let max_gap_of = |scenario: &Scenario| {
        scenario.roles[1]
            .steps
            .iter()
            .find_map(|s| match &s.value {
                Step::Expect(Expectation::Tone { max_gap, .. }) => Some(*max_gap),
                _ => None,
            })
            .expect("a tone step")
    };
    let load_ok = |text: &str| {
        load("scenarios/x.yaml", text, &no_env, &files)
            .unwrap_or_else(|e| panic!("{}", super::report(&e)))
    };
    let s = load_ok(&with("{ tone: 1kHz }"));
    assert_eq!(max_gap_of(&s), Duration::from_millis(100));
    let s = load_ok(&with("{ tone: 1kHz, max_gap: 250ms }"));
    assert_eq!(max_gap_of(&s), Duration::from_millis(250));
    assert_eq!(
        brief(&errors(&with("{ tone: 1kHz, max_gap: 20ms }"))),
        ["18:40 `max_gap` must be at least 40 ms: shorter dropouts are not measured"]
    );
    assert_eq!(
        brief(&errors(&with("{ silence: 1s, max_gap: 200ms }"))),
        ["18:32 `max_gap` applies to `expect: { tone }`, not to `silence`"]
    );
}

#[test]
fn signature_steps_load_and_bad_ones_are_reported_at_their_position() {
    let text = BASE.replace(
        "      - wait_for: bye\n",
        "      - play: { signature: true }\n      - expect: { signature: peer, within: 3s }\n      - wait_for: bye\n",
    );
    let s = load("scenarios/x.yaml", &text, &no_env, &files).unwrap();
    let callee = s.role("callee").unwrap();
    assert_eq!(callee.steps[2].value, Step::Play(vec![PlayItem::Signature]));
    assert_eq!(
        callee.steps[3].value,
        Step::Expect(Expectation::Signature {
            from: SignatureFrom::Peer,
            within: Duration::from_secs(3),
        })
    );
    let text = BASE.replace(
        "      - wait_for: bye\n",
        "      - play: [ { signature: true }, { silence: 1s } ]\n      - play: { signature: false }\n      - expect: { signature: caller }\n      - expect: { signature: echo, within: 1s }\n      - expect: { signature: peer, min_snr: 10dB }\n      - play: { signature: true, level: -10dBFS }\n      - wait_for: bye\n",
    );
    assert_eq!(
        brief(&errors(&text)),
        [
            "12:19 a signature plays until the call ends, alone: it cannot be part of a list",
            "13:28 `signature: false` plays nothing",
            "14:30 'caller' is not whose signature to hear",
            "15:44 a signature needs 1.5 s to be heard twice: `within` must be at least that",
            "16:36 `min_snr` applies to `expect: { tone }`, not to `signature`",
            "17:34 `level` applies to a tone, not to `signature`",
        ]
    );
}

#[test]
fn two_calling_roles_with_signatures_are_refused_at_the_second() {
    let text = "\
name: t
target: { server: 127.0.0.1:5060, domain: pbx.test }
accounts:
  range: { from: 1000, count: 4 }
roles:
  callee:
    accounts: 1000..1001
    steps:
      - answer
      - play: { signature: true }
      - wait_for: bye
  a:
    accounts: 1002
    steps:
      - call: { to: \"sip:{peer}@{domain}\", peer: callee }
      - play: { signature: true }
      - hangup: { after: 2s }
  b:
    accounts: 1003
    steps:
      - call: { to: \"sip:{peer}@{domain}\", peer: callee }
      - expect: { signature: peer }
      - hangup: { after: 2s }
";
    assert_eq!(
        brief(&errors(text)),
        ["18:3 role `b` is a second calling role with audio signatures: calls are numbered per calling role, so its calls would play the same codes as the other's and audio crossed between them would pass"]
    );
    // One calling role with signatures beside one without is fine.
    let one = text.replace("      - expect: { signature: peer }\n", "");
    assert!(load("scenarios/x.yaml", &one, &no_env, &files).is_ok());
}

#[test]
fn reports_name_the_time_series_and_the_metrics_files() {
    let text = format!(
        "{BASE}reports: {{ json: r/s.json, series: r/series.csv, metrics: r/metrics.txt, html: r/run.html }}\n"
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(s.reports.html.as_deref(), Some("r/run.html"));
    assert_eq!(s.reports.series.as_deref(), Some("r/series.csv"));
    assert_eq!(s.reports.metrics.as_deref(), Some("r/metrics.txt"));
    assert_eq!(s.reports.json.as_deref(), Some("r/s.json"));
    let s = load("x.yaml", BASE, &no_env, &files).unwrap();
    assert_eq!((s.reports.series, s.reports.metrics), (None, None));
}

#[test]
fn a_pesq_expectation_loads_and_its_file_and_minimum_are_checked() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { pesq: { reference: fixtures/prompt-8k.wav, min: 3.5 } }\n      - hangup\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    assert_eq!(
        caller.steps[2].value,
        Step::Expect(Expectation::Pesq {
            reference: "fixtures/prompt-8k.wav".into(),
            min: 3.5,
            within: Duration::from_secs(5),
        })
    );

    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { pesq: { reference: fixtures/missing.wav, min: 4.8 } }\n",
    ));
    assert_eq!(
        brief(&e),
        [
            "18:38 cannot read the WAV file `fixtures/missing.wav`: no such file",
            "18:65 a PESQ `min` of 4.8 is outside 1–4.5 (raw P.862 scale)",
        ]
    );
    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { pesq: { reference: fixtures/prompt-8k.wav } }\n",
    ));
    assert_eq!(
        brief(&e),
        ["18:19 `pesq` needs a `min` score, like `min: 3.5`"]
    );
}

#[test]
fn a_matches_expectation_loads_recorded_and_its_file_minimum_and_window_are_checked() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { matches: fixtures/prompt-8k.wav, within: 10s, record: true }\n      - hangup\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    assert_eq!(
        caller.steps[2].value,
        Step::Expect(Expectation::Matches {
            reference: "fixtures/prompt-8k.wav".into(),
            min_similarity: 0.8,
            within: Duration::from_secs(10),
        })
    );
    assert!(caller.steps[2].record);
    assert!(!caller.steps[1].record);

    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { matches: fixtures/missing.wav, min_similarity: 1.5, within: 2m }\n      - expect: { tone: 1kHz, min_similarity: 0.5 }\n      - expect: { answered: true, record: true }\n",
    ));
    assert_eq!(
        brief(&e),
        [
            "18:28 cannot read the WAV file `fixtures/missing.wav`: no such file",
            "18:66 a `min_similarity` of 1.5 is outside 0–1 (1 is the same waveform)",
            "18:79 `within` of `matches` is at most 60 s: the step records that long plus the reference",
            "19:31 `min_similarity` applies to `expect: { matches }`, not to `tone`",
            "20:35 `record` keeps the audio received during an `expect` on audio (tone, silence, speech, prompt_ends, audio, signature, pesq, matches, dtmf), not this one",
        ]
    );
}

#[test]
fn answered_by_names_a_party_role_and_gets_its_slot() {
    let signing = BASE
        .replace(
            "      - answer: { ring: 500ms }\n",
            "      - answer: { ring: 500ms }\n      - play: { signature: true }\n",
        )
        .replace(
            "      - hangup: { after: 1s }\n",
            "      - play: { signature: true }\n      - expect: { answered_by: callee }\n      - hangup: { after: 1s }\n",
        );
    let scenario = match load("scenarios/x.yaml", &signing, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    assert_eq!(scenario.signature_parties(), ["callee"]);
    assert_eq!(
        scenario.role("caller").unwrap().steps[3].value,
        Step::Expect(Expectation::Signature {
            from: SignatureFrom::Party(0),
            within: Duration::from_secs(5),
        })
    );
    let e = errors(&signing.replace("answered_by: callee", "answered_by: nobody"));
    assert_eq!(brief(&e), ["20:32 there is no role `nobody`"]);
    // A role that plays no signature cannot be recognised.
    let e = errors(&signing.replace(
        "      - play: { signature: true }\n      - wait_for",
        "      - wait_for",
    ));
    assert_eq!(
        brief(&e),
        ["19:32 role `callee` plays no signature (or places calls): its answer cannot be recognised"]
    );
}

fn call_of(s: &Scenario) -> &crate::scenario::model::CallStep {
    let Step::Call(call) = &s.role("caller").unwrap().steps[1].value else {
        panic!("a call")
    };
    call
}

#[test]
fn follow_redirects_is_off_by_default_true_for_five_or_a_number() {
    let s = load("x.yaml", BASE, &no_env, &files).unwrap();
    assert_eq!(call_of(&s).max_redirects, 0);
    for (value, max) in [("true", 5), ("false", 0), ("3", 3), ("0", 0)] {
        let text = BASE.replace(
            "peer: callee }",
            &format!("peer: callee, follow_redirects: {value} }}"),
        );
        let s = load("x.yaml", &text, &no_env, &files).unwrap();
        assert_eq!(call_of(&s).max_redirects, max, "{value}");
    }
}

#[test]
fn a_follow_redirects_that_is_no_flag_nor_number_is_an_error_at_its_value() {
    let text = BASE.replace("peer: callee }", "peer: callee, follow_redirects: many }");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["17:76 'many' is neither true, false nor a number of redirections"]
    );
    assert!(e[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("follow_redirects: 3"));
}

#[test]
fn expect_redirected_to_is_a_template_completed_like_call_to() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { redirected_to: \"{peer}\" }\n      - hangup: { after: 1s }\n",
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    let Step::Expect(Expectation::RedirectedTo { target, within }) =
        &s.role("caller").unwrap().steps[2].value
    else {
        panic!("redirected_to")
    };
    assert_eq!(target.to_string(), "sip:{peer}@{domain}");
    assert_eq!(*within, Duration::from_secs(32));
}

#[test]
fn ring_forever_rings_until_the_call_ends_and_answer_refuses_it() {
    let text = BASE.replace(
        "      - answer: { ring: 500ms }\n",
        "      - ring: forever\n",
    );
    let s = load("x.yaml", &text, &no_env, &files).unwrap();
    assert_eq!(
        s.role("callee").unwrap().steps[1].value,
        Step::Ring(crate::scenario::model::RING_FOREVER)
    );
    let text = BASE.replace("answer: { ring: 500ms }", "answer: { ring: forever }");
    let e = errors(&text);
    assert_eq!(
        brief(&e),
        ["11:25 `answer` with `ring: forever` would never answer"]
    );
    assert!(e[0].hint.as_deref().unwrap().contains("wait_for: cancel"));
}

#[test]
fn speech_prompt_and_silence_expectations_load_with_their_defaults_and_lines() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { speech: true }\n      - expect: { prompt_ends: true, within: 20s }\n      - expect: { silence: 2s, within: 10s }\n      - hangup\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    assert_eq!(
        caller.steps[2].value,
        Step::Expect(Expectation::Speech {
            within: Duration::from_secs(5),
        })
    );
    assert_eq!(caller.steps[2].line, 18);
    assert_eq!(
        caller.steps[3].value,
        Step::Expect(Expectation::PromptEnds {
            within: Duration::from_secs(20),
        })
    );
    assert_eq!(
        caller.steps[4].value,
        Step::Expect(Expectation::Silence {
            duration: Duration::from_secs(2),
            within: Duration::from_secs(10),
        })
    );

    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { speech: false }\n      - expect: { prompt_ends: true, speech: true }\n      - expect: { prompt_ends: yes please }\n",
    ));
    assert_eq!(
        brief(&e),
        [
            "18:27 `speech: false` expects nothing",
            "19:19 `speech` and `prompt_ends` in one `expect`: write one step for each",
            "20:32 'yes please' is not true or false",
        ]
    );
}

#[test]
fn held_and_audio_expectations_load_with_their_defaults_and_refuse_false() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { held: true }\n      - expect: { audio: true, within: 3s }\n      - hangup\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    assert_eq!(
        caller.steps[2].value,
        Step::Expect(Expectation::Held {
            within: Duration::from_secs(10),
        })
    );
    assert_eq!(
        caller.steps[3].value,
        Step::Expect(Expectation::Audio {
            within: Duration::from_secs(3),
        })
    );
    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - expect: { held: false }\n      - expect: { audio: true, held: true }\n",
    ));
    assert_eq!(
        brief(&e),
        [
            "18:25 `held: false` expects nothing",
            "19:32 `audio` and `held` in one `expect`: write one step for each",
        ]
    );
}

#[test]
fn transfer_steps_load_and_are_checked() {
    let text = BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - transfer: \"sip:3001@{domain}\"\n      - transfer: { to: carol, within: 4s }\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    let steps: Vec<&Step> = caller.steps.iter().map(|s| &s.value).collect();
    let Step::Transfer {
        to,
        within,
        consult: None,
        hear: None,
    } = steps[2]
    else {
        panic!("{:?}", steps[2]);
    };
    assert_eq!(*within, crate::scenario::model::DEFAULT_TRANSFER_WITHIN);
    assert!(to.uses(crate::scenario::text::Placeholder::Domain));
    let Step::Transfer { within, .. } = steps[3] else {
        panic!("{:?}", steps[3]);
    };
    assert_eq!(*within, Duration::from_secs(4));
    assert_eq!(steps[3].name(), "transfer");

    // `{peer}` is not a placeholder of `transfer`; `to` is needed.
    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - transfer: \"sip:{peer}@{domain}\"\n      - transfer: { within: 2s }\n",
    ));
    assert_eq!(e.len(), 2, "{}", super::report(&e));
    assert_eq!((e[0].line, e[1].line), (18, 19));
    assert!(
        e[1].message.starts_with("`transfer` needs `to`"),
        "{}",
        e[1].message
    );
}

#[test]
fn attended_transfers_and_replaced_expectations_load_and_are_checked() {
    let text = BASE
        .replace(
            "      - hangup: { after: 1s }\n",
            "      - transfer: { to: \"sip:3001@{domain}\", attended: true, consult: callee, hear: 1kHz }\n",
        )
        .replace(
            "      - wait_for: bye\n",
            "      - expect: { replaced: true, within: 3s }\n      - wait_for: bye\n",
        );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let caller = scenario.roles.iter().find(|r| r.name == "caller").unwrap();
    let Step::Transfer { consult, hear, .. } = &caller.steps[2].value else {
        panic!("{:?}", caller.steps[2].value);
    };
    assert_eq!(consult.as_deref(), Some("callee"));
    assert_eq!(*hear, Some(1000.0));
    let callee = scenario.roles.iter().find(|r| r.name == "callee").unwrap();
    assert!(callee.steps.iter().any(|s| s.value
        == Step::Expect(Expectation::Replaced {
            within: Duration::from_secs(3)
        })));

    // `attended` needs `consult`, `consult` needs `attended` and a role of that name.
    let e = errors(&BASE.replace(
        "      - hangup: { after: 1s }\n",
        "      - transfer: { to: x, attended: true }\n      - transfer: { to: x, consult: callee }\n      - transfer: { to: x, attended: true, consult: calee }\n      - transfer: { to: x, hear: 1kHz }\n",
    ));
    let brief = brief(&e);
    assert_eq!(brief.len(), 4, "{brief:?}");
    assert!(
        brief[3].contains("`hear` is for an attended transfer"),
        "{brief:?}"
    );
    assert!(
        brief[0].contains("`attended: true` needs `consult`"),
        "{brief:?}"
    );
    assert!(
        brief[1].contains("`consult` is for an attended transfer"),
        "{brief:?}"
    );
    assert!(brief[2].contains("there is no role `calee`"), "{brief:?}");
    let e = errors(&BASE.replace(
        "      - wait_for: bye\n",
        "      - expect: { replaced: false }\n      - wait_for: bye\n",
    ));
    assert!(brief_has(&e, "`replaced: false` expects nothing"));
}

fn brief_has(e: &[ScenarioError], what: &str) -> bool {
    e.iter().any(|e| e.message.contains(what))
}

#[test]
fn transferred_expectations_load_with_their_default_and_are_checked() {
    let text = BASE.replace(
        "      - wait_for: bye\n",
        "      - expect: { transferred: true }\n      - expect: { transferred: true, within: 3s }\n      - wait_for: bye\n",
    );
    let scenario = match load("scenarios/x.yaml", &text, &no_env, &files) {
        Ok(s) => s,
        Err(errors) => panic!("{}", super::report(&errors)),
    };
    let callee = scenario.roles.iter().find(|r| r.name == "callee").unwrap();
    let steps: Vec<&Step> = callee.steps.iter().map(|s| &s.value).collect();
    assert_eq!(
        steps[2],
        &Step::Expect(Expectation::Transferred {
            within: crate::scenario::model::DEFAULT_TRANSFER_WITHIN
        })
    );
    assert_eq!(
        steps[3],
        &Step::Expect(Expectation::Transferred {
            within: Duration::from_secs(3)
        })
    );

    // `false` expects nothing; before any call there is nothing to transfer; one kind a step.
    let e = errors(&BASE.replace(
        "      - register\n      - answer: { ring: 500ms }\n",
        "      - expect: { transferred: true }\n      - answer: { ring: 500ms }\n      - expect: { transferred: false }\n      - expect: { transferred: true, held: true }\n",
    ));
    assert_eq!(e.len(), 3, "{}", super::report(&e));
    assert_eq!((e[0].line, e[1].line, e[2].line), (10, 12, 13));
    assert!(e[0].message.contains("no call yet"), "{}", e[0].message);
    assert!(
        e[1].message
            .contains("`transferred: false` expects nothing"),
        "{}",
        e[1].message
    );
    assert!(
        e[2].message.contains("write one step for each"),
        "{}",
        e[2].message
    );
}

/// Three conference parties calling one room, and a listener that plays nothing.
const CONFERENCE: &str = "\
name: t
target: { direct: true, domain: 127.0.0.1 }
accounts:
  range: { from: 1000, count: 4 }
roles:
  alice:
    accounts: 1000
    steps:
      - call: { to: \"sip:room@127.0.0.1:5070\" }
      - play: { party: true }
      - expect: { hears: [bob, carol] }
      - hangup: { after: 1s }
  listener:
    accounts: 1001
    steps:
      - call: { to: \"sip:room@127.0.0.1:5070\" }
      - expect: { hears: [alice, bob, carol], within: 4s }
      - hangup: { after: 1s }
  bob:
    accounts: 1002
    steps:
      - call: { to: \"sip:room@127.0.0.1:5070\" }
      - play: { party: true }
      - expect: { hears: alice }
      - hangup: { after: 1s }
  carol:
    accounts: 1003
    steps:
      - call: { to: \"sip:room@127.0.0.1:5070\" }
      - play: { party: true }
      - hangup: { after: 1s }
";

#[test]
fn conference_parties_are_numbered_in_role_order_and_hears_names_them() {
    use crate::media::conference::Party;
    use crate::scenario::model::ConferenceParty;
    let s = load("scenarios/x.yaml", CONFERENCE, &no_env, &files).unwrap();
    let party = |role: &str, i: usize| ConferenceParty {
        role: role.into(),
        party: Party::new(i).unwrap(),
    };
    // The listener plays no tone: it takes no number, and carol is the third party.
    assert_eq!(
        s.role("carol").unwrap().steps[1].value,
        Step::Play(vec![PlayItem::Party(Party::new(2).unwrap())])
    );
    assert_eq!(
        s.role("alice").unwrap().steps[2].value,
        Step::Expect(Expectation::Hears {
            parties: vec![party("bob", 1), party("carol", 2)],
            own: Some(party("alice", 0)),
            within: Duration::from_secs(10),
        })
    );
    assert_eq!(
        s.role("listener").unwrap().steps[1].value,
        Step::Expect(Expectation::Hears {
            parties: vec![party("alice", 0), party("bob", 1), party("carol", 2)],
            own: None,
            within: Duration::from_secs(4),
        })
    );
    let Step::Expect(Expectation::Hears { parties, .. }) = &s.role("bob").unwrap().steps[2].value
    else {
        panic!("not hears")
    };
    assert_eq!(parties, &[party("alice", 0)]);
}

#[test]
fn bad_conference_steps_are_reported_at_their_position() {
    let text = CONFERENCE
        .replace(
            "      - expect: { hears: [bob, carol] }\n",
            "      - expect: { hears: [bob, alice, listener, bob, dave] }\n      - expect: { hears: [], within: 200ms }\n      - play: [ { party: true }, { silence: 1s } ]\n      - play: { party: false }\n      - play: { party: true, level: -10dBFS }\n      - expect: { hears: bob, min_snr: 10dB }\n",
        );
    assert_eq!(
        brief(&errors(&text)),
        [
            "11:32 role `alice` cannot expect to hear itself: its own party tone heard back fails the step as an echo",
            "11:39 role `listener` plays no party tone, so it cannot be heard",
            "11:49 `bob` is named twice",
            "11:54 there is no role `dave`",
            "12:26 `hears` names nobody",
            "12:38 a party is heard after 0.3 s of its tone: `within` must be at least that",
            "13:19 a party tone plays until the call ends, alone: it cannot be part of a list",
            "14:24 `party: false` plays nothing",
            "15:30 `level` applies to a tone, not to `party`",
            "16:31 `min_snr` applies to `expect: { tone }`, not to `hears`",
        ]
    );
    // A tenth party has no tone left.
    let mut text = String::from(
        "name: t\ntarget: { direct: true, domain: 127.0.0.1 }\naccounts:\n  range: { from: 1000, count: 11 }\nroles:\n",
    );
    for i in 0..10 {
        text.push_str(&format!(
            "  p{i}:\n    count: 1\n    steps:\n      - call: {{ to: \"sip:room@127.0.0.1:5070\" }}\n      - play: {{ party: true }}\n      - hangup: {{ after: 1s }}\n"
        ));
    }
    text.push_str("  l:\n    count: 1\n    steps:\n      - call: { to: \"sip:room@127.0.0.1:5070\" }\n      - expect: { hears: [p0, p9] }\n      - hangup: { after: 1s }\n");
    assert_eq!(
        brief(&errors(&text)),
        [
            "64:17 role `p9` would be conference party 10: the party tones tell at most 9 apart",
            "70:31 role `p9` has no party tone left: the party tones tell at most 9 apart",
        ]
    );
}
