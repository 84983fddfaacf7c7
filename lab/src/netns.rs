//! A named network namespace and the ways to act inside it.
//!
//! Programs run through `ip netns exec`, which execs the program (so the PID the lab
//! records is the program's own). Rust code runs inside a namespace on a helper thread
//! that joined it with `setns(2)`; sockets created there stay in that namespace even
//! when later used from other threads (handy for tokio tests).

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::error::{LabError, Result};
use crate::process::{self, Output};

/// Default bound for the short configuration commands (`ip`, `nft`, `sysctl`, ...).
pub(crate) const CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// A network namespace created by the lab (the handle does not own it: the lab does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Netns {
    name: String,
}

/// Transport protocol, for readiness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP (listening sockets).
    Tcp,
}

impl Netns {
    pub(crate) fn new(name: String) -> Netns {
        Netns { name }
    }

    /// The namespace name as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program args...` inside this namespace.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("ip");
        c.arg("netns")
            .arg("exec")
            .arg(&self.name)
            .arg(program)
            .args(args);
        c
    }

    /// Runs `argv` inside the namespace, waits at most `timeout`, captures its output.
    ///
    /// A non-zero exit status is returned in [`Output::status`], not as an error:
    /// tests often expect failure.
    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S], timeout: Duration) -> Result<Output> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Invalid("run: empty command line".into()))?;
        process::run(
            self.command(prog, args),
            timeout,
            &format!("run a command in {}", self.name),
        )
    }

    /// Like [`Netns::run`] but a non-zero exit status is an error.
    pub(crate) fn run_ok<S: AsRef<OsStr>>(&self, argv: &[S], what: &str) -> Result<Output> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Invalid("run: empty command line".into()))?;
        process::run_ok(self.command(prog, args), CONFIG_TIMEOUT, what)
    }

    /// Feeds `lines` to `ip -n NS -batch -` (one process for many `ip` commands).
    pub(crate) fn ip_batch(&self, lines: &[String], what: &str) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = write_temp(&lines.join("\n"), "ip")?;
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name, "-batch"]).arg(file.path());
        process::run_ok(cmd, CONFIG_TIMEOUT, what).map(|_| ())
    }

    /// Loads an nftables ruleset (`nft -f`) inside the namespace.
    pub(crate) fn nft(&self, ruleset: &str, what: &str) -> Result<()> {
        let file = write_temp(ruleset, "nft")?;
        let path = file.path().to_string_lossy().into_owned();
        self.run_ok(&["nft", "-f", &path], what).map(|_| ())
    }

    /// Sets sysctls (`key=value`) inside the namespace in one `sysctl` call.
    pub(crate) fn sysctl(&self, settings: &[&str]) -> Result<()> {
        let mut argv = vec!["sysctl", "-q", "-w"];
        argv.extend_from_slice(settings);
        self.run_ok(&argv, &format!("set sysctls in {}", self.name))
            .map(|_| ())
    }

    /// Sockets bound (UDP) or listening (TCP) in this namespace, from `ss -Hlnut`.
    pub fn listening(&self) -> Result<Vec<(Proto, SocketAddr)>> {
        let out = self.run(&["ss", "-Hlnut"], CONFIG_TIMEOUT)?;
        Ok(out.stdout.lines().filter_map(parse_ss_line).collect())
    }

    /// Waits (bounded) until every `(proto, addr)` in `want` is bound.
    ///
    /// `alive` is called between polls; returning an error from it (e.g. "the server
    /// exited") ends the wait early with that error.
    pub fn wait_listening(
        &self,
        want: &[(Proto, SocketAddr)],
        timeout: Duration,
        mut alive: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.listening()?;
            let missing: Vec<_> = want.iter().filter(|w| !have.contains(w)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            alive()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("see sockets bound in {}", self.name),
                    after: timeout,
                    detail: format!("still missing: {missing:?}"),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `f` on a thread that has joined this namespace and returns its result.
    ///
    /// Sockets created by `f` belong to this namespace for their whole life. A panic
    /// inside `f` is propagated to the caller.
    pub fn enter<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|e| LabError::io(format!("open {path}"), e))?;
        thread::scope(|s| {
            let handle = s.spawn(move || -> Result<T> {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| LabError::sys(format!("join namespace {path}"), e))?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Binds a UDP socket inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(addr))?
            .map_err(|e| LabError::io(format!("bind UDP {addr} in {}", self.name), e))
    }
}

/// Parses one `ss -Hlnut` line into (protocol, local address).
///
/// Handles `*:port`, `[v6]:port` and `addr%device:port` forms.
fn parse_ss_line(line: &str) -> Option<(Proto, SocketAddr)> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let proto = match *cols.first()? {
        "udp" => Proto::Udp,
        "tcp" => Proto::Tcp,
        _ => return None,
    };
    let local = *cols.get(4)?;
    let (host, port) = local.rsplit_once(':')?;
    let host = host
        .split('%')
        .next()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let host = if host == "*" { "0.0.0.0" } else { host };
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some((proto, SocketAddr::new(ip, port.parse().ok()?)))
}

/// A temporary file removed on drop (configs fed to `ip -batch` and `nft -f`).
pub(crate) struct TempFile {
    path: std::path::PathBuf,
}

impl TempFile {
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `content` to a fresh file under the system temp dir.
pub(crate) fn write_temp(content: &str, ext: &str) -> Result<TempFile> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "p2pd-lab-{}-{}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, content)
        .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
    Ok(TempFile { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_parse() {
        let l = "udp   UNCONN 0      0       198.51.100.1:3478      0.0.0.0:*";
        assert_eq!(
            parse_ss_line(l),
            Some((Proto::Udp, "198.51.100.1:3478".parse().unwrap()))
        );
        let l = "tcp   LISTEN 0      128     [2001:db8:1::1]:1883        [::]:*";
        assert_eq!(
            parse_ss_line(l),
            Some((Proto::Tcp, "[2001:db8:1::1]:1883".parse().unwrap()))
        );
        let l = "udp   UNCONN 0      0       0.0.0.0%lan0:1900      0.0.0.0:*";
        assert_eq!(
            parse_ss_line(l),
            Some((Proto::Udp, "0.0.0.0:1900".parse().unwrap()))
        );
        let l = "tcp   LISTEN 0      5             *:5000             *:*";
        assert_eq!(
            parse_ss_line(l),
            Some((Proto::Tcp, "0.0.0.0:5000".parse().unwrap()))
        );
        assert_eq!(parse_ss_line("garbage"), None);
    }
}
