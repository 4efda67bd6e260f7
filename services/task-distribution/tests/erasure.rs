//! `EraseClientData` (crypto-shredding): a client's name, phone, subject and message text are
//! stored sealed with the client's key; once erased they appear nowhere in the tenant's data
//! (events, snapshots, read models, stored responses, search, ReadEvents, a rebuild), while the
//! tasks' protocols, statuses and counts remain and other clients and tenants are untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, authed, publish_inbound, rid, token};
use dw_auth::Role;
use dw_proto::distribution::v1 as pb;
use dw_proto::eventlog::v1::ReadEventsRequest;
use dw_proto::eventlog::v1::event_log_service_client::EventLogServiceClient;
use prost::{Message, Name};
use sqlx::Row;
use task_distribution::projections::rebuild::TasksModel;
use tonic::Code;

const PHONE: &str = "+5511911112222";
const NAME: &str = "Ana Souza";
const SECRET_TEXT: &str = "meu CPF e 123.456.789-00";

/// The tables of `tenant` that could hold personal data, with how many of their rows contain
/// `needle`.
async fn occurrences(pool: &sqlx::PgPool, tenant: &str, needle: &str) -> Vec<(&'static str, i64)> {
    // (table, query, whether `$2` is the needle's bytes rather than its text)
    let checks: [(&'static str, &'static str, bool); 6] = [
        ("events", "SELECT count(*) FROM events WHERE tenant_id = $1 AND position($2 IN payload) > 0", true),
        (
            "outbox",
            "SELECT count(*) FROM outbox o JOIN events e USING (global_position) \
             WHERE e.tenant_id = $1 AND position($2 IN coalesce(o.payload, ''::bytea)) > 0",
            true,
        ),
        (
            "streams",
            "SELECT count(*) FROM streams WHERE tenant_id = $1 AND snapshot::text LIKE '%' || $2 || '%'",
            false,
        ),
        (
            "tasks",
            "SELECT count(*) FROM tasks t WHERE tenant_id = $1 AND to_jsonb(t)::text LIKE '%' || $2 || '%'",
            false,
        ),
        (
            "idempotency_keys",
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND position($2 IN response) > 0",
            true,
        ),
        (
            "personal_keys",
            "SELECT count(*) FROM personal_keys WHERE tenant_id = $1 AND subject LIKE '%' || $2 || '%'",
            false,
        ),
    ];
    let mut found = Vec::new();
    for (table, sql, bytes) in checks {
        let query = sqlx::query_scalar::<_, i64>(sql).bind(tenant);
        let query = if bytes { query.bind(needle.as_bytes()) } else { query.bind(needle) };
        let n = query.fetch_one(pool).await.unwrap();
        if n > 0 {
            found.push((table, n));
        }
    }
    found
}

async fn search(cluster: &Cluster, tenant: &str, request: pb::SearchProtocolsRequest) -> Vec<pb::Task> {
    let manager = token(tenant, "manager-1", &[Role::Manager]);
    cluster.distribution().search_protocols(authed(&manager, request)).await.unwrap().into_inner().tasks
}

async fn by_phone(cluster: &Cluster, tenant: &str, phone: &str) -> Vec<pb::Task> {
    search(cluster, tenant, pb::SearchProtocolsRequest { phone: phone.into(), ..Default::default() }).await
}

