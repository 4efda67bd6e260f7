//! The notifications service against real Postgres and NATS, fed with events published on
//! JetStream the way messaging, distribution and agent-sessions publish them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use std::time::Duration;

use common::{Harness, authed, eventually, publish, start, start_with, token};

use dw_auth::Role;
use dw_proto::distribution::v1 as distribution;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use futures::StreamExt;
use prost::Message;
use tonic::Code;

async fn requested(h: &Harness, tenant: &str, agent: &str, channel: messaging::Channel) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let message = messaging::Message {
        message_id: id.clone(),
        template_id: uuid::Uuid::now_v7().to_string(),
        template_name: "order_shipped".into(),
        channel: channel as i32,
        recipient_phone: "+5511987654321".into(),
        rendered_body: "Olá".into(),
        agent_id: agent.into(),
        status: messaging::MessageStatus::Requested as i32,
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    let event = messaging::MessageRequested { message: Some(message) };
    publish(h, &h.messaging, tenant, "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;
    id
}

async fn list(
    h: &Harness,
    bearer: &str,
    request: pb::ListNotificationsRequest,
) -> Result<pb::ListNotificationsResponse, tonic::Status> {
    NotificationServiceClient::new(h.channel.clone())
        .list_notifications(authed(bearer, request))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn the_log_filters_by_channel_and_respects_visibility() {
    let h = start().await;
    let manager = token("acme", "boss", Role::Manager);
    let whatsapp = requested(&h, "acme", "ana", messaging::Channel::Whatsapp).await;
    requested(&h, "acme", "bruno", messaging::Channel::Sms).await;
    requested(&h, "globex", "zeca", messaging::Channel::Sms).await;
    let dispatched = messaging::MessageDispatched {
        message_id: whatsapp.clone(),
        provider_message_id: "wamid.1".into(),
        attempts: 1,
        dispatched_at: None,
    };
    publish(
        &h,
        &h.messaging,
        "acme",
        "message.dispatched",
        "dw.messaging.v1.MessageDispatched",
        dispatched.encode_to_vec(),
    )
    .await;
    let delivered = messaging::MessageDelivered { message_id: whatsapp.clone(), delivered_at: None };
    publish(
        &h,
        &h.messaging,
        "acme",
        "message.delivered",
        "dw.messaging.v1.MessageDelivered",
        delivered.encode_to_vec(),
    )
    .await;

    let all = eventually("the log", async || {
        let all = list(&h, &manager, pb::ListNotificationsRequest::default()).await.unwrap();
        let delivered = all.notifications.iter().any(|n| n.status == messaging::MessageStatus::Delivered as i32);
        (all.notifications.len() == 2 && delivered).then_some(all)
    })
    .await;
    assert_eq!(all.notifications.len(), 2, "another tenant's send is not listed");
    let only_whatsapp = list(
        &h,
        &manager,
        pb::ListNotificationsRequest { channel: messaging::Channel::Whatsapp as i32, ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(only_whatsapp.notifications.len(), 1);
    let send = &only_whatsapp.notifications[0];
    assert_eq!((send.message_id.as_str(), send.agent_id.as_str()), (whatsapp.as_str(), "ana"));
    let timeline: Vec<i32> = send.timeline.iter().map(|c| c.status).collect();
    assert_eq!(
        timeline,
        [
            messaging::MessageStatus::Requested as i32,
            messaging::MessageStatus::Dispatched as i32,
            messaging::MessageStatus::Delivered as i32
        ]
    );
    let sms = list(
        &h,
        &manager,
        pb::ListNotificationsRequest { channel: messaging::Channel::Sms as i32, ..Default::default() },
    )
    .await;
    assert!(sms.unwrap().notifications.iter().all(|n| n.channel == messaging::Channel::Sms as i32));

    // Pages: one at a time, newest first, while a new send arrives.
    let first = list(&h, &manager, pb::ListNotificationsRequest { page_size: 1, ..Default::default() }).await.unwrap();
    requested(&h, "acme", "ana", messaging::Channel::Sms).await;
    let second = list(
        &h,
        &manager,
        pb::ListNotificationsRequest { page_size: 1, page_token: first.next_page_token, ..Default::default() },
    )
    .await
    .unwrap();
    assert_ne!(first.notifications[0].message_id, second.notifications[0].message_id);
    assert_eq!(second.notifications[0].message_id, whatsapp, "the older page is stable");

    // Agents need notifications.view, then see only their own.
    let ana = token("acme", "ana", Role::Agent);
    assert_eq!(
        list(&h, &ana, pb::ListNotificationsRequest::default()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let grant = dw_proto::agentsessions::v1::PermissionGranted {
        agent_id: "ana".into(),
        permission: "notifications.view".into(),
        granted_by: "boss".into(),
    };
    publish(
        &h,
        &h.sessions,
        "acme",
        "agent.permission_granted",
        "dw.agentsessions.v1.PermissionGranted",
        grant.encode_to_vec(),
    )
    .await;
    let mine =
        eventually("the grant", async || list(&h, &ana, pb::ListNotificationsRequest::default()).await.ok()).await;
    assert!(!mine.notifications.is_empty());
    assert!(mine.notifications.iter().all(|n| n.agent_id == "ana"));
}

#[tokio::test]
async fn client_messages_reach_their_agent_and_resumes_miss_nothing() {
    let h = start().await;
    let ana = token("acme", "ana", Role::Agent);
    let bruno = token("acme", "bruno", Role::Agent);
    let mut client = NotificationServiceClient::new(h.channel.clone());
    let mut ana_stream = client
        .subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 0, backlog: 0 }))
        .await
        .unwrap()
        .into_inner();
    let mut bruno_stream = client
        .subscribe(authed(&bruno, pb::SubscribeRequest { after_sequence: 0, backlog: 0 }))
        .await
        .unwrap()
        .into_inner();

    let task = uuid::Uuid::now_v7().to_string();
    let assigned = distribution::TaskAssigned {
        task_id: task.clone(),
        agent_id: "ana".into(),
        department_id: "support".into(),
        ..Default::default()
    };
    publish(&h, &h.distribution, "acme", "task.assigned", "dw.distribution.v1.TaskAssigned", assigned.encode_to_vec())
        .await;
    let message = distribution::TaskMessageRecorded {
        task_id: task.clone(),
        message_id: uuid::Uuid::now_v7().to_string(),
        text: "Olá, alguém aí?".into(),
        received_at: None,
        agent_id: "ana".into(),
    };
    publish(
        &h,
        &h.distribution,
        "acme",
        "task.message_recorded",
        "dw.distribution.v1.TaskMessageRecorded",
        message.encode_to_vec(),
    )
    .await;

    let next = async |stream: &mut tonic::Streaming<pb::AgentNotification>| {
        tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("within 10 s").unwrap().unwrap()
    };
    let first = next(&mut ana_stream).await;
    let second = next(&mut ana_stream).await;
    assert_eq!((first.sequence, first.kind), (1, pb::agent_notification::Kind::TaskAssigned as i32));
    assert_eq!(
        (second.sequence, second.kind, second.body.as_str()),
        (2, pb::agent_notification::Kind::ClientMessage as i32, "Olá, alguém aí?")
    );
    assert_eq!(second.task_id, task);
    assert!(tokio::time::timeout(Duration::from_millis(500), bruno_stream.next()).await.is_err(), "nothing for bruno");

    // A client that saw 1 resumes and gets exactly 2, then live ones.
    let mut resumed = client
        .subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 1, backlog: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut resumed).await.sequence, 2);
    let again = distribution::TaskMessageRecorded {
        text: "Oi?".into(),
        message_id: uuid::Uuid::now_v7().to_string(),
        ..message
    };
    publish(
        &h,
        &h.distribution,
        "acme",
        "task.message_recorded",
        "dw.distribution.v1.TaskMessageRecorded",
        again.encode_to_vec(),
    )
    .await;
    assert_eq!(next(&mut resumed).await.sequence, 3);
    assert_eq!(next(&mut ana_stream).await.sequence, 3);

    // A new tab asks for the latest two kept ones first, then gets live ones.
    let mut fresh = client
        .subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 0, backlog: 2 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((next(&mut fresh).await.sequence, next(&mut fresh).await.sequence), (2, 3));
    let mut bigger = client
        .subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 0, backlog: 50 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut bigger).await.sequence, 1, "a backlog larger than what is kept starts at the first");
    let refused =
        client.subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 0, backlog: 101 })).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(dw_grpc_kit::errors::violated_fields(&refused), vec!["backlog"]);
}

