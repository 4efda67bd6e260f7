//! `make bench`: task-distribution through the real gRPC API, Postgres and NATS (agent-sessions
//! and task-distribution in-process, as in the tests). Prints figures; asserts nothing.
//!
//! 1. Assignment latency: agents online across 20 departments, each watching `WatchMyTasks` and
//!    completing each task after a short hold; tasks created at a fixed rate; the time from
//!    `CreateTask` returning to the assignment arriving on the agent's stream. Before it, in the
//!    same run, the raw limit of the same writes at the same concurrency in SQL alone
//!    ([`raw_task_shape`]), and the service's tasks/s as a ratio of it.
//! 2. `SearchProtocols` over a bulk-loaded archive of tasks (another tenant), per filter kind.
//!
//! Knobs: `BENCH_AGENTS` (2000), `BENCH_TENANTS` (1: the agents and the tasks spread evenly over
//! that many tenants, each with agents in every department), `BENCH_RATE` (tasks/s, 500), `BENCH_SECONDS` (10),
//! `BENCH_CONCURRENCY` (CreateTask calls in flight at most, 64), `BENCH_HOLD_MS` (how long an
//! agent keeps a task before completing it, 200), `BENCH_SEARCH_TASKS` (1000000),
//! `BENCH_SEARCH_RUNS` (requests per search kind, 50), `BENCH_SKIP` (`assign` or `search`),
//! `BENCH_KEEP=1` (keep the databases and streams for inspection).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as pb;
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_proto::time;
use dw_testkit::bench::{CpuTimes, env_or, ms, percentile};
use futures::StreamExt;
use sqlx::Connection;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const DEPARTMENTS: usize = 20;
const ASSIGN_TENANT: &str = "bench";
const SEARCH_TENANT: &str = "archive";
const SEARCH_DAYS: i64 = 100;

const FIRST_NAMES: &str = "José Maria João Ana Conceição Antônio Francisca Luís Márcia Pedro Inês Paulo Josefa Raimundo Sebastião Ângela Carlos Fernanda Júlio Patrícia Lucas Helena Mário Cláudia Rafael Beatriz Tiago Letícia André Sônia";
const LAST_NAMES: &str = "Silva Santos Oliveira Souza Conceição Pereira Gonçalves Araújo Lima Gomes Ribeiro Carvalho Almeida Lopes Simões Guimarães Magalhães Brandão Assunção Sá Fernandes Costa Rocha Dias Nascimento Andrade Moreira Nunes Marques Falcão";
/// One client in 500 has one of these (selective trigram searches).
const RARE_FIRST_NAMES: &str = "Zuleica Ivanildo Creusa Valdemíria Orlandina";
/// Separated by `|`.
const SUBJECTS: &str = "segunda via de boleto|cancelamento|troca de plano|reclamação de cobrança|suporte técnico|atualização cadastral|portabilidade|dúvida sobre fatura";

/// The name, subject lists as vectors.
struct Lists {
    first: Vec<String>,
    last: Vec<String>,
    rare: Vec<String>,
    subjects: Vec<String>,
}

impl Lists {
    fn new() -> Self {
        let words = |list: &str| list.split_whitespace().map(str::to_owned).collect();
        Self {
            first: words(FIRST_NAMES),
            last: words(LAST_NAMES),
            rare: words(RARE_FIRST_NAMES),
            subjects: SUBJECTS.split('|').map(str::to_owned).collect(),
        }
    }
}

fn spread(sorted: &[Duration]) -> String {
    format!(
        "p50 {:7.2} ms   p95 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.95)),
        ms(percentile(sorted, 0.99)),
        ms(percentile(sorted, 1.0))
    )
}

/// splitmix64: varied, reproducible values without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[tokio::main]
async fn main() {
    let skip = std::env::var("BENCH_SKIP").unwrap_or_default();
    let cluster = Cluster::start(1).await;
    if skip != "assign" {
        assignment_latency(&cluster).await;
    }
    if skip != "search" {
        search_latency(&cluster).await;
    }
    cleanup(cluster).await;
}

// ---------------------------------------------------------------------------------------------
// 1. Assignment latency
// ---------------------------------------------------------------------------------------------

fn department(index: usize) -> String {
    format!("dept-{:02}", index % DEPARTMENTS)
}

/// The tenant of agent or task `index` when the run spreads over `tenants`.
fn tenant_of(index: usize, tenants: usize) -> String {
    if tenants <= 1 { ASSIGN_TENANT.to_owned() } else { format!("{ASSIGN_TENANT}-{:02}", index % tenants) }
}

/// Every tenant of the run.
fn all_tenants(tenants: usize) -> Vec<String> {
    (0..tenants.max(1)).map(|i| tenant_of(i, tenants)).collect()
}

fn create_request(rng: &mut Rng, lists: &Lists) -> pb::CreateTaskRequest {
    let client = rng.below(1_000_000);
    let first = &lists.first[rng.below(lists.first.len() as u64) as usize];
    let last = &lists.last[rng.below(lists.last.len() as u64) as usize];
    pb::CreateTaskRequest {
        request_id: rid(),
        department_id: department(rng.below(DEPARTMENTS as u64) as usize),
        channel: [pb::Channel::Whatsapp, pb::Channel::Sms, pb::Channel::Chat][rng.below(3) as usize] as i32,
        contact: Some(pb::ClientContact {
            name: format!("{first} {last}"),
            phone: format!("+55119{client:08}"),
            contact_id: String::new(),
        }),
        priority: rng.below(10) as i32,
        subject: lists.subjects[rng.below(lists.subjects.len() as u64) as usize].clone(),
    }
}

