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
use sipcheck_core::ua::register::{LocalEnd, Next, RegisterOutcome, RegisterParams, Registration};
use sipcheck_core::ua::renewal::{Renewal as RenewalSchedule, Why};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::agent::{Agent, Command, IncomingCall, LostFlow};
use super::script::{self, RoleContext};
use crate::media::PortRange;
use crate::probe::client::os_seed;
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

    // Registrations, with refreshes.
    let mut registered = Vec::new();
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
        let mut set = JoinSet::new();
        for account in run.role.accounts.clone() {
            let ctx = run.ctx.clone();
            let events = events.clone();
            set.spawn(async move {
                let mut reg = Registration::new(
                    RegisterParams {
                        user: account.user.clone(),
                        domain: account.domain.clone(),
                        credentials: Credentials::new(
                            account.user.clone(),
                            account.password.clone(),
                        ),
                        expires,
                    },
                    &mut IdGen::new(os_seed()),
                );
                let result = register(&ctx, &mut reg, registrar, expires).await;
                let ok = result.is_ok();
                let _ = events.send(RunEvent::Registered(RegisterResult {
                    role: ctx.role.clone(),
                    user: account.user.clone(),
                    rtt: result.as_ref().ok().copied(),
                    unregister: false,
                    error: result.err(),
                }));
                (ctx, reg, account, ok)
            });
            // Bounded parallelism: the registrar is not the target of a flood at start.
            while set.len() >= 50 {
                if let Some(Ok(done)) = set.join_next().await {
                    registered.push((done, registrar, expires, refresh, run.flow_lost.clone()));
                }
            }
        }
        while let Some(joined) = set.join_next().await {
            if let Ok(done) = joined {
                registered.push((done, registrar, expires, refresh, run.flow_lost.clone()));
            }
        }
    }
    let (refresh_stop_tx, refresh_stop) = watch::channel(false);
    let mut refreshers = JoinSet::new();
    let mut to_unregister = Vec::new();
    for ((ctx, reg, account, ok), registrar, expires, refresh, flow_lost) in registered {
        if !ok {
            continue;
        }
        let reg = Arc::new(tokio::sync::Mutex::new(reg));
        to_unregister.push((ctx.clone(), reg.clone(), account.clone(), registrar));
        // Over TCP a registration is also renewed when the connection to the registrar
        // drops, whether or not it is refreshed on time.
        if refresh || kind.is_reliable() {
            refreshers.spawn(renew(Renewal {
                ctx,
                reg,
                account,
                registrar,
                expires,
                refresh,
                flow_lost: kind.is_reliable().then(|| flow_lost.subscribe()),
                stop: refresh_stop.clone(),
                events: events.clone(),
            }));
        }
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
    let _ = refresh_stop_tx.send(true);
    while refreshers.join_next().await.is_some() {}
    for (ctx, reg, account, registrar) in to_unregister {
        let mut reg = reg.lock().await;
        let result = register(&ctx, &mut reg, registrar, 0).await;
        let _ = events.send(RunEvent::Registered(RegisterResult {
            role: ctx.role.clone(),
            user: account.user.clone(),
            rtt: result.as_ref().ok().copied(),
            unregister: true,
            error: result.err(),
        }));
    }
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

/// REGISTER through the role's agent, answering the challenge; the round trip.
async fn register(
    ctx: &RoleContext,
    reg: &mut Registration,
    registrar: SocketAddr,
    expires: u32,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut ids = IdGen::new(os_seed());
    for _ in 0..4 {
        let request = reg.request(expires, &ctx.local, &mut ids);
        let (tx, rx) = oneshot::channel();
        ctx.commands
            .send(Command::Request(request, registrar, tx))
            .map_err(|_| "the role's transport is gone".to_string())?;
        let response = rx
            .await
            .map_err(|_| "the role's transport is gone".to_string())??;
        match reg.on_final_response(&response) {
            Next::Retry => continue,
            Next::Done(RegisterOutcome::Failed(f)) => return Err(f.to_string()),
            Next::Done(_) => return Ok(started.elapsed()),
        }
    }
    Err("too many authentication challenges".into())
}

/// What keeps one registration alive.
struct Renewal {
    ctx: Arc<RoleContext>,
    reg: Arc<tokio::sync::Mutex<Registration>>,
    account: Account,
    registrar: SocketAddr,
    expires: u32,
    /// Refreshed at 80 % of its lifetime.
    refresh: bool,
    /// Over TCP: the role's connections that dropped; renewed at once when it is the
    /// registrar's (and this user agent's, when each has its own).
    flow_lost: Option<broadcast::Receiver<LostFlow>>,
    stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<RunEvent>,
}

/// Renew a registration on the core's [`RenewalSchedule`]: on time (when refreshed), at
/// once when the connection to the registrar drops (the REGISTER opens a new one), and
/// after a failed attempt again with a growing wait; a failure, or a registration made anew,
/// is reported.
async fn renew(mut r: Renewal) {
    let mut schedule = RenewalSchedule::new(Instant::now(), r.expires, r.refresh);
    loop {
        tokio::select! {
            _ = crate::ua::sleep_until(schedule.poll_timeout()) => {}
            lost = recv_lost(&mut r.flow_lost) => match lost {
                Ok((peer, ua))
                    if peer == r.registrar
                        && ua.as_deref().is_none_or(|ua| ua == r.account.user) =>
                {
                    schedule.flow_lost(Instant::now());
                }
                Ok(_) => {}
                // Some losses were not seen: one may have been the registrar's.
                Err(broadcast::error::RecvError::Lagged(_)) => schedule.flow_lost(Instant::now()),
                Err(broadcast::error::RecvError::Closed) => r.flow_lost = None,
            },
            _ = r.stop.wait_for(|s| *s) => return,
        }
        let Some(why) = schedule.due(Instant::now()) else {
            continue;
        };
        let mut reg = r.reg.lock().await;
        let result = register(&r.ctx, &mut reg, r.registrar, r.expires).await;
        drop(reg);
        let event = match result {
            Ok(rtt) => {
                schedule.on_success(Instant::now());
                // A registration made anew is reported; a periodic refresh is not.
                (why != Why::Refresh).then_some(RegisterResult {
                    role: r.ctx.role.clone(),
                    user: r.account.user.clone(),
                    rtt: Some(rtt),
                    unregister: false,
                    error: None,
                })
            }
            Err(error) => {
                let wait = schedule.on_failure(Instant::now());
                let what = match why {
                    Why::FlowLost => format!(
                        "re-registration after the connection to {} was lost failed",
                        r.registrar
                    ),
                    Why::Refresh | Why::Retry => "refresh failed".to_string(),
                };
                Some(RegisterResult {
                    role: r.ctx.role.clone(),
                    user: r.account.user.clone(),
                    rtt: None,
                    unregister: false,
                    error: Some(format!(
                        "{what}: {error} (tried again in {} s)",
                        wait.as_secs()
                    )),
                })
            }
        };
        if let Some(event) = event {
            let _ = r.events.send(RunEvent::Registered(event));
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
