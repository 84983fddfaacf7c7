//! Signaling: signed, encrypted, deduplicated messages between nodes over MQTT brokers.
//!
//! [`seal`] / [`open`] are the envelope (Ed25519 signature inside an X25519 +
//! ChaCha20-Poly1305 box; see [`envelope`] for the format and why); [`Dedupe`] is the
//! bounded replay cache; [`Signaler`] is the machine that listens on a node's brokers
//! and sends through a peer's. P2PD's signaling (spec §4) sends its first message in
//! plaintext, signs nothing and names brokers by index into a shared list; each of those
//! is fixed here.

mod dedupe;
pub mod envelope;
mod error;
mod signaler;

pub use dedupe::Dedupe;
pub use envelope::{MAX_BODY, Message, MessageId, open, seal};
pub use error::SignalError;
pub use signaler::{ConnId, SendError, SignalEvent, Signaler, SignalerConfig, topic_for};
