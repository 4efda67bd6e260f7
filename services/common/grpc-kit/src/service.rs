//! What a service declares about itself, once: its name, configuration, migrations, consumers
//! and how it serves. The shared entry point ([`crate::cli::main`]) builds every subcommand of
//! the binary from it (`serve`, `migrate`, `dead-letters`), so no service parses argv itself.

use std::future::Future;
use std::sync::LazyLock;

use dw_bus::declared::DeclaredConsumer;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::BootstrapError;
use crate::config::{ConfigError, ServiceConfig};

pub trait Service: 'static {
    /// The binary's and the telemetry's name, e.g. `agent-sessions`.
    const NAME: &'static str;

    /// The whole configuration. Its `Debug` is logged at start-up, so secrets in it must be
    /// `secrecy` types.
    type Config: std::fmt::Debug + AsRef<ServiceConfig> + Send + Sync + 'static;

    /// Reads the configuration from the environment.
    const CONFIG_FROM_ENV: fn() -> Result<Self::Config, ConfigError>;

    /// The kernel's event-store migration followed by the service's own.
    const MIGRATOR: &'static LazyLock<Migrator>;

    /// The consumers of events (other services' or its own), used to serve and to replay dead
    /// letters. Metrics they need go into `registry`.
    fn consumers(
        _config: &Self::Config,
        _pool: &PgPool,
        _registry: &mut Registry,
    ) -> Result<Vec<Box<dyn DeclaredConsumer>>, BootstrapError> {
        Ok(Vec::new())
    }

    /// The read models it keeps from its own events (in the command's transaction), which
    /// `<service> projections rebuild NAME` rebuilds from its event store.
    fn read_models() -> Vec<Box<dyn dw_eventstore::rebuild::ReadModel>> {
        Vec::new()
    }

    /// Serves on `listener` until `cancel`, then drains.
    fn serve(
        config: Self::Config,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<(), BootstrapError>> + Send;
}
