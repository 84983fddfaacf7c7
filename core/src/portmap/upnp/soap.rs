//! SOAP 1.1 control messages (UDA 1.1 §3.2) for the IGD actions p2pd uses:
//! `GetExternalIPAddress`, `AddPortMapping`, `DeletePortMapping` (WANIPConnection /
//! WANPPPConnection, IGD 1 and 2) and `AddPinhole`, `UpdatePinhole`, `DeletePinhole`
//! (WANIPv6FirewallControl:1). Requests are emitted as (SOAPAction header, body);
//! responses and faults (`UPnPError` with `errorCode`) are parsed from the HTTP status and
//! body.

use std::net::{IpAddr, Ipv6Addr};

use super::xml::{XmlError, escape, parse_xml};
use crate::portmap::natpmp::MapProtocol;

/// Longest lease IGD 2 allows for a port mapping (one week, WANIPConnection:2 §2.3.19).
pub const MAX_PORT_MAPPING_LEASE: u32 = 604_800;
/// Longest lease WANIPv6FirewallControl:1 allows for a pinhole (one day, §2.5.8).
pub const MAX_PINHOLE_LEASE: u32 = 86_400;

/// One control action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GetExternalIPAddress`.
    GetExternalIpAddress,
    /// `AddPortMapping` with a wildcard remote host.
    AddPortMapping {
        /// External port asked for.
        external_port: u16,
        /// UDP or TCP.
        protocol: MapProtocol,
        /// The port on the internal client.
        internal_port: u16,
        /// The host the mapping points at.
        internal_client: IpAddr,
        /// A description shown in the router's UI.
        description: String,
        /// Lease in seconds; 0 asks for a permanent mapping (only for gateways that
        /// answered 725 OnlyPermanentLeasesSupported; the client still deletes it).
        lease: u32,
    },
    /// `DeletePortMapping` with a wildcard remote host.
    DeletePortMapping {
        /// The mapping's external port.
        external_port: u16,
        /// UDP or TCP.
        protocol: MapProtocol,
    },
    /// `AddPinhole` from any remote host and port.
    AddPinhole {
        /// The IPv6 host the pinhole lets traffic in to.
        internal_client: Ipv6Addr,
        /// Its port.
        internal_port: u16,
        /// UDP or TCP.
        protocol: MapProtocol,
        /// Lease in seconds (1..=86400).
        lease: u32,
    },
    /// `UpdatePinhole`: a new lease for an existing pinhole.
    UpdatePinhole {
        /// The pinhole's `UniqueID`.
        id: u16,
        /// New lease in seconds.
        lease: u32,
    },
    /// `DeletePinhole`.
    DeletePinhole {
        /// The pinhole's `UniqueID`.
        id: u16,
    },
}

fn proto_name(p: MapProtocol) -> &'static str {
    match p {
        MapProtocol::Udp => "UDP",
        MapProtocol::Tcp => "TCP",
    }
}

fn proto_number(p: MapProtocol) -> u8 {
    match p {
        MapProtocol::Udp => 17,
        MapProtocol::Tcp => 6,
    }
}

