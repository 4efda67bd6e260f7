//! Two replicas of task-distribution on one database and stream; 2,000 tasks created
//! concurrently for 200 agents who complete every task they get (`DW_TEST_LOAD_TASKS` tasks when
//! set: `make bench` runs it with 20,000 in release). Checked on the event history:
//! a task has at most one agent at a time and ends completed; no agent ever holds more than
//! their capacity; each day's protocols are unique and gap-free.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Cluster, authed, rid, token};
use dw_auth::Role;
use dw_proto::distribution::v1 as pb;
use futures::StreamExt;
use prost::Message;
use sqlx::Row;

const AGENTS: usize = 200;
/// Completions refused for a moment and retried, by code.
static ABORTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static UNAVAILABLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The tasks created: 2,000, or `DW_TEST_LOAD_TASKS`.
fn tasks() -> usize {
    std::env::var("DW_TEST_LOAD_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}
const CAPACITY: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_every_invariant_under_load() {
    let total = tasks();
    let cluster = Cluster::start(2).await;
    let names: Vec<String> = (0..AGENTS).map(|i| format!("agent-{i:03}")).collect();
    let departments = ["d0", "d1", "d2", "d3"];
    let seeded: Vec<(&str, Vec<&str>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), vec![departments[i % 4], departments[(i + 1) % 4]]))
        .collect();
    let seeded: Vec<(&str, &[&str])> = seeded.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    cluster.seed("load", true, &seeded).await;

    // Every agent watches their tasks (on alternating replicas) and completes what they get, but
    // only once every task has been created: until then agents fill up to their capacity and the
    // rest queues, so the limit is exercised whatever the machine's speed.
    let (release, released) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let bearer = token("load", name, &[Role::Agent]);
        let client = cluster.replica(i);
        let mut stream =
            client.clone().watch_my_tasks(authed(&bearer, pb::WatchMyTasksRequest {})).await.unwrap().into_inner();
        let released = released.clone();
        workers.spawn(async move {
            let mut serving = tokio::task::JoinSet::new();
            while let Some(Ok(update)) = stream.next().await {
                let assigned = update.kind == pb::task_update::Kind::Assigned as i32
                    || update.kind == pb::task_update::Kind::Current as i32;
                let Some(task) = update.task.filter(|_| assigned) else { continue };
                let mut client = client.clone();
                let bearer = bearer.clone();
                let mut released = released.clone();
                serving.spawn(async move {
                    let _ = released.wait_for(|open| *open).await;
                    // A burst of completions may meet a busy service (every database connection
                    // taken: UNAVAILABLE; conflicts retried until the service gave up: ABORTED):
                    // retry what is retryable, backing off, with the same request id so a retry
                    // never completes twice.
                    let request_id = rid();
                    let (mut pause, mut last) = (Duration::from_millis(50), None);
                    let give_up = std::time::Instant::now() + Duration::from_secs(600);
                    while std::time::Instant::now() < give_up {
                        let request =
                            pb::CompleteTaskRequest { request_id: request_id.clone(), task_id: task.task_id.clone() };
                        match client.complete_task(authed(&bearer, request)).await {
                            Ok(_) => return 1usize,
                            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Aborted) => {
                                last = Some(format!("{:?}: {}", status.code(), status.message()));
                                let counter =
                                    if status.code() == tonic::Code::Aborted { &ABORTED } else { &UNAVAILABLE };
                                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(Duration::from_secs(1));
                            }
                            Err(status) => {
                                eprintln!("completing {} failed: {status:?}", task.task_id);
                                return 0;
                            }
                        }
                    }
                    eprintln!("completing {} still refused after 10 minutes (last: {last:?})", task.task_id);
                    0
                });
            }
            let mut completed = 0usize;
            while let Some(done) = serving.join_next().await {
                completed += done.unwrap_or(0);
            }
            completed
        });
    }
    for name in &names {
        let bearer = token("load", name, &[Role::Agent]);
        cluster
            .day()
            .start_service_day(authed(
                &bearer,
                dw_proto::agentsessions::v1::StartServiceDayRequest { request_id: rid() },
            ))
            .await
            .unwrap();
    }

    // The tasks, 32 at a time, alternating replicas.
    let service = token("load", "crm-bot", &[Role::Service]);
    let created = futures::stream::iter(0..total)
        .map(|i| {
            let mut client = cluster.replica(i);
            let service = service.clone();
            async move {
                let request = pb::CreateTaskRequest {
                    request_id: rid(),
                    department_id: departments[i % 4].into(),
                    channel: pb::Channel::Chat as i32,
                    contact: Some(pb::ClientContact {
                        name: format!("Client {i}"),
                        phone: format!("+55119{i:08}"),
                        contact_id: String::new(),
                    }),
                    priority: (i % 10) as i32,
                    subject: String::new(),
                };
                client.create_task(authed(&service, request)).await.map(|r| r.into_inner().protocol)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let protocols: Vec<String> = created.into_iter().map(|r| r.expect("created")).collect();
    assert_eq!(protocols.len(), total);
    release.send_replace(true);

    // Everything ends completed.
    let pool = &cluster.distribution_db.pool;
    let mut done = 0i64;
    // 2 minutes, and 30 ms more per task (a slow debug build under a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(120) + Duration::from_millis(30 * total as u64);
    while std::time::Instant::now() < deadline {
        done =
            sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = 'completed'").fetch_one(pool).await.unwrap();
        if done == total as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done, total as i64, "every task completed");

    // Protocols: unique and gap-free per day.
    let unique: HashSet<&String> = protocols.iter().collect();
    assert_eq!(unique.len(), total);
    let mut by_day: HashMap<&str, Vec<u32>> = HashMap::new();
    for protocol in &protocols {
        by_day.entry(&protocol[..8]).or_default().push(protocol[8..].parse().unwrap());
    }
    for (day, mut sequences) in by_day {
        sequences.sort_unstable();
        let expected: Vec<u32> = (1..=sequences.len() as u32).collect();
        assert_eq!(sequences, expected, "gap-free protocols on {day}");
    }

    // The history, in commit order: one holder per task, nobody above capacity.
    let rows = sqlx::query("SELECT stream_id, event_type, payload FROM events ORDER BY global_position")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut load: HashMap<String, i32> = HashMap::new();
    let mut peak = 0;
    let mut assignments = 0;
    for row in &rows {
        let stream: String = row.get("stream_id");
        let kind: String = row.get("event_type");
        let payload: Vec<u8> = row.get("payload");
        match kind.as_str() {
            "dw.distribution.v1.TaskAssigned" | "dw.distribution.v1.TaskClaimed" => {
                let agent = if kind.ends_with("Assigned") {
                    pb::TaskAssigned::decode(payload.as_slice()).unwrap().agent_id
                } else {
                    pb::TaskClaimed::decode(payload.as_slice()).unwrap().agent_id
                };
                assert!(!holder.contains_key(&stream), "{stream} assigned while held");
                holder.insert(stream, agent.clone());
                let count = load.entry(agent.clone()).or_default();
                *count += 1;
                assert!(*count <= CAPACITY, "{agent} above capacity");
                peak = peak.max(*count);
                assignments += 1;
            }
            "dw.distribution.v1.TaskCompleted"
            | "dw.distribution.v1.TaskRequeued"
            | "dw.distribution.v1.TaskCancelled" => {
                if let Some(agent) = holder.remove(&stream) {
                    *load.entry(agent).or_default() -= 1;
                }
            }
            _ => {}
        }
    }
    assert!(holder.is_empty());
    assert!(assignments >= total);
    assert_eq!(peak, CAPACITY, "the load reached the capacity, so the limit was exercised");
    println!(
        "{assignments} assignments, peak load {peak}; completions retried: {} ABORTED, {} UNAVAILABLE",
        ABORTED.load(std::sync::atomic::Ordering::Relaxed),
        UNAVAILABLE.load(std::sync::atomic::Ordering::Relaxed)
    );

    cluster.stop().await;
    let mut completed = 0;
    while let Some(done) = workers.join_next().await {
        completed += done.unwrap();
    }
    assert_eq!(completed, total);
}
