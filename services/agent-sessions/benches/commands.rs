//! `make bench`: agent commands (break start/end pairs) through the real gRPC API, Postgres and
//! NATS, and the relay's commit → JetStream latency, each beside the raw limit of the same shape
//! measured first in the same run: the append-shaped transaction (stream guard `UPDATE …
//! RETURNING`, event insert, outbox insert; no `NOTIFY`, none of our code) at the same
//! concurrency, and an acked JetStream publish. Prints figures and ratios; asserts nothing.
//!
//! Knobs: `BENCH_AGENTS` (concurrent agents, default 64), `BENCH_SECONDS` (default 10),
//! `BENCH_DB_POOL` (the service's database connections, default one per agent like the raw
//! transactions), `BENCH_CHANNELS` (client HTTP/2 connections the agents share, default 8).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestService, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_testkit::bench::{CpuTimes, env_or, gather, ms, percentile, record, summary};
use futures::StreamExt;

#[tokio::main]
async fn main() {
    let agents = env_or("BENCH_AGENTS", 64) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let pool = env_or("BENCH_DB_POOL", agents as u64) as u32;
    let channels = env_or("BENCH_CHANNELS", 8).max(1) as usize;
    let service = TestService::start_with(|config| config.db_max_connections = pool).await;
    let mut clients = Vec::with_capacity(channels);
    for _ in 0..channels {
        clients.push(pb::service_day_service_client::ServiceDayServiceClient::new(service.new_channel().await));
    }
    let names: Vec<String> = (0..agents).map(|i| format!("agent-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    service.seed("bench", &refs, true).await;
    let raw_cpu_before = CpuTimes::now();
    let raw = raw_append_shaped(&service.db.url, agents, seconds).await;
    let raw_cpu = CpuTimes::now().minus(raw_cpu_before);
    let shape_cpu_before = CpuTimes::now();
    let shape = command_sql_alone(&service.db.url, agents, seconds).await;
    let shape_cpu = CpuTimes::now().minus(shape_cpu_before);
    let raw_publish = dw_testkit::bench::acked_publish_latencies(
        &async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap()),
        2_000,
    )
    .await;
    for name in &names {
        let agent = token("bench", name, &[Role::Agent]);
        service
            .day()
            .start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() }))
            .await
            .unwrap();
    }

    // Commit → JetStream delivery, measured from each event's ce-time.
    let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let stream = js.get_stream(&service.namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    // Each event's arrival, by (stream, version), for the lower bound below.
    let propagation = tokio::spawn(async move {
        let mut lags = Vec::new();
        let mut arrivals = HashMap::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
            let arrived = Instant::now();
            let Some(headers) = message.headers.as_ref() else { continue };
            let Some(time) = headers.get("ce-time") else { continue };
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(time.as_str()) {
                let lag = chrono::Utc::now().signed_duration_since(at).to_std().unwrap_or_default();
                lags.push(lag);
            }
            let version = headers.get("dw-stream-version").and_then(|v| v.as_str().parse::<u64>().ok());
            if let (Some(stream), Some(version)) = (headers.get("ce-subject"), version) {
                arrivals.insert((stream.as_str().to_owned(), version), arrived);
            }
        }
        (lags, arrivals)
    });

    println!(
        "agent-sessions command benchmark: {agents} agents over {channels} connections, {pool} database connections, \
         {seconds} s, break start/end pairs"
    );
    let cpu_before = CpuTimes::now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let mut day = clients[i % channels].clone();
        workers.spawn(async move {
            let agent = token("bench", &name, &[Role::Agent]);
            let stream = format!("serviceday:bench:{name}");
            let mut latencies = Vec::new();
            let mut returned = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                let start = day
                    .start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
                    .await;
                latencies.push(started.elapsed());
                match start {
                    Ok(state) => returned.push(((stream.clone(), state.into_inner().version), Instant::now())),
                    Err(_) => errors += 1,
                }
                let started = Instant::now();
                let end = day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await;
                latencies.push(started.elapsed());
                match end {
                    Ok(state) => returned.push(((stream.clone(), state.into_inner().version), Instant::now())),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, returned)
        });
    }
    let mut runs = Vec::new();
    let mut returned = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (latencies, errors, answered) = done.unwrap();
        runs.push((latencies, errors));
        returned.extend(answered);
    }
    let cpu = CpuTimes::now().minus(cpu_before);
    let errors: u64 = runs.iter().map(|run| run.1).sum();
    let mut latencies: Vec<Duration> = runs.into_iter().flat_map(|run| run.0).collect();
    latencies.sort();
    let commands = latencies.len();
    let rate = commands as f64 / seconds as f64;
    println!("commands        {commands} ({errors} errors)");
    println!("throughput      {rate:.0} commands/s");
    println!("latency         {}", summary(&latencies));
    println!("{}", cpu.usage(Duration::from_secs(seconds), "this process (clients + service + relay)"));
    // CPU per command beside the raw transaction's: what a command costs whatever the machine's
    // speed (when both saturate the cores, the rates' ratio is this ratio).
    let per = |seconds: f64, count: usize| seconds * 1000.0 / count.max(1) as f64;
    let (command_ms, raw_ms) = (per(cpu.total(), commands), per(raw_cpu.total(), raw.1.len()));
    println!(
        "CPU per command {command_ms:.3} ms (postgres {:.3}, this process {:.3}, nats {:.3}); raw transaction \
         {raw_ms:.3} ms (postgres {:.3}, its client {:.3}); raw ÷ command = {:.2}",
        per(cpu.postgres, commands),
        per(cpu.bench, commands),
        per(cpu.nats, commands),
        per(raw_cpu.postgres, raw.1.len()),
        per(raw_cpu.bench, raw.1.len()),
        raw_ms / command_ms.max(1e-9)
    );
    println!(
        "                the command's SQL alone (below): {:.3} ms (postgres {:.3}, its client {:.3})",
        per(shape_cpu.total(), shape.1.len()),
        per(shape_cpu.postgres, shape.1.len()),
        per(shape_cpu.bench, shape.1.len()),
    );
    let (mut lags, arrivals) = propagation.await.unwrap();
    lags.sort();
    // The commit lies between the decision (`ce-time`) and the RPC's return: decided→JetStream
    // is an upper bound of commit→JetStream, returned→JetStream (0 when the event arrived
    // first) a lower one.
    let mut after_return: Vec<Duration> = returned
        .iter()
        .filter_map(|(key, at)| arrivals.get(key).map(|arrived| arrived.saturating_duration_since(*at)))
        .collect();
    after_return.sort();
    println!(
        "commit→jetstream between returned→jetstream p50 {:.2} ms   p99 {:.2} ms ({} matched)",
        ms(percentile(&after_return, 0.50)),
        ms(percentile(&after_return, 0.99)),
        after_return.len()
    );
    println!(
        "             and decided→jetstream  p50 {:.2} ms   p99 {:.2} ms   ({} events observed)",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        lags.len()
    );
    println!("raw, same run   append-shaped transactions, {agents} clients: {:.0}/s, {}", raw.0, summary(&raw.1));
    println!("                acked JetStream publish: {}", summary(&raw_publish));
    println!(
        "                the command's SQL alone (lookup, then one statement; sqlx, no service), {agents} clients: \
         {:.0}/s ({:.2} × raw), {}",
        shape.0,
        shape.0 / raw.0.max(1e-9),
        summary(&shape.1)
    );
    println!("ratio           commands/s ÷ raw transactions/s = {:.2}", rate / raw.0.max(1e-9));
    let p99 = |sorted: &[Duration]| ms(percentile(sorted, 0.99));
    record("commands", "agent commands, 64 clients (raw: append txn)", rate, "/s", Some(raw.0));
    record("commands", "command SQL alone, no service (raw: append txn)", shape.0, "/s", Some(raw.0));
    record("commands", "CPU per command (raw: append txn)", command_ms, "ms", Some(raw_ms));
    record("commands", "command p99 (raw: append txn p99)", p99(&latencies), "ms", Some(p99(&raw.1)));
    record("commands", "decided→JetStream p99 (raw: acked publish)", p99(&lags), "ms", Some(p99(&raw_publish)));
    record(
        "commands",
        "returned→JetStream p99 (raw: acked publish)",
        p99(&after_return),
        "ms",
        Some(p99(&raw_publish)),
    );
    service.stop().await;
}

