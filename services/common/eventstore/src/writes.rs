//! A command's writes sent as one statement: the appends to its streams (each behind its stream's
//! guard), its read-model rows and its idempotency record, as the data-modifying parts of one
//! `WITH` statement run outside an explicit transaction. One statement is atomic on its own, so
//! the command costs two round trips (its reads, then its writes) instead of `BEGIN`, the reads,
//! one statement per write and `COMMIT`.
//!
//! The parts of one statement run against the database as it was before the statement: a part
//! does not see what another part writes. A command that writes the same table twice therefore
//! names the table ([`Write::new`]) and the second write goes in a second statement, both in one
//! transaction (then the command costs two more round trips, nothing else changes).
//!
//! A stream that moved since the command read it makes the statement raise (`dw_stream_moved`,
//! SQLSTATE `DW409`), which undoes every part of it: the command sees
//! [`StoreError::Conflict`] and is attempted again, as with [`crate::store::append`].

use chrono::{DateTime, SubsecRound, Utc};
use dw_ids::TenantId;
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::{Arguments, Encode, PgConnection, Type};

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::handoff::Committed;
use crate::store::{self, DECIDED_AT, EventMetadata, NewEvent, RecordedEvent, StoreError};

type Bind = Box<dyn Fn(&mut PgArguments) -> Result<(), BoxDynError> + Send + Sync>;

/// One data-modifying statement of a command (`INSERT`, `UPDATE`, `DELETE`, without
/// `RETURNING`), its placeholders numbered from `$1` in the order of its [`Write::bind`]s.
pub struct Write {
    table: &'static str,
    sql: &'static str,
    binds: Vec<Bind>,
    /// A guard's description ([`Write::guard`]).
    guard: Option<String>,
}

impl Write {
    /// A write of `table` (the table it changes, or any table it reads that another write of
    /// the same command changes).
    pub fn new(table: &'static str, sql: &'static str) -> Self {
        Self { table, sql, binds: Vec::new(), guard: None }
    }

    /// Makes this write a guard of the statement: its SQL ends with `RETURNING` and must return a
    /// row, or the whole statement raises (`dw_stream_moved`, naming `what`) and the command sees
    /// [`StoreError::Conflict`] and is attempted again, as when a stream it appends to moved
    /// (say, a capacity the write increments only while it is not reached). Run on its own
    /// ([`Write::execute`]), a guard is an ordinary write.
    #[must_use]
    pub fn guard(mut self, what: impl Into<String>) -> Self {
        self.guard = Some(what.into());
        self
    }

    /// The value of the next placeholder.
    #[must_use]
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send + Sync + 'static,
    {
        self.binds.push(Box::new(move |args| args.add(&value)));
        self
    }

    fn bind_into(&self, args: &mut PgArguments) -> Result<(), sqlx::Error> {
        for bind in &self.binds {
            bind(args).map_err(sqlx::Error::Encode)?;
        }
        Ok(())
    }

    /// Runs this write on its own (e.g. in a rebuild's transaction); the rows it changed.
    pub async fn execute(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let mut args = PgArguments::default();
        self.bind_into(&mut args)?;
        Ok(sqlx::query_with(sqlx::AssertSqlSafe(self.sql), args).execute(conn).await?.rows_affected())
    }
}

/// An append waiting for the command's statement.
struct StagedAppend {
    tenant_id: TenantId,
    stream_id: String,
    expected_version: i64,
    events: Vec<NewEvent>,
    snapshot: Option<Value>,
    metadata: EventMetadata,
    recorded_at: DateTime<Utc>,
}

/// What a command writes, gathered while it decides and sent when it has decided.
#[derive(Default)]
pub struct Writes {
    appends: Vec<StagedAppend>,
    writes: Vec<Write>,
}

impl Writes {
    /// Stages an append of `events` to `stream_id` at `expected_version`, with the stream's new
    /// `snapshot`; the checks of [`crate::store::append`] happen now. Returns the stream's
    /// version after the events.
    pub fn append(
        &mut self,
        tenant_id: &TenantId,
        stream_id: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        snapshot: Option<Value>,
        metadata: &EventMetadata,
    ) -> Result<i64, StoreError> {
        store::check_append(stream_id, &events, metadata)?;
        let version = expected_version + events.len() as i64;
        let recorded_at = DECIDED_AT.try_with(|at| *at).unwrap_or_else(|_| Utc::now().trunc_subsecs(6));
        self.appends.push(StagedAppend {
            tenant_id: tenant_id.clone(),
            stream_id: stream_id.to_owned(),
            expected_version,
            events,
            snapshot,
            metadata: metadata.clone(),
            recorded_at,
        });
        Ok(version)
    }

