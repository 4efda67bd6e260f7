//! `task-distribution projections rebuild tasks`: a `tasks` table damaged on purpose comes back
//! as the event store says (queued, assigned, completed, transferred and cancelled tasks, with
//! their queue order), while the service keeps answering from the live table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, authed, rid, token};
use dw_auth::Role;
use dw_proto::distribution::v1 as pb;
use sqlx::Row;
use task_distribution::projections::rebuild::TasksModel;

/// Every row of `tasks`, as JSON text, sorted.
async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query("SELECT to_jsonb(t)::text AS row FROM tasks t ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("row"))
        .collect()
}

#[tokio::test]
async fn a_damaged_tasks_table_is_rebuilt_from_the_event_store() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"]), ("bia", &["sales"])]).await;
    cluster.wait_for_agent("acme", "bia", "known").await;
    cluster.start_day("acme", "ana").await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let ana = token("acme", "ana", &[Role::Agent]);
    let mut client = cluster.distribution();

    // Six tasks for ana (capacity 3): three assigned, three queued.
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(cluster.create_task("acme", "support", &format!("Client {i}"), &format!("+551190000000{i}")).await);
    }
    // One completed (a queued one takes its place), one queued moved to sales, one cancelled.
    let complete = pb::CompleteTaskRequest { request_id: rid(), task_id: tasks[0].task_id.clone() };
    client.complete_task(authed(&ana, complete)).await.unwrap();
    let transfer = pb::TransferTaskRequest {
        request_id: rid(),
        task_id: tasks[5].task_id.clone(),
        department_id: "sales".into(),
        agent_id: String::new(),
    };
    client.transfer_task(authed(&manager, transfer)).await.unwrap();
    let cancel = pb::CancelTaskRequest { request_id: rid(), task_id: tasks[4].task_id.clone(), reason: "spam".into() };
    client.cancel_task(authed(&manager, cancel)).await.unwrap();

    let pool = &cluster.distribution_db.pool;
    let before = dump(pool).await;
    assert_eq!(before.len(), 6);
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM tasks ORDER BY status").fetch_all(pool).await.unwrap();
    assert_eq!(statuses, ["assigned", "assigned", "assigned", "cancelled", "completed", "queued"]);

    // Damaged, then rebuilt: with the model's cache of task states, and without one (each event
    // of a task then reads the task's earlier events from its stream).
    for (model, lanes) in [(TasksModel::default(), 4), (TasksModel::with_cache(0), 1)] {
        // Damage: a row gone, a name and a queue position changed.
        sqlx::query("DELETE FROM tasks WHERE task_id = $1::uuid").bind(&tasks[1].task_id).execute(pool).await.unwrap();
        sqlx::query("UPDATE tasks SET client_name = 'someone else', queue_front = NOT queue_front")
            .execute(pool)
            .await
            .unwrap();
        assert_ne!(dump(pool).await, before);

        let rebuilt = dw_eventstore::rebuild::rebuild(pool, &model, None, lanes, |_| {}).await.unwrap();
        assert_eq!(rebuilt.rows, 6);
        assert_eq!(dump(pool).await, before, "the rebuilt table is the one the commands wrote");
    }

    // The service reads the rebuilt table.
    let read = client
        .get_task(authed(
            &manager,
            pb::GetTaskRequest { key: Some(pb::get_task_request::Key::TaskId(tasks[1].task_id.clone())) },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.contact.map(|c| c.name).as_deref(), Some("Client 1"));
}
