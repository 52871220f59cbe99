//! The `sipcheck` command line.

mod logging;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sipcheck::exit::Exit;
use std::path::PathBuf;

use sipcheck::probe::{self, ProbeError, Verdict};
use sipcheck::terminal::{escape_controls, TerminalWriter};

const OPTIONS_HELP: &str = "\
Examples:
  sipcheck options sip:pbx.example.com
  sipcheck options sip:1001@pbx.example.com --proxy 192.0.2.10:5060 --transport tcp
  sipcheck options sip:127.0.0.1:5060 --timeout 2s -v --trace-sip options.trace

Exit codes:
  0  a 2xx answered
  1  the peer failed: another final response, no response (Timer F or --timeout), ICMP port
     unreachable or a refused/closed TCP connection
  2  usage error: bad flags, unparsable URI, unresolvable host, local port in use
  3  internal error in sipcheck";

const REGISTER_HELP: &str = "\
Examples:
  export SIP_PASSWORD=secret
  sipcheck register --server pbx.example.com --user 1001
  sipcheck register --server pbx.example.com --user 1001 --keep --expires 600
  sipcheck register --server pbx.example.com --user 1001 --unregister-all

By default the binding is removed again (Expires: 0) before sipcheck exits; --keep leaves it.

Exit codes:
  0  registered (and unregistered, unless --keep)
  1  the registrar failed: an error response, rejected credentials, a challenge with no
     password given, no response (Timer F or --timeout), ICMP port unreachable
  2  usage error: bad flags, unresolvable host, local port in use
  3  internal error in sipcheck";

const CALL_HELP: &str = "\
Examples:
  export SIP_PASSWORD=secret
  sipcheck call sip:2001@pbx.example.com --server pbx.example.com --user 1001 \\
      --play-tone 440 --expect-tone 1000 --duration 5s
  sipcheck call sip:ivr@192.0.2.20 --play-wav prompt.wav --record heard.wav
  sipcheck call sip:2001@pbx.example.com --user 1001 --cancel-after 2s
  sipcheck call sip:test@127.0.0.1:5070 -v --trace-sip call.trace
  sipcheck call sip:test@127.0.0.1:5070 --play-tone 440 --pcap call.pcap   # for Wireshark

Exit codes:
  0  answered, every expectation held (or cancelled with 487 when --cancel-after)
  1  the call failed: an error response, no answer, Timer B or --timeout, ICMP port
     unreachable, a missing tone, DTMF digit or RTP
  2  usage error: bad flags, unparsable URI, unresolvable host, unreadable WAV file
  3  internal error in sipcheck";

const ANSWER_HELP: &str = "\
Examples:
  sipcheck answer --listen 127.0.0.1:5070 --play-tone 1000 --expect-tone 440
  SIP_PASSWORD=secret sipcheck answer --listen 192.0.2.5:5070 --server pbx.example.com \\
      --user 2001 --ring 1s
  sipcheck answer --listen 127.0.0.1:5070 --reject 486 --calls 1

Exit codes:
  0  every call received passed (after --calls N, Ctrl-C or SIGTERM)
  1  a call failed (including INVITEs refused as malformed or unacceptable), or the
     registration failed: an error response, rejected credentials, a challenge with no
     password given, no response
  2  usage error: bad flags, listen address in use, unreadable WAV file
  3  internal error in sipcheck";

const VALIDATE_HELP: &str = "\
Examples:
  sipcheck validate scenarios/selftest.yaml
  sipcheck validate load.yaml --set load.rate=50/s

Exit codes:
  0  the scenario is valid
  2  it is not: every error printed as file:line:col
  3  internal error in sipcheck";

const RUN_HELP: &str = "\
Examples:
  sipcheck run scenarios/selftest.yaml
  sipcheck run load.yaml --set load.rate=50/s --junit report.xml --json report.json
  sipcheck run scenarios/selftest.yaml -v --trace-sip run.trace
  sipcheck run scenarios/selftest.yaml --pcap run.pcap    # every packet, for Wireshark
  sipcheck run load.yaml --series series.csv --metrics metrics.txt  # per second; GitLab
  sipcheck run load.yaml --shard 1/3 --start-at 2026-12-07T12:00:00Z --json shard-1.json
  sipcheck run load.yaml --pcap failed.pcap --pcap-calls failed     # the failed calls only
  sipcheck run load.yaml --hdr-log latency.hlog     # HdrHistogram interval log, per second

