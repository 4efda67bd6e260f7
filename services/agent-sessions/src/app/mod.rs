//! Command handlers: load the aggregate (snapshot, or replay of its stream), decide, append the
//! events with the read-model updates and the idempotency record in one transaction; retry a
//! bounded number of times when another writer got there first.

use chrono::{DateTime, Utc};
use dw_auth::TenantId;
use dw_eventstore::RecordedEvent;
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::store;
use dw_proto::agentsessions::v1 as pb;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};

use crate::codec::{self, CodecError, timestamp};
use crate::domain::service_day::{self, ServiceDay};
use crate::domain::tenant_settings::{self, TenantSettings};
use crate::domain::{AgentId, DayId, DomainError, agent};
use crate::projections;
use crate::projections::queries::status_to_pb;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("concurrent modification")]
    Conflict,
    #[error("gave up after {0} concurrent modifications")]
    Aborted(u32),
    #[error("request id already used for {0}")]
    RequestIdReused(String),
    #[error("stored event: {0}")]
    Codec(#[from] CodecError),
    #[error("stored response: {0}")]
    StoredResponse(#[from] prost::DecodeError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

dw_eventstore::impl_command_error!(AppError);

pub use dw_grpc_kit::command::CommandContext;

#[derive(Clone)]
pub struct App {
    pool: PgPool,
    max_attempts: u32,
}

impl App {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, max_attempts: 5 }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn execute<A: Attempt<AppError>>(&self, ctx: &CommandContext, command: &A) -> Result<A::Response, AppError> {
        command::execute(&self.pool, ctx.key(), self.max_attempts, command).await
    }

    pub async fn service_day(
        &self,
        ctx: &CommandContext,
        command: service_day::Command,
    ) -> Result<pb::AgentDayState, AppError> {
        let agent_id = AgentId::parse(&ctx.actor).map_err(|_| DomainError::AgentNotFound(ctx.actor.clone()))?;
        self.execute(ctx, &ServiceDayCommand { ctx, agent_id, command }).await
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
        settings: TenantSettings,
    ) -> Result<pb::TenantSettings, AppError> {
        self.execute(ctx, &SettingsCommand { ctx, settings }).await
    }

    /// The calling agent's current state (no command).
    pub async fn day_state(&self, tenant: &TenantId, agent_id: &AgentId) -> Result<pb::AgentDayState, AppError> {
        let mut conn = self.pool.acquire().await?;
        let (agent, _) = load_agent(&mut conn, tenant, agent_id).await?;
        if !agent.is_registered() {
            return Err(DomainError::AgentNotFound(agent_id.to_string()).into());
        }
        let (state, version) = load_service_day(&mut conn, tenant, agent_id).await?;
        Ok(day_state_to_pb(agent_id, &state, version))
    }
}

async fn load<S, E>(
    conn: &mut PgConnection,
    stream_id: &str,
    decode: fn(&RecordedEvent) -> Result<E, CodecError>,
    evolve: fn(S, &E) -> S,
) -> Result<(S, i64), AppError>
where
    S: DeserializeOwned + Default,
{
    let stream = store::load_stream(conn, stream_id).await?;
    if let Some(snapshot) = stream.snapshot {
        match serde_json::from_value::<S>(snapshot) {
            Ok(state) => return Ok((state, stream.version)),
            Err(error) => tracing::warn!(%error, stream_id, "snapshot unreadable, replaying the stream"),
        }
    }
    let events = store::read_stream(conn, stream_id, 0).await?;
    let mut state = S::default();
    for recorded in &events {
        state = evolve(state, &decode(recorded)?);
    }
    let version = events.last().map(|e| e.version).unwrap_or(0);
    Ok((state, version))
}

async fn load_agent(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent_id: &AgentId,
) -> Result<(agent::Agent, i64), AppError> {
    load(conn, &codec::agent_stream(tenant.as_str(), agent_id), codec::decode_agent, agent::evolve).await
}

async fn load_service_day(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent_id: &AgentId,
) -> Result<(ServiceDay, i64), AppError> {
    load(conn, &codec::service_day_stream(tenant.as_str(), agent_id), codec::decode_service_day, service_day::evolve)
        .await
}

async fn load_settings(conn: &mut PgConnection, tenant: &TenantId) -> Result<(TenantSettings, i64), AppError> {
    load(conn, &codec::tenant_stream(tenant.as_str()), codec::decode_tenant_settings, tenant_settings::evolve).await
}

fn snapshot_of(state: &impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(state).ok()
}

struct ServiceDayCommand<'c> {
    ctx: &'c CommandContext,
    agent_id: AgentId,
    command: service_day::Command,
}

