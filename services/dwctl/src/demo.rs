//! `dwctl demo seed`: idempotent demo data for one tenant, acting as `manager-1`: agent-sessions
//! first, then task-distribution's settings and messaging-templates' templates and CRM contacts
//! (as `crm-bot`), each when that service answers (agent-sessions alone is enough to seed).
//! notifications needs no data of its own (ana's `notifications.view` comes with every permission
//! of the catalog): when it answers, its examples are printed too.
//!
//! Every mutating call uses a fixed request id (`seed-<tenant>-…`), so re-running the seed is
//! harmless: the server answers a repeated request id from the same caller with its first result.
//! Agents, departments and permissions already in place are also skipped, and so are templates
//! whose channel and name an active template already has.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use dw_auth::Role;
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::{
    Agent, GetAgentRequest, GrantPermissionRequest, LinkDepartmentRequest, ListPermissionCatalogRequest, Reason,
    RegisterAgentRequest, TenantSettings, UpdateTenantSettingsRequest,
};
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_proto::distribution::v1::{DistributionSettings, UpdateDistributionSettingsRequest};
use dw_proto::messaging::v1::contact_service_client::ContactServiceClient;
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_proto::messaging::v1::{
    Channel as MessagingChannel, Contact, CreateTemplateRequest, HeaderKind, ListTemplatesRequest, Template,
    TemplateCategory, TemplateContent, UpsertContactRequest,
};
use dw_proto::notifications::v1::ListNotificationsRequest;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::auth;
use crate::cli::GlobalOpts;
use crate::output::{self as out, Printer, names};
use crate::rpc::{self, Rpc};

pub const DEFAULT_TENANT: &str = "demo";
pub const MANAGER: &str = "manager-1";
/// The service account of the demo's CRM, which creates tasks (role `service`).
pub const CRM_BOT: &str = "crm-bot";
/// The demo tenant's default agent capacity in task-distribution.
pub const DEFAULT_CAPACITY: i32 = 3;
/// Where the demo tenant's inbound client messages open tasks when they name no department.
pub const INBOUND_DEPARTMENT: &str = "support";
const DEFAULT_SESSIONS_ADDR: &str = "http://127.0.0.1:50051";
const DEFAULT_DISTRIBUTION_ADDR: &str = "http://127.0.0.1:50052";
const DEFAULT_MESSAGING_ADDR: &str = "http://127.0.0.1:50053";
const DEFAULT_NOTIFICATIONS_ADDR: &str = "http://127.0.0.1:50054";
const TOKEN_TTL_SECONDS: i64 = 12 * 3600;

/// One agent of the demo.
pub struct DemoAgent {
    pub id: &'static str,
    pub name: &'static str,
    pub departments: &'static [&'static str],
    /// `None`: every permission of the catalog.
    pub permissions: Option<&'static [&'static str]>,
}

pub const AGENTS: [DemoAgent; 2] = [
    DemoAgent { id: "ana", name: "Ana Lima", departments: &["sales", "support"], permissions: None },
    DemoAgent {
        id: "bruno",
        name: "Bruno Costa",
        departments: &["support"],
        permissions: Some(&["protocols.search", "templates.sms.send"]),
    },
];

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
        header_kind: HeaderKind::None,
        header: "",
        body: "Seu codigo de verificacao e {{1}}",
        footer: "",
    },
    DemoTemplate {
        channel: MessagingChannel::Sms,
        name: "appointment",
        category: TemplateCategory::Utility,
        header_kind: HeaderKind::None,
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
        HeaderKind::None => ("", ""),
    };
    let channel = crate::messaging::channel(template.channel as i32);
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

fn reasons(pairs: &[(&str, &str)]) -> Vec<Reason> {
    pairs.iter().map(|(id, label)| Reason { id: (*id).to_owned(), label: (*label).to_owned() }).collect()
}

/// The demo tenant settings.
pub fn settings() -> TenantSettings {
    TenantSettings {
        auto_distribution_enabled: true,
        exit_reasons: reasons(&[("end-of-shift", "End of shift"), ("meeting", "Meeting"), ("training", "Training")]),
        break_reasons: reasons(&[("lunch", "Lunch"), ("coffee", "Coffee"), ("restroom", "Restroom")]),
        ticket_workspace_url: "https://tickets.example.com/workspace".to_owned(),
        version: 0,
    }
}

