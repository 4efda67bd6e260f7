//! Domain events to and from their protobuf contract (`dw.agentsessions.v1` events), and the
//! stream ids of the aggregates.

use chrono::{DateTime, NaiveDate, Utc};
use dw_eventstore::codec::decode_contract;
use dw_eventstore::{NewEvent, RecordedEvent};
use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as pb;
use dw_tenant_time::TenantZone;

use crate::domain::service_day::ExitCloseCause;
use crate::domain::tenant_settings::TenantSettings;
use crate::domain::{AgentId, DayId, DepartmentId, Permission, Reason, ReasonId, agent, service_day, tenant_settings};

pub use dw_eventstore::CodecError;

pub fn service_day_stream(tenant: &TenantId, agent: &AgentId) -> String {
    format!("serviceday:{tenant}:{agent}")
}

pub fn agent_stream(tenant: &TenantId, agent: &AgentId) -> String {
    format!("agent:{tenant}:{agent}")
}

pub fn tenant_stream(tenant: &TenantId) -> String {
    format!("tenant:{tenant}")
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

pub fn from_timestamp(field: &'static str, ts: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, CodecError> {
    let ts = ts.ok_or(CodecError::Invalid(field, "missing".into()))?;
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
        .ok_or(CodecError::Invalid(field, "out of range".into()))
}

pub fn duration_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

fn from_duration(d: Option<&prost_types::Duration>) -> i64 {
    d.map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000).unwrap_or(0)
}

fn reason_from(id: &str, label: &str) -> Result<Option<Reason>, CodecError> {
    if id.is_empty() {
        return Ok(None);
    }
    let id = ReasonId::parse(id).map_err(|e| CodecError::Invalid("reason_id", e))?;
    Ok(Some(Reason { id, label: label.to_owned() }))
}

/// A day's date as its event carries it; events from before tenants had zones carry none: the UTC
/// date of the start, as it was read then.
pub fn service_date_from(value: &str, started_at: DateTime<Utc>) -> Result<NaiveDate, CodecError> {
    if value.is_empty() {
        return Ok(started_at.date_naive());
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|e| CodecError::Invalid("service_date", e.to_string()))
}

fn day_id_from(value: &str) -> Result<DayId, CodecError> {
    uuid::Uuid::parse_str(value).map(DayId).map_err(|e| CodecError::Invalid("day_id", e.to_string()))
}

pub fn close_cause_to_pb(cause: ExitCloseCause) -> pb::ExitCloseCause {
    match cause {
        ExitCloseCause::Cancelled => pb::ExitCloseCause::Cancelled,
        ExitCloseCause::BreakStarted => pb::ExitCloseCause::BreakStarted,
        ExitCloseCause::DayEnded => pb::ExitCloseCause::DayEnded,
    }
}

pub fn encode_service_day(agent_id: &AgentId, event: &service_day::Event) -> NewEvent {
    use service_day::Event as E;
    let agent_id = agent_id.to_string();
    match event {
        E::DayStarted { day_id, started_at, service_date, departments } => NewEvent::of(
            "serviceday.started",
            &pb::ServiceDayStarted {
                agent_id,
                day_id: day_id.to_string(),
                started_at: Some(timestamp(*started_at)),
                department_ids: departments.iter().map(ToString::to_string).collect(),
                service_date: service_date.to_string(),
            },
        ),
        E::ExitNotified { day_id, reason, notified_at } => NewEvent::of(
            "serviceday.exit_notified",
            &pb::ExitNotified {
                agent_id,
                day_id: day_id.to_string(),
                reason_id: reason.id.to_string(),
                reason_label: reason.label.clone(),
                notified_at: Some(timestamp(*notified_at)),
            },
        ),
        E::ExitClosed { day_id, cause, closed_at } => NewEvent::of(
            "serviceday.exit_closed",
            &pb::ExitClosed {
                agent_id,
                day_id: day_id.to_string(),
                cause: close_cause_to_pb(*cause) as i32,
                closed_at: Some(timestamp(*closed_at)),
            },
        ),
        E::BreakStarted { day_id, reason, started_at } => NewEvent::of(
            "serviceday.break_started",
            &pb::BreakStarted {
                agent_id,
                day_id: day_id.to_string(),
                reason_id: reason.as_ref().map(|r| r.id.to_string()).unwrap_or_default(),
                reason_label: reason.as_ref().map(|r| r.label.clone()).unwrap_or_default(),
                started_at: Some(timestamp(*started_at)),
            },
        ),
        E::BreakEnded { day_id, ended_at, duration_ms: ms, day_ending } => NewEvent::of(
            "serviceday.break_ended",
            &pb::BreakEnded {
                agent_id,
                day_id: day_id.to_string(),
                ended_at: Some(timestamp(*ended_at)),
                duration: Some(duration_ms(*ms)),
                day_ending: *day_ending,
            },
        ),
        E::DayEnded { day_id, ended_at, total_break_ms } => NewEvent::of(
            "serviceday.ended",
            &pb::ServiceDayEnded {
                agent_id,
                day_id: day_id.to_string(),
                ended_at: Some(timestamp(*ended_at)),
                total_break_time: Some(duration_ms(*total_break_ms)),
            },
        ),
    }
}

