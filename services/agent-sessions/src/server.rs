//! Wiring: connects to Postgres and NATS, migrates, starts the outbox relay, the gRPC server
//! (health, reflection, auth, metrics) and the metrics endpoint, and drains them on shutdown.

use std::sync::Arc;
use std::time::Duration;

use dw_auth::JwtVerifier;
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics};
use dw_grpc_kit::metrics_http::{self, Readiness};
use dw_grpc_kit::{AuthInterceptor, RpcLayer, RpcMetrics, health, startup};
use dw_proto::agentsessions::v1::agent_admin_service_server::AgentAdminServiceServer;
use dw_proto::agentsessions::v1::service_day_service_server::ServiceDayServiceServer;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::app::App;
use crate::config::Config;
use crate::grpc::admin::AgentAdminGrpc;
use crate::grpc::service_day::ServiceDayGrpc;
use crate::grpc::status_feed::StatusFeed;

pub const SERVICE_NAMES: [&str; 2] = ["dw.agentsessions.v1.ServiceDayService", "dw.agentsessions.v1.AgentAdminService"];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Startup(#[from] startup::StartupError),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("jwt: {0}")]
    Auth(#[from] dw_auth::AuthError),
    #[error("event stream: {0}")]
    Relay(#[from] dw_eventstore::outbox_relay::RelayError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("binding {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Runs migrations and returns (for `agent-sessions migrate`).
pub async fn migrate(config: &Config, cancel: &CancellationToken) -> Result<(), ServeError> {
    let pool = startup::connect_postgres(&config.database_url, 2, cancel).await?;
    crate::MIGRATOR.run(&pool).await?;
    info!("migrations applied");
    pool.close().await;
    Ok(())
}

/// Binds the configured gRPC address and serves until `cancel`.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(config.grpc_addr).await.map_err(|e| ServeError::Bind(config.grpc_addr.to_string(), e))?;
    run_with_listener(config, listener, cancel).await
}

/// Serves gRPC on `listener` until `cancel`, then drains in-flight RPCs, the relay and the
/// status feeds before returning.
pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let verifier = Arc::new(JwtVerifier::new(&config.jwt_secret)?);
    let pool = startup::connect_postgres(&config.database_url, config.db_max_connections, &cancel).await?;
    if config.run_migrations {
        crate::MIGRATOR.run(&pool).await?;
    }
    let nats = startup::connect_nats(&config.nats_url, "agent-sessions", &cancel).await?;
    let jetstream = async_nats::jetstream::new(nats.clone());

    let mut registry = Registry::with_prefix("");
    let rpc_metrics = RpcMetrics::register(&mut registry);
    let relay_metrics = RelayMetrics::register(&mut registry);

    let mut relay_config = RelayConfig::new("agent-sessions", &config.stream_name, &config.subject_prefix);
    relay_config.replicas = config.stream_replicas;
    relay_config.duplicate_window = config.duplicate_window;
    let relay = OutboxRelay::new(pool.clone(), jetstream.clone(), relay_config, relay_metrics);
    // The stream must exist before watchers bind to it; the relay re-checks when it takes over.
    relay.ensure_stream().await?;

    let tasks = TaskTracker::new();
    let background = CancellationToken::new();
    tasks.spawn(relay.run(background.clone()));

    let readiness = Readiness::default();
    let metrics_server =
        metrics_http::serve(config.metrics_addr, Arc::new(registry), readiness.clone(), cancel.clone())
            .await
            .map_err(|e| ServeError::Bind(config.metrics_addr.to_string(), e))?;

    let (health_reporter, health_service) = health::health_reporter();
    tasks.spawn(health::watch_dependencies(
        health_reporter,
        SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        pool.clone(),
        nats.clone(),
        readiness,
        background.clone(),
    ));
    let (reflection_v1, reflection_v1alpha) = health::reflection_services(&[dw_proto::FILE_DESCRIPTOR_SET])?;

    let app = Arc::new(App::new(pool.clone()));
    let feed = StatusFeed::new(
        pool.clone(),
        jetstream,
        config.stream_name.clone(),
        config.subject_prefix.clone(),
        background.clone(),
    );
    let auth = AuthInterceptor::new(verifier);
    let service_day = ServiceDayServiceServer::with_interceptor(ServiceDayGrpc::new(app.clone()), auth.clone());
    let admin = AgentAdminServiceServer::with_interceptor(AgentAdminGrpc::new(app, feed), auth);

    let local_addr = listener.local_addr().map_err(|e| ServeError::Bind("grpc listener".into(), e))?;
    info!(grpc = %local_addr, metrics = %config.metrics_addr, "agent-sessions serving");
    let shutdown = {
        let cancel = cancel.clone();
        let background = background.clone();
        async move {
            cancel.cancelled().await;
            // Streams end first so the server can drain.
            background.cancel();
        }
    };
    let served = tonic::transport::Server::builder()
        .layer(RpcLayer::new(rpc_metrics))
        .timeout(Duration::from_secs(30))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service_day)
        .add_service(admin)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await;

    info!("grpc server drained, stopping background tasks");
    background.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = metrics_server.await;
    nats.flush().await.ok();
    pool.close().await;
    info!("agent-sessions stopped");
    served.map_err(ServeError::from)
}
