//! A long WAV prompt costs its 8 kHz samples and no more: `validate` reads its header only,
//! `call` and `run` decode it as they read it, into one buffer of its final size. Peak memory is measured by the kernel (the children's
//! maximum resident set), so this file holds one test: no other child of this process counts.

mod support;

use std::io::Write;
use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use support::{describe_output, run_sipcheck_with_timeout};

/// 2 hours of 8 kHz 16-bit mono: 115.2 MB of samples.
const SECONDS: u32 = 2 * 3600;
const RATE: u32 = 8_000;

/// Write a 16-bit mono 8 kHz WAV file of `seconds` of a 1 kHz tone, a block at a time.
fn write_long_wav(path: &std::path::Path, seconds: u32) {
    let data = seconds * RATE * 2;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(b"RIFF").unwrap();
    out.write_all(&(36 + data).to_le_bytes()).unwrap();
    out.write_all(b"WAVEfmt ").unwrap();
    out.write_all(&16u32.to_le_bytes()).unwrap();
    out.write_all(&1u16.to_le_bytes()).unwrap(); // PCM
    out.write_all(&1u16.to_le_bytes()).unwrap(); // mono
    out.write_all(&RATE.to_le_bytes()).unwrap();
    out.write_all(&(RATE * 2).to_le_bytes()).unwrap();
    out.write_all(&2u16.to_le_bytes()).unwrap();
    out.write_all(&16u16.to_le_bytes()).unwrap();
    out.write_all(b"data").unwrap();
    out.write_all(&data.to_le_bytes()).unwrap();
    // One second of 1 kHz (8 samples a period), repeated.
    let second: Vec<u8> = (0..RATE)
        .flat_map(|i| {
            let v = 8_000.0 * (2.0 * std::f64::consts::PI * f64::from(i % 8) / 8.0).sin();
            (v as i16).to_le_bytes()
        })
        .collect();
    for _ in 0..seconds {
        out.write_all(&second).unwrap();
    }
    out.flush().unwrap();
}

/// The largest resident set of any child reaped so far, in bytes.
fn children_peak_rss() -> u64 {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    // Linux reports kilobytes.
    u64::try_from(usage.max_rss()).unwrap() * 1024
}

const MB: u64 = 1_000_000;

#[test]
fn a_two_hour_wav_is_validated_from_its_header_and_played_at_the_size_of_its_samples() {
    let dir = std::env::temp_dir().join(format!("sipcheck-wav-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("long.wav");
    write_long_wav(&wav, SECONDS);
    let file_size = std::fs::metadata(&wav).unwrap().len();
    assert_eq!(file_size, 44 + u64::from(SECONDS * RATE * 2));

    // Port 9 (discard) on loopback: nothing listens, the INVITE is refused at once by ICMP.
    let target = "127.0.0.1:9";
    let scenario = dir.join("long.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: long-prompt
target:
  server: {target}
  domain: pbx.test
accounts:
  range: {{ from: 1000, count: 2 }}
  password: pw{{user}}
roles:
  callee:
    accounts: 1000
    steps:
      - answer
      - play: {{ wav: {} }}
      - wait_for: bye
  caller:
    accounts: 1001
    steps:
      - call: {{ to: \"sip:{{peer}}@{{domain}}\", peer: callee }}
      - expect: {{ answered: true, within: 5s }}
      - hangup
",
            wav.display()
        ),
    )
    .unwrap();

    // validate: the header is enough; the samples are not decoded.
    let out = run_sipcheck_with_timeout(
        ["validate", scenario.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let validate_peak = children_peak_rss();
    assert!(
        validate_peak < 40 * MB,
        "validate of a {file_size}-byte WAV peaked at {validate_peak} bytes"
    );

    // call: the file is decoded (before anything is sent) to 8 kHz 16-bit samples, as large as
    // the file's own; the bound leaves no room for a second copy of them, nor for the file held
    // whole beside wide intermediate buffers (which made 14 times the file).
    let out = run_sipcheck_with_timeout(
        [
            "call",
            &format!("sip:x@{target}"),
            "--play-wav",
            wav.to_str().unwrap(),
            "--timeout",
            "2s",
        ],
        &[],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("long.wav"),
        "the WAV file was refused: {}",
        describe_output(&out)
    );
    let call_peak = children_peak_rss();
    assert!(
        call_peak < file_size + 40 * MB,
        "call with a {file_size}-byte WAV peaked at {call_peak} bytes"
    );
    assert!(
        call_peak > file_size,
        "the samples were not decoded at all: peak {call_peak} bytes"
    );

    // run: the same, once per file however many calls play it. Its call fails (nothing
    // listens); the memory is what is measured.
    let out = run_sipcheck_with_timeout(
        ["run", scenario.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("long.wav")
            && !String::from_utf8_lossy(&out.stderr).contains("long.wav"),
        "the WAV file was refused: {}",
        describe_output(&out)
    );
    let run_peak = children_peak_rss();
    assert!(
        run_peak < file_size + 40 * MB,
        "run with a {file_size}-byte WAV peaked at {run_peak} bytes"
    );

    // A header announcing those 2 hours in a 44-byte file: validate and run refuse it (exit 2),
    // naming the mismatch, as call does.
    let header_only = support::repo_root().join("fixtures/header-only-2h.wav");
    let text = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace(wav.to_str().unwrap(), header_only.to_str().unwrap());
    std::fs::write(&scenario, text).unwrap();
    for command in ["validate", "run"] {
        let out = run_sipcheck_with_timeout(
            [command, scenario.to_str().unwrap()],
            &[],
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("announces 115200000 bytes of samples, the file has 44 bytes"),
            "{command}: {}",
            describe_output(&out)
        );
    }

    std::fs::remove_dir_all(&dir).unwrap();
}
