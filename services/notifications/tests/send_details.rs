//! A send's log entry carries what the send carried (contact, header, metadata, additional
//! information, webhook, provider id), so callers need no `GetMessage`; and its status history
//! under the name messaging-templates uses (`history`), beside the deprecated `timeline`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Harness, authed, eventually, publish, start, token};
use dw_auth::Role;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;

/// Publishes one of messaging's events for tenant acme, as messaging-templates does.
async fn publish_event<E: prost::Name>(h: &Harness, subject: &str, event: E) {
    publish(h, &h.messaging, "acme", subject, &E::full_name(), event.encode_to_vec()).await;
}

async fn get(h: &Harness, bearer: &str, message_id: &str) -> Result<pb::SingleNotification, tonic::Status> {
    let request = pb::GetNotificationRequest { message_id: message_id.into() };
    let mut client = NotificationServiceClient::new(h.channel.clone());
    client.get_notification(authed(bearer, request)).await.map(|r| r.into_inner())
}

async fn list(h: &Harness, bearer: &str) -> pb::ListNotificationsResponse {
    let mut client = NotificationServiceClient::new(h.channel.clone());
    client.list_notifications(authed(bearer, pb::ListNotificationsRequest::default())).await.unwrap().into_inner()
}

fn metadata() -> BTreeMap<String, String> {
    [("order".to_owned(), "A-1234".to_owned()), ("crm_case".to_owned(), "98765".to_owned())].into()
}

#[tokio::test]
async fn a_sends_entry_carries_what_the_send_carried_and_one_history() {
    let h = start().await;
    let manager = token("acme", "boss", Role::Manager);
    let message_id = uuid::Uuid::now_v7().to_string();
    let message = messaging::Message {
        message_id: message_id.clone(),
        template_id: uuid::Uuid::now_v7().to_string(),
        template_name: "order_shipped".into(),
        channel: messaging::Channel::Whatsapp as i32,
        recipient_phone: "+5511987654321".into(),
        contact_id: "0196-contact-jose".into(),
        rendered_header: "Seu pedido".into(),
        header_image_url: "https://cdn.example.com/order.png".into(),
        rendered_body: "Olá José, seu pedido A-1234 saiu.".into(),
        variables: vec!["José".into(), "A-1234".into()],
        webhook_url: "https://automation.example.com/hooks/sent".into(),
        metadata: metadata(),
        additional_information: "cliente pediu entrega à tarde".into(),
        agent_id: "ana".into(),
        status: messaging::MessageStatus::Requested as i32,
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    publish_event(&h, "message.requested", messaging::MessageRequested { message: Some(message) }).await;
    let dispatched = messaging::MessageDispatched {
        message_id: message_id.clone(),
        provider_message_id: "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA".into(),
        attempts: 1,
        dispatched_at: None,
    };
    publish_event(&h, "message.dispatched", dispatched).await;
    let delivered = messaging::MessageDelivered { message_id: message_id.clone(), delivered_at: None };
    publish_event(&h, "message.delivered", delivered).await;

    let entry = eventually("the delivered send", async || {
        let entry = get(&h, &manager, &message_id).await.ok()?;
        (entry.status == messaging::MessageStatus::Delivered as i32).then_some(entry)
    })
    .await;
    let listed = list(&h, &manager).await;
    assert_eq!(listed.notifications, std::slice::from_ref(&entry), "the list shows the same entry as GetNotification");

    assert_eq!(entry.contact_id, "0196-contact-jose");
    assert_eq!(entry.rendered_header, "Seu pedido");
    assert_eq!(entry.header_image_url, "https://cdn.example.com/order.png");
    assert_eq!(entry.metadata, metadata());
    assert_eq!(entry.additional_information, "cliente pediu entrega à tarde");
    assert_eq!(entry.webhook_url, "https://automation.example.com/hooks/sent");
    assert_eq!(entry.provider_message_id, "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA");

    let statuses: Vec<i32> = entry.history.iter().map(|change| change.status).collect();
    assert_eq!(
        statuses,
        [
            messaging::MessageStatus::Requested as i32,
            messaging::MessageStatus::Dispatched as i32,
            messaging::MessageStatus::Delivered as i32,
        ]
    );
    assert!(entry.history[1].detail.contains("wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA"), "{:?}", entry.history);
    assert_eq!(entry.history, entry.timeline, "the deprecated name carries the same list");
}

#[tokio::test]
async fn a_send_logged_before_the_new_fields_reads_with_empty_values() {
    let h = start().await;
    let manager = token("acme", "boss", Role::Manager);
    let message_id = uuid::Uuid::now_v7();
    // A row as the projection wrote it before the migration: only the original columns.
    sqlx::query(
        "INSERT INTO single_notifications (tenant_id, message_id, channel, status, template_id, template_name, \
             agent_id, recipient_phone, rendered_body, timeline, requested_at, updated_at) \
         VALUES ('acme', $1, 'sms', 'requested', 'tpl', 'code_notice', 'ana', '+5511955554444', 'Codigo 1', \
             jsonb_build_array(jsonb_build_object('status', 'requested', 'at', now(), 'detail', '')), now(), now())",
    )
    .bind(message_id)
    .execute(&h._db.pool)
    .await
    .unwrap();

    let entry = get(&h, &manager, &message_id.to_string()).await.unwrap();
    assert_eq!(entry.template_name, "code_notice");
    let added = (
        entry.contact_id.as_str(),
        entry.rendered_header.as_str(),
        entry.header_image_url.as_str(),
        entry.additional_information.as_str(),
        entry.webhook_url.as_str(),
        entry.provider_message_id.as_str(),
    );
    assert_eq!(added, ("", "", "", "", "", ""));
    assert!(entry.metadata.is_empty());
    assert_eq!(entry.history.len(), 1);
    assert_eq!(entry.history, entry.timeline);
}
