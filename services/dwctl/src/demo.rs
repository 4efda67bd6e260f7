//! `dwctl demo seed`: idempotent demo data for one tenant, acting as `manager-1`.
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
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::auth;
use crate::cli::GlobalOpts;
use crate::output as out;
use crate::rpc::Rpc;

pub const DEFAULT_TENANT: &str = "demo";
pub const MANAGER: &str = "manager-1";
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

    let ttl = TOKEN_TTL_SECONDS;
    let manager = auth::mint(secret, &tenant, MANAGER, &[Role::Manager], ttl)?;
    let ana = auth::mint(secret, &tenant, "ana", &[Role::Agent], ttl)?;
    let bruno = auth::mint(secret, &tenant, "bruno", &[Role::Agent], ttl)?;
    if opts.json {
        let report = json!({
            "tenant": tenant,
            "addr": opts.addr,
            "tokenTtlSeconds": ttl,
            "tokens": { MANAGER: manager, "ana": ana, "bruno": bruno },
            "agents": agents.iter().map(|a| json!({
                "agentId": a.agent_id,
                "displayName": a.display_name,
                "departmentIds": a.department_ids,
                "permissions": a.permissions,
            })).collect::<Vec<_>>(),
        });
        out::write_line(&serde_json::to_string_pretty(&report)?)
    } else {
        out::write_line(&instructions(&tenant, &opts.addr, &ana, &manager))
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

/// The ready-to-paste commands printed after seeding.
pub fn instructions(tenant: &str, addr: &str, ana_token: &str, manager_token: &str) -> String {
    let addr_line = if addr == "http://127.0.0.1:50051" {
        String::new()
    } else {
        format!("export DW_AGENT_SESSIONS_ADDR={addr}\n")
    };
    format!(
        "\n\
Act as ana (agent; token valid 12h):

{addr_line}export DW_TOKEN={ana_token}
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

{addr_line}export DW_TOKEN={manager_token}
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
    )
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

    #[test]
    fn instructions_export_the_tokens_and_the_address_when_not_default() {
        let text = instructions("demo", "http://127.0.0.1:50051", "ANA", "MGR");
        assert!(text.contains("export DW_TOKEN=ANA\n"));
        assert!(text.contains("export DW_TOKEN=MGR\n"));
        assert!(!text.contains("DW_AGENT_SESSIONS_ADDR"));
        let text = instructions("demo", "http://10.0.0.5:50051", "ANA", "MGR");
        assert!(text.contains("export DW_AGENT_SESSIONS_ADDR=http://10.0.0.5:50051\n"));
    }
}
