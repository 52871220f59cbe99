//! A real baresip 1.0 (package baresip-core) on a free loopback port,
//! headless: no sound card, no terminal, auto-answering direct calls to
//! `sip:baresip@127.0.0.1:PORT` (no registration), sending a known tone and
//! recording what it hears.
//!
//! ```ignore
//! let peer = Baresip::start(BaresipOptions::default()).expect("start baresip");
//! // ... sipcheck call {peer.uri()} --expect-tone 600 ...
//! peer.wait_call_closed(Duration::from_secs(5)).unwrap();
//! let heard = peer.received_audio().unwrap(); // what baresip decoded
//! ```
//!
//! The configuration comes from `tests/peers/baresip/config.in` and
//! `tests/peers/baresip/accounts.in` (`@NAME@` placeholders, filled in here)
//! and is written with an empty `contacts` into a run directory, which is
//! also `snd_path` for the `sndfile` recordings. The command line is
//! `baresip -f RUNDIR -n 127.0.0.1 -s -t SECONDS`, stdout/stderr to
//! `stdout.log`/`stderr.log`.
//!
//! Facts this relies on (measured with baresip 1.0.0, see PEERS.md):
//! - It binds UDP and TCP on the SIP port and TLS on port + 1: both are
//!   checked free; start-up is retried on new ports if it exits (98, address
//!   in use).
//! - `ausine,HZ` only works at 48 kHz stereo (`ausrc_srate 48000`,
//!   `ausrc_channels 2`); baresip resamples to 8 kHz mono for G.711. It gives
//!   a clean tone (~38 dB SNR at sipcheck, -7 dBFS) for the whole call.
//! - `aufile,FILE.wav` (8 kHz mono s16) plays the file once; at its end the
//!   `menu` module hangs the call up ("audio error (0,end of file)"), so a
//!   file must be longer than the call.
//! - `sndfile` writes `dump-TIMESTAMP-dec.wav` (what it received, decoded)
//!   and `dump-TIMESTAMP-enc.wav` (what it sent), 8 kHz mono s16, into
//!   `snd_path`; the WAV header gets its sizes when the call closes.
//! - Control: `cons` on 127.0.0.1:CTRL (UDP text commands; it echoes the
//!   typed characters) with the `menu` module's commands (`/help`,
//!   `/listcalls`, `/hangup`, `/dial URI`, ...).
//! - SIGTERM makes it exit at once (status 0): stopped with SIGTERM, then
//!   SIGKILL, by its PID. `-t` is a safety net should the test process die
//!   without dropping it.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::process::{self, RunDir};
use super::LOOPBACK;

/// How long [`Baresip::start`] waits for "baresip is ready." and its port.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped baresip gets after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// The tone [`BaresipOptions::default`] sends (`ausine,600`).
pub(crate) const DEFAULT_TONE_HZ: u32 = 600;

/// The user part of its account (`sip:baresip@127.0.0.1:PORT`).
pub(crate) const USER: &str = "baresip";

/// Its RTP port range. Below Linux's ephemeral range (32768-60999, where
/// [`super::free_port`] finds ports) and outside sipcheck's default
/// 20000-29999; baresip retries another port of the range if one is taken.
pub(crate) const RTP_PORTS: &str = "30000-32767";

/// What baresip sends as audio.
#[derive(Debug, Clone)]
pub(crate) enum BaresipAudio {
    /// `ausine,HZ`: a continuous sine (48 kHz stereo source, resampled).
    Sine(u32),
    /// `aufile,FILE`: an 8 kHz mono 16-bit WAV, played once; the call is hung
    /// up at its end.
    Wav(PathBuf),
    /// `aufile` with a WAV generated into the run directory: a sine of `hz`
    /// (0 for silence) at -6 dBFS peak, `seconds` long.
    WavTone {
        /// Frequency in Hz, or 0 for digital silence.
        hz: u32,
        /// Length of the file (the call ends when it does).
        seconds: u32,
    },
}

/// Start-up choices; [`Default`] is what the tests usually want.
#[derive(Debug, Clone)]
pub(crate) struct BaresipOptions {
    /// The audio source; default `Sine(DEFAULT_TONE_HZ)`.
    pub(crate) audio: BaresipAudio,
    /// The account's `answermode`: `auto` (default), `manual` or `early`.
    pub(crate) answermode: String,
    /// Load `sndfile` to record received and sent audio (default true).
    pub(crate) record: bool,
    /// Trace SIP messages to stdout (`-s`, default true), for diagnostics.
    pub(crate) sip_trace: bool,
    /// Make baresip exit by itself after this long (`-t`), a safety net
    /// against orphans; default 120 s.
    pub(crate) quit_after: Duration,
    /// More account parameters, each `;name=value` (e.g.
    /// `;audio_codecs=pcma`).
    pub(crate) account_params: String,
    /// More config lines (`name value`), appended to the template.
    pub(crate) extra_config: Vec<String>,
    /// Register with this registrar instead of taking direct calls only.
    pub(crate) registrar: Option<BaresipRegistrar>,
}

