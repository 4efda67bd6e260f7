//! Command handlers: load the aggregate (snapshot, or replay of its stream), decide, append the
//! events with the read-model updates and the idempotency record atomically; retry a bounded
//! number of times when another writer got there first. The agents' service-day commands (the
//! hot path) send their writes as one statement ([`Plan`]); the rarer agent and settings
//! commands run in a transaction ([`Attempt`]).

use chrono::{DateTime, Utc};
use dw_eventstore::aggregate::{self, Aggregate};
use dw_eventstore::command::{self, Attempt, Plan};
use dw_eventstore::{CommandError, NewEvent, RecordedEvent, Writes};
use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::codec::{self, timestamp};
use crate::domain::service_day::{self, ServiceDay};
use crate::domain::tenant_settings::{self, TenantSettings};
use crate::domain::{AgentId, DayId, DomainError, agent};
use crate::projections;
use crate::projections::queries::status_to_pb;

mod reads;
pub mod status_feed;

/// Every command's error: one of the domain's rules, or the kernel's (conflict, request id, database).
pub type AppError = CommandError<DomainError>;

pub use dw_grpc_kit::command::CommandContext;

#[derive(Clone)]
pub struct App {
    pool: PgPool,
}

impl App {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn execute<A: Attempt<DomainError>>(
        &self,
        ctx: &CommandContext,
        command: &A,
    ) -> Result<A::Response, AppError> {
        command::execute(&self.pool, ctx, command).await
    }

    pub async fn service_day(
        &self,
        ctx: &CommandContext,
        command: service_day::Command,
    ) -> Result<pb::AgentDayState, AppError> {
        let agent_id = AgentId::parse(&ctx.actor).map_err(|_| DomainError::AgentNotFound(ctx.actor.clone()))?;
        command::execute_planned(&self.pool, ctx, &ServiceDayCommand { ctx, agent_id, command }).await
    }

    pub async fn agent(
        &self,
        ctx: &CommandContext,
        agent_id: AgentId,
        command: agent::Command,
    ) -> Result<pb::Agent, AppError> {
        self.execute(ctx, &AgentCommand { ctx, agent_id, command }).await
    }

    pub async fn update_settings(
        &self,
        ctx: &CommandContext,
        update: tenant_settings::Update,
    ) -> Result<pb::TenantSettings, AppError> {
        self.execute(ctx, &SettingsCommand { ctx, update }).await
    }

    /// The calling agent's current state (no command).
    pub async fn day_state(&self, tenant: &TenantId, agent_id: &AgentId) -> Result<pb::AgentDayState, AppError> {
        let mut conn = self.pool.acquire().await?;
        let agent = aggregate::load(&mut conn, &AgentStream { tenant, agent_id }).await?;
        if !agent.state.is_registered() {
            return Err(DomainError::AgentNotFound(agent_id.to_string()).into());
        }
        let day = aggregate::load(&mut conn, &ServiceDayStream { tenant, agent_id }).await?;
        Ok(day_state_to_pb(agent_id, &day.state, day.version))
    }
}

/// One agent's service days.
pub struct ServiceDayStream<'a> {
    pub tenant: &'a TenantId,
    pub agent_id: &'a AgentId,
}

impl Aggregate for ServiceDayStream<'_> {
    type State = ServiceDay;
    type Event = service_day::Event;

    fn stream_id(&self) -> String {
        codec::service_day_stream(self.tenant, self.agent_id)
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<Self::Event, String> {
        codec::decode_service_day(recorded).map_err(|e| e.to_string())
    }

    fn encode(&self, event: &Self::Event) -> NewEvent {
        codec::encode_service_day(self.agent_id, event)
    }

    fn evolve(state: ServiceDay, event: &Self::Event) -> ServiceDay {
        service_day::evolve(state, event)
    }
}

/// One agent's registration, departments and permissions.
pub struct AgentStream<'a> {
    pub tenant: &'a TenantId,
    pub agent_id: &'a AgentId,
}

impl Aggregate for AgentStream<'_> {
    type State = agent::Agent;
    type Event = agent::Event;

    fn stream_id(&self) -> String {
        codec::agent_stream(self.tenant, self.agent_id)
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<Self::Event, String> {
        codec::decode_agent(recorded).map_err(|e| e.to_string())
    }

    fn encode(&self, event: &Self::Event) -> NewEvent {
        codec::encode_agent(self.agent_id, event)
    }

    fn evolve(state: agent::Agent, event: &Self::Event) -> agent::Agent {
        agent::evolve(state, event)
    }
}

/// A tenant's settings; `actor` is who changes them (carried by the events).
pub struct SettingsStream<'a> {
    pub tenant: &'a TenantId,
    pub actor: &'a str,
}

impl Aggregate for SettingsStream<'_> {
    type State = TenantSettings;
    type Event = tenant_settings::Event;

    fn stream_id(&self) -> String {
        codec::tenant_stream(self.tenant)
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<Self::Event, String> {
        codec::decode_tenant_settings(recorded).map_err(|e| e.to_string())
    }

    fn encode(&self, event: &Self::Event) -> NewEvent {
        codec::encode_tenant_settings(event, self.actor)
    }

    fn evolve(state: TenantSettings, event: &Self::Event) -> TenantSettings {
        tenant_settings::evolve(state, event)
    }
}

struct ServiceDayCommand<'c> {
    ctx: &'c CommandContext,
    agent_id: AgentId,
    command: service_day::Command,
}

