//! No password ever appears in anything sipcheck writes: stdout and stderr of
//! every command (text, `--json`, `-vv`, `RUST_LOG=trace`), the `run`
//! console, JUnit and JSON reports, and `validate`'s error output.
//!
//! Two secrets, against a real Kamailio (password rule: "pw" + user):
//! - [`WRONG`] is given where Kamailio expects another password, so it
//!   flows through the digest computation, the rejection and the ladder;
//! - [`RIGHT_PREFIX`]: users `Xy7secretQ9a`/`Xy7secretQ9b` have the
//!   passwords `pwXy7secretQ9a`/`pwXy7secretQ9b`, so the success paths
//!   (registered, call answered, unregistered) carry a password too. The user
//!   names appear in the output by design; "pw" + user never should.
//!
//! The SIP message trace (`-v` on stderr, `--trace-sip FILE`) is checked too: it carries
//! every REGISTER and INVITE with its `Authorization`, whose digest response is masked.
//!
//! Not covered: a panic's message (no way to force one from outside).

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::kamailio::Kamailio;
use support::process::RunDir;
use support::responder::Responder;
use support::{describe_output, free_port, run_sipcheck_with_timeout};

/// A wrong password (Kamailio wants "pw" + user).
const WRONG: &str = "Xy7-secret-Q9";
/// The start of every right password used here.
const RIGHT_PREFIX: &str = "pwXy7secretQ9";
const USER_A: &str = "Xy7secretQ9a";
const USER_B: &str = "Xy7secretQ9b";

fn right(user: &str) -> String {
    format!("pw{user}")
}

fn assert_clean(what: &str, text: &str) {
    for secret in [WRONG, RIGHT_PREFIX] {
        assert!(
            !text.contains(secret),
            "{what} contains the password {secret:?}:\n{text}"
        );
    }
}

fn assert_output_clean(what: &str, out: &Output) {
    let text = describe_output(out);
    assert!(!text.contains("panicked"), "{what} panicked:\n{text}");
    assert_clean(what, &text);
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_sipcheck_with_timeout(args, envs, Duration::from_secs(60))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extra flags and environment of one output variant.
type Variant = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// The output variants every probe is checked in.
const VARIANTS: &[Variant] = &[
    (&["-vv"], &[]),
    (&["--json", "-vv"], &[]),
    (&[], &[("RUST_LOG", "trace")]),
    (&["--json"], &[("RUST_LOG", "trace")]),
];

#[test]
fn register_never_prints_the_password() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.addr.to_string();
    for (extra, envs) in VARIANTS {
        // Wrong password by flag, then by SIP_PASSWORD.
        let mut args = vec![
            "register",
            "--server",
            &server,
            "--user",
            "1001",
            "--password",
            WRONG,
        ];
        args.extend_from_slice(extra);
        let out = run(&args, envs);
        assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
        assert!(
            stdout(&out).contains("401") || stdout(&out).contains("403"),
            "{}",
            describe_output(&out)
        );
        assert_output_clean(&format!("register --password {extra:?} {envs:?}"), &out);

        let mut args = vec!["register", "--server", &server, "--user", "1001"];
        args.extend_from_slice(extra);
        let mut envs = envs.to_vec();
        envs.push(("SIP_PASSWORD", WRONG));
        let out = run(&args, &envs);
        assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
        assert_output_clean(&format!("register SIP_PASSWORD {extra:?} {envs:?}"), &out);

        // The right password, with unregister.
        let pw = right(USER_A);
        let mut args = vec![
            "register",
            "--server",
            &server,
            "--user",
            USER_A,
            "--unregister",
        ];
        args.extend_from_slice(extra);
        let mut envs = envs.to_vec();
        envs.retain(|(k, _)| *k != "SIP_PASSWORD");
        envs.push(("SIP_PASSWORD", &pw));
        let out = run(&args, &envs);
        assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
        assert_output_clean(
            &format!("register (right password) {extra:?} {envs:?}"),
            &out,
        );
    }
}