Exit codes:
  0    every call passed its expectations (or, with thresholds, every threshold held)
  1    a call failed
  2    usage error: invalid scenario or flags, nothing was run
  3    internal error in sipcheck
  99   a threshold failed
  130  interrupted (Ctrl-C or SIGTERM): calls hung up, reports written
  131  interrupted twice: left at once, no report written";

const COMPARE_HELP: &str = "\
Examples:
  sipcheck compare baseline.json summary.json
  sipcheck compare baseline.json summary.json --max-regression invite_to_200.p99=10% \\
      --max-regression rtp.loss=0.5pt --max-failed-increase 0.1pt
  sipcheck compare baseline.json summary.json --max-regression p99=20% --json

Exit codes:
  0  every figure within its tolerance (the failed-call ratio may not rise unless
     --max-failed-increase allows it)
  1  a figure regressed beyond its tolerance, or had no data to compare (each named)
  2  usage error: a file unreadable or not a sipcheck run summary, a malformed tolerance,
     an unknown metric (the valid names listed)
  3  internal error in sipcheck";

/// SIP/RTP voice test harness: probes, scenarios, load, verified media.
#[derive(Debug, Parser)]
#[command(name = "sipcheck", version, about, max_term_width = 100)]
struct Cli {
    /// More output on stderr: -v prints every SIP message sent and received (start line,
    /// headers, body) and debug logs, -vv also RTP stream events and trace logs. Credentials
    /// are masked. RUST_LOG overrides the log level.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Write every SIP message sent and received to FILE: its time, direction, transport,
    /// addresses and full text (credentials masked).
    #[arg(long, value_name = "FILE", global = true)]
    trace_sip: Option<PathBuf>,
    /// Write every SIP message and RTP packet sent and received to FILE as a packet capture
    /// (pcap, raw IPv4/IPv6 with UDP or TCP headers) that Wireshark and tshark open.
    #[arg(long, value_name = "FILE", global = true)]
    pcap: Option<PathBuf>,
    /// With --pcap, for `run`: which calls' packets the capture keeps: `all`, `failed` (the
    /// failed calls' SIP and RTP, each call's last 4 MiB), or N (the first N calls to fail).
    /// Packets of no call (REGISTER, OPTIONS) are always kept.
    #[arg(long, value_name = "failed|all|N", global = true, requires = "pcap")]
    pcap_calls: Option<sipcheck_core::capture::select::Keep>,
    /// With --pcap-calls failed|N: the most bytes of packets kept per call (its last ones),
    /// e.g. 16MiB (1KiB to 512MiB).
    #[arg(long, value_name = "SIZE", global = true, requires = "pcap_calls",
          value_parser = sipcheck_core::capture::select::parse_size)]
    pcap_call_limit: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send OPTIONS to a SIP URI and print the final status and round-trip time.
    #[command(after_help = OPTIONS_HELP)]
    Options(probe::options::OptionsArgs),
    /// Register a user (answering the digest challenge), print the ladder and round-trip time.
    #[command(after_help = REGISTER_HELP)]
    Register(probe::register::RegisterArgs),
    /// Place one call with real audio: play and expect tones or DTMF, then PASS or FAIL.
    #[command(after_help = CALL_HELP)]
    Call(Box<probe::call::CallArgs>),
    /// Answer calls: ring, answer, play and verify audio, hang up; a line per call.
    #[command(after_help = ANSWER_HELP)]
    Answer(Box<sipcheck::answer::AnswerArgs>),
    /// Check a scenario file without running it: every error, as file:line:col.
    #[command(after_help = VALIDATE_HELP)]
    Validate(ValidateCmd),
    /// Run a scenario: its user agents, load, expectations, thresholds and reports.
    #[command(after_help = RUN_HELP)]
    Run(RunCmd),
    /// Compare two run summaries (`run --json`): a table of both, exit 1 on a regression.
    #[command(after_help = COMPARE_HELP)]
    Compare(sipcheck::compare::CompareArgs),
    /// Merge the JSON summaries of a sharded run's shards (`run --shard I/N --json`) into
    /// the whole run's reports; the exit code is the merged verdict.
    #[command(after_help = MERGE_HELP)]
    Merge(sipcheck::merge::MergeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write every page (one per command) into a directory.
    #[command(after_help = MAN_HELP)]
    Man {
        /// Write sipcheck.1 and a page per command (sipcheck-run.1 …) into DIR.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

const MERGE_HELP: &str = "\
Examples:
  sipcheck run load.yaml --shard 0/3 --json shard-0.json   (and 1/3, 2/3, elsewhere)
  sipcheck merge shard-*.json --json summary.json --junit junit.xml

Histograms are added exactly and the scenario's thresholds judged again on the merged
figures. Shards of another scenario or sipcheck version are refused (exit 2); a shard
missing fails the verdict (exit 1).

Exit codes: as run's: 0 passed, 1 failed (or a shard missing), 2 bad input, 99 thresholds.";

const MAN_HELP: &str = "\
Install:
  mkdir -p ~/.local/share/man/man1 && sipcheck man --out-dir ~/.local/share/man/man1
  man sipcheck";

const COMPLETIONS_HELP: &str = "\
Install:
  bash: sipcheck completions bash > ~/.local/share/bash-completion/completions/sipcheck
  zsh:  sipcheck completions zsh > ~/.zfunc/_sipcheck   (with fpath+=~/.zfunc before compinit)
  fish: sipcheck completions fish > ~/.config/fish/completions/sipcheck.fish";

/// `--series-interval`: a duration of at least 1 ms.
fn parse_series_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = probe::args::parse_duration(s)?;
    if d < std::time::Duration::from_millis(1) {
        return Err("the interval must be at least 1ms".into());
    }
    Ok(d)
}

/// Writes the completion script for `shell`, or the man page, to `out` (or the man pages of
/// every command to a directory).
fn write_generated(command: &Command, out: &mut impl Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cli, "sipcheck", out);
            Ok(())
        }
        Command::Man { out_dir: Some(dir) } => {
            clap_mangen::generate_to(cli, dir)?;
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let ours = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sipcheck") && n.ends_with(".1"));
                if ours {
                    let page = std::fs::read_to_string(&path)?;
                    std::fs::write(&path, roff_ascii(&page))?;
                }
            }
            Ok(())
        }
        _ => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cli).render(&mut page)?;
            out.write_all(roff_ascii(&String::from_utf8_lossy(&page)).as_bytes())
        }
    }
}

