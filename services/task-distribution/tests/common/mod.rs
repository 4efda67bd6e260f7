//! A small cluster per test, in-process and real: agent-sessions and task-distribution servers,
//! each on its own database, exchanging events over JetStream in a namespace of the test's own.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use dw_auth::Role;
use dw_grpc_kit::config::ServiceConfig;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::service_day_service_client::ServiceDayServiceClient;
use dw_proto::distribution::v1 as pb;
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_testkit::{TestDb, TestNamespace};
use task_distribution::config::{Config, Upstream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SECRET: &str = "test-secret-for-distribution-tests";

pub struct Cluster {
    pub sessions_db: TestDb,
    pub distribution_db: TestDb,
    pub sessions_ns: TestNamespace,
    pub distribution_ns: TestNamespace,
    pub messaging_ns: TestNamespace,
    pub sessions: Channel,
    /// One channel per task-distribution replica.
    pub replicas: Vec<Channel>,
    /// Each replica's metrics endpoint (`/metrics`).
    pub metrics: Vec<SocketAddr>,
    pub cancel: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = format!("http://{addr}");
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(endpoint.clone()).expect("endpoint").connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no server on {addr}");
}

impl Cluster {
    pub async fn start(distribution_replicas: usize) -> Self {
        Self::start_with(distribution_replicas, |_| {}).await
    }

    /// Starts with each task-distribution replica's configuration changed by `configure`.
    pub async fn start_with(distribution_replicas: usize, configure: impl Fn(&mut ServiceConfig)) -> Self {
        let sessions_db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
        let distribution_db = TestDb::create(&task_distribution::MIGRATOR).await.unwrap();
        let sessions_ns = TestNamespace::new("sessions");
        let distribution_ns = TestNamespace::new("distribution");
        let messaging_ns = TestNamespace::new("messaging");
        let cancel = CancellationToken::new();
        let mut servers = Vec::new();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServiceConfig::for_test(
            sessions_db.url.clone(),
            dw_testkit::nats_url(),
            addr,
            SECRET.as_bytes(),
            sessions_ns.stream_name.clone(),
            sessions_ns.subject_prefix.clone(),
        );
        let token = cancel.clone();
        servers.push(tokio::spawn(async move {
            if let Err(error) = agent_sessions::server::run_with_listener(config, listener, token).await {
                eprintln!("agent-sessions stopped: {error}");
            }
        }));
        let sessions = connect(addr).await;

        let mut replicas = Vec::new();
        let mut metrics = Vec::new();
        for _ in 0..distribution_replicas {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut service = ServiceConfig::for_test(
                distribution_db.url.clone(),
                dw_testkit::nats_url(),
                addr,
                SECRET.as_bytes(),
                distribution_ns.stream_name.clone(),
                distribution_ns.subject_prefix.clone(),
            );
            service.metrics_addr = dw_testkit::metrics::free_local_addr().unwrap();
            configure(&mut service);
            metrics.push(service.metrics_addr);
            let config = Config {
                service,
                agent_sessions: Upstream::new(&sessions_ns.stream_name, &sessions_ns.subject_prefix),
                messaging: Upstream::new(&messaging_ns.stream_name, &messaging_ns.subject_prefix),
                consumer_prefix: "task-distribution".into(),
                queue_metrics_interval: Duration::from_millis(100),
            };
            let token = cancel.clone();
            servers.push(tokio::spawn(async move {
                if let Err(error) = task_distribution::server::run_with_listener(config, listener, token).await {
                    eprintln!("task-distribution stopped: {error}");
                }
            }));
            replicas.push(connect(addr).await);
        }
        Self {
            sessions_db,
            distribution_db,
            sessions_ns,
            distribution_ns,
            messaging_ns,
            sessions,
            replicas,
            metrics,
            cancel,
            servers,
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
    }

    pub fn admin(&self) -> AgentAdminServiceClient<Channel> {
        AgentAdminServiceClient::new(self.sessions.clone())
    }

    pub fn day(&self) -> ServiceDayServiceClient<Channel> {
        ServiceDayServiceClient::new(self.sessions.clone())
    }

    pub fn distribution(&self) -> DistributionServiceClient<Channel> {
        DistributionServiceClient::new(self.replicas[0].clone())
    }

    pub fn replica(&self, index: usize) -> DistributionServiceClient<Channel> {
        DistributionServiceClient::new(self.replicas[index % self.replicas.len()].clone())
    }

    /// Configures the tenant in agent-sessions and registers `agents` linked to `departments`.
    pub async fn seed(&self, tenant: &str, auto_distribution: bool, agents: &[(&str, &[&str])]) {
        let manager = token(tenant, "manager-1", &[Role::Manager]);
        let mut admin = self.admin();
        admin
            .update_tenant_settings(authed(
                &manager,
                sessions::UpdateTenantSettingsRequest {
                    request_id: rid(),
                    update_mask: None,
                    expected_version: None,
                    settings: Some(sessions::TenantSettings {
                        auto_distribution_enabled: auto_distribution,
                        exit_reasons: vec![sessions::Reason { id: "meeting".into(), label: "Meeting".into() }],
                        break_reasons: vec![sessions::Reason { id: "lunch".into(), label: "Lunch".into() }],
                        ticket_workspace_url: String::new(),
                        version: 0,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
        for (agent, departments) in agents {
            admin
                .register_agent(authed(
                    &manager,
                    sessions::RegisterAgentRequest {
                        request_id: rid(),
                        agent_id: (*agent).into(),
                        display_name: format!("Agent {agent}"),
                    },
                ))
                .await
                .unwrap();
            for department in *departments {
                admin
                    .link_department(authed(
                        &manager,
                        sessions::LinkDepartmentRequest {
                            request_id: rid(),
                            agent_id: (*agent).into(),
                            department_id: (*department).into(),
                        },
                    ))
                    .await
                    .unwrap();
            }
        }
    }

    /// Waits until task-distribution's view of the agent matches (availability propagates over
    /// JetStream).
    pub async fn wait_for_agent(&self, tenant: &str, agent: &str, condition: &str) {
        let sql: &'static str = match condition {
            "available" => {
                "SELECT 1 AS one FROM agents WHERE tenant_id = $1 AND agent_id = $2 AND day_open AND NOT on_break AND NOT exit_notified"
            }
            "on_break" => "SELECT 1 AS one FROM agents WHERE tenant_id = $1 AND agent_id = $2 AND on_break",
            "exit_notified" => "SELECT 1 AS one FROM agents WHERE tenant_id = $1 AND agent_id = $2 AND exit_notified",
            "off" => "SELECT 1 AS one FROM agents WHERE tenant_id = $1 AND agent_id = $2 AND NOT day_open",
            "known" => "SELECT 1 AS one FROM agents WHERE tenant_id = $1 AND agent_id = $2",
            other => panic!("unknown condition {other}"),
        };
        for _ in 0..400 {
            let found =
                sqlx::query(sql).bind(tenant).bind(agent).fetch_optional(&self.distribution_db.pool).await.unwrap();
            if found.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("agent {agent} never became {condition}");
    }

    pub async fn start_day(&self, tenant: &str, agent: &str) {
        let agent_token = token(tenant, agent, &[Role::Agent]);
        self.day()
            .start_service_day(authed(&agent_token, sessions::StartServiceDayRequest { request_id: rid() }))
            .await
            .unwrap();
        self.wait_for_agent(tenant, agent, "available").await;
    }

    pub async fn create_task(&self, tenant: &str, department: &str, client: &str, phone: &str) -> pb::Task {
        let service = token(tenant, "crm-bot", &[Role::Service]);
        self.distribution()
            .create_task(authed(
                &service,
                pb::CreateTaskRequest {
                    request_id: rid(),
                    department_id: department.into(),
                    channel: pb::Channel::Whatsapp as i32,
                    contact: Some(pb::ClientContact {
                        name: client.into(),
                        phone: phone.into(),
                        contact_id: String::new(),
                    }),
                    priority: 5,
                    subject: format!("help for {client}"),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn task(&self, tenant: &str, task_id: &str) -> pb::Task {
        let manager = token(tenant, "manager-1", &[Role::Manager]);
        self.distribution()
            .get_task(authed(
                &manager,
                pb::GetTaskRequest { key: Some(pb::get_task_request::Key::TaskId(task_id.into())) },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until the task satisfies `check`.
    pub async fn wait_for_task(
        &self,
        tenant: &str,
        task_id: &str,
        what: &str,
        check: impl Fn(&pb::Task) -> bool,
    ) -> pb::Task {
        for _ in 0..400 {
            let task = self.task(tenant, task_id).await;
            if check(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {task_id} never became {what}: {:?}", self.task(tenant, task_id).await);
    }
}

/// Scrapes replica `replica`'s `/metrics` until `check` finds what it waits for.
pub async fn wait_for_metrics<T>(
    cluster: &Cluster,
    replica: usize,
    what: &str,
    check: impl Fn(&str) -> Option<T>,
) -> T {
    dw_testkit::metrics::wait_for(cluster.metrics[replica], what, check).await
}

pub fn token(tenant: &str, sub: &str, roles: &[Role]) -> String {
    dw_testkit::token(SECRET, tenant, sub, roles)
}

pub use dw_testkit::{authed, rid};

/// Publishes an inbound client message (messaging's `InboundMessageReceived`) from `phone`.
pub async fn publish_inbound(cluster: &Cluster, tenant: &str, phone: &str, text: &str) {
    let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let ns = &cluster.messaging_ns;
    let _ = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: ns.stream_name.clone(),
            subjects: vec![format!("{}.>", ns.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let message_id = uuid::Uuid::now_v7().to_string();
    let event = dw_proto::messaging::v1::InboundMessageReceived {
        message_id: message_id.clone(),
        contact_id: String::new(),
        contact_name: "Carla Dias".into(),
        phone: phone.into(),
        channel: dw_proto::messaging::v1::Channel::Whatsapp as i32,
        text: text.into(),
        provider_message_id: format!("wamid.{message_id}"),
        received_at: None,
        department_id: String::new(),
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id.as_str());
    headers.insert("ce-id", message_id.as_str());
    headers.insert("ce-type", "dw.messaging.v1.InboundMessageReceived");
    headers.insert("ce-source", "test");
    headers.insert("ce-time", chrono::Utc::now().to_rfc3339().as_str());
    headers.insert("ce-subject", format!("inbound:{tenant}:{message_id}").as_str());
    headers.insert("dw-tenant", tenant);
    headers.insert("dw-stream-version", "1");
    let subject = format!("{}.{tenant}.inbound.received", ns.subject_prefix);
    js.publish_with_headers(subject, headers, prost::Message::encode_to_vec(&event).into())
        .await
        .unwrap()
        .await
        .unwrap();
}
