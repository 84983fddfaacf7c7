//! `p2pd daemon` under hostile input: 10,000 malformed or hostile requests (seeded, so
//! every run sends the same ones) each get a 4xx JSON error with the code its kind of
//! abuse deserves; slow partial requests are cut off; a connection flood is bounded; the
//! daemon stays up, its memory stays flat and it leaks no sockets.

mod rest_common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rest_common::{Daemon, Resp, get, open_fds, raw, read_all, rss_kib, start};

const TOKEN: &str = "hostile-test-token-0123456789";
/// Requests sent; `P2PD_HOSTILE_REQUESTS=N` sends more (a soak).
fn total() -> usize {
    std::env::var("P2PD_HOSTILE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize)
        .max(3000)
}
const THREADS: usize = 4;

/// xorshift64*: a small deterministic generator (the request mix is fixed by the seed).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn text(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
    fn text_len(&mut self, alphabet: &[u8], min: usize, spread: usize) -> String {
        let len = min + self.below(spread);
        self.text(alphabet, len)
    }
    fn name(&mut self) -> String {
        let len = 1 + self.below(20);
        self.text(b"abcdefghijklmnopqrstuvwxyz0123456789._-", len)
    }
}

/// One request and the error codes it may get (empty: any code with a 4xx status).
struct Case {
    kind: &'static str,
    bytes: Vec<u8>,
    code: &'static [u64],
}

const AUTH: &str = "Authorization: Bearer hostile-test-token-0123456789\r\n";

fn request(method: &str, target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut v =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:12333\r\n{AUTH}{headers}\r\n")
            .into_bytes();
    v.extend_from_slice(body);
    v
}

const NAMED: &[&str] = &[
    "/p2p/con/{}",
    "/p2p/send/{}/hello",
    "/p2p/recv/{}?timeout=0",
    "/p2p/binary/{}?timeout=0",
    "/p2p/pipe/{}",
    "/p2p/close/{}",
];

