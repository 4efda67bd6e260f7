//! agent-sessions: service days, exits, breaks, agents, permissions and tenant settings.
//!
//! Layers: [`domain`] (pure rules) · [`app`] (command handlers over the event store) ·
//! [`grpc`] (transport) · [`projections`] (own read models) · [`server`] (wiring).

pub mod app;
pub mod codec;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod projections;
pub mod server;

/// The embedded migrations of this service's database: the kernel's event store, then its own.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../migrations/agent_sessions")));
