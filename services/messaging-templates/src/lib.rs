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
pub mod providers;
pub mod server;
pub mod webhooks;

/// The embedded migrations of this service's database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/messaging");
