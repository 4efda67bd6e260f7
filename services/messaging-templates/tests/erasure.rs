//! Erasing a client's personal data (`EraseClientData`, crypto-shredding): the contact, the
//! messages sent to the client and those they wrote are stored sealed with the client's key;
//! after the erasure their name, phone, texts and variables appear nowhere in the tenant's data
//! (read models, snapshots, stored responses, the event log as `ReadEvents` gives it), while
//! statuses, timings and counts stay; other clients and other tenants keep theirs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Service, Setup, authed, rid, token};
use dw_auth::Role;
use dw_eventstore::{EventMetadata, NewEvent};
use dw_grpc_kit::errors::{reason_of, violated_fields};
use dw_ids::TenantId;
use dw_proto::eventlog::v1::event_log_service_client::EventLogServiceClient;
use dw_proto::messaging::v1 as pb;
use tonic::Code;

const PHONE: &str = "+5511933332222";
const NAME: &str = "Carla Dias";
const WORDS: &str = "Meu CPF é 123.456.789-00";
const VARIABLE: &str = "Carla-segredo";

async fn upsert(service: &Service, tenant: &str, name: &str, phone: &str) -> pb::Contact {
    let crm = token(tenant, "crm-bot", Role::Service);
    let request = pb::UpsertContactRequest {
        request_id: rid(),
        name: name.into(),
        phone: phone.into(),
        external_id: format!("crm-{name}"),
        ..Default::default()
    };
    service.contacts().upsert_contact(authed(&crm, request)).await.unwrap().into_inner()
}

async fn client_writes(setup: &Setup, wamid: &str, text: &str) {
    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": common::PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": NAME}, "wa_id": PHONE.trim_start_matches('+')}],
            "messages": [{"from": PHONE.trim_start_matches('+'), "id": wamid, "timestamp": "1795500000", "type": "text", "text": {"body": text}}]
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
    assert_eq!(response.status().as_u16(), 200);
}

