//! p2pd's STUN codec side by side with peer crates, in one run per operation.
//!
//! Groups: `decode`, `encode`, `integrity_verify`, `fingerprint`, and the baselines
//! `bare_hmac_sha1` and `bare_crc32`. Every implementation is checked once, before timing,
//! to produce the same result (same address, same bytes, verification succeeds), so the
//! groups compare equal work; where a peer checks less or more, the function name and
//! BENCHMARKS.md say so.
//!
//! Run: `cargo bench -p p2pd-bench --bench stun -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use stun::message::{Getter as _, Setter as _};
use stun_types::message::{MessageWrite as _, MessageWriteExt as _};

use p2pd_core::stun as p2pd;

/// The success response of RFC 5769 §2.2 (SOFTWARE, XOR-MAPPED-ADDRESS,
/// MESSAGE-INTEGRITY, FINGERPRINT).
const RESPONSE_V4: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// RFC 5769 §2.2's short-term password.
const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769's transaction ID and mapped address.
const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
const ADDR: &str = "192.0.2.1:32853";

/// A Binding success response with XOR-MAPPED-ADDRESS + FINGERPRINT (40 bytes): the
/// `decode` and `encode` subject.
const BINDING_SUCCESS: &str = "
    01 01 00 14 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    80 28 00 04 7d 28 1f 59";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

