//! Distribution rules through the gRPC API, with real agent-sessions events flowing over
//! JetStream: assignment on day start, exit, break, end of day, capacity, manual claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as sessions;
use dw_proto::distribution::v1 as pb;
use futures::StreamExt;
use tonic::Code;

fn assigned_to(agent: &'static str) -> impl Fn(&pb::Task) -> bool {
    move |t| t.status == pb::TaskStatus::Assigned as i32 && t.agent_id == agent
}

fn queued(t: &pb::Task) -> bool {
    t.status == pb::TaskStatus::Queued as i32
}

#[tokio::test]
async fn an_idle_task_stream_gets_heartbeats_and_still_every_update() {
    let cluster = Cluster::start_with(1, |service| service.stream_heartbeat = Duration::from_secs(1)).await;
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    cluster.start_day("acme", "ana").await;

    let ana = token("acme", "ana", &[Role::Agent]);
    let mut watch =
        cluster.distribution().watch_my_tasks(authed(&ana, pb::WatchMyTasksRequest {})).await.unwrap().into_inner();
    // Nothing happens: within a few seconds the idle stream carries a heartbeat, and only that.
    let beat = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("a heartbeat within 5 s");
    let beat = beat.unwrap().unwrap();
    assert_eq!(beat, pb::TaskUpdate { heartbeat: true, ..Default::default() }, "a heartbeat carries nothing else");

    // An assignment still arrives whole, between heartbeats, marked as no heartbeat.
    let task = cluster.create_task("acme", "support", "Maria Souza", "+5511999990001").await;
    let update = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = watch.next().await.unwrap().unwrap();
            if !update.heartbeat {
                return update;
            }
        }
    })
    .await
    .expect("the assignment within 10 s");
    assert_eq!(update.kind, pb::task_update::Kind::Assigned as i32);
    assert_eq!(update.task.unwrap().task_id, task.task_id);

    // And the stream goes on beating while idle again.
    let beat = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("a heartbeat within 5 s");
    assert!(beat.unwrap().unwrap().heartbeat);
    cluster.stop().await;
}

