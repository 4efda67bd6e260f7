//! `dwctl admin …`: AgentAdminService, for managers.

use crate::cli::{AdminCommand, SetSettingsArgs};
use crate::day::{reasons_table, ticket_workspace};
use crate::output::{self as out, Printer, names};
use crate::rpc::Rpc;
use crate::{paging, streaming};
use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::{
    Agent, AgentStatusView, GetAgentRequest, GetTenantSettingsRequest, GrantPermissionRequest, LinkDepartmentRequest,
    ListAgentStatusesRequest, ListAgentStatusesResponse, ListPermissionCatalogRequest, ListPermissionCatalogResponse,
    RegisterAgentRequest, RevokePermissionRequest, TenantSettings, UnlinkDepartmentRequest,
    UpdateTenantSettingsRequest, WatchAgentStatusesRequest,
};

pub async fn run(command: AdminCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = AgentAdminServiceClient::new(rpc.channel.clone());
    match command {
        AdminCommand::RegisterAgent { agent, name } => {
            let request = RegisterAgentRequest { request_id: rpc.request_id(), agent_id: agent, display_name: name };
            print_agent(printer, &client.register_agent(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::GetAgent { agent } => {
            let request = GetAgentRequest { agent_id: agent };
            print_agent(printer, &client.get_agent(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::LinkDepartment { agent, department } => {
            let request =
                LinkDepartmentRequest { request_id: rpc.request_id(), agent_id: agent, department_id: department };
            print_agent(printer, &client.link_department(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::UnlinkDepartment { agent, department } => {
            let request =
                UnlinkDepartmentRequest { request_id: rpc.request_id(), agent_id: agent, department_id: department };
            print_agent(printer, &client.unlink_department(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::Grant { agent, permission } => {
            let request = GrantPermissionRequest { request_id: rpc.request_id(), agent_id: agent, permission };
            print_agent(printer, &client.grant_permission(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::Revoke { agent, permission } => {
            let request = RevokePermissionRequest { request_id: rpc.request_id(), agent_id: agent, permission };
            print_agent(printer, &client.revoke_permission(rpc.request(request)).await?.into_inner())
        }
        AdminCommand::Catalog => {
            let response = client.list_permission_catalog(rpc.request(ListPermissionCatalogRequest {})).await?;
            printer.emit(names::PERMISSION_CATALOG, &response.into_inner(), catalog_text)
        }
        AdminCommand::GetSettings => {
            let response = client.get_tenant_settings(rpc.request(GetTenantSettingsRequest {})).await?;
            printer.emit(names::TENANT_SETTINGS, &response.into_inner(), settings_text)
        }
        AdminCommand::SetSettings(args) => {
            let mut request = settings_update(args)?;
            request.request_id = rpc.request_id();
            let response = client.update_tenant_settings(rpc.request(request)).await?;
            printer.emit(names::TENANT_SETTINGS, &response.into_inner(), settings_text)
        }
        AdminCommand::Statuses { department, page_size, page_token } => {
            // Every page, unless one page is asked for by its token.
            let follow = page_token.is_none();
            let request = ListAgentStatusesRequest {
                department_id: department.unwrap_or_default(),
                page_size: page_size.unwrap_or(0),
                page_token: page_token.unwrap_or_default(),
            };
            let all = paging::collect(request, follow, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_agent_statuses(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            let now = Utc::now();
            printer.emit(names::AGENT_STATUSES, &all, |all| statuses_text(all, now))
        }
        AdminCommand::Watch { department, limit } => {
            let request = WatchAgentStatusesRequest { department_id: department.unwrap_or_default() };
            let stream = client.watch_agent_statuses(rpc.stream_request(request)).await?.into_inner();
            printer.note("watching agent statuses (Ctrl-C to stop)");
            streaming::print_each(stream, limit, |view| {
                printer.emit_line(names::AGENT_STATUS_VIEW, &view, |view| watch_line(view, Utc::now()))
            })
            .await
        }
    }
}

/// The update the given options ask for: their values, and a mask naming exactly them, so the
/// server keeps every setting not given (no read-modify-write that could undo another manager's
/// change). The request id is the caller's to set.
pub fn settings_update(args: SetSettingsArgs) -> Result<UpdateTenantSettingsRequest> {
    let mut settings = TenantSettings::default();
    let mut paths = Vec::new();
    if let Some(enabled) = args.auto_distribution {
        settings.auto_distribution_enabled = enabled;
        paths.push("auto_distribution_enabled");
    }
    if args.no_exit_reasons || !args.exit_reasons.is_empty() {
        settings.exit_reasons = args.exit_reasons;
        paths.push("exit_reasons");
    }
    if args.no_break_reasons || !args.break_reasons.is_empty() {
        settings.break_reasons = args.break_reasons;
        paths.push("break_reasons");
    }
    if let Some(url) = args.ticket_workspace_url {
        settings.ticket_workspace_url = url.trim().to_owned();
        paths.push("ticket_workspace_url");
    }
    if let Some(zone) = args.time_zone {
        // The server checks the name (INVALID_ARGUMENT on settings.time_zone when unknown).
        settings.time_zone = zone.trim().to_owned();
        paths.push("time_zone");
    }
    if let Some(optional) = args.break_reason_optional {
        settings.break_reason_optional = optional;
        paths.push("break_reason_optional");
    }
    if paths.is_empty() {
        bail!(
            "nothing to change: give --auto-distribution, --exit-reason/--no-exit-reasons, \
             --break-reason/--no-break-reasons, --ticket-workspace-url, --time-zone or --break-reason-optional"
        );
    }
    Ok(UpdateTenantSettingsRequest {
        request_id: String::new(),
        settings: Some(settings),
        update_mask: Some(field_mask(&paths)),
        expected_version: args.expected_version,
    })
}

/// A `google.protobuf.FieldMask` of these paths.
pub fn field_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask { paths: paths.iter().map(|path| (*path).to_owned()).collect() }
}

fn print_agent(printer: &Printer, agent: &Agent) -> Result<()> {
    printer.emit(names::AGENT, agent, agent_text)
}

pub fn agent_text(agent: &Agent) -> String {
    out::fields(&[
        ("agent", agent.agent_id.clone()),
        ("name", agent.display_name.clone()),
        ("departments", out::list(&agent.department_ids)),
        ("permissions", out::list(&agent.permissions)),
        ("registered", out::timestamp(agent.registered_at.as_ref())),
        ("version", agent.version.to_string()),
    ])
}

fn catalog_text(catalog: &ListPermissionCatalogResponse) -> String {
    out::table_of(&["PERMISSION", "DESCRIPTION"], &catalog.permissions, |p| {
        vec![p.permission.clone(), p.description.clone()]
    })
}

pub fn settings_text(settings: &TenantSettings) -> String {
    let mut text = out::fields(&[
        ("auto distribution", out::on_off(settings.auto_distribution_enabled).to_owned()),
        ("ticket workspace", ticket_workspace(&settings.ticket_workspace_url)),
        ("time zone", if settings.time_zone.is_empty() { "UTC".to_owned() } else { settings.time_zone.clone() }),
        (
            "break reason",
            if settings.break_reason_optional { "optional" } else { "required when configured" }.to_owned(),
        ),
        ("version", settings.version.to_string()),
    ]);
    text.push('\n');
    text.push_str(&out::block("exit reasons", &reasons_table(&settings.exit_reasons)));
    text.push('\n');
    text.push_str(&out::block("break reasons", &reasons_table(&settings.break_reasons)));
    text
}

fn status_row(view: &AgentStatusView, now: DateTime<Utc>) -> Vec<String> {
    vec![
        view.agent_id.clone(),
        view.display_name.clone(),
        out::status(view.status),
        out::timestamp_ago(view.status_since.as_ref(), now),
        out::reason(&view.reason_id, &view.reason_label),
        out::list(&view.department_ids),
    ]
}

const STATUS_HEADER: [&str; 6] = ["AGENT", "NAME", "STATUS", "SINCE", "REASON", "DEPARTMENTS"];

pub fn statuses_text(response: &ListAgentStatusesResponse, now: DateTime<Utc>) -> String {
    let mut text = out::table_of(&STATUS_HEADER, &response.agents, |view| status_row(view, now));
    if !response.next_page_token.is_empty() {
        text.push_str(&format!("next page: --page-token {}\n", response.next_page_token));
    }
    text
}

fn watch_line(view: &AgentStatusView, now: DateTime<Utc>) -> String {
    let name = format!("({})", view.display_name);
    let mut line = format!(
        "{}  {:<12} {:<14} {:<14} since {}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        view.agent_id,
        name,
        out::status(view.status),
        out::timestamp(view.status_since.as_ref()),
    );
    if !view.reason_id.is_empty() {
        line.push_str(&format!("  reason {}", out::reason(&view.reason_id, &view.reason_label)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::agentsessions::v1::Reason;

    fn reason(id: &str, label: &str) -> Reason {
        Reason { id: id.into(), label: label.into() }
    }

    fn shown() -> TenantSettings {
        TenantSettings {
            auto_distribution_enabled: true,
            exit_reasons: vec![reason("meeting", "Meeting")],
            break_reasons: vec![reason("lunch", "Lunch")],
            ticket_workspace_url: "https://tickets.example.com".into(),
            version: 3,
            time_zone: "America/Sao_Paulo".into(),
            break_reason_optional: false,
        }
    }

    fn args() -> SetSettingsArgs {
        SetSettingsArgs {
            auto_distribution: None,
            exit_reasons: Vec::new(),
            no_exit_reasons: false,
            break_reasons: Vec::new(),
            no_break_reasons: false,
            ticket_workspace_url: None,
            time_zone: None,
            break_reason_optional: None,
            expected_version: None,
        }
    }

    #[test]
    fn only_the_options_given_are_in_the_mask() {
        let request =
            settings_update(SetSettingsArgs { auto_distribution: Some(false), expected_version: Some(3), ..args() })
                .unwrap();
        assert_eq!(request.update_mask, Some(field_mask(&["auto_distribution_enabled"])));
        assert_eq!(request.expected_version, Some(3));
        assert!(!request.settings.unwrap().auto_distribution_enabled);

        let request =
            settings_update(SetSettingsArgs { ticket_workspace_url: Some(" https://t.example.com ".into()), ..args() })
                .unwrap();
        assert_eq!(request.update_mask, Some(field_mask(&["ticket_workspace_url"])));
        assert_eq!(request.settings.unwrap().ticket_workspace_url, "https://t.example.com");
    }

    #[test]
    fn given_reason_lists_replace_and_can_be_cleared() {
        let request = settings_update(SetSettingsArgs {
            break_reasons: vec![reason("coffee", "Coffee")],
            no_exit_reasons: true,
            ticket_workspace_url: Some(String::new()),
            ..args()
        })
        .unwrap();
        assert_eq!(request.update_mask, Some(field_mask(&["exit_reasons", "break_reasons", "ticket_workspace_url"])));
        let settings = request.settings.unwrap();
        assert!(settings.exit_reasons.is_empty());
        assert_eq!(settings.break_reasons, vec![reason("coffee", "Coffee")]);
        assert_eq!(settings.ticket_workspace_url, "");
    }

    #[test]
    fn the_time_zone_and_the_break_reason_flag_are_masked_settings() {
        let request = settings_update(SetSettingsArgs {
            time_zone: Some(" America/Sao_Paulo ".into()),
            break_reason_optional: Some(false),
            ..args()
        })
        .unwrap();
        assert_eq!(request.update_mask, Some(field_mask(&["time_zone", "break_reason_optional"])));
        let settings = request.settings.unwrap();
        assert_eq!(settings.time_zone, "America/Sao_Paulo");
        assert!(!settings.break_reason_optional);
        let text = settings_text(&shown());
        assert!(text.contains("time zone          America/Sao_Paulo\n"), "{text}");
    }

    #[test]
    fn no_option_is_refused_rather_than_sent() {
        let error = settings_update(args()).unwrap_err();
        assert!(error.to_string().contains("nothing to change"), "{error}");
    }

    #[test]
    fn a_page_of_the_board_names_the_next_page() {
        let page = ListAgentStatusesResponse { agents: vec![AgentStatusView::default()], next_page_token: "t2".into() };
        assert!(statuses_text(&page, Utc::now()).ends_with("next page: --page-token t2\n"));
    }

    #[test]
    fn settings_text_lists_both_reason_tables() {
        let text = settings_text(&shown());
        assert!(text.contains("auto distribution  on\n"), "{text}");
        assert!(text.contains("exit reasons:\n  ID       LABEL\n  meeting  Meeting\n"), "{text}");
        assert!(text.contains("break reasons:\n  ID     LABEL\n  lunch  Lunch\n"), "{text}");
    }
}
