//! agent-sessions' read models as one rebuildable unit (`agent-sessions projections rebuild
//! read-models`): each lane's events folded and written set-based ([`super::batch`]); one at a
//! time, each stored event goes to the same `apply_*` function the command ran
//! ([`ReadModelsOneByOne`]).

use dw_eventstore::RecordedEvent;
use dw_eventstore::rebuild::{ApplyFuture, ReadModel};
use sqlx::PgConnection;

use crate::codec;
use crate::domain::service_day::Event as DayEvent;
use crate::domain::tenant_settings::Event as SettingsEvent;
use crate::domain::{AgentId, agent};

/// Every table the commands project into (their `apply_*` functions write nothing else).
pub struct ReadModels;

impl ReadModel for ReadModels {
    fn name(&self) -> &'static str {
        "read-models"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "tenant_settings",
            "agents",
            "agent_departments",
            "agent_permissions",
            "agent_status",
            "service_days",
            "service_day_breaks",
            "service_day_exits",
        ]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(apply_recorded(conn, event))
    }

    /// An agent's rows are written by its `agent:` and `serviceday:` streams only (both
    /// `<aggregate>:<tenant>:<agent>`), the tenant's settings by `tenant:<tenant>`: the stream id
    /// without its aggregate keeps each agent's events in one lane.
    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        event.stream_id.split_once(':').map(|(_, owner)| owner.to_owned())
    }

    /// A lane's events folded in memory and written set-based ([`super::batch`]).
    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> Option<ApplyFuture<'a>> {
        Some(Box::pin(super::batch::apply(conn, events)))
    }

    /// Set-based lanes are CPU, not round trips: on the 2-core bench machine 2 lanes were the
    /// fastest (32,958 events/s against 32,222 in 1 and 29,166 in 4, `make bench`).
    fn default_lanes(&self) -> usize {
        2
    }
}

/// The same read models applied one event at a time through the commands' `apply_*` functions:
/// the reference the batched rebuild is compared with (tests, `make bench`).
pub struct ReadModelsOneByOne;

impl ReadModel for ReadModelsOneByOne {
    fn name(&self) -> &'static str {
        ReadModels.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        ReadModels.tables()
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(apply_recorded(conn, event))
    }

    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        ReadModels.lane_key(event)
    }
}

/// A stored event of a stream with read models, decoded, with the agent its stream belongs to.
pub(super) enum Projected {
    Day(AgentId, DayEvent),
    Agent(AgentId, agent::Event),
    Settings(SettingsEvent),
}

/// `event` decoded by the aggregate its stream belongs to; `None` for a stream without a read
/// model.
pub(super) fn decode(event: &RecordedEvent) -> Result<Option<Projected>, String> {
    let tenant = &event.tenant_id;
    let stream = event.stream_id.as_str();
    let agent_of = |prefix: &str| {
        stream
            .strip_prefix(&format!("{prefix}:{tenant}:"))
            .map(|agent| AgentId::parse(agent).map_err(|e| format!("stream {stream}: agent {e}")))
            .transpose()
    };
    let failed = |e: &dyn std::fmt::Display| format!("event {}: {e}", event.event_id);
    Ok(Some(if let Some(agent) = agent_of("serviceday")? {
        Projected::Day(agent, codec::decode_service_day(event).map_err(|e| failed(&e))?)
    } else if let Some(agent) = agent_of("agent")? {
        Projected::Agent(agent, codec::decode_agent(event).map_err(|e| failed(&e))?)
    } else if stream == codec::tenant_stream(tenant) {
        Projected::Settings(codec::decode_tenant_settings(event).map_err(|e| failed(&e))?)
    } else {
        return Ok(None);
    }))
}

/// One stored event into the read models, by the aggregate its stream belongs to.
async fn apply_recorded(conn: &mut PgConnection, event: &RecordedEvent) -> Result<(), String> {
    let tenant = event.tenant_id.as_str();
    let applied = match decode(event)? {
        Some(Projected::Day(agent, day)) => super::apply_service_day(conn, tenant, &agent, &day, event.version).await,
        Some(Projected::Agent(agent, change)) => super::apply_agent(conn, tenant, &agent, &change, event.version).await,
        Some(Projected::Settings(settings)) => super::apply_settings(conn, tenant, &settings, event.version).await,
        None => Ok(()),
    };
    applied.map_err(|e| e.to_string())
}
