//! The scenario executor: binds each role's transport, registers its user agents, starts
//! calls on the load plan's schedule, routes incoming calls to callee scripts, and winds
//! everything down — on time or on Ctrl-C — with every UA unregistered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711::Codec;
use sipcheck_core::scenario::model::{Account, Connections, Load, Role, Route, Scenario, Step};
use sipcheck_core::scenario::plan::LoadPlan;
use sipcheck_core::sip::auth::Credentials;
use sipcheck_core::sip::transport::Transport;
use sipcheck_core::ua::call::{Endpoint, EndpointConfig};
use sipcheck_core::ua::register::{LocalEnd, RegisterParams};
use sipcheck_core::ua::registration::{
    Config as RegistrationConfig, Lifecycle, RegistrationEvent, Response,
};
use sipcheck_core::ua::renewal::Why;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::agent::{Agent, Command, IncomingCall, LostFlow};
use super::script::{self, RoleContext};
use crate::media::PortRange;
use crate::probe::client::os_seed;
use crate::registration;
use crate::transport::{self, SipSocket, TcpPool, TransportError, UdpTransport};
use crate::ua::UaDriver;
use sipcheck_core::stats::outcome::{CallResult, RegisterResult};

/// What the executor reports while it runs.
#[derive(Debug)]
pub enum RunEvent {
    /// A caller started a call.
    CallStarted {
        /// The role.
        role: String,
    },
    /// A call (one side of it) finished; its figures, once.
    CallFinished(Box<CallResult>),
    /// A registration (or unregistration) finished.
    Registered(RegisterResult),
    /// A call due by the plan was not started: the concurrency cap was reached.
    NotStarted,
}

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

struct RoleRun {
    role: Role,
    ctx: Arc<RoleContext>,
    call_steps: Arc<Vec<sipcheck_core::scenario::model::Located<Step>>>,
    registrar: Option<SocketAddr>,
    registers: Option<(Duration, bool)>,
    /// The peer (and user agent) of each of the role's TCP connections that drops.
    flow_lost: broadcast::Sender<LostFlow>,
}