/// A registrar baresip registers its account with (`regint` 60 s): the account is then
/// `sip:USER@SERVER` with digest password `password`; calls still reach it at its own port.
#[derive(Debug, Clone)]
pub(crate) struct BaresipRegistrar {
    /// The user part of the address of record (and digest user name).
    pub(crate) user: String,
    /// The registrar, `HOST:PORT`.
    pub(crate) server: String,
    /// The digest password.
    pub(crate) password: String,
}

impl Default for BaresipOptions {
    fn default() -> Self {
        Self {
            audio: BaresipAudio::Sine(DEFAULT_TONE_HZ),
            answermode: "auto".to_owned(),
            record: true,
            sip_trace: true,
            quit_after: Duration::from_secs(120),
            account_params: String::new(),
            extra_config: Vec::new(),
            registrar: None,
        }
    }
}

/// A running baresip, stopped (SIGTERM to its PID, SIGKILL after
/// [`STOP_GRACE`]) when dropped.
#[derive(Debug)]
pub(crate) struct Baresip {
    /// Its SIP port on 127.0.0.1 (UDP and TCP; TLS is on `sip_port + 1`).
    pub(crate) sip_port: u16,
    /// `127.0.0.1:sip_port`.
    pub(crate) addr: SocketAddr,
    /// The `cons` control port on 127.0.0.1 (UDP and TCP).
    pub(crate) ctrl_port: u16,
    rundir: RunDir,
    child: Child,
    command_line: String,
}

impl Baresip {
    /// `tests/peers/baresip/`: the config templates.
    pub(crate) fn templates_dir() -> PathBuf {
        super::peers_dir().join("baresip")
    }