/// The tenant's stored `TaskCreated` of `task_id` as `ReadEvents` answers it.
async fn created_as_read(cluster: &Cluster, tenant: &str, task_id: &str) -> pb::TaskCreated {
    let service = token(tenant, "backfill", &[Role::Service]);
    let request = ReadEventsRequest {
        stream_id: format!("task:{tenant}:{task_id}"),
        event_type: pb::TaskCreated::full_name(),
        page_size: 10,
        ..Default::default()
    };
    let page = EventLogServiceClient::new(cluster.replicas[0].clone())
        .read_events(authed(&service, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 1);
    pb::TaskCreated::decode(page.events[0].payload.as_slice()).unwrap()
}

async fn wait_until_published(pool: &sqlx::PgPool) {
    for _ in 0..400 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await.unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the outbox never emptied");
}

fn erase(phone: &str, reason: &str) -> pb::EraseClientDataRequest {
    pb::EraseClientDataRequest { request_id: rid(), phone: phone.into(), reason: reason.into() }
}

#[tokio::test]
async fn an_erased_client_appears_nowhere_while_the_tasks_remain() {
    let cluster = Cluster::start(1).await;
    let pool = cluster.distribution_db.pool.clone();
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    cluster.seed("globex", false, &[("gil", &["support"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let settings = pb::UpdateDistributionSettingsRequest {
        request_id: rid(),
        default_capacity: None,
        inbound_department_id: Some("support".into()),
        update_mask: None,
        expected_version: None,
    };
    cluster.distribution().update_distribution_settings(authed(&manager, settings)).await.unwrap();
    cluster.start_day("acme", "ana").await;

    // The client's task, and a message of theirs recorded on it; another client; the same phone
    // in another tenant.
    let task = cluster.create_task("acme", "support", NAME, PHONE).await;
    publish_inbound(&cluster, "acme", PHONE, SECRET_TEXT).await;
    cluster.wait_for_task("acme", &task.task_id, "with the message", |t| t.message_count == 1).await;
    let other = cluster.create_task("acme", "support", "Bruno Lima", "+5511933334444").await;
    let elsewhere = cluster.create_task("globex", "support", "Gabi Souza", PHONE).await;
    wait_until_published(&pool).await;

    // Stored sealed: the name, phone, subject and text are nowhere in the clear in the store.
    for needle in ["Souza", PHONE, "CPF"] {
        let found = occurrences(&pool, "acme", needle).await;
        let expected: Vec<(&str, i64)> = match needle {
            // The read model and the stored CreateTask response show the client until erased;
            // the key table names its subject.
            PHONE => vec![("tasks", 1), ("idempotency_keys", 1), ("personal_keys", 1)],
            "Souza" => vec![("tasks", 1), ("idempotency_keys", 1)],
            _ => vec![],
        };
        assert_eq!(found, expected, "{needle} in the clear before the erasure");
    }
    // Readers outside the write side get it opened.
    let read = created_as_read(&cluster, "acme", &task.task_id).await;
    assert_eq!(read.contact.as_ref().map(|c| (c.name.as_str(), c.phone.as_str())), Some((NAME, PHONE)));
    assert_eq!(read.subject, format!("help for {NAME}"));
    // The bus carries it in the clear: other services read the fields.
    let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let stream = js.get_stream(&cluster.distribution_ns.stream_name).await.unwrap();
    let subject = format!("{}.acme.task.created", cluster.distribution_ns.subject_prefix);
    let first = stream.get_first_raw_message_by_subject(&subject, 1).await.unwrap();
    let on_bus = pb::TaskCreated::decode(first.payload.as_ref()).unwrap();
    assert_eq!(on_bus.contact.unwrap().name, NAME);

    // An event of an older release, written in the clear, and a snapshot with the client in it.
    let created_type = pb::TaskCreated::full_name();
    let clear = read.encode_to_vec();
    sqlx::query("UPDATE events SET payload = $1 WHERE stream_id = $2 AND event_type = $3")
        .bind(&clear)
        .bind(format!("task:acme:{}", task.task_id))
        .bind(&created_type)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE streams SET snapshot = snapshot || jsonb_build_object('legacy_contact', $1::text) WHERE stream_id = $2",
    )
    .bind(format!("{NAME} {PHONE}"))
    .bind(format!("task:acme:{}", task.task_id))
    .execute(&pool)
    .await
    .unwrap();
    assert!(!occurrences(&pool, "acme", "Souza").await.is_empty());

    // Who may erase, and what.
    let agent = token("acme", "ana", &[Role::Agent]);
    let denied = cluster.distribution().erase_client_data(authed(&agent, erase(PHONE, "LGPD"))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let roleless = token("acme", "nobody", &[]);
    let denied = cluster.distribution().erase_client_data(authed(&roleless, erase(PHONE, "LGPD"))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    for (request, field) in [
        (erase("5511911112222", "LGPD"), "phone"),
        (erase(PHONE, ""), "reason"),
        (erase(PHONE, "bad\u{7}reason"), "reason"),
        (erase(PHONE, &"x".repeat(501)), "reason"),
    ] {
        let status = cluster.distribution().erase_client_data(authed(&manager, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    }
    assert!(!occurrences(&pool, "acme", PHONE).await.is_empty(), "refused requests changed nothing");

    // The erasure, retried.
    let request = erase(PHONE, "LGPD request #42");
    let erased =
        cluster.distribution().erase_client_data(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!(erased.tasks_erased, 1);
    let again = cluster.distribution().erase_client_data(authed(&manager, request.clone())).await.unwrap().into_inner();
    assert_eq!(again, erased, "a retry answers the first erasure");
    let reused = pb::EraseClientDataRequest { phone: "+5511933334444".into(), ..request };
    let status = cluster.distribution().erase_client_data(authed(&manager, reused)).await.unwrap_err();
    assert_ne!(status.code(), Code::Internal);
    assert_eq!(by_phone(&cluster, "acme", "+5511933334444").await.len(), 1, "a reused request id erased nothing");
    wait_until_published(&pool).await;

    // Nowhere in the tenant's data any more.
    for needle in ["Souza", PHONE, "CPF", "help for Ana"] {
        assert_eq!(occurrences(&pool, "acme", needle).await, vec![], "{needle} after the erasure");
    }
    // The task remains, without the client.
    let kept = cluster.task("acme", &task.task_id).await;
    assert_eq!((kept.protocol.as_str(), kept.message_count, kept.status), (task.protocol.as_str(), 1, task.status));
    let contact = kept.contact.clone().unwrap();
    assert_eq!((contact.name.as_str(), contact.phone.as_str(), kept.subject.as_str()), ("", "", ""));
    assert!(by_phone(&cluster, "acme", PHONE).await.is_empty());
    let by_name =
        search(&cluster, "acme", pb::SearchProtocolsRequest { client_name: "souza".into(), ..Default::default() });
    assert!(by_name.await.is_empty());
    let read = created_as_read(&cluster, "acme", &task.task_id).await;
    assert_eq!(read.contact.as_ref().map(|c| (c.name.as_str(), c.phone.as_str())), Some(("", "")));
    assert_eq!(read.subject, "");
    // Another client and another tenant keep theirs.
    assert_eq!(by_phone(&cluster, "acme", "+5511933334444").await[0].task_id, other.task_id);
    assert_eq!(by_phone(&cluster, "globex", PHONE).await[0].task_id, elsewhere.task_id);
    let read = created_as_read(&cluster, "acme", &other.task_id).await;
    assert_eq!(read.contact.unwrap().name, "Bruno Lima");
    // The erasure is an event naming the task, not the client.
    let row = sqlx::query("SELECT payload FROM events WHERE tenant_id = 'acme' AND event_type = $1")
        .bind(pb::ClientDataErased::full_name())
        .fetch_one(&pool)
        .await
        .unwrap();
    let event = pb::ClientDataErased::decode(row.get::<Vec<u8>, _>("payload").as_slice()).unwrap();
    assert_eq!(
        (event.task_ids, event.reason.as_str(), event.erased_by.as_str()),
        (vec![task.task_id.clone()], "LGPD request #42", "manager-1")
    );

    // A rebuild brings the client back erased, and the other client as they were.
    let before: Vec<String> =
        sqlx::query_scalar("SELECT to_jsonb(t)::text FROM tasks t ORDER BY 1").fetch_all(&pool).await.unwrap();
    sqlx::query("UPDATE tasks SET client_name = 'someone else'").execute(&pool).await.unwrap();
    dw_eventstore::rebuild::rebuild(&pool, &TasksModel::default(), None, 2, |_| {}).await.unwrap();
    let after: Vec<String> =
        sqlx::query_scalar("SELECT to_jsonb(t)::text FROM tasks t ORDER BY 1").fetch_all(&pool).await.unwrap();
    assert_eq!(after, before);

    // The same phone writing again is a new client record: a new task, readable.
    publish_inbound(&cluster, "acme", PHONE, "voltei").await;
    let mut found = Vec::new();
    for _ in 0..400 {
        found = by_phone(&cluster, "acme", PHONE).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found.len(), 1);
    assert_ne!(found[0].task_id, task.task_id);
    assert_eq!(found[0].contact.as_ref().unwrap().name, "Carla Dias");
    cluster.stop().await;
}
