//! SMS provider callbacks (statuses of our sends, client messages): form-encoded, signed as
//! Twilio signs them (`X-Twilio-Signature`, over the public URL and the form's parameters) with
//! the path tenant's auth token, and carrying its account sid.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::Utc;
use dw_ids::TenantId;
use secrecy::ExposeSecret as _;

use super::{Hooks, failed, header, is_storable_id, storable_text};
use crate::app::inbound::{self, Inbound};
use crate::app::message_status::{self, ReportedStatus};
use crate::domain::PhoneNumber;
use crate::domain::template::Channel;
use crate::domain::twilio_signature;

type Form = Vec<(String, String)>;

/// Parameters a callback may carry. Twilio's carry a few dozen (with `MediaUrl0`…`MediaUrl9` and
/// the like); the whole form is decoded and sorted before its signature can be checked, so an
/// unsigned body of a million `a&a&…` would otherwise cost every replica that work.
const MAX_FORM_PARAMS: usize = 256;

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The callback's form when it is the path tenant's: its SMS account exists (else 404), the form
/// has at most [`MAX_FORM_PARAMS`] parameters (else 413), the public URL called (`uri` under the
/// public base) and those parameters are signed with its auth token (else 401), and the form's
/// `AccountSid` is its (else 403).
async fn tenant_form(
    hooks: &Hooks,
    tenant: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(TenantId, Form), StatusCode> {
    let (tenant, accounts) = hooks.tenant(tenant).await?;
    let Some(account) = &accounts.sms else {
        tracing::warn!(%tenant, "sms callback for a tenant without an sms account");
        return Err(StatusCode::NOT_FOUND);
    };
    let form: Form =
        form_urlencoded::parse(body).take(MAX_FORM_PARAMS + 1).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if form.len() > MAX_FORM_PARAMS {
        tracing::warn!(%tenant, "sms callback with more than {MAX_FORM_PARAMS} parameters");
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let path_and_query = uri.path_and_query().map_or_else(|| uri.path(), |pq| pq.as_str());
    let url = hooks.public_base.url_of(path_and_query);
    let signature = header(headers, twilio_signature::HEADER);
    if !twilio_signature::verify(account.auth_token.secret().expose_secret(), &url, &form, signature) {
        // The URL is logged: a deployment whose DW_WEBHOOK_PUBLIC_URL is not the URL the
        // provider was given refuses every callback, and this line says which URL was checked.
        tracing::warn!(%tenant, %url, signed = signature.is_some(), "sms callback with a bad signature");
        return Err(StatusCode::UNAUTHORIZED);
    }
    if field(&form, "AccountSid") != Some(account.account_sid.as_str()) {
        tracing::warn!(%tenant, "sms callback of another account");
        return Err(StatusCode::FORBIDDEN);
    }
    Ok((tenant, form))
}

pub(super) async fn status(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (tenant, form) = match tenant_form(&hooks, &tenant, &uri, &headers, &body).await {
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
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (tenant, form) = match tenant_form(&hooks, &tenant, &uri, &headers, &body).await {
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
