//! Wiring: the shared bootstrap, the consumers of messaging's, distribution's and
//! agent-sessions' events, the subscription notifier and the gRPC service.

use dw_bus::ConsumerConfig;
use dw_bus::declared::{Consumer, DeclaredConsumer};
use dw_bus::permissions::PermissionsProjection;
use dw_grpc_kit::bootstrap::Bootstrap;
use dw_proto::notifications::v1::notification_service_server::NotificationServiceServer;
use dw_proto::notifications::v1::webhook_service_server::WebhookServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::destination::DestinationPolicy;
use crate::app::push_delivery::{self, PushMetrics};
use crate::app::webhook_delivery::{self, WebhookMetrics};
use crate::config::Config;
use crate::grpc::WebhookGrpc;
use crate::grpc::{NotificationGrpc, Notifier};
use crate::projections::{DistributionProjection, MessagingProjection, TenantZonesProjection};

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 3] = [
    dw_proto::notifications::v1::notification_service_server::SERVICE_NAME,
    dw_proto::notifications::v1::webhook_service_server::SERVICE_NAME,
    dw_grpc_kit::event_log::SERVICE_NAME,
];

/// notifications as the kernel runs it (`dw_grpc_kit::cli::main`).
pub struct Notifications;

impl dw_grpc_kit::service::Service for Notifications {
    const NAME: &'static str = "notifications";
    type Config = Config;

    const CONFIG_FROM_ENV: fn() -> Result<Config, dw_grpc_kit::config::ConfigError> = crate::config::from_env;
    const MIGRATOR: &'static std::sync::LazyLock<sqlx::migrate::Migrator> = &crate::MIGRATOR;

    /// The log from messaging's events, agents' notifications from distribution's, and the
    /// permissions and tenants' time zones from agent-sessions'.
    fn consumers(
        config: &Config,
        _pool: &sqlx::PgPool,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Vec<Box<dyn DeclaredConsumer>>, ServeError> {
        let name = |upstream: &str| format!("{}-{upstream}", config.consumer_prefix);
        let mut messaging = ConsumerConfig::new(&name("messaging"), &config.messaging.stream_name);
        messaging.filter_subjects = vec![format!("{}.*.message.>", config.messaging.subject_prefix)];
        let mut distribution = ConsumerConfig::new(&name("distribution"), &config.distribution.stream_name);
        distribution.filter_subjects = vec![format!("{}.*.task.>", config.distribution.subject_prefix)];
        let mut permissions = ConsumerConfig::new(&name("agent-sessions"), &config.agent_sessions.stream_name);
        permissions.filter_subjects = vec![format!("{}.*.agent.>", config.agent_sessions.subject_prefix)];
        // A consumer of its own (not a wider filter on the permissions one, whose durable
        // configuration deployments already have): the tenants' settings, for their time zones.
        let mut tenants = ConsumerConfig::new(&name("agent-sessions-tenants"), &config.agent_sessions.stream_name);
        tenants.filter_subjects = vec![format!("{}.*.tenant.>", config.agent_sessions.subject_prefix)];
        // A consumer created after a stream dropped old events (this one, added to running
        // deployments, for one) reads them from their owner.
        let setup = |e: dw_grpc_kit::config::ConfigError| ServeError::Setup(e.to_string());
        messaging.backfill = config.messaging.backfill().map_err(setup)?;
        distribution.backfill = config.distribution.backfill().map_err(setup)?;
        permissions.backfill = config.agent_sessions.backfill().map_err(setup)?;
        tenants.backfill = config.agent_sessions.backfill().map_err(setup)?;
        Ok(vec![
            Consumer::declare(messaging, MessagingProjection),
            Consumer::declare(distribution, DistributionProjection),
            Consumer::declare(permissions, PermissionsProjection),
            Consumer::declare(tenants, TenantZonesProjection),
        ])
    }

    async fn serve(config: Config, listener: TcpListener, cancel: CancellationToken) -> Result<(), ServeError> {
        run_with_listener(config, listener, cancel).await
    }
}

pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let mut boot = Bootstrap::connect("notifications", config.service.clone(), &crate::MIGRATOR, cancel).await?;
    boot.start_relay().await?;
    let consumers =
        <Notifications as dw_grpc_kit::service::Service>::consumers(&config, &boot.pool, &mut boot.registry)?;
    boot.start_consumers(&consumers);

    // One destination policy per kind of outbound HTTP, for registration and delivery alike.
    let webhook_destinations = DestinationPolicy::new(&config.webhooks.allowed_hosts);
    let push_destinations = DestinationPolicy::new(&config.push.allowed_hosts);
    let webhook_metrics = WebhookMetrics::register(&mut boot.registry);
    let worker = webhook_delivery::run_worker(
        boot.pool.clone(),
        config.webhooks.clone(),
        webhook_destinations.clone(),
        webhook_metrics,
        boot.background.clone(),
    );
    boot.tasks.spawn(worker);
    let pushes = std::sync::Arc::new(tokio::sync::Notify::new());
    let notifier = Notifier::start(
        boot.pool.clone(),
        boot.live_feed(1, dw_grpc_kit::live::Overflow::Coalesce),
        pushes.clone(),
        &boot.tasks,
        boot.background.clone(),
    );
    let push_metrics = PushMetrics::register(&mut boot.registry);
    let worker = push_delivery::run_worker(
        boot.pool.clone(),
        config.push.clone(),
        push_destinations.clone(),
        push_metrics,
        pushes,
        boot.background.clone(),
    );
    boot.tasks.spawn(worker);
    let service =
        NotificationGrpc::new(boot.pool.clone(), notifier, boot.background.clone(), &config.push, push_destinations);
    let auth = boot.auth_by(crate::grpc::access::ACCESS, &SERVICE_NAMES)?;
    let webhooks = WebhookGrpc::new(boot.pool.clone(), webhook_destinations);
    let routes = tonic::service::Routes::new(NotificationServiceServer::with_interceptor(service, auth.clone()))
        .add_service(WebhookServiceServer::with_interceptor(webhooks, auth.clone()))
        .add_service(boot.event_log(auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
