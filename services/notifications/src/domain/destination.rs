//! Where outbound HTTP (webhooks, Web Push) may go: an http(s) URL whose host is allow-listed or
//! resolves to public addresses only. Resolving the host is I/O and happens in
//! [`crate::app::destination`]; the rules here take the addresses it found.

use std::net::IpAddr;

/// An outbound URL's host (without IPv6 brackets) and port, once its scheme is known to be http(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    host: String,
    port: u16,
}

impl Destination {
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "not a valid URL".to_owned())?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err("must be an http(s) URL".into());
        }
        let host = parsed.host_str().ok_or("has no host")?.trim_matches(['[', ']']).to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        Ok(Self { host, port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is allow-listed: allowed even when private or loopback (a local test server).
    pub fn is_allow_listed(&self, allowed_hosts: &[String]) -> bool {
        allowed_hosts.iter().any(|allowed| allowed == &self.host)
    }

    /// Admits the addresses the host resolved to when none of them is private.
    pub fn check_addresses(&self, addresses: impl IntoIterator<Item = IpAddr>) -> Result<(), String> {
        if addresses.into_iter().any(is_private) {
            return Err(format!("{} is a private or loopback address", self.host));
        }
        Ok(())
    }
}

/// Private, shared (carrier-grade NAT), loopback, link-local, unspecified or broadcast: not a
/// public destination.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [first, second, ..] = v4.octets();
            let shared = first == 100 && (second & 0xc0) == 64;
            v4.is_private()
                || shared
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let unique_local = (v6.segments()[0] & 0xfe00) == 0xfc00;
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            v6.is_loopback() || v6.is_unspecified() || unique_local || link_local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    /// Given a URL whose host resolved to `resolved`, whether it may be called.
    fn when_resolved(url: &str, resolved: &[&str]) -> Result<(), String> {
        Destination::parse(url)?.check_addresses(addresses(resolved))
    }

    #[test]
    fn private_cgnat_loopback_link_local_and_unspecified_addresses_are_refused() {
        for address in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
        ] {
            assert_eq!(
                when_resolved("https://hooks.example.com/x", &[address]),
                Err("hooks.example.com is a private or loopback address".to_owned()),
                "{address}"
            );
        }
    }

    #[test]
    fn one_private_address_among_public_ones_is_enough_to_refuse() {
        assert!(when_resolved("https://hooks.example.com/x", &["93.184.216.34", "10.0.0.7"]).is_err());
    }

    #[test]
    fn public_addresses_are_accepted() {
        for address in
            ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.63.255.255", "100.128.0.1", "2606:4700:4700::1111"]
        {
            assert_eq!(when_resolved("https://hooks.example.com/x", &[address]), Ok(()), "{address}");
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_destinations() {
        assert_eq!(Destination::parse("ftp://example.com/x"), Err("must be an http(s) URL".to_owned()));
        assert_eq!(Destination::parse("not a url"), Err("not a valid URL".to_owned()));
        assert_eq!(Destination::parse("http:///nohost"), Ok(Destination { host: "nohost".into(), port: 80 }));
        assert_eq!(Destination::parse("https://[::1]:8443/x"), Ok(Destination { host: "::1".into(), port: 8443 }));
        assert_eq!(Destination::parse("https://example.com/x").map(|d| d.port()), Ok(443));
    }

    #[test]
    fn the_allow_list_names_hosts_as_written_in_the_url() {
        let allowed = ["127.0.0.1".to_owned(), "::1".to_owned()];
        let given = |url: &str| Destination::parse(url).unwrap().is_allow_listed(&allowed);
        assert!(given("http://127.0.0.1:9000/hook"));
        assert!(given("http://[::1]/hook"), "brackets are not part of the host");
        assert!(!given("http://localhost/hook"), "a name is not its address");
        assert!(!given("http://10.0.0.1/hook"));
    }
}
