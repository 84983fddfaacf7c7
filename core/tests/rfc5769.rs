//! The test vectors of RFC 5769 (and RFC 8489 Appendix B.1): each parses, verifies its
//! integrity and fingerprint, and re-encodes byte for byte.

use p2pd_core::stun::{
    AttrType, Class, IntegrityKey, Message, MessageBuilder, MessageType, Method, Nonce,
    PasswordAlgorithmKind, Realm, Software, StunError, UserHash, Username, XorMappedAddress,
};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// RFC 5769 §2.1: request with short-term credentials, SOFTWARE, PRIORITY, ICE-CONTROLLED.
const REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// RFC 5769 §2.2: IPv4 success response.
const RESPONSE_V4: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// RFC 5769 §2.3: IPv6 success response.
const RESPONSE_V6: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

/// RFC 5769 §2.4: request with long-term credentials (SASLprep'd password).
const REQUEST_LONG_TERM: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

/// RFC 8489 Appendix B.1: USERHASH and MESSAGE-INTEGRITY-SHA256.
const REQUEST_SHA256: &str = "
    00 01 00 88 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f 24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
    00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f 34 39 39 6b 39 35 34 64
                36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41 00 00 00
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 1c 00 20 fd 8c 27 38 60 d2 e1 8e bc a4 c8 9b 69 73 be fa 7e e8 ec c6 9e 96 42 db 32 6f ab 65 a0 b9 55 ba";

const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const USERNAME_LT: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const PASSWORD_LT: &str = "The\u{00AD}M\u{00AA}tr\u{2168}";

#[test]
fn sample_request_parses_verifies_and_reencodes() {
    let bytes = hex(REQUEST);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.message_type(), MessageType::BINDING_REQUEST);
    assert_eq!(
        msg.get::<Software>().unwrap().unwrap().as_str(),
        "STUN test client"
    );
    assert_eq!(
        msg.get::<Username>().unwrap().unwrap().as_str(),
        "evtj:h6vY"
    );
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD).unwrap();
    msg.verify_integrity(&key).unwrap();
    msg.verify_fingerprint().unwrap();
    assert_eq!(
        msg.verify_integrity(&IntegrityKey::short_term("wrong").unwrap()),
        Err(StunError::IntegrityMismatch)
    );

    let attr = |t| msg.attributes().find(|a| a.typ == t).unwrap().value;
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, msg.message_type(), msg.transaction_id()).unwrap();
    b.set_padding_byte(0x20);
    b.add(&Software::new("STUN test client").unwrap()).unwrap();
    b.add_raw(AttrType::PRIORITY, attr(AttrType::PRIORITY))
        .unwrap();
    b.add_raw(AttrType::ICE_CONTROLLED, attr(AttrType::ICE_CONTROLLED))
        .unwrap();
    b.add(&Username::new("evtj:h6vY").unwrap()).unwrap();
    b.add_integrity(&key).unwrap();
    b.add_fingerprint().unwrap();
    assert_eq!(b.finish(), &bytes[..]);
}

fn check_response(vector: &str, mapped: &str) {
    let bytes = hex(vector);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.message_type(), MessageType::BINDING_SUCCESS);
    let addr = mapped.parse().unwrap();
    assert_eq!(msg.mapped_address().unwrap(), Some(addr));
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD).unwrap();
    msg.verify_integrity(&key).unwrap();
    msg.verify_fingerprint().unwrap();

    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, msg.message_type(), msg.transaction_id()).unwrap();
    b.set_padding_byte(0x20);
    b.add(&Software::new("test vector").unwrap()).unwrap();
    b.add(&XorMappedAddress(addr)).unwrap();
    b.add_integrity(&key).unwrap();
    b.add_fingerprint().unwrap();
    assert_eq!(b.finish(), &bytes[..]);
}

#[test]
fn sample_ipv4_response() {
    check_response(RESPONSE_V4, "192.0.2.1:32853");
}

#[test]
fn sample_ipv6_response() {
    check_response(RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

#[test]
fn sample_long_term_request() {
    let bytes = hex(REQUEST_LONG_TERM);
    let msg = Message::parse(&bytes).unwrap();
    let username = msg.get::<Username>().unwrap().unwrap();
    let nonce = msg.get::<Nonce>().unwrap().unwrap();
    let realm = msg.get::<Realm>().unwrap().unwrap();
    assert_eq!(username.as_str(), USERNAME_LT);
    assert_eq!(nonce.as_str(), "f//499k954d6OL34oL9FSTvy64sA");
    assert_eq!(realm.as_str(), "example.org");
    assert!(!msg.has_fingerprint());
    let key = IntegrityKey::long_term(
        USERNAME_LT,
        "example.org",
        PASSWORD_LT,
        PasswordAlgorithmKind::Md5,
    )
    .unwrap();
    msg.verify_integrity(&key).unwrap();
    assert_eq!(msg.verify_fingerprint(), Err(StunError::NoFingerprint));

    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, msg.message_type(), msg.transaction_id()).unwrap();
    b.add(&username).unwrap();
    b.add(&nonce).unwrap();
    b.add(&realm).unwrap();
    b.add_integrity(&key).unwrap();
    assert_eq!(b.finish(), &bytes[..]);
}

#[test]
fn rfc8489_sha256_request_with_userhash() {
    let bytes = hex(REQUEST_SHA256);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.message_type(),
        MessageType::new(Method::BINDING, Class::Request)
    );
    let hash = msg.get::<UserHash>().unwrap().unwrap();
    assert_eq!(hash, UserHash::compute(USERNAME_LT, "example.org"));
    let key = IntegrityKey::long_term(
        USERNAME_LT,
        "example.org",
        PASSWORD_LT,
        PasswordAlgorithmKind::Md5,
    )
    .unwrap();
    msg.verify_integrity_sha256(&key).unwrap();

    let nonce = msg.get::<Nonce>().unwrap().unwrap();
    let realm = msg.get::<Realm>().unwrap().unwrap();
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, msg.message_type(), msg.transaction_id()).unwrap();
    b.add(&hash).unwrap();
    b.add(&nonce).unwrap();
    b.add(&realm).unwrap();
    b.add_integrity_sha256(&key).unwrap();
    assert_eq!(b.finish(), &bytes[..]);
}

#[test]
fn any_flipped_bit_is_caught() {
    let bytes = hex(REQUEST);
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD).unwrap();
    // Flip every bit of the authenticated region: parsing may fail, and if it does not,
    // integrity or fingerprint must.
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(m) = Message::parse(&b) {
            let ok = m.verify_integrity(&key).is_ok() && m.verify_fingerprint().is_ok();
            assert!(!ok, "bit {i} flipped but the message still verifies");
        }
    }
}
