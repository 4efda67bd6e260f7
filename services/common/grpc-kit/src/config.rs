//! The configuration every service reads from the environment (12-factor), with local defaults.

use crate::connection_age::ConnectionAge;
use crate::fair_share::{FairShareConfig, Rate};
use crate::grpc_tls::GrpcTlsFiles;
use crate::grpc_web::GrpcWebConfig;
use crate::identity::{IdentityConfig, OidcConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod nats;
mod upstream;

pub use nats::{NatsAuth, NatsClientCert, NatsSecurity, NatsTls, nats_credentials, nats_nkey};
pub use upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A service's own defaults.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    pub database: &'static str,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub stream_name: &'static str,
    pub subject_prefix: &'static str,
}

/// Every service's settings. Secrets are [`SecretString`]s: `Debug` prints them redacted, so the
/// whole configuration can be logged at start-up.
#[derive(Clone)]
pub struct ServiceConfig {
    pub database_url: String,
    pub nats_url: String,
    /// TLS and credentials for NATS (`DW_NATS_TLS_*`, `DW_NATS_CREDS_FILE`, `DW_NATS_NKEY_SEED_FILE`).
    pub nats_security: NatsSecurity,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Who signs the bearer tokens: the identity provider's JWKS (`DW_JWT_JWKS_URL`, …) or, for
    /// development, a shared secret (`DW_JWT_SECRET`).
    pub identity: IdentityConfig,
    pub stream_name: String,
    pub subject_prefix: String,
    pub stream_replicas: usize,
    /// The age after which the stream drops an event (`DW_STREAM_MAX_AGE`, default `7d`; `0`:
    /// never). A consumer created later reads older events from the owner ([`Upstream::backfill`]).
    pub stream_max_age: Duration,
    /// The stream's size limit (`DW_STREAM_MAX_BYTES`, default `0`: none).
    pub stream_max_bytes: Option<u64>,
    /// Whether an existing stream whose settings differ is updated at start
    /// (`DW_STREAM_APPLY_CONFIG`, default false: the difference is reported, not reverted).
    pub stream_apply_config: bool,
    /// Whether a replica's commits wake the outbox relay active in another replica over NATS
    /// core (`DW_RELAY_PEER_WAKE`, default true; false: that relay finds them at its 50 ms poll).
    pub relay_peer_wake: bool,
    pub duplicate_window: Duration,
    pub db_max_connections: u32,
    pub run_migrations: bool,
    /// The largest event an append accepts (`DW_EVENT_MAX_BYTES`); keep it well under the NATS
    /// `max_payload`.
    pub event_max_bytes: usize,
    /// How long a NATS request (JetStream API call, publish ack, double ack) may take
    /// (`DW_NATS_REQUEST_TIMEOUT_MS`, 2000).
    pub nats_request_timeout: Duration,
    /// Per-tenant rates and the replica's load limit (`DW_TENANT_*`, `DW_MAX_IN_FLIGHT_RPCS`).
    pub fair_share: FairShareConfig,
    /// When a client is asked to move to a new gRPC connection, and when the old one is closed
    /// (`DW_GRPC_MAX_CONNECTION_AGE_SECONDS`, 300, 0 = never; `…_GRACE_SECONDS`, 30).
    pub grpc_connection_age: Option<ConnectionAge>,
    /// TLS on the gRPC port (`DW_GRPC_TLS_CERT_FILE` + `DW_GRPC_TLS_KEY_FILE`), with client
    /// certificates required when `DW_GRPC_TLS_CLIENT_CA_FILE` is set; plaintext when `None`.
    pub grpc_tls: Option<GrpcTlsFiles>,
    /// How long a live stream stays silent before it sends a heartbeat
    /// (`DW_STREAM_HEARTBEAT_SECS`, 15; 1 to 300).
    pub stream_heartbeat: Duration,
    /// The web origins whose browser pages may call over gRPC-Web (`DW_GRPC_WEB_ALLOWED_ORIGINS`).
    pub grpc_web: GrpcWebConfig,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("nats_url", &redact_url(&self.nats_url))
            .field("nats_security", &self.nats_security)
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("identity", &self.identity)
            .field("stream_name", &self.stream_name)
            .field("subject_prefix", &self.subject_prefix)
            .field("stream_replicas", &self.stream_replicas)
            .field("stream_max_age", &self.stream_max_age)
            .field("stream_max_bytes", &self.stream_max_bytes)
            .field("stream_apply_config", &self.stream_apply_config)
            .field("relay_peer_wake", &self.relay_peer_wake)
            .field("db_max_connections", &self.db_max_connections)
            .field("event_max_bytes", &self.event_max_bytes)
            .field("fair_share", &self.fair_share)
            .field("grpc_connection_age", &self.grpc_connection_age)
            .field("grpc_tls", &self.grpc_tls)
            .field("stream_heartbeat", &self.stream_heartbeat)
            .field("grpc_web", &self.grpc_web)
            .finish()
    }
}

