//! Running a command against the event store: inside one transaction, answer a retried
//! `request_id` with its stored response, otherwise attempt the command (load, decide, append)
//! and store its response with it; when another writer got there first, retry a bounded number
//! of times.
//!
//! This is the only way the services change state: a handler gets its transaction from
//! [`execute`], which needs the request's [`RequestKey`], so no mutation can skip idempotency.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use prost::Message;
use sqlx::{PgConnection, PgPool};

use dw_ids::{RequestId, TenantId};

use crate::EventMetadata;
use crate::error::CommandError;
use crate::handoff;
use crate::idempotency::{self, RequestKey};
use crate::store::StreamState;
use crate::writes::Writes;
use std::collections::HashMap;

/// Who asks, under which request id, for which RPC: what a command handler needs of a request.
/// Built once per mutating RPC at the edge (`dw_grpc_kit::command_context`).
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant: TenantId,
    /// The caller's subject (agent, manager or service id).
    pub actor: String,
    /// Managers and services act on anything of their tenant; agents on their own.
    pub privileged: bool,
    pub request_id: RequestId,
    /// The RPC, e.g. `dw.agentsessions.v1.ServiceDayService/StartBreak`.
    pub operation: &'static str,
    /// What the command's events carry: correlation, causation and trace context.
    pub metadata: EventMetadata,
    /// SHA-256 of the encoded request: a request id reused with another body is refused.
    pub request_hash: Vec<u8>,
}

impl CommandContext {
    /// The idempotency key of this request.
    pub fn key(&self) -> RequestKey<'_> {
        RequestKey {
            tenant_id: &self.tenant,
            principal: &self.actor,
            request_id: &self.request_id,
            operation: self.operation,
            request_hash: &self.request_hash,
        }
    }
}

/// How many times a conflicting command is attempted before it is `ABORTED`.
pub const MAX_ATTEMPTS: u32 = 5;

/// One attempt at a command inside the given transaction, deciding at `now`. `D` is the
/// service's broken-rule enum.
pub trait Attempt<D>: Sync {
    type Response: Message + Default;

    fn attempt<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Self::Response, CommandError<D>>> + Send + 'a;

    /// The streams the attempt loads, when it knows them before it starts: they are read with
    /// the request's idempotency lookup, in one round trip, and each `aggregate::load` of them
    /// takes its copy instead of asking the database again.
    fn streams(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A command whose writes go to the database as one statement ([`crate::writes`]): it reads what
/// it needs (its [`Plan::streams`] come with the request's idempotency lookup), decides, and
/// stages its appends and read-model rows in `writes`; the kernel adds the idempotency record
/// and sends them. Nothing runs in an explicit transaction: what the command read of the streams
/// it appends to is guarded by their versions; what it read elsewhere (another stream, a read
/// model) is as current as under `READ COMMITTED` in a transaction, which is what
/// [`Attempt`] has.
pub trait Plan<D>: Sync {
    type Response: Message + Default;

    /// The streams the command loads (see [`Attempt::streams`]).
    fn streams(&self) -> Vec<String>;

    fn plan<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
        writes: &'a mut Writes,
    ) -> impl Future<Output = Result<Self::Response, CommandError<D>>> + Send + 'a;
}

/// Runs a [`Plan`] idempotently under the request's key: two round trips (the lookup with the
/// streams, then the writes), retrying conflicts up to [`MAX_ATTEMPTS`] times.
pub async fn execute_planned<D, P>(
    pool: &PgPool,
    ctx: &CommandContext,
    command: &P,
) -> Result<P::Response, CommandError<D>>
where
    D: Send,
    P: Plan<D>,
{
    let key = ctx.key();
    let streams = &command.streams();
    retrying(|| async move {
        let mut conn = pool.acquire().await?;
        let (stored, prefetched) = idempotency::find_response_and_streams(&mut conn, key, streams).await?;
        if let Some(stored) = stored {
            return Ok(P::Response::decode(stored.as_slice())?);
        }
        let now = Utc::now().trunc_subsecs(6);
        let mut writes = Writes::default();
        let response = decided_at(now, prefetched, command.plan(&mut conn, now, &mut writes)).await?;
        writes.push(idempotency::record_write(key, response.encode_to_vec()));
        let (written, events) = handoff::collected(writes.execute(&mut conn)).await;
        written?;
        handoff::committed(pool, events);
        Ok(response)
    })
    .await
}

/// Runs `command` idempotently under the request's key, retrying conflicts up to
/// [`MAX_ATTEMPTS`] times.
pub async fn execute<D, A>(pool: &PgPool, ctx: &CommandContext, command: &A) -> Result<A::Response, CommandError<D>>
where
    D: Send,
    A: Attempt<D>,
{
    let key = ctx.key();
    let streams = &command.streams();
    retrying(|| async move {
        let mut tx = pool.begin().await?;
        let (stored, prefetched) = idempotency::find_response_and_streams(&mut tx, key, streams).await?;
        if let Some(stored) = stored {
            return Ok(A::Response::decode(stored.as_slice())?);
        }
        let now = Utc::now().trunc_subsecs(6);
        let (response, events) = handoff::collected(async {
            let (response, last) = LAST_WRITES
                .scope(RefCell::new(None), async {
                    let response = decided_at(now, prefetched, command.attempt(&mut tx, now)).await?;
                    Ok::<_, CommandError<D>>((response, LAST_WRITES.with(|last| last.borrow_mut().take())))
                })
                .await?;
            match last {
                Some(mut writes) => {
                    writes.push(idempotency::record_write(key, response.encode_to_vec()));
                    writes.execute(&mut tx).await?;
                }
                None => idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?,
            }
            Ok::<_, CommandError<D>>(response)
        })
        .await;
        let response = response?;
        tx.commit().await?;
        handoff::committed(pool, events);
        Ok(response)
    })
    .await
}

/// Several requests' commands decided together in one transaction ([`execute_batch`]), e.g.
/// creates queued behind the same lock: per request, in order, its response and its writes.
pub trait BatchPlan<D>: Sync {
    type Response: Message + Default;

