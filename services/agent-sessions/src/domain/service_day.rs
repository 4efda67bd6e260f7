//! The `ServiceDay` aggregate: one stream per agent, at most one open day.
//!
//! ```text
//!       StartServiceDay                    NotifyExit(reason)
//! off ─────────────────▶ working ──────────────────────────▶ exit_notified
//!                         │   ▲   ◀── CancelExit (ExitClosed: cancelled) ──┘
//!          StartBreak     │   │ EndBreak                 │ StartBreak: ExitClosed(break_started), BreakStarted
//!                         ▼   │                          ▼
//!                        on_break ◀──────────────────────┘
//! EndServiceDay from any open state closes an open break and an open exit (cause: day_ended) first.
//! ```
//!
//! A day's date is the tenant's local date when it started: a night shift from 22:00 to 06:00 is
//! one day, of the date it started. When the tenant has break reasons, a break names one of them
//! unless the tenant made the reason optional.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::tenant_settings::TenantSettings;
use super::{DayId, DepartmentId, DomainError, Reason, ReasonId};

/// Where the agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Off,
    Working,
    OnBreak,
    ExitNotified,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Working => "working",
            Self::OnBreak => "on_break",
            Self::ExitNotified => "exit_notified",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "off" => Some(Self::Off),
            "working" => Some(Self::Working),
            "on_break" => Some(Self::OnBreak),
            "exit_notified" => Some(Self::ExitNotified),
            _ => None,
        }
    }
}

/// Why an exit notice closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitCloseCause {
    Cancelled,
    BreakStarted,
    DayEnded,
}

