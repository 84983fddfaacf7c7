//! Server and client together on virtual time, over a [`MemoryStore`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rate::RateConfig;
use super::record::tests::addr_of;
use super::*;
use crate::identity::Identity;
use crate::rng::Rng;

const DAY_MS: u64 = 24 * 3600 * 1000;
const T0_MS: u64 = 1_700_000_000_000;

/// A few name servers on virtual time; a server can be silenced.
struct Net {
    t0: Instant,
    now: Instant,
    /// Added to every server's wall clock (to jump days ahead).
    wall_offset: u64,
    servers: Vec<(SocketAddr, NameServer, MemoryStore, bool)>,
    rng: Rng,
    /// Replies to lose (the next ones sent), to test retransmission.
    lose_replies: u32,
}

impl Net {
    fn new(n: usize, config: ServerConfig) -> Self {
        let t0 = Instant::now();
        let mut rng = Rng::seed_from_u64(99);
        let servers = (0..n)
            .map(|i| {
                let a: SocketAddr = format!("198.51.100.{}:5300", i + 1).parse().unwrap();
                (
                    a,
                    NameServer::new(config, a, &mut rng, t0),
                    MemoryStore::new(),
                    true,
                )
            })
            .collect();
        Net {
            t0,
            now: t0,
            wall_offset: 0,
            servers,
            rng,
            lose_replies: 0,
        }
    }

    fn unix_ms(&self) -> u64 {
        T0_MS + self.wall_offset + self.now.duration_since(self.t0).as_millis() as u64
    }

    fn targets(&self, local: SocketAddr) -> Vec<Target> {
        self.servers
            .iter()
            .map(|s| Target { server: s.0, local })
            .collect()
    }

    /// Sends `bytes` from `from` to server `i`; returns its replies.
    fn deliver(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) -> Vec<Vec<u8>> {
        let unix = self.unix_ms();
        let (_, server, store, up) = &mut self.servers[i];
        if !*up {
            return vec![];
        }
        server.handle_input(self.now, unix, from, bytes, store);
        let mut out = vec![];
        while let Some(t) = server.poll_transmit() {
            assert_eq!(t.destination, from);
            if self.lose_replies > 0 {
                self.lose_replies -= 1;
                continue;
            }
            out.push(t.contents.to_vec());
        }
        out
    }

    /// One request through the cookie exchange, as a client would: the answer.
    fn ask(&mut self, i: usize, from: SocketAddr, body: RequestBody) -> ResponseBody {
        let mut req = Request {
            id: self.rng.next_u64(),
            cookie: None,
            body,
        };
        for _ in 0..2 {
            let replies = self.deliver(i, from, &req.to_bytes());
            assert_eq!(replies.len(), 1);
            let resp = Response::parse(&replies[0]).unwrap();
            assert_eq!(resp.id, req.id);
            match resp.body {
                ResponseBody::Cookie(c) => req.cookie = Some(c),
                other => return other,
            }
        }
        panic!("cookie refused twice");
    }

    /// Runs any machine that talks to the servers until it reports, at most 10 000 steps.
    fn run<M: crate::Machine>(&mut self, m: &mut M) -> M::Event {
        for _ in 0..10_000 {
            let mut sent = vec![];
            while let Some(t) = m.poll_transmit() {
                sent.push((t.source, t.destination, t.contents.to_vec()));
            }
            for (src, dst, bytes) in sent {
                if let Some(i) = self.servers.iter().position(|s| s.0 == dst) {
                    for reply in self.deliver(i, src, &bytes) {
                        m.handle_input(self.now, dst, src, &reply);
                    }
                }
            }
            if let Some(e) = m.poll_event() {
                return e;
            }
            let Some(t) = m.poll_timeout() else {
                panic!("machine stalled without an event");
            };
            if t.at > self.now {
                self.now = t.at;
            }
            m.handle_timeout(self.now);
        }
        panic!("no event within 10 000 steps");
    }
}

