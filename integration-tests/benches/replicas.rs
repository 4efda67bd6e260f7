//! `make bench`: commit → JetStream across replicas. Two agent-sessions release binaries on one
//! database and stream; the first holds the active outbox relay, the second stands by. Agents
//! take breaks through one replica at a time, at a light load, and each event's arrival on the
//! stream is timed from the moment its RPC returned (after the commit): a lower bound of commit →
//! JetStream. Run with the relays' peer wake off (`DW_RELAY_PEER_WAKE=false`: a commit in the
//! standby's process waits for the active relay's 50 ms poll) and on (the standby's relay wakes
//! the active one over NATS core), in the same run. The raw limit beside it: an acked JetStream
//! publish. Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_AGENTS` (16), `BENCH_SECONDS` (per replica and mode, 5), `BENCH_PAUSE_MS` (each
//! agent's pause between commands, 20).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_testkit::bench::{env_or, ms, percentile, record};
use futures::StreamExt;
use integration_tests::{Process, authed, free_port, rid};
use pb::agent_admin_service_client::AgentAdminServiceClient;
use pb::service_day_service_client::ServiceDayServiceClient;
use sqlx::Connection;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const SECRET: &str = "bench-secret-at-least-16-bytes";
const TENANT: &str = "bench";

fn token(sub: &str, role: Role) -> String {
    integration_tests::token(SECRET, TENANT, sub, role).unwrap()
}

