//! gRPC plumbing: the channel, authenticated requests, request ids and error rendering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetail, StatusExt as _};

/// A connected channel plus what every request needs.
#[derive(Clone)]
pub struct Rpc {
    pub channel: Channel,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    timeout: Option<Duration>,
    request_id: Option<String>,
}

/// How dwctl reaches an `https://` address (`--ca-file`, `--cert-file`, `--key-file`,
/// `--tls-server-name`); `http://` addresses ignore it.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA (PEM) that signed the server's certificate, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients (mTLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must hold, when it is not the address's host (e.g.
    /// through `kubectl port-forward` to 127.0.0.1).
    pub server_name: Option<String>,
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

impl ClientTls {
    fn config(&self) -> Result<ClientTlsConfig> {
        let mut config = match &self.ca_file {
            Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(path, "CA file")?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert_file, key_file)) = &self.client_cert {
            let cert = read_pem(cert_file, "client certificate")?;
            let key = read_pem(key_file, "client key")?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

/// `addr` as an endpoint: over TLS (with `tls`) when it is `https://`.
pub fn endpoint(addr: &str, tls: &ClientTls) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("invalid address {addr:?}"))?
        .connect_timeout(Duration::from_secs(5));
    match endpoint.uri().scheme_str() {
        Some("https") => endpoint.tls_config(tls.config()?).with_context(|| format!("TLS settings for {addr}")),
        Some("http") => Ok(endpoint),
        _ => bail!("invalid address {addr:?}: it starts with http:// or https://"),
    }
}

impl Rpc {
    pub async fn connect(
        addr: &str,
        tls: &ClientTls,
        token: &str,
        timeout: Option<Duration>,
        request_id: Option<String>,
    ) -> Result<Self> {
        let endpoint = endpoint(addr, tls)?;
        let channel = endpoint.connect().await.with_context(|| format!("cannot connect to {addr}"))?;
        let authorization = MetadataValue::try_from(format!("Bearer {token}"))
            .context("the token contains characters not allowed in a header")?;
        Ok(Self { channel, authorization, timeout, request_id })
    }

    /// Wraps `message` with the bearer token and the unary deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.stream_request(message);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }

    /// Wraps `message` with the bearer token and no deadline (server streams).
    pub fn stream_request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request
    }

    /// `--request-id` when given, else a fresh UUIDv7.
    pub fn request_id(&self) -> String {
        self.request_id.clone().unwrap_or_else(new_request_id)
    }
}

pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The canonical upper-case name of a gRPC code (`FAILED_PRECONDITION`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Renders a gRPC error: code, message, then every `google.rpc` detail it carries.
pub fn describe_status(status: &Status) -> String {
    let mut out = format!("error: {} ({})", code_name(status.code()), i32::from(status.code()));
    if !status.message().is_empty() {
        out.push_str(&format!(": {}", status.message()));
    }
    out.push('\n');
    let details = match status.check_error_details_vec() {
        Ok(details) => details,
        Err(err) => {
            out.push_str(&format!("  (undecodable error details: {err})\n"));
            Vec::new()
        }
    };
    for detail in details {
        out.push_str(&describe_detail(&detail));
    }
    out
}

fn describe_detail(detail: &ErrorDetail) -> String {
    let mut out = String::new();
    match detail {
        ErrorDetail::ErrorInfo(info) => {
            out.push_str(&format!("  reason: {}", info.reason));
            if !info.domain.is_empty() {
                out.push_str(&format!(" (domain {})", info.domain));
            }
            out.push('\n');
            let mut metadata: Vec<_> = info.metadata.iter().collect();
            metadata.sort();
            for (key, value) in metadata {
                out.push_str(&format!("    {key}: {value}\n"));
            }
        }
        ErrorDetail::BadRequest(bad) => {
            for violation in &bad.field_violations {
                out.push_str(&format!("  field {}: {}", violation.field, violation.description));
                if !violation.reason.is_empty() {
                    out.push_str(&format!(" [{}]", violation.reason));
                }
                out.push('\n');
            }
        }
        ErrorDetail::PreconditionFailure(failure) => {
            for violation in &failure.violations {
                out.push_str(&format!(
                    "  precondition {} {}: {}\n",
                    violation.r#type, violation.subject, violation.description
                ));
            }
        }
        ErrorDetail::ResourceInfo(info) => {
            out.push_str(&format!("  resource {} {:?}", info.resource_type, info.resource_name));
            if !info.description.is_empty() {
                out.push_str(&format!(": {}", info.description));
            }
            out.push('\n');
        }
        ErrorDetail::RetryInfo(info) => match info.retry_delay {
            Some(delay) => out.push_str(&format!("  retry after {} ms\n", delay.as_millis())),
            None => out.push_str("  retryable\n"),
        },
        ErrorDetail::RequestInfo(info) => {
            out.push_str(&format!("  request id {}\n", info.request_id));
        }
        ErrorDetail::Help(help) => {
            for link in &help.links {
                out.push_str(&format!("  help: {} <{}>\n", link.description, link.url));
            }
        }
        ErrorDetail::LocalizedMessage(message) => {
            out.push_str(&format!("  message ({}): {}\n", message.locale, message.message));
        }
        ErrorDetail::QuotaFailure(failure) => {
            for violation in &failure.violations {
                out.push_str(&format!("  quota {}: {}\n", violation.subject, violation.description));
            }
        }
        ErrorDetail::DebugInfo(info) => {
            out.push_str(&format!("  debug: {}\n", info.detail));
        }
        _ => out.push_str(&format!("  {detail:?}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn https_addresses_need_readable_tls_files_and_other_schemes_are_refused() {
        assert!(endpoint("http://127.0.0.1:50051", &ClientTls::default()).is_ok());
        let missing = ClientTls { ca_file: Some("/nonexistent/ca.crt".into()), ..ClientTls::default() };
        let error = format!("{:#}", endpoint("https://127.0.0.1:50051", &missing).unwrap_err());
        assert!(error.contains("CA file /nonexistent/ca.crt"), "{error}");
        // http:// ignores the TLS options (one DWCTL_CA_FILE for a mixed set of addresses).
        assert!(endpoint("http://127.0.0.1:50051", &missing).is_ok());
        assert!(endpoint("grpc://127.0.0.1:50051", &ClientTls::default()).is_err());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let cli = crate::testing::parse(&["--cert-file", "c.crt", "--key-file", "c.key", "token"]).unwrap();
        assert_eq!(cli.global.client_tls().client_cert, Some(("c.crt".into(), "c.key".into())));
        let half = crate::testing::parse(&["--cert-file", "c.crt", "token"]).unwrap_err();
        assert_eq!(half.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn status_with_error_info_and_field_violations_is_described() {
        let mut details = ErrorDetails::with_error_info(
            "ALREADY_ON_BREAK",
            "agentsessions.dw",
            [("agent_id".to_owned(), "ana".to_owned())],
        );
        details.add_bad_request_violation("reason_id", "unknown break reason");
        let status = Status::with_error_details(Code::FailedPrecondition, "agent is on a break", details);
        let text = describe_status(&status);
        assert!(text.starts_with("error: FAILED_PRECONDITION (9): agent is on a break\n"), "{text}");
        assert!(text.contains("  reason: ALREADY_ON_BREAK (domain agentsessions.dw)\n"), "{text}");
        assert!(text.contains("    agent_id: ana\n"), "{text}");
        assert!(text.contains("  field reason_id: unknown break reason\n"), "{text}");
    }

    #[test]
    fn status_without_details_is_one_line() {
        let text = describe_status(&Status::not_found("no such agent"));
        assert_eq!(text, "error: NOT_FOUND (5): no such agent\n");
        let text = describe_status(&Status::unimplemented(""));
        assert_eq!(text, "error: UNIMPLEMENTED (12)\n");
    }

    #[test]
    fn request_ids_are_uuid_v7() {
        let id = new_request_id();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    }
}
