//! What a hostile or careless caller gets from messaging-templates, through the real service:
//! a token without a role reaches nothing, agents need `contacts.view` to see contacts, NUL and
//! control characters and undecodable bodies are `INVALID_ARGUMENT` naming the field and change
//! nothing, and a request id reused with another body is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Setup, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::errors::{reason_of, violated_fields};
use dw_proto::messaging::v1 as pb;
use tonic::Code;

fn contact(name: &str, phone: &str, external_id: &str) -> pb::UpsertContactRequest {
    pb::UpsertContactRequest {
        request_id: rid(),
        name: name.into(),
        phone: phone.into(),
        external_id: external_id.into(),
        tags: vec![],
    }
}

#[tokio::test]
async fn a_token_without_roles_reaches_no_rpc_and_agents_need_contacts_view() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let template = service.template(pb::Channel::Whatsapp, "greeting", "Olá {{1}}").await;
    let crm = token("acme", "crm-bot", Role::Service);
    let jose = service
        .contacts()
        .upsert_contact(authed(&crm, contact("José", "+5511911112222", "")))
        .await
        .unwrap()
        .into_inner();

    let nobody = dw_testkit::token(common::SECRET, "acme", "ana", &[]);
    let send = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone("+5511911113333".into())),
        variables: vec!["Ana".into()],
        ..Default::default()
    };
    let denied = [
        service.templates().send_template(authed(&nobody, send)).await.unwrap_err(),
        service
            .templates()
            .get_template(authed(&nobody, pb::GetTemplateRequest { template_id: template.template_id.clone() }))
            .await
            .unwrap_err(),
        service
            .contacts()
            .search_contacts(authed(&nobody, pb::SearchContactsRequest { name: "jos".into(), ..Default::default() }))
            .await
            .unwrap_err(),
    ];
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some("ROLE_REQUIRED"));
    }

    // An agent sees contacts only with `contacts.view`.
    let ana = token("acme", "ana", Role::Agent);
    let search = pb::SearchContactsRequest { name: "jos".into(), ..Default::default() };
    let get = pb::GetContactRequest { contact_id: jose.contact_id.clone() };
    for status in [
        service.contacts().search_contacts(authed(&ana, search.clone())).await.unwrap_err(),
        service.contacts().get_contact(authed(&ana, get.clone())).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some("PERMISSION_REQUIRED"));
    }
    setup.grant("acme", "ana", "contacts.view").await;
    let mut found = None;
    for _ in 0..400 {
        match service.contacts().search_contacts(authed(&ana, search.clone())).await {
            Ok(response) => {
                found = Some(response.into_inner());
                break;
            }
            Err(status) if status.code() == Code::PermissionDenied => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    assert_eq!(found.expect("the grant arrives").contacts[0].contact_id, jose.contact_id);
    let got = service.contacts().get_contact(authed(&ana, get)).await.unwrap().into_inner();
    assert_eq!(got.name, "José");
    service.stop().await;
}

#[tokio::test]
async fn nul_and_control_characters_and_undecodable_bodies_are_invalid_arguments_that_change_nothing() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let manager = token("acme", "boss", Role::Manager);

    let cases = [
        (contact("Ana", "+5511911114444", "crm\0-1"), "external_id"),
        (contact("Ana\u{1b}[31m", "+5511911114444", ""), "name"),
        (contact("Ana", "+5511911114444\r\n", ""), "phone"),
        (contact("Ana\u{202e}gnp.exe", "+5511911114444", ""), "name"),
    ];
    for (request, field) in cases {
        let status = service.contacts().upsert_contact(authed(&crm, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), [field]);
    }
    let mut tagged = contact("Ana", "+5511911114444", "");
    tagged.tags = vec!["vip".into(), "\0".into()];
    let status = service.contacts().upsert_contact(authed(&crm, tagged)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["tags[1]"]);
    let by_phone = pb::SearchContactsRequest { phone: "+5511911114444".into(), ..Default::default() };
    let none = service.contacts().search_contacts(authed(&crm, by_phone)).await.unwrap().into_inner();
    assert!(none.contacts.is_empty(), "nothing was stored: {none:?}");

    // A search filter with a NUL is refused before it reaches the database.
    let status = service
        .contacts()
        .search_contacts(authed(&crm, pb::SearchContactsRequest { name: "jo\0".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["name".to_owned()]));

    // Template text: free text keeps its new lines; an ESC anywhere is refused.
    let content = |body: &str| pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        body: body.into(),
        ..Default::default()
    };
    let create = |name: &str, body: &str| pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: name.into(),
        content: Some(content(body)),
    };
    let status = service
        .templates()
        .create_template(authed(&manager, create("promo", "Olá\u{1b}]8;;x\u{7}")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["content.body"]);
    let status = service.templates().create_template(authed(&manager, create("pro\nmo", "Olá"))).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["name"]);
    service.templates().create_template(authed(&manager, create("promo", "Olá\n\nAté logo"))).await.unwrap();

    // Bytes that are not a protobuf message of the RPC's type.
    for garbage in [vec![0xff, 0xff, 0xff, 0xff], vec![0x0a, 0x05, b'a'], vec![0x12, 0x02, 0xc3, 0x28]] {
        let status = dw_testkit::rpc::raw_unary(
            service.channel.clone(),
            &crm,
            "/dw.messaging.v1.ContactService/UpsertContact",
            garbage.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage:?}: {status:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_template_cannot_render_past_the_sms_segment_limit_so_no_send_grows_an_event_without_bound() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let manager = token("acme", "boss", Role::Manager);
    let template = service.template(pb::Channel::Sms, "flood", &"{{1}}".repeat(320)).await;
    let huge = vec!["x".repeat(1024)];

    let preview = pb::PreviewTemplateRequest {
        template_id: template.template_id.clone(),
        variables: huge.clone(),
        ..Default::default()
    };
    let preview = service.templates().preview_template(authed(&manager, preview)).await.unwrap().into_inner();
    assert!(preview.sms_segments > 10, "the preview still says how big it would be");
    assert!(
        preview.problems.iter().any(|p| p.field == "variables" && p.description.contains("over the limit of 10")),
        "{:?}",
        preview.problems
    );

    let send = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone("+5511911116666".into())),
        variables: huge,
        ..Default::default()
    };
    let status = service.templates().send_template(authed(&manager, send)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["variables"]);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'dw.messaging.v1.MessageRequested'")
            .fetch_one(&setup.db.pool)
            .await
            .unwrap();
    assert_eq!(events, 0, "nothing was recorded");
    service.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_with_another_body_is_refused_and_the_same_body_gets_the_first_answer() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let first = contact("Ana", "+5511911115555", "");
    let created = service.contacts().upsert_contact(authed(&crm, first.clone())).await.unwrap().into_inner();
    let again = service.contacts().upsert_contact(authed(&crm, first.clone())).await.unwrap().into_inner();
    assert_eq!(again, created, "a retry gets the first answer");

    let mut other = first.clone();
    other.name = "Someone Else".into();
    let status = service.contacts().upsert_contact(authed(&crm, other)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    let get = pb::GetContactRequest { contact_id: created.contact_id.clone() };
    let stored = service.contacts().get_contact(authed(&crm, get)).await.unwrap().into_inner();
    assert_eq!((stored.name.as_str(), stored.version), ("Ana", created.version), "the second body changed nothing");
    service.stop().await;
}

