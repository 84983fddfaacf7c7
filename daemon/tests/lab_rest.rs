//! Two `p2pd daemon` processes in two LANs behind different real NATs (a port-restricted
//! cone and a symmetric random-port router, nftables in network namespaces, see `lab/`),
//! with mosquitto and coturn on the public side, driven through their REST APIs from
//! inside each LAN namespace: curl opens a connection by node address from each side,
//! sends and receives text and binary, and a `/p2p/pipe` on both ends carries 100 MB each
//! way intact (SHA-256 compared; the pipe clients are Rust sockets created inside the
//! namespaces). The pipe's throughput is printed next to raw TCP between the same two
//! namespaces through the same two routers (spliced on the public server, the TCP
//! equivalent of the relay path); the figures are in BENCHMARKS.md. Needs root, the lab's
//! packages and curl; skips otherwise (fails under `P2PD_LAB_REQUIRED=1`, as in CI).

mod rest_common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use p2pd_lab::{
    Host, Lab, MQTT_PORT, PortAlloc, RouterKind, SERVER_IP1, STUN_PORT, SymmetricPorts,
    TURN_PASSWORD, TURN_USER,
};
use rest_common::{BIN, Received, digest, payload, pump, start_pipe};

/// Bytes each way through the pipes and the raw TCP baseline.
const HUNDRED_MB: usize = 100 * 1000 * 1000;
/// Hang guard for one transfer (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(300);
/// What the lab needs besides the base tools.
const TOOLS: &[&str] = &["turnserver", "mosquitto", "iptables", "curl"];

const CONE: RouterKind = RouterKind::PortRestrictedCone(PortAlloc::Preserve);
const SYM_RANDOM: RouterKind = RouterKind::Symmetric(SymmetricPorts::Random);

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory (the daemon's home, curl's files), removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("p2pd-labrest-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon inside a LAN host's namespace, and curl beside it.
struct Daemon<'a> {
    host: &'a Host,
    api: SocketAddr,
    dir: Dir,
    _proc: Proc,
}