/// A client message as a release before sealing stored it: every field in the clear.
async fn legacy_inbound(setup: &Setup, phone: &str, text: &str, label: &str) -> String {
    let message_id = uuid::Uuid::now_v7().to_string();
    let event = pb::InboundMessageReceived {
        message_id: message_id.clone(),
        contact_name: NAME.into(),
        phone: phone.into(),
        channel: pb::Channel::Whatsapp as i32,
        text: text.into(),
        provider_message_id: format!("wamid.{label}-{message_id}"),
        received_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    let tenant = TenantId::parse("acme").unwrap();
    let stream = format!("inbound:acme:whatsapp:wamid.{label}-{message_id}");
    let mut tx = setup.db.pool.begin().await.unwrap();
    let new = NewEvent::of("inbound.received", &event);
    dw_eventstore::store::append(&mut tx, &tenant, &stream, 0, vec![new], None, &EventMetadata::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    message_id
}

fn erase_request(request_id: &str, phone: &str, reason: &str) -> pb::EraseClientDataRequest {
    pb::EraseClientDataRequest { request_id: request_id.into(), phone: phone.into(), reason: reason.into() }
}

/// How many rows of the tenant's data hold `needle` (bytes or text), table by table.
async fn rows_holding(setup: &Setup, needle: &str) -> Vec<(String, i64)> {
    let checks = [
        (
            "events",
            "SELECT count(*) FROM events WHERE tenant_id = 'acme' AND position($1 IN payload) > 0 \
                    AND stream_id NOT LIKE 'inbound:acme:whatsapp:wamid.other%'",
        ),
        (
            "streams",
            "SELECT count(*) FROM streams WHERE tenant_id = 'acme' AND snapshot::text LIKE '%' || convert_from($1, 'UTF8') || '%'",
        ),
        (
            "contacts",
            "SELECT count(*) FROM contacts WHERE tenant_id = 'acme' AND (name || phone || coalesce(external_id, '')) LIKE '%' || convert_from($1, 'UTF8') || '%'",
        ),
        (
            "messages",
            "SELECT count(*) FROM messages WHERE tenant_id = 'acme' AND (recipient || state::text) LIKE '%' || convert_from($1, 'UTF8') || '%'",
        ),
        (
            "idempotency_keys",
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = 'acme' AND position($1 IN response) > 0",
        ),
    ];
    let mut found = Vec::new();
    for (table, sql) in checks {
        let count: i64 = sqlx::query_scalar(sql).bind(needle.as_bytes()).fetch_one(&setup.db.pool).await.unwrap();
        if count > 0 {
            found.push((table.to_owned(), count));
        }
    }
    found
}

/// Every event of the tenant as `ReadEvents` gives it, decoded as the contract's.
async fn read_log(service: &Service, tenant: &str) -> Vec<pb::Event> {
    let manager = token(tenant, "boss", Role::Manager);
    let request = dw_proto::eventlog::v1::ReadEventsRequest { page_size: 1000, ..Default::default() };
    let page =
        EventLogServiceClient::new(service.channel.clone()).read_events(authed(&manager, request)).await.unwrap();
    page.into_inner().events.iter().filter_map(|e| pb::Event::decode(&e.event_type, &e.payload).unwrap()).collect()
}

#[tokio::test]
async fn an_erased_client_appears_nowhere_while_their_messages_statuses_and_counts_stay() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let template = service.template(pb::Channel::Whatsapp, "hello", "Oi {{1}}").await;
    let carla = upsert(&service, "acme", NAME, PHONE).await;
    let bruno = upsert(&service, "acme", "Bruno Lima", "+5511944445555").await;
    let elsewhere = upsert(&service, "globex", NAME, PHONE).await;

    let manager = token("acme", "boss", Role::Manager);
    let send_request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::ContactId(carla.contact_id.clone())),
        variables: vec![VARIABLE.into()],
        additional_information: "cliente VIP".into(),
        ..Default::default()
    };
    let sent = service.templates().send_template(authed(&manager, send_request.clone())).await.unwrap().into_inner();
    assert_eq!(sent.recipient_phone, PHONE);
    let dispatched = service.until(&sent.message_id, |m| !m.provider_message_id.is_empty()).await;
    client_writes(&setup, "wamid.IN-1", WORDS).await;

    // Stored, the client's fields are sealed: the raw store holds neither name, phone nor words;
    // the log as ReadEvents gives it opens them.
    for needle in [NAME, PHONE, WORDS, VARIABLE] {
        let holding = rows_holding(&setup, needle).await;
        assert!(holding.iter().all(|(table, _)| table != "events"), "{needle} in the clear: {holding:?}");
    }
    let log = read_log(&service, "acme").await;
    assert!(
        log.iter().any(|e| matches!(e, pb::Event::InboundMessageReceived(m) if m.text == WORDS && m.phone == PHONE))
    );
    assert!(log.iter().any(|e| matches!(e, pb::Event::ContactUpserted(c) if c.contact.as_ref().unwrap().name == NAME)));

    // Events of older releases hold the client in the clear; one of a longer number that starts
    // with the client's is another client.
    let legacy = legacy_inbound(&setup, PHONE, WORDS, "legacy").await;
    legacy_inbound(&setup, "+55119333322221", "sou outro cliente", "other").await;

    // Refused: an agent, a malformed phone, no reason; nothing changes.
    let agent = token("acme", "ana", Role::Agent);
    let denied =
        service.contacts().erase_client_data(authed(&agent, erase_request(&rid(), PHONE, "LGPD"))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    for (phone, reason, field) in
        [("5511933332222", "LGPD", "phone"), (PHONE, " ", "reason"), (PHONE, "a\u{7}b", "reason")]
    {
        let status = service
            .contacts()
            .erase_client_data(authed(&manager, erase_request(&rid(), phone, reason)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{status:?}");
    }
    let get = pb::GetContactRequest { contact_id: carla.contact_id.clone() };
    assert_eq!(service.contacts().get_contact(authed(&manager, get.clone())).await.unwrap().into_inner().name, NAME);

    // The erasure, repeated with its request id (the first answer), then with another body (refused).
    let request_id = rid();
    let erased = service
        .contacts()
        .erase_client_data(authed(&manager, erase_request(&request_id, PHONE, "LGPD request 118")))
        .await
        .unwrap()
        .into_inner();
    assert!(erased.contact_erased);
    assert_eq!((erased.messages_erased, erased.inbound_erased), (1, 2), "{erased:?}");
    let again = service
        .contacts()
        .erase_client_data(authed(&manager, erase_request(&request_id, PHONE, "LGPD request 118")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, erased);
    let reused = service
        .contacts()
        .erase_client_data(authed(&manager, erase_request(&request_id, "+5511944445555", "LGPD request 118")))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&reused).as_deref(), Some("REQUEST_ID_REUSED"), "{reused:?}");

    // Nowhere in the tenant's data.
    for needle in [NAME, PHONE, WORDS, VARIABLE, "cliente VIP", "crm-Carla"] {
        assert_eq!(rows_holding(&setup, needle).await, vec![], "{needle} is still kept");
    }
    // Not found by the API either.
    let status = service.contacts().get_contact(authed(&manager, get)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let search = pb::SearchContactsRequest { phone: PHONE.into(), ..Default::default() };
    let found = service.contacts().search_contacts(authed(&manager, search)).await.unwrap().into_inner();
    assert!(found.contacts.is_empty(), "{found:?}");
    let search = pb::SearchContactsRequest { name: "Carla".into(), ..Default::default() };
    let found = service.contacts().search_contacts(authed(&manager, search)).await.unwrap().into_inner();
    assert!(found.contacts.is_empty(), "{found:?}");

    // The message stays, without the client: status, history, template and sender remain.
    let message = service.message(&sent.message_id).await;
    assert_eq!(
        (message.recipient_phone.as_str(), message.rendered_body.as_str(), message.variables.len()),
        ("", "", 0)
    );
    assert!(message.additional_information.is_empty());
    assert_eq!(message.status, dispatched.status);
    assert_eq!(message.history.len(), dispatched.history.len());
    assert_eq!((message.template_name.as_str(), message.agent_id.as_str()), ("hello", "boss"));
    // A retry of the send answers the first answer, without the client.
    let replayed = service.templates().send_template(authed(&manager, send_request)).await.unwrap().into_inner();
    assert_eq!((replayed.message_id.as_str(), replayed.recipient_phone.as_str()), (sent.message_id.as_str(), ""));

    // The log as ReadEvents gives it: the client's fields read as erased, everything else stays.
    let log = read_log(&service, "acme").await;
    let inbound: Vec<&pb::InboundMessageReceived> = log
        .iter()
        .filter_map(|e| match e {
            pb::Event::InboundMessageReceived(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(inbound.len(), 3);
    for m in &inbound {
        if m.phone == "+55119333322221" {
            assert_eq!(m.text, "sou outro cliente", "another client's message stays");
        } else {
            assert_eq!((m.phone.as_str(), m.contact_name.as_str(), m.text.as_str()), ("", "", ""), "{m:?}");
            assert!(!m.message_id.is_empty() && m.received_at.is_some());
        }
    }
    assert!(inbound.iter().any(|m| m.message_id == legacy));
    let contacts: Vec<pb::Contact> = log
        .iter()
        .filter_map(|e| match e {
            pb::Event::ContactUpserted(c) => c.contact.clone(),
            _ => None,
        })
        .collect();
    assert!(contacts.iter().any(|c| c.contact_id == carla.contact_id && c.name.is_empty() && c.phone.is_empty()));
    assert!(contacts.iter().any(|c| c.contact_id == bruno.contact_id && c.name == "Bruno Lima"));
    let erasure = log
        .iter()
        .find_map(|e| match e {
            pb::Event::ClientDataErased(m) => Some(m.clone()),
            _ => None,
        })
        .expect("the erasure is an event");
    assert_eq!(erasure.contact_id, carla.contact_id);
    assert_eq!(erasure.message_ids, vec![sent.message_id.clone()]);
    assert_eq!(erasure.inbound_message_ids.len(), 2);
    assert_eq!((erasure.reason.as_str(), erasure.erased_by.as_str()), ("LGPD request 118", "boss"));

    // Other clients and the other tenant's client with the same phone keep theirs.
    let get = pb::GetContactRequest { contact_id: bruno.contact_id.clone() };
    assert_eq!(service.contacts().get_contact(authed(&manager, get)).await.unwrap().into_inner().name, "Bruno Lima");
    let globex = token("globex", "boss", Role::Manager);
    let get = pb::GetContactRequest { contact_id: elsewhere.contact_id.clone() };
    let kept = service.contacts().get_contact(authed(&globex, get)).await.unwrap().into_inner();
    assert_eq!((kept.name.as_str(), kept.phone.as_str()), (NAME, PHONE));
    let log = read_log(&service, "globex").await;
    assert!(log.iter().any(|e| matches!(e, pb::Event::ContactUpserted(c) if c.contact.as_ref().unwrap().name == NAME)));

    // The client comes back later: a new contact, under a new key, readable again.
    let back = upsert(&service, "acme", NAME, PHONE).await;
    assert_ne!(back.contact_id, carla.contact_id);
    let log = read_log(&service, "acme").await;
    assert!(log.iter().any(
        |e| matches!(e, pb::Event::ContactUpserted(c) if c.contact.as_ref().unwrap().contact_id == back.contact_id && c.contact.as_ref().unwrap().name == NAME)
    ));
    service.stop().await;
}
