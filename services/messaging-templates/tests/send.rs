//! Sending templates through fake providers on 127.0.0.1: the exact Cloud API body, retries of
//! 503s, terminal 400s, at most once across a restart, permissions, contacts, SMS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Service, Setup, authed, rid, token};
use dw_auth::Role;
use dw_proto::messaging::v1 as pb;
use tonic::Code;

async fn whatsapp_template(service: &Service) -> pb::Template {
    let manager = token("acme", "boss", Role::Manager);
    let content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        header_kind: pb::HeaderKind::Image as i32,
        body: "Olá {{1}}, seu pedido {{2}} saiu para entrega.".into(),
        footer: "Acme".into(),
        default_metadata: [("source".to_owned(), "workspace".to_owned())].into(),
        ..Default::default()
    };
    let request = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: "order_shipped".into(),
        content: Some(content),
    };
    service.templates().create_template(authed(&manager, request)).await.unwrap().into_inner()
}

fn send_request(template: &pb::Template, phone: &str) -> pb::SendTemplateRequest {
    pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone(phone.into())),
        header_image_url: "https://cdn.example.com/box.png".into(),
        variables: vec!["Maria".into(), "A-42".into()],
        metadata: [("crm_ticket".to_owned(), "T-9".to_owned())].into(),
        additional_information: "sent from the workspace".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_whatsapp_send_reaches_the_provider_with_the_cloud_api_body() {
    dw_testkit::traced();
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = whatsapp_template(&service).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let sent = service.templates().send_template(authed(&crm, send_request(&template, "+5511987654321"))).await;
    let sent = sent.unwrap().into_inner();
    assert_eq!(sent.status, pb::MessageStatus::Requested as i32, "answered before delivery");
    assert_eq!(sent.rendered_body, "Olá Maria, seu pedido A-42 saiu para entrega.");
    assert_eq!(sent.metadata.get("source").map(String::as_str), Some("workspace"), "template defaults merged");

    let dispatched = service.until_status(&sent.message_id, pb::MessageStatus::Dispatched).await;
    assert_eq!(dispatched.provider_message_id, "wamid.fake1");
    let received = setup.whatsapp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v21.0/1055/messages");
    assert_eq!(received[0].authorization, "Bearer wa-token");
    // The provider call is a client span whose context the provider gets.
    let traceparent = received[0].traceparent.as_deref().expect("a traceparent");
    assert!(dw_testkit::traceparent_span_id(traceparent).is_some(), "{traceparent}");
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511987654321",
            "type": "template",
            "template": {
                "name": "order_shipped",
                "language": {"code": "pt_BR"},
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/box.png"}}]},
                    {"type": "body", "parameters": [{"type": "text", "text": "Maria"}, {"type": "text", "text": "A-42"}]}
                ]
            }
        })
    );
    let history: Vec<i32> = dispatched.history.iter().map(|c| c.status).collect();
    assert_eq!(history, [pb::MessageStatus::Requested as i32, pb::MessageStatus::Dispatched as i32]);
    service.stop().await;
}

