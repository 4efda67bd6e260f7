//! Outbound HTTP (webhooks, Web Push) goes to public addresses only: a non-public destination is
//! refused when it is registered (INVALID_ARGUMENT naming the field), and a stored one that
//! predates the rule is refused at delivery (a failed, recorded attempt; nothing is sent). The
//! harness allow-lists `127.0.0.1` as written, so a local receiver is reachable only through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{FakeReceiver, authed, eventually, publish, start, template_sent, token};
use dw_auth::Role;
use dw_grpc_kit::errors::violated_fields;
use dw_proto::distribution::v1 as distribution;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use prost::Message;
use tonic::Code;

/// IP literals that are not public, each written so that a rule on the text alone would miss it;
/// the last one is the local receiver's own port on IPv4 loopback, reached through IPv4-mapped IPv6.
fn non_public_urls(port: u16) -> Vec<String> {
    vec![
        "http://[::ffff:169.254.169.254]/x".to_owned(),
        "http://[::ffff:10.0.0.1]/x".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/x".to_owned(),
        "http://0.1.2.3/x".to_owned(),
        "http://100.64.0.1/x".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
    ]
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_webhook_refuses_non_public_addresses_on_the_url_field_and_creates_nothing() {
    let h = start().await;
    let receiver = FakeReceiver::default();
    let port = port_of(&receiver.start().await);
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());

    for url in non_public_urls(port) {
        let request = pb::CreateWebhookRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            url: url.clone(),
            description: String::new(),
            event_types: vec!["template.sent".into()],
            for_sends: false,
        };
        let refused = webhooks.create_webhook(authed(&manager, request)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}: {refused:?}");
        assert_eq!(violated_fields(&refused), vec!["url"], "{url}");
    }

    let listed =
        webhooks.list_webhooks(authed(&manager, pb::ListWebhooksRequest::default())).await.unwrap().into_inner();
    assert!(listed.webhooks.is_empty(), "nothing was created: {:?}", listed.webhooks);
}

#[tokio::test]
async fn a_stored_webhook_on_a_non_public_address_gets_no_post_and_its_delivery_fails_as_refused() {
    let h = start().await;
    let receiver = FakeReceiver::default();
    let address = receiver.start().await;
    // Rows from before the rule; `localhost` is a name (resolved at connect time), not allow-listed.
    let mut urls = non_public_urls(port_of(&address));
    urls.push(format!("http://localhost:{}/x", port_of(&address)));
    let secret = notifications::domain::webhook::secret_from_key(&[7; 24]);
    let mut webhook_ids = Vec::new();
    for url in &urls {
        let webhook_id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhooks (tenant_id, webhook_id, url, description, event_types, secret) \
             VALUES ('acme', $1, $2, '', ARRAY['template.sent'], $3)",
        )
        .bind(webhook_id)
        .bind(url)
        .bind(&secret)
        .execute(&h._db.pool)
        .await
        .unwrap();
        webhook_ids.push(webhook_id.to_string());
    }

    template_sent(&h, "acme").await;

    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    for (url, webhook_id) in urls.iter().zip(&webhook_ids) {
        let delivery = eventually(&format!("the delivery to {url} recorded"), async || {
            let request = pb::ListDeliveriesRequest { webhook_id: webhook_id.clone(), ..Default::default() };
            let listed = webhooks.list_deliveries(authed(&manager, request)).await.unwrap().into_inner();
            listed.deliveries.into_iter().find(|d| !d.attempts.is_empty())
        })
        .await;
        assert_eq!(delivery.status, "failed", "{url}: not retried: {:?}", delivery.attempts);
        let attempt = &delivery.attempts[0];
        assert_eq!(attempt.status_code, 0, "{url}");
        assert!(attempt.error.starts_with("refused: "), "{url}: {}", attempt.error);
        assert!(attempt.error.contains("not a public address"), "{url}: {}", attempt.error);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 0, "the local receiver got no POST");
}

fn browser_keys() -> (String, String) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let browser = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    (URL_SAFE_NO_PAD.encode(browser.public_key().to_sec1_bytes()), URL_SAFE_NO_PAD.encode(*b"0123456789abcdef"))
}

#[tokio::test]
async fn enable_browser_notifications_refuses_non_public_endpoints_on_the_endpoint_field() {
    let h = start().await;
    let ana = token("acme", "ana", Role::Agent);
    let mut client = NotificationServiceClient::new(h.channel.clone());
    let (p256dh, auth) = browser_keys();
    for endpoint in
        ["https://[::ffff:10.0.0.1]/push/x", "https://100.64.0.1/push/x", "https://[64:ff9b::a9fe:a9fe]/push/x"]
    {
        let request = pb::EnableBrowserNotificationsRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            endpoint: endpoint.into(),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        };
        let refused = client.enable_browser_notifications(authed(&ana, request)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{endpoint}: {refused:?}");
        assert_eq!(violated_fields(&refused), vec!["endpoint"], "{endpoint}");
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM push_subscriptions").fetch_one(&h._db.pool).await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_stored_push_subscription_on_a_non_public_address_gets_no_push_and_its_job_fails() {
    let h = start().await;
    let receiver = FakeReceiver::default();
    let address = receiver.start().await;
    let (p256dh, auth) = browser_keys();
    let endpoint = format!("http://[::ffff:127.0.0.1]:{}/push/x", port_of(&address));
    sqlx::query(
        "INSERT INTO push_subscriptions (tenant_id, agent_id, endpoint, p256dh, auth) VALUES ('acme', 'ana', $1, $2, $3)",
    )
    .bind(&endpoint)
    .bind(&p256dh)
    .bind(&auth)
    .execute(&h._db.pool)
    .await
    .unwrap();

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

    let status = eventually("the push job settled", async || {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM push_jobs WHERE status <> 'pending'")
            .fetch_optional(&h._db.pool)
            .await
            .unwrap();
        status
    })
    .await;
    assert_eq!(status, "failed", "refused, not retried");
    let text = common::wait_for_metrics(&h, "the refused push counted", |text| {
        dw_testkit::metrics::sample(text, "dw_push_deliveries_total", &[("outcome", "refused")])
    })
    .await;
    assert_eq!(text, 1.0);
    assert_eq!(receiver.count(), 0, "the local push service got nothing");
}
