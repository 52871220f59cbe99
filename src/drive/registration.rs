//! The driver of the core's registration [`Lifecycle`]: it carries each REGISTER through a
//! client transaction (a probe's [`Client`](crate::probe::client::Client) or a [`UaDriver`])
//! and hands the outcome back with the wall clock's `now`. `answer --server`,
//! `call --register` and `register` drive the machine this way; a scenario role's
//! registrations are kept by its agent in the core (`ua::agent`), the same machine inside.

use std::net::SocketAddr;
use std::time::Instant;

use sipcheck_core::ua::register::RegisterFailure;
use sipcheck_core::ua::registration::{Lifecycle, RegisterError, RegistrationEvent, Response};

use crate::drive::sip::UaDriver;

/// Where REGISTERs go: one request at a time, each to its final response (or to why none
/// came).
pub(crate) trait Path {
    /// Send `request` through a new client transaction; its outcome.
    async fn transact(&mut self, request: Vec<u8>) -> Response;
}

/// Carry every REGISTER `lifecycle` has to send now (an exchange and its challenge rounds,
/// or a renewal and the unregistration that follows a stop) to its outcome; the events that
/// came of them.
pub(crate) async fn exchange(
    lifecycle: &mut Lifecycle,
    path: &mut impl Path,
) -> Vec<RegistrationEvent> {
    while let Some(request) = lifecycle.poll_request() {
        let response = path.transact(request.bytes).await;
        lifecycle.handle_response(Instant::now(), response);
    }
    std::iter::from_fn(|| lifecycle.poll_event()).collect()
}

/// A registration failure as a probe prints it: a missing password says where one is given.
pub fn describe(error: &RegisterError) -> String {
    match error {
        RegisterError::Refused(failure @ RegisterFailure::NoPassword { .. }) => {
            format!("{failure} (--password or SIP_PASSWORD)")
        }
        _ => error.to_string(),
    }
}

/// REGISTERs through a [`UaDriver`] (its calls keep running meanwhile).
pub(crate) struct DriverPath<'a> {
    /// The driver.
    pub(crate) driver: &'a mut UaDriver,
    /// The registrar (or the outbound proxy in front of it).
    pub(crate) registrar: SocketAddr,
}

impl Path for DriverPath<'_> {
    async fn transact(&mut self, request: Vec<u8>) -> Response {
        match self.driver.request(request, self.registrar).await {
            Ok(message) => Response::Final(Box::new(message)),
            Err(e) => Response::NoResponse(e.to_string()),
        }
    }
}
