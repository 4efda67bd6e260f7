//! The permissions other contexts enforce, kept from agent-sessions' `PermissionGranted` /
//! `PermissionRevoked` events in the consuming service's `agent_permissions` table.

use dw_proto::agentsessions::v1 as sessions;
use prost::Message as _;
use sqlx::PgConnection;

use crate::{InboundEvent, Projection, ProjectionError};

/// Grants and revocations, applied to `agent_permissions (tenant_id, agent_id, permission)`.
#[derive(Clone, Default)]
pub struct PermissionsProjection;

impl Projection for PermissionsProjection {
    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent) -> Result<(), ProjectionError> {
        let permanent = |e: prost::DecodeError| ProjectionError::Permanent(e.to_string());
        match event.event_type.as_str() {
            "dw.agentsessions.v1.PermissionGranted" => {
                let m = sessions::PermissionGranted::decode(event.payload.as_ref()).map_err(permanent)?;
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
            "dw.agentsessions.v1.PermissionRevoked" => {
                let m = sessions::PermissionRevoked::decode(event.payload.as_ref()).map_err(permanent)?;
                sqlx::query("DELETE FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = $3")
                    .bind(&event.tenant_id)
                    .bind(&m.agent_id)
                    .bind(&m.permission)
                    .execute(conn)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
