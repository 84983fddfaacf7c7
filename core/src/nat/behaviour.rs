//! Names for what a NAT does (RFC 4787 §4.1, §5) and P2PD's 7 × 5 vocabulary.

use std::fmt;
use std::str::FromStr;

/// How a NAT reuses an external mapping (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingBehaviour {
    /// One mapping per internal address:port, whatever the destination ("cone").
    EndpointIndependent,
    /// A new mapping per destination IP.
    AddressDependent,
    /// A new mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound packets a NAT or firewall lets through to a mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilteringBehaviour {
    /// Anyone may send to the mapping ("full cone").
    EndpointIndependent,
    /// Only IPs the inside host has sent to ("restricted cone").
    AddressDependent,
    /// Only IP:port pairs the inside host has sent to ("port-restricted").
    AddressAndPortDependent,
}

impl MappingBehaviour {
    /// The user-facing name (`endpoint_independent`, …).
    pub const fn name(self) -> &'static str {
        match self {
            MappingBehaviour::EndpointIndependent => "endpoint_independent",
            MappingBehaviour::AddressDependent => "address_dependent",
            MappingBehaviour::AddressAndPortDependent => "address_and_port_dependent",
        }
    }
}

impl FilteringBehaviour {
    /// The user-facing name (`endpoint_independent`, …).
    pub const fn name(self) -> &'static str {
        match self {
            FilteringBehaviour::EndpointIndependent => "endpoint_independent",
            FilteringBehaviour::AddressDependent => "address_dependent",
            FilteringBehaviour::AddressAndPortDependent => "address_and_port_dependent",
        }
    }
}

/// P2PD's seven NAT types, derived from mapping and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NatType {
    /// No translation and no filtering: the host is reachable.
    OpenInternet,
    /// No translation, but a stateful firewall filters unsolicited inbound traffic.
    SymmetricUdpFirewall,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Destination-dependent mapping.
    Symmetric,
    /// No UDP gets through (TCP may).
    Blocked,
}

impl NatType {
    /// All seven, in P2PD's order.
    pub const ALL: [NatType; 7] = [
        NatType::OpenInternet,
        NatType::SymmetricUdpFirewall,
        NatType::FullCone,
        NatType::RestrictedCone,
        NatType::PortRestrictedCone,
        NatType::Symmetric,
        NatType::Blocked,
    ];

    /// The user-facing name (`open_internet`, `full_cone`, …).
    pub const fn name(self) -> &'static str {
        match self {
            NatType::OpenInternet => "open_internet",
            NatType::SymmetricUdpFirewall => "symmetric_udp_firewall",
            NatType::FullCone => "full_cone",
            NatType::RestrictedCone => "restricted_cone",
            NatType::PortRestrictedCone => "port_restricted_cone",
            NatType::Symmetric => "symmetric",
            NatType::Blocked => "blocked",
        }
    }

    /// The type a NAT (or, with `translated == false`, a firewall) with these behaviours
    /// has. Address-dependent mapping counts as symmetric: a new mapping per destination
    /// defeats a peer who learned the address from a STUN server.
    pub fn from_behaviour(
        translated: bool,
        mapping: MappingBehaviour,
        filtering: FilteringBehaviour,
    ) -> NatType {
        if !translated {
            return match filtering {
                FilteringBehaviour::EndpointIndependent => NatType::OpenInternet,
                _ => NatType::SymmetricUdpFirewall,
            };
        }
        match (mapping, filtering) {
            (MappingBehaviour::EndpointIndependent, FilteringBehaviour::EndpointIndependent) => {
                NatType::FullCone
            }
            (MappingBehaviour::EndpointIndependent, FilteringBehaviour::AddressDependent) => {
                NatType::RestrictedCone
            }
            (
                MappingBehaviour::EndpointIndependent,
                FilteringBehaviour::AddressAndPortDependent,
            ) => NatType::PortRestrictedCone,
            _ => NatType::Symmetric,
        }
    }

    /// Whether a peer can reach a port of ours without our sending first (no NAT, no filter).
    pub fn is_open(self) -> bool {
        self == NatType::OpenInternet
    }

    /// Whether the external address learned from one server is the one every peer sees.
    pub fn has_stable_mapping(self) -> bool {
        matches!(
            self,
            NatType::OpenInternet
                | NatType::SymmetricUdpFirewall
                | NatType::FullCone
                | NatType::RestrictedCone
                | NatType::PortRestrictedCone
        )
    }
}

/// How a NAT picks the external port of a new mapping (P2PD's "delta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeltaKind {
    /// External port = local port.
    Equal,
    /// Distances between local ports are kept between external ports (external = local + k).
    Preserving,
    /// Each new mapping takes the previous external port + d, whatever the local port.
    Independent,
    /// The external port moves by d only when the local port moves by 1.
    Dependent,
    /// Unpredictable.
    Random,
}

impl DeltaKind {
    /// All five, in P2PD's order.
    pub const ALL: [DeltaKind; 5] = [
        DeltaKind::Equal,
        DeltaKind::Preserving,
        DeltaKind::Independent,
        DeltaKind::Dependent,
        DeltaKind::Random,
    ];

    /// The user-facing name (`equal`, `preserving`, …).
    pub const fn name(self) -> &'static str {
        match self {
            DeltaKind::Equal => "equal",
            DeltaKind::Preserving => "preserving",
            DeltaKind::Independent => "independent",
            DeltaKind::Dependent => "dependent",
            DeltaKind::Random => "random",
        }
    }

    /// Whether the next external port can be predicted from what was seen.
    pub fn is_predictable(self) -> bool {
        self != DeltaKind::Random
    }
}

/// A delta kind with its value: the port step for `Independent` and `Dependent`, the
/// offset (external − local, modulo 2^16) for `Preserving`, 0 otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delta {
    /// The kind.
    pub kind: DeltaKind,
    /// Its value.
    pub value: i32,
}

macro_rules! names {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<_> = <$t>::ALL.iter().map(|v| v.name()).collect();
                        format!(
                            "unknown {} '{s}': expected one of {}",
                            stringify!($t),
                            names.join(", ")
                        )
                    })
            }
        }
    };
}

names!(NatType);
names!(DeltaKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in NatType::ALL {
            assert_eq!(t.name().parse::<NatType>().unwrap(), t);
        }
        for d in DeltaKind::ALL {
            assert_eq!(d.to_string().parse::<DeltaKind>().unwrap(), d);
        }
        assert!("cone".parse::<NatType>().unwrap_err().contains("full_cone"));
    }

    #[test]
    fn types_from_behaviour() {
        use FilteringBehaviour as F;
        use MappingBehaviour as M;
        assert_eq!(
            NatType::from_behaviour(false, M::EndpointIndependent, F::EndpointIndependent),
            NatType::OpenInternet
        );
        assert_eq!(
            NatType::from_behaviour(false, M::EndpointIndependent, F::AddressAndPortDependent),
            NatType::SymmetricUdpFirewall
        );
        assert_eq!(
            NatType::from_behaviour(true, M::EndpointIndependent, F::AddressDependent),
            NatType::RestrictedCone
        );
        assert_eq!(
            NatType::from_behaviour(true, M::AddressDependent, F::EndpointIndependent),
            NatType::Symmetric
        );
    }
}