/// Hides a password in a URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `name` as a path to a file that must be readable, or `None` when unset.
pub(crate) fn readable_file(name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = std::env::var(name).ok().filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    std::fs::File::open(&path)
        .map_err(|e| ConfigError::Invalid { name, reason: format!("{}: {e}", path.display()) })?;
    Ok(Some(path))
}

/// `DW_GRPC_TLS_CERT_FILE` and `DW_GRPC_TLS_KEY_FILE` (both or neither) and
/// `DW_GRPC_TLS_CLIENT_CA_FILE` (only with them): see [`crate::grpc_tls`].
fn grpc_tls_from_env() -> Result<Option<GrpcTlsFiles>, ConfigError> {
    let client_ca_file = readable_file("DW_GRPC_TLS_CLIENT_CA_FILE")?;
    match (readable_file("DW_GRPC_TLS_CERT_FILE")?, readable_file("DW_GRPC_TLS_KEY_FILE")?) {
        (Some(cert_file), Some(key_file)) => Ok(Some(GrpcTlsFiles { cert_file, key_file, client_ca_file })),
        (None, None) if client_ca_file.is_some() => Err(ConfigError::Invalid {
            name: "DW_GRPC_TLS_CLIENT_CA_FILE",
            reason: "verifies clients of a TLS port: set DW_GRPC_TLS_CERT_FILE and DW_GRPC_TLS_KEY_FILE too".into(),
        }),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing("DW_GRPC_TLS_KEY_FILE (with DW_GRPC_TLS_CERT_FILE)")),
        (None, Some(_)) => Err(ConfigError::Missing("DW_GRPC_TLS_CERT_FILE (with DW_GRPC_TLS_KEY_FILE)")),
    }
}

/// Lets a service's `Config` with a `service: ServiceConfig` field stand for its shared settings
/// (`AsRef<ServiceConfig>`, which [`crate::service::Service`] asks of it).
#[macro_export]
macro_rules! shared_settings_in_field {
    ($config:ty) => {
        impl AsRef<$crate::config::ServiceConfig> for $config {
            fn as_ref(&self) -> &$crate::config::ServiceConfig {
                &self.service
            }
        }
    };
}

impl AsRef<ServiceConfig> for ServiceConfig {
    fn as_ref(&self) -> &ServiceConfig {
        self
    }
}

/// A secret from `NAME`, or from the file named by `NAME_FILE` (a mounted Kubernetes secret),
/// or `default` when neither is set. A file's trailing newline is not part of the secret.
pub fn secret(name: &'static str, file_name: &'static str, default: &str) -> Result<SecretString, ConfigError> {
    if let Some(path) = std::env::var(file_name).ok().filter(|p| !p.trim().is_empty()) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Invalid { name: file_name, reason: format!("{path}: {e}") })?;
        return Ok(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(SecretString::from(var(name, default)))
}

/// An environment variable, or `default` when unset or blank.
pub fn var(name: &'static str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

/// A parsed environment variable, or the parsed `default`.
pub fn parsed<T: std::str::FromStr>(name: &'static str, default: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name, default).parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() })
}

/// An age such as `30d`, `12h`, `90m`, `3600s` or `3600` (seconds); `0` is no limit.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not an age like 30d, 12h, 90m or 3600s"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    number.checked_mul(seconds_per_unit).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// A size such as `4GiB`, `512MiB`, `64KiB` or `1048576` (bytes); `0` is no limit (`None`).
pub fn parse_bytes(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 4GiB, 512MiB or 1048576"))?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{text:?}: the unit is one of B, KiB, MiB, GiB, TiB")),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(|| format!("{text:?} is too large"))?;
    Ok((bytes > 0).then_some(bytes))
}