impl Action {
    /// The action name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::GetExternalIpAddress => "GetExternalIPAddress",
            Action::AddPortMapping { .. } => "AddPortMapping",
            Action::DeletePortMapping { .. } => "DeletePortMapping",
            Action::AddPinhole { .. } => "AddPinhole",
            Action::UpdatePinhole { .. } => "UpdatePinhole",
            Action::DeletePinhole { .. } => "DeletePinhole",
        }
    }

    fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Action::GetExternalIpAddress => vec![],
            Action::AddPortMapping {
                external_port,
                protocol,
                internal_port,
                internal_client,
                description,
                lease,
            } => vec![
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", external_port.to_string()),
                ("NewProtocol", proto_name(*protocol).into()),
                ("NewInternalPort", internal_port.to_string()),
                ("NewInternalClient", internal_client.to_string()),
                ("NewEnabled", "1".into()),
                ("NewPortMappingDescription", description.clone()),
                (
                    "NewLeaseDuration",
                    (*lease).min(MAX_PORT_MAPPING_LEASE).to_string(),
                ),
            ],
            Action::DeletePortMapping {
                external_port,
                protocol,
            } => vec![
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", external_port.to_string()),
                ("NewProtocol", proto_name(*protocol).into()),
            ],
            Action::AddPinhole {
                internal_client,
                internal_port,
                protocol,
                lease,
            } => vec![
                ("RemoteHost", String::new()),
                ("RemotePort", "0".into()),
                ("InternalClient", internal_client.to_string()),
                ("InternalPort", internal_port.to_string()),
                ("Protocol", proto_number(*protocol).to_string()),
                (
                    "LeaseTime",
                    (*lease).clamp(1, MAX_PINHOLE_LEASE).to_string(),
                ),
            ],
            Action::UpdatePinhole { id, lease } => vec![
                ("UniqueID", id.to_string()),
                (
                    "NewLeaseTime",
                    (*lease).clamp(1, MAX_PINHOLE_LEASE).to_string(),
                ),
            ],
            Action::DeletePinhole { id } => vec![("UniqueID", id.to_string())],
        }
    }

    /// The `SOAPAction` header value and the envelope for `service_type`.
    pub fn emit(&self, service_type: &str) -> (String, Vec<u8>) {
        let name = self.name();
        let mut body = format!(
            "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{name} xmlns:u=\"{}\">",
            escape(service_type)
        );
        for (k, v) in self.args() {
            body.push_str(&format!("<{k}>{}</{k}>", escape(&v)));
        }
        body.push_str(&format!("</u:{name}></s:Body></s:Envelope>\r\n"));
        (format!("\"{service_type}#{name}\""), body.into_bytes())
    }
}

/// What a successful action returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResponse {
    /// `GetExternalIPAddress`: the address.
    ExternalIp(IpAddr),
    /// `AddPinhole`: the pinhole's `UniqueID`.
    PinholeId(u16),
    /// Any other action succeeded.
    Done,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// The gateway answered with a UPnP error.
    #[error("the gateway refused {action}: UPnP error {code} {name} ({description})")]
    Fault {
        /// The action.
        action: &'static str,
        /// `errorCode`.
        code: u16,
        /// The UPnP name of the code.
        name: &'static str,
        /// `errorDescription` (at most 120 characters).
        description: String,
    },
    /// The envelope is not valid XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The XML is not the expected SOAP response.
    #[error("the gateway's answer to {action} is not a SOAP response: {why}")]
    Malformed {
        /// The action.
        action: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// An HTTP status other than 200 without a SOAP fault.
    #[error("the gateway answered {action} with HTTP status {status}")]
    Status {
        /// The action.
        action: &'static str,
        /// The status.
        status: u16,
    },
}

