//! The node's current address and the subscribers who want to hear when it changes.
//!
//! The address changes when signaling moves to other brokers (a broker died and the
//! signaler replaced it): whoever published the old one (a name, a peer's notes) needs the
//! new one. Each subscriber holds a channel of capacity one that always keeps the newest
//! address: a slow subscriber skips intermediate addresses, never the last.

use std::sync::Mutex;

use p2pd_core::addr::NodeAddr;

/// The current address, and one channel per subscriber.
#[derive(Debug)]
pub(crate) struct AddrWatch {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    current: NodeAddr,
    /// Each subscriber's sender, and a receiver clone used to drop an unread, stale
    /// address so the newest always fits.
    subscribers: Vec<(
        async_channel::Sender<NodeAddr>,
        async_channel::Receiver<NodeAddr>,
    )>,
}

impl AddrWatch {
    /// Starts at `addr`, with no subscribers.
    pub(crate) fn new(addr: NodeAddr) -> Self {
        AddrWatch {
            inner: Mutex::new(Inner {
                current: addr,
                subscribers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (plain assignments).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current address.
    pub(crate) fn current(&self) -> NodeAddr {
        self.lock().current.clone()
    }

    /// A receiver of every later address change (the newest, if it lags).
    pub(crate) fn subscribe(&self) -> async_channel::Receiver<NodeAddr> {
        let (tx, rx) = async_channel::bounded(1);
        let mut inner = self.lock();
        // Forget subscribers that went away (only our own receiver clone is left).
        inner.subscribers.retain(|(_, r)| r.receiver_count() > 1);
        inner.subscribers.push((tx, rx.clone()));
        rx
    }

    /// Records `addr` as the current address and tells every subscriber, if it differs
    /// from the current one. Returns whether it did.
    pub(crate) fn publish(&self, addr: NodeAddr) -> bool {
        let mut inner = self.lock();
        if inner.current == addr {
            return false;
        }
        inner.current = addr.clone();
        inner.subscribers.retain(|(_, r)| r.receiver_count() > 1);
        for (tx, stale) in &inner.subscribers {
            if tx.try_send(addr.clone()).is_err() {
                // Full: replace the unread older address by this one.
                let _ = stale.try_recv();
                let _ = tx.try_send(addr.clone());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pd_core::addr::{Broker, Interface, Route};
    use p2pd_core::identity::Identity;
    use p2pd_core::nat::{Delta, DeltaKind, NatType};
    use p2pd_core::rng::Rng;

    fn addr(id: &Identity, broker_port: u16) -> NodeAddr {
        let route = Route {
            external: "192.0.2.1".parse().unwrap(),
            internal: "10.0.0.2".parse().unwrap(),
            port: 4000,
            nat: NatType::FullCone,
            delta: Delta {
                kind: DeltaKind::Equal,
                value: 0,
            },
        };
        NodeAddr::new(
            id.public(),
            vec![Broker::Ip(std::net::SocketAddr::new(
                "192.0.2.9".parse().unwrap(),
                broker_port,
            ))],
            vec![Interface {
                v4: Some(route),
                v6: None,
            }],
        )
        .unwrap()
    }

    #[test]
    fn subscribers_get_the_newest_address_and_dead_ones_are_forgotten() {
        let id = Identity::generate(&mut Rng::seed_from_u64(1));
        let w = AddrWatch::new(addr(&id, 1));
        let slow = w.subscribe();
        let gone = w.subscribe();
        drop(gone);
        assert!(!w.publish(addr(&id, 1)), "same address: no change");
        assert!(slow.try_recv().is_err());
        assert!(w.publish(addr(&id, 2)));
        assert!(w.publish(addr(&id, 3)));
        // The slow subscriber skipped 2 and holds the newest.
        assert_eq!(slow.try_recv().unwrap(), addr(&id, 3));
        assert!(slow.try_recv().is_err());
        assert_eq!(w.current(), addr(&id, 3));
        assert_eq!(w.lock().subscribers.len(), 1);
    }
}
