//! Secured NATS: a nats-server of the test's own with JetStream, TLS that verifies client
//! certificates (all made here with rcgen) and NKey users (a key pair made here). A client
//! without the CA, the client certificate or the NKey is refused, and says why; one with them
//! publishes and consumes through JetStream. agent-sessions, over TLS to Postgres and secured
//! NATS, serves a command and its relay publishes the event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use dw_grpc_kit::config::{NatsAuth, NatsClientCert, NatsSecurity, NatsTls, nats_nkey};
use dw_grpc_kit::startup::{nats_connect_options, nats_failure};
use dw_proto::agentsessions::v1 as pb;
use integration_tests::cluster::{Nats, NatsSecured, Postgres, PostgresTls, Service, WorkDir};
use integration_tests::tls::{CertFiles, TestCa, write_private};
use integration_tests::{authed, rid, token};
use tokio_stream::StreamExt;

const SECRET: &str = "nats-secured-test-secret-of-32-bytes!";

/// The next message of a JetStream consumer, within 10 s.
async fn next_message(messages: &mut jetstream::consumer::pull::Ordered) -> jetstream::Message {
    tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message within 10 s")
        .expect("the stream goes on")
        .expect("a message")
}

fn seed_of(pair: &nkeys::KeyPair) -> String {
    pair.seed().expect("a seed")
}

fn security(ca: Option<&Path>, client: Option<&CertFiles>, seed: Option<&str>) -> NatsSecurity {
    let tls = NatsTls {
        ca_file: ca.map(Path::to_owned),
        client_cert: client.map(|c| NatsClientCert { cert_file: c.cert.clone(), key_file: c.key.clone() }),
        required: ca.is_some() || client.is_some(),
    };
    let auth = match seed {
        Some(seed) => nats_nkey(seed.to_owned().into()).unwrap(),
        None => NatsAuth::Anonymous,
    };
    NatsSecurity { tls, auth }
}

async fn connect(url: &str, security: &NatsSecurity) -> Result<async_nats::Client, async_nats::ConnectError> {
    nats_connect_options(security).unwrap().connection_timeout(Duration::from_secs(3)).connect(url).await
}

struct Secured {
    work: WorkDir,
    ca: TestCa,
    client_cert: CertFiles,
    seed: String,
    nats: Nats,
}

async fn secured_nats(label: &str) -> Secured {
    let work = WorkDir::new(label).unwrap();
    let ca = TestCa::new(work.path(), "ca").unwrap();
    let server = ca.server("nats-server").unwrap();
    let client_cert = ca.client("nats-client", "agent-sessions").unwrap();
    let user = nkeys::KeyPair::new_user();
    let seed = seed_of(&user);
    let client = security(Some(&ca.cert), Some(&client_cert), Some(&seed));
    let nats = Nats::start_secured(
        &work,
        NatsSecured { server: &server, ca: &ca.cert, verify_clients: true, nkey_users: &[user.public_key()], client },
    )
    .await
    .unwrap();
    Secured { work, ca, client_cert, seed, nats }
}

