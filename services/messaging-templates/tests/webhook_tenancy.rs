//! Provider webhooks belong to a tenant: a body is accepted on `/webhooks/…/<tenant>` only when it
//! is signed with that tenant's secret and names that tenant's account, and anything else records
//! nothing. Two tenants, `acme` and `globex`, each with its own accounts; `initech` has none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Service, Setup, sms_account, whatsapp_account};
use messaging_templates::webhooks::sign;
use serde_json::json;

const ACME_PHONE: &str = "1055";
const ACME_SECRET: &str = "acme-app-secret";
const ACME_VERIFY: &str = "acme-verify-token";
const ACME_SID: &str = "AC00000000000000000000000000000a01";
const ACME_TOKEN: &str = "acme-sms-auth-token";
const GLOBEX_PHONE: &str = "2077";
const GLOBEX_SECRET: &str = "globex-app-secret";
const GLOBEX_SID: &str = "AC00000000000000000000000000000b02";
const GLOBEX_TOKEN: &str = "globex-sms-auth-token";

async fn two_tenants(setup: &Setup) -> Service {
    let service = setup.start(false).await;
    let acme = (Some(whatsapp_account(ACME_PHONE, ACME_SECRET, ACME_VERIFY)), Some(sms_account(ACME_SID, ACME_TOKEN)));
    service.set_providers("acme", acme.0, acme.1).await;
    let globex = (
        Some(whatsapp_account(GLOBEX_PHONE, GLOBEX_SECRET, "globex-verify-token")),
        Some(sms_account(GLOBEX_SID, GLOBEX_TOKEN)),
    );
    service.set_providers("globex", globex.0, globex.1).await;
    service
}

/// A WhatsApp webhook to `tenant`'s path, signed `X-Hub-Signature-256` under `secret`.
async fn whatsapp(setup: &Setup, tenant: &str, secret: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/webhooks/whatsapp/{tenant}", setup.webhook_addr))
        .header("X-Hub-Signature-256", sign(secret, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An SMS to `tenant`'s inbound path, signed like Twilio under `auth_token` for its public URL.
async fn sms(setup: &Setup, tenant: &str, auth_token: &str, body: &str) -> u16 {
    setup.post_sms(&format!("/webhooks/sms/{tenant}/inbound"), auth_token, body).await
}

/// A client message (and a status) of the phone number `phone_number_ids[i]` in change `i`.
fn client_message(phone_number_ids: &[&str], message_id: &str) -> String {
    let changes: Vec<_> = phone_number_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": id},
                "contacts": [{"profile": {"name": "Carla Dias"}, "wa_id": "5511933332222"}],
                "messages": [{"from": "5511933332222", "id": format!("{message_id}-{i}"), "timestamp": "1795500000",
                              "type": "text", "text": {"body": "Olá"}}],
                "statuses": [{"id": format!("wamid.S{i}"), "status": "read", "timestamp": "1795500000"}]
            }})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": changes}]}).to_string()
}

fn sms_inbound(account_sid: &str, sid: &str) -> String {
    format!("AccountSid={account_sid}&From=%2B5511944443333&To=%2B15550001111&Body=Oi&MessageSid={sid}")
}

/// What webhooks recorded: inbound events and parked statuses, per tenant.
async fn recorded(setup: &Setup) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT tenant_id, count(*) FROM (SELECT tenant_id FROM events WHERE event_type = 'dw.messaging.v1.InboundMessageReceived' \
         UNION ALL SELECT tenant_id FROM parked_statuses) r GROUP BY tenant_id ORDER BY tenant_id",
    )
    .fetch_all(&setup.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_valid_whatsapp_body_posted_to_another_tenants_path_is_refused_and_records_nothing() {
    let setup = Setup::new().await;
    let service = two_tenants(&setup).await;
    let acmes = client_message(&[ACME_PHONE], "wamid.A");
    // Well signed for acme and about acme's number, but posted to globex and to a tenant without accounts.
    assert_eq!(whatsapp(&setup, "globex", ACME_SECRET, &acmes).await, 401);
    assert_eq!(whatsapp(&setup, "initech", ACME_SECRET, &acmes).await, 404);
    assert_eq!(whatsapp(&setup, "not a tenant!", ACME_SECRET, &acmes).await, 404);
    // globex's own secret on a body about acme's number: not globex's either.
    assert_eq!(whatsapp(&setup, "globex", GLOBEX_SECRET, &acmes).await, 403);
    assert_eq!(recorded(&setup).await, []);
    // On acme's own path it is acme's: the message and the (parked) status are recorded there.
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &acmes).await, 200);
    assert_eq!(recorded(&setup).await, [("acme".to_owned(), 2)]);

    // The handshake answers only the tenant's own verify token.
    let handshake = |tenant: &str, token: &str| {
        format!(
            "http://{}/webhooks/whatsapp/{tenant}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42",
            setup.webhook_addr
        )
    };
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(handshake("acme", ACME_VERIFY)).await, 200);
    assert_eq!(status(handshake("globex", ACME_VERIFY)).await, 403);
    assert_eq!(status(handshake("initech", ACME_VERIFY)).await, 404);
    service.stop().await;
}

#[tokio::test]
async fn a_body_signed_by_a_tenant_but_naming_another_tenants_phone_number_is_refused() {
    let setup = Setup::new().await;
    let service = two_tenants(&setup).await;
    let globexs = client_message(&[GLOBEX_PHONE], "wamid.G");
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &globexs).await, 403);
    // One change of acme's number and one of globex's: refused whole, acme's part included.
    let mixed = client_message(&[ACME_PHONE, GLOBEX_PHONE], "wamid.M");
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &mixed).await, 403);
    // A change with statuses or messages but no phone number is not provably acme's.
    let anonymous = client_message(&[ACME_PHONE], "wamid.N").replace(r#""phone_number_id":"1055""#, r#""x":"1055""#);
    assert!(!anonymous.contains("phone_number_id"));
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &anonymous).await, 403);
    assert_eq!(recorded(&setup).await, []);
    service.stop().await;
}