pub fn decode_service_day(recorded: &RecordedEvent) -> Result<service_day::Event, CodecError> {
    use service_day::Event as E;
    Ok(match decode_contract::<pb::Event>(recorded)? {
        pb::Event::ServiceDayStarted(m) => {
            let departments = m
                .department_ids
                .iter()
                .map(|d| DepartmentId::parse(d).map_err(|e| CodecError::Invalid("department_ids", e)))
                .collect::<Result<_, _>>()?;
            let started_at = from_timestamp("started_at", m.started_at.as_ref())?;
            E::DayStarted {
                day_id: day_id_from(&m.day_id)?,
                started_at,
                service_date: service_date_from(&m.service_date, started_at)?,
                departments,
            }
        }
        pb::Event::ExitNotified(m) => E::ExitNotified {
            day_id: day_id_from(&m.day_id)?,
            reason: reason_from(&m.reason_id, &m.reason_label)?
                .ok_or(CodecError::Invalid("reason_id", "missing".into()))?,
            notified_at: from_timestamp("notified_at", m.notified_at.as_ref())?,
        },
        pb::Event::ExitClosed(m) => {
            let cause = match pb::ExitCloseCause::try_from(m.cause) {
                Ok(pb::ExitCloseCause::Cancelled) => ExitCloseCause::Cancelled,
                Ok(pb::ExitCloseCause::BreakStarted) => ExitCloseCause::BreakStarted,
                Ok(pb::ExitCloseCause::DayEnded) => ExitCloseCause::DayEnded,
                _ => return Err(CodecError::Invalid("cause", m.cause.to_string())),
            };
            E::ExitClosed {
                day_id: day_id_from(&m.day_id)?,
                cause,
                closed_at: from_timestamp("closed_at", m.closed_at.as_ref())?,
            }
        }
        pb::Event::BreakStarted(m) => E::BreakStarted {
            day_id: day_id_from(&m.day_id)?,
            reason: reason_from(&m.reason_id, &m.reason_label)?,
            started_at: from_timestamp("started_at", m.started_at.as_ref())?,
        },
        pb::Event::BreakEnded(m) => E::BreakEnded {
            day_id: day_id_from(&m.day_id)?,
            ended_at: from_timestamp("ended_at", m.ended_at.as_ref())?,
            duration_ms: from_duration(m.duration.as_ref()),
            day_ending: m.day_ending,
        },
        pb::Event::ServiceDayEnded(m) => E::DayEnded {
            day_id: day_id_from(&m.day_id)?,
            ended_at: from_timestamp("ended_at", m.ended_at.as_ref())?,
            total_break_ms: from_duration(m.total_break_time.as_ref()),
        },
        other => return Err(CodecError::UnknownType(other.type_name().to_owned())),
    })
}

pub fn encode_agent(agent_id: &AgentId, event: &agent::Event) -> NewEvent {
    use agent::Event as E;
    let agent_id = agent_id.to_string();
    match event {
        E::Registered { display_name, by, .. } => NewEvent::of(
            "agent.registered",
            &pb::AgentRegistered { agent_id, display_name: display_name.clone(), registered_by: by.clone() },
        ),
        E::DepartmentLinked { department, by, .. } => NewEvent::of(
            "agent.department_linked",
            &pb::DepartmentLinked { agent_id, department_id: department.to_string(), linked_by: by.clone() },
        ),
        E::DepartmentUnlinked { department, by, .. } => NewEvent::of(
            "agent.department_unlinked",
            &pb::DepartmentUnlinked { agent_id, department_id: department.to_string(), unlinked_by: by.clone() },
        ),
        E::PermissionGranted { permission, by, .. } => NewEvent::of(
            "agent.permission_granted",
            &pb::PermissionGranted { agent_id, permission: permission.to_string(), granted_by: by.clone() },
        ),
        E::PermissionRevoked { permission, by, .. } => NewEvent::of(
            "agent.permission_revoked",
            &pb::PermissionRevoked { agent_id, permission: permission.to_string(), revoked_by: by.clone() },
        ),
    }
}

