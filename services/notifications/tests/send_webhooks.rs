//! A send's own webhook against the real service: every event of the send (requested,
//! dispatched, delivered, read, failed) is delivered to the send's URL, signed with the tenant's
//! sends endpoint's secret, and listed among that endpoint's deliveries; a send without a webhook
//! and another tenant's endpoint get nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{FakeReceiver, Harness, authed, eventually, publish, start, token};

use dw_auth::Role;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use prost::Message;
use tonic::Code;

fn sends_endpoint(request_id: &str) -> pb::CreateWebhookRequest {
    pb::CreateWebhookRequest {
        request_id: request_id.into(),
        description: "CRM automations of sends".into(),
        for_sends: true,
        ..Default::default()
    }
}

/// messaging reports a send by ana in `tenant`, with `webhook_url` (empty: none).
async fn requested(h: &Harness, tenant: &str, webhook_url: &str) -> String {
    let message_id = uuid::Uuid::now_v7().to_string();
    let message = messaging::Message {
        message_id: message_id.clone(),
        template_name: "order_shipped".into(),
        channel: messaging::Channel::Whatsapp as i32,
        recipient_phone: "+5511987654321".into(),
        agent_id: "ana".into(),
        webhook_url: webhook_url.into(),
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    let event = messaging::MessageRequested { message: Some(message) };
    publish(h, &h.messaging, tenant, "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;
    message_id
}

/// messaging reports the send's statuses after it was handed to the provider.
async fn dispatched_delivered_read(h: &Harness, tenant: &str, message_id: &str) {
    let at = Some(dw_proto::time::timestamp(chrono::Utc::now()));
    let dispatched = messaging::MessageDispatched {
        message_id: message_id.into(),
        provider_message_id: "wamid.1".into(),
        attempts: 1,
        dispatched_at: at,
    };
    publish(
        h,
        &h.messaging,
        tenant,
        "message.dispatched",
        "dw.messaging.v1.MessageDispatched",
        dispatched.encode_to_vec(),
    )
    .await;
    let delivered = messaging::MessageDelivered { message_id: message_id.into(), delivered_at: at };
    publish(
        h,
        &h.messaging,
        tenant,
        "message.delivered",
        "dw.messaging.v1.MessageDelivered",
        delivered.encode_to_vec(),
    )
    .await;
    let read = messaging::MessageRead { message_id: message_id.into(), read_at: at };
    publish(h, &h.messaging, tenant, "message.read", "dw.messaging.v1.MessageRead", read.encode_to_vec()).await;
}

/// The types of the calls the receiver got for the send `message_id`, each checked to be signed
/// with `secret`.
fn verified_calls(receiver: &FakeReceiver, secret: &str, message_id: &str) -> Vec<String> {
    let received = receiver.received.lock().unwrap().clone();
    received
        .iter()
        .filter(|(_, body)| body.contains(message_id))
        .map(|(headers, body)| {
            let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
            let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
            let expected = notifications::domain::webhook::signature(secret, &header("webhook-id"), timestamp, body);
            assert_eq!(Some(header("webhook-signature")), expected, "signed with the sends endpoint's secret");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["data"]["message_id"], message_id);
            json["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_sends_webhook_gets_each_event_of_that_send_signed_and_listed() {
    let h = start().await;
    let receiver = FakeReceiver::default();
    let url = format!("http://{}/crm/sends", receiver.start().await);
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let created = webhooks.create_webhook(authed(&manager, sends_endpoint("s1"))).await.unwrap().into_inner();
    let endpoint = created.webhook.clone().unwrap();
    assert!(endpoint.for_sends && endpoint.url.is_empty() && endpoint.event_types.is_empty(), "{endpoint:?}");
    let again = webhooks.create_webhook(authed(&manager, sends_endpoint("s1"))).await.unwrap().into_inner();
    assert_eq!(again.secret, created.secret, "a retried request answers the first answer");
    let second = webhooks.create_webhook(authed(&manager, sends_endpoint("s2"))).await.unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition, "one sends endpoint per tenant: {second:?}");
    let with_url = pb::CreateWebhookRequest { url: url.clone(), ..sends_endpoint("s3") };
    let refused = webhooks.create_webhook(authed(&manager, with_url)).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&refused), vec!["url"]);

    // A send without a webhook, and another tenant's send to the same URL before it has an endpoint.
    let silent = requested(&h, "acme", "").await;
    dispatched_delivered_read(&h, "acme", &silent).await;
    let other = requested(&h, "globex", &url).await;
    // ana's send with its webhook: requested, dispatched, delivered, read.
    let send = requested(&h, "acme", &url).await;
    dispatched_delivered_read(&h, "acme", &send).await;

    let calls = eventually("the send's four events", async || {
        let calls = verified_calls(&receiver, &created.secret, &send);
        (calls.len() >= 4).then_some(calls)
    })
    .await;
    let mut types: Vec<&str> = calls.iter().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(types, ["message.delivered", "message.dispatched", "message.read", "template.sent"]);

    let deliveries = eventually("the endpoint's log", async || {
        let request = pb::ListDeliveriesRequest {
            webhook_id: endpoint.webhook_id.clone(),
            page_size: 50,
            page_token: String::new(),
        };
        let list = webhooks.list_deliveries(authed(&manager, request)).await.unwrap().into_inner();
        let done = list.deliveries.len() == 4 && list.deliveries.iter().all(|d| d.status == "succeeded");
        done.then_some(list.deliveries)
    })
    .await;
    assert!(deliveries.iter().all(|d| d.url == url), "each delivery names the send's URL: {deliveries:?}");

    // globex had no endpoint: notifications made one for it (never drop a send's webhook), and
    // acme's endpoint never carried globex's send.
    let globex = token("globex", "boss", Role::Manager);
    let listed =
        webhooks.list_webhooks(authed(&globex, pb::ListWebhooksRequest::default())).await.unwrap().into_inner();
    let made = listed.webhooks.iter().find(|w| w.for_sends).expect("globex's sends endpoint");
    let request =
        pb::ListDeliveriesRequest { webhook_id: made.webhook_id.clone(), page_size: 50, page_token: String::new() };
    let globex_deliveries = eventually("globex's delivery", async || {
        let list = webhooks.list_deliveries(authed(&globex, request.clone())).await.unwrap().into_inner();
        (!list.deliveries.is_empty()).then_some(list.deliveries)
    })
    .await;
    assert_eq!(globex_deliveries.len(), 1);
    let received = receiver.received.lock().unwrap().clone();
    let for_silent = received.iter().filter(|(_, body)| body.contains(&silent)).count();
    assert_eq!(for_silent, 0, "a send without a webhook calls nobody");
    assert!(verified_calls_of_other_tenant_unsigned_by_acme(&received, &created.secret, &other));
}

/// globex's call (if it came) is not signed with acme's secret.
fn verified_calls_of_other_tenant_unsigned_by_acme(
    received: &[(axum::http::HeaderMap, String)],
    acme_secret: &str,
    other: &str,
) -> bool {
    received.iter().filter(|(_, body)| body.contains(other)).all(|(headers, body)| {
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        let acme = notifications::domain::webhook::signature(acme_secret, &header("webhook-id"), timestamp, body);
        acme != Some(header("webhook-signature"))
    })
}

#[tokio::test]
async fn a_failed_send_tells_its_webhook() {
    let h = start().await;
    let receiver = FakeReceiver::default();
    let url = format!("http://{}/crm/sends", receiver.start().await);
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let created = webhooks.create_webhook(authed(&manager, sends_endpoint("s1"))).await.unwrap().into_inner();

    let send = requested(&h, "acme", &url).await;
    let failed = messaging::MessageFailed {
        message_id: send.clone(),
        code: "131026".into(),
        reason: "message undeliverable".into(),
        terminal: true,
        attempts: 1,
        failed_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
    };
    publish(&h, &h.messaging, "acme", "message.failed", "dw.messaging.v1.MessageFailed", failed.encode_to_vec()).await;

    let calls = eventually("requested and failed", async || {
        let calls = verified_calls(&receiver, &created.secret, &send);
        (calls.len() >= 2).then_some(calls)
    })
    .await;
    let mut types: Vec<&str> = calls.iter().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(types, ["message.failed", "template.sent"]);
}
