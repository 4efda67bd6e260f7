//! Provider webhooks of a tenant with its provider accounts set: signed status updates (out of
//! order, repeated, forged), the verify-token handshake, inbound client messages, SMS callbacks
//! signed like Twilio's (and refused when the signature, URL or a parameter is not the signed
//! one), SMS STOP and START. (Tenancy of the webhooks: `webhook_tenancy.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    ACCOUNT_SID, PHONE_NUMBER_ID, PUBLIC_WEBHOOK_BASE, SMS_SECRET, Service, Setup, WHATSAPP_SECRET, authed, rid, token,
};
use dw_auth::Role;
use dw_proto::messaging::v1 as pb;
use messaging_templates::domain::twilio_signature;
use messaging_templates::webhooks::sign;
use prost::Message as _;
use tonic::Code;

async fn post(setup: &Setup, path: &str, header: &str, secret: &str, body: String) -> u16 {
    let signature = sign(secret, body.as_bytes());
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", setup.webhook_addr))
        .header(header, signature)
        .body(body)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

fn status_payload(wamid: &str, status: &str) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{"id": wamid, "status": status, "timestamp": "1795500000", "recipient_id": "5511987654321"}]
        }}]}]
    })
    .to_string()
}

async fn send(service: &Service, template: &pb::Template, phone: &str) -> Result<pb::Message, tonic::Status> {
    let manager = token("acme", "boss", Role::Manager);
    let request = pb::SendTemplateRequest {
        request_id: rid(),
        template_id: template.template_id.clone(),
        recipient: Some(pb::send_template_request::Recipient::Phone(phone.into())),
        variables: vec!["Ana".into()],
        ..Default::default()
    };
    service.templates().send_template(authed(&manager, request)).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn signed_status_updates_move_a_message_to_delivered_then_read() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let template = service.template(pb::Channel::Whatsapp, "hello", "Oi {{1}}").await;
    let sent = send(&service, &template, "+5511987654321").await.unwrap();
    let dispatched = service.until(&sent.message_id, |m| !m.provider_message_id.is_empty()).await;
    let wamid = dispatched.provider_message_id;
    let path = "/webhooks/whatsapp/acme";

    // A forged signature is refused and changes nothing.
    let forged = status_payload(&wamid, "read");
    assert_eq!(post(&setup, path, "X-Hub-Signature-256", "not-the-secret", forged).await, 401);
    assert_eq!(service.message(&sent.message_id).await.status, pb::MessageStatus::Dispatched as i32);

    assert_eq!(
        post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, status_payload(&wamid, "delivered")).await,
        200
    );
    assert_eq!(service.message(&sent.message_id).await.status, pb::MessageStatus::Delivered as i32);
    assert_eq!(post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, status_payload(&wamid, "read")).await, 200);
    // Late and repeated updates change nothing.
    assert_eq!(
        post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, status_payload(&wamid, "delivered")).await,
        200
    );
    assert_eq!(post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, status_payload(&wamid, "read")).await, 200);
    let read = service.message(&sent.message_id).await;
    assert_eq!(read.status, pb::MessageStatus::Read as i32);
    let history: Vec<i32> = read.history.iter().map(|c| c.status).collect();
    assert_eq!(
        history,
        [
            pb::MessageStatus::Requested as i32,
            pb::MessageStatus::Dispatched as i32,
            pb::MessageStatus::Delivered as i32,
            pb::MessageStatus::Read as i32
        ]
    );

    // The verify-token handshake.
    let url = format!(
        "http://{}{path}?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
        setup.webhook_addr
    );
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.text().await.unwrap()), (200, "1158201444".to_owned()));
    let wrong = reqwest::get(url.replace("verify-me", "guess")).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    service.stop().await;
}

#[tokio::test]
async fn a_client_message_becomes_one_inbound_event() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Carla Dias"}, "wa_id": "5511933332222"}],
            "messages": [{"from": "5511933332222", "id": "wamid.IN1", "timestamp": "1795500000", "type": "text", "text": {"body": "Olá, preciso de ajuda"}}]
        }}]}]
    })
    .to_string();
    let path = "/webhooks/whatsapp/acme";
    assert_eq!(post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, payload.clone()).await, 200);
    assert_eq!(post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, payload).await, 200, "a repeat is fine");
    let payloads = common::opened_payloads(&setup.db.pool, "dw.messaging.v1.InboundMessageReceived").await;
    assert_eq!(payloads.len(), 1, "recorded once");
    let event = pb::InboundMessageReceived::decode(payloads[0].as_slice()).unwrap();
    assert_eq!(
        (event.phone.as_str(), event.contact_name.as_str(), event.text.as_str(), event.channel),
        ("+5511933332222", "Carla Dias", "Olá, preciso de ajuda", pb::Channel::Whatsapp as i32)
    );
    service.stop().await;
}