/// Each tenant's rates (per replica) and the load a replica takes before it sheds:
/// `DW_TENANT_MUTATIONS_PER_SECOND` (default 100), `DW_TENANT_SENDS_PER_SECOND` (20), each with
/// a burst of two seconds' worth; `DW_TENANT_RATE_OVERRIDES` (`acme:mutations=500,sends=50;…`);
/// `DW_TENANT_MAX_IN_FLIGHT` (8: half the default database pool), `DW_MAX_IN_FLIGHT_RPCS` (1024),
/// `DW_TENANT_MAX_STREAMS` (5000 live streams per tenant and replica).
fn fair_share_from_env() -> Result<FairShareConfig, ConfigError> {
    let rate = |name: &'static str, default: &str| -> Result<Rate, ConfigError> {
        let value: f64 = parsed(name, default)?;
        if !(value.is_finite() && value > 0.0) {
            return Err(ConfigError::Invalid { name, reason: "must be a number above 0".into() });
        }
        Ok(Rate::per_second(value))
    };
    Ok(FairShareConfig {
        mutations: rate("DW_TENANT_MUTATIONS_PER_SECOND", "100")?,
        sends: rate("DW_TENANT_SENDS_PER_SECOND", "20")?,
        overrides: FairShareConfig::parse_overrides(&var("DW_TENANT_RATE_OVERRIDES", ""))
            .map_err(|reason| ConfigError::Invalid { name: "DW_TENANT_RATE_OVERRIDES", reason })?,
        max_in_flight: parsed("DW_MAX_IN_FLIGHT_RPCS", "1024")?,
        max_in_flight_per_tenant: parsed("DW_TENANT_MAX_IN_FLIGHT", "8")?,
        max_streams_per_tenant: parsed("DW_TENANT_MAX_STREAMS", "5000")?,
    })
}

/// The longest silence on a live stream, `DW_STREAM_HEARTBEAT_SECS`: from 1 s (more often only
/// costs) to 300 s (proxies cut idle responses after their read timeout, 60 s for a default
/// ingress-nginx, so keep it well below the shortest on the way).
const STREAM_HEARTBEAT_SECS: std::ops::RangeInclusive<u64> = 1..=300;

fn stream_heartbeat(seconds: u64) -> Result<Duration, ConfigError> {
    if !STREAM_HEARTBEAT_SECS.contains(&seconds) {
        return Err(ConfigError::Invalid {
            name: "DW_STREAM_HEARTBEAT_SECS",
            reason: format!(
                "must be between {} and {} seconds, and below the read timeout of every proxy in front of the service",
                STREAM_HEARTBEAT_SECS.start(),
                STREAM_HEARTBEAT_SECS.end()
            ),
        });
    }
    Ok(Duration::from_secs(seconds))
}

/// `DW_GRPC_MAX_CONNECTION_AGE_SECONDS` (default 300; 0 turns the limit off) and
/// `DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS` (default 30). The grace may not be shorter than the
/// server's request timeout, so that no unary RPC running at the `GOAWAY` is cut.
fn connection_age_from_env() -> Result<Option<ConnectionAge>, ConfigError> {
    let max_age: u64 = parsed("DW_GRPC_MAX_CONNECTION_AGE_SECONDS", "300")?;
    let grace: u64 = parsed("DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS", "30")?;
    connection_age(max_age, grace)
}

fn connection_age(max_age_seconds: u64, grace_seconds: u64) -> Result<Option<ConnectionAge>, ConfigError> {
    if max_age_seconds == 0 {
        return Ok(None);
    }
    let min_grace = crate::bootstrap::RPC_TIMEOUT.as_secs();
    if grace_seconds < min_grace {
        return Err(ConfigError::Invalid {
            name: "DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS",
            reason: format!("must be at least {min_grace} (the RPC timeout), so that no unary call is cut"),
        });
    }
    Ok(Some(ConnectionAge { max_age: Duration::from_secs(max_age_seconds), grace: Duration::from_secs(grace_seconds) }))
}

