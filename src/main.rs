//! The `sipcheck` command line.

mod logging;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use sipcheck::exit::Exit;
use std::path::PathBuf;

use sipcheck::probe::args::{
    parse_duration, parse_max_transactions, parse_server, parse_t1, NetArgs,
};
use sipcheck::probe::audio::{AudioArgs, ToneSpec};
use sipcheck::probe::{self, ProbeError, Verdict};
use sipcheck::terminal::{escape_controls, TerminalWriter};
use sipcheck_core::media::g711::Codec;
use sipcheck_core::sip::auth::Password;
use sipcheck_core::sip::transaction::{TimerConfig, DEFAULT_MAX_SERVER_TRANSACTIONS};

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

Exit codes:
  0    every call passed its expectations (or, with thresholds, every threshold held)
  1    a call failed
  2    usage error: invalid scenario or flags, nothing was run
  3    internal error in sipcheck
  99   a threshold failed
  130  interrupted (Ctrl-C or SIGTERM): calls hung up, reports written
  131  interrupted twice: left at once, no report written";

/// SIP/RTP voice test harness: probes, scenarios, load, verified media.
#[derive(Debug, Parser)]
#[command(name = "sipcheck", version, about, max_term_width = 100)]
struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    /// More output on stderr: -v prints every SIP message sent and received (start line,
    /// headers, body) and debug logs, -vv also RTP stream events and trace logs. Credentials
    /// are masked. RUST_LOG overrides the log level.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Write every SIP message sent and received to FILE: its time, direction, transport,
    /// addresses and full text (credentials masked).
    #[arg(long, value_name = "FILE", global = true)]
    trace_sip: Option<PathBuf>,
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
    Call(Box<CallCmd>),
    /// Answer calls: ring, answer, play and verify audio, hang up; a line per call.
    #[command(after_help = ANSWER_HELP)]
    Answer(Box<AnswerCmd>),
    /// Check a scenario file without running it: every error, as file:line:col.
    #[command(after_help = VALIDATE_HELP)]
    Validate(ValidateCmd),
    /// Run a scenario: its user agents, load, expectations, thresholds and reports.
    #[command(after_help = RUN_HELP)]
    Run(RunCmd),
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
    /// Override a value, e.g. --set load.rate=50/s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Args)]
struct ValidateCmd {
    /// The scenario file (YAML).
    file: String,
    /// Override a value, e.g. --set load.rate=50/s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// `--codec`: read by [`Codec`]'s `FromStr`, spelt in lower case on the command line.
fn codec_parser() -> impl TypedValueParser<Value = Codec> {
    PossibleValuesParser::new(["pcmu", "pcma"]).try_map(|s| s.parse::<Codec>())
}

/// Media options shared by `call` and `answer`.
#[derive(Debug, Args)]
struct AudioOpts {
    /// Play a tone for the whole call: HZ or HZ+HZ (dual tone), e.g. 440 or 350+440.
    #[arg(long, value_name = "HZ[+HZ]")]
    play_tone: Option<ToneSpec>,
    /// Play a WAV file (any rate, mono or stereo, 8/16/24/32-bit or float), then silence.
    #[arg(long, value_name = "FILE", conflicts_with = "play_tone")]
    play_wav: Option<PathBuf>,
    /// Level of the played tone in dBFS (per component).
    #[arg(long, default_value_t = -12.0, allow_hyphen_values = true, value_parser = parse_level)]
    level: f64,
    /// Fail unless this tone is heard: HZ or HZ+HZ.
    #[arg(long, value_name = "HZ[+HZ]")]
    expect_tone: Option<ToneSpec>,
    /// Send these DTMF digits (RFC 4733) 0.5 s after the answer.
    #[arg(long, value_name = "DIGITS")]
    send_dtmf: Option<String>,
    /// Fail unless exactly these DTMF digits (RFC 4733) are received.
    #[arg(long, value_name = "DIGITS")]
    expect_dtmf: Option<String>,
    /// Write the received audio to a WAV file (8 kHz mono).
    #[arg(long, value_name = "FILE.wav")]
    record: Option<PathBuf>,
    /// Codec to offer/accept (repeat for several, in order of preference).
    #[arg(long = "codec", value_parser = codec_parser(), default_values = ["pcmu", "pcma"])]
    codecs: Vec<Codec>,
    /// Do not fail a call that received no RTP at all.
    #[arg(long)]
    no_media_ok: bool,
    /// Fail a call whose incoming RTP stops for longer than this.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    rtp_timeout: Duration,
    /// Local RTP port range.
    #[arg(long, default_value = "20000-29999", value_parser = parse_port_range)]
    rtp_ports: (u16, u16),
}

impl AudioOpts {
    fn args(&self) -> AudioArgs {
        AudioArgs {
            play_tone: self.play_tone,
            play_wav: self.play_wav.clone(),
            level_dbfs: self.level,
            expect_tone: self.expect_tone,
            send_dtmf: self.send_dtmf.clone(),
            expect_dtmf: self.expect_dtmf.clone(),
            record: self.record.clone(),
            codecs: self.codecs.clone(),
            no_media_ok: self.no_media_ok,
            rtp_timeout: self.rtp_timeout,
        }
    }
}

/// A tone level in dBFS: a number, at most 0 (full scale).
fn parse_level(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(l) if l.is_finite() && l <= 0.0 => Ok(l),
        Ok(l) if l.is_finite() => Err(format!(
            "'{s}' is above full scale: a level is in dBFS, at most 0 (e.g. -12)"
        )),
        _ => Err(format!(
            "'{s}' is not a level in dBFS (a number at most 0, e.g. -12)"
        )),
    }
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range (FIRST-LAST, e.g. 20000-29999)"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a port"))?;
    if a == 0 || b < a {
        return Err(format!("'{s}' is not a port range (1 <= FIRST <= LAST)"));
    }
    Ok((a, b))
}

