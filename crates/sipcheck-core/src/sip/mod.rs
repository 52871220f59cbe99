//! SIP signalling: messages, transactions (RFC 3261 §17) and digest authentication.

pub mod auth;
pub mod build;
pub mod keepalive;
pub mod msg;
pub mod transaction;
pub mod transport;
pub mod uri;
