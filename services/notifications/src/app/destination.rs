//! The destination policy of [`crate::domain::destination`] where outbound HTTP happens: when a
//! destination is registered (its name resolved now) and on every connection, through the DNS
//! resolver of the delivery clients. A name that resolved to public addresses at registration and
//! to a private one later (DNS rebinding) is refused at connect time; an IP literal never reaches
//! the resolver, so it is judged from the URL before each request.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::destination::{Destination, Refused, check_resolved};

/// Looks a host name up; injected so that a test decides what a name resolves to.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver (`getaddrinfo`, off the runtime's threads).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addresses.map(|address| address.ip()).collect())
        })
    }
}

/// Where one kind of outbound HTTP (webhooks, or Web Push) may go: its allow-list and how names
/// are looked up. Cheap to clone.
#[derive(Clone)]
pub struct DestinationPolicy {
    allowed_hosts: Arc<[String]>,
    lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for DestinationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationPolicy").field("allowed_hosts", &self.allowed_hosts).finish_non_exhaustive()
    }
}

impl DestinationPolicy {
    /// The policy with the system resolver.
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self::with_lookup(allowed_hosts, Arc::new(SystemLookup))
    }

    pub fn with_lookup(allowed_hosts: &[String], lookup: Arc<dyn Lookup>) -> Self {
        Self { allowed_hosts: allowed_hosts.into(), lookup }
    }

    /// Hosts allowed even though they are private or loopback, as written in a URL.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    /// Admits `url` when it is registered: an IP literal by the address rules, a name by the
    /// addresses it resolves to now (and again on every connection, by [`Self::http_client`]).
    pub async fn admit(&self, url: &str) -> Result<Destination, Refused> {
        let destination = self.admit_before_connect(url)?;
        if destination.needs_resolution(&self.allowed_hosts) {
            let host = destination.host();
            let addresses =
                self.lookup.lookup(host).await.map_err(|_| Refused::DoesNotResolve { host: host.to_owned() })?;
            check_resolved(host, &addresses, &self.allowed_hosts)?;
        }
        Ok(destination)
    }

    /// Admits `url` before a request is sent: the URL and an IP literal host. A name is judged
    /// when the client connects, on the addresses it resolves to then.
    fn admit_before_connect(&self, url: &str) -> Result<Destination, Refused> {
        let destination = Destination::parse(url)?;
        destination.check_literal(&self.allowed_hosts)?;
        Ok(destination)
    }

    /// The HTTP client of deliveries, which sends only where this policy admits.
    pub fn http_client(&self, timeout: Duration) -> reqwest::Result<OutboundClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(self.clone()))
            .build()?;
        Ok(OutboundClient { http, destinations: self.clone() })
    }

    async fn resolve_admitted(&self, host: String) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        // A failed lookup is a network failure (retried); a non-public answer is a refusal.
        let addresses = self.lookup.lookup(&host).await?;
        check_resolved(&host, &addresses, &self.allowed_hosts)?;
        Ok(addresses)
    }
}

impl reqwest::dns::Resolve for DestinationPolicy {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = policy.resolve_admitted(host).await?;
            // Port 0: the client puts the URL's port in.
            let addrs: reqwest::dns::Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// An HTTP client that reaches only the destinations its policy admits: a request is made only for
/// an admitted URL (an IP literal host never reaches a resolver, so it is judged here), a name is
/// judged on the addresses it resolves to when connecting, no redirect is followed (the next hop
/// would escape the check) and proxy settings are ignored (a proxy would connect on our behalf,
/// to an address the policy never sees).
#[derive(Clone, Debug)]
pub struct OutboundClient {
    http: reqwest::Client,
    destinations: DestinationPolicy,
}

impl OutboundClient {
    /// A POST to `url`, when the URL is admitted. If the connection is then refused, the send
    /// fails with an error that [`refusal_of`] finds.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        self.destinations.admit_before_connect(url)?;
        Ok(self.http.post(url))
    }
}