/// A roff page in ASCII: every other character as its groff glyph escape (`\[u2212]` for
/// U+2212), which groff reads whatever the input encoding it assumes (Latin-1 by default).
fn roff_ascii(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

#[derive(Debug, Args)]
struct RunCmd {
    /// The scenario file (YAML).
    file: String,
    /// Write a JUnit XML report here (overrides the scenario's `reports.junit`).
    #[arg(long, value_name = "PATH")]
    junit: Option<String>,
    /// Write a JSON summary here (overrides the scenario's `reports.json`).
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
    /// Write the run's time series here as it goes, one row per interval: CSV, or JSON
    /// Lines when PATH ends in .jsonl (overrides the scenario's `reports.series`).
    #[arg(long, value_name = "PATH")]
    series: Option<String>,
    /// The time series' interval, and the HdrHistogram interval log's.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_series_interval)]
    series_interval: std::time::Duration,
    /// Write the latency histograms here as the run goes, one line per interval and timing
    /// metric, in the HdrHistogram interval log format (V2 compressed histograms, tagged with
    /// the metric's name), for HdrHistogram's own tools.
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<String>,
    /// Write the headline figures here in the OpenMetrics text format, for GitLab's metrics
    /// report (overrides the scenario's `reports.metrics`).
    #[arg(long, value_name = "PATH")]
    metrics: Option<String>,
    /// Write one JSON line per call end here, as the calls end (overrides the scenario's
    /// `reports.calls`; `-` for standard output).
    #[arg(long, value_name = "FILE.jsonl")]
    calls: Option<String>,
    /// Add one JUnit test case per call (at most 1000) to the JUnit report.
    #[arg(long)]
    junit_per_call: bool,
    /// Write the audio received during `record: true` steps here, as WAV files
    /// (ROLE-USER-CALLID-lineN.wav; default: `recordings/` beside the JSON report, else the
    /// JUnit report, else in the current directory).
    #[arg(long, value_name = "DIR")]
    record_dir: Option<String>,
    /// Whose `record: true` recordings are written: `failed` (the default: the failed calls')
    /// or `all`.
    #[arg(long, value_name = "failed|all", default_value = "failed",
          value_parser = ["failed", "all"])]
    record_calls: String,
    /// Write the run as one self-contained HTML page with charts here, at its end (the
    /// time series at --series-interval, whether or not --series is given; overrides the
    /// scenario's `reports.html`).
    #[arg(long, value_name = "FILE.html")]
    html: Option<String>,
    /// Override a value, e.g. --set load.rate=50/s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    shard: sipcheck::run::ShardArgs,
    #[command(flatten)]
    tls: sipcheck::probe::args::TlsArgs,
    /// With `transport: tls`: our certificate chain (PEM), for the connections peers open
    /// to the roles.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// With `transport: tls`: the private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct ValidateCmd {
    /// The scenario file (YAML).
    file: String,
    /// Override a value, e.g. --set load.rate=50/s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let trace_file = match &cli.trace_sip {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!(
                    "sipcheck: error: cannot create the SIP trace {}: {e}",
                    path.display()
                );
                return Exit::Usage.into();
            }
        },
        None => None,
    };
    sipcheck::drive::trace::install(cli.verbose >= 1, trace_file);
    if cli.pcap_calls.is_some() && !matches!(cli.command, Command::Run(_)) {
        eprintln!("sipcheck: error: --pcap-calls applies to `run` only");
        return Exit::Usage.into();
    }
    if let Some(path) = &cli.pcap {
        let keep = cli
            .pcap_calls
            .unwrap_or(sipcheck_core::capture::select::Keep::All);
        let mut limits = sipcheck_core::capture::select::Limits::default();
        if let Some(per_call) = cli.pcap_call_limit {
            limits.per_call = per_call;
        }
        let installed = std::fs::File::create(path)
            .and_then(|file| sipcheck::drive::capture::install(path.clone(), file, keep, limits));
        if let Err(e) = installed {
            eprintln!(
                "sipcheck: error: cannot create the capture {}: {e}",
                path.display()
            );
            return Exit::Usage.into();
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipcheck: cannot start the runtime: {e}");
            return Exit::Internal.into();
        }
    };
    let exit = runtime.block_on(run(cli.command));
    sipcheck::drive::trace::flush();
    if let Some(summary) = sipcheck::drive::capture::finish() {
        eprintln!("sipcheck: {summary}");
    }
    logging::summarize();
    exit.into()
}

