//! TLS to Postgres: a server of the test's own that takes TCP over TLS only (`hostssl`), with
//! certificates made here. The services' connect function verifies the server (`verify-full` with
//! the CA of `sslrootcert`), logs in with a client certificate (`sslcert`/`sslkey`), and says
//! why when the server refuses plaintext or the CA is the wrong one; the agent-sessions binary
//! migrates and serves over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dw_grpc_kit::startup::{PostgresFailureCause, connect_postgres, try_connect_postgres};
use integration_tests::cluster::{Postgres, PostgresTls, Service, WorkDir};
use integration_tests::tls::TestCa;
use integration_tests::{binary, free_port, run_ok};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "postgres-tls-test-secret-of-32-bytes!";

fn verify_full(postgres: &Postgres, database: &str, ca: &Path) -> String {
    format!("{}?sslmode=verify-full&sslrootcert={}", postgres.url(database), ca.display())
}

async fn attempt(url: &str) -> Result<sqlx::PgPool, dw_grpc_kit::startup::PostgresFailure> {
    try_connect_postgres(url.parse().unwrap(), 1).await
}

#[tokio::test]
async fn the_services_connect_to_postgres_over_verified_tls_and_say_why_when_refused() {
    let work = WorkDir::new("pg-tls").unwrap();
    let ca = TestCa::new(work.path(), "ca").unwrap();
    let server = ca.server("postgres-server").unwrap();
    let client = ca.client("dw-cert-client", "dw_cert").unwrap();
    let postgres =
        Postgres::start_with_tls(&work, PostgresTls { server: &server, cert_login: Some((&ca.cert, "dw_cert")) })
            .await
            .unwrap();

    // verify-full with the server's CA: connected, and the session is encrypted.
    let cancel = CancellationToken::new();
    let url = verify_full(&postgres, "postgres", &ca.cert);
    let pool = tokio::time::timeout(Duration::from_secs(20), connect_postgres(&url, 2, &cancel))
        .await
        .expect("connected within 20 s")
        .unwrap();
    let ssl: bool = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("ssl");
    assert!(ssl, "the connection is encrypted");
    // The name the URL connects to must be in the certificate: localhost is too.
    let by_name = url.replace("127.0.0.1", "localhost");
    attempt(&by_name).await.unwrap().close().await;

    // Plaintext is refused by the server, and the failure says so and what to change.
    let plaintext = format!("{}?sslmode=disable", postgres.url("postgres"));
    let refused = attempt(&plaintext).await.unwrap_err();
    assert_eq!(refused.cause, PostgresFailureCause::Refused, "{refused}");
    let said = refused.to_string();
    assert!(said.contains("no encryption") && said.contains("sslmode=require or verify-full"), "{said}");

    // A CA that did not sign the server's certificate: refused before anything is sent.
    let stranger = TestCa::new(work.path(), "other-ca").unwrap();
    let wrong_ca = attempt(&verify_full(&postgres, "postgres", &stranger.cert)).await.unwrap_err();
    assert_eq!(wrong_ca.cause, PostgresFailureCause::Tls, "{wrong_ca}");
    let said = wrong_ca.to_string();
    assert!(said.contains("UnknownIssuer") && said.contains("sslrootcert"), "{said}");
    assert!(wrong_ca.cause.needs_an_operator());

    // A user that logs in by client certificate: with sslcert/sslkey it is in, without it is not.
    sqlx::query("CREATE ROLE dw_cert LOGIN").execute(&pool).await.unwrap();
    let as_cert_user = verify_full(&postgres, "postgres", &ca.cert).replace("postgres@", "dw_cert@");
    let with_cert = format!("{as_cert_user}&sslcert={}&sslkey={}", client.cert.display(), client.key.display());
    let cert_pool = attempt(&with_cert).await.unwrap();
    let user: String = sqlx::query("SELECT current_user AS u").fetch_one(&cert_pool).await.unwrap().get("u");
    assert_eq!(user, "dw_cert");
    cert_pool.close().await;
    let without_cert = attempt(&as_cert_user).await.unwrap_err();
    assert!(without_cert.cause.needs_an_operator(), "{without_cert}");
    pool.close().await;
}

#[tokio::test]
async fn agent_sessions_migrates_and_serves_over_tls_and_logs_why_a_wrong_ca_is_refused() {
    let work = WorkDir::new("pg-tls-binary").unwrap();
    let ca = TestCa::new(work.path(), "ca").unwrap();
    let server = ca.server("postgres-server").unwrap();
    let postgres = Postgres::start_with_tls(&work, PostgresTls { server: &server, cert_login: None }).await.unwrap();
    postgres.create_database("agent_sessions").await.unwrap();
    let url = verify_full(&postgres, "agent_sessions", &ca.cert);
    let namespace = dw_testkit::TestNamespace::new("pgtls");
    let env = |database_url: &str| {
        vec![
            ("DW_JWT_SECRET".to_owned(), SECRET.to_owned()),
            ("DATABASE_URL".to_owned(), database_url.to_owned()),
            ("NATS_URL".to_owned(), dw_testkit::nats_url()),
            ("DW_STREAM_NAME".to_owned(), namespace.stream_name.clone()),
            ("DW_SUBJECT_PREFIX".to_owned(), namespace.subject_prefix.clone()),
            ("DW_RUN_MIGRATIONS".to_owned(), "false".to_owned()),
            ("DW_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ]
    };

    // `migrate` over TLS.
    let migrate = run_ok(
        Command::new(binary("agent-sessions").unwrap())
            .arg("migrate")
            .envs(env(&url))
            .env("GRPC_ADDR", format!("127.0.0.1:{}", free_port().unwrap()))
            .stdin(Stdio::null()),
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("migrations applied"));

    // `serve` over TLS: health SERVING once Postgres and NATS answer.
    let mut service = Service::new("agent-sessions", env(&url)).unwrap();
    service.start(&work).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(service.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut serving = false;
    for _ in 0..200 {
        let request = tonic_health::pb::HealthCheckRequest { service: "dw.agentsessions.v1.ServiceDayService".into() };
        if let Ok(response) = health.check(request).await
            && response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "agent-sessions SERVING over TLS");
    service.stop().await.unwrap();

    // The wrong CA: the binary keeps retrying, and its log says the cause at error level.
    let stranger = TestCa::new(work.path(), "other-ca").unwrap();
    let mut wrong =
        Service::new("agent-sessions", env(&verify_full(&postgres, "agent_sessions", &stranger.cert))).unwrap();
    wrong.start(&work).await.unwrap();
    let log_path = work.path().join("agent-sessions.log");
    let mut explained = None;
    for _ in 0..100 {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("postgres refused the connection")) {
            explained = Some(line.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = explained.expect("the log says why postgres is not connected");
    assert!(line.contains("\"cause\":\"tls\"") && line.contains("ERROR") && line.contains("UnknownIssuer"), "{line}");
    wrong.stop().await.unwrap();
}
