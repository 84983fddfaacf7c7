//! MQTT and signaling against real mosquitto brokers on 127.0.0.1, started by the test.
//! Without mosquitto the tests print why and pass, unless `P2PD_LAB_REQUIRED=1`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2pd_core::addr::{Broker, Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::mqtt::{ClientConfig, MqttEvent, QoS};
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::rng::Rng;
use p2pd_core::signal::{SignalError, SignalEvent, SignalerConfig};
use p2pd_runtime::mqtt::{MqttHandle, SignalingHandle, spawn_mqtt, spawn_signaler};
use p2pd_tokio::Tokio;

/// A mosquitto on a free loopback port; killed on drop.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Mosquitto {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a broker, or says why it cannot (`None`: skip, unless the lab is required).
fn mosquitto(tag: &str) -> Option<Mosquitto> {
    let found = Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("P2PD_LAB_REQUIRED").is_none_or(|v| v != "1"),
            "mosquitto is not installed and P2PD_LAB_REQUIRED=1: apt-get install mosquitto"
        );
        eprintln!("skipping: mosquitto is not installed (apt-get install mosquitto)");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("p2pd-mqtt-{}-{tag}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = Mosquitto {
        child,
        addr,
        _dir: TempDir(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {addr} within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(m)
}

fn broker(m: &Mosquitto) -> Broker {
    Broker::Ip(m.addr)
}

fn fast(config: &mut ClientConfig) {
    config.keep_alive = Duration::from_secs(1);
    config.ping_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(2);
    config.backoff_min = Duration::from_millis(100);
    config.backoff_max = Duration::from_secs(1);
}

/// The first item `next` yields that `f` accepts, within 10 s.
async fn wait_for<E, Fut>(
    what: &str,
    mut next: impl FnMut() -> Fut,
    mut f: impl FnMut(&E) -> bool,
) -> E
where
    Fut: std::future::Future<Output = Option<E>>,
{
    let fut = async {
        loop {
            let e = next().await.expect("the machine stopped");
            if f(&e) {
                return e;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn wait_mqtt(h: &MqttHandle, what: &str, f: impl FnMut(&MqttEvent) -> bool) -> MqttEvent {
    wait_for(what, || h.next_event(), f).await
}

async fn wait_signal(
    h: &SignalingHandle,
    what: &str,
    f: impl FnMut(&SignalEvent) -> bool,
) -> SignalEvent {
    wait_for(what, || h.next_event(), f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_client_connects_pings_and_moves_to_a_second_broker() {
    let (Some(mut a), Some(b)) = (mosquitto("a"), mosquitto("b")) else {
        return;
    };
    let rt = Tokio;
    let mut config = ClientConfig::new("p2pd-test-listener", vec![broker(&a), broker(&b)]);
    config.subscriptions.push("p2pd/1/test".into());
    fast(&mut config);
    let listener = spawn_mqtt(&rt, config, Rng::seed_from_u64(1));
    wait_mqtt(&listener, "connect to A", |e| {
        *e == MqttEvent::Connected(broker(&a))
    })
    .await;
    wait_mqtt(&listener, "SUBACK", |e| {
        matches!(
            e,
            MqttEvent::Subscribed {
                granted: Some(1),
                ..
            }
        )
    })
    .await;

    let mut config = ClientConfig::new("p2pd-test-sender", vec![broker(&a)]);
    fast(&mut config);
    let sender = spawn_mqtt(&rt, config, Rng::seed_from_u64(2));
    wait_mqtt(&sender, "sender connect", |e| {
        matches!(e, MqttEvent::Connected(_))
    })
    .await;
    let id = sender
        .publish("p2pd/1/test", b"hello", QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_mqtt(&sender, "PUBACK", |e| {
        *e == MqttEvent::Delivered(id.unwrap())
    })
    .await;
    let got = wait_mqtt(&listener, "message", |e| {
        matches!(e, MqttEvent::Message { .. })
    })
    .await;
    assert_eq!(
        got,
        MqttEvent::Message {
            topic: "p2pd/1/test".into(),
            payload: b"hello".to_vec()
        }
    );

    // Keep-alive: a PINGREQ goes out after 1 s idle and mosquitto answers.
    wait_mqtt(&listener, "PINGRESP", |e| matches!(e, MqttEvent::Pong(_))).await;

    // Broker A dies: the listener notices, backs off, and lands on B, subscribed again.
    let killed = Instant::now();
    a.kill();
    wait_mqtt(&listener, "disconnect", |e| {
        matches!(e, MqttEvent::Disconnected { .. })
    })
    .await;
    wait_mqtt(&listener, "connect to B", |e| {
        *e == MqttEvent::Connected(broker(&b))
    })
    .await;
    wait_mqtt(&listener, "SUBACK on B", |e| {
        matches!(e, MqttEvent::Subscribed { .. })
    })
    .await;
    eprintln!("moved to the second broker in {:?}", killed.elapsed());
    let mut config = ClientConfig::new("p2pd-test-sender-b", vec![broker(&b)]);
    fast(&mut config);
    let sender_b = spawn_mqtt(&rt, config, Rng::seed_from_u64(3));
    wait_mqtt(&sender_b, "sender connect to B", |e| {
        matches!(e, MqttEvent::Connected(_))
    })
    .await;
    sender_b
        .publish("p2pd/1/test", b"again", QoS::AtMostOnce)
        .await
        .unwrap();
    let got = wait_mqtt(&listener, "message via B", |e| {
        matches!(e, MqttEvent::Message { .. })
    })
    .await;
    assert!(matches!(got, MqttEvent::Message { payload, .. } if payload == b"again"));
}

fn address(id: &Identity, brokers: Vec<Broker>) -> NodeAddr {
    let route = Route {
        external: "127.0.0.1".parse().unwrap(),
        internal: "127.0.0.1".parse().unwrap(),
        port: 40000,
        nat: NatType::OpenInternet,
        delta: Delta {
            kind: DeltaKind::Equal,
            value: 0,
        },
    };
    NodeAddr::new(
        id.public(),
        brokers,
        vec![Interface {
            v4: Some(route),
            v6: None,
        }],
    )
    .unwrap()
}

fn signaler_config(brokers: Vec<Broker>) -> SignalerConfig {
    let mut c = SignalerConfig::new(brokers);
    fast(&mut c.mqtt);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_through_two_brokers_dedupes_and_survives_a_dead_broker() {
    let (Some(mut a), Some(b), Some(c)) = (mosquitto("sa"), mosquitto("sb"), mosquitto("sc"))
    else {
        return;
    };
    let rt = Tokio;
    let mut rng = Rng::seed_from_u64(10);
    let (alice_id, bob_id) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    let brokers = vec![broker(&a), broker(&b), broker(&c)];
    let bob = spawn_signaler(
        &rt,
        bob_id.clone(),
        signaler_config(brokers.clone()),
        rng.fork(),
    );
    let listening = |e: &SignalEvent| matches!(e, SignalEvent::Listening(l) if l.len() == 2);
    let SignalEvent::Listening(bob_brokers) =
        wait_signal(&bob, "bob listening on 2", listening).await
    else {
        unreachable!()
    };
    assert_eq!(bob_brokers, [broker(&a), broker(&b)]);
    // Alice listens on C only for this test: her sends must open connections to A and B.
    let alice = spawn_signaler(
        &rt,
        alice_id.clone(),
        signaler_config(vec![broker(&c)]),
        rng.fork(),
    );
    wait_signal(
        &alice,
        "alice listening",
        |e| matches!(e, SignalEvent::Listening(l) if l.len() == 1),
    )
    .await;

    let bob_addr: NodeAddr = address(&bob_id, bob_brokers).to_string().parse().unwrap();
    let id = alice.send(&bob_addr, 1, b"hello bob").await.unwrap();
    let mut via = Vec::new();
    while via.len() < 2 {
        if let SignalEvent::Sent { id: sent, via: v } = wait_signal(&alice, "sent via 2", |e| {
            matches!(e, SignalEvent::Sent { .. })
        })
        .await
        {
            assert_eq!(sent, id);
            via.push(v);
        }
    }
    via.sort();
    let mut expected = [broker(&a), broker(&b)];
    expected.sort();
    assert_eq!(via, expected);
    let got = wait_signal(&bob, "received", |e| matches!(e, SignalEvent::Received(_))).await;
    let SignalEvent::Received(m) = got else {
        unreachable!()
    };
    assert_eq!(
        (m.id, m.from, m.kind, &m.body[..]),
        (id, alice_id.public(), 1, &b"hello bob"[..])
    );
    // The copy through the other broker is dropped as a duplicate.
    wait_signal(&bob, "duplicate dropped", |e| {
        *e == SignalEvent::Dropped(SignalError::Duplicate)
    })
    .await;

    // Broker A dies: bob moves that listener to C and says so; the new address works.
    a.kill();
    let moved = |e: &SignalEvent| matches!(e, SignalEvent::Listening(l) if l.len() == 2 && !l.contains(&broker(&a)));
    let SignalEvent::Listening(now_on) = wait_signal(&bob, "bob replaced A", moved).await else {
        unreachable!()
    };
    assert!(now_on.contains(&broker(&c)), "{now_on:?}");
    let bob_addr = address(&bob_id, now_on);
    let id2 = alice.send(&bob_addr, 2, b"still there?").await.unwrap();
    let got = wait_signal(&bob, "received after failover", |e| {
        matches!(e, SignalEvent::Received(_))
    })
    .await;
    assert!(matches!(got, SignalEvent::Received(m) if m.id == id2 && m.body == b"still there?"));
}