impl<'a> Daemon<'a> {
    fn start(host: &'a Host, tag: &str) -> Self {
        let dir = Dir::new(tag);
        let home = dir.0.join("home");
        let args: Vec<String> = vec![
            "daemon".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--json".into(),
            "--no-discovery".into(),
            "--stun".into(),
            format!("{SERVER_IP1}:{STUN_PORT}"),
            "--mqtt".into(),
            format!("{SERVER_IP1}:{MQTT_PORT}"),
            "--turn".into(),
            format!("{TURN_USER}:{TURN_PASSWORD}@{SERVER_IP1}:{STUN_PORT}"),
            "--home".into(),
            home.to_string_lossy().into_owned(),
        ];
        let mut child = host
            .ns()
            .command(BIN, &args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn p2pd daemon in the namespace");
        let stdout = child.stdout.take().unwrap();
        let proc = Proc(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon printed no address within 30 s");
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let api = v["listening"][0].as_str().unwrap().parse().unwrap();
        Daemon {
            host,
            api,
            dir,
            _proc: proc,
        }
    }

    /// Runs curl in the daemon's namespace: `GET path` (or `POST` with `upload`'s
    /// bytes); returns the status and the body.
    fn curl(&self, path: &str, upload: Option<&[u8]>) -> (u16, Vec<u8>) {
        let out_file = self.dir.0.join("body.out");
        let _ = std::fs::remove_file(&out_file);
        let url = format!("http://{}{path}", self.api);
        let mut argv: Vec<String> = vec![
            "curl".into(),
            "-sS".into(),
            "--globoff".into(),
            "-m".into(),
            "90".into(),
            "-o".into(),
            out_file.to_string_lossy().into_owned(),
            "-w".into(),
            "%{http_code}".into(),
        ];
        if let Some(body) = upload {
            let in_file = self.dir.0.join("body.in");
            std::fs::write(&in_file, body).unwrap();
            argv.extend([
                "-H".into(),
                "Content-Type: application/octet-stream".into(),
                "--data-binary".into(),
                format!("@{}", in_file.display()),
            ]);
        }
        argv.push(url);
        let out = self
            .host
            .run(&argv, Duration::from_secs(100))
            .expect("run curl");
        assert!(out.success(), "curl {path}: {}", out.combined());
        let status = out.stdout.trim().parse().expect("curl's status code");
        (status, std::fs::read(&out_file).unwrap_or_default())
    }

    /// `GET path`, which must succeed with JSON.
    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.curl(path, None);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("a JSON body")
    }

    /// Waits (bounded) until the node runs; returns its address.
    fn node_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.json("/version")["node"].as_str().unwrap() {
                "running" => break,
                "failed" => panic!(
                    "the node failed: {}",
                    String::from_utf8_lossy(&self.curl("/p2p/addr", None).1)
                ),
                _ => {
                    assert!(Instant::now() < deadline, "node still starting after 60 s");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        self.json("/p2p/addr")["addr"].as_str().unwrap().to_string()
    }

    /// Collects `len` bytes by repeated text or binary receives.
    fn gather(&self, name: &str, len: usize, text: bool) -> Vec<u8> {
        let mut got = Vec::new();
        // Bounded: every pass takes at least one byte or fails on the timeout.
        while got.len() < len {
            if text {
                let v = self.json(&format!("/p2p/recv/{name}?timeout=20"));
                got.extend_from_slice(v["data"].as_str().unwrap().as_bytes());
            } else {
                let (status, body) = self.curl(&format!("/p2p/binary/{name}?timeout=20"), None);
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                got.extend_from_slice(&body);
            }
        }
        assert_eq!(got.len(), len);
        got
    }

    /// A TCP stream to the API, made inside the namespace.
    fn connect(&self) -> TcpStream {
        let api = self.api;
        self.host
            .ns()
            .enter(move || TcpStream::connect(api))
            .expect("enter the namespace")
            .expect("connect to the daemon")
    }
}

/// Opens `name` from `from` to `to`'s address, checks both ends, exchanges text and
/// binary both ways. Returns (strategy, name on `to`).
fn open_and_talk(from: &Daemon, to: &Daemon, to_addr: &str, name: &str) -> (String, String) {
    let opened = from.json(&format!("/p2p/open/{name}/{to_addr}"));
    let strategy = opened["strategy"].as_str().unwrap().to_string();
    eprintln!("opened {name}: {opened}");
    assert_eq!(opened["direction"], "outgoing");
    let inc = to.json("/p2p/accept?timeout=30");
    let theirs = inc["name"].as_str().unwrap().to_string();
    assert_eq!(inc["strategy"], strategy.as_str());
    assert_eq!(inc["direction"], "incoming");

    let hello = format!("hello from {name}");
    from.json(&format!("/p2p/send/{name}/{}", hello.replace(' ', "%20")));
    assert_eq!(to.gather(&theirs, hello.len(), true), hello.as_bytes());
    let reply = "grüße zurück";
    to.json(&format!("/p2p/send/{theirs}/gr%C3%BC%C3%9Fe%20zur%C3%BCck"));
    assert_eq!(from.gather(name, reply.len(), true), reply.as_bytes());

    let up = payload(11, 512 * 1024);
    let (status, body) = from.curl(&format!("/p2p/binary/{name}"), Some(&up));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        to.gather(&theirs, up.len(), false) == up,
        "binary corrupted"
    );
    let mut down: Vec<u8> = (0..=255u8).collect();
    down.extend(payload(12, 300_000));
    let (status, body) = to.curl(&format!("/p2p/binary/{theirs}"), Some(&down));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        from.gather(name, down.len(), false) == down,
        "binary corrupted"
    );

    let c = from.json(&format!("/p2p/con/{name}"));
    assert_eq!(c["bytes_sent"], hello.len() + up.len(), "{c}");
    assert_eq!(c["bytes_received"], reply.len() + down.len(), "{c}");
    (strategy, theirs)
}

/// Moves `len` bytes each way at once between pipes on `a` (connection `na`) and `b`
/// (connection `nb`); checks both; returns the seconds each side took to receive.
fn pipe_both_ways(a: &Daemon, na: &str, b: &Daemon, nb: &str, len: usize) -> (f64, f64) {
    let (to_b, to_a) = (payload(21, len), payload(22, len));
    let (want_b, want_a) = (digest(&to_b), digest(&to_a));
    let mut sa = a.connect();
    let ea = start_pipe(&mut sa, na);
    let mut sb = b.connect();
    let eb = start_pipe(&mut sb, nb);
    let ta = std::thread::spawn(move || pump(sa, ea, to_b, LIMIT));
    let tb = std::thread::spawn(move || pump(sb, eb, to_a, LIMIT));
    let (got_a, took_a) = ta.join().unwrap();
    let (got_b, took_b) = tb.join().unwrap();
    check(got_b, want_b, "b's pipe");
    check(got_a, want_a, "a's pipe");
    (took_a.as_secs_f64(), took_b.as_secs_f64())
}

fn check(got: Received, want: Received, what: &str) {
    assert_eq!(got.0, want.0, "{what} received a different length");
    assert!(got.1 == want.1, "{what}: SHA-256 differs");
}

