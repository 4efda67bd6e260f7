//! The read side's input: durable JetStream pull consumers that feed Postgres projections
//! effectively once.
//!
//! For each message the consumer opens a transaction, records the event id for this consumer
//! (a duplicate delivery finds it there and is only acknowledged), applies the projection and
//! commits, and acknowledges only after the commit. A transient failure is `Nak`ed with backoff;
//! an event that still fails after `max_deliver` deliveries, or that can never succeed (it does
//! not decode), is stored in `dead_letters` and terminated, and the consumer goes on.

pub mod backfill;
pub mod consumer;
pub mod dead_letters;
pub mod declared;
pub mod inbound;
pub mod permissions;

pub use consumer::{ConsumerConfig, ConsumerMetrics, LaneKey, ProjectionConsumer};
pub use inbound::{EnvelopeError, InboundEvent};

use std::future::Future;

use dw_proto::Contract;
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
    /// The database could not be reached (a connection lost, Postgres restarting, the pool out
    /// of connections): not the event's fault. Retried until it answers and never
    /// dead-lettered, so an outage leaves no hole in a projection.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        if database_unreachable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Transient(error.to_string())
        }
    }
}

/// Whether `error` says Postgres could not be reached or dropped the connection, rather than
/// refusing the statement: I/O and pool failures, and the SQLSTATEs of a connection lost or a
/// server shutting down or starting (class 08, 57P01–57P03, 53300 too many connections).
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")),
        _ => false,
    }
}

/// A read model fed by one context's events: `apply` runs inside the consumer's transaction
/// with the event decoded by that context's contract (`<context>::v1::Event`), which the
/// projection matches exhaustively. An event type the contract does not know never reaches it:
/// the consumer counts it (`dw_consumer_unknown_events_total`), logs it and moves on.
pub trait Projection: Send + Sync + 'static {
    /// The upstream contract, e.g. `dw_proto::agentsessions::v1::Event`.
    type Contract: Contract;

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a InboundEvent,
        decoded: Self::Contract,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a;
}

/// What came of handing an event to a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    Applied,
    /// Not an event of the projection's contract (a newer producer, or a subject filter that
    /// lets more through than the contract has).
    UnknownType,
}

/// Decodes `event` with the projection's contract and applies it. An undecodable payload is
/// permanent (it will fail the same way every time).
pub(crate) async fn hand_over<P: Projection>(
    projection: &P,
    conn: &mut PgConnection,
    event: &InboundEvent,
) -> Result<Handed, ProjectionError> {
    let decoded = dw_proto::decode_current::<P::Contract>(&event.event_type, &event.payload)
        .map_err(|e| ProjectionError::Permanent(format!("undecodable {}: {e}", event.event_type)))?;
    let Some(decoded) = decoded else {
        tracing::warn!(event_type = %event.event_type, contract = P::Contract::PACKAGE, "event type not in the contract, skipped");
        return Ok(Handed::UnknownType);
    };
    projection.apply(conn, event, decoded).await?;
    Ok(Handed::Applied)
}