#[tokio::test]
async fn only_a_client_with_the_ca_its_certificate_and_its_nkey_gets_in_and_uses_jetstream() {
    let s = secured_nats("nats-secured").await;
    let url = s.nats.url();

    // No CA (the system roots): the server's certificate is not trusted.
    let untrusted = connect(&url, &security(None, None, Some(&s.seed))).await.unwrap_err();
    assert_eq!(nats_failure(&untrusted).0, "tls", "{untrusted}");
    // TLS right but no credentials: not authorized, and said so.
    let anonymous = connect(&url, &security(Some(&s.ca.cert), Some(&s.client_cert), None)).await.unwrap_err();
    assert_eq!(nats_failure(&anonymous).0, "authorization", "{anonymous}");
    // Another NKey than the server's users.
    let stranger = seed_of(&nkeys::KeyPair::new_user());
    let unknown = connect(&url, &security(Some(&s.ca.cert), Some(&s.client_cert), Some(&stranger))).await;
    assert!(unknown.is_err(), "an unknown nkey is refused");
    // No client certificate where the server verifies clients.
    let no_cert = connect(&url, &security(Some(&s.ca.cert), None, Some(&s.seed))).await;
    assert!(no_cert.is_err(), "a client without a certificate is refused");
    // DW_NATS_TLS_REQUIRED refuses a server that offers no TLS (the shared plaintext one).
    let plaintext = connect(&dw_testkit::nats_url(), &security(Some(&s.ca.cert), None, None)).await.unwrap_err();
    assert_eq!(nats_failure(&plaintext).0, "tls", "{plaintext}");

    // Everything given: JetStream works.
    let client = connect(&url, &security(Some(&s.ca.cert), Some(&s.client_cert), Some(&s.seed))).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "SECURED".into(),
            subjects: vec!["secured.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    js.publish("secured.hello", "over tls".into()).await.unwrap().await.unwrap();
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = next_message(&mut messages).await;
    assert_eq!(&message.payload[..], b"over tls");
    drop(s.work);
}

#[tokio::test]
async fn agent_sessions_serves_and_publishes_over_tls_postgres_and_secured_nats() {
    let s = secured_nats("nats-secured-binary").await;
    let server = s.ca.server("postgres-server").unwrap();
    let postgres = Postgres::start_with_tls(&s.work, PostgresTls { server: &server, cert_login: None }).await.unwrap();
    postgres.create_database("agent_sessions").await.unwrap();
    let database_url =
        format!("{}?sslmode=verify-full&sslrootcert={}", postgres.url("agent_sessions"), s.ca.cert.display());
    let seed_file = s.work.path().join("nkey.seed");
    write_private(&seed_file, &format!("{}\n", s.seed)).unwrap();
    let env = vec![
        ("DW_JWT_SECRET".to_owned(), SECRET.to_owned()),
        ("DATABASE_URL".to_owned(), database_url),
        ("NATS_URL".to_owned(), s.nats.url()),
        ("DW_NATS_TLS_CA_FILE".to_owned(), s.ca.cert.display().to_string()),
        ("DW_NATS_TLS_CERT_FILE".to_owned(), s.client_cert.cert.display().to_string()),
        ("DW_NATS_TLS_KEY_FILE".to_owned(), s.client_cert.key.display().to_string()),
        ("DW_NATS_NKEY_SEED_FILE".to_owned(), seed_file.display().to_string()),
        ("DW_STREAM_MAX_AGE".to_owned(), "7d".to_owned()),
        ("DW_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let mut service = Service::new("agent-sessions", env).unwrap();
    service.start(&s.work).await.unwrap();

    // A command, retried until the service has connected to both.
    let channel = tonic::transport::Endpoint::from_shared(service.endpoint()).unwrap().connect().await.unwrap();
    let mut admin = pb::agent_admin_service_client::AgentAdminServiceClient::new(channel);
    let manager = token(SECRET, "demo", "manager-1", dw_auth::Role::Manager).unwrap();
    let register = pb::RegisterAgentRequest { request_id: rid(), agent_id: "ana".into(), display_name: "Ana".into() };
    let mut registered = false;
    for _ in 0..200 {
        if admin.register_agent(authed(&manager, register.clone())).await.is_ok() {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "agent-sessions answers over TLS Postgres and secured NATS");

    // The relay published the event into the stream it created with the configured limit.
    let client =
        connect(&s.nats.url(), &security(Some(&s.ca.cert), Some(&s.client_cert), Some(&s.seed))).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream("DW_AGENT_SESSIONS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.max_age, Duration::from_secs(7 * 86_400));
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = next_message(&mut messages).await;
    let headers = message.headers.clone().unwrap();
    assert_eq!(headers.get("ce-source").unwrap().as_str(), "agent-sessions");
    assert_eq!(headers.get("dw-tenant").unwrap().as_str(), "demo");
    service.stop().await.unwrap();

    // The seed is nowhere in the service's log (its configuration is logged at start).
    let log = std::fs::read_to_string(s.work.path().join("agent-sessions.log")).unwrap();
    assert!(log.contains("nats_security") && log.contains("connected to nats"), "{log}");
    assert!(!log.contains(&s.seed), "the NKey seed is not logged");
}
