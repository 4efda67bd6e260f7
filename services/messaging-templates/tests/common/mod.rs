//! A messaging-templates server per test (real Postgres and NATS) and fake providers on
//! 127.0.0.1 that record what they receive and answer from a script.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dw_auth::Role;
use dw_grpc_kit::config::ServiceConfig;
use dw_proto::messaging::v1 as pb;
use dw_proto::messaging::v1::contact_service_client::ContactServiceClient;
use dw_proto::messaging::v1::provider_config_service_client::ProviderConfigServiceClient;
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_testkit::{TestDb, TestNamespace};
use messaging_templates::config::Config;
use messaging_templates::domain::twilio_signature::{self, WebhookBaseUrl};
use messaging_templates::provider_secrets::ProviderSecretsKey;
use messaging_templates::providers::{ProviderConfig, SmsConfig, WhatsappConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SECRET: &str = "test-secret-for-messaging-tests";
/// The provider accounts [`Service::configure_providers`] gives a tenant: the WhatsApp app secret,
/// verify token and phone number id (the one sends go out from), the SMS auth token and account.
pub const WHATSAPP_SECRET: &str = "whatsapp-app-secret";
pub const VERIFY_TOKEN: &str = "verify-me";
pub const PHONE_NUMBER_ID: &str = "1055";
pub const SMS_SECRET: &str = "sms-webhook-secret";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The deployment's provider-secrets key in these tests.
pub const PROVIDER_KEY: [u8; 32] = [7; 32];
/// The public base of the webhooks in these tests (`DW_WEBHOOK_PUBLIC_URL`): requests reach
/// the service on 127.0.0.1, but SMS callbacks are signed for this URL, as behind an ingress that
/// serves `https://hooks.example.test/messaging/webhooks/…` and strips `/messaging`.
pub const PUBLIC_WEBHOOK_BASE: &str = "https://hooks.example.test/messaging";

/// One request a fake provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: String,
    pub body: String,
    /// The W3C trace context the request carried.
    pub traceparent: Option<String>,
}

#[derive(Clone, Default)]
pub struct FakeProvider {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order; then 200 with a generated id.
    pub script: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub addr: Option<SocketAddr>,
}

