//! The scenario executor: binds each role's transport, registers its user agents, starts
//! calls on the load plan's schedule through each role's agent ([`crate::drive::role`]), and winds
//! everything down — on time or on Ctrl-C — with every UA unregistered. The load's two shapes
//! are `open` (calls on a schedule) and `closed` (a number of calls kept up); `single` is
//! `sipcheck call`'s one call on the same driver loop.

mod closed;
mod open;
pub(crate) mod single;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711::Codec;
use sipcheck_core::scenario::model::{
    Account, Connections, Load, Role as ScenarioRole, Route, Scenario, Step,
};
use sipcheck_core::scenario::plan::{CallerTurns, LoadPlan};
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::ua::agent::{Agent, AgentConfig, Schedule};
use sipcheck_core::ua::call::{Endpoint, EndpointConfig};
use sipcheck_core::ua::register::LocalEnd;
use sipcheck_core::ua::script::is_call_step;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::drive::media::PortRange;
use crate::drive::os_seed;
use crate::drive::role::{Callers, MediaSetup, Role, RoleCommand};
use crate::drive::tls::TlsContext;
use crate::drive::transport::{self, SipSocket, TcpPool, TransportError, UdpTransport};

pub use crate::drive::role::RunEvent;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A transport could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Something the scenario asks cannot be done here.
    #[error("{0}")]
    Setup(String),
}

/// The decoded WAV files a scenario plays, by the path written in it.
pub type Wavs = HashMap<String, Arc<[i16]>>;

