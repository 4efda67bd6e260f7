//! `make bench`: rebuilding agent-sessions' read models from its event store
//! (`projections rebuild read-models`), beside the raw rate of the same writes on the same
//! Postgres in the same run: one statement per row in transactions of a page (the rebuild's
//! shape) and batched `unnest` inserts (the ceiling). Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_REBUILD_EVENTS` (events in the store, about; default 30000), `BENCH_AGENTS`
//! (agents writing them, default 64).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{TestService, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::fair_share::FairShareConfig;
use dw_proto::agentsessions::v1 as pb;
use dw_testkit::bench::env_or;
use sqlx::Connection;

/// Rows per transaction in the raw runs (the rebuild's page).
const PAGE: usize = 1000;

#[tokio::main]
async fn main() {
    let target = env_or("BENCH_REBUILD_EVENTS", 30_000);
    let agents = env_or("BENCH_AGENTS", 64) as usize;
    let service = TestService::start_with(|config| config.fair_share = FairShareConfig::unlimited()).await;
    let names: Vec<String> = (0..agents).map(|i| format!("agent-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    service.seed("bench", &refs, false).await;

    // The store: each agent's day, then break pairs up to the target.
    let per_agent = (target as usize / agents).saturating_sub(1) / 2;
    let mut workers = tokio::task::JoinSet::new();
    for name in names {
        let mut day = service.day();
        workers.spawn(async move {
            let agent = token("bench", &name, &[Role::Agent]);
            day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
            for _ in 0..per_agent {
                let pause = pb::StartBreakRequest { request_id: rid(), reason_id: String::new() };
                day.start_break(authed(&agent, pause)).await.unwrap();
                day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await.unwrap();
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let pool = sqlx::PgPool::connect(&service.db.url).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    println!("read-model rebuild benchmark: {events} events of {agents} agents");

    // Raw: the same number of single-row writes, one statement each, a page per transaction.
    let rows = usize::try_from(events).unwrap_or(0);
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("CREATE TEMP TABLE raw_rows (tenant_id text, agent_id text, seq bigint, at timestamptz, label text, PRIMARY KEY (tenant_id, agent_id, seq))")
        .execute(&mut *conn)
        .await
        .unwrap();
    let started = Instant::now();
    for page in 0..rows.div_ceil(PAGE) {
        let mut tx = conn.begin().await.unwrap();
        for i in page * PAGE..((page + 1) * PAGE).min(rows) {
            sqlx::query(
                "INSERT INTO raw_rows VALUES ('bench', $1, $2, now(), 'Lunch') \
                 ON CONFLICT (tenant_id, agent_id, seq) DO UPDATE SET at = EXCLUDED.at",
            )
            .bind(format!("agent-{:04}", i % agents.max(1)))
            .bind(i as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let raw_statements = rows as f64 / started.elapsed().as_secs_f64();
    sqlx::query("TRUNCATE raw_rows").execute(&mut *conn).await.unwrap();
    // Raw ceiling: the same rows as batched inserts, a page per statement.
    let started = Instant::now();
    for page in 0..rows.div_ceil(PAGE) {
        let range = page * PAGE..((page + 1) * PAGE).min(rows);
        let agent_ids: Vec<String> = range.clone().map(|i| format!("agent-{:04}", i % agents.max(1))).collect();
        let seqs: Vec<i64> = range.map(|i| i as i64).collect();
        sqlx::query(
            "INSERT INTO raw_rows SELECT 'bench', a, s, now(), 'Lunch' FROM unnest($1::text[], $2::bigint[]) AS u(a, s)",
        )
        .bind(&agent_ids)
        .bind(&seqs)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let raw_batched = rows as f64 / started.elapsed().as_secs_f64();
    drop(conn);

    // Each lane's events folded and written set-based (what `projections rebuild` runs), and,
    // for comparison, one event at a time through the commands' own projection code.
    use agent_sessions::projections::rebuild::{ReadModels, ReadModelsOneByOne};
    let runs: [(&str, &dyn dw_eventstore::rebuild::ReadModel, usize); 4] = [
        ("batched", &ReadModels, 1),
        ("batched", &ReadModels, 2),
        ("batched", &ReadModels, 4),
        ("one by one", &ReadModelsOneByOne, 4),
    ];
    let mut rates = Vec::new();
    for (how, model, lanes) in runs {
        let rebuilt = dw_eventstore::rebuild::rebuild(&pool, model, None, lanes, |_| {}).await.unwrap();
        let rate = rebuilt.events_per_second;
        println!(
            "rebuild, {how}, {lanes} lane(s)  {} events in {:.2} s, {} rows: {rate:.0} events/s (swap: tables locked {:.1} ms)",
            rebuilt.events,
            rebuilt.seconds,
            rebuilt.rows,
            rebuilt.swap_seconds * 1000.0
        );
        rates.push((how, lanes, rate));
    }
    println!("raw, same run   {raw_statements:.0} rows/s one statement each, {raw_batched:.0} rows/s batched");
    for (how, lanes, rate) in rates {
        let figure = format!("rebuild, {how}, {lanes} lane(s) (raw: batched inserts)");
        dw_testkit::bench::record("rebuild", &figure, rate, "events/s", Some(raw_batched));
        println!(
            "ratio, {how}, {lanes} lane(s)  {:.2} of one statement per row, {:.2} of batched",
            rate / raw_statements,
            rate / raw_batched
        );
    }
    pool.close().await;
    service.stop().await;
}
