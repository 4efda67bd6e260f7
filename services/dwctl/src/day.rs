//! `dwctl day …`: ServiceDayService, the calling agent's own service day.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::agentsessions::v1::service_day_service_client::ServiceDayServiceClient;
use dw_proto::agentsessions::v1::{
    AgentDayState, CancelExitRequest, EndBreakRequest, EndServiceDayRequest, GetMyInformationRequest,
    GetMyInformationResponse, GetMyPermissionsRequest, GetMyPermissionsResponse, GetMyStateRequest,
    GetWorkspaceLinksRequest, GetWorkspaceLinksResponse, ListBreakReasonsRequest, ListBreakReasonsResponse,
    ListExitReasonsRequest, ListExitReasonsResponse, NotifyExitRequest, Reason, ServiceDay, StartBreakRequest,
    StartServiceDayRequest,
};

use crate::cli::DayCommand;
use crate::failure::UsageError;
use crate::output::{self as out, Printer, names};
use crate::parse;
use crate::rpc::Rpc;

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &DayCommand) -> Result<()> {
    match command {
        DayCommand::EndBreak { confirm: false } => {
            bail!(UsageError(
                "ending a break is a confirmed action: run `dwctl day end-break --confirm` to end it".into()
            ))
        }
        DayCommand::Info { from, to } => Ok(parse::ordered_range(from.as_ref(), to.as_ref())?),
        _ => Ok(()),
    }
}

pub async fn run(command: DayCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    validate(&command)?;
    let mut client = ServiceDayServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    match command {
        DayCommand::Start => {
            let state = client.start_service_day(rpc.request(StartServiceDayRequest { request_id: rpc.request_id() }));
            print_state(printer, &state.await?.into_inner(), now)
        }
        DayCommand::NotifyExit { reason } => {
            let request = NotifyExitRequest { request_id: rpc.request_id(), reason_id: reason };
            print_state(printer, &client.notify_exit(rpc.request(request)).await?.into_inner(), now)
        }
        DayCommand::CancelExit => {
            let request = CancelExitRequest { request_id: rpc.request_id() };
            print_state(printer, &client.cancel_exit(rpc.request(request)).await?.into_inner(), now)
        }
        DayCommand::StartBreak { reason } => {
            let request = StartBreakRequest { request_id: rpc.request_id(), reason_id: reason.unwrap_or_default() };
            print_state(printer, &client.start_break(rpc.request(request)).await?.into_inner(), now)
        }
        DayCommand::EndBreak { confirm } => {
            let request = EndBreakRequest { request_id: rpc.request_id(), confirm };
            print_state(printer, &client.end_break(rpc.request(request)).await?.into_inner(), now)
        }
        DayCommand::End => {
            let request = EndServiceDayRequest { request_id: rpc.request_id() };
            print_state(printer, &client.end_service_day(rpc.request(request)).await?.into_inner(), now)
        }
        DayCommand::State => {
            print_state(printer, &client.get_my_state(rpc.request(GetMyStateRequest {})).await?.into_inner(), now)
        }
        DayCommand::Info { from, to } => {
            let to = to.or_else(|| from.map(|_| prost_types::Timestamp::from(std::time::SystemTime::now())));
            let response = client
                .get_my_information(rpc.request(GetMyInformationRequest { from, to, ..Default::default() }))
                .await?;
            printer.emit(names::MY_INFORMATION, &response.into_inner(), |info| information_text(info, now))
        }
        DayCommand::Permissions => {
            let response = client.get_my_permissions(rpc.request(GetMyPermissionsRequest {})).await?;
            printer.emit(names::MY_PERMISSIONS, &response.into_inner(), permissions_text)
        }
        DayCommand::ExitReasons => {
            let response = client.list_exit_reasons(rpc.request(ListExitReasonsRequest {})).await?;
            printer.emit(names::EXIT_REASONS, &response.into_inner(), exit_reasons_text)
        }
        DayCommand::BreakReasons => {
            let response = client.list_break_reasons(rpc.request(ListBreakReasonsRequest {})).await?;
            printer.emit(names::BREAK_REASONS, &response.into_inner(), |r: &ListBreakReasonsResponse| {
                reasons_table(&r.break_reasons)
            })
        }
        DayCommand::Links => {
            let response = client.get_workspace_links(rpc.request(GetWorkspaceLinksRequest {})).await?;
            printer.emit(names::WORKSPACE_LINKS, &response.into_inner(), |links: &GetWorkspaceLinksResponse| {
                out::fields(&[("ticket workspace", ticket_workspace(&links.ticket_workspace_url))])
            })
        }
    }
}