/// An ASSIGNED update as the agent received it.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    /// The task's `assigned_at` (the assigning transaction's time) → the feed built the update.
    server: Duration,
    /// The feed built the update → it arrived here.
    transport: Duration,
}

fn since(earlier: chrono::DateTime<chrono::Utc>, later: chrono::DateTime<chrono::Utc>) -> Duration {
    later.signed_duration_since(earlier).to_std().unwrap_or_default()
}

#[derive(Default)]
struct Completions {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// One agent: every ASSIGNED update is timestamped on arrival and sent to the collector; the
/// task is completed after `hold`.
async fn agent_loop(
    mut stream: tonic::codec::Streaming<pb::TaskUpdate>,
    client: DistributionServiceClient<Channel>,
    bearer: String,
    arrivals: mpsc::UnboundedSender<(String, Arrival)>,
    hold: Duration,
    completions: Arc<Completions>,
) {
    while let Ok(Some(update)) = stream.message().await {
        let at = Instant::now();
        let wall = chrono::Utc::now();
        if update.kind != pb::task_update::Kind::Assigned as i32 {
            continue;
        }
        let Some(task) = update.task else { continue };
        let built = update.at.as_ref().and_then(time::datetime).unwrap_or(wall);
        let assigned = task.assigned_at.as_ref().and_then(time::datetime).unwrap_or(built);
        let arrival = Arrival { at, server: since(assigned, built), transport: since(built, wall) };
        let _ = arrivals.send((task.task_id.clone(), arrival));
        let mut client = client.clone();
        let bearer = bearer.clone();
        let completions = completions.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let request = pb::CompleteTaskRequest { request_id: rid(), task_id: task.task_id };
            let counter = match client.complete_task(authed(&bearer, request)).await {
                Ok(_) => &completions.ok,
                Err(_) => &completions.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
}

async fn seed_agents(cluster: &Cluster, names: &[String], tenants: usize) {
    // Each tenant's settings, automatic distribution on (its agents follow).
    for tenant in all_tenants(tenants) {
        cluster.seed(&tenant, true, &[]).await;
    }
    futures::stream::iter(names.iter().enumerate())
        .for_each_concurrent(32, |(i, name)| {
            let mut admin = cluster.admin();
            let mut day = cluster.day();
            let tenant = tenant_of(i, tenants);
            let manager = token(&tenant, "manager-1", &[Role::Manager]);
            async move {
                let register = sessions::RegisterAgentRequest {
                    request_id: rid(),
                    agent_id: name.clone(),
                    display_name: format!("Agent {i}"),
                };
                admin.register_agent(authed(&manager, register)).await.unwrap();
                // Each tenant's agents cover every department.
                let link = sessions::LinkDepartmentRequest {
                    request_id: rid(),
                    agent_id: name.clone(),
                    department_id: department(i / tenants.max(1)),
                };
                admin.link_department(authed(&manager, link)).await.unwrap();
                let agent = token(&tenant, name, &[Role::Agent]);
                day.start_service_day(authed(&agent, sessions::StartServiceDayRequest { request_id: rid() }))
                    .await
                    .unwrap();
            }
        })
        .await;
}

/// The service's database connections in the tests' configuration
/// (`ServiceConfig::for_test`): its concurrency at the database whatever the calls in flight.
const SERVICE_DB_POOL: usize = 30;

/// Clients for [`raw_task_shape`]: the service's pool, or fewer when Postgres has not that many
/// connections left beside the open ones (the services' pools, mostly open after the seeding)
/// and a margin for those pools to grow meanwhile.
async fn raw_clients(pool: &sqlx::PgPool) -> usize {
    let (max, used): (i64, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint, \
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    usize::try_from(max - used - 16).unwrap_or(0).clamp(4, SERVICE_DB_POOL)
}

/// A transaction holding the advisory lock `key` (a department's, in [`raw_task_shape`]).
async fn locked<'c>(conn: &'c mut sqlx::PgConnection, key: &str) -> sqlx::Transaction<'c, sqlx::Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(key).execute(&mut *tx).await.unwrap();
    tx
}

/// The raw limit of a task's life on this machine, measured first in the same run: `clients`
/// connections (as many as the service's pool) each creating and then completing tasks for
/// `seconds` (spread over `tenants` as the bench's tasks are), with the writes the service makes
/// and none of its code, on copies of its tables: the protocol counter, the task row with all
/// its indexes, the stream, event and outbox rows, the agents' load and the decision with every
/// candidate's verdict. A create: its protocol, the department's lock, one read of its
/// candidates (the real agents), one statement writing the rest, the commit; a completion: the
/// lock, one statement, the commit. Returns tasks (created and completed) per second and each
/// task's latency (both transactions).
async fn raw_task_shape(url: &str, clients: usize, seconds: u64, tenants: usize) -> (f64, Vec<Duration>) {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(clients as u32).connect(url).await.unwrap();
    for setup in [
        "CREATE TABLE raw_tasks (LIKE tasks INCLUDING ALL)",
        "CREATE TABLE raw_streams (LIKE streams INCLUDING ALL)",
        "CREATE TABLE raw_events (LIKE events INCLUDING ALL)",
        "CREATE TABLE raw_outbox (position bigserial PRIMARY KEY, global_position bigint NOT NULL REFERENCES raw_events (global_position))",
        "CREATE TABLE raw_decisions (LIKE assignment_decisions INCLUDING ALL)",
        "CREATE TABLE raw_agents (LIKE agents INCLUDING ALL)",
        "CREATE TABLE raw_counters (LIKE protocol_counters INCLUDING ALL)",
        "INSERT INTO raw_agents SELECT * FROM agents",
        "ANALYZE raw_agents",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&pool).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let pool = pool.clone();
        // Spread over the tenants and their departments as the bench's agents and tasks are.
        let tenant = tenant_of(client, tenants);
        workers.spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let department = department(client / tenants);
            let lock_key = format!("raw:{tenant}:{department}");
            let mut latencies = Vec::new();
            let mut n = 0_usize;
            while Instant::now() < deadline {
                n += 1;
                let started = Instant::now();
                let task_id = uuid::Uuid::now_v7();
                let stream = format!("task:{tenant}:{task_id}");
                // The protocol, from the tenant's daily counter in a statement of its own.
                let sequence: i32 = sqlx::query_scalar(
                    "INSERT INTO raw_counters (tenant_id, day, last_seq) VALUES ($1, current_date, 1) \
                     ON CONFLICT (tenant_id, day) DO UPDATE SET last_seq = raw_counters.last_seq + 1 RETURNING last_seq",
                )
                .bind(&tenant)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
                let mut tx = locked(&mut conn, &lock_key).await;
                let candidates: Vec<(String, i32)> = sqlx::query_as(
                    "SELECT a.agent_id, a.active_tasks FROM agent_departments d \
                     JOIN raw_agents a ON a.tenant_id = d.tenant_id AND a.agent_id = d.agent_id \
                     WHERE d.tenant_id = $1 AND d.department_id = $2 ORDER BY a.agent_id",
                )
                .bind(&tenant)
                .bind(&department)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
                let chosen = candidates.get(n % candidates.len().max(1)).map(|c| c.0.clone()).unwrap_or_default();
                // The decision as the service stores it: text, one array per field, the chosen
                // agent's exclusion code 0, the others' "less idle time" (6).
                let decision = serde_json::json!({
                    "agents": candidates.iter().map(|c| &c.0).collect::<Vec<_>>(),
                    "exclusions": candidates.iter().map(|c| if c.0 == chosen { 0 } else { 6 }).collect::<Vec<_>>(),
                    "active": candidates.iter().map(|c| c.1).collect::<Vec<_>>(),
                    "capacity": vec![3; candidates.len()],
                });
                sqlx::query(
                    "WITH stream AS (INSERT INTO raw_streams (stream_id, tenant_id, version) VALUES ($3, $1, 2)), \
                     inserted AS (INSERT INTO raw_events (event_id, tenant_id, stream_id, version, event_type, subject, payload, recorded_at) \
                                  VALUES (gen_random_uuid(), $1, $3, 1, 'dw.distribution.v1.TaskCreated', 'task.created', $6, now()), \
                                         (gen_random_uuid(), $1, $3, 2, 'dw.distribution.v1.TaskAssigned', 'task.assigned', $6, now()) \
                                  RETURNING global_position), \
                     queued AS (INSERT INTO raw_outbox (global_position) SELECT global_position FROM inserted), \
                     task AS (INSERT INTO raw_tasks (tenant_id, task_id, protocol, department_id, channel, client_name, client_phone, \
                                                     priority, subject, status, agent_id, created_at, assigned_at, queued_at, version) \
                              VALUES ($1, $2, $7, $4, 'whatsapp', 'Maria da Silva', '+5511999990000', 0, 'Pedido atrasado', \
                                      'assigned', $5, now(), now(), now(), 2)), \
                     load AS (UPDATE raw_agents SET active_tasks = active_tasks + 1, idle_since = now() \
                              WHERE tenant_id = $1 AND agent_id = $5) \
                     INSERT INTO raw_decisions (decision_id, tenant_id, task_id, decided_at, chosen_agent_id, trigger, \
                                                candidates, verdicts) \
                     VALUES (gen_random_uuid(), $1, $2, now(), $5, 'task_created', '[]', $8)",
                )
                .bind(&tenant)
                .bind(task_id)
                .bind(&stream)
                .bind(&department)
                .bind(&chosen)
                .bind(vec![7_u8; 160])
                .bind(format!("R{sequence:09}"))
                .bind(decision.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
                let mut tx = locked(&mut conn, &lock_key).await;
                sqlx::query(
                    "WITH guard AS (UPDATE raw_streams SET version = 3, updated_at = now() WHERE stream_id = $3 AND version = 2 RETURNING 1), \
                     inserted AS (INSERT INTO raw_events (event_id, tenant_id, stream_id, version, event_type, subject, payload, recorded_at) \
                                  SELECT gen_random_uuid(), $1, $3, 3, 'dw.distribution.v1.TaskCompleted', 'task.completed', $5, now() \
                                  WHERE EXISTS (SELECT 1 FROM guard) RETURNING global_position), \
                     queued AS (INSERT INTO raw_outbox (global_position) SELECT global_position FROM inserted), \
                     task AS (UPDATE raw_tasks SET status = 'completed', closed_at = now(), version = 3 \
                              WHERE tenant_id = $1 AND task_id = $2) \
                     UPDATE raw_agents SET active_tasks = active_tasks - 1 WHERE tenant_id = $1 AND agent_id = $4",
                )
                .bind(&tenant)
                .bind(task_id)
                .bind(&stream)
                .bind(&chosen)
                .bind(vec![7_u8; 96])
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
                latencies.push(started.elapsed());
            }
            (latencies, 0_u64)
        });
    }
    let (latencies, _) = dw_testkit::bench::gather(workers).await.unwrap();
    for teardown in
        ["raw_outbox", "raw_events", "raw_streams", "raw_tasks", "raw_decisions", "raw_agents", "raw_counters"]
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {teardown}"))).execute(&pool).await.unwrap();
    }
    pool.close().await;
    (latencies.len() as f64 / seconds as f64, latencies)
}

