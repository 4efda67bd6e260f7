//! agent-sessions' part of the seed, acting as the manager: the tenant settings, then agents ana
//! and bruno with their departments and permissions; and the examples of acting as them.

use std::time::Duration;

use anyhow::{Context as _, Result};
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::{
    Agent, GetAgentRequest, GrantPermissionRequest, LinkDepartmentRequest, ListPermissionCatalogRequest, Reason,
    RegisterAgentRequest, TenantSettings, UpdateTenantSettingsRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use super::{MANAGER, Tokens, request_id};
use crate::output as out;
use crate::rpc::{ClientTls, Rpc};

/// Where dwctl finds agent-sessions unless told otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

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
        // UTC, and a break names one of the reasons above (`dwctl admin set-settings --time-zone
        // America/Sao_Paulo --break-reason-optional true` changes either).
        time_zone: "UTC".to_owned(),
        break_reason_optional: false,
    }
}

/// Seeds agent-sessions at `addr` as the manager: the tenant settings, then each demo agent, each
/// step told to `log`.
pub async fn seed(
    addr: &str,
    tls: &ClientTls,
    tenant: &str,
    manager_token: &str,
    timeout: Duration,
    log: &impl Fn(String) -> Result<()>,
) -> Result<Vec<Agent>> {
    let rpc = Rpc::connect(addr, tls, manager_token, Some(timeout), None).await?;
    let mut client = AgentAdminServiceClient::new(rpc.channel.clone());

    log(format!("seeding tenant {tenant} on {addr} as {MANAGER}"))?;
    // `*`: the demo tenant's settings are exactly these. (A new step name: a database seeded
    // before masks holds "settings" for the request without one.)
    let request = UpdateTenantSettingsRequest {
        request_id: request_id(tenant, "settings-all"),
        settings: Some(settings()),
        update_mask: Some(crate::admin::field_mask(&["*"])),
        expected_version: None,
    };
    let applied = client.update_tenant_settings(rpc.request(request)).await.context("updating tenant settings")?;
    let applied = applied.into_inner();
    log(format!(
        "  settings: auto distribution {}, {} exit reasons, {} break reasons, ticket workspace {}",
        out::on_off(applied.auto_distribution_enabled),
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
        let seeded = seed_agent(&mut client, &rpc, tenant, agent, &permissions)
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
    Ok(agents)
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

/// The examples of acting as ana and as the manager (`exports`: the addresses to export first).
pub fn instructions(tenant: &str, exports: &str, tokens: &Tokens) -> String {
    let Tokens { manager, ana, .. } = tokens;
    format!(
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::distribution::INBOUND_DEPARTMENT;

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
    fn ana_gets_every_permission_of_the_catalog_notifications_view_included() {
        // `None` grants the whole catalog listed from agent-sessions, which has notifications.view.
        let ana = AGENTS.iter().find(|a| a.id == "ana").unwrap();
        assert!(ana.permissions.is_none());
        assert!(ana.departments.contains(&INBOUND_DEPARTMENT));
    }
}
