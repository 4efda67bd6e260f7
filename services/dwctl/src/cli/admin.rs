//! `dwctl admin …`: agents, permissions, departments, tenant settings and the live board.

use clap::{Args, Subcommand};
use dw_proto::agentsessions::v1::Reason;

use crate::parse;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Register an agent (RegisterAgent); the agent id is the `sub` of their tokens.
    RegisterAgent {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        /// Display name.
        #[arg(long, value_parser = parse::non_empty)]
        name: String,
    },
    /// Show an agent (GetAgent).
    GetAgent {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
    },
    /// Link an agent to a department (LinkDepartment).
    LinkDepartment {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        department: String,
    },
    /// Unlink an agent from a department (UnlinkDepartment).
    UnlinkDepartment {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        department: String,
    },
    /// Grant a permission of the catalog to an agent (GrantPermission).
    Grant {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        /// Permission name (see `dwctl admin catalog`).
        #[arg(long, value_parser = parse::non_empty)]
        permission: String,
    },
    /// Revoke a permission from an agent (RevokePermission).
    Revoke {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        permission: String,
    },
    /// The permission catalog (ListPermissionCatalog).
    Catalog,
    /// The tenant settings (GetTenantSettings).
    GetSettings,
    /// Change tenant settings (UpdateTenantSettings with a mask of the options given).
    /// Options not given keep their current value; a given reason list replaces the current one.
    SetSettings(SetSettingsArgs),
    /// The supervisor board (ListAgentStatuses); follows every page unless --page-token is given.
    Statuses {
        /// Only agents linked to this department.
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
        /// Page size (1-500).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=500))]
        page_size: Option<i32>,
        /// Fetch only the page with this token (prints the next page token).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// The live board (WatchAgentStatuses): the current board, then every change. Ctrl-C stops.
    Watch {
        /// Only agents linked to this department.
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
        /// Exit after this many updates.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct SetSettingsArgs {
    /// Automatic distribution on or off (true/false, yes/no, on/off).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_distribution: Option<bool>,
    /// Exit reason as id=Label (repeatable; replaces the current exit reasons).
    #[arg(long = "exit-reason", value_parser = parse::reason, conflicts_with = "no_exit_reasons")]
    pub exit_reasons: Vec<Reason>,
    /// Remove every exit reason.
    #[arg(long)]
    pub no_exit_reasons: bool,
    /// Break reason as id=Label (repeatable; replaces the current break reasons).
    #[arg(long = "break-reason", value_parser = parse::reason, conflicts_with = "no_break_reasons")]
    pub break_reasons: Vec<Reason>,
    /// Remove every break reason.
    #[arg(long)]
    pub no_break_reasons: bool,
    /// Ticket workspace deep link (https URL; an empty string removes it).
    #[arg(long)]
    pub ticket_workspace_url: Option<String>,
    /// The tenant's IANA time zone, e.g. America/Sao_Paulo (an empty string: UTC). Protocol
    /// dates, service-day dates and date filters follow it.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Whether a break may go without a reason when the tenant has break reasons (true/false).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub break_reason_optional: Option<bool>,
    /// Change only if the settings are still at this version (from get-settings); otherwise
    /// nothing changes and the current version is reported.
    #[arg(long)]
    pub expected_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::testing::parse;

    #[test]
    fn set_settings_parses_reasons_and_booleans() {
        let cli = parse(&[
            "admin",
            "set-settings",
            "--auto-distribution",
            "true",
            "--exit-reason",
            "end-of-shift=End of shift",
            "--exit-reason",
            "meeting=Meeting",
            "--break-reason",
            "lunch=Lunch",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::SetSettings(args)) = cli.command else { panic!("wrong command") };
        assert_eq!(args.auto_distribution, Some(true));
        assert_eq!(args.exit_reasons.len(), 2);
        assert_eq!(args.exit_reasons[0].label, "End of shift");
        assert_eq!(args.break_reasons[0].id, "lunch");
        assert_eq!(args.expected_version, None);
        assert!(parse(&["admin", "set-settings", "--exit-reason", "nolabel"]).is_err());
        let cli = parse(&["admin", "set-settings", "--ticket-workspace-url", "", "--expected-version", "4"]).unwrap();
        let Command::Admin(AdminCommand::SetSettings(args)) = cli.command else { panic!("wrong command") };
        assert_eq!(args.expected_version, Some(4));
        assert!(parse(&["admin", "set-settings", "--exit-reason", "a=A", "--no-exit-reasons"]).is_err());
        let cli =
            parse(&["admin", "set-settings", "--time-zone", "America/Sao_Paulo", "--break-reason-optional", "yes"])
                .unwrap();
        let Command::Admin(AdminCommand::SetSettings(args)) = cli.command else { panic!("wrong command") };
        assert_eq!(args.time_zone.as_deref(), Some("America/Sao_Paulo"));
        assert_eq!(args.break_reason_optional, Some(true));
    }
}
