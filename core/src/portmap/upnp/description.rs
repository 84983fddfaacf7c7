//! The device description (UDA 1.1 §2.3): the XML at the SSDP `LOCATION` that lists the
//! gateway's services. p2pd looks for the services that open ports —
//! `WANIPConnection` (v2, then v1), `WANPPPConnection:1` for IPv4 port mappings and
//! `WANIPv6FirewallControl:1` for IPv6 pinholes — and resolves their `controlURL`
//! against `URLBase` (UDA 1.0) or the description's own URL.

use super::url::{HttpUrl, UrlError};
use super::xml::{XmlError, parse_xml};

/// Most services read from one description.
pub const MAX_SERVICES: usize = 64;

/// `WANIPConnection:2` (IGD 2).
pub const WAN_IP_CONNECTION_2: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";
/// `WANIPConnection:1` (IGD 1).
pub const WAN_IP_CONNECTION_1: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
/// `WANPPPConnection:1` (IGD 1, PPP uplinks).
pub const WAN_PPP_CONNECTION_1: &str = "urn:schemas-upnp-org:service:WANPPPConnection:1";
/// `WANIPv6FirewallControl:1` (IGD 2): IPv6 pinholes.
pub const WAN_IPV6_FIREWALL_CONTROL_1: &str =
    "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1";

/// Why a description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    /// Not well-formed (bounded) XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The root is not a UPnP `<root>`.
    #[error("the gateway's device description has no <root> element")]
    NotADescription,
    /// A URL in it is unusable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// More than [`MAX_SERVICES`] services.
    #[error("the gateway's device description lists too many services")]
    TooManyServices,
}

/// A service of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The `serviceType` URN.
    pub service_type: String,
    /// The absolute control URL.
    pub control_url: HttpUrl,
}

/// The services found in a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Every service with a type and a usable control URL, in document order.
    pub services: Vec<Service>,
}

impl Description {
    /// Parses `xml`, fetched from `location`.
    pub fn parse(xml: &[u8], location: &HttpUrl) -> Result<Self, DescriptionError> {
        let doc = parse_xml(xml)?;
        let root = doc.root_element();
        if root.tag_name().name() != "root" {
            return Err(DescriptionError::NotADescription);
        }
        let base = match root
            .children()
            .find(|n| n.tag_name().name() == "URLBase")
            .and_then(|n| n.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(b) => location.join(b)?,
            None => location.clone(),
        };
        let mut services = Vec::new();
        for s in root
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "service")
        {
            let child = |name: &str| {
                s.children()
                    .find(|n| n.tag_name().name() == name)
                    .and_then(|n| n.text())
                    .map(str::trim)
            };
            let (Some(ty), Some(ctl)) = (child("serviceType"), child("controlURL")) else {
                continue;
            };
            if ty.is_empty() || ctl.is_empty() {
                continue;
            }
            let Ok(control_url) = base.join(ctl) else {
                continue;
            };
            if services.len() >= MAX_SERVICES {
                return Err(DescriptionError::TooManyServices);
            }
            services.push(Service {
                service_type: ty.to_string(),
                control_url,
            });
        }
        Ok(Self { services })
    }

    /// The service for IPv4 port mappings: `WANIPConnection:2`, then `:1`, then
    /// `WANPPPConnection:1`.
    pub fn port_mapping_service(&self) -> Option<&Service> {
        [
            WAN_IP_CONNECTION_2,
            WAN_IP_CONNECTION_1,
            WAN_PPP_CONNECTION_1,
        ]
        .iter()
        .find_map(|t| self.services.iter().find(|s| s.service_type == *t))
    }

    /// The service for IPv6 pinholes: `WANIPv6FirewallControl:1`.
    pub fn pinhole_service(&self) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.service_type == WAN_IPV6_FIREWALL_CONTROL_1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from miniupnpd 2.3.1's `rootDesc.xml` (IPv6 build).
    pub(crate) const MINIUPNPD: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><controlURL>/ctl/CmnIfCfg</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPv6Firewall1</serviceId><SCPDURL>/WANIP6FC.xml</SCPDURL><controlURL>/ctl/IP6FCtl</controlURL><eventSubURL>/evt/IP6FCtl</eventSubURL></service>
</serviceList></device></deviceList></device></deviceList>
<presentationURL>http://10.0.0.1/</presentationURL></device></root>"#;

    #[test]
    fn finds_miniupnpd_services() {
        let loc = HttpUrl::parse("http://10.0.0.1:5000/rootDesc.xml").unwrap();
        let d = Description::parse(MINIUPNPD.as_bytes(), &loc).unwrap();
        assert_eq!(d.services.len(), 4);
        let ip = d.port_mapping_service().unwrap();
        assert_eq!(ip.service_type, WAN_IP_CONNECTION_1);
        assert_eq!(
            ip.control_url,
            HttpUrl::parse("http://10.0.0.1:5000/ctl/IPConn").unwrap()
        );
        let fw = d.pinhole_service().unwrap();
        assert_eq!(fw.control_url.path, "/ctl/IP6FCtl");
    }

    #[test]
    fn url_base_and_relative_urls() {
        let xml = r#"<root xmlns="urn:schemas-upnp-org:device-1-0"><URLBase>http://192.168.1.1:80/igd/</URLBase><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>ppp</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ip2</controlURL></service>
</serviceList></device></root>"#;
        let loc = HttpUrl::parse("http://192.168.1.1:1900/desc.xml").unwrap();
        let d = Description::parse(xml.as_bytes(), &loc).unwrap();
        assert_eq!(
            d.services[0].control_url,
            HttpUrl::parse("http://192.168.1.1/igd/ppp").unwrap()
        );
        assert_eq!(
            d.port_mapping_service().unwrap().service_type,
            WAN_IP_CONNECTION_2
        );
        assert!(d.pinhole_service().is_none());
    }

    #[test]
    fn hostile_descriptions_are_errors() {
        let loc = HttpUrl::parse("http://10.0.0.1/").unwrap();
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><root>&b;</root>"#;
        assert!(Description::parse(laughs.as_bytes(), &loc).is_err());
        assert!(Description::parse(b"<html/>", &loc).is_err());
        assert!(Description::parse(b"<root><device>", &loc).is_err());
        assert!(Description::parse(&[0xff, 0x00], &loc).is_err());
        let deep = "<a>".repeat(100_000);
        assert!(Description::parse(deep.as_bytes(), &loc).is_err());
        let many = format!(
            "<root>{}</root>",
            "<service><serviceType>t</serviceType><controlURL>/c</controlURL></service>"
                .repeat(MAX_SERVICES + 1)
        );
        assert_eq!(
            Description::parse(many.as_bytes(), &loc),
            Err(DescriptionError::TooManyServices)
        );
    }
}
