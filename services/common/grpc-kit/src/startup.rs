//! Connecting to Postgres, NATS (and the identity provider, [`crate::identity`]) at start-up: retried with backoff until they answer (or the
//! service is asked to stop), so a service can start before its dependencies.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{NatsAuth, NatsSecurity};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cancelled while waiting for {0}")]
    Cancelled(&'static str),
    #[error("invalid {0} url: {1}")]
    InvalidUrl(&'static str, String),
    #[error("invalid nats credentials {0}")]
    InvalidCredentials(String),
    #[error("identity: {0}")]
    Identity(String),
}

/// Waits `backoff` (doubled for the next time, up to 5 s) unless cancelled.
pub(crate) async fn pause(
    cancel: &CancellationToken,
    backoff: &mut Duration,
    what: &'static str,
) -> Result<(), StartupError> {
    tokio::select! {
        () = cancel.cancelled() => return Err(StartupError::Cancelled(what)),
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    Ok(())
}

/// Connects to Postgres at `url` (a `postgres://` URL; TLS by its `sslmode`, `sslrootcert`,
/// `sslcert` and `sslkey` parameters, as libpq reads them), retrying until it answers. Every
/// failed attempt is logged with its cause ([`PostgresFailure`]): one that will not go away by
/// waiting (a refused certificate, a server that requires TLS) at `error`.
pub async fn connect_postgres(
    url: &str,
    max_connections: u32,
    cancel: &CancellationToken,
) -> Result<PgPool, StartupError> {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e: sqlx::Error| StartupError::InvalidUrl("postgres", e.to_string()))?;
    let mut backoff = Duration::from_millis(100);
    loop {
        match try_connect_postgres(options.clone(), max_connections).await {
            Ok(pool) => {
                info!(sslmode = ?options.get_ssl_mode(), "connected to postgres");
                return Ok(pool);
            }
            Err(failure) => {
                let backoff_ms = backoff.as_millis() as u64;
                let PostgresFailure { cause, hint, error } = &failure;
                if cause.needs_an_operator() {
                    error!(cause = cause.as_str(), %error, hint, backoff_ms, "postgres refused the connection");
                } else {
                    warn!(cause = cause.as_str(), %error, hint, backoff_ms, "postgres not reachable yet");
                }
            }
        }
        pause(cancel, &mut backoff, "postgres").await?;
    }
}

/// How long a pooled connection may sit idle and still be handed out without a ping.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// One attempt at a pool of `max_connections` (opening one connection to check it).
pub async fn try_connect_postgres(
    options: sqlx::postgres::PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, PostgresFailure> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A connection back in use within a second is not pinged first (sqlx's default pings on
        // every acquire: one more round trip per command); one idle longer is, so a restarted
        // Postgres still costs no request its first query.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(PostgresFailure::from)
}

/// Why a connection attempt to Postgres failed, for the start-up log.
#[derive(Debug, thiserror::Error)]
#[error("postgres connection failed ({}): {error}; {hint}", cause.as_str())]
pub struct PostgresFailure {
    pub cause: PostgresFailureCause,
    pub hint: &'static str,
    #[source]
    pub error: sqlx::Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresFailureCause {
    /// The TLS handshake failed: an unknown CA, a name the certificate does not hold, a client
    /// certificate refused, or a server without TLS under `sslmode=require`/`verify-*`.
    Tls,
    /// The server refused the connection by `pg_hba.conf` (e.g. plaintext where it requires TLS).
    Refused,
    /// Wrong password or an unknown role.
    Authentication,
    /// Nothing answered in time, or the network said no: usually a server still starting.
    Unreachable,
    Other,
}

impl PostgresFailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Refused => "refused",
            Self::Authentication => "authentication",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }

    /// A failure that waiting does not cure: the configuration or the server must change.
    pub fn needs_an_operator(self) -> bool {
        matches!(self, Self::Tls | Self::Refused | Self::Authentication)
    }
}

/// Whether `error` or one of its causes is a TLS failure: a certificate refused during the
/// handshake comes back as an I/O error carrying rustls' error.
fn caused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        next = error.source();
    }
    false
}

const TLS_HINT: &str = "check sslrootcert (the CA that signed the server's certificate), that the DATABASE_URL host \
     is a name in the certificate (verify-full), sslcert/sslkey, and that the server has TLS on";

impl From<sqlx::Error> for PostgresFailure {
    fn from(error: sqlx::Error) -> Self {
        let (cause, hint) = match &error {
            sqlx::Error::Tls(_) => (PostgresFailureCause::Tls, TLS_HINT),
            sqlx::Error::Io(io) if caused_by_tls(io) => (PostgresFailureCause::Tls, TLS_HINT),
            sqlx::Error::Database(db) if db.code().as_deref() == Some("28000") => (
                PostgresFailureCause::Refused,
                "pg_hba.conf has no entry for this connection: a server that only takes hostssl needs \
                 sslmode=require or verify-full in DATABASE_URL; otherwise check the user, database and address",
            ),
            sqlx::Error::Database(db) if db.code().as_deref() == Some("28P01") => {
                (PostgresFailureCause::Authentication, "wrong password for the DATABASE_URL user")
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                (PostgresFailureCause::Unreachable, "the server is down, starting or not reachable from here")
            }
            _ => (PostgresFailureCause::Other, "see the error"),
        };
        Self { cause, hint, error }
    }
}

