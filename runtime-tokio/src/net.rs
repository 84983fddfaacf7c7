//! Sockets built with socket2, then handed to tokio.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking UDP socket to `addr`.
///
/// `reuse` sets SO_REUSEADDR (and SO_REUSEPORT on Unix) so that several sockets can share
/// a local port, which hole punching needs. IPv6 sockets are IPv6-only, so an IPv4 and an
/// IPv6 socket can hold the same port.
pub fn bind_udp(addr: SocketAddr, reuse: bool) -> io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse {
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The unspecified address of `peer`'s family with port 0: what a client binds to reach it.
pub fn any_local_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}