    /// Writes its configuration, starts baresip and waits until it is ready
    /// and its SIP port is bound; retried on new ports if it exits at start
    /// (another process may take a free port first). Fails, saying which
    /// package to install, if baresip is missing.
    pub(crate) fn start(opts: BaresipOptions) -> anyhow::Result<Self> {
        let baresip = process::require_program("baresip", "baresip-core")?;
        let modules = Path::new("/usr/lib/baresip/modules");
        for module in required_modules(&opts) {
            anyhow::ensure!(
                modules.join(module).is_file(),
                "baresip module {} is missing: reinstall Debian package `baresip-core` ({})",
                modules.join(module).display(),
                process::INSTALL_HINT
            );
        }
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start(&baresip, &opts) {
                Ok(b) => return Ok(b),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("baresip did not start")))
    }

    fn try_start(baresip: &Path, opts: &BaresipOptions) -> anyhow::Result<Self> {
        let sip_port = free_port_pair();
        // Not sip_port + 1 (its TLS port), which free_port() may hand out.
        let ctrl_port = loop {
            let port = super::free_port();
            if port != sip_port + 1 {
                break port;
            }
        };
        let rundir = RunDir::new("baresip").context("create a run directory for baresip")?;
        write_config(&rundir, opts, sip_port, ctrl_port)?;
        let stdout =
            File::create(rundir.join("stdout.log")).context("create baresip's stdout.log")?;
        let stderr =
            File::create(rundir.join("stderr.log")).context("create baresip's stderr.log")?;

        let mut cmd = Command::new(baresip);
        cmd.arg("-f")
            .arg(rundir.path())
            .arg("-n")
            .arg(LOOPBACK)
            .arg("-t")
            .arg(opts.quit_after.as_secs().max(1).to_string());
        if opts.sip_trace {
            cmd.arg("-s");
        }
        cmd.current_dir(rundir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {command_line}"))?;
        let mut b = Self {
            sip_port,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), sip_port),
            ctrl_port,
            rundir,
            child,
            command_line,
        };
        b.wait_ready()?;
        Ok(b)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "baresip exited at start with {status}\ncommand: {}\n{}",
                    self.command_line,
                    self.log()
                );
            }
            if self.stdout().contains("baresip is ready.")
                && super::sipp::port_bound(self.sip_port)
                && super::sipp::port_bound(self.ctrl_port)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "baresip was not ready on 127.0.0.1:{} within {READY_TIMEOUT:?}\ncommand: {}\n{}",
            self.sip_port,
            self.command_line,
            self.log()
        )
    }

    /// `sip:baresip@127.0.0.1:PORT`: a direct call there is auto-answered
    /// (with the default answermode).
    pub(crate) fn uri(&self) -> String {
        format!("sip:{USER}@{LOOPBACK}:{}", self.sip_port)
    }

    /// Its PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its run directory (config, logs, recordings).
    pub(crate) fn rundir(&self) -> &Path {
        self.rundir.path()
    }

    /// The command line it was started with.
    pub(crate) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Its standard output: start-up, call events, and the SIP trace (`-s`).
    pub(crate) fn stdout(&self) -> String {
        process::read_lossy(&self.rundir.join("stdout.log"))
    }

    /// Everything it wrote plus its config, for assertion messages.
    pub(crate) fn log(&self) -> String {
        format!(
            "--- baresip command ---\n{}\n--- baresip config ---\n{}\n--- baresip accounts ---\n{}\n\
             --- baresip stdout ---\n{}\n--- baresip stderr ---\n{}",
            self.command_line,
            process::read_lossy(&self.rundir.join("config")),
            process::read_lossy(&self.rundir.join("accounts")),
            self.stdout(),
            process::read_lossy(&self.rundir.join("stderr.log"))
        )
    }

    /// Waits up to `timeout` for `needle` to appear in its stdout.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        if process::wait_until(timeout, Duration::from_millis(20), || {
            self.stdout().contains(needle)
        }) {
            Ok(())
        } else {
            bail!(
                "baresip did not log {needle:?} within {timeout:?}\n{}",
                self.log()
            )
        }
    }

    /// How many calls it has established so far (from its log).
    pub(crate) fn calls_established(&self) -> usize {
        self.stdout().matches(": Call established: ").count()
    }

    /// Waits until a call has ended ("Call with ... terminated") and, when
    /// recording, until the `sndfile` WAV files are closed (their headers
    /// carry the data size).
    pub(crate) fn wait_call_closed(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        self.wait_for_log(" terminated (duration: ", timeout)?;
        let closed = || {
            let files = self.recordings();
            !files.is_empty() && files.iter().all(|f| wav_closed(f))
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if self.stdout().contains("sndfile: dumping")
            && !process::wait_until(left, Duration::from_millis(20), closed)
        {
            bail!(
                "baresip's recordings {:?} were not closed within {timeout:?}\n{}",
                self.recordings(),
                self.log()
            );
        }
        Ok(())
    }

    /// The `sndfile` recordings so far (`dump-*.wav`), sorted by name.
    pub(crate) fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.rundir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("dump-") && n.ends_with(".wav"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The last recording of what it received (`*-dec.wav`): 8 kHz mono.
    pub(crate) fn received_audio(&self) -> anyhow::Result<Wav> {
        self.last_recording("-dec.wav")
    }

    /// The last recording of what it sent (`*-enc.wav`): 8 kHz mono.
    pub(crate) fn sent_audio(&self) -> anyhow::Result<Wav> {
        self.last_recording("-enc.wav")
    }

    fn last_recording(&self, suffix: &str) -> anyhow::Result<Wav> {
        let path = self
            .recordings()
            .into_iter()
            .rfind(|p| p.to_string_lossy().ends_with(suffix))
            .with_context(|| {
                format!(
                    "baresip wrote no *{suffix} recording (is sndfile loaded?)\n{}",
                    self.log()
                )
            })?;
        Wav::read(&path)
    }

    /// Sends a `cons` command (e.g. `/listcalls`, `/hangup`, `/dial URI`;
    /// `/help` lists them) and returns what baresip answered, without the
    /// echo of the typed characters. Collects replies until 300 ms of quiet
    /// (at most 3 s).
    pub(crate) fn command(&self, command: &str) -> anyhow::Result<String> {
        let sock = UdpSocket::bind((LOOPBACK, 0)).context("bind a UDP socket for cons")?;
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut line = command.to_owned();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        sock.send_to(line.as_bytes(), (LOOPBACK, self.ctrl_port))
            .with_context(|| format!("send {command:?} to cons on port {}", self.ctrl_port))?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(_) if !reply.is_empty() => break,
                Err(_) => {}
            }
        }
        let reply = String::from_utf8_lossy(&reply).into_owned();
        // The echo is "/\r/l\r/li\r...\r/listcalls" up to the first newline.
        Ok(reply
            .split_once('\n')
            .map_or(reply.as_str(), |(_, rest)| rest)
            .to_owned())
    }

    /// Stops it now (SIGTERM, then SIGKILL) and returns its exit status.
    pub(crate) fn stop(mut self) -> Option<ExitStatus> {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE);
    }
}

