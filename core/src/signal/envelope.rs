//! The envelope: every signaling message is signed by its sender and encrypted to its
//! recipient.
//!
//! ```text
//! envelope  = version (1) ‖ recipient node id (16) ‖ ephemeral X25519 key (32) ‖ AEAD(sealed) ‖ tag (16)
//! sealed    = sender public key (32) ‖ message id (16) ‖ expiry (u64 ms since the Unix epoch)
//!             ‖ kind (u8) ‖ body length (u16) ‖ body ‖ signature (64)
//! signature = Ed25519(sender, "p2pd signal v1" ‖ version ‖ recipient id ‖ ephemeral key ‖ sealed-without-signature)
//! key       = HKDF-SHA256(salt = ephemeral key ‖ recipient X25519 key,
//!                         ikm = X25519(ephemeral secret, recipient X25519 key), info = "p2pd signal v1 key")
//! AEAD      = ChaCha20-Poly1305 (RFC 8439), nonce 0 (every key is used once), AAD = the 49-byte header
//! ```
//!
//! **Why this construction.** An ECIES-style one-way box (like Noise's `N` pattern, or
//! HPKE base mode, RFC 9180) fits signaling: the first message to a peer must already be
//! confidential (P2PD sends it in plaintext, spec §4.1), and there is no round trip to spare.
//! The signature inside the ciphertext authenticates the sender without revealing to
//! brokers who talks to whom, and covers the recipient id and the ephemeral key, so a
//! recipient cannot re-wrap a message it received and pass it off to a third node as sent
//! to it (surreptitious forwarding). The recipient's X25519 key is its ed25519 key in
//! Montgomery form, so an address carries one key; using one key pair for Ed25519 and an
//! X25519 KEM is proven sound by Thormarker, "On using the same key pair for Ed25519 and
//! an X25519 based KEM" (eprint 2021/509). The message id (random, from the caller's
//! [`Rng`]) and expiry (wall-clock milliseconds: they cross machines, so `Instant` cannot
//! be used) let receivers drop duplicates and replays ([`super::Dedupe`]).

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use curve25519_dalek::MontgomeryPoint;
use hkdf::Hkdf;
use sha2::Sha256;

use super::error::SignalError;
use crate::identity::{Identity, NODE_ID_LEN, NodeId, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN};
use crate::rng::Rng;

/// The envelope format version.
pub const VERSION: u8 = 1;
/// Largest body a message carries (signaling messages are small; this bounds the MQTT
/// payload well below the client's packet limit).
pub const MAX_BODY: usize = 8 * 1024;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 1 + NODE_ID_LEN + 32;
const TAG_LEN: usize = 16;
const SEALED_FIXED: usize = PUBLIC_KEY_LEN + 16 + 8 + 1 + 2;
/// The smallest envelope (empty body).
pub const MIN_LEN: usize = HEADER_LEN + SEALED_FIXED + SIGNATURE_LEN + TAG_LEN;
/// The largest envelope.
pub const MAX_LEN: usize = MIN_LEN + MAX_BODY;
const SIGN_CONTEXT: &[u8] = b"p2pd signal v1";
const KDF_INFO: &[u8] = b"p2pd signal v1 key";

/// A message's unique id (16 random bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random(rng: &mut Rng) -> Self {
        let mut b = [0u8; 16];
        rng.fill(&mut b);
        MessageId(b)
    }
}

/// What a message says, before sealing or after opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's key (its node id derives from it).
    pub from: PublicKey,
    /// The unique id.
    pub id: MessageId,
    /// When it stops being valid, in milliseconds since the Unix epoch.
    pub expiry_ms: u64,
    /// What kind of message it is (defined by the protocol using signaling).
    pub kind: u8,
    /// The contents.
    pub body: Vec<u8>,
}

fn derive_key(
    shared: &MontgomeryPoint,
    eph: &[u8; 32],
    recipient_x: &[u8; 32],
) -> Option<[u8; 32]> {
    // An all-zero shared secret means a small-order point: refuse (RFC 7748 §6.1).
    if shared.to_bytes() == [0u8; 32] {
        return None;
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph);
    salt[32..].copy_from_slice(recipient_x);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &shared.to_bytes());
    let mut key = [0u8; 32];
    hk.expand(KDF_INFO, &mut key).ok()?;
    Some(key)
}

