//! A consumer as a service declares it, once: its JetStream configuration and the projection
//! it feeds. The same declaration starts it when the service serves and replays its dead
//! letters from the command line (`<service> dead-letters replay`), so the two cannot drift.

use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dead_letters::{self, ReplayError};
use crate::{ConsumerConfig, ConsumerMetrics, Projection, ProjectionConsumer};

/// What serving and dead-letter replay need of one declared consumer.
pub trait DeclaredConsumer: Send + Sync {
    /// The durable consumer's name (also the key of its dead letters).
    fn name(&self) -> &str;

    /// Starts consuming, owned by `tasks`, until `cancel`.
    fn start(
        &self,
        pool: PgPool,
        jetstream: jetstream::Context,
        metrics: ConsumerMetrics,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    );

    /// Replays one dead letter of this consumer through its projection.
    fn replay<'a>(
        &'a self,
        pool: &'a PgPool,
        id: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>>;
}

/// A consumer configuration and the projection it feeds.
pub struct Consumer<P> {
    pub config: ConsumerConfig,
    pub projection: P,
    /// Connections of its own, when the service's pool is not to be shared with it.
    pub pool: Option<PgPool>,
}

impl<P: Projection + Clone> Consumer<P> {
    /// A boxed declaration, for a service's list of consumers.
    pub fn declare(config: ConsumerConfig, projection: P) -> Box<dyn DeclaredConsumer> {
        Box::new(Self { config, projection, pool: None })
    }

    /// [`declare`](Self::declare), applying on `pool` rather than the service's: a consumer that
    /// must keep pace with the RPCs (messaging's dispatcher) then never waits behind them for a
    /// connection.
    pub fn declare_with_pool(config: ConsumerConfig, projection: P, pool: PgPool) -> Box<dyn DeclaredConsumer> {
        Box::new(Self { config, projection, pool: Some(pool) })
    }
}

impl<P: Projection + Clone> DeclaredConsumer for Consumer<P> {
    fn name(&self) -> &str {
        &self.config.durable_name
    }

    fn start(
        &self,
        pool: PgPool,
        jetstream: jetstream::Context,
        metrics: ConsumerMetrics,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let pool = self.pool.clone().unwrap_or(pool);
        let consumer = ProjectionConsumer::new(pool, jetstream, self.config.clone(), self.projection.clone(), metrics);
        tasks.spawn(consumer.run(cancel));
    }

    fn replay<'a>(
        &'a self,
        pool: &'a PgPool,
        id: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>> {
        Box::pin(dead_letters::replay(pool, &self.projection, id))
    }
}

/// Starts every declared consumer.
pub fn start_all(
    consumers: &[Box<dyn DeclaredConsumer>],
    pool: &PgPool,
    jetstream: &jetstream::Context,
    metrics: &ConsumerMetrics,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    for consumer in consumers {
        consumer.start(pool.clone(), jetstream.clone(), metrics.clone(), tasks, cancel.clone());
    }
}
