//! `record: true` steps in `sipcheck run`: the audio received during the step written as a
//! WAV file, read back with Python's `wave` module (its format, length and the tone in it),
//! only for failed calls by default (`--record-calls failed`), for every call with `all`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::describe_output;
use support::reports::{run_scenario as run, Reports};

const SCENARIO: &str = "tests/peers/scenarios/record-steps.yaml";

/// The WAV files in `dir`, sorted (none when it does not exist).
fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "wav"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Python's `wave` module on `path`: channels, sample width, rate, seconds, and the level of
/// 1 kHz against 440 Hz (Goertzel, dB) over the first `tone_s` seconds.
fn read_back(path: &Path, tone_s: f64) -> (u32, u32, u32, f64, f64) {
    let script = r#"
import math, struct, sys, wave
w = wave.open(sys.argv[1], "rb")
ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
x = struct.unpack("<%dh" % n, w.readframes(n))
part = x[: int(float(sys.argv[2]) * rate)]
def power(f):
    k = 2 * math.cos(2 * math.pi * f / rate)
    s1 = s2 = 0.0
    for v in part:
        s1, s2 = v + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2 + 1e-9
print(ch, width, rate, n / rate, 10 * math.log10(power(1000) / power(440)))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            path.to_str().expect("UTF-8"),
            &tone_s.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect();
    (f[0] as u32, f[1] as u32, f[2] as u32, f[3], f[4])
}

fn run_with(extra: &[&str]) -> (Option<i32>, Reports, String) {
    let port = support::free_port().to_string();
    let reports = Reports::new();
    let out = run(SCENARIO, extra, &[("CALLEE_PORT", port.as_str())], &reports);
    let shown = describe_output(&out);
    (out.status.code(), reports, shown)
}

#[test]
fn a_recorded_step_of_a_passing_call_is_written_with_record_calls_all() {
    let (code, reports, shown) = run_with(&["--record-calls", "all"]);
    assert_eq!(code, Some(0), "{shown}");
    // Beside the JSON report, by default.
    let dir = reports.path("recordings");
    let files = wavs(&dir);
    assert_eq!(files.len(), 1, "{files:?}\n{shown}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("caller-6501-") && name.ends_with("-line22.wav"),
        "{name}"
    );
    // The step heard the second of tone and then a second of silence: about 2 s, 8 kHz mono
    // 16-bit, 1 kHz far above 440 Hz in its first half.
    let (channels, width, rate, seconds, tone_db) = read_back(&files[0], 0.8);
    assert_eq!((channels, width, rate), (1, 2, 8000), "{name}");
    assert!((1.8..2.6).contains(&seconds), "{seconds} s\n{shown}");
    assert!(tone_db > 30.0, "1 kHz only {tone_db:.1} dB over 440 Hz");
}

#[test]
fn by_default_only_a_failed_calls_recording_is_written() {
    // Passing: nothing written.
    let (code, reports, shown) = run_with(&[]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(wavs(&reports.path("recordings")).is_empty(), "{shown}");

    // Failing: the step waits for 440 Hz for 1.5 s and hears the callee's 1 kHz, recorded into
    // the directory named.
    let rec = support::process::RunDir::new("recordings").expect("a directory");
    let dir = rec.join("evidence");
    let (code, _reports, shown) = run_with(&[
        "--set",
        "roles.caller.steps.1={expect: {tone: 440Hz, within: 1500ms, record: true}}",
        "--record-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("tone_missing"), "{shown}");
    let files = wavs(&dir);
    assert_eq!(files.len(), 1, "{files:?}\n{shown}");
    let (_, _, rate, seconds, tone_db) = read_back(&files[0], 0.8);
    assert_eq!(rate, 8000);
    assert!((1.2..1.7).contains(&seconds), "{seconds} s\n{shown}");
    assert!(tone_db > 30.0, "1 kHz only {tone_db:.1} dB over 440 Hz");
}

#[test]
fn record_on_a_step_that_hears_nothing_is_refused_at_its_line() {
    let (code, _reports, shown) = run_with(&[
        "--set",
        "roles.caller.steps.1={expect: {answered: true, record: true}}",
    ]);
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("`record` keeps the audio received during an `expect` on audio"),
        "{shown}"
    );
}