async fn answer(
    State(fake): State<FakeProvider>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let count = {
        let mut received = fake.received.lock().unwrap();
        received.push(Received { path: uri.path().to_owned(), authorization, body, traceparent });
        received.len()
    };
    if let Some((status, body)) = fake.script.lock().unwrap().pop_front() {
        return (StatusCode::from_u16(status).unwrap(), body);
    }
    let body = if uri.path().ends_with("Messages.json") {
        format!(r#"{{"sid":"SM{count:032}","status":"queued"}}"#)
    } else {
        format!(
            r#"{{"messaging_product":"whatsapp","contacts":[{{"wa_id":"x"}}],"messages":[{{"id":"wamid.fake{count}"}}]}}"#
        )
    };
    (StatusCode::OK, body)
}

impl FakeProvider {
    pub async fn start() -> Self {
        let mut fake = FakeProvider::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.addr = Some(listener.local_addr().unwrap());
        let app = Router::new().fallback(post(answer)).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn answer_next(&self, status: u16, body: &str) {
        self.script.lock().unwrap().push_back((status, body.to_owned()));
    }
}

pub struct Service {
    pub channel: Channel,
    /// The instance's metrics endpoint (`/metrics`).
    pub metrics_addr: SocketAddr,
    pub cancel: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
    /// The provider webhooks' port, which the next instance of the same setup binds again.
    webhook_addr: SocketAddr,
}

pub struct Setup {
    /// Where the service's provider webhooks listen.
    pub webhook_addr: SocketAddr,
    pub db: TestDb,
    pub ns: TestNamespace,
    pub sessions_ns: TestNamespace,
    pub whatsapp: FakeProvider,
    pub sms: FakeProvider,
    /// The service's `DW_SEND_BACKLOG_LIMIT` (its default unless a test sets it).
    pub send_backlog_limit: u32,
}

impl Setup {
    pub async fn new() -> Self {
        // Below the kernel's ephemeral range: a port taken from it and let go until the service
        // binds it could meanwhile become an outgoing connection's (a CI run once lost it so).
        let webhook_addr = dw_testkit::metrics::free_local_addr().unwrap();
        Self {
            webhook_addr,
            db: TestDb::create(&messaging_templates::MIGRATOR).await.unwrap(),
            ns: TestNamespace::new("messaging"),
            sessions_ns: TestNamespace::new("msessions"),
            whatsapp: FakeProvider::start().await,
            sms: FakeProvider::start().await,
            send_backlog_limit: messaging_templates::app::send_backlog::DEFAULT_LIMIT,
        }
    }

    /// agent-sessions grants `permission` to `agent`: the event goes to the sessions stream this
    /// service consumes (the grant applies once the consumer has it; callers poll).
    pub async fn grant(&self, tenant: &str, agent: &str, permission: &str) {
        use prost::Message;
        let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: self.sessions_ns.stream_name.clone(),
            subjects: vec![format!("{}.>", self.sessions_ns.subject_prefix)],
            ..Default::default()
        })
        .await
        .unwrap();
        let grant = dw_proto::agentsessions::v1::PermissionGranted {
            agent_id: agent.into(),
            permission: permission.into(),
            granted_by: "boss".into(),
        };
        let event_id = uuid::Uuid::now_v7().to_string();
        let stream_subject = format!("agent:{tenant}:{agent}");
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in [
            ("Nats-Msg-Id", event_id.as_str()),
            ("ce-id", event_id.as_str()),
            ("ce-type", "dw.agentsessions.v1.PermissionGranted"),
            ("ce-source", "agent-sessions"),
            ("ce-subject", stream_subject.as_str()),
            ("dw-tenant", tenant),
            ("dw-stream-version", "3"),
        ] {
            headers.insert(name, value);
        }
        headers.insert("ce-time", chrono::Utc::now().to_rfc3339().as_str());
        let subject = format!("{}.{tenant}.agent.permission_granted", self.sessions_ns.subject_prefix);
        js.publish_with_headers(subject, headers, grant.encode_to_vec().into()).await.unwrap().await.unwrap();
    }

    /// POSTs the form `body` to the webhook `path_and_query`, signed like Twilio under
    /// `auth_token` for its public URL; answers the HTTP status.
    pub async fn post_sms(&self, path_and_query: &str, auth_token: &str, body: &str) -> u16 {
        let public_url = format!("{PUBLIC_WEBHOOK_BASE}{path_and_query}");
        self.post_sms_signed_for(path_and_query, &public_url, auth_token, body).await
    }

    /// The same, signed as if the provider had called `signed_url`.
    pub async fn post_sms_signed_for(
        &self,
        path_and_query: &str,
        signed_url: &str,
        auth_token: &str,
        body: &str,
    ) -> u16 {
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let signature = twilio_signature::signature(auth_token, signed_url, &params);
        self.post_form(path_and_query, Some(&signature), body).await
    }

    /// POSTs the form `body` to the webhook `path_and_query` with this `X-Twilio-Signature`.
    pub async fn post_form(&self, path_and_query: &str, signature: Option<&str>, body: &str) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}{path_and_query}", self.webhook_addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header(twilio_signature::HEADER, signature);
        }
        request.send().await.unwrap().status().as_u16()
    }

    pub async fn start(&self, dispatch_enabled: bool) -> Service {
        self.start_with(dispatch_enabled, None, None).await
    }

    /// [`start`](Self::start) with a dispatcher concurrency and a Postgres pool size.
    pub async fn start_with(
        &self,
        dispatch_enabled: bool,
        dispatch_concurrency: Option<usize>,
        pool_size: Option<u32>,
    ) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut service = ServiceConfig::for_test(
            self.db.url.clone(),
            dw_testkit::nats_url(),
            addr,
            SECRET.as_bytes(),
            self.ns.stream_name.clone(),
            self.ns.subject_prefix.clone(),
        );
        service.metrics_addr = dw_testkit::metrics::free_local_addr().unwrap();
        if let Some(pool_size) = pool_size {
            service.db_max_connections = pool_size;
        }
        let metrics_addr = service.metrics_addr;
        let config = Config {
            service,
            providers: ProviderConfig {
                whatsapp: WhatsappConfig {
                    base_url: format!("{}/v21.0", self.whatsapp.base()),
                    phone_number_id: "1055".into(),
                    access_token: "wa-token".into(),
                },
                sms: SmsConfig {
                    base_url: format!("{}/2010-04-01", self.sms.base()),
                    account_sid: "AC123".into(),
                    auth_token: "sms-token".into(),
                    from: "+15550001111".into(),
                },
                timeout: Duration::from_secs(5),
                max_attempts: 4,
                backoff: vec![Duration::from_millis(20)],
            },
            agent_sessions_stream: self.sessions_ns.stream_name.clone(),
            agent_sessions_subject_prefix: self.sessions_ns.subject_prefix.clone(),
            dispatch_enabled,
            dispatch_concurrency,
            limits: Default::default(),
            consumer_prefix: "messaging-templates".into(),
            webhook_addr: self.webhook_addr,
            webhook_public_url: WebhookBaseUrl::parse(PUBLIC_WEBHOOK_BASE).unwrap(),
            provider_secrets_key: ProviderSecretsKey::from_bytes(&PROVIDER_KEY),
            // The tests' webhook receivers listen on loopback, as a local cluster's do.
            local_webhook_hosts: vec!["127.0.0.1".into()],
            send_backlog_limit: self.send_backlog_limit,
        };
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let server = tokio::spawn(async move {
            if let Err(error) = messaging_templates::server::run_with_listener(config, listener, token).await {
                eprintln!("messaging-templates stopped: {error}");
            }
        });
        let endpoint = format!("http://{addr}");
        for _ in 0..200 {
            assert!(!server.is_finished(), "messaging-templates stopped while starting (its error is printed above)");
            let webhooks_up = tokio::net::TcpStream::connect(self.webhook_addr).await.is_ok();
            if webhooks_up && let Ok(channel) = Channel::from_shared(endpoint.clone()).unwrap().connect().await {
                // Served: a call without a token is refused by the service itself (a listener
                // bound but not yet served would only hold the connection).
                let answer = TemplateServiceClient::new(channel.clone())
                    .list_templates(tonic::Request::new(pb::ListTemplatesRequest::default()))
                    .await;
                if answer.is_err_and(|status| status.code() == tonic::Code::Unauthenticated) {
                    return Service { channel, metrics_addr, cancel, server, webhook_addr: self.webhook_addr };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("messaging-templates did not start");
    }
}

impl Service {
    pub fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel.clone())
    }

    pub fn contacts(&self) -> ContactServiceClient<Channel> {
        ContactServiceClient::new(self.channel.clone())
    }

    pub fn providers(&self) -> ProviderConfigServiceClient<Channel> {
        ProviderConfigServiceClient::new(self.channel.clone())
    }

    /// `tenant`'s manager sets its provider accounts (`SetProviderConfig`).
    pub async fn set_providers(
        &self,
        tenant: &str,
        whatsapp: Option<pb::WhatsappProviderSettings>,
        sms: Option<pb::SmsProviderSettings>,
    ) -> pb::ProviderConfig {
        let manager = token(tenant, "boss", Role::Manager);
        let request = pb::SetProviderConfigRequest { request_id: rid(), whatsapp, sms, ..Default::default() };
        self.providers().set_provider_config(authed(&manager, request)).await.unwrap().into_inner()
    }

    /// `tenant` gets the test accounts ([`WHATSAPP_SECRET`], [`PHONE_NUMBER_ID`], [`SMS_SECRET`], …),
    /// so that webhooks signed and addressed as the tests do are its.
    pub async fn configure_providers(&self, tenant: &str) -> pb::ProviderConfig {
        self.set_providers(
            tenant,
            Some(whatsapp_account(PHONE_NUMBER_ID, WHATSAPP_SECRET, VERIFY_TOKEN)),
            Some(sms_account(ACCOUNT_SID, SMS_SECRET)),
        )
        .await
    }

    /// A template created by the manager (language pt_BR, utility, no header).
    pub async fn template(&self, channel: pb::Channel, name: &str, body: &str) -> pb::Template {
        let manager = token("acme", "boss", Role::Manager);
        let content = pb::TemplateContent {
            language: "pt_BR".into(),
            category: pb::TemplateCategory::Utility as i32,
            body: body.into(),
            ..Default::default()
        };
        let request = pb::CreateTemplateRequest {
            request_id: rid(),
            channel: channel as i32,
            name: name.into(),
            content: Some(content),
        };
        self.templates().create_template(authed(&manager, request)).await.unwrap().into_inner()
    }

    /// The message as the manager sees it.
    pub async fn message(&self, id: &str) -> pb::Message {
        let manager = token("acme", "boss", Role::Manager);
        let request = authed(&manager, pb::GetMessageRequest { message_id: id.into() });
        self.templates().get_message(request).await.unwrap().into_inner()
    }

    /// Polls the message until `check` holds (up to 10 s).
    pub async fn until(&self, id: &str, check: impl Fn(&pb::Message) -> bool) -> pb::Message {
        for _ in 0..400 {
            let current = self.message(id).await;
            if check(&current) {
                return current;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("message {id} never got there: {:?}", self.message(id).await);
    }

    /// Polls the message until it has `status`.
    pub async fn until_status(&self, id: &str, status: pb::MessageStatus) -> pb::Message {
        self.until(id, |m| m.status == status as i32).await
    }

    /// Scrapes `/metrics` until `check` finds what it waits for.
    pub async fn wait_for_metrics<T>(&self, what: &str, check: impl Fn(&str) -> Option<T>) -> T {
        dw_testkit::metrics::wait_for(self.metrics_addr, what, check).await
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        // The next instance binds the same webhook port: wait until this one has let it go.
        for _ in 0..200 {
            // Bound as the service binds it (SO_REUSEADDR: closed connections do not count).
            if tokio::net::TcpListener::bind(self.webhook_addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the webhook port {} is still taken after the service stopped", self.webhook_addr);
    }
}

pub fn whatsapp_account(phone_number_id: &str, app_secret: &str, verify_token: &str) -> pb::WhatsappProviderSettings {
    pb::WhatsappProviderSettings {
        phone_number_id: phone_number_id.into(),
        app_secret: app_secret.into(),
        verify_token: verify_token.into(),
    }
}

pub fn sms_account(account_sid: &str, auth_token: &str) -> pb::SmsProviderSettings {
    pb::SmsProviderSettings { account_sid: account_sid.into(), auth_token: auth_token.into() }
}

pub fn token(tenant: &str, sub: &str, role: Role) -> String {
    dw_testkit::token(SECRET, tenant, sub, &[role])
}

pub use dw_testkit::{authed, rid};

/// The payloads of the stored events of `event_type`, oldest first, their personal fields opened
/// with their keys as `ReadEvents` gives them (stored, they are sealed).
pub async fn opened_payloads(pool: &sqlx::PgPool, event_type: &str) -> Vec<Vec<u8>> {
    use dw_eventstore::personal::{self, PersonalFields};
    use messaging_templates::codec::ClientFields;
    use sqlx::Row;
    let rows = sqlx::query("SELECT tenant_id, payload FROM events WHERE event_type = $1 ORDER BY global_position")
        .bind(event_type)
        .fetch_all(pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant = dw_ids::TenantId::parse(row.get::<&str, _>("tenant_id")).unwrap();
        let payload: Vec<u8> = row.get("payload");
        let mut ids = Vec::new();
        ClientFields.map_fields(event_type, &payload, &mut |value| ids.extend(personal::key_id(value)));
        let keys = personal::keys(&mut conn, ids).await.unwrap();
        let open = ClientFields.map_fields(event_type, &payload, &mut |value| *value = keys.open(&tenant, value));
        opened.push(open.unwrap_or(payload));
    }
    opened
}
