//! The single-notifications log's date filters are dates in the tenant's time zone, which
//! notifications learns from agent-sessions' TenantSettingsChanged (real Postgres and NATS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{TimeZone, Utc};
use common::{Harness, authed, eventually, publish, start, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::messaging::v1 as messaging;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use prost::Message as _;
use tonic::Code;

/// A template sent in `tenant` at `at`.
async fn sent_at(h: &Harness, tenant: &str, at: chrono::DateTime<Utc>) -> String {
    let message_id = uuid::Uuid::now_v7().to_string();
    let message = messaging::Message {
        message_id: message_id.clone(),
        template_name: "order_shipped".into(),
        channel: messaging::Channel::Whatsapp as i32,
        recipient_phone: "+5511987654321".into(),
        agent_id: "ana".into(),
        requested_at: Some(dw_proto::time::timestamp(at)),
        ..Default::default()
    };
    let event = messaging::MessageRequested { message: Some(message) };
    publish(h, &h.messaging, tenant, "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;
    message_id
}

async fn on_dates(h: &Harness, tenant: &str, from: &str, to: &str) -> Result<Vec<String>, tonic::Status> {
    let manager = token(tenant, "boss", Role::Manager);
    let request = pb::ListNotificationsRequest { from_date: from.into(), to_date: to.into(), ..Default::default() };
    let response =
        NotificationServiceClient::new(h.channel.clone()).list_notifications(authed(&manager, request)).await?;
    Ok(response.into_inner().notifications.into_iter().map(|n| n.message_id).collect())
}

#[tokio::test]
async fn date_filters_are_dates_in_the_tenants_time_zone() {
    let h = start().await;
    // 02:30 UTC on the 25th: 23:30 on the 24th in São Paulo.
    let late_evening = Utc.with_ymd_and_hms(2026, 11, 25, 2, 30, 0).unwrap();
    let in_sao_paulo = sent_at(&h, "acme", late_evening).await;
    let on_utc = sent_at(&h, "globex", late_evening).await;
    let settings = sessions::TenantSettingsChanged {
        time_zone: "America/Sao_Paulo".into(),
        changed_by: "manager-1".into(),
        ..Default::default()
    };
    publish(
        &h,
        &h.sessions,
        "acme",
        "tenant.settings_changed",
        "dw.agentsessions.v1.TenantSettingsChanged",
        settings.encode_to_vec(),
    )
    .await;

    let found = eventually("the send on its São Paulo date", async || {
        on_dates(&h, "acme", "2026-11-24", "2026-11-24").await.ok().filter(|ids| !ids.is_empty())
    })
    .await;
    assert_eq!(found, std::slice::from_ref(&in_sao_paulo));
    assert!(on_dates(&h, "acme", "2026-11-25", "2026-11-25").await.unwrap().is_empty(), "not the UTC date");
    assert_eq!(on_dates(&h, "acme", "2026-11-24", "").await.unwrap(), [in_sao_paulo]);

    // A tenant that never set a zone is on UTC.
    let utc_day = eventually("the UTC tenant's send", async || {
        on_dates(&h, "globex", "2026-11-25", "2026-11-25").await.ok().filter(|ids| !ids.is_empty())
    })
    .await;
    assert_eq!(utc_day, [on_utc]);
    assert!(on_dates(&h, "globex", "2026-11-24", "2026-11-24").await.unwrap().is_empty());

    // A settings event from before tenants had zones (no zone) puts the tenant back on UTC.
    let old = sessions::TenantSettingsChanged { changed_by: "manager-1".into(), ..Default::default() };
    publish(
        &h,
        &h.sessions,
        "acme",
        "tenant.settings_changed",
        "dw.agentsessions.v1.TenantSettingsChanged",
        old.encode_to_vec(),
    )
    .await;
    eventually("the tenant back on UTC", async || {
        on_dates(&h, "acme", "2026-11-25", "2026-11-25").await.ok().filter(|ids| !ids.is_empty())
    })
    .await;

    let status = on_dates(&h, "acme", "25/11/2026", "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["from_date"]);
}
