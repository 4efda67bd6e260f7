//! Wiring: the shared bootstrap, the consumers of agent-sessions' and messaging's events, the
//! task feed, the queue metrics sampler and the gRPC service.

use std::sync::Arc;

use dw_bus::declared::{Consumer, DeclaredConsumer};
use dw_bus::{ConsumerConfig, LaneKey};
use dw_grpc_kit::bootstrap::Bootstrap;
use dw_proto::distribution::v1::distribution_service_server::DistributionServiceServer;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::reactions::{AgentSessionsReaction, InboundMessageReaction};
use crate::app::task_feed::TaskFeed;
use crate::app::tasks::App;
use crate::config::Config;
use crate::grpc::distribution::DistributionGrpc;
use crate::metrics::{DistributionMetrics, run_queue_sampler};

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 2] =
    [dw_proto::distribution::v1::distribution_service_server::SERVICE_NAME, dw_grpc_kit::event_log::SERVICE_NAME];

/// task-distribution as the kernel runs it (`dw_grpc_kit::cli::main`).
pub struct TaskDistribution;

impl dw_grpc_kit::service::Service for TaskDistribution {
    const NAME: &'static str = "task-distribution";
    type Config = Config;

    const CONFIG_FROM_ENV: fn() -> Result<Config, dw_grpc_kit::config::ConfigError> = crate::config::from_env;
    const MIGRATOR: &'static std::sync::LazyLock<sqlx::migrate::Migrator> = &crate::MIGRATOR;

    /// `task-distribution projections rebuild tasks`.
    fn read_models() -> Vec<Box<dyn dw_eventstore::rebuild::ReadModel>> {
        vec![Box::<crate::projections::rebuild::TasksModel>::default()]
    }

    fn consumers(
        config: &Config,
        _pool: &sqlx::PgPool,
        registry: &mut Registry,
    ) -> Result<Vec<Box<dyn DeclaredConsumer>>, ServeError> {
        consumers(config, &DistributionMetrics::register(registry))
    }

    async fn serve(config: Config, listener: TcpListener, cancel: CancellationToken) -> Result<(), ServeError> {
        run_with_listener(config, listener, cancel).await
    }
}

/// The reactions to agent-sessions' events (availability) and messaging's (inbound messages).
/// Consumers retry until their upstream stream exists, so the service starts on its own.
fn consumers(config: &Config, metrics: &DistributionMetrics) -> Result<Vec<Box<dyn DeclaredConsumer>>, ServeError> {
    let mut sessions =
        ConsumerConfig::new(&format!("{}-agent-sessions", config.consumer_prefix), &config.agent_sessions.stream_name);
    sessions.filter_subjects = vec![format!("{}.>", config.agent_sessions.subject_prefix)];
    let mut inbound =
        ConsumerConfig::new(&format!("{}-messaging", config.consumer_prefix), &config.messaging.stream_name);
    inbound.filter_subjects = vec![format!("{}.*.inbound.>", config.messaging.subject_prefix)];
    // Both take the tenant's lock for each event: a batch is applied a tenant per lane, so one
    // tenant's burst does not hold up the others' (each tenant's events keep their order).
    for consumer in [&mut sessions, &mut inbound] {
        consumer.lanes = 4;
        consumer.lane_by = LaneKey::Tenant;
    }
    // A consumer created after a stream dropped old events reads them from their owner.
    let setup = |e: dw_grpc_kit::config::ConfigError| ServeError::Setup(e.to_string());
    sessions.backfill = config.agent_sessions.backfill().map_err(setup)?;
    inbound.backfill = config.messaging.backfill().map_err(setup)?;
    Ok(vec![
        Consumer::declare(sessions, AgentSessionsReaction { metrics: metrics.clone() }),
        Consumer::declare(inbound, InboundMessageReaction { metrics: metrics.clone() }),
    ])
}

pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    // The feed reads committed tasks on connections of its own (see TaskFeed::start).
    let feed_pool = dw_grpc_kit::startup::connect_postgres(&config.service.database_url, 4, &cancel).await?;
    let mut boot = Bootstrap::connect("task-distribution", config.service.clone(), &crate::MIGRATOR, cancel).await?;
    boot.start_relay().await?;

    let distribution_metrics = DistributionMetrics::register(&mut boot.registry);
    boot.tasks.spawn(run_queue_sampler(
        boot.pool.clone(),
        distribution_metrics.clone(),
        config.queue_metrics_interval,
        boot.background.clone(),
    ));

    let consumers = consumers(&config, &distribution_metrics)?;
    boot.start_consumers(&consumers);

    let feed = TaskFeed::start(feed_pool, &boot);
    let app = Arc::new(App::new(boot.pool.clone(), distribution_metrics));
    let auth = boot.auth_by(crate::grpc::access::ACCESS, &SERVICE_NAMES)?;
    let routes = tonic::service::Routes::new(DistributionServiceServer::with_interceptor(
        DistributionGrpc::new(app, feed),
        auth.clone(),
    ))
    .add_service(boot.event_log_with_personal_fields(Arc::new(crate::codec::ClientFields), auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
