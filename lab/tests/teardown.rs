//! Teardown: after a lab is dropped — normally or while a test panics — none of its
//! namespaces, processes or files remain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{Lab, LinkParams, RouterKind, list_netns};

/// What a lab made, recorded before it goes away.
struct Footprint {
    name: String,
    pids: Vec<u32>,
    state_dir: PathBuf,
}

fn footprint(lab: &Lab) -> Footprint {
    Footprint {
        name: lab.name().to_string(),
        pids: lab.pids(),
        state_dir: lab.state_dir().to_path_buf(),
    }
}

/// Builds a lab with every kind of process the lab can start.
fn busy_lab() -> Lab {
    let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    lab.start_servers().expect("servers");
    lab.start_miniupnpd(0).expect("miniupnpd");
    lab.set_link(1, LinkParams::delay(Duration::from_millis(5)))
        .expect("delayer");
    lab.spawn(lab.host(0).ns(), "sleeper", &["sleep", "300"])
        .expect("sleeper");
    lab
}

fn assert_gone(f: &Footprint) {
    let left: Vec<String> = list_netns()
        .expect("list namespaces")
        .into_iter()
        .filter(|n| n.starts_with(&f.name))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for pid in &f.pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still exists"
        );
    }
    assert!(
        !f.state_dir.exists(),
        "{} still exists",
        f.state_dir.display()
    );
}

#[test]
fn drop_removes_namespaces_processes_and_state() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = busy_lab();
    let f = footprint(&lab);
    assert_eq!(
        f.pids.len(),
        5,
        "coturn, mosquitto, miniupnpd, delayer, sleeper"
    );
    assert_eq!(lab.namespaces().len(), 5);
    assert!(
        list_netns()
            .expect("list")
            .iter()
            .any(|n| n.starts_with(&f.name))
    );
    assert!(f.state_dir.join("turnserver.conf").is_file());
    drop(lab);
    assert_gone(&f);
}

#[test]
fn drop_runs_when_a_test_panics() {
    p2pd_lab::require!(ALL_TOOLS);
    let recorded = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = busy_lab();
        *recorded.lock().unwrap() = Some(footprint(&lab));
        panic!("a failing lab test");
    }));
    assert!(result.is_err(), "the closure panicked");
    let f = recorded.into_inner().unwrap().expect("lab was built");
    assert_eq!(f.pids.len(), 5);
    assert_gone(&f);
}

#[test]
fn labs_get_distinct_names_and_can_coexist() {
    p2pd_lab::require!(ALL_TOOLS);
    let a = Lab::one_lan(RouterKind::HOME).expect("lab a");
    let b = Lab::one_lan(RouterKind::HOME).expect("lab b");
    assert_ne!(a.name(), b.name());
    assert!(a.namespaces().iter().all(|n| !b.namespaces().contains(n)));
    // same addresses inside separate namespaces do not collide
    assert_eq!(a.host(0).addr(), b.host(0).addr());
    let fa = footprint(&a);
    a.shutdown().expect("clean shutdown");
    assert_gone(&fa);
    let out = b
        .host(0)
        .run(
            &[
                "ping",
                "-n",
                "-c",
                "1",
                "-W",
                "2",
                &b.router(0).lan_gateway().to_string(),
            ],
            Duration::from_secs(5),
        )
        .expect("ping");
    assert!(
        out.success(),
        "lab b broke when lab a went away: {}",
        out.combined()
    );
}
