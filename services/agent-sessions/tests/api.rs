//! The gRPC API against real Postgres and NATS: auth, tenancy, validation, idempotency,
//! concurrency and a full agent day.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestService, authed, reason_of, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use sqlx::Row;
use tonic::Code;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let service = TestService::start().await;
    let status = service.day().get_my_state(pb::GetMyStateRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let forged = dw_auth::mint(
        &dw_auth::JwtVerifier::new(b"some-other-secret-entirely").unwrap(),
        "ana",
        "acme",
        &[Role::Agent],
        chrono::Utc::now().timestamp(),
        60,
    );
    let status = service.day().get_my_state(authed(&forged, pb::GetMyStateRequest {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    service.stop().await;
}

#[tokio::test]
async fn agents_cannot_call_admin_rpcs() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let status = service
        .admin()
        .grant_permission(authed(
            &agent,
            pb::GrantPermissionRequest {
                request_id: rid(),
                agent_id: "ana".into(),
                permission: "protocols.search".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let permissions = service.day().get_my_permissions(authed(&agent, pb::GetMyPermissionsRequest {})).await.unwrap();
    assert!(permissions.into_inner().permissions.is_empty(), "the denied grant changed nothing");
    service.stop().await;
}

#[tokio::test]
async fn another_tenants_agent_is_not_found() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let other_manager = token("globex", "boss", &[Role::Manager]);
    let status = service
        .admin()
        .get_agent(authed(&other_manager, pb::GetAgentRequest { agent_id: "ana".into() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = service
        .admin()
        .link_department(authed(
            &other_manager,
            pb::LinkDepartmentRequest { request_id: rid(), agent_id: "ana".into(), department_id: "sales".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason_of(&status).as_deref(), Some("AGENT_NOT_FOUND"));
    // The caller learns which resource is missing (google.rpc.ResourceInfo), not whose it is.
    let resource = tonic_types::StatusExt::get_details_resource_info(&status).expect("a ResourceInfo");
    assert_eq!(resource.resource_type, "dw.agentsessions.v1.Agent");
    assert_eq!(resource.resource_name, "ana");
    assert!(resource.owner.is_empty() && resource.description.contains("ana"), "{resource:?}");

    // ana's token for the other tenant does not reach her acme day either.
    let ana_elsewhere = token("globex", "ana", &[Role::Agent]);
    let status =
        service.day().start_service_day(authed(&ana_elsewhere, pb::StartServiceDayRequest { request_id: rid() })).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    service.stop().await;
}

#[tokio::test]
async fn malformed_requests_name_the_field_and_change_nothing() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut day = service.day();

    let status = day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: String::new() })).await;
    let status = status.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["request_id"]);

    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let status = day
        .notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "Not A Reason!".into() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["reason_id"]);

    let status = day
        .start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() }))
        .await
        .map(|r| r.into_inner().status);
    assert_eq!(status.unwrap(), pb::AgentStatus::OnBreak as i32);
    let status =
        day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: false })).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["confirm"]);

    let status = service
        .admin()
        .update_tenant_settings(authed(
            &manager,
            pb::UpdateTenantSettingsRequest {
                request_id: rid(),
                update_mask: None,
                expected_version: None,
                settings: Some(pb::TenantSettings {
                    auto_distribution_enabled: true,
                    exit_reasons: vec![pb::Reason { id: "ok".into(), label: String::new() }],
                    break_reasons: vec![],
                    ticket_workspace_url: "ftp://nope".into(),
                    version: 0,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = dw_grpc_kit::errors::violated_fields(&status);
    assert!(fields.contains(&"settings.exit_reasons[0].label".to_owned()), "{fields:?}");
    assert!(fields.contains(&"settings.ticket_workspace_url".to_owned()), "{fields:?}");

    let state = day.get_my_state(authed(&agent, pb::GetMyStateRequest {})).await.unwrap().into_inner();
    assert_eq!(state.status, pb::AgentStatus::OnBreak as i32, "nothing changed");
    service.stop().await;
}

#[tokio::test]
async fn invalid_transitions_are_failed_preconditions_with_a_reason() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], false).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();

    let status = day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }));
    let status = status.await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("SERVICE_DAY_NOT_STARTED"));

    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let status = day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await;
    assert_eq!(reason_of(&status.unwrap_err()).as_deref(), Some("SERVICE_DAY_ALREADY_STARTED"));

    let status =
        day.notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() }));
    let status = status.await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("AUTO_DISTRIBUTION_DISABLED"));

    let reasons = day.list_exit_reasons(authed(&agent, pb::ListExitReasonsRequest {})).await.unwrap().into_inner();
    assert!(!reasons.exit_available && reasons.exit_reasons.is_empty(), "exit not offered without auto distribution");

    day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
        .await
        .unwrap();
    let status = day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }));
    assert_eq!(reason_of(&status.await.unwrap_err()).as_deref(), Some("ALREADY_ON_BREAK"));
    service.stop().await;
}

