//! Where outbound HTTP (webhooks, Web Push) may go: the one destination policy of the platform.
//! notifications applies it when an endpoint is registered and on every connection it makes;
//! messaging-templates applies it to a send's own webhook URL before it accepts the send.
//!
//! A destination is an http(s) URL. It is admitted when its host is allow-listed as written (a
//! local test server), or when every address it leads to is public. An address is public unless
//! [`check_address`] finds it in a special-purpose range; an IPv6 address that carries an IPv4
//! address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by the IPv4 it carries, since
//! that is where a connection to it ends up. An IP literal is judged from the URL alone; a name by
//! the addresses it resolves to, which come in as an argument: resolving is I/O and happens in
//! the services (notifications' `app::destination`), at registration and again on every connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a destination is refused; the text names the host and, for an address, its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a valid URL")]
    NotAUrl,
    #[error("must be an http(s) URL")]
    NotHttp,
    #[error("has no host")]
    NoHost,
    /// The URL's host is an IP literal that is not public.
    #[error("{0}")]
    Address(NotPublic),
    /// The host is a name that resolves to an address that is not public.
    #[error("{host}: {address}")]
    Resolved { host: String, address: NotPublic },
    #[error("{host} does not resolve")]
    DoesNotResolve { host: String },
}

/// An outbound URL's host (as written, without IPv6 brackets), whether it is an IP literal, and
/// its port, once its scheme is known to be http(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    host: String,
    literal: Option<IpAddr>,
    port: u16,
}

impl Destination {
    pub fn parse(url: &str) -> Result<Self, Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| Refused::NotAUrl)?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(Refused::NotHttp);
        }
        let host = parsed.host_str().ok_or(Refused::NoHost)?.trim_matches(['[', ']']).to_owned();
        // The URL parser has already turned every spelling of an IPv4 address (`0x7f.1`,
        // `2130706433`, `127.1`) into its dotted form, and a name never parses as an address.
        let literal = host.parse::<IpAddr>().ok();
        let port = parsed.port_or_known_default().unwrap_or(443);
        Ok(Self { host, literal, port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is allow-listed: allowed even when private or loopback (a local test server).
    pub fn is_allow_listed(&self, allowed_hosts: &[String]) -> bool {
        is_allow_listed(&self.host, allowed_hosts)
    }

    /// What the URL alone decides: refused when its host is an IP literal that is not public
    /// (and not allow-listed). A name is admitted here and judged by [`check_resolved`] on the
    /// addresses it resolves to.
    pub fn check_literal(&self, allowed_hosts: &[String]) -> Result<(), Refused> {
        match self.literal {
            Some(address) if !self.is_allow_listed(allowed_hosts) => check_address(address).map_err(Refused::Address),
            _ => Ok(()),
        }
    }

    /// Whether the host is a name that must be resolved before it can be judged.
    pub fn needs_resolution(&self, allowed_hosts: &[String]) -> bool {
        self.literal.is_none() && !self.is_allow_listed(allowed_hosts)
    }
}

/// Whether `host`, as written in a URL (IPv6 without brackets), is allow-listed.
pub fn is_allow_listed(host: &str, allowed_hosts: &[String]) -> bool {
    allowed_hosts.iter().any(|allowed| allowed == host)
}

/// Admits a name that resolved to `addresses` when it is allow-listed, or when it resolved and
/// every address is public: one address that is not is enough to refuse it.
pub fn check_resolved(host: &str, addresses: &[IpAddr], allowed_hosts: &[String]) -> Result<(), Refused> {
    if is_allow_listed(host, allowed_hosts) {
        return Ok(());
    }
    if addresses.is_empty() {
        return Err(Refused::DoesNotResolve { host: host.to_owned() });
    }
    for &address in addresses {
        check_address(address).map_err(|address| Refused::Resolved { host: host.to_owned(), address })?;
    }
    Ok(())
}

/// A special-purpose range that outbound HTTP never goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// 0.0.0.0/8.
    ThisNetwork,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64/10: carrier-grade NAT.
    SharedAddressSpace,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16 (where cloud metadata services answer), fe80::/10.
    LinkLocal,
    /// 192.0.0/24.
    IetfProtocolAssignments,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15.
    Benchmarking,
    /// 224/4, ff00::/8.
    Multicast,
    /// 240/4 (but the broadcast address).
    Reserved,
    /// 255.255.255.255.
    Broadcast,
    /// ::.
    Unspecified,
    /// fc00::/7.
    UniqueLocal,
}