fn small_rate() -> ServerConfig {
    ServerConfig {
        rate: RateConfig {
            burst: 1000,
            per_second: 1000,
            slots: 64,
        },
        ..ServerConfig::default()
    }
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn ids() -> (Identity, Identity) {
    let mut rng = Rng::seed_from_u64(7);
    (Identity::generate(&mut rng), Identity::generate(&mut rng))
}

const ALICE_IP: &str = "192.0.2.10:40000";
const MALLORY_IP: &str = "192.0.2.66:40000";

fn put(id: &Identity, n: &str, port: u16, ts: u64) -> RequestBody {
    RequestBody::Write(Box::new(SignedWrite::sign(
        id,
        name(n),
        Some(addr_of(id, port)),
        ts,
    )))
}

fn del(id: &Identity, n: &str, ts: u64) -> RequestBody {
    RequestBody::Write(Box::new(SignedWrite::sign(id, name(n), None, ts)))
}

fn found_port(body: &ResponseBody) -> Option<u16> {
    match body {
        ResponseBody::Found(w) => w.addr.as_ref()?.interfaces()[0].v4.map(|r| r.port),
        _ => None,
    }
}

#[test]
fn claim_update_delete() {
    let (alice, _) = ids();
    let mut net = Net::new(1, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    assert_eq!(
        net.ask(0, a, RequestBody::Resolve(name("alice"))),
        ResponseBody::NotFound
    );
    assert_eq!(
        net.ask(0, a, put(&alice, "alice", 1, t)),
        ResponseBody::Accepted { timestamp_ms: t }
    );
    assert_eq!(
        found_port(&net.ask(0, a, RequestBody::Resolve(name("alice")))),
        Some(1)
    );
    // Update: a newer timestamp, a new address, even from another IP.
    let other: SocketAddr = "192.0.2.11:1".parse().unwrap();
    assert_eq!(
        net.ask(0, other, put(&alice, "alice", 2, t + 1)),
        ResponseBody::Accepted {
            timestamp_ms: t + 1
        }
    );
    assert_eq!(
        found_port(&net.ask(0, a, RequestBody::Resolve(name("alice")))),
        Some(2)
    );
    // Delete.
    assert_eq!(
        net.ask(0, a, del(&alice, "alice", t + 2)),
        ResponseBody::Accepted {
            timestamp_ms: t + 2
        }
    );
    assert_eq!(
        net.ask(0, a, RequestBody::Resolve(name("alice"))),
        ResponseBody::NotFound
    );
    // Deleting again (nothing live) changes nothing.
    assert_eq!(
        net.ask(0, a, del(&alice, "alice", t + 3)),
        ResponseBody::NotFound
    );
    // Claim it back with a newer timestamp.
    assert!(matches!(
        net.ask(0, a, put(&alice, "alice", 3, t + 4)),
        ResponseBody::Accepted { .. }
    ));
}

#[test]
fn stolen_name_refused() {
    let (alice, mallory) = ids();
    let mut net = Net::new(1, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let m: SocketAddr = MALLORY_IP.parse().unwrap();
    let t = net.unix_ms();
    assert!(matches!(
        net.ask(0, a, put(&alice, "alice", 1, t)),
        ResponseBody::Accepted { .. }
    ));
    // Mallory signs her own record for the name: not the owner.
    assert_eq!(
        net.ask(0, m, put(&mallory, "alice", 666, t + 10)),
        ResponseBody::Refused(Refusal::NotOwner)
    );
    // Nor may she delete it.
    assert_eq!(
        net.ask(0, m, del(&mallory, "alice", t + 11)),
        ResponseBody::Refused(Refusal::NotOwner)
    );
    // Alice's record with Mallory's key on it but Alice's address: the address is not hers.
    let forged = SignedWrite::sign(&mallory, name("alice"), Some(addr_of(&alice, 9)), t + 12);
    assert_eq!(
        net.ask(0, m, RequestBody::Write(Box::new(forged))),
        ResponseBody::Refused(Refusal::BadSignature)
    );
    // Alice's key with a signature by Mallory.
    let mut fake = SignedWrite::sign(&mallory, name("alice"), Some(addr_of(&mallory, 9)), t + 13);
    fake.owner = alice.public();
    fake.addr = Some(addr_of(&alice, 9));
    assert_eq!(
        net.ask(0, m, RequestBody::Write(Box::new(fake))),
        ResponseBody::Refused(Refusal::BadSignature)
    );
    assert_eq!(
        found_port(&net.ask(0, m, RequestBody::Resolve(name("alice")))),
        Some(1)
    );
}

#[test]
fn replayed_writes_refused() {
    let (alice, _) = ids();
    let mut net = Net::new(1, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    let first = put(&alice, "alice", 1, t);
    let second = put(&alice, "alice", 2, t + 5);
    assert!(matches!(
        net.ask(0, a, first.clone()),
        ResponseBody::Accepted { .. }
    ));
    // A retransmission of the same write: acknowledged again, nothing changes.
    assert_eq!(
        net.ask(0, a, first.clone()),
        ResponseBody::Accepted { timestamp_ms: t }
    );
    assert!(matches!(
        net.ask(0, a, second),
        ResponseBody::Accepted { .. }
    ));
    // The first write replayed over the second: refused.
    assert_eq!(
        net.ask(0, a, first.clone()),
        ResponseBody::Refused(Refusal::Stale { stored_ms: t + 5 })
    );
    // Same timestamp, different content: refused.
    assert_eq!(
        net.ask(0, a, put(&alice, "alice", 3, t + 5)),
        ResponseBody::Refused(Refusal::Stale { stored_ms: t + 5 })
    );
    assert_eq!(
        found_port(&net.ask(0, a, RequestBody::Resolve(name("alice")))),
        Some(2)
    );
    // After a delete, the old record cannot be replayed to bring the name back.
    assert!(matches!(
        net.ask(0, a, del(&alice, "alice", t + 6)),
        ResponseBody::Accepted { .. }
    ));
    assert_eq!(
        net.ask(0, a, first),
        ResponseBody::Refused(Refusal::Stale { stored_ms: t + 6 })
    );
    assert_eq!(
        net.ask(0, a, RequestBody::Resolve(name("alice"))),
        ResponseBody::NotFound
    );
    // Timestamps far from the server's clock are refused (so very old writes never return).
    let skew = Refusal::ClockSkew {
        server_ms: net.unix_ms(),
    };
    assert_eq!(
        net.ask(0, a, put(&alice, "alicia", 1, t - 2 * 3600 * 1000)),
        ResponseBody::Refused(skew)
    );
    assert_eq!(
        net.ask(0, a, put(&alice, "alicia", 1, t + 2 * 3600 * 1000)),
        ResponseBody::Refused(skew)
    );
}

#[test]
fn names_expire_after_seven_days() {
    let (alice, mallory) = ids();
    let mut net = Net::new(1, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    assert!(matches!(
        net.ask(0, a, put(&alice, "alice", 1, t)),
        ResponseBody::Accepted { .. }
    ));
    assert!(matches!(
        net.ask(0, a, put(&alice, "bob", 1, t)),
        ResponseBody::Accepted { .. }
    ));
    net.wall_offset = 6 * DAY_MS;
    let t6 = net.unix_ms();
    // Bob is refreshed on day 6; alice is not.
    assert!(matches!(
        net.ask(0, a, put(&alice, "bob", 2, t6)),
        ResponseBody::Accepted { .. }
    ));
    net.wall_offset = 7 * DAY_MS - 1;
    assert_eq!(
        found_port(&net.ask(0, a, RequestBody::Resolve(name("alice")))),
        Some(1)
    );
    net.wall_offset = 7 * DAY_MS;
    assert_eq!(
        net.ask(0, a, RequestBody::Resolve(name("alice"))),
        ResponseBody::NotFound
    );
    assert_eq!(
        found_port(&net.ask(0, a, RequestBody::Resolve(name("bob")))),
        Some(2)
    );
    // An expired name is free: another key may claim it.
    let m: SocketAddr = MALLORY_IP.parse().unwrap();
    let t7 = net.unix_ms();
    assert!(matches!(
        net.ask(0, m, put(&mallory, "alice", 5, t7)),
        ResponseBody::Accepted { .. }
    ));
    // A week after the last writes, the sweep removes both names.
    net.wall_offset = 14 * DAY_MS;
    let unix = net.unix_ms();
    let (_, server, store, _) = &mut net.servers[0];
    assert_eq!(store.len().unwrap(), 2);
    // In bounded batches: a full batch asks for another sweep at once.
    assert_eq!(server.sweep(net.now, unix, store, 1).unwrap(), 1);
    assert_eq!(server.poll_timeout().unwrap().at, net.now);
    assert_eq!(server.sweep(net.now, unix, store, 2).unwrap(), 1);
    assert!(server.poll_timeout().unwrap().at > net.now);
    assert!(store.is_empty().unwrap());
}

#[test]
fn per_address_limits() {
    let mut rng = Rng::seed_from_u64(3);
    let mut net = Net::new(1, small_rate());
    let t = net.unix_ms();
    let v4: SocketAddr = "192.0.2.20:1".parse().unwrap();
    let keys: Vec<Identity> = (0..25).map(|_| Identity::generate(&mut rng)).collect();
    for (i, k) in keys.iter().take(20).enumerate() {
        let r = net.ask(0, v4, put(k, &format!("name-{i}"), 1, t));
        assert!(matches!(r, ResponseBody::Accepted { .. }), "{i}: {r:?}");
    }
    // The 21st name from the same IPv4 address (another port changes nothing).
    let v4b: SocketAddr = "192.0.2.20:2".parse().unwrap();
    assert_eq!(
        net.ask(0, v4b, put(&keys[20], "name-20", 1, t)),
        ResponseBody::Refused(Refusal::AddressLimit { limit: 20 })
    );
    // Updating a name it already holds is fine at the limit.
    assert!(matches!(
        net.ask(0, v4, put(&keys[0], "name-0", 2, t + 1)),
        ResponseBody::Accepted { .. }
    ));
    // Deleting one frees a place.
    assert!(matches!(
        net.ask(0, v4, del(&keys[1], "name-1", t + 1)),
        ResponseBody::Accepted { .. }
    ));
    assert!(matches!(
        net.ask(0, v4b, put(&keys[20], "name-20", 1, t + 1)),
        ResponseBody::Accepted { .. }
    ));
    // IPv6: 5 per /64, whatever the interface id.
    for (i, key) in keys.iter().enumerate().take(5) {
        let a: SocketAddr = format!("[2001:db8:1:2::{}]:1", i + 1).parse().unwrap();
        assert!(matches!(
            net.ask(0, a, put(key, &format!("six-{i}"), 1, t)),
            ResponseBody::Accepted { .. }
        ));
    }
    let same64: SocketAddr = "[2001:db8:1:2:ffff::9]:1".parse().unwrap();
    assert_eq!(
        net.ask(0, same64, put(&keys[5], "six-5", 1, t)),
        ResponseBody::Refused(Refusal::AddressLimit { limit: 5 })
    );
    let other64: SocketAddr = "[2001:db8:1:3::1]:1".parse().unwrap();
    assert!(matches!(
        net.ask(0, other64, put(&keys[5], "six-5", 1, t)),
        ResponseBody::Accepted { .. }
    ));
}

#[test]
fn rate_limited_per_address() {
    let (alice, _) = ids();
    let config = ServerConfig {
        rate: RateConfig {
            burst: 10,
            per_second: 1,
            slots: 64,
        },
        ..ServerConfig::default()
    };
    let mut net = Net::new(1, config);
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    // Two writes (5 tokens each) use up the burst.
    assert!(matches!(
        net.ask(0, a, put(&alice, "alice", 1, t)),
        ResponseBody::Accepted { .. }
    ));
    assert!(matches!(
        net.ask(0, a, put(&alice, "alice", 1, t + 1)),
        ResponseBody::Accepted { .. }
    ));
    let r = net.ask(0, a, RequestBody::Resolve(name("alice")));
    assert_eq!(
        r,
        ResponseBody::Refused(Refusal::RateLimited { retry_ms: 1000 })
    );
    // Another address is not affected.
    let b: SocketAddr = "192.0.2.99:1".parse().unwrap();
    assert!(matches!(
        net.ask(0, b, RequestBody::Resolve(name("alice"))),
        ResponseBody::Found(_)
    ));
    // A second later, one read is allowed again.
    net.now += Duration::from_secs(1);
    assert!(matches!(
        net.ask(0, a, RequestBody::Resolve(name("alice"))),
        ResponseBody::Found(_)
    ));
}

#[test]
fn malformed_and_unproven_requests() {
    let mut net = Net::new(1, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    // Not our protocol: silence.
    assert!(net.deliver(0, a, b"GET / HTTP/1.1\r\n").is_empty());
    assert!(net.deliver(0, a, b"").is_empty());
    // No cookie: only a cookie back, never larger than the request.
    let req = Request {
        id: 5,
        cookie: None,
        body: RequestBody::Resolve(name("abc")),
    }
    .to_bytes();
    let replies = net.deliver(0, a, &req);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].len() <= req.len());
    let ResponseBody::Cookie(c) = Response::parse(&replies[0]).unwrap().body else {
        panic!("expected a cookie");
    };
    // The cookie is for this IP only.
    let mut with = Request {
        id: 6,
        cookie: Some(c),
        body: RequestBody::Resolve(name("abc")),
    }
    .to_bytes();
    let b: SocketAddr = "192.0.2.55:1".parse().unwrap();
    assert!(matches!(
        Response::parse(&net.deliver(0, b, &with)[0]).unwrap().body,
        ResponseBody::Cookie(_)
    ));
    // A valid header and cookie, then junk: refused as malformed.
    with.truncate(with.len() - 2);
    with.extend_from_slice(b"!!");
    let r = Response::parse(&net.deliver(0, a, &with)[0]).unwrap();
    assert_eq!(
        (r.id, r.body),
        (6, ResponseBody::Refused(Refusal::Malformed))
    );
    // Junk of every length never panics and the server state stays bounded.
    let mut rng = Rng::seed_from_u64(1);
    let before = net.servers[0].1.memory();
    for len in 0..600 {
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk);
        if len >= 28 && len % 2 == 0 {
            junk[..28].copy_from_slice(&with[..28]);
        }
        let _ = net.deliver(0, a, &junk);
    }
    assert_eq!(net.servers[0].1.memory(), before);
    assert!(net.servers[0].2.is_empty().unwrap());
}

#[test]
fn client_writes_to_all_and_reports_which_accepted() {
    let (alice, mallory) = ids();
    let mut net = Net::new(3, small_rate());
    let local: SocketAddr = ALICE_IP.parse().unwrap();
    // Mallory already holds the name on server 1; server 2 is down.
    let m: SocketAddr = MALLORY_IP.parse().unwrap();
    let t = net.unix_ms();
    assert!(matches!(
        net.ask(1, m, put(&mallory, "alice", 6, t)),
        ResponseBody::Accepted { .. }
    ));
    net.servers[2].3 = false;
    let w = SignedWrite::sign(&alice, name("alice"), Some(addr_of(&alice, 1)), t + 1);
    let start = net.now;
    let mut c = NameClient::new(
        Operation::Write(Box::new(w)),
        &net.targets(local),
        ClientConfig::default(),
        &mut Rng::seed_from_u64(1),
        net.now,
    );
    let done = net.run(&mut c);
    assert_eq!(done.accepted(), vec![net.servers[0].0]);
    assert_eq!(
        done.reports[1].outcome,
        Some(Outcome::Refused(Refusal::NotOwner))
    );
    assert_eq!(done.reports[2].outcome, Some(Outcome::NoAnswer));
    // Five attempts to the silent server: 250 + 500 + 1000 + 2000 + 4000 ms.
    assert_eq!(net.now - start, Duration::from_millis(7750));
    assert!(c.poll_timeout().is_none());
}

#[test]
fn client_reads_from_any_and_checks_records() {
    let (alice, _) = ids();
    let mut net = Net::new(2, small_rate());
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    // Only server 1 has the name; server 0 does not.
    assert!(matches!(
        net.ask(1, a, put(&alice, "alice", 7, t)),
        ResponseBody::Accepted { .. }
    ));
    let mut c = NameClient::new(
        Operation::Resolve(name("alice")),
        &net.targets(a),
        ClientConfig::default(),
        &mut Rng::seed_from_u64(2),
        net.now,
    );
    let done = net.run(&mut c);
    let rec = done.record().expect("found on server 1");
    assert_eq!(
        rec.addr.as_ref().unwrap().interfaces()[0].v4.unwrap().port,
        7
    );
    assert_eq!(done.reports[0].outcome, Some(Outcome::NotFound));
    // Unknown everywhere.
    let mut c = NameClient::new(
        Operation::Resolve(name("nobody")),
        &net.targets(a),
        ClientConfig::default(),
        &mut Rng::seed_from_u64(3),
        net.now,
    );
    let done = net.run(&mut c);
    assert!(done.record().is_none());
    assert!(
        done.reports
            .iter()
            .all(|r| r.outcome == Some(Outcome::NotFound))
    );
}

#[test]
fn client_ignores_forged_answers() {
    let (alice, mallory) = ids();
    let a: SocketAddr = ALICE_IP.parse().unwrap();
    let server: SocketAddr = "198.51.100.1:5300".parse().unwrap();
    let now = Instant::now();
    let mut c = NameClient::new(
        Operation::Resolve(name("alice")),
        &[Target { server, local: a }],
        ClientConfig::default(),
        &mut Rng::seed_from_u64(4),
        now,
    );
    let sent = c.poll_transmit().unwrap().contents.to_vec();
    let id = Request::parse(&sent).unwrap().id;
    // A record with the right id but from someone else: ignored.
    let rec = SignedWrite::sign(&mallory, name("alice"), Some(addr_of(&mallory, 1)), 1);
    let forged = Response {
        id,
        body: ResponseBody::Found(Box::new(rec.clone())),
    }
    .to_bytes();
    c.handle_input(now, "192.0.2.200:5300".parse().unwrap(), a, &forged);
    assert!(!c.is_finished());
    // A record of another name from the server: invalid.
    let other = SignedWrite::sign(&alice, name("alicf"), Some(addr_of(&alice, 1)), 1);
    c.handle_input(
        now,
        server,
        a,
        &Response {
            id,
            body: ResponseBody::Found(Box::new(other)),
        }
        .to_bytes(),
    );
    let done = c.poll_event().unwrap();
    assert!(matches!(done.reports[0].outcome, Some(Outcome::Invalid(_))));
    assert!(done.record().is_none());
}

#[test]
fn registrar_refreshes_before_expiry_and_on_address_change() {
    let (alice, mallory) = ids();
    let mut net = Net::new(2, small_rate());
    let local: SocketAddr = ALICE_IP.parse().unwrap();
    let mut reg = Registrar::new(
        alice.clone(),
        addr_of(&alice, 1),
        net.targets(local),
        RegistrarConfig::default(),
        Rng::seed_from_u64(5),
        net.now,
        net.unix_ms(),
    );
    reg.add(net.now, name("alice")).unwrap();
    let RegistrarEvent::Registered { accepted, .. } = net.run(&mut reg) else {
        panic!("not registered");
    };
    assert_eq!(accepted.len(), 2);
    // 30 virtual days: the name never expires on either server.
    let end = net.now + Duration::from_secs(30 * 24 * 3600);
    let mut rounds = 0;
    while net.now < end {
        let e = net.run(&mut reg);
        assert!(matches!(e, RegistrarEvent::Registered { .. }), "{e:?}");
        rounds += 1;
        for i in 0..2 {
            assert_eq!(
                found_port(&net.ask(i, local, RequestBody::Resolve(name("alice")))),
                Some(1)
            );
        }
    }
    assert_eq!(rounds, 30);
    // The address changes: re-registered at once.
    let before = net.now;
    reg.set_address(net.now, addr_of(&alice, 2));
    assert!(matches!(
        net.run(&mut reg),
        RegistrarEvent::Registered { .. }
    ));
    assert!(net.now - before < Duration::from_secs(1));
    assert_eq!(
        found_port(&net.ask(0, local, RequestBody::Resolve(name("alice")))),
        Some(2)
    );
    // A name someone else owns: refused, retried with backoff.
    let t = net.unix_ms();
    let m: SocketAddr = MALLORY_IP.parse().unwrap();
    for i in 0..2 {
        assert!(matches!(
            net.ask(i, m, put(&mallory, "taken", 1, t)),
            ResponseBody::Accepted { .. }
        ));
    }
    reg.add(net.now, name("taken")).unwrap();
    let RegistrarEvent::Failed {
        name: n, retry_in, ..
    } = net.run(&mut reg)
    else {
        panic!("expected a failure");
    };
    assert_eq!((n.as_str(), retry_in), ("taken", Duration::from_secs(30)));
}

#[test]
fn registrar_recovers_from_a_clock_step_back() {
    let (alice, _) = ids();
    let mut net = Net::new(1, small_rate());
    let local: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    // A write from "the future" (10 minutes ahead, within the server's skew window).
    assert!(matches!(
        net.ask(0, local, put(&alice, "alice", 9, t + 600_000)),
        ResponseBody::Accepted { .. }
    ));
    let mut reg = Registrar::new(
        alice.clone(),
        addr_of(&alice, 1),
        net.targets(local),
        RegistrarConfig::default(),
        Rng::seed_from_u64(6),
        net.now,
        net.unix_ms(),
    );
    reg.add(net.now, name("alice")).unwrap();
    assert!(matches!(
        net.run(&mut reg),
        RegistrarEvent::Failed {
            retry_in: Duration::ZERO,
            ..
        }
    ));
    assert!(matches!(
        net.run(&mut reg),
        RegistrarEvent::Registered { .. }
    ));
    assert_eq!(
        found_port(&net.ask(0, local, RequestBody::Resolve(name("alice")))),
        Some(1)
    );
}

#[test]
fn lost_replies_are_retransmitted_and_a_stored_write_is_acknowledged_again() {
    let (alice, _) = ids();
    let mut net = Net::new(1, small_rate());
    let local: SocketAddr = ALICE_IP.parse().unwrap();
    let t = net.unix_ms();
    let w = SignedWrite::sign(&alice, name("alice"), Some(addr_of(&alice, 1)), t);
    let mut c = NameClient::new(
        Operation::Write(Box::new(w)),
        &net.targets(local),
        ClientConfig::default(),
        &mut Rng::seed_from_u64(8),
        net.now,
    );
    // Datagram 1 (no cookie): its cookie answer is lost. Datagram 2, 250 ms later: the
    // cookie arrives. Datagram 3 (with the cookie): stored, the acknowledgement lost.
    // Datagram 4, a retransmission: acknowledged.
    let start = net.now;
    net.lose_replies = 1;
    let mut sent = 0;
    let done = loop {
        while let Some(tx) = c.poll_transmit() {
            let (src, dst, bytes) = (tx.source, tx.destination, tx.contents.to_vec());
            sent += 1;
            if sent == 3 {
                net.lose_replies = 1; // the write's acknowledgement
            }
            for reply in net.deliver(0, src, &bytes) {
                c.handle_input(net.now, dst, src, &reply);
            }
        }
        if let Some(e) = c.poll_event() {
            break e;
        }
        net.now = c.poll_timeout().unwrap().at.max(net.now);
        c.handle_timeout(net.now);
        assert!(sent < 20);
    };
    // The repeated write was answered "accepted" (the same write), not refused as a replay.
    assert_eq!(done.accepted(), vec![net.servers[0].0]);
    assert_eq!(sent, 4);
    assert!(net.now - start >= Duration::from_millis(500));
    assert_eq!(
        found_port(&net.ask(0, local, RequestBody::Resolve(name("alice")))),
        Some(1)
    );
}

/// A memory store whose flush can be made to fail, counting flushes.
struct FlakyStore {
    inner: MemoryStore,
    fail_flush: bool,
    flushes: u32,
}

impl NameStore for FlakyStore {
    fn get(&self, name: &Name) -> Result<Option<StoredName>, StoreError> {
        self.inner.get(name)
    }
    fn held_by(&self, holder: &Holder) -> Result<u64, StoreError> {
        self.inner.held_by(holder)
    }
    fn len(&self) -> Result<u64, StoreError> {
        self.inner.len()
    }
    fn put(&mut self, entry: StoredName) -> Result<(), StoreError> {
        self.inner.put(entry)
    }
    fn remove(&mut self, name: &Name) -> Result<(), StoreError> {
        self.inner.remove(name)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.flushes += 1;
        if self.fail_flush {
            Err(StoreError("disk full".into()))
        } else {
            Ok(())
        }
    }
    fn written_before(&self, before_ms: u64, limit: usize) -> Result<Vec<Name>, StoreError> {
        self.inner.written_before(before_ms, limit)
    }
}

#[test]
fn batches_flush_once_and_a_failed_flush_acknowledges_nothing() {
    let mut rng = Rng::seed_from_u64(12);
    let keys: Vec<Identity> = (0..4).map(|_| Identity::generate(&mut rng)).collect();
    let t0 = Instant::now();
    let unix = T0_MS;
    let local: SocketAddr = "198.51.100.1:5300".parse().unwrap();
    let mut server = NameServer::new(small_rate(), local, &mut rng, t0);
    let mut store = FlakyStore {
        inner: MemoryStore::new(),
        fail_flush: false,
        flushes: 0,
    };
    let from: SocketAddr = ALICE_IP.parse().unwrap();
    // Get a cookie (a read-only exchange: no flush).
    let probe = Request {
        id: 1,
        cookie: None,
        body: RequestBody::Resolve(name("abc")),
    };
    server.handle_input(t0, unix, from, &probe.to_bytes(), &mut store);
    let Some(ResponseBody::Cookie(cookie)) = server
        .poll_transmit()
        .map(|t| Response::parse(t.contents).unwrap().body)
    else {
        panic!("no cookie");
    };
    assert_eq!(store.flushes, 0);
    let writes: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Request {
                id: 10 + i as u64,
                cookie: Some(cookie),
                body: put(k, &format!("batch-{i}"), 1, unix),
            }
            .to_bytes()
        })
        .collect();
    // Three writes and a read in one batch: one flush, then four answers.
    let read = Request {
        id: 20,
        cookie: Some(cookie),
        body: RequestBody::Resolve(name("batch-0")),
    }
    .to_bytes();
    let batch = [
        (from, &writes[0][..]),
        (from, &writes[1][..]),
        (from, &read[..]),
        (from, &writes[2][..]),
    ];
    server.handle_batch(t0, unix, batch, &mut store);
    assert_eq!(store.flushes, 1);
    let mut answers = vec![];
    while let Some(t) = server.poll_transmit() {
        answers.push(Response::parse(t.contents).unwrap());
    }
    assert_eq!(answers.len(), 4);
    assert!(matches!(answers[2].body, ResponseBody::Found(_)));
    assert!(
        answers
            .iter()
            .filter(|a| a.id != 20)
            .all(|a| matches!(a.body, ResponseBody::Accepted { .. }))
    );
    // The disk fails: the write is not acknowledged, and neither is its retransmission
    // (the flush is retried for it and fails again).
    store.fail_flush = true;
    for _ in 0..2 {
        server.handle_input(t0, unix, from, &writes[3], &mut store);
        let r = Response::parse(server.poll_transmit().unwrap().contents).unwrap();
        assert_eq!(r.body, ResponseBody::Refused(Refusal::Storage));
    }
    // The disk recovers: the retransmission is acknowledged after a successful flush.
    store.fail_flush = false;
    let before = store.flushes;
    server.handle_input(t0, unix, from, &writes[3], &mut store);
    let r = Response::parse(server.poll_transmit().unwrap().contents).unwrap();
    assert!(matches!(r.body, ResponseBody::Accepted { .. }));
    assert_eq!(store.flushes, before + 1);
}