#[tokio::test]
async fn unknown_exit_reason_is_refused() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let status = day
        .notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "vacation".into() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("UNKNOWN_EXIT_REASON"));
    service.stop().await;
}

async fn event_count(service: &TestService) -> i64 {
    sqlx::query("SELECT count(*) AS n FROM events").fetch_one(&service.db.pool).await.unwrap().get("n")
}

#[tokio::test]
async fn a_retried_request_id_returns_the_first_result_and_appends_nothing() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    let request_id = rid();
    let first =
        day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: request_id.clone() })).await;
    let first = first.unwrap().into_inner();
    let events_after_first = event_count(&service).await;

    let retry = day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: request_id.clone() }));
    let retry = retry.await.unwrap().into_inner();
    assert_eq!(retry, first, "the retry gets the first answer, not SERVICE_DAY_ALREADY_STARTED");
    assert_eq!(event_count(&service).await, events_after_first);

    // The same id for another operation is a client bug.
    let status = day.end_service_day(authed(&agent, pb::EndServiceDayRequest { request_id })).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(event_count(&service).await, events_after_first);
    service.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_break_starts_produce_exactly_one_break() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    service.day().start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut day = service.day();
        let agent = agent.clone();
        calls.spawn(async move {
            day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() }))
                .await
        });
    }
    let mut ok = 0;
    let mut refused = 0;
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert!(
                    matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                    "clear error expected, got {status:?}"
                );
                if status.code() == Code::FailedPrecondition {
                    assert_eq!(reason_of(&status).as_deref(), Some("ALREADY_ON_BREAK"));
                }
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (1, 19));
    let breaks: i64 =
        sqlx::query("SELECT count(*) AS n FROM events WHERE event_type = 'dw.agentsessions.v1.BreakStarted'")
            .fetch_one(&service.db.pool)
            .await
            .unwrap()
            .get("n");
    assert_eq!(breaks, 1);
    // The refused attempts left no read-model row either (their statements were undone whole).
    let rows: i64 =
        sqlx::query("SELECT count(*) AS n FROM service_day_breaks").fetch_one(&service.db.pool).await.unwrap().get("n");
    assert_eq!(rows, 1);
    service.stop().await;
}

fn millis(duration: Option<&prost_types::Duration>) -> i64 {
    let duration = duration.expect("duration");
    duration.seconds * 1000 + i64::from(duration.nanos / 1_000_000)
}

fn ts_micros(ts: Option<&prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp");
    ts.seconds * 1_000_000 + i64::from(ts.nanos / 1_000)
}