#[tokio::test]
async fn sms_with_one_tenants_token_or_account_is_refused_on_anothers_path() {
    let setup = Setup::new().await;
    let service = two_tenants(&setup).await;
    // acme's token and account, on globex's path.
    assert_eq!(sms(&setup, "globex", ACME_TOKEN, &sms_inbound(ACME_SID, "SM1")).await, 401);
    assert_eq!(sms(&setup, "globex", ACME_TOKEN, &sms_inbound(GLOBEX_SID, "SM2")).await, 401);
    // acme's token on acme's path, but globex's account (or none).
    assert_eq!(sms(&setup, "acme", ACME_TOKEN, &sms_inbound(GLOBEX_SID, "SM3")).await, 403);
    let no_account = "From=%2B5511944443333&Body=STOP&MessageSid=SM4";
    assert_eq!(sms(&setup, "acme", ACME_TOKEN, no_account).await, 403);
    let status = |account: &str| format!("AccountSid={account}&MessageSid=SM5&MessageStatus=delivered");
    let status_path = "/webhooks/sms/acme/status";
    assert_eq!(setup.post_sms(status_path, ACME_TOKEN, &status(GLOBEX_SID)).await, 403);
    assert_eq!(setup.post_sms("/webhooks/sms/initech/status", ACME_TOKEN, &status(ACME_SID)).await, 404);
    assert_eq!(recorded(&setup).await, []);
    // globex's own callback is globex's.
    assert_eq!(sms(&setup, "globex", GLOBEX_TOKEN, &sms_inbound(GLOBEX_SID, "SM6")).await, 200);
    assert_eq!(recorded(&setup).await, [("globex".to_owned(), 1)]);
    service.stop().await;
}

#[tokio::test]
async fn after_a_rotation_the_old_secrets_are_refused_and_a_removed_account_is_gone() {
    let setup = Setup::new().await;
    let service = two_tenants(&setup).await;
    let first = client_message(&[ACME_PHONE], "wamid.R1");
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &first).await, 200, "read (and cached) before the rotation");

    let rotated = whatsapp_account(ACME_PHONE, "acme-rotated-secret", "acme-rotated-verify");
    service.set_providers("acme", Some(rotated), Some(sms_account(ACME_SID, "acme-rotated-token"))).await;
    let second = client_message(&[ACME_PHONE], "wamid.R2");
    assert_eq!(whatsapp(&setup, "acme", ACME_SECRET, &second).await, 401, "the old app secret");
    assert_eq!(sms(&setup, "acme", ACME_TOKEN, &sms_inbound(ACME_SID, "SM7")).await, 401, "the old auth token");
    let url = |token: &str| {
        format!(
            "http://{}/webhooks/whatsapp/acme?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=7",
            setup.webhook_addr
        )
    };
    assert_eq!(reqwest::get(url(ACME_VERIFY)).await.unwrap().status().as_u16(), 403, "the old verify token");
    assert_eq!(reqwest::get(url("acme-rotated-verify")).await.unwrap().status().as_u16(), 200);
    assert_eq!(whatsapp(&setup, "acme", "acme-rotated-secret", &second).await, 200);
    assert_eq!(sms(&setup, "acme", "acme-rotated-token", &sms_inbound(ACME_SID, "SM8")).await, 200);

    // A new phone number id: the old one's notifications are no longer acme's.
    let moved = whatsapp_account("3099", "acme-rotated-secret", "acme-rotated-verify");
    service.set_providers("acme", Some(moved), None).await;
    let old_number = client_message(&[ACME_PHONE], "wamid.R3");
    assert_eq!(whatsapp(&setup, "acme", "acme-rotated-secret", &old_number).await, 403);

    // Removed: the endpoint is gone; SMS (kept) still works.
    let manager = common::token("acme", "boss", dw_auth::Role::Manager);
    let remove = dw_proto::messaging::v1::SetProviderConfigRequest {
        request_id: common::rid(),
        remove_whatsapp: true,
        ..Default::default()
    };
    service.providers().set_provider_config(common::authed(&manager, remove)).await.unwrap();
    assert_eq!(whatsapp(&setup, "acme", "acme-rotated-secret", &client_message(&["3099"], "wamid.R4")).await, 404);
    assert_eq!(sms(&setup, "acme", "acme-rotated-token", &sms_inbound(ACME_SID, "SM9")).await, 200);
    service.stop().await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_tenants_row_does_not_verify_anything() {
    let setup = Setup::new().await;
    let service = two_tenants(&setup).await;
    // Someone with write access to the table copies acme's sealed app secret into globex's row.
    sqlx::query(
        "UPDATE provider_configs SET whatsapp_app_secret = (SELECT whatsapp_app_secret FROM provider_configs \
         WHERE tenant_id = 'acme') WHERE tenant_id = 'globex'",
    )
    .execute(&setup.db.pool)
    .await
    .unwrap();
    let about_globex = client_message(&[GLOBEX_PHONE], "wamid.X");
    let status = whatsapp(&setup, "globex", ACME_SECRET, &about_globex).await;
    assert_eq!(status, 503, "it does not decrypt as globex's: nothing is accepted, the provider retries");
    assert_eq!(recorded(&setup).await, []);
    service.stop().await;
}
