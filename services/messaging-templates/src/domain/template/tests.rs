//! Given/when/then tests of templates: the content rules per channel and the aggregate's
//! decisions.

use std::collections::BTreeMap;

use dw_eventstore::UpdateMask;

use super::*;

fn input(body: &str) -> ContentInput {
    ContentInput {
        language: "pt_BR".into(),
        category: Some(Category::Utility),
        body: body.into(),
        ..Default::default()
    }
}

fn fields(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|(f, _)| f.as_str()).collect()
}

#[test]
fn names_languages_and_urls() {
    assert!(parse_name("order_update_2").is_ok());
    assert!(parse_name("Order").is_err());
    assert!(parse_name("2fa").is_err());
    assert!(parse_name("with-dash").is_err());
    assert_eq!(parse_language("pt-BR").as_deref(), Ok("pt_BR"));
    assert!(parse_language("portuguese").is_err());
    assert!(parse_url("https://cdn.example.com/a.png").is_ok());
    assert!(parse_url("http://cdn.example.com/a.png").is_err());
    assert!(parse_url("http://127.0.0.1:8080/hook").is_ok());
    assert!(parse_url("http://127.0.0.1.evil.com/").is_err());
    assert!(parse_url("http://localhost/a@b").is_ok());
    assert!(parse_url("http://localhost:8080@evil.example/").is_err(), "userinfo: the host is evil.example");
    assert!(parse_url("http://[::1]:@evil.example").is_err());
    assert!(parse_url("https://").is_err());
}

#[test]
fn variables_are_numbered_without_gaps() {
    assert_eq!(count_variables("Hi"), Ok(0));
    assert_eq!(count_variables("Hi {{1}}, order {{2}} ({{1}})"), Ok(2));
    assert!(count_variables("Hi {{2}}").is_err());
    assert!(count_variables("Hi {{0}}").is_err());
    assert!(count_variables("Hi {{name}}").is_err());
    assert!(count_variables("Hi {{1").is_err());
    let values = vec!["Ana".to_owned(), "42".to_owned()];
    assert_eq!(render("Hi {{1}}, order {{2}} ({{1}}) {{3}}", &values), "Hi Ana, order 42 (Ana) {{3}}");
}

#[test]
fn whatsapp_lengths_and_header_kinds() {
    let content = Content::parse(Channel::Whatsapp, input("Olá {{1}}"), "").unwrap();
    assert_eq!(content.variable_count, 1);
    let long =
        ContentInput { header_kind: Some(HeaderKind::Text), header_text: "x".repeat(61), ..input(&"y".repeat(1025)) };
    let problems = Content::parse(Channel::Whatsapp, long, "content.").unwrap_err();
    assert_eq!(fields(&problems), ["content.body", "content.header_text"]);
    let wrong_kind = ContentInput { header_image_url: "https://x.example/i.png".into(), ..input("Hi") };
    assert_eq!(fields(&Content::parse(Channel::Whatsapp, wrong_kind, "").unwrap_err()), ["header_image_url"]);
    let http_image = ContentInput {
        header_kind: Some(HeaderKind::Image),
        header_image_url: "http://x.example/i.png".into(),
        ..input("Hi")
    };
    assert_eq!(fields(&Content::parse(Channel::Whatsapp, http_image, "").unwrap_err()), ["header_image_url"]);
}

#[test]
fn sms_has_no_header_or_footer_and_metadata_is_bounded() {
    let with_header = ContentInput { header_kind: Some(HeaderKind::Text), footer: "bye".into(), ..input("Hi") };
    assert_eq!(fields(&Content::parse(Channel::Sms, with_header, "").unwrap_err()), ["header_kind", "footer"]);
    let metadata: BTreeMap<String, String> = (0..21).map(|i| (format!("k{i}"), "v".into())).collect();
    let too_many = ContentInput { default_metadata: metadata, ..input("Hi") };
    assert_eq!(fields(&Content::parse(Channel::Sms, too_many, "").unwrap_err()), ["default_metadata"]);
    let bad = ContentInput { category: None, language: "x".into(), ..input("") };
    assert_eq!(fields(&Content::parse(Channel::Sms, bad, "").unwrap_err()), ["language", "body"]);
}

#[test]
fn given_an_sms_template_without_language_or_category_when_parsed_then_it_is_valid() {
    let plain = ContentInput { body: "Your code is {{1}}".into(), ..Default::default() };
    let content = Content::parse(Channel::Sms, plain, "").unwrap();
    assert_eq!((content.language, content.category), (None, None));
}

#[test]
fn given_a_whatsapp_template_without_language_or_category_when_parsed_then_both_are_required() {
    let plain = ContentInput { body: "Olá {{1}}".into(), ..Default::default() };
    let problems = Content::parse(Channel::Whatsapp, plain, "content.").unwrap_err();
    assert_eq!(fields(&problems), ["content.language", "content.category"]);
    assert!(problems.iter().all(|(_, why)| why.contains("required for WhatsApp")), "{problems:?}");
}

