//! STUN (`p2pd_core::stun`): the parser on arbitrary bytes, and build → parse round trips
//! over structured messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bolero::{TypeGenerator, check};
use p2pd_core::stun::{
    AlternateServer, AttrType, Attribute, ChangeRequest, ChangedAddress, Class, ErrorCode,
    HEADER_LEN, IntegrityKey, MAGIC_COOKIE, MappedAddress, Message, MessageBuilder, MessageType,
    Method, Nonce, OtherAddress, Padding, PasswordAlgorithm, PasswordAlgorithmKind,
    PasswordAlgorithms, Realm, ResponseOrigin, ResponsePort, Software, SourceAddress, StunError,
    TransactionId, UnknownAttributes, UserHash, Username, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress, message_len,
};

/// How long each target runs under plain `cargo test` (cargo-bolero ignores it).
const TEST_TIME: Duration = Duration::from_secs(2);

/// The key `stun_parse` verifies integrity with.
const KEY: &[u8] = b"p2pd-fuzz";

// ---------------------------------------------------------------------------------------
// stun_parse

/// Arbitrary bytes → `Message::parse`; a parsed message must survive every accessor, and
/// `message_len` must agree with the parser.
#[test]
fn stun_parse() {
    let key = IntegrityKey::from_bytes(KEY);
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|bytes: &[u8]| parse_and_exercise(bytes, &key));
}

fn parse_and_exercise(bytes: &[u8], key: &IntegrityKey) {
    let parsed = Message::parse(bytes);
    let framing_error = |e: &StunError| {
        matches!(
            e,
            StunError::TooShort { .. }
                | StunError::NotStun
                | StunError::UnalignedLength(_)
                | StunError::LengthMismatch { .. }
        )
    };
    match (message_len(bytes), &parsed) {
        (None, Ok(_)) => panic!("message_len refused a message parse accepted"),
        (None, Err(e)) => assert!(framing_error(e), "message_len None, parse: {e:?}"),
        (Some(n), Ok(_)) => assert_eq!(n, bytes.len()),
        (Some(n), Err(e)) => assert_eq!(framing_error(e), n != bytes.len(), "{e:?}"),
    }
    if let Ok(msg) = parsed {
        exercise(&msg, key);
    }
}

