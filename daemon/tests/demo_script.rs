//! `p2pd demo --sim` unattended: answers from flags, chat lines from `--script` or from
//! stdin (not a terminal, so no questions), output checked line by line.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::BIN;

fn demo(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn scripted_chat_over_a_punched_pipe() {
    let o = demo(
        &[
            "--sim",
            "--nat",
            "port_restricted_cone/random",
            "--peer-nat",
            "symmetric/independent",
            "--script",
            "hello\\nbye",
        ],
        b"",
    );
    let out = text(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No questions without a terminal.
    assert!(!out.contains("TYPE/DELTA ["), "{out}");
    assert!(!out.contains("Strategies to try"), "{out}");
    assert!(out.contains("port_restricted_cone; delta random"), "{out}");
    assert!(out.contains("symmetric; delta independent 7"), "{out}");
    assert!(out.contains("  udp_punch  WON"), "{out}");
    for line in ["hello", "bye"] {
        assert!(out.contains(&format!("> {line}\n")), "{out}");
        assert!(out.contains(&format!("peer received: {line}  (+")), "{out}");
        assert!(
            out.contains(&format!("echo: {line}  (round trip ")),
            "{out}"
        );
    }
    assert!(out.ends_with("Bye.\n"), "{out}");
    // Quiet by default: nothing on stderr.
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn chat_lines_from_stdin_and_the_same_run_twice() {
    let args = [
        "--sim",
        "--nat",
        "open_internet",
        "--peer-nat",
        "full_cone/preserving",
        "--seed",
        "7",
    ];
    let a = demo(&args, b"first line\r\n\nsecond line\nexit\nnot sent\n");
    let out = text(&a);
    assert!(a.status.success(), "{out}");
    assert!(out.contains("echo: first line  ("), "{out}");
    assert!(out.contains("echo: second line  ("), "{out}");
    assert!(!out.contains("not sent"), "{out}");
    // The simulator is deterministic: the same seed shows the same run.
    let b = demo(&args, b"first line\r\n\nsecond line\nexit\nnot sent\n");
    assert_eq!(out, text(&b));
}

#[test]
fn a_strategy_list_that_cannot_work_fails_with_the_reasons() {
    let o = demo(
        &[
            "--sim",
            "--nat",
            "symmetric/random",
            "--peer-nat",
            "symmetric/random",
            "--strategies",
            "direct,reverse",
            "--script",
            "never sent",
        ],
        b"",
    );
    let out = text(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("skipped direct: "), "{out}");
    assert!(out.contains("skipped reverse: "), "{out}");
    assert!(out.contains("  relay      not offered"), "{out}");
    assert!(err.contains("could not connect"), "{err}");
    assert!(!out.contains("never sent"), "{out}");
}

#[test]
fn bad_flags_are_explained() {
    let o = demo(&["--sim", "--nat", "cone/random"], b"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("full_cone"), "{err}");
    // Simulator flags need --sim.
    let o = demo(&["--nat", "full_cone"], b"");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--sim"));
    let o = demo(&["--sim", "--strategies", "teleport", "--script", "x"], b"");
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown strategy"));
    let o = demo(&["--help"], b"");
    let help = text(&o);
    assert!(help.contains("--sim") && help.contains("--script") && help.contains("--stun"));
}