/// The module files `opts` needs.
fn required_modules(opts: &BaresipOptions) -> Vec<&'static str> {
    let mut modules = vec![
        "account.so",
        "contact.so",
        "menu.so",
        "cons.so",
        "g711.so",
        "aubridge.so",
    ];
    modules.push(match opts.audio {
        BaresipAudio::Sine(_) => "ausine.so",
        BaresipAudio::Wav(_) | BaresipAudio::WavTone { .. } => "aufile.so",
    });
    if opts.record {
        modules.push("sndfile.so");
    }
    modules
}

/// A port P from [`super::free_port`] such that P + 1 (baresip's TLS port)
/// is free too, for TCP and UDP.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let port = super::free_port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        let tcp = TcpListener::bind((LOOPBACK, next));
        let udp = UdpSocket::bind((LOOPBACK, next));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("found no loopback port P with P + 1 free too in 100 tries");
}

/// Fills `@NAME@` placeholders of a template of `tests/peers/baresip/`.
fn fill_template(name: &str, values: &[(&str, String)]) -> anyhow::Result<String> {
    let path = Baresip::templates_dir().join(name);
    let mut text = fs::read_to_string(&path)
        .with_context(|| format!("read baresip template {}", path.display()))?;
    for (key, value) in values {
        text = text.replace(&format!("@{key}@"), value);
    }
    let parts: Vec<&str> = text.split('@').collect();
    for key in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            bail!("{}: placeholder @{key}@ left unfilled", path.display());
        }
    }
    Ok(text)
}

fn write_config(
    rundir: &RunDir,
    opts: &BaresipOptions,
    sip_port: u16,
    ctrl_port: u16,
) -> anyhow::Result<()> {
    let (source, source_module, source_format) = match &opts.audio {
        BaresipAudio::Sine(hz) => (
            format!("ausine,{hz}"),
            "ausine.so",
            // ausine only produces 48 kHz stereo.
            "ausrc_srate\t\t48000\nausrc_channels\t\t2\n".to_owned(),
        ),
        BaresipAudio::Wav(path) => (
            format!("aufile,{}", path.display()),
            "aufile.so",
            String::new(),
        ),
        BaresipAudio::WavTone { hz, seconds } => {
            let path = rundir.join("source.wav");
            let samples = sine_samples(*hz, 8000, 8000 * *seconds as usize, 0.5);
            write_wav(&path, 8000, &samples)?;
            (
                format!("aufile,{}", path.display()),
                "aufile.so",
                String::new(),
            )
        }
    };
    let mut modules = String::new();
    let _ = writeln!(modules, "module\t\t\t{source_module}");
    if opts.record {
        let _ = writeln!(modules, "module\t\t\tsndfile.so");
    }
    let mut config = fill_template(
        "config.in",
        &[
            ("SIP_PORT", sip_port.to_string()),
            ("CTRL_PORT", ctrl_port.to_string()),
            ("RTP_PORTS", RTP_PORTS.to_owned()),
            ("AUDIO_SOURCE", source),
            ("AUSRC_FORMAT", source_format),
            ("AUDIO_MODULES", modules),
            ("SND_PATH", rundir.path().display().to_string()),
        ],
    )?;
    for line in &opts.extra_config {
        config.push_str(line);
        config.push('\n');
    }
    let accounts = match &opts.registrar {
        None => fill_template(
            "accounts.in",
            &[
                ("USER", USER.to_owned()),
                ("SIP_PORT", sip_port.to_string()),
                ("ANSWERMODE", opts.answermode.clone()),
                ("ACCOUNT_PARAMS", opts.account_params.clone()),
            ],
        )?,
        Some(r) => format!(
            "<sip:{}@{}>;auth_pass={};regint=60;answermode={};audio_codecs=PCMU,PCMA{}\n",
            r.user, r.server, r.password, opts.answermode, opts.account_params
        ),
    };
    fs::write(rundir.join("config"), config).context("write baresip config")?;
    fs::write(rundir.join("accounts"), accounts).context("write baresip accounts")?;
    fs::write(rundir.join("contacts"), "").context("write baresip contacts")?;
    Ok(())
}

/// `len` samples of a sine of `hz` (0: silence) at `rate`, peak `amplitude`
/// (of full scale).
pub(crate) fn sine_samples(hz: u32, rate: u32, len: usize, amplitude: f64) -> Vec<i16> {
    (0..len)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * f64::from(hz) * i as f64 / f64::from(rate);
            (phase.sin() * amplitude * f64::from(i16::MAX)).round() as i16
        })
        .collect()
}

