//! Web Push and webhook deliveries on `/metrics`: attempts by outcome, failures by reason and
//! endpoints disabled, as local receivers answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use common::{authed, publish, start, token, wait_for_metrics};
use dw_auth::Role;
use dw_proto::distribution::v1 as distribution;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use dw_testkit::metrics::sample;
use prost::Message;

/// Serves `router` on a local port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

#[tokio::test]
async fn push_attempts_are_counted_by_outcome_and_a_410_counts_as_gone() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let h = start().await;
    let push_service = axum::Router::new()
        .route("/push/laptop", axum::routing::post(|| async { StatusCode::CREATED }))
        .route("/push/expired", axum::routing::post(|| async { StatusCode::GONE }));
    let base = serve(push_service).await;

    let ana = token("acme", "ana", Role::Agent);
    let mut client = NotificationServiceClient::new(h.channel.clone());
    let browser = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let p256dh = URL_SAFE_NO_PAD.encode(browser.public_key().to_sec1_bytes());
    let auth = URL_SAFE_NO_PAD.encode(*b"0123456789abcdef");
    for endpoint in [format!("{base}/push/laptop"), format!("{base}/push/expired")] {
        let request = pb::EnableBrowserNotificationsRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            endpoint,
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        };
        client.enable_browser_notifications(authed(&ana, request)).await.unwrap();
    }

    let message = distribution::TaskMessageRecorded {
        task_id: uuid::Uuid::now_v7().to_string(),
        message_id: uuid::Uuid::now_v7().to_string(),
        text: "Olá".into(),
        received_at: None,
        agent_id: "ana".into(),
    };
    let subject = "task.message_recorded";
    publish(&h, &h.distribution, "acme", subject, "dw.distribution.v1.TaskMessageRecorded", message.encode_to_vec())
        .await;

    let text = wait_for_metrics(&h, "both pushes", |text| {
        let sent = sample(text, "dw_push_deliveries_total", &[("outcome", "sent")]);
        let gone = sample(text, "dw_push_deliveries_total", &[("outcome", "gone")]);
        (sent.is_some() && gone.is_some()).then(|| text.to_owned())
    })
    .await;
    let deliveries = |outcome| sample(&text, "dw_push_deliveries_total", &[("outcome", outcome)]);
    assert_eq!(deliveries("sent"), Some(1.0), "{text}");
    assert_eq!(deliveries("gone"), Some(1.0));
    assert_eq!(deliveries("failed"), None);
    let timed = |outcome| sample(&text, "dw_push_request_duration_seconds_count", &[("outcome", outcome)]);
    assert_eq!((timed("sent"), timed("gone")), (Some(1.0), Some(1.0)));
}

