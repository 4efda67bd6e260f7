//! An agent-sessions server per test, in-process, on its own database and JetStream namespace.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use agent_sessions::config::Config;
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_proto::agentsessions::v1::agent_admin_service_client::AgentAdminServiceClient;
use dw_proto::agentsessions::v1::service_day_service_client::ServiceDayServiceClient;
use dw_testkit::{TestDb, TestNamespace};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SECRET: &str = "test-secret-for-agent-sessions-tests";

pub struct TestService {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub namespace: TestNamespace,
    pub channel: Channel,
    pub cancel: CancellationToken,
    pub server: tokio::task::JoinHandle<Result<(), agent_sessions::server::ServeError>>,
}

impl TestService {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test configuration changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::create(&agent_sessions::MIGRATOR).await.expect("test database");
        let namespace = TestNamespace::new("agentsessions");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::for_test(
            db.url.clone(),
            dw_testkit::nats_url(),
            addr,
            SECRET.as_bytes(),
            namespace.stream_name.clone(),
            namespace.subject_prefix.clone(),
        );
        configure(&mut config);
        let cancel = CancellationToken::new();
        let server = tokio::spawn(agent_sessions::server::run_with_listener(config, listener, cancel.clone()));
        let channel = connect(addr).await;
        Self { addr, db, namespace, channel, cancel, server }
    }

    pub fn admin(&self) -> AgentAdminServiceClient<Channel> {
        AgentAdminServiceClient::new(self.channel.clone())
    }

    pub fn day(&self) -> ServiceDayServiceClient<Channel> {
        ServiceDayServiceClient::new(self.channel.clone())
    }

    /// A client connection of its own to the service (the benches spread their callers over
    /// several, as many browsers and services would).
    pub async fn new_channel(&self) -> Channel {
        connect(self.addr).await
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }

    /// Registers agents in `tenant` with `departments` and configures the tenant (waiting and
    /// retrying, with the same request id, when the tenant's rate says so).
    pub async fn seed(&self, tenant: &str, agents: &[&str], auto_distribution: bool) {
        let manager = token(tenant, "manager-1", &[Role::Manager]);
        let mut admin = self.admin();
        let settings = pb::UpdateTenantSettingsRequest {
            request_id: format!("settings-{tenant}"),
            // No mask: the whole settings are replaced (the deprecated behaviour callers before masks rely on).
            update_mask: None,
            expected_version: None,
            settings: Some(pb::TenantSettings {
                auto_distribution_enabled: auto_distribution,
                exit_reasons: vec![
                    pb::Reason { id: "end-of-shift".into(), label: "End of shift".into() },
                    pb::Reason { id: "meeting".into(), label: "Meeting".into() },
                ],
                break_reasons: vec![pb::Reason { id: "lunch".into(), label: "Lunch".into() }],
                ticket_workspace_url: "https://tickets.example.com/ws".into(),
                version: 0,
                time_zone: String::new(),
                // The tests take breaks without a reason; the rule that requires one has its own tests.
                break_reason_optional: true,
            }),
        };
        while admitted(admin.update_tenant_settings(authed(&manager, settings.clone())).await).is_none() {}
        for agent in agents {
            let register = pb::RegisterAgentRequest {
                request_id: format!("register-{agent}"),
                agent_id: (*agent).into(),
                display_name: format!("Agent {agent}"),
            };
            while admitted(admin.register_agent(authed(&manager, register.clone())).await).is_none() {}
            let link = pb::LinkDepartmentRequest {
                request_id: format!("link-{agent}"),
                agent_id: (*agent).into(),
                department_id: "support".into(),
            };
            while admitted(admin.link_department(authed(&manager, link.clone())).await).is_none() {}
        }
    }
}

/// The answer of a seeding call; `None` (after a short wait) when the tenant's rate refused it.
fn admitted<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Option<T> {
    match result {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            std::thread::sleep(Duration::from_millis(20));
            None
        }
        Err(status) => panic!("seeding: {status:?}"),
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = format!("http://{addr}");
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(endpoint.clone()).expect("endpoint").connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent-sessions did not start on {addr}");
}

pub fn token(tenant: &str, sub: &str, roles: &[Role]) -> String {
    dw_testkit::token(SECRET, tenant, sub, roles)
}

// Not every test file uses both (as with the helpers above, `dead_code`).
#[allow(unused_imports)]
pub use dw_testkit::{authed, rid};

pub fn reason_of(status: &tonic::Status) -> Option<String> {
    dw_grpc_kit::errors::reason_of(status)
}