#[tokio::test]
async fn an_idle_subscription_gets_heartbeats_between_its_notifications() {
    let h = start_with(|config| config.service.stream_heartbeat = Duration::from_secs(1)).await;
    let ana = token("acme", "ana", Role::Agent);
    let mut client = NotificationServiceClient::new(h.channel.clone());
    let mut stream = client
        .subscribe(authed(&ana, pb::SubscribeRequest { after_sequence: 0, backlog: 0 }))
        .await
        .unwrap()
        .into_inner();
    let next = async |stream: &mut tonic::Streaming<pb::AgentNotification>| {
        tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("within 10 s").unwrap().unwrap()
    };
    // Idle: a heartbeat, which carries nothing else (no sequence to resume after).
    assert_eq!(next(&mut stream).await, pb::AgentNotification { heartbeat: true, ..Default::default() });

    let assigned = distribution::TaskAssigned {
        task_id: uuid::Uuid::now_v7().to_string(),
        agent_id: "ana".into(),
        department_id: "support".into(),
        ..Default::default()
    };
    publish(&h, &h.distribution, "acme", "task.assigned", "dw.distribution.v1.TaskAssigned", assigned.encode_to_vec())
        .await;
    let mut notification = next(&mut stream).await;
    while notification.heartbeat {
        notification = next(&mut stream).await;
    }
    assert_eq!((notification.sequence, notification.task_id.as_str()), (1, assigned.task_id.as_str()));
    // Idle again: heartbeats again.
    assert!(next(&mut stream).await.heartbeat);
}

