//! One trace across services: a gRPC call to agent-sessions carrying a `traceparent`, its event
//! appended and relayed over JetStream, consumed by task-distribution, which assigns a waiting
//! task and relays that event in turn, consumed by notifications, which pushes the assignment to
//! the agent's browser (a Web Push service run by this test). The three binaries export spans
//! over OTLP to a receiver run by this test on 127.0.0.1; the spans share the caller's trace id
//! and link parent to child across the services.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as distribution;
use dw_proto::notifications::v1 as notifications_pb;
use dw_testkit::{TestDb, TestNamespace};
use integration_tests::cluster::signal_and_wait;
use integration_tests::{Process, authed, binary, free_port, rid, wait_for_port};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const SECRET: &str = "integration-secret-of-enough-length";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A received span: its service (resource `service.name` and `service.version`), name, ids.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    version: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// String and integer attributes, as text.
    attributes: std::collections::HashMap<String, String>,
    /// The span's status code (0 unset, 1 ok, 2 error).
    status: i32,
}

fn attribute_text(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &value.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        Some(Value::BoolValue(b)) => Some(b.to_string()),
        _ => None,
    }
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let attribute = |key: &str| {
                resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == key)
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                            Some(s.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_default()
            };
            let (service, version) = (attribute("service.name"), attribute("service.version"));
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        version: version.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        status: span.status.as_ref().map_or(0, |status| status.code),
                        attributes: span
                            .attributes
                            .iter()
                            .filter_map(|kv| Some((kv.key.clone(), attribute_text(kv.value.as_ref()?)?)))
                            .collect(),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn token(sub: &str, role: Role) -> String {
    integration_tests::token(SECRET, "acme", sub, role).unwrap()
}

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_ends_and_a_task_is_assigned_in_one_trace_across_services() {
    // The OTLP receiver.
    let receiver = Receiver::default();
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    let server = receiver.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(otlp))
            .await
    });

    // The Web Push service of ana's browser: it accepts every push.
    let pushed = Arc::new(Mutex::new(0usize));
    let push_traceparents = Arc::new(Mutex::new(Vec::<String>::new()));
    let push_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let push_url = format!("http://{}/push/ana", push_listener.local_addr().unwrap());
    let (counter, traceparents) = (pushed.clone(), push_traceparents.clone());
    let push_app = axum::Router::new().route(
        "/push/ana",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (counter, traceparents) = (counter.clone(), traceparents.clone());
            async move {
                if let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
                    traceparents.lock().unwrap().push(traceparent.to_owned());
                }
                *counter.lock().unwrap() += 1;
                axum::http::StatusCode::CREATED
            }
        }),
    );
    tokio::spawn(async move { axum::serve(push_listener, push_app).await });

    let sessions_db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
    let notifications_db = TestDb::create(&notifications::MIGRATOR).await.unwrap();
    let distribution_db = TestDb::create(&task_distribution::MIGRATOR).await.unwrap();
    let (sessions_ns, distribution_ns, messaging_ns) =
        (TestNamespace::new("tsessions"), TestNamespace::new("tdistribution"), TestNamespace::new("tmessaging"));
    let notifications_ns = TestNamespace::new("tnotifications");
    let ports: Vec<u16> = (0..6).map(|_| free_port().unwrap()).collect();
    let common = |command: &mut Command| {
        command
            .env("DW_JWT_SECRET", SECRET)
            .env("NATS_URL", dw_testkit::nats_url())
            .env("RUST_LOG", "warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    };
    let mut command = Command::new(binary("agent-sessions").unwrap());
    common(&mut command);
    command
        .env("DATABASE_URL", &sessions_db.url)
        .env("GRPC_ADDR", format!("127.0.0.1:{}", ports[0]))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", ports[1]))
        .env("DW_STREAM_NAME", &sessions_ns.stream_name)
        .env("DW_SUBJECT_PREFIX", &sessions_ns.subject_prefix);
    let mut sessions_process = Process::spawn(&mut command).unwrap();
    let mut command = Command::new(binary("task-distribution").unwrap());
    common(&mut command);
    command
        .env("DATABASE_URL", &distribution_db.url)
        .env("GRPC_ADDR", format!("127.0.0.1:{}", ports[2]))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", ports[3]))
        .env("DW_STREAM_NAME", &distribution_ns.stream_name)
        .env("DW_SUBJECT_PREFIX", &distribution_ns.subject_prefix)
        .env("DW_AGENT_SESSIONS_STREAM", &sessions_ns.stream_name)
        .env("DW_AGENT_SESSIONS_SUBJECT_PREFIX", &sessions_ns.subject_prefix)
        .env("DW_MESSAGING_STREAM", &messaging_ns.stream_name)
        .env("DW_MESSAGING_SUBJECT_PREFIX", &messaging_ns.subject_prefix);
    let mut distribution_process = Process::spawn(&mut command).unwrap();
    let mut command = Command::new(binary("notifications").unwrap());
    common(&mut command);
    // A deployment's name wins over the service's own (the others keep their default).
    command
        .env("OTEL_SERVICE_NAME", "notifications-eu")
        .env("DATABASE_URL", &notifications_db.url)
        .env("GRPC_ADDR", format!("127.0.0.1:{}", ports[4]))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", ports[5]))
        .env("DW_STREAM_NAME", &notifications_ns.stream_name)
        .env("DW_SUBJECT_PREFIX", &notifications_ns.subject_prefix)
        .env("DW_AGENT_SESSIONS_STREAM", &sessions_ns.stream_name)
        .env("DW_AGENT_SESSIONS_SUBJECT_PREFIX", &sessions_ns.subject_prefix)
        .env("DW_DISTRIBUTION_STREAM", &distribution_ns.stream_name)
        .env("DW_DISTRIBUTION_SUBJECT_PREFIX", &distribution_ns.subject_prefix)
        .env("DW_MESSAGING_STREAM", &messaging_ns.stream_name)
        .env("DW_MESSAGING_SUBJECT_PREFIX", &messaging_ns.subject_prefix)
        .env("DW_PUSH_ALLOWED_HOSTS", "127.0.0.1")
        .env("DW_PUSH_POLL_MS", "100");
    let mut notifications_process = Process::spawn(&mut command).unwrap();
    wait_for_port(ports[0]).await.unwrap();
    wait_for_port(ports[2]).await.unwrap();
    wait_for_port(ports[4]).await.unwrap();

    // ana works in support and goes on a break; a task then waits for her.
    let manager = token("boss", Role::Manager);
    let ana = token("ana", Role::Agent);
    let mut admin = sessions::agent_admin_service_client::AgentAdminServiceClient::new(channel(ports[0]).await);
    admin
        .update_tenant_settings(authed(
            &manager,
            sessions::UpdateTenantSettingsRequest {
                request_id: rid(),
                update_mask: None,
                expected_version: None,
                settings: Some(sessions::TenantSettings { auto_distribution_enabled: true, ..Default::default() }),
            },
        ))
        .await
        .unwrap();
    admin
        .register_agent(authed(
            &manager,
            sessions::RegisterAgentRequest { request_id: rid(), agent_id: "ana".into(), display_name: "Ana".into() },
        ))
        .await
        .unwrap();
    admin
        .link_department(authed(
            &manager,
            sessions::LinkDepartmentRequest {
                request_id: rid(),
                agent_id: "ana".into(),
                department_id: "support".into(),
            },
        ))
        .await
        .unwrap();
    let mut day = sessions::service_day_service_client::ServiceDayServiceClient::new(channel(ports[0]).await);
    day.start_service_day(authed(&ana, sessions::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    day.start_break(authed(&ana, sessions::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
        .await
        .unwrap();
    let mut tasks = distribution::distribution_service_client::DistributionServiceClient::new(channel(ports[2]).await);
    let service = token("crm-bot", Role::Service);
    let mut task = None;
    for _ in 0..200 {
        // Until distribution has seen the break (before that, ana would get the task).
        let created = tasks
            .create_task(authed(&service, integration_tests::support_chat_task("Client", "+5511900000123", "")))
            .await
            .unwrap()
            .into_inner();
        // Queued because distribution has seen the break (not because it has not yet seen her day
        // start, which would assign the task in another trace).
        if created.status == distribution::TaskStatus::Queued as i32 {
            let explained = tasks
                .explain_assignment(authed(
                    &token("boss", Role::Manager),
                    distribution::ExplainAssignmentRequest { task_id: created.task_id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            let on_break = explained
                .decisions
                .iter()
                .flat_map(|d| &d.candidates)
                .any(|c| c.agent_id == "ana" && c.exclusion == distribution::Exclusion::OnBreak as i32);
            if on_break {
                task = Some(created);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = task.expect("a task waiting while ana is on a break");

    // ana's browser subscribed to pushes.
    let browser_secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let mut browser =
        notifications_pb::notification_service_client::NotificationServiceClient::new(channel(ports[4]).await);
    browser
        .enable_browser_notifications(authed(
            &ana,
            notifications_pb::EnableBrowserNotificationsRequest {
                request_id: rid(),
                endpoint: push_url.clone(),
                p256dh: URL_SAFE_NO_PAD.encode(browser_secret.public_key().to_sec1_bytes()),
                auth: URL_SAFE_NO_PAD.encode(*b"trace-test-auth!"),
            },
        ))
        .await
        .unwrap();

    // The traced action: ana ends her break, with the caller's trace context.
    let mut end = authed(&ana, sessions::EndBreakRequest { request_id: rid(), confirm: true });
    end.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01").parse().unwrap());
    day.end_break(end).await.unwrap();
    let manager_view = token("boss", Role::Manager);
    // A refused RPC in the same trace: its span records the gRPC code; per the OpenTelemetry gRPC
    // conventions a server span is an error only for the server's own failures (INTERNAL,
    // UNAVAILABLE, …), not for a refused request.
    let mut missing = authed(
        &manager_view,
        distribution::GetTaskRequest {
            key: Some(distribution::get_task_request::Key::TaskId(uuid::Uuid::now_v7().to_string())),
        },
    );
    missing.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b8-01").parse().unwrap());
    assert_eq!(tasks.get_task(missing).await.unwrap_err().code(), tonic::Code::NotFound);
    for _ in 0..200 {
        let current = tasks
            .get_task(authed(
                &manager_view,
                distribution::GetTaskRequest {
                    key: Some(distribution::get_task_request::Key::TaskId(task.task_id.clone())),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if current.agent_id == "ana" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Up to 90 s: on a machine busy compiling, one push attempt can time out (10 s) and be retried.
    for _ in 0..1800 {
        if *pushed.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(*pushed.lock().unwrap() > 0, "the assignment was pushed to ana's browser");

    // Stopping flushes the exporters.
    signal_and_wait(&mut sessions_process, "TERM").await.unwrap();
    signal_and_wait(&mut distribution_process, "TERM").await.unwrap();
    signal_and_wait(&mut notifications_process, "TERM").await.unwrap();
    let total = receiver.spans.lock().unwrap().len();
    let spans: Vec<Span> = receiver.spans.lock().unwrap().iter().filter(|s| s.trace_id == TRACE_ID).cloned().collect();
    let by = |service: &str, name: &str| {
        spans.iter().filter(|s| s.service == service && s.name == name).cloned().collect::<Vec<_>>()
    };

    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["agent-sessions", "notifications-eu", "task-distribution"].into(), "{spans:#?}");
    assert!(spans.iter().all(|s| s.version == env!("CARGO_PKG_VERSION")), "service.version on every span: {spans:#?}");

    let failed = by("task-distribution", "dw.distribution.v1.DistributionService/GetTask");
    let failed: Vec<&Span> = failed.iter().filter(|s| s.parent_span_id == "00f067aa0ba902b8").collect();
    assert_eq!(failed.len(), 1, "the refused RPC's span: {spans:#?}");
    assert_ne!(failed[0].status, 2, "a refused request is not the server's error: {:?}", failed[0]);
    assert_eq!(
        failed[0].attributes.get("rpc.response.status_code").map(String::as_str),
        Some("NOT_FOUND"),
        "{:?}",
        failed[0]
    );
    let ok = by("agent-sessions", "dw.agentsessions.v1.ServiceDayService/EndBreak");
    assert!(ok.iter().all(|s| s.status != 2), "a succeeded RPC's span is no error: {ok:?}");

    let rpc = by("agent-sessions", "dw.agentsessions.v1.ServiceDayService/EndBreak");
    assert_eq!(rpc.len(), 1, "the RPC span continues the caller's trace ({total} spans received): {spans:#?}");
    assert_eq!(rpc[0].parent_span_id, "00f067aa0ba902b7");
    let published = by("agent-sessions", "relay publish event");
    assert!(!published.is_empty(), "the relay continues it: {spans:#?}");
    let consumed = by("task-distribution", "consume");
    assert!(
        consumed.iter().any(|c| published.iter().any(|p| p.span_id == c.parent_span_id)),
        "task-distribution's consumer is a child of agent-sessions' relay span: {spans:#?}"
    );
    let assigned = by("task-distribution", "relay publish event");
    assert!(
        assigned.iter().any(|a| consumed.iter().any(|c| c.span_id == a.parent_span_id)),
        "the assignment it made is relayed in the same trace: {spans:#?}"
    );
    let notified = by("notifications-eu", "consume");
    assert!(
        notified.iter().any(|n| assigned.iter().any(|a| a.span_id == n.parent_span_id)),
        "notifications' consumer is a child of task-distribution's relay span: {spans:#?}"
    );
    let push = by("notifications-eu", "web push send");
    assert!(
        push.iter().any(|p| notified.iter().any(|n| n.span_id == p.parent_span_id)),
        "the Web Push is sent in the same trace, as a child of the consumer that queued it: {spans:#?}"
    );

    // The spans speak the OpenTelemetry conventions SREs query by.
    let attribute = |span: &Span, key: &str| span.attributes.get(key).cloned().unwrap_or_default();
    for span in published.iter().chain(&assigned) {
        assert_eq!(attribute(span, "messaging.system"), "nats", "{span:#?}");
        assert_eq!(attribute(span, "messaging.operation.type"), "publish", "{span:#?}");
        assert!(!attribute(span, "messaging.message.id").is_empty(), "{span:#?}");
    }
    assert!(attribute(&published[0], "messaging.destination.name").starts_with(&sessions_ns.subject_prefix));
    for span in consumed.iter().chain(&notified) {
        assert_eq!(attribute(span, "messaging.system"), "nats", "{span:#?}");
        assert_eq!(attribute(span, "messaging.operation.type"), "process", "{span:#?}");
        assert!(!attribute(span, "messaging.consumer.group.name").is_empty(), "{span:#?}");
        assert!(!attribute(span, "messaging.destination.name").is_empty(), "{span:#?}");
        assert!(!attribute(span, "messaging.message.id").is_empty(), "{span:#?}");
    }
    let delivered = push.iter().find(|p| attribute(p, "http.response.status_code") == "201").expect("a 201 push");
    assert_eq!(attribute(delivered, "http.request.method"), "POST");
    assert_eq!(attribute(delivered, "server.address"), "127.0.0.1");
    // The push service got the push span's context.
    let traceparents = push_traceparents.lock().unwrap().clone();
    assert!(
        traceparents.iter().any(|t| t == &format!("00-{TRACE_ID}-{}-01", delivered.span_id)),
        "the push request carries its span's traceparent: {traceparents:?}"
    );
}
