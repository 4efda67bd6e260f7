//! SearchProtocols filters, order, pagination and tenancy; inbound client messages opening or
//! joining a task.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, authed, publish_inbound, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as pb;
use tonic::Code;

async fn search(cluster: &Cluster, bearer: &str, request: pb::SearchProtocolsRequest) -> Vec<String> {
    let response = cluster.distribution().search_protocols(authed(bearer, request)).await.unwrap().into_inner();
    response.tasks.into_iter().map(|t| t.contact.unwrap_or_default().name).collect()
}

#[tokio::test]
async fn search_protocols_by_every_filter() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    // Grant ana the permission; bruno has none.
    cluster
        .admin()
        .grant_permission(authed(
            &manager,
            sessions::GrantPermissionRequest {
                request_id: rid(),
                agent_id: "ana".into(),
                permission: "protocols.search".into(),
            },
        ))
        .await
        .unwrap();
    cluster.start_day("acme", "ana").await;

    let josé = cluster.create_task("acme", "support", "José Álvares", "+5511900000001").await; // assigned to ana
    let maria = cluster.create_task("acme", "sales", "Maria Joselita", "+5511900000002").await;
    let _pedro = cluster.create_task("acme", "sales", "Pedro Costa", "+5511900000003").await;
    let _other_tenant = cluster.create_task("globex", "sales", "José Outro", "+5511900000004").await;

    let all = pb::SearchProtocolsRequest::default();
    assert_eq!(search(&cluster, &manager, all.clone()).await, ["Pedro Costa", "Maria Joselita", "José Álvares"]);
    let by = |f: fn(&mut pb::SearchProtocolsRequest)| {
        let mut request = pb::SearchProtocolsRequest::default();
        f(&mut request);
        request
    };
    let protocol = maria.protocol.clone();
    let exact = pb::SearchProtocolsRequest { protocol: protocol.clone(), ..Default::default() };
    assert_eq!(search(&cluster, &manager, exact).await, ["Maria Joselita"]);
    let prefix = pb::SearchProtocolsRequest { protocol_prefix: protocol[..8].to_owned(), ..Default::default() };
    assert_eq!(search(&cluster, &manager, prefix.clone()).await, ["Pedro Costa", "Maria Joselita", "José Álvares"]);
    // Paged, the prefix's page ids come from the index first: newest first, nothing repeated or
    // skipped.
    let names = |tasks: Vec<pb::Task>| -> Vec<String> {
        tasks.into_iter().map(|t| t.contact.unwrap_or_default().name).collect()
    };
    let first = pb::SearchProtocolsRequest { page_size: 2, ..prefix.clone() };
    let first = cluster.distribution().search_protocols(authed(&manager, first)).await.unwrap().into_inner();
    assert_eq!(names(first.tasks), ["Pedro Costa", "Maria Joselita"]);
    let second = pb::SearchProtocolsRequest { page_size: 2, page_token: first.next_page_token, ..prefix };
    let second = cluster.distribution().search_protocols(authed(&manager, second)).await.unwrap().into_inner();
    assert_eq!(names(second.tasks), ["José Álvares"]);
    // Partial, case- and accent-insensitive.
    assert_eq!(
        search(&cluster, &manager, by(|r| r.client_name = "JOSE".into())).await,
        ["Maria Joselita", "José Álvares"]
    );
    assert_eq!(search(&cluster, &manager, by(|r| r.client_name = "alvar".into())).await, ["José Álvares"]);
    assert_eq!(search(&cluster, &manager, by(|r| r.phone = "+5511900000003".into())).await, ["Pedro Costa"]);
    assert_eq!(search(&cluster, &manager, by(|r| r.status = pb::TaskStatus::Assigned as i32)).await, ["José Álvares"]);
    assert_eq!(
        search(&cluster, &manager, by(|r| r.department_id = "sales".into())).await,
        ["Pedro Costa", "Maria Joselita"]
    );
    assert_eq!(search(&cluster, &manager, by(|r| r.agent_id = "ana".into())).await, ["José Álvares"]);
    let created = josé.created_at.unwrap();
    let window = pb::SearchProtocolsRequest {
        created_from: Some(created),
        created_to: Some(prost_types::Timestamp { seconds: created.seconds, nanos: created.nanos + 1000 }),
        ..Default::default()
    };
    assert_eq!(search(&cluster, &manager, window).await, ["José Álvares"]);

    // Pages, newest first, without overlap.
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::SearchProtocolsRequest { page_size: 2, page_token: page_token.clone(), ..Default::default() };
        let page = cluster.distribution().search_protocols(authed(&manager, request)).await.unwrap().into_inner();
        names.extend(page.tasks.into_iter().map(|t| t.contact.unwrap_or_default().name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names, ["Pedro Costa", "Maria Joselita", "José Álvares"]);

    // Agents need the permission; another tenant sees only its own.
    let ana = token("acme", "ana", &[Role::Agent]);
    assert_eq!(search(&cluster, &ana, by(|r| r.client_name = "jose".into())).await.len(), 2);
    let bruno = token("acme", "bruno", &[Role::Agent]);
    let status = cluster.distribution().search_protocols(authed(&bruno, all.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let globex = token("globex", "boss", &[Role::Manager]);
    assert_eq!(search(&cluster, &globex, all.clone()).await, ["José Outro"]);
    let bad = pb::SearchProtocolsRequest { protocol_prefix: "2026%".into(), ..Default::default() };
    let status = cluster.distribution().search_protocols(authed(&manager, bad)).await.unwrap_err();
    assert_eq!(dw_grpc_kit::errors::violated_fields(&status), vec!["protocol_prefix"]);
    cluster.stop().await;
}

#[tokio::test]
async fn an_inbound_message_opens_a_task_or_joins_the_open_one() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    cluster
        .distribution()
        .update_distribution_settings(authed(
            &manager,
            pb::UpdateDistributionSettingsRequest {
                request_id: rid(),
                default_capacity: None,
                inbound_department_id: Some("support".into()),
                update_mask: None,
                expected_version: None,
            },
        ))
        .await
        .unwrap();
    cluster.start_day("acme", "ana").await;

    publish_inbound(&cluster, "acme", "+5511988887777", "Olá, preciso de ajuda").await;
    let mut found = Vec::new();
    for _ in 0..400 {
        let request = pb::SearchProtocolsRequest { phone: "+5511988887777".into(), ..Default::default() };
        found = cluster.distribution().search_protocols(authed(&manager, request)).await.unwrap().into_inner().tasks;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found.len(), 1, "the message opened a task");
    let task = &found[0];
    assert_eq!((task.department_id.as_str(), task.agent_id.as_str()), ("support", "ana"));
    assert_eq!(task.contact.as_ref().unwrap().name, "Carla Dias");

    publish_inbound(&cluster, "acme", "+5511988887777", "Alguém aí?").await;
    let joined = cluster.wait_for_task("acme", &task.task_id, "two messages", |t| t.message_count == 2).await;
    assert_eq!(joined.task_id, task.task_id);
    let tasks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&cluster.distribution_db.pool).await.unwrap();
    assert_eq!(tasks, 1, "the second message joined the open task");
    cluster.stop().await;
}

