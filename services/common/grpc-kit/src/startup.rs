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

pub async fn connect_nats(
    url: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, StartupError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .max_reconnects(None)
            .connect(url)
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
