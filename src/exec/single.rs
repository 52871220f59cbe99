//! A single call: the one call of `sipcheck call`, started at once and driven to its end on
//! the agent's driver loop ([`crate::drive::agent`]), with the registration before it and the
//! unregistration after it when asked for.

use std::net::SocketAddr;
use std::time::Instant;

use sipcheck_core::ua::agent::probe::{ProbeConfig, ProbeResult};
use sipcheck_core::ua::agent::Agent;

use crate::drive::agent::{Control, Driver, Media};
use crate::drive::transport::TransportError;
use crate::drive::wire::{SendFailed, Wire};

/// Start the call `config` describes on `driver`'s agent and drive it until the probe is
/// over: its result. Ctrl-C stops it (the agent hangs up or cancels, and unregisters). A
/// transport that fails under a call fails the probe with it; under a REGISTER, the
/// registration fails naming it.
pub(crate) async fn drive<M: Media>(
    driver: &mut Driver<M>,
    config: ProbeConfig<SocketAddr>,
) -> Result<ProbeResult, TransportError> {
    // Listening before anything is sent: a Ctrl-C right after the first request is not lost.
    let mut single = Single {
        interrupts: crate::signal::Interrupts::new().ok(),
        interrupted: false,
    };
    driver.agent.probe(Instant::now(), config);
    driver.run(&mut single).await
}

/// The single call's part around the loop.
struct Single {
    /// Ctrl-C (and SIGTERM), listened to from the start.
    interrupts: Option<crate::signal::Interrupts>,
    interrupted: bool,
}

impl<M> Control<M> for Single {
    type Wake = ();
    type Done = ProbeResult;
    type Error = TransportError;

    async fn wake(&mut self) {
        if self.interrupted {
            std::future::pending::<()>().await;
        }
        crate::signal::next(self.interrupts.as_mut()).await;
    }

    fn handle(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        (): (),
    ) -> Result<Option<ProbeResult>, TransportError> {
        self.interrupted = true;
        agent.stop(Instant::now());
        Ok(None)
    }

    fn results(&mut self, _agent: &mut Agent<SocketAddr>, _media: &mut M) {}

    fn poll_done(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        _stopping: usize,
    ) -> Result<Option<ProbeResult>, TransportError> {
        Ok(agent.poll_probe())
    }

    /// The call fails with the transport (as an error of the probe); a REGISTER under way
    /// fails naming it.
    fn transport_failed(
        &mut self,
        _wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        error: TransportError,
    ) -> Result<bool, TransportError> {
        let peer = error.flow();
        if agent.live_calls() > 0 {
            // A peer closing its connection once the calls' dialogs with it are over (the
            // far end closing after its 200 OK to our BYE) is no failure: those calls' results
            // stand; nothing more can come on that connection. One still carrying a call
            // fails the probe, naming it.
            match peer {
                Some(peer) if agent.calls_with(&peer) == 0 => {
                    agent.requests_failed(Instant::now(), &peer, None, &error.to_string());
                    return Ok(false);
                }
                _ => return Err(error),
            }
        }
        let now = Instant::now();
        if let Some(peer) = peer {
            agent.requests_failed(now, &peer, None, &error.to_string());
        } else {
            agent.transport_gone(now, &error.to_string());
        }
        Ok(peer.is_some())
    }

    /// Anything but a REGISTER that could not go fails the call (the agent ended it); a
    /// REGISTER, the registration, naming why.
    fn send_failed(
        &mut self,
        _wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        failed: SendFailed,
    ) -> Result<(), TransportError> {
        if !failed.register {
            return Err(failed.error);
        }
        let why = failed.error.to_string();
        agent.requests_failed(Instant::now(), &failed.destination, None, &why);
        Ok(())
    }
}