fn settings_update(
    request_id: &str,
    default_capacity: Option<i32>,
    paths: &[&str],
    expected_version: Option<u64>,
) -> pb::UpdateDistributionSettingsRequest {
    pb::UpdateDistributionSettingsRequest {
        request_id: request_id.to_owned(),
        default_capacity,
        inbound_department_id: None,
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() }),
        expected_version,
    }
}

#[tokio::test]
async fn distribution_settings_change_only_the_named_fields_and_refuse_stale_versions() {
    use dw_grpc_kit::errors::{reason_of, violated_fields};

    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut client = cluster.distribution();
    // The tenant's settings reach task-distribution over JetStream: wait for them, or the
    // automatic distribution they turn on would change the settings read in the middle.
    let mut propagated = false;
    for _ in 0..400 {
        let read = client.get_distribution_settings(authed(&manager, pb::GetDistributionSettingsRequest {})).await;
        if read.is_ok_and(|read| read.into_inner().auto_distribution_enabled) {
            propagated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(propagated, "the tenant's settings never reached task-distribution");
    // No mask: the fields set (as before masks existed).
    let legacy = pb::UpdateDistributionSettingsRequest {
        request_id: rid(),
        default_capacity: None,
        inbound_department_id: Some("support".into()),
        update_mask: None,
        expected_version: None,
    };
    let first = client.update_distribution_settings(authed(&manager, legacy)).await.unwrap().into_inner();
    assert_eq!((first.default_capacity, first.inbound_department_id.as_str(), first.version), (3, "support", 1));

    // Only the capacity: the inbound department stays.
    let request_id = rid();
    let request = settings_update(&request_id, Some(7), &["default_capacity"], Some(first.version));
    let second = client.update_distribution_settings(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!((second.default_capacity, second.inbound_department_id.as_str(), second.version), (7, "support", 2));

    // A retry gets the first answer; the same id with another mask is another request.
    let retry = client.update_distribution_settings(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!(retry, second);
    let other = pb::UpdateDistributionSettingsRequest {
        update_mask: Some(prost_types::FieldMask { paths: vec!["*".into()] }),
        ..request
    };
    let status = client.update_distribution_settings(authed(&manager, other)).await.unwrap_err();
    assert_eq!((status.code(), reason_of(&status).as_deref()), (Code::FailedPrecondition, Some("REQUEST_ID_REUSED")));

    // Unknown and read-only paths are refused on update_mask, by name.
    for path in ["capacity", "auto_distribution_enabled"] {
        let status = client
            .update_distribution_settings(authed(&manager, settings_update(&rid(), Some(4), &[path], None)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}");
        assert_eq!(violated_fields(&status), ["update_mask"]);
        assert!(status.message().contains(path), "{status:?}");
    }

    // A manager who read version 1 is told the settings moved on, and changes nothing.
    let stale = settings_update(&rid(), Some(9), &["default_capacity"], Some(first.version));
    let status = client.update_distribution_settings(authed(&manager, stale)).await.unwrap_err();
    assert_eq!((status.code(), reason_of(&status).as_deref()), (Code::Aborted, Some("STALE_VERSION")));
    assert!(status.message().contains("version 2"), "{status:?}");
    let read = client
        .get_distribution_settings(authed(&manager, pb::GetDistributionSettingsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, second);

    // A named field absent from the request takes its default.
    let clear = settings_update(&rid(), None, &["inbound_department_id"], None);
    let cleared = client.update_distribution_settings(authed(&manager, clear)).await.unwrap().into_inner();
    assert_eq!((cleared.default_capacity, cleared.inbound_department_id.as_str(), cleared.version), (7, "", 3));
    cluster.stop().await;
}
