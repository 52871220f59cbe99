//! `sipcheck run`: a scenario's user agents, load and reports.

mod agent;
pub mod executor;
pub mod load;
pub mod result;
mod script;