fn case(i: usize, g: &mut Gen) -> Case {
    let named = |g: &mut Gen, name: &str| g.pick(NAMED).replace("{}", name);
    match i % 16 {
        0 => {
            // Random paths: whatever they are, a 4xx.
            let len = 1 + g.below(60);
            let path = g.text(
                b"abcdefghijklmnopqrstuvwxyz/%._-~!$&'()*+,;=:@0123456789",
                len,
            );
            Case {
                kind: "random path",
                bytes: request("GET", &format!("/{path}"), "", b""),
                code: &[],
            }
        }
        1 => {
            let bad = g.pick(&[
                "%", "%g1", "%f", "%ff%fe", "%C3%28", "%E2%82", "%zz%", "a%2",
            ]);
            let target = named(g, &format!("n{bad}"));
            Case {
                kind: "bad percent-encoding",
                bytes: request("GET", &target, "", b""),
                code: &[3],
            }
        }
        2 => {
            let mut v = b"GET /p2p/con/".to_vec();
            for _ in 0..1 + g.below(8) {
                v.push(0x80 + g.below(0x80) as u8);
            }
            v.extend_from_slice(format!(" HTTP/1.1\r\nHost: localhost\r\n{AUTH}\r\n").as_bytes());
            Case {
                // Random high bytes are sometimes valid UTF-8, then not a valid name.
                kind: "raw high bytes in path",
                bytes: v,
                code: &[3, 6],
            }
        }
        3 => {
            let declared = 1024 * 1024 + 1 + g.below(1 << 30);
            let sent = if g.below(20) == 0 {
                1_200_000
            } else {
                g.below(4096)
            };
            let body = vec![b'x'; sent];
            let target = format!("/p2p/binary/{}", g.name());
            Case {
                kind: "huge body",
                bytes: request(
                    "POST",
                    &target,
                    &format!("Content-Length: {declared}\r\n"),
                    &body,
                ),
                code: &[21],
            }
        }
        4 => {
            let headers = if g.below(2) == 0 {
                format!("X-Junk: {}\r\n", "j".repeat(17_000 + g.below(30_000)))
            } else {
                (0..65 + g.below(60))
                    .map(|k| format!("X-{k}: v\r\n"))
                    .collect()
            };
            Case {
                kind: "huge head",
                bytes: request("GET", "/version", &headers, b""),
                code: &[22],
            }
        }
        5 => {
            let host = g.pick(&[
                "evil.example",
                "evil.example:12333",
                "127.0.0.1.nip.io",
                "localhost.evil.example",
                "192.0.2.7",
                "[2001:db8::1]:12333",
                "0.0.0.0",
                "[::]",
                "localhost:99999",
            ]);
            let name = g.name();
            let target = named(g, &name);
            let v = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{AUTH}\r\n").into_bytes();
            Case {
                kind: "rebinding Host",
                bytes: v,
                code: &[18],
            }
        }
        6 => {
            let h = g.pick(&[
                "Origin: http://evil.example",
                "Origin: https://evil.example:12333",
                "Origin: null",
                "Origin: http://localhost.evil.example",
                "Origin: file://",
                "Sec-Fetch-Site: cross-site",
            ]);
            let name = g.name();
            let target = named(g, &name);
            Case {
                kind: "cross-origin",
                bytes: request("GET", &target, &format!("{h}\r\n"), b""),
                code: &[19],
            }
        }
        7 => {
            let name = g.name();
            let target = named(g, &name);
            Case {
                kind: "unknown name",
                bytes: request("GET", &target, "", b""),
                code: &[4],
            }
        }
        8 => {
            let addr = match g.below(3) {
                0 => format!(
                    "p2pd1:{}",
                    g.text_len(b"abcdefghijklmnopqrstuvwxyz234567", 20, 120)
                ),
                1 => format!("p2pd{}:{}", 2 + g.below(9), g.text(b"abc", 30)),
                // Never a valid peer name (those are looked up: see names_connect_loopback).
                _ => format!(
                    "_{}",
                    g.text_len(b"abcdefghijklmnopqrstuvwxyz0189:.,-_", 1, 79)
                ),
            };
            let target = format!("/p2p/open/{}/{addr}", g.name());
            Case {
                kind: "bad node address",
                bytes: request("GET", &target, "", b""),
                code: &[7],
            }
        }
        9 => {
            let method = g.pick(&["DELETE", "PUT", "PATCH", "HEAD", "CONNECT", "TRACE", "FOO"]);
            let target = g.pick(&[
                "/version",
                "/ifs",
                "/p2p/addr",
                "/p2p/con/a",
                "/p2p/binary/a",
            ]);
            Case {
                kind: "wrong method",
                bytes: request(method, target, "", b""),
                code: &[2],
            }
        }
        10 => {
            let mut v = vec![1u8];
            for _ in 0..g.below(300) {
                v.push(g.below(256) as u8);
            }
            v.extend_from_slice(b"\r\n\r\n");
            Case {
                kind: "binary junk",
                bytes: v,
                code: &[3],
            }
        }
        11 => {
            let q = g.pick(&[
                "timeout=abc",
                "timeout=-1",
                "timeout=1e99",
                "timeout=NaN",
                "wait=1",
                "timeout=1&timeout=2",
                "a&b&c&d&e&f&g&h&i&j",
            ]);
            let target = format!("/p2p/recv/{}?{q}", g.name());
            Case {
                kind: "bad query",
                bytes: request("GET", &target, "", b""),
                code: &[9],
            }
        }
        12 => {
            let (h, code) = match g.below(4) {
                0 => ("Content-Length: abc\r\n", &[3]),
                1 => ("Content-Length: 1\r\nContent-Length: 2\r\n", &[3]),
                2 => ("Content-Length: -5\r\n", &[3]),
                _ => ("Transfer-Encoding: chunked\r\n", &[24]),
            };
            let target = format!("/p2p/binary/{}", g.name());
            Case {
                kind: "bad body framing",
                bytes: request("POST", &target, h, b"0\r\n\r\n"),
                code,
            }
        }
        13 => {
            let auth = g.pick(&[
                "",
                "Authorization: Bearer wrong-token-wrong-token\r\n",
                "Authorization: Basic YTpi\r\n",
                "Authorization: Bearer\r\n",
            ]);
            let name = g.name();
            let target = named(g, &name);
            let v = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").into_bytes();
            Case {
                kind: "no or wrong token",
                bytes: v,
                code: &[20],
            }
        }
        14 => {
            let bad = match g.below(3) {
                0 => "n".repeat(65 + g.below(100)),
                1 => format!("{}%20{}", g.name(), g.name()),
                _ => format!(
                    "{}{}",
                    g.name(),
                    g.pick(&["!", "%2F", "%C3%A9", "~", "*", "%00"])
                ),
            };
            let target = named(g, &bad);
            Case {
                kind: "bad name",
                bytes: request("GET", &target, "", b""),
                code: &[6],
            }
        }
        _ => {
            let text = g.text_len(b"abcdefghij%20", 17_000, 10_000);
            let target = format!("/p2p/send/{}/{text}", g.name());
            Case {
                kind: "oversized text",
                bytes: request("GET", &target, "", b""),
                code: &[22],
            }
        }
    }
}

