//! A send's own webhook (`SendTemplate.webhook_url`, or its template's default) and the tenant's
//! destination policy for it: the hosts a manager allowed (`SetProviderConfig.send_webhooks`).
//!
//! Why here: the send must be refused synchronously when its webhook may not be called, so the
//! service that answers `SendTemplate` decides, on the policy it owns (stored with the tenant's
//! provider settings, one transaction away from the send), instead of accepting a send whose
//! webhook notifications would later drop. notifications then delivers the send's events to the
//! admitted URL with its existing worker, which judges every connection again by the same address
//! rules (`dw-destination`): a name that later resolves to a private address is refused there.
//!
//! The rules, pure (the deployment's local hosts come in as an argument):
//! - a URL: at most [`MAX_URL_BYTES`], no whitespace or control character, no credentials;
//! - `https`, or `http` only to a host the deployment allows despite being local
//!   (`DW_WEBHOOK_ALLOWED_HOSTS`, empty in production: there, https only);
//! - its host is on the tenant's list, exactly as written in the URL;
//! - an IP literal is public, and a name is not `localhost` (unless the deployment allows it).

use dw_destination::Destination;

/// A webhook URL is at most this long.
pub const MAX_URL_BYTES: usize = 2048;
/// A tenant allows at most this many hosts.
pub const MAX_ALLOWED_HOSTS: usize = 50;
/// A host name is at most this long (DNS).
const MAX_HOST_BYTES: usize = 253;

/// The hosts a tenant's sends may name in their webhook URL (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// A manager's list. Each host is written as in a URL (lowercase names; IP literals, IPv6
    /// without brackets) and is public unless `local_hosts` (the deployment's exceptions) names
    /// it. Duplicates are dropped; the order is kept.
    pub fn parse(hosts: &[String], local_hosts: &[String]) -> Result<Self, String> {
        if hosts.len() > MAX_ALLOWED_HOSTS {
            return Err(format!("at most {MAX_ALLOWED_HOSTS} hosts"));
        }
        let mut parsed: Vec<String> = Vec::with_capacity(hosts.len());
        for host in hosts {
            let host = parse_host(host, local_hosts)?;
            if !parsed.contains(&host) {
                parsed.push(host);
            }
        }
        Ok(Self(parsed))
    }

    /// The list as stored (it was parsed when it was set).
    pub fn from_stored(hosts: Vec<String>) -> Self {
        Self(hosts)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|allowed| allowed == host)
    }
}

/// One allowed host: what a URL's host may be, nothing more (no scheme, port, path or userinfo).
fn parse_host(value: &str, local_hosts: &[String]) -> Result<String, String> {
    let shown = shown(value);
    if value.is_empty() || value.len() > MAX_HOST_BYTES || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{shown} is not a host name or IP address"));
    }
    let in_url = if value.contains(':') { format!("https://[{value}]/") } else { format!("https://{value}/") };
    let destination = Destination::parse(&in_url).map_err(|_| format!("{shown} is not a host name or IP address"))?;
    if destination.host() != value.to_ascii_lowercase() {
        return Err(format!("{shown} is not a host as a URL writes it (e.g. hooks.example.com)"));
    }
    check_not_local(&destination, local_hosts)?;
    Ok(destination.host().to_owned())
}

/// Refuses a non-public IP literal and the `localhost` names, unless the deployment allows them.
fn check_not_local(destination: &Destination, local_hosts: &[String]) -> Result<(), String> {
    destination.check_literal(local_hosts).map_err(|refused| refused.to_string())?;
    let host = destination.host();
    let loopback_name = host == "localhost" || host.ends_with(".localhost");
    if loopback_name && !destination.is_allow_listed(local_hosts) {
        return Err(format!("{host} is a loopback name"));
    }
    Ok(())
}

