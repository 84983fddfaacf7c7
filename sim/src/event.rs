//! The scheduler's queue: events ordered by virtual time, ties broken by insertion order so
//! the same setup always runs the same way.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::endpoint::Datagram;
use crate::network::{HostId, RouterId};

/// Where a datagram arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// The public internet (routes by destination IP).
    Internet,
    /// A router's LAN side (from one of its inside hosts or routers).
    RouterLan(RouterId),
    /// A router's public side (from its parent).
    RouterWan(RouterId),
    /// A host.
    Host(HostId),
}

#[derive(Debug)]
pub(crate) enum EventKind {
    Arrive { node: Node, datagram: Datagram },
    Timer { host: HostId },
}

#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) at: Duration,
    seq: u64,
    pub(crate) kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so the max-heap pops the earliest (then first-scheduled) event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-queue of events by (time, sequence number).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Event>,
    seq: u64,
}

impl EventQueue {
    pub(crate) fn push(&mut self, at: Duration, kind: EventKind) {
        self.seq += 1;
        self.heap.push(Event {
            at,
            seq: self.seq,
            kind,
        });
    }

    pub(crate) fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.heap.pop()
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut q = EventQueue::default();
        let h = |i| EventKind::Timer {
            host: HostId::from_index(i),
        };
        q.push(Duration::from_millis(5), h(0));
        q.push(Duration::from_millis(1), h(1));
        q.push(Duration::from_millis(5), h(2));
        q.push(Duration::from_millis(1), h(3));
        let order: Vec<usize> = std::iter::from_fn(|| q.pop())
            .map(|e| match e.kind {
                EventKind::Timer { host } => host.index(),
                EventKind::Arrive { .. } => usize::MAX,
            })
            .collect();
        assert_eq!(order, [1, 3, 0, 2]);
    }
}