/// What SMS callbacks recorded: inbound events and parked statuses.
async fn sms_records(setup: &Setup) -> (i64, i64) {
    let inbound: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'dw.messaging.v1.InboundMessageReceived'")
            .fetch_one(&setup.db.pool)
            .await
            .unwrap();
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM parked_statuses").fetch_one(&setup.db.pool).await.unwrap();
    (inbound, parked)
}

#[tokio::test]
async fn sms_callbacks_signed_like_twilio_are_accepted_and_any_other_signature_records_nothing() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let template = service.template(pb::Channel::Sms, "notice", "Aviso para {{1}}").await;
    let sent = send(&service, &template, "+5511944443333").await.unwrap();
    let sid = service.until(&sent.message_id, |m| !m.provider_message_id.is_empty()).await.provider_message_id;
    let status_path = "/webhooks/sms/acme/status";
    let inbound_path = "/webhooks/sms/acme/inbound";
    let public = |path: &str| format!("{PUBLIC_WEBHOOK_BASE}{path}");
    let delivered = format!("AccountSid={ACCOUNT_SID}&MessageSid={sid}&MessageStatus=delivered&To=%2B5511944443333");
    let inbound = format!("AccountSid={ACCOUNT_SID}&MessageSid=SMin1&From=%2B5511944443333&Body=Ol%C3%A1");

    // Refused with 401, recording nothing: another token, no signature, a signature that is no
    // digest, the URL the request arrived on (not the public one), the other endpoint's URL,
    // another tenant's path, the public URL without the query it was called with.
    for (path, body) in [(status_path, &delivered), (inbound_path, &inbound)] {
        let other = if path == status_path { inbound_path } else { status_path };
        assert_eq!(setup.post_sms(path, "not-the-auth-token", body).await, 401, "{path}: another token");
        assert_eq!(setup.post_form(path, None, body).await, 401, "{path}: unsigned");
        assert_eq!(setup.post_form(path, Some("c2lnbmVk"), body).await, 401, "{path}: no digest");
        let local = format!("http://{}{path}", setup.webhook_addr);
        assert_eq!(setup.post_sms_signed_for(path, &local, SMS_SECRET, body).await, 401, "{path}: local URL");
        assert_eq!(setup.post_sms_signed_for(path, &public(other), SMS_SECRET, body).await, 401, "{path}: other URL");
        let globex = public(&path.replace("acme", "globex"));
        assert_eq!(setup.post_sms_signed_for(path, &globex, SMS_SECRET, body).await, 401, "{path}: other tenant");
        let with_query = format!("{path}?attempt=2");
        assert_eq!(setup.post_sms_signed_for(&with_query, &public(path), SMS_SECRET, body).await, 401, "{path}");
    }
    // A parameter changed after signing: the status, the sender, the text, or one added.
    let signature_of = |path: &str, body: &str| {
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        twilio_signature::signature(SMS_SECRET, &public(path), &params)
    };
    let signed = signature_of(status_path, &delivered);
    let tampered = delivered.replace("MessageStatus=delivered", "MessageStatus=failed");
    assert_eq!(setup.post_form(status_path, Some(&signed), &tampered).await, 401);
    let signed = signature_of(inbound_path, &inbound);
    for tampered in [
        inbound.replace("From=%2B5511944443333", "From=%2B5511900000000"),
        inbound.replace("Body=Ol%C3%A1", "Body=STOP"),
        format!("{inbound}&Body=STOP"),
    ] {
        assert_eq!(setup.post_form(inbound_path, Some(&signed), &tampered).await, 401, "{tampered}");
    }
    // More parameters than any callback carries: refused before the work of checking them.
    let crowded = format!("{inbound}{}", "&X=1".repeat(300));
    assert_eq!(setup.post_sms(inbound_path, SMS_SECRET, &crowded).await, 413);
    assert_eq!(service.message(&sent.message_id).await.status, pb::MessageStatus::Dispatched as i32);
    assert_eq!(sms_records(&setup).await, (0, 0), "nothing recorded");
    let opted_out: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id LIKE 'optout:%'")
        .fetch_one(&setup.db.pool)
        .await
        .unwrap();
    assert_eq!(opted_out, 0);

    // Signed like Twilio for the public URL: accepted, in any parameter order, with its query.
    assert_eq!(setup.post_sms(status_path, SMS_SECRET, &delivered).await, 200);
    assert_eq!(service.message(&sent.message_id).await.status, pb::MessageStatus::Delivered as i32);
    let reordered: Vec<&str> = inbound.split('&').rev().collect();
    assert_eq!(setup.post_sms(&format!("{inbound_path}?attempt=2"), SMS_SECRET, &reordered.join("&")).await, 200);
    assert_eq!(sms_records(&setup).await, (1, 0));
    service.stop().await;
}

