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
