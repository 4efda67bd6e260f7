//! Agents' news from distribution's events: who holds which task, a notification (and a browser
//! push) when a task becomes theirs or their client writes.

use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_proto::distribution::v1 as distribution;
use sqlx::PgConnection;

use super::outbound::enqueue_push;
use super::{Note, notify_agent, uuid_of};
use crate::domain::notification::{Kind, preview};

/// distribution's events: who holds which task; assignments and client messages for agents.
#[derive(Clone, Default)]
pub struct DistributionProjection;

async fn set_holder(conn: &mut PgConnection, tenant: &str, task: &str, agent: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO task_holders (tenant_id, task_id, agent_id) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, task_id) DO UPDATE SET agent_id = EXCLUDED.agent_id",
    )
    .bind(tenant)
    .bind(uuid_of(task))
    .bind(agent)
    .execute(conn)
    .await?;
    Ok(())
}

/// A browser push for a task that became the agent's (the agent may be in another tab).
async fn push_task_assigned(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    task_id: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({
        "kind": Kind::TaskAssigned.as_str(),
        "title": Kind::TaskAssigned.title(),
        "body": body,
        "task_id": task_id,
    });
    enqueue_push(conn, tenant, agent, &payload).await
}

/// A client erased in distribution: what their messages left here (the agents' notification log
/// and browser pushes of those tasks) loses the client's words.
async fn erase_client_copies(conn: &mut PgConnection, tenant: &str, task_ids: &[String]) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = task_ids.iter().filter_map(|id| uuid::Uuid::parse_str(id).ok()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE agent_notifications SET body = '' WHERE tenant_id = $1 AND task_id = ANY($2) AND kind = $3")
        .bind(tenant)
        .bind(&ids)
        .bind(Kind::ClientMessage.as_str())
        .execute(&mut *conn)
        .await?;
    let texts: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
    sqlx::query(
        "UPDATE push_jobs SET payload = (payload::jsonb || jsonb_build_object('body', ''))::text \
         WHERE tenant_id = $1 AND payload::jsonb ->> 'task_id' = ANY($2) AND payload::jsonb ->> 'kind' = $3",
    )
    .bind(tenant)
    .bind(&texts)
    .bind(Kind::ClientMessage.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Projection for DistributionProjection {
    type Contract = distribution::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: distribution::Event,
    ) -> Result<(), ProjectionError> {
        use distribution::Event as E;
        let tenant = event.tenant_id.as_str();
        match decoded {
            E::TaskAssigned(m) => {
                set_holder(conn, tenant, &m.task_id, Some(&m.agent_id)).await?;
                let body = format!("A task of {} is yours", m.department_id);
                let note =
                    Note { kind: Kind::TaskAssigned, task_id: uuid_of(&m.task_id), message_id: None, body: &body };
                notify_agent(conn, tenant, &m.agent_id, note).await?;
                push_task_assigned(conn, tenant, &m.agent_id, &m.task_id, &body).await?;
            }
            E::TaskClaimed(m) => {
                set_holder(conn, tenant, &m.task_id, Some(&m.agent_id)).await?;
            }
            E::TaskTransferred(m) => {
                let to = Some(m.to_agent_id.as_str()).filter(|a| !a.is_empty());
                set_holder(conn, tenant, &m.task_id, to).await?;
                if let Some(agent) = to {
                    let body = format!("Transferred to you by {}", m.transferred_by);
                    let note =
                        Note { kind: Kind::TaskAssigned, task_id: uuid_of(&m.task_id), message_id: None, body: &body };
                    notify_agent(conn, tenant, agent, note).await?;
                    push_task_assigned(conn, tenant, agent, &m.task_id, &body).await?;
                }
            }
            E::TaskRequeued(m) => {
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            E::TaskCompleted(m) => {
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            E::TaskCancelled(m) => {
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            E::TaskMessageRecorded(m) => {
                if !m.agent_id.is_empty() {
                    let text = preview(&m.text);
                    let note = Note {
                        kind: Kind::ClientMessage,
                        task_id: uuid_of(&m.task_id),
                        message_id: uuid_of(&m.message_id),
                        body: &text,
                    };
                    notify_agent(conn, tenant, &m.agent_id, note).await?;
                    let payload = serde_json::json!({
                        "kind": Kind::ClientMessage.as_str(),
                        "title": Kind::ClientMessage.title(),
                        "body": text,
                        "task_id": m.task_id,
                        "message_id": m.message_id,
                    });
                    enqueue_push(conn, tenant, &m.agent_id, &payload).await?;
                }
            }
            // A new task is no one's yet: agents hear of it when it is assigned.
            E::TaskCreated(_) => {}
            E::ClientDataErased(m) => erase_client_copies(conn, tenant, &m.task_ids).await?,
        }
        Ok(())
    }
}
