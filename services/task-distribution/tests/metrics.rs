//! The operators' view on `/metrics`: how long tasks waited before an agent got them, and each
//! department's queue depth and oldest wait, following the tasks through a real flow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, authed, rid, token, wait_for_metrics};
use dw_auth::Role;
use dw_proto::distribution::v1 as pb;
use dw_testkit::metrics::sample;

const BILLING: &[(&str, &str)] = &[("tenant", "acme"), ("department", "billing")];
const BILLING_LATENCY: &[(&str, &str)] = &[("department", "billing")];

fn queued(t: &pb::Task) -> bool {
    t.status == pb::TaskStatus::Queued as i32
}

fn assigned_to_ana(t: &pb::Task) -> bool {
    t.status == pb::TaskStatus::Assigned as i32 && t.agent_id == "ana"
}

#[tokio::test]
async fn queued_tasks_show_in_the_queue_gauges_and_their_wait_in_the_assignment_latency() {
    let cluster = Cluster::start(1).await;
    cluster.seed("acme", true, &[("ana", &["billing"])]).await;
    cluster.wait_for_agent("acme", "ana", "known").await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    cluster
        .distribution()
        .set_agent_capacity(authed(
            &manager,
            pb::SetAgentCapacityRequest { request_id: rid(), agent_id: "ana".into(), capacity: 1 },
        ))
        .await
        .unwrap();

    // Nobody works yet: two tasks wait in billing's queue.
    let first = cluster.create_task("acme", "billing", "Client One", "+5511900000101").await;
    let second = cluster.create_task("acme", "billing", "Client Two", "+5511900000102").await;
    assert!(queued(&first) && queued(&second));
    let text = wait_for_metrics(&cluster, 0, "a billing queue of 2", |text| {
        (sample(text, "dw_task_queue_depth", BILLING) == Some(2.0)).then(|| text.to_owned())
    })
    .await;
    let oldest = sample(&text, "dw_task_queue_oldest_wait_seconds", BILLING).unwrap();
    assert!(oldest >= 0.0, "{oldest}");
    assert_eq!(sample(&text, "dw_task_assignment_latency_seconds_count", BILLING_LATENCY), None, "nothing assigned");

    // Ana starts her day with room for one task: she gets the older one.
    cluster.start_day("acme", "ana").await;
    cluster.wait_for_task("acme", &first.task_id, "assigned to ana", assigned_to_ana).await;
    let text = wait_for_metrics(&cluster, 0, "one assignment and a queue of 1", |text| {
        let counted = sample(text, "dw_task_assignment_latency_seconds_count", BILLING_LATENCY) == Some(1.0);
        let depth = sample(text, "dw_task_queue_depth", BILLING) == Some(1.0);
        (counted && depth).then(|| text.to_owned())
    })
    .await;
    let waited = sample(&text, "dw_task_assignment_latency_seconds_sum", BILLING_LATENCY).unwrap();
    assert!(waited > 0.0, "the task waited from its creation to ana's day start: {waited}");
    let within_an_hour = &[("department", "billing"), ("le", "3600.0")];
    assert_eq!(sample(&text, "dw_task_assignment_latency_seconds_bucket", within_an_hour), Some(1.0));

    // She completes it and gets the second: the queue drains and its gauges drop to 0.
    let ana = token("acme", "ana", &[Role::Agent]);
    cluster
        .distribution()
        .complete_task(authed(&ana, pb::CompleteTaskRequest { request_id: rid(), task_id: first.task_id.clone() }))
        .await
        .unwrap();
    cluster.wait_for_task("acme", &second.task_id, "assigned to ana", assigned_to_ana).await;
    let text = wait_for_metrics(&cluster, 0, "billing's queue drained", |text| {
        let drained = sample(text, "dw_task_queue_depth", BILLING) == Some(0.0);
        drained.then(|| text.to_owned())
    })
    .await;
    assert_eq!(sample(&text, "dw_task_queue_oldest_wait_seconds", BILLING), Some(0.0));
    assert_eq!(sample(&text, "dw_task_assignment_latency_seconds_count", BILLING_LATENCY), Some(2.0));
    cluster.stop().await;
}