/// How bearer tokens are verified. With `DW_JWT_JWKS_URL`, against the identity provider's keys:
/// `DW_JWT_ISSUER` and `DW_JWT_AUDIENCE` are required, the claim paths (`DW_JWT_SUBJECT_CLAIM`
/// `sub`, `DW_JWT_TENANT_CLAIM` `tenant`, `DW_JWT_ROLES_CLAIM` `roles`) and `DW_JWT_ROLE_MAP`
/// optional, and a shared secret, if also set, is not used (one warning at start-up). Without it,
/// HS256 with `DW_JWT_SECRET` (or `DW_JWT_SECRET_FILE`): development and tests only. With
/// neither, [`IdentityConfig::Unset`]: enough for `migrate`, refused by `serve`.
fn identity_from_env() -> Result<IdentityConfig, ConfigError> {
    let jwt_secret = secret("DW_JWT_SECRET", "DW_JWT_SECRET_FILE", "")?;
    let jwks_url = var("DW_JWT_JWKS_URL", "");
    if !jwks_url.is_empty() {
        if !jwt_secret.expose_secret().is_empty() {
            tracing::warn!("DW_JWT_SECRET is set but not used: tokens are verified against DW_JWT_JWKS_URL only");
        }
        return oidc_from_env(jwks_url).map(IdentityConfig::Oidc);
    }
    if jwt_secret.expose_secret().is_empty() {
        return Ok(IdentityConfig::Unset);
    }
    if jwt_secret.expose_secret().len() < dw_auth::MIN_SECRET_LEN {
        return Err(ConfigError::Invalid {
            name: "DW_JWT_SECRET",
            reason: format!("must be at least {} bytes", dw_auth::MIN_SECRET_LEN),
        });
    }
    Ok(IdentityConfig::SharedSecret(jwt_secret))
}

fn oidc_from_env(jwks_url: String) -> Result<OidcConfig, ConfigError> {
    crate::identity::check_jwks_url(&jwks_url)
        .map_err(|reason| ConfigError::Invalid { name: "DW_JWT_JWKS_URL", reason })?;
    let issuer = var("DW_JWT_ISSUER", "");
    if issuer.is_empty() {
        return Err(ConfigError::Missing("DW_JWT_ISSUER"));
    }
    let audience = var("DW_JWT_AUDIENCE", "");
    if audience.is_empty() {
        return Err(ConfigError::Missing("DW_JWT_AUDIENCE"));
    }
    let invalid = |name: &'static str| move |reason: String| ConfigError::Invalid { name, reason };
    let claims = dw_auth::ClaimMapping {
        subject: dw_auth::ClaimPath::parse(&var("DW_JWT_SUBJECT_CLAIM", "sub"))
            .map_err(invalid("DW_JWT_SUBJECT_CLAIM"))?,
        tenant: dw_auth::ClaimPath::parse(&var("DW_JWT_TENANT_CLAIM", "tenant"))
            .map_err(invalid("DW_JWT_TENANT_CLAIM"))?,
        roles: dw_auth::ClaimPath::parse(&var("DW_JWT_ROLES_CLAIM", "roles")).map_err(invalid("DW_JWT_ROLES_CLAIM"))?,
        role_map: dw_auth::RoleMap::parse(&var("DW_JWT_ROLE_MAP", "")).map_err(invalid("DW_JWT_ROLE_MAP"))?,
    };
    let settings = dw_auth::OidcSettings {
        issuer: issuer.trim().to_owned(),
        audience: audience.trim().to_owned(),
        claims,
        leeway_seconds: dw_auth::LEEWAY_SECONDS,
    };
    let refresh: u64 = parsed("DW_JWT_JWKS_REFRESH_SECONDS", "300")?;
    let min_refresh: u64 = parsed("DW_JWT_JWKS_MIN_REFRESH_SECONDS", "10")?;
    if refresh == 0 || min_refresh == 0 {
        return Err(ConfigError::Invalid {
            name: "DW_JWT_JWKS_REFRESH_SECONDS",
            reason: "it and DW_JWT_JWKS_MIN_REFRESH_SECONDS must be at least 1".into(),
        });
    }
    let mut oidc = OidcConfig::new(jwks_url, settings);
    oidc.refresh_interval = Duration::from_secs(refresh);
    oidc.min_refresh_interval = Duration::from_secs(min_refresh);
    Ok(oidc)
}