    /// Stages a write (a read-model row, say), sent after the appends it follows.
    pub fn push(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// Sends the writes: one statement, or (a table written twice) one per run of writes that
    /// touch distinct tables, in one transaction (a savepoint of the caller's, when `conn` is in
    /// one: a command that must hold locks while it decides stages its writes and sends them in
    /// its own transaction, one round trip instead of one per write).
    pub async fn execute(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let mut statements: Vec<Vec<Write>> = Vec::new();
        for write in self.writes {
            match statements.last_mut() {
                Some(current) if !current.iter().any(|earlier| earlier.table == write.table) => current.push(write),
                _ => statements.push(vec![write]),
            }
        }
        if statements.is_empty() {
            statements.push(Vec::new());
        }
        if statements.len() == 1 {
            let writes = statements.pop().unwrap_or_default();
            return send(conn, &self.appends, &writes).await;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let mut appends: &[StagedAppend] = &self.appends;
        for writes in &statements {
            send(&mut tx, appends, writes).await?;
            appends = &[];
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `sql` with each placeholder `$n` made `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// One statement: `appends`, then `writes`; raises when a stream moved.
async fn send(conn: &mut PgConnection, appends: &[StagedAppend], writes: &[Write]) -> Result<(), StoreError> {
    let mut args = PgArguments::default();
    let mut parts = Vec::with_capacity(appends.len() + writes.len());
    let mut outputs = Vec::with_capacity(appends.len() * 2);
    let mut expected_rows = 0;
    for (i, append) in appends.iter().enumerate() {
        let offset = args.len();
        let StagedAppend { tenant_id, stream_id, expected_version, events, snapshot, metadata, recorded_at } = append;
        let (expected_version, recorded_at) = (*expected_version, *recorded_at);
        store::append_arguments(
            &mut args,
            tenant_id,
            stream_id,
            expected_version,
            events,
            snapshot,
            metadata,
            recorded_at,
        )?;
        parts.push(renumber(&store::append_parts(&i.to_string(), expected_version == 0), offset));
        // Per event: which append, its outbox position, its global position and version.
        outputs.push(format!(
            "SELECT {i}::bigint, q.position, q.global_position, n.version \
             FROM queued{i} q JOIN inserted{i} n USING (global_position)"
        ));
        // The stream id is the append's first placeholder.
        outputs.push(format!(
            "SELECT dw_stream_moved(${}), {NO_ROW} WHERE NOT EXISTS (SELECT 1 FROM guard{i})",
            offset + 1
        ));
        expected_rows += append.events.len();
    }
    for (j, write) in writes.iter().enumerate() {
        let offset = args.len();
        write.bind_into(&mut args)?;
        parts.push(format!("write{j} AS ({})", renumber(write.sql, offset)));
        if let Some(what) = &write.guard {
            args.add(what.as_str()).map_err(sqlx::Error::Encode)?;
            outputs.push(format!(
                "SELECT dw_stream_moved(${}), {NO_ROW} WHERE NOT EXISTS (SELECT 1 FROM write{j})",
                args.len()
            ));
        }
    }
    if outputs.is_empty() {
        outputs.push(format!("SELECT 0::bigint, {NO_ROW} WHERE false"));
    }
    let sql = format!("WITH {} {}", parts.join(", "), outputs.join(" UNION ALL "));
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args).fetch_all(&mut *conn).await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) if crate::is_unique_violation(&error) || is_stream_moved(&error) => {
            return Err(conflict(appends));
        }
        Err(error) => return Err(error.into()),
    };
    if rows.len() != expected_rows {
        return Err(conflict(appends));
    }
    if crate::handoff::collecting() {
        crate::handoff::collect(committed(appends, &rows)?);
    }
    Ok(())
}

/// The rest of an output row after its first column (a guard's rows: never returned).
const NO_ROW: &str = "NULL::bigint, NULL::bigint, NULL::bigint";

/// The events `rows` say the statement queued, as the relay publishes them.
fn committed(appends: &[StagedAppend], rows: &[PgRow]) -> Result<Vec<Committed>, StoreError> {
    let mut committed = Vec::with_capacity(rows.len());
    for row in rows {
        let (part, position, global_position, version): (i64, i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        let append = usize::try_from(part).ok().and_then(|part| appends.get(part));
        let event = append.and_then(|append| {
            let index = usize::try_from(version - append.expected_version - 1).ok()?;
            Some((append, append.events.get(index)?))
        });
        let Some((append, event)) = event else {
            return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                "the append statement returned an event it did not write (part {part}, version {version})"
            ))));
        };
        committed.push(Committed {
            position,
            event: RecordedEvent {
                global_position,
                event_id: event.event_id,
                tenant_id: append.tenant_id.clone(),
                stream_id: append.stream_id.clone(),
                version,
                event_type: event.event_type.clone(),
                subject: event.subject.clone(),
                // What the relay publishes: the payload in the clear when the stored one is sealed.
                payload: event.published.clone().unwrap_or_else(|| event.payload.clone()),
                recorded_at: append.recorded_at,
                metadata: append.metadata.clone(),
            },
        });
    }
    Ok(committed)
}

fn conflict(appends: &[StagedAppend]) -> StoreError {
    match appends.first() {
        Some(append) => StoreError::Conflict { stream_id: append.stream_id.clone(), expected: append.expected_version },
        None => StoreError::Conflict { stream_id: "request".to_owned(), expected: 0 },
    }
}

/// The error `dw_stream_moved` raises.
fn is_stream_moved(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("DW409"))
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn placeholders_are_shifted_and_the_rest_kept() {
        assert_eq!(renumber("VALUES ($1, $2, $10) -- $x", 14), "VALUES ($15, $16, $24) -- $x");
        assert_eq!(renumber("SELECT $1::bigint", 0), "SELECT $1::bigint");
        assert_eq!(renumber("no placeholders", 3), "no placeholders");
    }
}
