//! `sipcheck completions SHELL` and `sipcheck man`: generated from the command line's own
//! definition, a bash script that bash accepts and completes with, man pages that render.

mod support;

use std::process::Command;

use support::process::RunDir;
use support::{describe_output, run_sipcheck};

#[test]
fn the_bash_completion_script_is_valid_bash_and_completes_commands_and_flags() {
    let out = run_sipcheck(["completions", "bash"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let dir = RunDir::new("completions").expect("a run directory");
    let script = dir.join("sipcheck.bash");
    std::fs::write(&script, &out.stdout).expect("the script written");

    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(syntax.status.success(), "{}", describe_output(&syntax));

    // Sourced, it registers itself and completes a command and a flag of `compare`.
    let complete = |words: &str, cword: usize| {
        let probe = format!(
            "source '{}' && complete -p sipcheck >/dev/null && COMP_WORDS=({words}) && \
             COMP_CWORD={cword} && _sipcheck sipcheck \"${{COMP_WORDS[$COMP_CWORD]}}\" \
             \"${{COMP_WORDS[$COMP_CWORD-1]}}\" && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash")
            .args(["-c", &probe])
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{}", describe_output(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(complete("sipcheck co", 1), "compare completions");
    assert_eq!(
        complete("sipcheck compare --max", 2),
        "--max-regression --max-failed-increase"
    );

    for shell in ["zsh", "fish"] {
        let out = run_sipcheck(["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("max-regression"), "{shell}: {text}");
    }
    let out = run_sipcheck(["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
}

#[test]
fn the_man_pages_render_with_groff_without_warnings() {
    let out = run_sipcheck(["man"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq"),
        "a roff header: {page}"
    );
    assert!(page.contains(".TH sipcheck 1"), "{page}");

    let dir = RunDir::new("man").expect("a run directory");
    let out = run_sipcheck(
        ["man", "--out-dir", dir.join("").to_str().expect("UTF-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    for name in [
        "sipcheck",
        "sipcheck-run",
        "sipcheck-compare",
        "sipcheck-call",
    ] {
        let page = dir.join(&format!("{name}.1"));
        // groff-base is part of every Debian system (man-db depends on it).
        let rendered = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("groff runs (Debian package groff-base)");
        assert!(
            rendered.status.success() && rendered.stderr.is_empty(),
            "{name}: {}",
            describe_output(&rendered)
        );
        let text = Command::new("groff")
            .args(["-man", "-Tascii", "-P-cbou"])
            .arg(&page)
            .output()
            .expect("groff runs");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("NAME"), "{name}: {text}");
        assert!(text.contains(name), "{name}: {text}");
    }
    let compare = std::fs::read_to_string(dir.join("sipcheck-compare.1")).expect("a page");
    assert!(compare.contains("max\\-regression"), "{compare}");

    let out = run_sipcheck(["man", "--out-dir", "/nonexistent/sipcheck-man"], &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write the manual pages"),
        "{shown}"
    );
}
