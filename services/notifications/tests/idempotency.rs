//! Every mutation of notifications is idempotent by `request_id`: a retry gets the first
//! answer back and has no second effect; the id cannot be reused for another call.

mod common;

use common::{authed, start, token};
use dw_auth::Role;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_proto::notifications::v1::webhook_service_client::WebhookServiceClient;
use tonic::Code;

fn create(request_id: &str, url: &str) -> pb::CreateWebhookRequest {
    pb::CreateWebhookRequest {
        request_id: request_id.into(),
        url: url.into(),
        description: "CRM automation".into(),
        event_types: vec!["template.sent".into()],
        for_sends: false,
    }
}

#[tokio::test]
async fn a_retried_mutation_has_one_effect_and_returns_the_first_answer() {
    let h = start().await;
    let manager = token("acme", "boss", Role::Manager);
    let mut webhooks = WebhookServiceClient::new(h.channel.clone());
    let url = "http://127.0.0.1:9/hook";

    let first = webhooks.create_webhook(authed(&manager, create("create-1", url))).await.unwrap().into_inner();
    let retried = webhooks.create_webhook(authed(&manager, create("create-1", url))).await.unwrap().into_inner();
    assert_eq!(retried, first, "the retry answers with the first response, secret included");
    let listed = webhooks
        .list_webhooks(authed(&manager, pb::ListWebhooksRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert_eq!(listed.len(), 1, "two requests with one request_id made one webhook");

    // Another tenant's manager with the same request id makes their own webhook.
    let other = token("globex", "boss", Role::Manager);
    let theirs = webhooks.create_webhook(authed(&other, create("create-1", url))).await.unwrap().into_inner();
    assert_ne!(theirs.webhook.as_ref().map(|w| &w.webhook_id), first.webhook.as_ref().map(|w| &w.webhook_id));

    // Rotating twice under one id rotates once.
    let webhook_id = first.webhook.as_ref().map(|w| w.webhook_id.clone()).unwrap_or_default();
    let rotate = || pb::RotateWebhookSecretRequest { request_id: "rotate-1".into(), webhook_id: webhook_id.clone() };
    let rotated = webhooks.rotate_webhook_secret(authed(&manager, rotate())).await.unwrap().into_inner();
    let again = webhooks.rotate_webhook_secret(authed(&manager, rotate())).await.unwrap().into_inner();
    assert_ne!(rotated.secret, first.secret);
    assert_eq!(again.secret, rotated.secret, "a retried rotation keeps the secret the first one made");

    // The same request id for another call is refused and changes nothing.
    let delete = pb::DeleteWebhookRequest { request_id: "rotate-1".into(), webhook_id: webhook_id.clone() };
    let reused = webhooks.delete_webhook(authed(&manager, delete)).await.unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(dw_grpc_kit::errors::reason_of(&reused).as_deref(), Some("REQUEST_ID_REUSED"));
    let still = webhooks
        .list_webhooks(authed(&manager, pb::ListWebhooksRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert!(still.iter().all(|w| w.enabled), "the refused delete changed nothing");

    // A mutation without a request id is refused.
    let missing = webhooks.create_webhook(authed(&manager, create("", url))).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&missing), vec!["request_id"]);

    // Browser subscriptions: a retried disable answers what the first one did.
    let agent = token("acme", "ana", Role::Agent);
    let mut notifications = NotificationServiceClient::new(h.channel.clone());
    let disable = || pb::DisableBrowserNotificationsRequest {
        request_id: "disable-1".into(),
        endpoint: "https://push.example.com/send/abc".into(),
    };
    let first = notifications.disable_browser_notifications(authed(&agent, disable())).await.unwrap().into_inner();
    let retried = notifications.disable_browser_notifications(authed(&agent, disable())).await.unwrap().into_inner();
    assert_eq!(first, retried);
}