#[tokio::test]
async fn retryable_failures_are_retried_and_terminal_ones_are_not() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = whatsapp_template(&service).await;
    let crm = token("acme", "crm-bot", Role::Service);

    setup.whatsapp.answer_next(503, r#"{"error":{"message":"Service unavailable","code":2}}"#);
    setup.whatsapp.answer_next(503, r#"{"error":{"message":"Service unavailable","code":2}}"#);
    let first = service.templates().send_template(authed(&crm, send_request(&template, "+5511900000001"))).await;
    let first = first.unwrap().into_inner();
    let dispatched = service.until_status(&first.message_id, pb::MessageStatus::Dispatched).await;
    assert_eq!(setup.whatsapp.received().len(), 3, "two refusals, then accepted");
    assert!(dispatched.history[1].detail.starts_with("3 attempt(s)"), "{:?}", dispatched.history);

    setup.whatsapp.answer_next(
        400,
        r#"{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException","code":131026}}"#,
    );
    let second = service.templates().send_template(authed(&crm, send_request(&template, "+5511900000002"))).await;
    let second = second.unwrap().into_inner();
    let failed = service.until_status(&second.message_id, pb::MessageStatus::Failed).await;
    assert_eq!(setup.whatsapp.received().len(), 4, "one attempt only");
    assert_eq!((failed.failure_code.as_str(), failed.failure_terminal), ("131026", true));
    assert!(failed.failure_reason.contains("undeliverable"));
    service.stop().await;
}

#[tokio::test]
async fn a_send_accepted_before_a_restart_is_delivered_once_after_it() {
    let setup = Setup::new().await;
    // The first instance answers sends but stops before handing anything over.
    let service = setup.start(false).await;
    let template = whatsapp_template(&service).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let request = send_request(&template, "+5511900000003");
    let sent = service.templates().send_template(authed(&crm, request.clone())).await.unwrap().into_inner();
    service.stop().await;
    assert!(setup.whatsapp.received().is_empty());

    let service = setup.start(true).await;
    service.until_status(&sent.message_id, pb::MessageStatus::Dispatched).await;
    // A client retrying the same request gets the same message, and nothing more is sent.
    let retried = service.templates().send_template(authed(&crm, request)).await.unwrap().into_inner();
    assert_eq!(retried.message_id, sent.message_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(setup.whatsapp.received().len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn agents_need_the_channel_permission_and_contacts_lend_their_phone() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = whatsapp_template(&service).await;
    let ana = token("acme", "ana", Role::Agent);
    let status = service.templates().send_template(authed(&ana, send_request(&template, "+5511900000004"))).await;
    assert_eq!(status.unwrap_err().code(), Code::PermissionDenied);

    // agent-sessions grants it: the event reaches this service over JetStream.
    setup.grant("acme", "ana", "templates.whatsapp.send").await;

    let crm = token("acme", "crm-bot", Role::Service);
    let contact = service
        .contacts()
        .upsert_contact(authed(
            &crm,
            pb::UpsertContactRequest {
                request_id: rid(),
                name: "José Lima".into(),
                phone: "+5511977776666".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut by_contact = send_request(&template, "+1");
    by_contact.recipient = Some(pb::send_template_request::Recipient::ContactId(contact.contact_id.clone()));
    let mut sent = None;
    for _ in 0..200 {
        by_contact.request_id = rid();
        match service.templates().send_template(authed(&ana, by_contact.clone())).await {
            Ok(message) => {
                sent = Some(message.into_inner());
                break;
            }
            Err(status) if status.code() == Code::PermissionDenied => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let sent = sent.expect("the grant arrives");
    assert_eq!(
        (sent.recipient_phone.as_str(), sent.contact_id.as_str()),
        ("+5511977776666", contact.contact_id.as_str())
    );
    assert_eq!(sent.agent_id, "ana");

    // Bad input names the field and sends nothing.
    let mut bad = send_request(&template, "+5511900000005");
    bad.variables = vec!["only one".into()];
    let status = service.templates().send_template(authed(&crm, bad)).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["variables"]);
    let mut bad = send_request(&template, "5511");
    bad.request_id = rid();
    let status = service.templates().send_template(authed(&crm, bad)).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["phone"]);
    service.stop().await;
}

#[tokio::test]
async fn an_sms_send_uses_the_messages_api() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Authentication as i32,
        body: "Seu codigo: {{1}}".into(),
        ..Default::default()
    };
    let template = service
        .templates()
        .create_template(authed(
            &manager,
            pb::CreateTemplateRequest {
                request_id: rid(),
                channel: pb::Channel::Sms as i32,
                name: "code".into(),
                content: Some(content),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id,
        recipient: Some(pb::send_template_request::Recipient::Phone("+5511955554444".into())),
        variables: vec!["123456".into()],
        ..Default::default()
    };
    let sent = service.templates().send_template(authed(&manager, request)).await.unwrap().into_inner();
    let dispatched = service.until_status(&sent.message_id, pb::MessageStatus::Dispatched).await;
    assert!(dispatched.provider_message_id.starts_with("SM"));
    let received = setup.sms.received();
    assert_eq!(received[0].path, "/2010-04-01/Accounts/AC123/Messages.json");
    assert!(received[0].authorization.starts_with("Basic "));
    assert_eq!(received[0].body, "To=%2B5511955554444&From=%2B15550001111&Body=Seu+codigo%3A+123456");
    service.stop().await;
}

#[tokio::test]
async fn archived_templates_and_unknown_contacts_cannot_be_sent() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = whatsapp_template(&service).await;
    let manager = token("acme", "boss", Role::Manager);
    service
        .templates()
        .archive_template(authed(
            &manager,
            pb::ArchiveTemplateRequest { request_id: rid(), template_id: template.template_id.clone() },
        ))
        .await
        .unwrap();
    let status = service
        .templates()
        .send_template(authed(&manager, send_request(&template, "+5511900000006")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(dw_grpc_kit::errors::reason_of(&status).as_deref(), Some("TEMPLATE_ARCHIVED"));

    let live = service
        .templates()
        .create_template(authed(
            &manager,
            pb::CreateTemplateRequest {
                request_id: rid(),
                channel: pb::Channel::Whatsapp as i32,
                name: "order_shipped".into(),
                content: Some(pb::TemplateContent {
                    language: "pt_BR".into(),
                    category: pb::TemplateCategory::Utility as i32,
                    body: "Oi {{1}} {{2}}".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut unknown = send_request(&live, "+1");
    unknown.header_image_url = String::new();
    unknown.recipient = Some(pb::send_template_request::Recipient::ContactId(uuid::Uuid::now_v7().to_string()));
    let status = service.templates().send_template(authed(&manager, unknown)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let mut with_image = send_request(&live, "+5511900000007");
    with_image.request_id = rid();
    let status = service.templates().send_template(authed(&manager, with_image)).await.unwrap_err();
    assert_eq!(
        dw_grpc_kit::errors::violated_fields(&status),
        vec!["header_image_url"],
        "the template has no image header"
    );
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&setup.db.pool).await.unwrap();
    assert_eq!(messages, 0);
    service.stop().await;
}

#[tokio::test]
async fn a_tenant_whose_messages_pile_up_is_refused_sends_until_the_dispatcher_catches_up() {
    use sqlx::Row;
    use tonic_types::StatusExt;
    let mut setup = Setup::new().await;
    setup.send_backlog_limit = 3;
    // Nothing is handed over: acme's backlog only grows.
    let service = setup.start(false).await;
    let template = whatsapp_template(&service).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let mut accepted = Vec::new();
    for n in 0..3 {
        let request = send_request(&template, &format!("+551190000010{n}"));
        accepted.push(service.templates().send_template(authed(&crm, request)).await.unwrap().into_inner().message_id);
    }
    let waiting = send_request(&template, "+5511900000109");
    let refused = service.templates().send_template(authed(&crm, waiting.clone())).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(dw_grpc_kit::errors::reason_of(&refused).as_deref(), Some("SEND_BACKLOG_FULL"));
    let retry = refused.get_details_retry_info().and_then(|info| info.retry_delay).expect("RetryInfo");
    assert!(retry > Duration::ZERO, "{retry:?}");
    // The refusal recorded nothing.
    let messages: i64 = sqlx::query("SELECT count(*) AS n FROM messages WHERE tenant_id = 'acme'")
        .fetch_one(&setup.db.pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(messages, 3);
    // SREs see it.
    let text = dw_testkit::metrics::scrape(service.metrics_addr).await.unwrap();
    let refused = dw_testkit::metrics::sample(&text, "dw_send_backlog_refused_total", &[("tenant", "acme")]);
    assert_eq!(refused, Some(1.0), "{text}");

    // Another tenant's sends are not held by acme's backlog.
    let globex_manager = token("globex", "boss", Role::Manager);
    let content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        body: "Olá {{1}}".into(),
        ..Default::default()
    };
    let create = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: "hello".into(),
        content: Some(content),
    };
    let globex_template =
        service.templates().create_template(authed(&globex_manager, create)).await.unwrap().into_inner();
    let globex = token("globex", "crm-bot", Role::Service);
    let request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: globex_template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone("+5511900000201".into())),
        variables: vec!["Bia".into()],
        ..Default::default()
    };
    service.templates().send_template(authed(&globex, request)).await.unwrap();
    service.stop().await;

    // Once the dispatcher has handed acme's messages over, the refused request goes through.
    let service = setup.start(true).await;
    for id in &accepted {
        service.until_status(id, pb::MessageStatus::Dispatched).await;
    }
    let sent = service.templates().send_template(authed(&crm, waiting)).await.unwrap().into_inner();
    service.until_status(&sent.message_id, pb::MessageStatus::Dispatched).await;
    service.stop().await;
}
