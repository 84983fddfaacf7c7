//! Running programs with bounded waits, and background processes the lab owns.
//!
//! Every child is started in its own process group, so a timeout or a teardown can
//! signal exactly the processes the lab started (and whatever they spawned into the
//! same group) by PID — never by name.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{LabError, Result};

/// How often bounded waits look at a child again.
const POLL: Duration = Duration::from_millis(5);

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status of the program.
    pub status: ExitStatus,
    /// Everything it wrote to standard output (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output followed by standard error, for tools that mix them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Kills a process group we created, ignoring "no such process".
fn kill_group(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), sig);
    }
}

/// Waits for `child` until `deadline`, polling; `None` when still running.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// Runs `cmd` to completion within `timeout`, capturing its output.
///
/// On timeout the whole process group is killed and [`LabError::Timeout`] is returned.
/// A non-zero exit status is *not* an error here; see [`run_ok`].
pub(crate) fn run(mut cmd: Command, timeout: Duration, what: &str) -> Result<Output> {
    let line = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let deadline = start + timeout;
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("start `{line}` to {what}"), e))?;
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    for (is_err, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        if let Some(mut p) = pipe {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                let _ = tx.send((is_err, buf));
            });
        }
    }
    drop(tx);
    let status = wait_until(&mut child, deadline)
        .map_err(|e| LabError::io(format!("wait for `{line}`"), e))?;
    let Some(status) = status else {
        kill_group(child.id(), Signal::SIGKILL);
        let _ = child.wait();
        return Err(LabError::Timeout {
            what: what.to_string(),
            after: timeout,
            detail: format!("`{line}` was killed"),
        });
    };
    // The pipes close when the program (and anything it left in its group) exits.
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for _ in 0..2 {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        match rx.recv_timeout(left) {
            Ok((false, b)) => stdout = b,
            Ok((true, b)) => stderr = b,
            Err(_) => {
                kill_group(child.id(), Signal::SIGKILL);
                return Err(LabError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                    detail: format!("`{line}` exited but something kept its output open"),
                });
            }
        }
    }
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Like [`run`], but a non-zero exit status becomes [`LabError::Command`].
pub(crate) fn run_ok(cmd: Command, timeout: Duration, what: &str) -> Result<Output> {
    let line = describe(&cmd);
    let out = run(cmd, timeout, what)?;
    if out.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            what: what.to_string(),
            command: line,
            status: out.status.to_string(),
            stderr: out.stderr.trim().to_string(),
        })
    }
}

/// Shared slot for one background child; `None` once it has been reaped.
#[derive(Debug)]
pub(crate) struct Slot {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    status: Mutex<Option<ExitStatus>>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, st: ExitStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(st);
    }

    /// Reaps the child if it has exited; true when it is still running.
    fn running(&self) -> bool {
        let mut guard = self.lock();
        let Some(child) = guard.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(st)) => {
                self.record(st);
                *guard = None;
                false
            }
            Err(_) => false,
        }
    }

    /// SIGTERM the group, wait up to `grace`, then SIGKILL; returns the exit status.
    fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let mut guard = self.lock();
        if let Some(mut child) = guard.take() {
            if let Ok(Some(st)) = child.try_wait() {
                self.record(st);
            } else {
                kill_group(self.pid, Signal::SIGTERM);
                let st = match wait_until(&mut child, Instant::now() + grace) {
                    Ok(Some(st)) => Some(st),
                    _ => {
                        kill_group(self.pid, Signal::SIGKILL);
                        child.wait().ok()
                    }
                };
                if let Some(st) = st {
                    self.record(st);
                }
            }
        }
        // Anything the program left behind in its own process group goes too.
        kill_group(self.pid, Signal::SIGKILL);
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A program the lab started in the background (a server, the delayer, a test peer).
///
/// Cloning gives another handle to the same process. The lab keeps a handle of its
/// own and stops the process on teardown if nobody did so before.
#[derive(Debug, Clone)]
pub struct BgProcess {
    slot: Arc<Slot>,
}

impl BgProcess {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<BgProcess> {
        let line = describe(&cmd);
        let out =
            File::create(log).map_err(|e| LabError::io(format!("create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io(format!("duplicate {}", log.display()), e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("start {name}: `{line}`"), e))?;
        Ok(BgProcess {
            slot: Arc::new(Slot {
                name: name.to_string(),
                pid: child.id(),
                log: log.to_path_buf(),
                child: Mutex::new(Some(child)),
                status: Mutex::new(None),
            }),
        })
    }

    /// Short name given when it was started.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// Process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.slot.pid
    }

    /// File that receives its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.slot.log
    }

    /// Everything it has logged so far (lossy UTF-8; empty if the file is gone).
    pub fn log(&self) -> String {
        std::fs::read(&self.slot.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of its log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        self.slot.running()
    }

    /// Exit status, once it has exited and been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.slot.running();
        *self.slot.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.slot.running() {
                return self.exit_status().ok_or_else(|| {
                    LabError::Invalid(format!(
                        "{} (pid {}) was already reaped without a status",
                        self.name(),
                        self.pid()
                    ))
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("wait for {} (pid {}) to exit", self.name(), self.pid()),
                    after: timeout,
                    detail: format!("log tail:\n{}", self.log_tail(10)),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` until its log contains `needle`.
    ///
    /// Fails early, with the log tail, if the process exits first.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if !self.is_running() {
                return Err(LabError::Invalid(format!(
                    "{} exited ({:?}) before logging {needle:?}; log tail:\n{}",
                    self.name(),
                    self.exit_status(),
                    self.log_tail(15)
                )));
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("see {needle:?} in the log of {}", self.name()),
                    after: timeout,
                    detail: format!("log tail:\n{}", self.log_tail(15)),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        self.slot.stop(grace)
    }
}
