//! `p2pd demo --sim` driven through a pseudo-terminal, as a person would: `script` (from
//! util-linux, in Debian's essential `bsdutils`) gives the demo a terminal, so it asks
//! its questions; the test answers each once it is shown and checks what the demo
//! prints: the NAT types, the addresses, the strategies skipped and tried, the winner,
//! and a chat line echoed back. The real-network demo is driven the same way on
//! loopback (skipped without mosquitto, unless `P2PD_LAB_REQUIRED=1`).

mod common;
mod node_common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BIN;
use node_common::{Proc, TempDir, servers};

/// The longest one step may take before the test fails (a hang guard, not a timing
/// assertion).
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// The end of the chat's introduction and its first prompt.
const CHAT_PROMPT: &str = "(or the end of the input) ends.\n> ";

/// The demo in a pseudo-terminal; killed when dropped.
struct Pty {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pty {
    fn start(args: &str) -> Pty {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &format!("{BIN} {args}"), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("`script` (util-linux, Debian package bsdutils) must be installed");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        print!("{text}");
                        o.lock().unwrap().push_str(&text);
                    }
                }
            }
        });
        Pty { child, out }
    }

    /// Everything shown so far, with the terminal's CR LF as LF.
    fn shown(&self) -> String {
        self.out.lock().unwrap().replace("\r\n", "\n")
    }

    /// Waits until `needle` is shown `count` times in all.
    fn wait_for_nth(&self, needle: &str, count: usize) {
        let start = Instant::now();
        while self.shown().matches(needle).count() < count {
            assert!(
                start.elapsed() < STEP_LIMIT,
                "waited for {needle:?}; shown:\n{}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, needle: &str) {
        self.wait_for_nth(needle, 1);
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn wait_exit(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(start.elapsed() < STEP_LIMIT, "the demo did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_sim_demo_asks_connects_and_echoes_in_a_terminal() {
    let mut demo = Pty::start("demo --sim");
    demo.wait_for("Your NAT, TYPE/DELTA [port_restricted_cone/random]: ");
    // A wrong answer is explained and asked again.
    demo.type_line("cone/random");
    demo.wait_for("unknown NatType 'cone'");
    demo.wait_for_nth("Your NAT, TYPE/DELTA", 2);
    demo.type_line("port_restricted_cone/random");
    demo.wait_for("The peer's NAT, TYPE/DELTA [symmetric/independent]: ");
    demo.type_line("symmetric/independent");
    demo.wait_for("Peer address to connect to");
    demo.type_line("");
    demo.wait_for("Strategies to try [direct,reverse,tcp_punch,udp_punch,relay]: ");
    demo.type_line("");
    demo.wait_for("Echo chat over the udp_punch pipe");
    demo.wait_for(CHAT_PROMPT);
    demo.type_line("hello through two NATs");
    demo.wait_for("echo: hello through two NATs");
    demo.type_line("exit");
    demo.wait_for("Bye.");
    assert!(demo.wait_exit(), "the demo failed");

    let shown = demo.shown();
    // The NAT per side, as its address advertises it.
    assert!(
        shown.contains("10.0.1.2 -> external 198.18.0.1: port_restricted_cone; delta random"),
        "{shown}"
    );
    assert!(
        shown.contains("-> external 198.18.0.2: symmetric; delta independent 7"),
        "{shown}"
    );
    // Both node addresses.
    assert!(shown.contains("Your node address:\n  p2pd1:"), "{shown}");
    assert!(
        shown.contains("The peer's node address:\n  p2pd1:"),
        "{shown}"
    );
    // Each strategy's fate, with virtual times; the winner.
    for s in ["direct", "reverse", "tcp_punch"] {
        assert!(
            shown.contains(&format!(" ms  skipped {s}: ")),
            "{s}: {shown}"
        );
    }
    assert!(shown.contains(" ms  trying udp_punch: "), "{shown}");
    assert!(shown.contains(" ms  connected by udp_punch ("), "{shown}");
    assert!(shown.contains("  udp_punch  WON"), "{shown}");
    assert!(shown.contains("  relay      not needed"), "{shown}");
    assert!(
        shown.contains("the oracle expects: udp_punch (as here)"),
        "{shown}"
    );
    // The chat line reached the peer and came back.
    assert!(
        shown.contains("peer received: hello through two NATs"),
        "{shown}"
    );
    assert!(
        shown.contains("echo: hello through two NATs  (round trip "),
        "{shown}"
    );
}

#[test]
fn the_sim_demo_takes_a_chosen_strategy_list_in_a_terminal() {
    let mut demo = Pty::start("demo --sim --nat full_cone/equal --peer-nat blocked");
    demo.wait_for("Peer address to connect to");
    demo.type_line("");
    demo.wait_for("Strategies to try");
    demo.type_line("direct,relay");
    demo.wait_for(CHAT_PROMPT);
    demo.type_line("via the relay");
    demo.wait_for("echo: via the relay");
    // The end of the input ends the demo too.
    drop(demo.child.stdin.take());
    demo.wait_for("Bye.");
    assert!(demo.wait_exit());
    let shown = demo.shown();
    assert!(shown.contains("blocked; delta random 0"), "{shown}");
    assert!(shown.contains("skipped udp_punch: not enabled"), "{shown}");
    assert!(shown.contains("  relay      WON"), "{shown}");
}

#[test]
fn the_real_demo_asks_connects_and_echoes_in_a_terminal() {
    let Some(s) = servers("demo-pty") else { return };
    let (ha, hb) = (TempDir::new("pty-a"), TempDir::new("pty-b"));
    let node_args = |home: &TempDir| {
        format!(
            "--interface lo --stun {} --mqtt {} --turn alice:secret@{} --home {}",
            s.stun,
            s.mqtt,
            s.turn,
            home.0.display()
        )
    };
    // The peer: a demo that waits, unattended.
    let mut peer = std::process::Command::new(BIN)
        .arg("demo")
        .arg("--wait")
        .args(node_args(&hb).split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut peer_out = peer.stdout.take().unwrap();
    let peer = Proc(peer);
    let peer_shown = Arc::new(Mutex::new(String::new()));
    let ps = peer_shown.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = peer_out.read(&mut buf) {
            if n == 0 {
                return;
            }
            ps.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let start = Instant::now();
    let addr = loop {
        let text = peer_shown.lock().unwrap().clone();
        if let Some(a) = text
            .split_whitespace()
            .find(|w| w.starts_with("p2pd1:"))
            .filter(|_| text.contains("Waiting for a peer"))
        {
            break a.to_string();
        }
        assert!(
            start.elapsed() < STEP_LIMIT,
            "the peer never started: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let mut demo = Pty::start(&format!("demo {}", node_args(&ha)));
    demo.wait_for("Loading networking interfaces...");
    demo.wait_for("Your node address:\n  p2pd1:");
    demo.wait_for("Peer address to connect to (Enter: wait for a peer to connect): ");
    demo.type_line("p2pd1:not-an-address");
    demo.wait_for("not a node address");
    demo.wait_for_nth("Peer address to connect to", 2);
    demo.type_line(&addr);
    demo.wait_for("Strategies to try [direct,reverse,tcp_punch,udp_punch,relay]: ");
    demo.type_line("reverse,relay");
    demo.wait_for("'exit' ends.");
    demo.type_line("hello real peer");
    demo.wait_for("echo: hello real peer  (round trip ");
    demo.type_line("exit");
    demo.wait_for("Bye.");
    assert!(demo.wait_exit());
    let shown = demo.shown();
    assert!(shown.contains("  lo (v4)"), "{shown}");
    assert!(shown.contains("-> external 127.0.0.1: "), "{shown}");
    assert!(shown.contains("Connecting with reverse,relay:"), "{shown}");
    assert!(shown.contains("skipped direct: not enabled"), "{shown}");
    assert!(shown.contains(" ms  trying reverse: "), "{shown}");
    assert!(shown.contains("  reverse    WON"), "{shown}");
    assert!(shown.contains("  direct     not offered"), "{shown}");

    // The peer showed the line and saw the end.
    let start = Instant::now();
    while !peer_shown.lock().unwrap().contains("Bye.") {
        assert!(
            start.elapsed() < STEP_LIMIT,
            "{}",
            peer_shown.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = peer_shown.lock().unwrap().clone();
    assert!(text.contains("connected by reverse"), "{text}");
    assert!(text.contains("peer: hello real peer\n"), "{text}");
    drop(peer);
}
