//! A send's own webhook against the real service: admitted when the tenant's policy
//! (`SetProviderConfig.send_webhooks`) allows its host, carried by `MessageRequested` for
//! notifications to deliver; otherwise refused with INVALID_ARGUMENT on `webhook_url` and nothing
//! recorded (no event, no message, nothing handed to the provider).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Service, Setup, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::errors::violated_fields;
use dw_proto::messaging::v1 as pb;
use tonic::Code;

/// `tenant`'s manager sets the hosts its sends' webhooks may name.
async fn allow_hosts(service: &Service, tenant: &str, hosts: &[&str]) -> Result<pb::ProviderConfig, tonic::Status> {
    let manager = token(tenant, "boss", Role::Manager);
    let request = pb::SetProviderConfigRequest {
        request_id: rid(),
        send_webhooks: Some(pb::SendWebhookPolicy { allowed_hosts: hosts.iter().map(|h| h.to_string()).collect() }),
        ..Default::default()
    };
    service.providers().set_provider_config(authed(&manager, request)).await.map(|r| r.into_inner())
}

fn send(template: &pb::Template, webhook_url: &str) -> pb::SendTemplateRequest {
    pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone("+5511987654321".into())),
        variables: vec!["Maria".into()],
        webhook_url: webhook_url.into(),
        ..Default::default()
    }
}

async fn recorded_events(setup: &Setup) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&setup.db.pool).await.unwrap()
}

async fn recorded_messages(setup: &Setup) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&setup.db.pool).await.unwrap()
}

#[tokio::test]
async fn a_send_whose_webhook_host_is_allowed_is_accepted_and_carries_it() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = service.template(pb::Channel::Whatsapp, "order_shipped", "Olá {{1}}").await;
    let config = allow_hosts(&service, "acme", &["hooks.example.com", "127.0.0.1"]).await.unwrap();
    let policy = config.send_webhooks.unwrap();
    assert_eq!(policy.allowed_hosts, ["hooks.example.com", "127.0.0.1"], "GetProviderConfig shows the policy");

    let crm = token("acme", "crm-bot", Role::Service);
    let request = send(&template, "https://hooks.example.com/sends?crm=1");
    let sent = service.templates().send_template(authed(&crm, request.clone())).await.unwrap().into_inner();
    assert_eq!(sent.webhook_url, "https://hooks.example.com/sends?crm=1");
    let again = service.templates().send_template(authed(&crm, request)).await.unwrap().into_inner();
    assert_eq!(again.message_id, sent.message_id, "idempotent by request_id");
    assert_eq!(recorded_messages(&setup).await, 1);
    // The test deployment allows its loopback receivers (DW_WEBHOOK_ALLOWED_HOSTS), as `make run` does.
    let local = send(&template, "http://127.0.0.1:9/hook");
    assert!(service.templates().send_template(authed(&crm, local)).await.is_ok());
    // GetProviderConfig shows it too.
    let manager = token("acme", "boss", Role::Manager);
    let shown = service.providers().get_provider_config(authed(&manager, pb::GetProviderConfigRequest {})).await;
    assert_eq!(shown.unwrap().into_inner().send_webhooks.unwrap().allowed_hosts.len(), 2);
    service.stop().await;
}

#[tokio::test]
async fn a_send_whose_webhook_is_not_allowed_is_refused_on_webhook_url_and_records_nothing() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    let template = service.template(pb::Channel::Whatsapp, "order_shipped", "Olá {{1}}").await;
    allow_hosts(&service, "acme", &["hooks.example.com"]).await.unwrap();
    // Another tenant allows a host acme does not: its list is not acme's.
    allow_hosts(&service, "globex", &["crm.globex.example"]).await.unwrap();
    let events_before = recorded_events(&setup).await;

    let crm = token("acme", "crm-bot", Role::Service);
    let long = format!("https://hooks.example.com/{}", "a".repeat(2100));
    for url in [
        "https://crm.globex.example/hook",
        "https://elsewhere.example.com/hook",
        "http://hooks.example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://user:pw@hooks.example.com/hook",
        "https://hooks.example.com/a\u{7}b",
        "https://hooks.example.com/a\tb",
        long.as_str(),
    ] {
        let refused = service.templates().send_template(authed(&crm, send(&template, url))).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url:?}: {refused:?}");
        assert_eq!(violated_fields(&refused), ["webhook_url"], "{url:?}");
    }
    // A template whose default webhook the tenant does not allow: the send says so.
    let manager = token("acme", "boss", Role::Manager);
    let content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        body: "Oi".into(),
        default_webhook_url: "https://crm.globex.example/default".into(),
        ..Default::default()
    };
    let request = pb::CreateTemplateRequest {
        request_id: rid(),
        channel: pb::Channel::Whatsapp as i32,
        name: "with_default_hook".into(),
        content: Some(content),
    };
    let defaulted = service.templates().create_template(authed(&manager, request)).await.unwrap().into_inner();
    let events_before = events_before + 1;
    let mut request = send(&defaulted, "");
    request.variables.clear();
    let refused = service.templates().send_template(authed(&crm, request)).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["webhook_url"]);
    assert!(refused.message().contains("default webhook"), "{refused:?}");

    assert_eq!(recorded_events(&setup).await, events_before, "no event recorded");
    assert_eq!(recorded_messages(&setup).await, 0, "no message recorded");
    assert!(setup.whatsapp.received().is_empty(), "nothing handed to the provider");
    service.stop().await;
}

#[tokio::test]
async fn a_policy_naming_an_internal_host_is_refused() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    for host in ["10.0.0.7", "169.254.169.254", "localhost", "::1", "hooks.example.com/path", "bad host"] {
        let refused = allow_hosts(&service, "acme", &[host]).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{host}");
        assert_eq!(violated_fields(&refused), ["send_webhooks.allowed_hosts"], "{host}");
    }
    let manager = token("acme", "boss", Role::Manager);
    let shown = service.providers().get_provider_config(authed(&manager, pb::GetProviderConfigRequest {})).await;
    assert_eq!(shown.unwrap().into_inner().version, 0, "nothing recorded");
    service.stop().await;
}