impl ServiceConfig {
    pub fn from_env(defaults: ServiceDefaults) -> Result<Self, ConfigError> {
        let identity = identity_from_env()?;
        let database_url = format!("postgres://postgres@127.0.0.1:5432/{}", defaults.database);
        Ok(Self {
            database_url: var("DATABASE_URL", &database_url),
            nats_url: var("NATS_URL", "nats://127.0.0.1:4222"),
            nats_security: NatsSecurity::from_env()?,
            grpc_addr: parsed("GRPC_ADDR", &format!("0.0.0.0:{}", defaults.grpc_port))?,
            metrics_addr: parsed("METRICS_ADDR", &format!("0.0.0.0:{}", defaults.metrics_port))?,
            identity,
            stream_name: var("DW_STREAM_NAME", defaults.stream_name),
            subject_prefix: var("DW_SUBJECT_PREFIX", defaults.subject_prefix),
            stream_replicas: parsed("DW_STREAM_REPLICAS", "1")?,
            stream_max_age: parse_age(&var("DW_STREAM_MAX_AGE", "7d"))
                .map_err(|reason| ConfigError::Invalid { name: "DW_STREAM_MAX_AGE", reason })?,
            stream_max_bytes: parse_bytes(&var("DW_STREAM_MAX_BYTES", "0"))
                .map_err(|reason| ConfigError::Invalid { name: "DW_STREAM_MAX_BYTES", reason })?,
            stream_apply_config: parsed("DW_STREAM_APPLY_CONFIG", "false")?,
            relay_peer_wake: parsed("DW_RELAY_PEER_WAKE", "true")?,
            duplicate_window: Duration::from_secs(parsed("DW_DUPLICATE_WINDOW_SECONDS", "120")?),
            db_max_connections: parsed("DW_DB_MAX_CONNECTIONS", "16")?,
            run_migrations: parsed("DW_RUN_MIGRATIONS", "true")?,
            nats_request_timeout: Duration::from_millis(parsed("DW_NATS_REQUEST_TIMEOUT_MS", "2000")?),
            event_max_bytes: parsed("DW_EVENT_MAX_BYTES", &dw_eventstore::store::DEFAULT_MAX_EVENT_BYTES.to_string())?,
            fair_share: fair_share_from_env()?,
            grpc_connection_age: connection_age_from_env()?,
            grpc_tls: grpc_tls_from_env()?,
            stream_heartbeat: stream_heartbeat(parsed("DW_STREAM_HEARTBEAT_SECS", "15")?)?,
            grpc_web: GrpcWebConfig::from_env()?,
        })
    }

    /// A configuration for tests: everything given, nothing read from the environment; tokens
    /// are HS256 with `jwt_secret` (set [`identity`](Self::identity) for an identity provider).
    pub fn for_test(
        database_url: String,
        nats_url: String,
        grpc_addr: SocketAddr,
        jwt_secret: &[u8],
        stream_name: String,
        subject_prefix: String,
    ) -> Self {
        Self {
            database_url,
            nats_url,
            nats_security: NatsSecurity::default(),
            grpc_addr,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity: IdentityConfig::SharedSecret(SecretString::from(
                String::from_utf8_lossy(jwt_secret).into_owned(),
            )),
            stream_name,
            subject_prefix,
            stream_replicas: 1,
            stream_max_age: Duration::ZERO,
            stream_max_bytes: None,
            stream_apply_config: false,
            relay_peer_wake: true,
            duplicate_window: Duration::from_secs(120),
            db_max_connections: 30,
            run_migrations: false,
            event_max_bytes: dw_eventstore::store::DEFAULT_MAX_EVENT_BYTES,
            nats_request_timeout: Duration::from_secs(2),
            fair_share: FairShareConfig::unlimited(),
            grpc_connection_age: None,
            grpc_tls: None,
            stream_heartbeat: Duration::from_secs(15),
            grpc_web: GrpcWebConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests;