/// Run `scenario` until its load ends or `stop` turns true; every result goes to `events`.
/// The load's schedule starts once every user agent has registered, or at `load_start` when
/// given (a start common to the shards of a run; waited for after the registrations).
/// Returns when every call has ended and every UA is unregistered.
///
/// Over TLS (`target.transport: tls`), `tls` is what to trust and show.
pub async fn execute(
    scenario: Arc<Scenario>,
    tls: Option<TlsContext>,
    wavs: Arc<Wavs>,
    events: mpsc::UnboundedSender<RunEvent>,
    stop: watch::Receiver<bool>,
    load_start: Option<Instant>,
    step_records: Option<crate::drive::role::StepRecords>,
) -> Result<Duration, RunError> {
    let run_start = Instant::now();
    let seed = os_seed();
    // The name each server's certificate is verified for.
    let mut names = HashMap::new();
    let (server, proxy) = match &scenario.target.route {
        Route::Server {
            server,
            outbound_proxy,
        } => {
            let port = scenario.target.transport.default_port();
            let server_addr =
                transport::resolve(&host_port(&server.host, server.port.unwrap_or(port)), port)
                    .await?;
            names.insert(server_addr, server.host.clone());
            let proxy_addr = match outbound_proxy {
                Some(p) => {
                    let addr =
                        transport::resolve(&host_port(&p.host, p.port.unwrap_or(port)), port)
                            .await?;
                    names.insert(addr, p.host.clone());
                    Some(addr)
                }
                None => None,
            };
            (Some(server_addr), proxy_addr)
        }
        Route::Direct => (None, None),
    };
    let kind = scenario.target.transport;
    if kind.is_secure() && tls.is_none() {
        return Err(RunError::Setup(format!(
            "transport `{kind}` without a TLS configuration"
        )));
    }
    let ports = Arc::new(PortRange::new(
        scenario.media.rtp_ports.first,
        scenario.media.rtp_ports.last,
    ));
    let codecs: Vec<Codec> = scenario.media.codecs.clone();
    let ptime_ms = u32::try_from(scenario.media.ptime.as_millis()).unwrap_or(20);
    let jitter_frames =
        (scenario.media.jitter_buffer.as_millis() / u128::from(ptime_ms.max(1))).max(1) as usize;

    // One transport, endpoint and agent per role, each driven by a task of its own.
    let callers = Arc::new(Callers::default());
    let mut tasks = JoinSet::new();
    let mut roles = Vec::new();
    let mut registered = Vec::new();
    for (index, role) in scenario.roles.iter().enumerate() {
        let bind = role.listen.or(scenario.target.local).unwrap_or_else(|| {
            let peer = server.unwrap_or_else(|| "127.0.0.1:5060".parse().expect("literal"));
            let ip = transport::local_ip_for(peer)
                .unwrap_or_else(|_| "127.0.0.1".parse().expect("literal"));
            SocketAddr::new(ip, 0)
        });
        let transport = match kind {
            Transport::Udp => SipSocket::Udp(UdpTransport::bind(bind, 4 << 20).await?),
            _ => {
                let pool = TcpPool::bind(
                    bind,
                    scenario.target.keepalive,
                    scenario.target.connections == Connections::PerUa,
                )
                .await?;
                let pool = match &tls {
                    Some(tls) if kind.is_secure() => pool.with_tls(tls.clone(), names.clone()),
                    _ => pool,
                };
                SipSocket::TcpPool(if kind.is_websocket() {
                    pool.with_ws(&scenario.target.ws_path)
                } else {
                    pool
                })
            }
        };
        let local = LocalEnd {
            transport: kind,
            addr: transport.local_addr(),
            routes: proxy
                .map(|p| vec![format!("<sip:{p};lr>")])
                .unwrap_or_default(),
        };
        let mut config = EndpointConfig::new(local.clone());
        config.contact_user = role
            .accounts
            .first()
            .map_or_else(|| role.name.clone(), |a| a.user.clone());
        let endpoint = Endpoint::new(config, IdGen::new(seed.wrapping_add(index as u64)));
        let steps: Vec<_> = role
            .steps
            .iter()
            .filter(|s| is_call_step(&s.value))
            .cloned()
            .collect();
        let mut agent = Agent::new(
            AgentConfig {
                role: role.name.clone(),
                local,
                next_hop: proxy.or(server),
                domain: scenario.target.domain.clone(),
                codecs: codecs.clone(),
                ptime_ms,
                rtp: scenario.media.rtp,
                wavs: wavs.clone(),
                accounts: role.accounts.clone(),
                steps: Arc::new(steps),
                srtp: crate::drive::srtp_config(scenario.media.srtp),
                sips: scenario.target.sips,
                signature_parties: scenario.signature_parties().into(),
            },
            endpoint,
        );
        agent.record_ladders();
        // Registrations: each user agent registered before the load starts, renewed during
        // it, unregistered after it.
        let registers = role.steps.iter().find_map(|s| match s.value {
            Step::Register { expires, refresh } => Some((expires, refresh)),
            _ => None,
        });
        if let Some((expires, refresh)) = registers {
            let Some(registrar) = proxy.or(server) else {
                return Err(RunError::Setup(format!(
                    "role {} registers but the target has no server",
                    role.name
                )));
            };
            let expires = u32::try_from(expires.as_secs()).unwrap_or(3600);
            let now = Instant::now();
            for account in &role.accounts {
                agent.register(
                    now,
                    account,
                    registrar,
                    expires,
                    refresh,
                    IdGen::new(os_seed()),
                );
            }
        }
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (registered_tx, registered_rx) = oneshot::channel();
        registered.push(registered_rx);
        let media = MediaSetup {
            ports: ports.clone(),
            jitter_frames,
            record_dir: scenario.media.record.as_ref().map(std::path::PathBuf::from),
            step_records: step_records.clone(),
        };
        tasks.spawn(
            Role::new(
                role.name.clone(),
                transport,
                agent,
                media,
                seed ^ ((index as u64 + 1) << 40),
                commands_rx,
                events.clone(),
                stop.clone(),
                callers.clone(),
                registered_tx,
            )
            .run(),
        );
        roles.push((role, commands));
    }

    // The load starts once every first registration has its outcome (or on Ctrl-C).
    let mut stop_load = stop.clone();
    for first in registered {
        tokio::select! {
            _ = first => {}
            _ = stop_load.wait_for(|s| *s) => break,
        }
    }

    // A common start: wait for it (a late one counts from the instant all the same).
    if let Some(at) = load_start {
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            _ = stop_load.wait_for(|s| *s) => {}
        }
    }
    // The load: callers start calls on the plan's schedule.
    let callers_roles: Vec<&(&ScenarioRole, mpsc::UnboundedSender<RoleCommand>)> =
        roles.iter().filter(|(r, _)| r.calls()).collect();
    if callers_roles.is_empty() {
        // No callers: serve incoming calls until stopped or the load's time is up.
        let limit = load_end(&scenario.load).unwrap_or(Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            _ = stop_load.wait_for(|s| *s) => {}
            _ = tokio::time::sleep(limit) => {}
        }
    } else if !*stop_load.borrow() {
        let mut starter = Starter {
            scenario: &scenario,
            turns: CallerTurns::new(
                &callers_roles
                    .iter()
                    .map(|(r, _)| r.accounts.len())
                    .collect::<Vec<_>>(),
            ),
            roles: callers_roles,
            callers: &callers,
            events: &events,
            load_start: load_start.unwrap_or_else(Instant::now),
            started: 0,
        };
        match LoadPlan::compile(&scenario.load) {
            LoadPlan::Open(plan) => open::drive(plan, &mut starter, &mut stop_load).await,
            LoadPlan::Closed(plan) => closed::drive(&plan, &mut starter, &mut stop_load).await,
        }
    }
    // Every caller's call ends (on Ctrl-C too: each winds down by itself).
    while callers.live() > 0 {
        tokio::select! {
            () = callers.ended() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    // The load is over: callees still waiting for a BYE or CANCEL give up a while after
    // this; every user agent unregisters.
    let mut unregistered = Vec::new();
    for (_, commands) in &roles {
        let (tx, rx) = oneshot::channel();
        if commands.send(RoleCommand::LoadDone(tx)).is_ok() {
            unregistered.push(rx);
        }
    }
    for rx in unregistered {
        let _ = rx.await;
    }
    // Each role finishes its calls and stops.
    for (_, commands) in &roles {
        let _ = commands.send(RoleCommand::Shutdown);
    }
    drop(roles);
    while tasks.join_next().await.is_some() {}
    Ok(run_start.elapsed())
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What starts the load's calls, shared in turn among the caller roles: the n-th call of a
/// role with its n-th account, to its peer role's n-th account.
pub(crate) struct Starter<'a> {
    scenario: &'a Scenario,
    roles: Vec<&'a (&'a ScenarioRole, mpsc::UnboundedSender<RoleCommand>)>,
    callers: &'a Callers,
    events: &'a mpsc::UnboundedSender<RunEvent>,
    /// When the load started: the plan's offsets count from here.
    load_start: Instant,
    /// Calls started so far.
    started: u64,
    /// Which calling UA places each call.
    turns: CallerTurns,
}