#[track_caller]
fn check(c: &Case, r: &Resp) {
    let what = || {
        format!(
            "{} request {:?} got {}\n{}",
            c.kind,
            String::from_utf8_lossy(&c.bytes[..c.bytes.len().min(160)]),
            r.head,
            String::from_utf8_lossy(&r.body)
        )
    };
    assert!((400..500).contains(&r.status), "{}", what());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{}",
        what()
    );
    let j: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", what()));
    let code = j["error"].as_u64().unwrap_or(0);
    assert!(
        code > 0 && j["msg"].is_string() && j["name"].is_string(),
        "{}",
        what()
    );
    assert!(c.code.is_empty() || c.code.contains(&code), "{}", what());
}

/// Sends cases `range` from `THREADS` threads; case `i` is the same on every run.
fn fire(addr: SocketAddr, range: std::ops::Range<usize>) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let range = range.clone();
            s.spawn(move || {
                for i in range.filter(|i| i % THREADS == t) {
                    let mut g = Gen(0x9E37_79B9_7F4A_7C15
                        ^ (i as u64).wrapping_mul(0x1234_5678_9ABC_DEF1)
                        | 1);
                    let c = case(i, &mut g);
                    let r = raw(addr, &c.bytes);
                    check(&c, &r);
                }
            });
        }
    });
}

/// Slow partial requests: each trickles part of a head, and is cut off with 408.
fn slowloris(addr: SocketAddr, n: usize) {
    std::thread::scope(|s| {
        for k in 0..n {
            s.spawn(move || {
                let mut sock = TcpStream::connect(addr).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(15)))
                    .unwrap();
                let started = Instant::now();
                for b in b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                    .iter()
                    .take(5 + k % 30)
                {
                    if sock.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let r = read_all(&mut sock, b"slowloris");
                let c = Case {
                    kind: "slowloris",
                    bytes: b"partial head".to_vec(),
                    code: &[23],
                };
                check(&c, &r);
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "cut off in bounded time"
                );
            });
        }
    });
}

fn settle_fds(d: &Daemon, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = open_fds(d.pid());
        if n <= baseline + 2 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ten_thousand_hostile_requests_get_4xx_json_and_the_daemon_stays_flat() {
    let config = format!("[rest]\ntoken = \"{TOKEN}\"\n");
    let mut d = start(
        "hostile",
        Some(&config),
        &["--no-discovery", "--request-timeout-s", "1"],
    );
    let a = d.addr();
    let auth = AUTH;
    assert_eq!(get(a, "/version", auth).status, 200);
    let fds0 = open_fds(d.pid());
    let started = Instant::now();

    let total = total();
    fire(a, 0..1000);
    let rss_first = rss_kib(d.pid());
    std::thread::scope(|s| {
        s.spawn(|| slowloris(a, 40));
        fire(a, 1000..total - 1000);
    });
    fire(a, total - 1000..total);
    let rss_last = rss_kib(d.pid());
    let took = started.elapsed();

    assert!(d.alive(), "the daemon is still running");
    let v = get(a, "/version", auth);
    assert_eq!((v.status, v.json()["error"].as_u64()), (200, Some(0)));
    let fds = settle_fds(&d, fds0);
    println!(
        "{total} hostile requests + 40 slowloris in {:.1} s; VmRSS after the first 1000: {rss_first} KiB, after the last: {rss_last} KiB; fds {fds0} -> {fds}",
        took.as_secs_f64()
    );
    assert!(
        fds <= fds0 + 2,
        "sockets leaked: {fds0} open before, {fds} after"
    );
    assert!(
        rss_last <= rss_first + 4 * 1024,
        "memory grew from {rss_first} KiB to {rss_last} KiB"
    );
}

#[test]
fn a_connection_flood_is_bounded_and_recovers() {
    let d = start(
        "flood",
        None,
        &["--no-discovery", "--request-timeout-s", "2"],
    );
    let a = d.addr();
    let fds0 = open_fds(d.pid());
    // 128 idle connections take every slot; the next ones are refused at once with 429.
    let idle: Vec<TcpStream> = (0..128).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let r = get(a, "/version", "");
        assert_eq!(
            (r.status, r.json()["error"].as_u64()),
            (429, Some(25)),
            "{}",
            r.head
        );
    }
    // The idle ones are cut off by the request timeout, with a JSON 408 each.
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = read_all(&mut s, b"idle");
        assert_eq!((r.status, r.json()["error"].as_u64()), (408, Some(23)));
    }
    let r = get(a, "/version", "");
    assert_eq!(r.status, 200);
    let fds = settle_fds(&d, fds0);
    assert!(
        fds <= fds0 + 2,
        "sockets leaked: {fds0} open before, {fds} after"
    );
}
