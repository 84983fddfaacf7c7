//! The contract every core state machine keeps, as a trait, so one driver (a runtime's,
//! or the simulator's) can run any of them.

use std::net::SocketAddr;
use std::time::Instant;

use crate::nat::{Classification, Classifier, LifetimeProbe, MappingLifetime};
use crate::time::Timeout;
use crate::transmit::Transmit;
use crate::turn::{TurnClient, TurnClientEvent, TurnServer, TurnServerEvent};

/// Input and timeouts in; transmits, deadlines and events out. After every
/// `handle_*` call the driver drains `poll_transmit` and `poll_event`, then sleeps until
/// `poll_timeout`.
pub trait Machine {
    /// What the machine reports.
    type Event;
    /// A received datagram: from `source`, on local address `destination`.
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    );
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>>;
    /// When to call `handle_timeout` next, and why.
    fn poll_timeout(&self) -> Option<Timeout>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
}

macro_rules! machine {
    ($t:ty, $event:ty) => {
        impl Machine for $t {
            type Event = $event;
            fn handle_input(
                &mut self,
                now: Instant,
                source: SocketAddr,
                destination: SocketAddr,
                bytes: &[u8],
            ) {
                <$t>::handle_input(self, now, source, destination, bytes);
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now);
            }
            fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
                <$t>::poll_transmit(self)
            }
            fn poll_timeout(&self) -> Option<Timeout> {
                <$t>::poll_timeout(self)
            }
            fn poll_event(&mut self) -> Option<$event> {
                <$t>::poll_event(self)
            }
        }
    };
}

machine!(Classifier, Classification);
machine!(LifetimeProbe, MappingLifetime);
machine!(TurnClient, TurnClientEvent);
machine!(TurnServer, TurnServerEvent);
machine!(crate::punch::UdpPunch, crate::punch::UdpPunchEvent);
machine!(
    crate::portmap::client::PortMapClient,
    crate::portmap::client::PortMapEvent
);
machine!(crate::names::NameClient, crate::names::Finished);
machine!(crate::names::Registrar, crate::names::RegistrarEvent);