/// Calls every accessor; none may panic, and their answers must be consistent.
fn exercise(msg: &Message<'_>, key: &IntegrityKey) {
    let _ = format!("{msg:?}");
    let _ = (msg.message_type(), msg.transaction_id(), msg.is_rfc3489());
    assert_eq!(msg.message_type().to_u16() & 0xC000, 0);
    for a in msg.attributes() {
        assert!(msg.has(a.typ));
        assert!(!matches!(
            a.typ,
            AttrType::MESSAGE_INTEGRITY
                | AttrType::MESSAGE_INTEGRITY_SHA256
                | AttrType::FINGERPRINT
        ));
        let _ = a.typ.name();
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
    for text in [
        msg.get::<Username>().map(|t| t.map(|t| t.as_str())),
        msg.get::<Realm>().map(|t| t.map(|t| t.as_str())),
        msg.get::<Nonce>().map(|t| t.map(|t| t.as_str())),
        msg.get::<Software>().map(|t| t.map(|t| t.as_str())),
    ] {
        if let Ok(Some(t)) = text {
            assert!(t.len() <= 763);
        }
    }
    if let Ok(Some(e)) = msg.get::<ErrorCode>() {
        assert!((300..=699).contains(&e.code()), "{e:?}");
        let _ = e.reason();
    }
    if let Ok(Some(u)) = msg.get::<UnknownAttributes>() {
        let _ = u.iter().count();
    }
    if let Ok(Some(a)) = msg.get::<PasswordAlgorithm>() {
        let _ = (a.kind.to_u16(), a.params.len());
    }
    if let Ok(Some(a)) = msg.get::<PasswordAlgorithms>() {
        let _ = a.iter().map(|a| a.params.len()).sum::<usize>();
    }
    let _ = msg.get::<UserHash>();
    let _ = msg.get::<ChangeRequest>();
    let _ = msg.get::<ResponsePort>();
    let _ = msg.get::<Padding>();
    let _ = msg.mapped_address();
    let _ = msg.unknown_required(AttrType::is_binding_attribute).count();
    let _ = msg.unknown_required(|_| false).count();

    let absent = |r: Result<(), StunError>, e: StunError| r.is_err_and(|x| x == e);
    assert_eq!(
        absent(msg.verify_integrity(key), StunError::NoIntegrity),
        !msg.has_integrity()
    );
    assert_eq!(
        absent(msg.verify_integrity_sha256(key), StunError::NoIntegrity),
        !msg.has_integrity_sha256()
    );
    let _ = msg.verify_any_integrity(key);
    assert_eq!(
        absent(msg.verify_fingerprint(), StunError::NoFingerprint),
        !msg.has_fingerprint()
    );
}

// ---------------------------------------------------------------------------------------
// stun_roundtrip

/// A structured message: bolero generates it field by field, and libFuzzer mutates the
/// bytes it is generated from.
#[derive(Debug, TypeGenerator)]
struct Spec {
    method: u16,
    class: u8,
    /// `None`: the magic cookie; `Some`: an RFC 3489 transaction ID's first word.
    cookie: Option<u32>,
    id: [u8; 12],
    padding: u8,
    attrs: Vec<Attr>,
    integrity: bool,
    integrity_sha256: bool,
    fingerprint: bool,
    key: Vec<u8>,
}

/// One attribute. Out-of-range fields are folded into range by `Attr::normalize`.
#[derive(Debug, Clone, PartialEq, Eq, TypeGenerator)]
enum Attr {
    Addr {
        kind: u8,
        v6: bool,
        ip: [u8; 16],
        port: u16,
    },
    Text {
        kind: u8,
        text: String,
    },
    LongText {
        kind: u8,
        len: u16,
    },
    ErrorCode {
        code: u16,
        reason: String,
    },
    Unknown(Vec<u16>),
    PasswordAlgorithm {
        kind: u16,
        params: Vec<u8>,
    },
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
    UserHash([u8; 32]),
    ChangeRequest {
        change_ip: bool,
        change_port: bool,
    },
    ResponsePort(u16),
    Padding(Vec<u8>),
    Raw {
        typ: u16,
        value: Vec<u8>,
    },
}

const ADDRESS_TYPES: [AttrType; 9] = [
    AttrType::MAPPED_ADDRESS,
    AttrType::XOR_MAPPED_ADDRESS,
    AttrType::ALTERNATE_SERVER,
    AttrType::RESPONSE_ORIGIN,
    AttrType::OTHER_ADDRESS,
    AttrType::CHANGED_ADDRESS,
    AttrType::SOURCE_ADDRESS,
    AttrType::XOR_PEER_ADDRESS,
    AttrType::XOR_RELAYED_ADDRESS,
];

const TEXT_TYPES: [(AttrType, usize); 4] = [
    (AttrType::USERNAME, Username::MAX_LEN),
    (AttrType::REALM, Realm::MAX_LEN),
    (AttrType::NONCE, Nonce::MAX_LEN),
    (AttrType::SOFTWARE, Software::MAX_LEN),
];

/// Types a raw attribute must not use: those with a codec here, and the three the parser
/// handles itself.
fn has_codec(t: AttrType) -> bool {
    ADDRESS_TYPES.contains(&t)
        || TEXT_TYPES.iter().any(|(x, _)| *x == t)
        || matches!(
            t,
            AttrType::ERROR_CODE
                | AttrType::UNKNOWN_ATTRIBUTES
                | AttrType::PASSWORD_ALGORITHM
                | AttrType::PASSWORD_ALGORITHMS
                | AttrType::USERHASH
                | AttrType::CHANGE_REQUEST
                | AttrType::RESPONSE_PORT
                | AttrType::PADDING
                | AttrType::MESSAGE_INTEGRITY
                | AttrType::MESSAGE_INTEGRITY_SHA256
                | AttrType::FINGERPRINT
        )
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_str(s: &mut String, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

impl Attr {
    /// Folds generated values into what the typed constructors accept.
    fn normalize(&mut self) {
        match self {
            Attr::Addr { kind, .. } => *kind %= ADDRESS_TYPES.len() as u8,
            Attr::Text { kind, text } => {
                *kind %= TEXT_TYPES.len() as u8;
                truncate_str(text, TEXT_TYPES[usize::from(*kind)].1);
            }
            Attr::LongText { kind, len } => {
                *kind %= TEXT_TYPES.len() as u8;
                *len %= TEXT_TYPES[usize::from(*kind)].1 as u16 + 1;
            }
            Attr::ErrorCode { code, reason } => {
                *code = 300 + *code % 400;
                truncate_str(reason, ErrorCode::MAX_REASON_LEN);
            }
            Attr::Unknown(types) => types.truncate(UnknownAttributes::MAX_TYPES),
            Attr::PasswordAlgorithms(list) => {
                // PasswordAlgorithms::new allows 1024 bytes of entries, 256 of parameters each.
                let mut total = 0;
                list.retain(|(_, p)| {
                    total += 4 + ((p.len() + 3) & !3);
                    p.len() <= 256 && total <= 1024
                });
            }
            Attr::Raw { typ, .. } => {
                if has_codec(AttrType(*typ)) {
                    // Keep the comprehension bit, move off the registered value.
                    *typ = (*typ & 0x8000) | 0x7F00 | (*typ & 0xFF);
                }
            }
            Attr::PasswordAlgorithm { .. }
            | Attr::UserHash(_)
            | Attr::ChangeRequest { .. }
            | Attr::ResponsePort(_)
            | Attr::Padding(_) => {}
        }
    }

    fn addr(v6: bool, ip: &[u8; 16], port: u16) -> SocketAddr {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(*ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
        };
        SocketAddr::new(ip, port)
    }

    fn typ(&self) -> AttrType {
        match self {
            Attr::Addr { kind, .. } => ADDRESS_TYPES[usize::from(*kind)],
            Attr::Text { kind, .. } | Attr::LongText { kind, .. } => {
                TEXT_TYPES[usize::from(*kind)].0
            }
            Attr::ErrorCode { .. } => AttrType::ERROR_CODE,
            Attr::Unknown(_) => AttrType::UNKNOWN_ATTRIBUTES,
            Attr::PasswordAlgorithm { .. } => AttrType::PASSWORD_ALGORITHM,
            Attr::PasswordAlgorithms(_) => AttrType::PASSWORD_ALGORITHMS,
            Attr::UserHash(_) => AttrType::USERHASH,
            Attr::ChangeRequest { .. } => AttrType::CHANGE_REQUEST,
            Attr::ResponsePort(_) => AttrType::RESPONSE_PORT,
            Attr::Padding(_) => AttrType::PADDING,
            Attr::Raw { typ, .. } => AttrType(*typ),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Attr::Text { text, .. } => Some(text.clone()),
            Attr::LongText { len, .. } => Some("x".repeat(usize::from(*len))),
            _ => None,
        }
    }

    fn add_to(&self, b: &mut MessageBuilder<'_>) -> Result<(), StunError> {
        match self {
            Attr::Addr { v6, ip, port, .. } => {
                let a = Self::addr(*v6, ip, *port);
                match self.typ() {
                    AttrType::MAPPED_ADDRESS => b.add(&MappedAddress(a)),
                    AttrType::XOR_MAPPED_ADDRESS => b.add(&XorMappedAddress(a)),
                    AttrType::ALTERNATE_SERVER => b.add(&AlternateServer(a)),
                    AttrType::RESPONSE_ORIGIN => b.add(&ResponseOrigin(a)),
                    AttrType::OTHER_ADDRESS => b.add(&OtherAddress(a)),
                    AttrType::CHANGED_ADDRESS => b.add(&ChangedAddress(a)),
                    AttrType::SOURCE_ADDRESS => b.add(&SourceAddress(a)),
                    AttrType::XOR_PEER_ADDRESS => b.add(&XorPeerAddress(a)),
                    _ => b.add(&XorRelayedAddress(a)),
                }
            }
            Attr::Text { .. } | Attr::LongText { .. } => {
                let s = self.text().unwrap_or_default();
                match self.typ() {
                    AttrType::USERNAME => b.add(&Username::new(&s)?),
                    AttrType::REALM => b.add(&Realm::new(&s)?),
                    AttrType::NONCE => b.add(&Nonce::new(&s)?),
                    _ => b.add(&Software::new(&s)?),
                }
            }
            Attr::ErrorCode { code, reason } => b.add(&ErrorCode::new(*code, reason)?),
            Attr::Unknown(types) => {
                let types: Vec<AttrType> = types.iter().map(|&t| AttrType(t)).collect();
                b.add(&UnknownAttributes::new(&types)?)
            }
            Attr::PasswordAlgorithm { kind, params } => b.add(&PasswordAlgorithm {
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
            Attr::ChangeRequest {
                change_ip,
                change_port,
            } => b.add(&ChangeRequest {
                change_ip: *change_ip,
                change_port: *change_port,
            }),
            Attr::ResponsePort(p) => b.add(&ResponsePort(*p)),
            Attr::Padding(p) => b.add(&Padding(p)),
            Attr::Raw { typ, value } => b.add_raw(AttrType(*typ), value),
        }
        .map(|_| ())
    }

    /// Decodes `value` with this attribute's codec and checks it equals `self`.
    fn assert_decodes(&self, value: &[u8], msg: &Message<'_>) {
        let ctx = msg.context();
        match self {
            Attr::Addr { v6, ip, port, .. } => {
                let got = match self.typ() {
                    AttrType::MAPPED_ADDRESS => MappedAddress::decode(value, ctx).map(|a| a.0),
                    AttrType::XOR_MAPPED_ADDRESS => {
                        XorMappedAddress::decode(value, ctx).map(|a| a.0)
                    }
                    AttrType::ALTERNATE_SERVER => AlternateServer::decode(value, ctx).map(|a| a.0),
                    AttrType::RESPONSE_ORIGIN => ResponseOrigin::decode(value, ctx).map(|a| a.0),
                    AttrType::OTHER_ADDRESS => OtherAddress::decode(value, ctx).map(|a| a.0),
                    AttrType::CHANGED_ADDRESS => ChangedAddress::decode(value, ctx).map(|a| a.0),
                    AttrType::SOURCE_ADDRESS => SourceAddress::decode(value, ctx).map(|a| a.0),
                    AttrType::XOR_PEER_ADDRESS => XorPeerAddress::decode(value, ctx).map(|a| a.0),
                    _ => XorRelayedAddress::decode(value, ctx).map(|a| a.0),
                };
                assert_eq!(got, Ok(Self::addr(*v6, ip, *port)));
            }
            Attr::Text { .. } | Attr::LongText { .. } => {
                let got = match self.typ() {
                    AttrType::USERNAME => Username::decode(value, ctx).map(|t| t.as_str()),
                    AttrType::REALM => Realm::decode(value, ctx).map(|t| t.as_str()),
                    AttrType::NONCE => Nonce::decode(value, ctx).map(|t| t.as_str()),
                    _ => Software::decode(value, ctx).map(|t| t.as_str()),
                };
                assert_eq!(got.map(str::to_owned), Ok(self.text().unwrap_or_default()));
            }
            Attr::ErrorCode { code, reason } => {
                assert_eq!(
                    ErrorCode::decode(value, ctx),
                    Ok(ErrorCode::new(*code, reason).unwrap())
                );
            }
            Attr::Unknown(types) => {
                let got = UnknownAttributes::decode(value, ctx).unwrap();
                assert!(got.iter().map(|t| t.0).eq(types.iter().copied()));
            }
            Attr::PasswordAlgorithm { kind, params } => {
                let got = PasswordAlgorithm::decode(value, ctx).unwrap();
                assert_eq!(got.kind.to_u16(), *kind);
                assert_eq!(got.params, params.as_slice());
            }
            Attr::PasswordAlgorithms(list) => {
                let got = PasswordAlgorithms::decode(value, ctx).unwrap();
                assert!(
                    got.iter()
                        .map(|a| (a.kind.to_u16(), a.params))
                        .eq(list.iter().map(|(k, p)| (*k, p.as_slice())))
                );
            }
            Attr::UserHash(h) => assert_eq!(UserHash::decode(value, ctx), Ok(UserHash(*h))),
            Attr::ChangeRequest {
                change_ip,
                change_port,
            } => assert_eq!(
                ChangeRequest::decode(value, ctx),
                Ok(ChangeRequest {
                    change_ip: *change_ip,
                    change_port: *change_port,
                })
            ),
            Attr::ResponsePort(p) => {
                assert_eq!(ResponsePort::decode(value, ctx), Ok(ResponsePort(*p)))
            }
            Attr::Padding(p) => assert_eq!(Padding::decode(value, ctx).map(|x| x.0), Ok(&p[..])),
            Attr::Raw { value: v, .. } => assert_eq!(value, v.as_slice()),
        }
    }
}

/// A key that is not HMAC-equivalent to `key` (HMAC pads short keys with zeros, so
/// appending a zero byte would give the same MAC).
fn other_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match k.first_mut() {
        Some(b) => *b ^= 1,
        None => k.push(1),
    }
    k
}

/// Structured messages: build → parse must succeed and give back every attribute, in
/// order; integrity and fingerprint verify, a different key does not.
#[test]
fn stun_roundtrip() {
    let mut buf = vec![0u8; HEADER_LEN + usize::from(u16::MAX)];
    check!()
        .with_type::<Spec>()
        .with_test_time(TEST_TIME)
        .for_each(|spec| roundtrip(spec, &mut buf));
}

fn roundtrip(spec: &Spec, buf: &mut [u8]) {
    let mut attrs = spec.attrs.clone();
    attrs.iter_mut().for_each(Attr::normalize);
    let class = match spec.class % 4 {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    let typ = MessageType::new(Method::new(spec.method & 0x0FFF).unwrap(), class);
    let cookie = spec.cookie.unwrap_or(MAGIC_COOKIE);
    let id = TransactionId::new(spec.id);
    let key = IntegrityKey::from_bytes(&spec.key);

    let mut b = MessageBuilder::with_cookie(buf, typ, cookie, id).unwrap();
    b.set_padding_byte(spec.padding);
    let mut added = 0;
    for a in &attrs {
        match a.add_to(&mut b) {
            Ok(()) => added += 1,
            // Only the 64 KiB message limit may stop the builder.
            Err(StunError::MessageTooLong) => break,
            Err(e) => panic!("{a:?}: {e}"),
        }
    }
    let attrs = &attrs[..added];
    // The trailers take at most 24 + 36 + 8 bytes; skip them if they would not fit.
    let room = HEADER_LEN + usize::from(u16::MAX) - b.len() >= 68;
    let (mi, mi256, fp) = (
        spec.integrity && room,
        spec.integrity_sha256 && room,
        spec.fingerprint && room,
    );
    if mi {
        b.add_integrity(&key).unwrap();
    }
    if mi256 {
        b.add_integrity_sha256(&key).unwrap();
    }
    if fp {
        b.add_fingerprint().unwrap();
    }
    let bytes = b.finish();

    let msg = Message::parse(bytes).unwrap();
    assert_eq!(message_len(bytes), Some(bytes.len()));
    assert_eq!(msg.message_type(), typ);
    assert_eq!(msg.transaction_id(), id);
    assert_eq!(msg.context().cookie, cookie);
    assert_eq!(msg.is_rfc3489(), cookie != MAGIC_COOKIE);
    let mut raws = msg.attributes();
    for want in attrs {
        let raw = raws.next().expect("an attribute went missing");
        assert_eq!(raw.typ, want.typ());
        want.assert_decodes(raw.value, &msg);
    }
    assert_eq!(raws.next(), None);
    assert!(
        msg.unknown_required(AttrType::is_binding_attribute)
            .eq(attrs
                .iter()
                .map(Attr::typ)
                .filter(|t| t.is_comprehension_required() && !t.is_binding_attribute()))
    );

    let wrong = IntegrityKey::from_bytes(&other_key(&spec.key));
    assert_eq!(msg.has_integrity(), mi);
    assert_eq!(msg.has_integrity_sha256(), mi256);
    assert_eq!(msg.has_fingerprint(), fp);
    if mi {
        assert_eq!(msg.verify_integrity(&key), Ok(()));
        assert_eq!(
            msg.verify_integrity(&wrong),
            Err(StunError::IntegrityMismatch)
        );
    }
    if mi256 {
        assert_eq!(msg.verify_integrity_sha256(&key), Ok(()));
        assert_eq!(
            msg.verify_integrity_sha256(&wrong),
            Err(StunError::IntegrityMismatch)
        );
    }
    if mi || mi256 {
        assert_eq!(msg.verify_any_integrity(&key), Ok(()));
        assert!(msg.verify_any_integrity(&wrong).is_err());
    }
    if fp {
        assert_eq!(msg.verify_fingerprint(), Ok(()));
    }
    exercise(&msg, &key);
}