/// The fixed request id of one seed step: `seed-<tenant>-<step>`.
pub fn request_id(tenant: &str, step: &str) -> String {
    format!("seed-{tenant}-{step}")
}

pub async fn seed(opts: &GlobalOpts, timeout: Duration) -> Result<()> {
    let tenant = opts.tenant.clone().unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let secret = opts.secret.as_deref().ok_or_else(|| anyhow!("demo seed needs --secret (DW_JWT_SECRET)"))?;
    let manager_token = auth::mint(secret, &tenant, MANAGER, &[Role::Manager], TOKEN_TTL_SECONDS)?;
    let rpc = Rpc::connect(&opts.addr, &manager_token, Some(timeout), None).await?;
    let mut client = AgentAdminServiceClient::new(rpc.channel.clone());
    let log = |line: String| if opts.json { Ok(()) } else { out::write_line(&line) };

    log(format!("seeding tenant {tenant} on {} as {MANAGER}", opts.addr))?;
    let request =
        UpdateTenantSettingsRequest { request_id: request_id(&tenant, "settings"), settings: Some(settings()) };
    let applied = client.update_tenant_settings(rpc.request(request)).await.context("updating tenant settings")?;
    let applied = applied.into_inner();
    log(format!(
        "  settings: auto distribution {}, {} exit reasons, {} break reasons, ticket workspace {}",
        if applied.auto_distribution_enabled { "on" } else { "off" },
        applied.exit_reasons.len(),
        applied.break_reasons.len(),
        applied.ticket_workspace_url
    ))?;

    let catalog = client
        .list_permission_catalog(rpc.request(ListPermissionCatalogRequest {}))
        .await
        .context("listing the permission catalog")?
        .into_inner();
    let everything: Vec<String> = catalog.permissions.into_iter().map(|p| p.permission).collect();

    let mut agents = Vec::new();
    for agent in &AGENTS {
        let permissions: Vec<String> = match agent.permissions {
            Some(list) => list.iter().map(|p| (*p).to_owned()).collect(),
            None => everything.clone(),
        };
        let seeded = seed_agent(&mut client, &rpc, &tenant, agent, &permissions)
            .await
            .with_context(|| format!("seeding agent {}", agent.id))?;
        log(format!(
            "  agent {} ({}): departments {}; permissions {}",
            seeded.agent_id,
            seeded.display_name,
            seeded.department_ids.join(", "),
            seeded.permissions.join(", ")
        ))?;
        agents.push(seeded);
    }

    let distribution = seed_distribution(&opts.distribution_addr, &tenant, &manager_token, timeout).await?;
    match &distribution {
        Distribution::Seeded(settings) => log(format!(
            "  distribution ({}): default capacity {}, inbound department {}, auto distribution {}",
            opts.distribution_addr,
            settings.default_capacity,
            settings.inbound_department_id,
            if settings.auto_distribution_enabled { "on" } else { "off" }
        ))?,
        Distribution::Skipped(why) => eprintln!(
            "note: task-distribution at {} does not answer ({why}); its settings and the task examples are \
             skipped (seed again once it runs)",
            opts.distribution_addr
        ),
    }

    let ttl = TOKEN_TTL_SECONDS;
    let tokens = Tokens {
        manager: auth::mint(secret, &tenant, MANAGER, &[Role::Manager], ttl)?,
        ana: auth::mint(secret, &tenant, "ana", &[Role::Agent], ttl)?,
        bruno: auth::mint(secret, &tenant, "bruno", &[Role::Agent], ttl)?,
        crm_bot: auth::mint(secret, &tenant, CRM_BOT, &[Role::Service], ttl)?,
    };

    let messaging = seed_messaging(&opts.messaging_addr, &tenant, &tokens, timeout).await?;
    match &messaging {
        Messaging::Seeded(seeded) => {
            for (template, created) in &seeded.templates {
                log(format!(
                    "  template {} {} ({}): {}{}",
                    crate::messaging::channel(template.channel),
                    template.name,
                    opts.messaging_addr,
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
        }
        Messaging::Skipped(why) => eprintln!(
            "note: messaging-templates at {} does not answer ({why}); its templates, contacts and the messaging \
             examples are skipped (seed again once it runs)",
            opts.messaging_addr
        ),
    }

    let notifications = probe_notifications(&opts.notifications_addr, &tokens.manager, timeout).await?;
    match &notifications {
        Notifications::Answering => log(format!("  notifications ({}): answering", opts.notifications_addr))?,
        Notifications::Skipped(why) => eprintln!(
            "note: notifications at {} does not answer ({why}); the notification examples are skipped (seed again \
             once it runs)",
            opts.notifications_addr
        ),
    }

    if opts.json {
        let distribution = match &distribution {
            Distribution::Seeded(settings) => json!({
                "addr": opts.distribution_addr,
                "settings": Printer::new(true)?.to_json(names::DISTRIBUTION_SETTINGS, settings)?,
            }),
            Distribution::Skipped(why) => json!({ "addr": opts.distribution_addr, "skipped": why }),
        };
        let report = json!({
            "tenant": tenant,
            "addr": opts.addr,
            "tokenTtlSeconds": ttl,
            "tokens": { MANAGER: tokens.manager, "ana": tokens.ana, "bruno": tokens.bruno, CRM_BOT: tokens.crm_bot },
            "agents": agents.iter().map(|a| json!({
                "agentId": a.agent_id,
                "displayName": a.display_name,
                "departmentIds": a.department_ids,
                "permissions": a.permissions,
            })).collect::<Vec<_>>(),
            "distribution": distribution,
            "messaging": messaging_report(&opts.messaging_addr, &messaging)?,
            "notifications": match &notifications {
                Notifications::Answering => json!({ "addr": opts.notifications_addr }),
                Notifications::Skipped(why) => json!({ "addr": opts.notifications_addr, "skipped": why }),
            },
        });
        out::write_line(&serde_json::to_string_pretty(&report)?)
    } else {
        let distribution_addr = match distribution {
            Distribution::Seeded(_) => Some(opts.distribution_addr.as_str()),
            Distribution::Skipped(_) => None,
        };
        let mut text = instructions(&tenant, &opts.addr, distribution_addr, &tokens);
        if let Messaging::Seeded(seeded) = &messaging {
            text.push_str(&messaging_instructions(&opts.messaging_addr, seeded, &tokens));
        }
        if let Notifications::Answering = notifications {
            let with_tasks = distribution_addr.is_some();
            text.push_str(&notifications_instructions(&tenant, &opts.notifications_addr, with_tasks, &tokens));
        }
        out::write_line(&text)
    }
}

/// What seeding messaging-templates came to.
#[derive(Debug)]
pub enum Messaging {
    Seeded(MessagingSeed),
    /// The service does not answer: why.
    Skipped(String),
}

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

fn skipped(status: &tonic::Status) -> String {
    let mut why = rpc::code_name(status.code()).to_owned();
    if !status.message().is_empty() {
        why.push_str(&format!(": {}", status.message()));
    }
    if status.code() == Code::Unauthenticated {
        why.push_str("; is it signed with another DW_JWT_SECRET?");
    }
    why
}

/// Creates the demo templates missing from the tenant (as the manager) and upserts the demo
/// contacts (as the CRM), each with a fixed request id, unless the service does not answer.
async fn seed_messaging(addr: &str, tenant: &str, tokens: &Tokens, timeout: Duration) -> Result<Messaging> {
    let manager = match Rpc::connect(addr, &tokens.manager, Some(timeout), None).await {
        Ok(rpc) => rpc,
        Err(err) => return Ok(Messaging::Skipped(format!("{err:#}"))),
    };
    let mut templates = TemplateServiceClient::new(manager.channel.clone());
    let mut existing: Vec<Template> = Vec::new();
    let mut request = ListTemplatesRequest { page_size: 200, ..Default::default() };
    loop {
        let page = match templates.list_templates(manager.request(request.clone())).await {
            Ok(page) => page.into_inner(),
            Err(status) if not_answering(status.code()) => return Ok(Messaging::Skipped(skipped(&status))),
            Err(status) => return Err(anyhow::Error::new(status).context("listing the templates")),
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
    let crm = Rpc::connect(addr, &tokens.crm_bot, Some(timeout), None).await?;
    let mut contacts = ContactServiceClient::new(crm.channel.clone());
    for demo in &CONTACTS {
        let contact = contacts
            .upsert_contact(crm.request(contact_request(tenant, demo)))
            .await
            .with_context(|| format!("upserting the contact {}", demo.name))?;
        seed.contacts.push(contact.into_inner());
    }
    Ok(Messaging::Seeded(seed))
}

fn messaging_report(addr: &str, messaging: &Messaging) -> Result<serde_json::Value> {
    Ok(match messaging {
        Messaging::Seeded(seeded) => {
            let printer = Printer::new(true)?;
            let templates = seeded
                .templates
                .iter()
                .map(|(t, _)| printer.to_json(names::TEMPLATE, t))
                .collect::<Result<Vec<_>>>()?;
            let contacts =
                seeded.contacts.iter().map(|c| printer.to_json(names::CONTACT, c)).collect::<Result<Vec<_>>>()?;
            json!({ "addr": addr, "templates": templates, "contacts": contacts })
        }
        Messaging::Skipped(why) => json!({ "addr": addr, "skipped": why }),
    })
}

/// The messaging examples printed after seeding, with the seeded ids.
pub fn messaging_instructions(addr: &str, seeded: &MessagingSeed, tokens: &Tokens) -> String {
    let exports =
        if addr == DEFAULT_MESSAGING_ADDR { String::new() } else { format!("export DW_MESSAGING_ADDR={addr}\n") };
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

/// Whether notifications answers (it needs no seed data of its own).
#[derive(Debug)]
pub enum Notifications {
    Answering,
    /// The service does not answer: why.
    Skipped(String),
}

/// Asks notifications for one page of the log as the manager (no permission needed), which tells
/// whether it runs and accepts this cluster's tokens.
async fn probe_notifications(addr: &str, manager_token: &str, timeout: Duration) -> Result<Notifications> {
    let rpc = match Rpc::connect(addr, manager_token, Some(timeout), None).await {
        Ok(rpc) => rpc,
        Err(err) => return Ok(Notifications::Skipped(format!("{err:#}"))),
    };
    let mut client = NotificationServiceClient::new(rpc.channel.clone());
    let request = ListNotificationsRequest { page_size: 1, ..Default::default() };
    match client.list_notifications(rpc.request(request)).await {
        Ok(_) => Ok(Notifications::Answering),
        Err(status) if not_answering(status.code()) => Ok(Notifications::Skipped(skipped(&status))),
        Err(status) => Err(anyhow::Error::new(status).context("listing the notifications")),
    }
}

/// The notification examples printed after seeding; the live example with a client writing only
/// when task-distribution was seeded (`with_tasks`: the message lands on a task assigned to ana).
pub fn notifications_instructions(tenant: &str, addr: &str, with_tasks: bool, tokens: &Tokens) -> String {
    let exports = if addr == DEFAULT_NOTIFICATIONS_ADDR {
        String::new()
    } else {
        format!("export DW_NOTIFICATIONS_ADDR={addr}\n")
    };
    let Tokens { manager, ana, .. } = tokens;
    let mut text = format!(
        "
Notifications (notifications): the single-notifications log (every template sent, with its status
timeline) and each agent's live notifications (a client writes on one of their tasks, a task is
assigned to them, a send of theirs failed).

As ana (permission notifications.view): the WhatsApp templates you sent, then one with its timeline:

{exports}export DW_TOKEN={ana}
dwctl notifications list --channel whatsapp
dwctl notifications list --channel sms --status failed
dwctl notifications get --message-id <MESSAGE_ID>

As ana, in a terminal of its own: your notifications as they happen (stopping prints the last
sequence; resume with --after <SEQUENCE> to get exactly what you missed):

{exports}export DW_TOKEN={ana}
"
    );
    if with_tasks {
        text.push_str("dwctl day start\n");
    }
    text.push_str("dwctl notifications subscribe\n");
    if with_tasks {
        text.push_str(&format!(
            "
A client writes: ana's subscription shows the task assigned to her, then the message:

dwctl demo inbound --tenant {tenant} --phone +5511987654321 --name 'José Silva' --text 'Olá, preciso de ajuda'
"
        ));
    }
    text.push_str(&format!(
        "
As the manager, the whole tenant's log:

{exports}export DW_TOKEN={manager}
dwctl notifications list --agent ana --all
dwctl notifications list --channel whatsapp --status read --from $(date -u +%F)
"
    ));
    text
}

/// What seeding task-distribution came to.
#[derive(Debug)]
pub enum Distribution {
    Seeded(DistributionSettings),
    /// The service does not answer (not running yet, or not this cluster's): why.
    Skipped(String),
}

/// Whether a gRPC error means "task-distribution is not (really) there", which skips its part
/// of the seed, rather than a failure of the seed itself.
pub fn not_answering(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unimplemented | Code::DeadlineExceeded | Code::Unauthenticated)
}

/// Sets the tenant's default capacity (fixed request id), unless the service does not answer.
async fn seed_distribution(addr: &str, tenant: &str, manager_token: &str, timeout: Duration) -> Result<Distribution> {
    let rpc = match Rpc::connect(addr, manager_token, Some(timeout), None).await {
        Ok(rpc) => rpc,
        Err(err) => return Ok(Distribution::Skipped(format!("{err:#}"))),
    };
    let mut client = DistributionServiceClient::new(rpc.channel.clone());
    let request = UpdateDistributionSettingsRequest {
        request_id: request_id(tenant, "distribution-settings"),
        default_capacity: Some(DEFAULT_CAPACITY),
        inbound_department_id: Some(INBOUND_DEPARTMENT.to_owned()),
    };
    match client.update_distribution_settings(rpc.request(request)).await {
        Ok(settings) => Ok(Distribution::Seeded(settings.into_inner())),
        Err(status) if not_answering(status.code()) => Ok(Distribution::Skipped(skipped(&status))),
        Err(status) => Err(anyhow::Error::new(status).context("updating the distribution settings")),
    }
}

/// Registers `agent` if needed, then links the missing departments and grants the missing
/// permissions, each with its fixed request id.
async fn seed_agent(
    client: &mut AgentAdminServiceClient<Channel>,
    rpc: &Rpc,
    tenant: &str,
    agent: &DemoAgent,
    permissions: &[String],
) -> Result<Agent> {
    let mut current = match client.get_agent(rpc.request(GetAgentRequest { agent_id: agent.id.to_owned() })).await {
        Ok(found) => found.into_inner(),
        Err(status) if status.code() == Code::NotFound => {
            let request = RegisterAgentRequest {
                request_id: request_id(tenant, &format!("register-{}", agent.id)),
                agent_id: agent.id.to_owned(),
                display_name: agent.name.to_owned(),
            };
            client.register_agent(rpc.request(request)).await?.into_inner()
        }
        Err(status) => return Err(status.into()),
    };
    for department in agent.departments {
        if current.department_ids.iter().any(|d| d == department) {
            continue;
        }
        let request = LinkDepartmentRequest {
            request_id: request_id(tenant, &format!("link-{}-{department}", agent.id)),
            agent_id: agent.id.to_owned(),
            department_id: (*department).to_owned(),
        };
        current = client.link_department(rpc.request(request)).await?.into_inner();
    }
    for permission in permissions {
        if current.permissions.contains(permission) {
            continue;
        }
        let request = GrantPermissionRequest {
            request_id: request_id(tenant, &format!("grant-{}-{permission}", agent.id)),
            agent_id: agent.id.to_owned(),
            permission: permission.clone(),
        };
        current = client.grant_permission(rpc.request(request)).await?.into_inner();
    }
    Ok(current)
}

/// The tokens printed after seeding.
pub struct Tokens {
    pub manager: String,
    pub ana: String,
    pub bruno: String,
    pub crm_bot: String,
}

/// The ready-to-paste commands printed after seeding; the task examples only when
/// task-distribution (at `distribution_addr`) was seeded.
pub fn instructions(tenant: &str, addr: &str, distribution_addr: Option<&str>, tokens: &Tokens) -> String {
    let mut exports = String::new();
    if addr != DEFAULT_SESSIONS_ADDR {
        exports.push_str(&format!("export DW_AGENT_SESSIONS_ADDR={addr}\n"));
    }
    if let Some(distribution_addr) = distribution_addr.filter(|a| *a != DEFAULT_DISTRIBUTION_ADDR) {
        exports.push_str(&format!("export DW_TASK_DISTRIBUTION_ADDR={distribution_addr}\n"));
    }
    let Tokens { manager, ana, crm_bot, .. } = tokens;
    let mut text = format!(
        "\n\
Act as ana (agent; token valid 12h):

{exports}export DW_TOKEN={ana}
dwctl day start
dwctl day state
dwctl day break-reasons
dwctl day start-break --reason lunch
dwctl day end-break --confirm
dwctl day notify-exit --reason end-of-shift
dwctl day cancel-exit
dwctl day info
dwctl day end

Act as the manager ({MANAGER}; token valid 12h):

{exports}export DW_TOKEN={manager}
dwctl admin statuses
dwctl admin watch
dwctl admin get-agent --agent bruno
dwctl admin get-settings

Mint other tokens yourself (DW_JWT_SECRET set), e.g. as bruno:

dwctl token --tenant {tenant} --sub bruno --role agent
dwctl --tenant {tenant} --sub bruno --role agent day start

Watch the events:

dwctl events tail --from-start
"
    );
    if distribution_addr.is_none() {
        return text;
    }
    text.push_str(&format!(
        "
Tasks (task-distribution; default capacity {DEFAULT_CAPACITY} tasks per agent; inbound messages naming no
department go to {INBOUND_DEPARTMENT}).

As ana, in a terminal of its own: start the day, then watch the tasks you get:

{exports}export DW_TOKEN={ana}
dwctl day start
dwctl tasks watch
dwctl tasks mine
dwctl tasks complete --task-id <TASK_ID>

As the CRM ({CRM_BOT}, role service; token valid 12h), create a task:

{exports}export DW_TOKEN={crm_bot}
dwctl tasks create --department support --channel whatsapp --client-name 'Maria Souza' \\
    --phone +5511912345678 --priority 5 --subject 'Order 1234'
dwctl tasks get --protocol <PROTOCOL>

A client writes (the event the messaging service will publish; NATS only, no token):

dwctl demo inbound --tenant {tenant} --phone +5511987654321 --name 'Joao Pereira' --text 'Hello, I need help'

As the manager:

{exports}export DW_TOKEN={manager}
dwctl tasks stats
dwctl tasks search --client-name maria
dwctl tasks explain --task-id <TASK_ID>
dwctl tasks settings get
dwctl tasks capacity --agent ana --capacity 5
dwctl events tail --stream DW_DISTRIBUTION --from-start
"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fixed_per_tenant_and_step() {
        assert_eq!(request_id("demo", "register-ana"), "seed-demo-register-ana");
        assert_eq!(request_id("acme", "grant-bruno-protocols.search"), "seed-acme-grant-bruno-protocols.search");
    }

    #[test]
    fn demo_settings_match_the_script() {
        let settings = settings();
        assert!(settings.auto_distribution_enabled);
        let exits: Vec<&str> = settings.exit_reasons.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(exits, ["end-of-shift", "meeting", "training"]);
        let breaks: Vec<&str> = settings.break_reasons.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(breaks, ["Lunch", "Coffee", "Restroom"]);
        assert_eq!(settings.ticket_workspace_url, "https://tickets.example.com/workspace");
    }

    fn tokens() -> Tokens {
        Tokens { manager: "MGR".into(), ana: "ANA".into(), bruno: "BRUNO".into(), crm_bot: "CRM".into() }
    }

    #[test]
    fn instructions_export_the_tokens_and_the_address_when_not_default() {
        let text = instructions("demo", "http://127.0.0.1:50051", None, &tokens());
        assert!(text.contains("export DW_TOKEN=ANA\n"));
        assert!(text.contains("export DW_TOKEN=MGR\n"));
        assert!(!text.contains("DW_AGENT_SESSIONS_ADDR"));
        let text = instructions("demo", "http://10.0.0.5:50051", None, &tokens());
        assert!(text.contains("export DW_AGENT_SESSIONS_ADDR=http://10.0.0.5:50051\n"));
    }

    #[test]
    fn task_examples_only_when_task_distribution_was_seeded() {
        let text = instructions("demo", "http://127.0.0.1:50051", None, &tokens());
        assert!(!text.contains("tasks") && !text.contains("CRM"), "{text}");
        let text = instructions("demo", "http://127.0.0.1:50051", Some("http://127.0.0.1:50052"), &tokens());
        assert!(text.contains("export DW_TOKEN=CRM\ndwctl tasks create --department support"), "{text}");
        assert!(text.contains("dwctl day start\ndwctl tasks watch\n"), "{text}");
        assert!(text.contains("dwctl demo inbound --tenant demo --phone +5511987654321"), "{text}");
        assert!(text.contains("dwctl tasks stats\n"), "{text}");
        assert!(!text.contains("DW_TASK_DISTRIBUTION_ADDR"), "{text}");
        let text = instructions("demo", "http://127.0.0.1:50051", Some("http://10.0.0.5:50052"), &tokens());
        assert!(text.contains("export DW_TASK_DISTRIBUTION_ADDR=http://10.0.0.5:50052\nexport DW_TOKEN=ANA"));
    }

    #[test]
    fn an_absent_task_distribution_skips_while_real_errors_fail() {
        assert!(not_answering(Code::Unavailable));
        assert!(not_answering(Code::Unimplemented));
        assert!(not_answering(Code::DeadlineExceeded));
        assert!(not_answering(Code::Unauthenticated));
        assert!(!not_answering(Code::InvalidArgument));
        assert!(!not_answering(Code::PermissionDenied));
        assert_eq!(request_id("demo", "distribution-settings"), "seed-demo-distribution-settings");
    }

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
            assert_eq!(content.header_kind, HeaderKind::None as i32);
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
        let text = messaging_instructions(DEFAULT_MESSAGING_ADDR, &seeded, &tokens());
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
        let text = messaging_instructions("http://10.0.0.5:50053", &seeded, &tokens());
        assert!(text.contains("export DW_MESSAGING_ADDR=http://10.0.0.5:50053\nexport DW_TOKEN=ANA"), "{text}");
    }

    #[test]
    fn ana_gets_every_permission_of_the_catalog_notifications_view_included() {
        // `None` grants the whole catalog listed from agent-sessions, which has notifications.view.
        let ana = AGENTS.iter().find(|a| a.id == "ana").unwrap();
        assert!(ana.permissions.is_none());
        assert!(ana.departments.contains(&INBOUND_DEPARTMENT));
    }

    #[test]
    fn notification_examples_list_and_subscribe_as_ana() {
        let text = notifications_instructions("demo", DEFAULT_NOTIFICATIONS_ADDR, true, &tokens());
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl notifications list --channel whatsapp\n"), "{text}");
        assert!(text.contains("dwctl notifications get --message-id <MESSAGE_ID>\n"), "{text}");
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl day start\ndwctl notifications subscribe\n"), "{text}");
        assert!(text.contains("dwctl demo inbound --tenant demo --phone +5511987654321"), "{text}");
        assert!(text.contains("export DW_TOKEN=MGR\ndwctl notifications list --agent ana --all\n"), "{text}");
        assert!(!text.contains("DW_NOTIFICATIONS_ADDR"), "{text}");
        let text = notifications_instructions("acme", "http://10.0.0.5:50054", false, &tokens());
        assert!(text.contains("export DW_NOTIFICATIONS_ADDR=http://10.0.0.5:50054\nexport DW_TOKEN=ANA\n"), "{text}");
        assert!(text.contains("export DW_TOKEN=ANA\ndwctl notifications subscribe\n"), "{text}");
        assert!(!text.contains("demo inbound") && !text.contains("day start"), "no tasks, no client: {text}");
    }

    #[tokio::test]
    async fn seeding_skips_notifications_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("http://127.0.0.1:{port}");
        let outcome = probe_notifications(&addr, "token", Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Notifications::Skipped(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn seeding_skips_messaging_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("http://127.0.0.1:{port}");
        let outcome = seed_messaging(&addr, "demo", &tokens(), Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Messaging::Skipped(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn seeding_skips_task_distribution_when_nothing_listens() {
        // A port that was free a moment ago: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("http://127.0.0.1:{port}");
        let outcome = seed_distribution(&addr, "demo", "token", Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Distribution::Skipped(_)), "{outcome:?}");
    }
}