fn print_state(printer: &Printer, state: &AgentDayState, now: DateTime<Utc>) -> Result<()> {
    printer.emit(names::AGENT_DAY_STATE, state, |state| state_text(state, now))
}

pub fn state_text(state: &AgentDayState, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("agent", state.agent_id.clone()),
        ("status", out::status(state.status)),
        ("since", out::timestamp_ago(state.status_since.as_ref(), now)),
    ];
    if !state.reason_id.is_empty() {
        rows.push(("reason", out::reason(&state.reason_id, &state.reason_label)));
    }
    if state.day_id.is_empty() {
        rows.push(("day", "(none open)".to_owned()));
    } else {
        rows.push(("day", state.day_id.clone()));
        rows.push(("day started", out::timestamp_ago(state.day_started_at.as_ref(), now)));
    }
    rows.push(("version", state.version.to_string()));
    out::fields(&rows)
}

pub fn information_text(info: &GetMyInformationResponse, now: DateTime<Utc>) -> String {
    let mut text = out::fields(&[
        ("agent", info.agent_id.clone()),
        ("name", info.display_name.clone()),
        ("status", out::status(info.status)),
        ("departments", out::list(&info.department_ids)),
    ]);
    if info.days.is_empty() {
        text.push_str("\nno service days in range\n");
    }
    for day in &info.days {
        text.push('\n');
        text.push_str(&day_text(day, now));
    }
    text
}

fn day_text(day: &ServiceDay, now: DateTime<Utc>) -> String {
    let ended = match &day.ended_at {
        Some(ended) => out::timestamp(Some(ended)),
        None => "(open)".to_owned(),
    };
    let length = match (day.started_at.as_ref().and_then(out::to_datetime), day.ended_at.as_ref()) {
        (Some(start), Some(end)) => out::to_datetime(end).map(|end| out::human_seconds((end - start).num_seconds())),
        (Some(start), None) => Some(format!("{} so far", out::human_seconds((now - start).num_seconds()))),
        _ => None,
    };
    let mut text = out::fields(&[
        ("day", day.day_id.clone()),
        ("started", out::timestamp(day.started_at.as_ref())),
        ("ended", ended),
        ("length", length.unwrap_or_else(|| "-".to_owned())),
        ("total break", out::duration(day.total_break_time.as_ref())),
    ]);
    let breaks = out::table_of(&["STARTED", "ENDED", "DURATION", "REASON"], &day.breaks, |b| {
        vec![
            out::timestamp(b.started_at.as_ref()),
            b.ended_at.as_ref().map_or_else(|| "(open)".to_owned(), |e| out::timestamp(Some(e))),
            out::duration(b.duration.as_ref()),
            out::reason(&b.reason_id, &b.reason_label),
        ]
    });
    text.push_str(&out::block("breaks", &breaks));
    let exits = out::table_of(&["NOTIFIED", "CLOSED", "CAUSE", "REASON"], &day.exits, |e| {
        vec![
            out::timestamp(e.notified_at.as_ref()),
            e.closed_at.as_ref().map_or_else(|| "(open)".to_owned(), |c| out::timestamp(Some(c))),
            if e.closed_at.is_some() { out::exit_close_cause(e.close_cause) } else { "-".to_owned() },
            out::reason(&e.reason_id, &e.reason_label),
        ]
    });
    text.push_str(&out::block("exits", &exits));
    text
}

