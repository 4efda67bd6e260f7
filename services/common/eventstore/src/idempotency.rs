//! Idempotent retries of mutating RPCs: the first response to a `(tenant, caller, request_id)` is
//! stored in the command's own transaction, and a retry gets it back instead of acting again.

use dw_ids::{RequestId, TenantId};
use sqlx::{PgConnection, Row};

use std::collections::HashMap;

use crate::StoreError;
use crate::store::StreamState;

/// Who asked for what.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub tenant_id: &'a TenantId,
    pub principal: &'a str,
    pub request_id: &'a RequestId,
    /// The RPC, e.g. `dw.agentsessions.v1.ServiceDayService/StartBreak`.
    pub operation: &'a str,
    /// A digest of the request body: the same key with another body is a reused request id.
    pub request_hash: &'a [u8],
}

/// The stored response of an earlier request with this key, if any. A key reused for another
/// operation or another request body is [`StoreError::RequestIdReused`].
pub async fn find_response(conn: &mut PgConnection, key: RequestKey<'_>) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(find_response_and_streams(conn, key, &[]).await?.0)
}

/// [`find_response`] and, in the same round trip, the version and snapshot of each of
/// `streams` (a stream with no event yet is at version 0).
pub async fn find_response_and_streams(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
    streams: &[String],
) -> Result<(Option<Vec<u8>>, HashMap<String, StreamState>), StoreError> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(lookup_sql(streams.len())))
        .bind(key.tenant_id)
        .bind(key.principal)
        .bind(key.request_id);
    if streams.len() > LISTED_STREAMS {
        query = query.bind(streams);
    } else {
        for stream in streams {
            query = query.bind(stream);
        }
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut found: HashMap<String, StreamState> =
        streams.iter().map(|stream| (stream.clone(), StreamState::default())).collect();
    let mut response = None;
    for row in rows {
        match row.try_get::<Option<String>, _>("stream_id")? {
            Some(stream_id) => {
                let state = StreamState { version: row.try_get("version")?, snapshot: row.try_get("snapshot")? };
                found.insert(stream_id, state);
            }
            None => {
                let operation: String = row.try_get("operation")?;
                if operation != key.operation {
                    return Err(StoreError::RequestIdReused(operation));
                }
                let stored_hash: Option<Vec<u8>> = row.try_get("request_hash")?;
                if stored_hash.is_some_and(|hash| hash != key.request_hash) {
                    return Err(StoreError::RequestIdReused(operation));
                }
                response = Some(row.try_get("response")?);
            }
        }
    }
    Ok((response, found))
}

/// Up to this many streams are named one placeholder each in the lookup; more go as one array.
const LISTED_STREAMS: usize = 4;

/// The lookup of [`find_response_and_streams`] for `streams` streams. Each stream has a
/// placeholder of its own, so the statement's generic plan (one index lookup per stream) costs
/// what a plan for its values would and Postgres keeps it: with one array placeholder it plans
/// the statement again at every call, as a plan for the array at hand (often empty) always
/// looks cheaper than the generic one.
fn lookup_sql(streams: usize) -> String {
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let request = "SELECT NULL::text AS stream_id, NULL::bigint AS version, NULL::jsonb AS snapshot, \
                       operation, request_hash, response FROM idempotency_keys \
                       WHERE tenant_id = $1 AND principal = $2 AND request_id = $3";
        let streams = " UNION ALL SELECT stream_id, version, snapshot, NULL, NULL, NULL FROM streams WHERE stream_id";
        let mut all: Vec<String> = (0..=LISTED_STREAMS)
            .map(|n| match n {
                0 => request.to_owned(),
                n => {
                    let placeholders: Vec<String> = (4..4 + n).map(|i| format!("${i}")).collect();
                    format!("{request}{streams} IN ({})", placeholders.join(", "))
                }
            })
            .collect();
        all.push(format!("{request}{streams} = ANY($4::text[])"));
        all
    });
    SQL[streams.min(LISTED_STREAMS + 1)].clone()
}

/// Which of `keys` (all of `tenant`) have a stored response already, in one round trip: the
/// requests a batch must leave to [`crate::command::execute`] (a retry, or a reused request id).
pub async fn answered(
    conn: &mut PgConnection,
    tenant: &TenantId,
    keys: &[RequestKey<'_>],
) -> Result<Vec<bool>, StoreError> {
    let principals: Vec<&str> = keys.iter().map(|key| key.principal).collect();
    let request_ids: Vec<&str> = keys.iter().map(|key| key.request_id.as_str()).collect();
    let found: Vec<i64> = sqlx::query_scalar(
        "SELECT k.i FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(principal, request_id, i) \
         WHERE EXISTS (SELECT 1 FROM idempotency_keys r \
                       WHERE r.tenant_id = $1 AND r.principal = k.principal AND r.request_id = k.request_id)",
    )
    .bind(tenant)
    .bind(&principals)
    .bind(&request_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut answered = vec![false; keys.len()];
    for i in found {
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| answered.get_mut(i)) {
            *slot = true;
        }
    }
    Ok(answered)
}

/// Records the response of a request in the caller's transaction. A concurrent request with the
/// same key that committed first makes this a [`StoreError::Conflict`]: retry and find it.
pub async fn record_response(conn: &mut PgConnection, key: RequestKey<'_>, response: &[u8]) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, principal, request_id, operation, request_hash, response) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(key.tenant_id)
    .bind(key.principal)
    .bind(key.request_id)
    .bind(key.operation)
    .bind(key.request_hash)
    .bind(response)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::Conflict { stream_id: format!("request:{}", key.request_id), expected: 0 });
    }
    Ok(())
}

/// [`record_response`] as a part of a command's one statement ([`crate::writes`]): without
/// `ON CONFLICT`, so a concurrent request with the same key that committed first fails the
/// whole statement (a unique violation: a conflict, retried, which then finds the response).
pub(crate) fn record_write(key: RequestKey<'_>, response: Vec<u8>) -> crate::Write {
    crate::Write::new(
        "idempotency_keys",
        "INSERT INTO idempotency_keys (tenant_id, principal, request_id, operation, request_hash, response) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.tenant_id.clone())
    .bind(key.principal.to_owned())
    .bind(key.request_id.clone())
    .bind(key.operation.to_owned())
    .bind(key.request_hash.to_vec())
    .bind(response)
}

/// Rewrites the stored responses of `operations` in `tenant` that hold `needle` (e.g. an erased
/// client's phone) with what `scrub` makes of them (the operation and the stored bytes); `None`
/// leaves a response as it is. A retry then answers the scrubbed response.
pub async fn scrub_responses(
    conn: &mut PgConnection,
    tenant: &TenantId,
    operations: &[&str],
    needle: &[u8],
    scrub: impl Fn(&str, &[u8]) -> Option<Vec<u8>>,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT principal, request_id, operation, response FROM idempotency_keys \
         WHERE tenant_id = $1 AND operation = ANY($2) AND position($3::bytea IN response) > 0",
    )
    .bind(tenant)
    .bind(operations)
    .bind(needle)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let operation: String = row.try_get("operation")?;
        let response: Vec<u8> = row.try_get("response")?;
        let Some(scrubbed) = scrub(&operation, &response) else {
            continue;
        };
        sqlx::query(
            "UPDATE idempotency_keys SET response = $4 WHERE tenant_id = $1 AND principal = $2 AND request_id = $3",
        )
        .bind(tenant)
        .bind(row.try_get::<String, _>("principal")?)
        .bind(row.try_get::<String, _>("request_id")?)
        .bind(scrubbed)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
