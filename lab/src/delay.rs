//! A userspace link delayer over NFQUEUE (this kernel has no `netem`).
//!
//! Packets sent to a queue by an iptables `NFQUEUE` rule are held for `delay ±
//! jitter` and then accepted. Only metadata is copied from the kernel (the verdict
//! needs just the packet id), the number of held packets is bounded (beyond the bound
//! packets are dropped, like a full router buffer), and SIGTERM/SIGINT release every
//! held packet before the queue is unbound. Speaks `nfnetlink_queue` directly: no C
//! library. Used by the `p2pd-lab-delay` binary, which the lab runs in the server
//! namespace (no NAT or conntrack there, so held packets cannot clash).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    setsockopt, socket, sockopt,
};

use crate::error::{LabError, Result};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
/// Verdicts.
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

/// What the delayer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayConfig {
    /// NFQUEUE number to bind.
    pub queue: u16,
    /// Base one-way delay.
    pub delay: Duration,
    /// Each packet is held `delay + u` with `u` uniform in `[-jitter, +jitter]`
    /// (clamped at zero). Jitter can reorder packets, as on a real path.
    pub jitter: Duration,
    /// Most packets held at once; more are dropped.
    pub limit: usize,
    /// Seed of the jitter generator (same seed, same sequence of extra delays).
    pub seed: u64,
    /// Stop by itself after this long (a safety net; the lab stops it earlier).
    pub max_runtime: Duration,
}

/// Counters reported when the delayer stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Packets received from the kernel.
    pub queued: u64,
    /// Packets accepted after their delay.
    pub released: u64,
    /// Packets dropped because `limit` packets were already held.
    pub dropped: u64,
}

/// A bound nfnetlink_queue socket.
struct Queue {
    fd: OwnedFd,
    queue: u16,
    seq: u32,
}

fn nla(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

impl Queue {
    fn open(queue: u16, limit: u32) -> Result<Queue> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(|e| LabError::sys("open a netfilter netlink socket", e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| LabError::sys("bind the netlink socket", e))?;
        // A large receive buffer absorbs bursts; errors here are not fatal.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
        let mut q = Queue { fd, queue, seq: 0 };
        let mut cmd = Vec::new();
        nla(
            &mut cmd,
            NFQA_CFG_CMD,
            &[NFQNL_CFG_CMD_BIND, 0, 0, libc_af_inet()],
        );
        q.config(&cmd, "bind the queue (is another delayer bound to it?)")?;
        let mut params = Vec::new();
        let mut p = 0u32.to_be_bytes().to_vec();
        p.push(NFQNL_COPY_META);
        nla(&mut params, NFQA_CFG_PARAMS, &p);
        nla(&mut params, NFQA_CFG_QUEUE_MAXLEN, &limit.to_be_bytes());
        q.config(&params, "configure the queue")?;
        Ok(q)
    }

    fn message(&mut self, mtype: u16, flags: u16, attrs: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + 4 + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | mtype).to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[0, 0]); // AF_UNSPEC, NFNETLINK_V0
        m.extend_from_slice(&self.queue.to_be_bytes());
        m.extend_from_slice(attrs);
        m
    }

    fn send(&self, msg: &[u8], what: &str) -> Result<()> {
        sendto(
            self.fd.as_raw_fd(),
            msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map(drop)
        .map_err(|e| LabError::sys(what.to_string(), e))
    }

    /// Sends a config request and waits (bounded) for its acknowledgement.
    fn config(&mut self, attrs: &[u8], what: &str) -> Result<()> {
        let msg = self.message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, attrs);
        let seq = self.seq;
        self.send(&msg, what)?;
        let mut buf = vec![0u8; 8192];
        for _ in 0..64 {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let n = poll(&mut fds, PollTimeout::from(2000u16))
                .map_err(|e| LabError::sys(what.to_string(), e))?;
            if n == 0 {
                return Err(LabError::Timeout {
                    what: what.to_string(),
                    after: Duration::from_secs(2),
                    detail: "no netlink acknowledgement".into(),
                });
            }
            let len = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| LabError::sys(what.to_string(), e))?;
            for (ty, mseq, payload) in messages(&buf[..len]) {
                if ty == NLMSG_ERROR && mseq == seq {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return match code {
                        Some(0) => Ok(()),
                        Some(c) => Err(LabError::sys(what.to_string(), Errno::from_raw(-c))),
                        None => Err(LabError::Invalid(format!(
                            "{what}: short netlink error message"
                        ))),
                    };
                }
            }
        }
        Err(LabError::Invalid(format!(
            "{what}: no acknowledgement among 64 messages"
        )))
    }

    fn verdict(&mut self, id: u32, verdict: u32) -> Result<()> {
        let mut hdr = verdict.to_be_bytes().to_vec();
        hdr.extend_from_slice(&id.to_be_bytes());
        let mut attrs = Vec::new();
        nla(&mut attrs, NFQA_VERDICT_HDR, &hdr);
        let msg = self.message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, &attrs);
        self.send(&msg, "send a verdict")
    }
}

/// `AF_INET` as the low byte of the (ignored since Linux 3.8) bind family field.
fn libc_af_inet() -> u8 {
    2
}

/// Splits a netlink datagram into (type, seq, payload after the 16-byte header).
fn messages(mut data: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        out.push((ty, seq, &data[16..len]));
        let step = (len + 3) & !3;
        if step >= data.len() {
            break;
        }
        data = &data[step..];
    }
    out
}

