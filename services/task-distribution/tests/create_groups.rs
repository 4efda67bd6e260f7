//! CreateTask calls of one department that arrive while the one before them runs are decided
//! together: one transaction, the same rules and answers as one by one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Cluster, authed, rid, token, wait_for_metrics};
use dw_auth::Role;
use dw_proto::distribution::v1 as pb;
use dw_testkit::metrics::sample;
use sqlx::Connection;
use tonic::Code;

fn request(request_id: &str, department: &str, i: usize) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        request_id: request_id.to_owned(),
        department_id: department.into(),
        channel: pb::Channel::Whatsapp as i32,
        contact: Some(pb::ClientContact {
            name: format!("Client {i}"),
            phone: format!("+5511955{i:06}"),
            contact_id: String::new(),
        }),
        priority: 5,
        subject: format!("help {i}"),
    }
}

/// Waits until `count` sessions of the distribution database wait for an advisory lock.
async fn waiting_for_a_lock(url: &str, count: i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for _ in 0..400 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no create ever waited for the department's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_gathered_behind_a_busy_department_are_decided_together_with_the_same_rules() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["support"]), ("bruno", &["support"]), ("carla", &["sales"])]).await;
    cluster.start_day("acme", "ana").await;
    cluster.start_day("acme", "bruno").await;
    let url = cluster.distribution_db.url.clone();
    let service = token("acme", "crm-bot", &[Role::Service]);

    // An earlier create answered before the group: its retry comes in the group.
    let earlier_id = rid();
    let earlier =
        cluster.distribution().create_task(authed(&service, request(&earlier_id, "support", 0))).await.unwrap();
    let earlier = earlier.into_inner();

    // Hold support's lock, so the next create waits for it inside its transaction and the
    // following ones gather behind it.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('dw-distribution:acme:department:support', 0))")
        .execute(&mut *held)
        .await
        .unwrap();
    let client = cluster.distribution();
    let first = {
        let mut client = client.clone();
        let service = service.clone();
        tokio::spawn(async move { client.create_task(authed(&service, request(&rid(), "support", 1))).await })
    };
    waiting_for_a_lock(&url, 1).await;

    // The group: eight new creates (one sent twice at once), the retry of the earlier one, and a
    // request id reused with another body.
    let twice = rid();
    let mut calls = Vec::new();
    let mut sent = Vec::new();
    for i in 2..10 {
        let id = if i == 2 { twice.clone() } else { rid() };
        sent.push((id.clone(), i));
    }
    sent.push((twice.clone(), 2));
    sent.push((earlier_id.clone(), 0));
    sent.push((earlier_id.clone(), 99));
    for (id, i) in sent.clone() {
        let mut client = client.clone();
        let service = service.clone();
        calls.push(tokio::spawn(async move { client.create_task(authed(&service, request(&id, "support", i))).await }));
    }
    // Meanwhile another department is not held up by support's group.
    let sales = cluster.create_task("acme", "sales", "Client S", "+5511955999999").await;
    assert_eq!(sales.status, pb::TaskStatus::Queued as i32, "carla has not started her day");

    tokio::time::sleep(Duration::from_millis(300)).await;
    held.commit().await.unwrap();
    let first = first.await.unwrap().unwrap().into_inner();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }

    // The retry gets its first answer; the reused id is refused; the one sent twice is one task.
    let reused = answers.pop().unwrap().expect_err("a request id reused with another body");
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
    let retried = answers.pop().unwrap().unwrap().into_inner();
    assert_eq!((retried.task_id, retried.protocol), (earlier.task_id.clone(), earlier.protocol.clone()));
    let created: Vec<pb::Task> = answers.into_iter().map(|answer| answer.unwrap().into_inner()).collect();
    assert_eq!(created[0].task_id, created[8].task_id, "the same request twice is one task");
    let mut tasks: HashMap<String, pb::Task> = HashMap::new();
    for task in created.into_iter().chain([first, earlier]) {
        tasks.insert(task.task_id.clone(), task);
    }
    assert_eq!(tasks.len(), 10);

    // Protocols: one each, numbered without gaps (sales' among them).
    let mut numbers: Vec<u32> =
        tasks.values().chain([&sales]).map(|task| task.protocol[8..].parse::<u32>().unwrap()).collect();
    numbers.sort_unstable();
    let first_number = numbers[0];
    assert_eq!(numbers, (first_number..first_number + 11).collect::<Vec<_>>(), "gap-free protocols");

    // The rules as one by one: each agent up to the default capacity (3), the rest waits.
    let mut held_by: HashMap<String, usize> = HashMap::new();
    for task in tasks.values() {
        let current = cluster.task("acme", &task.task_id).await;
        assert_eq!(current.status, task.status, "the answer is the task as written");
        if current.status == pb::TaskStatus::Assigned as i32 {
            *held_by.entry(current.agent_id.clone()).or_default() += 1;
        } else {
            assert_eq!(current.status, pb::TaskStatus::Queued as i32);
        }
    }
    assert_eq!(held_by.get("ana"), Some(&3), "{held_by:?}");
    assert_eq!(held_by.get("bruno"), Some(&3), "{held_by:?}");
    let queued = tasks.values().filter(|t| t.status == pb::TaskStatus::Queued as i32).count();
    assert_eq!(queued, 4);

    // Each assignment has its decision, as ExplainAssignment shows it.
    let manager = token("acme", "manager-1", &[Role::Manager]);
    for task in tasks.values() {
        let explained = cluster
            .distribution()
            .explain_assignment(authed(&manager, pb::ExplainAssignmentRequest { task_id: task.task_id.clone() }))
            .await
            .unwrap()
            .into_inner();
        let decision = explained.decisions.first().expect("a decision");
        assert_eq!(decision.candidates.len(), 2, "ana and bruno");
        assert_eq!(decision.chosen_agent_id, task.agent_id);
    }

    wait_for_metrics(&cluster, 0, "a group created together", |text| {
        sample(text, "dw_task_create_groups_total", &[("outcome", "together")]).filter(|n| *n >= 1.0)
    })
    .await;
}
