//! notifications: the single-notifications log (every template sent, from messaging's events),
//! agents' live notifications (client messages on their tasks, assignments, failed sends), Web
//! Push to their browsers and outbound webhooks.
//!
//! Layers: [`domain`] (pure rules) · [`app`] (mutations, delivery workers, the notifier) ·
//! [`grpc`] (transport) · [`projections`] (read models fed by consumers, and their queries) ·
//! [`server`] (wiring).

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod projections;
pub mod server;

/// The embedded migrations of this service's database: the kernel's event store, then its own.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../migrations/notifications")));
