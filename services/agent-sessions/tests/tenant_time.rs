//! Tenants' time zones and the break-reason rule, against real Postgres and NATS: the zone is a
//! masked setting, a service day carries its local date, the date filters of GetMyInformation
//! read the tenant's calendar, and a tenant with break reasons needs one on every break unless it
//! made the reason optional.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::{TestService, authed, reason_of, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_tenant_time::TenantZone;
use sqlx::Row;
use tonic::Code;

fn settings_update(paths: &[&str], settings: pb::TenantSettings) -> pb::UpdateTenantSettingsRequest {
    pb::UpdateTenantSettingsRequest {
        request_id: rid(),
        settings: Some(settings),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() }),
        expected_version: None,
    }
}

fn zone(name: &str) -> pb::TenantSettings {
    pb::TenantSettings { time_zone: name.into(), ..Default::default() }
}

async fn event_count(service: &TestService) -> i64 {
    sqlx::query("SELECT count(*) AS n FROM events").fetch_one(&service.db.pool).await.unwrap().get("n")
}

#[tokio::test]
async fn a_time_zone_is_a_masked_setting_and_an_unknown_one_is_invalid_on_the_field_and_changes_nothing() {
    let service = TestService::start().await;
    service.seed("acme", &[], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let before =
        admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();
    assert_eq!(before.time_zone, "UTC", "a tenant that never set a zone is on UTC");

    let after = admin
        .update_tenant_settings(authed(&manager, settings_update(&["time_zone"], zone("America/Sao_Paulo"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.time_zone, "America/Sao_Paulo");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.break_reasons, before.break_reasons, "only the zone changed");
    assert_eq!(after.auto_distribution_enabled, before.auto_distribution_enabled);

    let events_before = event_count(&service).await;
    for unknown in ["Mars/Olympus_Mons", "america/sao paulo", "UTC-3"] {
        let status = admin
            .update_tenant_settings(authed(&manager, settings_update(&["time_zone"], zone(unknown))))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{unknown}: {status:?}");
        assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["settings.time_zone".to_owned()]);
        assert!(status.message().contains("IANA"), "{status:?}");
    }
    assert_eq!(event_count(&service).await, events_before, "nothing appended");
    let read = admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();
    assert_eq!(read, after);
    service.stop().await;
}

#[tokio::test]
async fn a_service_day_carries_the_tenants_local_date_and_get_my_information_filters_by_it() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let before = Utc::now();
    let zone_name = dw_testkit::zone_with_another_date_than_utc(before);
    let tenant_zone = TenantZone::parse(zone_name).unwrap();
    service
        .admin()
        .update_tenant_settings(authed(&manager, settings_update(&["time_zone"], zone(zone_name))))
        .await
        .unwrap();

    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let after = Utc::now();
    let local_dates = [tenant_zone.local_date(before).to_string(), tenant_zone.local_date(after).to_string()];
    let utc_date = after.date_naive().to_string();
    assert!(!local_dates.contains(&utc_date), "the zone was chosen to differ from UTC");

    let latest = day.get_my_information(authed(&agent, pb::GetMyInformationRequest::default())).await.unwrap();
    let latest = latest.into_inner();
    let service_date = latest.days[0].service_date.clone();
    assert!(local_dates.contains(&service_date), "{service_date} is the date in {zone_name}, not {utc_date}");

    let by_date = |from: &str, to: &str| pb::GetMyInformationRequest {
        from_date: from.into(),
        to_date: to.into(),
        ..Default::default()
    };
    let that_day = day.get_my_information(authed(&agent, by_date(&service_date, &service_date))).await.unwrap();
    assert_eq!(that_day.into_inner().days.len(), 1, "the local date finds the day");
    let utc_day = day.get_my_information(authed(&agent, by_date(&utc_date, &utc_date))).await.unwrap();
    assert!(utc_day.into_inner().days.is_empty(), "the UTC date is another day for this tenant");
    let open_end = day.get_my_information(authed(&agent, by_date(&service_date, ""))).await.unwrap();
    assert_eq!(open_end.into_inner().days.len(), 1);

    for (request, field) in [(by_date("2026-13-01", ""), "from_date"), (by_date("2026-11-25", "2026-11-24"), "to_date")]
    {
        let status = day.get_my_information(authed(&agent, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec![field.to_owned()]);
    }

    // The day ends later the same: still one day of the date it started.
    day.end_service_day(authed(&agent, pb::EndServiceDayRequest { request_id: rid() })).await.unwrap();
    let ended = day.get_my_information(authed(&agent, by_date(&service_date, &service_date))).await.unwrap();
    let ended = ended.into_inner();
    assert_eq!(ended.days.len(), 1);
    assert!(ended.days[0].ended_at.is_some());
    assert_eq!(ended.days[0].service_date, service_date);
    service.stop().await;
}

#[tokio::test]
async fn with_break_reasons_a_break_must_name_a_known_one_unless_the_tenant_makes_it_optional() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let required = pb::TenantSettings { break_reason_optional: false, ..Default::default() };
    let settings =
        admin.update_tenant_settings(authed(&manager, settings_update(&["break_reason_optional"], required))).await;
    let settings = settings.unwrap().into_inner();
    assert!(!settings.break_reason_optional);
    assert_eq!(settings.break_reasons.len(), 1, "the tenant has break reasons");

    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let events_before = event_count(&service).await;

    let start_break = |reason: &str| pb::StartBreakRequest { request_id: rid(), reason_id: reason.into() };
    let status = day.start_break(authed(&agent, start_break(""))).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("BREAK_REASON_REQUIRED"));
    assert!(status.message().contains("break reasons"), "a message a person understands: {status:?}");
    let status = day.start_break(authed(&agent, start_break("nap"))).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("UNKNOWN_BREAK_REASON"));
    let state = day.get_my_state(authed(&agent, pb::GetMyStateRequest {})).await.unwrap().into_inner();
    assert_eq!(state.status, pb::AgentStatus::Working as i32, "nothing changed");
    assert_eq!(event_count(&service).await, events_before);

    let on_break = day.start_break(authed(&agent, start_break("lunch"))).await.unwrap().into_inner();
    assert_eq!(on_break.status, pb::AgentStatus::OnBreak as i32);
    day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await.unwrap();

    // The tenant makes the reason optional: a break without one starts.
    let optional = pb::TenantSettings { break_reason_optional: true, ..Default::default() };
    admin
        .update_tenant_settings(authed(&manager, settings_update(&["break_reason_optional"], optional)))
        .await
        .unwrap();
    let on_break = day.start_break(authed(&agent, start_break(""))).await.unwrap().into_inner();
    assert_eq!(on_break.status, pb::AgentStatus::OnBreak as i32);
    assert!(on_break.reason_id.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn a_tenant_without_break_reasons_takes_breaks_without_one() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let none = pb::TenantSettings::default();
    service
        .admin()
        .update_tenant_settings(authed(&manager, settings_update(&["break_reasons", "break_reason_optional"], none)))
        .await
        .unwrap();
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let on_break =
        day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }));
    assert_eq!(on_break.await.unwrap().into_inner().status, pb::AgentStatus::OnBreak as i32);
    service.stop().await;
}
