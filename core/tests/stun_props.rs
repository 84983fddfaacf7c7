//! Property tests of the STUN codec: build → parse round trips over arbitrary attribute
//! sets, and parsing hostile bytes never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use p2pd_core::stun::{
    AlternateServer, AttrType, Attribute, ChangeRequest, ChangedAddress, Class, ErrorCode,
    HEADER_LEN, IntegrityKey, MAGIC_COOKIE, MappedAddress, Message, MessageBuilder, MessageType,
    Method, Nonce, OtherAddress, Padding, PasswordAlgorithm, PasswordAlgorithmKind,
    PasswordAlgorithms, Realm, ResponseOrigin, ResponsePort, Software, SourceAddress, StunError,
    TransactionId, UnknownAttributes, UserHash, Username, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress, message_len,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// An owned model of every attribute the codec has.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrKind {
    Mapped,
    XorMapped,
    AlternateServer,
    ResponseOrigin,
    OtherAddress,
    ChangedAddress,
    SourceAddress,
    XorPeer,
    XorRelayed,
}

impl AddrKind {
    const ALL: [AddrKind; 9] = [
        AddrKind::Mapped,
        AddrKind::XorMapped,
        AddrKind::AlternateServer,
        AddrKind::ResponseOrigin,
        AddrKind::OtherAddress,
        AddrKind::ChangedAddress,
        AddrKind::SourceAddress,
        AddrKind::XorPeer,
        AddrKind::XorRelayed,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Username,
    Realm,
    Nonce,
    Software,
}

impl TextKind {
    const ALL: [TextKind; 4] = [
        TextKind::Username,
        TextKind::Realm,
        TextKind::Nonce,
        TextKind::Software,
    ];

