//! The owner's `ReadEvents` as a [`dw_bus::backfill::EventSource`]: how a consumer created after
//! its stream dropped old messages reads them from the producing service.
//!
//! The caller authenticates with a bearer token of role `service` read from a file at each call
//! (`DW_SERVICE_TOKEN_FILE`, a mounted secret the platform rotates), so a rotated token is used
//! without a restart.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use dw_bus::InboundEvent;
use dw_bus::backfill::{EventSource, SourcedEvent};
use dw_eventstore::envelope as h;
use dw_proto::eventlog::v1::event_log_service_client::EventLogServiceClient;
use dw_proto::eventlog::v1::{ReadEventsRequest, StoredEvent};
use futures::future::BoxFuture;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// TLS towards an `https://` event log: the CA that signed the owner's certificate
/// (`DW_EVENT_LOG_TLS_CA_FILE`; the system's roots without it) and this service's client
/// certificate when the owner requires mTLS (`DW_EVENT_LOG_TLS_CERT_FILE` + `_KEY_FILE`).
#[derive(Debug, Clone, Default)]
pub struct EventLogTls {
    pub ca_file: Option<PathBuf>,
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl EventLogTls {
    /// The client configuration, the files read now (so a renewed certificate is used by the next
    /// backfill without a restart).
    fn client_config(&self) -> Result<ClientTlsConfig, String> {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let mut config = match &self.ca_file {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(config)
    }
}

/// One upstream's event log.
pub struct EventLogSource {
    url: String,
    tls: Option<EventLogTls>,
    /// The channel, made again at the start of each backfill ([`EventSource::head`]) so that
    /// certificate files renewed since the last one are read.
    client: Mutex<EventLogServiceClient<Channel>>,
    token_file: PathBuf,
    /// The upstream's subject prefix: events come back with the subject the relay published.
    subject_prefix: String,
}

impl std::fmt::Debug for EventLogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLogSource")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl EventLogSource {
    /// A source reading `url` (`http://`, or `https://` with `tls`) with the token in
    /// `token_file`; connects on first use. The TLS files are read here (a missing or unreadable
    /// one stops the start) and again at each backfill.
    pub fn new(url: &str, token_file: PathBuf, subject_prefix: &str, tls: EventLogTls) -> Result<Self, String> {
        let https = match Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?
            .uri()
            .scheme_str()
        {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} is not an http:// or https:// address")),
        };
        let tls = https.then_some(tls);
        let client = Mutex::new(Self::client(url, tls.as_ref())?);
        Ok(Self { url: url.to_owned(), tls, client, token_file, subject_prefix: subject_prefix.to_owned() })
    }

    fn client(url: &str, tls: Option<&EventLogTls>) -> Result<EventLogServiceClient<Channel>, String> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.client_config()?).map_err(|e| format!("{url:?}: TLS: {e}"))?;
        }
        Ok(EventLogServiceClient::new(endpoint.connect_lazy()))
    }

    /// A new channel with the TLS files as they are now.
    fn reconnect(&self) -> Result<(), String> {
        let client = Self::client(&self.url, self.tls.as_ref())?;
        *self.client.lock().map_err(|_| "event log client lock poisoned".to_owned())? = client;
        Ok(())
    }

    fn request(&self, body: ReadEventsRequest) -> Result<tonic::Request<ReadEventsRequest>, String> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("service token {}: {e}", self.token_file.display()))?;
        let mut request = tonic::Request::new(body);
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| format!("service token {}: not a header value", self.token_file.display()))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }

    async fn read_page(&self, body: ReadEventsRequest) -> Result<Vec<StoredEvent>, String> {
        let request = self.request(body)?;
        let mut client = self.client.lock().map_err(|_| "event log client lock poisoned".to_owned())?.clone();
        let response = client.read_events(request).await.map_err(|status| format!("{}: {status}", self.url))?;
        Ok(response.into_inner().events)
    }

    /// The event as the stream would carry it: the relay's subject and headers.
    fn inbound(&self, stored: StoredEvent) -> Result<SourcedEvent, String> {
        let time = stored
            .recorded_at
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .ok_or_else(|| format!("event {} has no time", stored.event_id))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(h::CE_ID, stored.event_id.as_str());
        headers.insert(h::CE_TYPE, stored.event_type.as_str());
        headers.insert(h::CE_TIME, time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).as_str());
        headers.insert(h::CE_SUBJECT, stored.stream_id.as_str());
        headers.insert(h::DW_TENANT, stored.tenant.as_str());
        headers.insert(h::DW_STREAM_VERSION, stored.version.to_string().as_str());
        for (name, value) in [
            (h::DW_CORRELATION_ID, &stored.correlation_id),
            (h::DW_CAUSATION_ID, &stored.causation_id),
            (h::TRACEPARENT, &stored.traceparent),
        ] {
            if !value.is_empty() {
                headers.insert(name, value.as_str());
            }
        }
        let subject = format!("{}.{}.{}", self.subject_prefix, stored.tenant, stored.subject);
        let event = InboundEvent::from_parts(&subject, Some(&headers), stored.payload.into(), 0)
            .map_err(|e| format!("event {}: {e}", stored.event_id))?;
        Ok(SourcedEvent { position: stored.global_position, event })
    }
}

impl EventSource for EventLogSource {
    fn head(&self) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            if self.tls.is_some() {
                self.reconnect()?;
            }
            let newest =
                self.read_page(ReadEventsRequest { page_size: 1, newest_first: true, ..Default::default() }).await?;
            Ok(newest.first().map_or(0, |event| event.global_position))
        })
    }

    fn read(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<SourcedEvent>, String>> {
        Box::pin(async move {
            let page_size = i32::try_from(limit.min(1000)).unwrap_or(1000);
            let page =
                self.read_page(ReadEventsRequest { from_position: after, page_size, ..Default::default() }).await?;
            page.into_iter().map(|stored| self.inbound(stored)).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{EventLogSource, EventLogTls};

    // A lazy channel spawns its worker on the runtime (as in a service, which builds sources
    // while it starts).
    #[tokio::test]
    async fn an_event_log_url_is_http_or_https() {
        for good in ["http://agent-sessions:50051", "https://agent-sessions.example:443"] {
            assert!(
                EventLogSource::new(good, "token".into(), "dw.agentsessions", EventLogTls::default()).is_ok(),
                "{good}"
            );
        }
        for bad in ["ftp://agent-sessions", "agent-sessions:50051", "not a url", ""] {
            assert!(
                EventLogSource::new(bad, "token".into(), "dw.agentsessions", EventLogTls::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn an_https_event_log_needs_its_tls_files_readable() {
        let missing = EventLogTls { ca_file: Some("/nonexistent/ca.crt".into()), identity: None };
        let error =
            EventLogSource::new("https://agent-sessions:50051", "token".into(), "dw.agentsessions", missing.clone())
                .err()
                .unwrap_or_default();
        assert!(error.contains("/nonexistent/ca.crt"), "{error}");
        // Plaintext ignores them.
        assert!(
            EventLogSource::new("http://agent-sessions:50051", "token".into(), "dw.agentsessions", missing).is_ok()
        );
    }
}