#[test]
fn call_and_answer_never_print_the_password() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.addr.to_string();

    // A call with the wrong password: Kamailio's 407 is answered once, then rejected.
    for (extra, envs) in VARIANTS {
        let mut args = vec![
            "call",
            "sip:2001@127.0.0.1",
            "--server",
            &server,
            "--user",
            "1001",
            "--password",
            WRONG,
            "--rtp-ports",
            "30000-39999",
        ];
        args.extend_from_slice(extra);
        let out = run(&args, envs);
        assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
        assert!(stdout(&out).contains("407"), "{}", describe_output(&out));
        assert_output_clean(&format!("call (wrong password) {extra:?} {envs:?}"), &out);
    }

    // answer registering with the wrong password (SIP_PASSWORD) gives up.
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run(
        &[
            "answer", "--listen", &listen, "--server", &server, "--user", "2001", "--json", "-vv",
        ],
        &[("SIP_PASSWORD", WRONG), ("RUST_LOG", "trace")],
    );
    assert_ne!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert_output_clean("answer (wrong password)", &out);

    // Both right: answer registered as USER_B, a call from USER_A through Kamailio.
    let pw_a = right(USER_A);
    let pw_b = right(USER_B);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--server",
            &server,
            "--user",
            USER_B,
            "--password",
            &pw_b,
            "--no-media-ok",
            "--calls",
            "1",
            "--json",
            "-vv",
            "--rtp-ports",
            "30000-39999",
        ],
        &[("RUST_LOG", "trace")],
    );
    let to = format!("sip:{USER_B}@127.0.0.1");
    let dir = RunDir::new("secrets-call").unwrap();
    let trace = dir.join("call.trace");
    let out = run(
        &[
            "call",
            &to,
            "--server",
            &server,
            "--user",
            USER_A,
            "--register",
            "--no-media-ok",
            "--duration",
            "500ms",
            "-vv",
            "--trace-sip",
            trace.to_str().unwrap(),
            "--rtp-ports",
            "30000-39999",
        ],
        &[("SIP_PASSWORD", &pw_a), ("RUST_LOG", "trace")],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_output_clean("call (right password)", &out);
    // The trace and -vv's stderr hold the authenticated REGISTER and INVITE, masked.
    let traced = read(&trace);
    assert_clean("call --trace-sip", &traced);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for (what, text) in [("trace", &traced), ("stderr", &stderr)] {
        assert_authorization_masked(what, text, "REGISTER");
        assert_authorization_masked(what, text, "INVITE");
    }
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let answered = answer.output();
    assert!(answered.contains("\"kind\":\"call\""), "{answered}");
    assert_clean("answer (right password)", &answered);
}

/// `text` (a SIP trace) holds a `method` request with an `Authorization` or
/// `Proxy-Authorization` whose digest response is masked, and no unmasked response anywhere.
fn assert_authorization_masked(what: &str, text: &str, method: &str) {
    let has = text.split("\n\n").any(|message| {
        message
            .lines()
            .any(|l| l.starts_with(&format!("{method} sip:")))
            && message.lines().any(|l| {
                let l = l.to_ascii_lowercase();
                (l.starts_with("authorization:") || l.starts_with("proxy-authorization:"))
                    && l.contains("response=\"***\"")
            })
    });
    assert!(
        has,
        "{what}: no {method} with a masked digest response:\n{text}"
    );
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") || lower.starts_with("proxy-authorization:") {
            assert!(
                lower.contains("response=\"***\""),
                "{what}: an unmasked digest response: {line}"
            );
        }
    }
}

