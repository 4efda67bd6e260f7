//! The names `config.rs` and `server.rs` wire outbound webhooks with, kept where they were before
//! the layers: the rules live in [`crate::domain::webhook`], the delivery worker in
//! [`crate::app::webhook_delivery`], the gRPC service in [`crate::grpc::webhook_service`].

pub use crate::app::webhook_delivery::{WebhookConfig, WebhookMetrics, run_worker};
pub use crate::domain::webhook::default_schedule;
pub use crate::grpc::WebhookGrpc;
