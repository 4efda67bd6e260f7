//! `make bench`: each service's release binary started on the machine's Postgres and NATS, on
//! an empty database (migrations and stream set-up included) and again on the migrated one:
//! time from spawn to gRPC health `SERVING`, then its resident memory after idling. The raw
//! limit beside it: what any process must do before it can serve here (open a Postgres
//! connection, connect to NATS, one JetStream request), measured by this bench in the same run.
//! Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_IDLE_SECONDS` (default 5), `BENCH_STARTS` (restarts measured per service, 5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dw_testkit::bench::{env_or, ms, record};
use integration_tests::{Process, free_port};
use sqlx::Connection;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const SERVICES: [&str; 4] = ["agent-sessions", "task-distribution", "messaging-templates", "notifications"];
/// The target of the performance issue for an idle replica.
const RSS_TARGET_MB: f64 = 40.0;

/// One service's environment: its own database, streams and consumers nobody else uses.
struct Instance {
    name: &'static str,
    env: Vec<(String, String)>,
    grpc_port: u16,
}

fn instance(name: &'static str, database_url: &str, suffix: &str) -> Instance {
    let grpc_port = free_port().unwrap();
    let stream = |service: &str| format!("TEST_BENCH_{}_{suffix}", service.to_uppercase().replace('-', "_"));
    let prefix = |service: &str| format!("bench.{}.{suffix}", service.replace('-', ""));
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("NATS_URL", dw_testkit::nats_url()),
        ("DW_JWT_SECRET", "bench-secret-at-least-16-bytes".to_owned()),
        ("GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
        ("METRICS_ADDR", format!("127.0.0.1:{}", free_port().unwrap())),
        ("DW_STREAM_NAME", stream(name)),
        ("DW_SUBJECT_PREFIX", prefix(name)),
        ("DW_CONSUMER_PREFIX", format!("{name}-{suffix}")),
        ("DW_AGENT_SESSIONS_STREAM", stream("agent-sessions")),
        ("DW_AGENT_SESSIONS_SUBJECT_PREFIX", prefix("agent-sessions")),
        ("DW_MESSAGING_STREAM", stream("messaging-templates")),
        ("DW_MESSAGING_SUBJECT_PREFIX", prefix("messaging-templates")),
        ("DW_DISTRIBUTION_STREAM", stream("task-distribution")),
        ("DW_DISTRIBUTION_SUBJECT_PREFIX", prefix("task-distribution")),
        ("DW_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if name == "messaging-templates" {
        env.push(("DW_PROVIDER_SECRETS_KEY".into(), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()));
        env.push(("DW_WEBHOOK_ADDR".into(), format!("127.0.0.1:{}", free_port().unwrap())));
    }
    Instance { name, env, grpc_port }
}

/// Spawns the binary and waits for `SERVING`; the time it took and the process.
async fn start(instance: &Instance) -> (Duration, Process) {
    let binary = integration_tests::binary_of(&["release"], instance.name)
        .expect("the release binaries: `cargo build --release --bins` first (make bench does)");
    let mut command = Command::new(binary);
    command.envs(instance.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).stdin(Stdio::null());
    let started = Instant::now();
    let process = Process::spawn(&mut command).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", instance.grpc_port);
    let deadline = started + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "{} never reported SERVING", instance.name);
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await {
            let status = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
            if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
                return (started.elapsed(), process);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn stop(mut process: Process) {
    integration_tests::cluster::signal_and_wait(&mut process, "TERM").await.unwrap();
}

/// Resident memory of `pid` in MiB (`VmRSS`).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The least any process does before serving here: a Postgres connection, a NATS connection
/// and one JetStream request. With `tls` the Postgres connection negotiates TLS as the services'
/// do with the same URL (`sslmode=prefer`, TLS when the server offers it); without, it does not.
async fn raw_connect(database_url: &str, tls: bool) -> Duration {
    let options: sqlx::postgres::PgConnectOptions = database_url.parse().unwrap();
    let mode = if tls { sqlx::postgres::PgSslMode::Prefer } else { sqlx::postgres::PgSslMode::Disable };
    let started = Instant::now();
    let mut pg = sqlx::ConnectOptions::connect(&options.ssl_mode(mode)).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut pg).await.unwrap();
    let nats = async_nats::connect(dw_testkit::nats_url()).await.unwrap();
    nats.request("$JS.API.INFO", "".into()).await.unwrap();
    let took = started.elapsed();
    let _ = pg.close().await;
    drop(nats);
    took
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let idle = env_or("BENCH_IDLE_SECONDS", 5);
    let starts = env_or("BENCH_STARTS", 5).max(1) as usize;
    println!(
        "start-up and idle memory: each service's release binary, {starts} restarts on a migrated database, {idle} s idle"
    );
    let admin_url = dw_testkit::admin_database_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let suffix = dw_testkit::unique_suffix();
    let mut databases = Vec::new();
    for service in SERVICES {
        // Named as the tests' databases and streams are, so that `make clean-test-dbs` (run by
        // `make test`) removes what an interrupted run leaves.
        let name = format!("dwtest_bench_{}_{suffix}", service.replace('-', "_"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        let options: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
        databases.push((name.clone(), sqlx::ConnectOptions::to_url_lossy(&options.database(&name)).to_string()));
    }

    let (mut raw, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        raw.push(raw_connect(&databases[0].1, true).await);
        plain.push(raw_connect(&databases[0].1, false).await);
    }
    let (raw, plain) = (median(raw), median(plain));
    println!(
        "raw: Postgres connection (sslmode=prefer, as the services) + query, NATS connection + JetStream request: \
         {:.1} ms (median); {:.1} ms with sslmode=disable",
        ms(raw),
        ms(plain)
    );

    println!(
        "{:<20} {:>14} {:>16} {:>14} {:>14}",
        "service", "first start", "restart median", "restart max", "idle RSS"
    );
    for (service, (_, url)) in SERVICES.iter().zip(&databases) {
        let instance = instance(service, url, &suffix);
        let (first, process) = start(&instance).await;
        stop(process).await;
        let mut restarts = Vec::new();
        let mut running = None;
        for _ in 0..starts {
            if let Some(previous) = running.take() {
                stop(previous).await;
            }
            let (took, process) = start(&instance).await;
            restarts.push(took);
            running = Some(process);
        }
        let process = running.expect("at least one start");
        let worst = restarts.iter().max().copied().unwrap_or_default();
        let restart = median(restarts);
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let rss = rss_mb(process.0.id());
        stop(process).await;
        println!(
            "{service:<20} {:>11.0} ms {:>13.0} ms {:>11.0} ms {:>10.1} MiB",
            ms(first),
            ms(restart),
            ms(worst),
            rss
        );
        record("startup", &format!("{service} SERVING after start"), ms(restart), "ms", Some(ms(raw)));
        record("startup", &format!("{service} idle RSS (target <= {RSS_TARGET_MB:.0})"), rss, "MiB", None);
    }

    let jetstream = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    for service in SERVICES {
        let stream = format!("TEST_BENCH_{}_{suffix}", service.to_uppercase().replace('-', "_"));
        let _ = jetstream.delete_stream(&stream).await;
    }
    for (name, _) in &databases {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}
