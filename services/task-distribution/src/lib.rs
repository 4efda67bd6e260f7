//! task-distribution: service tasks, protocols, queues and automatic assignment.
//!
//! Layers: [`domain`] (pure rules) · [`app`] (commands, dispatcher, reactions to other
//! contexts' events) · [`grpc`] (transport) · [`projections`] (read models) · [`metrics`] (assignment
//! latency and queue gauges) · [`server`] (wiring).

pub mod app;
pub mod codec;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod projections;
pub mod server;

/// The embedded migrations of this service's database: the kernel's event store, then its own.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../migrations/task_distribution")));
