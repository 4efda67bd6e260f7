//! Erasing a client's personal data on request (`EraseClientData`, LGPD/GDPR), by
//! crypto-shredding: the client's key is deleted, so every stored event sealed with it reads as
//! erased from then on; what this service keeps in the clear besides is scrubbed in the same
//! transaction:
//!
//! - the `tasks` rows (name, phone, subject): searches by them find nothing;
//! - the snapshots of the client's task streams (written before snapshots left personal data
//!   out);
//! - events stored before their personal fields were sealed (blanked in place: the one write to a
//!   stored event, which the law requires);
//! - the stored responses of task RPCs (an idempotent retry answers without the client).
//!
//! The erasure is itself an event (`ClientDataErased`, naming the tasks, never the client), on
//! which other services scrub their copies. Everything else of the tasks (protocols, statuses,
//! timings, message counts) stays.

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::idempotency;
use dw_eventstore::personal;
use dw_eventstore::{NewEvent, store};
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;
use prost::{Message, Name};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::tasks::App;
use super::{AppError, CommandContext, lock_tenant};
use crate::codec::{self, ClientFields};
use crate::domain::{DomainError, PhoneNumber};
use crate::projections;

/// The RPCs whose stored responses are a `Task` (their idempotent retries replay it).
const TASK_RESPONSES: &[&str] = &[
    "dw.distribution.v1.DistributionService/CreateTask",
    "dw.distribution.v1.DistributionService/ClaimTask",
    "dw.distribution.v1.DistributionService/CompleteTask",
    "dw.distribution.v1.DistributionService/TransferTask",
    "dw.distribution.v1.DistributionService/CancelTask",
];

/// An erasure request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct EraseClient {
    pub phone: PhoneNumber,
    pub reason: String,
}

impl App {
    pub async fn erase_client(
        &self,
        ctx: &CommandContext,
        input: EraseClient,
    ) -> Result<pb::EraseClientDataResponse, AppError> {
        command::execute(&self.pool, ctx, &EraseCommand { ctx, input }).await
    }
}

struct EraseCommand<'c> {
    ctx: &'c CommandContext,
    input: EraseClient,
}

impl Attempt<DomainError> for EraseCommand<'_> {
    type Response = pb::EraseClientDataResponse;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let tenant = &self.ctx.tenant;
        let phone = &self.input.phone;
        // Task commands and inbound messages of the tenant wait: none writes a snapshot or a
        // message of this client while it is erased.
        lock_tenant(conn, tenant).await?;
        let key_id = personal::erase_subject(conn, tenant, &codec::client_subject(phone)).await?;
        let task_ids = projections::tasks::erase_client(conn, tenant, phone).await?;
        let streams: Vec<String> =
            task_ids.iter().map(|id| codec::task_stream(tenant, crate::domain::TaskId(*id))).collect();
        sqlx::query("UPDATE streams SET snapshot = NULL WHERE stream_id = ANY($1)")
            .bind(&streams)
            .execute(&mut *conn)
            .await?;
        blank_clear_events(conn, &streams).await?;
        scrub_task_responses(conn, tenant, phone).await?;

        let erasure_id = Uuid::now_v7();
        let event = pb::ClientDataErased {
            erasure_id: erasure_id.to_string(),
            task_ids: task_ids.iter().map(Uuid::to_string).collect(),
            reason: self.input.reason.clone(),
            erased_by: self.ctx.actor.clone(),
            erased_at: Some(codec::timestamp(now)),
            key_id: key_id.map(|id| id.to_string()).unwrap_or_default(),
        };
        let stream = codec::erasure_stream(tenant, erasure_id);
        let new = NewEvent::of("task.client_data_erased", &event);
        store::append(conn, tenant, &stream, 0, vec![new], None, &self.ctx.metadata).await?;
        tracing::info!(%tenant, %erasure_id, tasks = task_ids.len(), key_erased = key_id.is_some(), "client data erased");
        Ok(pb::EraseClientDataResponse {
            erasure_id: erasure_id.to_string(),
            tasks_erased: i32::try_from(task_ids.len()).unwrap_or(i32::MAX),
            erased_at: Some(codec::timestamp(now)),
        })
    }
}

/// Blanks the personal fields still in the clear in the events of `streams` (stored before the
/// fields were sealed).
async fn blank_clear_events(conn: &mut PgConnection, streams: &[String]) -> Result<(), AppError> {
    let types = [pb::TaskCreated::full_name(), pb::TaskMessageRecorded::full_name()];
    let rows = sqlx::query(
        "SELECT global_position, event_type, payload FROM events WHERE stream_id = ANY($1) AND event_type = ANY($2)",
    )
    .bind(streams)
    .bind(&types[..])
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let (position, event_type, payload): (i64, String, Vec<u8>) =
            (row.try_get("global_position")?, row.try_get("event_type")?, row.try_get("payload")?);
        personal::blank_clear_fields(conn, &ClientFields, position, &event_type, &payload).await?;
    }
    Ok(())
}

/// Empties the client in the stored `Task` responses that show them (found by the phone's bytes,
/// which a response holding the client carries as they are).
async fn scrub_task_responses(conn: &mut PgConnection, tenant: &TenantId, phone: &PhoneNumber) -> Result<(), AppError> {
    idempotency::scrub_responses(conn, tenant, TASK_RESPONSES, phone.as_str().as_bytes(), |_, response| {
        let mut task = pb::Task::decode(response).ok()?;
        let contact = task.contact.as_mut().filter(|contact| contact.phone == phone.as_str())?;
        contact.name.clear();
        contact.phone.clear();
        task.subject.clear();
        Some(task.encode_to_vec())
    })
    .await?;
    Ok(())
}