impl SoapError {
    /// The UPnP error code, if the gateway sent one.
    pub fn code(&self) -> Option<u16> {
        match self {
            SoapError::Fault { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The UPnP name of an IGD error code (WANIPConnection:2 §2.4, WANIPv6FirewallControl:1
/// §2.4, UDA 1.1 §3.2.2).
pub fn error_name(code: u16) -> &'static str {
    match code {
        401 => "InvalidAction",
        402 => "InvalidArgs",
        501 => "ActionFailed",
        600 => "ArgumentValueInvalid",
        601 => "ArgumentValueOutOfRange",
        606 => "ActionNotAuthorized",
        702 => "FirewallDisabled",
        703 => "InboundPinholeNotAllowed",
        704 => "NoSuchEntry",
        705 => "ProtocolNotSupported",
        706 => "InternalPortWildcardingNotAllowed",
        707 => "ProtocolWildcardingNotAllowed",
        708 => "InvalidLayer3Address",
        713 => "SpecifiedArrayIndexInvalid",
        714 => "NoSuchEntryInArray",
        715 => "WildCardNotPermittedInSrcIP",
        716 => "WildCardNotPermittedInExtPort",
        718 => "ConflictInMappingEntry",
        724 => "SamePortValuesRequired",
        725 => "OnlyPermanentLeasesSupported",
        726 => "RemoteHostOnlySupportsWildcard",
        727 => "ExternalPortOnlySupportsWildcard",
        728 => "NoPortMapsAvailable",
        729 => "ConflictWithOtherMechanisms",
        732 => "WildCardNotPermittedInIntPort",
        _ => "unknown",
    }
}

/// Parses the answer to `action` (HTTP `status` and `body`).
pub fn parse_response(
    action: &Action,
    status: u16,
    body: &[u8],
) -> Result<ActionResponse, SoapError> {
    let name = action.name();
    let malformed = |why| SoapError::Malformed { action: name, why };
    let doc = match parse_xml(body) {
        Ok(d) => d,
        Err(e) if status == 200 => return Err(e.into()),
        Err(_) => {
            return Err(SoapError::Status {
                action: name,
                status,
            });
        }
    };
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" {
        return Err(malformed("no Envelope"));
    }
    let body_el = env
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "Body")
        .ok_or_else(|| malformed("no Body"))?;
    let first = body_el
        .children()
        .find(|n| n.is_element())
        .ok_or_else(|| malformed("empty Body"))?;
    if first.tag_name().name() == "Fault" {
        let err = first
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "UPnPError");
        let text = |field: &str| {
            err.and_then(|e| {
                e.children()
                    .find(|n| n.tag_name().name() == field)
                    .and_then(|n| n.text())
                    .map(str::trim)
            })
        };
        let code = text("errorCode")
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| malformed("Fault without a UPnPError errorCode"))?;
        return Err(SoapError::Fault {
            action: name,
            code,
            name: error_name(code),
            description: text("errorDescription")
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect(),
        });
    }
    if status != 200 {
        return Err(SoapError::Status {
            action: name,
            status,
        });
    }
    let expected = format!("{name}Response");
    if first.tag_name().name() != expected {
        return Err(malformed("the response element is not <ActionResponse>"));
    }
    let arg = |field: &str| {
        first
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == field)
            .map(|n| n.text().unwrap_or_default().trim())
    };
    match action {
        Action::GetExternalIpAddress => {
            let ip =
                arg("NewExternalIPAddress").ok_or_else(|| malformed("no NewExternalIPAddress"))?;
            ip.parse::<IpAddr>()
                .map(ActionResponse::ExternalIp)
                .map_err(|_| malformed("NewExternalIPAddress is empty or not an IP address; the gateway may not be connected"))
        }
        Action::AddPinhole { .. } => arg("UniqueID")
            .and_then(|v| v.parse::<u16>().ok())
            .map(ActionResponse::PinholeId)
            .ok_or_else(|| malformed("no valid UniqueID")),
        _ => Ok(ActionResponse::Done),
    }
}

/// Builds a response envelope (for tests, fuzzing and the simulator's gateway).
pub fn emit_response(service_type: &str, action: &str, args: &[(&str, &str)]) -> Vec<u8> {
    let mut b = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action}Response xmlns:u=\"{}\">",
        escape(service_type)
    );
    for (k, v) in args {
        b.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    b.push_str(&format!("</u:{action}Response></s:Body></s:Envelope>\r\n"));
    b.into_bytes()
}

