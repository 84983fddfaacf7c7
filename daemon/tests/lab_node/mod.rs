//! What the lab tests that run `p2pd` nodes inside namespaces share: the node process
//! (stdin fed from a buffer then closed, stdout hashed, stderr lines forwarded and
//! parsed), temporary homes, and deterministic payloads.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use p2pd_lab::Host;
use sha2::{Digest, Sha256};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory (a node's home, a database's folder), removed on drop. Unique
/// per call: tests run in parallel, and two nodes sharing a home would share an identity.
pub struct Home(pub PathBuf);

impl Home {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("p2pd-lab-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Home(p)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

/// A node process in a namespace.
pub struct Node {
    pub proc: Proc,
    /// Its stderr, line by line.
    pub stderr: mpsc::Receiver<String>,
    out: mpsc::Receiver<(usize, [u8; 32])>,
}

/// Runs `p2pd ARGS` in `host`'s namespace, writes `data` to its stdin then closes it;
/// stderr lines are echoed with `tag`.
pub fn spawn(host: &Host, args: Vec<String>, data: Vec<u8>, tag: &'static str) -> Node {
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

/// The next JSON line on `rx` whose `event` is `event`, within `limit`.
pub fn wait_event(rx: &mpsc::Receiver<String>, event: &str, limit: Duration) -> serde_json::Value {
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
    /// Waits (at most `limit`) for the process to exit: its status, and how many bytes
    /// it wrote on stdout with their SHA-256.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, usize, [u8; 32]) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "p2pd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (n, h) = self
            .out
            .recv_timeout(Duration::from_secs(10))
            .expect("stdout hashed");
        (status, n, h)
    }
}