async fn run(command: Command) -> Exit {
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Options(cmd) => {
            let result = probe::options::run(&cmd).await;
            finish(
                result,
                cmd.net.json,
                |r| r.verdict,
                |r, out| r.write_text(out),
                &mut stdout,
            )
        }
        Command::Call(args) => {
            let result = probe::call::run(&args).await;
            finish(
                result,
                args.net.json,
                |r| r.verdict,
                |r, out| r.write_text(out),
                &mut stdout,
            )
        }
        Command::Answer(args) => {
            // JSON escapes its own strings; text is escaped for the terminal.
            let mut out: Box<dyn Write> = if args.json {
                Box::new(&mut stdout)
            } else {
                Box::new(TerminalWriter::new(&mut stdout))
            };
            let result = sipcheck::answer::run(&args, &mut out).await;
            match result {
                Ok(mut totals) => {
                    let _ = totals.write(args.json, &mut out);
                    let _ = out.flush();
                    Exit::from(totals.verdict())
                }
                Err(e) => {
                    drop(out);
                    eprintln!("sipcheck: error: {}", escape_controls(&e.to_string()));
                    // The same failure as `register`'s (a refused registration) exits alike.
                    if e.is_peer_failure() {
                        Exit::Failure
                    } else {
                        Exit::Usage
                    }
                }
            }
        }
        Command::Run(cmd) => {
            let args = sipcheck::run::RunArgs {
                file: cmd.file,
                overrides: cmd.set,
                junit: cmd.junit,
                json: cmd.json,
                series: cmd.series,
                series_interval: cmd.series_interval,
                hdr_log: cmd.hdr_log,
                metrics: cmd.metrics,
                calls: cmd.calls,
                junit_per_call: cmd.junit_per_call,
                record_dir: cmd.record_dir,
                record_all: cmd.record_calls == "all",
                html: cmd.html,
                shard: cmd.shard,
                tls: {
                    let mut tls = cmd.tls.options();
                    tls.server_cert = cmd.cert.zip(cmd.key);
                    tls
                },
            };
            sipcheck::run::run(&args, &mut stdout).await
        }
        Command::Compare(args) => sipcheck::compare::run(&args, &mut stdout),
        Command::Merge(args) => sipcheck::merge::run(&args, &mut stdout),
        command @ (Command::Completions { .. } | Command::Man { .. }) => {
            match write_generated(&command, &mut stdout) {
                Ok(()) => Exit::Success,
                Err(e) => match command {
                    // A directory that cannot take the pages is the user's to fix.
                    Command::Man { out_dir: Some(dir) } => {
                        eprintln!(
                            "sipcheck: error: cannot write the manual pages into {}: {e}",
                            escape_controls(&dir.display().to_string())
                        );
                        Exit::Usage
                    }
                    _ => {
                        eprintln!("sipcheck: cannot write: {e}");
                        Exit::Internal
                    }
                },
            }
        }
        Command::Validate(cmd) => match sipcheck::run::load::validate(&cmd.file, &cmd.set) {
            Ok(scenario) => {
                let calls = scenario.roles.iter().filter(|r| r.calls()).count();
                let _ = writeln!(
                    stdout,
                    "{}: valid: scenario {}, {} roles ({} calling), {} accounts, {} thresholds",
                    escape_controls(&cmd.file),
                    escape_controls(&scenario.name),
                    scenario.roles.len(),
                    calls,
                    scenario.accounts.len(),
                    scenario.thresholds.len()
                );
                Exit::Success
            }
            Err(e) => {
                eprint!("{}", escape_controls(&e.to_string()));
                Exit::Usage
            }
        },
        Command::Register(cmd) => {
            let result = probe::register::run(&cmd).await;
            finish(
                result,
                cmd.net.json,
                |r| r.verdict,
                |r, out| r.write_text(out),
                &mut stdout,
            )
        }
    }
}