/// The refusal behind a failed request, when the policy's resolver refused the connection.
pub fn refusal_of(error: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use reqwest::dns::Resolve as _;

    /// A DNS whose answers the test scripts, one per lookup (the last one repeats).
    struct ScriptedDns(Mutex<VecDeque<Vec<IpAddr>>>);

    impl ScriptedDns {
        fn answering(answers: &[&[&str]]) -> Arc<Self> {
            let answers = answers.iter().map(|addresses| addresses.iter().map(|a| a.parse().unwrap()).collect());
            Arc::new(Self(Mutex::new(answers.collect())))
        }
    }

    impl Lookup for ScriptedDns {
        fn lookup(&self, _host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
            let mut answers = self.0.lock().unwrap();
            let answer = if answers.len() > 1 { answers.pop_front() } else { answers.front().cloned() };
            Box::pin(async move { answer.ok_or_else(|| io::Error::other("no such host")) })
        }
    }

    fn policy(allowed_hosts: &[&str], dns: Arc<ScriptedDns>) -> DestinationPolicy {
        let allowed: Vec<String> = allowed_hosts.iter().map(|host| host.to_string()).collect();
        DestinationPolicy::with_lookup(&allowed, dns)
    }

    async fn when_resolved(policy: &DestinationPolicy, host: &str) -> Result<Vec<SocketAddr>, String> {
        let name = host.parse().map_err(|_| "not a name".to_owned())?;
        policy.resolve(name).await.map(Iterator::collect).map_err(|error| error.to_string())
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback_and_passes_a_public_one() {
        let rebound = policy(&[], ScriptedDns::answering(&[&["127.0.0.1"]]));
        assert_eq!(
            when_resolved(&rebound, "hooks.example.com").await,
            Err("hooks.example.com: 127.0.0.1 is not a public address (loopback)".to_owned())
        );
        let public = policy(&[], ScriptedDns::answering(&[&["93.184.216.34", "2606:4700:4700::1111"]]));
        assert_eq!(
            when_resolved(&public, "hooks.example.com").await,
            Ok(vec!["93.184.216.34:0".parse().unwrap(), "[2606:4700:4700::1111]:0".parse().unwrap()])
        );
        let mapped = policy(&[], ScriptedDns::answering(&[&["93.184.216.34", "::ffff:169.254.169.254"]]));
        assert!(when_resolved(&mapped, "hooks.example.com").await.is_err(), "one non-public address refuses");
        let allowed = policy(&["localhost"], ScriptedDns::answering(&[&["127.0.0.1"]]));
        assert_eq!(when_resolved(&allowed, "localhost").await, Ok(vec!["127.0.0.1:0".parse().unwrap()]));
    }

    #[tokio::test]
    async fn registration_resolves_names_and_judges_literals_without_resolving() {
        let dns = ScriptedDns::answering(&[&["10.0.0.7"]]);
        let webhooks = policy(&["127.0.0.1"], dns);
        assert!(matches!(webhooks.admit("https://hooks.example.com/x").await, Err(Refused::Resolved { .. })));
        assert!(matches!(webhooks.admit("http://[::ffff:127.0.0.1]/x").await, Err(Refused::Address(_))));
        assert!(webhooks.admit("http://127.0.0.1:9000/hook").await.is_ok(), "allow-listed");
        assert!(matches!(webhooks.admit("ftp://example.com/x").await, Err(Refused::NotHttp)));
        let nowhere = policy(&[], Arc::new(ScriptedDns(Mutex::new(VecDeque::new()))));
        assert!(matches!(nowhere.admit("https://nowhere.example/x").await, Err(Refused::DoesNotResolve { .. })));
    }

    /// A local server that counts the connections it accepts and answers 204 to each.
    async fn counting_server() -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_name_rebound_to_loopback_after_registration_is_refused_at_connect_time() {
        let (port, accepted) = counting_server().await;
        // Public when registered, loopback when the delivery connects.
        let dns = ScriptedDns::answering(&[&["93.184.216.34"], &["127.0.0.1"]]);
        let webhooks = policy(&["127.0.0.1"], dns);
        let url = format!("http://rebind.example.com:{port}/hook");
        assert!(webhooks.admit(&url).await.is_ok(), "public at registration");

        let client = webhooks.http_client(Duration::from_secs(5)).unwrap();
        let error = client.post(&url).unwrap().send().await.unwrap_err();
        let refused = refusal_of(&error).cloned();
        assert_eq!(
            refused.map(|refused| refused.to_string()),
            Some("rebind.example.com: 127.0.0.1 is not a public address (loopback)".to_owned()),
            "{error:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
    }

    #[tokio::test]
    async fn the_client_connects_where_the_policy_admits() {
        let (port, accepted) = counting_server().await;
        let dns = ScriptedDns::answering(&[&["127.0.0.1"]]);
        let local = policy(&["receiver.test", "127.0.0.1"], dns);
        let client = local.http_client(Duration::from_secs(5)).unwrap();
        let answer = client.post(&format!("http://receiver.test:{port}/hook")).unwrap().send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let failure = client.post("http://127.0.0.1:1/hook").unwrap().send().await.unwrap_err();
        assert!(refusal_of(&failure).is_none(), "a connection failure is not a refusal");
    }

    #[tokio::test]
    async fn the_client_makes_no_request_to_a_refused_ip_literal() {
        let (port, accepted) = counting_server().await;
        let client = policy(&["127.0.0.1"], ScriptedDns::answering(&[])).http_client(Duration::from_secs(5)).unwrap();
        for url in [format!("http://[::ffff:127.0.0.1]:{port}/hook"), format!("http://0x7f.0.0.2:{port}/hook")] {
            assert!(matches!(client.post(&url), Err(Refused::Address(_))), "{url}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }
}
