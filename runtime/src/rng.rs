//! Seeding core's generator from the operating system, once.

use p2pd_core::rng::Rng;

/// A generator seeded from the OS; core draws all its randomness from it.
pub fn os_rng() -> std::io::Result<Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(format!("OS randomness: {e}")))?;
    Ok(Rng::from_seed(seed))
}