fn whatsapp_template(now: DateTime<Utc>) -> Template {
    let content = ContentInput {
        footer: "Loja Exemplo".into(),
        department: "sales".into(),
        default_metadata: BTreeMap::from([("crm".to_owned(), "x".to_owned())]),
        ..input("Olá {{1}}")
    };
    Template {
        template_id: uuid::Uuid::now_v7(),
        channel: Channel::Whatsapp,
        name: "hello".into(),
        content: Content::parse(Channel::Whatsapp, content, "").unwrap(),
        archived: false,
        created_at: now,
        updated_at: now,
    }
}

fn only(fields: &[ContentField], patch: ContentInput) -> ContentUpdate {
    ContentUpdate { patch, mask: UpdateMask::Fields(fields.iter().copied().collect()), expected_version: None }
}

fn updated(template: &Template, events: &[Event]) -> Template {
    events.iter().fold(Some(template.clone()), evolve).unwrap()
}

#[test]
fn given_a_template_when_only_the_body_is_named_then_the_rest_is_kept() {
    let now = Utc::now();
    let template = whatsapp_template(now);
    let patch = ContentInput { body: "Oi {{1}}, pedido {{2}}".into(), ..Default::default() };

    let events = update(&template, 1, only(&[ContentField::Body], patch), now).unwrap();

    let after = updated(&template, &events).content;
    assert_eq!((after.body.as_str(), after.variable_count), ("Oi {{1}}, pedido {{2}}", 2));
    let before = template.content;
    assert_eq!((after.language, after.category, after.footer), (before.language, before.category, before.footer));
    assert_eq!((after.department, after.default_metadata), (before.department, before.default_metadata));
}

#[test]
fn given_a_template_when_a_named_field_is_absent_then_it_is_cleared_and_the_result_validated() {
    let now = Utc::now();
    let template = whatsapp_template(now);
    let events = update(&template, 1, only(&[ContentField::Footer], ContentInput::default()), now).unwrap();
    assert_eq!(updated(&template, &events).content.footer, None);

    // Clearing a WhatsApp concept of a WhatsApp template leaves it invalid.
    let refused = update(&template, 1, only(&[ContentField::Language], ContentInput::default()), now);
    let Err(CommandError::Invalid(problems)) = refused else { panic!("invalid expected: {refused:?}") };
    assert_eq!(fields(&problems), ["content.language"]);
}

#[test]
fn given_a_template_when_the_mask_is_all_then_the_patch_replaces_the_content() {
    let now = Utc::now();
    let template = whatsapp_template(now);
    let all = ContentUpdate { patch: input("Hi"), mask: UpdateMask::All, expected_version: None };
    let after = updated(&template, &update(&template, 1, all, now).unwrap()).content;
    assert_eq!(after, Content::parse(Channel::Whatsapp, input("Hi"), "").unwrap());
}

#[test]
fn given_a_template_at_version_three_when_the_caller_read_version_two_then_it_is_stale() {
    let now = Utc::now();
    let template = whatsapp_template(now);
    let stale = ContentUpdate { expected_version: Some(2), ..only(&[ContentField::Body], input("Hi")) };
    let refused = update(&template, 3, stale, now);
    assert!(matches!(refused, Err(CommandError::StaleVersion(s)) if s.current == 3), "{refused:?}");
}

#[test]
fn archived_templates_cannot_change() {
    let now = Utc::now();
    let template = Template {
        template_id: uuid::Uuid::now_v7(),
        channel: Channel::Sms,
        name: "hello".into(),
        content: Content::parse(Channel::Sms, input("Hi {{1}}"), "").unwrap(),
        archived: false,
        created_at: now,
        updated_at: now,
    };
    let same = ContentUpdate { patch: template.content.to_input(), mask: UpdateMask::All, expected_version: None };
    assert!(update(&template, 1, same.clone(), now).unwrap().is_empty(), "same content, no event");
    let archived = archive(&template, now).unwrap().iter().fold(Some(template), evolve).unwrap();
    assert!(archived.archived);
    assert_eq!(archive(&archived, now), Err(DomainError::TemplateArchived));
    assert!(matches!(update(&archived, 2, same, now), Err(CommandError::Rule(DomainError::TemplateArchived))));
}

#[test]
fn given_a_template_at_version_four_when_updated_then_the_event_carries_the_whole_template_at_version_five() {
    let created = Utc::now();
    let template = whatsapp_template(created);
    let later = created + chrono::Duration::seconds(1);
    let patch = ContentInput { body: "Oi {{1}}".into(), ..Default::default() };

    let events = update(&template, 4, only(&[ContentField::Body], patch), later).unwrap();

    let [Event::Updated { template: after, version }] = events.as_slice() else { panic!("one update: {events:?}") };
    assert_eq!(*version, 5);
    assert_eq!((after.template_id, &after.name, after.created_at), (template.template_id, &template.name, created));
    assert_eq!((after.content.body.as_str(), after.updated_at), ("Oi {{1}}", later));
    assert_eq!(&updated(&template, &events), after, "evolve takes the decided template");
}