#[derive(Debug, Args)]
struct CallCmd {
    /// The SIP URI to call, e.g. sip:1002@pbx.example.com.
    #[arg(env = "SIP_TARGET")]
    uri: String,
    /// Registrar/proxy to send the call through, HOST[:PORT] (default: the URI's host).
    #[arg(long, env = "SIP_SERVER", value_name = "HOST[:PORT]", value_parser = parse_server)]
    server: Option<String>,
    /// Outbound proxy, HOST[:PORT]: requests go there with a pre-loaded Route.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_server)]
    proxy: Option<String>,
    /// User name: From, REGISTER and digest username.
    #[arg(long, env = "SIP_USER")]
    user: Option<String>,
    /// Password for digest authentication (prefer the SIP_PASSWORD environment variable).
    #[arg(long, env = "SIP_PASSWORD", hide_env_values = true)]
    password: Option<Password>,
    /// Domain of our address of record (default: the server's host).
    #[arg(long)]
    domain: Option<String>,
    /// Register before calling (and unregister afterwards).
    #[arg(long)]
    register: bool,
    /// Hang up (BYE) this long after the answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// CANCEL this long after the INVITE; the call then passes only if it ends with 487.
    #[arg(long, value_parser = parse_duration)]
    cancel_after: Option<Duration>,
    /// CANCEL (and fail) if not answered within this time.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    answer_timeout: Duration,
    /// Put the far end on hold (re-INVITE with a=sendonly) this long after the answer; the
    /// hold and the resume must each be answered 2xx.
    #[arg(long, value_parser = parse_duration)]
    hold_after: Option<Duration>,
    /// Resume (re-INVITE with a=sendrecv) this long after the hold; --expect-tone is then
    /// checked again after the resume.
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "hold_after")]
    hold_for: Duration,
    #[command(flatten)]
    audio: AudioOpts,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Debug, Args)]
