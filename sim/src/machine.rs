//! Any core state machine ([`Machine`]) as a simulated host's endpoint.

use std::net::SocketAddr;
use std::time::Instant;

pub use p2pd_core::Machine;

use crate::endpoint::{Datagram, Endpoint};

/// Runs a [`Machine`] on a host and keeps its events.
#[derive(Debug)]
pub struct MachineEndpoint<M: Machine> {
    machine: M,
    events: Vec<M::Event>,
}

/// Events kept per endpoint; a machine that reports more is misbehaving.
const MAX_EVENTS: usize = 4096;

impl<M: Machine> MachineEndpoint<M> {
    /// Wraps a machine.
    pub fn new(machine: M) -> Self {
        MachineEndpoint {
            machine,
            events: Vec::new(),
        }
    }

    /// The events so far.
    pub fn events(&self) -> &[M::Event] {
        &self.events
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, to give it commands (inside [`crate::Network::with_endpoint`], which
    /// then sends what they produced).
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    fn collect(&mut self) {
        while let Some(e) = self.machine.poll_event() {
            if self.events.len() < MAX_EVENTS {
                self.events.push(e);
            }
        }
    }
}

impl<M: Machine> Endpoint for MachineEndpoint<M> {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.machine.handle_input(now, source, destination, bytes);
        self.collect();
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.machine
            .poll_transmit()
            .and_then(|t| Datagram::from_transmit(&t))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout().map(|t| t.at)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.machine.handle_timeout(now);
        self.collect();
    }
}
