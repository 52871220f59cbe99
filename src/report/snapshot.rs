//! Snapshot files for the reporters' tests, under `tests/snapshots/`.
//!
//! A test renders a report for a fixed synthetic run and compares it with the file. After a
//! deliberate change, `UPDATE_SNAPSHOTS=1 cargo test --lib report` rewrites the files; review
//! the diff before committing it.

use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

/// Panics, with a diff-friendly message, unless `actual` equals the snapshot `name`.
pub(crate) fn assert_snapshot(name: &str, actual: &str) {
    let path = path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a snapshot directory"))
            .expect("create tests/snapshots");
        std::fs::write(&path, actual).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}): run with UPDATE_SNAPSHOTS=1 to create it, then review it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the snapshot at line {}\n--- expected\n{}\n--- actual\n{}\n\
             (UPDATE_SNAPSHOTS=1 rewrites it if the change is deliberate)",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}