#[tokio::test]
async fn webhook_attempts_failures_and_disabled_endpoints_are_counted() {
    let h = start().await;
    let flaky_failures = Arc::new(AtomicUsize::new(1));
    let receiver = axum::Router::new()
        .route(
            "/flaky",
            axum::routing::post(move || {
                let failures = flaky_failures.clone();
                async move {
                    let failing = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                    if failing.is_ok() { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT }
                }
            }),
        )
        .route("/gone", axum::routing::post(|| async { StatusCode::GONE }));
    let base = serve(receiver).await;

    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let mut gone_id = String::new();
    for path in ["flaky", "gone"] {
        let request = pb::CreateWebhookRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            url: format!("{base}/{path}"),
            description: path.into(),
            event_types: vec!["template.sent".into()],
            for_sends: false,
        };
        let created = webhooks.create_webhook(authed(&manager, request)).await.unwrap().into_inner();
        if path == "gone" {
            gone_id = created.webhook.unwrap().webhook_id;
        }
    }

    common::template_sent(&h, "acme").await;

    // flaky: 500 then 204; gone: 410, not retried, and its endpoint is disabled.
    let text = wait_for_metrics(&h, "the retried delivery succeeding", |text| {
        let succeeded = sample(text, "dw_webhook_deliveries_total", &[("outcome", "succeeded")]);
        let disabled = sample(text, "dw_webhook_endpoints_disabled_total", &[("reason", "gone")]);
        (succeeded.is_some() && disabled.is_some()).then(|| text.to_owned())
    })
    .await;
    let deliveries = |outcome| sample(&text, "dw_webhook_deliveries_total", &[("outcome", outcome)]);
    assert_eq!(deliveries("retrying"), Some(1.0), "{text}");
    assert_eq!(deliveries("succeeded"), Some(1.0));
    assert_eq!(deliveries("failed"), Some(1.0));
    assert_eq!(deliveries("gave_up"), None);
    let failures = |reason| sample(&text, "dw_webhook_failures_total", &[("reason", reason)]);
    assert_eq!((failures("http_5xx"), failures("gone")), (Some(1.0), Some(1.0)));
    assert_eq!(sample(&text, "dw_webhook_endpoints_disabled_total", &[("reason", "gone")]), Some(1.0));

    let listed =
        webhooks.list_webhooks(authed(&manager, pb::ListWebhooksRequest::default())).await.unwrap().into_inner();
    let gone = listed.webhooks.iter().find(|w| w.webhook_id == gone_id).unwrap();
    assert!(!gone.enabled, "the 410 endpoint is disabled");
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_once_and_its_delivery_given_up() {
    let h = start().await;
    let receiver = axum::Router::new().route("/down", axum::routing::post(|| async { StatusCode::BAD_GATEWAY }));
    let base = serve(receiver).await;
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let request = pb::CreateWebhookRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        url: format!("{base}/down"),
        description: "down".into(),
        event_types: vec!["template.sent".into()],
        for_sends: false,
    };
    webhooks.create_webhook(authed(&manager, request)).await.unwrap();
    // It has been failing for six days already.
    sqlx::query("UPDATE webhooks SET failing_since = now() - interval '6 days'").execute(&h._db.pool).await.unwrap();

    let message = messaging::Message {
        message_id: uuid::Uuid::now_v7().to_string(),
        template_name: "order_shipped".into(),
        channel: messaging::Channel::Sms as i32,
        recipient_phone: "+5511987654321".into(),
        agent_id: "ana".into(),
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    let event = messaging::MessageRequested { message: Some(message) };
    publish(&h, &h.messaging, "acme", "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;

    // The test schedule retries 7 times 100ms apart: 8 attempts, then the delivery is given up.
    let text = wait_for_metrics(&h, "the delivery given up", |text| {
        let gave_up = sample(text, "dw_webhook_deliveries_total", &[("outcome", "gave_up")]);
        gave_up.is_some().then(|| text.to_owned())
    })
    .await;
    let deliveries = |outcome| sample(&text, "dw_webhook_deliveries_total", &[("outcome", outcome)]);
    assert_eq!((deliveries("retrying"), deliveries("gave_up")), (Some(7.0), Some(1.0)), "{text}");
    assert_eq!(sample(&text, "dw_webhook_failures_total", &[("reason", "http_5xx")]), Some(8.0));
    let disabled = |reason| sample(&text, "dw_webhook_endpoints_disabled_total", &[("reason", reason)]);
    assert_eq!((disabled("failing"), disabled("gone")), (Some(1.0), None), "disabled once, by the first failure");
}

#[tokio::test]
async fn process_metrics_are_on_the_metrics_endpoint() {
    let h = start().await;
    let text = wait_for_metrics(&h, "the process metrics", |text| {
        sample(text, "process_resident_memory_bytes", &[]).is_some().then(|| text.to_owned())
    })
    .await;
    let metric = |name| sample(&text, name, &[]);
    assert!(metric("process_resident_memory_bytes").unwrap_or_default() > 0.0, "{text}");
    assert!(metric("process_virtual_memory_bytes").unwrap_or_default() > 0.0);
    assert!(metric("process_cpu_seconds_total").is_some_and(|seconds| seconds >= 0.0), "{text}");
    assert!(metric("process_open_fds").unwrap_or_default() >= 1.0);
    assert!(metric("process_max_fds").unwrap_or_default() >= metric("process_open_fds").unwrap_or_default());
    assert!(metric("process_threads").unwrap_or_default() >= 1.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = metric("process_start_time_seconds").unwrap_or_default();
    assert!(started > now - 86_400.0 && started <= now + 1.0, "started {started}, now {now}");
    assert!(text.contains("# TYPE process_cpu_seconds counter"), "{text}");
}
