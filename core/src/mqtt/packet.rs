//! The packets (MQTT 3.1.1 §3) as typed views with parse/emit pairs.

use super::error::MqttError;
use super::wire::{MAX_REMAINING_LEN, Reader, put_binary, put_remaining_len};

/// The control packet types this codec knows (§2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// CONNECT (1).
    Connect = 1,
    /// CONNACK (2).
    ConnAck = 2,
    /// PUBLISH (3).
    Publish = 3,
    /// PUBACK (4).
    PubAck = 4,
    /// SUBSCRIBE (8).
    Subscribe = 8,
    /// SUBACK (9).
    SubAck = 9,
    /// PINGREQ (12).
    PingReq = 12,
    /// PINGRESP (13).
    PingResp = 13,
    /// DISCONNECT (14).
    Disconnect = 14,
}

/// Quality of service (§4.3). QoS 2 is not spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once: the receiver answers PUBACK.
    AtLeastOnce = 1,
}

/// CONNECT (§3.1). Clean session always; no will, no credentials (the brokers p2pd
/// uses are anonymous; messages are authenticated end to end instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The client identifier (§3.1.3.1).
    pub client_id: &'a str,
    /// Keep-alive interval in seconds; 0 turns it off (§3.1.2.10).
    pub keep_alive: u16,
    /// Whether the broker discards session state (§3.1.2.4).
    pub clean_session: bool,
}

/// CONNACK's return code (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturn {
    /// 0: accepted.
    Accepted,
    /// 1: the broker does not speak 3.1.1.
    BadProtocolVersion,
    /// 2: the client id was refused.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: bad user name or password.
    BadCredentials,
    /// 5: not authorised.
    NotAuthorized,
}

impl ConnectReturn {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => ConnectReturn::Accepted,
            1 => ConnectReturn::BadProtocolVersion,
            2 => ConnectReturn::IdentifierRejected,
            3 => ConnectReturn::ServerUnavailable,
            4 => ConnectReturn::BadCredentials,
            5 => ConnectReturn::NotAuthorized,
            _ => return None,
        })
    }

    /// What the code means, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ConnectReturn::Accepted => "accepted",
            ConnectReturn::BadProtocolVersion => "the broker does not speak MQTT 3.1.1",
            ConnectReturn::IdentifierRejected => "the broker rejected the client id",
            ConnectReturn::ServerUnavailable => "the broker's MQTT service is unavailable",
            ConnectReturn::BadCredentials => "the broker wants a user name and password",
            ConnectReturn::NotAuthorized => "the broker does not authorise this client",
        }
    }
}

/// CONNACK (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the broker kept a session for this client id.
    pub session_present: bool,
    /// The verdict.
    pub code: ConnectReturn,
}

/// PUBLISH (§3.3). `packet_id` is present exactly when `qos` is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Redelivery flag.
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// The topic name (no wildcards).
    pub topic: &'a str,
    /// Packet identifier (QoS 1 only; non-zero).
    pub packet_id: Option<u16>,
    /// The application message.
    pub payload: &'a [u8],
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with the QoS asked for each; at least one.
    pub filters: Vec<(&'a str, QoS)>,
}

/// SUBACK (§3.9): per filter, the granted QoS (0, 1, 2) or 0x80 for failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck<'a> {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// Return codes, one per filter.
    pub codes: &'a [u8],
}

/// One MQTT control packet, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT.
    Connect(Connect<'a>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish<'a>),
    /// PUBACK with its packet identifier.
    PubAck(u16),
    /// SUBSCRIBE.
    Subscribe(Subscribe<'a>),
    /// SUBACK.
    SubAck(SubAck<'a>),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect,
}

fn malformed(packet: &'static str, problem: &'static str) -> MqttError {
    MqttError::Malformed { packet, problem }
}

fn nonzero_id(r: &mut Reader<'_>) -> Result<u16, MqttError> {
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return Err(malformed(r.packet, "packet identifier 0 is reserved"));
    }
    Ok(id)
}

/// A topic name (not filter) must be non-empty and free of wildcards (§4.7.3).
fn check_topic_name(packet: &'static str, topic: &str) -> Result<(), MqttError> {
    if topic.is_empty() {
        return Err(malformed(packet, "empty topic name"));
    }
    if topic.contains(['+', '#']) {
        return Err(malformed(packet, "wildcard in a topic name"));
    }
    Ok(())
}

