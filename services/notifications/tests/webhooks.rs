//! Webhooks against the real service: signed deliveries retried under one id and logged, and
//! redelivery of a listed delivery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use common::{authed, eventually, publish, start, template_sent, token};

use dw_auth::Role;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use prost::Message;
use tonic::Code;

#[derive(Clone, Default)]
struct Receiver {
    received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    failures_left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn receive(
    axum::extract::State(receiver): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    receiver.received.lock().unwrap().push((headers, body));
    let left = receiver.failures_left.load(std::sync::atomic::Ordering::SeqCst);
    if left > 0 {
        receiver.failures_left.store(left - 1, std::sync::atomic::Ordering::SeqCst);
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test]
async fn webhooks_are_signed_retried_with_one_id_and_logged() {
    let h = start().await;
    let receiver = Receiver::default();
    receiver.failures_left.store(2, std::sync::atomic::Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks =
        dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient::new(h.channel.clone());
    let refused = webhooks
        .create_webhook(authed(
            &manager,
            pb::CreateWebhookRequest {
                request_id: "w0".into(),
                url: "http://10.0.0.1/hook".into(),
                description: String::new(),
                event_types: vec!["template.sent".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&refused), vec!["url"], "private addresses are refused");
    let created = webhooks
        .create_webhook(authed(
            &manager,
            pb::CreateWebhookRequest {
                request_id: "w1".into(),
                url: url.clone(),
                description: "CRM automation".into(),
                event_types: vec!["template.sent".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret.clone();
    let webhook_id = created.webhook.unwrap().webhook_id;

    // A send with metadata and additional information.
    let mut message = messaging::Message {
        message_id: uuid::Uuid::now_v7().to_string(),
        template_name: "order_shipped".into(),
        channel: messaging::Channel::Whatsapp as i32,
        recipient_phone: "+5511987654321".into(),
        agent_id: "ana".into(),
        additional_information: "priority client".into(),
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    message.metadata.insert("crm_ticket".into(), "T-9".into());
    let event = messaging::MessageRequested { message: Some(message) };
    publish(&h, &h.messaging, "acme", "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;

    let attempts = eventually("three attempts", async || {
        let received = receiver.received.lock().unwrap().clone();
        (received.len() >= 3).then_some(received)
    })
    .await;
    assert_eq!(attempts.len(), 3, "two failures, then success, then nothing more");
    let ids: Vec<&str> = attempts.iter().map(|(h, _)| h.get("webhook-id").unwrap().to_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one webhook-id for every attempt");
    let (headers, body) = &attempts[2];
    let timestamp: i64 = headers.get("webhook-timestamp").unwrap().to_str().unwrap().parse().unwrap();
    let sent = headers.get("webhook-signature").unwrap().to_str().unwrap();
    let expected = notifications::domain::webhook::signature(&secret, ids[0], timestamp, body).unwrap();
    assert_eq!(sent, expected, "the receiver verifies the signature");
    let tampered = body.replace("T-9", "T-10");
    assert_ne!(notifications::domain::webhook::signature(&secret, ids[0], timestamp, &tampered).unwrap(), sent);
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["type"], "template.sent");
    assert_eq!(json["data"]["metadata"]["crm_ticket"], "T-9");
    assert_eq!(json["data"]["additional_information"], "priority client");

    let deliveries = eventually("the log", async || {
        let list = webhooks
            .list_deliveries(authed(
                &manager,
                pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), page_size: 0 },
            ))
            .await
            .unwrap()
            .into_inner();
        list.deliveries.first().filter(|d| d.status == "succeeded").cloned()
    })
    .await;
    let codes: Vec<i32> = deliveries.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [500, 500, 204]);
    assert_eq!(deliveries.delivery_id, ids[0]);
}

#[tokio::test]
async fn a_listed_delivery_is_redelivered_by_the_id_the_list_gave() {
    let h = start().await;
    let receiver = common::FakeReceiver::default();
    let url = format!("http://{}/hook", receiver.start().await);
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let request = pb::CreateWebhookRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        url,
        description: "CRM automation".into(),
        event_types: vec!["template.sent".into()],
    };
    let webhook_id =
        webhooks.create_webhook(authed(&manager, request)).await.unwrap().into_inner().webhook.unwrap().webhook_id;
    template_sent(&h, "acme").await;
    let delivered = eventually("the delivery succeeded", async || {
        let request = pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), page_size: 0 };
        let listed = webhooks.list_deliveries(authed(&manager, request)).await.unwrap().into_inner();
        listed.deliveries.into_iter().find(|d| d.status == "succeeded")
    })
    .await;
    assert!(delivered.delivery_id.starts_with("msg_"), "{}", delivered.delivery_id);

    let redeliver = |request_id: &str, delivery_id: &str| pb::RedeliverWebhookRequest {
        request_id: request_id.into(),
        delivery_id: delivery_id.into(),
    };
    let again = webhooks
        .redeliver_webhook(authed(&manager, redeliver("again-1", &delivered.delivery_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.delivery_id.as_str(), again.status.as_str()), (delivered.delivery_id.as_str(), "pending"));
    let received = eventually("the second POST", async || {
        (receiver.count() >= 2).then(|| receiver.received.lock().unwrap().clone())
    })
    .await;
    let ids: Vec<_> =
        received.iter().map(|(headers, _)| headers.get("webhook-id").unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(ids, [delivered.delivery_id.clone(), delivered.delivery_id.clone()], "one webhook-id for both");

    // The bare UUID names the same delivery.
    let uuid = uuid::Uuid::parse_str(delivered.delivery_id.trim_start_matches("msg_")).unwrap().to_string();
    let by_uuid = webhooks.redeliver_webhook(authed(&manager, redeliver("again-2", &uuid))).await.unwrap().into_inner();
    assert_eq!(by_uuid.delivery_id, delivered.delivery_id);

    // Anything else is refused on delivery_id; an unknown id is not found.
    for bad in ["msg_", "msg_xyz", "msg_0190f1c2-a3b4-7c5d-8e9f-a0b1c2d3e4f5", "whatever", ""] {
        let refused =
            webhooks.redeliver_webhook(authed(&manager, redeliver(&format!("bad-{bad}"), bad))).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(dw_grpc_kit::errors::violated_fields(&refused), vec!["delivery_id"], "{bad}");
    }
    let unknown = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let missing = webhooks.redeliver_webhook(authed(&manager, redeliver("unknown", &unknown))).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let other_tenant = token("globex", "boss", Role::Manager);
    let theirs = webhooks
        .redeliver_webhook(authed(&other_tenant, redeliver("theirs", &delivered.delivery_id)))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound, "another tenant's delivery is not found");
}
