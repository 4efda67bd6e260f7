//! The distribution locks: transaction-scoped Postgres advisory locks, so they hold across
//! replicas and end with the transaction whatever happens.
//!
//! - the tenant's lock: exclusive for tenant-wide changes (settings, automatic distribution
//!   turned on, an erasure), shared under every other lock below, so a tenant-wide change waits for
//!   the department-scoped ones in flight and holds them off while it runs;
//! - a client's lock (by phone): an inbound message opens one task per client;
//! - a department's lock: its queue's order and the decisions taken from it.
//!
//! A transaction takes what it needs in one statement, in one order (tenant, client,
//! departments by key), so two never wait on each other in a cycle. One that discovers a
//! department later (a task transferred meanwhile) takes it then; should that ever close a cycle,
//! Postgres aborts one of the two with a deadlock error, which is retried like a conflict.

use dw_ids::TenantId;
use sqlx::PgConnection;

fn tenant_key(tenant: &TenantId) -> String {
    format!("dw-distribution:{tenant}")
}

/// Takes the tenant's lock, exclusive, until the transaction ends: nothing else of the tenant's
/// distribution runs meanwhile.
pub async fn lock_tenant(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(tenant_key(tenant)).execute(conn).await?;
    Ok(())
}

/// Takes the tenant's lock shared, then the client's (when given) and each department's
/// exclusive, until the transaction ends. Departments may repeat; none: the tenant's alone.
pub async fn lock_departments<S: AsRef<str>>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    client: Option<&str>,
    departments: &[S],
) -> Result<(), sqlx::Error> {
    lock(conn, tenant, client, None, departments).await.map(|_| ())
}

/// [`lock_departments`] over `departments` and every department `agent` is linked to (none
/// without an agent), read and locked in one statement; returns the agent's departments (by
/// name). Links that change meanwhile are handled as when read just before: a department linked
/// after the read is not locked nor returned.
pub async fn lock_with_agent_departments<S: AsRef<str>>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: Option<&str>,
    departments: &[S],
) -> Result<Vec<String>, sqlx::Error> {
    lock(conn, tenant, None, agent, departments).await
}

/// The one locking statement: the tenant's lock shared, then the client's, then each of
/// `departments` and of `agent`'s (read in the same statement) by key; returns `agent`'s
/// departments, sorted.
async fn lock<S: AsRef<str>>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    client: Option<&str>,
    agent: Option<&str>,
    departments: &[S],
) -> Result<Vec<String>, sqlx::Error> {
    let departments: Vec<&str> = departments.iter().map(AsRef::as_ref).collect();
    // Evaluated over the sorted rows, in order: the tenant's first, the client's, then the
    // departments' by key.
    let rows: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT k.agents_department FROM ( \
           SELECT CASE WHEN k.shared THEN pg_advisory_xact_lock_shared(k.key) ELSE pg_advisory_xact_lock(k.key) END, \
                  k.agents_department \
           FROM (SELECT 0 AS rank, TRUE AS shared, hashtextextended($1, 0) AS key, NULL::text AS agents_department \
                 UNION ALL SELECT 1, FALSE, hashtextextended($1 || ':client:' || $5, 0), NULL WHERE $5::text IS NOT NULL \
                 UNION ALL SELECT 2, FALSE, hashtextextended($1 || ':department:' || d, 0), max(d) FILTER (WHERE mine) \
                           FROM (SELECT unnest($3::text[]) AS d, FALSE AS mine \
                                 UNION ALL SELECT department_id, TRUE FROM agent_departments \
                                           WHERE tenant_id = $2 AND agent_id = $4) u \
                           GROUP BY d \
                 ORDER BY rank, key) k) k",
    )
    .bind(tenant_key(tenant))
    .bind(tenant)
    .bind(&departments)
    .bind(agent)
    .bind(client)
    .fetch_all(conn)
    .await?;
    let mut linked: Vec<String> = rows.into_iter().filter_map(|(department,)| department).collect();
    linked.sort();
    Ok(linked)
}
