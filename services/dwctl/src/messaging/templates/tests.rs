use dw_proto::messaging::v1::{Channel, ListTemplatesResponse, TemplateCategory};

use super::*;
use crate::cli::{Command, ContactsCommand};
use crate::testing::parse;

fn templates_command(args: &[&str]) -> TemplatesCommand {
    match parse(&[&["templates"], args].concat()).unwrap().command {
        Command::Templates(command) => command,
        other => panic!("not a templates command: {other:?}"),
    }
}

const ORDER_SHIPPED: [&str; 16] = [
    "create",
    "--channel",
    "whatsapp",
    "--name",
    "order_shipped",
    "--language",
    "pt_BR",
    "--category",
    "utility",
    "--body",
    "Olá {{1}}, seu pedido {{2}} saiu para entrega.",
    "--header-image-url",
    "https://images.example.com/box.jpg",
    "--footer",
    "Acme",
    "--metadata=source=dwctl",
];

#[test]
fn header_kinds_are_inferred_from_the_header_given() {
    assert_eq!(header_kind(None, None, None, HeaderKind::Unspecified).unwrap(), HeaderKind::Unspecified);
    assert_eq!(header_kind(None, None, None, HeaderKind::Text).unwrap(), HeaderKind::Text);
    assert_eq!(header_kind(None, Some("Hi"), None, HeaderKind::Unspecified).unwrap(), HeaderKind::Text);
    assert_eq!(header_kind(None, None, Some("https://x/y.png"), HeaderKind::Text).unwrap(), HeaderKind::Image);
    assert_eq!(header_kind(None, Some(" "), None, HeaderKind::Image).unwrap(), HeaderKind::Image);
    assert_eq!(
        header_kind(Some(HeaderKind::Unspecified), Some("Hi"), None, HeaderKind::Text).unwrap(),
        HeaderKind::Unspecified
    );
    assert!(header_kind(None, Some("Hi"), Some("https://x/y.png"), HeaderKind::Unspecified).is_err());
    assert_eq!(
        header_kind(Some(HeaderKind::Image), Some("Hi"), Some("https://x/y.png"), HeaderKind::Unspecified).unwrap(),
        HeaderKind::Image
    );
}

#[test]
fn create_builds_the_whole_content() {
    let TemplatesCommand::Create(args) = templates_command(&ORDER_SHIPPED) else { panic!("not create") };
    let request = create_request("r-1".into(), &args).unwrap();
    assert_eq!(request.request_id, "r-1");
    assert_eq!(request.channel, Channel::Whatsapp as i32);
    assert_eq!(request.name, "order_shipped");
    let content = request.content.unwrap();
    assert_eq!(content.language, "pt_BR");
    assert_eq!(content.category, TemplateCategory::Utility as i32);
    assert_eq!(content.header_kind, HeaderKind::Image as i32);
    assert_eq!(content.header_image_url, "https://images.example.com/box.jpg");
    assert_eq!(content.body, "Olá {{1}}, seu pedido {{2}} saiu para entrega.");
    assert_eq!(content.footer, "Acme");
    assert_eq!(content.default_metadata.get("source").map(String::as_str), Some("dwctl"));
    assert!(content.department_id.is_empty() && content.default_webhook_url.is_empty());

    let ambiguous = [&ORDER_SHIPPED[..], &["--header-text", "Pedido"]].concat();
    let command = templates_command(&ambiguous);
    let error = validate(&command).unwrap_err();
    assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
    assert!(validate(&templates_command(&[&ambiguous[..], &["--header-kind", "image"]].concat())).is_ok());

    for missing in ["--body", "--channel", "--name"] {
        let index = ORDER_SHIPPED.iter().position(|a| *a == missing).unwrap();
        let mut args = ORDER_SHIPPED.to_vec();
        args.drain(index..index + 2);
        assert!(parse(&[&["templates"], &args[..]].concat()).is_err(), "{missing} is required");
    }
    assert!(parse(&[&["templates"], &ORDER_SHIPPED[..], &["--category", "promo"]].concat()).is_err());

    // SMS has no language or category: neither is needed (the service requires both for WhatsApp).
    let sms = ["create", "--channel", "sms", "--name", "code", "--body", "Codigo {{1}}"];
    let TemplatesCommand::Create(args) = templates_command(&sms) else { panic!("not create") };
    let content = create_request("r".into(), &args).unwrap().content.unwrap();
    assert_eq!((content.language.as_str(), content.category), ("", TemplateCategory::Unspecified as i32));
    assert!(parse(&[&["templates"], &ORDER_SHIPPED[..], &["--metadata", "novalue"]].concat()).is_err());
}

