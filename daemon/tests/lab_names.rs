//! Names behind real Linux NATs (network namespaces + nftables, see `lab/`): a
//! `p2pd name-server`, mosquitto and coturn on the public side; two nodes in two LANs,
//! each behind its own NAT. One runs `p2pd listen --name NAME` (it registers the name
//! from behind its NAT), the other `p2pd connect NAME` (it resolves the name on the
//! public server and connects to the address it got); bytes move both ways intact
//! (SHA-256 compared). An unknown name fails, saying so. Needs root and the lab's
//! packages; skips otherwise (fails under `P2PD_LAB_REQUIRED=1`, as in CI).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use p2pd_lab::{
    Host, Lab, MQTT_PORT, PortAlloc, RouterKind, SERVER_IP1, STUN_PORT, TURN_PASSWORD, TURN_USER,
};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");
/// Bytes each way.
const LEN: usize = 2 * 1024 * 1024;
/// Hang guard for one whole exchange (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(120);
/// The name server's port on the public side.
const NAME_PORT: u16 = 5300;

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("p2pd-labnames-{}-{tag}-{n}", std::process::id()));
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

fn name_server_addr() -> SocketAddr {
    SocketAddr::new(SERVER_IP1.into(), NAME_PORT)
}

/// Starts `p2pd name-server` in the lab's server namespace and waits for its line.
fn name_server(lab: &Lab, db: &Dir) -> Proc {
    let args = vec![
        "name-server".to_string(),
        "--listen".into(),
        name_server_addr().to_string(),
        "--db".into(),
        db.0.join("names.redb").to_string_lossy().into_owned(),
        "--json".into(),
    ];
    let mut child = lab
        .server()
        .command(BIN, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd name-server in the server namespace");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("name-server JSON line");
    assert_eq!(v["listening"][0], name_server_addr().to_string());
    Proc(child)
}

fn node_flags(home: &Dir) -> Vec<String> {
    vec![
        "--stun".into(),
        format!("{SERVER_IP1}:{STUN_PORT}"),
        "--mqtt".into(),
        format!("{SERVER_IP1}:{MQTT_PORT}"),
        "--turn".into(),
        format!("{TURN_USER}:{TURN_PASSWORD}@{SERVER_IP1}:{STUN_PORT}"),
        "--name-server".into(),
        name_server_addr().to_string(),
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
        "--json".into(),
    ]
}

/// Deterministic bytes: a seeded xorshift stream.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A node process in a namespace: stdin fed from a buffer then closed, stdout hashed,
/// stderr lines forwarded.
struct Node {
    proc: Proc,
    stderr: mpsc::Receiver<String>,
    out: mpsc::Receiver<(usize, [u8; 32])>,
}

fn spawn(host: &Host, args: Vec<String>, data: Vec<u8>, tag: &'static str) -> Node {
    let mut child = host
        .ns()
        .command(BIN, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pd in the namespace");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut stdout = child.stdout.take().unwrap();
    let (otx, out) = mpsc::channel();
    std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut n = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
            h.update(&buf[..k]);
        }
        let _ = otx.send((n, h.finalize().into()));
    });
    let stderr = child.stderr.take().unwrap();
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("[{tag}] {line}");
            if etx.send(line).is_err() {
                return;
            }
        }
    });
    Node {
        proc: Proc(child),
        stderr: erx,
        out,
    }
}

fn wait_event(rx: &mpsc::Receiver<String>, event: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {event} line within {limit:?}"));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["event"] == event
        {
            return v;
        }
    }
}

impl Node {
    fn finish(mut self) -> (std::process::ExitStatus, usize, [u8; 32]) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "p2pd did not exit in {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (n, h) = self
            .out
            .recv_timeout(Duration::from_secs(10))
            .expect("stdout hashed");
        (status, n, h)
    }
}

/// Host 1 listens as `name`, host 0 connects to `name`; returns the strategy used.
fn by_name(lab: &Lab, name: &str) -> String {
    let (hl, hc) = (Dir::new("listen"), Dir::new("connect"));
    let down = payload(7, LEN);
    let up = payload(8, LEN);
    let (want_down, want_up): ([u8; 32], [u8; 32]) =
        (Sha256::digest(&down).into(), Sha256::digest(&up).into());
    let mut args = vec!["listen".to_string(), "--name".into(), name.into()];
    args.extend(node_flags(&hl));
    let l = spawn(lab.host(1), args, down, "listen");
    let v = wait_event(&l.stderr, "listening", Duration::from_secs(30));
    let node_id = v["node_id"].as_str().unwrap().to_string();
    let r = wait_event(&l.stderr, "name_registered", Duration::from_secs(30));
    assert_eq!(r["accepted"][0], name_server_addr().to_string());

    let mut args = vec!["connect".to_string(), name.into()];
    args.extend(node_flags(&hc));
    let c = spawn(lab.host(0), args, up, "connect");
    let rv = wait_event(&c.stderr, "resolved", Duration::from_secs(30));
    assert_eq!(
        rv["node_id"],
        node_id.as_str(),
        "the name gave the listener"
    );
    eprintln!(
        "name resolved in {} ms from behind the NAT",
        rv["resolve_ms"]
    );
    let cv = wait_event(&c.stderr, "connected", LIMIT);
    eprintln!(
        "connect took {} ms (node up to connection up)",
        cv["connect_ms"]
    );
    let lv = wait_event(&l.stderr, "connected", LIMIT);
    assert_eq!(cv["strategy"], lv["strategy"]);
    assert_eq!(cv["peer"], node_id.as_str());
    let (cs, cn, ch) = c.finish();
    let (ls, ln, lh) = l.finish();
    assert!(cs.success(), "connect exited with {cs}");
    assert!(ls.success(), "listen exited with {ls}");
    assert_eq!((cn, ln), (LEN, LEN), "bytes received");
    assert!(ch == want_down, "connector's SHA-256 differs");
    assert!(lh == want_up, "listener's SHA-256 differs");
    cv["strategy"].as_str().unwrap().to_string()
}

const CONE: RouterKind = RouterKind::PortRestrictedCone(PortAlloc::Preserve);

#[test]
fn natted_nodes_connect_by_name() {
    p2pd_lab::require!();
    let lab = Lab::two_lans(CONE, CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let db = Dir::new("db");
    let _ns = name_server(&lab, &db);
    let strategy = by_name(&lab, "lab-alice");
    eprintln!("connected by name using {strategy}");
    assert_eq!(strategy, "tcp_punch", "port-restricted cone on both sides");

    // An unknown name: the public server answers, and connect says so.
    let home = Dir::new("unknown");
    let mut args = vec!["connect".to_string(), "lab-nobody".into()];
    args.extend(node_flags(&home));
    let out = lab
        .host(0)
        .ns()
        .command(BIN, &args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no name server knows 'lab-nobody'"), "{err}");
}
