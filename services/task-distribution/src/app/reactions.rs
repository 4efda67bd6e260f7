//! What task-distribution does when other contexts' events arrive (durable JetStream consumers,
//! each event applied in one transaction with its bookkeeping, under the distribution locks it
//! needs, [`super::locks`]):
//! agent-sessions' events keep the agents' availability and trigger assignment rounds; an
//! inbound client message opens a task or is recorded on the client's open one.

use chrono::{DateTime, SubsecRound, Utc};
use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_eventstore::EventMetadata;
use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::messaging::v1 as messaging;
use dw_tenant_time::TenantZone;
use sqlx::PgConnection;

use super::dispatcher::{self, Scope};
use super::locks::lock_departments;
use super::tasks::{CreateTask, create_task, dispatch_in, lock_for_agent};
use super::{AppError, append_task, load_task, lock_tenant};
use crate::domain::task::{self, Command, RequeueCause};
use crate::domain::values::parse_client_name;
use crate::domain::{AgentId, Channel, ClientContact, DepartmentId, PhoneNumber, Priority, TaskId};
use crate::metrics::DistributionMetrics;
use crate::projections;

fn metadata_of(event: &InboundEvent) -> EventMetadata {
    EventMetadata {
        correlation_id: event.correlation_id.clone(),
        causation_id: Some(event.event_id.to_string()),
        traceparent: dw_telemetry::current_traceparent(),
    }
}

fn to_projection_error(error: AppError) -> ProjectionError {
    match error {
        AppError::Database(error) => ProjectionError::from(error),
        AppError::Conflict | AppError::Aborted(_) => ProjectionError::Transient(error.to_string()),
        other => ProjectionError::Permanent(other.to_string()),
    }
}

fn agent_of(value: &str) -> Result<AgentId, ProjectionError> {
    AgentId::parse(value).map_err(|e| ProjectionError::Permanent(format!("agent_id: {e}")))
}

