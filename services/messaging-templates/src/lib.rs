//! messaging-templates: WhatsApp and SMS templates, CRM contacts (outbound messages, provider
//! webhooks and inbound messages come next).
//!
//! Layers: [`domain`] (pure rules) · [`app`] (commands) · [`grpc`] (transport) ·
//! [`projections`] (read models) · [`server`] (wiring).

pub mod app;
pub mod codec;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod projections;
pub mod provider_secrets;
pub mod providers;
pub mod server;
pub mod webhooks;

/// The embedded migrations of this service's database: the kernel's event store, then its own.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../migrations/messaging")));