/// Admits a send's webhook `url` under the tenant's `allowed` hosts: `Err` says why not.
pub fn admit(url: &str, allowed: &AllowedHosts, local_hosts: &[String]) -> Result<(), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| "must be an https:// URL".to_owned())?;
    let destination = Destination::parse(url).map_err(|refused| format!("must be an https:// URL ({refused})"))?;
    let host = destination.host();
    if parsed.scheme() != "https" && !destination.is_allow_listed(local_hosts) {
        return Err("must be an https:// URL".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if !allowed.allows(host) {
        return Err(format!(
            "host {host} is not on the tenant's allowed webhook hosts (ProviderConfig.send_webhooks, set by a manager)"
        ));
    }
    check_not_local(&destination, local_hosts)
}

/// A value as an error shows it: quoted, and cut short.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    /// Given the tenant's list (and no local hosts), when `url` is admitted.
    fn when_admitted(allowed: &[&str], url: &str) -> Result<(), String> {
        let allowed = AllowedHosts::parse(&hosts(allowed), &[]).unwrap();
        admit(url, &allowed, &[])
    }

    #[test]
    fn a_url_on_an_allowed_host_is_admitted() {
        assert_eq!(when_admitted(&["hooks.example.com"], "https://hooks.example.com/send?x=1"), Ok(()));
        assert_eq!(when_admitted(&["hooks.example.com", "93.184.216.34"], "https://93.184.216.34:8443/h"), Ok(()));
        assert_eq!(when_admitted(&["2606:4700::1111"], "https://[2606:4700::1111]/h"), Ok(()));
    }

    #[test]
    fn a_host_off_the_list_is_refused_and_named() {
        let refused = when_admitted(&["hooks.example.com"], "https://evil.example.com/h").unwrap_err();
        assert!(refused.contains("evil.example.com") && refused.contains("not on the tenant's allowed"), "{refused}");
        assert!(when_admitted(&[], "https://hooks.example.com/h").is_err(), "an empty policy allows nothing");
        assert!(when_admitted(&["example.com"], "https://hooks.example.com/h").is_err(), "no subdomains implied");
    }

    #[test]
    fn non_https_credentials_and_hostile_text_are_refused() {
        let allowed = ["hooks.example.com"];
        for url in [
            "http://hooks.example.com/h",
            "ftp://hooks.example.com/h",
            "https://user:pw@hooks.example.com/h",
            "https://hooks.example.com/a b",
            "https://hooks.example.com/\u{1}",
            "https://hooks.example.com/\n",
            "not a url",
            "",
        ] {
            assert!(when_admitted(&allowed, url).is_err(), "{url:?}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(when_admitted(&allowed, &long), Err(format!("must be at most {MAX_URL_BYTES} bytes")));
    }

    #[test]
    fn internal_addresses_are_refused_even_when_listed_by_a_local_deployment_later_changed() {
        // Stored while the deployment allowed them, judged now without that exception.
        let stored = AllowedHosts::from_stored(hosts(&["127.0.0.1", "10.0.0.7", "localhost", "169.254.169.254"]));
        for url in [
            "https://127.0.0.1/h",
            "https://10.0.0.7/h",
            "https://localhost/h",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:127.0.0.1]/h",
        ] {
            assert!(admit(url, &stored, &[]).is_err(), "{url}");
        }
    }

    #[test]
    fn the_deployment_local_hosts_allow_plain_http_to_a_local_server() {
        let local = hosts(&["127.0.0.1"]);
        let allowed = AllowedHosts::parse(&hosts(&["127.0.0.1"]), &local).unwrap();
        assert_eq!(admit("http://127.0.0.1:9000/hook", &allowed, &local), Ok(()));
        assert!(admit("http://127.0.0.1:9000/hook", &AllowedHosts::default(), &local).is_err(), "still listed");
    }

    #[test]
    fn a_policy_lists_public_hosts_as_a_url_writes_them() {
        let parsed = AllowedHosts::parse(&hosts(&["hooks.example.com", "93.184.216.34", "hooks.example.com"]), &[]);
        assert_eq!(parsed.unwrap().as_slice(), ["hooks.example.com", "93.184.216.34"]);
        let cased = AllowedHosts::parse(&hosts(&["Hooks.Example.COM"]), &[]).unwrap();
        assert_eq!(cased.as_slice(), ["hooks.example.com"], "names are kept as a URL writes them: lowercase");
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "localhost",
            "api.localhost",
            "hooks.example.com:443",
            "https://hooks.example.com",
            "hooks.example.com/path",
            "user@hooks.example.com",
            "",
            " hooks.example.com",
            "hooks\u{0}.example.com",
        ] {
            assert!(AllowedHosts::parse(&hosts(&[bad]), &[]).is_err(), "{bad:?}");
        }
        let too_many: Vec<String> = (0..=MAX_ALLOWED_HOSTS).map(|i| format!("h{i}.example.com")).collect();
        assert!(AllowedHosts::parse(&too_many, &[]).is_err());
        assert!(AllowedHosts::parse(&hosts(&["127.0.0.1"]), &hosts(&["127.0.0.1"])).is_ok(), "a local deployment");
    }
}
