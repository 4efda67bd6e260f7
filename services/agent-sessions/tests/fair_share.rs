//! Fair share through the real service: a tenant over its mutation rate gets `RESOURCE_EXHAUSTED`
//! with a `RetryInfo`, before any handler runs and without changing anything, while another
//! tenant's commands and the flooding tenant's reads go through; after the advised wait the
//! flooding tenant is admitted again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestService, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::errors::reason_of;
use dw_grpc_kit::fair_share::{FairShareConfig, Rate};
use dw_proto::agentsessions::v1 as pb;
use sqlx::Row;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn a_tenant_over_its_rate_waits_while_other_tenants_and_its_reads_go_through() {
    let service = TestService::start_with(|config| {
        config.fair_share = FairShareConfig { mutations: Rate::per_second(3.0), ..FairShareConfig::unlimited() };
    })
    .await;
    // Seeding spends 3 of each tenant's 6-call burst (settings, one agent, its department);
    // starting the day a 4th.
    service.seed("acme", &["ana"], false).await;
    service.seed("globex", &["gus"], false).await;
    let ana = token("acme", "ana", &[Role::Agent]);
    let gus = token("globex", "gus", &[Role::Agent]);
    let start = || pb::StartServiceDayRequest { request_id: rid() };
    let brk = || pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() };
    let end = || pb::EndBreakRequest { request_id: rid(), confirm: true };

    service.day().start_service_day(authed(&ana, start())).await.unwrap();
    let events_before: i64 =
        sqlx::query("SELECT count(*) AS n FROM events").fetch_one(&service.db.pool).await.unwrap().get("n");
    let mut refused = None;
    for round in 0..20 {
        let result = if round % 2 == 0 {
            service.day().start_break(authed(&ana, brk())).await.map(|_| ())
        } else {
            service.day().end_break(authed(&ana, end())).await.map(|_| ())
        };
        if let Err(status) = result {
            refused = Some((round, status));
            break;
        }
    }
    let (round, status) = refused.expect("the flood is refused within its burst");
    assert!(round >= 1, "the burst admits some first");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("TENANT_RATE_LIMITED"));
    let retry = status.get_details_retry_info().and_then(|info| info.retry_delay).expect("RetryInfo");
    assert!(retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_millis(334), "{retry:?}");

    // The refusal changed nothing; the other tenant and the flooding tenant's reads go through.
    let events_after: i64 =
        sqlx::query("SELECT count(*) AS n FROM events").fetch_one(&service.db.pool).await.unwrap().get("n");
    assert_eq!(events_after - events_before, round as i64, "only the admitted commands appended");
    service.day().start_service_day(authed(&gus, start())).await.unwrap();
    service.day().get_my_state(authed(&ana, pb::GetMyStateRequest {})).await.unwrap();

    // After the advised wait, acme is admitted again.
    tokio::time::sleep(retry).await;
    let next = if round % 2 == 0 {
        service.day().start_break(authed(&ana, brk())).await.map(|_| ())
    } else {
        service.day().end_break(authed(&ana, end())).await.map(|_| ())
    };
    next.unwrap();
    service.stop().await;
}

#[tokio::test]
async fn a_token_without_roles_is_denied_before_it_spends_its_tenants_budget() {
    let service = TestService::start_with(|config| {
        config.fair_share = FairShareConfig { mutations: Rate::per_second(2.0), ..FairShareConfig::unlimited() };
    })
    .await;
    service.seed("acme", &["ana"], false).await;
    let nobody = token("acme", "ana", &[]);
    for _ in 0..5 {
        let request = authed(&nobody, pb::StartServiceDayRequest { request_id: rid() });
        let status = service.day().start_service_day(request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&status).as_deref(), Some("ROLE_REQUIRED"));
    }
    service.stop().await;
}

#[tokio::test]
async fn open_streams_do_not_hold_their_tenants_in_flight_calls() {
    let service = TestService::start_with(|config| {
        config.fair_share = FairShareConfig { max_in_flight_per_tenant: 2, ..FairShareConfig::unlimited() };
    })
    .await;
    service.seed("acme", &["ana"], false).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    // More open watch streams than the tenant may have calls in flight...
    let mut streams = Vec::new();
    for _ in 0..4 {
        let request = authed(&manager, pb::WatchAgentStatusesRequest { department_id: String::new() });
        streams.push(service.admin().watch_agent_statuses(request).await.unwrap().into_inner());
    }
    // ...and the tenant's calls still go through: a stream counts until its response starts.
    for _ in 0..4 {
        service.admin().get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap();
    }
    drop(streams);
    service.stop().await;
}
