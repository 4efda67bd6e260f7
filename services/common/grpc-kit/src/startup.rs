//! Connecting to Postgres and NATS at start-up: retried with backoff until they answer (or the
//! service is asked to stop), so a service can start before its dependencies.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cancelled while waiting for {0}")]
    Cancelled(&'static str),
    #[error("invalid {0} url: {1}")]
    InvalidUrl(&'static str, String),
}

async fn pause(cancel: &CancellationToken, backoff: &mut Duration, what: &'static str) -> Result<(), StartupError> {
    tokio::select! {
        () = cancel.cancelled() => return Err(StartupError::Cancelled(what)),
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    Ok(())
}

pub async fn connect_postgres(
    url: &str,
    max_connections: u32,
    cancel: &CancellationToken,
) -> Result<PgPool, StartupError> {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e: sqlx::Error| StartupError::InvalidUrl("postgres", e.to_string()))?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => {
                info!("connected to postgres");
                return Ok(pool);
            }
            Err(error) => warn!(%error, backoff_ms = backoff.as_millis() as u64, "postgres not reachable yet"),
        }
        pause(cancel, &mut backoff, "postgres").await?;
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

/// Connects to NATS (any of `urls`, see [`nats_servers`]), retrying until one answers. Requests
/// (JetStream API calls, publish acks, double acks) give up after `request_timeout`, so a call
/// that went to a node that died is retried on the cluster's new leader in seconds.
pub async fn connect_nats(
    urls: &str,
    name: &str,
    request_timeout: Duration,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, StartupError> {
    let servers = nats_servers(urls)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(request_timeout))
            .max_reconnects(None)
            .connect(servers.clone())
            .await;
        match attempt {
            Ok(client) => {
                info!("connected to nats");
                return Ok(client);
            }
            Err(error) => warn!(%error, backoff_ms = backoff.as_millis() as u64, "nats not reachable yet"),
        }
        pause(cancel, &mut backoff, "nats").await?;
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
