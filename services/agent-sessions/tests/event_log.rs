//! The kernel's `ReadEvents` as agent-sessions serves it, against real Postgres: paging through
//! the whole store without a gap or a repeat, the tenant, type and stream filters, who may read
//! what, and bad input named by field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestService, authed, reason_of, token};
use dw_auth::Role;
use dw_proto::eventlog::v1::event_log_service_client::EventLogServiceClient;
use dw_proto::eventlog::v1::{ReadEventsRequest, StoredEvent};
use prost::Name as _;
use tonic::Code;
use tonic::transport::Channel;

fn client(service: &TestService) -> EventLogServiceClient<Channel> {
    EventLogServiceClient::new(service.channel.clone())
}

async fn seeded() -> TestService {
    let service = TestService::start().await;
    service.seed("acme", &["ana", "bea"], true).await;
    service.seed("globex", &["carl"], false).await;
    service
}

/// Every page from `template`, followed by `next_position` until the end.
async fn read_all(service: &TestService, caller: &str, template: ReadEventsRequest) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    let mut request = template;
    loop {
        let page = client(service).read_events(authed(caller, request.clone())).await.unwrap().into_inner();
        events.extend(page.events);
        if page.end_of_log {
            return events;
        }
        assert!(page.next_position > request.from_position, "a page that is not the last moves on");
        request.from_position = page.next_position;
    }
}

async fn positions_in_db(service: &TestService, tenant: Option<&str>) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM events WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY global_position",
    )
    .bind(tenant)
    .fetch_all(&service.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_service_pages_through_every_event_once_and_filters_by_tenant_type_and_stream() {
    let service = seeded().await;
    let internal = token("platform", "backfill", &[Role::Service]);

    let all = read_all(&service, &internal, ReadEventsRequest { page_size: 2, ..Default::default() }).await;
    let positions: Vec<i64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, positions_in_db(&service, None).await, "every event, once, in order");
    let registered = all.iter().find(|e| e.stream_id == "agent:acme:ana").unwrap();
    assert_eq!(registered.version, 1);
    assert_eq!(registered.event_type, dw_proto::agentsessions::v1::AgentRegistered::full_name());
    assert!(registered.recorded_at.is_some() && !registered.event_id.is_empty());
    let decoded: dw_proto::agentsessions::v1::AgentRegistered = prost::Message::decode(&*registered.payload).unwrap();
    assert_eq!(decoded.display_name, "Agent ana", "the payload as stored");

    let globex = ReadEventsRequest { tenant: "globex".into(), page_size: 1, ..Default::default() };
    let globex = read_all(&service, &internal, globex).await;
    let globex_positions: Vec<i64> = globex.iter().map(|e| e.global_position).collect();
    assert_eq!(globex_positions, positions_in_db(&service, Some("globex")).await);
    assert!(globex.iter().all(|e| e.tenant == "globex"));

    let registrations = ReadEventsRequest {
        event_type: dw_proto::agentsessions::v1::AgentRegistered::full_name(),
        ..Default::default()
    };
    let registrations = read_all(&service, &internal, registrations).await;
    let mut agents: Vec<&str> = registrations.iter().map(|e| e.stream_id.as_str()).collect();
    agents.sort_unstable();
    assert_eq!(agents, ["agent:acme:ana", "agent:acme:bea", "agent:globex:carl"]);

    let history = ReadEventsRequest { stream_id: "agent:acme:ana".into(), ..Default::default() };
    let history = read_all(&service, &internal, history).await;
    assert_eq!(history.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2], "registered, then linked");

    let newest = ReadEventsRequest { newest_first: true, page_size: 3, ..Default::default() };
    let newest = client(&service).read_events(authed(&internal, newest)).await.unwrap().into_inner();
    let mut expected = positions.clone();
    expected.reverse();
    assert_eq!(newest.events.iter().map(|e| e.global_position).collect::<Vec<_>>(), expected[..3]);
    assert!(!newest.end_of_log);
    service.stop().await;
}

#[tokio::test]
async fn a_manager_reads_only_its_own_tenant_and_agents_or_roleless_tokens_nothing() {
    let service = seeded().await;
    let manager = token("acme", "sre-1", &[Role::Manager]);
    let own = read_all(&service, &manager, ReadEventsRequest::default()).await;
    assert_eq!(
        own.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        positions_in_db(&service, Some("acme")).await,
        "no tenant named: its own"
    );
    let other_stream = ReadEventsRequest { stream_id: "agent:globex:carl".into(), ..Default::default() };
    assert!(read_all(&service, &manager, other_stream).await.is_empty(), "another tenant's stream reads empty");

    let other = ReadEventsRequest { tenant: "globex".into(), ..Default::default() };
    let denied = client(&service).read_events(authed(&manager, other)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&denied).as_deref(), Some("OTHER_TENANT"));

    for roles in [&[Role::Agent][..], &[]] {
        let caller = token("acme", "ana", roles);
        let denied = client(&service).read_events(authed(&caller, ReadEventsRequest::default())).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{roles:?}");
    }
    let anonymous = client(&service).read_events(ReadEventsRequest::default()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    service.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let service = TestService::start().await;
    let internal = token("platform", "backfill", &[Role::Service]);
    let cases = [
        (ReadEventsRequest { page_size: -1, ..Default::default() }, "page_size"),
        (ReadEventsRequest { from_position: -7, ..Default::default() }, "from_position"),
        (ReadEventsRequest { tenant: "ACME!".into(), ..Default::default() }, "tenant"),
        (ReadEventsRequest { event_type: "x".repeat(500), ..Default::default() }, "event_type"),
        (ReadEventsRequest { event_type: "dw.v1.A\u{1b}[31m".into(), ..Default::default() }, "event_type"),
        (ReadEventsRequest { stream_id: "no-aggregate".into(), ..Default::default() }, "stream_id"),
        (ReadEventsRequest { stream_id: "agent:acme:\u{0}".into(), ..Default::default() }, "stream_id"),
    ];
    for (request, field) in cases {
        let refused = client(&service).read_events(authed(&internal, request.clone())).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(dw_grpc_kit::errors::violated_fields(&refused), [field], "{request:?}");
    }
    service.stop().await;
}
