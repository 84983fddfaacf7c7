//! A sans-IO UPnP IGD client: SSDP discovery (bounded M-SEARCH rounds) → device
//! description fetch → SOAP control calls, for one IPv4 port mapping (`AddPortMapping`
//! on WANIPConnection / WANPPPConnection) or one IPv6 pinhole (`AddPinhole` on
//! WANIPv6FirewallControl), chosen by the family of the local address.
//!
//! Leases are finite and renewed at half the lease (`AddPortMapping` again for a mapping,
//! `UpdatePinhole` for a pinhole); [`UpnpClient::remove`] deletes (`DeletePortMapping`,
//! `DeletePinhole`). SSDP datagrams go out through [`UpnpClient::poll_transmit`]; HTTP
//! runs over TCP connections the driver opens when asked: [`UpnpClient::poll_tcp`] yields
//! [`TcpCommand`]s (connect, send, close) and the driver reports back with
//! `handle_tcp_connected` / `handle_tcp_data` / `handle_tcp_closed`, one request per
//! connection. Every exchange has a deadline; every reply is size-bounded; anything
//! malformed ends in [`PortMapEvent::Failed`] and nothing else.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::description::{Description, DescriptionError, Service};
use super::http::{self, HttpError, MAX_RESPONSE_LEN, Request};
use super::soap::{self, Action, ActionResponse, SoapError};
use super::ssdp::{IGD_SEARCH_TARGETS, SearchRequest, SearchResponse};
use super::url::{HttpUrl, UrlError};
use crate::portmap::client::{Mapping, PortMapError, PortMapEvent, Via};
use crate::portmap::natpmp::MapProtocol;
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// External ports tried after the first one answers 718 ConflictInMappingEntry.
pub const MAX_CONFLICTS: u32 = 3;

/// Identifies one TCP connection the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What the client asks the driver to do with TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpCommand {
    /// Open a connection to `remote` (from the local address's IP).
    Connect {
        /// The connection.
        conn: ConnId,
        /// The gateway's HTTP endpoint.
        remote: SocketAddr,
    },
    /// Write these bytes on the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Close the connection (the client ignores anything more from it).
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// A mapping made earlier (by another process) that the client should delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// An IPv4 port mapping on this external port.
    PortMapping {
        /// The mapping's external port.
        external_port: u16,
    },
    /// An IPv6 pinhole with this `UniqueID`.
    Pinhole {
        /// The pinhole's `UniqueID`.
        id: u16,
    },
}