/// The servers of `NATS_URL`: one URL or several separated by commas (the nodes of a cluster;
/// the client connects to one that answers and fails over to the others).
pub fn nats_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, StartupError> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| url.parse().map_err(|e: std::io::Error| StartupError::InvalidUrl("nats", format!("{url}: {e}"))))
        .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    if servers.is_empty() {
        return Err(StartupError::InvalidUrl("nats", "no server given".into()));
    }
    Ok(servers)
}

/// The client options `security` asks for: TLS (a CA, a client certificate, plaintext refused)
/// and one way to authenticate.
pub fn nats_connect_options(security: &NatsSecurity) -> Result<async_nats::ConnectOptions, StartupError> {
    let mut options = async_nats::ConnectOptions::new();
    let tls = &security.tls;
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some(client) = &tls.client_cert {
        options = options.add_client_certificate(client.cert_file.clone(), client.key_file.clone());
    }
    options = options.require_tls(tls.required);
    options = match &security.auth {
        NatsAuth::Anonymous => options,
        NatsAuth::Credentials { file, contents } => options
            .credentials(contents.expose_secret())
            .map_err(|e| StartupError::InvalidCredentials(format!("{}: {e}", file.display())))?,
        NatsAuth::Nkey { seed, .. } => options.nkey(seed.expose_secret().to_owned()),
    };
    Ok(options)
}

/// Connects to NATS (any of `urls`, see [`nats_servers`]) with `security`, retrying until one
/// answers. Requests (JetStream API calls, publish acks, double acks) give up after
/// `request_timeout`, so a call that went to a node that died is retried on the cluster's new
/// leader in seconds. A failed attempt is logged with its cause; a refused certificate or
/// credentials at `error`, since waiting does not cure them.
pub async fn connect_nats(
    urls: &str,
    security: &NatsSecurity,
    name: &str,
    request_timeout: Duration,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, StartupError> {
    let servers = nats_servers(urls)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = nats_connect_options(security)?
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(request_timeout))
            .max_reconnects(None)
            .connect(servers.clone())
            .await;
        match attempt {
            Ok(client) => {
                info!(tls = security.tls.required, "connected to nats");
                return Ok(client);
            }
            Err(error) => {
                let backoff_ms = backoff.as_millis() as u64;
                let (cause, hint) = nats_failure(&error);
                if cause == "tls" || cause == "authorization" {
                    error!(cause, %error, hint, backoff_ms, "nats refused the connection");
                } else {
                    warn!(cause, %error, hint, backoff_ms, "nats not reachable yet");
                }
            }
        }
        pause(cancel, &mut backoff, "nats").await?;
    }
}

/// Why a connection attempt to NATS failed, and what to check.
pub fn nats_failure(error: &async_nats::ConnectError) -> (&'static str, &'static str) {
    use async_nats::ConnectErrorKind as Kind;
    match error.kind() {
        Kind::Io if caused_by_tls(error) => (
            "tls",
            "check DW_NATS_TLS_CA_FILE (the CA of the server's certificate), that the NATS_URL host is a \
             name in the certificate, DW_NATS_TLS_CERT_FILE/KEY_FILE when the server verifies clients, \
             and that the server has TLS on when DW_NATS_TLS_REQUIRED",
        ),
        Kind::Tls => ("tls", "the TLS set-up failed: check DW_NATS_TLS_CA_FILE, DW_NATS_TLS_CERT_FILE and KEY_FILE"),
        Kind::AuthorizationViolation | Kind::Authentication => (
            "authorization",
            "the server did not accept the credentials: check DW_NATS_CREDS_FILE or DW_NATS_NKEY_SEED_FILE \
             against the server's users (or the user in NATS_URL)",
        ),
        Kind::ServerParse => ("configuration", "check NATS_URL"),
        Kind::Dns | Kind::TimedOut | Kind::Io | Kind::MaxReconnects => {
            ("unreachable", "the server is down, starting or not reachable from here")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nats_servers;

    #[test]
    fn nats_url_takes_one_server_or_a_comma_separated_cluster() {
        assert_eq!(nats_servers("nats://127.0.0.1:4222").unwrap().len(), 1);
        let cluster = nats_servers("nats://a:4222, nats://b:4223,nats://c:4224").unwrap();
        assert_eq!(cluster.iter().map(|s| s.port()).collect::<Vec<_>>(), [4222, 4223, 4224]);
        assert!(nats_servers("").is_err());
        assert!(nats_servers("nats://a:4222,nats://b:notaport").is_err());
    }
}
