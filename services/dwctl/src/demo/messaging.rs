//! messaging-templates' part of the seed: the WhatsApp and SMS templates missing from the tenant
//! (as the manager) and the CRM contacts (as the CRM); and the messaging examples.

use std::time::Duration;

use anyhow::{Context as _, Result};
use dw_proto::messaging::v1::contact_service_client::ContactServiceClient;
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_proto::messaging::v1::{
    Channel as MessagingChannel, Contact, CreateTemplateRequest, HeaderKind, ListTemplatesRequest, Template,
    TemplateCategory, TemplateContent, UpsertContactRequest,
};
use serde_json::{Value, json};

use super::{CRM_BOT, Seeding, Tokens, answered, connect_or_skip, export_addr, request_id};
use crate::messaging::channel;
use crate::output::{Printer, names};
use crate::rpc::{ClientTls, Rpc};

/// Where dwctl finds messaging-templates unless told otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50053";

/// One template of the demo (language pt_BR).
pub struct DemoTemplate {
    pub channel: MessagingChannel,
    pub name: &'static str,
    pub category: TemplateCategory,
    pub header_kind: HeaderKind,
    /// The header title (text) or image URL (image).
    pub header: &'static str,
    pub body: &'static str,
    pub footer: &'static str,
}

/// The default header image of `order_shipped` (a send may pass another).
pub const ORDER_SHIPPED_IMAGE: &str = "https://images.example.com/acme/order-shipped.jpg";

pub const TEMPLATES: [DemoTemplate; 4] = [
    DemoTemplate {
        channel: MessagingChannel::Whatsapp,
        name: "order_shipped",
        category: TemplateCategory::Utility,
        header_kind: HeaderKind::Image,
        header: ORDER_SHIPPED_IMAGE,
        body: "Olá {{1}}, seu pedido {{2}} saiu para entrega.",
        footer: "Acme",
    },
    DemoTemplate {
        channel: MessagingChannel::Whatsapp,
        name: "welcome",
        category: TemplateCategory::Utility,
        header_kind: HeaderKind::Text,
        header: "Bem-vindo",
        body: "Oi {{1}}, como podemos ajudar?",
        footer: "",
    },
    DemoTemplate {
        channel: MessagingChannel::Sms,
        name: "verification_code",
        category: TemplateCategory::Authentication,
        header_kind: HeaderKind::Unspecified,
        header: "",
        body: "Seu codigo de verificacao e {{1}}",
        footer: "",
    },
    DemoTemplate {
        channel: MessagingChannel::Sms,
        name: "appointment",
        category: TemplateCategory::Utility,
        header_kind: HeaderKind::Unspecified,
        header: "",
        body: "Lembrete: sua consulta e em {{1}} as {{2}}.",
        footer: "",
    },
];

/// One CRM contact of the demo.
pub struct DemoContact {
    pub name: &'static str,
    pub phone: &'static str,
    pub external_id: &'static str,
    pub tags: &'static [&'static str],
}

pub const CONTACTS: [DemoContact; 3] = [
    DemoContact { name: "José Silva", phone: "+5511987654321", external_id: "crm-1001", tags: &["vip"] },
    DemoContact { name: "Maria Conceição", phone: "+5511912345678", external_id: "crm-1002", tags: &[] },
    DemoContact { name: "João Pereira", phone: "+5511955554444", external_id: "crm-1003", tags: &["new"] },
];

/// The CreateTemplate request of a demo template (fixed request id).
pub fn template_request(tenant: &str, template: &DemoTemplate) -> CreateTemplateRequest {
    let (header_text, header_image_url) = match template.header_kind {
        HeaderKind::Text => (template.header, ""),
        HeaderKind::Image => ("", template.header),
        HeaderKind::Unspecified => ("", ""),
    };
    let channel = channel(template.channel as i32);
    CreateTemplateRequest {
        request_id: request_id(tenant, &format!("template-{channel}-{}", template.name)),
        channel: template.channel as i32,
        name: template.name.to_owned(),
        content: Some(TemplateContent {
            language: "pt_BR".to_owned(),
            category: template.category as i32,
            header_kind: template.header_kind as i32,
            header_text: header_text.to_owned(),
            header_image_url: header_image_url.to_owned(),
            body: template.body.to_owned(),
            footer: template.footer.to_owned(),
            default_metadata: [("source".to_owned(), "demo-seed".to_owned())].into_iter().collect(),
            ..Default::default()
        }),
    }
}