/// The packet id of an NFQNL_MSG_PACKET payload (nfgenmsg + attributes).
fn packet_id(payload: &[u8]) -> Option<u32> {
    let mut attrs = payload.get(4..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x7fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes([attrs[4], attrs[5], attrs[6], attrs[7]]));
        }
        let step = (len + 3) & !3;
        attrs = attrs.get(step..)?;
    }
    None
}

/// splitmix64: a tiny deterministic generator for jitter.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How long to hold the next packet.
fn hold_time(cfg: &DelayConfig, rng: &mut u64) -> Duration {
    let j = cfg.jitter.as_micros() as u64;
    if j == 0 {
        return cfg.delay;
    }
    let offset = next_random(rng) % (2 * j + 1);
    let base = cfg.delay.as_micros() as u64;
    Duration::from_micros((base + offset).saturating_sub(j))
}

/// Runs the delayer until SIGTERM/SIGINT or `max_runtime`, then releases every
/// held packet and unbinds. Prints one `ready` line to stdout once bound, so a
/// supervisor can wait for it.
pub fn run(cfg: DelayConfig) -> Result<DelayStats> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()
        .map_err(|e| LabError::sys("block SIGTERM/SIGINT", e))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| LabError::sys("create a signalfd", e))?;
    let limit = u32::try_from(cfg.limit).unwrap_or(u32::MAX);
    let mut q = Queue::open(cfg.queue, limit)?;
    println!(
        "p2pd-lab-delay: ready on queue {} (delay {:?}, jitter {:?}, limit {})",
        cfg.queue, cfg.delay, cfg.jitter, cfg.limit
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let start = Instant::now();
    let mut rng = cfg.seed;
    let mut held: BinaryHeap<Reverse<(Instant, u64, u32)>> = BinaryHeap::new();
    let mut order: u64 = 0;
    let mut stats = DelayStats::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let now = Instant::now();
        if now.duration_since(start) >= cfg.max_runtime {
            break;
        }
        // Release everything that is due.
        while let Some(Reverse((due, _, id))) = held.peek().copied() {
            if due > now {
                break;
            }
            held.pop();
            q.verdict(id, NF_ACCEPT)?;
            stats.released += 1;
        }
        let wait = held
            .peek()
            .map(|Reverse((due, _, _))| due.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        // Round up to whole milliseconds so a packet is never released early.
        let ms = wait.as_micros().div_ceil(1000) as u16;
        let (sig_ready, nl_ready) = {
            let mut fds = [
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(q.fd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(LabError::sys("poll", e)),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if sig_ready {
            break;
        }
        if nl_ready {
            let len = match recv(q.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                // The kernel dropped messages because our socket buffer was full:
                // those packets are lost (the queue has no bypass for them). Go on.
                Err(Errno::ENOBUFS) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(LabError::sys("receive from the queue", e)),
            };
            let arrived = Instant::now();
            for (ty, _, payload) in messages(&buf[..len]) {
                if ty != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                    continue;
                }
                let Some(id) = packet_id(payload) else {
                    continue;
                };
                stats.queued += 1;
                if held.len() >= cfg.limit {
                    q.verdict(id, NF_DROP)?;
                    stats.dropped += 1;
                    continue;
                }
                order += 1;
                held.push(Reverse((arrived + hold_time(&cfg, &mut rng), order, id)));
            }
        }
    }
    // Let everything still held go through before unbinding.
    while let Some(Reverse((_, _, id))) = held.pop() {
        q.verdict(id, NF_ACCEPT)?;
        stats.released += 1;
    }
    let mut cmd = Vec::new();
    nla(
        &mut cmd,
        NFQA_CFG_CMD,
        &[NFQNL_CFG_CMD_UNBIND, 0, 0, libc_af_inet()],
    );
    let _ = q.config(&cmd, "unbind the queue");
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_packet_messages() {
        // nlmsghdr (16) + nfgenmsg (4) + NFQA_PACKET_HDR attr (4 + 7 -> padded 12)
        let mut attrs = Vec::new();
        nla(&mut attrs, NFQA_PACKET_HDR, &[0, 0, 1, 2, 0x08, 0x00, 1]);
        let mut msg = Vec::new();
        let len = 16 + 4 + attrs.len();
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET).to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&[2, 0, 0, 7]);
        msg.extend_from_slice(&attrs);
        let two = [msg.clone(), msg].concat();
        let parsed = messages(&two);
        assert_eq!(parsed.len(), 2);
        assert_eq!(packet_id(parsed[1].2), Some(0x0102));
        assert_eq!(packet_id(&[0, 0, 0, 0, 3, 0]), None);
    }

    #[test]
    fn jitter_stays_in_bounds_and_is_seeded() {
        let cfg = DelayConfig {
            queue: 1,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(4),
            limit: 10,
            seed: 42,
            max_runtime: Duration::from_secs(1),
        };
        let (mut a, mut b) = (cfg.seed, cfg.seed);
        let xs: Vec<_> = (0..1000).map(|_| hold_time(&cfg, &mut a)).collect();
        let ys: Vec<_> = (0..1000).map(|_| hold_time(&cfg, &mut b)).collect();
        assert_eq!(xs, ys);
        assert!(
            xs.iter()
                .all(|d| *d >= Duration::from_millis(6) && *d <= Duration::from_millis(14))
        );
        assert!(xs.iter().any(|d| *d < Duration::from_millis(8)));
        assert!(xs.iter().any(|d| *d > Duration::from_millis(12)));
    }
}
