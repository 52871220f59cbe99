//! Identifiers: Via branches, tags, Call-IDs and cnonces.
//!
//! The core never reads the operating system's entropy itself: the shell seeds an [`IdGen`]
//! once from the OS, and tests seed it with a constant so that runs are reproducible.

/// A small, fast pseudo-random generator (SplitMix64) for protocol identifiers.
///
/// Identifiers only need to be unique and unpredictable enough not to collide with other
/// agents; they are not secrets.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A new RFC 3261 Via branch: the magic cookie `z9hG4bK` followed by 16 hex digits.
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.next_u64())
    }

    /// A new From/To tag.
    pub fn tag(&mut self) -> String {
        format!("{:012x}", self.next_u64() >> 16)
    }

    /// A new Call-ID local part (the caller appends `@host` if it wishes).
    pub fn call_id(&mut self) -> String {
        format!("{:016x}{:08x}", self.next_u64(), self.next_u32())
    }

    /// A new client nonce for digest authentication.
    pub fn cnonce(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_carry_the_magic_cookie_and_differ() {
        let mut g = IdGen::new(7);
        let a = g.branch();
        let b = g.branch();
        assert!(a.starts_with("z9hG4bK"));
        assert_eq!(a.len(), 7 + 16);
        assert_ne!(a, b);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = IdGen::new(42);
        let mut b = IdGen::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