/// The UpsertContact request of a demo contact (fixed request id).
pub fn contact_request(tenant: &str, contact: &DemoContact) -> UpsertContactRequest {
    UpsertContactRequest {
        request_id: request_id(tenant, &format!("contact-{}", contact.phone.trim_start_matches('+'))),
        name: contact.name.to_owned(),
        phone: contact.phone.to_owned(),
        external_id: contact.external_id.to_owned(),
        tags: contact.tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// What seeding messaging-templates came to.
pub type Messaging = Seeding<MessagingSeed>;

/// The demo templates (each with whether this run created it) and contacts.
#[derive(Debug, Default)]
pub struct MessagingSeed {
    pub templates: Vec<(Template, bool)>,
    pub contacts: Vec<Contact>,
}

impl MessagingSeed {
    /// The id of the demo template `name` (`<name>` when it is missing).
    pub fn template_id(&self, name: &str) -> String {
        self.templates
            .iter()
            .find(|(t, _)| t.name == name)
            .map_or_else(|| format!("<{name}>"), |(t, _)| t.template_id.clone())
    }

    /// The id of the contact with `phone` (`<CONTACT_ID>` when it is missing).
    pub fn contact_id(&self, phone: &str) -> String {
        self.contacts
            .iter()
            .find(|c| c.phone == phone)
            .map_or_else(|| "<CONTACT_ID>".to_owned(), |c| c.contact_id.clone())
    }
}

/// Creates the demo templates missing from the tenant (as the manager) and upserts the demo
/// contacts (as the CRM), each with a fixed request id, unless the service does not answer.
pub async fn seed(addr: &str, tls: &ClientTls, tenant: &str, tokens: &Tokens, timeout: Duration) -> Result<Messaging> {
    let manager = match connect_or_skip(addr, tls, &tokens.manager, timeout).await {
        Ok(rpc) => rpc,
        Err(why) => return Ok(Seeding::Skipped(why)),
    };
    let mut templates = TemplateServiceClient::new(manager.channel.clone());
    let mut existing: Vec<Template> = Vec::new();
    let mut request = ListTemplatesRequest { page_size: 200, ..Default::default() };
    loop {
        let answer = templates.list_templates(manager.request(request.clone())).await;
        let page = match answered(answer, "listing the templates")? {
            Seeding::Seeded(page) => page,
            Seeding::Skipped(why) => return Ok(Seeding::Skipped(why)),
        };
        existing.extend(page.templates);
        if page.next_page_token.is_empty() || page.next_page_token == request.page_token {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let mut seed = MessagingSeed::default();
    for demo in &TEMPLATES {
        let found = existing.iter().find(|t| t.channel == demo.channel as i32 && t.name == demo.name && !t.archived);
        let entry = match found {
            Some(template) => (template.clone(), false),
            None => {
                let created = templates
                    .create_template(manager.request(template_request(tenant, demo)))
                    .await
                    .with_context(|| format!("creating the template {}", demo.name))?;
                (created.into_inner(), true)
            }
        };
        seed.templates.push(entry);
    }
    let crm = Rpc::connect(addr, tls, &tokens.crm_bot, Some(timeout), None).await?;
    let mut contacts = ContactServiceClient::new(crm.channel.clone());
    for demo in &CONTACTS {
        let contact = contacts
            .upsert_contact(crm.request(contact_request(tenant, demo)))
            .await
            .with_context(|| format!("upserting the contact {}", demo.name))?;
        seed.contacts.push(contact.into_inner());
    }
    Ok(Seeding::Seeded(seed))
}

/// Tells `log` every template (and whether this run created it) and every contact.
pub fn log_seeded(seeded: &MessagingSeed, addr: &str, log: &impl Fn(String) -> Result<()>) -> Result<()> {
    for (template, created) in &seeded.templates {
        log(format!(
            "  template {} {} ({addr}): {}{}",
            channel(template.channel),
            template.name,
            template.template_id,
            match (created, template.archived) {
                (_, true) => " (archived!)",
                (true, false) => " (created)",
                (false, false) => " (already there)",
            }
        ))?;
    }
    for contact in &seeded.contacts {
        log(format!("  contact {} {}: {}", contact.name, contact.phone, contact.contact_id))?;
    }
    Ok(())
}

/// The `--json` report of the seeded templates and contacts.
pub fn report(seeded: &MessagingSeed, printer: &Printer) -> Result<Value> {
    let templates =
        seeded.templates.iter().map(|(t, _)| printer.to_json(names::TEMPLATE, t)).collect::<Result<Vec<_>>>()?;
    let contacts = seeded.contacts.iter().map(|c| printer.to_json(names::CONTACT, c)).collect::<Result<Vec<_>>>()?;
    Ok(json!({ "templates": templates, "contacts": contacts }))
}

/// The messaging examples printed after seeding, with the seeded ids.
pub fn instructions(addr: &str, seeded: &MessagingSeed, tokens: &Tokens) -> String {
    let exports = export_addr("DW_MESSAGING_ADDR", addr, DEFAULT_ADDR);
    let Tokens { manager, ana, crm_bot, .. } = tokens;
    let order_shipped = seeded.template_id("order_shipped");
    let welcome = seeded.template_id("welcome");
    let verification_code = seeded.template_id("verification_code");
    let appointment = seeded.template_id("appointment");
    let jose = seeded.contact_id("+5511987654321");
    format!(
        "
Messaging (messaging-templates; under `make run` the sends go to the local fake providers, which
report WhatsApp messages delivered then read a moment later).

As ana: find a client, preview and send a WhatsApp template with a header image, follow it:

{exports}export DW_TOKEN={ana}
dwctl contacts search --name jose
dwctl templates list
dwctl templates preview --template-id {order_shipped} --var 'José' --var A-1234
dwctl templates send --template-id {order_shipped} --contact-id {jose} --var 'José' --var A-1234 \\
    --header-image-url https://images.example.com/acme/pedido-A-1234.jpg --metadata order=A-1234 \\
    --info 'Entrega expressa'
dwctl messages wait --message-id <MESSAGE_ID> --status delivered
dwctl messages get --message-id <MESSAGE_ID>
dwctl templates send --template-id {welcome} --phone +5511912345678 --var Maria

SMS templates: the encoding and segment count, then a send:

dwctl templates preview --template-id {appointment} --var 12/05 --var 14h30
dwctl templates preview --template-id {verification_code} --var '123456 ✅'
dwctl templates send --template-id {verification_code} --phone +5511955554444 --var 123456

As the manager, add a template; as the CRM ({CRM_BOT}), add a contact:

{exports}export DW_TOKEN={manager}
dwctl templates create --channel sms --name payment_reminder --language pt_BR --category utility \\
    --body 'Sua fatura de {{{{1}}}} vence em {{{{2}}}}.'
dwctl templates list --channel sms
export DW_TOKEN={crm_bot}
dwctl contacts upsert --name 'Carla Mendes' --phone +5511933332222 --external-id crm-1004 --tag new
dwctl events tail --stream DW_MESSAGING --from-start
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tests::{tokens, unused_addr};

    #[test]
    fn demo_templates_are_valid_requests_with_fixed_ids() {
        let requests: Vec<CreateTemplateRequest> = TEMPLATES.iter().map(|t| template_request("demo", t)).collect();
        let ids: Vec<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "seed-demo-template-whatsapp-order_shipped",
                "seed-demo-template-whatsapp-welcome",
                "seed-demo-template-sms-verification_code",
                "seed-demo-template-sms-appointment",
            ]
        );
        let order = requests[0].content.clone().unwrap();
        assert_eq!(requests[0].channel, MessagingChannel::Whatsapp as i32);
        assert_eq!((order.language.as_str(), order.category), ("pt_BR", TemplateCategory::Utility as i32));
        assert_eq!(order.header_kind, HeaderKind::Image as i32);
        assert_eq!((order.header_image_url.as_str(), order.header_text.as_str()), (ORDER_SHIPPED_IMAGE, ""));
        assert_eq!(order.body, "Olá {{1}}, seu pedido {{2}} saiu para entrega.");
        assert_eq!(order.footer, "Acme");
        let welcome = requests[1].content.clone().unwrap();
        assert_eq!((welcome.header_kind, welcome.header_text.as_str()), (HeaderKind::Text as i32, "Bem-vindo"));
        assert_eq!(welcome.body, "Oi {{1}}, como podemos ajudar?");
        for sms in &requests[2..] {
            let content = sms.content.clone().unwrap();
            assert_eq!(sms.channel, MessagingChannel::Sms as i32);
            assert_eq!(content.header_kind, HeaderKind::Unspecified as i32);
            assert!(content.header_text.is_empty() && content.header_image_url.is_empty() && content.footer.is_empty());
        }
        assert_eq!(requests[2].content.clone().unwrap().body, "Seu codigo de verificacao e {{1}}");
        assert_eq!(requests[3].content.clone().unwrap().body, "Lembrete: sua consulta e em {{1}} as {{2}}.");
        assert!(
            TEMPLATES.iter().all(|t| crate::parse::non_empty(t.name).is_ok()
                && t.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }

    #[test]
    fn demo_contacts_have_fixed_request_ids() {
        let requests: Vec<UpsertContactRequest> = CONTACTS.iter().map(|c| contact_request("demo", c)).collect();
        assert_eq!(requests[0].request_id, "seed-demo-contact-5511987654321");
        assert_eq!(requests[0].name, "José Silva");
        assert_eq!(requests[1].name, "Maria Conceição");
        assert_eq!(requests[2].phone, "+5511955554444");
        for request in &requests {
            assert_eq!(crate::parse::phone(&request.phone).as_ref(), Ok(&request.phone));
        }
    }

    #[test]
    fn messaging_examples_use_the_seeded_ids() {
        let template =
            |name: &str, id: &str| (Template { name: name.into(), template_id: id.into(), ..Default::default() }, true);
        let seeded = MessagingSeed {
            templates: vec![template("order_shipped", "T-ORDER"), template("verification_code", "T-CODE")],
            contacts: vec![Contact {
                phone: "+5511987654321".into(),
                contact_id: "C-JOSE".into(),
                ..Default::default()
            }],
        };
        let text = instructions(DEFAULT_ADDR, &seeded, &tokens());
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl contacts search --name jose\n"), "{text}");
        assert!(
            text.contains("dwctl templates send --template-id T-ORDER --contact-id C-JOSE --var 'José' --var A-1234"),
            "{text}"
        );
        assert!(text.contains("--header-image-url https://"), "{text}");
        assert!(text.contains("dwctl messages wait --message-id <MESSAGE_ID> --status delivered\n"), "{text}");
        assert!(text.contains("dwctl templates preview --template-id T-CODE"), "{text}");
        assert!(text.contains("--template-id <appointment>"), "missing ones are placeholders: {text}");
        assert!(text.contains("--body 'Sua fatura de {{1}} vence em {{2}}.'"), "{text}");
        assert!(!text.contains("DW_MESSAGING_ADDR"), "{text}");
        let text = instructions("http://10.0.0.5:50053", &seeded, &tokens());
        assert!(text.contains("export DW_MESSAGING_ADDR=http://10.0.0.5:50053\nexport DW_TOKEN=ANA"), "{text}");
    }

    #[tokio::test]
    async fn seeding_skips_messaging_when_nothing_listens() {
        let outcome =
            seed(&unused_addr(), &ClientTls::default(), "demo", &tokens(), Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Messaging::Skipped(_)), "{outcome:?}");
    }
}