fn scenario(dir: &RunDir, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn read(path: &Path) -> String {
    support::process::read_lossy(path)
}

/// Runs a scenario with `--junit` (per call), `--json`, `--calls` and `--html` and checks
/// every output.
fn run_scenario_clean(what: &str, path: &str, dir: &RunDir, envs: &[(&str, &str)]) -> Output {
    let junit = dir.join(&format!("{what}.xml"));
    let json = dir.join(&format!("{what}.json"));
    let calls = dir.join(&format!("{what}.jsonl"));
    let html = dir.join(&format!("{what}.html"));
    let trace = dir.join(&format!("{what}.trace"));
    let out = run(
        &[
            "run",
            path,
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--calls",
            calls.to_str().unwrap(),
            "--junit-per-call",
            "--html",
            html.to_str().unwrap(),
            "-vv",
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
        envs,
    );
    assert_output_clean(&format!("run {what}"), &out);
    // Every registration was challenged and answered: the trace holds it, masked.
    let traced = read(&trace);
    assert_clean(&format!("{what} SIP trace"), &traced);
    assert_authorization_masked(&format!("{what} SIP trace"), &traced, "REGISTER");
    assert_authorization_masked(
        &format!("{what} -vv stderr"),
        &String::from_utf8_lossy(&out.stderr),
        "REGISTER",
    );
    let junit_text = read(&junit);
    let json_text = read(&json);
    assert!(
        junit_text.contains("<testsuite"),
        "{what}: no JUnit report\n{}",
        describe_output(&out)
    );
    assert!(
        json_text.contains("sipcheck.run/1"),
        "{what}: no JSON report\n{}",
        describe_output(&out)
    );
    assert_clean(&format!("{what} JUnit report"), &junit_text);
    assert_clean(&format!("{what} JSON report"), &json_text);
    assert_clean(&format!("{what} call records"), &read(&calls));
    let html_text = read(&html);
    assert!(
        html_text.contains("id=\"verdict\""),
        "{what}: no HTML report\n{}",
        describe_output(&out)
    );
    assert_clean(&format!("{what} HTML report"), &html_text);
    out
}

fn two_party(server: &str, accounts: &str, callee: &str, caller: &str) -> String {
    format!(
        "name: secrets\ntarget:\n  server: {server}\n  domain: 127.0.0.1\n{accounts}\
         media: {{ codecs: [PCMU], rtp_ports: 30000-39999 }}\n\
         roles:\n  callee:\n    accounts: {callee}\n    steps:\n      - register\n      - answer\n      - play: {{ tone: 1kHz }}\n      - expect: {{ tone: 440Hz, within: 2s }}\n      - wait_for: bye\n      - unregister\n\
         \x20 caller:\n    accounts: {caller}\n    steps:\n      - register\n      - call: {{ to: \"sip:{{peer}}@{{domain}}\", peer: callee, timeout: 5s }}\n      - play: {{ tone: 440Hz }}\n      - expect: {{ tone: 1kHz, within: 2s }}\n      - hangup: {{ after: 1s }}\n      - unregister\n"
    )
}

#[test]
fn run_reports_never_contain_the_password() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.addr.to_string();
    let dir = RunDir::new("secrets").unwrap();

    // Wrong passwords from a pattern with an environment variable: every UA's
    // registration is rejected.
    let pattern = scenario(
        &dir,
        "pattern.yaml",
        &two_party(
            &server,
            "accounts:\n  range: { from: 1000, count: 2 }\n  password: \"${HOSTILE_PW_PREFIX}{user}\"\n",
            "1000..1000",
            "1001..1001",
        ),
    );
    let out = run_scenario_clean(
        "pattern",
        &pattern,
        &dir,
        &[("HOSTILE_PW_PREFIX", WRONG), ("RUST_LOG", "trace")],
    );
    assert_ne!(out.status.code(), Some(0), "{}", describe_output(&out));

    // Wrong passwords from a CSV file.
    let csv = dir.join("wrong.csv");
    std::fs::write(
        &csv,
        format!("user,password\n1000,{WRONG}\n1001,{WRONG}x\n"),
    )
    .unwrap();
    let from_csv = scenario(
        &dir,
        "csv.yaml",
        &two_party(
            &server,
            &format!("accounts:\n  csv: {}\n", csv.display()),
            "\"1000\"",
            "\"1001\"",
        ),
    );
    let out = run_scenario_clean("csv", &from_csv, &dir, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", describe_output(&out));

    // Right passwords from a CSV file: the calls pass.
    let csv = dir.join("right.csv");
    std::fs::write(
        &csv,
        format!(
            "user,password\n{USER_A},{}\n{USER_B},{}\n",
            right(USER_A),
            right(USER_B)
        ),
    )
    .unwrap();
    let good = scenario(
        &dir,
        "good.yaml",
        &two_party(
            &server,
            &format!("accounts:\n  csv: {}\n", csv.display()),
            USER_B,
            USER_A,
        ),
    );
    let out = run_scenario_clean("good", &good, &dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    // The call records were written (both ends of the call), and hold no password.
    let records = read(&dir.join("good.jsonl"));
    assert_eq!(records.lines().count(), 2, "{records}");
    assert!(records.contains(USER_A), "{records}");
}

#[test]
fn validate_errors_never_quote_the_password() {
    let dir = RunDir::new("secrets-validate").unwrap();
    let good_accounts = format!(
        "accounts:\n  range: {{ from: 1000, count: 2 }}\n  password: \"{WRONG}{{user}}\"\n"
    );
    // An error elsewhere (a misspelt key).
    let elsewhere = scenario(
        &dir,
        "elsewhere.yaml",
        &two_party("127.0.0.1:5060", &good_accounts, "1000..1000", "1001..1001")
            .replace("- answer", "- answer: { rign: 1s }"),
    );
    for cmd in ["validate", "run"] {
        let out = run(&[cmd, &elsewhere], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
        assert!(
            describe_output(&out).contains("rign"),
            "{}",
            describe_output(&out)
        );
        assert_output_clean(&format!("{cmd} (error elsewhere)"), &out);
    }
    // An override with an error, next to the secret.
    let out = run(&["validate", &elsewhere, "--set", "load.rate=20x"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert_output_clean("validate --set error", &out);
}

#[test]
fn validate_error_on_the_password_line_does_not_quote_it() {
    let dir = RunDir::new("secrets-validate").unwrap();
    // The error is on the password line itself: an unset variable.
    let accounts = format!(
        "accounts:\n  range: {{ from: 1000, count: 2 }}\n  password: \"{WRONG}${{HOSTILE_UNSET_VAR_Q9}}{{user}}\"\n"
    );
    let on_line = scenario(
        &dir,
        "online.yaml",
        &two_party("127.0.0.1:5060", &accounts, "1000..1000", "1001..1001"),
    );
    let out = run(&["validate", &on_line], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(
        describe_output(&out).contains("HOSTILE_UNSET_VAR_Q9"),
        "{}",
        describe_output(&out)
    );
    assert_output_clean("validate (error on the password line)", &out);
}

#[test]
fn a_password_given_by_set_is_not_echoed_in_its_error() {
    let dir = RunDir::new("secrets-validate").unwrap();
    let accounts = "accounts:\n  range: { from: 1000, count: 2 }\n".to_string();
    let path = scenario(
        &dir,
        "set.yaml",
        &two_party("127.0.0.1:5060", &accounts, "1000..1000", "1001..1001"),
    );
    // A placeholder typo in the password override.
    let set = format!("accounts.password={WRONG}{{usr}}");
    let out = run(&["validate", &path, "--set", &set], &[]);
    let shown = describe_output(&out);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{shown}");
    assert_output_clean("validate --set accounts.password=…{usr}", &out);
}

#[test]
fn a_misspelt_password_key_and_a_broken_csv_line_do_not_quote_the_password() {
    let dir = RunDir::new("secrets-validate").unwrap();
    // The key is misspelt: it is no password key to the scenario, but its value is one.
    let accounts =
        format!("accounts:\n  range: {{ from: 1000, count: 2 }}\n  pasword: \"{WRONG}\"\n");
    let misspelt = scenario(
        &dir,
        "misspelt.yaml",
        &two_party("127.0.0.1:5060", &accounts, "1000..1000", "1001..1001"),
    );
    let out = run(&["validate", &misspelt], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(
        describe_output(&out).contains("pasword"),
        "{}",
        describe_output(&out)
    );
    assert_output_clean("validate (misspelt password key)", &out);

    // A CSV line whose quote around the password never closes.
    std::fs::write(
        dir.path().join("users.csv"),
        format!("alice,\"{WRONG}\nbob,{WRONG}\n"),
    )
    .unwrap();
    let csv = scenario(
        &dir,
        "csv.yaml",
        &two_party(
            "127.0.0.1:5060",
            &format!(
                "accounts:\n  csv: {}\n",
                dir.path().join("users.csv").display()
            ),
            "alice",
            "bob",
        ),
    );
    let out = run(&["validate", &csv], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(
        describe_output(&out).contains("unterminated quoted field"),
        "{}",
        describe_output(&out)
    );
    assert_output_clean("validate (CSV with an open quote)", &out);
}

/// Passwords a search-and-replace on output would find everywhere: in addresses, domains,
/// verdicts, status codes and JSON syntax.
const SHORT: &[&str] = &["0", "e", "lab", "FAIL", "\"", ",", ":", "100"];
/// A password found nowhere in any output: what the others are compared with.
const LONG: &str = "Qz8vLr3Wm2Kp7Tx9Hj4N";

/// The shape of a JSON value: its keys and the kinds of its values, not the values.
fn shape(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{}", shape(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(shape).collect::<Vec<_>>().join(","))
        }
        serde_json::Value::String(_) => "s".into(),
        serde_json::Value::Number(_) => "n".into(),
        serde_json::Value::Bool(_) => "b".into(),
        serde_json::Value::Null => "null".into(),
    }
}

/// Every line of `text` as JSON (panics naming `what` when one does not parse).
fn json_lines(what: &str, text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}")))
        .collect()
}

/// What of a text output cannot vary from one run to the next: its line count and how often
/// it says each of the words a redaction would have rewritten.
fn text_marks(text: &str) -> Vec<(String, usize)> {
    let mut marks = vec![("lines".to_string(), text.lines().count())];
    for word in [
        "127.0.0.1",
        "lab.local",
        "FAIL",
        "PASS",
        "***",
        "Unauthorized",
        "Proxy Authentication Required",
    ] {
        marks.push((word.to_string(), text.matches(word).count()));
    }
    marks
}

/// A SIP trace shows every message as it was: `***` only as the masked digest `response`
/// and `cnonce` of credentials, the addresses intact.
fn assert_trace_untouched(what: &str, traced: &str) {
    assert!(
        traced.contains("Via: SIP/2.0/UDP 127.0.0.1:"),
        "{what}: {traced}"
    );
    for line in traced.lines() {
        let lower = line.to_ascii_lowercase();
        if !(lower.starts_with("authorization:") || lower.starts_with("proxy-authorization:")) {
            assert!(
                !line.contains("***"),
                "{what}: a line of the trace rewritten: {line}"
            );
        }
    }
}

/// Runs `args` with each password of [`SHORT`] and with [`LONG`], in text and in JSON, and
/// checks that the password changed nothing: same exit code, the same marks in the text
/// (stdout and stderr), JSON that parses with the same shape and verdict (`json_report`: the
/// command prints JSON even when it fails).
fn assert_password_changes_nothing(what: &str, args: &[&str], json_report: bool) {
    let dir = RunDir::new("secrets-short").unwrap();
    let trace = dir.join("trace");
    let with = |password: &str, json: bool| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--password", password]);
        if json {
            all.push("--json");
        } else {
            all.extend(["--trace-sip", trace.to_str().unwrap()]);
        }
        run(&all, &[])
    };
    let text_ref = with(LONG, false);
    let json_ref = with(LONG, true);
    let ref_values = json_lines(what, &stdout(&json_ref));
    assert_eq!(
        !ref_values.is_empty(),
        json_report,
        "{}",
        describe_output(&json_ref)
    );
    for password in SHORT {
        let text = with(password, false);
        let shown = describe_output(&text);
        assert_trace_untouched(&format!("{what} --password {password:?}"), &read(&trace));
        assert!(!shown.contains("panicked"), "{what} {password:?}: {shown}");
        assert_eq!(
            text.status.code(),
            text_ref.status.code(),
            "{what} {password:?}: {shown}"
        );
        assert_eq!(
            text_marks(&stdout(&text)),
            text_marks(&stdout(&text_ref)),
            "{what} --password {password:?}:\n{shown}\n--- with a long password ---\n{}",
            describe_output(&text_ref)
        );
        assert_eq!(
            text_marks(&String::from_utf8_lossy(&text.stderr)),
            text_marks(&String::from_utf8_lossy(&text_ref.stderr)),
            "{what} --password {password:?}:\n{shown}\n--- with a long password ---\n{}",
            describe_output(&text_ref)
        );
        let json = with(password, true);
        let shown = describe_output(&json);
        assert_eq!(
            json.status.code(),
            json_ref.status.code(),
            "{what} {password:?}: {shown}"
        );
        let values = json_lines(&format!("{what} --password {password:?}"), &stdout(&json));
        assert_eq!(
            values.len(),
            ref_values.len(),
            "{what} {password:?}: {shown}"
        );
        for (v, r) in values.iter().zip(&ref_values) {
            assert_eq!(shape(v), shape(r), "{what} {password:?}: {shown}");
            assert_eq!(
                v.get("verdict"),
                r.get("verdict"),
                "{what} {password:?}: {shown}"
            );
        }
    }
}

#[test]
fn short_and_common_word_passwords_change_nothing_in_register_call_and_answer() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.addr.to_string();
    // Kamailio refuses each of them (it wants "pw" + user): the failure is reported whole.
    assert_password_changes_nothing(
        "register",
        &[
            "register",
            "--server",
            &server,
            "--user",
            "1000",
            "--domain",
            "lab.local",
        ],
        true,
    );
    let to = format!("sip:1001@{server}");
    assert_password_changes_nothing(
        "call",
        &[
            "call",
            &to,
            "--server",
            &server,
            "--user",
            "1000",
            "--no-media-ok",
        ],
        true,
    );
    let listen = format!("127.0.0.1:{}", free_port());
    assert_password_changes_nothing(
        "answer",
        &[
            "answer", "--listen", &listen, "--server", &server, "--user", "2001",
        ],
        // A refused registration is an error on stderr, whatever the format.
        false,
    );
}

#[test]
fn answer_with_password_100_prints_json_that_parses() {
    // A call's JSON is full of these: the caller is user 100, counts and codes are numbers.
    for password in ["100", "0", ":"] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut answer = Responder::start(
            &[
                "--listen",
                &listen,
                "--password",
                password,
                "--no-media-ok",
                "--calls",
                "1",
                "--json",
                "--rtp-ports",
                "30000-39999",
            ],
            &[],
        );
        let to = format!("sip:100@{listen}");
        let out = run(
            &[
                "call",
                &to,
                "--user",
                "100",
                "--no-media-ok",
                "--duration",
                "300ms",
                "--rtp-ports",
                "30000-39999",
            ],
            &[],
        );
        let shown = format!("{}\n{}", describe_output(&out), answer.output());
        assert_eq!(out.status.code(), Some(0), "{shown}");
        assert_eq!(
            answer.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{shown}"
        );
        let what = format!("answer --password {password:?} --json");
        let values = json_lines(&what, &answer.stdout());
        let call = values
            .iter()
            .find(|v| v["kind"] == "call")
            .unwrap_or_else(|| panic!("{what}: no call: {shown}"));
        assert_eq!(call["verdict"], "pass", "{what}: {shown}");
        assert_eq!(call["final_code"], 200, "{what}: {shown}");
        let from = call["from"].as_str().unwrap_or_default();
        assert!(
            from.starts_with("<sip:100@127.0.0.1>;tag="),
            "{what}: {shown}"
        );
        assert!(!answer.stdout().contains("***"), "{what}: {shown}");
    }
}

#[test]
fn short_and_common_word_passwords_change_nothing_in_run() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.addr.to_string();
    let dir = RunDir::new("secrets-short").unwrap();
    let outputs = |password: &str, name: &str| {
        // Single-quoted YAML takes every one of them as it is.
        let accounts =
            format!("accounts:\n  range: {{ from: 1000, count: 2 }}\n  password: '{password}'\n");
        let path = scenario(
            &dir,
            &format!("{name}.yaml"),
            &two_party(&server, &accounts, "1000..1000", "1001..1001"),
        );
        let json = dir.join(&format!("{name}.json"));
        let trace = dir.join(&format!("{name}.trace"));
        let out = run(
            &[
                "run",
                &path,
                "--json",
                json.to_str().unwrap(),
                "--trace-sip",
                trace.to_str().unwrap(),
            ],
            &[],
        );
        assert_trace_untouched(&format!("run {password:?}"), &read(&trace));
        let report: serde_json::Value = serde_json::from_str(&read(&json))
            .unwrap_or_else(|e| panic!("run {password:?}: JSON report ({e}): {}", read(&json)));
        (out, report)
    };
    let (text_ref, json_ref) = outputs(LONG, "long");
    for (i, password) in SHORT.iter().enumerate() {
        let (out, report) = outputs(password, &format!("short{i}"));
        let shown = describe_output(&out);
        assert_eq!(
            out.status.code(),
            text_ref.status.code(),
            "run {password:?}: {shown}"
        );
        assert_eq!(
            text_marks(&stdout(&out)),
            text_marks(&stdout(&text_ref)),
            "run {password:?}:\n{shown}\n--- with a long password ---\n{}",
            describe_output(&text_ref)
        );
        assert_eq!(
            report.get("verdict"),
            json_ref.get("verdict"),
            "run {password:?}"
        );
        assert_eq!(
            report["summary"].get("verdict").or(report.get("result")),
            json_ref["summary"]
                .get("verdict")
                .or(json_ref.get("result")),
            "run {password:?}"
        );
        assert!(
            !read(&dir.join(&format!("short{i}.json"))).contains("***"),
            "run {password:?}"
        );
    }
}