/// Run `scenario` until its load ends or `stop` turns true; every result goes to `events`.
/// Returns when every call has ended and every UA is unregistered.
pub async fn execute(
    scenario: Arc<Scenario>,
    wavs: Arc<Wavs>,
    events: mpsc::UnboundedSender<RunEvent>,
    stop: watch::Receiver<bool>,
) -> Result<Duration, RunError> {
    let run_start = Instant::now();
    let seed = os_seed();
    let (server, proxy) = match &scenario.target.route {
        Route::Server {
            server,
            outbound_proxy,
        } => {
            let port = scenario.target.transport.default_port();
            let server_addr =
                transport::resolve(&host_port(&server.host, server.port.unwrap_or(port)), port)
                    .await?;
            let proxy_addr = match outbound_proxy {
                Some(p) => Some(
                    transport::resolve(&host_port(&p.host, p.port.unwrap_or(port)), port).await?,
                ),
                None => None,
            };
            (Some(server_addr), proxy_addr)
        }
        Route::Direct => (None, None),
    };
    let kind = match scenario.target.transport {
        // Refused by validation already.
        Transport::Tls => {
            return Err(RunError::Setup(
                "transport `tls` is not supported in scenarios yet".into(),
            ))
        }
        kind @ (Transport::Udp | Transport::Tcp) => kind,
    };
    let ports = Arc::new(PortRange::new(
        scenario.media.rtp_ports.first,
        scenario.media.rtp_ports.last,
    ));
    let codecs: Vec<Codec> = scenario.media.codecs.clone();
    let ptime_ms = u32::try_from(scenario.media.ptime.as_millis()).unwrap_or(20);
    let jitter_frames =
        (scenario.media.jitter_buffer.as_millis() / u128::from(ptime_ms.max(1))).max(1) as usize;

    // One transport, endpoint and agent per role.
    let mut agents = JoinSet::new();
    let mut incoming_rx = Vec::new();
    let (load_done_tx, load_done) = watch::channel(false);
    let mut roles = Vec::new();
    for (index, role) in scenario.roles.iter().enumerate() {
        let bind = role.listen.or(scenario.target.local).unwrap_or_else(|| {
            let peer = server.unwrap_or_else(|| "127.0.0.1:5060".parse().expect("literal"));
            let ip = transport::local_ip_for(peer)
                .unwrap_or_else(|_| "127.0.0.1".parse().expect("literal"));
            SocketAddr::new(ip, 0)
        });
        let transport = match kind {
            Transport::Udp => SipSocket::Udp(UdpTransport::bind(bind, 4 << 20).await?),
            _ => SipSocket::TcpPool(
                TcpPool::bind(
                    bind,
                    scenario.target.keepalive,
                    scenario.target.connections == Connections::PerUa,
                )
                .await?,
            ),
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
        let mut driver = UaDriver::new(transport, endpoint, false);
        driver.record_call_ladders();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (flow_lost, _) = broadcast::channel(64);
        agents.spawn(
            Agent::new(driver, cmd_rx, in_tx)
                .notify_flow_lost(flow_lost.clone())
                .run(),
        );
        incoming_rx.push(in_rx);
        let call_steps: Vec<_> = role
            .steps
            .iter()
            .filter(|s| script::is_call_step(&s.value))
            .cloned()
            .collect();
        let registers = role.steps.iter().find_map(|s| match s.value {
            Step::Register { expires, refresh } => Some((expires, refresh)),
            _ => None,
        });
        roles.push(RoleRun {
            role: role.clone(),
            ctx: Arc::new(RoleContext {
                role: role.name.clone(),
                commands: cmd_tx,
                local,
                next_hop: proxy.or(server),
                domain: scenario.target.domain.clone(),
                codecs: codecs.clone(),
                ptime_ms,
                jitter_frames,
                ports: ports.clone(),
                wavs: wavs.clone(),
                stop: stop.clone(),
                load_done: load_done.clone(),
                rtp: scenario.media.rtp,
                record_dir: scenario.media.record.as_ref().map(std::path::PathBuf::from),
                destinations: Default::default(),
            }),
            call_steps: Arc::new(call_steps),
            registrar: proxy.or(server),
            registers,
            flow_lost,
        });
    }

    // Callee side: serve incoming calls of every role.
    let mut tasks: JoinSet<()> = JoinSet::new();
    for (run, mut rx) in roles.iter().zip(incoming_rx) {
        let accounts: HashMap<String, Account> = run
            .role
            .accounts
            .iter()
            .map(|a| (a.user.clone(), a.clone()))
            .collect();
        let fallback = run.role.accounts.first().cloned();
        let ctx = run.ctx.clone();
        let steps = run.call_steps.clone();
        let answers = run.call_steps.iter().any(|s| {
            matches!(
                s.value,
                Step::Answer { .. } | Step::Reject { .. } | Step::Ring(_)
            )
        });
        let events = events.clone();
        tasks.spawn(async move {
            let mut calls = JoinSet::new();
            let mut n = 0u64;
            while let Some(incoming) = rx.recv().await {
                let account = accounts.get(&incoming.user).cloned().or(fallback.clone());
                match (answers, account) {
                    (true, Some(account)) => {
                        n += 1;
                        let ctx = ctx.clone();
                        let steps = steps.clone();
                        let events = events.clone();
                        calls.spawn(Box::pin(async move {
                            let result =
                                script::run_callee(ctx, account, incoming, steps, seed ^ n).await;
                            let _ = events.send(RunEvent::CallFinished(Box::new(result)));
                        }));
                    }
                    _ => {
                        let IncomingCall { call, .. } = incoming;
                        let _ = ctx.commands.send(Command::Reject(call, 404));
                    }
                }
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
        });
    }

    // Registrations: each user agent's life (registered before the load starts, renewed
    // during it, unregistered after it) in a task of its own.
    let (registration_stop_tx, registration_stop) = watch::channel(false);
    // Bounded parallelism: the registrar is not the target of a flood at start or end.
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let mut lives = JoinSet::new();
    let mut first_rounds = Vec::new();
    for run in &roles {
        let Some((expires, refresh)) = run.registers else {
            continue;
        };
        let Some(registrar) = run.registrar else {
            return Err(RunError::Setup(format!(
                "role {} registers but the target has no server",
                run.role.name
            )));
        };
        let expires = u32::try_from(expires.as_secs()).unwrap_or(3600);
        for account in run.role.accounts.clone() {
            let (first_tx, first_rx) = oneshot::channel();
            first_rounds.push(first_rx);
            lives.spawn(keep_registered(Life {
                ctx: run.ctx.clone(),
                account,
                registrar,
                expires,
                refresh,
                // Over TCP a registration is also renewed when the connection to the
                // registrar drops, whether or not it is refreshed on time.
                flow_lost: kind.is_reliable().then(|| run.flow_lost.subscribe()),
                stop: registration_stop.clone(),
                events: events.clone(),
                gate: gate.clone(),
                first_round: Some(first_tx),
            }));
        }
    }
    for first in first_rounds {
        let _ = first.await;
    }

    // The load: callers start calls on the plan's schedule.
    let callers: Vec<&RoleRun> = roles.iter().filter(|r| r.role.calls()).collect();
    let mut calls = JoinSet::new();
    let load_start = Instant::now();
    let mut index: u64 = 0;
    let start_call = |index: u64, offset: Duration, calls: &mut JoinSet<()>| {
        let run = callers[(index as usize) % callers.len()];
        let n = (index / callers.len() as u64) as usize;
        let account = run.role.accounts[n % run.role.accounts.len()].clone();
        let peer = peer_account(&scenario, run, n);
        let ctx = run.ctx.clone();
        let steps = run.call_steps.clone();
        let events_tx = events.clone();
        let _ = events.send(RunEvent::CallStarted {
            role: run.role.name.clone(),
        });
        let call_seed = seed ^ (index << 20);
        // Boxed: the call's future is a few KiB, moved at every hand-over when inline.
        calls.spawn(Box::pin(async move {
            let result =
                script::run_caller(ctx, account, peer, steps, offset, load_start, call_seed).await;
            let _ = events_tx.send(RunEvent::CallFinished(Box::new(result)));
        }));
    };
    let mut stop_load = stop.clone();
    if callers.is_empty() {
        // No callers: serve incoming calls until stopped or the load's time is up.
        let limit = load_end(&scenario.load).unwrap_or(Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            _ = stop_load.wait_for(|s| *s) => {}
            _ = tokio::time::sleep(limit) => {}
        }
    } else {
        match LoadPlan::compile(&scenario.load) {
            LoadPlan::Open(mut plan) => {
                let cap = plan.max_concurrent().map(|c| c as usize);
                while let Some(offset) = plan.next_start() {
                    // A start already due goes at once: a timer per call would cost a turn
                    // of the runtime (and an epoll wake-up) per call at high rates.
                    let at = load_start + offset;
                    if at > Instant::now() {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {}
                            _ = stop_load.wait_for(|s| *s) => break,
                        }
                    } else if *stop_load.borrow() {
                        break;
                    }
                    while calls.try_join_next().is_some() {}
                    if cap.is_some_and(|c| calls.len() >= c) {
                        let _ = events.send(RunEvent::NotStarted);
                        continue;
                    }
                    start_call(index, offset, &mut calls);
                    index += 1;
                }
            }
            LoadPlan::Closed(plan) => loop {
                let t = load_start.elapsed();
                if *stop_load.borrow() || !plan.may_start(index, t) {
                    break;
                }
                while calls.try_join_next().is_some() {}
                if calls.len() < plan.target_at(t) as usize {
                    start_call(index, t, &mut calls);
                    index += 1;
                    continue;
                }
                tokio::select! {
                    _ = calls.join_next() => {}
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = stop_load.wait_for(|s| *s) => break,
                }
            },
        }
    }
    while calls.join_next().await.is_some() {}
    // Callee calls still running finish on their own (BYE); give them the time they need,
    // bounded: a callee waiting for a BYE or CANCEL gives up a while after this.
    let _ = load_done_tx.send(true);
    let _ = registration_stop_tx.send(true);
    while lives.join_next().await.is_some() {}
    // Each agent finishes its calls and stops; then the callee loops end.
    for run in &roles {
        let _ = run.ctx.commands.send(Command::Shutdown);
    }
    drop(roles);
    while tasks.join_next().await.is_some() {}
    while agents.join_next().await.is_some() {}
    Ok(run_start.elapsed())
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The paired callee for the n-th call of a caller role.
fn peer_account(scenario: &Scenario, caller: &RoleRun, n: usize) -> Option<Account> {
    let peer_role = caller.role.steps.iter().find_map(|s| match &s.value {
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

/// What one user agent's registration life needs.
struct Life {
    ctx: Arc<RoleContext>,
    account: Account,
    registrar: SocketAddr,
    expires: u32,
    /// Refreshed at 80 % of its lifetime.
    refresh: bool,
    /// Over TCP: the role's connections that dropped; renewed at once when it is the
    /// registrar's (and this user agent's, when each has its own).
    flow_lost: Option<broadcast::Receiver<LostFlow>>,
    /// Turns true when the load is over: time to unregister.
    stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<RunEvent>,
    /// Permits for the first registration and the unregistration.
    gate: Arc<tokio::sync::Semaphore>,
    /// Dropped once the first registration is done (whatever its outcome).
    first_round: Option<oneshot::Sender<()>>,
}

/// Drive one user agent's registration [`Lifecycle`] through the role's agent: register,
/// renew on the core's schedule (on time when refreshed, at once when the connection to the
/// registrar drops, after a failure again with a growing wait), unregister when the load is
/// over. The first registration, a registration made anew, every failure and the
/// unregistration are reported.
async fn keep_registered(mut life: Life) {
    let mut lifecycle = Lifecycle::new(
        RegistrationConfig {
            params: RegisterParams {
                user: life.account.user.clone(),
                domain: life.account.domain.clone(),
                credentials: Credentials::new(
                    life.account.user.clone(),
                    life.account.password.clone(),
                ),
                expires: life.expires,
            },
            local: life.ctx.local.clone(),
            refresh: life.refresh,
            registrar: life.registrar.to_string(),
        },
        IdGen::new(os_seed()),
    );
    let mut path = AgentPath {
        commands: life.ctx.commands.clone(),
        registrar: life.registrar,
    };
    {
        let _permit = life.gate.acquire().await;
        lifecycle.register(Instant::now());
        let events = registration::exchange(&mut lifecycle, &mut path).await;
        report(&life, events);
    }
    drop(life.first_round.take());
    while !lifecycle.is_closed() {
        tokio::select! {
            _ = crate::clock::sleep_until(lifecycle.poll_timeout()) => {
                lifecycle.handle_timeout(Instant::now());
            }
            lost = recv_lost(&mut life.flow_lost) => match lost {
                Ok((peer, ua))
                    if peer == life.registrar
                        && ua.as_deref().is_none_or(|ua| ua == life.account.user) =>
                {
                    lifecycle.flow_lost(Instant::now());
                }
                Ok(_) => {}
                // Some losses were not seen: one may have been the registrar's.
                Err(broadcast::error::RecvError::Lagged(_)) => lifecycle.flow_lost(Instant::now()),
                Err(broadcast::error::RecvError::Closed) => life.flow_lost = None,
            },
            _ = life.stop.wait_for(|s| *s) => {
                lifecycle.stop(Instant::now());
            }
        }
        let _permit = if lifecycle.is_busy() && *life.stop.borrow() {
            life.gate.acquire().await.ok()
        } else {
            None
        };
        let events = registration::exchange(&mut lifecycle, &mut path).await;
        report(&life, events);
    }
}

/// The registration events a run reports: the first registration, one made anew, every
/// failure, the unregistration (a periodic refresh that worked is not reported).
fn report(life: &Life, events: Vec<RegistrationEvent>) {
    for event in events {
        let (rtt, unregister) = match &event {
            RegistrationEvent::Registered { rtt, .. } => (Some(*rtt), false),
            RegistrationEvent::Renewed { why, rtt, .. } if *why != Why::Refresh => {
                (Some(*rtt), false)
            }
            RegistrationEvent::Renewed { .. } => continue,
            RegistrationEvent::Failed { .. } | RegistrationEvent::RenewalFailed { .. } => {
                (None, false)
            }
            RegistrationEvent::Unregistered { rtt, .. } => (Some(*rtt), true),
            RegistrationEvent::UnregisterFailed { .. } => (None, true),
        };
        let _ = life.events.send(RunEvent::Registered(RegisterResult {
            role: life.ctx.role.clone(),
            user: life.account.user.clone(),
            rtt,
            unregister,
            error: event.error_message(),
        }));
    }
}

/// REGISTERs through a role's agent (its calls keep running meanwhile).
struct AgentPath {
    commands: mpsc::UnboundedSender<Command>,
    registrar: SocketAddr,
}

impl registration::Path for AgentPath {
    async fn transact(&mut self, request: Vec<u8>) -> Response {
        let gone = || Response::NoResponse("the role's transport is gone".into());
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Request(request, self.registrar, tx))
            .is_err()
        {
            return gone();
        }
        match rx.await {
            Ok(Ok(message)) => Response::Final(Box::new(message)),
            Ok(Err(error)) => Response::NoResponse(error),
            Err(_) => gone(),
        }
    }
}

/// The next lost flow, or never without a receiver.
async fn recv_lost(
    lost: &mut Option<broadcast::Receiver<LostFlow>>,
) -> Result<LostFlow, broadcast::error::RecvError> {
    match lost {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
