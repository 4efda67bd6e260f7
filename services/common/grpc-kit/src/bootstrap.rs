//! The start-up and shutdown every service shares: fetch the identity provider's JWKS, connect to
//! Postgres (migrating) and NATS, each with backoff, start the outbox relay, then serve gRPC (with auth-independent health and reflection,
//! RPC spans and metrics) and the metrics endpoint until cancelled, and drain everything owned.

use std::sync::Arc;
use std::time::Duration;

use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayError, RelayMetrics};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tracing::info;

use crate::access::AccessPolicy;
use crate::auth::AuthInterceptor;
use crate::config::ServiceConfig;
use crate::fair_share::FairShare;
use crate::grpc_tls::{self, ServerTls};
use crate::identity::{KeyRefreshLayer, TokenVerifier};
use crate::metrics_http::{self, Readiness};
use crate::{RpcLayer, RpcMetrics, connection_age, health, startup};

/// The longest a call may take to answer (`Server::timeout`): it bounds the drain at SIGTERM and
/// the shortest connection-age grace (deploy/README.md, Probes, shutdown).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Startup(#[from] startup::StartupError),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("jwt: {0}")]
    Auth(#[from] dw_auth::AuthError),
    #[error("event stream: {0}")]
    Relay(#[from] RelayError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("binding {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    GrpcTls(#[from] crate::grpc_tls::GrpcTlsError),
    #[error("{0}")]
    Setup(String),
}

/// A service's connected dependencies and the tasks it owns.
pub struct Bootstrap {
    pub name: &'static str,
    pub config: ServiceConfig,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    /// Verifies the bearer tokens (the identity provider's keys, or the development secret).
    pub verifier: Arc<TokenVerifier>,
    /// Register the service's own metrics here before [`serve`](Self::serve).
    pub registry: Registry,
    /// Owned background work (relay, consumers, feeds): stopped after the gRPC server drained.
    pub tasks: TaskTracker,
    pub background: CancellationToken,
    /// The tenants' budgets and the replica's load, checked by [`auth`](Self::auth)'s interceptor.
    pub fair_share: Arc<FairShare>,
    /// TLS on the gRPC port, when configured (loaded at start, reloaded when its files change).
    grpc_tls: Option<Arc<ServerTls>>,
    cancel: CancellationToken,
}

/// Runs the service's migrations alone (`<service> migrate`).
pub async fn migrate(
    config: &ServiceConfig,
    migrator: &Migrator,
    cancel: &CancellationToken,
) -> Result<(), BootstrapError> {
    let pool = startup::connect_postgres(&config.database_url, 2, cancel).await?;
    dw_eventstore::migrate::run(&pool, migrator).await?;
    info!("migrations applied");
    pool.close().await;
    Ok(())
}

impl Bootstrap {
    pub async fn connect(
        name: &'static str,
        config: ServiceConfig,
        migrator: &Migrator,
        cancel: CancellationToken,
    ) -> Result<Self, BootstrapError> {
        dw_eventstore::store::set_max_event_bytes(config.event_max_bytes);
        // A broken certificate stops the start before anything waits on Postgres or NATS.
        let grpc_tls = config.grpc_tls.clone().map(ServerTls::load).transpose()?.map(Arc::new);
        let verifier = Arc::new(TokenVerifier::connect(&config.identity, &cancel).await?);
        let pool = startup::connect_postgres(&config.database_url, config.db_max_connections, &cancel).await?;
        if config.run_migrations {
            dw_eventstore::migrate::run(&pool, migrator).await?;
        }
        let nats =
            startup::connect_nats(&config.nats_url, &config.nats_security, name, config.nats_request_timeout, &cancel)
                .await?;
        let jetstream = async_nats::jetstream::new(nats.clone());
        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        if let (Some(cache), crate::identity::IdentityConfig::Oidc(oidc)) = (verifier.jwks(), &config.identity) {
            tasks.spawn(crate::identity::keep_keys_fresh(cache.clone(), oidc.refresh_interval, background.clone()));
        }
        tasks.spawn(dw_eventstore::maintenance::run(
            pool.clone(),
            dw_eventstore::maintenance::Retention::default(),
            Duration::from_secs(3600),
            background.clone(),
        ));
        let mut registry = Registry::default();
        crate::observability::register_build_info(&mut registry, name);
        crate::process_metrics::register(&mut registry);
        tasks.spawn(crate::observability::watch_pool(pool.clone(), &mut registry, background.clone()));
        tasks.spawn(crate::observability::watch_rebuilds(pool.clone(), &mut registry, background.clone()));
        let fair_share = Arc::new(FairShare::new(config.fair_share.clone(), &mut registry));
        if let Some(tls) = &grpc_tls {
            tls.register_metrics(&mut registry);
            tasks.spawn(tls.clone().keep_fresh(grpc_tls::RELOAD_INTERVAL, background.clone()));
        }
        Ok(Self {
            name,
            config,
            pool,
            nats,
            jetstream,
            verifier,
            registry,
            fair_share,
            grpc_tls,
            tasks,
            background,
            cancel,
        })
    }

    /// The interceptor of the service's ports: authenticates the caller, admits it by `policy`
    /// (the roles each RPC names) and by its tenant's budgets and the replica's load.
    pub fn auth(&self, policy: AccessPolicy) -> AuthInterceptor {
        AuthInterceptor::new(self.verifier.clone(), policy).with_fair_share(self.fair_share.clone())
    }

    /// [`auth`](Self::auth) with the service's access table, checked against what it serves:
    /// a method without exactly one rule is a start-up error.
    pub fn auth_by(&self, table: &[crate::access::Rule], services: &[&str]) -> Result<AuthInterceptor, BootstrapError> {
        let policy = AccessPolicy::new(table, services).map_err(BootstrapError::Setup)?;
        Ok(self.auth(policy))
    }

    /// The event log of this service's own store (`dw.eventlog.v1.EventLogService/ReadEvents`,
    /// [`crate::event_log`]) behind `auth`: every service registers it.
    pub fn event_log(&self, auth: AuthInterceptor) -> crate::event_log::EventLogServer {
        crate::event_log::EventLogGrpc::server(self.pool.clone(), None, auth)
    }

    /// [`Self::event_log`] of a store whose events have personal fields: answered opened (or
    /// empty where erased), never sealed.
    pub fn event_log_with_personal_fields(
        &self,
        fields: std::sync::Arc<dyn dw_eventstore::personal::PersonalFields>,
        auth: AuthInterceptor,
    ) -> crate::event_log::EventLogServer {
        crate::event_log::EventLogGrpc::server(self.pool.clone(), Some(fields), auth)
    }

    /// A live feed ([`crate::live`]) whose streams end when the service drains, holding at most
    /// `DW_TENANT_MAX_STREAMS` of a tenant's streams.
    pub fn live_feed<K, T>(&self, buffer: usize, overflow: crate::live::Overflow) -> crate::live::Feed<K, T>
    where
        K: Eq + std::hash::Hash + Clone + Send + 'static,
        T: Clone + Send + 'static,
    {
        let limits = crate::live::FeedLimits {
            streams_per_tenant: self.config.fair_share.max_streams_per_tenant,
            buffer,
            overflow,
            heartbeat: self.config.stream_heartbeat,
        };
        crate::live::Feed::new(limits, self.background.clone())
    }

    /// Follows the service's own stream from now on, `filter`ed (a subject with wildcards), one
    /// ordered consumer for the replica, calling `each` per message until the service drains
    /// (what a live feed reads: [`crate::live`]).
    pub fn follow_own_stream<F, Fut>(&self, filter: String, each: F)
    where
        F: Fn(async_nats::jetstream::Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (jetstream, stream) = (self.jetstream.clone(), self.config.stream_name.clone());
        crate::live::follow_stream(jetstream, stream, filter, &self.tasks, self.background.clone(), each);
    }

    /// [`Self::follow_own_stream`] by batches of up to `max_batch` messages already received
    /// ([`crate::live::follow_stream_batches`]).
    pub fn follow_own_stream_batches<F, Fut>(&self, filter: String, max_batch: usize, each_batch: F)
    where
        F: Fn(Vec<async_nats::jetstream::Message>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (jetstream, stream) = (self.jetstream.clone(), self.config.stream_name.clone());
        crate::live::follow_stream_batches(
            jetstream,
            stream,
            filter,
            &self.tasks,
            self.background.clone(),
            max_batch,
            each_batch,
        );
    }

    /// Creates the service's stream when missing (or reports how an existing one differs from the
    /// configuration, see [`OutboxRelay::ensure_stream`]) and starts its outbox relay.
    pub async fn start_relay(&mut self) -> Result<(), BootstrapError> {
        let metrics = RelayMetrics::register(&mut self.registry);
        let mut relay_config = RelayConfig::new(self.name, &self.config.stream_name, &self.config.subject_prefix);
        relay_config.replicas = self.config.stream_replicas;
        relay_config.duplicate_window = self.config.duplicate_window;
        relay_config.max_age = self.config.stream_max_age;
        relay_config.max_bytes = self.config.stream_max_bytes;
        relay_config.apply_config = self.config.stream_apply_config;
        relay_config.peer_wake = self.config.relay_peer_wake;
        let relay = OutboxRelay::new(self.pool.clone(), self.jetstream.clone(), relay_config, metrics);
        relay.ensure_stream().await?;
        self.tasks.spawn(relay.run(self.background.clone()));
        Ok(())
    }

    /// Starts the declared consumers, owned by this service's tasks.
    pub fn start_consumers(&mut self, consumers: &[Box<dyn dw_bus::declared::DeclaredConsumer>]) {
        let metrics = dw_bus::ConsumerMetrics::register(&mut self.registry);
        dw_bus::declared::start_all(consumers, &self.pool, &self.jetstream, &metrics, &self.tasks, &self.background);
    }

    /// Serves `routes` (plus health and reflection) on `listener` until cancelled, then drains
    /// in-flight RPCs, stops the background tasks and closes the connections. `service_names`
    /// must include the event log ([`crate::event_log::check_served`]).
    pub async fn serve(
        mut self,
        listener: TcpListener,
        routes: Routes,
        service_names: &[&str],
        descriptor_sets: &[&'static [u8]],
    ) -> Result<(), BootstrapError> {
        crate::event_log::check_served(service_names).map_err(BootstrapError::Setup)?;
        let rpc_metrics = RpcMetrics::register(&mut self.registry);
        let readiness = Readiness::default();
        let metrics_server = metrics_http::serve(
            self.config.metrics_addr,
            Arc::new(std::mem::take(&mut self.registry)),
            readiness.clone(),
            self.cancel.clone(),
        )
        .await
        .map_err(|e| BootstrapError::Bind(self.config.metrics_addr.to_string(), e))?;

        let (health_reporter, health_service) = health::health_reporter();
        self.tasks.spawn(health::watch_dependencies(
            health_reporter,
            service_names.iter().map(|s| (*s).to_owned()).collect(),
            self.pool.clone(),
            self.nats.clone(),
            readiness,
            self.background.clone(),
        ));
        let (reflection_v1, reflection_v1alpha) = health::reflection_services(descriptor_sets, service_names)?;
        let routes = routes.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);

        let local_addr = listener.local_addr().map_err(|e| BootstrapError::Bind("grpc listener".into(), e))?;
        let tls = match &self.grpc_tls {
            Some(tls) if tls.verifies_clients() => "mtls",
            Some(_) => "tls",
            None => "plaintext",
        };
        let web_origins = self.config.grpc_web.allowed_origins.join(",");
        info!(service = self.name, grpc = %local_addr, grpc_tls = tls, grpc_web_origins = %web_origins, metrics = %self.config.metrics_addr, "serving");
        let shutdown = {
            let cancel = self.cancel.clone();
            let background = self.background.clone();
            async move {
                cancel.cancelled().await;
                // Streams and background work end first so the server can drain.
                background.cancel();
            }
        };
        // Replies must not wait for the client's delayed ACK (Nagle): ~40 ms per reply otherwise.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // Long-lived clients move to a new connection every max age, so added replicas get traffic.
        // Their streams end with UNAVAILABLE at max age + grace and are resumed by the clients.
        let age = self.config.grpc_connection_age;
        let connections = connection_age::Connections::default();
        // gRPC-Web (browsers, over HTTP/1.1 too) outermost: the layers inside see plain gRPC,
        // and CORS answers preflights before anything else.
        let router = connection_age::apply(tonic::transport::Server::builder(), age)
            .accept_http1(true)
            .layer(self.config.grpc_web.cors_layer())
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(connection_age::StreamDeadlineLayer::new(connections.clone()))
            .layer(RpcLayer::new(rpc_metrics).counting_in(self.fair_share.in_flight()))
            .layer(KeyRefreshLayer::new(self.verifier.clone()))
            .timeout(RPC_TIMEOUT)
            .add_routes(routes);
        let incoming = connection_age::limit_incoming(incoming, age, connections);
        // TLS over the age-limited connection: the age limit closes the socket under it.
        let served = match self.grpc_tls.clone() {
            Some(tls) => router.serve_with_incoming_shutdown(grpc_tls::accept(incoming, tls), shutdown).await,
            None => router.serve_with_incoming_shutdown(incoming, shutdown).await,
        };

        info!("grpc server drained, stopping background tasks");
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let _ = metrics_server.await;
        self.nats.flush().await.ok();
        self.pool.close().await;
        info!(service = self.name, "stopped");
        served.map_err(BootstrapError::from)
    }
}
