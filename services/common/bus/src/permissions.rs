//! The permissions other contexts enforce, kept from agent-sessions' `PermissionGranted` /
//! `PermissionRevoked` events in the consuming service's `agent_permissions` table.

use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as sessions;
use sqlx::PgConnection;

use crate::{InboundEvent, Projection, ProjectionError};

/// Grants and revocations, applied to `agent_permissions (tenant_id, agent_id, permission)`.
#[derive(Clone, Default)]
pub struct PermissionsProjection;

impl Projection for PermissionsProjection {
    type Contract = sessions::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: sessions::Event,
    ) -> Result<(), ProjectionError> {
        use sessions::Event as E;
        match decoded {
            E::PermissionGranted(m) => {
                sqlx::query(
                    "INSERT INTO agent_permissions (tenant_id, agent_id, permission) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&m.agent_id)
                .bind(&m.permission)
                .execute(conn)
                .await?;
            }
            E::PermissionRevoked(m) => {
                sqlx::query("DELETE FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = $3")
                    .bind(&event.tenant_id)
                    .bind(&m.agent_id)
                    .bind(&m.permission)
                    .execute(conn)
                    .await?;
            }
            // Only grants and revocations change what an agent may do.
            E::AgentRegistered(_)
            | E::DepartmentLinked(_)
            | E::DepartmentUnlinked(_)
            | E::TenantSettingsChanged(_)
            | E::ServiceDayStarted(_)
            | E::ExitNotified(_)
            | E::ExitClosed(_)
            | E::BreakStarted(_)
            | E::BreakEnded(_)
            | E::ServiceDayEnded(_) => {}
        }
        Ok(())
    }
}

/// Whether `agent` holds `permission` in `tenant`, as last granted or revoked.
pub async fn has_permission(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &str,
    permission: &str,
) -> Result<bool, sqlx::Error> {
    let granted: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = $3",
    )
    .bind(tenant)
    .bind(agent)
    .bind(permission)
    .fetch_optional(conn)
    .await?;
    Ok(granted.is_some())
}