fn signed_bytes(header: &[u8], sealed_unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_CONTEXT.len() + header.len() + sealed_unsigned.len());
    m.extend_from_slice(SIGN_CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(sealed_unsigned);
    m
}

/// Signs `id`, `expiry_ms`, `kind` and `body` as `sender` and encrypts them to `to`.
pub fn seal(
    sender: &Identity,
    to: &PublicKey,
    id: MessageId,
    expiry_ms: u64,
    kind: u8,
    body: &[u8],
    rng: &mut Rng,
) -> Result<Vec<u8>, SignalError> {
    if body.len() > MAX_BODY {
        return Err(SignalError::BodyTooLong {
            len: body.len(),
            max: MAX_BODY,
        });
    }
    let recipient_x = to.x25519();
    // An ephemeral secret whose shared point is non-zero (a valid recipient key always
    // gives one; the loop is bounded all the same).
    let mut attempt = 0;
    let (eph_pub, key) = loop {
        let mut eph = [0u8; 32];
        rng.fill(&mut eph);
        let eph_pub = MontgomeryPoint::mul_base_clamped(eph).to_bytes();
        let shared = MontgomeryPoint(recipient_x).mul_clamped(eph);
        if let Some(key) = derive_key(&shared, &eph_pub, &recipient_x) {
            break (eph_pub, key);
        }
        attempt += 1;
        if attempt > 4 {
            return Err(SignalError::Undecryptable);
        }
    };
    let mut out = Vec::with_capacity(MIN_LEN + body.len());
    out.push(VERSION);
    out.extend_from_slice(&to.node_id().to_bytes());
    out.extend_from_slice(&eph_pub);
    let mut sealed = Vec::with_capacity(SEALED_FIXED + body.len() + SIGNATURE_LEN);
    sealed.extend_from_slice(&sender.public().to_bytes());
    sealed.extend_from_slice(&id.0);
    sealed.extend_from_slice(&expiry_ms.to_be_bytes());
    sealed.push(kind);
    sealed.extend_from_slice(&(body.len() as u16).to_be_bytes());
    sealed.extend_from_slice(body);
    let sig = sender.sign(&signed_bytes(&out, &sealed));
    sealed.extend_from_slice(&sig);
    let cipher = ChaCha20Poly1305::new(&key.into());
    let tag = cipher
        .encrypt_inout_detached(&Nonce::default(), &out, sealed.as_mut_slice().into())
        .map_err(|_| SignalError::Undecryptable)?;
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decrypts and verifies an envelope addressed to `me`; `now_ms` (Unix milliseconds) and
/// `max_ttl_ms` bound its expiry. Duplicates are the caller's to drop ([`super::Dedupe`]).
pub fn open(
    me: &Identity,
    bytes: &[u8],
    now_ms: u64,
    max_ttl_ms: u64,
) -> Result<Message, SignalError> {
    if bytes.is_empty() {
        return Err(SignalError::TooShort(0));
    }
    if bytes[0] != VERSION {
        return Err(SignalError::UnknownVersion(bytes[0]));
    }
    if bytes.len() < MIN_LEN {
        return Err(SignalError::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_LEN {
        return Err(SignalError::BodyTooLong {
            len: bytes.len() - MIN_LEN,
            max: MAX_BODY,
        });
    }
    let (header, rest) = bytes.split_at(HEADER_LEN);
    let mut to = [0u8; NODE_ID_LEN];
    to.copy_from_slice(&header[1..1 + NODE_ID_LEN]);
    let to = NodeId::from_bytes(to);
    if to != me.node_id() {
        return Err(SignalError::NotForUs(to));
    }
    let mut eph_pub = [0u8; 32];
    eph_pub.copy_from_slice(&header[1 + NODE_ID_LEN..]);
    let recipient_x = me.public().x25519();
    let shared = MontgomeryPoint(eph_pub).mul_clamped(me.x25519_secret());
    let key = derive_key(&shared, &eph_pub, &recipient_x).ok_or(SignalError::Undecryptable)?;
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut sealed = ciphertext.to_vec();
    let cipher = ChaCha20Poly1305::new(&key.into());
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| SignalError::Undecryptable)?;
    cipher
        .decrypt_inout_detached(
            &Nonce::default(),
            header,
            sealed.as_mut_slice().into(),
            &tag.into(),
        )
        .map_err(|_| SignalError::Undecryptable)?;
    // `sealed` is authentic now (only the holder of the ephemeral secret could have made
    // it), but its author is only known once the signature checks out.
    let (unsigned, sig) = sealed.split_at(sealed.len() - SIGNATURE_LEN);
    let mut from = [0u8; PUBLIC_KEY_LEN];
    from.copy_from_slice(&unsigned[..PUBLIC_KEY_LEN]);
    let from = PublicKey::from_bytes(&from).map_err(|_| SignalError::BadSenderKey)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&unsigned[PUBLIC_KEY_LEN..PUBLIC_KEY_LEN + 16]);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&unsigned[PUBLIC_KEY_LEN + 16..PUBLIC_KEY_LEN + 24]);
    let expiry_ms = u64::from_be_bytes(exp);
    let kind = unsigned[PUBLIC_KEY_LEN + 24];
    let body_len = usize::from(u16::from_be_bytes([
        unsigned[SEALED_FIXED - 2],
        unsigned[SEALED_FIXED - 1],
    ]));
    let body = &unsigned[SEALED_FIXED..];
    if body.len() != body_len {
        return Err(SignalError::Malformed("body length does not match"));
    }
    let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| SignalError::BadSignature)?;
    from.verify(&signed_bytes(header, unsigned), &sig)
        .map_err(|_| SignalError::BadSignature)?;
    if expiry_ms <= now_ms {
        return Err(SignalError::Expired {
            ago_ms: now_ms - expiry_ms,
        });
    }
    if expiry_ms - now_ms > max_ttl_ms {
        return Err(SignalError::ExpiryTooFar {
            in_ms: expiry_ms - now_ms,
            max_ms: max_ttl_ms,
        });
    }
    Ok(Message {
        from,
        id: MessageId(id),
        expiry_ms,
        kind,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const TTL: u64 = 120_000;

    struct Fixture {
        alice: Identity,
        bob: Identity,
        rng: Rng,
    }

    fn fixture() -> Fixture {
        let mut rng = Rng::seed_from_u64(9);
        Fixture {
            alice: Identity::generate(&mut rng),
            bob: Identity::generate(&mut rng),
            rng,
        }
    }

    fn sealed(f: &mut Fixture, expiry: u64) -> (MessageId, Vec<u8>) {
        let id = MessageId::random(&mut f.rng);
        let b = seal(
            &f.alice,
            &f.bob.public(),
            id,
            expiry,
            7,
            b"hello bob",
            &mut f.rng,
        )
        .unwrap();
        (id, b)
    }

    #[test]
    fn seal_then_open() {
        let mut f = fixture();
        let (id, bytes) = sealed(&mut f, NOW + 10_000);
        let m = open(&f.bob, &bytes, NOW, TTL).unwrap();
        assert_eq!(m.from, f.alice.public());
        assert_eq!(
            (m.id, m.expiry_ms, m.kind, &m.body[..]),
            (id, NOW + 10_000, 7, &b"hello bob"[..])
        );
        // Brokers see neither the sender nor the body.
        let alice_key = f.alice.public().to_bytes();
        assert!(!bytes.windows(32).any(|w| w == alice_key));
        assert!(!bytes.windows(9).any(|w| w == b"hello bob"));
        assert_eq!(bytes.len(), MIN_LEN + 9);
    }

    #[test]
    fn tampering_anywhere_is_caught() {
        let mut f = fixture();
        let (_, bytes) = sealed(&mut f, NOW + 10_000);
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let e = open(&f.bob, &t, NOW, TTL).unwrap_err();
            let expected = match i {
                0 => matches!(e, SignalError::UnknownVersion(_)),
                1..=16 => matches!(e, SignalError::NotForUs(_)),
                _ => e == SignalError::Undecryptable,
            };
            assert!(expected, "byte {i}: {e:?}");
        }
        assert!(matches!(
            open(&f.bob, &bytes[..MIN_LEN - 1], NOW, TTL),
            Err(SignalError::TooShort(_))
        ));
    }

    #[test]
    fn expired_far_future_and_misaddressed_are_dropped() {
        let mut f = fixture();
        let (_, old) = sealed(&mut f, NOW - 1);
        assert_eq!(
            open(&f.bob, &old, NOW, TTL),
            Err(SignalError::Expired { ago_ms: 1 })
        );
        let (_, far) = sealed(&mut f, NOW + TTL + 1);
        assert!(matches!(
            open(&f.bob, &far, NOW, TTL),
            Err(SignalError::ExpiryTooFar { .. })
        ));
        let (_, good) = sealed(&mut f, NOW + 1000);
        let carol = Identity::generate(&mut f.rng);
        assert_eq!(
            open(&carol, &good, NOW, TTL),
            Err(SignalError::NotForUs(f.bob.node_id()))
        );
        // Carol rewrites the recipient id to hers: the AEAD no longer opens.
        let mut rewritten = good.clone();
        rewritten[1..17].copy_from_slice(&carol.node_id().to_bytes());
        assert_eq!(
            open(&carol, &rewritten, NOW, TTL),
            Err(SignalError::Undecryptable)
        );
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let mut f = fixture();
        // Mallory seals a message that claims Alice as its sender but signs with her own key.
        let mallory = Identity::generate(&mut f.rng);
        let mut forged = seal(
            &mallory,
            &f.bob.public(),
            MessageId([1; 16]),
            NOW + 1000,
            1,
            b"x",
            &mut f.rng,
        )
        .unwrap();
        // Re-encrypt with Alice's key in the sender field: decrypt, swap, re-encrypt.
        let bob_x = f.bob.public().x25519();
        let eph: [u8; 32] = forged[17..49].try_into().unwrap();
        let shared = MontgomeryPoint(eph).mul_clamped(f.bob.x25519_secret());
        let key = derive_key(&shared, &eph, &bob_x).unwrap();
        let cipher = ChaCha20Poly1305::new(&key.into());
        let header = forged[..HEADER_LEN].to_vec();
        let mut body = forged[HEADER_LEN..forged.len() - TAG_LEN].to_vec();
        let tag: [u8; 16] = forged[forged.len() - TAG_LEN..].try_into().unwrap();
        cipher
            .decrypt_inout_detached(
                &Nonce::default(),
                &header,
                body.as_mut_slice().into(),
                &tag.into(),
            )
            .unwrap();
        body[..32].copy_from_slice(&f.alice.public().to_bytes());
        let tag = cipher
            .encrypt_inout_detached(&Nonce::default(), &header, body.as_mut_slice().into())
            .unwrap();
        forged.truncate(HEADER_LEN);
        forged.extend_from_slice(&body);
        forged.extend_from_slice(&tag);
        assert_eq!(
            open(&f.bob, &forged, NOW, TTL),
            Err(SignalError::BadSignature)
        );
    }

    #[test]
    fn body_limit() {
        let mut f = fixture();
        let big = vec![0u8; MAX_BODY + 1];
        assert!(matches!(
            seal(
                &f.alice,
                &f.bob.public(),
                MessageId([0; 16]),
                NOW,
                0,
                &big,
                &mut f.rng
            ),
            Err(SignalError::BodyTooLong { .. })
        ));
        let max = vec![0u8; MAX_BODY];
        let b = seal(
            &f.alice,
            &f.bob.public(),
            MessageId([0; 16]),
            NOW + 5,
            0,
            &max,
            &mut f.rng,
        )
        .unwrap();
        assert_eq!(b.len(), MAX_LEN);
        assert!(open(&f.bob, &b, NOW, TTL).is_ok());
    }
}