impl Plan<DomainError> for ServiceDayCommand<'_> {
    type Response = pb::AgentDayState;

    fn streams(&self) -> Vec<String> {
        let (tenant, agent_id) = (&self.ctx.tenant, &self.agent_id);
        vec![
            AgentStream { tenant, agent_id }.stream_id(),
            SettingsStream { tenant, actor: &self.ctx.actor }.stream_id(),
            ServiceDayStream { tenant, agent_id }.stream_id(),
        ]
    }

    /// The agent's and the tenant's streams are read, not appended to: a department linked or a
    /// break reason removed while the command runs is what a transaction under `READ COMMITTED`
    /// would have missed too. The day's stream is guarded by its version.
    async fn plan(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        writes: &mut Writes,
    ) -> Result<pb::AgentDayState, AppError> {
        let ctx = self.ctx;
        let tenant = &ctx.tenant;
        let agent_id = &self.agent_id;
        let agent = aggregate::load(conn, &AgentStream { tenant, agent_id }).await?.state;
        if !agent.is_registered() {
            return Err(DomainError::AgentNotFound(agent_id.to_string()).into());
        }
        let settings = aggregate::load(conn, &SettingsStream { tenant, actor: &ctx.actor }).await?.state;
        let day = ServiceDayStream { tenant, agent_id };
        let loaded = aggregate::load(conn, &day).await?;
        // The day's departments are the agent's at the moment it starts.
        let command = match &self.command {
            service_day::Command::StartDay { day_id, .. } => service_day::Command::StartDay {
                day_id: *day_id,
                departments: agent.departments.iter().cloned().collect(),
            },
            other => other.clone(),
        };
        let events = service_day::decide(&loaded.state, command, &settings, now)?;
        let from = loaded.version;
        let staged = aggregate::stage(writes, tenant, &day, loaded, &events, &ctx.metadata)?;
        let versions = (from + 1)..;
        projections::stage_service_day(writes, tenant.as_str(), agent_id, events.iter().zip(versions));
        Ok(day_state_to_pb(agent_id, &staged.state, staged.version))
    }
}

/// A new day's id: time-ordered.
pub fn new_day_id() -> DayId {
    DayId::new()
}

pub fn day_state_to_pb(agent_id: &AgentId, state: &ServiceDay, version: i64) -> pb::AgentDayState {
    let status = status_to_pb(state.status());
    let mut view = pb::AgentDayState {
        agent_id: agent_id.to_string(),
        status: status as i32,
        version: version.max(0) as u64,
        status_since: state.off_since.map(timestamp),
        ..Default::default()
    };
    if let Some(day) = &state.day {
        view.day_id = day.day_id.to_string();
        view.day_started_at = Some(timestamp(day.started_at));
        view.status_since = Some(timestamp(day.status_since));
        let reason = match (&day.open_break, &day.open_exit) {
            (Some(open_break), _) => open_break.reason.clone(),
            (None, Some(open_exit)) => Some(open_exit.reason.clone()),
            (None, None) => None,
        };
        if let Some(reason) = reason {
            view.reason_id = reason.id.to_string();
            view.reason_label = reason.label;
        }
    }
    view
}

struct AgentCommand<'c> {
    ctx: &'c CommandContext,
    agent_id: AgentId,
    command: agent::Command,
}

impl Attempt<DomainError> for AgentCommand<'_> {
    type Response = pb::Agent;

    fn streams(&self) -> Vec<String> {
        vec![AgentStream { tenant: &self.ctx.tenant, agent_id: &self.agent_id }.stream_id()]
    }

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Agent, AppError> {
        let ctx = self.ctx;
        let stream = AgentStream { tenant: &ctx.tenant, agent_id: &self.agent_id };
        let loaded = aggregate::load(conn, &stream).await?;
        let events = agent::decide(&self.agent_id, &loaded.state, self.command.clone(), &ctx.actor, now)?;
        let appended = aggregate::append(conn, &ctx.tenant, &stream, loaded, &events, &ctx.metadata).await?;
        for (event, stored) in events.iter().zip(&appended.recorded) {
            projections::apply_agent(conn, ctx.tenant.as_str(), &self.agent_id, event, stored.version).await?;
        }
        Ok(agent_to_pb(&self.agent_id, &appended.state, appended.version))
    }
}

pub fn agent_to_pb(agent_id: &AgentId, state: &agent::Agent, version: i64) -> pb::Agent {
    pb::Agent {
        agent_id: agent_id.to_string(),
        display_name: state.display_name.clone().unwrap_or_default(),
        department_ids: state.departments.iter().map(ToString::to_string).collect(),
        permissions: state.permissions.keys().map(ToString::to_string).collect(),
        registered_at: state.registered_at.map(timestamp),
        version: version.max(0) as u64,
    }
}

struct SettingsCommand<'c> {
    ctx: &'c CommandContext,
    update: tenant_settings::Update,
}

impl Attempt<DomainError> for SettingsCommand<'_> {
    type Response = pb::TenantSettings;

    fn streams(&self) -> Vec<String> {
        vec![SettingsStream { tenant: &self.ctx.tenant, actor: &self.ctx.actor }.stream_id()]
    }

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<pb::TenantSettings, AppError> {
        let ctx = self.ctx;
        let stream = SettingsStream { tenant: &ctx.tenant, actor: &ctx.actor };
        let loaded = aggregate::load(conn, &stream).await?;
        let version = u64::try_from(loaded.version).unwrap_or_default();
        let events = tenant_settings::decide(&loaded.state, version, self.update.clone())?;
        if events.is_empty() {
            return Ok(projections::queries::settings_to_pb(&loaded.state, loaded.version));
        }
        let appended = aggregate::append(conn, &ctx.tenant, &stream, loaded, &events, &ctx.metadata).await?;
        for event in &events {
            projections::apply_settings(conn, ctx.tenant.as_str(), event, appended.version).await?;
        }
        Ok(projections::queries::settings_to_pb(&appended.state, appended.version))
    }
}
