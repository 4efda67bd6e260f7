//! TLS on the gRPC port: agent-sessions with a server certificate of the test's own CA (made here
//! with rcgen) serves clients that trust the CA, and not plaintext clients or clients that do not
//! trust it; with a client CA (mTLS) only clients with a certificate that CA signed get past the
//! handshake. `dwctl` reaches it over https:// with `--ca-file` (and `--cert-file`/`--key-file`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dw_proto::agentsessions::v1 as pb;
use dw_testkit::{TestDb, TestNamespace};
use integration_tests::cluster::{Service, WorkDir};
use integration_tests::tls::{CertFiles, TestCa};
use integration_tests::{authed, binary, rid, run_ok, token};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const SECRET: &str = "grpc-tls-test-secret-of-32-bytes!!";

struct Running {
    service: Service,
    _db: TestDb,
}

/// agent-sessions with `tls_env` added to its environment.
async fn agent_sessions(work: &WorkDir, tls_env: Vec<(&str, &Path)>) -> Running {
    let db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("grpctls");
    let mut env = vec![
        ("DW_JWT_SECRET".to_owned(), SECRET.to_owned()),
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("NATS_URL".to_owned(), dw_testkit::nats_url()),
        ("DW_STREAM_NAME".to_owned(), namespace.stream_name.clone()),
        ("DW_SUBJECT_PREFIX".to_owned(), namespace.subject_prefix.clone()),
        ("RUST_LOG".to_owned(), "info,dw_grpc_kit::grpc_tls=debug".to_owned()),
    ];
    env.extend(tls_env.into_iter().map(|(name, path)| (name.to_owned(), path.display().to_string())));
    let mut service = Service::new("agent-sessions", env).unwrap();
    service.start(work).await.unwrap();
    Running { service, _db: db }
}

fn https(service: &Service) -> String {
    format!("https://127.0.0.1:{}", service.grpc_port)
}

/// A channel to `addr`: over TLS trusting `ca` (the system's roots when `None`), presenting
/// `client` when given.
async fn connect(
    addr: &str,
    ca: Option<&Path>,
    client: Option<&CertFiles>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = match ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap())),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(client) = client {
        tls =
            tls.identity(Identity::from_pem(std::fs::read(&client.cert).unwrap(), std::fs::read(&client.key).unwrap()));
    }
    let endpoint = Endpoint::from_shared(addr.to_owned()).unwrap().connect_timeout(Duration::from_secs(3));
    let endpoint = if addr.starts_with("https://") { endpoint.tls_config(tls).unwrap() } else { endpoint };
    endpoint.connect().await
}

/// Whether a health check over `channel` answers (any status), within 3 s.
async fn health_answers(channel: Channel) -> Result<ServingStatus, String> {
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(response)) => Ok(response.into_inner().status()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("timed out".into()),
    }
}

/// A client that cannot even start a conversation: the connection or the first call fails.
async fn refused(addr: &str, ca: Option<&Path>, client: Option<&CertFiles>) -> bool {
    match connect(addr, ca, client).await {
        Err(_) => true,
        Ok(channel) => health_answers(channel).await.is_err(),
    }
}

