//! Wiring: the shared bootstrap, the consumers of messaging's, distribution's and
//! agent-sessions' events, the subscription notifier and the gRPC service.

use dw_bus::permissions::PermissionsProjection;
use dw_bus::{ConsumerConfig, ConsumerMetrics, ProjectionConsumer};
use dw_grpc_kit::AuthInterceptor;
use dw_grpc_kit::bootstrap::{self, Bootstrap};
use dw_proto::notifications::v1::notification_service_server::NotificationServiceServer;
use dw_proto::notifications::v1::webhook_service_server::WebhookServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::grpc::{NotificationGrpc, Notifier};
use crate::projections::{DistributionProjection, MessagingProjection};
use crate::push::PushMetrics;
use crate::webhooks::WebhookMetrics;

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 2] = ["dw.notifications.v1.NotificationService", "dw.notifications.v1.WebhookService"];

pub async fn migrate(config: &Config, cancel: &CancellationToken) -> Result<(), ServeError> {
    bootstrap::migrate(&config.service, &crate::MIGRATOR, cancel).await
}

/// `notifications dead-letters …`: lists or replays, through this service's projections, the
/// events its consumers gave up on.
pub async fn dead_letters(config: &Config, cancel: &CancellationToken, args: &[String]) -> anyhow::Result<()> {
    use dw_bus::dead_letters::{main_command, replay};
    let pool = dw_grpc_kit::startup::connect_postgres(&config.service.database_url, 2, cancel).await?;
    let name = |upstream: &str| format!("{}-{upstream}", config.consumer_prefix);
    main_command(&pool, args, async |consumer: &str, id: i64| {
        if consumer == name("messaging") {
            Some(replay(&pool, &MessagingProjection, id).await)
        } else if consumer == name("distribution") {
            Some(replay(&pool, &DistributionProjection, id).await)
        } else if consumer == name("agent-sessions") {
            Some(replay(&pool, &PermissionsProjection, id).await)
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
    let mut boot = Bootstrap::connect("notifications", config.service.clone(), &crate::MIGRATOR, cancel).await?;
    boot.start_relay().await?;
    let metrics = ConsumerMetrics::register(&mut boot.registry);
    let name = |upstream: &str| format!("{}-{upstream}", config.consumer_prefix);

    let mut messaging = ConsumerConfig::new(&name("messaging"), &config.messaging.stream_name);
    messaging.filter_subjects = vec![format!("{}.*.message.>", config.messaging.subject_prefix)];
    let messaging = ProjectionConsumer::new(
        boot.pool.clone(),
        boot.jetstream.clone(),
        messaging,
        MessagingProjection,
        metrics.clone(),
    );
    boot.tasks.spawn(messaging.run(boot.background.clone()));

    let mut distribution = ConsumerConfig::new(&name("distribution"), &config.distribution.stream_name);
    distribution.filter_subjects = vec![format!("{}.*.task.>", config.distribution.subject_prefix)];
    let distribution = ProjectionConsumer::new(
        boot.pool.clone(),
        boot.jetstream.clone(),
        distribution,
        DistributionProjection,
        metrics.clone(),
    );
    boot.tasks.spawn(distribution.run(boot.background.clone()));

    let mut permissions = ConsumerConfig::new(&name("agent-sessions"), &config.agent_sessions.stream_name);
    permissions.filter_subjects = vec![format!("{}.*.agent.>", config.agent_sessions.subject_prefix)];
    let permissions =
        ProjectionConsumer::new(boot.pool.clone(), boot.jetstream.clone(), permissions, PermissionsProjection, metrics);
    boot.tasks.spawn(permissions.run(boot.background.clone()));

    let webhook_metrics = WebhookMetrics::register(&mut boot.registry);
    let worker = crate::webhooks::run_worker(
        boot.pool.clone(),
        config.webhooks.clone(),
        webhook_metrics,
        boot.background.clone(),
    );
    boot.tasks.spawn(worker);
    let notifier = Notifier::start(boot.pool.clone(), &boot.tasks, boot.background.clone());
    let push_metrics = PushMetrics::register(&mut boot.registry);
    let worker = crate::push::run_worker(boot.pool.clone(), config.push.clone(), push_metrics, boot.background.clone());
    boot.tasks.spawn(worker);
    let service = NotificationGrpc::new(boot.pool.clone(), notifier, boot.background.clone(), &config.push);
    let auth = AuthInterceptor::new(boot.verifier.clone());
    let webhooks = crate::webhooks::WebhookGrpc::new(boot.pool.clone(), config.webhooks.clone());
    let routes = tonic::service::Routes::new(NotificationServiceServer::with_interceptor(service, auth.clone()))
        .add_service(WebhookServiceServer::with_interceptor(webhooks, auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