struct AnswerCmd {
    /// Local address to listen on for SIP over UDP.
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Register at this server first (and keep the registration fresh), HOST[:PORT].
    #[arg(long, env = "SIP_SERVER", value_name = "HOST[:PORT]", value_parser = parse_server)]
    server: Option<String>,
    /// User to register as (digest username).
    #[arg(long, env = "SIP_USER")]
    user: Option<String>,
    /// Password for digest authentication (prefer the SIP_PASSWORD environment variable).
    #[arg(long, env = "SIP_PASSWORD", hide_env_values = true)]
    password: Option<Password>,
    /// Domain of the address of record (default: the server's host).
    #[arg(long)]
    domain: Option<String>,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    expires: u32,
    /// Ring (180 Ringing) this long before answering.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    ring: Duration,
    /// Reject every call with this status code instead of answering (e.g. 486, 603).
    #[arg(long, value_name = "CODE")]
    reject: Option<u16>,
    /// Hang up this long after answering (default: wait for the caller's BYE).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Calls at once; more are answered 486 Busy Here.
    #[arg(long, default_value_t = 100)]
    max_calls: usize,
    /// Server transactions alive at once (each held until its Timer J or K ends): beyond it
    /// a request is answered statelessly 503 Service Unavailable with Retry-After, so a
    /// flood of stray requests cannot grow memory without bound.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERVER_TRANSACTIONS, value_parser = parse_max_transactions)]
    max_transactions: usize,
    /// Exit after this many calls have ended.
    #[arg(long, value_name = "N")]
    calls: Option<u64>,
    #[command(flatten)]
    audio: AudioOpts,
    /// RFC 3261 T1; Timer B/F/H fire at 64*T1.
    #[arg(long, default_value = "500ms", value_parser = parse_t1)]
    t1: Duration,
    /// Print one JSON object per call and the totals instead of text.
    #[arg(long)]
    json: bool,
    /// Print only the calls that failed (and the totals): for load, where a line per call
    /// costs more than the call.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Answer every offer `a=inactive` and open no RTP socket: signaling-only load, as SIPp's
    /// uas (no audio is sent, checked or recorded).
    #[arg(long, conflicts_with_all = ["play_tone", "play_wav", "expect_tone", "send_dtmf", "expect_dtmf", "record"])]
    no_rtp: bool,
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
        Command::Call(cmd) => {
            let args = probe::call::CallArgs {
                target: cmd.uri.clone(),
                server: cmd.server.clone(),
                proxy: cmd.proxy.clone(),
                user: cmd.user.clone(),
                password: cmd.password.clone(),
                domain: cmd.domain.clone(),
                register: cmd.register,
                duration: cmd.duration,
                cancel_after: cmd.cancel_after,
                answer_timeout: cmd.answer_timeout,
                hold_after: cmd.hold_after,
                hold_for: cmd.hold_for,
                audio: cmd.audio.args(),
                rtp_ports: cmd.audio.rtp_ports,
            };
            let result = probe::call::run(&args, &cmd.net.network(), cmd.net.timers()).await;
            finish(
                result,
                cmd.net.json,
                |r| r.verdict,
                |r, out| r.write_text(out),
                &mut stdout,
            )
        }
        Command::Answer(cmd) => {
            let args = sipcheck::answer::AnswerArgs {
                listen: cmd.listen,
                server: cmd.server.clone(),
                user: cmd.user.clone(),
                password: cmd.password.clone(),
                domain: cmd.domain.clone(),
                expires: cmd.expires,
                ring: cmd.ring,
                reject: cmd.reject,
                duration: cmd.duration,
                max_calls: cmd.max_calls.max(1),
                max_transactions: cmd.max_transactions,
                calls: cmd.calls,
                audio: cmd.audio.args(),
                rtp_ports: cmd.audio.rtp_ports,
                timers: TimerConfig {
                    t1: cmd.t1,
                    ..TimerConfig::default()
                },
                json: cmd.json,
                quiet: cmd.quiet,
                no_rtp: cmd.no_rtp,
            };
            // JSON escapes its own strings; text is escaped for the terminal.
            let mut out: Box<dyn Write> = if cmd.json {
                Box::new(&mut stdout)
            } else {
                Box::new(TerminalWriter::new(&mut stdout))
            };
            let result = sipcheck::answer::run(&args, &mut out).await;
            match result {
                Ok(mut totals) => {
                    let _ = totals.write(cmd.json, &mut out);
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
            };
            sipcheck::run::run(&args, &mut stdout).await
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
    fn limits_of_t1_level_and_server_ports() {
        assert_eq!(parse_t1("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_t1("0ms").is_err());
        assert_eq!(parse_level("0"), Ok(0.0));
        assert_eq!(parse_level("-12.5"), Ok(-12.5));
        for bad in ["0.1", "100", "NaN", "-inf", "loud"] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
        for good in [
            "pbx",
            "pbx:5060",
            "127.0.0.1:1",
            "[::1]:5060",
            "::1",
            "[::1]",
        ] {
            assert_eq!(parse_server(good).as_deref(), Ok(good));
        }
        for bad in ["pbx:0", "127.0.0.1:0", "[::1]:0"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        for sips in ["sips:pbx", "SIPS:127.0.0.1:5061", " sips:[::1]"] {
            let err = parse_server(sips).unwrap_err();
            assert!(err.contains("sips: needs TLS"), "{err}");
        }
    }

    #[test]
    fn options_are_read_into_the_core_codec_transport_and_password() {
        use clap::CommandFactory;
        use sipcheck_core::sip::transport::Transport;
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from([&["sipcheck"], args].concat());

        let cli = parse(&["call", "sip:a@b", "--codec", "pcma", "--codec", "pcmu"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.audio.codecs, [Codec::Pcma, Codec::Pcmu]);
        assert_eq!(cmd.net.transport, Transport::Udp);
        let cli = parse(&["call", "sip:a@b", "--transport", "tcp"]).unwrap();
        let Command::Call(cmd) = cli.command else {
            panic!("not a call")
        };
        assert_eq!(cmd.audio.codecs, [Codec::Pcmu, Codec::Pcma]);
        assert_eq!(cmd.net.transport, Transport::Tcp);
        // The command line keeps its own spellings: lower case, and no TLS for the probes.
        for bad in [
            ["--codec", "PCMU"],
            ["--codec", "g729"],
            ["--transport", "tls"],
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
}
