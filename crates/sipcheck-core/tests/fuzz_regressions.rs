//! Replays the fuzz inputs through the fuzz targets' own code under `cargo test`.
//!
//! `fuzz/src/lib.rs` holds the body of every cargo-fuzz target (see `scripts/fuzz.sh`); it is
//! included here as a module, so each input runs through exactly the code libFuzzer ran. For
//! every target this replays
//!
//! * `fuzz/regressions/<target>/*`: minimized inputs that once crashed or hung a target (each
//!   must run in under libFuzzer's 5 s hang limit). A file here
//!   whose bug is not fixed yet makes this test fail; once fixed it guards against the bug
//!   coming back.
//! * `fuzz/corpus/<target>/*`: the small seed corpus, as a smoke test of the targets.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod targets;

/// `scripts/fuzz.sh` runs libFuzzer with `-timeout=5`: an input slower than that is a hang
/// (a debug build is slower than the fuzzer's optimised one, so this only errs on the side of
/// passing).
const HANG: Duration = Duration::from_secs(5);

/// The wall clock, to catch inputs that hang a target.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/sipcheck-core is two levels below the workspace root")
        .join("fuzz")
}

/// The files directly in `dir` (hidden ones excepted), sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs every input under `fuzz/<kind>/<target>/` through its target; returns how many ran
/// and describes each that panicked.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let mut ran = 0;
    let mut failures = Vec::new();
    for &(name, target) in targets::TARGETS {
        for path in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = fs::read(&path).expect("readable input");
            ran += 1;
            let started = clock();
            let outcome = catch_unwind(AssertUnwindSafe(|| target(&data)));
            let took = clock().duration_since(started);
            if took > HANG {
                failures.push(format!(
                    "{name}: {}: took {took:?}, more than libFuzzer's {HANG:?} hang limit",
                    path.display()
                ));
            }
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                let shown: String = String::from_utf8_lossy(&data).chars().take(400).collect();
                failures.push(format!(
                    "{name}: {}: {message}\n  input ({} bytes): {shown:?}",
                    path.display(),
                    data.len()
                ));
            }
        }
    }
    (ran, failures)
}

#[test]
fn fuzz_regressions_do_not_crash() {
    let (_, failures) = replay("regressions");
    assert!(
        failures.is_empty(),
        "{} fuzz regression input(s) still crash:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_seed_corpus_does_not_crash() {
    let (ran, failures) = replay("corpus");
    assert!(
        ran > 0,
        "no seed corpus found under {}",
        fuzz_dir().display()
    );
    assert!(
        failures.is_empty(),
        "{} seed input(s) crash:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
