//! What clients send us through the providers: their messages (which become
//! `InboundMessageReceived` for task-distribution and notifications) and SMS consent
//! (STOP/START). Each is recorded once however often the provider repeats it. Delivery statuses
//! of our own messages are [`super::message_status`]'s.

use chrono::{DateTime, SubsecRound, Utc};
use dw_eventstore::{EventMetadata, NewEvent, StoreError, personal, store};
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use sqlx::{PgPool, Row};

use super::AppError;
use crate::domain::PhoneNumber;
use crate::domain::template::Channel;

/// SMS keywords that opt a number out, and the one that opts it back in.
pub const OPT_OUT_KEYWORDS: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
pub const OPT_IN_KEYWORD: &str = "START";

fn metadata() -> EventMetadata {
    EventMetadata { correlation_id: None, causation_id: None, traceparent: dw_telemetry::current_traceparent() }
}

/// A client message as the webhook delivered it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: Channel,
    pub phone: PhoneNumber,
    pub profile_name: Option<String>,
    pub text: String,
    pub provider_message_id: String,
    pub received_at: DateTime<Utc>,
}

/// The longest client message kept (WhatsApp's own limit for a text message).
pub const INBOUND_TEXT_MAX: usize = 4096;

/// Records a client message once (by provider message id). SMS consent keywords change the
/// number's consent instead of reaching an agent.
///
/// Its one transaction's event goes to this process's active relay once it committed
/// ([`dw_eventstore::handing_over`]), on its way to the agents' notifications.
pub async fn record_inbound(pool: &PgPool, tenant: &TenantId, inbound: Inbound) -> Result<(), AppError> {
    dw_eventstore::handing_over(pool, record_inbound_transaction(pool, tenant, inbound)).await
}

async fn record_inbound_transaction(pool: &PgPool, tenant: &TenantId, inbound: Inbound) -> Result<(), AppError> {
    // What a client typed reaches us through the provider: keep it, without what the store and
    // the agents' screens must not get (NUL, control and bidi-override characters), and bounded.
    use dw_proto::hygiene::{TextKind, scrub};
    let inbound = Inbound {
        profile_name: inbound.profile_name.map(|name| scrub(&name, TextKind::SingleLine, 200)),
        text: scrub(&inbound.text, TextKind::FreeText, INBOUND_TEXT_MAX),
        provider_message_id: scrub(&inbound.provider_message_id, TextKind::SingleLine, 200),
        ..inbound
    };
    let keyword = inbound.text.trim().to_uppercase();
    if inbound.channel == Channel::Sms && (OPT_OUT_KEYWORDS.contains(&keyword.as_str()) || keyword == OPT_IN_KEYWORD) {
        return record_consent(pool, tenant, &inbound.phone, &keyword).await;
    }
    let mut tx = pool.begin().await?;
    let contact = sqlx::query("SELECT contact_id, name FROM contacts WHERE tenant_id = $1 AND phone = $2")
        .bind(tenant)
        .bind(inbound.phone.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let (contact_id, contact_name) = match contact {
        Some(row) => (Some(row.try_get::<uuid::Uuid, _>("contact_id")?), Some(row.try_get::<String, _>("name")?)),
        None => (None, inbound.profile_name.clone()),
    };
    let message_id = uuid::Uuid::now_v7();
    let event = pb::InboundMessageReceived {
        message_id: message_id.to_string(),
        contact_id: contact_id.map(|c| c.to_string()).unwrap_or_default(),
        contact_name: contact_name.unwrap_or_default(),
        phone: inbound.phone.as_str().to_owned(),
        channel: crate::codec::channel_to_pb(inbound.channel) as i32,
        text: inbound.text,
        provider_message_id: inbound.provider_message_id.clone(),
        received_at: Some(dw_proto::time::timestamp(inbound.received_at)),
        department_id: String::new(),
    };
    // One stream per provider message: a repeated webhook finds it taken.
    let stream_id = format!("inbound:{tenant}:{}:{}", inbound.channel.as_str(), inbound.provider_message_id);
    let key = personal::subject_key(&mut tx, tenant, &crate::codec::client_subject(&inbound.phone)).await?;
    let new_event = crate::codec::inbound_received(&event, &key);
    match store::append(&mut tx, tenant, &stream_id, 0, vec![new_event], None, &metadata()).await {
        Ok(_) => {
            dw_eventstore::commit(tx).await?;
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn record_consent(pool: &PgPool, tenant: &TenantId, phone: &PhoneNumber, keyword: &str) -> Result<(), AppError> {
    let opted_out = keyword != OPT_IN_KEYWORD;
    let now = Utc::now().trunc_subsecs(6);
    let mut tx = pool.begin().await?;
    let current: Option<bool> =
        sqlx::query("SELECT opted_out FROM sms_opt_outs WHERE tenant_id = $1 AND phone = $2 FOR UPDATE")
            .bind(tenant)
            .bind(phone.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("opted_out"))
            .transpose()?;
    if current.unwrap_or(false) == opted_out {
        return Ok(());
    }
    let contact_id: Option<uuid::Uuid> =
        sqlx::query("SELECT contact_id FROM contacts WHERE tenant_id = $1 AND phone = $2")
            .bind(tenant)
            .bind(phone.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("contact_id"))
            .transpose()?;
    let contact = contact_id.map(|c| c.to_string()).unwrap_or_default();
    let event = if opted_out {
        let payload = pb::ContactOptedOut {
            phone: phone.as_str().to_owned(),
            contact_id: contact,
            keyword: keyword.to_owned(),
            at: Some(dw_proto::time::timestamp(now)),
        };
        NewEvent::of("optout.opted_out", &payload)
    } else {
        let payload = pb::ContactOptedIn {
            phone: phone.as_str().to_owned(),
            contact_id: contact,
            at: Some(dw_proto::time::timestamp(now)),
        };
        NewEvent::of("optout.opted_in", &payload)
    };
    let stream_id = format!("optout:{tenant}:{}", phone.as_str());
    let version = store::load_stream(&mut tx, &stream_id).await?.version;
    store::append(&mut tx, tenant, &stream_id, version, vec![event], None, &metadata()).await?;
    crate::projections::save_consent(&mut tx, tenant, phone, opted_out, keyword, now).await?;
    dw_eventstore::commit(tx).await?;
    Ok(())
}