pub fn decode_agent(recorded: &RecordedEvent) -> Result<agent::Event, CodecError> {
    use agent::Event as E;
    let at = recorded.recorded_at;
    let department = |d: &str| DepartmentId::parse(d).map_err(|e| CodecError::Invalid("department_id", e));
    let permission = |p: &str| Permission::parse(p).map_err(|e| CodecError::Invalid("permission", e));
    Ok(match decode_contract::<pb::Event>(recorded)? {
        pb::Event::AgentRegistered(m) => E::Registered { display_name: m.display_name, by: m.registered_by, at },
        pb::Event::DepartmentLinked(m) => {
            E::DepartmentLinked { department: department(&m.department_id)?, by: m.linked_by, at }
        }
        pb::Event::DepartmentUnlinked(m) => {
            E::DepartmentUnlinked { department: department(&m.department_id)?, by: m.unlinked_by, at }
        }
        pb::Event::PermissionGranted(m) => {
            E::PermissionGranted { permission: permission(&m.permission)?, by: m.granted_by, at }
        }
        pb::Event::PermissionRevoked(m) => {
            E::PermissionRevoked { permission: permission(&m.permission)?, by: m.revoked_by, at }
        }
        other => return Err(CodecError::UnknownType(other.type_name().to_owned())),
    })
}

pub fn reasons_to_pb(reasons: &[Reason]) -> Vec<pb::Reason> {
    reasons.iter().map(|r| pb::Reason { id: r.id.to_string(), label: r.label.clone() }).collect()
}

fn reasons_from_pb(field: &'static str, reasons: &[pb::Reason]) -> Result<Vec<Reason>, CodecError> {
    reasons
        .iter()
        .map(|r| {
            let id = ReasonId::parse(&r.id).map_err(|e| CodecError::Invalid(field, e))?;
            Ok(Reason { id, label: r.label.clone() })
        })
        .collect()
}

pub fn encode_tenant_settings(event: &tenant_settings::Event, by: &str) -> NewEvent {
    let tenant_settings::Event::Changed(settings) = event;
    NewEvent::of(
        "tenant.settings_changed",
        &pb::TenantSettingsChanged {
            auto_distribution_enabled: settings.auto_distribution_enabled,
            exit_reasons: reasons_to_pb(&settings.exit_reasons),
            break_reasons: reasons_to_pb(&settings.break_reasons),
            ticket_workspace_url: settings.ticket_workspace_url.clone().unwrap_or_default(),
            changed_by: by.to_owned(),
            time_zone: settings.time_zone.name().to_owned(),
            break_reason_optional: settings.break_reason_optional,
        },
    )
}

pub fn decode_tenant_settings(recorded: &RecordedEvent) -> Result<tenant_settings::Event, CodecError> {
    let pb::Event::TenantSettingsChanged(m) = decode_contract::<pb::Event>(recorded)? else {
        return Err(CodecError::UnknownType(recorded.event_type.clone()));
    };
    Ok(tenant_settings::Event::Changed(TenantSettings {
        auto_distribution_enabled: m.auto_distribution_enabled,
        exit_reasons: reasons_from_pb("exit_reasons", &m.exit_reasons)?,
        break_reasons: reasons_from_pb("break_reasons", &m.break_reasons)?,
        ticket_workspace_url: Some(m.ticket_workspace_url).filter(|u| !u.is_empty()),
        time_zone: TenantZone::from_stored(&m.time_zone)
            .map_err(|e| CodecError::Invalid("time_zone", e.to_string()))?,
        break_reason_optional: m.break_reason_optional,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_day_started_before_tenants_had_zones_replays_with_its_utc_date() {
        let started_at = Utc.with_ymd_and_hms(2026, 11, 25, 2, 30, 0).unwrap();
        assert_eq!(service_date_from("", started_at).unwrap().to_string(), "2026-11-25");
        assert_eq!(service_date_from("2026-11-24", started_at).unwrap().to_string(), "2026-11-24");
        assert!(service_date_from("24/11/2026", started_at).is_err());
    }
}
