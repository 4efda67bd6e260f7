//! A consumer created after its stream dropped old events catches up from the owner (issue 14):
//! agent-sessions' stream loses its first messages (purged, as `max_age` would), then a new
//! task-distribution starts with agent-sessions' event log configured and builds the whole agents
//! projection; a second one without it misses the dropped events, which shows what the backfill
//! adds. Real binaries, Postgres and NATS of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream;
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use integration_tests::cluster::{Nats, Postgres, Service, WorkDir};
use integration_tests::{authed, rid};
use sessions::agent_admin_service_client::AgentAdminServiceClient;
use sessions::service_day_service_client::ServiceDayServiceClient;

const SECRET: &str = "backfill-secret-of-enough-length-0123";
const TENANT: &str = "acme";

fn token(sub: &str, role: Role) -> String {
    integration_tests::token(SECRET, TENANT, sub, role).unwrap()
}

/// Registers `agent` and opens their day.
async fn open_day(endpoint: &str, agent: &str) {
    let mut admin = AgentAdminServiceClient::connect(endpoint.to_owned()).await.unwrap();
    let register = sessions::RegisterAgentRequest {
        request_id: rid(),
        agent_id: agent.to_owned(),
        display_name: agent.to_owned(),
    };
    admin.register_agent(authed(&token("boss", Role::Manager), register)).await.unwrap();
    let mut day = ServiceDayServiceClient::connect(endpoint.to_owned()).await.unwrap();
    let start = sessions::StartServiceDayRequest { request_id: rid() };
    day.start_service_day(authed(&token(agent, Role::Agent), start)).await.unwrap();
}

async fn count(database: &str, sql: &'static str) -> i64 {
    try_count(database, sql).await.unwrap()
}

/// `None` while the service has not migrated its database yet.
async fn try_count(database: &str, sql: &'static str) -> Option<i64> {
    let pool = sqlx::PgPool::connect(database).await.ok()?;
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.ok();
    pool.close().await;
    n
}

/// Waits until every event of agent-sessions' store is on its stream.
async fn all_published(js: &jetstream::Context, sessions_db: &str) -> u64 {
    let stored = count(sessions_db, "SELECT count(*) FROM events").await;
    for _ in 0..200 {
        let mut stream = js.get_stream("DW_AGENT_SESSIONS").await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        if state.last_sequence as i64 >= stored {
            return state.last_sequence;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent-sessions never published its {stored} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_created_after_the_stream_dropped_events_reads_them_from_the_owner() {
    let work = WorkDir::new("backfill").unwrap();
    let postgres = Postgres::start(&work).await.unwrap();
    let nats = Nats::start(&work).await.unwrap();
    let sessions_db = postgres.create_database("agent_sessions").await.unwrap();
    let env = |database: &str| {
        vec![
            ("DW_JWT_SECRET".to_owned(), SECRET.to_owned()),
            ("NATS_URL".to_owned(), nats.url()),
            ("DATABASE_URL".to_owned(), database.to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ]
    };
    let mut agent_sessions = Service::new("agent-sessions", env(&sessions_db)).unwrap();
    agent_sessions.start(&work).await.unwrap();
    let endpoint = agent_sessions.endpoint();

    // Six agents open their day; then the stream drops all but its last two messages.
    let before: Vec<String> = (0..6).map(|i| format!("early-{i}")).collect();
    for agent in &before {
        open_day(&endpoint, agent).await;
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let last = all_published(&js, &sessions_db).await;
    let stream = js.get_stream("DW_AGENT_SESSIONS").await.unwrap();
    stream.purge().keep(2).await.unwrap();
    let mut stream = js.get_stream("DW_AGENT_SESSIONS").await.unwrap();
    let first = stream.info().await.unwrap().state.first_sequence;
    assert_eq!(first, last - 1, "the stream kept its last two messages");
    // Two more after the loss: those are on the stream.
    for agent in ["late-0", "late-1"] {
        open_day(&endpoint, agent).await;
    }
    all_published(&js, &sessions_db).await;

    // A new task-distribution that can read agent-sessions' event log, and one that cannot.
    let token_file = work.path().join("service.token");
    std::fs::write(&token_file, token("task-distribution", Role::Service)).unwrap();
    let backfilled_db = postgres.create_database("distribution_backfilled").await.unwrap();
    let mut backfilled_env = env(&backfilled_db);
    backfilled_env.push(("DW_CONSUMER_PREFIX".into(), "backfilled".into()));
    backfilled_env.push(("DW_AGENT_SESSIONS_EVENT_LOG_URL".into(), endpoint.clone()));
    backfilled_env.push(("DW_SERVICE_TOKEN_FILE".into(), token_file.display().to_string()));
    let control_db = postgres.create_database("distribution_control").await.unwrap();
    let mut control_env = env(&control_db);
    control_env.push(("DW_CONSUMER_PREFIX".into(), "control".into()));
    let mut backfilled = Service::new("task-distribution", backfilled_env).unwrap();
    let mut control = Service::new("task-distribution", control_env).unwrap();
    backfilled.start(&work).await.unwrap();
    control.start(&work).await.unwrap();

    let open_days = "SELECT count(*) FROM agents WHERE day_open";
    let mut caught_up = 0;
    for _ in 0..300 {
        caught_up = try_count(&backfilled_db, open_days).await.unwrap_or(-1);
        if caught_up == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(caught_up, 8, "every agent's open day, the dropped ones read from agent-sessions");
    let stored = count(&sessions_db, "SELECT count(*) FROM events").await;
    let processed = count(&backfilled_db, "SELECT count(*) FROM processed_events").await;
    assert_eq!(processed, stored, "each of agent-sessions' events applied once");

    // The control saw only what the stream still held (the late agents, and what the last two
    // kept messages said).
    for _ in 0..100 {
        let late = "SELECT count(*) FROM agents WHERE agent_id LIKE 'late-%' AND day_open";
        if try_count(&control_db, late).await == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let control_open = count(&control_db, open_days).await;
    assert!((2..8).contains(&control_open), "without the owner's log the dropped days are missing: {control_open}");

    backfilled.stop().await.unwrap();
    control.stop().await.unwrap();
    agent_sessions.stop().await.unwrap();
}