/// Registers `agent` over `channel`, retried until the service has connected to its dependencies.
async fn register(channel: Channel, agent: &str) {
    let mut admin = pb::agent_admin_service_client::AgentAdminServiceClient::new(channel);
    let manager = token(SECRET, "demo", "manager-1", dw_auth::Role::Manager).unwrap();
    let request = pb::RegisterAgentRequest { request_id: rid(), agent_id: agent.into(), display_name: agent.into() };
    let mut last = None;
    for _ in 0..200 {
        match admin.register_agent(authed(&manager, request.clone())).await {
            Ok(_) => return,
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent-sessions never registered {agent} over TLS: {last:?}");
}

/// `dwctl --addr <addr> <tls args> --json admin get-agent --agent <agent>`.
fn dwctl_get_agent(addr: &str, tls_args: &[&str], agent: &str) -> Command {
    let mut command = Command::new(binary("dwctl").unwrap());
    command
        .env_remove("DW_TOKEN")
        .env_remove("DWCTL_TOKEN")
        .env_remove("DWCTL_CA_FILE")
        .env_remove("DWCTL_CERT_FILE")
        .env_remove("DWCTL_KEY_FILE")
        .env("DW_JWT_SECRET", SECRET)
        .args(["--addr", addr, "--tenant", "demo", "--sub", "manager-1", "--role", "manager"])
        .args(tls_args)
        .args(["--json", "admin", "get-agent", "--agent", agent]);
    command
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_service_with_tls_serves_clients_that_trust_its_ca_and_dwctl_over_https() {
    let work = WorkDir::new("grpc-tls").unwrap();
    let ca = TestCa::new(work.path(), "ca").unwrap();
    let server = ca.server("agent-sessions").unwrap();
    let running =
        agent_sessions(&work, vec![("DW_GRPC_TLS_CERT_FILE", &server.cert), ("DW_GRPC_TLS_KEY_FILE", &server.key)])
            .await;
    let addr = https(&running.service);

    // Trusting the CA: health (same port) and RPCs work.
    register(connect(&addr, Some(&ca.cert), None).await.unwrap(), "ana").await;
    let status = health_answers(connect(&addr, Some(&ca.cert), None).await.unwrap()).await.unwrap();
    assert_eq!(status, ServingStatus::Serving);

    // A plaintext client, and one that does not trust the CA, get nothing.
    assert!(refused(&running.service.endpoint(), None, None).await, "plaintext is refused on a TLS port");
    assert!(refused(&addr, None, None).await, "a client without the CA does not trust the server");
    let other = TestCa::new(work.path(), "other").unwrap();
    assert!(refused(&addr, Some(&other.cert), None).await, "a client trusting another CA is refused");

    // dwctl over https:// with --ca-file, and with the CA in DWCTL_CA_FILE.
    let output = run_ok(&mut dwctl_get_agent(&addr, &["--ca-file", path(&ca.cert)], "ana")).unwrap();
    let agent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(agent["agentId"], "ana", "{agent}");
    run_ok(dwctl_get_agent(&addr, &[], "ana").env("DWCTL_CA_FILE", &ca.cert)).unwrap();
    // Without the CA it fails (exit status 1) and says it could not connect.
    let untrusted = dwctl_get_agent(&addr, &[], "ana").output().unwrap();
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("cannot connect"), "{untrusted:?}");

    let mut service = running.service;
    service.stop().await.unwrap();
    let log = std::fs::read_to_string(work.path().join("agent-sessions.log")).unwrap();
    assert!(log.contains("grpc tls on") && log.contains(r#""grpc_tls":"tls""#), "{log}");
    let key = std::fs::read_to_string(&server.key).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(!log.contains(key_body), "the private key is not logged");
}

#[tokio::test]
async fn with_mtls_only_clients_with_a_certificate_of_the_client_ca_get_in() {
    let work = WorkDir::new("grpc-mtls").unwrap();
    let ca = TestCa::new(work.path(), "ca").unwrap();
    let server = ca.server("agent-sessions").unwrap();
    let clients = TestCa::new(work.path(), "clients").unwrap();
    let dwctl_cert = clients.client("dwctl", "dwctl").unwrap();
    let stranger = TestCa::new(work.path(), "stranger").unwrap().client("stranger-client", "dwctl").unwrap();
    let running = agent_sessions(
        &work,
        vec![
            ("DW_GRPC_TLS_CERT_FILE", &server.cert),
            ("DW_GRPC_TLS_KEY_FILE", &server.key),
            ("DW_GRPC_TLS_CLIENT_CA_FILE", &clients.cert),
        ],
    )
    .await;
    let addr = https(&running.service);

    // A certificate of the client CA: in.
    register(connect(&addr, Some(&ca.cert), Some(&dwctl_cert)).await.unwrap(), "bia").await;

    // No certificate, or one another CA signed: refused at the handshake.
    assert!(refused(&addr, Some(&ca.cert), None).await, "a client without a certificate is refused");
    assert!(refused(&addr, Some(&ca.cert), Some(&stranger)).await, "a certificate of another CA is refused");

    // dwctl with its client certificate; without one it fails.
    let tls_args =
        ["--ca-file", path(&ca.cert), "--cert-file", path(&dwctl_cert.cert), "--key-file", path(&dwctl_cert.key)];
    let output = run_ok(&mut dwctl_get_agent(&addr, &tls_args, "bia")).unwrap();
    let agent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(agent["agentId"], "bia", "{agent}");
    let without = dwctl_get_agent(&addr, &["--ca-file", path(&ca.cert)], "bia").output().unwrap();
    // (The server closes the connection: a failure with a message, never a silent "broken pipe".)
    assert_eq!(without.status.code(), Some(1), "{without:?}");
    assert!(!without.stderr.is_empty(), "{without:?}");
    // --cert-file alone is a usage error.
    let half = dwctl_get_agent(&addr, &["--ca-file", path(&ca.cert), "--cert-file", path(&dwctl_cert.cert)], "bia")
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(2), "{half:?}");

    let mut service = running.service;
    service.stop().await.unwrap();
    let log = std::fs::read_to_string(work.path().join("agent-sessions.log")).unwrap();
    assert!(log.contains(r#""grpc_tls":"mtls""#), "{log}");
    assert!(log.contains("grpc tls handshake refused"), "refusals are logged at debug: {log}");
}