#[derive(Clone, Default)]
struct PushService {
    received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>,
}

async fn push_endpoint(
    axum::extract::State(push): axum::extract::State<PushService>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    push.received.lock().unwrap().push((headers, body.to_vec()));
    if id == "gone" { axum::http::StatusCode::GONE } else { axum::http::StatusCode::CREATED }
}

#[tokio::test]
async fn a_client_message_is_pushed_encrypted_with_vapid_and_gone_subscriptions_are_dropped() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey};

    let h = start().await;
    let push = PushService::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/push/{id}", axum::routing::post(push_endpoint)).with_state(push.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ana = token("acme", "ana", Role::Agent);
    let mut client = NotificationServiceClient::new(h.channel.clone());
    let vapid = client
        .get_vapid_public_key(authed(&ana, pb::GetVapidPublicKeyRequest {}))
        .await
        .unwrap()
        .into_inner()
        .public_key;

    // The browser's subscription keys, held by the test.
    let browser_secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let browser_public = URL_SAFE_NO_PAD.encode(browser_secret.public_key().to_sec1_bytes());
    let auth_bytes: [u8; 16] = *b"0123456789abcdef";
    let auth = URL_SAFE_NO_PAD.encode(auth_bytes);
    for endpoint in [format!("{base}/push/ana-laptop"), format!("{base}/push/gone")] {
        client
            .enable_browser_notifications(authed(
                &ana,
                pb::EnableBrowserNotificationsRequest {
                    request_id: uuid::Uuid::now_v7().to_string(),
                    endpoint,
                    p256dh: browser_public.clone(),
                    auth: auth.clone(),
                },
            ))
            .await
            .unwrap();
    }
    let bad = client
        .enable_browser_notifications(authed(
            &ana,
            pb::EnableBrowserNotificationsRequest {
                request_id: "x".into(),
                endpoint: format!("{base}/push/x"),
                p256dh: "nope".into(),
                auth: auth.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&bad), vec!["p256dh"]);

    let message = distribution::TaskMessageRecorded {
        task_id: uuid::Uuid::now_v7().to_string(),
        message_id: uuid::Uuid::now_v7().to_string(),
        text: "Olá, preciso de ajuda".into(),
        received_at: None,
        agent_id: "ana".into(),
    };
    publish(
        &h,
        &h.distribution,
        "acme",
        "task.message_recorded",
        "dw.distribution.v1.TaskMessageRecorded",
        message.encode_to_vec(),
    )
    .await;
    let received = eventually("two pushes", async || {
        let received = push.received.lock().unwrap().clone();
        (received.len() >= 2).then_some(received)
    })
    .await;
    let (headers, body) = received.iter().find(|(h, _)| h.contains_key("authorization")).unwrap();
    assert_eq!(headers.get("content-encoding").unwrap(), "aes128gcm");
    assert_eq!(headers.get("ttl").unwrap(), "60");
    assert_eq!(headers.get("urgency").unwrap(), "high");

    // VAPID: `vapid t=<jwt>, k=<public key>`; the JWT verifies with the service's public key.
    let authorization = headers.get("authorization").unwrap().to_str().unwrap();
    let token_part = authorization.trim_start_matches("vapid t=").split(',').next().unwrap();
    assert!(authorization.contains(&format!("k={vapid}")), "{authorization}");
    let key = ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(&vapid).unwrap()).unwrap();
    let claims = key.verify_token::<serde_json::Value>(token_part, None).unwrap();
    assert!(claims.audiences.is_some(), "the audience is the push service's origin");

    // The body decrypts, with the browser's private key, to the notification.
    let plain =
        web_push_native::decrypt(body.clone(), &browser_secret, &web_push_native::Auth::clone_from_slice(&auth_bytes))
            .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(payload["body"], "Olá, preciso de ajuda");

    // The push service answered 410 for one subscription: it is gone.
    let remaining = eventually("the gone subscription removed", async || {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM push_subscriptions").fetch_one(&h._db.pool).await.unwrap();
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(remaining, 1);

    // The client is erased in distribution: their words leave the agent's log and the pushes
    // kept here; the notifications themselves (kind, task, time) stay.
    let pool = &h._db.pool;
    let bodies = async || -> Vec<String> {
        let sql = "SELECT body FROM agent_notifications WHERE task_id = $1::uuid \
                   UNION ALL SELECT payload::jsonb ->> 'body' FROM push_jobs WHERE payload::jsonb ->> 'task_id' = $1";
        sqlx::query_scalar(sql).bind(&message.task_id).fetch_all(pool).await.unwrap()
    };
    let before = bodies().await;
    assert!(before.len() >= 2 && before.iter().all(|b| b == "Olá, preciso de ajuda"), "{before:?}");
    let erased = distribution::ClientDataErased {
        erasure_id: uuid::Uuid::now_v7().to_string(),
        task_ids: vec![message.task_id.clone()],
        reason: "LGPD request".into(),
        erased_by: "manager-1".into(),
        ..Default::default()
    };
    publish(
        &h,
        &h.distribution,
        "acme",
        "task.client_data_erased",
        "dw.distribution.v1.ClientDataErased",
        erased.encode_to_vec(),
    )
    .await;
    let after = eventually("the client's words erased", async || {
        let after = bodies().await;
        after.iter().all(String::is_empty).then_some(after)
    })
    .await;
    assert_eq!(after.len(), before.len());
}

/// A push service whose `/push/slow` answers only when released (or after 4 s, within the
/// tests' 5 s push timeout); any other endpoint answers at once.
#[derive(Clone, Default)]
struct GatedPushService {
    started: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    answered: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

async fn gated_push_endpoint(
    axum::extract::State(push): axum::extract::State<GatedPushService>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::http::StatusCode {
    push.started.lock().unwrap().push(id.clone());
    if id == "slow" {
        let _ = tokio::time::timeout(Duration::from_secs(4), push.release.notified()).await;
    }
    push.answered.lock().unwrap().push(id);
    axum::http::StatusCode::CREATED
}

#[tokio::test]
async fn pushes_go_out_at_commit_and_a_slow_push_service_holds_up_only_its_own() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // The worker's poll is five minutes off: only the announcement at commit starts the sends.
    let h = start_with(|config| config.push.poll_interval = Duration::from_secs(300)).await;
    let push = GatedPushService::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app =
        axum::Router::new().route("/push/{id}", axum::routing::post(gated_push_endpoint)).with_state(push.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let browser_secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let p256dh = URL_SAFE_NO_PAD.encode(browser_secret.public_key().to_sec1_bytes());
    let auth = URL_SAFE_NO_PAD.encode(*b"0123456789abcdef");
    let mut client = NotificationServiceClient::new(h.channel.clone());
    // ana's browser is behind the slow push service, bia's behind a prompt one.
    for (agent, endpoint) in [("ana", "slow"), ("bia", "fast")] {
        let bearer = token("acme", agent, Role::Agent);
        let request = pb::EnableBrowserNotificationsRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            endpoint: format!("{base}/push/{endpoint}"),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        };
        client.enable_browser_notifications(authed(&bearer, request)).await.unwrap();
    }
    let message_for = |agent: &str| distribution::TaskMessageRecorded {
        task_id: uuid::Uuid::now_v7().to_string(),
        message_id: uuid::Uuid::now_v7().to_string(),
        text: format!("para {agent}"),
        received_at: None,
        agent_id: agent.into(),
    };
    let recorded = "dw.distribution.v1.TaskMessageRecorded";
    publish(&h, &h.distribution, "acme", "task.message_recorded", recorded, message_for("ana").encode_to_vec()).await;
    eventually("ana's push under way", async || {
        push.started.lock().unwrap().contains(&"slow".to_owned()).then_some(())
    })
    .await;

    // While ana's push waits for its service, bia's goes out.
    publish(&h, &h.distribution, "acme", "task.message_recorded", recorded, message_for("bia").encode_to_vec()).await;
    eventually("bia's push answered", async || {
        push.answered.lock().unwrap().contains(&"fast".to_owned()).then_some(())
    })
    .await;
    assert!(!push.answered.lock().unwrap().contains(&"slow".to_owned()), "bia's push waited for ana's push service");

    push.release.notify_one();
    let sent = eventually("both pushes recorded as sent", async || {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM push_jobs WHERE status = 'sent'")
            .fetch_one(&h._db.pool)
            .await
            .unwrap();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(sent, 2);
}
