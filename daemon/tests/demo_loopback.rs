//! `p2pd demo` on the real network stack, on loopback: mosquitto, `p2pd stun-server`
//! and `p2pd turn-server`, then two demos (one waiting, one connecting with a script)
//! chatting, and a demo talking to `p2pd listen`. Without mosquitto the tests print why
//! and pass, unless `P2PD_LAB_REQUIRED=1`.

mod common;
mod node_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BIN;
use node_common::{Proc, Servers, TempDir, servers};

/// A hang guard for each step, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);

fn node_args(s: &Servers, home: &TempDir) -> Vec<String> {
    vec![
        "--interface".into(),
        "lo".into(),
        "--stun".into(),
        s.stun.to_string(),
        "--mqtt".into(),
        s.mqtt.to_string(),
        "--turn".into(),
        format!("alice:secret@{}", s.turn),
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
    ]
}

/// Lines of a child's output, read on a thread (echoed for the test log).
fn lines<R: Read + Send + 'static>(r: R, tag: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            eprintln!("[{tag}] {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Lines until one satisfies `f` (returned), or panics after [`LIMIT`].
fn until(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, f: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let left = LIMIT.saturating_sub(start.elapsed());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no such line; seen:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if f(&line) {
            return line;
        }
    }
}

/// A waiting demo and its address.
fn waiting_demo(
    s: &Servers,
    home: &TempDir,
) -> (Proc, mpsc::Receiver<String>, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("demo")
        .arg("--wait")
        .args(node_args(s, home))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out: ChildStdout = child.stdout.take().unwrap();
    let rx = lines(out, "waiting demo");
    let mut seen = Vec::new();
    until(&rx, &mut seen, |l| l == "Your node address:");
    let addr = until(&rx, &mut seen, |l| l.trim().starts_with("p2pd1:"))
        .trim()
        .to_string();
    (Proc(child), rx, addr, seen)
}

#[test]
fn two_demos_chat_on_loopback() {
    let Some(s) = servers("demo2") else { return };
    let (ha, hb) = (TempDir::new("demo-a"), TempDir::new("demo-b"));
    let (mut a, arx, addr, mut aseen) = waiting_demo(&s, &ha);
    // What the waiting demo showed while loading.
    let shown = aseen.join("\n");
    assert!(
        shown.contains("Loading networking interfaces..."),
        "{shown}"
    );
    assert!(shown.contains("  lo (v4)"), "{shown}");
    assert!(shown.contains("-> external 127.0.0.1: "), "{shown}");

    let b = Command::new(BIN)
        .args(["demo", "--peer", &addr, "--script", "hello\\nsecond line"])
        .args(node_args(&s, &hb))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let bout = String::from_utf8_lossy(&b.stdout);
    eprintln!("[connecting demo]\n{bout}");
    assert!(b.status.success(), "{bout}");
    assert!(
        bout.contains("Connecting with direct,reverse,tcp_punch,udp_punch,relay:"),
        "{bout}"
    );
    assert!(bout.contains(" ms  connected by "), "{bout}");
    assert!(bout.contains(" WON"), "{bout}");
    assert!(bout.contains("echo: hello  (round trip "), "{bout}");
    assert!(bout.contains("echo: second line  (round trip "), "{bout}");

    until(&arx, &mut aseen, |l| l == "peer: hello");
    until(&arx, &mut aseen, |l| l == "peer: second line");
    until(&arx, &mut aseen, |l| {
        l == "(the peer closed the connection)"
    });
    until(&arx, &mut aseen, |l| l == "Bye.");
    let start = Instant::now();
    while a.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "the waiting demo did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a.0.wait().unwrap().success());
}

#[test]
fn a_demo_talks_to_p2pd_listen() {
    let Some(s) = servers("demo-listen") else {
        return;
    };
    let (hl, hd) = (TempDir::new("listen"), TempDir::new("demo"));
    let mut listen = Command::new(BIN)
        .arg("listen")
        .args(node_args(&s, &hl))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lerr = lines(listen.stderr.take().unwrap(), "listen stderr");
    let lout = lines(listen.stdout.take().unwrap(), "listen stdout");
    let mut lstdin = listen.stdin.take().unwrap();
    let listen = Proc(listen);
    let mut seen = Vec::new();
    let addr = until(&lerr, &mut seen, |l| l.starts_with("p2pd1:"));

    let mut demo = Command::new(BIN)
        .args([
            "demo",
            "--peer",
            &addr,
            "--script",
            "hi listen",
            "--echo-timeout",
            "30",
        ])
        .args(node_args(&s, &hd))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let dout = lines(demo.stdout.take().unwrap(), "demo");
    let demo = Proc(demo);
    // listen shows the demo's line as it came: the request keyword and the text.
    until(&lout, &mut seen, |l| l == "ECHO hi listen");
    // What the person at `listen` types reaches the demo, then their end closes.
    lstdin.write_all(b"from listen\n").unwrap();
    drop(lstdin);
    let mut dseen = Vec::new();
    until(&dout, &mut dseen, |l| l == "peer: from listen");
    until(&dout, &mut dseen, |l| {
        l == "(the peer closed the connection)"
    });
    until(&dout, &mut dseen, |l| l == "Bye.");
    drop(demo);
    drop(listen);
}
