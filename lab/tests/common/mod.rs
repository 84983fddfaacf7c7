//! Helpers shared by the lab's self-tests: a minimal STUN Binding client and UDP
//! probes, all run inside a namespace through `Netns::enter`/`udp_bind`.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use p2pd_lab::{Netns, STUN_PORT};

const COOKIE: u32 = 0x2112_A442;

/// Sends an RFC 5389 Binding request from `sock` to `server` and returns the
/// XOR-MAPPED-ADDRESS (3 tries, 500 ms each).
pub fn stun_mapped(sock: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    let mut txid = [0u8; 12];
    let seed = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    for (i, b) in txid.iter_mut().enumerate() {
        *b = (seed as usize * 31 + i * 7 + server.port() as usize) as u8;
    }
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&COOKIE.to_be_bytes());
    req.extend_from_slice(&txid);
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        sock.send_to(&req, server).ok()?;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from != server || n < 20 || buf[8..20] != txid {
                continue;
            }
            return parse_xor_mapped(&buf[20..n]);
        }
    }
    None
}

fn parse_xor_mapped(mut attrs: &[u8]) -> Option<SocketAddr> {
    while attrs.len() >= 4 {
        let ty = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let v = attrs.get(4..4 + len)?;
        if ty == 0x0020 && v.len() >= 8 && v[1] == 0x01 {
            let port = u16::from_be_bytes([v[2], v[3]]) ^ (COOKIE >> 16) as u16;
            let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ COOKIE;
            return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
        }
        attrs = attrs.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

/// Mapped address of a fresh socket bound to `bind` inside `ns`, as seen by the
/// STUN server at `server_ip`.
pub fn mapped_from(ns: &Netns, bind: SocketAddr, server_ip: Ipv4Addr) -> Option<SocketAddr> {
    let sock = ns.udp_bind(bind).expect("bind probe socket");
    stun_mapped(&sock, SocketAddr::new(IpAddr::V4(server_ip), STUN_PORT))
}

/// Sends `count` datagrams from `from_ns`/`from` to `to`, and says whether `sock`
/// (already bound in the receiving namespace) got one within `wait`.
pub fn delivered(
    from_ns: &Netns,
    from: SocketAddr,
    to: SocketAddr,
    sock: &UdpSocket,
    wait: Duration,
) -> bool {
    // Forget datagrams left over from an earlier probe.
    let mut buf = [0u8; 64];
    sock.set_nonblocking(true).expect("nonblocking");
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_nonblocking(false).expect("blocking");
    let tx = from_ns.udp_bind(from).expect("bind sender");
    for _ in 0..3 {
        tx.send_to(b"inbound probe", to).expect("send probe");
    }
    sock.set_read_timeout(Some(wait)).expect("timeout");
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"inbound probe")
}

/// The "NAT with ... Mapping/Filtering" verdicts of `turnutils_natdiscovery -m -f`.
pub fn natdiscovery(ns: &Netns) -> (Option<String>, Option<String>, String) {
    let d = p2pd_lab::tools::natdiscovery(ns, &p2pd_lab::SERVER_IP1.to_string())
        .expect("run turnutils_natdiscovery");
    (d.mapping, d.filtering, d.text)
}