#[tokio::test]
async fn an_agent_who_starts_the_day_is_handed_a_created_task_on_their_stream() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"])]).await;
    cluster.start_day("acme", "ana").await;

    let ana = token("acme", "ana", &[Role::Agent]);
    let mut watch =
        cluster.distribution().watch_my_tasks(authed(&ana, pb::WatchMyTasksRequest {})).await.unwrap().into_inner();
    let task = cluster.create_task("acme", "support", "Maria Souza", "+5511999990001").await;
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert_eq!(task.protocol, format!("{today}000001"));
    assert_eq!((task.status, task.agent_id.as_str()), (pb::TaskStatus::Assigned as i32, "ana"), "assigned at once");
    assert_eq!(cluster.task("acme", &task.task_id).await, task, "the answer is the task as stored");

    let update = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("update within 10 s");
    let update = update.unwrap().unwrap();
    assert_eq!(update.kind, pb::task_update::Kind::Assigned as i32);
    assert_eq!(update.task.unwrap().protocol, task.protocol);

    // The decision is explained: one candidate, chosen.
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let explained = cluster
        .distribution()
        .explain_assignment(authed(&manager, pb::ExplainAssignmentRequest { task_id: task.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.decisions.len(), 1);
    assert_eq!(explained.decisions[0].chosen_agent_id, "ana");
    assert_eq!(explained.decisions[0].trigger, "task_created");

    // She completes it (nothing waits): the answer is the task as stored, completed.
    let completed = cluster
        .distribution()
        .complete_task(authed(&ana, pb::CompleteTaskRequest { request_id: rid(), task_id: task.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(completed.status, pb::TaskStatus::Completed as i32);
    assert_eq!(completed.contact, task.contact, "the client's contact, as created");
    assert_eq!(cluster.task("acme", &task.task_id).await, completed, "the answer is the task as stored");
    cluster.stop().await;
}

/// Two tenants' agents of the same name watch at once and tasks of both arrive together (the
/// feed reads a batch's tasks in one query whatever their tenants): each is told of their own
/// tenant's tasks only.
#[tokio::test]
async fn same_named_agents_of_two_tenants_each_see_their_own_tenants_tasks() {
    let cluster = Cluster::start(1).await;
    let mut watches = Vec::new();
    for tenant in ["acme", "globex"] {
        cluster.seed(tenant, true, &[("ana", &["support"])]).await;
        cluster.start_day(tenant, "ana").await;
        let ana = token(tenant, "ana", &[Role::Agent]);
        let watch =
            cluster.distribution().watch_my_tasks(authed(&ana, pb::WatchMyTasksRequest {})).await.unwrap().into_inner();
        watches.push((tenant, watch));
    }
    let (acme, globex) = tokio::join!(
        cluster.create_task("acme", "support", "Maria Souza", "+5511999990001"),
        cluster.create_task("globex", "support", "João Lima", "+5511999990002"),
    );
    for ((tenant, watch), task) in watches.iter_mut().zip([acme, globex]) {
        let update = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("update within 10 s");
        let seen = update.unwrap().unwrap().task.unwrap();
        assert_eq!(seen.task_id, task.task_id, "{tenant}'s ana is told of {tenant}'s task");
        assert_eq!(seen.contact, task.contact);
        let more = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
        assert!(more.is_err(), "{tenant}'s ana is told of nothing else: {more:?}");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn exit_break_end_of_day_and_capacity_rules() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"]), ("bruno", &["support"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let ana = token("acme", "ana", &[Role::Agent]);
    let bruno = token("acme", "bruno", &[Role::Agent]);
    let mut day = cluster.day();
    cluster.wait_for_agent("acme", "bruno", "known").await;
    cluster
        .distribution()
        .set_agent_capacity(authed(
            &manager,
            pb::SetAgentCapacityRequest { request_id: rid(), agent_id: "bruno".into(), capacity: 2 },
        ))
        .await
        .unwrap();

    // Ana alone: she gets the first task.
    cluster.start_day("acme", "ana").await;
    let t1 = cluster.create_task("acme", "support", "Client One", "+5511900000001").await;
    assert_eq!(t1.agent_id, "ana");

    // After notifying an exit she keeps T1 and gets nothing new.
    day.notify_exit(authed(&ana, sessions::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() }))
        .await
        .unwrap();
    cluster.wait_for_agent("acme", "ana", "exit_notified").await;
    let t2 = cluster.create_task("acme", "support", "Client Two", "+5511900000002").await;
    assert!(queued(&t2), "nobody available: {t2:?}");
    assert_eq!(cluster.task("acme", &t2.task_id).await, t2, "the answer is the task as stored");
    let explained = cluster
        .distribution()
        .explain_assignment(authed(&manager, pb::ExplainAssignmentRequest { task_id: t2.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let verdicts: Vec<(String, i32)> =
        explained.decisions[0].candidates.iter().map(|c| (c.agent_id.clone(), c.exclusion)).collect();
    assert_eq!(
        verdicts,
        vec![("ana".into(), pb::Exclusion::ExitNotified as i32), ("bruno".into(), pb::Exclusion::DayNotStarted as i32)]
    );
    // A decision stored by the previous version (verdicts as JSONB objects in `candidates`)
    // explains the same.
    let stored = sqlx::query(
        "UPDATE assignment_decisions SET verdicts = NULL, candidates = $3::jsonb WHERE tenant_id = $1 AND task_id = $2",
    )
    .bind("acme")
    .bind(uuid::Uuid::parse_str(&t2.task_id).unwrap())
    .bind(
        r#"[{"agent_id": "ana", "exclusion": "ExitNotified", "active_tasks": 1, "capacity": 3},
            {"agent_id": "bruno", "exclusion": "DayNotStarted", "active_tasks": 0, "capacity": 2}]"#,
    )
    .execute(&cluster.distribution_db.pool)
    .await
    .unwrap();
    assert_eq!(stored.rows_affected(), 1);
    let before = cluster
        .distribution()
        .explain_assignment(authed(&manager, pb::ExplainAssignmentRequest { task_id: t2.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.decisions, explained.decisions);

    // A break (closing the exit) keeps T1 with her: the client waits, and the wait is visible.
    day.start_break(authed(&ana, sessions::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() }))
        .await
        .unwrap();
    cluster.wait_for_agent("acme", "ana", "on_break").await;
    assert_eq!(cluster.task("acme", &t1.task_id).await.agent_id, "ana");
    let stats = cluster
        .distribution()
        .get_queue_stats(authed(&manager, pb::GetQueueStatsRequest { department_id: "support".into() }))
        .await
        .unwrap()
        .into_inner();
    let support = &stats.departments[0];
    assert_eq!((support.waiting_tasks, support.agents_on_break), (1, 1));
    assert_eq!(support.tasks_waiting_on_break.len(), 1);
    assert_eq!(support.tasks_waiting_on_break[0].task_id, t1.task_id);

    // Bruno starts: the waiting T2 goes to him.
    cluster.start_day("acme", "bruno").await;
    cluster.wait_for_task("acme", &t2.task_id, "assigned to bruno", assigned_to("bruno")).await;

    // Ana back from the break: equal load (1 each), she has been idle longer, so T3 is hers.
    day.end_break(authed(&ana, sessions::EndBreakRequest { request_id: rid(), confirm: true })).await.unwrap();
    cluster.wait_for_agent("acme", "ana", "available").await;
    let t3 = cluster.create_task("acme", "support", "Client Three", "+5511900000003").await;
    assert_eq!(t3.agent_id, "ana");

    // Ana's day ends: T1 and T3 go back to the front of the queue; Bruno (capacity 2, holding
    // T2) takes one of them, the other waits.
    let mut bruno_watch =
        cluster.distribution().watch_my_tasks(authed(&bruno, pb::WatchMyTasksRequest {})).await.unwrap().into_inner();
    let current = bruno_watch.next().await.unwrap().unwrap();
    assert_eq!(current.kind, pb::task_update::Kind::Current as i32);
    day.end_service_day(authed(&ana, sessions::EndServiceDayRequest { request_id: rid() })).await.unwrap();
    // Skip what may still be in flight from before the watch (T2's own assignment).
    let handed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = bruno_watch.next().await.unwrap().unwrap();
            let task = update.task.unwrap();
            if update.kind == pb::task_update::Kind::Assigned as i32 && task.task_id != t2.task_id {
                return task;
            }
        }
    })
    .await
    .expect("a re-queued task for bruno within 10 s");
    assert_eq!(handed.task_id, t1.task_id, "the oldest re-queued task first");
    let t3_now = cluster.wait_for_task("acme", &t3.task_id, "queued", queued).await;
    assert_eq!(t3_now.agent_id, "");
    let requeues: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'dw.distribution.v1.TaskRequeued'")
            .fetch_one(&cluster.distribution_db.pool)
            .await
            .unwrap();
    assert_eq!(requeues, 2);

    // Bruno completes T2: capacity frees and T3 comes to him.
    let completed = cluster
        .distribution()
        .complete_task(authed(&bruno, pb::CompleteTaskRequest { request_id: rid(), task_id: t2.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster.task("acme", &t2.task_id).await, completed, "the answer is the task as stored");
    cluster.wait_for_task("acme", &t3.task_id, "assigned to bruno", assigned_to("bruno")).await;

    // Only the holder completes a task.
    let status = cluster
        .distribution()
        .complete_task(authed(&ana, pb::CompleteTaskRequest { request_id: rid(), task_id: t3.task_id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    cluster.stop().await;
}

#[tokio::test]
async fn without_automatic_distribution_tasks_wait_for_a_claim() {
    let cluster = Cluster::start(1).await;
    cluster.seed("manual", false, &[("ana", &["support"]), ("carla", &["sales"])]).await;
    cluster.start_day("manual", "ana").await;
    cluster.start_day("manual", "carla").await;
    let task = cluster.create_task("manual", "support", "Walk In", "+5511900000009").await;
    assert!(queued(&task));

    let carla = token("manual", "carla", &[Role::Agent]);
    let status = cluster
        .distribution()
        .claim_task(authed(&carla, pb::ClaimTaskRequest { request_id: rid(), task_id: task.task_id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "carla is not in support");

    let ana = token("manual", "ana", &[Role::Agent]);
    let request_id = rid();
    let claimed = cluster
        .distribution()
        .claim_task(authed(
            &ana,
            pb::ClaimTaskRequest { request_id: request_id.clone(), task_id: task.task_id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((claimed.status, claimed.agent_id.as_str()), (pb::TaskStatus::Assigned as i32, "ana"));
    // A retried claim answers the same.
    let retried = cluster
        .distribution()
        .claim_task(authed(&ana, pb::ClaimTaskRequest { request_id, task_id: task.task_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, claimed);
    cluster.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_or_role() {
    let cluster = Cluster::start(1).await;
    let agent = token("acme", "ana", &[Role::Agent]);
    let service = token("acme", "crm-bot", &[Role::Service]);
    let status = cluster
        .distribution()
        .create_task(authed(&agent, pb::CreateTaskRequest { request_id: rid(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = cluster
        .distribution()
        .create_task(authed(
            &service,
            pb::CreateTaskRequest {
                request_id: rid(),
                department_id: "support".into(),
                channel: pb::Channel::Sms as i32,
                contact: Some(pb::ClientContact { name: "X".into(), phone: "12345".into(), contact_id: String::new() }),
                priority: 12,
                subject: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = dw_grpc_kit::errors::violated_fields(&status);
    assert_eq!(fields, vec!["contact.phone", "priority"]);
    let status = cluster
        .distribution()
        .get_task(authed(
            &service,
            pb::GetTaskRequest { key: Some(pb::get_task_request::Key::TaskId(uuid::Uuid::now_v7().to_string())) },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&cluster.distribution_db.pool).await.unwrap();
    assert_eq!(events, 0, "nothing changed");
    cluster.stop().await;
}

#[tokio::test]
async fn transfers_move_work_between_departments_and_agents_and_cancels_free_capacity() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"]), ("bruno", &["sales"]), ("carla", &["sales"])]).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let ana = token("acme", "ana", &[Role::Agent]);
    cluster.start_day("acme", "ana").await;
    cluster.start_day("acme", "bruno").await;
    let task = cluster.create_task("acme", "support", "Client T", "+5511900000011").await;
    assert_eq!(task.agent_id, "ana");

    // Ana hands it to sales: back into that queue, and bruno (available there) takes it.
    cluster
        .distribution()
        .transfer_task(authed(
            &ana,
            pb::TransferTaskRequest {
                request_id: rid(),
                task_id: task.task_id.clone(),
                department_id: "sales".into(),
                agent_id: String::new(),
            },
        ))
        .await
        .unwrap();
    let moved = cluster.wait_for_task("acme", &task.task_id, "with bruno", assigned_to("bruno")).await;
    assert_eq!(moved.department_id, "sales");

    // A manager sends it to carla by name: she must be available.
    let status = cluster
        .distribution()
        .transfer_task(authed(
            &manager,
            pb::TransferTaskRequest {
                request_id: rid(),
                task_id: task.task_id.clone(),
                department_id: String::new(),
                agent_id: "carla".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "carla's day has not started");
    cluster.start_day("acme", "carla").await;
    let with_carla = cluster
        .distribution()
        .transfer_task(authed(
            &manager,
            pb::TransferTaskRequest {
                request_id: rid(),
                task_id: task.task_id.clone(),
                department_id: String::new(),
                agent_id: "carla".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_carla.agent_id, "carla");
    // One change of hands, two agents' loads (the agents table written twice: a second statement
    // in the command's transaction).
    let loads: Vec<(String, i32)> = sqlx::query_as(
        "SELECT agent_id, active_tasks FROM agents WHERE tenant_id = 'acme' AND agent_id IN ('bruno', 'carla') \
         ORDER BY agent_id",
    )
    .fetch_all(&cluster.distribution_db.pool)
    .await
    .unwrap();
    assert_eq!(loads, vec![("bruno".to_owned(), 0), ("carla".to_owned(), 1)]);

    // Cancelling frees carla; a cancelled task cannot be completed.
    let cancelled = cluster
        .distribution()
        .cancel_task(authed(
            &manager,
            pb::CancelTaskRequest { request_id: rid(), task_id: task.task_id.clone(), reason: "duplicate".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::TaskStatus::Cancelled as i32);
    let load: i32 =
        sqlx::query_scalar("SELECT active_tasks FROM agents WHERE tenant_id = 'acme' AND agent_id = 'carla'")
            .fetch_one(&cluster.distribution_db.pool)
            .await
            .unwrap();
    assert_eq!(load, 0);
    let status = cluster
        .distribution()
        .complete_task(authed(&manager, pb::CompleteTaskRequest { request_id: rid(), task_id: task.task_id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    cluster.stop().await;
}

/// The department count an assignment round reads with each candidate (an agent linked
/// elsewhere is locked before being chosen) follows links and unlinks as they arrive.
#[tokio::test]
async fn an_agents_department_count_follows_their_links_and_unlinks() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support", "sales"]), ("bruno", &["sales"])]).await;
    let pool = &cluster.distribution_db.pool;
    let counts = || async {
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT a.agent_id, a.linked_departments, \
                    (SELECT count(*) FROM agent_departments d WHERE d.tenant_id = a.tenant_id AND d.agent_id = a.agent_id) \
             FROM agents a WHERE a.tenant_id = 'acme' ORDER BY a.agent_id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        rows
    };
    let settled = |expected: Vec<(&'static str, i32)>| async move {
        for _ in 0..400 {
            let now = counts().await;
            let seen: Vec<(&str, i32)> = now.iter().map(|(a, n, _)| (a.as_str(), *n)).collect();
            if seen == expected {
                for (agent, kept, counted) in &now {
                    assert_eq!(i64::from(*kept), *counted, "{agent}: kept count differs from the links");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("department counts never became {expected:?}: {:?}", counts().await);
    };
    settled(vec![("ana", 2), ("bruno", 1)]).await;

    let manager = token("acme", "manager-1", &[Role::Manager]);
    let unlink =
        sessions::UnlinkDepartmentRequest { request_id: rid(), agent_id: "ana".into(), department_id: "sales".into() };
    cluster.admin().unlink_department(authed(&manager, unlink)).await.unwrap();
    settled(vec![("ana", 1), ("bruno", 1)]).await;
    let link = sessions::LinkDepartmentRequest {
        request_id: rid(),
        agent_id: "bruno".into(),
        department_id: "support".into(),
    };
    cluster.admin().link_department(authed(&manager, link)).await.unwrap();
    settled(vec![("ana", 1), ("bruno", 2)]).await;

    // Both kinds of agent are still handed work: bruno (now shared) and ana (support only).
    cluster.start_day("acme", "bruno").await;
    let first = cluster.create_task("acme", "support", "Client A", "+5511900000021").await;
    assert_eq!(first.agent_id, "bruno");
    cluster.start_day("acme", "ana").await;
    let second = cluster.create_task("acme", "support", "Client B", "+5511900000022").await;
    assert_eq!(second.agent_id, "ana", "the one with fewer active tasks");
}