async fn ensure_agent(conn: &mut PgConnection, tenant: &TenantId, agent: &AgentId) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO agents (tenant_id, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

async fn set_flags(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &AgentId,
    sql: &'static str,
) -> Result<(), sqlx::Error> {
    ensure_agent(conn, tenant, agent).await?;
    sqlx::query(sql).bind(tenant).bind(agent.as_str()).execute(conn).await?;
    Ok(())
}

async fn link(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &AgentId,
    department: &str,
) -> Result<(), sqlx::Error> {
    ensure_agent(conn, tenant, agent).await?;
    sqlx::query(
        "INSERT INTO agent_departments (tenant_id, agent_id, department_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(agent.as_str())
    .bind(department)
    .execute(conn)
    .await?;
    Ok(())
}

/// Agent availability from agent-sessions.
#[derive(Clone)]
pub struct AgentSessionsReaction {
    pub metrics: DistributionMetrics,
}

impl Projection for AgentSessionsReaction {
    type Contract = sessions::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: sessions::Event,
    ) -> Result<(), ProjectionError> {
        let tenant = &event.tenant_id;
        react_to_agent_event(conn, tenant, event, decoded, &self.metrics).await.map_err(to_projection_error)
    }
}

async fn react_to_agent_event(
    conn: &mut PgConnection,
    tenant: &TenantId,
    event: &InboundEvent,
    decoded: sessions::Event,
    metrics: &DistributionMetrics,
) -> Result<(), AppError> {
    let now = Utc::now().trunc_subsecs(6);
    let metadata = metadata_of(event);
    let permanent = |e: ProjectionError| AppError::invalid("event", e.to_string());
    use sessions::Event as E;
    // What each event may change: a department's queue takes its lock, the tenant's settings the
    // tenant's (exclusive); the rest only an agent's row, under the tenant's lock shared.
    // The departments locked here are those a round then runs in.
    let no_departments: [&str; 0] = [];
    let locked: Vec<String> = match &decoded {
        E::TenantSettingsChanged(_) => {
            lock_tenant(conn, tenant).await?;
            Vec::new()
        }
        E::DepartmentLinked(m) => {
            let departments = vec![m.department_id.clone()];
            lock_departments(conn, tenant, None, &departments).await?;
            departments
        }
        E::ServiceDayStarted(m) => {
            let mut departments = projections::agents::departments_of(conn, tenant, &m.agent_id).await?;
            departments.extend(m.department_ids.iter().cloned());
            departments.sort();
            departments.dedup();
            lock_departments(conn, tenant, None, &departments).await?;
            departments
        }
        // An exit cancelled or a break over (not the day's end): the agent is available again.
        E::ExitClosed(m) if m.cause == sessions::ExitCloseCause::Cancelled as i32 => {
            lock_for_agent(conn, tenant, &agent_of(&m.agent_id).map_err(permanent)?).await?
        }
        E::BreakEnded(m) if !m.day_ending => {
            lock_for_agent(conn, tenant, &agent_of(&m.agent_id).map_err(permanent)?).await?
        }
        E::ServiceDayEnded(m) => {
            let departments = projections::tasks::departments_of_open_tasks(conn, tenant, &m.agent_id).await?;
            lock_departments(conn, tenant, None, &departments).await?;
            departments
        }
        // Only the agent's row changes (an exit closed by a break or the day's end, a break
        // ended by the day's end: a BreakStarted or ServiceDayEnded follows).
        E::ExitClosed(_)
        | E::BreakEnded(_)
        | E::AgentRegistered(_)
        | E::DepartmentUnlinked(_)
        | E::PermissionGranted(_)
        | E::PermissionRevoked(_)
        | E::ExitNotified(_)
        | E::BreakStarted(_) => {
            lock_departments(conn, tenant, None, &no_departments).await?;
            Vec::new()
        }
    };
    match decoded {
        E::AgentRegistered(m) => {
            ensure_agent(conn, tenant, &agent_of(&m.agent_id).map_err(permanent)?).await?;
        }
        E::DepartmentLinked(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            link(conn, tenant, &agent, &m.department_id).await?;
            dispatch_in(conn, tenant, locked, "department_linked", metrics, &metadata, now).await?;
        }
        E::DepartmentUnlinked(m) => {
            sqlx::query("DELETE FROM agent_departments WHERE tenant_id = $1 AND agent_id = $2 AND department_id = $3")
                .bind(tenant)
                .bind(&m.agent_id)
                .bind(&m.department_id)
                .execute(&mut *conn)
                .await?;
        }
        E::PermissionGranted(m) => {
            sqlx::query(
                "INSERT INTO agent_permissions (tenant_id, agent_id, permission) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(&m.agent_id)
            .bind(&m.permission)
            .execute(&mut *conn)
            .await?;
        }
        E::PermissionRevoked(m) => {
            sqlx::query("DELETE FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = $3")
                .bind(tenant)
                .bind(&m.agent_id)
                .bind(&m.permission)
                .execute(&mut *conn)
                .await?;
        }
        E::TenantSettingsChanged(m) => {
            projections::agents::ensure_settings(conn, tenant).await?;
            // Empty in events from before tenants had zones: UTC, as then. agent-sessions checked the
            // name; one this binary's zone database lacks is kept as UTC rather than stopping the stream.
            let zone = TenantZone::from_stored(&m.time_zone).unwrap_or_else(|unknown| {
                tracing::warn!(%tenant, error = %unknown, "tenant time zone unknown here, keeping utc");
                TenantZone::UTC
            });
            sqlx::query(
                "UPDATE distribution_settings SET auto_distribution_enabled = $2, time_zone = $3, updated_at = now() \
                 WHERE tenant_id = $1",
            )
            .bind(tenant)
            .bind(m.auto_distribution_enabled)
            .bind(zone.name())
            .execute(&mut *conn)
            .await?;
            dispatcher::run(conn, tenant, Scope::All, "auto_distribution_enabled", metrics, &metadata, now, None)
                .await?;
        }
        E::ServiceDayStarted(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            let started_at =
                m.started_at.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)).unwrap_or(now);
            for department in &m.department_ids {
                link(conn, tenant, &agent, department).await?;
            }
            sqlx::query(
                "UPDATE agents SET day_open = TRUE, on_break = FALSE, exit_notified = FALSE, break_started_at = NULL, \
                 idle_since = $3 WHERE tenant_id = $1 AND agent_id = $2",
            )
            .bind(tenant)
            .bind(agent.as_str())
            .bind(started_at)
            .execute(&mut *conn)
            .await?;
            dispatch_in(conn, tenant, locked, "agent_day_started", metrics, &metadata, now).await?;
        }
        E::ExitNotified(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            set_flags(
                conn,
                tenant,
                &agent,
                "UPDATE agents SET exit_notified = TRUE WHERE tenant_id = $1 AND agent_id = $2",
            )
            .await?;
        }
        E::ExitClosed(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            set_flags(
                conn,
                tenant,
                &agent,
                "UPDATE agents SET exit_notified = FALSE WHERE tenant_id = $1 AND agent_id = $2",
            )
            .await?;
            // Closed by a break or the end of the day, the agent is not available: a
            // BreakStarted or ServiceDayEnded follows.
            if m.cause == sessions::ExitCloseCause::Cancelled as i32 {
                dispatch_in(conn, tenant, locked, "exit_cancelled", metrics, &metadata, now).await?;
            }
        }
        E::BreakStarted(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            set_flags(
                conn,
                tenant,
                &agent,
                "UPDATE agents SET on_break = TRUE, break_started_at = now() WHERE tenant_id = $1 AND agent_id = $2",
            )
            .await?;
        }
        E::BreakEnded(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            set_flags(
                conn,
                tenant,
                &agent,
                "UPDATE agents SET on_break = FALSE, break_started_at = NULL WHERE tenant_id = $1 AND agent_id = $2",
            )
            .await?;
            if !m.day_ending {
                dispatch_in(conn, tenant, locked, "break_ended", metrics, &metadata, now).await?;
            }
        }
        E::ServiceDayEnded(m) => {
            let agent = agent_of(&m.agent_id).map_err(permanent)?;
            set_flags(
                conn,
                tenant,
                &agent,
                "UPDATE agents SET day_open = FALSE, on_break = FALSE, exit_notified = FALSE, break_started_at = NULL \
                 WHERE tenant_id = $1 AND agent_id = $2",
            )
            .await?;
            requeue_tasks_of(conn, tenant, &agent, metrics, &metadata, now).await?;
        }
    }
    Ok(())
}