/// The raw limit of an agent command's write: `clients` connections each committing, for
/// `seconds`, the append's shape on copies of the store's tables (stream guard, event, outbox;
/// no `NOTIFY`). Returns transactions/s and their latencies.
async fn raw_append_shaped(url: &str, clients: usize, seconds: u64) -> (f64, Vec<Duration>) {
    use sqlx::Connection;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(clients as u32 + 1).connect(url).await.unwrap();
    for setup in [
        "CREATE TABLE raw_streams (LIKE streams INCLUDING ALL)",
        "CREATE TABLE raw_events (LIKE events INCLUDING ALL)",
        "CREATE TABLE raw_outbox (position bigserial PRIMARY KEY, global_position bigint NOT NULL REFERENCES raw_events (global_position))",
        "INSERT INTO raw_streams (stream_id, tenant_id, version) SELECT 'raw:' || i, 'bench', 0 FROM generate_series(0, 1023) AS i",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&pool).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let pool = pool.clone();
        workers.spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let stream = format!("raw:{client}");
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let mut tx = conn.begin().await.unwrap();
                let version: i64 = sqlx::query_scalar(
                    "UPDATE raw_streams SET version = version + 1, updated_at = now() WHERE stream_id = $1 RETURNING version",
                )
                .bind(&stream)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
                let position: i64 = sqlx::query_scalar(
                    "INSERT INTO raw_events (event_id, tenant_id, stream_id, version, event_type, subject, payload, recorded_at) \
                     VALUES ($1, 'bench', $2, $3, 'dw.agentsessions.v1.BreakStarted', 'serviceday.break_started', $4, now()) \
                     RETURNING global_position",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(&stream)
                .bind(version)
                .bind(vec![7_u8; 64])
                .fetch_one(&mut *tx)
                .await
                .unwrap();
                sqlx::query("INSERT INTO raw_outbox (global_position) VALUES ($1)")
                    .bind(position)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                latencies.push(started.elapsed());
            }
            (latencies, 0_u64)
        });
    }
    let (latencies, _) = gather(workers).await.unwrap();
    for teardown in ["DROP TABLE raw_outbox", "DROP TABLE raw_events", "DROP TABLE raw_streams"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(teardown)).execute(&pool).await.unwrap();
    }
    pool.close().await;
    (latencies.len() as f64 / seconds as f64, latencies)
}