impl Attempt<AppError> for ServiceDayCommand<'_> {
    type Response = pb::AgentDayState;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::AgentDayState, AppError> {
        let ctx = self.ctx;
        let tenant = &ctx.tenant;
        let (agent, _) = load_agent(conn, tenant, &self.agent_id).await?;
        if !agent.is_registered() {
            return Err(DomainError::AgentNotFound(self.agent_id.to_string()).into());
        }
        let (settings, _) = load_settings(conn, tenant).await?;
        let (state, version) = load_service_day(conn, tenant, &self.agent_id).await?;
        // The day's departments are the agent's at the moment it starts.
        let command = match &self.command {
            service_day::Command::StartDay { day_id, .. } => service_day::Command::StartDay {
                day_id: *day_id,
                departments: agent.departments.iter().cloned().collect(),
            },
            other => other.clone(),
        };
        let events = service_day::decide(&state, command, &settings, now)?;
        let new_state = events.iter().fold(state, service_day::evolve);
        let new_events = events.iter().map(|e| codec::encode_service_day(&self.agent_id, e)).collect();
        let stream_id = codec::service_day_stream(tenant.as_str(), &self.agent_id);
        let recorded = store::append(
            conn,
            tenant.as_str(),
            &stream_id,
            version,
            new_events,
            snapshot_of(&new_state),
            &ctx.metadata,
        )
        .await?;
        for (event, stored) in events.iter().zip(&recorded) {
            projections::apply_service_day(conn, tenant.as_str(), &self.agent_id, event, stored.version).await?;
        }
        let new_version = recorded.last().map(|e| e.version).unwrap_or(version);
        Ok(day_state_to_pb(&self.agent_id, &new_state, new_version))
    }
}

/// A new day's id: time-ordered.
pub fn new_day_id() -> DayId {
    DayId(uuid::Uuid::now_v7())
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

impl Attempt<AppError> for AgentCommand<'_> {
    type Response = pb::Agent;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Agent, AppError> {
        let ctx = self.ctx;
        let tenant = ctx.tenant.as_str();
        let (state, version) = load_agent(conn, &ctx.tenant, &self.agent_id).await?;
        let events = agent::decide(&self.agent_id, &state, self.command.clone(), &ctx.actor, now)?;
        let new_state = events.iter().fold(state, agent::evolve);
        let new_events = events.iter().map(|e| codec::encode_agent(&self.agent_id, e)).collect();
        let stream_id = codec::agent_stream(tenant, &self.agent_id);
        let recorded =
            store::append(conn, tenant, &stream_id, version, new_events, snapshot_of(&new_state), &ctx.metadata)
                .await?;
        for (event, stored) in events.iter().zip(&recorded) {
            projections::apply_agent(conn, tenant, &self.agent_id, event, stored.version).await?;
        }
        let new_version = recorded.last().map(|e| e.version).unwrap_or(version);
        Ok(agent_to_pb(&self.agent_id, &new_state, new_version))
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
    settings: TenantSettings,
}

impl Attempt<AppError> for SettingsCommand<'_> {
    type Response = pb::TenantSettings;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<pb::TenantSettings, AppError> {
        let ctx = self.ctx;
        let tenant = ctx.tenant.as_str();
        let (state, version) = load_settings(conn, &ctx.tenant).await?;
        let events = tenant_settings::decide(&state, self.settings.clone());
        if events.is_empty() {
            return Ok(projections::queries::settings_to_pb(&state, version));
        }
        let new_state = events.iter().fold(state, tenant_settings::evolve);
        let new_events = events.iter().map(|e| codec::encode_tenant_settings(e, &ctx.actor)).collect();
        let stream_id = codec::tenant_stream(tenant);
        let recorded =
            store::append(conn, tenant, &stream_id, version, new_events, snapshot_of(&new_state), &ctx.metadata)
                .await?;
        let new_version = recorded.last().map(|e| e.version).unwrap_or(version);
        for event in &events {
            projections::apply_settings(conn, tenant, event, new_version).await?;
        }
        Ok(projections::queries::settings_to_pb(&new_state, new_version))
    }
}
