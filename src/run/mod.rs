//! `sipcheck run`: a scenario's user agents, load and reports.

pub mod result;
