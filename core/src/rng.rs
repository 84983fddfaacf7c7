//! The one source of randomness for core's state machines.
//!
//! A machine never draws global randomness: its owner hands it an [`Rng`]. The simulator
//! seeds it from the test's seed so runs repeat exactly; the runtimes seed it once from the
//! operating system. ChaCha20 keeps it unpredictable to an off-path attacker when seeded
//! from the OS (RFC 8489 §6 wants transaction IDs that cannot be guessed).

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};

/// A seeded ChaCha20 generator.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha20Rng);

impl Rng {
    /// A generator whose whole output follows from `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Rng(ChaCha20Rng::from_seed(seed))
    }

    /// A generator seeded from a `u64`, for simulations and tests.
    pub fn seed_from_u64(seed: u64) -> Self {
        Rng(ChaCha20Rng::seed_from_u64(seed))
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A random `u32`.
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A random value in `0..bound` (`bound` > 0), without modulo bias worth speaking of
    /// for the small bounds core uses (ports, jitter).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Lemire's multiply-shift: unbiased enough for 64-bit draws and small bounds.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A new generator split off this one (for a child state machine).
    pub fn fork(&mut self) -> Rng {
        let mut seed = [0u8; 32];
        self.fill(&mut seed);
        Rng::from_seed(seed)
    }
}
