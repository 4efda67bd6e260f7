//! Browsers call the services over gRPC-Web: each of the four service binaries answers an
//! HTTP/1.1 `POST` with `content-type: application/grpc-web+proto`, a framed protobuf body and a
//! bearer token, as the `grpc-web` JavaScript client sends it; a `NOT_FOUND` reaches the browser
//! with its `google.rpc.ResourceInfo`; and CORS preflights get the allow headers from the
//! configured origin (`DW_GRPC_WEB_ALLOWED_ORIGINS`) only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use base64::Engine as _;
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as distribution;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as notifications_pb;
use dw_testkit::{TestDb, TestNamespace};
use integration_tests::{Process, binary, free_port, rid, wait_for_port};
use tonic_types::StatusExt;

const SECRET: &str = "grpc-web-secret-of-enough-length-01";
const ALLOWED_ORIGIN: &str = "https://console.example.com";
/// base64 of 32 bytes: messaging-templates' key for the tenants' provider secrets.
const PROVIDER_SECRETS_KEY: &str = "Z3JwYy13ZWItdGVzdC1wcm92aWRlci1rZXktMzJiISE=";

fn token(sub: &str, role: Role) -> String {
    integration_tests::token(SECRET, "acme", sub, role).unwrap()
}

/// What a gRPC-Web call answered: the message, or the status with its details.
type Answer<T> = Result<T, tonic::Status>;