/// Raw TCP between the two LAN namespaces through both routers: each connects out to
/// the public server, where the two connections are spliced (kernel TCP all the way,
/// no p2pd). Moves `len` bytes each way at once; returns each side's receive seconds.
fn raw_tcp_both_ways(lab: &Lab, len: usize) -> (f64, f64) {
    let (l0, l1) = lab
        .server()
        .enter(|| {
            (
                TcpListener::bind((SERVER_IP1, 0)).unwrap(),
                TcpListener::bind((SERVER_IP1, 0)).unwrap(),
            )
        })
        .expect("enter the server namespace");
    let (p0, p1) = (l0.local_addr().unwrap(), l1.local_addr().unwrap());
    let splice = std::thread::spawn(move || {
        let (a, _) = l0.accept().unwrap();
        let (b, _) = l1.accept().unwrap();
        let copy = |mut from: TcpStream, mut to: TcpStream| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let t1 = copy(a.try_clone().unwrap(), b.try_clone().unwrap());
        let t2 = copy(b, a);
        t1.join().unwrap();
        t2.join().unwrap();
    });
    let connect = |h: &Host, to: SocketAddr| {
        h.ns()
            .enter(move || TcpStream::connect(to))
            .expect("enter")
            .expect("connect to the splice")
    };
    let s0 = connect(lab.host(0), p0);
    let s1 = connect(lab.host(1), p1);
    let (to_1, to_0) = (payload(31, len), payload(32, len));
    let (want_1, want_0) = (digest(&to_1), digest(&to_0));
    let t0 = std::thread::spawn(move || pump(s0, Vec::new(), to_1, LIMIT));
    let t1 = std::thread::spawn(move || pump(s1, Vec::new(), to_0, LIMIT));
    let (got_0, took_0) = t0.join().unwrap();
    let (got_1, took_1) = t1.join().unwrap();
    splice.join().unwrap();
    check(got_1, want_1, "raw TCP, host 1");
    check(got_0, want_0, "raw TCP, host 0");
    (took_0.as_secs_f64(), took_1.as_secs_f64())
}

fn mbit(len: usize, secs: f64) -> f64 {
    len as f64 * 8.0 / secs / 1e6
}

#[test]
fn rest_between_cone_and_symmetric_lans() {
    p2pd_lab::require!(TOOLS);
    let lab = Lab::two_lans(CONE, SYM_RANDOM).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let d0 = Daemon::start(lab.host(0), "cone");
    let d1 = Daemon::start(lab.host(1), "sym");
    let addr0 = d0.node_addr();
    let addr1 = d1.node_addr();

    // From each LAN, by address: cone → symmetric, then symmetric → cone.
    let (s01, in1) = open_and_talk(&d0, &d1, &addr1, "to-sym");
    assert_eq!(s01, "udp_punch", "cone → symmetric random punches UDP");
    let (s10, in0) = open_and_talk(&d1, &d0, &addr0, "to-cone");
    assert!(
        ["udp_punch", "relay"].contains(&s10.as_str()),
        "symmetric → cone: {s10}"
    );

    // 100 MB each way through a pipe on both ends of the first connection.
    let (ta, tb) = pipe_both_ways(&d0, "to-sym", &d1, &in1, HUNDRED_MB);
    let c = d0.json("/p2p/con/to-sym");
    assert_eq!(c["piped"], false, "{c}");
    assert!(
        c["bytes_sent"].as_u64().unwrap() >= HUNDRED_MB as u64,
        "{c}"
    );
    assert!(
        c["bytes_received"].as_u64().unwrap() >= HUNDRED_MB as u64,
        "{c}"
    );
    let (r0, r1) = raw_tcp_both_ways(&lab, HUNDRED_MB);
    println!(
        "REST pipe over {s01}: 100 MB each way; host 0 received in {ta:.2} s ({:.1} Mbit/s), host 1 in {tb:.2} s ({:.1} Mbit/s)",
        mbit(HUNDRED_MB, ta),
        mbit(HUNDRED_MB, tb)
    );
    println!(
        "raw TCP through both routers (spliced on the server): host 0 received in {r0:.2} s ({:.1} Mbit/s), host 1 in {r1:.2} s ({:.1} Mbit/s)",
        mbit(HUNDRED_MB, r0),
        mbit(HUNDRED_MB, r1)
    );
    println!("second connection (symmetric → cone) used {s10}");

    for (d, name) in [
        (&d0, "to-sym"),
        (&d1, in1.as_str()),
        (&d1, "to-cone"),
        (&d0, in0.as_str()),
    ] {
        d.json(&format!("/p2p/close/{name}"));
    }
    assert_eq!(d0.json("/p2p/cons")["cons"], serde_json::json!([]));
    assert_eq!(d1.json("/p2p/cons")["cons"], serde_json::json!([]));
}