impl<'a> Packet<'a> {
    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }

    /// Parses exactly one packet: `frame` must be what [`super::frame_len`] measured.
    pub fn parse(frame: &'a [u8]) -> Result<Self, MqttError> {
        let Some(&first) = frame.first() else {
            return Err(MqttError::Truncated {
                packet: "MQTT",
                field: "fixed header",
            });
        };
        let (kind, flags) = (first >> 4, first & 0x0f);
        let len = super::wire::frame_len(frame, usize::MAX)?.ok_or(MqttError::Truncated {
            packet: "MQTT",
            field: "body",
        })?;
        if len != frame.len() {
            return Err(MqttError::TrailingBytes {
                packet: "MQTT",
                extra: frame.len() - len,
            });
        }
        let header = frame
            .iter()
            .skip(1)
            .position(|b| b & 0x80 == 0)
            .unwrap_or(0)
            + 2;
        let body = &frame[header..];
        let name = match kind {
            1 => "CONNECT",
            2 => "CONNACK",
            3 => "PUBLISH",
            4 => "PUBACK",
            8 => "SUBSCRIBE",
            9 => "SUBACK",
            12 => "PINGREQ",
            13 => "PINGRESP",
            14 => "DISCONNECT",
            other => return Err(MqttError::Unsupported(other)),
        };
        let expected_flags = match kind {
            3 => flags,
            8 => 0b0010,
            _ => 0,
        };
        if flags != expected_flags {
            return Err(malformed(name, "reserved fixed-header flags are wrong"));
        }
        let mut r = Reader::new(body, name);
        let packet = match kind {
            1 => Packet::Connect(parse_connect(&mut r)?),
            2 => {
                let ack = r.u8("acknowledge flags")?;
                if ack & 0xfe != 0 {
                    return Err(malformed(name, "reserved acknowledge flags set"));
                }
                let code = ConnectReturn::from_u8(r.u8("return code")?)
                    .ok_or(malformed(name, "unknown return code"))?;
                Packet::ConnAck(ConnAck {
                    session_present: ack & 1 == 1,
                    code,
                })
            }
            3 => {
                let qos = match (flags >> 1) & 3 {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    2 => return Err(MqttError::Unsupported(kind)),
                    _ => return Err(malformed(name, "QoS 3 is invalid")),
                };
                let dup = flags & 0b1000 != 0;
                if dup && qos == QoS::AtMostOnce {
                    return Err(malformed(name, "DUP set on a QoS 0 message"));
                }
                let topic = r.string("topic name")?;
                check_topic_name(name, topic)?;
                let packet_id = match qos {
                    QoS::AtMostOnce => None,
                    QoS::AtLeastOnce => Some(nonzero_id(&mut r)?),
                };
                Packet::Publish(Publish {
                    dup,
                    qos,
                    retain: flags & 1 != 0,
                    topic,
                    packet_id,
                    payload: r.rest(),
                })
            }
            4 => Packet::PubAck(nonzero_id(&mut r)?),
            8 => {
                let packet_id = nonzero_id(&mut r)?;
                let mut filters = Vec::new();
                while r.remaining() > 0 {
                    let filter = r.string("topic filter")?;
                    if filter.is_empty() {
                        return Err(malformed(name, "empty topic filter"));
                    }
                    let qos = match r.u8("requested QoS")? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        2 => return Err(MqttError::Unsupported(kind)),
                        _ => return Err(malformed(name, "invalid requested QoS byte")),
                    };
                    filters.push((filter, qos));
                }
                if filters.is_empty() {
                    return Err(malformed(name, "no topic filter"));
                }
                Packet::Subscribe(Subscribe { packet_id, filters })
            }
            9 => {
                let packet_id = nonzero_id(&mut r)?;
                let codes = r.rest();
                if codes.is_empty() {
                    return Err(malformed(name, "no return code"));
                }
                if codes.iter().any(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
                    return Err(malformed(name, "invalid return code"));
                }
                Packet::SubAck(SubAck { packet_id, codes })
            }
            12 => Packet::PingReq,
            13 => Packet::PingResp,
            _ => Packet::Disconnect,
        };
        r.finish()?;
        Ok(packet)
    }

    /// Appends the packet's bytes to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), MqttError> {
        let mut body = Vec::new();
        let flags = match self {
            Packet::Connect(c) => {
                put_binary(&mut body, "protocol name", b"MQTT")?;
                body.push(4);
                body.push(if c.clean_session { 0x02 } else { 0 });
                body.extend_from_slice(&c.keep_alive.to_be_bytes());
                put_binary(&mut body, "client id", c.client_id.as_bytes())?;
                0
            }
            Packet::ConnAck(a) => {
                body.push(u8::from(a.session_present));
                body.push(a.code as u8);
                0
            }
            Packet::Publish(p) => {
                put_binary(&mut body, "topic name", p.topic.as_bytes())?;
                if let Some(id) = p.packet_id {
                    body.extend_from_slice(&id.to_be_bytes());
                }
                body.extend_from_slice(p.payload);
                (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
            }
            Packet::PubAck(id) => {
                body.extend_from_slice(&id.to_be_bytes());
                0
            }
            Packet::Subscribe(s) => {
                body.extend_from_slice(&s.packet_id.to_be_bytes());
                for (filter, qos) in &s.filters {
                    put_binary(&mut body, "topic filter", filter.as_bytes())?;
                    body.push(*qos as u8);
                }
                0b0010
            }
            Packet::SubAck(a) => {
                body.extend_from_slice(&a.packet_id.to_be_bytes());
                body.extend_from_slice(a.codes);
                0
            }
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
        };
        if body.len() > MAX_REMAINING_LEN {
            return Err(MqttError::TooLarge {
                len: body.len(),
                max: MAX_REMAINING_LEN,
            });
        }
        out.push(((self.packet_type() as u8) << 4) | flags);
        put_remaining_len(out, body.len());
        out.extend_from_slice(&body);
        Ok(())
    }
}