#[tokio::test]
async fn a_client_message_with_nul_and_control_characters_is_kept_without_them_not_refused_forever() {
    use prost::Message as _;
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    service.configure_providers("acme").await;
    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": common::PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Carla\u{0}\u{202e} Dias"}, "wa_id": "5511933334444"}],
            "messages": [{"from": "5511933334444", "id": "wamid.NUL1", "timestamp": "1795500000", "type": "text",
                          "text": {"body": format!("Olá\u{0}\u{1b}[2J\nsocorro{}", "!".repeat(5000))}}]
        }}]}]
    })
    .to_string();
    let signature = messaging_templates::webhooks::sign(common::WHATSAPP_SECRET, payload.as_bytes());
    let response = reqwest::Client::new()
        .post(format!("http://{}/webhooks/whatsapp/acme", setup.webhook_addr))
        .header("X-Hub-Signature-256", signature)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "the provider is not told to retry a message we can never store");
    let payloads = common::opened_payloads(&setup.db.pool, "dw.messaging.v1.InboundMessageReceived").await;
    let event = pb::InboundMessageReceived::decode(payloads[0].as_slice()).unwrap();
    // NUL is marked (U+FFFD); other control and bidi-override characters are dropped.
    assert_eq!(event.contact_name, "Carla\u{FFFD} Dias");
    assert!(
        event.text.starts_with("Olá\u{FFFD}[2J\nsocorro!"),
        "{:?}",
        event.text.chars().take(20).collect::<String>()
    );
    assert_eq!(event.text.chars().count(), messaging_templates::app::inbound::INBOUND_TEXT_MAX);
    service.stop().await;
}