#[tokio::test]
async fn stop_blocks_later_sms_until_start() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let sms = service.template(pb::Channel::Sms, "reminder", "Lembrete para {{1}}").await;
    let inbound = |text: &str, sid: &str| {
        format!("AccountSid={ACCOUNT_SID}&From=%2B5511944443333&To=%2B15550001111&Body={text}&MessageSid={sid}")
    };
    let path = "/webhooks/sms/acme/inbound";
    assert_eq!(setup.post_sms(path, "wrong-auth-token", &inbound("STOP", "SM1")).await, 401);
    send(&service, &sms, "+5511944443333").await.unwrap();

    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("stop", "SM2")).await, 200);
    let status = send(&service, &sms, "+5511944443333").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(dw_grpc_kit::errors::reason_of(&status).as_deref(), Some("SMS_OPTED_OUT"));
    // Other numbers and WhatsApp are not affected; START lifts it.
    send(&service, &sms, "+5511944440000").await.unwrap();
    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("START", "SM3")).await, 200);
    send(&service, &sms, "+5511944443333").await.unwrap();
    let consent: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id LIKE 'optout:%' ORDER BY global_position")
            .fetch_all(&setup.db.pool)
            .await
            .unwrap();
    assert_eq!(consent, ["dw.messaging.v1.ContactOptedOut", "dw.messaging.v1.ContactOptedIn"]);
    // A plain SMS is a client message.
    assert_eq!(setup.post_sms(path, SMS_SECRET, &inbound("Quero+remarcar", "SM4")).await, 200);
    let inbound_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'dw.messaging.v1.InboundMessageReceived'")
            .fetch_one(&setup.db.pool)
            .await
            .unwrap();
    assert_eq!(inbound_events, 1);
    service.stop().await;
}

#[tokio::test]
async fn statuses_that_overtake_their_dispatch_are_parked_then_applied_in_order() {
    let setup = Setup::new().await;
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let template = service.template(pb::Channel::Whatsapp, "early", "Oi {{1}}").await;
    let path = "/webhooks/whatsapp/acme";
    // The provider reports on an id we have not recorded yet (its webhook overtook our commit),
    // read before delivered: both are parked, and a repeat changes nothing.
    for status in ["read", "delivered", "read"] {
        assert_eq!(
            post(&setup, path, "X-Hub-Signature-256", WHATSAPP_SECRET, status_payload("wamid.EARLY", status)).await,
            200
        );
    }
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM parked_statuses WHERE provider_message_id = 'wamid.EARLY'")
            .fetch_one(&setup.db.pool)
            .await
            .unwrap();
    assert_eq!(parked, 2);

    // The send whose dispatch gets that id: the parked statuses apply, in order, once.
    setup.whatsapp.answer_next(
        200,
        r#"{"messaging_product":"whatsapp","contacts":[{"input":"+5511987654321","wa_id":"5511987654321"}],"messages":[{"id":"wamid.EARLY"}]}"#,
    );
    let sent = send(&service, &template, "+5511987654321").await.unwrap();
    let read = service.until(&sent.message_id, |m| m.status == pb::MessageStatus::Read as i32).await;
    assert_eq!(read.provider_message_id, "wamid.EARLY");
    let history: Vec<i32> = read.history.iter().map(|c| c.status).collect();
    assert_eq!(
        history,
        [
            pb::MessageStatus::Requested as i32,
            pb::MessageStatus::Dispatched as i32,
            pb::MessageStatus::Delivered as i32,
            pb::MessageStatus::Read as i32
        ]
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_statuses").fetch_one(&setup.db.pool).await.unwrap();
    assert_eq!(left, 0, "applied statuses are no longer parked");
    service.stop().await;
}

#[tokio::test]
async fn a_redelivered_request_records_the_answer_the_provider_already_gave() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let template = service.template(pb::Channel::Whatsapp, "kept", "Oi {{1}}").await;
    let sent = send(&service, &template, "+5511987654321").await.unwrap();
    service.stop().await;
    // A dispatcher got the provider's answer and kept it, then died before recording it.
    sqlx::query(
        "INSERT INTO message_dispatch (tenant_id, message_id, state, provider_message_id, attempts) \
         VALUES ('acme', $1, 'accepted', 'wamid.KEPT', 2)",
    )
    .bind(uuid::Uuid::parse_str(&sent.message_id).unwrap())
    .execute(&setup.db.pool)
    .await
    .unwrap();

    // The request is delivered again: the kept answer is recorded, nothing is sent.
    let service = setup.start(true).await;
    service.configure_providers("acme").await;
    let dispatched = service.until(&sent.message_id, |m| m.status == pb::MessageStatus::Dispatched as i32).await;
    assert_eq!(dispatched.provider_message_id, "wamid.KEPT");
    assert!(dispatched.history.last().unwrap().detail.starts_with("2 attempt(s)"), "{dispatched:?}");
    assert!(setup.whatsapp.received().is_empty(), "the provider is not called again");
    service.stop().await;
}