fn update(args: &[&str]) -> Result<UpdateTemplateRequest> {
    let TemplatesCommand::Update(args) = templates_command(&[&["update", "--template-id", "t-1"], args].concat())
    else {
        panic!("not update")
    };
    update_request(&args)
}

fn paths(request: &UpdateTemplateRequest) -> Vec<&str> {
    request.update_mask.as_ref().map(|mask| mask.paths.iter().map(String::as_str).collect()).unwrap_or_default()
}

#[test]
fn update_names_only_what_is_given() {
    let request = update(&["--body", "Oi {{1}}, pedido {{2}}", "--expected-version", "3"]).unwrap();
    assert_eq!(paths(&request), ["body"]);
    assert_eq!(request.expected_version, Some(3));
    assert_eq!(request.template_id, "t-1");
    assert_eq!(request.content.unwrap().body, "Oi {{1}}, pedido {{2}}");

    // An empty value removes that part; a new header kind also clears the part it does not use.
    let request = update(&["--footer", "", "--department", "", "--header-text", "Seu pedido"]).unwrap();
    assert_eq!(paths(&request), ["header_kind", "header_text", "header_image_url", "footer", "department_id"]);
    let content = request.content.unwrap();
    assert_eq!((content.footer.as_str(), content.department_id.as_str()), ("", ""));
    assert_eq!(content.header_kind, HeaderKind::Text as i32);
    assert_eq!((content.header_text.as_str(), content.header_image_url.as_str()), ("Seu pedido", ""));
    let request = update(&["--header-kind", "none", "--category", "marketing"]).unwrap();
    assert_eq!(paths(&request), ["category", "header_kind", "header_text", "header_image_url"]);
    let content = request.content.unwrap();
    assert_eq!(content.header_kind, HeaderKind::Unspecified as i32);
    assert!(content.header_text.is_empty() && content.header_image_url.is_empty());
    assert_eq!(content.category, TemplateCategory::Marketing as i32);
    // A kind alone keeps the current part it uses.
    assert_eq!(paths(&update(&["--header-kind", "image"]).unwrap()), ["header_kind", "header_text"]);

    let request = update(&["--metadata", "b=2", "--metadata", "c=3"]).unwrap();
    assert_eq!(paths(&request), ["default_metadata"]);
    let keys: Vec<String> = request.content.unwrap().default_metadata.into_keys().collect();
    assert_eq!(keys, ["b", "c"]);
    let request = update(&["--clear-metadata"]).unwrap();
    assert_eq!(paths(&request), ["default_metadata"]);
    assert!(request.content.unwrap().default_metadata.is_empty());
    assert!(parse(&["templates", "update", "--template-id", "t", "--clear-metadata", "--metadata", "a=1"]).is_err());
    assert!(parse(&["templates", "update"]).is_err());
    let nothing = update(&[]).unwrap_err();
    assert!(nothing.downcast_ref::<UsageError>().is_some(), "{nothing}");
}

