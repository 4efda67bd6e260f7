//! The read side's input: durable JetStream pull consumers that feed Postgres projections
//! effectively once.
//!
//! For each message the consumer opens a transaction, records the event id for this consumer
//! (a duplicate delivery finds it there and is only acknowledged), applies the projection and
//! commits, and acknowledges only after the commit. A transient failure is `Nak`ed with backoff;
//! an event that still fails after `max_deliver` deliveries, or that can never succeed (it does
//! not decode), is stored in `dead_letters` and terminated, and the consumer goes on.

pub mod consumer;
pub mod dead_letters;
pub mod declared;
pub mod inbound;
pub mod permissions;

pub use consumer::{ConsumerConfig, ConsumerMetrics, ProjectionConsumer};
pub use inbound::{EnvelopeError, InboundEvent};

use std::future::Future;

use sqlx::PgConnection;

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Worth retrying (the database was unavailable, a lock timed out, ...).
    #[error("transient: {0}")]
    Transient(String),
    /// Will fail the same way every time (undecodable payload, broken invariant).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(error.to_string())
    }
}

/// A read model fed by events: `apply` runs inside the consumer's transaction.
pub trait Projection: Send + Sync + 'static {
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a InboundEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a;
}
