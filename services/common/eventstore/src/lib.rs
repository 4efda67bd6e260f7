//! The write side of every service: an append-only Postgres event store with optimistic
//! concurrency and snapshots ([`store`]), idempotent request bookkeeping ([`idempotency`]), and
//! the transactional outbox relay that publishes committed events to JetStream in commit order
//! ([`outbox_relay`]). [`envelope`] names the headers every event carries on the bus.

pub mod command;
pub mod envelope;
pub mod idempotency;
pub mod maintenance;
pub mod outbox_relay;
pub mod store;

pub use store::{EventMetadata, NewEvent, RecordedEvent, StoreError, StreamState};

/// The channel the append transaction notifies and the relay listens on.
pub const OUTBOX_CHANNEL: &str = "dw_outbox";

/// Maps a Postgres error to "a concurrent writer got there first" when it is one.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