/// An agent-sessions replica's environment: the shared database and stream, its own ports.
fn replica_env(database_url: &str, suffix: &str, peer_wake: bool) -> (Vec<(String, String)>, u16) {
    let grpc_port = free_port().unwrap();
    let stream = |service: &str| format!("TEST_BENCH_{}_{suffix}", service.to_uppercase().replace('-', "_"));
    let prefix = |service: &str| format!("bench.{}.{suffix}", service.replace('-', ""));
    let env = [
        ("DATABASE_URL", database_url.to_owned()),
        ("NATS_URL", dw_testkit::nats_url()),
        ("DW_JWT_SECRET", SECRET.to_owned()),
        ("GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
        ("METRICS_ADDR", format!("127.0.0.1:{}", free_port().unwrap())),
        ("DW_STREAM_NAME", stream("agent-sessions")),
        ("DW_SUBJECT_PREFIX", prefix("agent-sessions")),
        ("DW_CONSUMER_PREFIX", format!("agent-sessions-{suffix}")),
        ("DW_DISTRIBUTION_STREAM", stream("task-distribution")),
        ("DW_DISTRIBUTION_SUBJECT_PREFIX", prefix("task-distribution")),
        ("DW_MESSAGING_STREAM", stream("messaging-templates")),
        ("DW_MESSAGING_SUBJECT_PREFIX", prefix("messaging-templates")),
        ("DW_RELAY_PEER_WAKE", peer_wake.to_string()),
        ("DW_TENANT_MUTATIONS_PER_SECOND", "100000".to_owned()),
        ("DW_TENANT_MAX_IN_FLIGHT", "256".to_owned()),
        ("DW_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    (env, grpc_port)
}

/// Spawns the release binary and waits for `SERVING`.
async fn start(env: &[(String, String)], grpc_port: u16) -> Process {
    let binary = integration_tests::binary_of(&["release"], "agent-sessions")
        .expect("the release binaries: `cargo build --release --bins` first (make bench does)");
    let mut command = Command::new(binary);
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).stdin(Stdio::null()).stdout(Stdio::null());
    let process = Process::spawn(&mut command).unwrap();
    let endpoint = format!("http://127.0.0.1:{grpc_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "agent-sessions never reported SERVING");
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await {
            let status = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                return process;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holders of the relay's advisory lock (`RelayConfig::lock_key`) in the database.
async fn relay_holders(db: &mut sqlx::PgConnection) -> i64 {
    let key: i64 = dw_eventstore::outbox_relay::RelayConfig::new("", "", "").lock_key;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(key)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Agents taking break pairs through `endpoint` for `seconds`; each event's (stream, version)
/// with the instant its RPC returned.
async fn take_breaks(
    endpoint: &str,
    agents: &[String],
    seconds: u64,
    pause: Duration,
) -> HashMap<(String, u64), Instant> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).unwrap().connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for agent in agents {
        let mut day = ServiceDayServiceClient::new(channel.clone());
        let (agent, token) = (agent.clone(), token(agent, Role::Agent));
        workers.spawn(async move {
            let stream = format!("serviceday:{TENANT}:{agent}");
            let mut returned = Vec::new();
            while Instant::now() < deadline {
                let start = pb::StartBreakRequest { request_id: rid(), reason_id: String::new() };
                if let Ok(state) = day.start_break(authed(&token, start)).await {
                    returned.push(((stream.clone(), state.into_inner().version), Instant::now()));
                }
                tokio::time::sleep(pause).await;
                let end = pb::EndBreakRequest { request_id: rid(), confirm: true };
                if let Ok(state) = day.end_break(authed(&token, end)).await {
                    returned.push(((stream.clone(), state.into_inner().version), Instant::now()));
                }
                tokio::time::sleep(pause).await;
            }
            returned
        });
    }
    let mut all = HashMap::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

/// Each event's arrival on the stream, by (stream, version), until `quiet` passes without one.
async fn arrivals(
    mut messages: jetstream::consumer::pull::Ordered,
    quiet: Duration,
) -> HashMap<(String, u64), Instant> {
    let mut arrived = HashMap::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, messages.next()).await {
        let at = Instant::now();
        let Some(headers) = message.headers.as_ref() else { continue };
        let version = headers.get("dw-stream-version").and_then(|v| v.as_str().parse::<u64>().ok());
        if let (Some(stream), Some(version)) = (headers.get("ce-subject"), version) {
            arrived.insert((stream.as_str().to_owned(), version), at);
        }
    }
    arrived
}

/// Returned → JetStream for one replica's commands: (p50, p99, events).
async fn measure(
    js: &jetstream::Context,
    stream_name: &str,
    endpoint: &str,
    agents: &[String],
    seconds: u64,
    pause: Duration,
) -> (f64, f64, usize) {
    let stream = js.get_stream(stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let messages = consumer.messages().await.unwrap();
    let listening = tokio::spawn(arrivals(messages, Duration::from_secs(2)));
    let returned = take_breaks(endpoint, agents, seconds, pause).await;
    let arrived = listening.await.unwrap();
    let mut lags: Vec<Duration> = returned
        .iter()
        .filter_map(|(key, returned)| arrived.get(key).map(|at| at.saturating_duration_since(*returned)))
        .collect();
    lags.sort();
    (ms(percentile(&lags, 0.50)), ms(percentile(&lags, 0.99)), lags.len())
}

/// An acked JetStream publish, one at a time: (p50, p99).
async fn raw_acked_publish(js: &jetstream::Context) -> (f64, f64) {
    let latencies = dw_testkit::bench::acked_publish_latencies(js, 2_000).await;
    (ms(percentile(&latencies, 0.50)), ms(percentile(&latencies, 0.99)))
}

#[tokio::main]
async fn main() {
    let agents: Vec<String> = (0..env_or("BENCH_AGENTS", 16)).map(|i| format!("agent-{i:03}")).collect();
    let seconds = env_or("BENCH_SECONDS", 5);
    let pause = Duration::from_millis(env_or("BENCH_PAUSE_MS", 20));
    println!(
        "commit → JetStream across replicas: two agent-sessions replicas (release) on one database, {} agents \
         taking breaks through one replica at a time ({} ms between an agent's commands), {seconds} s each; \
         timed from each RPC's return to the event's arrival on the stream",
        agents.len(),
        pause.as_millis()
    );
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let (raw_p50, raw_p99) = raw_acked_publish(&js).await;
    println!("raw, same run   acked JetStream publish p50 {raw_p50:.2} ms   p99 {raw_p99:.2} ms");

    let admin_url = dw_testkit::admin_database_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    for peer_wake in [false, true] {
        // Named as the tests' databases and streams are, so `make clean-test-dbs` removes what an
        // interrupted run leaves.
        let suffix = dw_testkit::unique_suffix();
        let name = format!("dwtest_bench_replicas_{suffix}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        let options: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
        let url = sqlx::ConnectOptions::to_url_lossy(&options.database(&name)).to_string();

        // The first replica's relay becomes the active one before the second starts.
        let (env_a, port_a) = replica_env(&url, &suffix, peer_wake);
        let first = start(&env_a, port_a).await;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut active = false;
        for _ in 0..500 {
            if relay_holders(&mut db).await == 1 {
                active = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(active, "the first replica's relay never became active");
        let (env_b, port_b) = replica_env(&url, &suffix, peer_wake);
        let second = start(&env_b, port_b).await;
        let (endpoint_a, endpoint_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));

        let mut agents_admin = AgentAdminServiceClient::connect(endpoint_a.clone()).await.unwrap();
        let mut day = ServiceDayServiceClient::connect(endpoint_a.clone()).await.unwrap();
        let manager = token("manager-1", Role::Manager);
        for agent in &agents {
            let register =
                pb::RegisterAgentRequest { request_id: rid(), agent_id: agent.clone(), display_name: agent.clone() };
            agents_admin.register_agent(authed(&manager, register)).await.unwrap();
            let start = pb::StartServiceDayRequest { request_id: rid() };
            day.start_service_day(authed(&token(agent, Role::Agent), start)).await.unwrap();
        }

        let stream_name = env_a.iter().find(|(k, _)| k == "DW_STREAM_NAME").map(|(_, v)| v.clone()).unwrap();
        let mode = if peer_wake { "peer wake on " } else { "peer wake off" };
        for (replica, endpoint) in [("active relay's replica", &endpoint_a), ("standby's replica", &endpoint_b)] {
            let (p50, p99, events) = measure(&js, &stream_name, endpoint, &agents, seconds, pause).await;
            println!(
                "{mode}   commands to the {replica:<22} returned→JetStream p50 {p50:6.2} ms   p99 {p99:6.2} ms   ({events} events)"
            );
            if peer_wake {
                let figure = format!(
                    "returned→JetStream p99, via {}",
                    if replica.starts_with("active") { "active" } else { "standby" }
                );
                record("replicas", &figure, p99, "ms", Some(raw_p99));
            }
        }
        assert_eq!(relay_holders(&mut db).await, 1, "one active relay throughout");

        for process in [second, first] {
            let mut process = process;
            integration_tests::cluster::signal_and_wait(&mut process, "TERM").await.unwrap();
        }
        let _ = db.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .unwrap();
        for (key, value) in &env_a {
            if key.ends_with("STREAM") || key == "DW_STREAM_NAME" {
                let _ = js.delete_stream(value).await;
            }
        }
    }
}
