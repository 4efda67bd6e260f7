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
use integration_tests::tls::TestCa;
use integration_tests::{authed, rid};
use sessions::agent_admin_service_client::AgentAdminServiceClient;
use sessions::service_day_service_client::ServiceDayServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const SECRET: &str = "backfill-secret-of-enough-length-0123";
const TENANT: &str = "acme";

/// What every service of these tests runs with: the test's NATS and its own database.
fn service_env(nats: &Nats, database: &str) -> Vec<(String, String)> {
    vec![
        ("DW_JWT_SECRET".to_owned(), SECRET.to_owned()),
        ("NATS_URL".to_owned(), nats.url()),
        ("DATABASE_URL".to_owned(), database.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ]
}

fn token(sub: &str, role: Role) -> String {
    integration_tests::token(SECRET, TENANT, sub, role).unwrap()
}

/// Registers `agent` and opens their day.
async fn open_day(endpoint: &str, agent: &str) {
    let channel = Endpoint::from_shared(endpoint.to_owned()).unwrap().connect().await.unwrap();
    open_day_over(channel, agent).await;
}

/// [`open_day`] over `channel`.
async fn open_day_over(channel: Channel, agent: &str) {
    let mut admin = AgentAdminServiceClient::new(channel.clone());
    let register = sessions::RegisterAgentRequest {
        request_id: rid(),
        agent_id: agent.to_owned(),
        display_name: agent.to_owned(),
    };
    admin.register_agent(authed(&token("boss", Role::Manager), register)).await.unwrap();
    let mut day = ServiceDayServiceClient::new(channel);
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
    let env = |database: &str| service_env(&nats, database);
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

/// Polls `sql` on `database` until it counts `want` (30 s), returning the last count.
async fn wait_for_count(database: &str, sql: &'static str, want: i64) -> i64 {
    let mut last = -1;
    for _ in 0..300 {
        last = try_count(database, sql).await.unwrap_or(-1);
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// The same over TLS with client certificates: agent-sessions serves its gRPC port with a
/// certificate of the test's CA and admits only clients with a certificate of the client CA; the
/// new task-distribution reads the dropped events over `https://`, trusting the server CA
/// (`DW_EVENT_LOG_TLS_CA_FILE`) and presenting its certificate (`DW_EVENT_LOG_TLS_CERT_FILE` and
/// `_KEY_FILE`). One without the client certificate is refused and misses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_reads_an_owner_that_requires_mtls() {
    let work = WorkDir::new("backfill-tls").unwrap();
    let servers = TestCa::new(work.path(), "servers").unwrap();
    let clients = TestCa::new(work.path(), "clients").unwrap();
    let server_cert = servers.server("agent-sessions").unwrap();
    let client_cert = clients.client("task-distribution", "task-distribution").unwrap();
    let postgres = Postgres::start(&work).await.unwrap();
    let nats = Nats::start(&work).await.unwrap();
    let sessions_db = postgres.create_database("agent_sessions").await.unwrap();
    let env = |database: &str| service_env(&nats, database);
    let path = |p: &std::path::Path| p.display().to_string();
    let mut sessions_env = env(&sessions_db);
    sessions_env.push(("DW_GRPC_TLS_CERT_FILE".into(), path(&server_cert.cert)));
    sessions_env.push(("DW_GRPC_TLS_KEY_FILE".into(), path(&server_cert.key)));
    sessions_env.push(("DW_GRPC_TLS_CLIENT_CA_FILE".into(), path(&clients.cert)));
    let mut agent_sessions = Service::new("agent-sessions", sessions_env).unwrap();
    agent_sessions.start(&work).await.unwrap();
    let https = format!("https://localhost:{}", agent_sessions.grpc_port);

    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&servers.cert).unwrap())).identity(
            Identity::from_pem(std::fs::read(&client_cert.cert).unwrap(), std::fs::read(&client_cert.key).unwrap()),
        );
    let channel = Endpoint::from_shared(https.clone()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    for agent in ["early-0", "early-1", "early-2"] {
        open_day_over(channel.clone(), agent).await;
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    all_published(&js, &sessions_db).await;
    js.get_stream("DW_AGENT_SESSIONS").await.unwrap().purge().await.unwrap();

    let token_file = work.path().join("service.token");
    std::fs::write(&token_file, token("task-distribution", Role::Service)).unwrap();
    let with_cert_db = postgres.create_database("distribution_mtls").await.unwrap();
    let without_cert_db = postgres.create_database("distribution_no_cert").await.unwrap();
    let distribution = |database: &str, prefix: &str, with_cert: bool| {
        let mut env = env(database);
        env.push(("DW_CONSUMER_PREFIX".into(), prefix.into()));
        env.push(("DW_AGENT_SESSIONS_EVENT_LOG_URL".into(), https.clone()));
        env.push(("DW_SERVICE_TOKEN_FILE".into(), path(&token_file)));
        env.push(("DW_EVENT_LOG_TLS_CA_FILE".into(), path(&servers.cert)));
        if with_cert {
            env.push(("DW_EVENT_LOG_TLS_CERT_FILE".into(), path(&client_cert.cert)));
            env.push(("DW_EVENT_LOG_TLS_KEY_FILE".into(), path(&client_cert.key)));
        }
        Service::new("task-distribution", env).unwrap()
    };
    let mut with_cert = distribution(&with_cert_db, "mtls", true);
    let mut without_cert = distribution(&without_cert_db, "nocert", false);
    with_cert.start(&work).await.unwrap();
    without_cert.start(&work).await.unwrap();

    let open_days = "SELECT count(*) FROM agents WHERE day_open";
    assert_eq!(wait_for_count(&with_cert_db, open_days, 3).await, 3, "the dropped days, read over mTLS");
    // Refused at the handshake, the other keeps retrying and has none of them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(try_count(&without_cert_db, open_days).await.unwrap_or(0), 0, "no client certificate, no events");

    with_cert.stop().await.unwrap();
    without_cert.stop().await.unwrap();
    agent_sessions.stop().await.unwrap();
}