/// Waits until task-distribution's projection has every agent available and linked, and the
/// tenant's automatic distribution on.
async fn wait_for_projection(cluster: &Cluster, agents: usize, tenants: usize) {
    let pool = &cluster.distribution_db.pool;
    let started = Instant::now();
    loop {
        let (available, linked, auto): (i64, i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM agents WHERE tenant_id = ANY($1) AND day_open AND NOT on_break \
                                                  AND NOT exit_notified), \
                    (SELECT count(*) FROM agent_departments WHERE tenant_id = ANY($1)), \
                    (SELECT count(*) FROM distribution_settings WHERE tenant_id = ANY($1) AND auto_distribution_enabled) \
                        = cardinality($1)",
        )
        .bind(all_tenants(tenants))
        .fetch_one(pool)
        .await
        .unwrap();
        if available == agents as i64 && linked == agents as i64 && auto {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "task-distribution saw only {available} available / {linked} linked agents (auto distribution {auto})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `count` tasks, `concurrency` at a time (untimed).
async fn create_untimed(client: &DistributionServiceClient<Channel>, count: usize, concurrency: usize, tenants: usize) {
    let mut rng = Rng(7);
    let lists = Lists::new();
    let requests: Vec<(usize, pb::CreateTaskRequest)> =
        (0..count).map(|i| (i, create_request(&mut rng, &lists))).collect();
    futures::stream::iter(requests)
        .for_each_concurrent(concurrency, |(i, request)| {
            let mut client = client.clone();
            let service = token(&tenant_of(i, tenants), "crm-bot", &[Role::Service]);
            async move {
                let _ = client.create_task(authed(&service, request)).await;
            }
        })
        .await;
}

async fn wait_until(what: impl Fn() -> bool, quiet: Duration, progress: impl Fn() -> usize) {
    let mut last = progress();
    let mut last_change = Instant::now();
    while !what() && last_change.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = progress();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}

struct Probe {
    stop: CancellationToken,
    lags: tokio::task::JoinHandle<Vec<Duration>>,
}

/// Reads task-distribution's stream from now on: for each TaskAssigned, its `ce-time` (the
/// transaction's clock) → delivery here, i.e. commit and outbox relay.
async fn probe_jetstream(stream_name: &str) -> Probe {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let stream = js.get_stream(stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::New, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let lags = tokio::spawn(async move {
        let mut lags = Vec::new();
        loop {
            let message = tokio::select! {
                () = token.cancelled() => break,
                next = messages.next() => match next {
                    Some(Ok(message)) => message,
                    _ => break,
                },
            };
            let Some(headers) = message.headers.as_ref() else { continue };
            if headers.get("ce-type").map(|t| t.as_str()) != Some("dw.distribution.v1.TaskAssigned") {
                continue;
            }
            let Some(time) = headers.get("ce-time") else { continue };
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(time.as_str()) {
                lags.push(since(at.with_timezone(&chrono::Utc), chrono::Utc::now()));
            }
        }
        lags
    });
    Probe { stop, lags }
}

struct Created {
    task_id: String,
    sent: Instant,
    returned: Instant,
}

async fn assignment_latency(cluster: &Cluster) {
    let agents = env_or("BENCH_AGENTS", 2000) as usize;
    let tenants = env_or("BENCH_TENANTS", 1).max(1) as usize;
    let rate = env_or("BENCH_RATE", 500).max(1);
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 64).max(1) as usize;
    let hold = Duration::from_millis(env_or("BENCH_HOLD_MS", 200));
    println!(
        "== task assignment: CreateTask returned → ASSIGNED on the agent's WatchMyTasks stream \
         ({agents} agents online in {DEPARTMENTS} departments of {tenants} tenant(s), target {rate} tasks/s for {seconds} s, \
         at most {concurrency} CreateTask in flight, each task completed {} ms after it arrives) ==",
        hold.as_millis()
    );

    // Agents: registered, linked and day started through agent-sessions; their availability
    // reaches task-distribution over JetStream.
    let names: Vec<String> = (0..agents).map(|i| format!("agent-{i:04}")).collect();
    let seeding = Instant::now();
    seed_agents(cluster, &names, tenants).await;
    let seeded = seeding.elapsed();
    wait_for_projection(cluster, agents, tenants).await;
    println!(
        "seeding         {agents} agents registered + linked + day started in {:.1} s (32 in flight); \
         all available in task-distribution after {:.1} s",
        seeded.as_secs_f64(),
        seeding.elapsed().as_secs_f64()
    );

    // The raw limit of the same writes at the same concurrency, before the service's run: as
    // many clients as the service has database connections, within what Postgres has left.
    let raw_clients = raw_clients(&cluster.distribution_db.pool).await;
    let raw_cpu_before = CpuTimes::now();
    let raw = raw_task_shape(&cluster.distribution_db.url, raw_clients, seconds, tenants).await;
    let raw_cpu = CpuTimes::now().minus(raw_cpu_before);
    println!(
        "raw, same run   a task created and completed in SQL alone (the service's writes, none of its code), \
         {raw_clients} clients: {:.0} tasks/s, {}",
        raw.0,
        dw_testkit::bench::summary(&raw.1)
    );

    // Every agent watches their tasks.
    let (arrivals_tx, mut arrivals_rx) = mpsc::unbounded_channel::<(String, Arrival)>();
    let arrivals: Arc<Mutex<HashMap<String, Arrival>>> = Arc::default();
    let observed = Arc::new(AtomicUsize::new(0));
    {
        let arrivals = arrivals.clone();
        let observed = observed.clone();
        tokio::spawn(async move {
            while let Some((task_id, at)) = arrivals_rx.recv().await {
                arrivals.lock().unwrap().entry(task_id).or_insert(at);
                observed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let completions = Arc::new(Completions::default());
    let opening = Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .for_each_concurrent(64, |(i, name)| {
            let client = cluster.distribution();
            let arrivals = arrivals_tx.clone();
            let completions = completions.clone();
            let tenant = tenant_of(i, tenants);
            async move {
                let bearer = token(&tenant, name, &[Role::Agent]);
                let stream = client
                    .clone()
                    .watch_my_tasks(authed(&bearer, pb::WatchMyTasksRequest {}))
                    .await
                    .unwrap()
                    .into_inner();
                tokio::spawn(agent_loop(stream, client, bearer, arrivals, hold, completions));
            }
        })
        .await;
    drop(arrivals_tx);
    println!("watching        {agents} WatchMyTasks streams open after {:.1} s", opening.elapsed().as_secs_f64());

    // Statistics before the warm-up too: Postgres weighs a prepared statement's generic plan
    // against the average cost of the plans it made for the first calls' values, and plans made
    // on tables without statistics look so cheap that it would plan a department's round again
    // at every call for the rest of the run (a running cluster has statistics from the start).
    for db in [&cluster.distribution_db, &cluster.sessions_db] {
        sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    }

    // Warm-up (connections, caches), untimed.
    let warmup = env_or("BENCH_WARMUP", 200) as usize;
    let client = cluster.distribution();
    create_untimed(&client, warmup, 16, tenants).await;
    wait_until(
        || observed.load(Ordering::Relaxed) >= warmup,
        Duration::from_secs(5),
        || observed.load(Ordering::Relaxed),
    )
    .await;

    // Planner statistics, as a running cluster has them (autovacuum analyzes a table within a
    // minute of its first rows): planned on never-analyzed tables, a tenant's lookup by ids
    // reads every task of the tenant instead of using the primary key.
    for db in [&cluster.distribution_db, &cluster.sessions_db] {
        sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    }

    // The timed run: a task every 1/rate s (catching up when behind), at most `concurrency` in
    // flight; issuing stops at the deadline if the server cannot keep up.
    let services: Vec<String> =
        all_tenants(tenants).iter().map(|tenant| token(tenant, "crm-bot", &[Role::Service])).collect();
    let scheduled = rate * seconds;
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut calls = tokio::task::JoinSet::new();
    let mut rng = Rng(42);
    let lists = Lists::new();
    let mut issued = 0u64;
    let mut behind = Duration::ZERO;
    let jetstream_probe = probe_jetstream(&cluster.distribution_ns.stream_name).await;
    let cpu_before = CpuTimes::now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    for i in 0..scheduled {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = permits.clone().acquire_owned().await.unwrap();
        let now = Instant::now();
        if now > deadline {
            break;
        }
        behind = behind.max(now - due);
        issued += 1;
        let mut client = client.clone();
        let service = services[i as usize % services.len()].clone();
        let request = create_request(&mut rng, &lists);
        calls.spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let result = client.create_task(authed(&service, request)).await;
            let returned = Instant::now();
            result.ok().map(|task| Created { task_id: task.into_inner().task_id, sent, returned })
        });
    }
    let mut created = Vec::new();
    let mut errors = 0u64;
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Some(task) => created.push(task),
            None => errors += 1,
        }
    }
    let last_return = created.iter().map(|c| c.returned).max().unwrap_or(start);
    let window = last_return - start;
    let cpu_after = CpuTimes::now();

    // Wait for the assignments still on their way.
    let seen = |arrivals: &Mutex<HashMap<String, Arrival>>| {
        let map = arrivals.lock().unwrap();
        created.iter().filter(|c| map.contains_key(&c.task_id)).count()
    };
    wait_until(|| seen(&arrivals) == created.len(), Duration::from_secs(10), || observed.load(Ordering::Relaxed)).await;

    let map = arrivals.lock().unwrap().clone();
    let mut latencies = Vec::new();
    let mut end_to_end = Vec::new();
    let mut call = Vec::new();
    let mut server = Vec::new();
    let mut transport = Vec::new();
    let mut early = 0;
    for c in &created {
        call.push(c.returned - c.sent);
        if let Some(arrival) = map.get(&c.task_id) {
            if arrival.at < c.returned {
                early += 1;
            }
            latencies.push(arrival.at.saturating_duration_since(c.returned));
            end_to_end.push(arrival.at.saturating_duration_since(c.sent));
            server.push(arrival.server);
            transport.push(arrival.transport);
        }
    }
    jetstream_probe.stop.cancel();
    let mut published = jetstream_probe.lags.await.unwrap_or_default();
    for list in [&mut latencies, &mut end_to_end, &mut call, &mut server, &mut transport, &mut published] {
        list.sort();
    }
    let achieved = created.len() as f64 / window.as_secs_f64().max(f64::EPSILON);
    println!(
        "tasks created   {} of {scheduled} scheduled ({issued} issued, {errors} errors); target {rate}/s, \
         achieved {achieved:.0}/s over {:.2} s; issuing fell behind schedule by up to {:.0} ms",
        created.len(),
        window.as_secs_f64(),
        ms(behind)
    );
    println!(
        "assignments     {} observed on the streams for those tasks ({} missing after waiting; {early} arrived \
         before their CreateTask call returned, counted as 0)",
        latencies.len(),
        created.len() - latencies.len()
    );
    println!("returned→stream {}", spread(&latencies));
    println!("sent→stream     {}", spread(&end_to_end));
    println!("breakdown of the assignments' path (task's assigned_at = the assigning transaction's clock):");
    println!(
        "  assigned_at→JetStream  {}   (commit + relay: its fast lane, else the outbox; {} TaskAssigned seen)",
        spread(&published),
        published.len()
    );
    println!(
        "  assigned_at→feed       {}   (… + the replica's feed consumer and its read of the task)",
        spread(&server)
    );
    println!("  feed→agent             {}   (gRPC stream to the agent)", spread(&transport));
    println!(
        "CreateTask call p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        ms(percentile(&call, 0.50)),
        ms(percentile(&call, 0.99)),
        ms(percentile(&call, 1.0))
    );
    println!("{}", cpu_after.minus(cpu_before).usage(window, "this process (client + both servers)"));
    // CPU per task, beside the raw shape's: how much work a task costs, whatever the machine's
    // speed or what else ran on it (less noisy than the rates when both saturate the cores).
    let cpu = cpu_after.minus(cpu_before);
    let per_task = |seconds: f64, tasks: usize| seconds * 1000.0 / tasks.max(1) as f64;
    let (raw_tasks, tasks) = (raw.1.len(), created.len());
    let service_ms = per_task(cpu.bench + cpu.postgres + cpu.nats, tasks);
    let raw_ms = per_task(raw_cpu.bench + raw_cpu.postgres + raw_cpu.nats, raw_tasks);
    println!(
        "CPU per task    service {service_ms:.2} ms (postgres {:.2}, this process {:.2}, nats {:.2}); raw shape \
         {raw_ms:.2} ms (postgres {:.2}); raw ÷ service = {:.2}",
        per_task(cpu.postgres, tasks),
        per_task(cpu.bench, tasks),
        per_task(cpu.nats, tasks),
        per_task(raw_cpu.postgres, raw_tasks),
        raw_ms / service_ms.max(1e-9)
    );
    if let Ok(text) = dw_testkit::metrics::scrape(cluster.metrics[0]).await {
        let groups =
            |outcome| dw_testkit::metrics::sample(&text, "dw_task_create_groups_total", &[("outcome", outcome)]);
        println!(
            "create groups   {} decided together, {} run alone after all (of more than one create each)",
            groups("together").unwrap_or(0.0),
            groups("alone").unwrap_or(0.0)
        );
    }
    let p99 = |sorted: &[Duration]| ms(percentile(sorted, 0.99));
    let what =
        if tenants == 1 { "tasks created, one tenant".to_owned() } else { format!("tasks created, {tenants} tenants") };
    println!("ratio           tasks/s ÷ raw tasks/s = {:.2}", achieved / raw.0.max(1e-9));
    dw_testkit::bench::record("distribution", &format!("{what} (raw: SQL alone)"), achieved, "/s", Some(raw.0));
    let cost =
        if tenants == 1 { "CPU per task, one tenant".to_owned() } else { format!("CPU per task, {tenants} tenants") };
    dw_testkit::bench::record("distribution", &format!("{cost} (raw: SQL alone)"), service_ms, "ms", Some(raw_ms));
    dw_testkit::bench::record("distribution", "CreateTask p99", p99(&call), "ms", None);
    dw_testkit::bench::record("distribution", "task created → agent's stream p99", p99(&latencies), "ms", None);

    // Let the held tasks complete before the next section.
    let pool = &cluster.distribution_db.pool;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(30) {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE tenant_id = ANY($1) AND status IN ('queued', 'assigned')",
        )
        .bind(all_tenants(tenants))
        .fetch_one(pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "completions     {} ok, {} failed (agents complete every task they get)",
        completions.ok.load(Ordering::Relaxed),
        completions.failed.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. SearchProtocols over a large archive
// ---------------------------------------------------------------------------------------------

/// Rows `$2..=$3` of the archive: task `i` is on day `i % 100` (from `$4`) with daily sequence
/// `i / 100 + 1` (so protocols are unique and gap-free per day, and `created_at` grows with the
/// sequence over the day); clients (`$6` of them) have a stable name and phone and several tasks;
/// 20 departments, 100 agents each; mostly completed, the tail of the last day still open.
const ARCHIVE_INSERT: &str = "
INSERT INTO tasks (tenant_id, task_id, protocol, department_id, channel, client_name, client_phone, contact_id,
                   priority, subject, status, agent_id, created_at, assigned_at, closed_at, queue_front,
                   queued_at, message_count, last_message_at, version)
SELECT $1, gen_random_uuid(),
       to_char(t.day, 'YYYYMMDD') || lpad(t.seq::text, 6, '0'),
       'dept-' || lpad(t.dept::text, 2, '0'),
       (ARRAY['whatsapp', 'sms', 'voice', 'email', 'chat'])[1 + (t.i / 7) % 5],
       CASE WHEN t.client % 500 = 0 THEN ($9::text[])[1 + (t.client / 500) % cardinality($9::text[])]
            ELSE ($7::text[])[1 + t.client % cardinality($7::text[])] END
           || ' ' || ($8::text[])[1 + (t.client / 30) % cardinality($8::text[])],
       '+55119' || lpad(t.client::text, 8, '0'),
       'crm-' || t.client,
       (t.i * 7) % 10,
       ($10::text[])[1 + (t.i / 3) % cardinality($10::text[])],
       t.status,
       CASE WHEN t.status = 'queued' THEN NULL
            ELSE 'agent-' || lpad((t.dept + 20 * ((t.i * 7) % 100))::text, 4, '0') END,
       t.created_at,
       CASE WHEN t.status = 'queued' THEN NULL ELSE t.created_at + interval '45 seconds' END,
       CASE WHEN t.status IN ('completed', 'cancelled')
            THEN t.created_at + interval '1 second' * (300 + (t.i * 37) % 3000) END,
       FALSE, t.created_at, (t.i % 4)::int,
       CASE WHEN t.i % 4 > 0 THEN t.created_at + interval '2 minutes' END,
       CASE t.status WHEN 'queued' THEN 1 WHEN 'assigned' THEN 2 ELSE 3 END
FROM (
    SELECT g.i,
           $4::date + (g.i % 100)::int AS day,
           g.i / 100 + 1 AS seq,
           (g.i / 100) % 20 AS dept,
           (g.i * 7919) % $6 AS client,
           ($4::date + (g.i % 100)::int)::timestamptz
               + make_interval(secs => ((g.i / 100) * 86400.0 / $5)::float8) AS created_at,
           CASE WHEN g.i % 100 = 99 AND g.i / 100 >= $5 - 200
                     THEN CASE WHEN g.i % 3 = 0 THEN 'queued' ELSE 'assigned' END
                WHEN (g.i * 31) % 100 < 6 THEN 'cancelled'
                ELSE 'completed' END AS status
    FROM generate_series($2::bigint, $3::bigint) AS g(i)
) t";

/// What the archive holds, to build queries that find something.
struct Archive {
    total: i64,
    per_day: i64,
    clients: i64,
    first_day: chrono::NaiveDate,
}

impl Archive {
    fn day(&self, index: i64) -> chrono::NaiveDate {
        self.first_day + chrono::Duration::days(index)
    }

    fn day_prefix(&self, index: i64) -> String {
        self.day(index).format("%Y%m%d").to_string()
    }
}

fn midnight(day: chrono::NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

const COMMON_NAMES: [&str; 6] = ["jose", "conceicao", "João", "SILVA", "gonçalves", "maria"];
const RARE_NAMES: [&str; 5] = ["zuleica", "ivanildo", "CREUSA", "valdemiria", "orlandina"];

/// The request of one search of `kind`, with values varied by `rng`.
fn search_request(kind: &str, rng: &mut Rng, archive: &Archive, round: usize) -> pb::SearchProtocolsRequest {
    let day = rng.below(SEARCH_DAYS as u64) as i64;
    let mut request = pb::SearchProtocolsRequest::default();
    match kind {
        "protocol (exact)" => {
            let full_days = (archive.total / SEARCH_DAYS).max(1);
            let seq = 1 + rng.below(full_days as u64) as i64;
            request.protocol = format!("{}{seq:06}", archive.day_prefix(day));
        }
        "protocol prefix (a day)" => request.protocol_prefix = archive.day_prefix(day),
        "client name (common)" => request.client_name = COMMON_NAMES[round % COMMON_NAMES.len()].to_owned(),
        "client name (rare)" => request.client_name = RARE_NAMES[round % RARE_NAMES.len()].to_owned(),
        "phone" => request.phone = format!("+55119{:08}", rng.below(archive.clients as u64)),
        "department" => request.department_id = department(rng.below(DEPARTMENTS as u64) as usize),
        "agent" => request.agent_id = format!("agent-{:04}", rng.below(2000)),
        "status + date range" => {
            let status = if round.is_multiple_of(2) { pb::TaskStatus::Completed } else { pb::TaskStatus::Cancelled };
            request.status = status as i32;
            let span = 1 + rng.below(7) as i64;
            let from = day.min(SEARCH_DAYS - span);
            request.created_from = Some(time::timestamp(midnight(archive.day(from))));
            request.created_to = Some(time::timestamp(midnight(archive.day(from + span))));
        }
        "name + department" => {
            request.client_name = COMMON_NAMES[round % COMMON_NAMES.len()].to_owned();
            request.department_id = department(rng.below(DEPARTMENTS as u64) as usize);
        }
        // Page 2 starts from a first page of one of these.
        _ => match round % 3 {
            0 => request.department_id = department(rng.below(DEPARTMENTS as u64) as usize),
            1 => request.client_name = COMMON_NAMES[round % COMMON_NAMES.len()].to_owned(),
            _ => request.protocol_prefix = archive.day_prefix(day),
        },
    }
    request
}

const SEARCH_KINDS: [&str; 10] = [
    "protocol (exact)",
    "protocol prefix (a day)",
    "client name (common)",
    "client name (rare)",
    "phone",
    "department",
    "agent",
    "status + date range",
    "name + department",
    "page 2 (next_page_token)",
];

async fn search_latency(cluster: &Cluster) {
    let total = env_or("BENCH_SEARCH_TASKS", 1_000_000).max(SEARCH_DAYS as u64) as i64;
    let runs = env_or("BENCH_SEARCH_RUNS", 50).max(1) as usize;
    println!(
        "== SearchProtocols over {total} tasks (tenant `{SEARCH_TENANT}`, {SEARCH_DAYS} days, 20 departments, \
         2,000 agents), {runs} requests per kind as a manager, page size 50 =="
    );
    let pool = &cluster.distribution_db.pool;
    let archive = Archive {
        total,
        per_day: (total + SEARCH_DAYS - 1) / SEARCH_DAYS,
        clients: (total / 4).max(1) + 13,
        first_day: chrono::Utc::now().date_naive() - chrono::Duration::days(SEARCH_DAYS),
    };
    let lists = Lists::new();
    let loading = Instant::now();
    let chunk = 100_000i64;
    let mut from = 0i64;
    while from < total {
        let to = (from + chunk).min(total) - 1;
        sqlx::query(ARCHIVE_INSERT)
            .bind(SEARCH_TENANT)
            .bind(from)
            .bind(to)
            .bind(archive.first_day)
            .bind(archive.per_day)
            .bind(archive.clients)
            .bind(&lists.first)
            .bind(&lists.last)
            .bind(&lists.rare)
            .bind(&lists.subjects)
            .execute(pool)
            .await
            .unwrap();
        from = to + 1;
    }
    let loaded = loading.elapsed();
    let analyzing = Instant::now();
    // VACUUM as well as ANALYZE: the visibility map and the trigram index's pending list are then
    // as autovacuum would leave them, and autovacuum does not start in the middle of the timings.
    sqlx::raw_sql("VACUUM (ANALYZE) tasks").execute(pool).await.unwrap();
    let (rows, size): (i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tasks WHERE tenant_id = $1), pg_size_pretty(pg_total_relation_size('tasks'))",
    )
    .bind(SEARCH_TENANT)
    .fetch_one(pool)
    .await
    .unwrap();
    println!(
        "archive         {rows} rows inserted in {:.1} s ({:.0} rows/s, INSERT … SELECT generate_series in chunks of \
         {chunk}, every index in place); VACUUM ANALYZE {:.1} s; tasks table + indexes {size}",
        loaded.as_secs_f64(),
        rows as f64 / loaded.as_secs_f64().max(f64::EPSILON),
        analyzing.elapsed().as_secs_f64()
    );

    let manager = token(SEARCH_TENANT, "manager-1", &[Role::Manager]);
    let mut client = cluster.distribution();
    let mut rng = Rng(2026);
    for kind in SEARCH_KINDS {
        let mut latencies = Vec::with_capacity(runs);
        let mut found = 0usize;
        let mut failures = 0usize;
        // Two untimed requests first (plans and pages warm), then `runs` timed ones.
        for round in 0..runs + 2 {
            let mut request = search_request(kind, &mut rng, &archive, round);
            if kind.starts_with("page 2") {
                let first = client.search_protocols(authed(&manager, request.clone())).await.unwrap().into_inner();
                request.page_token = first.next_page_token;
            }
            let started = Instant::now();
            let result = client.search_protocols(authed(&manager, request)).await;
            let elapsed = started.elapsed();
            if round < 2 {
                continue;
            }
            latencies.push(elapsed);
            match result {
                Ok(response) => found += response.into_inner().tasks.len(),
                Err(_) => failures += 1,
            }
        }
        latencies.sort();
        let figure = format!("SearchProtocols p99, {kind}");
        dw_testkit::bench::record("search", &figure, ms(percentile(&latencies, 0.99)), "ms", None);
        println!(
            "{kind:<26} p50 {:6.2} ms   p99 {:6.2} ms   max {:6.2} ms   ({:.1} tasks/answer{})",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(percentile(&latencies, 1.0)),
            found as f64 / runs as f64,
            if failures > 0 { format!(", {failures} FAILED") } else { String::new() }
        );
    }
}

/// Stops the cluster and drops what the run created (the archive is large), unless `BENCH_KEEP=1`.
async fn cleanup(cluster: Cluster) {
    let keep = env_or("BENCH_KEEP", 0) == 1;
    let databases = [cluster.sessions_db.name.clone(), cluster.distribution_db.name.clone()];
    let pools = [cluster.sessions_db.pool.clone(), cluster.distribution_db.pool.clone()];
    let streams = [
        cluster.sessions_ns.stream_name.clone(),
        cluster.distribution_ns.stream_name.clone(),
        cluster.messaging_ns.stream_name.clone(),
    ];
    cluster.stop().await;
    for pool in pools {
        pool.close().await;
    }
    if keep {
        println!("kept databases {databases:?} and streams {streams:?}");
        return;
    }
    if let Ok(mut admin) = sqlx::PgConnection::connect(&dw_testkit::admin_database_url()).await {
        for name in &databases {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
        }
    }
    if let Ok(nats) = dw_testkit::connect_nats().await {
        let js = async_nats::jetstream::new(nats);
        for stream in &streams {
            let _ = js.delete_stream(stream).await;
        }
    }
}