fn parse_connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, MqttError> {
    if r.string("protocol name")? != "MQTT" {
        return Err(malformed(r.packet, "protocol name is not MQTT"));
    }
    if r.u8("protocol level")? != 4 {
        return Err(malformed(r.packet, "protocol level is not 4 (3.1.1)"));
    }
    let flags = r.u8("connect flags")?;
    if flags & !0x02 != 0 {
        // Will, user name, password and the reserved bit are not used by p2pd.
        return Err(malformed(
            r.packet,
            "will, credentials or reserved flag set",
        ));
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = r.string("client identifier")?;
    Ok(Connect {
        client_id,
        keep_alive,
        clean_session: flags & 0x02 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::wire::frame_len;

    fn round_trip(p: &Packet<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        p.emit(&mut out).unwrap();
        assert_eq!(frame_len(&out, usize::MAX), Ok(Some(out.len())));
        assert_eq!(&Packet::parse(&out).unwrap(), p);
        out
    }

    #[test]
    fn every_packet_round_trips() {
        let bytes = round_trip(&Packet::Connect(Connect {
            client_id: "abc",
            keep_alive: 60,
            clean_session: true,
        }));
        // §3.1 example layout: 10 len, 00 04 'MQTT', 04, 02, 00 3c, 00 03 'abc'.
        assert_eq!(
            bytes,
            [
                0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 3, b'a', b'b', b'c'
            ]
        );
        round_trip(&Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturn::NotAuthorized,
        }));
        round_trip(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "p2pd/1/x",
            packet_id: None,
            payload: b"hello",
        }));
        round_trip(&Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t",
            packet_id: Some(7),
            payload: &[0u8; 300],
        }));
        round_trip(&Packet::PubAck(9));
        assert_eq!(
            round_trip(&Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![("a/b", QoS::AtLeastOnce), ("c/#", QoS::AtMostOnce)],
            }))[0],
            0x82
        );
        round_trip(&Packet::SubAck(SubAck {
            packet_id: 1,
            codes: &[1, 0x80],
        }));
        assert_eq!(round_trip(&Packet::PingReq), [0xc0, 0]);
        assert_eq!(round_trip(&Packet::PingResp), [0xd0, 0]);
        assert_eq!(round_trip(&Packet::Disconnect), [0xe0, 0]);
    }

    #[test]
    fn refuses_malformed() {
        let err = |b: &[u8]| Packet::parse(b).unwrap_err();
        assert_eq!(err(&[0x50, 2, 0, 1]), MqttError::Unsupported(5)); // PUBREC
        assert!(matches!(err(&[0xc1, 0]), MqttError::Malformed { .. })); // flags on PINGREQ
        assert!(matches!(
            err(&[0x80, 3, 0, 1, 0]),
            MqttError::Malformed { .. }
        )); // SUBSCRIBE flags
        assert!(matches!(err(&[0x40, 2, 0, 0]), MqttError::Malformed { .. })); // packet id 0
        assert!(matches!(
            err(&[0x40, 3, 0, 1, 0]),
            MqttError::TrailingBytes { .. }
        ));
        assert!(matches!(err(&[0x40, 1, 0]), MqttError::Truncated { .. }));
        assert!(matches!(
            err(&[0x30, 3, 0, 1, b'#']),
            MqttError::Malformed { .. }
        )); // wildcard
        assert!(matches!(
            err(&[0x38, 3, 0, 1, b'a']),
            MqttError::Malformed { .. }
        )); // DUP at QoS 0
        assert_eq!(err(&[0x34, 3, 0, 1, b'a']), MqttError::Unsupported(3)); // QoS 2
        assert!(matches!(
            err(&[0x30, 4, 0, 2, 0xff, 0xfe]),
            MqttError::Malformed { .. }
        )); // UTF-8
        assert!(matches!(err(&[0x20, 2, 0, 9]), MqttError::Malformed { .. })); // return code
        assert!(matches!(
            err(&[0x90, 3, 0, 1, 3]),
            MqttError::Malformed { .. }
        )); // SUBACK code
        assert!(matches!(
            err(&[0xd0, 0, 0]),
            MqttError::TrailingBytes { .. }
        ));
        assert!(matches!(err(&[]), MqttError::Truncated { .. }));
    }

    #[test]
    fn long_fields_are_refused_when_emitting() {
        let topic = "t".repeat(70_000);
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: &topic,
            packet_id: None,
            payload: b"",
        });
        assert!(matches!(
            p.emit(&mut Vec::new()),
            Err(MqttError::FieldTooLong { .. })
        ));
    }
}