/// What Postgres alone makes of an agent command: `clients` connections each running, for
/// `seconds`, the statements a break start sends (the idempotency lookup with the streams, then
/// one statement with the stream guard, the event, its outbox row, the break row, the agent's
/// status row and the idempotency record), written out here rather than built by the service,
/// on copies of the service's tables. Its ratio to [`raw_append_shaped`] is the cost of the command's
/// extra rows; the service's ratio below it is what the service process adds.
async fn command_sql_alone(url: &str, clients: usize, seconds: u64) -> (f64, Vec<Duration>) {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(clients as u32 + 1).connect(url).await.unwrap();
    // Copies of the service's tables (indexes, defaults and checks included), so the service's
    // relay and feeds do not see these rows.
    let tables = [
        ("shape_streams", "streams"),
        ("shape_events", "events"),
        ("shape_outbox", "outbox"),
        ("shape_breaks", "service_day_breaks"),
        ("shape_status", "agent_status"),
        ("shape_requests", "idempotency_keys"),
    ];
    for (copy, table) in tables {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::raw_sql(
        "ALTER TABLE shape_outbox ADD FOREIGN KEY (global_position) REFERENCES shape_events (global_position); \
         INSERT INTO shape_streams (stream_id, tenant_id, version) SELECT 'shape:' || i, 'shape', 0 FROM generate_series(0, 1023) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let pool = pool.clone();
        workers.spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let (stream, agent, day) = (format!("shape:{client}"), format!("shape-{client}"), uuid::Uuid::now_v7());
            let streams = [stream.clone(), format!("agent:shape:{client}"), "tenant:shape".to_owned()];
            let mut version = 0_i64;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let request_id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "SELECT NULL::text AS stream_id, NULL::bigint AS version, NULL::jsonb AS snapshot, \
                            operation, request_hash, response FROM shape_requests \
                     WHERE tenant_id = 'shape' AND principal = $1 AND request_id = $2 \
                     UNION ALL \
                     SELECT stream_id, version, snapshot, NULL, NULL, NULL FROM shape_streams \
                     WHERE stream_id IN ($3, $4, $5)",
                )
                .bind(&agent)
                .bind(&request_id)
                .bind(&streams[0])
                .bind(&streams[1])
                .bind(&streams[2])
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                let snapshot = serde_json::json!({ "day": { "day_id": day, "version": version + 1 } });
                let rows = sqlx::query(
                    "WITH guard AS (UPDATE shape_streams SET version = $3, snapshot = $4, updated_at = now() \
                                    WHERE stream_id = $1 AND version = $2 RETURNING 1), \
                     inserted AS (INSERT INTO shape_events (event_id, tenant_id, stream_id, version, event_type, subject, payload, recorded_at) \
                                  SELECT $5, 'shape', $1, $3, 'dw.agentsessions.v1.BreakStarted', 'serviceday.break_started', $6, now() \
                                  WHERE EXISTS (SELECT 1 FROM guard) RETURNING global_position, version), \
                     queued AS (INSERT INTO shape_outbox (global_position) SELECT global_position FROM inserted), \
                     break_row AS (INSERT INTO shape_breaks (tenant_id, day_id, seq, started_at, reason_id, reason_label) \
                                   SELECT 'shape', $7, COALESCE(MAX(seq), 0) + 1, now(), NULL, NULL FROM shape_breaks \
                                   WHERE tenant_id = 'shape' AND day_id = $7), \
                     status_row AS (INSERT INTO shape_status (tenant_id, agent_id, status, status_since, day_id, version) \
                                    VALUES ('shape', $8, 'on_break', now(), $7, $3) \
                                    ON CONFLICT (tenant_id, agent_id) DO UPDATE SET status = EXCLUDED.status, \
                                        status_since = EXCLUDED.status_since, day_id = EXCLUDED.day_id, version = EXCLUDED.version), \
                     request AS (INSERT INTO shape_requests (tenant_id, principal, request_id, operation, request_hash, response) \
                                 VALUES ('shape', $8, $9, 'dw.agentsessions.v1.ServiceDayService/StartBreak', $10, $11)) \
                     SELECT version FROM inserted",
                )
                .bind(&stream)
                .bind(version)
                .bind(version + 1)
                .bind(&snapshot)
                .bind(uuid::Uuid::now_v7())
                .bind(vec![7_u8; 64])
                .bind(day)
                .bind(&agent)
                .bind(&request_id)
                .bind(vec![1_u8; 32])
                .bind(vec![2_u8; 48])
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                assert_eq!(rows.len(), 1, "the stream guard held");
                version += 1;
                latencies.push(started.elapsed());
            }
            (latencies, 0_u64)
        });
    }
    let (latencies, _) = gather(workers).await.unwrap();
    for (copy, _) in tables.iter().rev() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {copy}"))).execute(&pool).await.unwrap();
    }
    pool.close().await;
    (latencies.len() as f64 / seconds as f64, latencies)
}
