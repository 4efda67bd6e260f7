//! Provider requests on `/metrics`: each attempt's latency by outcome, and failures by reason, as
//! the fake providers answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Service, Setup, authed, rid, token};
use dw_auth::Role;
use dw_proto::messaging::v1 as pb;
use dw_testkit::metrics::sample;

const WHATSAPP: [(&str, &str); 2] = [("provider", "whatsapp_cloud"), ("channel", "whatsapp")];
const SMS: [(&str, &str); 2] = [("provider", "sms_messages"), ("channel", "sms")];

fn with<'a>(target: [(&'a str, &'a str); 2], label: (&'a str, &'a str)) -> [(&'a str, &'a str); 3] {
    [target[0], target[1], label]
}

async fn send(service: &Service, template: &pb::Template, phone: &str) -> String {
    let crm = token("acme", "crm-bot", Role::Service);
    let request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone(phone.into())),
        variables: vec!["Maria".into()],
        ..Default::default()
    };
    service.templates().send_template(authed(&crm, request)).await.unwrap().into_inner().message_id
}

#[tokio::test]
async fn provider_failures_are_counted_by_reason_and_every_attempt_is_timed() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;

    // WhatsApp answers 500 once, then accepts the retry.
    let whatsapp = service.template(pb::Channel::Whatsapp, "order_notice", "Olá {{1}}, seu pedido saiu.").await;
    setup.whatsapp.answer_next(500, r#"{"error":{"message":"Internal error","code":1}}"#);
    let message = send(&service, &whatsapp, "+5511900000201").await;
    service.until_status(&message, pb::MessageStatus::Dispatched).await;

    // The SMS provider rejects a send for good.
    let sms = service.template(pb::Channel::Sms, "code_notice", "Codigo {{1}}").await;
    setup.sms.answer_next(400, r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#);
    let message = send(&service, &sms, "+5511900000202").await;
    service.until_status(&message, pb::MessageStatus::Failed).await;

    let text = service
        .wait_for_metrics("the SMS rejection", |text| {
            let counted = sample(text, "dw_provider_failures_total", &with(SMS, ("reason", "http_4xx")));
            counted.is_some().then(|| text.to_owned())
        })
        .await;
    let failures = |target, reason| sample(&text, "dw_provider_failures_total", &with(target, ("reason", reason)));
    assert_eq!(failures(WHATSAPP, "http_5xx"), Some(1.0), "{text}");
    assert_eq!(failures(SMS, "http_4xx"), Some(1.0));
    assert_eq!(failures(WHATSAPP, "http_4xx"), None, "no other failure");
    assert_eq!(failures(SMS, "http_5xx"), None);

    let requests = |target, outcome| {
        sample(&text, "dw_provider_request_duration_seconds_count", &with(target, ("outcome", outcome)))
    };
    assert_eq!(requests(WHATSAPP, "failed"), Some(1.0), "the 500");
    assert_eq!(requests(WHATSAPP, "accepted"), Some(1.0), "the retry");
    assert_eq!(requests(SMS, "failed"), Some(1.0));
    assert_eq!(requests(SMS, "accepted"), None);
    service.stop().await;
}

#[tokio::test]
async fn the_pool_the_build_and_the_process_are_on_the_metrics_endpoint() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let text = service
        .wait_for_metrics("the pool gauges", |text| {
            sample(text, "dw_db_pool_max_connections", &[]).is_some().then(|| text.to_owned())
        })
        .await;
    let max = sample(&text, "dw_db_pool_max_connections", &[]).unwrap_or_default();
    assert!(max >= 1.0, "{text}");
    let idle = sample(&text, "dw_db_pool_connections", &[("state", "idle")]).expect("idle connections");
    let in_use = sample(&text, "dw_db_pool_connections", &[("state", "in_use")]).expect("connections in use");
    assert!(idle + in_use <= max, "{text}");
    assert_eq!(
        sample(&text, "dw_build_info", &[("service", "messaging-templates"), ("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0),
        "{text}"
    );
    // The process metrics every service exports (read from /proc at the scrape).
    for name in ["process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
        assert!(sample(&text, name, &[]).is_some_and(|value| value > 0.0), "{name}: {text}");
    }
    assert!(sample(&text, "process_cpu_seconds_total", &[]).is_some(), "{text}");
    service.stop().await;
}
