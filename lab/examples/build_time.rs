//! Measures how long one two-LAN topology with coturn and mosquitto takes to build
//! (and to tear down). Run as root:
//!
//! ```text
//! cargo run -p p2pd-lab --example build_time -- [runs]
//! ```

use std::time::{Duration, Instant};

use p2pd_lab::{Lab, RouterKind};

fn main() -> Result<(), p2pd_lab::LabError> {
    if let Some(reason) = p2pd_lab::skip_reason() {
        eprintln!("cannot run: {reason}");
        std::process::exit(2);
    }
    let runs: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut build = Vec::new();
    let mut down = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME)?;
        let topo = t.elapsed();
        lab.start_servers()?;
        let total = t.elapsed();
        let t = Instant::now();
        lab.shutdown()?;
        down.push(t.elapsed());
        println!("topology {topo:?}, with coturn + mosquitto ready {total:?}");
        build.push(total);
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "two-LAN lab with servers: median build {:?} (min {:?}, max {:?}), median teardown {:?} over {} runs",
        med(&mut build),
        build[0],
        build[build.len() - 1],
        med(&mut down),
        build.len()
    );
    Ok(())
}