    fn plan<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(Self::Response, Writes)>, CommandError<D>>> + Send + 'a;
}

/// Runs `plan` for the requests `contexts` in one transaction, and sends each request's writes
/// with its response's record in one statement (the statement the request alone would send, so
/// Postgres plans it once whatever the batch's size): one commit for all. The caller has checked that
/// none of them was answered already ([`idempotency::answered`]); one answered meanwhile (a
/// concurrent retry) fails the whole batch as a conflict, nothing of it is written, and the
/// caller runs each request alone ([`execute`]), which finds that answer. Not retried here.
pub async fn execute_batch<D, P>(
    pool: &PgPool,
    contexts: &[&CommandContext],
    plan: &P,
) -> Result<Vec<P::Response>, CommandError<D>>
where
    D: Send,
    P: BatchPlan<D>,
{
    let mut tx = pool.begin().await?;
    let now = Utc::now().trunc_subsecs(6);
    let (responses, events) = handoff::collected(async {
        let planned = decided_at(now, HashMap::new(), plan.plan(&mut tx, now)).await?;
        if planned.len() != contexts.len() {
            return Err(CommandError::corrupt(format!(
                "a batch of {} requests answered {}",
                contexts.len(),
                planned.len()
            )));
        }
        let mut responses = Vec::with_capacity(planned.len());
        for (ctx, (response, mut writes)) in contexts.iter().zip(planned) {
            writes.push(idempotency::record_write(ctx.key(), response.encode_to_vec()));
            writes.execute(&mut tx).await?;
            responses.push(response);
        }
        Ok(responses)
    })
    .await;
    let responses = responses?;
    tx.commit().await?;
    handoff::committed(pool, events);
    Ok(responses)
}

tokio::task_local! {
    /// The writes an [`Attempt`] left to the kernel ([`leave_last_writes`]).
    static LAST_WRITES: RefCell<Option<Writes>>;
}

/// Leaves an attempt's last writes to the kernel, which sends them with the request's
/// idempotency record in one statement, then commits: one round trip less while the attempt's
/// locks are held. Only for writes nothing of the attempt reads after (they are not sent before
/// it returns). Outside [`execute`] (in a reaction, say), or when writes were left already, it
/// gives them back for the caller to send.
pub fn leave_last_writes(writes: Writes) -> Option<Writes> {
    let mut writes = Some(writes);
    let _outside = LAST_WRITES.try_with(|last| {
        let mut last = last.borrow_mut();
        if last.is_none() {
            *last = writes.take();
        }
    });
    writes
}

/// Runs `decide` with the time it decides at and the streams read with the idempotency lookup.
/// Postgres keeps microseconds, so `now` is the time as it will be stored; the command's events
/// are recorded at that time too, so what the command projected from them is what a rebuild from
/// the store projects.
async fn decided_at<F: Future>(now: DateTime<Utc>, prefetched: HashMap<String, StreamState>, decide: F) -> F::Output {
    let with_streams = crate::store::PREFETCHED.scope(RefCell::new(prefetched), decide);
    crate::store::DECIDED_AT.scope(now, with_streams).await
}

/// Runs one attempt of a command after another while they fail by a conflict (another writer got
/// there first; what the attempt wrote is undone), up to [`MAX_ATTEMPTS`] times, pausing a little
/// longer each time.
async fn retrying<R, D, F, Fut>(mut attempt_once: F) -> Result<R, CommandError<D>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, CommandError<D>>>,
{
    for attempt in 1..=MAX_ATTEMPTS {
        match attempt_once().await {
            Err(error) if error.is_conflict() => {
                tracing::debug!(attempt, "concurrent modification, retrying");
                tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
            }
            outcome => return outcome,
        }
    }
    Err(CommandError::Aborted(MAX_ATTEMPTS))
}