/// Why UPnP failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpnpError {
    /// No gateway answered SSDP.
    #[error(
        "no UPnP Internet Gateway Device answered {0} SSDP searches; enable UPnP IGD on the router"
    )]
    NoGateway(u32),
    /// The gateway's description lacks the needed service.
    #[error("the UPnP gateway offers no {0} service")]
    NoService(&'static str),
    /// The SSDP `LOCATION` names another host than the one that answered.
    #[error("the SSDP answer from {0} points at another host ({1}); ignoring it")]
    ForeignLocation(IpAddr, IpAddr),
    /// A URL the gateway gave is unusable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The HTTP response was malformed or too large.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The description was unusable.
    #[error(transparent)]
    Description(#[from] DescriptionError),
    /// A SOAP action failed.
    #[error(transparent)]
    Soap(#[from] SoapError),
    /// The description fetch returned a non-200 status.
    #[error("the UPnP gateway answered the description fetch with HTTP status {0}")]
    Status(u16),
    /// Could not connect to the gateway's HTTP port.
    #[error("cannot connect to the UPnP gateway at {0}; is its HTTP port reachable?")]
    Connect(SocketAddr),
    /// No complete answer in time.
    #[error("the UPnP gateway did not answer {0} in time")]
    Timeout(&'static str),
    /// Renewals failed until the lease ran out.
    #[error("the UPnP lease expired: every renewal failed ({0})")]
    Expired(String),
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct UpnpConfig {
    /// The UDP socket SSDP uses. Its IP is the internal client: an IPv4 address asks for
    /// a port mapping, an IPv6 address for a pinhole.
    pub local: SocketAddr,
    /// Where M-SEARCH goes (239.255.255.250:1900, `[ff02::c%if]:1900`, or the gateway).
    pub ssdp_destinations: Vec<SocketAddr>,
    /// If set, only SSDP answers from this address are used.
    pub gateway: Option<IpAddr>,
    /// UDP or TCP.
    pub protocol: MapProtocol,
    /// The port on this host.
    pub internal_port: u16,
    /// Requested lease in seconds (finite, at least 1).
    pub lease: u32,
    /// M-SEARCH rounds before giving up (default 3).
    pub attempts: u32,
    /// Wait after each round (default 1 s; M-SEARCH uses MX 1).
    pub search_interval: Duration,
    /// Deadline for one HTTP exchange, connect included (default 5 s).
    pub http_timeout: Duration,
    /// Description shown in the router (port mappings only).
    pub description: String,
    /// Delete this earlier mapping instead of making one.
    pub existing: Option<Existing>,
}

impl UpnpConfig {
    /// Defaults for mapping `internal_port` of `local`'s host, searching the multicast
    /// group of `local`'s family (IPv6 needs [`ssdp_v6`](super::ssdp::ssdp_v6) with the
    /// interface index; set `ssdp_destinations` for it).
    pub fn new(local: SocketAddr, protocol: MapProtocol, internal_port: u16, lease: u32) -> Self {
        Self {
            local,
            ssdp_destinations: vec![super::ssdp::ssdp_v4()],
            gateway: None,
            protocol,
            internal_port,
            lease: lease.max(1),
            attempts: 3,
            search_interval: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
            description: "p2pd".into(),
            existing: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discover,
    Describe,
    Control,
    Done,
}

#[derive(Debug)]
enum Step {
    Describe(HttpUrl),
    Call(Action),
}

#[derive(Debug)]
struct Exchange {
    conn: ConnId,
    step: Step,
    request: Vec<u8>,
    buf: Vec<u8>,
    connected: bool,
    deadline: Instant,
    remote: SocketAddr,
}

/// The UPnP IGD client. See the module docs.
#[derive(Debug)]
pub struct UpnpClient {
    config: UpnpConfig,
    phase: Phase,
    attempt: u32,
    next_search: Option<Instant>,
    service: Option<Service>,
    external_ip: Option<IpAddr>,
    pinhole: Option<u16>,
    mapping: Option<Mapping>,
    deleting: bool,
    add_sent: bool,
    permanent_only: bool,
    /// The external port asked for (the internal port, then the next ones on conflicts).
    external_port: u16,
    conflicts: u32,
    renew_at: Option<Instant>,
    exchange: Option<Exchange>,
    next_conn: u64,
    udp_out: VecDeque<(SocketAddr, Vec<u8>)>,
    sending: Vec<u8>,
    tcp_out: VecDeque<TcpCommand>,
    events: VecDeque<PortMapEvent>,
}

fn renew_retry(now: Instant, expires: Instant) -> Instant {
    let left = expires.saturating_duration_since(now);
    now + (left / 4).max(Duration::from_secs(1))
}

impl UpnpClient {
    /// Start at `now`: the first M-SEARCH round is queued at once.
    pub fn new(config: UpnpConfig, now: Instant) -> Self {
        let mut c = Self {
            config,
            phase: Phase::Discover,
            attempt: 0,
            next_search: Some(now),
            service: None,
            external_ip: None,
            pinhole: None,
            mapping: None,
            deleting: false,
            add_sent: false,
            permanent_only: false,
            external_port: 0,
            conflicts: 0,
            renew_at: None,
            exchange: None,
            next_conn: 0,
            udp_out: VecDeque::new(),
            sending: Vec::new(),
            tcp_out: VecDeque::new(),
            events: VecDeque::new(),
        };
        c.config.lease = c.config.lease.max(1);
        c.external_port = c.config.internal_port;
        if let Some(e) = c.config.existing {
            c.deleting = true;
            if let Existing::Pinhole { id } = e {
                c.pinhole = Some(id);
            }
        }
        c.handle_timeout(now);
        c
    }

    /// Whether this client makes an IPv6 pinhole (rather than an IPv4 port mapping).
    pub fn is_pinhole(&self) -> bool {
        self.config.local.is_ipv6()
    }

    /// The current mapping.
    pub fn mapping(&self) -> Option<Mapping> {
        self.mapping
    }

    /// The pinhole's `UniqueID` (store it to delete the pinhole from another process).
    pub fn pinhole_id(&self) -> Option<u16> {
        self.pinhole
    }

    /// The control URL in use, once discovered.
    pub fn control_url(&self) -> Option<&HttpUrl> {
        self.service.as_ref().map(|s| &s.control_url)
    }

    fn lease(&self) -> u32 {
        let max = if self.is_pinhole() {
            soap::MAX_PINHOLE_LEASE
        } else {
            soap::MAX_PORT_MAPPING_LEASE
        };
        self.config.lease.min(max)
    }

    fn fail(&mut self, e: UpnpError) {
        self.close_exchange();
        self.phase = Phase::Done;
        self.next_search = None;
        self.renew_at = None;
        self.mapping = None;
        self.events
            .push_back(PortMapEvent::Failed(PortMapError::Upnp(e)));
    }

    fn finish_removed(&mut self, confirmed: bool) {
        self.close_exchange();
        self.phase = Phase::Done;
        self.next_search = None;
        self.renew_at = None;
        self.mapping = None;
        self.events.push_back(PortMapEvent::Removed { confirmed });
    }

    fn close_exchange(&mut self) {
        if let Some(x) = self.exchange.take() {
            self.tcp_out.push_back(TcpCommand::Close { conn: x.conn });
        }
    }

    /// Delete the mapping; emits [`PortMapEvent::Removed`] when done.
    pub fn remove(&mut self, now: Instant) {
        if self.phase == Phase::Done || self.deleting {
            return;
        }
        self.deleting = true;
        self.renew_at = None;
        let made = self.mapping.is_some() || self.pinhole.is_some() || self.add_sent;
        if !made {
            self.finish_removed(true);
            return;
        }
        self.close_exchange();
        if self.is_pinhole() && self.pinhole.is_none() {
            // AddPinhole was sent but its UniqueID never came: nothing to name.
            self.finish_removed(false);
            return;
        }
        self.call_delete(now);
    }

    fn call_delete(&mut self, now: Instant) {
        let action = match self.pinhole {
            Some(id) if self.is_pinhole() => Action::DeletePinhole { id },
            _ => Action::DeletePortMapping {
                external_port: match self.config.existing {
                    Some(Existing::PortMapping { external_port }) => external_port,
                    _ => self
                        .mapping
                        .map_or(self.external_port, |m| m.external.port()),
                },
                protocol: self.config.protocol,
            },
        };
        self.call(now, action);
    }

    fn call_add(&mut self, now: Instant) {
        let action = if let IpAddr::V6(ip) = self.config.local.ip() {
            match self.pinhole {
                Some(id) => Action::UpdatePinhole {
                    id,
                    lease: self.lease(),
                },
                None => Action::AddPinhole {
                    internal_client: ip,
                    internal_port: self.config.internal_port,
                    protocol: self.config.protocol,
                    lease: self.lease(),
                },
            }
        } else if self.external_ip.is_none() {
            Action::GetExternalIpAddress
        } else {
            self.add_sent = true;
            Action::AddPortMapping {
                external_port: self
                    .mapping
                    .map_or(self.external_port, |m| m.external.port()),
                protocol: self.config.protocol,
                internal_port: self.config.internal_port,
                internal_client: self.config.local.ip(),
                description: self.config.description.clone(),
                lease: if self.permanent_only { 0 } else { self.lease() },
            }
        };
        self.call(now, action);
    }

    fn call(&mut self, now: Instant, action: Action) {
        let Some(service) = self.service.clone() else {
            self.fail(UpnpError::NoService("control"));
            return;
        };
        let (soap_action, body) = action.emit(&service.service_type);
        let host = service.control_url.host_header();
        let request = Request {
            method: "POST",
            host: &host,
            path: &service.control_url.path,
            headers: &[
                ("Content-Type", "text/xml; charset=\"utf-8\""),
                ("SOAPAction", &soap_action),
            ],
            body: &body,
        }
        .emit();
        match request {
            Some(r) => self.start(now, &service.control_url, r, Step::Call(action)),
            None => self.fail(UpnpError::Url(UrlError::Malformed)),
        }
    }

    fn start(&mut self, now: Instant, url: &HttpUrl, request: Vec<u8>, step: Step) {
        self.close_exchange();
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let remote = url.socket_addr();
        self.tcp_out.push_back(TcpCommand::Connect { conn, remote });
        self.exchange = Some(Exchange {
            conn,
            step,
            request,
            buf: Vec::new(),
            connected: false,
            deadline: now + self.config.http_timeout,
            remote,
        });
    }

    /// Advance timers: M-SEARCH rounds, HTTP deadlines, renewal.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(x) = &self.exchange
            && now >= x.deadline
        {
            let what = match &x.step {
                Step::Describe(_) => "the description fetch",
                Step::Call(a) => a.name(),
            };
            self.close_exchange();
            self.step_failed(now, UpnpError::Timeout(what));
            return;
        }
        if self.phase == Phase::Discover
            && let Some(at) = self.next_search
            && now >= at
        {
            if self.attempt >= self.config.attempts {
                self.fail(UpnpError::NoGateway(self.attempt));
                return;
            }
            self.attempt += 1;
            for dest in self.config.ssdp_destinations.clone() {
                for target in IGD_SEARCH_TARGETS {
                    let m = SearchRequest {
                        destination: dest,
                        target,
                        mx: 1,
                    };
                    self.udp_out.push_back((dest, m.emit()));
                }
            }
            self.next_search = Some(now + self.config.search_interval);
        }
        if self.phase == Phase::Control
            && self.exchange.is_none()
            && let Some(at) = self.renew_at
            && now >= at
        {
            self.renew_at = None;
            if let Some(m) = self.mapping
                && now >= m.expires
            {
                self.fail(UpnpError::Expired("no renewal succeeded".into()));
                return;
            }
            self.call_add(now);
        }
    }

    /// Feed an SSDP datagram received on the local socket.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        _destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.phase != Phase::Discover {
            return;
        }
        if self.config.gateway.is_some_and(|g| g != source.ip()) {
            return;
        }
        let Ok(r) = SearchResponse::parse(bytes) else {
            return;
        };
        if !r.target.is_empty() && !r.target.contains("InternetGatewayDevice") {
            return;
        }
        let Ok(url) = HttpUrl::parse(&r.location) else {
            return;
        };
        // The description must come from the host that answered (IPv6 gateways may
        // answer from a link-local address and advertise a global one: same family then).
        let same = match (url.ip, source.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a == b,
            (IpAddr::V6(a), IpAddr::V6(_)) => !a.is_multicast() && !a.is_unspecified(),
            _ => false,
        };
        if !same {
            return;
        }
        let host = url.host_header();
        let Some(req) = (Request {
            method: "GET",
            host: &host,
            path: &url.path,
            headers: &[],
            body: b"",
        })
        .emit() else {
            return;
        };
        self.phase = Phase::Describe;
        self.next_search = None;
        self.start(now, &url, req, Step::Describe(url.clone()));
    }

    /// The TCP connection `conn` is established.
    pub fn handle_tcp_connected(&mut self, _now: Instant, conn: ConnId) {
        if let Some(x) = &mut self.exchange
            && x.conn == conn
            && !x.connected
        {
            x.connected = true;
            let bytes = std::mem::take(&mut x.request);
            self.tcp_out.push_back(TcpCommand::Send { conn, bytes });
        }
    }

    /// Bytes arrived on `conn`.
    pub fn handle_tcp_data(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(x) = &mut self.exchange else { return };
        if x.conn != conn {
            return;
        }
        if x.buf.len() + bytes.len() > MAX_RESPONSE_LEN {
            self.close_exchange();
            self.step_failed(now, UpnpError::Http(HttpError::BodyTooLarge));
            return;
        }
        x.buf.extend_from_slice(bytes);
        match http::parse_response(&x.buf, false) {
            Ok(None) => {}
            Ok(Some(resp)) => self.finish_exchange(now, Ok(resp)),
            Err(e) => self.finish_exchange(now, Err(e.into())),
        }
    }

    /// `conn` closed (or failed to connect).
    pub fn handle_tcp_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(x) = &self.exchange else { return };
        if x.conn != conn {
            return;
        }
        if !x.connected {
            let remote = x.remote;
            self.exchange = None;
            self.step_failed(now, UpnpError::Connect(remote));
            return;
        }
        let r = match http::parse_response(&x.buf, true) {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => Err(UpnpError::Http(HttpError::Truncated)),
            Err(e) => Err(e.into()),
        };
        self.finish_exchange(now, r);
    }

    fn finish_exchange(&mut self, now: Instant, r: Result<http::Response, UpnpError>) {
        let Some(x) = self.exchange.take() else {
            return;
        };
        self.tcp_out.push_back(TcpCommand::Close { conn: x.conn });
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => {
                self.exchange = None;
                self.step_failed(now, e);
                return;
            }
        };
        match x.step {
            Step::Describe(url) => self.on_description(now, &url, resp),
            Step::Call(action) => {
                let r = soap::parse_response(&action, resp.status, &resp.body);
                self.on_call(now, action, r);
            }
        }
    }

    fn on_description(&mut self, now: Instant, url: &HttpUrl, resp: http::Response) {
        if resp.status != 200 {
            self.fail(UpnpError::Status(resp.status));
            return;
        }
        let d = match Description::parse(&resp.body, url) {
            Ok(d) => d,
            Err(e) => {
                self.fail(e.into());
                return;
            }
        };
        let service = if self.is_pinhole() {
            d.pinhole_service().ok_or(UpnpError::NoService(
                "WANIPv6FirewallControl (IPv6 pinholes)",
            ))
        } else {
            d.port_mapping_service()
                .ok_or(UpnpError::NoService("WANIPConnection or WANPPPConnection"))
        };
        let service = match service {
            Ok(s) => s.clone(),
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        // Control must stay on the host that served the description.
        if service.control_url.ip != url.ip {
            self.fail(UpnpError::ForeignLocation(url.ip, service.control_url.ip));
            return;
        }
        self.service = Some(service);
        self.phase = Phase::Control;
        if self.deleting {
            self.call_delete(now);
        } else {
            self.call_add(now);
        }
    }

    fn on_call(&mut self, now: Instant, action: Action, r: Result<ActionResponse, SoapError>) {
        match (action, r) {
            (Action::DeletePortMapping { .. } | Action::DeletePinhole { .. }, r) => {
                self.finish_removed(r.is_ok());
            }
            (_, Err(e)) if self.deleting => {
                let _ = e;
                self.finish_removed(false);
            }
            (Action::GetExternalIpAddress, Ok(ActionResponse::ExternalIp(ip))) => {
                self.external_ip = Some(ip);
                self.call_add(now);
            }
            (Action::AddPortMapping { external_port, .. }, Ok(_)) => {
                let ip = self.external_ip.unwrap_or(self.config.local.ip());
                self.granted(now, SocketAddr::new(ip, external_port));
            }
            (Action::AddPortMapping { .. }, Err(e))
                if e.code() == Some(725) && !self.permanent_only =>
            {
                // OnlyPermanentLeasesSupported (IGD 1): a lease of 0, still renewed and
                // deleted by this client.
                self.permanent_only = true;
                self.call_add(now);
            }
            (Action::AddPortMapping { external_port, .. }, Err(e))
                if e.code() == Some(718)
                    && self.mapping.is_none()
                    && self.conflicts < MAX_CONFLICTS =>
            {
                // ConflictInMappingEntry: another host holds this external port; try
                // the next one (bounded).
                self.conflicts += 1;
                self.add_sent = false;
                self.external_port = match external_port.max(1023) {
                    u16::MAX => 1024,
                    p => p + 1,
                };
                self.call_add(now);
            }
            (Action::AddPinhole { .. }, Ok(ActionResponse::PinholeId(id))) => {
                self.pinhole = Some(id);
                self.granted(
                    now,
                    SocketAddr::new(self.config.local.ip(), self.config.internal_port),
                );
            }
            (Action::UpdatePinhole { .. }, Ok(_)) => {
                self.granted(
                    now,
                    SocketAddr::new(self.config.local.ip(), self.config.internal_port),
                );
            }
            (Action::UpdatePinhole { .. }, Err(e)) if e.code() == Some(704) => {
                // NoSuchEntry: the gateway lost the pinhole; open it again.
                self.pinhole = None;
                self.call_add(now);
            }
            (_, Ok(_)) => self.fail(UpnpError::Soap(SoapError::Malformed {
                action: "control",
                why: "unexpected response kind",
            })),
            (_, Err(e)) => self.step_failed(now, UpnpError::Soap(e)),
        }
    }

    fn granted(&mut self, now: Instant, external: SocketAddr) {
        let lease = Duration::from_secs(u64::from(self.lease()));
        let m = Mapping {
            protocol_used: Via::Upnp,
            external,
            lease,
            expires: now + lease,
        };
        self.mapping = Some(m);
        self.renew_at = Some(now + lease / 2);
        self.events.push_back(PortMapEvent::Mapped(m));
    }

    /// A step failed: during a renewal, retry until the lease runs out; while deleting,
    /// report an unconfirmed removal; otherwise fail.
    fn step_failed(&mut self, now: Instant, e: UpnpError) {
        if self.deleting {
            self.finish_removed(false);
            return;
        }
        match self.mapping {
            Some(m) if now < m.expires => {
                self.renew_at = Some(renew_retry(now, m.expires).min(m.expires));
            }
            Some(_) => self.fail(UpnpError::Expired(e.to_string())),
            None => self.fail(e),
        }
    }

    /// The next SSDP datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let (dest, bytes) = self.udp_out.pop_front()?;
        self.sending = bytes;
        Some(Transmit {
            transport: Transport::Udp,
            source: self.config.local,
            destination: dest,
            contents: &self.sending,
        })
    }

    /// The next TCP command.
    pub fn poll_tcp(&mut self) -> Option<TcpCommand> {
        self.tcp_out.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let http = self
            .exchange
            .as_ref()
            .map(|x| Timeout::new(x.deadline, "upnp http deadline"));
        let search = self
            .next_search
            .filter(|_| self.phase == Phase::Discover)
            .map(|at| Timeout::new(at, "upnp ssdp search"));
        let renew = self
            .renew_at
            .filter(|_| self.exchange.is_none())
            .map(|at| Timeout::new(at, "upnp renew"));
        Timeout::earliest(Timeout::earliest(http, search), renew)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PortMapEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
