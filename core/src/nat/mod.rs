//! NAT behaviour: the vocabulary (RFC 4787 mapping and filtering, P2PD's seven NAT types
//! and five port-allocation kinds) and the sans-IO classifier that measures them.

mod behaviour;
mod classify;
pub mod delta;
mod lifetime;
pub mod probe;

pub use behaviour::{Delta, DeltaKind, FilteringBehaviour, MappingBehaviour, NatType};
pub use classify::{
    Classification, Classifier, ClassifierConfig, ClassifierSockets, ClassifyError, TestRecord,
};
pub use lifetime::{
    LifetimeConfig, LifetimeProbe, LifetimeSockets, LifetimeSocketsMismatch, MappingLifetime,
};
