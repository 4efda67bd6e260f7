//! Erasing a client's personal data on request (`EraseClientData`, LGPD/GDPR), by
//! crypto-shredding: the client's key (subject `phone:<E.164>`) is deleted, so every stored event
//! sealed with it (contacts, messages sent to the client, messages the client wrote) reads as
//! erased from then on; what this service keeps in the clear besides is scrubbed in the same
//! transaction:
//!
//! - the contact with that phone (row and snapshot deleted: searches find nothing, a later
//!   upsert of the phone makes a new contact);
//! - the messages sent to the client (recipient, rendered texts, variables and additional
//!   information emptied in the read model and the snapshot; statuses and timings stay);
//! - events stored before their personal fields were sealed (blanked in place);
//! - the stored responses of `UpsertContact` and `SendTemplate` (an idempotent retry answers
//!   without the client).
//!
//! Opt-outs keep the phone: they are the record that the number must not be messaged. The
//! erasure is itself an event (`ClientDataErased`, naming the contact and messages, never the
//! client).

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::{NewEvent, store};
use dw_eventstore::{idempotency, personal};
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use prost::{Message as _, Name as _};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{App, AppError, CommandContext};
use crate::codec::{self, ClientFields};
use crate::domain::{DomainError, PhoneNumber};

const UPSERT_CONTACT: &str = "dw.messaging.v1.ContactService/UpsertContact";
const SEND_TEMPLATE: &str = "dw.messaging.v1.TemplateService/SendTemplate";

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
        // Waits for every transaction sealing with the key (each holds it until it commits):
        // what they wrote is visible to the statements below. One that starts later makes a new
        // key: the client wrote or was written to again after the erasure.
        let key_id = personal::erase_subject(conn, tenant, &codec::client_subject(phone)).await?;

        let contact_id: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM contacts WHERE tenant_id = $1 AND phone = $2 RETURNING contact_id")
                .bind(tenant)
                .bind(phone.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = contact_id {
            sqlx::query("UPDATE streams SET snapshot = NULL WHERE stream_id = $1")
                .bind(codec::contact_stream(tenant, id))
                .execute(&mut *conn)
                .await?;
        }
        let message_ids = erase_messages(conn, tenant, phone).await?;
        let inbound_ids = blank_events(conn, tenant, phone, key_id).await?;
        scrub_responses(conn, tenant, phone).await?;

        let erasure_id = Uuid::now_v7();
        let event = pb::ClientDataErased {
            erasure_id: erasure_id.to_string(),
            contact_id: contact_id.map(|id| id.to_string()).unwrap_or_default(),
            message_ids: message_ids.iter().map(Uuid::to_string).collect(),
            inbound_message_ids: inbound_ids.clone(),
            reason: self.input.reason.clone(),
            erased_by: self.ctx.actor.clone(),
            erased_at: Some(dw_proto::time::timestamp(now)),
            key_id: key_id.map(|id| id.to_string()).unwrap_or_default(),
        };
        let stream = codec::erasure_stream(tenant, erasure_id);
        // Under `message.`: the consumers of sends (notifications) receive it.
        let new = NewEvent::of("message.client_data_erased", &event);
        store::append(conn, tenant, &stream, 0, vec![new], None, &self.ctx.metadata).await?;
        tracing::info!(
            %tenant, %erasure_id, contact = contact_id.is_some(), messages = message_ids.len(),
            inbound = inbound_ids.len(), key_erased = key_id.is_some(), "client data erased"
        );
        Ok(pb::EraseClientDataResponse {
            erasure_id: erasure_id.to_string(),
            contact_erased: contact_id.is_some(),
            messages_erased: i32::try_from(message_ids.len()).unwrap_or(i32::MAX),
            inbound_erased: i32::try_from(inbound_ids.len()).unwrap_or(i32::MAX),
            erased_at: Some(dw_proto::time::timestamp(now)),
        })
    }
}

/// What a message's state (its snapshot and read-model row, both the domain's JSON) keeps of its
/// recipient once erased: nothing (the fields `OutboundMessage::erased` empties).
fn erased_message_fields() -> serde_json::Value {
    serde_json::json!({"phone": "", "header_text": null, "body": "", "variables": [], "additional_information": ""})
}

