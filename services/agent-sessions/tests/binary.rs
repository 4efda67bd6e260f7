//! End to end through the real `agent-sessions` binary: health and reflection, a full agent day,
//! its events on JetStream with their envelope, and a graceful SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use common::{SECRET, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::service_day_service_client::ServiceDayServiceClient;
use dw_testkit::{TestDb, TestNamespace};
use futures::StreamExt;
use tonic::transport::Channel;

/// Below the kernel's ephemeral range ([`dw_testkit::free_port`]): a port the binary binds later
/// must not become an outgoing connection's meanwhile.
fn free_port() -> u16 {
    dw_testkit::free_port().expect("free port")
}

struct Binary {
    child: std::process::Child,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn wait_for_channel(addr: &str) -> Channel {
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(addr.to_owned()).expect("uri").connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent-sessions binary did not listen on {addr}");
}

#[tokio::test]
async fn a_full_agent_day_through_the_running_binary() {
    let db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("binary");
    let (grpc_port, metrics_port) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_agent-sessions"))
        .env("DW_JWT_SECRET", SECRET)
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", dw_testkit::nats_url())
        .env("GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("DW_STREAM_NAME", &namespace.stream_name)
        .env("DW_SUBJECT_PREFIX", &namespace.subject_prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn agent-sessions");
    let mut binary = Binary { child };
    let channel = wait_for_channel(&format!("http://127.0.0.1:{grpc_port}")).await;

    // Health reports SERVING once Postgres and NATS answer.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut serving = false;
    for _ in 0..100 {
        let request = tonic_health::pb::HealthCheckRequest { service: "dw.agentsessions.v1.ServiceDayService".into() };
        if let Ok(response) = health.check(request).await
            && response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "health SERVING");

    // Reflection lists the services, so any reflection-based client can call them.
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = reflection.server_reflection_info(futures::stream::iter([list])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(services)) =
        answer.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "dw.agentsessions.v1.ServiceDayService",
        "dw.agentsessions.v1.AgentAdminService",
        "dw.eventlog.v1.EventLogService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
    }
    // ... and only what this port serves (its context's services and the kernel's event log of
    // its store): the other contexts' services answer UNIMPLEMENTED here.
    for name in &names {
        assert!(
            name.starts_with("dw.agentsessions.")
                || name == "dw.eventlog.v1.EventLogService"
                || name.starts_with("grpc."),
            "{name} is advertised but not served here ({names:?})"
        );
    }

    // The day, driven as a client would.
    let manager = token("demo", "manager-1", &[Role::Manager]);
    let mut admin = AgentAdminServiceClient::new(channel.clone());
    admin
        .update_tenant_settings(authed(
            &manager,
            pb::UpdateTenantSettingsRequest {
                request_id: rid(),
                update_mask: None,
                expected_version: None,
                settings: Some(pb::TenantSettings {
                    auto_distribution_enabled: true,
                    exit_reasons: vec![pb::Reason { id: "meeting".into(), label: "Meeting".into() }],
                    break_reasons: vec![pb::Reason { id: "coffee".into(), label: "Coffee".into() }],
                    ticket_workspace_url: String::new(),
                    version: 0,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
    admin
        .register_agent(authed(
            &manager,
            pb::RegisterAgentRequest { request_id: rid(), agent_id: "ana".into(), display_name: "Ana Lima".into() },
        ))
        .await
        .unwrap();
    let ana = token("demo", "ana", &[Role::Agent]);
    let mut day = ServiceDayServiceClient::new(channel.clone());
    // The caller's trace continues into the events: W3C traceparent in, traceparent out.
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut start = authed(&ana, pb::StartServiceDayRequest { request_id: rid() });
    let traceparent = format!("00-{caller_trace}-b7ad6b7169203331-01").parse().unwrap();
    start.metadata_mut().insert("traceparent", traceparent);
    day.start_service_day(start).await.unwrap();
    day.notify_exit(authed(&ana, pb::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() }))
        .await
        .unwrap();
    day.start_break(authed(&ana, pb::StartBreakRequest { request_id: rid(), reason_id: "coffee".into() }))
        .await
        .unwrap();
    day.end_break(authed(&ana, pb::EndBreakRequest { request_id: rid(), confirm: true })).await.unwrap();
    day.end_service_day(authed(&ana, pb::EndServiceDayRequest { request_id: rid() })).await.unwrap();
    let info = day.get_my_information(authed(&ana, pb::GetMyInformationRequest::default())).await.unwrap();
    let info = info.into_inner();
    assert_eq!(info.display_name, "Ana Lima");
    assert_eq!(info.days.len(), 1);
    let the_day = &info.days[0];
    assert!(the_day.ended_at.is_some());
    assert_eq!(the_day.breaks.len(), 1);
    assert_eq!(the_day.breaks[0].reason_label, "Coffee");
    assert_eq!(the_day.exits.len(), 1);
    assert_eq!(the_day.exits[0].close_cause, pb::ExitCloseCause::BreakStarted as i32);

    // The day's events are on JetStream, in order, with their envelope.
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let stream = js.get_stream(&namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.demo.serviceday.>", namespace.subject_prefix),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut types = Vec::new();
    while types.len() < 6 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let message = message.expect("event within 10 s").unwrap().unwrap();
        let headers = message.headers.clone().unwrap();
        assert_eq!(headers.get("dw-tenant").unwrap().as_str(), "demo");
        assert_eq!(headers.get("ce-subject").unwrap().as_str(), "serviceday:demo:ana");
        assert_eq!(headers.get("ce-source").unwrap().as_str(), "agent-sessions");
        assert_eq!(headers.get("dw-stream-version").unwrap().as_str(), (types.len() + 1).to_string());
        assert!(headers.get("traceparent").is_some());
        assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), headers.get("ce-id").unwrap().as_str());
        if types.is_empty() {
            let traceparent = headers.get("traceparent").unwrap().as_str();
            assert!(traceparent.starts_with(&format!("00-{caller_trace}-")), "{traceparent}");
        }
        types.push(headers.get("ce-type").unwrap().as_str().trim_start_matches("dw.agentsessions.v1.").to_owned());
    }
    assert_eq!(
        types,
        ["ServiceDayStarted", "ExitNotified", "ExitClosed", "BreakStarted", "BreakEnded", "ServiceDayEnded"]
    );

    // Metrics are served.
    let metrics = reqwest_free_get(metrics_port, "/metrics").await;
    assert!(metrics.contains("dw_rpc_requests_total"), "{metrics}");

    // SIGTERM drains and exits cleanly.
    let pid = binary.child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = binary.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.expect("exits within 10 s of SIGTERM").success());
}

/// A minimal HTTP/1.0 GET (no client library needed for one request).
async fn reqwest_free_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}