fn addr() -> SocketAddr {
    ADDR.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// p2pd

fn p2pd_decode(bytes: &[u8]) -> SocketAddr {
    let msg = p2pd::Message::parse(bytes).unwrap();
    msg.get::<p2pd::XorMappedAddress>().unwrap().unwrap().0
}

fn p2pd_decode_fingerprint(bytes: &[u8]) -> SocketAddr {
    let msg = p2pd::Message::parse(bytes).unwrap();
    msg.verify_fingerprint().unwrap();
    msg.get::<p2pd::XorMappedAddress>().unwrap().unwrap().0
}

fn p2pd_encode(buf: &mut [u8], a: SocketAddr) -> usize {
    let mut b = p2pd::MessageBuilder::new(
        buf,
        p2pd::MessageType::BINDING_SUCCESS,
        p2pd::TransactionId::new(TID),
    )
    .unwrap();
    b.add(&p2pd::XorMappedAddress(a)).unwrap();
    b.add_fingerprint().unwrap();
    b.finish().len()
}

fn p2pd_verify_integrity(bytes: &[u8], key: &p2pd::IntegrityKey) {
    p2pd::Message::parse(bytes)
        .unwrap()
        .verify_integrity(key)
        .unwrap();
}

fn p2pd_verify_fingerprint(bytes: &[u8]) {
    p2pd::Message::parse(bytes)
        .unwrap()
        .verify_fingerprint()
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// stun-types (librice)

mod st {
    pub use stun_types::attribute::XorMappedAddress;
    pub use stun_types::message::{
        BINDING, IntegrityKey, Message, MessageClass, MessageIntegrityCredentials, MessageType,
        MessageWriteMutSlice, ShortTermCredentials, TransactionId,
    };
}

fn st_tid() -> st::TransactionId {
    u128::from_be_bytes({
        let mut t = [0u8; 16];
        t[..4].copy_from_slice(&p2pd::MAGIC_COOKIE.to_be_bytes());
        t[4..].copy_from_slice(&TID);
        t
    })
    .into()
}

/// `Message::from_bytes` always verifies FINGERPRINT when present.
fn st_decode(bytes: &[u8]) -> SocketAddr {
    let msg = st::Message::from_bytes(bytes).unwrap();
    msg.attribute::<st::XorMappedAddress>()
        .unwrap()
        .addr(msg.transaction_id())
}

fn st_encode(buf: &mut [u8], a: SocketAddr, tid: st::TransactionId) -> usize {
    let mtype = st::MessageType::from_class_method(st::MessageClass::Success, st::BINDING);
    let mut w = st::Message::builder(mtype, tid, st::MessageWriteMutSlice::new(buf));
    w.add_attribute(&st::XorMappedAddress::new(a, tid)).unwrap();
    w.add_fingerprint().unwrap();
    w.finish()
}

fn st_verify_integrity_key(bytes: &[u8], key: &st::IntegrityKey) {
    st::Message::from_bytes(bytes)
        .unwrap()
        .validate_integrity_with_key(key)
        .unwrap();
}

fn st_verify_integrity_credentials(bytes: &[u8], creds: &st::MessageIntegrityCredentials) {
    st::Message::from_bytes(bytes)
        .unwrap()
        .validate_integrity(creds)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// turn-rs (`turn-server`'s codec)

mod tr {
    pub use turn_server::codec::crypto::{fingerprint, hmac_sha1};
    pub use turn_server::codec::message::attributes::{
        Fingerprint, MessageIntegrity, XorMappedAddress,
    };
    pub use turn_server::codec::message::methods::BINDING_RESPONSE;
    pub use turn_server::codec::message::{Message, MessageEncoder};
    pub use turn_server::codec::{DecodeResult, Decoder};
}

fn tr_message<'a>(dec: &'a mut tr::Decoder, bytes: &'a [u8]) -> tr::Message<'a> {
    match dec.decode(bytes).unwrap() {
        tr::DecodeResult::Message(m) => m,
        tr::DecodeResult::ChannelData(_) => panic!("not a STUN message"),
    }
}

/// Skips padding checks and FINGERPRINT.
fn tr_decode(dec: &mut tr::Decoder, bytes: &[u8]) -> SocketAddr {
    tr_message(dec, bytes)
        .get::<tr::XorMappedAddress>()
        .unwrap()
}

/// turn-rs only writes FINGERPRINT together with MESSAGE-INTEGRITY (`flush(Some(..))`);
/// this adds it alone the way that code does: `append::<Fingerprint>`, `flush`, then
/// `crypto::fingerprint` over the bytes before it.
fn tr_encode(out: &mut bytes::BytesMut, a: SocketAddr) {
    let mut enc = tr::MessageEncoder::new(tr::BINDING_RESPONSE, &TID, out);
    enc.append::<tr::XorMappedAddress>(a);
    enc.append::<tr::Fingerprint>(0);
    enc.flush(None).unwrap();
    let at = out.len() - 8;
    let crc = tr::fingerprint(&out[..at]);
    out[at + 4..].copy_from_slice(&crc.to_be_bytes());
}

/// turn-rs' `Message::verify` takes only 16- or 32-byte long-term keys, so RFC 5769's
/// short-term password is checked here with its own pieces, as `verify` does: the
/// integrity attribute from the decoded message, `crypto::hmac_sha1` (keyed per call).
fn tr_verify_integrity(dec: &mut tr::Decoder, bytes: &[u8], password: &[u8]) {
    let msg = tr_message(dec, bytes);
    let mac = msg.get::<tr::MessageIntegrity>().unwrap();
    let at = mac.as_ptr() as usize - bytes.as_ptr() as usize - 4;
    let len = ((at + 24 - 20) as u16).to_be_bytes();
    let expected = tr::hmac_sha1(password, &[&bytes[0..2], &len, &bytes[4..at]]);
    assert!(mac == expected.as_slice());
}

/// turn-rs has no FINGERPRINT check; this one uses its decoder and `crypto::fingerprint`.
fn tr_verify_fingerprint(dec: &mut tr::Decoder, bytes: &[u8]) {
    let msg = tr_message(dec, bytes);
    let got = msg.get::<tr::Fingerprint>().unwrap();
    let at = bytes.len() - 8;
    assert_eq!(tr::fingerprint(&bytes[..at]), got);
}

// ---------------------------------------------------------------------------------------
// webrtc-rs `stun`

mod wr {
    pub use stun::agent::TransactionId;
    pub use stun::fingerprint::FINGERPRINT;
    pub use stun::integrity::MessageIntegrity;
    pub use stun::message::{BINDING_SUCCESS, Message};
    pub use stun::xoraddr::XorMappedAddress;
}

/// Copies the datagram into the reused `Message` and decodes every attribute into an
/// owned `Vec`; does not check FINGERPRINT or padding.
fn wr_decode(msg: &mut wr::Message, bytes: &[u8]) -> SocketAddr {
    msg.write(bytes).unwrap();
    let mut x = wr::XorMappedAddress::default();
    x.get_from(msg).unwrap();
    SocketAddr::new(x.ip, x.port)
}

fn wr_encode(msg: &mut wr::Message, a: SocketAddr) -> usize {
    msg.reset();
    msg.typ = wr::BINDING_SUCCESS;
    msg.transaction_id = wr::TransactionId(TID);
    msg.write_header();
    wr::XorMappedAddress {
        ip: a.ip(),
        port: a.port(),
    }
    .add_to(msg)
    .unwrap();
    wr::FINGERPRINT.add_to(msg).unwrap();
    msg.raw.len()
}

fn wr_verify_integrity(msg: &mut wr::Message, bytes: &[u8], mi: &wr::MessageIntegrity) {
    msg.write(bytes).unwrap();
    mi.check(msg).unwrap();
}

fn wr_verify_fingerprint(msg: &mut wr::Message, bytes: &[u8]) {
    msg.write(bytes).unwrap();
    wr::FINGERPRINT.check(msg).unwrap();
}

// ---------------------------------------------------------------------------------------
// Sanity: every implementation does the same thing before anything is timed.

fn check_equivalence() {
    let success = hex(BINDING_SUCCESS);
    let rfc = hex(RESPONSE_V4);
    let a = addr();

    // decode
    let mut tdec = tr::Decoder::default();
    let mut wmsg = wr::Message::new();
    assert_eq!(p2pd_decode(&success), a);
    assert_eq!(p2pd_decode_fingerprint(&success), a);
    assert_eq!(st_decode(&success), a);
    assert_eq!(tr_decode(&mut tdec, &success), a);
    assert_eq!(wr_decode(&mut wmsg, &success), a);

    // encode: byte-identical output
    let mut buf = [0u8; 128];
    let n = p2pd_encode(&mut buf, a);
    assert_eq!(&buf[..n], &success[..]);
    let mut sbuf = [0u8; 128];
    let n = st_encode(&mut sbuf, a, st_tid());
    assert_eq!(&sbuf[..n], &success[..]);
    let mut out = bytes::BytesMut::with_capacity(128);
    tr_encode(&mut out, a);
    assert_eq!(&out[..], &success[..]);
    let n = wr_encode(&mut wmsg, a);
    assert_eq!(&wmsg.raw[..n], &success[..]);

    // integrity + fingerprint on RFC 5769 §2.2
    let key = p2pd::IntegrityKey::short_term(PASSWORD).unwrap();
    p2pd_verify_integrity(&rfc, &key);
    let creds: st::MessageIntegrityCredentials =
        st::ShortTermCredentials::new(PASSWORD.to_owned()).into();
    st_verify_integrity_credentials(&rfc, &creds);
    st_verify_integrity_key(
        &rfc,
        &creds.make_key(stun_types::message::IntegrityAlgorithm::Sha1),
    );
    tr_verify_integrity(&mut tdec, &rfc, PASSWORD.as_bytes());
    let mi = wr::MessageIntegrity::new_short_term_integrity(PASSWORD.to_owned());
    wr_verify_integrity(&mut wmsg, &rfc, &mi);

    p2pd_verify_fingerprint(&rfc);
    tr_verify_fingerprint(&mut tdec, &rfc);
    wr_verify_fingerprint(&mut wmsg, &rfc);

    // A corrupted MAC / CRC must fail everywhere (these checks really run).
    let mut bad = rfc.clone();
    bad[60] ^= 1; // inside MESSAGE-INTEGRITY
    let bad_msg = p2pd::Message::parse(&bad).unwrap();
    assert!(bad_msg.verify_integrity(&key).is_err());
    let mut bad = rfc.clone();
    bad[rfc.len() - 1] ^= 1; // inside FINGERPRINT
    assert!(
        p2pd::Message::parse(&bad)
            .unwrap()
            .verify_fingerprint()
            .is_err()
    );
    assert!(st::Message::from_bytes(&bad).is_err());
}

/// The bytes HMAC-SHA1 covers in RFC 5769 §2.2: the header with its length ending after
/// MESSAGE-INTEGRITY, then everything from the cookie up to MESSAGE-INTEGRITY.
fn hmac_input(rfc: &[u8]) -> ([u8; 4], &[u8]) {
    let at = rfc.len() - 8 - 24;
    let len = ((at + 24 - 20) as u16).to_be_bytes();
    ([rfc[0], rfc[1], len[0], len[1]], &rfc[4..at])
}

// ---------------------------------------------------------------------------------------

fn decode(c: &mut Criterion) {
    let bytes = hex(BINDING_SUCCESS);
    let mut g = c.benchmark_group("decode");
    g.bench_function("p2pd", |b| b.iter(|| p2pd_decode(black_box(&bytes))));
    g.bench_function("p2pd+fingerprint", |b| {
        b.iter(|| p2pd_decode_fingerprint(black_box(&bytes)))
    });
    g.bench_function("stun-types(checks fingerprint)", |b| {
        b.iter(|| st_decode(black_box(&bytes)))
    });
    let mut dec = tr::Decoder::default();
    g.bench_function("turn-rs", |b| {
        b.iter(|| tr_decode(&mut dec, black_box(&bytes)))
    });
    let mut msg = wr::Message::new();
    g.bench_function("webrtc-stun", |b| {
        b.iter(|| wr_decode(&mut msg, black_box(&bytes)))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let a = addr();
    let mut g = c.benchmark_group("encode");
    let mut buf = [0u8; 128];
    g.bench_function("p2pd", |b| {
        b.iter(|| p2pd_encode(black_box(&mut buf), *black_box(&a)))
    });
    let tid = st_tid();
    g.bench_function("stun-types", |b| {
        b.iter(|| st_encode(black_box(&mut buf), *black_box(&a), *black_box(&tid)))
    });
    let mut out = bytes::BytesMut::with_capacity(128);
    g.bench_function("turn-rs", |b| {
        b.iter(|| tr_encode(black_box(&mut out), *black_box(&a)))
    });
    let mut msg = wr::Message::new();
    g.bench_function("webrtc-stun", |b| {
        b.iter(|| wr_encode(black_box(&mut msg), *black_box(&a)))
    });
    g.finish();
}

fn integrity_verify(c: &mut Criterion) {
    let bytes = hex(RESPONSE_V4);
    let mut g = c.benchmark_group("integrity_verify");
    let key = p2pd::IntegrityKey::short_term(PASSWORD).unwrap();
    g.bench_function("p2pd/prekeyed", |b| {
        b.iter(|| p2pd_verify_integrity(black_box(&bytes), black_box(&key)))
    });
    let msg = p2pd::Message::parse(&bytes).unwrap();
    g.bench_function("p2pd/prekeyed,preparsed", |b| {
        b.iter(|| black_box(&msg).verify_integrity(black_box(&key)).unwrap())
    });
    let creds: st::MessageIntegrityCredentials =
        st::ShortTermCredentials::new(PASSWORD.to_owned()).into();
    let st_key = creds.make_key(stun_types::message::IntegrityAlgorithm::Sha1);
    g.bench_function("stun-types/prekeyed(checks fingerprint)", |b| {
        b.iter(|| st_verify_integrity_key(black_box(&bytes), black_box(&st_key)))
    });
    g.bench_function("stun-types/credentials(checks fingerprint)", |b| {
        b.iter(|| st_verify_integrity_credentials(black_box(&bytes), black_box(&creds)))
    });
    let mut dec = tr::Decoder::default();
    g.bench_function("turn-rs/keyed", |b| {
        b.iter(|| tr_verify_integrity(&mut dec, black_box(&bytes), black_box(PASSWORD.as_bytes())))
    });
    let mut msg = wr::Message::new();
    let mi = wr::MessageIntegrity::new_short_term_integrity(PASSWORD.to_owned());
    g.bench_function("webrtc-stun/keyed", |b| {
        b.iter(|| wr_verify_integrity(&mut msg, black_box(&bytes), black_box(&mi)))
    });
    g.finish();
}

fn fingerprint(c: &mut Criterion) {
    let bytes = hex(RESPONSE_V4);
    let mut g = c.benchmark_group("fingerprint");
    g.bench_function("p2pd", |b| {
        b.iter(|| p2pd_verify_fingerprint(black_box(&bytes)))
    });
    let msg = p2pd::Message::parse(&bytes).unwrap();
    g.bench_function("p2pd/preparsed", |b| {
        b.iter(|| black_box(&msg).verify_fingerprint().unwrap())
    });
    g.bench_function("stun-types(from_bytes)", |b| {
        b.iter(|| st::Message::from_bytes(black_box(&bytes)).unwrap())
    });
    let mut dec = tr::Decoder::default();
    g.bench_function("turn-rs(assembled)", |b| {
        b.iter(|| tr_verify_fingerprint(&mut dec, black_box(&bytes)))
    });
    let mut wmsg = wr::Message::new();
    g.bench_function("webrtc-stun", |b| {
        b.iter(|| wr_verify_fingerprint(&mut wmsg, black_box(&bytes)))
    });
    g.finish();
}

fn bare_hmac_sha1(c: &mut Criterion) {
    type HmacSha1 = hmac::Hmac<sha1::Sha1>;
    let bytes = hex(RESPONSE_V4);
    let (head, body) = hmac_input(&bytes);
    let mut g = c.benchmark_group("bare_hmac_sha1");
    g.bench_function("keyed_each_time", |b| {
        b.iter(|| {
            let mut mac =
                <HmacSha1 as KeyInit>::new_from_slice(black_box(PASSWORD.as_bytes())).unwrap();
            mac.update(black_box(&head));
            mac.update(black_box(body));
            mac.finalize().into_bytes()
        })
    });
    let keyed = <HmacSha1 as KeyInit>::new_from_slice(PASSWORD.as_bytes()).unwrap();
    g.bench_function("prekeyed", |b| {
        b.iter(|| {
            let mut mac = black_box(&keyed).clone();
            mac.update(black_box(&head));
            mac.update(black_box(body));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

fn bare_crc32(c: &mut Criterion) {
    let bytes = hex(RESPONSE_V4);
    let prefix = &bytes[..bytes.len() - 8];
    let mut g = c.benchmark_group("bare_crc32");
    g.bench_function("crc32fast", |b| {
        b.iter(|| crc32fast::hash(black_box(prefix)))
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    check_equivalence();
    decode(c);
    encode(c);
    integrity_verify(c);
    fingerprint(c);
    bare_hmac_sha1(c);
    bare_crc32(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
