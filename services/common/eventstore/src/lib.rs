//! The write side of every service: an append-only Postgres event store with optimistic
//! concurrency and snapshots ([`store`]), idempotent request bookkeeping ([`idempotency`]), and
//! the transactional outbox relay that publishes committed events to JetStream in commit order
//! ([`outbox_relay`]), and the paged, filtered read of the whole log ([`log`]). [`envelope`]
//! names the headers every event carries on the bus.

pub mod aggregate;
pub mod codec;
pub mod command;
pub mod envelope;
pub mod error;
mod handoff;
pub mod idempotency;
pub mod log;
pub mod maintenance;
pub mod migrate;
pub mod outbox_relay;
pub mod personal;
pub mod quarantine;
pub mod rebuild;
pub mod store;
pub mod update;
pub mod writes;

pub use aggregate::{Aggregate, Appended, Loaded};
pub use codec::CodecError;
pub use command::{Attempt, CommandContext, Plan};
pub use error::{CommandError, DomainRule, Resource, RuleKind, Violation};
pub use handoff::handing_over;
pub use store::{EventMetadata, NewEvent, RecordedEvent, StoreError, StreamState};
pub use update::{StaleVersion, UpdateMask, check_version};
pub use writes::{Write, Writes};

/// The event-store schema every service carries (events, streams, outbox, idempotency keys,
/// processed events, dead letters) as migration 1, followed by the service's own `migrations`
/// (numbered from 2).
pub fn migrator(service: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    static EVENT_STORE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
    let migrations: Vec<_> = EVENT_STORE.iter().chain(service.iter()).cloned().collect();
    sqlx::migrate::Migrator { migrations: migrations.into(), ..sqlx::migrate::Migrator::DEFAULT }
}

/// Wakes the relay: called after a transaction that appended events commits, so the relay
/// publishes at once instead of at its next poll. (No `NOTIFY` from the append: Postgres
/// serializes the commits of transactions that notify, which halved the commit rate.) This
/// process's relay is woken in process; when it stands by, the relay active in another replica
/// is woken over NATS core (`RelayConfig::peer_wake`), else finds the events at its next poll
/// (`RelayConfig::poll_interval`).
pub fn wake_relay() {
    // Every relay waiting now (tests run several services in one process), and a permit for one
    // busy publishing, so a commit during its round is not left to the next poll.
    RELAY_WAKE.notify_waiters();
    RELAY_WAKE.notify_one();
    // Commits since start: a standby's peer waker sends one wake per change it sees (several
    // commits while it sends make one more wake, not many).
    COMMITS.send_modify(|n| *n = n.wrapping_add(1));
}

/// Commits a transaction that may have appended events and wakes the relay: what every writer
/// of the event store calls instead of `commit` alone.
///
/// Inside [`handing_over`], the transaction's events go to this process's relay instead (the
/// fast lane), and it wakes the relays only when it cannot hand them over.
pub async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    tx.commit().await?;
    if !handoff::note_commit() {
        wake_relay();
    }
    Ok(())
}

pub(crate) static RELAY_WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Counts the commits [`wake_relay`] was told of, for the peer wakers.
pub(crate) static COMMITS: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Maps a Postgres error to "a concurrent writer got there first" when it is one.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
