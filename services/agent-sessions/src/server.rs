//! Wiring: the shared bootstrap (Postgres, NATS, relay, health, reflection, metrics, shutdown)
//! plus agent-sessions' two gRPC services and the kernel's event log of its store.

use std::sync::Arc;

use dw_grpc_kit::bootstrap::Bootstrap;
use dw_proto::agentsessions::v1::agent_admin_service_server::AgentAdminServiceServer;
use dw_proto::agentsessions::v1::service_day_service_server::ServiceDayServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::app::status_feed::StatusFeed;
use crate::config::Config;
use crate::grpc::admin::AgentAdminGrpc;
use crate::grpc::service_day::ServiceDayGrpc;

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

/// agent-sessions as the kernel runs it (`dw_grpc_kit::cli::main`).
pub struct AgentSessions;

impl dw_grpc_kit::service::Service for AgentSessions {
    const NAME: &'static str = "agent-sessions";
    type Config = Config;

    const CONFIG_FROM_ENV: fn() -> Result<Config, dw_grpc_kit::config::ConfigError> = crate::config::from_env;
    const MIGRATOR: &'static std::sync::LazyLock<sqlx::migrate::Migrator> = &crate::MIGRATOR;

    fn read_models() -> Vec<Box<dyn dw_eventstore::rebuild::ReadModel>> {
        vec![Box::new(crate::projections::rebuild::ReadModels)]
    }

    async fn serve(config: Config, listener: TcpListener, cancel: CancellationToken) -> Result<(), ServeError> {
        run_with_listener(config, listener, cancel).await
    }
}

pub const SERVICE_NAMES: [&str; 3] = [
    dw_proto::agentsessions::v1::service_day_service_server::SERVICE_NAME,
    dw_proto::agentsessions::v1::agent_admin_service_server::SERVICE_NAME,
    dw_grpc_kit::event_log::SERVICE_NAME,
];

/// Serves gRPC on `listener` until `cancel`, then drains.
pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let mut boot = Bootstrap::connect("agent-sessions", config, &crate::MIGRATOR, cancel).await?;
    // The stream must exist before watchers bind to it; the relay re-checks when it takes over.
    boot.start_relay().await?;

    let app = Arc::new(App::new(boot.pool.clone()));
    let feed = StatusFeed::start(boot.pool.clone(), &boot);
    let auth = boot.auth_by(crate::grpc::access::ACCESS, &SERVICE_NAMES)?;
    let routes = tonic::service::Routes::new(ServiceDayServiceServer::with_interceptor(
        ServiceDayGrpc::new(app.clone()),
        auth.clone(),
    ))
    .add_service(AgentAdminServiceServer::with_interceptor(AgentAdminGrpc::new(app, feed), auth.clone()))
    .add_service(boot.event_log(auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
