//! TURN (`p2pd_core::turn`): ChannelData framing and TURN attribute values on arbitrary
//! bytes, and emit → parse round trips.

use std::time::Duration;

use bolero::check;
use p2pd_core::stun::{Attribute, HeaderContext, MAGIC_COOKIE, TransactionId};
use p2pd_core::turn::{
    AdditionalAddressFamily, ChannelData, ChannelNumber, ConnectionId, Data, DontFragment,
    EvenPort, Icmp, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
    channel_data_len,
};

const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes as a ChannelData datagram and as the head of a TCP stream: parsing
/// never panics, framing agrees with parsing, and what parses re-emits identically.
#[test]
fn channel_data_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(m) = ChannelData::parse(bytes) {
            let mut out = vec![0u8; bytes.len() + 4];
            let n = ChannelData::emit(m.channel(), m.data(), false, &mut out).expect("re-emit");
            assert_eq!(&out[..n], &bytes[..n]);
            assert!(channel_data_len(bytes).is_some());
        }
        if let Some(frame) = channel_data_len(bytes) {
            if let Some(f) = bytes.get(..frame) {
                assert!(ChannelData::parse(f).is_ok(), "framed bytes must parse");
            }
        }
    });
}

/// (channel, payload, pad) → emit → parse gives them back.
#[test]
fn channel_data_roundtrip() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(u16, bool, Vec<u8>)>()
        .for_each(|(n, pad, data)| {
            let ch = ChannelNumber::new(0x4000 | (n & 0x0FFF)).expect("in range");
            let mut out = vec![0u8; data.len() + 8];
            let len = ChannelData::emit(ch, data, *pad, &mut out).expect("fits");
            let m = ChannelData::parse(&out[..len]).expect("parses");
            assert_eq!((m.channel(), m.data()), (ch, &data[..]));
        });
}

fn decode_all(value: &[u8], ctx: &HeaderContext) {
    let _ = ChannelNumber::decode(value, ctx);
    let _ = Lifetime::decode(value, ctx);
    let _ = Data::decode(value, ctx);
    let _ = RequestedAddressFamily::decode(value, ctx);
    let _ = AdditionalAddressFamily::decode(value, ctx);
    let _ = RequestedTransport::decode(value, ctx);
    let _ = EvenPort::decode(value, ctx);
    let _ = DontFragment::decode(value, ctx);
    let _ = ReservationToken::decode(value, ctx);
    let _ = ConnectionId::decode(value, ctx);
    let _ = Icmp::decode(value, ctx);
}

/// Every TURN attribute codec on arbitrary values: never panics; what decodes re-encodes
/// to a value that decodes to the same thing.
#[test]
fn turn_attributes() {
    let ctx = HeaderContext {
        cookie: MAGIC_COOKIE,
        transaction_id: TransactionId::new([7; 12]),
    };
    check!().with_test_time(TEST_TIME).for_each(|value: &[u8]| {
        decode_all(value, &ctx);
        macro_rules! stable {
            ($t:ty) => {
                if let Ok(a) = <$t>::decode(value, &ctx) {
                    let mut out = vec![0u8; a.encoded_len()];
                    a.encode(&mut out, &ctx);
                    assert_eq!(<$t>::decode(&out, &ctx).ok(), Some(a));
                }
            };
        }
        stable!(ChannelNumber);
        stable!(Lifetime);
        stable!(RequestedAddressFamily);
        stable!(RequestedTransport);
        stable!(EvenPort);
        stable!(ReservationToken);
        stable!(ConnectionId);
        stable!(Icmp);
    });
}
