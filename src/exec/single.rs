//! A single call: the one call of `sipcheck call`, started at once and driven to its end on
//! the agent's driver loop ([`crate::drive::agent`]), with the registration before it and the
//! unregistration after it when asked for.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
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
    driver.agent.probe(Instant::now(), config);
    let mut single = Single {
        ctrl_c: Box::pin(crate::signal::interrupted()),
        interrupted: false,
    };
    driver.run(&mut single).await
}

/// The single call's part around the loop.
struct Single {
    /// Ctrl-C, listened to from the start.
    ctrl_c: Pin<Box<dyn Future<Output = ()> + Send>>,
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
        (&mut self.ctrl_c).await;
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
        // A call still in its dialog cannot go on without the connection; one whose dialog
        // has ended (its BYE answered, the peer then closing) only has its report to finish.
        if agent.live_calls() > 0 && !agent.endpoint().is_empty() {
            return Err(error);
        }
        let now = Instant::now();
        let peer = error.flow();
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
