//! messaging-templates' read models as rebuildable units (`messaging-templates projections
//! rebuild NAME`): each stored event brings its rows to the state the commands gave them, through
//! the same `save_*` the commands run.
//!
//! - `templates`: the `templates` table, from each template's stream;
//! - `contacts`: the `contacts` and `sms_opt_outs` tables, from contact upserts and SMS consent
//!   (one lane per tenant: an opt-out changes the contact with that phone);
//! - `messages`: the `messages` table (sends and their statuses), from each message's stream.
//!
//! A client erased since (`EraseClientData`) comes back erased: their key is gone, so their
//! contact is not recreated and the messages sent to them come back without them. The
//! dispatcher's own bookkeeping (`message_dispatch`, `parked_statuses`) is not a projection of the
//! events and is not rebuilt.

use dw_eventstore::RecordedEvent;
use dw_eventstore::personal;
use dw_eventstore::rebuild::{ApplyFuture, ReadModel};
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use prost::Message as _;
use sqlx::PgConnection;

use crate::app::inbound::OPT_IN_KEYWORD;
use crate::codec::{self, ClientFields};
use crate::domain::PhoneNumber;
use crate::domain::message::{self, OutboundMessage};
use crate::domain::template::{self, Template};
use crate::projections::{save_consent, save_contact, save_message, save_template};

/// The row's state (the domain's JSON) the previous event of the same lane left.
async fn previous<T: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    sql: &'static str,
    tenant: &TenantId,
    id: uuid::Uuid,
) -> Result<Option<T>, String> {
    let state: Option<serde_json::Value> =
        sqlx::query_scalar(sql).bind(tenant).bind(id).fetch_optional(conn).await.map_err(|e| e.to_string())?;
    state.map(|state| serde_json::from_value(state).map_err(|e| e.to_string())).transpose()
}

/// The id in a stream id `<aggregate>:<tenant>:<id>` of that aggregate, if it is one.
fn stream_uuid(event: &RecordedEvent, aggregate: &str) -> Option<Result<uuid::Uuid, String>> {
    let id = event.stream_id.strip_prefix(&format!("{aggregate}:{}:", event.tenant_id))?;
    Some(uuid::Uuid::parse_str(id).map_err(|e| format!("stream {}: {e}", event.stream_id)))
}

/// `event` with its personal fields opened (empty where the client was erased).
async fn opened(conn: &mut PgConnection, event: &RecordedEvent) -> Result<RecordedEvent, String> {
    let mut events = [event.clone()];
    personal::open_events(conn, &ClientFields, &mut events).await.map_err(|e| e.to_string())?;
    let [opened] = events;
    Ok(opened)
}

/// The `templates` table.
pub struct TemplatesModel;

impl ReadModel for TemplatesModel {
    fn name(&self) -> &'static str {
        "templates"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["templates"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(async move {
            let Some(id) = stream_uuid(event, "template") else {
                return Ok(());
            };
            let id = id?;
            let change = codec::decode_template(event).map_err(|e| format!("event {}: {e}", event.event_id))?;
            let before: Option<Template> = match change {
                template::Event::Created(_) => None,
                _ => {
                    let sql = "SELECT state FROM templates WHERE tenant_id = $1 AND template_id = $2";
                    previous(conn, sql, &event.tenant_id, id).await?
                }
            };
            let Some(after) = template::evolve(before, &change) else {
                return Err(format!("template {id} has no state at version {}", event.version));
            };
            save_template(conn, &event.tenant_id, &after, event.version).await.map_err(|e| e.to_string())
        })
    }

    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.clone())
    }
}

/// The `contacts` and `sms_opt_outs` tables.
pub struct ContactsModel;

impl ReadModel for ContactsModel {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["contacts", "sms_opt_outs"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(async move {
            let tenant = &event.tenant_id;
            let invalid = |e: &dyn std::fmt::Display| format!("event {}: {e}", event.event_id);
            match event.event_type.as_str() {
                t if t == <pb::ContactUpserted as prost::Name>::full_name() => {
                    let opened = opened(conn, event).await?;
                    let upserted = pb::ContactUpserted::decode(opened.payload.as_slice()).map_err(|e| invalid(&e))?;
                    let view = upserted.contact.ok_or_else(|| invalid(&"no contact"))?;
                    // None: the client was erased since.
                    if let Some(contact) = codec::contact_from_pb(view).map_err(|e| invalid(&e))? {
                        save_contact(conn, tenant, &contact, event.version).await.map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
                t if t == <pb::ContactOptedOut as prost::Name>::full_name() => {
                    let out = pb::ContactOptedOut::decode(event.payload.as_slice()).map_err(|e| invalid(&e))?;
                    let phone = PhoneNumber::parse(&out.phone).map_err(|e| invalid(&e))?;
                    let at = consent_time(out.at.as_ref()).ok_or_else(|| invalid(&"no time"))?;
                    save_consent(conn, tenant, &phone, true, &out.keyword, at).await.map_err(|e| e.to_string())
                }
                t if t == <pb::ContactOptedIn as prost::Name>::full_name() => {
                    let back = pb::ContactOptedIn::decode(event.payload.as_slice()).map_err(|e| invalid(&e))?;
                    let phone = PhoneNumber::parse(&back.phone).map_err(|e| invalid(&e))?;
                    let at = consent_time(back.at.as_ref()).ok_or_else(|| invalid(&"no time"))?;
                    save_consent(conn, tenant, &phone, false, OPT_IN_KEYWORD, at).await.map_err(|e| e.to_string())
                }
                _ => Ok(()),
            }
        })
    }

    /// A tenant's contacts and consents in order: an opt-out changes the contact of its phone.
    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.tenant_id.to_string())
    }
}

fn consent_time(at: Option<&prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    dw_proto::time::datetime(at?)
}

/// The `messages` table.
pub struct MessagesModel;

impl ReadModel for MessagesModel {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["messages"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(async move {
            let Some(id) = stream_uuid(event, "message") else {
                return Ok(());
            };
            let id = id?;
            let opened = opened(conn, event).await?;
            let change = codec::decode_message(&opened).map_err(|e| format!("event {}: {e}", event.event_id))?;
            let after = match change {
                message::Event::Requested(message) => *message,
                change => {
                    let sql = "SELECT state FROM messages WHERE tenant_id = $1 AND message_id = $2";
                    let Some(before) = previous::<OutboundMessage>(conn, sql, &event.tenant_id, id).await? else {
                        return Err(format!("message {id} has no state at version {}", event.version));
                    };
                    message::evolve(before, &change)
                }
            };
            save_message(conn, &event.tenant_id, &after, event.version).await.map_err(|e| e.to_string())
        })
    }

    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.clone())
    }
}
