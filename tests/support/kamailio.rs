//! A real Kamailio 5.6 (`tests/peers/kamailio.cfg`) on a free loopback port:
//! registrar (usrloc in memory), digest auth with password `"pw" + user`,
//! record-routing stateful proxy, OPTIONS to itself answered 200.
//!
//! ```ignore
//! let kam = Kamailio::start().expect("start kamailio");
//! // ... sipcheck register --registrar sip:127.0.0.1:{kam.sip_port} ...
//! assert_eq!(kam.bindings("1001").len(), 1, "{}", kam.log());
//! ```

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::process::{self, RunDir};
use super::responder::Responder;
use super::sip::{self, RequestSpec, UdpEndpoint};

/// How long [`Kamailio::start`] waits for the first OPTIONS answer.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped Kamailio gets after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start-up choices; [`Default`] is what [`Kamailio::start`] uses.
#[derive(Debug, Clone)]
pub(crate) struct KamailioOptions {
    /// Shared memory in MB (`-m`): 64 is plenty for functional tests; a load
    /// test needs more (PEERS.md: `-m 512` for 2,500 calls/s with auth),
    /// finished transactions are kept ~5 s.
    pub(crate) shm_mb: u32,
    /// Private memory per process in MB (`-M`), `None` for Kamailio's 8.
    pub(crate) pkg_mb: Option<u32>,
    /// Log one line per request and per relayed reply (define LOG_REQUESTS).
    /// On by default for diagnostics; turn off for load tests.
    pub(crate) log_requests: bool,
    /// Do not challenge INVITE and other out-of-dialog non-REGISTER requests
    /// (define NO_PROXY_AUTH); REGISTER is always challenged.
    pub(crate) no_proxy_auth: bool,
    /// Worker processes per transport (define CHILDREN).
    pub(crate) children: u32,
    /// Stay out of dialogs: no Record-Route (define NO_RECORD_ROUTE).
    pub(crate) no_record_route: bool,
    /// Listen on `[::1]` instead of `127.0.0.1`.
    pub(crate) ipv6: bool,
    /// More `-A` pre-processor defines, e.g. `DBG_LEVEL=3`.
    pub(crate) defines: Vec<String>,
    /// Listen on TLS too (port [`Kamailio::tls_port`]), with this certificate and key
    /// (PEM files).
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// Over TLS, require a client certificate issued by the CA of this PEM file.
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Take SIP over WebSocket (RFC 7118) on a TCP port of its own ([`Kamailio::ws_port`])
    /// and, with [`KamailioOptions::tls`], on the TLS port (WSS), for this resource path.
    pub(crate) ws_path: Option<String>,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        Self {
            shm_mb: 64,
            pkg_mb: None,
            log_requests: true,
            no_proxy_auth: false,
            children: 4,
            no_record_route: false,
            ipv6: false,
            defines: Vec::new(),
            tls: None,
            tls_client_ca: None,
            ws_path: None,
        }
    }
}

/// A running Kamailio, stopped (SIGTERM to its PID, SIGKILL after
/// [`STOP_GRACE`]) when dropped.
#[derive(Debug)]
pub(crate) struct Kamailio {
    /// Its SIP port, on 127.0.0.1 (or ::1), UDP and TCP.
    pub(crate) sip_port: u16,
    /// `127.0.0.1:sip_port` (or `[::1]:sip_port`).
    pub(crate) addr: SocketAddr,
    /// Its SIP over TLS port, with [`KamailioOptions::tls`].
    pub(crate) tls_port: Option<u16>,
    /// Its SIP over WebSocket port, with [`KamailioOptions::ws_path`].
    pub(crate) ws_port: Option<u16>,
    rundir: RunDir,
    child: Child,
    kamcmd: PathBuf,
    command_line: String,
}

impl Kamailio {
    /// The digest realm it challenges with.
    pub(crate) const REALM: &'static str = super::digest::REALM;

