//! Audio: G.711 codecs, tone generation and detection.

pub mod g711;
pub mod tone;
