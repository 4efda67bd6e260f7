//! WhatsApp Cloud API webhooks: the verify handshake and the signed notifications (statuses of
//! our sends, client messages), each against the path tenant's WhatsApp account.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::{Hooks, failed, header, is_storable_id, storable_text, unix_time, verify};
use crate::app::inbound::{self, Inbound};
use crate::app::message_status::{self, ReportedStatus};
use crate::domain::PhoneNumber;
use crate::domain::provider_config::PhoneNumberId;
use crate::domain::template::Channel;

/// Whether `payload` is only about the phone number `ours`: every change that names a phone
/// number (`value.metadata.phone_number_id`) names `ours`, and every change carrying statuses or
/// messages names one. Other changes (no metadata, nothing this service reads) are ignored.
pub fn names_only_phone_number(payload: &Value, ours: &PhoneNumberId) -> bool {
    changes(payload).all(|change| {
        let value = &change["value"];
        match &value["metadata"]["phone_number_id"] {
            Value::Null => !(non_empty(&value["statuses"]) || non_empty(&value["messages"])),
            Value::String(named) => named == ours.as_str(),
            _ => false,
        }
    })
}

fn non_empty(value: &Value) -> bool {
    value.as_array().is_some_and(|items| !items.is_empty())
}

/// `entry[].changes[]` of a notification.
fn changes(payload: &Value) -> impl Iterator<Item = &Value> {
    payload["entry"].as_array().into_iter().flatten().flat_map(|e| e["changes"].as_array().into_iter().flatten())
}

pub(super) async fn handshake(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> (StatusCode, String) {
    let (tenant, accounts) = match hooks.tenant(&tenant).await {
        Ok(found) => found,
        Err(status) => return (status, String::new()),
    };
    let Some(account) = &accounts.whatsapp else {
        tracing::warn!(%tenant, "whatsapp handshake for a tenant without a whatsapp account");
        return (StatusCode::NOT_FOUND, String::new());
    };
    let params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let subscribe = param("hub.mode") == Some("subscribe");
    if subscribe && param("hub.verify_token").is_some_and(|token| account.verify_token.matches(token)) {
        return (StatusCode::OK, param("hub.challenge").unwrap_or_default().to_owned());
    }
    (StatusCode::FORBIDDEN, String::new())
}

pub(super) async fn event(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (tenant, accounts) = match hooks.tenant(&tenant).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(account) = &accounts.whatsapp else {
        tracing::warn!(%tenant, "whatsapp webhook for a tenant without a whatsapp account");
        return StatusCode::NOT_FOUND;
    };
    let signature = header(&headers, "x-hub-signature-256");
    if !verify(account.app_secret.secret().expose_secret(), &body, signature) {
        tracing::warn!(%tenant, "whatsapp webhook with a bad signature");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !names_only_phone_number(&payload, &account.phone_number_id) {
        tracing::warn!(%tenant, "whatsapp webhook about another phone number");
        return StatusCode::FORBIDDEN;
    }
    for change in changes(&payload) {
        let value = &change["value"];
        for status in value["statuses"].as_array().into_iter().flatten() {
            let Some(id) = status["id"].as_str().filter(is_storable_id) else { continue };
            let reported = match status["status"].as_str() {
                Some("sent") => ReportedStatus::Sent,
                Some("delivered") => ReportedStatus::Delivered,
                Some("read") => ReportedStatus::Read,
                Some("failed") => {
                    let error = &status["errors"][0];
                    ReportedStatus::Failed {
                        code: error["code"].as_i64().map(|c| c.to_string()).unwrap_or_else(|| "failed".into()),
                        reason: storable_text(
                            error["title"].as_str().or(error["message"].as_str()).unwrap_or("failed"),
                        ),
                    }
                }
                _ => continue,
            };
            if let Err(error) =
                message_status::apply_status(&hooks.pool, &tenant, id, reported, unix_time(&status["timestamp"])).await
            {
                return failed(error);
            }
        }
        let profile = value["contacts"][0]["profile"]["name"].as_str().map(storable_text);
        for message in value["messages"].as_array().into_iter().flatten() {
            let (Some(from), Some(id)) = (message["from"].as_str(), message["id"].as_str().filter(is_storable_id))
            else {
                continue;
            };
            let Ok(phone) = PhoneNumber::parse(&format!("+{}", from.trim_start_matches('+'))) else { continue };
            let text = message["text"]["body"]
                .as_str()
                .map(storable_text)
                .unwrap_or_else(|| storable_text(&format!("[{}]", message["type"].as_str().unwrap_or("message"))));
            let inbound = Inbound {
                channel: Channel::Whatsapp,
                phone,
                profile_name: profile.clone(),
                text,
                provider_message_id: id.to_owned(),
                received_at: unix_time(&message["timestamp"]),
            };
            if let Err(error) = inbound::record_inbound(&hooks.pool, &tenant, inbound).await {
                return failed(error);
            }
        }
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours() -> PhoneNumberId {
        PhoneNumberId::parse("1055").unwrap()
    }

    fn notification(values: Vec<Value>) -> Value {
        let changes: Vec<Value> =
            values.into_iter().map(|value| json!({"field": "messages", "value": value})).collect();
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": changes}]})
    }

    #[test]
    fn every_change_must_be_of_the_tenants_phone_number() {
        let status = json!([{"id": "wamid.1", "status": "read"}]);
        let of = |id: Value| json!({"metadata": {"phone_number_id": id}, "statuses": status});
        assert!(names_only_phone_number(&notification(vec![of(json!("1055"))]), &ours()));
        assert!(names_only_phone_number(&notification(vec![of(json!("1055")), of(json!("1055"))]), &ours()));
        assert!(!names_only_phone_number(&notification(vec![of(json!("1055")), of(json!("2077"))]), &ours()));
        assert!(!names_only_phone_number(&notification(vec![of(json!(1055))]), &ours()), "a number is not the id");
        assert!(!names_only_phone_number(&notification(vec![of(json!("10550"))]), &ours()));
        // Statuses or messages without a phone number: not provably ours.
        assert!(!names_only_phone_number(&notification(vec![json!({"statuses": status})]), &ours()));
        assert!(!names_only_phone_number(&notification(vec![json!({"messages": [{"id": "x"}]})]), &ours()));
        // A change naming another number is refused even when it carries nothing we read.
        let other = json!({"metadata": {"phone_number_id": "2077"}});
        assert!(!names_only_phone_number(&notification(vec![other]), &ours()));
        // Nothing we read and no number: ignored, as are payloads without changes.
        let empty = json!({"statuses": [], "messages": "not a list"});
        assert!(names_only_phone_number(&notification(vec![empty]), &ours()));
        assert!(names_only_phone_number(&json!({"entry": "x"}), &ours()));
        assert!(names_only_phone_number(&json!(42), &ours()));
    }
}
