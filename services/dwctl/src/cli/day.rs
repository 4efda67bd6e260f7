//! `dwctl day …`: the calling agent's own service day.

use clap::Subcommand;

use crate::parse;

#[derive(Debug, Subcommand)]
pub enum DayCommand {
    /// Start the service day (StartServiceDay).
    Start,
    /// Notify an exit (NotifyExit); needs automatic distribution and a configured exit reason.
    NotifyExit {
        /// Exit reason id (see `dwctl day exit-reasons`).
        #[arg(long, value_parser = parse::non_empty)]
        reason: String,
    },
    /// Cancel the open exit notice (CancelExit).
    CancelExit,
    /// Start a break (StartBreak); closes an open exit notice.
    StartBreak {
        /// Break reason id (see `dwctl day break-reasons`).
        #[arg(long, value_parser = parse::non_empty)]
        reason: Option<String>,
    },
    /// End the break (EndBreak). Ending a break is a confirmed action: pass --confirm.
    EndBreak {
        /// Confirm ending the break (required).
        #[arg(long)]
        confirm: bool,
    },
    /// End the service day (EndServiceDay); closes an open break and exit notice first.
    End,
    /// The current state (GetMyState).
    State,
    /// Days, breaks and exits (GetMyInformation); without a range: the current (or last) day.
    Info {
        /// Days started at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_parser = parse::timestamp)]
        from: Option<prost_types::Timestamp>,
        /// Days started before this time (RFC 3339 or YYYY-MM-DD; default with --from: now).
        #[arg(long, value_parser = parse::timestamp, requires = "from")]
        to: Option<prost_types::Timestamp>,
    },
    /// The caller's granted permissions (GetMyPermissions).
    Permissions,
    /// The tenant's exit reasons and whether exits are available (ListExitReasons).
    ExitReasons,
    /// The tenant's break reasons (ListBreakReasons).
    BreakReasons,
    /// Workspace deep links (GetWorkspaceLinks).
    Links,
}
