//! Protocols in the tenant's calendar, against the real services: agent-sessions announces the
//! tenant's zone, task-distribution dates protocols and counts their daily sequence in it, and
//! SearchProtocols' date filters read it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Cluster, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as pb;
use dw_tenant_time::TenantZone;
use tonic::Code;

/// Sets the tenant's zone in agent-sessions and waits until task-distribution uses it.
async fn set_zone(cluster: &Cluster, tenant: &str, zone: &str) {
    let manager = token(tenant, "manager-1", &[Role::Manager]);
    let update = sessions::UpdateTenantSettingsRequest {
        request_id: rid(),
        settings: Some(sessions::TenantSettings { time_zone: zone.into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["time_zone".into()] }),
        expected_version: None,
    };
    cluster.admin().update_tenant_settings(authed(&manager, update)).await.unwrap();
    let mut distribution = cluster.distribution();
    for _ in 0..400 {
        let settings = distribution.get_distribution_settings(authed(&manager, pb::GetDistributionSettingsRequest {}));
        if settings.await.unwrap().into_inner().time_zone == zone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task-distribution never learned that {tenant} is on {zone}");
}

fn day_prefix(zone: TenantZone, at: DateTime<Utc>) -> String {
    zone.local_date(at).format("%Y%m%d").to_string()
}

async fn search(
    cluster: &Cluster,
    tenant: &str,
    request: pb::SearchProtocolsRequest,
) -> Result<Vec<String>, tonic::Status> {
    let manager = token(tenant, "manager-1", &[Role::Manager]);
    let response = cluster.distribution().search_protocols(authed(&manager, request)).await?;
    Ok(response.into_inner().tasks.into_iter().map(|t| t.protocol).collect())
}

#[tokio::test]
async fn protocols_carry_the_date_and_daily_sequence_of_the_tenants_zone_and_date_filters_read_it() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[]).await;
    // A zone whose date differs from UTC's now: code that dated protocols in UTC fails at any hour.
    let zone_name = dw_testkit::zone_with_another_date_than_utc(Utc::now());
    let zone = TenantZone::parse(zone_name).unwrap();
    set_zone(&cluster, "acme", zone_name).await;

    let before = Utc::now();
    let first = cluster.create_task("acme", "support", "Ana Cliente", "+5511900000001").await;
    let second = cluster.create_task("acme", "support", "Bia Cliente", "+5511900000002").await;
    let after = Utc::now();
    let local_days = [day_prefix(zone, before), day_prefix(zone, after)];
    let utc_day = day_prefix(TenantZone::UTC, after);
    assert!(!local_days.contains(&utc_day), "the zone was chosen to differ from UTC");
    assert!(local_days.contains(&first.protocol[..8].to_owned()), "{} is dated in {zone_name}", first.protocol);
    assert_eq!(&second.protocol[..8], &first.protocol[..8]);
    assert_eq!(&first.protocol[8..], "000001", "the local day's sequence starts at 1");
    assert_eq!(&second.protocol[8..], "000002");

    // A tenant on UTC at the same moment: the UTC day, its own sequence.
    let utc_tenant = cluster.create_task("globex", "support", "Caio Cliente", "+5511900000003").await;
    assert_eq!(utc_tenant.protocol, format!("{}000001", utc_day));

    // Date filters are dates of the tenant's calendar.
    let local_day = zone.local_date(first.created_at.map(|t| DateTime::from_timestamp(t.seconds, 0).unwrap()).unwrap());
    let local_day = local_day.format("%Y-%m-%d").to_string();
    let by_dates = |from: &str, to: &str| pb::SearchProtocolsRequest {
        created_from_date: from.into(),
        created_to_date: to.into(),
        ..Default::default()
    };
    assert_eq!(
        search(&cluster, "acme", by_dates(&local_day, &local_day)).await.unwrap(),
        [second.protocol.clone(), first.protocol.clone()]
    );
    let utc_date = after.date_naive().format("%Y-%m-%d").to_string();
    assert!(search(&cluster, "acme", by_dates(&utc_date, &utc_date)).await.unwrap().is_empty());
    let status = search(&cluster, "acme", by_dates("2026-02-30", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["created_from_date"]);
    // The protocol prefix of the local day finds them too.
    let prefix = pb::SearchProtocolsRequest { protocol_prefix: first.protocol[..8].to_owned(), ..Default::default() };
    assert_eq!(search(&cluster, "acme", prefix).await.unwrap().len(), 2);
    cluster.stop().await;
}

#[tokio::test]
async fn a_tenant_in_sao_paulo_gets_the_date_of_sao_paulo() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[]).await;
    set_zone(&cluster, "acme", "America/Sao_Paulo").await;
    let sao_paulo = TenantZone::parse("America/Sao_Paulo").unwrap();

    let before = Utc::now();
    let task = cluster.create_task("acme", "support", "Ana Cliente", "+5511900000001").await;
    let after = Utc::now();
    // Between 21:00 and midnight there (00:00–03:00 UTC) this differs from the UTC date.
    assert!([day_prefix(sao_paulo, before), day_prefix(sao_paulo, after)].contains(&task.protocol[..8].to_owned()));
    cluster.stop().await;
}