/// The agent went home: their open tasks go back to the front of their departments' queues,
/// to be offered to colleagues at once.
async fn requeue_tasks_of(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &AgentId,
    metrics: &DistributionMetrics,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let mut departments = Vec::new();
    for task_id in projections::tasks::open_tasks_of(conn, tenant, agent.as_str()).await? {
        let Some((state, version)) = load_task(conn, tenant, TaskId(task_id)).await? else {
            continue;
        };
        let events = task::decide(&state, Command::Requeue { cause: RequeueCause::AgentDayEnded }, now)?;
        let department = state.department.to_string();
        append_task(conn, tenant, Some(&state), version, events, metadata, now).await?;
        if !departments.contains(&department) {
            departments.push(department);
        }
    }
    if !departments.is_empty() {
        let scope = Scope::Departments(departments);
        dispatcher::run(conn, tenant, scope, "task_requeued", metrics, metadata, now, None).await?;
    }
    Ok(())
}

/// Inbound client messages from messaging.
#[derive(Clone)]
pub struct InboundMessageReaction {
    pub metrics: DistributionMetrics,
}

impl Projection for InboundMessageReaction {
    type Contract = messaging::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: messaging::Event,
    ) -> Result<(), ProjectionError> {
        use messaging::Event as E;
        let message = match decoded {
            E::InboundMessageReceived(message) => message,
            // Only a client's message opens or continues a task; the subject filter
            // (`*.inbound.>`) lets little else through.
            E::TemplateCreated(_)
            | E::TemplateUpdated(_)
            | E::TemplateArchived(_)
            | E::ContactUpserted(_)
            | E::MessageRequested(_)
            | E::MessageDispatched(_)
            | E::MessageDelivered(_)
            | E::MessageRead(_)
            | E::MessageFailed(_)
            | E::ContactOptedOut(_)
            | E::ContactOptedIn(_)
            | E::ProviderConfigChanged(_)
            | E::ClientDataErased(_) => return Ok(()),
        };
        let tenant = &event.tenant_id;
        record_inbound(conn, tenant, event, message, &self.metrics).await.map_err(to_projection_error)
    }
}

async fn record_inbound(
    conn: &mut PgConnection,
    tenant: &TenantId,
    event: &InboundEvent,
    message: messaging::InboundMessageReceived,
    metrics: &DistributionMetrics,
) -> Result<(), AppError> {
    let now = Utc::now().trunc_subsecs(6);
    let metadata = metadata_of(event);
    let channel = match messaging::Channel::try_from(message.channel) {
        Ok(messaging::Channel::Whatsapp) => Channel::Whatsapp,
        Ok(messaging::Channel::Sms) => Channel::Sms,
        _ => return Err(AppError::invalid("channel", format!("unsupported channel {}", message.channel))),
    };
    let phone = PhoneNumber::parse(&message.phone).map_err(|e| AppError::invalid("phone", e))?;
    let received_at =
        message.received_at.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)).unwrap_or(now);
    // The client's lock (one open task per client and channel) and the department's a new task
    // would queue in.
    let settings = projections::agents::settings(conn, tenant).await?;
    let department = Some(message.department_id.clone()).filter(|d| !d.is_empty()).or(settings.inbound_department_id);
    let client_key = format!("{}:{}", channel.as_str(), phone.as_str());
    lock_departments(conn, tenant, Some(&client_key), department.as_slice()).await?;
    let open = projections::tasks::open_task_of_client(conn, tenant, phone.as_str(), channel.as_str()).await?;
    let loaded = match open {
        Some(task_id) => load_task(conn, tenant, TaskId(task_id)).await?,
        None => {
            let department = department.ok_or_else(|| {
                AppError::invalid(
                    "department_id",
                    "the message names no department and the tenant has no inbound department",
                )
            })?;
            let department = DepartmentId::parse(&department).map_err(|e| AppError::invalid("department_id", e))?;
            let name = parse_client_name(&message.contact_name).unwrap_or_else(|_| phone.as_str().to_owned());
            let subject: String = message.text.chars().take(80).collect();
            let input = CreateTask {
                department,
                channel,
                contact: ClientContact {
                    name,
                    phone,
                    contact_id: Some(message.contact_id.clone()).filter(|c| !c.is_empty()),
                },
                priority: Priority::parse(5).map_err(|e| AppError::invalid("priority", e))?,
                subject,
                inbound_message_id: Some(message.message_id.clone()),
            };
            Some(create_task(conn, tenant, input, None, "inbound-message", metrics, &metadata, now).await?)
        }
    };
    let Some((state, version)) = loaded else {
        return Ok(());
    };
    let record = Command::RecordMessage { message_id: message.message_id, text: message.text, received_at };
    let events = task::decide(&state, record, now)?;
    append_task(conn, tenant, Some(&state), version, events, &metadata, now).await?;
    Ok(())
}
