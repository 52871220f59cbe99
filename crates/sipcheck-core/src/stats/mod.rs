//! What a run produces: each call's outcome record and its SIP ladder, filled once at the
//! call's end and only read by the metrics and the reporters.

pub mod ladder;
pub mod outcome;