/// Writes a mono 16-bit PCM WAV file.
pub(crate) fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> anyhow::Result<()> {
    let data_len = u32::try_from(samples.len() * 2).context("WAV too long")?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// A 16-bit PCM WAV file read by [`Wav::read`] (a minimal RIFF reader, kept
/// apart from sipcheck's own code so that it checks it independently).
#[derive(Debug, Clone)]
pub(crate) struct Wav {
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// Sample rate in Hz.
    pub(crate) rate: u32,
    /// The first channel's samples.
    pub(crate) samples: Vec<i16>,
}

impl Wav {
    /// Reads a 16-bit PCM WAV file (any channel count; keeps channel 0).
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let (rate, channels, data) =
            parse_wav(&bytes).with_context(|| format!("parse WAV {}", path.display()))?;
        let frame = 2 * usize::from(channels);
        let samples = data
            .chunks_exact(frame)
            .map(|f| i16::from_le_bytes([f[0], f[1]]))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            rate,
            samples,
        })
    }

    /// Its length in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    /// RMS level in dBFS over the whole file (-inf dB for silence).
    pub(crate) fn rms_dbfs(&self) -> f64 {
        rms_dbfs(&self.samples)
    }

    /// The share (0..=1) of the audio's energy at `hz`, over its 20 ms blocks
    /// louder than -50 dBFS (leading silence from the jitter buffer is left
    /// out): about 1 for a clean tone of `hz`, about 0 for another tone. 0 if
    /// no block is loud enough.
    pub(crate) fn tone_share(&self, hz: f64) -> f64 {
        let block = (self.rate / 50).max(1) as usize;
        let (mut tone, mut total) = (0.0, 0.0);
        for chunk in self.samples.chunks_exact(block) {
            if rms_dbfs(chunk) < -50.0 {
                continue;
            }
            let x: Vec<f64> = chunk.iter().map(|&s| f64::from(s) / 32768.0).collect();
            let energy: f64 = x.iter().map(|v| v * v).sum();
            // A sinusoid of amplitude A over N samples: |X|^2 = (A N / 2)^2
            // and energy A^2 N / 2, so 2 |X|^2 / N is its energy.
            tone += 2.0 * goertzel_power(&x, f64::from(self.rate), hz) / x.len() as f64;
            total += energy;
        }
        if total == 0.0 {
            0.0
        } else {
            (tone / total).min(1.0)
        }
    }
}

/// |X(hz)|^2 of `x` sampled at `rate`, by the Goertzel algorithm.
pub(crate) fn goertzel_power(x: &[f64], rate: f64, hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| {
            let v = f64::from(s) / 32768.0;
            v * v
        })
        .sum();
    10.0 * (sum / samples.len() as f64).log10()
}

/// `(rate, channels, data)` of a 16-bit PCM WAV. A data chunk whose size
/// is 0 or past the end (a file still being written) is taken to the end.
fn parse_wav(bytes: &[u8]) -> anyhow::Result<(u32, u16, &[u8])> {
    anyhow::ensure!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a RIFF/WAVE file"
    );
    let mut fmt = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into()?) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            anyhow::ensure!(body + 16 <= bytes.len(), "short fmt chunk");
            let b = &bytes[body..body + 16];
            let format = u16::from_le_bytes([b[0], b[1]]);
            let channels = u16::from_le_bytes([b[2], b[3]]);
            let rate = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let bits = u16::from_le_bytes([b[14], b[15]]);
            anyhow::ensure!(
                (format == 1 || format == 0xFFFE) && bits == 16 && channels > 0,
                "not 16-bit PCM (format {format:#x}, {bits} bits, {channels} channels)"
            );
            fmt = Some((rate, channels));
        } else if id == b"data" {
            let (rate, channels) = fmt.context("data chunk before fmt chunk")?;
            let end = if size == 0 || body + size > bytes.len() {
                bytes.len()
            } else {
                body + size
            };
            return Ok((rate, channels, &bytes[body..end]));
        }
        pos = body + size + (size & 1);
    }
    bail!("no data chunk")
}

/// Whether a WAV file's header is final: its RIFF and data chunk sizes
/// match the file (libsndfile writes the sizes when it closes the file).
fn wav_closed(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" {
        return false;
    }
    let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let size = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            return pos + 8 + size == bytes.len() && riff + 8 == bytes.len();
        }
        pos += 8 + size + (size & 1);
    }
    false
}
