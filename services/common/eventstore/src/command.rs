//! Running a command against the event store: inside one transaction, answer a retried
//! `request_id` with its stored response, otherwise attempt the command (load, decide, append)
//! and store its response with it; when another writer got there first, retry a bounded number
//! of times.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use prost::Message;
use sqlx::{PgConnection, PgPool};

use crate::StoreError;
use crate::idempotency::{self, RequestKey};

/// What a service's command error must express for [`execute`].
pub trait CommandError: From<StoreError> + From<sqlx::Error> + Send {
    /// Another writer got there first: worth another attempt.
    fn is_conflict(&self) -> bool;
    /// Still conflicting after `attempts`.
    fn aborted(attempts: u32) -> Self;
    /// A stored response did not decode.
    fn stored_response(error: prost::DecodeError) -> Self;
}

/// One attempt at a command inside the given transaction, deciding at `now`.
pub trait Attempt<E>: Sync {
    type Response: Message + Default;

    fn attempt<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Self::Response, E>> + Send + 'a;
}

/// Runs `command` idempotently under `key`, retrying conflicts up to `max_attempts` times.
pub async fn execute<E, A>(pool: &PgPool, key: RequestKey<'_>, max_attempts: u32, command: &A) -> Result<A::Response, E>
where
    E: CommandError,
    A: Attempt<E>,
{
    for attempt in 1..=max_attempts {
        let mut tx = pool.begin().await?;
        if let Some(stored) = idempotency::find_response(&mut tx, key).await? {
            return A::Response::decode(stored.as_slice()).map_err(E::stored_response);
        }
        // Postgres keeps microseconds: decide with the time as it will be stored.
        let now = Utc::now().trunc_subsecs(6);
        let outcome = match command.attempt(&mut tx, now).await {
            Ok(response) => match idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await {
                Ok(()) => Ok(response),
                Err(error) => Err(E::from(error)),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(response) => {
                tx.commit().await?;
                return Ok(response);
            }
            Err(error) if error.is_conflict() => {
                drop(tx);
                tracing::debug!(attempt, "concurrent modification, retrying");
                tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
            }
            Err(error) => return Err(error),
        }
    }
    Err(E::aborted(max_attempts))
}

/// Implements [`CommandError`] and `From<StoreError>` for a service's error enum that has the
/// variants `Conflict`, `Aborted(u32)`, `RequestIdReused(String)`,
/// `StoredResponse(prost::DecodeError)` and `Database(sqlx::Error)`.
#[macro_export]
macro_rules! impl_command_error {
    ($error:ty) => {
        impl $crate::command::CommandError for $error {
            fn is_conflict(&self) -> bool {
                matches!(self, Self::Conflict)
            }

            fn aborted(attempts: u32) -> Self {
                Self::Aborted(attempts)
            }

            fn stored_response(error: prost::DecodeError) -> Self {
                Self::StoredResponse(error)
            }
        }

        impl From<$crate::StoreError> for $error {
            fn from(error: $crate::StoreError) -> Self {
                match error {
                    $crate::StoreError::Conflict { .. } => Self::Conflict,
                    $crate::StoreError::RequestIdReused(operation) => Self::RequestIdReused(operation),
                    $crate::StoreError::EmptyAppend(stream) => {
                        Self::Database(sqlx::Error::Protocol(format!("empty append to {stream}")))
                    }
                    $crate::StoreError::Database(error) => Self::Database(error),
                }
            }
        }
    };
}
