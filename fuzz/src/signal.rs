//! Signaling (`p2pd_core::signal`): `open` on arbitrary bytes never panics and accepts
//! nothing it did not seal; sealed messages open to what was sealed; the dedupe cache
//! stays bounded under any sequence of ids.

use std::time::Duration;

use bolero::check;
use p2pd_core::identity::Identity;
use p2pd_core::rng::Rng;
use p2pd_core::signal::{Dedupe, MAX_BODY, MessageId, open, seal};

const TEST_TIME: Duration = Duration::from_secs(2);
const NOW: u64 = 1_700_000_000_000;

fn keys() -> (Identity, Identity) {
    let mut rng = Rng::seed_from_u64(5);
    (Identity::generate(&mut rng), Identity::generate(&mut rng))
}

/// Arbitrary bytes (with the version byte and our node id forced in half the time, to
/// get past the cheap checks) → `open`: never panics, never succeeds (forging would need
/// the AEAD and a signature).
#[test]
fn signal_open_arbitrary() {
    let (_, bob) = keys();
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        assert!(open(&bob, bytes, NOW, 120_000).is_err());
        let mut b = bytes.to_vec();
        if b.len() > 17 {
            b[0] = 1;
            b[1..17].copy_from_slice(&bob.node_id().to_bytes());
            assert!(open(&bob, &b, NOW, 120_000).is_err());
        }
    });
}

/// seal → open round trip over arbitrary bodies, kinds and expiries; a one-bit flip
/// anywhere is refused.
#[test]
fn signal_round_trip() {
    let (alice, bob) = keys();
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(Vec<u8>, u8, u32, u16, u64)>()
        .for_each(|(body, kind, ahead, flip, seed)| {
            let body = &body[..body.len().min(MAX_BODY)];
            let mut rng = Rng::seed_from_u64(*seed);
            let id = MessageId::random(&mut rng);
            let expiry = NOW + 1 + u64::from(*ahead % 120_000);
            let sealed = seal(&alice, &bob.public(), id, expiry, *kind, body, &mut rng).unwrap();
            let m = open(&bob, &sealed, NOW, 120_000).unwrap();
            assert_eq!(
                (m.from, m.id, m.expiry_ms, m.kind, &m.body[..]),
                (alice.public(), id, expiry, *kind, body)
            );
            let mut bad = sealed.clone();
            let i = usize::from(*flip) % bad.len();
            bad[i] ^= 1 << (flip % 8);
            assert!(open(&bob, &bad, NOW, 120_000).is_err());
        });
}

/// Any sequence of (id, expiry, now) insertions: never more than capacity entries, and a
/// message (id with its expiry: the signature binds the two, so a replay carries both)
/// accepted once is never accepted again before it expires, even after eviction.
#[test]
fn signal_dedupe_bounded() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<Vec<(u8, u16, u8)>>()
        .for_each(|ops| {
            let mut d = Dedupe::new(8);
            let mut now = 0u64;
            let mut accepted: Vec<(u8, u64)> = Vec::new();
            for (id, ttl, step) in ops {
                now += u64::from(*step);
                let expiry = now + u64::from(*ttl);
                let ok = d.insert(MessageId([*id; 16]), expiry, now).is_ok();
                if ok {
                    assert!(
                        !accepted
                            .iter()
                            .any(|(i, e)| i == id && *e == expiry && *e > now),
                        "replay of {id} accepted"
                    );
                    accepted.push((*id, expiry));
                }
                assert!(d.len() <= 8);
            }
        });
}
