//! RTP (RFC 3550/3551): packets, the paced sender schedule and receiver statistics.

pub mod packet;
pub mod pacer;
pub mod receiver;
