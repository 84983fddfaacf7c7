//! Helpers shared by the daemon's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `p2pd` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

/// A running `p2pd stun-server`, killed when dropped (also when a test panics).
pub struct Server {
    child: Child,
    /// Its listening addresses; the first is the primary.
    pub addrs: Vec<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `p2pd stun-server ARGS --json` and waits (at most 20 s) for its addresses.
pub fn start_server(args: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .arg("stun-server")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut server = Server {
        child,
        addrs: vec![],
    };
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("p2pd stun-server printed no address within 20 s");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON listening line");
    server.addrs = v["listening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    server
}
