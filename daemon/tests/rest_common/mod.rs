//! Helpers for the REST tests: run `p2pd daemon`, send raw HTTP requests, read the
//! daemon's memory and open file count.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `p2pd` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

/// A running `p2pd daemon`, killed when dropped (also when a test panics).
pub struct Daemon {
    pub child: Child,
    /// Its listening addresses.
    pub addrs: Vec<SocketAddr>,
    /// Its home directory (removed on drop).
    pub home: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl Daemon {
    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A fresh, empty P2PD_HOME for one test.
pub fn temp_home(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pd-rest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `p2pd daemon --listen 127.0.0.1:0 --json ARGS` with `config` (if any) as its
/// config file in a fresh home, and waits (at most 20 s) for its addresses.
pub fn start(tag: &str, config: Option<&str>, args: &[&str]) -> Daemon {
    let home = temp_home(tag);
    if let Some(c) = config {
        std::fs::write(home.join("config.toml"), c).unwrap();
    }
    let mut child = Command::new(BIN)
        .args(["daemon", "--listen", "127.0.0.1:0", "--json"])
        .args(args)
        .env("P2PD_HOME", &home)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd daemon");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut d = Daemon {
        child,
        addrs: vec![],
        home,
    };
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("p2pd daemon printed no address within 20 s");
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("daemon's first line is not JSON ({e}): {line:?}"));
    d.addrs = v["listening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    d
}

/// A response: status, head, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` field.
    pub fn code(&self) -> u64 {
        self.json()["error"].as_u64().unwrap()
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Parses a whole response; `None` if there is no complete head.
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.get(9..12)?.parse().ok()?;
    Some(Resp {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    })
}

/// Sends `request` and reads the response until the daemon closes (at most 15 s).
/// Write errors are ignored (the daemon may answer before reading a whole body).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    read_all(&mut s, request)
}

/// Reads until end of stream and parses the response.
pub fn read_all(s: &mut TcpStream, request: &[u8]) -> Resp {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => panic!(
                "reading the response to {:?}: {e} (got {:?})",
                String::from_utf8_lossy(&request[..request.len().min(200)]),
                String::from_utf8_lossy(&out)
            ),
        }
    }
    parse_response(&out).unwrap_or_else(|| {
        panic!(
            "no response to {:?}: got {:?}",
            String::from_utf8_lossy(&request[..request.len().min(200)]),
            String::from_utf8_lossy(&out)
        )
    })
}

/// `GET path` with a loopback Host and any extra header lines.
pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:12333\r\n{extra}\r\n").as_bytes(),
    )
}

/// The daemon's resident memory, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// How many file descriptors the daemon has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sends `request` on an open stream (e.g. one made inside a lab namespace) and reads
/// the response until the daemon closes.
pub fn raw_on(mut s: TcpStream, request: &[u8]) -> Resp {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    read_all(&mut s, request)
}

/// `POST path` with `body` as `application/octet-stream`.
pub fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Starts `/p2p/pipe/{name}` on `s`: sends the request, reads the response head (which
/// must be 200) and returns the bytes of the relay that came with it.
pub fn start_pipe(s: &mut TcpStream, name: &str) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /p2p/pipe/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: the head is small and the read timeout ends a silent daemon.
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        assert!(got.len() < 16 * 1024, "pipe response head too long");
        let n = s
            .read(&mut chunk)
            .expect("reading the pipe's response head");
        assert!(n > 0, "daemon closed before the pipe's head: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "pipe refused: {head}\n{got:?}"
    );
    got[end + 4..].to_vec()
}

/// What one side of a pipe received: byte count and SHA-256.
pub type Received = (usize, [u8; 32]);

/// Relays over a started pipe: writes `send` (then shuts down writing) while reading to
/// the end of stream; returns what was read (`early` first), hashed, and how long it
/// took until the end of stream arrived (hashing runs on a thread of its own, off the
/// receive path). `limit` guards against a hang (not a timing assertion).
pub fn pump(s: TcpStream, early: Vec<u8>, send: Vec<u8>, limit: Duration) -> (Received, Duration) {
    use sha2::{Digest, Sha256};
    let started = std::time::Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&send).expect("writing into the pipe");
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut n = 0;
        for chunk in rx {
            n += chunk.len();
            h.update(&chunk);
        }
        (n, <[u8; 32]>::from(h.finalize()))
    });
    let _ = tx.send(early);
    let mut r = s;
    let mut n = 0;
    // Bounded by the stream: ends at end of stream; a silent peer hits the read timeout.
    loop {
        let mut buf = vec![0u8; 256 * 1024];
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                buf.truncate(k);
                let _ = tx.send(buf);
            }
            Err(e) => panic!("reading from the pipe after {n} bytes: {e}"),
        }
    }
    let took = started.elapsed();
    drop(tx);
    writer.join().unwrap();
    (hasher.join().unwrap(), took)
}

/// A deterministic payload: a seeded xorshift stream.
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

/// Byte count and SHA-256 of `data`.
pub fn digest(data: &[u8]) -> Received {
    use sha2::{Digest, Sha256};
    (data.len(), Sha256::digest(data).into())
}
