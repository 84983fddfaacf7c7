//! ChannelData (RFC 8656 §12.4) encode and decode: p2pd side by side with webrtc-rs's
//! `turn` crate, plus p2pd's TURN server relaying ChannelData end to end (parse, channel
//! and permission lookup, transmit out), which has no peer here to compare with.
//!
//! Both codecs are checked once, before timing, to produce the same bytes (encode) and
//! the same channel and payload (decode). Differences in work, stated in BENCHMARKS.md:
//! webrtc's `decode` copies the payload into its own `Vec` (p2pd borrows it), and its
//! `encode` copies the payload into `raw` as p2pd's `emit` copies it into the caller's
//! buffer; both reuse their output buffer across iterations and both pad to 4 bytes.
//!
//! Run: `cargo bench -p p2pd-bench --bench turn -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    Class, IntegrityKey, Message, MessageBuilder, MessageType, Method, Nonce,
    PasswordAlgorithmKind, Realm, TransactionId, Username, XorPeerAddress,
};
use p2pd_core::turn::{
    ChannelData, ChannelNumber, RequestedTransport, TransportProtocol, TurnServer,
    TurnServerConfig, TurnServerEvent,
};

const SIZES: [usize; 2] = [100, 1200];
const CHANNEL: u16 = 0x4001;

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

fn p2pd_encode(data: &[u8], out: &mut [u8]) -> usize {
    let ch = ChannelNumber::new(CHANNEL).unwrap();
    ChannelData::emit(ch, data, true, out).unwrap()
}

fn webrtc_encode(cd: &mut turn::proto::chandata::ChannelData) -> usize {
    cd.encode();
    cd.raw.len()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_data_encode");
    for n in SIZES {
        let data = payload(n);
        let mut out = vec![0u8; n + 8];
        let mut w = turn::proto::chandata::ChannelData {
            data: data.clone(),
            number: turn::proto::channum::ChannelNumber(CHANNEL),
            raw: Vec::with_capacity(n + 8),
        };
        let len = p2pd_encode(&data, &mut out);
        webrtc_encode(&mut w);
        assert_eq!(&out[..len], &w.raw[..], "same bytes");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::new("p2pd", n), &data, |b, data| {
            b.iter(|| p2pd_encode(black_box(data), black_box(&mut out)))
        });
        g.bench_function(BenchmarkId::new("webrtc_turn", n), |b| {
            b.iter(|| webrtc_encode(black_box(&mut w)))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_data_decode");
    for n in SIZES {
        let data = payload(n);
        let mut wire = vec![0u8; n + 8];
        let len = p2pd_encode(&data, &mut wire);
        wire.truncate(len);
        let m = ChannelData::parse(&wire).unwrap();
        assert_eq!((m.channel().value(), m.data()), (CHANNEL, &data[..]));
        let mut w = turn::proto::chandata::ChannelData {
            raw: wire.clone(),
            ..Default::default()
        };
        w.decode().unwrap();
        assert_eq!((w.number.0, &w.data[..]), (CHANNEL, &data[..]));
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::new("p2pd", n), &wire, |b, wire| {
            b.iter(|| {
                let m = ChannelData::parse(black_box(wire)).unwrap();
                (m.channel(), m.data().len())
            })
        });
        g.bench_function(BenchmarkId::new("webrtc_turn", n), |b| {
            b.iter(|| {
                black_box(&mut w).decode().unwrap();
                (w.number, w.data.len())
            })
        });
    }
    g.finish();
}

/// A server with one allocation whose channel 0x4001 is bound to PEER; returns it, the
/// client's address, the listen address and the relayed address.
fn server_with_channel() -> (TurnServer, SocketAddr, SocketAddr, SocketAddr) {
    let listen: SocketAddr = "198.51.100.1:3478".parse().unwrap();
    let client: SocketAddr = "192.0.2.10:50000".parse().unwrap();
    let peer: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let t0 = Instant::now();
    let cfg = TurnServerConfig::new(listen, "bench", vec![("u".into(), "p".into())]);
    let mut s = TurnServer::new(cfg, Rng::seed_from_u64(0), t0).unwrap();
    let key = IntegrityKey::long_term("u", "bench", "p", PasswordAlgorithmKind::Md5).unwrap();
    let mut nonce = String::new();
    let mut relay = None;
    for (i, method) in [Method::ALLOCATE, Method::ALLOCATE, Method::CHANNEL_BIND]
        .into_iter()
        .enumerate()
    {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, Class::Request),
            TransactionId::new([i as u8; 12]),
        )
        .unwrap();
        if method == Method::ALLOCATE {
            b.add(&RequestedTransport(TransportProtocol::Udp)).unwrap();
        } else {
            b.add(&ChannelNumber::new(CHANNEL).unwrap()).unwrap();
            b.add(&XorPeerAddress(peer)).unwrap();
        }
        if !nonce.is_empty() {
            b.add(&Username::new("u").unwrap()).unwrap();
            b.add(&Realm::new("bench").unwrap()).unwrap();
            b.add(&Nonce::new(&nonce).unwrap()).unwrap();
            b.add_integrity(&key).unwrap();
        }
        let req = b.finish().to_vec();
        s.handle_input(t0, client, listen, &req);
        while let Some(TurnServerEvent::BindRelay { relay: r }) = s.poll_event() {
            s.relay_bound(t0, r, true);
            relay = Some(r);
        }
        while let Some(t) = s.poll_transmit() {
            let m = Message::parse(t.contents).unwrap();
            if let Ok(Some(n)) = m.get::<Nonce>() {
                nonce = n.as_str().to_owned();
            }
        }
    }
    (s, client, listen, relay.unwrap())
}

fn server_relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("turn_server_relay");
    let (mut s, client, listen, relay) = server_with_channel();
    let peer: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let now = Instant::now();
    for n in SIZES {
        let data = payload(n);
        let mut wire = vec![0u8; n + 8];
        let len = p2pd_encode(&data, &mut wire);
        wire.truncate(len);
        // Checked once: client → peer, and peer → client as ChannelData.
        s.handle_input(now, client, listen, &wire);
        let t = s.poll_transmit().unwrap();
        assert_eq!(
            (t.source, t.destination, t.contents),
            (relay, peer, &data[..])
        );
        s.handle_input(now, peer, relay, &data);
        let t = s.poll_transmit().unwrap();
        assert_eq!((t.destination, t.contents), (client, &wire[..]));
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("client_to_peer", n), &wire, |b, wire| {
            b.iter(|| {
                s.handle_input(now, client, listen, black_box(wire));
                s.poll_transmit().map(|t| t.contents.len())
            })
        });
        g.bench_with_input(BenchmarkId::new("peer_to_client", n), &data, |b, data| {
            b.iter(|| {
                s.handle_input(now, peer, relay, black_box(data));
                s.poll_transmit().map(|t| t.contents.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, decode, server_relay);
criterion_main!(benches);
