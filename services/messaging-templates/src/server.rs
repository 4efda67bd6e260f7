//! Wiring: the shared bootstrap plus the template and contact services.

use std::sync::Arc;

use dw_grpc_kit::AuthInterceptor;
use dw_grpc_kit::bootstrap::{self, Bootstrap};
use dw_proto::messaging::v1::contact_service_server::ContactServiceServer;
use dw_proto::messaging::v1::template_service_server::TemplateServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::app::send::{Dispatcher, PermissionsProjection};
use crate::config::Config;
use crate::grpc::contacts::ContactGrpc;
use crate::grpc::templates::TemplateGrpc;
use crate::providers::{ProviderMetrics, Providers};
use dw_bus::{ConsumerConfig, ConsumerMetrics, ProjectionConsumer};

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 2] = ["dw.messaging.v1.TemplateService", "dw.messaging.v1.ContactService"];

pub async fn migrate(config: &Config, cancel: &CancellationToken) -> Result<(), ServeError> {
    bootstrap::migrate(&config.service, &crate::MIGRATOR, cancel).await
}

/// `messaging-templates dead-letters …`: lists or replays, through this service's projections
/// (the dispatcher included: a replayed request is handed to its provider), the events its
/// consumers gave up on.
pub async fn dead_letters(config: &Config, cancel: &CancellationToken, args: &[String]) -> anyhow::Result<()> {
    use dw_bus::dead_letters::{main_command, replay};
    let pool = dw_grpc_kit::startup::connect_postgres(&config.service.database_url, 2, cancel).await?;
    // Metrics of a one-off command go nowhere.
    let metrics = ProviderMetrics::register(&mut prometheus_client::registry::Registry::default());
    let providers = Providers::new(config.providers.clone(), metrics).map_err(anyhow::Error::msg)?;
    let dispatcher = Dispatcher { pool: pool.clone(), providers };
    let name = |upstream: &str| format!("{}-{upstream}", config.consumer_prefix);
    main_command(&pool, args, async |consumer: &str, id: i64| {
        if consumer == name("agent-sessions") {
            Some(replay(&pool, &PermissionsProjection, id).await)
        } else if consumer == name("dispatch") {
            Some(replay(&pool, &dispatcher, id).await)
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
    let mut boot = Bootstrap::connect("messaging-templates", config.service.clone(), &crate::MIGRATOR, cancel).await?;
    let providers = Providers::new(config.providers.clone(), ProviderMetrics::register(&mut boot.registry))
        .map_err(|e| ServeError::Bind("provider http client".into(), std::io::Error::other(e)))?;
    boot.start_relay().await?;

    let metrics = ConsumerMetrics::register(&mut boot.registry);
    let mut permissions =
        ConsumerConfig::new(&format!("{}-agent-sessions", config.consumer_prefix), &config.agent_sessions_stream);
    permissions.filter_subjects = vec![format!("{}.*.agent.>", config.agent_sessions_subject_prefix)];
    let permissions = ProjectionConsumer::new(
        boot.pool.clone(),
        boot.jetstream.clone(),
        permissions,
        PermissionsProjection,
        metrics.clone(),
    );
    boot.tasks.spawn(permissions.run(boot.background.clone()));
    if config.dispatch_enabled {
        let mut dispatch =
            ConsumerConfig::new(&format!("{}-dispatch", config.consumer_prefix), &config.service.stream_name);
        dispatch.filter_subjects = vec![format!("{}.*.message.requested", config.service.subject_prefix)];
        // A provider outage is retried inside one delivery, which keeps telling JetStream it is in
        // hand (in-progress acks every ack_wait / 3); a dispatcher that died is redelivered after
        // 15 s.
        dispatch.ack_wait = std::time::Duration::from_secs(15);
        // Messages are independent: hand several over at once. Each hand-over holds two
        // connections (the consumer's transaction and the claim), so at most half the pool, less
        // what RPCs, the relay and the other consumers need: 6 with the default pool of 16.
        let pool_size = usize::try_from(config.service.db_max_connections).unwrap_or(16);
        dispatch.concurrency = (pool_size / 2).saturating_sub(2).clamp(1, 16);
        let dispatcher = Dispatcher { pool: boot.pool.clone(), providers };
        let dispatch =
            ProjectionConsumer::new(boot.pool.clone(), boot.jetstream.clone(), dispatch, dispatcher, metrics);
        boot.tasks.spawn(dispatch.run(boot.background.clone()));
    }
    let (webhook_addr, webhooks) = crate::webhooks::serve(
        config.webhook_addr,
        boot.pool.clone(),
        config.webhooks.clone(),
        boot.background.clone(),
    )
    .await
    .map_err(|e| ServeError::Bind(config.webhook_addr.to_string(), e))?;
    tracing::info!(webhooks = %webhook_addr, "provider webhooks listening");
    boot.tasks.spawn(webhooks);
    let app = Arc::new(App::new(boot.pool.clone()));
    let auth = AuthInterceptor::new(boot.verifier.clone());
    let routes = tonic::service::Routes::new(TemplateServiceServer::with_interceptor(
        TemplateGrpc::new(app.clone()),
        auth.clone(),
    ))
    .add_service(ContactServiceServer::with_interceptor(ContactGrpc::new(app), auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
