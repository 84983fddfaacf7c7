//! `p2pd name-server` and `p2pd name …` on loopback: the real binary, a real redb file.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::BIN;
use p2pd_core::Machine;
use p2pd_core::addr::{Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::names::{ClientConfig, Name, NameClient, Operation, Outcome, SignedWrite, Target};
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::rng::Rng;

/// A running `p2pd name-server`, killed (SIGKILL) when dropped.
struct NameServerProc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for NameServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db: &Path, extra: &[&str]) -> NameServerProc {
    let mut child = Command::new(BIN)
        .args(["name-server", "--listen", "127.0.0.1:0", "--json", "--db"])
        .arg(db)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd name-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON listening line");
    let addr = v["listening"][0].as_str().unwrap().parse().unwrap();
    NameServerProc { child, addr }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2pd-names-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn addr_of(id: &Identity, port: u16) -> NodeAddr {
    let r = Route {
        external: "203.0.113.5".parse().unwrap(),
        internal: "10.0.0.5".parse().unwrap(),
        port,
        nat: NatType::RestrictedCone,
        delta: Delta {
            kind: DeltaKind::Equal,
            value: 0,
        },
    };
    NodeAddr::new(
        id.public(),
        vec![],
        vec![Interface {
            v4: Some(r),
            v6: None,
        }],
    )
    .unwrap()
}

/// A home directory with its identity created, and that identity.
fn home(tag: &str, seed: u64) -> (PathBuf, Identity) {
    let dir = temp_dir(tag);
    let id =
        p2pd_runtime::home::load_or_create_identity(&dir, &mut Rng::seed_from_u64(seed)).unwrap();
    (dir, id)
}

fn p2pd(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run p2pd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn register_resolve_steal_delete() {
    let dir = temp_dir("cli");
    // All requests come from 127.0.0.1: lift the per-address rate limit (tested below).
    let server = start(&dir.join("names.redb"), &["--rate-burst", "10000"]);
    let s = server.addr.to_string();
    let (home_a, alice) = home("cli-a", 1);
    let (home_b, bob) = home("cli-b", 2);
    let a_addr = addr_of(&alice, 1111).to_string();
    let b_addr = addr_of(&bob, 2222).to_string();
    let ha = home_a.to_str().unwrap();
    let hb = home_b.to_str().unwrap();

    let out = p2pd(&[
        "name", "register", "Alice", "--server", &s, "--addr", &a_addr, "--home", ha, "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "alice");
    assert_eq!(v["accepted"][0], s);

    let out = p2pd(&["name", "resolve", "alice", "--server", &s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), a_addr);

    // Bob tries to take the name: refused, and the name still points at Alice.
    let out = p2pd(&[
        "name", "register", "alice", "--server", &s, "--addr", &b_addr, "--home", hb,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("owned by another key"),
        "{}",
        text(&out.stderr)
    );
    let out = p2pd(&["name", "delete", "alice", "--server", &s, "--home", hb]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    // Pointing a name at someone else's address is refused before sending.
    let out = p2pd(&[
        "name",
        "register",
        "bobs-alias",
        "--server",
        &s,
        "--addr",
        &a_addr,
        "--home",
        hb,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("can only name its own address"),
        "{}",
        text(&out.stderr)
    );
    let out = p2pd(&["name", "resolve", "alice", "--server", &s, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["addr"], a_addr);
    assert_eq!(v["node_id"], alice.node_id().to_string());

    // `register` without --addr starts the node for its own address (here it cannot:
    // no broker), never a delete.
    let out = p2pd(&[
        "name",
        "register",
        "alice",
        "--server",
        &s,
        "--home",
        ha,
        "--stun",
        "127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no MQTT broker configured"),
        "{}",
        text(&out.stderr)
    );
    let out = p2pd(&["name", "resolve", "alice", "--server", &s]);
    assert_eq!(text(&out.stdout).trim(), a_addr);

    // Update (twice in quick succession: the second write still gets a newer timestamp).
    for port in [3333u16, 4444] {
        let new = addr_of(&alice, port).to_string();
        let out = p2pd(&[
            "name", "register", "alice", "--server", &s, "--addr", &new, "--home", ha,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = p2pd(&["name", "resolve", "alice", "--server", &s]);
        assert_eq!(text(&out.stdout).trim(), new);
    }

    // Delete by the owner.
    let out = p2pd(&["name", "delete", "alice", "--server", &s, "--home", ha]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p2pd(&["name", "resolve", "alice", "--server", &s]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no name server knows 'alice'"),
        "{}",
        text(&out.stderr)
    );

    // Invalid names are refused with the rule.
    let out = p2pd(&["name", "resolve", "no.dots", "--server", &s]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("a-z, digits 0-9 and '-'"),
        "{}",
        text(&out.stderr)
    );
    let out = p2pd(&["name", "resolve", "ab", "--server", &s]);
    assert!(
        text(&out.stderr).contains("3 to 63"),
        "{}",
        text(&out.stderr)
    );

    // The default rate limit: a burst of 20 tokens, 5 per write.
    drop(server);
    let server = start(&dir.join("limited.redb"), &["--rate-per-s", "0"]);
    let s = server.addr.to_string();
    for i in 0..4 {
        let out = p2pd(&[
            "name",
            "register",
            &format!("name-{i}"),
            "--server",
            &s,
            "--addr",
            &a_addr,
            "--home",
            ha,
        ]);
        assert!(out.status.success(), "{i}: {}", text(&out.stderr));
    }
    let out = p2pd(&[
        "name", "register", "name-4", "--server", &s, "--addr", &a_addr, "--home", ha,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("too many requests"),
        "{}",
        text(&out.stderr)
    );

    drop(server);
    for d in [dir, home_a, home_b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Runs a name machine over a blocking socket until it reports.
fn drive<M: Machine>(sock: &UdpSocket, m: &mut M) -> M::Event {
    let local = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 8192];
    for _ in 0..100_000 {
        while let Some(t) = m.poll_transmit() {
            let _ = sock.send_to(t.contents, t.destination);
        }
        if let Some(e) = m.poll_event() {
            return e;
        }
        let at = m
            .poll_timeout()
            .expect("a pending machine has a deadline")
            .at;
        let wait = at.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                m.handle_input(Instant::now(), from, local, &buf[..n]);
                continue;
            }
        }
        m.handle_timeout(Instant::now());
    }
    panic!("machine did not finish");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn sigkill_during_a_write_burst_loses_no_acknowledged_write() {
    let dir = temp_dir("crash");
    let db = dir.join("names.redb");
    let open = [
        "--per-ipv4",
        "100000",
        "--rate-burst",
        "1000000",
        "--rate-per-s",
        "1000000",
    ];
    let mut server = start(&db, &open);
    let target = server.addr;
    let id = Identity::generate(&mut Rng::seed_from_u64(42));
    let acked = Arc::new(AtomicUsize::new(0));
    // Four writers at once, each with its own socket and names burst-W-0 … burst-W-11,
    // written over and over with rising timestamps; each remembers the last acknowledged
    // timestamp per name.
    const NAMES_PER_WRITER: u64 = 12;
    let writers: Vec<_> = (0..4u64)
        .map(|k| {
            let (id, acked) = (id.clone(), acked.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                let t = Target {
                    server: target,
                    local: sock.local_addr().unwrap(),
                };
                let config = ClientConfig {
                    initial_rto: Duration::from_millis(100),
                    attempts: 3,
                };
                let mut rng = Rng::seed_from_u64(k);
                let base = now_ms();
                let mut last: BTreeMap<String, u64> = BTreeMap::new();
                let mut silent = 0;
                for i in 0..20_000u64 {
                    let name = Name::parse(&format!("burst-{k}-{}", i % NAMES_PER_WRITER)).unwrap();
                    let port = (i % 60_000) as u16 + 1;
                    let w =
                        SignedWrite::sign(&id, name.clone(), Some(addr_of(&id, port)), base + i);
                    let op = Operation::Write(Box::new(w));
                    let mut c = NameClient::new(op, &[t], config, &mut rng, Instant::now());
                    match &drive(&sock, &mut c).reports[0].outcome {
                        Some(Outcome::Accepted { timestamp_ms }) => {
                            assert_eq!(*timestamp_ms, base + i);
                            last.insert(name.to_string(), base + i);
                            acked.fetch_add(1, Ordering::SeqCst);
                            silent = 0;
                        }
                        Some(Outcome::NoAnswer) => {
                            silent += 1;
                            if silent == 3 {
                                break; // the server is dead
                            }
                        }
                        other => panic!("writer {k}, write {i}: {other:?}"),
                    }
                }
                last
            })
        })
        .collect();
    // Kill the server in the middle of the burst.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 200 {
        assert!(
            Instant::now() < deadline,
            "fewer than 200 writes acknowledged in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let burst_time = started.elapsed();
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let mut last = BTreeMap::new();
    for w in writers {
        last.extend(w.join().unwrap());
    }
    let total = acked.load(Ordering::SeqCst);
    eprintln!(
        "{total} writes acknowledged before SIGKILL (200 in {burst_time:?}: {:.0} durable writes/s)",
        200.0 / burst_time.as_secs_f64()
    );
    assert!(total >= 200);

    // Restart on the same database: every acknowledged write is there (or a newer one
    // that was stored but whose acknowledgement was lost in the kill).
    let server = start(&db, &open);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = Target {
        server: server.addr,
        local: sock.local_addr().unwrap(),
    };
    let mut rng = Rng::seed_from_u64(2);
    // How many distinct names were acknowledged depends on the machine's speed (a loaded
    // machine syncs slowly); every one of them is checked.
    assert!(!last.is_empty() && last.len() <= 4 * NAMES_PER_WRITER as usize);
    for (name, ts) in &last {
        let op = Operation::Resolve(Name::parse(name).unwrap());
        let mut c = NameClient::new(op, &[t], ClientConfig::default(), &mut rng, Instant::now());
        let done = drive(&sock, &mut c);
        let rec = done
            .record()
            .unwrap_or_else(|| panic!("{name} lost: {done:?}"));
        assert!(
            rec.timestamp_ms >= *ts,
            "{name}: acknowledged {ts}, found {}",
            rec.timestamp_ms
        );
        assert!(
            rec.timestamp_ms <= *ts + 50,
            "{name}: a write newer than the burst?"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The node's side: `NameKeeper` registers its names on start and again at once when the
/// address changes; `resolve` (what `connect NAME` uses) finds the new address.
#[test]
fn name_keeper_registers_and_follows_address_changes() {
    use p2pd_core::names::{RegistrarConfig, RegistrarEvent};
    use p2pd_tokio::Tokio;
    use p2pd_tokio::names::{NameKeeper, ResolveError, resolve};

    let dir = temp_dir("keeper");
    let server = start(&dir.join("names.redb"), &["--rate-burst", "10000"]);
    let servers = [server.addr];
    let id = Identity::generate(&mut Rng::seed_from_u64(9));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rt = Tokio;
        let names = vec![
            Name::parse("keeper-one").unwrap(),
            Name::parse("keeper-two").unwrap(),
        ];
        let mut keeper = NameKeeper::new(
            &rt,
            id.clone(),
            addr_of(&id, 1),
            &servers,
            names.clone(),
            RegistrarConfig::default(),
            Rng::seed_from_u64(1),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut registered = std::collections::BTreeSet::new();
        while registered.len() < 2 {
            match keeper.next_event(&rt, Some(deadline)).await.unwrap() {
                Some(RegistrarEvent::Registered { name, accepted, .. }) => {
                    assert_eq!(accepted, servers);
                    registered.insert(name);
                }
                other => panic!("{other:?}"),
            }
        }
        let mut rng = Rng::seed_from_u64(3);
        assert_eq!(
            resolve(&rt, &names[0], &servers, &mut rng).await.unwrap(),
            addr_of(&id, 1)
        );

        keeper.set_address(&rt, addr_of(&id, 2));
        let mut again = 0;
        while again < 2 {
            match keeper.next_event(&rt, Some(deadline)).await.unwrap() {
                Some(RegistrarEvent::Registered { .. }) => again += 1,
                other => panic!("{other:?}"),
            }
        }
        for n in &names {
            assert_eq!(
                resolve(&rt, n, &servers, &mut rng).await.unwrap(),
                addr_of(&id, 2)
            );
        }
        // The same, as a spawned task fed by a channel of address changes.
        let keeper = NameKeeper::new(
            &rt,
            id.clone(),
            addr_of(&id, 3),
            &servers,
            vec![names[0].clone()],
            RegistrarConfig::default(),
            Rng::seed_from_u64(4),
        )
        .unwrap();
        let (updates, rx) = async_channel::unbounded();
        let (events_tx, events) = async_channel::unbounded();
        let task = tokio::spawn(async move {
            keeper
                .run(&Tokio, rx, move |e| {
                    let _ = events_tx.try_send(e);
                })
                .await
        });
        let next = || async {
            tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .expect("a registration within 20 s")
                .unwrap()
        };
        assert!(matches!(next().await, RegistrarEvent::Registered { .. }));
        assert_eq!(
            resolve(&rt, &names[0], &servers, &mut rng).await.unwrap(),
            addr_of(&id, 3)
        );
        updates.send(addr_of(&id, 4)).await.unwrap();
        assert!(matches!(next().await, RegistrarEvent::Registered { .. }));
        assert_eq!(
            resolve(&rt, &names[0], &servers, &mut rng).await.unwrap(),
            addr_of(&id, 4)
        );
        drop(updates); // closing the channel ends the task
        task.await.unwrap().unwrap();

        let missing = Name::parse("nobody-here").unwrap();
        assert!(matches!(
            resolve(&rt, &missing, &servers, &mut rng).await,
            Err(ResolveError::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&rt, &missing, &[], &mut rng).await,
            Err(ResolveError::NoServers)
        ));
    });
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Raw datagrams to the real server: junk gets no answer, a malformed request with a
/// valid cookie is refused as malformed, a replayed older write is refused, and the
/// server keeps serving.
#[test]
fn real_server_refuses_replays_and_malformed_requests() {
    use p2pd_core::names::Refusal;
    use p2pd_core::names::wire::{Request, RequestBody, Response, ResponseBody};

    let dir = temp_dir("raw");
    let server = start(&dir.join("names.redb"), &["--rate-burst", "10000"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 8192];
    let mut ask = |bytes: &[u8]| -> Option<Response> {
        sock.send_to(bytes, server.addr).unwrap();
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        Some(Response::parse(&buf[..n]).unwrap())
    };
    // A request without a cookie gets one.
    let probe = Request {
        id: 1,
        cookie: None,
        body: RequestBody::Resolve(Name::parse("abc").unwrap()),
    };
    let Some(Response {
        id: 1,
        body: ResponseBody::Cookie(cookie),
    }) = ask(&probe.to_bytes())
    else {
        panic!("no cookie");
    };
    // A valid header and cookie, then junk.
    let mut bad = Request {
        id: 2,
        cookie: Some(cookie),
        ..probe.clone()
    }
    .to_bytes();
    bad.truncate(28);
    bad.extend_from_slice(b"\x07not a name request");
    assert_eq!(
        ask(&bad).unwrap().body,
        ResponseBody::Refused(Refusal::Malformed)
    );

    let id = Identity::generate(&mut Rng::seed_from_u64(11));
    let t = now_ms();
    let write = |i: u64, port: u16| Request {
        id: 10 + i,
        cookie: Some(cookie),
        body: RequestBody::Write(Box::new(SignedWrite::sign(
            &id,
            Name::parse("replayed").unwrap(),
            Some(addr_of(&id, port)),
            t + i,
        ))),
    };
    let old = write(0, 1).to_bytes();
    assert_eq!(
        ask(&old).unwrap().body,
        ResponseBody::Accepted { timestamp_ms: t }
    );
    assert_eq!(
        ask(&write(1, 2).to_bytes()).unwrap().body,
        ResponseBody::Accepted {
            timestamp_ms: t + 1
        }
    );
    assert_eq!(
        ask(&old).unwrap().body,
        ResponseBody::Refused(Refusal::Stale { stored_ms: t + 1 })
    );

    // Junk: no answer (the server is silent to what is not its protocol) ...
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut ask2 = |bytes: &[u8]| -> Option<Vec<u8>> {
        sock.send_to(bytes, server.addr).unwrap();
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    };
    assert_eq!(ask2(b"\x00\x01 definitely not a name request"), None);
    // ... and it still answers afterwards, with the newer record.
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let resolve = Request {
        id: 99,
        cookie: Some(cookie),
        body: RequestBody::Resolve(Name::parse("replayed").unwrap()),
    };
    sock.send_to(&resolve.to_bytes(), server.addr).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let Response {
        body: ResponseBody::Found(rec),
        ..
    } = Response::parse(&buf[..n]).unwrap()
    else {
        panic!("not found");
    };
    assert_eq!(rec.timestamp_ms, t + 1);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