#[tokio::test]
async fn a_full_day_is_reported_exactly_by_get_my_information() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();

    let started = day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await;
    let started = started.unwrap().into_inner();
    assert_eq!(started.status, pb::AgentStatus::Working as i32);
    let exit =
        day.notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() }));
    assert_eq!(exit.await.unwrap().into_inner().status, pb::AgentStatus::ExitNotified as i32);
    // A break closes the exit (cause: break started).
    let on_break =
        day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() }));
    let on_break = on_break.await.unwrap().into_inner();
    assert_eq!((on_break.status, on_break.reason_label.as_str()), (pb::AgentStatus::OnBreak as i32, "Lunch"));
    day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await.unwrap();
    day.notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "end-of-shift".into() }))
        .await
        .unwrap();
    day.cancel_exit(authed(&agent, pb::CancelExitRequest { request_id: rid() })).await.unwrap();
    day.start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
        .await
        .unwrap();
    // Ending the day closes the open break.
    let ended = day.end_service_day(authed(&agent, pb::EndServiceDayRequest { request_id: rid() })).await;
    assert_eq!(ended.unwrap().into_inner().status, pb::AgentStatus::Off as i32);

    let info = day
        .get_my_information(authed(&agent, pb::GetMyInformationRequest { from: None, to: None, ..Default::default() }))
        .await;
    let info = info.unwrap().into_inner();
    assert_eq!(info.status, pb::AgentStatus::Off as i32);
    assert_eq!(info.department_ids, vec!["support"]);
    assert_eq!(info.days.len(), 1);
    let the_day = &info.days[0];
    assert_eq!(the_day.day_id, started.day_id);
    assert!(the_day.ended_at.is_some());
    assert_eq!(the_day.breaks.len(), 2);
    assert_eq!(the_day.breaks[0].reason_id, "lunch");
    assert_eq!(the_day.breaks[1].reason_id, "");
    assert!(the_day.breaks.iter().all(|b| b.ended_at.is_some()));
    let break_total: i64 = the_day.breaks.iter().map(|b| millis(b.duration.as_ref())).sum();
    assert_eq!(millis(the_day.total_break_time.as_ref()), break_total);
    for b in &the_day.breaks {
        assert_eq!(
            (ts_micros(b.ended_at.as_ref()) - ts_micros(b.started_at.as_ref())) / 1000,
            millis(b.duration.as_ref())
        );
    }
    let exits: Vec<(&str, i32)> = the_day.exits.iter().map(|e| (e.reason_id.as_str(), e.close_cause)).collect();
    assert_eq!(
        exits,
        vec![
            ("meeting", pb::ExitCloseCause::BreakStarted as i32),
            ("end-of-shift", pb::ExitCloseCause::Cancelled as i32)
        ]
    );
    assert_eq!(ts_micros(the_day.ended_at.as_ref()), ts_micros(the_day.breaks[1].ended_at.as_ref()));

    // The same day is found by date range; an empty range finds none.
    let now = chrono::Utc::now();
    let range = pb::GetMyInformationRequest {
        from: Some(agent_sessions::codec::timestamp(now - chrono::Duration::hours(1))),
        to: Some(agent_sessions::codec::timestamp(now + chrono::Duration::hours(1))),
        ..Default::default()
    };
    let by_range = day.get_my_information(authed(&agent, range)).await.unwrap().into_inner();
    assert_eq!(by_range.days, info.days);
    let past = pb::GetMyInformationRequest {
        from: Some(agent_sessions::codec::timestamp(now - chrono::Duration::days(3))),
        to: Some(agent_sessions::codec::timestamp(now - chrono::Duration::days(2))),
        ..Default::default()
    };
    assert!(day.get_my_information(authed(&agent, past)).await.unwrap().into_inner().days.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn managers_administer_agents_and_see_the_board() {
    let service = TestService::start().await;
    service.seed("acme", &["ana", "bruno"], true).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut admin = service.admin();
    let granted = admin
        .grant_permission(authed(
            &manager,
            pb::GrantPermissionRequest {
                request_id: rid(),
                agent_id: "ana".into(),
                permission: "protocols.search".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.permissions, vec!["protocols.search"]);
    let status = admin
        .grant_permission(authed(
            &manager,
            pb::GrantPermissionRequest {
                request_id: rid(),
                agent_id: "ana".into(),
                permission: "root.everything".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["permission"]);

    let ana = token("acme", "ana", &[Role::Agent]);
    let mine = service.day().get_my_permissions(authed(&ana, pb::GetMyPermissionsRequest {})).await.unwrap();
    let mine = mine.into_inner().permissions;
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].permission.as_str(), mine[0].granted_by.as_str()), ("protocols.search", "manager-1"));

    service.day().start_service_day(authed(&ana, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let board = admin
        .list_agent_statuses(authed(
            &manager,
            pb::ListAgentStatusesRequest { department_id: "support".into(), page_size: 1, page_token: String::new() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(board.agents.len(), 1);
    assert_eq!((board.agents[0].agent_id.as_str(), board.agents[0].status), ("ana", pb::AgentStatus::Working as i32));
    let next = admin
        .list_agent_statuses(authed(
            &manager,
            pb::ListAgentStatusesRequest {
                department_id: "support".into(),
                page_size: 1,
                page_token: board.next_page_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.agents.len(), 1);
    assert_eq!((next.agents[0].agent_id.as_str(), next.agents[0].status), ("bruno", pb::AgentStatus::Off as i32));
    assert!(next.next_page_token.is_empty());

    let links = service.day().get_workspace_links(authed(&ana, pb::GetWorkspaceLinksRequest {})).await.unwrap();
    assert_eq!(links.into_inner().ticket_workspace_url, "https://tickets.example.com/ws");
    service.stop().await;
}

#[tokio::test]
async fn watchers_see_the_board_then_every_change() {
    use futures::StreamExt;
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut watch = service
        .admin()
        .watch_agent_statuses(authed(&manager, pb::WatchAgentStatusesRequest { department_id: String::new() }))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!((first.agent_id.as_str(), first.status), ("ana", pb::AgentStatus::Off as i32));

    let ana = token("acme", "ana", &[Role::Agent]);
    service.day().start_service_day(authed(&ana, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    // The seed's own events may still be arriving (the relay publishes after the commit): each
    // is a change of ana's row too. The day's start must follow within 10 s.
    let working = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let change = watch.next().await.unwrap().unwrap();
            assert_eq!(change.agent_id, "ana");
            if change.status == pb::AgentStatus::Working as i32 {
                return change;
            }
        }
    })
    .await;
    assert!(!working.expect("the start of the day within 10 s").day_id.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn an_idle_board_gets_heartbeats_and_still_every_change() {
    use futures::StreamExt;
    let service = TestService::start_with(|config| config.stream_heartbeat = std::time::Duration::from_secs(1)).await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut watch = service
        .admin()
        .watch_agent_statuses(authed(&manager, pb::WatchAgentStatusesRequest { department_id: String::new() }))
        .await
        .unwrap()
        .into_inner();
    let within = std::time::Duration::from_secs(10);
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!((first.agent_id.as_str(), first.heartbeat), ("ana", false), "the board first");
    // Once the seed's own changes are through, the idle board carries heartbeats, and only them.
    let beat = tokio::time::timeout(within, async {
        loop {
            let item = watch.next().await.unwrap().unwrap();
            if item.heartbeat {
                return item;
            }
        }
    })
    .await
    .expect("a heartbeat within 10 s");
    assert_eq!(beat, pb::AgentStatusView { heartbeat: true, ..Default::default() }, "it carries nothing else");

    let ana = token("acme", "ana", &[Role::Agent]);
    service.day().start_service_day(authed(&ana, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    let working = tokio::time::timeout(within, async {
        loop {
            let change = watch.next().await.unwrap().unwrap();
            if change.heartbeat {
                continue;
            }
            assert_eq!(change.agent_id, "ana");
            if change.status == pb::AgentStatus::Working as i32 {
                return change;
            }
        }
    })
    .await;
    assert!(!working.expect("the start of the day within 10 s").day_id.is_empty());
    let beat = tokio::time::timeout(within, watch.next()).await.expect("heartbeats go on");
    let beat = beat.unwrap().unwrap();
    assert!(beat.heartbeat || beat.agent_id == "ana", "{beat:?}");
    service.stop().await;
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

fn link_update(
    request_id: &str,
    paths: &[&str],
    url: &str,
    expected_version: Option<u64>,
) -> pb::UpdateTenantSettingsRequest {
    pb::UpdateTenantSettingsRequest {
        request_id: request_id.to_owned(),
        settings: Some(pb::TenantSettings { ticket_workspace_url: url.into(), ..Default::default() }),
        update_mask: mask(paths),
        expected_version,
    }
}

#[tokio::test]
async fn changing_only_the_workspace_link_keeps_automatic_distribution_and_the_reasons() {
    let service = TestService::start().await;
    service.seed("acme", &["ana"], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let before =
        admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();

    let request = link_update(&rid(), &["ticket_workspace_url"], "https://tickets.example.com/new", None);
    let after = admin.update_tenant_settings(authed(&manager, request)).await.unwrap().into_inner();

    assert_eq!(after.ticket_workspace_url, "https://tickets.example.com/new");
    assert!(after.auto_distribution_enabled, "automatic distribution stays on");
    assert_eq!(after.exit_reasons, before.exit_reasons);
    assert_eq!(after.break_reasons, before.break_reasons);
    assert_eq!(after.version, before.version + 1);
    let read = admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();
    assert_eq!(read, after);

    // An agent can still notify an exit with a reason configured before.
    let agent = token("acme", "ana", &[Role::Agent]);
    let mut day = service.day();
    day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
    day.notify_exit(authed(&agent, pb::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() }))
        .await
        .unwrap();
    service.stop().await;
}

#[tokio::test]
async fn an_unknown_or_output_only_mask_path_is_invalid_on_update_mask_and_changes_nothing() {
    let service = TestService::start().await;
    service.seed("acme", &[], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let before =
        admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();

    for path in ["ticket_workspace_link", "version"] {
        let request = link_update(&rid(), &["exit_reasons", path], "https://tickets.example.com/new", None);
        let status = admin.update_tenant_settings(authed(&manager, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["update_mask".to_owned()]);
        assert!(status.message().contains(path), "{status:?}");
    }
    // Fields the mask does not name are not checked either: a bad URL is ignored with this mask.
    let request = pb::UpdateTenantSettingsRequest {
        request_id: rid(),
        settings: Some(pb::TenantSettings { ticket_workspace_url: "ftp://nope".into(), ..Default::default() }),
        update_mask: mask(&["break_reasons"]),
        expected_version: None,
    };
    let after = admin.update_tenant_settings(authed(&manager, request)).await.unwrap().into_inner();
    assert!(after.break_reasons.is_empty(), "a named field absent from the request is cleared");
    assert_eq!(after.ticket_workspace_url, before.ticket_workspace_url);
    assert_eq!(after.exit_reasons, before.exit_reasons);
    service.stop().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_aborted_with_the_current_version_and_changes_nothing() {
    let service = TestService::start().await;
    service.seed("acme", &[], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let read = admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();

    let first = link_update(&rid(), &["ticket_workspace_url"], "https://tickets.example.com/a", Some(read.version));
    let changed = admin.update_tenant_settings(authed(&manager, first)).await.unwrap().into_inner();
    assert_eq!(changed.version, read.version + 1);

    // A second manager who read the same version loses: their change would hide the first one.
    let late = link_update(&rid(), &["ticket_workspace_url"], "https://tickets.example.com/b", Some(read.version));
    let status = admin.update_tenant_settings(authed(&manager, late)).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("STALE_VERSION"));
    assert!(status.message().contains("changed since you read it"), "{status:?}");
    assert!(status.message().contains(&changed.version.to_string()), "{status:?}");
    let current =
        admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();
    assert_eq!(current, changed);
    service.stop().await;
}

#[tokio::test]
async fn a_retried_update_returns_the_first_result_and_the_same_id_with_another_mask_is_reused() {
    let service = TestService::start().await;
    service.seed("acme", &[], true).await;
    let manager = token("acme", "boss", &[Role::Manager]);
    let mut admin = service.admin();
    let read = admin.get_tenant_settings(authed(&manager, pb::GetTenantSettingsRequest {})).await.unwrap().into_inner();
    let request_id = rid();
    let request =
        link_update(&request_id, &["ticket_workspace_url"], "https://tickets.example.com/a", Some(read.version));

    let first = admin.update_tenant_settings(authed(&manager, request.clone())).await.unwrap().into_inner();
    let events_after_first = event_count(&service).await;
    // The retry's expected version is stale by now: it still gets the first answer.
    let retry = admin.update_tenant_settings(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!(retry, first);
    assert_eq!(event_count(&service).await, events_after_first);

    let other_mask =
        pb::UpdateTenantSettingsRequest { update_mask: mask(&["ticket_workspace_url", "exit_reasons"]), ..request };
    let status = admin.update_tenant_settings(authed(&manager, other_mask)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(event_count(&service).await, events_after_first);
    service.stop().await;
}
