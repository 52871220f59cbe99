//! How the probes (`register`, `call --register`, `answer --server`) print a registration's
//! failure; the registration itself is the core's agent's (`ua::agent`).

use sipcheck_core::ua::register::RegisterFailure;
use sipcheck_core::ua::registration::RegisterError;

/// A registration failure as a probe prints it: a missing password says where one is given.
pub fn describe(error: &RegisterError) -> String {
    match error {
        RegisterError::Refused(failure @ RegisterFailure::NoPassword { .. }) => {
            format!("{failure} (--password or SIP_PASSWORD)")
        }
        _ => error.to_string(),
    }
}