impl Starter<'_> {
    /// Start the next call, due `offset` after the load's start.
    fn start(&mut self, offset: Duration) {
        let index = self.started;
        self.started += 1;
        let Some((which, n)) = self.turns.turn(index) else {
            // No calling role has an account (refused by validation): nothing can place it.
            self.not_started();
            return;
        };
        let (role, commands) = self.roles[which];
        let account = role.accounts[n % role.accounts.len()].clone();
        let peer = peer_account(self.scenario, role, n);
        let _ = self.events.send(RunEvent::CallStarted {
            role: role.name.clone(),
        });
        self.callers.started();
        let start = RoleCommand::Start {
            account,
            peer,
            schedule: Schedule {
                load_start: self.load_start,
                offset,
            },
        };
        if commands.send(start).is_err() {
            // The role's task is gone (its transport failed): nothing will end the call.
            self.callers.ended_one_unstarted();
        }
    }

    /// A call due by the plan was not started: the concurrency cap was reached.
    fn not_started(&self) {
        let _ = self.events.send(RunEvent::NotStarted);
    }
}

/// The paired callee for the n-th call of a caller role.
fn peer_account(scenario: &Scenario, caller: &ScenarioRole, n: usize) -> Option<Account> {
    let peer_role = caller.steps.iter().find_map(|s| match &s.value {
        Step::Call(c) => c.peer.clone(),
        _ => None,
    })?;
    let role = scenario.role(&peer_role)?;
    if role.accounts.is_empty() {
        return None;
    }
    Some(role.accounts[n % role.accounts.len()].clone())
}

/// When the load's time is up, if it has a time limit.
fn load_end(load: &Load) -> Option<Duration> {
    match load {
        Load::Open { end, .. } | Load::Closed { end, .. } => end.after(),
    }
}
