//! SMS provider callbacks (statuses of our sends, client messages): form-encoded, signed with the
//! path tenant's auth token and carrying its account sid.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use dw_ids::TenantId;
use secrecy::ExposeSecret as _;

use super::{Hooks, failed, header, is_storable_id, storable_text, verify};
use crate::app::inbound::{self, Inbound};
use crate::app::message_status::{self, ReportedStatus};
use crate::domain::PhoneNumber;
use crate::domain::template::Channel;

type Form = Vec<(String, String)>;

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The callback's form when it is the path tenant's: its SMS account exists (else 404), the body
/// is signed with its auth token (else 401) and the form's `AccountSid` is its (else 403).
async fn tenant_form(
    hooks: &Hooks,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(TenantId, Form), StatusCode> {
    let (tenant, accounts) = hooks.tenant(tenant).await?;
    let Some(account) = &accounts.sms else {
        tracing::warn!(%tenant, "sms callback for a tenant without an sms account");
        return Err(StatusCode::NOT_FOUND);
    };
    if !verify(account.auth_token.secret().expose_secret(), body, header(headers, "x-signature-256")) {
        tracing::warn!(%tenant, "sms callback with a bad signature");
        return Err(StatusCode::UNAUTHORIZED);
    }
    let form: Form = form_urlencoded::parse(body).into_owned().collect();
    if field(&form, "AccountSid") != Some(account.account_sid.as_str()) {
        tracing::warn!(%tenant, "sms callback of another account");
        return Err(StatusCode::FORBIDDEN);
    }
    Ok((tenant, form))
}

pub(super) async fn status(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (tenant, form) = match tenant_form(&hooks, &tenant, &headers, &body).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(sid) = field(&form, "MessageSid").filter(is_storable_id) else {
        return StatusCode::BAD_REQUEST;
    };
    let reported = match field(&form, "MessageStatus") {
        Some("delivered") => ReportedStatus::Delivered,
        Some("read") => ReportedStatus::Read,
        Some("failed" | "undelivered") => ReportedStatus::Failed {
            code: storable_text(field(&form, "ErrorCode").unwrap_or("undelivered")),
            reason: storable_text(field(&form, "ErrorMessage").unwrap_or("not delivered")),
        },
        Some(_) => ReportedStatus::Sent,
        None => return StatusCode::BAD_REQUEST,
    };
    match message_status::apply_status(&hooks.pool, &tenant, sid, reported, Utc::now()).await {
        Ok(_) => StatusCode::OK,
        Err(error) => failed(error),
    }
}

pub(super) async fn inbound(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (tenant, form) = match tenant_form(&hooks, &tenant, &headers, &body).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let (Some(from), Some(sid)) = (field(&form, "From"), field(&form, "MessageSid").filter(is_storable_id)) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(phone) = PhoneNumber::parse(from) else {
        return StatusCode::BAD_REQUEST;
    };
    let inbound = Inbound {
        channel: Channel::Sms,
        phone,
        profile_name: None,
        text: storable_text(field(&form, "Body").unwrap_or_default()),
        provider_message_id: sid.to_owned(),
        received_at: Utc::now(),
    };
    match inbound::record_inbound(&hooks.pool, &tenant, inbound).await {
        Ok(()) => StatusCode::OK,
        Err(error) => failed(error),
    }
}