impl Range {
    pub fn description(self) -> &'static str {
        match self {
            Self::ThisNetwork => "\"this network\" 0.0.0.0/8",
            Self::Private => "private",
            Self::SharedAddressSpace => "carrier-grade NAT 100.64.0.0/10",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::IetfProtocolAssignments => "IETF protocol assignments 192.0.0.0/24",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking 198.18.0.0/15",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved 240.0.0.0/4",
            Self::Broadcast => "broadcast",
            Self::Unspecified => "unspecified",
            Self::UniqueLocal => "unique-local fc00::/7",
        }
    }
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// ::ffff:0:0/96.
    Ipv4Mapped,
    /// ::/96.
    Ipv4Compatible,
    /// 64:ff9b::/96 and the local-use 64:ff9b:1::/48.
    Nat64,
    /// 2002::/16.
    SixToFour,
}

impl Embedding {
    fn description(self) -> &'static str {
        match self {
            Self::Ipv4Mapped => "IPv4-mapped",
            Self::Ipv4Compatible => "IPv4-compatible",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
        }
    }
}

/// An address that is not public, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPublic {
    pub address: IpAddr,
    /// The IPv4 address judged instead, when `address` carries one.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
    pub range: Range,
}

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = self.range.description();
        match self.embedded {
            None => write!(f, "{} is not a public address ({range})", self.address),
            Some((embedding, v4)) => {
                write!(f, "{} is not a public address ({} {v4}: {range})", self.address, embedding.description())
            }
        }
    }
}

impl std::error::Error for NotPublic {}

/// The destination rule for one address: `Ok` when it is public.
pub fn check_address(address: IpAddr) -> Result<(), NotPublic> {
    let refuse = |embedded, range| Err(NotPublic { address, embedded, range });
    match address {
        IpAddr::V4(v4) => match ipv4_range(v4) {
            Some(range) => refuse(None, range),
            None => Ok(()),
        },
        IpAddr::V6(v6) => {
            if let Some(range) = ipv6_range(v6) {
                return refuse(None, range);
            }
            let Some((embedding, v4)) = embedded_ipv4(v6) else { return Ok(()) };
            match ipv4_range(v4) {
                Some(range) => refuse(Some((embedding, v4)), range),
                None => Ok(()),
            }
        }
    }
}

fn ipv4_range(v4: Ipv4Addr) -> Option<Range> {
    if v4.is_broadcast() {
        return Some(Range::Broadcast);
    }
    let range = match v4.octets() {
        [0, ..] => Range::ThisNetwork,
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => Range::Private,
        [100, 64..=127, ..] => Range::SharedAddressSpace,
        [127, ..] => Range::Loopback,
        [169, 254, ..] => Range::LinkLocal,
        [192, 0, 0, _] => Range::IetfProtocolAssignments,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Range::Documentation,
        [198, 18..=19, ..] => Range::Benchmarking,
        [224..=239, ..] => Range::Multicast,
        [240..=255, ..] => Range::Reserved,
        _ => return None,
    };
    Some(range)
}

/// The IPv6 ranges of their own; the ranges that carry an IPv4 address are [`embedded_ipv4`]'s.
fn ipv6_range(v6: Ipv6Addr) -> Option<Range> {
    let first = v6.segments()[0];
    let range = if v6.is_unspecified() {
        Range::Unspecified
    } else if v6.is_loopback() {
        Range::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        Range::UniqueLocal
    } else if first & 0xffc0 == 0xfe80 {
        Range::LinkLocal
    } else if first & 0xff00 == 0xff00 {
        Range::Multicast
    } else if v6.segments()[..2] == [0x2001, 0x0db8] {
        Range::Documentation
    } else {
        return None;
    };
    Some(range)
}

/// The IPv4 address an IPv6 address carries, if it is one that does. NAT64 addresses, under the
/// well-known prefix and the local-use 64:ff9b:1::/48 alike, are read in the RFC 6052 /96 form
/// (the IPv4 in the last 32 bits), the form DNS64 synthesizes by default.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let o = v6.octets();
    let last_32_bits = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let embedding = match v6.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Embedding::Ipv4Mapped,
        [0, 0, 0, 0, 0, 0, _, _] => Embedding::Ipv4Compatible,
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Embedding::Nat64,
        [0x2002, ..] => return Some((Embedding::SixToFour, Ipv4Addr::new(o[2], o[3], o[4], o[5]))),
        _ => return None,
    };
    Some((embedding, last_32_bits))
}

#[cfg(test)]
mod tests;
