//! The pure rules of notifications: which destinations outbound HTTP may reach, the webhook
//! catalog, signature and retry schedule, Web Push keys and retries, the log's vocabulary and
//! paging. No I/O: time, randomness and resolved addresses come in as arguments.

pub mod destination;
pub mod notification;
pub mod paging;
pub mod push;
pub mod webhook;

use dw_eventstore::{DomainRule, Resource, RuleKind};
use dw_ids::WebhookId;

/// A broken rule of notifications.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("webhook {0} not found")]
    WebhookNotFound(WebhookId),
    #[error("delivery {0} not found")]
    DeliveryNotFound(String),
    /// One sends endpoint per tenant: its secret is rotated, not made again.
    #[error("the tenant's sends endpoint exists (webhook {0}): rotate its secret")]
    SendsEndpointExists(WebhookId),
}

impl DomainRule for DomainError {
    fn reason(&self) -> &'static str {
        match self {
            Self::WebhookNotFound(_) => "WEBHOOK_NOT_FOUND",
            Self::DeliveryNotFound(_) => "DELIVERY_NOT_FOUND",
            Self::SendsEndpointExists(_) => "SENDS_ENDPOINT_EXISTS",
        }
    }

    fn kind(&self) -> RuleKind {
        match self {
            Self::WebhookNotFound(id) => {
                RuleKind::NotFound(Resource::of::<dw_proto::notifications::v1::Webhook>(id.to_string()))
            }
            Self::DeliveryNotFound(id) => RuleKind::NotFound(Resource::of::<dw_proto::notifications::v1::Delivery>(id)),
            Self::SendsEndpointExists(_) => RuleKind::FailedPrecondition,
        }
    }
}
