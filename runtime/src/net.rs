//! Sockets built with socket2 — address reuse, IPv6-only, bind-before-connect — then
//! handed to a [`Runtime`]. Shared by every adapter.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pd_core::rng::Rng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::runtime::{AsyncTcpStream, Runtime};
use crate::timer::until;

/// Pending connections a listener queues before accepting.
const BACKLOG: i32 = 128;

/// The transport a bind error concerns, for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        })
    }
}

/// Turns an OS bind error into one that says what to do; the kind is kept.
pub fn bind_error(proto: Proto, addr: SocketAddr, e: io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (port {}); use a port of 1024 or more",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => {
            format!("{} is not an address of this host", addr.ip())
        }
        io::ErrorKind::AddrInUse => "the port is in use by another socket".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot bind {proto} {addr}: {hint}"))
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol, reuse: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse {
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking UDP socket bound to `addr`.
///
/// `reuse` sets SO_REUSEADDR (and SO_REUSEPORT on Unix) so that several sockets can share
/// a local port, which hole punching needs. IPv6 sockets are IPv6-only, so an IPv4 and an
/// IPv6 socket can hold the same port. Binding to one interface's address makes every
/// datagram leave from that address.
pub fn udp_socket(addr: SocketAddr, reuse: bool) -> io::Result<std::net::UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP, reuse)?;
    socket
        .bind(&addr.into())
        .map_err(|e| bind_error(Proto::Udp, addr, e))?;
    Ok(socket.into())
}

/// A non-blocking TCP socket bound to `addr`, not yet listening or connecting.
pub fn tcp_socket(addr: SocketAddr, reuse: bool) -> io::Result<Socket> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, reuse)?;
    socket
        .bind(&addr.into())
        .map_err(|e| bind_error(Proto::Tcp, addr, e))?;
    Ok(socket)
}

/// Binds a UDP socket on `rt`; see [`udp_socket`].
pub fn bind_udp<R: Runtime>(rt: &R, addr: SocketAddr, reuse: bool) -> io::Result<R::UdpSocket> {
    rt.wrap_udp(udp_socket(addr, reuse)?)
}

/// A TCP listener on `addr` on `rt`. With `reuse`, other sockets (a listener and
/// outgoing connections for hole punching) may share the port.
pub fn listen_tcp<R: Runtime>(rt: &R, addr: SocketAddr, reuse: bool) -> io::Result<R::TcpListener> {
    let socket = tcp_socket(addr, reuse)?;
    socket.listen(BACKLOG)?;
    rt.wrap_tcp_listener(socket.into())
}

/// Connects from `local` to `remote` on `rt`: the socket is bound first
/// (bind-before-connect), so the connection leaves from exactly `local`. With `reuse`
/// the port may be shared with a listener and other connections, as TCP hole punching
/// and simultaneous open need.
pub async fn connect_tcp<R: Runtime>(
    rt: &R,
    local: SocketAddr,
    remote: SocketAddr,
    reuse: bool,
) -> io::Result<R::TcpStream> {
    let socket = tcp_socket(local, reuse)?;
    match socket.connect(&remote.into()) {
        Ok(()) => {}
        Err(e) if connect_in_progress(&e) => {}
        Err(e) => return Err(connect_error(local, remote, e)),
    }
    let stream = rt.wrap_tcp_stream(socket.into())?;
    poll_fn(|cx| stream.poll_writable(cx))
        .await
        .map_err(|e| connect_error(local, remote, e))?;
    if let Some(e) = stream.take_error()? {
        return Err(connect_error(local, remote, e));
    }
    // Writable without an error but not connected cannot happen on a sane kernel; the
    // peer address check makes sure.
    stream
        .peer_addr()
        .map_err(|e| connect_error(local, remote, e))?;
    Ok(stream)
}

/// Connects from `local` to `remote` again and again (with address reuse) until one
/// attempt succeeds or `deadline` passes, pausing a random time below `max_pause` after
/// each refusal: TCP hole punching and simultaneous open, where the peer's SYN must
/// cross ours, need exactly this (the random pause keeps two peers from retrying in
/// lockstep). The last error is returned at the deadline.
pub async fn connect_tcp_until<R: Runtime>(
    rt: &R,
    local: SocketAddr,
    remote: SocketAddr,
    deadline: Instant,
    max_pause: Duration,
    rng: &mut Rng,
) -> io::Result<R::TcpStream> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match until(rt, deadline, connect_tcp(rt, local, remote, true)).await {
            Some(Ok(stream)) => return Ok(stream),
            Some(Err(e)) => e,
            None => io::Error::new(io::ErrorKind::TimedOut, "attempt cut off by the deadline"),
        };
        let pause_us = u64::try_from(max_pause.as_micros()).unwrap_or(u64::MAX);
        let pause = Duration::from_micros(rng.below(pause_us));
        if rt.now() + pause >= deadline {
            return Err(io::Error::new(
                last.kind(),
                format!("TCP {local} -> {remote}: no connection after {attempts} attempts: {last}"),
            ));
        }
        rt.sleep_until(rt.now() + pause).await;
    }
}

fn connect_in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    // Windows reports a non-blocking connect in progress as WSAEWOULDBLOCK.
    e.kind() == io::ErrorKind::WouldBlock
}

fn connect_error(local: SocketAddr, remote: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("TCP connect {local} -> {remote}: {e}"))
}

/// The unspecified address of `peer`'s family with port 0: what a client binds to reach it.
pub fn any_local_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

/// The local IP the kernel would send from to reach `dest`: a connected UDP socket learns
/// it from the routing table without sending anything.
pub fn route_local_ip(dest: SocketAddr) -> io::Result<IpAddr> {
    let s = std::net::UdpSocket::bind(any_local_for(dest))?;
    s.connect(dest)?;
    Ok(s.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_says_what_to_do() {
        let addr: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let e = bind_error(Proto::Udp, addr, io::ErrorKind::PermissionDenied.into());
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(msg.contains("cannot bind UDP 0.0.0.0:80"), "{msg}");
        assert!(msg.contains("CAP_NET_BIND_SERVICE"), "{msg}");
        assert!(msg.contains("port of 1024 or more"), "{msg}");
    }

    #[test]
    fn foreign_address_is_named() {
        // 192.0.2.0/24 is documentation space: not configured on any test host.
        let addr: SocketAddr = "192.0.2.77:0".parse().unwrap();
        let e = udp_socket(addr, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(
            e.to_string()
                .contains("192.0.2.77 is not an address of this host"),
            "{e}"
        );
        let e = tcp_socket(addr, true).unwrap_err();
        assert!(e.to_string().starts_with("cannot bind TCP"), "{e}");
    }

    #[test]
    fn reuse_lets_two_sockets_share_a_port() {
        let a = tcp_socket("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let local = a.local_addr().unwrap().as_socket().unwrap();
        assert!(tcp_socket(local, true).is_ok());
        assert!(tcp_socket(local, false).is_err());
    }

    #[test]
    fn loopback_routes_from_loopback() {
        let ip = route_local_ip("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(ip.is_loopback());
    }
}