fn permissions_text(response: &GetMyPermissionsResponse) -> String {
    out::table_of(&["PERMISSION", "GRANTED AT", "GRANTED BY"], &response.permissions, |p| {
        vec![p.permission.clone(), out::timestamp(p.granted_at.as_ref()), p.granted_by.clone()]
    })
}

fn exit_reasons_text(response: &ListExitReasonsResponse) -> String {
    let mut text = out::fields(&[("exit available", out::yes_no(response.exit_available).to_owned())]);
    text.push_str(&reasons_table(&response.exit_reasons));
    text
}

pub fn reasons_table(reasons: &[Reason]) -> String {
    out::table_of(&["ID", "LABEL"], reasons, |r| vec![r.id.clone(), r.label.clone()])
}

/// The tenant's ticket workspace deep link, or that there is none.
pub fn ticket_workspace(url: &str) -> String {
    if url.is_empty() { "(not configured)".to_owned() } else { url.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::agentsessions::v1::{AgentStatus, BreakRecord};

    use crate::testing::ts;

    #[test]
    fn end_break_needs_confirm_and_ranges_must_be_ordered() {
        let is_usage = |command: DayCommand| validate(&command).unwrap_err().downcast_ref::<UsageError>().is_some();
        assert!(is_usage(DayCommand::EndBreak { confirm: false }));
        assert!(validate(&DayCommand::EndBreak { confirm: true }).is_ok());
        assert!(is_usage(DayCommand::Info { from: ts(200), to: ts(100) }));
        assert!(validate(&DayCommand::Info { from: ts(100), to: ts(200) }).is_ok());
        assert!(validate(&DayCommand::Info { from: None, to: ts(100) }).is_ok());
    }

    #[test]
    fn state_text_shows_status_reason_and_day() {
        let now = DateTime::from_timestamp(1_714_550_400 + 600, 0).unwrap();
        let state = AgentDayState {
            agent_id: "ana".into(),
            status: AgentStatus::OnBreak as i32,
            day_id: "day-1".into(),
            day_started_at: ts(1_714_550_400 - 3_600),
            status_since: ts(1_714_550_400),
            reason_id: "lunch".into(),
            reason_label: "Lunch".into(),
            version: 4,
        };
        let text = state_text(&state, now);
        assert!(text.contains("status       on_break\n"), "{text}");
        assert!(text.contains("since        2024-05-01T08:00:00Z (10m 00s ago)\n"), "{text}");
        assert!(text.contains("reason       lunch (Lunch)\n"), "{text}");
        assert!(text.contains("day started  2024-05-01T07:00:00Z (1h 10m 00s ago)\n"), "{text}");
    }

    #[test]
    fn information_text_lists_breaks_with_open_ones_marked() {
        let now = DateTime::from_timestamp(1_714_550_400 + 7_200, 0).unwrap();
        let info = GetMyInformationResponse {
            agent_id: "ana".into(),
            display_name: "Ana Lima".into(),
            status: AgentStatus::OnBreak as i32,
            department_ids: vec!["sales".into(), "support".into()],
            days: vec![ServiceDay {
                day_id: "day-1".into(),
                started_at: ts(1_714_550_400),
                breaks: vec![BreakRecord {
                    started_at: ts(1_714_550_400 + 3_600),
                    duration: Some(prost_types::Duration { seconds: 3_600, nanos: 0 }),
                    reason_id: "lunch".into(),
                    reason_label: "Lunch".into(),
                    ..Default::default()
                }],
                total_break_time: Some(prost_types::Duration { seconds: 3_600, nanos: 0 }),
                ..Default::default()
            }],
        };
        let text = information_text(&info, now);
        assert!(text.contains("departments  sales, support\n"), "{text}");
        assert!(text.contains("length       2h 00m 00s so far\n"), "{text}");
        assert!(text.contains("2024-05-01T09:00:00Z  (open)  1h 00m 00s  lunch (Lunch)"), "{text}");
        assert!(text.contains("exits:\n  (none)\n"), "{text}");
    }
}
