//! `p2pd daemon` run as a process: every endpoint's error paths, the security checks, the
//! served OpenAPI document, `/ifs` against a local STUN server, the token from the config
//! file, and refused start-up options.
//!
//! The p2p node (issue 7) is not in this build, so the node-backed successes (open, addr,
//! accept) are covered in-process (`cargo test -p p2pd --bin p2pd rest`) with TCP
//! connections standing in for the node's pipes; here the daemon must say the node is
//! unavailable with its own error code.

mod common;
mod rest_common;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use p2pd_core::addr::{Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::rng::Rng;
use rest_common::{BIN, Resp, get, raw, start};

fn a_node_addr() -> String {
    let key = Identity::generate(&mut Rng::seed_from_u64(7)).public();
    let ip: IpAddr = "203.0.113.5".parse().unwrap();
    NodeAddr::new(
        key,
        vec![],
        vec![Interface {
            v4: Some(Route {
                external: ip,
                internal: "10.0.0.5".parse().unwrap(),
                port: 10062,
                nat: NatType::FullCone,
                delta: Delta {
                    kind: DeltaKind::Equal,
                    value: 0,
                },
            }),
            v6: None,
        }],
    )
    .unwrap()
    .to_string()
}

#[track_caller]
fn expect(r: &Resp, status: u16, code: u64) {
    assert_eq!(
        (r.status, r.code()),
        (status, code),
        "{}\n{}",
        r.head,
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    if code != 0 {
        assert!(j["name"].as_str().is_some_and(|n| !n.is_empty()), "{j}");
        assert!(j["msg"].as_str().is_some_and(|m| m.len() > 10), "{j}");
    }
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{}",
        r.head
    );
}

#[test]
fn version_openapi_and_ifs_off() {
    let d = start("version", None, &["--no-discovery"]);
    let r = get(d.addr(), "/version", "");
    expect(&r, 200, 0);
    let j = r.json();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        ["starting", "running", "failed"].contains(&j["node"].as_str().unwrap()),
        "{j}"
    );

