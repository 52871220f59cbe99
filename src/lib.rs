//! sipcheck
