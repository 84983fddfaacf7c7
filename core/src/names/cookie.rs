//! Stateless address cookies: the server's proof that a client receives datagrams at the
//! address it sends from, before the server does any work for it.
//!
//! Over UDP a source address can be forged. Without a check, a forger could make the
//! server send records (up to 4 KB) to a victim — amplification — or spend a victim's
//! per-address name limit and rate budget. So the first request from an address gets
//! only a cookie back (a datagram no larger than the request), and the client repeats
//! the request with it, as DNS cookies (RFC 7873) and QUIC Retry (RFC 9000 §8.1) do.
//! The cookie is HMAC-SHA256(server secret, time window ‖ client IP), truncated to 16
//! bytes; it is valid for the current and the previous 5-minute window, so the server
//! keeps no per-client state. A restart draws a new secret: clients just fetch a new one.

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::wire::{COOKIE_LEN, Cookie};
use crate::rng::Rng;

/// How long one cookie window lasts, in milliseconds.
pub const COOKIE_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Makes and checks cookies.
#[derive(Clone)]
pub struct CookieJar {
    secret: [u8; 32],
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar { .. }")
    }
}

impl CookieJar {
    /// A jar with a secret drawn from `rng`.
    pub fn new(rng: &mut Rng) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        CookieJar { secret }
    }

    fn make(&self, window: u64, ip: IpAddr) -> Cookie {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&window.to_be_bytes());
        match ip {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let tag = mac.finalize().into_bytes();
        let mut c = [0u8; COOKIE_LEN];
        c.copy_from_slice(&tag[..COOKIE_LEN]);
        // Zero means "no cookie" on the wire.
        if c == [0; COOKIE_LEN] {
            c[0] = 1;
        }
        c
    }

    /// The cookie for `ip` now.
    pub fn issue(&self, unix_ms: u64, ip: IpAddr) -> Cookie {
        self.make(unix_ms / COOKIE_WINDOW_MS, ip)
    }

    /// Whether `cookie` was issued to `ip` in this window or the previous one.
    pub fn check(&self, unix_ms: u64, ip: IpAddr, cookie: &Cookie) -> bool {
        let w = unix_ms / COOKIE_WINDOW_MS;
        let now: bool = self.make(w, ip).ct_eq(cookie).into();
        let before: bool = self.make(w.saturating_sub(1), ip).ct_eq(cookie).into();
        now | before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_bind_address_and_time() {
        let jar = CookieJar::new(&mut Rng::seed_from_u64(1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = 10 * COOKIE_WINDOW_MS + 7;
        let c = jar.issue(t, a);
        assert!(jar.check(t, a, &c));
        assert!(jar.check(t + COOKIE_WINDOW_MS, a, &c));
        assert!(!jar.check(t + 2 * COOKIE_WINDOW_MS, a, &c));
        assert!(!jar.check(t, b, &c));
        let other = CookieJar::new(&mut Rng::seed_from_u64(2));
        assert!(!other.check(t, a, &c));
    }
}