    let served = get(d.addr(), "/openapi.json", "");
    assert_eq!(served.status, 200);
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert!(
        served.body == file,
        "the served OpenAPI document is daemon/openapi.json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let ifs = get(d.addr(), "/ifs", "");
    expect(&ifs, 200, 0);
    assert_eq!(ifs.json()["state"], "off");
}

#[test]
fn every_endpoint_refuses_bad_input_with_its_code() {
    let d = start(
        "errors",
        None,
        &["--no-discovery", "--request-timeout-s", "1"],
    );
    let a = d.addr();
    let node = get(a, "/version", "").json()["node"].clone();
    let addr = a_node_addr();

    // Routing.
    expect(&get(a, "/nope", ""), 404, 1);
    expect(&get(a, "/p2p/con", ""), 404, 1);
    expect(&get(a, "/p2p/con/a/extra", ""), 404, 1);
    let r = raw(
        a,
        b"DELETE /p2p/binary/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    expect(&r, 405, 2);
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
    expect(
        &raw(a, b"PUT /version HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        405,
        2,
    );
    expect(&get(a, "/p2p/con/%zz", ""), 400, 3);
    expect(&get(a, "/p2p/con/%C3%28", ""), 400, 3);
    expect(
        &raw(
            a,
            b"GET http://127.0.0.1/version HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        400,
        3,
    );
    expect(&raw(a, b"NOT HTTP AT ALL\r\n\r\n"), 400, 3);

    // Names and unknown connections, on every endpoint that takes one.
    for path in [
        "/p2p/con/{}",
        "/p2p/send/{}/hi",
        "/p2p/recv/{}",
        "/p2p/binary/{}",
        "/p2p/pipe/{}",
        "/p2p/close/{}",
    ] {
        expect(&get(a, &path.replace("{}", "ghost"), ""), 404, 4);
        expect(&get(a, &path.replace("{}", "bad%20name"), ""), 400, 6);
        expect(&get(a, &path.replace("{}", &"n".repeat(65)), ""), 400, 6);
    }
    let post = |path: &str, extra: &str, body: &[u8]| {
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes();
        req.extend_from_slice(body);
        raw(a, &req)
    };
    expect(
        &post("/p2p/binary/ghost", "Content-Length: 3\r\n", b"abc"),
        404,
        4,
    );
    expect(&post("/p2p/binary/ghost", "", b""), 404, 4);
    expect(
        &post(
            "/p2p/binary/ghost",
            "Transfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
        411,
        24,
    );
    expect(
        &post(
            "/p2p/binary/ghost",
            "Content-Length: 5000000\r\n",
            b"only a little",
        ),
        413,
        21,
    );
    expect(
        &post("/p2p/binary/ghost", "Content-Length: x\r\n", b""),
        400,
        3,
    );
    expect(
        &post("/p2p/binary/ghost", "Content-Length: 10\r\n", b"short"),
        408,
        23,
    );

    // Queries.
    expect(&get(a, "/p2p/recv/ghost?timeout=abc", ""), 400, 9);
    expect(&get(a, "/p2p/recv/ghost?timeout=1e9", ""), 400, 9);
    expect(&get(a, "/p2p/recv/ghost?wait=1", ""), 400, 9);
    expect(&get(a, "/version?x", ""), 400, 9);
    expect(&get(a, "/p2p/accept?timeout=0.1", ""), 504, 28);

    // Open.
    expect(&get(a, "/p2p/open/a/garb_age", ""), 400, 7);
    expect(
        &get(a, &format!("/p2p/open/a/{}x", &addr[..addr.len() - 1]), ""),
        400,
        7,
    );
    expect(&get(a, &format!("/p2p/open/a!/{addr}"), ""), 400, 6);
    expect(
        &get(a, &format!("/p2p/open/a/{addr}?strategies=warp"), ""),
        400,
        8,
    );
    expect(
        &get(a, &format!("/p2p/open/a/{addr}?strategies="), ""),
        400,
        8,
    );
    if node == "failed" {
        expect(
            &get(a, &format!("/p2p/open/a/{addr}?strategies=direct"), ""),
            503,
            12,
        );
        expect(&get(a, "/p2p/open/a/self", ""), 503, 12);
        expect(&get(a, "/p2p/addr", ""), 503, 12);
    }
    expect(&get(a, "/p2p/cons", ""), 200, 0);
    assert_eq!(
        get(a, "/p2p/cons", "").json()["cons"],
        serde_json::json!([])
    );

    // Host and Origin.
    let host = |h: &str| {
        raw(
            a,
            format!("GET /version HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes(),
        )
    };
    for bad in [
        "evil.example",
        "evil.example:12333",
        "127.0.0.1.nip.io",
        "192.0.2.1",
        "[::2]:12333",
        "",
    ] {
        expect(&host(bad), 403, 18);
    }
    for good in ["localhost", "localhost:12333", "127.0.0.1", "[::1]:12333"] {
        expect(&host(good), 200, 0);
    }
    expect(&raw(a, b"GET /version HTTP/1.0\r\n\r\n"), 403, 18);
    expect(
        &raw(
            a,
            b"GET /version HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
        ),
        400,
        3,
    );
    for bad in [
        "Origin: http://evil.example",
        "Origin: null",
        "Origin: http://localhost.evil.example",
        "Sec-Fetch-Site: cross-site",
    ] {
        expect(&get(a, "/p2p/close/x", &format!("{bad}\r\n")), 403, 19);
    }
    let r = get(
        a,
        "/version",
        "Origin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\n",
    );
    expect(&r, 200, 0);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    let pre = raw(
        a,
        b"OPTIONS /p2p/binary/x HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1:8000\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    );
    assert_eq!(pre.status, 204, "{}", pre.head);
    assert!(
        pre.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let pre = raw(
        a,
        b"OPTIONS /p2p/binary/x HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n\r\n",
    );
    expect(&pre, 403, 19);

    // Sizes and time.
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    expect(&get(a, "/version", &big), 431, 22);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect(&get(a, "/version", &many), 431, 22);
    let started = Instant::now();
    expect(&raw(a, b"GET /version HTTP/1.1\r\nHost: loc"), 408, 23);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn token_from_the_config_file() {
    let token = "s3cret-token-for-tests-0123456789";
    let d = start(
        "token",
        Some(&format!("[rest]\ntoken = \"{token}\"\n")),
        &["--no-discovery"],
    );
    let r = get(d.addr(), "/version", "");
    expect(&r, 401, 20);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    expect(
        &get(
            d.addr(),
            "/version",
            "Authorization: Bearer nope-nope-nope-nope\r\n",
        ),
        401,
        20,
    );
    expect(
        &get(
            d.addr(),
            "/version",
            "Authorization: Basic Zm9vOmJhcg==\r\n",
        ),
        401,
        20,
    );
    expect(
        &get(
            d.addr(),
            "/version",
            &format!("Authorization: Bearer {token}\r\n"),
        ),
        200,
        0,
    );
    expect(
        &get(
            d.addr(),
            "/version",
            &format!("Authorization: bearer {token}\r\n"),
        ),
        200,
        0,
    );
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let run = |args: &[&str], config: Option<&str>| {
        let home = rest_common::temp_home(&format!("opts{}", args.len()));
        if let Some(c) = config {
            std::fs::write(home.join("config.toml"), c).unwrap();
        }
        let out = Command::new(BIN)
            .arg("daemon")
            .args(args)
            .env("P2PD_HOME", &home)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&home);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&["--listen", "192.0.2.1:12333"], None).contains("not a loopback address"));
    assert!(run(&["--listen", "0.0.0.0:0"], None).contains("not a loopback address"));
    let e = run(
        &["--listen", "127.0.0.1:0", "--no-discovery"],
        Some("[rest]\ntoken = \"short\"\n"),
    );
    assert!(e.contains("token must be 16 to 256"), "{e}");
    let e = run(&["--listen", "127.0.0.1:0"], Some("[rest]\ntokn = \"x\"\n"));
    assert!(e.contains("invalid"), "{e}");
    let e = run(
        &["--listen", "127.0.0.1:0", "--request-timeout-s", "0"],
        None,
    );
    assert!(e.contains("--request-timeout-s"), "{e}");
}

#[test]
fn ifs_discovers_routes_through_a_local_stun_server() {
    let stun = common::start_server(&["--primary", "127.0.0.1:0"]);
    let server = stun.addrs[0].to_string();
    let d = start("ifs", None, &["--stun", &server]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let j = loop {
        let r = get(d.addr(), "/ifs", "");
        expect(&r, 200, 0);
        let j = r.json();
        if j["state"] != "discovering" || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["servers"], serde_json::json!([server]));
    for i in j["interfaces"].as_array().unwrap() {
        assert!(
            i["name"].is_string() && i["routes"].is_array() && i["nat"].is_array(),
            "{i}"
        );
    }
}
