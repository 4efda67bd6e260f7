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
    dw_testkit::traced();
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
                for_sends: false,
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
                for_sends: false,
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
    let message_id = message.message_id.clone();
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
    // Each attempt is a client span of its own, whose context the receiver gets.
    let span_ids: std::collections::BTreeSet<String> = attempts
        .iter()
        .map(|(h, _)| {
            let traceparent = h.get("traceparent").expect("a traceparent").to_str().unwrap();
            dw_testkit::traceparent_span_id(traceparent).expect("a W3C traceparent").to_owned()
        })
        .collect();
    assert_eq!(span_ids.len(), 3, "one span per attempt: {span_ids:?}");
    for (headers, _) in &attempts {
        let traceparent = headers.get("traceparent").unwrap().to_str().unwrap();
        assert_eq!(
            traceparent.split('-').nth(1),
            Some(common::EVENT_TRACE_ID),
            "every attempt joins the trace of the event that queued it: {traceparent}"
        );
    }
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
                pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), ..Default::default() },
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

    // The client is erased in messaging: the delivery log and the send log keep the send without
    // the client (metadata, status and attempts stay).
    let pool = &h._db.pool;
    let kept = async || -> Vec<String> {
        let sql = "SELECT body FROM webhook_deliveries WHERE tenant_id = 'acme' \
                   UNION ALL SELECT recipient_phone || '|' || additional_information FROM single_notifications \
                   WHERE tenant_id = 'acme' AND message_id = $1::uuid";
        sqlx::query_scalar(sql).bind(&message_id).fetch_all(pool).await.unwrap()
    };
    let before = kept().await;
    assert!(before.iter().all(|b| b.contains("+5511987654321") && b.contains("priority client")), "{before:?}");
    let erased = messaging::ClientDataErased {
        erasure_id: uuid::Uuid::now_v7().to_string(),
        message_ids: vec![message_id.clone()],
        reason: "LGPD request".into(),
        erased_by: "boss".into(),
        ..Default::default()
    };
    publish(
        &h,
        &h.messaging,
        "acme",
        "message.client_data_erased",
        "dw.messaging.v1.ClientDataErased",
        erased.encode_to_vec(),
    )
    .await;
    let after = eventually("the client erased from the logs", async || {
        let after = kept().await;
        after.iter().all(|b| !b.contains("+5511987654321") && !b.contains("priority client")).then_some(after)
    })
    .await;
    assert_eq!(after.len(), before.len());
    assert!(after[0].contains("T-9") && after[0].contains("template.sent"), "{}", after[0]);
    assert_eq!(after[1], "|");
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
        for_sends: false,
    };
    let webhook_id =
        webhooks.create_webhook(authed(&manager, request)).await.unwrap().into_inner().webhook.unwrap().webhook_id;
    template_sent(&h, "acme").await;
    let delivered = eventually("the delivery succeeded", async || {
        let request = pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), ..Default::default() };
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

/// Walks every page of a listing: `fetch` answers a page token's items and the next token.
async fn walk<T>(mut fetch: impl AsyncFnMut(String) -> (Vec<T>, String)) -> (Vec<T>, usize) {
    let (mut all, mut pages, mut next) = (Vec::new(), 0, String::new());
    loop {
        let (items, token) = fetch(next).await;
        all.extend(items);
        pages += 1;
        assert!(pages <= 20, "the pages end");
        if token.is_empty() {
            return (all, pages);
        }
        next = token;
    }
}

