//! Templates, previews and contacts through the gRPC API against real Postgres and NATS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Service, Setup, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::errors::{reason_of, violated_fields};
use dw_proto::messaging::v1 as pb;
use tonic::Code;

fn whatsapp_content(body: &str) -> pb::TemplateContent {
    pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        header_kind: pb::HeaderKind::Image as i32,
        body: body.into(),
        footer: "Equipe Acme".into(),
        ..Default::default()
    }
}

async fn create(
    service: &Service,
    manager: &str,
    channel: pb::Channel,
    name: &str,
    content: pb::TemplateContent,
) -> pb::Template {
    let request = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: channel as i32,
        name: name.into(),
        content: Some(content),
    };
    service.templates().create_template(authed(manager, request)).await.unwrap().into_inner()
}

#[tokio::test]
async fn templates_are_created_listed_updated_and_archived() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let agent = token("acme", "ana", Role::Agent);
    let order = create(
        &service,
        &manager,
        pb::Channel::Whatsapp,
        "order_update",
        whatsapp_content("Olá {{1}}, seu pedido {{2}} saiu."),
    )
    .await;
    assert_eq!((order.variable_count, order.version), (2, 1));

    // Agents may read but not manage.
    let status = service
        .templates()
        .create_template(authed(
            &agent,
            pb::CreateTemplateRequest { request_id: rid(), channel: 2, name: "x".into(), content: None },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let listed = service.templates().list_templates(authed(&agent, pb::ListTemplatesRequest::default())).await.unwrap();
    assert_eq!(listed.into_inner().templates.len(), 1);

    // The same active name on the same channel is refused; another tenant does not see it.
    let request = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: "order_update".into(),
        content: Some(whatsapp_content("Hi")),
    };
    let status = service.templates().create_template(authed(&manager, request)).await.unwrap_err();
    assert_eq!(reason_of(&status).as_deref(), Some("TEMPLATE_NAME_TAKEN"));
    let globex = token("globex", "boss", Role::Manager);
    let get = pb::GetTemplateRequest { template_id: order.template_id.clone() };
    assert_eq!(
        service.templates().get_template(authed(&globex, get.clone())).await.unwrap_err().code(),
        Code::NotFound
    );

    let updated = service
        .templates()
        .update_template(authed(
            &manager,
            pb::UpdateTemplateRequest {
                request_id: rid(),
                template_id: order.template_id.clone(),
                content: Some(whatsapp_content("Olá {{1}}, pedido {{2}} a caminho ({{3}}).")),
                update_mask: None,
                expected_version: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.variable_count, updated.version), (3, 2));
    let archived = service
        .templates()
        .archive_template(authed(
            &manager,
            pb::ArchiveTemplateRequest { request_id: rid(), template_id: order.template_id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived);
    let listed = service.templates().list_templates(authed(&agent, pb::ListTemplatesRequest::default())).await.unwrap();
    assert!(listed.into_inner().templates.is_empty(), "archived templates are hidden by default");
    // Its name is free again.
    create(&service, &manager, pb::Channel::Whatsapp, "order_update", whatsapp_content("Oi {{1}}")).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&setup.db.pool).await.unwrap();
    assert_eq!(events, 4);
}

#[tokio::test]
async fn every_content_rule_names_its_field() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let cases: Vec<(pb::Channel, &str, pb::TemplateContent, &[&str])> = vec![
        (pb::Channel::Whatsapp, "Bad-Name", whatsapp_content("Hi"), &["name"]),
        (pb::Channel::Whatsapp, "gaps", whatsapp_content("Hi {{2}}"), &["content.body"]),
        (pb::Channel::Whatsapp, "long", whatsapp_content(&"x".repeat(1025)), &["content.body"]),
        (
            pb::Channel::Whatsapp,
            "title",
            pb::TemplateContent {
                header_kind: pb::HeaderKind::Text as i32,
                header_text: "t".repeat(61),
                ..whatsapp_content("Hi")
            },
            &["content.header_text"],
        ),
        (
            pb::Channel::Whatsapp,
            "image",
            pb::TemplateContent { header_image_url: "http://cdn.example.com/a.png".into(), ..whatsapp_content("Hi") },
            &["content.header_image_url"],
        ),
        (pb::Channel::Sms, "sms_header", whatsapp_content("Hi"), &["content.header_kind", "content.footer"]),
        (
            pb::Channel::Sms,
            "metadata",
            pb::TemplateContent {
                header_kind: 0,
                footer: String::new(),
                default_metadata: (0..21).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
                ..whatsapp_content("Hi")
            },
            &["content.default_metadata"],
        ),
    ];
    for (channel, name, content, expected) in cases {
        let request = pb::CreateTemplateRequest {
            request_id: rid(),
            channel: channel as i32,
            name: name.into(),
            content: Some(content),
        };
        let status = service.templates().create_template(authed(&manager, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        assert_eq!(violated_fields(&status), expected, "{name}");
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&setup.db.pool).await.unwrap();
    assert_eq!(events, 0, "nothing was created");
}

#[tokio::test]
async fn previews_render_and_count_sms_segments() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let agent = token("acme", "ana", Role::Agent);
    let sms_content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        body: "Codigo {{1}}. {{2}}".into(),
        ..Default::default()
    };
    let sms = create(&service, &manager, pb::Channel::Sms, "code", sms_content).await;
    let preview = |variables: Vec<String>| {
        let mut client = service.templates();
        let agent = agent.clone();
        let template_id = sms.template_id.clone();
        async move {
            client
                .preview_template(authed(
                    &agent,
                    pb::PreviewTemplateRequest { template_id, variables, ..Default::default() },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let plain = preview(vec!["1234".into(), "a".repeat(150)]).await;
    assert_eq!(plain.rendered_body, format!("Codigo 1234. {}", "a".repeat(150)));
    assert_eq!((plain.sms_encoding, plain.sms_units, plain.sms_segments), (pb::SmsEncoding::Gsm7 as i32, 163, 2));
    let extension = preview(vec!["1234".into(), "€[]".into()]).await;
    assert_eq!(
        (extension.sms_encoding, extension.sms_units, extension.sms_segments),
        (pb::SmsEncoding::Gsm7 as i32, 19, 1)
    );
    let emoji = preview(vec!["1234".into(), "Obrigado 😀".into()]).await;
    assert_eq!((emoji.sms_encoding, emoji.sms_units, emoji.sms_segments), (pb::SmsEncoding::Ucs2 as i32, 24, 1));
    let wrong = preview(vec!["1234".into()]).await;
    assert_eq!(wrong.problems.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(), ["variables"]);

    let wa = create(&service, &manager, pb::Channel::Whatsapp, "promo", whatsapp_content("Oferta {{1}}")).await;
    let preview = service
        .templates()
        .preview_template(authed(
            &agent,
            pb::PreviewTemplateRequest {
                template_id: wa.template_id,
                variables: vec!["10%".into()],
                header_text: String::new(),
                header_image_url: "https://cdn.example.com/promo.png".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(preview.problems.is_empty(), "{:?}", preview.problems);
    assert_eq!(
        (preview.rendered_header.as_str(), preview.rendered_body.as_str()),
        ("https://cdn.example.com/promo.png", "Oferta 10%")
    );
}

#[tokio::test]
async fn contacts_are_found_by_partial_accent_insensitive_name() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let crm = token("acme", "crm-bot", Role::Service);
    let agent = token("acme", "ana", Role::Agent);
    let upsert = |name: &str, phone: &str| pb::UpsertContactRequest {
        request_id: rid(),
        name: name.into(),
        phone: phone.into(),
        external_id: String::new(),
        tags: vec![],
    };
    let jose = service
        .contacts()
        .upsert_contact(authed(&crm, upsert("José Álvares", "+5511911110001")))
        .await
        .unwrap()
        .into_inner();
    service.contacts().upsert_contact(authed(&crm, upsert("Maria Joselita", "+5511911110002"))).await.unwrap();
    service.contacts().upsert_contact(authed(&crm, upsert("Pedro", "+5511911110003"))).await.unwrap();
    // The same phone again updates the same contact.
    let renamed = service
        .contacts()
        .upsert_contact(authed(&crm, upsert("José Álvares Neto", "+5511911110001")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((renamed.contact_id.as_str(), renamed.version), (jose.contact_id.as_str(), 2));

    // Agents need `contacts.view` (tests/hostile.rs); the manager sees the tenant's contacts.
    let manager = token("acme", "boss", Role::Manager);
    let search = |name: &str| {
        let mut client = service.contacts();
        let agent = manager.clone();
        let name = name.to_owned();
        async move {
            let response = client
                .search_contacts(authed(&agent, pb::SearchContactsRequest { name, ..Default::default() }))
                .await
                .unwrap()
                .into_inner();
            response.contacts.into_iter().map(|c| c.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(search("jose").await, ["José Álvares Neto", "Maria Joselita"], "best match first");
    assert_eq!(search("JOS").await.len(), 2);
    assert_eq!(search("alvares").await, ["José Álvares Neto"]);
    assert!(search("zzz").await.is_empty());
    let by_phone = service
        .contacts()
        .search_contacts(authed(
            &manager,
            pb::SearchContactsRequest { phone: "+5511911110003".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_phone.contacts[0].name, "Pedro");

    let bad = service.contacts().upsert_contact(authed(&crm, upsert("", "12345"))).await.unwrap_err();
    assert_eq!(violated_fields(&bad), ["name", "phone"]);
    let denied = service.contacts().upsert_contact(authed(&agent, upsert("X", "+5511911110009"))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let other = token("globex", "crm-bot", Role::Service);
    let get = pb::GetContactRequest { contact_id: jose.contact_id };
    assert_eq!(service.contacts().get_contact(authed(&other, get)).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_contact_search_is_walked_page_by_page_without_repeat_or_gap() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let crm = token("acme", "crm-bot", Role::Service);
    // Names that match "silva" more or less well, some alike (ties on rank and name).
    let names = [
        "Ana Silva",
        "Ana Silva",
        "Silva",
        "Bruno da Silva",
        "Carla Silva Souza",
        "Silvana",
        "Ana Silva",
        "Zé Silva",
        "Silva | Filho",
        "Joana Silveira Silva",
        "Silva",
        "Márcia Silva",
    ];
    for (n, name) in names.iter().enumerate() {
        let upsert = pb::UpsertContactRequest {
            request_id: rid(),
            name: (*name).into(),
            phone: format!("+55119222200{n:02}"),
            external_id: String::new(),
            tags: vec![],
        };
        service.contacts().upsert_contact(authed(&crm, upsert)).await.unwrap();
    }
    let manager = token("acme", "boss", Role::Manager);
    let search = async |who: &str, request: pb::SearchContactsRequest| {
        service.contacts().search_contacts(authed(who, request)).await.map(tonic::Response::into_inner)
    };
    let silva = |page_size: i32, page_token: String| pb::SearchContactsRequest {
        name: "silva".into(),
        page_size,
        page_token,
        ..Default::default()
    };
    let everything = search(&manager, silva(100, String::new())).await.unwrap();
    assert!(everything.next_page_token.is_empty(), "one page holds them all");
    let expected: Vec<String> = everything.contacts.iter().map(|c| c.contact_id.clone()).collect();
    assert_eq!(expected.len(), names.len(), "every contact matches");

    let mut walked = Vec::new();
    let mut next = String::new();
    let mut pages = 0;
    loop {
        let page = search(&manager, silva(5, next.clone())).await.unwrap();
        assert!(page.contacts.len() <= 5);
        walked.extend(page.contacts.iter().map(|c| c.contact_id.clone()));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        next = page.next_page_token;
        assert!(pages < 10, "the pages end");
    }
    assert_eq!(pages, 3);
    assert_eq!(walked, expected, "the same contacts in the same order: no repeat, no gap");

    // A token only continues the search it came from, for its tenant.
    let first = search(&manager, silva(5, String::new())).await.unwrap();
    for garbage in ["garbage", "bm90IGEgdG9rZW4", "%%%"] {
        let refused = search(&manager, silva(5, garbage.into())).await.unwrap_err();
        assert_eq!((refused.code(), violated_fields(&refused)), (Code::InvalidArgument, vec!["page_token".to_owned()]));
    }
    let other_search = pb::SearchContactsRequest {
        name: "ana".into(),
        page_token: first.next_page_token.clone(),
        ..Default::default()
    };
    let refused = search(&manager, other_search).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["page_token"], "a token of another search");
    let globex = token("globex", "boss", Role::Manager);
    let refused = search(&globex, silva(5, first.next_page_token.clone())).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["page_token"], "a token of another tenant");
    assert!(search(&globex, silva(5, String::new())).await.unwrap().contacts.is_empty(), "another tenant sees nothing");
    for size in [-1, 101] {
        assert_eq!(violated_fields(&search(&manager, silva(size, String::new())).await.unwrap_err()), ["page_size"]);
    }
}

#[tokio::test]
async fn sms_templates_need_no_whatsapp_language_or_category_but_whatsapp_ones_do() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let plain = pb::TemplateContent { body: "Seu codigo: {{1}}".into(), ..Default::default() };

    let sms = create(&service, &manager, pb::Channel::Sms, "login_code", plain.clone()).await;
    assert_eq!((sms.language.as_str(), sms.category), ("", pb::TemplateCategory::Unspecified as i32));
    let preview = pb::PreviewTemplateRequest {
        template_id: sms.template_id.clone(),
        variables: vec!["1234".into()],
        ..Default::default()
    };
    let preview = service.templates().preview_template(authed(&manager, preview)).await.unwrap().into_inner();
    assert_eq!(preview.rendered_body, "Seu codigo: 1234");

    let request = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: "login_code".into(),
        content: Some(plain),
    };
    let status = service.templates().create_template(authed(&manager, request)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["content.language", "content.category"]);
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

fn body_update(
    template_id: &str,
    paths: &[&str],
    body: &str,
    expected_version: Option<u64>,
) -> pb::UpdateTemplateRequest {
    pb::UpdateTemplateRequest {
        request_id: rid(),
        template_id: template_id.into(),
        content: Some(pb::TemplateContent { body: body.into(), ..Default::default() }),
        update_mask: mask(paths),
        expected_version,
    }
}

#[tokio::test]
async fn template_updates_change_only_the_named_fields_and_refuse_stale_versions() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let mut templates = service.templates();
    let order = create(&service, &manager, pb::Channel::Whatsapp, "order_update", whatsapp_content("Olá {{1}}.")).await;

    // Only the body: language, category, header and footer stay.
    let request = body_update(&order.template_id, &["body"], "Oi {{1}}, pedido {{2}}.", Some(order.version));
    let updated = templates.update_template(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!((updated.body.as_str(), updated.variable_count, updated.version), ("Oi {{1}}, pedido {{2}}.", 2, 2));
    assert_eq!(
        (&updated.language, updated.category, updated.header_kind),
        (&order.language, order.category, order.header_kind)
    );
    assert_eq!(updated.footer, "Equipe Acme");

    // A retry returns the first answer (its expected version is stale by now); the same id with
    // another mask is another request.
    let retry = templates.update_template(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!(retry, updated);
    let other_mask = pb::UpdateTemplateRequest { update_mask: mask(&["body", "footer"]), ..request };
    let status = templates.update_template(authed(&manager, other_mask)).await.unwrap_err();
    assert_eq!((status.code(), reason_of(&status).as_deref()), (Code::FailedPrecondition, Some("REQUEST_ID_REUSED")));

    // Unknown paths and fields that cannot be updated are refused on update_mask, by name.
    for path in ["colour", "name", "channel"] {
        let status = templates
            .update_template(authed(&manager, body_update(&order.template_id, &[path], "x", None)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}");
        assert_eq!(violated_fields(&status), ["update_mask"]);
        assert!(status.message().contains(path), "{status:?}");
    }

    // A manager who read version 1 is told the template moved on, and changes nothing.
    let stale = body_update(&order.template_id, &["body"], "Tchau", Some(order.version));
    let status = templates.update_template(authed(&manager, stale)).await.unwrap_err();
    assert_eq!((status.code(), reason_of(&status).as_deref()), (Code::Aborted, Some("STALE_VERSION")));
    assert!(status.message().contains("version 2"), "{status:?}");

    // Clearing a WhatsApp concept of a WhatsApp template is refused on the merged content.
    let no_language = body_update(&order.template_id, &["language"], "", None);
    let status = templates.update_template(authed(&manager, no_language)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["content.language"]);

    let get = pb::GetTemplateRequest { template_id: order.template_id.clone() };
    assert_eq!(templates.get_template(authed(&manager, get)).await.unwrap().into_inner(), updated);
}

/// Turns the stored snapshot of `template_id`'s stream into something that is not a template
/// (as a snapshot written by another release, or damaged, would be).
async fn break_snapshot(setup: &Setup, tenant: &dw_ids::TenantId, template_id: uuid::Uuid) {
    let stream_id = messaging_templates::codec::template_stream(tenant, template_id);
    let broken = sqlx::query("UPDATE streams SET snapshot = '{\"template_id\": 42}'::jsonb WHERE stream_id = $1")
        .bind(stream_id)
        .execute(&setup.db.pool)
        .await
        .unwrap();
    assert_eq!(broken.rows_affected(), 1);
}

#[tokio::test]
async fn a_template_whose_snapshot_no_longer_decodes_loads_by_replaying_its_events() {
    use messaging_templates::app::load_template;

    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let manager = token("acme", "boss", Role::Manager);
    let mut templates = service.templates();
    let order = create(&service, &manager, pb::Channel::Whatsapp, "order_update", whatsapp_content("Olá {{1}}.")).await;
    let request = body_update(&order.template_id, &["body"], "Oi {{1}}, pedido {{2}}.", Some(order.version));
    templates.update_template(authed(&manager, request)).await.unwrap();

    // Given a template at version 2 whose snapshot no longer decodes,
    let tenant = dw_ids::TenantId::parse("acme").unwrap();
    let template_id: uuid::Uuid = order.template_id.parse().unwrap();
    let mut conn = setup.db.pool.acquire().await.unwrap();
    let from_snapshot = load_template(&mut conn, &tenant, template_id).await.unwrap().unwrap();
    break_snapshot(&setup, &tenant, template_id).await;

    // when it is loaded, then the replay of its events is what the snapshot was,
    let replayed = load_template(&mut conn, &tenant, template_id).await.unwrap().unwrap();
    assert_eq!(replayed, from_snapshot);
    assert_eq!(replayed.1, 2);

    // and commands start from it: an update keeps the fields it does not name,
    let request = body_update(&order.template_id, &["body"], "Tchau {{1}}.", Some(2));
    let updated = templates.update_template(authed(&manager, request)).await.unwrap().into_inner();
    assert_eq!((updated.body.as_str(), updated.version, updated.variable_count), ("Tchau {{1}}.", 3, 1));
    assert_eq!((updated.language.as_str(), updated.footer.as_str()), ("pt_BR", "Equipe Acme"));

    // an archive too, and the read model agrees with the stream.
    break_snapshot(&setup, &tenant, template_id).await;
    let archive = pb::ArchiveTemplateRequest { request_id: rid(), template_id: order.template_id.clone() };
    let archived = templates.archive_template(authed(&manager, archive)).await.unwrap().into_inner();
    assert!(archived.archived);
    assert_eq!(archived.version, 4);
    let get = pb::GetTemplateRequest { template_id: order.template_id.clone() };
    assert_eq!(templates.get_template(authed(&manager, get)).await.unwrap().into_inner(), archived);
    let (state, version) = load_template(&mut conn, &tenant, template_id).await.unwrap().unwrap();
    assert_eq!(messaging_templates::codec::template_to_pb(&state, version), archived);
}
