//! `dwctl demo seed`: idempotent demo data for one tenant, acting as `manager-1`: agent-sessions
//! first, then task-distribution's settings when that service answers (agent-sessions alone is
//! enough to seed).
//!
//! Every mutating call uses a fixed request id (`seed-<tenant>-…`), so re-running the seed is
//! harmless: the server answers a repeated request id from the same caller with its first result.
//! Agents, departments and permissions already in place are also skipped.

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
        });
        out::write_line(&serde_json::to_string_pretty(&report)?)
    } else {
        let distribution_addr = match distribution {
            Distribution::Seeded(_) => Some(opts.distribution_addr.as_str()),
            Distribution::Skipped(_) => None,
        };
        out::write_line(&instructions(&tenant, &opts.addr, distribution_addr, &tokens))
    }
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
        Err(status) if not_answering(status.code()) => {
            let mut why = rpc::code_name(status.code()).to_owned();
            if !status.message().is_empty() {
                why.push_str(&format!(": {}", status.message()));
            }
            if status.code() == Code::Unauthenticated {
                why.push_str("; is it signed with another DW_JWT_SECRET?");
            }
            Ok(Distribution::Skipped(why))
        }
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

    #[tokio::test]
    async fn seeding_skips_task_distribution_when_nothing_listens() {
        // A port that was free a moment ago: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("http://127.0.0.1:{port}");
        let outcome = seed_distribution(&addr, "demo", "token", Duration::from_secs(2)).await.unwrap();
        assert!(matches!(outcome, Distribution::Skipped(_)), "{outcome:?}");
    }
}
