//! Loopback servers for the node tests: mosquitto, `p2pd stun-server` (RFC 5780 on
//! 127.0.0.1 and 127.0.0.2) and `p2pd turn-server`, all killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, BIN, start_server};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        // Unique per call: tests run in parallel, and two nodes sharing a home would
        // share an identity.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "p2pd-node-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mosquitto, STUN and TURN servers on loopback.
pub struct Servers {
    _mosquitto: Proc,
    _dir: TempDir,
    /// The broker.
    pub mqtt: SocketAddr,
    _stun: common::Server,
    /// The STUN server's primary address.
    pub stun: SocketAddr,
    _turn: Proc,
    /// The TURN server (user `alice`, password `secret`).
    pub turn: SocketAddr,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the servers, or says why it cannot (`None`: skip, unless the lab is required).
pub fn servers(tag: &str) -> Option<Servers> {
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
    let dir = TempDir::new(&format!("servers-{tag}"));
    let port = free_port();
    let conf = dir.0.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let mosquitto = Proc(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mqtt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(mqtt).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {mqtt}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stun_server = start_server(&["--primary", "127.0.0.1:0", "--alternate", "127.0.0.2"]);
    let stun = stun_server.addrs[0];
    let mut turn = Command::new(BIN)
        .args([
            "turn-server",
            "--listen",
            "127.0.0.1:0",
            "--realm",
            "p2pd.test",
            "--user",
            "alice:secret",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(turn.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("turn-server JSON line");
    let turn_addr: SocketAddr = v["listening"].as_str().unwrap().parse().unwrap();
    Some(Servers {
        _mosquitto: mosquitto,
        _dir: dir,
        mqtt,
        _stun: stun_server,
        stun,
        _turn: Proc(turn),
        turn: turn_addr,
    })
}

/// stderr lines of a child, read on a thread (echoed with `tag`).
pub fn stderr_lines(
    stderr: std::process::ChildStderr,
    tag: &'static str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("[{tag}] {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first JSON line with `"event": event`, within `limit`.
pub fn wait_event(
    rx: &std::sync::mpsc::Receiver<String>,
    event: &str,
    limit: Duration,
) -> serde_json::Value {
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

/// Deterministic bytes: a seeded xorshift stream.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
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