#[test]
fn send_takes_a_phone_or_a_contact_and_variables_in_order() {
    let TemplatesCommand::Send(args) = templates_command(&[
        "send",
        "--template-id",
        "t-1",
        "--phone",
        "+55 11 98765-4321",
        "--var",
        "José",
        "--var",
        "-42",
        "--header-image-url",
        "https://images.example.com/box.jpg",
        "--metadata",
        "order=A-1",
        "--info",
        "  pedido urgente ",
        "--department",
        "sales",
    ]) else {
        panic!("not send")
    };
    let request = send_request("r-2".into(), args);
    assert_eq!(request.recipient, Some(Recipient::Phone("+5511987654321".into())));
    assert_eq!(request.variables, ["José", "-42"]);
    assert_eq!(request.header_image_url, "https://images.example.com/box.jpg");
    assert_eq!(request.metadata.get("order").map(String::as_str), Some("A-1"));
    assert_eq!(request.additional_information, "pedido urgente");
    assert_eq!(request.department_id, "sales");
    assert_eq!(request.request_id, "r-2");

    let TemplatesCommand::Send(args) = templates_command(&["send", "--template-id", "t", "--contact-id", "c-9"]) else {
        panic!("not send")
    };
    let request = send_request("r".into(), args);
    assert_eq!(request.recipient, Some(Recipient::ContactId("c-9".into())));
    assert!(request.variables.is_empty());
    assert!(parse(&["templates", "send", "--template-id", "t"]).is_err(), "a recipient is required");
    assert!(
        parse(&["templates", "send", "--template-id", "t", "--phone", "+5511987654321", "--contact-id", "c"]).is_err()
    );
    assert!(parse(&["templates", "send", "--template-id", "t", "--phone", "11987654321"]).is_err());
}

#[test]
fn preview_list_and_contact_commands_parse() {
    let TemplatesCommand::Preview(args) =
        templates_command(&["preview", "--template-id", "t", "--var", "123456", "--header-text", " Olá "])
    else {
        panic!("not preview")
    };
    let request = preview_request(args);
    assert_eq!((request.variables, request.header_text), (vec!["123456".to_owned()], "Olá".to_owned()));
    let TemplatesCommand::List(args) =
        templates_command(&["list", "--channel", "sms", "--name", "code", "--include-archived"])
    else {
        panic!("not list")
    };
    let request = list_request(args);
    assert_eq!(request.channel, Channel::Sms as i32);
    assert_eq!((request.name.as_str(), request.include_archived), ("code", true));
    let TemplatesCommand::List(args) = templates_command(&["list"]) else { panic!("not list") };
    assert_eq!(list_request(args), ListTemplatesRequest::default());
    assert!(parse(&["templates", "list", "--all", "--page-token", "x"]).is_err());

    assert!(parse(&["contacts", "search"]).is_err());
    assert!(parse(&["contacts", "search", "--name", "jose", "--phone", "+5511987654321"]).is_err());
    assert!(parse(&["contacts", "search", "--name", "jose"]).is_ok());
    let cli =
        parse(&["contacts", "upsert", "--name", "José", "--phone", "+5511987654321", "--tag", "vip", "--tag", "b"])
            .unwrap();
    let Command::Contacts(ContactsCommand::Upsert { tags, external_id: None, .. }) = cli.command else {
        panic!("not upsert")
    };
    assert_eq!(tags, ["vip", "b"]);
    let cli = parse(&["contacts", "erase-client", "--phone", "+55 11 98765-4321", "--reason", "LGPD 118"]).unwrap();
    let Command::Contacts(ContactsCommand::EraseClient { phone, reason }) = cli.command else {
        panic!("not erase-client")
    };
    assert_eq!((phone.as_str(), reason.as_str()), ("+5511987654321", "LGPD 118"));
    assert!(parse(&["contacts", "erase-client", "--phone", "+5511987654321"]).is_err(), "--reason is required");
}

#[test]
fn a_page_of_templates_names_the_next_page() {
    let page = ListTemplatesResponse { templates: vec![Template::default()], next_page_token: "t2".into() };
    assert!(list_text(&page).contains("next page: --page-token t2"));
}
