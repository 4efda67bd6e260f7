//! notifications: the single-notifications log (every template sent, from messaging's events)
//! and agents' live notifications (client messages on their tasks, assignments, failed sends).
//! Web Push and outbound webhooks come next.

pub mod app;
pub mod config;
pub mod grpc;
pub mod projections;
pub mod push;
pub mod server;
pub mod webhooks;

/// The embedded migrations of this service's database: the kernel's event store, then its own.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../migrations/notifications")));