/// One unary call as a browser's gRPC-Web client makes it, over HTTP/1.1.
async fn call<Req: prost::Message, Res: prost::Message + Default>(
    http: &reqwest::Client,
    port: u16,
    path: &str,
    bearer: &str,
    request: &Req,
) -> (reqwest::header::HeaderMap, Answer<Res>) {
    let message = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let response = http
        .post(format!("http://127.0.0.1:{port}/{path}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-user-agent", "grpc-web-javascript/0.1")
        .header("origin", ALLOWED_ORIGIN)
        .header("authorization", format!("Bearer {bearer}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11, "{path}: the call went over HTTP/1.1");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}: {response:?}");
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/grpc-web"), "{path}: answered {content_type}");
    let bytes = response.bytes().await.unwrap();
    let (messages, trailers) = frames(&bytes);
    // A trailers-only answer (an error) carries its status in the headers.
    let status_of = |name: &str| {
        trailers.get(name).cloned().or_else(|| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
    };
    let code: i32 = status_of("grpc-status").expect("a grpc-status").parse().unwrap();
    if code != 0 {
        let text = status_of("grpc-message").unwrap_or_default();
        let message = percent_decode(&text);
        let details = status_of("grpc-status-details-bin")
            .map(|b64| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')).unwrap())
            .unwrap_or_default();
        let status = tonic::Status::with_details(tonic::Code::from(code), message, details.into());
        return (headers, Err(status));
    }
    assert_eq!(messages.len(), 1, "{path}: one message in a unary answer");
    (headers, Ok(Res::decode(messages[0].as_slice()).unwrap()))
}

/// The data frames and the trailer frame (`name:value` lines) of a gRPC-Web response body.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, std::collections::HashMap<String, String>) {
    let (mut messages, mut trailers) = (Vec::new(), std::collections::HashMap::new());
    while body.len() >= 5 {
        let flag = body[0];
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + length];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n").filter(|l| !l.is_empty()) {
                let (name, value) = line.split_once(':').unwrap();
                trailers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + length..];
    }
    assert!(body.is_empty(), "no partial frame is left");
    (messages, trailers)
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let escaped = (text.as_bytes()[i] == b'%')
            .then(|| text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(text.as_bytes()[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A CORS preflight for a gRPC-Web POST from `origin`.
async fn preflight(http: &reqwest::Client, port: u16, origin: &str) -> reqwest::header::HeaderMap {
    let response = http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://127.0.0.1:{port}/dw.notifications.v1.NotificationService/GetVapidPublicKey"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success() || response.status().is_client_error(), "{response:?}");
    response.headers().clone()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

struct Started {
    _processes: Vec<Process>,
    sessions: u16,
    distribution: u16,
    messaging: u16,
    notifications: u16,
}

async fn start_services() -> Started {
    let namespaces: Vec<TestNamespace> =
        ["wsessions", "wdistribution", "wmessaging", "wnotifications"].into_iter().map(TestNamespace::new).collect();
    let mut processes = Vec::new();
    let mut grpc_ports = Vec::new();
    for (index, service) in
        ["agent-sessions", "task-distribution", "messaging-templates", "notifications"].into_iter().enumerate()
    {
        // An empty database of its own: the service applies its migrations at start.
        let db = TestDb::create(&sqlx::migrate::Migrator::DEFAULT).await.unwrap();
        let (grpc, metrics) = (free_port().unwrap(), free_port().unwrap());
        let mut command = Command::new(binary(service).unwrap());
        command
            .env("DW_JWT_SECRET", SECRET)
            .env("NATS_URL", dw_testkit::nats_url())
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .env("GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics}"))
            .env("DW_STREAM_NAME", &namespaces[index].stream_name)
            .env("DW_SUBJECT_PREFIX", &namespaces[index].subject_prefix)
            .env("DW_AGENT_SESSIONS_STREAM", &namespaces[0].stream_name)
            .env("DW_AGENT_SESSIONS_SUBJECT_PREFIX", &namespaces[0].subject_prefix)
            .env("DW_DISTRIBUTION_STREAM", &namespaces[1].stream_name)
            .env("DW_DISTRIBUTION_SUBJECT_PREFIX", &namespaces[1].subject_prefix)
            .env("DW_MESSAGING_STREAM", &namespaces[2].stream_name)
            .env("DW_MESSAGING_SUBJECT_PREFIX", &namespaces[2].subject_prefix)
            .env("DW_WEBHOOK_ADDR", format!("127.0.0.1:{}", free_port().unwrap()))
            .env("DW_PROVIDER_SECRETS_KEY", PROVIDER_SECRETS_KEY)
            // Two origins, one of them the console's, with blanks a person may type.
            .env("DW_GRPC_WEB_ALLOWED_ORIGINS", format!(" http://localhost:5173 , {ALLOWED_ORIGIN}"));
        processes.push(Process::spawn(&mut command).unwrap());
        grpc_ports.push(grpc);
    }
    for port in &grpc_ports {
        wait_for_port(*port).await.unwrap();
    }
    Started {
        _processes: processes,
        sessions: grpc_ports[0],
        distribution: grpc_ports[1],
        messaging: grpc_ports[2],
        notifications: grpc_ports[3],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_every_service_over_grpc_web_from_an_allowed_origin_only() {
    let services = start_services().await;
    let http = reqwest::Client::new();
    let manager = token("boss", Role::Manager);

    // agent-sessions: a manager registers an agent and reads it back.
    let register =
        sessions::RegisterAgentRequest { request_id: rid(), agent_id: "ana".into(), display_name: "Ana".into() };
    let (_, registered) = call::<_, sessions::Agent>(
        &http,
        services.sessions,
        "dw.agentsessions.v1.AgentAdminService/RegisterAgent",
        &manager,
        &register,
    )
    .await;
    assert_eq!(registered.unwrap().display_name, "Ana");
    let (headers, agent) = call::<_, sessions::Agent>(
        &http,
        services.sessions,
        "dw.agentsessions.v1.AgentAdminService/GetAgent",
        &manager,
        &sessions::GetAgentRequest { agent_id: "ana".into() },
    )
    .await;
    assert_eq!(agent.unwrap().agent_id, "ana");
    assert_eq!(header(&headers, "access-control-allow-origin"), ALLOWED_ORIGIN, "{headers:?}");
    let exposed = header(&headers, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(name), "the browser may read {name}: {exposed}");
    }

    // An agent that does not exist: NOT_FOUND naming it, readable by the browser.
    let (_, missing) = call::<_, sessions::Agent>(
        &http,
        services.sessions,
        "dw.agentsessions.v1.AgentAdminService/GetAgent",
        &manager,
        &sessions::GetAgentRequest { agent_id: "nobody".into() },
    )
    .await;
    let status = missing.expect_err("no such agent");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let resource = status.get_details_resource_info().expect("a ResourceInfo");
    assert_eq!(
        (resource.resource_type.as_str(), resource.resource_name.as_str()),
        ("dw.agentsessions.v1.Agent", "nobody")
    );
    assert!(resource.description.contains("nobody"), "{resource:?}");

    // task-distribution: a CRM creates a task and gets its protocol.
    let (_, task) = call::<_, distribution::Task>(
        &http,
        services.distribution,
        "dw.distribution.v1.DistributionService/CreateTask",
        &token("crm-bot", Role::Service),
        &integration_tests::support_chat_task("Client", "+5511900000123", "web"),
    )
    .await;
    let task = task.unwrap();
    assert!(!task.protocol.is_empty() && !task.task_id.is_empty(), "{task:?}");

    // messaging-templates: the template list (empty) and a template that does not exist.
    let (_, templates) = call::<_, messaging::ListTemplatesResponse>(
        &http,
        services.messaging,
        "dw.messaging.v1.TemplateService/ListTemplates",
        &manager,
        &messaging::ListTemplatesRequest::default(),
    )
    .await;
    assert!(templates.unwrap().templates.is_empty());
    let unknown = uuid::Uuid::now_v7().to_string();
    let (_, template) = call::<_, messaging::Template>(
        &http,
        services.messaging,
        "dw.messaging.v1.TemplateService/GetTemplate",
        &manager,
        &messaging::GetTemplateRequest { template_id: unknown.clone() },
    )
    .await;
    let status = template.expect_err("no such template");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let resource = status.get_details_resource_info().expect("a ResourceInfo");
    assert_eq!(
        (resource.resource_type.as_str(), resource.resource_name.as_str()),
        ("dw.messaging.v1.Template", unknown.as_str())
    );

    // notifications: the VAPID key a browser subscribes to pushes with.
    let (_, key) = call::<_, notifications_pb::GetVapidPublicKeyResponse>(
        &http,
        services.notifications,
        "dw.notifications.v1.NotificationService/GetVapidPublicKey",
        &token("ana", Role::Agent),
        &notifications_pb::GetVapidPublicKeyRequest {},
    )
    .await;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.unwrap().public_key).unwrap();
    assert_eq!((key.len(), key[0]), (65, 4), "an uncompressed P-256 point");

    // Preflights: the console's origin may call, with the headers a gRPC-Web client sends.
    for port in [services.sessions, services.distribution, services.messaging, services.notifications] {
        let allowed = preflight(&http, port, ALLOWED_ORIGIN).await;
        assert_eq!(header(&allowed, "access-control-allow-origin"), ALLOWED_ORIGIN, "{allowed:?}");
        assert!(header(&allowed, "access-control-allow-methods").contains("POST"), "{allowed:?}");
        let allowed_headers = header(&allowed, "access-control-allow-headers").to_ascii_lowercase();
        for name in ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"] {
            assert!(allowed_headers.contains(name), "{name} may be sent: {allowed_headers}");
        }
        assert_ne!(header(&allowed, "access-control-allow-credentials"), "true", "no cookies: {allowed:?}");
        // Any other origin is not allowed, so its browser refuses the call.
        let refused = preflight(&http, port, "https://evil.example.net").await;
        assert!(refused.get("access-control-allow-origin").is_none(), "{refused:?}");
    }
}
