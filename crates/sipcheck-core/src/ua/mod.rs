//! User-agent behaviour above the transaction layer, as sans-IO state machines.

pub mod admission;
pub mod agent;
pub mod call;
pub mod register;
pub mod registration;
pub mod renewal;
pub mod script;
pub mod work;