impl ExitCloseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::BreakStarted => "break_started",
            Self::DayEnded => "day_ended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "cancelled" => Some(Self::Cancelled),
            "break_started" => Some(Self::BreakStarted),
            "day_ended" => Some(Self::DayEnded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBreak {
    pub reason: Option<Reason>,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenExit {
    pub reason: Reason,
    pub notified_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDay {
    pub day_id: DayId,
    pub started_at: DateTime<Utc>,
    pub status_since: DateTime<Utc>,
    pub open_break: Option<OpenBreak>,
    pub open_exit: Option<OpenExit>,
    /// Sum of the breaks already ended today, in milliseconds.
    pub break_ms: i64,
}

/// The decision state of one agent's service days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDay {
    pub day: Option<OpenDay>,
    /// When the last day ended (the agent is off since then).
    pub off_since: Option<DateTime<Utc>>,
}

impl ServiceDay {
    pub fn status(&self) -> Status {
        match &self.day {
            None => Status::Off,
            Some(day) if day.open_break.is_some() => Status::OnBreak,
            Some(day) if day.open_exit.is_some() => Status::ExitNotified,
            Some(_) => Status::Working,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    StartDay { day_id: DayId, departments: Vec<DepartmentId> },
    NotifyExit { reason_id: ReasonId },
    CancelExit,
    StartBreak { reason_id: Option<ReasonId> },
    EndBreak,
    EndDay,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// `service_date`: the tenant's local date at `started_at`.
    DayStarted {
        day_id: DayId,
        started_at: DateTime<Utc>,
        service_date: NaiveDate,
        departments: Vec<DepartmentId>,
    },
    ExitNotified {
        day_id: DayId,
        reason: Reason,
        notified_at: DateTime<Utc>,
    },
    ExitClosed {
        day_id: DayId,
        cause: ExitCloseCause,
        closed_at: DateTime<Utc>,
    },
    BreakStarted {
        day_id: DayId,
        reason: Option<Reason>,
        started_at: DateTime<Utc>,
    },
    BreakEnded {
        day_id: DayId,
        ended_at: DateTime<Utc>,
        duration_ms: i64,
        day_ending: bool,
    },
    DayEnded {
        day_id: DayId,
        ended_at: DateTime<Utc>,
        total_break_ms: i64,
    },
}

fn elapsed_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).max(Duration::zero()).num_milliseconds()
}

/// Decides what a command means in `state`, under the tenant's `settings`, at `now`.
pub fn decide(
    state: &ServiceDay,
    command: Command,
    settings: &TenantSettings,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let open_day = match (&state.day, &command) {
        (Some(_), Command::StartDay { .. }) => return Err(DomainError::ServiceDayAlreadyStarted),
        (None, Command::StartDay { day_id, departments }) => {
            return Ok(vec![Event::DayStarted {
                day_id: *day_id,
                started_at: now,
                service_date: settings.time_zone.local_date(now),
                departments: departments.clone(),
            }]);
        }
        (None, _) => return Err(DomainError::ServiceDayNotStarted),
        (Some(day), _) => day,
    };
    let day_id = open_day.day_id;
    match command {
        Command::StartDay { .. } => Err(DomainError::ServiceDayAlreadyStarted),
        Command::NotifyExit { reason_id } => {
            if open_day.open_break.is_some() {
                return Err(DomainError::OnBreak);
            }
            if open_day.open_exit.is_some() {
                return Err(DomainError::ExitAlreadyNotified);
            }
            if !settings.auto_distribution_enabled {
                return Err(DomainError::AutoDistributionDisabled);
            }
            let reason = settings
                .exit_reason(&reason_id)
                .cloned()
                .ok_or_else(|| DomainError::UnknownExitReason(reason_id.to_string()))?;
            Ok(vec![Event::ExitNotified { day_id, reason, notified_at: now }])
        }
        Command::CancelExit => {
            if open_day.open_exit.is_none() {
                return Err(DomainError::NoExitNotified);
            }
            Ok(vec![Event::ExitClosed { day_id, cause: ExitCloseCause::Cancelled, closed_at: now }])
        }
        Command::StartBreak { reason_id } => {
            if open_day.open_break.is_some() {
                return Err(DomainError::AlreadyOnBreak);
            }
            let reason = match reason_id {
                None if settings.break_reason_required() => return Err(DomainError::BreakReasonRequired),
                None => None,
                Some(id) => Some(
                    settings
                        .break_reason(&id)
                        .cloned()
                        .ok_or_else(|| DomainError::UnknownBreakReason(id.to_string()))?,
                ),
            };
            let mut events = Vec::with_capacity(2);
            if open_day.open_exit.is_some() {
                events.push(Event::ExitClosed { day_id, cause: ExitCloseCause::BreakStarted, closed_at: now });
            }
            events.push(Event::BreakStarted { day_id, reason, started_at: now });
            Ok(events)
        }
        Command::EndBreak => {
            let Some(open_break) = &open_day.open_break else {
                return Err(DomainError::NotOnBreak);
            };
            Ok(vec![Event::BreakEnded {
                day_id,
                ended_at: now,
                duration_ms: elapsed_ms(open_break.started_at, now),
                day_ending: false,
            }])
        }
        Command::EndDay => {
            let mut events = Vec::with_capacity(3);
            let mut total_break_ms = open_day.break_ms;
            if let Some(open_break) = &open_day.open_break {
                let duration_ms = elapsed_ms(open_break.started_at, now);
                total_break_ms += duration_ms;
                events.push(Event::BreakEnded { day_id, ended_at: now, duration_ms, day_ending: true });
            }
            if open_day.open_exit.is_some() {
                events.push(Event::ExitClosed { day_id, cause: ExitCloseCause::DayEnded, closed_at: now });
            }
            events.push(Event::DayEnded { day_id, ended_at: now, total_break_ms });
            Ok(events)
        }
    }
}

/// Applies an event that happened.
pub fn evolve(mut state: ServiceDay, event: &Event) -> ServiceDay {
    match event {
        Event::DayStarted { day_id, started_at, .. } => {
            state.day = Some(OpenDay {
                day_id: *day_id,
                started_at: *started_at,
                status_since: *started_at,
                open_break: None,
                open_exit: None,
                break_ms: 0,
            });
            state.off_since = None;
        }
        Event::ExitNotified { reason, notified_at, .. } => {
            if let Some(day) = state.day.as_mut() {
                day.open_exit = Some(OpenExit { reason: reason.clone(), notified_at: *notified_at });
                day.status_since = *notified_at;
            }
        }
        Event::ExitClosed { closed_at, .. } => {
            if let Some(day) = state.day.as_mut() {
                day.open_exit = None;
                day.status_since = *closed_at;
            }
        }
        Event::BreakStarted { reason, started_at, .. } => {
            if let Some(day) = state.day.as_mut() {
                day.open_break = Some(OpenBreak { reason: reason.clone(), started_at: *started_at });
                day.status_since = *started_at;
            }
        }
        Event::BreakEnded { ended_at, duration_ms, .. } => {
            if let Some(day) = state.day.as_mut() {
                day.open_break = None;
                day.break_ms += duration_ms;
                day.status_since = *ended_at;
            }
        }
        Event::DayEnded { ended_at, .. } => {
            state.day = None;
            state.off_since = Some(*ended_at);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use dw_tenant_time::TenantZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, minute, 0).unwrap()
    }

    fn reason(id: &str, label: &str) -> Reason {
        Reason { id: ReasonId::parse(id).unwrap(), label: label.into() }
    }

    fn settings(auto: bool) -> TenantSettings {
        TenantSettings {
            auto_distribution_enabled: auto,
            exit_reasons: vec![reason("end-of-shift", "End of shift")],
            break_reasons: vec![reason("lunch", "Lunch")],
            ticket_workspace_url: None,
            time_zone: TenantZone::UTC,
            // The transition tests below take breaks without a reason; the reason rule has its own.
            break_reason_optional: true,
        }
    }

    fn day_id() -> DayId {
        DayId(uuid::Uuid::from_u128(7))
    }

    /// Given these commands succeeded in order, the resulting state.
    fn given(commands: Vec<Command>) -> ServiceDay {
        let mut state = ServiceDay::default();
        for (minute, command) in commands.into_iter().enumerate() {
            let events = decide(&state, command, &settings(true), at(minute as u32)).unwrap();
            state = events.iter().fold(state, evolve);
        }
        state
    }

    fn start() -> Command {
        Command::StartDay { day_id: day_id(), departments: vec![DepartmentId::parse("sales").unwrap()] }
    }

    fn exit() -> Command {
        Command::NotifyExit { reason_id: ReasonId::parse("end-of-shift").unwrap() }
    }

    fn when(state: &ServiceDay, command: Command) -> Result<Vec<Event>, DomainError> {
        decide(state, command, &settings(true), at(30))
    }

    #[test]
    fn off_agent_starts_the_day_and_nothing_else() {
        let state = ServiceDay::default();
        assert_eq!(state.status(), Status::Off);
        let events = when(&state, start()).unwrap();
        assert!(matches!(&events[..], [Event::DayStarted { started_at, .. }] if *started_at == at(30)));
        for command in
            [exit(), Command::CancelExit, Command::StartBreak { reason_id: None }, Command::EndBreak, Command::EndDay]
        {
            assert_eq!(when(&state, command), Err(DomainError::ServiceDayNotStarted));
        }
    }

    #[test]
    fn a_second_day_is_refused() {
        let state = given(vec![start()]);
        assert_eq!(state.status(), Status::Working);
        assert_eq!(when(&state, start()), Err(DomainError::ServiceDayAlreadyStarted));
    }

    #[test]
    fn working_agent_notifies_exit_with_a_configured_reason() {
        let state = given(vec![start()]);
        let events = when(&state, exit()).unwrap();
        assert!(matches!(&events[..], [Event::ExitNotified { reason, .. }] if reason.label == "End of shift"));
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.status(), Status::ExitNotified);
    }

    #[test]
    fn exit_needs_auto_distribution_and_a_known_reason() {
        let state = given(vec![start()]);
        assert_eq!(decide(&state, exit(), &settings(false), at(5)), Err(DomainError::AutoDistributionDisabled));
        let unknown = Command::NotifyExit { reason_id: ReasonId::parse("nope").unwrap() };
        assert_eq!(when(&state, unknown), Err(DomainError::UnknownExitReason("nope".into())));
    }

    #[test]
    fn exit_notified_twice_or_cancelled_without_notice_is_refused() {
        let state = given(vec![start()]);
        assert_eq!(when(&state, Command::CancelExit), Err(DomainError::NoExitNotified));
        let state = given(vec![start(), exit()]);
        assert_eq!(when(&state, exit()), Err(DomainError::ExitAlreadyNotified));
    }

    #[test]
    fn cancelling_an_exit_returns_to_working() {
        let state = given(vec![start(), exit()]);
        let events = when(&state, Command::CancelExit).unwrap();
        assert!(matches!(&events[..], [Event::ExitClosed { cause: ExitCloseCause::Cancelled, .. }]));
        assert_eq!(events.iter().fold(state, evolve).status(), Status::Working);
    }

    #[test]
    fn a_break_closes_an_open_exit_first() {
        let state = given(vec![start(), exit()]);
        let events = when(&state, Command::StartBreak { reason_id: Some(ReasonId::parse("lunch").unwrap()) }).unwrap();
        assert!(matches!(
            &events[..],
            [Event::ExitClosed { cause: ExitCloseCause::BreakStarted, .. }, Event::BreakStarted { reason: Some(r), .. }]
                if r.label == "Lunch"
        ));
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.status(), Status::OnBreak);
        assert!(state.day.as_ref().unwrap().open_exit.is_none());
    }

    #[test]
    fn break_rules() {
        let working = given(vec![start()]);
        assert_eq!(when(&working, Command::EndBreak), Err(DomainError::NotOnBreak));
        let unknown = Command::StartBreak { reason_id: Some(ReasonId::parse("nap").unwrap()) };
        assert_eq!(when(&working, unknown), Err(DomainError::UnknownBreakReason("nap".into())));

        let on_break = given(vec![start(), Command::StartBreak { reason_id: None }]);
        assert_eq!(on_break.status(), Status::OnBreak);
        assert_eq!(when(&on_break, Command::StartBreak { reason_id: None }), Err(DomainError::AlreadyOnBreak));
        assert_eq!(when(&on_break, exit()), Err(DomainError::OnBreak));
        assert_eq!(when(&on_break, Command::CancelExit), Err(DomainError::NoExitNotified));
    }

    #[test]
    fn ending_a_break_measures_it() {
        // started at minute 0, break at minute 1, ended at minute 30
        let state = given(vec![start(), Command::StartBreak { reason_id: None }]);
        let events = when(&state, Command::EndBreak).unwrap();
        assert!(
            matches!(&events[..], [Event::BreakEnded { duration_ms, day_ending: false, .. }] if *duration_ms == 29 * 60_000)
        );
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.status(), Status::Working);
        assert_eq!(state.day.unwrap().break_ms, 29 * 60_000);
    }

    #[test]
    fn ending_the_day_closes_an_open_break_first() {
        let state = given(vec![
            start(),
            Command::StartBreak { reason_id: None },
            Command::EndBreak,
            Command::StartBreak { reason_id: None },
        ]);
        let events = when(&state, Command::EndDay).unwrap();
        // breaks: minute 1→2 (1 min) and minute 3→30 (27 min)
        assert!(matches!(
            &events[..],
            [
                Event::BreakEnded { duration_ms: 1_620_000, day_ending: true, .. },
                Event::DayEnded { total_break_ms: 1_680_000, .. }
            ]
        ));
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.status(), Status::Off);
        assert_eq!(state.off_since, Some(at(30)));
    }

    #[test]
    fn ending_the_day_closes_an_open_exit_first() {
        let state = given(vec![start(), exit()]);
        let events = when(&state, Command::EndDay).unwrap();
        assert!(matches!(
            &events[..],
            [Event::ExitClosed { cause: ExitCloseCause::DayEnded, .. }, Event::DayEnded { total_break_ms: 0, .. }]
        ));
        assert_eq!(events.iter().fold(state, evolve).status(), Status::Off);
    }

    #[test]
    fn a_new_day_can_start_after_the_last_one_ended() {
        let state = given(vec![start(), Command::EndDay]);
        let next = Command::StartDay { day_id: DayId(uuid::Uuid::from_u128(8)), departments: vec![] };
        let events = when(&state, next).unwrap();
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.status(), Status::Working);
        assert_eq!(state.day.unwrap().day_id, DayId(uuid::Uuid::from_u128(8)));
    }

    fn sao_paulo(break_reason_optional: bool) -> TenantSettings {
        TenantSettings {
            time_zone: TenantZone::parse("America/Sao_Paulo").unwrap(),
            break_reason_optional,
            ..settings(true)
        }
    }

    fn utc(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap()
    }

    #[test]
    fn given_a_tenant_in_sao_paulo_when_a_day_starts_at_half_past_eleven_at_night_then_it_has_that_local_date() {
        // 02:30 UTC on the 25th is 23:30 on the 24th in São Paulo.
        let events = decide(&ServiceDay::default(), start(), &sao_paulo(false), utc(25, 2, 30)).unwrap();
        let [Event::DayStarted { service_date, .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(service_date.to_string(), "2026-11-24");
        // A tenant on UTC: the UTC date.
        let events = decide(&ServiceDay::default(), start(), &settings(true), utc(25, 2, 30)).unwrap();
        assert!(
            matches!(&events[..], [Event::DayStarted { service_date, .. }] if service_date.to_string() == "2026-11-25")
        );
    }

    #[test]
    fn given_a_night_shift_from_22_to_06_local_then_it_is_one_day_of_the_date_it_started() {
        let tenant = sao_paulo(false);
        // 22:00 on the 24th in São Paulo is 01:00 UTC on the 25th; 06:00 on the 25th is 09:00 UTC.
        let mut state = ServiceDay::default();
        let started = decide(&state, start(), &tenant, utc(25, 1, 0)).unwrap();
        state = started.iter().fold(state, evolve);
        let lunch = Command::StartBreak { reason_id: Some(ReasonId::parse("lunch").unwrap()) };
        for (command, at) in [(lunch, utc(25, 3, 30)), (Command::EndBreak, utc(25, 4, 0))] {
            state = decide(&state, command, &tenant, at).unwrap().iter().fold(state, evolve);
        }
        assert_eq!(state.status(), Status::Working, "past midnight the same day is still open");
        let ended = decide(&state, Command::EndDay, &tenant, utc(25, 9, 0)).unwrap();
        assert!(
            matches!(&ended[..], [Event::DayEnded { day_id: ended_day, total_break_ms: 1_800_000, .. }] if *ended_day == day_id())
        );
        assert!(
            matches!(&started[..], [Event::DayStarted { service_date, .. }] if service_date.to_string() == "2026-11-24")
        );
    }

    #[test]
    fn given_a_tenant_with_break_reasons_when_a_break_names_none_then_it_is_refused() {
        let state = given(vec![start()]);
        let refused = decide(&state, Command::StartBreak { reason_id: None }, &sao_paulo(false), at(30));
        assert_eq!(refused, Err(DomainError::BreakReasonRequired));
        assert_eq!(DomainError::BreakReasonRequired.reason(), "BREAK_REASON_REQUIRED");
        let unknown = Command::StartBreak { reason_id: Some(ReasonId::parse("nap").unwrap()) };
        assert_eq!(
            decide(&state, unknown, &sao_paulo(false), at(30)),
            Err(DomainError::UnknownBreakReason("nap".into()))
        );
        let lunch = Command::StartBreak { reason_id: Some(ReasonId::parse("lunch").unwrap()) };
        assert!(decide(&state, lunch, &sao_paulo(false), at(30)).is_ok());
    }

    #[test]
    fn given_the_reason_is_optional_or_there_are_no_reasons_when_a_break_names_none_then_it_starts() {
        let state = given(vec![start()]);
        let events = decide(&state, Command::StartBreak { reason_id: None }, &sao_paulo(true), at(30)).unwrap();
        assert!(matches!(&events[..], [Event::BreakStarted { reason: None, .. }]));
        let no_reasons = TenantSettings { break_reasons: Vec::new(), ..sao_paulo(false) };
        assert!(decide(&state, Command::StartBreak { reason_id: None }, &no_reasons, at(30)).is_ok());
    }
}