#[tokio::test]
async fn webhooks_and_deliveries_are_listed_page_by_page_without_repeat_or_gap() {
    let h = start().await;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/{hook}", axum::routing::post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let mut created = Vec::new();
    for n in 0..7 {
        let request = pb::CreateWebhookRequest {
            request_id: format!("w{n}"),
            url: format!("{base}/hook{n}"),
            description: String::new(),
            // Only the first endpoint takes the sends below.
            event_types: vec![if n == 0 { "template.sent" } else { "message.read" }.into()],
            for_sends: false,
        };
        created.push(webhooks.create_webhook(authed(&manager, request)).await.unwrap().into_inner().webhook.unwrap());
    }

    // Every endpoint, oldest first, 3 a page.
    let (listed, pages) = walk(async |page_token| {
        let request = pb::ListWebhooksRequest { page_size: 3, page_token };
        let page = webhooks.list_webhooks(authed(&manager, request)).await.unwrap().into_inner();
        assert!(page.webhooks.len() <= 3);
        (page.webhooks, page.next_page_token)
    })
    .await;
    assert_eq!(pages, 3);
    let ids = |list: &[pb::Webhook]| list.iter().map(|w| w.webhook_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&listed), ids(&created), "no repeat, no gap, in creation order");
    let all = webhooks.list_webhooks(authed(&manager, pb::ListWebhooksRequest::default())).await.unwrap().into_inner();
    assert_eq!((ids(&all.webhooks), all.next_page_token.as_str()), (ids(&created), ""), "one default page");

    // Deliveries of the first endpoint, newest first, 2 a page.
    for _ in 0..5 {
        template_sent(&h, "acme").await;
    }
    let webhook_id = created[0].webhook_id.clone();
    eventually("five deliveries", async || {
        let request = pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), ..Default::default() };
        let list = webhooks.list_deliveries(authed(&manager, request)).await.ok()?.into_inner();
        (list.deliveries.len() == 5).then_some(())
    })
    .await;
    let deliveries = |page_size: i32, page_token: String| pb::ListDeliveriesRequest {
        webhook_id: webhook_id.clone(),
        page_size,
        page_token,
    };
    let everything = webhooks.list_deliveries(authed(&manager, deliveries(0, String::new()))).await.unwrap();
    let expected: Vec<String> = everything.into_inner().deliveries.iter().map(|d| d.delivery_id.clone()).collect();
    let (walked, pages) = walk(async |page_token| {
        let page = webhooks.list_deliveries(authed(&manager, deliveries(2, page_token))).await.unwrap().into_inner();
        assert!(page.deliveries.len() <= 2);
        (page.deliveries.into_iter().map(|d| d.delivery_id).collect(), page.next_page_token)
    })
    .await;
    assert_eq!((walked, pages), (expected, 3), "no repeat, no gap, newest first");

    // A token continues only the list it came from, for its tenant.
    let first_webhooks = webhooks
        .list_webhooks(authed(&manager, pb::ListWebhooksRequest { page_size: 3, page_token: String::new() }))
        .await
        .unwrap()
        .into_inner();
    let first_deliveries = webhooks.list_deliveries(authed(&manager, deliveries(2, String::new()))).await.unwrap();
    let deliveries_token = first_deliveries.into_inner().next_page_token;
    let refused = [
        webhooks
            .list_webhooks(authed(&manager, pb::ListWebhooksRequest { page_size: 3, page_token: "garbage".into() }))
            .await,
        webhooks
            .list_webhooks(authed(
                &manager,
                pb::ListWebhooksRequest { page_size: 3, page_token: deliveries_token.clone() },
            ))
            .await,
    ];
    for result in refused {
        let status = result.unwrap_err();
        assert_eq!(
            (status.code(), dw_grpc_kit::errors::violated_fields(&status)),
            (Code::InvalidArgument, vec!["page_token".to_owned()])
        );
    }
    for page_token in ["garbage".to_owned(), first_webhooks.next_page_token.clone()] {
        let status = webhooks.list_deliveries(authed(&manager, deliveries(2, page_token))).await.unwrap_err();
        assert_eq!(dw_grpc_kit::errors::violated_fields(&status), ["page_token"]);
    }
    let other_endpoint = pb::ListDeliveriesRequest {
        webhook_id: created[1].webhook_id.clone(),
        page_size: 2,
        page_token: deliveries_token.clone(),
    };
    let status = webhooks.list_deliveries(authed(&manager, other_endpoint)).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), ["page_token"], "a token of another endpoint's log");

    let globex = token("globex", "boss", Role::Manager);
    let theirs =
        webhooks.list_webhooks(authed(&globex, pb::ListWebhooksRequest::default())).await.unwrap().into_inner();
    assert!(theirs.webhooks.is_empty(), "another tenant sees nothing");
    let status = webhooks
        .list_webhooks(authed(
            &globex,
            pb::ListWebhooksRequest { page_size: 3, page_token: first_webhooks.next_page_token },
        ))
        .await
        .unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), ["page_token"], "a token of another tenant");
    let theirs = webhooks.list_deliveries(authed(&globex, deliveries(2, String::new()))).await.unwrap().into_inner();
    assert!(theirs.deliveries.is_empty() && theirs.next_page_token.is_empty(), "another tenant sees nothing");
    for size in [-1, 201] {
        let status = webhooks
            .list_webhooks(authed(&manager, pb::ListWebhooksRequest { page_size: size, page_token: String::new() }))
            .await
            .unwrap_err();
        assert_eq!(dw_grpc_kit::errors::violated_fields(&status), ["page_size"]);
    }
}