    /// Starts Kamailio with [`KamailioOptions::default`] and waits until it
    /// answers OPTIONS. Fails (saying how to install it) if the binary is
    /// missing.
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::start_with(&KamailioOptions::default())
    }

    /// Starts Kamailio with `opts`; retried on a new port if it exits at
    /// start (another process may take the free port first).
    pub(crate) fn start_with(opts: &KamailioOptions) -> anyhow::Result<Self> {
        let kamailio = process::require_program("kamailio", "kamailio")?;
        let kamcmd = process::require_program("kamcmd", "kamailio")?;
        let cfg = config_path();
        anyhow::ensure!(cfg.is_file(), "missing Kamailio config {}", cfg.display());
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start(&kamailio, &kamcmd, &cfg, opts, super::free_port()) {
                Ok(k) => return Ok(k),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("kamailio did not start")))
    }

    fn try_start(
        kamailio: &Path,
        kamcmd: &Path,
        cfg: &Path,
        opts: &KamailioOptions,
        port: u16,
    ) -> anyhow::Result<Self> {
        let rundir = RunDir::new("kamailio").context("create a run directory for kamailio")?;
        let log_path = rundir.join("kamailio.log");
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let ctl = rundir.join("ctl");
        let ip = if opts.ipv6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let listen = SocketAddr::new(ip, port);
        let tls_port = opts.tls.as_ref().map(|_| super::free_port());
        let ws_port = opts.ws_path.as_ref().map(|_| super::free_port());

        let mut cmd = Command::new(kamailio);
        cmd.arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(cfg)
            .arg("-l")
            .arg(format!("udp:{listen}"))
            .arg("-l")
            .arg(format!("tcp:{listen}"))
            .arg("-Y")
            .arg(rundir.path())
            .arg("-w")
            .arg(rundir.path())
            .arg("-m")
            .arg(opts.shm_mb.to_string());
        if let Some(pkg) = opts.pkg_mb {
            cmd.arg("-M").arg(pkg.to_string());
        }
        cmd.arg("-A")
            .arg(format!("CTL_SOCKET=\"unix:{}\"", ctl.display()));
        cmd.arg("-A").arg(format!("CHILDREN={}", opts.children));
        if opts.log_requests {
            cmd.arg("-A").arg("LOG_REQUESTS");
        }
        if opts.no_proxy_auth {
            cmd.arg("-A").arg("NO_PROXY_AUTH");
        }
        if opts.no_record_route {
            cmd.arg("-A").arg("NO_RECORD_ROUTE");
        }
        for d in &opts.defines {
            cmd.arg("-A").arg(d);
        }
        if let (Some((cert, key)), Some(tls_port)) = (&opts.tls, tls_port) {
            // Peers' certificates are not asked for nor verified: the tests verify
            // sipcheck's side of the handshake.
            let tls_cfg = rundir.join("tls.cfg");
            let clients = match &opts.tls_client_ca {
                Some(ca) => format!(
                    "verify_certificate = yes\nrequire_certificate = yes\nca_list = {}\n",
                    ca.display()
                ),
                None => "verify_certificate = no\nrequire_certificate = no\n".into(),
            };
            std::fs::write(
                &tls_cfg,
                format!(
                    "[server:default]\nmethod = TLSv1.2+\n{clients}\
                     private_key = {}\ncertificate = {}\n\n\
                     [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                     require_certificate = no\n",
                    key.display(),
                    cert.display()
                ),
            )
            .with_context(|| format!("write {}", tls_cfg.display()))?;
            cmd.arg("-l")
                .arg(format!("tls:{}", SocketAddr::new(ip, tls_port)));
            cmd.arg("-A").arg("WITH_TLS");
            cmd.arg("-A")
                .arg(format!("TLS_CONFIG=\"{}\"", tls_cfg.display()));
        }
        if let (Some(path), Some(ws_port)) = (&opts.ws_path, ws_port) {
            cmd.arg("-l")
                .arg(format!("tcp:{}", SocketAddr::new(ip, ws_port)));
            cmd.arg("-A").arg("WITH_WS");
            cmd.arg("-A").arg(format!("WS_PORT={ws_port}"));
            cmd.arg("-A").arg(format!("WS_PATH=\"{path}\""));
            if let Some(tls_port) = tls_port {
                cmd.arg("-A").arg(format!("WSS_PORT={tls_port}"));
            }
        }
        cmd.current_dir(rundir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate the log file handle")?)
            .stderr(log);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {command_line}"))?;

        let mut kam = Self {
            sip_port: port,
            addr: listen,
            tls_port,
            ws_port,
            rundir,
            child,
            kamcmd: kamcmd.to_owned(),
            command_line,
        };
        kam.wait_ready(&ctl)?;
        Ok(kam)
    }

    /// Polls with OPTIONS until a 200 comes back and the control socket
    /// exists, for at most [`READY_TIMEOUT`].
    fn wait_ready(&mut self, ctl: &Path) -> anyhow::Result<()> {
        let ep = if self.addr.is_ipv6() {
            UdpEndpoint::bind_to("[::1]:0".parse().expect("literal"))
        } else {
            UdpEndpoint::bind()
        }
        .context("bind a UDP socket to probe kamailio")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut answered = false;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "kamailio exited at start with {status}\ncommand: {}\n--- log ---\n{}",
                    self.command_line,
                    self.log()
                );
            }
            if !answered {
                let opts = RequestSpec::new(
                    "OPTIONS",
                    &self.uri(),
                    "sip:probe@sipcheck.test",
                    &self.uri(),
                )
                .build(ep.local);
                ep.send(&opts, self.addr)?;
                if let Some((resp, _)) = ep.recv(Duration::from_millis(200))? {
                    answered = sip::status_code(&resp) == Some(200);
                }
            } else if ctl.exists() {
                return Ok(());
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!(
            "kamailio did not become ready within {READY_TIMEOUT:?} (OPTIONS answered: {answered}, \
             control socket {} present: {})\ncommand: {}\n--- log ---\n{}",
            ctl.display(),
            ctl.exists(),
            self.command_line,
            self.log()
        )
    }

    /// `sip:127.0.0.1:PORT` (or `sip:[::1]:PORT`).
    pub(crate) fn uri(&self) -> String {
        format!("sip:{}", self.addr)
    }

    /// The PID of its main process.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its run directory (log, control socket).
    pub(crate) fn rundir(&self) -> &Path {
        self.rundir.path()
    }

    /// The command line it was started with.
    pub(crate) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The password it accepts for `user`.
    pub(crate) fn password_for(user: &str) -> String {
        super::digest::password_for(user)
    }

    /// Everything it has logged (stderr and stdout), for diagnostics.
    pub(crate) fn log(&self) -> String {
        process::read_lossy(&self.rundir.join("kamailio.log"))
    }

    /// Where it takes SIP over `transport` (`udp`, `tcp`, `tls`, `ws`, `wss`): `127.0.0.1:PORT`.
    pub(crate) fn server_for(&self, transport: &str) -> String {
        let port = match transport {
            "tls" | "wss" => self.tls_port.expect("Kamailio started with TLS"),
            "ws" => self.ws_port.expect("Kamailio started with WebSocket"),
            _ => self.sip_port,
        };
        format!("127.0.0.1:{port}")
    }

    /// The requests it logged (`REQ …` lines) that came over another transport than
    /// `transport` (`tls`, `ws`, …), OPTIONS left out.
    pub(crate) fn requests_not_over(&self, transport: &str) -> Vec<String> {
        let over = format!("from {transport}:");
        self.log()
            .lines()
            .filter(|l| l.contains("REQ ") && !l.contains(&over) && !l.contains("REQ OPTIONS"))
            .map(str::to_owned)
            .collect()
    }

    /// `sipcheck run SCENARIO EXTRA` (its path relative to the repository) with this Kamailio
    /// as `SIP_SERVER` where it takes `transport`, the scenario's two callers and two callees
    /// registering and calling over it. Asserts what every such scenario must give: exit 0,
    /// 4 calls passed, 8 audio checks verified, 4 registrations, and no request (but OPTIONS)
    /// over another transport.
    pub(crate) fn run_over(&self, transport: &str, scenario: &str, extra: &[&str]) -> super::Ran {
        let server = self.server_for(transport);
        let reports = super::reports::Reports::new();
        let ran = super::reports::run_scenario_against(
            scenario,
            extra,
            &[("SIP_SERVER", server.as_str())],
            &reports,
            &[self],
        );
        ran.assert_exit(0);
        let v = &ran.summary;
        assert_eq!(v["calls"]["passed"], 4, "{}", ran.shown);
        assert_eq!(v["audio"]["verified"], 8, "{}", ran.shown);
        assert_eq!(v["registrations"]["ok"], 4, "{}", ran.shown);
        let elsewhere = self.requests_not_over(transport);
        assert!(elsewhere.is_empty(), "{elsewhere:#?}\n{}", ran.shown);
        ran
    }

    /// A `sipcheck answer` listening on a free loopback port, registered through `server` (one
    /// of this Kamailio's addresses, [`Kamailio::server_for`]) as `user` with the password
    /// Kamailio takes for it; `extra`: its further options. Asserts it registered.
    pub(crate) fn answer_as(&self, server: &str, user: &str, extra: &[&str]) -> Responder {
        let listen = format!("127.0.0.1:{}", super::free_port());
        let mut args = vec!["--listen", &listen, "--server", server, "--user", user];
        args.extend_from_slice(extra);
        let password = Self::password_for(user);
        let answer = Responder::start(&args, &[("SIP_PASSWORD", password.as_str())]);
        assert!(
            answer.stdout().contains("registered"),
            "{}\n{}",
            answer.output(),
            self.log()
        );
        answer
    }

    /// The first arguments of `sipcheck call` calling `to` through `server` (one of this
    /// Kamailio's addresses, [`Kamailio::server_for`]) as `user`; its password goes in
    /// `SIP_PASSWORD`.
    pub(crate) fn call_from<'a>(server: &'a str, user: &'a str, to: &'a str) -> [&'a str; 6] {
        ["call", to, "--server", server, "--user", user]
    }

    /// A call through this Kamailio over `transport` from 1001 to 2001, a `sipcheck answer`
    /// registered there as 2001 over the same transport (`answer_extra`: its further
    /// options, certificates), playing 1000 Hz and expecting 440 Hz; the caller (`call_extra`:
    /// its further options, `--duration` among them) the other way round. Asserts the binding
    /// names the transport, the call passed after a 407 challenge with the tone heard, and
    /// `answer` passed hearing ours.
    pub(crate) fn call_over(
        &self,
        transport: &str,
        answer_extra: &[&str],
        call_extra: &[&str],
    ) -> super::Ran {
        let server = self.server_for(transport);
        let mut args = vec!["--transport", transport];
        args.extend(super::responder::ANSWER_TONES);
        args.extend_from_slice(answer_extra);
        let mut answer = self.answer_as(&server, "2001", &args);
        let bindings = self.bindings("2001");
        assert_eq!(bindings.len(), 1, "{}", answer.output());
        assert!(
            bindings[0].contains(&format!("transport={transport}")),
            "{bindings:?}"
        );

        let mut args = Self::call_from(&server, "1001", "sip:2001@127.0.0.1").to_vec();
        args.extend(["--transport", transport, "--json"]);
        args.extend(super::responder::CALLER_TONES);
        args.extend_from_slice(call_extra);
        let caller_pw = Self::password_for("1001");
        let ran = super::run_against(
            args,
            &[("SIP_PASSWORD", caller_pw.as_str())],
            &[&answer, self],
        );
        ran.assert_exit(0);
        let v = ran.json();
        assert_eq!(v["media"]["tones"][0]["detected"], true, "{}", ran.shown);
        let challenged = v["ladder"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["line"].as_str().unwrap_or_default().contains("407"));
        assert!(challenged, "no 407 in the ladder\n{}", ran.shown);
        let code = answer.wait_exit(Duration::from_secs(15));
        let answered = answer.output();
        assert_eq!(code, Some(0), "{}\n{answered}", ran.shown);
        let answered = answer.stdout();
        assert!(
            answered.contains("tone 440 Hz at"),
            "{answered}\n{}",
            ran.shown
        );
        assert!(answered.contains("-- PASS"), "{answered}\n{}", ran.shown);
        ran
    }

    /// Runs `kamcmd -s unix:RUNDIR/ctl ARGS` and returns its stdout; errors
    /// if kamcmd fails or reports an RPC error (`error: ...`).
    pub(crate) fn kamcmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.kamcmd);
        cmd.arg("-s")
            .arg(format!("unix:{}", self.rundir.join("ctl").display()))
            .args(args);
        let shown = format!("{cmd:?}");
        let out = match process::run_with_timeout(cmd, Duration::from_secs(10)) {
            Ok(out) => out,
            Err(e) => bail!("{shown}: {e:?}"),
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // kamcmd exits 0 even for an RPC error, printed as "error: CODE - TEXT".
        if !out.status.success() || stdout.starts_with("error:") || stderr.contains("error:") {
            bail!("{shown} failed ({}):\n{stdout}{stderr}", out.status);
        }
        Ok(stdout)
    }

    /// The contact URIs currently registered for `user` (an AoR user part;
    /// the registrar ignores domains), empty when none. Panics with the log
    /// if kamcmd cannot be queried.
    pub(crate) fn bindings(&self, user: &str) -> Vec<String> {
        // "s:" makes kamcmd pass a numeric user such as 1001 as a string.
        match self.kamcmd(&["ul.lookup", "location", &format!("s:{user}")]) {
            Ok(out) => out
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_owned())
                .collect(),
            Err(e) if e.to_string().contains("AOR not found") => Vec::new(),
            Err(e) => panic!(
                "cannot list bindings of {user}: {e:#}\n--- kamailio log ---\n{}",
                self.log()
            ),
        }
    }

    /// Waits up to `timeout` for `user` to have exactly `count` bindings;
    /// returns the last list seen.
    pub(crate) fn wait_bindings(&self, user: &str, count: usize, timeout: Duration) -> Vec<String> {
        let mut last = Vec::new();
        process::wait_until(timeout, Duration::from_millis(50), || {
            last = self.bindings(user);
            last.len() == count
        });
        last
    }

    /// Stops it (as drop does) and starts a new one with `opts` on the same port: the
    /// connections to the old one are closed, and the new one has no binding.
    pub(crate) fn restart(mut self, opts: &KamailioOptions) -> anyhow::Result<Self> {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE);
        let port = self.sip_port;
        drop(self);
        let kamailio = process::require_program("kamailio", "kamailio")?;
        let kamcmd = process::require_program("kamcmd", "kamailio")?;
        Self::try_start(&kamailio, &kamcmd, &config_path(), opts, port)
    }

    /// Stops it now (as drop does) and returns its exit status.
    pub(crate) fn stop(mut self) -> Option<ExitStatus> {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE);
    }
}

/// `tests/peers/kamailio.cfg`.
pub(crate) fn config_path() -> PathBuf {
    super::peers_dir().join("kamailio.cfg")
}