/// Empties the recipient's data in every message sent to `phone`, in its snapshot and its
/// read-model row (status, timings and history stay); returns their ids. The stream rows are
/// locked first, in the order a status update locks them.
async fn erase_messages(
    conn: &mut PgConnection,
    tenant: &TenantId,
    phone: &PhoneNumber,
) -> Result<Vec<Uuid>, AppError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT message_id FROM messages WHERE tenant_id = $1 AND recipient = $2 ORDER BY message_id",
    )
    .bind(tenant)
    .bind(phone.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    let streams: Vec<String> = ids.iter().map(|id| codec::message_stream(tenant, *id)).collect();
    let blank = erased_message_fields();
    sqlx::query("UPDATE streams SET snapshot = snapshot || $2 WHERE stream_id = ANY($1) AND snapshot IS NOT NULL")
        .bind(&streams)
        .bind(&blank)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE messages SET recipient = '', state = state || $3 WHERE tenant_id = $1 AND message_id = ANY($2)",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&blank)
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// The phone an event of the client holds (as stored: clear or sealed).
fn phone_of(event_type: &str, payload: &[u8]) -> Option<String> {
    if event_type == pb::ContactUpserted::full_name() {
        pb::ContactUpserted::decode(payload).ok()?.contact.map(|c| c.phone)
    } else if event_type == pb::MessageRequested::full_name() {
        pb::MessageRequested::decode(payload).ok()?.message.map(|m| m.recipient_phone)
    } else if event_type == pb::InboundMessageReceived::full_name() {
        pb::InboundMessageReceived::decode(payload).ok().map(|m| m.phone)
    } else {
        None
    }
}

/// Blanks the personal fields still in the clear in the tenant's events that hold `phone` (stored
/// before the fields were sealed), and returns the ids of the client's own messages among the
/// events holding the phone or sealed with the erased key.
async fn blank_events(
    conn: &mut PgConnection,
    tenant: &TenantId,
    phone: &PhoneNumber,
    key_id: Option<Uuid>,
) -> Result<Vec<String>, AppError> {
    let types =
        [pb::ContactUpserted::full_name(), pb::MessageRequested::full_name(), pb::InboundMessageReceived::full_name()];
    // What a sealed field of the key starts with; nothing matches when there was no key.
    let sealed_marker = key_id.map(|id| format!("{}{}:", personal::SEALED_PREFIX, id.simple())).unwrap_or_default();
    let rows = sqlx::query(
        "SELECT global_position, event_type, payload FROM events \
         WHERE tenant_id = $1 AND event_type = ANY($2) \
           AND (position($3::bytea IN payload) > 0 OR ($4 <> '' AND position(convert_to($4, 'UTF8') IN payload) > 0)) \
         ORDER BY global_position",
    )
    .bind(tenant)
    .bind(&types[..])
    .bind(phone.as_str().as_bytes())
    .bind(&sealed_marker)
    .fetch_all(&mut *conn)
    .await?;
    let mut inbound = Vec::new();
    for row in rows {
        let position: i64 = row.try_get("global_position")?;
        let event_type: String = row.try_get("event_type")?;
        let payload: Vec<u8> = row.try_get("payload")?;
        // The bytes matched: the event is the client's if its phone is theirs (not a longer
        // number starting with it) or sealed with their key.
        let Some(held) = phone_of(&event_type, &payload) else {
            continue;
        };
        if held != phone.as_str() && (key_id.is_none() || personal::key_id(&held) != key_id) {
            continue;
        }
        if event_type == pb::InboundMessageReceived::full_name()
            && let Ok(event) = pb::InboundMessageReceived::decode(payload.as_slice())
        {
            inbound.push(event.message_id);
        }
        personal::blank_clear_fields(conn, &ClientFields, position, &event_type, &payload).await?;
    }
    Ok(inbound)
}

/// Empties the client in the stored responses of `UpsertContact` and `SendTemplate` that show
/// them (found by the phone's bytes, which such a response carries as they are).
async fn scrub_responses(conn: &mut PgConnection, tenant: &TenantId, phone: &PhoneNumber) -> Result<(), AppError> {
    let operations = [UPSERT_CONTACT, SEND_TEMPLATE];
    idempotency::scrub_responses(conn, tenant, &operations, phone.as_str().as_bytes(), |operation, response| {
        if operation == UPSERT_CONTACT {
            let mut contact = pb::Contact::decode(response).ok().filter(|c| c.phone == phone.as_str())?;
            contact.name.clear();
            contact.phone.clear();
            contact.external_id.clear();
            Some(contact.encode_to_vec())
        } else {
            let mut message = pb::Message::decode(response).ok().filter(|m| m.recipient_phone == phone.as_str())?;
            message.recipient_phone.clear();
            message.rendered_header.clear();
            message.rendered_body.clear();
            message.variables.clear();
            message.additional_information.clear();
            Some(message.encode_to_vec())
        }
    })
    .await?;
    Ok(())
}
