//! Each tenant's time zone, kept from agent-sessions' `TenantSettingsChanged` events: the date
//! filters of the single-notifications log are dates in the tenant's calendar.

use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_proto::agentsessions::v1 as sessions;
use dw_tenant_time::TenantZone;
use sqlx::{PgConnection, PgPool};

/// `TenantSettingsChanged` → `tenant_time_zones (tenant_id, time_zone)`.
#[derive(Clone, Default)]
pub struct TenantZonesProjection;

impl Projection for TenantZonesProjection {
    type Contract = sessions::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: sessions::Event,
    ) -> Result<(), ProjectionError> {
        use sessions::Event as E;
        match decoded {
            E::TenantSettingsChanged(m) => {
                // Empty in events from before tenants had zones: UTC, as then. agent-sessions
                // checked the name; one this binary's zone database lacks is kept as UTC rather
                // than stopping the stream.
                let zone = TenantZone::from_stored(&m.time_zone).unwrap_or_else(|unknown| {
                    tracing::warn!(tenant = %event.tenant_id, error = %unknown, "tenant time zone unknown here, keeping utc");
                    TenantZone::UTC
                });
                sqlx::query(
                    "INSERT INTO tenant_time_zones (tenant_id, time_zone) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET time_zone = EXCLUDED.time_zone, updated_at = now()",
                )
                .bind(&event.tenant_id)
                .bind(zone.name())
                .execute(conn)
                .await?;
            }
            // Only the settings carry the zone (the consumer's filter keeps the others away).
            E::AgentRegistered(_)
            | E::DepartmentLinked(_)
            | E::DepartmentUnlinked(_)
            | E::PermissionGranted(_)
            | E::PermissionRevoked(_)
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

/// The tenant's zone (UTC until agent-sessions announced another).
pub async fn time_zone(pool: &PgPool, tenant: &str) -> Result<TenantZone, sqlx::Error> {
    let name: Option<String> = sqlx::query_scalar("SELECT time_zone FROM tenant_time_zones WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
    TenantZone::from_stored(name.as_deref().unwrap_or_default()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
