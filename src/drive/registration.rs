//! The driver of the core's registration [`Lifecycle`]: it carries each REGISTER through a
//! client transaction (a probe's [`Client`](crate::probe::client::Client)) and hands the
//! outcome back with the wall clock's `now`. `register` drives the machine this way; the
//! registrations of a scenario role, of `answer --server` and of `call --register` are kept
//! by their agent in the core (`ua::agent`), the same machine inside.

use std::time::Instant;

use sipcheck_core::ua::register::RegisterFailure;
use sipcheck_core::ua::registration::{Lifecycle, RegisterError, RegistrationEvent, Response};

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