/// Print a probe's report (text or JSON) or its error, and map it to an exit code.
fn finish<R: serde::Serialize>(
    result: Result<R, ProbeError>,
    json: bool,
    verdict: impl Fn(&R) -> Verdict,
    text: impl Fn(&R, &mut Vec<u8>) -> std::io::Result<()>,
    out: &mut impl Write,
) -> Exit {
    match result {
        Ok(report) => {
            let mut buf = Vec::new();
            let written = if json {
                serde_json::to_writer(&mut buf, &report)
                    .map_err(std::io::Error::other)
                    .and_then(|()| writeln!(buf))
            } else {
                text(&report, &mut buf)
            };
            if let Err(e) = written {
                eprintln!("sipcheck: cannot write the report: {e}");
                return Exit::Internal;
            }
            // JSON escapes its own strings; text is escaped for the terminal.
            let printed = if json {
                out.write_all(&buf)
            } else {
                let mut text = TerminalWriter::new(&mut *out);
                text.write_all(&buf).and_then(|()| text.flush())
            };
            if printed.is_err() {
                return Exit::Internal;
            }
            Exit::from(verdict(&report))
        }
        Err(e) => {
            let message = e.to_string();
            let (verdict, exit) = if e.is_peer_failure() {
                ("fail", Exit::Failure)
            } else {
                ("error", Exit::Usage)
            };
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "verdict": verdict, "error": message })
                );
            }
            eprintln!("sipcheck: error: {}", escape_controls(&message));
            exit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_into_the_core_codec_transport_and_password() {
        use clap::CommandFactory;
        use sipcheck_core::media::g711::Codec;
        use sipcheck_core::sip::transport::Transport;
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from([&["sipcheck"], args].concat());

        let cli = parse(&["call", "sip:a@b", "--codec", "pcma", "--codec", "pcmu"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.audio.codecs, [Codec::Pcma, Codec::Pcmu]);
        assert_eq!(cmd.net.transport, None);
        assert_eq!(cmd.net.network().transport, Transport::Udp);
        let cli = parse(&["call", "sip:a@b", "--transport", "tcp"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.audio.codecs, [Codec::Pcmu, Codec::Pcma]);
        assert_eq!(cmd.net.transport, Some(Transport::Tcp));
        let cli = parse(&["call", "sip:a@b", "--transport", "tls", "--insecure"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.net.transport, Some(Transport::Tls));
        assert!(cmd.net.tls.insecure);
        assert_eq!(cmd.net.ws_path, "/");
        let cli = parse(&["call", "sip:a@b", "--transport", "wss", "--ws-path", "/ws"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.net.transport, Some(Transport::Wss));
        assert_eq!(cmd.net.network().ws_path, "/ws");
        let cli = parse(&["answer", "--transport", "ws", "--ws-path", "/sip"]).unwrap();
        let Command::Answer(cmd) = cli.command else {
            panic!("not answer")
        };
        assert_eq!(cmd.transport, Transport::Ws);
        assert_eq!(cmd.ws_path, "/sip");
        // The command line keeps its own spellings: lower case.
        for bad in [
            ["--codec", "PCMU"],
            ["--codec", "g729"],
            ["--transport", "TLS"],
        ] {
            assert!(
                parse(&[&["call", "sip:a@b"], &bad[..]].concat()).is_err(),
                "{bad:?}"
            );
        }

        let cli = parse(&[
            "register",
            "--server",
            "pbx",
            "--user",
            "1001",
            "--password",
            "s3cret",
        ])
        .unwrap();
        let Command::Register(args) = cli.command else {
            panic!("not a register")
        };
        assert_eq!(args.password.expose(), "s3cret");
        let shown = format!("{args:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    /// What `call` and `answer` derive from their flags: the network and timers of a call,
    /// at least one call at once, T1 into the timers, and the RTP ports from the media options.
    #[test]
    fn call_and_answer_derive_their_settings_from_the_flags() {
        use sipcheck_core::sip::transaction::TimerConfig;
        use std::time::Duration;
        let parse = |args: &[&str]| Cli::try_parse_from([&["sipcheck"], args].concat());

        let cli = parse(&[
            "call",
            "sip:a@b",
            "--t1",
            "100ms",
            "--t2",
            "1s",
            "--local",
            "127.0.0.1:5999",
            "--timeout",
            "7s",
            "--rtp-ports",
            "4000-4010",
        ])
        .unwrap();
        let Command::Call(args) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(args.target, "sip:a@b");
        let timers = args.net.timers();
        assert_eq!(
            (timers.t1, timers.t2, timers.t4),
            (
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(5)
            )
        );
        let net = args.net.network();
        assert_eq!(net.local, Some("127.0.0.1:5999".parse().unwrap()));
        assert_eq!(net.timeout, Some(Duration::from_secs(7)));
        assert_eq!(args.audio.rtp_ports, (4000, 4010));

        let cli = parse(&["answer", "--max-calls", "0", "--t1", "250ms"]).unwrap();
        let Command::Answer(args) = cli.command else {
            panic!("not an answer")
        };
        assert_eq!(args.max_calls(), 1);
        let timers = args.timers();
        let default = TimerConfig::default();
        assert_eq!(
            (timers.t1, timers.t2, timers.t4),
            (Duration::from_millis(250), default.t2, default.t4)
        );
        assert_eq!(args.audio.rtp_ports, (20000, 29999));
        assert_eq!(args.audio.level_dbfs, -12.0);

        let cli = parse(&["answer", "--max-calls", "7", "--rtp-ports", "5000-5001"]).unwrap();
        let Command::Answer(args) = cli.command else {
            panic!("not an answer")
        };
        assert_eq!(args.max_calls(), 7);
        assert_eq!(args.timers().t1, default.t1);
        assert_eq!(args.audio.rtp_ports, (5000, 5001));
    }
}
