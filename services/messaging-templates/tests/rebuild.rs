//! `messaging-templates projections rebuild templates|contacts|messages`: tables damaged on
//! purpose come back as the event store says (templates updated and archived, contacts renamed,
//! SMS opt-outs and opt-ins, sends with their statuses, an erased client still erased), while the
//! service keeps answering from the live tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ACCOUNT_SID, SMS_SECRET, Service, authed, rid, token};
use dw_auth::Role;
use dw_eventstore::rebuild::{ReadModel, rebuild};
use dw_proto::messaging::v1 as pb;
use messaging_templates::projections::rebuild::{ContactsModel, MessagesModel, TemplatesModel};
use sqlx::Row;

/// Every row of `tables`, as JSON text, sorted.
async fn dump(pool: &sqlx::PgPool, tables: &[&str]) -> Vec<String> {
    let mut rows = Vec::new();
    for table in tables {
        let sql = format!("SELECT '{table} ' || to_jsonb(t)::text AS row FROM {table} t ORDER BY 1");
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap() {
            rows.push(row.get::<String, _>("row"));
        }
    }
    rows
}

async fn upsert(service: &Service, name: &str, phone: &str) -> pb::Contact {
    let crm = token("acme", "crm-bot", Role::Service);
    let request = pb::UpsertContactRequest {
        request_id: rid(),
        name: name.into(),
        phone: phone.into(),
        tags: vec!["vip".into()],
        ..Default::default()
    };
    service.contacts().upsert_contact(authed(&crm, request)).await.unwrap().into_inner()
}

async fn send(service: &Service, template: &pb::Template, phone: &str) -> pb::Message {
    let manager = token("acme", "boss", Role::Manager);
    let request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone(phone.into())),
        variables: vec!["Ana".into()],
        additional_information: "pedido 7".into(),
        ..Default::default()
    };
    service.templates().send_template(authed(&manager, request)).await.unwrap().into_inner()
}

#[tokio::test]
async fn damaged_read_models_are_rebuilt_from_the_event_store() {
    let setup = common::Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let manager = token("acme", "boss", Role::Manager);

    // Templates: one updated, one archived.
    let hello = service.template(pb::Channel::Whatsapp, "hello", "Oi {{1}}").await;
    let sms = service.template(pb::Channel::Sms, "reminder", "Lembrete para {{1}}").await;
    let old = service.template(pb::Channel::Whatsapp, "old", "Antigo {{1}}").await;
    let update = pb::UpdateTemplateRequest {
        request_id: rid(),
        template_id: hello.template_id.clone(),
        content: Some(pb::TemplateContent { body: "Olá {{1}}, tudo bem?".into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["body".into()] }),
        expected_version: Some(hello.version),
    };
    service.templates().update_template(authed(&manager, update)).await.unwrap();
    let archive = pb::ArchiveTemplateRequest { request_id: rid(), template_id: old.template_id.clone() };
    service.templates().archive_template(authed(&manager, archive)).await.unwrap();

    // Contacts: one renamed, one opted out of SMS, one erased later; a number without a contact
    // opts out then back in.
    upsert(&service, "Carla Dias", "+5511933332222").await;
    upsert(&service, "Bruno", "+5511944445555").await;
    upsert(&service, "Bruno Lima", "+5511944445555").await;
    upsert(&service, "Dora", "+5511955556666").await;
    let path = "/webhooks/sms/acme/inbound";
    let inbound = |from: &str, text: &str, sid: &str| {
        format!("AccountSid={ACCOUNT_SID}&From=%2B{from}&To=%2B15550001111&Body={text}&MessageSid={sid}")
    };
    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("5511944445555", "STOP", "SM1")).await, 200);
    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("5511977778888", "STOP", "SM2")).await, 200);
    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("5511977778888", "START", "SM3")).await, 200);

    // Sends, handed to the provider; one to the client erased next.
    let to_carla = send(&service, &hello, "+5511933332222").await;
    let to_dora = send(&service, &sms, "+5511955556666").await;
    for sent in [&to_carla, &to_dora] {
        service.until(&sent.message_id, |m| !m.provider_message_id.is_empty()).await;
    }
    let erase = pb::EraseClientDataRequest { request_id: rid(), phone: "+5511933332222".into(), reason: "LGPD".into() };
    service.contacts().erase_client_data(authed(&manager, erase)).await.unwrap();

    let pool = &setup.db.pool;
    let models: [(&dyn ReadModel, &[&str]); 3] = [
        (&TemplatesModel, &["templates"]),
        (&ContactsModel, &["contacts", "sms_opt_outs"]),
        (&MessagesModel, &["messages"]),
    ];
    for (model, tables) in models {
        assert_eq!(model.tables(), tables);
        let before = dump(pool, tables).await;
        assert!(before.len() >= 2, "{before:?}");
        for lanes in [4, 1] {
            // Damage: the first row gone, every row changed.
            for table in tables {
                let damage = match *table {
                    "templates" => "UPDATE templates SET archived = NOT archived, version = version + 7",
                    "contacts" => "UPDATE contacts SET name = 'someone else', sms_opted_out = NOT sms_opted_out",
                    "sms_opt_outs" => "UPDATE sms_opt_outs SET opted_out = NOT opted_out",
                    _ => "UPDATE messages SET status = 'read', state = state || '{\"body\": \"forged\"}'",
                };
                sqlx::query(damage).execute(pool).await.unwrap();
                let delete = format!("DELETE FROM {table} WHERE ctid = (SELECT min(ctid) FROM {table})");
                sqlx::query(sqlx::AssertSqlSafe(delete)).execute(pool).await.unwrap();
            }
            assert_ne!(dump(pool, tables).await, before);
            let rebuilt = rebuild(pool, model, None, lanes, |_| {}).await.unwrap();
            assert_eq!(rebuilt.rows as usize, before.len(), "{}", model.name());
            assert_eq!(
                dump(pool, tables).await,
                before,
                "{}: the rebuilt tables are the ones the commands wrote",
                model.name()
            );
        }
    }

    // The service reads the rebuilt tables: the erased client stays erased.
    let carla = service.message(&to_carla.message_id).await;
    assert_eq!((carla.recipient_phone.as_str(), carla.rendered_body.as_str()), ("", ""));
    let dora = service.message(&to_dora.message_id).await;
    assert_eq!(dora.recipient_phone, "+5511955556666");
    let search = pb::SearchContactsRequest { name: "Carla".into(), ..Default::default() };
    let found = service.contacts().search_contacts(authed(&manager, search)).await.unwrap().into_inner();
    assert!(found.contacts.is_empty());
    service.stop().await;
}