/// Builds a fault envelope (for tests and fuzzing).
pub fn emit_fault(code: u16, description: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode><errorDescription>{}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n",
        escape(description)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portmap::upnp::description::{WAN_IP_CONNECTION_1, WAN_IPV6_FIREWALL_CONTROL_1};

    #[test]
    fn add_port_mapping_envelope() {
        let a = Action::AddPortMapping {
            external_port: 40000,
            protocol: MapProtocol::Tcp,
            internal_port: 40000,
            internal_client: "10.0.0.2".parse().unwrap(),
            description: "p2pd <node>".into(),
            lease: 700_000,
        };
        let (hdr, body) = a.emit(WAN_IP_CONNECTION_1);
        assert_eq!(
            hdr,
            "\"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        );
        let s = String::from_utf8(body.clone()).unwrap();
        assert!(s.contains("<u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewRemoteHost></NewRemoteHost><NewExternalPort>40000</NewExternalPort><NewProtocol>TCP</NewProtocol>"), "{s}");
        assert!(s.contains("<NewPortMappingDescription>p2pd &lt;node&gt;</NewPortMappingDescription><NewLeaseDuration>604800</NewLeaseDuration>"));
        // The envelope is well-formed XML.
        assert!(parse_xml(&body).is_ok());
    }

    #[test]
    fn pinhole_envelopes() {
        let a = Action::AddPinhole {
            internal_client: "2001:db8:10:0::2".parse().unwrap(),
            internal_port: 40000,
            protocol: MapProtocol::Udp,
            lease: 100_000,
        };
        let s = String::from_utf8(a.emit(WAN_IPV6_FIREWALL_CONTROL_1).1).unwrap();
        assert!(s.contains("<RemoteHost></RemoteHost><RemotePort>0</RemotePort><InternalClient>2001:db8:10::2</InternalClient><InternalPort>40000</InternalPort><Protocol>17</Protocol><LeaseTime>86400</LeaseTime>"), "{s}");
        let ok = emit_response(
            WAN_IPV6_FIREWALL_CONTROL_1,
            "AddPinhole",
            &[("UniqueID", "7")],
        );
        assert_eq!(
            parse_response(&a, 200, &ok),
            Ok(ActionResponse::PinholeId(7))
        );
        let u = Action::UpdatePinhole { id: 7, lease: 60 };
        let s = String::from_utf8(u.emit(WAN_IPV6_FIREWALL_CONTROL_1).1).unwrap();
        assert!(s.contains("<UniqueID>7</UniqueID><NewLeaseTime>60</NewLeaseTime>"));
        let ok = emit_response(WAN_IPV6_FIREWALL_CONTROL_1, "UpdatePinhole", &[]);
        assert_eq!(parse_response(&u, 200, &ok), Ok(ActionResponse::Done));
        // A response to another action is refused.
        assert!(parse_response(&Action::DeletePinhole { id: 7 }, 200, &ok).is_err());
    }

    #[test]
    fn external_ip_and_faults() {
        let a = Action::GetExternalIpAddress;
        let ok = b"<?xml version=\"1.0\"?>\r\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><m:GetExternalIPAddressResponse xmlns:m=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewExternalIPAddress>198.51.100.2</NewExternalIPAddress></m:GetExternalIPAddressResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>";
        assert_eq!(
            parse_response(&a, 200, ok),
            Ok(ActionResponse::ExternalIp("198.51.100.2".parse().unwrap()))
        );
        let empty = emit_response(
            WAN_IP_CONNECTION_1,
            "GetExternalIPAddress",
            &[("NewExternalIPAddress", "")],
        );
        assert!(matches!(
            parse_response(&a, 200, &empty),
            Err(SoapError::Malformed { .. })
        ));
        let f = emit_fault(718, "ConflictInMappingEntry");
        let e = parse_response(&a, 500, &f).unwrap_err();
        assert_eq!(e.code(), Some(718));
        assert!(
            e.to_string()
                .contains("UPnP error 718 ConflictInMappingEntry"),
            "{e}"
        );
        assert_eq!(
            parse_response(&a, 404, b"not found"),
            Err(SoapError::Status {
                action: "GetExternalIPAddress",
                status: 404
            })
        );
        assert!(parse_response(&a, 200, b"<html/>").is_err());
        assert!(
            parse_response(&a, 200, b"<s:Envelope xmlns:s=\"x\"><s:Body/></s:Envelope>").is_err()
        );
    }
}
