//! Wiring: the shared bootstrap plus the template, contact and provider-account services, and the
//! provider webhooks.

use std::sync::Arc;

use dw_grpc_kit::bootstrap::Bootstrap;
use dw_proto::messaging::v1::contact_service_server::ContactServiceServer;
use dw_proto::messaging::v1::provider_config_service_server::ProviderConfigServiceServer;
use dw_proto::messaging::v1::template_service_server::TemplateServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::app::provider_config::ProviderAccounts;
use crate::app::send::{Dispatcher, PermissionsProjection};
use crate::config::Config;
use crate::grpc::contacts::ContactGrpc;
use crate::grpc::provider_config::ProviderConfigGrpc;
use crate::grpc::templates::TemplateGrpc;
use crate::providers::{ProviderMetrics, Providers};
use dw_bus::ConsumerConfig;
use dw_bus::declared::{Consumer, DeclaredConsumer};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

pub use dw_grpc_kit::bootstrap::BootstrapError as ServeError;

pub const SERVICE_NAMES: [&str; 4] = [
    dw_proto::messaging::v1::template_service_server::SERVICE_NAME,
    dw_proto::messaging::v1::contact_service_server::SERVICE_NAME,
    dw_proto::messaging::v1::provider_config_service_server::SERVICE_NAME,
    dw_grpc_kit::event_log::SERVICE_NAME,
];

/// messaging-templates as the kernel runs it (`dw_grpc_kit::cli::main`).
pub struct MessagingTemplates;

impl dw_grpc_kit::service::Service for MessagingTemplates {
    const NAME: &'static str = "messaging-templates";
    type Config = Config;

    const CONFIG_FROM_ENV: fn() -> Result<Config, dw_grpc_kit::config::ConfigError> = crate::config::from_env;
    const MIGRATOR: &'static std::sync::LazyLock<sqlx::migrate::Migrator> = &crate::MIGRATOR;

    /// `messaging-templates projections rebuild templates|contacts|messages`.
    fn read_models() -> Vec<Box<dyn dw_eventstore::rebuild::ReadModel>> {
        use crate::projections::rebuild::{ContactsModel, MessagesModel, TemplatesModel};
        vec![Box::new(TemplatesModel), Box::new(ContactsModel), Box::new(MessagesModel)]
    }

    /// Send permissions from agent-sessions, and the dispatcher that hands requested messages
    /// to their providers (a replayed request is handed over too).
    fn consumers(
        config: &Config,
        pool: &PgPool,
        registry: &mut Registry,
    ) -> Result<Vec<Box<dyn DeclaredConsumer>>, ServeError> {
        let providers = Providers::new(config.providers.clone(), ProviderMetrics::register(registry))
            .map_err(|e| ServeError::Setup(format!("provider http client: {e}")))?;
        let mut permissions =
            ConsumerConfig::new(&format!("{}-agent-sessions", config.consumer_prefix), &config.agent_sessions_stream);
        permissions.filter_subjects = vec![format!("{}.*.agent.>", config.agent_sessions_subject_prefix)];
        let mut dispatch = ConsumerConfig::new(&dispatch_consumer(config), &config.service.stream_name);
        dispatch.filter_subjects = vec![format!("{}.*.message.requested", config.service.subject_prefix)];
        // A provider outage is retried inside one delivery, which keeps telling JetStream it is in
        // hand (in-progress acks every ack_wait / 3); a dispatcher that died is redelivered after
        // 15 s.
        dispatch.ack_wait = std::time::Duration::from_secs(15);
        // Messages are independent: hand several over at once (`DW_DISPATCH_CONCURRENCY`, 8 by
        // default). Each hand-over holds two connections (the consumer's transaction and the
        // claim), from a pool of the dispatcher's own: sharing the service's, the hand-overs
        // queued behind the SendTemplate calls for connections and fell far behind them (48
        // hand-overs/s while 700 sends/s were accepted, 441/s once the sends stopped).
        dispatch.concurrency = config.dispatch_concurrency.unwrap_or(DEFAULT_DISPATCH_CONCURRENCY);
        let connections = u32::try_from(dispatch.concurrency * 2 + 1).unwrap_or(u32::MAX);
        let dispatch_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with((*pool.connect_options()).clone());
        let dispatcher = Dispatcher { pool: dispatch_pool.clone(), providers };
        Ok(vec![
            Consumer::declare(permissions, PermissionsProjection),
            Consumer::declare_with_pool(dispatch, dispatcher, dispatch_pool),
        ])
    }

    async fn serve(config: Config, listener: TcpListener, cancel: CancellationToken) -> Result<(), ServeError> {
        run_with_listener(config, listener, cancel).await
    }
}

/// Hand-overs at once per replica unless `DW_DISPATCH_CONCURRENCY` says otherwise.
const DEFAULT_DISPATCH_CONCURRENCY: usize = 8;

fn dispatch_consumer(config: &Config) -> String {
    format!("{}-dispatch", config.consumer_prefix)
}

pub async fn run_with_listener(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let mut boot = Bootstrap::connect("messaging-templates", config.service.clone(), &crate::MIGRATOR, cancel).await?;
    boot.start_relay().await?;
    let mut consumers =
        <MessagingTemplates as dw_grpc_kit::service::Service>::consumers(&config, &boot.pool, &mut boot.registry)?;
    if !config.dispatch_enabled {
        // Requested messages wait in the stream until a replica dispatches again.
        consumers.retain(|consumer| consumer.name() != dispatch_consumer(&config));
    }
    boot.start_consumers(&consumers);
    let accounts = ProviderAccounts::new(boot.pool.clone(), config.provider_secrets_key.clone());
    let local_webhook_hosts = config.local_webhook_hosts.clone();
    let public_base = config.webhook_public_url.clone();
    let (webhook_addr, webhooks) = crate::webhooks::serve(
        config.webhook_addr,
        boot.pool.clone(),
        accounts.clone(),
        public_base,
        boot.background.clone(),
    )
    .await
    .map_err(|e| ServeError::Bind(config.webhook_addr.to_string(), e))?;
    tracing::info!(
        webhooks = %webhook_addr,
        public_base = %config.webhook_public_url,
        "provider webhooks listening"
    );
    boot.tasks.spawn(webhooks);
    let app = Arc::new(
        App::new(boot.pool.clone(), config.limits).with_local_webhook_hosts(&local_webhook_hosts).with_send_backlog(
            crate::app::send_backlog::SendBacklog::register(config.send_backlog_limit, &mut boot.registry),
        ),
    );
    let auth = boot.auth_by(crate::grpc::access::ACCESS, &SERVICE_NAMES)?;
    let routes = tonic::service::Routes::new(TemplateServiceServer::with_interceptor(
        TemplateGrpc::new(app.clone()),
        auth.clone(),
    ))
    .add_service(ContactServiceServer::with_interceptor(ContactGrpc::new(app), auth.clone()))
    .add_service(ProviderConfigServiceServer::with_interceptor(
        ProviderConfigGrpc::new(accounts, local_webhook_hosts),
        auth.clone(),
    ))
    .add_service(boot.event_log_with_personal_fields(std::sync::Arc::new(crate::codec::ClientFields), auth));
    boot.serve(listener, routes, &SERVICE_NAMES, &[dw_proto::FILE_DESCRIPTOR_SET]).await
}
