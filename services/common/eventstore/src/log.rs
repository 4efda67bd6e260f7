//! Reading the whole log in global-position order, a page at a time, with optional filters: what
//! the `ReadEvents` RPC of every service answers (a consumer catching up from the owner's store,
//! an operator following one aggregate or the tail of a service).
//!
//! A page is a keyset read on `global_position` (the primary key), so paging is gap-free and
//! repeat-free for a given set of committed events. One caveat is Postgres' own: positions come
//! from a sequence, so a transaction that took a lower position may commit after a reader has
//! already passed it (two appends in flight). A reader at the head of a busy log may therefore
//! see a position late; catching up to a stream (which carries every event) covers it.

use dw_ids::TenantId;
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::store::{RecordedEvent, StoreError, recorded_event_from_row};

/// The most events one page holds.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Which way a page runs from its start position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Events after the position (exclusive), oldest first.
    Forward,
    /// Events before the position (exclusive; 0 means from the newest), newest first.
    Backward,
}

/// One page to read: where it starts, which way, how many and which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Exclusive; `0` is the start of the log (forward) or its end (backward).
    pub from_position: i64,
    pub direction: Direction,
    /// 1..=[`MAX_PAGE_SIZE`] (clamped).
    pub limit: i64,
    pub tenant: Option<TenantId>,
    pub event_type: Option<String>,
    pub stream_id: Option<String>,
}

/// A page of the log and whether it reached the end of what matched when it was read.
#[derive(Debug, Clone)]
pub struct LogPage {
    pub events: Vec<RecordedEvent>,
    pub end_of_log: bool,
}

impl LogPage {
    /// Where the next page starts: the last event's position, or `from` when the page is empty.
    pub fn next_position(&self, from: i64) -> i64 {
        self.events.last().map_or(from, |event| event.global_position)
    }
}

/// Reads one page of the log.
pub async fn read_log(pool: &PgPool, query: &LogQuery) -> Result<LogPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT global_position, event_id, tenant_id, stream_id, version, event_type, subject, payload, \
                recorded_at, correlation_id, causation_id, traceparent \
         FROM events WHERE true",
    );
    match query.direction {
        Direction::Forward => {
            sql.push(" AND global_position > ").push_bind(query.from_position);
        }
        Direction::Backward if query.from_position > 0 => {
            sql.push(" AND global_position < ").push_bind(query.from_position);
        }
        Direction::Backward => {}
    }
    if let Some(tenant) = &query.tenant {
        sql.push(" AND tenant_id = ").push_bind(tenant.as_str().to_owned());
    }
    if let Some(event_type) = &query.event_type {
        sql.push(" AND event_type = ").push_bind(event_type.clone());
    }
    if let Some(stream_id) = &query.stream_id {
        sql.push(" AND stream_id = ").push_bind(stream_id.clone());
    }
    sql.push(match query.direction {
        Direction::Forward => " ORDER BY global_position ASC",
        Direction::Backward => " ORDER BY global_position DESC",
    });
    // One more than the page: whether it is the last one.
    sql.push(" LIMIT ").push_bind(limit + 1);
    let rows = sql.build().fetch_all(pool).await?;
    let mut events = rows.iter().map(recorded_event_from_row).collect::<Result<Vec<_>, _>>()?;
    let page_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let end_of_log = events.len() <= page_len;
    events.truncate(page_len);
    Ok(LogPage { events, end_of_log })
}
