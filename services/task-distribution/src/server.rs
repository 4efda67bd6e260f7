//! Wiring: the shared bootstrap, the consumers of agent-sessions' and messaging's events, the
//! task feed, the queue metrics sampler and the gRPC service.

use std::sync::Arc;

use dw_bus::{ConsumerConfig, ConsumerMetrics, ProjectionConsumer};
use dw_grpc_kit::AuthInterceptor;
use dw_grpc_kit::bootstrap::{self, Bootstrap};
use dw_proto::distribution::v1::distribution_service_server::DistributionServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::reactions::{AgentSessionsReaction, InboundMessageReaction};
use crate::app::tasks::App;
use crate::config::Config;
use crate::grpc::distribution::DistributionGrpc;
use crate::grpc::task_feed::TaskFeed;
use crate::metrics::{DistributionMetrics, run_queue_sampler};

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 1] = ["dw.distribution.v1.DistributionService"];

pub async fn migrate(config: &Config, cancel: &CancellationToken) -> Result<(), ServeError> {
    bootstrap::migrate(&config.service, &crate::MIGRATOR, cancel).await
}

/// `task-distribution dead-letters …`: lists or replays, through this service's reactions, the
/// events its consumers gave up on.
pub async fn dead_letters(config: &Config, cancel: &CancellationToken, args: &[String]) -> anyhow::Result<()> {
    use dw_bus::dead_letters::{main_command, replay};
    let pool = dw_grpc_kit::startup::connect_postgres(&config.service.database_url, 2, cancel).await?;
    // Metrics of a one-off command go nowhere.
    let metrics = DistributionMetrics::register(&mut prometheus_client::registry::Registry::default());
    let name = |upstream: &str| format!("{}-{upstream}", config.consumer_prefix);
    main_command(&pool, args, async |consumer: &str, id: i64| {
        if consumer == name("agent-sessions") {
            Some(replay(&pool, &AgentSessionsReaction { metrics: metrics.clone() }, id).await)
        } else if consumer == name("messaging") {
            Some(replay(&pool, &InboundMessageReaction { metrics: metrics.clone() }, id).await)
        } else {
            None
        }
    })
    .await
    .map_err(anyhow::Error::msg)
}

pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), ServeError> {
    let addr = config.service.grpc_addr;
    let listener = TcpListener::bind(addr).await.map_err(|e| ServeError::Bind(addr.to_string(), e))?;
    run_with_listener(config, listener, cancel).await
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

    // Consumers retry until their upstream stream exists, so the service starts on its own.
    let metrics = ConsumerMetrics::register(&mut boot.registry);
    let mut sessions =
        ConsumerConfig::new(&format!("{}-agent-sessions", config.consumer_prefix), &config.agent_sessions.stream_name);
    sessions.filter_subjects = vec![format!("{}.>", config.agent_sessions.subject_prefix)];
    let sessions = ProjectionConsumer::new(
        boot.pool.clone(),
        boot.jetstream.clone(),
        sessions,
        AgentSessionsReaction { metrics: distribution_metrics.clone() },
        metrics.clone(),
    );
    boot.tasks.spawn(sessions.run(boot.background.clone()));
    let mut inbound =
        ConsumerConfig::new(&format!("{}-messaging", config.consumer_prefix), &config.messaging.stream_name);
    inbound.filter_subjects = vec![format!("{}.*.inbound.>", config.messaging.subject_prefix)];
    let reaction = InboundMessageReaction { metrics: distribution_metrics.clone() };
    let inbound = ProjectionConsumer::new(boot.pool.clone(), boot.jetstream.clone(), inbound, reaction, metrics);
    boot.tasks.spawn(inbound.run(boot.background.clone()));

    let feed = TaskFeed::start(
        feed_pool,
        boot.jetstream.clone(),
        boot.config.stream_name.clone(),
        boot.config.subject_prefix.clone(),
        &boot.tasks,
        boot.background.clone(),
    );
    let app = Arc::new(App::new(boot.pool.clone(), distribution_metrics));
    let auth = AuthInterceptor::new(boot.verifier.clone());
    let routes = tonic::service::Routes::new(DistributionServiceServer::with_interceptor(
        DistributionGrpc::new(app, feed),
        auth,
    ));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
