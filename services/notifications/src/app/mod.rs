//! Everything of notifications that does I/O outside a consumer: the mutations (webhook endpoints,
//! redeliveries, browser subscriptions), each an attempt run by the kernel's command path
//! (idempotent by `request_id`, in one transaction); the webhook and Web Push delivery workers;
//! the notifier that wakes agents' streams; the resolution of outbound destinations.

pub mod browser_subscriptions;
pub mod destination;
pub mod notifier;
pub mod push_delivery;
pub mod webhook_delivery;
pub mod webhook_endpoints;

use std::time::Duration;

use dw_eventstore::command::{self, Attempt};
use dw_eventstore::{CommandContext, CommandError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::domain::DomainError;
pub use browser_subscriptions::{DisableBrowser, EnableBrowser};
pub use webhook_endpoints::{CreateWebhook, DeleteWebhook, Redeliver, RotateSecret};

pub type AppError = CommandError<DomainError>;

/// Runs a mutation idempotently under the request's key.
pub async fn execute<A: Attempt<DomainError>>(
    pool: &PgPool,
    ctx: &CommandContext,
    mutation: &A,
) -> Result<A::Response, AppError> {
    command::execute(pool, ctx, mutation).await
}

/// Runs a worker's `pass` until `cancel`, resting `idle` after a pass that had nothing to do.
async fn poll<F, Pass>(idle: Duration, cancel: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Pass,
    Pass: Future<Output = usize>,
{
    while !cancel.is_cancelled() {
        if pass().await == 0 {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(idle) => {}
            }
        }
    }
}