    fn max_len(self) -> usize {
        match self {
            TextKind::Username => Username::MAX_LEN,
            TextKind::Realm => Realm::MAX_LEN,
            TextKind::Nonce => Nonce::MAX_LEN,
            TextKind::Software => Software::MAX_LEN,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Attr {
    Addr(AddrKind, SocketAddr),
    Text(TextKind, String),
    ErrorCode(u16, String),
    Unknown(Vec<u16>),
    PasswordAlgorithm(u16, Vec<u8>),
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
    UserHash([u8; 32]),
    ChangeRequest(bool, bool),
    ResponsePort(u16),
    Padding(Vec<u8>),
    /// A type without a codec here (never one of the above, nor an integrity/fingerprint).
    Raw(u16, Vec<u8>),
}

/// Types that have a typed codec, or that the parser treats specially: raw attributes
/// never use them.
const CODEC_TYPES: &[AttrType] = &[
    AttrType::MAPPED_ADDRESS,
    AttrType::XOR_MAPPED_ADDRESS,
    AttrType::ALTERNATE_SERVER,
    AttrType::RESPONSE_ORIGIN,
    AttrType::OTHER_ADDRESS,
    AttrType::CHANGED_ADDRESS,
    AttrType::SOURCE_ADDRESS,
    AttrType::XOR_PEER_ADDRESS,
    AttrType::XOR_RELAYED_ADDRESS,
    AttrType::USERNAME,
    AttrType::REALM,
    AttrType::NONCE,
    AttrType::SOFTWARE,
    AttrType::ERROR_CODE,
    AttrType::UNKNOWN_ATTRIBUTES,
    AttrType::PASSWORD_ALGORITHM,
    AttrType::PASSWORD_ALGORITHMS,
    AttrType::USERHASH,
    AttrType::CHANGE_REQUEST,
    AttrType::RESPONSE_PORT,
    AttrType::PADDING,
    AttrType::MESSAGE_INTEGRITY,
    AttrType::MESSAGE_INTEGRITY_SHA256,
    AttrType::FINGERPRINT,
];

impl Attr {
    fn typ(&self) -> AttrType {
        match self {
            Attr::Addr(k, _) => match k {
                AddrKind::Mapped => AttrType::MAPPED_ADDRESS,
                AddrKind::XorMapped => AttrType::XOR_MAPPED_ADDRESS,
                AddrKind::AlternateServer => AttrType::ALTERNATE_SERVER,
                AddrKind::ResponseOrigin => AttrType::RESPONSE_ORIGIN,
                AddrKind::OtherAddress => AttrType::OTHER_ADDRESS,
                AddrKind::ChangedAddress => AttrType::CHANGED_ADDRESS,
                AddrKind::SourceAddress => AttrType::SOURCE_ADDRESS,
                AddrKind::XorPeer => AttrType::XOR_PEER_ADDRESS,
                AddrKind::XorRelayed => AttrType::XOR_RELAYED_ADDRESS,
            },
            Attr::Text(k, _) => match k {
                TextKind::Username => AttrType::USERNAME,
                TextKind::Realm => AttrType::REALM,
                TextKind::Nonce => AttrType::NONCE,
                TextKind::Software => AttrType::SOFTWARE,
            },
            Attr::ErrorCode(..) => AttrType::ERROR_CODE,
            Attr::Unknown(_) => AttrType::UNKNOWN_ATTRIBUTES,
            Attr::PasswordAlgorithm(..) => AttrType::PASSWORD_ALGORITHM,
            Attr::PasswordAlgorithms(_) => AttrType::PASSWORD_ALGORITHMS,
            Attr::UserHash(_) => AttrType::USERHASH,
            Attr::ChangeRequest(..) => AttrType::CHANGE_REQUEST,
            Attr::ResponsePort(_) => AttrType::RESPONSE_PORT,
            Attr::Padding(_) => AttrType::PADDING,
            Attr::Raw(t, _) => AttrType(*t),
        }
    }

    /// Appends this attribute through its typed codec.
    fn add_to(&self, b: &mut MessageBuilder<'_>) -> Result<(), StunError> {
        match self {
            Attr::Addr(k, a) => match k {
                AddrKind::Mapped => b.add(&MappedAddress(*a)),
                AddrKind::XorMapped => b.add(&XorMappedAddress(*a)),
                AddrKind::AlternateServer => b.add(&AlternateServer(*a)),
                AddrKind::ResponseOrigin => b.add(&ResponseOrigin(*a)),
                AddrKind::OtherAddress => b.add(&OtherAddress(*a)),
                AddrKind::ChangedAddress => b.add(&ChangedAddress(*a)),
                AddrKind::SourceAddress => b.add(&SourceAddress(*a)),
                AddrKind::XorPeer => b.add(&XorPeerAddress(*a)),
                AddrKind::XorRelayed => b.add(&XorRelayedAddress(*a)),
            },
            Attr::Text(k, s) => match k {
                TextKind::Username => b.add(&Username::new(s)?),
                TextKind::Realm => b.add(&Realm::new(s)?),
                TextKind::Nonce => b.add(&Nonce::new(s)?),
                TextKind::Software => b.add(&Software::new(s)?),
            },
            Attr::ErrorCode(code, reason) => b.add(&ErrorCode::new(*code, reason)?),
            Attr::Unknown(types) => {
                let types: Vec<AttrType> = types.iter().map(|&t| AttrType(t)).collect();
                b.add(&UnknownAttributes::new(&types)?)
            }
            Attr::PasswordAlgorithm(kind, params) => b.add(&PasswordAlgorithm {
                kind: PasswordAlgorithmKind::from_u16(*kind),
                params,
            }),
            Attr::PasswordAlgorithms(list) => {
                let list: Vec<PasswordAlgorithm<'_>> = list
                    .iter()
                    .map(|(k, p)| PasswordAlgorithm {
                        kind: PasswordAlgorithmKind::from_u16(*k),
                        params: p,
                    })
                    .collect();
                b.add(&PasswordAlgorithms::new(&list)?)
            }
            Attr::UserHash(h) => b.add(&UserHash(*h)),
            Attr::ChangeRequest(ip, port) => b.add(&ChangeRequest {
                change_ip: *ip,
                change_port: *port,
            }),
            Attr::ResponsePort(p) => b.add(&ResponsePort(*p)),
            Attr::Padding(p) => b.add(&Padding(p)),
            Attr::Raw(t, v) => b.add_raw(AttrType(*t), v),
        }
        .map(|_| ())
    }

    /// Decodes `value` as this attribute's type and checks that it equals `self`.
    fn assert_decodes(&self, value: &[u8], msg: &Message<'_>) {
        let ctx = msg.context();
        match self {
            Attr::Addr(k, a) => {
                let got = match k {
                    AddrKind::Mapped => MappedAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::XorMapped => XorMappedAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::AlternateServer => AlternateServer::decode(value, ctx).map(|x| x.0),
                    AddrKind::ResponseOrigin => ResponseOrigin::decode(value, ctx).map(|x| x.0),
                    AddrKind::OtherAddress => OtherAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::ChangedAddress => ChangedAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::SourceAddress => SourceAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::XorPeer => XorPeerAddress::decode(value, ctx).map(|x| x.0),
                    AddrKind::XorRelayed => XorRelayedAddress::decode(value, ctx).map(|x| x.0),
                };
                assert_eq!(got.unwrap(), *a);
            }
            Attr::Text(k, s) => {
                let got = match k {
                    TextKind::Username => Username::decode(value, ctx).map(|x| x.as_str()),
                    TextKind::Realm => Realm::decode(value, ctx).map(|x| x.as_str()),
                    TextKind::Nonce => Nonce::decode(value, ctx).map(|x| x.as_str()),
                    TextKind::Software => Software::decode(value, ctx).map(|x| x.as_str()),
                };
                assert_eq!(got.unwrap(), s);
            }
            Attr::ErrorCode(code, reason) => {
                let e = ErrorCode::decode(value, ctx).unwrap();
                assert_eq!((e.code(), e.reason()), (*code, reason.as_str()));
                assert_eq!(e, ErrorCode::new(*code, reason).unwrap());
            }
            Attr::Unknown(types) => {
                let u = UnknownAttributes::decode(value, ctx).unwrap();
                let got: Vec<u16> = u.iter().map(|t| t.0).collect();
                assert_eq!(&got, types);
                let list: Vec<AttrType> = types.iter().map(|&t| AttrType(t)).collect();
                assert_eq!(u, UnknownAttributes::new(&list).unwrap());
            }
            Attr::PasswordAlgorithm(kind, params) => {
                let a = PasswordAlgorithm::decode(value, ctx).unwrap();
                assert_eq!(a.kind.to_u16(), *kind);
                assert_eq!(a.kind, PasswordAlgorithmKind::from_u16(*kind));
                assert_eq!(a.params, params.as_slice());
            }
            Attr::PasswordAlgorithms(list) => {
                let a = PasswordAlgorithms::decode(value, ctx).unwrap();
                let got: Vec<(u16, Vec<u8>)> = a
                    .iter()
                    .map(|p| (p.kind.to_u16(), p.params.to_vec()))
                    .collect();
                assert_eq!(&got, list);
                let typed: Vec<PasswordAlgorithm<'_>> = list
                    .iter()
                    .map(|(k, p)| PasswordAlgorithm {
                        kind: PasswordAlgorithmKind::from_u16(*k),
                        params: p,
                    })
                    .collect();
                assert_eq!(a, PasswordAlgorithms::new(&typed).unwrap());
            }
            Attr::UserHash(h) => assert_eq!(UserHash::decode(value, ctx).unwrap(), UserHash(*h)),
            Attr::ChangeRequest(ip, port) => assert_eq!(
                ChangeRequest::decode(value, ctx).unwrap(),
                ChangeRequest {
                    change_ip: *ip,
                    change_port: *port
                }
            ),
            Attr::ResponsePort(p) => {
                assert_eq!(ResponsePort::decode(value, ctx).unwrap(), ResponsePort(*p))
            }
            Attr::Padding(p) => assert_eq!(Padding::decode(value, ctx).unwrap().0, p.as_slice()),
            Attr::Raw(_, v) => assert_eq!(value, v.as_slice()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Arbitrary UTF-8 of at most `max` bytes: mostly short strings of any characters, and
/// sometimes long ASCII up to exactly the limit.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(any::<char>(), 0..48).prop_map(move |chars| {
            let mut s = String::new();
            for c in chars {
                if s.len() + c.len_utf8() > max {
                    break;
                }
                s.push(c);
            }
            s
        }),
        1 => (0..=max).prop_map(|n| "x".repeat(n)),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn raw_type() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..0x8000, 0x8000u16..=0xFFFF].prop_filter("type with a codec", |t| {
        !CODEC_TYPES.contains(&AttrType(*t))
    })
}

fn attr() -> impl Strategy<Value = Attr> {
    prop_oneof![
        4 => (proptest::sample::select(AddrKind::ALL.to_vec()), socket_addr())
            .prop_map(|(k, a)| Attr::Addr(k, a)),
        3 => proptest::sample::select(TextKind::ALL.to_vec())
            .prop_flat_map(|k| text(k.max_len()).prop_map(move |s| Attr::Text(k, s))),
        1 => (300u16..=699, text(ErrorCode::MAX_REASON_LEN))
            .prop_map(|(c, r)| Attr::ErrorCode(c, r)),
        1 => proptest::collection::vec(any::<u16>(), 0..=UnknownAttributes::MAX_TYPES)
            .prop_map(Attr::Unknown),
        1 => (any::<u16>(), bytes(40)).prop_map(|(k, p)| Attr::PasswordAlgorithm(k, p)),
        1 => proptest::collection::vec((any::<u16>(), bytes(24)), 0..8)
            .prop_map(Attr::PasswordAlgorithms),
        1 => any::<[u8; 32]>().prop_map(Attr::UserHash),
        1 => any::<(bool, bool)>().prop_map(|(i, p)| Attr::ChangeRequest(i, p)),
        1 => any::<u16>().prop_map(Attr::ResponsePort),
        1 => bytes(64).prop_map(Attr::Padding),
        2 => (raw_type(), bytes(48)).prop_map(|(t, v)| Attr::Raw(t, v)),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    proptest::sample::select(vec![
        Class::Request,
        Class::Indication,
        Class::Success,
        Class::Error,
    ])
}

#[derive(Debug, Clone)]
struct Spec {
    typ: MessageType,
    cookie: u32,
    id: [u8; 12],
    padding: u8,
    attrs: Vec<Attr>,
    integrity: bool,
    integrity_sha256: bool,
    fingerprint: bool,
    key: Vec<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0u16..=0x0FFF, class()),
        prop_oneof![3 => Just(MAGIC_COOKIE), 1 => any::<u32>()],
        any::<[u8; 12]>(),
        any::<u8>(),
        proptest::collection::vec(attr(), 0..12),
        any::<(bool, bool, bool)>(),
        bytes(80),
    )
        .prop_map(
            |((method, class), cookie, id, padding, attrs, (mi, mi256, fp), key)| Spec {
                typ: MessageType::new(Method::new(method).unwrap(), class),
                cookie,
                id,
                padding,
                attrs,
                integrity: mi,
                integrity_sha256: mi256,
                fingerprint: fp,
                key,
            },
        )
}

/// Room for the largest message `spec()` can produce.
const BUF_LEN: usize = HEADER_LEN + 0xFFFF;

fn build(spec: &Spec) -> Vec<u8> {
    let mut buf = vec![0u8; BUF_LEN];
    let key = IntegrityKey::from_bytes(&spec.key);
    let mut b =
        MessageBuilder::with_cookie(&mut buf, spec.typ, spec.cookie, TransactionId::new(spec.id))
            .unwrap();
    b.set_padding_byte(spec.padding);
    for a in &spec.attrs {
        a.add_to(&mut b).unwrap();
    }
    if spec.integrity {
        b.add_integrity(&key).unwrap();
    }
    if spec.integrity_sha256 {
        b.add_integrity_sha256(&key).unwrap();
    }
    if spec.fingerprint {
        b.add_fingerprint().unwrap();
    }
    b.finish().to_vec()
}

/// A key that is not HMAC-equivalent to `key` (appending zero bytes would be: HMAC pads
/// short keys with zeros).
fn other_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match k.first_mut() {
        Some(b) => *b ^= 0x01,
        None => k.push(1),
    }
    k
}

/// Calls every accessor of a parsed message; none may panic. Results are checked only
/// for internal consistency.
fn exercise(msg: &Message<'_>) {
    let _ = format!("{msg:?}");
    let _ = (msg.message_type(), msg.transaction_id(), msg.is_rfc3489());
    assert_eq!(message_len(msg.as_bytes()), Some(msg.as_bytes().len()));
    for a in msg.attributes() {
        assert!(!matches!(
            a.typ,
            AttrType::MESSAGE_INTEGRITY
                | AttrType::MESSAGE_INTEGRITY_SHA256
                | AttrType::FINGERPRINT
        ));
        assert!(msg.has(a.typ));
    }
    let _ = msg.get::<MappedAddress>();
    let _ = msg.get::<XorMappedAddress>();
    let _ = msg.get::<AlternateServer>();
    let _ = msg.get::<ResponseOrigin>();
    let _ = msg.get::<OtherAddress>();
    let _ = msg.get::<ChangedAddress>();
    let _ = msg.get::<SourceAddress>();
    let _ = msg.get::<XorPeerAddress>();
    let _ = msg.get::<XorRelayedAddress>();
    let _ = msg.get::<Username>().map(|o| o.map(|t| t.as_str().len()));
    let _ = msg.get::<Realm>().map(|o| o.map(|t| t.as_str().len()));
    let _ = msg.get::<Nonce>().map(|o| o.map(|t| t.as_str().len()));
    let _ = msg.get::<Software>().map(|o| o.map(|t| t.as_str().len()));
    if let Ok(Some(e)) = msg.get::<ErrorCode>() {
        assert!((300..=699).contains(&e.code()));
    }
    if let Ok(Some(u)) = msg.get::<UnknownAttributes>() {
        let _ = u.iter().count();
    }
    if let Ok(Some(p)) = msg.get::<PasswordAlgorithm>() {
        let _ = p.kind.to_u16();
    }
    if let Ok(Some(p)) = msg.get::<PasswordAlgorithms>() {
        let _ = p.iter().map(|a| a.params.len()).sum::<usize>();
    }
    let _ = msg.get::<UserHash>();
    let _ = msg.get::<ChangeRequest>();
    let _ = msg.get::<ResponsePort>();
    let _ = msg.get::<Padding>();
    let _ = msg.mapped_address();
    let _ = msg.unknown_required(AttrType::is_binding_attribute).count();
    let key = IntegrityKey::from_bytes(b"p2pd");
    assert_eq!(
        msg.verify_integrity(&key)
            .is_err_and(|e| e == StunError::NoIntegrity),
        !msg.has_integrity()
    );
    assert_eq!(
        msg.verify_integrity_sha256(&key)
            .is_err_and(|e| e == StunError::NoIntegrity),
        !msg.has_integrity_sha256()
    );
    let _ = msg.verify_any_integrity(&key);
    assert_eq!(
        msg.verify_fingerprint()
            .is_err_and(|e| e == StunError::NoFingerprint),
        !msg.has_fingerprint()
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    SetByte(usize, u8),
    /// Rewrites the header's length field.
    SetLength(u16),
    /// Rewrites an attribute-length-sized field at an arbitrary offset.
    SetU16(usize, u16),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::SetByte(i, x)),
        any::<u16>().prop_map(Mutation::SetLength),
        (any::<usize>(), any::<u16>()).prop_map(|(i, x)| Mutation::SetU16(i, x)),
        (any::<usize>(), bytes(12)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 0usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match m {
        Mutation::Truncate(n) => buf.truncate(at(*n, buf.len() + 1)),
        Mutation::Flip(i, x) => {
            if !buf.is_empty() {
                let i = at(*i, buf.len());
                buf[i] ^= x;
            }
        }
        Mutation::SetByte(i, x) => {
            if !buf.is_empty() {
                let i = at(*i, buf.len());
                buf[i] = *x;
            }
        }
        Mutation::SetLength(l) => {
            if buf.len() >= 4 {
                buf[2..4].copy_from_slice(&l.to_be_bytes());
            }
        }
        Mutation::SetU16(i, x) => {
            if buf.len() >= 2 {
                let i = at(*i, buf.len() - 1);
                buf[i..i + 2].copy_from_slice(&x.to_be_bytes());
            }
        }
        Mutation::Insert(i, b) => {
            let i = at(*i, buf.len() + 1);
            buf.splice(i..i, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(*i, buf.len() + 1);
            let end = (i + n).min(buf.len());
            buf.drain(i..end);
        }
    }
}

/// Bytes that look like STUN: a well-formed header whose length covers a run of
/// attribute TLVs with types drawn mostly from the ones the parser treats specially.
fn stunlike() -> impl Strategy<Value = Vec<u8>> {
    let typ = prop_oneof![
        3 => proptest::sample::select(CODEC_TYPES).prop_map(|t| t.0),
        1 => any::<u16>(),
    ];
    let tlv = (typ, bytes(40), any::<Option<u16>>()).prop_map(|(t, v, len)| {
        let mut out = t.to_be_bytes().to_vec();
        out.extend_from_slice(&len.unwrap_or(v.len() as u16).to_be_bytes());
        let padded = (v.len() + 3) & !3;
        out.extend_from_slice(&v);
        out.resize(4 + padded, 0);
        out
    });
    (
        0u16..0x4000,
        prop_oneof![Just(MAGIC_COOKIE), any::<u32>()],
        any::<[u8; 12]>(),
        proptest::collection::vec(tlv, 0..8),
    )
        .prop_map(|(t, cookie, id, tlvs)| {
            let body: Vec<u8> = tlvs.concat();
            let mut out = t.to_be_bytes().to_vec();
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(&cookie.to_be_bytes());
            out.extend_from_slice(&id);
            out.extend_from_slice(&body);
            out
        })
}

/// Whether `e` is one of the errors `message_len` is meant to rule out.
fn is_framing_error(e: &StunError) -> bool {
    matches!(
        e,
        StunError::TooShort { .. }
            | StunError::NotStun
            | StunError::UnalignedLength(_)
            | StunError::LengthMismatch { .. }
    )
}

/// `message_len` and `Message::parse` agree on `buf`.
fn check_framing(buf: &[u8]) {
    let parsed = Message::parse(buf);
    match message_len(buf) {
        None => {
            // Either the header is incomplete or bad: parse must fail on framing.
            if let Err(e) = &parsed {
                assert!(
                    is_framing_error(e),
                    "message_len says None but parse failed with {e:?}"
                );
            } else {
                panic!("message_len says None but parse succeeded");
            }
        }
        Some(n) => {
            assert!(n >= HEADER_LEN);
            if n == buf.len() {
                if let Err(e) = &parsed {
                    assert!(!is_framing_error(e), "framing agreed but parse said {e:?}");
                }
            } else {
                assert!(parsed.is_err(), "parse accepted a length mismatch");
            }
            if let Some(prefix) = buf.get(..n) {
                assert_eq!(message_len(prefix), Some(n));
                if let Err(e) = Message::parse(prefix) {
                    assert!(!is_framing_error(&e), "prefix of {n} bytes: {e:?}");
                }
            }
        }
    }
    if let Ok(msg) = parsed {
        exercise(&msg);
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Build → parse: every attribute comes back equal and in order; integrity and
    /// fingerprint verify, and a different key fails.
    #[test]
    fn build_then_parse_round_trips(spec in spec()) {
        let bytes = build(&spec);
        let msg = Message::parse(&bytes).unwrap();
        prop_assert_eq!(msg.message_type(), spec.typ);
        prop_assert_eq!(msg.transaction_id(), TransactionId::new(spec.id));
        prop_assert_eq!(msg.context().cookie, spec.cookie);
        prop_assert_eq!(msg.is_rfc3489(), spec.cookie != MAGIC_COOKIE);
        prop_assert_eq!(message_len(&bytes), Some(bytes.len()));

        let raws: Vec<_> = msg.attributes().collect();
        prop_assert_eq!(raws.len(), spec.attrs.len());
        for (raw, want) in raws.iter().zip(&spec.attrs) {
            prop_assert_eq!(raw.typ, want.typ());
            want.assert_decodes(raw.value, &msg);
        }

        // `get` returns the first attribute of its type.
        let first = |t: AttrType| spec.attrs.iter().find(|a| a.typ() == t);
        prop_assert_eq!(
            msg.get::<XorMappedAddress>().unwrap().map(|a| a.0),
            first(AttrType::XOR_MAPPED_ADDRESS).map(|a| match a {
                Attr::Addr(_, x) => *x,
                _ => unreachable!(),
            })
        );
        prop_assert_eq!(
            msg.get::<Username>().unwrap().map(|u| u.as_str().to_owned()),
            first(AttrType::USERNAME).map(|a| match a {
                Attr::Text(_, s) => s.clone(),
                _ => unreachable!(),
            })
        );
        let mapped = first(AttrType::XOR_MAPPED_ADDRESS)
            .or_else(|| first(AttrType::MAPPED_ADDRESS))
            .map(|a| match a {
                Attr::Addr(_, x) => *x,
                _ => unreachable!(),
            });
        prop_assert_eq!(msg.mapped_address().unwrap(), mapped);

        let unknown: Vec<AttrType> = msg.unknown_required(AttrType::is_binding_attribute).collect();
        let want: Vec<AttrType> = spec
            .attrs
            .iter()
            .map(Attr::typ)
            .filter(|t| t.is_comprehension_required() && !t.is_binding_attribute())
            .collect();
        prop_assert_eq!(unknown, want);

        let key = IntegrityKey::from_bytes(&spec.key);
        let wrong = IntegrityKey::from_bytes(&other_key(&spec.key));
        prop_assert_eq!(msg.has_integrity(), spec.integrity);
        prop_assert_eq!(msg.has_integrity_sha256(), spec.integrity_sha256);
        prop_assert_eq!(msg.has_fingerprint(), spec.fingerprint);
        if spec.integrity {
            prop_assert_eq!(msg.verify_integrity(&key), Ok(()));
            prop_assert_eq!(msg.verify_integrity(&wrong), Err(StunError::IntegrityMismatch));
        } else {
            prop_assert_eq!(msg.verify_integrity(&key), Err(StunError::NoIntegrity));
        }
        if spec.integrity_sha256 {
            prop_assert_eq!(msg.verify_integrity_sha256(&key), Ok(()));
            prop_assert_eq!(
                msg.verify_integrity_sha256(&wrong),
                Err(StunError::IntegrityMismatch)
            );
        } else {
            prop_assert_eq!(msg.verify_integrity_sha256(&key), Err(StunError::NoIntegrity));
        }
        if spec.integrity || spec.integrity_sha256 {
            prop_assert_eq!(msg.verify_any_integrity(&key), Ok(()));
            prop_assert!(msg.verify_any_integrity(&wrong).is_err());
        }
        if spec.fingerprint {
            prop_assert_eq!(msg.verify_fingerprint(), Ok(()));
        } else {
            prop_assert_eq!(msg.verify_fingerprint(), Err(StunError::NoFingerprint));
        }
        exercise(&msg);
    }

    /// Any corruption of a signed message is caught by the fingerprint or the HMAC.
    #[test]
    fn corrupted_message_fails_verification(
        spec in spec(),
        (i, x) in (any::<usize>(), 1u8..=255),
    ) {
        let mut spec = spec;
        spec.integrity = true;
        spec.fingerprint = true;
        let mut bytes = build(&spec);
        // Every byte, padding included, is covered by the CRC-32, which catches any
        // single-byte change; bytes before MESSAGE-INTEGRITY are covered by the HMAC too.
        let i = i % bytes.len();
        bytes[i] ^= x;
        if let Ok(msg) = Message::parse(&bytes) {
            let key = IntegrityKey::from_bytes(&spec.key);
            let fp = msg.verify_fingerprint();
            let mi = msg.verify_integrity(&key);
            prop_assert!(
                fp.is_err() || mi.is_err(),
                "flip at {} by {:#04x} went unnoticed", i, x
            );
            exercise(&msg);
        }
    }

    /// Parsing arbitrary bytes never panics, and framing agrees with parsing.
    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes(200)) {
        check_framing(&buf);
    }

    /// STUN-shaped bytes with random TLVs: parsing never panics, accessors never panic.
    #[test]
    fn stunlike_bytes_never_panic(buf in stunlike()) {
        check_framing(&buf);
    }

    /// A valid message with arbitrary mutations: parsing never panics; if it parses,
    /// accessors never panic.
    #[test]
    fn mutated_message_never_panics(
        spec in spec(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut bytes = build(&spec);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_framing(&bytes);
    }

    /// `message_len` frames a valid message followed by anything (TCP framing).
    #[test]
    fn message_len_frames_valid_prefix(spec in spec(), tail in bytes(64), cut in any::<usize>()) {
        let msg = build(&spec);
        let mut stream = msg.clone();
        stream.extend_from_slice(&tail);
        prop_assert_eq!(message_len(&stream), Some(msg.len()));
        let framed = &stream[..message_len(&stream).unwrap()];
        prop_assert_eq!(framed, msg.as_slice());
        prop_assert!(Message::parse(framed).is_ok());
        // Before the header is complete there is no answer; after, it never changes.
        let cut = cut % (stream.len() + 1);
        let partial = message_len(&stream[..cut]);
        if cut < HEADER_LEN {
            prop_assert_eq!(partial, None);
        } else {
            prop_assert_eq!(partial, Some(msg.len()));
        }
    }
}
